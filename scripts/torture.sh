#!/usr/bin/env bash
# The torture suite: crash points and random kill -9, live writers, hostile archives, a full
# disk, lock storms, bad sessions, fuzzing, and a scan of every output for secrets. Prints one
# figure line per family and a last line "N passed, M failed"; exits non-zero when M > 0.
#
#   scripts/torture.sh --quick    a few cases per family (about 1 minute on 2 cores once built;
#                                 .ci/run runs it after scripts/test.sh built the debug products
#                                 and .venv-test)
#   scripts/torture.sh            the full run (under 20 minutes on 2 cores); writes RELIABILITY.md
#   scripts/torture.sh --only fuzzing,secrets   some families only (never writes RELIABILITY.md)
#
# Environment: TGSESS_TORTURE_SEED (replay a run's random choices), TGSESS_FUZZ_SECONDS (per
# fuzz target; full default 180, quick 0 = no libFuzzer), TGSESS_FUZZ_JOBS (targets run at once,
# default 2), TGSESS_KEEP_TEMP=1 (keep the output directory), TGSESS_FUZZ_CAMPAIGN=1 (with
# --only fuzzing: record the run as the long fuzzing campaign in RELIABILITY.md).
# Needs root (tmpfs mounts; no sudo) and Linux (libFuzzer, LD_PRELOAD); installs the system
# packages and .venv-test itself (scripts/lib.sh, scripts/test-peers.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

scale=full
only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) scale=quick ;;
    --only) only="$2"; shift ;;
    *) echo "usage: scripts/torture.sh [--quick] [--only family,family]" >&2; exit 64 ;;
  esac
  shift
done
families=(crash-points live-writers hostile-archives disk-full lock-storms bad-sessions fuzzing secrets)
selected() { [ -z "$only" ] || [[ ",$only," == *",$1,"* ]]; }

if [ "$(id -u)" != 0 ]; then echo "torture.sh needs root (it mounts tmpfs; run it as root, sudo is not needed)" >&2; exit 1; fi
# What the families need, also when run alone on a fresh machine (after scripts/test.sh both
# are no-ops): the system packages and the Python test peers in .venv-test.
install_system_packages
scripts/test-peers.sh >/dev/null

out=$(mktemp -d /tmp/tgsess-torture-XXXXXX)
# Set before anything can fail. On any exit (a failed case or build, set -e, and SIGINT/SIGTERM,
# on which bash runs the EXIT trap at once) it stops what this script started and is still
# running (its descendants, by pid), unmounts the tmpfs with every tmpfs a family mounted below
# it (umount -l detaches the whole tree), and removes the output directory.
descendants() { # pid
  local child
  for child in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
    [ "$child" != "$BASHPID" ] || continue # the $(...) that asks
    echo "$child"
    descendants "$child"
  done
}
cleanup() {
  local status=$? pids
  pids=$(descendants $$)
  # shellcheck disable=SC2086
  [ -z "$pids" ] || kill -TERM $pids 2>/dev/null || true
  if mountpoint -q "$out/tmp"; then umount -l "$out/tmp" || echo "torture.sh: could not unmount $out/tmp" >&2; fi
  if [ "${TGSESS_KEEP_TEMP:-}" = 1 ]; then echo "kept $out" >&2; else rm -rf "$out"; fi
  exit "$status"
}
trap cleanup EXIT
log="$out/torture.log"
mkdir -p "$out/tmp" "$out/results" "$out/capture" "$out/secrets" "$out/fuzz"
# Every temporary deployment lives on a tmpfs: SIGKILL does not need a disk, and fsync is cheap.
mount -t tmpfs -o size=4g,mode=0700 tmpfs "$out/tmp"

seed=${TGSESS_TORTURE_SEED:-$(od -An -N6 -tu8 /dev/urandom | tr -d ' ')}
token="$(( (RANDOM << 15 | RANDOM) % 900000000 + 100000000 )):AA$(head -c 24 /dev/urandom | base64 | tr '+/' '_-' | tr -d '=\n' | head -c 33)"
export TMPDIR="$out/tmp" TGSESS_TORTURE_SCALE=$scale TGSESS_TORTURE_OUT="$out" TGSESS_TORTURE_SEED=$seed \
  TGSESS_TORTURE_BOT_TOKEN="$token"
started=$(date +%s)
echo "torture: $scale run, seed $seed, output in $out" | tee -a "$log"

# Build what the families run (a no-op after scripts/test.sh).
swift build --build-tests >>"$log" 2>&1 || { echo "swift build failed; see the log" >&2; tail -20 "$log" >&2; exit 1; }

declare -A suite=(
  [crash-points]=CrashPointTorture [live-writers]=LiveWriterTorture [hostile-archives]=HostileArchiveTorture
  [disk-full]=DiskFullTorture [lock-storms]=LockStormTorture [bad-sessions]=BadSessionTorture
  [fuzzing]=FuzzSmokeTorture
)
declare -A figures seconds passed_cases failed_cases
total_passed=0
total_failed=0

# Counts a family's cases from results/<family>.jsonl; a suite that failed outside any case
# (a crash, an #expect of its own) counts as one more failed case.
count() { # family, suite exit status
  python3 - "$out/results/$1.jsonl" "$2" <<'EOF'
import json, os, sys
path, status = sys.argv[1], int(sys.argv[2])
passed = failed = 0
if os.path.exists(path):
    for line in open(path):
        if json.loads(line)["passed"]:
            passed += 1
        else:
            failed += 1
if status != 0 and failed == 0:
    failed = 1
print(passed, failed)
EOF
}

# The counts are kept apart from the figure line, whose summary in parentheses may hold words
# like "33 failed cleanly" (disk-full) that are outcomes, not failed cases.
record() { # family, passed, failed, seconds, [extra]
  local line="$1: $(( $2 + $3 )) cases, $2 passed"
  [ "$3" -gt 0 ] && line="$line, $3 failed"
  [ -n "${5:-}" ] && line="$line ($5)"
  figures[$1]="$line"
  passed_cases[$1]=$2
  failed_cases[$1]=$3
  seconds[$1]=$4
  total_passed=$((total_passed + $2))
  total_failed=$((total_failed + $3))
  echo "$line" | tee -a "$log"
}

# What a family's cases were, in a few words, from its results and the log.
summarize() { # family
  python3 - "$1" "$out/results/$1.jsonl" "$log" <<'EOF'
import json, os, re, sys
family, path, log = sys.argv[1:4]
cases = [json.loads(l) for l in open(path)] if os.path.exists(path) else []
text = open(log, encoding='utf-8', errors='replace').read()
names = [c['case'] for c in cases]
def total(pattern):
    return sum(int(m.group(1)) for n in names for m in [re.match(pattern, n)] if m)
out = ''
if family == 'crash-points':
    named = sum(1 for n in names if not n.startswith('random kill'))
    kills = re.findall(r'random kills: (\d+) runs killed by SIGKILL in (\d+) attempts', text)
    out = '%d named crash points; %s of %s random-moment runs killed by SIGKILL' % (
        named, kills[-1][0] if kills else '?', kills[-1][1] if kills else '?')
elif family == 'live-writers':
    backups = [n for n in names if n.startswith('backup #')]
    out = '%d backups (%d per-user, %d encrypted) while both writers ran' % (
        len(backups), sum('--user' in n for n in backups), sum('(age)' in n for n in backups))
elif family == 'hostile-archives':
    randoms = sum(n.startswith('random-') for n in names)
    out = '%d crafted, %d randomly damaged' % (len(names) - randoms, randoms)
elif family == 'disk-full':
    details = [c['detail'] for c in cases]
    out = '%d ran to completion, %d failed cleanly, %d on a read-only remount' % (
        details.count('succeeded'), details.count('failed cleanly'), sum('read-only' in n for n in names))
elif family == 'lock-storms':
    runs = sum(n.split(': ', 1)[-1].startswith('tgsess ') for n in names)
    storms = [c['detail'] for c in cases if re.match(r'storm \d+: lock', c['case'])]
    statuses = {}
    for d in storms:
        for code, count in re.findall(r'exit (\d+): (\d+)', d):
            statuses[code] = statuses.get(code, 0) + int(count)
    staging = re.findall(r'lock storms: (\d+) write\(s\) into', text)
    checks = re.findall(r'lock storms: (\d+) write\(s\) by check', text)
    out = '%d storm(s), %d runs (%s); writes without the lock by design: %s into own staging, %s by check' % (
        len(storms), runs, ', '.join('exit %s: %d' % kv for kv in sorted(statuses.items())),
        staging[-1] if staging else '?', checks[-1] if checks else '?')
elif family == 'bad-sessions':
    out = '%d file classes, %d crafted strings, %d file mutations, %d string mutations' % (
        sum(n.startswith('file class') for n in names), sum(n.startswith('crafted string') for n in names),
        total(r'(\d+) random mutations of a .* file$'), total(r'(\d+) random mutations of a .* string$'))
print(out)
EOF
}

run_suite() { # family
  local family=$1 start status=0
  start=$(date +%s)
  swift test --skip-build --filter "TortureTests.${suite[$family]}" >>"$log" 2>&1 || status=$?
  read -r passed failed < <(count "$family" "$status")
  record "$family" "$passed" "$failed" $(( $(date +%s) - start )) "$(summarize "$family")"
}

# --- libFuzzer -------------------------------------------------------------------------------
fuzz_targets=(FuzzSessionStrings FuzzSessionFile FuzzManifest FuzzArchiveReader)
fuzz_seconds=${TGSESS_FUZZ_SECONDS:-$([ "$scale" = full ] && echo 180 || echo 0)}
fuzz_jobs=${TGSESS_FUZZ_JOBS:-2}
fuzz_bin=fuzz/.build/release

build_fuzzers() {
  echo "== building the fuzz targets (release, -sanitize=fuzzer)" >>"$log"
  (cd fuzz && swift build -c release -Xswiftc -sanitize=fuzzer -Xswiftc -parse-as-library) >>"$log" 2>&1
}

# Seed corpora from real files: the peers' session files and strings, tgsess's own archives.
make_seeds() {
  local seeds="$out/fuzz/seeds" fleet="$out/tmp/seed-fleet"
  mkdir -p "$seeds"/{FuzzSessionStrings,FuzzSessionFile,FuzzManifest,FuzzArchiveReader}
  .build/debug/tgsess-fleet --root "$fleet" --users 2 --entities 2 --pyrogram-share 0.5 >>"$log" 2>&1
  .build/debug/tgsess backup --no-encrypt --root "$fleet" >>"$log" 2>&1
  .venv-test/bin/python - "$seeds" "$fleet" Tests/StoreTests/Fixtures/python/session_peer.py <<'EOF' >>"$log" 2>&1
import glob, io, json, os, shutil, subprocess, sys, tarfile, hashlib
seeds, fleet, peer = sys.argv[1:4]
def run(*args, peer_path=None):
    env = dict(os.environ)
    if peer_path:
        env['PYTHONPATH'] = peer_path
    out = subprocess.run(['.venv-test/bin/python', peer] + list(args), capture_output=True, text=True, env=env, check=True)
    return json.loads([l for l in out.stdout.splitlines() if l.startswith('RESULT ')][-1][7:])
key = os.urandom(256).hex()
n = 0
def put(target, data):
    global n
    n += 1
    with open(os.path.join(seeds, target, 'seed-%03d' % n), 'wb') as f:
        f.write(data if isinstance(data, bytes) else data.encode())
for dc, addr in (('2', '149.154.167.51'), ('5', '2001:b28:f23f:f005::a')):
    put('FuzzSessionStrings', run('telethon-strings', dc, addr, '443', key)['string'])
p = run('pyrogram-strings', '2', '12345', '0', '777', '0', key)
for layout in ('351', '356', '362'):
    put('FuzzSessionStrings', p[layout])
for name, value in run('crafted-strings', key).items():
    put('FuzzSessionStrings', value)
tmp = os.path.join(seeds, 'tmp')
os.makedirs(tmp)
run('telethon-file', os.path.join(tmp, 'v8.session'), '2', '149.154.167.51', '443', '42', '', '')
run('telethon-file', os.path.join(tmp, 'v7.session'), '4', '149.154.167.91', '443', '43', '', '', peer_path='.venv-test/peers/telethon142')
run('pyrogram-file', tmp, 'p3', '2', '1', '0', '5', '0', '', '0', '0')
run('pyrogram-file', tmp, 'kuri', '2', '1', '0', '5', '0', '', '0', '0', peer_path='.venv-test/peers/kurigram')
run('pyrogram-file', tmp, 'fork', '2', '1', '0', '5', '0', '', '0', '0', peer_path='.venv-test/peers/pyrofork')
for f in sorted(glob.glob(os.path.join(tmp, '*.session'))):
    put('FuzzSessionFile', open(f, 'rb').read())
shutil.rmtree(tmp)
for path in sorted(glob.glob(os.path.join(fleet, 'backups', '**', '*.tar.zst'), recursive=True))[:3]:
    data = open(path, 'rb').read()
    put('FuzzArchiveReader', data)
    plain = subprocess.run(['zstd', '-d', '-q', '-c'], input=data, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(plain)) as t:
        put('FuzzManifest', t.extractfile(t.next()).read())
# A minimal archive: a manifest and one small entry, compressed and not.
body = b'imported bytes\n'
manifest = {'format_version': 1, 'tool_version': 'seed', 'host': 'seed', 'created_at': '2026-01-01T00:00:00Z',
            'kind': 'full', 'reason': 'Imported', 'schema_version': 2, 'entries': [
                {'path': 'imported/a', 'role': 'imported', 'size': len(body), 'mode': 384,
                 'sha256': hashlib.sha256(body).hexdigest(), 'is_sqlite': False}]}
raw = io.BytesIO()
with tarfile.open(fileobj=raw, mode='w', format=tarfile.PAX_FORMAT) as t:
    for name, data in (('manifest.json', json.dumps(manifest).encode()), ('imported/a', body)):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
put('FuzzManifest', json.dumps(manifest))
put('FuzzArchiveReader', subprocess.run(['zstd', '-q', '-c'], input=raw.getvalue(), capture_output=True, check=True).stdout)
put('FuzzArchiveReader', raw.getvalue())
print('seeds written:', n)
EOF
  rm -rf "$fleet"
}

# Runs every fuzz target for fuzz_seconds, fuzz_jobs at a time. Each run is one case: it passes
# when libFuzzer found no crash, leak, timeout or out-of-memory input. Found inputs are copied to
# Tests/StoreTests/Fixtures/fuzz-regressions/<target>/ (commit them with the fix).
run_fuzzers() {
  local target pids=() running=0
  for target in "${fuzz_targets[@]}"; do
    mkdir -p "$out/fuzz/corpus/$target" "$out/fuzz/artifacts/$target"
    (
      cd "$out/fuzz/artifacts/$target"
      # libFuzzer exits non-zero when it finds something: record that, do not stop the run.
      status=0
      SWIFT_BACKTRACE=enable=no "$OLDPWD/$fuzz_bin/$target" -max_total_time="$fuzz_seconds" -max_len=65536 \
        -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$out/fuzz/artifacts/$target/" \
        "$out/fuzz/corpus/$target" "$out/fuzz/seeds/$target" >"$out/fuzz/$target.log" 2>&1 || status=$?
      echo "$status" >"$out/fuzz/$target.status"
    ) &
    pids+=($!)
    running=$((running + 1))
    if [ "$running" -ge "$fuzz_jobs" ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); running=$((running - 1)); fi
  done
  wait
}

fuzz_family() {
  local start passed=0 failed=0 extra="" status
  start=$(date +%s)
  # In-process: the committed regression inputs and seeds with random damage, through the same checks.
  status=0
  swift test --skip-build --filter "TortureTests.FuzzSmokeTorture" >>"$log" 2>&1 || status=$?
  read -r passed failed < <(count fuzzing "$status")
  if [ "$fuzz_seconds" -gt 0 ]; then
    if build_fuzzers && make_seeds; then
      local fuzz_start
      fuzz_start=$(date +%s)
      run_fuzzers
      local runs=0 target execs artifacts
      for target in "${fuzz_targets[@]}"; do
        execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$out/fuzz/$target.log" | grep -o '[0-9]*$' || echo 0)
        artifacts=$(find "$out/fuzz/artifacts/$target" -type f | wc -l)
        echo "fuzz $target: ${execs:-0} inputs in ${fuzz_seconds} s, exit $(cat "$out/fuzz/$target.status"), $artifacts finding(s)" | tee -a "$log"
        if [ "$artifacts" -eq 0 ] && [ "$(cat "$out/fuzz/$target.status")" = 0 ]; then
          passed=$((passed + 1))
        else
          failed=$((failed + 1))
          mkdir -p "Tests/StoreTests/Fixtures/fuzz-regressions/$target"
          find "$out/fuzz/artifacts/$target" -type f -exec cp {} "Tests/StoreTests/Fixtures/fuzz-regressions/$target/" \;
          tail -40 "$out/fuzz/$target.log" >>"$log"
        fi
        runs=$((runs + ${execs:-0}))
        fuzz_execs[$target]=${execs:-0}
      done
      extra="libFuzzer: ${#fuzz_targets[@]} targets × ${fuzz_seconds} s, $fuzz_jobs at a time, $runs inputs in $(( $(date +%s) - fuzz_start )) s"
    else
      failed=$((failed + 1))
      extra="the fuzz targets or their seeds could not be built; see the log"
    fi
  else
    extra="in-process checks only; libFuzzer runs with TGSESS_FUZZ_SECONDS > 0 (the full run)"
  fi
  record fuzzing "$passed" "$failed" $(( $(date +%s) - start )) "$extra"
}
declare -A fuzz_execs

# --- secrets ---------------------------------------------------------------------------------
# Every captured stdout/stderr of every tgsess run, the libFuzzer logs and this run's log, against
# every secret the deployments held (collected as they changed) and the bot token.
secrets_family() {
  local start result
  start=$(date +%s)
  result=$(python3 - "$out" <<'EOF'
import glob, json, os, sys
out = sys.argv[1]
secrets = {}
for path in glob.glob(os.path.join(out, 'secrets', '*.jsonl')):
    for line in open(path):
        label, value = json.loads(line)
        if len(value) >= 16:
            secrets.setdefault(value, label)
files = sorted(glob.glob(os.path.join(out, 'capture', '*.txt'))) + sorted(glob.glob(os.path.join(out, 'fuzz', '*.log')))
files.append(os.path.join(out, 'torture.log'))
# Index by 16-byte prefix for one pass per file.
by_prefix = {}
for value in secrets:
    by_prefix.setdefault(value[:16], []).append(value)
hits = []
clean = 0
for path in files:
    if not os.path.exists(path):
        continue
    text = open(path, encoding='utf-8', errors='replace').read()
    found = set()
    for i in range(len(text) - 15):
        candidates = by_prefix.get(text[i:i + 16])
        if candidates:
            for value in candidates:
                if text.startswith(value, i):
                    found.add(secrets[value])
    if found:
        hits.append('%s: %s' % (os.path.basename(path), ', '.join(sorted(found))))
    else:
        clean += 1
kinds = {}
for label in secrets.values():
    kind = label.split(' of ')[0]
    kinds[kind] = kinds.get(kind, 0) + 1
print(json.dumps({'files': len(files), 'clean': clean, 'hits': hits, 'secrets': len(secrets),
                  'kinds': kinds}))
EOF
)
  local files clean nsecrets hits
  files=$(echo "$result" | python3 -c 'import json,sys; print(json.load(sys.stdin)["files"])')
  clean=$(echo "$result" | python3 -c 'import json,sys; print(json.load(sys.stdin)["clean"])')
  nsecrets=$(echo "$result" | python3 -c 'import json,sys; print(json.load(sys.stdin)["secrets"])')
  hits=$(echo "$result" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["hits"]))')
  echo "$result" | python3 -c 'import json,sys; [print("secret found:", h) for h in json.load(sys.stdin)["hits"]]' | tee -a "$log"
  secret_kinds=$(echo "$result" | python3 -c 'import json,sys; print(", ".join("%d %s" % (v, k) for k, v in sorted(json.load(sys.stdin)["kinds"].items())))')
  secret_count=$nsecrets
  if [ "$nsecrets" -eq 0 ]; then
    record secrets 0 1 $(( $(date +%s) - start )) "no secrets were collected, so the scan proves nothing"
  else
    record secrets "$clean" $((files - clean)) $(( $(date +%s) - start )) "$files outputs scanned for $nsecrets secret strings, $hits with a hit"
  fi
}

for family in "${families[@]}"; do
  selected "$family" || continue
  case "$family" in
    fuzzing) fuzz_family ;;
    secrets) secrets_family ;;
    *) run_suite "$family" ;;
  esac
done

elapsed=$(( $(date +%s) - started ))
echo "$total_passed passed, $total_failed failed"

# --- RELIABILITY.md --------------------------------------------------------------------------
machine="$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(uname -sr), $(. /etc/os-release && echo "$PRETTY_NAME")"
swift_version=$(swift --version 2>/dev/null | head -1)
write_reliability() {
  local campaign=""
  if [ -f RELIABILITY.md ]; then
    campaign=$(sed -n '/<!-- fuzz-campaign:begin -->/,/<!-- fuzz-campaign:end -->/p' RELIABILITY.md)
  fi
  local commit
  commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  {
    echo "# Reliability"
    echo
    echo "What \`scripts/torture.sh\` (the full run) did to tgsess, and what held. Generated by that run;"
    echo "the figures are its own, not edited. $total_passed passed, $total_failed failed."
    echo
    echo "- Command: \`sudo scripts/torture.sh\` (the full run; \`--quick\` is the CI subset)"
    echo "- Commit: \`$commit\` (working tree as committed with this file), seed \`$seed\`"
    echo "- Machine: $machine; $swift_version"
    echo "- Duration: $((elapsed / 60)) min $((elapsed % 60)) s; debug build of tgsess; every temporary deployment on tmpfs"
    echo
    echo "| family | cases | passed | failed | seconds | what \"nothing lost\" means here |"
    echo "|---|---|---|---|---|---|"
    local family
    for family in "${families[@]}"; do
      [ -n "${figures[$family]:-}" ] || continue
      local passed=${passed_cases[$family]} failed=${failed_cases[$family]}
      echo "| $family | $((passed + failed)) | $passed | $failed | ${seconds[$family]} | ${meaning[$family]} |"
    done
    echo
    echo "## Figure lines"
    echo
    echo '```'
    for family in "${families[@]}"; do [ -n "${figures[$family]:-}" ] && echo "${figures[$family]}"; done
    echo "$total_passed passed, $total_failed failed"
    echo '```'
    echo
    cat <<'NOTES'
## How it was done, and what it does not cover

- Families are Swift tests in `Tests/Torture` (target `TortureTests`, skipped unless
  `TGSESS_TORTURE_SCALE` is set) driving the built `tgsess` like an operator would; fuzzing is the
  separate package `fuzz/` (libFuzzer) plus an in-process replay; the secret scan is in the script.
  Each case's result is in the run's `results/*.jsonl`; every tgsess output is kept for the scan.
- kill -9 is process death, not power loss: deployments live on tmpfs, so the fsync ordering that
  protects against a power cut is not exercised here.
- I/O errors are ENOSPC (a filled tmpfs) and EROFS (a read-only remount) only; no EIO injection
  (no dm-flakey or FUSE on this machine).
- Lock storms: `lockwatch.so` interposes libc's open/openat/creat, rename*, link*, unlink*, mkdir*,
  rmdir, truncate and chmod, and flock/close of the lock file. Writes through a descriptor opened
  earlier are covered by that open. Two kinds of writes without the lock are by design and are
  counted in the log, not failed: a restore verifies the archive into its own `.staging-<pid>-*`
  directory before it takes the lock, and `check` records its per-user findings in the bot
  database (SQLite's locking only; `check --no-write` does not).
- Fuzzing runs without AddressSanitizer, and SQLite, libarchive, zstd and Foundation's JSON decoder
  are system libraries without coverage instrumentation: coverage guidance sees tgsess's Swift code
  (Store) and GRDB only. Encrypted archives (the age header and stream) are covered by the hostile
  and random-damage cases, not by a fuzz target.
- tgsess is the debug build; the bot runner (`tgsess-bot`) is not exercised. The bot token is
  planted in every deployment (config `token_file` and `TGSESS_BOT_TOKEN` of every run) so the
  scan would see it if any output carried it.
NOTES
    if [ -n "$campaign" ]; then echo; echo "$campaign"; fi
  } >RELIABILITY.md.tmp
  mv RELIABILITY.md.tmp RELIABILITY.md
  echo "wrote RELIABILITY.md"
}

declare -A meaning=(
  [crash-points]="After SIGKILL at every named crash point of backup, backup --user, restore (whole and --user), prune, recover --all, migrate (seed shape and --rotate-key) and pin (the atomic writes), and at random moments: session files and the bot's tables as before (restore, recover: each file wholly old or wholly new), every archive \`tgsess list\` shows decrypts and matches its manifest, earlier archives byte-identical, the same command run again exits 0, no temporary left after it and a backup, and every user holds their session (valid file, or \`recover\` brings it back) with the expected auth key"
  [live-writers]="Backups while the real Telethon 1.45 \`SQLiteSession\` saves entities and update state on 3 session files and a second writer commits to the bot database: every snapshot, extracted by stock age/tar and hashed by sha256sum, passes integrity_check, keeps both cross-table invariants, and is newer than the last; the newest loads in Telethon with the live key"
  [hostile-archives]="43 crafted hostile archives (traversal, also past a combining mark, links, devices, bombs, a Unicode-equivalent entry name, tampered manifest, rows or sessions, truncations, bit flips, wrong identity) plus random bit flips, truncations and inserted/appended bytes of a real archive: each refused with one stderr line naming the archive and the reason; the deployment byte-identical; no --target directory left"
  [disk-full]="backup, restore and migrate on a tmpfs filled to leave a sweep of free-space levels, and remounted read-only: each run succeeds fully or exits 1 with one error line naming the cause; no partial or hidden file; sessions, bot tables and earlier archives as before (a restore that failed mid-way: each file whole, undo archive present); with space back the same command succeeds"
  [lock-storms]="Storms of 20 concurrent backup, prune, restore --user, recover, migrate and check runs with lockwatch.so preloaded (records, in the process, lock take/release and every change below the root): lock intervals never overlap; no mutating run changes anything without the lock (its own staging directory apart); non-waiting runs exit 0 or 75 naming the holder; waiting runs complete; holder lines name the right process; afterwards integrity_check, every archive and every session are sound"
  [bad-sessions]="Every invalid session-file class gives its precise reason; thousands of random mutations (bit flips, cuts, inserted/deleted/overwritten bytes, zeroed key bytes) of Telethon v7/v8, Pyrogram, kurigram and pyrofork files and of Telethon/Pyrogram strings, parsed in-process: no crash, nothing accepted with a short or all-zero key or a dc out of range, an accepted string re-encodes to itself, inspect never changes a file"
  [fuzzing]="libFuzzer on the session-string parsers, the session-file inspector, the manifest parser and the archive reader (unencrypted tar.zst): no crash, and every accepted input sound (same properties as bad-sessions; an accepted archive extracted exactly its manifest); plus committed regression inputs and random damage replayed in-process"
  [secrets]="Every stdout/stderr of every tgsess run, the libFuzzer logs and this run's log scanned for every auth key (hex both cases, half, base64, URL-safe), session string, Fernet key and token (and its plaintext), api_hash, age identity and the bot token of every deployment used: 0 hits"
)

if [ -z "$only" ] && [ "$scale" = full ]; then
  write_reliability
elif [ "$only" = fuzzing ] && [ "${TGSESS_FUZZ_CAMPAIGN:-}" = 1 ] && [ -f RELIABILITY.md ]; then
  # A long fuzzing campaign, recorded beside the full run's figures.
  python3 - "$fuzz_seconds" "$fuzz_jobs" "$elapsed" "$machine" "${figures[fuzzing]}" \
    "$(for t in "${fuzz_targets[@]}"; do echo "$t=${fuzz_execs[$t]:-0}"; done | paste -sd' ')" <<'EOF'
import re, sys
seconds, jobs, elapsed, machine, figure, execs = sys.argv[1:7]
rows = '\n'.join('| %s | %s s | %s |' % (t, seconds, n) for t, n in (p.split('=') for p in execs.split()))
block = f'''<!-- fuzz-campaign:begin -->
## Long fuzzing campaign

Run apart from the full run (it does not fit in its 20 minutes on 2 cores):
`sudo TGSESS_FUZZ_SECONDS={seconds} TGSESS_FUZZ_JOBS={jobs} TGSESS_FUZZ_CAMPAIGN=1 scripts/torture.sh --only fuzzing`,
{jobs} targets at a time, {int(elapsed) // 60} min {int(elapsed) % 60} s in all, on {machine}.

| target | time | inputs run |
|---|---|---|
{rows}

`{figure}`
<!-- fuzz-campaign:end -->'''
text = open('RELIABILITY.md').read()
if '<!-- fuzz-campaign:begin -->' in text:
    text = re.sub(r'<!-- fuzz-campaign:begin -->.*<!-- fuzz-campaign:end -->', lambda m: block, text, flags=re.S)
else:
    text = text.rstrip('\n') + '\n\n' + block + '\n'
open('RELIABILITY.md', 'w').write(text)
print('recorded the fuzzing campaign in RELIABILITY.md')
EOF
fi
[ "$total_failed" -eq 0 ]

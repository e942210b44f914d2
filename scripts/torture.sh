#!/usr/bin/env bash
# The torture suite: crash points and random kill -9, live writers, hostile archives, a full
# disk, simulated power loss, injected I/O errors, lock storms, bad sessions, fuzzing, the bot
# runner (tgsess-bot against a fake Bot API), and a scan of every output for secrets. Prints one
# figure line per family and a last line "N passed, M failed" (scripts/torture-report.py builds
# both, and RELIABILITY.md, from the run's results/*.jsonl); exits non-zero when M > 0.
#
#   scripts/torture.sh --quick    a few cases per family (about 3 minutes on 2 cores once built;
#                                 .ci/run runs it after scripts/test.sh built the debug products
#                                 and .venv-test)
#   scripts/torture.sh            the full run (about 20 minutes on 2 cores, plus about 45 for
#                                 power-loss and io-errors); writes RELIABILITY.md
#   scripts/torture.sh --only fuzzing,secrets   some families only (writes RELIABILITY.md only
#                                 with TGSESS_RECORD_FAMILIES=1: a block of its own, kept by later
#                                 full runs that do not run those families)
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
families=(crash-points live-writers hostile-archives disk-full power-loss io-errors lock-storms bad-sessions fuzzing bot-runner secrets)
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
  [crash-points]=CrashPointTorture [live-writers]="(LiveWriterTorture|StallTorture)" [hostile-archives]=HostileArchiveTorture
  [disk-full]=DiskFullTorture [power-loss]=PowerLossTorture [io-errors]=IOErrorTorture
  [lock-storms]=LockStormTorture [bad-sessions]=BadSessionTorture
  [fuzzing]=FuzzSmokeTorture [bot-runner]=BotRunnerTorture
)
# The report (each family's figure line, the closing "N passed, M failed", RELIABILITY.md) is
# built by scripts/torture-report.py from results/<family>.jsonl alone: the families write their
# cases and tallies there, and this script adds each family's run (exit status, seconds) and the
# libFuzzer and secret-scan results.
report() { python3 scripts/torture-report.py "$@"; }

# Records a family's run and prints its figure line.
finish_family() { # family, exit status, seconds
  printf '{"family": "%s", "run": {"status": %d, "seconds": %d}}\n' "$1" "$2" "$3" >>"$out/results/$1.jsonl"
  report line "$out" "$1" | tee -a "$log"
}

run_suite() { # family
  local family=$1 start status=0
  start=$(date +%s)
  swift test --skip-build --filter "TortureTests.${suite[$family]}" >>"$log" 2>&1 || status=$?
  finish_family "$family" "$status" $(( $(date +%s) - start ))
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
  local start status results="$out/results/fuzzing.jsonl"
  start=$(date +%s)
  # In-process: the committed regression inputs and seeds with random damage, through the same checks.
  status=0
  swift test --skip-build --filter "TortureTests.FuzzSmokeTorture" >>"$log" 2>&1 || status=$?
  if [ "$fuzz_seconds" -gt 0 ]; then
    if build_fuzzers && make_seeds; then
      local fuzz_start target execs artifacts code passed problems
      fuzz_start=$(date +%s)
      run_fuzzers
      for target in "${fuzz_targets[@]}"; do
        execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$out/fuzz/$target.log" | grep -o '[0-9]*$' || echo 0)
        execs=${execs:-0}
        artifacts=$(find "$out/fuzz/artifacts/$target" -type f | wc -l)
        code=$(cat "$out/fuzz/$target.status")
        echo "fuzz $target: $execs inputs in ${fuzz_seconds} s, exit $code, $artifacts finding(s)" | tee -a "$log"
        if [ "$artifacts" -eq 0 ] && [ "$code" = 0 ]; then
          passed=true problems='[]'
        else
          passed=false problems="[\"libFuzzer exited $code with $artifacts finding(s); see the log\"]"
          mkdir -p "Tests/StoreTests/Fixtures/fuzz-regressions/$target"
          find "$out/fuzz/artifacts/$target" -type f -exec cp {} "Tests/StoreTests/Fixtures/fuzz-regressions/$target/" \;
          tail -40 "$out/fuzz/$target.log" >>"$log"
        fi
        printf '{"family": "fuzzing", "case": "libFuzzer %s", "passed": %s, "seconds": %d, "problems": %s, "detail": "%d inputs, exit %d, %d finding(s)", "counts": {"libFuzzer inputs": %d}}\n' \
          "$target" "$passed" "$fuzz_seconds" "$problems" "$execs" "$code" "$artifacts" "$execs" >>"$results"
      done
      printf '{"family": "fuzzing", "counts": {"libFuzzer targets": %d, "libFuzzer seconds per target": %d, "libFuzzer jobs": %d, "libFuzzer seconds": %d}}\n' \
        "${#fuzz_targets[@]}" "$fuzz_seconds" "$fuzz_jobs" $(( $(date +%s) - fuzz_start )) >>"$results"
    else
      printf '{"family": "fuzzing", "case": "build the fuzz targets and their seeds", "passed": false, "seconds": 0, "problems": ["the fuzz targets or their seeds could not be built; see the log"], "detail": "", "counts": {"libFuzzer unbuilt": 1}}\n' >>"$results"
    fi
  fi
  finish_family fuzzing "$status" $(( $(date +%s) - start ))
}

# --- secrets ---------------------------------------------------------------------------------
# Every captured stdout/stderr of every tgsess run, the libFuzzer logs and this run's log, against
# every secret the deployments held (collected as they changed) and the bot token.
secrets_family() {
  local start
  start=$(date +%s)
  python3 - "$out" <<'EOF' | tee -a "$log"
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
scanned = []
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
    name = os.path.basename(path)
    if found:
        print('secret found: %s: %s' % (name, ', '.join(sorted(found))))
    scanned.append({'family': 'secrets', 'case': 'scan of ' + name, 'passed': not found, 'seconds': 0,
                    'problems': sorted(found), 'detail': ''})
# One case per output scanned; without any secret to look for, the scan proves nothing: one failed case.
lines = scanned if secrets else [{'family': 'secrets', 'case': 'secrets collected', 'passed': False, 'seconds': 0,
                                  'problems': ['no secrets were collected, so the scan proves nothing'], 'detail': ''}]
lines.append({'family': 'secrets', 'counts': {'outputs scanned': len(files), 'secret strings': len(secrets),
                                               'outputs with a hit': sum(not r['passed'] for r in scanned)}})
with open(os.path.join(out, 'results', 'secrets.jsonl'), 'a') as f:
    for line in lines:
        f.write(json.dumps(line, sort_keys=True) + '\n')
EOF
  finish_family secrets 0 $(( $(date +%s) - start ))
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
status=0
report total "$out" || status=1

# --- RELIABILITY.md --------------------------------------------------------------------------
machine="$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(uname -sr), $(. /etc/os-release && echo "$PRETTY_NAME")"
if [ -z "$only" ] && [ "$scale" = full ]; then
  report reliability "$out" --seed "$seed" --commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    --machine "$machine" --swift "$(swift --version 2>/dev/null | head -1)" --elapsed "$elapsed"
elif [ -n "$only" ] && [ "$scale" = full ] && [ "${TGSESS_RECORD_FAMILIES:-}" = 1 ] && [ -f RELIABILITY.md ]; then
  # A full-scale run of some families, recorded beside the full run's figures.
  report separate "$out" --seed "$seed" --commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    --machine "$machine" --elapsed "$elapsed"
elif [ "$only" = fuzzing ] && [ "${TGSESS_FUZZ_CAMPAIGN:-}" = 1 ] && [ -f RELIABILITY.md ]; then
  # A long fuzzing campaign, recorded beside the full run's figures.
  report campaign "$out" --seconds "$fuzz_seconds" --jobs "$fuzz_jobs" --elapsed "$elapsed" --machine "$machine"
fi
exit "$status"

#!/usr/bin/env bash
# Benchmarks tgsess at fleet scale against baselines measured in the same run, on the same files:
# the raw pipeline (tar | zstd | age) and its inverse, restic 0.14 and borg 1.2. Writes
# BENCHMARKS.md (or $BENCH_OUT) with the machine, the versions, the command, and a table of
# median / min-max times and peak RSS.
#
#   bash scripts/bench.sh                 # 1,000 and 10,000 users (the published run)
#   BENCH_USERS="100" BENCH_RUNS=1 BENCH_OUT=/tmp/b.md bash scripts/bench.sh   # the CI smoke run
#   BENCH_BASELINE_REF=b64c603 bash scripts/bench.sh   # also: what signing archives costs, measured
#                                         # against that commit's tgsess (built in a git worktree;
#                                         # BENCH_BASELINE_BIN=PATH uses one built already)
#   BENCH_ONLY=watch bash scripts/bench.sh   # only the `tgsess watch` scenario (scripts/bench_watch.py)
#   BENCH_ONLY=stall bash scripts/bench.sh   # only the bot writer's wait during backups (scripts/bench_stall.py)
#   BENCH_ONLY=churn bash scripts/bench.sh   # only the hourly churn scenario against restic
#
# The churn scenario (also part of the full run): a BENCH_CHURN_USERS fleet (default: BENCH_USERS),
# a first backup by tgsess and restic, then BENCH_CHURN_HOURS (default 3) hourly runs, each after
# scripts/bench_churn.py changed update_state and 3 entities rows (Telethon; 3 peers rows for
# Pyrogram) in BENCH_CHURN_SHARE (default 0.3) of the session files, as their clients write. It
# reports seconds, peak RSS and bytes added to the repository per run, for tgsess and restic.
#   BENCH_ONLY=fleet bash scripts/bench.sh   # only `tgsess fleet` over synthetic heartbeats
#     (BENCH_FLEET_HOSTS, default 20, x BENCH_FLEET_USERS, default 5000, on a local-path rclone remote)
#   BENCH_ONLY=checks bash scripts/bench.sh  # only list, check and prune --dry-run (50,000 more
#     signed per-user archives for prune) on a BENCH_USERS fleet after a first and an hourly
#     backup: wall, CPU (user + sys) and peak RSS per run, the first run apart (backups/.signatures
#     not made yet) from the median of the others; with BENCH_BASELINE_REF or BENCH_BASELINE_BIN,
#     the baseline binary is run alternately on the same files and the ratios are reported.
#   BENCH_ONLY=scale bash scripts/bench.sh   # only the growth tiers (BENCH_SCALE_USERS, default
#     "10000 100000"): one run of each command per tier on a `tgsess-fleet --seed 9` fleet (first
#     backup, an hourly backup after 30 % of the files changed, check, list, prune --dry-run,
#     restore/recover --user, whole restore), restic beside it on the same files; wall, CPU, peak
#     RSS, and the growth from the first tier to the last (issue 19: <= 10x for 10x the users,
#     <= 64 MiB everywhere)
#
# The watch scenario needs the real Telethon and cryptography: the test virtualenv .venv-test
# (scripts/test.sh creates it) or TGSESS_TEST_PYTHON. BENCH_WATCH_USERS (default: BENCH_USERS),
# BENCH_WATCH_SECONDS (default 180: the churn runs that long, the 20 logins spread over it) and
# BENCH_WATCH_LOGINS (default 20) size it.
#
# The stall scenario grows the bot database's message_log to each of BENCH_STALL_MIB (default
# "450 1500 3600": databases of about 0.5, 1.7 and 4 GB) and measures a writer like the bot
# (timeout=1, a commit every 5 ms) during the old one-step online backup, `tgsess backup` on the
# rollback journal, and `tgsess backup` after `tgsess migrate --wal`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
only=${BENCH_ONLY:-}
case "$only" in "" | watch | stall | churn | fleet | checks | scale) ;; *) echo "bench.sh: BENCH_ONLY must be empty, 'watch', 'stall', 'churn', 'fleet', 'checks' or 'scale', not '$only'" >&2; exit 64 ;; esac
if [ "$only" = checks ]; then
  install_system_packages time eatmydata python3-cryptography
elif [ "$only" = scale ]; then
  install_system_packages restic eatmydata time python3-cryptography
elif [ "$only" = watch ] || [ "$only" = stall ] || [ "$only" = fleet ]; then
  install_system_packages time
else
  install_system_packages restic borgbackup eatmydata time python3-cryptography
fi
users_list=${BENCH_USERS:-"1000 10000"}
runs=${BENCH_RUNS:-3}
config=${BENCH_CONFIG:-release}
out=${BENCH_OUT:-BENCHMARKS.md}
work=${BENCH_DIR:-$(mktemp -d /var/tmp/tgsess-bench-XXXXXX)}
trap '[ -z "${BENCH_KEEP:-}" ] && rm -rf "$work"' EXIT

# The release binaries as scripts/install.sh builds them (static Swift runtime); the CI smoke
# run uses a debug build.
if [ "$config" = release ]; then flags=("${TGSESS_RELEASE_FLAGS[@]}"); else flags=(-c "$config"); fi
swift build "${flags[@]}" --product tgsess >/dev/null
swift build "${flags[@]}" --product tgsess-fleet >/dev/null
bin=$(swift build "${flags[@]}" --show-bin-path)
tg="$bin/tgsess"
# The baseline for the cost of signing: the same build of a commit before archives were signed.
base_tg="${BENCH_BASELINE_BIN:-}"
if [ -z "$base_tg" ] && [ -n "${BENCH_BASELINE_REF:-}" ]; then
  git worktree add -f --detach "$work/baseline" "$BENCH_BASELINE_REF" >/dev/null 2>&1
  (cd "$work/baseline" && swift build "${flags[@]}" --product tgsess >/dev/null)
  base_tg="$(cd "$work/baseline" && swift build "${flags[@]}" --show-bin-path)/tgsess"
  trap '[ -z "${BENCH_KEEP:-}" ] && rm -rf "$work"; git worktree prune' EXIT
fi
export RESTIC_PASSWORD=bench BORG_PASSPHRASE=bench BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes BORG_BASE_DIR="$work/borg-home"

rows=()

# The watch scenario on a USERS fleet (archived once by `tgsess backup`, with a local-path rclone
# remote): start-up scan, login to proven archive and to verified remote copy, churn, CPU, RSS.
watch_python=${TGSESS_TEST_PYTHON:-$PWD/.venv-test/bin/python}
watch_bench() {
  local users=$1 root="$work/watch-$users" remote="$work/watch-remote-$users"
  # The test peers (Telethon, cryptography) come from the script that makes them for the tests.
  [ -x "$watch_python" ] || scripts/test-peers.sh >&2
  [ -x "$watch_python" ] || { echo "bench.sh: no $watch_python after scripts/test-peers.sh (the watch scenario needs Telethon and cryptography); set TGSESS_TEST_PYTHON or run scripts/test.sh" >&2; exit 1; }
  echo "== watch, $users users" >&2
  "$bin/tgsess-fleet" --root "$root" --users "$users" --seed 11 >/dev/null
  "$tg" backup --root "$root" >/dev/null 2>&1
  printf 'deployment_name = "bench"\n\n[[remotes]]\nname = "local"\npath = "%s"\n' "$remote" >"$root/tgsess.toml"
  "$watch_python" scripts/bench_watch.py "$tg" "$root" "$remote" --logins "${BENCH_WATCH_LOGINS:-20}" \
    --seconds "${BENCH_WATCH_SECONDS:-180}" >"$work/watch-$users.json"
  echo "  $(cat "$work/watch-$users.json")" >&2
  rm -rf "$root" "$remote"
}

# The watch section of the report, from the JSON each run left.
watch_report() {
  echo "## tgsess watch"
  echo
  echo "Each run: a fleet archived once by \`tgsess backup\`, a local-path rclone remote, \`tgsess watch --once\`"
  echo "(the first scan ever: no state file, every session file read), then \`tgsess watch\` (its start-up scan"
  echo "uses the state file), a writer changing entities and update_state in 30 % of the session files"
  echo "per minute for ${BENCH_WATCH_SECONDS:-180} s, and ${BENCH_WATCH_LOGINS:-20} logins by the real Telethon 1.45 spread over it (a new"
  echo "session file moved into sessions/ and a new user_sessions row with a Fernet token). Times run from"
  echo "the moment the file lands to watch's \"archived\" line (proven archive) and \"copied offsite\" line (copy"
  echo "verified by size and hash). CPU is watch's own (rclone's children apart) over the churn window;"
  echo "RSS is watch's peak (VmHWM). The restart scan is \`tgsess watch --once\` afterwards, with the state file"
  echo "(it must archive nothing)."
  echo
  echo "| users | first scan s | start-up scan s | restart scan s (archived) | logins archived / copied | login→archive p50 / p99 / max s | login→remote p50 / p99 / max s | churn commits (files) | archives from churn | watch CPU % | rclone CPU s | peak RSS MiB |"
  echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  for f in "$work"/watch-*.json; do
    [ -f "$f" ] || continue
    python3 - "$f" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("| %d | %.2f | %.2f | %.2f (%s) | %d / %d of %d | %s / %s / %s | %s / %s / %s | %d (%d) | %d | %.2f | %.1f | %.1f |" % (
    r["users"], (r["first_scan_ms"] or 0) / 1000, (r["scan_ms"] or 0) / 1000, (r["restart_scan_ms"] or 0) / 1000, r["restart_archived"], r["archived"], r["copied"], r["logins"],
    r["local_p50_s"], r["local_p99_s"], r["local_max_s"], r["remote_p50_s"], r["remote_p99_s"], r["remote_max_s"],
    r["churn_commits"], r["churned_files"], r["churn_archives"], r["cpu_percent"], r["rclone_cpu_s"], r["rss_peak_mib"]))
PY
  done
}

# The stall scenario at one database size (see the header).
stall_bench() {
  local mib=$1 root="$work/stall-$1"
  local db="$root/data/telegram_bot.db"
  echo "== stall, message_log $mib MiB" >&2
  "$bin/tgsess-fleet" --root "$root" --users 100 --message-log-mib "$mib" --seed 7 >/dev/null
  # The machine's own figure: the writer alone, for as long as a backup takes.
  python3 scripts/bench_stall.py "$db" "no backup (the writer alone for 20 s)" -- sleep 20 >>"$work/stall.jsonl"
  # The baseline: the online backup in one step (sqlite3_backup_step(-1)), as tgsess took it before.
  python3 scripts/bench_stall.py "$db" "one-step online backup (the old way)" -- python3 -c \
    'import sqlite3, sys; s = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True); d = sqlite3.connect(sys.argv[2]); s.backup(d); d.close()' \
    "$db" "$work/one-step.db" >>"$work/stall.jsonl"
  rm -f "$work/one-step.db"
  python3 scripts/bench_stall.py "$db" "tgsess backup (rollback journal)" -- "$tg" backup --root "$root" >>"$work/stall.jsonl"
  "$tg" migrate --root "$root" --wal >/dev/null
  python3 scripts/bench_stall.py "$db" "tgsess backup (WAL, after migrate --wal)" -- "$tg" backup --root "$root" >>"$work/stall.jsonl"
  tail -4 "$work/stall.jsonl" | sed 's/^/  /' >&2
  rm -rf "$root"
}

# The stall section of the report, from the JSON lines the runs left.
stall_report() {
  echo "## A backup never stalls the bot"
  echo
  echo "Each row: a writer like the bot (\`sqlite3.connect(timeout=1)\`, one transaction every 5 ms inserting into"
  echo "message_log and counting it in copy_stats; scripts/bench_stall.py) runs for 1 s, then through one run of the"
  echo "command, then 0.5 s more. \"longest wait\" is the writer's longest transaction from the start of the run on"
  echo "(its wait for the backup's read lock included); a \"database is locked\" error is counted and the writer goes"
  echo "on. The database file is read into the page cache before each run, as a live bot's is. The fleet is"
  echo "\`tgsess-fleet --users 100 --message-log-mib N --seed 7\`; \"no backup\" is the writer alone on the same machine"
  echo "at the same time (its own commit latency: fsync, scheduling)."
  echo
  echo "| database MiB | run | journal | exit | run s | locked errors | longest wait ms | p99 wait ms | commits | message |"
  echo "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
  python3 - "$work/stall.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    note = r["message"] or (r["stderr"] if r["exit"] else "")
    print("| %d | %s | %s | %d | %.2f | %d | %.1f | %.1f | %d | %s |" % (
        r["db_mib"], r["label"], r["journal_mode"], r["exit"], r["seconds"], r["errors"], r["longest_ms"],
        r["p99_ms"], r["commits"], note.replace("|", "\\|")))
PY
}

if [ "$only" = stall ]; then
  : >"$work/stall.jsonl"
  for mib in ${BENCH_STALL_MIB:-450 1500 3600}; do stall_bench "$mib"; done
  {
    echo "# Benchmarks: a backup never stalls the bot"
    echo
    echo "Produced by \`${BENCH_COMMAND:-BENCH_ONLY=stall bash scripts/bench.sh}\` on $(date -u +%Y-%m-%d)."
    echo
    echo "- Machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr); disk: $(df -h "$work" | awk 'NR==2 {print $1}'); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- $("$tg" --version | sed 's/^/tgsess /') ($config build), Python $(python3 -c 'import sqlite3, sys; print(sys.version.split()[0], "with SQLite", sqlite3.sqlite_version)')"
    echo
    stall_report
  } >"$out"
  echo "wrote $out" >&2
  exit 0
fi

# plant_prune_archives ROOT USER: 50,000 per-user archives for prune to plan over (5,000 users of
# 10), hard links of USER's newest real one under new ids, each signed with the deployment's key as
# tgsess signs (prune counts signed archives only): the source's statement with the copy's id, user
# and time.
plant_prune_archives() {
  local root=$1 user=$2 srcs src srcid
  srcs=("$root/backups/users/user_$user/"*.tar.zst.age)
  src=${srcs[0]}
  srcid=$(basename "$src" .tar.zst.age)
  python3 - "$root/backups/users" "$src" "$srcid" 50000 "$root/keys/signing.key" <<'PY'
import base64, datetime, hashlib, json, os, sys
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key
users_dir, src, srcid, n, keyfile = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
record = json.load(open(src[: -len(".tar.zst.age")] + ".json"))
fields = dict(l.split(" ", 1) for l in open(src[: -len(".tar.zst.age")] + ".sig").read().splitlines()[1:])
key = load_pem_private_key(open(keyfile, "rb").read(), None)
key_id = hashlib.sha256(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()[:16]
base = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
for i in range(n):
    uid = 900000000 + i // 10
    d = os.path.join(users_dir, "user_%d" % uid)
    os.makedirs(d, exist_ok=True)
    t = base + datetime.timedelta(minutes=i)
    aid = "%s-u%d-b%05d" % (t.strftime("%Y%m%dT%H%M%SZ"), uid, i)
    os.link(src, os.path.join(d, aid + ".tar.zst.age"))
    r = dict(record, id=aid, file_name=aid + ".tar.zst.age", user_id=uid, created_at=t.strftime("%Y-%m-%dT%H:%M:%SZ"))
    with open(os.path.join(d, aid + ".json"), "w") as f:
        json.dump(r, f)
    lines = ["tgsess archive signature v1", "id " + aid, "kind user", "user %d" % uid,
             "created " + t.strftime("%Y-%m-%dT%H:%M:%SZ"), "reason " + fields["reason"], "encryption age",
             "file-size " + fields["file-size"], "file-sha256 " + fields["file-sha256"],
             "manifest-sha256 " + fields["manifest-sha256"], "key " + key_id]
    signed = "".join(l + "\n" for l in lines).encode()
    with open(os.path.join(d, aid + ".sig"), "wb") as f:
        f.write(signed + b"signature " + base64.b64encode(key.sign(signed)) + b"\n")
PY
}

# The hourly churn scenario on a USERS fleet: tgsess and restic each take a first backup, then
# HOURS times the writer changes a share of the session files and both back up again. Per run:
# seconds (GNU time), peak RSS and the bytes the run added to its repository (du -sb before and
# after; tgsess's backups/ holds every archive and record, restic's repository every pack).
churn_bench() {
  local users=$1 hours=${BENCH_CHURN_HOURS:-3} share=${BENCH_CHURN_SHARE:-0.3}
  local root="$work/churn-$users" repo="$work/churn-restic-$users" tsv="$work/churn-$users.tsv"
  echo "== churn, $users users, $hours hourly runs, ${share} of the files changed before each" >&2
  eatmydata "$bin/tgsess-fleet" --root "$root" --users "$users" --seed 7 >/dev/null
  echo "$users $(du -sb "$root/data" "$root/sessions" | awk '{s+=$1} END {printf "%.0f\n", s}')" >"$work/churn-size-$users.txt"
  restic init -q -r "$repo" >/dev/null
  : >"$tsv"
  # run_one TOOL HOUR DIR -- command...: one timed run, its bytes added to DIR.
  run_one() {
    local tool=$1 hour=$2 dir=$3; shift 3
    local before after stats secs kb user sys cpu
    before=$(du -sb "$dir" 2>/dev/null | awk '{print $1}')
    stats=$(mktemp)
    /usr/bin/time -f "%e %M %U %S" -o "$stats" "$@" >/dev/null 2>"$work/last.err" || { cat "$work/last.err" >&2; echo "failed: $*" >&2; exit 1; }
    read -r secs kb user sys <"$stats"
    rm -f "$stats"
    cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN {printf "%.2f", u + s}')
    after=$(du -sb "$dir" | awk '{print $1}')
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$hour" "$secs" "$((${after:-0} - ${before:-0}))" "$((kb / 1024))" "$cpu" >>"$tsv"
    echo "  $tool run $hour: ${secs}s (CPU ${cpu}s), +$(((${after:-0} - ${before:-0}) / 1024)) KiB, peak RSS $((kb / 1024)) MiB" >&2
  }
  mkdir -p "$root/backups"
  run_one tgsess 0 "$root/backups" "$tg" backup --root "$root"
  run_one restic 0 "$repo" restic -q -r "$repo" backup "$root/data" "$root/sessions"
  for ((hour = 1; hour <= hours; hour++)); do
    # eatmydata: the writer's own fsyncs (one per commit, as Telethon's) are not what is measured.
    echo "  writer: $(eatmydata python3 scripts/bench_churn.py "$root/sessions" --share "$share" --seed "$hour")" >&2
    run_one tgsess "$hour" "$root/backups" "$tg" backup --root "$root"
    run_one restic "$hour" "$repo" restic -q -r "$repo" backup "$root/data" "$root/sessions"
  done
  cut -d' ' -f1-3 /proc/loadavg >"$work/churn-load-$users.txt"
  rm -rf "$root" "$repo"
}

# The churn section of the report, from the TSV each run left.
churn_report() {
  echo "## Hourly churn against restic"
  echo
  echo "Each scenario: \`tgsess-fleet --users N --seed 7\`, a first backup by \`tgsess backup\` (full snapshot"
  echo "plus one per-user archive per user) and by \`restic backup data sessions\`, then ${BENCH_CHURN_HOURS:-3} hourly runs of"
  echo "both, each after \`scripts/bench_churn.py --share ${BENCH_CHURN_SHARE:-0.3}\` changed \`update_state\` and 3 \`entities\` rows (3"
  echo "\`peers\` rows in Pyrogram files) in that share of the session files, one Telethon-style commit per file."
  echo "Run 0 is the first backup. Bytes added: \`du -sb\` of \`backups/\` (tgsess) or of the repository (restic)"
  echo "after the run minus before it. CPU is user + system seconds (GNU time), the fairer figure on a loaded machine. Load average when the scenario ended: $(cat "$work"/churn-load-*.txt 2>/dev/null | head -1)."
  echo
  echo "| users | run | tgsess s | tgsess CPU s | tgsess MiB added | tgsess peak RSS MiB | restic s | restic CPU s | restic MiB added | restic peak RSS MiB | time ratio |"
  echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  for f in "$work"/churn-*.tsv; do
    [ -f "$f" ] || continue
    local u=${f##*/churn-}
    u=${u%.tsv}
    awk -F'\t' -v u="$u" '
      $1 == "tgsess" { ts[$2] = $3; tb[$2] = $4; tr[$2] = $5; tc[$2] = $6; n = ($2 > n ? $2 : n) }
      $1 == "restic" { rs[$2] = $3; rb[$2] = $4; rr[$2] = $5; rc[$2] = $6 }
      END { for (h = 0; h <= n; h++) printf "| %s | %d | %s | %s | %.1f | %s | %s | %s | %.1f | %s | %.2f |\n", u, h, ts[h], tc[h], tb[h] / 1048576, tr[h], rs[h], rc[h], rb[h] / 1048576, rr[h], (rs[h] > 0 ? ts[h] / rs[h] : 0) }' "$f"
  done
}

if [ "$only" = churn ]; then
  for users in ${BENCH_CHURN_USERS:-$users_list}; do churn_bench "$users"; done
  {
    echo "# Benchmarks: hourly churn"
    echo
    echo "Produced by \`${BENCH_COMMAND:-BENCH_ONLY=churn bash scripts/bench.sh}\` on $(date -u +%Y-%m-%d)."
    echo
    echo "- Machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- $("$tg" --version | sed 's/^/tgsess /') ($config build), $(restic version | head -1)"
    for f in "$work"/churn-size-*.txt; do read -r u b <"$f"; echo "- $u users: $((b / 1048576)) MiB of database and session files"; done
    echo
    churn_report
  } >"$out"
  echo "wrote $out" >&2
  exit 0
fi

# The fleet scenario: `tgsess fleet` reads HOSTS heartbeats of USERS users each from a local-path
# rclone remote (written by scripts/bench_fleet.py, with users on two hosts to judge) and must
# finish in 2 s within 64 MiB. Exit 2 is its verdict (CRITICAL: the planted duplicate keys).
fleet_bench() {
  local hosts=${BENCH_FLEET_HOSTS:-20} users=${BENCH_FLEET_USERS:-5000} remote="$work/fleet-remote"
  local layout times=() cpus=() rss=0
  layout=$(python3 scripts/bench_fleet.py "$remote" "$hosts" "$users" 10)
  echo "== fleet: $layout" >&2
  for ((i = 0; i < runs; i++)); do
    local stats status=0
    stats=$(mktemp)
    /usr/bin/time -f "%e %M %U %S" -o "$stats" "$tg" fleet --root "$work" --remote-path "$remote" --json >"$work/fleet.json" 2>"$work/last.err" || status=$?
    [ "$status" = 2 ] || { cat "$work/last.err" >&2; echo "bench.sh: tgsess fleet exited $status, not 2 (CRITICAL)" >&2; exit 1; }
    # GNU time puts "Command exited with non-zero status 2" before its figures.
    read -r secs kb user sys < <(tail -1 "$stats")
    rm -f "$stats"
    times+=("$secs")
    cpus+=("$(awk -v u="$user" -v s="$sys" 'BEGIN {printf "%.2f", u + s}')")
    ((kb > rss)) && rss=$kb
  done
  local found sorted
  found=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("%d hosts, %d users, %d duplicate-key, %d different-keys" % (len(r["hosts"]), r["users"], sum(f["kind"]=="duplicate-key" for f in r["findings"]), sum(f["kind"]=="different-keys" for f in r["findings"])))' "$work/fleet.json")
  sorted=$(printf '%s\n' "${times[@]}" | sort -g)
  cpu=$(printf '%s\n' "${cpus[@]}" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')
  {
    echo "## tgsess fleet"
    echo
    echo "\`tgsess fleet --remote-path REMOTE --json\` over $hosts heartbeats of $users users each ($layout; scripts/bench_fleet.py) on a"
    echo "local-path rclone remote: rclone lsjson + copy of the state files, then parse, validate and judge. Found: $found."
    echo
    echo "| hosts x users | runs | median s | min-max s | CPU s (user+sys, rclone included), median | peak RSS MiB | load average | target |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |"
    echo "| $hosts x $users | $runs | $(echo "$sorted" | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}') | $(echo "$sorted" | head -1)-$(echo "$sorted" | tail -1) | $cpu | $((rss / 1024)) | $(cut -d' ' -f1-3 /proc/loadavg) | <= 2 s, <= 64 MiB |"
  } >"$work/fleet-section.md"
  cat "$work/fleet-section.md" >&2
}

if [ "$only" = fleet ]; then
  fleet_bench
  {
    echo "# Benchmarks: tgsess fleet"
    echo
    echo "Produced by \`${BENCH_COMMAND:-BENCH_ONLY=fleet bash scripts/bench.sh}\` on $(date -u +%Y-%m-%d)."
    echo
    echo "- Machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- $("$tg" --version | sed 's/^/tgsess /') ($config build), $(rclone version | head -1)"
    echo
    cat "$work/fleet-section.md"
  } >"$out"
  echo "wrote $out" >&2
  exit 0
fi

# The checks scenario (list, check, prune --dry-run) on a USERS fleet, the new binary and the
# baseline alternately on the same files. Each row of $work/checks.tsv: operation, users, binary,
# run, wall s, CPU s (user + sys), peak RSS KiB.
checks_bench() {
  local users=$1 root="$work/checks-$users" mib user
  mib=$((users >= 10000 ? 90 : users / 100 + 1))
  echo "== checks, $users users" >&2
  eatmydata "$bin/tgsess-fleet" --root "$root" --users "$users" --message-log-mib "$mib" --seed 7 >/dev/null
  # As in the full run: a first backup (full + per-user), then an hourly one.
  "$tg" backup --root "$root" >/dev/null 2>&1
  "$tg" backup --root "$root" >/dev/null 2>&1
  one() {
    local label=$1 which=$2 run=$3; shift 3
    local stats secs kb cpu user sys
    stats=$(mktemp)
    /usr/bin/time -f "%e %M %U %S" -o "$stats" "$@" >/dev/null 2>"$work/last.err" || [ "$label" = check ] || { cat "$work/last.err" >&2; echo "failed: $*" >&2; exit 1; }
    read -r secs kb user sys < <(tail -1 "$stats")
    rm -f "$stats"
    cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN {printf "%.2f", u + s}')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$users" "$which" "$run" "$secs" "$cpu" "$kb" >>"$work/checks.tsv"
    echo "  $label $which run $run: ${secs}s, CPU ${cpu}s, peak RSS $((kb / 1024)) MiB" >&2
  }
  both() {
    local label=$1 i; shift
    for ((i = 0; i <= runs; i++)); do
      one "$label" new "$i" "$tg" "$@"
      if [ -n "$base_tg" ]; then one "$label" base "$i" "$base_tg" "$@"; fi
    done
  }
  both list list --root "$root"
  both check check --root "$root" --no-write
  # sed reads the whole listing: head would end ls with SIGPIPE, fatal under pipefail at 10,000 users.
  user=$(ls "$root/backups/users" | sed -n 1p)
  plant_prune_archives "$root" "${user#user_}"
  archives=$(find "$root/backups" -name '*.tar.zst.age' | wc -l)
  echo "$users $archives" >>"$work/checks-archives.txt"
  # Archives this young are verified but not yet cached (see SignatureVerdicts: racy interval).
  sleep 2
  both prune prune --root "$root" --dry-run
  rm -rf "$root"
}

# The checks section of the report, from $work/checks.tsv.
checks_report() {
  echo "## list, check and prune --dry-run${base_tg:+ against the baseline}"
  echo
  echo "Each operation: run 0 first (no backups/.signatures yet: every signature is read and verified,"
  echo "and the verdicts are written), then $runs more, whose median is shown; the baseline (${BENCH_BASELINE_REF:-${BENCH_BASELINE_BIN:-none}})"
  echo "runs right after each, on the same files. prune plans over the fleet's archives plus 50,000 signed"
  echo "per-user archives of 5,000 more users. CPU is user + system seconds (GNU time), the fairer figure on a"
  echo "shared machine. Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo
  echo "| operation | users | archives | new: run 0 s / CPU s | new: median s / CPU s | new: peak RSS MiB | base: median s / CPU s | base: peak RSS MiB | new/base wall | new/base CPU |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  python3 - "$work/checks.tsv" "$work/checks-archives.txt" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
archives = dict(l.split() for l in open(sys.argv[2])) if len(sys.argv) > 2 else {}
keys = []
for r in rows:
    if (r[0], r[1]) not in keys:
        keys.append((r[0], r[1]))
for op, users in keys:
    def pick(which, first):
        return [r for r in rows if r[0] == op and r[1] == users and r[2] == which and (r[3] == "0") == first]
    zero, warm, base = pick("new", True), pick("new", False), pick("base", False) + pick("base", True)
    med = lambda rs, i: statistics.median(float(r[i]) for r in rs) if rs else float("nan")
    rss = lambda rs: max(int(r[6]) for r in rs) // 1024 if rs else 0
    nw, nc, bw, bc = med(warm, 4), med(warm, 5), med(base, 4), med(base, 5)
    print("| %s | %s | %s | %s / %s | %.2f / %.2f | %d | %s | %s | %s | %s |" % (
        op, users, archives.get(users, "-") if op == "prune" else "-",
        zero[0][4] if zero else "-", zero[0][5] if zero else "-", nw, nc, rss(zero + warm),
        ("%.2f / %.2f" % (bw, bc)) if base else "-", rss(base) if base else "-",
        ("%.2f" % (nw / bw)) if base and bw > 0 else "-", ("%.2f" % (nc / bc)) if base and bc > 0 else "-"))
PY
}

# The growth tiers: one run of each command per USERS fleet, restic beside it on the same files.
# Each row of $work/scale.tsv: operation, users, wall s, CPU s (user + sys), peak RSS KiB.
scale_bench() {
  local users=$1 root="$work/scale-$users" repo="$work/scale-restic-$users" sessions k name
  echo "== scale, $users users" >&2
  timed() { # LABEL command...: one run
    local label=$1 stats secs kb user sys cpu; shift
    stats=$(mktemp)
    # check exits 1 or 2 on findings (the fleet's planted faults): only its figures matter here.
    /usr/bin/time -f "%e %M %U %S" -o "$stats" "$@" >/dev/null 2>"$work/last.err" || [[ "$label" == "tgsess check"* ]] || { cat "$work/last.err" >&2; echo "failed: $*" >&2; exit 1; }
    read -r secs kb user sys < <(tail -1 "$stats")
    rm -f "$stats"
    cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN {printf "%.2f", u + s}')
    printf '%s\t%s\t%s\t%s\t%s\n' "$label" "$users" "$secs" "$cpu" "$kb" >>"$work/scale.tsv"
    echo "  $label: ${secs}s, CPU ${cpu}s, peak RSS $((kb / 1024)) MiB" >&2
  }
  # Ten single-user runs, each on another user spread over the fleet: the median wall and CPU.
  per_user() { # LABEL command... with @USER
    local label=$1 tsv="$work/scale-one.tsv" user; shift
    : >"$tsv"
    for user in "${scale_users[@]}"; do
      rm -f "$root/sessions/user_$user.session"
      local args=("${@//@USER/$user}") stats t0 t1 kb cpu u s
      stats=$(mktemp)
      t0=$EPOCHREALTIME
      /usr/bin/time -f "%M %U %S" -o "$stats" "${args[@]}" >/dev/null 2>"$work/last.err" || { cat "$work/last.err" >&2; echo "failed: ${args[*]}" >&2; exit 1; }
      t1=$EPOCHREALTIME
      read -r kb u s < <(tail -1 "$stats")
      rm -f "$stats"
      printf '%s\t%s\t%s\n' "$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.4f", b - a}')" "$(awk -v u="$u" -v s="$s" 'BEGIN {printf "%.2f", u + s}')" "$kb" >>"$tsv"
    done
    python3 - "$tsv" "$label" "$users" >>"$work/scale.tsv" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
print("%s\t%s\t%.4f\t%.2f\t%d" % (sys.argv[2], sys.argv[3], statistics.median(float(r[0]) for r in rows),
    statistics.median(float(r[1]) for r in rows), max(int(r[2]) for r in rows)))
PY
    echo "  $(tail -1 "$work/scale.tsv" | cut -f1,3-)" >&2
  }
  timed "generate the fleet (tgsess-fleet, not fsynced)" eatmydata "$bin/tgsess-fleet" --root "$root" --users "$users" --seed 9
  echo "$users $(du -sb "$root/data" "$root/sessions" | awk '{s+=$1} END {printf "%.0f\n", s}')" >>"$work/scale-sizes.txt"
  restic init -q -r "$repo" >/dev/null
  timed "tgsess backup, first (full + per-user)" "$tg" backup --root "$root"
  timed "restic backup, first" restic -q -r "$repo" backup "$root/data" "$root/sessions"
  echo "  writer: $(eatmydata python3 scripts/bench_churn.py "$root/sessions" --share 0.3 --seed 1)" >&2
  timed "tgsess backup, hourly (30 % of files changed)" "$tg" backup --root "$root"
  timed "restic backup, incremental (the same change)" restic -q -r "$repo" backup "$root/data" "$root/sessions"
  # Signature verdicts are recorded for files older than 2 s (SignatureVerdicts' racy interval).
  sleep 2
  timed "tgsess check --no-write (first: verifies every signature)" "$tg" check --root "$root" --no-write
  timed "tgsess check --no-write" "$tg" check --root "$root" --no-write
  timed "tgsess list" "$tg" list --root "$root"
  echo "$users $(find "$root/backups" -name '*.tar.zst.age' | wc -l)" >>"$work/scale-archives.txt"
  timed "tgsess prune --dry-run (every archive of the tier)" "$tg" prune --root "$root" --dry-run
  sessions=("$root"/sessions/user_*.session)
  scale_users=()
  for ((k = 0; k < 10; k++)); do
    name=$(basename "${sessions[k * ${#sessions[@]} / 10]}" .session)
    scale_users+=("${name#user_}")
  done
  per_user "tgsess restore --user (median of 10)" "$tg" restore latest --root "$root" --user @USER --force
  per_user "tgsess recover --user (median of 10)" "$tg" recover --root "$root" --user @USER
  rm -rf "$work/scale-target"
  timed "tgsess restore --target (whole)" "$tg" restore latest --root "$root" --target "$work/scale-target"
  rm -rf "$work/scale-target"
  timed "restic restore" restic -q -r "$repo" restore latest --target "$work/scale-target"
  rm -rf "$root" "$repo" "$work/scale-target"
}

# The growth section of the report, from $work/scale.tsv: one column pair per tier, and the growth
# from the first tier to the last.
scale_report() {
  echo "## Growth with the fleet"
  echo
  echo "One run of each command per tier (\`tgsess-fleet --users N --seed 9\`), in this order on the same"
  echo "deployment: a first backup by tgsess and restic, \`scripts/bench_churn.py --share 0.3\`, an hourly"
  echo "backup by both, check (the first verifies every archive signature; the second uses the verdicts),"
  echo "list, prune --dry-run, restore --user and recover --user of 10 users spread over the fleet (median;"
  echo "each user's session file removed first), a whole restore into an empty --target, and restic's restore."
  echo "CPU is user + system seconds (GNU time). Growth is last tier over first (the goal: <= 10x for 10x the"
  echo "users); RSS flags every figure above 64 MiB. Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo
  python3 - "$work/scale.tsv" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
tiers = []
ops = []
for r in rows:
    if r[1] not in tiers: tiers.append(r[1])
    if r[0] not in ops: ops.append(r[0])
cell = {(r[0], r[1]): r for r in rows}
head = "| operation | " + " | ".join("%s users: s (CPU s), peak RSS MiB" % format(int(t), ",") for t in tiers)
head += " | growth s (CPU) |" if len(tiers) > 1 else " |"
print(head)
print("| --- |" + " ---: |" * len(tiers) + (" ---: |" if len(tiers) > 1 else ""))
for op in ops:
    cells = []
    for t in tiers:
        r = cell.get((op, t))
        if not r:
            cells.append("-")
            continue
        rss = int(r[4]) // 1024
        cells.append("%s (%s), %d%s" % (r[2], r[3], rss, " **> 64**" if rss > 64 and not op.startswith(("restic", "generate")) else ""))
    growth = ""
    if len(tiers) > 1:
        a, b = cell.get((op, tiers[0])), cell.get((op, tiers[-1]))
        if a and b and float(a[2]) > 0 and float(a[3]) > 0:
            growth = " | %.1fx (%.1fx)" % (float(b[2]) / float(a[2]), float(b[3]) / float(a[3]))
        else:
            growth = " | -"
    print("| %s | %s%s |" % (op, " | ".join(cells), growth) if len(tiers) > 1 else "| %s | %s |" % (op, " | ".join(cells)))
PY
}

if [ "$only" = scale ]; then
  : >"$work/scale.tsv"
  : >"$work/scale-sizes.txt"
  : >"$work/scale-archives.txt"
  for users in ${BENCH_SCALE_USERS:-10000 100000}; do scale_bench "$users"; done
  {
    echo "# Benchmarks: growth with the fleet"
    echo
    echo "Produced by \`${BENCH_COMMAND:-BENCH_ONLY=scale bash scripts/bench.sh}\` on $(date -u +%Y-%m-%d)."
    echo
    echo "- Machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr); disk: $(df -h "$work" | awk 'NR==2 {print $1}')"
    echo "- $("$tg" --version | sed 's/^/tgsess /') ($config build), $(restic version | head -1)"
    while read -r u b; do echo "- $u users: $((b / 1048576)) MiB of database and session files; $(awk -v u="$u" '$1 == u {print $2}' "$work/scale-archives.txt") archives when prune ran"; done <"$work/scale-sizes.txt"
    echo
    scale_report
  } >"$out"
  echo "wrote $out" >&2
  exit 0
fi

if [ "$only" = checks ]; then
  : >"$work/checks.tsv"
  : >"$work/checks-archives.txt"
  for users in $users_list; do checks_bench "$users"; done
  {
    echo "# Benchmarks: list, check and prune"
    echo
    echo "Produced by \`${BENCH_COMMAND:-BENCH_ONLY=checks bash scripts/bench.sh}\` on $(date -u +%Y-%m-%d)."
    echo
    echo "- Machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- $("$tg" --version | sed 's/^/tgsess /') ($config build)"
    echo
    checks_report
  } >"$out"
  echo "wrote $out" >&2
  exit 0
fi

if [ "$only" = watch ]; then
  for users in ${BENCH_WATCH_USERS:-$users_list}; do watch_bench "$users"; done
  {
    echo "# Benchmarks: tgsess watch"
    echo
    echo "Produced by \`${BENCH_COMMAND:-BENCH_ONLY=watch bash scripts/bench.sh}\` on $(date -u +%Y-%m-%d)."
    echo
    echo "- Machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- $("$tg" --version | sed 's/^/tgsess /') ($config build), $(rclone version | head -1)"
    echo
    watch_report
  } >"$out"
  echo "wrote $out" >&2
  exit 0
fi
# measure LABEL USERS BASELINE_LABEL -- command...: runs the command $runs times (a "prepare"
# function named in $prepare, if set, runs before each), records median/min/max seconds and the
# peak RSS, and prints a row. Results are kept in $work/results.tsv.
measure() {
  local label=$1 users=$2; shift 2
  local times=() rss=0
  for ((i = 0; i < runs; i++)); do
    [ -n "${prepare:-}" ] && $prepare
    local t0 t1 stats
    stats=$(mktemp)
    /usr/bin/time -f "%e %M" -o "$stats" "$@" >/dev/null 2>"$work/last.err" || { cat "$work/last.err" >&2; echo "failed: $*" >&2; exit 1; }
    read -r secs kb <"$stats"
    rm -f "$stats"
    times+=("$secs")
    ((kb > rss)) && rss=$kb
  done
  local sorted median min max
  sorted=$(printf '%s\n' "${times[@]}" | sort -g)
  min=$(echo "$sorted" | head -1)
  max=$(echo "$sorted" | tail -1)
  median=$(echo "$sorted" | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$users" "$median" "$min" "$max" "$((rss / 1024))" >>"$work/results.tsv"
  echo "  $label ($users users): median ${median}s [${min}-${max}] peak RSS $((rss / 1024)) MiB" >&2
}

# Single-user operations (the 20 ms target): COUNT runs, each on the next of the users in
# $single_users (so no user's history grows with the benchmark), every argument "@USER" replaced
# by that user; a "prepare" function named in $prepare gets the user too. Wall time is taken with
# bash's $EPOCHREALTIME around the run (microseconds; GNU time's %e has 10 ms steps), peak RSS
# from GNU time.
measure_users() {
  local label=$1 users=$2 count=$3; shift 3
  local times=() rss=0
  for ((i = 0; i < count; i++)); do
    local user=${single_users[i % ${#single_users[@]}]}
    [ -n "${prepare:-}" ] && $prepare "$user"
    local args=("${@//@USER/$user}") stats t0 t1
    stats=$(mktemp)
    t0=$EPOCHREALTIME
    /usr/bin/time -f "%M" -o "$stats" "${args[@]}" >/dev/null 2>"$work/last.err" || { cat "$work/last.err" >&2; echo "failed: ${args[*]}" >&2; exit 1; }
    t1=$EPOCHREALTIME
    read -r kb <"$stats"
    rm -f "$stats"
    times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.4f", b - a}')")
    ((kb > rss)) && rss=$kb
  done
  local sorted
  sorted=$(printf '%s\n' "${times[@]}" | sort -g)
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$users" \
    "$(echo "$sorted" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')" \
    "$(echo "$sorted" | head -1)" "$(echo "$sorted" | tail -1)" "$((rss / 1024))" >>"$work/results.tsv"
  echo "  $label ($users users): median $(echo "$sorted" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')s peak RSS $((rss / 1024)) MiB" >&2
}

: >"$work/results.tsv"
for users in $users_list; do
  echo "== $users users" >&2
  root="$work/fleet-$users"
  mib=$((users >= 10000 ? 90 : users / 100 + 1))
  eatmydata "$bin/tgsess-fleet" --root "$root" --users "$users" --message-log-mib "$mib" --seed 7 >/dev/null
  recipient=$(grep -m1 -v '^#' "$root/keys/age-recipients.txt")
  identity="$root/keys/age-identity.txt"
  inbytes=$(du -sb "$root/data" "$root/sessions" | awk '{s+=$1} END {printf "%.0f\n", s}')
  echo "$users $inbytes" >>"$work/sizes.txt"

  # Baselines on the same files.
  prepare="" measure "raw pipeline: tar | zstd -T0 | age" "$users" \
    bash -c "tar -C '$root' -cf - data sessions | zstd -q -T0 | age -r '$recipient' -o '$work/raw.tar.zst.age'"
  restic_prepare() { rm -rf "$work/restic"; restic init -q -r "$work/restic" >/dev/null; }
  prepare=restic_prepare measure "restic 0.14 backup (first)" "$users" \
    restic -q -r "$work/restic" backup "$root/data" "$root/sessions"
  borg_prepare() { rm -rf "$work/borg"; borg init -e repokey "$work/borg" >/dev/null 2>&1; }
  prepare=borg_prepare measure "borg 1.2 create (first)" "$users" \
    borg create "$work/borg::a" "$root/data" "$root/sessions"

  # tgsess backup: the first run (full snapshot + a per-user backup of every user), then the
  # steady hourly run (full snapshot; sessions unchanged).
  first_prepare() { rm -rf "$root/backups"; }
  # (Every measure call names its prepare function, or none, as a prefix: a plain assignment
  # here once left first_prepare, which deletes the archives, in place for the prune run.)
  runs_saved=$runs
  runs=1 prepare=first_prepare measure "tgsess backup, first (full + $users per-user)" "$users" "$tg" backup --root "$root"
  runs=$runs_saved
  prepare="" measure "tgsess backup (hourly: full snapshot, write-then-prove)" "$users" "$tg" backup --root "$root"
  if [ -n "$base_tg" ]; then
    # The same hourly run without signing (the baseline commit reads and writes no signature).
    prepare="" measure "baseline tgsess backup (hourly, unsigned)" "$users" "$base_tg" backup --root "$root"
    # Its unsigned archives would make check warn (and exit 1) below: they go.
    find "$root/backups" -name '*.tar.zst.age' | while read -r a; do
      [ -e "${a%.tar.zst.age}.sig" ] || rm -f "$a" "${a%.tar.zst.age}.json"
    done
  fi
  sessions=("$root"/sessions/user_*.session)
  single_users=()
  for ((k = 0; k < 10; k++)); do
    name=$(basename "${sessions[k * ${#sessions[@]} / 10]}" .session)
    single_users+=("${name#user_}")
  done
  user=${single_users[0]}
  prepare="" measure_users "tgsess backup --user (per-user)" "$users" 10 "$tg" backup --root "$root" --user @USER --reason Manual
  archives=$(find "$root/backups" -name '*.tar.zst.age' | wc -l)
  prepare="" measure "tgsess list (all $archives archives)" "$users" "$tg" list --root "$root"
  if [ -n "$base_tg" ]; then
    prepare="" measure "baseline tgsess list (all $archives archives, no signatures checked)" "$users" "$base_tg" list --root "$root"
  fi
  prepare="" measure "tgsess check" "$users" "$tg" check --root "$root" --no-write
  prepare="" measure "tgsess check --deep" "$users" "$tg" check --root "$root" --deep --no-write

  # Restores.
  fulls=("$root"/backups/full/*.tar.zst.age)
  full=${fulls[${#fulls[@]}-1]}
  target_prepare() { rm -rf "$work/target"; }
  prepare=target_prepare measure "raw inverse: age -d | zstd -d | tar -x" "$users" \
    bash -c "mkdir -p '$work/target' && age -d -i '$identity' '$full' | zstd -q -d | tar -C '$work/target' -xf -"
  prepare=target_prepare measure "tgsess restore --target (whole)" "$users" "$tg" restore latest --root "$root" --target "$work/target"
  restic_restore_prepare() { rm -rf "$work/target"; }
  prepare=restic_restore_prepare measure "restic 0.14 restore" "$users" restic -q -r "$work/restic" restore latest --target "$work/target"
  prepare=restic_restore_prepare measure "borg 1.2 extract" "$users" bash -c "mkdir -p '$work/target' && cd '$work/target' && borg extract '$work/borg::a'"
  break_user() { rm -f "$root/sessions/user_$1.session"; }
  prepare=break_user measure_users "tgsess recover --user (file missing)" "$users" 10 "$tg" recover --root "$root" --user @USER
  prepare=break_user measure_users "tgsess restore --user (per-user archive)" "$users" 10 "$tg" restore latest --root "$root" --user @USER --force
  if [ -n "$base_tg" ]; then
    # The same restores without verifying signatures: 10 more runs each, alternating, so both
    # see the same disk and the same archives (the baseline ignores the .sig files).
    for ((k = 0; k < 10; k++)); do
      prepare=break_user measure_users "signed restore --user (alternating)" "$users" 1 "$tg" restore latest --root "$root" --user @USER --force
      prepare=break_user measure_users "baseline restore --user (alternating, unsigned)" "$users" 1 "$base_tg" restore latest --root "$root" --user @USER --force
      single_users=("${single_users[@]:1}" "${single_users[0]}")
    done
  fi
  prepare="" measure "tgsess drill" "$users" "$tg" drill --root "$root"

  # Prune over 50,000 per-user archives (copies of a real one under new ids), dry run = the plan.
  if [ "$users" -ge 1000 ] || [ -n "${BENCH_PRUNE:-}" ]; then
    plant_prune_archives "$root" "$user"
    before=$(find "$root/backups" -name '*.tar.zst.age' | wc -l)
    prepare="" measure "tgsess prune --dry-run (plan over $before archives)" "$users" "$tg" prune --root "$root" --dry-run
    runs_saved=$runs
    runs=1 prepare="" measure "tgsess prune (plan + unlinks over $before archives)" "$users" "$tg" prune --root "$root"
    runs=$runs_saved
    after=$(find "$root/backups" -name '*.tar.zst.age' | wc -l)
    # The timing means nothing unless the run really removed what the policy removes.
    if [ "$after" -ge "$before" ]; then echo "prune removed nothing ($before archives before and after)" >&2; exit 1; fi
    echo "$users $before $after" >>"$work/pruned.txt"
  fi
  rm -rf "$root" "$work/restic" "$work/borg" "$work/target" "$work/raw.tar.zst.age"
done
for users in ${BENCH_CHURN_USERS:-$users_list}; do churn_bench "$users"; done
for users in ${BENCH_WATCH_USERS:-$users_list}; do watch_bench "$users"; done

# The report.
{
  echo "# Benchmarks"
  echo
  echo "Produced by \`${BENCH_COMMAND:-bash scripts/bench.sh}\` on $(date -u +%Y-%m-%d)."
  echo
  echo "- Machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr); disk: $(df -h "$work" | awk 'NR==2 {print $1}')"
  echo "- $("$tg" --version | sed 's/^/tgsess /') ($config build), $(swift --version 2>&1 | head -1)"
  echo "- $(restic version | head -1), $(borg --version), $(age --version | sed 's/^/age /'), $(zstd --version | head -1), $(tar --version | head -1)"
  echo "- Runs per operation: $runs (single-user operations: 10); times are wall-clock seconds, median [min-max]; RSS is the peak of any run (GNU time %M)."
  echo "- tgsess is built with \`${flags[*]}\`."
  echo "- Fleets from \`tgsess-fleet --seed 7\` (Telethon v7/v8 files with 120 cached entities and update_state rows, 10% Pyrogram, session_backups history, and the bot's own tables)."
  while read -r u b; do echo "- $u users: $((b / 1048576)) MiB of database and session files"; done <"$work/sizes.txt"
  if [ -s "$work/pruned.txt" ]; then
    while read -r u b a; do echo "- prune at $u users: $b archives before, $a after (removed $((b - a)))"; done <"$work/pruned.txt"
  fi
  echo "- Single-user operations: 10 runs, each on another of 10 users spread over the fleet, wall time from bash's \$EPOCHREALTIME around the process (includes exec and GNU time's own start, about 1 ms)."
  echo
  echo "| operation | users | median s | min-max s | peak RSS MiB |"
  echo "| --- | ---: | ---: | ---: | ---: |"
  while IFS=$'\t' read -r label u median min max rss; do
    echo "| ${label//|/\\|} | $u | $median | $min-$max | $rss |"
  done <"$work/results.tsv"
  echo
  echo "## Ratios (tgsess over the baseline, same run, same files)"
  echo
  echo "| users | full backup / raw pipeline | restic first backup / full backup | whole restore / raw inverse |"
  echo "| ---: | ---: | ---: | ---: |"
  for u in $users_list; do
    get() { awk -F'\t' -v l="$1" -v u="$u" '$1 == l && $2 == u {print $3}' "$work/results.tsv"; }
    raw=$(get "raw pipeline: tar | zstd -T0 | age")
    tb=$(get "tgsess backup (hourly: full snapshot, write-then-prove)")
    rs=$(get "restic 0.14 backup (first)")
    inv=$(get "raw inverse: age -d | zstd -d | tar -x")
    tr=$(get "tgsess restore --target (whole)")
    ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
    echo "| $u | $(ratio "$tb" "$raw") | $(ratio "$rs" "$tb") | $(ratio "$tr" "$inv") |"
  done
  if [ -n "$base_tg" ]; then
    echo
    echo "## What signing archives costs (against \`${BENCH_BASELINE_REF:-$BENCH_BASELINE_BIN}\`, same run, same files)"
    echo
    echo "| users | hourly backup signed / unsigned | single-user restore signed − unsigned (median) |"
    echo "| ---: | ---: | ---: |"
    for u in $users_list; do
      get() { awk -F'\t' -v l="$1" -v u="$u" '$1 == l && $2 == u {print $3}' "$work/results.tsv"; }
      median_of() { awk -F'\t' -v l="$1" -v u="$u" '$1 == l && $2 == u {print $3}' "$work/results.tsv" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
      signed=$(get "tgsess backup (hourly: full snapshot, write-then-prove)")
      unsigned=$(get "baseline tgsess backup (hourly, unsigned)")
      rs=$(median_of "signed restore --user (alternating)")
      ru=$(median_of "baseline restore --user (alternating, unsigned)")
      echo "| $u | $(awk -v a="$signed" -v b="$unsigned" 'BEGIN { printf "%.3f", a / b }') | $(awk -v a="$rs" -v b="$ru" 'BEGIN { printf "%+.1f ms", (a - b) * 1000 }') |"
    done
  fi
  echo
  churn_report
  echo
  watch_report
} >"$out"
echo "wrote $out" >&2

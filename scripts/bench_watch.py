#!/usr/bin/env python3
"""The `tgsess watch` benchmark (scripts/bench.sh runs it; BENCH_ONLY=watch runs it alone).

On a generated fleet that `tgsess backup` has archived once, with a local-path rclone remote:
  1. runs `tgsess watch --once` (the first scan ever, no state file), then starts `tgsess watch`
     (its scan starts from the state file) and reads how long both scans took;
  2. runs a churn writer that changes update_state and entities (as Telethon does: a write
     transaction on the session file) in 30 % of the session files every minute, spread evenly;
  3. injects logins made by the real Telethon (the test virtualenv's 1.45): a new session file
     with a new auth key, moved into sessions/ as a client's save does, then a new
     user_sessions row holding a Fernet token of its StringSession (Python's cryptography);
  4. times each login from the moment its file lands to the proven local archive (watch's
     "archived" line) and to the copy verified on the remote (its "copied offsite" line);
  5. samples watch's CPU time and peak RSS from /proc over the churn, and counts the archives
     of users that only churned (must be zero).
Prints one JSON object with the figures on stdout.

Usage: bench_watch.py TGSESS ROOT REMOTE_DIR [--logins 20] [--seconds 180] [--churn 0.3]
"""
import argparse, base64, hashlib, json, os, random, shutil, sqlite3, subprocess, sys, tempfile, threading, time

p = argparse.ArgumentParser()
p.add_argument("tgsess")
p.add_argument("root")
p.add_argument("remote")
p.add_argument("--logins", type=int, default=20)
p.add_argument("--seconds", type=float, default=180)
p.add_argument("--churn", type=float, default=0.30, help="share of the session files changed per minute")
args = p.parse_args()

from cryptography.fernet import Fernet  # noqa: E402  (the test virtualenv)
from telethon.crypto import AuthKey  # noqa: E402
from telethon.sessions import SQLiteSession, StringSession  # noqa: E402

root = args.root
sessions = os.path.join(root, "sessions")
database = os.path.join(root, "data/telegram_bot.db")
log_path = os.path.join(root, "watch.log")
keys = [l.strip() for l in open(os.path.join(root, "keys/fernet.keys")) if l.strip() and not l.startswith("#")]
fernet = Fernet(keys[0])


def users_with_files():
    return sorted(int(n[5:-8]) for n in os.listdir(sessions) if n.startswith("user_") and n.endswith(".session"))


def per_user_archives():
    out = {}
    base = os.path.join(root, "backups/users")
    for d in os.listdir(base):
        out[int(d[5:])] = sum(1 for n in os.listdir(os.path.join(base, d)) if n.endswith(".tar.zst.age"))
    return out


def proc_cpu(pid):
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status(pid, key):
    for line in open("/proc/%d/status" % pid):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


telethon_users = []
for u in users_with_files():
    try:
        con = sqlite3.connect("file:%s/user_%d.session?mode=ro" % (sessions, u), uri=True)
        if con.execute("SELECT count(*) FROM sqlite_master WHERE name = 'entities'").fetchone()[0]:
            telethon_users.append(u)
        con.close()
    except sqlite3.Error:
        pass
before = per_user_archives()

# 1. The first scan ever (no state file): `tgsess watch --once` reads every session file and
# writes the state file; then watch itself starts from that state, as after any restart.
first = subprocess.run([args.tgsess, "watch", "--once", "--root", root], capture_output=True, text=True)
first_scan_ms = None
for line in first.stderr.splitlines():
    if "scan done" in line:
        first_scan_ms = int(line.split("duration_ms=")[1].split()[0])
if first.returncode != 0:
    sys.exit("watch --once failed: " + first.stderr)
log = open(log_path, "w")
watch = subprocess.Popen(
    [args.tgsess, "watch", "--root", root, "-v", "--prometheus", os.path.join(root, "tgsess_watch.prom")],
    stdout=subprocess.DEVNULL, stderr=log)
scan_ms = None
deadline = time.time() + 600
while scan_ms is None and time.time() < deadline:
    for line in open(log_path):
        if "scan done" in line:
            scan_ms = int(line.split("duration_ms=")[1].split()[0])
    if watch.poll() is not None:
        sys.exit("watch exited: " + open(log_path).read())
    time.sleep(0.05)

# 2. The churn writer: Telethon's kind of transaction (entities and update_state), on 30 % of
# the Telethon files per minute, spread evenly over the minute.
stop = threading.Event()
churned = set()
churn_commits = [0]


def churn():
    per_second = len(users_with_files()) * args.churn / 60.0
    debt = 0.0
    last = time.time()
    while not stop.is_set():
        now = time.time()
        debt += (now - last) * per_second
        last = now
        while debt >= 1 and not stop.is_set():
            debt -= 1
            u = random.choice(telethon_users)
            try:
                con = sqlite3.connect(os.path.join(sessions, "user_%d.session" % u), timeout=10)
                con.execute("PRAGMA synchronous=OFF")  # the writer's own fsyncs are not what is measured
                n = random.randint(1, 10 ** 9)
                con.execute("INSERT OR REPLACE INTO entities(id, hash, username, phone, name, date) VALUES (?,?,?,?,?,?)",
                            (9_000_000_000 + n, random.getrandbits(63), "churn%d" % n, None, "Churn", int(now)))
                con.execute("INSERT OR REPLACE INTO update_state(id, pts, qts, date, seq) VALUES (0, ?, 0, ?, ?)",
                            (n, int(now), n))
                con.commit()
                con.close()
                churned.add(u)
                churn_commits[0] += 1
            except sqlite3.Error as e:
                print("churn: user %d: %s" % (u, e), file=sys.stderr)
        time.sleep(0.02)


# watch's log, each line stamped when it appears (polled every 10 ms).
stamped = []


def follow():
    with open(log_path) as f:
        buffer = ""
        while not follow_stop.is_set():
            chunk = f.read()
            now = time.time()
            if chunk:
                buffer += chunk
                *lines, buffer = buffer.split("\n")
                stamped.extend((now, line) for line in lines)
            else:
                time.sleep(0.01)


follow_stop = threading.Event()
follower = threading.Thread(target=follow)
follower.start()

cpu_start, wall_start = proc_cpu(watch.pid), time.time()
writer = threading.Thread(target=churn)
writer.start()

# 3. Logins by the real Telethon, spread over the run.
first_new = 900_000_000 + random.randint(0, 10 ** 6) * 100
logins = {}
tmp = tempfile.mkdtemp()
for i in range(args.logins):
    time.sleep(args.seconds / (args.logins + 1))
    user = first_new + i
    key = os.urandom(256)
    path = os.path.join(tmp, "login%d.session" % user)
    s = SQLiteSession(path)
    s.set_dc(2, "149.154.167.51", 443)
    s.auth_key = AuthKey(key)
    s.save()
    string = StringSession.save(s)
    s.close()
    landed = time.time()
    shutil.move(path, os.path.join(sessions, "user_%d.session" % user))
    con = sqlite3.connect(database, timeout=30)
    con.execute("INSERT INTO user_sessions(user_id, session_string, api_id, api_hash, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, datetime('now'), datetime('now'))",
                (user, fernet.encrypt(string.encode()).decode(), 12345, fernet.encrypt(b"0" * 32).decode()))
    con.commit()
    con.close()
    logins[user] = {"landed": landed, "key": hashlib.sha256(key).hexdigest()[:8]}
time.sleep(max(0, args.seconds / (args.logins + 1)))
stop.set()
writer.join()
cpu_end, wall_end = proc_cpu(watch.pid), time.time()
rss_peak_kib = proc_status(watch.pid, "VmHWM")
rss_kib = proc_status(watch.pid, "VmRSS")

# 4. Wait for every login to be archived and copied (the times come from the follower).
archived_at, copied_at, archive_of = {}, {}, {}
deadline = time.time() + 120
while time.time() < deadline:
    for stamp, line in list(stamped):
        if " archived" in line and "user.id=" in line:
            user = int(line.split("user.id=")[1].split()[0])
            archive_of[line.split("archive.id=")[1].split()[0]] = user
            if user in logins:
                archived_at.setdefault(user, stamp)
        if "copied offsite" in line and "archive.ids=" in line:
            for archive in line.split("archive.ids=")[1].split()[0].split(","):
                if archive_of.get(archive) in logins:
                    copied_at.setdefault(archive_of[archive], stamp)
    if len(archived_at) == len(logins) and len(copied_at) == len(logins):
        break
    time.sleep(0.1)
children_cpu = 0.0
fields = open("/proc/%d/stat" % watch.pid).read().rsplit(")", 1)[1].split()
children_cpu = (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
watch.terminate()
watch.wait(timeout=120)
follow_stop.set()
follower.join()

# A restart with the state file: how long its scan takes, and that nothing is left to archive.
restart = subprocess.run([args.tgsess, "watch", "--once", "--json", "--root", root], capture_output=True, text=True)
restart_scan_ms = None
for line in restart.stderr.splitlines():
    if "scan done" in line:
        restart_scan_ms = int(line.split("duration_ms=")[1].split()[0])
restart_archived = json.loads(restart.stdout)["archivesWritten"] if restart.stdout.strip() else None

after = per_user_archives()
churn_archives = sum(after.get(u, 0) - before.get(u, 0) for u in set(before) | set(after) if u not in logins)


def pct(values, q):
    values = sorted(values)
    if not values:
        return None
    k = max(0, min(len(values) - 1, int(round(q * (len(values) - 1)))))
    return round(values[k], 3)


local = [archived_at[u] - logins[u]["landed"] for u in logins if u in archived_at]
remote = [copied_at[u] - logins[u]["landed"] for u in logins if u in copied_at]
print(json.dumps({
    "users": len(users_with_files()) - len(logins),
    "first_scan_ms": first_scan_ms,
    "scan_ms": scan_ms,
    "restart_scan_ms": restart_scan_ms,
    "restart_archived": restart_archived,
    "logins": len(logins),
    "archived": len(local),
    "copied": len(remote),
    "local_p50_s": pct(local, 0.5), "local_p99_s": pct(local, 0.99), "local_max_s": pct(local, 1.0),
    "remote_p50_s": pct(remote, 0.5), "remote_p99_s": pct(remote, 0.99), "remote_max_s": pct(remote, 1.0),
    "churn_commits": churn_commits[0],
    "churned_files": len(churned),
    "churn_archives": churn_archives,
    "cpu_percent": round(100 * (cpu_end - cpu_start) / (wall_end - wall_start), 2),
    "rclone_cpu_s": round(children_cpu, 1),
    "rss_peak_mib": round(rss_peak_kib / 1024, 1),
    "rss_mib": round(rss_kib / 1024, 1),
    "seconds": round(wall_end - wall_start, 1),
}))

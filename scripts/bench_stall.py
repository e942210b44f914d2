#!/usr/bin/env python3
"""The stall benchmark (BENCH_ONLY=stall bash scripts/bench.sh runs it).

Runs COMMAND while a writer like the bot commits to DB: kurigram's `sqlite3.connect(timeout=1)`,
one transaction every 5 ms that inserts into message_log and counts it in copy_stats. Measures
the writer's longest transaction (its wait for the backup's read lock included) and counts its
"database is locked" errors (the writer rolls back and goes on). Prints one JSON object.

Usage: bench_stall.py DB LABEL -- COMMAND...
"""
import json, os, sqlite3, subprocess, sys, threading, time

db, label = sys.argv[1], sys.argv[2]
command = sys.argv[sys.argv.index("--") + 1:]
stop = threading.Event()
stats = {"commits": 0, "errors": 0, "waits": [], "messages": []}


def writer():
    conn = sqlite3.connect(db, timeout=1)
    n = 0
    while not stop.is_set():
        started = time.monotonic()
        try:
            conn.execute("INSERT INTO message_log(user_id, chat_id, message_id, body, copied_at) "
                         "VALUES (?, ?, ?, ?, datetime('now'))", (n, -1001000000000, n, "bench message %d" % n))
            conn.execute("UPDATE copy_stats SET copied = copied + 1 WHERE name = 'message_log'")
            conn.commit()
            stats["commits"] += 1
        except sqlite3.OperationalError as e:
            stats["errors"] += 1
            stats["messages"].append(str(e))
            conn.rollback()
        stats["waits"].append(time.monotonic() - started)
        n += 1
        time.sleep(0.005)
    conn.close()


setup = sqlite3.connect(db, timeout=60)
setup.execute("CREATE TABLE IF NOT EXISTS copy_stats (name TEXT PRIMARY KEY, copied INTEGER NOT NULL)")
setup.execute("INSERT OR IGNORE INTO copy_stats VALUES ('message_log', 0)")
setup.commit()
mode = setup.execute("PRAGMA journal_mode").fetchone()[0]
setup.close()
size = os.path.getsize(db)
# A live bot's database is in the page cache; so is this one before every run.
with open(db, "rb") as f:
    while f.read(1 << 24):
        pass
thread = threading.Thread(target=writer)
thread.start()
time.sleep(1)
begin = len(stats["waits"])
t0 = time.monotonic()
run = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
seconds = time.monotonic() - t0
time.sleep(0.5)
stop.set()
thread.join()
waits = sorted(stats["waits"][begin:])
print(json.dumps({
    "label": label, "db_mib": size >> 20, "journal_mode": mode, "exit": run.returncode,
    "seconds": round(seconds, 2), "commits": stats["commits"], "errors": stats["errors"],
    "longest_ms": round(waits[-1] * 1000, 1) if waits else 0,
    "p99_ms": round(waits[int(len(waits) * 0.99)] * 1000, 1) if waits else 0,
    "message": (stats["messages"][:1] or [""])[0],
    "stderr": run.stderr.strip().splitlines()[-1][:300] if run.stderr.strip() else "",
}))

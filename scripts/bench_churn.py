#!/usr/bin/env python3
"""The hourly churn of a userbot fleet, for scripts/bench.sh: changes a share of the session files
the way their clients write between two hourly backups.

    bench_churn.py SESSIONS_DIR --share 0.3 --seed HOUR

For each chosen file, one transaction as Telethon 1.x commits it (Python's sqlite3, the file's own
journal mode): `update_state` row 0 gets new pts/qts/date/seq and 3 `entities` rows get a new
access hash, name and date. A Pyrogram file gets 3 `peers` rows changed (Pyrogram keeps no
update_state). Prints one JSON line: files changed, seconds taken.
"""
import argparse
import json
import os
import random
import sqlite3
import sys
import time


def churn(path, rng):
    connection = sqlite3.connect(path, timeout=10)
    try:
        tables = {row[0] for row in connection.execute("select name from sqlite_master where type = 'table'")}
        now = int(time.time())
        if "entities" in tables:
            connection.execute(
                "update update_state set pts = pts + ?, qts = qts + ?, date = ?, seq = seq + ? where id = 0",
                (rng.randint(1, 50), rng.randint(0, 3), now, rng.randint(1, 20)))
            ids = [row[0] for row in connection.execute("select id from entities")]
            for entity in rng.sample(ids, min(3, len(ids))):
                connection.execute(
                    "update entities set hash = ?, name = ?, date = ? where id = ?",
                    (rng.randint(-2**63, 2**63 - 1), "Contact %d" % rng.randint(0, 10**6), now, entity))
        elif "peers" in tables:
            ids = [row[0] for row in connection.execute("select id from peers")]
            if not ids:
                for index in range(3):
                    connection.execute(
                        "insert or replace into peers (id, access_hash, type, username, phone_number, last_update_on)"
                        " values (?, ?, 'user', NULL, NULL, ?)",
                        (300_000_000 + rng.randint(0, 10**6), rng.randint(-2**63, 2**63 - 1), now))
            for peer in rng.sample(ids, min(3, len(ids))):
                connection.execute(
                    "update peers set access_hash = ?, last_update_on = ? where id = ?",
                    (rng.randint(-2**63, 2**63 - 1), now, peer))
        else:
            return False
        connection.commit()
        return True
    finally:
        connection.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("sessions")
    parser.add_argument("--share", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    names = sorted(n for n in os.listdir(args.sessions) if n.startswith("user_") and n.endswith(".session"))
    chosen = rng.sample(names, int(len(names) * args.share))
    started = time.monotonic()
    changed = sum(1 for name in chosen if churn(os.path.join(args.sessions, name), rng))
    print(json.dumps({"files": len(names), "changed": changed, "seconds": round(time.monotonic() - started, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

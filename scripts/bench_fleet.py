#!/usr/bin/env python3
"""Writes synthetic heartbeats for the `tgsess fleet` benchmark: HOSTS deployment directories
under REMOTE, each with a tgsess-host.json (docs/FLEET-STATE.md, version 1) of USERS users.
Users are spread so that most sit on one host; DUPLICATES users share one key on two hosts
within the window (the CRITICAL the view must find) and as many again sit on two hosts under
different keys (WARNINGs). Prints the counts as JSON."""
import hashlib, json, os, random, sys
from datetime import datetime, timedelta, timezone

remote, hosts, users, duplicates = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
now = datetime.now(timezone.utc).replace(microsecond=0)
fmt = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")
rng = random.Random(7)
def key(user, salt):
    return hashlib.sha256(b"%d-%d" % (user, salt)).hexdigest()[:8]
for h in range(hosts):
    name = "host-%02d" % h
    entries = []
    for i in range(users):
        uid = 100_000_000 + h * users + i
        entries.append({"id": uid, "format": rng.choice(["telethon-v7", "telethon-v8", "pyrogram-v3"]), "dc": rng.randint(1, 5),
                        "auth_key_fingerprint": key(uid, 0), "session_written_at": fmt(now - timedelta(seconds=rng.randint(0, 86400))),
                        "session_bytes": rng.randint(20_000, 400_000)})
    if h == 1:
        # host-01 also holds host-00's first users: the same key written just now on both...
        for i in range(duplicates):
            uid = 100_000_000 + i
            entries.append({"id": uid, "format": "telethon-v8", "dc": 2, "auth_key_fingerprint": key(uid, 0),
                            "session_written_at": fmt(now), "session_bytes": 28672})
        # ...and others under a key of its own.
        for i in range(duplicates, 2 * duplicates):
            uid = 100_000_000 + i
            entries.append({"id": uid, "format": "telethon-v8", "dc": 2, "auth_key_fingerprint": key(uid, 1),
                            "session_written_at": fmt(now), "session_bytes": 28672})
    if h == 0:
        for e in entries[:duplicates]:
            e["session_written_at"] = fmt(now)
    state = {"version": 1, "host": "machine-%02d" % h, "deployment_name": name, "tool_version": "0.1.0",
             "written_at": fmt(now), "last_full_backup_at": fmt(now - timedelta(minutes=30)), "check_state": "ok",
             "checked_at": fmt(now), "users": entries}
    os.makedirs(os.path.join(remote, name), exist_ok=True)
    with open(os.path.join(remote, name, "tgsess-host.json"), "w") as f:
        json.dump(state, f, sort_keys=True, separators=(",", ":"))
size = sum(os.path.getsize(os.path.join(remote, d, "tgsess-host.json")) for d in os.listdir(remote))
print(json.dumps({"hosts": hosts, "users_per_host": users, "duplicates": duplicates, "bytes": size}))

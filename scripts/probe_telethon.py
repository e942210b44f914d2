#!/usr/bin/env python3
"""Reference live probe for `tgsess check --probe CMD`: is this Telethon session still logged in?

usage: probe_telethon.py [--refuse-if-locked PIDFILE] [--timeout SECONDS] SESSION_FILE

Environment:
  TG_API_ID, TG_API_HASH   the bot's API credentials (required)
  TG_PROBE_TIMEOUT         overall time limit in seconds (default 30); --timeout wins
  TG_PROBE_DC_ADDRESS, TG_PROBE_PORT
                           connect here instead of the session's own data centre (tests use a closed
                           local port to force a quick ConnectionError)

It never touches SESSION_FILE beyond reading it: Telethon writes to every session file it opens, and two
clients using one auth key at once get it destroyed (AUTH_KEY_DUPLICATED). So it
  * refuses (exit 3) when PIDFILE exists and names a live process (a bot owns the session), and when the
    session has a non-empty -journal or -wal sidecar (a writer is active or died mid-transaction: a copy
    would be inconsistent, and a crashed writer's journal must be rolled back by its owner);
  * copies the committed state with SQLite's backup API, from a read-only connection, into a private
    temporary directory, and runs Telethon on the copy, which is deleted afterwards.

It connects, asks Telegram for the own user (users.getUsers([inputUserSelf]), the request get_me() makes;
get_me() itself turns every 401 into None and would hide which one it was), and prints ONE JSON line:
  {"ok": true, "user_id": 12345}
  {"ok": false, "error": "AUTH_KEY_UNREGISTERED", "code": 401}     (an RPC error, by its Telegram name)
  {"ok": false, "error": "ConnectionError"}                         (anything else, by exception class)
Local failures name themselves: SESSION_FILE_MISSING, SESSION_FILE_INVALID, AUTH_KEY_MISSING, REFUSED,
PROBE_USAGE, with a short "detail" that never holds key material.

Exit status: 0 ok · 2 error (see "error") · 3 refused · 64 usage.
It never prints the api_hash, the session string or the auth key.
"""

import argparse
import asyncio
import json
import logging
import os
import re
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

EXIT_OK, EXIT_ERROR, EXIT_REFUSED, EXIT_USAGE = 0, 2, 3, 64


def emit(payload, status):
    """Print the one JSON line and exit."""
    sys.stdout.write(json.dumps(payload, sort_keys=True) + "\n")
    sys.stdout.flush()
    sys.exit(status)


def fail(error, status=EXIT_ERROR, detail=None, code=None):
    payload = {"ok": False, "error": error}
    if code is not None:
        payload["code"] = code
    if detail:
        payload["detail"] = detail[:200]
    emit(payload, status)


class UsageParser(argparse.ArgumentParser):
    def error(self, message):
        # argparse would exit 2, which callers read as "probe error"; usage is 64 here.
        fail("PROBE_USAGE", EXIT_USAGE, detail=message)


def pid_is_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def refuse_if_locked(pid_file):
    """Exit 3 when the pid file names a live process; a pid file without a readable pid also refuses."""
    path = Path(pid_file)
    if not path.exists():
        return
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        fail("REFUSED", EXIT_REFUSED, detail=f"cannot read the lock file: {e.strerror}")
    match = re.search(r"\d+", text)
    if match is None:
        fail("REFUSED", EXIT_REFUSED, detail="the lock file holds no pid; cannot tell whether a bot owns the session")
    pid = int(match.group(0))
    if pid_is_alive(pid):
        fail("REFUSED", EXIT_REFUSED, detail=f"live bot owns the session (pid {pid})")


def refuse_if_hot(session):
    for suffix in ("-journal", "-wal"):
        sidecar = Path(str(session) + suffix)
        try:
            size = sidecar.stat().st_size
        except FileNotFoundError:
            continue
        if size > 0:
            fail("REFUSED", EXIT_REFUSED,
                 detail=f"the session has a non-empty {suffix} sidecar: a writer is active or died mid-transaction")


def snapshot(session, target):
    """Copy the committed state of `session` into `target` without writing to `session`."""
    source = sqlite3.connect(session.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        copy = sqlite3.connect(str(target))
        try:
            source.backup(copy)
        finally:
            copy.close()
    finally:
        source.close()


def check_copy(target):
    """Exit 2 unless `target` is a Telethon session holding an auth key."""
    db = sqlite3.connect(str(target))
    try:
        tables = {row[0] for row in db.execute("select name from sqlite_master where type = 'table'")}
        if "version" not in tables or "sessions" not in tables:
            fail("SESSION_FILE_INVALID", detail="not a Telethon session file (no version/sessions table)")
        columns = {row[1] for row in db.execute("pragma table_info(version)")}
        if "version" not in columns:
            fail("SESSION_FILE_INVALID", detail="not a Telethon session file (a Pyrogram file?)")
        rows = db.execute("select auth_key from sessions").fetchall()
    except sqlite3.DatabaseError as e:
        fail("SESSION_FILE_INVALID", detail=str(e))
    finally:
        db.close()
    if len(rows) != 1 or not rows[0][0] or not any(rows[0][0]):
        fail("AUTH_KEY_MISSING", detail="the session file holds no auth key (never logged in, or logged out)")


def error_name(error):
    """The Telegram name of an RPC error (FLOOD_WAIT_30), else the exception's class name."""
    from telethon import errors
    from telethon.errors import rpcerrorlist

    if isinstance(error, errors.RPCError):
        cls = type(error)
        for name, known in rpcerrorlist.rpc_errors_dict.items():
            if known is cls:
                return name, error.code
        for pattern, known in rpcerrorlist.rpc_errors_re:
            if known is cls:
                number = next((getattr(error, a) for a in ("seconds", "new_dc", "dc", "minutes", "which", "code_length")
                               if isinstance(getattr(error, a, None), int)), None)
                return pattern.replace(r"(\d+)", "X" if number is None else str(number)), error.code
        if isinstance(error.message, str) and re.fullmatch(r"[A-Z0-9_]{1,64}", error.message):
            return error.message, error.code
        return cls.__name__, error.code
    if isinstance(error, errors.InvalidBufferError) and error.code:
        return "InvalidBufferError", -error.code  # transport errors are negative (-404, -429)
    return type(error).__name__, None


async def probe(copy, api_id, api_hash, client_timeout):
    from telethon import TelegramClient, functions, types
    from telethon.sessions import SQLiteSession

    # Telethon leaves failed futures behind; asyncio would print their tracebacks on stderr at exit.
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: None)
    session = SQLiteSession(str(copy))
    address = os.environ.get("TG_PROBE_DC_ADDRESS")
    if address:
        session.set_dc(session.dc_id, address, int(os.environ.get("TG_PROBE_PORT", "443")))
    client = TelegramClient(
        session, api_id, api_hash,
        timeout=client_timeout, connection_retries=0, retry_delay=0, auto_reconnect=False,
        request_retries=0, raise_last_call_error=True, flood_sleep_threshold=0, receive_updates=False,
        # Keep the session's address family: Telethon moves a session to DC 2 when the two disagree.
        use_ipv6=":" in session.server_address,
    )
    try:
        await client.connect()
        users = await client(functions.users.GetUsersRequest([types.InputUserSelf()]))
        return users[0].id
    finally:
        try:
            await asyncio.wait_for(client.disconnect(), timeout=5)
        except Exception:
            pass


def main():
    os.umask(0o077)
    parser = UsageParser(description="Check that a Telethon session is still logged in (one JSON line).")
    parser.add_argument("session_file")
    parser.add_argument("--refuse-if-locked", metavar="PIDFILE")
    parser.add_argument("--timeout", type=float, default=None, help="overall limit in seconds (default 30)")
    args = parser.parse_args()

    try:
        api_id = int(os.environ.get("TG_API_ID", ""))
    except ValueError:
        fail("PROBE_USAGE", EXIT_USAGE, detail="TG_API_ID must be set to the bot's numeric api_id")
    api_hash = os.environ.get("TG_API_HASH", "")
    if not api_hash:
        fail("PROBE_USAGE", EXIT_USAGE, detail="TG_API_HASH must be set")
    try:
        timeout = args.timeout if args.timeout is not None else float(os.environ.get("TG_PROBE_TIMEOUT", "30"))
        port = os.environ.get("TG_PROBE_PORT")
        if port is not None:
            int(port)
    except ValueError:
        fail("PROBE_USAGE", EXIT_USAGE, detail="TG_PROBE_TIMEOUT and TG_PROBE_PORT must be numbers")

    if args.refuse_if_locked:
        refuse_if_locked(args.refuse_if_locked)
    session = Path(args.session_file)
    if not session.is_file():
        fail("SESSION_FILE_MISSING", detail="no such session file")
    refuse_if_hot(session)

    logging.getLogger("telethon").setLevel(logging.CRITICAL)
    workdir = tempfile.mkdtemp(prefix="tgsess-probe-")
    try:
        copy = Path(workdir) / "probe.session"
        try:
            snapshot(session, copy)
        except sqlite3.DatabaseError as e:
            fail("SESSION_FILE_INVALID", detail=str(e))
        check_copy(copy)
        try:
            user_id = asyncio.run(
                asyncio.wait_for(probe(copy, api_id, api_hash, min(10.0, timeout)), timeout=timeout))
        except (asyncio.TimeoutError, TimeoutError):
            fail("TimeoutError", detail=f"no answer within {timeout:g} s")
        except Exception as e:  # the name is the report; the message may quote requests, so it is dropped
            name, code = error_name(e)
            fail(name, code=code)
        emit({"ok": True, "user_id": user_id}, EXIT_OK)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

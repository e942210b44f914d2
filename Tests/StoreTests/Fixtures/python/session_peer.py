"""Real-peer helper for tgsess's session tests.

Runs one command against whichever Telethon / Pyrogram-family package is importable (the test
harness puts Telethon 1.42, kurigram, pyrofork or Hydrogram first on PYTHONPATH for the peer runs) and prints
one line `RESULT <json>` with what the library itself wrote or loaded. Everything is offline: no
network, no login; keys are random bytes.
"""

import asyncio
import base64
import datetime
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sqlite3
import struct
import sys
import time
import types as pytypes
from pathlib import Path


class _StubMeta(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _StubMeta(name, (), {"__init__": lambda self, *a, **k: None})


class _StubModule(pytypes.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        value = _StubMeta(name, (), {"__init__": lambda self, *a, **k: None})
        setattr(self, name, value)
        return value


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, roots):
        self.roots = roots

    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in self.roots:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StubModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


def _allow_pyrogram_import():
    """The kurigram and pyrofork peers are installed with --no-deps, so their package __init__
    cannot import the proxy (python_socks) and media (pymediainfo) libraries, which the storage
    code never uses. Stand-ins for those two (only when missing) let the real storage code load."""
    missing = {name for name in ("python_socks", "pymediainfo") if importlib.util.find_spec(name) is None}
    if missing:
        sys.meta_path.append(_StubFinder(missing))


def result(value):
    print("RESULT " + json.dumps(value), flush=True)


def telethon_file(path, dc, address, port, owner, takeout, key_hex):
    """A Telethon SQLiteSession written by Telethon: set_dc, auth key, entities, update state."""
    import telethon
    from telethon.crypto import AuthKey
    from telethon.sessions import SQLiteSession
    from telethon.tl import types

    key = bytes.fromhex(key_hex) if key_hex else os.urandom(256)
    session = SQLiteSession(path)
    session.set_dc(int(dc), address, int(port))
    session.auth_key = AuthKey(key)
    if takeout:
        session.takeout_id = int(takeout)
    owner = int(owner) if owner else None
    if owner:
        # What TelegramBaseClient does after login (telegrambaseclient.py): the id=0 owner row.
        session.process_entities(types.contacts.ResolvedPeer(None, [types.InputPeerUser(0, owner)], []))
    users = [
        types.User(id=1000 + i, access_hash=7000 + i, username=f"peer{i}", phone=f"1555000{i:04d}", first_name=f"P{i}")
        for i in range(3)
    ]
    chats = [types.Channel(id=777, title="chan", photo=types.ChatPhotoEmpty(), date=None, access_hash=99)]
    session.process_entities(types.contacts.ResolvedPeer(None, chats, users))
    now = datetime.datetime.now(tz=datetime.timezone.utc)
    session.set_update_state(0, types.updates.State(pts=10, qts=2, date=now, seq=5, unread_count=0))
    session.set_update_state(777, types.updates.State(pts=44, qts=0, date=now, seq=0, unread_count=0))
    session.save()
    session.close()
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    version = conn.execute("select version from version").fetchone()[0]
    date_types = [row[0] for row in conn.execute("select typeof(date) from update_state")]
    conn.close()
    result(
        {
            "telethon": telethon.__version__,
            "schema": version,
            "dc": int(dc),
            "address": address,
            "port": int(port),
            "key": key.hex(),
            "owner": owner,
            "takeout": int(takeout) if takeout else None,
            "entities": 4,
            "update_states": 2,
            "date_types": date_types,
        }
    )


def telethon_fresh(path):
    """A Telethon file that never logged in: what SQLiteSession writes before set_dc/auth."""
    from telethon.sessions import SQLiteSession

    session = SQLiteSession(path)
    session.close()
    result({"path": path})


def telethon_load(path):
    """What Telethon reads from a session file (mutates it: pass a copy)."""
    import telethon
    from telethon.sessions import SQLiteSession

    session = SQLiteSession(path)
    out = {
        "telethon": telethon.__version__,
        "dc": session.dc_id,
        "address": session.server_address,
        "port": session.port,
        "key": session.auth_key.key.hex() if session.auth_key else None,
        "takeout": session.takeout_id,
        "owner": (session.get_entity_rows_by_id(0) or (None, None))[1],
    }
    session.close()
    result(out)


def telethon_strings(dc, address, port, key_hex):
    """Telethon's own StringSession.save() for an identity."""
    from telethon.crypto import AuthKey
    from telethon.sessions import StringSession

    session = StringSession()
    session.set_dc(int(dc), address, int(port))
    session.auth_key = AuthKey(bytes.fromhex(key_hex))
    string = session.save()
    back = StringSession(string)
    result(
        {
            "string": string,
            "key_id": AuthKey(bytes.fromhex(key_hex)).key_id,
            "dc": back.dc_id,
            "address": back.server_address,
            "port": back.port,
            "key": back.auth_key.key.hex(),
        }
    )


def telethon_string_load(string):
    """What Telethon reads from a string."""
    from telethon.sessions import StringSession

    back = StringSession(string)
    result({"dc": back.dc_id, "address": back.server_address, "port": back.port, "key": back.auth_key.key.hex()})


def pyrogram_strings(dc, api_id, test_mode, user_id, is_bot, key_hex):
    """Pyrogram strings: 362 from the storage's export_session_string, 351/356 with struct.pack as
    Pyrogram 1.x did, each loaded back through Pyrogram's MemoryStorage."""
    _allow_pyrogram_import()
    from pyrogram.storage import MemoryStorage

    key = bytes.fromhex(key_hex)
    test_mode = test_mode == "1"
    is_bot = is_bot == "1"

    async def main():
        storage = MemoryStorage("export")
        await storage.open()
        await storage.dc_id(int(dc))
        await storage.api_id(int(api_id))
        await storage.test_mode(test_mode)
        await storage.auth_key(key)
        await storage.user_id(int(user_id))
        await storage.is_bot(is_bot)
        current = await storage.export_session_string()
        await storage.close()
        out = {"362": current}
        uid = int(user_id)
        if uid < 2**32:
            packed = struct.pack(">B?256sI?", int(dc), test_mode, key, uid, is_bot)
            out["351"] = base64.urlsafe_b64encode(packed).decode().rstrip("=")
        packed = struct.pack(">B?256sQ?", int(dc), test_mode, key, uid, is_bot)
        out["356"] = base64.urlsafe_b64encode(packed).decode().rstrip("=")
        loaded = {}
        for name, string in out.items():
            check = MemoryStorage("check", session_string=string)
            await check.open()
            loaded[name] = {
                "dc": await check.dc_id(),
                "test_mode": bool(await check.test_mode()),
                "key": (await check.auth_key()).hex(),
                "user_id": await check.user_id(),
                "is_bot": bool(await check.is_bot()),
                "api_id": await check.api_id() if name == "362" else None,
            }
            await check.close()
        out["loaded"] = loaded
        return out

    result(asyncio.run(main()))


def pyrogram_file(workdir, name, dc, api_id, test_mode, user_id, is_bot, key_hex, use_wal, crash):
    """A Pyrogram-family session file written by the library's own storage, offline."""
    _allow_pyrogram_import()
    import pyrogram
    from pyrogram import storage as storage_module

    key = bytes.fromhex(key_hex) if key_hex else os.urandom(256)

    async def main():
        if hasattr(storage_module, "FileStorage"):
            storage = storage_module.FileStorage(name, Path(workdir))
        else:  # kurigram: one SQLiteStorage class
            storage = storage_module.SQLiteStorage(name, Path(workdir), use_wal=use_wal == "1")
        await storage.open()
        await storage.dc_id(int(dc))
        await storage.api_id(int(api_id))
        await storage.test_mode(test_mode == "1")
        await storage.auth_key(key)
        await storage.user_id(int(user_id))
        await storage.is_bot(is_bot == "1")
        peers = [(1000 + i, 7000 + i, "user", f"1555000{i:04d}") for i in range(3)]
        if _is_kurigram(storage):
            await storage.update_peers(peers)
            await storage.update_usernames([(1000, ["peer0"])])
        else:
            await storage.update_peers([p[:3] + (f"peer{i}",) + p[3:] for i, p in enumerate(peers)])
        update_states = 0
        if hasattr(storage, "set_update_state"):
            from pyrogram.storage.storage import UpdateState

            await storage.set_update_state(UpdateState(0, 10, 2, int(time.time()), 5))
            update_states = 1
        elif hasattr(storage, "update_state"):  # pyrofork
            await storage.update_state((0, 10, 2, int(time.time()), 5))
            update_states = 1
        string = await storage.export_session_string()
        address = await storage.server_address() if hasattr(storage, "server_address") else None
        port = await storage.port() if hasattr(storage, "port") else None
        version = storage.conn.execute("SELECT number FROM version").fetchone()[0]
        await storage.save()
        out = {
            "pyrogram": pyrogram.__version__,
            "schema": version,
            "dc": int(dc),
            "api_id": int(api_id),
            "test_mode": test_mode == "1",
            "user_id": int(user_id),
            "is_bot": is_bot == "1",
            "key": key.hex(),
            "address": address,
            "port": port,
            "peers": 3,
            "update_states": update_states,
            "string": string,
            "path": str(storage.database),
        }
        if crash == "1":
            # Leave the WAL behind, as a killed bot does.
            result(out)
            sys.stdout.flush()
            os._exit(0)
        await storage.close()
        return out

    result(asyncio.run(main()))


def _is_kurigram(storage):
    return "username" in {row[1] for row in storage.conn.execute("PRAGMA table_info(usernames)")}


def pyrogram_load(path):
    """What the Pyrogram-family library reads from a file (mutates it: pass a copy)."""
    _allow_pyrogram_import()
    import pyrogram
    from pyrogram import storage as storage_module

    file = Path(path)
    name = file.name[: -len(".session")]

    async def main():
        if hasattr(storage_module, "FileStorage"):
            storage = storage_module.FileStorage(name, file.parent)
        else:
            storage = storage_module.SQLiteStorage(name, file.parent)
        await storage.open()
        out = {
            "pyrogram": pyrogram.__version__,
            "dc": await storage.dc_id(),
            "api_id": await storage.api_id(),
            "test_mode": bool(await storage.test_mode()),
            "key": (await storage.auth_key()).hex(),
            "user_id": await storage.user_id(),
            "is_bot": bool(await storage.is_bot()),
            "string": await storage.export_session_string(),
        }
        await storage.close()
        return out

    result(asyncio.run(main()))


def hydrogram_file(workdir, name, dc, api_id, user_id, key_hex):
    """A Hydrogram session file written by Hydrogram's own SQLiteStorage (aiosqlite), offline."""
    import hydrogram
    from hydrogram.storage import SQLiteStorage

    key = bytes.fromhex(key_hex) if key_hex else os.urandom(256)

    async def main():
        storage = SQLiteStorage(name, Path(workdir))
        await storage.open()
        await storage.dc_id(int(dc))
        await storage.api_id(int(api_id))
        await storage.test_mode(False)
        await storage.auth_key(key)
        await storage.user_id(int(user_id))
        await storage.is_bot(False)
        await storage.update_peers([(1000 + i, 7000 + i, "user", f"peer{i}", f"1555000{i:04d}") for i in range(3)])
        cursor = await storage.conn.execute("SELECT number FROM version")
        version = (await cursor.fetchone())[0]
        cursor = await storage.conn.execute("PRAGMA journal_mode")
        journal = (await cursor.fetchone())[0]
        string = await storage.export_session_string()
        await storage.save()
        await storage.close()
        return {
            "hydrogram": hydrogram.__version__,
            "schema": version,
            "journal_mode": journal,
            "dc": int(dc),
            "api_id": int(api_id),
            "user_id": int(user_id),
            "key": key.hex(),
            "string": string,
            "path": str(storage.database),
        }

    result(asyncio.run(main()))


def hydrogram_load(path):
    """What Hydrogram reads from a file (it opens it read-write, runs VACUUM: pass a copy)."""
    import hydrogram
    from hydrogram.storage import SQLiteStorage

    file = Path(path)

    async def main():
        storage = SQLiteStorage(file.name[: -len(".session")], file.parent)
        await storage.open()
        out = {
            "hydrogram": hydrogram.__version__,
            "dc": await storage.dc_id(),
            "api_id": await storage.api_id(),
            "key": (await storage.auth_key()).hex(),
            "user_id": await storage.user_id(),
            "string": await storage.export_session_string(),
        }
        await storage.close()
        return out

    result(asyncio.run(main()))


def crafted_strings(key_hex):
    """Invalid strings built with struct.pack exactly as the libraries lay them out."""
    import ipaddress

    key = bytes.fromhex(key_hex)
    ip4 = ipaddress.ip_address("149.154.167.51").packed

    def telethon(dc, port, auth_key):
        return "1" + base64.urlsafe_b64encode(struct.pack(">B4sH256s", dc, ip4, port, auth_key)).decode()

    def pyrogram(fmt, *values):
        return base64.urlsafe_b64encode(struct.pack(fmt, *values)).decode().rstrip("=")

    good = telethon(2, 443, key)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(good[-2])
    good362 = pyrogram(">BI?256sQ?", 2, 12345, False, key, 777, False)
    result(
        {
            "good": good,
            "dc0": telethon(0, 443, key),
            "dc7": telethon(7, 443, key),
            "port0": telethon(2, 0, key),
            "zero_key": telethon(2, 443, bytes(256)),
            "standard_alphabet": "1" + base64.b64encode(struct.pack(">B4sH256s", 2, ip4, 443, key)).decode(),
            "no_padding": good.rstrip("="),
            "noncanonical": good[:-2] + alphabet[last | 1] + "=",
            "pyrogram_good": good362,
            "pyrogram_dc0": pyrogram(">BI?256sQ?", 0, 12345, False, key, 777, False),
            "pyrogram_dc9": pyrogram(">BI?256sQ?", 9, 12345, False, key, 777, False),
            "pyrogram_test_dc4": pyrogram(">BI?256sQ?", 4, 12345, True, key, 777, False),
            "pyrogram_bad_bool": pyrogram(">BIB256sQB", 2, 12345, 2, key, 777, 0),
            "pyrogram_zero_key": pyrogram(">BI?256sQ?", 2, 12345, False, bytes(256), 777, False),
        }
    )


def hot_journal(path):
    """Leaves a real hot journal: a writer zeroes the auth key, spills pages to the database file
    (tiny cache), and dies before COMMIT."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA cache_size = 1")
    conn.execute("UPDATE sessions SET auth_key = zeroblob(256)")
    for i in range(40):
        conn.execute("INSERT INTO sent_files VALUES (randomblob(16), ?, 0, ?, ?)", (i, i, i))
        conn.execute("INSERT OR REPLACE INTO entities (id, hash, name) VALUES (?, ?, ?)", (5000 + i, i, "x" * 3000))
    with open(path + "-journal", "rb") as journal:
        magic = journal.read(8).hex()
    result({"journal_magic": magic, "journal_size": os.path.getsize(path + "-journal")})
    sys.stdout.flush()
    os._exit(0)


def hold_write(path):
    """Opens a write transaction (as a running Telethon client does between saves), changes the
    sessions row, says READY, and rolls back when stdin closes."""
    conn = sqlite3.connect(path)
    conn.execute("UPDATE sessions SET port = 1234")
    conn.execute("INSERT OR REPLACE INTO entities (id, hash) VALUES (424242, 1)")
    print("READY", flush=True)
    sys.stdin.read()
    conn.rollback()
    conn.close()


def hold_exclusive(path):
    """Holds an EXCLUSIVE lock (what a writer holds while it commits): readers get SQLITE_BUSY."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    print("READY", flush=True)
    sys.stdin.read()
    conn.execute("ROLLBACK")
    conn.close()


def telethon_tmp_key(path):
    """Telethon 1.45 with store_tmp_auth_key_on_disk=True and a temporary key set."""
    from telethon.crypto import AuthKey
    from telethon.sessions import SQLiteSession

    session = SQLiteSession(path, store_tmp_auth_key_on_disk=True)
    session.set_dc(2, "149.154.167.51", 443)
    session.auth_key = AuthKey(os.urandom(256))
    session.tmp_auth_key = AuthKey(os.urandom(256))
    session.save()
    session.close()
    result({"key": session.auth_key.key.hex()})


def integrity(path):
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    rows = [row[0] for row in conn.execute("PRAGMA integrity_check")]
    mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    conn.close()
    result({"integrity": rows, "journal_mode": mode})


def open_normally(path):
    """An ordinary read-write open and read: SQLite rolls a hot journal back."""
    conn = sqlite3.connect(path)
    count = conn.execute("SELECT count(*) FROM sessions").fetchone()[0]
    conn.close()
    result({"sessions": count})


def schema(path):
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    rows = [list(row) for row in conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY rowid")]
    conn.close()
    result({"schema": rows})


COMMANDS = {
    "telethon-file": telethon_file,
    "telethon-fresh": telethon_fresh,
    "telethon-load": telethon_load,
    "telethon-strings": telethon_strings,
    "telethon-string-load": telethon_string_load,
    "pyrogram-strings": pyrogram_strings,
    "crafted-strings": crafted_strings,
    "pyrogram-file": pyrogram_file,
    "pyrogram-load": pyrogram_load,
    "hydrogram-file": hydrogram_file,
    "hydrogram-load": hydrogram_load,
    "hot-journal": hot_journal,
    "hold-write": hold_write,
    "hold-exclusive": hold_exclusive,
    "telethon-tmp-key": telethon_tmp_key,
    "integrity": integrity,
    "schema": schema,
    "open-normally": open_normally,
}

if __name__ == "__main__":
    COMMANDS[sys.argv[1]](*sys.argv[2:])

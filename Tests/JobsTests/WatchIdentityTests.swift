import Foundation
import Store
import TestSupport
import Testing

/// What watch reads and remembers, against files and tokens the real peers wrote: Telethon's
/// session files and strings, Pyrogram's strings, Python's cryptography's Fernet tokens, and
/// SQLite commits by another process.
@Suite struct WatchIdentityTests {
  /// A Telethon file (written by Telethon 1.45) and its key's fingerprint by Python's hashlib.
  static func telethonFile(in directory: TemporaryDirectory, name: String = "user_1.session") throws -> (
    path: String, fingerprint: String, string: String
  ) {
    let path = directory.file(name)
    let out = try runPython(
      """
      import hashlib, os, sys
      from telethon.crypto import AuthKey
      from telethon.sessions import SQLiteSession, StringSession
      key = os.urandom(256)
      s = SQLiteSession(sys.argv[1])
      s.set_dc(4, '149.154.167.91', 443)
      s.auth_key = AuthKey(key)
      s.save()
      print(hashlib.sha256(key).hexdigest()[:8], StringSession.save(s))
      s.close()
      """, arguments: [path]
    ).stdout.split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
    return (path, out[0], out[1])
  }

  @Test func aTelethonFileIsKnownByFormatDCAndKey() throws {
    let directory = try TemporaryDirectory("watch-identity")
    let file = try Self.telethonFile(in: directory)
    let identity = try FileIdentity.read(path: file.path, busyTimeoutMS: 1000)
    #expect(identity == FileIdentity(format: "telethon-v8", dcID: 4, authKey: file.fingerprint))
    let missing = #expect(throws: StoreError.self) {
      try FileIdentity.read(path: directory.file("user_2.session"), busyTimeoutMS: 1000)
    }
    #expect(missing == .session(object: directory.file("user_2.session"), reason: .missingFile))
  }

  /// A session string is known by its key, whether stored plaintext or as a Fernet token, and
  /// a token re-encrypted by Python's cryptography stays the same identity with the key; without
  /// the key, it is known by its text, which a re-encryption changes.
  @Test func aSessionStringIsKnownByItsKeyWithTheFernetKey() throws {
    let directory = try TemporaryDirectory("watch-identity")
    let file = try Self.telethonFile(in: directory)
    let fernetKey = try FernetKey.generate()
    let fernet = try Fernet(keys: [fernetKey])
    let tokens = try runPython(
      """
      import sys
      from cryptography.fernet import Fernet
      f = Fernet(sys.argv[1].encode())
      print(f.encrypt(sys.argv[2].encode()).decode(), f.encrypt(sys.argv[2].encode()).decode())
      """, arguments: [fernetKey.base64, file.string]
    ).stdout.split(separator: " ").map { SecretText($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    let expected = RowIdentity(session: "key:" + file.fingerprint, apiID: 42)
    #expect(RowIdentity.of(sessionString: SecretText(file.string), apiID: 42, fernet: nil).identity == expected)
    for token in tokens {
      let (identity, isUndecryptable) = RowIdentity.of(sessionString: token, apiID: 42, fernet: fernet)
      #expect(identity == expected)
      #expect(!isUndecryptable)
    }
    let first = RowIdentity.of(sessionString: tokens[0], apiID: 42, fernet: nil)
    let second = RowIdentity.of(sessionString: tokens[1], apiID: 42, fernet: nil)
    #expect(first.isUndecryptable && second.isUndecryptable)
    #expect(first.identity?.session.hasPrefix("text:") == true)
    #expect(first.identity != second.identity, "without the key, a re-encrypted token looks changed")
    // A key that is not the one: undecryptable, known by its text.
    let other = try Fernet(keys: [try FernetKey.generate()])
    #expect(RowIdentity.of(sessionString: tokens[0], apiID: 42, fernet: other).isUndecryptable)
    #expect(RowIdentity.of(sessionString: nil, apiID: 42, fernet: fernet).identity == nil)
    // Never the secret itself.
    #expect(!(first.identity?.session.contains(tokens[0].value.prefix(16)) ?? true))
  }

  @Test func aPyrogramStringIsKnownByItsKey() throws {
    let out = try runPython(
      """
      import hashlib, os, struct, base64
      key = os.urandom(256)
      packed = struct.pack('>BI?256sQ?', 2, 12345, False, key, 777000, False)
      print(hashlib.sha256(key).hexdigest()[:8], base64.urlsafe_b64encode(packed).decode().rstrip('='))
      """
    ).stdout.split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
    let identity = RowIdentity.of(sessionString: SecretText(out[1]), apiID: 12345, fernet: nil).identity
    #expect(identity == RowIdentity(session: "key:" + out[0], apiID: 12345))
  }

  /// Every commit bumps a rollback-journal file's change counter, so its stamp changes even when
  /// size and times do not; a WAL-mode file with a -wal is never trusted.
  @Test func stampsChangeWithEveryCommitAndWALIsNotTrusted() throws {
    let directory = try TemporaryDirectory("watch-identity")
    let file = try Self.telethonFile(in: directory)
    let first = try #require(FileStamp.read(path: file.path))
    #expect(first.isTrustworthy && !first.isWALMode && first.changeCounter > 0)
    #expect(FileStamp.read(path: file.path) == first)
    try StockTools.pipeline(#"sqlite3 "$1" "INSERT INTO update_state VALUES (0, 1, 0, 0, 0)""#, [file.path])
    let second = try #require(FileStamp.read(path: file.path))
    #expect(second.changeCounter == first.changeCounter + 1)
    #expect(second != first)
    #expect(FileStamp.read(path: directory.file("none.session")) == nil)

    let wal = directory.file("wal.session")
    try runPython(
      """
      import sqlite3, sys
      c = sqlite3.connect(sys.argv[1])
      c.execute('PRAGMA journal_mode=WAL')
      c.execute('CREATE TABLE t(x)')
      c.commit()
      c.execute('INSERT INTO t VALUES (1)')
      c.commit()
      import os
      os.system('cp ' + sys.argv[1] + '-wal ' + sys.argv[1] + '-wal.keep')
      """, arguments: [wal])
    // The writer checkpointed on close; put its WAL back as a live writer would leave it.
    try FileManager.default.moveItem(atPath: wal + "-wal.keep", toPath: wal + "-wal")
    let stamp = try #require(FileStamp.read(path: wal))
    #expect(stamp.isWALMode)
    #expect(!stamp.isTrustworthy)
  }

  /// The page print moves with the identity and only with it: churn written by the real Telethon
  /// (entities, update state) leaves it, a new auth key or a schema upgrade changes it, and a
  /// WAL-mode file gets none.
  @Test func thePagePrintMovesWithTheIdentityNotWithChurn() throws {
    let directory = try TemporaryDirectory("watch-print")
    let file = try Self.telethonFile(in: directory)
    let (identity, taken) = try SessionPagePrint.read(path: file.path, busyTimeoutMS: 1000)
    let print = try #require(taken)
    #expect(identity.authKey == file.fingerprint)
    #expect(print.pages.first == 1 && print.pages.count == 3)
    #expect(print.currentDigest(path: file.path) == print.digest)
    try runPython(
      """
      import datetime, random, sys
      from telethon.sessions import SQLiteSession
      from telethon.tl import types
      s = SQLiteSession(sys.argv[1])
      for n in range(200):
          s.process_entities([types.User(id=8_000_000_000 + n, access_hash=random.getrandbits(63), username='u%d' % n,
                                         phone=None, first_name='User %d' % n)])
          s.set_update_state(0, types.updates.State(pts=n, qts=0, date=datetime.datetime.now(datetime.timezone.utc),
                                                    seq=n, unread_count=0))
          s.save()
      s.close()
      """, arguments: [file.path])
    #expect(print.currentDigest(path: file.path) == print.digest, "churn moved the identity's pages")
    #expect(try FileIdentity.read(path: file.path, busyTimeoutMS: 1000) == identity)

    try runPython(
      """
      import os, sys
      from telethon.crypto import AuthKey
      from telethon.sessions import SQLiteSession
      s = SQLiteSession(sys.argv[1])
      s.auth_key = AuthKey(os.urandom(256))
      s.save()
      s.close()
      """, arguments: [file.path])
    #expect(print.currentDigest(path: file.path) != print.digest, "a new key left the print")

    // Telethon 1.42 writes schema 7; 1.45 opening it upgrades it in place (a new format).
    let old = directory.file("user_7.session")
    try runPython(
      """
      import os, sys
      from telethon.crypto import AuthKey
      from telethon.sessions import SQLiteSession
      s = SQLiteSession(sys.argv[1])
      s.set_dc(2, '149.154.167.51', 443)
      s.auth_key = AuthKey(os.urandom(256))
      s.save()
      s.close()
      """, arguments: [old], peer: "telethon142")
    let (v7, v7print) = try SessionPagePrint.read(path: old, busyTimeoutMS: 1000)
    #expect(v7.format == "telethon-v7")
    let oldPrint = try #require(v7print)
    try runPython(
      "import sys\nfrom telethon.sessions import SQLiteSession\nSQLiteSession(sys.argv[1]).close()", arguments: [old])
    #expect(try FileIdentity.read(path: old, busyTimeoutMS: 1000).format == "telethon-v8")
    #expect(oldPrint.currentDigest(path: old) != oldPrint.digest, "a schema upgrade left the print")

    let wal = directory.file("wal.session")
    try FileManager.default.copyItem(atPath: file.path, toPath: wal)
    try StockTools.pipeline(#"sqlite3 "$1" "PRAGMA journal_mode=WAL""#, [wal])
    #expect(SessionPagePrint.take(path: wal, busyTimeoutMS: 1000) == nil)
    #expect(print.currentDigest(path: wal) == nil)
  }

  /// Archives of one second are ordered by when they were written, not by their random suffix.
  @Test func theNewestArchiveOfOneSecondIsTheOneWrittenLast() throws {
    let directory = try TemporaryDirectory("watch-newest")
    let repository = ArchiveRepository(backupsDirectory: directory.path)
    try FileManager.default.createDirectory(atPath: repository.userDirectory(7), withIntermediateDirectories: true)
    #expect(try repository.newestUserArchiveID(userID: 7) == nil)
    #expect(try repository.newestUserArchiveID(userID: 8) == nil)
    let names = [
      ("20260101T000000Z-u7-aaaaaa", 5), ("20260101T000001Z-u7-zzzzzz", 1), ("20260101T000001Z-u7-bbbbbb", 3),
      ("20260101T000001Z-u8-yyyyyy", 9),
    ]
    for (id, nanoseconds) in names {
      let path = repository.userDirectory(7) + "/" + id + ".tar.zst.age"
      try Data("x".utf8).write(to: URL(fileURLWithPath: path))
      var times = [
        timespec(tv_sec: 1_700_000_000, tv_nsec: nanoseconds), timespec(tv_sec: 1_700_000_000, tv_nsec: nanoseconds),
      ]
      #expect(utimensat(AT_FDCWD, path, &times, 0) == 0)
    }
    try Data("{}".utf8).write(
      to: URL(fileURLWithPath: repository.userDirectory(7) + "/20260101T000002Z-u7-cccccc.json"))
    #expect(try repository.newestUserArchiveID(userID: 7) == "20260101T000001Z-u7-bbbbbb")
    let record = try #require(try repository.userArchiveRecord(userID: 7, id: "20260101T000001Z-u7-bbbbbb"))
    #expect(record.id == "20260101T000001Z-u7-bbbbbb" && record.verification == .unknown)
  }

  @Test func theStateFileRoundTripsAndHoldsNoSecret() throws {
    let directory = try TemporaryDirectory("watch-state")
    let file = try Self.telethonFile(in: directory)
    let stamp = try #require(FileStamp.read(path: file.path))
    let users: [Int64: WatchUserRecord] = [
      42: WatchUserRecord(
        stamp: stamp, file: FileIdentity(format: "telethon-v8", dcID: 4, authKey: file.fingerprint),
        rowDigest: "0123456789abcdef", row: RowIdentity(session: "key:" + file.fingerprint, apiID: 42),
        archivedID: "20260101T000000Z-u42-abcdef", archivedFile: FileIdentity(format: "", dcID: 4, authKey: "aaaaaaaa"),
        archivedRow: RowIdentity(session: "text:fedcba9876543210", apiID: nil),
        pagePrint: SessionPagePrint(pageSize: 4096, pages: [1, 3, 2], digest: "0011223344556677")),
      7: WatchUserRecord(),
    ]
    let pushes = [
      WatchPendingPush(
        remote: "usb", files: ["users/user_42/20260101T000000Z-u42-abcdef.tar.zst.age"], changedAt: 1_790_000_000.5)
    ]
    let path = WatchStateFile.path(backupsDirectory: directory.path)
    try WatchStateFile.save(path: path, users: users, pushes: pushes)
    let loaded = WatchStateFile.load(path: path)
    #expect(loaded.users == users)
    #expect(loaded.pushes == pushes)
    #expect(try FileSystem.mode(of: path) & 0o777 == 0o600)
    let text = try String(contentsOfFile: path, encoding: .utf8)
    #expect(!text.contains(file.string.dropFirst().prefix(32)))
    // A damaged file is no state, not a crash; a damaged line is one user read again.
    try Data("garbage\n".utf8).write(to: URL(fileURLWithPath: path))
    #expect(WatchStateFile.load(path: path).users.isEmpty)
    try Data((text + "u\tnot-a-number\n").utf8).write(to: URL(fileURLWithPath: path))
    #expect(WatchStateFile.load(path: path).users == users)
  }

  /// data_version tells a commit by another process from none, on one long-lived connection.
  @Test func theRowsReaderSeesOtherProcessesCommits() throws {
    let directory = try TemporaryDirectory("watch-rows")
    let database = directory.file("bot.db")
    try StockTools.pipeline(
      #"sqlite3 "$1" "CREATE TABLE user_sessions(user_id INTEGER PRIMARY KEY, session_string TEXT, api_id INTEGER, status TEXT); INSERT INTO user_sessions VALUES (1, 'one', 10, 'active')""#,
      [database])
    let reader = UserRowsReader(path: database, busyTimeoutMS: 1000)
    #expect(try reader.hasChanged())
    #expect(try reader.rows().map(\.userID) == [1])
    #expect(try !reader.hasChanged())
    try StockTools.pipeline(
      #"sqlite3 "$1" "INSERT INTO user_sessions VALUES (2, 'two', 20, 'logged_out')""#, [database])
    #expect(try reader.hasChanged())
    #expect(try !reader.hasChanged())
    let two = try #require(try reader.row(userID: 2))
    #expect(two.isLoggedOut && two.apiID == 20 && two.sessionString == SecretText("two"))
    #expect(try reader.row(userID: 3) == nil)
    let one = try #require(try reader.row(userID: 1))
    #expect(two.digest.count == 16 && two.digest != one.digest)
    // The database replaced under the same path (a new inode) is reopened.
    try StockTools.pipeline(
      #"sqlite3 "$1" "CREATE TABLE user_sessions(user_id INTEGER PRIMARY KEY, session_string TEXT); INSERT INTO user_sessions VALUES (9, 'nine')""#,
      [directory.file("new.db")])
    #expect(rename(directory.file("new.db"), database) == 0)
    #expect(try reader.hasChanged())
    #expect(try reader.rows().map(\.userID) == [9])
  }
}

import Foundation
import Jobs
import Store
import TestSupport
import Testing

/// `tgsess backup`, `tgsess list` and migrate's legacy import through the built binary, on
/// fleets made by `tgsess-fleet`, judged by stock tools (tar, bsdtar, age, sha256sum, sqlite3)
/// and real Telethon. Every test ends by checking that no secret of its fleet reached any output.
@Suite struct BackupCLITests {
  // MARK: - Helpers

  /// `backup --json` that must succeed.
  static func backup(_ fleet: TestFleet, _ arguments: [String] = []) throws -> BackupResult {
    let result = try fleet.tgsess(["backup", "--json"] + arguments)
    guard result.status == 0 else {
      throw TestHelperError("backup \(arguments) exited \(result.status): \(result.stderr)")
    }
    return try decodeJSON(BackupResult.self, from: result)
  }

  /// `list --json` that must succeed.
  static func list(_ fleet: TestFleet, _ arguments: [String] = []) throws -> [ListedArchive] {
    let result = try fleet.tgsess(["list", "--json"] + arguments)
    guard result.status == 0 else { throw TestHelperError("list exited \(result.status): \(result.stderr)") }
    return try decodeJSON([ListedArchive].self, from: result)
  }

  static func expectNoLeaks(_ fleet: TestFleet, sourceLocation: SourceLocation = #_sourceLocation) throws {
    #expect(fleet.secretCount > 0, "no secret was gathered, so the scan proves nothing", sourceLocation: sourceLocation)
    let leaks = try fleet.leakedSecrets()
    #expect(leaks.isEmpty, "\(leaks.prefix(5))", sourceLocation: sourceLocation)
  }

  /// Waits until the wall clock is past `date`'s second, so the next archive's time differs.
  static func waitForNextSecond(after date: Date) throws {
    try waitUntil("the next second") { Date().timeIntervalSince1970 >= date.timeIntervalSince1970.rounded(.down) + 1 }
  }

  /// The user ids of the per-user archives of a backup.
  static func perUserIDs(_ result: BackupResult) -> [Int64] {
    result.archives.filter { $0.kind == .user }.compactMap(\.userID).sorted()
  }

  static let invalidReasonMessage =
    "tgsess: --reason must be 1-64 printable characters, e.g. "
    + BackupReason.known.map { "\"\($0)\"" }.joined(separator: ", ") + "\n"

  // MARK: - Stock tools

  @Test func stockTarAndBsdtarListAndExtractAnUnencryptedArchive() throws {
    try StockTools.require()
    let fleet = try TestFleet(users: 8, entities: 120, collectsSecrets: true)
    let result = try Self.backup(fleet, ["--no-encrypt"])
    let full = try #require(result.archives.first { $0.kind == .full })
    #expect(full.path.hasSuffix("/full/\(full.id).tar.zst"))

    let gnu = try StockTools.pipeline(#"tar --zstd -tf "$1""#, [full.path]).stdout.split(separator: "\n")
    let bsd = try StockTools.pipeline(#"bsdtar -tf "$1""#, [full.path]).stdout.split(separator: "\n")
    #expect(gnu.first == "manifest.json")
    #expect(bsd == gnu)

    let scratch = try TemporaryDirectory()
    let gnuDirectory = scratch.file("gnu")
    let bsdDirectory = scratch.file("bsd")
    try StockTools.extract(full.path, identity: nil, into: gnuDirectory)
    try FileManager.default.createDirectory(atPath: bsdDirectory, withIntermediateDirectories: true)
    try StockTools.pipeline(#"bsdtar -xf "$1" -C "$2""#, [full.path, bsdDirectory])
    let (problems, manifest) = try StockTools.verifyExtracted(gnuDirectory)
    #expect(problems.isEmpty, "\(problems)")
    #expect(try StockTools.verifyExtracted(bsdDirectory).problems.isEmpty)
    #expect(try TreeSnapshot(gnuDirectory).files == TreeSnapshot(bsdDirectory).files)

    // The manifest lists exactly what the stream holds, and every user's session is there.
    let entries = manifest.entries.map(\.path)
    #expect(Set(gnu.map(String.init)) == Set(entries + ["manifest.json"]))
    #expect(gnu.count == entries.count + 1)
    let sessions = Set(entries.filter { $0.hasSuffix(".session") })
    #expect(sessions == Set(try fleet.sessionUserIDs().map { "sessions/user_\($0).session" }))
    #expect(entries.contains("data/telegram_bot.db"))

    // The per-user archives are stock tar.zst too, manifest first.
    for archive in result.archives where archive.kind == .user {
      #expect(try StockTools.listEntries(archive.path, identity: nil).first == "manifest.json")
    }
    try Self.expectNoLeaks(fleet)
  }

  @Test func encryptedArchiveRestoresByTheDisasterPathAndLoadsInTelethon() throws {
    try StockTools.require()
    let fleet = try TestFleet(users: 8, entities: 120, collectsSecrets: true)
    let result = try Self.backup(fleet)
    let full = try #require(result.archives.first { $0.kind == .full })
    #expect(full.path.hasSuffix(".tar.zst.age"))
    #expect(full.verification == .full)

    // The operator's disaster path, with nothing but age and tar.
    let scratch = try TemporaryDirectory()
    let restored = scratch.file("restored")
    try FileManager.default.createDirectory(atPath: restored, withIntermediateDirectories: true)
    try StockTools.pipeline(
      #"cd "$3" && age -d -i "$1" "$2" | tar --zstd -xf -"#, [fleet.identityPath, full.path, restored])
    #expect(try StockTools.verifyExtracted(restored).problems.isEmpty)

    // Real Telethon loads each restored Telethon file (a copy: Telethon upgrades what it opens)
    // with the original's dc, address, port and auth key.
    let telethon = try fleet.telethonUserIDs()
    let pairs = telethon.map { [fleet.sessionPath($0), restored + "/sessions/user_\($0).session"] }
    let check = try runPython(
      """
      import json, os, shutil, sys, tempfile
      from telethon.sessions import SQLiteSession
      pairs, out = json.loads(sys.argv[1]), {'loaded': 0, 'mismatches': []}
      scratch = tempfile.mkdtemp()
      def identity(path, name):
          copy = shutil.copy(path, os.path.join(scratch, name))
          s = SQLiteSession(copy)
          value = (s.dc_id, s.server_address, s.port, s.auth_key.key if s.auth_key else None)
          s.close()
          return value
      for i, (original, restored) in enumerate(pairs):
          a, b = identity(original, 'a%d.session' % i), identity(restored, 'b%d.session' % i)
          if a != b or b[3] is None or len(b[3]) != 256:
              out['mismatches'].append(os.path.basename(restored))
          out['loaded'] += 1
      shutil.rmtree(scratch)
      print(json.dumps(out))
      """, arguments: [String(decoding: try JSONEncoder().encode(pairs), as: UTF8.self)])
    struct Loaded: Decodable {
      var loaded: Int
      var mismatches: [String]
    }
    let outcome = try JSONDecoder().decode(Loaded.self, from: check.stdoutData)
    #expect(outcome.loaded == telethon.count)
    #expect(outcome.mismatches.isEmpty, "\(outcome)")
    #expect(telethon.count >= 5)

    // Pyrogram files: the same dc and key, compared inside sqlite3 (the key is never printed).
    for user in try fleet.sessionUserIDs() where !telethon.contains(user) {
      try Self.expectSameKey(fleet.sessionPath(user), restored + "/sessions/user_\(user).session")
    }

    // A per-user archive takes the same path.
    let perUser = try #require(result.archives.first { $0.kind == .user && telethon.contains($0.userID ?? 0) })
    let (problems, manifest, _) = try StockTools.extractAndVerify(
      perUser.path, identity: fleet.identityPath, scratch: scratch.path)
    #expect(problems.isEmpty, "\(problems)")
    #expect(manifest.userID == perUser.userID)
    try Self.expectNoLeaks(fleet)
  }

  /// Two session files hold the same dc and auth key (compared by sqlite3 across an ATTACH, so
  /// the key never leaves SQLite).
  static func expectSameKey(_ first: String, _ second: String, sourceLocation: SourceLocation = #_sourceLocation) throws
  {
    let result = try runProcess(
      StockTools.sqlite3,
      [
        "-readonly", first, "ATTACH '\(second)' AS other",
        "SELECT count(*) FROM main.sessions a JOIN other.sessions b ON a.dc_id = b.dc_id AND a.auth_key = b.auth_key",
      ])
    #expect(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "1", sourceLocation: sourceLocation)
  }

  // MARK: - Lock

  @Test func aSecondRunExitsLockedNamingTheHolderAndLockWaitWaits() throws {
    let fleet = try TestFleet(users: 4, entities: 120, collectsSecrets: true)
    // The first backup waits on the bot's exclusive transaction while it holds the deployment lock.
    try "busy_timeout_ms = 600000\n".write(toFile: fleet.root + "/tgsess.toml", atomically: true, encoding: .utf8)
    let bot = try LiveWriter.exclusiveLock(on: fleet.databasePath)
    defer { _ = try? bot.stop() }
    let lockPath = fleet.root + "/.tgsess.lock"
    let holder = try fleet.tgsessInBackground(["backup", "--json"])
    try waitUntil("the first backup to take the deployment lock") {
      guard holder.isRunning else { throw TestHelperError("the first backup ended early: \(holder.stderr)") }
      return (try? String(contentsOfFile: lockPath, encoding: .utf8))?.hasPrefix("pid=\(holder.pid) ") == true
    }

    for arguments in [["backup"], ["backup", "--user", String(try fleet.sessionUserIDs()[0])]] {
      let second = try fleet.tgsess(arguments)
      #expect(second.status == 75)
      let prefix = "tgsess: backup: \(lockPath): held by pid=\(holder.pid) command=backup since="
      #expect(second.stderr.hasPrefix(prefix), "\(second.stderr)")
      #expect(second.stderr.hasSuffix("; wait for it to finish, or retry with --lock-wait SECONDS\n"))
      #expect(second.stderr.split(separator: "\n").count == 1)
    }

    // With --lock-wait the run waits for the holder instead of failing.
    let waiter = try fleet.tgsessInBackground(["backup", "--json", "--lock-wait", "600"])
    try waitUntil("the waiting run to reach the lock") { waiter.hasOpen(lockPath) || !waiter.isRunning }
    #expect(waiter.isRunning, "\(waiter.stderr)")
    #expect(holder.isRunning)
    try bot.stop()
    #expect(holder.wait().status == 0, "\(holder.stderr)")
    #expect(waiter.wait().status == 0, "\(waiter.stderr)")
    fleet.keep(holder)
    fleet.keep(waiter)
    let first = try decodeJSON(BackupResult.self, from: holder.result)
    let later = try decodeJSON(BackupResult.self, from: waiter.result)
    let fullIDs = try Self.list(fleet, ["--kind", "full"]).map(\.id)
    #expect(Set(fullIDs) == Set((first.archives + later.archives).filter { $0.kind == .full }.map(\.id)))
    #expect(fullIDs.count == 2)
    try Self.expectNoLeaks(fleet)
  }

  // MARK: - Per-user

  @Test func perUserBackupRecordsItsReasonAndArchiveInSessionBackups() throws {
    try StockTools.require()
    let fleet = try TestFleet(users: 4, entities: 120, collectsSecrets: true)
    let user = try fleet.telethonUserIDs()[0]
    let rowsBefore = try StockTools.query(fleet.databasePath, "SELECT count(*) FROM session_backups")
    let result = try Self.backup(fleet, ["--user", String(user), "--reason", "Before login"])
    #expect(result.archives.count == 1)
    let archive = try #require(result.archives.first)
    #expect(archive.kind == .user && archive.userID == user && archive.reason == "Before login")
    #expect(archive.verification == .full)
    #expect(archive.id.contains("-u\(user)-"))
    #expect(
      try StockTools.query(
        fleet.databasePath,
        "SELECT user_id || '|' || backup_reason FROM session_backups WHERE archive_id = '\(archive.id)'")
        == "\(user)|Before login")
    #expect(
      try StockTools.query(fleet.databasePath, "SELECT count(*) FROM session_backups") == String(Int(rowsBefore)! + 1))

    // It holds the user's session file and database rows (secrets still Fernet tokens).
    let scratch = try TemporaryDirectory()
    let (problems, manifest, directory) = try StockTools.extractAndVerify(
      archive.path, identity: fleet.identityPath, scratch: scratch.path)
    #expect(problems.isEmpty, "\(problems)")
    let paths = manifest.entries.map(\.path)
    #expect(paths.contains("sessions/user_\(user).session"))
    #expect(paths.contains("users/user_\(user).json"))
    let rows = try String(contentsOfFile: directory + "/users/user_\(user).json", encoding: .utf8)
    #expect(rows.contains("\"session_string\" : \"gAAAAA"))
    try Self.expectSameKey(fleet.sessionPath(user), directory + "/sessions/user_\(user).session")

    // Only that archive exists; list shows its reason.
    #expect(try Self.list(fleet, ["--kind", "full"]).isEmpty)
    let listed = try Self.list(fleet, ["--user", String(user)])
    #expect(listed.map(\.id) == [archive.id] && listed.first?.reason == "Before login")
    try Self.expectNoLeaks(fleet)
  }

  @Test func invalidReasonsAndUnknownUsersAreRefusedWithAMessage() throws {
    let fleet = try TestFleet(users: 2, entities: 120, collectsSecrets: true)
    let user = String(try fleet.sessionUserIDs()[0])
    let before = try TreeSnapshot(fleet.root)
    for reason in ["", String(repeating: "x", count: 65), "two\nlines"] {
      let result = try fleet.tgsess(["backup", "--user", user, "--reason", reason])
      #expect(result.status == 64)
      #expect(result.stderr == Self.invalidReasonMessage)
      #expect(result.stdout.isEmpty)
    }
    #expect(try TreeSnapshot(fleet.root) == before)
    // 64 characters is the longest reason.
    let longest = String(repeating: "x", count: 64)
    let text = try fleet.tgsess(["backup", "--user", user, "--reason", longest])
    #expect(text.status == 0)
    let archive = try #require(try Self.list(fleet).first)
    #expect(archive.reason == longest)
    #expect(text.stdout.hasPrefix("\(archive.id)  user \(user)  "), "\(text.stdout)")
    // A user with neither a session file nor a row.
    let nobody = try fleet.tgsess(["backup", "--user", "999"])
    #expect(nobody.status == 1)
    #expect(
      nobody.stderr
        == "tgsess: user 999: no session file (\(fleet.sessionPath(999))) and no database row; nothing to back up\n")
    try Self.expectNoLeaks(fleet)
  }

  @Test func scheduledBackupsWritePerUserArchivesOnlyForChangedIdentities() throws {
    let fleet = try TestFleet(users: 10, entities: 120, collectsSecrets: true)
    let users = try fleet.sessionUserIDs()
    let telethon = try fleet.telethonUserIDs()
    try #require(telethon.count >= 4)
    let (keyChanged, dcChanged, churned, spelled) = (telethon[0], telethon[1], telethon[2], telethon[3])
    // The same IPv6 address spelled in capitals and uncompressed is the same identity every run.
    try runProcess(
      StockTools.sqlite3,
      [fleet.sessionPath(spelled), "UPDATE sessions SET server_address = '2001:067C:04E8:F002:0000:0000:0000:000A'"])

    let first = try Self.backup(fleet)
    #expect(Self.perUserIDs(first) == users)  // nobody had one
    let second = try Self.backup(fleet)
    #expect(Self.perUserIDs(second).isEmpty)
    #expect(second.unchangedUsers == users.count)

    // A new auth key, written by Telethon itself.
    try runPython(
      """
      import os, sys
      from telethon.crypto import AuthKey
      from telethon.sessions import SQLiteSession
      s = SQLiteSession(sys.argv[1])
      s.auth_key = AuthKey(os.urandom(256))
      s.save()
      s.close()
      """, arguments: [fleet.sessionPath(keyChanged)])
    // Another dc and address.
    let dc = try StockTools.query(fleet.sessionPath(dcChanged), "SELECT dc_id FROM sessions") == "4" ? 2 : 4
    let address = dc == 4 ? "149.154.167.91" : "149.154.167.51"
    try runProcess(
      StockTools.sqlite3,
      [fleet.sessionPath(dcChanged), "UPDATE sessions SET dc_id = \(dc), server_address = '\(address)'"])
    // Entity-cache churn, as a running client makes it: not an identity change.
    try runPython(
      """
      import sqlite3, sys, time
      conn = sqlite3.connect(sys.argv[1])
      for i in range(40):
          conn.execute("INSERT INTO entities(id, hash, username, phone, name, date) VALUES (?,?,?,?,?,?)",
                       (8_000_000_000 + i, i * 7919, 'churn%d' % i, None, 'Churn', int(time.time())))
      conn.execute("UPDATE update_state SET pts = pts + 40 WHERE id = 0")
      conn.commit()
      """, arguments: [fleet.sessionPath(churned)])
    // A user who had no per-user backup yet.
    let newcomer: Int64 = 555_000_111
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
      """, arguments: [fleet.sessionPath(newcomer)])
    try fleet.collectSecrets()

    let third = try Self.backup(fleet)
    #expect(Self.perUserIDs(third) == [keyChanged, dcChanged, newcomer].sorted())
    #expect(third.archives.filter { $0.kind == .user }.allSatisfy { $0.reason == "Scheduled" })
    #expect(third.unchangedUsers == users.count - 2)
    // The newcomer has a file but no user_sessions row: its archive is the whole backup, with no
    // session_backups row (there is no session string to record).
    for archive in third.archives where archive.kind == .user {
      #expect(
        try StockTools.query(
          fleet.databasePath, "SELECT backup_reason FROM session_backups WHERE archive_id = '\(archive.id)'")
          == (archive.userID == newcomer ? "" : "Scheduled"))
    }
    // The churned user's newest per-user archive is still the first one.
    let churnedFirst = first.archives.first { $0.userID == churned }?.id
    #expect(
      try Self.list(fleet, ["--user", String(churned), "--kind", "user"]).map(\.id) == [churnedFirst].compactMap { $0 })

    let fourth = try Self.backup(fleet)
    #expect(Self.perUserIDs(fourth).isEmpty)
    #expect(fourth.unchangedUsers == users.count + 1)
    try Self.expectNoLeaks(fleet)
  }

  // MARK: - Partial

  @Test func aCorruptSessionFileMakesAPartialBackupNamingTheUser() throws {
    try StockTools.require()
    let fleet = try TestFleet(users: 8, entities: 120, collectsSecrets: true)
    let users = try fleet.sessionUserIDs()
    let broken = users[3]
    try Data(randomBytes(8192)).write(to: URL(fileURLWithPath: fleet.sessionPath(broken)))

    let result = try fleet.tgsess(["backup", "--json"])
    #expect(result.status == 3, "\(result.stderr)")
    let decoded = try decodeJSON(BackupResult.self, from: result)
    #expect(decoded.failures.map(\.userID) == [broken])
    let reason = decoded.failures.first?.reason ?? ""
    // The reason names the user's file (not the staging copy) and what is wrong with it.
    #expect(reason.hasPrefix(fleet.sessionPath(broken) + ": online backup failed: file is not a database"), "\(reason)")
    #expect(reason.hasSuffix("restore it from a backup"))
    #expect(result.stderr.contains("user.id=\(broken)"))
    #expect(decoded.users == users.count - 1)

    // Every other user is in the full archive, and has a per-user archive.
    let full = try #require(decoded.archives.first { $0.kind == .full })
    let scratch = try TemporaryDirectory()
    let (problems, manifest, _) = try StockTools.extractAndVerify(
      full.path, identity: fleet.identityPath, scratch: scratch.path)
    #expect(problems.isEmpty, "\(problems)")
    let sessions = manifest.entries.map(\.path).filter { $0.hasSuffix(".session") }
    #expect(Set(sessions) == Set(users.filter { $0 != broken }.map { "sessions/user_\($0).session" }))
    #expect(Self.perUserIDs(decoded) == users.filter { $0 != broken })

    // The text output names it too.
    let text = try fleet.tgsess(["backup"])
    #expect(text.status == 3)
    #expect(text.stdout.contains("FAILED user \(broken): \(fleet.sessionPath(broken)): "))
    try Self.expectNoLeaks(fleet)
  }

  // MARK: - Session files without a database row

  /// Runs `Tests/StoreTests/Fixtures/python/session_peer.py`, which drives the real libraries.
  /// - Parameter peer: nil for the venv's Pyrogram 2.0.106, or "telethon142", "kurigram", "pyrofork",
  ///   "hydrogram".
  static func sessionPeer(_ command: String, _ arguments: [String], peer: String? = nil) throws -> WrittenFile {
    let script = try String(
      contentsOfFile: TestEnvironment.packageRoot + "/Tests/StoreTests/Fixtures/python/session_peer.py",
      encoding: .utf8)
    let result = try runPython(script, arguments: [command] + arguments, peer: peer)
    guard let line = result.stdout.split(separator: "\n").last(where: { $0.hasPrefix("RESULT ") }),
      let written = try? JSONDecoder().decode(WrittenFile.self, from: Data(line.dropFirst(7).utf8))
    else { throw TestHelperError("session_peer.py \(command) printed no RESULT: \(result.stdout) \(result.stderr)") }
    return written
  }

  /// What session_peer.py's `telethon-file` and `pyrogram-file` print (the fields used here).
  struct WrittenFile: Decodable {
    var schema: Int?
    var path: String?
  }

  /// Writes `sessions/user_<userID>.session` with a real library: Telethon 1.42 (schema v7), or
  /// the Pyrogram family's own storage (Pyrogram, kurigram, pyrofork, Hydrogram).
  static func writeRealSession(_ fleet: TestFleet, userID: Int64, library: String) throws {
    let path = fleet.sessionPath(userID)
    if library == "telethon142" {
      let written = try sessionPeer(
        "telethon-file", [path, "2", "149.154.167.51", "443", String(userID), "", ""], peer: library)
      #expect(written.schema == 7, "\(written)")
    } else if library == "hydrogram" {
      let written = try sessionPeer(
        "hydrogram-file", [fleet.sessionsDirectory, "user_\(userID)", "2", "12345", String(userID), ""], peer: library)
      #expect(written.schema == 3 && written.path == path, "\(written)")
    } else {
      let written = try sessionPeer(
        "pyrogram-file",
        [fleet.sessionsDirectory, "user_\(userID)", "2", "12345", "0", String(userID), "0", "", "0", "0"],
        peer: library == "pyrogram" ? nil : library)
      #expect(written.path == path, "\(written)")
    }
    #expect(FileManager.default.fileExists(atPath: path), "\(library) wrote no \(path)")
  }

  @Test func sessionFilesWithoutARowGetTheirArchiveAndNoRowAndNoFailure() throws {
    try StockTools.require()
    let fleet = try TestFleet(users: 4, entities: 120, collectsSecrets: true)
    // Logins in progress: real library files beside the fleet, with no user_sessions row.
    let libraries: [(Int64, String)] = [
      (700_000_001, "pyrogram"), (700_000_002, "kurigram"), (700_000_003, "pyrofork"), (700_000_004, "telethon142"),
      (700_000_006, "hydrogram"),
    ]
    for (user, library) in libraries { try Self.writeRealSession(fleet, userID: user, library: library) }
    try fleet.collectSecrets()
    let fileOnly = libraries.map(\.0)
    let inList = fileOnly.map(String.init).joined(separator: ",")
    #expect(
      try StockTools.query(fleet.databasePath, "SELECT count(*) FROM user_sessions WHERE user_id IN (\(inList))") == "0"
    )

    let result = try fleet.tgsess(["backup", "--json"])
    #expect(result.status == 0, "\(result.stdout) \(result.stderr)")
    let decoded = try decodeJSON(BackupResult.self, from: result)
    #expect(decoded.failures.isEmpty, "\(decoded.failures)")
    #expect(Set(Self.perUserIDs(decoded)).isSuperset(of: fileOnly))
    // No session_backups row for a user without a row: nothing pretends to hold a session string.
    #expect(
      try StockTools.query(fleet.databasePath, "SELECT count(*) FROM session_backups WHERE user_id IN (\(inList))")
        == "0")
    // Each per-user archive holds exactly that user's file, with its key.
    let scratch = try TemporaryDirectory()
    for user in fileOnly {
      let archive = try #require(decoded.archives.first { $0.kind == .user && $0.userID == user })
      #expect(archive.verification == .full)
      let (problems, manifest, directory) = try StockTools.extractAndVerify(
        archive.path, identity: fleet.identityPath, scratch: scratch.path)
      #expect(problems.isEmpty, "\(problems)")
      let paths = manifest.entries.map(\.path)
      #expect(paths == ["sessions/user_\(user).session"])
      try Self.expectSameKey(fleet.sessionPath(user), directory + "/sessions/user_\(user).session")
    }

    // A bot whose schema declares session_string NOT NULL (the report's): recording a row of
    // NULLs used to fail the user, exit 3 and name a database that is fine.
    try runPython(
      """
      import sqlite3, sys
      conn = sqlite3.connect(sys.argv[1], isolation_level=None)
      sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'session_backups'").fetchone()[0]
      conn.execute("BEGIN")
      conn.execute(sql.replace("session_backups", "strict_backups", 1).replace(
          "session_string TEXT", "session_string TEXT NOT NULL", 1))
      conn.execute("INSERT INTO strict_backups SELECT * FROM session_backups WHERE session_string IS NOT NULL")
      conn.execute("DROP TABLE session_backups")
      conn.execute("ALTER TABLE strict_backups RENAME TO session_backups")
      conn.execute("CREATE INDEX session_backups_user_created ON session_backups(user_id, created_at)")
      conn.execute("COMMIT")
      """, arguments: [fleet.databasePath])
    let newcomer: Int64 = 700_000_005
    try Self.writeRealSession(fleet, userID: newcomer, library: "telethon142")
    try fleet.collectSecrets()
    let text = try fleet.tgsess(["backup"])
    #expect(text.status == 0, "\(text.stdout) \(text.stderr)")
    #expect(!text.stdout.contains("FAILED"), "\(text.stdout)")
    #expect(text.stdout.contains("  user \(newcomer)  "), "\(text.stdout)")
    let single = try fleet.tgsess(["backup", "--user", String(fileOnly[0]), "--json"])
    #expect(single.status == 0, "\(single.stderr)")
    #expect(try decodeJSON(BackupResult.self, from: single).archives.map(\.userID) == [fileOnly[0]])
    #expect(
      try StockTools.query(
        fleet.databasePath, "SELECT count(*) FROM session_backups WHERE user_id IN (\(inList), \(newcomer))") == "0")
    try Self.expectNoLeaks(fleet)
  }

  // MARK: - Secrets

  @Test func noSecretReachesAnyOutputVerboseOrNot() throws {
    let fleet = try TestFleet(users: 6, entities: 120, collectsSecrets: true)
    let users = try fleet.sessionUserIDs()
    for arguments in [
      ["backup", "-vv"], ["backup", "--json", "-vv"], ["list"], ["list", "--json", "-v"],
      ["list", "--user", String(users[1])],
      ["backup", "--user", String(users[2]), "--reason", "Manual", "-vv", "--json"],
      ["status", "--json", "-vv"], ["status"],
    ] {
      let result = try fleet.tgsess(arguments)
      #expect(result.status == 0, "\(arguments): \(result.stderr)")
    }
    // Failure paths: a damaged session file, a missing identity, a held lock.
    try Data(randomBytes(4096)).write(to: URL(fileURLWithPath: fleet.sessionPath(users[4])))
    #expect(try fleet.tgsess(["backup", "-vv", "--json"]).status == 3)
    let bot = try LiveWriter.exclusiveLock(on: fleet.databasePath)
    try "busy_timeout_ms = 50\n".write(toFile: fleet.root + "/tgsess.toml", atomically: true, encoding: .utf8)
    #expect(try fleet.tgsess(["backup", "--user", String(users[0]), "-vv"]).status == 1)
    try bot.stop()

    // The seed's legacy shape: plaintext secrets, then init, migrate and the legacy import.
    let legacy = try TestFleet(users: 4, legacy: true, entities: 120, collectsSecrets: true)
    for arguments in [["init", "-vv"], ["migrate", "--json", "-vv"], ["backup", "-vv"], ["list", "--json"]] {
      let result = try legacy.tgsess(arguments)
      #expect(result.status == 0, "\(arguments): \(result.stderr)")
    }
    #expect(legacy.secretCount >= 4 * 3)
    try Self.expectNoLeaks(legacy)
    try Self.expectNoLeaks(fleet)

    // The scan finds a secret where there is one.
    let planted = try StockTools.query(fleet.sessionPath(users[0]), "SELECT hex(auth_key) FROM sessions")
    fleet.keep("planted", "key: \(planted)", "")
    #expect(try fleet.leakedSecrets() == ["the auth key of user_\(users[0]).session in the stdout of `planted`"])
  }

  // MARK: - list

  @Test func listIsNewestFirstAndFiltersByUserAndKind() throws {
    let fleet = try TestFleet(users: 4, entities: 120, collectsSecrets: true)
    let users = try fleet.sessionUserIDs()
    let first = try Self.backup(fleet)
    let firstTime = try #require(try Self.list(fleet).first?.createdAt)
    try Self.waitForNextSecond(after: firstTime)
    let manual = try Self.backup(fleet, ["--user", String(users[1]), "--reason", "Manual"]).archives[0]
    try Self.waitForNextSecond(after: try #require(try Self.list(fleet).first?.createdAt))
    let last = try Self.backup(fleet).archives
    #expect(last.count == 1)

    let all = try Self.list(fleet)
    #expect(all.count == first.archives.count + 2)
    #expect(all.map(\.id).prefix(2) == [last[0].id, manual.id])
    #expect(Set(all.dropFirst(2).map(\.id)) == Set(first.archives.map(\.id)))
    #expect(zip(all, all.dropFirst()).allSatisfy { $0.createdAt >= $1.createdAt })
    #expect(all[0].createdAt > all[1].createdAt && all[1].createdAt > all[2].createdAt)
    #expect(all.allSatisfy { $0.verification == .full && FileManager.default.fileExists(atPath: $0.path) })
    #expect(all[1].reason == "Manual" && all[0].reason == "Scheduled")

    let mine = try Self.list(fleet, ["--user", String(users[1])])
    let firstOfMine = first.archives.filter { $0.kind == .full || $0.userID == users[1] }.map(\.id)
    #expect(mine.map(\.id).prefix(2) == [last[0].id, manual.id])
    #expect(Set(mine.dropFirst(2).map(\.id)) == Set(firstOfMine))
    #expect(mine.allSatisfy { $0.kind == .full || $0.userID == users[1] })

    let fulls = try Self.list(fleet, ["--kind", "full"])
    #expect(fulls.map(\.id) == [last[0].id] + first.archives.filter { $0.kind == .full }.map(\.id))
    let perUser = try Self.list(fleet, ["--kind", "user"])
    #expect(perUser.count == users.count + 1 && perUser.allSatisfy { $0.kind == .user })
    #expect(try Self.list(fleet, ["--kind", "user", "--user", String(users[1])]).map(\.id).first == manual.id)

    let bogus = try fleet.tgsess(["list", "--kind", "weekly"])
    #expect(bogus.status == 64)
    #expect(bogus.stderr.contains("--kind must be full or user. Try: --kind full"))
    try Self.expectNoLeaks(fleet)
  }

  @Test func listWorksOnACopiedBackupsFolderAloneEvenWithoutRecords() throws {
    let fleet = try TestFleet(users: 4, entities: 120, collectsSecrets: true)
    let user = try fleet.sessionUserIDs()[2]
    _ = try Self.backup(fleet)
    _ = try Self.backup(fleet, ["--user", String(user), "--reason", "Before login"])
    let original = try Self.list(fleet)

    // Only backups/ on another machine: no keys, no database.
    let elsewhere = try TemporaryDirectory("tgsess-elsewhere")
    let root = elsewhere.file("root")
    try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    try FileManager.default.copyItem(atPath: fleet.backupsDirectory, toPath: root + "/backups")
    func listCopy(_ arguments: [String]) throws -> ProcessResult {
      let result = try runTgsess(arguments + ["--root", root])
      fleet.keep("tgsess " + arguments.joined(separator: " ") + " (copy)", result.stdout, result.stderr)
      #expect(result.status == 0, "\(result.stderr)")
      return result
    }
    // With the escrowed key ring, what list shows is what it showed on the host.
    let ring = fleet.root + "/keys/signing.pub"
    let copied = try decodeJSON([ListedArchive].self, from: try listCopy(["list", "--json", "--verify-key", ring]))
    func strip(_ list: [ListedArchive]) -> [ListedArchive] {
      list.map {
        var archive = $0
        archive.path = (archive.path as NSString).lastPathComponent
        return archive
      }
    }
    #expect(strip(copied) == strip(original))
    #expect(copied.allSatisfy { $0.path.hasPrefix(root + "/backups/") })
    #expect(!FileManager.default.fileExists(atPath: root + "/keys"))
    #expect(!FileManager.default.fileExists(atPath: root + "/data"))
    #expect(original.allSatisfy { $0.signature == .signed && $0.verification == .full })
    // Without a key ring, nothing is verified and no write-time proof is shown.
    let unverified = try decodeJSON([ListedArchive].self, from: try listCopy(["list", "--json"]))
    #expect(unverified.map(\.id) == original.map(\.id))
    #expect(unverified.allSatisfy { $0.signature == .unverified && $0.verification == nil })

    // Records lost: the names still give id, time, kind and user, the signatures the reason;
    // the write-time proof is unknown.
    for file in try TreeSnapshot.regularFiles(under: root + "/backups") where file.hasSuffix(".json") {
      try FileManager.default.removeItem(atPath: root + "/backups/" + file)
    }
    let bare = try decodeJSON([ListedArchive].self, from: try listCopy(["list", "--json", "--verify-key", ring]))
    #expect(bare.map(\.id) == original.map(\.id))
    #expect(bare.map(\.createdAt) == original.map(\.createdAt))
    #expect(bare.map(\.kind) == original.map(\.kind))
    #expect(bare.map(\.userID) == original.map(\.userID))
    #expect(bare.map(\.byteCount) == original.map(\.byteCount))
    #expect(bare.map(\.reason) == original.map(\.reason))
    #expect(bare.allSatisfy { $0.signature == .signed && $0.verification == .unknown })
    let text = try listCopy(["list", "--verify-key", ring]).stdout.split(separator: "\n")
    #expect(text.count == original.count + 1)
    #expect(text.dropFirst().allSatisfy { $0.hasSuffix("  signed     unknown") })
    let unsignedText = try listCopy(["list"]).stdout.split(separator: "\n")
    #expect(unsignedText.dropFirst().allSatisfy { $0.hasSuffix("  unverified  -") })
    let mine = try decodeJSON([ListedArchive].self, from: try listCopy(["list", "--json", "--user", String(user)]))
    #expect(Set(mine.map(\.id)) == Set(original.filter { $0.userID == user }.map(\.id)))
    try Self.expectNoLeaks(fleet)
  }

  /// Where each column of a text table starts: after the line start or a run of two spaces.
  static func columnStarts(_ line: Substring) -> [Int] {
    let characters = Array(line)
    return characters.indices.filter { index in
      characters[index] != " "
        && (index == 0 || (index >= 2 && characters[index - 1] == " " && characters[index - 2] == " "))
    }
  }

  @Test func listColumnsLineUpWhateverTheIDLength() throws {
    let fleet = try TestFleet(users: 3, entities: 120, collectsSecrets: true)
    // Telegram user ids run to 10 digits; such a user's archive ids are 35 characters.
    let bigID: Int64 = 5_123_456_789
    try FileManager.default.copyItem(
      atPath: fleet.sessionPath(try fleet.sessionUserIDs()[1]), toPath: fleet.sessionPath(bigID))
    _ = try Self.backup(fleet)
    _ = try Self.backup(fleet, ["--user", String(try fleet.sessionUserIDs()[0]), "--reason", "Before login"])
    // A restore over a damaged session file takes a verbatim undo: its REASON cell says so.
    let damaged = try #require(try fleet.sessionUserIDs().filter { $0 != bigID }.last)
    try VerbatimUndoCLITests.garbage(20_000).write(to: URL(fileURLWithPath: fleet.sessionPath(damaged)))
    let restored = try fleet.tgsessOK(["restore", "latest", "--user", String(damaged)])
    let undo = try #require(RestoreCLITests.undoID(restored.stdout), "\(restored.stdout)")
    let lines = try fleet.tgsess(["list"]).stdout.split(separator: "\n")
    #expect(lines.count == 1 + 1 + 4 + 1 + 1)
    #expect(lines.filter { $0.contains("(verbatim)") }.map { String($0.split(separator: " ")[0]) } == [undo])
    #expect(lines.contains { $0.hasPrefix(undo + " ") && $0.contains("  Before restore (verbatim)  ") })
    #expect(lines[0].hasPrefix("ID "))
    // Ids at and past the 34 columns the old layout gave every id.
    #expect(lines.dropFirst().contains { $0.split(separator: " ")[0].count > 34 })
    #expect(lines.dropFirst().contains { $0.split(separator: " ")[0].count == 34 })
    let header = Self.columnStarts(lines[0])
    #expect(header.count == 9)
    for line in lines.dropFirst() {
      #expect(Self.columnStarts(line) == header, "\(line)")
      #expect(!line.hasSuffix(" "))
    }
    try Self.expectNoLeaks(fleet)
  }

  // MARK: - Legacy import

  @Test func migrateImportsLegacyBackupsOnceAsImportedArchives() throws {
    try StockTools.require()
    let fleet = try TestFleet(users: 8, legacy: true, entities: 120, collectsSecrets: true)
    let data = fleet.root + "/data"
    let databaseCopies = try FileManager.default.contentsOfDirectory(atPath: data)
      .filter { $0.hasPrefix("telegram_bot.db.backup_") }.map { data + "/" + $0 }
    let sessionCopies = try FileManager.default.contentsOfDirectory(atPath: fleet.sessionsDirectory)
      .filter { $0.hasSuffix(".session.backup") }.sorted().map { fleet.sessionsDirectory + "/" + $0 }
    try #require(databaseCopies.count == 1 && !sessionCopies.isEmpty)
    let legacyFiles = databaseCopies + sessionCopies
    let sums = try StockTools.sha256sums(legacyFiles)

    let initResult = try fleet.tgsess(["init", "--json"])
    #expect(initResult.status == 0, "\(initResult.stderr)")
    let migrated = try decodeJSON(InitResult.self, from: initResult).migrate
    #expect(migrated.imported.map(\.path) == legacyFiles)
    #expect(migrated.imported.allSatisfy { $0.archiveID != nil })
    #expect(migrated.importNote == nil)

    let imported = try Self.list(fleet).filter { $0.reason == "Imported" }
    #expect(Set(imported.map(\.id)) == Set(migrated.imported.compactMap(\.archiveID)))
    let scratch = try TemporaryDirectory()
    for file in migrated.imported {
      let archive = try #require(imported.first { $0.id == file.archiveID })
      #expect(archive.kind == (file.userID == nil ? .full : .user) && archive.userID == file.userID)
      #expect(archive.verification == .full)
      let (problems, manifest, directory) = try StockTools.extractAndVerify(
        archive.path, identity: fleet.identityPath, scratch: scratch.path)
      #expect(problems.isEmpty, "\(problems)")
      let entries = manifest.entries
      #expect(entries.count == 1)
      let relative = (file.userID == nil ? "data/" : "sessions/") + (file.path as NSString).lastPathComponent
      #expect(entries.first?.path == relative && entries.first?.role == .imported)
      // The bytes of the legacy file, exactly.
      #expect(try StockTools.sha256sums([directory + "/" + relative]).values.first == sums[file.path])
    }
    // The database copy is dated by the stamp in its name.
    let stamp = String((databaseCopies[0] as NSString).lastPathComponent.dropFirst("telegram_bot.db.backup_".count))
    let databaseArchive = try #require(imported.first { $0.kind == .full })
    #expect(databaseArchive.createdAt == Timestamp.parseCompact(stamp))
    #expect(databaseArchive.id.hasPrefix(stamp + "-full-"))
    // The files stay where they were.
    #expect(try StockTools.sha256sums(legacyFiles) == sums)

    // Again: nothing new; a backup in between changes nothing either.
    let again = try decodeJSON(MigrateResult.self, from: try fleet.tgsess(["migrate", "--json"]))
    #expect(again.imported.isEmpty && again.alreadyImported == legacyFiles.count)
    _ = try Self.backup(fleet)
    let text = try fleet.tgsess(["migrate"])
    #expect(text.status == 0)
    #expect(
      text.stdout
        == "database \(fleet.databasePath) is current (schema version \(BotSchema.currentVersion)); nothing to do\n  \(legacyFiles.count) legacy backup file(s) already imported earlier\n"
    )
    #expect(try Self.list(fleet).filter { $0.reason == "Imported" }.count == legacyFiles.count)

    // A copy the seed's bot makes later (Python's strftime stamp) is imported on the next run.
    let later = data + "/telegram_bot.db.backup_20240101_120000"
    try runProcess(StockTools.sqlite3, [fleet.databasePath, ".backup '\(later)'"])
    let third = try fleet.tgsess(["migrate"])
    #expect(third.status == 0)
    let newID = try #require(
      try Self.list(fleet).first { $0.reason == "Imported" && $0.id.hasPrefix("20240101T120000Z-full-") }?.id)
    #expect(third.stdout.contains("  did import legacy backup \(later) as archive \(newID) (reason Imported)\n"))
    #expect(try Self.list(fleet).last?.id == newID)  // the oldest archive
    #expect(
      try StockTools.query(fleet.databasePath, "SELECT count(*) FROM tgsess_state WHERE key LIKE 'imported:%'")
        == String(legacyFiles.count + 1))
    try Self.expectNoLeaks(fleet)
  }

  @Test func legacyImportWaitsForAnAgeRecipientAndSaysSo() throws {
    let fleet = try TestFleet(users: 6, legacy: true, entities: 120, collectsSecrets: true)
    let key = try runPython("from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())")
      .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    let environment = ["TGSESS_FERNET_KEYS": key]
    let count = try LegacyBackups.find(Deployment(root: fleet.root)).count
    try #require(count >= 2)

    // A dry run lists them and writes nothing.
    let before = try TreeSnapshot(fleet.root)
    let dry = try decodeJSON(
      MigrateResult.self, from: try fleet.tgsess(["migrate", "--dry-run", "--json"], environment: environment))
    #expect(dry.imported.count == count && dry.imported.allSatisfy { $0.archiveID == nil })
    #expect(try TreeSnapshot(fleet.root) == before)

    // Without a recipient the migration itself waits too: its safety copy is never plaintext
    // (SafetyCopyCLITests covers the refusal).
    #expect(dry.refusal?.contains("no age recipient to encrypt the database's safety copy to") == true)
    let result = try fleet.tgsess(["migrate"], environment: environment)
    #expect(result.status == 1, "\(result.stdout)")
    #expect(try TreeSnapshot(fleet.root) == before)

    // Once init has made the keys, they are imported.
    let initialised = try fleet.tgsess(["init", "--json"], environment: environment)
    #expect(initialised.status == 0, "\(initialised.stderr)")
    #expect(try decodeJSON(InitResult.self, from: initialised).migrate.imported.count == count)
    #expect(try Self.list(fleet).filter { $0.reason == "Imported" }.count == count)
    #expect(!result.stdout.contains(key) && !result.stderr.contains(key))

    // A migrated database with no recipient any more: a copy the seed's bot makes later waits,
    // and migrate says so.
    let keys = fleet.root + "/keys"
    for name in ["age-recipients.txt", "age-identity.txt"] {
      try FileManager.default.moveItem(atPath: keys + "/" + name, toPath: keys + "/" + name + ".away")
    }
    let later = fleet.root + "/data/telegram_bot.db.backup_20240101_120000"
    try runProcess(StockTools.sqlite3, [fleet.databasePath, ".backup '\(later)'"])
    let waiting = try fleet.tgsess(["migrate"], environment: environment)
    #expect(waiting.status == 0, "\(waiting.stderr)")
    let note = "1 legacy backup file(s) not imported: no age recipient to encrypt them to (run tgsess init)"
    #expect(waiting.stdout.hasSuffix("  note: \(note)\n"))
    let json = try decodeJSON(
      MigrateResult.self, from: try fleet.tgsess(["migrate", "--json"], environment: environment))
    #expect(json.importNote == note && json.imported.isEmpty)
    try Self.expectNoLeaks(fleet)
  }
}

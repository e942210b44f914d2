import Foundation
import Jobs
import Store
import TestSupport
import Testing

/// `tgsess check` through the built binary: every check made to fail on purpose, judged by its
/// finding in `--json` and by the Nagios exit code; what check writes and what it must not touch.
@Suite struct CheckCLITests {
  // MARK: - Helpers

  static func write(_ text: String, to path: String) throws {
    try Data(text.utf8).write(to: URL(fileURLWithPath: path))
  }

  static func fernetKey(_ fleet: TestFleet) throws -> String {
    let text = try String(contentsOfFile: fleet.deployment.fernetKeysPath, encoding: .utf8)
    return try #require(text.split(separator: "\n").map(String.init).first { !$0.hasPrefix("#") && !$0.isEmpty })
  }

  /// Expects exactly one finding of `check` (for `user`) in state `state` whose message contains
  /// each of `parts`.
  static func expectFinding(
    _ run: CheckRun, _ check: String, _ state: String, user: Int64? = nil, contains parts: [String],
    sourceLocation: SourceLocation = #_sourceLocation
  ) {
    let found = run.findings(check, user: user)
    #expect(found.count == 1, "expected one \(check) finding: \(run.report)", sourceLocation: sourceLocation)
    guard let finding = found.first else { return }
    #expect(finding.state == state, "\(finding)", sourceLocation: sourceLocation)
    for part in parts {
      #expect(finding.message.contains(part), "'\(part)' not in: \(finding.message)", sourceLocation: sourceLocation)
    }
  }

  /// The exit code Nagios reads for `state`.
  static func exitCode(_ state: String) -> Int32 {
    ["ok": 0, "warning": 1, "critical": 2, "unknown": 3][state] ?? -1
  }

  // MARK: - Whole deployment

  @Test func healthyFleetIsOKAndRecordsEveryUser() throws {
    let fleet = try TestFleet(users: 4, pyrogramShare: 0.3, entities: 10, backedUp: true)
    let run = try fleet.check()
    #expect(run.status == 0, "\(run.report) \(run.stderr)")
    #expect(run.state == "ok" && run.findings.isEmpty)
    #expect(run.sessions["ok"] == 4)
    #expect(try fleet.sqlite("SELECT group_concat(DISTINCT health) FROM user_sessions") == "ok")
    #expect(try fleet.sqlite("SELECT count(*) FROM user_sessions WHERE last_checked_at IS NULL") == "0")
    #expect(try fleet.sqlite("SELECT count(*) FROM user_sessions WHERE last_error IS NOT NULL") == "0")
  }

  /// `[watch] enabled`: check warns while watch has never reported or has gone quiet for more
  /// than 4 heartbeats, and says nothing once its textfile is fresh.
  @Test func anEnabledWatchThatStoppedReportingIsAWarning() throws {
    let fleet = try TestFleet(users: 2, pyrogramShare: 0, entities: 10, backedUp: true)
    let textfile = fleet.directory.file("tgsess_watch.prom")
    try Self.write(
      "[watch]\nenabled = true\nprometheus = \"\(textfile)\"\nheartbeat_seconds = 30\n", to: fleet.root + "/tgsess.toml"
    )
    let never = try fleet.check()
    #expect(never.status == 1, "\(never.report)")
    Self.expectFinding(never, "watch", "warning", contains: ["has never reported", textfile])

    let once = try fleet.tgsess(["watch", "--once"])
    #expect(once.status == 0, "\(once.stderr)")
    let fresh = try fleet.check()
    #expect(fresh.findings("watch").isEmpty, "\(fresh.report)")
    #expect(fresh.status == 0, "\(fresh.report)")

    // Quiet for 10 minutes: more than 4 heartbeats of 30 s.
    let old = Date().addingTimeInterval(-600)
    try FileManager.default.setAttributes([.modificationDate: old], ofItemAtPath: textfile)
    let quiet = try fleet.check()
    #expect(quiet.status == 1, "\(quiet.report)")
    Self.expectFinding(
      quiet, "watch", "warning", contains: ["has not reported for 10m", "systemctl status tgsess-watch"])
  }

  @Test func garbageDatabaseIsCriticalWithoutPerUserNoise() throws {
    let fleet = try TestFleet(users: 2, pyrogramShare: 0, entities: 10, backedUp: true)
    let garbage = Data(repeating: 0x5a, count: 4096)
    try garbage.write(to: URL(fileURLWithPath: fleet.databasePath))
    let run = try fleet.check()
    #expect(run.status == 2)
    Self.expectFinding(
      run, "db.open", "critical",
      contains: ["\(fleet.databasePath): not an SQLite database, or corrupted", "tgsess restore latest"])
    // Without rows, no file is an "orphan".
    #expect(run.findings("user.orphan-file").isEmpty, "\(run.report)")
    #expect(try Data(contentsOf: URL(fileURLWithPath: fleet.databasePath)) == garbage)
  }

  @Test func damagedDatabasePageIsCriticalAndNeverWritten() throws {
    let fleet = try TestFleet(users: 2, pyrogramShare: 0, entities: 10, backedUp: true)
    let index = try fleet.sqlite(
      "SELECT rootpage FROM sqlite_master WHERE name = 'session_backups_user_created'")
    let page = try #require(Int(index))
    // Garbage over one index page: the tables still read, quick_check does not pass.
    let handle = try FileHandle(forUpdating: URL(fileURLWithPath: fleet.databasePath))
    try handle.seek(toOffset: UInt64((page - 1) * 4096))
    try handle.write(contentsOf: [0x0d] + (0..<15).flatMap { _ in (0...255).map { UInt8($0) } })
    try handle.close()
    let before = try Data(contentsOf: URL(fileURLWithPath: fleet.databasePath))
    let run = try fleet.check()
    #expect(run.status == 2)
    Self.expectFinding(
      run, "db.integrity", "critical",
      contains: [
        "\(fleet.databasePath) fails quick_check: ", "Page \(page)", "restore it: tgsess restore latest",
      ])
    #expect(!run.findings[0].message.contains("\n"))
    #expect(try Data(contentsOf: URL(fileURLWithPath: fleet.databasePath)) == before)
  }

  @Test func schemaBehindIsAWarning() throws {
    let fleet = try TestFleet(users: 2, pyrogramShare: 0, entities: 10, backedUp: true)
    _ = try fleet.sqlite("DELETE FROM grdb_migrations WHERE identifier = 'v2-tgsess-state'")
    let run = try fleet.check()
    #expect(run.status == 1, "\(run.report)")
    Self.expectFinding(
      run, "db.schema", "warning",
      contains: ["\(fleet.databasePath) schema is at version 1, not 2; run tgsess migrate"])
    #expect(run.findings.count == 1, "\(run.report)")
  }

  @Test func legacyDatabaseIsSchemaBehind() throws {
    let fleet = try TestFleet(users: 2, legacy: true, pyrogramShare: 0, entities: 10)
    let run = try fleet.check()
    Self.expectFinding(run, "db.schema", "warning", contains: ["schema is at version 0, not 2; run tgsess migrate"])
    // The rows are read even without tgsess's columns: no orphan files.
    #expect(run.findings("user.orphan-file").isEmpty, "\(run.report)")
  }

  @Test func databaseFromANewerTgsessIsCritical() throws {
    let fleet = try TestFleet(users: 2, pyrogramShare: 0, entities: 10, backedUp: true)
    _ = try fleet.sqlite("INSERT INTO grdb_migrations VALUES ('v9-newer')")
    let run = try fleet.check()
    #expect(run.status == 2)
    Self.expectFinding(
      run, "db.schema", "critical",
      contains: ["was made by a newer tgsess (unknown migrations: v9-newer); upgrade tgsess"])
    // A newer schema is not written to.
    #expect(try fleet.sqlite("SELECT count(*) FROM user_sessions WHERE last_checked_at IS NOT NULL") == "0")
  }

  @Test func databaseLockedLongerThanTheBusyTimeoutIsAWarning() throws {
    let fleet = try TestFleet(users: 3, pyrogramShare: 0, entities: 10, backedUp: true)
    try Self.write("busy_timeout_ms = 300\n", to: fleet.root + "/tgsess.toml")
    let holder = try PythonHolder(PeerScripts.holdExclusive, arguments: [fleet.databasePath])
    let started = Date()
    let run = try fleet.check()
    let elapsed = Date().timeIntervalSince(started)
    holder.finish()
    #expect(run.status == 1, "\(run.report)")
    Self.expectFinding(
      run, "db.lock", "warning",
      contains: [
        "\(fleet.databasePath) stayed locked by another process longer than busy_timeout_ms (300 ms)",
        "fuser -v \(fleet.databasePath)",
      ])
    #expect(run.findings.count == 1, "no per-user noise: \(run.report)")
    #expect(elapsed < 5, "the configured busy timeout is used")
    // Once the holder is gone, check is clean again.
    #expect(try fleet.check().status == 0)
  }

  // MARK: - Session files

  /// Real files of every supported writer are OK; broken ones get the precise reason.
  @Test func sessionFileClasses() throws {
    let fleet = try TestFleet(users: 0, pyrogramShare: 0, entities: 10)
    let key = try Self.fernetKey(fleet)
    let sessions = fleet.deployment.sessionsDirectory
    var strings: [Int64: String] = [:]
    // 201: Telethon 1.45 (schema 8); 202: Telethon 1.42 (schema 7); 203: Pyrogram 2.0; 204-208 will break.
    for (user, peer) in [(201, nil), (202, "telethon142"), (204, nil), (205, nil), (206, nil), (207, nil), (208, nil)] {
      let made = try PeerScripts.writeSession(
        PeerScripts.telethonFile, arguments: [sessions + "/user_\(user).session"], peer: peer)
      #expect(made.schema == (peer == nil ? 8 : 7))
      strings[Int64(user)] = made.string
    }
    let pyrogram = try PeerScripts.writeSession(PeerScripts.pyrogramFile, arguments: [sessions, "user_203", "203"])
    #expect(pyrogram.schema == 3)
    strings[203] = pyrogram.string
    for (user, string) in strings {
      let token = try runPython(PeerScripts.encrypt, arguments: [key, string]).stdout
        .trimmingCharacters(in: .whitespacesAndNewlines)
      _ = try fleet.sqlite(
        "INSERT INTO user_sessions(user_id, session_string, api_id, created_at) VALUES (\(user), '\(token)', 12345, datetime('now'))"
      )
      chmod(fleet.sessionPath(user), 0o600)
    }
    try fleet.backup()
    let valid = try fleet.check()
    #expect(valid.status == 0, "\(valid.report)")
    #expect(valid.sessions["ok"] == 8)

    // Break five of them, each the way it happens in the field.
    let truncated = fleet.sessionPath(204)
    let size = try FileSystem.size(of: truncated)
    #expect(truncate(truncated, off_t(size / 2)) == 0)
    let foreign = fleet.sessionPath(205)
    try FileManager.default.removeItem(atPath: foreign)
    _ = try runProcess(
      "/usr/bin/sqlite3", [foreign, "CREATE TABLE notes(id INTEGER, body TEXT); INSERT INTO notes VALUES (1, 'x')"])
    chmod(foreign, 0o600)
    _ = try runProcess("/usr/bin/sqlite3", [fleet.sessionPath(206), "UPDATE sessions SET auth_key = zeroblob(256)"])
    let hot = fleet.sessionPath(207)
    let magic = try runPython(PeerScripts.killedWriter, arguments: [hot]).stdout
    #expect(magic.trimmingCharacters(in: .whitespacesAndNewlines) == "d9d505f920a163d7")
    let empty = fleet.sessionPath(208)
    #expect(truncate(empty, 0) == 0)

    let run = try fleet.check()
    #expect(run.status == 2)
    #expect(run.sessions == ["ok": 3, "warning": 1, "critical": 4, "unknown": 0], "\(run.report)")
    let expected: [(Int64, String, String)] = [
      (204, "critical", "truncated or damaged SQLite file"),
      (205, "critical", "unknown session schema (tables notes; no version table with a version or number column)"),
      (206, "critical", "auth key is all zeros (torn copy of a live file)"),
      (207, "warning", "hot journal \(hot)-journal beside the file"),
      (208, "critical", "empty file (0 bytes)"),
    ]
    for (user, state, reason) in expected {
      let path = fleet.sessionPath(user)
      Self.expectFinding(run, "user.session", state, user: user, contains: ["user \(user): \(path): \(reason)"])
      let message = run.findings("user.session", user: user).first?.message ?? ""
      if state == "critical" {
        // One concrete next step, with the real id (not a placeholder).
        #expect(message.components(separatedBy: "tgsess recover --user \(user)").count == 2, "\(message)")
        #expect(!message.contains("--user ID"))
      } else {
        #expect(!message.contains("tgsess recover"), "a crashed writer's journal is not damage: \(message)")
      }
      #expect(try fleet.sqlite("SELECT health FROM user_sessions WHERE user_id = \(user)") == state)
    }
    for user: Int64 in [201, 202, 203] {
      #expect(run.findings.allSatisfy { $0.userID != user }, "\(run.report)")
      #expect(try fleet.sqlite("SELECT health FROM user_sessions WHERE user_id = \(user)") == "ok")
    }
  }

  @Test func hotJournalOfAKilledWriterIsAWarningAndLeftAlone() throws {
    let fleet = try TestFleet(users: 2, pyrogramShare: 0, entities: 10, backedUp: true)
    let user = fleet.userIDs[0]
    let path = fleet.sessionPath(user)
    _ = try runPython(PeerScripts.killedWriter, arguments: [path])
    let before = try [path, path + "-journal"].map { try FileSystem.sha256(ofFile: $0) }
    let run = try fleet.check()
    #expect(run.status == 1, "\(run.report)")
    Self.expectFinding(
      run, "user.session", "warning", user: user,
      contains: ["hot journal \(path)-journal beside the file (a writer is running or crashed mid-transaction)"])
    // Check neither rolled the journal back nor touched the file.
    #expect(try [path, path + "-journal"].map { try FileSystem.sha256(ofFile: $0) } == before)
  }

  @Test func liveWriterHoldingATransactionIsNotFlagged() throws {
    let fleet = try TestFleet(users: 2, pyrogramShare: 0, entities: 10, backedUp: true)
    let user = fleet.userIDs[1]
    let path = fleet.sessionPath(user)
    let holder = try PythonHolder(PeerScripts.holdWrite, arguments: [path])
    #expect(FileSystem.exists(path + "-journal"))
    let run = try fleet.check()
    #expect(holder.finish() == 0)
    #expect(run.status == 0, "\(run.report)")
    #expect(run.findings.isEmpty)
    #expect(!FileSystem.exists(path + "-journal"))
  }

  @Test func writerHoldingTheExclusiveLockIsAWarningNotDamage() throws {
    let fleet = try TestFleet(users: 2, pyrogramShare: 0, entities: 10, backedUp: true)
    let user = fleet.userIDs[0]
    let path = fleet.sessionPath(user)
    let holder = try PythonHolder(PeerScripts.holdSpilledWrite, arguments: [path])
    let run = try fleet.check()
    #expect(holder.finish() == 0)
    #expect(run.status == 1, "\(run.report)")
    Self.expectFinding(
      run, "user.session", "warning", user: user,
      contains: ["user \(user): \(path): locked by another process", "wait for the bot to finish its write"])
    #expect(!run.report.contains("tgsess recover"), "a live writer's file must not be 'recovered' under it")
    #expect(try fleet.check().status == 0)
  }

  // MARK: - Secrets and agreement

  @Test func secretFromAnotherKeyIsAWarning() throws {
    let fleet = try TestFleet(users: 2, pyrogramShare: 0, entities: 10, backedUp: true)
    let user = fleet.userIDs[0]
    let token = try runPython(PeerScripts.foreignToken, arguments: ["1" + String(repeating: "A", count: 352)]).stdout
      .trimmingCharacters(in: .whitespacesAndNewlines)
    _ = try fleet.sqlite("UPDATE user_sessions SET session_string = '\(token)' WHERE user_id = \(user)")
    let run = try fleet.check()
    #expect(run.status == 1)
    Self.expectFinding(
      run, "user.secret", "warning", user: user,
      contains: [
        "user \(user): user \(user)'s session string: no configured Fernet key decrypts the stored secret; add the key it was encrypted with to keys/fernet.keys"
      ])
    #expect(!run.report.contains(token))
  }

  @Test func stringAndFileThatDisagreeAreAWarning() throws {
    let fleet = try TestFleet(users: 2, pyrogramShare: 0, entities: 10, backedUp: true)
    let (user, other) = (fleet.userIDs[0], fleet.userIDs[1])
    _ = try fleet.sqlite(
      "UPDATE user_sessions SET session_string = (SELECT session_string FROM user_sessions WHERE user_id = \(other)) WHERE user_id = \(user)"
    )
    let run = try fleet.check()
    #expect(run.status == 1)
    Self.expectFinding(
      run, "user.agree", "warning", user: user,
      contains: [
        "user \(user): the database's session string (dc ", ") differs from the file (dc ",
        "run: tgsess recover --user \(user)",
      ])
    #expect(run.findings.count == 1, "\(run.report)")
  }

  @Test func newerBackupFileWithAnotherKeyIsAWarning() throws {
    let fleet = try TestFleet(users: 2, pyrogramShare: 0, entities: 10, backedUp: true)
    let (user, other) = (fleet.userIDs[0], fleet.userIDs[1])
    let backup = fleet.sessionPath(user) + ".backup"
    try? FileManager.default.removeItem(atPath: backup)
    try FileManager.default.copyItem(atPath: fleet.sessionPath(other), toPath: backup)
    try FileManager.default.setAttributes(
      [.modificationDate: Date().addingTimeInterval(120)], ofItemAtPath: backup)
    let run = try fleet.check()
    #expect(run.status == 1)
    Self.expectFinding(
      run, "user.backup-file", "warning", user: user,
      contains: ["user \(user): \(backup) is newer than the session file but holds another key"])
  }

  // MARK: - Permissions, orphans, users

  @Test func readableSessionFileAndDirectoryAreWarnings() throws {
    let fleet = try TestFleet(users: 2, pyrogramShare: 0, entities: 10, backedUp: true)
    let user = fleet.userIDs[0]
    let path = fleet.sessionPath(user)
    let sessions = fleet.deployment.sessionsDirectory
    chmod(path, 0o644)
    chmod(sessions, 0o755)
    let run = try fleet.check()
    #expect(run.status == 1)
    Self.expectFinding(
      run, "user.permissions", "warning", user: user,
      contains: ["user \(user): \(path) has mode 644; run: chmod 600 \(path)"])
    let directory = run.findings("user.permissions").filter { $0.userID == nil }
    #expect(directory.map(\.message) == ["\(sessions) has mode 755; run: chmod 700 \(sessions)"])
  }

  @Test func orphanFileAndOrphanRow() throws {
    let fleet = try TestFleet(users: 3, pyrogramShare: 0, entities: 10, backedUp: true)
    let (source, gone) = (fleet.userIDs[0], fleet.userIDs[1])
    let orphan: Int64 = 555
    try FileManager.default.copyItem(atPath: fleet.sessionPath(source), toPath: fleet.sessionPath(orphan))
    try FileManager.default.removeItem(atPath: fleet.sessionPath(gone))
    let run = try fleet.check()
    #expect(run.status == 2)
    Self.expectFinding(
      run, "user.orphan-file", "warning", user: orphan,
      contains: ["user 555: \(fleet.sessionPath(orphan)) has no user_sessions row; run: tgsess recover --user 555"])
    Self.expectFinding(
      run, "user.orphan-row", "critical", user: gone,
      contains: ["user \(gone): no session file \(fleet.sessionPath(gone)); run: tgsess recover --user \(gone)"])
  }

  @Test func userWithoutAnyBackupIsAWarning() throws {
    let fleet = try TestFleet(users: 2, pyrogramShare: 0, entities: 10, backedUp: true)
    let source = fleet.userIDs[0]
    try FileManager.default.copyItem(atPath: fleet.sessionPath(source), toPath: fleet.sessionPath(777))
    _ = try fleet.sqlite(
      "INSERT INTO user_sessions(user_id, session_string, api_id, api_hash) SELECT 777, session_string, api_id, api_hash FROM user_sessions WHERE user_id = \(source)"
    )
    let run = try fleet.check()
    #expect(run.status == 1)
    Self.expectFinding(
      run, "user.no-backup", "warning", user: 777,
      contains: ["user 777: no archive holds this user; run: tgsess backup"])
    #expect(run.findings.count == 1, "\(run.report)")
  }

  @Test func revokedUserIsReported() throws {
    let fleet = try TestFleet(users: 2, pyrogramShare: 0, entities: 10, backedUp: true)
    let user = fleet.userIDs[1]
    _ = try fleet.sqlite("UPDATE user_sessions SET status = 'revoked' WHERE user_id = \(user)")
    let run = try fleet.check()
    #expect(run.status == 1)
    Self.expectFinding(
      run, "user.session", "warning", user: user,
      contains: ["user \(user): marked revoked by a confirmed fatal error; the user must log in again"])
    #expect(
      try fleet.sqlite("SELECT status || ' ' || health FROM user_sessions WHERE user_id = \(user)")
        == "revoked warning")
  }

  // MARK: - Backups, drills, keys

  @Test func noFullSnapshotIsCritical() throws {
    let fleet = try TestFleet(users: 2, pyrogramShare: 0, entities: 10)
    let run = try fleet.check()
    #expect(run.status == 2)
    Self.expectFinding(
      run, "backup.age", "critical",
      contains: ["no verified full snapshot in \(fleet.deployment.backupsDirectory); run: tgsess backup"])
    #expect(run.findings("user.no-backup").count == 2)
  }

  @Test func oldSnapshotLowDiskAndOldDrill() throws {
    let fleet = try TestFleet(users: 2, pyrogramShare: 0, entities: 10, backedUp: true)
    let drills = fleet.deployment.backupsDirectory + "/drills"
    try FileManager.default.createDirectory(atPath: drills, withIntermediateDirectories: true)
    try Self.write(#"{"ok": true, "started_at": "2020-01-01T00:00:00Z"}"#, to: drills + "/20200101T000000Z-a.json")
    // A failed drill, however recent, does not count.
    try Self.write(
      #"{"ok": false, "started_at": "\#(ISO8601DateFormatter().string(from: Date()))"}"#,
      to: drills + "/20990101T000000Z-b.json")
    Thread.sleep(forTimeInterval: 2.1)
    let run = try fleet.check(["--max-age", "1", "--min-free-mib", "100000000"])
    #expect(run.status == 2)
    Self.expectFinding(
      run, "backup.age", "critical",
      contains: [
        "the newest verified full snapshot ", "old (limit 1s); check the backup timer, then run: tgsess backup",
      ])
    Self.expectFinding(
      run, "backup.disk", "warning",
      contains: [
        "MiB free on \(fleet.deployment.backupsDirectory) (warning below 100000000 MiB); run: tgsess prune"
      ])
    Self.expectFinding(
      run, "drill.age", "warning", contains: ["the newest successful drill is ", "; run: tgsess drill"])
    // A recent successful drill clears it; the defaults clear the rest.
    try Self.write(
      #"{"ok": true, "started_at": "\#(ISO8601DateFormatter().string(from: Date()))"}"#,
      to: drills + "/20990101T000000Z-c.json")
    let fresh = try fleet.check()
    #expect(fresh.status == 0, "\(fresh.report)")
  }

  @Test func configThresholdsAreHonoured() throws {
    let fleet = try TestFleet(users: 1, pyrogramShare: 0, entities: 10, backedUp: true)
    try Self.write("[check]\nmin_free_mib = 100000000\n", to: fleet.root + "/tgsess.toml")
    let run = try fleet.check()
    Self.expectFinding(run, "backup.disk", "warning", contains: ["(warning below 100000000 MiB)"])
    // The flag wins over the config.
    #expect(try fleet.check(["--min-free-mib", "1"]).status == 0)
  }

  @Test func deepCheckNamesABitFlippedArchive() throws {
    let fleet = try TestFleet(users: 3, pyrogramShare: 0, entities: 10, backedUp: true)
    let archives = try fleet.listedArchives()
    let victim = try #require(archives.first { $0.kind == .user }?.path)
    var bytes = try Data(contentsOf: URL(fileURLWithPath: victim))
    bytes[bytes.count / 2] ^= 0x10
    try bytes.write(to: URL(fileURLWithPath: victim))
    // The shallow check does not read archives.
    #expect(try fleet.check().status == 0)
    let run = try fleet.check(["--deep"])
    #expect(run.status == 2)
    Self.expectFinding(run, "backup.deep", "critical", contains: ["\(victim): ", "use another backup"])
  }

  @Test func deepCheckWithoutTheIdentityComparesSignedHashes() throws {
    let fleet = try TestFleet(users: 2, pyrogramShare: 0, entities: 10, backedUp: true)
    // The identity is kept off the host: the ciphertext is checked against its signature instead.
    try FileManager.default.removeItem(atPath: fleet.deployment.ageIdentityPath)
    let clean = try fleet.check(["--deep"])
    #expect(clean.status == 0, "\(clean.report)")
    let victim = try #require(fleet.listedArchives().first { $0.kind == .full }?.path)
    var bytes = try Data(contentsOf: URL(fileURLWithPath: victim))
    bytes[bytes.count - 10] ^= 0x01
    try bytes.write(to: URL(fileURLWithPath: victim))
    let run = try fleet.check(["--deep"])
    #expect(run.status == 2)
    Self.expectFinding(
      run, "backup.deep", "critical",
      contains: [
        "\(victim): not signed by this deployment's key", "the file is not the one that was signed",
        "use another backup",
      ])
  }

  @Test func keyFileReadableByOthersIsOneCriticalFinding() throws {
    let fleet = try TestFleet(users: 3, pyrogramShare: 0, entities: 10, backedUp: true)
    let keyPath = fleet.deployment.fernetKeysPath
    chmod(keyPath, 0o644)
    let run = try fleet.check()
    #expect(run.status == 2)
    Self.expectFinding(
      run, "keys", "critical",
      contains: ["\(keyPath): mode 644 lets group or others read a secret; run: chmod 600 \(keyPath)"])
    // The refused key file is not repeated as a secret problem of every user.
    #expect(run.findings.count == 1, "\(run.report)")
  }

  @Test func identityThatDoesNotOpenTheNewestArchiveIsCritical() throws {
    let fleet = try TestFleet(users: 2, pyrogramShare: 0, entities: 10, backedUp: true)
    let identity = fleet.deployment.ageIdentityPath
    try FileManager.default.removeItem(atPath: identity)
    let made = try runProcess("/usr/bin/age-keygen", ["-o", identity])
    #expect(made.status == 0)
    chmod(identity, 0o600)
    let run = try fleet.check()
    #expect(run.status == 2)
    Self.expectFinding(
      run, "keys", "critical",
      contains: ["the age identity does not open the newest archive: ", "none of the 1 given identities opens"])
  }

  // MARK: - What check writes

  @Test func checkWritesOnlyResultsAndNeverSidecars() throws {
    let fleet = try TestFleet(users: 4, pyrogramShare: 0.3, entities: 10, backedUp: true)
    let broken = fleet.userIDs[2]
    #expect(truncate(fleet.sessionPath(broken), 1000) == 0)
    let tables = try fleet.sqlite(
      "SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'user_sessions' ORDER BY name"
    ).split(separator: "\n").map(String.init)
    #expect(tables.count >= 5)
    let untouchedColumns =
      "SELECT user_id, session_string, api_id, api_hash, created_at, updated_at, status, auth_key_fingerprint, session_format FROM user_sessions ORDER BY user_id"
    let dumps = try tables.map { try fleet.dump($0) }
    let rows = try fleet.sqlite(untouchedColumns)
    let hashes = try fleet.sessionHashes()
    let names = try fleet.sessionDirectoryNames()

    let run = try fleet.check()
    #expect(run.status == 2)

    #expect(try tables.map { try fleet.dump($0) } == dumps)
    #expect(try fleet.sqlite(untouchedColumns) == rows)
    #expect(try fleet.sessionHashes() == hashes)
    #expect(try fleet.sessionDirectoryNames() == names, "no -journal, -wal or -shm beside session files")
    let results = try fleet.sqlite(
      "SELECT user_id || ' ' || health || ' ' || (last_checked_at IS NOT NULL) || ' ' || coalesce(last_error, '-') FROM user_sessions ORDER BY user_id"
    ).split(separator: "\n").map(String.init)
    #expect(results.count == 4)
    for line in results {
      if line.hasPrefix("\(broken) ") {
        // The reason only: the remedy is the reader's to word (the bot has no CLI).
        #expect(
          line == "\(broken) critical 1 \(fleet.sessionPath(broken)): truncated or damaged SQLite file", "\(line)")
      } else {
        #expect(line.hasSuffix(" ok 1 -"), "\(line)")
      }
    }
    // --no-write writes nothing at all.
    let database = try Data(contentsOf: URL(fileURLWithPath: fleet.databasePath))
    #expect(try fleet.check(["--no-write"]).status == 2)
    #expect(try Data(contentsOf: URL(fileURLWithPath: fleet.databasePath)) == database)
  }

  // MARK: - What cannot be read

  /// Replaces `path` with a regular file, then with a symlink to nothing: two ways a directory
  /// cannot be listed that stop root too (chmod 000 does not).
  static func breakDirectory(_ path: String, _ body: (_ expectedCause: String) throws -> Void) throws {
    try FileManager.default.moveItem(atPath: path, toPath: path + ".real")
    try Self.write("not a directory\n", to: path)
    try body("\(path): list directory failed: Not a directory")
    try FileManager.default.removeItem(atPath: path)
    try FileManager.default.createSymbolicLink(atPath: path, withDestinationPath: path + ".gone")
    try body("\(path): follow the symlink failed: No such file or directory")
    try FileManager.default.removeItem(atPath: path)
    try FileManager.default.moveItem(atPath: path + ".real", toPath: path)
  }

  @Test func sessionsDirectoryThatCannotBeListedIsOneFindingNotOnePerUser() throws {
    let fleet = try TestFleet(users: 3, pyrogramShare: 0, entities: 10, backedUp: true)
    let sessions = fleet.deployment.sessionsDirectory
    try Self.breakDirectory(sessions) { cause in
      let run = try fleet.check()
      #expect(run.status == 2)
      #expect(
        run.result.findings == [
          CheckFinding(
            .sessionsDirectory, .critical, "\(cause); no session file was checked",
            remedy:
              "make \(sessions) a directory (mode 700) that the user running tgsess can read, then run: tgsess check")
        ], "\(run.report)")
      #expect(run.summary.hasPrefix("1 problem(s): 0 session(s) critical, 3 warning (3 unknown); \(cause)"))
      let text = try fleet.tgsess(["check", "--no-write"]).stdout.split(separator: "\n")
      #expect(text.count == 2 && text[1].hasPrefix("  CRITICAL sessions.directory \(cause);"), "\(text)")
      // Nobody's file was looked at: their health is unknown, not ok, and no reason is invented.
      #expect(
        try fleet.sqlite("SELECT group_concat(health || ':' || coalesce(last_error, '-')) FROM user_sessions")
          == "unknown:-,unknown:-,unknown:-")
    }
    #expect(try fleet.check().status == 0)
  }

  @Test func backupsDirectoryThatCannotBeListedIsOneFindingNotOnePerUser() throws {
    let fleet = try TestFleet(users: 3, pyrogramShare: 0, entities: 10, backedUp: true)
    let backups = fleet.deployment.backupsDirectory
    try Self.breakDirectory(backups) { cause in
      let run = try fleet.check(["--min-free-mib", "0"])
      #expect(run.status == 2)
      #expect(
        run.result.findings == [
          CheckFinding(
            .backupDirectory, .critical, "\(cause); no archive was checked",
            remedy:
              "make \(backups) a directory (mode 700) that the user running tgsess can read, then run: tgsess check")
        ], "\(run.report)")
    }
    #expect(try fleet.check().status == 0)
  }

  // MARK: - Keys of the whole deployment

  /// Issue #16: a missing Fernet key was one warning per user under a summary naming something
  /// else. It is one finding, and the Nagios line names it.
  @Test func missingFernetKeyIsReportedOnceAndNamedInTheSummary() throws {
    let fleet = try TestFleet(users: 4, pyrogramShare: 0, entities: 10, backedUp: true)
    let keyPath = fleet.deployment.fernetKeysPath
    try FileManager.default.removeItem(atPath: keyPath)
    let expected = CheckFinding(
      .keys, .critical,
      "no Fernet key: \(keyPath) does not exist and $TGSESS_FERNET_KEYS is not set, so the 4 encrypted session string(s) in the database cannot be read",
      remedy: "restore \(keyPath) (mode 0600) from its off-host copy, or set $TGSESS_FERNET_KEYS")
    let run = try fleet.check()
    #expect(run.status == 2)
    #expect(run.result.findings == [expected], "\(run.report)")
    #expect(run.sessions["ok"] == 4, "the users are not judged for a key they cannot help")
    let nagios = try fleet.tgsess(["check", "--nagios"])
    #expect(nagios.status == 2)
    #expect(
      nagios.stdout.hasPrefix(
        "TGSESS CRITICAL - 1 problem(s): 0 session(s) critical, 0 warning; \(expected.message) | "),
      "\(nagios.stdout)")

    // status says so too, instead of "0 Fernet key(s) from …".
    let status = try fleet.tgsess(["status"])
    #expect(status.status == 0)
    #expect(
      status.stdout.contains(
        "\nkeys       age identity present, 1 recipient(s), no Fernet key: \(keyPath) does not exist and $TGSESS_FERNET_KEYS is not set; restore \(keyPath) (mode 0600) from its off-host copy, or set $TGSESS_FERNET_KEYS\n"
      ), "\(status.stdout)")
    #expect(!status.stdout.contains("0 Fernet key(s)"))
  }

  @Test func aMalformedRecipientsFileIsNamedNotTakenForNone() throws {
    let fleet = try TestFleet(users: 1, pyrogramShare: 0, entities: 10, backedUp: true)
    let recipients = fleet.deployment.ageRecipientsPath
    try Self.write("age1notarecipient\n", to: recipients)
    let run = try fleet.check()
    #expect(run.status == 2)
    Self.expectFinding(
      run, "keys", "critical", contains: ["\(recipients): 'age1notareci…' is not an age X25519 recipient (age1…)"])
    #expect(!run.report.contains("no age recipient configured"))
  }

  // MARK: - Wording of reasons and remedies

  @Test func sessionFindingsWordTheRemedyWithTheUsersID() throws {
    let fleet = try TestFleet(users: 2, pyrogramShare: 0, entities: 10, backedUp: true)
    let user = fleet.userIDs[0]
    let path = fleet.sessionPath(user)
    try Self.write("this is not a database, just text long enough to be a file\n", to: path)
    let run = try fleet.check()
    #expect(
      run.result.findings.filter { $0.id == .userSession } == [
        CheckFinding(
          .userSession, .critical, "\(path): not an SQLite database",
          remedy: "restore it from a backup: tgsess recover --user \(user)", user: user)
      ], "\(run.report)")
    Self.expectFinding(
      run, "user.session", "critical", user: user,
      contains: [
        "user \(user): \(path): not an SQLite database; restore it from a backup: tgsess recover --user \(user)"
      ])
  }

  // MARK: - Output formats

  @Test func nagiosLineAndExitCodeForEveryState() throws {
    let fleet = try TestFleet(users: 2, pyrogramShare: 0, entities: 10, backedUp: true)
    let cases: [(String, [String], Int32)] = [
      ("OK", [], 0), ("WARNING", ["--min-free-mib", "100000000"], 1),
    ]
    for (word, arguments, code) in cases {
      let result = try fleet.tgsess(["check", "--nagios"] + arguments)
      #expect(result.status == code)
      #expect(nagiosProblem(result.stdout, state: word) == nil, "\(nagiosProblem(result.stdout, state: word) ?? "")")
    }
    chmod(fleet.deployment.fernetKeysPath, 0o644)
    let critical = try fleet.tgsess(["check", "--nagios"])
    #expect(critical.status == 2)
    #expect(nagiosProblem(critical.stdout, state: "CRITICAL") == nil, "\(critical.stdout)")
    #expect(critical.stdout.contains("| sessions_ok=2 sessions_warning=0 sessions_critical=0 backup_age="))
    // The JSON state and the exit code agree.
    let json = try fleet.check()
    #expect(json.status == Self.exitCode(json.state))
  }

  @Test func aCheckThatCannotRunIsUnknown() throws {
    let fleet = try TestFleet(users: 1, pyrogramShare: 0, entities: 10, backedUp: true)
    let config = fleet.root + "/broken.toml"
    try Self.write("busy_timeout_ms = [\n", to: config)
    let nagios = try fleet.tgsess(["check", "--nagios", "--config", config])
    #expect(nagios.status == 3)
    #expect(
      nagiosProblem(nagios.stdout, state: "UNKNOWN", requiresPerfdata: false) == nil, "\(nagios.stdout)")
    #expect(nagios.stdout.contains("\(config): TOML syntax error"))
    let plain = try fleet.tgsess(["check", "--config", config])
    #expect(plain.status == 3)
    #expect(plain.stdout.isEmpty)
    #expect(plain.stderr.hasPrefix("tgsess: check: \(config): TOML syntax error"))
  }

  @Test func prometheusTextfileIsStrictWorldReadableAndReadByNodeExporter() throws {
    let fleet = try TestFleet(users: 4, pyrogramShare: 0.3, entities: 10, backedUp: true)
    #expect(truncate(fleet.sessionPath(fleet.userIDs[0]), 0) == 0)
    let directory = try TemporaryDirectory("tgsess-prom")
    let path = directory.file("tgsess_check.prom")
    // Under systemd's UMask=0077 the file must still be readable by node_exporter's user.
    let result = try runProcess(
      "/bin/sh",
      [
        "-c", "umask 077 && exec \"$0\" \"$@\"", TestEnvironment.productPath("tgsess"), "check", "--root",
        fleet.root, "--prometheus", path,
      ],
      isolateTgsessVariables: true)
    #expect(result.status == 2, "\(result.stdout) \(result.stderr)")
    #expect(try FileSystem.mode(of: path) == 0o644)
    #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["tgsess_check.prom"])

    let text = try String(contentsOfFile: path, encoding: .utf8)
    let exposition = try Exposition(text)
    #expect(exposition.types.values.allSatisfy { $0 == "gauge" })
    let sessions = exposition.samples("tgsess_sessions")
    #expect(Set(sessions.map { $0.labels }) == [["state": "ok"], ["state": "warning"], ["state": "critical"]])
    #expect(sessions.first { $0.labels["state"] == "critical" }?.value == 1)
    #expect(sessions.first { $0.labels["state"] == "ok" }?.value == 3)
    let last = try #require(exposition.samples("tgsess_backup_last_success_timestamp_seconds").first)
    #expect(abs(last.value - Date().timeIntervalSince1970) < 600)
    #expect(exposition.samples("tgsess_check_duration_seconds").first.map { $0.value >= 0 && $0.value < 30 } == true)
    // No per-user labels anywhere: the only label is the bounded state.
    #expect(exposition.samples.allSatisfy { Set($0.labels.keys).isSubset(of: ["state"]) })

    // The real parser agrees, and it does reject a broken file (so the agreement means something).
    let exporter = try NodeExporter(directory: directory.path)
    let scraped = try exporter.scrape()
    #expect(scraped.contains("\nnode_textfile_scrape_error 0\n"), "\(scraped)")
    for name in [
      "tgsess_backup_last_success_timestamp_seconds ", "tgsess_sessions{state=\"critical\"} 1",
      "tgsess_check_duration_seconds ", "tgsess_check_status 2",
    ] {
      #expect(scraped.contains("\n" + name), "\(name) not served")
    }
    try Self.write("tgsess_broken{state=\"x\" 1\n", to: directory.file("broken.prom"))
    #expect(try exporter.scrape().contains("\nnode_textfile_scrape_error 1\n"))
  }

  /// Issue #16: the status line said OK while the check exited 3. The metrics file that cannot
  /// be written is now a finding, so the line, the JSON, the text and the status agree.
  @Test func metricsFileThatCannotBeWrittenIsAnUnknownFindingEverywhere() throws {
    let fleet = try TestFleet(users: 1, pyrogramShare: 0, entities: 10, backedUp: true)
    let path = "/nonexistent-dir/x.prom"
    let nagios = try fleet.tgsess(["check", "--prometheus", path, "--nagios"])
    #expect(nagios.status == 3)
    #expect(nagiosProblem(nagios.stdout, state: "UNKNOWN") == nil, "\(nagios.stdout)")
    #expect(
      nagios.stdout.hasPrefix(
        "TGSESS UNKNOWN - 1 problem(s): 0 session(s) critical, 0 warning; the metrics file \(path) was not written: /nonexistent-dir/"
      ), "\(nagios.stdout)")
    #expect(
      nagios.stdout.contains(": create failed: No such file or directory; fix --prometheus: its directory must exist"))

    let json = try fleet.check(["--prometheus", path])
    #expect(json.status == 3 && json.state == "unknown", "\(json.report)")
    #expect(json.result.findings.map(\.id) == [.metrics])
    #expect(json.result.findings.first?.state == .unknown)

    let text = try fleet.tgsess(["check", "--prometheus", path])
    #expect(text.status == 3)
    #expect(text.stdout.hasPrefix("UNKNOWN: 1 problem(s)"), "\(text.stdout)")

    // A CRITICAL check stays CRITICAL (the worse verdict); the metrics failure is listed with it.
    #expect(truncate(fleet.sessionPath(fleet.userIDs[0]), 0) == 0)
    let critical = try fleet.tgsess(["check", "--prometheus", path, "--nagios"])
    #expect(critical.status == 2)
    #expect(nagiosProblem(critical.stdout, state: "CRITICAL") == nil, "\(critical.stdout)")
  }

  // MARK: - Live probe

  static let probeScript = TestEnvironment.packageRoot + "/scripts/probe_telethon.py"

  static func closedPort() throws -> String {
    try runPython("import socket\ns = socket.socket()\ns.bind(('127.0.0.1', 0))\nprint(s.getsockname()[1])\ns.close()")
      .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
  }

  /// A fake probe that logs each run to `$FAKE_PROBE_LOG` and answers with the line of its run
  /// (the last line for every later run).
  static func fakeProbe(in directory: TemporaryDirectory, answers: [String]) throws -> String {
    let path = directory.file("fake_probe.sh")
    var script = "#!/bin/sh\necho \"$1\" >> \"$FAKE_PROBE_LOG\"\nrun=$(wc -l < \"$FAKE_PROBE_LOG\")\n"
    for (index, answer) in answers.enumerated() {
      let status = answer.contains("\"ok\": true") ? 0 : 2
      script += "if [ \"$run\" -ge \(index + 1) ]; then out='\(answer)'; code=\(status); fi\n"
    }
    script += "echo \"$out\"\nexit $code\n"
    try Self.write(script, to: path)
    chmod(path, 0o755)
    return path
  }

  @Test func unreachableTelegramIsAWarningAfterThreeAttempts() throws {
    let fleet = try TestFleet(users: 1, pyrogramShare: 0, entities: 10, backedUp: true)
    let user = fleet.userIDs[0]
    let before = try fleet.sessionHashes()
    let started = Date()
    let run = try fleet.check(
      ["--probe", "\(TestEnvironment.python) \(Self.probeScript)", "--probe-backoff-ms", "10"],
      environment: [
        "TG_API_ID": "12345", "TG_API_HASH": "0123456789abcdef0123456789abcdef", "TG_PROBE_DC_ADDRESS": "127.0.0.1",
        "TG_PROBE_PORT": try Self.closedPort(), "TG_PROBE_TIMEOUT": "10",
      ])
    #expect(run.status == 1, "\(run.report)")
    Self.expectFinding(
      run, "user.probe", "warning", user: user,
      contains: ["user \(user): CONNECTION_ERROR: ", "after 3 attempts"])
    #expect(Date().timeIntervalSince(started) < 20)
    #expect(try fleet.sessionHashes() == before)
    #expect(try fleet.sqlite("SELECT status FROM user_sessions WHERE user_id = \(user)") == "active")
  }

  @Test func confirmedFatalProbeMarksTheUserRevokedAndKeepsEverything() throws {
    let fleet = try TestFleet(users: 2, pyrogramShare: 0, entities: 10, backedUp: true)
    let scratch = try TemporaryDirectory("tgsess-probe")
    let log = scratch.file("runs.log")
    let probe = try Self.fakeProbe(
      in: scratch, answers: [#"{"ok": false, "error": "AUTH_KEY_UNREGISTERED", "code": 401}"#])
    let user = fleet.userIDs[0]
    // A logged-out user has nothing to probe.
    _ = try fleet.sqlite("UPDATE user_sessions SET status = 'logged_out' WHERE user_id = \(fleet.userIDs[1])")
    // Logging out removes the session file (as the bot runner does); a logged-out user whose file
    // came back is checked (and probed) like any other.
    try FileManager.default.removeItem(atPath: fleet.sessionPath(fleet.userIDs[1]))
    let archivesBefore = try fleet.tgsess(["list", "--json"]).stdout
    let hashes = try fleet.sessionHashes()

    let run = try fleet.check(
      ["--probe", "/bin/sh \(probe)", "--probe-backoff-ms", "10"], environment: ["FAKE_PROBE_LOG": log])

    #expect(run.status == 2, "\(run.report)")
    Self.expectFinding(
      run, "user.probe", "critical", user: user,
      contains: ["user \(user): AUTH_KEY_UNREGISTERED", "(confirmed)", "marked revoked; it and its backups are kept"])
    // Run twice: the fatal answer and its confirmation; the logged-out user is never probed.
    let runs = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
    #expect(runs == [Substring(fleet.sessionPath(user)), Substring(fleet.sessionPath(user))])
    #expect(
      try fleet.sqlite("SELECT status || ' ' || health FROM user_sessions WHERE user_id = \(user)")
        == "revoked critical")
    #expect(try fleet.sessionHashes() == hashes)
    #expect(try fleet.tgsess(["list", "--json"]).stdout == archivesBefore)
    // The next run, without a probe, still reports the revoked user.
    let next = try fleet.check()
    Self.expectFinding(run: next, "user.session", user: user, contains: "marked revoked")
  }

  /// `--no-write` records nothing at all, the revocation of a confirmed dead session included.
  @Test func noWriteRecordsNothingNotEvenARevocation() throws {
    let fleet = try TestFleet(users: 2, pyrogramShare: 0, entities: 10, backedUp: true)
    let scratch = try TemporaryDirectory("tgsess-probe")
    let log = scratch.file("runs.log")
    let probe = try Self.fakeProbe(
      in: scratch, answers: [#"{"ok": false, "error": "AUTH_KEY_UNREGISTERED", "code": 401}"#])
    #expect(truncate(fleet.sessionPath(fleet.userIDs[1]), 0) == 0)
    let database = try Data(contentsOf: URL(fileURLWithPath: fleet.databasePath))
    let columns =
      "SELECT group_concat(status || ' ' || health || ' ' || coalesce(last_checked_at, '-')) FROM user_sessions"
    let before = try fleet.sqlite(columns)
    #expect(before.hasPrefix("active "))

    let run = try fleet.check(
      ["--no-write", "--probe", "/bin/sh \(probe)", "--probe-backoff-ms", "10"], environment: ["FAKE_PROBE_LOG": log])

    #expect(run.status == 2, "\(run.report)")
    let user = fleet.userIDs[0]
    Self.expectFinding(
      run, "user.probe", "critical", user: user,
      contains: ["user \(user): AUTH_KEY_UNREGISTERED", "(confirmed); the session is dead; not marked revoked"])
    #expect(run.result.isRecorded == false)
    #expect(try Data(contentsOf: URL(fileURLWithPath: fleet.databasePath)) == database)
    #expect(!FileSystem.exists(fleet.databasePath + "-journal"))
    #expect(!FileSystem.exists(fleet.databasePath + "-wal"))
    #expect(try fleet.sqlite(columns) == before)
    // The same run with writing on does mark the user revoked (the test above sees it at length).
    let written = try fleet.check(
      ["--probe", "/bin/sh \(probe)", "--probe-backoff-ms", "10"], environment: ["FAKE_PROBE_LOG": log])
    #expect(written.result.isRecorded)
    #expect(try fleet.sqlite("SELECT status FROM user_sessions WHERE user_id = \(user)") == "revoked")
  }

  @Test func unconfirmedFatalProbeKeepsTheUserActive() throws {
    let fleet = try TestFleet(users: 1, pyrogramShare: 0, entities: 10, backedUp: true)
    let scratch = try TemporaryDirectory("tgsess-probe")
    let log = scratch.file("runs.log")
    let probe = try Self.fakeProbe(
      in: scratch,
      answers: [#"{"ok": false, "error": "AUTH_KEY_UNREGISTERED", "code": 401}"#, #"{"ok": true, "user_id": 1}"#])
    let run = try fleet.check(
      ["--probe", "/bin/sh \(probe)", "--probe-backoff-ms", "10"], environment: ["FAKE_PROBE_LOG": log])
    #expect(run.status == 0, "\(run.report)")
    #expect(try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").count == 2)
    #expect(try fleet.sqlite("SELECT status || ' ' || health FROM user_sessions") == "active ok")
  }

  static func expectFinding(
    run: CheckRun, _ check: String, user: Int64, contains part: String,
    sourceLocation: SourceLocation = #_sourceLocation
  ) {
    #expect(
      run.findings(check, user: user).contains { $0.message.contains(part) }, "\(run.report)",
      sourceLocation: sourceLocation)
  }
}

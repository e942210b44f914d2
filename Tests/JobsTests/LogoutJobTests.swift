import Foundation
import Jobs
import Logging
import Store
import TestSupport
import Testing

/// `LogoutJob`: the plan as a value (a golden table over the states a logout can find, and the
/// plan of a real deployment), and the execution on real deployments made by `tgsess-fleet`,
/// judged by sqlite3 and by reading the archive back.
@Suite struct LogoutJobTests {
  static let path = "/srv/bot/sessions/user_42.session"

  static var logger: Logger {
    var logger = Logger(label: "test")
    logger.logLevel = .critical
    return logger
  }

  // MARK: - The plan as a value

  @Test func thePlanFollowsTheFilesAndTheRow() {
    let wal = Self.path + "-wal"
    let copy = Self.path + ".backup"
    let json = "/srv/bot/sessions/user_42.json"
    func state(_ files: [String], _ row: UserStatus?, problem: SessionProblem? = nil) -> LogoutState {
      LogoutState(
        userID: 42, files: files, hasSessionFile: files.first == Self.path, sessionProblem: problem, rowStatus: row)
    }
    let logOut = { (files: [String], hasFile: Bool, marks: Bool) in
      LogoutPlan(
        userID: 42, action: .logOut, backupReason: BackupReason.beforeLogout, backsUpSessionFile: hasFile,
        removes: files, marksLoggedOut: marks)
    }
    let table: [(LogoutState, LogoutPlan, String)] = [
      (state([], nil), LogoutPlan(userID: 42, action: .alreadyLoggedOut), "no file, no row"),
      (state([], .loggedOut), LogoutPlan(userID: 42, action: .alreadyLoggedOut), "a replay"),
      (state([copy], .loggedOut), LogoutPlan(userID: 42, action: .alreadyLoggedOut), "a seed copy alone is no session"),
      (state([], .active), logOut([], false, true), "a row without a file: its rows are backed up, then marked"),
      (state([], .revoked), logOut([], false, true), "a revoked row is marked too"),
      (state([Self.path, wal, copy], .active), logOut([Self.path, wal, copy], true, true), "the usual logout"),
      (
        state([Self.path, wal, json], .active), logOut([json, Self.path, wal], true, true),
        "the JSON sidecar goes first, so an interrupted logout never leaves it alone"
      ),
      (state([Self.path], nil), logOut([Self.path], true, false), "a file without a row: nothing to mark"),
      (state([Self.path], .loggedOut), logOut([Self.path], true, true), "a file that came back after a logout"),
      (
        state([Self.path, copy], .active, problem: .notSQLite),
        LogoutPlan(userID: 42, action: .refuse(.damagedSessionFile(path: Self.path, problem: .notSQLite))),
        "a damaged file cannot be backed up"
      ),
    ]
    for (state, expected, why) in table {
      #expect(LogoutPlan.make(state) == expected, "\(why)")
    }
  }

  // MARK: - On a real deployment

  @Test func aLogoutBacksUpRemovesMarksAndAReplayChangesNothing() throws {
    let fleet = try TestFleet(users: 3)
    let user = try fleet.telethonUserIDs(1)[0]
    let other = try #require(try fleet.sessionUserIDs().first { $0 != user })
    let path = fleet.sessionPath(user)
    // The seed's bot keeps a copy beside the session file.
    try FileManager.default.copyItem(atPath: path, toPath: path + ".backup")
    let otherFile = try FileSystem.sha256(ofFile: fleet.sessionPath(other))
    let rowsBefore = Int(try fleet.sqlite("SELECT count(*) FROM session_backups WHERE user_id = \(user)")) ?? -1

    // The plan, read before anything changes.
    let plan = try LogoutJob.plan(fleet.deployment, userID: user)
    #expect(
      plan
        == LogoutPlan(
          userID: user, action: .logOut, backupReason: "Before logout", backsUpSessionFile: true,
          removes: [path, path + ".backup"], marksLoggedOut: true))

    let result = try LogoutJob.run(fleet.deployment, options: LogoutOptions(userID: user), logger: Self.logger)
    #expect(result.plan == plan)
    #expect(result.outcome == .loggedOut)
    #expect(result.removed == [path, path + ".backup"])
    let archive = try #require(result.archive)
    #expect(archive.kind == .user && archive.userID == user && archive.reason == "Before logout")
    #expect(archive.verification == .full)

    // The archive holds the session file, its seed copy and the rows, before they went.
    let manifest = try ArchiveReader.read(
      path: archive.path, identities: try KeyStore.loadIdentities(fleet.deployment))
    #expect(
      Set(manifest.entries.map(\.path))
        == ["sessions/user_\(user).session", "sessions/user_\(user).session.backup", "users/user_\(user).json"])
    #expect(!FileSystem.exists(path) && !FileSystem.exists(path + ".backup"))
    #expect(try fleet.sqlite("SELECT status FROM user_sessions WHERE user_id = \(user)") == "logged_out")
    #expect(
      try fleet.sqlite(
        "SELECT backup_reason FROM session_backups WHERE user_id = \(user) AND archive_id = '\(archive.id)'")
        == "Before logout")
    #expect(
      Int(try fleet.sqlite("SELECT count(*) FROM session_backups WHERE user_id = \(user)")) == rowsBefore + 1,
      "the history is kept")
    // Another user's session is untouched.
    #expect(try FileSystem.sha256(ofFile: fleet.sessionPath(other)) == otherFile)
    #expect(try fleet.sqlite("SELECT status FROM user_sessions WHERE user_id = \(other)") == "active")

    // A replay finds the user logged out and changes nothing.
    let tree = try fleet.tree()
    #expect(try LogoutJob.plan(fleet.deployment, userID: user) == LogoutPlan(userID: user, action: .alreadyLoggedOut))
    let replay = try LogoutJob.run(fleet.deployment, options: LogoutOptions(userID: user), logger: Self.logger)
    #expect(replay.outcome == .alreadyLoggedOut && replay.archive == nil && replay.removed.isEmpty)
    #expect(try fleet.tree() == tree)
  }

  @Test func aDamagedSessionFileIsRefusedAndNothingChanges() throws {
    let fleet = try TestFleet(users: 2)
    let user = try fleet.sessionUserIDs()[0]
    let path = fleet.sessionPath(user)
    try Data(randomBytes(4096)).write(to: URL(fileURLWithPath: path))
    let tree = try fleet.tree()
    let refusal = LogoutRefusal.damagedSessionFile(path: path, problem: .notSQLite)
    #expect(try LogoutJob.plan(fleet.deployment, userID: user).action == .refuse(refusal))
    let result = try LogoutJob.run(fleet.deployment, options: LogoutOptions(userID: user), logger: Self.logger)
    #expect(result.outcome == .refused(refusal))
    #expect(result.archive == nil && result.removed.isEmpty)
    #expect(try fleet.tree() == tree)
  }

  @Test func aSessionFileWithoutARowIsBackedUpAndRemovedAndNoRowIsWritten() throws {
    let fleet = try TestFleet(users: 2)
    let user = try fleet.sessionUserIDs()[0]
    let path = fleet.sessionPath(user)
    // A login in progress: the file exists, the bot has not written the user's row yet.
    try fleet.sqlite(
      "DELETE FROM user_sessions WHERE user_id = \(user); DELETE FROM session_backups WHERE user_id = \(user)")
    let plan = try LogoutJob.plan(fleet.deployment, userID: user)
    #expect(
      plan
        == LogoutPlan(
          userID: user, action: .logOut, backupReason: "Before logout", backsUpSessionFile: true, removes: [path],
          marksLoggedOut: false))
    let result = try LogoutJob.run(fleet.deployment, options: LogoutOptions(userID: user), logger: Self.logger)
    #expect(result.outcome == .loggedOut)
    let archive = try #require(result.archive)
    let manifest = try ArchiveReader.read(
      path: archive.path, identities: try KeyStore.loadIdentities(fleet.deployment))
    #expect(manifest.entries.map(\.path) == ["sessions/user_\(user).session"])
    #expect(!FileSystem.exists(path))
    #expect(try fleet.sqlite("SELECT count(*) FROM session_backups WHERE user_id = \(user)") == "0")
    #expect(try fleet.sqlite("SELECT count(*) FROM user_sessions WHERE user_id = \(user)") == "0")
    // Nothing is left, so a replay has nothing to do.
    let replay = try LogoutJob.run(fleet.deployment, options: LogoutOptions(userID: user), logger: Self.logger)
    #expect(replay.outcome == .alreadyLoggedOut)
  }

  @Test func aHeldLockStopsTheLogoutBeforeAnything() throws {
    let fleet = try TestFleet(users: 2)
    let user = try fleet.sessionUserIDs()[0]
    let holder = try PythonHolder(
      """
      import fcntl, sys
      f = open(sys.argv[1], "a")
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
      print("READY", flush=True)
      sys.stdin.read()
      """, arguments: [fleet.deployment.lockPath])
    defer { holder.finish() }
    let tree = try fleet.tree()
    #expect {
      try LogoutJob.run(fleet.deployment, options: LogoutOptions(userID: user), logger: Self.logger)
    } throws: { error in
      guard case .store(_, .locked(let path, _)) = error as? JobError else { return false }
      return path == fleet.deployment.lockPath
    }
    #expect(try fleet.tree() == tree)
    #expect(FileSystem.exists(fleet.sessionPath(user)))
  }

  @Test func theBackupFollowsTheConfigurationsBackupSection() throws {
    let config = try Config.parse("[backup]\nencrypt = false\nzstd_level = 9\n", path: "tgsess.toml")
    let options = LogoutOptions(config: config, userID: 7, lockWait: 30, lockCommand: "tgsess-bot logout --user 7")
    #expect(options.backup.isEncrypted == false)
    #expect(options.backup.zstdLevel == 9)
    #expect(options.backup.userID == 7 && options.backup.reason == "Before logout")
    #expect(options.lockWait == 30 && options.lockCommand == "tgsess-bot logout --user 7")
    #expect(LogoutOptions(userID: 7).lockCommand == "logout --user 7")
  }

  /// The JSON sidecar (`user_<id>.json`, a farm's app hash and 2FA password) is in the backup
  /// before logout and goes with the session file: no secret-bearing sidecar outlives a logout.
  /// One without a session file is in no backup a logout takes, and stays.
  @Test func aLogoutTakesTheSidecarWithTheSessionFile() throws {
    let fleet = try TestFleet(users: 3)
    let users = try fleet.telethonUserIDs(2)
    let (user, alone) = (users[0], users[1])
    let path = fleet.sessionPath(user)
    let sidecar = fleet.deployment.sidecarPath(userID: user)
    let json = Data(
      "{\"app_id\": 2040, \"app_hash\": \"0123456789abcdef0123456789abcdef\", \"twoFA\": \"hunter2-hunter2\"}".utf8)
    try json.write(to: URL(fileURLWithPath: sidecar))

    let plan = try LogoutJob.plan(fleet.deployment, userID: user)
    #expect(plan.removes == [sidecar, path])
    let result = try LogoutJob.run(fleet.deployment, options: LogoutOptions(userID: user), logger: Self.logger)
    #expect(result.outcome == .loggedOut)
    #expect(result.removed == [sidecar, path])
    #expect(!FileSystem.exists(sidecar) && !FileSystem.exists(path))
    // The backup holds the pair, byte for byte.
    let archive = try #require(result.archive)
    let identities = try KeyStore.loadIdentities(fleet.deployment)
    let manifest = try ArchiveReader.read(path: archive.path, identities: identities)
    let entry = try #require(manifest.entries.first { $0.path == "sessions/user_\(user).json" })
    #expect(entry.role == .sessionSidecar && entry.sha256 == Digest.sha256Hex(json))

    // A sidecar without its session file: not backed up by the logout, so not removed.
    let orphan = fleet.deployment.sidecarPath(userID: alone)
    try json.write(to: URL(fileURLWithPath: orphan))
    try FileManager.default.removeItem(atPath: fleet.sessionPath(alone))
    let orphanPlan = try LogoutJob.plan(fleet.deployment, userID: alone)
    #expect(!orphanPlan.removes.contains(orphan))
    _ = try LogoutJob.run(fleet.deployment, options: LogoutOptions(userID: alone), logger: Self.logger)
    #expect(FileSystem.exists(orphan))
  }
}

import Foundation
import Jobs
import Store
import TestSupport
import Testing

/// `tgsess watch` against real deployments: the real Telethon writes the new sessions and the
/// churn, Python's cryptography the Fernet tokens, rclone the remote copies. Nothing here waits
/// for a time: each test polls for what watch must do, with a generous bound that only keeps a
/// broken run from hanging.
@Suite(.serialized) struct WatchCLITests {
  /// A fleet whose every user has per-user archives (from one `tgsess backup`).
  /// The config is written after that backup.
  static func fleet(users: Int = 6, config: String = "") throws -> TestFleet {
    let fleet = try TestFleet(users: users, entities: 120, collectsSecrets: true, location: .subdirectory("fleet"))
    let backup = try fleet.tgsess(["backup"])
    guard backup.status == 0 else { throw TestHelperError("backup failed: \(backup.stderr)") }
    if !config.isEmpty { try config.write(toFile: fleet.root + "/tgsess.toml", atomically: true, encoding: .utf8) }
    return fleet
  }

  static func prom(_ fleet: TestFleet) -> String { fleet.root + "/tgsess_watch.prom" }

  /// A value of watch's textfile (summed over labels); nil before the file exists.
  static func metric(_ fleet: TestFleet, _ name: String) throws -> Double? {
    guard let text = try? String(contentsOfFile: prom(fleet), encoding: .utf8) else { return nil }
    let samples = try Exposition(text).samples(name)
    return samples.isEmpty ? nil : samples.reduce(0) { $0 + $1.value }
  }

  /// Waits until watch has nothing queued and has judged at least `judged` changes as churn.
  static func waitIdle(_ fleet: TestFleet, churnAtLeast judged: Double = 0) throws {
    try waitUntil("watch idle") {
      try metric(fleet, "tgsess_watch_queue_length") == 0
        && (try metric(fleet, "tgsess_watch_churn_total") ?? 0) >= judged
        && (try metric(fleet, "tgsess_watch_push_queue_length") ?? 0) == 0
    }
  }

  /// Waits until `userID` has `count` per-user archives (or more) and returns them, oldest first.
  @discardableResult
  static func waitForArchives(_ fleet: TestFleet, _ userID: Int64, count: Int) throws -> [(
    id: String, reason: String
  )] {
    var archives: [(id: String, reason: String)] = []
    try waitUntil("\(count) archives of user \(userID)") {
      archives = try fleet.userArchives(userID)
      return archives.count >= count
    }
    return archives
  }

  static func record(_ fleet: TestFleet, _ userID: Int64, _ id: String) throws -> ArchiveRecord {
    try #require(
      try ArchiveRepository(backupsDirectory: fleet.backupsDirectory).list(kind: .user, userID: userID).first {
        $0.id == id
      })
  }

  /// Users whose session file is Telethon schema 8 (the real Telethon 1.45 opens them without
  /// upgrading the schema, which would be a real format change).
  static func telethonV8Users(_ fleet: TestFleet) throws -> [Int64] {
    try fleet.telethonUserIDs().filter {
      try StockTools.query(fleet.sessionPath($0), "SELECT version FROM version") == "8"
    }
  }

  /// Every hidden entry (temporary, staging directory) under the backups directory.
  static func leftovers(_ fleet: TestFleet) throws -> [String] {
    try TreeSnapshot(fleet.backupsDirectory).hidden
  }

  // MARK: - Logins and churn

  @Test func aNewLoginIsOneProvenArchiveAndChurnIsNone() throws {
    let fleet = try Self.fleet(users: 8)
    let v8 = try Self.telethonV8Users(fleet)
    try #require(v8.count >= 2, "the fleet needs two Telethon v8 users")
    let users = try fleet.sessionUserIDs()
    let newcomer = try #require(users.first { !v8.prefix(2).contains($0) })
    let before = try Dictionary(uniqueKeysWithValues: users.map { ($0, try fleet.userArchives($0).count) })
    let watch = try WatchProcess(fleet, ["--prometheus", Self.prom(fleet)])

    // Churn only: the real Telethon caches entities and update state, three saves per file.
    try fleet.churnWithTelethon(Array(v8.prefix(2)), rounds: 3)
    try Self.waitIdle(fleet, churnAtLeast: 2)
    // A login: the real Telethon writes a new session file, then the bot's row gets its token.
    let keys = try fleet.loginWithTelethon([newcomer])
    let archives = try Self.waitForArchives(fleet, newcomer, count: before[newcomer]! + 1)
    try Self.waitIdle(fleet)
    #expect(watch.terminate() == 0)

    let newest = try #require(archives.last)
    #expect(archives.count == before[newcomer]! + 1, "one login, one archive: \(archives)")
    #expect(newest.reason == "New login")
    let record = try Self.record(fleet, newcomer, newest.id)
    #expect(record.sessionFingerprint?.authKey == keys[newcomer])
    #expect(record.verification == .full)
    for user in v8.prefix(2) {
      #expect(try fleet.userArchives(user).count == before[user]!, "churn archived user \(user)")
    }
    // One line per archive, with the user, the reason and the key's fingerprint.
    let lines = watch.lines(containing: "archived")
    #expect(lines.count == 1, "\(lines)")
    #expect(lines.first?.contains("user.id=\(newcomer)") == true && lines.first?.contains("reason=New login") == true)
    #expect(lines.first?.contains("session.key=\(keys[newcomer]!)") == true)
    #expect(try Self.metric(fleet, "tgsess_watch_identities_archived_total") == 1)
    #expect((try Self.metric(fleet, "tgsess_watch_change_to_archive_seconds_count") ?? 0) == 1)
    #expect(try fleet.leakedSecrets() == [])
    #expect(fleet.secretCount > 0)
  }

  /// A login by string: only the `user_sessions` row changes (a new Fernet token of a new key).
  @Test func aNewSessionStringIsArchivedAndAReencryptedOneIsNot() throws {
    let fleet = try Self.fleet(users: 4)
    let users = try fleet.sessionUserIDs()
    let (stringUser, rotated) = (users[0], users[1])
    let watch = try WatchProcess(fleet, ["--prometheus", Self.prom(fleet)])
    let before = try fleet.userArchives(stringUser).count
    let rotatedBefore = try fleet.userArchives(rotated).count
    // A row-only login, and a row re-encrypted under the same key (same session string).
    try runPython(
      """
      import os, sqlite3, sys
      from cryptography.fernet import Fernet, MultiFernet
      from telethon.crypto import AuthKey
      from telethon.sessions import StringSession
      root, login, rotate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
      keys = [l.strip() for l in open(root + '/keys/fernet.keys') if l.strip() and not l.startswith('#')]
      f = MultiFernet([Fernet(k) for k in keys])
      s = StringSession()
      s.set_dc(4, '149.154.167.91', 443)
      s.auth_key = AuthKey(os.urandom(256))
      con = sqlite3.connect(root + '/data/telegram_bot.db', timeout=30)
      con.execute('UPDATE user_sessions SET session_string = ? WHERE user_id = ?', (f.encrypt(s.save().encode()).decode(), login))
      old = con.execute('SELECT session_string FROM user_sessions WHERE user_id = ?', (rotate,)).fetchone()[0]
      con.execute('UPDATE user_sessions SET session_string = ? WHERE user_id = ?', (f.encrypt(f.decrypt(old.encode())).decode(), rotate))
      con.commit()
      """, arguments: [fleet.root, String(stringUser), String(rotated)])
    let archives = try Self.waitForArchives(fleet, stringUser, count: before + 1)
    try Self.waitIdle(fleet)
    #expect(watch.terminate() == 0)
    #expect(archives.last?.reason == "New login")
    #expect(try fleet.userArchives(rotated).count == rotatedBefore, "a re-encrypted token is not a new identity")
    #expect(try fleet.leakedSecrets() == [])
  }

  // MARK: - Crashes and restarts

  /// Killed (SIGKILL) in the middle of writing the archive, watch leaves temporaries; the next
  /// start archives the login and removes them.
  @Test(arguments: ["archive.before-publish", "archive.after-publish"])
  func killedMidArchiveThenARestartCatchesUp(_ crashPoint: String) throws {
    let fleet = try Self.fleet(users: 4)
    let user = try fleet.sessionUserIDs()[1]
    let before = try fleet.userArchives(user).count
    let doomed = try WatchProcess(fleet, [], environment: ["TGSESS_CRASH_POINT": crashPoint])
    let keys = try fleet.loginWithTelethon([user])
    let ended = doomed.process.wait()
    fleet.keep(doomed.process)
    #expect(ended.signal == SIGKILL, "watch was not killed at \(crashPoint): \(doomed.stderr)")
    if crashPoint == "archive.before-publish" {
      #expect(try fleet.userArchives(user).count == before)
      #expect(!(try Self.leftovers(fleet)).isEmpty, "the kill left no temporary behind; the test proves nothing")
    }

    let watch = try WatchProcess(fleet, ["--prometheus", Self.prom(fleet)])
    let archives = try Self.waitForArchives(fleet, user, count: before + 1)
    try Self.waitIdle(fleet)
    #expect(watch.terminate() == 0)
    #expect(archives.count == before + 1, "\(archives)")
    let record = try Self.record(fleet, user, try #require(archives.last).id)
    #expect(record.sessionFingerprint?.authKey == keys[user])
    #expect(record.verification == .full)
    #expect(try Self.leftovers(fleet) == [])
    #expect(try fleet.leakedSecrets() == [])
  }

  /// SIGTERM right after a login: exit 0 with nothing half-written, and the login is archived by
  /// this run or by the next start (stopped with SIGINT, also 0).
  @Test func sigtermExitsZeroAndTheNextStartHasNothingToRedo() throws {
    let fleet = try Self.fleet(users: 3)
    let user = try fleet.sessionUserIDs()[0]
    let before = try fleet.userArchives(user).count
    let watch = try WatchProcess(fleet)
    try fleet.loginWithTelethon([user])
    #expect(watch.terminate() == 0)
    #expect(watch.lines(containing: "watch stopping").count == 1)
    #expect(try Self.leftovers(fleet) == [])
    let again = try WatchProcess(fleet, ["--prometheus", Self.prom(fleet)])
    try Self.waitForArchives(fleet, user, count: before + 1)
    try Self.waitIdle(fleet)
    #expect(again.terminate(SIGINT) == 0)
    #expect(try fleet.userArchives(user).count == before + 1)
    // A third start finds everything archived.
    let once = try fleet.tgsess(["watch", "--once", "--json"])
    #expect(once.status == 0, "\(once.stderr)")
    let result = try decodeJSON(WatchResult.self, from: once)
    #expect(
      result.archivesWritten == 0, "\(once.stdout)\n--- first:\n\(watch.stderr)\n--- again:\n\(again.stderr)"
    )
    #expect(try fleet.leakedSecrets() == [])
  }

  // MARK: - Locks and restores

  @Test func aLongHeldLockQueuesTheWorkAndWatchKeepsRunning() throws {
    let fleet = try Self.fleet(users: 3)
    let user = try fleet.sessionUserIDs()[2]
    let before = try fleet.userArchives(user).count
    let watch = try WatchProcess(fleet, ["--prometheus", Self.prom(fleet)])
    let holder = try BackgroundProcess.holdingLock(fleet.root + "/.tgsess.lock")
    try fleet.loginWithTelethon([user])
    try waitUntil("the change queued behind the lock") {
      let queued = try Self.metric(fleet, "tgsess_watch_queue_length") ?? 0
      return !watch.lines(containing: "deployment lock held").isEmpty && queued >= 1
    }
    #expect(try fleet.userArchives(user).count == before, "archived while another run held the lock")
    #expect(watch.process.isRunning)
    holder.kill()
    try Self.waitForArchives(fleet, user, count: before + 1)
    #expect(watch.terminate() == 0)
    #expect(watch.lines(containing: "deployment lock free").count == 1)
  }

  /// A restore (which holds the lock while it replaces the database and the files) while watch
  /// runs: every archive watch writes afterwards holds the restored state, file and row alike.
  @Test func aRestoreWhileWatchRunsIsArchivedWholeNeverHalfway() throws {
    try StockTools.require()
    let fleet = try Self.fleet(users: 5)
    let users = Array(try fleet.telethonUserIDs().prefix(2))
    try #require(users.count == 2)
    let watch = try WatchProcess(fleet, ["--prometheus", Self.prom(fleet)])
    // Two logins after the snapshot, archived by watch.
    let counts = try Dictionary(uniqueKeysWithValues: users.map { ($0, try fleet.userArchives($0).count) })
    try fleet.loginWithTelethon(users)
    for user in users { try Self.waitForArchives(fleet, user, count: counts[user]! + 1) }
    try Self.waitIdle(fleet)
    // Back to the snapshot: the old keys return.
    let restore = try fleet.tgsess(["restore", "latest", "--force"])
    #expect(restore.status == 0, "\(restore.stderr)")
    for user in users { try Self.waitForArchives(fleet, user, count: counts[user]! + 2) }
    try Self.waitIdle(fleet)
    #expect(watch.terminate() == 0)
    let identity = fleet.identityPath
    let scratch = try TemporaryDirectory("watch-restore")
    for user in users {
      let newest = try #require(try fleet.userArchives(user).last)
      let record = try Self.record(fleet, user, newest.id)
      let file = try FileIdentity.read(path: fleet.sessionPath(user), busyTimeoutMS: 1000)
      #expect(record.sessionFingerprint?.authKey == file.authKey, "user \(user): the archive is not the restored file")
      // The row archived with it holds the same key (decrypted by Python's cryptography).
      let path = ArchiveRepository(backupsDirectory: fleet.backupsDirectory).path(of: record)
      let extracted = try StockTools.extractAndVerify(path, identity: identity, scratch: scratch.path)
      #expect(extracted.problems == [])
      let rowKey = try runPython(
        """
        import hashlib, json, sys
        from cryptography.fernet import Fernet, MultiFernet
        from telethon.sessions import StringSession
        keys = [l.strip() for l in open(sys.argv[2]) if l.strip() and not l.startswith('#')]
        rows = json.load(open(sys.argv[1]))
        row = rows['user_sessions']
        string = MultiFernet([Fernet(k) for k in keys]).decrypt(row['session_string'].encode()).decode()
        print(hashlib.sha256(StringSession(string).auth_key.key).hexdigest()[:8])
        """,
        arguments: [extracted.directory + "/users/user_\(user).json", fleet.root + "/keys/fernet.keys"]
      ).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
      #expect(rowKey == file.authKey, "user \(user): file and row of the archive disagree")
    }
    #expect(try fleet.leakedSecrets() == [])
  }

  // MARK: - Overflow, vanished and invalid files

  /// The kernel queue is made tiny (fs.inotify.max_queued_events, as root), so a login among
  /// many changes overflows it: watch rescans and still archives the login.
  @Test func anOverflowedQueueIsRescanned() throws {
    let fleet = try Self.fleet(users: 6)
    let v8 = try Self.telethonV8Users(fleet)
    let user = try #require(try fleet.sessionUserIDs().first { !v8.contains($0) })
    let before = try fleet.userArchives(user).count
    let churnedBefore = try v8.map { try fleet.userArchives($0).count }
    let watch = try InotifyQueueLimit.withLimit(4) { try WatchProcess(fleet, ["--prometheus", Self.prom(fleet)]) }
    try fleet.churnWithTelethon(v8, rounds: 2)
    try fleet.loginWithTelethon([user])
    try waitUntil("an overflow") { !watch.lines(containing: "inotify queue overflowed").isEmpty }
    try Self.waitForArchives(fleet, user, count: before + 1)
    try Self.waitIdle(fleet)
    #expect(watch.terminate() == 0)
    #expect(try fleet.userArchives(user).count == before + 1)
    #expect(watch.lines(containing: "reason=overflow").count >= 1)
    #expect(try v8.map { try fleet.userArchives($0).count } == churnedBefore, "the rescan archived churn")
  }

  @Test func aVanishedOrInvalidFileIsReportedNeverArchived() throws {
    let fleet = try Self.fleet(users: 5)
    let users = try fleet.sessionUserIDs()
    let (vanished, broken) = (users[0], users[1])
    let truncated = try #require(try fleet.telethonUserIDs().first { ![vanished, broken].contains($0) })
    let counts = try Dictionary(uniqueKeysWithValues: users.map { ($0, try fleet.userArchives($0).count) })
    let watch = try WatchProcess(fleet, ["--prometheus", Self.prom(fleet)])
    #expect(unlink(fleet.sessionPath(vanished)) == 0)
    try Data(repeating: 0x41, count: 8192).write(to: URL(fileURLWithPath: fleet.sessionPath(broken)))
    // The tail cut off in place: the pages that hold the identity are still there.
    #expect(truncate(fleet.sessionPath(truncated), 3 * 4096) == 0)
    try waitUntil("all three reported") { (try Self.metric(fleet, "tgsess_watch_invalid_sessions") ?? 0) == 3 }
    try Self.waitIdle(fleet)
    #expect(watch.terminate() == 0)
    let reports = watch.lines(containing: "session not usable")
    #expect(reports.count == 3, "\(reports)")
    #expect(reports.contains { $0.contains("user.id=\(vanished)") && $0.contains("vanished") })
    #expect(reports.contains { $0.contains("user.id=\(broken)") && $0.contains("not an SQLite database") })
    #expect(reports.contains { $0.contains("user.id=\(truncated)") && $0.contains("truncated") })
    for user in users { #expect(try fleet.userArchives(user).count == counts[user]!) }
    // --once reports them too, as a partial run.
    let once = try fleet.tgsess(["watch", "--once"])
    #expect(once.status == 3, "\(once.stdout)\(once.stderr)")
    #expect(once.stdout.contains("INVALID user \(vanished)"))
  }

  // MARK: - Faults

  /// A remote that is down: the archive stays local and the copy is retried until it verifies.
  @Test func aRemoteThatIsDownIsRetriedUntilTheCopyVerifies() throws {
    let scratch = try TemporaryDirectory("watch-remote")
    let remote = scratch.file("remote")
    // A regular file where the remote's directory should be: rclone cannot write there.
    try Data("not a directory".utf8).write(to: URL(fileURLWithPath: remote))
    let fleet = try Self.fleet(
      users: 3, config: "deployment_name = \"host\"\n[[remotes]]\nname = \"usb\"\npath = \"\(remote)\"\n")
    let user = try fleet.sessionUserIDs()[0]
    let watch = try WatchProcess(fleet, ["--prometheus", Self.prom(fleet), "--retry-base-ms", "200"])
    try fleet.loginWithTelethon([user])
    // Several attempts (rclone's messages differ by their timestamps): still one line.
    try waitUntil("three failed copies, queued again") {
      let queued = try Self.metric(fleet, "tgsess_watch_push_queue_length") ?? 0
      let failures = try Self.metric(fleet, "tgsess_watch_remote_failures_total") ?? 0
      return !watch.lines(containing: "copy to remote failed").isEmpty && queued >= 1 && failures >= 3
    }
    let newest = try #require(try fleet.userArchives(user).last)
    #expect(newest.reason == "New login")
    #expect(try Self.metric(fleet, "tgsess_watch_remote_ok") == 0)
    // The remote comes back.
    #expect(unlink(remote) == 0)
    try FileManager.default.createDirectory(atPath: remote, withIntermediateDirectories: true)
    let copy = remote + "/host/users/user_\(user)/\(newest.id).tar.zst.age"
    try waitUntil("the copy on the remote") { FileManager.default.fileExists(atPath: copy) }
    try Self.waitIdle(fleet)
    #expect(watch.terminate() == 0)
    #expect(
      try FileSystem.sha256(ofFile: copy)
        == FileSystem.sha256(
          ofFile: fleet.backupsDirectory + "/users/user_\(user)/\(newest.id).tar.zst.age"))
    #expect(watch.lines(containing: "copy to remote failed").count == 1, "one line, not one per attempt")
    #expect(watch.lines(containing: "remote reachable again").count == 1)
    #expect(try Self.metric(fleet, "tgsess_watch_remote_ok") == 1)
  }

  /// A full disk under the archives: one line, watch keeps running, and the archive is written
  /// once there is room again.
  @Test func aFullDiskIsOneLineAndTheArchiveFollowsWhenThereIsRoom() throws {
    let fleet = try TestFleet(users: 3, entities: 120, collectsSecrets: true, location: .subdirectory("fleet"))
    let mount = try TmpfsMount(at: fleet.backupsDirectory, sizeKiB: 8 * 1024)
    defer { mount.unmount() }
    #expect(try fleet.tgsess(["backup"]).status == 0)
    let user = try fleet.sessionUserIDs()[0]
    let before = try fleet.userArchives(user).count
    let watch = try WatchProcess(fleet, ["--prometheus", Self.prom(fleet), "--retry-base-ms", "200"])
    // Fill the disk but for a few KiB.
    let filler = mount.path + "/filler"
    try runProcess("/bin/dd", ["if=/dev/zero", "of=\(filler)", "bs=4k", "count=\(max(1, mount.freeBytes / 4096 - 2))"])
    try fleet.loginWithTelethon([user])
    try waitUntil("the disk-full line") { !watch.lines(containing: "no space left on device").isEmpty }
    #expect(watch.process.isRunning)
    #expect(try fleet.userArchives(user).count == before)
    #expect(unlink(filler) == 0)
    try Self.waitForArchives(fleet, user, count: before + 1)
    #expect(watch.terminate() == 0)
    let failures = watch.lines(containing: "cannot archive user yet")
    #expect(failures.count == 1, "one line, not one per attempt: \(failures)")
    #expect(try Self.leftovers(fleet) == [])
  }

  /// A session file watch may not read (owned by another user, mode 0600) is one line and never
  /// archived; made readable again, it is judged as usual. (watch runs as nobody here: root
  /// reads any file.)
  @Test func aFileWatchCannotReadIsReportedAndWatchKeepsRunning() throws {
    let fleet = try Self.fleet(users: 3)
    let users = try fleet.sessionUserIDs()
    let (locked, other) = (users[0], users[1])
    try runProcess("/bin/chmod", ["0711", (fleet.root as NSString).deletingLastPathComponent])
    #expect(try runProcess("/bin/chown", ["-R", "nobody:nogroup", fleet.root]).status == 0)
    #expect(try runProcess("/bin/chown", ["root:root", fleet.sessionPath(locked)]).status == 0)
    let prom = Self.prom(fleet)
    // setpriv execs tgsess itself as nobody, so the signal below reaches watch and no wrapper.
    let process = try BackgroundProcess(
      "/usr/bin/setpriv",
      [
        "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--", TestEnvironment.productPath("tgsess"), "watch",
        "--root", fleet.root, "--prometheus", prom,
      ])
    defer { if process.isRunning { process.kill() } }
    try waitUntil("watch's scan") {
      guard process.isRunning else { throw TestHelperError("watch exited: \(process.stderr)") }
      return process.stderr.contains("scan done")
    }
    let before = try fleet.userArchives(other).count
    try waitUntil("the unreadable file reported") {
      process.stderr.contains("user.id=\(locked)") && process.stderr.contains("Permission denied")
    }
    // The others are still watched.
    try fleet.loginWithTelethon([other])
    #expect(try runProcess("/bin/chown", ["nobody:nogroup", fleet.sessionPath(other)]).status == 0)
    try Self.waitForArchives(fleet, other, count: before + 1)
    #expect(try runProcess("/bin/chown", ["nobody:nogroup", fleet.sessionPath(locked)]).status == 0)
    try waitUntil("the file usable again") { process.stderr.contains("session usable again") }
    process.kill(SIGTERM)
    #expect(process.wait().status == 0)
    fleet.keep(process)
    let reports = process.stderr.split(separator: "\n").filter { $0.contains("session not usable") }
    #expect(reports.count == 1, "\(reports)")
    #expect(try fleet.leakedSecrets() == [])
  }

  /// The bot holds its database locked for longer than busy_timeout_ms: one line, and watch
  /// picks the row up once the lock is gone.
  @Test func aDatabaseLockedPastTheBusyTimeoutIsOneLineAndARetry() throws {
    let fleet = try Self.fleet(users: 3, config: "busy_timeout_ms = 200\n")
    let user = try fleet.sessionUserIDs()[0]
    let before = try fleet.userArchives(user).count
    let watch = try WatchProcess(fleet, ["--prometheus", Self.prom(fleet), "--retry-base-ms", "200"])
    let locker = try LiveWriter.exclusiveLock(on: fleet.databasePath)
    // Any change to the database makes watch look at the rows; the lock makes the look fail.
    #expect(chmod(fleet.databasePath, 0o600) == 0)
    try waitUntil("the locked-database line") { !watch.lines(containing: "cannot read user_sessions").isEmpty }
    #expect(watch.process.isRunning)
    try locker.stop()
    try fleet.loginWithTelethon([user])
    try Self.waitForArchives(fleet, user, count: before + 1)
    #expect(watch.terminate() == 0)
    #expect(watch.lines(containing: "cannot read user_sessions").count == 1)
  }

  /// Removing the watched directory is not something to ride out: watch exits non-zero, naming it.
  @Test func losingTheWatchedDirectoryExitsNonZero() throws {
    let fleet = try Self.fleet(users: 2)
    let watch = try WatchProcess(fleet)
    #expect(rename(fleet.sessionsDirectory, fleet.sessionsDirectory + ".moved") == 0)
    let ended = watch.process.wait()
    fleet.keep(watch.process)
    #expect(ended.status == 1)
    #expect(watch.stderr.contains("tgsess: watch: \(fleet.sessionsDirectory): not found"), "\(watch.stderr)")
  }

  // MARK: - Monitoring

  /// The pings (start, a heartbeat, the exit status) and a textfile node_exporter itself accepts.
  @Test func pingsAndATextfileNodeExporterReads() throws {
    let server = try PingServer()
    let textfiles = try TemporaryDirectory("watch-textfile")
    let prom = textfiles.file("tgsess_watch.prom")
    let fleet = try Self.fleet(users: 3, config: "[watch]\nheartbeat_seconds = 1\n")
    let user = try fleet.sessionUserIDs()[0]
    let watch = try WatchProcess(fleet, ["--prometheus", prom, "--ping-url", server.url])
    try fleet.loginWithTelethon([user])
    try waitUntil("a heartbeat ping after the archive") {
      try server.requests().contains { $0.path == PingServer.checkPath + "/0" && $0.body.contains("1 archived") }
    }
    #expect(watch.terminate() == 0)
    let requests = try server.requests()
    #expect(requests.first?.path == PingServer.checkPath + "/start")
    #expect(requests.last?.path == PingServer.checkPath + "/0")
    #expect(Set(requests.compactMap { $0.parameter("rid") }).count == 1, "one run id for the whole run")
    #expect(!watch.stderr.contains(PingServer.checkPath), "the ping URL is a credential")
    let exporter = try NodeExporter(directory: textfiles.path)
    let scraped = try exporter.scrape()
    #expect(scraped.contains("tgsess_watch_identities_archived_total{reason=\"New login\"} 1"), "\(scraped)")
    #expect(scraped.contains("\nnode_textfile_scrape_error 0\n"))
    #expect(try fleet.leakedSecrets() == [])
  }

  /// A monitor that answers 500 heartbeat after heartbeat: one warning line, and watch goes on.
  @Test func aMonitorThatStaysDownIsOneLine() throws {
    let server = try PingServer(status: 500)
    let fleet = try Self.fleet(users: 2, config: "[watch]\nheartbeat_seconds = 1\n")
    let watch = try WatchProcess(fleet, ["--ping-url", server.url])
    try waitUntil("four failed heartbeats") {
      try server.requests().filter { $0.path == PingServer.checkPath + "/0" }.count >= 4
    }
    #expect(watch.terminate() == 0)
    let lines = watch.lines(containing: "ping to 127.0.0.1")
    #expect(lines.count == 1, "\(lines)")
    #expect(lines.first?.contains("HTTP 500") == true)
    #expect(!watch.stderr.contains(PingServer.checkPath))
  }

  // MARK: - Bad input

  /// Usage errors exit 64 with a hint; what keeps watch from starting exits 1 naming the object.
  @Test func badFlagsAndAnUnwatchableDeploymentAreOneLine() throws {
    let fleet = try TestFleet(users: 1, entities: 120, collectsSecrets: true, location: .subdirectory("fleet"))
    let lockWait = try fleet.tgsess(["watch", "--lock-wait", "5"])
    #expect(lockWait.status == 64)
    #expect(lockWait.stderr.contains("--lock-wait applies to --once only"))
    let negative = try fleet.tgsess(["watch", "--once", "--lock-wait", "-1"])
    #expect(negative.status == 64)
    let ping = try fleet.tgsess(["watch", "--ping-url", "ftp://example.com/x"])
    #expect(ping.status == 64)
    #expect(ping.stderr.contains("--ping-url is not an http:// or https:// URL"))
    #expect(!ping.stderr.contains("example.com/x"), "the ping URL is a credential")
    // No sessions directory: nothing to watch.
    try FileManager.default.moveItem(atPath: fleet.sessionsDirectory, toPath: fleet.sessionsDirectory + ".away")
    let missing = try fleet.tgsess(["watch"])
    #expect(missing.status == 1)
    #expect(
      missing.stderr
        == "tgsess: watch: \(fleet.sessionsDirectory): not found; watch follows this directory; run tgsess init, or fix sessions_dir / database in the config\n",
      "\(missing.stderr)")
    try FileManager.default.moveItem(atPath: fleet.sessionsDirectory + ".away", toPath: fleet.sessionsDirectory)
    // No age recipient: no archive could be encrypted.
    try FileManager.default.removeItem(atPath: fleet.root + "/keys/age-recipients.txt")
    let noRecipient = try fleet.tgsess(["watch", "--once"])
    #expect(noRecipient.status == 1)
    #expect(noRecipient.stderr.contains("no age recipient configured"), "\(noRecipient.stderr)")
    let help = try fleet.tgsess(["watch", "--help"])
    #expect(help.status == 0 && help.stdout.contains("EXIT STATUS") && help.stdout.contains("$ tgsess watch --once"))
    #expect(!help.stdout.contains("retry-base-ms"), "test knobs stay hidden")
  }

  // MARK: - Retention

  /// A storm of re-logins: prune keeps 5 per user and never the newest verified archive away.
  @Test func aReloginStormNeverLosesTheNewestArchive() throws {
    let fleet = try Self.fleet(users: 2)
    let user = try fleet.sessionUserIDs()[0]
    let watch = try WatchProcess(fleet, ["--prometheus", Self.prom(fleet)])
    var key = ""
    for round in 1...7 {
      let before = try fleet.userArchives(user).count
      key = try #require(try fleet.loginWithTelethon([user])[user])
      try Self.waitForArchives(fleet, user, count: before + 1)
      _ = round
    }
    try Self.waitIdle(fleet)
    let prune = try fleet.tgsess(["prune", "--lock-wait", "60"])
    #expect(prune.status == 0, "\(prune.stderr)")
    #expect(watch.terminate() == 0)
    let archives = try fleet.userArchives(user)
    #expect(archives.count == 5)
    let newest = try Self.record(fleet, user, try #require(archives.last).id)
    #expect(newest.sessionFingerprint?.authKey == key)
    #expect(newest.verification == .full)
    // And watch, restarted, sees the live identity archived: nothing to do.
    let once = try fleet.tgsess(["watch", "--once"])
    #expect(once.status == 0, "\(once.stderr)")
    #expect(once.stdout.contains(" 0 archived"))
  }
}

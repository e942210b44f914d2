import Foundation
import Jobs
import Store
import TestSupport
import Testing

/// `tgsess restore` end to end through the built binary, on deployments written by
/// `tgsess-fleet`: what comes back is compared with `sqlite3 .dump`, SHA-256 of files, and the
/// session as the real Telethon loads it.
@Suite struct RestoreCLITests {
  // MARK: - Helpers

  /// Every session and `.session.backup` file of the fleet.
  static func sessionFiles(_ fleet: TestFleet) throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: fleet.deployment.sessionsDirectory).sorted()
      .filter { $0.hasSuffix(".session") || $0.hasSuffix(".session.backup") }
      .map { fleet.deployment.sessionsDirectory + "/" + $0 }
  }

  /// The id in "undo: archive ID holds what was replaced".
  static func undoID(_ stdout: String) -> String? {
    guard let line = stdout.split(separator: "\n").first(where: { $0.hasPrefix("undo: archive ") }) else { return nil }
    return line.dropFirst("undo: archive ".count).split(separator: " ").first.map(String.init)
  }

  /// The full snapshots, newest first.
  static func fullArchives(_ fleet: TestFleet) throws -> [ListedArchive] {
    try fleet.listedArchives(["--kind", "full"])
  }

  /// The `user_sessions` rows of these users, as sqlite3 prints them.
  static func rows(_ fleet: TestFleet, _ users: [Int64]) throws -> String {
    try fleet.sqlite(
      "SELECT * FROM user_sessions WHERE user_id IN (\(users.map(String.init).joined(separator: ","))) ORDER BY user_id"
    )
  }

  /// The differences between two trees below `prefix`.
  static func changed(_ before: [String: String], _ after: [String: String], under prefix: String) -> [String] {
    FileTree.differences(before, after).filter { $0.split(separator: " ").last?.hasPrefix(prefix) ?? false }
  }

  static func expectSameSessions(
    _ restored: [String: SessionIdentityWitness], _ original: [String: SessionIdentityWitness],
    sourceLocation: SourceLocation = #_sourceLocation
  ) {
    #expect(Set(restored.keys) == Set(original.keys), sourceLocation: sourceLocation)
    for (path, identity) in original {
      #expect(
        restored[path]?.sameSession(as: identity) == true, "\(path): \(restored[path].map(\.description) ?? "missing")",
        sourceLocation: sourceLocation)
    }
    #expect(restored.values.contains { $0.library == "telethon" }, sourceLocation: sourceLocation)
  }

  // MARK: - Round trips

  @Test func wholeRestoreAfterLosingSessionsAndDatabase() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 8, messageLogMiB: 1)
    let files = try Self.sessionFiles(fleet)
    let original = try SessionWitness.stored(files)
    let dumps = try fleet.dumpAll()
    try fleet.tgsessOK(["backup"])

    try FileManager.default.removeItem(atPath: fleet.deployment.sessionsDirectory)
    try FileManager.default.removeItem(atPath: fleet.databasePath)
    let result = try fleet.tgsessOK(["restore", "latest"])

    #expect(result.stdout.hasPrefix("restored from \(try Self.fullArchives(fleet)[0].id) (whole)"))
    #expect(result.stdout.contains("check: 8 session(s) validate, database passes integrity_check"))
    #expect(try fleet.dumpAll() == dumps)
    #expect(try fleet.sqlite("PRAGMA integrity_check") == "ok")
    Self.expectSameSessions(try SessionWitness.loadedByTelethon(files), original)
  }

  @Test func userRestoreBringsBackOneUserAndTouchesNobodyElse() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 8, messageLogMiB: 1)
    let victims = try fleet.telethonUserIDs(2)
    let (deleted, corrupted) = (victims[0], victims[1])
    let original = try SessionWitness.stored(victims.map(fleet.sessionPath))
    let victimRows = try Self.rows(fleet, victims)
    try fleet.tgsessOK(["backup"])

    // One user loses file and row; another gets a garbage file and a garbage string.
    try FileManager.default.removeItem(atPath: fleet.sessionPath(deleted))
    try fleet.sqlite("DELETE FROM user_sessions WHERE user_id = \(deleted)")
    let garbage = Data(randomBytes(20_000))
    try garbage.write(to: URL(fileURLWithPath: fleet.sessionPath(corrupted)))
    try fleet.sqlite("UPDATE user_sessions SET session_string = 'garbage' WHERE user_id = \(corrupted)")
    let others = try fleet.sessionUserIDs().filter { !victims.contains($0) }
    let treeBefore = try fleet.tree()
    let otherRows = try Self.rows(fleet, others)
    let otherHistory = try fleet.sqlite(
      "SELECT * FROM session_backups WHERE user_id NOT IN (\(deleted), \(corrupted)) ORDER BY id")
    let copyConfigs = try fleet.dump("copy_configs")
    let messageLog = try fleet.dump("message_log")
    #expect(!messageLog.isEmpty)

    let first = try fleet.tgsessOK(["restore", "latest", "--user", String(deleted)])
    #expect(first.stdout.contains("-u\(deleted)-"))
    #expect(first.stdout.contains("(user)"))
    #expect(first.stdout.contains("check: 1 session(s) validate"))
    let second = try fleet.tgsessOK(["restore", "latest", "--user", String(corrupted)])
    // The garbage file cannot be snapshotted, so the undo archive holds its bytes verbatim
    // (issue #16; it was a directory of raw copies before).
    let undo = try #require(Self.undoID(second.stdout), "\(second.stdout)")
    let listedUndo = try fleet.listedArchives(["--user", String(corrupted)]).first { $0.id == undo }
    #expect(listedUndo?.verbatim == true && listedUndo?.signature == .signed, "\(second.stdout)")

    Self.expectSameSessions(try SessionWitness.loadedByTelethon(victims.map(fleet.sessionPath)), original)
    #expect(try Self.rows(fleet, victims) == victimRows)
    #expect(try Self.rows(fleet, others) == otherRows)
    #expect(
      try fleet.sqlite("SELECT * FROM session_backups WHERE user_id NOT IN (\(deleted), \(corrupted)) ORDER BY id")
        == otherHistory)
    #expect(try fleet.dump("copy_configs") == copyConfigs)
    #expect(try fleet.dump("message_log") == messageLog)
    let treeAfter = try fleet.tree()
    let changedSessions = Self.changed(treeBefore, treeAfter, under: "sessions/")
    #expect(
      Set(changedSessions)
        == ["new: sessions/user_\(deleted).session", "changed: sessions/user_\(corrupted).session"])
  }

  @Test func targetRestoreBuildsADrillCopyAndLeavesLiveUntouched() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 6, messageLogMiB: 1)
    let files = try Self.sessionFiles(fleet)
    let original = try SessionWitness.stored(files)
    let dumps = try fleet.dumpAll()
    try fleet.tgsessOK(["backup"])
    let live = try fleet.tree()
    #expect(live.count > 10)
    let target = fleet.directory.path + "/drill"

    let result = try fleet.tgsessOK(["restore", "latest", "--target", target])

    #expect(result.stdout.contains("(target)"))
    #expect(try fleet.tree() == live)
    let drill = Deployment(root: target)
    #expect(try fleet.dumpAll(path: drill.databasePath) == dumps)
    let restoredFiles = files.map { target + "/sessions/" + ($0 as NSString).lastPathComponent }
    let restored = try SessionWitness.loadedByTelethon(restoredFiles)
    Self.expectSameSessions(
      Dictionary(
        uniqueKeysWithValues: restored.map { ($0.key.replacingOccurrences(of: target, with: fleet.root), $0.value) }),
      original)
    #expect(!(try FileTree.hashes(target)).keys.contains { $0.contains(".staging-") })

    // A second restore into the now non-empty directory refuses and changes nothing.
    let drillTree = try FileTree.hashes(target)
    let again = try fleet.tgsess(["restore", "latest", "--target", target])
    #expect(again.status == 1)
    #expect(again.stderr == "tgsess: --target \(target) is not empty; restore into an empty or new directory\n")
    #expect(try FileTree.hashes(target) == drillTree)
    #expect(try fleet.tree() == live)
  }

  @Test func dryRunPrintsEveryFileWithHashesAndChangesNothing() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 5)
    let victims = try fleet.telethonUserIDs(2)
    try fleet.tgsessOK(["backup"])
    let archive = try Self.fullArchives(fleet)[0]
    let manifest = try Peers.manifest(ofArchive: archive.path, identity: fleet.deployment.ageIdentityPath)
    try FileManager.default.removeItem(atPath: fleet.sessionPath(victims[0]))
    try Data(randomBytes(5000)).write(to: URL(fileURLWithPath: fleet.sessionPath(victims[1])))
    try fleet.sqlite("UPDATE copy_configs SET enabled = 0")
    let tree = try fleet.tree()
    let target = fleet.directory.path + "/drill"

    let whole = try fleet.tgsessOK(["restore", "latest", "--dry-run"])
    let user = try fleet.tgsessOK(["restore", "latest", "--user", String(victims[1]), "--dry-run"])
    let json = try fleet.tgsessJSON(RestoreResult.self, ["restore", "latest", "--dry-run"])
    let drill = try fleet.tgsessOK(["restore", "latest", "--target", target, "--dry-run"])

    #expect(try fleet.tree() == tree)
    #expect(!FileManager.default.fileExists(atPath: target), "a dry run created \(target)")
    #expect(whole.stdout.hasPrefix("would restore from \(archive.id) (whole)"))
    #expect(!whole.stdout.contains("undo:"))
    let entries = manifest.entries
    #expect(entries.count >= 6)
    for entry in entries {
      let path = fleet.root + "/" + entry.path
      let after = String(entry.sha256.prefix(12))
      let line = whole.stdout.split(separator: "\n").first { $0.contains(" \(path) ") }
      #expect(line?.hasSuffix("→ \(after)") == true, "\(path): \(line ?? "no line")")
      if path == fleet.sessionPath(victims[0]) {
        #expect(line?.contains("create ") == true)
        #expect(line?.contains("  - → ") == true)
      } else if path == fleet.sessionPath(victims[1]) {
        let before = try FileSystem.sha256(ofFile: path)
        #expect(line?.contains("replace ") == true)
        #expect(line?.contains("  \(before.prefix(12)) → ") == true)
      } else {
        // Snapshot bytes differ from a file the bot wrote, so an unchanged user may be replaced.
        let before = try FileSystem.sha256(ofFile: path)
        #expect(line?.contains("  \(before.prefix(12)) → ") == true, "\(line ?? "")")
      }
    }
    #expect(user.stdout.contains("would restore from"))
    #expect(user.stdout.contains("-u\(victims[1])-"))
    #expect(user.stdout.contains("would upsert the user_sessions row of user \(victims[1])"))
    #expect(user.stdout.contains("replace   \(fleet.sessionPath(victims[1]))"))
    #expect(json.isDryRun == true)
    let files = json.files
    #expect(files.count == entries.count)
    #expect(Set(files.map(\.sha256After)) == Set(entries.map(\.sha256)))
    #expect(drill.stdout.contains("(target)"))
  }

  @Test func atPicksTheNewestArchiveAtOrBeforeTheTime() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 4)
    let user = try fleet.telethonUserIDs(1)[0]
    let firstConfigs = try fleet.dump("copy_configs")
    let firstIdentity = try SessionWitness.stored([fleet.sessionPath(user)])
    try fleet.tgsessOK(["backup"])
    let first = try Self.fullArchives(fleet)[0]
    // Archive times have whole seconds: wait for the next one before the second backup.
    while Timestamp.compact(Date()) <= String(first.id.prefix(16)) { usleep(50_000) }
    try fleet.sqlite("UPDATE copy_configs SET filters = '{\"media\": false}'")
    try Peers.writeNewTelethonSessions([fleet.sessionPath(user)])
    try fleet.tgsessOK(["backup"])
    let second = try Self.fullArchives(fleet)[0]
    #expect(second.id != first.id)
    let firstTime = iso8601(first.createdAt)
    let secondTime = iso8601(second.createdAt)

    func chosen(_ arguments: [String]) throws -> String {
      try fleet.tgsessJSON(RestoreResult.self, ["restore", "--dry-run"] + arguments).archiveID
    }
    #expect(try chosen(["--at", firstTime]) == first.id)
    #expect(try chosen(["--at", secondTime]) == second.id)
    let userArchives = try fleet.listedArchives(["--kind", "user", "--user", String(user)])
    #expect(userArchives.count == 2)
    // A per-user archive is dated when it is written, after its run's full snapshot (a second
    // later on a busy machine): its own time is the one to ask for.
    for archive in userArchives {
      let time = iso8601(archive.createdAt)
      #expect(try chosen(["--user", String(user), "--at", time]) == archive.id)
    }
    let tooEarly = try fleet.tgsess(["restore", "--at", "2001-01-01"])
    #expect(tooEarly.status == 1)
    #expect(
      tooEarly.stderr
        == "tgsess: restore: \(fleet.deployment.backupsDirectory): not found; no full snapshot at or before 2001-01-01T00:00:00Z; see tgsess list\n"
    )

    // Restoring at the first time brings back the first state.
    try fleet.tgsessOK(["restore", "--at", firstTime])
    #expect(try fleet.dump("copy_configs") == firstConfigs)
    Self.expectSameSessions(try SessionWitness.loadedByTelethon([fleet.sessionPath(user)]), firstIdentity)
  }

  @Test func restoringTheUndoArchiveBringsBackThePreRestoreState() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 5)
    let user = try fleet.telethonUserIDs(1)[0]
    let path = fleet.sessionPath(user)
    let stateA = (dumps: try fleet.dumpAll(), session: try SessionWitness.stored([path]))
    try fleet.tgsessOK(["backup"])
    let archiveA = try Self.fullArchives(fleet)[0].id
    let userArchiveA =
      try fleet.listedArchives(["--kind", "user", "--user", String(user)])[0].id

    // State B: the user logged in again with other api credentials; the bot changed its own table.
    try Peers.writeNewTelethonSessions([path])
    try fleet.sqlite("UPDATE user_sessions SET api_id = 424242 WHERE user_id = \(user)")
    try fleet.sqlite("UPDATE copy_configs SET enabled = 0 WHERE user_id = \(user)")
    let stateB = (dumps: try fleet.dumpAll(), session: try SessionWitness.stored([path]))
    #expect(!(stateB.session[path]!.sameSession(as: stateA.session[path]!)))

    // Whole: A, then undo back to B.
    let restored = try fleet.tgsessOK(["restore", archiveA])
    let undo = try #require(Self.undoID(restored.stdout), "\(restored.stdout)")
    #expect(restored.stdout.contains("(tgsess restore \(undo) undoes this restore)"))
    #expect(try fleet.dump("copy_configs") == stateA.dumps["copy_configs"])
    Self.expectSameSessions(try SessionWitness.loadedByTelethon([path]), stateA.session)
    let listed = try fleet.listedArchives().first { $0.id == undo }
    #expect(listed?.reason == "Before restore")
    #expect(listed?.kind == .full)
    let undone = try fleet.tgsessOK(["restore", undo])
    #expect(Self.undoID(undone.stdout) != nil)
    #expect(try fleet.dumpAll() == stateB.dumps)
    Self.expectSameSessions(try SessionWitness.loadedByTelethon([path]), stateB.session)

    // One user: A, then undo back to B.
    let rowB = try Self.rows(fleet, [user])
    let userRestore = try fleet.tgsessOK(["restore", userArchiveA, "--user", String(user)])
    let userUndo = try #require(Self.undoID(userRestore.stdout), "\(userRestore.stdout)")
    #expect(userUndo.contains("-u\(user)-"))
    Self.expectSameSessions(try SessionWitness.loadedByTelethon([path]), stateA.session)
    let listedUser = try fleet.listedArchives(["--user", String(user)]).first {
      $0.id == userUndo
    }
    #expect(listedUser?.reason == "Before restore")
    #expect(try Self.rows(fleet, [user]) != rowB)
    // Exactly the command the restore printed: the undo archive is the user's, so it restores the user.
    #expect(userRestore.stdout.contains("(tgsess restore \(userUndo) undoes this restore)"))
    let userUndone = try fleet.tgsessOK(["restore", userUndo])
    #expect(userUndone.stdout.contains("(user)"))
    Self.expectSameSessions(try SessionWitness.loadedByTelethon([path]), stateB.session)
    #expect(try Self.rows(fleet, [user]) == rowB)
  }

  @Test func aUserTheArchiveDoesNotHoldIsRefusedAndNothingChanges() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 3)
    try fleet.tgsessOK(["backup"])
    let full = try Self.fullArchives(fleet)[0].id
    let users = try fleet.sessionUserIDs()
    let own = try fleet.listedArchives(["--kind", "user", "--user", String(users[0])])
    let userArchive = own[0].id
    let tree = try fleet.tree()

    let notInFull = try fleet.tgsess(["restore", full, "--user", "999"])
    let notInOwn = try fleet.tgsess(["restore", userArchive, "--user", String(users[1])])
    let noArchive = try fleet.tgsess(["restore", "latest", "--user", "999"])
    let targetAndUser = try fleet.tgsess([
      "restore", "latest", "--user", "999", "--target", fleet.directory.path + "/x",
    ])

    #expect(notInFull.status == 1)
    #expect(
      notInFull.stderr == "tgsess: archive \(full) holds nothing of user 999; pick another (tgsess list --user 999)\n")
    #expect(notInOwn.status == 1)
    #expect(
      notInOwn.stderr
        == "tgsess: archive \(userArchive) holds nothing of user \(users[1]); pick another (tgsess list --user \(users[1]))\n"
    )
    #expect(noArchive.status == 1)
    #expect(
      noArchive.stderr
        == "tgsess: restore: \(fleet.deployment.backupsDirectory): not found; no archive holds user 999; see tgsess list --user 999\n"
    )
    #expect(targetAndUser.status == 64)
    #expect(targetAndUser.stderr.contains("--target restores a whole deployment; drop --user."))
    #expect(try fleet.tree() == tree)
    #expect(!FileManager.default.fileExists(atPath: fleet.directory.path + "/x"))
  }

  // MARK: - Choosing the archive

  /// An id prefix that several archives share is ambiguous, not "not found": the error says so,
  /// names the first matches (newest first) and how many there are, and the next step; restore,
  /// pin and unpin say the same.
  @Test func anAmbiguousIdPrefixNamesItsMatchesAndTheNextStep() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 4)
    try fleet.tgsessOK(["backup"])
    let ids = try fleet.listedArchives().map(\.id)
    #expect(ids.count == 5)
    let prefix = String(ids[0].prefix(4))
    #expect(ids.allSatisfy { $0.hasPrefix(prefix) })
    let tree = try fleet.tree()

    let restore = try fleet.tgsess(["restore", prefix])
    let pin = try fleet.tgsess(["pin", prefix])
    let unpin = try fleet.tgsess(["unpin", prefix])
    let unknown = try fleet.tgsess(["restore", "1999"])

    let backups = fleet.deployment.backupsDirectory
    let message =
      "\(backups): archive id '\(prefix)' is ambiguous: 5 archives match (\(ids[0]), \(ids[1]), \(ids[2]), …); give more of the id, or see every id with: tgsess list\n"
    #expect(restore.status == 1)
    #expect(restore.stderr == "tgsess: restore: " + message)
    #expect(pin.status == 1)
    #expect(pin.stderr == "tgsess: pin: " + message)
    #expect(unpin.status == 1)
    #expect(unpin.stderr == "tgsess: unpin: " + message)
    #expect(unknown.status == 1)
    #expect(unknown.stderr == "tgsess: restore: \(backups)/…/1999: not found; list archives with: tgsess list\n")
    #expect(try fleet.tree() == tree)
    // A prefix that is unique still finds its archive.
    let unique = try fleet.tgsessJSON(RestoreResult.self, ["restore", String(ids[0].dropLast()), "--dry-run"])
    #expect(unique.archiveID == ids[0])
  }

  /// `restore --at TIME --user N` chooses among the archives that hold user N: an Imported
  /// legacy copy of N (which holds nothing a restore writes) is never the one, even when it is
  /// the only archive of N that old (issue #16: it was picked and the restore failed with
  /// "holds nothing of user N").
  @Test func atForAUserNeverPicksAnImportedLegacyCopy() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 3)
    let user = try fleet.telethonUserIDs(1)[0]
    // A legacy .session.backup from 2025, imported by migrate as an "Imported" archive of 2025.
    let legacy = fleet.sessionPath(user) + ".backup"
    if FileManager.default.fileExists(atPath: legacy) { try FileManager.default.removeItem(atPath: legacy) }
    try FileManager.default.copyItem(atPath: fleet.sessionPath(user), toPath: legacy)
    try FileManager.default.setAttributes(
      [.modificationDate: try #require(ISO8601DateFormatter().date(from: "2025-01-01T00:00:00Z"))], ofItemAtPath: legacy
    )
    #expect(try fleet.tgsessOK(["migrate"]).stdout.contains("as archive"))
    try fleet.tgsessOK(["backup"])
    let own = try fleet.listedArchives(["--kind", "user", "--user", String(user)])
    #expect(own.map(\.reason) == ["Scheduled", "Imported"])
    let tree = try fleet.tree()

    let before = try fleet.tgsess(["restore", "--at", "2025-06-01", "--user", String(user), "--dry-run"])
    let now = try fleet.tgsessJSON(
      RestoreResult.self, ["restore", "--at", iso8601(own[0].createdAt), "--user", String(user), "--dry-run"])

    #expect(before.status == 1)
    #expect(
      before.stderr
        == "tgsess: restore: \(fleet.deployment.backupsDirectory): not found; no archive holds user \(user) at or before 2025-06-01T00:00:00Z; see tgsess list --user \(user)\n"
    )
    #expect(now.archiveID == own[0].id)
    #expect(try fleet.tree() == tree)
  }

  // MARK: - Live-owner guard

  /// What every refusal of the guard says about --force.
  static let forceRisk =
    "--force is the only way past, and it risks the session: a process that holds a replaced file keeps writing into the deleted old file (those writes are lost), and Telegram kills a session used from two places at once (AUTH_KEY_DUPLICATED)"

  @Test func liveRestoreRefusesWhileTheBotHoldsItsLock() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 4)
    let users = try fleet.telethonUserIDs(2)
    let original = try SessionWitness.stored([fleet.sessionPath(users[0])])
    try fleet.tgsessOK(["backup"])
    try Peers.writeNewTelethonSessions(users.map(fleet.sessionPath))
    let botLock = fleet.root + "/.tgsess-bot.lock"
    let tree = try fleet.tree()

    let holder = try BackgroundProcess.holdingLock(botLock)
    let whole = try fleet.tgsess(["restore", "latest"])
    let user = try fleet.tgsess(["restore", "latest", "--user", String(users[0])])
    let treeWhileRefused = try fleet.tree()
    let target = fleet.directory.path + "/drill"
    let drill = try fleet.tgsess(["restore", "latest", "--target", target])
    let treeAfterDrill = try fleet.tree()
    let forced = try fleet.tgsess(["restore", "latest", "--user", String(users[0]), "--force"])
    holder.kill()

    for refused in [whole, user] {
      #expect(refused.status == 1)
      #expect(
        refused.stderr
          == "tgsess: refusing to restore into the live deployment while it is in use: the bot runner holds \(botLock) (another tgsess process); stop the bot, then run again (\(Self.forceRisk))\n"
      )
      #expect(refused.stdout.isEmpty)
    }
    #expect(treeWhileRefused == tree)
    #expect(drill.status == 0, "\(drill.stderr)")
    #expect(!drill.stdout.contains("warning"))
    #expect(treeAfterDrill == tree)
    #expect(forced.status == 0, "\(forced.stderr)")
    #expect(forced.stdout.contains("warning: --force: restoring although the bot runner holds \(botLock)"))
    Self.expectSameSessions(try SessionWitness.loadedByTelethon([fleet.sessionPath(users[0])]), original)
  }

  @Test func liveRestoreRefusesBesideAHotJournal() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 4)
    let user = try fleet.telethonUserIDs(1)[0]
    try fleet.tgsessOK(["backup"])
    try Peers.writeNewTelethonSessions([fleet.sessionPath(user)])
    // A rollback journal with SQLite's magic: a writer has the file open, or died mid-write.
    let journal = fleet.sessionPath(user) + "-journal"
    try Data([0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7] + randomBytes(504)).write(
      to: URL(fileURLWithPath: journal))
    let tree = try fleet.tree()

    let user1 = try fleet.tgsess(["restore", "latest", "--user", String(user)])
    let whole = try fleet.tgsess(["restore", "latest"])

    for refused in [user1, whole] {
      #expect(refused.status == 1)
      #expect(
        refused.stderr
          == "tgsess: refusing to restore into the live deployment while it is in use: a hot journal \(journal) (a writer has the file open or crashed); stop the bot, then run again (\(Self.forceRisk))\n"
      )
    }
    #expect(try fleet.tree() == tree)
  }

  // MARK: - kill -9

  @Test func killedAfterTheFirstFileLeavesEachFileWholeAndTheUndoListed() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 6)
    let dumpsA = try fleet.dumpAll()
    try fleet.tgsessOK(["backup"])
    let archive = try Self.fullArchives(fleet)[0].id
    let users = try fleet.sessionUserIDs()
    try Peers.writeNewTelethonSessions(users.map(fleet.sessionPath))
    try fleet.sqlite("UPDATE copy_configs SET enabled = 0")
    let dumpsB = try fleet.dumpAll()
    let plan = try fleet.tgsessJSON(RestoreResult.self, ["restore", archive, "--dry-run"]).files
    let sessions = plan.filter { $0.path.hasSuffix(".session") }
    #expect(sessions.count == users.count)
    #expect(sessions.allSatisfy { $0.action == .replace })

    let crashed = try fleet.tgsess(["restore", archive], environment: ["TGSESS_CRASH_POINT": "restore.after-file"])

    #expect(crashed.status == SIGKILL, "\(crashed.stdout) \(crashed.stderr)")
    var newCount = 0
    for file in sessions {
      let path = file.path
      let now = try FileSystem.sha256(ofFile: path)
      #expect([file.sha256Before, file.sha256After].contains(now), "\(path) is mixed")
      if now == file.sha256After { newCount += 1 }
    }
    #expect(newCount == 1)
    let dumps = try fleet.dumpAll()
    #expect(dumps == dumpsA || dumps == dumpsB)
    #expect(try fleet.sqlite("PRAGMA integrity_check") == "ok")
    let undo = try fleet.listedArchives().filter { $0.reason == "Before restore" }
    #expect(undo.count == 1)
    #expect(
      Set(try FileManager.default.contentsOfDirectory(atPath: fleet.deployment.sessionsDirectory))
        .isSubset(of: Set(try Self.sessionFiles(fleet).map { ($0 as NSString).lastPathComponent })))

    // Running it again finishes the job and clears the dead run's staging.
    try fleet.tgsessOK(["restore", archive])
    for file in plan where file.path.hasSuffix(".session") {
      #expect(try FileSystem.sha256(ofFile: file.path) == file.sha256After)
    }
    #expect(try fleet.dumpAll() == dumpsA)
    #expect(!(try fleet.tree()).keys.contains { $0.contains(".staging-") })
  }

  @Test func killedAtARandomMomentOfA200UserRestore() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 200, entities: 10)
    let dumpsA = try fleet.dumpAll()
    try fleet.tgsessOK(["backup"])
    let archive = try Self.fullArchives(fleet)[0].id
    // State B: pairs of users swapped files, every tenth lost theirs, the bot changed a table.
    let users = try fleet.sessionUserIDs()
    #expect(users.count == 200)
    for index in stride(from: 0, to: users.count - 1, by: 4) {
      let (a, b) = (fleet.sessionPath(users[index]), fleet.sessionPath(users[index + 1]))
      try FileManager.default.moveItem(atPath: a, toPath: a + ".swap")
      try FileManager.default.moveItem(atPath: b, toPath: a)
      try FileManager.default.moveItem(atPath: a + ".swap", toPath: b)
    }
    for index in stride(from: 2, to: users.count, by: 10) {
      try FileManager.default.removeItem(atPath: fleet.sessionPath(users[index]))
    }
    try fleet.sqlite("UPDATE copy_configs SET enabled = 0")
    let dumpsB = try fleet.dumpAll()
    let plan = try fleet.tgsessJSON(RestoreResult.self, ["restore", archive, "--dry-run"]).files
    #expect(plan.filter { $0.action != .identical }.count >= 120)

    // The kill lands at a random moment of the apply phase, whatever the machine's speed: once a
    // random number of the files to replace have a new inode (rename into place).
    let replaced = plan.filter { $0.action == .replace }.map(\.path)
    func inode(_ path: String) -> UInt64 {
      var info = stat()
      return lstat(path, &info) == 0 ? UInt64(info.st_ino) : 0
    }
    let inodes = replaced.map(inode)
    let killAfter = Int.random(in: 1...(replaced.count / 2))
    let restore = try BackgroundProcess(
      TestEnvironment.productPath("tgsess"), ["restore", archive, "--root", fleet.root])
    var seen = 0
    let deadline = Date().addingTimeInterval(120)
    while restore.isRunning, Date() < deadline {
      seen = zip(replaced, inodes).filter { inode($0.0) != $0.1 }.count
      if seen >= killAfter { break }
      usleep(500)
    }
    restore.kill()
    let moment = "\(seen) of \(replaced.count) files replaced"

    var states: [String: Int] = [:]
    for file in plan {
      let path = file.path
      if path == fleet.databasePath { continue }
      let now = FileSystem.exists(path) ? try FileSystem.sha256(ofFile: path) : nil
      let before = file.sha256Before
      let after: String? = file.sha256After
      #expect(now == before || now == after, "\(path) is neither old nor new after a kill at \(moment)")
      states[now == after ? "new" : "old", default: 0] += 1
    }
    // The kill came in the middle: some files new, some still old.
    #expect(states["new", default: 0] >= killAfter, "killed at \(moment): \(states)")
    #expect(states["old", default: 0] > 0, "killed at \(moment): \(states)")
    let dumps = try fleet.dumpAll()
    #expect(dumps == dumpsA || dumps == dumpsB, "the database is mixed after a kill at \(moment)")

    try fleet.tgsessOK(["restore", archive])
    for file in plan where file.path != fleet.databasePath {
      // A file whose content is the archive's (other bytes) is left alone: "unchanged".
      let expected = file.action == .unchanged ? file.sha256Before : file.sha256After
      #expect(try FileSystem.sha256(ofFile: file.path) == expected)
    }
    #expect(try fleet.dumpAll() == dumpsA, "killed at \(moment): \(states)")
  }
}

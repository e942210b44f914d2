import Foundation
import Jobs
import Logging
import Store
import TestSupport
import Testing

/// `RestoreJob.plan` on real deployments (written by `tgsess-fleet`, backed up by `BackupJob`):
/// the plan is asserted as a value, and computing it changes nothing.
@Suite struct RestorePlanTests {
  static var logger: Logger {
    var logger = Logger(label: "test")
    logger.logLevel = .critical
    return logger
  }

  /// The manifest of an archive, read with the deployment's identity.
  static func manifest(_ path: String, _ deployment: Deployment) throws -> Manifest {
    try ArchiveReader.read(path: path, identities: try KeyStore.loadIdentities(deployment))
  }

  @Test func aUserPlanRestoresTheFileAndTheRowAndChangesNothing() throws {
    let fleet = try TestFleet(users: 4)
    let user = try fleet.telethonUserIDs(1)[0]
    let database = try BotDatabase(path: fleet.databasePath, mode: .readOnly)
    let row = try #require(try database.userSessionsRow(userID: user))
    database.close()
    let backup = try BackupJob.run(fleet.deployment, options: BackupOptions(), logger: Self.logger)
    let archive = try #require(backup.archives.first { $0.kind == .user && $0.userID == user })
    let manifest = try Self.manifest(archive.path, fleet.deployment)
    // The user's file is garbage and the row is gone.
    let garbage = Data(randomBytes(4096))
    try garbage.write(to: URL(fileURLWithPath: fleet.sessionPath(user)))
    try fleet.sqlite("DELETE FROM user_sessions WHERE user_id = \(user)")
    let tree = try fleet.tree()

    let plan = try RestoreJob.plan(
      fleet.deployment, options: RestoreOptions(userID: user), logger: Self.logger)

    // Every file entry, in manifest order: the garbage is replaced, a .session.backup left
    // alone when it is the same.
    var files: [RestorePlan.FileStep] = []
    for entry in manifest.entries where entry.role == .session || entry.role == .sessionBackup {
      let path = fleet.sessionPath(user) + (entry.role == .session ? "" : ".backup")
      let before = try FileSystem.sha256(ofFile: path)
      #expect(entry.role != .session || before == Digest.sha256Hex(garbage))
      files.append(
        RestorePlan.FileStep(
          change: FileChange(
            path: path, action: before == entry.sha256 ? .identical : .replace, sha256Before: before,
            sha256After: entry.sha256),
          entryPath: entry.path, isDatabase: false))
    }
    #expect(files.first?.change.action == .replace)
    #expect(
      plan
        == RestorePlan(
          archiveID: archive.id, archivePath: archive.path,
          signingKeyID: try KeyStore.loadSigningKey(fleet.deployment).keyID, mode: .user, targetRoot: fleet.root,
          userID: user, files: files, userRow: row, databasePath: fleet.databasePath, users: [user]))
    #expect(plan.rows == ["upsert the user_sessions row of user \(user) in \(fleet.databasePath)"])
    #expect(plan.replacesData)
    #expect(try fleet.tree() == tree)
  }

  @Test func aWholePlanFromAFullSnapshotNamesEveryFileAndNoRow() throws {
    let fleet = try TestFleet(users: 5)
    let backup = try BackupJob.run(fleet.deployment, options: BackupOptions(), logger: Self.logger)
    let full = try #require(backup.archives.first { $0.kind == .full })
    let manifest = try Self.manifest(full.path, fleet.deployment)
    let lost = try fleet.sessionUserIDs()[0]
    try FileManager.default.removeItem(atPath: fleet.sessionPath(lost))
    let tree = try fleet.tree()

    let plan = try RestoreJob.plan(fleet.deployment, options: RestoreOptions(), logger: Self.logger)

    #expect(plan.archiveID == full.id)
    #expect(plan.mode == .whole)
    #expect(plan.userID == nil)
    #expect(plan.userRow == nil)
    #expect(plan.rows.isEmpty)
    #expect(plan.users == manifest.entries.filter { $0.role == .session }.compactMap(\.userID))
    #expect(plan.files.map(\.entryPath) == manifest.entries.filter { $0.role != .userRows }.map(\.path))
    #expect(plan.files.map(\.change.sha256After) == manifest.entries.filter { $0.role != .userRows }.map(\.sha256))
    #expect(plan.files.filter(\.isDatabase).map(\.change.path) == [fleet.databasePath])
    let lostStep = try #require(plan.files.first { $0.change.path == fleet.sessionPath(lost) })
    #expect(lostStep.change.action == .create && lostStep.change.sha256Before == nil)
    #expect(try fleet.tree() == tree)
  }

  @Test func aTargetPlanCreatesEverythingAndLeavesNoDirectoryBehind() throws {
    let fleet = try TestFleet(users: 3)
    _ = try BackupJob.run(fleet.deployment, options: BackupOptions(), logger: Self.logger)
    let target = fleet.directory.file("drill")

    let plan = try RestoreJob.plan(fleet.deployment, options: RestoreOptions(target: target), logger: Self.logger)

    #expect(plan.mode == .target)
    #expect(plan.targetRoot == target)
    #expect(!plan.files.isEmpty && plan.files.allSatisfy { $0.change.action == .create })
    #expect(plan.files.allSatisfy { $0.change.path.hasPrefix(target + "/") })
    #expect(!plan.replacesData)
    #expect(!FileManager.default.fileExists(atPath: target))
  }

  /// A user restored from a full snapshot gets a per-user "Before restore" archive, newer than
  /// the snapshot. The next `restore latest --user` must pick the snapshot again, never undo the
  /// first restore (it did when the user had no regular per-user archive).
  @Test func latestForAUserNeverPicksTheUndoOfAnEarlierRestore() throws {
    let fleet = try TestFleet(users: 3)
    let user = try fleet.telethonUserIDs(1)[0]
    let backup = try BackupJob.run(fleet.deployment, options: BackupOptions(), logger: Self.logger)
    let full = try #require(backup.archives.first { $0.kind == .full })
    // Only the full snapshot holds the user.
    let repository = ArchiveRepository(backupsDirectory: fleet.deployment.backupsDirectory)
    try FileManager.default.removeItem(atPath: repository.userDirectory(user))
    try ArchiveClock.waitForNextSecond(after: Date())
    try Peers.writeNewTelethonSessions([fleet.sessionPath(user)])

    let first = try RestoreJob.run(fleet.deployment, options: RestoreOptions(userID: user), logger: Self.logger)
    #expect(first.archiveID == full.id)
    let undo = try #require(first.undo)
    #expect(try repository.list(kind: .user, userID: user).map(\.id) == [undo])

    let again = try RestoreJob.plan(fleet.deployment, options: RestoreOptions(userID: user), logger: Self.logger)
    #expect(again.archiveID == full.id)
    // By id, the undo is still what the operator asked for.
    let byID = try RestoreJob.plan(
      fleet.deployment, options: RestoreOptions(selector: undo), logger: Self.logger)
    #expect(byID.archiveID == undo && byID.mode == .user && byID.userID == user)
  }

  /// Drill and restore mean the same archive by "latest": after a whole restore (whose undo is
  /// a newer full "Before restore" archive), the drill still drills the regular snapshot.
  @Test func drillLatestIsRestoreLatest() throws {
    let fleet = try TestFleet(users: 3)
    let backup = try BackupJob.run(fleet.deployment, options: BackupOptions(), logger: Self.logger)
    let full = try #require(backup.archives.first { $0.kind == .full })
    try ArchiveClock.waitForNextSecond(after: Date())
    try Peers.writeNewTelethonSessions([fleet.sessionPath(try fleet.telethonUserIDs(1)[0])])
    let restore = try RestoreJob.run(fleet.deployment, options: RestoreOptions(), logger: Self.logger)
    let undo = try #require(restore.undo)
    let newest = try ArchiveRepository(backupsDirectory: fleet.deployment.backupsDirectory).list(kind: .full)
    #expect(newest.first?.id == undo && newest.first?.reason == BackupReason.beforeRestore)

    let drill = try DrillJob.run(fleet.deployment, options: DrillOptions(), logger: Self.logger)

    #expect(drill.archiveID == full.id)
    #expect(try RestoreJob.plan(fleet.deployment, options: RestoreOptions(), logger: Self.logger).archiveID == full.id)
    #expect(drill.ok, "\(drill.problems) \(drill.usersFailed)")
  }
}

/// Waits for the wall clock to pass into the next second (archive times have whole seconds).
enum ArchiveClock {
  static func waitForNextSecond(after date: Date) throws {
    let next = date.timeIntervalSince1970.rounded(.down) + 1
    while Date().timeIntervalSince1970 < next { usleep(20_000) }
  }
}

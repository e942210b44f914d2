import Foundation
import Jobs
import Store
import TestSupport
import Testing

/// Running a command again after a run of it died (kill -9, or a power cut) leaves nothing that
/// run left behind. Backup and prune always cleaned up; recover, migrate and pin write archives
/// or pins only on the side, and their reruns left the dead run's temporaries, staging
/// directory and unpublished records (found by the power-loss torture).
@Suite struct InterruptedRunLeftoversTests {
  /// A pid no process has: a child that has exited.
  static func deadPID() throws -> Int32 {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/true")
    try process.run()
    process.waitUntilExit()
    return process.processIdentifier
  }

  /// What a post-recovery backup, or an import, cut off between publishing a per-user archive and
  /// renaming its record leaves, plus a staging directory and an archive temporary of that run.
  /// - Returns: the record path that must be back, and the paths that must be gone.
  static func leaveWhatADeadRunLeaves(_ fleet: TestFleet) throws -> (record: String, gone: [String]) {
    let pid = try deadPID()
    let archive = try #require(try fleet.listedArchives(["--kind", "user"]).first)
    let directory = (archive.path as NSString).deletingLastPathComponent
    let record = directory + "/" + archive.id + ArchiveName.recordSuffix
    let hiddenRecord = directory + "/." + archive.id + ArchiveName.recordSuffix + ".tgsess-tmp-\(pid)-abc"
    try FileManager.default.moveItem(atPath: record, toPath: hiddenRecord)
    let temporary = directory + "/.20260101T000000Z-u1-dead00.tar.zst.age.tgsess-tmp-\(pid)-def"
    try FileSystem.writeAtomically(Data("half an archive".utf8), to: temporary)
    let staging = fleet.backupsDirectory + "/.staging-\(pid)-ghi"
    try FileSystem.makeDirectory(staging + "/data")
    try FileSystem.writeAtomically(Data("a snapshot".utf8), to: staging + "/snapshots.pack")
    // The caches beside the archive directories, cut off before their rename (power-loss torture).
    let caches = [".inspections", ".signatures"].map { fleet.backupsDirectory + "/.\($0).tgsess-tmp-\(pid)-jkl" }
    for cache in caches { try FileSystem.writeAtomically(Data("half a cache".utf8), to: cache) }
    return (record, [hiddenRecord, temporary, staging] + caches)
  }

  static func expectCleaned(
    _ fleet: TestFleet, _ left: (record: String, gone: [String]), sourceLocation: SourceLocation = #_sourceLocation
  ) {
    #expect(FileSystem.exists(left.record), "the published archive's record was not rolled forward")
    for path in left.gone {
      #expect(!FileSystem.exists(path), "left behind: \(path)", sourceLocation: sourceLocation)
    }
  }

  @Test func recoverRemovesWhatADeadRunLeft() throws {
    let fleet = try TestFleet(users: 2, initialized: true, backedUp: true)
    let left = try Self.leaveWhatADeadRunLeaves(fleet)
    try fleet.tgsessOK(["recover", "--all"])
    Self.expectCleaned(fleet, left)
  }

  @Test func backupRemovesWhatADeadRunLeft() throws {
    let fleet = try TestFleet(users: 2, initialized: true, backedUp: true)
    let left = try Self.leaveWhatADeadRunLeaves(fleet)
    try fleet.tgsessOK(["backup"])
    Self.expectCleaned(fleet, left)
  }

  @Test func wholeRestoreRemovesWhatADeadRunLeft() throws {
    let fleet = try TestFleet(users: 2, initialized: true, backedUp: true)
    let left = try Self.leaveWhatADeadRunLeaves(fleet)
    try fleet.tgsessOK(["restore", "latest", "--force"])
    Self.expectCleaned(fleet, left)
  }

  @Test func migrateRemovesWhatADeadRunLeft() throws {
    let fleet = try TestFleet(users: 2, initialized: true, backedUp: true)
    let left = try Self.leaveWhatADeadRunLeaves(fleet)
    try fleet.tgsessOK(["migrate"])
    Self.expectCleaned(fleet, left)
  }

  @Test func pinRemovesTheTemporaryOfADeadPin() throws {
    let fleet = try TestFleet(users: 1, initialized: true, backedUp: true)
    let archive = try #require(try fleet.listedArchives(["--kind", "full"]).first)
    let directory = (archive.path as NSString).deletingLastPathComponent
    let temporary = directory + "/." + archive.id + ".pin.tgsess-tmp-\(try Self.deadPID())-abc"
    try FileSystem.writeAtomically(Data("pinned".utf8), to: temporary)
    try fleet.tgsessOK(["pin", archive.id])
    #expect(!FileSystem.exists(temporary), "left behind: \(temporary)")
    #expect(FileSystem.exists(directory + "/" + archive.id + ".pin"))
  }
}

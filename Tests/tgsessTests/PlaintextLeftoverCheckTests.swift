import Foundation
import Jobs
import Store
import TestSupport
import Testing

/// Issue #16's leftover: plaintext copies that earlier versions left in backups/ (restore's raw
/// `before-restore/<time>/` directories, migrate's `pre-migrate/` database copies) are named by
/// `tgsess check`, with what they hold and the next step, until they are gone.
@Suite struct PlaintextLeftoverCheckTests {
  @Test func aRawBeforeRestoreDirectoryIsAWarningNamingItAndTheNextStep() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 2, backedUp: true)
    #expect(try fleet.check().status == 0)
    // What a restore of an earlier version left: raw copies named after their path.
    let directory = fleet.backupsDirectory + "/before-restore/20261201T101500Z"
    try FileSystem.makeDirectory(directory)
    let user = fleet.userIDs[0]
    try FileManager.default.copyItem(
      atPath: fleet.sessionPath(user), toPath: directory + "/sessions__user_\(user).session")

    let run = try fleet.check()
    #expect(run.status == 1, "\(run.report)")
    #expect(run.state == "warning")
    let found = run.findings("backup.plaintext")
    #expect(found.count == 1, "\(run.report)")
    let message = try #require(found.first?.message)
    for part in [
      "\(directory) holds plaintext copies of live files (session files with their auth keys",
      "once it is not needed, remove it: rm -r \(directory)", "docs/RUNBOOK.md §1",
    ] {
      #expect(message.contains(part), "'\(part)' not in: \(message)")
    }
    #expect(run.summary.contains(directory), "the Nagios line names it: \(run.summary)")
    #expect(
      try String(contentsOfFile: TestEnvironment.packageRoot + "/docs/RUNBOOK.md", encoding: .utf8).contains(
        "backups/before-restore/"))

    try FileManager.default.removeItem(atPath: fleet.backupsDirectory + "/before-restore")
    #expect(try fleet.check().status == 0)
  }

  @Test func aPreMigratePlaintextDatabaseCopyIsAWarningPointingAtMigrate() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 2, backedUp: true)
    let directory = fleet.backupsDirectory + "/pre-migrate"
    try FileSystem.makeDirectory(directory)
    let copy = directory + "/telegram_bot.db.pre-migrate-20261201T101500Z"
    try FileManager.default.copyItem(atPath: fleet.databasePath, toPath: copy)

    let run = try fleet.check()
    #expect(run.status == 1, "\(run.report)")
    let found = run.findings("backup.plaintext")
    #expect(found.count == 1, "\(run.report)")
    let message = try #require(found.first?.message)
    #expect(message.contains("1 plaintext copy(ies) of the database"), "\(message)")
    #expect(message.contains(copy), "\(message)")
    #expect(message.contains("run: tgsess migrate"), "\(message)")
  }
}

import Foundation
import Jobs
import Store
import TestSupport
import Testing

/// "latest" means the newest regular backup: a restore's own undo archive is never what the next
/// `restore latest` picks.
@Suite struct RestoreLatestTests {
  @Test func latestSkipsTheUndoArchiveOfAnEarlierRestore() throws {
    let fleet = try TestFleet(users: 3)
    let user = try #require(try fleet.telethonUserIDs(1).first)
    let backup = try fleet.tgsessJSON(BackupResult.self, ["backup", "--user", String(user), "--reason", "Manual"])
    let backupID = try #require(backup.archives.first?.id)
    // The live file is valid, so the undo is a real "Before restore" archive, newer than the backup.
    let restore = try fleet.tgsessJSON(RestoreResult.self, ["restore", "latest", "--user", String(user)])
    #expect(restore.archiveID == backupID)
    let undo = try #require(restore.undo)
    // The undo exists and is newer, but `latest` still means the regular backup.
    let reasons = try fleet.listedArchives(["--user", String(user)])
    #expect(!undo.hasPrefix("/"))
    #expect(reasons.contains { $0.id == undo && $0.reason == "Before restore" })
    let again = try fleet.tgsessJSON(RestoreResult.self, ["restore", "latest", "--user", String(user), "--dry-run"])
    #expect(again.archiveID == backupID)
  }

  /// An "Imported" archive (a legacy `.session.backup` that migrate found) holds nothing a
  /// restore writes; when it is the newest, `latest` must still mean the regular backup (a lock
  /// storm in the torture suite caught `restore latest --user` refusing with "holds nothing").
  @Test func latestSkipsAnImportedLegacyCopy() throws {
    let fleet = try TestFleet(users: 3)
    let user = try #require(try fleet.telethonUserIDs(1).first)
    let backup = try fleet.tgsessJSON(BackupResult.self, ["backup", "--user", String(user), "--reason", "Manual"])
    let backupID = try #require(backup.archives.first?.id)
    // A legacy copy with another key appears beside the file; migrate imports it, newest of all
    // (a second later, so that it sorts first by time, not by its random id suffix).
    try BackupCLITests.waitForNextSecond(after: Date())
    let legacy = fleet.sessionPath(user) + ".backup"
    unlink(legacy)
    try FileManager.default.copyItem(atPath: fleet.sessionPath(user), toPath: legacy)
    _ = try runProcess("/usr/bin/sqlite3", [legacy, "UPDATE sessions SET auth_key = randomblob(256)"])
    let migrate = try fleet.tgsessOK(["migrate"])
    #expect(migrate.stdout.contains("as archive"), "\(migrate.stdout)")
    let listed = try fleet.listedArchives(["--user", String(user), "--kind", "user"])
    let newest = try #require(listed.first)
    #expect(newest.reason == "Imported")
    let restore = try fleet.tgsessJSON(RestoreResult.self, ["restore", "latest", "--user", String(user), "--dry-run"])
    #expect(restore.archiveID == backupID)
  }

  @Test func fernetKeyFileFromTheEnvironment() throws {
    let fleet = try TestFleet(users: 2)
    let elsewhere = fleet.directory.file("credential-fernet-keys")
    try FileManager.default.moveItem(atPath: fleet.deployment.fernetKeysPath, toPath: elsewhere)
    let without = try fleet.tgsessJSON(StatusResult.self, ["status"])
    #expect(without.keys.fernetKeys == 0)
    let with = try fleet.tgsessJSON(
      StatusResult.self, ["status"], environment: ["TGSESS_FERNET_KEYS_FILE": elsewhere])
    #expect(with.keys.fernetKeys == 1)
  }
}

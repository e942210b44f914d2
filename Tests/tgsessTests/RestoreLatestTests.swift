import Foundation
import Store
import TestSupport
import Testing

/// "latest" means the newest regular backup: a restore's own undo archive is never what the next
/// `restore latest` picks.
@Suite struct RestoreLatestTests {
  static func json(_ result: ProcessResult) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: result.stdoutData) as? [String: Any])
  }

  @Test func latestSkipsTheUndoArchiveOfAnEarlierRestore() throws {
    let fleet = try FleetFixture(users: 3)
    let user = try #require(try fleet.telethonUserIDs(1).first)
    let backup = try Self.json(
      try fleet.tgsessOK(["backup", "--user", String(user), "--reason", "Manual", "--json"]))
    let backupID = try #require((backup["archives"] as? [[String: Any]])?.first?["id"] as? String)
    // The live file is valid, so the undo is a real "Before restore" archive, newer than the backup.
    let restore = try Self.json(try fleet.tgsessOK(["restore", "latest", "--user", String(user), "--json"]))
    #expect(restore["archiveID"] as? String == backupID)
    let undo = try #require(restore["undo"] as? String)
    // The undo exists and is newer, but `latest` still means the regular backup.
    let listed = try fleet.tgsessOK(["list", "--user", String(user), "--json"])
    let reasons = try #require(try JSONSerialization.jsonObject(with: listed.stdoutData) as? [[String: Any]])
    #expect(!undo.hasPrefix("/"))
    #expect(reasons.contains { $0["id"] as? String == undo && $0["reason"] as? String == "Before restore" })
    let again = try Self.json(
      try fleet.tgsessOK(["restore", "latest", "--user", String(user), "--dry-run", "--json"]))
    #expect(again["archiveID"] as? String == backupID)
  }

  /// An "Imported" archive (a legacy `.session.backup` that migrate found) holds nothing a
  /// restore writes; when it is the newest, `latest` must still mean the regular backup (a lock
  /// storm in the torture suite caught `restore latest --user` refusing with "holds nothing").
  @Test func latestSkipsAnImportedLegacyCopy() throws {
    let fleet = try FleetFixture(users: 3)
    let user = try #require(try fleet.telethonUserIDs(1).first)
    let backup = try Self.json(
      try fleet.tgsessOK(["backup", "--user", String(user), "--reason", "Manual", "--json"]))
    let backupID = try #require((backup["archives"] as? [[String: Any]])?.first?["id"] as? String)
    // A legacy copy with another key appears beside the file; migrate imports it, newest of all
    // (a second later, so that it sorts first by time, not by its random id suffix).
    try BackupCLITests.waitForNextSecond(after: Date())
    let legacy = fleet.sessionPath(user) + ".backup"
    unlink(legacy)
    try FileManager.default.copyItem(atPath: fleet.sessionPath(user), toPath: legacy)
    _ = try runProcess("/usr/bin/sqlite3", [legacy, "UPDATE sessions SET auth_key = randomblob(256)"])
    let migrate = try fleet.tgsessOK(["migrate"])
    #expect(migrate.stdout.contains("as archive"), "\(migrate.stdout)")
    let listed = try JSONSerialization.jsonObject(
      with: try fleet.tgsessOK(["list", "--user", String(user), "--kind", "user", "--json"]).stdoutData)
    let newest = try #require((listed as? [[String: Any]])?.first)
    #expect(newest["reason"] as? String == "Imported")
    let restore = try Self.json(
      try fleet.tgsessOK(["restore", "latest", "--user", String(user), "--dry-run", "--json"]))
    #expect(restore["archiveID"] as? String == backupID)
  }

  @Test func fernetKeyFileFromTheEnvironment() throws {
    let fleet = try FleetFixture(users: 2)
    let elsewhere = fleet.directory.file("credential-fernet-keys")
    try FileManager.default.moveItem(atPath: fleet.deployment.fernetKeysPath, toPath: elsewhere)
    let without = try Self.json(try fleet.tgsessOK(["status", "--json"]))
    #expect((without["keys"] as? [String: Any])?["fernetKeys"] as? Int == 0)
    let with = try Self.json(
      try fleet.tgsessOK(["status", "--json"], environment: ["TGSESS_FERNET_KEYS_FILE": elsewhere]))
    #expect((with["keys"] as? [String: Any])?["fernetKeys"] as? Int == 1)
  }
}

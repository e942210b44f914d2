import Foundation
import Store
import TestSupport
import Testing

@Suite struct BotDatabaseTests {
  static let users: [(Int64, String, Int, String)] = [
    (111, "1" + String(repeating: "A", count: 351) + "=", 12345, "0123456789abcdef0123456789abcdef"),
    (222, "1" + String(repeating: "B", count: 351) + "=", 12345, "fedcba9876543210fedcba9876543210"),
  ]

  @Test func legacyDatabaseMigratesAndItsOtherTableIsUntouched() throws {
    let fixture = try TestFleet()
    try fixture.makeLegacyDatabase(users: Self.users)
    let before = try fixture.dump("copy_configs")
    let database = try BotDatabase(path: fixture.databasePath, mode: .readWrite)
    let status = try database.schemaStatus()
    #expect(status.isLegacy)
    #expect(status.applied.isEmpty)
    #expect(status.pending == BotSchema.migrationIdentifiers)
    try database.migrate()
    let after = try database.schemaStatus()
    #expect(after.isCurrent)
    #expect(after.version == BotSchema.currentVersion)
    database.close()
    #expect(try fixture.dump("copy_configs") == before)
    #expect(try fixture.sqlite("SELECT count(*) FROM user_sessions") == "2")
    #expect(
      try fixture.sqlite("SELECT status || '/' || health FROM user_sessions WHERE user_id = 111") == "active/unknown")
    #expect(
      try fixture.sqlite("SELECT value FROM tgsess_state WHERE key = 'schema_version'") == "\(BotSchema.currentVersion)"
    )
    #expect(
      try fixture.sqlite("SELECT count(*) FROM sqlite_master WHERE name = 'session_backups_user_created'") == "1")
  }

  @Test func migratingACurrentDatabaseChangesNothing() throws {
    let fixture = try TestFleet()
    let database = try BotDatabase(path: fixture.databasePath, mode: .create)
    try database.migrate()
    database.close()
    let before = try fixture.sqlite(".sha3sum")
    let again = try BotDatabase(path: fixture.databasePath, mode: .readWrite)
    #expect(try again.schemaStatus().isCurrent)
    again.close()
    #expect(try fixture.sqlite(".sha3sum") == before)
  }

  @Test func databaseFromANewerTgsessIsRefusedUntouched() throws {
    let fixture = try TestFleet()
    let database = try BotDatabase(path: fixture.databasePath, mode: .create)
    try database.migrate()
    database.close()
    _ = try fixture.sqlite("INSERT INTO grdb_migrations VALUES ('v99-from-the-future')")
    let before = try Data(contentsOf: URL(fileURLWithPath: fixture.databasePath))
    let reopened = try BotDatabase(path: fixture.databasePath, mode: .readWrite)
    #expect {
      try reopened.migrate()
    } throws: { error in
      (error as? StoreError)?.errorDescription
        == "\(fixture.databasePath): made by a newer tgsess (unknown migrations: v99-from-the-future); upgrade tgsess; it never downgrades a database"
    }
    reopened.close()
    #expect(try Data(contentsOf: URL(fileURLWithPath: fixture.databasePath)) == before)
  }

  @Test func corruptDatabaseIsRefusedWithPathAndNextStep() throws {
    let fixture = try TestFleet()
    try FileManager.default.createDirectory(atPath: fixture.root + "/data", withIntermediateDirectories: true)
    let garbage = Data((0..<8192).map { UInt8(truncatingIfNeeded: $0 &* 31) })
    try garbage.write(to: URL(fileURLWithPath: fixture.databasePath))
    #expect {
      try BotDatabase(path: fixture.databasePath, mode: .readWrite)
    } throws: { error in
      (error as? StoreError)?.errorDescription
        == "\(fixture.databasePath): not an SQLite database, or corrupted (open); restore it from a backup: tgsess restore latest"
    }
    #expect(try Data(contentsOf: URL(fileURLWithPath: fixture.databasePath)) == garbage)
  }

  @Test func missingDatabaseIsAnErrorUnlessCreating() throws {
    let fixture = try TestFleet()
    #expect {
      try BotDatabase(path: fixture.databasePath, mode: .readOnly)
    } throws: { error in
      (error as? StoreError)?.errorDescription
        == "\(fixture.databasePath): not found; run tgsess migrate to create it, or pass the right --root/--config"
    }
    #expect(!FileSystem.exists(fixture.databasePath))
  }

  @Test func onlineBackupIsAConsistentPrivateCopy() throws {
    let fixture = try TestFleet()
    try fixture.makeLegacyDatabase(users: Self.users)
    let database = try BotDatabase(path: fixture.databasePath, mode: .readOnly)
    let copy = fixture.root + "/backups/copy.db"
    try database.backup(to: copy)
    database.close()
    #expect(try FileSystem.mode(of: copy) == 0o600)
    let check = try runProcess(
      "/usr/bin/sqlite3", [copy, "PRAGMA integrity_check; SELECT count(*) FROM user_sessions;"])
    #expect(check.stdout == "ok\n2\n")
  }
}

/// `userRowsJSON` writes its JSON by hand (JSONSerialization was most of a per-user backup's
/// time); whatever a row holds, the text must parse back to exactly the rows.
@Suite struct UserRowsJSONTests {
  @Test func everyKindOfValueRoundTripsThroughJSONSerialization() throws {
    let fixture = try TestFleet()
    try fixture.makeLegacyDatabase(users: BotDatabaseTests.users)
    let database = try BotDatabase(path: fixture.databasePath, mode: .readWrite)
    defer { database.close() }
    try database.migrate()
    let awkward = "quote \" backslash \\ slash / newline \n tab \t bell \u{07} nul-free é 🗝"
    try fixture.sqlite(
      """
      UPDATE user_sessions SET api_hash = '\(awkward.replacingOccurrences(of: "'", with: "''"))' WHERE user_id = 111;
      INSERT INTO session_backups (user_id, session_string, backup_reason, created_at)
        VALUES (111, x'00ff10', 'Manual', '2026-11-25 08:00:00');
      INSERT INTO session_backups (user_id, session_string, backup_reason, created_at)
        VALUES (111, 'plain', 'Before "login"', '2026-11-25 09:00:00');
      """)
    let data = try #require(try database.userRowsJSON(userID: 111))
    let document = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    #expect(document["user_id"] as? Int == 111)
    let row = try #require(document["user_sessions"] as? [String: Any])
    #expect(row["api_hash"] as? String == awkward)
    #expect(row["user_id"] as? Int == 111)
    let all = try #require(document["session_backups"] as? [[String: Any]])
    #expect(all.count == Int(try fixture.sqlite("SELECT count(*) FROM session_backups WHERE user_id = 111")))
    let backups = Array(all.suffix(2))
    #expect(
      (backups[0]["session_string"] as? [String: Any])?["base64"] as? String
        == Data([0, 0xff, 0x10]).base64EncodedString())
    #expect(backups[1]["backup_reason"] as? String == "Before \"login\"")
    #expect(backups.allSatisfy { $0["user_id"] as? Int == 111 })
    #expect(try database.userRowsJSON(userID: 999_999) == nil)
  }
}

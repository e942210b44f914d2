import Foundation
import Store
import TestSupport
import Testing

/// After `tgsess migrate` encrypted a database's secrets, its secret columns hold Fernet tokens
/// only: a value that is not a token is a damaged one and is never used as a session string.
/// Before that, plaintext is what the seed's bot wrote and is used as it is.
@Suite struct SecretColumnTests {
  static let users: [(Int64, String, Int, String)] = [
    (1001, "1BVtsOKABu" + String(repeating: "Q", count: 343), 20001, String(repeating: "a", count: 32)),
    (1002, "1BVtsOKABu" + String(repeating: "R", count: 343), 20002, String(repeating: "b", count: 32)),
  ]

  /// A legacy database, and a Fernet with a fresh key.
  static func legacy() throws -> (TestFleet, Fernet) {
    let fixture = try TestFleet()
    try fixture.makeLegacyDatabase(users: users, backupsPerUser: 1)
    return (fixture, try Fernet(keys: [FernetKey.generate()]))
  }

  /// What `tgsess migrate` does to the database: the schema, then the secrets.
  static func migrate(_ fixture: TestFleet, _ fernet: Fernet) throws {
    let database = try BotDatabase(path: fixture.databasePath, mode: .readWrite)
    defer { database.close() }
    try database.migrate()
    _ = try database.encryptSecrets(fernet: fernet, rotate: false)
  }

  static func reveal(_ fixture: TestFleet, user: Int64, fernet: Fernet) throws -> String {
    let database = try BotDatabase(path: fixture.databasePath, mode: .readOnly)
    defer { database.close() }
    let stored = try #require(try database.storedSession(userID: user)?.sessionString)
    return try BotDatabase.reveal(stored, fernet: fernet, object: "user \(user)'s session string")
  }

  @Test func beforeMigrationPlaintextIsTheSecret() throws {
    let (fixture, fernet) = try Self.legacy()
    let database = try BotDatabase(path: fixture.databasePath, mode: .readWrite)
    #expect(try !database.areSecretsEncrypted())
    database.close()
    #expect(try Self.reveal(fixture, user: 1001, fernet: fernet) == Self.users[0].1)
    // Schema migrated but secrets not yet encrypted (a crash between migrate's two steps): the
    // plaintext is still legitimate.
    let again = try BotDatabase(path: fixture.databasePath, mode: .readWrite)
    try again.migrate()
    #expect(try !again.areSecretsEncrypted())
    again.close()
    #expect(try Self.reveal(fixture, user: 1001, fernet: fernet) == Self.users[0].1)
  }

  @Test func afterMigrationADamagedTokenIsRefusedNamingTheRow() throws {
    let (fixture, fernet) = try Self.legacy()
    try Self.migrate(fixture, fernet)
    #expect(try Self.reveal(fixture, user: 1001, fernet: fernet) == Self.users[0].1)
    // One character lost, as a bad copy or a truncated write leaves it.
    let token = try fixture.sqlite("SELECT session_string FROM user_sessions WHERE user_id = 1001")
    let damaged = String(token.dropLast(1))
    _ = try fixture.sqlite("UPDATE user_sessions SET session_string = '\(damaged)' WHERE user_id = 1001")
    let error = #expect(throws: StoreError.self) { _ = try Self.reveal(fixture, user: 1001, fernet: fernet) }
    let text = error?.errorDescription ?? ""
    #expect(
      text
        == "user_sessions.session_string of user 1001: holds a value that is not a Fernet token (damaged or truncated?), though tgsess migrate encrypted this database's secrets; it is not used; rebuild it from the session file or a backup: tgsess recover --user 1001"
    )
    #expect(!text.contains(damaged.prefix(20)) && !text.contains(Self.users[0].1.prefix(12)))
    // Plaintext written into a migrated database is refused the same way.
    _ = try fixture.sqlite("UPDATE user_sessions SET session_string = '\(Self.users[1].1)' WHERE user_id = 1002")
    #expect(throws: StoreError.self) { _ = try Self.reveal(fixture, user: 1002, fernet: fernet) }
  }

  @Test func aDamagedHistoryRowIsRefusedNamingTheRow() throws {
    let (fixture, fernet) = try Self.legacy()
    try Self.migrate(fixture, fernet)
    let row = try fixture.sqlite("SELECT id FROM session_backups WHERE user_id = 1002")
    _ = try fixture.sqlite(
      "UPDATE session_backups SET session_string = substr(session_string, 1, length(session_string) - 2) WHERE id = \(row)"
    )
    let database = try BotDatabase(path: fixture.databasePath, mode: .readOnly)
    defer { database.close() }
    let history = try database.backupSessionStrings(userID: 1002)
    let error = #expect(throws: StoreError.self) {
      _ = try BotDatabase.reveal(history[0].string, fernet: fernet, object: "session_backups row \(row)")
    }
    #expect(
      error?.errorDescription?.hasPrefix(
        "session_backups.session_string row \(row) (user 1002): holds a value that is not a Fernet token") == true)
    // check reads the same rows the same way.
    let checked = try database.usersForCheck().first { $0.userID == 1001 }?.sessionString
    #expect(checked?.origin?.isTokenRequired == true)
  }

  /// migrate does not encrypt a damaged token as if it were plaintext (that would hide the
  /// damage behind a valid token of garbage); it counts it as undecryptable and leaves it.
  @Test func migrateLeavesDamagedTokensAlone() throws {
    let (fixture, fernet) = try Self.legacy()
    try Self.migrate(fixture, fernet)
    _ = try fixture.sqlite(
      "UPDATE user_sessions SET session_string = substr(session_string, 2) || 'x' WHERE user_id = 1001")
    _ = try fixture.sqlite(
      "UPDATE user_sessions SET session_string = substr(session_string, 1, 200) WHERE user_id = 1002")
    let damaged = try fixture.sqlite("SELECT session_string FROM user_sessions WHERE user_id = 1002")
    #expect(damaged.hasPrefix("gAAAAA"))
    let database = try BotDatabase(path: fixture.databasePath, mode: .readWrite)
    defer { database.close() }
    let census = try database.secretCensus(fernet: fernet)
    // 1001's value no longer starts like a token: it is plaintext to migrate, and encrypted.
    #expect(census.plaintext == 1 && census.undecryptable == 1)
    let rewrite = try database.encryptSecrets(fernet: fernet, rotate: false)
    #expect(rewrite.encrypted == 1)
    #expect(try fixture.sqlite("SELECT session_string FROM user_sessions WHERE user_id = 1002") == damaged)
  }

  /// A database a tgsess before this change migrated has no record of it: the next migrate
  /// records it when no plaintext is left, and not while some is.
  @Test func theStateIsRecordedForDatabasesMigratedBefore() throws {
    let (fixture, fernet) = try Self.legacy()
    try Self.migrate(fixture, fernet)
    _ = try fixture.sqlite("DELETE FROM tgsess_state WHERE key = 'secrets_encrypted'")
    let database = try BotDatabase(path: fixture.databasePath, mode: .readWrite)
    defer { database.close() }
    #expect(try !database.areSecretsEncrypted())
    _ = try fixture.sqlite("UPDATE user_sessions SET api_hash = 'plain' WHERE user_id = 1001")
    #expect(try !database.recordSecretsEncrypted())
    #expect(try !database.areSecretsEncrypted())
    _ = try database.encryptSecrets(fernet: fernet, rotate: false)
    #expect(try database.areSecretsEncrypted())
    _ = try fixture.sqlite("DELETE FROM tgsess_state WHERE key = 'secrets_encrypted'")
    #expect(try database.recordSecretsEncrypted())
    #expect(try database.areSecretsEncrypted())
  }
}

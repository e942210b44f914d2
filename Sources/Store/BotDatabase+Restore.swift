import Foundation
import GRDB

extension BotDatabase {
  /// Replaces the whole database with the snapshot at `snapshotPath` through SQLite's online
  /// backup API, in one transaction on this (live) file: open readers see either the old or
  /// the new content, and a crash leaves the old.
  /// - Throws: `StoreError.database` naming the live file.
  public func replaceContents(withSnapshotAt snapshotPath: String) throws {
    var configuration = Configuration()
    configuration.readonly = true
    do {
      let source = try DatabaseQueue(path: snapshotPath, configuration: configuration)
      defer { try? source.close() }
      try source.backup(to: queue)
    } catch {
      throw BotDatabase.describe(error, path: path, doing: "restore from \(snapshotPath)")
    }
  }

  /// A user's stored credentials (secrets stay wrapped).
  public struct StoredSession: Sendable {
    public var userID: Int64
    public var sessionString: SecretText?
    public var apiID: Int64?
    public var apiHash: SecretText?
  }

  /// The `user_sessions` row of `userID`, or nil.
  /// - Throws: `StoreError.database`.
  public func storedSession(userID: Int64) throws -> StoredSession? {
    try read("read user \(userID)") { db in
      guard try db.tableExists("user_sessions") else { return nil }
      guard
        let row = try Row.fetchOne(
          db, sql: "SELECT user_id, session_string, api_id, api_hash FROM user_sessions WHERE user_id = ?",
          arguments: [userID])
      else { return nil }
      let isTokenRequired = try Self.areSecretsEncrypted(db)
      func origin(_ column: String) -> SecretOrigin {
        SecretOrigin(table: "user_sessions", column: column, userID: userID, isTokenRequired: isTokenRequired)
      }
      return StoredSession(
        userID: userID, sessionString: Self.secret(row["session_string"], origin: origin("session_string")),
        apiID: row["api_id"], apiHash: Self.secret(row["api_hash"], origin: origin("api_hash")))
    }
  }

  /// The session strings of a user's `session_backups` rows, newest first.
  /// - Throws: `StoreError.database`.
  public func backupSessionStrings(userID: Int64) throws -> [(id: Int64, createdAt: String?, string: SecretText)] {
    try read("read session_backups of user \(userID)") { db in
      guard try db.tableExists("session_backups") else { return [] }
      let isTokenRequired = try Self.areSecretsEncrypted(db)
      return try Row.fetchAll(
        db,
        sql: """
          SELECT id, created_at, session_string FROM session_backups
          WHERE user_id = ? AND session_string IS NOT NULL AND session_string != ''
          ORDER BY created_at DESC, id DESC
          """, arguments: [userID]
      ).map { row in
        let origin = SecretOrigin(
          table: "session_backups", column: "session_string", userID: userID, rowID: row["id"],
          isTokenRequired: isTokenRequired)
        return (row["id"], row["created_at"], SecretText(row["session_string"], origin: origin))
      }
    }
  }

  /// Stores a (new) session string for `userID`, encrypted with `fernet`, creating the row if
  /// needed; `updated_at` is set.
  /// - Throws: `StoreError.database`.
  public func storeSessionString(userID: Int64, plaintext: String, fernet: Fernet) throws {
    let token = try fernet.encrypt(Array(plaintext.utf8))
    try write("store the session string of user \(userID)") { db in
      try db.execute(
        sql: """
          INSERT INTO user_sessions (user_id, session_string, created_at, updated_at) VALUES (?, ?, ?, ?)
          ON CONFLICT(user_id) DO UPDATE SET session_string = excluded.session_string, updated_at = excluded.updated_at
          """, arguments: [userID, token, Timestamp.now(), Timestamp.now()])
    }
  }

  /// Records the outcome of a check or recovery for `userID` (never a secret in `error`).
  /// - Throws: `StoreError.database`.
  public func recordHealth(userID: Int64, health: HealthState, error: String?, status: UserStatus? = nil) throws {
    try write("record the health of user \(userID)") { db in
      guard try db.columns(in: "user_sessions").contains(where: { $0.name == "health" }) else { return }
      try db.execute(
        sql: """
          UPDATE user_sessions SET health = ?, last_error = ?, last_checked_at = ?, status = coalesce(?, status)
          WHERE user_id = ?
          """, arguments: [health.rawValue, error, Timestamp.now(), status?.rawValue, userID])
    }
  }
}

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

  /// Upserts `userID`'s `user_sessions` row from a JSON row (as `userRowsJSON` writes it), in
  /// one transaction; only the columns both sides have are written, and `user_id` is `userID`.
  /// - Throws: `StoreError.database`.
  public func upsertUserRow(userID: Int64, row: [String: Any]) throws {
    try write("restore the user_sessions row of user \(userID)") { db in
      let columns = try db.columns(in: "user_sessions").map(\.name)
      var names: [String] = []
      var values: [DatabaseValue] = []
      for column in columns {
        // The row is written as userID's whatever its own user_id says.
        if column == "user_id" {
          names.append(column)
          values.append(userID.databaseValue)
          continue
        }
        guard let value = row[column] else { continue }
        names.append(column)
        switch value {
        case is NSNull: values.append(.null)
        case let number as Int64: values.append(number.databaseValue)
        case let number as Int: values.append(Int64(number).databaseValue)
        case let number as NSNumber:
          // JSONSerialization gives NSNumber; whole numbers go back as integers.
          let double = number.doubleValue
          values.append(
            double == double.rounded() && abs(double) < 9e15
              ? number.int64Value.databaseValue : double.databaseValue)
        case let number as Double: values.append(number.databaseValue)
        case let text as String: values.append(text.databaseValue)
        case let blob as [String: Any]:
          values.append((blob["base64"] as? String).flatMap { Data(base64Encoded: $0) }?.databaseValue ?? .null)
        default: values.append(.null)
        }
      }
      guard names.contains("user_id") else { return }
      let placeholders = Array(repeating: "?", count: names.count).joined(separator: ", ")
      let updates = names.filter { $0 != "user_id" }.map { "\($0) = excluded.\($0)" }.joined(separator: ", ")
      try db.execute(
        sql: """
          INSERT INTO user_sessions (\(names.joined(separator: ", "))) VALUES (\(placeholders))
          ON CONFLICT(user_id) DO UPDATE SET \(updates.isEmpty ? "user_id = excluded.user_id" : updates)
          """, arguments: StatementArguments(values))
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

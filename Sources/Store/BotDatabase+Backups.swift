import Foundation
import GRDB

extension BotDatabase {
  /// One user's rows as JSON, exactly as stored (secrets stay Fernet tokens): the
  /// `user_sessions` row and every `session_backups` row. Nil when the user has neither.
  /// - Throws: `StoreError.database`.
  public func userRowsJSON(userID: Int64) throws -> Data? {
    try read("read rows of user \(userID)") { db in
      var document: [String: Any] = ["user_id": userID]
      var hasAny = false
      if try db.tableExists("user_sessions"),
        let row = try Row.fetchOne(db, sql: "SELECT * FROM user_sessions WHERE user_id = ?", arguments: [userID])
      {
        document["user_sessions"] = Self.json(row)
        hasAny = true
      }
      if try db.tableExists("session_backups") {
        let rows = try Row.fetchAll(
          db, sql: "SELECT * FROM session_backups WHERE user_id = ? ORDER BY id", arguments: [userID])
        document["session_backups"] = rows.map(Self.json)
        hasAny = hasAny || !rows.isEmpty
      }
      guard hasAny else { return nil }
      return try JSONSerialization.data(withJSONObject: document, options: [.sortedKeys, .prettyPrinted])
    }
  }

  static func json(_ row: Row) -> [String: Any] {
    var object: [String: Any] = [:]
    for (column, value) in row {
      switch value.storage {
      case .null: object[column] = NSNull()
      case .int64(let number): object[column] = number
      case .double(let number): object[column] = number
      case .string(let text): object[column] = text
      case .blob(let data): object[column] = ["base64": data.base64EncodedString()]
      }
    }
    return object
  }

  /// Records a per-user backup in `session_backups`, as the seed's bot does: the user's current
  /// (encrypted) session string and api credentials, the reason, and which archive holds it.
  /// - Returns: the new row's id.
  /// - Throws: `StoreError.database`.
  @discardableResult
  public func recordSessionBackup(
    userID: Int64, reason: String, archiveID: String, authKeyFingerprint: String?, at date: Date
  ) throws -> Int64 {
    try write("record backup of user \(userID)") { db in
      let hasUser =
        try Int.fetchOne(
          db, sql: "SELECT count(*) FROM user_sessions WHERE user_id = ?", arguments: [userID]) ?? 0
      if hasUser > 0 {
        try db.execute(
          sql: """
            INSERT INTO session_backups(user_id, session_string, api_id, api_hash, backup_reason, created_at,
                                        archive_id, auth_key_fingerprint)
            SELECT user_id, session_string, api_id, api_hash, ?, ?, ?, ? FROM user_sessions WHERE user_id = ?
            """, arguments: [reason, Timestamp.string(date), archiveID, authKeyFingerprint, userID])
      } else {
        try db.execute(
          sql: """
            INSERT INTO session_backups(user_id, backup_reason, created_at, archive_id, auth_key_fingerprint)
            VALUES (?, ?, ?, ?, ?)
            """, arguments: [userID, reason, Timestamp.string(date), archiveID, authKeyFingerprint])
      }
      return db.lastInsertedRowID
    }
  }

  /// The user ids that have a `user_sessions` row.
  /// - Throws: `StoreError.database`.
  public func userIDs() throws -> [Int64] {
    try read("list users") { db in
      guard try db.tableExists("user_sessions") else { return [] }
      return try Int64.fetchAll(db, sql: "SELECT user_id FROM user_sessions ORDER BY user_id")
    }
  }
}

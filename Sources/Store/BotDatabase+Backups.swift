import Foundation
import GRDB

extension BotDatabase {
  /// One user's rows as JSON, exactly as stored (secrets stay Fernet tokens): the
  /// `user_sessions` row and every `session_backups` row. Nil when the user has neither.
  /// - Throws: `StoreError.database`.
  public func userRowsJSON(userID: Int64) throws -> Data? {
    try read("read rows of user \(userID)") { db in
      var userRow: String?
      var backupRows: [String] = []
      if try db.tableExists("user_sessions"),
        let row = try Row.fetchOne(db, sql: "SELECT * FROM user_sessions WHERE user_id = ?", arguments: [userID])
      {
        userRow = Self.json(row, indent: "  ")
      }
      if try db.tableExists("session_backups") {
        let rows = try Row.fetchAll(
          db, sql: "SELECT * FROM session_backups WHERE user_id = ? ORDER BY id", arguments: [userID])
        backupRows = rows.map { Self.json($0, indent: "    ") }
      }
      guard userRow != nil || !backupRows.isEmpty else { return nil }
      // Keys in sorted order, as JSONSerialization's .sortedKeys + .prettyPrinted wrote them; written
      // directly because JSONSerialization spent most of a per-user backup's time sorting keys.
      var text = "{\n"
      if !backupRows.isEmpty {
        text += "  \"session_backups\" : [\n    " + backupRows.joined(separator: ",\n    ") + "\n  ],\n"
      }
      text += "  \"user_id\" : \(userID)"
      if let userRow { text += ",\n  \"user_sessions\" : " + userRow }
      text += "\n}"
      return Data(text.utf8)
    }
  }

  /// One row as a pretty-printed JSON object with sorted keys, nested at `indent`; a BLOB
  /// becomes `{"base64": "..."}`.
  static func json(_ row: Row, indent: String) -> String {
    var members: [(String, String)] = []
    for (column, value) in row {
      let text: String
      switch value.storage {
      case .null: text = "null"
      case .int64(let number): text = String(number)
      case .double(let number): text = number.isFinite ? "\(number)" : "null"
      case .string(let string): text = jsonString(string)
      case .blob(let data): text = "{\n\(indent)    \"base64\" : \"\(data.base64EncodedString())\"\n\(indent)  }"
      }
      members.append((column, text))
    }
    members.sort { Array($0.0.utf8).lexicographicallyPrecedes(Array($1.0.utf8)) }
    if members.isEmpty { return "{\n\n\(indent)}" }
    return "{\n" + members.map { "\(indent)  \(jsonString($0.0)) : \($0.1)" }.joined(separator: ",\n") + "\n\(indent)}"
  }

  /// `text` as a JSON string literal.
  static func jsonString(_ text: String) -> String {
    // Session strings, tokens and dates need no escaping: the common case is one copy.
    if !text.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
      return "\"" + text + "\""
    }
    var out = "\""
    for scalar in text.unicodeScalars {
      switch scalar {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      case "\r": out += "\\r"
      case "\t": out += "\\t"
      case "\u{08}": out += "\\b"
      case "\u{0C}": out += "\\f"
      case _ where scalar.value < 0x20:
        out +=
          "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count)
          + String(scalar.value, radix: 16)
      default: out.unicodeScalars.append(scalar)
      }
    }
    return out + "\""
  }

  /// Records a per-user backup in `session_backups`, as the seed's bot does: the user's current
  /// (encrypted) session string and api credentials, the reason, and which archive holds it.
  ///
  /// A user without a `user_sessions` row (a login in progress, or a bot that keeps session files
  /// only) has no session string to record, so no row is written: the archive alone holds the
  /// backup. A row of NULLs would break a bot whose schema declares the columns NOT NULL, and
  /// would read as a backup of a session string that never existed.
  /// - Returns: the new row's id, or nil when the user has no `user_sessions` row.
  /// - Throws: `StoreError.database`.
  @discardableResult
  public func recordSessionBackup(
    userID: Int64, reason: String, archiveID: String, authKeyFingerprint: String?, at date: Date
  ) throws -> Int64? {
    try write("record backup of user \(userID)") { db in
      try db.execute(
        sql: """
          INSERT INTO session_backups(user_id, session_string, api_id, api_hash, backup_reason, created_at,
                                      archive_id, auth_key_fingerprint)
          SELECT user_id, session_string, api_id, api_hash, ?, ?, ?, ? FROM user_sessions WHERE user_id = ?
          """, arguments: [reason, Timestamp.string(date), archiveID, authKeyFingerprint, userID])
      return db.changesCount > 0 ? db.lastInsertedRowID : nil
    }
  }

  /// One `session_backups` row to record (see `recordSessionBackup`).
  public struct SessionBackupRow: Sendable {
    public var userID: Int64
    public var reason: String
    public var archiveID: String
    public var authKeyFingerprint: String?
    public var date: Date

    public init(userID: Int64, reason: String, archiveID: String, authKeyFingerprint: String?, date: Date) {
      self.userID = userID
      self.reason = reason
      self.archiveID = archiveID
      self.authKeyFingerprint = authKeyFingerprint
      self.date = date
    }
  }

  /// Records many per-user backups as `recordSessionBackup` does, in one transaction (one
  /// commit for a batch of archives instead of one per user).
  /// - Returns: each row's id, or nil for a user without a `user_sessions` row, in order.
  /// - Throws: `StoreError.database`; then no row of the batch is recorded.
  public func recordSessionBackups(_ rows: [SessionBackupRow]) throws -> [Int64?] {
    guard !rows.isEmpty else { return [] }
    return try write("record backups of \(rows.count) users") { db in
      let statement = try db.makeStatement(
        sql: """
          INSERT INTO session_backups(user_id, session_string, api_id, api_hash, backup_reason, created_at,
                                      archive_id, auth_key_fingerprint)
          SELECT user_id, session_string, api_id, api_hash, ?, ?, ?, ? FROM user_sessions WHERE user_id = ?
          """)
      return try rows.map { row in
        try statement.execute(arguments: [
          row.reason, Timestamp.string(row.date), row.archiveID, row.authKeyFingerprint, row.userID,
        ])
        return db.changesCount > 0 ? db.lastInsertedRowID : nil
      }
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

import Foundation
import GRDB

/// What the bot runner's `/status` shows a user about their own session (no secrets).
public struct BotUserStatus: Sendable, Equatable {
  public var userID: Int64
  /// Whether a `user_sessions` row exists.
  public var hasRow: Bool
  /// Lifecycle (`active` without a row).
  public var status: UserStatus
  /// The last check's verdict (`unknown` before the first check).
  public var health: HealthState
  public var lastCheckedAt: String?
  public var lastError: String?
  /// When the newest `session_backups` row was made, and why.
  public var newestBackupAt: String?
  public var newestBackupReason: String?
  /// The user's `session_backups` rows (what prune keeps per user).
  public var backupCount: Int
}

extension BotDatabase {
  /// The `tgsess_state` key of the bot runner's getUpdates offset.
  static let botOffsetKey = "bot.update_offset"
  /// The prefix of the `tgsess_state` keys recording what the monitor told the admins, per user.
  static let botNotifiedPrefix = "bot.notified."

  /// The getUpdates offset the bot runner confirmed last (the next update id it wants), or nil
  /// when it never polled.
  /// - Throws: `StoreError.database`.
  public func botUpdateOffset() throws -> Int64? {
    try state(key: Self.botOffsetKey).flatMap { Int64($0) }
  }

  /// Durably records the bot runner's getUpdates offset (one short write transaction).
  /// - Throws: `StoreError.database`.
  public func saveBotUpdateOffset(_ offset: Int64) throws {
    try setState(key: Self.botOffsetKey, value: String(offset))
  }

  /// The states the monitor already told the admins about, by user (e.g. `critical:user.session`).
  /// - Throws: `StoreError.database`.
  public func botNotifiedStates() throws -> [Int64: String] {
    try read("read the bot's notifications") { db in
      let rows = try Row.fetchAll(
        db, sql: "SELECT key, value FROM tgsess_state WHERE key LIKE ?", arguments: [Self.botNotifiedPrefix + "%"])
      var states: [Int64: String] = [:]
      for row in rows {
        let key: String = row["key"]
        if let userID = Int64(key.dropFirst(Self.botNotifiedPrefix.count)) { states[userID] = row["value"] }
      }
      return states
    }
  }

  /// Records (or, with nil, forgets) the state the monitor told the admins about for `userID`.
  /// - Throws: `StoreError.database`.
  public func setBotNotifiedState(userID: Int64, state: String?) throws {
    let key = Self.botNotifiedPrefix + String(userID)
    if let state {
      try setState(key: key, value: state)
    } else {
      try write("forget a bot notification") { db in
        try db.execute(sql: "DELETE FROM tgsess_state WHERE key = ?", arguments: [key])
      }
    }
  }

  /// What `/status` shows for `userID`: the row's lifecycle and health, and its backup rows.
  /// - Throws: `StoreError.database`.
  public func botUserStatus(userID: Int64) throws -> BotUserStatus {
    try read("read the status of user \(userID)") { db in
      var result = BotUserStatus(
        userID: userID, hasRow: false, status: .active, health: .unknown, lastCheckedAt: nil, lastError: nil,
        newestBackupAt: nil, newestBackupReason: nil, backupCount: 0)
      if let row = try Row.fetchOne(
        db, sql: "SELECT status, health, last_checked_at, last_error FROM user_sessions WHERE user_id = ?",
        arguments: [userID])
      {
        result.hasRow = true
        result.status = UserStatus(column: row["status"])
        result.health = HealthState(column: row["health"])
        result.lastCheckedAt = row["last_checked_at"]
        result.lastError = row["last_error"]
      }
      result.backupCount =
        try Int.fetchOne(db, sql: "SELECT count(*) FROM session_backups WHERE user_id = ?", arguments: [userID]) ?? 0
      if let newest = try Row.fetchOne(
        db,
        sql: """
          SELECT created_at, backup_reason FROM session_backups WHERE user_id = ?
          ORDER BY created_at DESC, id DESC LIMIT 1
          """, arguments: [userID])
      {
        result.newestBackupAt = newest["created_at"]
        result.newestBackupReason = newest["backup_reason"]
      }
      return result
    }
  }

  /// The users whose row says their session ended here: logged out, or handed over to another host.
  /// - Throws: `StoreError.database`.
  public func loggedOutUserIDs() throws -> Set<Int64> {
    try read("list logged-out users") { db in
      Set(
        try Int64.fetchAll(
          db, sql: "SELECT user_id FROM user_sessions WHERE status IN ('logged_out', 'handed_over')"))
    }
  }

  /// Marks `userID` handed over to another host (`status = 'handed_over'`); the row, its session
  /// string and every backup stay.
  /// - Returns: whether a row was marked.
  /// - Throws: `StoreError.database`.
  @discardableResult
  public func markHandedOver(userID: Int64) throws -> Bool {
    try write("mark user \(userID) handed over") { db in
      try db.execute(
        sql: """
          UPDATE user_sessions SET status = 'handed_over', last_error = NULL, updated_at = ?, last_checked_at = ?
          WHERE user_id = ?
          """, arguments: [Timestamp.now(), Timestamp.now(), userID])
      return db.changesCount > 0
    }
  }

  /// Marks `userID` logged out (`status = 'logged_out'`); the row, its session string and every
  /// backup are kept, so an admin can still restore the session.
  /// - Returns: whether a row was changed (false when there is no row).
  /// - Throws: `StoreError.database`.
  @discardableResult
  public func markLoggedOut(userID: Int64) throws -> Bool {
    try write("mark user \(userID) logged out") { db in
      try db.execute(
        sql: """
          UPDATE user_sessions SET status = 'logged_out', last_error = NULL, updated_at = ?, last_checked_at = ?
          WHERE user_id = ?
          """, arguments: [Timestamp.now(), Timestamp.now(), userID])
      return db.changesCount > 0
    }
  }

  private func state(key: String) throws -> String? {
    try read("read \(key)") { db in
      try String.fetchOne(db, sql: "SELECT value FROM tgsess_state WHERE key = ?", arguments: [key])
    }
  }

  private func setState(key: String, value: String) throws {
    try write("record \(key)") { db in
      try db.execute(
        sql: """
          INSERT INTO tgsess_state(key, value, updated_at) VALUES (?, ?, ?)
          ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at
          """, arguments: [key, value, Timestamp.now()])
    }
  }
}

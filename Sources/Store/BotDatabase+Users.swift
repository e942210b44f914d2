import Foundation
import GRDB

/// One row of `user_sessions`, without its secrets.
public struct UserSummary: Sendable, Equatable, Codable {
  public var userID: Int64
  /// Lifecycle (`active` on a legacy database).
  public var status: UserStatus
  /// Last check's verdict (`unknown` before the first check).
  public var health: HealthState
  public var lastCheckedAt: String?
  public var lastError: String?
  public var hasSessionString: Bool
  public var updatedAt: String?
}

extension BotDatabase {
  /// Every user row, ordered by user id, without secrets. Works on legacy databases too.
  /// - Throws: `StoreError.database`.
  public func userSummaries() throws -> [UserSummary] {
    try read("read user_sessions") { db in
      guard try db.tableExists("user_sessions") else { return [] }
      let columns = Set(try db.columns(in: "user_sessions").map(\.name))
      func column(_ name: String, _ fallback: String) -> String { columns.contains(name) ? name : fallback }
      let sql = """
        SELECT user_id, \(column("status", "'active'")) AS status, \(column("health", "'unknown'")) AS health,
               \(column("last_checked_at", "NULL")) AS last_checked_at, \(column("last_error", "NULL")) AS last_error,
               (session_string IS NOT NULL AND session_string != '') AS has_string, updated_at
        FROM user_sessions ORDER BY user_id
        """
      return try Row.fetchAll(db, sql: sql).map { row in
        UserSummary(
          userID: row["user_id"], status: UserStatus(column: row["status"]), health: HealthState(column: row["health"]),
          lastCheckedAt: row["last_checked_at"],
          lastError: row["last_error"], hasSessionString: row["has_string"], updatedAt: row["updated_at"])
      }
    }
  }

  /// The number of `session_backups` rows.
  /// - Throws: `StoreError.database`.
  public func sessionBackupCount() throws -> Int {
    try read("count session_backups") { db in
      guard try db.tableExists("session_backups") else { return 0 }
      return try Int.fetchOne(db, sql: "SELECT count(*) FROM session_backups") ?? 0
    }
  }
}

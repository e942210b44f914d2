import Foundation
import GRDB

extension BotDatabase {
  /// A user row as `check` needs it (secrets stay wrapped).
  public struct UserForCheck: Sendable {
    public var userID: Int64
    public var status: UserStatus
    public var sessionString: SecretText?
  }

  /// Every user row with its status and stored string, in one read.
  /// - Throws: `StoreError.database`.
  public func usersForCheck() throws -> [UserForCheck] {
    try read("read user_sessions") { db in
      guard try db.tableExists("user_sessions") else { return [] }
      let hasStatus = try db.columns(in: "user_sessions").contains { $0.name == "status" }
      let sql =
        "SELECT user_id, \(hasStatus ? "status" : "'active'") AS status, session_string FROM user_sessions ORDER BY user_id"
      let isTokenRequired = try Self.areSecretsEncrypted(db)
      return try Row.fetchAll(db, sql: sql).map { row in
        let userID: Int64 = row["user_id"]
        let origin = SecretOrigin(
          table: "user_sessions", column: "session_string", userID: userID, isTokenRequired: isTokenRequired)
        return UserForCheck(
          userID: userID, status: UserStatus(column: row["status"]),
          sessionString: Self.secret(row["session_string"], origin: origin))
      }
    }
  }

  /// Records many users' health in one transaction (check's only write).
  /// - Throws: `StoreError.database`.
  public func recordHealth(_ entries: [(userID: Int64, health: HealthState, error: String?)], at date: Date) throws {
    try write("record check results") { db in
      guard try db.columns(in: "user_sessions").contains(where: { $0.name == "health" }) else { return }
      let statement = try db.makeStatement(
        sql: "UPDATE user_sessions SET health = ?, last_error = ?, last_checked_at = ? WHERE user_id = ?")
      let stamp = Timestamp.string(date)
      for entry in entries {
        try statement.execute(arguments: [entry.health.rawValue, entry.error, stamp, entry.userID])
      }
    }
  }

  /// Whether `error` says the database stayed locked by another process past the busy timeout.
  ///
  /// It matches the reason `describe(_:path:doing:)` gives SQLITE_BUSY and SQLITE_LOCKED (a test
  /// pins those words), because `StoreError` has no case of its own for a busy database.
  public static func isBusy(_ error: StoreError) -> Bool {
    if case .database(_, let reason, _) = error { return reason.hasPrefix("database is locked by another process") }
    return false
  }

  /// Marks a user revoked (a confirmed fatal error): the session and its backups are kept.
  /// - Throws: `StoreError.database`.
  public func markRevoked(userID: Int64, error: String) throws {
    try recordHealth(userID: userID, health: .critical, error: error, status: .revoked)
  }
}

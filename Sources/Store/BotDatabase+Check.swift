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
      // A cursor, not fetchAll: the rows are not all held as GRDB rows beside the result.
      var users: [UserForCheck] = []
      let rows = try Row.fetchCursor(db, sql: sql)
      while let row = try rows.next() {
        let userID: Int64 = row["user_id"]
        let origin = SecretOrigin(
          table: "user_sessions", column: "session_string", userID: userID, isTokenRequired: isTokenRequired)
        users.append(
          UserForCheck(
            userID: userID, status: UserStatus(column: row["status"]),
            sessionString: Self.secret(row["session_string"], origin: origin)))
      }
      return users
    }
  }

  /// One user's check result, as `check` records it.
  public struct CheckRecordEntry: Sendable, Equatable {
    public var userID: Int64
    public var health: HealthState
    /// The reasons found, without remedies (the bot words them for the user); nil when none.
    public var lastError: String?
    /// Also set `status = 'revoked'` (a confirmed fatal answer of the live probe).
    public var marksRevoked: Bool

    public init(userID: Int64, health: HealthState, lastError: String?, marksRevoked: Bool = false) {
      self.userID = userID
      self.health = health
      self.lastError = lastError
      self.marksRevoked = marksRevoked
    }
  }

  /// Records `check`'s results in one transaction: each entry's `health`, `last_error` and
  /// `last_checked_at`, and `status = 'revoked'` where the entry marks it. This is everything
  /// `check` ever writes.
  /// - Throws: `StoreError.database`.
  public func recordCheck(_ entries: [CheckRecordEntry], at date: Date) throws {
    try write("record check results") { db in
      guard try db.columns(in: "user_sessions").contains(where: { $0.name == "health" }) else { return }
      let health = try db.makeStatement(
        sql: "UPDATE user_sessions SET health = ?, last_error = ?, last_checked_at = ? WHERE user_id = ?")
      let revoke = try db.makeStatement(sql: "UPDATE user_sessions SET status = ? WHERE user_id = ?")
      let stamp = Timestamp.string(date)
      for entry in entries {
        try health.execute(arguments: [entry.health.rawValue, entry.lastError, stamp, entry.userID])
        if entry.marksRevoked { try revoke.execute(arguments: [UserStatus.revoked.rawValue, entry.userID]) }
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
}

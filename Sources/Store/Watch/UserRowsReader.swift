import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// One `user_sessions` row as watch needs it (the string stays wrapped).
public struct UserSessionRow: Sendable, Equatable {
  public var userID: Int64
  public var apiID: Int64?
  public var sessionString: SecretText?
  /// The row says the user logged out (`status = 'logged_out'`).
  public var isLoggedOut: Bool

  public init(userID: Int64, apiID: Int64?, sessionString: SecretText?, isLoggedOut: Bool) {
    self.userID = userID
    self.apiID = apiID
    self.sessionString = sessionString
    self.isLoggedOut = isLoggedOut
  }

  /// A value that changes when the row's identity columns or status change; for change
  /// detection within one process only (Swift's hashing is seeded per run). Much cheaper than
  /// `digest`, so a scan hashes every row with it and computes `digest` only for the changed ones.
  public var changeKey: Int {
    var hasher = Hasher()
    hasher.combine(apiID)
    hasher.combine(sessionString?.value)
    hasher.combine(isLoggedOut)
    return hasher.finalize()
  }

  /// A digest of the row's identity columns (api_id, session string) and status: 16 hex of
  /// SHA-256, no secret (it is kept in watch's state file to tell, after a restart, which rows
  /// changed while watch was down).
  public var digest: String {
    var bytes = Array((apiID.map(String.init) ?? "-").utf8)
    bytes.append(0)
    bytes += Array((sessionString?.value ?? "").utf8)
    bytes.append(isLoggedOut ? 1 : 0)
    return String(Digest.sha256Hex(bytes).prefix(16))
  }
}

/// A long-lived read-only connection to the bot database that tells cheaply whether another
/// connection committed since the last look (`PRAGMA data_version`) and reads the rows of
/// `user_sessions`. It never writes and holds no lock between calls; a database replaced under
/// the same path (a new inode) is reopened.
public final class UserRowsReader: @unchecked Sendable {
  public let path: String
  let busyTimeoutMS: Int32
  private var connection: SQLiteConnection?
  private var inode: UInt64 = 0
  private var lastDataVersion: Int64 = -1

  public init(path: String, busyTimeoutMS: Int) {
    self.path = path
    self.busyTimeoutMS = Int32(clamping: busyTimeoutMS)
  }

  /// Whether the database may have changed since the last call (always true on the first call,
  /// after a reopen, and after `invalidate`).
  /// - Throws: `StoreError.missing` when the database is gone, `StoreError.database` when it cannot
  ///   be read (locked past the busy timeout, damage).
  public func hasChanged() throws -> Bool {
    let version = try reading { connection -> Int64 in
      let statement = try connection.prepareChecked("PRAGMA data_version")
      return try statement.stepChecked() ? statement.int64(0) : -1
    }
    defer { lastDataVersion = version }
    return version != lastDataVersion
  }

  /// Forgets the last data version, so the next `hasChanged` says true.
  public func invalidate() { lastDataVersion = -1 }

  /// Every row of `user_sessions` (none when the table does not exist yet), in one read.
  /// - Throws: `StoreError.database` / `StoreError.missing`.
  public func rows() throws -> [UserSessionRow] {
    try reading { connection in
      try connection.execChecked("BEGIN")
      defer { try? connection.execChecked("COMMIT") }
      let columns = try connection.tableColumnsChecked("user_sessions")
      guard columns.contains("user_id") else { return [] }
      let statement = try connection.prepareChecked(Self.select(columns))
      var rows: [UserSessionRow] = []
      while try statement.stepChecked() { rows.append(Self.row(statement)) }
      return rows
    }
  }

  /// The row of one user, read now (a primary-key lookup); nil when the user has none.
  /// - Throws: `StoreError.database` / `StoreError.missing`.
  public func row(userID: Int64) throws -> UserSessionRow? {
    try reading { connection in
      let columns = try connection.tableColumnsChecked("user_sessions")
      guard columns.contains("user_id") else { return nil }
      let statement = try connection.prepareChecked(Self.select(columns) + " WHERE user_id = ?")
      try statement.bind(userID, at: 1)
      return try statement.stepChecked() ? Self.row(statement) : nil
    }
  }

  /// The SELECT of the columns watch reads, for the columns the table has.
  static func select(_ columns: [String]) -> String {
    let apiID = columns.contains("api_id") ? "api_id" : "NULL"
    let string = columns.contains("session_string") ? "session_string" : "NULL"
    let status = columns.contains("status") ? "status" : "'active'"
    return "SELECT user_id, \(apiID), \(string), \(status) FROM user_sessions"
  }

  static func row(_ statement: SQLiteStatement) -> UserSessionRow {
    let text = statement.text(2)
    return UserSessionRow(
      userID: statement.int64(0), apiID: statement.isNull(1) ? nil : statement.int64(1),
      sessionString: text.flatMap { $0.isEmpty ? nil : SecretText($0) },
      isLoggedOut: UserStatus(column: statement.text(3)).hasEndedHere)
  }

  /// Closes the connection; the next call reopens it.
  public func close() {
    try? connection?.close()
    connection = nil
    lastDataVersion = -1
  }

  /// Runs `body` on the connection. A hot journal (a writer killed mid-transaction, or a power
  /// cut) makes every read-only read fail until a read-write connection rolls it back, as the
  /// bot's own next open would: then the journal is rolled back (`BotDatabase.rollBackHotJournal`)
  /// and `body` runs once more on a new connection.
  private func reading<T>(_ body: (SQLiteConnection) throws -> T) throws -> T {
    let connection = try open()
    do {
      return try body(connection)
    } catch let failure as SQLiteFailure where failure.code == SQLiteExtendedCode.readonlyRollback {
      close()
      BotDatabase.rollBackHotJournal(path: path, busyTimeoutMS: Int(busyTimeoutMS))
      let reopened = try open()
      return try reopened.translating { try body(reopened) }
    } catch let failure as SQLiteFailure {
      throw failure.storeError(path: path)
    }
  }

  private func open() throws -> SQLiteConnection {
    var info = stat()
    guard stat(path, &info) == 0 else {
      close()
      throw StoreError.missing(path: path, hint: "the bot database is gone; restore it: tgsess restore latest")
    }
    if let connection, UInt64(info.st_ino) == inode { return connection }
    close()
    let opened = try SQLiteConnection(path: path, mode: .readOnly, busyTimeoutMS: busyTimeoutMS)
    connection = opened
    inode = UInt64(info.st_ino)
    return opened
  }
}

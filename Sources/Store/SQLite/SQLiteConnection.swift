import CShims
import Foundation
import GRDBSQLite

#if canImport(Glibc)
  import Glibc
#endif

/// A failed SQLite call with its extended result code, kept inside Store so that callers such as
/// the session inspector can tell "damaged" from "locked" from "hot journal" before the failure
/// becomes a `StoreError`.
struct SQLiteFailure: Error, Sendable {
  /// The extended result code (`SQLITE_CORRUPT`, `SQLITE_READONLY_ROLLBACK`, ...).
  var code: Int32
  /// SQLite's own message (never contains bound values, so never a secret).
  var message: String
  /// What was attempted, e.g. "open read-only" or "prepare".
  var operation: String
  /// The operating system's errno behind an I/O, open or full-disk failure
  /// (`sqlite3_system_errno`), 0 when unknown: SQLite reports EIO, EDQUOT and EACCES alike as
  /// "disk I/O error", so the error line names the real cause with it.
  var systemErrno: Int32 = 0

  /// The primary result code (low byte of the extended one).
  var primaryCode: Int32 { code & 0xff }

  /// The failure as the error Store reports, naming `path`.
  func storeError(path: String) -> StoreError {
    // A failed read or write is not damage, whatever SQLite calls it: name the file, what failed
    // and the errno, never "restore it from a backup".
    if SQLiteIOError.isIOFailure(code: code, systemErrno: systemErrno) {
      return SQLiteIOError.storeError(path: path, operation: operation, code: code, systemErrno: systemErrno)
    }
    if primaryCode == SQLITE_CANTOPEN, systemErrno == ENOENT, FileSystem.exists(path) {
      return SQLiteIOError.journalCreationFailure(path: path, operation: operation)
    }
    let name = String(cString: sqlite3_errstr(code))
    let hint: String
    switch primaryCode {
    case SQLITE_BUSY, SQLITE_LOCKED:
      hint = "another process holds the database; stop it or retry later"
    case SQLITE_CORRUPT, SQLITE_NOTADB:
      hint = "the file is damaged or not an SQLite database; restore it from a backup"
    case SQLITE_CANTOPEN, SQLITE_PERM, SQLITE_READONLY, SQLITE_AUTH:
      hint = "check that the path exists and its owner and mode (and those of its -journal/-wal/-shm files)"
    case SQLITE_FULL:
      hint = "the disk is full; free space there and run again"
    default:
      hint = "check the file with `sqlite3 FILE 'pragma integrity_check'`"
    }
    var cause = ""
    if systemErrno != 0, [SQLITE_IOERR, SQLITE_CANTOPEN, SQLITE_FULL].contains(primaryCode) {
      cause = ": " + String(cString: strerror(systemErrno))
    }
    return .database(
      path: path, reason: "\(operation) failed: \(message) (\(name), code \(code))\(cause)", hint: hint)
  }
}

/// The errno behind a connection's last I/O failure: `sqlite3_system_errno`, which SQLite sets
/// only for some failures (not for one in a commit), else the main file's last errno
/// (`SQLITE_FCNTL_LAST_ERRNO`); 0 when neither is known.
func sqliteSystemErrno(_ handle: OpaquePointer) -> Int32 {
  let code = sqlite3_system_errno(handle)
  if code != 0 { return code }
  var last: Int32 = 0
  return sqlite3_file_control(handle, "main", SQLITE_FCNTL_LAST_ERRNO, &last) == SQLITE_OK ? last : 0
}

/// The errno of the last failed call on the connection's main file (`SQLITE_FCNTL_LAST_ERRNO`),
/// 0 when none failed: which file a failure was on, when two connections share one step.
func sqliteFileErrno(_ handle: OpaquePointer) -> Int32 {
  var last: Int32 = 0
  return sqlite3_file_control(handle, "main", SQLITE_FCNTL_LAST_ERRNO, &last) == SQLITE_OK ? last : 0
}

/// Extended result codes whose C macros do not import into Swift.
enum SQLiteExtendedCode {
  /// `SQLITE_READONLY | (3 << 8)`: a read-only connection found a hot journal it may not roll back.
  static let readonlyRollback: Int32 = SQLITE_READONLY | (3 << 8)
  /// `SQLITE_READONLY | (5 << 8)`: a read-only connection cannot initialise the WAL index.
  static let readonlyCantInit: Int32 = SQLITE_READONLY | (5 << 8)
  /// `SQLITE_IOERR | (2 << 8)`: the file ended before the page being read.
  static let ioErrShortRead: Int32 = SQLITE_IOERR | (2 << 8)
}

/// How a connection opens its file.
public enum SQLiteOpenMode: Sendable, Equatable {
  /// `SQLITE_OPEN_READONLY`: never writes, never creates the file, never rolls back a hot journal.
  case readOnly
  /// `SQLITE_OPEN_READWRITE`: the file must exist.
  case readWrite
  /// `SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI`, for a `file:...?vfs=memdb`
  /// database that lives in memory only.
  case memory
  /// `SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE`.
  case readWriteCreate

  var flags: Int32 {
    let base = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE
    switch self {
    case .readOnly: return base | SQLITE_OPEN_READONLY
    case .readWrite: return base | SQLITE_OPEN_READWRITE
    case .readWriteCreate: return base | SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
    case .memory: return base | SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI
    }
  }

  var label: String {
    switch self {
    case .readOnly: return "open read-only"
    case .readWrite: return "open read-write"
    case .readWriteCreate: return "open or create"
    case .memory: return "open in memory"
    }
  }
}

/// The storage class of a value in a result column.
public enum SQLiteColumnType: Sendable, Equatable {
  case integer, float, text, blob, null
}

/// A small connection over the raw SQLite C API for the places where GRDB is too much: reading
/// foreign files (session files) strictly read-only, building files with exact DDL, and online
/// backups. One connection is used from one thread at a time (`SQLITE_OPEN_NOMUTEX`).
///
/// The connection never changes a file's journal mode. The handle is closed in `deinit` (or by
/// `close()`), statements are finalized in their own `deinit`.
public final class SQLiteConnection {
  /// The file this connection opened.
  public let path: String
  /// How it was opened.
  public let mode: SQLiteOpenMode
  private var handle: OpaquePointer?

  /// Opens `path` with explicit flags and a busy timeout.
  /// - Parameters:
  ///   - mode: read-only, read-write, or read-write-create.
  ///   - busyTimeoutMS: how long a call waits for another process's lock before failing.
  /// - Throws: `StoreError.database` naming the file when SQLite cannot open it.
  public convenience init(path: String, mode: SQLiteOpenMode, busyTimeoutMS: Int32 = 5000) throws {
    do {
      try self.init(checkedPath: path, mode: mode, busyTimeoutMS: busyTimeoutMS)
    } catch let failure as SQLiteFailure {
      throw failure.storeError(path: path)
    }
  }

  /// The designated initializer; throws `SQLiteFailure` so Store can inspect the code.
  init(checkedPath path: String, mode: SQLiteOpenMode, busyTimeoutMS: Int32) throws {
    self.path = path
    self.mode = mode
    var db: OpaquePointer?
    let rc = sqlite3_open_v2(path, &db, mode.flags, nil)
    guard rc == SQLITE_OK, let db else {
      let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(rc))
      let systemErrno = db.map(sqliteSystemErrno) ?? 0
      // sqlite3_open_v2 allocates a handle even on failure; it must be closed.
      sqlite3_close_v2(db)
      throw SQLiteFailure(code: rc, message: message, operation: mode.label, systemErrno: systemErrno)
    }
    handle = db
    sqlite3_extended_result_codes(db, 1)
    sqlite3_busy_timeout(db, busyTimeoutMS)
  }

  deinit {
    // close_v2 defers the close until every statement is finalized, so a leaked statement can
    // never make the handle leak too.
    if let handle { sqlite3_close_v2(handle) }
  }

  /// Closes the connection now; later calls fail. Writers call this before fsync and rename.
  /// - Throws: `StoreError.database` when SQLite reports an error while closing.
  public func close() throws {
    guard let db = handle else { return }
    handle = nil
    let rc = sqlite3_close_v2(db)
    if rc != SQLITE_OK {
      throw SQLiteFailure(code: rc, message: String(cString: sqlite3_errstr(rc)), operation: "close")
        .storeError(path: path)
    }
  }

  // MARK: - Statements

  /// Runs one or more SQL statements that return no rows (DDL, `BEGIN`, `COMMIT`, ...).
  /// - Throws: `StoreError.database` naming the file and SQLite's message.
  public func exec(_ sql: String) throws {
    try translating { try execChecked(sql) }
  }

  /// Prepares one SQL statement.
  /// - Throws: `StoreError.database` naming the file and SQLite's message.
  public func prepare(_ sql: String) throws -> SQLiteStatement {
    try translating { try prepareChecked(sql) }
  }

  /// Runs `sql` and returns the first column of every row as text (NULL as an empty string).
  /// - Throws: `StoreError.database`.
  public func textRows(_ sql: String) throws -> [String] {
    try translating { try textRowsChecked(sql) }
  }

  /// The names of the ordinary tables in the main database, in schema order.
  /// - Throws: `StoreError.database`.
  public func tableNames() throws -> [String] {
    try translating { try tableNamesChecked() }
  }

  /// The column names of `table` in declaration order; empty when the table does not exist.
  /// - Throws: `StoreError.database`.
  public func tableColumns(_ table: String) throws -> [String] {
    try translating { try tableColumnsChecked(table) }
  }

  /// Runs `PRAGMA integrity_check` (or `quick_check`) and returns the problems it lists;
  /// an empty array means "ok".
  /// - Throws: `StoreError.database` when the check itself cannot run (e.g. the header is bad),
  ///   and `StoreError.io` (or `.database`) naming this file when a page could not be read: a
  ///   read error is an I/O error on this file, not damage the check found.
  public func integrityCheck(quick: Bool = false) throws -> [String] {
    try translating { try integrityCheckChecked(quick: quick) }
  }

  /// The journal mode SQLite reports for the file (`delete`, `wal`, ...). Reading it changes nothing.
  /// - Throws: `StoreError.database`.
  public func journalMode() throws -> String {
    try translating { try textRowsChecked("PRAGMA journal_mode").first ?? "" }
  }

  // MARK: - Backup

  /// Writes a consistent snapshot of this database to `destinationPath` with SQLite's online
  /// backup API (`sqlite3_backup_init`, `step(-1)`, `finish`). The snapshot holds the last
  /// committed state even while another process keeps a write transaction open on the source.
  ///
  /// The copy is built in a temporary file beside the destination (mode 0600), closed, fsynced,
  /// renamed into place, and the directory is fsynced.
  /// - Parameter overwrite: when false, an existing destination is an error and stays untouched.
  /// - Throws: `StoreError.database` naming the source or destination, or `StoreError.io`.
  public func backup(to destinationPath: String, overwrite: Bool = false) throws {
    let source = try requireHandle()
    try SQLiteConnection.buildAtomically(at: destinationPath, overwrite: overwrite) { destination in
      guard let target = destination.handle else { return }
      guard let backup = sqlite3_backup_init(target, "main", source, "main") else {
        throw SQLiteFailure(
          code: sqlite3_extended_errcode(target), message: String(cString: sqlite3_errmsg(target)),
          operation: "start backup of \(path)"
        ).storeError(path: destinationPath)
      }
      var stepCode = sqlite3_backup_step(backup, -1)
      let finishCode = sqlite3_backup_finish(backup)
      if stepCode == SQLITE_DONE { stepCode = SQLITE_OK }
      if stepCode != SQLITE_OK || finishCode != SQLITE_OK {
        let code = stepCode != SQLITE_OK ? stepCode : finishCode
        // A source-side failure (busy, corrupt) is the interesting one: name the source.
        let sourceCode = sqlite3_extended_errcode(source)
        let blameSource = (code & 0xff) == SQLITE_BUSY || (code & 0xff) == SQLITE_LOCKED || sourceCode != SQLITE_OK
        throw SQLiteFailure(
          code: code, message: String(cString: sqlite3_errstr(code)), operation: "online backup to \(destinationPath)"
        ).storeError(path: blameSource ? path : destinationPath)
      }
    }
  }

  /// Creates a new SQLite file at `path` atomically: `body` fills a fresh database at a temporary
  /// path in the same directory (mode 0600); the connection is closed, the file fsynced and
  /// renamed into place, and the directory fsynced. The journal mode is SQLite's default.
  /// SQLite's own syncs are off while the temporary is built: nothing reads it before the fsync
  /// that precedes its rename, and a crash before that leaves only a temporary, never the new
  /// file (they were four syncs per file: the journal twice, its directory, the file).
  /// - Parameters:
  ///   - overwrite: when false, an existing file at `path` is an error and stays untouched.
  ///   - isDurable: false only for generated fixtures (tgsess-fleet): neither the file nor its
  ///     directory is fsynced; still whole or absent for any process.
  ///   - temporaryPath: where the file is built (default: `FileSystem.temporaryPath(for:)`).
  /// - Throws: whatever `body` throws, `StoreError.database`, or `StoreError.io`; the temporary
  ///   file (and its journal) is removed on failure.
  public static func buildAtomically(
    at path: String, overwrite: Bool = false, isDurable: Bool = true, temporaryPath: String? = nil,
    body: (SQLiteConnection) throws -> Void
  ) throws {
    if !overwrite, FileSystem.exists(path) {
      throw StoreError.io(
        path: path, operation: "create (it already exists; remove it or allow overwrite)", errno: EEXIST)
    }
    let tempPath = temporaryPath ?? FileSystem.temporaryPath(for: path)
    // Create the file ourselves so SQLite never creates it with the umask's mode.
    let fd = open(tempPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, FileSystem.fileMode)
    guard fd >= 0 else { throw StoreError.io(path: tempPath, operation: "create", errno: errno) }
    var isDone = false
    defer {
      if !isDone {
        unlink(tempPath)
        unlink(tempPath + "-journal")
      }
    }
    let chmodFailed = fchmod(fd, FileSystem.fileMode) != 0
    let chmodErrno = errno
    _ = Glibc.close(fd)
    if chmodFailed { throw StoreError.io(path: tempPath, operation: "chmod 0600", errno: chmodErrno) }

    let connection = try SQLiteConnection(path: tempPath, mode: .readWrite)
    try connection.exec("PRAGMA synchronous=OFF")
    try body(connection)
    try connection.close()
    // The same crash points as FileSystem.writeAtomically: this is that, for SQLite files.
    try CrashPoint.hit("atomic.before-fsync")

    if isDurable {
      let syncFD = open(tempPath, O_RDONLY | O_CLOEXEC)
      guard syncFD >= 0 else { throw StoreError.io(path: tempPath, operation: "open for fsync", errno: errno) }
      let syncFailed = fsync(syncFD) != 0
      let syncErrno = errno
      _ = Glibc.close(syncFD)
      if syncFailed { throw StoreError.io(path: tempPath, operation: "fsync", errno: syncErrno) }
    }

    if !overwrite {
      // link(2) fails with EEXIST instead of replacing: the no-clobber publish.
      if link(tempPath, path) != 0 { throw StoreError.io(path: path, operation: "publish (link)", errno: errno) }
      unlink(tempPath)
    } else if rename(tempPath, path) != 0 {
      throw StoreError.io(path: path, operation: "rename into place", errno: errno)
    }
    isDone = true
    try CrashPoint.hit("atomic.after-rename")
    if isDurable { try FileSystem.fsyncDirectory(of: path) }
  }

  // MARK: - Checked internals (throw SQLiteFailure)

  func requireHandle() throws -> OpaquePointer {
    guard let handle else {
      throw SQLiteFailure(code: SQLITE_MISUSE, message: "connection is closed", operation: "use connection")
        .storeError(path: path)
    }
    return handle
  }

  func failure(_ rc: Int32, _ operation: String) -> SQLiteFailure {
    // Extended result codes are on, so `rc` already is the extended code.
    let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(rc))
    return SQLiteFailure(
      code: rc, message: message, operation: operation, systemErrno: handle.map(sqliteSystemErrno) ?? 0)
  }

  func execChecked(_ sql: String) throws {
    let db = try requireHandle()
    var errorMessage: UnsafeMutablePointer<CChar>?
    let rc = sqlite3_exec(db, sql, nil, nil, &errorMessage)
    defer { sqlite3_free(errorMessage) }
    if rc != SQLITE_OK {
      let message = errorMessage.map { String(cString: $0) } ?? String(cString: sqlite3_errstr(rc))
      throw SQLiteFailure(
        code: sqlite3_extended_errcode(db), message: message, operation: "exec", systemErrno: sqliteSystemErrno(db))
    }
  }

  func prepareChecked(_ sql: String) throws -> SQLiteStatement {
    let db = try requireHandle()
    var statement: OpaquePointer?
    let rc = sqlite3_prepare_v2(db, sql, -1, &statement, nil)
    guard rc == SQLITE_OK, let statement else {
      sqlite3_finalize(statement)
      throw failure(rc, "prepare")
    }
    return SQLiteStatement(connection: self, statement: statement)
  }

  func textRowsChecked(_ sql: String) throws -> [String] {
    let statement = try prepareChecked(sql)
    var rows: [String] = []
    while try statement.stepChecked() { rows.append(statement.text(0) ?? "") }
    return rows
  }

  /// `integrityCheck` inside Store: a row reporting a page that could not be read, or problems
  /// found while a read of the file failed (a page SQLite could not read may be listed only as
  /// "never used"), throw `SQLiteFailure` with the I/O error code and the errno SQLite kept.
  func integrityCheckChecked(quick: Bool) throws -> [String] {
    let check = quick ? "quick_check" : "integrity_check"
    let rows = try textRowsChecked("PRAGMA " + check)
    guard rows != ["ok"] else { return [] }
    let fileErrno = handle.map(sqliteFileErrno) ?? 0
    if let code = SQLiteIOError.ioErrorCode(inCheckRows: rows) {
      throw SQLiteFailure(
        code: code, message: String(cString: sqlite3_errstr(code)), operation: check,
        systemErrno: fileErrno != 0 ? fileErrno : handle.map(sqliteSystemErrno) ?? 0)
    }
    if SQLiteIOError.readErrnos.contains(fileErrno) {
      throw SQLiteFailure(
        code: SQLiteIOError.corruptFS, message: String(cString: sqlite3_errstr(SQLiteIOError.corruptFS)),
        operation: check, systemErrno: fileErrno)
    }
    return rows
  }

  func tableNamesChecked() throws -> [String] {
    try textRowsChecked("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY rowid")
  }

  func tableColumnsChecked(_ table: String) throws -> [String] {
    // The result columns of a prepared `SELECT *`, which is much cheaper than the
    // pragma_table_info virtual table (it matters when thousands of session files are read).
    let quoted = "\"" + table.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    let statement: SQLiteStatement
    do { statement = try prepareChecked("SELECT * FROM \(quoted) LIMIT 0") } catch let failure as SQLiteFailure
      where failure.primaryCode == SQLITE_ERROR && failure.message.hasPrefix("no such table")
    {
      return []
    }
    return (0..<statement.columnCount).map(statement.columnName)
  }

  func translating<T>(_ body: () throws -> T) throws -> T {
    do {
      return try body()
    } catch let failure as SQLiteFailure {
      throw failure.storeError(path: path)
    }
  }
}

/// A prepared statement of a `SQLiteConnection`. It keeps its connection alive and is finalized
/// in `deinit`. Column indexes start at 0, parameter indexes at 1 (as in SQLite).
public final class SQLiteStatement {
  private let connection: SQLiteConnection
  private let statement: OpaquePointer

  init(connection: SQLiteConnection, statement: OpaquePointer) {
    self.connection = connection
    self.statement = statement
  }

  deinit { sqlite3_finalize(statement) }

  // MARK: Binding

  /// Binds an integer to parameter `index` (1-based).
  /// - Throws: `StoreError.database`.
  public func bind(_ value: Int64, at index: Int32) throws {
    try connection.translating { try checkResult(sqlite3_bind_int64(statement, index, value), "bind") }
  }

  /// Binds a double to parameter `index` (1-based).
  /// - Throws: `StoreError.database`.
  public func bind(_ value: Double, at index: Int32) throws {
    try connection.translating { try checkResult(sqlite3_bind_double(statement, index, value), "bind") }
  }

  /// Binds text to parameter `index` (1-based).
  /// - Throws: `StoreError.database`.
  public func bind(_ value: String, at index: Int32) throws {
    try connection.translating { try bindChecked(value, at: index) }
  }

  /// Binds a blob to parameter `index` (1-based); an empty array binds a zero-length blob (`x''`),
  /// not NULL.
  /// - Throws: `StoreError.database`.
  public func bind(_ value: [UInt8], at index: Int32) throws {
    try connection.translating {
      let rc = value.withUnsafeBytes { raw -> Int32 in
        if raw.isEmpty { return sqlite3_bind_zeroblob(statement, index, 0) }
        return sqlite3_bind_blob(statement, index, raw.baseAddress, Int32(raw.count), SQLiteStatement.transient)
      }
      try checkResult(rc, "bind")
    }
  }

  /// Binds NULL to parameter `index` (1-based).
  /// - Throws: `StoreError.database`.
  public func bindNull(at index: Int32) throws {
    try connection.translating { try checkResult(sqlite3_bind_null(statement, index), "bind") }
  }

  /// Binds an optional integer (nil → NULL).
  /// - Throws: `StoreError.database`.
  public func bind(_ value: Int64?, at index: Int32) throws {
    if let value { try bind(value, at: index) } else { try bindNull(at: index) }
  }

  /// Binds optional text (nil → NULL).
  /// - Throws: `StoreError.database`.
  public func bind(_ value: String?, at index: Int32) throws {
    if let value { try bind(value, at: index) } else { try bindNull(at: index) }
  }

  // MARK: Stepping

  /// Advances to the next row; false when the statement is done.
  /// - Throws: `StoreError.database` naming the file (busy, corrupt, constraint, ...).
  @discardableResult
  public func step() throws -> Bool {
    try connection.translating { try stepChecked() }
  }

  /// Resets the statement so it can run again (bindings are kept).
  public func reset() {
    sqlite3_reset(statement)
  }

  // MARK: Columns

  /// The number of result columns.
  public var columnCount: Int { Int(sqlite3_column_count(statement)) }

  /// The name of result column `index`.
  public func columnName(_ index: Int) -> String {
    sqlite3_column_name(statement, Int32(index)).map { String(cString: $0) } ?? ""
  }

  /// The storage class of column `index` in the current row.
  public func columnType(_ index: Int) -> SQLiteColumnType {
    switch sqlite3_column_type(statement, Int32(index)) {
    case SQLITE_INTEGER: return .integer
    case SQLITE_FLOAT: return .float
    case SQLITE_TEXT: return .text
    case SQLITE_BLOB: return .blob
    default: return .null
    }
  }

  /// Whether column `index` is NULL in the current row.
  public func isNull(_ index: Int) -> Bool { columnType(index) == .null }

  /// Column `index` as an integer (SQLite's conversion rules; NULL → 0).
  public func int64(_ index: Int) -> Int64 { sqlite3_column_int64(statement, Int32(index)) }

  /// Column `index` as a double (SQLite's conversion rules; NULL → 0).
  public func double(_ index: Int) -> Double { sqlite3_column_double(statement, Int32(index)) }

  /// Column `index` as text; nil when NULL.
  public func text(_ index: Int) -> String? {
    guard let pointer = sqlite3_column_text(statement, Int32(index)) else { return nil }
    let count = Int(sqlite3_column_bytes(statement, Int32(index)))
    return String(decoding: UnsafeBufferPointer(start: pointer, count: count), as: UTF8.self)
  }

  /// Column `index` as bytes (a zero-length blob and NULL both give an empty array; use `isNull`
  /// to tell them apart).
  public func blob(_ index: Int) -> [UInt8] {
    guard let pointer = sqlite3_column_blob(statement, Int32(index)) else { return [] }
    let count = Int(sqlite3_column_bytes(statement, Int32(index)))
    return Array(UnsafeRawBufferPointer(start: pointer, count: count))
  }

  // MARK: Internals

  static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

  func bindChecked(_ value: String, at index: Int32) throws {
    try checkResult(sqlite3_bind_text(statement, index, value, -1, SQLiteStatement.transient), "bind")
  }

  func stepChecked() throws -> Bool {
    let rc = sqlite3_step(statement)
    switch rc {
    case SQLITE_ROW: return true
    case SQLITE_DONE: return false
    default: throw connection.failure(rc, "step")
    }
  }

  private func checkResult(_ rc: Int32, _ operation: String) throws {
    if rc != SQLITE_OK { throw connection.failure(rc, operation) }
  }
}

/// Process-wide SQLite settings, applied once at start-up before anything opens a database.
public enum SQLiteProcessSetup {
  /// Turns SQLite's allocation statistics off, so that threads snapshotting different files do
  /// not queue on its global memory mutex. A no-op when SQLite is already initialised.
  public static func configure() {
    _ = tgsess_sqlite_disable_memstatus()
  }
}

import Foundation
import GRDBSQLite

#if canImport(Glibc)
  import Glibc
#endif

/// Reads Telethon and Pyrogram-family session files strictly read-only and says what they hold,
/// or precisely why they cannot be used.
///
/// The file is opened with `SQLITE_OPEN_READONLY` only after cheap structural checks (size,
/// header, declared page count, a hot `-journal` beside it). Nothing is ever written: no DDL, no
/// journal-mode change, no rollback of a hot journal, no file created where none exists. (SQLite
/// itself creates empty `-wal`/`-shm` siblings when a WAL-mode file without them is read; that is
/// SQLite's own locking protocol, the session file is not touched.)
public enum SessionFileInspector {
  /// The first 16 bytes of every SQLite database file.
  static let sqliteMagic = Array("SQLite format 3\0".utf8)
  /// The first 8 bytes of a rollback journal whose header was synced: such a journal is hot when
  /// no writer holds the file (a live writer that has not spilled leaves the header zeroed).
  static let journalMagic: [UInt8] = [0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7]

  /// Telethon schema versions this reader understands (columns are read by name).
  public static let telethonVersions = 2...8
  /// Pyrogram-family schema versions this reader understands.
  public static let pyrogramVersions = 1...7

  /// Inspects the session file at `path` without changing it.
  /// - Parameter busyTimeoutMS: how long to wait while a writer holds an exclusive lock.
  /// - Returns: format, identity (dc, address, port, key), owner and counters.
  /// - Parameter verifiesPages: also run `PRAGMA quick_check` over every page (off for the fast
  ///   health scan; `check --deep`, backups and restores keep it on).
  /// - Throws: `StoreError.session(object: path, reason:)` with a precise `SessionProblem`:
  ///   `.missingFile`, `.emptyFile`, `.notSQLite`, `.truncated`, `.hotJournal`, `.walNotReadable`,
  ///   `.locked`, `.unknownSchema`, `.unsupportedVersion`, `.noSessionsRow`, `.multipleSessionsRows`,
  ///   `.authKeyMissing`, `.authKeyWrongLength`, `.authKeyAllZero`, `.dcOutOfRange`,
  ///   `.testModeDCOutOfRange`, `.serverAddressMissing`, `.badAddress`, `.portMissing`, `.badPort`,
  ///   `.invalidField`, `.unreadable`.
  public static func inspect(path: String, busyTimeoutMS: Int32 = 2000, verifiesPages: Bool = true) throws
    -> SessionFileInfo
  {
    var problems: [String] = []
    return try inspect(
      path: path, busyTimeoutMS: busyTimeoutMS, pageCheck: verifiesPages ? .quick : .none, problems: &problems)!
  }

  /// How much of the file's b-tree structure an inspection checks.
  public enum PageCheck: Sendable {
    case none
    /// `PRAGMA quick_check`; a failure is `.truncated`.
    case quick
    /// `PRAGMA integrity_check`, whose findings are returned rather than thrown.
    case integrity
  }

  /// Inspects like `inspect(path:)` in one connection and one read transaction, with the page
  /// check chosen. With `.integrity`, a file that fails integrity_check returns nil and its
  /// problems in `problems` (a restore reports them against its archive).
  /// - Throws: `StoreError.session(object: path, reason:)` as `inspect(path:)`.
  public static func inspect(
    path: String, busyTimeoutMS: Int32 = 2000, pageCheck: PageCheck, problems: inout [String]
  ) throws -> SessionFileInfo? {
    func fail(_ reason: SessionProblem) -> StoreError { .session(object: path, reason: reason) }

    // 1. Structure, before SQLite sees the file.
    let header = try readHeader(path: path, fail: fail)
    // The journal first: a writer mid-commit (or dead in it) can leave the file shorter than
    // its header says, and the journal is the true explanation.
    let journalPath = path + "-journal"
    if isHotJournal(journalPath) { throw fail(.hotJournal(journalPath)) }
    let walPath = path + "-wal"
    let hasWAL = ((try? FileSystem.size(of: walPath)) ?? 0) > 0
    try checkDeclaredSize(header, hasWAL: hasWAL, fail: fail)
    let isWALMode = header.bytes[18] == 2 && header.bytes[19] == 2

    // 2. Open read-only and read everything in one read transaction.
    do {
      let connection = try SQLiteConnection(checkedPath: path, mode: .readOnly, busyTimeoutMS: busyTimeoutMS)
      try connection.execChecked("BEGIN")
      defer { try? connection.execChecked("COMMIT") }
      // quick_check reads every page; the header and size checks above catch truncation cheaply.
      switch pageCheck {
      case .none: break
      case .quick:
        if !(try connection.integrityCheckChecked(quick: true)).isEmpty { throw fail(.truncated) }
      case .integrity:
        let rows = try connection.integrityCheckChecked(quick: false)
        if !rows.isEmpty {
          problems = rows
          return nil
        }
      }
      var info = try read(connection, isWALMode: isWALMode, fail: fail)
      info.journalMode = isWALMode ? "wal" : "rollback"
      return info
    } catch let failure as SQLiteFailure {
      throw fail(problem(for: failure, journalPath: journalPath, isWALMode: isWALMode))
    }
  }

  /// Inspects an in-memory snapshot of the session file `object` (from
  /// `SQLiteSnapshot.takeInMemory`): the same page check and schema reading as
  /// `inspect(path:)`, with problems reported against `object`. The structural file checks do
  /// not apply: SQLite built the image itself.
  /// - Throws: `StoreError.session(object:reason:)`.
  public static func inspect(snapshot: SQLiteImage, object: String, verifiesPages: Bool = true) throws
    -> SessionFileInfo
  {
    func fail(_ reason: SessionProblem) -> StoreError { .session(object: object, reason: reason) }
    do {
      if verifiesPages, !(try snapshot.connection.integrityCheckChecked(quick: true)).isEmpty {
        throw fail(.truncated)
      }
      var info = try read(snapshot.connection, isWALMode: snapshot.isWALMode, fail: fail)
      info.path = object
      info.journalMode = snapshot.isWALMode ? "wal" : "rollback"
      return info
    } catch let failure as SQLiteFailure {
      throw fail(problem(for: failure, journalPath: object + "-journal", isWALMode: snapshot.isWALMode))
    }
  }

  // MARK: - Structure

  struct Header {
    var bytes: [UInt8]
    var fileSize: Int64
  }

  private static func readHeader(path: String, fail: (SessionProblem) -> StoreError) throws -> Header {
    var info = stat()
    guard stat(path, &info) == 0 else {
      let code = errno
      if code == ENOENT || code == ENOTDIR { throw fail(.missingFile) }
      throw fail(unreadable("stat", code))
    }
    guard (info.st_mode & S_IFMT) == S_IFREG else { throw fail(.unreadable("not a regular file")) }
    guard info.st_size > 0 else { throw fail(.emptyFile) }
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw fail(unreadable("open", errno)) }
    defer { close(fd) }
    var bytes = [UInt8](repeating: 0, count: 100)
    let count = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 100, 0) }
    guard count >= 0 else { throw fail(unreadable("read", errno)) }
    let prefix = Array(bytes[0..<count])
    if count < sqliteMagic.count {
      // The beginning of a header cut short is a truncated file, anything else is not SQLite.
      throw fail(Array(sqliteMagic.prefix(count)) == prefix ? .truncated : .notSQLite)
    }
    guard Array(prefix.prefix(sqliteMagic.count)) == sqliteMagic else { throw fail(.notSQLite) }
    guard count == 100 else { throw fail(.truncated) }
    return Header(bytes: bytes, fileSize: Int64(info.st_size))
  }

  /// A call on the file that failed with `code`: a read error (the disk, a permission) says
  /// nothing about the file's content, anything else makes it unreadable.
  private static func unreadable(_ call: String, _ code: Int32) -> SessionProblem {
    let text = "\(call): \(String(cString: strerror(code)))"
    return readErrnos.contains(code) ? .readError(text) : .unreadable(text)
  }

  /// The errnos of a call on the file that say nothing about its content.
  static let readErrnos: Set<Int32> = SQLiteIOError.readErrnos.union([EACCES, EPERM])

  /// A file shorter than the page count its header vouches for has lost its tail. (In WAL mode
  /// newer pages may live in the -wal, so the check is skipped when one exists.)
  private static func checkDeclaredSize(_ header: Header, hasWAL: Bool, fail: (SessionProblem) -> StoreError) throws {
    let bytes = header.bytes
    func u32(_ offset: Int) -> UInt32 { bytes[offset..<offset + 4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) } }
    let rawPageSize = Int(bytes[16]) << 8 | Int(bytes[17])
    let pageSize = rawPageSize == 1 ? 65536 : rawPageSize
    guard pageSize >= 512, pageSize <= 65536, pageSize & (pageSize - 1) == 0 else { throw fail(.truncated) }
    let pageCount = u32(28)
    // The in-header size is valid only when "version-valid-for" equals the change counter.
    guard !hasWAL, pageCount > 0, u32(92) == u32(24) else { return }
    if header.fileSize < Int64(pageCount) * Int64(pageSize) { throw fail(.truncated) }
  }

  /// Whether `journalPath` is a rollback journal whose synced header marks it hot.
  static func isHotJournal(_ journalPath: String) -> Bool {
    let fd = open(journalPath, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var bytes = [UInt8](repeating: 0, count: journalMagic.count)
    let count = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, journalMagic.count, 0) }
    guard count == journalMagic.count && bytes == journalMagic else { return false }
    // A journal is hot only when no connection holds the RESERVED lock: while a live writer
    // (Telethon between saves) holds it, the journal belongs to an open transaction, and readers
    // see the last committed state.
    return !isReservedLockHeld(databasePath: String(journalPath.dropLast("-journal".count)))
  }

  /// Whether another process holds SQLite's RESERVED lock (a POSIX lock on byte 0x40000001).
  static func isReservedLockHeld(databasePath: String) -> Bool {
    let fd = open(databasePath, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var lock = flock()
    lock.l_type = Int16(F_WRLCK)
    lock.l_whence = Int16(SEEK_SET)
    lock.l_start = 0x4000_0001
    lock.l_len = 1
    guard fcntl(fd, F_GETLK, &lock) == 0 else { return false }
    return lock.l_type != Int16(F_UNLCK)
  }

  private static func problem(for failure: SQLiteFailure, journalPath: String, isWALMode: Bool) -> SessionProblem {
    let name = String(cString: sqlite3_errstr(failure.code))
    // A failed read is not damage (SQLite reports EIO on a read as SQLITE_CORRUPT): the file may
    // be healthy, and nothing may be restored over it for this.
    if failure.code != SQLiteExtendedCode.ioErrShortRead,
      SQLiteIOError.isIOFailure(code: failure.code, systemErrno: failure.systemErrno)
    {
      let words = SQLiteIOError.describe(extendedCode: failure.code)?.words ?? "read error"
      let cause = failure.systemErrno != 0 ? String(cString: strerror(failure.systemErrno)) : "SQLite kept no errno"
      return .readError("\(failure.operation): \(words), \(cause)")
    }
    // SQLite could not open the file for a reason that is not its content (EIO, a permission).
    if [SQLITE_CANTOPEN, SQLITE_PERM].contains(failure.primaryCode), !isWALMode,
      readErrnos.contains(failure.systemErrno)
    {
      return .readError("\(failure.operation): \(String(cString: strerror(failure.systemErrno)))")
    }
    switch failure.code {
    case SQLiteExtendedCode.readonlyRollback:
      return .hotJournal(journalPath)
    case SQLiteExtendedCode.ioErrShortRead:
      return .truncated
    default:
      break
    }
    switch failure.primaryCode {
    case SQLITE_CORRUPT, SQLITE_NOTADB:
      return .truncated
    case SQLITE_BUSY, SQLITE_LOCKED:
      return .locked("\(failure.message) during \(failure.operation)")
    case SQLITE_READONLY where isWALMode, SQLITE_CANTOPEN where isWALMode:
      return .walNotReadable("\(failure.message), \(name)")
    default:
      return .unreadable("\(failure.operation): \(failure.message), \(name)")
    }
  }

  // MARK: - Schema

  /// Identifies the file's library by its table layout, then reads it by column name.
  private static func read(
    _ connection: SQLiteConnection, isWALMode: Bool, fail: (SessionProblem) -> StoreError
  ) throws -> SessionFileInfo {
    let layout = try SessionLayout.read(connection, isWALMode: isWALMode)
    switch SessionLayoutCatalog.identify(layout) {
    case .unknownSchema(let detail): throw fail(.unknownSchema(detail))
    case .unknownLayout(let detail): throw fail(.unknownLayout(detail))
    case .known(let match):
      if case .telethon = match.family {
        return try readTelethon(connection, layout: layout, match: match, fail: fail)
      }
      return try readPyrogram(connection, layout: layout, match: match, fail: fail)
    }
  }

  private static func schemaVersion(
    _ connection: SQLiteConnection, column: String, family: String, fail: (SessionProblem) -> StoreError
  ) throws -> Int {
    let statement = try connection.prepareChecked("SELECT \(column) FROM version")
    var versions: [Int64] = []
    while try statement.stepChecked() { versions.append(statement.int64(0)) }
    guard versions.count == 1, let version = versions.first else {
      throw fail(.unknownSchema("\(family) version table has \(versions.count) rows instead of 1"))
    }
    return Int(version)
  }

  /// Selects the one sessions row, checking the row count first.
  private static func sessionsRow(
    _ connection: SQLiteConnection, columns: [String], fail: (SessionProblem) -> StoreError
  ) throws -> SQLiteStatement {
    let count = try count(connection, "SELECT count(*) FROM sessions")
    if count == 0 { throw fail(.noSessionsRow) }
    if count > 1 { throw fail(.multipleSessionsRows(count)) }
    let statement = try connection.prepareChecked("SELECT \(columns.joined(separator: ", ")) FROM sessions")
    guard try statement.stepChecked() else { throw fail(.noSessionsRow) }
    return statement
  }

  private static func count(_ connection: SQLiteConnection, _ sql: String) throws -> Int {
    let statement = try connection.prepareChecked(sql)
    return try statement.stepChecked() ? Int(statement.int64(0)) : 0
  }

  private static func authKey(
    _ statement: SQLiteStatement, _ index: Int, fail: (SessionProblem) -> StoreError
  ) throws -> AuthKey {
    let bytes = statement.blob(index)
    if statement.isNull(index) || bytes.isEmpty { throw fail(.authKeyMissing) }
    if bytes.count != AuthKey.byteCount { throw fail(.authKeyWrongLength(bytes.count)) }
    let key = try AuthKey(bytes: bytes)
    if key.isAllZero { throw fail(.authKeyAllZero) }
    return key
  }

  private static func integer(
    _ statement: SQLiteStatement, _ index: Int, field: String, fail: (SessionProblem) -> StoreError
  ) throws -> Int64? {
    switch statement.columnType(index) {
    case .null: return nil
    case .integer: return statement.int64(index)
    default: throw fail(.invalidField("\(field) is not an integer"))
    }
  }

  private static func validatedAddress(
    _ statement: SQLiteStatement, _ index: Int, fail: (SessionProblem) -> StoreError
  ) throws -> String? {
    guard let address = statement.text(index) else { return nil }
    guard IPAddress.bytes(address.trimmingCharacters(in: .whitespaces)) != nil else { throw fail(.badAddress(address)) }
    return address
  }

  private static func validatedPort(
    _ statement: SQLiteStatement, _ index: Int, fail: (SessionProblem) -> StoreError
  ) throws -> Int? {
    guard let port = try integer(statement, index, field: "port", fail: fail) else { return nil }
    guard (1...65535).contains(port) else { throw fail(.badPort(Int(clamping: port))) }
    return Int(port)
  }

  /// Row count and newest date of `update_state`, accepting INTEGER and REAL dates.
  private static func updateState(_ connection: SQLiteConnection, tables: [String]) throws -> (Int?, Double?) {
    guard tables.contains("update_state") else { return (nil, nil) }
    let statement = try connection.prepareChecked("SELECT count(*), max(date) FROM update_state")
    guard try statement.stepChecked() else { return (0, nil) }
    let latest: Double?
    switch statement.columnType(1) {
    case .integer, .float: latest = statement.double(1)
    default: latest = nil
    }
    return (Int(statement.int64(0)), latest)
  }

  // MARK: Telethon

  private static func readTelethon(
    _ connection: SQLiteConnection, layout: SessionLayout, match: SessionLayoutMatch,
    fail: (SessionProblem) -> StoreError
  ) throws -> SessionFileInfo {
    let tables = layout.tables
    let version = try schemaVersion(connection, column: "version", family: "Telethon", fail: fail)
    guard telethonVersions.contains(version) else {
      throw fail(
        .unsupportedVersion(
          "\(version) of Telethon (tgsess reads \(telethonVersions.lowerBound)-\(telethonVersions.upperBound))"))
    }
    if let problem = SessionLayoutCatalog.problem(version: version, match: match, layout: layout) {
      throw fail(problem)
    }
    let columns = layout.columns["sessions"] ?? []
    let hasTakeout = columns.contains("takeout_id")
    let hasTmpKey = columns.contains("tmp_auth_key")
    var selected = ["dc_id", "server_address", "port", "auth_key"]
    if hasTakeout { selected.append("takeout_id") }
    if hasTmpKey { selected.append("tmp_auth_key") }
    let row = try sessionsRow(connection, columns: selected, fail: fail)

    // Key first: a never-logged-in file also has dc 0 and no address, and "no key" says why.
    let key = try authKey(row, 3, fail: fail)
    let dcID = try integer(row, 0, field: "dc_id", fail: fail) ?? 0
    guard (1...5).contains(dcID) else { throw fail(.dcOutOfRange(Int(clamping: dcID))) }
    guard let address = try validatedAddress(row, 1, fail: fail) else { throw fail(.serverAddressMissing) }
    guard let port = try validatedPort(row, 2, fail: fail) else { throw fail(.portMissing) }
    let takeoutID = hasTakeout ? try integer(row, 4, field: "takeout_id", fail: fail) : nil
    let hasTmpAuthKey = hasTmpKey ? !row.blob(selected.count - 1).isEmpty : false

    var ownerUserID: Int64?
    var entityCount = 0
    if let entityColumns = layout.columns["entities"] {
      if entityColumns.contains("id"), entityColumns.contains("hash") {
        let owner = try connection.prepareChecked("SELECT hash FROM entities WHERE id = 0")
        if try owner.stepChecked() { ownerUserID = try integer(owner, 0, field: "entities.hash of id 0", fail: fail) }
        entityCount = try count(connection, "SELECT count(*) FROM entities WHERE id != 0")
      }
    }
    let (updateStateCount, latestUpdateDate) = try updateState(connection, tables: tables)
    return SessionFileInfo(
      path: connection.path, format: match.format(version: version),
      identity: SessionIdentity(dcID: Int(dcID), serverAddress: address, port: port, authKey: key),
      ownerUserID: ownerUserID, takeoutID: takeoutID, entityCount: entityCount, updateStateCount: updateStateCount,
      latestUpdateDate: latestUpdateDate, hasTmpAuthKey: hasTmpAuthKey)
  }

  // MARK: Pyrogram family

  private static func readPyrogram(
    _ connection: SQLiteConnection, layout: SessionLayout, match: SessionLayoutMatch,
    fail: (SessionProblem) -> StoreError
  ) throws -> SessionFileInfo {
    let tables = layout.tables
    let version = try schemaVersion(connection, column: "number", family: "Pyrogram", fail: fail)
    guard pyrogramVersions.contains(version) else {
      throw fail(
        .unsupportedVersion(
          "\(version) of Pyrogram/kurigram/pyrofork/Hydrogram (tgsess reads \(pyrogramVersions.lowerBound)-\(pyrogramVersions.upperBound))"
        ))
    }
    if let problem = SessionLayoutCatalog.problem(version: version, match: match, layout: layout) {
      throw fail(problem)
    }
    let columns = layout.columns["sessions"] ?? []
    var selected = ["dc_id", "test_mode", "auth_key", "user_id", "is_bot"]
    for optional in ["api_id", "server_address", "port"] where columns.contains(optional) { selected.append(optional) }
    func index(_ name: String) -> Int? { selected.firstIndex(of: name) }
    let row = try sessionsRow(connection, columns: selected, fail: fail)

    let key = try authKey(row, 2, fail: fail)
    let isTestMode = (try integer(row, 1, field: "test_mode", fail: fail) ?? 0) != 0
    let dcID = try integer(row, 0, field: "dc_id", fail: fail) ?? 0
    if isTestMode {
      guard (1...3).contains(dcID) else { throw fail(.testModeDCOutOfRange(Int(clamping: dcID))) }
    } else {
      guard (1...5).contains(dcID) else { throw fail(.dcOutOfRange(Int(clamping: dcID))) }
    }
    let address = try index("server_address").flatMap { try validatedAddress(row, $0, fail: fail) }
    let port = try index("port").flatMap { try validatedPort(row, $0, fail: fail) }
    let apiID = try index("api_id").flatMap { try integer(row, $0, field: "api_id", fail: fail) }
    let userID = try integer(row, 3, field: "user_id", fail: fail)
    let isBot = try integer(row, 4, field: "is_bot", fail: fail).map { $0 != 0 }

    let entityCount = tables.contains("peers") ? try count(connection, "SELECT count(*) FROM peers") : 0
    let (updateStateCount, latestUpdateDate) = try updateState(connection, tables: tables)
    return SessionFileInfo(
      path: connection.path, format: match.format(version: version),
      identity: SessionIdentity(dcID: Int(dcID), serverAddress: address, port: port, authKey: key),
      ownerUserID: userID, apiID: apiID.map { Int($0) }, isTestMode: isTestMode, isBot: isBot,
      entityCount: entityCount, updateStateCount: updateStateCount, latestUpdateDate: latestUpdateDate)
  }
}

import Foundation
import GRDB
import GRDBSQLite

/// The bot's SQLite database (`data/telegram_bot.db`): the seed's `user_sessions` and
/// `session_backups` tables plus what tgsess adds. It is opened so that a live Python bot keeps
/// working: a busy timeout, short transactions, and the journal mode left as the bot set it.
public final class BotDatabase: @unchecked Sendable {
  /// How to open the database.
  public enum OpenMode: Sendable {
    /// Never writes (check, list, dry runs).
    case readOnly
    /// Reads and writes an existing database.
    case readWrite
    /// Reads and writes, creating the file (and its directory) when missing.
    case create
  }

  public let path: String
  let queue: DatabaseQueue

  /// Opens the database at `path`.
  /// - Throws: `StoreError.missing` when it does not exist (and `mode` is not `.create`),
  ///   `StoreError.database` when it is not a usable SQLite database.
  public init(path: String, mode: OpenMode, busyTimeoutMS: Int = 5000) throws {
    self.path = path
    if mode != .create, !FileSystem.exists(path) {
      throw StoreError.missing(
        path: path, hint: "run tgsess migrate to create it, or pass the right --root/--config")
    }
    if mode == .create {
      try FileSystem.makeDirectory(FileSystem.parentDirectory(of: path))
    }
    let isNew = !FileSystem.exists(path)
    var configuration = Configuration()
    configuration.readonly = mode == .readOnly
    configuration.busyMode = Self.pollingBusyMode(timeoutMS: busyTimeoutMS)
    configuration.foreignKeysEnabled = false
    configuration.label = "bot-db"
    do {
      queue = try DatabaseQueue(path: path, configuration: configuration)
      // Touch the schema now so a corrupt or foreign file fails here, with its path.
      _ = try queue.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM sqlite_master") }
    } catch {
      throw BotDatabase.describe(error, path: path, doing: "open", readsBackIfDamaged: true)
    }
    if isNew, FileSystem.exists(path) { chmod(path, FileSystem.fileMode) }
  }

  /// The journal mode the database file uses (`delete`, `truncate`, `persist`, `wal`, ...).
  /// - Throws: `StoreError.database` naming the file.
  public func journalMode() throws -> String {
    do {
      return try queue.read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") ?? "" }.lowercased()
    } catch {
      throw BotDatabase.describe(error, path: path, doing: "read the journal mode")
    }
  }

  /// Switches the database to WAL, which SQLite records in the file, so every later connection
  /// (the bot's too) uses it: readers (a backup) and the writer never wait for each other. The
  /// file gains `-wal` and `-shm` companions in its directory.
  /// - Throws: `StoreError.database` naming the file when SQLite keeps the old mode (another
  ///   connection holds it open in a way that prevents the switch) or the switch fails.
  public func switchToWAL() throws {
    let mode: String?
    do {
      mode = try queue.writeWithoutTransaction { db in try String.fetchOne(db, sql: "PRAGMA journal_mode=WAL") }
    } catch {
      throw BotDatabase.describe(error, path: path, doing: "switch to WAL")
    }
    guard mode?.lowercased() == "wal" else {
      throw StoreError.database(
        path: path, reason: "SQLite kept the \(mode ?? "old") journal mode instead of switching to WAL",
        hint: "stop the bot, run tgsess migrate --wal again, then start the bot")
    }
  }

  /// Lets SQLite roll back a hot journal beside the database at `path`, if there is one: a
  /// writer killed mid-transaction (the bot, or a tgsess run recording a backup) or a power cut
  /// leaves one that makes every read-only open fail, and a read-write open rolls it back, as the
  /// bot's own next open would. A live writer's journal is not hot and stays. Best effort: when
  /// the database cannot be opened read-write, the read that follows reports why.
  public static func rollBackHotJournal(path: String, busyTimeoutMS: Int) {
    guard FileSystem.exists(path + "-journal") else { return }
    let writer = try? BotDatabase(path: path, mode: .readWrite, busyTimeoutMS: busyTimeoutMS)
    writer?.close()
  }

  /// Waits up to `timeoutMS` for another connection's lock, retrying about every millisecond.
  /// SQLite's own timeout backs off to 100 ms sleeps: a bot that commits every few milliseconds
  /// holds its write lock almost all the time and frees it only for instants, which such long
  /// sleeps keep missing until the timeout ends (the torture suite's live writer starved
  /// tgsess's `session_backups` writes this way).
  static func pollingBusyMode(timeoutMS: Int) -> Database.BusyMode {
    let clock = BusyClock()
    return .callback { tries in
      let now = DispatchTime.now().uptimeNanoseconds
      if tries == 0 { clock.start = now }
      guard now - clock.start < UInt64(max(timeoutMS, 0)) * 1_000_000 else { return false }
      usleep(UInt32.random(in: 300...1500))
      return true
    }
  }

  /// When the current wait for a lock began (one connection waits on one statement at a time).
  private final class BusyClock: @unchecked Sendable {
    var start: UInt64 = 0
  }

  /// Maps a GRDB error to a one-line StoreError that names the file and the next step. A failed
  /// read or write is an I/O error (`SQLiteIOError`), never "corrupted": SQLite reports a read
  /// that failed with EIO as damage, and keeps the errno (`systemErrno`). With
  /// `readsBackIfDamaged` (the connection is gone, so is the errno), damage reported for a file
  /// that then opens and reads back is reported as the failed read it was.
  static func describe(
    _ error: any Error, path: String, doing operation: String, systemErrno: Int32 = 0,
    readsBackIfDamaged: Bool = false
  ) -> StoreError {
    if let error = error as? StoreError { return error }
    guard let error = error as? DatabaseError else {
      return .database(path: path, reason: "\(operation) failed", hint: "check the file and run again")
    }
    let code = error.extendedResultCode.rawValue
    if SQLiteIOError.isIOFailure(code: code, systemErrno: systemErrno) {
      return SQLiteIOError.storeError(path: path, operation: operation, code: code, systemErrno: systemErrno)
    }
    if readsBackIfDamaged, error.resultCode == .SQLITE_CORRUPT || error.resultCode == .SQLITE_NOTADB,
      SQLiteIOError.readsBack(path: path)
    {
      return .database(
        path: path,
        reason:
          "\(operation) failed: SQLite reported the file damaged (\(error.resultCode == .SQLITE_NOTADB ? "SQLITE_NOTADB" : "SQLITE_CORRUPT")), but it reads back: the read failed (a disk I/O error), not damage",
        hint: "check the disk (dmesg), then run again")
    }
    switch error.resultCode {
    case .SQLITE_NOTADB, .SQLITE_CORRUPT:
      return .database(
        path: path, reason: "not an SQLite database, or corrupted (\(operation))",
        hint: "restore it from a backup: tgsess restore latest")
    case .SQLITE_BUSY, .SQLITE_LOCKED:
      return .database(
        path: path, reason: "database is locked by another process (\(operation))",
        hint: "retry later, or raise busy_timeout_ms")
    case .SQLITE_READONLY:
      // SQLite reports a journal it could not create or open as read-only; the errno says why.
      let cause = systemErrno != 0 ? ": " + String(cString: strerror(systemErrno)) : ""
      return .database(
        path: path, reason: "read-only (\(operation))\(cause)", hint: "check the file's owner and mode")
    case .SQLITE_CANTOPEN, .SQLITE_PERM, .SQLITE_AUTH:
      if systemErrno == ENOENT, FileSystem.exists(path) {
        return SQLiteIOError.journalCreationFailure(path: path, operation: operation)
      }
      // GRDB closes a connection that failed to open, and the errno SQLite kept with it.
      let cause = systemErrno != 0 ? ": " + String(cString: strerror(systemErrno)) : "; SQLite kept no error number"
      return .database(
        path: path, reason: "cannot open (\(operation))\(cause)", hint: "check the path, its permissions and the disk")
    case .SQLITE_FULL:
      return .database(path: path, reason: "disk full (\(operation))", hint: "free space and run again")
    default:
      // GRDB keeps statement arguments out of its messages (publicStatementArguments is off).
      // SQLite says "disk I/O error" for EIO, EDQUOT and EACCES alike: the errno names the cause.
      return .database(
        path: path,
        reason: "\(operation) failed: SQLite error \(error.resultCode.rawValue) \(error.message ?? "")",
        hint: "check the database with: sqlite3 \(path) 'PRAGMA integrity_check'")
    }
  }

  /// Runs `body` in a read transaction.
  /// - Throws: `StoreError.database`.
  public func read<T>(_ operation: String, _ body: (Database) throws -> T) throws -> T {
    do { return try queue.read(body) } catch {
      throw BotDatabase.describe(error, path: path, doing: operation, systemErrno: systemErrno())
    }
  }

  /// The errno behind the connection's last I/O failure (`sqliteSystemErrno`).
  func systemErrno() -> Int32 {
    queue.inDatabase { db in db.sqliteConnection.map(sqliteSystemErrno) ?? 0 }
  }

  /// Runs `body` in one write transaction; a crash midway leaves the previous state.
  /// - Throws: `StoreError.database`.
  public func write<T>(_ operation: String, _ body: (Database) throws -> T) throws -> T {
    do { return try queue.write(body) } catch {
      throw BotDatabase.describe(error, path: path, doing: operation, systemErrno: systemErrno())
    }
  }

  /// Takes a consistent copy through SQLite's online backup API into a new file at
  /// `destinationPath` (written under a temporary name, fsynced, renamed; mode 0600).
  /// - Throws: `StoreError` naming the source or the destination.
  public func backup(to destinationPath: String) throws {
    try FileSystem.makeDirectory(FileSystem.parentDirectory(of: destinationPath))
    let tempPath = FileSystem.temporaryPath(for: destinationPath)
    var isDone = false
    defer {
      if !isDone {
        unlink(tempPath)
        unlink(tempPath + "-journal")
      }
    }
    do {
      let fd = open(tempPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, FileSystem.fileMode)
      guard fd >= 0 else { throw StoreError.io(path: tempPath, operation: "create", errno: errno) }
      Glibc.close(fd)
      let destination = try DatabaseQueue(path: tempPath)
      try queue.backup(to: destination)
      try destination.close()
      let syncFD = open(tempPath, O_RDONLY | O_CLOEXEC)
      guard syncFD >= 0 else { throw StoreError.io(path: tempPath, operation: "open for fsync", errno: errno) }
      defer { Glibc.close(syncFD) }
      if fsync(syncFD) != 0 { throw StoreError.io(path: tempPath, operation: "fsync", errno: errno) }
    } catch {
      throw BotDatabase.describe(error, path: destinationPath, doing: "online backup of \(path)")
    }
    if rename(tempPath, destinationPath) != 0 {
      throw StoreError.io(path: destinationPath, operation: "rename into place", errno: errno)
    }
    isDone = true
    try FileSystem.fsyncDirectory(of: destinationPath)
  }

  /// `PRAGMA quick_check` (or `integrity_check` when `deep`); empty when the database is sound.
  /// - Throws: `StoreError.database` when the check itself cannot run, and an I/O error naming
  ///   the file (`SQLiteIOError`) when a page could not be read: not a finding about the file.
  public func integrityProblems(deep: Bool) throws -> [String] {
    let rows = try read("integrity check") { db in
      try String.fetchAll(db, sql: deep ? "PRAGMA integrity_check" : "PRAGMA quick_check")
    }
    if let code = SQLiteIOError.ioErrorCode(inCheckRows: rows) {
      throw SQLiteIOError.storeError(
        path: path, operation: deep ? "integrity_check" : "quick_check", code: code, systemErrno: systemErrno())
    }
    return rows == ["ok"] ? [] : rows
  }

  /// The names of the database's tables (excluding SQLite's own).
  /// - Throws: `StoreError.database`.
  public func tableNames() throws -> [String] {
    try read("list tables") { db in
      try String.fetchAll(
        db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
    }
  }

  /// Closes the connection.
  public func close() {
    try? queue.close()
  }
}

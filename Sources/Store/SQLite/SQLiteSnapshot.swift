import Foundation
import GRDBSQLite

/// Consistent copies of live SQLite files through the online backup API, for staging: the
/// source is opened read-only (never written, never rolled back, journal mode untouched) and the
/// copy shows the last committed state even while another process holds a write transaction.
public enum SQLiteSnapshot {
  /// Copies `source` into a new file at `destination` (mode 0600). The copy is not fsynced:
  /// it is a staging file that an archive will hold durably.
  /// - Throws: `StoreError.database` naming the source (busy, corrupt, hot journal) or the
  ///   destination.
  public static func take(source: String, destination: String, busyTimeoutMS: Int32 = 5000) throws {
    let from = try openSource(source, busyTimeoutMS: busyTimeoutMS)
    defer { sqlite3_close_v2(from) }
    let fd = open(destination, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, FileSystem.fileMode)
    guard fd >= 0 else { throw StoreError.io(path: destination, operation: "create", errno: errno) }
    close(fd)
    var isDone = false
    defer { if !isDone { unlink(destination) } }

    var to: OpaquePointer?
    defer { sqlite3_close_v2(to) }
    let rc = sqlite3_open_v2(destination, &to, SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE | SQLITE_OPEN_READWRITE, nil)
    guard rc == SQLITE_OK, let to else { throw failure(rc, to, "open", destination) }
    // A staging copy needs no journal and no syncs.
    sqlite3_exec(to, "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF", nil, nil, nil)
    if let code = try copy(from: from, to: to, destination: destination) {
      // sqlite3_backup_step reports both sides' errors on the destination handle, so the code
      // tells which side failed: writes (a full disk) are the staging copy's, the rest the source's.
      if isDestinationFailure(code) {
        if code & 0xff == SQLITE_FULL {
          throw StoreError.io(path: destination, operation: "write snapshot of \(source)", errno: ENOSPC)
        }
        throw SQLiteFailure(code: code, message: String(cString: sqlite3_errstr(code)), operation: "online backup")
          .storeError(path: destination)
      }
      throw sourceFailure(code, source: source)
    }
    isDone = true
  }

  /// Copies `source` into memory through the online backup API, for small files such as
  /// session files: no staging file is created, which saves an inode, a path walk and a
  /// journal probe per file (on ext4, creating and deleting thousands of staging files cost more
  /// than copying their bytes). The copy lives in SQLite's `memdb` VFS, whose one contiguous
  /// buffer is the file image, so the bytes are read without another copy.
  /// - Throws: `StoreError` naming the source (missing, empty, busy, corrupt, hot journal).
  public static func takeInMemory(source: String, busyTimeoutMS: Int32 = 5000) throws -> SQLiteImage {
    let from = try openSource(source, busyTimeoutMS: busyTimeoutMS)
    defer { sqlite3_close_v2(from) }
    let memory: SQLiteConnection
    do {
      // A name without a leading "/" is private to this connection.
      memory = try SQLiteConnection(checkedPath: "file:snapshot?vfs=memdb", mode: .memory, busyTimeoutMS: 0)
      // A WAL-mode source (Hydrogram always, kurigram with use_wal) copies its header, which
      // marks the image WAL; memdb has no shared memory for a WAL index, so without exclusive
      // locking mode (a heap WAL index) reading the image fails with "unable to open database
      // file". The image keeps its header: restored, the file is still in WAL mode.
      try memory.execChecked("PRAGMA locking_mode=EXCLUSIVE")
    } catch let failure as SQLiteFailure {
      throw failure.storeError(path: source)
    }
    let to = try memory.requireHandle()
    if let code = try copy(from: from, to: to, destination: source) { throw sourceFailure(code, source: source) }
    var size: sqlite3_int64 = 0
    let image = sqlite3_serialize(to, "main", &size, UInt32(SQLITE_SERIALIZE_NOCOPY))
    guard size > 0, let image else {
      if size == 0 { throw StoreError.session(object: source, reason: .emptyFile) }
      throw StoreError.database(
        path: source, reason: "its in-memory snapshot could not be read",
        hint: "free memory on the host and run again")
    }
    return SQLiteImage(connection: memory, bytes: UnsafeRawBufferPointer(start: image, count: Int(size)))
  }

  /// Opens the live file `source` read-only with a busy timeout; the caller closes the handle.
  /// - Throws: `StoreError` naming the source (gone, or SQLite cannot open it).
  private static func openSource(_ source: String, busyTimeoutMS: Int32) throws -> OpaquePointer {
    guard FileSystem.exists(source) else {
      throw StoreError.missing(path: source, hint: "it disappeared during the backup; run again")
    }
    var from: OpaquePointer?
    let rc = sqlite3_open_v2(source, &from, SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE | SQLITE_OPEN_READONLY, nil)
    guard rc == SQLITE_OK, let from else {
      let error = failure(rc, from, "open read-only", source)
      sqlite3_close_v2(from)
      throw error
    }
    sqlite3_busy_timeout(from, busyTimeoutMS)
    return from
  }

  /// Runs one whole online backup from `from` into `to` (`init`, `step(-1)`, `finish`).
  /// - Returns: the failing result code, or nil when the copy is complete.
  /// - Throws: `StoreError` naming `destination` when the backup cannot even start.
  private static func copy(from: OpaquePointer, to: OpaquePointer, destination: String) throws -> Int32? {
    guard let backup = sqlite3_backup_init(to, "main", from, "main") else {
      throw failure(sqlite3_extended_errcode(to), to, "start online backup", destination)
    }
    var step = sqlite3_backup_step(backup, -1)
    let finish = sqlite3_backup_finish(backup)
    if step == SQLITE_DONE { step = SQLITE_OK }
    if step != SQLITE_OK { return step }
    return finish != SQLITE_OK ? finish : nil
  }

  /// A failed read of the source, as the error a snapshot reports for it.
  private static func sourceFailure(_ code: Int32, source: String) -> StoreError {
    if code == SQLiteExtendedCode.readonlyRollback {
      return StoreError.session(object: source, reason: .hotJournal(source + "-journal"))
    }
    return SQLiteFailure(code: code, message: String(cString: sqlite3_errstr(code)), operation: "online backup")
      .storeError(path: source)
  }

  /// Whether a failed online backup failed writing the copy rather than reading the source.
  private static func isDestinationFailure(_ code: Int32) -> Bool {
    switch code & 0xff {
    case SQLITE_FULL: return true
    case SQLITE_IOERR:
      // SQLITE_IOERR_WRITE, _FSYNC, _DIR_FSYNC, _TRUNCATE: the writing side.
      return [3, 4, 5, 6].contains(code >> 8)
    default: return false
    }
  }

  private static func failure(_ rc: Int32, _ db: OpaquePointer?, _ operation: String, _ path: String) -> StoreError {
    let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(rc))
    return SQLiteFailure(code: rc, message: message, operation: operation).storeError(path: path)
  }
}

/// An SQLite file copied into memory: an in-memory connection holding the copy (for reading it)
/// and the file image (for archiving it), valid while the image lives.
public final class SQLiteImage {
  /// The in-memory database; read it only (a write could move the image).
  let connection: SQLiteConnection
  private let image: UnsafeRawBufferPointer

  init(connection: SQLiteConnection, bytes: UnsafeRawBufferPointer) {
    self.connection = connection
    image = bytes
  }

  /// The size of the file image.
  public var count: Int { image.count }

  /// Calls `body` with the bytes of the file, exactly as a file copy would hold them.
  public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
    try withExtendedLifetime(self) { try body(image) }
  }

  /// Whether the header says WAL mode (file format versions 2).
  public var isWALMode: Bool { image.count > 19 && image[18] == 2 && image[19] == 2 }
}

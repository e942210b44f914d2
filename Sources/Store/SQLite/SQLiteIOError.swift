import Foundation
import GRDBSQLite

#if canImport(Glibc)
  import Glibc
#endif

/// SQLite's I/O failures in words that name the operation and the next step, and never blame a
/// healthy file for a failed read.
///
/// SQLite reports a read that failed with EIO (also ERANGE, ENXIO) as `SQLITE_IOERR_CORRUPTFS`,
/// which its VDBE turns into plain `SQLITE_CORRUPT` before returning (os_unix.c `unixRead`): a disk
/// error reads like damage. It keeps the errno on the file (`SQLITE_FCNTL_LAST_ERRNO`), so a
/// "damaged" result with such an errno is a failed read. For failures of a journal SQLite keeps no
/// errno at all; the extended result code still says what failed (`SQLITE_IOERR_FSYNC`, ...).
public enum SQLiteIOError {
  /// The errnos behind a read that SQLite reports as damage (`unixRead`).
  static let readErrnos: Set<Int32> = [EIO, ERANGE, ENXIO]
  /// `SQLITE_IOERR | (33 << 8)`: a read failed with one of `readErrnos`.
  static let corruptFS: Int32 = SQLITE_IOERR | (33 << 8)

  /// The name of an `SQLITE_IOERR_*` extended code and what failed, in words; nil for a code that
  /// is not an I/O error.
  public static func describe(extendedCode code: Int32) -> (name: String, words: String)? {
    guard code & 0xff == SQLITE_IOERR else { return nil }
    switch code >> 8 {
    case 1: return ("SQLITE_IOERR_READ", "read error")
    case 2: return ("SQLITE_IOERR_SHORT_READ", "short read")
    case 3: return ("SQLITE_IOERR_WRITE", "write error")
    case 4: return ("SQLITE_IOERR_FSYNC", "fsync error")
    case 5: return ("SQLITE_IOERR_DIR_FSYNC", "directory fsync error")
    case 6: return ("SQLITE_IOERR_TRUNCATE", "truncate error")
    case 7: return ("SQLITE_IOERR_FSTAT", "fstat error")
    case 10: return ("SQLITE_IOERR_DELETE", "delete error")
    case 13: return ("SQLITE_IOERR_ACCESS", "access error")
    case 16: return ("SQLITE_IOERR_CLOSE", "close error")
    case 18, 19, 20, 21: return ("SQLITE_IOERR_SHM", "shared-memory error")
    case 22: return ("SQLITE_IOERR_SEEK", "seek error")
    case 24: return ("SQLITE_IOERR_MMAP", "mmap error")
    case 33: return ("SQLITE_IOERR_CORRUPTFS", "read error")
    default: return ("SQLITE_IOERR", "I/O error")
    }
  }

  /// Whether a failure is a failed read or write, not a verdict on the file: an `SQLITE_IOERR_*`
  /// code, or damage (`SQLITE_CORRUPT`, `SQLITE_NOTADB`) or a missing table (`SQLITE_ERROR`: a
  /// schema page that could not be read reads as no table) reported while the file's last errno
  /// was a read error.
  public static func isIOFailure(code: Int32, systemErrno: Int32) -> Bool {
    switch code & 0xff {
    case SQLITE_IOERR: return true
    case SQLITE_CORRUPT, SQLITE_NOTADB, SQLITE_ERROR: return readErrnos.contains(systemErrno)
    default: return false
    }
  }

  /// An I/O failure of SQLite on `path` as the error Store reports: `.io` with the errno when
  /// SQLite kept one, else `.database` naming the operation SQLite failed in and the next step.
  /// - Parameters:
  ///   - operation: what was attempted ("read rows of user 42", "quick_check").
  ///   - code: the extended result code.
  ///   - systemErrno: the errno SQLite kept (0: none).
  public static func storeError(path: String, operation: String, code: Int32, systemErrno: Int32) -> StoreError {
    let what: String
    if let described = describe(extendedCode: code) {
      what =
        code == corruptFS ? "\(described.words) (\(described.name))" : "\(described.words), \(described.name)"
    } else {
      // Damage reported for a failed read (`isIOFailure`).
      let names = [SQLITE_NOTADB: "SQLITE_NOTADB", SQLITE_ERROR: "SQLITE_ERROR"]
      what = "read error, reported by SQLite as \(names[code & 0xff] ?? "SQLITE_CORRUPT")"
    }
    if systemErrno != 0 {
      return .io(path: path, operation: "\(operation) (SQLite: \(what))", errno: systemErrno)
    }
    return .database(
      path: path, reason: "\(operation) failed: disk I/O error (\(what)); SQLite kept no error number",
      hint: "check the disk and its free space (dmesg), then run again")
  }

  /// The `SQLITE_IOERR_*` code an integrity_check or quick_check row reports for a page it could
  /// not read ("Page 6: unable to get the page. error code=8458"), if any.
  public static func ioErrorCode(inCheckRows rows: [String]) -> Int32? {
    for row in rows {
      var rest = Substring(row)
      while let marker = rest.range(of: "error code=") {
        let digits = rest[marker.upperBound...].prefix { $0.isNumber }
        if let code = Int32(digits), code & 0xff == SQLITE_IOERR { return code }
        rest = rest[marker.upperBound...]
      }
    }
    return nil
  }

  /// Whether the SQLite file at `path` opens read-only and its schema reads: asked after SQLite
  /// reported damage while opening it but kept no errno. A file that reads back was not damaged;
  /// the first read failed.
  public static func readsBack(path: String) -> Bool {
    guard let connection = try? SQLiteConnection(checkedPath: path, mode: .readOnly, busyTimeoutMS: 2000) else {
      return false
    }
    return (try? connection.textRowsChecked("SELECT count(*) FROM sqlite_master")) != nil
  }

  /// The database at `path` exists, yet SQLite says a file could not be opened, with ENOENT: that
  /// is its journal. SQLite retries a read-write open that failed as a read-only one, without O_CREAT,
  /// and keeps that retry's errno (ENOENT, as the journal does not exist), not the creation's. A
  /// new file is tried in the same directory to name the cause; when it can be made now, the
  /// failure has passed and its cause is unknown.
  static func journalCreationFailure(path: String, operation: String) -> StoreError {
    let directory = FileSystem.parentDirectory(of: path)
    let probeErrno = FileSystem.fileCreationErrno(in: directory)
    let journal = path + (isWALMode(path: path) ? "-wal" : "-journal")
    if probeErrno != 0 {
      return .database(
        path: path,
        reason:
          "cannot open (\(operation)): could not create its journal \(journal): \(String(cString: strerror(probeErrno))) (a new file in \(directory.isEmpty ? "." : directory) fails the same way)",
        hint: "free space, or make the directory writable, then run again")
    }
    return .database(
      path: path,
      reason:
        "cannot open (\(operation)): could not create its journal \(journal); SQLite kept no error number (a new file can be made there now: the fault has passed)",
      hint: "check the disk (dmesg), then run again")
  }

  /// Whether the database header at `path` says WAL mode (its write version, byte 18, is 2).
  static func isWALMode(path: String) -> Bool {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var version: UInt8 = 0
    return pread(fd, &version, 1, 18) == 1 && version == 2
  }
}

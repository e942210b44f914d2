import Foundation

/// Every failure Store reports. Each message names the object (path, user id, archive) and the
/// next step, and never contains a secret.
public enum StoreError: Error, LocalizedError, Equatable, Sendable {
  /// An I/O call failed on `path`; `operation` is what was attempted.
  case io(path: String, operation: String, errno: Int32)
  /// A file or directory that must exist does not.
  case missing(path: String, hint: String)
  /// A file exists but its content is not what it should be.
  case invalid(path: String, reason: String, hint: String)
  /// A key file or secret could not be used.
  case key(path: String, reason: String, hint: String)
  /// A permission problem that must be fixed by the operator.
  case permissions(path: String, reason: String, fix: String)
  /// The bot database refused or failed an operation.
  case database(path: String, reason: String, hint: String)
  /// A session file or string is not a valid session.
  case session(object: String, reason: SessionProblem)
  /// A cryptographic operation failed (wrong key, tampered data).
  case crypto(object: String, reason: String, hint: String)
  /// Another process holds the deployment lock.
  case locked(path: String, holder: String)
  /// A configuration value is wrong.
  case config(path: String, reason: String)

  public var errorDescription: String? {
    switch self {
    case .io(let path, let operation, let errno):
      let text = String(cString: strerror(errno))
      if errno == ENOSPC {
        return "\(path): \(operation) failed: no space left on device; free space there and run again"
      }
      if errno == EACCES || errno == EPERM {
        return "\(path): \(operation) failed: \(text); check the owner and mode of that path"
      }
      return "\(path): \(operation) failed: \(text)"
    case .missing(let path, let hint):
      return "\(path): not found; \(hint)"
    case .invalid(let path, let reason, let hint):
      return "\(path): \(reason); \(hint)"
    case .key(let path, let reason, let hint):
      return "\(path): \(reason); \(hint)"
    case .permissions(let path, let reason, let fix):
      return "\(path): \(reason); run: \(fix)"
    case .database(let path, let reason, let hint):
      return "\(path): \(reason); \(hint)"
    case .session(let object, let reason):
      return "\(object): \(reason.description)"
    case .crypto(let object, let reason, let hint):
      return "\(object): \(reason); \(hint)"
    case .locked(let path, let holder):
      return "\(path): held by \(holder); wait for it to finish, or retry with --lock-wait SECONDS"
    case .config(let path, let reason):
      return "\(path): \(reason); fix the config file (see README, Configuration)"
    }
  }
}

/// Why a session file or string was rejected. Each case is a precise, secret-free reason.
public enum SessionProblem: Error, Equatable, Sendable, CustomStringConvertible {
  case notSQLite
  /// No file at the path (the inspector never creates one).
  case missingFile
  case truncated
  case emptyFile
  case unknownSchema(String)
  case unsupportedVersion(String)
  case noSessionsRow
  case multipleSessionsRows(Int)
  case authKeyMissing
  case authKeyWrongLength(Int)
  case authKeyAllZero
  case dcOutOfRange(Int)
  case badPort(Int)
  case badAddress(String)
  case hotJournal(String)
  case badBase64
  case wrongLength(Int)
  case unknownStringVersion(String)
  case unreadable(String)
  /// The file names no server address (Telethon before `set_dc`, Pyrogram files before kurigram v7).
  case serverAddressMissing
  /// The file stores no port.
  case portMissing
  /// A Pyrogram-family session marked `test_mode` whose dc is not one of the test DCs 1-3.
  case testModeDCOutOfRange(Int)
  /// A `-wal` sibling exists but SQLite cannot read it without write access (detail says why).
  case walNotReadable(String)
  /// A field of a session string or file holds a value the format does not allow (names the field).
  case invalidField(String)
  /// Another process holds a lock that blocks even readers (detail names the lock state).
  case locked(String)

  public var description: String {
    switch self {
    case .missingFile:
      return "no session file there; check the path, or recover this user from a backup (tgsess recover --user ID)"
    case .notSQLite: return "not an SQLite database; restore this user from a backup (tgsess recover --user ID)"
    case .truncated:
      return "truncated or damaged SQLite file; restore this user from a backup (tgsess recover --user ID)"
    case .emptyFile: return "empty file (0 bytes); restore this user from a backup (tgsess recover --user ID)"
    case .unknownSchema(let detail):
      return "unknown session schema (\(detail)); not a Telethon or Pyrogram session file"
    case .unsupportedVersion(let detail):
      return "unsupported session schema version \(detail); upgrade tgsess or convert the file"
    case .noSessionsRow:
      return
        "no row in the sessions table (never logged in, or logged out); the user must log in again or recover from a backup"
    case .multipleSessionsRows(let count):
      return "\(count) rows in the sessions table where exactly one is expected; recover from a backup"
    case .authKeyMissing: return "auth key missing (logged out or never logged in); recover from a backup"
    case .authKeyWrongLength(let count): return "auth key is \(count) bytes, not 256; recover from a backup"
    case .authKeyAllZero: return "auth key is all zeros (torn copy of a live file); recover from a backup"
    case .dcOutOfRange(let dc): return "dc id \(dc) is outside 1-5; recover from a backup"
    case .badPort(let port): return "port \(port) is not a valid server port; recover from a backup"
    case .badAddress(let address): return "server address '\(address)' is not an IP address; recover from a backup"
    case .hotJournal(let path):
      return
        "hot journal \(path) beside the file (a writer is running or crashed mid-transaction); stop the bot, or let SQLite roll it back by opening the file, then check again"
    case .badBase64: return "not valid URL-safe base64; copy the whole session string again"
    case .wrongLength(let count):
      return
        "session string has \(count) characters (Telethon: 353 or 369; Pyrogram: 351, 356 or 362); copy the whole string again"
    case .unknownStringVersion(let version):
      return
        "unknown session string version '\(version)' (Telethon strings start with '1'); check where the string came from"
    case .unreadable(let detail): return "unreadable (\(detail)); check permissions and that the disk is healthy"
    case .serverAddressMissing:
      return
        "no server address stored (never connected, or a format without addresses); log in again or use a file that has one"
    case .portMissing: return "no port stored; recover from a backup"
    case .testModeDCOutOfRange(let dc):
      return "test-server session with dc id \(dc), outside the test DCs 1-3; recover from a backup"
    case .walNotReadable(let detail):
      return
        "write-ahead log beside the file cannot be read read-only (\(detail)); check the owner and mode of the -wal and -shm files, or let the bot open the file once, then check again"
    case .invalidField(let detail): return "invalid field: \(detail); copy the session again from its source"
    case .locked(let detail):
      return "locked by another process (\(detail)); wait for the bot to finish its write, then check again"
    }
  }
}

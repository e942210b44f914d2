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
      if errno == EDQUOT {
        return "\(path): \(operation) failed: \(text); free space or raise the quota there, and run again"
      }
      if errno == EIO {
        // A disk error, not damage in the file: nothing tells the operator to restore over it.
        return "\(path): \(operation) failed: \(text); check the disk (dmesg), then run again"
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

extension StoreError {
  /// Whether this is a failed read or write (the disk, a quota, a permission), not a verdict on
  /// the content of a file: the operation may succeed when run again, and nothing should be
  /// restored over the file for it.
  public var isIOFailure: Bool {
    switch self {
    case .io: return true
    case .session(_, .readError): return true
    // SQLite's I/O failures without an errno (`SQLiteIOError.storeError`).
    case .database(_, let reason, _): return reason.contains("disk I/O error")
    default: return false
    }
  }
}

/// Why a session file or string was rejected. Each case is a precise, secret-free reason
/// (`reason`) and, apart from it, what fixes it (`remedy`): the edge that reports the problem words
/// the remedy for its reader, with the user's id when it knows one.
public enum SessionProblem: Error, Equatable, Sendable, CustomStringConvertible {
  case notSQLite
  /// No file at the path (the inspector never creates one).
  case missingFile
  case truncated
  case emptyFile
  case unknownSchema(String)
  /// The tables are a session library's, but their layout matches no schema that library wrote
  /// (or not the version the file claims); the detail names the tables and columns that differ.
  case unknownLayout(String)
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
  /// Opening or reading the file failed (the disk, EIO, or a permission): the detail names the
  /// operation and the errno. Not a verdict on the file, which may be healthy.
  case readError(String)

  /// What is wrong, without what to do about it.
  public var reason: String {
    switch self {
    case .missingFile: return "no session file there"
    case .notSQLite: return "not an SQLite database"
    case .truncated: return "truncated or damaged SQLite file"
    case .emptyFile: return "empty file (0 bytes)"
    case .unknownSchema(let detail):
      return "unknown session schema (\(detail)); not a Telethon or Pyrogram session file"
    case .unknownLayout(let detail): return "unknown session table layout (\(detail))"
    case .unsupportedVersion(let detail): return "unsupported session schema version \(detail)"
    case .noSessionsRow: return "no row in the sessions table (never logged in, or logged out)"
    case .multipleSessionsRows(let count):
      return "\(count) rows in the sessions table where exactly one is expected"
    case .authKeyMissing: return "auth key missing (logged out or never logged in)"
    case .authKeyWrongLength(let count): return "auth key is \(count) bytes, not 256"
    case .authKeyAllZero: return "auth key is all zeros (torn copy of a live file)"
    case .dcOutOfRange(let dc): return "dc id \(dc) is outside 1-5"
    case .badPort(let port): return "port \(port) is not a valid server port"
    case .badAddress(let address): return "server address '\(address)' is not an IP address"
    case .hotJournal(let path):
      return "hot journal \(path) beside the file (a writer is running or crashed mid-transaction)"
    case .badBase64: return "not valid URL-safe base64"
    case .wrongLength(let count):
      return "session string has \(count) characters (Telethon: 353 or 369; Pyrogram: 351, 356 or 362)"
    case .unknownStringVersion(let version):
      return "unknown session string version '\(version)' (Telethon strings start with '1')"
    case .unreadable(let detail): return "unreadable (\(detail))"
    case .serverAddressMissing:
      return "no server address stored (never connected, or a format without addresses)"
    case .portMissing: return "no port stored"
    case .testModeDCOutOfRange(let dc): return "test-server session with dc id \(dc), outside the test DCs 1-3"
    case .walNotReadable(let detail):
      return "write-ahead log beside the file cannot be read read-only (\(detail))"
    case .invalidField(let detail): return "invalid field: \(detail)"
    case .locked(let detail): return "locked by another process (\(detail))"
    case .readError(let detail): return "could not be read (\(detail)), which says nothing about its content"
    }
  }

  /// What fixes it.
  public var remedy: SessionRemedy {
    switch self {
    case .missingFile: return .checkPathOrRecover
    case .notSQLite, .truncated, .emptyFile, .unknownSchema, .unknownLayout, .multipleSessionsRows, .authKeyMissing,
      .authKeyWrongLength, .authKeyAllZero, .dcOutOfRange, .badPort, .badAddress, .portMissing,
      .testModeDCOutOfRange:
      return .recoverFromBackup
    case .unsupportedVersion: return .upgradeTgsess
    case .noSessionsRow, .serverAddressMissing: return .logInAgainOrRecover
    case .hotJournal: return .rollBackJournal
    case .badBase64, .wrongLength, .invalidField: return .copyStringAgain
    case .unknownStringVersion: return .checkStringSource
    case .unreadable, .readError: return .checkPermissions
    case .walNotReadable: return .checkWriteAheadLog
    case .locked: return .waitForWriter
    }
  }

  /// The reason and the remedy in words that need no user id: what `StoreError` prints.
  public var description: String { "\(reason); \(remedy.advice(userID: nil))" }
}

/// What fixes a session problem, as a value. Each edge words it for its reader: the CLI and
/// `check` for the operator (`advice(userID:)`, with a runnable command when the user is known),
/// the bot in plain words for the user.
public enum SessionRemedy: String, Codable, Sendable, Equatable, CaseIterable {
  /// Restore the user's session from a backup (`tgsess recover`).
  case recoverFromBackup
  /// The path may be wrong; if not, restore the session from a backup.
  case checkPathOrRecover
  /// The session holds nothing to connect with: the user logs in again, or it is restored.
  case logInAgainOrRecover
  /// The session string was damaged on its way: copy it again from its source.
  case copyStringAgain
  /// The string is not one tgsess knows: check where it came from.
  case checkStringSource
  /// A live writer holds the file: wait for it, then check again.
  case waitForWriter
  /// A writer is running or died mid-transaction: stop it, or let SQLite roll the journal back.
  case rollBackJournal
  /// The file cannot be read: its owner and mode, or the disk.
  case checkPermissions
  /// The `-wal`/`-shm` files cannot be read without write access.
  case checkWriteAheadLog
  /// A newer format than this tgsess reads.
  case upgradeTgsess

  /// The remedy in an operator's words: with `userID`, the runnable command for that user; without
  /// one, the same advice with no command (never a placeholder such as `--user ID`).
  public func advice(userID: Int64?) -> String {
    let recover = userID.map { ": tgsess recover --user \($0)" } ?? ""
    switch self {
    case .recoverFromBackup: return "restore it from a backup" + recover
    case .checkPathOrRecover: return "check the path, or restore it from a backup" + recover
    case .logInAgainOrRecover: return "the user must log in again, or restore it from a backup" + recover
    case .copyStringAgain: return "copy the whole session string again from its source"
    case .checkStringSource: return "check where the string came from"
    case .waitForWriter: return "wait for the bot to finish its write, then check again"
    case .rollBackJournal:
      return "stop the bot, or let SQLite roll it back by opening the file, then check again"
    case .checkPermissions: return "check permissions and that the disk is healthy"
    case .checkWriteAheadLog:
      return
        "check the owner and mode of the -wal and -shm files, or let the bot open the file once, then check again"
    case .upgradeTgsess: return "upgrade tgsess, or convert the file"
    }
  }
}

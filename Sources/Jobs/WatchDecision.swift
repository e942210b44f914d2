import Foundation
import Store

/// The reasons watch records on the per-user archives it writes.
public enum WatchReason {
  /// The user has no per-user archive yet.
  public static let newUser = "New user"
  /// The session file or the database's session string holds an auth key no archive of the user holds.
  public static let newLogin = "New login"
  /// Same key, but the dc, the file's format, the api_id or (without a Fernet key) the stored token changed.
  public static let sessionChanged = "Session changed"
}

/// A user's session as watch reads it now.
public struct CurrentIdentity: Sendable, Equatable {
  /// The session file.
  public enum File: Sendable, Equatable {
    /// No file.
    case absent
    /// A valid session file.
    case valid(FileIdentity)
    /// A file that is not a usable session now (the reason, never a secret).
    case invalid(String)
  }

  public var file: File
  /// The `user_sessions` row's identity; nil without a row or without a session string in it.
  public var row: RowIdentity?
  /// Whether a `user_sessions` row exists.
  public var hasRow: Bool
  /// The row says the user logged out.
  public var isLoggedOut: Bool
  /// Watch saw a valid file for this user before (so an absent one vanished).
  public var wasFileSeen: Bool

  public init(file: File, row: RowIdentity?, hasRow: Bool, isLoggedOut: Bool = false, wasFileSeen: Bool = false) {
    self.file = file
    self.row = row
    self.hasRow = hasRow
    self.isLoggedOut = isLoggedOut
    self.wasFileSeen = wasFileSeen
  }
}

/// What the user's newest per-user archive holds, as far as watch knows it.
public struct ArchivedIdentity: Sendable, Equatable {
  public var archiveID: String
  /// The archived session file's identity (format "" when the record does not say).
  public var file: FileIdentity?
  /// The archived row's identity, when `isRowKnown`.
  public var row: RowIdentity?
  /// Whether `row` is known: true for archives watch wrote or judged, false for an archive known
  /// only from its record (written by `backup`, `recover`, the bot runner), whose record holds the
  /// file's identity alone.
  public var isRowKnown: Bool

  public init(archiveID: String, file: FileIdentity?, row: RowIdentity?, isRowKnown: Bool) {
    self.archiveID = archiveID
    self.file = file
    self.row = row
    self.isRowKnown = isRowKnown
  }

  /// What an archive's record says (its session fingerprint; nothing of the row).
  public init(record: ArchiveRecord) {
    archiveID = record.id
    file = record.sessionFingerprint.map { FileIdentity(format: "", dcID: $0.dcID, authKey: $0.authKey) }
    row = nil
    isRowKnown = false
  }

  /// The auth keys (fingerprints) the archive holds: the file's and the decoded string's.
  var authKeys: Set<String> { Set([file?.authKey, row?.authKey].compactMap { $0 }) }
}

/// What watch does about one user.
public enum WatchVerdict: Sendable, Equatable {
  /// The newest archive holds this identity (only churn changed): nothing to do.
  case unchanged
  /// Write a per-user archive with this reason; `detail` says what changed (no secret).
  case archive(reason: String, detail: String)
  /// The session file is not a usable session: report it, never archive it as an identity.
  case invalid(String)
  /// The session file watch saw before is gone while the user's row stays: report it.
  case vanished
  /// Nothing of the user is left to watch (no file and no row, or logged out without a file).
  case gone
}

/// The pure rule that tells an identity change from churn.
public enum WatchDecision {
  /// Compares the user's current identity with what their newest per-user archive holds.
  ///
  /// An archive covers the current identity when every auth key in use (the file's, and the
  /// session string's when it could be decoded) is one it holds, with the same dc and file format,
  /// and the same api_id and undecodable token when those are known. Because an archive holds
  /// both the file and the row, a login that writes the file and the row one after the other
  /// makes one archive, whichever comes first.
  public static func decide(_ current: CurrentIdentity, archived: ArchivedIdentity?) -> WatchVerdict {
    var file: FileIdentity?
    switch current.file {
    case .invalid(let problem):
      return .invalid(problem)
    case .absent:
      if current.isLoggedOut || !current.hasRow { return .gone }
      if current.wasFileSeen { return .vanished }
    case .valid(let identity):
      file = identity
    }
    let row = current.isLoggedOut ? nil : current.row
    guard file != nil || row != nil else { return .gone }
    guard let archived else {
      return .archive(reason: WatchReason.newUser, detail: "no per-user archive yet")
    }
    let keys = archived.authKeys
    if let file {
      guard keys.contains(file.authKey) else {
        return .archive(reason: WatchReason.newLogin, detail: "session file holds key \(file.authKey)")
      }
      if let held = archived.file, held.authKey == file.authKey {
        if held.dcID != file.dcID {
          return .archive(reason: WatchReason.sessionChanged, detail: "dc \(held.dcID) → \(file.dcID)")
        }
        if !held.format.isEmpty, held.format != file.format {
          return .archive(reason: WatchReason.sessionChanged, detail: "format \(held.format) → \(file.format)")
        }
      }
    }
    if let row {
      if let key = row.authKey {
        guard keys.contains(key) else {
          return .archive(reason: WatchReason.newLogin, detail: "session string holds key \(key)")
        }
      } else if archived.isRowKnown, archived.row?.session != row.session {
        return .archive(reason: WatchReason.sessionChanged, detail: "stored session string changed")
      }
      if archived.isRowKnown, let held = archived.row, held.apiID != row.apiID {
        return .archive(
          reason: WatchReason.sessionChanged,
          detail: "api_id \(held.apiID.map(String.init) ?? "none") → \(row.apiID.map(String.init) ?? "none")")
      }
    }
    return .unchanged
  }
}

import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// What a re-login changes in a session file: its format, dc and auth key (by fingerprint).
/// The entity cache, update state, sent files and peers (churn) are not part of it.
public struct FileIdentity: Sendable, Equatable, Hashable, Codable {
  /// `telethon-v8`, `pyrogram-v3`, … ("" when not known, e.g. taken from an archive record).
  public var format: String
  public var dcID: Int
  /// First 8 hex of SHA-256 of the auth key.
  public var authKey: String

  public init(format: String, dcID: Int, authKey: String) {
    self.format = format
    self.dcID = dcID
    self.authKey = authKey
  }

  /// Reads the identity of the session file at `path` read-only through SQLite, as `check` does
  /// (no page check: the structure and the sessions row only).
  /// - Throws: `StoreError.session(object: path, reason:)` when the file is missing or not a
  ///   valid session (the `SessionProblem` says why).
  public static func read(path: String, busyTimeoutMS: Int) throws -> FileIdentity {
    let info = try SessionFileInspector.inspect(
      path: path, busyTimeoutMS: Int32(clamping: busyTimeoutMS), verifiesPages: false)
    return FileIdentity(
      format: info.format.shortName, dcID: info.identity.dcID, authKey: info.identity.authKey.fingerprint)
  }
}

/// What a re-login changes in a `user_sessions` row: the session string and the api_id. The
/// string is known by the auth-key fingerprint it decodes to when it is plaintext or a Fernet
/// key decrypts it (`key:<8 hex>`), else by a digest of the stored text (`text:<16 hex>`), which
/// changes whenever the token is re-encrypted.
public struct RowIdentity: Sendable, Equatable, Hashable, Codable {
  /// `key:<fingerprint>` or `text:<digest>`.
  public var session: String
  public var apiID: Int64?

  public init(session: String, apiID: Int64?) {
    self.session = session
    self.apiID = apiID
  }

  /// The auth-key fingerprint the string decodes to, when it was decoded.
  public var authKey: String? { session.hasPrefix("key:") ? String(session.dropFirst(4)) : nil }

  /// The identity of a stored session string: decoded with `fernet` when it is a token, as it is
  /// when plaintext; a digest when it cannot be decoded. Nil for an empty string.
  /// - Returns: the identity and whether a Fernet token failed to decrypt with the keys given
  ///   (a caller may reload its keys and try again).
  public static func of(sessionString: SecretText?, apiID: Int64?, fernet: Fernet?) -> (
    identity: RowIdentity?, isUndecryptable: Bool
  ) {
    guard let secret = sessionString, !secret.value.isEmpty else { return (nil, false) }
    var plaintext: String?
    var isUndecryptable = false
    if Fernet.looksLikeToken(secret.value) {
      if let fernet, let bytes = try? fernet.decrypt(secret.value) {
        plaintext = String(decoding: bytes, as: UTF8.self)
      } else {
        isUndecryptable = true
      }
    } else {
      plaintext = secret.value
    }
    if let plaintext, let key = authKeyFingerprint(ofString: plaintext) {
      return (RowIdentity(session: "key:" + key, apiID: apiID), isUndecryptable)
    }
    let digest = String(Digest.sha256Hex(Array(secret.value.utf8)).prefix(16))
    return (RowIdentity(session: "text:" + digest, apiID: apiID), isUndecryptable)
  }

  /// The auth-key fingerprint of a Telethon or Pyrogram session string; nil when it is neither.
  static func authKeyFingerprint(ofString plaintext: String) -> String? {
    let text = plaintext.trimmingCharacters(in: .whitespacesAndNewlines)
    if text.hasPrefix("1"),
      text.utf8.count == TelethonStringSession.ipv4Length
        || text.utf8.count == TelethonStringSession.ipv6Length,
      let identity = try? TelethonStringSession.decode(text)
    {
      return identity.authKey.fingerprint
    }
    return (try? PyrogramStringSession.decode(text))?.authKey.fingerprint
  }
}

/// Cheap facts about a session file that change whenever its content can have changed: device,
/// inode, size, modification and change times (ns), and SQLite's file change counter (header
/// offset 24), plus the same for a `-wal` beside it. Equal stamps let a restart skip re-reading a
/// file; ctime cannot be set back by any tool, and every rollback-journal commit bumps the counter.
public struct FileStamp: Sendable, Equatable, Hashable {
  public var device: UInt64
  public var inode: UInt64
  public var size: Int64
  public var modifiedNS: Int64
  public var changedNS: Int64
  /// SQLite's change counter (bytes 24-27 of the header), or -1 when the header is unreadable.
  public var changeCounter: Int64
  /// Whether the header says WAL mode (bytes 18-19 are 2): commits then go to the -wal file and
  /// the counter is not bumped per commit.
  public var isWALMode: Bool
  /// `size:mtime:ctime:inode` of the `-wal` file, empty when there is none.
  public var wal: String
  /// The file is shorter than the page count its header vouches for (it lost its tail).
  public var isTruncated = false

  public init(
    device: UInt64, inode: UInt64, size: Int64, modifiedNS: Int64, changedNS: Int64, changeCounter: Int64,
    isWALMode: Bool, wal: String
  ) {
    self.device = device
    self.inode = inode
    self.size = size
    self.modifiedNS = modifiedNS
    self.changedNS = changedNS
    self.changeCounter = changeCounter
    self.isWALMode = isWALMode
    self.wal = wal
  }

  /// Whether an equal stamp proves the content unchanged. A WAL-mode file with a non-empty -wal
  /// does not qualify: its commits live in the -wal, whose frames can be rewritten in place.
  public var isTrustworthy: Bool { changeCounter >= 0 && !(isWALMode && !wal.isEmpty) && !isTruncated }

  /// Stamps the file at `path`; nil when it does not exist or is not a regular file.
  public static func read(path: String) -> FileStamp? {
    var info = stat()
    guard stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return nil }
    var counter: Int64 = -1
    var isWAL = false
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    var isTruncated = false
    if fd >= 0 {
      var header = [UInt8](repeating: 0, count: 100)
      if header.withUnsafeMutableBytes({ pread(fd, $0.baseAddress, 100, 0) }) == 100,
        header.starts(with: Array("SQLite format 3\0".utf8))
      {
        func u32(_ offset: Int) -> Int64 { header[offset..<offset + 4].reduce(Int64(0)) { $0 << 8 | Int64($1) } }
        counter = u32(24)
        isWAL = header[18] == 2 && header[19] == 2
        // As the inspector judges it: the in-header page count is valid when "version-valid-for"
        // equals the change counter.
        let rawPageSize = Int64(header[16]) << 8 | Int64(header[17])
        let pageSize = rawPageSize == 1 ? 65536 : rawPageSize
        if u32(92) == counter, u32(28) > 0 { isTruncated = Int64(info.st_size) < u32(28) * pageSize }
      }
      close(fd)
    }
    var wal = ""
    var walInfo = stat()
    if stat(path + "-wal", &walInfo) == 0, walInfo.st_size > 0 {
      wal =
        "\(walInfo.st_size):\(Self.nanoseconds(walInfo.st_mtim)):\(Self.nanoseconds(walInfo.st_ctim)):\(walInfo.st_ino)"
    }
    var stamp = FileStamp(
      device: UInt64(info.st_dev), inode: UInt64(info.st_ino), size: Int64(info.st_size),
      modifiedNS: nanoseconds(info.st_mtim), changedNS: nanoseconds(info.st_ctim), changeCounter: counter,
      isWALMode: isWAL, wal: wal)
    stamp.isTruncated = isTruncated && wal.isEmpty
    return stamp
  }

  static func nanoseconds(_ time: timespec) -> Int64 { Int64(time.tv_sec) * 1_000_000_000 + Int64(time.tv_nsec) }
}

import Foundation

/// The first entry of every archive, `manifest.json`: what the archive is and, for every other
/// entry, its size, mode and SHA-256. Session entries also carry the user, the format, the dc
/// and the auth-key fingerprint (never the key).
public struct Manifest: Codable, Sendable, Equatable {
  /// The newest format this tgsess reads and writes; readers refuse a newer one. Format 2 adds
  /// `verbatim` entries; a manifest without them is still written as format 1, so a tgsess
  /// older than format 2 keeps reading every ordinary archive and refuses only one with
  /// verbatim bytes ("newer than this tgsess reads; upgrade tgsess").
  public static let currentFormatVersion = 2
  /// The format a manifest of these entries is written as: 2 when it holds a `verbatim` entry,
  /// else 1.
  public static func formatVersion(for entries: [Entry]) -> Int {
    entries.contains { $0.role == .verbatim } ? 2 : 1
  }
  /// The largest manifest a reader accepts (a guard against hostile archives).
  public static let maximumByteCount: Int64 = 64 * 1024 * 1024

  public enum Kind: String, Codable, Sendable, Equatable, CaseIterable {
    case full
    case user
  }

  /// What an entry holds.
  public enum EntryRole: String, Codable, Sendable, Equatable {
    /// The bot database (a consistent SQLite snapshot).
    case database
    /// A user's session file (`user_<id>.session`).
    case session
    /// The `.session.backup` copy the seed's bot keeps.
    case sessionBackup = "session-backup"
    /// The JSON sidecar multi-account farms keep beside a session file (`user_<id>.json`: app
    /// id and hash, device, 2FA); restored and recovered together with the session file.
    case sessionSidecar = "session-sidecar"
    /// A user's rows of the bot database, as JSON (per-user archives).
    case userRows = "user-rows"
    /// A file imported from the seed's legacy backups.
    case imported
    /// A live file archived byte for byte, because it could not be read as SQLite when archived
    /// (a restore's undo of a damaged file; `VerbatimFiles`): the session file, its
    /// `.session.backup`, its JSON sidecar, the database, or the `-journal`/`-wal` beside one of
    /// them. Only its size and SHA-256 are checked; restore puts the bytes back as they were.
    /// Manifests holding one are format 2.
    case verbatim
  }

  public struct Entry: Codable, Sendable, Equatable {
    /// Relative path inside the archive (`data/telegram_bot.db`, `sessions/user_1.session`).
    public var path: String
    public var role: EntryRole
    public var size: Int64
    public var mode: UInt32
    public var sha256: String
    /// Whether the entry is an SQLite database that restore integrity-checks.
    public var isSQLite: Bool
    public var userID: Int64?
    /// Session format short name (`telethon-v8`, `pyrogram-v3`), for session entries.
    public var format: String?
    public var dcID: Int?
    /// First 8 hex of SHA-256 of the auth key.
    public var authKeyFingerprint: String?
    /// Server address, for comparing identities.
    public var serverAddress: String?

    enum CodingKeys: String, CodingKey {
      case path, role, size, mode, sha256, format
      case isSQLite = "is_sqlite"
      case userID = "user_id"
      case dcID = "dc_id"
      case authKeyFingerprint = "auth_key_fingerprint"
      case serverAddress = "server_address"
    }

    public init(
      path: String, role: EntryRole, size: Int64, mode: UInt32 = 0o600, sha256: String, isSQLite: Bool,
      userID: Int64? = nil, format: String? = nil, dcID: Int? = nil, authKeyFingerprint: String? = nil,
      serverAddress: String? = nil
    ) {
      self.path = path
      self.role = role
      self.size = size
      self.mode = mode
      self.sha256 = sha256
      self.isSQLite = isSQLite
      self.userID = userID
      self.format = format
      self.dcID = dcID
      self.authKeyFingerprint = authKeyFingerprint
      self.serverAddress = serverAddress
    }
  }

  public var formatVersion: Int
  public var toolVersion: String
  public var host: String
  public var createdAt: Date
  public var kind: Kind
  /// Why the archive was made ("Scheduled", "Before login", …).
  public var reason: String
  /// The user of a per-user archive.
  public var userID: Int64?
  /// The bot database's schema version at the time.
  public var schemaVersion: Int
  public var entries: [Entry]

  enum CodingKeys: String, CodingKey {
    case formatVersion = "format_version"
    case toolVersion = "tool_version"
    case host
    case createdAt = "created_at"
    case kind, reason
    case userID = "user_id"
    case schemaVersion = "schema_version"
    case entries
  }

  public init(
    toolVersion: String, host: String, createdAt: Date, kind: Kind, reason: String, userID: Int64?,
    schemaVersion: Int, entries: [Entry]
  ) {
    formatVersion = Manifest.formatVersion(for: entries)
    self.toolVersion = toolVersion
    self.host = host
    // Whole seconds: what the JSON holds, so a manifest read back compares equal.
    self.createdAt = Date(timeIntervalSince1970: createdAt.timeIntervalSince1970.rounded(.down))
    self.kind = kind
    self.reason = reason
    self.userID = userID
    self.schemaVersion = schemaVersion
    self.entries = entries
  }

  /// Stable JSON (sorted keys, ISO 8601 UTC dates), byte for byte what `JSONEncoder` makes of
  /// the whole manifest: written by `ManifestJSON`, or, for a time outside the years 1970...9999,
  /// by `JSONEncoder` with the entries encoded one at a time and spliced in (a manifest of
  /// 10,000 entries encoded in one piece held tens of MB of intermediate values).
  /// - Throws: an `EncodingError` from `JSONEncoder` (not seen for a manifest).
  public func encoded() throws -> Data {
    if let data = ManifestJSON.encode(self) { return data }
    return try encodedByJSONEncoder()
  }

  /// `encoded()` through `JSONEncoder`, the entries spliced into the manifest's frame.
  /// - Throws: an `EncodingError` from `JSONEncoder`.
  func encodedByJSONEncoder() throws -> Data {
    var shell = self
    shell.entries = []
    let encoder = Self.encoder()
    let empty = try encoder.encode(shell)
    // The empty array as the encoder prints it at this depth, and where the entries go in it.
    let emptyArray = Data("\"entries\" : [\n\n  ]".utf8)
    guard !entries.isEmpty, let range = empty.range(of: emptyArray) else {
      return entries.isEmpty ? empty : try encoder.encode(self)
    }
    var data = Data(empty[..<range.lowerBound])
    data.reserveCapacity(empty.count + entries.count * 512)
    data.append(contentsOf: Data("\"entries\" : [\n".utf8))
    let newline = UInt8(ascii: "\n")
    let space = UInt8(ascii: " ")
    for (index, entry) in entries.enumerated() {
      // Each entry one level deeper than the encoder put it: four more spaces on every line.
      data.append(contentsOf: [space, space, space, space])
      for byte in try encoder.encode(entry) {
        data.append(byte)
        if byte == newline { data.append(contentsOf: [space, space, space, space]) }
      }
      data.append(contentsOf: Data((index == entries.count - 1 ? "\n  ]" : ",\n").utf8))
    }
    data.append(contentsOf: empty[range.upperBound...])
    return data
  }

  /// The encoder whose output `encoded()` reproduces.
  static func encoder() -> JSONEncoder {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    encoder.dateEncodingStrategy = .iso8601
    return encoder
  }

  /// Parses and validates a manifest; `objectName` names the archive in errors.
  /// - Throws: `StoreError.invalid` for bad JSON, a newer format, or unsafe entry paths.
  public static func decode(_ data: Data, objectName: String) throws -> Manifest {
    let decoder = JSONDecoder()
    decoder.dateDecodingStrategy = .iso8601
    var manifest: Manifest
    do { manifest = try decoder.decode(Manifest.self, from: data) } catch {
      throw StoreError.invalid(
        path: objectName, reason: "manifest.json is not a valid tgsess manifest", hint: "use another backup")
    }
    // Whole seconds, as the initializer keeps them: Foundation's ISO 8601 parser also takes a
    // fraction ("07:05:1.4Z"), which the encoder drops, so such a manifest changed in a round
    // trip (found by the manifest fuzz target).
    manifest.createdAt = Date(timeIntervalSince1970: manifest.createdAt.timeIntervalSince1970.rounded(.down))
    guard manifest.formatVersion <= currentFormatVersion else {
      throw StoreError.invalid(
        path: objectName, reason: "manifest format \(manifest.formatVersion) is newer than this tgsess reads",
        hint: "upgrade tgsess")
    }
    var seen = Set<String>()
    for entry in manifest.entries {
      guard ArchivePath.isSafe(entry.path) else {
        throw StoreError.invalid(
          path: objectName, reason: "manifest names an unsafe path '\(entry.path)'", hint: "refusing this archive")
      }
      guard seen.insert(entry.path).inserted else {
        throw StoreError.invalid(
          path: objectName, reason: "manifest lists '\(entry.path)' twice", hint: "refusing this archive")
      }
      guard entry.size >= 0, entry.sha256.count == 64, Hex.decode(entry.sha256) != nil else {
        throw StoreError.invalid(
          path: objectName, reason: "manifest entry '\(entry.path)' has a bad size or hash", hint: "use another backup")
      }
    }
    try VerbatimFiles.validate(manifest, objectName: objectName)
    return manifest
  }
}

/// Rules for paths inside archives.
public enum ArchivePath {
  /// Whether `path` is relative, normalised, and free of `..`, empty or hidden-trick components.
  /// Judged on the UTF-8 bytes, as the filesystem reads the path: by Characters, a `/` followed
  /// by a combining mark is one grapheme ("/\u{301}") and no separator, so `../\u{301}x` passed
  /// as a single component and was extracted one level above the staging directory (found with
  /// the archive-reader fuzz property).
  public static func isSafe(_ path: String) -> Bool {
    let slash = UInt8(ascii: "/")
    let dot = UInt8(ascii: ".")
    let bytes = Array(path.utf8)
    guard !bytes.isEmpty, bytes.count < 1024, bytes[0] != slash, !bytes.contains(UInt8(ascii: "\\")), !bytes.contains(0)
    else { return false }
    return bytes.split(separator: slash, omittingEmptySubsequences: false).allSatisfy {
      !$0.isEmpty && !$0.elementsEqual([dot]) && !$0.elementsEqual([dot, dot])
    }
  }
}

import Foundation

/// What `list` shows of one archive, kept beside it as `<id>.json` (no secrets: ids, times,
/// counts, hashes, auth-key fingerprints). The archive file itself stays the source of truth:
/// without the record, its name still gives the id, time, kind and user.
public struct ArchiveRecord: Codable, Sendable, Equatable {
  /// How an archive was proven good after it was written.
  public enum Verification: String, Codable, Sendable, Equatable {
    /// Decrypted, decompressed, every entry's SHA-256 matched the manifest.
    case full
    /// No identity on this host: the file re-read from disk matched the SHA-256 of what was
    /// written (decrypting needs the identity kept off the host).
    case ciphertext
    /// Not known (the record was lost and rebuilt from the file name).
    case unknown
  }

  public var id: String
  public var fileName: String
  public var kind: Manifest.Kind
  public var createdAt: Date
  public var userID: Int64?
  public var reason: String
  public var isEncrypted: Bool
  /// Size of the archive file.
  public var byteCount: Int64
  /// Sum of the entries' sizes.
  public var contentByteCount: Int64
  public var entryCount: Int
  /// Users whose session is in the archive.
  public var userIDs: [Int64]
  /// SHA-256 of the archive file.
  public var sha256: String
  public var verification: Verification
  public var verifiedAt: Date?
  public var toolVersion: String
  public var host: String
  /// For per-user archives: the session identity, to tell a real change from cache churn.
  public var sessionFingerprint: SessionFingerprint?
  /// The age recipients (`age1…`, public keys) the archive is encrypted to: an identity of one
  /// of them opens it. Empty for an unencrypted archive; nil when not known (a record written
  /// before tgsess kept them, or rebuilt from the file name).
  public var recipients: [String]? = nil
  /// The fingerprints of the Fernet keys the secrets inside are under (`unknown` for a token no
  /// configured key opened when it was written); empty when it holds no token; nil when not known
  /// (no Fernet key configured then, or an older record). `tgsess keys fernet-usage` reads it.
  public var fernetKeys: [String]? = nil
  /// True when the archive holds verbatim entries (files archived byte for byte because they
  /// were not valid SQLite files: a restore's undo of damaged data); nil otherwise or when not
  /// known.
  public var hasVerbatimEntries: Bool? = nil

  /// Identity of a session without its key: auth-key fingerprint, dc, normalised address.
  public struct SessionFingerprint: Codable, Sendable, Equatable, Hashable {
    public var authKey: String
    public var dcID: Int
    public var serverAddress: String?

    enum CodingKeys: String, CodingKey {
      case authKey = "auth_key"
      case dcID = "dc_id"
      case serverAddress = "server_address"
    }

    public init(authKey: String, dcID: Int, serverAddress: String?) {
      self.authKey = authKey
      self.dcID = dcID
      self.serverAddress = serverAddress
    }
  }

  enum CodingKeys: String, CodingKey {
    case id
    case fileName = "file_name"
    case kind
    case createdAt = "created_at"
    case userID = "user_id"
    case reason
    case isEncrypted = "is_encrypted"
    case byteCount = "byte_count"
    case contentByteCount = "content_byte_count"
    case entryCount = "entry_count"
    case userIDs = "user_ids"
    case sha256, verification
    case verifiedAt = "verified_at"
    case toolVersion = "tool_version"
    case host
    case sessionFingerprint = "session_fingerprint"
    case recipients
    case fernetKeys = "fernet_keys"
    case hasVerbatimEntries = "verbatim"
  }

  public var isVerified: Bool { verification != .unknown }

  /// This record with what `statement` vouches for in place of what the record says: id, file
  /// name, kind, user, time, reason, encryption, file size and SHA-256. (The record itself is
  /// not authenticated; anyone who can write to backups/ can edit it.)
  public func vouched(by statement: SignedStatement) -> ArchiveRecord {
    var record = self
    record.id = statement.archiveID
    record.fileName = statement.fileName
    record.kind = statement.kind
    record.userID = statement.userID
    record.createdAt = statement.createdAt
    record.reason = statement.reason
    record.isEncrypted = statement.encryption == .age
    record.byteCount = statement.fileByteCount
    record.sha256 = statement.fileSHA256
    return record
  }

  /// Stable JSON (sorted keys, ISO 8601 UTC dates), byte for byte what `JSONEncoder` makes of
  /// it: written by `ArchiveRecordJSON`, or by `JSONEncoder` for a time outside 1970...9999.
  /// - Throws: an `EncodingError` from `JSONEncoder` (not seen for a record).
  public func encoded() throws -> Data {
    if let data = ArchiveRecordJSON.encode(self) { return data }
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    encoder.dateEncodingStrategy = .iso8601
    return try encoder.encode(self)
  }

  /// Parses a record; nil when it is not one.
  public static func decode(_ data: Data) -> ArchiveRecord? {
    let decoder = JSONDecoder()
    decoder.dateDecodingStrategy = .iso8601
    return try? decoder.decode(ArchiveRecord.self, from: data)
  }
}

/// Archive ids and file names: `20261125T041500Z-full-k3j9x2` and
/// `20261125T041500Z-u42-k3j9x2`, so that names sort by time and say what they hold.
public enum ArchiveName {
  public static let encryptedSuffix = ".tar.zst.age"
  public static let plainSuffix = ".tar.zst"
  public static let recordSuffix = ".json"

  /// A new id for an archive made at `date`. Its last part is six characters of an alphabet in
  /// ASCII order: the first two say the millisecond within the second (33 × 33 ≥ 1000), the other
  /// four are random, so archives made in the same second sort by when they were made (a backup
  /// and the login or re-archive right after it) and "newest" never depends on chance.
  public static func makeID(kind: Manifest.Kind, userID: Int64?, date: Date) -> String {
    let alphabet = Array("23456789abcdefghijkmnopqrstuvwxyz")
    let millisecond = min(
      999, max(0, Int((date.timeIntervalSince1970 - date.timeIntervalSince1970.rounded(.down)) * 1000)))
    let random =
      String([alphabet[millisecond / alphabet.count], alphabet[millisecond % alphabet.count]])
      + String((0..<4).map { _ in alphabet.randomElement()! })
    let what = kind == .full ? "full" : "u\(userID ?? 0)"
    // The whole second the manifest keeps (its time is rounded down): the date formatter
    // rounds to milliseconds first, so x.9996 s would otherwise name the next second, and the
    // signed statement, which must say the id's time, could not be made.
    let second = Date(timeIntervalSince1970: date.timeIntervalSince1970.rounded(.down))
    return "\(Timestamp.compact(second))-\(what)-\(random)"
  }

  /// The archive file name of `id`.
  public static func fileName(id: String, isEncrypted: Bool) -> String {
    id + (isEncrypted ? encryptedSuffix : plainSuffix)
  }

  /// Splits an archive file name into (id, encrypted); nil for any other file.
  public static func parse(fileName: String) -> (id: String, isEncrypted: Bool)? {
    if fileName.hasPrefix(".") { return nil }
    if fileName.hasSuffix(encryptedSuffix) { return (String(fileName.dropLast(encryptedSuffix.count)), true) }
    if fileName.hasSuffix(plainSuffix) { return (String(fileName.dropLast(plainSuffix.count)), false) }
    return nil
  }

  /// What an id says: time, kind and user; nil when it is not a tgsess id.
  public static func describe(id: String) -> (createdAt: Date, kind: Manifest.Kind, userID: Int64?)? {
    let parts = id.split(separator: "-")
    guard parts.count == 3, let date = Timestamp.parseCompact(String(parts[0])) else { return nil }
    if parts[1] == "full" { return (date, .full, nil) }
    if parts[1].hasPrefix("u"), let user = Int64(parts[1].dropFirst()) { return (date, .user, user) }
    return nil
  }
}

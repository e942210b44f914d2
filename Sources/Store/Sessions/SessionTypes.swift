import COpenSSL
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// A 256-byte MTProto permanent authorization key. It never prints: `description`,
/// `debugDescription` and its mirror show only the fingerprint.
public struct AuthKey: Sendable, Equatable, Hashable, CustomStringConvertible, CustomDebugStringConvertible,
  CustomReflectable
{
  /// The length of every MTProto auth key.
  public static let byteCount = 256

  /// The raw key. Handle with care: never log it, never put it in an error or in JSON.
  public let bytes: [UInt8]

  /// Wraps raw key bytes.
  /// - Throws: `StoreError.session` with `.authKeyMissing` for zero bytes and `.authKeyWrongLength`
  ///   for any other length than 256.
  public init<Bytes: Sequence>(bytes: Bytes) throws where Bytes.Element == UInt8 {
    let array = Array(bytes)
    guard !array.isEmpty else { throw StoreError.session(object: "auth key", reason: .authKeyMissing) }
    guard array.count == AuthKey.byteCount else {
      throw StoreError.session(object: "auth key", reason: .authKeyWrongLength(array.count))
    }
    self.bytes = array
  }

  /// The first 8 hex digits of SHA-256 of the key: safe to log and to compare by eye.
  public var fingerprint: String { String(Digest.sha256Hex(bytes).prefix(8)) }

  /// MTProto's key id: the low 64 bits of SHA-1 of the key (bytes 12..<20 of the digest, read
  /// little-endian), as Telethon's `AuthKey.key_id`. Safe to log.
  public var keyID: UInt64 {
    var digest = [UInt8](repeating: 0, count: 20)
    var length: UInt32 = 0
    bytes.withUnsafeBytes { raw in
      _ = EVP_Digest(raw.baseAddress, raw.count, &digest, &length, EVP_sha1(), nil)
    }
    return digest[12..<20].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
  }

  /// Whether every byte is zero (what a torn copy of a live Telethon file can leave).
  public var isAllZero: Bool { bytes.allSatisfy { $0 == 0 } }

  public var description: String { "AuthKey(sha256:\(fingerprint)…)" }
  public var debugDescription: String { description }
  public var customMirror: Mirror { Mirror(self, children: ["fingerprint": fingerprint], displayStyle: .struct) }
}

/// Where a session connects and with which key: what must survive a backup, restore or format
/// conversion unchanged. Its description shows the key's fingerprint only.
public struct SessionIdentity: Sendable, Equatable, CustomStringConvertible {
  /// The home data centre (1-5 in production).
  public var dcID: Int
  /// The server IP address as stored (Telethon, kurigram v7); nil for formats without one.
  public var serverAddress: String?
  /// The server port as stored; nil for formats without one.
  public var port: Int?
  /// The permanent auth key.
  public var authKey: AuthKey

  /// Creates an identity.
  public init(dcID: Int, serverAddress: String?, port: Int?, authKey: AuthKey) {
    self.dcID = dcID
    self.serverAddress = serverAddress
    self.port = port
    self.authKey = authKey
  }

  /// Whether `other` names the same session: same dc, same normalised address (IPv6 written
  /// zero-padded or compressed compares equal), same port and same key. An address or port that
  /// one side has and the other lacks does not match.
  public func matches(_ other: SessionIdentity) -> Bool {
    dcID == other.dcID && port == other.port && authKey == other.authKey
      && serverAddress.map(SessionIdentity.normalizedAddress)
        == other.serverAddress.map(SessionIdentity.normalizedAddress)
  }

  /// The canonical text of an IP address (`inet_pton` then `inet_ntop`: lower-case, IPv6
  /// compressed); other text is returned trimmed and lower-cased.
  public static func normalizedAddress(_ address: String) -> String {
    let trimmed = address.trimmingCharacters(in: .whitespaces)
    if let bytes = IPAddress.bytes(trimmed) { return IPAddress.text(bytes) ?? trimmed.lowercased() }
    return trimmed.lowercased()
  }

  public var description: String {
    "SessionIdentity(dc: \(dcID), address: \(serverAddress ?? "none"), port: \(port.map(String.init) ?? "none"), key: \(authKey.fingerprint))"
  }
}

/// IPv4/IPv6 parsing through `inet_pton`, as Telethon's `ipaddress` module does.
enum IPAddress {
  /// 4 or 16 bytes for a textual IPv4 or IPv6 address; nil for anything else.
  static func bytes(_ text: String) -> [UInt8]? {
    var v4 = in_addr()
    if inet_pton(AF_INET, text, &v4) == 1 {
      return withUnsafeBytes(of: &v4) { Array($0) }
    }
    var v6 = in6_addr()
    if inet_pton(AF_INET6, text, &v6) == 1 {
      return withUnsafeBytes(of: &v6) { Array($0) }
    }
    return nil
  }

  /// The canonical text of 4 or 16 address bytes (`inet_ntop`).
  static func text(_ bytes: [UInt8]) -> String? {
    var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
    let family = bytes.count == 4 ? AF_INET : bytes.count == 16 ? AF_INET6 : -1
    guard family >= 0 else { return nil }
    let isDone = bytes.withUnsafeBytes { raw in
      inet_ntop(family, raw.baseAddress, &buffer, socklen_t(buffer.count)) != nil
    }
    guard isDone else { return nil }
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
  }
}

/// Which library family a Pyrogram-style session file comes from.
public enum PyrogramVariant: String, Sendable, Equatable, Hashable, Codable, CaseIterable {
  /// Pyrogram itself (last release 2.0.106, schema 3).
  case pyrogram
  /// kurigram (KurimuzonAkuma's fork, schemas 4-7).
  case kurigram
  /// pyrofork (Mayuri-Chan's fork, schema 4).
  case pyrofork
  /// Hydrogram (the hydrogram fork on PyPI, 0.2): Pyrogram's schema 3 tables, in WAL mode.
  case hydrogram
}

/// The on-disk format of a session file: library family and schema version. Encodes (Codable)
/// as its stable short name, e.g. `"telethon-v7"`, `"pyrogram-v3"`, `"kurigram-v7"`, `"pyrofork-v4"`, `"hydrogram-v3"`.
public enum SessionFormat: Sendable, Equatable, Hashable, Codable, CustomStringConvertible {
  /// A Telethon `SQLiteSession` file with `version.version` = `version`.
  case telethon(version: Int)
  /// A Pyrogram-family file with `version.number` = `version`.
  case pyrogram(version: Int, variant: PyrogramVariant)

  /// The stable short name, e.g. `"telethon-v8"`.
  public var shortName: String {
    switch self {
    case .telethon(let version): return "telethon-v\(version)"
    case .pyrogram(let version, let variant): return "\(variant.rawValue)-v\(version)"
    }
  }

  /// Parses a short name; nil when it is not one.
  public init?(shortName: String) {
    guard let dash = shortName.lastIndex(of: "-"),
      shortName[shortName.index(after: dash)...].hasPrefix("v"),
      let version = Int(shortName[shortName.index(dash, offsetBy: 2)...]), version >= 0
    else { return nil }
    let family = String(shortName[..<dash])
    if family == "telethon" {
      self = .telethon(version: version)
    } else if let variant = PyrogramVariant(rawValue: family) {
      self = .pyrogram(version: version, variant: variant)
    } else {
      return nil
    }
  }

  public var description: String { shortName }

  /// Whether this is a Telethon format.
  public var isTelethon: Bool {
    if case .telethon = self { return true }
    return false
  }

  public init(from decoder: any Decoder) throws {
    let container = try decoder.singleValueContainer()
    let name = try container.decode(String.self)
    guard let format = SessionFormat(shortName: name) else {
      throw DecodingError.dataCorruptedError(
        in: container, debugDescription: "'\(name)' is not a session format (e.g. telethon-v7, pyrogram-v3)")
    }
    self = format
  }

  public func encode(to encoder: any Encoder) throws {
    var container = encoder.singleValueContainer()
    try container.encode(shortName)
  }
}

/// What `SessionFileInspector` found in a valid session file. Holds the auth key (inside
/// `identity`) but never prints it.
public struct SessionFileInfo: Sendable, Equatable {
  /// The file that was inspected.
  public var path: String
  /// Library family and schema version.
  public var format: SessionFormat
  /// dc, address, port and key.
  public var identity: SessionIdentity
  /// Whose session this is: Telethon's `entities` row with id 0 (its `hash`), Pyrogram's
  /// `sessions.user_id`; nil when the file does not record it.
  public var ownerUserID: Int64?
  /// Pyrogram `sessions.api_id` (schema 3 and later); nil for Telethon or when unset.
  public var apiID: Int?
  /// Pyrogram `sessions.test_mode`; nil for Telethon, which does not record it.
  public var isTestMode: Bool?
  /// Pyrogram `sessions.is_bot`; nil for Telethon, which does not record it.
  public var isBot: Bool?
  /// Telethon `sessions.takeout_id`; nil when unset or not Telethon.
  public var takeoutID: Int64?
  /// Cached peers: Telethon `entities` rows other than the id-0 owner row, or Pyrogram `peers` rows.
  public var entityCount: Int
  /// Rows in `update_state`; nil when the schema has no such table (Pyrogram 2.0).
  public var updateStateCount: Int?
  /// The newest `update_state.date` as Unix seconds (INTEGER or REAL in the file); nil when none.
  public var latestUpdateDate: Double?
  /// Whether a non-empty Telethon `tmp_auth_key` (schema 8) is stored.
  public var hasTmpAuthKey: Bool
  /// The journal kind recorded in the file header: `"wal"` or `"rollback"` (Telethon's and
  /// Pyrogram's default, `journal_mode=DELETE`; the header does not tell DELETE from TRUNCATE).
  public var journalMode: String

  /// Creates an info value (inspectors and tests).
  public init(
    path: String, format: SessionFormat, identity: SessionIdentity, ownerUserID: Int64? = nil, apiID: Int? = nil,
    isTestMode: Bool? = nil, isBot: Bool? = nil, takeoutID: Int64? = nil, entityCount: Int = 0,
    updateStateCount: Int? = nil, latestUpdateDate: Double? = nil, hasTmpAuthKey: Bool = false,
    journalMode: String = "rollback"
  ) {
    self.path = path
    self.format = format
    self.identity = identity
    self.ownerUserID = ownerUserID
    self.apiID = apiID
    self.isTestMode = isTestMode
    self.isBot = isBot
    self.takeoutID = takeoutID
    self.entityCount = entityCount
    self.updateStateCount = updateStateCount
    self.latestUpdateDate = latestUpdateDate
    self.hasTmpAuthKey = hasTmpAuthKey
    self.journalMode = journalMode
  }

  /// The Telethon `StringSession` for this file's identity (dc, address, port, key). Loses what
  /// strings cannot carry: entities, update state, takeout id.
  /// - Throws: `StoreError.session` naming the file with `.serverAddressMissing` / `.portMissing`
  ///   when the file has no address or port (Pyrogram before kurigram v7), or any validation problem.
  public func telethonString() throws -> String {
    guard identity.serverAddress != nil else { throw StoreError.session(object: path, reason: .serverAddressMissing) }
    guard identity.port != nil else { throw StoreError.session(object: path, reason: .portMissing) }
    do {
      return try TelethonStringSession.encode(identity)
    } catch StoreError.session(_, let reason) {
      throw StoreError.session(object: path, reason: reason)
    }
  }
}

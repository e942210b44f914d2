import Foundation

/// Strict URL-safe base64 (`A-Z a-z 0-9 - _`) as Python's `base64.urlsafe_b64encode` writes it.
/// Decoding refuses what Python would silently accept (other characters, the standard alphabet,
/// non-zero padding bits), so that a decoded string always re-encodes to the same text.
enum URLSafeBase64 {
  private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
  private static let values: [Int8] = {
    var table = [Int8](repeating: -1, count: 256)
    for (index, char) in alphabet.enumerated() { table[Int(char)] = Int8(index) }
    return table
  }()

  /// Encodes `bytes`; with `padding`, ends with `=`/`==` to a multiple of 4 characters.
  static func encode(_ bytes: [UInt8], padding: Bool) -> String {
    var out = [UInt8]()
    out.reserveCapacity((bytes.count + 2) / 3 * 4)
    var index = 0
    while index < bytes.count {
      let remaining = bytes.count - index
      let b0 = bytes[index]
      let b1 = remaining > 1 ? bytes[index + 1] : 0
      let b2 = remaining > 2 ? bytes[index + 2] : 0
      out.append(alphabet[Int(b0 >> 2)])
      out.append(alphabet[Int((b0 & 0x03) << 4 | b1 >> 4)])
      if remaining > 1 { out.append(alphabet[Int((b1 & 0x0f) << 2 | b2 >> 6)]) } else if padding { out.append(61) }
      if remaining > 2 { out.append(alphabet[Int(b2 & 0x3f)]) } else if padding { out.append(61) }
      index += 3
    }
    return String(decoding: out, as: UTF8.self)
  }

  /// Decodes unpadded base64url text; nil on any character outside the alphabet, an impossible
  /// length, or non-zero bits after the last byte.
  static func decodeUnpadded(_ chars: ArraySlice<UInt8>) -> [UInt8]? {
    guard chars.count % 4 != 1 else { return nil }
    var out = [UInt8]()
    out.reserveCapacity(chars.count * 3 / 4)
    var accumulator: UInt32 = 0
    var bitCount = 0
    for char in chars {
      let value = values[Int(char)]
      guard value >= 0 else { return nil }
      accumulator = accumulator << 6 | UInt32(value)
      bitCount += 6
      if bitCount >= 8 {
        bitCount -= 8
        out.append(UInt8(truncatingIfNeeded: accumulator >> UInt32(bitCount)))
        accumulator &= (1 << UInt32(bitCount)) - 1
      }
    }
    // Leftover bits must be zero, or the text is not the canonical encoding of `out`.
    guard accumulator == 0 else { return nil }
    return out
  }
}

/// Big-endian reading and writing for the `struct.pack('>...')` layouts of session strings.
struct BigEndianReader {
  private let bytes: [UInt8]
  private(set) var offset = 0

  init(_ bytes: [UInt8]) { self.bytes = bytes }

  mutating func byte() -> UInt8 {
    defer { offset += 1 }
    return bytes[offset]
  }

  mutating func take(_ count: Int) -> [UInt8] {
    defer { offset += count }
    return Array(bytes[offset..<offset + count])
  }

  mutating func uint(_ size: Int) -> UInt64 {
    take(size).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
  }
}

extension Array where Element == UInt8 {
  mutating func appendBigEndian(_ value: UInt64, size: Int) {
    for shift in stride(from: (size - 1) * 8, through: 0, by: -8) {
      append(UInt8(truncatingIfNeeded: value >> UInt64(shift)))
    }
  }
}

/// Telethon's `StringSession`: `'1'` + URL-safe base64 (with padding) of
/// `struct.pack('>B{4|16}sH256s', dc_id, packed_ip, port, auth_key)` — 353 characters for IPv4,
/// 369 for IPv6. Stricter than Telethon: see `decode`.
public enum TelethonStringSession {
  /// The only version Telethon has written.
  public static let version: Character = "1"
  /// Total length of an IPv4 string.
  public static let ipv4Length = 353
  /// Total length of an IPv6 string.
  public static let ipv6Length = 369

  /// Decodes and validates a Telethon session string: whitespace trimmed, first character `'1'`,
  /// 353 or 369 characters, URL-safe alphabet with the one `=` of padding, exactly 263/275
  /// bytes, dc 1-5, port not 0, key not all zeros. The returned address is in compressed form,
  /// as Telethon reports it.
  /// - Parameter label: how errors name the string (never the string itself).
  /// - Throws: `StoreError.session(object: label, ...)` with `.wrongLength`, `.unknownStringVersion`,
  ///   `.badBase64`, `.dcOutOfRange`, `.badPort` or `.authKeyAllZero`.
  public static func decode(_ string: String, label: String = "Telethon session string") throws -> SessionIdentity {
    func fail(_ reason: SessionProblem) -> StoreError { .session(object: label, reason: reason) }
    let chars = Array(string.trimmedForDecoding.utf8)
    guard let first = chars.first else { throw fail(.wrongLength(0)) }
    guard first == UInt8(ascii: "1") else {
      // Name the version only when it looks like one; any other character is part of the secret.
      let shown = (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(first) ? String(UnicodeScalar(first)) : "not a digit"
      throw fail(.unknownStringVersion(shown))
    }
    guard chars.count == ipv4Length || chars.count == ipv6Length else { throw fail(.wrongLength(chars.count)) }
    guard chars.last == UInt8(ascii: "="),
      let payload = URLSafeBase64.decodeUnpadded(chars[1..<(chars.count - 1)])
    else { throw fail(.badBase64) }
    let ipLength = chars.count == ipv4Length ? 4 : 16
    guard payload.count == 1 + ipLength + 2 + AuthKey.byteCount else { throw fail(.badBase64) }

    var reader = BigEndianReader(payload)
    let dcID = Int(reader.byte())
    let ip = reader.take(ipLength)
    let port = Int(reader.uint(2))
    let key = reader.take(AuthKey.byteCount)
    guard (1...5).contains(dcID) else { throw fail(.dcOutOfRange(dcID)) }
    guard port != 0 else { throw fail(.badPort(port)) }
    let authKey = try AuthKey(bytes: key)
    guard !authKey.isAllZero else { throw fail(.authKeyAllZero) }
    guard let address = IPAddress.text(ip) else { throw fail(.badBase64) }
    return SessionIdentity(dcID: dcID, serverAddress: address, port: port, authKey: authKey)
  }

  /// Encodes an identity as Telethon's `StringSession.save()` does.
  /// - Parameter label: how errors name the identity.
  /// - Throws: `StoreError.session` with `.serverAddressMissing`, `.badAddress`, `.portMissing`,
  ///   `.badPort`, `.dcOutOfRange` or `.authKeyAllZero`.
  public static func encode(_ identity: SessionIdentity, label: String = "session identity") throws -> String {
    func fail(_ reason: SessionProblem) -> StoreError { .session(object: label, reason: reason) }
    guard (1...5).contains(identity.dcID) else { throw fail(.dcOutOfRange(identity.dcID)) }
    guard let address = identity.serverAddress else { throw fail(.serverAddressMissing) }
    guard let ip = IPAddress.bytes(address.trimmingCharacters(in: .whitespaces)) else {
      throw fail(.badAddress(address))
    }
    guard let port = identity.port else { throw fail(.portMissing) }
    guard (1...65535).contains(port) else { throw fail(.badPort(port)) }
    guard !identity.authKey.isAllZero else { throw fail(.authKeyAllZero) }
    var payload: [UInt8] = [UInt8(identity.dcID)]
    payload += ip
    payload.appendBigEndian(UInt64(port), size: 2)
    payload += identity.authKey.bytes
    return String(version) + URLSafeBase64.encode(payload, padding: true)
  }
}

/// The content of a Pyrogram session string.
public struct PyrogramSessionPayload: Sendable, Equatable, CustomStringConvertible {
  /// The string layouts Pyrogram has used, named by their length in characters.
  public enum Layout: Int, Sendable, Equatable, CaseIterable {
    /// `>B?256sI?` (Pyrogram 0.15.1-1.x, 32-bit user id): 351 characters.
    case legacy32 = 351
    /// `>B?256sQ?` (Pyrogram 1.3-1.x, 64-bit user id): 356 characters.
    case legacy64 = 356
    /// `>BI?256sQ?` (Pyrogram 2.x, with api_id): 362 characters.
    case current = 362

    /// The payload size in bytes.
    public var byteCount: Int {
      switch self {
      case .legacy32: return 263
      case .legacy64: return 267
      case .current: return 271
      }
    }
  }

  /// The home data centre.
  public var dcID: Int
  /// The API id (only in the current layout).
  public var apiID: Int?
  /// Whether the session belongs to Telegram's test servers.
  public var isTestMode: Bool
  /// The permanent auth key.
  public var authKey: AuthKey
  /// The account's user id.
  public var userID: Int64
  /// Whether the account is a bot.
  public var isBot: Bool
  /// Which layout the string used (or will use when encoded).
  public var layout: Layout

  /// Creates a payload.
  public init(
    dcID: Int, apiID: Int?, isTestMode: Bool, authKey: AuthKey, userID: Int64, isBot: Bool, layout: Layout = .current
  ) {
    self.dcID = dcID
    self.apiID = apiID
    self.isTestMode = isTestMode
    self.authKey = authKey
    self.userID = userID
    self.isBot = isBot
    self.layout = layout
  }

  /// The identity (Pyrogram strings carry no address or port).
  public var identity: SessionIdentity {
    SessionIdentity(dcID: dcID, serverAddress: nil, port: nil, authKey: authKey)
  }

  public var description: String {
    "PyrogramSessionPayload(dc: \(dcID), apiID: \(apiID.map(String.init) ?? "none"), testMode: \(isTestMode), userID: \(userID), bot: \(isBot), layout: \(layout.rawValue), key: \(authKey.fingerprint))"
  }
}

/// Pyrogram's session strings (also kurigram's and pyrofork's): URL-safe base64 without padding
/// and without a version prefix; the layout is told by the length (351, 356 or 362 characters).
public enum PyrogramStringSession {
  /// Decodes and validates a Pyrogram session string: whitespace trimmed, length 351/356/362,
  /// URL-safe alphabet without `=`, booleans 0 or 1, dc 1-5 (1-3 in test mode), key not all zeros.
  /// - Parameter label: how errors name the string (never the string itself).
  /// - Throws: `StoreError.session(object: label, ...)` with `.wrongLength`, `.badBase64`,
  ///   `.invalidField`, `.dcOutOfRange`, `.testModeDCOutOfRange` or `.authKeyAllZero`.
  public static func decode(_ string: String, label: String = "Pyrogram session string") throws
    -> PyrogramSessionPayload
  {
    func fail(_ reason: SessionProblem) -> StoreError { .session(object: label, reason: reason) }
    let chars = Array(string.trimmedForDecoding.utf8)
    guard let layout = PyrogramSessionPayload.Layout(rawValue: chars.count) else {
      throw fail(.wrongLength(chars.count))
    }
    guard let bytes = URLSafeBase64.decodeUnpadded(chars[...]), bytes.count == layout.byteCount else {
      throw fail(.badBase64)
    }
    var reader = BigEndianReader(bytes)
    let dcID = Int(reader.byte())
    let apiID = layout == .current ? Int(reader.uint(4)) : nil
    let testByte = reader.byte()
    let key = reader.take(AuthKey.byteCount)
    let userID = reader.uint(layout == .legacy32 ? 4 : 8)
    let botByte = reader.byte()
    guard testByte <= 1 else { throw fail(.invalidField("test_mode byte is \(testByte), not 0 or 1")) }
    guard botByte <= 1 else { throw fail(.invalidField("is_bot byte is \(botByte), not 0 or 1")) }
    guard userID <= UInt64(Int64.max) else { throw fail(.invalidField("user_id does not fit in 63 bits")) }
    let payload = PyrogramSessionPayload(
      dcID: dcID, apiID: apiID, isTestMode: testByte == 1, authKey: try AuthKey(bytes: key), userID: Int64(userID),
      isBot: botByte == 1, layout: layout)
    try validate(payload, fail: fail)
    return payload
  }

  /// Encodes a payload in its `layout`, as Pyrogram's `export_session_string` does for the
  /// current layout (the legacy layouts as Pyrogram 1.x did).
  /// - Throws: `StoreError.session` with `.invalidField` (no api id for the current layout, a user
  ///   id that does not fit the layout), `.dcOutOfRange`, `.testModeDCOutOfRange` or `.authKeyAllZero`.
  public static func encode(_ payload: PyrogramSessionPayload, label: String = "Pyrogram session payload") throws
    -> String
  {
    func fail(_ reason: SessionProblem) -> StoreError { .session(object: label, reason: reason) }
    try validate(payload, fail: fail)
    guard payload.userID >= 0 else { throw fail(.invalidField("user_id is negative")) }
    var bytes: [UInt8] = [UInt8(payload.dcID)]
    if payload.layout == .current {
      guard let apiID = payload.apiID else { throw fail(.invalidField("api_id is missing (needed by the 362 layout)")) }
      guard (0...Int(UInt32.max)).contains(apiID) else { throw fail(.invalidField("api_id does not fit in 32 bits")) }
      bytes.appendBigEndian(UInt64(apiID), size: 4)
    }
    bytes.append(payload.isTestMode ? 1 : 0)
    bytes += payload.authKey.bytes
    if payload.layout == .legacy32 {
      guard payload.userID <= Int64(UInt32.max) else {
        throw fail(.invalidField("user_id does not fit the 351-character layout; use the 356 or 362 layout"))
      }
      bytes.appendBigEndian(UInt64(payload.userID), size: 4)
    } else {
      bytes.appendBigEndian(UInt64(payload.userID), size: 8)
    }
    bytes.append(payload.isBot ? 1 : 0)
    return URLSafeBase64.encode(bytes, padding: false)
  }

  private static func validate(_ payload: PyrogramSessionPayload, fail: (SessionProblem) -> StoreError) throws {
    if payload.isTestMode {
      guard (1...3).contains(payload.dcID) else { throw fail(.testModeDCOutOfRange(payload.dcID)) }
    } else {
      guard (1...5).contains(payload.dcID) else { throw fail(.dcOutOfRange(payload.dcID)) }
    }
    guard !payload.authKey.isAllZero else { throw fail(.authKeyAllZero) }
  }
}

extension String {
  /// `trimmingCharacters(in: .whitespacesAndNewlines)`, skipped when neither end is whitespace
  /// (the usual case, and the same result): `check` decodes one string per user, and
  /// Foundation's trimming cost more than the decoding.
  var trimmedForDecoding: String {
    guard let first = unicodeScalars.first, let last = unicodeScalars.last,
      CharacterSet.whitespacesAndNewlines.contains(first) || CharacterSet.whitespacesAndNewlines.contains(last)
    else { return self }
    return trimmingCharacters(in: .whitespacesAndNewlines)
  }
}

import Foundation

/// Why a Fernet operation failed. Every token problem is the single `invalidToken`, as in the
/// spec and Python's `cryptography.fernet`, so a caller learns nothing about which check failed;
/// no case carries token or key bytes.
public enum FernetError: Error, Equatable, Sendable, LocalizedError {
  /// The token is malformed, tampered with, expired, from the future, or made with another key.
  case invalidToken
  /// A key is not 32 bytes of padded URL-safe base64; `reason` says what is wrong with it.
  case invalidKey(reason: String)
  /// A key list was empty.
  case noKeys
  /// The clock used for encryption is before 1970, which a token cannot record.
  case clockBeforeEpoch

  public var errorDescription: String? {
    switch self {
    case .invalidToken:
      return "invalid Fernet token (wrong key, tampered, truncated or expired)"
    case .invalidKey(let reason):
      return "invalid Fernet key: \(reason)"
    case .noKeys:
      return "no Fernet key given; at least one is needed and the first one encrypts"
    case .clockBeforeEpoch:
      return "the system clock is before 1970; fix the clock and run again"
    }
  }

  /// The same failure as a `StoreError` naming `object` (the config value, user or file that
  /// held the token or key), with the next step.
  public func storeError(object: String) -> StoreError {
    switch self {
    case .invalidToken:
      return .crypto(
        object: object,
        reason: "not a valid Fernet token for the configured keys (wrong key, tampered, truncated or expired)",
        hint: "make sure the key that wrote it is in the Fernet key list (newest first)")
    case .invalidKey(let reason):
      return .key(
        path: object, reason: "invalid Fernet key: \(reason)",
        hint: "a Fernet key is 44 characters of URL-safe base64 (32 bytes), as Fernet.generate_key() prints it")
    case .noKeys:
      return .key(
        path: object, reason: "no Fernet key configured", hint: "add at least one key; the first one encrypts")
    case .clockBeforeEpoch:
      return .crypto(object: object, reason: "system clock is before 1970", hint: "fix the clock and run again")
    }
  }
}

/// One Fernet key: a 16-byte HMAC-SHA256 signing key and a 16-byte AES-128 encryption key,
/// written as 44 characters of padded URL-safe base64. Printing one shows only its fingerprint;
/// the key bytes are wiped from memory when the last copy goes.
public struct FernetKey: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
  let signingKey: SecretBytes
  let encryptionKey: SecretBytes
  /// First 8 hex digits of the SHA-256 of the 32 key bytes: safe to log, enough to tell keys apart.
  public let fingerprint: String

  /// Parses a key as Python's `Fernet(key)` accepts it: padded URL-safe base64 of exactly
  /// 32 bytes (44 characters). Surrounding whitespace, such as a file's final newline, is ignored.
  /// - Throws: `FernetError.invalidKey` saying what is wrong, never echoing the key.
  public init(base64: String) throws {
    let text = base64.trimmingCharacters(in: .whitespacesAndNewlines)
    guard text.utf8.count == 44 else {
      throw FernetError.invalidKey(reason: "it has \(text.utf8.count) characters instead of 44")
    }
    guard var bytes = Base64.decodeURLSafe(text) else {
      throw FernetError.invalidKey(reason: "it is not padded URL-safe base64")
    }
    try self.init(key: SecretBytes(wiping: &bytes))
  }

  /// A key from its 32 raw bytes (signing key, then encryption key).
  /// - Throws: `FernetError.invalidKey` when `key` is not 32 bytes long.
  package init(key: SecretBytes) throws {
    guard key.count == 32 else {
      throw FernetError.invalidKey(reason: "it decodes to \(key.count) bytes instead of 32")
    }
    signingKey = key.slice(0..<16)
    encryptionKey = key.slice(16..<32)
    fingerprint = String(key.withUnsafeBytes { Digest.sha256Hex($0) }.prefix(8))
  }

  /// A new random key.
  /// - Throws: `StoreError.crypto` when no randomness is available.
  public static func generate() throws -> FernetKey {
    try FernetKey(key: SecretBytes.random(32))
  }

  /// The key as 44 characters of padded URL-safe base64. This is the secret itself: store it,
  /// never log it.
  public var base64: String {
    var bytes = [UInt8](repeating: 0, count: 32)
    defer { bytes.withUnsafeMutableBytes { cleanse($0) } }
    bytes.withUnsafeMutableBytes { target in
      signingKey.withUnsafeBytes { target.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: 16) }
      encryptionKey.withUnsafeBytes { (target.baseAddress! + 16).copyMemory(from: $0.baseAddress!, byteCount: 16) }
    }
    return Base64.encodeURLSafe(bytes)
  }

  public var description: String { "FernetKey(fingerprint: \(fingerprint))" }
  public var debugDescription: String { description }
  public var customMirror: Mirror { Mirror(self, children: ["fingerprint": fingerprint]) }
}

/// Fernet tokens (spec version 0x80) with Python `MultiFernet` semantics: the first key
/// encrypts, every key decrypts, and `rotate` moves a token to the first key.
public struct Fernet: Sendable {
  /// The keys, newest first.
  public let keys: [FernetKey]

  private static let version: UInt8 = 0x80
  private static let maxClockSkew: Int64 = 60
  /// version + timestamp + IV + one AES block + HMAC.
  private static let minimumTokenByteCount = 1 + 8 + 16 + 16 + 32

  /// A Fernet over `keys`, newest first.
  /// - Throws: `FernetError.noKeys` when `keys` is empty.
  public init(keys: [FernetKey]) throws {
    guard !keys.isEmpty else { throw FernetError.noKeys }
    self.keys = keys
  }

  /// Encrypts `plaintext` under the first key, stamped with `now`.
  /// - Parameters:
  ///   - now: the token's timestamp (whole seconds); injected by tests.
  ///   - iv: a 16-byte IV for reproducible test vectors; leave nil to use a fresh random one.
  /// - Returns: the token as padded URL-safe base64.
  /// - Throws: `FernetError.clockBeforeEpoch`, or `StoreError.crypto` when libcrypto fails.
  public func encrypt(_ plaintext: [UInt8], now: Date = Date(), iv: [UInt8]? = nil) throws -> String {
    let seconds = now.timeIntervalSince1970.rounded(.down)
    guard seconds >= 0, seconds < 1.8e19 else { throw FernetError.clockBeforeEpoch }
    return try Self.seal(plaintext, key: keys[0], timestamp: UInt64(seconds), iv: iv)
  }

  /// Decrypts `token` with the first key that authenticates it.
  /// - Parameters:
  ///   - ttl: when given, tokens older than `ttl` seconds, or more than 60 s in the future, are
  ///     rejected (as Python does); when nil the timestamp is not checked at all.
  ///   - now: the current time for the TTL check; injected by tests.
  /// - Throws: `FernetError.invalidToken` for every kind of bad token.
  public func decrypt(_ token: String, ttl: TimeInterval? = nil, now: Date = Date()) throws -> [UInt8] {
    try decryptWithKeyIndex(token, ttl: ttl, now: now).plaintext
  }

  /// Decrypts `token` and says which key did it (0 = the newest), so a caller can tell tokens
  /// that still need rotating.
  /// - Throws: `FernetError.invalidToken` for every kind of bad token.
  public func decryptWithKeyIndex(
    _ token: String, ttl: TimeInterval? = nil, now: Date = Date()
  ) throws -> (plaintext: [UInt8], keyIndex: Int) {
    let opened = try open(token, ttl: ttl, now: now)
    return (opened.plaintext, opened.keyIndex)
  }

  /// Re-encrypts `token` under the first key with a fresh IV, keeping its original timestamp
  /// (Python's `MultiFernet.rotate`). The TTL is not checked.
  /// - Throws: `FernetError.invalidToken` when no key opens the token.
  public func rotate(_ token: String) throws -> String {
    let opened = try open(token, ttl: nil, now: Date())
    return try Self.seal(opened.plaintext, key: keys[0], timestamp: opened.timestamp, iv: nil)
  }

  /// A cheap test of whether `text` has the shape of a Fernet token (padded URL-safe base64,
  /// first byte 0x80, a possible length), to tell a stored token from plaintext. It does not
  /// authenticate anything.
  public static func looksLikeToken(_ text: String) -> Bool {
    let count = text.utf8.count
    // 73 bytes encode to 100 characters; each further AES block adds 16 bytes.
    guard count >= 100, count % 4 == 0, text.utf8.first == UInt8(ascii: "g") else { return false }
    guard let bytes = Base64.decodeURLSafe(text) else { return false }
    return bytes[0] == version && bytes.count >= minimumTokenByteCount
      && (bytes.count - minimumTokenByteCount) % 16 == 0
  }

  // MARK: - Token format

  private static func seal(_ plaintext: [UInt8], key: FernetKey, timestamp: UInt64, iv: [UInt8]?) throws -> String {
    let iv = try iv ?? SecureRandom.bytes(16)
    precondition(iv.count == 16, "a Fernet IV is 16 bytes")
    let ciphertext = try AES128CBC.encrypt(key: key.encryptionKey, iv: iv, plaintext: plaintext)
    var token: [UInt8] = [version]
    token.reserveCapacity(1 + 8 + 16 + ciphertext.count + 32)
    withUnsafeBytes(of: timestamp.bigEndian) { token.append(contentsOf: $0) }
    token.append(contentsOf: iv)
    token.append(contentsOf: ciphertext)
    token.append(contentsOf: try HMACSHA256.authenticate(key: key.signingKey, data: token))
    return Base64.encodeURLSafe(token)
  }

  /// The spec's order: decode, version, TTL, HMAC (constant time), decrypt, unpad.
  private func open(
    _ token: String, ttl: TimeInterval?, now: Date
  ) throws -> (plaintext: [UInt8], keyIndex: Int, timestamp: UInt64) {
    guard let bytes = Base64.decodeURLSafe(token), bytes.first == Self.version,
      bytes.count >= Self.minimumTokenByteCount, (bytes.count - Self.minimumTokenByteCount) % 16 == 0
    else { throw FernetError.invalidToken }
    let timestamp = bytes[1..<9].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    if let ttl {
      let current = now.timeIntervalSince1970.rounded(.down)
      if Double(timestamp) + ttl < current { throw FernetError.invalidToken }
      if current + Double(Self.maxClockSkew) < Double(timestamp) { throw FernetError.invalidToken }
    }
    let macStart = bytes.count - 32
    let signed = Array(bytes[0..<macStart])
    let mac = Array(bytes[macStart...])
    let iv = Array(bytes[9..<25])
    let ciphertext = Array(bytes[25..<macStart])
    for (index, key) in keys.enumerated() {
      let expected = try HMACSHA256.authenticate(key: key.signingKey, data: signed)
      guard ConstantTime.equals(expected, mac) else { continue }
      // MultiFernet semantics: a key whose MAC matches but whose padding fails is one more miss.
      guard let plaintext = try AES128CBC.decrypt(key: key.encryptionKey, iv: iv, ciphertext: ciphertext) else {
        continue
      }
      return (plaintext, index, timestamp)
    }
    throw FernetError.invalidToken
  }
}

import Foundation

/// An Ed25519 public key that verifies archive signatures, named by its key id.
public struct VerifyingKey: Sendable, Hashable, CustomStringConvertible {
  /// The 32 raw public-key bytes (RFC 8032).
  public let rawBytes: [UInt8]
  /// First 8 bytes of the SHA-256 of `rawBytes`, as 16 lower-case hex digits: names the key
  /// that signed an archive.
  public let keyID: String

  /// The key with raw bytes `rawBytes`.
  /// - Throws: `StoreError.key` when `rawBytes` is not 32 bytes long.
  public init(rawBytes: [UInt8]) throws {
    guard rawBytes.count == Ed25519.keyByteCount else {
      throw StoreError.key(
        path: "signing public key", reason: "it is \(rawBytes.count) bytes instead of 32",
        hint: "an Ed25519 public key is 32 bytes")
    }
    self.rawBytes = rawBytes
    keyID = Self.keyID(of: rawBytes)
  }

  /// The key id of 32 raw public-key bytes.
  static func keyID(of rawBytes: [UInt8]) -> String {
    String(Digest.sha256Hex(rawBytes).prefix(16))
  }

  /// The key as DER SubjectPublicKeyInfo, base64 (standard, padded): the body of its
  /// `-----BEGIN PUBLIC KEY-----` PEM.
  /// - Throws: `StoreError.crypto` when libcrypto fails.
  public func subjectPublicKeyInfoBase64() throws -> String {
    Base64.encodePadded(try Ed25519.subjectPublicKeyInfo(publicKey: rawBytes))
  }

  /// The key as PEM, which `openssl pkeyutl -verify -pubin -inkey FILE` reads.
  /// - Throws: `StoreError.crypto` when libcrypto fails.
  public func pem() throws -> String {
    "-----BEGIN PUBLIC KEY-----\n\(try subjectPublicKeyInfoBase64())\n-----END PUBLIC KEY-----\n"
  }

  /// Whether `signature` is this key's signature of `message`.
  /// - Throws: `StoreError.crypto` when libcrypto fails.
  func verifies(_ signature: [UInt8], of message: [UInt8]) throws -> Bool {
    try Ed25519.verify(signature: signature, message: message, publicKey: rawBytes)
  }

  public var description: String { "VerifyingKey(\(keyID))" }
}

/// The deployment's archive signing key (Ed25519), kept in `keys/signing.key` as PKCS#8 PEM.
/// Printing one shows only its key id; the key bytes are wiped from memory when the last copy
/// goes.
public struct SigningKey: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
  let privateKey: SecretBytes
  /// The public half, which goes into `keys/signing.pub` and into escrow.
  public let verifyingKey: VerifyingKey

  /// The key id of the public half.
  public var keyID: String { verifyingKey.keyID }

  package init(privateKey: SecretBytes) throws {
    precondition(privateKey.count == Ed25519.keyByteCount, "Ed25519 private keys are 32 bytes")
    self.privateKey = privateKey
    verifyingKey = try VerifyingKey(rawBytes: Ed25519.publicKey(privateKey: privateKey))
  }

  /// A new random key.
  /// - Throws: `StoreError.crypto` when no randomness is available.
  public static func generate() throws -> SigningKey {
    try SigningKey(privateKey: Ed25519.generatePrivateKey())
  }

  /// Signs `message`: 64 bytes.
  /// - Throws: `StoreError.crypto` when libcrypto fails.
  package func sign(_ message: [UInt8]) throws -> [UInt8] {
    try Ed25519.sign(message, privateKey: privateKey)
  }

  /// The key file's bytes: unencrypted PKCS#8 PEM, as `openssl genpkey -algorithm ed25519`
  /// writes it. This is the secret itself: write it to a 0600 file, never log it.
  /// - Throws: `StoreError.crypto` when libcrypto fails.
  package func pkcs8PEM() throws -> SecretBytes {
    try Ed25519.pkcs8PEM(privateKey: privateKey)
  }

  /// Parses a key file: exactly one unencrypted Ed25519 private key in PEM (PKCS#8 as tgsess
  /// and `openssl genpkey` write it), with nothing else in the file but surrounding whitespace.
  /// - Parameter path: the file, for messages.
  /// - Throws: `StoreError.key` naming `path` (never echoing its content).
  package static func parse(pem: SecretBytes, path: String) throws -> SigningKey {
    let begin = Array("-----BEGIN PRIVATE KEY-----".utf8)
    let end = Array("-----END PRIVATE KEY-----".utf8)
    let isFramed = pem.withUnsafeBytes { bytes -> Bool in
      let isSpace: (UInt8) -> Bool = { $0 == 0x20 || $0 == 0x0a || $0 == 0x0d || $0 == 0x09 }
      guard let first = bytes.firstIndex(where: { !isSpace($0) }), let last = bytes.lastIndex(where: { !isSpace($0) })
      else { return false }
      let body = bytes[first...last]
      return body.starts(with: begin) && body.reversed().starts(with: end.reversed())
        && body.count(where: { $0 == UInt8(ascii: "-") }) == 2 * 10
    }
    guard isFramed, let raw = try Ed25519.privateKey(pem: pem) else {
      throw StoreError.key(
        path: path, reason: "not an Ed25519 private key in PKCS#8 PEM (garbled, encrypted or another key type)",
        hint: "restore the file from a backup, or move it aside and run tgsess init to make a new signing key")
    }
    return try SigningKey(privateKey: raw)
  }

  public var description: String { "SigningKey(\(keyID))" }
  public var debugDescription: String { description }
  public var customMirror: Mirror { Mirror(self, children: ["keyID": keyID]) }
}

/// The public keys that verify this deployment's archives, newest first: the first is the
/// current signing key's, the others belong to keys rotated out, kept so older archives still
/// verify. Kept in `keys/signing.pub`, one line per key:
///
///     ed25519 <key id> <base64 DER SubjectPublicKeyInfo>
///
/// `#` lines and empty lines are comments.
public struct VerifyingKeyRing: Sendable, Equatable {
  /// Newest first.
  public let keys: [VerifyingKey]
  /// The file the ring came from, for messages.
  public let path: String

  /// A ring of `keys`, newest first.
  public init(keys: [VerifyingKey], path: String) {
    self.keys = keys
    self.path = path
  }

  /// The key with id `keyID`, if the ring holds it.
  public func key(id keyID: String) -> VerifyingKey? { keys.first { $0.keyID == keyID } }

  /// The same ring with `key` first (and not repeated further down).
  public func prepending(_ key: VerifyingKey) -> VerifyingKeyRing {
    VerifyingKeyRing(keys: [key] + keys.filter { $0 != key }, path: path)
  }

  static let algorithm = "ed25519"
  static let header = """
    # tgsess archive signing keys, newest first; the first one's private half is keys/signing.key.
    # Every key here verifies archives; keep a copy of this file with the age identity (escrow).
    # Format: ed25519 <key id> <base64 DER SubjectPublicKeyInfo>; docs/ARCHIVE-FORMAT.md

    """

  /// The ring in its file format.
  /// - Throws: `StoreError.crypto` when libcrypto fails.
  public func rendered() throws -> String {
    try Self.header
      + keys.map { "\(Self.algorithm) \($0.keyID) \(try $0.subjectPublicKeyInfoBase64())\n" }.joined()
  }

  /// Parses a ring file strictly: every line that is not empty or a `#` comment must be a key
  /// line whose key id matches its key, no key may repeat, and there must be at least one.
  /// - Throws: `StoreError.key` naming `path` and the line.
  public static func parse(_ text: String, path: String) throws -> VerifyingKeyRing {
    func failure(_ line: Int, _ reason: String) -> StoreError {
      .key(
        path: path, reason: "line \(line) is not a signing public key: \(reason)",
        hint: "each key line reads 'ed25519 KEY-ID BASE64', as tgsess init writes it; restore the file from escrow")
    }
    var keys: [VerifyingKey] = []
    for (index, rawLine) in text.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
      .enumerated()
    {
      var line = rawLine
      if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
      if line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }) || line.first == UInt8(ascii: "#") {
        continue
      }
      let number = index + 1
      let fields = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
        .map { String(decoding: $0, as: UTF8.self) }
      guard fields.count == 3 else { throw failure(number, "expected 3 fields separated by single spaces") }
      guard fields[0] == algorithm else { throw failure(number, "unknown algorithm (tgsess signs with ed25519)") }
      guard fields[1].utf8.count == 16, Hex.decode(fields[1]) != nil, fields[1] == fields[1].lowercased() else {
        throw failure(number, "the key id is not 16 lower-case hex digits")
      }
      guard let der = Base64.decodePaddedCanonical(fields[2]),
        let raw = try Ed25519.publicKey(subjectPublicKeyInfo: der)
      else { throw failure(number, "the key is not base64 of an Ed25519 SubjectPublicKeyInfo") }
      let key = try VerifyingKey(rawBytes: raw)
      guard key.keyID == fields[1] else { throw failure(number, "the key id does not match the key (garbled?)") }
      guard !keys.contains(key) else { throw failure(number, "key \(key.keyID) is listed twice") }
      keys.append(key)
    }
    guard !keys.isEmpty else {
      throw StoreError.key(
        path: path, reason: "no signing public key in the file",
        hint: "restore it from escrow, or run tgsess init to create the deployment's signing key")
    }
    return VerifyingKeyRing(keys: keys, path: path)
  }
}

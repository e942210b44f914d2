/// Constants of the age v1 format (https://c2sp.org/age).
enum AgeFormat {
  static let versionLine = Array("age-encryption.org/v1".utf8)
  static let x25519Label = Array("age-encryption.org/v1/X25519".utf8)
  static let headerKeyInfo = Array("header".utf8)
  static let payloadKeyInfo = Array("payload".utf8)
  static let fileKeyByteCount = 16
  static let payloadNonceByteCount = 16
  /// Plaintext bytes per payload chunk.
  static let chunkByteCount = 64 * 1024
  /// Bytes per full chunk on disk (plaintext + tag).
  static let sealedChunkByteCount = chunkByteCount + ChaCha20Poly1305Context.tagByteCount
  /// Largest header accepted; real ones are a few hundred bytes per recipient.
  static let maxHeaderByteCount = 1 << 20
  /// Most X25519 stanzas one header may hold. Each costs one scalar multiplication per
  /// identity when decrypting, and recover tries every archive: a planted 1 MiB header would
  /// otherwise cost about 10,700 per identity. A deployment has a handful of recipients.
  package static let maxX25519StanzaCount = 1000
  static let columnCount = 64
  static let zeroNonce = [UInt8](repeating: 0, count: ChaCha20Poly1305Context.nonceByteCount)
}

/// One header stanza: `-> type args...` and a binary body.
struct AgeStanza: Equatable {
  var arguments: [String]
  var body: [UInt8]

  /// The stanza as header text: argument line, then the base64 body wrapped at 64 columns and
  /// always ended by a line shorter than 64 (possibly empty).
  func serialized() -> [UInt8] {
    var out = Array("-> ".utf8)
    out.append(contentsOf: Array(arguments.joined(separator: " ").utf8))
    out.append(UInt8(ascii: "\n"))
    let text = Array(Base64.encodeUnpadded(body).utf8)
    var start = 0
    while text.count - start >= AgeFormat.columnCount {
      out.append(contentsOf: text[start..<start + AgeFormat.columnCount])
      out.append(UInt8(ascii: "\n"))
      start += AgeFormat.columnCount
    }
    out.append(contentsOf: text[start...])
    out.append(UInt8(ascii: "\n"))
    return out
  }
}

/// An X25519 recipient stanza, checked for shape.
struct AgeX25519Stanza {
  var share: [UInt8]
  var body: [UInt8]
}

/// What unwrapping a file key cost, for tests that hold the work to its bounds.
package struct AgeUnwrapCost: Equatable, Sendable {
  /// Private keys imported into libcrypto: one per identity tried.
  package var keyImports = 0
  /// X25519 agreements (scalar multiplications) made.
  package var agreements = 0

  package init() {}
}

/// A parsed header: its stanzas, MAC, and the bytes the MAC covers.
package struct AgeHeader {
  var stanzas: [AgeStanza]
  var mac: [UInt8]
  /// Header bytes from the start up to and including `---`.
  var macInput: [UInt8]

  // MARK: - Writing

  /// Builds a complete header (ending with the MAC line) that wraps `fileKey` to `recipients`.
  /// - Throws: `AgeError(.key)` for a low-order recipient key, or `StoreError.crypto`.
  static func make(fileKey: SecretBytes, recipients: [AgeRecipient]) throws -> [UInt8] {
    var out = AgeFormat.versionLine + [UInt8(ascii: "\n")]
    for recipient in recipients {
      out.append(contentsOf: try wrapX25519(fileKey: fileKey, to: recipient).serialized())
    }
    out.append(contentsOf: Array("---".utf8))
    let mac = try HMACSHA256.authenticate(key: headerKey(fileKey: fileKey), data: out)
    out.append(UInt8(ascii: " "))
    out.append(contentsOf: Array(Base64.encodeUnpadded(mac).utf8))
    out.append(UInt8(ascii: "\n"))
    return out
  }

  static func headerKey(fileKey: SecretBytes) throws -> SecretBytes {
    try HKDFSHA256.derive(ikm: fileKey, salt: [], info: AgeFormat.headerKeyInfo)
  }

  /// One stanza: a fresh ephemeral key per recipient. The ephemeral secret, the shared secret
  /// and the wrap key are wiped when this returns.
  private static func wrapX25519(fileKey: SecretBytes, to recipient: AgeRecipient) throws -> AgeStanza {
    let ephemeral = try X25519.generatePrivateKey()
    let (share, shared) = try X25519.withPrivateKey(ephemeral) { key in
      (try key.publicKey(), try key.sharedSecret(with: recipient.publicKey))
    }
    guard let shared else {
      throw AgeError(
        .key, object: "age recipient \(recipient.string)", reason: "a low-order point, not a usable X25519 public key")
    }
    let wrapKey = try HKDFSHA256.derive(
      ikm: shared, salt: share + recipient.publicKey, info: AgeFormat.x25519Label)
    let body = try ChaCha20Poly1305.seal(key: wrapKey, nonce: AgeFormat.zeroNonce, plaintext: fileKey)
    return AgeStanza(arguments: ["X25519", Base64.encodeUnpadded(share)], body: body)
  }

  // MARK: - Reading

  /// Reads and strictly parses a header from `source`.
  /// - Returns: the header and the bytes read past its end (the start of the payload).
  /// - Throws: `AgeError(.header)`, or what `source` throws.
  package static func read(from source: ByteSource, object: String) throws -> (header: AgeHeader, leftover: [UInt8]) {
    var lines = LineReader(source: source, object: object)
    func failure(_ reason: String) -> AgeError { AgeError(.header, object: object, reason: reason) }

    let first = try lines.next()
    guard first.elementsEqual(AgeFormat.versionLine) else {
      if first.starts(with: Array("age-encryption.org/".utf8)) {
        throw failure("unsupported age format version (tgsess reads age-encryption.org/v1)")
      }
      if first.starts(with: Array("-----BEGIN AGE ENCRYPTED FILE-----".utf8)) {
        throw failure("ASCII-armored age file; tgsess reads binary age files only")
      }
      throw failure("not an age file (the first line is not age-encryption.org/v1)")
    }

    var stanzas: [AgeStanza] = []
    while true {
      let lineStart = lines.lineStart
      let line = try lines.next()
      if line.starts(with: Array("-> ".utf8)) {
        let arguments = line.dropFirst(3).split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
        guard arguments.allSatisfy({ !$0.isEmpty && $0.allSatisfy { (0x21...0x7e).contains($0) } }) else {
          throw failure("stanza \(stanzas.count + 1) has an empty argument or a character outside printable ASCII")
        }
        var text: [UInt8] = []
        while true {
          let bodyLine = try lines.next()
          guard bodyLine.count <= AgeFormat.columnCount else {
            throw failure("stanza \(stanzas.count + 1) has a body line longer than 64 columns")
          }
          text.append(contentsOf: bodyLine)
          if bodyLine.count < AgeFormat.columnCount { break }
        }
        guard let body = Base64.decodeUnpaddedCanonical(text) else {
          throw failure("stanza \(stanzas.count + 1) body is not canonical unpadded base64")
        }
        stanzas.append(AgeStanza(arguments: arguments.map { String(decoding: $0, as: UTF8.self) }, body: body))
      } else if line.starts(with: Array("---".utf8)) {
        // Exactly "--- " + 43 base64 characters: no missing, extra or trailing space.
        guard line.count == 4 + 43, line[line.startIndex + 3] == UInt8(ascii: " "),
          let mac = Base64.decodeUnpaddedCanonical(line.dropFirst(4)), mac.count == HMACSHA256.byteCount
        else { throw failure("malformed MAC line (expected '--- ' and 43 base64 characters)") }
        guard !stanzas.isEmpty else { throw failure("no recipient stanza in the header") }
        let header = AgeHeader(stanzas: stanzas, mac: mac, macInput: Array(lines.bytes[0..<lineStart + 3]))
        return (header, lines.leftover())
      } else {
        throw failure("unexpected line in the header (expected a '-> ' stanza or the '---' MAC line)")
      }
    }
  }

  /// Checks the shape of every X25519 stanza before any decryption, and refuses what tgsess
  /// does not decrypt: passphrase (scrypt) stanzas, and more than `maxX25519StanzaCount`
  /// X25519 stanzas. Stanzas of other types are ignored, as the spec requires.
  /// - Throws: `AgeError(.header)` naming the problem.
  func x25519Stanzas(object: String) throws -> [AgeX25519Stanza] {
    func failure(_ reason: String) -> AgeError { AgeError(.header, object: object, reason: reason) }
    // The count comes first: a planted header is refused before a single stanza is looked at.
    let count = stanzas.count(where: { $0.arguments[0] == "X25519" })
    guard count <= AgeFormat.maxX25519StanzaCount else {
      throw failure(
        "the header has \(count) X25519 recipient stanzas; tgsess reads at most \(AgeFormat.maxX25519StanzaCount)")
    }
    var result: [AgeX25519Stanza] = []
    result.reserveCapacity(count)
    for stanza in stanzas {
      switch stanza.arguments[0] {
      case "X25519":
        guard stanza.arguments.count == 2 else { throw failure("X25519 stanza needs exactly one argument") }
        guard let share = Base64.decodeUnpaddedCanonical(stanza.arguments[1]), share.count == X25519.byteCount else {
          throw failure("X25519 stanza share is not 32 bytes of canonical base64")
        }
        // The body length is checked before any decryption (partitioning-oracle defence).
        guard stanza.body.count == AgeFormat.fileKeyByteCount + ChaCha20Poly1305Context.tagByteCount else {
          throw failure("X25519 stanza body is \(stanza.body.count) bytes instead of 32")
        }
        result.append(AgeX25519Stanza(share: share, body: stanza.body))
      case "scrypt":
        // tgsess archives are encrypted to X25519 recipients only; a passphrase file is not one
        // of them, and refusing it here keeps scrypt's memory-hard work out of every reader.
        throw failure("passphrase-encrypted archives are not supported (an age scrypt stanza)")
      default:
        continue
      }
    }
    return result
  }

  /// Unwraps the file key with the first identity that opens a stanza. Each identity's key is
  /// imported into libcrypto once, whatever the number of stanzas; every intermediate secret
  /// is wiped as soon as it is used.
  /// - Parameter cost: counts the work done, for tests.
  /// - Throws: `AgeError(.header)` for a malformed, oversized or passphrase header or a
  ///   low-order X25519 share, `AgeError(.noMatch)` when nothing opens, or `StoreError.crypto`
  ///   when libcrypto fails.
  package func unwrapFileKey(
    identities: [AgeIdentity], object: String, cost: inout AgeUnwrapCost
  ) throws -> SecretBytes {
    let x25519 = try x25519Stanzas(object: object)
    for identity in identities {
      let fileKey = try X25519.withPrivateKey(identity.privateKey) { key -> SecretBytes? in
        cost.keyImports += 1
        for stanza in x25519 {
          cost.agreements += 1
          guard let shared = try key.sharedSecret(with: stanza.share) else {
            throw AgeError(.header, object: object, reason: "X25519 stanza has a low-order share (all-zero secret)")
          }
          let wrapKey = try HKDFSHA256.derive(
            ikm: shared, salt: stanza.share + identity.recipient.publicKey, info: AgeFormat.x25519Label)
          if let fileKey = try ChaCha20Poly1305.open(key: wrapKey, nonce: AgeFormat.zeroNonce, sealed: stanza.body) {
            return fileKey
          }
        }
        return nil
      }
      if let fileKey { return fileKey }
    }
    if identities.isEmpty {
      throw AgeError(.noMatch, object: object, reason: "no identity given to decrypt with")
    }
    throw AgeError(
      .noMatch, object: object,
      reason: "none of the \(identities.count) given identities opens any of the \(stanzas.count) recipient stanzas")
  }

  /// Unwraps the file key (see `unwrapFileKey(identities:object:cost:)`).
  /// - Throws: `AgeError` or `StoreError.crypto`.
  func unwrapFileKey(identities: [AgeIdentity], object: String) throws -> SecretBytes {
    var cost = AgeUnwrapCost()
    return try unwrapFileKey(identities: identities, object: object, cost: &cost)
  }

  /// Checks the header MAC in constant time.
  /// - Throws: `AgeError(.hmac)` on mismatch.
  func verifyMAC(fileKey: SecretBytes, object: String) throws {
    let expected = try HMACSHA256.authenticate(key: Self.headerKey(fileKey: fileKey), data: macInput)
    guard ConstantTime.equals(expected, mac) else {
      throw AgeError(.hmac, object: object, reason: "header MAC does not verify")
    }
  }
}

/// Splits the header into LF-terminated lines as bytes arrive from the source.
private struct LineReader {
  let source: ByteSource
  let object: String
  private(set) var bytes: [UInt8] = []
  /// Offset of the line `next()` returns next.
  private(set) var lineStart = 0
  private var scanned = 0
  private var isAtEnd = false

  init(source: ByteSource, object: String) {
    self.source = source
    self.object = object
  }

  /// The next line without its LF.
  /// - Throws: `AgeError(.header)` when the data ends first or the header is too large.
  mutating func next() throws -> ArraySlice<UInt8> {
    while true {
      if let newline = bytes[scanned...].firstIndex(of: UInt8(ascii: "\n")) {
        let line = bytes[lineStart..<newline]
        lineStart = newline + 1
        scanned = lineStart
        return line
      }
      scanned = bytes.count
      guard !isAtEnd else {
        throw AgeError(
          .header, object: object,
          reason: bytes.isEmpty ? "empty file" : "the header is truncated (it ends before the '---' MAC line)")
      }
      guard bytes.count < AgeFormat.maxHeaderByteCount else {
        throw AgeError(.header, object: object, reason: "the header is larger than 1 MiB")
      }
      var block = [UInt8](repeating: 0, count: 4096)
      let count = try block.withUnsafeMutableBytes { try source.read(into: $0) }
      if count == 0 { isAtEnd = true }
      bytes.append(contentsOf: block[0..<count])
    }
  }

  /// The bytes read beyond the last returned line.
  func leftover() -> [UInt8] { Array(bytes[lineStart...]) }
}

import Foundation

/// An age X25519 recipient (public key), written `age1...`.
public struct AgeRecipient: Sendable, Hashable, CustomStringConvertible {
  package let publicKey: [UInt8]

  private static let hrp = "age"

  /// Parses `age1...` (lower case, as age writes and requires it).
  /// - Throws: `AgeError` of kind `.key`; the message does not echo the string.
  public init(string: String) throws {
    guard let (hrp, data) = Bech32.decode(string) else {
      throw AgeError(.key, object: "age recipient", reason: "not a valid Bech32 string (typo or truncated copy?)")
    }
    guard hrp == Self.hrp else {
      throw AgeError(.key, object: "age recipient", reason: "not an X25519 recipient (expected lower-case age1...)")
    }
    guard data.count == X25519.byteCount else {
      throw AgeError(.key, object: "age recipient", reason: "wrong key length (\(data.count) bytes, expected 32)")
    }
    publicKey = data
  }

  package init(publicKey: [UInt8]) {
    precondition(publicKey.count == X25519.byteCount, "X25519 public keys are 32 bytes")
    self.publicKey = publicKey
  }

  /// The recipient as `age1...`.
  public var string: String { Bech32.encode(hrp: Self.hrp, data: publicKey) }

  public var description: String { string }
}

/// An age X25519 identity (private key), written `AGE-SECRET-KEY-1...`. Printing one shows
/// only its recipient; the key bytes are wiped from memory when the last copy goes.
public struct AgeIdentity: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
  package let privateKey: SecretBytes
  /// The matching recipient (public key).
  public let recipient: AgeRecipient

  private static let hrp = "AGE-SECRET-KEY-"

  /// Parses `AGE-SECRET-KEY-1...` (upper case, as age writes and requires it).
  /// - Throws: `AgeError` of kind `.key`; the message never echoes the key.
  public init(string: String) throws {
    guard let decoded = Bech32.decode(string) else {
      throw AgeError(.key, object: "age identity", reason: "not a valid Bech32 string (typo or truncated copy?)")
    }
    var data = decoded.data
    let key = SecretBytes(wiping: &data)
    guard decoded.hrp == Self.hrp else {
      throw AgeError(
        .key, object: "age identity", reason: "not an X25519 identity (expected upper-case AGE-SECRET-KEY-1...)")
    }
    guard key.count == X25519.byteCount else {
      throw AgeError(.key, object: "age identity", reason: "wrong key length (\(key.count) bytes, expected 32)")
    }
    try self.init(privateKey: key)
  }

  /// An identity from its 32 raw private-key bytes.
  /// - Throws: `StoreError.crypto` when libcrypto fails.
  package init(privateKey: SecretBytes) throws {
    precondition(privateKey.count == X25519.byteCount, "X25519 private keys are 32 bytes")
    self.privateKey = privateKey
    recipient = AgeRecipient(publicKey: try X25519.publicKey(privateKey: privateKey))
  }

  /// A new random identity.
  /// - Throws: `StoreError.crypto` when no randomness is available.
  public static func generate() throws -> AgeIdentity {
    try AgeIdentity(privateKey: X25519.generatePrivateKey())
  }

  /// The identity as `AGE-SECRET-KEY-1...`. This is the secret itself: store it, never log it.
  public var string: String {
    var bytes = privateKey.unprotectedCopy()
    defer { bytes.withUnsafeMutableBytes { cleanse($0) } }
    return Bech32.encode(hrp: Self.hrp, data: bytes).uppercased()
  }

  public var description: String { "AgeIdentity(recipient: \(recipient.string))" }
  public var debugDescription: String { description }
  public var customMirror: Mirror { Mirror(self, children: ["recipient": recipient.string]) }
}

/// Identity and recipient files in the format of `age-keygen` and `age -R`, so an operator can
/// use tgsess's key file with stock `age -d -i key.txt`.
public enum AgeKeyFile {
  /// Parses an identity file: one `AGE-SECRET-KEY-1...` per line; empty lines and lines
  /// starting with `#` are ignored (age's rules; CRLF line ends are accepted).
  /// - Parameter path: the file's path, for messages.
  /// - Throws: `StoreError.key` naming the path and line number (never the line's content) when
  ///   a line is not an X25519 identity or the file holds none.
  public static func parseIdentities(_ text: String, path: String) throws -> [AgeIdentity] {
    var identities: [AgeIdentity] = []
    for (number, line) in lines(of: text) {
      do {
        identities.append(try AgeIdentity(string: line))
      } catch let error as AgeError {
        throw StoreError.key(
          path: path, reason: "line \(number) is not a usable age identity: \(error.reason)",
          hint: "an identity file has one AGE-SECRET-KEY-1... per line, as age-keygen writes it")
      }
    }
    guard !identities.isEmpty else {
      throw StoreError.key(
        path: path, reason: "no age identity in the file",
        hint: "create one with tgsess's key generation or age-keygen -o \(path)")
    }
    return identities
  }

  /// Reads and parses an identity file.
  /// - Throws: `StoreError.missing`/`.io` when the file cannot be read, `StoreError.key` when it
  ///   is not an identity file.
  public static func loadIdentities(path: String) throws -> [AgeIdentity] {
    try parseIdentities(String(decoding: FileSystem.read(path), as: UTF8.self), path: path)
  }

  /// Renders `identity` the way `age-keygen` does.
  public static func render(_ identity: AgeIdentity, created: Date = Date()) -> String {
    let formatter = ISO8601DateFormatter()
    formatter.timeZone = TimeZone(identifier: "UTC")
    formatter.formatOptions = [.withInternetDateTime]
    return "# created: \(formatter.string(from: created))\n# public key: \(identity.recipient.string)\n"
      + "\(identity.string)\n"
  }

  /// Writes `identity` to a new file at `path` (mode 0600, atomically, never replacing an
  /// existing file).
  /// - Throws: `StoreError.io` (EEXIST when the file already exists).
  public static func write(_ identity: AgeIdentity, to path: String, created: Date = Date()) throws {
    try FileSystem.writeAtomically(
      Data(render(identity, created: created).utf8), to: path, mode: FileSystem.fileMode, overwrite: false)
  }

  /// Parses a recipients file: one `age1...` per line; empty and `#` lines are ignored.
  /// - Throws: `StoreError.key` naming the path and line number when a line is not an X25519
  ///   recipient or the file holds none.
  public static func parseRecipients(_ text: String, path: String) throws -> [AgeRecipient] {
    var recipients: [AgeRecipient] = []
    for (number, line) in lines(of: text) {
      do {
        recipients.append(try AgeRecipient(string: line))
      } catch let error as AgeError {
        throw StoreError.key(
          path: path, reason: "line \(number) is not a usable age recipient: \(error.reason)",
          hint: "a recipients file has one age1... per line; age-keygen -y KEYFILE prints it")
      }
    }
    guard !recipients.isEmpty else {
      throw StoreError.key(
        path: path, reason: "no age recipient in the file", hint: "add the output of age-keygen -y KEYFILE")
    }
    return recipients
  }

  /// Reads and parses a recipients file.
  /// - Throws: `StoreError.missing`/`.io` when the file cannot be read, `StoreError.key` when it
  ///   is not a recipients file.
  public static func loadRecipients(path: String) throws -> [AgeRecipient] {
    try parseRecipients(String(decoding: FileSystem.read(path), as: UTF8.self), path: path)
  }

  /// The meaningful lines with their 1-based numbers.
  private static func lines(of text: String) -> [(Int, String)] {
    var result: [(Int, String)] = []
    // Split bytes, not Characters: Swift treats "\r\n" as one Character.
    for (index, rawLine) in text.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
      .enumerated()
    {
      var line = rawLine
      if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
      if line.isEmpty || line.first == UInt8(ascii: "#") { continue }
      result.append((index + 1, String(decoding: line, as: UTF8.self)))
    }
    return result
  }
}

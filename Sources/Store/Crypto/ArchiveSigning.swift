import Foundation

/// What a signature vouches for about one archive (format v1): the archive's id, kind, user,
/// time and reason, how it is encrypted, the size and SHA-256 of the archive file as it sits on
/// disk (so a host without the age identity can authenticate it) and the SHA-256 of its
/// `manifest.json` (so a host that decrypts authenticates every entry through the manifest's
/// hashes). Its canonical encoding is a short text, one `name value` line per field in a fixed
/// order, led by a context line that separates it from anything else the key could sign;
/// docs/ARCHIVE-FORMAT.md describes it and how to check it by hand.
public struct SignedStatement: Sendable, Equatable {
  /// The first line: the signature's domain and format version.
  public static let context = "tgsess archive signature v1"

  /// How the archive file is encrypted; part of what is signed, so an encrypted archive cannot be
  /// passed off as a plain one or the other way round.
  public enum Encryption: String, Sendable, Equatable, CaseIterable {
    /// age v1 (`<id>.tar.zst.age`).
    case age
    /// None (`<id>.tar.zst`, `--no-encrypt`).
    case none
  }

  public var archiveID: String
  public var kind: Manifest.Kind
  /// The user of a per-user archive; nil for a full one.
  public var userID: Int64?
  /// Whole seconds, UTC.
  public var createdAt: Date
  public var reason: String
  public var encryption: Encryption
  /// Size of the archive file in bytes.
  public var fileByteCount: Int64
  /// Lower-case hex SHA-256 of the archive file (the ciphertext when encrypted).
  public var fileSHA256: String
  /// Lower-case hex SHA-256 of the `manifest.json` entry's bytes.
  public var manifestSHA256: String

  /// The largest signature file a reader accepts (a real one is about 450 bytes).
  static let maximumByteCount = 4096
  /// The largest reason accepted, in UTF-8 bytes.
  static let maximumReasonByteCount = 256

  /// A statement; every field is checked as `decode` checks it, so tgsess never signs what it
  /// would refuse to read.
  /// - Throws: `StoreError.invalid` naming `archiveID` and the field.
  public init(
    archiveID: String, kind: Manifest.Kind, userID: Int64?, createdAt: Date, reason: String,
    encryption: Encryption, fileByteCount: Int64, fileSHA256: String, manifestSHA256: String
  ) throws {
    self.archiveID = archiveID
    self.kind = kind
    self.userID = userID
    self.createdAt = createdAt
    self.reason = reason
    self.encryption = encryption
    self.fileByteCount = fileByteCount
    self.fileSHA256 = fileSHA256
    self.manifestSHA256 = manifestSHA256
    if let problem = problem() {
      throw StoreError.invalid(
        path: "archive \(archiveID)", reason: "cannot sign it: \(problem)", hint: "this is a tgsess bug; report it")
    }
  }

  /// The statement for an archive about to be published: what it says comes from the manifest
  /// (kind, user, time, reason) and from the file just written.
  /// - Parameters:
  ///   - manifestBytes: the exact bytes of the `manifest.json` entry.
  ///   - fileSHA256: lower-case hex SHA-256 of the archive file.
  /// - Throws: `StoreError.invalid` when a field is out of range.
  public init(
    archiveID: String, manifest: Manifest, manifestBytes: Data, isEncrypted: Bool, fileByteCount: Int64,
    fileSHA256: String
  ) throws {
    try self.init(
      archiveID: archiveID, kind: manifest.kind, userID: manifest.userID, createdAt: manifest.createdAt,
      reason: manifest.reason, encryption: isEncrypted ? .age : .none, fileByteCount: fileByteCount,
      fileSHA256: fileSHA256, manifestSHA256: Digest.sha256Hex(manifestBytes))
  }

  /// The archive's file name, `<id>.tar.zst.age` or `<id>.tar.zst`.
  public var fileName: String { ArchiveName.fileName(id: archiveID, isEncrypted: encryption == .age) }

  // MARK: - Encoding

  /// The field lines in their canonical form (LF line ends); a signature covers the context
  /// line, these lines and the `key` line (see `ArchiveSignature.signedBytes`).
  public func encoded() -> [UInt8] {
    Array(lines().map { "\($0.name) \($0.value)\n" }.joined().utf8)
  }

  /// The fields in their order, after the context line.
  static let fieldNames = [
    "id", "kind", "user", "created", "reason", "encryption", "file-size", "file-sha256", "manifest-sha256",
  ]

  private func lines() -> [(name: String, value: String)] {
    let values = [
      archiveID, kind.rawValue, userID.map(String.init) ?? "none", Self.formatTime(createdAt), reason,
      encryption.rawValue, String(fileByteCount), fileSHA256, manifestSHA256,
    ]
    return zip(Self.fieldNames, values).map { (name: $0, value: $1) }
  }

  // MARK: - Checks

  /// What is wrong with the fields, if anything.
  func problem() -> String? {
    if let userID, userID < 0 { return "user is negative" }
    if (kind == .full) != (userID == nil) { return "a full archive has no user and a per-user archive has one" }
    // The id as `ArchiveName.makeID` writes it: time, kind and user, then lower-case letters
    // and digits.
    let parts = archiveID.split(separator: "-", omittingEmptySubsequences: false)
    guard Self.isToken(archiveID), parts.count == 3, Timestamp.parseCompact(String(parts[0])) != nil,
      parts[1] == "full" || (parts[1].hasPrefix("u") && Int64(parts[1].dropFirst()) != nil),
      !parts[2].isEmpty, parts[2].utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x7a).contains($0) })
    else { return "id is not a tgsess archive id" }
    guard parts[1] == (kind == .full ? "full" : "u\(userID ?? 0)") else {
      return "id \(archiveID) names another kind or user than the kind and user fields"
    }
    guard createdAt.timeIntervalSince1970 == createdAt.timeIntervalSince1970.rounded(.down),
      parts[0] == Timestamp.compact(createdAt)
    else { return "created is not the time in the id, in whole seconds" }
    guard !reason.isEmpty, reason.utf8.count <= Self.maximumReasonByteCount,
      reason.utf8.allSatisfy({ $0 >= 0x20 && $0 != 0x7f })
    else { return "reason is empty, longer than \(Self.maximumReasonByteCount) bytes or holds a control character" }
    guard fileByteCount >= 0 else { return "file-size is negative" }
    guard Self.isSHA256(fileSHA256) else { return "file-sha256 is not 64 lower-case hex digits" }
    guard Self.isSHA256(manifestSHA256) else { return "manifest-sha256 is not 64 lower-case hex digits" }
    return nil
  }

  static func isToken(_ text: String) -> Bool {
    !text.isEmpty && text.utf8.count <= 128
      && text.utf8.allSatisfy { (0x21...0x7e).contains($0) }
  }

  static func isSHA256(_ text: String) -> Bool {
    text.utf8.count == 64 && text.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
  }

  /// `YYYY-MM-DDTHH:MM:SSZ`, UTC, as the manifest writes its time (seconds rounded down).
  static func formatTime(_ date: Date) -> String {
    CivilTime.format(CivilTime.fields(date), pattern: CivilTime.statementPattern)
      ?? Timestamp.string(date).replacingOccurrences(of: " ", with: "T") + "Z"
  }

  /// `YYYY-MM-DDTHH:MM:SSZ` and nothing else, a real UTC time.
  static func parseTime(_ text: String) -> Date? {
    guard let date = CivilTime.parse(text, pattern: CivilTime.statementPattern), formatTime(date) == text else {
      return nil
    }
    return date
  }
}

/// A signed statement as it is stored: `<id>.sig` beside the archive, the statement's lines,
/// a `key <key id>` line, and a `signature <base64>` line. The signature covers every byte
/// before the `signature` line.
public struct ArchiveSignature: Sendable, Equatable {
  public var statement: SignedStatement
  /// The id of the key that made the signature (16 hex digits).
  public var keyID: String
  /// 64 bytes of Ed25519 signature.
  public var signature: [UInt8]

  /// The file name suffix of a signature file: `<id>.sig`.
  public static let fileSuffix = ".sig"

  /// A signature as it is stored; `ArchiveSigning.sign` makes real ones.
  public init(statement: SignedStatement, keyID: String, signature: [UInt8]) {
    self.statement = statement
    self.keyID = keyID
    self.signature = signature
  }

  /// The bytes the signature covers: the context line, the statement's lines and the key line.
  public var signedBytes: [UInt8] {
    Array("\(SignedStatement.context)\n".utf8) + statement.encoded() + Array("key \(keyID)\n".utf8)
  }

  /// The signature file's bytes.
  public func encoded() -> Data {
    Data(signedBytes + Array("signature \(Base64.encodePadded(signature))\n".utf8))
  }

  /// Parses a signature file strictly: every line in its place, each value in its one canonical
  /// spelling, LF line ends, nothing after the signature line. It does not verify the signature.
  /// - Parameter object: what errors name (the signature file's path).
  /// - Throws: `StoreError.invalid` with one line saying which line is wrong.
  public static func decode(_ data: Data, object: String) throws -> ArchiveSignature {
    func failure(_ reason: String) -> StoreError {
      .invalid(
        path: object, reason: "not a valid tgsess archive signature: \(reason)",
        hint: "the signature file is damaged or was not made by tgsess; do not trust this archive, use another backup")
    }
    guard data.count <= SignedStatement.maximumByteCount else { throw failure("larger than 4 KiB") }
    let bytes = [UInt8](data)
    guard bytes.last == UInt8(ascii: "\n") else { throw failure("it does not end with a line feed (truncated?)") }
    guard !bytes.contains(UInt8(ascii: "\r")) else { throw failure("it has CR characters (lines end with LF only)") }
    guard String(validating: bytes, as: UTF8.self) != nil else { throw failure("it is not UTF-8 text") }
    // Lines and names are compared as bytes: as Characters, a value that starts with a
    // combining mark would merge with the space before it.
    let lines = bytes.dropLast().split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
    let names = ["(context)"] + SignedStatement.fieldNames + ["key", "signature"]
    guard lines.count == names.count else {
      throw failure("it has \(lines.count) lines instead of \(names.count)")
    }
    guard lines[0].elementsEqual(SignedStatement.context.utf8) else {
      if lines[0].starts(with: "tgsess archive signature ".utf8) {
        throw failure("line 1 names an unsupported format version (this tgsess reads v1)")
      }
      throw failure("line 1 is not '\(SignedStatement.context)'")
    }
    var values: [String] = []
    for (index, line) in lines.enumerated().dropFirst() {
      let prefix = Array((names[index] + " ").utf8)
      guard line.starts(with: prefix), line.count > prefix.count else {
        throw failure("line \(index + 1) is not '\(names[index]) VALUE'")
      }
      values.append(String(decoding: line.dropFirst(prefix.count), as: UTF8.self))
    }
    func field(_ name: String) -> (line: Int, value: String) {
      let index = names.firstIndex(of: name)!
      return (index + 1, values[index - 1])
    }
    func bad(_ name: String, _ expected: String) -> StoreError {
      failure("line \(field(name).line) ('\(name)') is not \(expected)")
    }
    // Each value in its one spelling; `problem()` then checks how they fit together.
    let id = field("id").value
    guard SignedStatement.isToken(id) else { throw bad("id", "an archive id") }
    guard let kind = Manifest.Kind(rawValue: field("kind").value) else { throw bad("kind", "'full' or 'user'") }
    let userText = field("user").value
    var userID: Int64?
    if userText != "none" {
      guard let number = Int64(userText), number >= 0, String(number) == userText else {
        throw bad("user", "'none' or a user id in decimal")
      }
      userID = number
    }
    guard (kind == .full) == (userID == nil) else {
      throw failure("kind \(kind.rawValue) does not go with user \(userText)")
    }
    guard let createdAt = SignedStatement.parseTime(field("created").value) else {
      throw bad("created", "a UTC time written YYYY-MM-DDTHH:MM:SSZ")
    }
    let reason = field("reason").value
    guard let encryption = SignedStatement.Encryption(rawValue: field("encryption").value) else {
      throw bad("encryption", "'age' or 'none'")
    }
    let sizeText = field("file-size").value
    guard let fileByteCount = Int64(sizeText), fileByteCount >= 0, String(fileByteCount) == sizeText else {
      throw bad("file-size", "a byte count in decimal")
    }
    let fileSHA256 = field("file-sha256").value
    guard SignedStatement.isSHA256(fileSHA256) else { throw bad("file-sha256", "64 lower-case hex digits") }
    let manifestSHA256 = field("manifest-sha256").value
    guard SignedStatement.isSHA256(manifestSHA256) else { throw bad("manifest-sha256", "64 lower-case hex digits") }
    let keyID = field("key").value
    guard keyID.utf8.count == 16, keyID.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) })
    else { throw bad("key", "a key id of 16 lower-case hex digits") }
    guard let signature = Base64.decodePaddedCanonical(field("signature").value),
      signature.count == Ed25519.signatureByteCount
    else { throw bad("signature", "64 bytes in padded base64") }
    let statement = SignedStatement(
      unchecked: id, kind: kind, userID: userID, createdAt: createdAt, reason: reason, encryption: encryption,
      fileByteCount: fileByteCount, fileSHA256: fileSHA256, manifestSHA256: manifestSHA256)
    if let problem = statement.problem() { throw failure(problem) }
    let decoded = ArchiveSignature(statement: statement, keyID: keyID, signature: signature)
    // Belt and braces: the bytes read are exactly the canonical encoding.
    guard decoded.encoded() == data else { throw failure("it is not in canonical form") }
    return decoded
  }
}

extension SignedStatement {
  /// A statement whose fields were checked one by one by the decoder (or, for a cached
  /// verdict, when the signature file was decoded and verified).
  init(
    unchecked archiveID: String, kind: Manifest.Kind, userID: Int64?, createdAt: Date, reason: String,
    encryption: Encryption, fileByteCount: Int64, fileSHA256: String, manifestSHA256: String
  ) {
    self.archiveID = archiveID
    self.kind = kind
    self.userID = userID
    self.createdAt = createdAt
    self.reason = reason
    self.encryption = encryption
    self.fileByteCount = fileByteCount
    self.fileSHA256 = fileSHA256
    self.manifestSHA256 = manifestSHA256
  }
}

/// An archive whose signature verified against the deployment's key ring.
public struct SignedArchive: Sendable, Equatable {
  /// What the signature vouches for; take the archive's id, kind, user, time and reason from
  /// here, never from its `<id>.json` record.
  public var statement: SignedStatement
  /// The key that signed it.
  public var keyID: String
}

/// Signing and verifying archives (format v1). The signature lives in a file of its own,
/// `<id>.sig` beside `<id>.tar.zst.age` (and its record `<id>.json`); see docs/ARCHIVE-FORMAT.md
/// for why, and for how to verify one with stock tools.
///
/// Writing: build a `SignedStatement` once the archive file is written and hashed, `sign` it,
/// write `ArchiveSignature.encoded()` to `signaturePath(forArchive:)` before the archive is
/// published. Reading without the identity (list, check, push): `verifyFile(archivePath:ring:)`.
/// Reading with it (restore, drill, recover): `verifySignature(archivePath:ring:)` and
/// `SignedStatement.requirePlacement(archivePath:)` first, then `authenticateManifest` on the
/// manifest's bytes before any entry is trusted, and `requireFile` on the hash of the bytes
/// decrypted.
public enum ArchiveSigning {
  /// The one reason every verification failure gives, whatever the cause: no valid signature
  /// by a key in the ring.
  public static let notSignedReason = "not signed by this deployment's key"

  /// The signature file of an archive file: `<dir>/<id>.sig` for `<dir>/<id>.tar.zst[.age]`;
  /// nil when `archivePath` is not an archive file name.
  public static func signaturePath(forArchive archivePath: String) -> String? {
    let name = (archivePath as NSString).lastPathComponent
    guard let (id, _) = ArchiveName.parse(fileName: name) else { return nil }
    return FileSystem.parentDirectory(of: archivePath) + "/" + id + ArchiveSignature.fileSuffix
  }

  /// Signs `statement` with `key`.
  /// - Throws: `StoreError.crypto` when libcrypto fails.
  public static func sign(_ statement: SignedStatement, key: SigningKey) throws -> ArchiveSignature {
    var signed = ArchiveSignature(statement: statement, keyID: key.keyID, signature: [])
    signed.signature = try key.sign(signed.signedBytes)
    return signed
  }

  /// Checks that `signature` is a valid signature of its statement by a key in `ring` (the one
  /// its key id names).
  /// - Parameter object: what the error names (the archive).
  /// - Returns: the id of the key that signed.
  /// - Throws: `StoreError.crypto` with reason "not signed by this deployment's key" when no key in
  ///   the ring verifies it.
  @discardableResult
  public static func verify(_ signature: ArchiveSignature, ring: VerifyingKeyRing, object: String) throws -> String {
    let message = signature.signedBytes
    guard let key = ring.key(id: signature.keyID), try key.verifies(signature.signature, of: message) else {
      let known = ring.key(id: signature.keyID) != nil
      throw StoreError.crypto(
        object: object, reason: notSignedReason,
        hint: known
          ? "the signature does not match its statement (key \(signature.keyID) of \(ring.path)); the archive or its signature was altered: use another backup"
          : "it names key \(signature.keyID), which is not in \(ring.path); if that is an older key of this deployment, restore its line from escrow, else do not trust this archive"
      )
    }
    return key.keyID
  }

  /// Reads and strictly parses the signature file of the archive at `archivePath`; nil when
  /// there is none (an unsigned archive).
  /// - Throws: `StoreError.invalid` for a damaged signature file, `StoreError.io` when it
  ///   cannot be read.
  public static func readSignature(archivePath: String) throws -> ArchiveSignature? {
    guard let path = signaturePath(forArchive: archivePath) else {
      throw StoreError.invalid(
        path: archivePath, reason: "not an archive file name", hint: "name an <id>.tar.zst.age file")
    }
    guard FileSystem.exists(path) else { return nil }
    return try ArchiveSignature.decode(try FileSystem.read(path), object: path)
  }

  /// Reads the signature file of the archive at `archivePath`, verifies it against `ring` and
  /// checks that the archive sits where the statement says (`requirePlacement`). It does not
  /// read the archive itself.
  /// - Throws: `StoreError.crypto` ("not signed by this deployment's key") when the signature file
  ///   is missing or does not verify, or the archive was moved or renamed; `StoreError.invalid`
  ///   for a damaged signature file.
  public static func verifySignature(archivePath: String, ring: VerifyingKeyRing) throws -> SignedArchive {
    guard let signature = try readSignature(archivePath: archivePath) else {
      throw StoreError.crypto(
        object: archivePath, reason: notSignedReason,
        hint: "it has no signature file \(signaturePath(forArchive: archivePath) ?? "")")
    }
    let keyID = try verify(signature, ring: ring, object: archivePath)
    try signature.statement.requirePlacement(archivePath: archivePath)
    return SignedArchive(statement: signature.statement, keyID: keyID)
  }

  /// Verifies an archive file without decrypting it: its signature (`verifySignature`) and
  /// that the file's size and SHA-256 are the signed ones. For list, check and push on a host
  /// without the age identity.
  /// - Throws: `StoreError.crypto` naming the archive and the mismatch, `StoreError.invalid`,
  ///   `StoreError.io`.
  public static func verifyFile(archivePath: String, ring: VerifyingKeyRing) throws -> SignedArchive {
    let verified = try verifySignature(archivePath: archivePath, ring: ring)
    try verified.statement.requireFile(
      sha256: try FileSystem.sha256(ofFile: archivePath), byteCount: try FileSystem.size(of: archivePath),
      object: archivePath)
    return verified
  }
}

extension SignedStatement {
  /// Checks that the archive file at `archivePath` is where this statement says it belongs: its
  /// name is `<id>.tar.zst.age` (or `.tar.zst` for an unencrypted one) and it sits in `full/`
  /// for a full archive or `users/user_<id>/` for the statement's user. A genuine archive
  /// renamed, or moved into another user's directory, fails here.
  /// - Throws: `StoreError.crypto` naming the archive and what does not match.
  public func requirePlacement(archivePath: String) throws {
    let name = (archivePath as NSString).lastPathComponent
    let directory = (FileSystem.parentDirectory(of: archivePath) as NSString).lastPathComponent
    let expectedDirectory = kind == .full ? "full" : "user_\(userID ?? 0)"
    if name != fileName || directory != expectedDirectory {
      throw StoreError.crypto(
        object: archivePath, reason: ArchiveSigning.notSignedReason,
        hint:
          "its signature is for \(expectedDirectory)/\(fileName); a signed archive was renamed or moved: do not trust it, use another backup"
      )
    }
  }

  /// Checks the archive file's size and SHA-256 (computed by the caller while it read the
  /// file) against the signed ones.
  /// - Throws: `StoreError.crypto` naming the archive.
  public func requireFile(sha256: String, byteCount: Int64, object: String) throws {
    guard byteCount == fileByteCount, sha256 == fileSHA256 else {
      throw StoreError.crypto(
        object: object, reason: ArchiveSigning.notSignedReason,
        hint:
          "the file is not the one that was signed (\(byteCount) bytes, SHA-256 \(sha256.prefix(16))…; signed: \(fileByteCount) bytes, \(fileSHA256.prefix(16))…): do not trust it, use another backup"
      )
    }
  }

  /// Authenticates an archive's `manifest.json`: its bytes must hash to the signed SHA-256
  /// (checked before they are parsed), and the manifest must say what the statement says
  /// (kind, user, time, reason). Every entry is then bound through the manifest's SHA-256s.
  /// - Parameter object: what errors name (the archive).
  /// - Returns: the parsed manifest.
  /// - Throws: `StoreError.crypto` ("not signed by this deployment's key") on a mismatch,
  ///   `StoreError.invalid` for a manifest that does not parse.
  public func authenticateManifest(_ bytes: Data, object: String) throws -> Manifest {
    try requireManifestBytes(bytes, object: object)
    let manifest = try Manifest.decode(bytes, objectName: object)
    try requireManifest(manifest, object: object)
    return manifest
  }

  /// The first half of `authenticateManifest`, for a reader that parses the manifest itself:
  /// `bytes` must hash to the signed SHA-256. Call it before the bytes are parsed.
  /// - Throws: `StoreError.crypto` ("not signed by this deployment's key") naming `object`.
  public func requireManifestBytes(_ bytes: Data, object: String) throws {
    guard Digest.sha256Hex(bytes) == manifestSHA256 else {
      throw StoreError.crypto(
        object: object, reason: ArchiveSigning.notSignedReason,
        hint: "its manifest.json is not the signed one: do not trust it, use another backup")
    }
  }

  /// The second half of `authenticateManifest`: the manifest parsed from the signed bytes says
  /// what the statement says (kind, user, time, reason).
  /// - Throws: `StoreError.crypto` ("not signed by this deployment's key") naming `object`.
  public func requireManifest(_ manifest: Manifest, object: String) throws {
    guard manifest.kind == kind, manifest.userID == userID, manifest.createdAt == createdAt,
      manifest.reason == reason
    else {
      // The hash matched, so only a statement made inconsistent at signing time gets here.
      throw StoreError.crypto(
        object: object, reason: ArchiveSigning.notSignedReason,
        hint: "its manifest.json disagrees with its signed statement: do not trust it, use another backup")
    }
  }
}

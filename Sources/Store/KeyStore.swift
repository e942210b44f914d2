import Foundation

/// Loads and creates the deployment's keys: the age X25519 identity and recipients that protect
/// archives, the Ed25519 signing key and public key ring that authenticate them, and the Fernet
/// keys that protect secrets in the bot database. Private key files must be 0600; tgsess never
/// overwrites one (only `rotateSigningKey` replaces the signing key, on purpose).
public enum KeyStore {
  /// The environment variable that can hold Fernet keys (comma-separated, newest first), the way
  /// Python bots take them.
  public static let fernetEnvironmentVariable = "TGSESS_FERNET_KEYS"
  /// The environment variable that names a Fernet key file instead (wins over the config's).
  public static let fernetFileEnvironmentVariable = "TGSESS_FERNET_KEYS_FILE"

  /// The Fernet keys from `TGSESS_FERNET_KEYS`, else from the key file; nil when neither exists.
  /// - Throws: `StoreError.key` for a malformed key, `StoreError.permissions` for a key file
  ///   readable by group or others.
  public static func loadFernet(
    _ deployment: Deployment, environment: [String: String] = ProcessInfo.processInfo.environment
  ) throws -> Fernet? {
    if let value = environment[fernetEnvironmentVariable], !value.trimmingCharacters(in: .whitespaces).isEmpty {
      let parts = value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
      let keys = try parts.enumerated().map { index, text in
        do { return try FernetKey(base64: text) } catch {
          throw StoreError.key(
            path: "$\(fernetEnvironmentVariable)",
            reason: "key #\(index + 1) is not a Fernet key (44 characters of URL-safe base64)",
            hint:
              "generate one with: python3 -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
          )
        }
      }
      return try Fernet(keys: keys)
    }
    // A key file named by the environment, e.g. a systemd credential: $CREDENTIALS_DIRECTORY/fernet-keys.
    let path = environment[fernetFileEnvironmentVariable].flatMap { $0.isEmpty ? nil : $0 } ?? deployment.fernetKeysPath
    guard FileSystem.exists(path) else { return nil }
    try FileSystem.requirePrivate(path)
    let keys = try keyLines(path).enumerated().map { index, text in
      do { return try FernetKey(base64: text) } catch {
        throw StoreError.key(
          path: path, reason: "line \(index + 1) is not a Fernet key (44 characters of URL-safe base64)",
          hint: "fix or remove that line; the newest key goes first")
      }
    }
    guard !keys.isEmpty else {
      throw StoreError.key(path: path, reason: "no key in the file", hint: "run tgsess init to create one")
    }
    return try Fernet(keys: keys)
  }

  /// The Fernet keys, or an error naming the fix when none is configured.
  /// - Throws: `StoreError.key`.
  public static func requireFernet(_ deployment: Deployment) throws -> Fernet {
    guard let fernet = try loadFernet(deployment) else {
      throw StoreError.key(
        path: deployment.fernetKeysPath, reason: "no Fernet key configured",
        hint: "run tgsess init, or set TGSESS_FERNET_KEYS")
    }
    return fernet
  }

  /// The recipients every archive is encrypted to: the recipients file plus the config's list.
  /// - Throws: `StoreError.key` for a malformed recipient.
  public static func loadRecipients(_ deployment: Deployment) throws -> [AgeRecipient] {
    var texts: [(String, String)] = []
    if FileSystem.exists(deployment.ageRecipientsPath) {
      texts += try keyLines(deployment.ageRecipientsPath).map { ($0, deployment.ageRecipientsPath) }
    }
    texts += deployment.extraAgeRecipients.map { ($0, deployment.configPath ?? "age_recipients") }
    var seen = Set<AgeRecipient>()
    var recipients: [AgeRecipient] = []
    for (text, origin) in texts {
      let recipient: AgeRecipient
      do { recipient = try AgeRecipient(string: text) } catch {
        throw StoreError.key(
          path: origin, reason: "'\(text.prefix(12))…' is not an age X25519 recipient (age1…)",
          hint: "use the output of: age-keygen -y IDENTITY")
      }
      if seen.insert(recipient).inserted { recipients.append(recipient) }
    }
    return recipients
  }

  /// The identities that decrypt archives, from the identity file.
  /// - Throws: `StoreError.missing` (with where to put it), `StoreError.permissions`, `StoreError.key`.
  public static func loadIdentities(_ deployment: Deployment, path override: String? = nil) throws -> [AgeIdentity] {
    let path = override ?? deployment.ageIdentityPath
    guard FileSystem.exists(path) else {
      throw StoreError.missing(
        path: path, hint: "copy the archive identity (kept off the host) there, or pass --identity FILE")
    }
    try FileSystem.requirePrivate(path)
    let text = String(decoding: try FileSystem.read(path), as: UTF8.self)
    do {
      let identities = try AgeKeyFile.parseIdentities(text, path: path)
      guard !identities.isEmpty else {
        throw StoreError.key(
          path: path, reason: "no AGE-SECRET-KEY-1 line", hint: "use a file made by age-keygen or tgsess init")
      }
      return identities
    } catch let error as StoreError {
      throw error
    } catch {
      throw StoreError.key(
        path: path, reason: "not an age identity file", hint: "use a file made by age-keygen or tgsess init")
    }
  }

  /// What `ensureKeys` created.
  public struct Created: Sendable, Equatable, Codable {
    public var ageIdentity: Bool = false
    public var ageRecipients: Bool = false
    public var fernetKeys: Bool = false
    /// A new signing key was made (`keys/signing.key`).
    public var signingKey: Bool = false
    /// `keys/signing.pub` was created, or the current signing key's line was added to it.
    public var signingPublicKeys: Bool = false

    public init(
      ageIdentity: Bool = false, ageRecipients: Bool = false, fernetKeys: Bool = false, signingKey: Bool = false,
      signingPublicKeys: Bool = false
    ) {
      self.ageIdentity = ageIdentity
      self.ageRecipients = ageRecipients
      self.fernetKeys = fernetKeys
      self.signingKey = signingKey
      self.signingPublicKeys = signingPublicKeys
    }
  }

  /// Creates the keys that are missing, never touching an existing one: an age identity and its
  /// recipients file, and a Fernet key file (unless `TGSESS_FERNET_KEYS` is set).
  /// - Throws: `StoreError`; existing key files are checked for their mode.
  public static func ensureKeys(
    _ deployment: Deployment, environment: [String: String] = ProcessInfo.processInfo.environment
  ) throws -> Created {
    var created = Created()
    try FileSystem.makeDirectory(deployment.keysDirectory)
    if FileSystem.exists(deployment.ageIdentityPath) {
      try FileSystem.requirePrivate(deployment.ageIdentityPath)
      if !FileSystem.exists(deployment.ageRecipientsPath) {
        // Recreate the public half from the identity.
        let identities = try loadIdentities(deployment)
        try writeNew(
          "# age recipients: every archive is encrypted to each of these\n"
            + identities.map { $0.recipient.string + "\n" }.joined(),
          to: deployment.ageRecipientsPath)
        created.ageRecipients = true
      }
    } else if !FileSystem.exists(deployment.ageRecipientsPath) {
      let identity = try AgeIdentity.generate()
      try writeNew(AgeKeyFile.render(identity, created: Date()), to: deployment.ageIdentityPath)
      try writeNew(
        "# age recipients: every archive is encrypted to each of these\n\(identity.recipient.string)\n",
        to: deployment.ageRecipientsPath)
      created.ageIdentity = true
      created.ageRecipients = true
    }
    let fromEnvironment = environment[fernetEnvironmentVariable].map { !$0.isEmpty } ?? false
    if FileSystem.exists(deployment.fernetKeysPath) {
      try FileSystem.requirePrivate(deployment.fernetKeysPath)
    } else if !fromEnvironment {
      let key = try FernetKey.generate()
      try writeNew(
        "# Fernet keys for secrets in the bot database, newest first; older keys still decrypt\n\(key.base64)\n",
        to: deployment.fernetKeysPath)
      created.fernetKeys = true
    }
    try ensureSigningKey(deployment, into: &created)
    return created
  }

  /// The signing half of `ensureKeys`. A key that exists is kept; a ring that exists keeps every
  /// line. When the key is missing a new one is made and put first in the ring (on a new host
  /// that got `signing.pub` from escrow, the old keys keep verifying the old archives); when the
  /// ring lacks the key's line, the line is added first.
  private static func ensureSigningKey(_ deployment: Deployment, into created: inout Created) throws {
    let keyPath = deployment.signingKeyPath
    let ringPath = deployment.signingPublicKeysPath
    let ring = FileSystem.exists(ringPath) ? try loadVerifyingKeys(path: ringPath) : nil
    let key: SigningKey
    if FileSystem.exists(keyPath) {
      key = try loadSigningKey(path: keyPath)
    } else {
      key = try SigningKey.generate()
      try writeSigningKey(key, to: keyPath, overwrite: false)
      created.signingKey = true
    }
    if ring?.key(id: key.keyID) == nil {
      let updated = ring?.prepending(key.verifyingKey) ?? VerifyingKeyRing(keys: [key.verifyingKey], path: ringPath)
      try FileSystem.writeAtomically(Data(try updated.rendered().utf8), to: ringPath)
      created.signingPublicKeys = true
    }
  }

  // MARK: - Archive signing keys

  /// The deployment's signing key, checked against its key ring: a key whose public half is
  /// not in `keys/signing.pub` would sign archives that nothing verifies.
  /// - Throws: `StoreError.missing` (run `tgsess init`), `StoreError.permissions` for a key file
  ///   readable by group or others, `StoreError.key` for a garbled file or a key not in the ring.
  public static func loadSigningKey(_ deployment: Deployment) throws -> SigningKey {
    let key = try loadSigningKey(path: deployment.signingKeyPath)
    let ring = try loadVerifyingKeys(deployment)
    guard ring.key(id: key.keyID) != nil else {
      throw StoreError.key(
        path: deployment.signingKeyPath,
        reason:
          "its public key \(key.keyID) is not in \(deployment.signingPublicKeysPath), so nothing would verify what it signs",
        hint: "run tgsess init to add it, then put signing.pub into escrow again")
    }
    return key
  }

  /// The signing key in the PKCS#8 PEM file at `path`.
  /// - Throws: `StoreError.missing`, `StoreError.permissions` (with the `chmod` to run),
  ///   `StoreError.key` naming the file when it is not an Ed25519 private key.
  public static func loadSigningKey(path: String) throws -> SigningKey {
    guard FileSystem.exists(path) else {
      throw StoreError.missing(
        path: path, hint: "run tgsess init: it adds the archive signing key and keeps every other key")
    }
    try FileSystem.requirePrivate(path)
    var data = try FileSystem.read(path)
    var bytes = [UInt8](data)
    data.withUnsafeMutableBytes { cleanse($0) }
    return try SigningKey.parse(pem: SecretBytes(wiping: &bytes), path: path)
  }

  /// The deployment's verifying key ring, `keys/signing.pub`.
  /// - Throws: see `loadVerifyingKeys(path:)`.
  public static func loadVerifyingKeys(_ deployment: Deployment) throws -> VerifyingKeyRing {
    try loadVerifyingKeys(path: deployment.signingPublicKeysPath)
  }

  /// A verifying key ring from `path`: the deployment's, or an escrowed copy passed as
  /// `--verify-key FILE` on a new host. The keys are public, but whoever can change the file
  /// decides which archives are trusted, so a file that group or others can write is refused.
  /// - Throws: `StoreError.missing`, `StoreError.permissions` (with the `chmod` to run),
  ///   `StoreError.key` naming the file and line when it is garbled.
  public static func loadVerifyingKeys(path: String) throws -> VerifyingKeyRing {
    guard FileSystem.exists(path) else {
      throw StoreError.missing(
        path: path,
        hint: "copy the deployment's signing.pub there from escrow, or run tgsess init on the host that signs")
    }
    let mode = try FileSystem.mode(of: path)
    if mode & 0o022 != 0 {
      throw StoreError.permissions(
        path: path,
        reason: "mode \(String(mode, radix: 8)) lets group or others change the keys archives are verified with",
        fix: "chmod 600 \(path)")
    }
    let data = try FileSystem.read(path)
    guard let text = String(validating: [UInt8](data), as: UTF8.self) else {
      throw StoreError.key(
        path: path, reason: "not a signing public key file (not UTF-8 text)",
        hint: "restore it from escrow; tgsess init writes it")
    }
    return try VerifyingKeyRing.parse(text, path: path)
  }

  /// Rotates the signing key: a new key signs from now on, and the old public key stays in the
  /// ring (second, after the new one) so archives it signed keep verifying. The ring is written
  /// first, so a crash in between leaves the old key signing and both keys verifying.
  /// - Returns: the new key's public half and the old one's.
  /// - Throws: `StoreError` (the same as `loadSigningKey`, plus I/O).
  public static func rotateSigningKey(
    _ deployment: Deployment
  ) throws -> (new: VerifyingKey, old: VerifyingKey, ring: VerifyingKeyRing) {
    let old = try loadSigningKey(deployment)
    let ring = try loadVerifyingKeys(deployment)
    let new = try SigningKey.generate()
    let updated = ring.prepending(new.verifyingKey)
    try FileSystem.writeAtomically(Data(try updated.rendered().utf8), to: deployment.signingPublicKeysPath)
    try writeSigningKey(new, to: deployment.signingKeyPath, overwrite: true)
    return (new.verifyingKey, old.verifyingKey, updated)
  }

  private static func writeSigningKey(_ key: SigningKey, to path: String, overwrite: Bool) throws {
    let pem = try key.pkcs8PEM()
    try FileSystem.writeAtomically(to: path, mode: FileSystem.fileMode, overwrite: overwrite) { fd, tempPath in
      try pem.withUnsafeBytes { try FileSystem.writeAll(fd: fd, bytes: $0, path: tempPath) }
    }
  }

  /// Prepends a new Fernet key to the key file (the old ones keep decrypting until
  /// `tgsess migrate --rotate-key` re-encrypts everything under the new one).
  /// - Returns: the new key's fingerprint.
  /// - Throws: `StoreError`.
  public static func addFernetKey(_ deployment: Deployment) throws -> String {
    let path = deployment.fernetKeysPath
    guard FileSystem.exists(path) else {
      throw StoreError.missing(path: path, hint: "run tgsess init first")
    }
    try FileSystem.requirePrivate(path)
    let existing = String(decoding: try FileSystem.read(path), as: UTF8.self)
    let key = try FernetKey.generate()
    var lines = existing.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    let firstKey = lines.firstIndex { !$0.hasPrefix("#") && !$0.trimmingCharacters(in: .whitespaces).isEmpty }
    lines.insert(key.base64, at: firstKey ?? lines.count)
    try FileSystem.writeAtomically(Data(lines.joined(separator: "\n").utf8), to: path)
    return key.fingerprint
  }

  private static func keyLines(_ path: String) throws -> [String] {
    String(decoding: try FileSystem.read(path), as: UTF8.self)
      .split(whereSeparator: \.isNewline)
      .map { $0.trimmingCharacters(in: .whitespaces) }
      .filter { !$0.isEmpty && !$0.hasPrefix("#") }
  }

  private static func writeNew(_ text: String, to path: String) throws {
    try FileSystem.writeAtomically(Data(text.utf8), to: path, overwrite: false)
  }
}

import Foundation

/// Loads and creates the deployment's keys: the age X25519 identity and recipients that protect
/// archives, and the Fernet keys that protect secrets in the bot database. Key files must be
/// 0600; tgsess never overwrites one.
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
    return created
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

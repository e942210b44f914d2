import Foundation
import Store

/// Options of `tgsess keys verify-escrow`: the escrowed copies to check against the deployment.
public struct EscrowOptions: Sendable {
  /// The escrowed age identity file (one file may hold several generations).
  public var identityPath: String
  /// The escrowed Fernet key file, if one is to be checked.
  public var fernetKeysPath: String?
  /// The escrowed copy of `keys/signing.pub`, if one is to be checked.
  public var verifyKeyPath: String?

  public init(identityPath: String, fernetKeysPath: String? = nil, verifyKeyPath: String? = nil) {
    self.identityPath = identityPath
    self.fernetKeysPath = fernetKeysPath
    self.verifyKeyPath = verifyKeyPath
  }
}

/// One finding of the escrow check.
public struct EscrowFinding: Codable, Sendable, Equatable {
  public enum Item: String, Codable, Sendable {
    /// The identity file holds the identity of every recipient in `keys/age-recipients.txt`.
    case recipients
    /// The identity opens the deployment's newest archive.
    case archive
    /// The Fernet copy decrypts every secret in the database and holds the current key.
    case fernet
    /// The signing public keys cover every key in `keys/signing.pub`.
    case signing
  }
  public enum Status: String, Codable, Sendable {
    case ok, failed
    /// Not checked (no copy given, or nothing to check it against); `detail` says which.
    case skipped
  }
  public var item: Item
  public var status: Status
  /// What was proven, or what is wrong and what to do; never a secret (keys by fingerprint).
  public var detail: String
}

/// What `tgsess keys verify-escrow` found.
public struct EscrowReport: Codable, Sendable, Equatable {
  public var findings: [EscrowFinding]
  public var isOK: Bool { !findings.contains { $0.status == .failed } }

  enum CodingKeys: String, CodingKey { case findings, ok }

  public init(findings: [EscrowFinding]) { self.findings = findings }

  public init(from decoder: any Decoder) throws {
    findings = try decoder.container(keyedBy: CodingKeys.self).decode([EscrowFinding].self, forKey: .findings)
  }

  public func encode(to encoder: any Encoder) throws {
    var container = encoder.container(keyedBy: CodingKeys.self)
    try container.encode(findings, forKey: .findings)
    try container.encode(isOK, forKey: .ok)
  }
}

/// Checks escrowed key copies against the deployment they protect, reading only: the age
/// identity against the recipients and the newest archive, the Fernet keys against the
/// database's secrets, the signing public keys against `keys/signing.pub`.
public enum EscrowJob {
  /// Runs every check it has a copy for.
  /// - Throws: `JobError.store` when a copy cannot be read at all (missing, readable by others,
  ///   garbled) or the deployment's own files cannot; a copy that is readable but wrong is a
  ///   `failed` finding instead.
  public static func verify(_ deployment: Deployment, options: EscrowOptions) throws -> EscrowReport {
    do {
      let identities = try KeyStore.loadIdentities(deployment, path: options.identityPath)
      var findings = [try recipientsFinding(deployment, identities: identities, path: options.identityPath)]
      findings.append(try archiveFinding(deployment, identities: identities, path: options.identityPath))
      findings.append(try fernetFinding(deployment, path: options.fernetKeysPath))
      findings.append(try signingFinding(deployment, path: options.verifyKeyPath))
      return EscrowReport(findings: findings)
    } catch let error as StoreError {
      throw JobError.store(context: "keys verify-escrow", underlying: error)
    }
  }

  static func recipientsFinding(_ deployment: Deployment, identities: [AgeIdentity], path: String) throws
    -> EscrowFinding
  {
    let recipientsPath = deployment.ageRecipientsPath
    guard FileSystem.exists(recipientsPath) else {
      return EscrowFinding(
        item: .recipients, status: .skipped, detail: "\(recipientsPath) does not exist; nothing to compare with")
    }
    let wanted = try AgeKeyFile.loadRecipients(path: recipientsPath)
    let held = Set(identities.map(\.recipient))
    let missing = wanted.filter { !held.contains($0) }
    guard missing.isEmpty, !wanted.isEmpty else {
      let names = missing.map(\.string).joined(separator: ", ")
      return EscrowFinding(
        item: .recipients, status: .failed,
        detail: wanted.isEmpty
          ? "\(recipientsPath) lists no recipient"
          : "\(path) holds no identity for \(names) (listed in \(recipientsPath)); archives encrypted to it cannot be opened with this copy: escrow that identity too (one file may hold every generation)"
      )
    }
    return EscrowFinding(
      item: .recipients, status: .ok,
      detail: "\(path) holds the identity of each of the \(wanted.count) recipient(s) in \(recipientsPath)")
  }

  static func archiveFinding(_ deployment: Deployment, identities: [AgeIdentity], path: String) throws
    -> EscrowFinding
  {
    let repository = ArchiveRepository(backupsDirectory: deployment.backupsDirectory)
    // Only an archive signed by this deployment's key is opened: a planted one (anyone with
    // the public recipient, or their own, can write one) says nothing about the identity.
    let authenticator: SigningAuthenticator
    do { authenticator = try SigningAuthenticator.forDeployment(deployment) } catch let error as StoreError {
      return EscrowFinding(
        item: .archive, status: .failed,
        detail:
          "cannot tell this deployment's archives from planted ones to open one: \(error.errorDescription ?? "\(error)")"
      )
    }
    // The newest signed full snapshot; the per-user records are read only when there is none.
    func newestSigned(_ kind: Manifest.Kind) throws -> ArchiveRecord? {
      try repository.list(kind: kind).first {
        $0.isEncrypted && authenticator.isSigned(archivePath: repository.path(of: $0))
      }
    }
    guard let newest = try newestSigned(.full) ?? newestSigned(.user) else {
      return EscrowFinding(
        item: .archive, status: .skipped,
        detail:
          "no encrypted archive signed by this deployment's key in \(deployment.backupsDirectory) yet; run tgsess backup, then check again"
      )
    }
    do {
      try EscrowProbe.open(archive: repository.path(of: newest), identities: identities)
    } catch let error as StoreError {
      return EscrowFinding(
        item: .archive, status: .failed,
        detail: "\(path) does not open the newest archive \(newest.id): \(error.errorDescription ?? "\(error)")")
    }
    return EscrowFinding(
      item: .archive, status: .ok,
      detail: "\(path) opens the newest signed archive \(newest.id) (header and first chunk)")
  }

  static func fernetFinding(_ deployment: Deployment, path: String?) throws -> EscrowFinding {
    guard let path else {
      return EscrowFinding(
        item: .fernet, status: .skipped, detail: "no Fernet copy given; pass --fernet-keys FILE to check it")
    }
    guard
      let escrowed = try KeyStore.loadFernet(
        deployment, environment: [KeyStore.fernetFileEnvironmentVariable: path])
    else { throw StoreError.missing(path: path, hint: "give the escrowed copy of keys/fernet.keys") }
    var problems: [String] = []
    var proven: [String] = []
    // The key that encrypts from now on must be in escrow, or the next secrets are lost with the host.
    if let current = try KeyStore.loadFernet(deployment)?.keys.first {
      if escrowed.keys.contains(where: { $0.fingerprint == current.fingerprint }) {
        proven.append("holds the current key \(current.fingerprint)")
      } else {
        problems.append("lacks the current key \(current.fingerprint): escrow the deployment's keys/fernet.keys again")
      }
    }
    if FileSystem.exists(deployment.databasePath) {
      let database = try BotDatabase(
        path: deployment.databasePath, mode: .readOnly, busyTimeoutMS: deployment.busyTimeoutMS)
      defer { database.close() }
      let census = try database.secretCensus(fernet: escrowed)
      let tokens = census.underNewestKey + census.underOlderKey + census.undecryptable
      if census.undecryptable > 0 {
        problems.append(
          "\(census.undecryptable) of the database's \(tokens) encrypted secret(s) do not decrypt with it: it lacks a key they were encrypted with"
        )
      } else {
        proven.append("decrypts all \(tokens) encrypted secret(s) in the database")
      }
    }
    guard problems.isEmpty else {
      return EscrowFinding(item: .fernet, status: .failed, detail: "\(path) " + problems.joined(separator: "; "))
    }
    guard !proven.isEmpty else {
      return EscrowFinding(item: .fernet, status: .skipped, detail: "no database and no key file here to compare with")
    }
    return EscrowFinding(item: .fernet, status: .ok, detail: "\(path) " + proven.joined(separator: " and "))
  }

  static func signingFinding(_ deployment: Deployment, path: String?) throws -> EscrowFinding {
    guard let path else {
      return EscrowFinding(
        item: .signing, status: .skipped, detail: "no signing public keys given; pass --verify-key FILE to check them")
    }
    let escrowed = try KeyStore.loadVerifyingKeys(path: path)
    guard FileSystem.exists(deployment.signingPublicKeysPath) else {
      return EscrowFinding(
        item: .signing, status: .skipped,
        detail: "\(deployment.signingPublicKeysPath) does not exist; nothing to compare with")
    }
    let live = try KeyStore.loadVerifyingKeys(deployment)
    let missing = live.keys.filter { escrowed.key(id: $0.keyID) == nil }.map(\.keyID)
    guard missing.isEmpty else {
      return EscrowFinding(
        item: .signing, status: .failed,
        detail:
          "\(path) lacks key(s) \(missing.joined(separator: ", ")) of \(deployment.signingPublicKeysPath): copy that file into escrow again"
      )
    }
    return EscrowFinding(
      item: .signing, status: .ok,
      detail:
        "\(path) holds every key of \(deployment.signingPublicKeysPath) (\(live.keys.map(\.keyID).joined(separator: ", ")))"
    )
  }
}

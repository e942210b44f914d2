import Foundation
import Store

/// Whether a listed archive carries this deployment's signature, from its signature file and its
/// place (the archive file itself is not hashed: that is for restore, drill and `check --deep`).
public enum ListedSignature: String, Codable, Sendable, Equatable {
  /// Signed by a key of the ring, in the place its signature names.
  case signed
  /// No signature file: made before archives were signed (`tgsess keys sign-existing` vouches
  /// for this host's own), or planted.
  case unsigned
  /// Its signature does not verify, names another place, or is damaged: never restored.
  case rejected
  /// No key ring on this host to check with (pass `--verify-key FILE`).
  case unverified
}

/// One row of `tgsess list`. What it says of a signed archive comes from its signature; the
/// record beside it (never authenticated) adds only sizes and counts, and its write-time proof.
public struct ListedArchive: Codable, Sendable, Equatable {
  public var id: String
  public var createdAt: Date
  public var kind: Manifest.Kind
  public var userID: Int64?
  public var reason: String
  public var byteCount: Int64
  public var entryCount: Int
  public var signature: ListedSignature
  /// The key that signed it.
  public var keyID: String?
  /// Why a rejected archive is rejected.
  public var rejection: String?
  /// How the writer proved the archive before it signed it (from its record): only for a
  /// signed archive, since the writer signs only what it proved.
  public var verification: ArchiveRecord.Verification?
  public var path: String
  /// The age recipients (`age1…`) it is encrypted to; nil when its record does not say.
  public var recipients: [String]?
  /// The fingerprints of the Fernet keys its secrets are under; nil when its record does not say.
  public var fernetKeys: [String]?
  /// True when it holds files archived byte for byte because they were not valid SQLite files
  /// (a restore's undo of damaged data; restoring it puts them back as they were); nil otherwise
  /// or when its record does not say.
  public var verbatim: Bool? = nil
}

/// Options of `tgsess list`.
public struct ListOptions: Sendable {
  /// "full" or "user".
  public var kind: String?
  public var userID: Int64?
  /// List what this configured remote holds, from the remote alone.
  public var remote: String?
  /// The key ring to check signatures with; default `keys/signing.pub` (without either, every
  /// archive is listed `unverified`).
  public var verifyKeyPath: String?

  public init(kind: String? = nil, userID: Int64? = nil, remote: String? = nil, verifyKeyPath: String? = nil) {
    self.kind = kind
    self.userID = userID
    self.remote = remote
    self.verifyKeyPath = verifyKeyPath
  }
}

/// Lists archives from the files alone.
public enum ListJob {
  /// The archives, newest first, optionally of one user (their per-user archives and the full
  /// snapshots that hold them) or one kind, each with its signature checked. With `remote`,
  /// lists what that remote holds, from the remote alone; `path` is then the object's path on
  /// the remote.
  /// - Throws: `JobError.store` (also for a key ring that is there but loose or garbled).
  public static func run(_ deployment: Deployment, options: ListOptions) throws -> [ListedArchive] {
    do {
      // A missing ring lists everything unverified; a loose or garbled one is an error.
      let authenticator: SigningAuthenticator? =
        options.verifyKeyPath == nil && !FileSystem.exists(deployment.signingPublicKeysPath)
        ? nil : try SigningAuthenticator.forDeployment(deployment, verifyKeyPath: options.verifyKeyPath)
      let catalog = try ArchiveCatalog.open(deployment, origin: options.remote.map { .remote($0) } ?? .local)
      defer { catalog.close() }
      let records = try catalog.repository.list(
        kind: options.kind.flatMap(Manifest.Kind.init(rawValue:)), userID: options.userID)
      // The deployment's own archives under its own ring: each signature verified once, then
      // its verdict taken from backups/.signatures while the file is unchanged.
      let verdicts =
        options.remote == nil && options.verifyKeyPath == nil
        ? authenticator.flatMap { SignatureVerdicts.forDeployment(deployment, ring: $0.ring) } : nil
      let standings = authenticator?.authenticity(of: records, in: catalog.repository, verdicts: verdicts)
      // A cache that cannot be written costs the next run time, nothing else.
      try? verdicts?.save(dropsUnused: options.kind == nil && options.userID == nil)
      return records.enumerated().map { index, record in
        var row = ListedArchive(
          id: record.id, createdAt: record.createdAt, kind: record.kind, userID: record.userID,
          reason: record.reason, byteCount: record.byteCount, entryCount: record.entryCount, signature: .unverified,
          keyID: nil, rejection: nil, verification: nil, path: catalog.location(of: record),
          recipients: record.recipients, fernetKeys: record.fernetKeys, verbatim: record.hasVerbatimEntries)
        switch standings?[index] {
        case .signed(let signed)?:
          let vouched = record.vouched(by: signed.statement)
          row.reason = vouched.reason
          row.byteCount = vouched.byteCount
          row.signature = .signed
          row.keyID = signed.keyID
          row.verification = record.verification
        case .unsigned?:
          row.signature = .unsigned
        case .rejected(let error)?:
          row.signature = .rejected
          row.rejection = Self.rejection(error)
        case nil:
          break
        }
        return row
      }
    } catch let error as StoreError {
      throw JobError.store(context: "list", underlying: error)
    }
  }

  /// A rejection as one line naming `path` (or the archive's id) instead of the full path.
  static func rejectionLine(_ error: StoreError, path: String) -> String { "\(path): \(rejection(error))" }

  /// A rejection as one line, without the archive's path (the row names it).
  static func rejection(_ error: StoreError) -> String {
    switch error {
    case .crypto(_, let reason, let hint), .invalid(_, let reason, let hint): return "\(reason); \(hint)"
    default: return error.errorDescription ?? "\(error)"
    }
  }
}

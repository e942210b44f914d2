import Foundation
import Store

/// What `tgsess keys rotate-signing` did.
public struct SigningRotation: Codable, Sendable, Equatable {
  /// The key that signs from now on.
  public var newKeyID: String
  /// The key that signed until now; it stays in the ring and keeps verifying what it signed.
  public var oldKeyID: String
  /// The ring file, newest first.
  public var ringPath: String
  /// Every key id in the ring, newest first.
  public var ringKeyIDs: [String]
}

/// Options of `tgsess keys sign-existing`.
public struct SignExistingOptions: Sendable {
  /// The age identity file (default: the deployment's); needed to re-verify encrypted archives.
  public var identityPath: String?
  /// Verify only; sign nothing.
  public var isDryRun: Bool
  /// Seconds to wait for the deployment lock.
  public var lockWait: TimeInterval

  public init(identityPath: String? = nil, isDryRun: Bool = false, lockWait: TimeInterval = 0) {
    self.identityPath = identityPath
    self.isDryRun = isDryRun
    self.lockWait = lockWait
  }
}

/// What `tgsess keys sign-existing` did, or would do.
public struct SignExistingResult: Codable, Sendable, Equatable {
  /// One archive it could not vouch for, and why.
  public struct Failure: Codable, Sendable, Equatable {
    public var id: String
    public var path: String
    public var reason: String
  }

  public var isDryRun: Bool
  /// The key that signed (or would sign).
  public var keyID: String
  /// The archives signed (or that would be), in listing order (newest first).
  public var signed: [String]
  /// The archives that failed their re-verification: not signed.
  public var failed: [Failure]
  /// Archives that already had a signature file (left alone).
  public var alreadySigned: Int
  /// Some archives could not be signed.
  public var isPartial: Bool { !failed.isEmpty }
}

/// Key management entry points for the CLI.
public enum KeysJob {
  /// Prepends a new Fernet key; returns its fingerprint.
  /// - Throws: `JobError.store`.
  public static func addFernetKey(_ deployment: Deployment) throws -> String {
    do { return try KeyStore.addFernetKey(deployment) } catch let error as StoreError {
      throw JobError.store(context: "keys add-fernet", underlying: error)
    }
  }

  /// Makes a new archive signing key current; the old public key stays in `keys/signing.pub`
  /// (second) so archives it signed keep verifying. Holds the deployment lock, so no backup
  /// signs halfway through.
  /// - Throws: `JobError.store` (the lock held, no signing key yet, a garbled key file).
  public static func rotateSigningKey(_ deployment: Deployment) throws -> SigningRotation {
    do {
      let lock = try DeploymentLock.acquire(path: deployment.lockPath, command: "keys rotate-signing")
      defer { lock.release() }
      let rotation = try KeyStore.rotateSigningKey(deployment)
      return SigningRotation(
        newKeyID: rotation.new.keyID, oldKeyID: rotation.old.keyID, ringPath: rotation.ring.path,
        ringKeyIDs: rotation.ring.keys.map(\.keyID))
    } catch let error as StoreError {
      throw JobError.store(context: "keys rotate-signing", underlying: error)
    }
  }

  /// Vouches, once, for the archives made before archives were signed: each archive without a
  /// signature file is read back in full (decrypted, every entry's SHA-256 checked, its manifest
  /// describing its name and place) and only then signed with `keys/signing.key`. An archive
  /// that fails is never signed and is named. Holds the deployment lock.
  /// - Throws: `JobError` when it cannot start (the lock, no signing key, no identity while an
  ///   encrypted archive needs one, an unreadable backups/).
  public static func signExisting(_ deployment: Deployment, options: SignExistingOptions) throws
    -> SignExistingResult
  {
    do {
      let lock = try DeploymentLock.acquire(
        path: deployment.lockPath, command: "keys sign-existing", wait: options.lockWait)
      defer { lock.release() }
      let key = try KeyStore.loadSigningKey(deployment)
      let repository = ArchiveRepository(backupsDirectory: deployment.backupsDirectory)
      let records = try repository.list()
      let unsigned = records.filter { record in
        ArchiveSigning.signaturePath(forArchive: repository.path(of: record)).map { !FileSystem.exists($0) } ?? false
      }
      // The identity is needed only to read encrypted archives, and then it is required:
      // nothing is signed unseen.
      let identities =
        unsigned.contains(where: \.isEncrypted)
        ? try KeyStore.loadIdentities(deployment, path: options.identityPath) : []
      let acceptsUnencrypted = deployment.config.backup?.encrypt == false
      var result = SignExistingResult(
        isDryRun: options.isDryRun, keyID: key.keyID, signed: [], failed: [],
        alreadySigned: records.count - unsigned.count)
      for record in unsigned {
        do {
          _ = try repository.signExisting(
            record, identities: identities, key: key, acceptsUnencrypted: acceptsUnencrypted,
            isDryRun: options.isDryRun)
          result.signed.append(record.id)
        } catch let error as StoreError {
          result.failed.append(
            .init(id: record.id, path: repository.path(of: record), reason: ListJob.rejection(error)))
        }
      }
      return result
    } catch let error as StoreError {
      throw JobError.store(context: "keys sign-existing", underlying: error)
    }
  }
}

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
}

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

/// What `tgsess keys usage` found: which keys the live database and the archives still need.
public struct KeyUsage: Codable, Sendable, Equatable {
  /// One age recipient: current (in `keys/age-recipients.txt`) or retired (named only by archives).
  public struct Recipient: Codable, Sendable, Equatable {
    public var recipient: String
    public var isCurrent: Bool
    /// Archives encrypted to it (among others, maybe).
    public var archives: Int
    /// Archives no current recipient opens, that is, only a retired identity does.
    public var archivesOnlyRetired: Int
    /// Whether its identity can be dropped: retired, and no archive needs it.
    public var isDroppable: Bool
  }

  /// One configured Fernet key, newest first.
  public struct FernetKeyUse: Codable, Sendable, Equatable {
    public var fingerprint: String
    /// 1 for the newest (the one that encrypts).
    public var position: Int
    /// Secrets in the live database under it.
    public var liveSecrets: Int
    /// Archives whose secrets are (partly) under it.
    public var archives: Int
    public var newestArchiveID: String?
    /// Whether the key line can be removed from `keys/fernet.keys`: not the newest, no live
    /// secret and no archive under it, and no archive whose keys are not known.
    public var isDroppable: Bool
  }

  public var recipients: [Recipient]
  /// Encrypted archives whose record does not say their recipients (written before tgsess kept
  /// them): an identity for them cannot be ruled out.
  public var archivesUnknownRecipients: Int
  public var fernetKeys: [FernetKeyUse]
  /// Archives whose record does not say which Fernet keys their secrets are under.
  public var archivesUnknownFernetKeys: Int
  /// Archives holding a token no configured key opened when they were written.
  public var archivesUnopenedFernetTokens: Int
  /// Live secret tokens no configured key opens.
  public var liveSecretsUnopened: Int
  /// Whether a Fernet key file (or `TGSESS_FERNET_KEYS`) is configured.
  public var hasFernetKeys: Bool
}

extension KeysJob {
  /// Which age identities and Fernet keys the archives and the live database still need, read
  /// from the archive records (never decrypting) and the live database: the check behind "keep
  /// the old identity until those archives are pruned" and "remove an old Fernet key only when
  /// nothing holds secrets under it".
  /// - Throws: `JobError.store` when the keys, the records or the database cannot be read.
  public static func usage(_ deployment: Deployment) throws -> KeyUsage {
    do {
      let current = Set(try KeyStore.loadRecipients(deployment).map(\.string))
      let archives = try ArchiveRepository(backupsDirectory: deployment.backupsDirectory).list()
      var counts: [String: (all: Int, onlyRetired: Int)] = [:]
      var unknownRecipients = 0
      for archive in archives where archive.isEncrypted {
        guard let recipients = archive.recipients else {
          unknownRecipients += 1
          continue
        }
        let isOnlyRetired = current.isDisjoint(with: recipients)
        for recipient in Set(recipients) {
          counts[recipient, default: (0, 0)].all += 1
          if isOnlyRetired { counts[recipient, default: (0, 0)].onlyRetired += 1 }
        }
      }
      let recipientUses = Set(counts.keys).union(current).sorted().map { recipient in
        let count = counts[recipient] ?? (0, 0)
        let isCurrent = current.contains(recipient)
        return KeyUsage.Recipient(
          recipient: recipient, isCurrent: isCurrent, archives: count.all, archivesOnlyRetired: count.onlyRetired,
          isDroppable: !isCurrent && count.onlyRetired == 0 && unknownRecipients == 0)
      }

      let fernet = try KeyStore.loadFernet(deployment)
      var live: (byKey: [String: Int], unopened: Int) = ([:], 0)
      if let fernet, FileSystem.exists(deployment.databasePath) {
        let database = try BotDatabase(
          path: deployment.databasePath, mode: .readOnly, busyTimeoutMS: deployment.busyTimeoutMS)
        defer { database.close() }
        live = try database.fernetKeyCounts(fernet: fernet)
      }
      let unknownFernet = archives.filter { $0.fernetKeys == nil }.count
      let unopened = archives.filter { $0.fernetKeys?.contains(BotDatabase.unknownFernetKey) == true }.count
      let keyUses = (fernet?.keys ?? []).enumerated().map { index, key in
        let holding = archives.filter { $0.fernetKeys?.contains(key.fingerprint) == true }
        let liveSecrets = live.byKey[key.fingerprint] ?? 0
        return KeyUsage.FernetKeyUse(
          fingerprint: key.fingerprint, position: index + 1, liveSecrets: liveSecrets, archives: holding.count,
          newestArchiveID: holding.first?.id,
          isDroppable: index > 0 && liveSecrets == 0 && holding.isEmpty && unknownFernet == 0 && unopened == 0)
      }
      return KeyUsage(
        recipients: recipientUses, archivesUnknownRecipients: unknownRecipients, fernetKeys: keyUses,
        archivesUnknownFernetKeys: unknownFernet, archivesUnopenedFernetTokens: unopened,
        liveSecretsUnopened: live.unopened, hasFernetKeys: fernet != nil)
    } catch let error as StoreError {
      throw JobError.store(context: "keys usage", underlying: error)
    }
  }
}

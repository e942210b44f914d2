import Foundation
import Logging
import Store

/// Options of `tgsess migrate`.
public struct MigrateOptions: Sendable {
  /// List the pending steps without changing anything.
  public var isDryRun: Bool
  /// Re-encrypt every secret under the newest Fernet key.
  public var rotateKey: Bool
  /// Seconds to wait for the deployment lock.
  public var lockWait: TimeInterval
  /// Switch the database to WAL (`--wal`): its writers then never wait for a backup's reads.
  public var switchesToWAL: Bool

  public init(isDryRun: Bool = false, rotateKey: Bool = false, lockWait: TimeInterval = 0, switchesToWAL: Bool = false)
  {
    self.isDryRun = isDryRun
    self.rotateKey = rotateKey
    self.lockWait = lockWait
    self.switchesToWAL = switchesToWAL
  }
}

/// What `tgsess migrate` did, or would do with `--dry-run`.
public struct MigrateResult: Codable, Sendable, Equatable {
  public var database: String
  public var isDryRun: Bool
  /// The database file did not exist and was created.
  public var created: Bool
  /// The database had the seed's tables but no tgsess bookkeeping.
  public var wasLegacy: Bool
  public var fromVersion: Int
  public var toVersion: Int
  /// Migrations applied (or, in a dry run, pending).
  public var migrations: [String]
  /// The archive (a full snapshot, reason "Before migrate", encrypted like every other) taken
  /// before anything changed.
  public var safetyCopy: String?
  /// Plaintext secrets encrypted (or, in a dry run, found).
  public var secretsEncrypted: Int
  /// Secrets re-encrypted under the newest key (or, in a dry run, to re-encrypt).
  public var secretsRotated: Int
  /// Secrets no configured key decrypts; they are left as they are.
  public var secretsUndecryptable: Int
  /// The seed's legacy backup files imported as archives with reason "Imported" (or, in a dry
  /// run, to import).
  public var imported: [ImportedLegacyFile] = []
  /// Legacy backup files an earlier run already imported.
  public var alreadyImported: Int = 0
  /// Why legacy backup files were left unimported (no age recipient to encrypt them to).
  public var importNote: String?
  /// Plaintext safety copies an earlier version left in `backups/pre-migrate/`, now encrypted
  /// into archives and removed (or, in a dry run, to be).
  public var plaintextCopies: [ConvertedSafetyCopy] = []
  /// In a dry run: why the real run would refuse (no age recipient for the safety copy).
  public var refusal: String?
  /// The database's journal mode before the run (`delete`, `truncate`, `persist`, `wal`, ...).
  public var journalMode = ""
  /// `--wal`: the database was switched (or, in a dry run, would be) from `journalMode` to WAL.
  public var switchesToWAL = false
  /// Whether the schema or the secrets changed (or would).
  public var hasDatabaseChanges: Bool {
    created || !migrations.isEmpty || secretsEncrypted > 0 || secretsRotated > 0
  }
  /// Whether anything changed (or would).
  public var hasChanges: Bool {
    hasDatabaseChanges || !imported.isEmpty || !plaintextCopies.isEmpty || switchesToWAL
  }
}

/// A plaintext safety copy an earlier version left, and the encrypted archive that holds it now.
public struct ConvertedSafetyCopy: Codable, Sendable, Equatable {
  /// The plaintext file (removed, unless a dry run).
  public var path: String
  /// The archive that holds it; nil in a dry run.
  public var archiveID: String?
  /// An earlier run had already archived it (then only the file was removed).
  public var wasArchivedBefore: Bool
}

/// A legacy backup file of the seed's bot and the archive it went into.
public struct ImportedLegacyFile: Codable, Sendable, Equatable {
  public var path: String
  /// The user of a `.session.backup`; nil for a database copy.
  public var userID: Int64?
  /// The new archive; nil in a dry run.
  public var archiveID: String?
}

/// Brings the bot database to the current schema and encrypts its secrets.
public enum MigrateJob {
  /// Runs the migration: a safety copy through SQLite's online backup API first, then each
  /// pending migration in its own transaction, then one transaction that encrypts plaintext
  /// `session_string`/`api_hash` values (and, with `rotateKey`, re-encrypts all of them under the
  /// newest key). A crash at any point leaves the previous state of that step.
  /// - Throws: `JobError` naming the database and the next step; a database made by a newer
  ///   tgsess is refused untouched.
  public static func run(_ deployment: Deployment, options: MigrateOptions = MigrateOptions(), logger: Logger)
    throws -> MigrateResult
  {
    let path = deployment.databasePath
    let exists = FileSystem.exists(path)
    if options.isDryRun, !exists {
      return MigrateResult(
        database: path, isDryRun: true, created: true, wasLegacy: false, fromVersion: 0,
        toVersion: BotSchema.currentVersion, migrations: BotSchema.migrationIdentifiers, safetyCopy: nil,
        secretsEncrypted: 0, secretsRotated: 0, secretsUndecryptable: 0)
    }
    do {
      // Keys first: a bad key refuses before anything, the lock file included, is touched.
      let fernet = try KeyStore.loadFernet(deployment)
      let recipients = try KeyStore.loadRecipients(deployment)
      if recipients.isEmpty, !options.isDryRun, exists {
        try refuseWithoutRecipient(deployment, options: options, fernet: fernet)
      }
      let lock =
        options.isDryRun
        ? nil : try DeploymentLock.acquire(path: deployment.lockPath, command: "migrate", wait: options.lockWait)
      defer { lock?.release() }
      let database = try BotDatabase(
        path: path, mode: options.isDryRun ? .readOnly : .create, busyTimeoutMS: deployment.busyTimeoutMS)
      defer { database.close() }
      let status = try database.schemaStatus()
      if !status.unknown.isEmpty { try database.requireCurrentSchema() }
      let secrets = try database.secretCensus(fernet: fernet)
      if secrets.plaintext > 0, fernet == nil {
        throw StoreError.key(
          path: deployment.fernetKeysPath,
          reason: "\(secrets.plaintext) plaintext secret(s) in the database need a Fernet key, and none is configured",
          hint: "run tgsess init, or set TGSESS_FERNET_KEYS")
      }
      var result = MigrateResult(
        database: path, isDryRun: options.isDryRun, created: !exists, wasLegacy: status.isLegacy,
        fromVersion: status.version, toVersion: BotSchema.currentVersion, migrations: status.pending, safetyCopy: nil,
        secretsEncrypted: secrets.plaintext, secretsRotated: options.rotateKey ? secrets.underOlderKey : 0,
        secretsUndecryptable: secrets.undecryptable)
      result.journalMode = try database.journalMode()
      result.switchesToWAL = options.switchesToWAL && result.journalMode != "wal"
      let legacyFiles = try LegacyBackups.find(deployment)
      let plaintextCopies = try PlaintextSafetyCopies.find(deployment)
      // The safety copy holds every secret (plaintext ones in a legacy database): it is an
      // encrypted archive or nothing, never a plaintext file.
      let needsCopy = needsSafetyCopy(status: status, secrets: secrets, options: options)
      if (needsCopy || !plaintextCopies.isEmpty), recipients.isEmpty {
        let error = noRecipient(deployment)
        guard options.isDryRun else { throw error }
        result.refusal = error.errorDescription
      }
      if options.isDryRun {
        for file in legacyFiles {
          if try database.importedArchiveID(sha256: try FileSystem.sha256(ofFile: file.path)) != nil {
            result.alreadyImported += 1
          } else {
            result.imported.append(ImportedLegacyFile(path: file.path, userID: file.userID, archiveID: nil))
          }
        }
        result.plaintextCopies = plaintextCopies.map {
          ConvertedSafetyCopy(path: $0.path, archiveID: nil, wasArchivedBefore: false)
        }
        return result
      }

      // 0. What a migrate killed while copying left (a half-written plaintext temporary of an
      // earlier version), and the plaintext copies earlier versions kept: into archives.
      FileSystem.removeStaleTemporaries(in: PlaintextSafetyCopies.directory(deployment))
      // And what a killed or power-cut run left in the backups directory (as prune does).
      try Leftovers.remove(deployment, logger: logger)
      if !plaintextCopies.isEmpty {
        result.plaintextCopies = try encryptPlaintextCopies(
          plaintextCopies, deployment: deployment, database: database, recipients: recipients, logger: logger)
      }
      // 1. A consistent copy of what is about to change, unless the file was empty: a full
      // snapshot through the backup job, encrypted, listed, restorable and pruned like any other.
      if needsCopy {
        result.safetyCopy = try takeSafetyCopy(deployment, options: options, logger: logger)
      }
      if result.hasDatabaseChanges {
        // 2. Schema.
        try database.migrate()
        // 3. Secrets, in one transaction.
        if let fernet {
          let counts = try database.encryptSecrets(fernet: fernet, rotate: options.rotateKey)
          result.secretsEncrypted = counts.encrypted
          result.secretsRotated = counts.rotated
        }
      } else if fernet != nil, try !database.areSecretsEncrypted() {
        // Migrated by a tgsess that did not record it: from now on the columns hold tokens only.
        _ = try database.recordSecretsEncrypted()
      }
      // 4. WAL, asked for explicitly: the file is the bot's, so its journal mode changes only here.
      if result.switchesToWAL {
        try database.switchToWAL()
        logger.notice(
          "database switched to WAL", metadata: ["db.path": "\(path)", "db.journal_mode": "\(result.journalMode)"])
      }
      // 5. The seed's legacy backup files, as encrypted archives, so no history is lost.
      if !legacyFiles.isEmpty {
        try importLegacy(legacyFiles, deployment: deployment, database: database, into: &result, logger: logger)
      }
      if !result.hasChanges { return result }
      logger.notice(
        "migrate done",
        metadata: [
          "db.path": "\(path)", "db.version": "\(BotSchema.currentVersion)",
          "secrets.encrypted": "\(result.secretsEncrypted)", "secrets.rotated": "\(result.secretsRotated)",
          "legacy.imported": "\(result.imported.count)",
        ])
      return result
    } catch let error as StoreError {
      throw JobError.store(context: "migrate", underlying: error)
    }
  }

  /// Whether the run changes an existing database, so that it takes a safety copy first.
  static func needsSafetyCopy(status: BotSchema.Status, secrets: BotDatabase.SecretCensus, options: MigrateOptions)
    -> Bool
  {
    !status.isEmpty
      && (!status.pending.isEmpty || secrets.plaintext > 0 || (options.rotateKey && secrets.underOlderKey > 0))
  }

  static func noRecipient(_ deployment: Deployment) -> StoreError {
    StoreError.key(
      path: deployment.ageRecipientsPath,
      reason: "no age recipient to encrypt the database's safety copy to, and a plaintext copy is never kept",
      hint: "run tgsess init (it creates the keys before it migrates), or add the recipient of your escrowed identity")
  }

  /// Before the lock file is touched: a run that would need a safety copy (or has plaintext
  /// copies to encrypt) and has no recipient refuses, reading the database only.
  /// - Throws: `noRecipient`, or `StoreError` when the database cannot be read.
  static func refuseWithoutRecipient(_ deployment: Deployment, options: MigrateOptions, fernet: Fernet?) throws {
    let database = try BotDatabase(
      path: deployment.databasePath, mode: .readOnly, busyTimeoutMS: deployment.busyTimeoutMS)
    defer { database.close() }
    let secrets = try database.secretCensus(fernet: fernet)
    // A missing Fernet key is the first thing to fix; the run reports it.
    if secrets.plaintext > 0, fernet == nil { return }
    let needsCopy = needsSafetyCopy(status: try database.schemaStatus(), secrets: secrets, options: options)
    let plaintextCopies = try PlaintextSafetyCopies.find(deployment)
    if needsCopy || !plaintextCopies.isEmpty { throw noRecipient(deployment) }
  }

  /// The Fernet keys a database copy's secrets are under, for its archive's record; nil when no
  /// Fernet key is configured (not known).
  /// - Throws: `StoreError` when the keys or the copy cannot be read.
  static func fernetKeys(of database: BotDatabase, _ deployment: Deployment) throws -> [String]? {
    guard let fernet = try KeyStore.loadFernet(deployment) else { return nil }
    return try database.fernetKeyFingerprints(fernet: fernet)
  }

  /// Takes the safety copy: a full snapshot (database and session files) with reason "Before
  /// migrate", encrypted to the deployment's recipients whatever `[backup] encrypt` says, under
  /// the lock this job holds. It is pushed offsite by the next backup.
  /// - Returns: the archive's id.
  /// - Throws: `JobError` when the snapshot cannot be written; nothing has been migrated then.
  static func takeSafetyCopy(_ deployment: Deployment, options: MigrateOptions, logger: Logger) throws -> String {
    let config = BackupOptions(config: deployment.config)
    let backup = BackupOptions(
      reason: BackupReason.beforeMigrate, isEncrypted: true, lockWait: options.lockWait, zstdLevel: config.zstdLevel,
      includesChangedUsers: false, pushesOffsite: false)
    let result: BackupResult
    do {
      result = try BackupJob.run(deployment, options: backup, logger: logger)
    } catch JobError.store(_, let underlying) {
      throw JobError.store(context: "migrate: the safety copy failed, nothing was migrated", underlying: underlying)
    }
    guard let archive = result.archives.first else {
      throw JobError.refused(
        "migrate: the safety copy wrote no archive; nothing was migrated; run tgsess backup to see why")
    }
    for failure in result.failures {
      // A session file that cannot be snapshotted does not stop a migrate (which never touches
      // session files); the database is in the copy.
      logger.warning(
        "safety copy skipped a user", metadata: ["user.id": "\(failure.userID)", "error": "\(failure.reason)"])
    }
    logger.notice("safety copy taken", metadata: ["archive.id": "\(archive.id)"])
    return archive.id
  }

  /// Turns each plaintext safety copy an earlier version left into a signed full archive with reason
  /// "Before migrate" (its database entry, dated when the copy was taken) and removes the file
  /// once the archive is proven. The copy's SHA-256 is remembered, so a run killed between the
  /// two only removes the file next time.
  static func encryptPlaintextCopies(
    _ copies: [PlaintextSafetyCopy], deployment: Deployment, database: BotDatabase, recipients: [AgeRecipient],
    logger: Logger
  ) throws -> [ConvertedSafetyCopy] {
    // Signed as every archive is: an unsigned one would be refused by every reader.
    let signingKey = try KeyStore.loadSigningKey(deployment)
    let identities = FileSystem.exists(deployment.ageIdentityPath) ? try KeyStore.loadIdentities(deployment) : []
    let repository = ArchiveRepository(backupsDirectory: deployment.backupsDirectory)
    let databaseEntry = "data/" + (deployment.databasePath as NSString).lastPathComponent
    var converted: [ConvertedSafetyCopy] = []
    for copy in copies {
      let sha256 = try FileSystem.sha256(ofFile: copy.path)
      if let id = try database.importedArchiveID(sha256: sha256) {
        try PlaintextSafetyCopies.remove(copy)
        converted.append(ConvertedSafetyCopy(path: copy.path, archiveID: id, wasArchivedBefore: true))
        continue
      }
      let snapshot = try BotDatabase(path: copy.path, mode: .readOnly)
      let schemaVersion = (try? snapshot.schemaStatus().version) ?? 0
      let fernetKeys = try Self.fernetKeys(of: snapshot, deployment)
      snapshot.close()
      let entry = Manifest.Entry(
        path: databaseEntry, role: .database, size: try FileSystem.size(of: copy.path), sha256: sha256, isSQLite: true)
      let id = ArchiveName.makeID(kind: .full, userID: nil, date: copy.createdAt)
      let manifest = Manifest(
        toolVersion: ToolInfo.version, host: ProcessInfo.processInfo.hostName, createdAt: copy.createdAt, kind: .full,
        reason: BackupReason.beforeMigrate, userID: nil, schemaVersion: schemaVersion, entries: [entry])
      _ = try repository.write(
        id: id, manifest: manifest, sources: [databaseEntry: .file(copy.path)], encryption: .age(recipients),
        identities: identities, signingKey: signingKey,
        zstdLevel: deployment.config.backup?.zstdLevel ?? BackupOptions.defaultZstdLevel, fernetKeys: fernetKeys)
      try database.recordImport(sha256: sha256, archiveID: id)
      try PlaintextSafetyCopies.remove(copy)
      converted.append(ConvertedSafetyCopy(path: copy.path, archiveID: id, wasArchivedBefore: false))
      logger.notice(
        "plaintext safety copy encrypted and removed", metadata: ["file.path": "\(copy.path)", "archive.id": "\(id)"])
    }
    return converted
  }

  /// Imports each legacy file not imported before into its own archive with reason "Imported",
  /// dated when the copy was made: a database copy into a full archive, a `.session.backup` into
  /// a per-user archive. The file's SHA-256 is remembered in `tgsess_state` after its archive is
  /// published, so a rerun skips it (a crash in between costs one duplicate archive, never a loss).
  /// The files themselves are left in place.
  static func importLegacy(
    _ files: [LegacyBackupFile], deployment: Deployment, database: BotDatabase, into result: inout MigrateResult,
    logger: Logger
  ) throws {
    let recipients = try KeyStore.loadRecipients(deployment)
    guard !recipients.isEmpty else {
      // Only the ones not imported yet wait.
      var waiting = 0
      for file in files {
        if try database.importedArchiveID(sha256: try FileSystem.sha256(ofFile: file.path)) != nil {
          result.alreadyImported += 1
        } else {
          waiting += 1
        }
      }
      if waiting > 0 {
        result.importNote =
          "\(waiting) legacy backup file(s) not imported: no age recipient to encrypt them to (run tgsess init)"
      }
      return
    }
    guard FileSystem.exists(deployment.signingKeyPath) else {
      result.importNote =
        "\(files.count) legacy backup file(s) not imported: no archive signing key to sign them with (run tgsess init)"
      return
    }
    let signingKey = try KeyStore.loadSigningKey(deployment)
    let identities = FileSystem.exists(deployment.ageIdentityPath) ? try KeyStore.loadIdentities(deployment) : []
    let repository = ArchiveRepository(backupsDirectory: deployment.backupsDirectory)
    let host = ProcessInfo.processInfo.hostName
    for file in files {
      let sha256 = try FileSystem.sha256(ofFile: file.path)
      if try database.importedArchiveID(sha256: sha256) != nil {
        result.alreadyImported += 1
        continue
      }
      var entry = Manifest.Entry(
        path: file.archivePath, role: .imported, size: try FileSystem.size(of: file.path), sha256: sha256,
        isSQLite: LegacyBackups.isSQLite(file.path), userID: file.userID)
      var schemaVersion = BotSchema.currentVersion
      // A session file holds no secret column; a database copy's tokens are looked at.
      var fernetKeys: [String]? = []
      if file.userID != nil, let info = try? SessionFileInspector.inspect(path: file.path) {
        entry.format = info.format.shortName
        entry.dcID = info.identity.dcID
        entry.authKeyFingerprint = info.identity.authKey.fingerprint
        entry.serverAddress = info.identity.serverAddress
      } else if file.userID == nil {
        // The copy's own schema: 0 for the seed's.
        let copy = try? BotDatabase(path: file.path, mode: .readOnly)
        schemaVersion = (try? copy?.schemaStatus().version) ?? 0
        if let copy { fernetKeys = (try? Self.fernetKeys(of: copy, deployment)) ?? nil }
        copy?.close()
      }
      let kind: Manifest.Kind = file.userID == nil ? .full : .user
      let id = ArchiveName.makeID(kind: kind, userID: file.userID, date: file.createdAt)
      let manifest = Manifest(
        toolVersion: ToolInfo.version, host: host, createdAt: file.createdAt, kind: kind,
        reason: BackupReason.imported, userID: file.userID, schemaVersion: schemaVersion, entries: [entry])
      _ = try repository.write(
        id: id, manifest: manifest, sources: [file.archivePath: .file(file.path)], encryption: .age(recipients),
        identities: identities, signingKey: signingKey, zstdLevel: deployment.config.backup?.zstdLevel ?? 3,
        fernetKeys: fernetKeys)
      try database.recordImport(sha256: sha256, archiveID: id)
      result.imported.append(ImportedLegacyFile(path: file.path, userID: file.userID, archiveID: id))
      logger.info("legacy backup imported", metadata: ["file.path": "\(file.path)", "archive.id": "\(id)"])
    }
  }
}

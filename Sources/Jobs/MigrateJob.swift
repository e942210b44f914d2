import Foundation
import Logging
import Store

/// Options of `tgsess migrate`.
public struct MigrateOptions: Sendable {
  /// List the pending steps without changing anything.
  public var isDryRun: Bool
  /// Re-encrypt every secret under the newest Fernet key.
  public var rotateKey: Bool

  public init(isDryRun: Bool = false, rotateKey: Bool = false) {
    self.isDryRun = isDryRun
    self.rotateKey = rotateKey
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
  /// The consistent copy taken before anything changed.
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
  /// Whether the schema or the secrets changed (or would).
  public var hasDatabaseChanges: Bool {
    created || !migrations.isEmpty || secretsEncrypted > 0 || secretsRotated > 0
  }
  /// Whether anything changed (or would).
  public var hasChanges: Bool { hasDatabaseChanges || !imported.isEmpty }
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
      let lock = options.isDryRun ? nil : try DeploymentLock.acquire(path: deployment.lockPath, command: "migrate")
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
      let legacyFiles = try LegacyBackups.find(deployment)
      if options.isDryRun {
        for file in legacyFiles {
          if try database.importedArchiveID(sha256: try FileSystem.sha256(ofFile: file.path)) != nil {
            result.alreadyImported += 1
          } else {
            result.imported.append(ImportedLegacyFile(path: file.path, userID: file.userID, archiveID: nil))
          }
        }
        return result
      }

      // 1. A consistent copy of what is about to change, unless the file was empty. (First, what
      // a migrate killed while copying or importing left: its half-written temporaries.)
      FileSystem.removeStaleTemporaries(in: deployment.backupsDirectory + "/pre-migrate")
      try Leftovers.remove(deployment, logger: logger)
      if result.hasDatabaseChanges, !status.isEmpty {
        let stamp = Timestamp.compact(Date())
        let copy = deployment.backupsDirectory + "/pre-migrate/telegram_bot.db.pre-migrate-\(stamp)"
        try FileSystem.makeDirectory(deployment.backupsDirectory)
        try database.backup(to: copy)
        result.safetyCopy = copy
        logger.notice("safety copy taken", metadata: ["archive.path": "\(copy)"])
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
      // 4. The seed's legacy backup files, as encrypted archives, so no history is lost.
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
      result.importNote =
        "\(files.count) legacy backup file(s) not imported: no age recipient to encrypt them to (run tgsess init)"
      return
    }
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
      if file.userID != nil, let info = try? SessionFileInspector.inspect(path: file.path) {
        entry.format = info.format.shortName
        entry.dcID = info.identity.dcID
        entry.authKeyFingerprint = info.identity.authKey.fingerprint
        entry.serverAddress = info.identity.serverAddress
      } else if file.userID == nil {
        // The copy's own schema: 0 for the seed's.
        let copy = try? BotDatabase(path: file.path, mode: .readOnly)
        schemaVersion = (try? copy?.schemaStatus().version) ?? 0
        copy?.close()
      }
      let kind: Manifest.Kind = file.userID == nil ? .full : .user
      let id = ArchiveName.makeID(kind: kind, userID: file.userID, date: file.createdAt)
      let manifest = Manifest(
        toolVersion: ToolInfo.version, host: host, createdAt: file.createdAt, kind: kind,
        reason: BackupReason.imported, userID: file.userID, schemaVersion: schemaVersion, entries: [entry])
      _ = try repository.write(
        id: id, manifest: manifest, sources: [file.archivePath: .file(file.path)], encryption: .age(recipients),
        identities: identities, zstdLevel: deployment.config.backup?.zstdLevel ?? 3)
      try database.recordImport(sha256: sha256, archiveID: id)
      result.imported.append(ImportedLegacyFile(path: file.path, userID: file.userID, archiveID: id))
      logger.info("legacy backup imported", metadata: ["file.path": "\(file.path)", "archive.id": "\(id)"])
    }
  }
}

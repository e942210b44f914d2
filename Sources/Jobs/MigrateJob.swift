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
  /// Whether anything changed (or would).
  public var hasChanges: Bool {
    created || !migrations.isEmpty || secretsEncrypted > 0 || secretsRotated > 0
  }
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
      if options.isDryRun || !result.hasChanges { return result }

      // 1. A consistent copy of what is about to change, unless the file was empty.
      if !status.isEmpty {
        let stamp = Timestamp.compact(Date())
        let copy = deployment.backupsDirectory + "/pre-migrate/telegram_bot.db.pre-migrate-\(stamp)"
        try FileSystem.makeDirectory(deployment.backupsDirectory)
        try database.backup(to: copy)
        result.safetyCopy = copy
        logger.notice("safety copy taken", metadata: ["archive.path": "\(copy)"])
      }
      // 2. Schema.
      try database.migrate()
      // 3. Secrets, in one transaction.
      if let fernet {
        let counts = try database.encryptSecrets(fernet: fernet, rotate: options.rotateKey)
        result.secretsEncrypted = counts.encrypted
        result.secretsRotated = counts.rotated
      }
      logger.notice(
        "migrate done",
        metadata: [
          "db.path": "\(path)", "db.version": "\(BotSchema.currentVersion)",
          "secrets.encrypted": "\(result.secretsEncrypted)", "secrets.rotated": "\(result.secretsRotated)",
        ])
      return result
    } catch let error as StoreError {
      throw JobError.store(context: "migrate", underlying: error)
    }
  }
}

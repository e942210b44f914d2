import Foundation
import Logging
import Store

/// What `tgsess init` created; everything that already existed is left as it was.
public struct InitResult: Codable, Sendable, Equatable {
  public var root: String
  public var directoriesCreated: [String]
  public var keys: KeyStore.Created
  public var recipients: [String]
  /// The key id of the archive signing key (`keys/signing.key`).
  public var signingKeyID: String
  public var migrate: MigrateResult
}

/// Options of `tgsess init`.
public struct InitOptions: Sendable {
  /// Seconds to wait for the deployment lock (held while the database is migrated).
  public var lockWait: TimeInterval

  public init(lockWait: TimeInterval = 0) {
    self.lockWait = lockWait
  }
}

/// Sets a deployment up: directories (0700), keys (0600: the age identity and recipients, the
/// archive signing key and its public key ring, the Fernet keys), and the database at the current
/// schema.
public enum InitJob {
  /// Creates what is missing and never overwrites a key. Running it twice changes nothing. The
  /// keys come first, so the migration's safety copy is encrypted from the very first run.
  /// - Throws: `JobError` naming the path that could not be created.
  public static func run(_ deployment: Deployment, options: InitOptions = InitOptions(), logger: Logger) throws
    -> InitResult
  {
    do {
      var made: [String] = []
      for directory in [
        deployment.root, FileSystem.parentDirectory(of: deployment.databasePath),
        deployment.sessionsDirectory, deployment.backupsDirectory, deployment.keysDirectory,
      ] where !FileSystem.isDirectory(directory) {
        try FileSystem.makeDirectory(directory)
        made.append(directory)
      }
      let keys = try KeyStore.ensureKeys(deployment)
      let recipients = try KeyStore.loadRecipients(deployment).map(\.string)
      let signingKeyID = try KeyStore.loadSigningKey(deployment).keyID
      let migrate = try MigrateJob.run(deployment, options: MigrateOptions(lockWait: options.lockWait), logger: logger)
      logger.notice(
        "init done",
        metadata: ["deployment.root": "\(deployment.root)", "dirs.created": "\(made.count)"])
      return InitResult(
        root: deployment.root, directoriesCreated: made, keys: keys, recipients: recipients,
        signingKeyID: signingKeyID, migrate: migrate)
    } catch let error as StoreError {
      throw JobError.store(context: "init", underlying: error)
    }
  }
}

import Foundation
import Logging
import Store

/// Options of `tgsess handover`.
public struct HandoverOptions: Sendable {
  public var userID: Int64
  /// Seconds to wait for the deployment lock.
  public var lockWait: TimeInterval
  /// Hand over although a process holds the session file (it keeps using the key).
  public var isForced: Bool
  /// The "Before hand-over" backup's settings (encryption, zstd level); the job sets its user,
  /// reason and push itself.
  public var backup: BackupOptions

  public init(
    userID: Int64, lockWait: TimeInterval = 0, isForced: Bool = false, backup: BackupOptions = BackupOptions()
  ) {
    self.userID = userID
    self.lockWait = lockWait
    self.isForced = isForced
    self.backup = backup
  }

  /// A hand-over whose backup follows the deployment's `[backup]` configuration.
  public init(config: Config, userID: Int64, lockWait: TimeInterval = 0, isForced: Bool = false) {
    self.init(
      userID: userID, lockWait: lockWait, isForced: isForced,
      backup: BackupOptions(
        config: config, overrides: BackupOptions.Overrides(userID: userID, reason: BackupReason.beforeHandover)))
  }
}

/// What `tgsess handover` did.
public struct HandoverResult: Codable, Sendable, Equatable {
  public var userID: Int64
  /// The user was handed over before (a replay): nothing was done.
  public var wasHandedOver: Bool
  /// The proven "Before hand-over" archive.
  public var archiveID: String?
  /// The remotes it was pushed to (verified there).
  public var remotes: [String]
  /// Where the session files were moved (the session file first; its JSON sidecar with it).
  public var movedTo: [String]
  /// Whether the user's row now says `handed_over` (false when there is no row).
  public var isRowMarked: Bool
  /// The deployment name the new host restores from (`--from-deployment`).
  public var deploymentName: String
  /// What went wrong after the hand-over itself (the last heartbeat), one line each.
  public var warnings: [String]
}

/// Moves one user's session off this host so another host can take it over without the same
/// auth key ever being used from two places (AUTH_KEY_DUPLICATED): a final per-user backup
/// ("Before hand-over"), proven and pushed to every remote; then the session files, with the
/// JSON sidecar `user_<id>.json` (the pair is one unit), moved aside into
/// `sessions/handed-over/<time>-user_<id>/`; then the row marked `handed_over`, so neither recover nor
/// the bot brings it back; then a heartbeat without the user, so the fleet shows one owner.
public enum HandoverJob {
  /// Carries out the hand-over under the deployment lock. Idempotent: a replay finds the user
  /// handed over and does nothing.
  /// - Throws: `JobError.usage` without a remote; `JobError.refused` when there is no session
  ///   file, it is damaged or held by a process, or the backup is not proven or not pushed
  ///   (nothing moved then); `JobError.store` for the lock, the database or a file.
  public static func run(_ deployment: Deployment, options: HandoverOptions, logger: Logger) throws -> HandoverResult {
    let userID = options.userID
    guard !deployment.remotes.isEmpty else {
      throw JobError.usage(
        "handover needs a remote the new host restores from; add a [[remotes]] table (name, path) to \(deployment.configPath ?? deployment.root + "/tgsess.toml")"
      )
    }
    let deploymentName = FleetHeartbeat.deploymentName(deployment)
    var result = HandoverResult(
      userID: userID, wasHandedOver: false, archiveID: nil, remotes: [], movedTo: [], isRowMarked: false,
      deploymentName: deploymentName, warnings: [])
    do {
      let lock = try DeploymentLock.acquire(
        path: deployment.lockPath, command: "handover --user \(userID)", wait: options.lockWait)
      defer { lock.release() }
      let database = try BotDatabase(
        path: deployment.databasePath, mode: .readWrite, busyTimeoutMS: deployment.busyTimeoutMS)
      defer { database.close() }
      let state = try LogoutJob.state(deployment, userID: userID, database: database)
      if !state.hasSessionFile {
        if state.rowStatus == .handedOver {
          result.wasHandedOver = true
          return result
        }
        throw JobError.refused(
          "user \(userID) has no session file here (\(deployment.sessionPath(userID: userID))); nothing to hand over")
      }
      if let problem = state.sessionProblem {
        throw JobError.refused(
          "the session file of user \(userID) is damaged (\(problem.reason)); recover it first (tgsess recover --user \(userID)), then hand it over"
        )
      }
      // A process that holds the file keeps using the key after it moves: stop it first.
      let holders = LiveOwnerGuard.evidence(
        deployment, files: [state.files[0]], replacing: [state.files[0]], systemdUnit: nil
      ).filter {
        // The bot as a whole may keep running for its other users; what matters is this file.
        if case .botRunner = $0 { return false } else { return true }
      }
      if !holders.isEmpty, !options.isForced {
        throw JobError.refused(
          "user \(userID)'s session is in use here: \(LiveOwnerRefusal.describe(holders)); make the bot stop using it (stop those processes), then run again; --force hands it over anyway"
        )
      }

      // 1. The final backup, proven, and pushed to every remote.
      var backup = options.backup
      backup.userID = userID
      backup.reason = BackupReason.beforeHandover
      backup.pushesOffsite = true
      let backedUp = try BackupJob.run(deployment, options: backup, logger: logger)
      guard let archive = backedUp.archives.first, archive.verification != .unknown, backedUp.failures.isEmpty else {
        throw JobError.refused(
          "the backup before hand-over of user \(userID) is not proven; nothing was moved. See tgsess check, then run again"
        )
      }
      let failed = backedUp.offsite.filter { !$0.ok }
      guard failed.isEmpty, backedUp.offsite.count == deployment.remotes.count else {
        let why = failed.compactMap(\.error).joined(separator: "; ")
        throw JobError.refused(
          "the backup before hand-over of user \(userID) (\(archive.id)) did not reach every remote (\(why)); nothing was moved. Fix the remote, then run again"
        )
      }
      result.archiveID = archive.id
      result.remotes = backedUp.offsite.map(\.remote)

      // 2. The files aside, then 3. the row.
      do {
        result.movedTo = try deployment.moveSessionFilesAside(
          state.files, into: deployment.handedOverDirectory(stamp: Timestamp.compact(Date()) + "-user_\(userID)"))
        result.isRowMarked = try database.markHandedOver(userID: userID)
      } catch let error as StoreError {
        throw JobError.store(
          context: "hand-over of user \(userID) (backup \(archive.id) is taken and pushed)", underlying: error)
      }

      // 4. A heartbeat without the user, so the fleet (and the new host's restore guard) sees one owner.
      let failures = FleetHeartbeat.publish(deployment, remotes: deployment.remotes, logger: logger)
      result.warnings = failures.values.sorted().map {
        "\($0); the new host's restore may refuse until this host's next push or check"
      }
      logger.notice(
        "handover done",
        metadata: ["user.id": "\(userID)", "archive.id": "\(archive.id)", "files.moved": "\(result.movedTo.count)"])
      return result
    } catch let error as StoreError {
      throw JobError.store(context: "hand-over of user \(userID)", underlying: error)
    }
  }
}

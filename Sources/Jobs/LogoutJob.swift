import Foundation
import Logging
import Store

/// Options of a logout.
public struct LogoutOptions: Sendable {
  /// The user who logs out.
  public var userID: Int64
  /// Seconds to wait for the deployment lock.
  public var lockWait: TimeInterval
  /// How the lock file names the holder while the logout runs (`tgsess-bot logout --user 42`).
  public var lockCommand: String
  /// The "Before logout" backup's settings (encryption, zstd level); the job sets its user and
  /// reason itself.
  public var backup: BackupOptions

  public init(
    userID: Int64, lockWait: TimeInterval = 0, lockCommand: String? = nil, backup: BackupOptions = BackupOptions()
  ) {
    self.userID = userID
    self.lockWait = lockWait
    self.lockCommand = lockCommand ?? "logout --user \(userID)"
    self.backup = backup
  }

  /// A logout whose backup follows the deployment's `[backup]` configuration.
  public init(config: Config, userID: Int64, lockWait: TimeInterval = 0, lockCommand: String? = nil) {
    self.init(
      userID: userID, lockWait: lockWait, lockCommand: lockCommand,
      backup: BackupOptions(
        config: config, overrides: BackupOptions.Overrides(userID: userID, reason: BackupReason.beforeLogout)))
  }
}

/// What a logout finds before it acts: the user's live files and row.
public struct LogoutState: Sendable, Equatable {
  public var userID: Int64
  /// The session file, its SQLite sidecars, the seed's `.session.backup` and the JSON sidecar
  /// `user_<id>.json` that exist, the session file first and the JSON sidecar last. The JSON
  /// sidecar is listed only beside an existing session file: then the backup before logout (or
  /// hand-over) holds the pair; one on its own is in no backup taken here, and is left alone.
  public var files: [String]
  /// Whether the session file itself exists (a sidecar can outlive it).
  public var hasSessionFile: Bool
  /// Why the session file cannot be read, when it exists and is damaged.
  public var sessionProblem: SessionProblem?
  /// The `user_sessions` row's status; nil when the user has no row.
  public var rowStatus: UserStatus?

  public init(
    userID: Int64, files: [String], hasSessionFile: Bool, sessionProblem: SessionProblem? = nil,
    rowStatus: UserStatus?
  ) {
    self.userID = userID
    self.files = files
    self.hasSessionFile = hasSessionFile
    self.sessionProblem = sessionProblem
    self.rowStatus = rowStatus
  }
}

/// Why a logout stopped before removing anything.
public enum LogoutRefusal: Sendable, Equatable {
  /// The session file is damaged, so it cannot be backed up; `/recover` first.
  case damagedSessionFile(path: String, problem: SessionProblem)
  /// The backup before logout produced no proven archive.
  case backupNotProven
}

/// What a logout will do, decided from what it found before anything changes.
public struct LogoutPlan: Sendable, Equatable {
  public enum Action: Sendable, Equatable {
    /// No session file, and the row says logged out (or there is no row): nothing to do. A
    /// replayed logout lands here.
    case alreadyLoggedOut
    /// Stop before touching anything.
    case refuse(LogoutRefusal)
    /// Back up, then remove the files, then mark the row.
    case logOut
  }

  public var userID: Int64
  public var action: Action
  /// The reason of the per-user backup taken (and proven) first; nil when nothing is backed up.
  public var backupReason: String?
  /// Whether that backup holds the session file (else only the user's database rows).
  public var backsUpSessionFile: Bool
  /// The files removed once the backup is proven, in order: the JSON sidecar `user_<id>.json`
  /// (when there is one), then the session file, its SQLite sidecars and `.session.backup`. The
  /// JSON goes first so an interrupted logout never leaves it behind on its own (its secrets with
  /// no session file to back them up with): the replay finds the session file, backs it up again
  /// and finishes.
  public var removes: [String]
  /// Whether the `user_sessions` row is marked `logged_out` (false when there is no row).
  public var marksLoggedOut: Bool

  public init(
    userID: Int64, action: Action, backupReason: String? = nil, backsUpSessionFile: Bool = false,
    removes: [String] = [], marksLoggedOut: Bool = false
  ) {
    self.userID = userID
    self.action = action
    self.backupReason = backupReason
    self.backsUpSessionFile = backsUpSessionFile
    self.removes = removes
    self.marksLoggedOut = marksLoggedOut
  }

  /// The plan for what a logout found. Pure: the same state always gives the same plan.
  public static func make(_ state: LogoutState) -> LogoutPlan {
    if !state.hasSessionFile, state.rowStatus == nil || state.rowStatus == .loggedOut {
      return LogoutPlan(userID: state.userID, action: .alreadyLoggedOut)
    }
    if state.hasSessionFile, let problem = state.sessionProblem {
      let path = state.files.first ?? ""
      return LogoutPlan(userID: state.userID, action: .refuse(.damagedSessionFile(path: path, problem: problem)))
    }
    let isJSON = { (path: String) in path.hasSuffix(SessionSidecar.suffix) }
    return LogoutPlan(
      userID: state.userID, action: .logOut, backupReason: BackupReason.beforeLogout,
      backsUpSessionFile: state.hasSessionFile,
      removes: state.files.filter(isJSON) + state.files.filter { !isJSON($0) },
      marksLoggedOut: state.rowStatus != nil)
  }
}

/// What a logout did.
public struct LogoutResult: Sendable, Equatable {
  public enum Outcome: Sendable, Equatable {
    /// Backed up, files removed, row marked.
    case loggedOut
    /// Nothing was there to log out (a replay, or no session at all).
    case alreadyLoggedOut
    /// Stopped before removing anything.
    case refused(LogoutRefusal)
  }

  public var plan: LogoutPlan
  public var outcome: Outcome
  /// The proven "Before logout" archive (only when logged out).
  public var archive: ArchiveSummary?
  /// The files removed.
  public var removed: [String]
}

/// Ends a user's session on this host: a proven backup first, then the live files go and the row
/// says `logged_out`. The row, its session string and every backup are kept, so an administrator
/// can still restore the session.
public enum LogoutJob {
  /// Plans and carries out a logout under the deployment lock, so a cron backup never
  /// interleaves: a per-user backup ("Before logout"), proven; only then the session file, its
  /// sidecars and the seed's `.session.backup` removed; then the row marked `logged_out`.
  /// Idempotent: a replayed logout finds the user already logged out.
  /// - Throws: `JobError` when the lock is held, the database cannot be used, the backup fails
  ///   (nothing is removed then) or a file cannot be removed.
  public static func run(_ deployment: Deployment, options: LogoutOptions, logger: Logger) throws -> LogoutResult {
    let userID = options.userID
    do {
      let lock = try DeploymentLock.acquire(
        path: deployment.lockPath, command: options.lockCommand, wait: options.lockWait)
      defer { lock.release() }
      let database = try BotDatabase(
        path: deployment.databasePath, mode: .readWrite, busyTimeoutMS: deployment.busyTimeoutMS)
      defer { database.close() }
      let plan = LogoutPlan.make(try state(deployment, userID: userID, database: database))
      var result = LogoutResult(plan: plan, outcome: .alreadyLoggedOut, archive: nil, removed: [])
      switch plan.action {
      case .alreadyLoggedOut:
        return result
      case .refuse(let refusal):
        result.outcome = .refused(refusal)
        logger.warning("logout refused", metadata: ["user.id": "\(userID)", "reason": "\(refusal)"])
        return result
      case .logOut:
        break
      }
      // 1. The backup, proven before anything goes.
      var backupOptions = options.backup
      backupOptions.userID = userID
      backupOptions.reason = plan.backupReason ?? BackupReason.beforeLogout
      let backup = try BackupJob.run(deployment, options: backupOptions, logger: logger)
      guard let archive = backup.archives.first, archive.verification != .unknown, backup.failures.isEmpty else {
        result.outcome = .refused(.backupNotProven)
        logger.warning("logout refused: the backup is not proven", metadata: ["user.id": "\(userID)"])
        return result
      }
      // 2. The live files, then 3. the row.
      do {
        try deployment.removeSessionFiles(plan.removes)
        try CrashPoint.hit("logout.after-remove-files")
        if plan.marksLoggedOut { try database.markLoggedOut(userID: userID) }
      } catch let error as StoreError {
        throw JobError.store(context: "logout of user \(userID) (backup \(archive.id) is taken)", underlying: error)
      }
      result.outcome = .loggedOut
      result.archive = archive
      result.removed = plan.removes
      logger.notice(
        "logout done",
        metadata: [
          "user.id": "\(userID)", "archive.id": "\(archive.id)", "files.removed": "\(plan.removes.count)",
          "row.marked": "\(plan.marksLoggedOut)",
        ])
      // A JSON sidecar with no session file beside it is in no backup taken here: kept, and said.
      let sidecar = deployment.sidecarPath(userID: userID)
      if FileSystem.exists(sidecar), !plan.removes.contains(sidecar) {
        logger.warning(
          "logout left a sidecar without its session file; no backup taken here holds it: remove it by hand once it is not needed",
          metadata: ["user.id": "\(userID)", "file.path": "\(sidecar)"])
      }
      return result
    } catch let error as StoreError {
      throw JobError.store(context: "logout of user \(userID)", underlying: error)
    }
  }

  /// The plan a logout of `userID` would carry out now, without the lock and without changing
  /// anything (a dry run).
  /// - Throws: `JobError.store` when the database cannot be read.
  public static func plan(_ deployment: Deployment, userID: Int64) throws -> LogoutPlan {
    do {
      let database = try BotDatabase(
        path: deployment.databasePath, mode: .readOnly, busyTimeoutMS: deployment.busyTimeoutMS)
      defer { database.close() }
      return LogoutPlan.make(try state(deployment, userID: userID, database: database))
    } catch let error as StoreError {
      throw JobError.store(context: "logout of user \(userID)", underlying: error)
    }
  }

  /// What a logout (or hand-over) of `userID` finds: the live files (with the JSON sidecar when
  /// the session file is there), whether the session file reads, the row.
  /// - Throws: `StoreError.database` when the row cannot be read.
  static func state(_ deployment: Deployment, userID: Int64, database: BotDatabase) throws -> LogoutState {
    let path = deployment.sessionPath(userID: userID)
    var files = deployment.existingSessionFiles(userID: userID)
    let hasSessionFile = files.first == path
    // The pair is one unit: the backup before logout or hand-over archives the JSON with the
    // session file, so it leaves with it.
    let sidecar = deployment.sidecarPath(userID: userID)
    if hasSessionFile, FileSystem.exists(sidecar) { files.append(sidecar) }
    var problem: SessionProblem?
    if hasSessionFile {
      do { _ = try SessionFileInspector.inspect(path: path) } catch StoreError.session(_, let reason) {
        problem = reason
      }
    }
    let row = try database.botUserStatus(userID: userID)
    return LogoutState(
      userID: userID, files: files, hasSessionFile: hasSessionFile, sessionProblem: problem,
      rowStatus: row.hasRow ? row.status : nil)
  }
}

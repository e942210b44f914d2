import Foundation
import Logging
import Store

/// Options of `tgsess watch`. `init(config:…)` merges the config's `[watch]` and `[backup]`
/// sections with the flags, so the CLI and any other caller cannot drift.
public struct WatchOptions: Sendable {
  /// Scan once, archive and push what changed, and return (`--once`); else run until stopped.
  public var isOnce: Bool
  /// Quiet time after a user's last change before the user is judged (one login writes several
  /// times: the file, its journal, the database row).
  public var debounce: TimeInterval
  /// The longest a change waits while the user's files keep changing.
  public var maxDelay: TimeInterval
  /// How often the textfile, the status file and the ping are refreshed while nothing happens.
  public var heartbeat: TimeInterval
  /// Copy each new archive to every configured remote and verify it there.
  public var pushesOffsite: Bool
  /// The node_exporter textfile (`tgsess_watch.prom`) to keep current.
  public var metricsPath: String?
  /// A healthchecks-style URL: `/start` when watch starts, `/0` (or `/1` while archives or pushes
  /// are failing) every heartbeat, and the exit status when it stops.
  public var pingURL: String?
  public var pingTimeout: TimeInterval
  public var isEncrypted: Bool
  public var zstdLevel: Int
  /// With `isOnce`: how long queued work may wait for the deployment lock before the run ends
  /// with the lock-held status.
  public var lockWait: TimeInterval
  /// First and largest wait before retrying a user whose archive could not be written (a held
  /// lock, a full disk); the wait doubles per attempt, with jitter.
  public var retryBase: TimeInterval = 0.25
  public var retryCap: TimeInterval = 30
  /// The same for a remote that failed (the archive stays local meanwhile).
  public var pushRetryBase: TimeInterval = 2
  public var pushRetryCap: TimeInterval = 300
  /// After a verified push, the fleet heartbeat on that remote is rewritten at once when it
  /// gains or loses an identity (a user, a key), else at most this often.
  public var fleetHeartbeatInterval: TimeInterval = 60
  /// Attempts per remote in a `--once` run (a daemon never gives up).
  public var oncePushAttempts = 3
  /// Least time between two full reads of `user_sessions` while the database keeps changing.
  public var rowScanInterval: TimeInterval = 1
  /// How often the state file is rewritten while identities change.
  public var stateSaveInterval: TimeInterval = 30
  /// Threads of the start-up and overflow scan.
  public var scanWorkers = Parallel.defaultWorkers
  /// Where the start-up scan reports its progress (a TTY): its phases "session files", then
  /// "archives", which ends the scan when done reaches total. Nil reports nothing.
  public var startUpProgress: JobProgressHandler?

  /// The options from the configuration, overridden by what the caller passes.
  public init(
    config: Config, isOnce: Bool = false, metricsPath: String? = nil, pingURL: String? = nil,
    pingTimeout: TimeInterval = 10, lockWait: TimeInterval? = nil, retryBase: TimeInterval? = nil
  ) {
    let section = config.watch
    self.isOnce = isOnce
    debounce = Double(max(0, section?.debounceMS ?? 500)) / 1000
    maxDelay = max(debounce, Double(section?.maxDelayMS ?? 2000) / 1000)
    heartbeat = Double(max(1, section?.heartbeatSeconds ?? 30))
    pushesOffsite = section?.push ?? true
    self.metricsPath = metricsPath ?? section?.prometheus
    self.pingURL = pingURL
    self.pingTimeout = pingTimeout
    isEncrypted = config.backup?.encrypt ?? true
    zstdLevel = config.backup?.zstdLevel ?? 3
    self.lockWait = lockWait ?? TimeInterval(config.backup?.lockWait ?? 0)
    if let retryBase {
      self.retryBase = retryBase
      pushRetryBase = retryBase
      pushRetryCap = max(retryBase, 1)
    }
  }
}

/// One archive watch wrote.
public struct WatchArchive: Codable, Sendable, Equatable {
  public var userID: Int64
  public var archiveID: String
  public var reason: String
  /// What changed, in words (fingerprints, never a key).
  public var detail: String
  /// Auth-key fingerprint of the archived session file, when it has one.
  public var authKeyFingerprint: String?
  /// Seconds from the first event of the change to the proven archive (nil for changes found by a scan).
  public var secondsFromChange: Double?
}

/// How one remote stands at the end of a run.
public struct WatchRemoteStatus: Codable, Sendable, Equatable {
  public var remote: String
  /// Archives copied and verified there during the run.
  public var pushed: Int
  /// Archives still waiting for that remote.
  public var pending: Int
  public var lastError: String?
}

/// What `tgsess watch` did (the whole run, or the `--once` pass).
public struct WatchResult: Codable, Sendable, Equatable {
  /// Archives written (the most recent 1,000 of a long run).
  public var archives: [WatchArchive] = []
  public var archivesWritten = 0
  /// Users judged by the start-up (and any overflow) scan.
  public var usersScanned = 0
  /// Times a change turned out to be churn (no new identity).
  public var unchanged = 0
  /// Users whose session file is invalid or vanished (reported, never archived as an identity).
  public var problems: [UserFailure] = []
  /// Users whose archive could not be written yet (retried while watch runs).
  public var failures: [UserFailure] = []
  public var offsite: [WatchRemoteStatus] = []
  /// inotify events handled, queue overflows, full scans.
  public var events = 0
  public var overflows = 0
  public var scans = 0
  /// A `--once` run ended with work queued behind another run's deployment lock.
  public var isLocked = false
  /// The holder of the lock, when `isLocked`.
  public var lockHolder: String?
  public var durationMS = 0

  /// Some user or remote is not where it should be.
  public var isPartial: Bool {
    !failures.isEmpty || !problems.isEmpty || offsite.contains { $0.pending > 0 }
  }
}

/// `tgsess watch`: follows the deployment with inotify and archives every new session identity
/// within seconds, then copies it offsite.
public enum WatchJob {
  /// Runs watch until `stop` is requested (or, with `options.isOnce`, for one scan).
  ///
  /// At start, and after an inotify queue overflow, it reads every user's identity (the session
  /// file's format, dc and auth key; the `user_sessions` row's session string and api_id) and
  /// compares it with the user's newest per-user archive; then it follows changes to the session
  /// files and the database. A user whose identity is not archived gets a per-user backup
  /// ("New user", "New login", "Session changed") through `BackupJob` (which takes the
  /// deployment lock for the write and proves the archive), then a targeted push to each remote,
  /// verified by size and hash. A held lock, a full disk, a locked database or a remote that is
  /// down are retried with backoff; watch keeps running.
  /// - Returns: what the run did; a stop request finishes the archive in progress first.
  /// - Throws: `JobError` when watch cannot start (a directory to watch is missing, no age
  ///   recipient) or loses a watched directory (removed or replaced): then it must be restarted.
  public static func run(
    _ deployment: Deployment, options: WatchOptions, logger: Logger, stop: StopRequest
  ) throws -> WatchResult {
    let engine = try WatchEngine(deployment: deployment, options: options, logger: logger, stop: stop)
    return try engine.run()
  }
}

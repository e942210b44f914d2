import Foundation
import Logging
import Store

/// Options of `tgsess check`. The defaults live here, and `init(config:overrides:)` merges the
/// config's `[check]` section with what the command line sets, so the CLI and the bot runner
/// cannot drift apart.
public struct CheckOptions: Sendable {
  public static let defaultMaxBackupAge: TimeInterval = 7200
  public static let defaultMinFreeBytes: Int64 = 1024 * 1_048_576
  public static let defaultMaxDrillAge: TimeInterval = 8 * 86400
  public static let defaultProbeTimeout: TimeInterval = 30
  public static let defaultProbeRetryBase: Duration = .seconds(1)
  /// kurigram opens its files with `timeout=1`.
  public static let defaultBotBusyTimeoutMS = 1000

  /// integrity_check instead of quick_check, and decrypt-and-hash the newest archives.
  public var isDeep: Bool
  /// The newest full snapshot must be younger than this (seconds).
  public var maxBackupAge: TimeInterval
  /// Warn below this much free space on backups/ (bytes).
  public var minFreeBytes: Int64
  /// Warn when the newest successful drill is older (seconds), once a drill has run.
  public var maxDrillAge: TimeInterval
  /// Per-user archives verified by `--deep`, rotating day by day.
  public var deepSample: Int
  /// Record the results in the database (see `CheckRecord` for exactly what that writes).
  public var writesResults: Bool
  /// A live probe run per session: the command, then the session file as its argument.
  public var probeCommand: [String]?
  public var probeTimeout: TimeInterval
  /// The probe's first backoff ceiling (it doubles per retry, with full jitter).
  public var probeRetryBase: Duration
  public var now: Date
  /// The bot's own busy timeout on its database (`[check] bot_busy_timeout_ms`): check warns when
  /// copying the rollback-journal database in one step would hold the bot's writes longer.
  public var botBusyTimeoutMS = CheckOptions.defaultBotBusyTimeoutMS
  /// Session files changed less than this long before `now` are inspected but their inspection
  /// is not kept for the next run (`SessionVerdicts`); tests set 0.
  public var sessionVerdictRacyInterval: TimeInterval = 2

  public init(
    isDeep: Bool = false, maxBackupAge: TimeInterval = defaultMaxBackupAge, minFreeBytes: Int64 = defaultMinFreeBytes,
    maxDrillAge: TimeInterval = defaultMaxDrillAge, deepSample: Int = 20, writesResults: Bool = true,
    probeCommand: [String]? = nil, probeTimeout: TimeInterval = defaultProbeTimeout,
    probeRetryBase: Duration = defaultProbeRetryBase, now: Date = Date()
  ) {
    self.isDeep = isDeep
    self.maxBackupAge = maxBackupAge
    self.minFreeBytes = minFreeBytes
    self.maxDrillAge = maxDrillAge
    self.deepSample = deepSample
    self.writesResults = writesResults
    self.probeCommand = probeCommand
    self.probeTimeout = probeTimeout
    self.probeRetryBase = probeRetryBase
    self.now = now
  }

  /// What the command line sets; nil leaves the config's value, then the default.
  public struct Overrides: Sendable {
    public var isDeep: Bool?
    public var maxBackupAge: TimeInterval?
    public var minFreeBytes: Int64?
    public var maxDrillAge: TimeInterval?
    public var writesResults: Bool?
    public var probeCommand: [String]?
    public var probeTimeout: TimeInterval?
    public var probeRetryBase: Duration?

    public init(
      isDeep: Bool? = nil, maxBackupAge: TimeInterval? = nil, minFreeBytes: Int64? = nil,
      maxDrillAge: TimeInterval? = nil, writesResults: Bool? = nil, probeCommand: [String]? = nil,
      probeTimeout: TimeInterval? = nil, probeRetryBase: Duration? = nil
    ) {
      self.isDeep = isDeep
      self.maxBackupAge = maxBackupAge
      self.minFreeBytes = minFreeBytes
      self.maxDrillAge = maxDrillAge
      self.writesResults = writesResults
      self.probeCommand = probeCommand
      self.probeTimeout = probeTimeout
      self.probeRetryBase = probeRetryBase
    }
  }

  /// The options for a deployment configured by `config`: each of `overrides` wins over the
  /// config's `[check]` section (`max_age_seconds`, `min_free_mib`), which wins over the defaults.
  public init(config: Config, overrides: Overrides = Overrides(), now: Date = Date()) {
    let section = config.check
    self.init(
      isDeep: overrides.isDeep ?? false,
      maxBackupAge: overrides.maxBackupAge ?? section?.maxAgeSeconds.map(TimeInterval.init) ?? Self.defaultMaxBackupAge,
      minFreeBytes: overrides.minFreeBytes ?? section?.minFreeMiB.map { Int64($0) * 1_048_576 }
        ?? Self.defaultMinFreeBytes,
      maxDrillAge: overrides.maxDrillAge ?? Self.defaultMaxDrillAge,
      writesResults: overrides.writesResults ?? true, probeCommand: overrides.probeCommand,
      probeTimeout: overrides.probeTimeout ?? Self.defaultProbeTimeout,
      probeRetryBase: overrides.probeRetryBase ?? Self.defaultProbeRetryBase, now: now)
    botBusyTimeoutMS = section?.botBusyTimeoutMS ?? Self.defaultBotBusyTimeoutMS
  }
}

/// The outcome of `tgsess check`, a stable schema for `--json`.
public struct CheckResult: Codable, Sendable, Equatable {
  public struct Sessions: Codable, Sendable, Equatable {
    public var ok = 0
    /// Users in WARNING or UNKNOWN.
    public var warning = 0
    public var critical = 0
    /// Of `warning`, the users whose session files could not be looked at (the sessions directory
    /// could not be listed).
    public var unknown = 0

    public init(ok: Int = 0, warning: Int = 0, critical: Int = 0, unknown: Int = 0) {
      self.ok = ok
      self.warning = warning
      self.critical = critical
      self.unknown = unknown
    }
  }
  public var state: HealthState
  public var summary: String
  public var findings: [CheckFinding]
  public var sessions: Sessions
  public var users: Int
  public var lastFullBackupAt: Date?
  public var lastFullBackupAgeSeconds: Int?
  public var archives: Int
  /// Archives without a signature (`tgsess keys sign-existing` vouches for this host's own).
  public var unsignedArchives: Int
  /// Archives that fail authentication: someone wrote to backups/.
  public var rejectedArchives: Int
  public var freeBytes: Int64?
  public var durationSeconds: Double
  public var checkedAt: Date
  /// Whether the results were recorded in the database (`CheckRecord`).
  public var isRecorded: Bool
  /// When the newest successful drill ran (by the timer or by hand), from `backups/drills/`.
  public var newestDrillAt: Date?
  /// Each configured remote as of its last push, in config order.
  public var remotes: [RemoteSummary]
  /// With `--deep`: what was proven of the archives (decrypted, or ciphertext only), also at the
  /// end of `summary`.
  public var deep: String?

  /// Adds a finding made outside the job (the CLI's metrics file that could not be written) and
  /// derives the verdict again, so the text, the JSON and the exit status keep agreeing.
  public mutating func add(_ finding: CheckFinding) {
    findings.append(finding)
    (state, summary) = CheckJob.verdict(
      findings: findings, sessions: sessions, users: users, lastFullBackupAgeSeconds: lastFullBackupAgeSeconds,
      deep: deep)
  }
}

/// Health checks that monitoring can read.
///
/// One run reads the deployment once (`CheckContext.gather`), runs each check unit on what was
/// read (`DatabaseCheck`, `KeysCheck`, `SessionsCheck`, `BackupsCheck`, `OffsiteCheck`,
/// `DrillsCheck`, then `ProbeCheck`), and derives every user's state and the verdict from the
/// findings. Session files are opened read-only through SQLite and never changed. The one write
/// is the last step, `CheckRecord`: in one transaction, each user's `health`, `last_error` and
/// `last_checked_at`, and `status = 'revoked'` for a user whose live probe answered fatally twice.
/// It is skipped with `writesResults` off (`--no-write`), and for a database that fails
/// quick_check or whose schema is not current.
public enum CheckJob {
  /// Runs every check and records the results (see `CheckJob`).
  ///
  /// Never throws: everything found, including what could not be read or written, is a finding.
  /// - Parameter progress: where to report each phase's progress (a TTY); nil reports nothing.
  public static func run(
    _ deployment: Deployment, options: CheckOptions = CheckOptions(), logger: Logger,
    progress: JobProgressHandler? = nil
  ) -> CheckResult {
    let started = Date()
    let context = CheckContext.gather(deployment, options: options, progress: progress)
    var findings = findings(context)
    let states = userStates(findings: findings, context: context)
    var isRecorded = false
    if let record = CheckRecord.plan(context: context, findings: findings, states: states) {
      do {
        try record.write(to: deployment)
        isRecorded = true
      } catch {
        findings.append(
          CheckFinding(
            .databaseWrite, .warning,
            "the results were not recorded: \((error as? StoreError)?.errorDescription ?? "\(error)")",
            remedy: "the bot's /status shows the previous check's results until a check records again"))
      }
    }
    var result = result(
      context: context, findings: findings, states: states, isRecorded: isRecorded,
      duration: Date().timeIntervalSince(started))
    // The heartbeat on every remote, with this verdict (a check that records nothing writes none).
    if options.writesResults, !deployment.remotes.isEmpty {
      let inspected = context.inspections.compactMapValues { try? $0.file.get() }
      let failures = FleetHeartbeat.publish(
        deployment, remotes: deployment.remotes, check: (result.state, options.now), inspected: inspected,
        now: options.now, logger: logger)
      for failure in failures.values.sorted() {
        result.add(
          CheckFinding(
            .offsite, .warning, failure,
            remedy: "the fleet view (tgsess fleet) shows this host's last heartbeat until one is written"))
      }
    }
    let problems = findings.filter { $0.state != .ok }.count
    logger.notice(
      "check done",
      metadata: [
        "state": "\(result.state.rawValue)", "problems": "\(problems)", "users": "\(states.count)",
        "sessions.reused": "\(context.reusedInspections)",
      ])
    return result
  }

  /// The findings of every unit, in report order. The live probe runs last and skips the users
  /// the other units already found critical.
  public static func findings(_ context: CheckContext, probe: ProbeCheck.Runner = ProbeCheck.live)
    -> [CheckFinding]
  {
    var findings =
      DatabaseCheck.findings(context) + KeysCheck.findings(context) + SessionsCheck.findings(context)
      + BackupsCheck.findings(context) + OffsiteCheck.findings(context) + DrillsCheck.findings(context)
      + WatchCheck.findings(context)
    let critical = Set(findings.filter { $0.state == .critical }.compactMap(\.userID))
    findings += ProbeCheck.findings(context, skipping: critical, runner: probe)
    return findings
  }

  /// Each user's state: the worst of their findings; UNKNOWN at best for a live user whose session
  /// file could not be looked at (the sessions directory could not be listed); OK for a user who
  /// logged out and has no file.
  public static func userStates(findings: [CheckFinding], context: CheckContext) -> [Int64: HealthState] {
    var states = Dictionary(uniqueKeysWithValues: context.users.map { ($0, HealthState.ok) })
    if case .failure = context.sessionFiles {
      for user in context.liveUsers { states[user] = .unknown }
    }
    for finding in findings {
      guard let user = finding.userID, let state = states[user] else { continue }
      states[user] = max(state, finding.state)
    }
    return states
  }

  /// The result: the counts, the verdict and the facts monitoring graphs.
  static func result(
    context: CheckContext, findings: [CheckFinding], states: [Int64: HealthState], isRecorded: Bool,
    duration: TimeInterval
  ) -> CheckResult {
    var sessions = CheckResult.Sessions()
    for state in states.values {
      switch state {
      case .ok: sessions.ok += 1
      case .warning: sessions.warning += 1
      case .unknown:
        sessions.warning += 1
        sessions.unknown += 1
      case .critical: sessions.critical += 1
      }
    }
    let archives = (try? context.archives.get()) ?? []
    let newestFull = BackupsCheck.newestFull(context.signedArchives)
    let ageSeconds = newestFull.map { Int(context.options.now.timeIntervalSince($0.createdAt)) }
    let deep = BackupsCheck.deepStatement(context)
    let (state, summary) = verdict(
      findings: findings, sessions: sessions, users: states.count, lastFullBackupAgeSeconds: ageSeconds, deep: deep)
    return CheckResult(
      state: state, summary: summary, findings: findings, sessions: sessions, users: states.count,
      lastFullBackupAt: newestFull?.createdAt, lastFullBackupAgeSeconds: ageSeconds, archives: archives.count,
      unsignedArchives: context.unsignedArchives.count, rejectedArchives: context.rejectedArchives.count,
      freeBytes: context.freeBytes, durationSeconds: duration, checkedAt: context.options.now, isRecorded: isRecorded,
      newestDrillAt: context.newestDrill, remotes: OffsiteCheck.summaries(context), deep: deep)
  }

  /// The verdict is the worst finding's state. The summary line (what Nagios shows) names the
  /// worst finding, a deployment-wide one before any single user's: a missing key or an
  /// unreadable directory explains the rest. With `deep`, the line ends with what `--deep`
  /// proved, so an OK never hides that nothing was decrypted.
  public static func verdict(
    findings: [CheckFinding], sessions: CheckResult.Sessions, users: Int, lastFullBackupAgeSeconds: Int?,
    deep: String? = nil
  ) -> (state: HealthState, summary: String) {
    let state = findings.map(\.state).max() ?? .ok
    let deepSuffix = deep.map { "; " + $0 } ?? ""
    guard state != .ok else {
      let age = lastFullBackupAgeSeconds.map { duration(TimeInterval($0)) + " old" } ?? "missing"
      return (.ok, "\(users) sessions ok, newest full snapshot \(age)" + deepSuffix)
    }
    let worst = findings.filter { $0.state == state }
    let headline = worst.first { $0.userID == nil } ?? worst[0]
    let problems = findings.filter { $0.state != .ok }.count
    return (
      state,
      "\(problems) problem(s): \(sessions.critical) session(s) critical, \(sessions.warning) warning"
        + (sessions.unknown > 0 ? " (\(sessions.unknown) unknown)" : "") + "; \(headline.message)" + deepSuffix
    )
  }

  /// `3h 12m`, `45s`.
  static func duration(_ seconds: TimeInterval) -> String {
    let total = Int(seconds)
    if total >= 86400 { return "\(total / 86400)d \(total % 86400 / 3600)h" }
    if total >= 3600 { return "\(total / 3600)h \(total % 3600 / 60)m" }
    if total >= 60 { return "\(total / 60)m \(total % 60)s" }
    return "\(total)s"
  }
}

/// Everything `check` writes, planned as a value from the findings and written in one step: for
/// every user, `health` (their state), `last_error` (the reasons found, without remedies, for the
/// bot to put in words) and `last_checked_at`; and for a user with a confirmed fatal probe answer,
/// `status = 'revoked'`. Nothing else in check writes.
public struct CheckRecord: Sendable, Equatable {
  public var entries: [BotDatabase.CheckRecordEntry]
  public var checkedAt: Date

  /// The record of a run, or nil when nothing may be written (`--no-write`, a database that
  /// failed quick_check or could not be read, a schema that is not current).
  public static func plan(context: CheckContext, findings: [CheckFinding], states: [Int64: HealthState])
    -> CheckRecord?
  {
    guard context.canRecord else { return nil }
    let reasons = Dictionary(grouping: findings.filter { $0.userID != nil && $0.state != .ok }, by: { $0.userID! })
    let dead = ProbeCheck.confirmedDead(findings)
    let entries = states.keys.sorted().map { user in
      BotDatabase.CheckRecordEntry(
        userID: user, health: states[user] ?? .unknown,
        lastError: reasons[user].map { $0.map(\.reason).joined(separator: "; ") },
        marksRevoked: dead.contains(user))
    }
    return CheckRecord(entries: entries, checkedAt: context.options.now)
  }

  /// Writes the record in one transaction, unless the database changed under the check to a
  /// schema this tgsess does not write (a newer tgsess migrated it meanwhile).
  /// - Throws: `StoreError`.
  public func write(to deployment: Deployment) throws {
    let database = try BotDatabase(
      path: deployment.databasePath, mode: .readWrite, busyTimeoutMS: deployment.busyTimeoutMS)
    defer { database.close() }
    guard try database.schemaStatus().isCurrent else { return }
    try database.recordCheck(entries, at: checkedAt)
  }
}

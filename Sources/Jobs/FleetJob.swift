import Foundation
import Logging
import Store

/// Options of `tgsess fleet` and of restore's cross-host guard.
public struct FleetOptions: Sendable {
  /// How recently a session file must have been written, before its host's heartbeat, to count
  /// as in use there (15 minutes).
  public static let defaultWindow: TimeInterval = 900

  /// The configured remote to read (default: the first one).
  public var remote: String?
  /// An rclone path to read instead of a configured remote (a monitoring box with no deployment).
  public var remotePath: String?
  public var window: TimeInterval
  /// A heartbeat older than this is CRITICAL; a full snapshot older than this is a WARNING.
  public var maxAge: TimeInterval
  public var now: Date

  public init(
    remote: String? = nil, remotePath: String? = nil, window: TimeInterval = defaultWindow,
    maxAge: TimeInterval = CheckOptions.defaultMaxBackupAge, now: Date = Date()
  ) {
    self.remote = remote
    self.remotePath = remotePath
    self.window = window
    self.maxAge = maxAge
    self.now = now
  }

  /// The options for a deployment configured by `config`: `maxAge` from `[check] max_age_seconds`
  /// unless given.
  public init(
    config: Config, remote: String? = nil, remotePath: String? = nil, window: TimeInterval? = nil,
    maxAge: TimeInterval? = nil, now: Date = Date()
  ) {
    self.init(
      remote: remote, remotePath: remotePath, window: window ?? Self.defaultWindow,
      maxAge: maxAge ?? config.check?.maxAgeSeconds.map(TimeInterval.init) ?? CheckOptions.defaultMaxBackupAge,
      now: now)
  }
}

/// One host as the fleet view shows it.
public struct FleetHost: Codable, Sendable, Equatable {
  public var deploymentName: String
  public var host: String
  public var toolVersion: String
  public var heartbeatAt: Date
  public var heartbeatAgeSeconds: Int
  public var lastFullBackupAt: Date?
  public var lastFullBackupAgeSeconds: Int?
  public var users: Int
  public var checkState: HealthState?
  public var checkedAt: Date?
  /// The worst finding about this host.
  public var state: HealthState
}

/// What the fleet view found.
public struct FleetFinding: Codable, Sendable, Equatable, Error {
  public enum Kind: String, Codable, Sendable {
    /// A host's heartbeat is older than max_age.
    case staleHeartbeat = "stale-heartbeat"
    /// A state file could not be read (garbled, hostile, too large, a newer format).
    case badStateFile = "bad-state-file"
    /// The same auth key was written on two hosts within the window (AUTH_KEY_DUPLICATED ahead).
    case duplicateKey = "duplicate-key"
    /// The same auth key sits on two hosts, used on at most one of them.
    case dormantCopy = "dormant-copy"
    /// The same user under different keys on two hosts.
    case differentKeys = "different-keys"
    /// A host's own check or backups are not healthy.
    case hostHealth = "host-health"
    /// The remote holds no heartbeat at all.
    case noHosts = "no-hosts"
  }
  public var kind: Kind
  public var state: HealthState
  public var message: String
  public var userID: Int64?
  /// The deployments the finding is about.
  public var deployments: [String]

  public init(_ kind: Kind, _ state: HealthState, _ message: String, userID: Int64? = nil, deployments: [String] = []) {
    self.kind = kind
    self.state = state
    self.message = message
    self.userID = userID
    self.deployments = deployments
  }
}

/// The fleet view: every host on a shared remote and what is wrong across them.
public struct FleetReport: Codable, Sendable, Equatable {
  public var state: HealthState
  public var summary: String
  /// The remote path read.
  public var remote: String
  public var hosts: [FleetHost]
  public var findings: [FleetFinding]
  public var users: Int
  public var checkedAt: Date
  public var windowSeconds: Int
  public var maxAgeSeconds: Int
}

/// A user the fleet shows in use on another host (what restore's cross-host guard refuses on).
public struct LiveElsewhere: Sendable, Equatable {
  public var userID: Int64
  public var deploymentName: String
  public var host: String
  public var sessionWrittenAt: Date
  public var heartbeatAt: Date
  public var authKeyFingerprint: String?
}

/// Reads every deployment's heartbeat from a shared remote (no decryption key needed) and judges
/// the fleet: stale hosts, unreadable state files, and the same session on two hosts.
public enum FleetJob {
  /// The remote `options` name.
  /// - Throws: `JobError.usage` when none is configured, `StoreError.config` for an unknown name.
  static func remote(_ deployment: Deployment, options: FleetOptions) throws -> RcloneRemote {
    if let path = options.remotePath {
      return RcloneRemote(name: "remote", path: path, prefix: FleetHeartbeat.deploymentName(deployment))
    }
    if let name = options.remote { return try deployment.remote(named: name) }
    guard let first = deployment.remotes.first else {
      throw JobError.usage(
        "no remote configured; add a [[remotes]] table (name, path) to \(deployment.configPath ?? deployment.root + "/tgsess.toml") or pass --remote-path. Try: tgsess fleet --remote-path s3remote:bucket/fleet"
      )
    }
    return first
  }

  /// Reads the remote's state files into `states` (readable ones) and `findings` (one per file
  /// that is not).
  static func read(_ remote: RcloneRemote, scratch: String) throws -> (states: [HostState], findings: [FleetFinding]) {
    let entries = try remote.fetchHostStates(into: scratch).entries
    // Two files decoded at once: decoding is the CPU-bound part, and two bound the memory. The
    // downloaded copies go with the scratch directory.
    let outcomes = try Parallel.map(count: entries.count, workers: min(2, Parallel.defaultWorkers)) {
      index -> Result<HostState, FleetFinding> in
      let entry = entries[index]
      let name = printable(entry.name)
      guard let local = entry.localPath else {
        return .failure(
          FleetFinding(
            .badStateFile, .unknown,
            "\(name): \(entry.byteCount) bytes, more than the \(HostState.maxByteCount) a state file may have; its host is not judged",
            deployments: [printable(entry.directoryName)]))
      }
      do {
        let data = try FileSystem.read(local)
        return .success(try HostState.decode(data, name: name, directoryName: entry.directoryName))
      } catch {
        let reason: String
        if case .invalid(_, let why, _) = error as? StoreError {
          reason = why
        } else {
          reason = FleetHeartbeat.describe(error)
        }
        return .failure(
          FleetFinding(
            .badStateFile, .unknown, "\(name): \(reason); its host is not judged",
            deployments: [printable(entry.directoryName)]))
      }
    }
    var states: [HostState] = []
    var findings: [FleetFinding] = []
    for outcome in outcomes {
      switch outcome {
      case .success(let state): states.append(state)
      case .failure(let finding): findings.append(finding)
      }
    }
    return (states, findings)
  }

  /// `tgsess fleet`: reads every deployment's heartbeat from the remote and judges the fleet.
  /// - Throws: `JobError` when the remote cannot be named, listed or read.
  public static func run(_ deployment: Deployment, options: FleetOptions, logger: Logger) throws -> FleetReport {
    do {
      let remote = try remote(deployment, options: options)
      let scratch = try ScratchDirectory(prefix: "tgsess-fleet")
      defer { scratch.remove() }
      let (states, findings) = try read(remote, scratch: scratch.path)
      let report = FleetReport.make(states: states, findings: findings, remote: remote.path, options: options)
      logger.notice(
        "fleet done",
        metadata: ["state": "\(report.state.rawValue)", "hosts": "\(report.hosts.count)", "users": "\(report.users)"])
      return report
    } catch let error as StoreError {
      throw JobError.store(context: "fleet", underlying: error)
    }
  }

  /// The users of `userIDs` that the fleet shows in use on another deployment than this one,
  /// on any configured remote (see `FleetReport.isLive`). A remote that cannot be read is skipped
  /// and named in `unreadable`.
  public static func liveElsewhere(
    _ deployment: Deployment, userIDs: Set<Int64>, window: TimeInterval = FleetOptions.defaultWindow,
    now: Date = Date()
  ) -> (live: [LiveElsewhere], unreadable: [String]) {
    let ownName = FleetHeartbeat.deploymentName(deployment)
    let maxAge = deployment.config.check?.maxAgeSeconds.map(TimeInterval.init) ?? CheckOptions.defaultMaxBackupAge
    var live: [LiveElsewhere] = []
    var unreadable: [String] = []
    var seen = Set<String>()
    for remote in deployment.remotes where seen.insert(remote.path).inserted {
      do {
        let scratch = try ScratchDirectory(prefix: "tgsess-fleet")
        defer { scratch.remove() }
        for state in try read(remote, scratch: scratch.path).states where state.deploymentName != ownName {
          guard now.timeIntervalSince(state.writtenAt) <= maxAge else { continue }
          for user in state.users where userIDs.contains(user.id) {
            guard let written = user.sessionWrittenAt,
              FleetReport.isLive(written: written, heartbeat: state.writtenAt, window: window)
            else { continue }
            live.append(
              LiveElsewhere(
                userID: user.id, deploymentName: state.deploymentName, host: state.host, sessionWrittenAt: written,
                heartbeatAt: state.writtenAt, authKeyFingerprint: user.authKeyFingerprint))
          }
        }
      } catch {
        unreadable.append("remote \(remote.name): \(FleetHeartbeat.describe(error))")
      }
    }
    return (live.sorted { ($0.userID, $0.deploymentName) < ($1.userID, $1.deploymentName) }, unreadable)
  }

  /// `text` with control characters shown as `?` (names from a remote are not trusted).
  static func printable(_ text: String) -> String {
    String(
      String.UnicodeScalarView(
        text.unicodeScalars.prefix(300).map { $0.properties.generalCategory == .control || $0 == "\u{7f}" ? "?" : $0 }))
  }
}

extension FleetReport {
  /// Whether a session file written at `written` counts as in use on a host whose heartbeat was
  /// written at `heartbeat`: it was written within `window` before that heartbeat (or after it).
  public static func isLive(written: Date, heartbeat: Date, window: TimeInterval) -> Bool {
    written >= heartbeat.addingTimeInterval(-window)
  }

  /// Judges the fleet from the readable states and the findings about unreadable ones. Pure: the
  /// same input always gives the same report.
  public static func make(states: [HostState], findings: [FleetFinding], remote: String, options: FleetOptions)
    -> FleetReport
  {
    var findings = findings
    let now = options.now
    // Several files claiming one deployment cannot happen (one directory each); sort for output.
    let states = states.sorted { $0.deploymentName < $1.deploymentName }
    var hosts: [FleetHost] = []
    var isFresh: [Bool] = []
    // One flat row per (user, host), sorted by user: most users sit on one host.
    var rows: [(user: Int64, host: Int32, key: String?, written: Double)] = []
    rows.reserveCapacity(states.reduce(0) { $0 + $1.users.count })
    for (index, state) in states.enumerated() {
      let name = FleetJob.printable(state.deploymentName)
      let heartbeatAge = now.timeIntervalSince(state.writtenAt)
      var hostState = HealthState.ok
      if heartbeatAge > options.maxAge {
        hostState = .critical
        findings.append(
          FleetFinding(
            .staleHeartbeat, .critical,
            "\(name): last heartbeat \(CheckJob.duration(heartbeatAge)) ago, more than \(Int(options.maxAge)) s; the host or its pushes stopped",
            deployments: [state.deploymentName]))
      }
      let backupAge = state.lastFullBackupAt.map { now.timeIntervalSince($0) }
      if let backupAge, backupAge > options.maxAge {
        hostState = max(hostState, .warning)
        findings.append(
          FleetFinding(
            .hostHealth, .warning, "\(name): newest full snapshot \(CheckJob.duration(backupAge)) old",
            deployments: [state.deploymentName]))
      } else if backupAge == nil {
        hostState = max(hostState, .warning)
        findings.append(
          FleetFinding(.hostHealth, .warning, "\(name): no full snapshot yet", deployments: [state.deploymentName]))
      }
      if let check = state.checkState, check != .ok {
        hostState = max(hostState, .warning)
        findings.append(
          FleetFinding(
            .hostHealth, .warning, "\(name): its last check was \(check.rawValue.uppercased()); run tgsess check there",
            deployments: [state.deploymentName]))
      }
      hosts.append(
        FleetHost(
          deploymentName: name, host: FleetJob.printable(state.host),
          toolVersion: FleetJob.printable(state.toolVersion),
          heartbeatAt: state.writtenAt, heartbeatAgeSeconds: Int(heartbeatAge),
          lastFullBackupAt: state.lastFullBackupAt,
          lastFullBackupAgeSeconds: backupAge.map { Int($0) }, users: state.users.count, checkState: state.checkState,
          checkedAt: state.checkedAt, state: hostState))
      isFresh.append(heartbeatAge <= options.maxAge)
      for user in state.users {
        rows.append((user.id, Int32(index), user.authKeyFingerprint, user.sessionWrittenAt?.timeIntervalSince1970 ?? 0))
      }
    }
    rows.sort { ($0.user, $0.host) < ($1.user, $1.host) }
    let formatter = ISO8601DateFormatter()
    func when(_ seconds: Double) -> String { formatter.string(from: Date(timeIntervalSince1970: seconds)) }
    var start = 0
    var users = 0
    while start < rows.count {
      var end = start + 1
      while end < rows.count, rows[end].user == rows[start].user { end += 1 }
      users += 1
      if end - start > 1 {
        findings += judge(rows[start..<end], states: states, isFresh: isFresh, window: options.window, when: when)
      }
      start = end
    }
    if states.isEmpty, findings.isEmpty {
      findings.append(
        FleetFinding(
          .noHosts, .unknown,
          "no host has written a heartbeat to \(remote) yet; run tgsess push or tgsess check on each host"))
    }
    let state = findings.map(\.state).max() ?? .ok
    for finding in findings {
      for name in finding.deployments {
        if let index = hosts.firstIndex(where: { $0.deploymentName == name }) {
          hosts[index].state = max(hosts[index].state, finding.state)
        }
      }
    }
    let summary: String
    if state == .ok {
      summary = "\(hosts.count) host(s), \(users) user(s), every heartbeat fresh, no session on two hosts"
    } else {
      let worst = findings.filter { $0.state == state }
      let problems = findings.filter { $0.state != .ok }.count
      summary = worst[0].message + (problems > 1 ? " (and \(problems - 1) more finding(s))" : "")
    }
    return FleetReport(
      state: state, summary: summary, remote: remote, hosts: hosts, findings: findings, users: users, checkedAt: now,
      windowSeconds: Int(options.window), maxAgeSeconds: Int(options.maxAge))
  }

  /// The findings about one user present on several hosts.
  private static func judge(
    _ rows: ArraySlice<(user: Int64, host: Int32, key: String?, written: Double)>, states: [HostState],
    isFresh: [Bool], window: TimeInterval, when: (Double) -> String
  ) -> [FleetFinding] {
    let userID = rows.first!.user
    func name(_ row: (user: Int64, host: Int32, key: String?, written: Double)) -> String {
      FleetJob.printable(states[Int(row.host)].deploymentName)
    }
    func isLive(_ row: (user: Int64, host: Int32, key: String?, written: Double)) -> Bool {
      isFresh[Int(row.host)]
        && FleetReport.isLive(
          written: Date(timeIntervalSince1970: row.written), heartbeat: states[Int(row.host)].writtenAt, window: window)
    }
    var findings: [FleetFinding] = []
    let byKey = Dictionary(grouping: rows.filter { $0.key != nil }, by: { $0.key! })
    for key in byKey.keys.sorted() {
      let holders = byKey[key]!
      guard holders.count > 1 else { continue }
      let live = holders.filter(isLive)
      let names = holders.map(name)
      let writes = holders.map { "last write on \(name($0)) \(when($0.written))" }.joined(separator: ", ")
      if live.count > 1 {
        let liveNames = live.map(name)
        findings.append(
          FleetFinding(
            .duplicateKey, .critical,
            "user \(userID): the same key is in use on \(list(liveNames)); Telegram will revoke it (AUTH_KEY_DUPLICATED) (\(writes)); stop all but one (tgsess handover --user \(userID) on the host giving it up)",
            userID: userID, deployments: names))
      } else {
        findings.append(
          FleetFinding(
            .dormantCopy, .warning,
            "user \(userID): the same key sits on \(list(names)) (\(writes)); if a second bot starts it, Telegram revokes it (hand it over with tgsess handover --user \(userID))",
            userID: userID, deployments: names))
      }
    }
    if byKey.count > 1 {
      let names = rows.map(name)
      let keys = byKey.keys.sorted().map { key in "\(key) on \(list(byKey[key]!.map(name)))" }
      findings.append(
        FleetFinding(
          .differentKeys, .warning,
          "user \(userID) is logged in on \(list(Array(Set(names)).sorted())) under different keys (\(keys.joined(separator: "; "))); one of the hosts should hand it over or log out",
          userID: userID, deployments: names))
    }
    return findings
  }

  private static func list(_ names: [String]) -> String {
    guard names.count > 1 else { return names.first ?? "" }
    return names.dropLast().joined(separator: ", ") + " and " + names.last!
  }
}

extension FleetReport {
  /// The fleet's metrics (per deployment, never per user).
  public var metrics: MetricsFile {
    var file = MetricsFile()
    file.gauge("tgsess_fleet_hosts", Double(hosts.count), help: "Deployments with a readable heartbeat on the remote.")
    file.gauge("tgsess_fleet_users", Double(users), help: "Distinct users across the fleet.")
    file.gauge(
      "tgsess_fleet_duplicate_keys", Double(findings.filter { $0.kind == .duplicateKey }.count),
      help: "Users whose auth key is in use on two hosts at once (AUTH_KEY_DUPLICATED ahead).")
    file.gauge(
      "tgsess_fleet_bad_state_files", Double(findings.filter { $0.kind == .badStateFile }.count),
      help: "State files on the remote that could not be read.")
    file.gauge(
      "tgsess_fleet_state", Double(state.exitCode), help: "The fleet's state: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.")
    for host in hosts {
      let labels = [("deployment", host.deploymentName)]
      file.gauge(
        "tgsess_fleet_heartbeat_timestamp_seconds", host.heartbeatAt.timeIntervalSince1970,
        help: "Unix time of the deployment's last heartbeat.", labels: labels)
      if let backup = host.lastFullBackupAt {
        file.gauge(
          "tgsess_fleet_last_full_backup_timestamp_seconds", backup.timeIntervalSince1970,
          help: "Unix time of the deployment's newest full snapshot.", labels: labels)
      }
      file.gauge("tgsess_fleet_host_users", Double(host.users), help: "Users with a session file.", labels: labels)
    }
    return file
  }

  /// One Nagios line with perfdata.
  public var nagiosLine: String {
    let duplicates = findings.filter { $0.kind == .duplicateKey }.count
    return
      "TGSESS \(state.rawValue.uppercased()) - \(summary) | hosts=\(hosts.count);;;0 users=\(users);;;0 duplicate_keys=\(duplicates);;1;0"
  }
}

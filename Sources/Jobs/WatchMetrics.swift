import Foundation
import Store

/// Watch's counters and gauges, rendered as the node_exporter textfile `tgsess_watch.prom`
/// (no per-user labels).
struct WatchMetrics {
  var startedAt = Date()
  var events = 0
  var overflows = 0
  var scans = 0
  var lastScanSeconds: Double?
  var archivesByReason: [String: Int] = [:]
  var unchanged = 0
  var problemReports = 0
  var currentProblems = 0
  var archiveFailures = 0
  var queueLength = 0
  var pushQueueLength = 0
  var lastArchiveAt: Date?
  /// The last moment nothing was left to archive or copy.
  var lastSuccessAt: Date?
  var lastChangeToArchive: Double?
  var changeToArchiveSum = 0.0
  var changeToArchiveCount = 0
  struct Remote {
    var isOK = true
    var pushed = 0
    var failures = 0
    var lastChangeToRemote: Double?
    var changeToRemoteSum = 0.0
    var changeToRemoteCount = 0
    var lastSuccessAt: Date?
  }
  var remotes: [String: Remote] = [:]

  mutating func recordArchive(reason: String, secondsFromChange: Double?, at date: Date) {
    archivesByReason[reason, default: 0] += 1
    lastArchiveAt = date
    if let seconds = secondsFromChange {
      lastChangeToArchive = seconds
      changeToArchiveSum += seconds
      changeToArchiveCount += 1
    }
  }

  mutating func recordPush(remote: String, isOK: Bool, archives: Int, secondsFromChange: [Double], at date: Date) {
    var entry = remotes[remote] ?? Remote()
    entry.isOK = isOK
    if isOK {
      entry.pushed += archives
      entry.lastSuccessAt = date
      for seconds in secondsFromChange {
        entry.lastChangeToRemote = seconds
        entry.changeToRemoteSum += seconds
        entry.changeToRemoteCount += 1
      }
    } else {
      entry.failures += 1
    }
    remotes[remote] = entry
  }

  var archivesWritten: Int { archivesByReason.values.reduce(0, +) }

  /// The textfile.
  func file(now: Date) -> MetricsFile {
    var file = MetricsFile()
    file.gauge("tgsess_watch_up", 1, help: "1 while tgsess watch runs (the file is rewritten every heartbeat).")
    file.gauge(
      "tgsess_watch_heartbeat_timestamp_seconds", now.timeIntervalSince1970,
      help: "Unix time this file was written; alert when it stops moving.")
    file.gauge(
      "tgsess_watch_started_timestamp_seconds", startedAt.timeIntervalSince1970, help: "Unix time watch started.")
    if let lastSuccessAt {
      file.gauge(
        "tgsess_watch_last_success_timestamp_seconds", lastSuccessAt.timeIntervalSince1970,
        help: "Last moment every identity watch saw was archived and copied to every remote.")
    }
    if let lastArchiveAt {
      file.gauge(
        "tgsess_watch_last_archive_timestamp_seconds", lastArchiveAt.timeIntervalSince1970,
        help: "Unix time of the last archive watch wrote.")
    }
    file.gauge("tgsess_watch_events_total", Double(events), help: "inotify events handled since watch started.")
    file.gauge(
      "tgsess_watch_overflows_total", Double(overflows), help: "inotify queue overflows (each followed by a rescan).")
    file.gauge("tgsess_watch_scans_total", Double(scans), help: "Full identity scans (start-up and overflows).")
    if let lastScanSeconds {
      file.gauge("tgsess_watch_last_scan_duration_seconds", lastScanSeconds, help: "How long the last full scan took.")
    }
    let reasons = archivesByReason.isEmpty ? [WatchReason.newLogin: 0] : archivesByReason
    for (reason, count) in reasons.sorted(by: { $0.key < $1.key }) {
      file.gauge(
        "tgsess_watch_identities_archived_total", Double(count), help: "Identities archived since watch started.",
        labels: [("reason", reason)])
    }
    file.gauge(
      "tgsess_watch_churn_total", Double(unchanged),
      help: "Changes judged to be churn (entities, update state): no archive.")
    file.gauge(
      "tgsess_watch_invalid_sessions", Double(currentProblems),
      help: "Users whose session file is invalid or vanished now (never archived as an identity).")
    file.gauge(
      "tgsess_watch_invalid_reports_total", Double(problemReports),
      help: "Invalid or vanished session files reported since watch started.")
    file.gauge(
      "tgsess_watch_archive_failures_total", Double(archiveFailures),
      help: "Archive attempts that failed and were queued again (not counting a held lock).")
    file.gauge("tgsess_watch_queue_length", Double(queueLength), help: "Users waiting to be judged or archived.")
    file.gauge(
      "tgsess_watch_push_queue_length", Double(pushQueueLength), help: "Archive copies waiting for a remote.")
    if let lastChangeToArchive {
      file.gauge(
        "tgsess_watch_change_to_archive_seconds", lastChangeToArchive,
        help: "Seconds from the first file change to the proven local archive, last archive.")
    }
    file.gauge(
      "tgsess_watch_change_to_archive_seconds_sum", changeToArchiveSum,
      help: "Sum of the seconds from file change to proven archive.")
    file.gauge(
      "tgsess_watch_change_to_archive_seconds_count", Double(changeToArchiveCount),
      help: "Archives counted in the sum.")
    for (name, remote) in remotes.sorted(by: { $0.key < $1.key }) {
      let labels = [("remote", name)]
      file.gauge(
        "tgsess_watch_remote_ok", remote.isOK ? 1 : 0, help: "1 when the last copy to the remote verified.",
        labels: labels)
      file.gauge(
        "tgsess_watch_remote_pushed_total", Double(remote.pushed), help: "Archives copied and verified.",
        labels: labels)
      file.gauge(
        "tgsess_watch_remote_failures_total", Double(remote.failures), help: "Failed copy attempts.", labels: labels)
      if let seconds = remote.lastChangeToRemote {
        file.gauge(
          "tgsess_watch_change_to_remote_seconds", seconds,
          help: "Seconds from the first file change to the copy verified on the remote, last archive.",
          labels: labels)
      }
      file.gauge(
        "tgsess_watch_change_to_remote_seconds_sum", remote.changeToRemoteSum,
        help: "Sum of the seconds from file change to verified remote copy.", labels: labels)
      file.gauge(
        "tgsess_watch_change_to_remote_seconds_count", Double(remote.changeToRemoteCount),
        help: "Copies counted in the sum.", labels: labels)
    }
    return file
  }
}

/// How watch stands, as `check` (or an operator) reads it from outside the process.
public struct WatchStatus: Sendable, Equatable {
  /// The config says `[watch] enabled = true`.
  public var isEnabled: Bool
  /// The textfile the config names (`[watch] prometheus`), if any.
  public var textfilePath: String?
  /// Seconds since the textfile was written; nil when there is none (or none configured).
  public var textfileAge: TimeInterval?
  /// Seconds since watch last wrote its status file (`<backups>/watch/status.json`); nil when none.
  public var heartbeatAge: TimeInterval?
  /// The last moment every identity watch saw was archived and copied (from the status file).
  public var lastSuccess: Date?
  /// The heartbeat interval watch runs with (the config's, else the default).
  public var heartbeat: TimeInterval

  /// Whether watch should be running but has not written its textfile (or, without one, its
  /// status file) for more than `factor` heartbeats.
  public func isStale(factor: Double = 4) -> Bool {
    guard isEnabled else { return false }
    guard let age = textfileAge ?? heartbeatAge else { return true }
    return age > heartbeat * factor
  }

  /// Reads watch's status of `deployment` (no lock, nothing written).
  public static func read(_ deployment: Deployment, now: Date = Date()) -> WatchStatus {
    let section = deployment.config.watch
    let textfile = section?.prometheus.map { Deployment.absolute($0, relativeTo: deployment.root) }
    let status = WatchStatusFile.load(deployment)
    return WatchStatus(
      isEnabled: section?.enabled ?? false, textfilePath: textfile,
      textfileAge: textfile.flatMap { try? FileSystem.age(of: $0) },
      heartbeatAge: status.map { now.timeIntervalSince($0.heartbeatAt) }, lastSuccess: status?.lastSuccessAt,
      heartbeat: Double(max(1, section?.heartbeatSeconds ?? 30)))
  }
}

/// `<backups>/watch/status.json`, rewritten every heartbeat: the running watch's pid and times.
struct WatchStatusFile: Codable, Equatable {
  var pid: Int32
  var startedAt: Date
  var heartbeatAt: Date
  var lastSuccessAt: Date?
  var queueLength: Int
  var pushQueueLength: Int

  enum CodingKeys: String, CodingKey {
    case pid
    case startedAt = "started_at"
    case heartbeatAt = "heartbeat_at"
    case lastSuccessAt = "last_success_at"
    case queueLength = "queue_length"
    case pushQueueLength = "push_queue_length"
  }

  static func path(_ deployment: Deployment) -> String { deployment.backupsDirectory + "/watch/status.json" }

  static func load(_ deployment: Deployment) -> WatchStatusFile? {
    let decoder = JSONDecoder()
    decoder.dateDecodingStrategy = .iso8601
    guard let data = try? FileSystem.read(path(deployment)) else { return nil }
    return try? decoder.decode(WatchStatusFile.self, from: data)
  }

  /// Writes the file atomically.
  /// - Throws: `StoreError.io`.
  func save(_ deployment: Deployment) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    encoder.dateEncodingStrategy = .iso8601
    let path = Self.path(deployment)
    try FileSystem.makeDirectory(FileSystem.parentDirectory(of: path))
    try FileSystem.writeAtomically(try encoder.encode(self), to: path)
  }
}

import Foundation
import Store

/// Prometheus node_exporter textfile metrics. Each command writes its own file, atomically and
/// world-readable (0644) so node_exporter can read it; no per-user labels.
public struct MetricsFile: Sendable {
  public struct Sample: Sendable {
    public var name: String
    public var help: String
    public var type: String
    public var labels: [(String, String)]
    public var value: Double
  }

  public private(set) var samples: [Sample] = []

  public init() {}

  /// Adds a gauge sample (samples of one name share HELP/TYPE).
  public mutating func gauge(_ name: String, _ value: Double, help: String, labels: [(String, String)] = []) {
    samples.append(Sample(name: name, help: help, type: "gauge", labels: labels, value: value))
  }

  /// The exposition text.
  public func render() -> String {
    var lines: [String] = []
    var described = Set<String>()
    for sample in samples {
      if described.insert(sample.name).inserted {
        lines.append("# HELP \(sample.name) \(sample.help)")
        lines.append("# TYPE \(sample.name) \(sample.type)")
      }
      let labels =
        sample.labels.isEmpty
        ? "" : "{" + sample.labels.map { "\($0.0)=\"\(Self.escape($0.1))\"" }.joined(separator: ",") + "}"
      lines.append("\(sample.name)\(labels) \(Self.format(sample.value))")
    }
    return lines.joined(separator: "\n") + "\n"
  }

  /// Writes the file atomically with mode 0644.
  /// - Throws: `JobError.store`.
  public func write(to path: String) throws {
    do {
      try FileSystem.writeAtomically(Data(render().utf8), to: path, mode: 0o644)
    } catch let error as StoreError {
      throw JobError.store(context: "metrics", underlying: error)
    }
  }

  static func escape(_ text: String) -> String {
    text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
      .replacingOccurrences(of: "\n", with: "\\n")
  }

  static func format(_ value: Double) -> String {
    if value.isNaN { return "NaN" }
    if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
    return String(value)
  }
}

extension CheckResult {
  /// The check's metrics.
  public var metrics: MetricsFile {
    var file = MetricsFile()
    if let last = lastFullBackupAt {
      file.gauge(
        "tgsess_backup_last_success_timestamp_seconds", last.timeIntervalSince1970,
        help: "Unix time of the newest verified full snapshot.")
    }
    for (state, count) in [("ok", sessions.ok), ("warning", sessions.warning), ("critical", sessions.critical)] {
      file.gauge("tgsess_sessions", Double(count), help: "Sessions by health state.", labels: [("state", state)])
    }
    file.gauge("tgsess_check_status", Double(state.exitCode), help: "0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.")
    file.gauge("tgsess_archives", Double(archives), help: "Archives in the backups directory.")
    if let freeBytes {
      file.gauge("tgsess_backups_free_bytes", Double(freeBytes), help: "Free bytes on the backups filesystem.")
    }
    file.gauge("tgsess_check_duration_seconds", durationSeconds, help: "How long the check took.")
    file.gauge(
      "tgsess_check_last_run_timestamp_seconds", checkedAt.timeIntervalSince1970, help: "Unix time of this check.")
    return file
  }

  /// One Nagios status line with perfdata.
  public var nagiosLine: String {
    let word = state == .ok ? "OK" : state.rawValue.uppercased()
    let age = lastFullBackupAgeSeconds.map { "backup_age=\($0)s;;" } ?? "backup_age=U;;"
    return
      "TGSESS \(word) - \(summary) | sessions_ok=\(sessions.ok) sessions_warning=\(sessions.warning) sessions_critical=\(sessions.critical) \(age) archives=\(archives) duration=\(String(format: "%.3f", durationSeconds))s"
  }
}

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
  /// Families whose previous value `write(to:)` carries over from the file it replaces when this
  /// file has no sample of them (a failed run keeps the last success's timestamp).
  public private(set) var carriedFamilies: [(name: String, help: String)] = []

  public init() {}

  /// Whether the file has a sample of family `name`.
  public func contains(_ name: String) -> Bool { samples.contains { $0.name == name } }

  /// Keeps the value of the unlabeled gauge `name` from the file this one replaces, unless this
  /// file sets it.
  public mutating func carryOver(_ name: String, help: String) {
    carriedFamilies.append((name, help))
  }

  /// Adds a gauge sample (samples of one name share HELP/TYPE).
  public mutating func gauge(_ name: String, _ value: Double, help: String, labels: [(String, String)] = []) {
    samples.append(Sample(name: name, help: help, type: "gauge", labels: labels, value: value))
  }

  /// The exposition text: each family's HELP and TYPE once, then all its samples together (the
  /// text format requires a family's samples to be contiguous), in the order families first appear.
  public func render() -> String {
    var families: [String] = []
    var samplesByName: [String: [Sample]] = [:]
    for sample in samples {
      if samplesByName[sample.name] == nil { families.append(sample.name) }
      samplesByName[sample.name, default: []].append(sample)
    }
    var lines: [String] = []
    for name in families {
      let family = samplesByName[name] ?? []
      guard let first = family.first else { continue }
      lines.append("# HELP \(name) \(Self.escapeHelp(first.help))")
      lines.append("# TYPE \(name) \(first.type)")
      for sample in family {
        let labels =
          sample.labels.isEmpty
          ? "" : "{" + sample.labels.map { "\($0.0)=\"\(Self.escape($0.1))\"" }.joined(separator: ",") + "}"
        lines.append("\(name)\(labels) \(Self.format(sample.value))")
      }
    }
    return lines.joined(separator: "\n") + "\n"
  }

  /// Writes the file atomically with mode 0644, carrying over the carried families' values from
  /// the file it replaces.
  /// - Throws: `JobError.store`.
  public func write(to path: String) throws {
    var file = self
    for family in carriedFamilies where !file.contains(family.name) {
      if let value = Self.previousValue(of: family.name, in: path) { file.gauge(family.name, value, help: family.help) }
    }
    do {
      try FileSystem.writeAtomically(Data(file.render().utf8), to: path, mode: 0o644)
    } catch let error as StoreError {
      throw JobError.store(context: "metrics", underlying: error)
    }
  }

  /// The value of the unlabeled sample `name` in the textfile at `path`, if it is there and readable.
  static func previousValue(of name: String, in path: String) -> Double? {
    guard let data = try? FileSystem.read(path) else { return nil }
    for line in String(decoding: data, as: UTF8.self).split(separator: "\n") where line.hasPrefix(name + " ") {
      guard let value = Double(line.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces)), value.isFinite
      else { return nil }
      return value
    }
    return nil
  }

  static func escape(_ text: String) -> String {
    text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
      .replacingOccurrences(of: "\n", with: "\\n")
  }

  /// HELP text escapes only backslash and newline.
  static func escapeHelp(_ text: String) -> String {
    text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n")
  }

  static func format(_ value: Double) -> String {
    if value.isNaN { return "NaN" }
    if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
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
    file.gauge(
      "tgsess_check_archives_unsigned", Double(unsignedArchives),
      help: "Archives without a signature (made before archives were signed, or planted).")
    file.gauge(
      "tgsess_check_archives_rejected", Double(rejectedArchives),
      help: "Archives that fail authentication (someone wrote to backups/).")
    if let freeBytes {
      file.gauge("tgsess_backups_free_bytes", Double(freeBytes), help: "Free bytes on the backups filesystem.")
    }
    if let newestDrillAt {
      file.gauge(
        "tgsess_check_newest_drill_timestamp_seconds", newestDrillAt.timeIntervalSince1970,
        help: "Unix time of the newest successful drill recorded in backups/drills/ (by the timer or by hand).")
    }
    for remote in remotes {
      let labels = [("remote", remote.name)]
      file.gauge(
        "tgsess_check_remote_last_push_ok", remote.isLastPushOK ? 1 : 0,
        help: "1 when the last push to the remote completed and verified (0 also when never pushed).", labels: labels)
      if let missing = remote.missingArchives {
        file.gauge(
          "tgsess_check_remote_missing_archives", Double(missing),
          help: "Local signed archives the remote lacked at its last listing.", labels: labels)
      }
      if let verified = remote.lastVerifiedPushAt {
        file.gauge(
          "tgsess_check_remote_last_verified_push_timestamp_seconds", verified.timeIntervalSince1970,
          help: "Unix time the last verified push to the remote ended.", labels: labels)
      }
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
    // `|` starts the perfdata and only the first line reaches notifications.
    let text = summary.replacingOccurrences(of: "|", with: "/").replacingOccurrences(of: "\n", with: " ")
    return
      "TGSESS \(word) - \(text) | sessions_ok=\(sessions.ok) sessions_warning=\(sessions.warning) sessions_critical=\(sessions.critical) \(age) archives=\(archives) duration=\(String(format: "%.3f", durationSeconds))s"
  }
}

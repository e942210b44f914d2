import ArgumentParser
import Foundation
import Jobs

/// The monitoring hooks of the scheduled commands (backup, prune, check, drill).
struct MonitoringOptions: ParsableArguments {
  @Option(
    help: ArgumentHelp(
      "Write this run's metrics to a node_exporter textfile (atomically, mode 0644).", valueName: "file"))
  var prometheus: String?

  @Option(
    name: .customLong("ping-url"),
    help: ArgumentHelp(
      "healthchecks-style URL: GET <URL>/start before the run, POST <URL>/<exit status> after it (default: $TGSESS_PING_URL).",
      valueName: "url"))
  var pingURL: String?

  /// The MONITORING paragraph of a command's help.
  static func helpText(_ command: String) -> String {
    let metricsFailure =
      command == "check"
      ? "a metrics file that cannot be written makes the check UNKNOWN"
      : "nor does a metrics file that cannot be written"
    return """
      Monitoring: --prometheus FILE writes this run's metrics (tgsess_\(command)_*) to a node_exporter
      textfile; --ping-url URL (or TGSESS_PING_URL) pings URL/start before and URL/<exit status> after
      the run, with the summary as the body (timeout 10 s, or TGSESS_PING_TIMEOUT seconds). A ping
      that fails is a warning and never changes the exit status; \(metricsFailure).
      """
  }

  func validate() throws {
    // The message leaves the URL out: it is a credential.
    if let pingURL, Ping.validURL(pingURL) == nil {
      throw ValidationError("--ping-url is not an http:// or https:// URL. Try: --ping-url https://hc-ping.com/<uuid>")
    }
  }

  /// Refuses the hooks for a run that reports nothing (a dry run, a listing).
  func validate(reportsNothingBecause mode: String) throws {
    if prometheus != nil || pingURL != nil {
      throw ValidationError(
        "\(mode) changes nothing and reports nothing to monitoring; drop --prometheus and --ping-url")
    }
  }
}

/// One run of a scheduled command as monitoring sees it: pings `/start` when made; `finish` (or
/// `fail`) writes the metrics file and pings the exit status. Problems with either hook are
/// warnings on stderr — one line for the pings — and never change the run's exit status, except
/// for `check`, where a metrics file that cannot be written makes the check UNKNOWN.
final class MonitoredRun {
  let command: String
  let startedAt = Date()
  private let prometheus: String?
  private var ping: Ping?
  private var warnings: [String] = []

  /// Starts monitoring the run (pings `/start` when a ping URL is set by flag or `$TGSESS_PING_URL`);
  /// when `isReporting` is false (a dry run), nothing is sent or written.
  init(_ command: String, options: MonitoringOptions, isReporting: Bool = true) {
    self.command = command
    prometheus = isReporting ? options.prometheus : nil
    let environment = ProcessInfo.processInfo.environment
    let url = options.pingURL ?? environment["TGSESS_PING_URL"].flatMap { $0.isEmpty ? nil : $0 }
    guard isReporting, let url else { return }
    // TGSESS_PING_TIMEOUT (seconds) shortens the 10 s timeout, for tests and slow links alike.
    let timeout = environment["TGSESS_PING_TIMEOUT"].flatMap(Double.init) ?? Ping.defaultTimeout
    do {
      ping = try Ping(url: url, timeout: timeout)
      ping?.start()
    } catch {
      warnings.append("TGSESS_PING_URL is not an http:// or https:// URL; no ping is sent")
    }
  }

  /// Reports a run that produced a result and ends with `exitStatus`.
  /// - Returns: the exit status to end with: `exitStatus`, or for `check` at least 3 (UNKNOWN) when
  ///   the metrics file could not be written.
  @discardableResult
  func finish(exitStatus: Int32, summary: [String], metrics: (RunRecord) -> MetricsFile) -> Int32 {
    var status = exitStatus
    if let prometheus {
      do { try metrics(record(status)).write(to: prometheus) } catch {
        if command == "check" {
          status = max(status, 3)
          say(error.localizedDescription)
        } else {
          warnings.append("metrics not written: \(error.localizedDescription)")
        }
      }
    }
    ping?.finish(exitStatus: status, body: summary.joined(separator: "\n"))
    report()
    return status
  }

  /// Reports a run that failed as a whole with `error`; returns its exit status.
  @discardableResult
  func fail(_ error: any Error) -> Int32 {
    let status = command == "check" ? 3 : Tgsess.exitStatus(for: error)
    // The body is the line `main` prints for the error.
    return finish(exitStatus: status, summary: ["tgsess: " + Tgsess.describe(error)]) { MetricsFile(run: $0) }
  }

  private func record(_ status: Int32) -> RunRecord {
    RunRecord(command: command, startedAt: startedAt, duration: Date().timeIntervalSince(startedAt), exitStatus: status)
  }

  /// Prints the warnings: each hook's on one line (the pings' together, naming the host only).
  private func report() {
    if let ping, !ping.warnings.isEmpty {
      warnings.append(
        "ping to \(ping.displayHost) failed (the run is not affected): \(ping.warnings.joined(separator: "; "))")
    }
    for warning in warnings { say("warning: " + warning) }
    warnings = []
  }

  private func say(_ text: String) {
    FileHandle.standardError.write(Data("tgsess: \(command): \(text)\n".utf8))
  }
}

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
  static func helpText(_ command: String, convention: ExitStatus.Convention = .standard) -> String {
    let metricsFailure =
      convention == .nagios
      ? "a metrics file that cannot be written is a finding of its own, which makes an OK or WARNING check UNKNOWN"
      : "nor does a metrics file that cannot be written"
    return """
      Monitoring: --prometheus FILE writes this run's metrics (tgsess_\(command)_*) to a node_exporter textfile; --ping-url URL (or TGSESS_PING_URL) pings URL/start before and URL/<exit status> after the run, with the summary as the body (timeout 10 s, or TGSESS_PING_TIMEOUT seconds). A ping that fails is a warning and never changes the exit status; \(metricsFailure).
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
/// warnings on stderr — one line for the pings — and never change the run's exit status. `check`
/// writes its metrics first (`writeMetrics`) and makes a failure part of its verdict instead.
final class MonitoredRun {
  let command: String
  let convention: ExitStatus.Convention
  let startedAt = Date()
  private let prometheus: String?
  private var ping: Ping?
  private var warnings: [String] = []

  /// Starts monitoring the run (pings `/start` when a ping URL is set by flag or `$TGSESS_PING_URL`);
  /// when `isReporting` is false (a dry run), nothing is sent or written.
  init(
    _ command: String, convention: ExitStatus.Convention = .standard, options: MonitoringOptions,
    isReporting: Bool = true
  ) {
    self.command = command
    self.convention = convention
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

  /// Reports a run that produced a result and ends with `exitStatus`: writes the metrics file (a
  /// failure is a warning), then pings.
  /// - Returns: `exitStatus`.
  @discardableResult
  func finish(exitStatus: Int32, summary: [String], metrics: (RunRecord) -> MetricsFile) -> Int32 {
    if let failure = writeMetrics(exitStatus: exitStatus, metrics) {
      warnings.append("metrics not written: \(Tgsess.describe(failure))")
    }
    report(exitStatus: exitStatus, summary: summary)
    return exitStatus
  }

  /// Writes the metrics file, when `--prometheus` names one.
  /// - Returns: why it could not be written, or nil.
  func writeMetrics(exitStatus: Int32, _ metrics: (RunRecord) -> MetricsFile) -> (any Error)? {
    guard let prometheus else { return nil }
    do { try metrics(record(exitStatus)).write(to: prometheus) } catch { return error }
    return nil
  }

  /// Pings the run's exit status with `summary` as the body, then prints the hooks' warnings.
  func report(exitStatus: Int32, summary: [String]) {
    ping?.finish(exitStatus: exitStatus, body: summary.joined(separator: "\n"))
    if let ping, !ping.warnings.isEmpty {
      warnings.append(
        "ping to \(ping.displayHost) failed (the run is not affected): \(ping.warnings.joined(separator: "; "))")
    }
    for warning in warnings { FileHandle.standardError.write(Data("tgsess: \(command): warning: \(warning)\n".utf8)) }
    warnings = []
  }

  /// Reports a run that failed as a whole with `error`; returns its exit status.
  @discardableResult
  func fail(_ error: any Error) -> Int32 {
    let status = ExitStatus.of(error, convention: convention)
    // The body is the line `main` prints for the error.
    return finish(exitStatus: status, summary: ["tgsess: " + Tgsess.describe(error)]) { MetricsFile(run: $0) }
  }

  private func record(_ status: Int32) -> RunRecord {
    RunRecord(command: command, startedAt: startedAt, duration: Date().timeIntervalSince(startedAt), exitStatus: status)
  }
}

import ArgumentParser
import Foundation
import Jobs

struct Check: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Health checks that monitoring can read (Nagios exit codes).",
    discussion: """
      Checks the database (opens, quick_check, schema, not locked), every user (row and session
      file exist and validate, the secret decrypts, string and file agree, .session.backup,
      permissions, no hot journal), orphans, backups (newest full snapshot younger than
      --max-age, every user backed up, free space, drills) and keys. Read-only on session files;
      the only write is each user's result in the database, for the bot's /status.

        $ tgsess check
        $ tgsess check --nagios
        $ tgsess check --deep --prometheus /var/lib/prometheus/node-exporter/tgsess_check.prom

      TGSESS_PROBE_BACKOFF_MS sets the probe's first retry backoff (default 1000).

      \(MonitoringOptions.helpText("check"))

      EXIT STATUS (Nagios): 0 OK · 1 WARNING · 2 CRITICAL · 3 UNKNOWN
      """)

  @OptionGroup var global: GlobalOptions
  @Flag(help: "integrity_check, and decrypt and hash the newest archives.") var deep = false
  @Option(help: "Maximum age of the newest full snapshot, in seconds (default 7200).") var maxAge: Int?
  @Option(help: "Warn when the newest successful drill is older, in seconds (default 8 days).") var maxDrillAge =
    8 * 86400
  @Option(help: "Warn below this free space on backups/, in MiB (default 1024).") var minFreeMib: Int?
  @Flag(help: "One Nagios status line with perfdata.") var nagios = false
  @Option(help: "A live probe command run per session (its last argument is the session file).") var probe: String?
  @Option(help: "Seconds before a probe run is killed.") var probeTimeout = 30
  @Flag(help: "Do not write per-user results to the database.") var noWrite = false
  @OptionGroup(title: "Monitoring") var monitoring: MonitoringOptions

  func run() throws {
    let monitor = MonitoredRun("check", options: monitoring)
    let result: CheckResult
    do {
      let (deployment, logger) = try global.setUp()
      let section = deployment.config.check
      // A test hook and an operator's knob: the probe's first backoff, in milliseconds.
      let backoffMS = ProcessInfo.processInfo.environment["TGSESS_PROBE_BACKOFF_MS"].flatMap { Int($0) } ?? 1000
      let options = CheckOptions(
        isDeep: deep, maxBackupAge: TimeInterval(maxAge ?? section?.maxAgeSeconds ?? 7200),
        minFreeBytes: Int64(minFreeMib ?? section?.minFreeMiB ?? 1024) * 1_048_576,
        maxDrillAge: TimeInterval(maxDrillAge),
        writesResults: !noWrite, probeCommand: probe.map { $0.split(separator: " ").map(String.init) },
        probeTimeout: TimeInterval(probeTimeout), probeRetryBase: .milliseconds(max(0, backoffMS)))
      result = CheckJob.run(deployment, options: options, logger: logger)
    } catch {
      // Nagios: a check that cannot run is UNKNOWN.
      if nagios {
        print("TGSESS UNKNOWN - \(error.localizedDescription)")
      } else {
        FileHandle.standardError.write(Data("tgsess: check: \(error.localizedDescription)\n".utf8))
      }
      monitor.fail(error)
      throw ExitCode(3)
    }
    let lines = Self.render(result)
    if nagios {
      Output.line(result.nagiosLine)
    } else if global.json {
      try Output.json(result)
    } else {
      for line in lines { Output.line(line) }
    }
    // The metrics file is a side output: failing to write it never hides the verdict (printed
    // above), but a check that could not do all it was asked is at least UNKNOWN.
    let exitState = monitor.finish(exitStatus: result.state.exitCode, summary: lines, metrics: result.metrics)
    throw ExitCode(exitState)
  }

  /// The text output: the verdict and every finding that is not OK (also the ping's body).
  static func render(_ result: CheckResult) -> [String] {
    ["\(result.state.rawValue.uppercased()): \(result.summary)"]
      + result.findings.filter { $0.state != .ok }.map { finding in
        "  \(finding.state.rawValue.uppercased().padding(toLength: 8, withPad: " ", startingAt: 0)) \(finding.check.padding(toLength: 17, withPad: " ", startingAt: 0)) \(finding.message)"
      }
  }
}

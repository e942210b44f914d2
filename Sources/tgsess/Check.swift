import ArgumentParser
import Foundation
import Jobs
import Store

struct Check: ParsableCommand, NagiosPlugin {
  static let configuration = CommandConfiguration(
    commandName: "check",
    abstract: "Health checks that monitoring can read (Nagios exit codes).",
    discussion: """
      Checks the database (opens, quick_check, schema, not locked), the keys (the Fernet keys load and are private, an age recipient is configured, the archive signing key and its key ring load and are private, the age identity opens the newest archive when it is on this host), every user (row and session file exist and validate, the secret decrypts, string and file agree, .session.backup, permissions, no hot journal), orphans, backups (the backups directory can be listed, every archive carries this deployment's signature: a rejected one is CRITICAL, since someone wrote to backups/, unsigned ones a WARNING until tgsess keys sign-existing; the newest signed full snapshot is younger than --max-age, every user is in a signed archive, free space, no plaintext copies that earlier versions left in backups/before-restore/ or backups/pre-migrate/; --deep verifies a sample in full against their signatures), offsite copies and drills. A session file unchanged since a check last read it (same inode, size, and modification and change times, no -journal or -wal beside it) is judged by that reading, kept in backups/.session-verdicts (no secret; authenticated with a key derived from the signing key); --deep reads every file again. A problem of the whole deployment (a missing key, a directory that cannot be read) is reported once, not for every user.

      Session files are opened read-only and never changed. The only write is the last step, one transaction in the database: each user's health, last_error (the reasons found) and last_checked_at, for the bot's /status; and status = revoked for a user whose live probe (--probe) answered with a fatal error twice. It is skipped for a database that fails quick_check or whose schema is not current, and --no-write skips all of it. Besides, check (like list and prune) keeps backups/.signatures, a cache of signature verdicts authenticated with a key derived from keys/signing.key (no secret in it): a signature is verified once, and again whenever its file changes.

        $ tgsess check
        $ tgsess check --nagios
        $ tgsess check --deep --prometheus /var/lib/prometheus/node-exporter/tgsess_check.prom

      \(MonitoringOptions.helpText("check", convention: .nagios))

      EXIT STATUS (Nagios): 0 OK · 1 WARNING · 2 CRITICAL · 3 UNKNOWN (the check could not run, a bad flag, or an OK or WARNING check whose metrics file could not be written)
      """)

  @OptionGroup var global: GlobalOptions
  @Flag(help: "integrity_check, read every session file again, and decrypt and hash the newest archives.")
  var deep = false
  @Option(help: "Maximum age of the newest full snapshot, in seconds (default 7200, or [check] max_age_seconds).")
  var maxAge: Int?
  @Option(help: "Warn when the newest successful drill is older, in seconds (default 8 days).") var maxDrillAge: Int?
  @Option(help: "Warn below this free space on backups/, in MiB (default 1024, or [check] min_free_mib).")
  var minFreeMib: Int?
  @Flag(help: "One Nagios status line with perfdata.") var nagios = false
  @Option(help: "A live probe command run per session (its last argument is the session file).") var probe: String?
  @Option(help: "Seconds before a probe run is killed (default 30).") var probeTimeout: Int?
  @Option(help: .hidden) var probeBackoffMs: Int?
  @Flag(help: "Record nothing in the database (no results, no revocation).") var noWrite = false
  @OptionGroup(title: "Monitoring") var monitoring: MonitoringOptions

  func run() throws {
    let monitor = MonitoredRun("check", convention: .nagios, options: monitoring)
    var result: CheckResult
    do {
      let (deployment, logger) = try global.setUp()
      let overrides = CheckOptions.Overrides(
        isDeep: deep, maxBackupAge: maxAge.map(TimeInterval.init),
        minFreeBytes: minFreeMib.map { Int64($0) * 1_048_576 },
        maxDrillAge: maxDrillAge.map(TimeInterval.init), writesResults: !noWrite,
        probeCommand: probe.map { $0.split(separator: " ").map(String.init) },
        probeTimeout: probeTimeout.map(TimeInterval.init),
        probeRetryBase: probeBackoffMs.map { .milliseconds(max(0, $0)) })
      let meter = ProgressMeter(isEnabled: !global.json && !nagios)
      result = CheckJob.run(
        deployment, options: CheckOptions(config: deployment.config, overrides: overrides), logger: logger,
        progress: meter.isActive ? meter.update : nil)
      meter.finish()
    } catch {
      // A check that cannot run is UNKNOWN.
      let text = Tgsess.describe(error)
      if nagios {
        Output.line("TGSESS UNKNOWN - \(text)")
      } else {
        FileHandle.standardError.write(Data("tgsess: check: \(text)\n".utf8))
      }
      throw ExitCode(monitor.fail(error))
    }
    // The metrics file is written before anything is printed: one that cannot be written is a
    // finding, so the text, the JSON, the Nagios line and the exit status all say so.
    if let failure = monitor.writeMetrics(exitStatus: ExitStatus.of(result.state), result.metrics),
      let path = monitoring.prometheus
    {
      var detail = Tgsess.describe(failure)
      if case JobError.store(_, let underlying) = failure { detail = underlying.errorDescription ?? detail }
      result.add(
        CheckFinding(
          .metrics, .unknown, "the metrics file \(path) was not written: \(detail)",
          remedy: "fix --prometheus: its directory must exist and be writable by the user running tgsess"))
    }
    let lines = Self.render(result)
    if nagios {
      Output.line(result.nagiosLine)
    } else if global.json {
      try Output.json(result)
    } else {
      for line in lines { Output.line(line) }
    }
    let status = ExitStatus.of(result.state)
    monitor.report(exitStatus: status, summary: lines)
    throw ExitCode(status)
  }

  /// The width of the check column: the longest check name (`padding` would cut a longer one).
  static let checkColumn = CheckID.allCases.map(\.rawValue.count).max() ?? 17

  /// The text output: the verdict and every finding that is not OK (also the ping's body).
  static func render(_ result: CheckResult) -> [String] {
    ["\(result.state.rawValue.uppercased()): \(result.summary)"]
      + result.findings.filter { $0.state != .ok }.map { finding in
        "  \(finding.state.rawValue.uppercased().padding(toLength: 8, withPad: " ", startingAt: 0)) \(finding.check.padding(toLength: checkColumn, withPad: " ", startingAt: 0)) \(finding.message)"
      }
  }
}

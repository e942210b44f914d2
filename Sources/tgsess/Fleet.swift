import ArgumentParser
import Foundation
import Jobs
import Store

struct Fleet: ParsableCommand, NagiosPlugin {
  static let configuration = CommandConfiguration(
    commandName: "fleet",
    abstract: "Show every host sharing a remote, and catch one session live on two hosts (Nagios exit codes).",
    discussion: """
      Each host writes a heartbeat (tgsess-host.json, no secrets: per user the format, dc, auth-key \
      fingerprint and the session file's last write) beside its archives with every push and every \
      check that records. fleet reads them all from the remote, with no decryption key, and reports \
      every host's last heartbeat, newest full snapshot, users and check state. A heartbeat older \
      than --max-age is CRITICAL. The same auth key written on two hosts within --window before \
      their heartbeats is CRITICAL: Telegram revokes a key used from two places \
      (AUTH_KEY_DUPLICATED). The same user under two different keys is a WARNING. A state file that \
      cannot be read is one UNKNOWN finding naming it; the other hosts are still judged. \
      docs/FLEET-STATE.md describes the file.

        $ tgsess fleet
        $ tgsess fleet --nagios --window 600
        $ tgsess fleet --remote-path s3remote:bucket/tgsess --prometheus /var/lib/node_exporter/tgsess_fleet.prom

      EXIT STATUS (Nagios): 0 OK · 1 WARNING · 2 CRITICAL · 3 UNKNOWN (the remote could not be read, a bad flag)
      """)

  @OptionGroup var global: GlobalOptions
  @Option(help: "The configured remote to read (default: the first [[remotes]]).") var remote: String?
  @Option(help: "An rclone path to read instead of a configured remote (no deployment needed).") var remotePath: String?
  @Option(help: "Seconds before a heartbeat within which a session file's write counts as use (default 900).")
  var window: Int?
  @Option(help: "Maximum heartbeat age, in seconds (default 7200, or [check] max_age_seconds).") var maxAge: Int?
  @Flag(help: "One Nagios status line with perfdata.") var nagios = false
  @Option(help: "Write the fleet metrics (tgsess_fleet_*) to a node_exporter textfile.") var prometheus: String?

  func validate() throws {
    if let window, window <= 0 { throw ValidationError("--window must be positive. Try: --window 900") }
    if let maxAge, maxAge <= 0 { throw ValidationError("--max-age must be positive. Try: --max-age 7200") }
    if remote != nil, remotePath != nil { throw ValidationError("give --remote or --remote-path, not both") }
  }

  func run() throws {
    let report: FleetReport
    do {
      let (deployment, logger) = try global.setUp()
      let options = FleetOptions(
        config: deployment.config, remote: remote, remotePath: remotePath, window: window.map(TimeInterval.init),
        maxAge: maxAge.map(TimeInterval.init))
      report = try FleetJob.run(deployment, options: options, logger: logger)
      if let prometheus { try report.metrics.write(to: prometheus) }
    } catch {
      let text = Tgsess.describe(error)
      if nagios {
        Output.line("TGSESS UNKNOWN - \(text)")
      } else {
        FileHandle.standardError.write(Data("tgsess: fleet: \(text)\n".utf8))
      }
      throw ExitCode(ExitStatus.unknown)
    }
    if nagios {
      Output.line(report.nagiosLine)
    } else if global.json {
      try Output.json(report)
    } else {
      render(report)
    }
    throw ExitCode(ExitStatus.of(report.state))
  }

  private func render(_ report: FleetReport) {
    Output.line("\(report.state.rawValue.uppercased()): \(report.summary)")
    Output.line("remote \(report.remote): \(report.hosts.count) host(s), \(report.users) user(s)")
    for host in report.hosts {
      let backup = host.lastFullBackupAgeSeconds.map { "\(Self.age($0)) old" } ?? "none"
      let check = host.checkState.map { $0.rawValue.uppercased() } ?? "never"
      Output.line(
        "  \(host.deploymentName) (\(host.host), tgsess \(host.toolVersion)): heartbeat \(Self.age(host.heartbeatAgeSeconds)) ago, full snapshot \(backup), \(host.users) user(s), check \(check) [\(host.state.rawValue.uppercased())]"
      )
    }
    for finding in report.findings where finding.state != .ok {
      Output.line("\(finding.state.rawValue.uppercased()): \(finding.message)")
    }
  }

  static func age(_ seconds: Int) -> String {
    if seconds >= 86400 { return "\(seconds / 86400)d \(seconds % 86400 / 3600)h" }
    if seconds >= 3600 { return "\(seconds / 3600)h \(seconds % 3600 / 60)m" }
    if seconds >= 60 { return "\(seconds / 60)m \(seconds % 60)s" }
    return "\(max(0, seconds))s"
  }
}

import ArgumentParser
import Foundation
import Jobs

struct Drill: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Rehearse disaster recovery: restore into a fresh directory, validate, record evidence.",
    discussion: """
      Restores the chosen full snapshot into a temporary directory (never the live deployment),
      then every user's newest per-user archive (or a rotating sample), validates the database
      and every session, compares them with the live deployment, and records the drill (RTO,
      RPO, users restored/ok/failed) under backups/drills/. It never connects to Telegram with a
      restored session. `tgsess check` warns when the newest successful drill is too old.

        $ tgsess drill
        $ tgsess drill --users 50 --json
        $ tgsess drill --history

      EXIT STATUS: 0 everything restored and validated · 1 the drill found problems or could not run
      """)

  @OptionGroup var global: GlobalOptions
  @Option(help: "The full snapshot to drill: an id or latest.") var from = "latest"
  @Option(help: "Restore this many users' per-user archives (a rotating sample); default all.") var users: Int?
  @Option(help: "The age identity file (default: keys/age-identity.txt).") var identity: String?
  @Flag(help: "Keep the drill directory for inspection.") var keep = false
  @Option(help: "Drill from this configured remote alone.") var fromRemote: String?
  @Flag(help: "List past drills.") var history = false
  @Option(help: "Write a node_exporter textfile with the drill's metrics.") var prometheus: String?

  func run() throws {
    let (deployment, logger) = try global.setUp()
    if history {
      let drills = DrillJob.history(deployment)
      if global.json { return try Output.json(drills) }
      for drill in drills {
        Output.line(
          "\(Format.time(drill.startedAt))  \(drill.ok ? "OK    " : "FAILED")  \(drill.archiveID)  RTO \(String(format: "%.1f", drill.rtoSeconds))s  RPO \(Int(drill.rpoSeconds))s  users \(drill.usersOK)/\(drill.usersRestored)"
        )
      }
      return
    }
    let result = try DrillJob.run(
      deployment,
      options: DrillOptions(
        from: from, userSample: users, identityPath: identity, keepsDirectory: keep, fromRemote: fromRemote),
      logger: logger)
    if let prometheus {
      var file = MetricsFile()
      file.gauge("tgsess_drill_ok", result.ok ? 1 : 0, help: "1 when the last drill restored and validated everything.")
      file.gauge(
        "tgsess_drill_last_run_timestamp_seconds", result.startedAt.timeIntervalSince1970,
        help: "Unix time of the last drill.")
      file.gauge("tgsess_drill_rto_seconds", result.rtoSeconds, help: "Measured time to restore and validate.")
      file.gauge("tgsess_drill_rpo_seconds", result.rpoSeconds, help: "Age of the drilled snapshot.")
      file.gauge("tgsess_drill_users_failed", Double(result.usersFailed.count), help: "Users that did not validate.")
      try file.write(to: prometheus)
    }
    if global.json {
      try Output.json(result)
    } else {
      Output.line("drill \(result.ok ? "PASSED" : "FAILED"): \(result.archiveID)")
      Output.line(
        "  RTO \(String(format: "%.1f", result.rtoSeconds)) s (restore + validation), RPO \(Int(result.rpoSeconds)) s (snapshot age)"
      )
      Output.line(
        "  users: \(result.usersOK)/\(result.usersRestored) validated, \(result.perUserArchivesChecked) per-user archive(s) checked"
      )
      if !result.usersMissing.isEmpty {
        Output.line(
          "  missing from the snapshot: users \(result.usersMissing.map(String.init).joined(separator: ", "))")
      }
      if !result.usersChangedSince.isEmpty {
        Output.line("  changed since the snapshot: \(result.usersChangedSince.count) user(s)")
      }
      for failure in result.usersFailed { Output.line("  FAILED user \(failure.userID): \(failure.reason)") }
      for problem in result.problems { Output.line("  FAILED \(problem)") }
      if let path = result.recordPath { Output.line("  evidence: \(path)") }
    }
    if !result.ok { throw ExitCode(ExitStatus.failed) }
  }
}

import ArgumentParser
import Foundation
import Jobs

struct Prune: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "prune",
    abstract: "Keep 5 backups per user and apply the retention policy to full snapshots.",
    discussion: """
      The plan is computed first (every archive with the rules that keep it, or why it goes); \
      --dry-run prints it and changes nothing. Prune also trims session_backups rows to \
      --keep-per-user per user and removes the temporaries of interrupted runs.

      Only archives signed by this deployment's key take part in the plan. Unsigned archives \
      (made before archives were signed, or planted) and rejected ones (their signature does \
      not verify) are neither counted nor removed: a planted archive can never push a real one \
      out. Prune names how many there are; vouch for this host's own unsigned archives with \
      `tgsess keys sign-existing`, and investigate rejected ones and remove them by hand.

        $ tgsess prune --dry-run
        $ tgsess prune --keep-daily 14 --keep-monthly 6
        $ tgsess pin 20261101T030000Z-full-k3j9x2      # never pruned

      \(RetentionPolicy.helpText)

      \(MonitoringOptions.helpText("prune"))

      EXIT STATUS: 0 ok · 1 failed · 3 partial (a remote could not be pruned, each named) · 64 usage · 75 lock held
      """)

  @OptionGroup var global: GlobalOptions
  @Option(help: "Per-user backups kept per user (default 5).") var keepPerUser: Int?
  @Option(help: "Newest full snapshots kept (default 5).") var keepLast: Int?
  @Option(help: "Hourly buckets kept (default 0).") var keepHourly: Int?
  @Option(help: "Daily buckets kept (default 7).") var keepDaily: Int?
  @Option(help: "Weekly (ISO) buckets kept (default 4).") var keepWeekly: Int?
  @Option(help: "Monthly buckets kept (default 0).") var keepMonthly: Int?
  @Option(help: "Yearly buckets kept (default 0).") var keepYearly: Int?
  @Option(help: "Time zone of the buckets (default UTC), e.g. Europe/Berlin.") var timezone: String?
  @Flag(help: "Print the plan and change nothing.") var dryRun = false
  @Option(help: "Seconds to wait for the deployment lock.") var lockWait = 0
  @OptionGroup(title: "Monitoring") var monitoring: MonitoringOptions

  func validate() throws {
    if let timezone, TimeZone(identifier: timezone) == nil {
      throw ValidationError("unknown --timezone '\(timezone)'. Try: --timezone UTC or --timezone Europe/Berlin")
    }
    if dryRun { try monitoring.validate(reportsNothingBecause: "--dry-run") }
  }

  func run() throws {
    let monitor = MonitoredRun("prune", options: monitoring, isReporting: !dryRun)
    let result: PruneResult
    do {
      let (deployment, logger) = try global.setUp()
      let overrides = PruneOptions.Overrides(
        keepPerUser: keepPerUser, keepLast: keepLast, keepHourly: keepHourly, keepDaily: keepDaily,
        keepWeekly: keepWeekly, keepMonthly: keepMonthly, keepYearly: keepYearly, timeZone: timezone,
        isDryRun: dryRun, lockWait: TimeInterval(lockWait))
      let meter = ProgressMeter(isEnabled: !global.json)
      defer { meter.finish() }
      result = try PruneJob.run(
        deployment, options: try PruneOptions(config: deployment.config, overrides: overrides), logger: logger,
        progress: meter.isActive ? meter.update : nil)
      meter.finish()
      if global.json {
        try Output.json(result)
      } else if result.isDryRun {
        // The plan in pieces: tens of thousands of lines are never held as one text.
        result.plan.render { FileHandle.standardOutput.write(Data($0.utf8)) }
        Output.line(
          "\n"
            + (["dry run: would trim \(result.rowsTrimmed) session_backups row(s)"] + Self.outsideThePlan(result))
            .joined(separator: "\n"))
      } else {
        Output.line(Self.render(result))
      }
    } catch {
      monitor.fail(error)
      throw error
    }
    let status = monitor.finish(
      exitStatus: result.isPartial ? ExitStatus.partial : ExitStatus.ok, summary: Self.summary(result),
      metrics: result.metrics)
    if status != ExitStatus.ok { throw ExitCode(status) }
  }

  /// The text output: the plan for a dry run, else the summary.
  static func render(_ result: PruneResult) -> String {
    if result.isDryRun {
      return
        ([result.plan.render() + "\ndry run: would trim \(result.rowsTrimmed) session_backups row(s)"]
        + outsideThePlan(result)).joined(separator: "\n")
    }
    return summary(result).joined(separator: "\n")
  }

  /// One line for the unsigned archives and one per rejected archive, when there are any.
  static func outsideThePlan(_ result: PruneResult) -> [String] {
    var lines: [String] = []
    if !result.unsignedArchives.isEmpty {
      lines.append(
        "not in the plan: \(result.unsignedArchives.count) unsigned archive(s), neither counted nor removed; if this host made them, run: tgsess keys sign-existing"
      )
    }
    lines += result.rejectedArchives.map {
      "not in the plan: REJECTED \($0.path): \($0.reason); investigate, then remove it by hand"
    }
    return lines
  }

  /// The totals line and one line per remote that could not be pruned: the text output and the
  /// ping's body.
  static func summary(_ result: PruneResult) -> [String] {
    [
      "kept \(result.plan.keep.count), removed \(result.removed) archive(s) (\(Format.bytes(result.bytesFreed))), trimmed \(result.rowsTrimmed) session_backups row(s), cleaned \(result.leftoversRemoved) leftover(s)"
    ]
      + result.remoteFailures.map {
        "remote FAILED \($0.remote): \($0.reason); the local prune is done and the archives it removed stay on that remote"
      } + outsideThePlan(result)
  }
}

struct Pin: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "pin",
    abstract: "Pin an archive so prune never removes it.",
    discussion: """
        $ tgsess pin 20261101T030000Z-full-k3j9x2

      EXIT STATUS: 0 ok · 1 failed
      """)
  @OptionGroup var global: GlobalOptions
  @Argument(help: "Archive id (or unique prefix).") var id: String

  func run() throws {
    let (deployment, _) = try global.setUp()
    Output.line("pinned \(try PruneJob.pin(deployment, id: id, isPinned: true))")
  }
}

struct Unpin: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "unpin",
    abstract: "Unpin an archive; prune may remove it again.",
    discussion: """
        $ tgsess unpin 20261101T030000Z-full-k3j9x2

      EXIT STATUS: 0 ok · 1 failed
      """)
  @OptionGroup var global: GlobalOptions
  @Argument(help: "Archive id (or unique prefix).") var id: String

  func run() throws {
    let (deployment, _) = try global.setUp()
    Output.line("unpinned \(try PruneJob.pin(deployment, id: id, isPinned: false))")
  }
}

import ArgumentParser
import Foundation
import Jobs
import Store

struct Watch: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "watch",
    abstract: "Archive every new session identity within seconds, and copy it offsite.",
    discussion: """
      Follows the session files and the bot database with inotify. When a user's identity (the \
      session file's format, dc and auth key; the user_sessions row's session string and api_id) \
      is not in their newest per-user archive, watch writes one ("New user", "New login" or \
      "Session changed"), proves it as backup does, and copies it to every configured remote, \
      verified by size and hash. Churn (entities, update state, sent files, peers) never makes \
      an archive. At start and after an inotify overflow it scans every user, so changes made \
      while it was down are archived too. A held deployment lock, a full disk, a locked \
      database or a remote that is down are retried with backoff; SIGTERM or SIGINT finish the \
      archive in progress and exit 0.

        $ tgsess watch --prometheus /var/lib/prometheus/node-exporter/tgsess_watch.prom
        $ tgsess watch --once --json        # one scan: archive and push what changed, then exit
        $ systemctl enable --now tgsess-watch.service

      Monitoring: --prometheus FILE (or [watch] prometheus) keeps a node_exporter textfile \
      (tgsess_watch_*) current; --ping-url URL (or TGSESS_PING_URL) pings URL/start at start, \
      URL/0 every heartbeat (URL/1 while archives or copies fail) and the exit status at the end.

      EXIT STATUS: 0 stopped by a signal, or --once ok · 1 failed (a watched directory was \
      removed or replaced: restart watch) · 3 --once partial (a user or a remote failed) · \
      64 usage · 75 --once found the lock held past --lock-wait
      """)

  @OptionGroup var global: GlobalOptions
  @Flag(help: "Scan once, archive and push what changed, and exit.") var once = false
  @Option(help: "With --once: seconds queued work may wait for the deployment lock (default [backup] lock_wait, 0).")
  var lockWait: Int?
  @OptionGroup(title: "Monitoring") var monitoring: MonitoringOptions
  /// Test knob: the first retry wait of archives and copies, in milliseconds.
  @Option(name: .customLong("retry-base-ms"), help: .hidden) var retryBaseMS: Int?

  func validate() throws {
    try monitoring.validate()
    if lockWait != nil, !once {
      throw ValidationError("--lock-wait applies to --once only; watch itself waits for the lock as long as it takes")
    }
    if let lockWait, lockWait < 0 { throw ValidationError("--lock-wait must be 0 or more seconds") }
  }

  func run() throws {
    let (deployment, logger) = try global.setUp()
    let environment = ProcessInfo.processInfo.environment
    var options = WatchOptions(
      config: deployment.config, isOnce: once, metricsPath: monitoring.prometheus,
      pingURL: monitoring.pingURL ?? environment["TGSESS_PING_URL"].flatMap { $0.isEmpty ? nil : $0 },
      pingTimeout: environment["TGSESS_PING_TIMEOUT"].flatMap(Double.init) ?? Ping.defaultTimeout,
      lockWait: lockWait.map(TimeInterval.init), retryBase: retryBaseMS.map { TimeInterval($0) / 1000 })
    // The start-up scan's progress on a TTY; the line is cleared once the scan is done.
    let meter = ProgressMeter(isEnabled: !global.json)
    if meter.isActive {
      options.startUpProgress = { progress in
        meter.update(progress)
        if progress.phase == "archives", progress.done == progress.total { meter.finish() }
      }
    }
    defer { meter.finish() }
    let stop = try StopRequest()
    stop.trapTerminationSignals()
    let result = try WatchJob.run(deployment, options: options, logger: logger, stop: stop)
    guard once else { return }
    if global.json { try Output.json(result) } else { render(result) }
    if result.isLocked { throw ExitCode(ExitStatus.locked) }
    if result.isPartial { throw ExitCode(ExitStatus.partial) }
  }

  private func render(_ result: WatchResult) {
    for archive in result.archives {
      Output.line(
        "\(archive.archiveID)  user \(archive.userID)  \(archive.reason)  key \(archive.authKeyFingerprint ?? "-")  (\(archive.detail))"
      )
    }
    Output.line(
      "\(result.usersScanned) users scanned, \(result.archivesWritten) archived, \(result.unchanged) unchanged, \(result.durationMS) ms"
    )
    for problem in result.problems { Output.line("INVALID user \(problem.userID): \(problem.reason)") }
    for failure in result.failures { Output.line("FAILED user \(failure.userID): \(failure.reason)") }
    for remote in result.offsite {
      Output.line(
        remote.pending == 0
          ? "offsite \(remote.remote): ok, \(remote.pushed) archive(s) copied"
          : "offsite FAILED \(remote.lastError ?? remote.remote); \(remote.pending) archive(s) kept locally; catch up with: tgsess push"
      )
    }
    if result.isLocked {
      Output.line(
        "deployment lock held by \(result.lockHolder ?? "another tgsess run"); changes left for the next run. Try: tgsess watch --once --lock-wait 600"
      )
    }
  }
}

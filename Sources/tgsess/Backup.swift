import ArgumentParser
import Foundation
import Jobs

struct Backup: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Take a consistent, encrypted, self-verifying backup.",
    discussion: """
      Without --user: a full snapshot of the database and every session file (read through \
      SQLite, consistent while the bot writes), in one tar.zst archive encrypted with age, read \
      back and checked, then signed with keys/signing.key, before it is published; then a \
      per-user backup ("Scheduled") of every user whose session identity (auth key, dc, \
      address) changed since their newest per-user backup. With --user: one user's session \
      file(s) and database rows, recorded in session_backups. Without keys/signing.key the \
      backup fails: run tgsess init, which adds it and keeps every other key.

        $ tgsess backup                                   # hourly, from cron
        $ tgsess backup --user 42 --reason "Before login"
        $ tgsess backup --lock-wait 600 --json

      \(MonitoringOptions.helpText("backup"))

      EXIT STATUS: 0 ok · 1 failed · 3 partial (some users failed, each named) · 64 usage · 75 lock held
      """)

  @OptionGroup var global: GlobalOptions

  @Option(help: "Back up only this user.") var user: Int64?
  @Option(
    help:
      "Why: \"Before login\", \"Before 2FA\", \"Post successful recovery\", \"Manual\", \"Before logout\", \"Scheduled\"."
  )
  var reason: String?
  @Flag(help: "Write unencrypted archives (an explicit opt-out).") var noEncrypt = false
  @Option(help: "Seconds to wait for another run to finish (default 0, or [backup] lock_wait).") var lockWait: Int?
  @OptionGroup(title: "Monitoring") var monitoring: MonitoringOptions

  func run() throws {
    let monitor = MonitoredRun("backup", options: monitoring)
    let result: BackupResult
    do {
      let (deployment, logger) = try global.setUp()
      let options = BackupOptions(
        config: deployment.config,
        overrides: BackupOptions.Overrides(
          userID: user, reason: reason, isEncrypted: noEncrypt ? false : nil, lockWait: lockWait.map(TimeInterval.init))
      )
      let meter = ProgressMeter()
      result = try BackupJob.run(
        deployment, options: options, logger: logger, progress: meter.isActive ? meter.update : nil)
      meter.finish()
      if global.json { try Output.json(result) } else { render(result) }
    } catch {
      monitor.fail(error)
      throw error
    }
    let status = monitor.finish(
      exitStatus: result.isPartial ? ExitStatus.partial : ExitStatus.ok, summary: Self.summary(result),
      metrics: result.metrics)
    if status != ExitStatus.ok { throw ExitCode(status) }
  }

  private func render(_ result: BackupResult) {
    for archive in result.archives {
      Output.line(
        "\(archive.id)  \(archive.userID.map { "user \($0)" } ?? archive.kind.rawValue)  \(archive.entryCount) entries  \(Format.bytes(archive.byteCount))  verified: \(archive.verification.rawValue)"
      )
    }
    for line in Self.summary(result) { Output.line(line) }
  }

  /// The totals line and one line per failed user: the text output's end and the ping's body.
  static func summary(_ result: BackupResult) -> [String] {
    [
      "\(result.users) users, \(Format.bytes(result.bytesIn)) in, \(Format.bytes(result.bytesOut)) out, \(result.unchangedUsers) unchanged, \(result.durationMS) ms"
    ] + result.failures.map { "FAILED user \($0.userID): \($0.reason)" }
      + result.offsite.map { remote in
        remote.ok
          ? "offsite \(remote.remote): ok, \(remote.archivesThere) archive(s) there"
          : "offsite FAILED \(remote.error ?? remote.remote); the local backup is safe; catch up with: tgsess push"
      }
  }
}

/// A one-line progress display on a TTY (stderr); silent otherwise.
final class ProgressMeter: @unchecked Sendable {
  let isActive = isatty(STDERR_FILENO) == 1
  private let started = Date()
  private var lastDraw = Date.distantPast
  private let lock = NSLock()

  func update(_ progress: BackupProgress) {
    lock.withLock {
      let now = Date()
      guard now.timeIntervalSince(lastDraw) > 0.1 || progress.filesDone == progress.filesTotal else { return }
      lastDraw = now
      let rate = Double(progress.bytesDone) / max(now.timeIntervalSince(started), 0.001)
      let line =
        "\r\(progress.filesDone)/\(progress.filesTotal) files, \(Format.bytes(progress.bytesDone)), \(Format.bytes(Int64(rate)))/s   "
      FileHandle.standardError.write(Data(line.utf8))
    }
  }

  func finish() {
    if isActive { FileHandle.standardError.write(Data("\r\u{1b}[K".utf8)) }
  }
}

enum Format {
  static func bytes(_ count: Int64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var value = Double(count)
    var unit = 0
    while value >= 1024, unit < units.count - 1 {
      value /= 1024
      unit += 1
    }
    return unit == 0 ? "\(count) B" : String(format: "%.1f %@", value, units[unit])
  }

  static func time(_ date: Date) -> String {
    // The format style, not ISO8601DateFormatter: building that formatter (ICU) for every row
    // made `list` of 10,000 archives take a second.
    date.formatted(.iso8601)
  }
}

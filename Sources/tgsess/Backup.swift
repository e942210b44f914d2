import ArgumentParser
import Foundation
import Jobs
import Store

struct Backup: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "backup",
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
        $ tgsess backup --rearchive                       # after an age-recipient rotation

      --rearchive also re-archives (reason "Re-encrypted") every user whose newest per-user \
      archive is not encrypted to exactly the recipients in keys/age-recipients.txt, so that no \
      user's newest archive needs a retired identity. It reads only live files (no identity \
      needed); older archives keep their recipients until prune removes them (tgsess keys usage).

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
  @Flag(help: "Also re-archive every user whose newest archive is not encrypted to the current recipients.")
  var rearchive = false
  @OptionGroup(title: "Monitoring") var monitoring: MonitoringOptions

  func validate() throws {
    if rearchive, user != nil {
      throw ValidationError("--rearchive re-archives every user; drop --user. Try: tgsess backup --rearchive")
    }
    if rearchive, noEncrypt {
      throw ValidationError(
        "--rearchive encrypts to the current recipients; drop --no-encrypt. Try: tgsess backup --rearchive")
    }
  }

  func run() throws {
    let monitor = MonitoredRun("backup", options: monitoring)
    let result: BackupResult
    do {
      let (deployment, logger) = try global.setUp()
      let options = BackupOptions(
        config: deployment.config,
        overrides: BackupOptions.Overrides(
          userID: user, reason: reason, isEncrypted: noEncrypt ? false : nil, lockWait: lockWait.map(TimeInterval.init),
          rearchives: rearchive)
      )
      let meter = ProgressMeter(isEnabled: !global.json)
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
        "\(archive.id)  \(archive.userID.map { "user \($0)" } ?? archive.kind.rawValue)  \(archive.entryCount) entries  \(Format.bytes(archive.byteCount))  verified: \(Self.proof(archive.verification))"
      )
    }
    for line in Self.summary(result) { Output.line(line) }
  }

  /// What the read-back of a new archive proved, in words.
  static func proof(_ verification: ArchiveRecord.Verification) -> String {
    switch verification {
    case .full: return "full (decrypted, every entry hashed)"
    case .ciphertext: return "ciphertext only (re-read SHA-256; no identity on this host, nothing decrypted)"
    case .unknown: return "unknown"
    }
  }

  /// The totals line and one line per failed user: the text output's end and the ping's body.
  static func summary(_ result: BackupResult) -> [String] {
    [
      "\(result.users) users, \(Format.bytes(result.bytesIn)) in, \(Format.bytes(result.bytesOut)) out, \(result.unchangedUsers) unchanged, \(result.durationMS) ms"
        + (result.reencryptedUsers > 0 ? ", \(result.reencryptedUsers) re-encrypted to the current recipients" : "")
    ] + result.failures.map { "FAILED user \($0.userID): \($0.reason)" }
      + result.offsite.map { remote in
        remote.ok
          ? "offsite \(remote.remote): ok, \(remote.archivesThere) archive(s) there"
          : "offsite FAILED \(remote.error ?? remote.remote); the local backup is safe; catch up with: tgsess push"
      }
  }
}

/// A one-line progress display on a TTY (stderr) with the phase and an ETA; silent otherwise
/// (cron, a pipe, `--json`). Backup, check, prune, drill, restore and watch's start-up scan draw with it.
final class ProgressMeter: @unchecked Sendable {
  let isActive: Bool
  private var phase: String?
  private var phaseStarted = Date()
  private var lastDraw = Date.distantPast
  private var isFinished = false
  private let lock = NSLock()

  init(isEnabled: Bool = true) {
    isActive = isEnabled && isatty(STDERR_FILENO) == 1
  }

  func update(_ progress: BackupProgress) {
    update(
      phase: progress.phase.rawValue, done: progress.filesDone, total: progress.filesTotal,
      bytesDone: progress.bytesDone)
  }

  /// A phase of check, prune, drill or watch's start-up scan.
  func update(_ progress: JobProgress) {
    update(phase: progress.phase, done: progress.done, total: progress.total, bytesDone: progress.bytesDone)
  }

  private func update(phase: String, done: Int, total: Int, bytesDone: Int64) {
    lock.withLock {
      guard !isFinished else { return }
      let now = Date()
      if phase != self.phase {
        self.phase = phase
        phaseStarted = now
      }
      guard now.timeIntervalSince(lastDraw) > 0.1 || done == total else { return }
      lastDraw = now
      let elapsed = max(now.timeIntervalSince(phaseStarted), 0.001)
      var line = "\r\(phase): \(done)/\(total)"
      if bytesDone > 0 {
        line += ", \(Format.bytes(bytesDone)), \(Format.bytes(Int64(Double(bytesDone) / elapsed)))/s"
      }
      if done > 0, done < total {
        let remaining = elapsed / Double(done) * Double(total - done)
        line += ", ETA \(Int(remaining.rounded(.up))) s"
      }
      FileHandle.standardError.write(Data((line + "\u{1b}[K").utf8))
    }
  }

  /// Clears the line (once; later calls do nothing), before the command prints its result or
  /// its error.
  func finish() {
    lock.withLock {
      guard isActive, !isFinished else { return }
      isFinished = true
      FileHandle.standardError.write(Data("\r\u{1b}[K".utf8))
    }
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
    guard unit > 0 else { return "\(count) B" }
    // One decimal, ties to even as printf's %.1f rounds them (the value is exact in binary), by
    // arithmetic: `String(format:)` costs microseconds a row in a listing of 10,000.
    let tenths = Int((value * 10).rounded(.toNearestOrEven))
    return "\(tenths / 10).\(tenths % 10) \(units[unit])"
  }

  static func time(_ date: Date) -> String {
    // By arithmetic: building an ISO8601DateFormatter (ICU) for every row made `list` of 10,000
    // archives take a second, and even the format style costs microseconds a row.
    Timestamp.iso8601(date)
  }
}

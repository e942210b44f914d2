import ArgumentParser
import Foundation
import Jobs

struct Restore: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "restore",
    abstract: "Restore one user, a whole deployment, or a drill copy from an archive.",
    discussion: """
      The archive is decrypted and extracted into a staging directory and checked in full (every \
      SHA-256, every SQLite file's integrity, no unsafe entries) before anything changes. Before \
      live data changes, what is about to be replaced is backed up ("Before restore") and its id \
      printed, so a restore can itself be undone. When that data is too damaged to be read as \
      SQLite, the undo archive holds the damaged files byte for byte ("verbatim" in tgsess list \
      --json); restoring it puts them back as they were. Without an undo archive nothing changes.

      A restore into the live deployment refuses while the bot runs (runner lock, active systemd \
      unit, hot journal) and while any process has a file it replaces open or holds an SQLite lock \
      on it (the refusal names the pid and command). Stop them first. \(LiveOwnerRefusal.forceRisk).

      Only archives signed by this deployment's key are restored: the signature (checked against \
      keys/signing.pub, or --verify-key FILE on a new host: the signing.pub kept in escrow with \
      the age identity) vouches for the archive's id, user, time, manifest and file, and "latest" \
      considers no other archive. An archive without a signature (made before archives were \
      signed) is refused unless --allow-unsigned, which names each one it uses in a warning; \
      `tgsess keys sign-existing` vouches for this host's own once.

      With a remote configured, a restore also refuses to place a session that another host's \
      heartbeat (see tgsess fleet) shows in use with the same key within the last 15 minutes: it \
      names the host and how to hand the session over (tgsess handover there, then --from-remote \
      R --user N --from-deployment THAT-HOST here). --force overrides that too. A --target is \
      guarded only where a bot could use it (inside a deployment, or beside session files); a \
      scratch directory outside them is not.

        $ tgsess restore latest --user 42                 # that user's newest backup
        $ tgsess restore --at "2026-11-24 03:00" --dry-run
        $ tgsess restore 20261125T040000Z-full-k3j9x2 --target /srv/drill
        $ tgsess restore latest --from-remote offsite --identity /escrow/age-identity.txt --verify-key /escrow/signing.pub

      EXIT STATUS: 0 ok · 1 failed (nothing changed) · 64 usage · 75 lock held
      """)

  @OptionGroup var global: GlobalOptions
  @Argument(help: "Archive id (or unique prefix), or latest.") var archive = "latest"
  @Option(help: "Restore only this user's session file(s) and database row.") var user: Int64?
  @Option(help: "Newest archive at or before this time (UTC, or ISO 8601 with an offset).") var at: String?
  @Option(help: "Restore a whole deployment into this empty or new directory; the live one is untouched.")
  var target: String?
  @Flag(help: "Print what would change (files, rows, hashes before and after) and change nothing.") var dryRun = false
  @Flag(help: "Restore into the live deployment although the bot or another process uses it (risky: see above).")
  var force = false
  @Option(help: "The age identity file (default: keys/age-identity.txt).") var identity: String?
  @Option(help: "Seconds to wait for the deployment lock.") var lockWait = 0
  @Option(
    help: "Restore from this configured remote alone (a new host with only the config, the identity and the remote).")
  var fromRemote: String?
  @Option(help: "With --from-remote: restore from this other deployment's archives there (a user handed over from it).")
  var fromDeployment: String?
  @Option(
    help: "The key ring archives are verified with (default: keys/signing.pub); on a new host, the escrowed copy.")
  var verifyKey: String?
  @Flag(help: "Accept archives without a signature (made before archives were signed); each is named in a warning.")
  var allowUnsigned = false

  func validate() throws {
    if let at, TimeParser.parse(at) == nil {
      throw ValidationError(
        "--at '\(at)' is not a time. Try: --at \"2026-11-24 03:00\" or --at 2026-11-24T03:00:00+02:00")
    }
    if fromDeployment != nil, fromRemote == nil {
      throw ValidationError(
        "--from-deployment reads another deployment's archives on a remote; add --from-remote. Try: tgsess restore --from-remote s3 --user 42 --from-deployment old-host"
      )
    }
    if target != nil, user != nil {
      throw ValidationError(
        "--target restores a whole deployment; drop --user. Try: tgsess restore latest --target /srv/drill")
    }
  }

  func run() throws {
    let (deployment, logger) = try global.setUp()
    var options = RestoreOptions(
      selector: archive, userID: user, at: at.flatMap(TimeParser.parse), target: target, isDryRun: dryRun,
      isForced: force, identityPath: identity, lockWait: TimeInterval(lockWait), fromRemote: fromRemote,
      verifyKeyPath: verifyKey, allowsUnsigned: allowUnsigned)
    options.fromDeployment = fromDeployment
    // Each phase's progress on a TTY; nothing under cron, in a pipe or with --json.
    let meter = ProgressMeter(isEnabled: !global.json)
    defer { meter.finish() }
    let result = try RestoreJob.run(
      deployment, options: options, logger: logger, progress: meter.isActive ? meter.update : nil)
    meter.finish()
    if global.json {
      try Output.json(result)
    } else {
      render(result)
    }
    if !result.problems.isEmpty { throw ExitCode(ExitStatus.failed) }
  }

  private func render(_ result: RestoreResult) {
    let verb = result.isDryRun ? "would restore" : "restored"
    Output.line("\(verb) from \(result.archiveID) (\(result.mode.rawValue))")
    for warning in result.warnings { Output.line("warning: \(warning)") }
    if let undo = result.undo {
      Output.line("undo: archive \(undo) holds what was replaced (tgsess restore \(undo) undoes this restore)")
    }
    for file in result.files {
      let before = file.sha256Before.map { String($0.prefix(12)) } ?? "-"
      Output.line(
        "  \(file.action.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0)) \(file.path)  \(before) → \(file.sha256After.prefix(12))"
      )
    }
    for row in result.rows { Output.line("  \(result.isDryRun ? "would " : "")\(row)") }
    let verbatim = result.files.filter { $0.isVerbatim == true }.count
    if !result.isDryRun {
      if result.problems.isEmpty, verbatim > 0 {
        Output.line(
          "check: \(verbatim) file(s) put back byte for byte as archived (SHA-256 matched); not validated, as they were not valid SQLite files"
        )
      } else if result.problems.isEmpty {
        Output.line(
          "check: \(result.restoredUsers) session(s) validate\(result.mode == .user ? "" : ", database passes integrity_check")"
        )
      } else {
        for problem in result.problems { Output.line("check FAILED: \(problem)") }
      }
    }
  }
}

/// Parses the times operators type: ISO 8601 with an offset, or `YYYY-MM-DD[ HH:MM[:SS]]` in UTC.
enum TimeParser {
  static func parse(_ text: String) -> Date? {
    let iso = ISO8601DateFormatter()
    if let date = iso.date(from: text) { return date }
    let formatter = DateFormatter()
    formatter.locale = Locale(identifier: "en_US_POSIX")
    formatter.timeZone = TimeZone(identifier: "UTC")
    for format in [
      "yyyy-MM-dd HH:mm:ss", "yyyy-MM-dd HH:mm", "yyyy-MM-dd'T'HH:mm:ss", "yyyy-MM-dd'T'HH:mm", "yyyy-MM-dd",
    ] {
      formatter.dateFormat = format
      if let date = formatter.date(from: text) { return date }
    }
    return nil
  }
}

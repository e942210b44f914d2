import ArgumentParser
import Foundation
import Jobs

struct Drill: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "drill",
    abstract: "Rehearse disaster recovery: restore into a fresh directory, validate, record evidence.",
    discussion: """
      Restores the chosen full snapshot into a temporary directory (never the live deployment), \
      then every user's newest per-user archive (or a rotating sample), validates the database \
      and every session, compares them with the live deployment, and records the drill (RTO, \
      RPO, users restored/ok/failed) under backups/drills/. It never connects to Telegram with a \
      restored session. `tgsess check` warns when the newest successful drill is too old.

      Without the age identity on this host (the identity kept in escrow) and without --identity, \
      the drill is partial: it proves each archive's ciphertext against its record (SHA-256, age \
      header, recipient count), the users the snapshot holds, and the Fernet keys against the \
      live database and the keys the archives' records name; it decrypts and restores nothing, \
      says so, and exits 3. Only a full drill counts as a successful drill for check. \
      --fernet-keys proves an escrowed copy of keys/fernet.keys instead of the deployment's.

      Only archives signed by this deployment's key are drilled (checked against \
      keys/signing.pub, or --verify-key FILE on a new host); --allow-unsigned also accepts \
      archives made before archives were signed, naming each one in a warning.

        $ tgsess drill
        $ tgsess drill --users 50 --json
        $ tgsess drill --history
        $ tgsess drill --identity /run/tgsess-identity.txt --fernet-keys /run/tgsess-fernet.keys

      \(MonitoringOptions.helpText("drill"))

      EXIT STATUS: 0 everything restored and validated · 1 the drill found problems or could not run · 3 partial: \
      no identity on this host, and everything it could prove passed
      """)

  @OptionGroup var global: GlobalOptions
  @Option(help: "The full snapshot to drill: an id or latest.") var from = "latest"
  @Option(help: "Restore this many users' per-user archives (a rotating sample); default all.") var users: Int?
  @Option(help: "The age identity file (default: keys/age-identity.txt).") var identity: String?
  @Flag(help: "Keep the drill directory for inspection.") var keep = false
  @Option(help: "Drill from this configured remote alone.") var fromRemote: String?
  @Option(help: "Prove this (escrowed) Fernet key file instead of the deployment's.") var fernetKeys: String?
  @Option(help: "The key ring archives are verified with (default: keys/signing.pub).") var verifyKey: String?
  @Flag(help: "Accept archives without a signature; each is named in a warning.") var allowUnsigned = false
  @Flag(help: "List past drills.") var history = false
  @OptionGroup(title: "Monitoring") var monitoring: MonitoringOptions

  func validate() throws {
    if history { try monitoring.validate(reportsNothingBecause: "--history") }
  }

  func run() throws {
    if history { return try listHistory() }
    let monitor = MonitoredRun("drill", options: monitoring)
    let result: DrillResult
    do {
      let (deployment, logger) = try global.setUp()
      let meter = ProgressMeter(isEnabled: !global.json)
      defer { meter.finish() }
      result = try DrillJob.run(
        deployment,
        options: DrillOptions(
          from: from, userSample: users, identityPath: identity, keepsDirectory: keep, fromRemote: fromRemote,
          verifyKeyPath: verifyKey, allowsUnsigned: allowUnsigned, fernetKeysPath: fernetKeys),
        logger: logger, progress: meter.isActive ? meter.update : nil)
      meter.finish()
      if global.json { try Output.json(result) } else { Self.render(result).forEach { Output.line($0) } }
    } catch {
      monitor.fail(error)
      throw error
    }
    let status = monitor.finish(
      exitStatus: !result.ok ? ExitStatus.failed : result.isPartial ? ExitStatus.partial : ExitStatus.ok,
      summary: Self.render(result), metrics: result.metrics)
    if status != ExitStatus.ok { throw ExitCode(status) }
  }

  private func listHistory() throws {
    let (deployment, _) = try global.setUp()
    let drills = DrillJob.history(deployment)
    if global.json { return try Output.json(drills) }
    for drill in drills {
      Output.line(
        "\(Format.time(drill.startedAt))  \(!drill.ok ? "FAILED " : drill.isPartial ? "PARTIAL" : "OK     ")  \(drill.archiveID)  RTO \(String(format: "%.1f", drill.rtoSeconds))s  RPO \(Int(drill.rpoSeconds))s  users \(drill.usersOK)/\(drill.usersRestored)"
      )
    }
  }

  /// The text output (also the ping's body).
  static func render(_ result: DrillResult) -> [String] {
    let fernet = result.fernetKeysPath ?? "the deployment's Fernet keys"
    var lines: [String]
    if result.isPartial {
      lines = [
        "drill \(result.ok ? "PARTIAL" : "FAILED") (nothing decrypted or restored): \(result.archiveID)",
        "  proven: the snapshot and \(result.perUserArchivesChecked) per-user archive(s) by ciphertext (SHA-256 as recorded, age header with the recorded recipients), RPO \(Int(result.rpoSeconds)) s (snapshot age)",
        "  proven: \(fernet) decrypt \(result.fernetSecretsDecrypted ?? 0) live secret(s) and hold every key the checked archives' records name",
      ]
      lines += (result.notProven ?? []).map { "  NOT proven: \($0)" }
    } else {
      lines = [
        "drill \(result.ok ? "PASSED" : "FAILED"): \(result.archiveID)",
        "  RTO \(String(format: "%.1f", result.rtoSeconds)) s (restore + validation), RPO \(Int(result.rpoSeconds)) s (snapshot age)",
        "  users: \(result.usersOK)/\(result.usersRestored) validated, \(result.perUserArchivesChecked) per-user archive(s) checked",
        "  fernet: \(fernet) decrypt \(result.fernetSecretsDecrypted ?? 0) secret(s) in the restored database",
      ]
      lines += (result.notProven ?? []).map { "  NOT proven: \($0)" }
    }
    if !result.usersMissing.isEmpty {
      lines.append("  missing from the snapshot: users \(result.usersMissing.map(String.init).joined(separator: ", "))")
    }
    if !result.usersChangedSince.isEmpty {
      lines.append("  changed since the snapshot: \(result.usersChangedSince.count) user(s)")
    }
    lines += result.usersFailed.map { "  FAILED user \($0.userID): \($0.reason)" }
    lines += result.problems.map { "  FAILED \($0)" }
    lines += (result.warnings ?? []).map { "  warning: \($0)" }
    if let path = result.recordPath { lines.append("  evidence: \(path)") }
    return lines
  }
}

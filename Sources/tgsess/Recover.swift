import ArgumentParser
import Foundation
import Jobs

struct Recover: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "recover",
    abstract: "Recover sessions with the three strategies: session string, session file, backups.",
    discussion: """
      For each user: (1) rebuild a missing or broken session file from the database's session \
      string; (2) keep a valid file and store its string when the database's is missing or stale; \
      (3) repair from the newest valid backup (per-user archives, full snapshots, session_backups \
      rows, the .session.backup file). A result is accepted only if it validates. Healthy users \
      are left alone; nothing is ever deleted (a broken file is moved aside). Each recovered user \
      gets a "Post successful recovery" backup.

      Strategy 3 uses only archives signed by this deployment's key (keys/signing.pub); \
      --allow-unsigned also accepts archives made before archives were signed, naming each one \
      used in a warning.

      --dry-run prints, user by user, the strategy that would be used, its source, and the files \
      that would be written and moved aside, and changes nothing.

      Archives are opened with keys/age-identity.txt, or with --identity FILE when the identity is \
      kept off the host. A missing Fernet key (keys/fernet.keys, or TGSESS_FERNET_KEYS) or a \
      missing identity that a user's only backups need fails the run once, naming what to \
      restore; it is never a verdict on the user.

      Recover refuses while the bot runs, and refuses to replace a session file that a process \
      has open or holds an SQLite lock on (naming its pid and command); stop it first. \(LiveOwnerRefusal.forceRisk).

        $ tgsess recover --user 42
        $ tgsess recover --all --dry-run
        $ tgsess recover --user 42 --identity /run/tgsess-identity.txt

      EXIT STATUS: 0 all healthy · 3 some users unrecoverable (each named) · 1 failed (a missing key, \
      a file in use; nothing more changed) · 64 usage · 75 lock held
      """)

  @OptionGroup var global: GlobalOptions
  @Option(help: "Recover this user.") var user: Int64?
  @Flag(help: "Recover every user.") var all = false
  @Flag(help: "Recover although the bot seems to run or a process holds a session file (risky: see above).")
  var force = false
  @Option(help: "The age identity file that opens archives (default: keys/age-identity.txt).") var identity: String?
  @Option(help: "Seconds to wait for the deployment lock.") var lockWait = 0
  @Flag(help: "Print what would be done for each user (strategy, source, files) and change nothing.") var dryRun =
    false
  @Flag(help: "Strategy 3 may use archives without a signature; each is named in a warning.") var allowUnsigned = false

  func validate() throws {
    if (user == nil) == !all { throw ValidationError("pass --user ID or --all. Try: tgsess recover --user 42") }
  }

  func run() throws {
    let (deployment, logger) = try global.setUp()
    let options = RecoverOptions(
      userID: user, isForced: force, lockWait: TimeInterval(lockWait), allowsUnsigned: allowUnsigned,
      identityPath: identity)
    if dryRun { return try showPlan(try RecoverJob.plan(deployment, options: options, logger: logger)) }
    let result = try RecoverJob.run(
      deployment, options: options, logger: logger)
    if global.json {
      try Output.json(result)
    } else {
      for user in result.users where user.outcome != .healthy || self.user != nil {
        let how = user.strategy.map { " by \($0.label.dropFirst(4))" } ?? ""
        Output.line("user \(user.userID): \(user.outcome.rawValue)\(how): \(user.detail)")
        if let backup = user.backupID { Output.line("  backup \(backup)") }
        if let warning = user.warning { Output.line("  warning: \(warning)") }
      }
      Output.line(
        "\(result.users.count) users: \(result.healthy) healthy, \(result.recovered) recovered, \(result.unrecoverable) unrecoverable"
      )
    }
    if result.unrecoverable > 0 { throw ExitCode(ExitStatus.partial) }
  }

  /// `--dry-run`: the plan, user by user (healthy users only when one was asked for).
  private func showPlan(_ plan: RecoverPlan) throws {
    if global.json {
      try Output.json(plan)
    } else {
      for line in Self.render(plan, showsHealthy: user != nil) { Output.line(line) }
    }
    if plan.users.contains(where: { $0.action == .giveUp }) { throw ExitCode(ExitStatus.partial) }
  }

  static func render(_ plan: RecoverPlan, showsHealthy: Bool) -> [String] {
    var lines: [String] = []
    for step in plan.users where step.action != .none || showsHealthy {
      let user = "user \(step.userID)"
      switch step.action {
      case .none: lines.append("\(user): healthy: \(step.detail)")
      case .giveUp: lines.append("\(user): unrecoverable: \(step.detail)")
      case .rebuildFile, .storeString, .restoreFile:
        let how = step.strategy.map { " by \($0.label.dropFirst(4))" } ?? ""
        lines.append("\(user): would recover\(how) from \(step.source ?? "-")")
        if let aside = step.movesAside { lines.append("  move aside \(aside) (and its -journal/-wal/-shm), kept") }
        if let path = step.writes { lines.append("  write \(path)") }
        if step.storesString { lines.append("  store its session string in the database") }
        if plan.backsUpRecovered { lines.append("  back it up (Post successful recovery)") }
        if let warning = step.warning { lines.append("  warning: \(warning)") }
      }
    }
    let healthy = plan.users.filter { $0.action == .none }.count
    let unrecoverable = plan.users.filter { $0.action == .giveUp }.count
    lines.append(
      "dry run, nothing changed: \(plan.users.count) users: \(healthy) healthy, \(plan.users.count - healthy - unrecoverable) to recover, \(unrecoverable) unrecoverable"
    )
    return lines
  }
}

import ArgumentParser
import Foundation
import Jobs

struct Recover: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Recover sessions with the three strategies: session string, session file, backups.",
    discussion: """
      For each user: (1) rebuild a missing or broken session file from the database's session
      string; (2) keep a valid file and store its string when the database's is missing or stale;
      (3) repair from the newest valid backup (per-user archives, full snapshots, session_backups
      rows, the .session.backup file). A result is accepted only if it validates. Healthy users
      are left alone; nothing is ever deleted (a broken file is moved aside). Each recovered user
      gets a "Post successful recovery" backup.

        $ tgsess recover --user 42
        $ tgsess recover --all --json

      EXIT STATUS: 0 all healthy · 3 some users unrecoverable (each named) · 1 failed · 75 lock held
      """)

  @OptionGroup var global: GlobalOptions
  @Option(help: "Recover this user.") var user: Int64?
  @Flag(help: "Recover every user.") var all = false
  @Flag(help: "Recover although the bot seems to run.") var force = false
  @Option(help: "Seconds to wait for the deployment lock.") var lockWait = 0

  func validate() throws {
    if (user == nil) == !all { throw ValidationError("pass --user ID or --all. Try: tgsess recover --user 42") }
  }

  func run() throws {
    let (deployment, logger) = try global.setUp()
    let result = try RecoverJob.run(
      deployment, options: RecoverOptions(userID: user, isForced: force, lockWait: TimeInterval(lockWait)),
      logger: logger)
    if global.json {
      try Output.json(result)
    } else {
      for user in result.users where user.outcome != .healthy || self.user != nil {
        let how = user.strategy.map { " by \($0.label.dropFirst(4))" } ?? ""
        Output.line("user \(user.userID): \(user.outcome.rawValue)\(how): \(user.detail)")
        if let backup = user.backupID { Output.line("  backup \(backup)") }
      }
      Output.line(
        "\(result.users.count) users: \(result.healthy) healthy, \(result.recovered) recovered, \(result.unrecoverable) unrecoverable"
      )
    }
    if result.unrecoverable > 0 { throw ExitCode(ExitStatus.partial) }
  }
}

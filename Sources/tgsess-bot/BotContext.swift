import Foundation
import Jobs
import Logging
import Store

/// What the poller, the command handler and the monitor share. Immutable; the database and the
/// job queue are safe to use from any task.
struct BotContext: Sendable {
  let api: BotAPI
  let deployment: Deployment
  /// The runner's own connection: the offset, notification memory and /status reads.
  let database: BotDatabase
  let jobs: JobQueue
  let adminIDs: Set<Int64>
  let pollTimeoutSeconds: Int
  let monitorInterval: Duration
  let redact: Redactor
  let logger: Logger

  /// Seconds a command's job waits for the deployment lock (a cron backup may hold it briefly).
  static let commandLockWait: TimeInterval = 30

  func isAdmin(_ userID: Int64) -> Bool { adminIDs.contains(userID) }

  /// A logger for a job: the jobs log their own notice lines; `quiet` keeps only warnings, for the
  /// runs the runner sums up in one line of its own.
  func jobLogger(quiet: Bool = false) -> Logger {
    var logger = self.logger
    if quiet { logger.logLevel = max(logger.logLevel, .warning) }
    return logger
  }

  /// The users to restore on start-up: every row and every session file, except users who logged
  /// out and have no session file (recovering them would bring back a session they ended).
  func usersToRecover() throws -> (users: [Int64], skipped: Int) {
    let rows = try database.userIDs()
    let files = try deployment.sessionFileUserIDs()
    let loggedOut = try database.loggedOutUserIDs()
    let fileSet = Set(files)
    let all = Set(rows).union(files)
    let skipped = all.filter { loggedOut.contains($0) && !fileSet.contains($0) }
    return (all.subtracting(skipped).sorted(), skipped.count)
  }
}

/// Plain words for users, from the texts that Store and Jobs write for operators.
enum UserWords {
  /// A `last_error` in words: check records reasons only; here paths become "session file" and
  /// Telegram error names are explained.
  static func lastError(_ text: String, root: String) -> String {
    let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
    if trimmed.wholeMatch(of: /[A-Z][A-Z0-9_]{2,63}/) != nil {
      let classified = ErrorClassifier.classify(trimmed)
      let words = classified.summary.components(separatedBy: " (").first ?? classified.summary
      return classified.isFatal
        ? "\(words). Telegram no longer accepts this session; you need to log in again."
        : "\(words). This is temporary; your session is kept."
    }
    var clauses: [String] = []
    for part in trimmed.components(separatedBy: "; ") {
      var clause = part.replacingOccurrences(of: root + "/", with: "")
      clause = clause.replacing(#/\S*user_[0-9]+\.session(\.backup)?: /#, with: "session file: ")
      if !clause.isEmpty, !clauses.contains(clause) { clauses.append(clause) }
    }
    return clauses.isEmpty ? "a problem with your session file" : clauses.joined(separator: "; ")
  }

  /// What is wrong with a session file ("not an SQLite database"): the problem's reason alone.
  static func problem(_ error: any Error) -> String {
    if let error = error as? StoreError, case .session(_, let problem) = error { return problem.reason }
    return "unreadable"
  }

  /// What the user can do about a session problem, in plain words (no commands of the host).
  static func remedy(_ remedy: SessionRemedy) -> String {
    switch remedy {
    case .recoverFromBackup, .checkPathOrRecover: return "send /recover to restore your session from a backup"
    case .logInAgainOrRecover: return "send /recover; if that does not help, log in again"
    case .copyStringAgain, .checkStringSource: return "log in again"
    case .waitForWriter, .rollBackJournal: return "wait a minute, then send /status again"
    case .checkPermissions, .checkWriteAheadLog: return "ask the administrator to check the server's files"
    case .upgradeTgsess: return "ask the administrator to upgrade tgsess"
    }
  }

  /// What a strategy did, for the user.
  static func strategy(_ strategy: RecoveryStrategy) -> String {
    switch strategy {
    case .sessionString: return "rebuilt your session file from the session string saved in the database"
    case .sessionFile: return "kept your session file and saved its session string in the database"
    case .backup: return "restored your session from a backup"
    }
  }

  /// Whether a job failed because another tgsess process holds the deployment lock.
  static func isLocked(_ error: any Error) -> Bool {
    if let error = error as? JobError, case .store(_, let underlying) = error, case .locked = underlying { return true }
    if let error = error as? StoreError, case .locked = error { return true }
    return false
  }

  /// A job error for a log line (operators see paths; the redactor still runs over it).
  static func describe(_ error: any Error) -> String {
    (error as? LocalizedError)?.errorDescription ?? String(describing: error)
  }
}

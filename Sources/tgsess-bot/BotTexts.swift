import Foundation
import Jobs
import Store

/// Every text the bot sends a user, in one place. Plain words: no paths, no CLI hints, no ids but
/// the user's own and archive ids.
enum BotTexts {
  // MARK: Help and routing

  static let help = """
    tgsess keeps your Telegram session safe across bot restarts.

    /status – your session, its health and its backups
    /recover – repair your session without logging in again
    /logout – back up your session, then remove it from the bot
    """

  static let adminHelp = """

    Admin: /backup – full backup now · /check – health summary
    """

  static let menu: [[InlineButton]] = [
    [InlineButton(text: "Status", data: "status"), InlineButton(text: "Recover", data: "recover")],
    [InlineButton(text: "Logout", data: "logout")],
  ]

  static func help(isAdmin: Bool) -> String { help + (isAdmin ? adminHelp : "") }

  static let privateChatOnly = "Please send me commands in a private chat."

  static func unknownCommand(_ raw: String) -> String { "Unknown command \(raw).\n\n" }

  static func ownSessionOnly(_ command: String) -> String {
    "You can only act on your own session. Send /\(command) on its own to see yours."
  }

  static func adminOnly(_ command: String) -> String {
    "Sorry, \(command) is only for the bot's administrators. Send /status to see your session."
  }

  static let buttonOfAnotherUser = "This button belongs to another user."
  static let buttonNoLongerValid = "This button is no longer valid. Send /start."
  static let noSession = "You have no session with this bot."
  static let noSessionLogInFirst = "You have no session with this bot. Log in first."

  // MARK: /status

  static func status(_ row: BotUserStatus, file: SessionFileState, root: String) -> String {
    if !row.hasRow, case .missing = file {
      return row.backupCount > 0
        ? "You have no session with this bot now. Backups kept: \(row.backupCount) (newest \(row.newestBackupAt ?? "?") UTC)."
        : noSessionLogInFirst
    }
    var lines = ["Your session (user \(row.userID))"]
    switch file {
    case .valid: lines.append("Session file: present and readable")
    case .missing:
      lines.append(row.status == .loggedOut ? "Session file: removed at logout" : "Session file: missing")
    case .damaged(let why): lines.append("Session file: damaged (\(why))")
    }
    switch row.status {
    case .loggedOut: lines.append("Account: logged out (your backups are kept)")
    case .revoked: lines.append("Account: revoked by Telegram (you need to log in again)")
    case .active: lines.append("Account: active")
    }
    let checked = row.lastCheckedAt.map { "last checked \($0) UTC" } ?? "never checked"
    let health: String
    switch row.health {
    case .ok: health = "healthy"
    case .warning: health = "warning"
    case .critical: health = "critical"
    case .unknown: health = "unknown"
    }
    lines.append("Health: \(health) (\(checked))")
    lines.append("Last error: \(row.lastError.map { UserWords.lastError($0, root: root) } ?? "none")")
    if let newest = row.newestBackupAt {
      lines.append("Newest backup: \(newest) UTC\(row.newestBackupReason.map { " (\($0))" } ?? "")")
    } else {
      lines.append("Newest backup: none yet")
    }
    lines.append("Backups kept: \(row.backupCount)")
    if case .valid = file {
    } else if row.status != .loggedOut {
      lines.append("")
      lines.append("Send /recover to repair it without logging in again.")
    }
    return lines.joined(separator: "\n")
  }

  // MARK: /recover

  static let recovering = "Recovering your session…"
  static let recoveringButton = "Recovering…"
  static let nothingToRecoverLoggedOut =
    "You logged out, so there is no session to recover. Your backups are kept; log in again to use the bot."
  static let recoverLocked =
    "Another maintenance job (a backup or a restore) is running. Nothing was changed; try /recover again in a minute."
  static let recoverInUse =
    "Your session file is in use by another program right now (the bot that works for you, most likely), so it was not replaced. Nothing was changed; try /recover again once it has stopped, or ask the administrators."
  static let recoverFailed =
    "Recovery could not run (the server reported an error; the administrators can see it in the log). Nothing was deleted; try /recover again later."

  static func recovery(_ recovery: UserRecovery?) -> String {
    guard let recovery else { return "Nothing to recover." }
    switch recovery.outcome {
    case .healthy:
      return "Your session is healthy: the file and the database agree. Nothing to do."
    case .recovered:
      var text = "Recovered: " + (recovery.strategy.map(UserWords.strategy) ?? "repaired your session") + "."
      if let backupID = recovery.backupID { text += "\nA backup of the recovered session was taken: \(backupID)." }
      return text
    case .unrecoverable:
      return """
        Could not recover your session: none of the three strategies found a valid copy.
        What to do next: log in again with the bot. Nothing was deleted and your backups are kept, so an administrator can still restore an older copy.
        """
    }
  }

  // MARK: /logout

  static let logoutQuestion = """
    Log out? The bot will stop using your account: it backs up your session first, then removes the session file. Your backups are kept.
    """
  static let logoutYesButton = "Yes, log me out"
  static let logoutCancelButton = "Cancel"
  static let loggingOutButton = "Logging out…"
  static let cancelledButton = "Cancelled"
  static let logoutCancelled = "Logout cancelled. Your session is unchanged."
  static let alreadyLoggedOut = "You are already logged out."
  static let logoutLocked = "Another maintenance job is running. Nothing was changed; try /logout again in a minute."
  static let logoutFailed =
    "Logout stopped: the backup before logout failed, so nothing was removed. Try again later; the administrators can see the error in the log."

  static func loggedOut(archiveID: String?) -> String {
    """
    You are logged out. The bot no longer has your session file.
    Backup taken before logout: \(archiveID ?? "none").
    Your backups are kept. To end the session on Telegram's side too, close it in Telegram: Settings → Devices.
    """
  }

  static func logoutRefused(_ refusal: LogoutRefusal) -> String {
    switch refusal {
    case .damagedSessionFile(let path, let problem):
      return
        "Your session file is damaged (\(UserWords.problem(StoreError.session(object: path, reason: problem)))), so it cannot be backed up. Nothing was removed. Send /recover first, then /logout."
    case .backupNotProven:
      return "The backup before logout could not be proven, so nothing was removed. Try again later."
    }
  }

  // MARK: Admin

  static let backupRunning = "Full backup running…"

  static func backupDone(_ backup: BackupResult) -> String {
    let full = backup.archives.first
    var lines = [
      "Backup done: \(full?.id ?? "?") (\(backup.users) users, \(backup.bytesOut / 1024) KiB, \(backup.durationMS) ms)."
    ]
    if backup.archives.count > 1 {
      lines.append("Per-user backups of changed sessions: \(backup.archives.count - 1).")
    }
    if !backup.failures.isEmpty {
      lines.append("\(backup.failures.count) user(s) could not be backed up:")
      lines += backup.failures.prefix(20).map { "• user \($0.userID): \($0.reason)" }
    }
    return lines.joined(separator: "\n")
  }

  static func backupFailed(_ description: String) -> String { "Backup failed: \(description)" }

  static func check(_ check: CheckResult) -> String {
    var lines = [
      "Check: \(check.state.rawValue.uppercased()) – \(check.summary)",
      "Sessions: \(check.sessions.ok) ok, \(check.sessions.warning) warning, \(check.sessions.critical) critical; archives: \(check.archives)",
    ]
    let problems = check.findings.filter { $0.state != .ok }.sorted { $0.state > $1.state }
    if !problems.isEmpty {
      lines.append("")
      lines += problems.prefix(40).map { "• \($0.state.rawValue): \($0.message)" }
      if problems.count > 40 { lines.append("… and \(problems.count - 40) more (run tgsess check on the host)") }
    }
    return lines.joined(separator: "\n")
  }
}

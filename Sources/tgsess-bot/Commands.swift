import Foundation
import Jobs
import Logging
import Store

/// Answers one update at a time. Every command acts on the sender's (`from.id`) own session;
/// nothing a user types can name another user's session.
struct CommandHandler: Sendable {
  let context: BotContext

  var api: BotAPI { context.api }
  var logger: Logger { context.logger }

  static let helpText = """
    tgsess keeps your Telegram session safe across bot restarts.

    /status – your session, its health and its backups
    /recover – repair your session without logging in again
    /logout – back up your session, then remove it from the bot
    """

  static let adminHelpText = """

    Admin: /backup – full backup now · /check – health summary
    """

  /// Handles one update; failures are logged, never thrown (the next update must still run).
  func handle(_ update: BotUpdate) async {
    do {
      switch update.kind {
      case .message(let message): try await handle(message)
      case .callback(let callback): try await handle(callback)
      case .ignored(let what):
        logger.debug("update ignored", metadata: ["update.id": "\(update.id)", "update.kind": "\(what)"])
      }
    } catch is CancellationError {
      logger.notice("update interrupted", metadata: ["update.id": "\(update.id)"])
    } catch {
      logger.error(
        "could not answer an update",
        metadata: ["update.id": "\(update.id)", "error": "\(context.redact(UserWords.describe(error)))"])
    }
  }

  // MARK: Messages

  func handle(_ message: IncomingMessage) async throws {
    let chatID = message.chatID
    let userID = message.fromID
    // /status shows a user's session details: only in their private chat with the bot.
    guard message.chatType == "private" else {
      if let text = message.text, BotCommand.parse(text) != nil {
        try await api.sendMessage(chatID: chatID, text: "Please send me commands in a private chat.")
      }
      return
    }
    guard let text = message.text, let command = BotCommand.parse(text) else {
      try await api.sendMessage(chatID: chatID, text: help(for: userID))
      return
    }
    logger.info(
      "command", metadata: ["user.id": "\(userID)", "command": "\(command.name?.rawValue ?? "unknown")"])
    // A command names no user: an argument that looks like a user id is someone else's session.
    if let name = command.name, [.status, .recover, .logout].contains(name), !command.argument.isEmpty {
      if let other = Int64(command.argument.filter { !$0.isWhitespace }), other != userID {
        logger.warning(
          "refused: a user named another user's session",
          metadata: ["user.id": "\(userID)", "target.id": "\(other)", "command": "\(name.rawValue)"])
        try await api.sendMessage(
          chatID: chatID,
          text: "You can only act on your own session. Send /\(name.rawValue) on its own to see yours.")
        return
      }
    }
    switch command.name {
    case .start:
      try await api.sendMessage(chatID: chatID, text: help(for: userID), keyboard: Self.menu)
    case .help, .none:
      try await api.sendMessage(
        chatID: chatID, text: (command.name == nil ? "Unknown command \(command.raw).\n\n" : "") + help(for: userID))
    case .status: try await status(chatID: chatID, userID: userID)
    case .recover: try await recover(chatID: chatID, userID: userID)
    case .logout: try await askLogout(chatID: chatID, userID: userID)
    case .backup:
      guard try await requireAdmin(chatID: chatID, userID: userID, command: "/backup") else { return }
      try await backup(chatID: chatID, userID: userID)
    case .check:
      guard try await requireAdmin(chatID: chatID, userID: userID, command: "/check") else { return }
      try await check(chatID: chatID)
    }
  }

  static let menu: [[InlineButton]] = [
    [InlineButton(text: "Status", data: "status"), InlineButton(text: "Recover", data: "recover")],
    [InlineButton(text: "Logout", data: "logout")],
  ]

  func help(for userID: Int64) -> String {
    Self.helpText + (context.isAdmin(userID) ? Self.adminHelpText : "")
  }

  func requireAdmin(chatID: Int64, userID: Int64, command: String) async throws -> Bool {
    if context.isAdmin(userID) { return true }
    logger.warning(
      "refused: admin command from a non-admin", metadata: ["user.id": "\(userID)", "command": "\(command)"])
    try await api.sendMessage(
      chatID: chatID, text: "Sorry, \(command) is only for the bot's administrators. Send /status to see your session.")
    return false
  }

  // MARK: Callback buttons

  func handle(_ callback: IncomingCallback) async throws {
    let userID = callback.fromID
    // In a private chat the chat id is the user id; inline-mode buttons carry no message.
    let chatID = callback.chatID ?? userID
    let parts = (callback.data ?? "").split(separator: ":").map(String.init)
    let action = parts.first ?? ""
    // Confirmation buttons name the user they were made for: a button shown to one user and
    // pressed by another (a forwarded message, a group) acts on nobody.
    if parts.count == 2, action.hasPrefix("logout-") {
      guard Int64(parts[1]) == userID else {
        logger.warning(
          "refused: a button pressed by another user", metadata: ["user.id": "\(userID)", "button": "\(action)"])
        try await api.answerCallbackQuery(id: callback.id, text: "This button belongs to another user.")
        return
      }
    }
    switch action {
    case "status":
      try await api.answerCallbackQuery(id: callback.id)
      try await status(chatID: chatID, userID: userID)
    case "recover":
      try await api.answerCallbackQuery(id: callback.id, text: "Recovering…")
      try await recover(chatID: chatID, userID: userID)
    case "logout":
      try await api.answerCallbackQuery(id: callback.id)
      try await askLogout(chatID: chatID, userID: userID)
    case "logout-yes" where parts.count == 2:
      try await api.answerCallbackQuery(id: callback.id, text: "Logging out…")
      try await logout(chatID: chatID, userID: userID, confirmationMessageID: callback.messageID)
    case "logout-no" where parts.count == 2:
      try await api.answerCallbackQuery(id: callback.id, text: "Cancelled")
      if let messageID = callback.messageID {
        try await api.editMessageText(
          chatID: chatID, messageID: messageID, text: "Logout cancelled. Your session is unchanged.")
      }
    default:
      logger.warning(
        "unknown button", metadata: ["user.id": "\(userID)", "button.bytes": "\(callback.data?.utf8.count ?? 0)"])
      try await api.answerCallbackQuery(id: callback.id, text: "This button is no longer valid. Send /start.")
    }
  }

  // MARK: /status

  /// What the user's session looks like on disk.
  enum FileState: Sendable {
    case valid
    case missing
    case damaged(String)
  }

  func fileState(userID: Int64) async -> FileState {
    let path = context.deployment.sessionPath(userID: userID)
    return
      (try? await blocking { () -> FileState in
        guard FileSystem.exists(path) else { return .missing }
        do {
          _ = try SessionFileInspector.inspect(path: path)
          return .valid
        } catch {
          return .damaged(UserWords.problem(error))
        }
      }) ?? .damaged("unreadable")
  }

  func status(chatID: Int64, userID: Int64) async throws {
    let database = context.database
    let row = try await blocking { try database.botUserStatus(userID: userID) }
    let file = await fileState(userID: userID)
    try await api.sendMessage(chatID: chatID, text: Self.statusText(row, file: file, root: context.deployment.root))
  }

  static func statusText(_ row: BotUserStatus, file: FileState, root: String) -> String {
    if !row.hasRow, case .missing = file {
      return row.backupCount > 0
        ? "You have no session with this bot now. Backups kept: \(row.backupCount) (newest \(row.newestBackupAt ?? "?") UTC)."
        : "You have no session with this bot. Log in first."
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

  func recover(chatID: Int64, userID: Int64) async throws {
    let database = context.database
    let row = try await blocking { try database.botUserStatus(userID: userID) }
    let file = await fileState(userID: userID)
    if case .missing = file {
      if row.status == .loggedOut {
        try await api.sendMessage(
          chatID: chatID,
          text: "You logged out, so there is no session to recover. Your backups are kept; log in again to use the bot."
        )
        return
      }
      if !row.hasRow && row.backupCount == 0 {
        try await api.sendMessage(chatID: chatID, text: "You have no session with this bot. Log in first.")
        return
      }
    }
    let messageID = try await api.sendMessage(chatID: chatID, text: "Recovering your session…")
    let progress = RecoverProgressBox()
    let (events, continuation) = AsyncStream.makeStream(of: RecoverProgress.self)
    let deployment = context.deployment
    let jobLogger = context.jobLogger()
    async let outcome = context.jobs.run {
      defer { continuation.finish() }
      return try RecoverJob.run(
        deployment,
        options: RecoverOptions(userID: userID, isForced: true, lockWait: BotContext.commandLockWait),
        logger: jobLogger, progress: { continuation.yield($0) })
    }
    // The job reports steps as they happen; the message shows them at most about once a second.
    let start = ProgressEditor(api: api, chatID: chatID, messageID: messageID)
    var editor = await withTaskGroup(of: ProgressEditor?.self) { group in
      group.addTask {
        for await event in events { await progress.apply(event) }
        await progress.markDone()
        return nil
      }
      group.addTask {
        var ticking = start
        while true {
          try? await Task.sleep(for: .milliseconds(250))
          let (text, isDone) = await progress.snapshot()
          if isDone { return ticking }
          await ticking.update(text)
        }
      }
      var last = start
      for await value in group { if let value { last = value } }
      return last
    }
    let steps = await progress.snapshot().text
    let text: String
    switch await outcome {
    case .success(let result):
      let recovery = result.users.first
      text = steps + "\n\n" + Self.recoveryText(recovery)
      logger.notice(
        "recover by command",
        metadata: [
          "user.id": "\(userID)", "outcome": "\(recovery?.outcome.rawValue ?? "none")",
          "strategy": "\(recovery?.strategy?.rawValue ?? "-")",
        ])
    case .failure(let error):
      logger.error(
        "recover by command failed",
        metadata: ["user.id": "\(userID)", "error": "\(context.redact(UserWords.describe(error)))"])
      text =
        UserWords.isLocked(error)
        ? "Another maintenance job (a backup or a restore) is running. Nothing was changed; try /recover again in a minute."
        : "Recovery could not run (the server reported an error; the administrators can see it in the log). Nothing was deleted; try /recover again later."
    }
    await editor.finish(text)
  }

  static func recoveryText(_ recovery: UserRecovery?) -> String {
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

  func askLogout(chatID: Int64, userID: Int64) async throws {
    let database = context.database
    let row = try await blocking { try database.botUserStatus(userID: userID) }
    let file = await fileState(userID: userID)
    if case .missing = file, row.status == .loggedOut || !row.hasRow {
      try await api.sendMessage(
        chatID: chatID,
        text: row.status == .loggedOut ? "You are already logged out." : "You have no session with this bot.")
      return
    }
    try await api.sendMessage(
      chatID: chatID,
      text: """
        Log out? The bot will stop using your account: it backs up your session first, then removes the session file. Your backups are kept.
        """,
      keyboard: [
        [
          InlineButton(text: "Yes, log me out", data: "logout-yes:\(userID)"),
          InlineButton(text: "Cancel", data: "logout-no:\(userID)"),
        ]
      ])
  }

  /// What a logout did.
  struct LogoutDone: Sendable {
    var archiveID: String?
    var wasAlreadyLoggedOut: Bool
  }

  /// A logout that stopped before removing anything.
  struct LogoutRefused: Error {
    var reason: String
  }

  func logout(chatID: Int64, userID: Int64, confirmationMessageID: Int64?) async throws {
    let deployment = context.deployment
    let jobLogger = context.jobLogger()
    let result = await context.jobs.run { () throws -> LogoutDone in
      try Self.performLogout(deployment: deployment, userID: userID, logger: jobLogger)
    }
    let text: String
    switch result {
    case .success(let done) where done.wasAlreadyLoggedOut:
      text = "You are already logged out."
    case .success(let done):
      logger.notice("logout", metadata: ["user.id": "\(userID)", "archive.id": "\(done.archiveID ?? "-")"])
      text = """
        You are logged out. The bot no longer has your session file.
        Backup taken before logout: \(done.archiveID ?? "none").
        Your backups are kept. To end the session on Telegram's side too, close it in Telegram: Settings → Devices.
        """
    case .failure(let error as LogoutRefused):
      logger.warning("logout refused", metadata: ["user.id": "\(userID)", "reason": "\(error.reason)"])
      text = error.reason
    case .failure(let error):
      logger.error(
        "logout failed", metadata: ["user.id": "\(userID)", "error": "\(context.redact(UserWords.describe(error)))"])
      text =
        UserWords.isLocked(error)
        ? "Another maintenance job is running. Nothing was changed; try /logout again in a minute."
        : "Logout stopped: the backup before logout failed, so nothing was removed. Try again later; the administrators can see the error in the log."
    }
    if let confirmationMessageID {
      try await api.editMessageText(chatID: chatID, messageID: confirmationMessageID, text: text)
    } else {
      try await api.sendMessage(chatID: chatID, text: text)
    }
  }

  /// The logout itself, under the deployment lock so a cron backup never interleaves: a per-user
  /// backup ("Before logout"), proven; only then the session file (and its sidecars and the seed's
  /// `.session.backup`) removed; then the row marked `logged_out`. Idempotent: a replayed
  /// confirmation finds the user already logged out.
  static func performLogout(deployment: Deployment, userID: Int64, logger: Logger) throws -> LogoutDone {
    let lock = try DeploymentLock.acquire(
      path: deployment.lockPath, command: "tgsess-bot logout --user \(userID)", wait: BotContext.commandLockWait)
    defer { lock.release() }
    let database = try BotDatabase(
      path: deployment.databasePath, mode: .readWrite, busyTimeoutMS: deployment.busyTimeoutMS)
    defer { database.close() }
    let path = deployment.sessionPath(userID: userID)
    let hasFile = FileSystem.exists(path)
    let row = try database.botUserStatus(userID: userID)
    if !hasFile, row.status == .loggedOut || !row.hasRow {
      return LogoutDone(archiveID: nil, wasAlreadyLoggedOut: true)
    }
    if hasFile {
      do { _ = try SessionFileInspector.inspect(path: path) } catch {
        throw LogoutRefused(
          reason:
            "Your session file is damaged (\(UserWords.problem(error))), so it cannot be backed up. Nothing was removed. Send /recover first, then /logout."
        )
      }
    }
    let backup = try BackupJob.run(
      deployment, options: BackupOptions(userID: userID, reason: BackupReason.beforeLogout), logger: logger)
    guard let archive = backup.archives.first, archive.verification != .unknown, backup.failures.isEmpty else {
      throw LogoutRefused(
        reason: "The backup before logout could not be proven, so nothing was removed. Try again later.")
    }
    // The backup is written and proven: now the live copies go.
    for suffix in ["", "-journal", "-wal", "-shm", ".backup"] where FileSystem.exists(path + suffix) {
      if unlink(path + suffix) != 0 {
        throw StoreError.io(path: path + suffix, operation: "remove at logout", errno: errno)
      }
    }
    try? FileSystem.fsyncDirectory(of: path)
    try database.markLoggedOut(userID: userID)
    return LogoutDone(archiveID: archive.id, wasAlreadyLoggedOut: false)
  }

  // MARK: Admin

  func backup(chatID: Int64, userID: Int64) async throws {
    let messageID = try await api.sendMessage(chatID: chatID, text: "Full backup running…")
    let deployment = context.deployment
    let jobLogger = context.jobLogger()
    let result = await context.jobs.run {
      try BackupJob.run(
        deployment, options: BackupOptions(reason: BackupReason.manual, lockWait: BotContext.commandLockWait),
        logger: jobLogger)
    }
    let text: String
    switch result {
    case .success(let backup):
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
      text = lines.joined(separator: "\n")
      logger.notice("backup by admin", metadata: ["user.id": "\(userID)", "archive.id": "\(full?.id ?? "-")"])
    case .failure(let error):
      text = "Backup failed: \(context.redact(UserWords.describe(error)))"
      logger.error("backup by admin failed", metadata: ["error": "\(context.redact(UserWords.describe(error)))"])
    }
    try await api.editMessageText(chatID: chatID, messageID: messageID, text: text)
  }

  func check(chatID: Int64) async throws {
    let deployment = context.deployment
    let jobLogger = context.jobLogger()
    let result = await context.jobs.run { CheckJob.run(deployment, logger: jobLogger) }
    guard case .success(let check) = result else { return }
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
    try await api.sendMessage(chatID: chatID, text: context.redact(lines.joined(separator: "\n")))
  }
}

/// The lines of a live recovery: one per strategy tried.
struct RecoverSteps: Sendable {
  private var steps: [(RecoveryStrategy, Bool?)] = []

  mutating func apply(_ event: RecoverProgress) {
    if let index = steps.firstIndex(where: { $0.0 == event.strategy }) {
      steps[index].1 = event.succeeded
    } else {
      steps.append((event.strategy, event.succeeded))
    }
  }

  func render(header: String) -> String {
    ([header]
      + steps.map { strategy, succeeded in
        "\(strategy.label)… " + (succeeded.map { $0 ? "ok" : "failed" } ?? "trying")
      }).joined(separator: "\n")
  }
}

/// The steps of a running recovery, shared by the task reading the job's progress and the task
/// editing the message.
actor RecoverProgressBox {
  private var steps = RecoverSteps()
  private var isDone = false

  func apply(_ event: RecoverProgress) { steps.apply(event) }
  func markDone() { isDone = true }
  func snapshot() -> (text: String, isDone: Bool) { (steps.render(header: "Recovering your session…"), isDone) }
}

/// Edits one message with progress, at most about once a second, skipping unchanged text.
struct ProgressEditor: Sendable {
  let api: BotAPI
  let chatID: Int64
  let messageID: Int64
  var lastText = ""
  /// The message was just sent: that counts as the first "edit".
  var lastEdit = ContinuousClock.now
  static let minimumInterval = Duration.seconds(1)

  init(api: BotAPI, chatID: Int64, messageID: Int64) {
    self.api = api
    self.chatID = chatID
    self.messageID = messageID
  }

  /// Shows `text` now if the last edit is a second old; otherwise drops it (a later one follows).
  mutating func update(_ text: String) async {
    guard text != lastText, ContinuousClock.now - lastEdit >= Self.minimumInterval else { return }
    await edit(text)
  }

  /// Shows the final `text`, waiting out the rest of the second if needed.
  mutating func finish(_ text: String) async {
    guard text != lastText else { return }
    let wait = Self.minimumInterval - (ContinuousClock.now - lastEdit)
    if wait > .zero { try? await Task.sleep(for: wait) }
    await edit(text)
  }

  private mutating func edit(_ text: String) async {
    lastText = text
    lastEdit = ContinuousClock.now
    do {
      try await api.editMessageText(chatID: chatID, messageID: messageID, text: text)
    } catch {
      api.logger.warning("progress edit failed", metadata: ["error": "\(error)"])
    }
  }
}

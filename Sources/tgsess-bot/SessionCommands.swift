import Foundation
import Jobs
import Logging
import Store

/// What the user's session looks like on disk.
enum SessionFileState: Sendable {
  case valid
  case missing
  case damaged(String)
}

/// The commands every user has, each on their own session: /status, /recover, /logout.
extension CommandHandler {
  func fileState(userID: Int64) async -> SessionFileState {
    let path = context.deployment.sessionPath(userID: userID)
    return
      (try? await blocking { () -> SessionFileState in
        guard FileSystem.exists(path) else { return .missing }
        do {
          _ = try SessionFileInspector.inspect(path: path)
          return .valid
        } catch {
          return .damaged(UserWords.problem(error))
        }
      }) ?? .damaged("unreadable")
  }

  // MARK: /status

  func status(chatID: Int64, userID: Int64) async throws {
    let database = context.database
    let row = try await blocking { try database.botUserStatus(userID: userID) }
    let file = await fileState(userID: userID)
    try await api.sendMessage(chatID: chatID, text: BotTexts.status(row, file: file, root: context.deployment.root))
  }

  // MARK: /recover

  func recover(chatID: Int64, userID: Int64) async throws {
    let database = context.database
    let row = try await blocking { try database.botUserStatus(userID: userID) }
    let file = await fileState(userID: userID)
    if case .missing = file {
      if row.status == .loggedOut {
        try await api.sendMessage(chatID: chatID, text: BotTexts.nothingToRecoverLoggedOut)
        return
      }
      if !row.hasRow && row.backupCount == 0 {
        try await api.sendMessage(chatID: chatID, text: BotTexts.noSessionLogInFirst)
        return
      }
    }
    let messageID = try await api.sendMessage(chatID: chatID, text: BotTexts.recovering)
    let deployment = context.deployment
    let jobLogger = context.jobLogger()
    let options = RecoverOptions(userID: userID, isBotRunner: true, lockWait: BotContext.commandLockWait)
    // The job reports steps as they happen; the message shows them at most about once a second.
    var run = await RecoverProgressRun.run(
      on: context.jobs, message: ProgressEditor(api: api, chatID: chatID, messageID: messageID),
      header: BotTexts.recovering
    ) { report in
      try RecoverJob.run(deployment, options: options, logger: jobLogger, progress: report)
    }
    let text: String
    switch run.result {
    case .success(let result):
      let recovery = result.users.first
      text = run.steps + "\n\n" + BotTexts.recovery(recovery)
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
      if UserWords.isLocked(error) {
        text = BotTexts.recoverLocked
      } else if case JobError.refused = error {
        // The one refusal the runner meets: a process holds the file recover would replace.
        text = BotTexts.recoverInUse
      } else {
        text = BotTexts.recoverFailed
      }
    }
    await run.editor.finish(text)
  }

  // MARK: /logout

  func askLogout(chatID: Int64, userID: Int64) async throws {
    let database = context.database
    let row = try await blocking { try database.botUserStatus(userID: userID) }
    let file = await fileState(userID: userID)
    if case .missing = file, row.status == .loggedOut || !row.hasRow {
      try await api.sendMessage(
        chatID: chatID, text: row.status == .loggedOut ? BotTexts.alreadyLoggedOut : BotTexts.noSession)
      return
    }
    try await api.sendMessage(
      chatID: chatID, text: BotTexts.logoutQuestion,
      keyboard: [
        [
          InlineButton(text: BotTexts.logoutYesButton, data: "logout-yes:\(userID)"),
          InlineButton(text: BotTexts.logoutCancelButton, data: "logout-no:\(userID)"),
        ]
      ])
  }

  /// Runs `LogoutJob` for the confirmed user and answers in the confirmation message.
  func logout(chatID: Int64, userID: Int64, confirmationMessageID: Int64?) async throws {
    let deployment = context.deployment
    let jobLogger = context.jobLogger()
    let options = LogoutOptions(
      config: deployment.config, userID: userID, lockWait: BotContext.commandLockWait,
      lockCommand: "tgsess-bot logout --user \(userID)")
    let result = await context.jobs.run { try LogoutJob.run(deployment, options: options, logger: jobLogger) }
    let text: String
    switch result {
    case .success(let done):
      switch done.outcome {
      case .alreadyLoggedOut:
        text = BotTexts.alreadyLoggedOut
      case .loggedOut:
        logger.notice("logout", metadata: ["user.id": "\(userID)", "archive.id": "\(done.archive?.id ?? "-")"])
        text = BotTexts.loggedOut(archiveID: done.archive?.id)
      case .refused(let refusal):
        text = BotTexts.logoutRefused(refusal)
      }
    case .failure(let error):
      logger.error(
        "logout failed", metadata: ["user.id": "\(userID)", "error": "\(context.redact(UserWords.describe(error)))"])
      text = UserWords.isLocked(error) ? BotTexts.logoutLocked : BotTexts.logoutFailed
    }
    if let confirmationMessageID {
      try await api.editMessageText(chatID: chatID, messageID: confirmationMessageID, text: text)
    } else {
      try await api.sendMessage(chatID: chatID, text: text)
    }
  }
}

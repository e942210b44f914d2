import Foundation
import Jobs
import Logging
import Store

/// The administrators' commands: /backup and /check.
extension CommandHandler {
  /// A full backup now, with the deployment's `[backup]` settings (as cron's `tgsess backup`
  /// has them) and the bot's own lock wait.
  func backup(chatID: Int64, userID: Int64) async throws {
    let messageID = try await api.sendMessage(chatID: chatID, text: BotTexts.backupRunning)
    let deployment = context.deployment
    let jobLogger = context.jobLogger()
    let options = BackupOptions(
      config: deployment.config,
      overrides: BackupOptions.Overrides(reason: BackupReason.manual, lockWait: BotContext.commandLockWait))
    let result = await context.jobs.run { try BackupJob.run(deployment, options: options, logger: jobLogger) }
    let text: String
    switch result {
    case .success(let backup):
      text = BotTexts.backupDone(backup)
      logger.notice(
        "backup by admin", metadata: ["user.id": "\(userID)", "archive.id": "\(backup.archives.first?.id ?? "-")"])
    case .failure(let error):
      text = BotTexts.backupFailed(context.redact(UserWords.describe(error)))
      logger.error("backup by admin failed", metadata: ["error": "\(context.redact(UserWords.describe(error)))"])
    }
    try await api.editMessageText(chatID: chatID, messageID: messageID, text: text)
  }

  func check(chatID: Int64) async throws {
    let deployment = context.deployment
    let jobLogger = context.jobLogger()
    let result = await context.jobs.run {
      CheckJob.run(deployment, options: CheckOptions(config: deployment.config), logger: jobLogger)
    }
    guard case .success(let check) = result else { return }
    try await api.sendMessage(chatID: chatID, text: context.redact(BotTexts.check(check)))
  }
}

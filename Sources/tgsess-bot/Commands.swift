import Foundation
import Logging

/// Routes one update at a time to its command. Every command acts on the sender's (`from.id`)
/// own session; nothing a user types can name another user's session. The commands live in
/// `SessionCommands.swift` and `AdminCommands.swift`, their words in `BotTexts`.
struct CommandHandler: Sendable {
  let context: BotContext

  var api: BotAPI { context.api }
  var logger: Logger { context.logger }

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
        try await api.sendMessage(chatID: chatID, text: BotTexts.privateChatOnly)
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
        try await api.sendMessage(chatID: chatID, text: BotTexts.ownSessionOnly(name.rawValue))
        return
      }
    }
    switch command.name {
    case .start:
      try await api.sendMessage(chatID: chatID, text: help(for: userID), keyboard: BotTexts.menu)
    case .help, .none:
      try await api.sendMessage(
        chatID: chatID, text: (command.name == nil ? BotTexts.unknownCommand(command.raw) : "") + help(for: userID))
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

  func help(for userID: Int64) -> String { BotTexts.help(isAdmin: context.isAdmin(userID)) }

  func requireAdmin(chatID: Int64, userID: Int64, command: String) async throws -> Bool {
    if context.isAdmin(userID) { return true }
    logger.warning(
      "refused: admin command from a non-admin", metadata: ["user.id": "\(userID)", "command": "\(command)"])
    try await api.sendMessage(chatID: chatID, text: BotTexts.adminOnly(command))
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
        try await acknowledge(callback, text: BotTexts.buttonOfAnotherUser)
        return
      }
    }
    switch action {
    case "status":
      try await acknowledge(callback)
      try await status(chatID: chatID, userID: userID)
    case "recover":
      try await acknowledge(callback, text: BotTexts.recoveringButton)
      try await recover(chatID: chatID, userID: userID)
    case "logout":
      try await acknowledge(callback)
      try await askLogout(chatID: chatID, userID: userID)
    case "logout-yes" where parts.count == 2:
      try await acknowledge(callback, text: BotTexts.loggingOutButton)
      try await logout(chatID: chatID, userID: userID, confirmationMessageID: callback.messageID)
    case "logout-no" where parts.count == 2:
      try await acknowledge(callback, text: BotTexts.cancelledButton)
      if let messageID = callback.messageID {
        try await api.editMessageText(chatID: chatID, messageID: messageID, text: BotTexts.logoutCancelled)
      }
    default:
      logger.warning(
        "unknown button", metadata: ["user.id": "\(userID)", "button.bytes": "\(callback.data?.utf8.count ?? 0)"])
      try await acknowledge(callback, text: BotTexts.buttonNoLongerValid)
    }
  }

  /// Answers a button press (stops its spinner). The answer is cosmetic, so a refused one (a
  /// query too old, as when a restart replays the update, at least once) or one that failed past
  /// its retries is logged, and the press is still acted on.
  /// - Throws: `CancellationError` only.
  func acknowledge(_ callback: IncomingCallback, text: String? = nil) async throws {
    do {
      try await api.answerCallbackQuery(id: callback.id, text: text)
    } catch let error as BotAPIError {
      logger.warning(
        "could not answer a button press; acting on it anyway",
        metadata: ["user.id": "\(callback.fromID)", "error": "\(error)"])
    }
  }
}

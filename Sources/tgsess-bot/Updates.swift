import Foundation

/// One update from getUpdates, reduced to what the runner acts on.
struct BotUpdate: Sendable, Equatable {
  var id: Int64
  var kind: Kind

  enum Kind: Sendable, Equatable {
    case message(IncomingMessage)
    case callback(IncomingCallback)
    /// Anything else (an edited message, a sticker without text…): confirmed and ignored.
    case ignored(String)
  }

  /// An update that cannot be read: logged, confirmed and skipped.
  struct Malformed: Error, CustomStringConvertible {
    var updateID: Int64?
    var reason: String
    var description: String { "update \(updateID.map(String.init) ?? "without an id"): \(reason)" }
  }

  /// Reads one element of getUpdates' result.
  /// - Throws: `Malformed` naming the update (when it has an id) and what is wrong.
  static func parse(_ value: JSONValue) throws -> BotUpdate {
    guard let id = value["update_id"]?.int else { throw Malformed(updateID: nil, reason: "no update_id") }
    if let message = value["message"] {
      guard let chatID = message["chat"]?["id"]?.int else {
        throw Malformed(updateID: id, reason: "a message without chat.id")
      }
      guard let fromID = message["from"]?["id"]?.int else {
        throw Malformed(updateID: id, reason: "a message without from.id")
      }
      return BotUpdate(
        id: id,
        kind: .message(
          IncomingMessage(
            chatID: chatID, messageID: message["message_id"]?.int ?? 0, fromID: fromID,
            chatType: message["chat"]?["type"]?.string ?? "private", text: message["text"]?.string)))
    }
    if let callback = value["callback_query"] {
      guard let queryID = callback["id"]?.string, let fromID = callback["from"]?["id"]?.int else {
        throw Malformed(updateID: id, reason: "a callback_query without id or from.id")
      }
      return BotUpdate(
        id: id,
        kind: .callback(
          IncomingCallback(
            id: queryID, fromID: fromID, chatID: callback["message"]?["chat"]?["id"]?.int,
            messageID: callback["message"]?["message_id"]?.int, data: callback["data"]?.string)))
    }
    if case .object(let object) = value {
      return BotUpdate(id: id, kind: .ignored(object.keys.filter { $0 != "update_id" }.sorted().joined(separator: ",")))
    }
    throw Malformed(updateID: id, reason: "not an object")
  }
}

/// A message the bot received.
struct IncomingMessage: Sendable, Equatable {
  var chatID: Int64
  var messageID: Int64
  /// The sender: every command acts on this user's own session only.
  var fromID: Int64
  var chatType: String
  var text: String?
}

/// A press on one of the bot's inline buttons.
struct IncomingCallback: Sendable, Equatable {
  var id: String
  var fromID: Int64
  var chatID: Int64?
  var messageID: Int64?
  var data: String?
}

/// A command the runner knows, parsed from `/name@bot args`.
struct BotCommand: Sendable, Equatable {
  enum Name: String, Sendable, CaseIterable {
    case start, help, status, recover, logout, backup, check
  }

  /// nil for an unknown command (or plain text).
  var name: Name?
  /// What followed the command, trimmed.
  var argument: String
  /// The text as typed (for logs; never a secret of ours).
  var raw: String

  /// Parses a message text; nil when it is not a command at all.
  static func parse(_ text: String) -> BotCommand? {
    let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
    guard trimmed.hasPrefix("/") else { return nil }
    let head = trimmed.prefix { !$0.isWhitespace }
    let argument = trimmed.dropFirst(head.count).trimmingCharacters(in: .whitespacesAndNewlines)
    // "/status@tgsess_bot": the suffix names the bot in group chats.
    let word = head.dropFirst().split(separator: "@", maxSplits: 1).first.map(String.init) ?? ""
    return BotCommand(name: Name(rawValue: word.lowercased()), argument: argument, raw: String(head))
  }
}

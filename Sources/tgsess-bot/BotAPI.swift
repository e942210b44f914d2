import AsyncHTTPClient
import Foundation
import Jobs
import Logging
import NIOCore

/// A failed Bot API call. Every text in it has been through the `Redactor`.
enum BotAPIError: Error, CustomStringConvertible, Sendable {
  /// 429 flood control: repeat the same request after `retryAfter` seconds.
  case flood(retryAfter: Int, description: String)
  /// 409: another getUpdates poller or a webhook.
  case conflict(String)
  /// 5xx from the server.
  case server(status: Int, description: String)
  /// No HTTP answer: refused, reset, dropped or timed out.
  case network(String)
  /// An answer that is not the Bot API's JSON.
  case malformed(String)
  /// 401 or 404: the token is wrong (or revoked). Retrying cannot help.
  case unauthorized(status: Int, description: String)
  /// 403: the user blocked the bot (or the chat is gone).
  case forbidden(String)
  /// 400 and other 4xx: the request itself is wrong.
  case badRequest(status: Int, description: String)

  var description: String {
    switch self {
    case .flood(let seconds, let text): return "429 flood control, retry after \(seconds) s: \(text)"
    case .conflict(let text): return "409 conflict: \(text)"
    case .server(let status, let text): return "server error \(status): \(text)"
    case .network(let text): return "network error: \(text)"
    case .malformed(let text): return "malformed answer: \(text)"
    case .unauthorized(let status, let text):
      return "the Bot API rejected the token (\(status) \(text)); check the token file"
    case .forbidden(let text): return "403 forbidden: \(text)"
    case .badRequest(let status, let text): return "\(status) bad request: \(text)"
    }
  }

  /// editMessageText's "message is not modified": the text is already what we wanted.
  var isNotModified: Bool {
    if case .badRequest(_, let text) = self { return text.lowercased().contains("message is not modified") }
    return false
  }

  /// Flood control asking for more than a minute: a command's reply gives up instead of
  /// holding the update loop that long.
  var isLongFlood: Bool {
    if case .flood(let seconds, _) = self { return seconds > 60 }
    return false
  }

  /// Worth repeating the same request: flood control, server errors, network errors, garbage.
  var isTransient: Bool {
    switch self {
    case .flood, .server, .network, .malformed: return true
    case .conflict, .unauthorized, .forbidden, .badRequest: return false
    }
  }
}

/// The Bot API over HTTP: `POST <base>/bot<token>/<method>` with a JSON body. One `HTTPClient`
/// serves every call; the caller owns it and shuts it down.
struct BotAPI: Sendable {
  let client: HTTPClient
  let baseURL: String
  let token: String
  let redact: Redactor
  let logger: Logger

  /// The longest answer read (getUpdates with 100 updates stays far below this).
  static let maxBodyBytes = 8 * 1024 * 1024

  /// Calls `method` once.
  /// - Returns: the answer's `result`.
  /// - Throws: `BotAPIError` (redacted); `CancellationError` when the task is cancelled.
  func call(_ method: String, _ parameters: [String: JSONValue] = [:], timeout: Duration = .seconds(30))
    async throws -> JSONValue
  {
    var request = HTTPClientRequest(url: "\(baseURL)/bot\(token)/\(method)")
    request.method = .POST
    request.headers.add(name: "Content-Type", value: "application/json")
    request.headers.add(name: "User-Agent", value: "tgsess-bot")
    let body: Data
    do { body = try JSONValue.object(parameters).encoded() } catch {
      throw BotAPIError.badRequest(status: 0, description: "cannot encode the \(method) parameters")
    }
    request.body = .bytes(ByteBuffer(bytes: body))
    let status: Int
    let bytes: ByteBuffer
    do {
      let response = try await client.execute(request, timeout: .nanoseconds(Self.nanoseconds(timeout)))
      status = Int(response.status.code)
      bytes = try await response.body.collect(upTo: Self.maxBodyBytes)
    } catch is CancellationError {
      throw CancellationError()
    } catch {
      if Task.isCancelled { throw CancellationError() }
      throw BotAPIError.network(redact("\(method): \(String(describing: error))"))
    }
    return try Self.interpret(method: method, status: status, body: Data(bytes.readableBytesView), redact: redact)
  }

  /// Maps an HTTP answer to a result or a `BotAPIError`. The HTTP status decides the class of an
  /// error (as python-telegram-bot and aiogram do); `error_code` only may change.
  static func interpret(method: String, status: Int, body: Data, redact: Redactor) throws -> JSONValue {
    let parsed = try? JSONDecoder().decode(JSONValue.self, from: body)
    let description = redact(parsed?["description"]?.string ?? "HTTP \(status)")
    if let parsed, status == 200, parsed["ok"]?.bool == true {
      return parsed["result"] ?? .null
    }
    switch status {
    case 429:
      let seconds = parsed?["parameters"]?["retry_after"]?.int ?? 1
      throw BotAPIError.flood(retryAfter: Int(max(1, min(seconds, 3600))), description: description)
    case 409: throw BotAPIError.conflict(description)
    case 401, 404: throw BotAPIError.unauthorized(status: status, description: description)
    case 403: throw BotAPIError.forbidden(description)
    case 500...599: throw BotAPIError.server(status: status, description: description)
    case 200:
      if parsed == nil {
        throw BotAPIError.malformed("\(method): the answer is not JSON (\(body.count) bytes)")
      }
      throw BotAPIError.malformed("\(method): ok is not true: \(description)")
    default:
      if parsed == nil { throw BotAPIError.malformed("\(method): HTTP \(status) with a body that is not JSON") }
      throw BotAPIError.badRequest(status: status, description: description)
    }
  }

  static func nanoseconds(_ duration: Duration) -> Int64 {
    let (seconds, attoseconds) = duration.components
    return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
  }

  /// Calls `method`, repeating it on flood control (after `retry_after`), server and network
  /// errors (after a jittered backoff), at most `attempts` times in all.
  /// - Throws: the last `BotAPIError`; `CancellationError`.
  func send(
    _ method: String, _ parameters: [String: JSONValue], attempts: Int = 4, timeout: Duration = .seconds(30)
  ) async throws -> JSONValue {
    var backoff = Backoff(base: .milliseconds(500), cap: .seconds(10))
    var attempt = 0
    while true {
      attempt += 1
      do {
        return try await call(method, parameters, timeout: timeout)
      } catch let error as BotAPIError where error.isTransient && attempt < attempts && !error.isLongFlood {
        let delay: Duration
        if case .flood(let seconds, _) = error {
          // python-telegram-bot adds half a second of slack to Telegram's wait.
          delay = .seconds(seconds) + .milliseconds(500)
        } else {
          delay = backoff.next()
        }
        logger.warning(
          "Bot API call failed, repeating it",
          metadata: [
            "api.method": "\(method)", "attempt": "\(attempt)", "retry.delay_ms": "\(delay.milliseconds)",
            "error": "\(error)",
          ])
        try await Task.sleep(for: delay)
      }
    }
  }

  // MARK: The methods the runner uses.

  /// Sends `text` (split into messages of at most 4096 characters) to `chatID`.
  /// - Returns: the id of the last message sent.
  @discardableResult
  func sendMessage(chatID: Int64, text: String, keyboard: [[InlineButton]]? = nil) async throws -> Int64 {
    let parts = MessageText.split(text)
    var lastID: Int64 = 0
    for (index, part) in parts.enumerated() {
      var parameters: [String: JSONValue] = ["chat_id": .int(chatID), "text": .string(part)]
      if let keyboard, index == parts.count - 1 { parameters["reply_markup"] = InlineButton.markup(keyboard) }
      let result = try await send("sendMessage", parameters)
      lastID = result["message_id"]?.int ?? 0
    }
    return lastID
  }

  /// Replaces the text of a message; "message is not modified" counts as success.
  func editMessageText(chatID: Int64, messageID: Int64, text: String) async throws {
    do {
      _ = try await send(
        "editMessageText",
        ["chat_id": .int(chatID), "message_id": .int(messageID), "text": .string(MessageText.truncate(text))])
    } catch let error as BotAPIError where error.isNotModified {
      return
    }
  }

  /// Stops the button's spinner, optionally with a short notice (at most 200 characters).
  func answerCallbackQuery(id: String, text: String? = nil) async throws {
    var parameters: [String: JSONValue] = ["callback_query_id": .string(id)]
    if let text { parameters["text"] = .string(String(text.prefix(200))) }
    _ = try await send("answerCallbackQuery", parameters)
  }
}

/// An inline keyboard button that sends `data` (1–64 bytes) back as a callback query.
struct InlineButton: Sendable {
  var text: String
  var data: String

  static func markup(_ rows: [[InlineButton]]) -> JSONValue {
    .object([
      "inline_keyboard": .array(
        rows.map { row in .array(row.map { .object(["text": .string($0.text), "callback_data": .string($0.data)]) }) })
    ])
  }
}

/// Telegram's message length limit: 4096 characters after entity parsing, counted by the
/// Bot API in UTF-16 code units. Plain text only (no parse_mode), so nothing is parsed away.
enum MessageText {
  static let limit = 4096

  /// `text` in pieces of at most `limit` UTF-16 units, split at line breaks where possible.
  static func split(_ text: String, limit: Int = limit) -> [String] {
    guard !text.isEmpty else { return ["…"] }
    var parts: [String] = []
    var current: String?
    for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
      var line = String(line)
      while line.utf16.count > limit {
        if let pending = current { parts.append(pending) }
        current = nil
        let head = prefix(line, utf16Count: limit)
        parts.append(head)
        line = String(line.dropFirst(head.count))
      }
      if let pending = current {
        let candidate = pending + "\n" + line
        if candidate.utf16.count > limit {
          parts.append(pending)
          current = line
        } else {
          current = candidate
        }
      } else {
        current = line
      }
    }
    if let current { parts.append(current) }
    // Telegram refuses an empty text.
    return parts.map { $0.isEmpty ? "…" : $0 }
  }

  /// `text` cut to the limit, ending in "…" when cut.
  static func truncate(_ text: String, limit: Int = limit) -> String {
    if text.isEmpty { return "…" }
    guard text.utf16.count > limit else { return text }
    return prefix(text, utf16Count: limit - 1) + "…"
  }

  /// The longest prefix of whole characters that fits in `count` UTF-16 units.
  static func prefix(_ text: String, utf16Count count: Int) -> String {
    var used = 0
    var end = text.startIndex
    for character in text {
      let size = character.utf16.count
      if used + size > count { break }
      used += size
      end = text.index(after: end)
    }
    return String(text[..<end])
  }
}

/// Exponential backoff with jitter: each delay is random in [ceiling/2, ceiling], where the ceiling
/// is `RetryPolicy`'s (doubling per failure up to `cap`), so a failing loop never spins.
struct Backoff: Sendable {
  let policy: RetryPolicy
  private var failures = 0

  init(base: Duration, cap: Duration) {
    policy = RetryPolicy(base: base, cap: cap)
  }

  mutating func next() -> Duration {
    failures += 1
    let ceilingMS = max(2, policy.backoffCeiling(forAttempt: failures).milliseconds)
    return .milliseconds(Int64.random(in: (ceilingMS / 2)...ceilingMS))
  }

  mutating func reset() { failures = 0 }
}

extension Duration {
  var milliseconds: Int64 {
    let (seconds, attoseconds) = components
    return seconds * 1000 + attoseconds / 1_000_000_000_000_000
  }
}

import Foundation
import Logging

/// Removes the bot token from text. The token is part of every Bot API URL
/// (`<base>/bot<token>/<method>`), so any URL, HTTP error or request description may hold it;
/// everything the runner logs or prints passes through here first.
struct Redactor: Sendable {
  /// The configured token, replaced wherever it appears.
  private let token: String?

  init(token: String?) {
    self.token = token.flatMap { $0.isEmpty ? nil : $0 }
  }

  /// `text` with the configured token and anything shaped like a bot token (`<digits>:<35 url-safe
  /// characters>`) replaced by `<redacted>`.
  func callAsFunction(_ text: String) -> String {
    var result = text
    if let token, result.contains(token) {
      result = result.replacingOccurrences(of: token, with: "<redacted>")
    }
    // Tokens of other bots, or a token with its colon percent-encoded, must not leak either.
    return result.replacing(Self.tokenShape, with: "<redacted>")
  }

  /// `123456:ABC…` and `123456%3AABC…`: Telegram's tokens are a bot id and a 35-character secret.
  nonisolated(unsafe) private static let tokenShape = /[0-9]{3,}(:|%3[Aa])[A-Za-z0-9_-]{30,}/
}

/// A `LogHandler` writing one line per event to standard error, with the token redacted from the
/// message, the metadata and the attached error.
struct RedactingLogHandler: LogHandler {
  let label: String
  let redact: Redactor
  var logLevel: Logger.Level
  var metadata: Logger.Metadata = [:]
  var metadataProvider: Logger.MetadataProvider?

  private static let lock = NSLock()

  init(label: String, level: Logger.Level, redactor: Redactor) {
    self.label = label
    self.logLevel = level
    self.redact = redactor
  }

  subscript(metadataKey key: String) -> Logger.Metadata.Value? {
    get { metadata[key] }
    set { metadata[key] = newValue }
  }

  func log(event: LogEvent) {
    var merged = metadata
    if let provided = metadataProvider?.get() { merged.merge(provided) { $1 } }
    if let extra = event.metadata { merged.merge(extra) { $1 } }
    var line = "\(Self.timestamp()) \(event.level) \(label): \(event.message)"
    if !merged.isEmpty {
      line += " " + merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
    }
    if let error = event.error { line += " error=\(error)" }
    let text = redact(line) + "\n"
    Self.lock.withLock {
      FileHandle.standardError.write(Data(text.utf8))
    }
  }

  private static func timestamp() -> String {
    Date().formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
  }
}

import Foundation

/// Whether an error means that a session is dead or only that one attempt failed.
///
/// There is no `.ok`: a success is not an error; `RetryOutcome` reports successes.
public enum ErrorClass: String, Sendable, Codable {
  /// The session is really dead and needs a new login (but see `ClassifiedError.needsConfirmation`).
  case fatal
  /// Anything else: retry later and keep the session. The seed guide: "Everything else is treated as temporary".
  case temporary
}

/// An error reduced to what tgsess acts on: its class, a normalised Telegram error name and a wait.
///
/// It holds no text from the input except a validated `[A-Z0-9_]` identifier and a number of seconds, so it is
/// safe to log, to print and to put in `--json` even when the input held a session string or a bot token.
public struct ClassifiedError: Error, Sendable, Hashable, CustomStringConvertible {
  /// Fatal or temporary.
  public var `class`: ErrorClass
  /// The normalised name, e.g. `AUTH_KEY_UNREGISTERED`, `FLOOD_WAIT_X` (the number is in `retryAfterSeconds`),
  /// `TIMEOUT`, `CONNECTION_ERROR`, `DATABASE_LOCKED`, or `UNKNOWN`.
  public var code: String
  /// How long Telegram asked to wait (`FLOOD_WAIT_X` and the other `_WAIT_X` errors), in seconds.
  public var retryAfterSeconds: Int?
  /// Whether one more attempt must fail the same way before the session is declared dead. True for every fatal
  /// error: `AUTH_KEY_UNREGISTERED` has been seen transiently during Telegram incidents (Telethon #3701).
  public var needsConfirmation: Bool
  /// Human words naming the code and the wait; never a copy of the input.
  public var summary: String

  public init(
    class errorClass: ErrorClass, code: String, retryAfterSeconds: Int? = nil, needsConfirmation: Bool? = nil,
    summary: String
  ) {
    self.class = errorClass
    self.code = code
    self.retryAfterSeconds = retryAfterSeconds
    self.needsConfirmation = needsConfirmation ?? (errorClass == .fatal)
    self.summary = summary
  }

  /// Whether the session is dead (subject to confirmation).
  public var isFatal: Bool { self.class == .fatal }

  public var description: String { summary }
}

/// Classifies what a probe, Telethon, Pyrogram or the bot printed about a failure.
///
/// Accepted shapes: a bare RPC name (`AUTH_KEY_UNREGISTERED`, `FLOOD_WAIT_30`), a Telethon exception line
/// (`telethon.errors.rpcerrorlist.FloodWaitError: A wait of 30 seconds is required (caused by GetUsersRequest)`), a
/// Telethon or Pyrogram class name (`AuthKeyDuplicatedError`, `AuthKeyUnregistered`), Pyrogram's bracket form
/// (`Telegram says: [420 FLOOD_WAIT_X] - A wait of 30 seconds...`), the seed guide's lower-case names
/// (`auth_key_invalid`, `account_banned`, `unauthorized`...), status codes (`500`, `-503 Timeout`), local errors
/// (`database is locked`, `ConnectionError`, `asyncio.TimeoutError`, `OSError`) and the probe's JSON line
/// (`{"ok": false, "error": "AUTH_KEY_UNREGISTERED", "code": 401}`).
///
/// Decisions beyond the seed's list: `SESSION_PASSWORD_NEEDED` is fatal (the login never finished, so the session
/// is not authorised and no retry can fix it); `AUTH_KEY_NOT_FOUND` (Telethon's `AuthKeyNotFound`, transport -404)
/// and `PHONE_NUMBER_BANNED` are fatal; `AUTH_KEY_PERM_EMPTY`, `USER_RESTRICTED`, `FROZEN_METHOD_INVALID` and the
/// bot-configuration errors `API_ID_INVALID`/`API_ID_PUBLISHED_FLOOD` are temporary, because they say nothing about
/// the session being dead. An unknown 401 is fatal `UNAUTHORIZED`, as Telethon maps it to `UnauthorizedError`.
/// Everything unrecognised is temporary `UNKNOWN`.
public enum ErrorClassifier {
  /// Classifies one error text; see the type's documentation for the shapes it reads.
  public static func classify(_ text: String) -> ClassifiedError {
    let scanner = ErrorTextScanner(text)
    return scanner.classify()
  }

  /// Classifies a Swift error: a `ClassifiedError` is returned as is, anything else by its description.
  public static func classify(error: any Error) -> ClassifiedError {
    if let classified = error as? ClassifiedError { return classified }
    if let localized = error as? LocalizedError, let description = localized.errorDescription {
      return classify(description)
    }
    return classify(String(describing: error))
  }

  /// Whether `name` is safe to show: an upper-case identifier of at most 64 characters that starts with a letter.
  static func isSafeIdentifier(_ name: Substring) -> Bool {
    guard (1...64).contains(name.utf8.count), let first = name.utf8.first,
      (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(first)
    else { return false }
    return name.utf8.allSatisfy { isUpper($0) || isDigit($0) || $0 == UInt8(ascii: "_") }
  }
}

// MARK: - Known errors

/// One known error: its normalised code, class, whether its `X` number is seconds, and words for the summary.
struct KnownError: Sendable {
  let code: String
  let errorClass: ErrorClass
  let numberIsSeconds: Bool
  let words: String

  init(_ code: String, _ errorClass: ErrorClass, seconds: Bool = false, _ words: String) {
    self.code = code
    self.errorClass = errorClass
    self.numberIsSeconds = seconds
    self.words = words
  }
}

enum KnownErrors {
  /// Telegram RPC names (and the seed's names), with `X` standing for a number. Sources: Telethon 1.45.0
  /// `rpcerrorlist.py`, core.telegram.org/api/errors, the seed guide's "Error classification".
  static let all: [KnownError] = [
    // Fatal: the session is dead and needs a new login.
    KnownError("AUTH_KEY_UNREGISTERED", .fatal, "Telegram does not recognise the session's auth key"),
    KnownError("AUTH_KEY_INVALID", .fatal, "Telegram says the session's auth key is invalid"),
    KnownError("AUTH_KEY_DUPLICATED", .fatal, "the auth key was used from two places at once and is now unusable"),
    KnownError("AUTH_KEY_NOT_FOUND", .fatal, "the server does not know the session's auth key (transport -404)"),
    KnownError("SESSION_REVOKED", .fatal, "the user terminated the session"),
    KnownError("SESSION_EXPIRED", .fatal, "the authorization has expired"),
    KnownError(
      "SESSION_PASSWORD_NEEDED", .fatal, "the login never finished its 2FA step, so the session is not authorised"),
    KnownError("USER_DEACTIVATED", .fatal, "the account has been deleted or deactivated"),
    KnownError("USER_DEACTIVATED_BAN", .fatal, "the account has been deactivated and banned"),
    KnownError("PHONE_NUMBER_BANNED", .fatal, "the account's phone number is banned"),
    KnownError("ACCOUNT_BANNED", .fatal, "the account is banned"),
    KnownError("UNAUTHORIZED", .fatal, "Telegram says the session is not authorised"),
    // Temporary: Telegram asks to wait.
    KnownError("FLOOD_WAIT_X", .temporary, seconds: true, "Telegram asks to wait (flood control)"),
    KnownError("FLOOD_PREMIUM_WAIT_X", .temporary, seconds: true, "Telegram asks a non-premium account to wait"),
    KnownError(
      "FLOOD_TEST_PHONE_WAIT_X", .temporary, seconds: true, "Telegram asks to wait (test phone flood control)"),
    KnownError("SLOWMODE_WAIT_X", .temporary, seconds: true, "the chat is in slow mode"),
    KnownError("TAKEOUT_INIT_DELAY_X", .temporary, seconds: true, "Telegram delays the takeout session"),
    KnownError("2FA_CONFIRM_WAIT_X", .temporary, seconds: true, "Telegram asks to wait for a 2FA confirmation"),
    KnownError("SESSION_TOO_FRESH_X", .temporary, seconds: true, "the session logged in too recently"),
    KnownError("FLOOD", .temporary, "Telegram applied flood control"),
    KnownError("TRANSPORT_FLOOD", .temporary, "Telegram applied flood control at the transport level (-429)"),
    // Temporary: data-centre moves, normally handled inside the client library.
    KnownError("FILE_MIGRATE_X", .temporary, "the request must go to another data centre"),
    KnownError("PHONE_MIGRATE_X", .temporary, "the request must go to another data centre"),
    KnownError("USER_MIGRATE_X", .temporary, "the request must go to another data centre"),
    KnownError("NETWORK_MIGRATE_X", .temporary, "the request must go to another data centre"),
    KnownError("STATS_MIGRATE_X", .temporary, "the request must go to another data centre"),
    KnownError("DC_MIGRATE", .temporary, "the request must go to another data centre"),
    // Temporary: Telegram's own failures.
    KnownError("TIMEOUT", .temporary, "the request timed out"),
    KnownError("SERVER_ERROR", .temporary, "Telegram had an internal error"),
    KnownError("RPC_CALL_FAIL", .temporary, "Telegram had an internal error"),
    KnownError("RPC_MCGET_FAIL", .temporary, "Telegram had an internal error"),
    KnownError("WORKER_BUSY_TOO_LONG_RETRY", .temporary, "Telegram's workers are too busy"),
    KnownError("INTERDC_X_CALL_ERROR", .temporary, "Telegram failed to reach another data centre"),
    KnownError("INTERDC_X_CALL_RICH_ERROR", .temporary, "Telegram failed to reach another data centre"),
    KnownError("MEMBER_OCCUPY_PRIMARY_LOC_FAILED", .temporary, "Telegram had an internal error"),
    KnownError("NEED_MEMBER_INVALID", .temporary, "Telegram had an internal error"),
    KnownError("HISTORY_GET_FAILED", .temporary, "Telegram had an internal error"),
    KnownError("STORAGE_CHECK_FAILED", .temporary, "Telegram had an internal error"),
    KnownError("PERSISTENT_TIMESTAMP_OUTDATED", .temporary, "Telegram had an internal error"),
    KnownError("AUTH_RESTART", .temporary, "Telegram restarted the authorization"),
    // Temporary: not a verdict on the session.
    KnownError("AUTH_KEY_PERM_EMPTY", .temporary, "a temporary key is not bound to the permanent one"),
    KnownError("USER_RESTRICTED", .temporary, "the account is restricted, but the session is alive"),
    KnownError("FROZEN_METHOD_INVALID", .temporary, "the account is frozen, but the session is alive"),
    KnownError("API_ID_INVALID", .temporary, "the api_id/api_hash pair is invalid; fix the bot configuration"),
    KnownError(
      "API_ID_PUBLISHED_FLOOD", .temporary, "the api_id is banned for being published; fix the bot configuration"),
    // Temporary: local and network failures.
    KnownError("DATABASE_LOCKED", .temporary, "another process holds the SQLite file (database is locked)"),
    KnownError("CONNECTION_ERROR", .temporary, "the connection to Telegram failed"),
    KnownError("OS_ERROR", .temporary, "a local or network I/O operation failed"),
  ]

  /// Names without a number, by name.
  static let exact: [String: KnownError] = {
    var table: [String: KnownError] = [:]
    for entry in all where !entry.code.contains("_X") { table[entry.code] = entry }
    return table
  }()

  /// Names with an `X` number, as the text before and after it.
  static let numbered: [(prefix: String, suffix: String, entry: KnownError)] = all.compactMap { entry in
    let parts = entry.code.components(separatedBy: "_X")
    guard parts.count == 2 else { return nil }
    return (parts[0] + "_", parts[1], entry)
  }

  /// Class names (Telethon `FloodWaitError`, Pyrogram `FloodWait`), folded to lower case without underscores,
  /// the `X` and a trailing `error`.
  static let byFoldedClassName: [String: KnownError] = {
    var table: [String: KnownError] = [:]
    for entry in all where entry.code.contains("_") {
      let folded = entry.code.replacingOccurrences(of: "_X", with: "").replacingOccurrences(of: "_", with: "")
      table[folded.lowercased()] = entry
    }
    table["twofaconfirmwait"] = table["2faconfirmwait"]
    return table
  }()

  /// Generic class names, matched exactly: base classes and Python's built-in exceptions.
  static let genericClassNames: [String: String] = [
    "UnauthorizedError": "UNAUTHORIZED", "Unauthorized": "UNAUTHORIZED",
    "ServerError": "SERVER_ERROR", "InternalServerError": "SERVER_ERROR",
    "FloodError": "FLOOD", "InvalidDCError": "DC_MIGRATE",
    "TimedOutError": "TIMEOUT", "TimeoutError": "TIMEOUT", "ServiceUnavailable": "TIMEOUT",
    "ConnectionError": "CONNECTION_ERROR", "ConnectionRefusedError": "CONNECTION_ERROR",
    "ConnectionResetError": "CONNECTION_ERROR", "ConnectionAbortedError": "CONNECTION_ERROR",
    "BrokenPipeError": "CONNECTION_ERROR", "IncompleteReadError": "CONNECTION_ERROR",
    "gaierror": "CONNECTION_ERROR", "OSError": "OS_ERROR", "IOError": "OS_ERROR",
  ]

  /// Lower-case phrases, with their code and whether they are as specific as an RPC name.
  static let phrases: [(phrase: String, code: String, isSpecific: Bool)] = [
    ("database is locked", "DATABASE_LOCKED", true),
    ("timed out", "TIMEOUT", false),
    ("connection refused", "CONNECTION_ERROR", false),
    ("connection reset", "CONNECTION_ERROR", false),
    ("network is unreachable", "CONNECTION_ERROR", false),
    ("no route to host", "CONNECTION_ERROR", false),
    ("temporary failure in name resolution", "CONNECTION_ERROR", false),
    ("name or service not known", "CONNECTION_ERROR", false),
    // A disk error (EIO, SQLite's "disk I/O error") says nothing about the session: retry once
    // the disk is sound. Damage is not an I/O error and is not matched here.
    ("input/output error", "OS_ERROR", false),
    ("disk i/o error", "OS_ERROR", false),
  ]

  /// The meaning of an MTProto or transport status code. Transport codes are negative; `-404` and `-429` only
  /// exist there, so a positive 404 or 429 is an ordinary RPC status and says nothing.
  static func status(_ value: Int) -> KnownError? {
    switch value {
    case 401: exact["UNAUTHORIZED"]
    case 420: exact["FLOOD"]
    case 303: exact["DC_MIGRATE"]
    case -404: exact["AUTH_KEY_NOT_FOUND"]
    case -429: exact["TRANSPORT_FLOOD"]
    case 503, -503: exact["TIMEOUT"]
    case 500...599, -599 ... -500: exact["SERVER_ERROR"]
    default: nil
    }
  }
}

// MARK: - Scanning

private func isUpper(_ byte: UInt8) -> Bool { (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) }
private func isLower(_ byte: UInt8) -> Bool { (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) }
private func isDigit(_ byte: UInt8) -> Bool { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) }
private func isIdentifier(_ byte: UInt8) -> Bool {
  isUpper(byte) || isLower(byte) || isDigit(byte) || byte == UInt8(ascii: "_")
}

/// Reads an error text as identifier tokens and picks the most specific known error in it.
private struct ErrorTextScanner {
  struct Token {
    let text: Substring
    let start: Int
  }

  /// How much to trust a match. A specific name beats a status code, which beats a generic class name;
  /// among equals the last one wins, because a Python traceback ends with the exception that was raised last.
  enum Rank: Int, Comparable {
    case generic = 1
    case status = 2
    case specific = 3
    static func < (lhs: Rank, rhs: Rank) -> Bool { lhs.rawValue < rhs.rawValue }
  }

  struct Match {
    let entry: KnownError
    let rank: Rank
    let position: Int
    let number: Int?
  }

  /// At most this many bytes are read (from the end: tracebacks end with the error that counts).
  static let byteLimit = 65_536

  let bytes: [UInt8]
  let text: String
  var tokens: [Token] = []

  init(_ input: String) {
    var bytes = Array(input.utf8)
    if bytes.count > Self.byteLimit { bytes = Array(bytes.suffix(Self.byteLimit)) }
    self.bytes = bytes
    self.text = String(decoding: bytes, as: UTF8.self)
    tokens = Self.tokenize(bytes, text)
  }

  static func tokenize(_ bytes: [UInt8], _ text: String) -> [Token] {
    var tokens: [Token] = []
    let utf8 = text.utf8
    var index = 0
    while index < bytes.count {
      guard isIdentifier(bytes[index]) else {
        index += 1
        continue
      }
      let start = index
      while index < bytes.count, isIdentifier(bytes[index]) { index += 1 }
      let lower = utf8.index(utf8.startIndex, offsetBy: start)
      let upper = utf8.index(lower, offsetBy: index - start)
      tokens.append(Token(text: text[lower..<upper], start: start))
    }
    return tokens
  }

  func classify() -> ClassifiedError {
    var matches: [Match] = []
    for (index, token) in tokens.enumerated() {
      if let match = nameMatch(token) { matches.append(match) }
      if let value = statusValue(at: index), let entry = KnownErrors.status(value) {
        matches.append(Match(entry: entry, rank: .status, position: token.start, number: nil))
      }
    }
    matches += phraseMatches()
    guard let best = matches.max(by: { ($0.rank, $0.position) < ($1.rank, $1.position) }) else {
      return unknown()
    }
    let entry = best.entry
    var seconds: Int? = nil
    if entry.numberIsSeconds { seconds = best.number ?? secondsInText() }
    return ClassifiedError(
      class: entry.errorClass, code: entry.code, retryAfterSeconds: seconds,
      summary: Self.summary(entry, seconds: seconds))
  }

  /// A token that is an RPC name (any case), a numbered RPC name, or a class name.
  func nameMatch(_ token: Token) -> Match? {
    let upper = token.text.uppercased()
    if let entry = KnownErrors.exact[upper] {
      // Single words (TIMEOUT, UNAUTHORIZED, FLOOD) are also plain English: trust them less.
      let rank: Rank = upper.contains("_") ? .specific : .generic
      return Match(entry: entry, rank: rank, position: token.start, number: nil)
    }
    for (prefix, suffix, entry) in KnownErrors.numbered
    where upper.hasPrefix(prefix) && upper.hasSuffix(suffix) && upper.count > prefix.count + suffix.count {
      let middle = upper.dropFirst(prefix.count).dropLast(suffix.count)
      if middle == "X" { return Match(entry: entry, rank: .specific, position: token.start, number: nil) }
      if (1...9).contains(middle.count), middle.utf8.allSatisfy(isDigit) {
        return Match(entry: entry, rank: .specific, position: token.start, number: Int(middle))
      }
    }
    if let code = KnownErrors.genericClassNames[String(token.text)], let entry = KnownErrors.exact[code] {
      return Match(entry: entry, rank: .generic, position: token.start, number: nil)
    }
    // Class names: CamelCase, no underscore (so a lower-case English word never matches).
    guard let first = token.text.utf8.first, isUpper(first), token.text.utf8.contains(where: isLower),
      !token.text.contains("_")
    else { return nil }
    let folded = token.text.lowercased()
    if let entry = KnownErrors.byFoldedClassName[folded] ?? foldedWithoutErrorSuffix(folded) {
      return Match(entry: entry, rank: .specific, position: token.start, number: nil)
    }
    return nil
  }

  func foldedWithoutErrorSuffix(_ folded: String) -> KnownError? {
    guard folded.hasSuffix("error") else { return nil }
    return KnownErrors.byFoldedClassName[String(folded.dropLast(5))]
  }

  /// The status code a digits token stands for, when it sits where a status belongs: at the very start
  /// (`-503 Timeout`, `502`), in Pyrogram's `[420 ...]`, after `RPCError`, after `code` (`"code": -429`) or
  /// after Telethon's `HTTP code` (whose number is a transport code without its minus sign).
  func statusValue(at index: Int) -> Int? {
    let token = tokens[index]
    guard token.text.utf8.count == 3, token.text.utf8.allSatisfy(isDigit), let value = Int(token.text) else {
      return nil
    }
    let negative = token.start > 0 && bytes[token.start - 1] == UInt8(ascii: "-")
    let signStart = negative ? token.start - 1 : token.start
    let previous = index > 0 ? tokens[index - 1].text : nil
    if index >= 2, previous == "code", tokens[index - 2].text == "HTTP" { return -value }
    let atStart = bytes[..<signStart].allSatisfy { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\n") }
    let afterBracket = signStart > 0 && bytes[signStart - 1] == UInt8(ascii: "[")
    guard atStart || afterBracket || previous == "RPCError" || previous == "code" else { return nil }
    return negative ? -value : value
  }

  func phraseMatches() -> [Match] {
    let lowered = bytes.map { isUpper($0) ? $0 + 32 : $0 }
    var matches: [Match] = []
    for (phrase, code, isSpecific) in KnownErrors.phrases {
      guard let entry = KnownErrors.exact[code] else { continue }
      let needle = Array(phrase.utf8)
      var last: Int? = nil
      var start = 0
      while start + needle.count <= lowered.count {
        if lowered[start] == needle[0], Array(lowered[start..<start + needle.count]) == needle { last = start }
        start += 1
      }
      if let last {
        matches.append(Match(entry: entry, rank: isSpecific ? .specific : .generic, position: last, number: nil))
      }
    }
    return matches
  }

  /// The seconds in "A wait of 30 seconds", "30 seconds must pass" or the probe's `"seconds": 30`.
  func secondsInText() -> Int? {
    for (index, token) in tokens.enumerated() where token.text.lowercased() == "seconds" {
      for neighbour in [index - 1, index + 1] where tokens.indices.contains(neighbour) {
        let digits = tokens[neighbour].text
        if (1...9).contains(digits.utf8.count), digits.utf8.allSatisfy(isDigit) { return Int(digits) }
      }
    }
    return nil
  }

  /// Nothing known: temporary `UNKNOWN`, naming the error only when it is a safe identifier in a place where an
  /// error name belongs (the whole input, after a status code, or the probe's `"error"` field).
  func unknown() -> ClassifiedError {
    var name: Substring? = nil
    let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
    if ErrorClassifier.isSafeIdentifier(Substring(trimmed)) { name = Substring(trimmed) }
    for (index, token) in tokens.enumerated().reversed() where name == nil && index > 0 {
      let previous = tokens[index - 1]
      let quoted = token.start > 0 && bytes[token.start - 1] == UInt8(ascii: "\"")
      let afterStatus = statusValue(at: index - 1) != nil
      if (afterStatus || (previous.text == "error" && quoted)) && ErrorClassifier.isSafeIdentifier(token.text) {
        name = token.text
      }
    }
    let words = name.map { "unrecognised error \($0)" } ?? "unrecognised error"
    return ClassifiedError(
      class: .temporary, code: "UNKNOWN", summary: "UNKNOWN: \(words) (temporary: the session is kept)")
  }

  static func summary(_ entry: KnownError, seconds: Int?) -> String {
    switch entry.errorClass {
    case .fatal:
      return "\(entry.code): \(entry.words) (fatal: confirm once more before treating the session as dead)"
    case .temporary:
      if let seconds { return "\(entry.code): \(entry.words), for \(seconds) s (temporary)" }
      return "\(entry.code): \(entry.words) (temporary)"
    }
  }
}

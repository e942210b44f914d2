import Foundation
import Store
import TestSupport
import Testing

@testable import tgsess_bot

/// The runner's pure parts: redaction, message splitting, parsing, the HTTP status mapping.
struct BotUnitTests {
  static let token = "7012345678:AAHfakeTokenForTgsessTests_xyz0123456"

  @Test func theRedactorRemovesTheTokenFromURLsAndErrors() {
    let redact = Redactor(token: Self.token)
    let url = "http://127.0.0.1:8081/bot\(Self.token)/getUpdates"
    #expect(redact(url) == "http://127.0.0.1:8081/bot<redacted>/getUpdates")
    #expect(!redact("error: connect to \(url) failed").contains("AAHfake"))
    // Another bot's token, and a percent-encoded colon, are caught by their shape.
    #expect(redact("bot123456789:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/x") == "bot<redacted>/x")
    #expect(redact("7012345678%3AAAHfakeTokenForTgsessTests_xyz0123456").contains("<redacted>"))
    // Ordinary text is left alone.
    #expect(redact("user.id=100007919 time 05:24:41") == "user.id=100007919 time 05:24:41")
  }

  @Test func longTextsAreSplitAt4096UTF16Units() {
    let line = String(repeating: "é", count: 100)
    let text = Array(repeating: line, count: 100).joined(separator: "\n")
    let parts = MessageText.split(text)
    #expect(parts.count == 3)
    #expect(parts.allSatisfy { $0.utf16.count <= 4096 })
    #expect(parts.joined(separator: "\n") == text)
    // An emoji counts two UTF-16 units and is never cut in half.
    let emoji = String(repeating: "😀", count: 3000)
    let emojiParts = MessageText.split(emoji)
    #expect(emojiParts.allSatisfy { $0.utf16.count <= 4096 })
    #expect(emojiParts.joined() == emoji)
    #expect(MessageText.truncate(emoji).utf16.count <= 4096)
    #expect(MessageText.truncate(emoji).hasSuffix("…"))
    #expect(MessageText.split("") == ["…"])
    #expect(MessageText.split("\nfirst\n\nlast") == ["\nfirst\n\nlast"])
  }

  @Test func commandsAreParsedWithBotSuffixesAndArguments() {
    #expect(BotCommand.parse("/status")?.name == .status)
    #expect(BotCommand.parse("/Status@tgsess_bot")?.name == .status)
    #expect(BotCommand.parse("/recover 42")?.argument == "42")
    #expect(BotCommand.parse("/nope")?.name == nil)
    #expect(BotCommand.parse("/nope")?.raw == "/nope")
    #expect(BotCommand.parse("hello") == nil)
  }

  @Test func updatesAreParsedAndMalformedOnesNamed() throws {
    let message: JSONValue = [
      "update_id": 7,
      "message": ["message_id": 3, "from": ["id": 42], "chat": ["id": 42, "type": "private"], "text": "/start"],
    ]
    let update = try BotUpdate.parse(message)
    #expect(update.id == 7)
    #expect(
      update.kind
        == .message(IncomingMessage(chatID: 42, messageID: 3, fromID: 42, chatType: "private", text: "/start")))
    let callback = try BotUpdate.parse([
      "update_id": 8, "callback_query": ["id": "q", "from": ["id": 42], "data": "status"],
    ])
    #expect(
      callback.kind == .callback(IncomingCallback(id: "q", fromID: 42, chatID: nil, messageID: nil, data: "status")))
    #expect(try BotUpdate.parse(["update_id": 9, "edited_message": [:]]).kind == .ignored("edited_message"))
    #expect(throws: BotUpdate.Malformed.self) { try BotUpdate.parse(["update_id": 10, "message": ["text": "x"]]) }
    #expect(throws: BotUpdate.Malformed.self) { try BotUpdate.parse(["message": [:]]) }
  }

  @Test func httpStatusesMapToErrorClasses() throws {
    let redact = Redactor(token: Self.token)
    func interpret(_ status: Int, _ body: String) throws -> JSONValue {
      try BotAPI.interpret(method: "m", status: status, body: Data(body.utf8), redact: redact)
    }
    #expect(try interpret(200, #"{"ok":true,"result":[1]}"#) == [1])
    do {
      _ = try interpret(
        429, #"{"ok":false,"error_code":429,"description":"Too Many Requests","parameters":{"retry_after":7}}"#)
      Issue.record("no error")
    } catch let error as BotAPIError {
      guard case .flood(let seconds, _) = error else { throw error }
      #expect(seconds == 7)
    }
    #expect(throws: BotAPIError.self) { try interpret(502, "<html>Bad Gateway</html>") }
    #expect(throws: BotAPIError.self) { try interpret(200, #"{"ok": tru"#) }
    do {
      _ = try interpret(400, #"{"ok":false,"error_code":400,"description":"Bad Request: message is not modified: x"}"#)
    } catch let error as BotAPIError {
      #expect(error.isNotModified)
      #expect(!error.isTransient)
    }
    do {
      _ = try interpret(401, #"{"ok":false,"error_code":401,"description":"Unauthorized"}"#)
    } catch let error as BotAPIError {
      guard case .unauthorized = error else { throw error }
    }
    do {
      _ = try interpret(409, #"{"ok":false,"description":"Conflict: terminated by other getUpdates request"}"#)
    } catch let error as BotAPIError {
      guard case .conflict = error else { throw error }
      #expect(!error.isTransient)
    }
  }

  @Test func lastErrorsAreShownInWordsWithoutPaths() {
    let root = "/srv/bot"
    // What check records: reasons only, each naming its file.
    let text =
      "/srv/bot/sessions/user_42.session: not an SQLite database; /srv/bot/sessions/user_42.session.backup is not a valid session file"
    #expect(
      UserWords.lastError(text, root: root)
        == "session file: not an SQLite database; sessions/user_42.session.backup is not a valid session file")
    #expect(
      UserWords.lastError("/srv/bot/sessions/user_42.session: truncated or damaged SQLite file", root: root)
        == "session file: truncated or damaged SQLite file")
    let fatal = UserWords.lastError("AUTH_KEY_UNREGISTERED", root: root)
    #expect(fatal.hasPrefix("AUTH_KEY_UNREGISTERED"))
    #expect(fatal.contains("log in again"))
  }

  /// The bot says what is wrong (the reason alone) and what the user can do, in plain words: no
  /// command of the host, no placeholder.
  @Test func sessionProblemsAndRemediesInPlainWords() {
    #expect(
      UserWords.problem(StoreError.session(object: "/srv/bot/sessions/user_42.session", reason: .notSQLite))
        == "not an SQLite database")
    #expect(
      UserWords.problem(StoreError.session(object: "x", reason: .locked("RESERVED")))
        == "locked by another process (RESERVED)")
    #expect(UserWords.problem(StoreError.io(path: "x", operation: "read", errno: EIO)) == "unreadable")
    let expected: [SessionRemedy: String] = [
      .recoverFromBackup: "send /recover to restore your session from a backup",
      .checkPathOrRecover: "send /recover to restore your session from a backup",
      .logInAgainOrRecover: "send /recover; if that does not help, log in again",
      .copyStringAgain: "log in again",
      .checkStringSource: "log in again",
      .waitForWriter: "wait a minute, then send /status again",
      .rollBackJournal: "wait a minute, then send /status again",
      .checkPermissions: "ask the administrator to check the server's files",
      .checkWriteAheadLog: "ask the administrator to check the server's files",
      .upgradeTgsess: "ask the administrator to upgrade tgsess",
    ]
    #expect(Set(expected.keys) == Set(SessionRemedy.allCases))
    for remedy in SessionRemedy.allCases {
      #expect(UserWords.remedy(remedy) == expected[remedy], "\(remedy)")
      #expect(!UserWords.remedy(remedy).contains("tgsess recover"))
    }
  }

  @Test func argumentsAndTokens() throws {
    let arguments = try BotArguments.parse(["--config=/etc/tgsess/tgsess.toml", "--token-file", "/t", "-v"])
    #expect(arguments.config == "/etc/tgsess/tgsess.toml")
    #expect(arguments.tokenFile == "/t")
    #expect(arguments.logLevel == "debug")
    #expect(throws: BotStartError.self) { try BotArguments.parse(["--poll-timeout", "soon"]) }
    #expect(throws: BotStartError.self) { try BotArguments.parse(["--token", Self.token]) }
    #expect(try BotSettings.validToken(" \(Self.token)\n", source: "x") == Self.token)
    do {
      _ = try BotSettings.validToken("hunter2", source: "the file")
      Issue.record("accepted")
    } catch let error as BotStartError {
      #expect(!error.description.contains("hunter2"))
    }
  }

  @Test func theBotSectionOfTheConfigResolvesTokenFileAdminsAndLimits() throws {
    let directory = try TemporaryDirectory("tgsess-bot-config")
    try """
    [bot]
    admin_ids = [999, 1000]
    token_file = "secrets/token"
    api_base_url = "http://127.0.0.1:8081/"
    monitor_interval_seconds = 60
    poll_timeout_seconds = 30
    """.write(toFile: directory.file("tgsess.toml"), atomically: true, encoding: .utf8)
    try FileManager.default.createDirectory(atPath: directory.file("secrets"), withIntermediateDirectories: true)
    try (Self.token + "\n").write(toFile: directory.file("secrets/token"), atomically: true, encoding: .utf8)
    let settings = try BotSettings.resolve(BotArguments(root: directory.path), environment: [:])
    #expect(settings.token == Self.token)
    #expect(settings.tokenSource == directory.file("secrets/token"))
    #expect(settings.adminIDs == [999, 1000])
    #expect(settings.apiBaseURL == "http://127.0.0.1:8081")
    #expect(settings.monitorInterval == .seconds(60))
    #expect(settings.pollTimeoutSeconds == 30)
    // Flags win over the file; the server caps the long poll at 50 s.
    let flagged = try BotSettings.resolve(
      BotArguments(root: directory.path, apiBase: "https://api.telegram.org", monitorInterval: 5), environment: [:])
    #expect(flagged.apiBaseURL == "https://api.telegram.org")
    #expect(flagged.monitorInterval == .seconds(5))
    #expect(throws: BotStartError.self) {
      try BotSettings.resolve(BotArguments(root: directory.path, pollTimeout: 51), environment: [:])
    }
    #expect(throws: BotStartError.self) {
      try BotSettings.resolve(BotArguments(root: directory.path, apiBase: "ftp://x"), environment: [:])
    }
    // A typo in [bot] is an error, as everywhere in the config.
    #expect(throws: StoreError.self) { try Config.parse("[bot]\nadmin_id = [1]\n", path: "t.toml") }
  }
}

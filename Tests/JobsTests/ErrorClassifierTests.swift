import Foundation
import Jobs
import TestSupport
import Testing

/// A dead-session error under its names: RPC name, status, Telethon class and description, Pyrogram class.
struct FatalName: Sendable, CustomTestStringConvertible {
  let rpc: String
  let status: Int
  let telethonClass: String
  let pyrogramClass: String
  let words: String
  var testDescription: String { rpc }
}

/// One input and what it must classify as.
struct Expectation: Sendable, CustomTestStringConvertible {
  let input: String
  let errorClass: ErrorClass
  let code: String
  let seconds: Int?
  init(_ input: String, _ errorClass: ErrorClass, _ code: String, seconds: Int? = nil) {
    self.input = input
    self.errorClass = errorClass
    self.code = code
    self.seconds = seconds
  }
  var testDescription: String { input.count > 60 ? String(input.prefix(60)) + "…" : input }
}

private let fatalNames: [FatalName] = [
  FatalName(
    rpc: "AUTH_KEY_UNREGISTERED", status: 401, telethonClass: "AuthKeyUnregisteredError",
    pyrogramClass: "AuthKeyUnregistered", words: "The key is not registered in the system"),
  FatalName(
    rpc: "AUTH_KEY_INVALID", status: 401, telethonClass: "AuthKeyInvalidError", pyrogramClass: "AuthKeyInvalid",
    words: "The key is invalid"),
  FatalName(
    rpc: "SESSION_REVOKED", status: 401, telethonClass: "SessionRevokedError", pyrogramClass: "SessionRevoked",
    words: "The authorization has been invalidated, because of the user terminating all sessions"),
  FatalName(
    rpc: "SESSION_EXPIRED", status: 401, telethonClass: "SessionExpiredError", pyrogramClass: "SessionExpired",
    words: "The authorization has expired"),
  FatalName(
    rpc: "USER_DEACTIVATED", status: 401, telethonClass: "UserDeactivatedError", pyrogramClass: "UserDeactivated",
    words: "The user has been deleted/deactivated"),
  FatalName(
    rpc: "USER_DEACTIVATED_BAN", status: 401, telethonClass: "UserDeactivatedBanError",
    pyrogramClass: "UserDeactivatedBan", words: "The user has been deleted/deactivated"),
  FatalName(
    rpc: "AUTH_KEY_DUPLICATED", status: 406, telethonClass: "AuthKeyDuplicatedError",
    pyrogramClass: "AuthKeyDuplicated",
    words:
      "The authorization key (session file) was used under two different IP addresses simultaneously, and can no longer be used. Use the same session exclusively, or use different sessions"
  ),
  FatalName(
    rpc: "SESSION_PASSWORD_NEEDED", status: 401, telethonClass: "SessionPasswordNeededError",
    pyrogramClass: "SessionPasswordNeeded", words: "Two-steps verification is enabled and a password is required"),
  FatalName(
    rpc: "PHONE_NUMBER_BANNED", status: 400, telethonClass: "PhoneNumberBannedError",
    pyrogramClass: "PhoneNumberBanned", words: "The used phone number has been banned from Telegram"),
]

/// Every input shape of every fatal name.
private func shapes(_ name: FatalName) -> [String] {
  [
    name.rpc,
    "telethon.errors.rpcerrorlist.\(name.telethonClass): \(name.words) (caused by GetUsersRequest)",
    name.telethonClass,
    name.pyrogramClass,
    "[\(name.status) \(name.rpc)]",
    "Telegram says: [\(name.status) \(name.rpc)] - \(name.words) (caused by \"users.GetUsers\")",
    name.rpc.lowercased(),
    "{\"code\": \(name.status), \"error\": \"\(name.rpc)\", \"ok\": false}",
  ]
}

@Suite struct ErrorClassifierTests {
  @Test(arguments: fatalNames)
  func fatalNameIsFatalInEveryShape(_ name: FatalName) {
    for input in shapes(name) {
      let result = ErrorClassifier.classify(input)
      #expect(result.class == .fatal, "\(input)")
      #expect(result.code == name.rpc, "\(input)")
      #expect(result.needsConfirmation, "\(input)")
      #expect(result.retryAfterSeconds == nil, "\(input)")
      #expect(result.summary.hasPrefix(name.rpc + ":"), "\(input)")
    }
  }

  @Test(arguments: [
    // The seed guide's own names.
    Expectation("auth_key_invalid", .fatal, "AUTH_KEY_INVALID"),
    Expectation("user_deactivated", .fatal, "USER_DEACTIVATED"),
    Expectation("account_banned", .fatal, "ACCOUNT_BANNED"),
    Expectation("session_revoked", .fatal, "SESSION_REVOKED"),
    Expectation("unauthorized", .fatal, "UNAUTHORIZED"),
    Expectation("session_expired", .fatal, "SESSION_EXPIRED"),
    // Transport -404 and the generic 401.
    Expectation("AuthKeyNotFound", .fatal, "AUTH_KEY_NOT_FOUND"),
    Expectation(
      "telethon.errors.common.AuthKeyNotFound: The server claims it doesn't know", .fatal, "AUTH_KEY_NOT_FOUND"),
    Expectation("-404", .fatal, "AUTH_KEY_NOT_FOUND"),
    Expectation("InvalidBufferError: Invalid response buffer (HTTP code 404)", .fatal, "AUTH_KEY_NOT_FOUND"),
    Expectation(
      "telethon.errors.rpcbaseerrors.UnauthorizedError: RPCError 401: SOMETHING_NEW (caused by GetUsersRequest)",
      .fatal, "UNAUTHORIZED"),
    Expectation(
      "Telegram says: [401 Unauthorized] - [401 SOMETHING_NEW] (caused by \"users.GetUsers\")", .fatal, "UNAUTHORIZED"),
    // A specific name beats a generic class; the last error of a traceback wins.
    Expectation(
      "telethon.errors.rpcbaseerrors.UnauthorizedError: RPCError 401: SESSION_PASSWORD_NEEDED", .fatal,
      "SESSION_PASSWORD_NEEDED"),
    Expectation(
      "ConnectionError: Connection to Telegram failed 5 time(s)\nDuring handling of the above exception, another exception occurred:\ntelethon.errors.rpcerrorlist.AuthKeyDuplicatedError: The authorization key (session file) was used under two different IP addresses (caused by GetUsersRequest)",
      .fatal, "AUTH_KEY_DUPLICATED"),
  ])
  func otherFatalInputs(_ expected: Expectation) {
    check(expected)
  }

  @Test(arguments: [
    Expectation("FLOOD_WAIT_30", .temporary, "FLOOD_WAIT_X", seconds: 30),
    Expectation("flood_wait_30", .temporary, "FLOOD_WAIT_X", seconds: 30),
    Expectation(
      "telethon.errors.rpcerrorlist.FloodWaitError: A wait of 30 seconds is required (caused by GetUsersRequest)",
      .temporary, "FLOOD_WAIT_X", seconds: 30),
    Expectation(
      "Telegram says: [420 FLOOD_WAIT_X] - A wait of 30 seconds is required (caused by \"users.GetUsers\")",
      .temporary, "FLOOD_WAIT_X", seconds: 30),
    Expectation("[420 FLOOD_WAIT_X]", .temporary, "FLOOD_WAIT_X"),
    Expectation("FloodWaitError", .temporary, "FLOOD_WAIT_X"),
    Expectation("FloodWait", .temporary, "FLOOD_WAIT_X"),
    Expectation(
      "{\"code\": 420, \"error\": \"FLOOD_WAIT_86400\", \"ok\": false}", .temporary, "FLOOD_WAIT_X", seconds: 86400),
    Expectation("FLOOD_PREMIUM_WAIT_7", .temporary, "FLOOD_PREMIUM_WAIT_X", seconds: 7),
    Expectation(
      "telethon.errors.rpcerrorlist.FloodPremiumWaitError: A wait of 7 seconds is required in non-premium accounts",
      .temporary, "FLOOD_PREMIUM_WAIT_X", seconds: 7),
    Expectation("SLOWMODE_WAIT_5", .temporary, "SLOWMODE_WAIT_X", seconds: 5),
    Expectation(
      "telethon.errors.rpcerrorlist.SlowModeWaitError: A wait of 5 seconds is required before sending another message in this chat",
      .temporary, "SLOWMODE_WAIT_X", seconds: 5),
    Expectation(
      "telethon.errors.rpcerrorlist.SessionTooFreshError: The session logged in too recently and 9 seconds must pass before calling the method",
      .temporary, "SESSION_TOO_FRESH_X", seconds: 9),
    Expectation("2FA_CONFIRM_WAIT_60", .temporary, "2FA_CONFIRM_WAIT_X", seconds: 60),
    Expectation("TwoFaConfirmWaitError", .temporary, "2FA_CONFIRM_WAIT_X"),
    // A number that is a data centre, not seconds.
    Expectation("USER_MIGRATE_4", .temporary, "USER_MIGRATE_X"),
    Expectation("INTERDC_2_CALL_ERROR", .temporary, "INTERDC_X_CALL_ERROR"),
    Expectation(
      "telethon.errors.rpcerrorlist.InterdcCallErrorError: An error occurred while communicating with DC 2",
      .temporary, "INTERDC_X_CALL_ERROR"),
    // Telegram's own failures and statuses.
    Expectation("RPC_CALL_FAIL", .temporary, "RPC_CALL_FAIL"),
    Expectation(
      "Telegram says: [500 RPC_CALL_FAIL] - Telegram is having internal problems", .temporary, "RPC_CALL_FAIL"),
    Expectation("WORKER_BUSY_TOO_LONG_RETRY", .temporary, "WORKER_BUSY_TOO_LONG_RETRY"),
    Expectation("WorkerBusyTooLongRetryError", .temporary, "WORKER_BUSY_TOO_LONG_RETRY"),
    Expectation("500", .temporary, "SERVER_ERROR"),
    Expectation("502", .temporary, "SERVER_ERROR"),
    Expectation("502 Bad Gateway", .temporary, "SERVER_ERROR"),
    Expectation("503", .temporary, "TIMEOUT"),
    Expectation("-503 Timeout", .temporary, "TIMEOUT"),
    Expectation("Telegram says: [-503 Timeout] - Telegram is having internal problems", .temporary, "TIMEOUT"),
    Expectation("telethon.errors.rpcerrorlist.TimeoutError: Timeout while fetching data", .temporary, "TIMEOUT"),
    Expectation(
      "telethon.errors.rpcbaseerrors.ServerError: RPCError -500: No workers running", .temporary, "SERVER_ERROR"),
    Expectation("-429", .temporary, "TRANSPORT_FLOOD"),
    Expectation("InvalidBufferError: Invalid response buffer (HTTP code 429)", .temporary, "TRANSPORT_FLOOD"),
    // Local and network failures.
    Expectation("database is locked", .temporary, "DATABASE_LOCKED"),
    Expectation("sqlite3.OperationalError: database is locked", .temporary, "DATABASE_LOCKED"),
    Expectation("ConnectionError", .temporary, "CONNECTION_ERROR"),
    Expectation("ConnectionError: Connection to Telegram failed 0 time(s)", .temporary, "CONNECTION_ERROR"),
    Expectation(
      "ConnectionRefusedError: [Errno 111] Connect call failed ('127.0.0.1', 1)", .temporary, "CONNECTION_ERROR"),
    Expectation("TimeoutError", .temporary, "TIMEOUT"),
    Expectation("asyncio.TimeoutError", .temporary, "TIMEOUT"),
    Expectation("asyncio.exceptions.TimeoutError", .temporary, "TIMEOUT"),
    Expectation("OSError", .temporary, "OS_ERROR"),
    Expectation("OSError: [Errno 101] Network is unreachable", .temporary, "CONNECTION_ERROR"),
    Expectation("{\"error\": \"ConnectionError\", \"ok\": false}", .temporary, "CONNECTION_ERROR"),
    Expectation("{\"error\": \"IncompleteReadError\", \"ok\": false}", .temporary, "CONNECTION_ERROR"),
    // Not a verdict on the session.
    Expectation("AUTH_KEY_PERM_EMPTY", .temporary, "AUTH_KEY_PERM_EMPTY"),
    Expectation("API_ID_INVALID", .temporary, "API_ID_INVALID"),
    Expectation("USER_RESTRICTED", .temporary, "USER_RESTRICTED"),
  ])
  func temporaryInputs(_ expected: Expectation) {
    check(expected)
    #expect(!ErrorClassifier.classify(expected.input).needsConfirmation)
  }

  @Test(arguments: [
    "", "   \n", "something went wrong", "404", "KeyError: 'x'",
    "telethon.errors.rpcbaseerrors.BadRequestError: RPCError 400: CHAT_WRITE_FORBIDDEN (caused by SendMessageRequest)",
    "{\"detail\": \"file is not a database\", \"error\": \"SESSION_FILE_INVALID\", \"ok\": false}",
  ])
  func unknownIsTemporaryUnknown(_ input: String) {
    let result = ErrorClassifier.classify(input)
    #expect(result.class == .temporary)
    #expect(result.code == "UNKNOWN")
    #expect(result.retryAfterSeconds == nil)
    #expect(!result.needsConfirmation)
  }

  @Test func unknownNamesASafeIdentifierOnly() {
    #expect(ErrorClassifier.classify("CHAT_WRITE_FORBIDDEN").summary.contains("CHAT_WRITE_FORBIDDEN"))
    #expect(ErrorClassifier.classify("[400 CHAT_WRITE_FORBIDDEN] - x").summary.contains("CHAT_WRITE_FORBIDDEN"))
    #expect(ErrorClassifier.classify("{\"error\": \"SESSION_FILE_INVALID\"}").summary.contains("SESSION_FILE_INVALID"))
    #expect(
      ErrorClassifier.classify("something went wrong").summary
        == "UNKNOWN: unrecognised error (temporary: the session is kept)")
    let long = String(repeating: "A", count: 65)
    #expect(!ErrorClassifier.classify(long).summary.contains(long))
  }

  @Test func secretsNeverReachTheSummary() {
    let sessionString = Self.telethonStyleSessionString()
    #expect(sessionString.count == 353)
    let botToken = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ"
    let apiHash = "0123456789abcdef0123456789abcdef"
    let fernet = "gAAAAABnQ0xF" + String(repeating: "Zm9vYmFy", count: 20)
    for secret in [sessionString, botToken, apiHash, fernet] {
      for input in [
        secret, "Error: \(secret)", "AUTH_KEY_UNREGISTERED for \(secret)", "FLOOD_WAIT_30 \(secret)",
        "{\"error\": \"\(secret)\", \"ok\": false}", "[400 \(secret)]", "RPCError 400: \(secret)",
      ] {
        let result = ErrorClassifier.classify(input)
        #expect(!Self.sharesAChunk(result.summary, secret), "summary leaks \(input.prefix(30))…")
        #expect(!Self.sharesAChunk(result.code, secret))
        #expect(!Self.sharesAChunk(result.description, secret))
      }
    }
  }

  @Test func swiftErrorsClassifyByTheirDescription() {
    struct Failure: LocalizedError {
      var errorDescription: String? { "sqlite3.OperationalError: database is locked" }
    }
    #expect(ErrorClassifier.classify(error: Failure()).code == "DATABASE_LOCKED")
    let classified = ClassifiedError(class: .fatal, code: "SESSION_REVOKED", summary: "x")
    #expect(ErrorClassifier.classify(error: classified) == classified)
    #expect(classified.needsConfirmation)
  }

  /// What the real Telethon and Pyrogram print for each error classifies as the table says.
  @Test func realLibraryMessagesClassify() throws {
    let cases: [(status: Int, name: String, code: String, errorClass: ErrorClass, seconds: Int?)] =
      fatalNames.map { ($0.status, $0.rpc, $0.rpc, .fatal, nil) } + [
        (420, "FLOOD_WAIT_30", "FLOOD_WAIT_X", .temporary, 30),
        (420, "FLOOD_PREMIUM_WAIT_7", "FLOOD_PREMIUM_WAIT_X", .temporary, 7),
        (420, "SLOWMODE_WAIT_5", "SLOWMODE_WAIT_X", .temporary, 5),
        (500, "RPC_CALL_FAIL", "RPC_CALL_FAIL", .temporary, nil),
        (500, "WORKER_BUSY_TOO_LONG_RETRY", "WORKER_BUSY_TOO_LONG_RETRY", .temporary, nil),
        (-503, "Timeout", "TIMEOUT", .temporary, nil),
        (401, "SOMETHING_NEW", "UNAUTHORIZED", .fatal, nil),
        (400, "SOMETHING_NEW", "UNKNOWN", .temporary, nil),
      ]
    let script = """
      import json, logging, os, sys
      logging.disable(logging.CRITICAL)
      os.chdir(sys.argv[2])  # Pyrogram appends unknown errors to ./unknown_errors.txt
      from telethon.errors import rpc_message_to_error
      from telethon.tl.types import RpcError as TelethonRpcError
      from telethon.tl.functions.users import GetUsersRequest
      from telethon.tl.types import InputUserSelf
      from pyrogram import errors as pyrogram_errors
      from pyrogram.raw.types import RpcError as PyrogramRpcError
      class GetUsers:
          QUALNAME = "functions.users.GetUsers"
      out = []
      for status, name in json.loads(sys.argv[1]):
          e = rpc_message_to_error(TelethonRpcError(status, name), GetUsersRequest([InputUserSelf()]))
          telethon_line = f"{type(e).__module__}.{type(e).__name__}: {e}"
          try:
              pyrogram_errors.RPCError.raise_it(PyrogramRpcError(error_code=status, error_message=name), GetUsers)
          except Exception as p:
              pyrogram_line = f"{type(p).__module__}.{type(p).__name__}: {p}"
          out.append([telethon_line, pyrogram_line])
      print(json.dumps(out))
      """
    let request = "[" + cases.map { "[\($0.status), \"\($0.name)\"]" }.joined(separator: ",") + "]"
    let scratch = try TemporaryDirectory()
    let result = try runPython(script, arguments: [request, scratch.path])
    let lines = try JSONDecoder().decode([[String]].self, from: result.stdoutData)
    try #require(lines.count == cases.count)
    for (expected, pair) in zip(cases, lines) {
      for line in pair {
        let classified = ErrorClassifier.classify(line)
        #expect(classified.code == expected.code, "\(line)")
        #expect(classified.class == expected.errorClass, "\(line)")
        #expect(classified.retryAfterSeconds == expected.seconds, "\(line)")
      }
    }
  }

  private func check(_ expected: Expectation, sourceLocation: SourceLocation = #_sourceLocation) {
    let result = ErrorClassifier.classify(expected.input)
    #expect(result.class == expected.errorClass, "\(expected.input)", sourceLocation: sourceLocation)
    #expect(result.code == expected.code, "\(expected.input)", sourceLocation: sourceLocation)
    #expect(result.retryAfterSeconds == expected.seconds, "\(expected.input)", sourceLocation: sourceLocation)
    #expect(result.summary.hasPrefix(expected.code + ":"), sourceLocation: sourceLocation)
  }

  /// A string shaped like a Telethon StringSession: "1" + URL-safe base64 of 263 random bytes (353 chars).
  static func telethonStyleSessionString() -> String {
    var generator = SystemRandomNumberGenerator()
    let bytes = (0..<263).map { _ in UInt8.random(in: 0...255, using: &generator) }
    let base64 = Data(bytes).base64EncodedString()
      .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
    return "1" + base64
  }

  /// Whether `text` contains any 12-character piece of `secret` (shorter secrets: the whole secret).
  static func sharesAChunk(_ text: String, _ secret: String) -> Bool {
    let characters = Array(secret)
    let width = min(12, characters.count)
    for start in 0...(characters.count - width) where text.contains(String(characters[start..<start + width])) {
      return true
    }
    return false
  }
}

/// The reference probe, run offline: it cannot reach Telegram here, so it is pointed at a closed local port.
@Suite struct ProbeTelethonTests {
  static let script = TestEnvironment.packageRoot + "/scripts/probe_telethon.py"
  static let apiHash = "0123456789abcdef0123456789abcdef"

  /// Writes a real Telethon session (random auth key, DC 2) and returns its key hex and StringSession.
  func makeSession(at path: String) throws -> (keyHex: String, string: String) {
    let result = try runPython(
      """
      import json, os, sys
      from telethon.crypto import AuthKey
      from telethon.sessions import SQLiteSession, StringSession
      s = SQLiteSession(sys.argv[1])
      s.set_dc(2, "149.154.167.51", 443)
      key = os.urandom(256)
      s.auth_key = AuthKey(key)
      s.save()
      print(json.dumps({"key": key.hex(), "string": StringSession.save(s)}))
      s.close()
      """, arguments: [path])
    struct Written: Decodable {
      var key: String
      var string: String
    }
    let written = try JSONDecoder().decode(Written.self, from: result.stdoutData)
    return (written.key, written.string)
  }

  func closedPort() throws -> String {
    let result = try runPython(
      "import socket\ns = socket.socket()\ns.bind(('127.0.0.1', 0))\nprint(s.getsockname()[1])\ns.close()")
    return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
  }

  func probe(_ arguments: [String], environment: [String: String]) throws -> ProcessResult {
    try runProcess(TestEnvironment.python, [Self.script] + arguments, environment: environment)
  }

  /// The one line the probe prints: `{"ok": true}` or `{"ok": false, "error": ..., "detail": ...}`.
  struct ProbeLine: Decodable {
    var ok: Bool
    var error: String?
    var detail: String?
  }

  func json(_ result: ProcessResult) throws -> ProbeLine {
    let lines = result.stdout.split(separator: "\n")
    try #require(lines.count == 1, "one JSON line expected, got: \(result.stdout) \(result.stderr)")
    return try JSONDecoder().decode(ProbeLine.self, from: Data(lines[0].utf8))
  }

  @Test func unreachableTelegramIsAClassifiableTemporaryError() throws {
    let dir = try TemporaryDirectory()
    let session = dir.file("user_42.session")
    let secrets = try makeSession(at: session)
    let before = try Data(contentsOf: URL(fileURLWithPath: session))
    let environment = [
      "TG_API_ID": "12345", "TG_API_HASH": Self.apiHash, "TG_PROBE_DC_ADDRESS": "127.0.0.1",
      "TG_PROBE_PORT": try closedPort(), "TG_PROBE_TIMEOUT": "20",
    ]

    let result = try probe([session], environment: environment)

    // The probe's own connect failed (a watchdog expiry would say TimeoutError instead).
    #expect(result.status == 2, "\(result.stdout) \(result.stderr)")
    let object = try json(result)
    #expect(object.ok == false)
    #expect(object.error == "ConnectionError")
    let classified = ErrorClassifier.classify(result.stdout)
    #expect(classified.class == .temporary)
    #expect(classified.code == "CONNECTION_ERROR")
    // Nothing secret in the output; the live file untouched, no sidecar left beside it.
    for output in [result.stdout, result.stderr] {
      #expect(!output.contains(Self.apiHash))
      #expect(!output.contains(secrets.keyHex))
      #expect(!output.contains(secrets.string))
    }
    #expect(try Data(contentsOf: URL(fileURLWithPath: session)) == before)
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["user_42.session"])
  }

  @Test func refusesWhenALiveProcessOwnsTheSession() throws {
    let dir = try TemporaryDirectory()
    let session = dir.file("user_42.session")
    _ = try makeSession(at: session)
    let pidFile = dir.file(".tgsess-bot.pid")
    try "pid=\(ProcessInfo.processInfo.processIdentifier) command=bot\n".write(
      toFile: pidFile, atomically: true, encoding: .utf8)

    let result = try probe(
      ["--refuse-if-locked", pidFile, session], environment: ["TG_API_ID": "12345", "TG_API_HASH": Self.apiHash])

    #expect(result.status == 3)
    let object = try json(result)
    #expect(object.error == "REFUSED")
    #expect(object.detail?.contains("live bot owns the session") == true)
  }

  @Test func aStalePidFileDoesNotRefuse() throws {
    let dir = try TemporaryDirectory()
    let session = dir.file("user_42.session")
    _ = try makeSession(at: session)
    let pidFile = dir.file(".tgsess-bot.pid")
    // Above Linux's largest pid_max (2^22), so no process can have it.
    try "99999999\n".write(toFile: pidFile, atomically: true, encoding: .utf8)
    let environment = [
      "TG_API_ID": "12345", "TG_API_HASH": Self.apiHash, "TG_PROBE_DC_ADDRESS": "127.0.0.1",
      "TG_PROBE_PORT": try closedPort(),
    ]

    let result = try probe(["--refuse-if-locked", pidFile, session], environment: environment)

    #expect(result.status == 2)
    #expect(try json(result).error == "ConnectionError")
  }

  @Test func refusesASessionWithAJournal() throws {
    let dir = try TemporaryDirectory()
    let session = dir.file("user_42.session")
    _ = try makeSession(at: session)
    try Data("not empty".utf8).write(to: URL(fileURLWithPath: session + "-journal"))

    let result = try probe([session], environment: ["TG_API_ID": "12345", "TG_API_HASH": Self.apiHash])

    #expect(result.status == 3)
    #expect(try json(result).error == "REFUSED")
  }

  @Test func reportsUsageAndBadFilesWithoutConnecting() throws {
    let dir = try TemporaryDirectory()
    let session = dir.file("user_42.session")
    _ = try makeSession(at: session)
    let usage = try probe([session], environment: ["TG_API_ID": "", "TG_API_HASH": ""])
    #expect(usage.status == 64)
    #expect(try json(usage).error == "PROBE_USAGE")

    let garbage = dir.file("garbage.session")
    try Data(repeating: 0x42, count: 4096).write(to: URL(fileURLWithPath: garbage))
    let bad = try probe([garbage], environment: ["TG_API_ID": "12345", "TG_API_HASH": Self.apiHash])
    #expect(bad.status == 2)
    #expect(try json(bad).error == "SESSION_FILE_INVALID")
    #expect(ErrorClassifier.classify(bad.stdout).class == .temporary)
  }
}

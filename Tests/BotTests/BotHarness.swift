import Foundation
import Store
import TestSupport

#if canImport(FoundationNetworking)
  import FoundationNetworking
#endif

/// The fake Bot API server (`Fixtures/fake_bot_api.py`), run by the test virtualenv's Python on
/// 127.0.0.1 with a random port, driven through its `/_control/` API.
final class FakeBotAPI: @unchecked Sendable {
  let process: Process
  let port: Int
  let token: String
  var baseURL: String { "http://127.0.0.1:\(port)" }
  private let stderrPath: String

  static var scriptPath: String { TestEnvironment.packageRoot + "/Tests/BotTests/Fixtures/fake_bot_api.py" }

  init(token: String, directory: TemporaryDirectory) throws {
    self.token = token
    let python =
      FileManager.default.isExecutableFile(atPath: TestEnvironment.python) ? TestEnvironment.python : "/usr/bin/python3"
    process = Process()
    process.executableURL = URL(fileURLWithPath: python)
    process.arguments = [Self.scriptPath, "--token", token]
    let pipe = Pipe()
    process.standardOutput = pipe
    stderrPath = directory.file("fake-bot-api.stderr")
    _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)
    process.standardError = FileHandle(forWritingAtPath: stderrPath)
    try process.run()
    // The first line is "PORT <n>".
    var line = Data()
    let handle = pipe.fileHandleForReading
    while !line.contains(UInt8(ascii: "\n")) {
      let chunk = handle.availableData
      if chunk.isEmpty { break }
      line.append(chunk)
    }
    let text = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    guard text.hasPrefix("PORT "), let port = Int(text.dropFirst(5)) else {
      process.terminate()
      throw TestHelperError("the fake Bot API did not start: '\(text)'")
    }
    self.port = port
  }

  /// SIGKILL: it keeps nothing worth a clean exit (and a test runner may hand its children an
  /// ignored SIGTERM).
  func stop() {
    if process.isRunning {
      kill(process.processIdentifier, SIGKILL)
      process.waitUntilExit()
    }
  }

  deinit { stop() }

  /// What the fake printed to stderr (its "UNEXPECTED" lines).
  var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

  /// One control request.
  @discardableResult
  func control(_ path: String, _ body: [String: Any]? = nil) throws -> [String: Any] {
    var request = URLRequest(url: URL(string: baseURL + "/_control/" + path)!)
    request.httpMethod = body == nil ? "GET" : "POST"
    request.timeoutInterval = 10
    if let body {
      request.httpBody = try JSONSerialization.data(withJSONObject: body)
      request.setValue("application/json", forHTTPHeaderField: "Content-Type")
    }
    let box = ResponseBox()
    let semaphore = DispatchSemaphore(value: 0)
    URLSession.shared.dataTask(with: request) { data, _, error in
      box.set(data: data, error: error)
      semaphore.signal()
    }.resume()
    guard semaphore.wait(timeout: .now() + 15) == .success else {
      throw TestHelperError("the fake Bot API did not answer \(path)")
    }
    let (data, error) = box.get()
    guard let data, error == nil else {
      throw TestHelperError("control \(path) failed: \(String(describing: error))")
    }
    guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
      throw TestHelperError("control \(path): not a JSON object")
    }
    return object
  }

  /// Injects a text message from `userID` (in their private chat, unless `chatID` is given).
  /// - Returns: the update id.
  @discardableResult
  func send(_ text: String, from userID: Int64, chatID: Int64? = nil, chatType: String = "private") throws -> Int64 {
    var body: [String: Any] = ["from_id": userID, "text": text, "chat_type": chatType]
    if let chatID { body["chat_id"] = chatID }
    return try (control("message", body)["update_id"] as? NSNumber)?.int64Value ?? -1
  }

  /// Injects a press on an inline button of message `messageID`.
  @discardableResult
  func press(_ data: String, from userID: Int64, messageID: Int64, chatID: Int64? = nil) throws -> Int64 {
    try
      (control(
        "callback", ["from_id": userID, "chat_id": chatID ?? userID, "message_id": messageID, "data": data])[
        "update_id"]
      as? NSNumber)?.int64Value ?? -1
  }

  /// Injects raw update objects (for malformed ones).
  func inject(_ updates: [[String: Any]]) throws {
    try control("updates", ["updates": updates])
  }

  /// Queues faults, consumed in order by the next requests of their method.
  func fault(_ faults: [[String: Any]]) throws {
    try control("faults", ["faults": faults])
  }

  func state() throws -> FakeState { FakeState(try control("state")) }
}

/// A lock-protected slot for an URLSession callback's result.
private final class ResponseBox: @unchecked Sendable {
  private let lock = NSLock()
  private var data: Data?
  private var error: (any Error)?
  func set(data: Data?, error: (any Error)?) {
    lock.withLock {
      self.data = data
      self.error = error
    }
  }
  func get() -> (Data?, (any Error)?) { lock.withLock { (data, error) } }
}

/// A snapshot of what the fake saw.
struct FakeState: @unchecked Sendable {
  struct Sent {
    var kind: String
    var chatID: Int64
    var messageID: Int64
    var text: String
    /// The buttons' callback data, row by row flattened.
    var buttons: [String]
  }

  var raw: [String: Any]
  var sent: [Sent]
  var errors: [String]
  var methods: [String]
  var requests: [(method: String, params: [String: Any])]
  var deliveries: [Int64: Int]
  var pending: [Int64]
  var pollsWaiting: Int
  var faultsLeft: Int
  var confirmedOffset: Int64
  var callbackAnswers: [(id: String, text: String?)]
  var commandSets: Int

  init(_ raw: [String: Any]) {
    self.raw = raw
    func int64(_ value: Any?) -> Int64 { (value as? NSNumber)?.int64Value ?? 0 }
    sent = (raw["sent"] as? [[String: Any]] ?? []).map { entry in
      let markup = entry["reply_markup"] as? [String: Any]
      let rows = markup?["inline_keyboard"] as? [[[String: Any]]] ?? []
      return Sent(
        kind: entry["kind"] as? String ?? "", chatID: int64(entry["chat_id"]), messageID: int64(entry["message_id"]),
        text: entry["text"] as? String ?? "", buttons: rows.flatMap { $0.compactMap { $0["callback_data"] as? String } }
      )
    }
    errors = raw["errors"] as? [String] ?? []
    requests = (raw["requests"] as? [[String: Any]] ?? []).map {
      ($0["method"] as? String ?? "", $0["params"] as? [String: Any] ?? [:])
    }
    methods = requests.map(\.method)
    deliveries = [:]
    for (key, value) in raw["deliveries"] as? [String: Any] ?? [:] {
      if let id = Int64(key) { deliveries[id] = Int(int64(value)) }
    }
    pending = (raw["pending"] as? [Any] ?? []).map(int64)
    pollsWaiting = Int(int64(raw["polls_waiting"]))
    faultsLeft = Int(int64(raw["faults_left"]))
    confirmedOffset = int64(raw["confirmed_offset"])
    callbackAnswers = (raw["callback_answers"] as? [[String: Any]] ?? []).map {
      ($0["id"] as? String ?? "", $0["text"] as? String)
    }
    commandSets = (raw["commands"] as? [Any] ?? []).count
  }

  /// New messages (not edits) sent to `chatID`.
  func messages(to chatID: Int64) -> [Sent] { sent.filter { $0.chatID == chatID && $0.kind == "send" } }

  /// Edits of message `messageID`, in order.
  func edits(of messageID: Int64) -> [Sent] { sent.filter { $0.messageID == messageID && $0.kind == "edit" } }

  /// The text message `messageID` shows now.
  func currentText(of messageID: Int64) -> String? {
    sent.last { $0.messageID == messageID && ($0.kind == "send" || $0.kind == "edit") }?.text
  }

  /// Everything shown in `chatID`: each message's current text, in order.
  func texts(in chatID: Int64) -> [String] {
    messages(to: chatID).map { currentText(of: $0.messageID) ?? $0.text }
  }
}

/// A running `tgsess-bot`, its stdout and stderr captured to files.
final class BotProcess: @unchecked Sendable {
  let process: Process
  let logPath: String
  let outPath: String

  init(arguments: [String], environment: [String: String], directory: TemporaryDirectory, name: String) throws {
    let binary = TestEnvironment.productPath("tgsess-bot")
    guard FileManager.default.isExecutableFile(atPath: binary) else {
      throw TestHelperError("\(binary) is not built; run swift build --build-tests")
    }
    logPath = directory.file("\(name).stderr")
    outPath = directory.file("\(name).stdout")
    _ = FileManager.default.createFile(atPath: logPath, contents: nil)
    _ = FileManager.default.createFile(atPath: outPath, contents: nil)
    process = Process()
    process.executableURL = URL(fileURLWithPath: binary)
    process.arguments = arguments
    // The developer's TGSESS_* settings stay out; the test sets its own.
    process.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("TGSESS_") }
      .merging(environment) { $1 }
    process.standardError = FileHandle(forWritingAtPath: logPath)
    process.standardOutput = FileHandle(forWritingAtPath: outPath)
    process.standardInput = FileHandle.nullDevice
    try process.run()
  }

  var pid: Int32 { process.processIdentifier }
  var isRunning: Bool { process.isRunning }

  /// Everything the runner printed (stderr, then stdout).
  var output: String {
    ((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "")
      + ((try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "")
  }

  /// Waits for the process to exit by itself.
  /// - Throws: when it still runs after `timeout` seconds (it is killed then).
  func waitForExit(timeout: TimeInterval = 60) throws -> Int32 {
    let deadline = Date().addingTimeInterval(timeout)
    while process.isRunning {
      if Date() > deadline {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        throw TestHelperError("tgsess-bot did not exit within \(Int(timeout)) s; log:\n\(output.suffix(3000))")
      }
      Thread.sleep(forTimeInterval: 0.05)
    }
    return process.terminationStatus
  }

  /// Sends SIGTERM and waits for the exit status.
  func terminate(timeout: TimeInterval = 60) throws -> Int32 {
    if process.isRunning { kill(process.processIdentifier, SIGTERM) }
    return try waitForExit(timeout: timeout)
  }

  deinit {
    if process.isRunning {
      kill(process.processIdentifier, SIGKILL)
      process.waitUntilExit()
    }
  }
}

/// A real deployment (made by `tgsess-fleet` and `tgsess init`), the fake Bot API, and the
/// runner between them.
final class BotScenario: @unchecked Sendable {
  /// The users `tgsess-fleet --users 5` creates.
  static let users: [Int64] = [100_000_000, 100_007_919, 100_015_838, 100_023_757, 100_031_676]
  /// An admin with no session of their own.
  static let admin: Int64 = 999
  /// Shaped like a real token so the generic redaction pattern would also catch it.
  static let token = "7012345678:AAHfakeTokenForTgsessTests_xyz0123456"

  let fleet: TestFleet
  var directory: TemporaryDirectory { fleet.directory }
  var root: String { fleet.root }
  let fake: FakeBotAPI
  let deployment: Deployment
  var tokenPath: String { directory.file("bot-token") }
  private(set) var runs: [BotProcess] = []
  var bot: BotProcess? { runs.last }

  /// - Parameters:
  ///   - monitorInterval: seconds between monitor rounds (long by default, so only tests of the
  ///     monitor see it run).
  ///   - isLegacy: a seed-shaped database that was never migrated.
  init(monitorInterval: Int = 600, pollTimeout: Int = 2, isLegacy: Bool = false, fakeToken: String = token) throws {
    fleet = try TestFleet(
      users: 5, legacy: isLegacy, entities: 120, initialized: !isLegacy, location: .subdirectory("deployment"),
      label: "tgsess-bot")
    fake = try FakeBotAPI(token: fakeToken, directory: fleet.directory)
    try """
    [bot]
    admin_ids = [\(Self.admin)]
    api_base_url = "\(fake.baseURL)"
    monitor_interval_seconds = \(monitorInterval)
    poll_timeout_seconds = \(pollTimeout)
    """.write(toFile: fleet.root + "/tgsess.toml", atomically: true, encoding: .utf8)
    _ = FileManager.default.createFile(
      atPath: fleet.directory.file("bot-token"), contents: Data((Self.token + "\n").utf8),
      attributes: [.posixPermissions: 0o600])
    deployment = try Deployment.resolve(root: fleet.root, config: nil, environment: [:])
  }

  /// Starts the runner and waits until it polls.
  @discardableResult
  func start(extraArguments: [String] = [], environment: [String: String] = [:], waitUntilPolling: Bool = true) throws
    -> BotProcess
  {
    let before = try fake.state().methods.filter { $0 == "getUpdates" }.count
    let process = try BotProcess(
      arguments: ["--root", root, "--token-file", tokenPath, "--log-level", "debug"] + extraArguments,
      environment: environment, directory: directory, name: "bot-\(runs.count + 1)")
    runs.append(process)
    if waitUntilPolling {
      try waitFor("the runner to poll") { state in state.methods.filter { $0 == "getUpdates" }.count > before }
    }
    return process
  }

  /// Waits until `predicate` holds for the fake's state.
  /// - Throws: after `timeout` seconds, with the runner's log tail.
  @discardableResult
  func waitFor(_ what: String, timeout: TimeInterval = 45, _ predicate: (FakeState) throws -> Bool) throws
    -> FakeState
  {
    let deadline = Date().addingTimeInterval(timeout)
    while true {
      let state = try fake.state()
      if try predicate(state) { return state }
      if Date() > deadline {
        throw TestHelperError(
          "timed out waiting for \(what); fake errors: \(state.errors); sent: \(state.sent.map { "\($0.chatID): \($0.text.prefix(80))" }); runner log tail:\n\(allOutput.suffix(4000))"
        )
      }
      if let bot, !bot.isRunning, !what.contains("exit") {
        throw TestHelperError(
          "tgsess-bot exited (\(bot.process.terminationStatus)) while waiting for \(what):\n\(allOutput.suffix(4000))")
      }
      Thread.sleep(forTimeInterval: 0.1)
    }
  }

  /// Waits for the runner's log to hold `text` at least `count` times.
  func waitForLog(_ text: String, count: Int = 1, timeout: TimeInterval = 45) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while (bot?.output.components(separatedBy: text).count ?? 1) - 1 < count {
      if Date() > deadline {
        throw TestHelperError("timed out waiting for '\(text)' ×\(count) in the log:\n\(allOutput.suffix(4000))")
      }
      Thread.sleep(forTimeInterval: 0.1)
    }
  }

  /// Sends `text` from `userID`, waits until the runner handled it (it records the offset only
  /// after its replies went out), and returns the messages it added to that chat (final texts).
  @discardableResult
  func say(_ text: String, from userID: Int64) throws -> [FakeState.Sent] {
    let before = try fake.state().messages(to: userID).count
    let updateID = try fake.send(text, from: userID)
    try waitHandled(updateID)
    return try newMessages(in: userID, after: before)
  }

  /// Presses a button as `userID` and returns the messages the runner added to that chat.
  @discardableResult
  func press(_ data: String, from userID: Int64, messageID: Int64) throws -> [FakeState.Sent] {
    let before = try fake.state().messages(to: userID).count
    let updateID = try fake.press(data, from: userID, messageID: messageID)
    try waitHandled(updateID)
    return try newMessages(in: userID, after: before)
  }

  /// The messages sent to `chatID` after the first `count`, each with its current text.
  func newMessages(in chatID: Int64, after count: Int) throws -> [FakeState.Sent] {
    let state = try fake.state()
    return state.messages(to: chatID).dropFirst(count).map { message in
      var current = message
      current.text = state.currentText(of: message.messageID) ?? message.text
      return current
    }
  }

  /// Whether the runner recorded an offset past `updateID` (it handled the update).
  func handled(_ updateID: Int64) -> Bool {
    guard let value = try? query("SELECT value FROM tgsess_state WHERE key = 'bot.update_offset'") else { return false }
    return (Int64(value) ?? 0) > updateID
  }

  /// One value from the bot database through the sqlite3 CLI.
  func query(_ sql: String) throws -> String {
    let result = try runProcess("/usr/bin/sqlite3", [deployment.databasePath, sql])
    guard result.status == 0 else { throw TestHelperError("sqlite3 failed: \(result.stderr)") }
    return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
  }

  /// Waits until update `updateID` is handled (its offset recorded).
  func waitHandled(_ updateID: Int64) throws {
    try waitFor("update \(updateID) to be handled") { _ in handled(updateID) }
  }

  /// The names of every file under backups/ (archives sit in per-kind and per-user folders).
  func archiveFileNames() throws -> [String] {
    let directory = deployment.backupsDirectory
    guard FileManager.default.fileExists(atPath: directory) else { return [] }
    return try FileManager.default.subpathsOfDirectory(atPath: directory).map { ($0 as NSString).lastPathComponent }
      .sorted()
  }

  func sessionPath(_ userID: Int64) -> String { deployment.sessionPath(userID: userID) }

  /// Whether the user's session file is a valid session.
  func isValidSession(_ userID: Int64) -> Bool {
    (try? SessionFileInspector.inspect(path: sessionPath(userID))) != nil
  }

  /// Overwrites a session file with garbage.
  func corrupt(_ userID: Int64) throws {
    try Data(repeating: 0x5a, count: 4096).write(to: URL(fileURLWithPath: sessionPath(userID)))
  }

  func removeSession(_ userID: Int64) throws {
    try FileManager.default.removeItem(atPath: sessionPath(userID))
  }

  /// Every runner's output, in order.
  var allOutput: String { runs.map(\.output).joined(separator: "\n") }

  /// Stops a running runner (SIGTERM) and returns its exit status.
  func stop() throws -> Int32 {
    guard let bot, bot.isRunning else { return bot?.process.terminationStatus ?? 0 }
    return try bot.terminate()
  }

  /// The checks every scenario ends with: the runner stopped with 0, the fake saw nothing
  /// unexpected, and the token appears in no output.
  func finish(expectingExit code: Int32 = 0) throws {
    let status = try stop()
    defer { fake.stop() }
    let state = try fake.state()
    var problems: [String] = []
    if status != code { problems.append("exit status \(status), expected \(code)") }
    if !state.errors.isEmpty { problems.append("the fake saw unexpected requests: \(state.errors)") }
    if allOutput.contains(Self.token) || allOutput.contains(String(Self.token.split(separator: ":")[1])) {
      problems.append("the bot token appears in the runner's output")
    }
    if !problems.isEmpty {
      throw TestHelperError(problems.joined(separator: "; ") + "\nrunner output tail:\n\(allOutput.suffix(4000))")
    }
  }
}

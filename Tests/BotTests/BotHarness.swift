import Foundation
import Store
import TestSupport

#if canImport(FoundationNetworking)
  import FoundationNetworking
#endif

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

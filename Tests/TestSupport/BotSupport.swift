import Foundation

#if canImport(FoundationNetworking)
  import FoundationNetworking
#endif

#if canImport(Glibc)
  import Glibc
#endif

/// The fake Bot API server (`Tests/BotTests/Fixtures/fake_bot_api.py`), run by the test virtualenv's Python on
/// 127.0.0.1 with a random port, driven through its `/_control/` API.
public final class FakeBotAPI: @unchecked Sendable {
  public let process: Process
  public let port: Int
  public let token: String
  public var baseURL: String { "http://127.0.0.1:\(port)" }
  private let stderrPath: String

  public static var scriptPath: String { TestEnvironment.packageRoot + "/Tests/BotTests/Fixtures/fake_bot_api.py" }

  public init(token: String, directory: TemporaryDirectory) throws {
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
  public func stop() {
    if process.isRunning {
      kill(process.processIdentifier, SIGKILL)
      process.waitUntilExit()
    }
  }

  deinit { stop() }

  /// What the fake printed to stderr (its "UNEXPECTED" lines).
  public var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

  /// One control request.
  @discardableResult
  public func control(_ path: String, _ body: [String: Any]? = nil) throws -> [String: Any] {
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
  public func send(_ text: String, from userID: Int64, chatID: Int64? = nil, chatType: String = "private") throws
    -> Int64
  {
    var body: [String: Any] = ["from_id": userID, "text": text, "chat_type": chatType]
    if let chatID { body["chat_id"] = chatID }
    return try (control("message", body)["update_id"] as? NSNumber)?.int64Value ?? -1
  }

  /// Injects a press on an inline button of message `messageID`.
  @discardableResult
  public func press(_ data: String, from userID: Int64, messageID: Int64, chatID: Int64? = nil) throws -> Int64 {
    try
      (control(
        "callback", ["from_id": userID, "chat_id": chatID ?? userID, "message_id": messageID, "data": data])[
        "update_id"]
      as? NSNumber)?.int64Value ?? -1
  }

  /// Injects raw update objects (for malformed ones).
  public func inject(_ updates: [[String: Any]]) throws {
    try control("updates", ["updates": updates])
  }

  /// Queues faults, consumed in order by the next requests of their method.
  public func fault(_ faults: [[String: Any]]) throws {
    try control("faults", ["faults": faults])
  }

  public func state() throws -> FakeState { FakeState(try control("state")) }
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
public struct FakeState: @unchecked Sendable {
  public struct Sent {
    public var kind: String
    public var chatID: Int64
    public var messageID: Int64
    public var text: String
    /// The buttons' callback data, row by row flattened.
    public var buttons: [String]
  }

  public var raw: [String: Any]
  public var sent: [Sent]
  public var errors: [String]
  public var methods: [String]
  public var requests: [(method: String, params: [String: Any])]
  public var deliveries: [Int64: Int]
  public var pending: [Int64]
  public var pollsWaiting: Int
  public var faultsLeft: Int
  public var confirmedOffset: Int64
  public var callbackAnswers: [(id: String, text: String?)]
  public var commandSets: Int

  public init(_ raw: [String: Any]) {
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
  public func messages(to chatID: Int64) -> [Sent] { sent.filter { $0.chatID == chatID && $0.kind == "send" } }

  /// Edits of message `messageID`, in order.
  public func edits(of messageID: Int64) -> [Sent] { sent.filter { $0.messageID == messageID && $0.kind == "edit" } }

  /// The text message `messageID` shows now.
  public func currentText(of messageID: Int64) -> String? {
    sent.last { $0.messageID == messageID && ($0.kind == "send" || $0.kind == "edit") }?.text
  }

  /// Everything shown in `chatID`: each message's current text, in order.
  public func texts(in chatID: Int64) -> [String] {
    messages(to: chatID).map { currentText(of: $0.messageID) ?? $0.text }
  }
}

/// A running `tgsess-bot`, its stdout and stderr captured to files.
public final class BotProcess: @unchecked Sendable {
  public let process: Process
  public let logPath: String
  public let outPath: String

  public init(arguments: [String], environment: [String: String], directory: TemporaryDirectory, name: String) throws {
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

  public var pid: Int32 { process.processIdentifier }
  public var isRunning: Bool { process.isRunning }

  /// Everything the runner printed (stderr, then stdout).
  public var output: String {
    ((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "")
      + ((try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "")
  }

  /// Waits for the process to exit by itself.
  /// - Throws: when it still runs after `timeout` seconds (it is killed then).
  public func waitForExit(timeout: TimeInterval = 60) throws -> Int32 {
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
  public func terminate(timeout: TimeInterval = 60) throws -> Int32 {
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

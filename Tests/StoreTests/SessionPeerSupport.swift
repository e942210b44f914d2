import Foundation
import Store
import TestSupport

/// Runs `Fixtures/python/session_peer.py` in the test virtualenv: the real Telethon / Pyrogram /
/// kurigram / pyrofork write and read the files the session tests check. Fails (never skips)
/// with runPython's message when the virtualenv or a peer is missing.
enum SessionPeer {
  /// The helper script's text.
  static func script() throws -> String {
    guard let resources = Bundle.module.resourceURL else {
      throw TestHelperError("StoreTests resource bundle not found")
    }
    let url = resources.appendingPathComponent("Fixtures/python/session_peer.py")
    guard let data = FileManager.default.contents(atPath: url.path) else {
      throw TestHelperError("missing \(url.path); the StoreTests target must copy Fixtures")
    }
    return String(decoding: data, as: UTF8.self)
  }

  /// Runs `command` with `arguments` and returns the JSON object the script printed.
  /// - Parameter peer: nil for the venv itself (Telethon 1.45, Pyrogram 2.0.106), or
  ///   "telethon142", "kurigram", "pyrofork".
  static func run(_ command: String, _ arguments: [String] = [], peer: String? = nil) throws -> [String: Any] {
    let result = try runPython(try script(), arguments: [command] + arguments, peer: peer)
    return try parse(result.stdout, command: command)
  }

  static func parse(_ stdout: String, command: String) throws -> [String: Any] {
    guard let line = stdout.split(separator: "\n").last(where: { $0.hasPrefix("RESULT ") }) else {
      throw TestHelperError("session_peer.py \(command) printed no RESULT line: \(stdout)")
    }
    let json = Data(line.dropFirst("RESULT ".count).utf8)
    guard let object = try JSONSerialization.jsonObject(with: json) as? [String: Any] else {
      throw TestHelperError("session_peer.py \(command) printed a RESULT that is not an object")
    }
    return object
  }

  /// Random auth key bytes as lower-case hex.
  static func randomKeyHex() -> String {
    Hex.encode((0..<256).map { _ in UInt8.random(in: 0...255) })
  }
}

/// A Python child that runs while the test works (e.g. holding a write transaction).
final class PythonChild {
  private let process = Process()
  private let stdinPipe = Pipe()
  private let stdoutPipe = Pipe()
  private let stderrPipe = Pipe()

  /// Starts `session_peer.py command arguments` and waits until it prints `READY`.
  init(_ command: String, _ arguments: [String]) throws {
    // Fails with runPython's own message when the virtualenv is missing.
    try runPython("pass")
    process.executableURL = URL(fileURLWithPath: TestEnvironment.python)
    process.arguments = ["-c", try SessionPeer.script(), command] + arguments
    process.standardInput = stdinPipe
    process.standardOutput = stdoutPipe
    process.standardError = stderrPipe
    try process.run()
    var output = Data()
    while !String(decoding: output, as: UTF8.self).contains("READY") {
      let chunk = stdoutPipe.fileHandleForReading.availableData
      if chunk.isEmpty {
        let errors = String(decoding: stderrPipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        throw TestHelperError("python child \(command) ended before READY: \(errors)")
      }
      output.append(chunk)
    }
  }

  /// Closes the child's stdin (it then rolls back and exits) and waits for it.
  /// - Returns: the exit status.
  @discardableResult
  func finish() -> Int32 {
    try? stdinPipe.fileHandleForWriting.close()
    process.waitUntilExit()
    return process.terminationStatus
  }

  deinit {
    if process.isRunning { finish() }
  }
}

/// Small file helpers for the session tests.
enum Files {
  static func bytes(_ path: String) throws -> [UInt8] { Array(try FileSystem.read(path)) }

  static func write(_ bytes: [UInt8], to path: String) throws {
    guard FileManager.default.createFile(atPath: path, contents: Data(bytes)) else {
      throw TestHelperError("cannot write \(path)")
    }
  }

  static func copy(_ source: String, _ destination: String) throws {
    try? FileManager.default.removeItem(atPath: destination)
    try FileManager.default.copyItem(atPath: source, toPath: destination)
  }

  static func mtime(_ path: String) throws -> timespec {
    var info = stat()
    guard stat(path, &info) == 0 else { throw TestHelperError("stat \(path) failed") }
    return info.st_mtim
  }

  static func exists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }

  /// Runs SQL on a copy-made test file with the project's own connection (read-write).
  static func execute(_ sql: String, on path: String) throws {
    let connection = try SQLiteConnection(path: path, mode: .readWrite)
    try connection.exec(sql)
    try connection.close()
  }
}

extension Dictionary where Key == String, Value == Any {
  func string(_ key: String) -> String? { self[key] as? String }
  func int(_ key: String) -> Int? { (self[key] as? NSNumber)?.intValue }
  func int64(_ key: String) -> Int64? { (self[key] as? NSNumber)?.int64Value }
  func bool(_ key: String) -> Bool? { (self[key] as? NSNumber)?.boolValue }
  func object(_ key: String) -> [String: Any]? { self[key] as? [String: Any] }
}

/// The SessionProblem inside a thrown error, if it is a `StoreError.session`.
func sessionProblem(_ error: any Error) -> SessionProblem? {
  if case .session(_, let reason) = error as? StoreError { return reason }
  return nil
}

/// Runs `body` and returns the SessionProblem it threw (nil when it did not throw one).
func problem(_ body: () throws -> Void) -> SessionProblem? {
  do {
    try body()
    return nil
  } catch {
    return sessionProblem(error)
  }
}

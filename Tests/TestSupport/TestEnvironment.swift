import Foundation

/// Where the test peers live. `scripts/test.sh` creates the virtualenv with Telethon, Pyrogram
/// and cryptography at `.venv-test/`; `TGSESS_TEST_PYTHON` can point elsewhere.
public enum TestEnvironment {
  /// The package root (the directory holding Package.swift).
  public static let packageRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    while url.path != "/" {
      url.deleteLastPathComponent()
      if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) {
        return url.path
      }
    }
    fatalError("Package.swift not found above \(#filePath)")
  }()

  /// The Python interpreter of the test virtualenv.
  public static var python: String {
    if let path = ProcessInfo.processInfo.environment["TGSESS_TEST_PYTHON"] { return path }
    return packageRoot + "/.venv-test/bin/python"
  }

  /// A directory of extra Python packages installed with `pip install --target` beside the
  /// virtualenv, for peers that cannot share one environment (Telethon 1.42 writes schema v7;
  /// kurigram and pyrofork both install a `pyrogram` module).
  public static func peerPath(_ name: String) -> String {
    let python = URL(fileURLWithPath: python)
    return python.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("peers/\(name)").path
  }

  /// Whether to keep temporary directories for inspection.
  public static var keepTemp: Bool { ProcessInfo.processInfo.environment["TGSESS_KEEP_TEMP"] == "1" }
}

/// The outcome of running a child process.
public struct ProcessResult: Sendable {
  public var status: Int32
  public var stdout: String
  public var stderr: String
  public var stdoutData: Data
}

/// Errors a test helper raises; they fail the test with a readable message.
public struct TestHelperError: Error, CustomStringConvertible {
  public var description: String
  public init(_ description: String) { self.description = description }
}

/// Runs `executable` with `arguments` and returns its status and output.
/// - Throws: `TestHelperError` when the executable cannot be started.
@discardableResult
public func runProcess(
  _ executable: String, _ arguments: [String], stdin: Data? = nil, environment: [String: String]? = nil,
  currentDirectory: String? = nil, isolateTgsessVariables: Bool = false
) throws -> ProcessResult {
  let process = Process()
  process.executableURL = URL(fileURLWithPath: executable)
  process.arguments = arguments
  var base = ProcessInfo.processInfo.environment
  // Keep the developer's TGSESS_* settings out of a tgsess child unless the test sets them.
  if isolateTgsessVariables { base = base.filter { !$0.key.hasPrefix("TGSESS_") } }
  process.environment = base.merging(environment ?? [:]) { $1 }
  if let currentDirectory { process.currentDirectoryURL = URL(fileURLWithPath: currentDirectory) }
  let outPipe = Pipe()
  let errPipe = Pipe()
  let inPipe = Pipe()
  process.standardOutput = outPipe
  process.standardError = errPipe
  process.standardInput = inPipe
  do { try process.run() } catch { throw TestHelperError("cannot start \(executable): \(error)") }
  if let stdin { inPipe.fileHandleForWriting.write(stdin) }
  try? inPipe.fileHandleForWriting.close()
  // Read both pipes concurrently so a chatty child never blocks on a full pipe.
  nonisolated(unsafe) var errData = Data()
  let group = DispatchGroup()
  group.enter()
  DispatchQueue.global().async {
    errData = errPipe.fileHandleForReading.readDataToEndOfFile()
    group.leave()
  }
  let outData = outPipe.fileHandleForReading.readDataToEndOfFile()
  group.wait()
  process.waitUntilExit()
  return ProcessResult(
    status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
    stderr: String(decoding: errData, as: UTF8.self), stdoutData: outData)
}

/// Runs a Python snippet in the test virtualenv (Telethon, Pyrogram, cryptography).
/// - Throws: `TestHelperError` with Python's stderr when the script fails.
@discardableResult
public func runPython(
  _ script: String, arguments: [String] = [], stdin: Data? = nil, peer: String? = nil
) throws -> ProcessResult {
  guard FileManager.default.isExecutableFile(atPath: TestEnvironment.python) else {
    throw TestHelperError(
      "no test virtualenv at \(TestEnvironment.python); run scripts/test.sh (it creates .venv-test with telethon, pyrogram and cryptography)"
    )
  }
  var environment: [String: String]? = nil
  if let peer {
    let path = TestEnvironment.peerPath(peer)
    guard FileManager.default.fileExists(atPath: path) else {
      throw TestHelperError("missing Python peer \(path); run scripts/test.sh to install it")
    }
    environment = ["PYTHONPATH": path]
  }
  let result = try runProcess(
    TestEnvironment.python, ["-c", script] + arguments, stdin: stdin, environment: environment)
  guard result.status == 0 else {
    throw TestHelperError("python failed (\(result.status)): \(result.stderr)")
  }
  return result
}

/// A temporary directory removed at the end of the test unless `TGSESS_KEEP_TEMP=1`.
public final class TemporaryDirectory: @unchecked Sendable {
  public let path: String

  public init(_ label: String = "tgsess-test") throws {
    let template = (NSTemporaryDirectory() as NSString).appendingPathComponent("\(label)-XXXXXX")
    var bytes = Array(template.utf8CString)
    guard let made = mkdtemp(&bytes) else { throw TestHelperError("mkdtemp failed for \(template)") }
    path = String(cString: made)
  }

  /// `path/relative`.
  public func file(_ relative: String) -> String { path + "/" + relative }

  deinit {
    if !TestEnvironment.keepTemp { try? FileManager.default.removeItem(atPath: path) }
  }
}

/// Runs the built `tgsess` binary (from `swift build`) and returns its status and output.
/// - Throws: `TestHelperError` when the binary has not been built.
@discardableResult
public func runTgsess(_ arguments: [String], environment: [String: String] = [:], stdin: Data? = nil) throws
  -> ProcessResult
{
  try runBuiltProduct("tgsess", arguments, environment: environment, stdin: stdin)
}

/// Runs a product built next to the tests (`tgsess`, `tgsess-fleet`).
/// - Throws: `TestHelperError` when the binary has not been built.
@discardableResult
public func runBuiltProduct(
  _ name: String, _ arguments: [String], environment: [String: String] = [:], stdin: Data? = nil
) throws -> ProcessResult {
  let path = TestEnvironment.productPath(name)
  guard FileManager.default.isExecutableFile(atPath: path) else {
    throw TestHelperError("\(path) is not built; run swift build --build-tests")
  }
  return try runProcess(path, arguments, stdin: stdin, environment: environment, isolateTgsessVariables: true)
}

extension TestEnvironment {
  /// The path of a product built by `swift build` for this test run.
  public static func productPath(_ name: String) -> String {
    // The test bundle sits in the same build directory as the products.
    let bundle = Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent(name).path
    if FileManager.default.isExecutableFile(atPath: bundle) { return bundle }
    return packageRoot + "/.build/debug/" + name
  }
}

/// Random bytes for test fixtures (not for keys that protect anything).
public func randomBytes(_ count: Int) -> [UInt8] {
  (0..<count).map { _ in UInt8.random(in: 0...255) }
}

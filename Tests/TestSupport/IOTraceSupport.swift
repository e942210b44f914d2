import Foundation
import Store

#if canImport(Glibc)
  import Glibc
#endif

/// The power-loss tools: `iotrace.so`, an LD_PRELOAD library that records every file-system call
/// below a scope (or fails the Nth call of one class), and `crashstates.py`, which builds the
/// crash states of a recorded run. Both live in `Tests/Torture/Resources`, whose header comments
/// describe the log and the crash models; the torture families and the durability tests use them.
public enum IOTrace {
  public static let resources = TestEnvironment.packageRoot + "/Tests/Torture/Resources"
  public static let replayer = resources + "/crashstates.py"

  /// `iotrace.so`, built from `iotrace.c` into `.build/iotrace/` once per version of the source.
  /// - Throws: `TestHelperError` when no C compiler is there or the build fails.
  public static func library() throws -> String { try built.get() }

  private static let built: Result<String, TestHelperError> = {
    let source = resources + "/iotrace.c"
    guard let code = FileManager.default.contents(atPath: source) else {
      return .failure(TestHelperError("cannot read \(source)"))
    }
    let directory = TestEnvironment.packageRoot + "/.build/iotrace"
    let output = directory + "/iotrace-\(Digest.sha256Hex(code).prefix(12)).so"
    if FileManager.default.fileExists(atPath: output) { return .success(output) }
    let path = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init)
    let candidates = ["/usr/bin/cc"] + path.flatMap { [$0 + "/cc", $0 + "/clang"] } + ["/opt/swift/usr/bin/clang"]
    guard let compiler = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
      return .failure(TestHelperError("no C compiler (cc or clang) to build iotrace.so"))
    }
    do {
      try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
      // Built under a name of its own, then renamed: test processes may build it at once.
      let temporary = output + ".\(getpid())"
      let result = try runProcess(compiler, ["-shared", "-fPIC", "-O2", "-o", temporary, source, "-ldl", "-lpthread"])
      guard result.status == 0, rename(temporary, output) == 0 else {
        return .failure(TestHelperError("building iotrace.so failed: \(result.stderr)"))
      }
    } catch {
      return .failure(TestHelperError("building iotrace.so failed: \(error)"))
    }
    return .success(output)
  }()

  /// The system Python 3 (the replayer needs its standard library only).
  public static let python: String =
    ["/usr/bin/python3", "/usr/local/bin/python3"].first { FileManager.default.isExecutableFile(atPath: $0) }
    ?? "/usr/bin/python3"

  /// Runs `crashstates.py` with `arguments`.
  /// - Throws: `TestHelperError` with its stderr when it fails.
  @discardableResult
  public static func replay(_ arguments: [String]) throws -> ProcessResult {
    let result = try runProcess(python, [replayer] + arguments)
    guard result.status == 0 else {
      throw TestHelperError("crashstates.py \(arguments.first ?? "") failed: \(result.stderr.suffix(2000))")
    }
    return result
  }

  /// The environment that records a tgsess run: calls below `scope` go to `trace/log` and
  /// `trace/data`; the run's TMPDIR (`temporary`) should be inside the scope.
  /// - Throws: `TestHelperError` when iotrace.so cannot be built.
  public static func recording(scope: [String], trace: String, temporary: String) throws -> [String: String] {
    [
      "LD_PRELOAD": try library(), "TGSESS_IOTRACE_SCOPE": scope.joined(separator: ":"),
      "TGSESS_IOTRACE_LOG": trace + "/log", "TGSESS_IOTRACE_DATA": trace + "/data", "TMPDIR": temporary,
    ]
  }

  /// The environment that fails the `n`th call of `operation` below `scope` with the first of
  /// `errors` that fits the call (n = 0: nothing fails; the calls are counted into `counts`, and
  /// listed with their paths into `calls`).
  /// - Throws: `TestHelperError` when iotrace.so cannot be built.
  public static func faulting(
    scope: [String], operation: String, n: Int, errors: [String], log: String, counts: String? = nil,
    calls: String? = nil, temporary: String
  ) throws -> [String: String] {
    var environment = [
      "LD_PRELOAD": try library(), "TGSESS_IOTRACE_SCOPE": scope.joined(separator: ":"),
      "TGSESS_IOFAULT_OP": operation, "TGSESS_IOFAULT_N": String(n),
      "TGSESS_IOFAULT_ERRNO": errors.joined(separator: ","), "TGSESS_IOFAULT_LOG": log, "TMPDIR": temporary,
    ]
    if let counts { environment["TGSESS_IOFAULT_COUNTS"] = counts }
    if let calls { environment["TGSESS_IOFAULT_CALLS"] = calls }
    return environment
  }

  /// Records one run of `tgsess arguments` on `fleet`, from a snapshot of its tree taken first,
  /// into `work` (which must be outside the deployment).
  /// - Returns: the run's result, and the trace and snapshot directories for `crashstates.py`.
  /// - Throws: `TestHelperError` when recording fails.
  public static func record(_ arguments: [String], on fleet: TestFleet, in work: String) throws -> (
    result: ProcessResult, trace: String, snapshot: String
  ) {
    let trace = work + "/trace"
    let snapshot = work + "/snapshot"
    let temporary = work + "/tmp"
    for directory in [trace, temporary] {
      try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }
    try replay(["snapshot", fleet.root, snapshot])
    let result = try fleet.tgsess(
      arguments, environment: try recording(scope: [fleet.root, temporary], trace: trace, temporary: temporary))
    return (result, trace, snapshot)
  }

  /// What survives a power cut once the recorded run has exited, under the weak model: every
  /// path (relative to the root) of the state holding only what the run made durable.
  /// - Throws: `TestHelperError` when the replayer fails.
  public static func durablePaths(trace: String, snapshot: String) throws -> Set<String> {
    let printed = try replay(["durable", trace, snapshot])
    return Set(printed.stdout.split(separator: "\n").map(String.init))
  }
}

import Foundation
import Store

/// What a live probe concluded about one session.
public enum ProbeVerdict: Sendable, Equatable {
  case ok
  /// Dead, and confirmed by one more run.
  case fatal(ClassifiedError)
  /// Still failing after the retries.
  case temporary(ClassifiedError, attempts: Int)
}

/// Runs an external live probe (e.g. `scripts/probe_telethon.py`) on one session, with a
/// timeout, classifying its error with the seed's classes and retrying temporary ones.
enum Probe {
  /// The probe's failure, as a classifiable error.
  struct Failure: Error {
    var text: String
  }

  /// Runs `command + [sessionPath]` under the retry policy (3 tries, backoff with jitter; a
  /// fatal error is confirmed once more before it counts).
  static func run(
    command: [String], sessionPath: String, timeout: TimeInterval, policy: RetryPolicy = RetryPolicy(),
    sleep: (Duration) throws -> Void = { duration in
      let seconds = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
      Thread.sleep(forTimeInterval: seconds)
    }
  ) -> ProbeVerdict {
    var random = SystemRandomNumberGenerator()
    do {
      let outcome = try policy.runSynchronously(
        random: &random, sleep: sleep,
        classify: { error in ErrorClassifier.classify((error as? Failure)?.text ?? "\(error)") }
      ) { _ in
        try once(command: command, sessionPath: sessionPath, timeout: timeout)
      }
      switch outcome.verdict {
      case .succeeded: return .ok
      case .fatal(let error): return .fatal(error)
      case .temporary(let error): return .temporary(error, attempts: outcome.attempts)
      }
    } catch {
      // Only cancellation escapes the policy.
      return .temporary(ErrorClassifier.classify("TIMEOUT"), attempts: 0)
    }
  }

  /// One probe run: exit 0 with `{"ok": true}` is success; anything else is a failure whose
  /// text (the `error` field, or the exit status) is classified.
  static func once(command: [String], sessionPath: String, timeout: TimeInterval) throws {
    guard let executable = command.first else { throw Failure(text: "UNKNOWN") }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = Array(command.dropFirst()) + [sessionPath]
    let output = Pipe()
    process.standardOutput = output
    process.standardError = FileHandle.nullDevice
    process.standardInput = FileHandle.nullDevice
    do { try process.run() } catch { throw Failure(text: "OSError: cannot start the probe") }
    let deadline = Date().addingTimeInterval(timeout)
    while process.isRunning, Date() < deadline { usleep(20_000) }
    if process.isRunning {
      process.terminate()
      process.waitUntilExit()
      throw Failure(text: "TimeoutError")
    }
    let data = output.fileHandleForReading.readDataToEndOfFile()
    let line = String(decoding: data, as: UTF8.self).split(separator: "\n").last.map(String.init) ?? ""
    let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
    if process.terminationStatus == 0, object?["ok"] as? Bool == true { return }
    if process.terminationStatus == 3 { throw Failure(text: "database is locked") }
    throw Failure(text: (object?["error"] as? String) ?? "exit status \(process.terminationStatus)")
  }
}

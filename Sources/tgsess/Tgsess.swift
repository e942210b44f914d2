import ArgumentParser
import Foundation
import Jobs
import Logging
import Store

@main
struct Tgsess: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "tgsess",
    abstract: "Backups, restores and health checks for Telegram userbot sessions.",
    discussion: """
      A deployment is the bot's database (data/telegram_bot.db) and one session file per user
      (sessions/user_<id>.session). tgsess snapshots them into encrypted archives, prunes them,
      checks their health and restores them.

      EXIT STATUS (all commands but check)
        0 ok · 1 failed · 3 partial (some users failed) · 64 usage · 75 lock held · 130 interrupted
      """,
    version: ToolInfo.version,
    subcommands: [
      Init.self, Migrate.self, Backup.self, List.self, Restore.self, Recover.self, Prune.self, Check.self, Drill.self,
      Push.self, Pin.self, Unpin.self, Status.self, Session.self, Keys.self, Watch.self,
    ]
  )

  /// Parses, runs, and maps every error to one exit code, in one place.
  static func main() {
    SQLiteProcessSetup.configure()
    do {
      var command = try parseAsRoot()
      try command.run()
    } catch let error as JobError {
      fail(error.errorDescription ?? "\(error)", code: exitCode(for: error))
    } catch let error as StoreError {
      fail(error.errorDescription ?? "\(error)", code: exitCode(for: error))
    } catch {
      // `check` speaks Nagios everywhere: a check that cannot even parse its flags is UNKNOWN.
      let verb = CommandLine.arguments.dropFirst().first { !$0.hasPrefix("-") }
      if verb == "check", !(error is ExitCode), Tgsess.exitCode(for: error) != .success {
        FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
        Foundation.exit(3)
      }
      exit(withError: error)
    }
  }

  /// The exit status `main` ends with for `error` (for the monitoring hooks, which report it).
  static func exitStatus(for error: any Error) -> Int32 {
    switch error {
    case let error as JobError: return exitCode(for: error)
    case let error as StoreError: return exitCode(for: error)
    default: return exitCode(for: error).rawValue
    }
  }

  /// What `main` prints for `error`, without the "tgsess: " prefix.
  static func describe(_ error: any Error) -> String {
    switch error {
    case let error as JobError: return error.errorDescription ?? "\(error)"
    case let error as StoreError: return error.errorDescription ?? "\(error)"
    default: return message(for: error)
    }
  }

  static func exitCode(for error: JobError) -> Int32 {
    switch error {
    case .store(_, let underlying): return exitCode(for: underlying)
    case .usage: return ExitStatus.usage
    case .refused: return ExitStatus.failed
    }
  }

  static func exitCode(for error: StoreError) -> Int32 {
    if case .locked = error { return ExitStatus.locked }
    return ExitStatus.failed
  }

  static func fail(_ message: String, code: Int32) -> Never {
    FileHandle.standardError.write(Data("tgsess: \(message)\n".utf8))
    Foundation.exit(code)
  }
}

/// The exit codes of every command but `check` (which speaks Nagios).
enum ExitStatus {
  static let ok: Int32 = 0
  static let failed: Int32 = 1
  static let partial: Int32 = 3
  static let usage: Int32 = 64
  static let locked: Int32 = 75
  static let interrupted: Int32 = 130
}

/// Options every command takes.
struct GlobalOptions: ParsableArguments {
  @Option(help: "Deployment root (default: $TGSESS_ROOT, then the config's root, then the current directory).")
  var root: String?

  @Option(help: "Config file (default: $TGSESS_CONFIG, then <root>/tgsess.toml if present).")
  var config: String?

  @Flag(help: "Print the result as JSON on stdout.")
  var json = false

  @Flag(name: .shortAndLong, help: "Log more (repeat for debug).")
  var verbose: Int

  /// Resolves the deployment and sets up logging (stderr; notice and up unless --verbose).
  func setUp() throws -> (Deployment, Logger) {
    Logs.bootstrap(verbosity: verbose)
    let deployment = try Deployment.resolve(root: root, config: config)
    return (deployment, Logger(label: "tgsess"))
  }
}

enum Logs {
  nonisolated(unsafe) private static var isBootstrapped = false

  static func bootstrap(verbosity: Int) {
    guard !isBootstrapped else { return }
    isBootstrapped = true
    let level: Logger.Level = verbosity >= 2 ? .debug : verbosity == 1 ? .info : .notice
    LoggingSystem.bootstrap { label in
      var handler = StreamLogHandler.standardError(label: label)
      handler.logLevel = level
      return handler
    }
  }
}

/// Writes results: JSON with sorted keys for `--json`, text otherwise.
enum Output {
  static func json<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    encoder.dateEncodingStrategy = .iso8601
    let data = try encoder.encode(value)
    FileHandle.standardOutput.write(data + Data("\n".utf8))
  }

  static func line(_ text: String = "") {
    print(text)
  }
}

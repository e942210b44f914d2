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
      A deployment is the bot's database (data/telegram_bot.db) and one session file per user \
      (sessions/user_<id>.session). tgsess snapshots them into encrypted archives, prunes them, \
      checks their health and restores them.

      EXIT STATUS: 0 ok · 1 failed · 3 partial (some users failed) · 64 usage · 75 lock held · \
      130 interrupted. check speaks Nagios instead: 0 OK · 1 WARNING · 2 CRITICAL · 3 UNKNOWN \
      (a usage error included).
      """,
    version: ToolInfo.version,
    subcommands: [
      Init.self, Migrate.self, Backup.self, List.self, Restore.self, Recover.self, Prune.self, Check.self, Drill.self,
      Push.self, Pin.self, Unpin.self, Status.self, Session.self, Keys.self, Watch.self,
    ]
  )

  /// Parses and runs the command, then ends with the status `ExitStatus` gives its outcome.
  static func main() {
    SQLiteProcessSetup.configure()
    var convention = ExitStatus.Convention.standard
    do {
      var command = try parseAsRoot()
      convention = ExitStatus.convention(of: type(of: command))
      try command.run()
    } catch {
      // A parse error names the command it was parsing; anything later comes from `command`.
      if let parsed = ExitStatus.command(failingToParse: error) { convention = ExitStatus.convention(of: parsed) }
      end(with: error, convention: convention)
    }
  }

  /// Prints what `error` says (nothing for an `ExitCode`, whose command has printed its result)
  /// and exits with its status.
  static func end(with error: any Error, convention: ExitStatus.Convention) -> Never {
    let status = ExitStatus.of(error, convention: convention)
    let text: String
    switch error {
    case is ExitCode: text = ""
    case is JobError, is StoreError, is CommandFailure: text = "tgsess: " + describe(error)
    default: text = fullMessage(for: error)
    }
    if !text.isEmpty {
      let stream = status == ExitStatus.ok ? FileHandle.standardOutput : FileHandle.standardError
      stream.write(Data((text + "\n").utf8))
    }
    Foundation.exit(status)
  }

  /// What `main` prints for `error`, without the "tgsess: " prefix.
  static func describe(_ error: any Error) -> String {
    switch error {
    case let error as JobError: return error.errorDescription ?? "\(error)"
    case let error as StoreError: return error.errorDescription ?? "\(error)"
    case let error as CommandFailure: return error.message
    default: return message(for: error)
    }
  }
}

/// The exit statuses, decided here and nowhere else: every command ends 0 ok · 1 failed · 3
/// partial · 64 usage · 75 lock held · 130 interrupted; `check` speaks Nagios instead (0 OK ·
/// 1 WARNING · 2 CRITICAL · 3 UNKNOWN), so a check that cannot give a verdict, even for a bad
/// flag, is UNKNOWN.
enum ExitStatus {
  static let ok: Int32 = 0
  static let failed: Int32 = 1
  static let partial: Int32 = 3
  static let usage: Int32 = 64
  static let locked: Int32 = 75
  static let interrupted: Int32 = 130
  /// Nagios's UNKNOWN: the check could not tell.
  static let unknown: Int32 = 3

  /// How a command's outcome maps to a status.
  enum Convention {
    /// 0/1/3/64/75/130.
    case standard
    /// Nagios plugin rules (`check`).
    case nagios
  }

  /// The convention of a command.
  static func convention(of command: any ParsableCommand.Type) -> Convention {
    command is any NagiosPlugin.Type ? .nagios : .standard
  }

  /// The status a run ends with when it fails as a whole with `error`. An `ExitCode` is a status
  /// the command already chose from its result (`of(_:)` for a check's verdict).
  static func of(_ error: any Error, convention: Convention) -> Int32 {
    let status: Int32
    switch error {
    case let error as ExitCode: return error.rawValue
    case let error as JobError: status = of(error)
    case let error as StoreError: status = of(error)
    case is CommandFailure: status = failed
    // ArgumentParser's own: 64 for a usage error, 0 for --help and --version, 1 for the rest.
    default: status = Tgsess.exitCode(for: error).rawValue
    }
    switch convention {
    case .standard: return status
    case .nagios: return status == ok ? ok : unknown
    }
  }

  /// The status of a check's verdict.
  static func of(_ state: HealthState) -> Int32 { state.exitCode }

  private static func of(_ error: JobError) -> Int32 {
    switch error {
    case .store(_, let underlying): return of(underlying)
    case .usage: return usage
    case .refused: return failed
    }
  }

  private static func of(_ error: StoreError) -> Int32 {
    if case .locked = error { return locked }
    return failed
  }

  /// The command a parse error is about. ArgumentParser's error carries the command stack it was
  /// parsing but does not expose it; reading it from the error (rather than guessing the verb
  /// from the arguments) is what lets `check --bogus` be UNKNOWN while `backup --bogus` is 64.
  /// A test pins both, so a change in ArgumentParser cannot go unnoticed.
  static func command(failingToParse error: any Error) -> (any ParsableCommand.Type)? {
    let stack = Mirror(reflecting: error).children.first { $0.label == "commandStack" }?.value
    return (stack as? [any ParsableCommand.Type])?.last
  }
}

/// A command whose exit status follows the Nagios plugin rules.
protocol NagiosPlugin {}

/// A failure the CLI worded itself (a Store error with the user's id in its remedy): printed as
/// it is after "tgsess: ", exit 1.
struct CommandFailure: Error {
  var message: String
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

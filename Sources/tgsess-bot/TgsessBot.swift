import AsyncHTTPClient
import Foundation
import Jobs
import Logging
import ServiceLifecycle
import Store

#if canImport(Glibc)
  import Glibc
#endif

/// `tgsess-bot`: parses the flags, refuses an old schema or a second runner, then runs the poller
/// and the monitor in one `ServiceGroup` until SIGTERM or SIGINT.
@main
enum TgsessBot {
  static func main() async {
    SQLiteProcessSetup.configure()
    let arguments: BotArguments
    do {
      arguments = try BotArguments.parse(Array(CommandLine.arguments.dropFirst()))
    } catch {
      fail(error, redactor: Redactor(token: nil))
    }
    if arguments.isHelp {
      print(BotArguments.help)
      exit(0)
    }
    if arguments.isVersion {
      print("tgsess-bot \(ToolInfo.version)")
      exit(0)
    }
    let environment = ProcessInfo.processInfo.environment
    // Redact what looks like a token even before the token is known.
    var redactor = Redactor(token: environment["TGSESS_BOT_TOKEN"])
    let settings: BotSettings
    do {
      settings = try BotSettings.resolve(arguments, environment: environment)
    } catch {
      fail(error, redactor: redactor)
    }
    redactor = Redactor(token: settings.token)
    let logRedactor = redactor
    LoggingSystem.bootstrap { label in
      RedactingLogHandler(label: label, level: settings.logLevel, redactor: logRedactor)
    }
    let logger = Logger(label: "tgsess-bot")
    do {
      try await run(settings: settings, redactor: redactor, logger: logger)
      exit(0)
    } catch {
      fail(error, redactor: redactor, logger: logger)
    }
  }

  static func run(settings: BotSettings, redactor: Redactor, logger: Logger) async throws {
    let deployment = settings.deployment
    // 1. The database must be at the current schema (the runner writes tgsess_state).
    let database: BotDatabase
    do {
      database = try BotDatabase(
        path: deployment.databasePath, mode: .readWrite, busyTimeoutMS: deployment.busyTimeoutMS)
      do { try database.requireCurrentSchema() } catch {
        database.close()
        throw error
      }
    } catch let error as StoreError {
      throw BotStartError(
        exitCode: 1,
        description:
          "\(error.errorDescription ?? "\(error)")\(error.errorDescription?.contains("tgsess migrate") == true ? "" : "; run tgsess migrate")"
      )
    }
    defer { database.close() }

    // 2. One runner per deployment: flock on <root>/.tgsess-bot.lock, with our pid in it; restore
    //    reads it to refuse while the bot runs.
    let lockPath = LiveOwnerGuard.botLockPath(deployment)
    let lock: DeploymentLock
    do {
      lock = try DeploymentLock.acquire(path: lockPath, command: "tgsess-bot")
    } catch StoreError.locked(let path, let holder) {
      throw BotStartError(
        exitCode: 75, description: "another tgsess-bot runs on this deployment: \(path) is held by \(holder)")
    }
    defer { lock.release() }

    logger.notice(
      "tgsess-bot starting",
      metadata: [
        "deployment.root": "\(deployment.root)", "api.base": "\(redactor(settings.apiBaseURL))",
        "token.source": "\(settings.tokenSource)", "pid": "\(getpid())",
      ])

    // 3. One HTTP client for the process, shut down on every way out.
    let client = HTTPClient(eventLoopGroupProvider: .singleton)
    let api = BotAPI(
      client: client, baseURL: settings.apiBaseURL, token: settings.token, redact: redactor, logger: logger)
    let context = BotContext(
      api: api, deployment: deployment, database: database, jobs: JobQueue(), adminIDs: settings.adminIDs,
      pollTimeoutSeconds: settings.pollTimeoutSeconds, monitorInterval: settings.monitorInterval, redact: redactor,
      logger: logger)
    let group = ServiceGroup(
      configuration: ServiceGroupConfiguration(
        services: [
          .init(service: MonitorService(context: context)),
          .init(service: BotService(context: context)),
        ],
        gracefulShutdownSignals: [.sigterm, .sigint],
        cancellationSignals: [],
        logger: logger))
    var failure: (any Error)?
    do {
      try await group.run()
    } catch {
      failure = error
    }
    try? await client.shutdown()
    if let failure { throw failure }
    logger.notice("tgsess-bot stopped")
  }

  /// Prints the error (redacted) and exits with its status.
  static func fail(_ error: any Error, redactor: Redactor, logger: Logger? = nil) -> Never {
    let code: Int32
    let text: String
    switch error {
    case let error as BotStartError:
      code = error.exitCode
      text = error.description
    case let error as TokenRejected:
      code = 1
      text = error.description
    case let error as LocalizedError:
      code = 1
      text = error.errorDescription ?? "\(error)"
    default:
      code = 1
      text = "\(error)"
    }
    let line = redactor("tgsess-bot: \(text)")
    if let logger {
      logger.critical("\(line)")
    } else {
      FileHandle.standardError.write(Data((line + "\n").utf8))
    }
    exit(code)
  }
}

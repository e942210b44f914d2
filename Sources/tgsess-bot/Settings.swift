import Foundation
import Logging
import Store

/// A start-up failure, with the exit status it maps to.
struct BotStartError: Error, CustomStringConvertible {
  /// 1 failed · 64 usage · 75 lock held (EX_TEMPFAIL).
  var exitCode: Int32
  var description: String

  static func usage(_ text: String) -> BotStartError {
    BotStartError(exitCode: 64, description: text + "\nTry: tgsess-bot --help")
  }
}

/// The command line: the CLI's `--root`/`--config`, plus the runner's own flags.
struct BotArguments: Equatable {
  var root: String?
  var config: String?
  var tokenFile: String?
  var apiBase: String?
  var monitorInterval: Int?
  var pollTimeout: Int?
  var logLevel: String?
  var isHelp = false
  var isVersion = false

  static let help = """
    tgsess-bot: the minimal Telegram bot runner of a tgsess deployment.

    Long-polls the Bot API and answers /start, /status, /recover, /logout (and, for admins,
    /backup and /check); restores every session at start-up and checks them every 5 minutes.

    USAGE: tgsess-bot [--root DIR] [--config FILE] [--token-file FILE] [--api-base URL]
                      [--monitor-interval SECONDS] [--poll-timeout SECONDS] [--log-level LEVEL]

    OPTIONS:
      --root DIR                 deployment root (else TGSESS_ROOT, the config's root, the current directory)
      --config FILE              tgsess.toml (else TGSESS_CONFIG, then <root>/tgsess.toml when it exists)
      --token-file FILE          file holding the bot token (else TGSESS_BOT_TOKEN_FILE, TGSESS_BOT_TOKEN,
                                 then [bot] token_file)
      --api-base URL             Bot API server (else [bot] api_base_url, default https://api.telegram.org)
      --monitor-interval SECONDS seconds between health checks (else [bot] monitor_interval_seconds, 300)
      --poll-timeout SECONDS     getUpdates long-poll timeout, 1-50 (else [bot] poll_timeout_seconds, 50)
      --log-level LEVEL          trace, debug, info, notice, warning, error (else TGSESS_LOG_LEVEL, info)
      -h, --help                 show this help
      --version                  show the version

    EXAMPLES:
      $ tgsess-bot --config /etc/tgsess/tgsess.toml --token-file /etc/tgsess/bot-token
      $ TGSESS_BOT_TOKEN_FILE=$CREDENTIALS_DIRECTORY/bot-token tgsess-bot --root /srv/bot
      $ tgsess-bot --root /srv/bot --token-file token --api-base http://127.0.0.1:8081

    EXIT STATUS: 0 stopped by SIGTERM/SIGINT · 1 failed (token rejected, database unusable) ·
      64 usage · 75 another tgsess-bot holds the deployment.
    """

  /// Parses `arguments` (without the program name).
  /// - Throws: `BotStartError.usage`.
  static func parse(_ arguments: [String]) throws -> BotArguments {
    var result = BotArguments()
    var index = 0
    func value(_ flag: String) throws -> String {
      index += 1
      guard index < arguments.count, !arguments[index].hasPrefix("--") else {
        throw BotStartError.usage("\(flag) needs a value")
      }
      return arguments[index]
    }
    func number(_ flag: String) throws -> Int {
      let text = try value(flag)
      guard let number = Int(text) else { throw BotStartError.usage("\(flag) must be a whole number, not '\(text)'") }
      return number
    }
    while index < arguments.count {
      var argument = arguments[index]
      // --flag=value
      if argument.hasPrefix("--"), let equals = argument.firstIndex(of: "=") {
        var expanded = arguments
        expanded.replaceSubrange(
          index...index, with: [String(argument[..<equals]), String(argument[argument.index(after: equals)...])])
        return try parse(expanded)
      }
      argument = arguments[index]
      switch argument {
      case "--root": result.root = try value(argument)
      case "--config": result.config = try value(argument)
      case "--token-file": result.tokenFile = try value(argument)
      case "--api-base", "--api-base-url": result.apiBase = try value(argument)
      case "--monitor-interval": result.monitorInterval = try number(argument)
      case "--poll-timeout": result.pollTimeout = try number(argument)
      case "--log-level": result.logLevel = try value(argument)
      case "-v", "--verbose": result.logLevel = "debug"
      case "-h", "--help": result.isHelp = true
      case "--version": result.isVersion = true
      default:
        throw BotStartError.usage(
          argument.hasPrefix("-") ? "unknown option \(argument)" : "unexpected argument \(argument)")
      }
      index += 1
    }
    return result
  }
}

/// Everything the runner needs, resolved from flags, environment and `[bot]` in the config.
struct BotSettings: Sendable {
  var deployment: Deployment
  var token: String
  /// Where the token came from (a path or a variable name), for the start-up log line.
  var tokenSource: String
  var apiBaseURL: String
  var adminIDs: Set<Int64>
  var monitorInterval: Duration
  var pollTimeoutSeconds: Int
  var logLevel: Logger.Level

  static let defaultAPIBase = "https://api.telegram.org"

  /// Resolves the settings.
  /// - Throws: `BotStartError` (usage for bad values, 1 for an unreadable token or config).
  static func resolve(_ arguments: BotArguments, environment: [String: String]) throws -> BotSettings {
    let deployment: Deployment
    do {
      deployment = try Deployment.resolve(root: arguments.root, config: arguments.config, environment: environment)
    } catch let error as StoreError {
      throw BotStartError(exitCode: 1, description: error.errorDescription ?? "\(error)")
    }
    let bot = deployment.config.bot ?? Config.BotSection()
    let cwd = FileManager.default.currentDirectoryPath

    // The token: a file named by the flag, the environment or the config; or the variable itself.
    let token: String
    let source: String
    if let path = arguments.tokenFile ?? environment["TGSESS_BOT_TOKEN_FILE"].flatMap({ $0.isEmpty ? nil : $0 }) {
      let absolute = Deployment.absolute(path, relativeTo: cwd)
      token = try readToken(file: absolute)
      source = absolute
    } else if let value = environment["TGSESS_BOT_TOKEN"], !value.isEmpty {
      token = try validToken(value, source: "TGSESS_BOT_TOKEN")
      source = "TGSESS_BOT_TOKEN"
    } else if let path = bot.tokenFile {
      let absolute = Deployment.absolute(path, relativeTo: deployment.root)
      token = try readToken(file: absolute)
      source = absolute
    } else {
      throw BotStartError.usage(
        "no bot token: pass --token-file FILE, set TGSESS_BOT_TOKEN_FILE or TGSESS_BOT_TOKEN, or set [bot] token_file")
    }

    var base = arguments.apiBase ?? bot.apiBaseURL ?? defaultAPIBase
    while base.hasSuffix("/") { base.removeLast() }
    guard let url = URL(string: base), ["http", "https"].contains(url.scheme?.lowercased() ?? ""), url.host != nil
    else {
      throw BotStartError.usage("the Bot API base URL must be http(s)://HOST[:PORT], not '\(base)'")
    }

    let interval = arguments.monitorInterval ?? bot.monitorIntervalSeconds ?? 300
    guard interval >= 1 else { throw BotStartError.usage("the monitor interval must be at least 1 second") }
    let pollTimeout = arguments.pollTimeout ?? bot.pollTimeoutSeconds ?? 50
    guard (1...50).contains(pollTimeout) else {
      throw BotStartError.usage("the poll timeout must be 1-50 seconds (the Bot API caps it at 50), not \(pollTimeout)")
    }

    let levelName = arguments.logLevel ?? environment["TGSESS_LOG_LEVEL"] ?? "info"
    guard let level = Logger.Level(rawValue: levelName.lowercased()) else {
      throw BotStartError.usage("unknown log level '\(levelName)'; use trace, debug, info, notice, warning or error")
    }

    return BotSettings(
      deployment: deployment, token: token, tokenSource: source, apiBaseURL: base, adminIDs: Set(bot.adminIDs ?? []),
      monitorInterval: .seconds(interval), pollTimeoutSeconds: pollTimeout, logLevel: level)
  }

  /// Reads a token file (one line, surrounding whitespace ignored).
  static func readToken(file path: String) throws -> String {
    guard let data = FileManager.default.contents(atPath: path) else {
      throw BotStartError(
        exitCode: 1, description: "\(path): cannot read the bot token file; check the path and its permissions")
    }
    return try validToken(String(decoding: data, as: UTF8.self), source: path)
  }

  /// The token, trimmed, if it has a bot token's shape (`<bot id>:<secret>`). The text itself never
  /// appears in the error.
  static func validToken(_ text: String, source: String) throws -> String {
    let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
    guard token.wholeMatch(of: /[0-9]+:[A-Za-z0-9_-]+/) != nil else {
      throw BotStartError(
        exitCode: 1,
        description:
          "\(source) does not hold a bot token (expected <bot id>:<secret>, as BotFather gives it, on one line)")
    }
    return token
  }
}

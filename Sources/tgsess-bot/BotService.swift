import Foundation
import Jobs
import Logging
import ServiceLifecycle
import Store

/// The token was refused: no retry can help, so the runner exits non-zero and systemd's start
/// limit surfaces it.
struct TokenRejected: Error, CustomStringConvertible {
  var description: String
}

/// Start-up (recovery, webhook, command menu), then long polling until a graceful shutdown.
///
/// Delivery is at least once: each update is handled, then the offset past it is written to
/// `tgsess_state` (`bot.update_offset`) before the next one. A crash between the two replays
/// that one update after a restart; every command is safe to replay (/status and /start only
/// read, /recover of a healthy session changes nothing, a replayed logout confirmation finds the
/// user logged out, /backup takes one more backup).
struct BotService: Service {
  let context: BotContext
  let handler: CommandHandler

  init(context: BotContext) {
    self.context = context
    self.handler = CommandHandler(context: context)
  }

  var api: BotAPI { context.api }
  var logger: Logger { context.logger }

  func run() async throws {
    await startupRecovery()
    guard try await bootstrap() else { return }
    try await poll()
  }

  /// The seed's automatic restore on start: every user's session, in-process. It runs before any
  /// network call, so sessions come back even while Telegram is unreachable.
  func startupRecovery() async {
    let context = self.context
    let started = ContinuousClock.now
    let result = await context.jobs.run { () throws -> (RecoverResult, Int, Int) in
      let (users, skipped) = try context.usersToRecover()
      var recoveries: [UserRecovery] = []
      var failed = 0
      for userID in users {
        // One user's failure (the lock held past the wait, an unreadable row) never stops the others.
        do {
          let result = try RecoverJob.run(
            context.deployment, options: RecoverOptions(userID: userID, isBotRunner: true, lockWait: 30),
            logger: context.jobLogger(quiet: true))
          recoveries += result.users
        } catch {
          failed += 1
          context.logger.error(
            "start-up recovery of a user failed",
            metadata: ["user.id": "\(userID)", "error": "\(context.redact(UserWords.describe(error)))"])
        }
      }
      return (RecoverResult(users: recoveries), skipped, failed)
    }
    switch result {
    case .success(let (recovery, skipped, failed)):
      logger.notice(
        "start-up recovery done",
        metadata: [
          "users": "\(recovery.users.count + failed)", "healthy": "\(recovery.healthy)",
          "recovered": "\(recovery.recovered)", "unrecoverable": "\(recovery.unrecoverable)", "failed": "\(failed)",
          "skipped.logged_out": "\(skipped)", "job.duration_ms": "\((ContinuousClock.now - started).milliseconds)",
        ])
    case .failure(let error):
      logger.error(
        "start-up recovery failed; polling anyway",
        metadata: ["error": "\(context.redact(UserWords.describe(error)))"])
    }
  }

  /// deleteWebhook (getUpdates refuses while one is set) and setMyCommands, retried until they
  /// succeed or a shutdown comes.
  /// - Returns: false when a shutdown came first.
  /// - Throws: `TokenRejected`.
  func bootstrap() async throws -> Bool {
    let userCommands: [JSONValue] = [
      ["command": "start", "description": "Menu"],
      ["command": "status", "description": "Your session, its health and backups"],
      ["command": "recover", "description": "Repair your session without logging in again"],
      ["command": "logout", "description": "Back up and remove your session"],
    ]
    let adminCommands: [JSONValue] =
      userCommands + [
        ["command": "backup", "description": "Admin: full backup now"],
        ["command": "check", "description": "Admin: health summary"],
      ]
    var calls: [(String, [String: JSONValue])] = [
      ("deleteWebhook", ["drop_pending_updates": false]),
      ("setMyCommands", ["commands": .array(userCommands), "scope": ["type": "default"]]),
    ]
    for admin in context.adminIDs.sorted() {
      calls.append(
        ("setMyCommands", ["commands": .array(adminCommands), "scope": ["type": "chat", "chat_id": .int(admin)]]))
    }
    for (method, parameters) in calls {
      var backoff = Backoff(base: .seconds(1), cap: .seconds(30))
      while true {
        if Task.isShuttingDownGracefully { return false }
        do {
          _ = try await cancelWhenGracefulShutdown { [api] in try await api.call(method, parameters) }
          break
        } catch is CancellationError {
          return false
        } catch let error as BotAPIError {
          if case .unauthorized = error { throw TokenRejected(description: error.description) }
          if case .badRequest = error, method == "setMyCommands" {
            // A chat the bot never saw (an admin who never wrote to it) rejects a chat scope.
            logger.warning("setMyCommands refused", metadata: ["error": "\(error)"])
            break
          }
          let delay: Duration
          if case .flood(let seconds, _) = error {
            delay = .seconds(seconds) + .milliseconds(500)
          } else {
            delay = backoff.next()
          }
          logger.warning(
            "start-up call failed, retrying",
            metadata: ["api.method": "\(method)", "error": "\(error)", "retry.delay_ms": "\(delay.milliseconds)"])
          guard await pause(delay) else { return false }
        }
      }
    }
    logger.notice(
      "bot runner ready",
      metadata: [
        "admins": "\(context.adminIDs.count)", "poll.timeout_s": "\(context.pollTimeoutSeconds)",
        "monitor.interval_s": "\(context.monitorInterval.components.seconds)",
      ])
    return true
  }

  /// Sleeps unless a shutdown comes first.
  /// - Returns: false on shutdown or cancellation.
  func pause(_ delay: Duration) async -> Bool {
    do {
      try await cancelWhenGracefulShutdown { try await Task.sleep(for: delay) }
      return !Task.isShuttingDownGracefully
    } catch {
      return false
    }
  }

  /// The long-polling loop. Errors never end it, except a rejected token.
  /// - Throws: `TokenRejected`.
  func poll() async throws {
    let database = context.database
    var offset: Int64? = try? await blocking { try database.botUpdateOffset() }
    var backoff = Backoff(base: .seconds(1), cap: .seconds(30))
    var conflicts = 0
    let timeout = context.pollTimeoutSeconds
    while !Task.isShuttingDownGracefully {
      var parameters: [String: JSONValue] = [
        "timeout": .int(Int64(timeout)), "allowed_updates": ["message", "callback_query"], "limit": 100,
      ]
      if let offset { parameters["offset"] = .int(offset) }
      let result: JSONValue
      do {
        // The HTTP timeout outlives the long poll, as python-telegram-bot and aiogram do.
        result = try await cancelWhenGracefulShutdown { [api, parameters] in
          try await api.call("getUpdates", parameters, timeout: .seconds(timeout + 15))
        }
        backoff.reset()
        conflicts = 0
      } catch is CancellationError {
        break
      } catch let error as BotAPIError {
        let delay: Duration
        switch error {
        case .unauthorized:
          throw TokenRejected(description: error.description)
        case .flood(let seconds, _):
          delay = .seconds(seconds) + .milliseconds(500)
          logger.warning("getUpdates: flood control", metadata: ["retry.delay_ms": "\(delay.milliseconds)"])
        case .conflict(let text):
          conflicts += 1
          // The server answers 409 at most every 3 s; waiting longer each time never spins.
          delay = .seconds(min(60, 5 * conflicts))
          logger.error(
            "getUpdates: 409 conflict: another tgsess-bot (or another program with this token) is polling, or a webhook is set",
            metadata: ["error": "\(text)", "conflicts": "\(conflicts)", "retry.delay_ms": "\(delay.milliseconds)"])
          if text.lowercased().contains("webhook") {
            _ = try? await api.call("deleteWebhook", ["drop_pending_updates": false])
          }
        default:
          delay = backoff.next()
          logger.warning(
            "getUpdates failed; reconnecting",
            metadata: ["error": "\(error)", "retry.delay_ms": "\(delay.milliseconds)"])
        }
        guard await pause(delay) else { break }
        continue
      }
      guard let items = result.array else {
        let delay = backoff.next()
        logger.warning("getUpdates: the result is not a list", metadata: ["retry.delay_ms": "\(delay.milliseconds)"])
        guard await pause(delay) else { break }
        continue
      }
      for item in items {
        // A shutdown between updates leaves the rest unconfirmed: they come again after a restart.
        if Task.isShuttingDownGracefully { break }
        let updateID = item["update_id"]?.int
        do {
          let update = try BotUpdate.parse(item)
          await handler.handle(update)
        } catch {
          logger.warning("malformed update skipped", metadata: ["error": "\(error)"])
        }
        guard let updateID else { continue }
        offset = updateID + 1
        let next = updateID + 1
        do {
          try await blocking { try database.saveBotUpdateOffset(next) }
        } catch {
          logger.error(
            "could not record the update offset; a restart may replay this update",
            metadata: ["update.id": "\(updateID)", "error": "\(context.redact(UserWords.describe(error)))"])
        }
      }
    }
    logger.notice("polling stopped", metadata: ["offset": "\(offset.map(String.init) ?? "-")"])
  }
}

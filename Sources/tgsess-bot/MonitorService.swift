import Foundation
import Jobs
import Logging
import ServiceLifecycle
import Store

/// The seed's background monitor: every interval (5 minutes by default) it runs `CheckJob`,
/// recovers the users whose session file is missing or broken, and tells the admins once per user
/// and state.
///
/// Notification memory lives in `tgsess_state` (`bot.notified.<user id>` = `critical:<checks>`),
/// so a restart does not repeat a message: an admin hears about a user again only when the set of
/// critical checks changes, or after a check found the user no longer critical (which forgets the
/// entry).
struct MonitorService: Service {
  let context: BotContext

  var logger: Logger { context.logger }

  func run() async throws {
    while !Task.isShuttingDownGracefully {
      do {
        try await cancelWhenGracefulShutdown { [interval = context.monitorInterval] in
          try await Task.sleep(for: interval)
        }
      } catch {
        break
      }
      if Task.isShuttingDownGracefully { break }
      await runOnce()
    }
  }

  /// What one round found and did, per user.
  struct UserEvent: Sendable {
    var userID: Int64
    var findings: [CheckFinding]
    var recovery: UserRecovery?
    var recoveryError: String?
  }

  /// One round: check, repair, notify.
  func runOnce() async {
    let context = self.context
    let round = await context.jobs.run { () -> (CheckResult, [UserEvent]) in
      let check = CheckJob.run(
        context.deployment, options: CheckOptions(config: context.deployment.config),
        logger: context.jobLogger(quiet: true))
      var events: [Int64: UserEvent] = [:]
      for finding in check.findings where finding.state == .critical {
        guard let userID = finding.userID else { continue }
        events[userID, default: UserEvent(userID: userID, findings: [])].findings.append(finding)
      }
      for userID in events.keys.sorted() {
        let repairable = events[userID]!.findings.contains {
          $0.id == .userSession || $0.id == .userOrphanRow
        }
        guard repairable else { continue }
        do {
          let result = try RecoverJob.run(
            context.deployment, options: RecoverOptions(userID: userID, isBotRunner: true, lockWait: 10),
            logger: context.jobLogger(quiet: true))
          events[userID]!.recovery = result.users.first
        } catch {
          events[userID]!.recoveryError = context.redact(UserWords.describe(error))
        }
      }
      return (check, events.values.sorted { $0.userID < $1.userID })
    }
    guard case .success(let (check, events)) = round else { return }

    var notified = 0
    do {
      let database = context.database
      let remembered = try await blocking { try database.botNotifiedStates() }
      let critical = Set(events.map(\.userID))
      for event in events {
        let state = "critical:" + Set(event.findings.map(\.check)).sorted().joined(separator: ",")
        guard remembered[event.userID] != state else { continue }
        await notifyAdmins(Self.adminText(event))
        notified += 1
        try await blocking { try database.setBotNotifiedState(userID: event.userID, state: state) }
      }
      for userID in remembered.keys where !critical.contains(userID) {
        try await blocking { try database.setBotNotifiedState(userID: userID, state: nil) }
      }
    } catch {
      logger.error(
        "monitor: could not read or record notifications",
        metadata: ["error": "\(context.redact(UserWords.describe(error)))"])
    }
    logger.notice(
      "monitor round done",
      metadata: [
        "state": "\(check.state.rawValue)", "users": "\(check.users)", "critical": "\(events.count)",
        "recovered": "\(events.filter { $0.recovery?.outcome == .recovered }.count)", "notified": "\(notified)",
      ])
  }

  static func adminText(_ event: UserEvent) -> String {
    var lines = ["⚠️ Session of user \(event.userID) is critical:"]
    lines += event.findings.map { "• \($0.check): \($0.message)" }
    if let recovery = event.recovery {
      switch recovery.outcome {
      case .recovered:
        lines.append(
          "Repaired automatically: \(recovery.strategy?.label ?? "recovered")"
            + (recovery.source.map { " from \($0)" } ?? "") + (recovery.backupID.map { "; backup \($0)" } ?? "") + ".")
      case .healthy:
        lines.append("A recovery found it healthy again.")
      case .unrecoverable:
        lines.append("Automatic repair failed: \(recovery.detail)")
      }
    } else if let error = event.recoveryError {
      lines.append("Automatic repair could not run: \(error)")
    } else {
      lines.append("Not repaired automatically; see tgsess check.")
    }
    return lines.joined(separator: "\n")
  }

  func notifyAdmins(_ text: String) async {
    if context.adminIDs.isEmpty {
      logger.warning("monitor: no admin to notify", metadata: ["text": "\(context.redact(text))"])
    }
    for admin in context.adminIDs.sorted() {
      do {
        try await context.api.sendMessage(chatID: admin, text: context.redact(text))
      } catch {
        logger.warning("monitor: could not notify an admin", metadata: ["admin.id": "\(admin)", "error": "\(error)"])
      }
    }
  }
}

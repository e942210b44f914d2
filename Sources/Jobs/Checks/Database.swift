import Foundation
import Store

/// The bot database: it opens, is not held locked past the busy timeout, passes quick_check
/// (integrity_check with `--deep`), has the schema this tgsess knows, and is not so large in
/// rollback-journal mode that a consistent copy would stall the bot.
public enum DatabaseCheck {
  public static func findings(_ context: CheckContext) -> [CheckFinding] {
    let path = context.deployment.databasePath
    let facts = context.database
    var findings: [CheckFinding] = []
    if let problems = facts.integrityProblems, !problems.isEmpty {
      let pragma = context.options.isDeep ? "integrity_check" : "quick_check"
      let shown = problems.prefix(3).map { $0.replacingOccurrences(of: "\n", with: " ") }.joined(separator: "; ")
      findings.append(
        CheckFinding(
          .databaseIntegrity, .critical, "\(path) fails \(pragma): \(shown)",
          remedy: "restore it: tgsess restore latest"))
    }
    if let schema = facts.schema {
      if !schema.unknown.isEmpty {
        findings.append(
          CheckFinding(
            .databaseSchema, .critical,
            "\(path) was made by a newer tgsess (unknown migrations: \(schema.unknown.joined(separator: ", ")))",
            remedy: "upgrade tgsess"))
      } else if !schema.pending.isEmpty {
        findings.append(
          CheckFinding(
            .databaseSchema, .warning,
            "\(path) schema is at version \(schema.version), not \(BotSchema.currentVersion)",
            remedy: "run tgsess migrate"))
      }
    }
    if let stall = facts.stall, stall.journalMode == .rollback,
      stall.oneStepLockMS > Double(context.options.botBusyTimeoutMS)
    {
      findings.append(
        CheckFinding(
          .databaseStall, .warning,
          "\(path) uses a rollback journal and holds \(stall.byteCount >> 20) MiB: a consistent copy in one step would hold the bot's writes about \(Int(stall.oneStepLockMS.rounded())) ms (copied at \(Int(stall.bytesPerSecond) >> 20) MiB/s here), past its \(context.options.botBusyTimeoutMS) ms busy timeout, so backups copy it in short steps and fail while the bot writes throughout",
          remedy: "switch it to WAL: tgsess migrate --wal (README: A large bot database)"))
    }
    if let failure = facts.failure {
      if BotDatabase.isBusy(failure) {
        findings.append(
          CheckFinding(
            .databaseLock, .warning,
            "\(path) stayed locked by another process longer than busy_timeout_ms (\(context.deployment.busyTimeoutMS) ms), so it was not checked",
            remedy: "if this persists, find the holder with: fuser -v \(path)"))
      } else {
        findings.append(CheckFinding(.databaseOpen, .critical, error: failure))
      }
    }
    return findings
  }
}

import Foundation
import Store

/// The bot database: it opens, is not held locked past the busy timeout, passes quick_check
/// (integrity_check with `--deep`) and has the schema this tgsess knows.
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

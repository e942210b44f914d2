import Foundation
import Store

/// The optional live probe (`--probe CMD`): each live user with a session file, unless already
/// critical, is asked of Telegram itself. A confirmed fatal answer is critical; the write step then
/// marks the user revoked (`CheckRecord`). A temporary failure after the retries is a warning.
public enum ProbeCheck {
  /// Probes one session file and returns the verdict (`Probe.run` with the options' command,
  /// timeout and backoff; tests pass their own).
  public typealias Runner = @Sendable (_ sessionPath: String, _ options: CheckOptions) -> ProbeVerdict

  /// The probe's findings, skipping `skipping` (users another check already found critical).
  public static func findings(
    _ context: CheckContext, skipping: Set<Int64>, runner: Runner = ProbeCheck.live
  ) -> [CheckFinding] {
    guard context.options.probeCommand != nil else { return [] }
    let files = context.fileUsers
    var findings: [CheckFinding] = []
    for userID in context.liveUsers where files.contains(userID) && !skipping.contains(userID) {
      switch runner(context.deployment.sessionPath(userID: userID), context.options) {
      case .ok:
        break
      case .fatal(let error):
        let consequence =
          context.canRecord
          ? "the session is dead and was marked revoked; it and its backups are kept"
          : "the session is dead; not marked revoked, as this run records nothing; it and its backups are kept"
        findings.append(
          CheckFinding(
            .userProbe, .critical, "\(error.summary) (confirmed); \(consequence)", remedy: "the user must log in again",
            user: userID))
      case .temporary(let error, let attempts):
        findings.append(CheckFinding(.userProbe, .warning, "\(error.summary) after \(attempts) attempts", user: userID))
      }
    }
    return findings
  }

  /// Runs the configured probe command on `sessionPath`.
  public static let live: Runner = { sessionPath, options in
    guard let command = options.probeCommand else { return .ok }
    let policy = RetryPolicy(base: options.probeRetryBase, cap: max(options.probeRetryBase, .seconds(30)))
    return Probe.run(command: command, sessionPath: sessionPath, timeout: options.probeTimeout, policy: policy)
  }

  /// The users a critical `user.probe` finding is about: the fatal answers the write step records
  /// as `revoked`.
  public static func confirmedDead(_ findings: [CheckFinding]) -> Set<Int64> {
    Set(findings.filter { $0.id == .userProbe && $0.state == .critical }.compactMap(\.userID))
  }
}

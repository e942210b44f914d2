import Foundation
import Store

/// One remote as check saw it, for the metrics (`tgsess_check_remote_*`).
public struct RemoteSummary: Codable, Sendable, Equatable {
  public var name: String
  /// Local signed archives (the only ones push copies) the remote lacked at its last listing (all
  /// of them when never pushed); nil when the local archives could not be listed.
  public var missingArchives: Int?
  /// When the last push (successful or not) ended; nil when never pushed.
  public var lastPushAt: Date?
  /// When the last push that completed and verified ended.
  public var lastVerifiedPushAt: Date?
  /// Whether the last push completed and verified.
  public var isLastPushOK: Bool
}

/// Offsite copies: every local signed archive is on every configured remote, as of the last push's
/// listing of it.
public enum OffsiteCheck {
  /// Each configured remote's state for monitoring: a push writes its state as it ends, with
  /// the success time taken after the end time when it succeeded.
  public static func summaries(_ context: CheckContext) -> [RemoteSummary] {
    let local = (try? context.archives.get()).map { _ in context.signedArchives }
    return context.remotes.map { remote, state in
      let there = Set(state?.archiveNames ?? [])
      return RemoteSummary(
        name: remote.name, missingArchives: local.map { $0.filter { !there.contains($0.fileName) }.count },
        lastPushAt: state?.checkedAt, lastVerifiedPushAt: state?.lastSuccessAt,
        isLastPushOK: state.map { state in state.lastSuccessAt.map { $0 >= state.checkedAt } ?? false } ?? false)
    }
  }

  public static func findings(_ context: CheckContext) -> [CheckFinding] {
    var findings: [CheckFinding] = []
    for (remote, state) in context.remotes {
      guard let state else {
        findings.append(
          CheckFinding(
            .offsite, .warning, "remote \(remote.name) (\(remote.root)) has never been pushed to",
            remedy: "run: tgsess push"))
        continue
      }
      // Without the local list there is nothing to compare; the backups check has said why.
      // Only signed archives are pushed.
      guard case .success = context.archives else { continue }
      let there = Set(state.archiveNames ?? [])
      let missing = context.signedArchives.filter { !there.contains($0.fileName) }.count
      guard missing > 0 else { continue }
      let since =
        state.lastSuccessAt.map {
          "last verified push \(CheckJob.duration(context.options.now.timeIntervalSince($0))) ago"
        }
        ?? "never verified"
      findings.append(
        CheckFinding(
          .offsite, .warning, "remote \(remote.name) is missing \(missing) archive(s) (\(since))",
          remedy: "run: tgsess push"))
    }
    return findings
  }
}

import Foundation
import Store

/// Offsite copies: every local signed archive is on every configured remote, as of the last push's
/// listing of it.
public enum OffsiteCheck {
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

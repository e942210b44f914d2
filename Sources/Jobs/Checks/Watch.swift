import Foundation
import Store

/// `tgsess watch`: when the config says it runs here (`[watch] enabled = true`), it has reported
/// within 4 heartbeats (its textfile, or without one its status file under backups/watch/).
public enum WatchCheck {
  public static func findings(_ context: CheckContext) -> [CheckFinding] {
    let watch = context.watch
    guard watch.isStale() else { return [] }
    let what = watch.textfilePath ?? context.deployment.backupsDirectory + "/watch/status.json"
    let reason: String
    if let age = watch.textfileAge ?? watch.heartbeatAge {
      reason =
        "tgsess watch is enabled but has not reported for \(CheckJob.duration(age)) (\(what); it reports every \(Int(watch.heartbeat))s), so new logins wait for the hourly backup"
    } else {
      reason =
        "tgsess watch is enabled but has never reported (\(what) is missing), so new logins wait for the hourly backup"
    }
    return [CheckFinding(.watch, .warning, reason, remedy: "run: systemctl status tgsess-watch.service")]
  }
}

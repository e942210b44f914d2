import Foundation

/// Tells whether the bot is running on a deployment. A Telegram session used from two places is
/// killed by Telegram (AUTH_KEY_DUPLICATED), and a running bot overwrites files under a restore,
/// so restores into a live deployment refuse while any of these say the bot runs.
public enum LiveOwnerGuard {
  /// The bot runner's lock file: it holds `flock` on it while it runs and writes its pid in it.
  public static func botLockPath(_ deployment: Deployment) -> String { deployment.root + "/.tgsess-bot.lock" }

  /// Every sign that the bot owns the deployment now, each naming how it is known.
  /// - Parameters:
  ///   - files: the live files about to be replaced (their `-journal`/`-wal` are checked).
  ///   - systemdUnit: the bot's unit, checked with `systemctl is-active` when configured.
  public static func evidence(_ deployment: Deployment, files: [String], systemdUnit: String?) -> [String] {
    var reasons: [String] = []
    let lockPath = botLockPath(deployment)
    if let holder = DeploymentLock.holder(path: lockPath) {
      reasons.append("the bot runner holds \(lockPath) (\(holder))")
    }
    if let unit = systemdUnit, !unit.isEmpty, isUnitActive(unit) {
      reasons.append("systemd unit \(unit) is active")
    }
    for file in files {
      if SessionFileInspector.isHotJournal(file + "-journal") {
        reasons.append("a hot journal \(file)-journal (a writer has the file open or crashed)")
      }
      if let size = try? FileSystem.size(of: file + "-wal"), size > 0 {
        reasons.append("a non-empty write-ahead log \(file)-wal")
      }
    }
    return reasons
  }

  private static func isUnitActive(_ unit: String) -> Bool {
    guard
      FileManager.default.isExecutableFile(atPath: "/usr/bin/systemctl")
        || FileManager.default.isExecutableFile(atPath: "/bin/systemctl")
    else { return false }
    let process = Process()
    process.executableURL = URL(
      fileURLWithPath: FileManager.default.isExecutableFile(atPath: "/usr/bin/systemctl")
        ? "/usr/bin/systemctl" : "/bin/systemctl")
    process.arguments = ["is-active", "--quiet", unit]
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    do { try process.run() } catch { return false }
    process.waitUntilExit()
    return process.terminationStatus == 0
  }
}

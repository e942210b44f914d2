import Foundation
import Logging
import Store

/// The heartbeat a host writes beside its archives on every remote (`HostState`), with each push
/// and each check that records. Its local copy, `backups/fleet-heartbeat.json`, carries the last
/// check's verdict to the next push and lets an unchanged session file (same time, same size)
/// keep its entry without being opened again.
public enum FleetHeartbeat {
  /// The local copy's path.
  static func localPath(_ deployment: Deployment) -> String { deployment.backupsDirectory + "/fleet-heartbeat.json" }

  /// The name this deployment has on remotes (the prefix its archives sit under).
  public static func deploymentName(_ deployment: Deployment) -> String {
    deployment.config.deploymentName ?? ProcessInfo.processInfo.hostName
  }

  /// The last heartbeat this host wrote.
  static func previous(_ deployment: Deployment) -> HostState? {
    guard let data = try? FileSystem.read(localPath(deployment)) else { return nil }
    return try? HostState.decode(data, name: localPath(deployment), directoryName: deploymentName(deployment))
  }

  /// The host's state now: every session file's format, dc, key fingerprint and last write (read
  /// read-only through SQLite unless unchanged since the last heartbeat, or taken from `inspected`),
  /// the newest full snapshot, and the check verdict given (else the last one).
  /// - Parameter inspected: what a check already read, by user.
  static func make(
    _ deployment: Deployment, check: (state: HealthState, at: Date)?, inspected: [Int64: SessionFileInfo] = [:],
    now: Date
  ) -> HostState {
    let previous = previous(deployment)
    let known = Dictionary((previous?.users ?? []).map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
    var users: [HostState.User] = []
    for userID in (try? deployment.sessionFileUserIDs()) ?? [] {
      let path = deployment.sessionPath(userID: userID)
      guard let modification = try? FileSystem.modification(of: path) else { continue }
      let written = (date: HostState.storedTime(modification.date), byteCount: modification.byteCount)
      if let old = known[userID], let oldWrite = old.sessionWrittenAt,
        HostState.milliseconds(oldWrite) == HostState.milliseconds(modification.date),
        old.sessionByteCount == written.byteCount,
        old.authKeyFingerprint != nil, inspected[userID] == nil
      {
        users.append(old)
        continue
      }
      let info = inspected[userID] ?? (try? SessionFileInspector.inspect(path: path, verifiesPages: false))
      users.append(
        HostState.User(
          id: userID, format: info?.format.shortName, dc: info?.identity.dcID,
          authKeyFingerprint: info?.identity.authKey.fingerprint, sessionWrittenAt: written.date,
          sessionByteCount: written.byteCount))
    }
    let repository = ArchiveRepository(backupsDirectory: deployment.backupsDirectory)
    return HostState(
      host: ProcessInfo.processInfo.hostName, deploymentName: deploymentName(deployment),
      toolVersion: ToolInfo.version, writtenAt: HostState.storedTime(now),
      lastFullBackupAt: (try? repository.list(kind: .full).first)?.createdAt,
      checkState: check?.state ?? previous?.checkState, checkedAt: check?.at ?? previous?.checkedAt, users: users)
  }

  /// Writes the heartbeat to each of `remotes` (atomically) and keeps its local copy.
  /// - Returns: why it could not be written, by remote name (`""` for the local copy).
  @discardableResult
  public static func publish(
    _ deployment: Deployment, remotes: [RcloneRemote], check: (state: HealthState, at: Date)? = nil,
    inspected: [Int64: SessionFileInfo] = [:], now: Date = Date(), logger: Logger
  ) -> [String: String] {
    guard !remotes.isEmpty else { return [:] }
    let state = make(deployment, check: check, inspected: inspected, now: now)
    let data: Data
    do { data = try state.encoded() } catch { return ["": "the host state could not be encoded: \(error)"] }
    var failures: [String: String] = [:]
    do {
      try FileSystem.makeDirectory(deployment.backupsDirectory)
      try FileSystem.writeAtomically(data, to: localPath(deployment))
    } catch {
      failures[""] = "the host state could not be kept in \(localPath(deployment)): \(describe(error))"
    }
    for remote in remotes {
      do {
        try remote.publishHostState(data, scratchDirectory: deployment.backupsDirectory)
      } catch {
        failures[remote.name] = "remote \(remote.name): the heartbeat was not written: \(describe(error))"
      }
    }
    if failures.isEmpty {
      logger.info("heartbeat written", metadata: ["remotes": "\(remotes.count)", "users": "\(state.users.count)"])
    } else {
      logger.warning(
        "heartbeat not written", metadata: ["error": "\(failures.values.sorted().joined(separator: "; "))"])
    }
    return failures
  }

  static func describe(_ error: any Error) -> String {
    (error as? StoreError)?.errorDescription ?? (error as? JobError)?.errorDescription ?? "\(error)"
  }
}

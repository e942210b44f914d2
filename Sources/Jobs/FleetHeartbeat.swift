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
    _ deployment: Deployment, check: (state: HealthState, at: Date)?, inspected: [Int64: SessionFileFacts] = [:],
    now: Date
  ) -> HostState {
    let previous = previous(deployment)
    let known = Dictionary((previous?.users ?? []).map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
    var users: [HostState.User] = []
    for userID in (try? deployment.sessionFileUserIDs()) ?? [] {
      let path = deployment.sessionPath(userID: userID)
      guard let modification = try? FileSystem.modification(of: path) else { continue }
      let written = (date: HostState.storedTime(modification.date), byteCount: modification.byteCount)
      var user: HostState.User
      if let old = known[userID], let oldWrite = old.sessionWrittenAt,
        HostState.milliseconds(oldWrite) == HostState.milliseconds(modification.date),
        old.sessionByteCount == written.byteCount,
        old.authKeyFingerprint != nil, inspected[userID] == nil
      {
        user = old
      } else {
        let facts =
          inspected[userID]
          ?? (try? SessionFileInspector.inspect(path: path, verifiesPages: false)).map(SessionFileFacts.init)
        user = HostState.User(
          id: userID, format: facts?.format.shortName, dc: facts?.dcID,
          authKeyFingerprint: facts?.authKeyFingerprint, sessionWrittenAt: written.date,
          sessionByteCount: written.byteCount)
      }
      // The JSON sidecar changes on its own (a farm tool rewrites it): looked at every time. One
      // that cannot be stat'ed (other than absent) is left unknown rather than called absent.
      switch Result(catching: { try FileSystem.modificationIfExists(of: deployment.sidecarPath(userID: userID)) }) {
      case .success(let found?): (user.hasSidecar, user.sidecarWrittenAt) = (true, HostState.storedTime(found.date))
      case .success(nil): (user.hasSidecar, user.sidecarWrittenAt) = (false, nil)
      case .failure: (user.hasSidecar, user.sidecarWrittenAt) = (nil, nil)
      }
      users.append(user)
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
    inspected: [Int64: SessionFileFacts] = [:], now: Date = Date(), logger: Logger
  ) -> [String: String] {
    guard !remotes.isEmpty else { return [:] }
    return write(
      make(deployment, check: check, inspected: inspected, now: now), deployment, remotes: remotes, logger: logger)
  }

  /// Writes `state` to each of `remotes` (atomically) and keeps it as the local copy.
  /// - Returns: why it could not be written, by remote name (`""` for the local copy).
  static func write(_ state: HostState, _ deployment: Deployment, remotes: [RcloneRemote], logger: Logger) -> [String:
    String]
  {
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

/// When `tgsess watch` writes a remote's heartbeat after a push there: at once when the
/// heartbeat would name an identity (a user and its key's fingerprint) that the last one written
/// to that remote did not, or no longer name one it did; otherwise at most once per
/// `minimumInterval`, so a burst of pushes that change no identity costs one write, not one each.
/// A pure value: the pusher asks `isDue` and tells `record` what it wrote.
public struct HeartbeatThrottle: Sendable, Equatable {
  /// What was last written to one remote.
  public struct Written: Sendable, Equatable {
    /// Monotonic seconds (`ProcessInfo.systemUptime`), not wall time: a clock step changes nothing.
    public var at: TimeInterval
    /// User id → the key's fingerprint (`""` when the file could not be read).
    public var identities: [Int64: String]
  }

  /// The least time between two heartbeats to one remote that change no identity.
  public var minimumInterval: TimeInterval
  /// By remote name.
  public private(set) var written: [String: Written] = [:]

  public init(minimumInterval: TimeInterval) {
    self.minimumInterval = minimumInterval
  }

  /// The identities `state` names, as the throttle compares them.
  public static func identities(of state: HostState) -> [Int64: String] {
    Dictionary(state.users.map { ($0.id, $0.authKeyFingerprint ?? "") }, uniquingKeysWith: { first, _ in first })
  }

  /// Whether a heartbeat naming `identities` is to be written to `remote` at `now`.
  public func isDue(remote: String, identities: [Int64: String], now: TimeInterval) -> Bool {
    guard let last = written[remote] else { return true }
    return last.identities != identities || now - last.at >= minimumInterval
  }

  /// Notes a heartbeat written to `remote` (only a successful write: a failed one stays due).
  public mutating func record(remote: String, identities: [Int64: String], now: TimeInterval) {
    written[remote] = Written(at: now, identities: identities)
  }
}

import Foundation
import Logging
import Store

/// Copies watch's new archives to the remotes on a thread of its own, so a slow or unreachable
/// remote never delays the next local archive. Each archive goes with its signature, and only
/// after its signature and its file's hash are checked again (as `tgsess push` does): one that
/// fails is never copied, and is named once. Each push is verified by size and hash; a failed
/// one is retried with growing waits (the archive stays safe locally meanwhile), and pushes
/// waiting for the same remote go in one rclone run. After a push verifies, the deployment's
/// fleet heartbeat is written to that remote (`HeartbeatThrottle` says when), so `tgsess fleet`
/// and restore's cross-host guard see a login watch archived without waiting for the next
/// `tgsess push`; a heartbeat that fails fails the push, which is retried as one.
final class WatchPusher: @unchecked Sendable {
  /// One push attempt's outcome, for logs and metrics.
  struct Outcome: Sendable {
    var remote: String
    /// The archives (their files) the attempt covered.
    var pushes: [WatchPendingPush]
    var error: String?
    var attempt: Int
    var retryIn: TimeInterval?
    var finishedAt: Date
    var isOK: Bool { error == nil }
  }

  /// What the heartbeat after a push needs.
  struct Heartbeat {
    var deployment: Deployment
    var throttle: HeartbeatThrottle
    var logger: Logger
  }

  private struct Item {
    var push: WatchPendingPush
    var attempts = 0
    var notBefore: TimeInterval = 0
  }

  private let condition = NSCondition()
  private var items: [Item] = []
  private var inFlight: [Item] = []
  private var outcomes: [Outcome] = []
  private var isStopping = false
  private var thread: Thread?
  private let remotes: [String: RcloneRemote]
  private let backupsDirectory: String
  private let wake: WakePipe
  private let retryBase: TimeInterval
  private let retryCap: TimeInterval
  /// Checks each archive before its first copy.
  private let authentication: Result<SigningAuthenticator, StoreError>
  /// Archives (relative paths) whose file matched their signature in this run; touched only by
  /// the thread that pushes.
  private var authenticated: Set<String> = []
  /// The fleet heartbeat written after each verified push (nil: none); touched only by the
  /// thread that pushes.
  private var heartbeat: Heartbeat?

  init(
    remotes: [RcloneRemote], backupsDirectory: String, wake: WakePipe, retryBase: TimeInterval, retryCap: TimeInterval,
    authentication: Result<SigningAuthenticator, StoreError>, heartbeat: Heartbeat? = nil
  ) {
    self.authentication = authentication
    self.heartbeat = heartbeat
    self.remotes = Dictionary(remotes.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
    self.backupsDirectory = backupsDirectory
    self.wake = wake
    self.retryBase = retryBase
    self.retryCap = retryCap
  }

  /// The remotes pushes go to, by name.
  var remoteNames: [String] { remotes.keys.sorted() }

  /// Queues pushes (due at once).
  func enqueue(_ pushes: [WatchPendingPush]) {
    condition.withLock {
      items += pushes.map { Item(push: $0) }
      condition.signal()
    }
  }

  /// Everything not yet verified on its remote, the attempt in progress included.
  var pending: [WatchPendingPush] { condition.withLock { (inFlight + items).map(\.push) } }

  /// How many pushes are not yet verified.
  var pendingCount: Int { condition.withLock { inFlight.count + items.count } }

  /// Outcomes since the last call.
  func takeOutcomes() -> [Outcome] {
    condition.withLock {
      defer { outcomes = [] }
      return outcomes
    }
  }

  /// Starts the worker thread.
  func start() {
    let thread = Thread { [self] in loop() }
    thread.name = "tgsess-watch-push"
    self.thread = thread
    thread.start()
  }

  /// Stops the worker after the attempt in progress (without waiting for it).
  func stop() {
    condition.withLock {
      isStopping = true
      condition.broadcast()
    }
  }

  /// Runs the queue on the calling thread until every push succeeded or failed `attempts` times
  /// (a `--once` run), sleeping through the backoff in between. A push that failed that often
  /// stays queued: `pending` names it (the run is partial) and the state file keeps it for the
  /// next run.
  func drain(attempts: Int) {
    while true {
      let next: TimeInterval? = condition.withLock {
        items.filter { $0.attempts < attempts }.map(\.notBefore).min()
      }
      guard let next else { return }
      let wait = next - Self.now()
      if wait > 0 { Thread.sleep(forTimeInterval: wait) }
      runDueBatch(attemptLimit: attempts)
    }
  }

  static func now() -> TimeInterval { ProcessInfo.processInfo.systemUptime }

  private func loop() {
    while true {
      let shouldRun: Bool = condition.withLock {
        while !isStopping {
          guard let next = items.map(\.notBefore).min() else {
            condition.wait()
            continue
          }
          let wait = next - Self.now()
          if wait <= 0 { return true }
          _ = condition.wait(until: Date().addingTimeInterval(wait))
        }
        return false
      }
      guard shouldRun else { return }
      runDueBatch()
      wake.wake()
    }
  }

  /// Takes the due pushes of one remote (those tried fewer than `attemptLimit` times), runs them
  /// as one push and one check, and requeues them with backoff on failure.
  private func runDueBatch(attemptLimit: Int = .max) {
    let now = Self.now()
    let batch: [Item] = condition.withLock {
      let isDue = { (item: Item) in item.notBefore <= now && item.attempts < attemptLimit }
      guard let first = items.filter(isDue).min(by: { $0.notBefore < $1.notBefore }) else {
        return []
      }
      let taken = items.filter { $0.push.remote == first.push.remote && isDue($0) }
      items.removeAll { $0.push.remote == first.push.remote && isDue($0) }
      inFlight = taken
      return taken
    }
    guard let remoteName = batch.first?.push.remote else { return }
    // Archives that fail authentication are dropped for good (retrying cannot make them the
    // deployment's): one outcome names them.
    var refusals: [String] = []
    let accepted = batch.filter { item in
      guard let refusal = refusal(item.push) else { return true }
      refusals.append(refusal)
      return false
    }
    if !refusals.isEmpty {
      condition.withLock {
        inFlight = accepted
        outcomes.append(
          Outcome(
            remote: remoteName, pushes: [],
            error:
              "remote \(remoteName): refused to push \(refusals.joined(separator: "; ")); investigate, then remove it by hand",
            attempt: 1, retryIn: nil, finishedAt: Date()))
      }
    }
    guard !accepted.isEmpty else { return }
    let attempt = (accepted.map(\.attempts).max() ?? 0) + 1
    let error = push(remoteName, accepted.map(\.push))
    condition.withLock {
      inFlight = []
      var retryIn: TimeInterval?
      if error != nil, remotes[remoteName] != nil {
        let ceiling = min(retryCap, retryBase * pow(2, Double(attempt - 1)))
        let delay = Double.random(in: (ceiling / 2)...max(ceiling / 2, ceiling))
        retryIn = delay
        items += accepted.map { Item(push: $0.push, attempts: $0.attempts + 1, notBefore: Self.now() + delay) }
      }
      outcomes.append(
        Outcome(
          remote: remoteName, pushes: accepted.map(\.push), error: error, attempt: attempt, retryIn: retryIn,
          finishedAt: Date()))
    }
  }

  /// Why the archive of `push` must not be copied: its signature does not verify, it sits
  /// elsewhere than it names, or its file is not the one signed; nil when it may be (or is gone:
  /// an archive pruned before it was copied needs no copy).
  private func refusal(_ push: WatchPendingPush) -> String? {
    for file in push.files where ArchiveName.parse(fileName: (file as NSString).lastPathComponent) != nil {
      let path = backupsDirectory + "/" + file
      guard !authenticated.contains(file), FileSystem.exists(path) else { continue }
      do {
        _ = try ArchiveSigning.verifyFile(archivePath: path, ring: try authentication.get().ring)
        authenticated.insert(file)
      } catch {
        let storeError = StoreError.wrapping(error, path: path)
        return storeError.errorDescription ?? "\(storeError)"
      }
    }
    return nil
  }

  /// The files to copy for `pushes`: each archive's, with its signature (a push queued by an
  /// earlier version names only the archive and its record).
  static func files(of pushes: [WatchPendingPush]) -> [String] {
    var files = Set(pushes.flatMap(\.files))
    for file in files {
      let name = (file as NSString).lastPathComponent
      guard let (id, _) = ArchiveName.parse(fileName: name) else { continue }
      files.insert((file as NSString).deletingLastPathComponent + "/" + id + ArchiveSignature.fileSuffix)
    }
    return files.sorted()
  }

  /// One push of `pushes` to the remote, its check and the heartbeat after it; nil when all
  /// succeeded.
  private func push(_ remoteName: String, _ pushes: [WatchPendingPush]) -> String? {
    guard let remote = remotes[remoteName] else {
      return "remote \(remoteName) is no longer configured; its pending copies are dropped"
    }
    // An archive pruned locally before it reached the remote needs no copy any more.
    let files = Self.files(of: pushes).filter {
      FileSystem.exists(backupsDirectory + "/" + $0)
    }
    guard !files.isEmpty else { return writeHeartbeat(remote) }
    do {
      let copy = try remote.push(
        backupsDirectory: backupsDirectory, files: files, listDirectory: backupsDirectory + "/watch")
      if copy.status == 6 {
        return
          "remote \(remoteName): an archive already there differs from the local one and was not replaced (\(copy.errorText)); investigate the remote copy"
      }
      guard copy.status == 0 else {
        return "remote \(remoteName): rclone copy failed (exit \(copy.status)): \(copy.errorText)"
      }
      let check = try remote.verify(
        backupsDirectory: backupsDirectory, files: files, listDirectory: backupsDirectory + "/watch")
      guard check.status == 0 else {
        return "remote \(remoteName): rclone check found differences (exit \(check.status)): \(check.errorText)"
      }
      return writeHeartbeat(remote)
    } catch let error as StoreError {
      return "remote \(remoteName): \(error.errorDescription ?? "\(error)")"
    } catch {
      return "remote \(remoteName): \(error.localizedDescription)"
    }
  }

  /// Writes the deployment's heartbeat to `remote` after a verified push there, when the
  /// throttle says it is due (always when it names an identity the last one there did not).
  /// - Returns: nil when it was written or was not due; else why it was not (the push then
  ///   counts as failed and is retried, so the heartbeat is too).
  private func writeHeartbeat(_ remote: RcloneRemote) -> String? {
    guard var heartbeat else { return nil }
    let state = FleetHeartbeat.make(heartbeat.deployment, check: nil, now: Date())
    let identities = HeartbeatThrottle.identities(of: state)
    guard heartbeat.throttle.isDue(remote: remote.name, identities: identities, now: Self.now()) else { return nil }
    let failures = FleetHeartbeat.write(state, heartbeat.deployment, remotes: [remote], logger: heartbeat.logger)
    if let failure = failures[remote.name] { return failure }
    heartbeat.throttle.record(remote: remote.name, identities: identities, now: Self.now())
    self.heartbeat = heartbeat
    return nil
  }
}

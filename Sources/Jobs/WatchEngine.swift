import Foundation
import Logging
import Store

/// The state and the loop of one `tgsess watch` run (see `WatchJob.run`). Everything runs on the
/// calling thread but the remote copies (`WatchPusher`) and the pings (`WatchPinger`).
final class WatchEngine {
  let deployment: Deployment
  let options: WatchOptions
  let logger: Logger
  /// BackupJob's own logger: quieter, so each archive is one line (watch's).
  let jobLogger: Logger
  let stop: StopRequest
  let repository: ArchiveRepository
  let rowsReader: UserRowsReader
  let statePath: String
  let pusher: WatchPusher?
  let pinger: WatchPinger?
  /// Tells the deployment's archives from planted ones (`keys/signing.pub`): only a signed
  /// archive stands for a user's archived identity, and only a signed one is pushed.
  let authentication: Result<SigningAuthenticator, StoreError>

  /// What watch knows of each user (persisted in the state file). Changed through `store`.
  private(set) var users: [Int64: WatchUserRecord] = [:]
  /// Each user's line of the state file, and the users whose line must be made again.
  var stateLines: [Int64: String] = [:]
  var staleLines = Set<Int64>()
  /// Per user, the change key of the row as last read (this process only).
  var rowKeys: [Int64: Int] = [:]
  /// Users that have a `user_sessions` row, and those whose row says they logged out.
  var rowUsers: Set<Int64> = []
  var loggedOut: Set<Int64> = []
  var hasReadRows = false
  var fernet: Fernet?
  var fernetCheckedAt = -Double.infinity

  /// A user waiting to be judged (debounced) or archived (retried).
  struct Pending {
    var firstEvent: TimeInterval
    var lastEvent: TimeInterval
    /// When the first change was seen (nil when a scan found it).
    var changedAt: Date?
    var attempts = 0
    var notBefore: TimeInterval = 0
  }
  var pending: [Int64: Pending] = [:]
  /// Problems reported per user (invalid or vanished file), so each is one line.
  var reported: [Int64: String] = [:]
  /// The last archive failure per user, so a repeated one is not logged again.
  var failing: [Int64: String] = [:]
  /// The holder of the deployment lock while work waits for it.
  var lockHolder: String?
  var lockWaitStartedAt: TimeInterval?
  var pushErrors: [String: String] = [:]
  var pushedPerRemote: [String: Int] = [:]

  var metrics = WatchMetrics()
  var result = WatchResult()
  var isStateDirty = false
  var lastStateSave: TimeInterval = 0
  var lastHeartbeat: TimeInterval = 0
  var lastMetricsWrite: TimeInterval = 0
  var areMetricsDirty = true
  var databaseDirtyAt: TimeInterval?
  var lastRowScan: TimeInterval = 0
  var databaseRetryAt: TimeInterval?
  var databaseFailures = 0
  var databaseError: String?
  var needsScan = false
  /// Users a scan found archived (not counted as churn).
  var scanUnchanged = 0
  var isScanning = false
  var maintenanceDue: TimeInterval? = 0
  var sessionsWatch: Int32 = -1
  var databaseWatch: Int32 = -1
  let databaseName: String
  let startedAt = Date()

  init(deployment: Deployment, options: WatchOptions, logger: Logger, stop: StopRequest) throws {
    self.deployment = deployment
    self.options = options
    self.logger = logger
    var quiet = logger
    quiet.logLevel = max(logger.logLevel, .warning)
    jobLogger = quiet
    self.stop = stop
    repository = ArchiveRepository(backupsDirectory: deployment.backupsDirectory)
    rowsReader = UserRowsReader(path: deployment.databasePath, busyTimeoutMS: deployment.busyTimeoutMS)
    statePath = WatchStateFile.path(backupsDirectory: deployment.backupsDirectory)
    databaseName = (deployment.databasePath as NSString).lastPathComponent
    let authentication = Result { try SigningAuthenticator.forDeployment(deployment) }.mapError {
      StoreError.wrapping($0, path: deployment.signingPublicKeysPath)
    }
    self.authentication = authentication
    let remotes = options.pushesOffsite ? deployment.remotes : []
    pusher =
      remotes.isEmpty
      ? nil
      : WatchPusher(
        remotes: remotes, backupsDirectory: deployment.backupsDirectory, wake: stop.wake,
        retryBase: options.pushRetryBase, retryCap: options.pushRetryCap, authentication: authentication,
        heartbeat: WatchPusher.Heartbeat(
          deployment: deployment, throttle: HeartbeatThrottle(minimumInterval: options.fleetHeartbeatInterval),
          logger: logger))
    pinger = try options.pingURL.map { try WatchPinger(url: $0, timeout: options.pingTimeout, logger: logger) }
  }

  static func now() -> TimeInterval { ProcessInfo.processInfo.systemUptime }
  /// The textfile is rewritten at most this often while things change (and every heartbeat).
  static let metricsInterval: TimeInterval = 2

  /// Records what watch knows of a user; the state file is rewritten later.
  func store(_ userID: Int64, _ record: WatchUserRecord) {
    guard users[userID] != record else { return }
    users[userID] = record
    staleLines.insert(userID)
    isStateDirty = true
  }

  // MARK: - Run

  func run() throws -> WatchResult {
    let started = Self.now()
    // 1. Refuse what can never work: nothing to encrypt to, nothing to watch.
    if options.isEncrypted {
      do {
        guard !(try KeyStore.loadRecipients(deployment)).isEmpty else {
          throw JobError.refused(
            "\(deployment.ageRecipientsPath): no age recipient configured, so watch could not encrypt an archive; run tgsess init"
          )
        }
      } catch let error as StoreError { throw JobError.store(context: "watch", underlying: error) }
    }
    // Every archive is signed, and only signed archives count: without the key and its ring
    // watch could neither write an archive any reader accepts nor tell which are the deployment's.
    do {
      _ = try KeyStore.loadSigningKey(deployment)
      _ = try authentication.get()
    } catch let error as StoreError { throw JobError.store(context: "watch", underlying: error) }
    let inotify: Inotify
    do {
      inotify = try Inotify()
      for directory in [deployment.sessionsDirectory, FileSystem.parentDirectory(of: deployment.databasePath)]
      where !FileSystem.isDirectory(directory) {
        throw StoreError.missing(
          path: directory,
          hint: "watch follows this directory; run tgsess init, or fix sessions_dir / database in the config")
      }
      if !options.isOnce {
        sessionsWatch = try inotify.watch(directory: deployment.sessionsDirectory)
        databaseWatch = try inotify.watch(directory: FileSystem.parentDirectory(of: deployment.databasePath))
      }
    } catch let error as StoreError { throw JobError.store(context: "watch", underlying: error) }

    // 2. What the last run knew, the keys, the leftovers of a killed run.
    let state = WatchStateFile.load(path: statePath)
    users = state.users
    staleLines = Set(users.keys)
    FileSystem.removeStaleTemporaries(in: FileSystem.parentDirectory(of: statePath))
    loadFernet(force: true)
    pinger?.start()
    if let pusher {
      pusher.enqueue(state.pushes.filter { pusher.remoteNames.contains($0.remote) })
      if !options.isOnce { pusher.start() }
    }
    runMaintenance()
    logger.notice(
      "watch started",
      metadata: [
        "sessions_dir": "\(deployment.sessionsDirectory)", "database": "\(deployment.databasePath)",
        "remotes": "\(pusher?.remoteNames.joined(separator: ",") ?? "")", "fernet": "\(fernet != nil)",
      ])

    // 3. The scan, then (unless --once) the events.
    fullScan(reason: "start")
    if options.isOnce {
      runOnce(inotify: inotify)
    } else {
      do { try loop(inotify: inotify) } catch {
        finish(exitStatus: 1)
        throw error
      }
    }
    finish(exitStatus: 0)
    result.durationMS = Int((Self.now() - started) * 1000)
    return result
  }

  /// The daemon loop: wait, handle events, judge due users, report.
  private func loop(inotify: Inotify) throws {
    while !stop.isRequested {
      let timeout = nextDeadline().map { deadline -> Int in
        let milliseconds = ((deadline - Self.now()) * 1000).rounded(.up)
        return milliseconds.isFinite ? Int(max(0, min(milliseconds, 3_600_000))) : 0
      }
      let wakeup: Inotify.Wakeup
      do { wakeup = try inotify.wait(timeoutMS: timeout, wake: stop.wake) } catch let error as StoreError {
        throw JobError.store(context: "watch", underlying: error)
      }
      if stop.isRequested { break }
      if wakeup == .events {
        // A commit is a burst of events (journal created, pages written, journal deleted):
        // a few milliseconds more gather the rest of it into one read.
        usleep(5_000)
        let events: [InotifyEvent]
        do { events = try inotify.read() } catch let error as StoreError {
          throw JobError.store(context: "watch", underlying: error)
        }
        try handle(events)
      }
      step()
    }
    logger.notice("watch stopping", metadata: ["signal": "\(stop.reason ?? "")"])
  }

  /// One pass of everything that may be due.
  func step() {
    if needsScan {
      needsScan = false
      fullScan(reason: "overflow")
    }
    if maintenanceDue.map({ $0 <= Self.now() }) == true { runMaintenance() }
    checkDatabase()
    processDueUsers()
    collectPushOutcomes()
    report()
  }

  /// `--once`: judge and archive what the scan found, wait out a held lock up to `lockWait`,
  /// then push.
  private func runOnce(inotify: Inotify) {
    let deadline = Self.now() + options.lockWait
    while !pending.isEmpty, !stop.isRequested {
      processDueUsers()
      guard let next = pending.values.map(dueTime).min() else { break }
      if lockHolder != nil, next > deadline {
        result.isLocked = true
        result.lockHolder = lockHolder
        break
      }
      let wait = next - Self.now()
      if wait > 0 { _ = try? inotify.wait(timeoutMS: Int((wait * 1000).rounded(.up)), wake: stop.wake) }
    }
    if let pusher, !stop.isRequested {
      pusher.drain(attempts: options.oncePushAttempts)
      collectPushOutcomes()
    }
    report(force: true)
  }

  /// Stops the helpers, saves the state, writes the last metrics and ping.
  private func finish(exitStatus: Int32) {
    pusher?.stop()
    collectPushOutcomes()
    saveState(force: true)
    result.events = metrics.events
    result.overflows = metrics.overflows
    result.scans = metrics.scans
    result.archivesWritten = metrics.archivesWritten
    result.unchanged = metrics.unchanged + scanUnchanged
    result.problems = reported.sorted { $0.key < $1.key }.map { UserFailure(userID: $0.key, reason: $0.value) }
    result.failures = failing.sorted { $0.key < $1.key }.map { UserFailure(userID: $0.key, reason: $0.value) }
    let waiting = Dictionary(grouping: pusher?.pending ?? [], by: \.remote)
    result.offsite = (pusher?.remoteNames ?? []).map {
      WatchRemoteStatus(
        remote: $0, pushed: pushedPerRemote[$0] ?? 0, pending: waiting[$0]?.count ?? 0, lastError: pushErrors[$0])
    }
    report(force: true)
    // The exit status the process ends with: a daemon stopped by a signal exits 0; --once
    // reports partial and locked runs.
    let status: Int32 =
      exitStatus != 0 || !options.isOnce ? exitStatus : (result.isLocked ? 75 : result.isPartial ? 3 : 0)
    pinger?.finish(exitStatus: status, body: summaryLines().joined(separator: "\n"))
  }

  // MARK: - Events

  /// Maps inotify events to users and the database.
  func handle(_ events: [InotifyEvent]) throws {
    let now = Self.now()
    let wall = Date()
    for event in events {
      metrics.events += 1
      if event.isOverflow {
        metrics.overflows += 1
        needsScan = true
        logger.warning(
          "inotify queue overflowed (fs.inotify.max_queued_events); rescanning every user",
          metadata: ["overflows": "\(metrics.overflows)"])
        continue
      }
      if event.isWatchLost, event.name.isEmpty, event.watch == sessionsWatch || event.watch == databaseWatch {
        let directory =
          event.watch == sessionsWatch
          ? deployment.sessionsDirectory : FileSystem.parentDirectory(of: deployment.databasePath)
        throw JobError.store(
          context: "watch",
          underlying: .missing(
            path: directory,
            hint:
              "the watched directory was removed, moved or replaced (\(event.kinds)); watch exits so that its supervisor restarts it once the directory is back"
          ))
      }
      guard !event.isDirectory else { continue }
      if event.watch == sessionsWatch, let userID = Self.userID(ofSessionEntry: event.name) {
        touch(userID, now: now, wall: wall)
      }
      if event.watch == databaseWatch, Self.isDatabaseEntry(event.name, databaseName: databaseName) {
        if databaseDirtyAt == nil { databaseDirtyAt = now }
      }
    }
  }

  /// The user of a session file or of its journal or WAL (`user_42.session`, `user_42.session-journal`).
  static func userID(ofSessionEntry name: String) -> Int64? {
    for suffix in ["-journal", "-wal"] where name.hasSuffix(suffix) {
      return Deployment.userID(fromSessionFileName: String(name.dropLast(suffix.count)))
    }
    return Deployment.userID(fromSessionFileName: name)
  }

  /// Whether `name` is the database, its journal or its WAL (not the shared-memory index, which
  /// every reader touches).
  static func isDatabaseEntry(_ name: String, databaseName: String) -> Bool {
    name == databaseName || name == databaseName + "-journal" || name == databaseName + "-wal"
  }

  /// Marks a user changed: judged once its files have been quiet for `debounce`.
  func touch(_ userID: Int64, now: TimeInterval, wall: Date?) {
    if var entry = pending[userID] {
      entry.lastEvent = now
      if entry.changedAt == nil { entry.changedAt = wall }
      pending[userID] = entry
    } else {
      pending[userID] = Pending(firstEvent: now, lastEvent: now, changedAt: wall)
    }
  }

  func dueTime(_ entry: Pending) -> TimeInterval {
    let settled = min(entry.lastEvent + options.debounce, entry.firstEvent + options.maxDelay)
    return entry.attempts == 0 ? settled : max(entry.notBefore, settled)
  }

  /// The next moment something is due: a user, a database look, maintenance, a heartbeat, the state.
  func nextDeadline() -> TimeInterval? {
    var candidates: [TimeInterval] = pending.values.map(dueTime)
    if let dirty = databaseDirtyAt {
      candidates.append(max(dirty + min(options.debounce, 0.1), lastRowScan + options.rowScanInterval))
    }
    if let retry = databaseRetryAt { candidates.append(retry) }
    if let maintenanceDue { candidates.append(maintenanceDue) }
    candidates.append(lastHeartbeat + options.heartbeat)
    if isStateDirty { candidates.append(lastStateSave + options.stateSaveInterval) }
    if areMetricsDirty { candidates.append(lastMetricsWrite + Self.metricsInterval) }
    return candidates.min()
  }

  // MARK: - The database

  /// Reads `user_sessions` when the database changed (at most every `rowScanInterval`) and marks
  /// the users whose row changed.
  func checkDatabase() {
    let now = Self.now()
    if let retry = databaseRetryAt, retry > now { return }
    let isDue = databaseDirtyAt.map {
      now >= max($0 + min(options.debounce, 0.1), lastRowScan + options.rowScanInterval)
    }
    guard isDue == true || databaseRetryAt != nil else { return }
    databaseDirtyAt = nil
    let changed = refreshRows()
    for userID in changed { touch(userID, now: now, wall: Date()) }
  }

  /// Re-reads the rows if the database changed; returns the users whose row changed (all rows
  /// on the first read).
  @discardableResult
  func refreshRows() -> [Int64] {
    let now = Self.now()
    do {
      guard try rowsReader.hasChanged() else {
        databaseRecovered()
        return []
      }
      let rows = try rowsReader.rows()
      lastRowScan = now
      databaseRecovered()
      var changed: [Int64] = []
      var undecryptable: [UserSessionRow] = []
      var seen = Set<Int64>()
      var nowLoggedOut = Set<Int64>()
      for row in rows {
        seen.insert(row.userID)
        if row.isLoggedOut { nowLoggedOut.insert(row.userID) }
        let key = row.changeKey
        guard rowKeys[row.userID] != key else { continue }
        rowKeys[row.userID] = key
        var record = users[row.userID] ?? WatchUserRecord()
        let digest = row.digest
        if record.rowDigest == digest, record.row != nil || row.sessionString == nil {
          // Unchanged since the state was saved (a restart).
          if !hasReadRows { continue }
        }
        let (identity, isUndecryptable) = RowIdentity.of(
          sessionString: row.sessionString, apiID: row.apiID, fernet: fernet)
        if isUndecryptable { undecryptable.append(row) }
        if record.rowDigest != digest || record.row != identity {
          // A new digest with the same identity (a token re-encrypted under a key watch has)
          // is remembered but judges nobody.
          if record.row != identity || record.rowDigest == nil { changed.append(row.userID) }
          record.rowDigest = digest
          record.row = identity
          store(row.userID, record)
        }
      }
      for userID in rowUsers.subtracting(seen) {
        rowKeys[userID] = nil
        if var record = users[userID], record.row != nil || record.rowDigest != nil {
          record.row = nil
          record.rowDigest = nil
          store(userID, record)
        }
        changed.append(userID)
      }
      rowUsers = seen
      let loggedOutChanged = loggedOut.symmetricDifference(nowLoggedOut)
      loggedOut = nowLoggedOut
      changed += loggedOutChanged
      // A token no key decrypts: maybe `keys add-fernet` added the key it was made with.
      if !undecryptable.isEmpty, loadFernet(force: false) {
        for row in undecryptable {
          let identity = RowIdentity.of(sessionString: row.sessionString, apiID: row.apiID, fernet: fernet).identity
          if var record = users[row.userID], record.row != identity {
            record.row = identity
            store(row.userID, record)
            changed.append(row.userID)
          }
        }
      }
      hasReadRows = true
      logger.debug(
        "rows read",
        metadata: [
          "rows": "\(rows.count)", "changed": "\(Set(changed).count)",
          "duration_ms": "\(String(format: "%.1f", (Self.now() - now) * 1000))",
        ])
      return Array(Set(changed))
    } catch let error as StoreError {
      databaseFailed(error.errorDescription ?? "\(error)")
      return []
    } catch {
      databaseFailed("\(error)")
      return []
    }
  }

  private func databaseFailed(_ message: String) {
    databaseFailures += 1
    let delay = backoff(attempt: databaseFailures, base: options.retryBase, cap: options.retryCap)
    databaseRetryAt = Self.now() + delay
    rowsReader.close()
    if databaseError != message {
      logger.error(
        "cannot read user_sessions; retrying",
        metadata: ["error": "\(message)", "retry_in_s": "\(String(format: "%.1f", delay))"])
      databaseError = message
    }
  }

  private func databaseRecovered() {
    if databaseError != nil { logger.notice("user_sessions readable again", metadata: [:]) }
    databaseError = nil
    databaseFailures = 0
    databaseRetryAt = nil
  }

  /// Loads the Fernet keys (again when `force`, else at most every 30 s); returns whether they changed.
  @discardableResult
  func loadFernet(force: Bool) -> Bool {
    let now = Self.now()
    guard force || now - fernetCheckedAt >= 30 else { return false }
    fernetCheckedAt = now
    do {
      let loaded = try KeyStore.loadFernet(deployment)
      let changed = loaded?.keys.map(\.fingerprint) != fernet?.keys.map(\.fingerprint)
      fernet = loaded
      return changed
    } catch let error as StoreError {
      logger.warning(
        "Fernet keys not usable; session strings are compared by their stored text",
        metadata: ["error": "\(error.errorDescription ?? "")"])
      return false
    } catch {
      return false
    }
  }

  // MARK: - Users

  /// How reading a user's identity went.
  enum Reading {
    case current(CurrentIdentity)
    /// A transient problem (a lock held past the busy timeout): try again later.
    case retry(String)
  }

  /// Reads the user's session file (through the stamp cache) and takes the row from the last
  /// read of the database.
  /// The row part comes from a fresh read of the user's row (a primary-key lookup), unless
  /// `isRowFresh` says the last full read is current (a scan).
  func readCurrent(_ userID: Int64, isRowFresh: Bool = false) -> Reading {
    // No event on the database since its last full read: the rows watch holds are current.
    let isCacheCurrent = hasReadRows && databaseDirtyAt == nil && databaseError == nil
    if !isRowFresh, !isCacheCurrent {
      do { try refreshRow(userID) } catch let error as StoreError {
        return .retry(error.errorDescription ?? "\(error)")
      } catch {
        return .retry("\(error)")
      }
    }
    let path = deployment.sessionPath(userID: userID)
    var record = users[userID] ?? WatchUserRecord()
    let wasFileSeen = record.file != nil || record.stamp != nil || reported[userID] != nil
    let file: CurrentIdentity.File
    if let stamp = FileStamp.read(path: path) {
      if record.stamp == stamp, stamp.isTrustworthy, let known = record.file {
        file = .valid(known)
      } else if let known = record.file, let print = record.pagePrint, !stamp.isWALMode, stamp.wal.isEmpty,
        !stamp.isTruncated, print.currentDigest(path: path) == print.digest
      {
        // Churn: the pages that hold the identity are byte for byte what they were.
        file = .valid(known)
        record.stamp = stamp
      } else {
        do {
          let (identity, print) = try SessionPagePrint.read(path: path, busyTimeoutMS: deployment.busyTimeoutMS)
          file = .valid(identity)
          record.file = identity
          record.pagePrint = print
          record.stamp = stamp
        } catch StoreError.session(_, let problem) {
          switch problem {
          case .missingFile:
            file = .absent
            record.stamp = nil
          case .locked:
            return .retry("\(path): \(problem.description)")
          default:
            file = .invalid("\(path): \(problem.description)")
            record.file = nil
            record.pagePrint = nil
            record.stamp = stamp
          }
        } catch {
          file = .invalid("\(path): \(error)")
          record.file = nil
        }
      }
    } else if FileSystem.exists(path) {
      file = .invalid("\(path): not a regular file")
      record.file = nil
    } else {
      // The last identity stays known (and saved), so a vanished file is still reported after a restart.
      file = .absent
      record.stamp = nil
    }
    store(userID, record)
    return .current(
      CurrentIdentity(
        file: file, row: record.row, hasRow: rowUsers.contains(userID), isLoggedOut: loggedOut.contains(userID),
        wasFileSeen: wasFileSeen))
  }

  /// Reads one user's row now and updates what watch knows of it.
  /// - Returns: the row's digest (nil without a row).
  /// - Throws: `StoreError` when the database cannot be read.
  @discardableResult
  func refreshRow(_ userID: Int64) throws -> String? {
    let row = try rowsReader.row(userID: userID)
    var record = users[userID] ?? WatchUserRecord()
    if let row {
      rowUsers.insert(userID)
      if row.isLoggedOut { loggedOut.insert(userID) } else { loggedOut.remove(userID) }
      let digest = row.digest
      if record.rowDigest != digest || (record.row == nil && row.sessionString != nil) {
        var (identity, isUndecryptable) = RowIdentity.of(
          sessionString: row.sessionString, apiID: row.apiID, fernet: fernet)
        if isUndecryptable, loadFernet(force: false) {
          identity = RowIdentity.of(sessionString: row.sessionString, apiID: row.apiID, fernet: fernet).identity
        }
        record.rowDigest = digest
        record.row = identity
      }
    } else {
      rowUsers.remove(userID)
      loggedOut.remove(userID)
      record.rowDigest = nil
      record.row = nil
    }
    store(userID, record)
    return record.rowDigest
  }

  /// What the user's newest signed per-user archive holds: watch's own knowledge when it is the
  /// archive watch last judged, else its record's. An archive not signed by the deployment's key
  /// is passed over: a planted one never makes watch believe an identity is archived.
  /// - Throws: `StoreError.io` when the user's archive directory cannot be read.
  func archivedIdentity(_ userID: Int64, newestID: String?? = nil) throws -> ArchivedIdentity? {
    let newest = try newestID ?? newestSignedArchiveID(userID)
    guard let newest else { return nil }
    if let record = users[userID], record.archivedID == newest {
      return ArchivedIdentity(archiveID: newest, file: record.archivedFile, row: record.archivedRow, isRowKnown: true)
    }
    guard let record = try repository.userArchiveRecord(userID: userID, id: newest) else { return nil }
    return ArchivedIdentity(record: record)
  }

  /// The id of the user's newest per-user archive signed by the deployment's key; the archive
  /// watch itself last wrote or judged is taken as known.
  /// - Throws: `StoreError.io` when the user's archive directory cannot be read.
  func newestSignedArchiveID(_ userID: Int64) throws -> String? {
    try repository.newestUserArchiveID(
      userID: userID,
      accepting: Self.signedArchives(authentication, known: users[userID]?.archivedID))
  }

  /// Accepts an archive path when it is the `known` archive or its signature verifies.
  static func signedArchives(_ authentication: Result<SigningAuthenticator, StoreError>, known: String?)
    -> (String) -> Bool
  {
    { path in
      if let known, ArchiveName.parse(fileName: (path as NSString).lastPathComponent)?.id == known { return true }
      guard case .success(let authenticator) = authentication else { return false }
      return authenticator.isSigned(archivePath: path)
    }
  }

  /// Judges every pending user that is due, archiving those whose identity is not archived.
  func processDueUsers() {
    let now = Self.now()
    let due = pending.filter { dueTime($0.value) <= now }.sorted { dueTime($0.value) < dueTime($1.value) }.map(\.key)
    guard !due.isEmpty else { return }
    if !hasReadRows || databaseDirtyAt != nil && now - lastRowScan >= options.rowScanInterval {
      databaseDirtyAt = nil
      for userID in refreshRows() where pending[userID] == nil { touch(userID, now: now, wall: Date()) }
    }
    for userID in due {
      if stop.isRequested { return }
      process(userID)
    }
    areMetricsDirty = true
  }

  /// Judges one user and acts on the verdict.
  func process(_ userID: Int64) {
    guard var entry = pending[userID] else { return }
    // A restore, prune or backup holds the lock: do not even read a state it may be changing.
    if let holder = DeploymentLock.holder(path: deployment.lockPath) {
      waitForLock(userID, &entry, holder: holder)
      return
    }
    lockReleased()
    let current: CurrentIdentity
    switch readCurrent(userID) {
    case .retry(let message):
      retry(userID, &entry, message: message)
      return
    case .current(let identity):
      current = identity
    }
    let archived: ArchivedIdentity?
    do { archived = try archivedIdentity(userID) } catch let error as StoreError {
      retry(userID, &entry, message: error.errorDescription ?? "\(error)")
      return
    } catch {
      retry(userID, &entry, message: "\(error)")
      return
    }
    let verdict = WatchDecision.decide(current, archived: archived)
    apply(verdict, userID: userID, current: current, archived: archived, entry: &entry)
  }

  /// Carries out a verdict.
  func apply(
    _ verdict: WatchVerdict, userID: Int64, current: CurrentIdentity, archived: ArchivedIdentity?,
    entry: inout Pending
  ) {
    switch verdict {
    case .unchanged:
      pending[userID] = nil
      failing[userID] = nil
      clearProblem(userID)
      if isScanning { scanUnchanged += 1 } else { metrics.unchanged += 1 }
      adopt(userID, current: current, archived: archived)
    case .invalid(let problem):
      pending[userID] = nil
      failing[userID] = nil
      reportProblem(userID, problem)
    case .vanished:
      pending[userID] = nil
      failing[userID] = nil
      reportProblem(userID, "\(deployment.sessionPath(userID: userID)): the session file vanished")
    case .gone:
      pending[userID] = nil
      failing[userID] = nil
      clearProblem(userID)
      if var record = users[userID], record.file != nil || record.stamp != nil {
        record.file = nil
        record.stamp = nil
        store(userID, record)
      }
    case .archive(let reason, let detail):
      clearProblem(userID)
      archive(userID, reason: reason, detail: detail, current: current, entry: &entry)
    }
  }

  /// Remembers that the newest archive (someone else's) holds the current identity, so later
  /// changes are judged against all of it.
  func adopt(_ userID: Int64, current: CurrentIdentity, archived: ArchivedIdentity?) {
    guard let archived, !archived.isRowKnown, var record = users[userID] else { return }
    record.archivedID = archived.archiveID
    if case .valid(let file) = current.file { record.archivedFile = file } else { record.archivedFile = archived.file }
    record.archivedRow = current.isLoggedOut ? nil : current.row
    store(userID, record)
  }

  /// Writes the per-user archive (BackupJob takes the lock for it and proves it), then queues
  /// the copies.
  func archive(_ userID: Int64, reason: String, detail: String, current: CurrentIdentity, entry: inout Pending) {
    let backup = BackupOptions(
      userID: userID, reason: reason, isEncrypted: options.isEncrypted, lockWait: 0, zstdLevel: options.zstdLevel,
      includesChangedUsers: false, pushesOffsite: false)
    do {
      // The row read fresh on both sides of the backup: the archive holds it only if it did not move.
      let rowBefore = try refreshRow(userID)
      let done = try BackupJob.run(deployment, options: backup, logger: jobLogger)
      // The row the archive holds is the one read before only if it is still the same after.
      let rowAfter = try? refreshRow(userID)
      let isRowKnown = rowAfter == rowBefore
      guard let summary = done.archives.first else {
        retry(userID, &entry, message: "user \(userID): the backup wrote no archive")
        return
      }
      let now = Date()
      pending[userID] = nil
      failing[userID] = nil
      // What the archive really holds: its record's fingerprint (the file may have moved on
      // since it was read), with the format and row as read.
      var record = users[userID] ?? WatchUserRecord()
      let written = try? repository.userArchiveRecord(userID: userID, id: summary.id)
      var file: FileIdentity?
      if case .valid(let read) = current.file { file = read }
      if let fingerprint = written?.sessionFingerprint, written?.id == summary.id {
        let format = file?.authKey == fingerprint.authKey ? file?.format ?? "" : ""
        file = FileIdentity(format: format, dcID: fingerprint.dcID, authKey: fingerprint.authKey)
      }
      record.archivedID = summary.id
      record.archivedFile = file
      record.archivedRow = isRowKnown ? record.row : nil
      store(userID, record)
      if !isRowKnown {
        // The row changed while it was archived: judge the user again once it settles.
        touch(userID, now: Self.now(), wall: entry.changedAt)
      }
      let seconds = entry.changedAt.map { now.timeIntervalSince($0) }
      metrics.recordArchive(reason: reason, secondsFromChange: seconds, at: now)
      let archive = WatchArchive(
        userID: userID, archiveID: summary.id, reason: reason, detail: detail, authKeyFingerprint: file?.authKey,
        secondsFromChange: seconds)
      result.archives.append(archive)
      if result.archives.count > 1000 { result.archives.removeFirst(result.archives.count - 1000) }
      var metadata: Logger.Metadata = [
        "user.id": "\(userID)", "reason": "\(reason)", "archive.id": "\(summary.id)", "change": "\(detail)",
        "session.key": "\(file?.authKey ?? "-")", "session.dc": "\(file.map { String($0.dcID) } ?? "-")",
      ]
      if let seconds { metadata["change_to_archive_ms"] = "\(Int(seconds * 1000))" }
      logger.notice("archived", metadata: metadata)
      if let pusher {
        let base = deployment.backupsDirectory + "/"
        let archivePath = summary.path.hasPrefix(base) ? String(summary.path.dropFirst(base.count)) : summary.path
        let directory = (archivePath as NSString).deletingLastPathComponent
        let recordPath = directory + "/" + summary.id + ArchiveName.recordSuffix
        let signaturePath = directory + "/" + summary.id + ArchiveSignature.fileSuffix
        let changed = entry.changedAt?.timeIntervalSince1970 ?? 0
        pusher.enqueue(
          pusher.remoteNames.map {
            WatchPendingPush(remote: $0, files: [archivePath, signaturePath, recordPath], changedAt: changed)
          })
      }
      saveState(force: true)
    } catch let error as JobError {
      if case .store(_, .locked(_, let holder)) = error {
        waitForLock(userID, &entry, holder: holder)
      } else if case .refused = error {
        // Nothing left to back up (the file and the row went while we looked).
        pending[userID] = nil
      } else {
        retry(userID, &entry, message: error.errorDescription ?? "\(error)")
      }
    } catch {
      retry(userID, &entry, message: "\(error)")
    }
  }

  /// Queues a user behind the deployment lock; one line per wait, not per attempt.
  func waitForLock(_ userID: Int64, _ entry: inout Pending, holder: String) {
    entry.attempts += 1
    entry.notBefore =
      Self.now() + backoff(attempt: entry.attempts, base: options.retryBase, cap: min(options.retryCap, 5))
    pending[userID] = entry
    if lockHolder == nil {
      lockWaitStartedAt = Self.now()
      logger.notice(
        "deployment lock held; changes queued until it is free",
        metadata: ["holder": "\(holder)", "queued": "\(pending.count)"])
    }
    lockHolder = holder
  }

  func lockReleased() {
    guard let holder = lockHolder else { return }
    logger.notice(
      "deployment lock free; catching up",
      metadata: [
        "holder": "\(holder)", "waited_s": "\(String(format: "%.1f", Self.now() - (lockWaitStartedAt ?? Self.now())))",
        "queued": "\(pending.count)",
      ])
    lockHolder = nil
    lockWaitStartedAt = nil
  }

  /// Queues a user again after a failure (a full disk, a database locked past its timeout, an
  /// unreadable file); one line per distinct failure.
  func retry(_ userID: Int64, _ entry: inout Pending, message: String) {
    entry.attempts += 1
    let delay = backoff(attempt: entry.attempts, base: options.retryBase, cap: options.retryCap)
    entry.notBefore = Self.now() + delay
    // A --once run gives a failing user three tries; the daemon keeps trying.
    pending[userID] = options.isOnce && entry.attempts >= 3 ? nil : entry
    metrics.archiveFailures += 1
    if failing[userID].map(Self.failureKey) != Self.failureKey(message) {
      logger.error(
        "cannot archive user yet; retrying",
        metadata: ["user.id": "\(userID)", "error": "\(message)", "retry_in_s": "\(String(format: "%.1f", delay))"])
    }
    failing[userID] = message
  }

  func reportProblem(_ userID: Int64, _ problem: String) {
    guard reported[userID] != problem else { return }
    reported[userID] = problem
    metrics.problemReports += 1
    logger.warning(
      "session not usable; not archived as an identity", metadata: ["user.id": "\(userID)", "problem": "\(problem)"])
  }

  func clearProblem(_ userID: Int64) {
    if reported.removeValue(forKey: userID) != nil {
      logger.notice("session usable again", metadata: ["user.id": "\(userID)"])
    }
  }

  /// A jittered wait in `ceiling/2 ... ceiling` with the ceiling doubling per attempt.
  func backoff(attempt: Int, base: TimeInterval, cap: TimeInterval) -> TimeInterval {
    let ceiling = min(cap, base * pow(2, Double(max(0, attempt - 1))))
    return Double.random(in: (ceiling / 2)...max(ceiling / 2, ceiling))
  }

  // MARK: - Scan

  /// Reads every user's identity and queues those whose identity is not archived: at start-up
  /// (changes made while watch was down) and after an inotify overflow (events were lost).
  func fullScan(reason: String) {
    let started = Self.now()
    metrics.scans += 1
    isScanning = true
    defer { isScanning = false }
    rowsReader.invalidate()
    rowKeys = [:]
    refreshRows()
    // Where the time goes, for -vv: milliseconds per phase.
    var phases: [(String, TimeInterval)] = [("rows", Self.now() - started)]
    func phase(_ name: String) { phases.append((name, Self.now() - started - phases.map(\.1).reduce(0, +))) }
    let fileUsers: [Int64]
    do { fileUsers = try deployment.sessionFileUserIDs() } catch let error as StoreError {
      logger.error("cannot list session files; retrying", metadata: ["error": "\(error.errorDescription ?? "")"])
      needsScan = true
      return
    } catch {
      needsScan = true
      return
    }
    // 1. Files whose stamp changed are read again, on a few threads.
    let known = users
    let busyTimeoutMS = deployment.busyTimeoutMS
    let sessionsDirectory = deployment.sessionsDirectory
    let progress = reason == "start" ? options.startUpProgress : nil
    let filesRead = PhaseCounter(progress, phase: "session files", total: fileUsers.count)
    let reads =
      (try? Parallel.map(count: fileUsers.count, workers: options.scanWorkers) {
        index -> (FileStamp?, Result<(FileIdentity, SessionPagePrint?), StoreError>?) in
        defer { filesRead.step() }
        let userID = fileUsers[index]
        let path = sessionsDirectory + "/user_\(userID).session"
        guard let stamp = FileStamp.read(path: path) else { return (nil, nil) }
        if let record = known[userID], record.stamp == stamp, stamp.isTrustworthy, record.file != nil {
          return (stamp, nil)
        }
        do { return (stamp, .success(try SessionPagePrint.read(path: path, busyTimeoutMS: busyTimeoutMS))) } catch let
          error
          as StoreError
        {
          return (stamp, .failure(error))
        } catch {
          return (stamp, .failure(.session(object: path, reason: .unreadable("\(error)"))))
        }
      }) ?? []
    phase("files")
    var retryUsers: [Int64] = []
    for (index, (stamp, read)) in reads.enumerated() {
      let userID = fileUsers[index]
      guard let read else { continue }
      var record = users[userID] ?? WatchUserRecord()
      switch read {
      case .success(let (identity, print)):
        record.stamp = stamp
        record.file = identity
        record.pagePrint = print
      case .failure(let error):
        // Judged one by one below (reported, or retried when only locked).
        _ = error
        record.stamp = nil
        retryUsers.append(userID)
      }
      store(userID, record)
    }
    // 2. Every user with a file, a row or an archive watch knew, judged against their newest archive.
    var everyone = Set(fileUsers).union(rowUsers)
    for (userID, record) in users where record.archivedID != nil || record.file != nil { everyone.insert(userID) }
    let ordered = everyone.sorted()
    let repository = self.repository
    let authentication = self.authentication
    let archivedIDs = ordered.map { users[$0]?.archivedID }
    let archivesRead = PhaseCounter(progress, phase: "archives", total: ordered.count)
    let newest =
      (try? Parallel.map(count: ordered.count, workers: options.scanWorkers) { index -> Result<String?, StoreError> in
        defer { archivesRead.step() }
        do {
          return .success(
            try repository.newestUserArchiveID(
              userID: ordered[index], accepting: Self.signedArchives(authentication, known: archivedIDs[index])))
        } catch let error
          as StoreError
        {
          return .failure(error)
        } catch {
          return .failure(
            .invalid(path: repository.userDirectory(ordered[index]), reason: "\(error)", hint: "check the directory"))
        }
      }) ?? []
    phase("archives")
    let now = Self.now()
    let retrySet = Set(retryUsers)
    var queued = 0
    for (index, userID) in ordered.enumerated() {
      if retrySet.contains(userID) || index >= newest.count {
        queue(userID, now: now)
        queued += 1
        continue
      }
      guard case .current(let current) = readCurrent(userID, isRowFresh: databaseError == nil),
        case .success(let newestID) = newest[index],
        let archived = try? archivedIdentity(userID, newestID: .some(newestID))
      else {
        queue(userID, now: now)
        queued += 1
        continue
      }
      var entry = Pending(firstEvent: now, lastEvent: now, changedAt: nil)
      let verdict = WatchDecision.decide(current, archived: archived)
      if case .archive = verdict {
        queue(userID, now: now)
        queued += 1
      } else {
        apply(verdict, userID: userID, current: current, archived: archived, entry: &entry)
      }
    }
    phase("judge")
    logger.debug(
      "scan phases", metadata: ["ms": "\(phases.map { "\($0.0)=\(Int($0.1 * 1000))" }.joined(separator: ","))"])
    result.usersScanned += ordered.count
    metrics.lastScanSeconds = Self.now() - started
    // The scan's threads leave freed memory in their malloc arenas: give it back (RSS).
    FileSystem.releaseFreeMemory()
    logger.notice(
      "scan done",
      metadata: [
        "reason": "\(reason)", "users": "\(ordered.count)", "queued": "\(queued)",
        "duration_ms": "\(Int((Self.now() - started) * 1000))",
      ])
    areMetricsDirty = true
  }

  /// Queues a user the scan found changed, due at once (a scan has no burst to wait out).
  private func queue(_ userID: Int64, now: TimeInterval) {
    if pending[userID] == nil {
      pending[userID] = Pending(firstEvent: now - options.maxDelay, lastEvent: now - options.debounce, changedAt: nil)
    }
  }

  // MARK: - Maintenance, copies, reports

  /// Removes what a killed run left (temporaries, hidden records, staging) under the lock; when
  /// the lock is held, later.
  func runMaintenance() {
    do {
      let lock = try DeploymentLock.acquire(path: deployment.lockPath, command: "watch (cleanup)", wait: 0)
      defer { lock.release() }
      let removed = try repository.removeLeftovers()
      StagingArea.removeStale(in: deployment.backupsDirectory)
      if !removed.isEmpty {
        logger.notice("removed what an interrupted run left", metadata: ["paths": "\(removed.count)"])
      }
      maintenanceDue = nil
    } catch {
      maintenanceDue = Self.now() + 10
    }
  }

  /// Logs and counts what the pusher did.
  func collectPushOutcomes() {
    guard let pusher else { return }
    for outcome in pusher.takeOutcomes() {
      let archives = outcome.pushes.count
      if let error = outcome.error {
        metrics.recordPush(
          remote: outcome.remote, isOK: false, archives: archives, secondsFromChange: [], at: outcome.finishedAt)
        // rclone stamps its lines with the time: the same failure must not read as a new one.
        if pushErrors[outcome.remote].map(Self.failureKey) != Self.failureKey(error) {
          logger.error(
            "copy to remote failed; the archives are kept locally and the copy retried",
            metadata: [
              "remote": "\(outcome.remote)", "archives": "\(archives)", "error": "\(error)",
              "retry_in_s": "\(outcome.retryIn.map { String(format: "%.0f", $0) } ?? "never")",
            ])
        }
        pushErrors[outcome.remote] = error
      } else {
        let seconds = outcome.pushes.compactMap {
          $0.changedAt > 0 ? outcome.finishedAt.timeIntervalSince1970 - $0.changedAt : nil
        }
        metrics.recordPush(
          remote: outcome.remote, isOK: true, archives: archives, secondsFromChange: seconds, at: outcome.finishedAt)
        pushedPerRemote[outcome.remote, default: 0] += archives
        if pushErrors.removeValue(forKey: outcome.remote) != nil {
          logger.notice("remote reachable again", metadata: ["remote": "\(outcome.remote)"])
        }
        let ids = outcome.pushes.compactMap { push in
          push.files.lazy.compactMap { ArchiveName.parse(fileName: ($0 as NSString).lastPathComponent)?.id }.first
        }
        var metadata: Logger.Metadata = [
          "remote": "\(outcome.remote)", "archives": "\(archives)", "archive.ids": "\(ids.joined(separator: ","))",
        ]
        if let worst = seconds.max() { metadata["change_to_remote_ms"] = "\(Int(worst * 1000))" }
        logger.info("copied offsite", metadata: metadata)
      }
      isStateDirty = true
      areMetricsDirty = true
    }
  }

  /// A failure message without what changes from one attempt to the next (rclone's timestamps,
  /// temporary and staging names, new archive ids), so a repeated failure is recognised as one.
  static func failureKey(_ text: String) -> String {
    text.replacing(/\d{4}\/\d{2}\/\d{2} \d{2}:\d{2}:\d{2}(\.\d+)? ?/, with: "")
      .replacing(/\.tgsess-tmp-\d+-[a-z0-9]+/, with: ".tgsess-tmp")
      .replacing(/\.staging-\d+-[a-z0-9]+/, with: ".staging")
      .replacing(/\d{8}T\d{6}Z-(full|u\d+)-[a-z0-9]+/, with: "ID")
  }

  /// Writes the textfile (at most every two seconds while things change, and every heartbeat), the
  /// status file and the ping; saves the state when due.
  func report(force: Bool = false) {
    let now = Self.now()
    let pushQueue = pusher?.pendingCount ?? 0
    metrics.queueLength = pending.count
    metrics.pushQueueLength = pushQueue
    metrics.currentProblems = reported.count
    let isCaughtUp = pending.isEmpty && pushQueue == 0 && failing.isEmpty && databaseError == nil
    if isCaughtUp { metrics.lastSuccessAt = Date() }
    let isHeartbeat = now - lastHeartbeat >= options.heartbeat
    if force || isHeartbeat || (areMetricsDirty && now - lastMetricsWrite >= Self.metricsInterval) {
      if let path = options.metricsPath {
        do { try metrics.file(now: Date()).write(to: path) } catch {
          if isHeartbeat || force {
            logger.warning("metrics not written", metadata: ["error": "\(error.localizedDescription)"])
          }
        }
      }
      lastMetricsWrite = now
      areMetricsDirty = false
    }
    if force || isHeartbeat {
      lastHeartbeat = now
      let status = WatchStatusFile(
        pid: getpid(), startedAt: startedAt, heartbeatAt: Date(), lastSuccessAt: metrics.lastSuccessAt,
        queueLength: pending.count, pushQueueLength: pushQueue)
      do { try status.save(deployment) } catch {
        // A heartbeat file: the next beat writes it again; the failure is said, not dropped.
        logger.warning("status file not written", metadata: ["error": "\(error.localizedDescription)"])
      }
      if !force {
        pinger?.beat(
          exitStatus: failing.isEmpty && pushErrors.isEmpty ? 0 : 1, body: summaryLines().joined(separator: "\n"))
      }
    }
    saveState(force: false)
  }

  /// The summary lines for the ping body and `--once` output.
  func summaryLines() -> [String] {
    var lines = [
      "\(metrics.archivesWritten) archived, \(metrics.unchanged) churn, \(pending.count) queued, \(reported.count) invalid, \(metrics.events) events, \(metrics.overflows) overflows"
    ]
    lines += failing.sorted { $0.key < $1.key }.prefix(20).map { "FAILED user \($0.key): \($0.value)" }
    lines += pushErrors.sorted { $0.key < $1.key }.map { "offsite FAILED \($0.value)" }
    return lines
  }

  /// Saves the state file when due (or now with `force`); a failure is one warning and a later retry.
  func saveState(force: Bool) {
    let now = Self.now()
    guard force || (isStateDirty && now - lastStateSave >= options.stateSaveInterval) else { return }
    for userID in staleLines {
      stateLines[userID] = users[userID].map { WatchStateFile.line(userID: userID, record: $0) }
    }
    staleLines = []
    do {
      try WatchStateFile.save(
        path: statePath, lines: stateLines.keys.sorted().compactMap { stateLines[$0] }, pushes: pusher?.pending ?? [])
      isStateDirty = false
    } catch let error as StoreError {
      logger.warning("state file not written; retrying", metadata: ["error": "\(error.errorDescription ?? "")"])
    } catch {
      logger.warning("state file not written; retrying", metadata: ["error": "\(error)"])
    }
    lastStateSave = now
  }
}

import Foundation
import Logging
import Store

/// Options of `tgsess restore`.
public struct RestoreOptions: Sendable {
  /// An archive id (or unique prefix), or "latest".
  public var selector: String
  /// Restore only this user's session file(s) and `user_sessions` row.
  public var userID: Int64?
  /// Pick the newest archive at or before this time.
  public var at: Date?
  /// Restore a whole deployment into this empty or new directory instead of the live one.
  public var target: String?
  /// Print what would change without changing anything.
  public var isDryRun: Bool
  /// Restore into the live deployment even though the bot seems to run or a process holds a file
  /// being replaced (`LiveOwnerRefusal.forceRisk` says what that risks).
  public var isForced: Bool
  /// The age identity file (default: the deployment's).
  public var identityPath: String?
  /// Seconds to wait for the deployment lock.
  public var lockWait: TimeInterval
  /// Restore from this configured remote alone (the disaster case: only the config, the
  /// identity and the remote are left).
  public var fromRemote: String?
  /// With `fromRemote`: the archives of this other deployment on the remote (a user handed over
  /// from that host), instead of this deployment's own.
  public var fromDeployment: String?
  /// Refuse to place a session the fleet shows in use on another host (the cross-host guard);
  /// a drill's throwaway copy skips it.
  public var checksFleet = true
  /// The key ring archives are verified with (a new host's escrowed `signing.pub`); default
  /// `keys/signing.pub`.
  public var verifyKeyPath: String?
  /// Accept archives without a signature (made before archives were signed); each one used is
  /// named in a warning.
  public var allowsUnsigned: Bool

  public init(
    selector: String = "latest", userID: Int64? = nil, at: Date? = nil, target: String? = nil, isDryRun: Bool = false,
    isForced: Bool = false, identityPath: String? = nil, lockWait: TimeInterval = 0, fromRemote: String? = nil,
    verifyKeyPath: String? = nil, allowsUnsigned: Bool = false
  ) {
    self.fromRemote = fromRemote
    self.verifyKeyPath = verifyKeyPath
    self.allowsUnsigned = allowsUnsigned
    self.selector = selector
    self.userID = userID
    self.at = at
    self.target = target
    self.isDryRun = isDryRun
    self.isForced = isForced
    self.identityPath = identityPath
    self.lockWait = lockWait
  }

  /// Where the archives come from.
  var origin: ArchiveOrigin {
    guard let fromRemote else { return .local }
    return fromDeployment.map { .remoteDeployment(remote: fromRemote, deployment: $0) } ?? .remote(fromRemote)
  }
}

/// One file a restore creates, replaces or leaves alone.
public struct FileChange: Codable, Sendable, Equatable {
  public enum Action: String, Codable, Sendable {
    case create, replace
    /// The same bytes are there: left alone.
    case identical
    /// Other bytes, the same content (the same schema and rows, so the same session identity
    /// and tables): left alone.
    case unchanged
  }
  public var path: String
  public var action: Action
  public var sha256Before: String?
  public var sha256After: String
  /// True when the archive holds these bytes verbatim (not a valid SQLite file when archived:
  /// a damaged file's undo): the restore puts the damaged file back as it was. Nil otherwise.
  public var isVerbatim: Bool?

  public init(path: String, action: Action, sha256Before: String?, sha256After: String, isVerbatim: Bool? = nil) {
    self.path = path
    self.action = action
    self.sha256Before = sha256Before
    self.sha256After = sha256After
    self.isVerbatim = isVerbatim
  }

  /// Whether the restore writes this file.
  public var writes: Bool { action == .create || action == .replace }
}

/// Where a restore writes.
public enum RestoreMode: String, Codable, Sendable, Equatable {
  /// The whole live deployment: the database and every session file.
  case whole
  /// One user's session file(s) and `user_sessions` row in the live deployment.
  case user
  /// A whole deployment into an empty or new directory; the live one is untouched.
  case target
}

/// What a restore will do, computed from a verified archive before anything changes: a value
/// that `--dry-run` prints, tests assert, and `RestoreJob` carries out.
public struct RestorePlan: Sendable, Equatable {
  /// One file to write.
  public struct FileStep: Sendable, Equatable {
    public var change: FileChange
    /// The archive entry the file comes from.
    public var entryPath: String
    /// The bot database (restored through SQLite's online backup API when it is live).
    public var isDatabase: Bool
    /// A verbatim entry's `-journal` or `-wal`: installed after the file it belongs to (whose
    /// installation clears the live ones).
    public var isCompanion: Bool

    public init(change: FileChange, entryPath: String, isDatabase: Bool, isCompanion: Bool = false) {
      self.change = change
      self.entryPath = entryPath
      self.isDatabase = isDatabase
      self.isCompanion = isCompanion
    }

    /// Whether the archive holds the file byte for byte (installed by rename as it is, never
    /// through SQLite).
    public var isVerbatim: Bool { change.isVerbatim == true }
  }

  public var archiveID: String
  public var archivePath: String
  /// The key that signed the archive; nil for an unsigned archive accepted with
  /// `--allow-unsigned`.
  public var signingKeyID: String?
  public var mode: RestoreMode
  /// The deployment written to (the live root, or the target directory).
  public var targetRoot: String
  /// The user of a per-user restore.
  public var userID: Int64?
  public var files: [FileStep]
  /// The `user_sessions` row to upsert (a per-user restore), into `databasePath`.
  public var userRow: UserSessionsRow?
  public var databasePath: String
  /// The users whose session file is restored.
  public var users: [Int64]
  /// The auth-key fingerprint of each restored session file, by user (from the manifest).
  public var authKeyFingerprints: [Int64: String] = [:]
  /// Live JSON sidecars moved aside because the session file beside them is replaced by one
  /// whose archive holds no sidecar (a new session file never sits beside an old sidecar).
  public var movesAside: [String]

  public init(
    archiveID: String, archivePath: String, signingKeyID: String?, mode: RestoreMode, targetRoot: String,
    userID: Int64?, files: [FileStep], userRow: UserSessionsRow?, databasePath: String, users: [Int64],
    movesAside: [String] = []
  ) {
    self.movesAside = movesAside
    self.archiveID = archiveID
    self.archivePath = archivePath
    self.signingKeyID = signingKeyID
    self.mode = mode
    self.targetRoot = targetRoot
    self.userID = userID
    self.files = files
    self.userRow = userRow
    self.databasePath = databasePath
    self.users = users
  }

  /// The database rows changed, in words.
  public var rows: [String] {
    guard let userRow else { return [] }
    return ["upsert the user_sessions row of user \(userRow.userID) in \(databasePath)"]
  }

  /// Whether live data is replaced (then an undo backup is taken first).
  public var replacesData: Bool {
    files.contains { $0.change.action == .replace } || userRow != nil || !movesAside.isEmpty
  }
}

/// What `tgsess restore` did, or would do.
public struct RestoreResult: Codable, Sendable, Equatable {
  public var archiveID: String
  public var archivePath: String
  /// The key that signed the archive; nil for an unsigned archive (`--allow-unsigned`).
  public var signingKeyID: String?
  public var mode: RestoreMode
  public var isDryRun: Bool
  public var files: [FileChange]
  /// Database rows changed (or to change), in words.
  public var rows: [String]
  /// The id of the archive of what was replaced ("Before restore"), taken first.
  public var undo: String?
  public var warnings: [String]
  /// The check of what was restored: one line per problem; empty when everything validates.
  public var problems: [String]
  public var restoredUsers: Int

  init(plan: RestorePlan, isDryRun: Bool) {
    archiveID = plan.archiveID
    archivePath = plan.archivePath
    signingKeyID = plan.signingKeyID
    mode = plan.mode
    self.isDryRun = isDryRun
    files = plan.files.map(\.change)
    rows = plan.rows
    undo = nil
    warnings =
      (plan.signingKeyID == nil ? [RestoreJob.unsignedWarning(plan.archiveID, path: plan.archivePath)] : [])
      + plan.movesAside.map {
        "\($0): moved aside, as the session file beside it is restored from an archive without a sidecar"
      } + RestoreJob.verbatimWarnings(plan)
    problems = []
    restoredUsers = plan.users.count
  }
}

/// Restores archives: verified in full before a byte of live data changes. A restore is a plan
/// (`plan`), computed from the verified archive, and an executor that carries it out under the
/// deployment lock, after the live-owner guard and the undo backup.
public enum RestoreJob {
  /// Restores according to `options` (with `isDryRun`, only plans).
  /// - Parameter progress: where to report each phase's progress (a TTY): "reading archive",
  ///   "checking entries", the undo backup's phases ("undo: ..."), "installing"; nil reports
  ///   nothing.
  /// - Throws: `JobError` naming the archive and what failed; nothing has changed then.
  public static func run(
    _ deployment: Deployment, options: RestoreOptions, logger: Logger, progress: JobProgressHandler? = nil
  ) throws -> RestoreResult {
    try validate(options)
    do {
      let catalog = try ArchiveCatalog.open(deployment, origin: options.origin)
      defer { catalog.close() }
      return try run(deployment, options: options, catalog: catalog, logger: logger, progress: progress)
    } catch let error as StoreError {
      throw JobError.store(context: "restore", underlying: error)
    }
  }

  /// What a restore with `options` would do: the archive is chosen, verified in full in staging
  /// and compared with what is there; nothing changes.
  /// - Throws: `JobError` naming the archive and what failed.
  public static func plan(_ deployment: Deployment, options: RestoreOptions, logger: Logger) throws -> RestorePlan {
    try validate(options)
    do {
      let catalog = try ArchiveCatalog.open(deployment, origin: options.origin)
      defer { catalog.close() }
      let prepared = try prepare(deployment, options: options, catalog: catalog)
      prepared.discard(isTargetFilled: false)
      return prepared.plan
    } catch let error as StoreError {
      throw JobError.store(context: "restore", underlying: error)
    }
  }

  /// Checked again here (the CLI's validate() does too): a --target restore with a user would
  /// write that user's row into the live database, unguarded and without an undo.
  static func validate(_ options: RestoreOptions) throws {
    if options.fromDeployment != nil, options.fromRemote == nil {
      throw JobError.usage(
        "--from-deployment reads another deployment's archives on a remote; add --from-remote. Try: tgsess restore --from-remote s3 --user 42 --from-deployment old-host"
      )
    }
    if options.target != nil, options.userID != nil {
      throw JobError.usage(
        "--target restores a whole deployment; drop --user. Try: tgsess restore latest --target /srv/drill")
    }
  }

  /// A restore from an opened catalog (a drill restores from its own).
  /// - Throws: `JobError` naming the archive and what failed; nothing has changed then.
  static func run(
    _ deployment: Deployment, options: RestoreOptions, catalog: ArchiveCatalog, logger: Logger,
    progress: JobProgressHandler? = nil
  ) throws -> RestoreResult {
    do {
      return try restore(deployment, options: options, catalog: catalog, logger: logger, progress: progress)
    } catch let error as StoreError {
      throw JobError.store(context: "restore", underlying: error)
    }
  }

  private static func restore(
    _ deployment: Deployment, options: RestoreOptions, catalog: ArchiveCatalog, logger: Logger,
    progress: JobProgressHandler?
  ) throws -> RestoreResult {
    let prepared = try prepare(deployment, options: options, catalog: catalog, progress: progress)
    var isTargetFilled = false
    defer { prepared.discard(isTargetFilled: isTargetFilled) }
    var plan = prepared.plan
    var result = RestoreResult(plan: plan, isDryRun: options.isDryRun)
    if options.isDryRun { return result }
    // Another host's heartbeat showing one of these sessions in use: before the lock, nothing made yet.
    if options.checksFleet {
      result.warnings += try guardFleet(deployment, plan: plan, options: options, logger: logger)
    }

    // The deployment lock is held from the guard through the undo backup to the last file, so
    // no backup, prune or other restore runs in between (the undo backup nests inside it).
    let lock = try DeploymentLock.acquire(
      path: plan.mode == .target ? plan.targetRoot + "/.tgsess.lock" : deployment.lockPath, command: "restore",
      wait: options.lockWait)
    defer { lock.release() }
    isTargetFilled = true
    if plan.mode != .target {
      // The undo archive is written on the side: what an earlier restore's left (a record to
      // roll forward) is finished here, as recover does, since a rerun may take no undo.
      // A per-user restore writes its undo in that user's directory alone: only it is looked at.
      try Leftovers.remove(deployment, userID: plan.mode == .user ? plan.userID : nil, logger: logger)
      // The live-owner guard: the bot, and any process that holds a file about to be replaced.
      let evidence = LiveOwnerGuard.evidence(
        deployment, files: plan.files.map(\.change.path),
        replacing: plan.files.filter { $0.change.writes }.map(\.change.path),
        systemdUnit: deployment.config.check?.botUnit)
      if !evidence.isEmpty {
        let described = LiveOwnerRefusal.describe(evidence)
        guard options.isForced else {
          throw JobError.refused(
            "refusing to restore into the live deployment while it is in use: \(described); \(LiveOwnerRefusal.remedy(evidence)) (\(LiveOwnerRefusal.forceRisk))"
          )
        }
        result.warnings.append("--force: restoring although \(described)")
        logger.warning("restore forced", metadata: ["evidence": "\(described)"])
      }
      // A session/sidecar pair a crash left half-installed is completed first; what is live
      // then differs from what was planned, so the plan is made again.
      let finished =
        try plan.mode == .user && plan.userID != nil
        ? LiveFiles.finishInterruptedPair(sessionPath: deployment.sessionPath(userID: plan.userID!))
        : LiveFiles.finishInterruptedPairs(in: deployment.sessionsDirectory)
      if !finished.isEmpty {
        logger.warning("completed interrupted pair installs", metadata: ["files": "\(finished)"])
        // The warnings the guard added stay; the plan's own are made again with it.
        let added = Array(result.warnings.dropFirst(RestoreResult(plan: plan, isDryRun: false).warnings.count))
        plan = try makePlan(
          deployment: deployment, options: prepared.options, archive: prepared.archive, archivePath: plan.archivePath)
        result = RestoreResult(plan: plan, isDryRun: false)
        result.warnings += added
      }
      // Undo first.
      result.undo = try takeUndo(
        deployment: deployment, plan: plan, options: options, logger: logger, progress: progress)
    }

    let writtenInPlace = try execute(
      plan, staging: prepared.staging.path, deployment: deployment, logger: logger, progress: progress)
    result.problems = try check(plan, writtenInPlace: writtenInPlace, undo: result.undo)
    logger.notice(
      "restore done",
      metadata: [
        "archive.id": "\(plan.archiveID)", "restore.mode": "\(plan.mode.rawValue)", "files": "\(plan.files.count)",
        "undo": "\(result.undo ?? "-")", "problems": "\(result.problems.count)",
      ])
    return result
  }

  /// The cross-host live-owner guard: refuses when another deployment's heartbeat shows a user
  /// this restore places with the same auth key (or one that cannot be compared) in use within
  /// the window. A live copy under a different key is a warning only (not AUTH_KEY_DUPLICATED).
  /// A `--target` is guarded only where a bot could use it (`TargetScope`); a scratch directory
  /// outside every deployment is not.
  /// - Returns: warnings (a forced restore, a remote that could not be read, a different key).
  /// - Throws: `JobError.refused` naming the user, the host and how to hand the session over.
  static func guardFleet(_ deployment: Deployment, plan: RestorePlan, options: RestoreOptions, logger: Logger) throws
    -> [String]
  {
    guard !plan.users.isEmpty, !deployment.remotes.isEmpty else { return [] }
    var place = ""
    if plan.mode == .target {
      guard let use = TargetScope.botUse(of: plan.targetRoot, deployment: deployment) else { return [] }
      place = " (--target \(plan.targetRoot) lies in \(use), where a bot could use it)"
    }
    let (live, unreadable) = FleetJob.liveElsewhere(deployment, userIDs: Set(plan.users))
    var warnings = unreadable.map { "the fleet could not be read (\($0)); the cross-host guard could not look there" }
    let formatter = ISO8601DateFormatter()
    func describe(_ other: LiveElsewhere) -> String {
      "user \(other.userID) is in use on \(other.deploymentName) (host \(other.host), session last written \(formatter.string(from: other.sessionWrittenAt)), heartbeat \(formatter.string(from: other.heartbeatAt)))"
    }
    var refused: [LiveElsewhere] = []
    for other in live {
      if let placed = plan.authKeyFingerprints[other.userID], let theirs = other.authKeyFingerprint, placed != theirs {
        warnings.append("\(describe(other)) under another key (\(theirs), this archive holds \(placed))")
      } else {
        refused.append(other)
      }
    }
    guard let first = refused.first else { return warnings }
    let remote = options.fromRemote ?? deployment.remotes[0].name
    let described =
      refused.prefix(5).map(describe).joined(separator: "; ")
      + (refused.count > 5 ? "; and \(refused.count - 5) more" : "")
    guard options.isForced else {
      throw JobError.refused(
        "refusing to restore\(place): \(described); the same key on two hosts gets it revoked by Telegram (AUTH_KEY_DUPLICATED). Hand it over first: on \(first.deploymentName) run tgsess handover --user \(first.userID), then here tgsess restore --from-remote \(remote) --user \(first.userID) --from-deployment \(first.deploymentName); --force restores anyway"
      )
    }
    logger.warning("restore forced past the fleet guard", metadata: ["evidence": "\(described)"])
    return warnings + ["--force: restoring although \(described)"]
  }

  /// A plan and the verified staging copy it will be carried out from.
  struct Prepared {
    let plan: RestorePlan
    /// The verified archive and the options the plan was made from (to plan again).
    let archive: VerifiedArchive
    let options: RestoreOptions
    let staging: StagingArea
    /// A target directory this run created (removed again unless the restore fills it).
    let createdTarget: String?

    func discard(isTargetFilled: Bool) {
      staging.remove()
      if let createdTarget, !isTargetFilled { FileSystem.removeEmptyDirectory(createdTarget) }
    }
  }

  /// Chooses the archive, verifies it in full in staging on the target's filesystem, and plans.
  /// - Throws: `StoreError` or `JobError` naming the archive; what this run created is removed.
  static func prepare(
    _ deployment: Deployment, options: RestoreOptions, catalog: ArchiveCatalog, progress: JobProgressHandler? = nil
  ) throws -> Prepared {
    var options = options
    let selector = ArchiveSelector(options.selector, at: options.at, userID: options.userID)
    // Only archives signed by this deployment's key are candidates (unsigned ones too with
    // --allow-unsigned); the one chosen is verified against its signature in full below.
    let authenticator = try SigningAuthenticator.forDeployment(
      deployment, verifyKeyPath: options.verifyKeyPath, allowsUnsigned: options.allowsUnsigned)
    guard let record = try ArchiveSelection.choose(selector, in: catalog.repository, authenticator: authenticator)
    else {
      throw nothingToChoose(selector, in: catalog.repository, authenticator: authenticator)
    }
    try catalog.fetch([record])
    // A per-user archive holds one user's file and rows: restoring it live is that user's
    // restore (row included), which is also what the printed undo command relies on.
    if record.kind == .user, options.target == nil, options.userID == nil, let owner = record.userID {
      options.userID = owner
    }
    let archivePath = catalog.path(of: record)
    let identities: [AgeIdentity]
    do {
      identities = record.isEncrypted ? try KeyStore.loadIdentities(deployment, path: options.identityPath) : []
    } catch let error as StoreError {
      // The key file's error names the key; say which archive it was needed for.
      throw JobError.store(context: "restore: cannot decrypt \(archivePath)", underlying: error)
    }

    // Verify before touching: extract into staging on the target's filesystem and check it all.
    let stagingParent = options.target ?? deployment.root
    let createdTarget = options.target != nil && !FileSystem.exists(stagingParent) ? stagingParent : nil
    try FileSystem.makeDirectory(stagingParent)
    var isPrepared = false
    defer { if !isPrepared, let createdTarget { FileSystem.removeEmptyDirectory(createdTarget) } }
    let staging = try StagingArea(parent: stagingParent)
    defer { if !isPrepared { staging.remove() } }
    let verified = try ArchiveVerifier(identities: identities, authenticator: authenticator).verify(
      record, in: catalog.repository, into: staging.path, scope: .everyEntry,
      progress: verifyProgress(progress))
    let plan = try makePlan(deployment: deployment, options: options, archive: verified, archivePath: archivePath)
    isPrepared = true
    return Prepared(plan: plan, archive: verified, options: options, staging: staging, createdTarget: createdTarget)
  }

  /// The verifier's progress as the restore's first phases: "reading archive", "checking entries".
  static func verifyProgress(_ report: JobProgressHandler?) -> (@Sendable (ArchiveVerifier.Progress) -> Void)? {
    guard let report else { return nil }
    return { step in
      switch step {
      case .read(let done, let total): report(JobProgress(phase: "reading archive", done: done, total: total))
      case .checked(let done, let total): report(JobProgress(phase: "checking entries", done: done, total: total))
      }
    }
  }

  /// The undo backup's progress, its phases named "undo: snapshots", "undo: full archive", ...
  static func undoProgress(_ report: JobProgressHandler?) -> (@Sendable (BackupProgress) -> Void)? {
    guard let report else { return nil }
    return { step in
      report(
        JobProgress(
          phase: "undo: \(step.phase.rawValue)", done: step.filesDone, total: step.filesTotal,
          bytesDone: step.bytesDone))
    }
  }

  /// The plan for `options` from the verified `archive`: each entry's destination, and whether it
  /// creates, replaces or leaves a file alone (by SHA-256 of what is there); for one user, their
  /// row (from the archive's rows entry, else from the snapshot's database).
  /// - Throws: `JobError.refused` for a non-empty target or an archive that holds nothing of the
  ///   user; `StoreError` when a live file or the snapshot's database cannot be read.
  static func makePlan(deployment: Deployment, options: RestoreOptions, archive: VerifiedArchive, archivePath: String)
    throws -> RestorePlan
  {
    let mode: RestoreMode
    let targetRoot: String
    if let target = options.target {
      mode = .target
      targetRoot = Deployment.absolute(target, relativeTo: FileSystem.currentDirectory)
      let leftovers = try FileSystem.directoryNames(targetRoot).filter {
        !$0.hasPrefix(".staging-") && $0 != ".tgsess.lock"
      }
      guard leftovers.isEmpty else {
        throw JobError.refused("--target \(targetRoot) is not empty; restore into an empty or new directory")
      }
    } else {
      mode = options.userID == nil ? .whole : .user
      targetRoot = deployment.root
    }
    let written = Deployment(root: targetRoot, config: mode == .target ? Config() : deployment.config)
    var files: [RestorePlan.FileStep] = []
    var users: [Int64] = []
    var fingerprints: [Int64: String] = [:]
    var placed: [(entry: Manifest.Entry, destination: String)] = []
    for entry in archive.manifest.entries {
      let destination: String
      switch entry.role {
      case .database:
        guard options.userID == nil else { continue }
        destination = written.databasePath
      case .session, .sessionBackup:
        guard options.userID == nil || entry.userID == options.userID, let user = entry.userID else { continue }
        let base = written.sessionPath(userID: user)
        destination = entry.role == .session ? base : base + ".backup"
        if entry.role == .session {
          users.append(user)
          if let fingerprint = entry.authKeyFingerprint { fingerprints[user] = fingerprint }
        }
      case .sessionSidecar:
        guard options.userID == nil || entry.userID == options.userID, let user = entry.userID else { continue }
        destination = written.sidecarPath(userID: user)
      case .userRows, .imported:
        continue
      case .verbatim:
        // Decoding refused a verbatim entry of no file tgsess restores.
        guard let verbatim = VerbatimFiles.target(of: entry) else { continue }
        if let userID = options.userID, verbatim.userID != userID { continue }
        destination = verbatim.livePath(in: written)
        if verbatim.file == .session, !verbatim.isCompanion, let user = verbatim.userID { users.append(user) }
      }
      placed.append((entry, destination))
    }
    // What is there, compared with each verified file: each file on its own, on a few threads.
    let compared = try Parallel.map(count: placed.count, workers: Parallel.defaultWorkers) { index in
      let (entry, destination) = placed[index]
      let before = FileSystem.exists(destination) ? try FileSystem.sha256(ofFile: destination) : nil
      var action: FileChange.Action = before == nil ? .create : before == entry.sha256 ? .identical : .replace
      if action == .replace, entry.isSQLite, let staged = archive.extractedPath(of: entry),
        try isSameContent(destination, staged)
      {
        action = .unchanged
      }
      return (before, action)
    }
    for ((entry, destination), (before, action)) in zip(placed, compared) {
      let target = VerbatimFiles.target(of: entry)
      files.append(
        RestorePlan.FileStep(
          change: FileChange(
            path: destination, action: action, sha256Before: before, sha256After: entry.sha256,
            isVerbatim: target == nil ? nil : true),
          entryPath: entry.path, isDatabase: entry.role == .database, isCompanion: target?.isCompanion ?? false))
    }
    completeVerbatimFileSets(&files)
    // A session file restored without a sidecar would sit beside a live sidecar of another
    // session: that sidecar is moved aside (kept, never deleted), so the pair stays one unit.
    var movesAside: [String] = []
    if mode != .target {
      let archivedSidecars = Set(
        archive.manifest.entries.filter {
          $0.role == .sessionSidecar || VerbatimFiles.target(of: $0)?.file == .sidecar
        }.compactMap(\.userID))
      for user in users where !archivedSidecars.contains(user) {
        let sidecar = written.sidecarPath(userID: user)
        if FileSystem.exists(sidecar),
          files.contains(where: {
            $0.change.path == written.sessionPath(userID: user) && $0.change.action != .identical
          })
        {
          movesAside.append(sidecar)
        }
      }
    }
    var userRow: UserSessionsRow?
    if let userID = options.userID {
      // The archive's own rows entry (a per-user archive), else the snapshot's database.
      userRow = archive.userRows[userID]
      let hasRowsEntry = archive.manifest.entries.contains { $0.role == .userRows && $0.userID == userID }
      if userRow == nil, !hasRowsEntry, let database = archive.manifest.entries.first(where: { $0.role == .database }),
        let path = archive.extractedPath(of: database)
      {
        let snapshot = try BotDatabase(path: path, mode: .readOnly)
        defer { snapshot.close() }
        userRow = try snapshot.userSessionsRow(userID: userID)
      }
      // A full snapshot may hold the database but neither a file nor a row of this user.
      if files.isEmpty, userRow == nil {
        throw JobError.refused(
          "archive \(archive.claim.id) holds nothing of user \(userID); pick another (tgsess list --user \(userID))")
      }
    }
    var signingKeyID: String?
    if case .signed(let signed) = archive.authentication { signingKeyID = signed.keyID }
    var plan = RestorePlan(
      archiveID: archive.claim.id, archivePath: archivePath, signingKeyID: signingKeyID, mode: mode,
      targetRoot: targetRoot, userID: options.userID, files: files, userRow: userRow,
      databasePath: deployment.databasePath, users: users, movesAside: movesAside)
    plan.authKeyFingerprints = fingerprints
    return plan
  }

  /// The warning a restore (or drill, or recover) prints for each unsigned archive it used.
  static func unsignedWarning(_ id: String, path: String) -> String {
    "archive \(id) is not signed (\(path)); used because of --allow-unsigned"
  }

  /// Why "latest" found nothing: no archive fits at all, or the ones that fit are not signed by
  /// this deployment's key (counted, with what to do about them).
  static func nothingToChoose(
    _ selector: ArchiveSelector, in repository: ArchiveRepository, authenticator: SigningAuthenticator
  ) -> StoreError {
    let when = selector.at.map { " at or before \(ISO8601DateFormatter().string(from: $0))" } ?? ""
    let what = selector.userID.map { "no archive holds user \($0)" } ?? "no full snapshot"
    let listing = selector.userID.map { "tgsess list --user \($0)" } ?? "tgsess list"
    // The archives that would have fitted but for their signature.
    var fitting: [ArchiveRecord] = []
    if let userID = selector.userID {
      fitting =
        ((try? repository.list(kind: .user, userID: userID)) ?? [])
        + ((try? repository.list(kind: .full, userID: userID)) ?? [])
    } else {
      fitting = (try? repository.list(kind: .full)) ?? []
    }
    fitting = fitting.filter { record in
      record.reason != BackupReason.imported && (selector.at.map { record.createdAt <= $0 } ?? true)
    }
    let standings = authenticator.authenticity(of: fitting, in: repository)
    let unsigned = standings.filter { $0 == .unsigned }.count
    let rejected = standings.filter { if case .rejected = $0 { true } else { false } }.count
    guard unsigned + rejected > 0 else {
      return StoreError.missing(path: repository.backupsDirectory, hint: "\(what)\(when); see \(listing)")
    }
    var skipped: [String] = []
    if unsigned > 0 {
      skipped.append(
        "\(unsigned) unsigned (vouch for this host's own with tgsess keys sign-existing, or pass --allow-unsigned)")
    }
    if rejected > 0 { skipped.append("\(rejected) rejected (never restored; see \(listing))") }
    return StoreError.missing(
      path: repository.backupsDirectory,
      hint:
        "\(what.replacingOccurrences(of: "no ", with: "no signed "))\(when); skipped \(skipped.joined(separator: " and ")), as not signed by this deployment's key"
    )
  }

  /// Whether two SQLite files hold the same schema and rows: the same pages apart from the
  /// header fields each commit stamps (`SQLiteContent.hasSamePages`, a live file unchanged since
  /// its snapshot), else the same `SQLiteContent.digest`. A live file that cannot be read as
  /// SQLite (damaged) differs from any verified one.
  /// - Throws: `StoreError` when the verified copy cannot be read.
  static func isSameContent(_ live: String, _ staged: String) throws -> Bool {
    // (A file it cannot read is left to the digest, which judges it.)
    if (try? SQLiteContent.hasSamePages(live, staged)) == true { return true }
    let liveDigest: String
    do { liveDigest = try SQLiteContent.digest(path: live) } catch is StoreError { return false }
    return try liveDigest == SQLiteContent.digest(path: staged)
  }

  /// Before live data changes: a backup of what is about to be replaced, as an archive (reason
  /// "Before restore"). When the live data is too damaged to archive through SQLite, the files
  /// about to be replaced are archived byte for byte instead (`verbatimUndo`), encrypted and
  /// signed like every other archive; when even that cannot be written, nothing changes.
  /// - Returns: the undo archive's id; nil when nothing is replaced.
  /// - Throws: `JobError` for a held lock, or when no undo archive could be written (the restore
  ///   is refused then; nothing has changed).
  static func takeUndo(
    deployment: Deployment, plan: RestorePlan, options: RestoreOptions, logger: Logger,
    progress: JobProgressHandler? = nil
  ) throws -> String? {
    guard plan.replacesData else { return nil }
    var backup = BackupOptions(
      config: deployment.config,
      overrides: BackupOptions.Overrides(
        userID: plan.userID, reason: BackupReason.beforeRestore, lockWait: options.lockWait))
    backup.includesChangedUsers = false
    let failure: String
    do {
      let result = try BackupJob.run(
        deployment, options: backup, logger: logger,
        progress: undoProgress(progress))
      if let archive = result.archives.first, result.failures.isEmpty { return archive.id }
      // A full snapshot without the users that failed is no undo of their files.
      failure = result.failures.first.map { "user \($0.userID): \($0.reason)" } ?? "no archive was written"
    } catch let error as JobError {
      if case .store(_, .locked) = error { throw error }
      failure = error.localizedDescription
    }
    logger.warning(
      "undo archive through SQLite failed; archiving the replaced files byte for byte",
      metadata: ["error": "\(failure)"])
    return try verbatimUndo(deployment: deployment, plan: plan, failure: failure, logger: logger)
  }

  /// Carries `plan` out from the verified copy in `staging`: a live database through the online
  /// backup API (one transaction), every other file installed by rename (`LiveFiles.install`:
  /// batched fsyncs, wholly old or wholly new after a crash), identical files skipped, then the
  /// user's row in one transaction.
  /// - Returns: the files written in place through the online backup API.
  /// - Throws: `StoreError` naming the file that failed.
  static func execute(
    _ plan: RestorePlan, staging: String, deployment: Deployment, logger: Logger, progress: JobProgressHandler? = nil
  ) throws -> Set<String> {
    var installs: [LiveFiles.Installation] = []
    var companions: [LiveFiles.Installation] = []
    var writtenInPlace: Set<String> = []
    for sidecar in plan.movesAside {
      if let aside = try LiveFiles.moveAside(sidecar, label: "before-restore") {
        logger.warning("moved a sidecar aside", metadata: ["file.path": "\(aside)"])
      }
    }
    for step in plan.files where step.change.writes {
      let path = step.change.path
      let source = staging + "/" + step.entryPath
      try FileSystem.makeDirectory(FileSystem.parentDirectory(of: path))
      if step.isDatabase, plan.mode != .target, FileSystem.exists(path) {
        do {
          let live = try BotDatabase(path: path, mode: .readWrite, busyTimeoutMS: deployment.busyTimeoutMS)
          defer { live.close() }
          try live.replaceContents(withSnapshotAt: source)
          writtenInPlace.insert(path)
          continue
        } catch let error as StoreError {
          // A live file too damaged to open is replaced whole instead (the undo copy has it).
          logger.warning(
            "online restore into the live database failed; replacing the file",
            metadata: ["error": "\(error.errorDescription ?? "")"])
        }
      }
      let installation = LiveFiles.Installation(source: source, destination: path)
      if step.isCompanion { companions.append(installation) } else { installs.append(installation) }
    }
    let installed = PhaseCounter(progress, phase: "installing", total: installs.count + companions.count)
    try LiveFiles.install(installs) { _ in
      try CrashPoint.hit("restore.after-file")
      installed.step()
    }
    // A verbatim file's -journal and -wal go in after it: installing the file cleared the live ones.
    try LiveFiles.install(companions) { _ in
      try CrashPoint.hit("restore.after-file")
      installed.step()
    }
    if let userRow = plan.userRow {
      let live = try BotDatabase(path: plan.databasePath, mode: .readWrite, busyTimeoutMS: deployment.busyTimeoutMS)
      defer { live.close() }
      try live.upsertUserRow(userRow)
    }
    return writtenInPlace
  }

  /// Validates what was restored: every session file, and the database's integrity. A file
  /// renamed from staging (a session file or the database) is the very file (the same inode)
  /// that passed integrity_check (and, for a session, inspection) there under the lock, fsynced
  /// before the rename, so only its presence is checked; a session file left alone is
  /// inspected; a database written in place through the online backup API gets
  /// integrity_check, one left alone quick_check.
  /// - Returns: one line per problem.
  /// - Throws: `StoreError` naming the file when the check could not read it (an I/O error: the
  ///   file is in place but not validated, which is not a finding about it), with what was
  ///   restored, the undo, and the next step.
  static func check(_ plan: RestorePlan, writtenInPlace: Set<String>, undo: String?) throws -> [String] {
    // Verbatim files are put back as the damaged files they were: nothing to validate.
    let files = plan.files.filter { !$0.isVerbatim }
    var problems = [[String]](repeating: [], count: files.count)
    do {
      problems = try Parallel.map(count: files.count, workers: Parallel.defaultWorkers) { index in
        try problemsAfterRestore(files[index], isWrittenInPlace: writtenInPlace.contains(files[index].change.path))
      }
    } catch let error as StoreError where error.isIOFailure {
      throw StoreError.invalid(
        path: plan.archivePath,
        reason:
          "restored \(plan.files.count) file(s) from \(plan.archiveID)\(undo.map { " (undo: \($0))" } ?? ""), but the check after the restore could not read what it restored: \(error.errorDescription ?? "\(error)")",
        hint: "the restored files are in place, not validated; once the disk is sound, run: tgsess check")
    } catch {
      return ["the check after the restore failed: \(error)"]
    }
    return problems.flatMap { $0 }
  }

  /// - Throws: an I/O failure (`StoreError.isIOFailure`) that kept the file from being checked.
  private static func problemsAfterRestore(_ file: RestorePlan.FileStep, isWrittenInPlace: Bool) throws -> [String] {
    let path = file.change.path
    do {
      if file.change.writes, !isWrittenInPlace {
        return FileSystem.exists(path) ? [] : ["\(path): missing after the restore"]
      }
      if file.isDatabase {
        let database = try BotDatabase(path: path, mode: .readOnly)
        defer { database.close() }
        return try database.integrityProblems(deep: isWrittenInPlace).map { "\(path): \($0)" }
      } else if path.hasSuffix(".session") {
        _ = try SessionFileInspector.inspect(path: path)
      }
      return []
    } catch let error as StoreError {
      if error.isIOFailure { throw error }
      return [error.errorDescription ?? "\(error)"]
    } catch {
      return ["\(path): \(error)"]
    }
  }
}

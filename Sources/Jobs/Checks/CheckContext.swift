import Foundation
import Store

/// Everything the checks read, gathered once before any of them runs, so that every check judges
/// the same moment and none of them touches the disk for what another already read. Gathering is
/// read-only: the database and the session files are opened read-only through SQLite. A read that
/// fails is kept as its error, so a check can say what could not be read instead of guessing.
public struct CheckContext: Sendable {
  public var deployment: Deployment
  public var options: CheckOptions
  /// The Fernet keys: nil when none is configured.
  public var fernet: Result<Fernet?, StoreError>
  /// Where the Fernet keys come from.
  public var fernetSource: FernetKeySource
  /// The age recipients archives are encrypted to.
  public var recipients: Result<[AgeRecipient], StoreError>
  /// The age identity: nil when its file is not on this host (kept off the host on purpose).
  public var identities: Result<[AgeIdentity], StoreError>?
  public var database: DatabaseFacts
  /// The users with a `user_<id>.session` file, sorted.
  public var sessionFiles: Result<[Int64], StoreError>
  /// What was read from each of those files.
  public var inspections: [Int64: SessionInspection]
  /// How many of the session files (and `.session.backup` copies) were judged by an earlier
  /// run's inspection, unchanged since (`SessionVerdicts`), rather than opened again.
  public var reusedInspections = 0
  /// The permission bits of the sessions directory, when it exists.
  public var sessionsDirectoryMode: mode_t?
  /// Every archive, newest first. The records of full snapshots are read (the users they hold);
  /// a per-user archive's is not, since its name, place and signature say all check needs.
  public var archives: Result<[ArchiveRecord], StoreError> { didSet { signedCache = nil } }
  /// The key ring archives are checked with (`keys/signing.pub`).
  public var signing: Result<SigningAuthenticator, StoreError>
  /// The archive signing key (`keys/signing.key`), which every backup needs.
  public var signingKey: Result<SigningKey, StoreError>
  /// How each of `archives` stands (same order), from its signature file and its place; empty
  /// when the archives or the ring could not be read.
  public var standings: [ArchiveAuthenticity] { didSet { signedCache = nil } }
  public var freeBytes: Int64?
  /// When the newest successful drill ran.
  public var newestDrill: Date?
  /// The last push's state of each configured remote (nil: never pushed), in config order.
  public var remotes: [(remote: RcloneRemote, state: RemoteState?)]
  /// What `tgsess watch` last reported (its textfile and status file).
  public var watch: WatchStatus
  /// Session files whose install with their JSON sidecar a crash interrupted.
  public var interruptedPairs: [String] = []
  /// The raw copy directories a restore of an earlier version left (`backups/before-restore/`).
  public var beforeRestoreCopies: Result<[String], StoreError> = .success([])
  /// The plaintext database copies `init`/`migrate` of an earlier version left (`backups/pre-migrate/`).
  public var preMigrateCopies: Result<[String], StoreError> = .success([])
  /// `signedArchives`, worked out once for the units that each ask for it.
  var signedCache: [ArchiveRecord]?

  /// What check read from the bot database, in the order it reads it; reading stops at the first
  /// failure, which is kept.
  public struct DatabaseFacts: Sendable {
    /// quick_check's (or integrity_check's) complaints; nil when it did not run.
    public var integrityProblems: [String]?
    public var schema: BotSchema.Status?
    /// The user rows; nil when they could not be read.
    public var rows: [BotDatabase.UserForCheck]?
    /// Why reading stopped.
    public var failure: StoreError?
    /// What a consistent copy in one step would hold the bot's writes for (measured when the
    /// database read without a failure).
    public var stall: SQLiteStallEstimate?

    public init(
      integrityProblems: [String]? = nil, schema: BotSchema.Status? = nil, rows: [BotDatabase.UserForCheck]? = nil,
      failure: StoreError? = nil
    ) {
      self.integrityProblems = integrityProblems
      self.schema = schema
      self.rows = rows
      self.failure = failure
    }

    /// Whether quick_check ran and passed: a damaged database is never written to.
    public var isSound: Bool { integrityProblems?.isEmpty == true }
  }

  /// What check read from one user's session file.
  public struct SessionInspection: Sendable {
    public var file: Result<SessionFileFacts, StoreError>
    public var mode: mode_t?
    /// The seed's `.session.backup`, when there is one.
    public var backupFile: Result<SessionFileFacts, StoreError>?
    /// Whether `.session.backup` was modified after the session file (nil when either cannot be stat'ed).
    public var isBackupFileNewer: Bool?
    /// The JSON sidecar (`user_<id>.json`), when there is one, and its mode.
    public var sidecar: Result<SessionSidecar, StoreError>?
    public var sidecarMode: mode_t?

    public init(
      file: Result<SessionFileFacts, StoreError>, mode: mode_t? = nil,
      backupFile: Result<SessionFileFacts, StoreError>? = nil, isBackupFileNewer: Bool? = nil
    ) {
      self.file = file
      self.mode = mode
      self.backupFile = backupFile
      self.isBackupFileNewer = isBackupFileNewer
    }
  }

  /// Reads the deployment: keys, the database, every session file, the archive list, free space,
  /// drills and remote states.
  /// - Parameter progress: where to report each phase's progress (a TTY); nil reports nothing.
  public static func gather(_ deployment: Deployment, options: CheckOptions, progress: JobProgressHandler? = nil)
    -> CheckContext
  {
    progress?(JobProgress(phase: "database", done: 0, total: 1))
    let database = readDatabase(deployment, isDeep: options.isDeep)
    let sessionFiles = Result { try deployment.sessionFileUserIDs() }.mapError {
      StoreError.wrapping($0, path: deployment.sessionsDirectory)
    }
    let repository = ArchiveRepository(backupsDirectory: deployment.backupsDirectory)
    // The repository reads backups/full and backups/users; listing backups/ itself first is what
    // tells "nothing backed up yet" from "backups/ cannot be read" (a dangling symlink, a file).
    let listings = Result {
      _ = try FileSystem.directoryNames(deployment.backupsDirectory)
      return try repository.listings()
    }.mapError { StoreError.wrapping($0, path: deployment.backupsDirectory) }
    let archives = listings.map { listings in
      listings.map { repository.record(of: $0, readsRecord: $0.kind == .full) }
        .sorted { ($0.createdAt, $0.id) > ($1.createdAt, $1.id) }
    }
    let signing = Result { try SigningAuthenticator.forDeployment(deployment) }.mapError {
      StoreError.wrapping($0, path: deployment.signingPublicKeysPath)
    }
    let signingKey = Result { try KeyStore.loadSigningKey(deployment) }.mapError {
      StoreError.wrapping($0, path: deployment.signingKeyPath)
    }
    var standings: [ArchiveAuthenticity] = []
    if case .success(let records) = archives, case .success(let authenticator) = signing {
      // Each signature is verified once; its verdict is then kept in backups/.signatures while
      // the signature file is unchanged (see `SignatureVerdicts`).
      let verdicts = (try? signingKey.get()).flatMap {
        try? SignatureVerdicts(
          backupsDirectory: deployment.backupsDirectory, ring: authenticator.ring, signingKey: $0)
      }
      let judged = PhaseCounter(progress, phase: "signatures", total: records.count)
      standings = authenticator.authenticity(of: records, in: repository, verdicts: verdicts, progress: judged.step)
      // A cache that cannot be written costs the next run time, nothing else.
      try? verdicts?.save(dropsUnused: true)
    }
    // A session file is opened through SQLite only when it changed since a run inspected it
    // (`SessionVerdicts`); --deep reads every one.
    var sessionVerdicts =
      options.isDeep
      ? nil
      : SessionVerdicts.forDeployment(
        deployment, signingKey: try? signingKey.get(), toolVersion: ToolInfo.version,
        racyInterval: options.sessionVerdictRacyInterval, now: options.now)
    let inspectedUsers = (try? sessionFiles.get()) ?? []
    var inspected = inspectFiles(
      deployment, users: inspectedUsers, isDeep: options.isDeep, verdicts: sessionVerdicts, progress: progress)
    let reusedInspections = sessionVerdicts?.reusedCount ?? 0
    // Every session file was looked at (the directory listed): the others' entries are gone.
    // A cache that cannot be written costs the next run time, nothing else. Saved and let go
    // before the inspections are keyed by user, so its entries are not held beside them.
    if let verdicts = sessionVerdicts, case .success = sessionFiles { try? verdicts.save(dropsUnused: true) }
    sessionVerdicts = nil
    let inspections = Dictionary(uniqueKeysWithValues: zip(inspectedUsers, inspected))
    inspected = []
    var context = CheckContext(
      deployment: deployment, options: options,
      fernet: Result { try KeyStore.loadFernet(deployment) }.mapError {
        StoreError.wrapping($0, path: deployment.fernetKeysPath)
      },
      fernetSource: FernetKeySource.resolve(deployment),
      recipients: Result { try KeyStore.loadRecipients(deployment) }.mapError {
        StoreError.wrapping($0, path: deployment.ageRecipientsPath)
      },
      identities: FileSystem.exists(deployment.ageIdentityPath)
        ? Result { try KeyStore.loadIdentities(deployment) }.mapError {
          StoreError.wrapping($0, path: deployment.ageIdentityPath)
        } : nil,
      database: database, sessionFiles: sessionFiles,
      inspections: inspections,
      sessionsDirectoryMode: try? FileSystem.mode(of: deployment.sessionsDirectory),
      archives: archives, signing: signing,
      signingKey: signingKey, standings: standings, freeBytes: FileSystem.freeBytes(at: deployment.backupsDirectory),
      newestDrill: DrillHistory.newestSuccess(deployment),
      remotes: deployment.remotes.map { ($0, RemoteState.load(deployment, remote: $0.name)) },
      watch: WatchStatus.read(deployment, now: options.now))
    // A directory that cannot be listed is the sessions check's finding already.
    context.interruptedPairs = (try? LiveFiles.interruptedPairs(in: deployment.sessionsDirectory)) ?? []
    context.beforeRestoreCopies = Result { try PlaintextSafetyCopies.findBeforeRestoreCopies(deployment) }.mapError {
      StoreError.wrapping($0, path: PlaintextSafetyCopies.beforeRestoreDirectory(deployment))
    }
    context.preMigrateCopies = Result { try PlaintextSafetyCopies.find(deployment).map(\.path) }.mapError {
      StoreError.wrapping($0, path: PlaintextSafetyCopies.directory(deployment))
    }
    context.reusedInspections = reusedInspections
    context.signedCache = context.signedArchives
    return context
  }

  // MARK: - What the checks derive from it

  /// The archives signed by this deployment's key, newest first, each as its signature vouches
  /// for it: the only archives that count (as a backup of a user, as the newest full snapshot).
  public var signedArchives: [ArchiveRecord] {
    if let signedCache { return signedCache }
    guard case .success(let records) = archives, standings.count == records.count else { return [] }
    // Into an array of the exact size, sorted only when a signature's time reorders it (records
    // are newest first already): at fleet scale a doubling buffer and a sorted copy were the
    // peak of check's heap.
    var signed: [ArchiveRecord] = []
    signed.reserveCapacity(standings.reduce(0) { if case .signed = $1 { $0 + 1 } else { $0 } })
    for (record, standing) in zip(records, standings) {
      if case .signed(let vouching) = standing { signed.append(record.vouched(by: vouching.statement)) }
    }
    let isNewerFirst = { (a: ArchiveRecord, b: ArchiveRecord) in (a.createdAt, a.id) > (b.createdAt, b.id) }
    if zip(signed, signed.dropFirst()).contains(where: { isNewerFirst($1, $0) }) { signed.sort(by: isNewerFirst) }
    return signed
  }

  /// The archives without a signature file.
  public var unsignedArchives: [ArchiveRecord] {
    guard case .success(let records) = archives, standings.count == records.count else { return [] }
    return zip(records, standings).filter { $0.1 == .unsigned }.map(\.0)
  }

  /// The archives that fail authentication, with why.
  public var rejectedArchives: [(record: ArchiveRecord, error: StoreError)] {
    guard case .success(let records) = archives, standings.count == records.count else { return [] }
    return zip(records, standings).compactMap { record, standing in
      if case .rejected(let error) = standing { return (record, error) }
      return nil
    }
  }

  /// The user rows (none when they could not be read).
  public var rows: [BotDatabase.UserForCheck] { database.rows ?? [] }

  /// The users with a session file (none when the directory could not be listed).
  public var fileUsers: Set<Int64> { Set((try? sessionFiles.get()) ?? []) }

  /// Every user with a row or a session file: the users whose results check records.
  public var users: [Int64] { Set(rows.map(\.userID)).union(fileUsers).sorted() }

  /// The users check judges: all of `users` but those who logged out and have no session file
  /// (they ended their session; nothing of theirs is expected).
  public var liveUsers: [Int64] {
    let files = fileUsers
    let loggedOut = Set(rows.filter { $0.status.hasEndedHere }.map(\.userID))
    return users.filter { files.contains($0) || !loggedOut.contains($0) }
  }

  /// Each user's row.
  public var rowsByUser: [Int64: BotDatabase.UserForCheck] {
    Dictionary(rows.map { ($0.userID, $0) }, uniquingKeysWith: { first, _ in first })
  }

  /// Whether the per-user results may be written: asked for, and the database passed quick_check
  /// and has the current schema (a damaged or foreign database is never written to).
  public var canRecord: Bool {
    options.writesResults && database.isSound && database.schema?.isCurrent == true
  }

  // MARK: - Reading

  /// How much of the database the stall estimate copies (into memory) per sample pass.
  static let stallSampleBytes: Int64 = 4 << 20

  static func readDatabase(_ deployment: Deployment, isDeep: Bool) -> DatabaseFacts {
    var facts = DatabaseFacts()
    do {
      let database = try BotDatabase(
        path: deployment.databasePath, mode: .readOnly, busyTimeoutMS: deployment.busyTimeoutMS)
      defer { database.close() }
      facts.integrityProblems = try database.integrityProblems(deep: isDeep)
      facts.schema = try database.schemaStatus()
      facts.rows = try database.usersForCheck()
    } catch {
      facts.failure = StoreError.wrapping(error, path: deployment.databasePath)
      return facts
    }
    do {
      // The sample is copied into memory: 4 MiB in 1 MiB steps measures the rate as well as the
      // default 32 MiB did, which cost every check ~55 MiB of heap at 10,000 users and more.
      facts.stall = try SQLiteSnapshot.estimateStall(
        source: deployment.databasePath, sampleBytes: stallSampleBytes,
        busyTimeoutMS: Int32(clamping: deployment.busyTimeoutMS))
    } catch {
      // The reads above just succeeded; a failed sample (the bot held its lock past the busy
      // timeout) leaves the estimate out rather than turning into a finding of its own.
      facts.stall = nil
    }
    return facts
  }

  /// Inspects every user's session file (and `.session.backup`) on a few threads; the
  /// inspections are in the order of `users`.
  /// - Parameter verdicts: earlier inspections to take while a file is unchanged (never with `isDeep`).
  static func inspectFiles(
    _ deployment: Deployment, users: [Int64], isDeep: Bool, verdicts: SessionVerdicts? = nil,
    progress: JobProgressHandler? = nil
  ) -> [SessionInspection] {
    let inspected = PhaseCounter(progress, phase: "session files", total: users.count)
    // Every failure is kept in its user's Result, so `inspect` throws nothing and neither does
    // the map; the fallback only keeps a user from ever going without an inspection.
    let results: [SessionInspection]
    do {
      results = try Parallel.map(count: users.count, workers: Parallel.defaultWorkers) { index in
        defer { inspected.step() }
        return inspect(deployment.sessionPath(userID: users[index]), isDeep: isDeep, verdicts: verdicts)
      }
    } catch {
      results = users.map { user in
        let path = deployment.sessionPath(userID: user)
        return SessionInspection(file: .failure(StoreError.unreadableSession(error, path: path)))
      }
    }
    return results
  }

  /// What check reads from one session file and its `.session.backup`. The modes and times only
  /// feed the permission and "newer backup" warnings: a file that cannot be stat'ed gets neither.
  /// - Parameter verdicts: earlier inspections to take while a file is unchanged (never with `isDeep`).
  static func inspect(_ path: String, isDeep: Bool, verdicts: SessionVerdicts? = nil) -> SessionInspection {
    let backupPath = path + ".backup"
    let hasBackup = FileSystem.exists(backupPath)
    var isBackupNewer: Bool?
    if hasBackup, let backupAge = try? FileSystem.age(of: backupPath), let fileAge = try? FileSystem.age(of: path) {
      isBackupNewer = backupAge < fileAge
    }
    let sidecarPath = String(path.dropLast(".session".count)) + SessionSidecar.suffix
    func facts(_ path: String, verifiesPages: Bool) -> Result<SessionFileFacts, StoreError> {
      Result {
        if let verdicts { return try verdicts.inspect(path: path, verifiesPages: verifiesPages) }
        return SessionFileFacts(try SessionFileInspector.inspect(path: path, verifiesPages: verifiesPages))
      }.mapError { StoreError.unreadableSession($0, path: path) }
    }
    var inspection = SessionInspection(
      file: facts(path, verifiesPages: isDeep),
      mode: try? FileSystem.mode(of: path),
      backupFile: hasBackup ? facts(backupPath, verifiesPages: true) : nil,
      isBackupFileNewer: isBackupNewer)
    if FileSystem.exists(sidecarPath) {
      inspection.sidecar = Result { try SessionSidecar.read(path: sidecarPath) }.mapError {
        StoreError.wrapping($0, path: sidecarPath)
      }
      inspection.sidecarMode = try? FileSystem.mode(of: sidecarPath)
    }
    return inspection
  }
}

extension StoreError {
  /// `error` as a `StoreError`: itself when it is one (Store's readers throw nothing else), else
  /// an error naming `path` with the error's own words.
  static func wrapping(_ error: any Error, path: String) -> StoreError {
    (error as? StoreError) ?? .invalid(path: path, reason: "\(error)", hint: "check it, then run tgsess check again")
  }

  /// `error` from reading a session file as a `StoreError`: itself, or the file is unreadable.
  static func unreadableSession(_ error: any Error, path: String) -> StoreError {
    (error as? StoreError) ?? .session(object: path, reason: .unreadable("\(error)"))
  }
}

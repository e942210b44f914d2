import Foundation
import Logging
import Store

/// Options of `tgsess backup`.
public struct BackupOptions: Sendable {
  /// Back up only this user (a per-user backup); nil for a full snapshot plus scheduled per-user
  /// backups of the users whose session changed.
  public var userID: Int64?
  /// Why the backup is taken ("Scheduled", "Before login", "Manual", …).
  public var reason: String
  /// Encrypt with age (the default); false only on an explicit `--no-encrypt`.
  public var isEncrypted: Bool
  /// Seconds to wait for the deployment lock.
  public var lockWait: TimeInterval
  public var zstdLevel: Int
  /// Also write per-user backups of changed users after a full snapshot.
  public var includesChangedUsers: Bool
  /// Copy the new archives to the configured remotes once they are published and proven.
  public var pushesOffsite: Bool
  /// Session files up to this size are snapshotted into memory; larger ones into a staging file.
  public var inMemorySnapshotLimit: Int64 = 32 << 20
  /// Threads that snapshot and inspect session files (and the database) at once.
  public var snapshotWorkers = Parallel.defaultWorkers
  /// The longest a snapshot may hold a rollback-journal file's read lock at once, in
  /// milliseconds: the bot's writes wait about this long at most (`[backup] max_writer_wait_ms`).
  public var maxWriterWaitMS = BackupOptions.defaultMaxWriterWaitMS

  /// The writers' wait when neither the caller nor `[backup] max_writer_wait_ms` sets one.
  public static let defaultMaxWriterWaitMS = 50

  /// Also re-archive (reason "Re-encrypted") every user whose newest per-user archive is not
  /// encrypted to exactly the current recipients, after an age-recipient rotation: `backup
  /// --rearchive`. Without it, an unchanged user keeps archives only the retired key opens.
  public var rearchives = false

  /// The zstd level when neither the caller nor `[backup] zstd_level` sets one.
  public static let defaultZstdLevel = 3
  /// Seconds to wait for the lock when neither the caller nor `[backup] lock_wait` sets it.
  public static let defaultLockWait: TimeInterval = 0

  public init(
    userID: Int64? = nil, reason: String = BackupReason.scheduled, isEncrypted: Bool = true,
    lockWait: TimeInterval = BackupOptions.defaultLockWait, zstdLevel: Int = BackupOptions.defaultZstdLevel,
    includesChangedUsers: Bool = true, pushesOffsite: Bool = true
  ) {
    self.userID = userID
    self.reason = reason
    self.isEncrypted = isEncrypted
    self.lockWait = lockWait
    self.zstdLevel = zstdLevel
    self.includesChangedUsers = includesChangedUsers
    self.pushesOffsite = pushesOffsite
  }

  /// What a caller (a command line, the bot) sets on top of the configuration. A nil field takes
  /// the `[backup]` value, then the default.
  public struct Overrides: Sendable, Equatable {
    public var userID: Int64?
    /// Nil: "Scheduled" for a full backup, "Manual" for one user.
    public var reason: String?
    /// `--no-encrypt` sets false; nil follows `[backup] encrypt` (default true).
    public var isEncrypted: Bool?
    public var lockWait: TimeInterval?
    public var zstdLevel: Int?
    /// `--rearchive`.
    public var rearchives: Bool

    public init(
      userID: Int64? = nil, reason: String? = nil, isEncrypted: Bool? = nil, lockWait: TimeInterval? = nil,
      zstdLevel: Int? = nil, rearchives: Bool = false
    ) {
      self.rearchives = rearchives
      self.userID = userID
      self.reason = reason
      self.isEncrypted = isEncrypted
      self.lockWait = lockWait
      self.zstdLevel = zstdLevel
    }
  }

  /// The options a caller gets from the deployment's configuration (`[backup]`) and its own
  /// overrides: an override wins, then the config's value, then the default. The CLI and the bot
  /// runner both build their options here, so they cannot drift apart.
  public init(config: Config, overrides: Overrides = Overrides()) {
    let section = config.backup
    self.init(
      userID: overrides.userID,
      reason: overrides.reason ?? (overrides.userID == nil ? BackupReason.scheduled : BackupReason.manual),
      isEncrypted: overrides.isEncrypted ?? section?.encrypt ?? true,
      lockWait: overrides.lockWait ?? section?.lockWait.map(TimeInterval.init) ?? Self.defaultLockWait,
      zstdLevel: overrides.zstdLevel ?? section?.zstdLevel ?? Self.defaultZstdLevel)
    maxWriterWaitMS = section?.maxWriterWaitMS ?? Self.defaultMaxWriterWaitMS
    rearchives = overrides.rearchives
  }
}

/// The reasons the seed's bot records, plus tgsess's own.
public enum BackupReason {
  public static let scheduled = "Scheduled"
  public static let beforeLogin = "Before login"
  public static let before2FA = "Before 2FA"
  public static let postRecovery = "Post successful recovery"
  public static let manual = "Manual"
  public static let beforeLogout = "Before logout"
  public static let beforeRestore = "Before restore"
  /// The final per-user backup `handover` takes before the session leaves this host.
  public static let beforeHandover = "Before hand-over"
  /// The safety copy `migrate` takes before it changes the database.
  public static let beforeMigrate = "Before migrate"
  public static let imported = "Imported"
  /// A per-user archive `backup --rearchive` wrote because the user's newest one was encrypted to
  /// other recipients than the current ones.
  public static let reencrypted = "Re-encrypted"
  public static let known = [
    scheduled, beforeLogin, before2FA, postRecovery, manual, beforeLogout, beforeRestore, beforeMigrate, imported,
    reencrypted,
    beforeHandover,
  ]

  /// Checks a reason: the known ones, or any other short printable text.
  /// - Throws: `JobError.usage`.
  public static func validate(_ reason: String) throws {
    guard !reason.isEmpty, reason.count <= 64, reason.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0 != "\u{7f}" })
    else {
      throw JobError.usage(
        "--reason must be 1-64 printable characters, e.g. \(known.map { "\"\($0)\"" }.joined(separator: ", "))")
    }
  }
}

/// One archive a backup wrote.
public struct ArchiveSummary: Codable, Sendable, Equatable {
  public var id: String
  public var path: String
  public var kind: Manifest.Kind
  public var userID: Int64?
  public var reason: String
  public var byteCount: Int64
  public var entryCount: Int
  public var verification: ArchiveRecord.Verification

  init(_ record: ArchiveRecord, path: String) {
    id = record.id
    self.path = path
    kind = record.kind
    userID = record.userID
    reason = record.reason
    byteCount = record.byteCount
    entryCount = record.entryCount
    verification = record.verification
  }
}

/// A user a job could not handle, and why (never a secret).
public struct UserFailure: Codable, Sendable, Equatable {
  public var userID: Int64
  public var reason: String
}

/// What `tgsess backup` did.
public struct BackupResult: Codable, Sendable, Equatable {
  public var archives: [ArchiveSummary]
  public var users: Int
  public var entries: Int
  public var bytesIn: Int64
  public var bytesOut: Int64
  public var durationMS: Int
  /// Users whose session was unchanged since their newest per-user backup.
  public var unchangedUsers: Int
  /// Users re-archived under the current recipients (`--rearchive`), each a "Re-encrypted" archive.
  public var reencryptedUsers = 0
  /// Session snapshots whose bytes an earlier run had inspected, so their findings were reused
  /// (the rest were inspected).
  public var inspectionsReused = 0
  public var failures: [UserFailure]
  /// Offsite pushes after the local backup (a failed remote makes the run partial; the local
  /// backup still counts).
  public var offsite: [RemotePush] = []
  /// Some users failed; the others were backed up.
  public var isPartial: Bool { !failures.isEmpty || offsite.contains { !$0.ok } }
}

/// Progress of a running backup, for a TTY.
public struct BackupProgress: Sendable {
  /// The steps of a full backup, in order.
  public enum Phase: String, Sendable {
    /// Snapshotting and inspecting session files (files are users).
    case snapshots = "snapshots"
    /// Writing and proving the full archive (files are archive entries).
    case fullArchive = "full archive"
    /// Writing and proving per-user archives (files are users whose session changed).
    case userArchives = "per-user archives"
  }

  public var phase: Phase
  public var filesDone: Int
  public var filesTotal: Int
  public var bytesDone: Int64

  public init(phase: Phase, filesDone: Int, filesTotal: Int, bytesDone: Int64) {
    self.phase = phase
    self.filesDone = filesDone
    self.filesTotal = filesTotal
    self.bytesDone = bytesDone
  }
}

/// Takes consistent, encrypted, self-verifying backups.
public enum BackupJob {
  /// Runs a backup under the deployment lock.
  /// - Full (no `userID`): snapshots the database and every session file (and `.session.backup`)
  ///   through SQLite, writes one archive, proves it, then writes a per-user backup ("Scheduled")
  ///   for each user whose session identity changed since their newest per-user backup.
  /// - Per-user: one user's session file(s) and database rows, plus a `session_backups` row.
  /// A user that fails is reported and never stops the others.
  /// - Throws: `JobError` when the backup as a whole cannot be made (lock held, no recipient,
  ///   unreadable database, disk full).
  public static func run(
    _ deployment: Deployment, options: BackupOptions = BackupOptions(), logger: Logger,
    progress: (@Sendable (BackupProgress) -> Void)? = nil
  ) throws -> BackupResult {
    let started = Date()
    try BackupReason.validate(options.reason)
    do {
      let lock = try DeploymentLock.acquire(
        path: deployment.lockPath, command: options.userID.map { "backup --user \($0)" } ?? "backup",
        wait: options.lockWait)
      defer { lock.release() }
      let context = try Context(deployment: deployment, options: options, logger: logger)
      try context.repository.removeLeftovers(userID: options.userID)
      // A session file and its sidecar whose restore a crash interrupted are completed first,
      // so no archive holds half of a pair (for one user, that user's pair).
      let finished =
        try options.userID.map { try LiveFiles.finishInterruptedPair(sessionPath: deployment.sessionPath(userID: $0)) }
        ?? LiveFiles.finishInterruptedPairs(in: deployment.sessionsDirectory)
      if !finished.isEmpty {
        logger.warning("completed interrupted pair installs", metadata: ["files": "\(finished)"])
      }
      var result: BackupResult
      if let userID = options.userID {
        result = try context.userBackup(userID: userID)
      } else {
        result = try context.fullBackup(progress: progress)
      }
      if options.pushesOffsite, !deployment.remotes.isEmpty {
        result.offsite = PushJob.run(deployment, remotes: deployment.remotes, logger: logger).remotes
      }
      result.durationMS = Int(Date().timeIntervalSince(started) * 1000)
      logger.notice(
        "backup done",
        metadata: [
          "archives": "\(result.archives.count)", "users": "\(result.users)", "bytes.in": "\(result.bytesIn)",
          "bytes.out": "\(result.bytesOut)", "users.failed": "\(result.failures.count)",
          "job.duration_ms": "\(result.durationMS)",
        ])
      return result
    } catch let error as StoreError {
      throw JobError.store(context: "backup", underlying: error)
    }
  }

  /// Per-user archives made durable and published together (their writeback started together, then an fsync each).
  static let publishBatchSize = 256

  /// What one run needs: keys, the database, the archive repository.
  final class Context {
    let deployment: Deployment
    let options: BackupOptions
    let logger: Logger
    let repository: ArchiveRepository
    let encryption: ArchiveEncryption
    let identities: [AgeIdentity]
    /// Signs every archive once it is proven (`keys/signing.key`).
    let signingKey: SigningKey
    /// Tells which existing archives are the deployment's (`keys/signing.pub`, else the signing
    /// key's own public half).
    let authenticator: SigningAuthenticator
    /// Signature verdicts already reached (`backups/.signatures`, as list, check and prune keep
    /// them): deciding whether a user's newest archive is the deployment's reads and verifies
    /// its signature only when the signature file changed since it was verified. nil when the
    /// signing key's verdict file cannot be used (every signature is then verified), and for a
    /// per-user backup, which decides nothing about other archives.
    let verdicts: SignatureVerdicts?
    let database: BotDatabase
    let host = ProcessInfo.processInfo.hostName
    /// The Fernet keys, to record which of them each archive's secrets are under; nil when none
    /// is configured or the keys cannot be read (the records then say "not known").
    let fernet: Fernet?

    init(deployment: Deployment, options: BackupOptions, logger: Logger) throws {
      self.deployment = deployment
      self.options = options
      self.logger = logger
      repository = ArchiveRepository(backupsDirectory: deployment.backupsDirectory)
      // An archive nothing can authenticate would be refused by every reader: no key, no backup.
      signingKey = try KeyStore.loadSigningKey(deployment)
      authenticator =
        (try? SigningAuthenticator.forDeployment(deployment))
        ?? SigningAuthenticator(
          ring: VerifyingKeyRing(keys: [signingKey.verifyingKey], path: deployment.signingKeyPath),
          acceptsUnencrypted: deployment.config.backup?.encrypt == false)
      // Only the scheduled run decides about every user's newest archive: one user's backup
      // (an undo, a post-recovery archive) would load the verdicts of the whole fleet's
      // archives for nothing (150 ms at 100,000 users).
      verdicts =
        options.userID == nil && options.includesChangedUsers
        ? try? SignatureVerdicts(
          backupsDirectory: deployment.backupsDirectory, ring: authenticator.ring, signingKey: signingKey) : nil
      if options.isEncrypted {
        let recipients = try KeyStore.loadRecipients(deployment)
        guard !recipients.isEmpty else {
          throw StoreError.key(
            path: deployment.ageRecipientsPath, reason: "no age recipient configured, so archives cannot be encrypted",
            hint: "run tgsess init or set age_recipients (or pass --no-encrypt deliberately)")
        }
        encryption = .age(recipients)
        // The identity may live off the host; then archives are proven by their ciphertext hash.
        identities = FileSystem.exists(deployment.ageIdentityPath) ? try KeyStore.loadIdentities(deployment) : []
      } else {
        encryption = .none
        identities = []
      }
      do { fernet = try KeyStore.loadFernet(deployment) } catch let error as StoreError {
        logger.warning(
          "Fernet keys unreadable; archives will not record which key their secrets are under",
          metadata: ["error": "\(error.errorDescription ?? "")"])
        fernet = nil
      }
      // A writer killed mid-transaction (an earlier tgsess recording a backup, or the bot) leaves
      // a hot journal that makes every read-only open fail.
      BotDatabase.rollBackHotJournal(path: deployment.databasePath, busyTimeoutMS: deployment.busyTimeoutMS)
      database = try BotDatabase(
        path: deployment.databasePath, mode: .readOnly, busyTimeoutMS: deployment.busyTimeoutMS)
    }

    /// Whether `error` is about where the backup is written (a full disk, an unwritable staging
    /// directory) rather than about one user's files: such an error fails the whole run instead
    /// of being reported as a failed user.
    func isDestinationFailure(_ error: StoreError) -> Bool {
      let path: String
      switch error {
      case .io(let ioPath, _, let code):
        if [ENOSPC, EDQUOT, EROFS].contains(code) { return true }
        path = ioPath
      case .missing(let missingPath, _): path = missingPath
      case .invalid(let invalidPath, _, _): path = invalidPath
      case .database(let databasePath, let reason, _):
        // A full disk under the bot database (recording a per-user backup) stops every user alike.
        if reason.hasPrefix("disk full") || reason.contains("database or disk is full") { return true }
        path = databasePath
      case .session(let object, _): path = object
      case .key, .permissions, .crypto, .locked, .config: return true
      }
      return path.hasPrefix(deployment.backupsDirectory + "/")
    }

    deinit { database.close() }

    func makeManifest(kind: Manifest.Kind, userID: Int64?, reason: String, date: Date, entries: [Manifest.Entry])
      throws -> Manifest
    {
      Manifest(
        toolVersion: ToolInfo.version, host: host, createdAt: date, kind: kind, reason: reason, userID: userID,
        schemaVersion: try database.schemaStatus().version, entries: entries)
    }

    /// A staged snapshot (a session file, or the database) and what it holds.
    struct StagedSession {
      var entry: Manifest.Entry
      var source: ArchiveSource
      var backupEntry: Manifest.Entry?
      var backupSource: ArchiveSource?
      /// The JSON sidecar (`sessions/user_<id>.json`), archived with the session file.
      var sidecarEntry: Manifest.Entry?
      var sidecarSource: ArchiveSource?
      var fingerprint: ArchiveRecord.SessionFingerprint
      /// How the user's newest per-user archive compares.
      var freshness = Freshness.changed
      /// The findings came from an earlier run's inspection of the same bytes.
      var isInspectionReused = false
    }

    /// How to snapshot a live file: the database's writers are the bot's, whose database
    /// `migrate --wal` can switch to WAL; a session file's is the userbot's.
    func snapshotOptions(isDatabase: Bool) -> SnapshotOptions {
      var snapshot = SnapshotOptions(busyTimeoutMS: Int32(clamping: deployment.busyTimeoutMS))
      snapshot.maxLockMS = Double(options.maxWriterWaitMS)
      snapshot.restartsHint =
        isDatabase
        ? "switch the bot's database to WAL, whose writers never wait for a backup: tgsess migrate --wal"
        : "run the backup again when the userbot is idle"
      return snapshot
    }

    /// How a user's live session compares with their newest per-user archive.
    enum Freshness {
      /// Same session identity, encrypted to the current recipients (or not asked).
      case unchanged
      /// A new session identity, or no per-user archive yet.
      case changed
      /// Same identity, but the archive is not encrypted to exactly the current recipients, or
      /// its secrets are under other Fernet keys than the live ones (asked by `rearchives` only).
      case underOtherKeys
    }

    /// The current recipients as archive records keep them.
    var recipientStrings: [String] {
      if case .age(let recipients) = encryption { return recipients.map(\.string) }
      return []
    }

    /// How `userID`'s newest per-user archive compares with this session identity (and, with
    /// `rearchives`, with the current recipients and the Fernet keys of the user's live rows).
    /// - Throws: `StoreError.io` when the user's archive directory cannot be read.
    func freshness(userID: Int64, fingerprint: ArchiveRecord.SessionFingerprint) throws -> Freshness {
      // An archive not signed by the deployment's key never stands for a backup of the user.
      let (authenticator, verdicts) = (self.authenticator, self.verdicts)
      guard
        let newest = try repository.newestUserArchive(
          userID: userID,
          accepting: { authenticator.isSigned(archivePath: $0, verdicts: verdicts) }),
        var previous = newest.sessionFingerprint
      else { return .changed }
      previous.serverAddress = previous.serverAddress.map(SessionIdentity.normalizedAddress)
      guard previous == fingerprint else { return .changed }
      guard options.rearchives else { return .unchanged }
      if newest.recipients.map(Set.init) != Set(recipientStrings) { return .underOtherKeys }
      if let live = try fernetKeys(of: database, userID: userID), newest.fernetKeys != live { return .underOtherKeys }
      return .unchanged
    }

    /// The Fernet keys a database file's secrets are under (one user's rows with `userID`); nil
    /// when no Fernet key is configured.
    func fernetKeys(of database: BotDatabase, userID: Int64?) throws -> [String]? {
      guard let fernet else { return nil }
      return try database.fernetKeyFingerprints(fernet: fernet, userID: userID)
    }

    /// Snapshots one user's session file (and `.session.backup`) into `staging`: in memory and
    /// appended to the staging pack, or, for a file above `inMemorySnapshotLimit`, into a
    /// staging file of its own.
    /// - Parameter inspections: findings of earlier runs, reused for a snapshot whose bytes an
    ///   earlier run inspected.
    func stageSession(userID: Int64, staging: StagingArea, inspections: InspectionCache? = nil) throws
      -> StagedSession
    {
      let source = deployment.sessionPath(userID: userID)
      let relative = "sessions/user_\(userID).session"
      let snapshotOptions = snapshotOptions(isDatabase: false)
      let staged: ArchiveSource
      let size: Int64
      let sha256: String
      let found: InspectionCache.Item
      var isReused = false
      func findings(_ info: SessionFileInfo, sha256: String) -> InspectionCache.Item {
        InspectionCache.Item(
          userID: userID, sha256: sha256, format: info.format.shortName, dcID: info.identity.dcID,
          authKeyFingerprint: info.identity.authKey.fingerprint, serverAddress: info.identity.serverAddress)
      }
      if ((try? FileSystem.size(of: source)) ?? 0) <= options.inMemorySnapshotLimit {
        let image = try SQLiteSnapshot.takeInMemory(source: source, options: snapshotOptions)
        try CrashPoint.hit("backup.after-session-snapshot")
        let packed = try staging.pack(image)
        staged = packed.source
        size = packed.byteCount
        sha256 = packed.sha256
        // The same bytes as a snapshot an earlier run inspected have the same findings
        // (inspection reads nothing but these bytes); any change, however written, changes the hash.
        if let reused = inspections?.item(userID: userID, sha256: sha256) {
          found = reused
          isReused = true
        } else {
          found = findings(try SessionFileInspector.inspect(snapshot: image, object: source), sha256: sha256)
        }
      } else {
        let path = try staging.file(relative)
        try SQLiteSnapshot.take(source: source, destination: path, options: snapshotOptions)
        try CrashPoint.hit("backup.after-session-snapshot")
        let info: SessionFileInfo
        do { info = try SessionFileInspector.inspect(path: path) } catch StoreError.session(_, let reason) {
          // The snapshot is a faithful copy: its problem is the source file's.
          throw StoreError.session(object: source, reason: reason)
        }
        staged = .file(path)
        size = try FileSystem.size(of: path)
        sha256 = try FileSystem.sha256(ofFile: path)
        found = findings(info, sha256: sha256)
      }
      let entry = Manifest.Entry(
        path: relative, role: .session, size: size, sha256: sha256, isSQLite: true, userID: userID,
        format: found.format, dcID: found.dcID, authKeyFingerprint: found.authKeyFingerprint,
        serverAddress: found.serverAddress)
      var result = StagedSession(
        entry: entry, source: staged, backupEntry: nil, backupSource: nil,
        fingerprint: .init(
          authKey: found.authKeyFingerprint, dcID: found.dcID,
          serverAddress: found.serverAddress.map(SessionIdentity.normalizedAddress)),
        isInspectionReused: isReused)
      // The seed's .session.backup copy: kept when it is a readable SQLite file.
      let backupSource = source + ".backup"
      if FileSystem.exists(backupSource) {
        do {
          let packed = try staging.pack(
            try SQLiteSnapshot.takeInMemory(source: backupSource, options: snapshotOptions))
          result.backupSource = packed.source
          result.backupEntry = Manifest.Entry(
            path: relative + ".backup", role: .sessionBackup, size: packed.byteCount, sha256: packed.sha256,
            isSQLite: true, userID: userID)
        } catch let error as StoreError where !isDestinationFailure(error) {
          logger.warning(
            "skipping unreadable .session.backup", metadata: ["user.id": "\(userID)", "file.path": "\(backupSource)"])
        }
      }
      // The JSON sidecar: the session and its sidecar are one unit, so a sidecar that cannot be
      // read or parsed fails the user (naming the file) rather than archiving half the pair.
      let sidecarPath = deployment.sidecarPath(userID: userID)
      if FileSystem.exists(sidecarPath) {
        let sidecar = try SessionSidecar.read(path: sidecarPath)
        let packed = try staging.pack(sidecar.bytes)
        result.sidecarSource = packed.source
        result.sidecarEntry = Manifest.Entry(
          path: "sessions/user_\(userID)" + SessionSidecar.suffix, role: .sessionSidecar, size: packed.byteCount,
          sha256: packed.sha256, isSQLite: false, userID: userID)
      }
      return result
    }

    /// The entries and sources of one staged session: the file, its `.session.backup`, its sidecar.
    func add(_ session: StagedSession, to entries: inout [Manifest.Entry], sources: inout [String: ArchiveSource]) {
      entries.append(session.entry)
      sources[session.entry.path] = session.source
      if let backupEntry = session.backupEntry, let backupSource = session.backupSource {
        entries.append(backupEntry)
        sources[backupEntry.path] = backupSource
      }
      if let sidecarEntry = session.sidecarEntry, let sidecarSource = session.sidecarSource {
        entries.append(sidecarEntry)
        sources[sidecarEntry.path] = sidecarSource
      }
    }

    /// A per-user archive ready to be written: its id, time, manifest and staged sources.
    struct UserArchiveDraft {
      var userID: Int64
      var id: String
      var date: Date
      var manifest: Manifest
      var sources: [String: ArchiveSource]
      var authKeyFingerprint: String?
      /// The backup reason (recorded in `session_backups`).
      var reason: String
      /// The fingerprints of the Fernet keys the user's archived rows are under (nil: not known).
      var fernetKeys: [String]?
    }

    /// Gathers one user's per-user archive from what is staged (plus the user's database rows).
    /// - Throws: `JobError.refused` when the user has neither a session file nor a row;
    ///   `StoreError` when the rows cannot be read or staged.
    func draftUserArchive(userID: Int64, session: StagedSession?, reason: String, staging: StagingArea) throws
      -> UserArchiveDraft
    {
      var entries: [Manifest.Entry] = []
      var sources: [String: ArchiveSource] = [:]
      if let session { add(session, to: &entries, sources: &sources) }
      if let rows = try database.userRowsJSON(userID: userID) {
        let relative = "users/user_\(userID).json"
        let packed = try staging.pack(rows)
        sources[relative] = packed.source
        entries.append(
          Manifest.Entry(
            path: relative, role: .userRows, size: packed.byteCount, sha256: packed.sha256, isSQLite: false,
            userID: userID))
      }
      guard !entries.isEmpty else {
        throw JobError.refused(
          "user \(userID): no session file (\(deployment.sessionPath(userID: userID))) and no database row; nothing to back up"
        )
      }
      let date = Date()
      let id = ArchiveName.makeID(kind: .user, userID: userID, date: date)
      let manifest = try makeManifest(kind: .user, userID: userID, reason: reason, date: date, entries: entries)
      return UserArchiveDraft(
        userID: userID, id: id, date: date, manifest: manifest, sources: sources,
        authKeyFingerprint: session?.fingerprint.authKey, reason: reason,
        fernetKeys: try fernetKeys(of: database, userID: userID))
    }

    /// Records published per-user archives in `session_backups`, in one transaction. A user with
    /// a session file but no user_sessions row (a login in progress, a bot that keeps files only)
    /// gets no row: the archive is the whole backup.
    /// - Throws: `StoreError.database`.
    func recordUserArchives(_ drafts: [UserArchiveDraft]) throws {
      let writer = try BotDatabase(
        path: deployment.databasePath, mode: .readWrite, busyTimeoutMS: deployment.busyTimeoutMS)
      defer { writer.close() }
      let rows = try writer.recordSessionBackups(
        drafts.map {
          .init(
            userID: $0.userID, reason: $0.reason, archiveID: $0.id, authKeyFingerprint: $0.authKeyFingerprint,
            date: $0.date)
        })
      for (draft, row) in zip(drafts, rows) {
        logger.info(
          "per-user backup written",
          metadata: [
            "user.id": "\(draft.userID)", "archive.id": "\(draft.id)", "reason": "\(draft.reason)",
            "session_backups.row": "\(row.map(String.init) ?? "none")",
          ])
      }
    }

    /// Writes one user's per-user archive from what is staged, and records it in the database.
    func writeUserArchive(userID: Int64, session: StagedSession?, reason: String, staging: StagingArea) throws
      -> ArchiveRecord
    {
      let draft = try draftUserArchive(userID: userID, session: session, reason: reason, staging: staging)
      let record = try repository.write(
        id: draft.id, manifest: draft.manifest, sources: draft.sources, encryption: encryption,
        identities: identities, signingKey: signingKey, zstdLevel: options.zstdLevel, fernetKeys: draft.fernetKeys)
      try recordUserArchives([draft])
      return record
    }

    func summary(_ record: ArchiveRecord) -> ArchiveSummary {
      ArchiveSummary(record, path: repository.path(of: record))
    }

    /// `backup --user N`.
    func userBackup(userID: Int64) throws -> BackupResult {
      let staging = try StagingArea(parent: deployment.backupsDirectory)
      defer { staging.remove() }
      var session: StagedSession?
      if FileSystem.exists(deployment.sessionPath(userID: userID)) {
        session = try stageSession(userID: userID, staging: staging)
      }
      let record = try writeUserArchive(userID: userID, session: session, reason: options.reason, staging: staging)
      return BackupResult(
        archives: [summary(record)], users: 1, entries: record.entryCount, bytesIn: record.contentByteCount,
        bytesOut: record.byteCount, durationMS: 0, unchangedUsers: 0, failures: [])
    }

    /// Snapshots the bot database into `staging` (a file: it can be large) and checks the copy.
    /// - Throws: `StoreError` naming the database when the snapshot fails or fails quick_check.
    func stageDatabase(relative: String, staging: StagingArea) throws -> StagedSession {
      let path = try staging.file(relative)
      let report = try SQLiteSnapshot.take(
        source: deployment.databasePath, destination: path, options: snapshotOptions(isDatabase: true))
      logger.debug(
        "database snapshot taken",
        metadata: [
          "file.path": "\(deployment.databasePath)", "snapshot.method": "\(report.method.rawValue)",
          "snapshot.journal_mode": "\(report.journalMode.rawValue)", "snapshot.steps": "\(report.steps)",
          "snapshot.restarts": "\(report.restarts)",
          "snapshot.writer_wait_ms": "\(String(format: "%.1f", report.writerWaitMS))",
        ])
      let problems = try SQLiteConnection(path: path, mode: .readOnly).integrityCheck(quick: true)
      guard problems.isEmpty else {
        throw StoreError.database(
          path: deployment.databasePath,
          reason: "its snapshot fails quick_check: \(problems.prefix(3).joined(separator: "; "))",
          hint: "repair or restore the database before backing it up")
      }
      let entry = Manifest.Entry(
        path: relative, role: .database, size: try FileSystem.size(of: path),
        sha256: try FileSystem.sha256(ofFile: path),
        isSQLite: true)
      return StagedSession(
        entry: entry, source: .file(path), backupEntry: nil, backupSource: nil,
        fingerprint: .init(authKey: "", dcID: 0, serverAddress: nil))
    }

    /// What the snapshot phase of a full backup keeps for the rest of the run: the full
    /// archive's entries and sources, and per user only where its entries are and how its newest
    /// per-user archive compares (no second copy of any entry, nothing per unchanged user beyond
    /// its entries).
    struct StagedFleet {
      var entries: [Manifest.Entry] = []
      /// Where each entry's bytes are (`sources[i]` for `entries[i]`).
      var sources: [ArchiveSource?] = []
      /// The users staged, in order: where their entries start in `entries`, how many they are,
      /// and their freshness.
      var users: [StagedUser] = []
      var failures: [UserFailure] = []
      var inspectionsReused = 0
      /// The database snapshot's staging file.
      var databasePath: String?
      var databaseFernetKeys: [String]?
    }

    /// What a snapshot worker hands back for one file set: its entries and their sources, in
    /// archive order (a few words per user while thousands wait to be gathered).
    struct StagedFiles {
      var entries: [Manifest.Entry] = []
      var sources: [ArchiveSource] = []
      var freshness = Freshness.changed
      var isInspectionReused = false

      init(_ session: StagedSession) {
        freshness = session.freshness
        isInspectionReused = session.isInspectionReused
        entries.reserveCapacity(1 + (session.backupEntry == nil ? 0 : 1) + (session.sidecarEntry == nil ? 0 : 1))
        sources.reserveCapacity(entries.capacity)
        entries.append(session.entry)
        sources.append(session.source)
        if let backupEntry = session.backupEntry, let backupSource = session.backupSource {
          entries.append(backupEntry)
          sources.append(backupSource)
        }
        if let sidecarEntry = session.sidecarEntry, let sidecarSource = session.sidecarSource {
          entries.append(sidecarEntry)
          sources.append(sidecarSource)
        }
      }
    }

    /// One staged user of a full backup, by index into `StagedFleet.entries`.
    struct StagedUser {
      var userID: Int64
      var firstEntry: Int32
      var entryCount: UInt8
      var freshness: Freshness
    }

    /// Snapshots the database and every session file (on `snapshotWorkers` threads, the
    /// database first, as it takes longest) into `staging`. A failing user is reported and
    /// skipped; a failing database or destination fails the run.
    func stageFleet(users: [Int64], staging: StagingArea, progress: (@Sendable (BackupProgress) -> Void)?) throws
      -> StagedFleet
    {
      let databaseRelative = "data/" + (deployment.databasePath as NSString).lastPathComponent
      let inspectionsPath = InspectionCache.path(backupsDirectory: deployment.backupsDirectory)
      let inspections = InspectionCache.load(path: inspectionsPath, toolVersion: ToolInfo.version)
      let done = Counter()
      let results = try Parallel.map(count: users.count + 1, workers: options.snapshotWorkers) {
        index -> Result<StagedFiles, StoreError> in
        if index == 0 {
          return .success(StagedFiles(try stageDatabase(relative: databaseRelative, staging: staging)))
        }
        let userID = users[index - 1]
        defer {
          progress?(
            BackupProgress(phase: .snapshots, filesDone: done.increment(), filesTotal: users.count, bytesDone: 0))
        }
        do {
          var session = try stageSession(userID: userID, staging: staging, inspections: inspections)
          if options.includesChangedUsers {
            session.freshness = try freshness(userID: userID, fingerprint: session.fingerprint)
          }
          return .success(StagedFiles(session))
        } catch let error as StoreError where !isDestinationFailure(error) {
          logger.error("user skipped", metadata: ["user.id": "\(userID)", "error": "\(error.errorDescription ?? "")"])
          return .failure(error)
        }
      }
      // A cache: a verdict file that cannot be written costs the next run time, nothing else.
      if options.includesChangedUsers { try? verdicts?.save(dropsUnused: false) }
      var fleet = StagedFleet()
      fleet.entries.reserveCapacity(results.count + results.count / 2)
      fleet.sources.reserveCapacity(results.count + results.count / 2)
      fleet.users.reserveCapacity(users.count)
      for (index, result) in results.enumerated() {
        switch result {
        case .success(let files):
          if index > 0 {
            fleet.users.append(
              StagedUser(
                userID: users[index - 1], firstEntry: Int32(fleet.entries.count),
                entryCount: UInt8(files.entries.count), freshness: files.freshness))
            if files.isInspectionReused { fleet.inspectionsReused += 1 }
          } else if case .file(let path) = files.sources[0] {
            fleet.databasePath = path
            if fernet != nil {
              let snapshot = try BotDatabase(path: path, mode: .readOnly)
              defer { snapshot.close() }
              fleet.databaseFernetKeys = try fernetKeys(of: snapshot, userID: nil)
            }
          }
          fleet.entries.append(contentsOf: files.entries)
          fleet.sources.append(contentsOf: files.sources)
        case .failure(let error):
          fleet.failures.append(UserFailure(userID: users[index - 1], reason: error.errorDescription ?? "\(error)"))
        }
      }
      return fleet
    }

    /// A staged user's session again, from the fleet's entries (for their per-user archive).
    func session(of user: StagedUser, in fleet: StagedFleet) -> StagedSession? {
      let range = Int(user.firstEntry)..<(Int(user.firstEntry) + Int(user.entryCount))
      guard let index = range.first(where: { fleet.entries[$0].role == .session }), let source = fleet.sources[index]
      else { return nil }
      let entry = fleet.entries[index]
      var session = StagedSession(
        entry: entry, source: source, backupEntry: nil, backupSource: nil,
        fingerprint: .init(
          authKey: entry.authKeyFingerprint ?? "", dcID: entry.dcID ?? 0,
          serverAddress: entry.serverAddress.map(SessionIdentity.normalizedAddress)))
      session.freshness = user.freshness
      for index in range {
        let other = fleet.entries[index]
        switch other.role {
        case .sessionBackup:
          session.backupEntry = other
          session.backupSource = fleet.sources[index]
        case .sessionSidecar:
          session.sidecarEntry = other
          session.sidecarSource = fleet.sources[index]
        default: break
        }
      }
      return session
    }

    /// The scheduled full backup.
    func fullBackup(progress: (@Sendable (BackupProgress) -> Void)?) throws -> BackupResult {
      let staging = try StagingArea(parent: deployment.backupsDirectory)
      defer { staging.remove() }
      // 1. The database, through the online backup API, and 2. every session file.
      let users = try deployment.sessionFileUserIDs()
      var fleet = try stageFleet(users: users, staging: staging, progress: progress)
      FileSystem.releaseFreeMemory()
      var failures = fleet.failures
      fleet.failures = []
      let inspectionsPath = InspectionCache.path(backupsDirectory: deployment.backupsDirectory)

      // 3. One archive, written then proven.
      let date = Date()
      let id = ArchiveName.makeID(kind: .full, userID: nil, date: date)
      var bytesDone: Int64 = 0
      let fileCount = fleet.entries.count
      var filesDone = 0
      let record = try repository.write(
        id: id,
        manifest: try makeManifest(
          kind: .full, userID: nil, reason: options.reason, date: date, entries: fleet.entries),
        entrySources: fleet.sources, encryption: encryption, identities: identities, signingKey: signingKey,
        zstdLevel: options.zstdLevel, fernetKeys: fleet.databaseFernetKeys
      ) { bytes in
        bytesDone += bytes
        filesDone += 1
        progress?(
          BackupProgress(phase: .fullArchive, filesDone: filesDone, filesTotal: fileCount, bytesDone: bytesDone))
      }
      var archives = [summary(record)]
      // The database's snapshot is in the archive now: dropped unwritten, its 0.5-4 GB of scratch
      // never reach the disk the bot commits to (a flush of them held a commit 186 ms).
      if let path = fleet.databasePath { try staging.discard(path) }
      // What this run inspected, for the next run (a lost cache costs only time): the findings
      // are the session entries' own fields.
      var nextInspections = InspectionCache()
      for entry in fleet.entries where entry.role == .session {
        guard let userID = entry.userID, let format = entry.format, let dcID = entry.dcID,
          let authKeyFingerprint = entry.authKeyFingerprint
        else { continue }
        nextInspections.insert(
          .init(
            userID: userID, sha256: entry.sha256, format: format, dcID: dcID, authKeyFingerprint: authKeyFingerprint,
            serverAddress: entry.serverAddress))
      }
      do { try nextInspections.save(path: inspectionsPath, toolVersion: ToolInfo.version) } catch {
        logger.warning(
          "inspection cache not saved", metadata: ["file.path": "\(inspectionsPath)", "error": "\(error)"])
      }
      // The full archive's manifest, its JSON and the writer's and prover's buffers are freed.
      FileSystem.releaseFreeMemory()

      // 4. Per-user backups of the users whose session identity changed, in batches: each
      // archive is written and proven, then a batch is made durable at once (one filesystem
      // flush instead of an fsync per file), published, and recorded in one transaction.
      var unchanged = 0
      var reencrypted = 0
      if options.includesChangedUsers {
        let changed = fleet.users.filter { $0.freshness != .unchanged }
        unchanged = fleet.users.count - changed.count
        var batch: [(draft: UserArchiveDraft, pending: PendingArchive)] = []
        defer { for item in batch { item.pending.discard() } }
        var usersDone = 0
        func flush() throws {
          let drafts = batch.map(\.draft)
          var publishedCount = 0
          defer {
            // What was published is recorded, even when the batch stopped part-way (a full disk).
            let published = Array(drafts.prefix(publishedCount))
            reencrypted += published.filter { $0.reason == BackupReason.reencrypted }.count
            do { try recordUserArchives(published) } catch {
              let reason = (error as? LocalizedError)?.errorDescription ?? "\(error)"
              failures += published.map { UserFailure(userID: $0.userID, reason: reason) }
              logger.error("per-user backups not recorded", metadata: ["error": "\(reason)"])
            }
          }
          let pending = batch.map(\.pending)
          batch = []
          try repository.publish(batch: pending) { published in
            archives.append(summary(published.record))
            publishedCount += 1
          }
          // A batch's buffers go back to the system once per batch, not once per archive (whose
          // next one would fault them in again).
          FileSystem.releaseFreeMemory()
        }
        for user in changed {
          let userID = user.userID
          guard let session = session(of: user, in: fleet) else { continue }
          let reason = session.freshness == .underOtherKeys ? BackupReason.reencrypted : BackupReason.scheduled
          do {
            let draft = try draftUserArchive(userID: userID, session: session, reason: reason, staging: staging)
            let pending = try repository.prepare(
              id: draft.id, manifest: draft.manifest, sources: draft.sources, encryption: encryption,
              identities: identities, signingKey: signingKey, zstdLevel: options.zstdLevel,
              fernetKeys: draft.fernetKeys, isDurable: false)
            batch.append((draft, pending))
          } catch let error as StoreError where !isDestinationFailure(error) {
            failures.append(UserFailure(userID: userID, reason: error.errorDescription ?? "\(error)"))
            logger.error(
              "per-user backup failed", metadata: ["user.id": "\(userID)", "error": "\(error.errorDescription ?? "")"])
          }
          usersDone += 1
          progress?(BackupProgress(phase: .userArchives, filesDone: usersDone, filesTotal: changed.count, bytesDone: 0))
          try CrashPoint.hit("backup.between-users")
          if batch.count >= BackupJob.publishBatchSize { try flush() }
        }
        try flush()
      }
      return BackupResult(
        archives: archives, users: fleet.users.count, entries: record.entryCount, bytesIn: record.contentByteCount,
        bytesOut: archives.reduce(0) { $0 + $1.byteCount }, durationMS: 0, unchangedUsers: unchanged,
        reencryptedUsers: reencrypted, inspectionsReused: fleet.inspectionsReused,
        failures: failures)
    }
  }
}

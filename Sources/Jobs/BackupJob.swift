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

    public init(
      userID: Int64? = nil, reason: String? = nil, isEncrypted: Bool? = nil, lockWait: TimeInterval? = nil,
      zstdLevel: Int? = nil
    ) {
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
  /// The safety copy `migrate` takes before it changes the database.
  public static let beforeMigrate = "Before migrate"
  public static let imported = "Imported"
  public static let known = [
    scheduled, beforeLogin, before2FA, postRecovery, manual, beforeLogout, beforeRestore, beforeMigrate, imported,
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
  public var failures: [UserFailure]
  /// Offsite pushes after the local backup (a failed remote makes the run partial; the local
  /// backup still counts).
  public var offsite: [RemotePush] = []
  /// Some users failed; the others were backed up.
  public var isPartial: Bool { !failures.isEmpty || offsite.contains { !$0.ok } }
}

/// Progress of a running backup, for a TTY.
public struct BackupProgress: Sendable {
  public var filesDone: Int
  public var filesTotal: Int
  public var bytesDone: Int64
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
    let database: BotDatabase
    let host = ProcessInfo.processInfo.hostName

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
      var fingerprint: ArchiveRecord.SessionFingerprint
      /// The user's newest per-user archive holds the same session identity.
      var isUnchanged = false
    }

    /// Whether `userID`'s newest signed per-user archive holds a session with this identity (an
    /// archive not signed by the deployment's key never stands for a backup of the user).
    /// - Throws: `StoreError.io` when the user's archive directory cannot be read.
    func isUnchanged(userID: Int64, fingerprint: ArchiveRecord.SessionFingerprint) throws -> Bool {
      let authenticator = self.authenticator
      guard
        var previous = try repository.newestUserArchive(
          userID: userID, accepting: { authenticator.isSigned(archivePath: $0) })?.sessionFingerprint
      else { return false }
      previous.serverAddress = previous.serverAddress.map(SessionIdentity.normalizedAddress)
      return previous == fingerprint
    }

    /// Snapshots one user's session file (and `.session.backup`) into `staging`: in memory and
    /// appended to the staging pack, or, for a file above `inMemorySnapshotLimit`, into a
    /// staging file of its own.
    func stageSession(userID: Int64, staging: StagingArea) throws -> StagedSession {
      let source = deployment.sessionPath(userID: userID)
      let relative = "sessions/user_\(userID).session"
      let busyTimeoutMS = Int32(deployment.busyTimeoutMS)
      let info: SessionFileInfo
      let staged: ArchiveSource
      let size: Int64
      let sha256: String
      if ((try? FileSystem.size(of: source)) ?? 0) <= options.inMemorySnapshotLimit {
        let image = try SQLiteSnapshot.takeInMemory(source: source, busyTimeoutMS: busyTimeoutMS)
        try CrashPoint.hit("backup.after-session-snapshot")
        info = try SessionFileInspector.inspect(snapshot: image, object: source)
        let packed = try staging.pack(image)
        staged = packed.source
        size = packed.byteCount
        sha256 = packed.sha256
      } else {
        let path = try staging.file(relative)
        try SQLiteSnapshot.take(source: source, destination: path, busyTimeoutMS: busyTimeoutMS)
        try CrashPoint.hit("backup.after-session-snapshot")
        do { info = try SessionFileInspector.inspect(path: path) } catch StoreError.session(_, let reason) {
          // The snapshot is a faithful copy: its problem is the source file's.
          throw StoreError.session(object: source, reason: reason)
        }
        staged = .file(path)
        size = try FileSystem.size(of: path)
        sha256 = try FileSystem.sha256(ofFile: path)
      }
      let entry = Manifest.Entry(
        path: relative, role: .session, size: size, sha256: sha256, isSQLite: true, userID: userID,
        format: info.format.shortName, dcID: info.identity.dcID, authKeyFingerprint: info.identity.authKey.fingerprint,
        serverAddress: info.identity.serverAddress)
      var result = StagedSession(
        entry: entry, source: staged, backupEntry: nil, backupSource: nil,
        fingerprint: .init(
          authKey: info.identity.authKey.fingerprint, dcID: info.identity.dcID,
          serverAddress: info.identity.serverAddress.map(SessionIdentity.normalizedAddress)))
      // The seed's .session.backup copy: kept when it is a readable SQLite file.
      let backupSource = source + ".backup"
      if FileSystem.exists(backupSource) {
        do {
          let packed = try staging.pack(
            try SQLiteSnapshot.takeInMemory(source: backupSource, busyTimeoutMS: busyTimeoutMS))
          result.backupSource = packed.source
          result.backupEntry = Manifest.Entry(
            path: relative + ".backup", role: .sessionBackup, size: packed.byteCount, sha256: packed.sha256,
            isSQLite: true, userID: userID)
        } catch let error as StoreError where !isDestinationFailure(error) {
          logger.warning(
            "skipping unreadable .session.backup", metadata: ["user.id": "\(userID)", "file.path": "\(backupSource)"])
        }
      }
      return result
    }

    /// Writes one user's per-user archive from what is staged, and records it in the database.
    func writeUserArchive(userID: Int64, session: StagedSession?, reason: String, staging: StagingArea) throws
      -> ArchiveRecord
    {
      var entries: [Manifest.Entry] = []
      var sources: [String: ArchiveSource] = [:]
      if let session {
        entries.append(session.entry)
        sources[session.entry.path] = session.source
        if let backupEntry = session.backupEntry, let backupSource = session.backupSource {
          entries.append(backupEntry)
          sources[backupEntry.path] = backupSource
        }
      }
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
      let record = try repository.write(
        id: id, manifest: manifest, sources: sources, encryption: encryption, identities: identities,
        signingKey: signingKey, zstdLevel: options.zstdLevel)
      let writer = try BotDatabase(
        path: deployment.databasePath, mode: .readWrite, busyTimeoutMS: deployment.busyTimeoutMS)
      defer { writer.close() }
      // A user with a session file but no user_sessions row (a login in progress, a bot that
      // keeps files only) gets no session_backups row: the archive is the whole backup.
      let row = try writer.recordSessionBackup(
        userID: userID, reason: reason, archiveID: id, authKeyFingerprint: session?.fingerprint.authKey, at: date)
      logger.info(
        "per-user backup written",
        metadata: [
          "user.id": "\(userID)", "archive.id": "\(id)", "reason": "\(reason)",
          "session_backups.row": "\(row.map(String.init) ?? "none")",
        ])
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
      try SQLiteSnapshot.take(
        source: deployment.databasePath, destination: path, busyTimeoutMS: Int32(deployment.busyTimeoutMS))
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

    /// The scheduled full backup.
    func fullBackup(progress: (@Sendable (BackupProgress) -> Void)?) throws -> BackupResult {
      let staging = try StagingArea(parent: deployment.backupsDirectory)
      defer { staging.remove() }
      // 1. The database, through the online backup API, and 2. every session file, on
      // `snapshotWorkers` threads (the database first, as it takes longest). A failing user is
      // reported and skipped; a failing database or destination fails the run.
      let databaseRelative = "data/" + (deployment.databasePath as NSString).lastPathComponent
      let users = try deployment.sessionFileUserIDs()
      let done = Counter()
      let results = try Parallel.map(count: users.count + 1, workers: options.snapshotWorkers) {
        index -> Result<StagedSession, StoreError> in
        if index == 0 {
          return .success(try stageDatabase(relative: databaseRelative, staging: staging))
        }
        let userID = users[index - 1]
        defer { progress?(BackupProgress(filesDone: done.increment(), filesTotal: users.count, bytesDone: 0)) }
        do {
          var session = try stageSession(userID: userID, staging: staging)
          if options.includesChangedUsers {
            session.isUnchanged = try isUnchanged(userID: userID, fingerprint: session.fingerprint)
          }
          return .success(session)
        } catch let error as StoreError where !isDestinationFailure(error) {
          logger.error("user skipped", metadata: ["user.id": "\(userID)", "error": "\(error.errorDescription ?? "")"])
          return .failure(error)
        }
      }
      FileSystem.releaseFreeMemory()
      var entries: [Manifest.Entry] = []
      var sources: [String: ArchiveSource] = [:]
      var staged: [Int64: StagedSession] = [:]
      var failures: [UserFailure] = []
      for (index, result) in results.enumerated() {
        switch result {
        case .success(let session):
          if index > 0 { staged[users[index - 1]] = session }
          entries.append(session.entry)
          sources[session.entry.path] = session.source
          if let backupEntry = session.backupEntry, let backupSource = session.backupSource {
            entries.append(backupEntry)
            sources[backupEntry.path] = backupSource
          }
        case .failure(let error):
          failures.append(UserFailure(userID: users[index - 1], reason: error.errorDescription ?? "\(error)"))
        }
      }

      // 3. One archive, written then proven.
      let date = Date()
      let id = ArchiveName.makeID(kind: .full, userID: nil, date: date)
      let manifest = try makeManifest(kind: .full, userID: nil, reason: options.reason, date: date, entries: entries)
      var bytesDone: Int64 = 0
      let fileCount = entries.count
      var filesDone = 0
      let record = try repository.write(
        id: id, manifest: manifest, sources: sources, encryption: encryption, identities: identities,
        signingKey: signingKey, zstdLevel: options.zstdLevel
      ) { bytes in
        bytesDone += bytes
        filesDone += 1
        progress?(BackupProgress(filesDone: filesDone, filesTotal: fileCount, bytesDone: bytesDone))
      }
      var archives = [summary(record)]

      // 4. Per-user backups of the users whose session identity changed.
      var unchanged = 0
      if options.includesChangedUsers {
        for userID in users {
          guard let session = staged[userID] else { continue }
          if session.isUnchanged {
            unchanged += 1
            continue
          }
          do {
            let userRecord = try writeUserArchive(
              userID: userID, session: session, reason: BackupReason.scheduled, staging: staging)
            archives.append(summary(userRecord))
          } catch let error as StoreError where !isDestinationFailure(error) {
            failures.append(UserFailure(userID: userID, reason: error.errorDescription ?? "\(error)"))
            logger.error(
              "per-user backup failed", metadata: ["user.id": "\(userID)", "error": "\(error.errorDescription ?? "")"])
          }
          try CrashPoint.hit("backup.between-users")
        }
      }
      return BackupResult(
        archives: archives, users: staged.count, entries: record.entryCount, bytesIn: record.contentByteCount,
        bytesOut: archives.reduce(0) { $0 + $1.byteCount }, durationMS: 0, unchangedUsers: unchanged,
        failures: failures)
    }
  }
}

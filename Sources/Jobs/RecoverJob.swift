import Foundation
import Logging
import Store

/// Options of `tgsess recover`.
public struct RecoverOptions: Sendable {
  /// One user, or nil for every user (rows and files).
  public var userID: Int64?
  /// Recover although the bot seems to run or a process holds a session file to be replaced
  /// (`LiveOwnerRefusal.forceRisk` says what this risks).
  public var isForced: Bool
  /// The bot runner calls the job in-process: its own runner lock and the bot's unit are not
  /// evidence against it, but a process holding a file to be replaced still is.
  public var isBotRunner: Bool
  /// Seconds to wait for the deployment lock.
  public var lockWait: TimeInterval
  /// Take a "Post successful recovery" backup of each recovered user.
  public var backsUpRecovered: Bool
  /// Strategy 3 may use archives without a signature (made before archives were signed); each
  /// one used is named in a warning.
  public var allowsUnsigned: Bool
  /// The age identity file that opens archives (default: the deployment's, when it is on the host).
  public var identityPath: String?

  public init(
    userID: Int64? = nil, isForced: Bool = false, isBotRunner: Bool = false, lockWait: TimeInterval = 0,
    backsUpRecovered: Bool = true, allowsUnsigned: Bool = false, identityPath: String? = nil
  ) {
    self.userID = userID
    self.isForced = isForced
    self.isBotRunner = isBotRunner
    self.lockWait = lockWait
    self.backsUpRecovered = backsUpRecovered
    self.allowsUnsigned = allowsUnsigned
    self.identityPath = identityPath
  }
}

/// The seed's three strategies, in order.
public enum RecoveryStrategy: String, Codable, Sendable, CaseIterable {
  /// Rebuild the session file from the session string in the database.
  case sessionString = "session-string"
  /// Keep the existing session file and write its string back to the database.
  case sessionFile = "session-file"
  /// Repair from backups: per-user archives, full snapshots, session_backups rows, .session.backup.
  case backup

  /// "1/3 session string" and so on.
  public var label: String {
    switch self {
    case .sessionString: return "1/3 session string"
    case .sessionFile: return "2/3 session file"
    case .backup: return "3/3 backups"
    }
  }
}

/// What happened to one user.
public struct UserRecovery: Codable, Sendable, Equatable {
  public enum Outcome: String, Codable, Sendable {
    case healthy, recovered, unrecoverable
  }
  public var userID: Int64
  public var outcome: Outcome
  public var strategy: RecoveryStrategy?
  /// Where the session came from (an archive id, a session_backups row, a file).
  public var source: String?
  /// Why (for unrecoverable users: what was tried and why each failed). Never a secret.
  public var detail: String
  /// The "Post successful recovery" archive.
  public var backupID: String?
  /// Set when the session came from an unsigned archive (`--allow-unsigned`), naming it, or when
  /// what follows a recovery (its backup, its health row) failed.
  public var warning: String?

  /// Adds `text` to `warning`.
  mutating func addWarning(_ text: String) {
    warning = warning.map { $0 + "; " + text } ?? text
  }
}

/// What `tgsess recover` did.
public struct RecoverResult: Codable, Sendable, Equatable {
  public var users: [UserRecovery]
  public var healthy: Int { users.filter { $0.outcome == .healthy }.count }
  public var recovered: Int { users.filter { $0.outcome == .recovered }.count }
  public var unrecoverable: Int { users.filter { $0.outcome == .unrecoverable }.count }

  enum CodingKeys: String, CodingKey { case users, healthy, recovered, unrecoverable }

  public init(users: [UserRecovery]) { self.users = users }

  public init(from decoder: any Decoder) throws {
    users = try decoder.container(keyedBy: CodingKeys.self).decode([UserRecovery].self, forKey: .users)
  }

  public func encode(to encoder: any Encoder) throws {
    var container = encoder.container(keyedBy: CodingKeys.self)
    try container.encode(users, forKey: .users)
    try container.encode(healthy, forKey: .healthy)
    try container.encode(recovered, forKey: .recovered)
    try container.encode(unrecoverable, forKey: .unrecoverable)
  }
}

/// A step of a recovery, for live progress (the bot edits one message with these).
public struct RecoverProgress: Sendable, Equatable {
  public var userID: Int64
  public var strategy: RecoveryStrategy
  /// nil while trying; true or false once the step is done.
  public var succeeded: Bool?

  public init(userID: Int64, strategy: RecoveryStrategy, succeeded: Bool?) {
    self.userID = userID
    self.strategy = strategy
    self.succeeded = succeeded
  }
}

/// What recover will do for one user, decided from what is there before anything changes.
public struct UserRecoveryPlan: Codable, Sendable, Equatable {
  public enum Action: String, Codable, Sendable {
    /// File and database agree: nothing to do.
    case none
    /// Strategy 1: rebuild the session file from the database's session string.
    case rebuildFile = "rebuild-file"
    /// Strategy 2: keep the valid file and store its session string in the database.
    case storeString = "store-string"
    /// Strategy 3: write the session file from the newest valid backup.
    case restoreFile = "restore-file"
    /// No source holds a valid session: the user must log in again.
    case giveUp = "give-up"
  }

  public var userID: Int64
  public var action: Action
  /// Where the session comes from (the database's string, the file, an archive id, a
  /// `session_backups` row, the `.session.backup` file).
  public var source: String?
  /// The session file written.
  public var writes: String?
  /// The broken file moved aside first (with its `-journal`/`-wal`/`-shm`), never deleted.
  public var movesAside: String?
  /// Whether the database's session string is (re)written.
  public var storesString: Bool
  /// What was found; for a user who cannot be recovered, what was tried and why each failed.
  /// Never a secret.
  public var detail: String
  /// Set when the source is an unsigned archive (`--allow-unsigned`), naming it.
  public var warning: String?

  public init(
    userID: Int64, action: Action, source: String? = nil, writes: String? = nil, movesAside: String? = nil,
    storesString: Bool = false, detail: String, warning: String? = nil
  ) {
    self.userID = userID
    self.action = action
    self.source = source
    self.writes = writes
    self.movesAside = movesAside
    self.storesString = storesString
    self.detail = detail
    self.warning = warning
  }

  /// The strategy the action is.
  public var strategy: RecoveryStrategy? {
    switch action {
    case .rebuildFile: return .sessionString
    case .storeString: return .sessionFile
    case .restoreFile: return .backup
    case .none, .giveUp: return nil
    }
  }
}

/// What `tgsess recover` will do, user by user: a value that `--dry-run` prints and tests assert.
public struct RecoverPlan: Codable, Sendable, Equatable {
  public var users: [UserRecoveryPlan]
  /// Whether each recovered user then gets a "Post successful recovery" backup.
  public var backsUpRecovered: Bool

  public init(users: [UserRecoveryPlan], backsUpRecovered: Bool) {
    self.users = users
    self.backsUpRecovered = backsUpRecovered
  }
}

/// Recovers sessions with the seed's three strategies, accepting a result only if it validates.
/// Never deletes a session: a broken file is moved aside, never removed. Each user's step is
/// planned (`Planner`, a `UserRecoveryPlan` from what is there) and then carried out
/// (`Executor`); `plan` returns the steps of every user and changes nothing. A real run plans
/// each user just before carrying it out, under the lock, so that memory stays flat at any
/// fleet size and what was planned is what is there.
public enum RecoverJob {
  /// Recovers one user or all of them, under the deployment lock.
  /// - Throws: `JobError` when the deployment as a whole cannot be worked on (lock, database, a
  ///   missing Fernet key or age identity), or when a process holds a session file that is to be
  ///   replaced (`.refused`, naming it; the users before it stay recovered), and when a session
  ///   file cannot be read (an I/O error, not damage: nothing is changed for that user, the run
  ///   stops there, and a run once the disk is sound carries on).
  public static func run(
    _ deployment: Deployment, options: RecoverOptions = RecoverOptions(), logger: Logger,
    progress: (@Sendable (RecoverProgress) -> Void)? = nil
  ) throws -> RecoverResult {
    do {
      if !options.isForced, !options.isBotRunner {
        let evidence = LiveOwnerGuard.evidence(
          deployment, files: [], replacing: [], systemdUnit: deployment.config.check?.botUnit)
        if !evidence.isEmpty {
          throw JobError.refused(
            "refusing to recover while the bot runs: \(LiveOwnerRefusal.describe(evidence)); use the bot's /recover, or stop the bot, then run again (\(LiveOwnerRefusal.forceRisk))"
          )
        }
      }
      let identities = try archiveIdentities(deployment, options: options)
      let lock = try DeploymentLock.acquire(
        path: deployment.lockPath, command: options.userID.map { "recover --user \($0)" } ?? "recover --all",
        wait: options.lockWait)
      defer { lock.release() }
      // A recover killed while it wrote a session file left its temporary (an auth key in a
      // hidden file) beside the sessions; nothing else would ever remove it. A run for one user
      // writes that user's file alone, under a name it knows (`lockedTemporaryPath`): it removes
      // that one without listing the whole fleet's files; `recover --all` sweeps them all.
      let stale =
        options.userID.map { FileSystem.removeLockedTemporary(of: deployment.sessionPath(userID: $0)) }
        ?? FileSystem.removeStaleTemporaries(in: deployment.sessionsDirectory)
      for path in stale {
        logger.info("removed the temporary of an interrupted run", metadata: ["file.path": "\(path)"])
      }
      // So did one killed in the backup a recovery takes (the bot's /recover): its staging
      // directory holds plaintext session snapshots, and the next backup may be an hour away.
      for path in StagingArea.removeStale(in: deployment.backupsDirectory) {
        logger.info("removed the staging directory of an interrupted run", metadata: ["file.path": "\(path)"])
      }
      // A session/sidecar pair a crash left half-installed is completed before it is judged.
      let interrupted =
        try options.userID.map { try LiveFiles.finishInterruptedPair(sessionPath: deployment.sessionPath(userID: $0)) }
        ?? LiveFiles.finishInterruptedPairs(in: deployment.sessionsDirectory)
      for path in interrupted {
        logger.warning("completed an interrupted pair install", metadata: ["file.path": "\(path)"])
      }
      // And what its post-recovery backups left, which a rerun would not back up again.
      // (With --user, that user's post-recovery archives are the only ones it writes.)
      try Leftovers.remove(deployment, userID: options.userID, logger: logger)
      let database = try BotDatabase(
        path: deployment.databasePath, mode: .readWrite, busyTimeoutMS: deployment.busyTimeoutMS)
      defer { database.close() }
      let fernet = try KeyStore.loadFernet(deployment)
      try requireFernet(fernet, deployment: deployment, database: database)
      let users = try users(deployment, database: database, options: options)
      // Who has a session file open, read once; each file's locks are probed when it is replaced.
      let openFiles = options.isForced ? nil : LiveOwnerGuard.openFiles(users.map(deployment.sessionPath))
      let planner = Planner(
        deployment: deployment, database: database, fernet: fernet, identities: identities,
        allowsUnsigned: options.allowsUnsigned,
        announcesBackupSearch: { userID in
          progress?(RecoverProgress(userID: userID, strategy: .backup, succeeded: nil))
        })
      let executor = Executor(
        deployment: deployment, database: database, fernet: fernet, logger: logger, progress: progress,
        openFiles: openFiles)
      var results: [UserRecovery] = []
      for userID in users {
        var outcome = try executor.carryOut(try planner.plan(userID: userID), planner: planner)
        if outcome.outcome == .recovered, options.backsUpRecovered {
          do {
            let backup = try BackupJob.run(
              deployment,
              options: BackupOptions(
                config: deployment.config,
                overrides: BackupOptions.Overrides(userID: userID, reason: BackupReason.postRecovery)),
              logger: logger)
            outcome.backupID = backup.archives.first?.id
          } catch {
            logger.warning(
              "post-recovery backup failed",
              metadata: ["user.id": "\(userID)", "error": "\(error.localizedDescription)"])
            outcome.addWarning("the post-recovery backup failed: \(error.localizedDescription)")
          }
        }
        // The session is recovered either way; a health row that could not be written is said,
        // not dropped (the next check writes it again).
        do {
          try database.recordHealth(
            userID: userID, health: outcome.outcome == .unrecoverable ? .critical : .ok,
            error: outcome.outcome == .unrecoverable ? outcome.detail : nil)
        } catch {
          logger.warning(
            "recording the health failed", metadata: ["user.id": "\(userID)", "error": "\(error.localizedDescription)"])
          outcome.addWarning("its health could not be recorded: \(error.localizedDescription)")
        }
        results.append(outcome)
        try CrashPoint.hit("recover.between-users")
      }
      let result = RecoverResult(users: results)
      logger.notice(
        "recover done",
        metadata: [
          "users": "\(results.count)", "healthy": "\(result.healthy)", "recovered": "\(result.recovered)",
          "unrecoverable": "\(result.unrecoverable)",
        ])
      return result
    } catch let error as StoreError {
      throw JobError.store(context: "recover", underlying: error)
    }
  }

  /// What `run` would do with `options`, user by user; changes nothing (no lock, no cleanup, the
  /// database opened read-only). Backups are verified in a staging directory to find the one
  /// strategy 3 would use.
  /// - Throws: `JobError` when the deployment as a whole cannot be read (database, keys).
  public static func plan(_ deployment: Deployment, options: RecoverOptions = RecoverOptions(), logger: Logger) throws
    -> RecoverPlan
  {
    do {
      let identities = try archiveIdentities(deployment, options: options)
      let database = try BotDatabase(
        path: deployment.databasePath, mode: .readOnly, busyTimeoutMS: deployment.busyTimeoutMS)
      defer { database.close() }
      let fernet = try KeyStore.loadFernet(deployment)
      try requireFernet(fernet, deployment: deployment, database: database)
      let planner = Planner(
        deployment: deployment, database: database, fernet: fernet, identities: identities,
        allowsUnsigned: options.allowsUnsigned, announcesBackupSearch: nil)
      let steps = try users(deployment, database: database, options: options).map {
        try planner.plan(userID: $0).step
      }
      logger.info("recover planned", metadata: ["users": "\(steps.count)"])
      return RecoverPlan(users: steps, backsUpRecovered: options.backsUpRecovered)
    } catch let error as StoreError {
      throw JobError.store(context: "recover", underlying: error)
    }
  }

  /// The identities that open archives: `--identity FILE` (which must be there), else the
  /// deployment's identity file when it is on this host, else none (archives are then skipped,
  /// and a user only archives could save fails the run: `missingIdentity`).
  /// - Throws: `StoreError` for an identity file that is named but missing, unreadable or garbled.
  static func archiveIdentities(_ deployment: Deployment, options: RecoverOptions) throws -> [AgeIdentity] {
    if let path = options.identityPath { return try KeyStore.loadIdentities(deployment, path: path) }
    guard FileSystem.exists(deployment.ageIdentityPath) else { return [] }
    return try KeyStore.loadIdentities(deployment)
  }

  /// A database whose secrets are Fernet tokens cannot be read without a key: that is the
  /// deployment's failure, reported once, never a verdict on each user.
  /// - Throws: `StoreError.key` naming the key file and what to restore.
  static func requireFernet(_ fernet: Fernet?, deployment: Deployment, database: BotDatabase) throws {
    guard fernet == nil else { return }
    let census = try database.secretCensus(fernet: nil)
    guard census.undecryptable > 0 else { return }
    let environment = ProcessInfo.processInfo.environment
    throw StoreError.key(
      path: environment[KeyStore.fernetFileEnvironmentVariable].flatMap { $0.isEmpty ? nil : $0 }
        ?? deployment.fernetKeysPath,
      reason:
        "missing, and \(KeyStore.fernetEnvironmentVariable) is unset, so none of the database's \(census.undecryptable) encrypted secret(s) can be read; no user was changed",
      hint:
        "restore keys/fernet.keys from escrow (mode 600, owner tgsess) or set \(KeyStore.fernetEnvironmentVariable), then run recover again"
    )
  }

  /// The deployment-level failure of a user whose only sources are archives this host cannot
  /// open: the fault is the missing identity, not the user's session.
  static func missingIdentity(_ deployment: Deployment, userID: Int64, archives: Int) -> StoreError {
    StoreError.key(
      path: deployment.ageIdentityPath,
      reason:
        "not on this host, and user \(userID)'s session can only come from \(archives) encrypted archive(s) it would open",
      hint: "pass --identity FILE (the escrowed age identity), then run recover again")
  }

  /// The users to recover: the one asked for, or every user with a row or a file. A logged-out
  /// user without a file stays logged out: --all never brings a session back that the user ended.
  static func users(_ deployment: Deployment, database: BotDatabase, options: RecoverOptions) throws -> [Int64] {
    if let userID = options.userID {
      // A handed-over session lives on another host now: bringing it back here puts one key on two hosts.
      if !options.isForced, try database.botUserStatus(userID: userID).status == .handedOver {
        throw JobError.refused(
          "user \(userID) was handed over to another host (tgsess handover); recovering it here would use the same key on two hosts and Telegram revokes it (AUTH_KEY_DUPLICATED). Restore it here only after the other host handed it back: tgsess restore --from-remote REMOTE --user \(userID) --from-deployment OTHER"
        )
      }
      return [userID]
    }
    let files = Set(try deployment.sessionFileUserIDs())
    let loggedOut = Set(try database.userSummaries().filter { $0.status.hasEndedHere }.map(\.userID))
    return Set(try database.userIDs()).union(files).filter { !loggedOut.contains($0) || files.contains($0) }.sorted()
  }

  /// A session decoded from a string or a file; holds the secret, so it never leaves the job.
  struct DecodedString {
    var identity: SessionIdentity
    var pyrogram: PyrogramSessionPayload?
    var plaintext: String
    /// The validated session file itself, when the session came from one (an archive's entry,
    /// the .session.backup): putting it back keeps the entity cache and update state that a
    /// string cannot hold (notes/telegram-sessions.md §7).
    var fileBytes: Data?
    /// The JSON sidecar archived with that file, put back with it as one unit.
    var sidecarBytes: Data?
  }

  /// What is there for one user now.
  struct Diagnosis {
    var userID: Int64
    var path: String
    var file: SessionFileInfo?
    var stored: BotDatabase.StoredSession?
    var decoded: DecodedString?
    /// What was found wrong, then what was tried and why it failed.
    var notes: [String]
  }

  /// A user's plan with what carrying it out needs (never part of the plan: it holds secrets).
  struct Decision {
    var step: UserRecoveryPlan
    var diagnosis: Diagnosis
    /// The session to write (strategies 1 and 3).
    var session: DecodedString?
  }

  /// Decides each user's step from what is there. Reads only (a staging directory under
  /// backups/ aside, where backups are verified).
  final class Planner {
    let deployment: Deployment
    let database: BotDatabase
    let fernet: Fernet?
    /// The identities that open archives; empty when none is on this host.
    let identities: [AgeIdentity]
    /// Strategy 3 may use unsigned archives (`--allow-unsigned`).
    let allowsUnsigned: Bool
    /// Called when strategy 3 starts searching the backups (the live progress of a real run).
    let announcesBackupSearch: ((Int64) -> Void)?
    private var verifier: Result<ArchiveVerifier, StoreError>?

    init(
      deployment: Deployment, database: BotDatabase, fernet: Fernet?, identities: [AgeIdentity],
      allowsUnsigned: Bool = false,
      announcesBackupSearch: ((Int64) -> Void)?
    ) {
      self.deployment = deployment
      self.database = database
      self.fernet = fernet
      self.identities = identities
      self.allowsUnsigned = allowsUnsigned
      self.announcesBackupSearch = announcesBackupSearch
    }

    /// The plan of `userID`.
    /// - Throws: `StoreError` when the database cannot be read.
    func plan(userID: Int64) throws -> Decision {
      try decide(try diagnose(userID: userID))
    }

    func diagnose(userID: Int64) throws -> Diagnosis {
      let path = deployment.sessionPath(userID: userID)
      var diagnosis = Diagnosis(userID: userID, path: path, notes: [])
      do { diagnosis.file = try SessionFileInspector.inspect(path: path) } catch let error as StoreError {
        // A read that failed says nothing about the file, which may hold the newest session:
        // moving it aside and writing an older one in its place could lose it. Nothing is
        // changed; the error names the file, and a run once the disk is sound judges it.
        if error.isIOFailure { throw error }
        diagnosis.notes.append("file: \(reason(error))")
      }
      diagnosis.stored = try database.storedSession(userID: userID)
      if let secret = diagnosis.stored?.sessionString {
        do { diagnosis.decoded = try decode(secret, object: "user \(userID)'s session string") } catch let error
          as StoreError
        {
          diagnosis.notes.append("string: \(reason(error))")
        }
      } else {
        diagnosis.notes.append(diagnosis.stored == nil ? "string: no database row" : "string: empty")
      }
      return diagnosis
    }

    /// The first strategy that applies, strategies in `excluded` aside (one that failed when
    /// carried out).
    func decide(_ diagnosis: Diagnosis, excluding excluded: Set<RecoveryStrategy> = []) throws -> Decision {
      let (userID, path) = (diagnosis.userID, diagnosis.path)
      let movesAside = ([""] + LiveFiles.sidecarSuffixes).contains { FileSystem.exists(path + $0) } ? path : nil
      if let file = diagnosis.file, let decoded = diagnosis.decoded, Self.same(file, decoded) {
        return Decision(
          step: UserRecoveryPlan(userID: userID, action: .none, detail: "file and database agree"),
          diagnosis: diagnosis)
      }
      // 1. Session string → file, when the file is missing or invalid.
      if diagnosis.file == nil, let decoded = diagnosis.decoded, !excluded.contains(.sessionString) {
        return Decision(
          step: UserRecoveryPlan(
            userID: userID, action: .rebuildFile, source: "user_sessions.session_string", writes: path,
            movesAside: movesAside, detail: "rebuilt \(path) from the database's session string"),
          diagnosis: diagnosis, session: decoded)
      }
      // 2. A valid file whose string is missing, invalid or stale → write its string back.
      if diagnosis.file != nil, !excluded.contains(.sessionFile) {
        return Decision(
          step: UserRecoveryPlan(
            userID: userID, action: .storeString, source: path, storesString: true,
            detail: "kept \(path) and stored its session string in the database"),
          diagnosis: diagnosis)
      }
      // 3. Backups.
      announcesBackupSearch?(userID)
      var diagnosis = diagnosis
      if let (backup, source, warning) = try bestBackup(userID: userID, notes: &diagnosis.notes) {
        return Decision(
          step: UserRecoveryPlan(
            userID: userID, action: .restoreFile, source: source, writes: path, movesAside: movesAside,
            storesString: fernet != nil && diagnosis.decoded?.plaintext != backup.plaintext,
            detail: "restored \(path) from \(source)", warning: warning),
          diagnosis: diagnosis, session: backup)
      }
      return Decision(
        step: UserRecoveryPlan(
          userID: userID, action: .giveUp,
          detail: diagnosis.notes.joined(separator: "; ") + "; the user must log in again"),
        diagnosis: diagnosis)
    }

    func decode(_ secret: SecretText, object: String) throws -> DecodedString {
      let plaintext = try BotDatabase.reveal(secret, fernet: fernet, object: object)
        .trimmingCharacters(in: .whitespacesAndNewlines)
      if plaintext.hasPrefix("1"), [353, 369].contains(plaintext.count) {
        return DecodedString(
          identity: try TelethonStringSession.decode(plaintext, label: object), pyrogram: nil, plaintext: plaintext)
      }
      let payload = try PyrogramStringSession.decode(plaintext, label: object)
      return DecodedString(identity: payload.identity, pyrogram: payload, plaintext: plaintext)
    }

    static func same(_ info: SessionFileInfo, _ decoded: DecodedString) -> Bool {
      info.identity.authKey == decoded.identity.authKey && info.identity.dcID == decoded.identity.dcID
    }

    /// The verifier of this deployment's archives, with the identities that open them; the
    /// reason there is none (no key ring to authenticate archives with).
    func archiveVerifier() -> Result<ArchiveVerifier, StoreError> {
      if let verifier { return verifier }
      let made = Result {
        try ArchiveVerifier.forDeployment(deployment, identities: identities, allowsUnsigned: allowsUnsigned)
      }.mapError { StoreError.wrapping($0, path: deployment.signingPublicKeysPath) }
      verifier = made
      return made
    }

    /// The newest valid session among the user's backups, with where it came from and, for an
    /// unsigned archive (`--allow-unsigned`), the warning naming it.
    /// - Throws: `StoreError` when the database cannot be read, and the deployment-level
    ///   `missingIdentity` when only archives this host cannot open could hold the session.
    func bestBackup(userID: Int64, notes: inout [String]) throws -> (DecodedString, String, String?)? {
      let repository = ArchiveRepository(backupsDirectory: deployment.backupsDirectory)
      var unopened = 0
      // a. Per-user archives, then full snapshots, newest first (full records are read only when
      // no per-user archive holds a valid session: at fleet scale each lists every user), among
      // those signed by this deployment's key, ordered by what their signatures say. Each is
      // verified as a restore would, but only this user's entries are extracted and checked.
      switch archiveVerifier() {
      case .failure(let error):
        notes.append("archives: \(reason(error))")
      case .success(let verifier):
        for kind in [Manifest.Kind.user, .full] {
          let listed = try repository.list(kind: kind, userID: userID)
          let accepted = verifier.authenticator.accepted(listed, in: repository)
            .sorted { ($0.createdAt, $0.id) > ($1.createdAt, $1.id) }
          if accepted.count < listed.count {
            notes.append(
              "\(listed.count - accepted.count) \(kind == .user ? "per-user archive(s)" : "full snapshot(s)") skipped: \(ArchiveSigning.notSignedReason)"
            )
          }
          for record in accepted {
            // Without an identity an encrypted archive cannot be opened; that says nothing about it.
            if record.isEncrypted, identities.isEmpty {
              unopened += 1
              continue
            }
            let staging = try StagingArea(parent: deployment.backupsDirectory)
            defer { staging.remove() }
            do {
              let archive = try verifier.verify(record, in: repository, into: staging.path, scope: .user(userID))
              guard let entry = archive.manifest.entries.first(where: { $0.role == .session && $0.userID == userID }),
                let info = archive.sessions[entry.path], let staged = archive.extractedPath(of: entry)
              else { continue }
              var decoded = try RecoverJob.fromFile(info)
              decoded.fileBytes = try FileSystem.read(staged)
              if let sidecar = archive.manifest.entries.first(where: {
                $0.role == .sessionSidecar && $0.userID == userID
              }),
                let stagedSidecar = archive.extractedPath(of: sidecar)
              {
                decoded.sidecarBytes = try FileSystem.read(stagedSidecar)
              }
              let warning =
                archive.authentication == .unsigned
                ? RestoreJob.unsignedWarning(record.id, path: repository.path(of: record)) : nil
              return (decoded, "archive \(record.id)", warning)
            } catch let error as StoreError {
              notes.append("archive \(record.id): \(reason(error))")
            }
          }
        }
      }
      // b. session_backups rows.
      for row in try database.backupSessionStrings(userID: userID) {
        do {
          return (
            try decode(row.string, object: "session_backups row \(row.id)"), "session_backups row \(row.id)", nil
          )
        } catch let error as StoreError {
          notes.append("session_backups row \(row.id): \(reason(error))")
        }
      }
      // c. The seed's .session.backup file.
      let backupFile = deployment.sessionPath(userID: userID) + ".backup"
      if FileSystem.exists(backupFile) {
        do {
          // Read through SQLite (a consistent snapshot), never as raw bytes of a file in use.
          _ = try SessionFileInspector.inspect(path: backupFile)
          let staging = try StagingArea(parent: deployment.backupsDirectory)
          defer { staging.remove() }
          let snapshot = try staging.file("user_\(userID).session")
          try SQLiteSnapshot.take(source: backupFile, destination: snapshot)
          var decoded = try RecoverJob.fromFile(try SessionFileInspector.inspect(path: snapshot))
          decoded.fileBytes = try FileSystem.read(snapshot)
          return (decoded, backupFile, nil)
        } catch let error as StoreError {
          notes.append(".session.backup: \(reason(error))")
        }
      } else {
        notes.append("no per-user archive, full snapshot, session_backups row or .session.backup holds a valid session")
      }
      if unopened > 0 { throw RecoverJob.missingIdentity(deployment, userID: userID, archives: unopened) }
      return nil
    }

  }

  /// Carries out one user's plan; when writing the file from the session string fails, falls
  /// back to the backups (strategy 3), as the seed does.
  struct Executor {
    let deployment: Deployment
    let database: BotDatabase
    let fernet: Fernet?
    let logger: Logger
    let progress: (@Sendable (RecoverProgress) -> Void)?
    /// Who had the session files open when the run began; nil when forced (replace a session
    /// file even while a process holds it).
    let openFiles: OpenFileTable?

    func carryOut(_ decision: Decision, planner: Planner) throws -> UserRecovery {
      let step = decision.step
      let (userID, path) = (step.userID, decision.diagnosis.path)
      var notes = decision.diagnosis.notes
      switch step.action {
      case .none:
        return UserRecovery(userID: userID, outcome: .healthy, detail: step.detail)
      case .rebuildFile:
        report(userID, .sessionString, nil)
        do {
          try writeFile(step, session: decision.session!, apiID: decision.diagnosis.stored?.apiID)
          report(userID, .sessionString, true)
          return UserRecovery(
            userID: userID, outcome: .recovered, strategy: .sessionString, source: step.source, detail: step.detail)
        } catch let error as StoreError {
          report(userID, .sessionString, false)
          var diagnosis = decision.diagnosis
          diagnosis.notes.append("writing the file failed: \(reason(error))")
          return try carryOut(try planner.decide(diagnosis, excluding: [.sessionString]), planner: planner)
        }
      case .storeString:
        report(userID, .sessionFile, nil)
        do {
          try storeString(userID: userID, from: decision.diagnosis.file!)
          report(userID, .sessionFile, true)
          return UserRecovery(
            userID: userID, outcome: .recovered, strategy: .sessionFile, source: step.source, detail: step.detail)
        } catch let error as StoreError {
          report(userID, .sessionFile, false)
          // The file itself is valid: the user can run; only the database copy is missing.
          return UserRecovery(
            userID: userID, outcome: .recovered, strategy: .sessionFile, source: step.source,
            detail: "kept the valid \(path); the database string could not be updated (\(reason(error)))")
        }
      case .restoreFile:
        // The planner announced the backup search when it began.
        do {
          try writeFile(step, session: decision.session!, apiID: decision.diagnosis.stored?.apiID)
          report(userID, .backup, true)
          return UserRecovery(
            userID: userID, outcome: .recovered, strategy: .backup, source: step.source, detail: step.detail,
            warning: step.warning)
        } catch let error as StoreError {
          notes.append("writing the file failed: \(reason(error))")
        }
        report(userID, .backup, false)
        return UserRecovery(
          userID: userID, outcome: .unrecoverable,
          detail: notes.joined(separator: "; ") + "; the user must log in again")
      case .giveUp:
        report(userID, .backup, false)
        return UserRecovery(userID: userID, outcome: .unrecoverable, detail: step.detail)
      }
    }

    func report(_ userID: Int64, _ strategy: RecoveryStrategy, _ succeeded: Bool?) {
      progress?(RecoverProgress(userID: userID, strategy: strategy, succeeded: succeeded))
    }

    /// Writes the session file (moving a broken one aside, never deleting it) and stores the
    /// string in the database when the plan says so.
    func writeFile(_ step: UserRecoveryPlan, session: DecodedString, apiID: Int64?) throws {
      guard let path = step.writes else { return }
      try refuseIfHeld(path, userID: step.userID)
      try FileSystem.makeDirectory(deployment.sessionsDirectory)
      if let aside = try LiveFiles.moveAside(path, label: "broken") {
        logger.warning(
          "moved a broken session file aside", metadata: ["user.id": "\(step.userID)", "file.path": "\(aside)"])
      }
      // Written under the name a rerun for this user removes (`RecoverJob.run`).
      let temporary = FileSystem.lockedTemporaryPath(for: path)
      if let bytes = session.fileBytes, let sidecarBytes = session.sidecarBytes {
        try installPair(userID: step.userID, sessionBytes: bytes, sidecarBytes: sidecarBytes)
      } else if let bytes = session.fileBytes {
        try FileSystem.writeAtomically(bytes, to: path, overwrite: false, temporaryPath: temporary)
      } else if var payload = session.pyrogram {
        if payload.apiID == nil, let apiID { payload.apiID = Int(apiID) }
        try SessionFileWriter.writePyrogram(payload, to: path, temporaryPath: temporary)
      } else {
        try SessionFileWriter.writeTelethon(
          identity: session.identity, version: telethonVersion(), ownerUserID: step.userID, to: path,
          temporaryPath: temporary)
      }
      // Accepted only if what is now on disk validates and holds the session it was built from.
      let written = try SessionFileInspector.inspect(path: path)
      guard written.identity.authKey == session.identity.authKey, written.identity.dcID == session.identity.dcID else {
        throw StoreError.invalid(
          path: path, reason: "the rebuilt file does not hold the session it was built from",
          hint: "this is a tgsess bug; report it")
      }
      if step.storesString, let fernet {
        try database.storeSessionString(userID: step.userID, plaintext: session.plaintext, fernet: fernet)
      }
    }

    /// Puts an archived session file and its JSON sidecar back as one unit (`LiveFiles.installPair`).
    /// A live sidecar that differs is moved aside first (kept, never deleted).
    func installPair(userID: Int64, sessionBytes: Data, sidecarBytes: Data) throws {
      let sidecarPath = deployment.sidecarPath(userID: userID)
      if FileSystem.exists(sidecarPath), try FileSystem.read(sidecarPath) != sidecarBytes,
        let aside = try LiveFiles.moveAside(sidecarPath, label: "before-recover")
      {
        logger.warning("moved a session sidecar aside", metadata: ["user.id": "\(userID)", "file.path": "\(aside)"])
      }
      let staging = try StagingArea(parent: deployment.backupsDirectory)
      defer { staging.remove() }
      let stagedSession = try staging.file("user_\(userID).session")
      let stagedSidecar = try staging.file("user_\(userID)" + SessionSidecar.suffix)
      try FileSystem.writeAtomically(sessionBytes, to: stagedSession)
      try FileSystem.writeAtomically(sidecarBytes, to: stagedSidecar)
      try LiveFiles.installPair(
        session: .init(source: stagedSession, destination: deployment.sessionPath(userID: userID)),
        sidecar: .init(source: stagedSidecar, destination: sidecarPath))
    }

    /// The live-owner guard for one file: a process that has it open or holds an SQLite lock on
    /// it would keep writing into the file once it is moved aside.
    /// - Throws: `JobError.refused` naming the process, unless forced.
    func refuseIfHeld(_ path: String, userID: Int64) throws {
      guard let openFiles else {
        // Forced: say what is overridden.
        let holders = LiveOwnerGuard.holders(of: [path])
        if !holders.isEmpty {
          let described = holders.map(\.description).joined(separator: "; ")
          logger.warning("recover forced", metadata: ["user.id": "\(userID)", "evidence": "\(described)"])
        }
        return
      }
      let holders = LiveOwnerGuard.holders(of: [path], openFiles: openFiles)
      guard !holders.isEmpty else { return }
      throw JobError.refused(
        "refusing to recover user \(userID) while their session file is in use: \(holders.map(\.description).joined(separator: "; ")); stop that process, then run again (\(LiveOwnerRefusal.forceRisk))"
      )
    }

    /// Stores the file's session string in the database (Fernet-encrypted).
    func storeString(userID: Int64, from file: SessionFileInfo) throws {
      guard let fernet else {
        throw StoreError.key(
          path: deployment.fernetKeysPath, reason: "no Fernet key to encrypt the session string with",
          hint: "run tgsess init, or set TGSESS_FERNET_KEYS")
      }
      let decoded = try RecoverJob.fromFile(file)
      try database.storeSessionString(userID: userID, plaintext: decoded.plaintext, fernet: fernet)
    }

    /// The Telethon schema the deployment's bot uses: the most common among its files (an older
    /// Telethon cannot open a newer file), 7 when there is none.
    func telethonVersion() -> Int {
      var counts: [Int: Int] = [:]
      // A handful of neighbours decide (each inspection opens a file; 50 of them were most of a
      // single-user recover at 10,000 users), the first the directory returns: listing and
      // sorting every session file to pick them was what grew with the fleet.
      for userID in (try? deployment.sessionFileUserIDs(sample: 7)) ?? [] {
        if let info = try? SessionFileInspector.inspect(path: deployment.sessionPath(userID: userID)),
          case .telethon(let version) = info.format
        {
          counts[version, default: 0] += 1
        }
      }
      let best = counts.max { ($0.value, $0.key) < ($1.value, $1.key) }?.key ?? 7
      return SessionFileWriter.telethonVersions.contains(best) ? best : 7
    }
  }

  /// A file's session as a string (Telethon's StringSession, or Pyrogram's).
  static func fromFile(_ info: SessionFileInfo) throws -> DecodedString {
    if info.format.isTelethon {
      return DecodedString(identity: info.identity, pyrogram: nil, plaintext: try info.telethonString())
    }
    let payload = try info.pyrogramPayload()
    return DecodedString(
      identity: info.identity, pyrogram: payload, plaintext: try PyrogramStringSession.encode(payload))
  }

  /// A store error as a reason, without the object it names twice.
  static func reason(_ error: StoreError) -> String {
    if case .session(_, let problem) = error { return problem.description }
    return error.errorDescription ?? "\(error)"
  }
}

extension RecoverJob.Planner {
  func reason(_ error: StoreError) -> String { RecoverJob.reason(error) }
}

extension RecoverJob.Executor {
  func reason(_ error: StoreError) -> String { RecoverJob.reason(error) }
}

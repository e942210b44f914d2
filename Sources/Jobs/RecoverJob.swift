import Foundation
import Logging
import Store

/// Options of `tgsess recover`.
public struct RecoverOptions: Sendable {
  /// One user, or nil for every user (rows and files).
  public var userID: Int64?
  /// Recover although the bot seems to run (the bot runner itself calls the job in-process).
  public var isForced: Bool
  /// Seconds to wait for the deployment lock.
  public var lockWait: TimeInterval
  /// Take a "Post successful recovery" backup of each recovered user.
  public var backsUpRecovered: Bool

  public init(userID: Int64? = nil, isForced: Bool = false, lockWait: TimeInterval = 0, backsUpRecovered: Bool = true) {
    self.userID = userID
    self.isForced = isForced
    self.lockWait = lockWait
    self.backsUpRecovered = backsUpRecovered
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
}

/// Recovers sessions with the seed's three strategies, accepting a result only if it validates.
/// Never deletes a session: a broken file is moved aside, never removed.
public enum RecoverJob {
  /// Recovers one user or all of them, under the deployment lock.
  /// - Throws: `JobError` when the deployment as a whole cannot be worked on (lock, database).
  public static func run(
    _ deployment: Deployment, options: RecoverOptions = RecoverOptions(), logger: Logger,
    progress: (@Sendable (RecoverProgress) -> Void)? = nil
  ) throws -> RecoverResult {
    do {
      if !options.isForced {
        let evidence = LiveOwnerGuard.evidence(deployment, files: [], systemdUnit: deployment.config.check?.botUnit)
        if !evidence.isEmpty {
          throw JobError.refused(
            "refusing to recover while the bot runs: \(evidence.joined(separator: "; ")); use the bot's /recover, stop the bot, or pass --force"
          )
        }
      }
      let lock = try DeploymentLock.acquire(
        path: deployment.lockPath, command: options.userID.map { "recover --user \($0)" } ?? "recover --all",
        wait: options.lockWait)
      defer { lock.release() }
      // A recover killed while it wrote a session file left its temporary (an auth key in a
      // hidden file) beside the sessions; nothing else would ever remove it.
      for path in FileSystem.removeStaleTemporaries(in: deployment.sessionsDirectory) {
        logger.info("removed the temporary of an interrupted run", metadata: ["file.path": "\(path)"])
      }
      let database = try BotDatabase(
        path: deployment.databasePath, mode: .readWrite, busyTimeoutMS: deployment.busyTimeoutMS)
      defer { database.close() }
      let fernet = try KeyStore.loadFernet(deployment)
      let users: [Int64]
      if let userID = options.userID {
        users = [userID]
      } else {
        // A logged-out user without a file stays logged out: --all never brings a session back
        // that the user ended.
        let files = Set(try deployment.sessionFileUserIDs())
        let loggedOut = Set(try database.userSummaries().filter { $0.status == .loggedOut }.map(\.userID))
        users = Set(try database.userIDs()).union(files).filter { !loggedOut.contains($0) || files.contains($0) }
          .sorted()
      }
      let recoverer = Recoverer(
        deployment: deployment, database: database, fernet: fernet, logger: logger, progress: progress)
      var results: [UserRecovery] = []
      for userID in users {
        var outcome = try recoverer.recover(userID: userID)
        if outcome.outcome == .recovered, options.backsUpRecovered {
          do {
            let backup = try BackupJob.run(
              deployment, options: BackupOptions(userID: userID, reason: BackupReason.postRecovery), logger: logger)
            outcome.backupID = backup.archives.first?.id
          } catch {
            logger.warning(
              "post-recovery backup failed",
              metadata: ["user.id": "\(userID)", "error": "\(error.localizedDescription)"])
          }
        }
        try? database.recordHealth(
          userID: userID, health: outcome.outcome == .unrecoverable ? .critical : .ok,
          error: outcome.outcome == .unrecoverable ? outcome.detail : nil)
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

  /// The per-user logic.
  struct Recoverer {
    let deployment: Deployment
    let database: BotDatabase
    let fernet: Fernet?
    let logger: Logger
    let progress: (@Sendable (RecoverProgress) -> Void)?

    /// A session decoded from a string.
    struct DecodedString {
      var identity: SessionIdentity
      var pyrogram: PyrogramSessionPayload?
      var plaintext: String
      /// The validated session file itself, when the session came from one (an archive's entry,
      /// the .session.backup): putting it back keeps the entity cache and update state that a
      /// string cannot hold (notes/telegram-sessions.md §7).
      var fileBytes: Data?
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

    func same(_ info: SessionFileInfo, _ decoded: DecodedString) -> Bool {
      info.identity.authKey == decoded.identity.authKey && info.identity.dcID == decoded.identity.dcID
    }

    func recover(userID: Int64) throws -> UserRecovery {
      let path = deployment.sessionPath(userID: userID)
      var notes: [String] = []
      // What is there now.
      var file: SessionFileInfo?
      do { file = try SessionFileInspector.inspect(path: path) } catch let error as StoreError {
        notes.append("file: \(Self.reason(error))")
      }
      let stored = try database.storedSession(userID: userID)
      var decoded: DecodedString?
      if let secret = stored?.sessionString {
        do { decoded = try decode(secret, object: "user \(userID)'s session string") } catch let error as StoreError {
          notes.append("string: \(Self.reason(error))")
        }
      } else {
        notes.append(stored == nil ? "string: no database row" : "string: empty")
      }
      if let file, let decoded, same(file, decoded) {
        return UserRecovery(userID: userID, outcome: .healthy, detail: "file and database agree")
      }

      // 1. Session string → file, when the file is missing or invalid.
      if file == nil, let decoded {
        step(userID, .sessionString, nil)
        do {
          try writeFile(userID: userID, path: path, from: decoded, apiID: stored?.apiID)
          step(userID, .sessionString, true)
          return UserRecovery(
            userID: userID, outcome: .recovered, strategy: .sessionString, source: "user_sessions.session_string",
            detail: "rebuilt \(path) from the database's session string")
        } catch let error as StoreError {
          step(userID, .sessionString, false)
          notes.append("writing the file failed: \(Self.reason(error))")
        }
      }
      // 2. A valid file whose string is missing, invalid or stale → write its string back.
      if let file {
        step(userID, .sessionFile, nil)
        do {
          try storeString(userID: userID, from: file)
          step(userID, .sessionFile, true)
          return UserRecovery(
            userID: userID, outcome: .recovered, strategy: .sessionFile, source: path,
            detail: "kept \(path) and stored its session string in the database")
        } catch let error as StoreError {
          step(userID, .sessionFile, false)
          notes.append("storing the string failed: \(Self.reason(error))")
          // The file itself is valid: the user can run; only the database copy is missing.
          return UserRecovery(
            userID: userID, outcome: .recovered, strategy: .sessionFile, source: path,
            detail: "kept the valid \(path); the database string could not be updated (\(Self.reason(error)))")
        }
      }
      // 3. Backups.
      step(userID, .backup, nil)
      if let (decodedBackup, source) = try bestBackup(userID: userID, notes: &notes) {
        do {
          try writeFile(userID: userID, path: path, from: decodedBackup, apiID: stored?.apiID)
          step(userID, .backup, true)
          return UserRecovery(
            userID: userID, outcome: .recovered, strategy: .backup, source: source,
            detail: "restored \(path) from \(source)")
        } catch let error as StoreError {
          notes.append("writing the file failed: \(Self.reason(error))")
        }
      }
      step(userID, .backup, false)
      return UserRecovery(
        userID: userID, outcome: .unrecoverable, detail: notes.joined(separator: "; ") + "; the user must log in again")
    }

    func step(_ userID: Int64, _ strategy: RecoveryStrategy, _ succeeded: Bool?) {
      progress?(RecoverProgress(userID: userID, strategy: strategy, succeeded: succeeded))
    }

    static func reason(_ error: StoreError) -> String {
      if case .session(_, let problem) = error { return problem.description }
      return error.errorDescription ?? "\(error)"
    }

    /// The newest valid session among the user's backups, with where it came from.
    func bestBackup(userID: Int64, notes: inout [String]) throws -> (DecodedString, String)? {
      let repository = ArchiveRepository(backupsDirectory: deployment.backupsDirectory)
      let identities =
        FileSystem.exists(deployment.ageIdentityPath) ? (try? KeyStore.loadIdentities(deployment)) ?? [] : []
      // a. Per-user archives, then full snapshots, newest first (full records are read only when
      // no per-user archive holds a valid session: at fleet scale each lists every user).
      for kind in [Manifest.Kind.user, .full] {
        for record in try repository.list(kind: kind, userID: userID) {
          let staging = try StagingArea(parent: deployment.backupsDirectory)
          defer { staging.remove() }
          do {
            let manifest = try ArchiveReader.read(
              path: repository.path(of: record), identities: identities, extractTo: staging.path)
            guard let entry = manifest.entries.first(where: { $0.role == .session && $0.userID == userID }) else {
              continue
            }
            let staged = staging.path + "/" + entry.path
            if var decoded = try fromFile(try SessionFileInspector.inspect(path: staged)) {
              decoded.fileBytes = try FileSystem.read(staged)
              return (decoded, "archive \(record.id)")
            }
          } catch let error as StoreError {
            notes.append("archive \(record.id): \(Self.reason(error))")
          }
        }
      }
      // b. session_backups rows.
      for row in try database.backupSessionStrings(userID: userID) {
        do {
          return (try decode(row.string, object: "session_backups row \(row.id)"), "session_backups row \(row.id)")
        } catch let error as StoreError {
          notes.append("session_backups row \(row.id): \(Self.reason(error))")
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
          if var decoded = try fromFile(try SessionFileInspector.inspect(path: snapshot)) {
            decoded.fileBytes = try FileSystem.read(snapshot)
            return (decoded, backupFile)
          }
        } catch let error as StoreError {
          notes.append(".session.backup: \(Self.reason(error))")
        }
      } else {
        notes.append("no per-user archive, full snapshot, session_backups row or .session.backup holds a valid session")
      }
      return nil
    }

    /// A file's session as a string (Telethon's StringSession, or Pyrogram's).
    func fromFile(_ info: SessionFileInfo) throws -> DecodedString? {
      if info.format.isTelethon {
        return DecodedString(identity: info.identity, pyrogram: nil, plaintext: try info.telethonString())
      }
      let payload = try info.pyrogramPayload()
      return DecodedString(
        identity: info.identity, pyrogram: payload, plaintext: try PyrogramStringSession.encode(payload))
    }

    /// Writes the session file (moving a broken one aside, never deleting it) and stores the
    /// string in the database when it differs.
    func writeFile(userID: Int64, path: String, from decoded: DecodedString, apiID: Int64?) throws {
      try FileSystem.makeDirectory(deployment.sessionsDirectory)
      if FileSystem.exists(path) {
        // A name no earlier broken copy has: rename(2) would silently replace one moved aside
        // within the same second (a second recover of the same user).
        let stamp = path + ".broken-" + Timestamp.compact(Date())
        var aside = stamp
        var attempt = 1
        while ["", "-journal", "-wal", "-shm"].contains(where: { FileSystem.exists(aside + $0) }) {
          attempt += 1
          aside = stamp + "-\(attempt)"
        }
        for suffix in ["", "-journal", "-wal", "-shm"] where FileSystem.exists(path + suffix) {
          if rename(path + suffix, aside + suffix) != 0 {
            throw StoreError.io(path: path + suffix, operation: "move aside", errno: errno)
          }
        }
        logger.warning(
          "moved a broken session file aside", metadata: ["user.id": "\(userID)", "file.path": "\(aside)"])
      }
      if let bytes = decoded.fileBytes {
        try FileSystem.writeAtomically(bytes, to: path, overwrite: false)
      } else if var payload = decoded.pyrogram {
        if payload.apiID == nil, let apiID { payload.apiID = Int(apiID) }
        try SessionFileWriter.writePyrogram(payload, to: path)
      } else {
        try SessionFileWriter.writeTelethon(
          identity: decoded.identity, version: telethonVersion(), ownerUserID: userID, to: path)
      }
      // Accepted only if what is now on disk validates and holds the session it was built from.
      let written = try SessionFileInspector.inspect(path: path)
      guard written.identity.authKey == decoded.identity.authKey, written.identity.dcID == decoded.identity.dcID else {
        throw StoreError.invalid(
          path: path, reason: "the rebuilt file does not hold the session it was built from",
          hint: "this is a tgsess bug; report it")
      }
      if let fernet {
        let stored = try database.storedSession(userID: userID)
        let current = stored?.sessionString.flatMap { try? decode($0, object: "user \(userID)") }
        if current?.plaintext != decoded.plaintext {
          try database.storeSessionString(userID: userID, plaintext: decoded.plaintext, fernet: fernet)
        }
      }
    }

    /// Stores the file's session string in the database (Fernet-encrypted).
    func storeString(userID: Int64, from file: SessionFileInfo) throws {
      guard let fernet else {
        throw StoreError.key(
          path: deployment.fernetKeysPath, reason: "no Fernet key to encrypt the session string with",
          hint: "run tgsess init, or set TGSESS_FERNET_KEYS")
      }
      guard let decoded = try fromFile(file) else { return }
      try database.storeSessionString(userID: userID, plaintext: decoded.plaintext, fernet: fernet)
    }

    /// The Telethon schema the deployment's bot uses: the most common among its files (an older
    /// Telethon cannot open a newer file), 7 when there is none.
    func telethonVersion() -> Int {
      var counts: [Int: Int] = [:]
      // A handful of neighbours decide (each inspection opens a file; 50 of them were most of a
      // single-user recover at 10,000 users).
      for userID in (try? deployment.sessionFileUserIDs().prefix(7)) ?? [] {
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
}

import Foundation
import Logging
import Store

/// One finding.
public struct CheckFinding: Codable, Sendable, Equatable {
  /// Stable name: `db.open`, `db.lock`, `db.integrity`, `db.schema`, `user.session`, `user.secret`,
  /// `user.agree`, `user.backup-file`, `user.permissions`, `user.orphan-file`, `user.orphan-row`,
  /// `user.no-backup`, `user.probe`, `backup.age`, `backup.deep`, `backup.disk`, `keys`, `drill.age`.
  public var check: String
  public var state: HealthState
  public var message: String
  public var userID: Int64?
}

/// Options of `tgsess check`.
public struct CheckOptions: Sendable {
  /// integrity_check instead of quick_check, and decrypt-and-hash the newest archives.
  public var isDeep: Bool
  /// The newest full snapshot must be younger than this (seconds).
  public var maxBackupAge: TimeInterval
  /// Warn below this much free space on backups/ (bytes).
  public var minFreeBytes: Int64
  /// Warn when the newest successful drill is older (seconds), once a drill has run.
  public var maxDrillAge: TimeInterval
  /// Per-user archives verified by `--deep`, rotating day by day.
  public var deepSample: Int
  /// Write per-user results to the database (the only write check makes).
  public var writesResults: Bool
  /// A live probe run per session: the command, then the session file as its argument.
  public var probeCommand: [String]?
  public var probeTimeout: TimeInterval
  /// The probe's first backoff ceiling (it doubles per retry, with full jitter).
  public var probeRetryBase: Duration
  public var now: Date

  public init(
    isDeep: Bool = false, maxBackupAge: TimeInterval = 7200, minFreeBytes: Int64 = 1024 * 1024 * 1024,
    maxDrillAge: TimeInterval = 8 * 86400, deepSample: Int = 20, writesResults: Bool = true,
    probeCommand: [String]? = nil, probeTimeout: TimeInterval = 30, probeRetryBase: Duration = .seconds(1),
    now: Date = Date()
  ) {
    self.isDeep = isDeep
    self.maxBackupAge = maxBackupAge
    self.minFreeBytes = minFreeBytes
    self.maxDrillAge = maxDrillAge
    self.deepSample = deepSample
    self.writesResults = writesResults
    self.probeCommand = probeCommand
    self.probeTimeout = probeTimeout
    self.probeRetryBase = probeRetryBase
    self.now = now
  }
}

/// The outcome of `tgsess check`, a stable schema for `--json`.
public struct CheckResult: Codable, Sendable, Equatable {
  public struct Sessions: Codable, Sendable, Equatable {
    public var ok = 0
    public var warning = 0
    public var critical = 0
  }
  public var state: HealthState
  public var summary: String
  public var findings: [CheckFinding]
  public var sessions: Sessions
  public var users: Int
  public var lastFullBackupAt: Date?
  public var lastFullBackupAgeSeconds: Int?
  public var archives: Int
  public var freeBytes: Int64?
  public var durationSeconds: Double
  public var checkedAt: Date
}

/// Health checks that monitoring can read. Read-only on the bot's data: session files are opened
/// read-only through SQLite; the only write is the per-user result in the database.
public enum CheckJob {
  /// Runs every check.
  /// - Throws: only for bad options; everything found is a finding.
  public static func run(_ deployment: Deployment, options: CheckOptions = CheckOptions(), logger: Logger)
    -> CheckResult
  {
    let started = Date()
    var findings: [CheckFinding] = []
    // One cause, one finding: the key file is judged both when loaded and in the key checks.
    // (Only deployment-wide findings can repeat; per-user ones are not searched, so adding stays O(1).)
    var deploymentWide = Set<String>()
    func add(_ check: String, _ state: HealthState, _ message: String, user: Int64? = nil) {
      if user == nil, !deploymentWide.insert(check + "\u{0}" + message).inserted { return }
      findings.append(CheckFinding(check: check, state: state, message: message, userID: user))
    }

    // Keys first: the per-user secret check needs them. A key file that cannot be loaded is one
    // finding, not one per user.
    var fernet: Fernet?
    var isFernetUsable = true
    do { fernet = try KeyStore.loadFernet(deployment) } catch let error as StoreError {
      isFernetUsable = false
      add("keys", .critical, error.errorDescription ?? "\(error)")
    } catch {
      isFernetUsable = false
      add("keys", .critical, "\(error)")
    }

    // The database.
    var database: BotDatabase?
    var rows: [BotDatabase.UserForCheck] = []
    // Without the rows, "no row for this file" and the secret checks would be noise for every user.
    var hasRows = false
    // A damaged database is never written to, not even the results.
    var isDatabaseSound = false
    do {
      let opened = try BotDatabase(
        path: deployment.databasePath, mode: .readOnly, busyTimeoutMS: deployment.busyTimeoutMS)
      database = opened
      let problems = try opened.integrityProblems(deep: options.isDeep)
      isDatabaseSound = problems.isEmpty
      if !problems.isEmpty {
        add(
          "db.integrity", .critical,
          "\(deployment.databasePath) fails \(options.isDeep ? "integrity_check" : "quick_check"): \(problems.prefix(3).map { $0.replacingOccurrences(of: "\n", with: " ") }.joined(separator: "; ")); restore it: tgsess restore latest"
        )
      }
      let schema = try opened.schemaStatus()
      if !schema.unknown.isEmpty {
        add(
          "db.schema", .critical,
          "\(deployment.databasePath) was made by a newer tgsess (unknown migrations: \(schema.unknown.joined(separator: ", "))); upgrade tgsess"
        )
      } else if !schema.pending.isEmpty {
        add(
          "db.schema", .warning,
          "\(deployment.databasePath) schema is at version \(schema.version), not \(BotSchema.currentVersion); run tgsess migrate"
        )
      }
      rows = try opened.usersForCheck()
      hasRows = true
    } catch let error as StoreError where BotDatabase.isBusy(error) {
      add(
        "db.lock", .warning,
        "\(deployment.databasePath) stayed locked by another process longer than busy_timeout_ms (\(deployment.busyTimeoutMS) ms), so it was not checked; if this persists, find the holder with: fuser -v \(deployment.databasePath)"
      )
    } catch let error as StoreError {
      add("db.open", .critical, error.errorDescription ?? "\(error)")
    } catch {
      add("db.open", .critical, "\(deployment.databasePath): \(error)")
    }
    defer { database?.close() }

    // Archives.
    let repository = ArchiveRepository(backupsDirectory: deployment.backupsDirectory)
    let archives = (try? repository.list()) ?? []
    let newestFull = archives.first { $0.kind == .full && $0.isVerified }
    var usersWithBackups = Set<Int64>()
    for record in archives {
      if record.kind == .user, let user = record.userID {
        usersWithBackups.insert(user)
      } else {
        usersWithBackups.formUnion(record.userIDs)
      }
    }

    // Per user.
    let fileUsers = Set((try? deployment.sessionFileUserIDs()) ?? [])
    var perUser: [Int64: HealthState] = [:]
    // Users with a session file and not logged out: the only ones a live probe can judge.
    var probed: [Int64] = []
    let rowByUser = Dictionary(rows.map { ($0.userID, $0) }, uniquingKeysWith: { first, _ in first })
    // Reading thousands of session files is most of the work: done first, on a few threads.
    let inspected = Self.inspectFiles(deployment, users: fileUsers.sorted(), isDeep: options.isDeep)
    for userID in Set(rowByUser.keys).union(fileUsers).sorted() {
      var state = HealthState.ok
      func note(_ check: String, _ level: HealthState, _ message: String) {
        add(check, level, message, user: userID)
        state = max(state, level)
      }
      let row = rowByUser[userID]
      if let row, row.status == .loggedOut, !fileUsers.contains(userID) {
        perUser[userID] = .ok
        continue
      }
      if fileUsers.contains(userID) { probed.append(userID) }
      let path = deployment.sessionPath(userID: userID)
      var file: SessionFileInfo?
      if fileUsers.contains(userID), let inspection = inspected[userID] {
        do { file = try inspection.file.get() } catch let error as StoreError {
          let text = (error.errorDescription ?? "\(error)").replacingOccurrences(
            of: "tgsess recover --user ID", with: "tgsess recover --user \(userID)")
          switch error {
          case .session(_, .hotJournal), .session(_, .locked):
            // A writer is active (or died mid-transaction): not damage, and recovering would race it.
            note("user.session", .warning, "user \(userID): \(text)")
          default:
            note(
              "user.session", .critical,
              "user \(userID): \(text)"
                + (text.contains("tgsess recover") ? "" : "; run: tgsess recover --user \(userID)"))
          }
        } catch {
          note("user.session", .critical, "user \(userID): \(path): \(error)")
        }
        if let mode = inspection.mode, mode & 0o077 != 0 {
          note(
            "user.permissions", .warning,
            "user \(userID): \(path) has mode \(String(mode, radix: 8)); run: chmod 600 \(path)")
        }
      }
      if row == nil, hasRows {
        note(
          "user.orphan-file", .warning,
          "user \(userID): \(path) has no user_sessions row; run: tgsess recover --user \(userID)")
      } else if !fileUsers.contains(userID) {
        note(
          "user.orphan-row", .critical, "user \(userID): no session file \(path); run: tgsess recover --user \(userID)")
      }
      if let row, row.status == .revoked {
        note(
          "user.session", .warning,
          "user \(userID): marked revoked by a confirmed fatal error; the user must log in again")
      }
      // The database's secret decrypts and agrees with the file.
      if let row, isFernetUsable {
        if let secret = row.sessionString {
          do {
            let plaintext = try BotDatabase.reveal(secret, fernet: fernet, object: "user \(userID)'s session string")
            let identity = try Self.identity(ofString: plaintext, userID: userID)
            if let file, file.identity.authKey != identity.authKey || file.identity.dcID != identity.dcID {
              note(
                "user.agree", .warning,
                "user \(userID): the database's session string (dc \(identity.dcID), key \(identity.authKey.fingerprint)) differs from the file (dc \(file.identity.dcID), key \(file.identity.authKey.fingerprint)); run: tgsess recover --user \(userID)"
              )
            }
          } catch let error as StoreError {
            note("user.secret", file == nil ? .critical : .warning, "user \(userID): \(error.errorDescription ?? "")")
          } catch {
            note("user.secret", .warning, "user \(userID): \(error)")
          }
        } else if file != nil {
          note(
            "user.secret", .warning,
            "user \(userID): no session string in the database; run: tgsess recover --user \(userID)")
        }
      }
      // The seed's .session.backup agrees or is older.
      let backupPath = path + ".backup"
      if let file, let backupFile = inspected[userID]?.backupFile {
        if let backup = try? backupFile.get() {
          if backup.identity.authKey != file.identity.authKey,
            let backupAge = try? FileSystem.age(of: backupPath), let fileAge = try? FileSystem.age(of: path),
            backupAge < fileAge
          {
            note(
              "user.backup-file", .warning,
              "user \(userID): \(backupPath) is newer than the session file but holds another key")
          }
        } else {
          note("user.backup-file", .warning, "user \(userID): \(backupPath) is not a valid session file")
        }
      }
      if !usersWithBackups.contains(userID) {
        note("user.no-backup", .warning, "user \(userID): no archive holds this user; run: tgsess backup")
      }
      perUser[userID] = state
    }
    if let mode = try? FileSystem.mode(of: deployment.sessionsDirectory), mode & 0o077 != 0 {
      add(
        "user.permissions", .warning,
        "\(deployment.sessionsDirectory) has mode \(String(mode, radix: 8)); run: chmod 700 \(deployment.sessionsDirectory)"
      )
    }

    // Backups.
    var ageSeconds: Int?
    if let newestFull {
      let age = options.now.timeIntervalSince(newestFull.createdAt)
      ageSeconds = Int(age)
      if age > options.maxBackupAge {
        add(
          "backup.age", .critical,
          "the newest verified full snapshot \(newestFull.id) is \(Self.duration(age)) old (limit \(Self.duration(options.maxBackupAge))); check the backup timer, then run: tgsess backup"
        )
      }
    } else {
      add("backup.age", .critical, "no verified full snapshot in \(deployment.backupsDirectory); run: tgsess backup")
    }
    let freeBytes = FileSystem.freeBytes(at: deployment.backupsDirectory)
    if let freeBytes, freeBytes < options.minFreeBytes {
      add(
        "backup.disk", .warning,
        "only \(freeBytes / 1_048_576) MiB free on \(deployment.backupsDirectory) (warning below \(options.minFreeBytes / 1_048_576) MiB); run: tgsess prune"
      )
    }

    // Keys: present and private; the identity (if on this host) opens the newest archive.
    for path in [deployment.fernetKeysPath, deployment.ageIdentityPath] where FileSystem.exists(path) {
      do { try FileSystem.requirePrivate(path) } catch let error as StoreError {
        add("keys", .critical, error.errorDescription ?? "\(error)")
      } catch {}
    }
    if (try? KeyStore.loadRecipients(deployment))?.isEmpty ?? true {
      add("keys", .warning, "no age recipient configured; encrypted backups are impossible; run: tgsess init")
    }
    var identities: [AgeIdentity] = []
    if FileSystem.exists(deployment.ageIdentityPath) {
      identities = (try? KeyStore.loadIdentities(deployment)) ?? []
      if let newest = archives.first(where: { $0.isEncrypted }) {
        do { try AgeHeaderCheck.opens(path: repository.path(of: newest), identities: identities) } catch let error
          as StoreError
        {
          add("keys", .critical, "the age identity does not open the newest archive: \(error.errorDescription ?? "")")
        } catch {}
      }
    }

    // Deep: decrypt and hash the newest full snapshot and a rotating sample of per-user archives.
    if options.isDeep {
      var sample: [ArchiveRecord] = []
      if let newestFull { sample.append(newestFull) }
      let perUser = archives.filter { $0.kind == .user }
      if !perUser.isEmpty, options.deepSample > 0 {
        let day = Int(options.now.timeIntervalSince1970 / 86400)
        let start = (day * options.deepSample) % perUser.count
        for index in 0..<min(options.deepSample, perUser.count) {
          sample.append(perUser[(start + index) % perUser.count])
        }
      }
      for record in sample {
        do {
          let path = repository.path(of: record)
          if record.isEncrypted, identities.isEmpty {
            // The identity lives off the host: prove the ciphertext against its record instead.
            try Self.verifyCiphertext(path: path, record: record)
          } else {
            _ = try ArchiveReader.read(path: path, identities: identities)
          }
        } catch let error as StoreError {
          add("backup.deep", .critical, error.errorDescription ?? "\(error)")
        } catch {
          add("backup.deep", .critical, "\(record.id): \(error)")
        }
      }
    }

    // Offsite: every local archive should be on every remote (as of the last push's listing).
    for remote in deployment.remotes {
      guard let state = RemoteState.load(deployment, remote: remote.name) else {
        add("offsite", .warning, "remote \(remote.name) (\(remote.root)) has never been pushed to; run: tgsess push")
        continue
      }
      let there = Set(state.archiveNames ?? [])
      let missing = archives.filter { !there.contains($0.fileName) }.count
      if missing > 0 {
        let since =
          state.lastSuccessAt.map { "last verified push \(Self.duration(options.now.timeIntervalSince($0))) ago" }
          ?? "never verified"
        add("offsite", .warning, "remote \(remote.name) is missing \(missing) archive(s) (\(since)); run: tgsess push")
      }
    }

    // Drills.
    if let newestDrill = DrillHistory.newestSuccess(deployment) {
      let age = options.now.timeIntervalSince(newestDrill)
      if age > options.maxDrillAge {
        add("drill.age", .warning, "the newest successful drill is \(Self.duration(age)) old; run: tgsess drill")
      }
    }

    // Optional live probe.
    if let command = options.probeCommand {
      let policy = RetryPolicy(base: options.probeRetryBase, cap: max(options.probeRetryBase, .seconds(30)))
      for userID in probed.sorted() where perUser[userID] != .critical {
        let verdict = Probe.run(
          command: command, sessionPath: deployment.sessionPath(userID: userID), timeout: options.probeTimeout,
          policy: policy)
        switch verdict {
        case .ok: break
        case .fatal(let error):
          add(
            "user.probe", .critical,
            "user \(userID): \(error.summary) (confirmed); the session is dead and was marked revoked; it and its backups are kept",
            user: userID)
          perUser[userID] = .critical
          if options.writesResults, isDatabaseSound {
            let writer = try? BotDatabase(
              path: deployment.databasePath, mode: .readWrite, busyTimeoutMS: deployment.busyTimeoutMS)
            try? writer?.markRevoked(userID: userID, error: error.code)
            writer?.close()
          }
        case .temporary(let error, let attempts):
          add("user.probe", .warning, "user \(userID): \(error.summary) after \(attempts) attempts", user: userID)
          perUser[userID] = max(perUser[userID] ?? .ok, .warning)
        }
      }
    }

    // The result, written back for the bot's /status.
    var sessions = CheckResult.Sessions()
    for state in perUser.values {
      switch state {
      case .ok: sessions.ok += 1
      case .warning, .unknown: sessions.warning += 1
      case .critical: sessions.critical += 1
      }
    }
    if options.writesResults, database != nil, isDatabaseSound, FileSystem.exists(deployment.databasePath) {
      let messages = Dictionary(grouping: findings.filter { $0.userID != nil }, by: { $0.userID! })
      let entries = perUser.map { userID, state in
        (userID: userID, health: state, error: messages[userID]?.map(\.message).joined(separator: "; "))
      }
      do {
        let writer = try BotDatabase(
          path: deployment.databasePath, mode: .readWrite, busyTimeoutMS: deployment.busyTimeoutMS)
        defer { writer.close() }
        if try writer.schemaStatus().isCurrent { try writer.recordHealth(entries, at: options.now) }
      } catch {
        logger.warning("could not record check results", metadata: ["error": "\(error.localizedDescription)"])
      }
    }
    let state = findings.map(\.state).max() ?? .ok
    let problems = findings.filter { $0.state != .ok }.count
    let summary =
      state == .ok
      ? "\(perUser.count) sessions ok, newest full snapshot \(ageSeconds.map { Self.duration(TimeInterval($0)) + " old" } ?? "missing")"
      : "\(problems) problem(s): \(sessions.critical) session(s) critical, \(sessions.warning) warning; \(findings.first { $0.state == state }?.message ?? "")"
    let result = CheckResult(
      state: state, summary: summary, findings: findings, sessions: sessions, users: perUser.count,
      lastFullBackupAt: newestFull?.createdAt, lastFullBackupAgeSeconds: ageSeconds, archives: archives.count,
      freeBytes: freeBytes, durationSeconds: Date().timeIntervalSince(started), checkedAt: options.now)
    logger.notice(
      "check done", metadata: ["state": "\(state.rawValue)", "problems": "\(problems)", "users": "\(perUser.count)"])
    return result
  }

  /// What `check` reads from one user's files.
  struct FileInspection {
    var file: Result<SessionFileInfo, Error>
    var mode: mode_t?
    /// The seed's `.session.backup`, when there is one.
    var backupFile: Result<SessionFileInfo, Error>?
  }

  /// Inspects every user's session file (and `.session.backup`) on a few threads.
  static func inspectFiles(_ deployment: Deployment, users: [Int64], isDeep: Bool) -> [Int64: FileInspection] {
    let results =
      (try? Parallel.map(count: users.count, workers: Parallel.defaultWorkers) { index -> FileInspection in
        let path = deployment.sessionPath(userID: users[index])
        let backupPath = path + ".backup"
        return FileInspection(
          file: Result { try SessionFileInspector.inspect(path: path, verifiesPages: isDeep) },
          mode: try? FileSystem.mode(of: path),
          backupFile: FileSystem.exists(backupPath)
            ? Result { try SessionFileInspector.inspect(path: backupPath) } : nil)
      }) ?? []
    return Dictionary(uniqueKeysWithValues: zip(users, results))
  }

  static func identity(ofString plaintext: String, userID: Int64) throws -> SessionIdentity {
    // Foundation's trimming costs more than the decode itself; stored strings rarely need it.
    let needsTrim = plaintext.first?.isWhitespace == true || plaintext.last?.isWhitespace == true
    let text = needsTrim ? plaintext.trimmingCharacters(in: .whitespacesAndNewlines) : plaintext
    if text.hasPrefix("1"), [353, 369].contains(text.count) {
      return try TelethonStringSession.decode(text, label: "user \(userID)'s session string")
    }
    return try PyrogramStringSession.decode(text, label: "user \(userID)'s session string").identity
  }

  /// Compares an archive's SHA-256 with the one its record holds.
  /// - Throws: `StoreError.invalid` when they differ or the record has none.
  static func verifyCiphertext(path: String, record: ArchiveRecord) throws {
    guard !record.sha256.isEmpty else {
      throw StoreError.invalid(
        path: path, reason: "no identity on this host and no recorded SHA-256 to compare with",
        hint: "run check --deep where the age identity is, or restore --dry-run with --identity FILE")
    }
    guard try FileSystem.sha256(ofFile: path) == record.sha256 else {
      throw StoreError.invalid(
        path: path, reason: "SHA-256 differs from the one recorded when it was written (corrupted on disk)",
        hint: "use another backup, and run tgsess backup")
    }
  }

  /// `3h 12m`, `45s`.
  static func duration(_ seconds: TimeInterval) -> String {
    let total = Int(seconds)
    if total >= 86400 { return "\(total / 86400)d \(total % 86400 / 3600)h" }
    if total >= 3600 { return "\(total / 3600)h \(total % 3600 / 60)m" }
    if total >= 60 { return "\(total / 60)m \(total % 60)s" }
    return "\(total)s"
  }
}

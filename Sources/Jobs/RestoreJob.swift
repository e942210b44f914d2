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
  /// Restore into the live deployment even though the bot seems to run.
  public var isForced: Bool
  /// The age identity file (default: the deployment's).
  public var identityPath: String?
  /// Seconds to wait for the deployment lock.
  public var lockWait: TimeInterval
  /// Restore from this configured remote alone (the disaster case: only the config, the
  /// identity and the remote are left).
  public var fromRemote: String?
  /// Read archives from this directory instead of the deployment's backups/ (a remote catalog).
  public var archivesDirectory: String?

  public init(
    selector: String = "latest", userID: Int64? = nil, at: Date? = nil, target: String? = nil, isDryRun: Bool = false,
    isForced: Bool = false, identityPath: String? = nil, lockWait: TimeInterval = 0, fromRemote: String? = nil,
    archivesDirectory: String? = nil
  ) {
    self.fromRemote = fromRemote
    self.archivesDirectory = archivesDirectory
    self.selector = selector
    self.userID = userID
    self.at = at
    self.target = target
    self.isDryRun = isDryRun
    self.isForced = isForced
    self.identityPath = identityPath
    self.lockWait = lockWait
  }
}

/// One file a restore creates, replaces or leaves alone.
public struct FileChange: Codable, Sendable, Equatable {
  public enum Action: String, Codable, Sendable {
    case create, replace, identical
  }
  public var path: String
  public var action: Action
  public var sha256Before: String?
  public var sha256After: String
}

/// What `tgsess restore` did, or would do.
public struct RestoreResult: Codable, Sendable, Equatable {
  public var archiveID: String
  public var archivePath: String
  /// `whole`, `user` or `target`.
  public var mode: String
  public var isDryRun: Bool
  public var files: [FileChange]
  /// Database rows changed (or to change), in words.
  public var rows: [String]
  /// The backup of what was replaced, taken first (an archive id, or a directory of raw copies).
  public var undo: String?
  public var warnings: [String]
  /// The check of what was restored: one line per problem; empty when everything validates.
  public var problems: [String]
  public var restoredUsers: Int
}

/// Restores archives: verified in full before a byte of live data changes.
public enum RestoreJob {
  /// Restores according to `options`.
  /// - Throws: `JobError` naming the archive and what failed; nothing has changed then.
  public static func run(_ deployment: Deployment, options: RestoreOptions, logger: Logger) throws -> RestoreResult {
    // Checked again here (the CLI's validate() does too): a --target restore with a user would
    // write that user's row into the live database, unguarded and without an undo.
    if options.target != nil, options.userID != nil {
      throw JobError.usage(
        "--target restores a whole deployment; drop --user. Try: tgsess restore latest --target /srv/drill")
    }
    var options = options
    do {
      var catalog: RemoteCatalog?
      if let name = options.fromRemote {
        catalog = try RemoteCatalog.build(
          remote: deployment.remote(named: name), in: RemoteCatalog.cacheDirectory(deployment, remote: name))
      }
      defer { if let catalog { try? FileManager.default.removeItem(atPath: catalog.directory) } }
      let repository =
        catalog?.repository
        ?? ArchiveRepository(backupsDirectory: options.archivesDirectory ?? deployment.backupsDirectory)
      let record = try choose(repository: repository, options: options)
      try catalog?.fetch([record])
      // A per-user archive holds one user's file and rows: restoring it live is that user's
      // restore (row included), which is also what the printed undo command relies on.
      if record.kind == .user, options.target == nil, options.userID == nil, let owner = record.userID {
        options.userID = owner
      }
      let archivePath = repository.path(of: record)
      let identities: [AgeIdentity]
      do {
        identities = record.isEncrypted ? try KeyStore.loadIdentities(deployment, path: options.identityPath) : []
      } catch let error as StoreError {
        // The key file's error names the key; say which archive it was needed for.
        throw JobError.store(context: "restore: cannot decrypt \(archivePath)", underlying: error)
      }

      // 1. Verify before touching: extract into staging on the target's filesystem and check it.
      // A target directory this run creates is removed again unless the restore fills it.
      let stagingParent = options.target ?? deployment.root
      let createdTarget = options.target != nil && !FileSystem.exists(stagingParent)
      var isTargetFilled = false
      try FileSystem.makeDirectory(stagingParent)
      defer { if createdTarget, !isTargetFilled { rmdir(stagingParent) } }
      let staging = try StagingArea(parent: stagingParent)
      defer { staging.remove() }
      let manifest = try ArchiveReader.read(path: archivePath, identities: identities, extractTo: staging.path)
      // Every SQLite entry must pass integrity_check, and every session entry must hold the
      // session its manifest describes, before any of them replaces a live file. Entries are
      // checked on a few threads; the first failure in manifest order is reported.
      let checked = manifest.entries.filter { $0.isSQLite || $0.role == .session }
      let failures = try Parallel.map(count: checked.count, workers: Parallel.defaultWorkers) { index in
        verifyStaged(checked[index], in: staging.path, archivePath: archivePath)
      }
      if let failure = failures.lazy.compactMap({ $0 }).first { throw failure }
      var plan = try Plan(
        deployment: deployment, options: options, manifest: manifest, staging: staging.path, archivePath: archivePath)
      // A full snapshot may hold the database but neither a file nor a row of this user.
      if let userID = options.userID, plan.files.isEmpty, plan.userRow == nil {
        throw JobError.refused(
          "archive \(record.id) holds nothing of user \(userID); pick another (tgsess list --user \(userID))")
      }
      var result = RestoreResult(
        archiveID: record.id, archivePath: archivePath, mode: plan.mode, isDryRun: options.isDryRun,
        files: plan.files.map(\.change), rows: plan.rowDescriptions, undo: nil, warnings: [], problems: [],
        restoredUsers: plan.users.count)
      if options.isDryRun { return result }

      // The deployment lock is held from the guard through the undo backup to the last file, so
      // no backup, prune or other restore runs in between (the undo backup nests inside it).
      let lock = try DeploymentLock.acquire(
        path: options.target.map { $0 + "/.tgsess.lock" } ?? deployment.lockPath, command: "restore",
        wait: options.lockWait)
      defer { lock.release() }
      isTargetFilled = true
      if options.target == nil {
        // 2. The live-owner guard.
        let evidence = LiveOwnerGuard.evidence(
          deployment, files: plan.files.map(\.change.path), systemdUnit: deployment.config.check?.botUnit)
        if !evidence.isEmpty {
          guard options.isForced else {
            throw JobError.refused(
              "refusing to restore into the live deployment while the bot runs: \(evidence.joined(separator: "; ")); stop the bot, or pass --force"
            )
          }
          result.warnings.append("--force: restoring although \(evidence.joined(separator: "; "))")
          logger.warning("restore forced", metadata: ["evidence": "\(evidence.joined(separator: "; "))"])
        }
        // 3. Undo first.
        result.undo = try takeUndo(deployment: deployment, plan: plan, options: options, logger: logger)
      }

      // 4. Apply.
      try plan.apply(logger: logger)

      // 5. Check what was restored.
      result.problems = plan.check()
      logger.notice(
        "restore done",
        metadata: [
          "archive.id": "\(record.id)", "restore.mode": "\(plan.mode)", "files": "\(plan.files.count)",
          "undo": "\(result.undo ?? "-")", "problems": "\(result.problems.count)",
        ])
      return result
    } catch let error as StoreError {
      throw JobError.store(context: "restore", underlying: error)
    }
  }

  /// Checks one extracted entry: integrity_check for an SQLite file, and for a session file that
  /// it is a valid session holding the auth key its manifest names. Safe to call from several
  /// threads (each call opens its own connections).
  /// - Returns: the error naming the archive, or nil when the entry is sound.
  static func verifyStaged(_ entry: Manifest.Entry, in staging: String, archivePath: String) -> StoreError? {
    let path = staging + "/" + entry.path
    func damaged(_ problems: [String]) -> StoreError {
      // integrity_check reports one problem per line, sometimes all in one row: keep the first two lines.
      let lines = problems.flatMap { $0.split(whereSeparator: \.isNewline) }.prefix(2)
      return StoreError.invalid(
        path: archivePath, reason: "\(entry.path) fails integrity_check (\(lines.joined(separator: "; ")))",
        hint: "use another backup")
    }
    if entry.isSQLite, entry.role != .session {
      let problems = integrityProblems(path)
      return problems.isEmpty ? nil : damaged(problems)
    }
    guard entry.role == .session else { return nil }
    // A session file: integrity_check and the inspection in one connection.
    let info: SessionFileInfo
    do {
      var problems: [String] = []
      guard
        let inspected = try SessionFileInspector.inspect(
          path: path, pageCheck: entry.isSQLite ? .integrity : .quick, problems: &problems)
      else { return damaged(problems) }
      info = inspected
    } catch {
      // The inspector's structural checks (header, declared size) run before integrity_check;
      // when integrity_check has something to say about the file, that is the reason given.
      if entry.isSQLite {
        let problems = integrityProblems(path)
        if !problems.isEmpty { return damaged(problems) }
      }
      let reason: String
      if case StoreError.session(_, let problem) = error {
        reason = problem.description
      } else {
        reason = (error as? StoreError)?.errorDescription ?? "unreadable"
      }
      return StoreError.invalid(
        path: archivePath, reason: "\(entry.path) is not a valid session (\(reason))", hint: "use another backup")
    }
    if let fingerprint = entry.authKeyFingerprint, fingerprint != info.identity.authKey.fingerprint {
      return StoreError.invalid(
        path: archivePath, reason: "\(entry.path) does not hold the auth key its manifest names",
        hint: "use another backup")
    }
    return nil
  }

  /// What `integrity_check` finds in the SQLite file at `path`. SQLite may give up on a damaged
  /// file instead of listing problems; then its error is the problem (the caller reports it
  /// against the archive, not the staging copy).
  static func integrityProblems(_ path: String) -> [String] {
    do {
      return try SQLiteConnection(path: path, mode: .readOnly).integrityCheck()
    } catch let error as StoreError {
      if case .database(_, let reason, _) = error { return [reason] }
      return [error.localizedDescription]
    } catch {
      return ["\(error)"]
    }
  }

  /// Picks the archive: an id, or the newest (at or before `at`); for one user, their newest
  /// per-user archive, else the newest full snapshot that holds them.
  static func choose(repository: ArchiveRepository, options: RestoreOptions) throws -> ArchiveRecord {
    if options.selector != "latest" { return try repository.find(id: options.selector) }
    func fits(_ record: ArchiveRecord) -> Bool { options.at.map { record.createdAt <= $0 } ?? true }
    // "latest" means the newest regular backup: undo archives ("Before restore") are picked only
    // by id, or when nothing else fits, so a second `restore latest` never undoes the first.
    // Imported archives (a legacy `.session.backup` kept as it was found) hold nothing a restore
    // writes, so they come after every other choice, full snapshots included.
    func newest(_ records: [ArchiveRecord]) -> ArchiveRecord? {
      let usable = records.filter { fits($0) && $0.reason != BackupReason.imported }
      return usable.first { $0.reason != BackupReason.beforeRestore } ?? usable.first
    }
    let when = options.at.map { " at or before \(ISO8601DateFormatter().string(from: $0))" } ?? ""
    if let userID = options.userID {
      let perUser = try repository.list(kind: .user, userID: userID)
      if let own = newest(perUser) { return own }
      if let full = newest(try repository.list(kind: .full, userID: userID)) { return full }
      if let imported = perUser.first(where: fits) { return imported }
      throw StoreError.missing(
        path: repository.backupsDirectory,
        hint: "no archive holds user \(userID)\(when); see tgsess list --user \(userID)")
    }
    if let full = newest(try repository.list(kind: .full)) { return full }
    throw StoreError.missing(path: repository.backupsDirectory, hint: "no full snapshot\(when); see tgsess list")
  }

  /// Before live data changes: a backup of what is about to be replaced, as an archive; when the
  /// live data is too broken to archive, a raw copy of the files instead.
  static func takeUndo(deployment: Deployment, plan: Plan, options: RestoreOptions, logger: Logger) throws -> String? {
    let replaced = plan.files.filter { $0.change.action == .replace }
    if replaced.isEmpty, plan.rowDescriptions.isEmpty { return nil }
    let backup = BackupOptions(
      userID: options.userID, reason: BackupReason.beforeRestore, lockWait: options.lockWait,
      includesChangedUsers: false)
    do {
      let result = try BackupJob.run(deployment, options: backup, logger: logger)
      if let archive = result.archives.first, result.failures.isEmpty { return archive.id }
    } catch let error as JobError {
      if case .store(_, .locked) = error { throw error }
      logger.warning("undo archive failed; keeping raw copies", metadata: ["error": "\(error.localizedDescription)"])
    }
    // Raw copies (files and their sidecars): the bot is stopped, so bytes are what they are.
    let directory = deployment.backupsDirectory + "/before-restore/" + Timestamp.compact(Date())
    try FileSystem.makeDirectory(directory)
    for file in replaced.map(\.change.path) {
      for path in [file, file + "-journal", file + "-wal"] where FileSystem.exists(path) {
        let relative = String(path.dropFirst(deployment.root.count + 1)).replacingOccurrences(of: "/", with: "__")
        try FileSystem.writeAtomically(try FileSystem.read(path), to: directory + "/" + relative, overwrite: false)
      }
    }
    return directory
  }

  /// What a restore will do, computed from the verified staging copy.
  struct Plan {
    struct FilePlan {
      var change: FileChange
      var source: String
      var isDatabase: Bool
      /// Restored through the online backup API rather than renamed from staging.
      var isWrittenInPlace = false
    }

    let deployment: Deployment
    let mode: String
    var files: [FilePlan] = []
    var rowDescriptions: [String] = []
    var users: [Int64] = []
    /// `user_sessions` row to upsert (per-user restore).
    var userRow: [String: Any]?
    let userID: Int64?
    let targetRoot: String

    init(deployment: Deployment, options: RestoreOptions, manifest: Manifest, staging: String, archivePath: String)
      throws
    {
      self.deployment = deployment
      userID = options.userID
      if let target = options.target {
        mode = "target"
        targetRoot = Deployment.absolute(target, relativeTo: FileManager.default.currentDirectoryPath)
        let leftovers =
          (try? FileManager.default.contentsOfDirectory(atPath: targetRoot))?.filter {
            !$0.hasPrefix(".staging-") && $0 != ".tgsess.lock"
          } ?? []
        guard leftovers.isEmpty else {
          throw JobError.refused("--target \(targetRoot) is not empty; restore into an empty or new directory")
        }
      } else {
        mode = options.userID == nil ? "whole" : "user"
        targetRoot = deployment.root
      }
      let liveTarget = Deployment(root: targetRoot, config: options.target == nil ? deployment.config : Config())
      for entry in manifest.entries {
        let source = staging + "/" + entry.path
        var destination: String?
        switch entry.role {
        case .database:
          if options.userID == nil { destination = liveTarget.databasePath }
        case .session, .sessionBackup:
          guard options.userID == nil || entry.userID == options.userID, let user = entry.userID else { continue }
          let base = liveTarget.sessionPath(userID: user)
          destination = entry.role == .session ? base : base + ".backup"
          if entry.role == .session { users.append(user) }
        case .userRows:
          guard let user = entry.userID, options.userID == user else { continue }
          userRow = try Self.userRow(ofUser: user, in: source, entry: entry.path, archivePath: archivePath)
        case .imported:
          continue
        }
        guard let destination else { continue }
        let before = FileSystem.exists(destination) ? try FileSystem.sha256(ofFile: destination) : nil
        let action: FileChange.Action = before == nil ? .create : before == entry.sha256 ? .identical : .replace
        files.append(
          FilePlan(
            change: FileChange(path: destination, action: action, sha256Before: before, sha256After: entry.sha256),
            source: source, isDatabase: entry.role == .database))
      }
      // Per-user from a full snapshot: the row comes from the snapshot's database.
      if let userID = options.userID, userRow == nil,
        let database = manifest.entries.first(where: { $0.role == .database })
      {
        let snapshot = try BotDatabase(path: staging + "/" + database.path, mode: .readOnly)
        defer { snapshot.close() }
        if let data = try snapshot.userRowsJSON(userID: userID),
          let document = try JSONSerialization.jsonObject(with: data) as? [String: Any]
        {
          userRow = document["user_sessions"] as? [String: Any]
        }
      }
      if let userID = options.userID, userRow != nil {
        rowDescriptions.append("upsert the user_sessions row of user \(userID) in \(deployment.databasePath)")
      }
    }

    /// The `user_sessions` row in a per-user archive's rows entry. Its hash only proves it is what
    /// the archive's maker wrote, so it must be a JSON object whose row is `userID`'s own.
    /// - Throws: `StoreError.invalid` naming the archive.
    static func userRow(ofUser userID: Int64, in path: String, entry: String, archivePath: String) throws
      -> [String: Any]?
    {
      let document = try? JSONSerialization.jsonObject(with: try FileSystem.read(path)) as? [String: Any]
      guard let document, (document["user_id"] as? NSNumber)?.int64Value == userID else {
        throw StoreError.invalid(
          path: archivePath, reason: "\(entry) is not a JSON object of user \(userID)'s rows",
          hint: "use another backup")
      }
      guard let row = document["user_sessions"] else { return nil }
      guard let row = row as? [String: Any], (row["user_id"] as? NSNumber)?.int64Value == userID else {
        throw StoreError.invalid(
          path: archivePath, reason: "\(entry) holds a user_sessions row that is not user \(userID)'s",
          hint: "use another backup")
      }
      return row
    }

    /// Carries the plan out: the database through the online backup API, session files by
    /// temporary + fsync + rename (skipping identical ones), the user row in one transaction.
    /// Files are fsynced together (on a few threads, so the filesystem can commit them in one
    /// journal transaction), then renamed one by one, then each directory is fsynced once: after
    /// a crash every file is wholly old or wholly new, as with one fsync-rename-fsync per file.
    mutating func apply(logger: Logger) throws {
      var moves: [FilePlan] = []
      for (index, file) in files.enumerated() where file.change.action != .identical {
        let path = file.change.path
        try FileSystem.makeDirectory(FileSystem.parentDirectory(of: path))
        if file.isDatabase, FileSystem.exists(path), mode != "target" {
          do {
            let live = try BotDatabase(path: path, mode: .readWrite, busyTimeoutMS: deployment.busyTimeoutMS)
            defer { live.close() }
            try live.replaceContents(withSnapshotAt: file.source)
            files[index].isWrittenInPlace = true
            continue
          } catch let error as StoreError {
            // A live file too damaged to open is replaced whole instead (the undo copy has it).
            logger.warning(
              "online restore into the live database failed; replacing the file",
              metadata: ["error": "\(error.errorDescription ?? "")"])
          }
        }
        moves.append(file)
      }
      _ = try Parallel.map(count: moves.count, workers: 8) { index in try FileSystem.fsyncFile(moves[index].source) }
      var directories: [String] = []
      for file in moves {
        let path = file.change.path
        // Stale sidecars would be applied to the new file and corrupt it.
        LiveOwnerGuard.removeSidecars(of: path)
        if rename(file.source, path) != 0 {
          guard errno == EXDEV else { throw StoreError.io(path: path, operation: "rename into place", errno: errno) }
          try FileSystem.moveDurably(from: file.source, to: path)
        }
        let directory = FileSystem.parentDirectory(of: path)
        if !directories.contains(directory) { directories.append(directory) }
        try CrashPoint.hit("restore.after-file")
      }
      for directory in directories { try FileSystem.fsyncDirectory(directory) }
      if let userID, let userRow {
        let live = try BotDatabase(
          path: deployment.databasePath, mode: .readWrite, busyTimeoutMS: deployment.busyTimeoutMS)
        defer { live.close() }
        try live.upsertUserRow(userID: userID, row: userRow)
      }
    }

    /// Validates what was restored: every session file, and the database's integrity. A session
    /// file renamed from staging is the very file (the same inode) that passed integrity_check
    /// and inspection there under the lock, so only its presence is checked; a database renamed
    /// gets quick_check, one written in place through the online backup API integrity_check.
    func check() -> [String] {
      let files = files
      let problems =
        (try? Parallel.map(count: files.count, workers: Parallel.defaultWorkers) { index in
          Self.problems(of: files[index])
        }) ?? []
      return problems.flatMap { $0 }
    }

    private static func problems(of file: FilePlan) -> [String] {
      let path = file.change.path
      do {
        if file.isDatabase {
          let database = try BotDatabase(path: path, mode: .readOnly)
          defer { database.close() }
          return try database.integrityProblems(deep: file.isWrittenInPlace).map { "\(path): \($0)" }
        } else if path.hasSuffix(".session") {
          if file.change.action == .identical {
            _ = try SessionFileInspector.inspect(path: path)
          } else if !FileSystem.exists(path) {
            return ["\(path): missing after the restore"]
          }
        }
        return []
      } catch let error as StoreError {
        return [error.errorDescription ?? "\(error)"]
      } catch {
        return ["\(path): \(error)"]
      }
    }
  }
}

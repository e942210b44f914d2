import Foundation
import Logging
import Store

/// A restore's undo when the live data is too damaged to archive through SQLite: the files about
/// to be replaced, archived byte for byte (manifest role `verbatim`), and restoring such an
/// archive.
extension RestoreJob {
  /// Writes the undo archive of `plan` byte for byte (`writeVerbatimUndo`), or refuses the
  /// restore: it never goes on without an undo.
  /// - Parameter failure: why the ordinary undo archive could not be made, for the refusal.
  /// - Returns: the undo archive's id; nil when nothing already there would be lost (no live
  ///   file is replaced and the user has no row yet: a user placed on this host for the first
  ///   time, whose per-user backup found nothing to back up).
  /// - Throws: `JobError.refused` naming the archive directory, both failures and the next step;
  ///   nothing has changed then.
  static func verbatimUndo(deployment: Deployment, plan: RestorePlan, failure: String, logger: Logger) throws
    -> String?
  {
    do {
      return try writeVerbatimUndo(deployment: deployment, plan: plan, logger: logger)
    } catch {
      let reason = (error as? LocalizedError)?.errorDescription ?? "\(error)"
      throw JobError.refused(
        "restore refused: no undo archive of what it would replace could be written in \(deployment.backupsDirectory) (through SQLite: \(failure); byte for byte: \(reason)); nothing was changed: fix that, then run the restore again"
      )
    }
  }

  /// The undo archive ("Before restore") of the files `plan` replaces, each archived byte for
  /// byte with the `-journal` and `-wal` beside it, plus the JSON sidecars the plan moves aside
  /// and, for one user, their database rows when the database reads; encrypted, proven and
  /// signed as a backup's archives are. A per-user restore's undo is that user's per-user
  /// archive, so `tgsess restore <id>` puts it back.
  /// - Returns: the archive's id; nil when there is nothing to archive (nothing already there is
  ///   replaced).
  /// - Throws: `StoreError` (no recipient or signing key, a full disk, an unreadable file).
  static func writeVerbatimUndo(deployment: Deployment, plan: RestorePlan, logger: Logger) throws -> String? {
    let staging = try StagingArea(parent: deployment.backupsDirectory)
    defer { staging.remove() }
    var entries: [Manifest.Entry] = []
    var sources: [String: ArchiveSource] = [:]
    // 1. The files about to be replaced (a verbatim file's companions come with it), and the
    // sidecars moved aside, each with the SQLite companions beside it.
    let replaced = plan.files.filter { $0.change.action == .replace && !$0.isCompanion }.map(\.change.path)
    var staged: Set<String> = []
    for file in replaced + plan.movesAside {
      // (A JSON sidecar has no companions: `entryPath(ofLive:)` knows no `user_<id>.json-wal`.)
      for path in [file] + VerbatimFiles.companionSuffixes.map({ file + $0 })
      where FileSystem.exists(path) && VerbatimFiles.entryPath(ofLive: path, in: deployment) != nil
        && staged.insert(path).inserted
      {
        let copy = try VerbatimFiles.stage(livePath: path, in: deployment, staging: staging)
        entries.append(copy.entry)
        sources[copy.entry.path] = copy.source
      }
    }
    // 2. The user's rows the restore upserts, and the schema version, when the database reads.
    var schemaVersion = 0
    do {
      let database = try BotDatabase(
        path: deployment.databasePath, mode: .readOnly, busyTimeoutMS: deployment.busyTimeoutMS)
      defer { database.close() }
      schemaVersion = try database.schemaStatus().version
      if let userID = plan.userID, plan.userRow != nil, let rows = try database.userRowsJSON(userID: userID) {
        let packed = try staging.pack(rows)
        let relative = "users/user_\(userID).json"
        entries.append(
          Manifest.Entry(
            path: relative, role: .userRows, size: packed.byteCount, sha256: packed.sha256, isSQLite: false,
            userID: userID))
        sources[relative] = packed.source
      }
    } catch let error as StoreError {
      logger.warning(
        "the undo archive holds no database rows: the database cannot be read",
        metadata: ["file.path": "\(deployment.databasePath)", "error": "\(error.errorDescription ?? "")"])
    }
    guard !entries.isEmpty else {
      logger.info("no undo archive: the restore replaces nothing that is there")
      return nil
    }

    // 3. Keys, as a backup uses them.
    let signingKey = try KeyStore.loadSigningKey(deployment)
    let encryption: ArchiveEncryption
    var identities: [AgeIdentity] = []
    if deployment.config.backup?.encrypt ?? true {
      let recipients = try KeyStore.loadRecipients(deployment)
      guard !recipients.isEmpty else {
        throw StoreError.key(
          path: deployment.ageRecipientsPath, reason: "no age recipient configured, so archives cannot be encrypted",
          hint: "run tgsess init or set age_recipients")
      }
      encryption = .age(recipients)
      // The identity may live off the host; then the archive is proven by its ciphertext hash.
      if FileSystem.exists(deployment.ageIdentityPath) { identities = try KeyStore.loadIdentities(deployment) }
    } else {
      encryption = .none
    }

    // 4. One archive, written, proven and signed.
    let kind: Manifest.Kind = plan.mode == .user ? .user : .full
    let userID = kind == .user ? plan.userID : nil
    let date = Date()
    let id = ArchiveName.makeID(kind: kind, userID: userID, date: date)
    let manifest = Manifest(
      toolVersion: ToolInfo.version, host: ProcessInfo.processInfo.hostName, createdAt: date, kind: kind,
      reason: BackupReason.beforeRestore, userID: userID, schemaVersion: schemaVersion, entries: entries)
    let record = try ArchiveRepository(backupsDirectory: deployment.backupsDirectory).write(
      id: id, manifest: manifest, sources: sources, encryption: encryption, identities: identities,
      signingKey: signingKey, zstdLevel: deployment.config.backup?.zstdLevel ?? BackupOptions.defaultZstdLevel)
    logger.notice(
      "undo archived byte for byte",
      metadata: [
        "archive.id": "\(record.id)", "files": "\(entries.filter { $0.role == .verbatim }.map(\.path))",
      ])
    return record.id
  }

  /// A verbatim file and its `-journal` and `-wal` are put back as one set, exactly as archived:
  /// when any of them is written, all are (installing the file clears the live companions), and
  /// a live companion the archive does not hold makes the file written too, so it is cleared.
  static func completeVerbatimFileSets(_ files: inout [RestorePlan.FileStep]) {
    for index in files.indices where files[index].isVerbatim && !files[index].isCompanion {
      let companionPaths = VerbatimFiles.companionSuffixes.map { files[index].change.path + $0 }
      let companions = files.indices.filter {
        files[$0].isCompanion && companionPaths.contains(files[$0].change.path)
      }
      let archived = Set(companions.map { files[$0].change.path })
      let hasStrayLiveCompanion = companionPaths.contains { !archived.contains($0) && FileSystem.exists($0) }
      if !files[index].change.writes, hasStrayLiveCompanion || companions.contains(where: { files[$0].change.writes }) {
        files[index].change.action = .replace
      }
      guard files[index].change.writes else { continue }
      for companion in companions where !files[companion].change.writes {
        files[companion].change.action = .replace
      }
    }
  }

  /// What a restore of verbatim files says first: it puts back damaged files as they were.
  static func verbatimWarnings(_ plan: RestorePlan) -> [String] {
    let files = plan.files.filter { $0.isVerbatim && !$0.isCompanion }.map(\.change.path)
    guard !files.isEmpty else { return [] }
    let what =
      files.count == 1
      ? "1 file that was not a valid SQLite file" : "\(files.count) files that were not valid SQLite files"
    return [
      "archive \(plan.archiveID) holds \(what) when archived (a damaged file's undo), kept byte for byte: this restores the damaged file as it was (\(files.joined(separator: ", ")))"
    ]
  }
}

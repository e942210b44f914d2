import Foundation
import Logging
import Store

/// Options of `tgsess drill`.
public struct DrillOptions: Sendable {
  /// The full snapshot to drill: an id, or "latest".
  public var from: String
  /// How many users' newest per-user archives to restore too (nil: all of them); a rotating
  /// sample when smaller than the fleet.
  public var userSample: Int?
  /// The age identity file (default: the deployment's).
  public var identityPath: String?
  /// Keep the drill directory afterwards (for inspection); it is removed otherwise.
  public var keepsDirectory: Bool
  /// Drill from this configured remote alone, as on a new host after the old one is lost.
  public var fromRemote: String?
  /// The key ring archives are verified with (a new host's escrowed `signing.pub`); default
  /// `keys/signing.pub`.
  public var verifyKeyPath: String?
  /// Accept archives without a signature (made before archives were signed); each one used is
  /// named in a warning.
  public var allowsUnsigned: Bool
  public var now: Date

  public init(
    from: String = "latest", userSample: Int? = nil, identityPath: String? = nil, keepsDirectory: Bool = false,
    fromRemote: String? = nil, verifyKeyPath: String? = nil, allowsUnsigned: Bool = false, now: Date = Date()
  ) {
    self.fromRemote = fromRemote
    self.verifyKeyPath = verifyKeyPath
    self.allowsUnsigned = allowsUnsigned
    self.from = from
    self.userSample = userSample
    self.identityPath = identityPath
    self.keepsDirectory = keepsDirectory
    self.now = now
  }
}

/// The evidence of one drill, recorded under `backups/drills/`.
public struct DrillResult: Codable, Sendable, Equatable {
  public var ok: Bool
  public var startedAt: Date
  public var archiveID: String
  /// Recovery time: how long restoring and validating took, in seconds.
  public var rtoSeconds: Double
  /// Recovery point: the snapshot's age when the drill started, in seconds.
  public var rpoSeconds: Double
  public var usersRestored: Int
  public var usersOK: Int
  public var usersFailed: [UserFailure]
  /// Live users the snapshot does not hold.
  public var usersMissing: [Int64]
  /// Users whose live session changed after the snapshot (auth key or dc differ).
  public var usersChangedSince: [Int64]
  public var perUserArchivesChecked: Int
  public var databaseOK: Bool
  public var problems: [String]
  /// One line per unsigned archive the drill used (`--allow-unsigned`); nil when none.
  public var warnings: [String]?
  public var toolVersion: String
  public var directory: String?
  public var recordPath: String?

  enum CodingKeys: String, CodingKey {
    case ok
    case startedAt = "started_at"
    case archiveID = "archive_id"
    case rtoSeconds = "rto_seconds"
    case rpoSeconds = "rpo_seconds"
    case usersRestored = "users_restored"
    case usersOK = "users_ok"
    case usersFailed = "users_failed"
    case usersMissing = "users_missing"
    case usersChangedSince = "users_changed_since"
    case perUserArchivesChecked = "per_user_archives_checked"
    case databaseOK = "database_ok"
    case problems, warnings
    case toolVersion = "tool_version"
    case directory
    case recordPath = "record_path"
  }
}

/// Disaster-recovery drills: restore into a fresh directory, validate, record the evidence.
/// Never touches the live deployment and never opens a network connection with a restored
/// session (two users of one key kill it: AUTH_KEY_DUPLICATED).
public enum DrillJob {
  /// Runs a drill.
  /// - Throws: `JobError` when the drill cannot start (no snapshot, no identity); a drill that
  ///   runs but finds problems returns `ok == false` and is recorded too.
  public static func run(_ deployment: Deployment, options: DrillOptions = DrillOptions(), logger: Logger) throws
    -> DrillResult
  {
    let started = Date()
    do {
      let catalog = try ArchiveCatalog.open(deployment, origin: options.fromRemote.map { .remote($0) } ?? .local)
      defer { catalog.close() }
      // "latest" means what it means to restore: the newest regular full snapshot signed by
      // this deployment's key.
      let authenticator = try SigningAuthenticator.forDeployment(
        deployment, verifyKeyPath: options.verifyKeyPath, allowsUnsigned: options.allowsUnsigned)
      let selector = ArchiveSelector(options.from)
      guard
        let record = try ArchiveSelection.choose(selector, in: catalog.repository, authenticator: authenticator)
      else {
        if case .missing(_, let hint) = RestoreJob.nothingToChoose(
          selector, in: catalog.repository, authenticator: authenticator), hint.contains("skipped")
        {
          throw StoreError.missing(path: deployment.backupsDirectory + "/full", hint: hint)
        }
        throw StoreError.missing(
          path: deployment.backupsDirectory + "/full", hint: "no full snapshot to drill; run: tgsess backup")
      }
      let scratch = try ScratchDirectory(prefix: "tgsess-drill-" + Timestamp.compact(started))
      if options.keepsDirectory { scratch.keep() }
      defer { scratch.remove() }
      let drillRoot = scratch.path

      // 1. The full snapshot, into a fresh directory (restore verifies the whole archive first).
      let restore = try RestoreJob.run(
        deployment,
        options: RestoreOptions(
          selector: record.id, target: drillRoot, identityPath: options.identityPath,
          verifyKeyPath: options.verifyKeyPath, allowsUnsigned: options.allowsUnsigned),
        catalog: catalog, logger: logger)
      var problems = restore.problems
      var warnings = restore.warnings
      let drill = Deployment(root: drillRoot)

      // 2. Validate what came back: the database and every session.
      var databaseOK = false
      do {
        let database = try BotDatabase(path: drill.databasePath, mode: .readOnly)
        defer { database.close() }
        let integrity = try database.integrityProblems(deep: true)
        let schema = try database.schemaStatus()
        databaseOK = integrity.isEmpty && schema.isCurrent
        if !integrity.isEmpty {
          problems.append("database fails integrity_check: \(integrity.prefix(2).joined(separator: "; "))")
        }
        if !schema.isCurrent { problems.append("database schema is not current (version \(schema.version))") }
      } catch let error as StoreError {
        problems.append(error.errorDescription ?? "\(error)")
      }
      // Thousands of files, each read on its own: on a few threads, results in user order.
      let restoredUsers = try drill.sessionFileUserIDs()
      var failures: [UserFailure] = []
      var restoredIdentity: [Int64: SessionIdentity] = [:]
      let inspected = try Parallel.map(count: restoredUsers.count, workers: Parallel.defaultWorkers) { index in
        Result { try SessionFileInspector.inspect(path: drill.sessionPath(userID: restoredUsers[index])).identity }
      }
      for (userID, outcome) in zip(restoredUsers, inspected) {
        switch outcome {
        case .success(let identity): restoredIdentity[userID] = identity
        case .failure(let error):
          failures.append(
            UserFailure(userID: userID, reason: (error as? StoreError)?.errorDescription ?? "\(error)"))
        }
      }

      // 3. The newest per-user archive of every user (or a rotating sample) among those signed by
      // this deployment's key, each verified as a restore would verify it.
      var perUser = ArchiveSelection.latestPerUser(
        in: authenticator.accepted(try catalog.repository.list(kind: .user), in: catalog.repository))
      if let sample = options.userSample, sample < perUser.count, !perUser.isEmpty {
        let start = (Int(options.now.timeIntervalSince1970 / 86400) * sample) % perUser.count
        perUser = (0..<sample).map { perUser[(start + $0) % perUser.count] }
      }
      let identities =
        try record.isEncrypted || perUser.contains(where: \.isEncrypted)
        ? KeyStore.loadIdentities(deployment, path: options.identityPath) : []
      try catalog.fetch(perUser)
      let verifier = ArchiveVerifier(identities: identities, authenticator: authenticator)
      let checked = perUser
      // Each archive: a failure, or whether it was unsigned (accepted with --allow-unsigned).
      let archiveOutcomes = try Parallel.map(count: checked.count, workers: Parallel.defaultWorkers) {
        index -> (isUnsigned: Bool, failure: UserFailure?) in
        let archive = checked[index]
        do {
          let staging = try StagingArea(parent: drillRoot)
          defer { staging.remove() }
          let verified = try verifier.verify(archive, in: catalog.repository, into: staging.path, scope: .everyEntry)
          return (verified.authentication == .unsigned, nil)
        } catch let error as StoreError {
          return (
            false,
            UserFailure(
              userID: archive.userID ?? 0, reason: "archive \(archive.id): \(error.errorDescription ?? "\(error)")")
          )
        }
      }
      for (archive, outcome) in zip(checked, archiveOutcomes) {
        if let failure = outcome.failure { failures.append(failure) }
        if outcome.isUnsigned {
          warnings.append(RestoreJob.unsignedWarning(archive.id, path: catalog.location(of: archive)))
        }
      }

      // 4. Compare with the live deployment (read-only).
      let liveUsers = try deployment.sessionFileUserIDs()
      let missing = Set(liveUsers).subtracting(restoredUsers).sorted()
      let comparable = liveUsers.filter { restoredIdentity[$0] != nil }
      let liveIdentities = try Parallel.map(count: comparable.count, workers: Parallel.defaultWorkers) { index in
        try? SessionFileInspector.inspect(path: deployment.sessionPath(userID: comparable[index])).identity
      }
      var changed: [Int64] = []
      for (userID, live) in zip(comparable, liveIdentities) {
        guard let live, let restored = restoredIdentity[userID] else { continue }
        if live.authKey != restored.authKey || live.dcID != restored.dcID { changed.append(userID) }
      }
      for userID in missing { logger.warning("user missing from the snapshot", metadata: ["user.id": "\(userID)"]) }

      let failedUsers = Set(failures.map(\.userID))
      var result = DrillResult(
        ok: problems.isEmpty && failures.isEmpty && databaseOK, startedAt: started, archiveID: record.id,
        rtoSeconds: Date().timeIntervalSince(started), rpoSeconds: started.timeIntervalSince(record.createdAt),
        usersRestored: restoredUsers.count, usersOK: restoredUsers.filter { !failedUsers.contains($0) }.count,
        usersFailed: failures, usersMissing: missing, usersChangedSince: changed, perUserArchivesChecked: perUser.count,
        databaseOK: databaseOK, problems: problems, warnings: warnings.isEmpty ? nil : warnings,
        toolVersion: ToolInfo.version,
        directory: options.keepsDirectory ? drillRoot : nil, recordPath: nil)
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
      encoder.dateEncodingStrategy = .iso8601
      result.recordPath = try DrillHistory.append(try encoder.encode(result), at: started, deployment)
      logger.notice(
        "drill done",
        metadata: [
          "ok": "\(result.ok)", "archive.id": "\(record.id)", "rto_s": "\(Int(result.rtoSeconds))",
          "rpo_s": "\(Int(result.rpoSeconds))", "users.failed": "\(failures.count)",
        ])
      return result
    } catch let error as StoreError {
      throw JobError.store(context: "drill", underlying: error)
    }
  }

  /// Every recorded drill, oldest first.
  public static func history(_ deployment: Deployment) -> [DrillResult] {
    let decoder = JSONDecoder()
    decoder.dateDecodingStrategy = .iso8601
    return DrillHistory.records(deployment).compactMap { try? decoder.decode(DrillResult.self, from: $0) }
  }
}

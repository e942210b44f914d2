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
  /// The Fernet key file whose keys must decrypt every secret the drill restores (the escrowed
  /// copy); nil: the deployment's own keys.
  public var fernetKeysPath: String?
  public var now: Date

  public init(
    from: String = "latest", userSample: Int? = nil, identityPath: String? = nil, keepsDirectory: Bool = false,
    fromRemote: String? = nil, verifyKeyPath: String? = nil, allowsUnsigned: Bool = false,
    fernetKeysPath: String? = nil, now: Date = Date()
  ) {
    self.fromRemote = fromRemote
    self.verifyKeyPath = verifyKeyPath
    self.allowsUnsigned = allowsUnsigned
    self.fernetKeysPath = fernetKeysPath
    self.from = from
    self.userSample = userSample
    self.identityPath = identityPath
    self.keepsDirectory = keepsDirectory
    self.now = now
  }
}

/// How much a drill could prove.
public enum DrillScope: String, Codable, Sendable, Equatable {
  /// Decrypted, restored and validated everything it drilled.
  case full
  /// The age identity is not on this host: the archives' ciphertext, age headers and records
  /// were proven, and the Fernet keys against the live database and the records; nothing was
  /// decrypted or restored.
  case partial
}

/// The evidence of one drill, recorded under `backups/drills/`.
public struct DrillResult: Codable, Sendable, Equatable {
  /// Everything the drill checked passed (for a partial drill, only what it could check).
  public var ok: Bool
  /// Nil in the records of an older tgsess, whose drills were all full.
  public var scope: DrillScope? = .full
  /// What this drill did not prove, and why (empty for a full drill).
  public var notProven: [String]? = []
  /// Secrets the Fernet keys (`fernetKeysPath`, else the deployment's) were proven to decrypt:
  /// in the restored database (full), in the live database (partial).
  public var fernetSecretsDecrypted: Int? = 0
  /// The Fernet key file proven; nil for the deployment's own keys.
  public var fernetKeysPath: String?
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

  /// Whether the drill proved only what it could without the identity.
  public var isPartial: Bool { scope == .partial }

  enum CodingKeys: String, CodingKey {
    case ok, scope
    case notProven = "not_proven"
    case fernetSecretsDecrypted = "fernet_secrets_decrypted"
    case fernetKeysPath = "fernet_keys_path"
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
  /// - Parameter progress: where to report each phase's progress (a TTY); nil reports nothing.
  public static func run(
    _ deployment: Deployment, options: DrillOptions = DrillOptions(), logger: Logger,
    progress: JobProgressHandler? = nil
  ) throws -> DrillResult {
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
      // Without the identity on this host (and none given) an encrypted archive cannot be
      // opened: prove what can be proven and say so, rather than fail every week.
      let identityMissing = options.identityPath == nil && !FileSystem.exists(deployment.ageIdentityPath)
      if identityMissing, try record.isEncrypted || catalog.repository.list(kind: .user).contains(where: \.isEncrypted)
      {
        return try partial(
          deployment, record: record, catalog: catalog, authenticator: authenticator, options: options,
          started: started, logger: logger)
      }
      let fernet = try loadFernet(deployment, path: options.fernetKeysPath)
      let scratch = try ScratchDirectory(prefix: "tgsess-drill-" + Timestamp.compact(started))
      if options.keepsDirectory { scratch.keep() }
      defer { scratch.remove() }
      let drillRoot = scratch.path

      // 1. The full snapshot, into a fresh directory (restore verifies the whole archive first).
      progress?(JobProgress(phase: "restoring \(record.id)", done: 0, total: 1))
      let restore = try RestoreJob.run(
        deployment,
        options: {
          // A drill's copy is thrown away and never run by a bot: no cross-host guard.
          var restore = RestoreOptions(
            selector: record.id, target: drillRoot, identityPath: options.identityPath,
            verifyKeyPath: options.verifyKeyPath, allowsUnsigned: options.allowsUnsigned)
          restore.checksFleet = false
          return restore
        }(),
        catalog: catalog, logger: logger)
      var problems = restore.problems
      var warnings = restore.warnings
      let drill = Deployment(root: drillRoot)

      // 2. Validate what came back: the database and every session.
      var databaseOK = false
      var fernetSecretsDecrypted = 0
      var notProven: [String] = []
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
        // The Fernet keys (the escrowed copy, when given) open every secret that came back.
        fernetSecretsDecrypted = try judgeSecrets(
          of: database, named: "the restored database", fernet: fernet, deployment: deployment, options: options,
          problems: &problems, notProven: &notProven)
      } catch let error as StoreError {
        problems.append(error.errorDescription ?? "\(error)")
      }
      // Thousands of files, each read on its own: on a few threads, results in user order.
      let restoredUsers = try drill.sessionFileUserIDs()
      var failures: [UserFailure] = []
      var restoredIdentity: [Int64: SessionIdentity] = [:]
      let validated = PhaseCounter(progress, phase: "restored sessions", total: restoredUsers.count)
      let inspected = try Parallel.map(count: restoredUsers.count, workers: Parallel.defaultWorkers) { index in
        defer { validated.step() }
        return Result {
          try SessionFileInspector.inspect(path: drill.sessionPath(userID: restoredUsers[index])).identity
        }
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
      let verified = PhaseCounter(progress, phase: "per-user archives", total: checked.count)
      // Each archive: a failure, or whether it was unsigned (accepted with --allow-unsigned).
      let archiveOutcomes = try Parallel.map(count: checked.count, workers: Parallel.defaultWorkers) {
        index -> (isUnsigned: Bool, failure: UserFailure?) in
        defer { verified.step() }
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
      let compared = PhaseCounter(progress, phase: "live sessions", total: comparable.count)
      let liveIdentities = try Parallel.map(count: comparable.count, workers: Parallel.defaultWorkers) { index in
        defer { compared.step() }
        return try? SessionFileInspector.inspect(path: deployment.sessionPath(userID: comparable[index])).identity
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
      result.fernetSecretsDecrypted = fernetSecretsDecrypted
      result.fernetKeysPath = options.fernetKeysPath
      result.notProven = notProven
      try writeEvidence(&result, deployment, logger: logger)
      return result
    } catch let error as StoreError {
      throw JobError.store(context: "drill", underlying: error)
    }
  }

  /// Writes the drill's evidence under `backups/drills/` and logs its summary.
  static func writeEvidence(_ result: inout DrillResult, _ deployment: Deployment, logger: Logger) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    encoder.dateEncodingStrategy = .iso8601
    result.recordPath = try DrillHistory.append(try encoder.encode(result), at: result.startedAt, deployment)
    logger.notice(
      "drill done",
      metadata: [
        "ok": "\(result.ok)", "scope": "\((result.scope ?? .full).rawValue)", "archive.id": "\(result.archiveID)",
        "rto_s": "\(Int(result.rtoSeconds))", "rpo_s": "\(Int(result.rpoSeconds))",
        "users.failed": "\(result.usersFailed.count)",
      ])
  }

  /// The Fernet keys a drill proves: the escrowed copy at `path`, else the deployment's (nil
  /// when none is configured).
  static func loadFernet(_ deployment: Deployment, path: String?) throws -> Fernet? {
    guard let path else { return try KeyStore.loadFernet(deployment) }
    guard let fernet = try KeyStore.loadFernet(deployment, environment: [KeyStore.fernetFileEnvironmentVariable: path])
    else { throw StoreError.missing(path: path, hint: "give the escrowed copy of keys/fernet.keys") }
    return fernet
  }

  static func fernetDescription(_ deployment: Deployment, _ options: DrillOptions) -> String {
    options.fernetKeysPath ?? deployment.fernetKeysPath
  }

  /// Whether the Fernet keys (the escrowed copy, when given) open every secret in `database`:
  /// without keys the encrypted ones are "not proven", with keys one they do not open is a problem.
  /// - Returns: how many secrets the keys decrypted.
  /// - Throws: `StoreError` when the database cannot be read.
  static func judgeSecrets(
    of database: BotDatabase, named name: String, fernet: Fernet?, deployment: Deployment,
    options: DrillOptions, problems: inout [String], notProven: inout [String]
  ) throws -> Int {
    let census = try database.secretCensus(fernet: fernet)
    if fernet == nil, census.undecryptable > 0 {
      notProven.append(
        "the \(census.undecryptable) encrypted secret(s) in \(name): no Fernet key here (\(deployment.fernetKeysPath)); give --fernet-keys FILE (the escrowed copy)"
      )
    } else if census.undecryptable > 0 {
      problems.append(
        "\(census.undecryptable) secret(s) in \(name) decrypt with no key in \(fernetDescription(deployment, options))"
      )
    }
    return census.underNewestKey + census.underOlderKey
  }

  /// The drill without the age identity: every archive a full drill would open is proven as
  /// far as its ciphertext goes (`ArchiveRepository.verifyCiphertext`: record, SHA-256, age
  /// header and its recipient count), the snapshot's users are compared with the live ones from
  /// its record, and the Fernet keys are proven against the live database and the keys the
  /// archives' records name. Nothing is decrypted or restored, and the result says so.
  static func partial(
    _ deployment: Deployment, record: ArchiveRecord, catalog: ArchiveCatalog, authenticator: SigningAuthenticator,
    options: DrillOptions, started: Date, logger: Logger
  ) throws -> DrillResult {
    var perUser = ArchiveSelection.latestPerUser(
      in: authenticator.accepted(try catalog.repository.list(kind: .user), in: catalog.repository))
    if let sample = options.userSample, sample < perUser.count, !perUser.isEmpty {
      let start = (Int(options.now.timeIntervalSince1970 / 86400) * sample) % perUser.count
      perUser = (0..<sample).map { perUser[(start + $0) % perUser.count] }
    }
    try catalog.fetch([record] + perUser)
    var problems: [String] = []
    // Each archive: its signature (and the signed size and SHA-256 of the file), then its record
    // and age header.
    let repository = catalog.repository
    func prove(_ archive: ArchiveRecord) throws {
      let path = repository.path(of: archive)
      if case .signed = try authenticator.authenticate(archivePath: path) {
        _ = try ArchiveSigning.verifyFile(archivePath: path, ring: authenticator.ring)
      }
      _ = try repository.verifyCiphertext(archive)
    }
    do { try prove(record) } catch let error as StoreError {
      problems.append("archive \(record.id): \(error.errorDescription ?? "\(error)")")
    }
    let checked = perUser
    let archiveFailures = try Parallel.map(count: checked.count, workers: Parallel.defaultWorkers) {
      index -> UserFailure? in
      do {
        try prove(checked[index])
        return nil
      } catch let error as StoreError {
        return UserFailure(
          userID: checked[index].userID ?? 0,
          reason: "archive \(checked[index].id): \(error.errorDescription ?? "\(error)")")
      }
    }
    let failures = archiveFailures.compactMap { $0 }

    // The Fernet keys: every live secret, and every key an archive's record names.
    let fernet = try loadFernet(deployment, path: options.fernetKeysPath)
    var fernetSecretsDecrypted = 0
    var notProven = [
      "no age identity on this host (\(deployment.ageIdentityPath)): nothing was decrypted or restored; give --identity FILE for a full drill"
    ]
    if FileSystem.exists(deployment.databasePath) {
      let database = try BotDatabase(
        path: deployment.databasePath, mode: .readOnly, busyTimeoutMS: deployment.busyTimeoutMS)
      defer { database.close() }
      fernetSecretsDecrypted = try judgeSecrets(
        of: database, named: "the live database", fernet: fernet, deployment: deployment, options: options,
        problems: &problems, notProven: &notProven)
    }
    let known = Set((fernet?.keys ?? []).map(\.fingerprint))
    var unrecorded = 0
    for archive in [record] + perUser {
      guard let keys = archive.fernetKeys else {
        unrecorded += 1
        continue
      }
      let missing = keys.filter { !known.contains($0) }
      if !missing.isEmpty {
        problems.append(
          "archive \(archive.id) holds secrets under Fernet key(s) \(missing.joined(separator: ", ")), not in \(fernetDescription(deployment, options))"
        )
      }
    }
    if unrecorded > 0 {
      notProven.append(
        "\(unrecorded) archive(s) do not record their Fernet keys (older records): their secrets were not matched to \(fernetDescription(deployment, options))"
      )
    }

    let liveUsers = try deployment.sessionFileUserIDs()
    let missing = Set(liveUsers).subtracting(record.userIDs).sorted()
    var result = DrillResult(
      ok: problems.isEmpty && failures.isEmpty, startedAt: started, archiveID: record.id,
      rtoSeconds: Date().timeIntervalSince(started), rpoSeconds: started.timeIntervalSince(record.createdAt),
      usersRestored: 0, usersOK: 0, usersFailed: failures, usersMissing: missing, usersChangedSince: [],
      perUserArchivesChecked: perUser.count, databaseOK: false, problems: problems, toolVersion: ToolInfo.version,
      directory: nil, recordPath: nil)
    result.scope = .partial
    result.notProven = notProven
    result.fernetSecretsDecrypted = fernetSecretsDecrypted
    result.fernetKeysPath = options.fernetKeysPath
    try writeEvidence(&result, deployment, logger: logger)
    return result
  }

  /// Every recorded drill, oldest first.
  public static func history(_ deployment: Deployment) -> [DrillResult] {
    let decoder = JSONDecoder()
    decoder.dateDecodingStrategy = .iso8601
    return DrillHistory.records(deployment).compactMap { try? decoder.decode(DrillResult.self, from: $0) }
  }
}

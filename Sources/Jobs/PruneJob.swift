import Foundation
import Logging
import Store

/// Options of `tgsess prune`.
public struct PruneOptions: Sendable {
  public var policy: RetentionPolicy
  public var isDryRun: Bool
  public var lockWait: TimeInterval
  /// The clock the plan uses (tests inject one).
  public var now: Date

  public init(
    policy: RetentionPolicy = RetentionPolicy(), isDryRun: Bool = false, lockWait: TimeInterval = 0, now: Date = Date()
  ) {
    self.policy = policy
    self.isDryRun = isDryRun
    self.lockWait = lockWait
    self.now = now
  }

  /// What a caller (a command line) sets on top of the configuration. A nil field takes the
  /// `[prune]` value, then `RetentionPolicy`'s default.
  public struct Overrides: Sendable, Equatable {
    public var keepPerUser: Int?
    public var keepLast: Int?
    public var keepHourly: Int?
    public var keepDaily: Int?
    public var keepWeekly: Int?
    public var keepMonthly: Int?
    public var keepYearly: Int?
    /// A time zone identifier, e.g. "Europe/Berlin".
    public var timeZone: String?
    public var isDryRun: Bool
    public var lockWait: TimeInterval
    /// The clock the plan uses; nil is now.
    public var now: Date?

    public init(
      keepPerUser: Int? = nil, keepLast: Int? = nil, keepHourly: Int? = nil, keepDaily: Int? = nil,
      keepWeekly: Int? = nil, keepMonthly: Int? = nil, keepYearly: Int? = nil, timeZone: String? = nil,
      isDryRun: Bool = false, lockWait: TimeInterval = 0, now: Date? = nil
    ) {
      self.keepPerUser = keepPerUser
      self.keepLast = keepLast
      self.keepHourly = keepHourly
      self.keepDaily = keepDaily
      self.keepWeekly = keepWeekly
      self.keepMonthly = keepMonthly
      self.keepYearly = keepYearly
      self.timeZone = timeZone
      self.isDryRun = isDryRun
      self.lockWait = lockWait
      self.now = now
    }
  }

  /// The options a caller gets from the deployment's configuration (`[prune]`) and its own
  /// overrides: an override wins, then the config's value, then the default. Every caller builds
  /// its options here, so the command line and the bot runner cannot drift apart.
  /// - Throws: `JobError.usage` when the time zone (the override's or the config's) is unknown.
  public init(config: Config, overrides: Overrides = Overrides()) throws {
    let section = config.prune
    let defaults = RetentionPolicy()
    let zoneName = overrides.timeZone ?? section?.timezone
    var zone = RetentionPolicy.utc
    if let zoneName {
      guard let named = TimeZone(identifier: zoneName) else {
        throw JobError.usage(
          overrides.timeZone != nil
            ? "unknown --timezone '\(zoneName)'. Try: --timezone UTC or --timezone Europe/Berlin"
            : "unknown timezone '\(zoneName)' in the config ([prune] timezone). Try: timezone = \"UTC\"")
      }
      zone = named
    }
    let policy = RetentionPolicy(
      keepPerUser: overrides.keepPerUser ?? section?.keepPerUser ?? defaults.keepPerUser,
      keepLast: overrides.keepLast ?? section?.keepLast ?? defaults.keepLast,
      keepHourly: overrides.keepHourly ?? section?.keepHourly ?? defaults.keepHourly,
      keepDaily: overrides.keepDaily ?? section?.keepDaily ?? defaults.keepDaily,
      keepWeekly: overrides.keepWeekly ?? section?.keepWeekly ?? defaults.keepWeekly,
      keepMonthly: overrides.keepMonthly ?? section?.keepMonthly ?? defaults.keepMonthly,
      keepYearly: overrides.keepYearly ?? section?.keepYearly ?? defaults.keepYearly, timeZone: zone)
    self.init(policy: policy, isDryRun: overrides.isDryRun, lockWait: overrides.lockWait, now: overrides.now ?? Date())
  }
}

/// A remote the prune could not bring in line with the local plan. Nothing is lost: the archives
/// are gone locally and their remote copies stay. A later prune does not remove them there (it
/// never deletes a remote archive this host no longer knows), so the operator must hear of it.
public struct RemotePruneFailure: Codable, Sendable, Equatable {
  /// The remote's name (`[[remotes]] name`).
  public var remote: String
  /// What went wrong (rclone's own words; never a secret).
  public var reason: String

  public init(remote: String, reason: String) {
    self.remote = remote
    self.reason = reason
  }
}

/// An archive that failed authentication (its signature does not verify, names another place,
/// or is damaged), and why: never counted, never removed automatically.
public struct RejectedArchive: Codable, Sendable, Equatable {
  public var id: String
  public var path: String
  public var reason: String

  public init(id: String, path: String, reason: String) {
    self.id = id
    self.path = path
    self.reason = reason
  }
}

/// What `tgsess prune` did, or would do.
public struct PruneResult: Codable, Sendable, Equatable {
  public var isDryRun: Bool
  /// The plan over the archives signed by this deployment's key; no other archive takes part.
  public var plan: RetentionPlan
  /// Archives without a signature: not in the plan (neither counted nor removed); `tgsess keys
  /// sign-existing` vouches for this host's own.
  public var unsignedArchives: [String] = []
  /// Archives that fail authentication: not in the plan, never removed automatically;
  /// investigate and remove them by hand.
  public var rejectedArchives: [RejectedArchive] = []
  public var removed: Int
  public var bytesFreed: Int64
  /// `session_backups` rows trimmed to keep-per-user.
  public var rowsTrimmed: Int
  /// Temporaries and orphan records of interrupted runs removed.
  public var leftoversRemoved: Int
  /// Per remote: archives the plan removed there too.
  public var remoteRemoved: [String: Int] = [:]
  /// Remotes that could not be pruned: the run is partial (exit 3), and the archives removed here
  /// stay on those remotes.
  public var remoteFailures: [RemotePruneFailure] = []
  /// Some remote could not be pruned; the local prune is done.
  public var isPartial: Bool { !remoteFailures.isEmpty }
}

/// Applies the retention plan: the plan is a pure function; execution only carries it out.
public enum PruneJob {
  /// Plans retention over every archive and, unless dry-running, removes what the plan removes
  /// and trims `session_backups`, under the deployment lock.
  /// - Throws: `JobError` (lock held, unreadable directory).
  /// - Parameter progress: where to report each phase's progress (a TTY); nil reports nothing.
  public static func run(
    _ deployment: Deployment, options: PruneOptions, logger: Logger, progress: JobProgressHandler? = nil
  ) throws -> PruneResult {
    try options.policy.validate()
    do {
      let lock =
        options.isDryRun
        ? nil : try DeploymentLock.acquire(path: deployment.lockPath, command: "prune", wait: options.lockWait)
      defer { lock?.release() }
      let repository = ArchiveRepository(backupsDirectory: deployment.backupsDirectory)
      var leftovers = 0
      if !options.isDryRun {
        // Under the lock no writer is mid-publish, so every orphan record or pin is a leftover.
        leftovers += try repository.removeLeftovers().count
        leftovers += try repository.removeOrphanSidecars().count
        leftovers += StagingArea.removeStale(in: deployment.backupsDirectory).count
      }
      // Only archives signed by this deployment's key take part: a planted archive is never
      // counted, so it can never push a real one out of the plan, and is never removed either.
      // The plan needs no record: what an archive is comes from its signature, whether it is
      // pinned from its directory.
      let authenticator = try SigningAuthenticator.forDeployment(deployment)
      var listed = try repository.listings()
      var verdicts = SignatureVerdicts.forDeployment(deployment, ring: authenticator.ring)
      // Signed archives by id (an index into `listed`): only a real run removes any.
      var signed: [String: Int] = [:]
      var items: [RetentionItem] = []
      items.reserveCapacity(listed.count)
      var unsigned: [String] = []
      var rejected: [RejectedArchive] = []
      let judged = PhaseCounter(progress, phase: "signatures", total: listed.count)
      // In slices of 1,024, so what each signature says is dropped once its item is made (memory
      // stays flat with the number of archives; 4,096 cost 3 MiB more at the peak).
      for start in stride(from: 0, to: listed.count, by: 1024) {
        let slice = Array(listed[start..<min(start + 1024, listed.count)])
        let standings = authenticator.authenticity(of: slice, in: repository, verdicts: verdicts, progress: judged.step)
        for (offset, (listing, standing)) in zip(slice, standings).enumerated() {
          switch standing {
          case .signed(let archive):
            if !options.isDryRun { signed[listing.id] = start + offset }
            // The writer signs only what it proved: a signed archive is a verified one.
            items.append(
              RetentionItem(
                id: listing.id, kind: listing.kind == .full ? .full : .user, userID: listing.userID,
                createdAt: listing.createdAt, isVerified: true, isPinned: listing.isPinned,
                byteCount: archive.statement.fileByteCount))
          case .unsigned: unsigned.append(listing.id)
          case .rejected(let error):
            rejected.append(
              RejectedArchive(id: listing.id, path: repository.path(of: listing), reason: ListJob.rejection(error)))
          }
        }
      }
      // A cache that cannot be written costs the next run time, nothing else.
      try? verdicts?.save(dropsUnused: true)
      // Its memory goes back before the plan is made (peak RSS); so do the listings when
      // nothing is to be removed (the items share their ids).
      verdicts = nil
      if options.isDryRun { listed = [] }
      FileSystem.releaseFreeMemory()
      unsigned.sort { $0 > $1 }
      rejected.sort { $0.id > $1.id }
      let plan = options.policy.plan(items, now: options.now)
      var result = PruneResult(
        isDryRun: options.isDryRun, plan: plan, unsignedArchives: unsigned, rejectedArchives: rejected, removed: 0,
        bytesFreed: 0, rowsTrimmed: 0, leftoversRemoved: leftovers)
      if !unsigned.isEmpty || !rejected.isEmpty {
        logger.warning(
          "archives outside the plan",
          metadata: ["archives.unsigned": "\(unsigned.count)", "archives.rejected": "\(rejected.count)"])
      }
      let database =
        FileSystem.exists(deployment.databasePath)
        ? try BotDatabase(
          path: deployment.databasePath, mode: options.isDryRun ? .readOnly : .readWrite,
          busyTimeoutMS: deployment.busyTimeoutMS) : nil
      defer { database?.close() }
      if options.isDryRun {
        result.rowsTrimmed =
          try database?.trimSessionBackups(keepPerUser: options.policy.keepPerUser, dryRun: true) ?? 0
        return result
      }
      let removing = PhaseCounter(progress, phase: "removing", total: plan.remove.count)
      for decision in plan.remove {
        guard let index = signed[decision.item.id] else { continue }
        let listing = listed[index]
        try repository.remove(listing)
        removing.step()
        result.removed += 1
        result.bytesFreed += decision.item.byteCount
        logger.debug(
          "removed", metadata: ["archive.id": "\(listing.id)", "reason": "\(decision.reasons.joined(separator: ", "))"])
      }
      result.rowsTrimmed = try database?.trimSessionBackups(keepPerUser: options.policy.keepPerUser, dryRun: false) ?? 0
      // The same plan on the remotes: only what was removed here, never an archive this host does
      // not know (another host's, or one this host lost: then the remote copy is the last one).
      let removedRecords = plan.remove.compactMap { signed[$0.item.id].map { listed[$0] } }
      for remote in deployment.remotes where !removedRecords.isEmpty {
        do {
          let there = Set(try remote.list().map(\.path))
          var paths: [String] = []
          for record in removedRecords {
            let directory = String(repository.directory(of: record).dropFirst(repository.backupsDirectory.count + 1))
            for name in [
              record.fileName, record.id + ArchiveName.recordSuffix, record.id + ArchiveSignature.fileSuffix,
            ]
            where there.contains(directory + "/" + name) {
              paths.append(directory + "/" + name)
            }
          }
          if !paths.isEmpty {
            let run = try remote.delete(paths)
            guard run.status == 0 else {
              throw StoreError.invalid(
                path: "remote \(remote.name)", reason: "rclone delete failed (exit \(run.status)): \(run.errorText)",
                hint: "check the remote's configuration and reachability")
            }
          }
          result.remoteRemoved[remote.name] =
            paths.filter { ArchiveName.parse(fileName: ($0 as NSString).lastPathComponent) != nil }.count
        } catch let error as StoreError {
          // Reported, never swallowed: the run ends partial (exit 3) and says which remote.
          result.remoteFailures.append(
            RemotePruneFailure(remote: remote.name, reason: error.errorDescription ?? "\(error)"))
          logger.error(
            "remote prune failed", metadata: ["remote": "\(remote.name)", "error": "\(error.errorDescription ?? "")"])
        }
      }
      logger.notice(
        "prune done",
        metadata: [
          "archives.kept": "\(plan.keep.count)", "archives.removed": "\(result.removed)",
          "bytes.freed": "\(result.bytesFreed)", "rows.trimmed": "\(result.rowsTrimmed)",
          "remotes.failed": "\(result.remoteFailures.count)",
        ])
      return result
    } catch let error as StoreError {
      throw JobError.store(context: "prune", underlying: error)
    }
  }

  /// Pins (or unpins) an archive so prune never removes it.
  /// - Throws: `JobError.store` when the id matches no archive.
  public static func pin(_ deployment: Deployment, id: String, isPinned: Bool) throws -> String {
    let repository = ArchiveRepository(backupsDirectory: deployment.backupsDirectory)
    do {
      let record = try repository.find(id: id)
      // The temporary of a pin cut off before its rename (no lock: only dead writers' go).
      FileSystem.removeStaleTemporaries(in: FileSystem.parentDirectory(of: repository.path(of: record)))
      try repository.setPinned(record, isPinned)
      return record.id
    } catch let error as StoreError {
      throw JobError.store(context: isPinned ? "pin" : "unpin", underlying: error)
    }
  }
}

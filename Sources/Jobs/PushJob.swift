import Foundation
import Logging
import Store

/// What a push did for one remote.
public struct RemotePush: Codable, Sendable, Equatable {
  public var remote: String
  public var root: String
  public var ok: Bool
  /// Archives the remote holds after the push (verified by size and hash).
  public var archivesThere: Int
  /// Local signed archives still missing or different there.
  public var archivesMissing: Int
  public var attempts: Int
  public var error: String?
  /// Local archives that failed authentication (signature or file hash) and were not pushed.
  public var refused: [RejectedArchive] = []
  /// Local archives without a signature, not pushed (`tgsess keys sign-existing` vouches for
  /// this host's own).
  public var unsignedSkipped: Int = 0
}

/// What `tgsess push` did.
public struct PushResult: Codable, Sendable, Equatable {
  public var remotes: [RemotePush]
  public var isPartial: Bool { remotes.contains { !$0.ok } }
}

/// Copies archives offsite, after they were published and proven locally.
public enum PushJob {
  /// Pushes every local archive signed by this deployment's key that the remotes lack, with its
  /// signature and record (never replacing a remote object), after checking its signature and
  /// its file's hash again; an archive that fails is never pushed and is named, an unsigned one
  /// is counted. Verifies each remote by size and hash, retries temporary failures 3 times with
  /// backoff, and records per remote what is there in `backups/remotes/<name>.json`.
  /// - Returns: per-remote outcomes; a remote that failed, or an archive refused, makes the
  ///   result partial.
  public static func run(
    _ deployment: Deployment, remotes: [RcloneRemote], logger: Logger,
    sleep: (Duration) throws -> Void = { duration in
      let (seconds, attoseconds) = duration.components
      Thread.sleep(forTimeInterval: Double(seconds) + Double(attoseconds) / 1e18)
    }
  ) -> PushResult {
    var outcomes: [RemotePush] = []
    let repository = ArchiveRepository(backupsDirectory: deployment.backupsDirectory)
    // What may be pushed: the archives whose signature verifies, from their signature files (the
    // archive files are hashed below, before their first copy).
    var local: LocalArchives?
    var localError: StoreError?
    do {
      local = try LocalArchives(
        repository: repository, authenticator: try SigningAuthenticator.forDeployment(deployment))
    } catch {
      localError = StoreError.wrapping(error, path: deployment.backupsDirectory)
    }
    for remote in remotes {
      var outcome = RemotePush(
        remote: remote.name, root: remote.root, ok: false, archivesThere: 0,
        archivesMissing: local?.signed.count ?? 0, attempts: 0, error: nil)
      guard var archives = local else {
        let text = localError.map { $0.errorDescription ?? "\($0)" } ?? "unknown failure"
        outcome.error = "remote \(remote.name): cannot authenticate the archives before pushing: \(text)"
        logger.error("push failed", metadata: ["remote": "\(remote.name)", "error": "\(outcome.error ?? "")"])
        outcomes.append(outcome)
        continue
      }
      // What this remote learns about the local archives (hashes, refusals) holds for the next.
      defer { local = archives }
      var random = SystemRandomNumberGenerator()
      // 3 tries with backoff and jitter; TGSESS_RETRY_BASE_MS shortens the backoff (tests).
      let baseMS = ProcessInfo.processInfo.environment["TGSESS_RETRY_BASE_MS"].flatMap(Int.init) ?? 1000
      let policy = RetryPolicy(base: .milliseconds(baseMS), cap: .milliseconds(max(baseMS, 1) * 30))
      do {
        let result = try policy.runSynchronously(
          random: &random, sleep: sleep,
          classify: { error in
            if let failure = error as? RemoteFailure {
              return ClassifiedError(
                class: failure.isTemporary ? .temporary : .fatal, code: "RCLONE_EXIT_\(failure.status)",
                needsConfirmation: false, summary: failure.message)
            }
            return ErrorClassifier.classify(error: error)
          }
        ) { attempt -> Void in
          outcome.attempts = attempt
          let there: Set<String>
          do { there = Set(try remote.list().map(\.path)) } catch let error as StoreError {
            throw RemoteFailure(status: 1, isTemporary: true, message: error.errorDescription ?? "\(error)")
          }
          let missing = archives.filesMissing(from: there)
          if !missing.isEmpty {
            let push = try remote.push(backupsDirectory: deployment.backupsDirectory, files: missing)
            if push.status == 6 {
              throw RemoteFailure(
                status: 6, isTemporary: false,
                message:
                  "an archive already on the remote differs from the local one and was not replaced (\(push.errorText)); investigate the remote copy"
              )
            }
            guard push.status == 0 else {
              throw RemoteFailure(
                status: push.status, isTemporary: RcloneRemote.isTemporary(push.status),
                message: "rclone copy failed (exit \(push.status)): \(push.errorText)")
            }
          }
          let check = try remote.verify(backupsDirectory: deployment.backupsDirectory, files: archives.files)
          guard check.status == 0 else {
            throw RemoteFailure(
              status: check.status, isTemporary: RcloneRemote.isTemporary(check.status),
              message: "rclone check found differences (exit \(check.status)): \(check.errorText)")
          }
        }
        switch result.verdict {
        case .succeeded:
          outcome.ok = true
        case .fatal(let error), .temporary(let error):
          outcome.error = "remote \(remote.name): \(error.summary)"
        }
      } catch {
        outcome.error = "remote \(remote.name): \(error.localizedDescription)"
      }
      outcome.refused = archives.refused
      outcome.unsignedSkipped = archives.unsigned.count
      if !archives.refused.isEmpty {
        // Never pushed, and loud: someone wrote to backups/, or an archive rotted on disk.
        outcome.ok = false
        let refusal =
          "refused to push \(archives.refused.count) archive(s) that fail authentication (\(ArchiveSigning.notSignedReason)): \(archives.refused.prefix(3).map(\.path).joined(separator: ", "))\(archives.refused.count > 3 ? ", …" : ""); investigate, then remove them by hand"
        outcome.error = outcome.error.map { $0 + "; " + refusal } ?? "remote \(remote.name): " + refusal
      }
      // What is there now, from the remote itself.
      if let files = try? remote.list() {
        // A copy that differs from the local archive does not count as there.
        let differing = Set(
          ((try? remote.verify(backupsDirectory: deployment.backupsDirectory, files: archives.files))?.differingFiles
            ?? []).map { ($0 as NSString).lastPathComponent })
        let there = Set(
          files.map(\.path).filter { ArchiveName.parse(fileName: ($0 as NSString).lastPathComponent) != nil }.map {
            ($0 as NSString).lastPathComponent
          }
        ).subtracting(differing)
        outcome.archivesThere = there.count
        outcome.archivesMissing = archives.signed.filter { !there.contains($0.fileName) }.count
        if !outcome.ok, outcome.error == nil { outcome.error = "remote \(remote.name): unknown failure" }
        RemoteState.save(
          RemoteState(
            remote: remote.name, root: remote.root, checkedAt: Date(), archivesThere: outcome.archivesThere,
            archivesMissing: outcome.archivesMissing,
            lastSuccessAt: outcome.ok ? Date() : RemoteState.load(deployment, remote: remote.name)?.lastSuccessAt,
            archiveNames: there.sorted()),
          deployment)
      }
      if outcome.ok {
        logger.notice(
          "push done", metadata: ["remote": "\(remote.name)", "archives.there": "\(outcome.archivesThere)"])
      } else {
        logger.error("push failed", metadata: ["remote": "\(remote.name)", "error": "\(outcome.error ?? "")"])
      }
      outcomes.append(outcome)
    }
    return PushResult(remotes: outcomes)
  }

  /// The local archives as push sees them: the signed ones (whose files go offsite), the
  /// unsigned ones (not pushed), and the ones refused (never pushed). An archive's file is
  /// hashed against its signature before its first copy to any remote; one that fails moves to
  /// `refused`.
  struct LocalArchives {
    let repository: ArchiveRepository
    let authenticator: SigningAuthenticator
    private(set) var signed: [ArchiveRecord] = []
    private(set) var unsigned: [ArchiveRecord] = []
    private(set) var refused: [RejectedArchive] = []
    /// Archives whose file was hashed and matched its signature in this run.
    private var hashed: Set<String> = []

    init(repository: ArchiveRepository, authenticator: SigningAuthenticator) throws {
      self.repository = repository
      self.authenticator = authenticator
      let records = try repository.list()
      for (record, standing) in zip(records, authenticator.authenticity(of: records, in: repository)) {
        switch standing {
        case .signed: signed.append(record)
        case .unsigned: unsigned.append(record)
        case .rejected(let error):
          refused.append(
            RejectedArchive(id: record.id, path: repository.path(of: record), reason: ListJob.rejection(error)))
        }
      }
    }

    /// The files of a signed archive, relative to `backups/`: the archive, its signature and
    /// (when there is one) its record.
    func files(of record: ArchiveRecord) -> [String] {
      let directory = String(
        repository.directory(kind: record.kind, userID: record.userID).dropFirst(repository.backupsDirectory.count + 1))
      var names = [record.fileName, record.id + ArchiveSignature.fileSuffix]
      if FileSystem.exists(repository.directory(kind: record.kind, userID: record.userID) + "/" + record.id + ".json") {
        names.append(record.id + ArchiveName.recordSuffix)
      }
      return names.map { directory + "/" + $0 }
    }

    /// Every file the remotes should hold.
    var files: [String] { signed.flatMap(files(of:)) }

    /// The files of signed archives that `there` lacks. Each archive with a file to copy is
    /// first hashed against its signature (once per run); one that fails is refused instead.
    mutating func filesMissing(from there: Set<String>) -> [String] {
      var missing: [String] = []
      var failed: Set<String> = []
      for record in signed {
        let lacking = files(of: record).filter { !there.contains($0) }
        guard !lacking.isEmpty else { continue }
        if !hashed.contains(record.id) {
          do {
            _ = try ArchiveSigning.verifyFile(archivePath: repository.path(of: record), ring: authenticator.ring)
            hashed.insert(record.id)
          } catch {
            let storeError = StoreError.wrapping(error, path: repository.path(of: record))
            refused.append(
              RejectedArchive(
                id: record.id, path: repository.path(of: record), reason: ListJob.rejection(storeError)))
            failed.insert(record.id)
            continue
          }
        }
        missing += lacking
      }
      signed.removeAll { failed.contains($0.id) }
      return missing
    }
  }

  struct RemoteFailure: Error, LocalizedError {
    var status: Int32
    var isTemporary: Bool
    var message: String
    var errorDescription: String? { message }
  }
}

/// What tgsess last saw on a remote, for `check` and metrics: `backups/remotes/<name>.json`.
public struct RemoteState: Codable, Sendable, Equatable {
  public var remote: String
  public var root: String
  public var checkedAt: Date
  public var archivesThere: Int
  public var archivesMissing: Int
  public var lastSuccessAt: Date?
  /// The archive file names the remote held when last listed.
  public var archiveNames: [String]?

  static func path(_ deployment: Deployment, remote: String) -> String {
    deployment.backupsDirectory + "/remotes/" + remote + ".json"
  }

  /// Saves the state (best effort: a failure here never fails a push).
  static func save(_ state: RemoteState, _ deployment: Deployment) {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    encoder.dateEncodingStrategy = .iso8601
    guard let data = try? encoder.encode(state) else { return }
    try? FileSystem.makeDirectory(deployment.backupsDirectory + "/remotes")
    try? FileSystem.writeAtomically(data, to: path(deployment, remote: state.remote))
  }

  /// The last saved state of `remote`.
  public static func load(_ deployment: Deployment, remote: String) -> RemoteState? {
    let decoder = JSONDecoder()
    decoder.dateDecodingStrategy = .iso8601
    guard let data = try? FileSystem.read(path(deployment, remote: remote)) else { return nil }
    return try? decoder.decode(RemoteState.self, from: data)
  }
}

extension PushJob {
  /// `tgsess push`: catches the remotes up, under the deployment lock.
  /// - Throws: `JobError` (lock held, unknown remote).
  public static func catchUp(_ deployment: Deployment, remote: String?, lockWait: TimeInterval, logger: Logger) throws
    -> PushResult
  {
    do {
      let remotes = try remote.map { [try deployment.remote(named: $0)] } ?? deployment.remotes
      guard !remotes.isEmpty else {
        throw JobError.usage(
          "no remote configured; add a [[remotes]] table (name, path) to \(deployment.configPath ?? deployment.root + "/tgsess.toml")"
        )
      }
      let lock = try DeploymentLock.acquire(path: deployment.lockPath, command: "push", wait: lockWait)
      defer { lock.release() }
      return run(deployment, remotes: remotes, logger: logger)
    } catch let error as StoreError {
      throw JobError.store(context: "push", underlying: error)
    }
  }
}

extension PushResult {
  /// Offsite metrics, one sample per remote (no per-user labels).
  public var metrics: MetricsFile {
    var file = MetricsFile()
    for remote in remotes {
      file.gauge(
        "tgsess_offsite_ok", remote.ok ? 1 : 0, help: "1 when the last push to the remote succeeded and verified.",
        labels: [("remote", remote.remote)])
      file.gauge(
        "tgsess_offsite_missing_archives", Double(remote.archivesMissing),
        help: "Local archives missing or different on the remote.", labels: [("remote", remote.remote)])
      if remote.ok {
        file.gauge(
          "tgsess_offsite_last_success_timestamp_seconds", Date().timeIntervalSince1970,
          help: "Unix time of the last verified push.", labels: [("remote", remote.remote)])
      }
    }
    return file
  }
}

import Foundation
import Store

/// The archives: the backups directory can be listed, every archive carries this deployment's
/// signature (a rejected one means someone wrote to backups/), a signed full snapshot is young
/// enough, every live user is in some signed archive, there is free space, and (`--deep`) the
/// newest full snapshot and a rotating sample of per-user archives verify in full against their
/// signatures.
public enum BackupsCheck {
  public static func findings(_ context: CheckContext) -> [CheckFinding] {
    let directory = context.deployment.backupsDirectory
    var findings: [CheckFinding] = []
    switch context.archives {
    case .failure(let error):
      // Nothing is known about any archive: one finding, not "no archive holds this user" for each.
      findings.append(
        CheckFinding(
          .backupDirectory, .critical, "\(error.errorDescription ?? "\(error)"); no archive was checked",
          remedy:
            "make \(directory) a directory (mode 700) that the user running tgsess can read, then run: tgsess check"))
    case .success:
      // Without a key ring nothing counts as signed; KeysCheck names the ring.
      let archives = context.signedArchives
      findings += signatureFindings(context)
      findings += userFindings(context, archives: archives)
      findings += ageFindings(context, archives: archives)
      findings += plaintextFindings(context)
    }
    if let freeBytes = context.freeBytes, freeBytes < context.options.minFreeBytes {
      findings.append(
        CheckFinding(
          .backupDisk, .warning,
          "only \(freeBytes / 1_048_576) MiB free on \(directory) (warning below \(context.options.minFreeBytes / 1_048_576) MiB)",
          remedy: "run: tgsess prune"))
    }
    if context.options.isDeep, case .success = context.archives {
      findings += deepFindings(context, archives: context.signedArchives)
    }
    return findings
  }

  /// Plaintext copies of secrets that earlier versions left in backups/ (WARNING: nothing
  /// encrypts, lists or prunes them, and whoever reads backups/ reads the keys in them).
  static func plaintextFindings(_ context: CheckContext) -> [CheckFinding] {
    var findings: [CheckFinding] = []
    switch context.beforeRestoreCopies {
    case .success(let directories):
      for directory in directories {
        findings.append(
          CheckFinding(
            .backupPlaintext, .warning,
            "\(directory) holds plaintext copies of live files (session files with their auth keys, or the database) that a restore of an earlier tgsess took before replacing them; nothing encrypts, lists or prunes it",
            remedy:
              "once it is not needed, remove it: rm -r \(directory); to put a file back first, copy it into place by hand as docs/RUNBOOK.md §1 says"
          ))
      }
    case .failure(let error):
      findings.append(
        CheckFinding(
          .backupPlaintext, .warning,
          "\(error.errorDescription ?? "\(error)"); it may hold plaintext copies of session files an earlier tgsess left",
          remedy: "make it readable by the user running tgsess, then run: tgsess check"))
    }
    switch context.preMigrateCopies {
    case .success(let copies) where !copies.isEmpty:
      findings.append(
        CheckFinding(
          .backupPlaintext, .warning,
          "\(copies.count) plaintext copy(ies) of the database that init or migrate of an earlier tgsess left: \(copies.prefix(3).joined(separator: ", "))\(copies.count > 3 ? ", …" : "")",
          remedy: "run: tgsess migrate (it archives them encrypted and signed, then removes them)"))
    case .success: break
    case .failure(let error):
      findings.append(
        CheckFinding(
          .backupPlaintext, .warning,
          "\(error.errorDescription ?? "\(error)"); it may hold plaintext copies of the database an earlier tgsess left",
          remedy: "make it readable by the user running tgsess, then run: tgsess check"))
    }
    return findings
  }

  /// Rejected archives (CRITICAL: someone wrote to backups/, or a signed archive was damaged or
  /// moved) and unsigned ones (WARNING: made before archives were signed, or planted).
  static func signatureFindings(_ context: CheckContext) -> [CheckFinding] {
    var findings: [CheckFinding] = []
    let rejected = context.rejectedArchives
    if !rejected.isEmpty {
      let named = rejected.prefix(3).map { ListJob.rejectionLine($0.error, path: $0.record.id) }
      findings.append(
        CheckFinding(
          .backupSignature, .critical,
          "\(rejected.count) archive(s) in \(context.deployment.backupsDirectory) fail authentication (\(ArchiveSigning.notSignedReason)): \(named.joined(separator: "; "))\(rejected.count > 3 ? "; …" : "")",
          remedy:
            "someone wrote to backups/ (or a signed archive was damaged or moved): investigate, then remove them by hand; they are never restored, counted or pushed (tgsess list shows them all)"
        ))
    }
    let unsigned = context.unsignedArchives
    if !unsigned.isEmpty {
      findings.append(
        CheckFinding(
          .backupSignature, .warning,
          "\(unsigned.count) archive(s) in \(context.deployment.backupsDirectory) are not signed (made before archives were signed, or planted): restore refuses them and prune ignores them",
          remedy:
            "if this host made them and nobody else could have written to backups/ since, run: tgsess keys sign-existing"
        ))
    }
    return findings
  }

  /// Every live user is held by a signed per-user archive or full snapshot.
  static func userFindings(_ context: CheckContext, archives: [ArchiveRecord]) -> [CheckFinding] {
    var held = Set<Int64>()
    for record in archives {
      if record.kind == .user, let user = record.userID { held.insert(user) } else { held.formUnion(record.userIDs) }
    }
    return context.liveUsers.filter { !held.contains($0) }.map {
      CheckFinding(.userNoBackup, .warning, "no archive holds this user", remedy: "run: tgsess backup", user: $0)
    }
  }

  /// The newest signed full snapshot exists and is younger than `maxBackupAge`.
  static func ageFindings(_ context: CheckContext, archives: [ArchiveRecord]) -> [CheckFinding] {
    guard let newest = newestFull(archives) else {
      return [
        CheckFinding(
          .backupAge, .critical, "no verified full snapshot in \(context.deployment.backupsDirectory)",
          remedy: "run: tgsess backup")
      ]
    }
    let age = context.options.now.timeIntervalSince(newest.createdAt)
    guard age > context.options.maxBackupAge else { return [] }
    return [
      CheckFinding(
        .backupAge, .critical,
        "the newest verified full snapshot \(newest.id) is \(CheckJob.duration(age)) old (limit \(CheckJob.duration(context.options.maxBackupAge)))",
        remedy: "check the backup timer, then run: tgsess backup")
    ]
  }

  /// Verifies the newest signed full snapshot and `deepSample` signed per-user archives, a
  /// different slice each day, through `ArchiveVerifier`: signature, manifest, every entry and
  /// the file's hash. Without the identity on this host, each archive file's hash and size are
  /// checked against its signature instead.
  static func deepFindings(_ context: CheckContext, archives: [ArchiveRecord]) -> [CheckFinding] {
    guard case .success(let authenticator) = context.signing else { return [] }
    let sample = deepSample(context, archives: archives)
    let identities = (try? context.identities?.get()) ?? []
    let repository = ArchiveRepository(backupsDirectory: context.deployment.backupsDirectory)
    let verifier = ArchiveVerifier(identities: identities, authenticator: authenticator)
    var findings: [CheckFinding] = []
    for record in sample {
      let path = repository.path(of: record)
      do {
        if verifier.canDecrypt(isEncrypted: record.isEncrypted) {
          _ = try verifier.verify(path: path, into: nil, scope: .everyEntry)
        } else {
          _ = try ArchiveSigning.verifyFile(archivePath: path, ring: authenticator.ring)
        }
      } catch let error as StoreError {
        findings.append(CheckFinding(.backupDeep, .critical, error: error))
      } catch {
        findings.append(CheckFinding(.backupDeep, .critical, "\(record.id): \(error)"))
      }
    }
    return findings
  }

  /// What `--deep` proved of the archives, in words for the summary line: whether anything was
  /// decrypted, or only compared by ciphertext because no identity is on this host. Nil without
  /// `--deep`.
  public static func deepStatement(_ context: CheckContext) -> String? {
    guard context.options.isDeep, case .success(let archives) = context.archives else { return nil }
    let sample = deepSample(context, archives: archives)
    let encrypted = sample.filter(\.isEncrypted).count
    let plain = sample.count - encrypted
    let identities = (try? context.identities?.get()) ?? []
    guard identities.isEmpty, encrypted > 0 else {
      return "deep: \(sample.count) archive(s) read in full (decrypted, every entry hashed against its manifest)"
    }
    var why = "no age identity on this host"
    if case .failure = context.identities { why = "the age identity could not be read" }
    return
      "deep: \(why), so nothing was decrypted: \(encrypted) archive(s) compared with their signed SHA-256 and size only"
      + (plain > 0 ? ", \(plain) unencrypted archive(s) read in full" : "")
  }

  /// The archives `--deep` looks at: the newest full snapshot and `deepSample` per-user archives,
  /// a different slice each day.
  static func deepSample(_ context: CheckContext, archives: [ArchiveRecord]) -> [ArchiveRecord] {
    var sample: [ArchiveRecord] = []
    if let newest = newestFull(archives) { sample.append(newest) }
    let perUser = archives.filter { $0.kind == .user }
    let size = context.options.deepSample
    if !perUser.isEmpty, size > 0 {
      let day = Int(context.options.now.timeIntervalSince1970 / 86400)
      let start = (day * size) % perUser.count
      for index in 0..<min(size, perUser.count) { sample.append(perUser[(start + index) % perUser.count]) }
    }
    return sample
  }

  /// The newest full snapshot among `archives` (signed ones: the writer signs only what it
  /// proved).
  static func newestFull(_ archives: [ArchiveRecord]) -> ArchiveRecord? {
    archives.first { $0.kind == .full }
  }
}

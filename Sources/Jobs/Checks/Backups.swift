import Foundation
import Store

/// The archives: the backups directory can be listed, a verified full snapshot is young enough,
/// every live user is in some archive, there is free space, and (`--deep`) the newest full
/// snapshot and a rotating sample of per-user archives decrypt and hash to their records.
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
    case .success(let archives):
      findings += userFindings(context, archives: archives)
      findings += ageFindings(context, archives: archives)
    }
    if let freeBytes = context.freeBytes, freeBytes < context.options.minFreeBytes {
      findings.append(
        CheckFinding(
          .backupDisk, .warning,
          "only \(freeBytes / 1_048_576) MiB free on \(directory) (warning below \(context.options.minFreeBytes / 1_048_576) MiB)",
          remedy: "run: tgsess prune"))
    }
    if context.options.isDeep, case .success(let archives) = context.archives {
      findings += deepFindings(context, archives: archives)
    }
    return findings
  }

  /// Every live user is held by a per-user archive or a full snapshot.
  static func userFindings(_ context: CheckContext, archives: [ArchiveRecord]) -> [CheckFinding] {
    var held = Set<Int64>()
    for record in archives {
      if record.kind == .user, let user = record.userID { held.insert(user) } else { held.formUnion(record.userIDs) }
    }
    return context.liveUsers.filter { !held.contains($0) }.map {
      CheckFinding(.userNoBackup, .warning, "no archive holds this user", remedy: "run: tgsess backup", user: $0)
    }
  }

  /// The newest verified full snapshot exists and is younger than `maxBackupAge`.
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

  /// Decrypts and hashes the newest full snapshot and `deepSample` per-user archives, a different
  /// slice each day. Without the identity on this host, each archive's ciphertext is compared with
  /// the SHA-256 its record holds instead.
  static func deepFindings(_ context: CheckContext, archives: [ArchiveRecord]) -> [CheckFinding] {
    let sample = deepSample(context, archives: archives)
    let identities = (try? context.identities?.get()) ?? []
    let repository = ArchiveRepository(backupsDirectory: context.deployment.backupsDirectory)
    var findings: [CheckFinding] = []
    for record in sample {
      let path = repository.path(of: record)
      do {
        if record.isEncrypted, identities.isEmpty {
          try verifyCiphertext(path: path, record: record)
        } else {
          _ = try ArchiveReader.read(path: path, identities: identities)
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
    return "deep: \(why), so nothing was decrypted: \(encrypted) archive(s) compared with their recorded SHA-256 only"
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

  /// The newest full snapshot that was proven when it was written.
  static func newestFull(_ archives: [ArchiveRecord]) -> ArchiveRecord? {
    archives.first { $0.kind == .full && $0.isVerified }
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
}

import Foundation

/// How archives are encrypted.
public enum ArchiveEncryption: Sendable {
  /// age v1 to these X25519 recipients (the default).
  case age([AgeRecipient])
  /// No encryption (`--no-encrypt`, an explicit opt-out).
  case none
}

/// Where the bytes of an archive entry come from.
public enum ArchiveSource: Sendable, Equatable {
  /// A whole file.
  case file(String)
  /// `length` bytes at `offset` of a file (a staging pack of small snapshots).
  case region(path: String, offset: Int64, length: Int64)
}

/// The archives of one deployment: `backups/full/<id>.tar.zst.age` for full snapshots and
/// `backups/users/user_<id>/<id>.tar.zst.age` for per-user backups, each with its signature
/// `<id>.sig` and its record `<id>.json`. Writes are write-then-prove-then-sign: a temporary
/// name, fsync, read back and check, sign, publish (no-clobber link), record, fsync the
/// directory.
public struct ArchiveRepository: Sendable {
  public let backupsDirectory: String

  public init(backupsDirectory: String) {
    self.backupsDirectory = backupsDirectory
  }

  public var fullDirectory: String { backupsDirectory + "/full" }
  public var usersDirectory: String { backupsDirectory + "/users" }

  /// The directory of `userID`'s per-user archives.
  public func userDirectory(_ userID: Int64) -> String { usersDirectory + "/user_\(userID)" }

  /// The directory an archive of this kind lives in.
  public func directory(kind: Manifest.Kind, userID: Int64?) -> String {
    kind == .full ? fullDirectory : userDirectory(userID ?? 0)
  }

  /// The path of a listed archive.
  public func path(of record: ArchiveRecord) -> String {
    directory(kind: record.kind, userID: record.userID) + "/" + record.fileName
  }

  // MARK: - Writing

  /// Writes one archive: `manifest.json` first, then each manifest entry streamed from
  /// `sources[entry.path]` (a file or a region of one), through zstd and (by default) age, to a
  /// temporary file; fsyncs it; proves it (decrypting with `identities` when the host has them,
  /// else re-reading the ciphertext's SHA-256); signs it with `signingKey` (`<id>.sig`, written
  /// and fsynced first); publishes it under its final name; then its record.
  /// - Parameter fernetKeys: the fingerprints of the Fernet keys the archived secrets are under
  ///   (see `BotDatabase.fernetKeyFingerprints`), kept in the record; nil when not known.
  /// - Returns: the record, as `list` will show it.
  /// - Throws: `StoreError`; nothing is left under a name `list` or `restore` would pick. A
  ///   crash leaves nothing visible, or a published archive with its signature (an orphan
  ///   signature, or a hidden record, is cleaned up by the next run's `removeLeftovers`).
  public func write(
    id: String, manifest: Manifest, sources: [String: ArchiveSource], encryption: ArchiveEncryption,
    identities: [AgeIdentity], signingKey: SigningKey, zstdLevel: Int = 3, fernetKeys: [String]? = nil,
    progress: ((Int64) -> Void)? = nil
  ) throws -> ArchiveRecord {
    try write(
      id: id, manifest: manifest, entrySources: manifest.entries.map { sources[$0.path] }, encryption: encryption,
      identities: identities, signingKey: signingKey, zstdLevel: zstdLevel, fernetKeys: fernetKeys,
      progress: progress)
  }

  /// `write` with the sources in the order of `manifest.entries` (`entrySources[i]` is where
  /// entry i's bytes come from): a full backup's 10,000s of entries need no index by path.
  /// - Throws: as `write`.
  public func write(
    id: String, manifest: Manifest, entrySources: [ArchiveSource?], encryption: ArchiveEncryption,
    identities: [AgeIdentity], signingKey: SigningKey, zstdLevel: Int = 3, fernetKeys: [String]? = nil,
    progress: ((Int64) -> Void)? = nil
  ) throws -> ArchiveRecord {
    let pending = try prepare(
      id: id, manifest: manifest, entrySources: entrySources, encryption: encryption, identities: identities,
      signingKey: signingKey, zstdLevel: zstdLevel, fernetKeys: fernetKeys, isDurable: true, progress: progress)
    defer { pending.discard() }
    try publish(pending)
    try FileSystem.fsyncDirectory(pending.directory)
    return pending.record
  }

  /// Writes, proves and signs one archive as `write` does, and writes its signature and record,
  /// all under hidden temporary names; `publish(batch:)` makes them visible. With `isDurable`
  /// false nothing is fsynced yet: `publish(batch:)` makes a whole batch durable at once, before
  /// it publishes.
  /// - Parameter fernetKeys: as for `write`.
  /// - Returns: the pending archive; the caller publishes it or calls `discard()`.
  /// - Throws: `StoreError`; nothing is left behind.
  public func prepare(
    id: String, manifest: Manifest, sources: [String: ArchiveSource], encryption: ArchiveEncryption,
    identities: [AgeIdentity], signingKey: SigningKey, zstdLevel: Int = 3, fernetKeys: [String]? = nil,
    isDurable: Bool,
    progress: ((Int64) -> Void)? = nil
  ) throws -> PendingArchive {
    try prepare(
      id: id, manifest: manifest, entrySources: manifest.entries.map { sources[$0.path] }, encryption: encryption,
      identities: identities, signingKey: signingKey, zstdLevel: zstdLevel, fernetKeys: fernetKeys,
      isDurable: isDurable, progress: progress)
  }

  /// `prepare` with the sources in the order of `manifest.entries`, as for `write(entrySources:)`.
  /// - Throws: as `prepare`.
  func prepare(
    id: String, manifest: Manifest, entrySources: [ArchiveSource?], encryption: ArchiveEncryption,
    identities: [AgeIdentity], signingKey: SigningKey, zstdLevel: Int = 3, fernetKeys: [String]? = nil,
    isDurable: Bool,
    progress: ((Int64) -> Void)? = nil
  ) throws -> PendingArchive {
    let directory = self.directory(kind: manifest.kind, userID: manifest.userID)
    try FileSystem.makeDirectory(directory)
    var isEncrypted = false
    if case .age = encryption { isEncrypted = true }
    let fileName = ArchiveName.fileName(id: id, isEncrypted: isEncrypted)
    let finalPath = directory + "/" + fileName
    let tempPath = FileSystem.temporaryPath(for: finalPath)
    let fd = open(tempPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, FileSystem.fileMode)
    guard fd >= 0 else { throw StoreError.io(path: tempPath, operation: "create", errno: errno) }
    var isHandedOver = false
    defer { if !isHandedOver { unlink(tempPath) } }

    // 1. Write. Entries are hashed as they are archived only when the archive cannot be read
    // back (the identity is off this host): the read-back proof checks every entry anyway.
    let readsBack = !isEncrypted || !identities.isEmpty
    let manifestBytes = try manifest.encoded()
    let sink = HashingSink(output: FileDescriptorSink(fd: fd, path: tempPath))
    do {
      defer { close(fd) }
      var ageWriter: AgeEncryptingWriter?
      if case .age(let recipients) = encryption {
        do { ageWriter = try AgeEncryptingWriter(recipients: recipients, output: sink) } catch let error as AgeError {
          throw error.storeError
        }
      }
      let tar = try TarZstdWriter(level: zstdLevel, objectName: finalPath) { bytes in
        if let ageWriter { try ageWriter.write(bytes) } else { try sink.write(bytes) }
      }
      try tar.addFile(path: "manifest.json", data: manifestBytes, modified: manifest.createdAt)
      // Regions share their pack file: one descriptor per file, not per entry.
      var openFiles: [String: Int32] = [:]
      defer { for fd in openFiles.values { close(fd) } }
      for (index, entry) in manifest.entries.enumerated() {
        let written: (size: Int64, sha256: String)
        switch index < entrySources.count ? entrySources[index] : nil {
        case .file(let source):
          written = try tar.addFile(
            path: entry.path, contentsOf: source, mode: mode_t(entry.mode), modified: manifest.createdAt,
            hashes: !readsBack)
        case .region(let source, let offset, let length):
          var sourceFD = openFiles[source] ?? -1
          if sourceFD < 0 {
            sourceFD = open(source, O_RDONLY | O_CLOEXEC)
            guard sourceFD >= 0 else { throw StoreError.io(path: source, operation: "open", errno: errno) }
            openFiles[source] = sourceFD
          }
          written = try tar.addFile(
            path: entry.path, fd: sourceFD, sourceName: source, offset: offset, length: length,
            mode: mode_t(entry.mode), modified: manifest.createdAt, hashes: !readsBack)
        case nil:
          throw StoreError.invalid(
            path: finalPath, reason: "no staged file for entry \(entry.path)", hint: "this is a tgsess bug; report it")
        }
        guard readsBack || written.sha256 == entry.sha256 else {
          throw StoreError.invalid(
            path: finalPath, reason: "staged file \(entry.path) changed while it was archived",
            hint: "run the backup again")
        }
        progress?(written.size)
      }
      try tar.finish()
      try ageWriter?.finish()
      try CrashPoint.hit("archive.before-fsync")
      if isDurable, fsync(fd) != 0 { throw StoreError.io(path: tempPath, operation: "fsync", errno: errno) }
    }
    let archiveSHA256 = sink.digest()
    let byteCount = sink.byteCount

    // 2. Prove, through the verifier every reader uses. (The writer's buffers are freed; after
    // a big archive, hand them back to the system first, so the reader's do not add to the
    // peak. Not after a small one: the reader reuses the same freed memory, and handing it back
    // made every one of 10,000 per-user archives fault its buffers in anew, 17 % of a first
    // backup's CPU.) The archive is not signed yet: it is signed once proven.
    if manifest.entries.reduce(Int64(0), { $0 &+ max(0, $1.size) }) >= Self.releasesMemoryAbove {
      FileSystem.releaseFreeMemory()
    }
    let verifier = ArchiveVerifier(identities: identities, authenticator: UnsignedArchives())
    let verification = try verifier.verifyWritten(
      path: tempPath, finalPath: finalPath,
      claim: ArchiveClaim(
        id: id, kind: manifest.kind, userID: manifest.userID, createdAt: manifest.createdAt, isEncrypted: isEncrypted),
      manifest: manifest, manifestBytes: manifestBytes, sha256: archiveSHA256)
    try CrashPoint.hit("archive.after-verify")

    // 3. Sign what was proven. The signature goes into place (durably) before the archive is
    // published, so a published archive always has it; until then it is a hidden temporary.
    let statement = try SignedStatement(
      archiveID: id, manifest: manifest, manifestBytes: manifestBytes, isEncrypted: isEncrypted,
      fileByteCount: byteCount, fileSHA256: archiveSHA256)
    let signature = try ArchiveSigning.sign(statement, key: signingKey)
    // A faulty computation must not publish a signature that nothing verifies.
    try ArchiveSigning.verify(
      signature, ring: VerifyingKeyRing(keys: [signingKey.verifyingKey], path: "the signing key's public half"),
      object: finalPath)
    let signaturePath = directory + "/" + id + ArchiveSignature.fileSuffix
    let signatureTempPath = FileSystem.temporaryPath(for: signaturePath)
    // Removed unless handed over with the pending archive: also when the record fails below.
    defer { if !isHandedOver { unlink(signatureTempPath) } }
    try Self.writeFile(signature.encoded(), to: signatureTempPath, isDurable: isDurable)

    // 4. The record, under a hidden name; `publish` puts the signature, the archive and the
    // record into place in that order.
    // A verbatim session file is the user's too (what `list --user` and `restore --user` look for).
    func isSessionFile(_ entry: Manifest.Entry) -> Bool {
      entry.role == .session || VerbatimFiles.target(of: entry) == .init(file: .session, userID: entry.userID)
    }
    let users = Array(Set(manifest.entries.filter(isSessionFile).compactMap(\.userID))).sorted()
    var fingerprint: ArchiveRecord.SessionFingerprint?
    if manifest.kind == .user, let session = manifest.entries.first(where: { $0.role == .session }),
      let key = session.authKeyFingerprint, let dc = session.dcID
    {
      fingerprint = .init(
        authKey: key, dcID: dc, serverAddress: session.serverAddress.map(SessionIdentity.normalizedAddress))
    }
    var recipientStrings: [String] = []
    if case .age(let recipients) = encryption { recipientStrings = recipients.map(\.string) }
    var record = ArchiveRecord(
      id: id, fileName: fileName, kind: manifest.kind, createdAt: manifest.createdAt, userID: manifest.userID,
      reason: manifest.reason, isEncrypted: isEncrypted, byteCount: byteCount,
      contentByteCount: manifest.entries.reduce(0) { $0 + $1.size }, entryCount: manifest.entries.count,
      userIDs: users, sha256: archiveSHA256, verification: verification, verifiedAt: Date(),
      toolVersion: manifest.toolVersion, host: manifest.host, sessionFingerprint: fingerprint,
      recipients: recipientStrings, fernetKeys: fernetKeys)
    if manifest.entries.contains(where: { $0.role == .verbatim }) { record.hasVerbatimEntries = true }
    let recordPath = directory + "/" + id + ArchiveName.recordSuffix
    let recordTempPath = FileSystem.temporaryPath(for: recordPath)
    var isRecordWritten = false
    defer { if !isRecordWritten { unlink(recordTempPath) } }
    try Self.writeFile(try record.encoded(), to: recordTempPath, isDurable: isDurable)
    isRecordWritten = true
    isHandedOver = true
    return PendingArchive(
      record: record, directory: directory, tempPath: tempPath, finalPath: finalPath, recordTempPath: recordTempPath,
      recordPath: recordPath, signatureTempPath: signatureTempPath, signaturePath: signaturePath)
  }

  /// Publishes one prepared archive: its signature, the archive under its final name
  /// (no-clobber links), then its record. A crash leaves nothing visible, an orphan signature
  /// (removed by the next run's `removeLeftovers`), or the signed archive whose hidden record
  /// the next run rolls forward. The caller fsyncs the directory.
  /// - Throws: `StoreError.io`.
  func publish(_ pending: PendingArchive) throws {
    if link(pending.signatureTempPath, pending.signaturePath) != 0 {
      throw StoreError.io(path: pending.signaturePath, operation: "publish (link)", errno: errno)
    }
    unlink(pending.signatureTempPath)
    try CrashPoint.hit("archive.after-sign")
    try CrashPoint.hit("archive.before-publish")
    if link(pending.tempPath, pending.finalPath) != 0 {
      let error = StoreError.io(path: pending.finalPath, operation: "publish (link)", errno: errno)
      unlink(pending.signaturePath)
      throw error
    }
    unlink(pending.tempPath)
    if rename(pending.recordTempPath, pending.recordPath) != 0 {
      // The archive is published and proven; only its record is missing, which list tolerates.
      // The hidden record stays (durable: `write` fsynced it, a batch fsyncs it before it
      // publishes; `discard` keeps it) for the next run under the lock to roll forward
      // (`removeLeftovers`), so the archive does not stay listed without its record.
      throw StoreError.io(path: pending.recordPath, operation: "rename into place", errno: errno)
    }
    try CrashPoint.hit("archive.after-publish")
  }

  /// Publishes archives prepared with `isDurable: false`: first makes every one of them and
  /// its record durable (writeback of the batch's files started together, then an fsync of each
  /// file, which reports its own write error), then publishes each, then makes the new names
  /// durable (an fsync of each directory). Nothing is published before it is durable.
  /// - Parameter published: called with each archive once its name is in place.
  /// - Throws: `StoreError.io`; the archives not yet published are discarded.
  public func publish(batch: [PendingArchive], published: (PendingArchive) -> Void = { _ in }) throws {
    guard !batch.isEmpty else { return }
    var next = 0
    defer { for pending in batch[next...] { pending.discard() } }
    // The batch's files are written out together, then each is fsynced (the first fsync's
    // journal commit carries the others' metadata too, so the rest are cheap). Not syncfs: it
    // would also flush the run's staging pack, scratch the bot's commits would wait behind.
    let files = batch.flatMap { [$0.tempPath, $0.signatureTempPath, $0.recordTempPath] }
    FileSystem.startWriteback(files)
    for file in files { try FileSystem.fsyncFile(file) }
    var directories: [String] = []
    while next < batch.count {
      try publish(batch[next])
      published(batch[next])
      if directories.last != batch[next].directory { directories.append(batch[next].directory) }
      next += 1
    }
    for directory in Set(directories) { try FileSystem.fsyncDirectory(directory) }
  }

  /// Writes `data` to a new file at `path` (mode 0600) and fsyncs it.
  static func writeDurably(_ data: Data, to path: String) throws {
    try writeFile(data, to: path, isDurable: true)
  }

  /// Writes `data` to a new file at `path` (mode 0600), fsynced when `isDurable`.
  static func writeFile(_ data: Data, to path: String, isDurable: Bool) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, FileSystem.fileMode)
    guard fd >= 0 else { throw StoreError.io(path: path, operation: "create", errno: errno) }
    defer { close(fd) }
    try data.withUnsafeBytes { try FileSystem.writeAll(fd: fd, bytes: $0, path: path) }
    if isDurable, fsync(fd) != 0 { throw StoreError.io(path: path, operation: "fsync", errno: errno) }
  }

  // MARK: - Listing

  /// Every published archive, newest first. Works from the files alone: a missing or damaged
  /// record is rebuilt from the archive's name (verification `unknown`); records without an
  /// archive and temporaries are ignored.
  /// - Throws: `StoreError.io` when a directory cannot be read.
  public func list(kind: Manifest.Kind? = nil, userID: Int64? = nil) throws -> [ArchiveRecord] {
    var directories: [String] = []
    if kind != .user { directories.append(fullDirectory) }
    if kind != .full {
      if let userID {
        directories.append(userDirectory(userID))
      } else {
        for name in try Self.names(in: usersDirectory) where name.hasPrefix("user_") {
          directories.append(usersDirectory + "/" + name)
        }
      }
    }
    // Thousands of per-user directories: read and decoded on a few threads.
    var perDirectory = try Parallel.map(count: directories.count, workers: Parallel.defaultWorkers) { index in
      let directory = directories[index]
      let names = try Self.names(in: directory)
      let present = Set(names)
      return names.compactMap { Self.record(archive: $0, in: directory, present: present) }.filter { record in
        guard let userID else { return true }
        return record.kind == .user ? record.userID == userID : record.userIDs.contains(userID)
      }
    }
    // Into one array of the exact size, sorted in place: tens of thousands of records were a
    // doubling buffer and then a sorted copy, each at once with the other.
    var records: [ArchiveRecord] = []
    records.reserveCapacity(perDirectory.reduce(0) { $0 + $1.count })
    for directoryRecords in perDirectory { records.append(contentsOf: directoryRecords) }
    perDirectory = []
    records.sort { ($0.createdAt, $0.id) > ($1.createdAt, $1.id) }
    return records
  }

  /// The newest per-user archive of `userID`, reading only its own record: ids begin with the
  /// UTC time they were made, so the greatest id is the newest. (`list` orders by the recorded
  /// time, which is the id's for every archive tgsess writes.) With `accepting` (given the
  /// archive's path), archives it refuses are passed over.
  /// - Throws: `StoreError.io` when the directory cannot be read.
  public func newestUserArchive(userID: Int64, accepting: ((String) -> Bool)? = nil) throws -> ArchiveRecord? {
    let directory = userDirectory(userID)
    let names = try Self.names(in: directory)
    let present = Set(names)
    let archives = names.compactMap { name in ArchiveName.parse(fileName: name).map { (id: $0.0, name: name) } }
    for archive in archives.sorted(by: { $0.id > $1.id }) where accepting?(directory + "/" + archive.name) ?? true {
      if let record = Self.record(archive: archive.name, in: directory, present: present) { return record }
    }
    return nil
  }

  /// The record of the archive file `name` in `directory` (whose entries are `present`): its
  /// record file when that is readable and names it, else one rebuilt from the name
  /// (verification `unknown`); nil when `name` is not an archive's. Whatever the record file
  /// says, the id, file name, time and encryption are the name's and the kind and user the
  /// directory's (`full/` or `users/user_<id>/`), so `path(of:)` is always the file listed and
  /// an edited record can neither move nor re-date an archive. (A name that disagrees with its
  /// directory is refused when the archive is authenticated.)
  static func record(archive name: String, in directory: String, present: Set<String>) -> ArchiveRecord? {
    guard let (id, isEncrypted) = ArchiveName.parse(fileName: name), let described = ArchiveName.describe(id: id)
    else { return nil }
    let place = (directory as NSString).lastPathComponent
    let kind: Manifest.Kind
    let userID: Int64?
    if place == "full" {
      (kind, userID) = (.full, nil)
    } else if place.hasPrefix("user_"), let owner = Int64(place.dropFirst("user_".count)) {
      (kind, userID) = (.user, owner)
    } else {
      (kind, userID) = (described.kind, described.userID)
    }
    let recordName = id + ArchiveName.recordSuffix
    if present.contains(recordName), let data = try? FileSystem.read(directory + "/" + recordName),
      var record = ArchiveRecord.decode(data), record.fileName == name
    {
      record.id = id
      record.isEncrypted = isEncrypted
      record.createdAt = described.createdAt
      record.kind = kind
      record.userID = userID
      return record
    }
    let size = (try? FileSystem.size(of: directory + "/" + name)) ?? 0
    return ArchiveRecord(
      id: id, fileName: name, kind: kind, createdAt: described.createdAt, userID: userID,
      reason: "", isEncrypted: isEncrypted, byteCount: size, contentByteCount: 0, entryCount: 0,
      userIDs: userID.map { [$0] } ?? [], sha256: "", verification: .unknown, verifiedAt: nil,
      toolVersion: "", host: "", sessionFingerprint: nil)
  }

  /// Finds an archive by id (or unique id prefix).
  /// - Throws: `StoreError.missing` when none matches; `StoreError.invalid` when the prefix is
  ///   ambiguous, naming the first few matches (newest first) and how many there are.
  public func find(id: String) throws -> ArchiveRecord {
    let all = try list()
    if let exact = all.first(where: { $0.id == id }) { return exact }
    let matches = all.filter { $0.id.hasPrefix(id) }
    if matches.count == 1 { return matches[0] }
    guard !matches.isEmpty else {
      throw StoreError.missing(path: backupsDirectory + "/…/" + id, hint: "list archives with: tgsess list")
    }
    let shown = matches.prefix(Self.ambiguityListLength).map(\.id)
    let more = matches.count > shown.count ? ", …" : ""
    throw StoreError.invalid(
      path: backupsDirectory,
      reason:
        "archive id '\(id)' is ambiguous: \(matches.count) archives match (\(shown.joined(separator: ", "))\(more))",
      hint: "give more of the id, or see every id with: tgsess list")
  }

  /// How many matching ids an ambiguous prefix's error names.
  static let ambiguityListLength = 3
  /// The content size (sum of the entries' sizes) from which `prepare` hands the writer's freed
  /// memory back to the system before the read-back.
  static let releasesMemoryAbove: Int64 = 16 << 20

  /// Cleans up after interrupted runs. Callers hold the deployment lock, so no other writer is
  /// between steps: a hidden record whose archive was published before the crash is rolled
  /// forward (renamed into place); every other temporary of a dead process (records, signatures,
  /// archives, and in backups/ itself the `.inspections` and `.signatures` caches') is removed; a record or signature without an archive (a pruned archive, a writer
  /// killed between signing and publishing, or an older tgsess that wrote records first) is
  /// removed.
  /// - Parameter userID: only the full snapshots' directory and this user's (a per-user job
  ///   need not read every user's directory); nil for all of them.
  /// - Returns: the paths removed or rolled forward.
  /// - Throws: `StoreError.io` when a directory cannot be read.
  @discardableResult
  public func removeLeftovers(userID: Int64? = nil) throws -> [String] {
    var directories = [fullDirectory]
    if let userID {
      directories.append(userDirectory(userID))
    } else {
      for name in try Self.names(in: usersDirectory) where name.hasPrefix("user_") {
        directories.append(usersDirectory + "/" + name)
      }
    }
    var removed: [String] = []
    for directory in directories {
      let removedBefore = removed.count
      var names = Set(try Self.names(in: directory))
      func hasArchive(_ id: String) -> Bool {
        names.contains(ArchiveName.fileName(id: id, isEncrypted: true))
          || names.contains(ArchiveName.fileName(id: id, isEncrypted: false))
      }
      for name in names.sorted() where FileSystem.isTemporaryName(name) {
        guard let (finalName, pid) = Self.parseTemporary(name), pid != getpid(), kill(pid, 0) != 0, errno == ESRCH,
          finalName.hasSuffix(ArchiveName.recordSuffix), !names.contains(finalName),
          hasArchive(String(finalName.dropLast(ArchiveName.recordSuffix.count)))
        else { continue }
        if rename(directory + "/" + name, directory + "/" + finalName) == 0 {
          names.remove(name)
          names.insert(finalName)
          removed.append(directory + "/" + finalName)
        }
      }
      removed += FileSystem.removeStaleTemporaries(in: directory)
      for name in names where !name.hasPrefix(".") {
        guard let suffix = [ArchiveName.recordSuffix, ArchiveSignature.fileSuffix].first(where: name.hasSuffix)
        else { continue }
        let id = String(name.dropLast(suffix.count))
        if !hasArchive(id), unlink(directory + "/" + name) == 0 { removed.append(directory + "/" + name) }
      }
      if removed.count > removedBefore { try FileSystem.fsyncDirectory(directory) }
    }
    // backups/ itself: the temporaries of the inspection and signature-verdict caches.
    let removedHere = FileSystem.removeStaleTemporaries(in: backupsDirectory)
    if !removedHere.isEmpty { try FileSystem.fsyncDirectory(backupsDirectory) }
    return removed + removedHere
  }

  /// The final name and writer pid of a temporary named by `FileSystem.temporaryPath(for:)`
  /// (`.NAME.tgsess-tmp-PID-RANDOM`).
  static func parseTemporary(_ name: String) -> (finalName: String, pid: Int32)? {
    guard name.hasPrefix("."), let marker = name.range(of: ".tgsess-tmp-") else { return nil }
    let finalName = String(name[name.index(after: name.startIndex)..<marker.lowerBound])
    guard let pid = Int32(name[marker.upperBound...].split(separator: "-").first ?? "") else { return nil }
    return (finalName, pid)
  }

  static func names(in directory: String) throws -> [String] {
    try FileSystem.directoryNames(directory)
  }
}

/// An archive and its record written and proven under hidden temporary names, not yet published.
public struct PendingArchive: Sendable {
  /// The record, as `list` will show it once published.
  public let record: ArchiveRecord
  let directory: String
  let tempPath: String
  let finalPath: String
  let recordTempPath: String
  let recordPath: String
  let signatureTempPath: String
  let signaturePath: String

  /// Removes what is still unpublished (nothing once `publish` has run). The hidden record of
  /// an archive that was published but whose record could not be renamed into place stays, for
  /// the next run to roll forward.
  public func discard() {
    let isPublished = !FileSystem.exists(tempPath) && FileSystem.exists(finalPath)
    unlink(tempPath)
    unlink(signatureTempPath)
    if !isPublished { unlink(recordTempPath) }
  }
}

/// Passes bytes on while hashing and counting them.
final class HashingSink: ByteSink {
  private let output: ByteSink
  private var hasher: SHA256Hasher? = SHA256Hasher()
  private(set) var byteCount: Int64 = 0

  init(output: ByteSink) { self.output = output }

  func write(_ bytes: UnsafeRawBufferPointer) throws {
    hasher!.update(bytes)
    byteCount += Int64(bytes.count)
    try output.write(bytes)
  }

  func digest() -> String {
    guard let done = hasher.take() else { return "" }
    return Hex.encode(done.finalize())
  }
}

extension FileSystem {
  /// SHA-256 of a file, streamed.
  /// - Throws: `StoreError.io`.
  public static func sha256(ofFile path: String) throws -> String {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw StoreError.io(path: path, operation: "open", errno: errno) }
    defer { close(fd) }
    var hasher = SHA256Hasher()
    var buffer = [UInt8](repeating: 0, count: 256 * 1024)
    while true {
      let count = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
      if count < 0 {
        if errno == EINTR { continue }
        throw StoreError.io(path: path, operation: "read", errno: errno)
      }
      if count == 0 { break }
      buffer.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
    }
    return Hex.encode(hasher.finalize())
  }

  /// Seconds since `path` was last modified.
  /// - Throws: `StoreError.io`.
  public static func age(of path: String) throws -> TimeInterval {
    var info = stat()
    guard stat(path, &info) == 0 else { throw StoreError.io(path: path, operation: "stat", errno: errno) }
    return Date().timeIntervalSince1970 - TimeInterval(info.st_mtim.tv_sec)
  }
}

import Foundation

/// Signature verdicts already reached, so that `list`, `check` and `prune` verify each archive's
/// signature once rather than on every run (reading, parsing and verifying an Ed25519 signature
/// per archive was most of their cost at fleet scale). Kept in `backups/.signatures`.
///
/// A verdict is used only while the signature file is the very file that was verified: the same
/// device, inode, size, and modification and change times to the nanosecond. Writing to it,
/// replacing it by a rename, or copying another file there changes at least the change time,
/// which no unprivileged process can set, and the signature is then read and verified again. A
/// verdict is recorded only for a file whose times were older than `racyInterval` when it was
/// read, so a change within the same timestamp tick as the verification cannot pass for the
/// verified file (git's "racily clean" rule). Only "signed" verdicts are kept: an unsigned or
/// rejected archive is worked out again on every run, with its own message.
///
/// The file is authenticated with HMAC-SHA-256 under a key derived from the deployment's signing
/// key (never stored), and names the key ring its verdicts were reached under: whoever can write
/// to backups/ but cannot read keys/signing.key cannot forge a verdict, and a ring that changed
/// (a retired key) voids every verdict. A damaged, foreign or forged file reads as empty: it only
/// costs time. It holds no secret: archive paths, file times, key ids, sizes, hashes and reasons,
/// all of which the signature files themselves show. Restore, drill and recover never use it:
/// they verify the signature of every archive they open.
public final class SignatureVerdicts: @unchecked Sendable {
  /// What identifies one version of a file.
  struct FileState: Equatable, Sendable {
    var device: UInt64
    var inode: UInt64
    var size: Int64
    var modifiedNS: Int64
    var changedNS: Int64

    /// The state of the regular file at `path` (symlinks followed); nil when there is none.
    init?(path: String) {
      var info = stat()
      guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return nil }
      device = UInt64(info.st_dev)
      inode = UInt64(info.st_ino)
      size = Int64(info.st_size)
      modifiedNS = Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec)
      changedNS = Int64(info.st_ctim.tv_sec) * 1_000_000_000 + Int64(info.st_ctim.tv_nsec)
    }

    init(device: UInt64, inode: UInt64, size: Int64, modifiedNS: Int64, changedNS: Int64) {
      self.device = device
      self.inode = inode
      self.size = size
      self.modifiedNS = modifiedNS
      self.changedNS = changedNS
    }
  }

  /// What a verified signature file said, beyond what the archive's name and place say. Hex
  /// fields are kept as their bytes (tens of thousands of verdicts: memory).
  struct Verdict: Sendable {
    var state: FileState
    private var key: UInt64
    var reason: String
    var fileByteCount: Int64
    private var file: Bytes32
    private var manifest: Bytes32

    /// nil when a hex field is not lower-case hex of its length.
    init?(
      state: FileState, keyID: String, reason: String, fileByteCount: Int64, fileSHA256: String,
      manifestSHA256: String
    ) {
      guard keyID.utf8.count == 16, let key = Hex.decode(keyID), Hex.encode(key) == keyID,
        let file = Bytes32(hex: fileSHA256), let manifest = Bytes32(hex: manifestSHA256)
      else { return nil }
      self.state = state
      self.key = key.reduce(0) { $0 << 8 | UInt64($1) }
      self.reason = reason
      self.fileByteCount = fileByteCount
      self.file = file
      self.manifest = manifest
    }

    var keyID: String { Hex.encode((0..<8).map { UInt8(truncatingIfNeeded: key >> (56 - 8 * $0)) }) }
    var fileSHA256: String { file.hex }
    var manifestSHA256: String { manifest.hex }
  }

  /// 32 bytes (a SHA-256) without an allocation.
  struct Bytes32: Sendable, Equatable {
    var words: (UInt64, UInt64, UInt64, UInt64)

    init?(hex: String) {
      guard hex.utf8.count == 64, let bytes = Hex.decode(hex), Hex.encode(bytes) == hex else { return nil }
      func word(_ index: Int) -> UInt64 { bytes[(index * 8)..<(index * 8 + 8)].reduce(0) { $0 << 8 | UInt64($1) } }
      words = (word(0), word(1), word(2), word(3))
    }

    var hex: String {
      let all = [words.0, words.1, words.2, words.3]
      return Hex.encode(all.flatMap { word in (0..<8).map { UInt8(truncatingIfNeeded: word >> (56 - 8 * $0)) } })
    }

    static func == (left: Bytes32, right: Bytes32) -> Bool {
      left.words.0 == right.words.0 && left.words.1 == right.words.1 && left.words.2 == right.words.2
        && left.words.3 == right.words.3
    }
  }

  /// The cache file beside the archives of `backupsDirectory`.
  public static func path(backupsDirectory: String) -> String { backupsDirectory + "/.signatures" }

  /// The backups directory whose archives the verdicts are about.
  public let backupsDirectory: String
  /// Where the verdicts are kept.
  public let path: String
  private let macKey: SecretBytes
  private let ringFingerprint: String
  /// Files changed at or after this time (ns since the epoch) are not recorded.
  private let racyCutoffNS: Int64
  private let lock = NSLock()
  private var verdicts: [String: Verdict] = [:]
  private var used: Set<String> = []
  private var isChanged = false

  /// How many verdicts are known (loaded and recorded).
  public var count: Int { lock.withLock { verdicts.count } }

  /// The verdicts of `backupsDirectory` under `ring`, authenticated with a key derived from
  /// `signingKey`. A missing, damaged or forged file, or one made under another ring, gives an
  /// empty cache.
  /// - Parameter racyInterval: files changed less than this long before now are verified but
  ///   not recorded (tests pass 0 on a filesystem with fine timestamps).
  /// - Throws: `StoreError.crypto` when the key cannot be derived (libcrypto failed).
  public init(
    backupsDirectory: String, ring: VerifyingKeyRing, signingKey: SigningKey, racyInterval: TimeInterval = 2,
    now: Date = Date()
  ) throws {
    self.backupsDirectory = backupsDirectory
    path = Self.path(backupsDirectory: backupsDirectory)
    macKey = try HKDFSHA256.derive(
      ikm: signingKey.privateKey, salt: [], info: Array("tgsess signature verdicts v1".utf8))
    ringFingerprint = Digest.sha256Hex(
      Array(ring.keys.map(\.rawBytes).sorted { $0.lexicographicallyPrecedes($1) }.joined()))
    racyCutoffNS = Int64((now.timeIntervalSince1970 - racyInterval) * 1_000_000_000)
    load()
  }

  // MARK: - Lookup and record

  /// The verdict on the signature file at `relativePath` (under `backupsDirectory`) when it is
  /// still in `state`.
  func verdict(relativePath: String, state: FileState) -> Verdict? {
    lock.withLock {
      guard let verdict = verdicts[relativePath], verdict.state == state else { return nil }
      used.insert(relativePath)
      return verdict
    }
  }

  /// Records that the signature file at `relativePath`, in `verdict.state`, verified; ignored
  /// for a file changed too recently to be told apart from its next version.
  func record(relativePath: String, _ verdict: Verdict) {
    guard verdict.state.modifiedNS < racyCutoffNS, verdict.state.changedNS < racyCutoffNS, Self.isField(relativePath)
    else { return }
    lock.withLock {
      verdicts[relativePath] = verdict
      used.insert(relativePath)
      isChanged = true
    }
  }

  // MARK: - The file

  static let magic = "tgsess-signature-verdicts 1"

  /// Writes the verdicts back when this run learnt or dropped any (temporary file, rename; not
  /// fsynced: a cache lost in a crash is rebuilt, a torn one fails its HMAC).
  /// - Parameter dropsUnused: drop the verdicts this run did not use (a run that looked at every
  ///   archive: the others' archives are gone).
  /// - Throws: `StoreError` when the file cannot be written.
  public func save(dropsUnused: Bool) throws {
    let body: [UInt8]? = lock.withLock {
      if dropsUnused, used.count < verdicts.count {
        verdicts = verdicts.filter { used.contains($0.key) }
        isChanged = true
      }
      guard isChanged else { return nil }
      isChanged = false
      var text = "\(Self.magic) \(ringFingerprint)\n"
      text.reserveCapacity(verdicts.count * 300)
      for (relativePath, verdict) in verdicts {
        let state = verdict.state
        text += relativePath
        text += " \(state.device) \(state.inode) \(state.size) \(state.modifiedNS) \(state.changedNS) "
        text += verdict.keyID
        text += " \(verdict.fileByteCount) "
        text += verdict.fileSHA256
        text += " "
        text += verdict.manifestSHA256
        text += " "
        text += Self.escape(verdict.reason)
        text += "\n"
      }
      return Array(text.utf8)
    }
    guard let body else { return }
    let tag = try HMACSHA256.authenticate(key: macKey, data: body)
    let data = Data(body + Array("hmac \(Hex.encode(tag))\n".utf8))
    let tempPath = FileSystem.temporaryPath(for: path)
    let fd = open(tempPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, FileSystem.fileMode)
    guard fd >= 0 else { throw StoreError.io(path: tempPath, operation: "create", errno: errno) }
    var isDone = false
    defer { if !isDone { unlink(tempPath) } }
    do {
      defer { close(fd) }
      try data.withUnsafeBytes { try FileSystem.writeAll(fd: fd, bytes: $0, path: tempPath) }
    }
    guard rename(tempPath, path) == 0 else {
      throw StoreError.io(path: path, operation: "rename into place", errno: errno)
    }
    isDone = true
  }

  /// Reads the file; leaves the cache empty when it is missing, damaged, forged or made under
  /// another ring.
  private func load() {
    guard let data = try? FileSystem.read(path) else { return }
    let loaded: [String: Verdict]? = data.withUnsafeBytes { raw in
      let bytes = raw.bindMemory(to: UInt8.self)
      // The last line is "hmac <64 hex>\n"; it covers every byte before it.
      let trailerLength = "hmac ".utf8.count + 64 + 1
      guard bytes.count > trailerLength, bytes[bytes.count - 1] == UInt8(ascii: "\n") else { return nil }
      let bodyEnd = bytes.count - trailerLength
      guard bodyEnd > 0, bytes[bodyEnd - 1] == UInt8(ascii: "\n"),
        bytes[bodyEnd..<bodyEnd + 5].elementsEqual("hmac ".utf8),
        let tag = Hex.decode(String(decoding: bytes[(bodyEnd + 5)..<(bytes.count - 1)], as: UTF8.self)),
        let expected = try? HMACSHA256.authenticate(
          key: macKey, data: UnsafeRawBufferPointer(rebasing: raw[0..<bodyEnd])),
        ConstantTime.equals(tag, expected)
      else { return nil }
      var loaded: [String: Verdict] = [:]
      var isHeader = true
      var lineStart = 0
      for index in 0..<bodyEnd where bytes[index] == UInt8(ascii: "\n") {
        let line = UnsafeBufferPointer(rebasing: bytes[lineStart..<index])
        lineStart = index + 1
        if isHeader {
          isHeader = false
          guard String(decoding: line, as: UTF8.self) == "\(Self.magic) \(ringFingerprint)" else { return nil }
          continue
        }
        guard let (relativePath, verdict) = Self.parse(line) else { return nil }
        loaded[relativePath] = verdict
      }
      return isHeader ? nil : loaded
    }
    if let loaded { verdicts = loaded }
  }

  /// One line: `PATH DEV INO SIZE MTIME_NS CTIME_NS KEY_ID FILE_SIZE FILE_SHA256 MANIFEST_SHA256 REASON`.
  /// Numbers and hex are read from the bytes (tens of thousands of lines).
  private static func parse(_ line: UnsafeBufferPointer<UInt8>) -> (String, Verdict)? {
    var ranges: [Range<Int>] = []
    ranges.reserveCapacity(11)
    var start = 0
    for index in 0...line.count where index == line.count || line[index] == UInt8(ascii: " ") {
      ranges.append(start..<index)
      start = index + 1
    }
    guard ranges.count == 11 else { return nil }
    func number(_ field: Int) -> Int64? {
      let range = ranges[field]
      guard !range.isEmpty, range.count <= 19 else { return nil }
      var value: Int64 = 0
      for index in range {
        let digit = line[index] &- UInt8(ascii: "0")
        guard digit < 10 else { return nil }
        value = value * 10 + Int64(digit)
      }
      return value
    }
    func text(_ field: Int) -> String {
      String(decoding: UnsafeBufferPointer(rebasing: line[ranges[field]]), as: UTF8.self)
    }
    guard let device = number(1), let inode = number(2), let size = number(3), let modified = number(4),
      let changed = number(5), let fileByteCount = number(7), let reason = unescape(text(10))
    else { return nil }
    guard
      let verdict = Verdict(
        state: FileState(
          device: UInt64(device), inode: UInt64(inode), size: size, modifiedNS: modified, changedNS: changed),
        keyID: text(6), reason: reason, fileByteCount: fileByteCount, fileSHA256: text(8),
        manifestSHA256: text(9))
    else { return nil }
    return (text(0), verdict)
  }

  /// Whether `text` can be a field as it is (not empty, no space, no line break).
  private static func isField(_ text: String) -> Bool {
    !text.isEmpty && !text.utf8.contains(UInt8(ascii: " ")) && !text.utf8.contains(UInt8(ascii: "\n"))
  }

  /// A reason as one field: `%` and space percent-encoded (a signed reason has no control
  /// characters, so no line break); `%` alone for the empty reason.
  static func escape(_ reason: String) -> String {
    if reason.isEmpty { return "%" }
    return reason.replacingOccurrences(of: "%", with: "%25").replacingOccurrences(of: " ", with: "%20")
  }

  static func unescape(_ field: String) -> String? {
    if field == "%" { return "" }
    guard field.contains("%") else { return field }
    return field.removingPercentEncoding
  }
}

extension SigningAuthenticator {
  /// How the archive at `archivePath` stands, as `authenticity(archivePath:)` says, but taking
  /// a "signed" verdict from `verdicts` while the signature file is the one verified before,
  /// and recording the new ones there. Safe to call from several threads.
  public func authenticity(archivePath: String, verdicts: SignatureVerdicts?) -> ArchiveAuthenticity {
    guard let verdicts, archivePath.hasPrefix(verdicts.backupsDirectory + "/"),
      let claim = ArchiveClaim(fileName: (archivePath as NSString).lastPathComponent)
    else { return authenticity(archivePath: archivePath) }
    let directory = FileSystem.parentDirectory(of: archivePath)
    return authenticity(
      directory: directory, fileName: (archivePath as NSString).lastPathComponent, claim: claim, verdicts: verdicts)
  }

  /// How each of `records` of `repository` stands (`authenticity(archivePath:verdicts:)`), in
  /// their order, on a few threads.
  /// - Parameter progress: called once per archive judged, from any of the threads.
  public func authenticity(
    of records: [ArchiveRecord], in repository: ArchiveRepository, verdicts: SignatureVerdicts?,
    progress: (@Sendable () -> Void)? = nil
  ) -> [ArchiveAuthenticity] {
    Parallel.collect(count: records.count) { index in
      defer { progress?() }
      let record = records[index]
      guard let verdicts, verdicts.backupsDirectory == repository.backupsDirectory else {
        return authenticity(archivePath: repository.path(of: record))
      }
      return authenticity(
        directory: repository.directory(kind: record.kind, userID: record.userID), fileName: record.fileName,
        claim: ArchiveClaim(record: record), verdicts: verdicts)
    }
  }

  /// The archive `fileName` in `directory` (under `verdicts.backupsDirectory`), whose name and
  /// place claim `claim`.
  func authenticity(directory: String, fileName: String, claim: ArchiveClaim, verdicts: SignatureVerdicts)
    -> ArchiveAuthenticity
  {
    let archivePath = directory + "/" + fileName
    let relativePath = String(directory.dropFirst(verdicts.backupsDirectory.count + 1)) + "/" + fileName
    let signaturePath = directory + "/" + claim.id + ArchiveSignature.fileSuffix
    guard let before = SignatureVerdicts.FileState(path: signaturePath) else {
      return authenticity(archivePath: archivePath)
    }
    let encryption: SignedStatement.Encryption = claim.isEncrypted ? .age : .none
    // A verdict is recorded only for this very path, after the statement matched the claim its
    // name and place make: the same statement, the same key, the same placement.
    if let verdict = verdicts.verdict(relativePath: relativePath, state: before), ring.key(id: verdict.keyID) != nil,
      // Checked when the file was decoded and verified; the claim is the one its name and
      // place made then.
      case let statement = SignedStatement(
        unchecked: claim.id, kind: claim.kind, userID: claim.userID, createdAt: claim.createdAt,
        reason: verdict.reason, encryption: encryption, fileByteCount: verdict.fileByteCount,
        fileSHA256: verdict.fileSHA256, manifestSHA256: verdict.manifestSHA256)
    {
      return .signed(SignedArchive(statement: statement, keyID: verdict.keyID))
    }
    let standing = authenticity(archivePath: archivePath)
    if case .signed(let signed) = standing, let after = SignatureVerdicts.FileState(path: signaturePath),
      after == before, signed.statement.archiveID == claim.id, signed.statement.kind == claim.kind,
      signed.statement.userID == claim.userID, signed.statement.createdAt == claim.createdAt,
      signed.statement.encryption == encryption
    {
      if let verdict = SignatureVerdicts.Verdict(
        state: after, keyID: signed.keyID, reason: signed.statement.reason,
        fileByteCount: signed.statement.fileByteCount, fileSHA256: signed.statement.fileSHA256,
        manifestSHA256: signed.statement.manifestSHA256)
      {
        verdicts.record(relativePath: relativePath, verdict)
      }
    }
    return standing
  }
}

extension SignatureVerdicts {
  /// The verdicts on `deployment`'s own archives under `ring`; nil when its signing key is not
  /// on this host or cannot be read (then every signature is verified, as without a cache).
  public static func forDeployment(_ deployment: Deployment, ring: VerifyingKeyRing) -> SignatureVerdicts? {
    guard FileSystem.exists(deployment.signingKeyPath), let key = try? KeyStore.loadSigningKey(deployment) else {
      return nil
    }
    return try? SignatureVerdicts(backupsDirectory: deployment.backupsDirectory, ring: ring, signingKey: key)
  }
}

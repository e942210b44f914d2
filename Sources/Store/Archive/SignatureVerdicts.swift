import COpenSSL
import Foundation

/// Signature verdicts already reached, so that `list`, `check`, `prune` and `backup` (deciding
/// whether a user's newest archive is the deployment's) verify each archive's signature once
/// rather than on every run (reading, parsing and verifying an Ed25519 signature per archive was
/// most of their cost at fleet scale, and 15 % of an hourly backup). Kept in `backups/.signatures`.
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
    fileprivate var key: UInt64
    var reason: String
    var fileByteCount: Int64
    fileprivate var file: Bytes32
    fileprivate var manifest: Bytes32

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

    /// The verdict `entry` holds, with its reason.
    fileprivate init(_ entry: Entry, reason: String) {
      state = entry.state
      key = entry.key
      self.reason = reason
      fileByteCount = entry.fileByteCount
      file = entry.file
      manifest = entry.manifest
    }

    var keyID: String { Hex.encode((0..<8).map { UInt8(truncatingIfNeeded: key >> (56 - 8 * $0)) }) }
    var fileSHA256: String { file.hex }
    var manifestSHA256: String { manifest.hex }
  }

  /// 32 bytes (a SHA-256) without an allocation.
  struct Bytes32: Sendable, Equatable {
    var words: (UInt64, UInt64, UInt64, UInt64)

    init(words: (UInt64, UInt64, UInt64, UInt64)) { self.words = words }

    init?(hex: String) {
      guard hex.utf8.count == 64, let bytes = Hex.decode(hex), Hex.encode(bytes) == hex else { return nil }
      func word(_ index: Int) -> UInt64 { bytes[(index * 8)..<(index * 8 + 8)].reduce(0) { $0 << 8 | UInt64($1) } }
      words = (word(0), word(1), word(2), word(3))
    }

    /// Lower-case hex, written in place (one per archive judged from a verdict).
    var hex: String {
      String(unsafeUninitializedCapacity: 64) { out in
        let digits: StaticString = "0123456789abcdef"
        let all = [words.0, words.1, words.2, words.3]
        for (wordIndex, word) in all.enumerated() {
          for nibble in 0..<16 {
            out[wordIndex * 16 + nibble] = digits.utf8Start[Int((word >> UInt64(60 - 4 * nibble)) & 0xf)]
          }
        }
        return 64
      }
    }

    static func == (left: Bytes32, right: Bytes32) -> Bool {
      left.words.0 == right.words.0 && left.words.1 == right.words.1 && left.words.2 == right.words.2
        && left.words.3 == right.words.3
    }
  }

  /// One verdict as kept in memory: fixed-size, no allocation of its own (tens of thousands of
  /// them at fleet scale). The path is a range of `Storage.pathBytes`, the reason an index into
  /// `Storage.reasons` (archives share a handful of reasons).
  struct Entry {
    var state: FileState
    var key: UInt64
    var fileByteCount: Int64
    var file: Bytes32
    var manifest: Bytes32
    var reason: Int32
    var pathStart: UInt32
    var pathCount: UInt32
  }

  /// Every verdict: the entries, their paths in one byte buffer, and an open-addressing index
  /// from path to entry.
  struct Storage {
    var entries: [Entry] = []
    /// Whether this run looked each entry up (and found it current) or recorded it.
    var used: [Bool] = []
    var pathBytes: [UInt8] = []
    var reasons: [String] = []
    var reasonIndex: [String: Int32] = [:]
    /// Entry indices by the hash of their path; -1 is a free slot. Its size is a power of two,
    /// at least twice the entries.
    var slots: [Int32] = []
    /// Keyed per process (Swift's `Hasher`), so paths cannot be chosen to collide.
    private var seed = Hasher()

    init(expectedCount: Int = 0) {
      entries.reserveCapacity(expectedCount)
      used.reserveCapacity(expectedCount)
      pathBytes.reserveCapacity(expectedCount * 64)
      slots = [Int32](repeating: -1, count: Self.slotCount(for: expectedCount))
    }

    private static func slotCount(for count: Int) -> Int {
      var size = 64
      while size < count * 2 { size *= 2 }
      return size
    }

    private func hash(_ path: UnsafeRawBufferPointer) -> Int {
      var hasher = seed
      hasher.combine(bytes: path)
      return hasher.finalize()
    }

    /// The index of the entry for `path`, or the free slot where it would go.
    private func find(_ path: UnsafeRawBufferPointer) -> (entry: Int?, slot: Int) {
      let mask = slots.count - 1
      var slot = hash(path) & mask
      return pathBytes.withUnsafeBytes { stored in
        while true {
          let index = slots[slot]
          if index < 0 { return (nil, slot) }
          let entry = entries[Int(index)]
          if Int(entry.pathCount) == path.count,
            path.isEmpty || memcmp(stored.baseAddress! + Int(entry.pathStart), path.baseAddress!, path.count) == 0
          {
            return (Int(index), slot)
          }
          slot = (slot + 1) & mask
        }
      }
    }

    func index(of path: UnsafeRawBufferPointer) -> Int? { find(path).entry }

    func reason(of entry: Entry) -> String { reasons[Int(entry.reason)] }

    /// Interns `reason`.
    mutating func reasonID(_ reason: String) -> Int32 {
      if let id = reasonIndex[reason] { return id }
      let id = Int32(reasons.count)
      reasons.append(reason)
      reasonIndex[reason] = id
      return id
    }

    /// Sets the verdict on `path` (a new one, or in place of the old); returns its index.
    @discardableResult
    mutating func set(
      path: UnsafeRawBufferPointer, state: FileState, key: UInt64, fileByteCount: Int64, file: Bytes32,
      manifest: Bytes32, reason: Int32
    ) -> Int {
      if entries.count * 2 >= slots.count { grow() }
      let (found, slot) = find(path)
      var entry = Entry(
        state: state, key: key, fileByteCount: fileByteCount, file: file, manifest: manifest, reason: reason,
        pathStart: 0, pathCount: 0)
      if let found {
        entry.pathStart = entries[found].pathStart
        entry.pathCount = entries[found].pathCount
        entries[found] = entry
        return found
      }
      entry.pathStart = UInt32(pathBytes.count)
      entry.pathCount = UInt32(path.count)
      pathBytes.append(contentsOf: path)
      slots[slot] = Int32(entries.count)
      entries.append(entry)
      used.append(false)
      return entries.count - 1
    }

    /// Doubles the index.
    private mutating func grow() {
      slots = [Int32](repeating: -1, count: slots.count * 2)
      let mask = slots.count - 1
      for (index, entry) in entries.enumerated() {
        var slot = pathBytes.withUnsafeBytes { hash(UnsafeRawBufferPointer(rebasing: $0[Self.range(entry)])) } & mask
        while slots[slot] >= 0 { slot = (slot + 1) & mask }
        slots[slot] = Int32(index)
      }
    }

    static func range(_ entry: Entry) -> Range<Int> { Int(entry.pathStart)..<Int(entry.pathStart + entry.pathCount) }

    /// Only the entries this run used.
    func keepingUsed() -> Storage {
      let count = used.lazy.filter { $0 }.count
      var kept = Storage(expectedCount: count)
      kept.seed = seed
      kept.pathBytes.reserveCapacity(count * (pathBytes.count / max(entries.count, 1) + 1))
      for (index, entry) in entries.enumerated() where used[index] {
        let reason = kept.reasonID(reasons[Int(entry.reason)])
        let at = pathBytes.withUnsafeBytes {
          kept.set(
            path: UnsafeRawBufferPointer(rebasing: $0[Self.range(entry)]), state: entry.state, key: entry.key,
            fileByteCount: entry.fileByteCount, file: entry.file, manifest: entry.manifest, reason: reason)
        }
        kept.used[at] = true
      }
      return kept
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
  private var storage = Storage()
  private var isChanged = false

  /// How many verdicts are known (loaded and recorded).
  public var count: Int { lock.withLock { storage.entries.count } }

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
    if let loaded = Self.load(path: path, macKey: macKey, header: "\(Self.magic) \(ringFingerprint)") {
      storage = loaded
    }
  }

  // MARK: - Lookup and record

  /// The verdict on the signature file at `relativePath` (under `backupsDirectory`) when it is
  /// still in `state`.
  func verdict(relativePath: String, state: FileState) -> Verdict? {
    var relativePath = relativePath
    return relativePath.withUTF8 { path in
      lock.withLock {
        guard let index = storage.index(of: UnsafeRawBufferPointer(path)) else { return nil }
        let entry = storage.entries[index]
        guard entry.state == state else { return nil }
        storage.used[index] = true
        return Verdict(entry, reason: storage.reason(of: entry))
      }
    }
  }

  /// Records that the signature file at `relativePath`, in `verdict.state`, verified; ignored
  /// for a file changed too recently to be told apart from its next version, and for one whose
  /// state the file cannot hold (a time before 1970, a number past Int64).
  func record(relativePath: String, _ verdict: Verdict) {
    let state = verdict.state
    guard state.modifiedNS < racyCutoffNS, state.changedNS < racyCutoffNS, Self.isField(relativePath),
      state.modifiedNS >= 0, state.changedNS >= 0, state.size >= 0, verdict.fileByteCount >= 0,
      state.device <= UInt64(Int64.max), state.inode <= UInt64(Int64.max)
    else { return }
    var relativePath = relativePath
    relativePath.withUTF8 { path in
      lock.withLock {
        let reason = storage.reasonID(verdict.reason)
        let index = storage.set(
          path: UnsafeRawBufferPointer(path), state: state, key: verdict.key, fileByteCount: verdict.fileByteCount,
          file: verdict.file, manifest: verdict.manifest, reason: reason)
        storage.used[index] = true
        isChanged = true
      }
    }
  }

  // MARK: - The file

  static let magic = "tgsess-signature-verdicts 1"

  /// Writes the verdicts back when this run learnt or dropped any (temporary file, rename; not
  /// fsynced: a cache lost in a crash is rebuilt, a torn one fails its HMAC). Written in pieces
  /// as the HMAC is computed: the file is never held whole in memory.
  /// - Parameter dropsUnused: drop the verdicts this run did not use (a run that looked at every
  ///   archive: the others' archives are gone).
  /// - Throws: `StoreError` when the file cannot be written.
  public func save(dropsUnused: Bool) throws {
    try lock.withLock {
      if dropsUnused, storage.used.contains(false) {
        storage = storage.keepingUsed()
        isChanged = true
      }
      guard isChanged else { return }
      try FileSystem.replaceWithoutSync(at: path) { fd, tempPath in
        var writer = LineWriter(fd: fd, path: tempPath, macKey: macKey)
        try writer.append(Array("\(Self.magic) \(ringFingerprint)\n".utf8))
        for entry in storage.entries {
          try storage.pathBytes.withUnsafeBytes {
            try writer.append(UnsafeRawBufferPointer(rebasing: $0[Storage.range(entry)]))
          }
          try writer.append(line: entry, reason: Self.escape(storage.reason(of: entry)))
        }
        try writer.finish()
      }
      isChanged = false
    }
  }

  /// Reads the file at `path` in pieces, authenticating it as it goes; nil when it is missing,
  /// damaged, forged or made under another ring (`header`). Nothing of a file that fails is
  /// used: its verdicts are dropped as a whole.
  private static func load(path: String, macKey: SecretBytes, header: String) -> Storage? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var info = stat()
    // Ours are about 300 bytes a verdict: a file of a gigabyte is none of ours (and the index
    // counts in 32 bits).
    guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG, info.st_size < 1 << 30 else { return nil }
    // A line is at least about 240 bytes: room for them all without regrowing.
    var storage = Storage(expectedCount: Int(info.st_size) / 240 + 1)
    let hmac = StreamingHMAC(key: macKey)
    let trailerPrefix = Array("hmac ".utf8)
    let headerBytes = Array(header.utf8)
    // A line is only known to be part of the body once another follows it: the last one is the
    // HMAC's.
    var pending: [UInt8] = []
    var hasPending = false
    var isHeader = true
    var chunk = [UInt8](repeating: 0, count: 1 << 18)
    var partial: [UInt8] = []
    var totalCount = 0
    func body(_ line: UnsafeBufferPointer<UInt8>) -> Bool {
      hmac.update(UnsafeRawBufferPointer(line))
      hmac.update(byte: UInt8(ascii: "\n"))
      if isHeader {
        isHeader = false
        return line.elementsEqual(headerBytes)
      }
      return parse(line, into: &storage)
    }
    func take(_ line: UnsafeBufferPointer<UInt8>) -> Bool {
      if hasPending {
        guard pending.withUnsafeBufferPointer({ body($0) }) else { return false }
      }
      pending.removeAll(keepingCapacity: true)
      pending.append(contentsOf: line)
      hasPending = true
      return true
    }
    while true {
      let count = chunk.withUnsafeMutableBytes { Self.read(fd: fd, into: $0) }
      guard count >= 0 else { return nil }
      if count == 0 { break }
      totalCount += count
      guard totalCount < 1 << 30 else { return nil }
      let isGood = chunk.withUnsafeBufferPointer { buffer -> Bool in
        var lineStart = 0
        for index in 0..<count where buffer[index] == UInt8(ascii: "\n") {
          let piece = UnsafeBufferPointer(rebasing: buffer[lineStart..<index])
          lineStart = index + 1
          if partial.isEmpty {
            guard take(piece) else { return false }
          } else {
            partial.append(contentsOf: piece)
            let line = partial
            partial.removeAll(keepingCapacity: true)
            guard line.withUnsafeBufferPointer({ take($0) }) else { return false }
          }
        }
        partial.append(contentsOf: buffer[lineStart..<count])
        return true
      }
      guard isGood else { return nil }
    }
    // The file ends with a line break after "hmac <64 hex>", and the body holds the header.
    guard partial.isEmpty, hasPending, !isHeader, pending.count == trailerPrefix.count + 64,
      pending.starts(with: trailerPrefix),
      let tag = Hex.decode(String(decoding: pending[trailerPrefix.count...], as: UTF8.self)),
      case let expected = hmac.finalize(), ConstantTime.equals(tag, expected)
    else { return nil }
    return storage
  }

  /// One line: `PATH DEV INO SIZE MTIME_NS CTIME_NS KEY_ID FILE_SIZE FILE_SHA256 MANIFEST_SHA256 REASON`,
  /// into `storage` (a later line for the same path wins). Numbers and hex are read from the
  /// bytes (tens of thousands of lines). The line is not authenticated yet (the HMAC comes at
  /// the end of the file), so anything it holds must give false, never a trap.
  private static func parse(_ line: UnsafeBufferPointer<UInt8>, into storage: inout Storage) -> Bool {
    guard let ranges = CacheLine.fields(line, count: 11) else { return false }
    func number(_ field: Int) -> Int64? { CacheLine.decimal(line, ranges[field]) }
    func word(_ field: Int, at offset: Int = 0) -> UInt64? {
      Self.lowerHexWord(line, from: ranges[field].lowerBound + offset)
    }
    func bytes32(_ field: Int) -> Bytes32? {
      guard ranges[field].count == 64, let a = word(field), let b = word(field, at: 16), let c = word(field, at: 32),
        let d = word(field, at: 48)
      else { return nil }
      return Bytes32(words: (a, b, c, d))
    }
    guard !ranges[0].isEmpty, let device = number(1), let inode = number(2), let size = number(3),
      let modified = number(4), let changed = number(5), ranges[6].count == 16, let key = word(6),
      let fileByteCount = number(7), let file = bytes32(8), let manifest = bytes32(9),
      let reason = unescape(String(decoding: UnsafeBufferPointer(rebasing: line[ranges[10]]), as: UTF8.self))
    else { return false }
    let reasonID = storage.reasonID(reason)
    storage.set(
      path: UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: line[ranges[0]])),
      state: FileState(
        device: UInt64(device), inode: UInt64(inode), size: size, modifiedNS: modified, changedNS: changed),
      key: key, fileByteCount: fileByteCount, file: file, manifest: manifest, reason: reasonID)
    return true
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
    // On the bytes: Foundation's `contains` on a String costs microseconds (a line each).
    guard field.utf8.contains(UInt8(ascii: "%")) else { return field }
    return field.removingPercentEncoding
  }

  /// `read(2)`, again after an interruption; -1 on an error.
  private static func read(fd: Int32, into buffer: UnsafeMutableRawBufferPointer) -> Int {
    while true {
      let count = Glibc.read(fd, buffer.baseAddress, buffer.count)
      if count < 0, errno == EINTR { continue }
      return count
    }
  }

  /// The 16 lower-case hex digits of `bytes` from `start` as a number; nil when any is not one.
  private static func lowerHexWord(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int) -> UInt64? {
    guard start + 16 <= bytes.count else { return nil }
    var value: UInt64 = 0
    for index in start..<(start + 16) {
      let char = bytes[index]
      let nibble: UInt8
      switch char {
      case UInt8(ascii: "0")...UInt8(ascii: "9"): nibble = char - UInt8(ascii: "0")
      case UInt8(ascii: "a")...UInt8(ascii: "f"): nibble = char - UInt8(ascii: "a") + 10
      default: return nil
      }
      value = value << 4 | UInt64(nibble)
    }
    return value
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

/// HMAC-SHA-256 (RFC 2104) over data given in pieces, so a file is authenticated as it is read
/// or written rather than held whole. The key is at most a block (the verdicts' is 32 bytes).
private final class StreamingHMAC {
  private let inner: OpaquePointer
  private let outer: OpaquePointer

  init(key: SecretBytes) {
    guard let inner = EVP_MD_CTX_new(), let outer = EVP_MD_CTX_new(), EVP_DigestInit_ex(inner, EVP_sha256(), nil) == 1,
      EVP_DigestInit_ex(outer, EVP_sha256(), nil) == 1
    else { fatalError("OpenSSL could not start a SHA-256 digest; the libcrypto install is broken") }
    self.inner = inner
    self.outer = outer
    var pad = [UInt8](repeating: 0, count: 64)
    // Wiped before it goes: the padded key is the key.
    defer { pad.withUnsafeMutableBytes { OPENSSL_cleanse($0.baseAddress, $0.count) } }
    key.withPointer { bytes, count in
      precondition(count <= 64, "an HMAC key longer than a block is hashed first; not needed here")
      for index in 0..<count { pad[index] = bytes[index] }
    }
    for index in 0..<64 { pad[index] ^= 0x36 }
    EVP_DigestUpdate(inner, pad, 64)
    for index in 0..<64 { pad[index] ^= 0x36 ^ 0x5c }
    EVP_DigestUpdate(outer, pad, 64)
  }

  deinit {
    EVP_MD_CTX_free(inner)
    EVP_MD_CTX_free(outer)
  }

  func update(_ bytes: UnsafeRawBufferPointer) {
    guard let base = bytes.baseAddress, bytes.count > 0 else { return }
    EVP_DigestUpdate(inner, base, bytes.count)
  }

  func update(byte: UInt8) { withUnsafeBytes(of: byte) { update($0) } }

  /// The 32-byte tag; the HMAC is spent.
  func finalize() -> [UInt8] {
    var digest = [UInt8](repeating: 0, count: 32)
    var length: UInt32 = 0
    EVP_DigestFinal_ex(inner, &digest, &length)
    EVP_DigestUpdate(outer, digest, 32)
    EVP_DigestFinal_ex(outer, &digest, &length)
    return digest
  }
}

/// The verdicts file as it is written: lines gathered in a buffer, each full buffer added to the
/// HMAC and written out; the HMAC line last.
private struct LineWriter {
  let fd: Int32
  let path: String
  let hmac: StreamingHMAC
  var buffer: [UInt8] = []
  private static let hexDigits = Array("0123456789abcdef".utf8)

  init(fd: Int32, path: String, macKey: SecretBytes) {
    self.fd = fd
    self.path = path
    hmac = StreamingHMAC(key: macKey)
    buffer.reserveCapacity(1 << 18)
  }

  mutating func append(_ bytes: UnsafeRawBufferPointer) throws {
    buffer.append(contentsOf: bytes)
    if buffer.count >= (1 << 18) - 4096 { try flush() }
  }

  mutating func append(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try append($0) } }

  /// The rest of an entry's line after its path:
  /// ` DEV INO SIZE MTIME_NS CTIME_NS KEY_ID FILE_SIZE FILE_SHA256 MANIFEST_SHA256 REASON\n`.
  mutating func append(line entry: SignatureVerdicts.Entry, reason: String) throws {
    let state = entry.state
    for number in [state.device, state.inode, UInt64(state.size), UInt64(state.modifiedNS), UInt64(state.changedNS)] {
      buffer.append(UInt8(ascii: " "))
      appendDecimal(number)
    }
    buffer.append(UInt8(ascii: " "))
    appendHex(entry.key)
    buffer.append(UInt8(ascii: " "))
    appendDecimal(UInt64(entry.fileByteCount))
    for words in [entry.file.words, entry.manifest.words] {
      buffer.append(UInt8(ascii: " "))
      for word in [words.0, words.1, words.2, words.3] { appendHex(word) }
    }
    buffer.append(UInt8(ascii: " "))
    buffer.append(contentsOf: reason.utf8)
    buffer.append(UInt8(ascii: "\n"))
    if buffer.count >= (1 << 18) - 4096 { try flush() }
  }

  private mutating func appendDecimal(_ value: UInt64) {
    var digits:
      (
        UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
        UInt8, UInt8, UInt8, UInt8, UInt8, UInt8
      ) = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    var count = 0
    var rest = value
    withUnsafeMutableBytes(of: &digits) { out in
      repeat {
        out[19 - count] = UInt8(ascii: "0") + UInt8(rest % 10)
        rest /= 10
        count += 1
      } while rest > 0
      buffer.append(contentsOf: out[(20 - count)...])
    }
  }

  private mutating func appendHex(_ word: UInt64) {
    for shift in stride(from: 60, through: 0, by: -4) {
      buffer.append(Self.hexDigits[Int((word >> UInt64(shift)) & 0xf)])
    }
  }

  private mutating func flush() throws {
    try buffer.withUnsafeBytes { bytes in
      hmac.update(bytes)
      try FileSystem.writeAll(fd: fd, bytes: bytes, path: path)
    }
    buffer.removeAll(keepingCapacity: true)
  }

  /// Writes what is left, then `hmac <tag>`.
  mutating func finish() throws {
    try flush()
    let trailer = Array("hmac \(Hex.encode(hmac.finalize()))\n".utf8)
    try trailer.withUnsafeBytes { try FileSystem.writeAll(fd: fd, bytes: $0, path: path) }
  }
}

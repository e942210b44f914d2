import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// What an inspection of a valid session file found, without the key: what `check` judges a
/// file by (its format, data centre and owner, and which key it holds, as a SHA-256 digest).
/// Safe to keep and to show: a digest of a 256-byte random key reveals nothing of it.
public struct SessionFileFacts: Sendable, Equatable {
  /// The file that was inspected.
  public var path: String
  public var format: SessionFormat
  public var dcID: Int
  /// Whose session this is, as the file records it (`SessionFileInfo.ownerUserID`).
  public var ownerUserID: Int64?
  /// Lower-case hex SHA-256 of the auth key.
  public var authKeySHA256: String

  /// The facts of `info`.
  public init(_ info: SessionFileInfo) {
    self.init(
      path: info.path, format: info.format, dcID: info.identity.dcID, ownerUserID: info.ownerUserID,
      authKeySHA256: Digest.sha256Hex(info.identity.authKey.bytes))
  }

  public init(path: String, format: SessionFormat, dcID: Int, ownerUserID: Int64?, authKeySHA256: String) {
    self.path = path
    self.format = format
    self.dcID = dcID
    self.ownerUserID = ownerUserID
    self.authKeySHA256 = authKeySHA256
  }

  /// The key's fingerprint as `AuthKey.fingerprint` shows it (the digest's first 8 hex digits).
  public var authKeyFingerprint: String { String(authKeySHA256.prefix(8)) }

  /// Whether the file holds `key`.
  public func holds(_ key: AuthKey) -> Bool { Digest.sha256Hex(key.bytes) == authKeySHA256 }
}

/// Inspections of live session files already made, so that `check` opens through SQLite only
/// the session files (and `.session.backup` copies) that changed since it last read them
/// (opening and reading 13,000 files was three quarters of its cost at 10,000 users). Kept in
/// `backups/.session-verdicts`, beside check's other verdicts (`backups/.signatures`): the
/// directory tgsess alone writes, never archived, never read by the bot or its tools (the
/// sessions directory is theirs).
///
/// The same rules as `SignatureVerdicts`. An inspection is used only while the file is the very
/// file inspected: the same device, inode, size, and modification and change times to the
/// nanosecond (a write, a rename over it or a copy onto it changes the change time, which no
/// unprivileged process can set), and with neither a `-journal` nor a `-wal` beside it, then as
/// now: a file with a companion is inspected afresh every time (a hot journal, a WAL holding
/// newer pages). An inspection is recorded only when the file was in the same state before and
/// after it, and its times were older than `racyInterval` (git's "racily clean" rule). Only valid
/// files are recorded: a file that fails inspection is inspected, and reported, on every run.
///
/// The file is authenticated with HMAC-SHA-256 under a key derived from the deployment's signing
/// key (never stored): whoever can write to backups/ but cannot read keys/signing.key cannot
/// make a damaged session file pass for a valid one. A damaged, forged, or other version's file
/// reads as empty: it only costs time. It holds no secret: file names and times, formats, data
/// centres, owner ids and SHA-256 digests of auth keys. `check --deep`, backup, restore, recover,
/// drill and watch never use it: they read every file they judge.
public final class SessionVerdicts: @unchecked Sendable {
  typealias FileState = SignatureVerdicts.FileState

  /// One inspection: the file's state then, whether every page was checked, and what it found
  /// (`path` left empty: the lookup's path is put back).
  struct Entry: Sendable {
    var state: FileState
    var isPageChecked: Bool
    var facts: SessionFileFacts
  }

  /// The cache file in `backupsDirectory`.
  public static func path(backupsDirectory: String) -> String { backupsDirectory + "/.session-verdicts" }

  /// The directory whose files the inspections are about.
  public let sessionsDirectory: String
  /// Where the inspections are kept.
  public let path: String
  private let macKey: SecretBytes
  private let header: String
  /// Files changed at or after this time (ns since the epoch) are not recorded.
  private let racyCutoffNS: Int64
  private let lock = NSLock()
  private var entries: [String: Entry] = [:]
  private var used: Set<String> = []
  private var isChanged = false
  private var reused = 0

  /// How many inspections are known (loaded and recorded).
  public var count: Int { lock.withLock { entries.count } }
  /// How many inspections this run took from the cache instead of opening the file.
  public var reusedCount: Int { lock.withLock { reused } }

  /// The inspections of the files in `sessionsDirectory`, kept in `backupsDirectory`,
  /// authenticated with a key derived from `signingKey`. A missing, damaged or forged file, or
  /// one written by another tool version, gives an empty cache.
  /// - Parameter racyInterval: files changed less than this long before now are inspected but
  ///   not recorded (tests pass 0 on a filesystem with fine timestamps).
  /// - Throws: `StoreError.crypto` when the key cannot be derived (libcrypto failed).
  public init(
    sessionsDirectory: String, backupsDirectory: String, signingKey: SigningKey, toolVersion: String,
    racyInterval: TimeInterval = 2, now: Date = Date()
  ) throws {
    self.sessionsDirectory = sessionsDirectory
    path = Self.path(backupsDirectory: backupsDirectory)
    macKey = try HKDFSHA256.derive(
      ikm: signingKey.privateKey, salt: [], info: Array("tgsess session verdicts v1".utf8))
    header = "\(Self.magic) \(toolVersion.filter { !$0.isWhitespace })"
    racyCutoffNS = Int64((now.timeIntervalSince1970 - racyInterval) * 1_000_000_000)
    load()
  }

  // MARK: - Inspecting

  /// What the session file at `path` holds, as `SessionFileInspector.inspect(path:verifiesPages:)`
  /// finds it, taken from an earlier inspection while the file is the very file inspected then
  /// (and that inspection checked the pages, if `verifiesPages`); a new valid inspection is
  /// recorded. Safe to call from several threads.
  /// - Throws: what `SessionFileInspector.inspect(path:verifiesPages:)` throws.
  public func inspect(path: String, verifiesPages: Bool) throws -> SessionFileFacts {
    let name = (path as NSString).lastPathComponent
    guard FileSystem.parentDirectory(of: path) == sessionsDirectory, Self.isField(name) else {
      return SessionFileFacts(try SessionFileInspector.inspect(path: path, verifiesPages: verifiesPages))
    }
    let before = Self.quietState(path: path)
    if let before, let facts = facts(name: name, state: before, needsPageCheck: verifiesPages) {
      var found = facts
      found.path = path
      return found
    }
    let facts = SessionFileFacts(try SessionFileInspector.inspect(path: path, verifiesPages: verifiesPages))
    if let before, let after = Self.quietState(path: path), after == before {
      record(name: name, Entry(state: after, isPageChecked: verifiesPages, facts: facts))
    }
    return facts
  }

  /// The state of the regular file at `path` when neither its `-journal` nor its `-wal` exists;
  /// nil otherwise (or when it cannot be stat'ed).
  static func quietState(path: String) -> FileState? {
    guard let state = FileState(path: path), isAbsent(path + "-journal"), isAbsent(path + "-wal") else { return nil }
    return state
  }

  /// Whether nothing is at `path` (not even a dangling link); a stat that fails otherwise (a
  /// permission) does not count as absent.
  private static func isAbsent(_ path: String) -> Bool {
    var info = stat()
    return lstat(path, &info) != 0 && errno == ENOENT
  }

  private func facts(name: String, state: FileState, needsPageCheck: Bool) -> SessionFileFacts? {
    lock.withLock {
      guard let entry = entries[name], entry.state == state, entry.isPageChecked || !needsPageCheck else { return nil }
      used.insert(name)
      reused += 1
      return entry.facts
    }
  }

  /// Records an inspection; ignored for a file changed too recently to be told apart from its
  /// next version, and for facts that would not make one line.
  private func record(name: String, _ entry: Entry) {
    guard entry.state.modifiedNS < racyCutoffNS, entry.state.changedNS < racyCutoffNS,
      Self.isField(entry.facts.format.shortName), entry.facts.authKeySHA256.utf8.count == 64
    else { return }
    var kept = entry
    kept.facts.path = ""
    lock.withLock {
      entries[name] = kept
      used.insert(name)
      isChanged = true
    }
  }

  // MARK: - The file

  static let magic = "tgsess-session-verdicts 1"

  /// Writes the inspections back when this run learnt or dropped any (temporary file, rename;
  /// not fsynced: a cache lost in a crash is rebuilt, a torn one fails its HMAC).
  /// - Parameter dropsUnused: drop the inspections this run did not use (a run that looked at
  ///   every session file: the others' files are gone or changed).
  /// - Throws: `StoreError.io` when the file cannot be written.
  public func save(dropsUnused: Bool) throws {
    let body: [UInt8]? = lock.withLock {
      if dropsUnused, used.count < entries.count {
        entries = entries.filter { used.contains($0.key) }
        isChanged = true
      }
      guard isChanged else { return nil }
      isChanged = false
      var text = header + "\n"
      text.reserveCapacity(entries.count * 180)
      for (name, entry) in entries.sorted(by: { $0.key < $1.key }) {
        let state = entry.state
        let facts = entry.facts
        text += name
        text += " \(state.device) \(state.inode) \(state.size) \(state.modifiedNS) \(state.changedNS) "
        text += entry.isPageChecked ? "1 " : "0 "
        text += facts.format.shortName
        text += " \(facts.dcID) "
        text += facts.ownerUserID.map { String($0) } ?? "-"
        text += " "
        text += facts.authKeySHA256
        text += "\n"
      }
      return Array(text.utf8)
    }
    guard let body else { return }
    let tag = try HMACSHA256.authenticate(key: macKey, data: body)
    try FileSystem.replaceWithoutSync(at: path, with: Data(body + Array("hmac \(Hex.encode(tag))\n".utf8)))
  }

  /// Reads the file; leaves the cache empty when it is missing, damaged, forged or written by
  /// another version.
  private func load() {
    guard let data = try? FileSystem.read(path) else { return }
    let loaded: [String: Entry]? = data.withUnsafeBytes { raw in
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
      var loaded: [String: Entry] = [:]
      var isHeader = true
      var lineStart = 0
      for index in 0..<bodyEnd where bytes[index] == UInt8(ascii: "\n") {
        let line = UnsafeBufferPointer(rebasing: bytes[lineStart..<index])
        lineStart = index + 1
        if isHeader {
          isHeader = false
          guard String(decoding: line, as: UTF8.self) == header else { return nil }
          continue
        }
        guard let (name, entry) = Self.parse(line) else { return nil }
        loaded[name] = entry
      }
      return isHeader ? nil : loaded
    }
    if let loaded { entries = loaded }
  }

  /// One line: `NAME DEV INO SIZE MTIME_NS CTIME_NS PAGES FORMAT DC OWNER KEY_SHA256`.
  private static func parse(_ line: UnsafeBufferPointer<UInt8>) -> (String, Entry)? {
    guard let ranges = CacheLine.fields(line, count: 11) else { return nil }
    func number(_ field: Int) -> Int64? { CacheLine.decimal(line, ranges[field]) }
    func text(_ field: Int) -> String {
      String(decoding: UnsafeBufferPointer(rebasing: line[ranges[field]]), as: UTF8.self)
    }
    let owner = text(9)
    let digest = text(10)
    guard let device = number(1), let inode = number(2), let size = number(3), let modified = number(4),
      let changed = number(5), let pages = number(6), pages <= 1, let format = SessionFormat(shortName: text(7)),
      let dcID = number(8), owner == "-" || Int64(owner) != nil, digest.utf8.count == 64,
      Hex.decode(digest).map(Hex.encode) == digest
    else { return nil }
    let state = FileState(
      device: UInt64(device), inode: UInt64(inode), size: size, modifiedNS: modified, changedNS: changed)
    let facts = SessionFileFacts(
      path: "", format: format, dcID: Int(dcID), ownerUserID: Int64(owner), authKeySHA256: digest)
    return (text(0), Entry(state: state, isPageChecked: pages == 1, facts: facts))
  }

  /// Whether `text` can be a field as it is (not empty, no space, no line break).
  private static func isField(_ text: String) -> Bool {
    !text.isEmpty && !text.utf8.contains(UInt8(ascii: " ")) && !text.utf8.contains(UInt8(ascii: "\n"))
  }
}

extension SessionVerdicts {
  /// The inspections of `deployment`'s session files; nil when its signing key is not on this
  /// host or cannot be read (then every file is inspected, as without a cache).
  /// - Parameter racyInterval: see `init`.
  public static func forDeployment(
    _ deployment: Deployment, signingKey: SigningKey?, toolVersion: String, racyInterval: TimeInterval = 2,
    now: Date = Date()
  ) -> SessionVerdicts? {
    guard let signingKey else { return nil }
    return try? SessionVerdicts(
      sessionsDirectory: deployment.sessionsDirectory, backupsDirectory: deployment.backupsDirectory,
      signingKey: signingKey, toolVersion: toolVersion, racyInterval: racyInterval, now: now)
  }
}

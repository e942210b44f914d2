import Foundation

/// Live files archived byte for byte (manifest role `verbatim`): a restore's undo when what it
/// replaces cannot be read as SQLite (a damaged session file or database), so that the undo is
/// still an archive, encrypted, signed, listed, pruned and restorable like every other. The
/// entry paths are the ones ordinary archives use (`data/<database name>`,
/// `sessions/user_<id>.session`, `.session.backup`, `sessions/user_<id>.json`), plus the SQLite
/// companions `-journal` and `-wal` of the database, a session file or its `.session.backup`,
/// which belong to those bytes alone and are archived with them when present.
public enum VerbatimFiles {
  /// The SQLite companions archived with a verbatim file (`-shm` is only shared memory).
  public static let companionSuffixes = ["-journal", "-wal"]

  /// The live file a verbatim entry stands for.
  public struct Target: Sendable, Equatable {
    public enum File: Sendable, Equatable {
      case database
      case session
      case sessionBackup
      case sidecar
    }

    public var file: File
    /// The user of a session file, its `.session.backup` or its sidecar.
    public var userID: Int64?
    /// "" for the file itself, `-journal` or `-wal` for the SQLite companion beside it.
    public var companionSuffix: String

    public init(file: File, userID: Int64?, companionSuffix: String = "") {
      self.file = file
      self.userID = userID
      self.companionSuffix = companionSuffix
    }

    /// Whether this is a `-journal` or `-wal` beside the file.
    public var isCompanion: Bool { !companionSuffix.isEmpty }

    /// Where the file lives in `deployment`.
    public func livePath(in deployment: Deployment) -> String {
      let user = userID ?? 0
      let base: String
      switch file {
      case .database: base = deployment.databasePath
      case .session: base = deployment.sessionPath(userID: user)
      case .sessionBackup: base = deployment.sessionPath(userID: user) + ".backup"
      case .sidecar: base = deployment.sidecarPath(userID: user)
      }
      return base + companionSuffix
    }
  }

  /// What the verbatim entry at archive path `path` (of `userID`) stands for; nil when it names
  /// no live file tgsess restores (such a manifest is refused).
  public static func target(entryPath path: String, userID: Int64?) -> Target? {
    if path.hasPrefix("data/") {
      let name = String(path.dropFirst("data/".count))
      guard userID == nil, !name.isEmpty, !name.contains("/") else { return nil }
      let suffix = companionSuffixes.first { name.hasSuffix($0) && name.count > $0.count } ?? ""
      return Target(file: .database, userID: nil, companionSuffix: suffix)
    }
    guard path.hasPrefix("sessions/"), let userID else { return nil }
    let name = path.dropFirst("sessions/".count)
    let stem = "user_\(userID)"
    guard name.hasPrefix(stem) else { return nil }
    let rest = String(name.dropFirst(stem.count))
    if rest == SessionSidecar.suffix { return Target(file: .sidecar, userID: userID, companionSuffix: "") }
    for suffix in [""] + companionSuffixes {
      if rest == ".session" + suffix { return Target(file: .session, userID: userID, companionSuffix: suffix) }
      if rest == ".session.backup" + suffix {
        return Target(file: .sessionBackup, userID: userID, companionSuffix: suffix)
      }
    }
    return nil
  }

  /// What a verbatim entry stands for (`target(entryPath:userID:)`); nil for any other role.
  public static func target(of entry: Manifest.Entry) -> Target? {
    entry.role == .verbatim ? target(entryPath: entry.path, userID: entry.userID) : nil
  }

  /// The archive path (and user) of the live file at `path` of `deployment`: the database, a
  /// session file, its `.session.backup` or sidecar, or a `-journal`/`-wal` beside one of them;
  /// nil for any other file.
  public static func entryPath(ofLive path: String, in deployment: Deployment) -> (path: String, userID: Int64?)? {
    for suffix in [""] + companionSuffixes where path == deployment.databasePath + suffix {
      return ("data/" + (deployment.databasePath as NSString).lastPathComponent + suffix, nil)
    }
    guard FileSystem.parentDirectory(of: path) == deployment.sessionsDirectory else { return nil }
    let name = (path as NSString).lastPathComponent
    guard name.hasPrefix("user_") else { return nil }
    let digits = name.dropFirst("user_".count).prefix { $0.isNumber }
    guard let userID = Int64(digits), target(entryPath: "sessions/" + name, userID: userID) != nil else { return nil }
    return ("sessions/" + name, userID)
  }

  /// Copies the live file at `livePath` byte for byte into `staging`, hashing the copy: the
  /// manifest entry (role `verbatim`, size and SHA-256 of exactly the bytes copied) and where
  /// its bytes are. Reads the file as bytes on purpose: it is the undo of a file that SQLite
  /// could not read; the live-owner guard and the deployment lock are held by the caller.
  /// - Throws: `StoreError.invalid` for a file that is no verbatim target; `StoreError.io`
  ///   naming the live file (unreadable) or the staging copy (a full disk).
  public static func stage(livePath: String, in deployment: Deployment, staging: StagingArea) throws -> (
    entry: Manifest.Entry, source: ArchiveSource
  ) {
    guard let (entryPath, userID) = entryPath(ofLive: livePath, in: deployment) else {
      throw StoreError.invalid(
        path: livePath, reason: "not a session file, sidecar or the database", hint: "this is a tgsess bug; report it")
    }
    let copy = try staging.file("verbatim/" + entryPath)
    let input = open(livePath, O_RDONLY | O_CLOEXEC)
    guard input >= 0 else { throw StoreError.io(path: livePath, operation: "open", errno: errno) }
    defer { close(input) }
    let output = open(copy, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, FileSystem.fileMode)
    guard output >= 0 else { throw StoreError.io(path: copy, operation: "create", errno: errno) }
    defer { close(output) }
    var hasher = SHA256Hasher()
    var byteCount: Int64 = 0
    var buffer = [UInt8](repeating: 0, count: 256 * 1024)
    while true {
      let count = buffer.withUnsafeMutableBytes { Glibc.read(input, $0.baseAddress, $0.count) }
      if count < 0 {
        if errno == EINTR { continue }
        throw StoreError.io(path: livePath, operation: "read", errno: errno)
      }
      if count == 0 { break }
      try buffer.withUnsafeBytes { bytes in
        let chunk = UnsafeRawBufferPointer(rebasing: bytes[0..<count])
        hasher.update(chunk)
        try FileSystem.writeAll(fd: output, bytes: chunk, path: copy)
      }
      byteCount += Int64(count)
    }
    let entry = Manifest.Entry(
      path: entryPath, role: .verbatim, size: byteCount, sha256: Hex.encode(hasher.finalize()), isSQLite: false,
      userID: userID)
    return (entry, .file(copy))
  }

  /// The manifest's verbatim entries are well-formed: the manifest is format 2 or later, each
  /// entry names a live file tgsess restores (of the archive's user, in a per-user archive) and
  /// is not integrity-checked as SQLite, and each `-journal`/`-wal` comes with the file it
  /// belongs to.
  /// - Throws: `StoreError.invalid` naming `objectName` and the entry.
  static func validate(_ manifest: Manifest, objectName: String) throws {
    let verbatim = manifest.entries.filter { $0.role == .verbatim }
    guard !verbatim.isEmpty else { return }
    guard manifest.formatVersion >= 2 else {
      throw StoreError.invalid(
        path: objectName, reason: "manifest format 1 lists verbatim entries, which format 1 does not have",
        hint: "refusing this archive")
    }
    let paths = Set(verbatim.map(\.path))
    for entry in verbatim {
      guard !entry.isSQLite, let target = target(of: entry),
        manifest.kind == .full || (target.file != .database && target.userID == manifest.userID)
      else {
        throw StoreError.invalid(
          path: objectName, reason: "manifest entry '\(entry.path)' is a verbatim entry of no file tgsess restores",
          hint: "refusing this archive")
      }
      if target.isCompanion, !paths.contains(String(entry.path.dropLast(target.companionSuffix.count))) {
        throw StoreError.invalid(
          path: objectName,
          reason: "manifest entry '\(entry.path)' is an SQLite companion without the file it belongs to",
          hint: "refusing this archive")
      }
    }
  }
}

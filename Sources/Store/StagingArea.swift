import Foundation

/// A private scratch directory on the same filesystem as the archives
/// (`backups/.staging-<pid>-<random>`), removed when done. Stale ones of dead processes are
/// removed by the next run.
public final class StagingArea: @unchecked Sendable {
  public let path: String

  /// Creates a new staging directory under `parent`.
  /// - Throws: `StoreError.io`.
  public init(parent: String) throws {
    try FileSystem.makeDirectory(parent)
    Self.removeStale(in: parent)
    let suffix = String(UInt64.random(in: 0...UInt64.max), radix: 36)
    path = parent + "/.staging-\(getpid())-\(suffix)"
    packPath = path + "/snapshots.pack"
    if mkdir(path, FileSystem.directoryMode) != 0 {
      throw StoreError.io(path: path, operation: "create staging directory", errno: errno)
    }
    chmod(path, FileSystem.directoryMode)
  }

  /// `path/relative`, creating the parent directories.
  /// - Throws: `StoreError.io`.
  public func file(_ relative: String) throws -> String {
    let full = path + "/" + relative
    try FileSystem.makeDirectory(FileSystem.parentDirectory(of: full))
    return full
  }

  /// Removes one staged file that is no longer needed (the bot database's snapshot once the full
  /// archive holds it). Its pages are dropped unwritten: the kernel's writeback never spends the
  /// disk, which the bot commits to, on gigabytes that were only ever scratch. A file that is
  /// already gone is fine.
  /// - Throws: `StoreError.io` when `path` is outside the area or cannot be removed.
  public func discard(_ path: String) throws {
    guard path.hasPrefix(self.path + "/"), !path.contains("/../") else {
      throw StoreError.io(path: path, operation: "remove a staged file outside \(self.path)", errno: EINVAL)
    }
    if unlink(path) != 0, errno != ENOENT { throw StoreError.io(path: path, operation: "remove", errno: errno) }
  }

  /// The pack file small snapshots are appended to, and its write offset.
  private var packFD: Int32 = -1
  private var packSize: Int64 = 0
  private let packLock = NSLock()
  /// One string for every region of the pack (not a copy per staged snapshot).
  public let packPath: String

  /// Appends a snapshot's file image to the area's pack file and returns where it is, with its
  /// size and SHA-256 (the manifest entry's), computed from the same bytes.
  /// - Throws: `StoreError.io` naming the pack file (a full disk, for instance).
  public func pack(_ image: SQLiteImage) throws -> StagedBytes {
    try image.withUnsafeBytes { try pack(bytes: $0) }
  }

  /// Appends `data` (a user's rows as JSON, say) to the area's pack file and returns where it is,
  /// with its size and SHA-256.
  /// - Throws: `StoreError.io` naming the pack file (a full disk, for instance).
  public func pack(_ data: Data) throws -> StagedBytes {
    try data.withUnsafeBytes { try pack(bytes: $0) }
  }

  /// Appends `bytes` to the area's pack file (one file for many small snapshots, so there is no
  /// inode per snapshot). Not fsynced: staging feeds an archive that is written durably. Safe to
  /// call from several threads.
  private func pack(bytes: UnsafeRawBufferPointer) throws -> StagedBytes {
    let sha256 = Digest.sha256Hex(bytes)
    packLock.lock()
    defer { packLock.unlock() }
    if packFD < 0 {
      packFD = open(packPath, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, FileSystem.fileMode)
      guard packFD >= 0 else { throw StoreError.io(path: packPath, operation: "create", errno: errno) }
    }
    let offset = packSize
    var done = 0
    while done < bytes.count {
      let count = pwrite(packFD, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
      if count < 0 {
        if errno == EINTR { continue }
        throw StoreError.io(path: packPath, operation: "write", errno: errno)
      }
      done += count
    }
    packSize += Int64(bytes.count)
    return StagedBytes(
      source: .region(path: packPath, offset: offset, length: Int64(bytes.count)), byteCount: Int64(bytes.count),
      sha256: sha256)
  }

  /// Removes the directory and everything in it.
  public func remove() {
    if packFD >= 0 {
      close(packFD)
      packFD = -1
    }
    try? FileManager.default.removeItem(atPath: path)
  }

  deinit { remove() }

  /// Removes staging directories under `parent` whose process is gone.
  /// - Returns: the paths of the directories removed (a directory that could not be removed is
  ///   left out, and the next run tries again).
  @discardableResult
  public static func removeStale(in parent: String) -> [String] {
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: parent) else { return [] }
    var removed: [String] = []
    for name in names.sorted() where name.hasPrefix(".staging-") {
      let pidText = name.dropFirst(".staging-".count).split(separator: "-").first ?? ""
      // EPERM: the process lives, under another user (root's run beside the service's).
      if let pid = Int32(pidText), pid == getpid() || kill(pid, 0) == 0 || errno == EPERM { continue }
      let path = parent + "/" + name
      if (try? FileManager.default.removeItem(atPath: path)) != nil { removed.append(path) }
    }
    return removed
  }
}

/// Bytes appended to a staging pack: where they are (an archive source), how many, and their
/// SHA-256 as lower-case hex.
public struct StagedBytes: Sendable {
  public var source: ArchiveSource
  public var byteCount: Int64
  public var sha256: String
}

import CShims
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// File-system primitives every writer in tgsess goes through: private modes, atomic
/// replacement, and directory fsync.
public enum FileSystem {
  /// Mode of every file tgsess creates.
  public static let fileMode: mode_t = 0o600
  /// Mode of every directory tgsess creates.
  public static let directoryMode: mode_t = 0o700

  /// Whether something exists at `path` (without following a final symlink).
  public static func exists(_ path: String) -> Bool {
    var info = stat()
    return lstat(path, &info) == 0
  }

  /// Whether `path` is a directory.
  public static func isDirectory(_ path: String) -> Bool {
    var info = stat()
    return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
  }

  /// The permission bits of `path`.
  /// - Throws: `StoreError.io` when the path cannot be stat'ed.
  public static func mode(of path: String) throws -> mode_t {
    var info = stat()
    guard stat(path, &info) == 0 else { throw StoreError.io(path: path, operation: "stat", errno: errno) }
    return info.st_mode & 0o7777
  }

  /// The size of the file at `path` in bytes.
  /// - Throws: `StoreError.io` when the path cannot be stat'ed.
  public static func size(of path: String) throws -> Int64 {
    var info = stat()
    guard stat(path, &info) == 0 else { throw StoreError.io(path: path, operation: "stat", errno: errno) }
    return Int64(info.st_size)
  }

  /// Creates `path` and its missing parents with mode 0700, whatever the umask, and fsyncs the
  /// parent of each directory it creates. An existing directory is left as it is.
  /// - Throws: `StoreError.io` naming the directory that could not be created or synced.
  /// - Parameter isDurable: sync the parent after creating (the default); a scratch directory
  ///   whose files are renamed elsewhere before they matter (a staging area's) need not be.
  public static func makeDirectory(_ path: String, isDurable: Bool = true) throws {
    if isDirectory(path) { return }
    let parent = FileSystem.parentDirectory(of: path)
    if !parent.isEmpty, parent != path, !isDirectory(parent) { try makeDirectory(parent, isDurable: isDurable) }
    let isCreated = mkdir(path, directoryMode) == 0
    if !isCreated, errno != EEXIST {
      throw StoreError.io(path: path, operation: "create directory", errno: errno)
    }
    // mkdir applies the umask; set the mode explicitly.
    if chmod(path, directoryMode) != 0 { throw StoreError.io(path: path, operation: "chmod 0700", errno: errno) }
    // The new directory is an entry of its parent: until the parent is synced, a power cut may
    // take it away with every file later written and synced into it (an archive, say). When
    // that sync fails the new directory goes again, so that a retry creates and syncs it anew
    // (an existing directory is taken as it is).
    if isCreated, isDurable {
      do { try fsyncDirectory(parent.isEmpty ? "." : parent) } catch {
        rmdir(path)
        throw error
      }
    }
  }

  /// Reads a whole (small) file.
  /// - Throws: `StoreError.missing` or `StoreError.io`.
  public static func read(_ path: String) throws -> Data {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else {
      if errno == ENOENT { throw StoreError.missing(path: path, hint: "check the path, or run tgsess init") }
      throw StoreError.io(path: path, operation: "open", errno: errno)
    }
    defer { close(fd) }
    var data = Data()
    var buffer = [UInt8](repeating: 0, count: 64 * 1024)
    while true {
      let count = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
      if count < 0 {
        if errno == EINTR { continue }
        throw StoreError.io(path: path, operation: "read", errno: errno)
      }
      if count == 0 { break }
      data.append(contentsOf: buffer[0..<count])
    }
    return data
  }

  /// Writes `data` to `path` atomically: a temporary file in the same directory, fsync, rename,
  /// fsync of the directory. A crash at any moment leaves either the old file or the new one.
  /// - Parameters:
  ///   - mode: the new file's mode (0600 unless a reader outside tgsess needs more).
  ///   - overwrite: when false, an existing file at `path` is an error and is left untouched.
  ///   - temporaryPath: where the new file is written first (default: `temporaryPath(for:)`).
  /// - Throws: `StoreError.io` naming the file; the temporary is removed on failure.
  public static func writeAtomically(
    _ data: Data, to path: String, mode: mode_t = fileMode, overwrite: Bool = true, temporaryPath: String? = nil
  ) throws {
    try writeAtomically(to: path, mode: mode, overwrite: overwrite, temporaryPath: temporaryPath) { fd, tempPath in
      try data.withUnsafeBytes { try writeAll(fd: fd, bytes: $0, path: tempPath) }
    }
  }

  /// Atomic write with a caller-supplied body that fills the temporary file through `fd`.
  /// - Throws: whatever `body` throws, or `StoreError.io`; the temporary is removed on failure.
  public static func writeAtomically(
    to path: String, mode: mode_t = fileMode, overwrite: Bool = true, temporaryPath: String? = nil,
    body: (_ fd: Int32, _ tempPath: String) throws -> Void
  ) throws {
    let tempPath = temporaryPath ?? Self.temporaryPath(for: path)
    let fd = open(tempPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
    guard fd >= 0 else { throw StoreError.io(path: tempPath, operation: "create", errno: errno) }
    var isDone = false
    defer {
      if !isDone { unlink(tempPath) }
    }
    do {
      defer { close(fd) }
      if fchmod(fd, mode) != 0 { throw StoreError.io(path: tempPath, operation: "chmod", errno: errno) }
      try body(fd, tempPath)
      try CrashPoint.hit("atomic.before-fsync")
      if fsync(fd) != 0 { throw StoreError.io(path: tempPath, operation: "fsync", errno: errno) }
    }
    if !overwrite {
      // link(2) fails with EEXIST instead of replacing: the no-clobber publish.
      if link(tempPath, path) != 0 { throw StoreError.io(path: path, operation: "publish (link)", errno: errno) }
      unlink(tempPath)
    } else if rename(tempPath, path) != 0 {
      throw StoreError.io(path: path, operation: "rename into place", errno: errno)
    }
    isDone = true
    try CrashPoint.hit("atomic.after-rename")
    try fsyncDirectory(of: path)
  }

  /// Replaces the file at `path` with what `body` writes through `fd` into a temporary beside it,
  /// renamed into place, with no fsync: for caches, which a crash may lose or leave behind (the
  /// next run rebuilds the one, and removes the other's temporary as a dead run's leftover).
  /// - Throws: whatever `body` throws, or `StoreError.io`; the temporary is removed on failure.
  public static func replaceWithoutSync(at path: String, body: (_ fd: Int32, _ tempPath: String) throws -> Void)
    throws
  {
    let tempPath = temporaryPath(for: path)
    let fd = open(tempPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, fileMode)
    guard fd >= 0 else { throw StoreError.io(path: tempPath, operation: "create", errno: errno) }
    var isDone = false
    defer { if !isDone { unlink(tempPath) } }
    do {
      defer { close(fd) }
      try body(fd, tempPath)
    }
    guard rename(tempPath, path) == 0 else {
      throw StoreError.io(path: path, operation: "rename into place", errno: errno)
    }
    isDone = true
  }

  /// `replaceWithoutSync(at:body:)` with `data` as the new content.
  /// - Throws: `StoreError.io`.
  public static func replaceWithoutSync(at path: String, with data: Data) throws {
    try replaceWithoutSync(at: path) { fd, tempPath in
      try data.withUnsafeBytes { try writeAll(fd: fd, bytes: $0, path: tempPath) }
    }
  }

  /// The temporary name used while writing `path`: hidden, in the same directory, unique per
  /// process, and recognisable so that stale ones can be cleaned up.
  public static func temporaryPath(for path: String) -> String {
    let directory = FileSystem.parentDirectory(of: path)
    let name = (path as NSString).lastPathComponent
    let suffix = String(UInt64.random(in: 0...UInt64.max), radix: 36)
    let prefix = directory.isEmpty ? "" : directory + "/"
    return "\(prefix).\(name).tgsess-tmp-\(getpid())-\(suffix)"
  }

  /// The temporary name used while the holder of the deployment lock writes `path` into a
  /// directory that holds a whole fleet (`sessions/`): the same for every run, so that a run for
  /// one user finds a dead run's temporary of that file with one `unlink` instead of listing
  /// every session file (`removeLockedTemporary(of:)`). Without a pid, a directory sweep
  /// (`removeStaleTemporaries(in:)`, itself run under the lock) removes it as a dead run's.
  public static func lockedTemporaryPath(for path: String) -> String {
    let directory = FileSystem.parentDirectory(of: path)
    let name = (path as NSString).lastPathComponent
    return (directory.isEmpty ? "" : directory + "/") + ".\(name).tgsess-tmp-locked"
  }

  /// Removes what a dead run left of its `lockedTemporaryPath(for: path)` (the file and an SQLite
  /// `-journal` beside it). Call under the deployment lock only.
  /// - Returns: the paths removed.
  @discardableResult
  public static func removeLockedTemporary(of path: String) -> [String] {
    let temporary = lockedTemporaryPath(for: path)
    return [temporary, temporary + "-journal"].filter { unlink($0) == 0 }
  }

  /// Whether `name` is one of tgsess's temporaries (see `temporaryPath(for:)`).
  public static func isTemporaryName(_ name: String) -> Bool {
    name.hasPrefix(".") && name.contains(".tgsess-tmp-")
  }

  /// Removes the temporaries that interrupted runs left in `directory` whose writer is gone.
  /// - Returns: the paths removed.
  @discardableResult
  public static func removeStaleTemporaries(in directory: String) -> [String] {
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return [] }
    var removed: [String] = []
    for name in names where isTemporaryName(name) {
      // .NAME.tgsess-tmp-PID-RANDOM: keep it while that pid still runs.
      if let marker = name.range(of: ".tgsess-tmp-") {
        let rest = name[marker.upperBound...]
        // EPERM: the process lives, under another user (a `list` run by the operator beside the service).
        if let pid = Int32(rest.split(separator: "-").first ?? ""), pid != getpid(), kill(pid, 0) == 0 || errno == EPERM
        {
          continue
        }
        if let pid = Int32(rest.split(separator: "-").first ?? ""), pid == getpid() { continue }
      }
      let path = (directory as NSString).appendingPathComponent(name)
      if unlink(path) == 0 { removed.append(path) }
    }
    return removed
  }

  /// fsyncs the directory that holds `path`, so a rename in it is durable.
  /// - Throws: `StoreError.io`.
  public static func fsyncDirectory(of path: String) throws {
    let directory = FileSystem.parentDirectory(of: path)
    try fsyncDirectory(directory.isEmpty ? "." : directory)
  }

  /// Whether `directory` accepts a new file now: creates a private, uniquely named empty file
  /// there and removes it. Returns 0 when it does, else the errno of the failed creation (EROFS,
  /// ENOSPC, EDQUOT, EACCES...). Used to explain a failure whose own errno was not kept.
  public static func fileCreationErrno(in directory: String) -> Int32 {
    let probe =
      (directory.isEmpty ? "." : directory) + "/.tgsess-probe-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    let fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, fileMode)
    guard fd >= 0 else { return errno }
    close(fd)
    unlink(probe)
    return 0
  }

  /// Returns the heap's free pages to the system (glibc keeps them otherwise): called between
  /// the phases of a big run so that each phase's peak does not stack on the last one's.
  public static func releaseFreeMemory() {
    _ = tgsess_malloc_trim()
  }

  /// The directory part of `path`, as `NSString.deletingLastPathComponent` means it ("a/b" → "a",
  /// "/a" → "/", "a" → ""), computed on the UTF-8 bytes. Foundation's own traps on a one-character
  /// relative path ("a", "x/") in Swift 6.3: a manifest entry "i/x" crashed the archive reader
  /// (found by the archive-reader fuzz target).
  public static func parentDirectory(of path: String) -> String {
    let slash = UInt8(ascii: "/")
    var bytes = Array(path.utf8)
    while bytes.count > 1, bytes.last == slash { bytes.removeLast() }
    guard let index = bytes.lastIndex(of: slash) else { return "" }
    var end = index
    while end > 0, bytes[end - 1] == slash { end -= 1 }
    return end == 0 ? "/" : String(decoding: bytes[..<end], as: UTF8.self)
  }

  /// fsyncs the file at `path`.
  /// - Throws: `StoreError.io`.
  public static func fsyncFile(_ path: String) throws {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw StoreError.io(path: path, operation: "open", errno: errno) }
    defer { close(fd) }
    if fsync(fd) != 0 { throw StoreError.io(path: path, operation: "fsync", errno: errno) }
  }

  /// Starts writing `paths`' dirty pages to disk without waiting (sync_file_range(2),
  /// SYNC_FILE_RANGE_WRITE), so that the fsyncs that follow find their data on its way at once
  /// instead of starting it one file at a time. Only these files: a filesystem-wide flush
  /// (syncfs) would also write out gigabytes of staging scratch, and a bot committing to the same
  /// disk would wait behind it. Promises nothing by itself: durability comes from the fsyncs.
  /// A file that cannot be opened is skipped here; its fsync reports why.
  public static func startWriteback(_ paths: [String]) {
    for path in paths {
      let fd = open(path, O_RDONLY | O_CLOEXEC)
      guard fd >= 0 else { continue }
      _ = tgsess_start_writeback(fd)
      close(fd)
    }
  }

  /// fsyncs a directory.
  /// - Throws: `StoreError.io`.
  public static func fsyncDirectory(_ directory: String) throws {
    let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { throw StoreError.io(path: directory, operation: "open directory", errno: errno) }
    defer { close(fd) }
    if fsync(fd) != 0, errno != EINVAL { throw StoreError.io(path: directory, operation: "fsync", errno: errno) }
  }

  /// Moves a finished file into place atomically: fsync it, rename it over `destination` (same
  /// filesystem), fsync the directory. Across filesystems it is copied to a temporary beside
  /// `destination` first. A crash leaves either the old file or the new one.
  /// - Throws: `StoreError.io`.
  public static func moveDurably(from source: String, to destination: String) throws {
    let fd = open(source, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw StoreError.io(path: source, operation: "open", errno: errno) }
    let synced = fsync(fd) == 0
    let syncErrno = errno
    close(fd)
    if !synced { throw StoreError.io(path: source, operation: "fsync", errno: syncErrno) }
    if rename(source, destination) == 0 {
      try fsyncDirectory(of: destination)
      return
    }
    guard errno == EXDEV else { throw StoreError.io(path: destination, operation: "rename into place", errno: errno) }
    let data = try read(source)
    try writeAtomically(data, to: destination, mode: try mode(of: source))
  }

  /// Writes every byte of `bytes` to `fd`, retrying short writes and EINTR.
  /// - Throws: `StoreError.io` naming `path` (ENOSPC included).
  public static func writeAll(fd: Int32, bytes: UnsafeRawBufferPointer, path: String) throws {
    guard var pointer = bytes.baseAddress else { return }
    var remaining = bytes.count
    while remaining > 0 {
      let written = Glibc.write(fd, pointer, remaining)
      if written < 0 {
        if errno == EINTR { continue }
        throw StoreError.io(path: path, operation: "write", errno: errno)
      }
      remaining -= written
      pointer += written
    }
  }

  /// Refuses a secret-bearing file that group or others can read, with the chmod to run.
  /// - Throws: `StoreError.permissions`.
  public static func requirePrivate(_ path: String) throws {
    let mode = try self.mode(of: path)
    if mode & 0o077 != 0 {
      throw StoreError.permissions(
        path: path, reason: "mode \(String(mode, radix: 8)) lets group or others read a secret",
        fix: "chmod 600 \(path)")
    }
  }
}

/// Fault injection for crash tests: when `TGSESS_CRASH_POINT` names a point, the process is
/// killed with SIGKILL when it reaches it. Inert unless the variable is set.
public enum CrashPoint {
  private static let armed: String? = ProcessInfo.processInfo.environment["TGSESS_CRASH_POINT"]

  /// Kills the process if `name` is the armed crash point.
  public static func hit(_ name: String) throws {
    guard let armed, armed == name else { return }
    kill(getpid(), SIGKILL)
  }
}

extension FileSystem {
  /// Free bytes available to unprivileged writers on the filesystem holding `path`.
  public static func freeBytes(at path: String) -> Int64? {
    var info = statvfs()
    guard statvfs(path, &info) == 0 else { return nil }
    return Int64(info.f_bavail) * Int64(info.f_frsize)
  }
}

extension FileSystem {
  /// The names in the directory at `path` (without `.` and `..`); empty when nothing is there.
  ///
  /// Something at `path` that cannot be listed (a file, a dangling or looping symlink, a
  /// directory without read permission) is an error, never an empty directory: a caller that
  /// took it for one would report every file in it as missing.
  /// - Throws: `StoreError.io` with the reason the listing failed.
  public static func directoryNames(_ path: String) throws -> [String] {
    try directoryNames(path, limit: .max) { _ in true }
  }

  /// The first `limit` names in the directory at `path` that `include` accepts, in the order
  /// the directory returns them (not sorted): a sample that reads as few entries as it needs,
  /// however many the directory holds. Errors as `directoryNames(_:)`.
  /// - Throws: `StoreError.io` with the reason the listing failed.
  public static func directoryNames(_ path: String, limit: Int, where include: (String) -> Bool) throws -> [String] {
    guard let directory = opendir(path) else {
      let code = errno
      if code == ENOENT, !exists(path) { return [] }
      // ENOENT for a path that exists: a symlink whose target is gone.
      let operation = code == ENOENT ? "follow the symlink" : "list directory"
      throw StoreError.io(path: path, operation: operation, errno: code)
    }
    defer { closedir(directory) }
    var names: [String] = []
    while names.count < limit {
      errno = 0
      guard let entry = readdir(directory) else {
        if errno != 0 { throw StoreError.io(path: path, operation: "list directory", errno: errno) }
        return names
      }
      let name = entryName(entry)
      if name != ".", name != "..", include(name) { names.append(name) }
    }
    return names
  }
}

extension FileSystem {
  /// The name of an entry readdir(3) returned, read where it lies. Not `entry.pointee.d_name`:
  /// that copies a whole `dirent` (280 bytes), while readdir's record is only `d_reclen` long and
  /// may end at the end of its buffer, so the copy can read past it (a SIGSEGV in memcpy, seen
  /// once in the live-holder scan of /proc/<pid>/fd).
  public static func entryName(_ entry: UnsafeMutablePointer<dirent>) -> String {
    let offset = MemoryLayout<dirent>.offset(of: \dirent.d_name)!
    return String(cString: (UnsafeRawPointer(entry) + offset).assumingMemoryBound(to: CChar.self))
  }
}

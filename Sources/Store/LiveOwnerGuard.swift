import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// A process other than this one that holds a live SQLite file: it has the file (or its
/// `-journal`, `-wal`, `-shm`) open, or holds one of SQLite's locks on it.
public struct LiveFileHolder: Sendable, Equatable, CustomStringConvertible {
  /// How the process holds the file.
  public enum Hold: String, Sendable, Equatable {
    /// The file, or one of its sidecars, is among the process's open files.
    case open
    /// SQLite's RESERVED, PENDING or EXCLUSIVE lock (a write transaction, e.g. `BEGIN IMMEDIATE`),
    /// or in WAL mode the write lock in the `-shm` file.
    case writeLock
    /// SQLite's SHARED lock (a read transaction), or in WAL mode a connection's lock in `-shm`.
    case readLock
  }

  /// The process id; 0 when the lock's owner is in another pid namespace and cannot be named.
  public var pid: Int32
  /// The first 80 characters of `/proc/<pid>/cmdline` (never its environment).
  public var command: String
  /// The live file (for an open sidecar, the sidecar's path).
  public var path: String
  public var hold: Hold

  public init(pid: Int32, command: String, path: String, hold: Hold) {
    self.pid = pid
    self.command = command
    self.path = path
    self.hold = hold
  }

  public var description: String {
    let process = pid > 0 ? "pid \(pid) (\(command))" : "a process in another pid namespace"
    switch hold {
    case .open: return "\(process) has \(path) open"
    case .writeLock: return "\(process) holds an SQLite write lock on \(path)"
    case .readLock: return "\(process) holds an SQLite read lock on \(path)"
    }
  }
}

/// One sign that something owns a live file of the deployment now.
public enum LiveOwnerEvidence: Sendable, Equatable, CustomStringConvertible {
  /// The bot runner holds its lock file (the holder's line).
  case botRunner(lockPath: String, holder: String)
  /// The configured systemd unit of the bot is active.
  case systemdUnit(String)
  /// A rollback journal that no writer holds: a writer crashed mid-transaction.
  case hotJournal(String)
  /// A non-empty write-ahead log beside the file.
  case writeAheadLog(String)
  /// A process has the file open or holds an SQLite lock on it.
  case holder(LiveFileHolder)

  public var description: String {
    switch self {
    case .botRunner(let lockPath, let holder): return "the bot runner holds \(lockPath) (\(holder))"
    case .systemdUnit(let unit): return "systemd unit \(unit) is active"
    case .hotJournal(let journal): return "a hot journal \(journal) (a writer has the file open or crashed)"
    case .writeAheadLog(let wal): return "a non-empty write-ahead log \(wal)"
    case .holder(let holder): return holder.description
    }
  }
}

/// Tells whether the bot, or any other process, is using a deployment's live files. A Telegram
/// session used from two places is killed by Telegram (AUTH_KEY_DUPLICATED), and a process that
/// holds a file that a restore renames over keeps writing into the old, deleted file, so its
/// writes are lost; restores and recover's file replacements refuse while any of these holds.
public enum LiveOwnerGuard {
  /// The bot runner's lock file: it holds `flock` on it while it runs and writes its pid in it.
  public static func botLockPath(_ deployment: Deployment) -> String { deployment.root + "/.tgsess-bot.lock" }

  /// Every sign that the deployment is in use now, each naming how it is known.
  /// - Parameters:
  ///   - files: the live files a job writes (their `-journal`/`-wal` are checked).
  ///   - replacing: of those, the files that change; a process that has one of them (or its
  ///     sidecars) open, or holds an SQLite lock on it, is named with its pid and command.
  ///   - systemdUnit: the bot's unit, checked with `systemctl is-active` when configured.
  public static func evidence(
    _ deployment: Deployment, files: [String], replacing: [String], systemdUnit: String?
  ) -> [LiveOwnerEvidence] {
    var reasons: [LiveOwnerEvidence] = []
    let lockPath = botLockPath(deployment)
    if let holder = DeploymentLock.holder(path: lockPath) {
      reasons.append(.botRunner(lockPath: lockPath, holder: holder))
    }
    if let unit = systemdUnit, !unit.isEmpty, isUnitActive(unit) {
      reasons.append(.systemdUnit(unit))
    }
    for file in files {
      if SessionFileInspector.isHotJournal(file + "-journal") {
        reasons.append(.hotJournal(file + "-journal"))
      }
      if let size = try? FileSystem.size(of: file + "-wal"), size > 0 {
        reasons.append(.writeAheadLog(file + "-wal"))
      }
    }
    reasons += holders(of: replacing).map { .holder($0) }
    return reasons
  }

  /// Which processes (other than tgsess) have which of `files` (or their `-journal`, `-wal`,
  /// `-shm`) open, read from `/proc` once: a job that replaces many files one by one (recover
  /// --all) scans once and probes each file's locks fresh when it comes to it.
  public static func openFiles(_ files: [String]) -> OpenFileTable {
    var targets: [FileID: String] = [:]
    var fileOf: [String: String] = [:]
    for file in files {
      for path in [file] + LiveFiles.sidecarSuffixes.map({ file + $0 }) {
        if let id = FileID(path: path) {
          targets[id] = path
          fileOf[path] = file
        }
      }
    }
    var table = OpenFileTable()
    guard !targets.isEmpty else { return table }
    for (pid, path) in ProcessTable.openFiles(matching: targets)
    where pid != getpid() && !ProcessTable.isTgsess(pid) {
      table.holders[fileOf[path] ?? path, default: []].append(
        LiveFileHolder(pid: pid, command: ProcessTable.command(pid), path: path, hold: .open))
    }
    return table
  }

  /// The processes other than this one that hold any of `files`: every process whose open files
  /// (`/proc/<pid>/fd`, where readable) include a file or its `-journal`, `-wal` or `-shm`
  /// (compared by device and inode, so symlinks and bind mounts resolve), and every owner of an
  /// SQLite lock on a file (`fcntl(F_GETLK)` on SQLite's lock bytes, which sees owners in any
  /// user). Other tgsess processes (the same executable: a check or backup reading, a watch) are
  /// left out: they write live files only under the deployment lock, which the caller holds.
  /// Nothing is opened for writing and no lock is taken, so the files never change.
  /// - Parameter openFiles: the open files read earlier (`openFiles(_:)`), instead of a new scan.
  public static func holders(of files: [String], openFiles table: OpenFileTable? = nil) -> [LiveFileHolder] {
    guard !files.isEmpty else { return [] }
    var holders: [LiveFileHolder] = []
    // One entry per process and file: a lock says more than an open descriptor.
    var seen = Set<String>()
    func add(_ holder: LiveFileHolder, file: String) {
      guard holder.pid != getpid(), !ProcessTable.isTgsess(holder.pid) else { return }
      if seen.insert("\(holder.pid)|\(file)").inserted { holders.append(holder) }
    }
    // 1. Locks: who is inside a transaction now.
    for file in files {
      for owner in [SQLiteLockProbe.rollbackLockOwner(file), SQLiteLockProbe.walLockOwner(file)].compactMap({ $0 }) {
        add(
          LiveFileHolder(
            pid: owner.pid, command: ProcessTable.command(owner.pid), path: file,
            hold: owner.isWrite ? .writeLock : .readLock),
          file: file)
      }
    }
    // 2. Open files: who keeps the file open between transactions (Telethon does).
    let table = table ?? openFiles(files)
    for file in files {
      for holder in table.holders[file] ?? [] { add(holder, file: file) }
    }
    return holders
  }

  private static func isUnitActive(_ unit: String) -> Bool {
    guard
      FileManager.default.isExecutableFile(atPath: "/usr/bin/systemctl")
        || FileManager.default.isExecutableFile(atPath: "/bin/systemctl")
    else { return false }
    let process = Process()
    process.executableURL = URL(
      fileURLWithPath: FileManager.default.isExecutableFile(atPath: "/usr/bin/systemctl")
        ? "/usr/bin/systemctl" : "/bin/systemctl")
    process.arguments = ["is-active", "--quiet", unit]
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    do { try process.run() } catch { return false }
    process.waitUntilExit()
    return process.terminationStatus == 0
  }
}

/// The processes that had live files open when `LiveOwnerGuard.openFiles` looked, by file.
public struct OpenFileTable: Sendable {
  var holders: [String: [LiveFileHolder]] = [:]
}

/// A file's identity: device and inode.
struct FileID: Hashable {
  var device: UInt64
  var inode: UInt64

  /// The identity of what `path` names (following symlinks); nil when nothing is there.
  init?(path: String) {
    var info = stat()
    guard stat(path, &info) == 0 else { return nil }
    device = UInt64(info.st_dev)
    inode = UInt64(info.st_ino)
  }
}

/// Reads `/proc`: other processes' open files and command lines.
enum ProcessTable {
  /// The processes (pid and the matched path) with an open descriptor on one of `targets`.
  /// Processes whose descriptors cannot be read (another user's, without privilege) are skipped.
  static func openFiles(matching targets: [FileID: String]) -> [(Int32, String)] {
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
    var found: [(Int32, String)] = []
    var buffer = [CChar](repeating: 0, count: 4096)
    for name in names {
      guard let pid = Int32(name), pid != getpid() else { continue }
      let directory = "/proc/\(pid)/fd"
      guard let handle = opendir(directory) else { continue }
      defer { closedir(handle) }
      var matched = Set<String>()
      while let entry = readdir(handle) {
        let fdName = FileSystem.entryName(entry)
        guard fdName != ".", fdName != ".." else { continue }
        let link = directory + "/" + fdName
        // Sockets, pipes and anonymous inodes are not paths: skip them before the stat.
        let count = readlink(link, &buffer, buffer.count - 1)
        guard count > 0, buffer[0] == 0x2f else { continue }
        guard let id = FileID(path: link), let path = targets[id] else { continue }
        if matched.insert(path).inserted { found.append((pid, path)) }
      }
    }
    return found
  }

  /// The first 80 characters of a process's command line, arguments joined by spaces, control
  /// characters replaced; never its environment.
  static func command(_ pid: Int32) -> String {
    guard pid > 0, let data = try? FileSystem.read("/proc/\(pid)/cmdline"), !data.isEmpty else {
      return "command line not readable"
    }
    let words = data.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
    let text = words.joined(separator: " ").trimmingCharacters(in: .whitespaces)
    let printable = String(text.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7f ? " " : Character($0) })
    return printable.count > 80 ? String(printable.prefix(80)) + "…" : printable
  }

  /// This process's executable, resolved.
  static let ownExecutable: String? = executable(getpid())

  static func executable(_ pid: Int32) -> String? {
    var buffer = [CChar](repeating: 0, count: 4096)
    let count = readlink("/proc/\(pid)/exe", &buffer, buffer.count - 1)
    guard count > 0 else { return nil }
    return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
  }

  /// Whether `pid` runs tgsess: this process's executable, or `tgsess`/`tgsess-bot` installed
  /// beside it (a check, backup or watch reading the file, or the bot runner's own job).
  static func isTgsess(_ pid: Int32) -> Bool {
    guard pid > 0, let own = ownExecutable, let other = executable(pid) else { return false }
    if other == own { return true }
    let directory = FileSystem.parentDirectory(of: own)
    return ["tgsess", "tgsess-bot"].contains { directory + "/" + $0 == other }
  }
}

/// Asks the kernel who holds SQLite's locks on a file, without taking any (`F_GETLK` only
/// reports; the descriptors are opened read-only and closed).
enum SQLiteLockProbe {
  /// SQLite's lock bytes in the database file (os_unix.c): PENDING, RESERVED, then 510 SHARED bytes.
  static let pendingByte: Int = 0x4000_0000
  static let reservedByte: Int = 0x4000_0001
  static let sharedFirst: Int = 0x4000_0002
  static let sharedSize: Int = 510
  /// The lock bytes in a WAL database's `-shm`: 8 locks from offset 120 (WRITE, CHECKPOINT,
  /// RECOVER, READ0…4), then the DMS byte every open connection holds shared.
  static let shmLockOffset: Int = 120
  static let shmWriteLock: Int = 120
  static let shmLockCount: Int = 9

  /// The owner of a rollback-mode lock on `path`: a write lock (RESERVED, PENDING, EXCLUSIVE)
  /// before a read lock (SHARED).
  static func rollbackLockOwner(_ path: String) -> (pid: Int32, isWrite: Bool)? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    if let owner = conflictingLock(fd: fd, start: pendingByte, length: 2) { return (owner.pid, true) }
    guard let owner = conflictingLock(fd: fd, start: sharedFirst, length: sharedSize) else { return nil }
    // SQLite's EXCLUSIVE lock is a write lock over the whole shared range.
    return (owner.pid, owner.isWrite)
  }

  /// The owner of a lock in `path-shm` (WAL mode): the write lock first, then any other.
  static func walLockOwner(_ path: String) -> (pid: Int32, isWrite: Bool)? {
    let fd = open(path + "-shm", O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    if let owner = conflictingLock(fd: fd, start: shmWriteLock, length: 1) { return (owner.pid, true) }
    guard let owner = conflictingLock(fd: fd, start: shmLockOffset, length: shmLockCount) else { return nil }
    return (owner.pid, false)
  }

  /// The first lock another process holds that a write lock on the range would conflict with.
  static func conflictingLock(fd: Int32, start: Int, length: Int) -> (pid: Int32, isWrite: Bool)? {
    var lock = flock()
    lock.l_type = Int16(F_WRLCK)
    lock.l_whence = Int16(SEEK_SET)
    lock.l_start = off_t(start)
    lock.l_len = off_t(length)
    guard fcntl(fd, F_GETLK, &lock) == 0, lock.l_type != Int16(F_UNLCK) else { return nil }
    return (lock.l_pid, lock.l_type == Int16(F_WRLCK))
  }
}

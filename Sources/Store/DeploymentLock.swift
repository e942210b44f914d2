import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// The one `flock(2)` lock per deployment. Mutating jobs (backup, prune, restore, migrate,
/// recover, and the bot's mutations) hold it; the file records the holder's pid and command so
/// a second run can name it. The kernel drops the lock when the holder dies, so a crash never
/// leaves a stale lock.
public final class DeploymentLock: @unchecked Sendable {
  public let path: String
  private var fd: Int32
  /// Whether this handle is a nested acquisition inside a job that already holds the lock.
  private let isNested: Bool
  private var isReleasedNested = false

  /// Locks this process holds, by path, with their nesting depth: a job that holds the lock
  /// can call another job (restore takes an undo backup, recover a post-recovery backup)
  /// without deadlocking on its own flock.
  nonisolated(unsafe) private static var held: [String: Int] = [:]
  private static let heldLock = NSLock()

  private init(path: String, fd: Int32, isNested: Bool) {
    self.path = path
    self.fd = fd
    self.isNested = isNested
  }

  /// Takes the lock, waiting up to `wait` seconds.
  /// - Throws: `StoreError.locked` naming the holder when it is still held after `wait`;
  ///   `StoreError.io` when the lock file cannot be opened.
  public static func acquire(path: String, command: String, wait: TimeInterval = 0) throws -> DeploymentLock {
    let key = (path as NSString).standardizingPath
    let isNested = heldLock.withLock {
      guard let depth = held[key] else { return false }
      held[key] = depth + 1
      return true
    }
    if isNested { return DeploymentLock(path: path, fd: -1, isNested: true) }
    let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, FileSystem.fileMode)
    guard fd >= 0 else { throw StoreError.io(path: path, operation: "open lock file", errno: errno) }
    let deadline = Date().addingTimeInterval(wait)
    while flock(fd, LOCK_EX | LOCK_NB) != 0 {
      let code = errno
      guard code == EWOULDBLOCK || code == EINTR else {
        close(fd)
        throw StoreError.io(path: path, operation: "flock", errno: code)
      }
      if Date() >= deadline {
        // An empty record means the holder is between taking the lock and writing its line, or
        // between truncating it and letting go: look again briefly, so the error names it (or,
        // if it let go, take the lock).
        var holder = describeHolder(fd: fd)
        var isFree = false
        for _ in 0..<40 where holder == nil {
          usleep(5_000)
          if flock(fd, LOCK_EX | LOCK_NB) == 0 {
            isFree = true
            break
          }
          holder = describeHolder(fd: fd)
        }
        if isFree { break }
        close(fd)
        throw StoreError.locked(path: path, holder: holder ?? "another tgsess process")
      }
      usleep(50_000)
    }
    // Record who holds it; readers see this only while we hold the lock.
    let record = "pid=\(getpid()) command=\(command) since=\(ISO8601DateFormatter().string(from: Date()))\n"
    _ = ftruncate(fd, 0)
    _ = record.withCString { pwrite(fd, $0, strlen($0), 0) }
    heldLock.withLock { held[key] = 1 }
    return DeploymentLock(path: path, fd: fd, isNested: false)
  }

  /// Reads who holds the lock at `path` without taking it; nil when nobody does.
  public static func holder(path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    if flock(fd, LOCK_SH | LOCK_NB) == 0 {
      flock(fd, LOCK_UN)
      return nil
    }
    return describeHolder(fd: fd) ?? "another tgsess process"
  }

  /// The holder's line, or nil while the file holds none (a holder taking or releasing the lock).
  private static func describeHolder(fd: Int32) -> String? {
    var buffer = [UInt8](repeating: 0, count: 512)
    let count = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
    let text = count > 0 ? String(decoding: buffer[0..<count], as: UTF8.self) : ""
    // Only a whole line: the holder writes it with one pwrite after truncating.
    guard text.hasSuffix("\n"), let line = text.split(separator: "\n").first, !line.isEmpty else { return nil }
    return String(line)
  }

  /// Releases the lock (also done on deinit and, by the kernel, on exit).
  public func release() {
    let key = (path as NSString).standardizingPath
    if isNested {
      guard !isReleasedNested else { return }
      isReleasedNested = true
      DeploymentLock.heldLock.withLock {
        if let depth = DeploymentLock.held[key], depth > 1 { DeploymentLock.held[key] = depth - 1 }
      }
      return
    }
    guard fd >= 0 else { return }
    DeploymentLock.heldLock.withLock { DeploymentLock.held[key] = nil }
    _ = ftruncate(fd, 0)
    flock(fd, LOCK_UN)
    close(fd)
    fd = -1
  }

  deinit { release() }
}

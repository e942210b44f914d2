import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// One inotify event, decoded from the kernel's `struct inotify_event`.
public struct InotifyEvent: Sendable, Equatable {
  /// The watch descriptor the event belongs to (-1 for a queue overflow).
  public var watch: Int32
  /// The raw `IN_*` mask.
  public var mask: UInt32
  /// The name of the entry inside the watched directory; empty for an event on the directory itself.
  public var name: String

  public init(watch: Int32, mask: UInt32, name: String) {
    self.watch = watch
    self.mask = mask
    self.name = name
  }

  /// The kernel dropped events: its queue (`fs.inotify.max_queued_events`) was full.
  public var isOverflow: Bool { mask & UInt32(IN_Q_OVERFLOW) != 0 }
  /// The watched directory itself is gone, moved, unmounted, or its watch was removed.
  public var isWatchLost: Bool {
    mask & UInt32(IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED | IN_UNMOUNT) != 0
  }
  /// The event is about a subdirectory, not a file.
  public var isDirectory: Bool { mask & UInt32(IN_ISDIR) != 0 }
  /// The entry was removed or moved away.
  public var isRemoval: Bool { mask & UInt32(IN_DELETE | IN_MOVED_FROM) != 0 }

  /// The event kinds in words (`create,close_write`), for logs.
  public var kinds: String {
    let names: [(Int32, String)] = [
      (IN_CREATE, "create"), (IN_CLOSE_WRITE, "close_write"), (IN_MOVED_TO, "moved_to"), (IN_MOVED_FROM, "moved_from"),
      (IN_DELETE, "delete"), (IN_ATTRIB, "attrib"), (IN_MODIFY, "modify"), (IN_DELETE_SELF, "delete_self"),
      (IN_MOVE_SELF, "move_self"), (IN_IGNORED, "ignored"), (IN_UNMOUNT, "unmount"), (IN_Q_OVERFLOW, "overflow"),
    ]
    return names.filter { mask & UInt32($0.0) != 0 }.map(\.1).joined(separator: ",")
  }
}

/// An inotify instance (Linux `inotify(7)`) that owns its descriptor: watches directories for
/// entries created, written and closed, moved in or out, deleted, modified or re-permissioned,
/// and for the loss of the directory itself. Reads never block; `wait` polls the descriptor
/// together with a `WakePipe`.
public final class Inotify: @unchecked Sendable {
  /// What `watch(directory:)` asks the kernel for.
  public static let directoryMask = UInt32(
    IN_CREATE | IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_ATTRIB | IN_MODIFY | IN_DELETE_SELF
      | IN_MOVE_SELF | IN_ONLYDIR)

  private var fd: Int32
  /// The directories watched, by watch descriptor.
  public private(set) var directories: [Int32: String] = [:]

  /// Creates an inotify instance.
  /// - Throws: `StoreError.io` (for example `EMFILE` when `fs.inotify.max_user_instances` is reached).
  public init() throws {
    fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
    guard fd >= 0 else { throw StoreError.io(path: "inotify", operation: "inotify_init1", errno: errno) }
  }

  deinit { close() }

  /// Closes the descriptor (also done on deinit).
  public func close() {
    guard fd >= 0 else { return }
    Glibc.close(fd)
    fd = -1
  }

  /// Watches `directory`; returns its watch descriptor (the same one again for a directory
  /// already watched).
  /// - Throws: `StoreError.io` naming the directory (missing, not a directory, `ENOSPC` when
  ///   `fs.inotify.max_user_watches` is reached).
  @discardableResult
  public func watch(directory: String) throws -> Int32 {
    let wd = inotify_add_watch(fd, directory, Self.directoryMask)
    guard wd >= 0 else { throw StoreError.io(path: directory, operation: "inotify_add_watch", errno: errno) }
    directories[wd] = directory
    return wd
  }

  /// What ended a `wait`.
  public enum Wakeup: Sendable, Equatable {
    /// Events are ready to `read`.
    case events
    /// The wake pipe was written to.
    case woken
    /// The timeout passed.
    case timeout
  }

  /// Waits until events arrive, `wake` is written to, or `timeoutMS` passes (nil: no timeout).
  /// - Throws: `StoreError.io` when poll fails.
  public func wait(timeoutMS: Int?, wake: WakePipe?) throws -> Wakeup {
    var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0)]
    if let wake { fds.append(pollfd(fd: wake.readFD, events: Int16(POLLIN), revents: 0)) }
    let timeout = timeoutMS.map { Int32(clamping: max(0, $0)) } ?? -1
    while true {
      let count = poll(&fds, nfds_t(fds.count), timeout)
      if count < 0 {
        if errno == EINTR { continue }
        throw StoreError.io(path: "inotify", operation: "poll", errno: errno)
      }
      if count == 0 { return .timeout }
      if fds[0].revents != 0 { return .events }
      wake?.drain()
      return .woken
    }
  }

  /// Reads every event queued now (none when the queue is empty).
  /// - Throws: `StoreError.io` when read fails.
  public func read() throws -> [InotifyEvent] {
    var events: [InotifyEvent] = []
    // Room for many events: each is 16 bytes plus its NUL-padded name.
    var buffer = [UInt8](repeating: 0, count: 64 * 1024)
    while true {
      let count = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
      if count < 0 {
        if errno == EINTR { continue }
        if errno == EAGAIN || errno == EWOULDBLOCK { return events }
        throw StoreError.io(path: "inotify", operation: "read", errno: errno)
      }
      if count == 0 { return events }
      buffer.withUnsafeBytes { raw in
        var offset = 0
        while offset + 16 <= count {
          let wd = raw.loadUnaligned(fromByteOffset: offset, as: Int32.self)
          let mask = raw.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self)
          let length = Int(raw.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self))
          let nameBytes = raw[(offset + 16)..<min(offset + 16 + length, count)]
          let name = String(decoding: nameBytes.prefix { $0 != 0 }, as: UTF8.self)
          events.append(InotifyEvent(watch: wd, mask: mask, name: name))
          offset += 16 + length
        }
      }
      if count < buffer.count / 2 { return events }
    }
  }
}

/// A self-pipe that wakes an `Inotify.wait` from another thread or a signal handler's queue.
public final class WakePipe: @unchecked Sendable {
  let readFD: Int32
  private let writeFD: Int32

  /// - Throws: `StoreError.io` when the pipe cannot be made.
  public init() throws {
    var fds: [Int32] = [-1, -1]
    guard pipe(&fds) == 0 else { throw StoreError.io(path: "pipe", operation: "pipe", errno: errno) }
    // (pipe2 is not visible to Swift without _GNU_SOURCE.)
    for fd in fds {
      _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
      _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
    }
    readFD = fds[0]
    writeFD = fds[1]
  }

  deinit {
    Glibc.close(readFD)
    Glibc.close(writeFD)
  }

  /// Wakes the waiter (a full pipe already holds a wake-up, so a failed write is fine).
  public func wake() {
    var byte: UInt8 = 1
    _ = Glibc.write(writeFD, &byte, 1)
  }

  /// Empties the pipe.
  func drain() {
    var buffer = [UInt8](repeating: 0, count: 64)
    while buffer.withUnsafeMutableBytes({ Glibc.read(readFD, $0.baseAddress, $0.count) }) > 0 {}
  }
}

/// A stop request for a long-running loop: set from a signal (SIGTERM, SIGINT), another thread or
/// a test, it wakes the loop's `WakePipe` so the loop notices at once.
public final class StopRequest: @unchecked Sendable {
  private let lock = NSLock()
  private var signalName: String?
  private var sources: [DispatchSourceSignal] = []
  /// The pipe a loop waits on.
  public let wake: WakePipe

  /// - Throws: `StoreError.io` when the wake pipe cannot be made.
  public init() throws {
    wake = try WakePipe()
  }

  /// Whether a stop was requested.
  public var isRequested: Bool { lock.withLock { signalName != nil } }
  /// What asked for the stop (`SIGTERM`, `request`).
  public var reason: String? { lock.withLock { signalName } }

  /// Asks the loop to stop.
  public func request(_ reason: String = "request") {
    lock.withLock { if signalName == nil { signalName = reason } }
    wake.wake()
  }

  /// Turns SIGTERM and SIGINT into stop requests (their default actions are disabled while this
  /// object lives).
  public func trapTerminationSignals() {
    for (number, name) in [(SIGTERM, "SIGTERM"), (SIGINT, "SIGINT")] {
      signal(number, SIG_IGN)
      let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
      source.setEventHandler { [weak self] in self?.request(name) }
      source.resume()
      lock.withLock { sources.append(source) }
    }
  }

  deinit {
    for source in sources { source.cancel() }
  }
}

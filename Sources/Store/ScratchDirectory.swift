import Foundation

/// A private working directory (mode 0700) that tgsess removes when it is done: the drill's
/// copy of a deployment, curl's configuration, a remote's catalog. Created with `mkdtemp(3)`, so
/// its name is new and nobody else's.
public final class ScratchDirectory: @unchecked Sendable {
  public let path: String
  private var isKept = false
  private let lock = NSLock()

  /// Creates `<parent>/<prefix>-XXXXXX` (parent: the system's temporary directory, or
  /// `TMPDIR`), creating `parent` first when it is missing.
  /// - Throws: `StoreError.io` naming the directory that could not be created.
  public init(prefix: String, in parent: String? = nil) throws {
    let base = parent ?? Self.systemTemporaryDirectory
    try FileSystem.makeDirectory(base)
    var template = Array((base + "/" + prefix + "-XXXXXX").utf8CString)
    guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
      throw StoreError.io(path: base + "/" + prefix + "-XXXXXX", operation: "create directory", errno: errno)
    }
    path = String(cString: made)
  }

  /// The system's directory for temporary files, without a trailing slash.
  public static var systemTemporaryDirectory: String {
    var directory = NSTemporaryDirectory()
    while directory.count > 1, directory.hasSuffix("/") { directory.removeLast() }
    return directory
  }

  /// `path/relative`.
  public func file(_ relative: String) -> String { path + "/" + relative }

  /// Keeps the directory: `remove()` and the deinitializer then leave it alone.
  public func keep() {
    lock.lock()
    defer { lock.unlock() }
    isKept = true
  }

  /// Removes the directory and everything in it (unless kept).
  public func remove() {
    lock.lock()
    defer { lock.unlock() }
    guard !isKept else { return }
    FileSystem.removeTree(path)
    isKept = true
  }

  deinit { remove() }
}

extension FileSystem {
  /// Removes `path` and everything below it; a missing path is not an error. Only for trees
  /// tgsess made itself (staging, scratch directories, caches).
  public static func removeTree(_ path: String) {
    guard exists(path) else { return }
    try? FileManager.default.removeItem(atPath: path)
  }

  /// Removes the directory at `path` if it is empty.
  /// - Returns: whether it was removed.
  @discardableResult
  public static func removeEmptyDirectory(_ path: String) -> Bool {
    rmdir(path) == 0
  }

  /// The process's current directory.
  public static var currentDirectory: String { FileManager.default.currentDirectoryPath }

  /// Creates `path` and its missing parents (as `makeDirectory`), and returns the directories it
  /// created, outermost first, so that a caller can remove them again (`removeCreatedDirectories`).
  /// - Throws: `StoreError.io` naming the directory that could not be created.
  public static func makeDirectoryTracking(_ path: String) throws -> [String] {
    var missing: [String] = []
    var current = path
    while !current.isEmpty, current != "/", !isDirectory(current) {
      missing.insert(current, at: 0)
      current = parentDirectory(of: current)
    }
    try makeDirectory(path)
    return missing
  }

  /// Removes the directories `makeDirectoryTracking` created, innermost first, as far as they are
  /// empty: anything another process put there meanwhile stays.
  public static func removeCreatedDirectories(_ created: [String]) {
    for directory in created.reversed() where !removeEmptyDirectory(directory) { return }
  }
}

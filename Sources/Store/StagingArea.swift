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
    if mkdir(path, FileSystem.directoryMode) != 0 {
      throw StoreError.io(path: path, operation: "create staging directory", errno: errno)
    }
    chmod(path, FileSystem.directoryMode)
  }

  /// `path/relative`, creating the parent directories.
  /// - Throws: `StoreError.io`.
  public func file(_ relative: String) throws -> String {
    let full = path + "/" + relative
    try FileSystem.makeDirectory((full as NSString).deletingLastPathComponent)
    return full
  }

  /// Removes the directory and everything in it.
  public func remove() {
    try? FileManager.default.removeItem(atPath: path)
  }

  deinit { remove() }

  /// Removes staging directories under `parent` whose process is gone.
  public static func removeStale(in parent: String) {
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: parent) else { return }
    for name in names where name.hasPrefix(".staging-") {
      let pidText = name.dropFirst(".staging-".count).split(separator: "-").first ?? ""
      if let pid = Int32(pidText), pid == getpid() || kill(pid, 0) == 0 { continue }
      try? FileManager.default.removeItem(atPath: parent + "/" + name)
    }
  }
}

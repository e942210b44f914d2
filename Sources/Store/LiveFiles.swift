import Foundation

/// The mechanisms that change a deployment's live SQLite files (session files and the database):
/// installing restored files by rename, moving a broken file aside, and clearing the sidecars
/// (`-journal`, `-wal`, `-shm`) that belong to the file being replaced. One of each: restore and
/// recover both go through here.
public enum LiveFiles {
  /// The files SQLite keeps beside a database, which belong to that file's content alone.
  public static let sidecarSuffixes = ["-journal", "-wal", "-shm"]

  /// One file to install: a finished file (on any filesystem) and where it goes.
  public struct Installation: Sendable, Equatable {
    public var source: String
    public var destination: String

    public init(source: String, destination: String) {
      self.source = source
      self.destination = destination
    }
  }

  /// Installs finished files by rename. The sources are fsynced together first (on a few
  /// threads, so the filesystem can commit them in one journal transaction), then each
  /// destination's stale sidecars are removed (they would be applied to, and corrupt, the new
  /// file) and the source renamed over it (copied durably when it is on another filesystem),
  /// then each directory is fsynced once. After a crash every file is wholly old or wholly new,
  /// as with one fsync-rename-fsync per file. Only call once the live-owner guard has passed.
  /// - Parameter afterEach: called after each file is in place (a crash point).
  /// - Throws: `StoreError.io` naming the file that could not be installed; the files before it
  ///   are installed, the ones after it untouched.
  public static func install(_ files: [Installation], afterEach: (String) throws -> Void = { _ in }) throws {
    _ = try Parallel.map(count: files.count, workers: 8) { index in try FileSystem.fsyncFile(files[index].source) }
    var directories: [String] = []
    for file in files {
      removeSidecars(of: file.destination)
      if rename(file.source, file.destination) != 0 {
        let code = errno
        guard code == EXDEV else {
          throw StoreError.io(path: file.destination, operation: "rename into place", errno: code)
        }
        try FileSystem.moveDurably(from: file.source, to: file.destination)
      }
      let directory = FileSystem.parentDirectory(of: file.destination)
      if !directories.contains(directory) { directories.append(directory) }
      try afterEach(file.destination)
    }
    for directory in directories { try FileSystem.fsyncDirectory(directory.isEmpty ? "." : directory) }
  }

  /// Moves the file at `path` and its sidecars aside to `<path>.<label>-<time>` (with
  /// `-2`, `-3`, … when a copy moved aside within the same second is there), never replacing
  /// anything and never deleting. The moves are renames in the same directory.
  /// - Returns: the new path of the file, or nil when there was nothing at `path`.
  /// - Throws: `StoreError.io` naming the file that could not be moved.
  @discardableResult
  public static func moveAside(_ path: String, label: String = "broken", at date: Date = Date()) throws -> String? {
    let present = ([""] + sidecarSuffixes).filter { FileSystem.exists(path + $0) }
    guard !present.isEmpty else { return nil }
    // A name no earlier copy has: rename(2) would silently replace one moved aside within the
    // same second (a second recover of the same user).
    let stamp = path + "." + label + "-" + Timestamp.compact(date)
    var aside = stamp
    var attempt = 1
    while ([""] + sidecarSuffixes).contains(where: { FileSystem.exists(aside + $0) }) {
      attempt += 1
      aside = stamp + "-\(attempt)"
    }
    for suffix in present where rename(path + suffix, aside + suffix) != 0 {
      throw StoreError.io(path: path + suffix, operation: "move aside", errno: errno)
    }
    try FileSystem.fsyncDirectory(of: path)
    return aside
  }

  /// Removes the sidecars of `file`, which would otherwise be applied to (and corrupt) a file
  /// put in its place. Only call once the live-owner guard has passed.
  /// - Returns: the sidecars removed.
  @discardableResult
  public static func removeSidecars(of file: String) -> [String] {
    var removed: [String] = []
    for suffix in sidecarSuffixes where FileSystem.exists(file + suffix) {
      if unlink(file + suffix) == 0 { removed.append(file + suffix) }
    }
    return removed
  }
}

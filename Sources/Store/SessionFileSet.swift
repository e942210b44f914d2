import Foundation

#if canImport(Glibc)
  import Glibc
#endif

extension Deployment {
  /// What follows a session file's name for each file of one live session: the file itself,
  /// SQLite's sidecars (`-journal`, `-wal`, `-shm`) and the seed's `.session.backup` copy.
  public static let sessionFileSuffixes = ["", "-journal", "-wal", "-shm", ".backup"]

  /// The files of `userID`'s live session that exist now, the session file first.
  public func existingSessionFiles(userID: Int64) -> [String] {
    let path = sessionPath(userID: userID)
    return Self.sessionFileSuffixes.map { path + $0 }.filter(FileSystem.exists)
  }

  /// Removes files of live sessions (what `existingSessionFiles(userID:)` listed) and fsyncs
  /// their directories, so the removal survives a crash. A file that is already gone counts as
  /// removed, so a repeated call finishes what an interrupted one began.
  /// - Throws: `StoreError.io` naming the first file that could not be removed, or the directory
  ///   that could not be synced; the files before it are gone.
  public func removeSessionFiles(_ paths: [String]) throws {
    var directories: [String] = []
    for path in paths {
      if unlink(path) != 0, errno != ENOENT {
        throw StoreError.io(path: path, operation: "remove session file", errno: errno)
      }
      let directory = FileSystem.parentDirectory(of: path)
      if !directories.contains(directory) { directories.append(directory) }
    }
    for directory in directories { try FileSystem.fsyncDirectory(directory.isEmpty ? "." : directory) }
  }
}

extension Deployment {
  /// Where `handover` moves a user's session files aside: `sessions/handed-over/<time>/`, out of
  /// the `user_<id>.session` names the bot, recover and watch look for.
  public func handedOverDirectory(stamp: String) -> String { sessionsDirectory + "/handed-over/" + stamp }

  /// Moves session files (what `existingSessionFiles(userID:)` listed) into `directory`, each
  /// renamed durably (fsync, rename, fsync the directory), the session file first. A file already
  /// gone counts as moved.
  /// - Returns: the new paths.
  /// - Throws: `StoreError.io` naming the first file that could not be moved; those before it moved.
  public func moveSessionFilesAside(_ paths: [String], into directory: String) throws -> [String] {
    try FileSystem.makeDirectory(directory)
    var moved: [String] = []
    for path in paths where FileSystem.exists(path) {
      let destination = directory + "/" + (path as NSString).lastPathComponent
      try FileSystem.moveDurably(from: path, to: destination)
      moved.append(destination)
    }
    try FileSystem.fsyncDirectory(sessionsDirectory)
    return moved
  }
}

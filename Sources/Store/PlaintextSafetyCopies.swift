import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// A plaintext copy of the bot database that `tgsess init` or `migrate` of an earlier version left behind:
/// `backups/pre-migrate/telegram_bot.db.pre-migrate-<stamp>`, a raw SQLite file holding every
/// secret the database held then (plaintext session strings and api_hash in a legacy database).
public struct PlaintextSafetyCopy: Sendable, Equatable {
  public var path: String
  /// When it was taken: the stamp in its name, else its modification time.
  public var createdAt: Date
}

/// Finds and removes the plaintext safety copies earlier versions left; `migrate` turns each
/// into an encrypted archive first.
public enum PlaintextSafetyCopies {
  /// The directory earlier versions wrote them to.
  public static func directory(_ deployment: Deployment) -> String { deployment.backupsDirectory + "/pre-migrate" }

  /// The copies under `backups/pre-migrate/`, oldest first (temporaries and sidecars aside).
  /// - Throws: `StoreError.io` when the directory exists but cannot be read.
  public static func find(_ deployment: Deployment) throws -> [PlaintextSafetyCopy] {
    let directory = directory(deployment)
    guard FileSystem.isDirectory(directory) else { return [] }
    let prefix = (deployment.databasePath as NSString).lastPathComponent + ".pre-migrate-"
    var copies: [PlaintextSafetyCopy] = []
    for name in try FileSystem.directoryNames(directory).sorted()
    where name.hasPrefix(prefix) && !FileSystem.isTemporaryName(name)
      && !LiveFiles.sidecarSuffixes.contains(where: name.hasSuffix)
    {
      let path = directory + "/" + name
      var info = stat()
      guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { continue }
      let stamp = String(name.dropFirst(prefix.count))
      let modified = Date(timeIntervalSince1970: TimeInterval(info.st_mtim.tv_sec))
      copies.append(PlaintextSafetyCopy(path: path, createdAt: Timestamp.parseCompact(stamp) ?? modified))
    }
    return copies
  }

  /// The directory where a restore of an earlier version kept raw copies of the live files it
  /// replaced when they were too damaged to archive (`<time>/sessions__user_<id>.session`, ...).
  public static func beforeRestoreDirectory(_ deployment: Deployment) -> String {
    deployment.backupsDirectory + "/before-restore"
  }

  /// The raw copy directories under `backups/before-restore/`, sorted (the directory itself when
  /// files sit in it directly): plaintext session files or databases that nothing encrypts,
  /// lists or prunes, left for the operator to restore by hand or remove.
  /// - Throws: `StoreError.io` when the directory exists but cannot be read.
  public static func findBeforeRestoreCopies(_ deployment: Deployment) throws -> [String] {
    let directory = beforeRestoreDirectory(deployment)
    guard FileSystem.isDirectory(directory) else { return [] }
    var found: [String] = []
    var hasLooseFiles = false
    for name in try FileSystem.directoryNames(directory).sorted() {
      let path = directory + "/" + name
      if FileSystem.isDirectory(path) { found.append(path) } else { hasLooseFiles = true }
    }
    return hasLooseFiles ? [directory] + found : found
  }

  /// Removes a copy (and a sidecar SQLite may have left beside it) once an archive holds it,
  /// then the directory if nothing else is in it.
  /// - Throws: `StoreError.io` naming the file that could not be removed.
  public static func remove(_ copy: PlaintextSafetyCopy) throws {
    for path in [copy.path] + LiveFiles.sidecarSuffixes.map({ copy.path + $0 }) where FileSystem.exists(path) {
      if unlink(path) != 0 { throw StoreError.io(path: path, operation: "remove", errno: errno) }
    }
    let directory = FileSystem.parentDirectory(of: copy.path)
    try FileSystem.fsyncDirectory(directory)
    FileSystem.removeEmptyDirectory(directory)
  }
}

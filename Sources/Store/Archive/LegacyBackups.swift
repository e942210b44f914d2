import Foundation
import GRDB

/// One backup copy the seed's bot made before tgsess: `data/telegram_bot.db.backup_<stamp>` or
/// `sessions/user_<id>.session.backup`.
public struct LegacyBackupFile: Sendable, Equatable {
  /// Where it is.
  public var path: String
  /// Its path inside an archive (`data/telegram_bot.db.backup_…`, `sessions/user_42.session.backup`).
  public var archivePath: String
  /// The user of a `.session.backup`; nil for a database copy.
  public var userID: Int64?
  /// When the copy was made: the stamp in its name, else its modification time.
  public var createdAt: Date
}

/// Finds the seed's legacy backup files, and remembers in the bot database which were imported.
public enum LegacyBackups {
  /// The legacy backup files of `deployment`, database copies first, then session copies by user.
  /// - Throws: `StoreError.io` when a directory cannot be read (a missing one holds nothing).
  public static func find(_ deployment: Deployment) throws -> [LegacyBackupFile] {
    var files: [LegacyBackupFile] = []
    let dataDirectory = FileSystem.parentDirectory(of: deployment.databasePath)
    let prefix = (deployment.databasePath as NSString).lastPathComponent + ".backup_"
    for name in try ArchiveRepository.names(in: dataDirectory).sorted()
    where name.hasPrefix(prefix) && !["-journal", "-wal", "-shm"].contains(where: name.hasSuffix) {
      let path = dataDirectory + "/" + name
      guard isRegularFile(path) else { continue }
      let stamp = String(name.dropFirst(prefix.count))
      files.append(
        LegacyBackupFile(
          path: path, archivePath: "data/" + name, userID: nil,
          createdAt: try parseStamp(stamp) ?? modificationDate(of: path)))
    }
    var sessions: [(Int64, String)] = []
    for name in try ArchiveRepository.names(in: deployment.sessionsDirectory) where name.hasSuffix(".session.backup") {
      if let userID = Deployment.userID(fromSessionFileName: String(name.dropLast(".backup".count))) {
        sessions.append((userID, name))
      }
    }
    for (userID, name) in sessions.sorted(by: { $0.0 < $1.0 }) {
      let path = deployment.sessionsDirectory + "/" + name
      guard isRegularFile(path) else { continue }
      files.append(
        LegacyBackupFile(
          path: path, archivePath: "sessions/" + name, userID: userID, createdAt: try modificationDate(of: path)))
    }
    return files
  }

  /// Whether the file starts with SQLite's header.
  public static func isSQLite(_ path: String) -> Bool {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var header = [UInt8](repeating: 0, count: 16)
    let count = header.withUnsafeMutableBytes { read(fd, $0.baseAddress, 16) }
    return count == 16 && header == Array("SQLite format 3\0".utf8)
  }

  /// `20261124T041500Z` (tgsess-fleet, tgsess) or `20261124_041500` (Python's strftime), in UTC.
  static func parseStamp(_ stamp: String) -> Date? {
    if let date = Timestamp.parseCompact(stamp) { return date }
    let digits = stamp.filter(\.isNumber)
    guard digits.count == 14, stamp.count <= 16 else { return nil }
    let compact = String(digits.prefix(8)) + "T" + String(digits.suffix(6)) + "Z"
    return Timestamp.parseCompact(compact)
  }

  static func isRegularFile(_ path: String) -> Bool {
    var info = stat()
    return lstat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG
  }

  static func modificationDate(of path: String) throws -> Date {
    var info = stat()
    guard stat(path, &info) == 0 else { throw StoreError.io(path: path, operation: "stat", errno: errno) }
    return Date(timeIntervalSince1970: TimeInterval(info.st_mtim.tv_sec))
  }
}

extension BotDatabase {
  private static func importKey(_ sha256: String) -> String { "imported:" + sha256 }

  /// The archive a legacy file with this SHA-256 was imported into, if any.
  /// - Throws: `StoreError.database`.
  public func importedArchiveID(sha256: String) throws -> String? {
    try read("read imported legacy files") { db in
      guard try db.tableExists("tgsess_state") else { return nil }
      return try String.fetchOne(
        db, sql: "SELECT value FROM tgsess_state WHERE key = ?", arguments: [Self.importKey(sha256)])
    }
  }

  /// Remembers that the legacy file with this SHA-256 is in `archiveID`, so it is never imported twice.
  /// - Throws: `StoreError.database`.
  public func recordImport(sha256: String, archiveID: String) throws {
    try write("record imported legacy file") { db in
      try db.execute(
        sql: """
          INSERT INTO tgsess_state(key, value, updated_at) VALUES (?, ?, ?)
          ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at
          """, arguments: [Self.importKey(sha256), archiveID, Timestamp.now()])
    }
  }
}

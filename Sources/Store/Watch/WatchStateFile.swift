import Foundation

/// What watch remembers of one user between runs. No secret: stamps, formats, dcs, auth-key
/// fingerprints, digests and archive ids.
public struct WatchUserRecord: Sendable, Equatable {
  /// The session file's stamp when `file` was read.
  public var stamp: FileStamp?
  /// The file's identity as last read.
  public var file: FileIdentity?
  /// The print of the pages `file` was read from (nil when the file's layout does not allow one).
  public var pagePrint: SessionPagePrint?
  /// The digest of the `user_sessions` row when `row` was computed.
  public var rowDigest: String?
  /// The row's identity as last computed.
  public var row: RowIdentity?
  /// The per-user archive whose content watch knows (`archivedFile`, `archivedRow`).
  public var archivedID: String?
  public var archivedFile: FileIdentity?
  public var archivedRow: RowIdentity?

  public init(
    stamp: FileStamp? = nil, file: FileIdentity? = nil, rowDigest: String? = nil, row: RowIdentity? = nil,
    archivedID: String? = nil, archivedFile: FileIdentity? = nil, archivedRow: RowIdentity? = nil,
    pagePrint: SessionPagePrint? = nil
  ) {
    self.stamp = stamp
    self.file = file
    self.pagePrint = pagePrint
    self.rowDigest = rowDigest
    self.row = row
    self.archivedID = archivedID
    self.archivedFile = archivedFile
    self.archivedRow = archivedRow
  }
}

/// An archive watch wrote that a remote does not hold yet (verified), kept across restarts.
public struct WatchPendingPush: Sendable, Equatable, Hashable {
  public var remote: String
  /// The archive's files, relative to the backups directory (`users/user_42/ID.tar.zst.age`, its `.json`).
  public var files: [String]
  /// When the change that led to the archive was seen (Unix seconds), for the latency metric.
  public var changedAt: Double

  public init(remote: String, files: [String], changedAt: Double) {
    self.remote = remote
    self.files = files
    self.changedAt = changedAt
  }
}

/// Watch's state file, `<backups>/watch/state.tsv`: one line per user and per pending push, in a
/// compact tab-separated form (10,000 users read and write in milliseconds). Written atomically;
/// a missing or unreadable file only costs a full re-read at start-up.
public enum WatchStateFile {
  static let header = "tgsess-watch-state\t1"

  /// The path of the state file under `backupsDirectory`.
  public static func path(backupsDirectory: String) -> String { backupsDirectory + "/watch/state.tsv" }

  /// Reads the state; empty when the file is missing, from another version, or damaged (a damaged
  /// line is skipped: the user is simply read again).
  public static func load(path: String) -> (users: [Int64: WatchUserRecord], pushes: [WatchPendingPush]) {
    guard let data = try? FileSystem.read(path) else { return ([:], []) }
    let text = String(decoding: data, as: UTF8.self)
    var lines = text.split(separator: "\n", omittingEmptySubsequences: true)[...]
    guard lines.popFirst() == Substring(header) else { return ([:], []) }
    var users: [Int64: WatchUserRecord] = [:]
    var pushes: [WatchPendingPush] = []
    for line in lines {
      let fields = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
      if fields.first == "u", fields.count >= 9, let userID = Int64(fields[1]) {
        users[userID] = WatchUserRecord(
          stamp: decodeStamp(fields[2]), file: decodeFile(fields[3]), rowDigest: optional(fields[4]),
          row: decodeRow(fields[5]), archivedID: optional(fields[6]), archivedFile: decodeFile(fields[7]),
          archivedRow: decodeRow(fields[8]), pagePrint: fields.count > 9 ? decodePrint(fields[9]) : nil)
      } else if fields.first == "p", fields.count >= 4, let changedAt = Double(fields[2]) {
        pushes.append(WatchPendingPush(remote: fields[1], files: Array(fields[3...]), changedAt: changedAt))
      }
    }
    return (users, pushes)
  }

  /// Writes the state atomically (temp file, fsync, rename, fsync the directory), mode 0600.
  /// - Throws: `StoreError.io` (a full disk, for instance).
  public static func save(path: String, users: [Int64: WatchUserRecord], pushes: [WatchPendingPush]) throws {
    try save(path: path, lines: users.keys.sorted().map { line(userID: $0, record: users[$0]!) }, pushes: pushes)
  }

  /// Writes the state from user lines made by `line(userID:record:)` (a caller that keeps them
  /// between saves re-encodes only the users that changed).
  /// - Throws: `StoreError.io`.
  public static func save(path: String, lines: [String], pushes: [WatchPendingPush]) throws {
    var text = header + "\n"
    text.reserveCapacity(lines.count * 200 + 64)
    for line in lines {
      text += line
      text += "\n"
    }
    for push in pushes {
      text +=
        (["p", clean(push.remote) ?? "-", String(push.changedAt)] + push.files.compactMap(clean)).joined(
          separator: "\t") + "\n"
    }
    try FileSystem.makeDirectory(FileSystem.parentDirectory(of: path))
    try FileSystem.writeAtomically(Data(text.utf8), to: path)
  }

  /// One user's line of the state file.
  public static func line(userID: Int64, record: WatchUserRecord) -> String {
    [
      "u", String(userID), encode(record.stamp), encode(record.file), record.rowDigest ?? "-", encode(record.row),
      clean(record.archivedID) ?? "-", encode(record.archivedFile), encode(record.archivedRow),
      encode(record.pagePrint),
    ].joined(separator: "\t")
  }

  // MARK: - Fields

  private static func optional(_ field: String) -> String? { field == "-" || field.isEmpty ? nil : field }

  /// A value safe in a tab-separated line (ids and names never hold tabs or newlines; drop any that do).
  private static func clean(_ value: String?) -> String? {
    guard let value, !value.isEmpty, !value.contains("\t"), !value.contains("\n") else { return nil }
    return value
  }

  private static func encode(_ stamp: FileStamp?) -> String {
    guard let stamp else { return "-" }
    return [
      String(stamp.device), String(stamp.inode), String(stamp.size), String(stamp.modifiedNS),
      String(stamp.changedNS), String(stamp.changeCounter), stamp.isWALMode ? "w" : "r", stamp.wal,
    ].joined(separator: "/")
  }

  private static func decodeStamp(_ field: String) -> FileStamp? {
    let parts = field.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
    guard parts.count == 8, let device = UInt64(parts[0]), let inode = UInt64(parts[1]), let size = Int64(parts[2]),
      let modified = Int64(parts[3]), let changed = Int64(parts[4]), let counter = Int64(parts[5])
    else { return nil }
    return FileStamp(
      device: device, inode: inode, size: size, modifiedNS: modified, changedNS: changed, changeCounter: counter,
      isWALMode: parts[6] == "w", wal: parts[7])
  }

  private static func encode(_ print: SessionPagePrint?) -> String {
    guard let print else { return "-" }
    return "\(print.pageSize)/\(print.pages.map(String.init).joined(separator: ","))/\(print.digest)"
  }

  private static func decodePrint(_ field: String) -> SessionPagePrint? {
    let parts = field.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
    guard parts.count == 3, let size = Int(parts[0]), !parts[2].isEmpty else { return nil }
    let pages = parts[1].split(separator: ",").compactMap { Int($0) }
    guard pages.count == 3 else { return nil }
    return SessionPagePrint(pageSize: size, pages: pages, digest: parts[2])
  }

  private static func encode(_ file: FileIdentity?) -> String {
    guard let file, !file.format.contains("/"), !file.authKey.contains("/") else { return "-" }
    return "\(file.format)/\(file.dcID)/\(file.authKey)"
  }

  private static func decodeFile(_ field: String) -> FileIdentity? {
    let parts = field.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
    guard parts.count == 3, let dc = Int(parts[1]), !parts[2].isEmpty else { return nil }
    return FileIdentity(format: parts[0], dcID: dc, authKey: parts[2])
  }

  private static func encode(_ row: RowIdentity?) -> String {
    guard let row, !row.session.contains("/") else { return "-" }
    return "\(row.session)/\(row.apiID.map(String.init) ?? "")"
  }

  private static func decodeRow(_ field: String) -> RowIdentity? {
    let parts = field.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
    guard parts.count == 2, !parts[0].isEmpty else { return nil }
    return RowIdentity(session: parts[0], apiID: Int64(parts[1]))
  }
}

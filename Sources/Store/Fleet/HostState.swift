import Foundation

/// One host's heartbeat on a shared remote: `<remote path>/<deployment_name>/tgsess-host.json`,
/// written by push (and backup's offsite copy) and by check, read by `tgsess fleet` and by
/// restore's cross-host live-owner guard. It holds no secret: per user only the format, the dc,
/// the auth key's fingerprint (first 8 hex of its SHA-256) and when the session file was last
/// written. docs/FLEET-STATE.md documents the format.
public struct HostState: Codable, Sendable, Equatable {
  /// The format's version; a reader refuses any other.
  public static let currentVersion = 1
  /// The file's name beside the archives.
  public static let fileName = "tgsess-host.json"
  /// The largest state file a reader accepts (about 120,000 users).
  public static let maxByteCount: Int64 = 16 * 1_048_576
  /// The most users a state file may list.
  public static let maxUsers = 200_000

  /// One user on the host.
  public struct User: Codable, Sendable, Equatable {
    public var id: Int64
    /// `SessionFormat.shortName` (`telethon-v8`, `pyrogram-v3`, ...); nil when the file could not be read.
    public var format: String?
    public var dc: Int?
    /// The auth key's fingerprint (first 8 hex of SHA-256), never the key.
    public var authKeyFingerprint: String?
    /// The session file's last modification time.
    public var sessionWrittenAt: Date?
    /// The session file's size (with the time, what tells an unchanged file).
    public var sessionByteCount: Int64?
    /// Whether the JSON sidecar `user_<id>.json` sits beside the session file; nil in a file
    /// written by a tgsess that did not look. Never any of its content.
    public var hasSidecar: Bool?
    /// The sidecar's last modification time, when it has one.
    public var sidecarWrittenAt: Date?

    public init(
      id: Int64, format: String?, dc: Int?, authKeyFingerprint: String?, sessionWrittenAt: Date?,
      sessionByteCount: Int64?, hasSidecar: Bool? = nil, sidecarWrittenAt: Date? = nil
    ) {
      self.id = id
      self.format = format
      self.dc = dc
      self.authKeyFingerprint = authKeyFingerprint
      self.sessionWrittenAt = sessionWrittenAt
      self.sessionByteCount = sessionByteCount
      self.hasSidecar = hasSidecar
      self.sidecarWrittenAt = sidecarWrittenAt
    }

    enum CodingKeys: String, CodingKey {
      case id, format, dc
      case authKeyFingerprint = "auth_key_fingerprint"
      case sessionWrittenAt = "session_written_at"
      case sessionByteCount = "session_bytes"
      case hasSidecar = "sidecar"
      case sidecarWrittenAt = "sidecar_written_at"
    }
  }

  public var version: Int
  /// The machine's host name.
  public var host: String
  /// The deployment's name on the remote (its prefix there).
  public var deploymentName: String
  public var toolVersion: String
  /// When this heartbeat was written.
  public var writtenAt: Date
  /// The newest full snapshot on the host.
  public var lastFullBackupAt: Date?
  /// The verdict of the host's last `tgsess check`, and when it ran.
  public var checkState: HealthState?
  public var checkedAt: Date?
  /// Users whose session file exists, by id.
  public var users: [User]

  public init(
    host: String, deploymentName: String, toolVersion: String, writtenAt: Date, lastFullBackupAt: Date?,
    checkState: HealthState?, checkedAt: Date?, users: [User]
  ) {
    version = Self.currentVersion
    self.host = host
    self.deploymentName = deploymentName
    self.toolVersion = toolVersion
    self.writtenAt = writtenAt
    self.lastFullBackupAt = lastFullBackupAt
    self.checkState = checkState
    self.checkedAt = checkedAt
    self.users = users
  }

  enum CodingKeys: String, CodingKey {
    case version, host, users
    case deploymentName = "deployment_name"
    case toolVersion = "tool_version"
    case writtenAt = "written_at"
    case lastFullBackupAt = "last_full_backup_at"
    case checkState = "check_state"
    case checkedAt = "checked_at"
  }

  /// `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, the shape this file is written in, parsed from its bytes
  /// (a fleet view reads 100,000 of them; the general ISO 8601 parser is the slow part); nil for
  /// any other shape, which the general parser then tries.
  static func parseUTC(_ text: String) -> Date? {
    var text = text
    return text.withUTF8 { buffer in buffer.baseAddress.flatMap { parseUTC($0, count: buffer.count) } }
  }

  /// The same, from the text's UTF-8 (`count` bytes at `bytes`).
  static func parseUTC(_ bytes: UnsafePointer<UInt8>, count: Int) -> Date? {
    guard count >= 20, bytes[count - 1] == 0x5A else { return nil }  // Z
    func number(_ start: Int, _ length: Int) -> Int? {
      var value = 0
      var index = start
      while index < start + length {
        let byte = bytes[index]
        guard byte >= 0x30, byte <= 0x39 else { return nil }
        value = value * 10 + Int(byte &- 0x30)
        index += 1
      }
      return value
    }
    // - - T : :
    guard bytes[4] == 0x2D, bytes[7] == 0x2D, bytes[10] == 0x54, bytes[13] == 0x3A, bytes[16] == 0x3A,
      let year = number(0, 4), let month = number(5, 2), let day = number(8, 2), let hour = number(11, 2),
      let minute = number(14, 2), let second = number(17, 2),
      month >= 1, month <= 12, day >= 1, hour < 24, minute < 60, second < 60
    else { return nil }
    // Before 1600 the general parser's calendar is not the proleptic Gregorian one: left to it.
    guard year >= 1600 else { return nil }
    // No day the general parser would refuse (the 31st of a 30-day month, the 29th of February
    // in a common year): those, and leap seconds, are left to it.
    let isLeapYear = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
    let daysInMonth: Int
    switch month {
    case 2: daysInMonth = isLeapYear ? 29 : 28
    case 4, 6, 9, 11: daysInMonth = 30
    default: daysInMonth = 31
    }
    guard day <= daysInMonth else { return nil }
    var fraction = 0.0
    if count > 20 {
      let digits = count - 21
      guard bytes[19] == 0x2E, digits >= 1, digits <= 9, let value = number(20, digits) else { return nil }  // .
      fraction = Double(value) / pow(10, Double(digits))
    }
    // Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
    let y = month <= 2 ? year - 1 : year
    let era = (y >= 0 ? y : y - 399) / 400
    let yearOfEra = y - era * 400
    let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
    let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
    let days = era * 146_097 + dayOfEra - 719_468
    let seconds = days * 86400 + hour * 3600 + minute * 60 + second
    return Date(timeIntervalSince1970: Double(seconds) + fraction)
  }

  /// The file's bytes: JSON, keys sorted, dates ISO 8601 UTC.
  /// - Throws: `EncodingError` (not for values this type holds).
  public func encoded() throws -> Data {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    encoder.dateEncodingStrategy = .custom { date, encoder in
      var container = encoder.singleValueContainer()
      try container.encode(Self.timeText(date))
    }
    return try encoder.encode(self)
  }

  /// Times are written to the millisecond (a session file's modification time, compared with
  /// the next heartbeat's, must survive the round trip) and read with or without fractions.
  static let timeWithMilliseconds = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
  static let timeWithSeconds = Date.ISO8601FormatStyle()

  /// `date` to the millisecond, as the file keeps it.
  public static func storedTime(_ date: Date) -> Date {
    Date(timeIntervalSince1970: Double(milliseconds(date)) / 1000)
  }

  /// Whole milliseconds since 1970: how two times of this file are compared (a time read back
  /// from the text may differ from the computed one in its last bits).
  public static func milliseconds(_ date: Date) -> Int64 {
    Int64((date.timeIntervalSince1970 * 1000).rounded())
  }

  /// `2026-12-06T20:40:00.123Z`, from the whole milliseconds (no formatter rounding of its own).
  static func timeText(_ date: Date) -> String {
    let total = milliseconds(date)
    let (seconds, millis) = (total.quotientAndRemainder(dividingBy: 1000))
    let (whole, fraction) = millis < 0 ? (seconds - 1, millis + 1000) : (seconds, millis)
    let text = Date(timeIntervalSince1970: Double(whole)).formatted(timeWithSeconds)
    let digits = String(fraction)
    return String(text.dropLast()) + "." + String(repeating: "0", count: 3 - digits.count) + digits + "Z"
  }

  /// A time as the file may hold it: ISO 8601, with or without fractions; nil for anything else.
  static func parseTime(_ text: String) -> Date? {
    if let date = parseUTC(text) { return date }
    if let date = try? Date(text, strategy: timeWithMilliseconds) { return date }
    return try? Date(text, strategy: timeWithSeconds)
  }

  /// Reads a state file that came from a remote, trusting nothing in it.
  /// - Parameter name: how findings name the file (`remote:path/host-b/tgsess-host.json`).
  /// - Parameter directoryName: the deployment directory it was found under; the file must claim it.
  /// - Throws: `StoreError.invalid` naming the file and what is wrong with it in one line.
  public static func decode(_ data: Data, name: String, directoryName: String) throws -> HostState {
    func invalid(_ reason: String) -> StoreError {
      StoreError.invalid(path: name, reason: reason, hint: "the host writes it again with its next push or check")
    }
    guard Int64(data.count) <= maxByteCount else {
      throw invalid("\(data.count) bytes, more than the \(maxByteCount) a state file may have")
    }
    // One pass over the bytes (HostStateReader): JSONDecoder was half of a fleet view's time.
    let state: HostState
    do { state = try HostStateReader.read(data) } catch {
      switch error {
      case .syntax: throw invalid("not JSON")
      case .field(let reason): throw invalid(reason)
      }
    }
    if let problem = state.problem(directoryName: directoryName) { throw invalid(problem) }
    return state
  }

  /// What makes a decoded state unusable, or nil.
  func problem(directoryName: String) -> String? {
    for (field, value) in [("host", host), ("deployment_name", deploymentName), ("tool_version", toolVersion)] {
      if !Self.isPrintableName(value) { return "\(field) is empty, too long or has control characters" }
    }
    guard deploymentName == directoryName else {
      return "claims deployment_name '\(deploymentName)' but sits under '\(directoryName)'"
    }
    guard users.count <= Self.maxUsers else { return "\(users.count) users, more than \(Self.maxUsers)" }
    for user in users {
      guard user.id > 0 else { return "user id \(user.id) is not a Telegram user id" }
      if let format = user.format, format.utf8.count > 32 || !format.utf8.allSatisfy({ (33...126).contains($0) }) {
        return "user \(user.id): format is not a format name"
      }
      if let dc = user.dc, !(1...1000).contains(dc) { return "user \(user.id): dc \(dc) is out of range" }
      if let fingerprint = user.authKeyFingerprint, !Self.isFingerprint(fingerprint) {
        return "user \(user.id): auth_key_fingerprint is not 8 to 64 hex digits"
      }
    }
    return nil
  }

  static func isFingerprint(_ text: String) -> Bool {
    (8...64).contains(text.utf8.count) && text.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
  }

  /// A name safe to print: 1...255 characters, no control characters, no `/`.
  public static func isPrintableName(_ text: String) -> Bool {
    !text.isEmpty && text.count <= 255 && !text.contains("/")
      && !text.unicodeScalars.contains { $0.properties.generalCategory == .control || $0 == "\u{7f}" }
  }
}

/// The state files on a shared remote: one per deployment directory directly under the remote's path.
public struct HostStateListing: Sendable {
  /// A state file found: the deployment directory it sits in, its size and its local copy (nil
  /// when it was not downloaded: too large).
  public struct Entry: Sendable {
    public var directoryName: String
    /// How findings name it: `remote:path/dir/tgsess-host.json`.
    public var name: String
    public var byteCount: Int64
    public var localPath: String?
  }
  public var entries: [Entry]
}

extension RcloneRemote {
  /// Writes this deployment's state file atomically: uploaded under a temporary name beside it,
  /// then moved over the old one (a rename on a local path, a server-side copy on S3), so a reader
  /// never sees half a file.
  /// - Throws: `StoreError.invalid` naming the remote when rclone fails.
  public func publishHostState(_ data: Data, scratchDirectory: String) throws {
    let local = scratchDirectory + "/.tgsess-host-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).json"
    try FileSystem.writeAtomically(data, to: local)
    defer { unlink(local) }
    let temporary = root + "/.tgsess-host.json.tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    let upload = try run(["copyto", local, temporary])
    guard upload.status == 0 else {
      throw StoreError.invalid(
        path: "remote \(name) (\(root))",
        reason: "could not upload the host state (rclone exit \(upload.status)): \(upload.errorText)",
        hint: "check the remote's configuration and reachability")
    }
    let move = try run(["moveto", temporary, root + "/" + HostState.fileName])
    guard move.status == 0 else {
      _ = try? run(["deletefile", temporary])
      throw StoreError.invalid(
        path: "remote \(name) (\(root))",
        reason: "could not move the host state in place (rclone exit \(move.status)): \(move.errorText)",
        hint: "check the remote's configuration and reachability")
    }
  }

  /// Lists every deployment's state file under the shared path and downloads those no larger
  /// than `HostState.maxByteCount` into `directory` (`<directory>/<deployment>/tgsess-host.json`).
  /// - Throws: `StoreError.invalid` naming the remote when it cannot be listed or read.
  public func fetchHostStates(into directory: String) throws -> HostStateListing {
    let filter = ["--include", "/*/" + HostState.fileName]
    let listed = try run(["lsjson", "-R", "--files-only", "--max-depth", "2", path] + filter)
    let where_ = "remote \(name) (\(path))"
    if listed.status == 3 { return HostStateListing(entries: []) }
    guard listed.status == 0 else {
      throw StoreError.invalid(
        path: where_, reason: "rclone lsjson failed (exit \(listed.status)): \(listed.errorText)",
        hint: "check the remote's configuration and reachability")
    }
    guard let items = try? JSONSerialization.jsonObject(with: Data(listed.output.utf8)) as? [[String: Any]] else {
      throw StoreError.invalid(path: where_, reason: "rclone lsjson answered garbage", hint: "check rclone")
    }
    let base = path.hasSuffix("/") || path.hasSuffix(":") ? path : path + "/"
    var entries: [HostStateListing.Entry] = []
    for item in items {
      guard let relative = item["Path"] as? String else { continue }
      let parts = relative.split(separator: "/", omittingEmptySubsequences: false)
      guard parts.count == 2, parts[1] == HostState.fileName, ArchivePath.isSafe(relative) else { continue }
      let size = (item["Size"] as? NSNumber)?.int64Value ?? 0
      entries.append(
        HostStateListing.Entry(directoryName: String(parts[0]), name: base + relative, byteCount: size, localPath: nil))
    }
    entries.sort { $0.directoryName < $1.directoryName }
    let wanted = entries.indices.filter { entries[$0].byteCount <= HostState.maxByteCount }
    if !wanted.isEmpty {
      try FileSystem.makeDirectory(directory)
      let listFile = directory + "/.fetch-list"
      let names = wanted.map { entries[$0].directoryName + "/" + HostState.fileName }
      try FileSystem.writeAtomically(Data((names.joined(separator: "\n") + "\n").utf8), to: listFile)
      defer { unlink(listFile) }
      let fetched = try run(["copy", "--files-from-raw", listFile, "--no-traverse", path, directory])
      guard fetched.status == 0 else {
        throw StoreError.invalid(
          path: where_,
          reason: "could not download the host states (rclone exit \(fetched.status)): \(fetched.errorText)",
          hint: "check the remote's configuration and reachability")
      }
      for index in wanted {
        entries[index].localPath = directory + "/" + entries[index].directoryName + "/" + HostState.fileName
      }
    }
    return HostStateListing(entries: entries)
  }
}

extension FileSystem {
  /// The modification time and size of `path` (lstat: a symlink is not followed).
  /// - Throws: `StoreError.io` when it cannot be stat'ed.
  public static func modification(of path: String) throws -> (date: Date, byteCount: Int64) {
    var info = stat()
    guard lstat(path, &info) == 0 else { throw StoreError.io(path: path, operation: "stat", errno: errno) }
    let seconds = Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9
    return (Date(timeIntervalSince1970: seconds), Int64(info.st_size))
  }

  /// The same, or nil when nothing is at `path`.
  /// - Throws: `StoreError.io` when it exists (or may) but cannot be stat'ed.
  public static func modificationIfExists(of path: String) throws -> (date: Date, byteCount: Int64)? {
    do { return try modification(of: path) } catch StoreError.io(_, _, let code) where code == ENOENT { return nil }
  }
}

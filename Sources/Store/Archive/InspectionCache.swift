import Foundation

/// What earlier full backups learnt from inspecting session snapshots, keyed by the user and the
/// SHA-256 of the snapshot's bytes, so an hourly backup inspects only the snapshots whose bytes
/// changed. Inspection (quick_check, schema and identity reading) is a pure function of the
/// bytes: a snapshot with the same hash as one inspected before has the same findings, whoever
/// wrote the file and however (same size, same mtime, replaced by rename). Every session file is
/// still snapshotted through SQLite and hashed each run; only the inspection is reused.
///
/// The file (`backups/.inspections`) holds no secret: hashes of session files, which hold a
/// 256-byte random key, and the auth-key fingerprints every archive record already shows. A
/// damaged, foreign or older-version file reads as empty: it only costs time.
public struct InspectionCache: Sendable {
  /// One snapshot's findings: the fields a manifest entry takes from an inspection.
  public struct Item: Sendable, Equatable {
    public var userID: Int64
    public var sha256: String
    public var format: String
    public var dcID: Int
    public var authKeyFingerprint: String
    public var serverAddress: String?

    public init(
      userID: Int64, sha256: String, format: String, dcID: Int, authKeyFingerprint: String, serverAddress: String?
    ) {
      self.userID = userID
      self.sha256 = sha256
      self.format = format
      self.dcID = dcID
      self.authKeyFingerprint = authKeyFingerprint
      self.serverAddress = serverAddress
    }
  }

  private var items: [Int64: Item] = [:]

  public init() {}

  /// How many snapshots the cache knows.
  public var count: Int { items.count }

  /// The findings for `userID`'s snapshot with these bytes, when an earlier run inspected them.
  public func item(userID: Int64, sha256: String) -> Item? {
    guard let item = items[userID], item.sha256 == sha256 else { return nil }
    return item
  }

  /// Records findings (one per user: the newest replaces the older).
  public mutating func insert(_ item: Item) { items[item.userID] = item }

  /// The cache beside `backupsDirectory`'s archives.
  public static func path(backupsDirectory: String) -> String { backupsDirectory + "/.inspections" }

  /// The first line: the format and the tool version whose inspector made the findings (a new
  /// version may read files differently, so its cache starts empty).
  static func header(toolVersion: String) -> String { "tgsess-inspections 1 \(toolVersion)" }

  /// Reads the cache at `path`; empty when it is missing, damaged (its trailing SHA-256 line
  /// does not match), or written by another tool version.
  public static func load(path: String, toolVersion: String) -> InspectionCache {
    var cache = InspectionCache()
    guard let data = try? FileSystem.read(path), let text = String(data: data, encoding: .utf8) else { return cache }
    var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    if lines.last == "" { lines.removeLast() }
    guard lines.count >= 2, lines[0] == header(toolVersion: toolVersion), let trailer = lines.last,
      trailer.hasPrefix("sha256 ")
    else { return cache }
    let body = lines.dropLast().joined(separator: "\n") + "\n"
    guard Digest.sha256Hex(Data(body.utf8)) == trailer.dropFirst("sha256 ".count) else { return cache }
    for line in lines.dropFirst().dropLast() {
      let fields = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
      guard fields.count == 6, let userID = Int64(fields[0]), let dcID = Int(fields[3]) else {
        return InspectionCache()
      }
      cache.insert(
        Item(
          userID: userID, sha256: fields[1], format: fields[2], dcID: dcID, authKeyFingerprint: fields[4],
          serverAddress: fields[5] == "-" ? nil : fields[5]))
    }
    return cache
  }

  /// Replaces the cache at `path` (temporary file, rename). Not fsynced: a cache lost in a
  /// crash is rebuilt by the next run, and a torn one fails its checksum and reads as empty.
  /// - Throws: `StoreError.io`.
  public func save(path: String, toolVersion: String) throws {
    var body = Self.header(toolVersion: toolVersion) + "\n"
    body.reserveCapacity(items.count * 180)
    for item in items.values.sorted(by: { $0.userID < $1.userID }) {
      // Formats, fingerprints and addresses have no spaces; an item that would is not cached.
      let fields = [
        String(item.userID), item.sha256, item.format, String(item.dcID), item.authKeyFingerprint,
        item.serverAddress ?? "-",
      ]
      guard fields.allSatisfy({ !$0.isEmpty && !$0.contains(" ") && !$0.contains("\n") }) else { continue }
      body += fields.joined(separator: " ") + "\n"
    }
    body += "sha256 " + Digest.sha256Hex(Data(body.utf8)) + "\n"
    try FileSystem.replaceWithoutSync(at: path, with: Data(body.utf8))
  }
}

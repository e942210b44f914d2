import Foundation

#if canImport(Glibc)
  import Glibc
#endif

extension ArchiveRepository {
  /// The id of `userID`'s newest per-user archive that `accepting` accepts (given the archive's
  /// path; every one when nil), from the directory listing alone; nil when there is none. Ids
  /// begin with the UTC second they were made; archives made in the same second (a backup and a
  /// login, a recovery and a logout) are told apart by the time their file was published
  /// (nanoseconds), so "newest" is the one written last. An archive `accepting` refuses (one not
  /// signed by the deployment's key) is passed over for the next newest.
  /// Cheaper than `newestUserArchive`, which also reads the record: a start-up scan of 10,000
  /// users reads a record only where the newest archive is not the one it already knows.
  /// - Throws: `StoreError.io` when the directory exists but cannot be read.
  public func newestUserArchiveID(userID: Int64, accepting: ((String) -> Bool)? = nil) throws -> String? {
    let directory = userDirectory(userID)
    guard let stream = opendir(directory) else {
      if errno == ENOENT || errno == ENOTDIR { return nil }
      throw StoreError.io(path: directory, operation: "list directory", errno: errno)
    }
    defer { closedir(stream) }
    // readdir(3) straight, and the id's shape checked without parsing its date: FileManager's
    // listing and a date parse per name (`ArchiveName.describe`) cost ~20x more, which the
    // start-up scan pays 10,000 times.
    var candidates: [(id: String, name: String)] = []
    while let entry = readdir(stream) {
      let name = FileSystem.entryName(entry)
      guard let (id, _) = ArchiveName.parse(fileName: name), Self.isUserArchiveID(id, userID: userID) else { continue }
      // Without a filter only the newest second matters.
      if accepting == nil, let first = candidates.first {
        if id.prefix(16) < first.id.prefix(16) { continue }
        if id.prefix(16) > first.id.prefix(16) { candidates = [] }
      }
      candidates.append((id, name))
    }
    func published(_ name: String) -> Int64 {
      var info = stat()
      guard stat(directory + "/" + name, &info) == 0 else { return 0 }
      return Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec)
    }
    // Newest second first; within a second, the one published last first.
    let seconds = Dictionary(grouping: candidates) { String($0.id.prefix(16)) }
    for second in seconds.keys.sorted(by: >) {
      guard let group = seconds[second] else { continue }
      let ordered =
        group.count == 1
        ? group
        : group.map { (id: $0.id, name: $0.name, time: published($0.name)) }.sorted {
          ($0.time, $0.id) > ($1.time, $1.id)
        }
        .map { (id: $0.id, name: $0.name) }
      for candidate in ordered where accepting?(directory + "/" + candidate.name) ?? true { return candidate.id }
    }
    return nil
  }

  /// The record of `userID`'s archive `id` (its `<id>.json`, or one rebuilt from the name).
  /// - Throws: `StoreError.io` when the directory cannot be read.
  public func userArchiveRecord(userID: Int64, id: String) throws -> ArchiveRecord? {
    let directory = userDirectory(userID)
    let names = try Self.names(in: directory)
    guard let name = names.first(where: { ArchiveName.parse(fileName: $0)?.id == id }) else { return nil }
    return Self.record(archive: name, in: directory, present: Set(names))
  }

  /// Whether `id` has the shape of a per-user archive id of `userID`:
  /// `yyyyMMddTHHmmssZ-u<user>-<random>`.
  static func isUserArchiveID(_ id: String, userID: Int64) -> Bool {
    let parts = id.split(separator: "-", omittingEmptySubsequences: false)
    guard parts.count == 3, parts[1] == "u\(userID)", !parts[2].isEmpty else { return false }
    let stamp = Array(parts[0].utf8)
    guard stamp.count == 16, stamp[8] == UInt8(ascii: "T"), stamp[15] == UInt8(ascii: "Z") else { return false }
    return stamp.enumerated().allSatisfy { index, byte in
      index == 8 || index == 15 || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
    }
  }
}

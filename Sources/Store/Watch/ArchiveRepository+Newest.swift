import Foundation

#if canImport(Glibc)
  import Glibc
#endif

extension ArchiveRepository {
  /// The id of `userID`'s newest per-user archive, from the directory listing alone (ids begin
  /// with the UTC time they were made, so the greatest is the newest); nil when there is none.
  /// Cheaper than `newestUserArchive`, which also reads the record: a start-up scan of 10,000
  /// users reads a record only where the newest archive is not the one it already knows.
  /// - Throws: `StoreError.io` when the directory exists but cannot be read.
  public func newestUserArchiveID(userID: Int64) throws -> String? {
    let directory = userDirectory(userID)
    guard let stream = opendir(directory) else {
      if errno == ENOENT || errno == ENOTDIR { return nil }
      throw StoreError.io(path: directory, operation: "list directory", errno: errno)
    }
    defer { closedir(stream) }
    var newest: String?
    // readdir(3) straight, and the id's shape checked without parsing its date: FileManager's
    // listing and a date parse per name (`ArchiveName.describe`) cost ~20x more, which the
    // start-up scan pays 10,000 times.
    while let entry = readdir(stream) {
      let name = withUnsafePointer(to: entry.pointee.d_name) {
        $0.withMemoryRebound(to: CChar.self, capacity: Int(NAME_MAX) + 1) { String(cString: $0) }
      }
      guard let (id, _) = ArchiveName.parse(fileName: name), Self.isUserArchiveID(id, userID: userID),
        newest.map({ id > $0 }) ?? true
      else { continue }
      newest = id
    }
    return newest
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

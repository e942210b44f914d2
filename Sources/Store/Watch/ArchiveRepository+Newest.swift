import Foundation

extension ArchiveRepository {
  /// The id of `userID`'s newest per-user archive, from the directory listing alone (ids begin
  /// with the UTC time they were made, so the greatest is the newest); nil when there is none.
  /// Cheaper than `newestUserArchive`, which also reads the record: a start-up scan of 10,000
  /// users reads a record only where the newest archive is not the one it already knows.
  /// - Throws: `StoreError.io` when the directory cannot be read.
  public func newestUserArchiveID(userID: Int64) throws -> String? {
    try Self.names(in: userDirectory(userID)).compactMap { name -> String? in
      guard let (id, _) = ArchiveName.parse(fileName: name), ArchiveName.describe(id: id) != nil else { return nil }
      return id
    }.max()
  }
}

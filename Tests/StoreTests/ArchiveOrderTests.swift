import Foundation
import Store
import TestSupport
import Testing

/// Archive ids name their second; archives of one user made in the same second (a backup and a
/// login, a backup and the re-archive run after it) must still sort by when they were made, and
/// the same way on every copy of the folder: the id's last part starts with the millisecond.
@Suite struct ArchiveOrderTests {
  /// Makes `users/user_1/<id>.tar.zst.age` (no record: `list` rebuilds one from the name).
  static func archive(_ id: String, in backups: String) throws {
    let directory = backups + "/users/user_1"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    try Data("age".utf8).write(to: URL(fileURLWithPath: directory + "/" + id + ".tar.zst.age"))
  }

  @Test func archivesOfOneSecondSortByWhenTheyWereMade() throws {
    let second = 1_796_600_000.0
    for round in 0..<50 {
      let earlier = ArchiveName.makeID(kind: .user, userID: 1, date: Date(timeIntervalSince1970: second + 0.1))
      let later = ArchiveName.makeID(kind: .user, userID: 1, date: Date(timeIntervalSince1970: second + 0.102))
      #expect(earlier.prefix(16) == later.prefix(16), "one second")
      #expect(later > earlier, "round \(round): \(later) must sort after \(earlier)")
      let backups = try TemporaryDirectory("archive-order")
      // Written in the other order: the names decide, not the files' times.
      try Self.archive(later, in: backups.path)
      try Self.archive(earlier, in: backups.path)
      let repository = ArchiveRepository(backupsDirectory: backups.path)
      #expect(try repository.list(kind: .user, userID: 1).map(\.id) == [later, earlier])
      #expect(try repository.newestUserArchive(userID: 1)?.id == later)
    }
    // The last millisecond of a second still names that second.
    let last = ArchiveName.makeID(kind: .full, userID: nil, date: Date(timeIntervalSince1970: second + 0.9996))
    #expect(ArchiveName.describe(id: last)?.createdAt == Date(timeIntervalSince1970: second))
  }
}

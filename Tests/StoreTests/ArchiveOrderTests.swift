import Foundation
import Store
import TestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// Archive ids name their second and end in random letters: two archives of one user made in the
/// same second (a backup and a login, a backup and the re-archive run after it) are ordered by
/// when their files were written, never by the random letters.
@Suite struct ArchiveOrderTests {
  /// Makes `users/user_1/<id>.tar.zst.age` (no record: `list` rebuilds one from the name) written
  /// at `nanoseconds` past the id's second.
  static func archive(_ id: String, in backups: String, nanoseconds: Int) throws {
    let directory = backups + "/users/user_1"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let path = directory + "/" + id + ".tar.zst.age"
    try Data("age".utf8).write(to: URL(fileURLWithPath: path))
    let second = Int(Date(timeIntervalSince1970: 1_796_600_000).timeIntervalSince1970)
    var times = [
      timespec(tv_sec: second, tv_nsec: nanoseconds), timespec(tv_sec: second, tv_nsec: nanoseconds),
    ]
    #expect(utimensat(AT_FDCWD, path, &times, 0) == 0)
  }

  @Test(arguments: [false, true])
  func archivesOfOneSecondAreNewestByWhenTheyWereWritten(laterHasSmallerLetters: Bool) throws {
    let backups = try TemporaryDirectory("archive-order")
    let earlier = "20261206T221544Z-u1-" + (laterHasSmallerLetters ? "zzzzzz" : "aaaaaa")
    let later = "20261206T221544Z-u1-" + (laterHasSmallerLetters ? "aaaaaa" : "zzzzzz")
    try Self.archive(earlier, in: backups.path, nanoseconds: 100_000_000)
    try Self.archive(later, in: backups.path, nanoseconds: 900_000_000)
    let repository = ArchiveRepository(backupsDirectory: backups.path)
    #expect(try repository.list(kind: .user, userID: 1).map(\.id) == [later, earlier])
    #expect(try repository.newestUserArchive(userID: 1)?.id == later)
    #expect(try repository.newestUserArchiveID(userID: 1) == later)
  }
}

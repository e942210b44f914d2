import Foundation
import Store
import TestSupport
import Testing

/// Per-user archives of one run are written and proven one by one, then published as a batch
/// after one durability barrier: nothing of a batch is visible before `publish(batch:)`, a
/// discarded batch leaves nothing, and a published one reads back whole through `list`.
@Suite struct ArchiveBatchTests {
  /// Prepares (unsynced) one per-user archive of `userID` holding a small file.
  static func prepare(
    _ repository: ArchiveRepository, userID: Int64, identity: AgeIdentity, in dir: TemporaryDirectory
  ) throws -> PendingArchive {
    let data = Data("rows of \(userID)".utf8)
    let file = dir.file("source-\(userID).json")
    try FileSystem.writeAtomically(data, to: file)
    let date = Date(timeIntervalSince1970: 1_800_000_000)
    let manifest = Manifest(
      toolVersion: "test", host: "test", createdAt: date, kind: .user, reason: "Scheduled", userID: userID,
      schemaVersion: 1,
      entries: [
        Manifest.Entry(
          path: "users/user_\(userID).json", role: .userRows, size: Int64(data.count),
          sha256: Digest.sha256Hex(data), isSQLite: false, userID: userID)
      ])
    return try repository.prepare(
      id: ArchiveName.makeID(kind: .user, userID: userID, date: date), manifest: manifest,
      sources: ["users/user_\(userID).json": .file(file)], encryption: .age([identity.recipient]),
      identities: [identity], signingKey: try SigningKey.generate(), isDurable: false)
  }

  @Test func aBatchIsInvisibleUntilPublishedAndThenWholeAndProven() throws {
    let dir = try TemporaryDirectory()
    let identity = try AgeIdentity.generate()
    let repository = ArchiveRepository(backupsDirectory: dir.file("backups"))
    let batch = try (1...3).map { try Self.prepare(repository, userID: $0, identity: identity, in: dir) }
    // Proven, but only hidden temporaries so far.
    #expect(batch.allSatisfy { $0.record.verification == .full })
    #expect(try repository.list().isEmpty)
    let hidden = try TreeSnapshot(repository.backupsDirectory)
    // The archive, its signature and its record, each under a hidden temporary name.
    #expect(hidden.files.isEmpty && hidden.hidden.count == 9)

    var published: [String] = []
    try repository.publish(batch: batch) { published.append($0.record.id) }
    #expect(published == batch.map(\.record.id))
    let listed = try repository.list()
    #expect(Set(listed.map(\.id)) == Set(published))
    #expect(listed.allSatisfy { $0.verification == .full })
    let after = try TreeSnapshot(repository.backupsDirectory)
    #expect(after.hidden.isEmpty && after.files.count == 9)
    for record in listed {
      #expect(throws: Never.self) {
        _ = try ArchiveReader.read(path: repository.path(of: record), identities: [identity])
      }
    }
  }

  @Test func aDiscardedBatchLeavesNothing() throws {
    let dir = try TemporaryDirectory()
    let identity = try AgeIdentity.generate()
    let repository = ArchiveRepository(backupsDirectory: dir.file("backups"))
    let batch = try (1...2).map { try Self.prepare(repository, userID: $0, identity: identity, in: dir) }
    for pending in batch { pending.discard() }
    let tree = try TreeSnapshot(repository.backupsDirectory)
    #expect(tree.files.isEmpty && tree.hidden.isEmpty)
    #expect(try repository.list().isEmpty)
  }
}

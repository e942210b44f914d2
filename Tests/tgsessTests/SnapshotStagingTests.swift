import Foundation
import Jobs
import Logging
import Store
import TestSupport
import Testing

/// Backups stage small session files in memory (an SQLite memdb copy appended to one pack
/// file), large ones in a staging file each, on several threads. Whichever way a file was
/// staged, the archive must hold the same bytes in the same order.
@Suite struct SnapshotStagingTests {
  static func manifest(of record: ArchiveSummary, _ deployment: Deployment) throws -> Manifest {
    try ArchiveReader.read(path: record.path, identities: try KeyStore.loadIdentities(deployment))
  }

  @Test func inMemoryAndFileStagingArchiveTheSameBytesInTheSameOrder() throws {
    let fleet = try TestFleet(users: 9)
    var logger = Logger(label: "test")
    logger.logLevel = .critical
    let inMemory = try BackupJob.run(fleet.deployment, options: BackupOptions(), logger: logger)
    var options = BackupOptions(includesChangedUsers: false)
    options.inMemorySnapshotLimit = 0
    options.snapshotWorkers = 1
    let staged = try BackupJob.run(fleet.deployment, options: options, logger: logger)
    let fromMemory = try Self.manifest(
      of: try #require(inMemory.archives.first { $0.kind == .full }), fleet.deployment)
    let fromFiles = try Self.manifest(of: try #require(staged.archives.first { $0.kind == .full }), fleet.deployment)
    let sessions = { (manifest: Manifest) in manifest.entries.filter { $0.role != .database } }
    #expect(sessions(fromMemory).count == 9 + fromMemory.entries.filter { $0.role == .sessionBackup }.count)
    #expect(sessions(fromMemory).map(\.path) == sessions(fromFiles).map(\.path))
    #expect(sessions(fromMemory).map(\.sha256) == sessions(fromFiles).map(\.sha256))
    #expect(sessions(fromMemory).map(\.authKeyFingerprint) == sessions(fromFiles).map(\.authKeyFingerprint))
    // The first run also wrote a per-user archive of every user, from the same pack.
    #expect(inMemory.archives.filter { $0.kind == .user }.count == 9)
  }

  @Test func theFullArchivesManifestIsTheOneJSONEncoderWouldWrite() throws {
    let fleet = try TestFleet(users: 3)
    var logger = Logger(label: "test")
    logger.logLevel = .critical
    let result = try BackupJob.run(fleet.deployment, options: BackupOptions(), logger: logger)
    let full = try #require(result.archives.first { $0.kind == .full })
    // The bytes as the stock age and tar see them.
    let extracted = try runProcess(
      "/bin/bash",
      [
        "-c", "age -d -i \"$1\" \"$2\" | tar --zstd -xOf - manifest.json", "-", fleet.deployment.ageIdentityPath,
        full.path,
      ])
    #expect(extracted.status == 0, "\(extracted.stderr)")
    let written = extracted.stdoutData
    let manifest = try Manifest.decode(written, objectName: full.path)
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    encoder.dateEncodingStrategy = .iso8601
    #expect(written == (try encoder.encode(manifest)))
  }

  @Test func thePackReturnsWhereTheBytesAreWithTheirSizeAndHash() throws {
    let directory = try TemporaryDirectory()
    let staging = try StagingArea(parent: directory.path)
    let first = Data("{\"user_id\": 1}".utf8)
    let second = Data(randomBytes(70_000))
    let a = try staging.pack(first)
    let b = try staging.pack(second)
    #expect(a.source == .region(path: staging.packPath, offset: 0, length: Int64(first.count)))
    #expect(b.source == .region(path: staging.packPath, offset: Int64(first.count), length: Int64(second.count)))
    #expect(a.byteCount == Int64(first.count) && b.byteCount == Int64(second.count))
    // The hashes are those of the bytes, as sha256sum sees the pack's regions.
    #expect(a.sha256 == Digest.sha256Hex(first) && b.sha256 == Digest.sha256Hex(second))
    let pack = try Data(contentsOf: URL(fileURLWithPath: staging.packPath))
    #expect(pack == first + second)
    let tail = try runProcess(
      "/bin/bash", ["-c", "tail -c +\(first.count + 1) \"$1\" | sha256sum", "-", staging.packPath])
    #expect(tail.stdout.hasPrefix(b.sha256 + " "))

    // A session snapshot packs the same way, from its in-memory image.
    let fleet = try TestFleet(users: 1)
    let session = fleet.sessionPath(try fleet.sessionUserIDs()[0])
    let image = try SQLiteSnapshot.takeInMemory(source: session)
    let c = try staging.pack(image)
    #expect(c.byteCount == Int64(image.count))
    let packed = try Data(contentsOf: URL(fileURLWithPath: staging.packPath)).dropFirst(first.count + second.count)
    #expect(packed.count == image.count && Digest.sha256Hex(Data(packed)) == c.sha256)
    #expect(c.source == .region(path: staging.packPath, offset: a.byteCount + b.byteCount, length: c.byteCount))
    staging.remove()
  }

  @Test func removeStaleReturnsTheDirectoriesOfDeadProcessesOnly() throws {
    let directory = try TemporaryDirectory()
    // 99999999 is above Linux's largest pid_max: no such process.
    let dead = directory.file(".staging-99999999-abc")
    let mine = directory.file(".staging-\(getpid())-def")
    let other = directory.file("not-staging")
    for path in [dead, mine, other] { try FileSystem.makeDirectory(path + "/sessions") }
    #expect(StagingArea.removeStale(in: directory.path) == [dead])
    #expect(!FileSystem.exists(dead) && FileSystem.exists(mine) && FileSystem.exists(other))
    #expect(StagingArea.removeStale(in: directory.path).isEmpty)
    #expect(StagingArea.removeStale(in: directory.file("missing")).isEmpty)
  }
}

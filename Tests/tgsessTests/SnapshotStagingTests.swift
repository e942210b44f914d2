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
    let fleet = try FleetFixture(users: 9)
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
    let fleet = try FleetFixture(users: 3)
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
}

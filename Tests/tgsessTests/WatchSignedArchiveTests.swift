import Foundation
import Jobs
import Store
import TestSupport
import Testing

/// `tgsess watch` and signed archives (issue #15): the archives watch writes are signed like every
/// other, go offsite with their signature, and an archive not signed by the deployment's key never
/// makes watch believe an identity is archived.
@Suite(.serialized) struct WatchSignedArchiveTests {
  static func ring(_ fleet: TestFleet) throws -> VerifyingKeyRing {
    try KeyStore.loadVerifyingKeys(path: fleet.root + "/keys/signing.pub")
  }

  @Test func watchSignsItsArchivesAndCopiesTheirSignaturesOffsite() throws {
    try OffsiteTests.requireRclone()
    let scratch = try TemporaryDirectory("watch-signed")
    let remote = scratch.file("remote")
    let fleet = try WatchCLITests.fleet(
      users: 3, config: "deployment_name = \"host\"\n[[remotes]]\nname = \"usb\"\npath = \"\(remote)\"\n")
    let user = try #require(fleet.userIDs.first)
    let before = try fleet.userArchives(user)
    let keys = try fleet.loginWithTelethon([user])
    let once = try fleet.tgsess(["watch", "--once"])
    #expect(once.status == 0, "\(once.stderr)")

    let newest = try #require(try fleet.userArchives(user).last)
    #expect(!before.contains { $0.id == newest.id }, "watch wrote no archive")
    #expect(try WatchCLITests.record(fleet, user, newest.id).sessionFingerprint?.authKey == keys[user])
    // Signed by the deployment's key, for this user, in its place; list says so.
    let directory = "users/user_\(user)/"
    let path = fleet.backupsDirectory + "/" + directory + newest.id + ".tar.zst.age"
    let signed = try ArchiveSigning.verifyFile(archivePath: path, ring: try Self.ring(fleet))
    #expect(signed.statement.archiveID == newest.id && signed.statement.userID == user)
    #expect(try fleet.listedArchives(["--user", String(user)]).first { $0.id == newest.id }?.signature == .signed)
    // Offsite: the archive and its signature, byte for byte.
    for suffix in [".tar.zst.age", ".sig"] {
      let local = fleet.backupsDirectory + "/" + directory + newest.id + suffix
      let copy = remote + "/host/" + directory + newest.id + suffix
      #expect(FileManager.default.fileExists(atPath: copy), "\(copy) is not on the remote")
      if FileManager.default.fileExists(atPath: copy) {
        #expect(try FileSystem.sha256(ofFile: copy) == FileSystem.sha256(ofFile: local))
      }
    }
  }

  /// Anyone who can write to backups/ can plant an archive dated tomorrow whose record claims the
  /// user's new identity; watch must not take it for an archive of that identity.
  @Test func aPlantedArchiveNeverStandsForTheArchivedIdentity() throws {
    let fleet = try WatchCLITests.fleet(users: 3)
    let user = try #require(fleet.userIDs.first)
    let before = Set(try fleet.userArchives(user).map(\.id))
    let genuine = try WatchCLITests.record(fleet, user, try #require(try fleet.userArchives(user).last).id)
    let keys = try fleet.loginWithTelethon([user])
    let key = try #require(keys[user])
    let identity = try SessionFileInspector.inspect(path: fleet.sessionPath(user)).identity
    let directory = fleet.backupsDirectory + "/users/user_\(user)"
    let plantedID = ArchiveName.makeID(kind: .user, userID: user, date: Date().addingTimeInterval(86_400))
    var planted = genuine
    planted.id = plantedID
    planted.fileName = plantedID + ".tar.zst.age"
    planted.createdAt = Date().addingTimeInterval(86_400)
    planted.sessionFingerprint = .init(authKey: key, dcID: identity.dcID, serverAddress: identity.serverAddress)
    try FileManager.default.copyItem(
      atPath: directory + "/" + genuine.fileName, toPath: directory + "/" + planted.fileName)
    try planted.encoded().write(to: URL(fileURLWithPath: directory + "/" + plantedID + ".json"))

    let once = try fleet.tgsess(["watch", "--once"])
    #expect(once.status == 0, "\(once.stderr)")
    let written = try fleet.userArchives(user).filter { $0.id != plantedID && !before.contains($0.id) }
    #expect(written.count == 1, "the new identity was not archived: \(written)")
    let archive = try #require(written.first)
    #expect(try WatchCLITests.record(fleet, user, archive.id).sessionFingerprint?.authKey == key)
    _ = try ArchiveSigning.verifyFile(
      archivePath: directory + "/" + archive.id + ".tar.zst.age", ring: try Self.ring(fleet))
    #expect(try fleet.listedArchives(["--user", String(user)]).first { $0.id == plantedID }?.signature == .unsigned)
  }
}

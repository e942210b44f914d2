import Foundation
import Jobs
import Store
import TestSupport
import Testing

/// Offsite copies through rclone: a local-path remote for most scenarios, and a real
/// S3-compatible server (moto) on loopback for the S3 path.
@Suite(.serialized) struct OffsiteTests {
  static let rclone = "/usr/bin/rclone"

  static func requireRclone() throws {
    guard FileManager.default.isExecutableFile(atPath: rclone) else {
      throw TestHelperError("rclone is not installed; run: apt-get install -y rclone")
    }
  }

  /// Writes `tgsess.toml` with the given remotes.
  static func configure(_ fleet: TestFleet, name: String = "host-a", remotes: [(String, String)]) throws {
    var text = "deployment_name = \"\(name)\"\n"
    for (remote, path) in remotes { text += "\n[[remotes]]\nname = \"\(remote)\"\npath = \"\(path)\"\n" }
    try text.write(toFile: fleet.root + "/tgsess.toml", atomically: true, encoding: .utf8)
  }

  /// The file names of listed archives (their paths on the remote).
  static func fileNames(_ listed: [ListedArchive]) -> Set<String> {
    Set(listed.map { ($0.path as NSString).lastPathComponent })
  }

  static func archiveNames(under directory: String) -> Set<String> {
    var names = Set<String>()
    let enumerator = FileManager.default.enumerator(atPath: directory)
    while let path = enumerator?.nextObject() as? String {
      if path.hasSuffix(".tar.zst.age") { names.insert((path as NSString).lastPathComponent) }
    }
    return names
  }

  @Test func backupPushesAndListFromTheRemoteAlone() throws {
    try Self.requireRclone()
    let fleet = try TestFleet(users: 4)
    let remote = fleet.directory.file("remote")
    try Self.configure(fleet, remotes: [("usb", remote)])
    let offsite = try fleet.tgsessJSON(BackupResult.self, ["backup"]).offsite
    #expect(offsite.count == 1 && offsite[0].ok == true)
    // Everything local is there, under this deployment's prefix, byte for byte.
    let local = Self.archiveNames(under: fleet.root + "/backups")
    #expect(!local.isEmpty)
    #expect(Self.archiveNames(under: remote + "/host-a") == local)
    let listed = try fleet.listedArchives(["--remote", "usb"])
    #expect(Self.fileNames(listed) == local)
    #expect(listed.allSatisfy { $0.path.hasPrefix(remote + "/host-a/") })
    #expect(listed.allSatisfy { $0.verification == .full })
    // check is happy with a remote that is caught up.
    #expect(try fleet.tgsess(["check", "--no-write"]).status == 0)
  }

  @Test func aTamperedRemoteCopyIsDetectedAndNeverOverwritten() throws {
    try Self.requireRclone()
    let fleet = try TestFleet(users: 2)
    let remote = fleet.directory.file("remote")
    try Self.configure(fleet, remotes: [("usb", remote)])
    try fleet.tgsessOK(["backup"])
    let full = try #require(
      try FileManager.default.contentsOfDirectory(atPath: remote + "/host-a/full").first { $0.hasSuffix(".age") })
    let path = remote + "/host-a/full/" + full
    var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
    bytes[bytes.count / 2] ^= 0x01
    try bytes.write(to: URL(fileURLWithPath: path))
    let push = try fleet.tgsess(["push", "--json"], environment: ["TGSESS_RETRY_BASE_MS": "1"])
    #expect(push.status == 3, "\(push.stderr)")
    let remotes = try decodeJSON(PushResult.self, from: push).remotes
    #expect(remotes[0].ok == false)
    #expect(remotes[0].error?.contains("remote usb") == true)
    // The remote copy was not replaced (rclone copy --immutable refuses).
    #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == bytes)
    // check reports the remote as behind.
    let check = try fleet.tgsess(["check", "--no-write", "--json"])
    #expect(check.status == 1)
    #expect(check.stdout.contains("remote usb is missing 1 archive(s)"))
  }

  @Test func newHostRestoresAndDrillsFromTheRemoteAlone() throws {
    try Self.requireRclone()
    let fleet = try TestFleet(users: 3)
    let remote = fleet.directory.file("remote")
    try Self.configure(fleet, remotes: [("usb", remote)])
    try fleet.tgsessOK(["backup"])
    let keys = try fleet.sqlite("SELECT count(*) FROM user_sessions")
    // The machine is gone: a new root holds only the config and the escrowed identity; the
    // escrowed signing.pub is passed as --verify-key.
    let newHost = fleet.directory.file("new-host")
    try FileSystem.makeDirectory(newHost + "/keys")
    try FileManager.default.copyItem(atPath: fleet.root + "/tgsess.toml", toPath: newHost + "/tgsess.toml")
    try FileManager.default.copyItem(
      atPath: fleet.root + "/keys/age-identity.txt", toPath: newHost + "/keys/age-identity.txt")
    let escrowedRing = fleet.directory.file("escrow-signing.pub")
    try FileManager.default.copyItem(atPath: fleet.root + "/keys/signing.pub", toPath: escrowedRing)
    try FileManager.default.removeItem(atPath: fleet.root + "/backups")
    let target = fleet.directory.file("restored")
    // Without a key ring nothing can be authenticated: refused, naming --verify-key.
    let unverifiable = try runTgsess(
      ["restore", "latest", "--from-remote", "usb", "--target", target, "--root", newHost])
    #expect(unverifiable.status == 1)
    #expect(
      unverifiable.stderr.contains("pass --verify-key FILE (the deployment's signing.pub from escrow)"),
      "\(unverifiable.stderr)")
    #expect(!FileManager.default.fileExists(atPath: target))
    let restore = try runTgsess(
      [
        "restore", "latest", "--from-remote", "usb", "--target", target, "--root", newHost, "--verify-key",
        escrowedRing,
      ])
    #expect(restore.status == 0, "\(restore.stderr)")
    #expect(try fleet.sqlite("SELECT count(*) FROM user_sessions", path: target + "/data/telegram_bot.db") == keys)
    for user in try fleet.sessionUserIDs() {
      let restored = try fleet.sqlite(
        "SELECT hex(auth_key) FROM sessions", path: target + "/sessions/user_\(user).session")
      let original = try fleet.sqlite("SELECT hex(auth_key) FROM sessions", path: fleet.sessionPath(user))
      if !original.isEmpty { #expect(restored == original) }
    }
    let drill = try runTgsess(
      ["drill", "--from-remote", "usb", "--json", "--root", newHost, "--verify-key", escrowedRing])
    #expect(drill.status == 0, "\(drill.stderr)")
    let evidence = try decodeJSON(DrillResult.self, from: drill)
    #expect(evidence.ok == true)
    #expect(evidence.usersRestored == 3)
    // Nothing of the remote cache is left behind.
    let leftovers = (try? FileManager.default.contentsOfDirectory(atPath: newHost + "/backups")) ?? []
    #expect(leftovers.allSatisfy { !$0.hasPrefix(".remote-cache") })
  }

  /// Listing a remote from a new host leaves nothing behind (not even the backups/ it needed for
  /// its catalog), and the catalog a killed run left is removed by the next run.
  @Test func remoteCatalogsLeaveNothingBehind() throws {
    try Self.requireRclone()
    let fleet = try TestFleet(users: 2)
    let remote = fleet.directory.file("remote")
    try Self.configure(fleet, remotes: [("usb", remote)])
    try fleet.tgsessOK(["backup"])
    let newHost = fleet.directory.file("new-host")
    try FileSystem.makeDirectory(newHost)
    try FileManager.default.copyItem(atPath: fleet.root + "/tgsess.toml", toPath: newHost + "/tgsess.toml")

    let listed = try decodeJSON(
      [ListedArchive].self, from: try runTgsess(["list", "--remote", "usb", "--json", "--root", newHost]))
    #expect(listed.count == 3)
    #expect(try FileSystem.directoryNames(newHost) == ["tgsess.toml"])

    // A catalog of a process that is gone, beside one of a process that lives.
    let stale = fleet.root + "/backups/.remote-cache-usb-999999999-abc123"
    let live = fleet.root + "/backups/.remote-cache-usb-1-abc123"
    try FileSystem.makeDirectory(stale + "/full")
    try FileSystem.makeDirectory(live)
    try fleet.tgsessOK(["list", "--remote", "usb"])
    #expect(!FileSystem.exists(stale))
    #expect(FileSystem.exists(live))
    #expect(
      try FileSystem.directoryNames(fleet.root + "/backups").filter { $0.hasPrefix(".remote-cache") } == [
        ".remote-cache-usb-1-abc123"
      ])
  }

  @Test func pruneAppliesTheSamePlanToTheRemote() throws {
    try Self.requireRclone()
    let fleet = try TestFleet(users: 2)
    let remote = fleet.directory.file("remote")
    try Self.configure(fleet, remotes: [("usb", remote)])
    try fleet.tgsessOK(["backup"])
    let user = try #require(try fleet.sessionUserIDs().first)
    for _ in 0..<3 { try fleet.tgsessOK(["backup", "--user", String(user), "--reason", "Manual"]) }
    // An archive of another host in the same bucket must never be touched.
    let foreign = remote + "/host-b/full/20200101T000000Z-full-aaaaaa.tar.zst.age"
    try FileSystem.makeDirectory((foreign as NSString).deletingLastPathComponent)
    try Data("not ours".utf8).write(to: URL(fileURLWithPath: foreign))
    let prune = try fleet.tgsessJSON(PruneResult.self, ["prune", "--keep-per-user", "1"])
    #expect(prune.removed >= 3)
    #expect(prune.remoteRemoved["usb"] == prune.removed)
    #expect(Self.archiveNames(under: remote + "/host-a") == Self.archiveNames(under: fleet.root + "/backups"))
    #expect(FileManager.default.fileExists(atPath: foreign))
  }

  @Test func hostsSharingOneBucketSeeOnlyTheirOwnArchives() throws {
    try Self.requireRclone()
    let remote = try TemporaryDirectory("tgsess-bucket")
    let first = try TestFleet(users: 1, seed: 1)
    let second = try TestFleet(users: 1, seed: 2)
    try Self.configure(first, name: "bot-1", remotes: [("shared", remote.path)])
    try Self.configure(second, name: "bot-2", remotes: [("shared", remote.path)])
    try first.tgsessOK(["backup"])
    try second.tgsessOK(["backup"])
    let listed = try first.listedArchives(["--remote", "shared"])
    #expect(Self.fileNames(listed) == Self.archiveNames(under: first.root + "/backups"))
    #expect(Self.archiveNames(under: remote.path + "/bot-2") == Self.archiveNames(under: second.root + "/backups"))
  }

  // MARK: - S3 (moto on loopback)

  /// moto's S3 server on a free loopback port.
  final class MotoServer {
    let process: BackgroundProcess
    let port: Int

    init() throws {
      let moto = (TestEnvironment.python as NSString).deletingLastPathComponent + "/moto_server"
      guard FileManager.default.isExecutableFile(atPath: moto) else {
        throw TestHelperError("no \(moto); run scripts/test.sh (it installs moto[server] into .venv-test)")
      }
      port = Int.random(in: 20_000...40_000)
      process = try BackgroundProcess(moto, ["-H", "127.0.0.1", "-p", String(port)])
      try waitUntil("moto on 127.0.0.1:\(port)", boundSeconds: 60) {
        (try? runProcess("/usr/bin/env", ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/\(port)"]).status) == 0
      }
    }

    /// rclone's environment for a remote named MOTO on this server.
    var environment: [String: String] {
      [
        "RCLONE_CONFIG_MOTO_TYPE": "s3", "RCLONE_CONFIG_MOTO_PROVIDER": "Other",
        "RCLONE_CONFIG_MOTO_ENDPOINT": "http://127.0.0.1:\(port)", "RCLONE_CONFIG_MOTO_ACCESS_KEY_ID": "test",
        "RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY": "test", "RCLONE_CONFIG_MOTO_FORCE_PATH_STYLE": "true",
        "RCLONE_CONFIG_MOTO_REGION": "us-east-1",
      ]
    }

    func stop() { process.kill() }
    deinit { process.kill() }
  }

  @Test func s3RemoteRoundTripAndCatchUpAfterTheServerWasDown() throws {
    try Self.requireRclone()
    let moto = try MotoServer()
    var environment = moto.environment
    environment["AWS_CA_BUNDLE"] = "/nonexistent/ca.pem"  // what this image exports; tgsess must drop it
    let made = try runProcess(
      Self.rclone, ["mkdir", "moto:tgsess"], environment: moto.environment.merging(["AWS_CA_BUNDLE": ""]) { $1 })
    #expect(made.status == 0, "\(made.stderr)")
    let fleet = try TestFleet(users: 2)
    try Self.configure(fleet, remotes: [("s3", "moto:tgsess")])
    try fleet.tgsessOK(["backup"], environment: environment)
    let listed = try fleet.tgsessJSON([ListedArchive].self, ["list", "--remote", "s3"], environment: environment)
    #expect(Self.fileNames(listed) == Self.archiveNames(under: fleet.root + "/backups"))
    // The server goes away: the local backup still counts, the run is partial.
    moto.stop()
    let user = try #require(try fleet.sessionUserIDs().first)
    let down = try fleet.tgsess(
      ["backup", "--user", String(user), "--reason", "Manual", "--json"],
      environment: environment.merging(["TGSESS_RETRY_BASE_MS": "1"]) { $1 })
    #expect(down.status == 3, "\(down.stderr)")
    #expect(Self.archiveNames(under: fleet.root + "/backups").count == listed.count + 1)
    // A new server (empty bucket) comes back: push catches up with everything.
    let again = try MotoServer()
    var environment2 = again.environment
    environment2["AWS_CA_BUNDLE"] = "/nonexistent/ca.pem"
    #expect(
      try runProcess(
        Self.rclone, ["mkdir", "moto:tgsess"], environment: again.environment.merging(["AWS_CA_BUNDLE": ""]) { $1 }
      ).status == 0)
    let push = try fleet.tgsess(["push", "--json"], environment: environment2)
    #expect(push.status == 0, "\(push.stderr)")
    let listed2 = try fleet.tgsessJSON([ListedArchive].self, ["list", "--remote", "s3"], environment: environment2)
    #expect(listed2.count == listed.count + 1)
  }
}

import Foundation
import Jobs
import Store
import TestSupport
import Testing

/// The heartbeat from `tgsess watch`'s own pushes, the JSON sidecar in the heartbeat and in a
/// hand-over, and which `--target` directories the cross-host guard covers.
extension FleetTests {
  // MARK: - Watch's pushes write the heartbeat

  /// A login only watch has seen (no push, no check since) is in the fleet view once watch's
  /// push of its archive verified, with its key's fingerprint; its sidecar is named, never read.
  @Test func aLoginSeenOnlyByWatchIsInTheFleetView() throws {
    let remote = try TemporaryDirectory("tgsess-remote")
    let hostA = try Self.host("host-a", remote: remote.path, seed: 61)
    try hostA.tgsessOK(["backup"])
    let user: Int64 = 5_550_061
    #expect(try Self.hostState(remote.path, "host-a").users.allSatisfy { $0.id != user })
    // The login: the real Telethon writes the file, the farm's sidecar sits beside it.
    let path = try Self.telethonSession(hostA, userID: user)
    let secrets = try SidecarCLITests.writeSidecar(hostA, userID: user)
    let fingerprint = try SessionFileInspector.inspect(path: path).identity.authKey.fingerprint

    let watch = try hostA.tgsess(["watch", "--once", "--json"])
    #expect(watch.status == 0, "\(watch.stdout) \(watch.stderr)")
    let state = try Self.hostState(remote.path, "host-a")
    let entry = try #require(state.users.first { $0.id == user }, "the heartbeat names the new login")
    #expect(entry.authKeyFingerprint == fingerprint)
    #expect(entry.hasSidecar == true)
    let sidecarWrite = try FileSystem.modification(of: hostA.deployment.sidecarPath(userID: user)).date
    #expect(entry.sidecarWrittenAt.map(HostState.milliseconds) == HostState.milliseconds(sidecarWrite))
    #expect(state.users.filter { $0.id != user }.allSatisfy { $0.hasSidecar == false })
    let text = try String(contentsOfFile: remote.path + "/host-a/" + HostState.fileName, encoding: .utf8)
    #expect(!text.contains(secrets.appHash) && !text.contains(secrets.password))

    let fleet = try decodeJSON(FleetReport.self, from: try hostA.tgsess(["fleet", "--json"]))
    let host = try #require(fleet.hosts.first { $0.deploymentName == "host-a" })
    #expect(host.users == (try hostA.sessionUserIDs()).count)
  }

  /// The same session copied to a second host and seen there only by watch: both watches'
  /// pushes write their heartbeats, and the fleet view is CRITICAL within that one cycle.
  @Test func theSameKeyOnTwoHostsIsCriticalWithinTheWatchCycle() throws {
    let remote = try TemporaryDirectory("tgsess-remote")
    let hostA = try Self.host("host-a", remote: remote.path, seed: 62)
    let hostB = try Self.host("host-b", remote: remote.path, seed: 63, keysFrom: hostA)
    for host in [hostA, hostB] { try host.tgsessOK(["backup"]) }
    let before = try decodeJSON(FleetReport.self, from: try hostA.tgsess(["fleet", "--json"]))
    #expect(!before.findings.contains { $0.kind == .duplicateKey })

    let user: Int64 = 5_550_062
    let path = try Self.telethonSession(hostA, userID: user)
    try FileManager.default.copyItem(atPath: path, toPath: hostB.sessionPath(user))
    for host in [hostA, hostB] {
      let watch = try host.tgsess(["watch", "--once"])
      #expect(watch.status == 0, "\(watch.stdout) \(watch.stderr)")
    }
    let run = try hostA.tgsess(["fleet", "--json"])
    #expect(run.status == 2, "\(run.stdout) \(run.stderr)")
    let report = try decodeJSON(FleetReport.self, from: run)
    let duplicate = try #require(report.findings.first { $0.kind == .duplicateKey })
    #expect(duplicate.userID == user)
    #expect(duplicate.message.hasPrefix("user \(user): the same key is in use on host-a and host-b"))
  }

  /// A heartbeat watch cannot write fails that remote's push like a copy that failed: the
  /// textfile counts it, `--once` ends partial and names it, and nothing half-written is left.
  @Test func aHeartbeatWatchCannotWriteFailsThePush() throws {
    let remote = try TemporaryDirectory("tgsess-remote")
    let hostA = try Self.host("host-a", remote: remote.path, seed: 64)
    try hostA.tgsessOK(["backup"])
    // A directory where the heartbeat goes: rclone can copy archives, not move the file there.
    let heartbeat = remote.path + "/host-a/" + HostState.fileName
    try FileManager.default.removeItem(atPath: heartbeat)
    try FileSystem.makeDirectory(heartbeat + "/in-the-way")
    let user: Int64 = 5_550_064
    try Self.telethonSession(hostA, userID: user)
    let prom = hostA.directory.file("watch.prom")

    let run = try hostA.tgsess(["watch", "--once", "--json", "--prometheus", prom, "--retry-base-ms", "20"])
    #expect(run.status == 3, "\(run.stdout) \(run.stderr)")
    let result = try decodeJSON(WatchResult.self, from: run)
    let offsite = try #require(result.offsite.first)
    #expect(offsite.remote == "usb" && offsite.pending >= 1)
    #expect(offsite.lastError?.contains("remote usb: the heartbeat was not written") == true, "\(offsite)")
    // The archive itself reached the remote; only the heartbeat is missing.
    let archive = try #require(result.archives.first { $0.userID == user })
    #expect(OffsiteTests.archiveNames(under: remote.path + "/host-a").contains { $0.hasPrefix(archive.archiveID) })
    let metrics = try Exposition(try String(contentsOfFile: prom, encoding: .utf8))
    #expect(metrics.samples("tgsess_watch_remote_failures_total").reduce(0) { $0 + $1.value } >= 1)
    #expect(metrics.samples("tgsess_watch_remote_ok").first?.value == 0)
    let names = try FileManager.default.contentsOfDirectory(atPath: remote.path + "/host-a")
    #expect(!names.contains { $0.contains(".tmp-") }, "\(names)")

    // Once the way is clear, the next run's push writes it.
    try FileManager.default.removeItem(atPath: heartbeat)
    let again = try hostA.tgsess(["watch", "--once"])
    #expect(again.status == 0, "\(again.stdout) \(again.stderr)")
    #expect(try Self.hostState(remote.path, "host-a").users.contains { $0.id == user })
  }

  // MARK: - The sidecar moves with a hand-over

  /// A hand-over moves the JSON sidecar aside with the session file, and the new host's restore
  /// brings the pair back as one.
  @Test func aHandoverMovesTheSidecarWithTheSession() throws {
    let remote = try TemporaryDirectory("tgsess-remote")
    let hostA = try Self.host("host-a", remote: remote.path, seed: 65)
    let hostB = try Self.host("host-b", remote: remote.path, seed: 66, keysFrom: hostA)
    let user: Int64 = 5_550_065
    try Self.telethonSession(hostA, userID: user)
    try SidecarCLITests.writeSidecar(hostA, userID: user)
    let sidecar = hostA.deployment.sidecarPath(userID: user)
    let sidecarHash = try FileSystem.sha256(ofFile: sidecar)
    try hostA.tgsessOK(["backup"])

    let handover = try decodeJSON(
      HandoverResult.self, from: try hostA.tgsess(["handover", "--user", String(user), "--json"]))
    #expect(!FileSystem.exists(hostA.sessionPath(user)))
    #expect(!FileSystem.exists(sidecar), "the sidecar left with its session file")
    let movedSidecar = try #require(handover.movedTo.first { $0.hasSuffix("/user_\(user).json") })
    #expect(movedSidecar.hasPrefix(hostA.root + "/sessions/handed-over/") && movedSidecar.contains("-user_\(user)/"))
    #expect(try FileSystem.sha256(ofFile: movedSidecar) == sidecarHash)
    #expect(handover.movedTo.first?.hasSuffix("/user_\(user).session") == true, "the session file first")

    let restored = try hostB.tgsess([
      "restore", "--from-remote", "usb", "--user", String(user), "--from-deployment", "host-a",
    ])
    #expect(restored.status == 0, "\(restored.stderr)")
    #expect(try FileSystem.sha256(ofFile: hostB.deployment.sidecarPath(userID: user)) == sidecarHash)
  }

  // MARK: - Which --target the cross-host guard covers

  /// A `--target` inside a deployment is guarded like the live one; a scratch directory outside
  /// every deployment is not (no bot reads it).
  @Test func aTargetABotCouldUseIsGuardedAndAScratchOneIsNot() throws {
    let remote = try TemporaryDirectory("tgsess-remote")
    let hostA = try Self.host("host-a", remote: remote.path, seed: 67)
    let hostB = try Self.host("host-b", remote: remote.path, seed: 68, keysFrom: hostA)
    let user: Int64 = 5_550_067
    try Self.telethonSession(hostA, userID: user)
    try hostA.tgsessOK(["backup"])
    let fromA = ["restore", "--from-remote", "usb", "--from-deployment", "host-a", "--target"]

    // Inside host-b's deployment: refused, saying why the target counts.
    let inside = hostB.root + "/restored"
    let refused = try hostB.tgsess(fromA + [inside])
    #expect(refused.status == 1, "\(refused.stdout) \(refused.stderr)")
    #expect(refused.stderr.contains("user \(user) is in use on host-a"), "\(refused.stderr)")
    #expect(refused.stderr.contains("--target \(inside) lies in this deployment"), "\(refused.stderr)")
    #expect(!FileSystem.exists(inside + "/sessions/user_\(user).session"))

    // A scratch directory beside the deployments: restored, the fleet's live copy untouched.
    let scratch = try TemporaryDirectory("tgsess-scratch")
    let copy = scratch.file("copy")
    let restored = try hostB.tgsess(fromA + [copy])
    #expect(restored.status == 0, "\(restored.stderr)")
    #expect(FileSystem.exists(copy + "/sessions/user_\(user).session"))
    #expect(FileSystem.exists(hostA.sessionPath(user)))
  }
}

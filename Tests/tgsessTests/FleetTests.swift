import Foundation
import Jobs
import Store
import TestSupport
import Testing

/// Several deployments on one machine stand in for hosts (their own roots and deployment_names)
/// sharing one rclone local-path remote: the heartbeat, the fleet view, the cross-host restore
/// guard and the hand-over, with a real Telethon session.
@Suite(.serialized) struct FleetTests {
  /// A host: a generated deployment named `name` whose one remote `usb` is `remote`, initialized;
  /// with `keysFrom`, it shares that host's keys (one escrowed identity for the fleet).
  static func host(_ name: String, remote: String, users: Int = 2, seed: UInt64, keysFrom: TestFleet? = nil) throws
    -> TestFleet
  {
    try OffsiteTests.requireRclone()
    let fleet = try TestFleet(users: users, seed: seed, label: "tgsess-\(name)")
    try OffsiteTests.configure(fleet, name: name, remotes: [("usb", remote)])
    if let keysFrom {
      try? FileManager.default.removeItem(atPath: fleet.root + "/keys")
      try FileManager.default.copyItem(atPath: keysFrom.root + "/keys", toPath: fleet.root + "/keys")
    }
    try fleet.tgsessOK(["init"])
    return fleet
  }

  /// A real Telethon session file (Telethon writes it) for `userID` in `fleet`; returns its path.
  @discardableResult
  static func telethonSession(_ fleet: TestFleet, userID: Int64) throws -> String {
    let path = fleet.sessionPath(userID)
    _ = try PeerScripts.writeSession(PeerScripts.telethonFile, arguments: [path])
    return path
  }

  static func hostState(_ remote: String, _ name: String) throws -> HostState {
    let path = remote + "/" + name + "/" + HostState.fileName
    return try HostState.decode(
      try Data(contentsOf: URL(fileURLWithPath: path)), name: path, directoryName: name)
  }

  @Test func pushAndCheckWriteTheHeartbeatWithoutSecrets() throws {
    let remote = try TemporaryDirectory("tgsess-remote")
    let hostA = try Self.host("host-a", remote: remote.path, users: 3, seed: 11)
    try hostA.tgsessOK(["backup"])
    var state = try Self.hostState(remote.path, "host-a")
    #expect(state.version == 1 && state.deploymentName == "host-a")
    #expect(state.lastFullBackupAt != nil)
    #expect(state.checkState == nil)
    let users = try hostA.sessionUserIDs()
    #expect(state.users.map(\.id) == users)
    for user in state.users {
      let info = try SessionFileInspector.inspect(path: hostA.sessionPath(user.id))
      #expect(user.authKeyFingerprint == info.identity.authKey.fingerprint)
      #expect(user.dc == info.identity.dcID && user.format == info.format.shortName)
      let modified = try FileSystem.modification(of: hostA.sessionPath(user.id)).date
      #expect(user.sessionWrittenAt.map(HostState.milliseconds) == HostState.milliseconds(modified))
    }
    // No auth key, in any encoding we store it, is in the file.
    let text = try String(contentsOfFile: remote.path + "/host-a/" + HostState.fileName, encoding: .utf8)
    for user in users {
      let key = try hostA.sqlite("SELECT lower(hex(auth_key)) FROM sessions", path: hostA.sessionPath(user))
      if !key.isEmpty { #expect(!text.contains(key)) }
    }
    try hostA.collectSecrets()
    #expect(try hostA.leakedSecrets().isEmpty)
    // A check that records carries its verdict; the temporary upload name is gone.
    _ = try hostA.tgsess(["check"])
    state = try Self.hostState(remote.path, "host-a")
    #expect(state.checkState != nil && state.checkedAt != nil)
    let names = try FileManager.default.contentsOfDirectory(atPath: remote.path + "/host-a")
    #expect(!names.contains { $0.contains(".tmp-") })
    // The remote's own archive listing never takes the state file for a record.
    #expect(try hostA.listedArchives(["--remote", "usb"]).count == (try hostA.listedArchives()).count)
  }

  @Test func theSameTelethonSessionLiveOnTwoHostsIsCritical() throws {
    let remote = try TemporaryDirectory("tgsess-remote")
    let hostA = try Self.host("host-a", remote: remote.path, seed: 21)
    let hostB = try Self.host("host-b", remote: remote.path, seed: 22, keysFrom: hostA)
    let hostC = try Self.host("host-c", remote: remote.path, seed: 23, keysFrom: hostA)
    let user: Int64 = 5_550_042
    let path = try Self.telethonSession(hostA, userID: user)
    // The same file copied to host-b: what a careless migration or a drill copy started by mistake does.
    try FileManager.default.copyItem(atPath: path, toPath: hostB.sessionPath(user))
    for host in [hostA, hostB, hostC] { try host.tgsessOK(["backup"]) }

    let run = try hostC.tgsess(["fleet", "--json"])
    #expect(run.status == 2, "\(run.stdout) \(run.stderr)")
    let report = try decodeJSON(FleetReport.self, from: run)
    #expect(report.hosts.map(\.deploymentName) == ["host-a", "host-b", "host-c"])
    let duplicate = try #require(report.findings.first { $0.kind == .duplicateKey })
    #expect(duplicate.userID == user)
    #expect(
      duplicate.message.hasPrefix(
        "user \(user): the same key is in use on host-a and host-b; Telegram will revoke it (AUTH_KEY_DUPLICATED)"))
    #expect(duplicate.message.contains("last write on host-a") && duplicate.message.contains("last write on host-b"))
    // Only that user: the generated users differ per host.
    #expect(report.findings.filter { $0.kind == .duplicateKey }.count == 1)
    let nagios = try hostC.tgsess(["fleet", "--nagios"])
    #expect(nagios.status == 2)
    #expect(nagiosProblem(nagios.stdout, state: "CRITICAL") == nil, "\(nagios.stdout)")
    let text = try hostC.tgsess(["fleet"])
    #expect(text.stdout.contains("CRITICAL: user \(user): the same key is in use on host-a and host-b"))
    let prom = hostC.directory.file("fleet.prom")
    _ = try hostC.tgsess(["fleet", "--prometheus", prom])
    let metrics = try String(contentsOfFile: prom, encoding: .utf8)
    #expect(metrics.contains("tgsess_fleet_duplicate_keys 1"))
    #expect(metrics.contains("tgsess_fleet_heartbeat_timestamp_seconds{deployment=\"host-b\"}"))

    // A different key for the same user on host-c is a WARNING of its own.
    try Self.telethonSession(hostC, userID: user)
    try hostC.tgsessOK(["push"])
    let mixed = try decodeJSON(FleetReport.self, from: try hostC.tgsess(["fleet", "--json"]))
    #expect(mixed.findings.contains { $0.kind == .differentKeys && $0.userID == user && $0.state == .warning })
  }

  @Test func aRestoreOntoASecondHostIsRefusedUntilTheSessionIsHandedOver() throws {
    let remote = try TemporaryDirectory("tgsess-remote")
    let hostA = try Self.host("host-a", remote: remote.path, seed: 31)
    let hostB = try Self.host("host-b", remote: remote.path, seed: 32, keysFrom: hostA)
    let user: Int64 = 5_550_077
    try Self.telethonSession(hostA, userID: user)
    _ = try hostA.sqlite(
      "INSERT INTO user_sessions (user_id, api_id, created_at, updated_at) VALUES (\(user), 12345, '2026-12-01 10:00:00', '2026-12-01 10:00:00')"
    )
    try hostA.tgsessOK(["backup"])
    try hostB.tgsessOK(["backup"])
    let restore = ["restore", "--from-remote", "usb", "--user", String(user), "--from-deployment", "host-a"]

    // Host-a uses the session: host-b refuses, naming host-a and the hand-over.
    let refused = try hostB.tgsess(restore)
    #expect(refused.status == 1)
    #expect(refused.stderr.contains("user \(user) is in use on host-a"), "\(refused.stderr)")
    #expect(refused.stderr.contains("tgsess handover --user \(user)"))
    #expect(refused.stderr.contains("AUTH_KEY_DUPLICATED"))
    #expect(!FileSystem.exists(hostB.sessionPath(user)))
    // Not even a --target copy inside host-b's deployment, where a bot could use it.
    let target = hostB.root + "/copy"
    let targetRun = try hostB.tgsess([
      "restore", "--from-remote", "usb", "--from-deployment", "host-a", "--target", target,
    ])
    #expect(targetRun.status == 1 && targetRun.stderr.contains("is in use on host-a"), "\(targetRun.stderr)")
    #expect(!FileSystem.exists(target + "/sessions/user_\(user).session"))

    // While the userbot still has the file open, the hand-over refuses and moves nothing.
    let holder = try LiveHolderCLITests.hold(hostA.sessionPath(user), .open)
    let held = try hostA.tgsess(["handover", "--user", String(user)])
    holder.kill()
    _ = holder.wait()
    #expect(held.status == 1 && held.stderr.contains("user \(user)'s session is in use here"), "\(held.stderr)")
    #expect(FileSystem.exists(hostA.sessionPath(user)))

    // The hand-over: a proven, pushed "Before hand-over" backup, the file aside, the row marked.
    let original = try hostA.sqlite("SELECT hex(auth_key) FROM sessions", path: hostA.sessionPath(user))
    let handover = try decodeJSON(
      HandoverResult.self, from: try hostA.tgsess(["handover", "--user", String(user), "--json"]))
    #expect(handover.remotes == ["usb"] && handover.deploymentName == "host-a" && handover.isRowMarked)
    let archiveID = try #require(handover.archiveID)
    #expect(archiveID.contains("-u\(user)-"))
    #expect(!FileSystem.exists(hostA.sessionPath(user)))
    #expect(handover.movedTo.first.map(FileSystem.exists) == true)
    #expect(OffsiteTests.archiveNames(under: remote.path + "/host-a").contains { $0.hasPrefix(archiveID) })
    #expect(try Self.hostState(remote.path, "host-a").users.allSatisfy { $0.id != user })
    let listed = try hostA.listedArchives(["--user", String(user)])
    #expect(listed.first?.reason == BackupReason.beforeHandover)
    // A replay does nothing; neither recover nor recover --all brings it back on host-a.
    #expect(
      try decodeJSON(HandoverResult.self, from: try hostA.tgsess(["handover", "--user", String(user), "--json"]))
        .wasHandedOver)
    let recover = try hostA.tgsess(["recover", "--user", String(user)])
    #expect(recover.status == 1 && recover.stderr.contains("was handed over to another host"), "\(recover.stderr)")
    _ = try hostA.tgsess(["recover", "--all"])
    #expect(!FileSystem.exists(hostA.sessionPath(user)))

    // Host-b now takes it, from host-a's archives; the fleet shows one owner.
    let restored = try hostB.tgsess(restore)
    #expect(restored.status == 0, "\(restored.stderr)")
    #expect(try hostB.sqlite("SELECT hex(auth_key) FROM sessions", path: hostB.sessionPath(user)) == original)
    try hostB.tgsessOK(["push"])
    let report = try decodeJSON(FleetReport.self, from: try hostB.tgsess(["fleet", "--json"]))
    #expect(!report.findings.contains { $0.userID == user }, "\(report.findings)")
  }

  @Test func hostileStateFilesAreOneFindingEachAndHideNoHost() throws {
    let remote = try TemporaryDirectory("tgsess-remote")
    let hostA = try Self.host("host-a", remote: remote.path, seed: 41)
    try hostA.tgsessOK(["backup"])
    func plant(_ directory: String, _ bytes: Data) throws {
      try FileSystem.makeDirectory(remote.path + "/" + directory)
      try bytes.write(to: URL(fileURLWithPath: remote.path + "/" + directory + "/" + HostState.fileName))
    }
    let good = try String(contentsOfFile: remote.path + "/host-a/" + HostState.fileName, encoding: .utf8)
    try plant("garbled", Data("{\"version\": 1, \"host\": ".utf8))
    try plant("newer", Data("{\"version\": 2}".utf8))
    try plant(
      "types",
      Data(
        good.replacingOccurrences(of: "\"host-a\"", with: "\"types\"").replacingOccurrences(
          of: "\"version\":1", with: "\"version\":\"1\""
        ).utf8))
    try plant(
      "wrong-type",
      Data(good.replacingOccurrences(of: "\"deployment_name\":\"host-a\"", with: "\"deployment_name\":42").utf8))
    try plant("claims", Data(good.utf8))  // says host-a, sits under claims
    try plant("control", Data(good.replacingOccurrences(of: "\"host-a\"", with: "\"contr\\u001b[31mol\"").utf8))
    try plant("huge", Data(count: Int(HostState.maxByteCount) + 1))
    try plant("array", Data("[1,2,3]".utf8))

    let run = try hostA.tgsess(["fleet", "--json"])
    let report = try decodeJSON(FleetReport.self, from: run)
    #expect(run.status == 3, "\(run.stdout)")
    // host-a is still judged.
    #expect(report.hosts.map(\.deploymentName) == ["host-a"])
    let bad = report.findings.filter { $0.kind == .badStateFile }
    #expect(bad.count == 8, "\(bad.map(\.message))")
    for name in ["garbled", "newer", "types", "wrong-type", "claims", "control", "huge", "array"] {
      let finding = bad.first { $0.message.contains("/\(name)/\(HostState.fileName)") }
      #expect(finding != nil, "no finding for \(name)")
      #expect(finding?.message.contains("\n") == false)
      #expect(finding?.message.contains("\u{1b}") == false)
    }
    #expect(bad.contains { $0.message.contains("format version 2") })
    #expect(bad.contains { $0.message.contains("claims deployment_name 'host-a' but sits under 'claims'") })
    let text = try hostA.tgsess(["fleet"])
    #expect(!text.stdout.contains("\u{1b}"))
  }

  /// The same over S3 (moto on loopback): the heartbeat's upload-then-move is a server-side copy
  /// there, and fleet reads the bucket with no key.
  @Test func overS3TheSameSessionOnTwoHostsIsCritical() throws {
    let moto = try OffsiteTests.MotoServer()
    var environment = moto.environment
    environment["AWS_CA_BUNDLE"] = "/nonexistent/ca.pem"
    let made = try runProcess(
      OffsiteTests.rclone, ["mkdir", "moto:fleet"],
      environment: moto.environment.merging(["AWS_CA_BUNDLE": ""]) { $1 })
    #expect(made.status == 0, "\(made.stderr)")
    let hostA = try Self.host("host-a", remote: "moto:fleet", seed: 51)
    let hostB = try Self.host("host-b", remote: "moto:fleet", seed: 52, keysFrom: hostA)
    let user: Int64 = 5_550_099
    let path = try Self.telethonSession(hostA, userID: user)
    try FileManager.default.copyItem(atPath: path, toPath: hostB.sessionPath(user))
    for host in [hostA, hostB] { try host.tgsessOK(["backup"], environment: environment) }
    let listed = try runProcess(
      OffsiteTests.rclone, ["lsf", "-R", "moto:fleet"],
      environment: moto.environment.merging(["AWS_CA_BUNDLE": ""]) { $1 })
    #expect(
      listed.stdout.contains("host-a/\(HostState.fileName)") && listed.stdout.contains("host-b/\(HostState.fileName)"))
    #expect(!listed.stdout.contains(".tmp-"))
    let run = try hostA.tgsess(["fleet", "--json"], environment: environment)
    #expect(run.status == 2, "\(run.stdout) \(run.stderr)")
    let report = try decodeJSON(FleetReport.self, from: run)
    #expect(report.findings.contains { $0.kind == .duplicateKey && $0.userID == user })
    // A restore of that user onto host-b's root from host-a's archives is refused there too.
    try FileManager.default.removeItem(atPath: hostB.sessionPath(user))
    try hostB.tgsessOK(["push"], environment: environment)
    let refused = try hostB.tgsess(
      ["restore", "--from-remote", "usb", "--user", String(user), "--from-deployment", "host-a"],
      environment: environment)
    #expect(refused.status == 1 && refused.stderr.contains("user \(user) is in use on host-a"), "\(refused.stderr)")
    moto.stop()
  }
}

import Foundation
import Jobs
import Store
import TestSupport
import Testing

/// Farms' formats: a session file with its JSON sidecar (`user_<id>.json`) as one unit through
/// backup, restore, recover and check; Hydrogram's files through backup and restore.
@Suite(.serialized) struct SidecarCLITests {
  /// The secrets a test sidecar holds: both long enough for the secret scan (16+ characters).
  struct SidecarSecrets {
    var appHash: String
    var password: String
  }

  /// Writes `sessions/user_<id>.json` in the opentele / TGConvertor shape, with fresh secrets.
  @discardableResult
  static func writeSidecar(_ fleet: TestFleet, userID: Int64, device: String = "Samsung Galaxy S24") throws
    -> SidecarSecrets
  {
    let secrets = SidecarSecrets(
      appHash: Hex.encode((0..<16).map { _ in UInt8.random(in: 0...255) }),
      password: "2fa-" + Hex.encode((0..<12).map { _ in UInt8.random(in: 0...255) }))
    let object: [String: Any] = [
      "session_file": "user_\(userID)", "phone": "1555\(userID % 10_000_000)", "user_id": userID,
      "app_id": 2040, "app_hash": secrets.appHash, "device": device, "sdk": "SDK 34", "app_version": "11.2.3",
      "lang_pack": "android", "system_lang_pack": "en-US", "lang_code": "en", "twoFA": secrets.password,
    ]
    let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    try data.write(to: URL(fileURLWithPath: sidecarPath(fleet, userID)))
    return secrets
  }

  static func sidecarPath(_ fleet: TestFleet, _ userID: Int64) -> String {
    fleet.deployment.sidecarPath(userID: userID)
  }

  /// The pair as values: the session file's identity (archives hold SQLite snapshots of it, so
  /// its bytes are compared with the archive's, not with the live file's) and the sidecar's SHA-256.
  static func pair(_ fleet: TestFleet, _ userID: Int64) throws -> [String] {
    let info = try SessionFileInspector.inspect(path: fleet.sessionPath(userID))
    return [
      "\(info.identity)", try FileSystem.sha256(ofFile: sidecarPath(fleet, userID)),
    ]
  }

  /// A fleet with two file-only users whose sessions the real Telethon 1.42 and Pyrogram wrote,
  /// each with a sidecar, backed up.
  static func fleetWithPairs() throws -> (TestFleet, [Int64]) {
    let fleet = try TestFleet(users: 3, entities: 20, collectsSecrets: true)
    let users: [(Int64, String)] = [(700_000_101, "telethon142"), (700_000_102, "pyrogram")]
    for (user, library) in users {
      try BackupCLITests.writeRealSession(fleet, userID: user, library: library)
      try writeSidecar(fleet, userID: user)
    }
    try fleet.collectSecrets()
    return (fleet, users.map(\.0))
  }

  // MARK: - Backup and restore

  @Test func aPairGoesThroughBackupAndRestoreUserWhole() throws {
    try StockTools.require()
    let (fleet, users) = try Self.fleetWithPairs()
    let backup = try fleet.tgsessJSON(BackupResult.self, ["backup"])
    #expect(backup.failures.isEmpty, "\(backup.failures)")
    let saved = try Dictionary(uniqueKeysWithValues: users.map { ($0, try Self.pair(fleet, $0)) })

    // The full snapshot and each per-user archive hold the pair, the sidecar as its own entry.
    let scratch = try TemporaryDirectory()
    var archivedSessionSHA: [Int64: String] = [:]
    let full = try #require(backup.archives.first { $0.kind == .full })
    let (fullProblems, fullManifest, _) = try StockTools.extractAndVerify(
      full.path, identity: fleet.identityPath, scratch: scratch.path)
    #expect(fullProblems.isEmpty, "\(fullProblems)")
    for user in users {
      let archive = try #require(backup.archives.first { $0.kind == .user && $0.userID == user })
      let (problems, manifest, directory) = try StockTools.extractAndVerify(
        archive.path, identity: fleet.identityPath, scratch: scratch.path)
      #expect(problems.isEmpty, "\(problems)")
      #expect(manifest.entries.map(\.path) == ["sessions/user_\(user).session", "sessions/user_\(user).json"])
      let sidecar = try #require(manifest.entries.first { $0.role == .sessionSidecar })
      #expect(sidecar.userID == user && !sidecar.isSQLite)
      #expect(try FileSystem.sha256(ofFile: directory + "/sessions/user_\(user).json") == saved[user]?[1])
      archivedSessionSHA[user] = try #require(manifest.entries.first { $0.role == .session }).sha256
      #expect(fullManifest.entries.contains { $0.path == "sessions/user_\(user).json" && $0.role == .sessionSidecar })
    }

    // A new login replaces both files; restore --user brings the archived pair back, byte for byte.
    let user = users[0]
    try BackupCLITests.writeRealSession(fleet, userID: user, library: "telethon142")
    try Self.writeSidecar(fleet, userID: user, device: "Pixel 9")
    try fleet.collectSecrets()
    let replaced = try Self.pair(fleet, user)
    #expect(replaced[0] != saved[user]?[0] && replaced[1] != saved[user]?[1])
    let restored = try fleet.tgsessJSON(RestoreResult.self, ["restore", "latest", "--user", String(user)])
    #expect(restored.problems.isEmpty, "\(restored.problems)")
    #expect(
      Set(restored.files.map(\.path)) == [fleet.sessionPath(user), Self.sidecarPath(fleet, user)], "\(restored.files)")
    #expect(try Self.pair(fleet, user) == saved[user])
    // Byte for byte what the archive holds.
    #expect(try FileSystem.sha256(ofFile: fleet.sessionPath(user)) == archivedSessionSHA[user])
    #expect(try SessionFileInspector.inspect(path: fleet.sessionPath(user)).format == .telethon(version: 7))
    #expect(!(try fleet.sessionDirectoryNames()).contains { $0.contains(".tgsess-new") || $0.contains("pair-commit") })

    // The undo archive holds the replaced pair: restoring it puts that pair back.
    let undo = try #require(restored.undo)
    try fleet.tgsessOK(["restore", undo, "--user", String(user)])
    #expect(try Self.pair(fleet, user) == replaced)

    // A whole restore of the full snapshot puts every pair back too.
    try fleet.tgsessOK(["restore", full.id])
    for user in users { #expect(try Self.pair(fleet, user) == saved[user]) }
    try BackupCLITests.expectNoLeaks(fleet)
  }

  /// A session file restored from an archive without a sidecar never sits beside the old
  /// sidecar: that one is moved aside (kept), and the restore says so.
  @Test func aSessionRestoredWithoutItsSidecarMovesTheLiveSidecarAside() throws {
    let fleet = try TestFleet(users: 2, entities: 20, collectsSecrets: true)
    let user: Int64 = 700_000_111
    try BackupCLITests.writeRealSession(fleet, userID: user, library: "pyrogram")
    try fleet.tgsessOK(["backup", "--user", String(user)])
    let archived = "\(try SessionFileInspector.inspect(path: fleet.sessionPath(user)).identity)"
    try BackupCLITests.writeRealSession(fleet, userID: user, library: "pyrogram")
    try Self.writeSidecar(fleet, userID: user)
    let sidecar = try FileSystem.read(Self.sidecarPath(fleet, user))
    try fleet.collectSecrets()
    let result = try fleet.tgsessJSON(RestoreResult.self, ["restore", "latest", "--user", String(user)])
    #expect("\(try SessionFileInspector.inspect(path: fleet.sessionPath(user)).identity)" == archived)
    #expect(!FileSystem.exists(Self.sidecarPath(fleet, user)))
    #expect(
      result.warnings.contains { $0.hasPrefix(Self.sidecarPath(fleet, user) + ": moved aside") }, "\(result.warnings)")
    let aside = try #require(
      try fleet.sessionDirectoryNames().first { $0.hasPrefix("user_\(user).json.before-restore-") })
    #expect(try FileSystem.read(fleet.sessionsDirectory + "/" + aside) == sidecar)
    try BackupCLITests.expectNoLeaks(fleet)
  }

  // MARK: - Crashes

  /// kill -9 between the pair's two renames: the new sidecar may sit beside the old session file
  /// (never the reverse), and the next tgsess run that touches sessions completes the pair.
  @Test func aRestoreKilledMidPairNeverLeavesANewSessionBesideAnOldSidecar() throws {
    let (fleet, users) = try Self.fleetWithPairs()
    let user = users[1]
    let id = try #require(
      try fleet.tgsessJSON(BackupResult.self, ["backup", "--user", String(user)]).archives.first?.id)
    let archived = try Self.pair(fleet, user)
    try BackupCLITests.writeRealSession(fleet, userID: user, library: "pyrogram")
    try Self.writeSidecar(fleet, userID: user, device: "iPhone 15")
    try fleet.collectSecrets()
    let live = try Self.pair(fleet, user)

    // Killed before the commit point: the old pair stays, whole.
    let early = try fleet.tgsess(
      ["restore", id, "--user", String(user)], environment: ["TGSESS_CRASH_POINT": "pair.before-commit"])
    #expect(early.status == SIGKILL, "\(early.stdout) \(early.stderr)")
    #expect(try Self.pair(fleet, user) == live)

    // Killed between the renames: the sidecar is new, the session file still old.
    let crashed = try fleet.tgsess(
      ["restore", id, "--user", String(user)], environment: ["TGSESS_CRASH_POINT": "pair.between-files"])
    #expect(crashed.status == SIGKILL, "\(crashed.stdout) \(crashed.stderr)")
    let midway = try Self.pair(fleet, user)
    #expect(midway == [live[0], archived[1]], "the session file must never be new while the sidecar is old")
    #expect(try fleet.sessionDirectoryNames().contains(".user_\(user).pair-commit"))

    // check (which changes nothing) says so, naming the file.
    let check = try fleet.check()
    #expect(
      check.findings("user.sidecar", user: user).contains {
        $0.message.contains(
          "\(fleet.sessionPath(user)): a restore of this session file and its JSON sidecar was interrupted")
      }, "\(check.report)")
    #expect(try Self.pair(fleet, user) == midway)

    // The next backup completes the pair before it reads it, and archives the completed pair.
    let next = try fleet.tgsessJSON(BackupResult.self, ["backup", "--user", String(user)])
    #expect(try Self.pair(fleet, user) == archived)
    #expect(!(try fleet.sessionDirectoryNames()).contains { $0.contains(".tgsess-new") || $0.contains("pair-commit") })
    let scratch = try TemporaryDirectory()
    let archive = try #require(next.archives.first)
    let (problems, _, directory) = try StockTools.extractAndVerify(
      archive.path, identity: fleet.identityPath, scratch: scratch.path)
    #expect(problems.isEmpty, "\(problems)")
    #expect(try FileSystem.sha256(ofFile: directory + "/sessions/user_\(user).json") == archived[1])
    #expect(
      "\(try SessionFileInspector.inspect(path: directory + "/sessions/user_\(user).session").identity)" == archived[0])
    try BackupCLITests.expectNoLeaks(fleet)
  }

  // MARK: - Check and bad input

  @Test func aDamagedSidecarIsAFindingNamingTheFileAndFailsOnlyItsUsersBackup() throws {
    let (fleet, users) = try Self.fleetWithPairs()
    let user = users[0]
    let path = Self.sidecarPath(fleet, user)
    // Cut short mid-value: the secrets are in the damaged text too.
    let whole = try FileSystem.read(path)
    try FileSystem.writeAtomically(whole.prefix(whole.count - 9), to: path)

    let check = try fleet.check()
    let findings = check.findings("user.sidecar", user: user)
    #expect(findings.count == 1, "\(check.report)")
    #expect(findings.first?.state == "warning")
    #expect(findings.first?.message.contains("\(path): session sidecar is not valid JSON") == true, "\(check.report)")
    #expect(check.findings("user.sidecar", user: users[1]).isEmpty, "\(check.report)")
    let text = try fleet.tgsess(["check"])
    #expect(text.stdout.contains(path), "\(text.stdout)")

    // Backing up half a pair is refused for that user alone, naming the file.
    let backup = try fleet.tgsess(["backup", "--json"])
    #expect(backup.status == 3, "\(backup.stdout) \(backup.stderr)")
    let decoded = try decodeJSON(BackupResult.self, from: backup)
    #expect(decoded.failures.map(\.userID) == [user])
    #expect(decoded.failures.first?.reason.hasPrefix("\(path): session sidecar is not valid JSON") == true)
    #expect(decoded.archives.contains { $0.kind == .user && $0.userID == users[1] })

    // A sidecar that is JSON but not an object, and one larger than a sidecar can be.
    try FileSystem.writeAtomically(Data("[1, 2, 3]".utf8), to: path)
    #expect(
      try fleet.check().findings("user.sidecar", user: user).first?.message.contains(
        "\(path): session sidecar is JSON but not an object") == true)
    try FileSystem.writeAtomically(Data(repeating: 0x20, count: Int(SessionSidecar.maximumByteCount) + 1), to: path)
    #expect(
      try fleet.check().findings("user.sidecar", user: user).first?.message.contains("more than the 1048576") == true)
    try BackupCLITests.expectNoLeaks(fleet)
  }

  /// The sidecar's app_hash and 2FA password reach no output, verbose, JSON or failing; the scan
  /// does look for them (a positive control).
  @Test func sidecarSecretsNeverReachAnyOutput() throws {
    let (fleet, users) = try Self.fleetWithPairs()
    let secrets = try Self.writeSidecar(fleet, userID: users[0])
    try fleet.collectSecrets()
    for arguments in [
      ["backup", "-vv"], ["backup", "--json", "-vv"], ["list", "--json", "-v"],
      ["restore", "latest", "--user", String(users[0]), "--dry-run", "--json", "-vv"],
      ["restore", "latest", "--user", String(users[0]), "-vv"], ["status", "--json", "-vv"],
      ["check", "--json", "-vv"], ["check", "--deep", "-vv"],
      ["recover", "--user", String(users[0]), "--dry-run", "-vv"],
    ] {
      _ = try fleet.tgsess(arguments)
    }
    try FileSystem.writeAtomically(
      Data("{\"app_hash\": \"\(secrets.appHash)\", \"twoFA\": \"\(secrets.password)\"".utf8),
      to: Self.sidecarPath(fleet, users[0]))
    _ = try fleet.tgsess(["check", "--json", "-vv"])
    _ = try fleet.tgsess(["backup", "--user", String(users[0]), "--json", "-vv"])
    _ = try fleet.tgsess(["backup", "-vv"])
    try BackupCLITests.expectNoLeaks(fleet)

    // The scan knows both secrets: an output holding them is caught.
    fleet.keep("control", "hash \(secrets.appHash)", "password \(secrets.password)")
    let leaks = try fleet.leakedSecrets()
    #expect(leaks.contains("the app_hash of user_\(users[0]).json in the stdout of `control`"), "\(leaks)")
    #expect(leaks.contains("the twoFA of user_\(users[0]).json in the stderr of `control`"), "\(leaks)")
  }

  // MARK: - Recover

  /// A broken session file recovered from an archive comes back with its archived sidecar.
  @Test func recoverFromAnArchivePutsThePairBack() throws {
    let (fleet, users) = try Self.fleetWithPairs()
    let user = users[0]
    try fleet.tgsessOK(["backup", "--user", String(user)])
    let archived = try Self.pair(fleet, user)
    try Data(repeating: 0x41, count: 4096).write(to: URL(fileURLWithPath: fleet.sessionPath(user)))
    try Self.writeSidecar(fleet, userID: user, device: "Galaxy A54")
    try fleet.collectSecrets()
    let changed = try FileSystem.read(Self.sidecarPath(fleet, user))
    let recovered = try fleet.tgsess(["recover", "--user", String(user)])
    #expect(recovered.status == 0, "\(recovered.stdout) \(recovered.stderr)")
    #expect(try Self.pair(fleet, user) == archived)
    // The live sidecar it replaced is kept, moved aside.
    let aside = try #require(
      try fleet.sessionDirectoryNames().first { $0.hasPrefix("user_\(user).json.before-recover-") })
    #expect(try FileSystem.read(fleet.sessionsDirectory + "/" + aside) == changed)
    try BackupCLITests.expectNoLeaks(fleet)
  }

  // MARK: - Hydrogram

  /// The real Hydrogram writes a session; tgsess backs it up and restores it; Hydrogram loads it.
  @Test func hydrogramSessionBackedUpRestoredAndLoadedByHydrogram() throws {
    let fleet = try TestFleet(users: 2, entities: 20, collectsSecrets: true)
    let user: Int64 = 700_000_121
    try BackupCLITests.writeRealSession(fleet, userID: user, library: "hydrogram")
    try fleet.collectSecrets()
    let original = try SessionFileInspector.inspect(path: fleet.sessionPath(user))
    #expect(original.format.shortName == "hydrogram-v3")
    let backup = try fleet.tgsessJSON(BackupResult.self, ["backup", "--user", String(user)])
    let scratch = try TemporaryDirectory()
    // Stock tools open the archive (the WAL-mode file is not opened here: reading it would add
    // -wal and -shm files beside it).
    let extracted = scratch.file("x")
    try StockTools.extract(try #require(backup.archives.first).path, identity: fleet.identityPath, into: extracted)
    let manifest = try Manifest.decode(try FileSystem.read(extracted + "/manifest.json"), objectName: "archive")
    #expect(manifest.entries.first?.format == "hydrogram-v3")
    #expect(
      try FileSystem.sha256(ofFile: extracted + "/sessions/user_\(user).session") == manifest.entries.first?.sha256)

    try FileManager.default.removeItem(atPath: fleet.sessionPath(user))
    try fleet.tgsessOK(["restore", "latest", "--user", String(user)])
    let restored = try SessionFileInspector.inspect(path: fleet.sessionPath(user))
    #expect(restored.format.shortName == "hydrogram-v3")
    #expect(restored.identity == original.identity)
    #expect(restored.ownerUserID == user && restored.apiID == 12345)
    // Hydrogram opens it read-write (VACUUM): a copy is what it loads.
    let copy = scratch.file("user_\(user).session")
    try FileSystem.writeAtomically(try FileSystem.read(fleet.sessionPath(user)), to: copy)
    let loaded = try BackupCLITests.hydrogramLoad(copy)
    #expect(loaded.key == Hex.encode(original.identity.authKey.bytes))
    #expect(loaded.userID == user && loaded.dc == 2)
    try BackupCLITests.expectNoLeaks(fleet)
  }
}

extension BackupCLITests {
  /// What session_peer.py's `hydrogram-load` prints.
  struct HydrogramLoaded: Decodable {
    var key: String
    var userID: Int64
    var dc: Int
    enum CodingKeys: String, CodingKey {
      case key, dc
      case userID = "user_id"
    }
  }

  /// Has the real Hydrogram load the session file at `path`.
  static func hydrogramLoad(_ path: String) throws -> HydrogramLoaded {
    let script = try String(
      contentsOfFile: TestEnvironment.packageRoot + "/Tests/StoreTests/Fixtures/python/session_peer.py",
      encoding: .utf8)
    let result = try runPython(script, arguments: ["hydrogram-load", path], peer: "hydrogram")
    guard let line = result.stdout.split(separator: "\n").last(where: { $0.hasPrefix("RESULT ") }) else {
      throw TestHelperError("hydrogram-load printed no RESULT: \(result.stdout) \(result.stderr)")
    }
    return try JSONDecoder().decode(HydrogramLoaded.self, from: Data(line.dropFirst(7).utf8))
  }
}

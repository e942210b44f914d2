import Foundation
import Jobs
import Store
import TestSupport
import Testing

/// `tgsess prune`, `pin` and `unpin` through the built binary, on archives made by `tgsess backup`
/// and cloned under older ids; every surviving archive is opened with stock `age` and `tar`.
@Suite struct PruneCLITests {
  /// What `prune --json` printed, decoded as `PruneResult`, with its plan as id → reasons.
  struct Plan {
    var keep: [String: [String]]
    var remove: [String: [String]]
    var result: PruneResult

    init(_ result: ProcessResult) throws {
      guard result.status == 0 else {
        throw TestHelperError("prune --json failed (\(result.status)): \(result.stdout) \(result.stderr)")
      }
      self.result = try decodeJSON(PruneResult.self, from: result)
      func reasons(_ decisions: [RetentionPlan.Decision]) -> [String: [String]] {
        Dictionary(decisions.map { ($0.item.id, $0.reasons) }) { _, last in last }
      }
      keep = reasons(self.result.plan.keep)
      remove = reasons(self.result.plan.remove)
    }
  }

  static func plan(_ fleet: TestFleet, _ arguments: [String] = []) throws -> Plan {
    try Plan(try fleet.tgsess(["prune", "--dry-run", "--json"] + arguments))
  }

  /// Whether an id names a per-user archive (by parsing it: a full id's random part may hold "-u").
  static func isUserArchive(_ id: String) -> Bool { ArchiveName.describe(id: id)?.kind == .user }

  static func listedIDs(_ fleet: TestFleet) throws -> Set<String> { Set(try fleet.listedArchives().map(\.id)) }

  /// session_backups rows per user: (fewest, most).
  static func rowsPerUser(_ fleet: TestFleet) throws -> (Int, Int) {
    let text = try fleet.sqlite(
      "SELECT min(c) || ' ' || max(c) FROM (SELECT count(*) AS c FROM session_backups GROUP BY user_id)")
    let parts = text.split(separator: " ").compactMap { Int($0) }
    return (parts.first ?? -1, parts.last ?? -1)
  }

  /// The archive files under full/ and users/*/ (not temporaries).
  static func archiveFileCount(_ deployment: Deployment) -> Int {
    let backups = deployment.backupsDirectory
    var directories = [backups + "/full"]
    for name in (try? FileManager.default.contentsOfDirectory(atPath: backups + "/users")) ?? [] {
      directories.append(backups + "/users/" + name)
    }
    return directories.reduce(0) { total, directory in
      total
        + ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter {
          !$0.hasPrefix(".") && $0.hasSuffix(ArchiveName.encryptedSuffix)
        }.count
    }
  }

  /// Every listed archive is whole: its bytes hash to what its record says, and a sample (or all)
  /// decrypts with `age` and lists with `tar`.
  static func expectWholeArchives(
    _ fleet: TestFleet, decryptAll: Bool, sourceLocation: SourceLocation = #_sourceLocation
  ) throws {
    let listed = try fleet.listedArchives()
    var sample: [String] = []
    var seenDirectories = Set<String>()
    for archive in listed {
      let directory = (archive.path as NSString).deletingLastPathComponent
      let record = try Data(contentsOf: URL(fileURLWithPath: directory + "/" + archive.id + ".json"))
      #expect(
        try FileSystem.sha256(ofFile: archive.path) == ArchiveRecord.decode(record)?.sha256, "\(archive.path)",
        sourceLocation: sourceLocation)
      if decryptAll || seenDirectories.insert(directory).inserted { sample.append(archive.path) }
    }
    #expect(try fleet.unreadableArchives(sample) == [], sourceLocation: sourceLocation)
  }

  // MARK: - Plan and dry run

  @Test func dryRunPrintsThePlanWithReasonsAndChangesNothing() throws {
    let fleet = try TestFleet(users: 3, pyrogramShare: 0, entities: 10, backedUp: true)
    try ArchiveCloner.clone(fleet.deployment, copiesPerUser: 4, fullCopies: 3, step: 86400)
    let tree = try fleet.backupsTree()
    let database = try FileSystem.sha256(ofFile: fleet.databasePath)
    let rows = try Int(fleet.sqlite("SELECT count(*) FROM session_backups")) ?? 0
    let expectedTrim =
      try Int(
        fleet.sqlite(
          "SELECT sum(max(c - 2, 0)) FROM (SELECT count(*) AS c FROM session_backups GROUP BY user_id)")) ?? -1

    let text = try fleet.tgsess(["prune", "--dry-run", "--keep-per-user", "2"])
    #expect(text.status == 0, "\(text.stderr)")
    let lines = text.stdout.split(separator: "\n").map(String.init)
    #expect(lines.first?.hasPrefix("ID") == true && lines.first?.contains("ACTION  WHY") == true)
    #expect(lines.contains { $0.contains(" remove ") && $0.hasSuffix("beyond keep-per-user 2") })
    #expect(lines.contains { $0.contains(" keep ") && $0.contains("per-user 1, newest verified") })
    #expect(lines.contains { $0.hasPrefix("keep 10, remove 9 (") })
    #expect(lines.last == "dry run: would trim \(expectedTrim) session_backups row(s)")

    let plan = try Self.plan(fleet, ["--keep-per-user", "2"])
    #expect(plan.result.isDryRun == true)
    #expect(plan.keep.count == 10 && plan.remove.count == 9)
    #expect(plan.remove.values.allSatisfy { $0 == ["beyond keep-per-user 2"] })
    #expect(plan.keep.values.allSatisfy { !$0.isEmpty })
    #expect(plan.result.rowsTrimmed == expectedTrim && plan.result.removed == 0)

    #expect(try fleet.backupsTree() == tree)
    #expect(try FileSystem.sha256(ofFile: fleet.databasePath) == database)
    #expect(try Int(fleet.sqlite("SELECT count(*) FROM session_backups")) == rows)
  }

  @Test func pruneCarriesOutThePlanAndTrimsRows() throws {
    let fleet = try TestFleet(users: 3, pyrogramShare: 0, entities: 10, backedUp: true)
    try ArchiveCloner.clone(fleet.deployment, copiesPerUser: 6, fullCopies: 8, step: 86400)
    let plan = try Self.plan(fleet, ["--keep-per-user", "2", "--keep-last", "2", "--keep-weekly", "0"])
    #expect(!plan.remove.isEmpty)

    let result = try fleet.tgsess(
      ["prune", "--json", "--keep-per-user", "2", "--keep-last", "2", "--keep-weekly", "0"])
    let done = try Plan(result)
    #expect(done.result.isDryRun == false)
    #expect(done.result.removed == plan.remove.count)
    #expect(done.keep == plan.keep)
    #expect(try Self.listedIDs(fleet) == Set(plan.keep.keys))
    let (fewest, most) = try Self.rowsPerUser(fleet)
    #expect(fewest >= 1 && most <= 2)
    try Self.expectWholeArchives(fleet, decryptAll: true)
    // Nothing is left beside the removed archives.
    let names = try FileManager.default.subpathsOfDirectory(atPath: fleet.deployment.backupsDirectory)
    for id in plan.remove.keys { #expect(!names.contains { $0.contains(id) }, "\(id)") }
    // Running again removes nothing more.
    let again = try Plan(try fleet.tgsess(["prune", "--json", "--keep-per-user", "2", "--keep-last", "2"]))
    #expect(again.result.removed == 0)
  }

  // MARK: - Guards

  @Test func pinnedArchivesSurviveAndUnpinLetsThemGo() throws {
    let fleet = try TestFleet(users: 2, pyrogramShare: 0, entities: 10, backedUp: true)
    let clones = try ArchiveCloner.clone(fleet.deployment, copiesPerUser: 3, fullCopies: 3, step: 86400)
    let oldUser = try #require(clones.first { Self.isUserArchive($0) && $0.hasSuffix("c00003") })
    let oldFull = try #require(clones.first { $0.contains("-full-") && $0.hasSuffix("c00003") })
    for id in [oldUser, oldFull] {
      let pinned = try fleet.tgsess(["pin", id])
      #expect(pinned.status == 0 && pinned.stdout == "pinned \(id)\n", "\(pinned.stderr)")
    }
    let strict = ["--keep-per-user", "0", "--keep-last", "1", "--keep-daily", "0", "--keep-weekly", "0"]
    let plan = try Self.plan(fleet, strict)
    #expect(plan.keep[oldUser]?.contains("pinned") == true)
    #expect(plan.keep[oldFull]?.contains("pinned") == true)
    #expect(try fleet.tgsess(["prune"] + strict).status == 0)
    let listed = try Self.listedIDs(fleet)
    #expect(listed.contains(oldUser) && listed.contains(oldFull))
    #expect(listed == Set(plan.keep.keys))

    for id in [oldUser, oldFull] { #expect(try fleet.tgsess(["unpin", id]).stdout == "unpinned \(id)\n") }
    #expect(try fleet.tgsess(["prune"] + strict).status == 0)
    let after = try Self.listedIDs(fleet)
    #expect(!after.contains(oldUser) && !after.contains(oldFull))
    #expect(!FileSystem.exists(fleet.deployment.backupsDirectory + "/full/\(oldFull).pin"))
    // A missing id is an error that says how to find one.
    let missing = try fleet.tgsess(["pin", "20990101T000000Z-full-nothere"])
    #expect(missing.status == 1)
    #expect(missing.stderr.contains("list archives with: tgsess list"))
  }

  /// Only signed archives take part in the plan: the two newest of a user, one unsigned (its
  /// signature removed, as tgsess wrote archives before they were signed) and one rejected (its
  /// signature garbled), are neither counted nor removed, so the newest signed one is the one
  /// keep-per-user 1 keeps, and both are reported.
  @Test func unsignedAndRejectedArchivesAreNeitherCountedNorRemoved() throws {
    let fleet = try TestFleet(users: 1, pyrogramShare: 0, entities: 10, backedUp: true)
    let user = fleet.userIDs[0]
    let directory = fleet.deployment.backupsDirectory + "/users/user_\(user)"
    try ArchiveCloner.clone(fleet.deployment, copiesPerUser: 3)
    let ids = try fleet.listedArchives().filter { $0.kind == .user }.map(\.id)  // newest first
    #expect(ids.count == 4)
    try FileManager.default.removeItem(atPath: directory + "/\(ids[0]).sig")
    try Data("tgsess archive signature v1\ngarbled\n".utf8).write(
      to: URL(fileURLWithPath: directory + "/\(ids[1]).sig"))
    let plan = try Self.plan(fleet, ["--keep-per-user", "1"])
    #expect(plan.keep[ids[0]] == nil && plan.remove[ids[0]] == nil)
    #expect(plan.keep[ids[1]] == nil && plan.remove[ids[1]] == nil)
    #expect(plan.keep[ids[2]] == ["per-user 1", "newest verified"])
    #expect(plan.remove[ids[3]] == ["beyond keep-per-user 1"])
    #expect(plan.result.unsignedArchives == [ids[0]])
    #expect(plan.result.rejectedArchives.map(\.id) == [ids[1]])
    let text = try fleet.tgsess(["prune", "--keep-per-user", "1"])
    #expect(text.status == 0)
    #expect(
      text.stdout.contains(
        "not in the plan: 1 unsigned archive(s), neither counted nor removed; if this host made them, run: tgsess keys sign-existing"
      ), "\(text.stdout)")
    #expect(text.stdout.contains("not in the plan: REJECTED \(directory)/\(ids[1]).tar.zst.age: "), "\(text.stdout)")
    // A Set on purpose: inside #expect, `filter` may resolve to the Array overload, whose order is
    // the Set's (random per process).
    let kept: Set<String> = try Self.listedIDs(fleet).filter(Self.isUserArchive)
    #expect(kept == [ids[0], ids[1], ids[2]], "kept \(kept.sorted()) of \(ids)")
  }

  @Test func onlyBackupOfAUserAndTheirLastRowAreKept() throws {
    let fleet = try TestFleet(users: 2, pyrogramShare: 0, entities: 10, backedUp: true)
    #expect(try Self.rowsPerUser(fleet).0 >= 2)
    let plan = try Self.plan(fleet, ["--keep-per-user", "0"])
    for user in fleet.userIDs {
      let kept = plan.keep.first { ArchiveName.describe(id: $0.key)?.userID == user }
      #expect(kept?.value.contains("only backup of user \(user)") == true, "\(plan.keep)")
    }
    #expect(plan.remove.isEmpty)
    let before = try Self.listedIDs(fleet)
    #expect(try fleet.tgsess(["prune", "--keep-per-user", "0"]).status == 0)
    #expect(try Self.listedIDs(fleet) == before)
    // keep-per-user 0 never empties a user's session_backups history.
    #expect(try Self.rowsPerUser(fleet) == (1, 1))
  }

  // MARK: - Lock and leftovers

  @Test func heldDeploymentLockExits75AndChangesNothing() throws {
    let fleet = try TestFleet(users: 2, pyrogramShare: 0, entities: 10, backedUp: true)
    try ArchiveCloner.clone(fleet.deployment, copiesPerUser: 6)
    let lockPath = fleet.deployment.lockPath
    // flock(2) on the lock file, as another tgsess (or `flock -n` in a cron line) holds it.
    let holder = try PythonHolder(
      """
      import fcntl, sys
      f = open(sys.argv[1], "a")
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
      print("READY", flush=True)
      sys.stdin.read()
      """, arguments: [lockPath])
    defer { holder.finish() }
    #expect(try runProcess("/usr/bin/flock", ["-n", lockPath, "true"]).status != 0)
    let tree = try fleet.backupsTree()
    let result = try fleet.tgsess(["prune"])
    #expect(result.status == 75)
    #expect(result.stderr.hasPrefix("tgsess: prune: \(lockPath): held by "), "\(result.stderr)")
    #expect(result.stderr.contains("--lock-wait SECONDS"))
    #expect(try fleet.backupsTree() == tree)
    // A dry run needs no lock.
    #expect(try fleet.tgsess(["prune", "--dry-run"]).status == 0)
  }

  @Test func leftoversOfDeadProcessesAreRemovedAndLiveOnesKept() throws {
    let fleet = try TestFleet(users: 1, pyrogramShare: 0, entities: 10, backedUp: true)
    let backups = fleet.deployment.backupsDirectory
    let directory = backups + "/users/user_\(fleet.userIDs[0])"
    // 99999999 is above Linux's largest pid_max: no such process.
    let deadTemp = directory + "/.20261101T000000Z-u1-abcdef.tar.zst.age.tgsess-tmp-99999999-x1"
    let liveTemp = directory + "/.20261101T000000Z-u1-ghijkm.tar.zst.age.tgsess-tmp-\(getpid())-x2"
    let deadStaging = backups + "/.staging-99999999-zz"
    let orphanRecord = directory + "/20200101T000000Z-u\(fleet.userIDs[0])-zzzzzz.json"
    let orphanPin = directory + "/20200101T000000Z-u\(fleet.userIDs[0])-yyyyyy.pin"
    for file in [deadTemp, liveTemp, orphanRecord, orphanPin] {
      try Data("x".utf8).write(to: URL(fileURLWithPath: file))
    }
    try FileManager.default.createDirectory(atPath: deadStaging + "/sessions", withIntermediateDirectories: true)
    try Data("x".utf8).write(to: URL(fileURLWithPath: deadStaging + "/sessions/user_1.session"))
    let before = try Self.listedIDs(fleet)

    let pruned = try Plan(try fleet.tgsess(["prune", "--json"]))
    #expect(pruned.result.leftoversRemoved == 4)
    for gone in [deadTemp, deadStaging, orphanRecord, orphanPin] { #expect(!FileSystem.exists(gone), "\(gone)") }
    #expect(FileSystem.exists(liveTemp), "a temporary of a running process is kept")
    #expect(try Self.listedIDs(fleet) == before)
  }

  // MARK: - Crashes

  @Test func crashAfterUnlinkLeavesOnlyWholeArchivesAndARerunFinishes() throws {
    let fleet = try TestFleet(users: 2, pyrogramShare: 0, entities: 10, backedUp: true)
    try ArchiveCloner.clone(fleet.deployment, copiesPerUser: 3, fullCopies: 2, step: 86400)
    let plan = try Self.plan(fleet, ["--keep-per-user", "1"])
    #expect(plan.remove.count == 6)
    let before = try Self.listedIDs(fleet)

    let crashed = try fleet.tgsess(
      ["prune", "--keep-per-user", "1"], environment: ["TGSESS_CRASH_POINT": "prune.after-unlink"])
    #expect(crashed.status == SIGKILL, "killed at the crash point: \(crashed.stderr)")
    let survivors = try Self.listedIDs(fleet)
    #expect(survivors.count == before.count - 1)
    #expect(survivors.isSuperset(of: plan.keep.keys))
    try Self.expectWholeArchives(fleet, decryptAll: true)
    // The crash left the removed archive's record and signature behind; list does not show them.
    let removed = try #require(before.subtracting(survivors).first)
    let orphans = try FileManager.default.subpathsOfDirectory(atPath: fleet.deployment.backupsDirectory)
      .filter { $0.hasSuffix(removed + ".json") || $0.hasSuffix(removed + ".sig") }
    #expect(orphans.count == 2)

    let rerun = try fleet.tgsess(["prune", "--keep-per-user", "1"])
    #expect(rerun.status == 0, "\(rerun.stderr)")
    #expect(rerun.stdout.contains("removed 5 archive(s)") && rerun.stdout.contains("cleaned 2 leftover(s)"))
    #expect(try Self.listedIDs(fleet) == Set(plan.keep.keys))
    let names = try FileManager.default.subpathsOfDirectory(atPath: fleet.deployment.backupsDirectory)
    for id in plan.remove.keys { #expect(!names.contains { $0.contains(id) }, "\(id)") }
    try Self.expectWholeArchives(fleet, decryptAll: true)
  }

  @Test func killAtARandomMomentOf2000ArchivesLeavesOnlyWholeArchives() throws {
    let fleet = try TestFleet(users: 20, pyrogramShare: 0, entities: 10, backedUp: true)
    try ArchiveCloner.clone(fleet.deployment, copiesPerUser: 99, fullCopies: 10, step: 3600)
    let total = Self.archiveFileCount(fleet.deployment)
    #expect(total == 2001 + 10)
    let plan = try Self.plan(fleet)
    #expect(plan.remove.count >= 1900)

    // Kill once a random number of removals has happened, so the kill always lands mid-run.
    let target = Int.random(in: 50...(plan.remove.count / 2))
    let child = try TgsessChild(["prune", "--root", fleet.root])
    while child.process.isRunning, total - Self.archiveFileCount(fleet.deployment) < target { usleep(2000) }
    child.kill()
    #expect(child.process.terminationReason == .uncaughtSignal, "prune finished before the kill")
    let survivors = try Self.listedIDs(fleet)
    #expect(survivors.isSuperset(of: plan.keep.keys))
    #expect(survivors.count < total && survivors.count > plan.keep.count, "target \(target)")
    try Self.expectWholeArchives(fleet, decryptAll: false)

    let rerun = try fleet.tgsess(["prune"])
    #expect(rerun.status == 0, "\(rerun.stderr)")
    #expect(try Self.listedIDs(fleet) == Set(plan.keep.keys))
    let leftovers = try FileManager.default.subpathsOfDirectory(atPath: fleet.deployment.backupsDirectory)
      .filter { name in plan.remove.keys.contains { name.contains($0) } }
    #expect(leftovers.isEmpty, "\(leftovers.prefix(5))")
    try Self.expectWholeArchives(fleet, decryptAll: false)
  }

  // MARK: - Remotes

  /// The archive file names under `directory`, recursively.
  static func archiveNames(under directory: String) -> Set<String> {
    var names = Set<String>()
    let enumerator = FileManager.default.enumerator(atPath: directory)
    while let path = enumerator?.nextObject() as? String {
      if path.hasSuffix(ArchiveName.encryptedSuffix) { names.insert((path as NSString).lastPathComponent) }
    }
    return names
  }

  @Test func aRemoteThatCannotBePrunedMakesThePrunePartialInTextJSONExitStatusAndPing() throws {
    guard FileManager.default.isExecutableFile(atPath: "/usr/bin/rclone") else {
      throw TestHelperError("rclone is not installed; run: apt-get install -y rclone")
    }
    let fleet = try TestFleet(users: 2)
    // An rclone remote "usb" (an alias of a local directory) in its own rclone.conf.
    let remote = fleet.directory.file("remote")
    let rcloneConfig = fleet.directory.file("rclone.conf")
    try "[usb]\ntype = alias\nremote = \(remote)\n".write(toFile: rcloneConfig, atomically: true, encoding: .utf8)
    try """
    deployment_name = "host-a"

    [[remotes]]
    name = "usb"
    path = "usb:"
    rclone_config = "\(rcloneConfig)"

    """.write(toFile: fleet.root + "/tgsess.toml", atomically: true, encoding: .utf8)
    try fleet.tgsessOK(["backup"])
    let user = try #require(try fleet.sessionUserIDs().first)
    for _ in 0..<3 { try fleet.tgsessOK(["backup", "--user", String(user), "--reason", "Manual"]) }
    let pushed = Self.archiveNames(under: remote + "/host-a")
    #expect(pushed == Self.archiveNames(under: fleet.root + "/backups"), "every archive was pushed")

    // The remote breaks after the push: its section now points at a remote that does not exist.
    try "[usb]\ntype = alias\nremote = gone:tgsess\n".write(toFile: rcloneConfig, atomically: true, encoding: .utf8)

    // --json and the ping: exit 3, the failure named in the JSON and in the ping's body.
    let server = try PingServer()
    let json = try fleet.tgsess(["prune", "--keep-per-user", "3", "--json", "--ping-url", server.url])
    #expect(json.status == 3, "\(json.stdout) \(json.stderr)")
    let result = try decodeJSON(PruneResult.self, from: json)
    #expect(result.removed == 1)
    #expect(result.isPartial)
    #expect(result.remoteFailures.map(\.remote) == ["usb"])
    let reason = try #require(result.remoteFailures.first?.reason)
    #expect(reason.hasPrefix("remote usb (usb:host-a): rclone lsjson failed (exit 1): "), "\(reason)")
    #expect(reason.contains("didn't find section in config file"), "\(reason)")
    #expect(result.remoteRemoved["usb"] == nil)
    let requests = try server.requests()
    #expect(requests.map(\.path) == [PingServer.checkPath + "/start", PingServer.checkPath + "/3"])
    let body = requests.last?.body ?? ""
    #expect(body.hasPrefix("kept "), "\(body)")
    #expect(body.contains("\nremote FAILED usb: remote usb (usb:host-a): rclone lsjson failed"), "\(body)")
    // Nothing on the remote was lost.
    #expect(Self.archiveNames(under: remote + "/host-a") == pushed)

    // The text output names the remote and what it means, and exits 3 too.
    let text = try fleet.tgsess(["prune", "--keep-per-user", "1"])
    #expect(text.status == 3, "\(text.stdout) \(text.stderr)")
    let lines = text.stdout.split(separator: "\n").map(String.init)
    #expect(lines.count == 2, "\(text.stdout)")
    #expect(lines.first?.hasPrefix("kept ") == true && lines.first?.contains("removed 2 archive(s)") == true)
    #expect(lines.last?.hasPrefix("remote FAILED usb: remote usb (usb:host-a): rclone lsjson failed") == true)
    #expect(
      lines.last?.hasSuffix("; the local prune is done and the archives it removed stay on that remote") == true,
      "\(lines.last ?? "")")
    #expect(Self.archiveNames(under: remote + "/host-a") == pushed)

    // The remote comes back: a prune that removes nothing leaves it alone and exits 0.
    try "[usb]\ntype = alias\nremote = \(remote)\n".write(toFile: rcloneConfig, atomically: true, encoding: .utf8)
    let healed = try fleet.tgsess(["prune", "--keep-per-user", "1", "--json"])
    #expect(healed.status == 0, "\(healed.stderr)")
    #expect(try decodeJSON(PruneResult.self, from: healed).remoteFailures.isEmpty)
  }

  // MARK: - Configuration and usage

  @Test func configPruneKeysAreHonouredAndFlagsWin() throws {
    let fleet = try TestFleet(users: 2, pyrogramShare: 0, entities: 10, backedUp: true)
    try ArchiveCloner.clone(fleet.deployment, copiesPerUser: 4, fullCopies: 4, step: 86400)
    try Data(
      """
      [prune]
      keep_per_user = 2
      keep_last = 1
      keep_daily = 1
      keep_weekly = 0
      timezone = "Asia/Tokyo"

      """.utf8
    ).write(to: URL(fileURLWithPath: fleet.root + "/tgsess.toml"))
    let plan = try Self.plan(fleet)
    #expect(plan.keep.keys.filter(Self.isUserArchive).count == 4, "2 per user")
    let fulls = plan.keep.filter { $0.key.contains("-full-") }
    #expect(fulls.count == 1)
    // The daily bucket is named in the configured zone.
    let newest = try #require(fleet.listedArchives().first { $0.kind == .full })
    let described = try #require(ArchiveName.describe(id: newest.id))
    let formatter = DateFormatter()
    formatter.locale = Locale(identifier: "en_US_POSIX")
    formatter.timeZone = TimeZone(identifier: "Asia/Tokyo")
    formatter.dateFormat = "yyyy-MM-dd"
    #expect(fulls[newest.id] == ["last 1", "daily \(formatter.string(from: described.createdAt))", "newest verified"])
    // A flag overrides its config key.
    let flagged = try Self.plan(fleet, ["--keep-per-user", "3"])
    #expect(flagged.keep.keys.filter(Self.isUserArchive).count == 6)
  }

  @Test func badRetentionValuesAreUsageErrors() throws {
    let fleet = try TestFleet(users: 1, pyrogramShare: 0, entities: 10, backedUp: true)
    let negative = try fleet.tgsess(["prune", "--keep-daily=-1"])
    #expect(negative.status == 64)
    #expect(negative.stderr == "tgsess: --keep-daily must be 0 or more, got -1 (0 turns the rule off)\n")
    let zone = try fleet.tgsess(["prune", "--timezone", "Mars/Olympus"])
    #expect(zone.status == 64)
    #expect(zone.stderr.contains("unknown --timezone 'Mars/Olympus'. Try: --timezone UTC"))
  }
}

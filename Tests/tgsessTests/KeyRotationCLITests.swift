import Foundation
import Jobs
import Store
import TestSupport
import Testing

/// Issue #16, key rotation that holds together: archives say which keys they need (`list
/// --json`, the record), `backup --rearchive` moves every user's newest archive to the current
/// keys, and `keys usage` says when an old age identity or Fernet key may go.
@Suite struct KeyRotationCLITests {
  /// The `age1…` lines of the deployment's recipients file.
  static func recipients(_ fleet: TestFleet) throws -> [String] {
    try String(contentsOfFile: fleet.root + "/keys/age-recipients.txt", encoding: .utf8)
      .split(separator: "\n").filter { $0.hasPrefix("age1") }.map(String.init)
  }

  /// A new identity file (mode 0600) and its recipient, made by the stock age-keygen.
  static func newIdentity(_ fleet: TestFleet, _ name: String) throws -> (path: String, recipient: String) {
    let path = fleet.directory.file(name)
    #expect(try runProcess(Tools.ageKeygen, ["-o", path]).status == 0)
    chmod(path, 0o600)
    let recipient = try runProcess(Tools.ageKeygen, ["-y", path]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    return (path, recipient)
  }

  static func drill(_ fleet: TestFleet, _ arguments: [String]) throws -> (ProcessResult, DrillResult) {
    let result = try fleet.tgsess(["drill", "--json"] + arguments)
    return (result, try decodeJSON(DrillResult.self, from: result))
  }

  /// Before the fix, a user whose session did not change kept per-user archives only the
  /// retired identity opens, and `drill --identity NEW` failed for every such user.
  @Test func rearchiveMovesEveryUserToTheCurrentRecipients() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 4, backedUp: true)
    let users = try fleet.sessionUserIDs()
    let old = try Self.recipients(fleet)
    #expect(old.count == 1)
    let first = try fleet.listedArchives()
    #expect(first.count == users.count + 1)
    #expect(first.allSatisfy { $0.recipients == old }, "\(first.map(\.recipients))")
    // The record beside each archive says it too.
    let record = try #require(
      ArchiveRecord.decode(
        try Data(
          contentsOf: URL(
            fileURLWithPath: first[0].path.replacingOccurrences(
              of: ".tar.zst.age", with: ".json")))))
    #expect(record.recipients == old)

    // RUNBOOK §4, retiring a key: the recipients file names only the new one; the old identity
    // leaves the host.
    let new = try Self.newIdentity(fleet, "age-identity-new.txt")
    try (new.recipient + "\n").write(toFile: fleet.root + "/keys/age-recipients.txt", atomically: true, encoding: .utf8)
    try FileManager.default.moveItem(atPath: fleet.identityPath, toPath: fleet.directory.file("age-identity-old.txt"))
    let plain = try fleet.tgsessJSON(BackupResult.self, ["backup"])
    #expect(plain.unchangedUsers == users.count && plain.reencryptedUsers == 0)
    var usage = try fleet.tgsessJSON(KeyUsage.self, ["keys", "usage"])
    let retired = try #require(usage.recipients.first { $0.recipient == old[0] })
    #expect(!retired.isCurrent && !retired.isDroppable && retired.archivesOnlyRetired == users.count + 1)
    #expect(
      try fleet.tgsessOK(["keys", "usage"]).stdout.contains(
        "age \(old[0]) (retired): \(users.count + 1) archive(s); \(users.count + 1) archive(s) open only with a retired identity: keep it"
      ))
    // (--from: the first backup may share this one's second, so "latest" could be either.)
    let plainFull = try #require(plain.archives.first { $0.kind == .full }).id
    let (failing, failed) = try Self.drill(fleet, ["--identity", new.path, "--from", plainFull])
    #expect(failing.status == 1)
    #expect(Set(failed.usersFailed.map(\.userID)) == Set(users), "\(failed.usersFailed)")

    // The fix: one command re-archives every user under the current recipients.
    let rearchived = try fleet.tgsessJSON(BackupResult.self, ["backup", "--rearchive"])
    #expect(rearchived.reencryptedUsers == users.count)
    let reasons = rearchived.archives.filter { $0.kind == .user }.map(\.reason)
    #expect(reasons == Array(repeating: "Re-encrypted", count: users.count))
    // Each user's newest archive (the whole run may share one second with the first backup).
    for user in users {
      let newest = try #require(try fleet.listedArchives(["--kind", "user", "--user", String(user)]).first)
      #expect(newest.reason == "Re-encrypted" && newest.recipients == [new.recipient], "\(newest.id)")
    }
    #expect(try fleet.tgsessJSON(BackupResult.self, ["backup", "--rearchive"]).reencryptedUsers == 0)
    let rearchivedFull = try #require(rearchived.archives.first { $0.kind == .full }).id
    let (passing, passed) = try Self.drill(fleet, ["--identity", new.path, "--from", rearchivedFull])
    #expect(passing.status == 0 && passed.ok && passed.usersFailed.isEmpty, "\(passing.stdout)")

    // The old identity may go once no archive needs it, and keys usage says when.
    usage = try fleet.tgsessJSON(KeyUsage.self, ["keys", "usage"])
    #expect(usage.recipients.first { $0.recipient == old[0] }?.isDroppable == false)
    try fleet.tgsessOK(["prune", "--keep-last", "1", "--keep-per-user", "1", "--keep-daily", "0", "--keep-weekly", "0"])
    // No archive names the old recipient any more: only the current one is left to keep.
    usage = try fleet.tgsessJSON(KeyUsage.self, ["keys", "usage"])
    #expect(usage.recipients.map(\.recipient) == [new.recipient], "\(usage)")
    #expect(usage.archivesUnknownRecipients == 0)
    #expect(!(try fleet.tgsessOK(["keys", "usage"]).stdout.contains(old[0])))
  }

  @Test func rearchiveRefusesOneUserAndNoEncrypt() throws {
    let fleet = try TestFleet()
    let user = try fleet.tgsess(["backup", "--rearchive", "--user", "42"])
    #expect(user.status == 64)
    #expect(user.stderr.contains("--rearchive re-archives every user; drop --user. Try: tgsess backup --rearchive"))
    let plain = try fleet.tgsess(["backup", "--rearchive", "--no-encrypt"])
    #expect(plain.status == 64)
    #expect(plain.stderr.contains("drop --no-encrypt. Try: tgsess backup --rearchive"))
  }

  /// The old rule ("remove an old Fernet key when no archive from before its rotation is left",
  /// checked by eye with `list --kind full`) missed that per-user archives and the safety copy
  /// hold tokens under it too. Records name the keys; `keys usage` says when a key may go, and a
  /// drill with the key gone proves it.
  @Test func anOldFernetKeyIsDroppableOnlyWhenNoArchiveHoldsSecretsUnderIt() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 3, backedUp: true)
    var usage = try fleet.tgsessJSON(KeyUsage.self, ["keys", "usage"])
    let oldKey = try #require(usage.fernetKeys.first).fingerprint
    #expect(usage.fernetKeys.count == 1 && usage.fernetKeys[0].liveSecrets > 0)
    let archives = try fleet.listedArchives()
    #expect(archives.filter { $0.kind == .full }.allSatisfy { $0.fernetKeys == [oldKey] })
    #expect(archives.filter { $0.kind == .user }.contains { $0.fernetKeys == [oldKey] })

    try fleet.tgsessOK(["keys", "add-fernet"])
    try fleet.tgsessOK(["migrate", "--rotate-key"])
    usage = try fleet.tgsessJSON(KeyUsage.self, ["keys", "usage"])
    let old = try #require(usage.fernetKeys.first { $0.fingerprint == oldKey })
    // No live secret is under it any more: the old rule would have let it go.
    #expect(old.position == 2 && old.liveSecrets == 0 && !old.isDroppable)
    #expect(old.archives == archives.filter { $0.fernetKeys?.contains(oldKey) == true }.count + 1)
    let safety = try #require(try fleet.listedArchives().first { $0.reason == "Before migrate" })
    #expect(safety.fernetKeys == [oldKey])
    #expect(
      try fleet.tgsessOK(["keys", "usage"]).stdout.contains(
        "fernet \(oldKey) (#2): 0 live secret(s), \(old.archives) archive(s)"))

    // Re-archive (the users' rows are under the new key now), prune, and the key may go.
    let rearchived = try fleet.tgsessJSON(BackupResult.self, ["backup", "--rearchive"])
    #expect(rearchived.reencryptedUsers > 0)
    try fleet.tgsessOK(["prune", "--keep-last", "1", "--keep-per-user", "1", "--keep-daily", "0", "--keep-weekly", "0"])
    usage = try fleet.tgsessJSON(KeyUsage.self, ["keys", "usage"])
    #expect(usage.fernetKeys.first { $0.fingerprint == oldKey }?.isDroppable == true, "\(usage)")
    #expect(
      try fleet.tgsessOK(["keys", "usage"]).stdout.contains(
        "fernet \(oldKey) (#2): 0 live secret(s), 0 archive(s); nothing needs it: its line may be removed"))

    // Dropping it: a full drill proves every restored secret opens with the one key left.
    let lines = try String(contentsOfFile: fleet.root + "/keys/fernet.keys", encoding: .utf8).split(separator: "\n")
    let keyLines = lines.filter { !$0.hasPrefix("#") && !$0.trimmingCharacters(in: .whitespaces).isEmpty }
    #expect(keyLines.count == 2)
    try (lines.filter { $0 != keyLines[1] }.joined(separator: "\n") + "\n").write(
      toFile: fleet.root + "/keys/fernet.keys", atomically: true, encoding: .utf8)
    chmod(fleet.root + "/keys/fernet.keys", 0o600)
    let (result, drill) = try Self.drill(fleet, [])
    #expect(result.status == 0 && drill.ok && (drill.fernetSecretsDecrypted ?? 0) > 0, "\(result.stdout)")
  }
}

/// Issue #16: a drill without the identity on the host proves what it can, says it is partial,
/// and exits 3, which the unit and the metrics treat as partial; the drill proves the Fernet
/// escrow too.
@Suite struct PartialDrillCLITests {
  static func identityOffHost(_ fleet: TestFleet) throws -> String {
    let escrow = fleet.directory.file("escrow-identity.txt")
    try FileManager.default.moveItem(atPath: fleet.identityPath, toPath: escrow)
    return escrow
  }

  @Test func withoutTheIdentityTheDrillIsPartialAndSaysSo() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 3, backedUp: true)
    let users = try fleet.sessionUserIDs()
    let escrow = try Self.identityOffHost(fleet)
    let (json, drill) = try KeyRotationCLITests.drill(fleet, [])
    #expect(json.status == 3, "\(json.stdout)\(json.stderr)")
    #expect(drill.ok && drill.isPartial && drill.usersRestored == 0)
    #expect(drill.perUserArchivesChecked == users.count && drill.usersMissing.isEmpty)
    #expect((drill.fernetSecretsDecrypted ?? 0) > 0)
    #expect(
      drill.notProven?.first?.hasPrefix(
        "no age identity on this host (\(fleet.identityPath)): nothing was decrypted or restored") == true)

    let textfile = fleet.directory.file("tgsess_drill.prom")
    let text = try fleet.tgsess(["drill", "--prometheus", textfile])
    #expect(text.status == 3)
    let lines = text.stdout.split(separator: "\n").map(String.init)
    #expect(lines.first?.hasPrefix("drill PARTIAL (nothing decrypted or restored): ") == true, "\(text.stdout)")
    #expect(lines.contains { $0.hasPrefix("  NOT proven: no age identity on this host") })
    #expect(
      lines.contains { $0.hasPrefix("  proven: the snapshot and \(users.count) per-user archive(s) by ciphertext") })
    let metrics = try String(contentsOfFile: textfile, encoding: .utf8)
    #expect(metrics.contains("\ntgsess_drill_partial 1\n") && metrics.contains("\ntgsess_drill_ok 0\n"), "\(metrics)")
    #expect(metrics.contains("\ntgsess_drill_last_exit_status 3\n"), "\(metrics)")
    // A partial drill is not a successful drill for check (it restored nothing).
    #expect(try fleet.check().result.newestDrillAt == nil)
    #expect(try fleet.tgsess(["drill", "--history"]).stdout.contains("PARTIAL"))

    // With the escrowed identity given, the drill is full and counts.
    let (full, fullDrill) = try KeyRotationCLITests.drill(fleet, ["--identity", escrow])
    #expect(full.status == 0 && fullDrill.ok && !fullDrill.isPartial && fullDrill.usersRestored == users.count)
    #expect(try fleet.check().result.newestDrillAt != nil)
  }

  @Test func aPartialDrillFindsADamagedArchiveAndAWrongFernetCopy() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 3, backedUp: true)
    let escrow = try Self.identityOffHost(fleet)
    let victim = try #require(try fleet.listedArchives(["--kind", "user"]).first)
    let handle = try FileHandle(forUpdating: URL(fileURLWithPath: victim.path))
    let size = try handle.seekToEnd()
    try handle.seek(toOffset: size - 10)
    try handle.write(contentsOf: Data([0xff, 0x00, 0xff]))
    try handle.close()
    let (damaged, drill) = try KeyRotationCLITests.drill(fleet, [])
    #expect(damaged.status == 1 && !drill.ok)
    #expect(drill.usersFailed.map(\.userID) == [victim.userID!])
    #expect(drill.usersFailed.first?.reason.contains("archive \(victim.id): ") == true, "\(drill.usersFailed)")

    // A Fernet "escrow copy" that holds another key fails the drill, partial or full.
    let wrong = fleet.directory.file("wrong-fernet.keys")
    let key = Data(randomBytes(32)).base64EncodedString().replacingOccurrences(of: "+", with: "-")
      .replacingOccurrences(of: "/", with: "_")
    try (key + "\n").write(toFile: wrong, atomically: true, encoding: .utf8)
    chmod(wrong, 0o600)
    try FileManager.default.removeItem(atPath: victim.path)
    try fleet.tgsessOK(["backup", "--user", String(victim.userID!)])
    let (partial, partialDrill) = try KeyRotationCLITests.drill(fleet, ["--fernet-keys", wrong])
    #expect(partial.status == 1 && !partialDrill.ok)
    #expect(
      partialDrill.problems.contains { $0.contains("secret(s) in the live database decrypt with no key in \(wrong)") })
    let (full, fullDrill) = try KeyRotationCLITests.drill(fleet, ["--identity", escrow, "--fernet-keys", wrong])
    #expect(full.status == 1 && !fullDrill.ok)
    #expect(
      fullDrill.problems.contains { $0.contains("secret(s) in the restored database decrypt with no key in \(wrong)") })
    // The real escrow copy passes.
    let copy = fleet.directory.file("escrow-fernet.keys")
    try FileManager.default.copyItem(atPath: fleet.root + "/keys/fernet.keys", toPath: copy)
    let (good, goodDrill) = try KeyRotationCLITests.drill(fleet, ["--identity", escrow, "--fernet-keys", copy])
    #expect(good.status == 0 && goodDrill.ok && goodDrill.fernetKeysPath == copy, "\(good.stdout)")
  }

  /// The drill unit counts exit 3 (partial) as success, and the failed-drill alert does not fire
  /// on a partial drill's textfile (it did, with `!= 0 and != 75`).
  @Test func theUnitAndTheRulesTreatAPartialDrillAsPartial() throws {
    let unit = try String(
      contentsOfFile: TestEnvironment.packageRoot + "/cron/tgsess-drill.service", encoding: .utf8)
    let success = unit.split(separator: "\n").first { $0.hasPrefix("SuccessExitStatus=") }
    #expect(success.map { Set($0.dropFirst("SuccessExitStatus=".count).split(separator: " ")) } == ["75", "3"])

    let promtool = try OpsFilesTests.promtool()
    let fleet = try TestFleet(users: 2, backedUp: true)
    _ = try Self.identityOffHost(fleet)
    let textfile = fleet.directory.file("tgsess_drill.prom")
    #expect(try fleet.tgsess(["drill", "--prometheus", textfile]).status == 3)
    let rules = TestEnvironment.packageRoot + "/cron/tgsess.rules.yml"
    let oldRules = fleet.directory.file("old.rules.yml")
    try String(contentsOfFile: rules, encoding: .utf8).replacingOccurrences(
      of: "tgsess_drill_last_exit_status != 0 and tgsess_drill_last_exit_status != 3 and",
      with: "tgsess_drill_last_exit_status != 0 and"
    ).write(toFile: oldRules, atomically: true, encoding: .utf8)
    var series: [String] = []
    for line in try String(contentsOfFile: textfile, encoding: .utf8).split(separator: "\n")
    where line.hasPrefix("tgsess_drill_") {
      let parts = line.split(separator: " ")
      series.append("      - series: '\(parts[0]){instance=\"bot-1\"}'\n        values: '\(parts[1])+0x10'")
    }
    func test(_ rulesFile: String) throws -> ProcessResult {
      let path = fleet.directory.file("drill.test.yml")
      try """
      rule_files: ['\(rulesFile)']
      evaluation_interval: 5m
      tests:
        - interval: 5m
          input_series:
      \(series.joined(separator: "\n"))
          alert_rule_test:
            - eval_time: 10m
              alertname: TgsessDrillFailed
              exp_alerts: []
      """.write(toFile: path, atomically: true, encoding: .utf8)
      return try runProcess(promtool, ["test", "rules", path])
    }
    let now = try test(rules)
    #expect(now.status == 0, "\(now.stdout)\(now.stderr)")
    #expect(try test(oldRules).status != 0)
  }
}

import Foundation
import Jobs
import Store
import TestSupport
import Testing

/// The hostile-archive corpus (HostileArchiveCorpus, 47 crafted cases: structural attacks signed
/// with the deployment's own key, and the forgeries of issue #15, unsigned or signed by another
/// key) plus random damage to a real archive (bit flips anywhere, truncations, inserted and
/// appended bytes; each damaged copy signed as the writer would have signed it) and the attacks
/// on genuine signed archives (`SignatureAttacks`): `tgsess restore` must refuse each with one
/// stderr line naming the archive and the reason, and leave the whole deployment byte-identical
/// (and a `--target` directory absent).
@Suite(.serialized, .enabled(if: Torture.isEnabled, "set TGSESS_TORTURE_SCALE=quick|full (scripts/torture.sh)"))
struct HostileArchiveTorture {
  /// Reasons a randomly damaged archive may be refused with (age, zstd or manifest checks).
  static let damageReasons = [
    "header", "wrong or missing identity", "truncated or corrupted", "altered", "not a readable tar.zst stream",
    "does not match its SHA-256", "not manifest.json", "not a valid tgsess manifest", "data after",
    // The damaged bytes are not the ones the writer signed (the hash of the file read).
    "not signed by this deployment's key",
  ]

  /// Writes `data` (damaged bytes of the archive at `original`) as a new full archive made at
  /// the same second (so its manifest still says when it was made), with a copy of `record` (new
  /// id, size and SHA-256) and a signature by the deployment's key over the damaged file: what
  /// is tested is the reader, not the signature.
  static func plant(_ data: Data, index: Int, record: ArchiveRecord, original: String, deployment: Deployment) throws
    -> String
  {
    let directory = FileSystem.parentDirectory(of: original)
    let originalID = String((original as NSString).lastPathComponent.dropLast(ArchiveName.encryptedSuffix.count))
    let id = String(originalID.split(separator: "-")[0]) + "-full-dmg\(String(format: "%03d", index))"
    var copy = record
    copy.id = id
    copy.fileName = id + ArchiveName.encryptedSuffix
    copy.byteCount = Int64(data.count)
    copy.sha256 = Digest.sha256Hex(Array(data))
    try data.write(to: URL(fileURLWithPath: directory + "/" + id + ArchiveName.encryptedSuffix))
    try copy.encoded().write(to: URL(fileURLWithPath: directory + "/" + id + ArchiveName.recordSuffix))
    try TestSigning.signCopy(
      of: original, at: directory + "/" + id + ArchiveName.encryptedSuffix, deployment: deployment)
    return id
  }

  /// Random damage to a real archive: name → (bytes, index).
  static func damaged(_ original: Data, count: Int, random: inout TortureRandom) -> [(String, Data)] {
    var out: [(String, Data)] = []
    let bytes = [UInt8](original)
    for k in 0..<count {
      var copy = bytes
      let name: String
      switch k % 4 {
      case 0, 1:
        let offset = Int(random.next() % UInt64(copy.count))
        copy[offset] ^= UInt8(1 << (random.next() % 8))
        name = "bitflip-at-\(offset)"
      case 2:
        let length = Int(random.next() % UInt64(copy.count - 1)) + 1
        copy = Array(copy.prefix(length))
        name = "truncated-to-\(length)"
      default:
        if random.next() % 2 == 0 {
          let extra = (0..<Int(1 + random.next() % 64)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
          copy += extra
          name = "appended-\(extra.count)-bytes"
        } else {
          let offset = Int(random.next() % UInt64(copy.count))
          copy.insert(UInt8(truncatingIfNeeded: random.next()), at: offset)
          name = "byte-inserted-at-\(offset)"
        }
      }
      out.append(("random-\(k)-" + name, Data(copy)))
    }
    return out
  }

  @Test func everyHostileArchiveIsRefusedAndNothingChanges() throws {
    try Tools.require()
    let report = FamilyReport("hostile-archives")
    defer { print(report.summary) }
    var random = TortureRandom(seed: Torture.seed &+ 3)
    let fleet = try TortureFleet(users: 4, seed: 21, pyrogramShare: 0)
    try fleet.tgsessOK(["backup"])
    let users = fleet.userIDs
    let user = users[1]
    let full = try CrashPointTorture.newestArchive(fleet, kind: "full")
    let own = try CrashPointTorture.newestArchive(fleet, kind: "user", user: user)
    let corpus = try HostileArchiveCorpus.build(
      deployment: fleet.deployment, full: full.path, user: own.path, victim: users[0], stamp: "20200101T0000")
    var reasons = HostileArchiveCorpus.reasons
    var cases = corpus
    // Random damage to the real full archive.
    let recordPath = (full.path as NSString).deletingLastPathComponent + "/" + full.id + ArchiveName.recordSuffix
    guard let record = ArchiveRecord.decode(try FileSystem.read(recordPath)) else {
      throw TestHelperError("\(recordPath) is not an archive record")
    }
    let damage = Self.damaged(
      try FileSystem.read(full.path), count: Torture.pick(quick: 2, full: 40), random: &random)
    for (index, (name, data)) in damage.enumerated() {
      cases[name] = try Self.plant(
        data, index: index, record: record, original: full.path, deployment: fleet.deployment)
      reasons[name] = Self.damageReasons
    }
    let otherKey = fleet.root + "/../other.key"
    #expect(try runProcess(Tools.ageKeygen, ["-o", otherKey]).status == 0)
    try fleet.collectSecrets()

    var names = cases.keys.sorted()
    if !Torture.isFull {
      let sample: Set<String> = [
        "traversal", "symlink", "hash-mismatch", "bomb-declared-size", "bitflip-age-payload",
        "session-entry-of-another-user", "user-rows-of-another-user", "wrong-identity", "unicode-equivalent-name",
        "combining-mark-traversal",
      ]
      names = names.filter { sample.contains($0) || $0.hasPrefix("random-") || $0.hasPrefix("forged-") }
    }
    for (index, name) in names.enumerated() {
      let id = cases[name]!
      var arguments = ["restore", id]
      var target: String?
      if id.contains("-u\(user)-") || index % 3 == 1 {
        arguments += ["--user", String(user)]
      } else if index % 3 == 2 {
        target = fleet.root + "/../drill-\(index)"
        arguments += ["--target", target!]
      }
      if name == "wrong-identity" { arguments += ["--identity", otherKey] }
      if name == "missing-identity-file" { arguments += ["--identity", fleet.root + "/../missing.key"] }
      let mode = arguments.count > 2 ? arguments[2] : "whole"
      let kind = name.hasPrefix("random-") ? "randomly damaged" : "crafted"
      report.check("\(name) (\(mode))", counts: [kind: 1]) {
        let before = try FileTree.hashes(fleet.root)
        let result = try fleet.tgsess(arguments)
        var problems: [String] = []
        if result.status != 1 { problems.append("exit \(result.status), not 1: \(result.stdout.prefix(300))") }
        if !result.stdout.isEmpty { problems.append("printed on stdout: \(result.stdout.prefix(300))") }
        let lines = result.stderr.split(separator: "\n", omittingEmptySubsequences: false)
        if !(lines.count == 2 && lines[1].isEmpty) { problems.append("not one stderr line: \(result.stderr)") }
        if !result.stderr.hasPrefix("tgsess: restore") { problems.append("not a restore error: \(result.stderr)") }
        if !result.stderr.contains(id) { problems.append("the archive is not named: \(result.stderr)") }
        if !(reasons[name] ?? []).contains(where: { result.stderr.contains($0) }) {
          problems.append("unexpected reason: \(result.stderr)")
        }
        problems += FileTree.differences(before, try FileTree.hashes(fleet.root)).map { "deployment changed: \($0)" }
        if let target, FileManager.default.fileExists(atPath: target) { problems.append("left \(target) behind") }
        return problems
      }
    }
    #expect(cases.count >= 30)
  }

  /// Attacks on genuine signed archives (`SignatureAttacks`: renamed into another user's
  /// directory, replayed as newer, another deployment's, entries swapped under the signed
  /// manifest or a rewritten one) and a record edited to claim another id, time and user: each
  /// refused by `tgsess restore` with one line, nothing changed; `restore latest` picks the
  /// user's own genuine archive.
  @Test func attacksOnGenuineSignedArchivesAreRefused() throws {
    try Tools.require()
    let report = FamilyReport("hostile-archives")
    defer { print(report.summary) }
    let fleet = try TortureFleet(users: 4, seed: 22, pyrogramShare: 0)
    try fleet.tgsessOK(["backup"])
    let (owner, victim) = (fleet.userIDs[0], fleet.userIDs[1])
    let genuine = try CrashPointTorture.newestArchive(fleet, kind: "user", user: victim)
    // Two more archives of the owner to tamper with in place.
    for _ in 0..<2 { try fleet.tgsessOK(["backup", "--user", String(owner), "--reason", "Manual"]) }
    let repository = ArchiveRepository(backupsDirectory: fleet.deployment.backupsDirectory)
    let spares = try repository.list(kind: .user, userID: owner).prefix(2).map(repository.path(of:))
    // Another deployment, its own keys, the same users.
    let foreign = try TortureFleet(users: 4, seed: 22, pyrogramShare: 0)
    try foreign.tgsessOK(["backup"])
    let theirs = try CrashPointTorture.newestArchive(foreign, kind: "user", user: victim)
    let attacks = try SignatureAttacks.build(
      fleet.deployment, owner: owner, victim: victim, spares: spares, foreignArchive: theirs.path)
    // A genuine record edited to claim another id, time, user and "verification": "full".
    let recordPath = FileSystem.parentDirectory(of: genuine.path) + "/" + genuine.id + ArchiveName.recordSuffix
    var record = try JSONSerialization.jsonObject(with: try FileSystem.read(recordPath)) as? [String: Any] ?? [:]
    let claimed = "20990101T000000Z-u\(owner)-claim0"
    (record["id"], record["created_at"], record["user_id"], record["verification"]) =
      (claimed, "2099-01-01T00:00:00Z", owner, "full")
    try JSONSerialization.data(withJSONObject: record).write(to: URL(fileURLWithPath: recordPath))
    try fleet.collectSecrets()

    for attack in attacks {
      report.check(attack.name) {
        let before = try FileTree.hashes(fleet.root)
        let result = try fleet.tgsess(["restore", attack.archiveID] + attack.restoreArguments + ["--force"])
        var problems: [String] = []
        if result.status != 1 { problems.append("exit \(result.status), not 1: \(result.stdout.prefix(300))") }
        let lines = result.stderr.split(separator: "\n", omittingEmptySubsequences: false)
        if !(lines.count == 2 && lines[1].isEmpty) { problems.append("not one stderr line: \(result.stderr)") }
        if !result.stderr.hasPrefix("tgsess: restore") { problems.append("not a restore error: \(result.stderr)") }
        if !result.stderr.contains(attack.archiveID) { problems.append("the archive is not named: \(result.stderr)") }
        if !attack.reasons.contains(where: { result.stderr.contains($0) }) {
          problems.append("unexpected reason: \(result.stderr)")
        }
        problems += FileTree.differences(before, try FileTree.hashes(fleet.root)).map { "deployment changed: \($0)" }
        return problems
      }
    }
    report.check("record-edited-to-claim-another-id-time-and-user") {
      var problems: [String] = []
      let byClaim = try fleet.tgsess(["restore", claimed, "--force"])
      if byClaim.status != 1 || !byClaim.stderr.contains("not found") {
        problems.append("the record's claimed id was restorable: \(byClaim.status) \(byClaim.stderr)")
      }
      let listed = try Witness.listed(fleet).first { $0.path == genuine.path }
      if listed?.id != genuine.id || listed?.signature != .signed {
        problems.append("list took the record's word: \(String(describing: listed))")
      }
      return problems
    }
    report.check("latest-picks-the-users-own-genuine-archive") {
      let plan = try fleet.tgsess(["restore", "latest", "--user", String(victim), "--dry-run", "--json"])
      let object = try JSONSerialization.jsonObject(with: plan.stdoutData) as? [String: Any] ?? [:]
      let chosen = object["archiveID"] as? String ?? "exit \(plan.status): \(plan.stderr)"
      return chosen == genuine.id ? [] : ["restore latest chose \(chosen), not \(genuine.id)"]
    }
    #expect(attacks.count == 5)
  }
}

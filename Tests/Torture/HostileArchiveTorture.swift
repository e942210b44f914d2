import Foundation
import Jobs
import Store
import TestSupport
import Testing

/// The hostile-archive corpus (HostileArchiveCorpus, 43 crafted cases) plus random damage to a
/// real archive (bit flips anywhere, truncations, inserted and appended bytes): `tgsess restore`
/// must refuse each with one stderr line naming the archive and the reason, and leave the whole
/// deployment byte-identical (and a `--target` directory absent).
@Suite(.serialized, .enabled(if: Torture.isEnabled, "set TGSESS_TORTURE_SCALE=quick|full (scripts/torture.sh)"))
struct HostileArchiveTorture {
  /// Reasons a randomly damaged archive may be refused with (age, zstd or manifest checks).
  static let damageReasons = [
    "header", "wrong or missing identity", "truncated or corrupted", "altered", "not a readable tar.zst stream",
    "does not match its SHA-256", "not manifest.json", "not a valid tgsess manifest", "data after",
  ]

  /// Writes `data` as a new full archive with a copy of `record` (new id, size and SHA-256).
  static func plant(_ data: Data, index: Int, record: ArchiveRecord, directory: String) throws -> String {
    let date = Date(timeIntervalSince1970: 1_546_300_800 + Double(index))  // 2019-01-01, one second apart
    let id = "\(ArchiveCloner.compact(date))-full-dmg\(String(format: "%03d", index))"
    var copy = record
    copy.id = id
    copy.fileName = id + ArchiveName.encryptedSuffix
    copy.byteCount = Int64(data.count)
    copy.sha256 = Digest.sha256Hex(Array(data))
    copy.createdAt = date
    try data.write(to: URL(fileURLWithPath: directory + "/" + id + ArchiveName.encryptedSuffix))
    try copy.encoded().write(to: URL(fileURLWithPath: directory + "/" + id + ArchiveName.recordSuffix))
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
        data, index: index, record: record, directory: (full.path as NSString).deletingLastPathComponent)
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
      names = names.filter { sample.contains($0) || $0.hasPrefix("random-") }
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
}

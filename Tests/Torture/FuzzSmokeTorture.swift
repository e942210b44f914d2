import Foundation
import Jobs
import Store
import TestSupport
import Testing

/// The in-process half of the fuzzing family (libFuzzer itself runs from scripts/torture.sh):
/// the committed regression inputs and real seeds (the peers' session strings and files,
/// tgsess's own manifests and archives), each with random damage, through the properties the
/// fuzz targets check (`FuzzChecks`).
@Suite(.serialized, .enabled(if: Torture.isEnabled, "set TGSESS_TORTURE_SCALE=quick|full (scripts/torture.sh)"))
struct FuzzSmokeTorture {
  static let targets = ["FuzzSessionStrings", "FuzzSessionFile", "FuzzManifest", "FuzzArchiveReader"]

  static func check(_ target: String, _ input: [UInt8], scratch: String) -> String? {
    switch target {
    case "FuzzSessionStrings": return FuzzChecks.sessionStrings(input)
    case "FuzzSessionFile": return FuzzChecks.sessionFile(input, scratch: scratch)
    case "FuzzManifest": return FuzzChecks.manifest(input)
    default: return FuzzChecks.archive(input, scratch: scratch)
    }
  }

  /// The committed inputs that once broke a target.
  static func regressions(_ target: String) -> [(String, [UInt8])] {
    let directory = TestEnvironment.packageRoot + "/Tests/StoreTests/Fixtures/fuzz-regressions/" + target
    let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { !$0.hasPrefix(".") }
    return names.sorted().compactMap { name in
      (try? FileSystem.read(directory + "/" + name)).map { (name, [UInt8]($0)) }
    }
  }

  /// Real inputs for each target.
  static func seeds(scratch: TemporaryDirectory) throws -> [String: [[UInt8]]] {
    var seeds: [String: [[UInt8]]] = [:]
    let key = Hex.encode((0..<256).map { _ in UInt8.random(in: 0...255) })
    let telethon = try BadSessionTorture.peer("telethon-strings", ["2", "149.154.167.51", "443", key])
    let pyrogram = try BadSessionTorture.peer("pyrogram-strings", ["2", "12345", "0", "777", "0", key])
    seeds["FuzzSessionStrings"] =
      ([telethon["string"]] + ["351", "356", "362"].map { pyrogram[$0] }).compactMap { $0 as? String }
      .map { Array($0.utf8) }
    seeds["FuzzSessionFile"] = try BadSessionTorture.seedFiles(in: scratch).map {
      [UInt8](try FileSystem.read($0.path))
    }
    let fleet = try TortureFleet(users: 2, seed: 61, root: scratch.path + "/fleet", entities: 2)
    try fleet.tgsessOK(["backup", "--no-encrypt"])
    var archives: [[UInt8]] = []
    var manifests: [[UInt8]] = []
    for listed in try Witness.listed(fleet) {
      archives.append([UInt8](try FileSystem.read(listed.path)))
      manifests.append([UInt8](try ArchiveReader.read(path: listed.path, identities: []).encoded()))
    }
    seeds["FuzzArchiveReader"] = archives
    seeds["FuzzManifest"] = manifests
    return seeds
  }

  static func damage(_ bytes: [UInt8], _ random: inout TortureRandom) -> [UInt8] {
    guard !bytes.isEmpty else { return [UInt8(truncatingIfNeeded: random.next())] }
    var copy = bytes
    for _ in 0..<Int(1 + random.next() % 4) {
      let offset = Int(random.next() % UInt64(copy.count))
      switch random.next() % 4 {
      case 0: copy[offset] ^= UInt8(1 << (random.next() % 8))
      case 1: copy.insert(UInt8(truncatingIfNeeded: random.next()), at: offset)
      case 2: if copy.count > 1 { copy.remove(at: offset) }
      default: copy = Array(copy.prefix(max(1, offset)))
      }
    }
    return copy
  }

  @Test func regressionInputsAndDamagedSeeds() throws {
    let report = FamilyReport("fuzzing")
    defer { print(report.summary) }
    let scratch = try TemporaryDirectory("tgsess-fuzz-smoke")
    let work = scratch.path + "/work"
    try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
    let seeds = try Self.seeds(scratch: scratch)
    var random = TortureRandom(seed: Torture.seed &+ 13)
    for target in Self.targets {
      for (name, input) in Self.regressions(target) {
        report.check("\(target): regression input \(name)") {
          Self.check(target, input, scratch: work).map { [$0] } ?? []
        }
      }
      let rounds = Torture.pick(quick: 50, full: 1000)
      report.check("\(target): \(seeds[target]?.count ?? 0) seeds, each with \(rounds) random damages") {
        var problems: [String] = []
        guard let inputs = seeds[target], !inputs.isEmpty else { return ["no seed for \(target)"] }
        for (index, seed) in inputs.enumerated() {
          if let problem = Self.check(target, seed, scratch: work) { problems.append("seed \(index): \(problem)") }
          for round in 0..<rounds {
            if let problem = Self.check(target, Self.damage(seed, &random), scratch: work) {
              problems.append("seed \(index) damage \(round): \(problem)")
            }
          }
        }
        return problems
      }
    }
  }
}

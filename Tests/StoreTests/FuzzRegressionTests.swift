import Foundation
import Store
import TestSupport
import Testing

/// Replays every input a fuzz target once crashed on, or found a violated property with
/// (`Fixtures/fuzz-regressions/<target>/`, copied there by scripts/torture.sh), through the same
/// checks the libFuzzer targets run (`FuzzChecks`, which `fuzz/` shares).
@Suite struct FuzzRegressionTests {
  static let targets = ["FuzzSessionStrings", "FuzzSessionFile", "FuzzManifest", "FuzzArchiveReader"]

  /// The regression inputs of `target`, by file name.
  static func inputs(_ target: String) throws -> [(String, [UInt8])] {
    guard let resources = Bundle.module.resourceURL else { throw TestHelperError("no StoreTests resources") }
    let directory = resources.appendingPathComponent("Fixtures/fuzz-regressions/" + target).path
    let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter {
      !$0.hasPrefix(".") && $0 != "README.md"
    }
    return try names.sorted().map { ($0, [UInt8](try FileSystem.read(directory + "/" + $0))) }
  }

  /// The targets that have regression inputs.
  static let targetsWithInputs = targets.filter { !((try? inputs($0)) ?? []).isEmpty }

  @Test(arguments: targetsWithInputs)
  func replay(_ target: String) throws {
    let scratch = try TemporaryDirectory("tgsess-fuzz-replay")
    for (name, input) in try Self.inputs(target) {
      let problem: String?
      switch target {
      case "FuzzSessionStrings": problem = FuzzChecks.sessionStrings(input)
      case "FuzzSessionFile": problem = FuzzChecks.sessionFile(input, scratch: scratch.path)
      case "FuzzManifest": problem = FuzzChecks.manifest(input)
      default: problem = FuzzChecks.archive(input, scratch: scratch.path)
      }
      #expect(problem == nil, "\(target)/\(name): \(problem ?? "")")
    }
  }
}

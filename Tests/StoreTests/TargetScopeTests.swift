import Foundation
import Store
import TestSupport
import Testing

/// Which `restore --target` directories a bot could use (and so fall under the cross-host
/// guard), on real directories: this deployment, another one, a farm's accounts directory, a
/// symlink into a deployment, and a scratch directory that none of them is.
struct TargetScopeTests {
  @Test func insideADeploymentIsBotUseAndAScratchDirectoryIsNot() throws {
    let temporary = try TemporaryDirectory("tgsess-scope")
    let root = temporary.file("live")
    let shared = temporary.file("shared-sessions")
    for directory in [root + "/sessions", root + "/data", shared, temporary.file("scratch")] {
      try FileSystem.makeDirectory(directory)
    }
    let deployment = Deployment(root: root)
    let elsewhere = Deployment(
      root: root, config: try Config.parse("sessions_dir = \"\(shared)\"\n", path: root + "/tgsess.toml"))
    // Another deployment on this machine, known by its config or by its database.
    try FileSystem.makeDirectory(temporary.file("other"))
    try Data().write(to: URL(fileURLWithPath: temporary.file("other/tgsess.toml")))
    try FileSystem.makeDirectory(temporary.file("legacy/data"))
    try Data().write(to: URL(fileURLWithPath: temporary.file("legacy/data/telegram_bot.db")))
    // A farm's accounts directory, and a symlink into the deployment.
    try FileSystem.makeDirectory(temporary.file("farm"))
    try Data().write(to: URL(fileURLWithPath: temporary.file("farm/79001234567.session")))
    try FileManager.default.createSymbolicLink(atPath: temporary.file("link"), withDestinationPath: root)

    let table: [(String, Deployment, String?)] = [
      (root + "/restored", deployment, "this deployment \(root)"),
      (root + "/sessions/copy", deployment, "this deployment's sessions directory \(root)/sessions"),
      (root + "/data/copy/deeper", deployment, "this deployment's database directory \(root)/data"),
      (shared + "/copy", elsewhere, "this deployment's sessions directory \(shared)"),
      (temporary.file("link/copy"), deployment, "this deployment \(root)"),
      (root + "/../live/x", deployment, "this deployment \(root)"),
      (temporary.file("other/copy"), deployment, "the deployment at \(temporary.file("other"))"),
      (temporary.file("legacy/data/x"), deployment, "the deployment at \(temporary.file("legacy"))"),
      (temporary.file("farm/restored"), deployment, "\(temporary.file("farm")), which holds session files"),
      (temporary.file("scratch/copy"), deployment, nil),
      (temporary.file("scratch/not/yet/made"), deployment, nil),
      (temporary.file("shared-sessions/copy"), deployment, nil),
    ]
    for (target, deployment, expected) in table {
      let found = TargetScope.botUse(of: target, deployment: deployment)
      #expect(found == expected, "\(target): \(found ?? "nil")")
    }
  }
}

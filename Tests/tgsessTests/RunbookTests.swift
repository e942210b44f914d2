import Foundation
import Jobs
import Store
import TestSupport
import Testing

/// Issue #16: docs/RUNBOOK.md's procedures, run as written on a fixture deployment, as the
/// `tgsess` user (`runuser`, as the RUNBOOK's root shell does), with the age identity off the
/// host. The shell blocks are read from the RUNBOOK itself; only the example paths are mapped to
/// the fixture's, and the lines that need a real host (systemctl, install.sh, scp, ssh) are left
/// out. A documented command that stops working fails this test.
@Suite(.serialized) struct RunbookTests {
  static let runbook = TestEnvironment.packageRoot + "/docs/RUNBOOK.md"

  /// The ```sh blocks of the section whose heading starts with `heading` (`## 1.`), in order.
  static func blocks(_ heading: String) throws -> [String] {
    let text = try String(contentsOfFile: runbook, encoding: .utf8)
    var blocks: [String] = []
    var inSection = heading.isEmpty
    var current: [String]?
    for line in text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
      if line.hasPrefix("## ") { inSection = line.hasPrefix(heading) && !heading.isEmpty }
      if heading.isEmpty, line.hasPrefix("## ") { break }
      guard inSection else { continue }
      if current == nil, line == "```sh" {
        current = []
      } else if current != nil, line == "```" {
        blocks.append(current!.joined(separator: "\n"))
        current = nil
      } else if current != nil {
        current!.append(line)
      }
    }
    return blocks
  }

  /// The RUNBOOK's "identity off the host" block with `body` where it says `# ... tgsess restore ...`:
  /// the identity installed from escrow, the job, the copy shredded.
  static func withIdentity(_ body: String) throws -> String {
    let wrapper = try blocks("")[1].split(separator: "\n").map(String.init)
    let slot = try #require(wrapper.firstIndex { $0.hasPrefix("# ...") })
    return (wrapper[..<slot] + [body] + wrapper[(slot + 1)...]).joined(separator: "\n")
  }

  /// Commands of a block that need a real host rather than a deployment.
  static func isHostOnly(_ line: String) -> Bool {
    let command = line.trimmingCharacters(in: .whitespaces)
    return ["systemctl ", "scripts/install.sh", "scp ", "ssh "].contains { command.hasPrefix($0) }
  }

  /// A fixture host: the deployment (users, one backup pushed to a local remote), the identity
  /// moved into escrow, a config, and everything owned by the `tgsess` user.
  final class Host {
    let fleet: TestFleet
    let base: String
    let config: String
    let escrow: String
    let run: String
    let remote: String
    let binary = TestEnvironment.productPath("tgsess")

    init() throws {
      try Tools.require()
      if try runProcess("/usr/bin/getent", ["passwd", "tgsess"]).status != 0 {
        let added = try runProcess(
          "/usr/sbin/useradd", ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "tgsess"])
        guard added.status == 0 else { throw TestHelperError("useradd tgsess: \(added.stderr)") }
      }
      fleet = try TestFleet(users: 3)
      base = fleet.directory.path
      config = base + "/etc/tgsess.toml"
      escrow = base + "/escrow"
      run = base + "/run"
      remote = base + "/remote"
      for directory in [base + "/etc", escrow, run, remote] {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
      }
      try """
      root = "\(fleet.root)"
      backups_dir = "\(fleet.root)/backups"
      deployment_name = "bot-1"

      [[remotes]]
      name = "s3"
      path = "\(remote)"

      """.write(toFile: config, atomically: true, encoding: .utf8)
      chmod(base, 0o755)
      try Self.shell("chown -R tgsess:tgsess \"$1\" \"$2\" \"$3\" \"$4\"", [fleet.root, remote, run, base + "/etc"])
      try tgsess(["init"])
      try tgsess(["backup"])
      // Escrow (README "Escrow"): the three key files off the host, the identity gone from it.
      for name in ["age-identity.txt", "fernet.keys", "signing.pub"] {
        try Self.shell("install -m 0600 \"$1\" \"$2\"", [fleet.root + "/keys/" + name, escrow + "/" + name])
      }
      try FileManager.default.removeItem(atPath: fleet.identityPath)
    }

    /// Runs tgsess as the `tgsess` user on this host's config.
    @discardableResult
    func tgsess(_ arguments: [String]) throws -> ProcessResult {
      let result = try runProcess(
        "/usr/sbin/runuser", ["-u", "tgsess", "--", binary] + arguments, environment: ["TGSESS_CONFIG": config])
      guard result.status == 0 else {
        throw TestHelperError("tgsess \(arguments.joined(separator: " ")) exited \(result.status): \(result.stderr)")
      }
      return result
    }

    static func shell(_ script: String, _ arguments: [String]) throws {
      let result = try runProcess("/bin/sh", ["-c", script, "sh"] + arguments)
      guard result.status == 0 else { throw TestHelperError("\(script): \(result.stderr)") }
    }

    /// The RUNBOOK's example paths mapped to this host's.
    var paths: [(String, String)] {
      [
        ("/etc/tgsess/tgsess.toml", config), ("/usr/local/bin/tgsess", binary), ("/media/escrow", escrow),
        ("/run/tgsess-", run + "/tgsess-"), ("/var/backups/tgsess", fleet.root + "/backups"),
        ("/srv/tgbot", fleet.root), ("/root/", base + "/root-"), ("/var/tmp/tgsess-drill", base + "/drill"),
      ]
    }

    /// Runs RUNBOOK lines in bash as root, after the RUNBOOK's own preamble (`TGSESS_CONFIG` and
    /// the `tgsess` function that runs tgsess as the `tgsess` user), with `set -e`: the first
    /// command that fails fails the run.
    @discardableResult
    func runbook(_ lines: String, extra: [(String, String)] = [], label: String) throws -> ProcessResult {
      let preamble = try RunbookTests.blocks("")[0]
      var script = preamble + "\n" + lines
      for (from, to) in extra + paths { script = script.replacingOccurrences(of: from, with: to) }
      let kept = script.replacingOccurrences(of: "\\\n", with: " ").split(separator: "\n").map(String.init)
        .filter { !RunbookTests.isHostOnly($0) }
      let result = try runProcess(
        "/bin/bash", ["-c", "set -euo pipefail\n" + kept.joined(separator: "\n")], currentDirectory: base)
      fleet.keep("runbook " + label, result.stdout, result.stderr)
      guard result.status == 0 else {
        throw TestHelperError(
          "RUNBOOK \(label) failed (\(result.status)):\n\(kept.joined(separator: "\n"))\n--\n\(result.stdout)\n\(result.stderr)"
        )
      }
      return result
    }
  }

  @Test func everyProcedureWorksAsWrittenWithTheIdentityOffTheHost() throws {
    let host = try Host()
    let user = try host.fleet.telethonUserIDs(1)[0]

    // §8 right after escrowing.
    let escrowCheck = try Self.blocks("## 8.")
    #expect(escrowCheck.count == 1)
    var result = try host.runbook(escrowCheck[0], label: "§8")
    #expect(result.stdout.hasSuffix("escrow: ok\n"), "\(result.stdout)")

    // §1 restore one user (the identity from escrow; the dry run first).
    try host.fleet.tgsessOK(["list"])  // sanity: the fixture lists as root too
    try Data(randomBytes(4096)).write(to: URL(fileURLWithPath: host.fleet.sessionPath(user)))
    result = try host.runbook(
      try Self.withIdentity(Self.blocks("## 1.")[0]), extra: [("--user 42", "--user \(user)")], label: "§1")
    #expect(result.stdout.contains("restored from "), "\(result.stdout)")
    #expect(result.stdout.contains("check: 1 session(s) validate"), "\(result.stdout)")
    #expect(!FileManager.default.fileExists(atPath: host.run + "/tgsess-identity.txt"))
    #expect(try SessionFileInspector.inspect(path: host.fleet.sessionPath(user)).identity.dcID > 0)

    // §3 stock tools: the newest full snapshot, decrypted without tgsess.
    let full = try #require(try host.fleet.listedArchives(["--kind", "full"]).first).id
    result = try host.runbook(
      try Self.blocks("## 3.")[0],
      extra: [("20261125T053657Z-full-i4jfkk", full), ("/tmp/restore", host.base + "/stock-restore")], label: "§3")
    #expect(result.stdout.hasSuffix("ok\n"), "\(result.stdout)")
    #expect(result.stdout.contains("manifest.json: OK") || result.stdout.contains(": OK"), "\(result.stdout)")

    // §4 Fernet rotation, then the key-usage check; age rotation; then the escrow is updated as
    // §4 says (the new Fernet keys; one file holding both identities).
    let fernet = try Self.blocks("## 4.")
    #expect(fernet.count == 4)
    result = try host.runbook(fernet[0], label: "§4 fernet")
    #expect(result.stdout.contains("under the newest key"), "\(result.stdout)")
    result = try host.runbook(fernet[1], label: "§4 fernet usage")
    #expect(result.stdout.contains("(#2): 0 live secret(s)"), "\(result.stdout)")
    result = try host.runbook(fernet[2], label: "§4 age")
    #expect(result.stdout.contains("re-encrypted to the current recipients"), "\(result.stdout)")
    result = try host.runbook(fernet[3], label: "§4 signing")
    #expect(result.stdout.contains("is current"), "\(result.stdout)")
    try Host.shell(
      "install -m 0600 \"$1\" \"$2\"", [host.fleet.root + "/keys/signing.pub", host.escrow + "/signing.pub"])
    try Host.shell(
      "cat \"$1\" \"$2\" > \"$3.new\" && mv \"$3.new\" \"$3\" && chmod 0600 \"$3\" && install -m 0600 \"$4\" \"$5\"",
      [
        host.escrow + "/age-identity.txt", host.base + "/root-age-identity-2026.txt", host.escrow + "/age-identity.txt",
        host.fleet.root + "/keys/fernet.keys", host.escrow + "/fernet.keys",
      ])

    // §7 the full drill by hand with the escrowed copies, after the rotations.
    result = try host.runbook(try Self.blocks("## 7.")[0], label: "§7")
    #expect(result.stdout.hasPrefix("drill PASSED: "), "\(result.stdout)")
    #expect(result.stdout.contains("decrypt "), "\(result.stdout)")
    // The timer's drill with the identity off the host: partial, exit 3, said plainly.
    let partial = try runProcess(
      "/usr/sbin/runuser", ["-u", "tgsess", "--", host.binary, "drill"], environment: ["TGSESS_CONFIG": host.config])
    #expect(partial.status == 3 && partial.stdout.hasPrefix("drill PARTIAL"), "\(partial.stdout)\(partial.stderr)")

    // §8 again after the rotations.
    result = try host.runbook(escrowCheck[0], label: "§8 after rotation")
    #expect(result.stdout.hasSuffix("escrow: ok\n"), "\(result.stdout)")

    // §2b: a new host from the remote alone, then §2 steps 4 and 5 (keys from escrow, init,
    // status, first backup).
    try host.tgsess(["push"])
    let newRoot = host.base + "/new-srv"
    let newBackups = host.base + "/new-backups"
    let newConfig = host.base + "/new-etc/tgsess.toml"
    try FileManager.default.createDirectory(atPath: host.base + "/new-etc", withIntermediateDirectories: true)
    try """
    root = "\(newRoot)"
    backups_dir = "\(newBackups)"
    deployment_name = "bot-1"

    [[remotes]]
    name = "s3"
    path = "\(host.remote)"

    """.write(toFile: host.escrow + "/tgsess.toml", atomically: true, encoding: .utf8)
    let fullProcedure = try Self.blocks("## 2.")[0]
    let steps45 = String(fullProcedure[try #require(fullProcedure.range(of: "# 4.")).lowerBound...])
    let newHost: [(String, String)] = [
      ("/etc/tgsess/tgsess.toml", newConfig), ("/srv/tgbot", newRoot), ("/var/backups/tgsess", newBackups),
    ]
    result = try host.runbook(
      try Self.blocks("## 2b.")[0] + "\n" + steps45, extra: newHost, label: "§2b + §2 steps 4-5")
    #expect(result.stdout.contains("check: "), "\(result.stdout)")
    let restored = try Deployment(root: newRoot).sessionFileUserIDs()
    #expect(restored == (try host.fleet.sessionUserIDs()), "\(result.stdout)")
    #expect(result.stdout.contains("age identity not on this host"), "\(result.stdout)")
  }
}

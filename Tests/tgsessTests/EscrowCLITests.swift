import Foundation
import Jobs
import Store
import TestSupport
import Testing

/// `tgsess keys verify-escrow`: the escrow check that works as written. The copies are made the
/// way the RUNBOOK makes them (`install -m 0600`, `cat old new | install … /dev/stdin …`), the
/// rotations are the RUNBOOK's, and the archive it opens is one `tgsess backup` wrote.
@Suite struct EscrowCLITests {
  /// A fleet with one backup, and escrow copies of its three key files (mode 0600).
  static func escrowedFleet() throws -> (TestFleet, identity: String, fernet: String, signing: String) {
    try Tools.require()
    let fleet = try TestFleet(users: 3)
    try fleet.tgsessOK(["backup"])
    let escrow = fleet.directory.file("escrow")
    try FileManager.default.createDirectory(atPath: escrow, withIntermediateDirectories: true)
    var copies: [String] = []
    for name in ["age-identity.txt", "fernet.keys", "signing.pub"] {
      let copy = escrow + "/" + name
      try StockTools.pipeline(#"install -m 0600 "$1" "$2""#, [fleet.root + "/keys/" + name, copy])
      copies.append(copy)
    }
    return (fleet, copies[0], copies[1], copies[2])
  }

  static func verify(_ fleet: TestFleet, _ arguments: [String]) throws -> ProcessResult {
    try fleet.tgsess(["keys", "verify-escrow"] + arguments)
  }

  /// The line of one item ("ok      archive: …").
  static func line(_ result: ProcessResult, _ item: String) -> String? {
    result.stdout.split(separator: "\n").map(String.init).first { $0.dropFirst(8).hasPrefix(item + ": ") }
  }

  @Test func escrowedCopiesPassAndTheOldShellCheckDidNot() throws {
    let (fleet, identity, fernet, signing) = try Self.escrowedFleet()
    // What the README used to say fails on the recipients file's comment line.
    let old = try runProcess(
      "/bin/sh", ["-c", #"age-keygen -y "$1" | diff - "$2""#, "sh", identity, fleet.root + "/keys/age-recipients.txt"])
    #expect(old.status != 0)

    let result = try Self.verify(fleet, ["--identity", identity, "--fernet-keys", fernet, "--verify-key", signing])
    #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
    let newest = try #require(try fleet.listedArchives(["--kind", "full"]).first).id
    #expect(
      Self.line(result, "recipients")
        == "ok      recipients: \(identity) holds the identity of each of the 1 recipient(s) in \(fleet.root)/keys/age-recipients.txt"
    )
    #expect(
      Self.line(result, "archive")
        == "ok      archive: \(identity) opens the newest signed archive \(newest) (header and first chunk)")
    let tokens = try fleet.sqlite(
      "SELECT (SELECT count(*) FROM user_sessions WHERE session_string != '') + (SELECT count(*) FROM user_sessions WHERE api_hash != '') + (SELECT count(*) FROM session_backups WHERE session_string != '') + (SELECT count(*) FROM session_backups WHERE api_hash != '')"
    )
    #expect(Self.line(result, "fernet")?.hasPrefix("ok      fernet: \(fernet) holds the current key ") == true)
    #expect(
      Self.line(result, "fernet")?.hasSuffix(" and decrypts all \(tokens) encrypted secret(s) in the database") == true)
    #expect(Self.line(result, "signing")?.hasPrefix("ok      signing: \(signing) holds every key of ") == true)
    #expect(result.stdout.hasSuffix("escrow: ok\n"))
    // JSON for scripts, and what was not given is said to be skipped.
    let json = try decodeJSON(EscrowReport.self, from: try Self.verify(fleet, ["--identity", identity, "--json"]))
    #expect(json.isOK)
    let statuses = json.findings.map { "\($0.item.rawValue)=\($0.status.rawValue)" }
    #expect(statuses == ["recipients=ok", "archive=ok", "fernet=skipped", "signing=skipped"])
    // No secret in any output.
    for secret in try Peers.secrets(fleet.deployment) {
      #expect(!result.stdout.contains(secret) && !result.stderr.contains(secret))
    }
  }

  @Test func aWrongIdentityFailsBothIdentityChecks() throws {
    let (fleet, _, _, _) = try Self.escrowedFleet()
    let other = fleet.directory.file("other-identity.txt")
    #expect(try runProcess(Tools.ageKeygen, ["-o", other]).status == 0)
    chmod(other, 0o600)
    let recipient = try String(contentsOfFile: fleet.root + "/keys/age-recipients.txt", encoding: .utf8)
      .split(separator: "\n").first { $0.hasPrefix("age1") }!
    let result = try Self.verify(fleet, ["--identity", other])
    #expect(result.status == 1)
    #expect(
      Self.line(result, "recipients")?.hasPrefix("FAILED  recipients: \(other) holds no identity for \(recipient) ")
        == true)
    #expect(
      Self.line(result, "archive")?.hasPrefix("FAILED  archive: \(other) does not open the newest archive ") == true)
    #expect(result.stdout.hasSuffix("escrow: FAILED; fix the copies named above, then run this again\n"))
  }

  /// RUNBOOK §4's age rotation: the new identity alone does not hold the old recipient; the
  /// combined file made with `install … /dev/stdin` holds both and passes.
  @Test func afterAnAgeRotationTheCombinedIdentityFilePasses() throws {
    let (fleet, identity, _, _) = try Self.escrowedFleet()
    let new = fleet.directory.file("age-identity-2026.txt")
    #expect(try runProcess(Tools.ageKeygen, ["-o", new]).status == 0)
    chmod(new, 0o600)
    try StockTools.pipeline(#"age-keygen -y "$1" >> "$2""#, [new, fleet.root + "/keys/age-recipients.txt"])
    // The full snapshots from before the rotation are gone (pruned), so the newest one is the
    // backup made after it, encrypted to both recipients.
    let full = fleet.root + "/backups/full"
    for name in try FileManager.default.contentsOfDirectory(atPath: full) {
      try FileManager.default.removeItem(atPath: full + "/" + name)
    }
    try fleet.tgsessOK(["backup"])

    let alone = try Self.verify(fleet, ["--identity", new])
    #expect(alone.status == 1)
    #expect(Self.line(alone, "recipients")?.hasPrefix("FAILED  recipients: \(new) holds no identity for age1") == true)
    #expect(Self.line(alone, "archive")?.hasPrefix("ok      archive: ") == true)

    let combined = fleet.directory.file("combined.txt")
    try StockTools.pipeline(#"cat "$1" "$2" | install -m 0600 /dev/stdin "$3""#, [identity, new, combined])
    let both = try Self.verify(fleet, ["--identity", combined])
    #expect(both.status == 0, "\(both.stdout)\(both.stderr)")
    #expect(Self.line(both, "recipients")?.contains("each of the 2 recipient(s)") == true)
  }

  /// After `keys add-fernet && migrate --rotate-key` and `keys rotate-signing`, the copies made
  /// before are stale: each says what it lacks.
  @Test func staleFernetAndSigningCopiesFail() throws {
    let (fleet, identity, fernet, signing) = try Self.escrowedFleet()
    try fleet.tgsessOK(["keys", "add-fernet"])
    try fleet.tgsessOK(["migrate", "--rotate-key"])
    try fleet.tgsessOK(["keys", "rotate-signing"])
    let result = try Self.verify(fleet, ["--identity", identity, "--fernet-keys", fernet, "--verify-key", signing])
    #expect(result.status == 1)
    let fernetLine = try #require(Self.line(result, "fernet"))
    #expect(fernetLine.hasPrefix("FAILED  fernet: \(fernet) lacks the current key "))
    #expect(fernetLine.contains("encrypted secret(s) do not decrypt with it"))
    let newKey = try KeyStore.loadSigningKey(fleet.deployment).keyID
    #expect(
      Self.line(result, "signing")
        == "FAILED  signing: \(signing) lacks key(s) \(newKey) of \(fleet.root)/keys/signing.pub: copy that file into escrow again"
    )
  }

  /// A copy readable by others is refused with the chmod to run, as the deployment's own key is.
  @Test func anIdentityCopyOthersCanReadIsRefused() throws {
    let (fleet, identity, _, _) = try Self.escrowedFleet()
    chmod(identity, 0o644)
    let result = try Self.verify(fleet, ["--identity", identity])
    #expect(result.status == 1)
    #expect(result.stderr.hasPrefix("tgsess: keys verify-escrow: \(identity): "))
    #expect(result.stderr.hasSuffix("run: chmod 600 \(identity)\n"))
    let usage = try Self.verify(fleet, [])
    #expect(usage.status == 64)
  }
}

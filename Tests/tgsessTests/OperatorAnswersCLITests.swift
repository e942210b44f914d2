import Foundation
import Jobs
import Store
import TestSupport
import Testing

/// Issue #16, answers that match what happened: what `check --deep` proved, and a restore's
/// dry run that compares content.
@Suite struct OperatorAnswersCLITests {
  /// With the identity off the host, `check --deep` said "OK" without saying that it decrypted
  /// nothing. The summary line (text, JSON, Nagios) now says what was proven.
  @Test func checkDeepSaysWhetherItDecryptedAnything() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 3, backedUp: true)
    let archives = try fleet.listedArchives().count
    let onHost = try fleet.tgsess(["check", "--deep", "--no-write", "--nagios"])
    #expect(onHost.status == 0, "\(onHost.stdout)")
    #expect(
      onHost.stdout.contains(
        "; deep: \(archives) archive(s) read in full (decrypted, every entry hashed against its manifest) |"),
      "\(onHost.stdout)")

    try FileManager.default.moveItem(atPath: fleet.identityPath, toPath: fleet.directory.file("escrow.txt"))
    let offHost = try fleet.tgsess(["check", "--deep", "--no-write", "--nagios"])
    #expect(offHost.status == 0, "\(offHost.stdout)")
    #expect(
      offHost.stdout.contains(
        "; deep: no age identity on this host, so nothing was decrypted: \(archives) archive(s) compared with their signed SHA-256 and size only |"
      ), "\(offHost.stdout)")
    let json = try fleet.check(["--deep", "--no-write"])
    #expect(json.result.deep?.hasPrefix("deep: no age identity on this host, so nothing was decrypted") == true)
    #expect(json.result.summary.hasSuffix(json.result.deep ?? "-"))
    // Without --deep, no claim either way.
    #expect(try fleet.check(["--no-write"]).result.deep == nil)
  }

  /// `backup` printed "verified: ciphertext" without saying that nothing was decrypted.
  @Test func backupSaysWhatItsReadBackProved() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 2)
    let onHost = try fleet.tgsessOK(["backup"])
    #expect(onHost.stdout.contains("verified: full (decrypted, every entry hashed)"), "\(onHost.stdout)")
    try FileManager.default.moveItem(atPath: fleet.identityPath, toPath: fleet.directory.file("escrow.txt"))
    let offHost = try fleet.tgsessOK(["backup", "--user", String(fleet.userIDs[0])])
    #expect(
      offHost.stdout.contains(
        "verified: ciphertext only (re-read SHA-256; no identity on this host, nothing decrypted)"), "\(offHost.stdout)"
    )
  }

  /// `restore --dry-run` listed every file as `replace` after a backup, though nothing had
  /// changed (a snapshot's bytes differ from the file Telethon wrote). Content is compared now:
  /// the same schema and rows is "unchanged", left alone by the restore; a real change is still
  /// "replace".
  @Test func dryRunShowsUnchangedWhereOnlyTheBytesDiffer() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 3, backedUp: true)
    let user = try fleet.telethonUserIDs(1)[0]
    let path = fleet.sessionPath(user)
    let live = try FileSystem.sha256(ofFile: path)
    let plan = try fleet.tgsessJSON(RestoreResult.self, ["restore", "latest", "--user", String(user), "--dry-run"])
    let session = try #require(plan.files.first { $0.path == path })
    #expect(session.sha256Before == live && session.sha256After != live, "the test needs differing bytes")
    #expect(session.action == .unchanged)
    let text = try fleet.tgsessOK(["restore", "latest", "--user", String(user), "--dry-run"])
    #expect(text.stdout.contains("  unchanged \(path)  \(live.prefix(12)) → \(session.sha256After.prefix(12))"))
    // The restore leaves the file alone (same inode, same bytes).
    var before = stat()
    stat(path, &before)
    try fleet.tgsessOK(["restore", "latest", "--user", String(user)])
    var after = stat()
    stat(path, &after)
    let bytesAfter = try FileSystem.sha256(ofFile: path)
    #expect(before.st_ino == after.st_ino && bytesAfter == live)

    // A real change (one cached entity row) is a replace.
    try fleet.sqlite("UPDATE entities SET name = 'changed' WHERE rowid = (SELECT min(rowid) FROM entities)", path: path)
    let changed = try fleet.tgsessJSON(RestoreResult.self, ["restore", "latest", "--user", String(user), "--dry-run"])
    #expect(changed.files.first { $0.path == path }?.action == .replace)
  }
}

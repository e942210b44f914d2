import Foundation
import Jobs
import Store
import TestSupport
import Testing

/// Issue #16: when the live data is too damaged to archive through SQLite, a restore's undo was
/// a directory of raw copies (`backups/before-restore/<time>/`) that was not encrypted, signed,
/// listed or pruned, and that `tgsess restore` could not bring back. It is now an archive like
/// every other ("Before restore", verbatim entries), and restoring it puts the damaged bytes
/// back exactly.
@Suite struct VerbatimUndoCLITests {
  /// Random bytes that nothing takes for an SQLite file or a hot journal (whose first bytes are
  /// `SQLite format 3` and `d9 d5 05 f9`).
  static func garbage(_ count: Int) -> Data {
    var bytes = randomBytes(count)
    bytes[0] = 0x5a
    return Data(bytes)
  }

  /// Decrypts `archive` with the stock `age` CLI and unpacks it with `zstd` and `tar` into
  /// `directory`.
  static func unpack(_ archive: String, identity: String, into directory: String) throws {
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let result = try runProcess(
      "/bin/bash",
      [
        "-c", "set -e -o pipefail; age -d -i \"$1\" \"$2\" | zstd -d -q -c | tar -xf - -C \"$3\"", "sh", identity,
        archive, directory,
      ])
    guard result.status == 0 else { throw TestHelperError("unpacking \(archive) failed: \(result.stderr)") }
  }

  @Test func aDamagedSessionFilesUndoIsASignedArchiveThatPutsTheBytesBack() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 3, backedUp: true)
    let user = try fleet.telethonUserIDs(1)[0]
    let path = fleet.sessionPath(user)
    let damaged = Self.garbage(20_000)
    let journal = Self.garbage(3_000)
    try damaged.write(to: URL(fileURLWithPath: path))
    try journal.write(to: URL(fileURLWithPath: path + "-journal"))

    // 1. A good archive over the garbage: the undo is a listed, signed archive of its bytes.
    let restored = try fleet.tgsessOK(["restore", "latest", "--user", String(user)])
    let undo = try #require(RestoreCLITests.undoID(restored.stdout), "\(restored.stdout)")
    #expect(restored.stdout.contains("(tgsess restore \(undo) undoes this restore)"))
    #expect(!FileSystem.exists(fleet.backupsDirectory + "/before-restore"))
    #expect(!FileSystem.exists(path + "-journal"))
    let good = try SQLiteContent.digest(path: path)
    let listed = try #require(try fleet.listedArchives(["--user", String(user)]).first { $0.id == undo })
    #expect(listed.reason == "Before restore")
    #expect(listed.kind == .user && listed.userID == user)
    #expect(listed.signature == .signed)
    #expect(listed.verbatim == true)
    #expect(listed.recipients?.isEmpty == false)

    // 2. The stock tools open it, and the tar holds exactly the damaged bytes and their journal.
    let unpacked = fleet.directory.file("unpacked")
    try Self.unpack(listed.path, identity: fleet.identityPath, into: unpacked)
    #expect(try FileSystem.read(unpacked + "/sessions/user_\(user).session") == damaged)
    #expect(try FileSystem.read(unpacked + "/sessions/user_\(user).session-journal") == journal)
    let manifest = try Manifest.decode(try FileSystem.read(unpacked + "/manifest.json"), objectName: listed.path)
    // Format 2: a tgsess older than verbatim entries refuses it as newer than it reads.
    #expect(manifest.formatVersion == 2)
    let verbatim = Set(manifest.entries.filter { $0.role == .verbatim }.map(\.path))
    #expect(verbatim.isSuperset(of: ["sessions/user_\(user).session", "sessions/user_\(user).session-journal"]))
    #expect(manifest.entries.allSatisfy { $0.role != .session })

    // 3. Restoring the undo puts those bytes back, the journal too, and clears a -wal it did not hold.
    try Self.garbage(100).write(to: URL(fileURLWithPath: path + "-wal"))
    let dryRun = try fleet.tgsessOK(["restore", undo, "--dry-run"])
    #expect(dryRun.stdout.contains("this restores the damaged file as it was"), "\(dryRun.stdout)")
    let undone = try fleet.tgsessOK(["restore", undo, "--force"])
    #expect(undone.stdout.contains("this restores the damaged file as it was"), "\(undone.stdout)")
    #expect(undone.stdout.contains("put back byte for byte as archived"), "\(undone.stdout)")
    #expect(try FileSystem.read(path) == damaged)
    #expect(try FileSystem.read(path + "-journal") == journal)
    #expect(!FileSystem.exists(path + "-wal"))

    // 4. That restore took its own undo first: nothing already there is lost.
    let again = try #require(RestoreCLITests.undoID(undone.stdout), "\(undone.stdout)")
    try fleet.tgsessOK(["restore", again, "--force"])
    #expect(try SQLiteContent.digest(path: path) == good)

    // 5. A verifiable archive of damaged data is no failure for check --deep.
    let check = try fleet.check(["--deep", "--no-write"])
    #expect(
      check.findings.filter { $0.check.hasPrefix("backup") && $0.state != "ok" }.isEmpty, "\(check.report)")
  }

  @Test func aTruncatedDatabasesUndoIsAFullArchiveThatPutsItBack() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 3, backedUp: true)
    let database = try FileSystem.read(fleet.databasePath)
    let truncated = database.prefix(database.count / 2)
    try truncated.write(to: URL(fileURLWithPath: fleet.databasePath))

    let restored = try fleet.tgsessOK(["restore", "latest", "--force"])
    let undo = try #require(RestoreCLITests.undoID(restored.stdout), "\(restored.stdout)")
    #expect(try fleet.sqlite("PRAGMA integrity_check") == "ok")
    let listed = try #require(try fleet.listedArchives(["--kind", "full"]).first { $0.id == undo })
    #expect(listed.reason == "Before restore" && listed.signature == .signed && listed.verbatim == true)

    let undone = try fleet.tgsessOK(["restore", undo, "--force"])
    #expect(undone.stdout.contains("this restores the damaged file as it was"), "\(undone.stdout)")
    #expect(try FileSystem.read(fleet.databasePath) == truncated)
    // And back again from the undo of that restore.
    let again = try #require(RestoreCLITests.undoID(undone.stdout), "\(undone.stdout)")
    try fleet.tgsessOK(["restore", again, "--force"])
    #expect(try fleet.sqlite("PRAGMA integrity_check") == "ok")
  }

  @Test func withoutAnUndoArchiveTheRestoreRefusesAndChangesNothing() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 3, backedUp: true)
    let user = try fleet.telethonUserIDs(1)[0]
    let path = fleet.sessionPath(user)
    let damaged = Self.garbage(20_000)
    try damaged.write(to: URL(fileURLWithPath: path))
    let archives = try fleet.listedArchives().map(\.id)
    // No recipient to encrypt to: neither undo archive can be written.
    try FileManager.default.moveItem(
      atPath: fleet.deployment.ageRecipientsPath, toPath: fleet.directory.file("recipients.txt"))

    let result = try fleet.tgsess(["restore", "latest", "--user", String(user), "--force"])
    #expect(result.status == 1, "\(result.stdout)\(result.stderr)")
    let lines = result.stderr.split(separator: "\n").filter { $0.hasPrefix("tgsess: ") }
    #expect(lines.count == 1, "\(result.stderr)")
    #expect(
      lines.first?.hasPrefix(
        "tgsess: restore refused: no undo archive of what it would replace could be written in \(fleet.backupsDirectory)"
      )
        == true, "\(result.stderr)")
    #expect(lines.first?.contains("nothing was changed") == true)
    #expect(try FileSystem.read(path) == damaged)
    #expect(try fleet.listedArchives().map(\.id) == archives)
    #expect(!FileSystem.exists(fleet.backupsDirectory + "/before-restore"))
  }
}

import Foundation
import Jobs
import Store
import TestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// backup, restore and migrate on a small tmpfs that fills up mid-run: for a sweep of free-space
/// levels (so the disk runs out at every stage: staging, archive, record, database journal,
/// undo, safety copy), and once on a filesystem remounted read-only. Each run either succeeds
/// completely or fails with one clean error line; a failed run leaves no partial or hidden file,
/// the live database and session files and every earlier archive as they were; once space is
/// back, the same command succeeds.
@Suite(.serialized, .enabled(if: Torture.isEnabled, "set TGSESS_TORTURE_SCALE=quick|full (scripts/torture.sh)"))
struct DiskFullTorture {
  /// Fills `mount` with one file until `free` bytes are left.
  static func fill(_ mount: TmpfsMount, leaving free: Int64) throws {
    let path = mount.path + "/filler"
    unlink(path)
    let target = max(0, mount.freeBytes - free)
    let fd = open(path, O_WRONLY | O_CREAT, 0o600)
    guard fd >= 0 else { throw TestHelperError("cannot create \(path)") }
    defer { close(fd) }
    guard target == 0 || posix_fallocate(fd, 0, off_t(target)) == 0 else {
      throw TestHelperError("posix_fallocate of \(target) bytes failed")
    }
  }

  static func unfill(_ mount: TmpfsMount) { unlink(mount.path + "/filler") }

  /// What a clean failure looks like: exit 1 and one line on stderr naming the cause.
  static func cleanFailure(_ result: ProcessResult, causes: [String]) -> [String] {
    var problems: [String] = []
    if result.status != 1 { problems.append("exit \(result.status), not 0 or 1") }
    let lines = result.stderr.split(separator: "\n", omittingEmptySubsequences: true)
    // Log lines (notice) may precede the error; the error is the last line and starts with "tgsess:".
    guard let last = lines.last, last.hasPrefix("tgsess: ") else {
      return problems + ["no error line: \(result.stderr.prefix(400))"]
    }
    if lines.filter({ $0.hasPrefix("tgsess: ") }).count != 1 {
      problems.append("more than one error line: \(result.stderr.prefix(400))")
    }
    if !causes.contains(where: { last.lowercased().contains($0) }) {
      problems.append("the error does not name the cause: \(last.prefix(300))")
    }
    return problems
  }

  static let diskFullCauses = ["no space left on device", "disk full", "disk is full"]
  static let readOnlyCauses = ["read-only file system", "readonly", "read-only"]

  /// Files in the deployment that are hidden (temporaries, staging) or new and not whole.
  static func partialFiles(_ fleet: TortureFleet, newSince before: [String: String]) throws -> [String] {
    var problems = try Witness.leftovers(fleet).map { "left behind: \($0)" }
    let listed = Set(try Witness.listed(fleet).map(\.path))
    let snapshot = try TreeSnapshot(fleet.root)
    for (path, _) in snapshot.files where before[path] == nil && path != "filler" {
      let full = fleet.root + "/" + path
      if path.hasSuffix(ArchiveName.encryptedSuffix) || path.hasSuffix(ArchiveName.plainSuffix) {
        if !listed.contains(full) { problems.append("unlisted new archive \(path)") }
      } else if path.hasSuffix(ArchiveName.recordSuffix) {
        continue
      } else if path.hasSuffix(ArchiveSignature.fileSuffix) {
        // A signature is published just before its archive: it belongs only beside a listed one.
        let base = String(full.dropLast(ArchiveSignature.fileSuffix.count))
        if !listed.contains(base + ArchiveName.encryptedSuffix) && !listed.contains(base + ArchiveName.plainSuffix) {
          problems.append("signature without its archive \(path)")
        }
      } else if path.contains("pre-migrate/") {
        if try StockTools.integrityCheck(full) != "ok" { problems.append("partial copy \(path)") }
      } else if path.hasPrefix("sessions/") && path.contains(".broken-") {
        continue
      } else {
        problems.append("new file \(path)")
      }
    }
    return problems
  }

  enum Command: String, CaseIterable {
    case backup, restore, migrate
  }

  /// A deployment on its own tmpfs of `sizeKiB`, ready for `command`.
  static func deployment(for command: Command, mount: TmpfsMount, template: String) throws -> TortureFleet {
    let root = mount.path + "/live"
    switch command {
    case .backup:
      return try TortureFleet(users: 10, seed: 41, root: root)
    case .restore:
      let fleet = try TortureFleet(users: 10, seed: 42, root: root)
      try fleet.tgsessOK(["backup"])
      return fleet
    case .migrate:
      let fleet = try TortureFleet(users: 6, legacy: true, seed: 43, root: root)
      // The signing key too: migrate's safety copy is a signed archive like every other.
      for name in ["age-identity.txt", "age-recipients.txt", "fernet.keys", "signing.key", "signing.pub"] {
        try FileSystem.writeAtomically(try FileSystem.read(template + "/keys/" + name), to: root + "/keys/" + name)
      }
      try fleet.collectSecrets()
      return fleet
    }
  }

  /// Runs `command` once with `free` bytes left (or on a read-only remount) and checks it.
  static func runOnce(
    _ command: Command, free: Int64?, mount: TmpfsMount, template: String, scratch: TemporaryDirectory
  ) throws -> (problems: [String], outcome: String) {
    let fleet = try deployment(for: command, mount: mount, template: template)
    defer { try? FileManager.default.removeItem(atPath: fleet.root) }
    var arguments: [String]
    var drift: () throws -> Void = {}
    switch command {
    case .backup:
      arguments = ["backup"]
    case .restore:
      let archive = try CrashPointTorture.newestArchive(fleet, kind: "full")
      arguments = ["restore", archive.id]
      // The live deployment drifts, so the restore has files to replace and an undo to take.
      drift = {
        try fleet.rotateKeys(Array(fleet.userIDs.prefix(3)))
        try fleet.sql("UPDATE copy_configs SET enabled = 1 - enabled", on: fleet.databasePath)
      }
    case .migrate:
      arguments = ["migrate"]
    }
    // What every user holds once the command has completed: for a restore, the archive's sessions.
    let expected = CrashPointTorture.allIdentities(fleet)
    try drift()
    let tables = try Witness.tables(fleet)
    let sessions = try Witness.sessionFiles(fleet)
    let tree = try TreeSnapshot(fleet.root).files
    let archives = try Witness.archiveFiles(fleet)

    if let free {
      try fill(mount, leaving: free)
    } else {
      let remount = try runProcess("/bin/mount", ["-o", "remount,ro", mount.path])
      guard remount.status == 0 else { throw TestHelperError("remount ro failed: \(remount.stderr)") }
    }
    let result = try fleet.tgsess(arguments)
    if free == nil { _ = try runProcess("/bin/mount", ["-o", "remount,rw", mount.path]) }
    unfill(mount)

    var problems: [String] = []
    var outcome = "succeeded"
    if result.status != 0 {
      outcome = "failed cleanly"
      problems += cleanFailure(result, causes: free == nil ? readOnlyCauses : diskFullCauses)
      // Nothing partial, nothing earlier changed.
      problems += try partialFiles(fleet, newSince: tree)
      for (path, sha) in archives where (try? FileSystem.sha256(ofFile: fleet.root + "/backups/" + path)) != sha {
        problems.append("earlier archive \(path) changed")
      }
      let nowTables = try Witness.tables(fleet)
      let nowSessions = try Witness.sessionFiles(fleet)
      switch command {
      case .backup:
        // Per-user archives published before the disk filled are whole and recorded; nothing else is.
        problems += FileTree.differences(sessions, nowSessions).map { "session file: \($0)" }
        problems += Witness.differences(tables, nowTables, tables: ["user_sessions", "copy_configs", "message_log"])
        let listed = Set(try Witness.listed(fleet).map(\.id))
        for id in try Witness.recordedArchiveIDs(fleet) where !listed.contains(id) {
          problems.append("session_backups names archive \(id), which is not there")
        }
      case .migrate:
        problems += FileTree.differences(sessions, nowSessions).map { "session file: \($0)" }
        problems += Witness.differences(
          tables, nowTables, tables: ["user_sessions", "session_backups", "copy_configs", "message_log"])
      case .restore:
        // A restore that failed before applying left everything; one that failed while applying
        // has an undo archive and each file whole: the old one or the archive's.
        let changed = FileTree.differences(sessions, nowSessions)
        if !changed.isEmpty {
          let undo = try Witness.listed(fleet).filter { archives[$0.path] == nil && $0.kind == .full }
          if undo.isEmpty { problems.append("files changed without an undo archive: \(changed.prefix(3))") }
        }
      }
      if try Witness.integrity(fleet.databasePath) != "ok" { problems.append("database integrity_check fails") }
    }
    problems += try Witness.verifyListed(fleet).problems

    // With space back, the same command completes (and a migrate leaves no plaintext secret).
    let rerun = try fleet.tgsess(arguments)
    if rerun.status != 0 { problems.append("with space back, the rerun exited \(rerun.status): \(rerun.stderr)") }
    problems += try Witness.verifyListed(fleet).problems.map { "after the rerun: " + $0 }
    let left = try Witness.leftovers(fleet)
    if !left.isEmpty { problems.append("left behind after the rerun: \(left.prefix(5))") }
    problems += try Witness.noSessionLost(fleet, expected: expected)
    if command == .migrate, rerun.status == 0 {
      let (plain, _) = try CrashPointTorture.census(fleet)
      if plain != 0 { problems.append("\(plain) plaintext secret(s) after the rerun") }
    }
    try fleet.collectSecrets()
    return (problems, outcome)
  }

  @Test func backupRestoreAndMigrateOnAFillingDisk() throws {
    try StockTools.require()
    let report = FamilyReport("disk-full")
    defer { print(report.summary) }
    let template = try CrashPointTorture.keyTemplate()
    let scratch = try TemporaryDirectory("tgsess-diskfull")
    let levels = Torture.pick(quick: 2, full: 20)
    // How much each command needs at most, roughly: free-space levels spread over 0...ceiling.
    let ceilings: [Command: Int64] = [.backup: 1_400_000, .restore: 2_400_000, .migrate: 900_000]
    for command in Command.allCases {
      let mount = try TmpfsMount(at: scratch.path + "/mnt-\(command.rawValue)", sizeKiB: 24 * 1024)
      defer { mount.unmount() }
      var successes = 0
      for level in 0..<levels {
        // Denser where the runs fail (little space), so the disk fills at many different steps.
        let fraction = Double(level) / Double(max(levels - 1, 1))
        let free = Int64(Double(ceilings[command]!) * fraction * fraction)
        let started = Date()
        var problems: [String]
        var outcome = "error"
        do {
          (problems, outcome) = try Self.runOnce(
            command, free: free, mount: mount, template: template.path, scratch: scratch)
        } catch {
          problems = ["error: \(error)"]
        }
        report.record(
          "\(command.rawValue) with \(free / 1024) KiB free", problems: problems,
          seconds: Date().timeIntervalSince(started), detail: outcome, counts: [outcome: 1])
        if outcome == "succeeded" { successes += 1 }
      }
      report.check("\(command.rawValue) on a filesystem remounted read-only", counts: ["read-only": 1]) {
        try Self.runOnce(command, free: nil, mount: mount, template: template.path, scratch: scratch).problems
      }
      // The sweep must cross from failing to succeeding, or it tested nothing at one end.
      if Torture.isFull {
        #expect(successes > 0 && successes < levels, "\(command): \(successes) of \(levels) levels succeeded")
      }
    }
  }
}

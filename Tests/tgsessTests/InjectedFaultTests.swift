import Foundation
import Jobs
import Store
import TestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// Regressions found by the torture families `io-errors` (`iotrace.so` fails the Nth call of one
/// class) and `power-loss` (crash states a power cut may leave). Each runs the real tgsess.
@Suite struct InjectedFaultTests {
  /// How a faulty run is set up: the deployment and the run's TMPDIR are the scope.
  struct Faults {
    let fleet: TestFleet
    let work: String

    init(_ fleet: TestFleet) throws {
      self.fleet = fleet
      work = fleet.directory.file("faults")
      try FileSystem.makeDirectory(work + "/tmp")
    }

    /// Runs `arguments` with nothing failing and returns how many calls of `operation` it made.
    func count(_ operation: String, of arguments: [String]) throws -> Int {
      let counts = work + "/counts"
      let result = try fleet.tgsess(
        arguments,
        environment: try IOTrace.faulting(
          scope: [fleet.root, work + "/tmp"], operation: operation, n: 0, errors: ["EIO"], log: work + "/none",
          counts: counts, temporary: work + "/tmp"))
      guard result.status == 0 else { throw TestHelperError("the counting run exited \(result.status)") }
      let line = try String(contentsOfFile: counts, encoding: .utf8).split(separator: "\n")
        .first { $0.hasPrefix(operation + " ") }
      return Int(line?.split(separator: " ").last ?? "") ?? 0
    }

    /// Copies the deployment aside, so that `reset()` can put it back before each faulty run.
    func saveTemplate() throws {
      let copied = try runProcess("/bin/cp", ["-a", fleet.root, work + "/template"])
      guard copied.status == 0 else { throw TestHelperError("cp -a failed: \(copied.stderr)") }
    }

    /// Puts the deployment saved by `saveTemplate()` back.
    func reset() throws {
      try FileManager.default.removeItem(atPath: fleet.root)
      let copied = try runProcess("/bin/cp", ["-a", work + "/template", fleet.root])
      guard copied.status == 0 else { throw TestHelperError("cp -a failed: \(copied.stderr)") }
    }

    /// The calls of `operation` a clean run of `arguments` makes, in order, with their paths.
    func calls(_ operation: String, of arguments: [String]) throws -> [(n: Int, path: String)] {
      let list = work + "/calls"
      unlink(list)
      let result = try fleet.tgsess(
        arguments,
        environment: try IOTrace.faulting(
          scope: [fleet.root, work + "/tmp"], operation: operation, n: 0, errors: ["EIO"], log: work + "/none",
          calls: list, temporary: work + "/tmp"))
      guard result.status == 0 else { throw TestHelperError("the listing run exited \(result.status)") }
      return try String(contentsOfFile: list, encoding: .utf8).split(separator: "\n").compactMap { line in
        let parts = line.split(separator: " ", maxSplits: 2).map(String.init)
        guard parts.count == 3, parts[0] == operation, let n = Int(parts[1]) else { return nil }
        return (n, parts[2].removingPercentEncoding ?? parts[2])
      }
    }

    /// Fails, one run each on the deployment saved by `saveTemplate()`, the calls of `operation`
    /// on a path `wanted` accepts (the last first with `lastFirst`).
    /// - Returns: up to `limit` runs whose failed call was on such a path (threads may reorder
    ///   calls between runs; a run that failed another one is left out).
    func failingRuns(
      _ arguments: [String], failing operation: String, with error: String, limit: Int, lastFirst: Bool = false,
      on wanted: (String) -> Bool
    ) throws -> [(result: ProcessResult, path: String)] {
      try reset()
      var candidates = try calls(operation, of: arguments).filter { wanted($0.path) }.map(\.n)
      if lastFirst { candidates.reverse() }
      var runs: [(result: ProcessResult, path: String)] = []
      for n in candidates where runs.count < limit {
        try reset()
        let run = try self.run(arguments, failing: operation, n: n, with: error)
        if wanted(run.path) { runs.append(run) }
      }
      try reset()
      return runs
    }

    /// The error line of a failed run: the last line of stderr, when it is the only one that
    /// starts with "tgsess: ".
    static func errorLine(_ result: ProcessResult) -> String? {
      let lines = result.stderr.split(separator: "\n").map(String.init)
      guard let last = lines.last, last.hasPrefix("tgsess: "),
        lines.filter({ $0.hasPrefix("tgsess: ") }).count == 1
      else { return nil }
      return last
    }

    /// Runs `arguments` with call `n` of `operation` failing with `error`.
    /// - Returns: the result and the path the failed call was on.
    func run(_ arguments: [String], failing operation: String, n: Int, with error: String) throws -> (
      result: ProcessResult, path: String
    ) {
      let log = work + "/fault-\(operation)-\(n)"
      unlink(log)
      let result = try fleet.tgsess(
        arguments,
        environment: try IOTrace.faulting(
          scope: [fleet.root, work + "/tmp"], operation: operation, n: n, errors: [error], log: log,
          temporary: work + "/tmp"))
      // The first line is the fault; what follows it (its caller, later syncs) is not needed here.
      let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
      let line = text.split(separator: "\n").first.map(String.init) ?? ""
      let path = line.split(separator: " ", maxSplits: 4).dropFirst(4).first.map(String.init) ?? ""
      return (result, path.removingPercentEncoding ?? path)
    }
  }

  /// The rename of a per-user archive's record failed after the archive was published. The
  /// hidden record was removed on the way out, so the archive stayed listed without its record
  /// (fingerprint, verification) for good; it is now kept for the next run to roll forward.
  @Test func aRecordThatCouldNotBeRenamedIsRolledForwardByTheNextRun() throws {
    let fleet = try TestFleet(users: 2, initialized: true)
    let user = fleet.userIDs[0]
    let arguments = ["backup", "--user", String(user), "--reason", "Manual"]
    let faults = try Faults(fleet)
    let renames = try faults.count("rename", of: arguments)
    try #require(renames >= 2)
    // The last rename of a per-user backup is its record's.
    let (failed, path) = try faults.run(arguments, failing: "rename", n: renames, with: "EIO")
    try #require(path.hasSuffix(ArchiveName.recordSuffix), "the last rename was on \(path)")
    #expect(failed.status == 1, "\(failed.stderr)")
    #expect(failed.stderr.contains("Input/output error"), "\(failed.stderr)")

    let rerun = try fleet.tgsess(arguments)
    #expect(rerun.status == 0, "\(rerun.stderr)")
    let listed = try fleet.listedArchives(["--user", String(user), "--kind", "user"])
    #expect(listed.count >= 2)
    for archive in listed {
      #expect(archive.verification != .unknown, "archive \(archive.id) is listed without its record")
    }
  }

  /// SQLite reports EIO, EDQUOT and EACCES alike as "disk I/O error"; the error line now adds
  /// the errno SQLite saw, so it names the cause.
  @Test func aQuotaErrorUnderTheBotDatabaseIsNamed() throws {
    let fleet = try TestFleet(users: 2, initialized: true)
    let user = fleet.userIDs[0]
    let arguments = ["backup", "--user", String(user), "--reason", "Manual"]
    let faults = try Faults(fleet)
    let writes = try faults.count("write", of: arguments)
    // The last write of a per-user backup is the bot database's page with its session_backups row.
    let (failed, path) = try faults.run(arguments, failing: "write", n: writes, with: "EDQUOT")
    try #require(path == fleet.databasePath, "the last write was on \(path)")
    #expect(failed.status == 1, "\(failed.stderr)")
    let line = try #require(failed.stderr.split(separator: "\n").last { $0.hasPrefix("tgsess: ") })
    #expect(line.contains(fleet.databasePath) && line.contains("Disk quota exceeded"), "\(line)")
    #expect(try fleet.tgsess(arguments).status == 0)
  }

  /// A power cut (or a writer killed) mid-transaction leaves a hot journal beside the bot
  /// database. `watch` reads the rows through a read-only connection, which cannot roll it back,
  /// so every user's archive failed until the bot next opened the database (`watch --once` ended
  /// 3); it now rolls the journal back as `backup` does.
  @Test func watchOnceRollsBackAHotJournalOfTheBotDatabase() throws {
    let fleet = try TestFleet(users: 3, entities: 120, location: .subdirectory("fleet"))
    let backup = try fleet.tgsess(["backup"])
    try #require(backup.status == 0, "\(backup.stderr)")
    let user = fleet.userIDs[0]
    let archived = try fleet.userArchives(user).count
    try fleet.loginWithTelethon([user])
    let killed = try runProcess(
      TestEnvironment.python,
      [
        "-c",
        """
        import os, sqlite3, sys
        conn = sqlite3.connect(sys.argv[1], isolation_level=None)
        conn.execute('PRAGMA cache_size = 2')
        conn.execute('BEGIN')
        conn.execute('CREATE TABLE hot_journal_probe(x TEXT)')
        for i in range(2000):
            conn.execute('INSERT INTO hot_journal_probe VALUES (?)', ('x' * 200,))
        os.kill(os.getpid(), 9)
        """, fleet.databasePath,
      ])
    #expect(killed.status == SIGKILL)
    try #require(FileManager.default.fileExists(atPath: fleet.databasePath + "-journal"))

    let once = try fleet.tgsess(["watch", "--once", "--json"])
    #expect(once.status == 0, "\(once.stderr)")
    #expect(try fleet.userArchives(user).count == archived + 1)
    #expect(try fleet.sqlite("SELECT count(*) FROM sqlite_master WHERE name = 'hot_journal_probe'") == "0")
  }

  /// SQLite reports a read that failed with EIO as damage (SQLITE_CORRUPT): a read error on the
  /// bot database was reported as "not an SQLite database, or corrupted; restore it from a
  /// backup", which would have an operator restore over a healthy file. It is now an I/O error
  /// naming the file (the errno SQLite kept on it, or a read-back when it kept none).
  @Test func aReadErrorOnTheBotDatabaseIsAnIOErrorNotDamage() throws {
    let fleet = try TestFleet(users: 2, initialized: true)
    let arguments = ["backup", "--user", String(fleet.userIDs[0]), "--reason", "Manual"]
    let faults = try Faults(fleet)
    try faults.saveTemplate()
    let runs = try faults.failingRuns(arguments, failing: "read", with: "EIO", limit: 6) { $0 == fleet.databasePath }
    let failed = runs.filter { $0.result.status != 0 }
    try #require(!failed.isEmpty, "no read of \(fleet.databasePath) failed the run")
    for (result, _) in failed {
      let line = try #require(Faults.errorLine(result), "\(result.stderr)")
      #expect(line.contains(fleet.databasePath), "\(line)")
      #expect(line.contains("Input/output error") || line.contains("I/O error"), "\(line)")
      #expect(!line.contains("corrupted") && !line.contains("restore it from a backup"), "\(line)")
    }
  }

  /// A read error on the staging snapshot of the bot database was reported against the live
  /// database ("data/telegram_bot.db: its snapshot fails quick_check ... repair or restore the
  /// database"), over several lines, or as damage of the copy. Every failed read of the copy is
  /// now one error line naming the staging copy and the I/O error.
  @Test func aReadErrorOnTheStagingSnapshotNamesTheCopy() throws {
    let fleet = try TestFleet(users: 2, initialized: true)
    let faults = try Faults(fleet)
    try faults.saveTemplate()
    let runs = try faults.failingRuns(["backup"], failing: "read", with: "EIO", limit: 40) {
      $0.contains("/.staging-") && $0.hasSuffix("/data/telegram_bot.db")
    }
    let failed = runs.filter { $0.result.status != 0 }
    try #require(failed.count >= 3, "\(runs.count) runs, \(failed.count) failed")
    for (result, _) in failed {
      let line = try #require(Faults.errorLine(result), "\(result.stderr)")
      #expect(line.contains("/.staging-") && line.contains("data/telegram_bot.db"), "\(line)")
      #expect(line.contains("Input/output error") || line.contains("I/O error"), "\(line)")
      #expect(!line.contains("repair or restore") && !line.contains("restore it from a backup"), "\(line)")
    }
  }

  /// A whole restore whose check afterwards could not read a restored file reported it as a
  /// damaged file on stdout ("check FAILED: ... truncated or damaged SQLite file; restore it from
  /// a backup") with no error line. It now ends 1 with one error line that says what was
  /// restored, the file that could not be validated and why, and the next step.
  @Test func aReadErrorInTheCheckAfterARestoreIsAnErrorLine() throws {
    let fleet = try TestFleet(users: 2, initialized: true, backedUp: true)
    let archive = try #require(try fleet.listedArchives(["--kind", "full"]).first)
    let arguments = ["restore", archive.id]
    let faults = try Faults(fleet)
    try faults.saveTemplate()
    // The last reads of a whole restore are its check of what it restored.
    let runs = try faults.failingRuns(arguments, failing: "read", with: "EIO", limit: 1, lastFirst: true) {
      $0.hasPrefix(fleet.sessionsDirectory + "/") && $0.hasSuffix(".session")
    }
    let (result, path) = try #require(runs.first)
    #expect(result.status == 1, "\(result.stdout)\n\(result.stderr)")
    let line = try #require(Faults.errorLine(result), "\(result.stderr)")
    #expect(line.contains(archive.id) && line.contains(path), "\(line)")
    #expect(line.contains("Input/output error") && line.contains("not validated"), "\(line)")
    #expect(!result.stdout.contains("restore it from a backup"), "\(result.stdout)")
  }

  /// `recover --all` took a read error on a healthy session file for damage: it moved the file
  /// aside and rebuilt it from the database's string (an older session could have replaced the
  /// newest). It now changes nothing and ends 1 naming the file and the I/O error.
  @Test func recoverLeavesASessionItCouldNotReadAsItIs() throws {
    let fleet = try TestFleet(users: 2, initialized: true)
    let arguments = ["recover", "--all"]
    let faults = try Faults(fleet)
    try faults.saveTemplate()
    let before = try fleet.sessionHashes()
    let runs = try faults.failingRuns(arguments, failing: "read", with: "EIO", limit: 1) {
      $0.hasPrefix(fleet.sessionsDirectory + "/") && $0.hasSuffix(".session")
    }
    // `failingRuns` puts the template back after its runs: run the chosen fault again to look.
    let (chosen, path) = try #require(runs.first)
    #expect(chosen.status == 1, "\(chosen.stdout)\n\(chosen.stderr)")
    let n = try faults.calls("read", of: arguments).first { $0.path == path }?.n
    try faults.reset()
    let (result, failedPath) = try faults.run(arguments, failing: "read", n: try #require(n), with: "EIO")
    try #require(failedPath == path)
    #expect(result.status == 1, "\(result.stdout)\n\(result.stderr)")
    #expect(try fleet.sessionHashes() == before, "a session file changed")
    #expect(try fleet.sessionDirectoryNames().allSatisfy { !$0.contains("broken") })
    let line = try #require(Faults.errorLine(result), "\(result.stderr)")
    #expect(line.contains(path) && line.contains("Input/output error"), "\(line)")
    #expect(ErrorClassifier.classify(line).class == .temporary)
    #expect(try fleet.tgsess(arguments).status == 0)
  }

  /// An open of a healthy session file that failed (EIO, EACCES) made recover move it aside and
  /// rebuild it, like a damaged one. It now changes nothing and names the file and the cause.
  @Test func recoverLeavesASessionItCouldNotOpenAsItIs() throws {
    let fleet = try TestFleet(users: 2, initialized: true)
    let faults = try Faults(fleet)
    try faults.saveTemplate()
    let before = try fleet.sessionHashes()
    for error in ["EACCES", "EIO"] {
      let runs = try faults.failingRuns(["recover", "--all"], failing: "open", with: error, limit: 1) {
        $0.hasPrefix(fleet.sessionsDirectory + "/") && $0.hasSuffix(".session")
      }
      let (result, path) = try #require(runs.first)
      #expect(result.status == 1, "\(error): \(result.stdout)\n\(result.stderr)")
      let line = try #require(Faults.errorLine(result), "\(result.stderr)")
      let cause = error == "EIO" ? "Input/output error" : "Permission denied"
      #expect(line.contains(path) && line.contains(cause) && !line.contains("restore it from a backup"), "\(line)")
    }
    #expect(try fleet.sessionHashes() == before)
  }

  /// A record that could not be written (its fsync failed) left the archive's signature
  /// temporary behind: it is now removed with the archive's.
  @Test func aFailedRecordLeavesNoSignatureTemporary() throws {
    let fleet = try TestFleet(users: 2, initialized: true)
    let arguments = ["backup", "--user", String(fleet.userIDs[0]), "--reason", "Manual"]
    let faults = try Faults(fleet)
    try faults.saveTemplate()
    let runs = try faults.failingRuns(arguments, failing: "fsync", with: "EIO", limit: 1) {
      $0.contains(ArchiveName.recordSuffix + ".tgsess-tmp-")
    }
    let (result, _) = try #require(runs.first)
    #expect(result.status == 1, "\(result.stderr)")
    // `failingRuns` put the template back: fail the same call again to look at what it left.
    let n = try #require(
      try faults.calls("fsync", of: arguments).first { $0.path.contains(ArchiveName.recordSuffix) }?.n)
    try faults.reset()
    let (again, path) = try faults.run(arguments, failing: "fsync", n: n, with: "EIO")
    try #require(path.contains(ArchiveName.recordSuffix + ".tgsess-tmp-") && again.status == 1)
    let left = try fleet.backupsTree().keys.filter { $0.contains(".tgsess-tmp-") }
    #expect(left.isEmpty, "left behind: \(left)")
  }

  /// Runs `arguments` once with the first call of `operation` on `path` failing.
  /// - Returns: the result and the fault log's lines (the fault, its caller, what followed).
  static func failFirst(
    _ faults: Faults, _ arguments: [String], _ operation: String, on path: String, with error: String,
    last: Bool = false
  ) throws -> (result: ProcessResult, log: [String]) {
    try faults.reset()
    let matching = try faults.calls(operation, of: arguments).filter { $0.path == path }
    let n = try #require(last ? matching.last?.n : matching.first?.n, "no \(operation) of \(path)")
    try faults.reset()
    let (result, failed) = try faults.run(arguments, failing: operation, n: n, with: error)
    try #require(failed == path, "the failed \(operation) was on \(failed)")
    let log = try String(contentsOfFile: faults.work + "/fault-\(operation)-\(n)", encoding: .utf8)
    return (result, log.split(separator: "\n").map(String.init))
  }

  /// Creating a directory syncs its parent; when that sync failed, the directory stayed, and the
  /// retry that followed (watch saves its state again) found it there and never synced the
  /// parent: the directory, and all written into it, could vanish in a power cut. The directory
  /// now goes again, so the retry creates and syncs it anew.
  @Test func aDirectoryWhoseCreationCouldNotBeSyncedIsMadeAgain() throws {
    let fleet = try TestFleet(users: 2, initialized: true, backedUp: true)
    let watchDirectory = fleet.backupsDirectory + "/watch"
    try #require(!FileManager.default.fileExists(atPath: watchDirectory))
    let faults = try Faults(fleet)
    try faults.saveTemplate()
    let (result, log) = try Self.failFirst(
      faults, ["watch", "--once"], "fsync", on: fleet.backupsDirectory, with: "ENOSPC")
    #expect(result.status == 0, "\(result.stderr)")
    #expect(log.dropFirst(2).contains("S " + fleet.backupsDirectory), "\(log)")
    #expect(FileSystem.isDirectory(watchDirectory))
  }

  /// `watch` dropped a failure to save its status file (`try?`): it is now a logged warning
  /// naming the file and the cause.
  @Test func watchSaysWhenItsStatusFileCannotBeSaved() throws {
    let fleet = try TestFleet(users: 2, initialized: true, backedUp: true)
    let faults = try Faults(fleet)
    try faults.saveTemplate()
    // The last sync of `watch --once` is the directory of the status file it saves on the way out.
    let (result, _) = try Self.failFirst(
      faults, ["watch", "--once"], "fsync", on: fleet.backupsDirectory + "/watch", with: "ENOSPC", last: true)
    #expect(result.status == 0, "\(result.stderr)")
    let warning = result.stderr.split(separator: "\n").first { $0.contains("status file not written") }
    #expect(warning?.contains(fleet.backupsDirectory + "/watch") == true, "\(result.stderr)")
    #expect(warning?.contains("no space left on device") == true, "\(result.stderr)")
  }

  /// A restore whose undo archive was published but whose record could not be renamed into
  /// place left the hidden record; the restore run again took no undo (nothing left to replace)
  /// and never rolled it forward, so the archive stayed listed without its record. A restore now
  /// finishes what earlier runs left, as recover does.
  @Test func aRestoreRerunRollsForwardTheUndoRecordAnEarlierOneLeft() throws {
    let fleet = try TestFleet(users: 2, initialized: true, backedUp: true)
    let archive = try #require(try fleet.listedArchives(["--kind", "full"]).first)
    // Something for the restore to replace, so that it takes an undo archive.
    try fleet.sqlite("UPDATE user_sessions SET session_string = 'changed' WHERE user_id = \(fleet.userIDs[0])")
    let arguments = ["restore", archive.id]
    let faults = try Faults(fleet)
    try faults.saveTemplate()
    // The undo archive's name is new in each run: its record's rename is found by its place.
    func isUndoRecord(_ path: String) -> Bool {
      path.hasPrefix(fleet.backupsDirectory + "/full/") && path.hasSuffix(ArchiveName.recordSuffix)
    }
    try faults.reset()
    let n = try #require(try faults.calls("rename", of: arguments).first { isUndoRecord($0.path) }?.n)
    try faults.reset()
    let (failed, path) = try faults.run(arguments, failing: "rename", n: n, with: "ENOSPC")
    try #require(isUndoRecord(path), "the failed rename was on \(path)")
    #expect([0, 1].contains(failed.status), "\(failed.stderr)")
    let rerun = try fleet.tgsess(arguments)
    #expect(rerun.status == 0, "\(rerun.stderr)")
    let left = try fleet.backupsTree().keys.filter { $0.contains(".tgsess-tmp-") }
    #expect(left.isEmpty, "left behind: \(left)")
    for listed in try fleet.listedArchives(["--kind", "full"]) {
      #expect(listed.verification != .unknown, "archive \(listed.id) is listed without its record")
    }
  }

  /// SQLite keeps no errno for a failed fsync of its journal: the error said only "SQLite error
  /// 10 disk I/O error". It now names what failed from the extended result code.
  @Test func aFailedJournalSyncSaysWhatFailed() throws {
    let fleet = try TestFleet(users: 2, initialized: true)
    let arguments = ["backup", "--user", String(fleet.userIDs[0]), "--reason", "Manual"]
    let faults = try Faults(fleet)
    try faults.saveTemplate()
    let runs = try faults.failingRuns(arguments, failing: "fsync", with: "ENOSPC", limit: 1) {
      $0 == fleet.databasePath + "-journal"
    }
    let (result, _) = try #require(runs.first)
    #expect(result.status == 1, "\(result.stderr)")
    let line = try #require(Faults.errorLine(result), "\(result.stderr)")
    #expect(line.contains(fleet.databasePath) && line.contains("fsync error"), "\(line)")
    #expect(line.contains("SQLITE_IOERR_FSYNC") && line.contains("run again"), "\(line)")
  }

  /// SQLite retries a read-write open that failed as a read-only one without O_CREAT, and keeps
  /// that retry's errno: a journal it could not create (EROFS, ENOSPC) was reported as "cannot
  /// open: No such file or directory" of the existing database. The line now names the journal
  /// and says the cause was not kept (the fault passed: a new file can be made there again).
  @Test func aJournalThatCouldNotBeCreatedIsNamedNotReportedMissing() throws {
    let fleet = try TestFleet(users: 2, initialized: true)
    try fleet.tgsessOK(["keys", "add-fernet"])
    let faults = try Faults(fleet)
    try faults.saveTemplate()
    let journal = fleet.databasePath + "-journal"
    for arguments in [
      ["migrate", "--rotate-key"], ["backup", "--user", String(fleet.userIDs[0]), "--reason", "Manual"],
    ] {
      let runs = try faults.failingRuns(arguments, failing: "open", with: "EROFS", limit: 1) { $0 == journal }
      let (result, _) = try #require(runs.first, "\(arguments): no open of \(journal) to fail")
      #expect(result.status == 1, "\(arguments): \(result.stderr)")
      let line = try #require(Faults.errorLine(result), "\(arguments): \(result.stderr)")
      #expect(!line.contains("No such file or directory"), "\(arguments): \(line)")
      #expect(line.contains(journal) && line.contains("SQLite kept no error number"), "\(arguments): \(line)")
      try faults.reset()
      #expect(try fleet.tgsess(arguments).status == 0, "\(arguments): the rerun failed")
    }
  }

  /// Disk errors are temporary: "Input/output error" and SQLite's "disk I/O error" were
  /// classified as an unknown error.
  @Test func diskErrorsAreTemporaryOSErrors() {
    for text in [
      "sessions/user_1.session: read error (read: Input/output error): an I/O error", "disk I/O error",
    ] {
      let classified = ErrorClassifier.classify(text)
      #expect(classified.class == .temporary && classified.code == "OS_ERROR", "\(text): \(classified)")
    }
  }
}

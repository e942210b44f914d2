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

    /// Runs `arguments` with call `n` of `operation` failing with `error`.
    /// - Returns: the result and the path the failed call was on.
    func run(_ arguments: [String], failing operation: String, n: Int, with error: String) throws -> (
      result: ProcessResult, path: String
    ) {
      let log = work + "/fault-\(operation)-\(n)"
      let result = try fleet.tgsess(
        arguments,
        environment: try IOTrace.faulting(
          scope: [fleet.root, work + "/tmp"], operation: operation, n: n, errors: [error], log: log,
          temporary: work + "/tmp"))
      let line = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").trimmingCharacters(in: .newlines)
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
}

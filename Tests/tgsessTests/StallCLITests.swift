import Foundation
import Jobs
import Store
import TestSupport
import Testing

/// `tgsess backup` never makes the bot hit "database is locked": a writer like kurigram's
/// (`timeout=1`, a commit every 5 ms) runs through backups of a database of tens of MiB. In WAL
/// mode (after `tgsess migrate --wal`) the backup succeeds with a consistent snapshot; in
/// rollback-journal mode, when the bot commits throughout, it fails naming the database and
/// `tgsess migrate --wal` instead of stalling the bot. No timings are asserted: only the
/// writer's errors, the exit status and the snapshot.
@Suite(.serialized) struct StallCLITests {
  static func write(_ text: String, to path: String) throws {
    try Data(text.utf8).write(to: URL(fileURLWithPath: path))
  }

  static func makeFleet() throws -> TestFleet {
    try TestFleet(users: 4, pyrogramShare: 0, entities: 10, messageLogMiB: 24, initialized: true)
  }

  @Test func aWALDatabaseIsBackedUpWhileTheBotCommitsWithoutOneLockedError() throws {
    let fleet = try Self.makeFleet()
    let planned = try fleet.tgsessOK(["migrate", "--wal", "--dry-run"])
    #expect(planned.stdout.contains("would switch the journal mode from delete to WAL"), "\(planned.stdout)")
    #expect(try StockTools.query(fleet.databasePath, "PRAGMA journal_mode") == "delete", "a dry run changes nothing")
    let migrated = try fleet.tgsessOK(["migrate", "--wal"])
    #expect(migrated.stdout.contains("did switch the journal mode from delete to WAL"), "\(migrated.stdout)")
    #expect(try StockTools.query(fleet.databasePath, "PRAGMA journal_mode") == "wal")
    // Asking again changes nothing.
    #expect(!(try fleet.tgsessOK(["migrate", "--wal"]).stdout.contains("journal mode")))
    let bot = try LiveWriter.impatientBot(fleet.databasePath)
    defer { _ = try? bot.stop() }
    try bot.waitForCommits(moreThan: 20)
    let scratch = try TemporaryDirectory("tgsess-stall")
    var copied: [Int] = []
    for _ in 0..<2 {
      let result = try fleet.tgsess(["backup", "--no-encrypt", "--json"])
      #expect(result.status == 0, "\(result.stderr)")
      guard result.status == 0 else { break }
      let full = try #require(try decodeJSON(BackupResult.self, from: result).archives.first { $0.kind == .full })
      let (problems, _, directory) = try StockTools.extractAndVerify(full.path, identity: nil, scratch: scratch.path)
      #expect(problems.isEmpty, "\(problems)")  // integrity_check included
      let database = directory + "/data/telegram_bot.db"
      #expect(try StockTools.query(database, LiveWriter.databaseInvariant) == "1", "one committed state")
      copied.append(Int(try StockTools.query(database, "SELECT copied FROM copy_stats")) ?? -1)
      try bot.waitForCommits(moreThan: bot.commits)
    }
    let commits = try bot.stop()
    let stall = bot.stall
    #expect(stall.errors == 0, "the bot got errors: \(stall.messages)")
    let live = Int(try fleet.sqlite("SELECT copied FROM copy_stats")) ?? -1
    #expect(copied.count == 2 && copied[0] < copied[1] && copied[1] <= live, "\(copied), live \(live)")
    #expect(commits > 40)
  }

  @Test func aRollbackDatabaseTheBotKeepsWritingFailsTheBackupNotTheBot() throws {
    let fleet = try Self.makeFleet()
    // No copy in one step at all: every pass of the 24 MiB file is taken in short steps.
    try Self.write("[backup]\nmax_writer_wait_ms = 0\n", to: fleet.root + "/tgsess.toml")
    let bot = try LiveWriter.impatientBot(fleet.databasePath)
    defer { _ = try? bot.stop() }
    try bot.waitForCommits(moreThan: 20)
    // A pass finishes only if the bot happens not to commit during it (a writer starved of CPU
    // on a loaded machine): then the backup archives a consistent snapshot. It must fail
    // cleanly at least once in 5 tries against a bot committing every 5 ms.
    var failure: ProcessResult?
    for _ in 0..<5 where failure == nil {
      let result = try fleet.tgsess(["backup", "--no-encrypt", "--json"])
      try bot.waitForCommits(moreThan: bot.commits)
      if result.status == 1 {
        failure = result
      } else {
        #expect(result.status == 0, "\(result.stderr)")
        let full = try #require(try decodeJSON(BackupResult.self, from: result).archives.first { $0.kind == .full })
        let scratch = try TemporaryDirectory("tgsess-stall")
        let (problems, _, directory) = try StockTools.extractAndVerify(full.path, identity: nil, scratch: scratch.path)
        #expect(problems.isEmpty, "\(problems)")
        #expect(try StockTools.query(directory + "/data/telegram_bot.db", LiveWriter.databaseInvariant) == "1")
        try FileManager.default.removeItem(atPath: fleet.backupsDirectory + "/full")
      }
    }
    try bot.stop()
    let result = try #require(failure, "5 backups of a database the bot kept writing all succeeded")
    let lines = result.stderr.split(separator: "\n").filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
    #expect(lines.count == 1, "\(result.stderr)")
    #expect(result.stderr.contains(fleet.databasePath), "\(result.stderr)")
    #expect(result.stderr.contains("another connection committed during each of 7 copy passes"), "\(result.stderr)")
    #expect(result.stderr.contains("tgsess migrate --wal"), "\(result.stderr)")
    #expect(bot.stall.errors == 0, "the bot got errors: \(bot.stall.messages)")
    // Nothing half-written, and the database was never switched behind the operator's back.
    #expect(try TreeSnapshot.regularFiles(under: fleet.backupsDirectory + "/full").isEmpty)
    #expect(try StockTools.query(fleet.databasePath, "PRAGMA journal_mode") == "delete")
    #expect(try StockTools.integrityCheck(fleet.databasePath) == "ok")
  }

  @Test func checkWarnsWithAMeasuredStallEstimateUntilTheDatabaseIsWAL() throws {
    let fleet = try Self.makeFleet()
    try fleet.tgsessOK(["backup"])
    #expect(try fleet.check().findings("db.stall").isEmpty, "24 MiB copy well inside 1 s")
    // A bot with a 1 ms busy timeout: a copy of 24 MiB in one step stalls it.
    try Self.write("[check]\nbot_busy_timeout_ms = 1\n", to: fleet.root + "/tgsess.toml")
    let run = try fleet.check()
    let found = run.findings("db.stall")
    #expect(found.count == 1, "\(run.report)")
    let finding = try #require(found.first)
    #expect(finding.state == "warning")
    #expect(finding.message.contains("\(fleet.databasePath) uses a rollback journal and holds "), "\(finding)")
    #expect(
      finding.message.contains(" MiB: a consistent copy in one step would hold the bot's writes about "), "\(finding)")
    #expect(finding.message.contains("past its 1 ms busy timeout"), "\(finding)")
    #expect(finding.message.contains("tgsess migrate --wal"), "\(finding)")
    #expect(run.status == 1)
    // Measuring changed nothing; after migrate --wal the warning is gone.
    #expect(try StockTools.query(fleet.databasePath, "PRAGMA journal_mode") == "delete")
    try fleet.tgsessOK(["migrate", "--wal"])
    #expect(try fleet.check().findings("db.stall").isEmpty)
  }
}

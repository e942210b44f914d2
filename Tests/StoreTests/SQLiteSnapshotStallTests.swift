import Foundation
import Store
import TestSupport
import Testing

/// A snapshot of a rollback-journal file larger than one step releases the file's read lock
/// between steps (a writer with no busy timeout at all commits there), restarts when a commit
/// lands, and gives up after `maxRestarts` restarts with an error naming the file and the next
/// step, never stalling the writer instead. A WAL file is copied in one read transaction.
@Suite struct SQLiteSnapshotStallTests {
  /// A database of about `mebibytes` MiB (4 KiB pages) in `journalMode`, with a `counter` row.
  static func makeDatabase(_ path: String, mebibytes: Int, journalMode: String = "delete") throws {
    try StockTools.require([StockTools.sqlite3])
    let result = try runProcess(
      StockTools.sqlite3,
      [
        path,
        "PRAGMA page_size=4096; PRAGMA journal_mode=\(journalMode); CREATE TABLE filler(b BLOB); "
          + "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < \(mebibytes * 256)) "
          + "INSERT INTO filler SELECT randomblob(3900) FROM c; "
          + "CREATE TABLE counter(n INTEGER NOT NULL); INSERT INTO counter VALUES (0);",
      ])
    guard result.status == 0 else { throw TestHelperError("sqlite3 \(path): \(result.stderr)") }
  }

  /// Commits `UPDATE counter SET n = n + 1` with no busy timeout: it fails if any reader holds
  /// the file's read lock while it commits.
  final class Committer: @unchecked Sendable {
    let connection: SQLiteConnection
    let lock = NSLock()
    var remaining: Int
    var commits = 0

    init(_ path: String, commits: Int) throws {
      connection = try SQLiteConnection(path: path, mode: .readWrite, busyTimeoutMS: 0)
      remaining = commits
    }

    func commit() throws {
      try lock.withLock {
        guard remaining > 0 else { return }
        remaining -= 1
        try connection.exec("UPDATE counter SET n = n + 1")
        commits += 1
      }
    }
  }

  static func counter(_ path: String) throws -> String {
    try StockTools.query(path, "SELECT n FROM counter")
  }

  @Test func aLargeRollbackFileIsCopiedInStepsThatLetAWriterCommitBetweenThem() throws {
    let directory = try TemporaryDirectory()
    let source = directory.file("bot.db")
    try Self.makeDatabase(source, mebibytes: 8)
    let committer = try Committer(source, commits: 3)
    var options = SnapshotOptions()
    options.maxLockMS = 0
    options.maxRestarts = 5
    options.betweenSteps = { try committer.commit() }
    let report = try SQLiteSnapshot.take(source: source, destination: directory.file("copy.db"), options: options)
    #expect(committer.commits == 3, "every commit between two steps got in without waiting")
    #expect(report.journalMode == .rollback)
    #expect(report.method == .stepped)
    #expect(report.restarts == 3, "each commit restarted the copy: \(report)")
    #expect(report.steps > 4)
    // The copy is the last committed state, whole.
    #expect(try StockTools.integrityCheck(directory.file("copy.db")) == "ok")
    #expect(try Self.counter(directory.file("copy.db")) == "3")
    #expect(try StockTools.query(directory.file("copy.db"), "SELECT count(*) FROM filler") == "2048")
  }

  @Test func aWriterThatNeverPausesMakesTheSnapshotGiveUpNamingTheFileAndTheNextStep() throws {
    let directory = try TemporaryDirectory()
    let source = directory.file("bot.db")
    try Self.makeDatabase(source, mebibytes: 4)
    let committer = try Committer(source, commits: .max)
    var options = SnapshotOptions()
    options.maxLockMS = 0
    options.maxRestarts = 3
    // Steps that shrink to 16 pages whatever this machine's speed: with the default 5 ms target a
    // fast step doubles the next, and the fourth pass copied the whole 4 MiB file in one step
    // (a consistent copy, and the test's premise gone: seen twice under load).
    options.firstStepPages = 64
    options.stepTargetMS = 0.001
    options.restartsHint = "switch it to WAL: tgsess migrate --wal"
    options.betweenSteps = { try committer.commit() }
    let destination = directory.file("copy.db")
    do {
      try SQLiteSnapshot.take(source: source, destination: destination, options: options)
      Issue.record("the snapshot of a file that changed between every two steps succeeded")
    } catch let error as StoreError {
      guard case .database(let path, let reason, let hint) = error else {
        Issue.record("unexpected error: \(error)")
        return
      }
      #expect(path == source)
      #expect(reason.contains("another connection committed during each of 4 copy passes"), "\(reason)")
      #expect(reason.contains("rollback journal, 4 MiB"), "\(reason)")
      #expect(hint == "switch it to WAL: tgsess migrate --wal")
      #expect(!(error.errorDescription ?? "").contains("\n"), "one line")
    }
    #expect(!FileManager.default.fileExists(atPath: destination), "no half-written copy is left")
    #expect(committer.commits >= 4, "the writer was never held up")
    #expect(try StockTools.integrityCheck(source) == "ok")
  }

  /// Reading the source's journal mode must not drop a lock another connection of this process
  /// holds on the file: closing a descriptor releases every POSIX lock the process holds on it,
  /// and another process could then write (or, in WAL mode, delete the WAL) under that reader.
  @Test func aSnapshotKeepsTheLocksOtherConnectionsOfTheProcessHold() throws {
    let directory = try TemporaryDirectory()
    let source = directory.file("bot.db")
    try Self.makeDatabase(source, mebibytes: 0)
    let reader = try SQLiteConnection(path: source, mode: .readOnly)
    // A read transaction: a SHARED lock on the file until COMMIT.
    try reader.exec("BEGIN; SELECT count(*) FROM counter")
    try SQLiteSnapshot.take(source: source, destination: directory.file("copy.db"))
    _ = try SQLiteSnapshot.takeInMemory(source: source)
    _ = try SQLiteSnapshot.estimateStall(source: source)
    let blocked = try runProcess(StockTools.sqlite3, [source, "UPDATE counter SET n = 1"])
    #expect(blocked.status != 0 && blocked.stderr.contains("locked"), "another process wrote under our reader")
    try reader.exec("COMMIT")
    let after = try runProcess(StockTools.sqlite3, [source, "UPDATE counter SET n = 2"])
    #expect(after.status == 0, "\(after.stderr)")
  }

  @Test func aFileThatFitsTheWritersWaitIsCopiedInOneStep() throws {
    let directory = try TemporaryDirectory()
    let source = directory.file("small.db")
    try Self.makeDatabase(source, mebibytes: 0)
    let report = try SQLiteSnapshot.take(source: source, destination: directory.file("copy.db"))
    #expect(report.method == .oneStep)
    #expect(report.restarts == 0)
    #expect(try Self.counter(directory.file("copy.db")) == "0")
  }

  @Test func aWALFileIsCopiedInOneReadTransactionThatNoWriterWaitsFor() throws {
    let directory = try TemporaryDirectory()
    let source = directory.file("bot.db")
    try Self.makeDatabase(source, mebibytes: 4, journalMode: "wal")
    // A writer commits while a reader holds a WAL file's read transaction (here: the sample
    // estimate's connection is gone, so a read-only handle of our own).
    let reader = try SQLiteConnection(path: source, mode: .readOnly)
    try reader.exec("BEGIN; SELECT count(*) FROM filler")
    let committer = try Committer(source, commits: 1)
    try committer.commit()
    try reader.exec("COMMIT")
    var options = SnapshotOptions()
    options.maxLockMS = 0
    options.betweenSteps = { Issue.record("a WAL file was copied in steps") }
    let report = try SQLiteSnapshot.take(source: source, destination: directory.file("copy.db"), options: options)
    #expect(report.journalMode == .wal)
    #expect(report.method == .oneStep)
    #expect(report.writerWaitMS == 0)
    #expect(try StockTools.integrityCheck(directory.file("copy.db")) == "ok")
    #expect(try Self.counter(directory.file("copy.db")) == "1")
  }

  @Test func theStallEstimateMeasuresTheJournalModeSizeAndCopyRate() throws {
    let directory = try TemporaryDirectory()
    let rollback = directory.file("rollback.db")
    let wal = directory.file("wal.db")
    try Self.makeDatabase(rollback, mebibytes: 6)
    try Self.makeDatabase(wal, mebibytes: 1, journalMode: "wal")
    let estimate = try SQLiteSnapshot.estimateStall(source: rollback)
    #expect(estimate.journalMode == .rollback)
    #expect(estimate.byteCount == (try FileSystem.size(of: rollback)))
    #expect(estimate.bytesPerSecond > 0)
    #expect(estimate.oneStepLockMS > 0)
    #expect(try SQLiteSnapshot.estimateStall(source: wal).journalMode == .wal)
    // Measuring never changes the file.
    #expect(try StockTools.query(rollback, "PRAGMA journal_mode") == "delete")
  }
}

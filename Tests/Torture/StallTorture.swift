import Foundation
import Jobs
import Store
import TestSupport
import Testing

/// The live-writer family's stall cases: a writer like kurigram's bot (`timeout=1`, a commit
/// every 5 ms) runs through backups of a bot database grown by its `message_log`, in rollback
/// mode (the seed's default) and after `tgsess migrate --wal`. The bot must never get a
/// "database is locked" error. In WAL mode every backup succeeds with a snapshot that passes
/// integrity_check and holds one committed state (the writer's invariant), newer each time. In
/// rollback mode a backup either succeeds the same way (the file fits the writers' wait) or
/// fails with one line naming the database and `tgsess migrate --wal`, and writes nothing.
@Suite(.serialized, .enabled(if: Torture.isEnabled, "set TGSESS_TORTURE_SCALE=quick|full (scripts/torture.sh)"))
struct StallTorture {
  @Test(arguments: ["rollback", "wal"]) func backupsNeverMakeTheBotWait(journal: String) throws {
    try StockTools.require()
    let report = FamilyReport("live-writers")
    defer { print(report.summary) }
    let mebibytes = Torture.pick(quick: 16, full: 96)
    let fleet = try TortureFleet(users: 4, seed: 47, pyrogramShare: 0, entities: 10, messageLogMiB: mebibytes)
    if journal == "wal" { try fleet.tgsessOK(["migrate", "--wal"]) }
    let bot = try LiveWriter.impatientBot(fleet.databasePath, boundSeconds: 1200)
    defer { _ = try? bot.stop() }
    try bot.waitForCommits(moreThan: 20)
    let scratch = try TemporaryDirectory("tgsess-stall")
    var lastCopied = -1
    for round in 0..<Torture.pick(quick: 2, full: 8) {
      let before = bot.stall
      let started = Date()
      var problems: [String] = []
      var failedCleanly = 0
      do {
        let result = try fleet.tgsess(["backup", "--no-encrypt", "--json"])
        try bot.waitForCommits(moreThan: bot.commits)
        let after = bot.stall
        if after.errors > before.errors {
          problems.append("the bot got \(after.errors - before.errors) error(s): \(after.messages)")
        }
        if result.status == 1, journal == "rollback" {
          failedCleanly = 1
          let message = result.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
          if !message.contains(fleet.databasePath) || !message.contains("tgsess migrate --wal") {
            problems.append("the failure does not name the database and the next step: \(message)")
          }
          let written = try TreeSnapshot.regularFiles(under: fleet.deployment.backupsDirectory + "/full")
          if !written.isEmpty { problems.append("a failed backup left \(written)") }
        } else if result.status != 0 {
          problems.append("exit \(result.status): \(result.stderr)")
        } else if let full = try decodeJSON(BackupResult.self, from: result).archives.first(where: { $0.kind == .full })
        {
          let (found, _, directory) = try StockTools.extractAndVerify(full.path, identity: nil, scratch: scratch.path)
          defer { try? FileManager.default.removeItem(atPath: directory) }
          problems += found
          let database = directory + "/data/telegram_bot.db"
          if try StockTools.query(database, LiveWriter.databaseInvariant) != "1" {
            problems.append("the snapshot is not one committed state")
          }
          let copied = Int(try StockTools.query(database, "SELECT copied FROM copy_stats")) ?? -1
          if copied <= lastCopied { problems.append("the snapshot is not newer than the last (\(copied))") }
          lastCopied = copied
        } else {
          problems.append("no full archive")
        }
      } catch {
        problems.append("error: \(error)")
      }
      report.record(
        "backup #\(round + 1) of a \(journal) database (message_log \(mebibytes) MiB) while the bot commits every 5 ms",
        problems: problems,
        seconds: Date().timeIntervalSince(started),
        detail: failedCleanly == 1 ? "failed cleanly (rollback journal, the bot wrote throughout)" : "archived",
        counts: ["stall backups": 1, "stall backups failed cleanly": failedCleanly])
    }
    report.check("the \(journal) database and its writer after the backups", counts: [:]) {
      try bot.stop()
      let stall = bot.stall
      var problems: [String] = []
      if stall.errors > 0 { problems.append("the bot got \(stall.errors) error(s): \(stall.messages)") }
      if try StockTools.integrityCheck(fleet.databasePath) != "ok" { problems.append("the live database") }
      if try StockTools.query(fleet.databasePath, "PRAGMA journal_mode") != (journal == "wal" ? "wal" : "delete") {
        problems.append("the journal mode changed")
      }
      return problems
    }
  }
}

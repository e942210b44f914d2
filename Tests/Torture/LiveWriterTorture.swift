import Foundation
import Jobs
import Store
import TestSupport
import Testing

/// Backups taken again and again while the real Telethon writes three session files through its
/// own `SQLiteSession` (entities and update state, a transaction open between saves) and a second
/// writer commits to the bot database with a cross-table invariant. Every snapshot, extracted
/// with stock `age`/`tar` and hashed with `sha256sum`, passes `PRAGMA integrity_check` and both
/// invariants, and is newer than the one before.
@Suite(.serialized, .enabled(if: Torture.isEnabled, "set TGSESS_TORTURE_SCALE=quick|full (scripts/torture.sh)"))
struct LiveWriterTorture {
  @Test func backupsWhileTelethonAndTheBotWrite() throws {
    try StockTools.require()
    let report = FamilyReport("live-writers")
    defer { print(report.summary) }
    let fleet = try TortureFleet(users: 6, seed: 31, pyrogramShare: 0)
    let writerUsers = Array(fleet.userIDs.prefix(3))
    let sessions = try LiveWriter.realTelethon(sessionFiles: writerUsers.map(fleet.sessionPath))
    let bot = try LiveWriter.botDatabase(fleet.databasePath, boundSeconds: 1200)
    defer {
      _ = try? sessions.stop()
      _ = try? bot.stop()
    }
    let scratch = try TemporaryDirectory("tgsess-live")
    let rounds = Torture.pick(quick: 6, full: 110)
    var lastSequence = Dictionary(uniqueKeysWithValues: writerUsers.map { ($0, -1) })
    var lastCopied = -1
    for round in 0..<rounds {
      // Every tenth backup is encrypted (the default path); the others use --no-encrypt for speed.
      let isEncrypted = round % 10 == 9
      // Every fifth round is a per-user backup of a writing user.
      let user: Int64? = round % 5 == 4 ? writerUsers[round % writerUsers.count] : nil
      let userArguments = user.map { ["--user", "\($0)"] } ?? []
      let label = "backup #\(round + 1)" + (user.map { " --user \($0)" } ?? "") + (isEncrypted ? " (age)" : "")
      let counts = ["backups": 1, "per-user backups": user == nil ? 0 : 1, "encrypted backups": isEncrypted ? 1 : 0]
      report.check(label, counts: counts) {
        var arguments = ["backup", "--json"]
        if !isEncrypted { arguments.append("--no-encrypt") }
        arguments += userArguments
        let result = try fleet.tgsess(arguments)
        guard result.status == 0 else { return ["exit \(result.status): \(result.stderr)"] }
        let archives = try decodeJSON(BackupResult.self, from: result).archives
        var problems: [String] = []
        if archives.isEmpty { problems.append("no archive written") }
        for archive in archives {
          let path = archive.path
          let kind = archive.kind.rawValue
          let owner = archive.userID
          if path.hasSuffix(".age") != isEncrypted { problems.append("\(path): encrypted \(!isEncrypted)?") }
          let (found, _, directory) = try StockTools.extractAndVerify(
            path, identity: fleet.deployment.ageIdentityPath, scratch: scratch.path)
          defer { try? FileManager.default.removeItem(atPath: directory) }
          problems += found.map { "\(kind) archive: \($0)" }  // sha256sum and integrity_check included
          for writer in writerUsers where kind == "full" || owner == writer {
            let file = directory + "/sessions/user_\(writer).session"
            if try StockTools.query(file, LiveWriter.realTelethonInvariant) != "1" {
              problems.append("user \(writer): the Telethon invariant does not hold in the snapshot")
            }
            let sequence = Int(try StockTools.query(file, "SELECT seq FROM update_state WHERE id = 0")) ?? -1
            if kind == "full" {
              if sequence <= lastSequence[writer]! {
                problems.append("user \(writer): snapshot not newer than the last (\(sequence))")
              }
              lastSequence[writer] = sequence
            }
          }
          if kind == "full" {
            let database = directory + "/data/telegram_bot.db"
            if try StockTools.query(database, LiveWriter.databaseInvariant) != "1" {
              problems.append("the bot database invariant does not hold in the snapshot")
            }
            let copied = Int(try StockTools.query(database, "SELECT copied FROM copy_stats")) ?? -1
            if copied <= lastCopied { problems.append("database snapshot not newer than the last (\(copied))") }
            lastCopied = copied
          }
        }
        // Both writers commit again before the next backup.
        try sessions.waitForCommits(moreThan: sessions.commits)
        try bot.waitForCommits(moreThan: bot.commits)
        return problems
      }
    }
    report.check("the writers ran throughout and the live files are sound") {
      var problems: [String] = []
      let telethonCommits = try sessions.stop()
      let botCommits = try bot.stop()
      if telethonCommits < rounds || botCommits < rounds {
        problems.append("too few commits: Telethon \(telethonCommits), bot \(botCommits)")
      }
      for user in writerUsers {
        if try StockTools.integrityCheck(fleet.sessionPath(user)) != "ok" { problems.append("user \(user): live file") }
        if try StockTools.query(fleet.sessionPath(user), LiveWriter.realTelethonInvariant) != "1" {
          problems.append("user \(user): the live invariant")
        }
      }
      if try StockTools.query(fleet.databasePath, LiveWriter.databaseInvariant) != "1" {
        problems.append("the live bot database invariant")
      }
      // The newest snapshot loads in the real Telethon with the key the live file holds.
      let newest = try CrashPointTorture.newestArchive(fleet, kind: "full")
      let (_, _, directory) = try StockTools.extractAndVerify(
        newest.path, identity: fleet.deployment.ageIdentityPath, scratch: scratch.path)
      let restored = try SessionWitness.loadedByTelethon(
        writerUsers.map { directory + "/sessions/user_\($0).session" })
      let live = try SessionWitness.stored(writerUsers.map(fleet.sessionPath))
      for user in writerUsers {
        let restoredKey = restored[directory + "/sessions/user_\(user).session"]?.key
        if restoredKey == nil || restoredKey != live[fleet.sessionPath(user)]?.key {
          problems.append("user \(user): the snapshot does not load in Telethon with the live key")
        }
      }
      try fleet.collectSecrets()
      return problems
    }
  }
}

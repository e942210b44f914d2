import Foundation
import Jobs
import Store
import TestSupport
import Testing

/// `tgsess recover` end to end: each strategy proven alone by breaking every other source of the
/// session, the result loaded by the real Telethon and the stored string decrypted by Python's
/// cryptography; healthy users untouched; nothing ever deleted; no secret in any output.
@Suite struct RecoverCLITests {
  /// Every column of `user_sessions` but the ones recover writes on every run.
  static let stableColumns =
    "user_id, session_string, api_id, api_hash, created_at, updated_at, status, auth_key_fingerprint, session_format"

  /// The one user of a `recover --user N --json` result.
  static func outcome(_ result: ProcessResult) throws -> UserRecovery {
    let users = try decodeJSON(RecoverResult.self, from: result).users
    guard users.count == 1 else { throw TestHelperError("expected one user: \(result.stdout)") }
    return users[0]
  }

  static func removeIfPresent(_ path: String) throws {
    if FileManager.default.fileExists(atPath: path) { try FileManager.default.removeItem(atPath: path) }
  }

  /// Fails for every secret found in any captured output.
  static func expectNoSecrets(
    _ outputs: [ProcessResult], _ secrets: [String], sourceLocation: SourceLocation = #_sourceLocation
  ) {
    #expect(secrets.count > 10, sourceLocation: sourceLocation)
    let text = outputs.map { $0.stdout + "\n" + $0.stderr }.joined(separator: "\n").lowercased()
    for secret in secrets where text.contains(secret.lowercased()) {
      Issue.record("a secret (\(secret.prefix(6))…) appears in the output", sourceLocation: sourceLocation)
    }
  }

  /// Requires a "Post successful recovery" archive with this id for the user.
  static func expectPostRecoveryBackup(
    _ fleet: TestFleet, user: Int64, id: String?, sourceLocation: SourceLocation = #_sourceLocation
  ) throws {
    let listed = try fleet.listedArchives(["--user", String(user)])
    let archive = listed.first { $0.id == id }
    #expect(id?.contains("-u\(user)-") == true, sourceLocation: sourceLocation)
    #expect(archive?.reason == "Post successful recovery", sourceLocation: sourceLocation)
  }

  @Test func eachStrategyAloneByBreakingTheOthers() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 14)
    let users = try fleet.telethonUserIDs(9)
    let (missingFile, corruptFile, noRow, nullString) = (users[0], users[1], users[2], users[3])
    let (userArchive, fullSnapshot, historyRow, backupFile, nothing) = (
      users[4], users[5], users[6], users[7], users[8]
    )
    let path = fleet.sessionPath
    let original = try SessionWitness.stored(users.map(path))
    // What only a file holds: the entity cache and update state (a session string has neither).
    func cache(_ user: Int64) throws -> String {
      try fleet.sqlite(
        "SELECT (SELECT count(*) FROM entities) || '/' || (SELECT count(*) FROM update_state)", path: path(user))
    }
    let originalCache = try [userArchive, fullSnapshot, backupFile].map(cache)
    #expect(originalCache.allSatisfy { $0 != "0/0" && $0 != "1/0" })
    let allKeys = try SessionWitness.stored(try fleet.sessionUserIDs().map(path)).values.map(\.key)
    let userArchiveToken = try fleet.sqlite("SELECT session_string FROM user_sessions WHERE user_id = \(userArchive)")
    let userArchiveString = try Peers.fernetDecrypt([userArchiveToken], deployment: fleet.deployment)[0]
    var secrets = try Peers.secrets(fleet.deployment) + allKeys
    var outputs: [ProcessResult] = []

    // Before the backup: three users whose session no archive will hold.
    try FileManager.default.copyItem(atPath: path(backupFile), toPath: path(backupFile) + ".backup.tmp")
    for user in [historyRow, backupFile, nothing] {
      try Self.removeIfPresent(path(user))
      try Self.removeIfPresent(path(user) + ".backup")
    }
    try FileManager.default.moveItem(atPath: path(backupFile) + ".backup.tmp", toPath: path(backupFile) + ".backup")
    try fleet.sqlite("DELETE FROM user_sessions WHERE user_id IN (\(historyRow), \(backupFile))")
    try fleet.sqlite("DELETE FROM session_backups WHERE user_id = \(backupFile)")
    outputs.append(try fleet.tgsessOK(["backup"]))

    // After it: break everything but the one source each user is meant to recover from.
    for user in [missingFile, userArchive, fullSnapshot] {
      try Self.removeIfPresent(path(user))
      try Self.removeIfPresent(path(user) + ".backup")
    }
    let garbage = Data(randomBytes(8192))
    try garbage.write(to: URL(fileURLWithPath: path(corruptFile)))
    try fleet.sqlite("DELETE FROM user_sessions WHERE user_id = \(noRow)")
    try fleet.sqlite("UPDATE user_sessions SET session_string = NULL WHERE user_id = \(nullString)")
    let foreign = try Peers.foreignFernetToken(userArchiveString)
    secrets.append(foreign)
    try fleet.sqlite("UPDATE user_sessions SET session_string = '\(foreign)' WHERE user_id = \(userArchive)")
    try fleet.sqlite("DELETE FROM session_backups WHERE user_id IN (\(userArchive), \(fullSnapshot))")
    try fleet.sqlite("DELETE FROM user_sessions WHERE user_id = \(fullSnapshot)")
    try FileManager.default.removeItem(atPath: fleet.deployment.backupsDirectory + "/users/user_\(fullSnapshot)")
    try garbage.write(to: URL(fileURLWithPath: path(nothing)))
    try garbage.write(to: URL(fileURLWithPath: path(nothing) + ".backup"))
    try fleet.sqlite("UPDATE user_sessions SET session_string = '\(foreign)' WHERE user_id = \(nothing)")
    try fleet.sqlite("UPDATE session_backups SET session_string = 'not-a-session' WHERE user_id = \(nothing)")
    #expect(try fleet.sqlite("SELECT count(*) FROM session_backups WHERE user_id = \(nothing)") != "0")
    #expect(try fleet.sqlite("SELECT count(*) FROM session_backups WHERE user_id = \(historyRow)") != "0")

    func recover(_ user: Int64) throws -> UserRecovery {
      let result = try fleet.tgsess(["recover", "--user", String(user), "--json"])
      outputs.append(result)
      #expect(result.status == 0, "user \(user): \(result.stderr)")
      return try Self.outcome(result)
    }
    func expectRecovered(_ user: Int64, _ outcome: UserRecovery, strategy: RecoveryStrategy) throws {
      #expect(outcome.outcome == .recovered, "\(outcome)")
      #expect(outcome.strategy == strategy, "\(outcome)")
      try Self.expectPostRecoveryBackup(fleet, user: user, id: outcome.backupID)
    }

    // 1. Missing file, valid string.
    let first = try recover(missingFile)
    try expectRecovered(missingFile, first, strategy: .sessionString)
    #expect(first.source == "user_sessions.session_string")

    // 2. Garbage file, valid string: the file is rebuilt and the garbage kept aside.
    let second = try recover(corruptFile)
    try expectRecovered(corruptFile, second, strategy: .sessionString)
    let aside = try FileManager.default.contentsOfDirectory(atPath: fleet.deployment.sessionsDirectory).filter {
      $0.hasPrefix("user_\(corruptFile).session.broken-")
    }
    #expect(aside.count == 1)
    #expect(
      try aside.first.map { try FileSystem.read(fleet.deployment.sessionsDirectory + "/" + $0) } == garbage)

    // 3. Valid file, no row / NULL string: the file's StringSession goes into the database.
    let fileHashes = try [noRow, nullString].map { try FileSystem.sha256(ofFile: path($0)) }
    for user in [noRow, nullString] {
      let outcome = try recover(user)
      try expectRecovered(user, outcome, strategy: .sessionFile)
      #expect(outcome.source == path(user))
    }
    #expect(try [noRow, nullString].map { try FileSystem.sha256(ofFile: path($0)) } == fileHashes)

    // 4. Undecryptable string, no file: the user's own archive.
    let fourth = try recover(userArchive)
    try expectRecovered(userArchive, fourth, strategy: .backup)
    #expect(fourth.source?.hasPrefix("archive ") == true)
    #expect(fourth.source?.contains("-u\(userArchive)-") == true, "\(fourth)")

    // 5. No file, no row, no per-user archive: the full snapshot.
    let fifth = try recover(fullSnapshot)
    try expectRecovered(fullSnapshot, fifth, strategy: .backup)
    #expect(fifth.source?.hasPrefix("archive ") == true)
    #expect(fifth.source?.contains("-full-") == true, "\(fifth)")

    // 6. Only a session_backups row.
    let sixth = try recover(historyRow)
    try expectRecovered(historyRow, sixth, strategy: .backup)
    #expect(sixth.source?.hasPrefix("session_backups row ") == true, "\(sixth)")

    // 7. Only the .session.backup file.
    let seventh = try recover(backupFile)
    try expectRecovered(backupFile, seventh, strategy: .backup)
    #expect(seventh.source == path(backupFile) + ".backup", "\(seventh)")

    // Every recovered file is the original session, as Telethon loads it.
    let recovered = [missingFile, corruptFile, noRow, nullString, userArchive, fullSnapshot, historyRow, backupFile]
    let loaded = try SessionWitness.loadedByTelethon(recovered.map(path))
    for user in recovered {
      #expect(loaded[path(user)]?.sameSession(as: original[path(user)]!) == true, "user \(user)")
    }
    // Recovered from a file (an archive's, the .session.backup), the file itself came back.
    #expect(try [userArchive, fullSnapshot, backupFile].map(cache) == originalCache)
    // And the database holds the file's StringSession, under the deployment's key.
    let tokens = try recovered.map {
      try fleet.sqlite("SELECT session_string FROM user_sessions WHERE user_id = \($0)")
    }
    #expect(tokens.allSatisfy { $0.hasPrefix("gAAAAA") })
    let strings = try Peers.fernetDecrypt(tokens, deployment: fleet.deployment)
    #expect(strings == recovered.map { loaded[path($0)]?.string ?? "?" })
    secrets += tokens + strings

    // 8. Nothing valid anywhere: unrecoverable, named with the reasons, nothing deleted.
    let treeBefore = try fleet.tree().filter { $0.key != "data/telegram_bot.db" }
    let rowsBefore = try fleet.sqlite("SELECT \(Self.stableColumns) FROM user_sessions ORDER BY user_id")
    let tablesBefore = try fleet.dumpAll().filter { $0.key != "user_sessions" }
    let failed = try fleet.tgsess(["recover", "--user", String(nothing), "--json"])
    let failedText = try fleet.tgsess(["recover", "--user", String(nothing)])
    outputs += [failed, failedText]
    #expect(failed.status == 3)
    #expect(failedText.status == 3)
    let eighth = try Self.outcome(failed)
    #expect(eighth.outcome == .unrecoverable)
    #expect(eighth.strategy == nil)
    let detail = eighth.detail
    for reason in ["file: ", "string: ", "session_backups row ", ".session.backup: ", "the user must log in again"] {
      #expect(detail.contains(reason), "\(detail)")
    }
    #expect(failedText.stdout.contains("user \(nothing): unrecoverable: "))
    #expect(failedText.stdout.contains("0 recovered, 1 unrecoverable"))
    #expect(try fleet.tree().filter { $0.key != "data/telegram_bot.db" } == treeBefore)
    #expect(try fleet.sqlite("SELECT \(Self.stableColumns) FROM user_sessions ORDER BY user_id") == rowsBefore)
    #expect(try fleet.dumpAll().filter { $0.key != "user_sessions" } == tablesBefore)
    #expect(try fleet.sqlite("SELECT health FROM user_sessions WHERE user_id = \(nothing)") == "critical")

    // --all: everybody else is healthy now and stays byte-identical; the one user is named.
    let sessionsBefore = try fleet.tree().filter { $0.key.hasPrefix("sessions/") }
    let all = try fleet.tgsess(["recover", "--all", "--json"])
    let allText = try fleet.tgsess(["recover", "--all"])
    outputs += [all, allText]
    #expect(all.status == 3)
    let summary = try decodeJSON(RecoverResult.self, from: all)
    #expect(summary.unrecoverable == 1)
    #expect(summary.recovered == 0)
    #expect(summary.healthy == (try fleet.sessionUserIDs().count - 1))
    #expect(allText.stdout.split(separator: "\n").filter { $0.contains("unrecoverable:") }.count == 1)
    #expect(allText.stdout.contains("user \(nothing): unrecoverable: "))
    #expect(try fleet.tree().filter { $0.key.hasPrefix("sessions/") } == sessionsBefore)

    Self.expectNoSecrets(outputs, secrets)
    #expect(!(try fleet.sqlite("SELECT coalesce(last_error, '') FROM user_sessions")).contains("gAAAAA"))
  }

  @Test func recoverAllRepairsTheBrokenAndLeavesHealthyUsersByteIdentical() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 8, messageLogMiB: 1)
    let broken = try fleet.telethonUserIDs(3)
    let healthy = try fleet.sessionUserIDs().filter { !broken.contains($0) }
    let original = try SessionWitness.stored(broken.map(fleet.sessionPath))
    var secrets =
      try Peers.secrets(fleet.deployment)
      + (try SessionWitness.stored(try fleet.sessionUserIDs().map(fleet.sessionPath))).values.map(\.key)
    var outputs = [try fleet.tgsessOK(["backup"])]
    try FileManager.default.removeItem(atPath: fleet.sessionPath(broken[0]))
    try Data(randomBytes(4096)).write(to: URL(fileURLWithPath: fleet.sessionPath(broken[1])))
    try fleet.sqlite("UPDATE user_sessions SET session_string = NULL WHERE user_id = \(broken[2])")
    let healthyList = healthy.map(String.init).joined(separator: ",")
    let healthyFiles = try fleet.tree().filter { entry in
      healthy.contains { entry.key.hasPrefix("sessions/user_\($0).session") }
    }
    #expect(healthyFiles.count >= healthy.count)
    let healthyRows = try fleet.sqlite(
      "SELECT \(Self.stableColumns) FROM user_sessions WHERE user_id IN (\(healthyList)) ORDER BY user_id")
    let healthyHistory = try fleet.sqlite(
      "SELECT * FROM session_backups WHERE user_id IN (\(healthyList)) ORDER BY id")
    let otherTables = try ["copy_configs", "message_log"].map { try fleet.dump($0) }

    let result = try fleet.tgsess(["recover", "--all", "--json"])
    outputs.append(result)

    #expect(result.status == 0, "\(result.stderr)")
    let summary = try decodeJSON(RecoverResult.self, from: result)
    #expect(summary.healthy == healthy.count)
    #expect(summary.recovered == 3)
    #expect(summary.unrecoverable == 0)
    let users = summary.users
    let strategies = Dictionary(uniqueKeysWithValues: users.map { ($0.userID, $0.strategy) })
    #expect(strategies[broken[0]] == .sessionString)
    #expect(strategies[broken[1]] == .sessionString)
    #expect(strategies[broken[2]] == .sessionFile)
    for user in broken {
      let outcome = users.first { $0.userID == user }
      try Self.expectPostRecoveryBackup(fleet, user: user, id: outcome?.backupID)
    }
    let treeAfter = try fleet.tree()
    #expect(treeAfter.filter { healthyFiles[$0.key] != nil } == healthyFiles)
    #expect(
      try fleet.sqlite(
        "SELECT \(Self.stableColumns) FROM user_sessions WHERE user_id IN (\(healthyList)) ORDER BY user_id")
        == healthyRows)
    #expect(
      try fleet.sqlite("SELECT * FROM session_backups WHERE user_id IN (\(healthyList)) ORDER BY id")
        == healthyHistory)
    #expect(try ["copy_configs", "message_log"].map { try fleet.dump($0) } == otherTables)
    let loaded = try SessionWitness.loadedByTelethon(broken.map(fleet.sessionPath))
    for user in broken {
      let path = fleet.sessionPath(user)
      #expect(loaded[path]?.sameSession(as: original[path]!) == true, "user \(user)")
    }
    // The garbage file was moved aside, not deleted.
    #expect(treeAfter.keys.contains { $0.hasPrefix("sessions/user_\(broken[1]).session.broken-") })

    // A second run finds everybody healthy and changes no session file.
    let sessions = treeAfter.filter { $0.key.hasPrefix("sessions/") }
    let again = try fleet.tgsess(["recover", "--all", "--json"])
    outputs.append(again)
    #expect(again.status == 0)
    #expect(try decodeJSON(RecoverResult.self, from: again).healthy == healthy.count + broken.count)
    #expect(try fleet.tree().filter { $0.key.hasPrefix("sessions/") } == sessions)

    secrets += try broken.map { try fleet.sqlite("SELECT session_string FROM user_sessions WHERE user_id = \($0)") }
    secrets += loaded.values.compactMap(\.string)
    Self.expectNoSecrets(outputs, secrets)
  }

  @Test func recoverRefusesWhileTheBotHoldsItsLockUnlessForced() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 3)
    let user = try fleet.telethonUserIDs(1)[0]
    try FileManager.default.removeItem(atPath: fleet.sessionPath(user))
    let botLock = fleet.root + "/.tgsess-bot.lock"
    let tree = try fleet.tree()

    let holder = try BackgroundProcess.holdingLock(botLock)
    let refused = try fleet.tgsess(["recover", "--user", String(user)])
    let treeWhileRefused = try fleet.tree()
    let forced = try fleet.tgsess(["recover", "--user", String(user), "--force", "--json"])
    holder.kill()

    #expect(refused.status == 1)
    #expect(
      refused.stderr
        == "tgsess: refusing to recover while the bot runs: the bot runner holds \(botLock) (another tgsess process); use the bot's /recover, or stop the bot, then run again (\(RestoreCLITests.forceRisk))\n"
    )
    #expect(treeWhileRefused == tree)
    #expect(forced.status == 0, "\(forced.stderr)")
    #expect(try Self.outcome(forced).strategy == .sessionString)
    #expect(FileManager.default.fileExists(atPath: fleet.sessionPath(user)))
  }

  /// `recover --dry-run` prints each user's plan (strategy, source, what is written and moved
  /// aside), exits as the run would (3: someone cannot be recovered), and changes nothing.
  @Test func dryRunPrintsThePlanAndChangesNothing() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 5)
    let users = try fleet.telethonUserIDs(3).sorted()
    let (missing, corrupt, nothing) = (users[0], users[1], users[2])
    let path = fleet.sessionPath
    try FileManager.default.removeItem(atPath: path(missing))
    try Data(randomBytes(4096)).write(to: URL(fileURLWithPath: path(corrupt)))
    try FileManager.default.removeItem(atPath: path(nothing))
    try Self.removeIfPresent(path(nothing) + ".backup")
    try fleet.sqlite("UPDATE user_sessions SET session_string = NULL WHERE user_id = \(nothing)")
    try fleet.sqlite("DELETE FROM session_backups WHERE user_id = \(nothing)")
    let tree = try fleet.tree()
    let dumps = try fleet.dumpAll()
    let total = try fleet.sqlite("SELECT count(*) FROM user_sessions")

    let text = try fleet.tgsess(["recover", "--all", "--dry-run"])
    let json = try fleet.tgsess(["recover", "--all", "--dry-run", "--json"])
    let one = try fleet.tgsess(["recover", "--user", String(missing), "--dry-run"])

    #expect(text.status == 3, "\(text.stderr)")
    let lines = text.stdout.split(separator: "\n").map(String.init)
    #expect(
      lines.contains { $0 == "user \(missing): would recover by session string from user_sessions.session_string" })
    #expect(lines.contains("  move aside \(path(corrupt)) (and its -journal/-wal/-shm), kept"))
    #expect(lines.contains("  write \(path(missing))"))
    #expect(lines.contains { $0.hasPrefix("user \(nothing): unrecoverable: file: ") })
    #expect(
      lines.last
        == "dry run, nothing changed: \(total) users: \(Int(total)! - 3) healthy, 2 to recover, 1 unrecoverable")
    #expect(json.status == 3)
    let plan = try JSONDecoder().decode(RecoverPlan.self, from: json.stdoutData)
    #expect(plan.users.count == Int(total))
    let actions = Dictionary(uniqueKeysWithValues: plan.users.map { ($0.userID, $0.action) })
    #expect(actions[missing] == .rebuildFile && actions[corrupt] == .rebuildFile && actions[nothing] == .giveUp)
    #expect(plan.users.first { $0.userID == corrupt }?.movesAside == path(corrupt))
    #expect(one.status == 0, "\(one.stderr)")
    #expect(one.stdout.hasSuffix("dry run, nothing changed: 1 users: 0 healthy, 1 to recover, 0 unrecoverable\n"))
    #expect(try fleet.tree() == tree)
    #expect(try fleet.dumpAll() == dumps)
  }

  /// A missing Fernet key is the deployment's fault: `recover` says so once, naming what to
  /// restore, exits 1 and changes nothing; it never concludes that users must log in again.
  /// With the key back, the same command recovers them.
  @Test func aMissingFernetKeyIsReportedOnceAndIsNoVerdictOnTheUsers() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 5)
    let users = try fleet.telethonUserIDs(3)
    for user in users { try FileManager.default.removeItem(atPath: fleet.sessionPath(user)) }
    let keyFile = fleet.deployment.fernetKeysPath
    let escrowed = fleet.directory.file("fernet.keys.escrow")
    try FileManager.default.moveItem(atPath: keyFile, toPath: escrowed)
    let tree = try fleet.tree()

    let one = try fleet.tgsess(["recover", "--user", String(users[0])])
    let all = try fleet.tgsess(["recover", "--all", "--json"])
    let plan = try fleet.tgsess(["recover", "--all", "--dry-run"])
    for result in [one, all, plan] {
      #expect(result.status == 1, "\(result.stdout)\(result.stderr)")
      #expect(result.stdout.isEmpty)
      #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
      #expect(
        result.stderr.hasPrefix(
          "tgsess: recover: \(keyFile): missing, and TGSESS_FERNET_KEYS is unset, so none of the database's "))
      #expect(
        result.stderr.hasSuffix(
          " encrypted secret(s) can be read; no user was changed; restore keys/fernet.keys from escrow (mode 600, owner tgsess) or set TGSESS_FERNET_KEYS, then run recover again\n"
        ))
      #expect(!result.stderr.contains("log in again"))
    }
    #expect(try fleet.tree() == tree)

    try FileManager.default.moveItem(atPath: escrowed, toPath: keyFile)
    let recovered = try fleet.tgsess(["recover", "--all", "--json"])
    #expect(recovered.status == 0, "\(recovered.stderr)")
    let outcomes = try decodeJSON(RecoverResult.self, from: recovered).users
    for user in users {
      let outcome = outcomes.first { $0.userID == user }
      #expect(outcome?.outcome == .recovered, "\(user)")
      #expect(outcome?.strategy == .sessionString, "\(user)")
    }
  }

  /// With the identity off the host, a user whose only source is an archive needs it: recover
  /// says so once (exit 1, the identity's path and `--identity FILE`), and `--identity` works.
  @Test func anIdentityOffTheHostIsAskedForOnceAndTakenWithIdentity() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 4)
    let user = try fleet.telethonUserIDs(1)[0]
    let original = try SessionWitness.stored([fleet.sessionPath(user)])
    try fleet.tgsessOK(["backup"])
    // Only the archives hold this user's session now.
    try FileManager.default.removeItem(atPath: fleet.sessionPath(user))
    try Self.removeIfPresent(fleet.sessionPath(user) + ".backup")
    try fleet.sqlite("UPDATE user_sessions SET session_string = NULL WHERE user_id = \(user)")
    try fleet.sqlite("DELETE FROM session_backups WHERE user_id = \(user)")
    let identity = fleet.deployment.ageIdentityPath
    let escrowed = fleet.directory.file("age-identity.escrow")
    try FileManager.default.moveItem(atPath: identity, toPath: escrowed)
    let tree = try fleet.tree()

    let refused = try fleet.tgsess(["recover", "--user", String(user)])
    #expect(refused.status == 1, "\(refused.stdout)\(refused.stderr)")
    #expect(refused.stderr.split(separator: "\n").count == 1)
    #expect(
      refused.stderr.hasPrefix(
        "tgsess: recover: \(identity): not on this host, and user \(user)'s session can only come from "))
    #expect(
      refused.stderr.hasSuffix(
        " encrypted archive(s) it would open; pass --identity FILE (the escrowed age identity), then run recover again\n"
      ))
    #expect(!refused.stderr.contains("log in again"))
    #expect(try fleet.tree() == tree)
    let missing = try fleet.tgsess(["recover", "--user", String(user), "--identity", fleet.directory.file("nope")])
    #expect(missing.status == 1)
    #expect(missing.stderr.contains("\(fleet.directory.file("nope")): not found"))

    let recovered = try fleet.tgsess(["recover", "--user", String(user), "--identity", escrowed, "--json"])
    #expect(recovered.status == 0, "\(recovered.stderr)")
    let outcome = try Self.outcome(recovered)
    #expect(outcome.strategy == .backup)
    #expect(outcome.source?.hasPrefix("archive ") == true)
    let restored = try SessionWitness.stored([fleet.sessionPath(user)])
    #expect(restored[fleet.sessionPath(user)]?.sameSession(as: original[fleet.sessionPath(user)]!) == true)
  }
}

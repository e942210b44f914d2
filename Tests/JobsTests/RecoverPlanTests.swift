import Foundation
import Jobs
import Logging
import Store
import TestSupport
import Testing

/// `RecoverJob.plan` on a real deployment broken in every way recover knows: the plan is
/// asserted as a value, computing it changes nothing, and a real run then does what it said.
@Suite struct RecoverPlanTests {
  static var logger: Logger {
    var logger = Logger(label: "test")
    logger.logLevel = .critical
    return logger
  }

  @Test func thePlanNamesEachUsersStrategyAndARunFollowsIt() throws {
    let fleet = try TestFleet(users: 8)
    let users = try fleet.telethonUserIDs(6)
    let (healthy, missingFile, corruptFile, staleString, fromArchive, nothing) = (
      users[0], users[1], users[2], users[3], users[4], users[5]
    )
    let path = fleet.sessionPath
    // Before the backup: a user whose session no archive will hold, and nothing else either.
    try FileManager.default.removeItem(atPath: path(nothing))
    if FileManager.default.fileExists(atPath: path(nothing) + ".backup") {
      try FileManager.default.removeItem(atPath: path(nothing) + ".backup")
    }
    try fleet.sqlite("UPDATE user_sessions SET session_string = NULL WHERE user_id = \(nothing)")
    try fleet.sqlite("DELETE FROM session_backups WHERE user_id = \(nothing)")
    let backup = try BackupJob.run(fleet.deployment, options: BackupOptions(), logger: Self.logger)
    let archive = try #require(backup.archives.first { $0.kind == .user && $0.userID == fromArchive })
    // After it: break each user in one way.
    try FileManager.default.removeItem(atPath: path(missingFile))
    try Data(randomBytes(8192)).write(to: URL(fileURLWithPath: path(corruptFile)))
    try fleet.sqlite("UPDATE user_sessions SET session_string = 'garbage' WHERE user_id = \(staleString)")
    try FileManager.default.removeItem(atPath: path(fromArchive))
    try fleet.sqlite("UPDATE user_sessions SET session_string = 'garbage' WHERE user_id = \(fromArchive)")
    try fleet.sqlite("DELETE FROM session_backups WHERE user_id = \(fromArchive)")
    let tree = try fleet.tree()
    let dumps = try fleet.dumpAll()
    let chosen = [healthy, missingFile, corruptFile, staleString, fromArchive, nothing]

    let steps = try chosen.map { user in
      try #require(
        try RecoverJob.plan(fleet.deployment, options: RecoverOptions(userID: user), logger: Self.logger).users.first)
    }

    #expect(steps[0] == UserRecoveryPlan(userID: healthy, action: .none, detail: "file and database agree"))
    #expect(
      steps[1]
        == UserRecoveryPlan(
          userID: missingFile, action: .rebuildFile, source: "user_sessions.session_string", writes: path(missingFile),
          detail: "rebuilt \(path(missingFile)) from the database's session string"))
    #expect(
      steps[2]
        == UserRecoveryPlan(
          userID: corruptFile, action: .rebuildFile, source: "user_sessions.session_string", writes: path(corruptFile),
          movesAside: path(corruptFile), detail: "rebuilt \(path(corruptFile)) from the database's session string"))
    #expect(
      steps[3]
        == UserRecoveryPlan(
          userID: staleString, action: .storeString, source: path(staleString), storesString: true,
          detail: "kept \(path(staleString)) and stored its session string in the database"))
    #expect(
      steps[4]
        == UserRecoveryPlan(
          userID: fromArchive, action: .restoreFile, source: "archive \(archive.id)", writes: path(fromArchive),
          storesString: true, detail: "restored \(path(fromArchive)) from archive \(archive.id)"))
    #expect(steps[5].action == .giveUp && steps[5].strategy == nil)
    #expect(steps[5].detail.hasPrefix("file: ") && steps[5].detail.hasSuffix("; the user must log in again"))
    #expect(steps.map(\.strategy) == [nil, .sessionString, .sessionString, .sessionFile, .backup, nil])
    // Planning changed nothing.
    #expect(try fleet.tree() == tree)
    #expect(try fleet.dumpAll() == dumps)

    // The plan of --all holds the same steps.
    let all = try RecoverJob.plan(fleet.deployment, options: RecoverOptions(), logger: Self.logger)
    #expect(chosen.map { user in all.users.first { $0.userID == user } } == steps)
    #expect(all.backsUpRecovered)

    // A run does what the plan said.
    let progress = ProgressLog()
    let run = try RecoverJob.run(
      fleet.deployment, options: RecoverOptions(backsUpRecovered: false), logger: Self.logger,
      progress: { progress.append($0) })
    for step in steps {
      let outcome = try #require(run.users.first { $0.userID == step.userID })
      #expect(outcome.strategy == step.strategy, "user \(step.userID)")
      #expect(outcome.source == step.source, "user \(step.userID)")
      #expect(outcome.detail == step.detail, "user \(step.userID)")
    }
    let aside = try FileSystem.directoryNames(fleet.deployment.sessionsDirectory).filter {
      $0.hasPrefix("user_\(corruptFile).session.broken-")
    }
    #expect(aside.count == 1)
    // Each strategy reported as tried, then as done.
    #expect(
      progress.steps(of: fromArchive) == [
        RecoverProgress(userID: fromArchive, strategy: .backup, succeeded: nil),
        RecoverProgress(userID: fromArchive, strategy: .backup, succeeded: true),
      ])
    #expect(
      progress.steps(of: nothing) == [
        RecoverProgress(userID: nothing, strategy: .backup, succeeded: nil),
        RecoverProgress(userID: nothing, strategy: .backup, succeeded: false),
      ])
    #expect(
      progress.steps(of: missingFile) == [
        RecoverProgress(userID: missingFile, strategy: .sessionString, succeeded: nil),
        RecoverProgress(userID: missingFile, strategy: .sessionString, succeeded: true),
      ])
    // Afterwards the plan has nothing left to do but the one lost user.
    let after = try RecoverJob.plan(fleet.deployment, options: RecoverOptions(), logger: Self.logger)
    #expect(after.users.filter { $0.action != .none }.map(\.userID) == [nothing])
  }
}

/// Progress reports collected from the job (which may report from its own thread).
final class ProgressLog: @unchecked Sendable {
  private let lock = NSLock()
  private var all: [RecoverProgress] = []

  func append(_ step: RecoverProgress) { lock.withLock { all.append(step) } }

  func steps(of userID: Int64) -> [RecoverProgress] { lock.withLock { all.filter { $0.userID == userID } } }
}

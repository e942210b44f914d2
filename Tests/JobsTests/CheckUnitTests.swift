import Foundation
import Jobs
import Logging
import Store
import TestSupport
import Testing

/// The check units called directly on real deployments (`TestFleet`: files written by the fleet
/// generator, archives by `tgsess backup`), their findings asserted as values.
@Suite struct CheckUnitTests {
  static let logger = Logger(label: "test")

  /// Options that do not depend on the machine: no free-space floor.
  static func options(_ change: (inout CheckOptions) -> Void = { _ in }) -> CheckOptions {
    var options = CheckOptions(minFreeBytes: 0)
    change(&options)
    return options
  }

  static func context(_ fleet: TestFleet, _ options: CheckOptions = options()) -> CheckContext {
    CheckContext.gather(fleet.deployment, options: options)
  }

  /// Every unit but the probe, by name, for messages.
  static func allFindings(_ context: CheckContext) -> [CheckFinding] {
    CheckJob.findings(context) { _, _ in
      Issue.record("no probe was configured")
      return .ok
    }
  }

  @Test func aHealthyDeploymentHasNoFindingInAnyUnit() throws {
    let fleet = try TestFleet(users: 3, pyrogramShare: 0.3, entities: 10, backedUp: true)
    let context = Self.context(fleet)
    #expect(context.users == fleet.userIDs)
    #expect(context.liveUsers == fleet.userIDs)
    #expect(context.canRecord)
    #expect(DatabaseCheck.findings(context) == [])
    #expect(KeysCheck.findings(context) == [])
    #expect(SessionsCheck.findings(context) == [])
    #expect(BackupsCheck.findings(context) == [])
    #expect(OffsiteCheck.findings(context) == [])
    #expect(DrillsCheck.findings(context) == [])
    #expect(ProbeCheck.findings(context, skipping: []) == [])
    #expect(
      CheckJob.userStates(findings: [], context: context)
        == Dictionary(uniqueKeysWithValues: fleet.userIDs.map { ($0, .ok) }))
  }

  @Test func aDamagedSessionFileIsOneFindingOfTheSessionsUnit() throws {
    let fleet = try TestFleet(users: 2, pyrogramShare: 0, entities: 10, backedUp: true)
    let (user, other) = (fleet.userIDs[0], fleet.userIDs[1])
    let path = fleet.sessionPath(user)
    #expect(truncate(path, 0) == 0)
    let context = Self.context(fleet)
    let findings = SessionsCheck.findings(context)
    #expect(
      findings == [
        CheckFinding(
          .userSession, .critical, "\(path): empty file (0 bytes)",
          remedy: "restore it from a backup: tgsess recover --user \(user)", user: user)
      ])
    #expect(
      findings[0].message
        == "user \(user): \(path): empty file (0 bytes); restore it from a backup: tgsess recover --user \(user)")
    #expect(CheckJob.userStates(findings: findings, context: context) == [user: .critical, other: .ok])
  }

  @Test func aSessionsDirectoryThatIsAFileMakesEveryUserUnknownAndNoOrphans() throws {
    let fleet = try TestFleet(users: 3, pyrogramShare: 0, entities: 10, backedUp: true)
    let sessions = fleet.deployment.sessionsDirectory
    try FileManager.default.moveItem(atPath: sessions, toPath: sessions + ".real")
    try Data("x".utf8).write(to: URL(fileURLWithPath: sessions))
    let context = Self.context(fleet)
    guard case .failure(let error) = context.sessionFiles else {
      Issue.record("listing a file as a directory succeeded")
      return
    }
    #expect(error == StoreError.io(path: sessions, operation: "list directory", errno: ENOTDIR))
    let findings = Self.allFindings(context)
    #expect(
      findings == [
        CheckFinding(
          .sessionsDirectory, .critical,
          "\(sessions): list directory failed: Not a directory; no session file was checked",
          remedy:
            "make \(sessions) a directory (mode 700) that the user running tgsess can read, then run: tgsess check")
      ])
    let states = CheckJob.userStates(findings: findings, context: context)
    #expect(states == Dictionary(uniqueKeysWithValues: fleet.userIDs.map { ($0, .unknown) }))
    // What is recorded: unknown for each, and no reason invented for anyone.
    let record = try #require(CheckRecord.plan(context: context, findings: findings, states: states))
    #expect(
      record.entries
        == fleet.userIDs.map { BotDatabase.CheckRecordEntry(userID: $0, health: .unknown, lastError: nil) })
  }

  @Test func aBackupsDirectoryThatIsADanglingSymlinkIsOneFinding() throws {
    let fleet = try TestFleet(users: 2, pyrogramShare: 0, entities: 10, backedUp: true)
    let backups = fleet.deployment.backupsDirectory
    try FileManager.default.moveItem(atPath: backups, toPath: backups + ".real")
    try FileManager.default.createSymbolicLink(atPath: backups, withDestinationPath: backups + ".gone")
    let context = Self.context(fleet)
    #expect(
      BackupsCheck.findings(context) == [
        CheckFinding(
          .backupDirectory, .critical,
          "\(backups): follow the symlink failed: No such file or directory; no archive was checked",
          remedy: "make \(backups) a directory (mode 700) that the user running tgsess can read, then run: tgsess check"
        )
      ])
    // Nor do the units that read archives guess: no "no archive holds this user", no identity verdict.
    #expect(KeysCheck.findings(context) == [])
    #expect(SessionsCheck.findings(context) == [])
  }

  @Test func aMissingFernetKeyIsOneKeysFindingAndNoUsersSecretFinding() throws {
    let fleet = try TestFleet(users: 3, pyrogramShare: 0, entities: 10, backedUp: true)
    let keyPath = fleet.deployment.fernetKeysPath
    try FileManager.default.removeItem(atPath: keyPath)
    let context = Self.context(fleet)
    #expect(context.fernetSource == .file(keyPath))
    let expected = CheckFinding(
      .keys, .critical,
      "no Fernet key: \(keyPath) does not exist and $TGSESS_FERNET_KEYS is not set, so the 3 encrypted session string(s) in the database cannot be read",
      remedy: "restore \(keyPath) (mode 0600) from its off-host copy, or set $TGSESS_FERNET_KEYS")
    #expect(KeysCheck.findings(context) == [expected])
    #expect(SessionsCheck.findings(context) == [])
    // The summary names it, though users' findings come later in the list.
    let user = fleet.userIDs[0]
    let userFinding = CheckFinding(.userNoBackup, .critical, "x", user: user)
    let verdict = CheckJob.verdict(
      findings: [userFinding, expected], sessions: .init(ok: 2, warning: 0, critical: 1), users: 3,
      lastFullBackupAgeSeconds: 10)
    #expect(verdict.state == .critical)
    #expect(verdict.summary == "2 problem(s): 1 session(s) critical, 0 warning; \(expected.message)")
  }

  @Test func aConfirmedDeadSessionIsRecordedRevokedAndOnlyWhenRecordingIsOn() throws {
    let fleet = try TestFleet(users: 3, pyrogramShare: 0, entities: 10, backedUp: true)
    let (dead, slow, broken) = (fleet.userIDs[0], fleet.userIDs[1], fleet.userIDs[2])
    #expect(truncate(fleet.sessionPath(broken), 0) == 0)
    let fatal = ErrorClassifier.classify("AUTH_KEY_UNREGISTERED")
    let timeout = ErrorClassifier.classify("TimeoutError")
    let probed = LockedList()
    let runner: ProbeCheck.Runner = { path, _ in
      probed.append(path)
      if path == fleet.sessionPath(dead) { return .fatal(fatal) }
      return path == fleet.sessionPath(slow) ? .temporary(timeout, attempts: 3) : .ok
    }
    let context = Self.context(fleet, Self.options { $0.probeCommand = ["/bin/false"] })
    let findings = CheckJob.findings(context, probe: runner)
    // The user another unit found critical is not probed.
    #expect(probed.items == [fleet.sessionPath(dead), fleet.sessionPath(slow)])
    #expect(
      findings.filter { $0.id == .userProbe } == [
        CheckFinding(
          .userProbe, .critical,
          "\(fatal.summary) (confirmed); the session is dead and was marked revoked; it and its backups are kept",
          remedy: "the user must log in again", user: dead),
        CheckFinding(.userProbe, .warning, "\(timeout.summary) after 3 attempts", user: slow),
      ])
    let states = CheckJob.userStates(findings: findings, context: context)
    #expect(states == [dead: .critical, slow: .warning, broken: .critical])
    let record = try #require(CheckRecord.plan(context: context, findings: findings, states: states))
    #expect(
      record.entries
        == [
          BotDatabase.CheckRecordEntry(
            userID: dead, health: .critical,
            lastError:
              "\(fatal.summary) (confirmed); the session is dead and was marked revoked; it and its backups are kept",
            marksRevoked: true),
          BotDatabase.CheckRecordEntry(
            userID: slow, health: .warning, lastError: "\(timeout.summary) after 3 attempts"),
          BotDatabase.CheckRecordEntry(
            userID: broken, health: .critical, lastError: "\(fleet.sessionPath(broken)): empty file (0 bytes)"),
        ].sorted { $0.userID < $1.userID })

    // With recording off, nothing is planned, and the finding does not claim a mark it did not make.
    let readOnly = Self.context(
      fleet,
      Self.options {
        $0.probeCommand = ["/bin/false"]; $0.writesResults = false
      })
    let unrecorded = CheckJob.findings(readOnly, probe: runner)
    #expect(CheckRecord.plan(context: readOnly, findings: unrecorded, states: states) == nil)
    #expect(
      unrecorded.first { $0.id == .userProbe }?.reason
        == "\(fatal.summary) (confirmed); the session is dead; not marked revoked, as this run records nothing; it and its backups are kept"
    )
  }

  @Test func theRunWritesExactlyItsRecordAndNothingWithoutIt() throws {
    let fleet = try TestFleet(users: 2, pyrogramShare: 0, entities: 10, backedUp: true)
    let user = fleet.userIDs[0]
    #expect(truncate(fleet.sessionPath(user), 0) == 0)
    let database = try Data(contentsOf: URL(fileURLWithPath: fleet.databasePath))
    let unrecorded = CheckJob.run(
      fleet.deployment, options: Self.options { $0.writesResults = false }, logger: Self.logger)
    #expect(!unrecorded.isRecorded)
    #expect(try Data(contentsOf: URL(fileURLWithPath: fleet.databasePath)) == database)

    let recorded = CheckJob.run(fleet.deployment, options: Self.options(), logger: Self.logger)
    #expect(recorded.isRecorded)
    #expect(recorded.state == .critical)
    #expect(
      try fleet.sqlite(
        "SELECT user_id || ' ' || health || ' ' || coalesce(last_error, '-') FROM user_sessions ORDER BY user_id")
        == fleet.userIDs.map {
          $0 == user ? "\($0) critical \(fleet.sessionPath(user)): empty file (0 bytes)" : "\($0) ok -"
        }.joined(separator: "\n"))
  }

  @Test func optionsMergeTheCommandLineOverTheConfigOverTheDefaults() throws {
    let now = Date(timeIntervalSince1970: 1_800_000_000)
    let defaults = CheckOptions(config: Config(), now: now)
    #expect(defaults.maxBackupAge == CheckOptions.defaultMaxBackupAge)
    #expect(defaults.minFreeBytes == CheckOptions.defaultMinFreeBytes)
    #expect(defaults.maxDrillAge == CheckOptions.defaultMaxDrillAge)
    #expect(defaults.probeRetryBase == .seconds(1))
    #expect(defaults.writesResults && !defaults.isDeep && defaults.probeCommand == nil)

    let config = try Config.parse("[check]\nmax_age_seconds = 600\nmin_free_mib = 10\n", path: "t.toml")
    let configured = CheckOptions(config: config, now: now)
    #expect(configured.maxBackupAge == 600)
    #expect(configured.minFreeBytes == 10 * 1_048_576)

    let overridden = CheckOptions(
      config: config,
      overrides: .init(
        isDeep: true, maxBackupAge: 60, minFreeBytes: 1, writesResults: false, probeCommand: ["/bin/true"],
        probeRetryBase: .milliseconds(10)),
      now: now)
    #expect(overridden.maxBackupAge == 60 && overridden.minFreeBytes == 1)
    #expect(overridden.isDeep && !overridden.writesResults && overridden.probeCommand == ["/bin/true"])
    #expect(overridden.probeRetryBase == .milliseconds(10) && overridden.now == now)
  }
}

/// A list that a `@Sendable` closure can append to.
final class LockedList: @unchecked Sendable {
  private let lock = NSLock()
  private var storage: [String] = []
  func append(_ item: String) { lock.withLock { storage.append(item) } }
  var items: [String] { lock.withLock { storage } }
}

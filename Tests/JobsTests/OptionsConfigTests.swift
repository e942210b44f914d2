import Foundation
import Jobs
import Store
import Testing

/// Options own their defaults and the config merge: the config's value is used, a caller's
/// override wins, and the default holds when neither says anything. The CLI and the bot runner
/// both build their options through these initializers.
@Suite struct OptionsConfigTests {
  static func config(_ text: String) throws -> Config { try Config.parse(text, path: "tgsess.toml") }

  // MARK: - backup

  @Test func backupOptionsTakeTheDefaultsWhenNothingIsSet() throws {
    let options = BackupOptions(config: Config())
    #expect(options.userID == nil && options.reason == "Scheduled")
    #expect(options.isEncrypted && options.lockWait == 0 && options.zstdLevel == 3)
    #expect(options.includesChangedUsers && options.pushesOffsite)
    // One user's backup is "Manual" unless the caller says why.
    #expect(BackupOptions(config: Config(), overrides: .init(userID: 42)).reason == "Manual")
    #expect(
      BackupOptions(config: Config(), overrides: .init(userID: 42, reason: "Before login")).reason == "Before login")
  }

  @Test func backupOptionsUseTheBackupSection() throws {
    let config = try Self.config("[backup]\nencrypt = false\nzstd_level = 12\nlock_wait = 600\n")
    let options = BackupOptions(config: config)
    #expect(!options.isEncrypted && options.zstdLevel == 12 && options.lockWait == 600)
  }

  @Test func backupOverridesWinOverTheBackupSection() throws {
    let config = try Self.config("[backup]\nencrypt = true\nzstd_level = 12\nlock_wait = 600\n")
    let options = BackupOptions(
      config: config,
      overrides: .init(userID: 7, reason: "Before logout", isEncrypted: false, lockWait: 30, zstdLevel: 1))
    #expect(options.userID == 7 && options.reason == "Before logout")
    #expect(!options.isEncrypted && options.lockWait == 30 && options.zstdLevel == 1)
    // An override of one knob leaves the others to the config.
    let partly = BackupOptions(config: config, overrides: .init(lockWait: 5))
    #expect(partly.isEncrypted && partly.zstdLevel == 12 && partly.lockWait == 5)
  }

  // MARK: - prune

  @Test func pruneOptionsTakeTheDefaultsWhenNothingIsSet() throws {
    let options = try PruneOptions(config: Config())
    #expect(options.policy == RetentionPolicy())
    #expect(options.policy.timeZone == TimeZone(identifier: "UTC"))
    #expect(!options.isDryRun && options.lockWait == 0)
  }

  @Test func pruneOptionsUseThePruneSection() throws {
    let config = try Self.config(
      """
      [prune]
      keep_per_user = 2
      keep_last = 1
      keep_hourly = 6
      keep_daily = 3
      keep_weekly = 0
      keep_monthly = 12
      keep_yearly = 2
      timezone = "Asia/Tokyo"
      """)
    let options = try PruneOptions(config: config)
    #expect(
      options.policy
        == RetentionPolicy(
          keepPerUser: 2, keepLast: 1, keepHourly: 6, keepDaily: 3, keepWeekly: 0, keepMonthly: 12, keepYearly: 2,
          timeZone: TimeZone(identifier: "Asia/Tokyo")!))
  }

  @Test func pruneOverridesWinOverThePruneSection() throws {
    let config = try Self.config("[prune]\nkeep_per_user = 2\nkeep_daily = 3\ntimezone = \"Asia/Tokyo\"\n")
    let now = Date(timeIntervalSince1970: 1_800_000_000)
    let options = try PruneOptions(
      config: config,
      overrides: .init(keepPerUser: 9, timeZone: "Europe/Berlin", isDryRun: true, lockWait: 60, now: now))
    #expect(options.policy.keepPerUser == 9, "the flag wins")
    #expect(options.policy.keepDaily == 3, "the config's value stays where no flag is given")
    #expect(options.policy.keepLast == RetentionPolicy().keepLast, "the default where neither says anything")
    #expect(options.policy.timeZone.identifier == "Europe/Berlin")
    #expect(options.isDryRun && options.lockWait == 60 && options.now == now)
  }

  @Test func anUnknownTimeZoneIsAUsageErrorNamingWhereItCameFrom() throws {
    let config = try Self.config("[prune]\ntimezone = \"Mars/Olympus\"\n")
    #expect {
      try PruneOptions(config: config)
    } throws: { error in
      guard case .usage(let message) = error as? JobError else { return false }
      return message == "unknown timezone 'Mars/Olympus' in the config ([prune] timezone). Try: timezone = \"UTC\""
    }
    #expect {
      try PruneOptions(config: Config(), overrides: .init(timeZone: "Mars/Olympus"))
    } throws: { error in
      guard case .usage(let message) = error as? JobError else { return false }
      return message == "unknown --timezone 'Mars/Olympus'. Try: --timezone UTC or --timezone Europe/Berlin"
    }
    // The flag's valid zone wins over the config's bad one.
    #expect(
      try PruneOptions(config: config, overrides: .init(timeZone: "UTC")).policy.timeZone == TimeZone(identifier: "UTC")
    )
  }
}

import Foundation
import Store
import TestSupport
import Testing

@Suite struct ConfigTests {
  @Test func parsesEveryDocumentedKey() throws {
    let config = try Config.parse(
      """
      root = "/srv/bot"
      database = "db/bot.db"
      sessions_dir = "s"
      backups_dir = "/var/backups/tgsess"
      keys_dir = "k"
      age_recipients = ["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"]
      age_identity_file = "/root/escrow/key.txt"
      fernet_keys_file = "k/fernet"
      busy_timeout_ms = 2500

      [backup]
      encrypt = true
      zstd_level = 5
      lock_wait = 30

      [prune]
      keep_per_user = 5
      keep_last = 5
      keep_hourly = 24
      keep_daily = 7
      keep_weekly = 4
      keep_monthly = 12
      timezone = "Europe/Berlin"

      [check]
      max_age_seconds = 7200
      min_free_mib = 512
      bot_unit = "tgbot.service"
      """, path: "t.toml")
    #expect(config.root == "/srv/bot")
    #expect(config.busyTimeoutMS == 2500)
    #expect(config.backup?.zstdLevel == 5)
    #expect(config.prune?.keepMonthly == 12)
    #expect(config.check?.botUnit == "tgbot.service")
    let deployment = Deployment(root: "/srv/bot", config: config)
    #expect(deployment.databasePath == "/srv/bot/db/bot.db")
    #expect(deployment.backupsDirectory == "/var/backups/tgsess")
    #expect(deployment.ageIdentityPath == "/root/escrow/key.txt")
    #expect(deployment.fernetKeysPath == "/srv/bot/k/fernet")
    #expect(deployment.sessionPath(userID: 42) == "/srv/bot/s/user_42.session")
  }

  @Test func unknownKeyIsAnErrorNamingFileAndKey() {
    #expect {
      try Config.parse("busy_timeout = 5\n", path: "/etc/tgsess/tgsess.toml")
    } throws: { error in
      (error as? StoreError)?.errorDescription
        == "/etc/tgsess/tgsess.toml: unknown key(s): busy_timeout; fix the config file (see README, Configuration)"
    }
  }

  @Test func syntaxAndTypeErrorsNameTheFile() {
    #expect {
      try Config.parse("root = \n", path: "a.toml")
    } throws: { error in
      let text = (error as? StoreError)?.errorDescription ?? ""
      return text.hasPrefix("a.toml: TOML syntax error at line 1")
    }
    #expect {
      try Config.parse("busy_timeout_ms = \"fast\"\n", path: "b.toml")
    } throws: { error in
      (error as? StoreError)?.errorDescription
        == "b.toml: key 'busy_timeout_ms' is missing or has the wrong type; fix the config file (see README, Configuration)"
    }
  }

  @Test func resolutionOrderFlagThenEnvironmentThenConfigRoot() throws {
    let dir = try TemporaryDirectory()
    try "root = \"\(dir.path)/fromconfig\"\n".write(toFile: dir.file("c.toml"), atomically: true, encoding: .utf8)
    let byConfig = try Deployment.resolve(root: nil, config: dir.file("c.toml"), environment: [:])
    #expect(byConfig.root == dir.path + "/fromconfig")
    let byEnvironment = try Deployment.resolve(
      root: nil, config: dir.file("c.toml"), environment: ["TGSESS_ROOT": dir.path + "/fromenv"])
    #expect(byEnvironment.root == dir.path + "/fromenv")
    let byFlag = try Deployment.resolve(
      root: dir.path + "/fromflag", config: dir.file("c.toml"), environment: ["TGSESS_ROOT": "/nope"])
    #expect(byFlag.root == dir.path + "/fromflag")
    // <root>/tgsess.toml is read when no config is named.
    try FileManager.default.createDirectory(atPath: dir.file("r"), withIntermediateDirectories: true)
    try "busy_timeout_ms = 1234\n".write(toFile: dir.file("r/tgsess.toml"), atomically: true, encoding: .utf8)
    let implicit = try Deployment.resolve(root: dir.file("r"), config: nil, environment: [:])
    #expect(implicit.busyTimeoutMS == 1234)
    #expect(implicit.configPath == dir.file("r/tgsess.toml"))
  }

  @Test func missingNamedConfigIsAnError() {
    #expect {
      try Deployment.resolve(root: nil, config: "/nonexistent/tgsess.toml", environment: [:])
    } throws: { error in
      (error as? StoreError)?.errorDescription?.hasPrefix("/nonexistent/tgsess.toml: not found") == true
    }
  }

  @Test func sessionFileNamesMapToUserIDs() {
    #expect(Deployment.userID(fromSessionFileName: "user_12345.session") == 12345)
    #expect(Deployment.userID(fromSessionFileName: "user_12345.session.backup") == nil)
    #expect(Deployment.userID(fromSessionFileName: "user_.session") == nil)
    #expect(Deployment.userID(fromSessionFileName: "user_12a.session") == nil)
    #expect(Deployment.userID(fromSessionFileName: "bot.session") == nil)
  }
}

import Foundation
import Jobs
import Store
import TestSupport
import Testing

/// `init` and `migrate` on a real legacy deployment (`tgsess-fleet --legacy`): the safety copy is
/// an encrypted archive like every other (listed, restorable by id, pruned by policy), never a
/// plaintext file; a plaintext copy an earlier version left is encrypted and removed; no file
/// under backups/ holds a seed secret; and both commands take `--lock-wait`.
@Suite struct SafetyCopyCLITests {
  /// Every plaintext secret of the seed's database (session strings and api_hash values, in
  /// `user_sessions` and `session_backups`), read before tgsess touches it.
  static func seedSecrets(_ databasePath: String) throws -> [String] {
    let values = try StockTools.query(
      databasePath,
      "SELECT session_string FROM user_sessions UNION SELECT api_hash FROM user_sessions "
        + "UNION SELECT session_string FROM session_backups UNION SELECT api_hash FROM session_backups")
    let secrets = values.split(separator: "\n").map(String.init).filter { $0.utf8.count >= 16 }
    guard secrets.count >= 8, secrets.allSatisfy({ !$0.hasPrefix("gAAAAA") }) else {
      throw TestHelperError("the legacy fleet holds no plaintext secrets: \(secrets.count)")
    }
    return secrets
  }

  /// The files under `directory` (recursively) whose bytes contain one of `secrets`.
  static func filesHolding(_ secrets: [String], under directory: String) throws -> [String] {
    var found: [String] = []
    let needles = secrets.map { Data($0.utf8) }
    guard let enumerator = FileManager.default.enumerator(atPath: directory) else { return [] }
    var files = 0
    while let relative = enumerator.nextObject() as? String {
      let path = directory + "/" + relative
      var info = stat()
      guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { continue }
      files += 1
      let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
      if needles.contains(where: { bytes.range(of: $0) != nil }) { found.append(relative) }
    }
    guard files > 0 else { throw TestHelperError("no file under \(directory)") }
    return found
  }

  /// The archive id on the output line "safety copy: encrypted archive ID (…".
  static func safetyCopyID(_ stdout: String) throws -> String {
    let marker = "safety copy: encrypted archive "
    guard let line = stdout.split(separator: "\n").first(where: { $0.contains(marker) }),
      let id = line.components(separatedBy: marker).last?.split(separator: " ").first
    else { throw TestHelperError("no safety copy line in: \(stdout)") }
    return String(id)
  }

  static func listed(_ fleet: TestFleet, _ id: String) throws -> ListedArchive? {
    try fleet.listedArchives().first { $0.id == id }
  }

  @Test func initOnALegacyDeploymentLeavesNoPlaintextCopyBehind() throws {
    try StockTools.require()
    let fleet = try TestFleet(
      users: 5, legacy: true, entities: 120, collectsSecrets: true, location: .subdirectory("fleet"))
    let secrets = try Self.seedSecrets(fleet.databasePath)
    let first = try fleet.tgsess(["init"])
    #expect(first.status == 0, "\(first.stderr)")
    let id = try Self.safetyCopyID(first.stdout)
    #expect(first.stdout.contains("(reason Before migrate; tgsess restore \(id) undoes this)"))

    // Nothing under backups/ holds a seed secret: the copy is encrypted, and no pre-migrate/ exists.
    #expect(try Self.filesHolding(secrets, under: fleet.backupsDirectory) == [])
    #expect(!FileManager.default.fileExists(atPath: fleet.backupsDirectory + "/pre-migrate"))
    // It is listed like every archive: a full snapshot with its reason.
    let record = try #require(try Self.listed(fleet, id))
    #expect(record.kind == .full)
    #expect(record.reason == "Before migrate")
    // Signed as every archive is, with the deployment's key: readers accept nothing else.
    #expect(record.signature == .signed)
    let ring = try KeyStore.loadVerifyingKeys(path: fleet.root + "/keys/signing.pub")
    let signed = try ArchiveSigning.verifyFile(
      archivePath: fleet.backupsDirectory + "/full/\(id).tar.zst.age", ring: ring)
    #expect(signed.statement.reason == "Before migrate")
    // The stock tools open it, and it is the database as it was: plaintext, before migrating.
    let archive = fleet.backupsDirectory + "/full/\(id).tar.zst.age"
    let scratch = try TemporaryDirectory("safety-copy")
    let (problems, _, extracted) = try StockTools.extractAndVerify(
      archive, identity: fleet.identityPath, scratch: scratch.path)
    #expect(problems == [])
    let copy = extracted + "/data/telegram_bot.db"
    #expect(try StockTools.query(copy, "SELECT count(*) FROM user_sessions WHERE session_string LIKE '1%'") != "0")
    #expect(try StockTools.query(copy, "SELECT count(*) FROM sqlite_master WHERE name = 'tgsess_state'") == "0")
    // Restorable by id: the whole restore puts that database back.
    let restore = try fleet.tgsess(["restore", id, "--dry-run"])
    #expect(restore.status == 0, "\(restore.stderr)")
    #expect(restore.stdout.contains("replace   \(fleet.databasePath)"))
    // Retention plans it as a full snapshot (migrateEncryptsThePlaintextCopiesAnEarlierVersionLeft
    // shows an older one removed by the policy).
    #expect(try fleet.tgsess(["backup"]).status == 0)
    let plan = try PruneCLITests.Plan(try fleet.tgsess(["prune", "--dry-run", "--json"]))
    #expect((plan.keep[id] ?? plan.remove[id]) != nil, "\(plan.keep) \(plan.remove)")
    // A restore of "latest" prefers the regular snapshot to the safety copy.
    let latest = try fleet.tgsess(["restore", "latest", "--dry-run"])
    #expect(latest.status == 0, "\(latest.stderr)")
    #expect(latest.stdout.hasPrefix("would restore from ") && !latest.stdout.hasPrefix("would restore from \(id)"))
    #expect(try fleet.leakedSecrets() == [])
  }

  /// The plaintext copies an earlier version wrote into backups/pre-migrate/ are encrypted into
  /// "Before migrate" archives dated when they were taken and removed (one that an archive
  /// already holds byte for byte is only removed); the output names each.
  @Test func migrateEncryptsThePlaintextCopiesAnEarlierVersionLeft() throws {
    try StockTools.require()
    let fleet = try TestFleet(
      users: 4, legacy: true, entities: 120, collectsSecrets: true, location: .subdirectory("fleet"))
    let secrets = try Self.seedSecrets(fleet.databasePath)
    let legacyCopy = try #require(
      try FileManager.default.contentsOfDirectory(atPath: fleet.root + "/data").first { $0.contains(".backup_") })
    #expect(try fleet.tgsess(["init"]).status == 0)
    // What tgsess 0.1 left: raw SQLite copies of the legacy database.
    let directory = fleet.backupsDirectory + "/pre-migrate"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let distinct = directory + "/telegram_bot.db.pre-migrate-20261101T000000Z"
    let same = directory + "/telegram_bot.db.pre-migrate-20261102T000000Z"
    try FileManager.default.copyItem(atPath: fleet.root + "/data/" + legacyCopy, toPath: distinct)
    try StockTools.pipeline(#"sqlite3 "$1" "UPDATE copy_configs SET enabled = 0""#, [distinct])
    try FileManager.default.copyItem(atPath: fleet.root + "/data/" + legacyCopy, toPath: same)
    #expect(try Self.filesHolding(secrets, under: fleet.backupsDirectory).count == 2)

    let dryRun = try fleet.tgsess(["migrate", "--dry-run"])
    #expect(dryRun.status == 0, "\(dryRun.stderr)")
    for path in [distinct, same] {
      #expect(dryRun.stdout.contains("would encrypt the plaintext safety copy \(path) (left by an earlier version)"))
      #expect(FileManager.default.fileExists(atPath: path))
    }

    let migrate = try fleet.tgsess(["migrate"])
    #expect(migrate.status == 0, "\(migrate.stderr)")
    let lines = migrate.stdout.split(separator: "\n").map(String.init)
    let encrypted = try #require(lines.first { $0.contains("encrypted the plaintext safety copy \(distinct)") })
    let id = try #require(encrypted.components(separatedBy: "into archive ").last?.split(separator: " ").first)
    #expect(encrypted.hasSuffix("and removed it"))
    #expect(lines.contains { $0.contains("removed the plaintext safety copy \(same): archive ") })
    #expect(!FileManager.default.fileExists(atPath: directory))
    #expect(try Self.filesHolding(secrets, under: fleet.backupsDirectory) == [])
    let record = try #require(try Self.listed(fleet, String(id)))
    #expect(record.reason == "Before migrate")
    #expect(ISO8601DateFormatter().string(from: record.createdAt).hasPrefix("2026-11-01"))
    // The converted copy is signed too (as tgsess writes every archive).
    #expect(record.signature == .signed)
    #expect(
      try ArchiveSigning.verifyFile(
        archivePath: fleet.backupsDirectory + "/full/\(id).tar.zst.age",
        ring: try KeyStore.loadVerifyingKeys(path: fleet.root + "/keys/signing.pub")
      ).statement.archiveID == String(id))
    let restore = try fleet.tgsess(["restore", String(id), "--dry-run"])
    #expect(restore.status == 0, "\(restore.stderr)")
    #expect(restore.stdout.contains("replace   \(fleet.databasePath)"))
    // Pruned by the full-snapshot policy like any full snapshot.
    #expect(try fleet.tgsess(["backup"]).status == 0)
    let plan = try PruneCLITests.Plan(
      try fleet.tgsess(["prune", "--dry-run", "--json", "--keep-last", "1", "--keep-daily", "0", "--keep-weekly", "0"]))
    #expect(plan.remove[String(id)] == ["not kept by any rule"], "\(plan.keep) \(plan.remove)")
    // Once done, a further migrate has nothing to say about them.
    let again = try fleet.tgsess(["migrate"])
    #expect(!again.stdout.contains("plaintext safety copy"))
    #expect(try fleet.leakedSecrets() == [])
  }

  /// Without an age recipient there is nothing to encrypt the copy to: migrate refuses before it
  /// changes anything (init creates the keys first, so it never gets here).
  @Test func migrateWithoutARecipientRefusesAndChangesNothing() throws {
    let fleet = try TestFleet(
      users: 3, legacy: true, entities: 120, collectsSecrets: true, location: .subdirectory("fleet"))
    let key = try runPython("from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())")
      .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    let before = try FileTree.hashes(fleet.root)
    let dryRun = try fleet.tgsess(["migrate", "--dry-run"], environment: ["TGSESS_FERNET_KEYS": key])
    #expect(dryRun.status == 0, "\(dryRun.stderr)")
    #expect(
      dryRun.stdout.contains("the real run would refuse: \(fleet.root)/keys/age-recipients.txt: no age recipient"))
    let result = try fleet.tgsess(["migrate"], environment: ["TGSESS_FERNET_KEYS": key])
    #expect(result.status == 1)
    #expect(
      result.stderr
        == "tgsess: migrate: \(fleet.root)/keys/age-recipients.txt: no age recipient to encrypt the database's safety copy to, and a plaintext copy is never kept; run tgsess init (it creates the keys before it migrates), or add the recipient of your escrowed identity\n"
    )
    #expect(try FileTree.hashes(fleet.root) == before)
  }

  /// `init` and `migrate` wait for the deployment lock with `--lock-wait`, as their held-lock
  /// message says (they rejected the option before).
  @Test func initAndMigrateTakeLockWait() throws {
    let fleet = try TestFleet(
      users: 2, legacy: true, entities: 120, collectsSecrets: true, location: .subdirectory("fleet"))
    let lockPath = fleet.root + "/.tgsess.lock"
    var holder = try BackgroundProcess.holdingLock(lockPath)
    for verb in ["init", "migrate"] {
      let held = try fleet.tgsess([verb, "--lock-wait", "1"])
      #expect(held.status == 75, "\(verb): \(held.stderr)")
      #expect(held.stderr.contains("\(lockPath): held by "), "\(verb): \(held.stderr)")
      #expect(held.stderr.contains("retry with --lock-wait SECONDS"))
    }
    #expect(try fleet.tgsess(["init", "--lock-wait", "-1"]).status == 64)
    // A wait long enough for the holder to let go succeeds.
    let waiting = try fleet.tgsessInBackground(["init", "--lock-wait", "120"])
    try waitUntil("init to wait for the lock") { waiting.hasOpen(lockPath) || !waiting.isRunning }
    holder.kill()
    let result = waiting.result
    fleet.keep(waiting)
    #expect(result.status == 0, "\(result.stderr)")
    #expect(result.stdout.contains("safety copy: encrypted archive "))
    holder = try BackgroundProcess.holdingLock(lockPath)
    let migrate = try fleet.tgsessInBackground(["migrate", "--lock-wait", "120"])
    try waitUntil("migrate to wait for the lock") { migrate.hasOpen(lockPath) || !migrate.isRunning }
    holder.kill()
    #expect(migrate.result.status == 0, "\(migrate.stderr)")
    fleet.keep(migrate)
  }
}

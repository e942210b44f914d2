import Foundation
import Jobs
import Store
import TestSupport
import Testing

/// End-to-end tests of `tgsess init` and `tgsess migrate` through the built binary, against
/// databases written by Python (the seed's bot) and secrets checked by Python's cryptography.
@Suite struct InitMigrateCLITests {
  /// Real Telethon StringSessions and api_hash values, made by Telethon itself.
  static func realUsers(_ count: Int) throws -> [(Int64, String, Int, String)] {
    let result = try runPython(
      """
      import os, json, sys
      from telethon.sessions import StringSession
      from telethon.crypto import AuthKey
      out = []
      for i in range(int(sys.argv[1])):
          s = StringSession()
          s.set_dc(2 + i % 3, '149.154.167.%d' % (40 + i), 443)
          s.auth_key = AuthKey(os.urandom(256))
          out.append({'id': 1000 + i, 'string': s.save(), 'apiID': 20000 + i, 'apiHash': os.urandom(16).hex()})
      print(json.dumps(out))
      """, arguments: [String(count)])
    struct User: Decodable {
      var id: Int64
      var string: String
      var apiID: Int
      var apiHash: String
    }
    return try JSONDecoder().decode([User].self, from: result.stdoutData).map {
      ($0.id, $0.string, $0.apiID, $0.apiHash)
    }
  }

  /// Decrypts Fernet tokens with Python's MultiFernet and the given keys (newest first).
  static func pythonDecrypt(tokens: [String], keys: [String]) throws -> [String] {
    let result = try runPython(
      """
      import sys, json
      from cryptography.fernet import Fernet, MultiFernet
      keys, tokens = json.loads(sys.argv[1]), json.loads(sys.argv[2])
      f = MultiFernet([Fernet(k) for k in keys])
      print(json.dumps([f.decrypt(t.encode()).decode() for t in tokens]))
      """,
      arguments: [
        String(decoding: try JSONEncoder().encode(keys), as: UTF8.self),
        String(decoding: try JSONEncoder().encode(tokens), as: UTF8.self),
      ])
    return try JSONDecoder().decode([String].self, from: result.stdoutData)
  }

  static func fernetKeys(_ fixture: TestFleet) throws -> [String] {
    try String(contentsOfFile: fixture.deployment.fernetKeysPath, encoding: .utf8)
      .split(separator: "\n").map(String.init).filter { !$0.hasPrefix("#") && !$0.isEmpty }
  }

  @Test func initCreatesPrivateDirectoriesAndKeysAndIsIdempotent() throws {
    let fixture = try TestFleet()
    let first = try runTgsess(["init", "--root", fixture.root])
    #expect(first.status == 0, "\(first.stderr)")
    for directory in ["data", "sessions", "backups", "keys"] {
      #expect(try FileSystem.mode(of: fixture.root + "/" + directory) == 0o700)
    }
    let keyFiles = [
      "keys/age-identity.txt", "keys/age-recipients.txt", "keys/fernet.keys", "keys/signing.key", "keys/signing.pub",
      "data/telegram_bot.db",
    ]
    for file in keyFiles { #expect(try FileSystem.mode(of: fixture.root + "/" + file) == 0o600, "\(file)") }
    let before = try keyFiles.prefix(5).map { try Data(contentsOf: URL(fileURLWithPath: fixture.root + "/" + $0)) }
    // The signing key is the one the ring starts with, and the output names it.
    let signingKey = try KeyStore.loadSigningKey(fixture.deployment)
    #expect(try KeyStore.loadVerifyingKeys(fixture.deployment).keys.first == signingKey.verifyingKey)
    #expect(first.stdout.contains("created archive signing key \(fixture.root)/keys/signing.key"))
    #expect(first.stdout.contains("archives are signed with key \(signingKey.keyID)"))
    // The identity file is age-keygen's format: stock age can use it.
    let recipient = try runProcess("/usr/bin/age-keygen", ["-y", fixture.root + "/keys/age-identity.txt"])
    #expect(recipient.status == 0)
    #expect(first.stdout.contains(recipient.stdout.trimmingCharacters(in: .whitespacesAndNewlines)))
    let second = try runTgsess(["init", "--root", fixture.root, "--json"])
    #expect(second.status == 0, "\(second.stderr)")
    let json = try decodeJSON(InitResult.self, from: second)
    #expect(json.directoriesCreated.isEmpty)
    #expect(json.keys == KeyStore.Created(), "no key created: \(json.keys)")
    #expect(json.signingKeyID == signingKey.keyID)
    let after = try keyFiles.prefix(5).map { try Data(contentsOf: URL(fileURLWithPath: fixture.root + "/" + $0)) }
    #expect(before == after)
  }

  @Test func migrateEncryptsLegacySecretsThatPythonDecrypts() throws {
    let fixture = try TestFleet()
    let users = try Self.realUsers(3)
    try fixture.makeLegacyDatabase(users: users, backupsPerUser: 2)
    let otherTable = try fixture.dump("copy_configs")
    let initResult = try runTgsess(["init", "--root", fixture.root])
    #expect(initResult.status == 0, "\(initResult.stderr)")
    #expect(initResult.stdout.contains("encrypt 18 plaintext secret(s)"))
    // The safety copy is an encrypted archive (never a plaintext file), private, and holds the
    // old plaintext rows (SafetyCopyCLITests covers it in full).
    let line = initResult.stdout.split(separator: "\n").first { $0.contains("safety copy: encrypted archive ") }!
    let id = String(line.components(separatedBy: "encrypted archive ").last!.split(separator: " ")[0])
    let archive = fixture.root + "/backups/full/\(id).tar.zst.age"
    #expect(try FileSystem.mode(of: archive) == 0o600)
    #expect(!FileSystem.exists(fixture.root + "/backups/pre-migrate"))
    let scratch = try TemporaryDirectory("safety-copy")
    try StockTools.extract(archive, identity: fixture.root + "/keys/age-identity.txt", into: scratch.path)
    let old = try runProcess(
      "/usr/bin/sqlite3",
      [scratch.path + "/data/telegram_bot.db", "SELECT count(*) FROM user_sessions WHERE session_string LIKE '1%'"])
    #expect(old.stdout == "3\n")
    // Every secret is now a Fernet token that Python decrypts back to the original.
    let tokens = try fixture.sqlite("SELECT session_string || '|' || api_hash FROM user_sessions ORDER BY user_id")
      .split(separator: "\n").flatMap { $0.split(separator: "|").map(String.init) }
    #expect(tokens.allSatisfy { $0.hasPrefix("gAAAAA") })
    let plain = try Self.pythonDecrypt(tokens: tokens, keys: try Self.fernetKeys(fixture))
    #expect(plain == users.flatMap { [$0.1, $0.3] })
    #expect(try fixture.sqlite("SELECT count(*) FROM session_backups WHERE session_string NOT LIKE 'gAAAAA%'") == "0")
    // From now on the secret columns hold tokens only, and the database says so.
    #expect(try !fixture.sqlite("SELECT value FROM tgsess_state WHERE key = 'secrets_encrypted'").isEmpty)
    #expect(try fixture.dump("copy_configs") == otherTable)
    // No secret reached the output.
    for user in users {
      #expect(!initResult.stdout.contains(user.1) && !initResult.stderr.contains(user.1))
      #expect(!initResult.stdout.contains(user.3) && !initResult.stderr.contains(user.3))
    }
    // Running again is a no-op that says so.
    let again = try runTgsess(["migrate", "--root", fixture.root])
    #expect(again.status == 0)
    #expect(again.stdout.contains("is current"))
  }

  @Test func dryRunListsStepsAndChangesNothing() throws {
    let fixture = try TestFleet()
    try fixture.makeLegacyDatabase(users: try Self.realUsers(2), backupsPerUser: 1)
    let key = try runPython("from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())")
      .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    let before = try Data(contentsOf: URL(fileURLWithPath: fixture.databasePath))
    let result = try runTgsess(
      ["migrate", "--dry-run", "--root", fixture.root, "--json"], environment: ["TGSESS_FERNET_KEYS": key])
    #expect(result.status == 0, "\(result.stderr)")
    let json = try decodeJSON(MigrateResult.self, from: result)
    #expect(json.isDryRun == true)
    #expect(json.migrations == BotSchema.migrationIdentifiers)
    #expect(json.secretsEncrypted == 8)
    #expect(json.wasLegacy == true)
    #expect(try Data(contentsOf: URL(fileURLWithPath: fixture.databasePath)) == before)
    #expect(!FileSystem.exists(fixture.root + "/backups"))
    #expect(!result.stdout.contains(key))
    // Without an age recipient the real run would refuse, and the dry run says so.
    #expect(json.refusal?.contains("no age recipient to encrypt the database's safety copy to") == true)
  }

  @Test func environmentKeysEncryptAndRotateKeyReencryptsUnderTheNewest() throws {
    let fixture = try TestFleet()
    let users = try Self.realUsers(2)
    try fixture.makeLegacyDatabase(users: users, backupsPerUser: 1)
    #expect(try runTgsess(["init", "--root", fixture.root]).status == 0)
    let oldKeys = try Self.fernetKeys(fixture)
    let add = try runTgsess(["keys", "add-fernet", "--root", fixture.root])
    #expect(add.status == 0, "\(add.stderr)")
    let newKeys = try Self.fernetKeys(fixture)
    #expect(newKeys.count == 2 && newKeys[1] == oldKeys[0])
    // Before the rotation the old key still decrypts everything.
    let rotate = try runTgsess(["migrate", "--rotate-key", "--root", fixture.root])
    #expect(rotate.status == 0, "\(rotate.stderr)")
    #expect(rotate.stdout.contains("re-encrypt 8 secret(s) under the newest key"))
    let tokens = try fixture.sqlite("SELECT session_string FROM session_backups ORDER BY id").split(separator: "\n")
      .map(String.init)
    // Only the newest key is needed now.
    #expect(try Self.pythonDecrypt(tokens: tokens, keys: [newKeys[0]]) == users.map(\.1))
  }

  @Test func pythonEncryptedSecretsAreRecognisedAndNotDoubleEncrypted() throws {
    let fixture = try TestFleet()
    let users = try Self.realUsers(1)
    let key = try runPython("from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())")
      .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    let token = try runPython(
      "import sys; from cryptography.fernet import Fernet; print(Fernet(sys.argv[1]).encrypt(sys.argv[2].encode()).decode())",
      arguments: [key, users[0].1]
    ).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    try fixture.makeLegacyDatabase(users: [(users[0].0, token, users[0].2, users[0].3)], backupsPerUser: 0)
    // init: the age keys first (the safety copy is encrypted to them), then the migration.
    let result = try runTgsess(["init", "--root", fixture.root], environment: ["TGSESS_FERNET_KEYS": key])
    #expect(result.status == 0, "\(result.stderr)")
    #expect(result.stdout.contains("encrypt 1 plaintext secret(s)"))  // only the api_hash
    #expect(try fixture.sqlite("SELECT session_string FROM user_sessions") == token)
  }

  /// A deployment made before archives were signed: `tgsess init` run again adds the signing key
  /// and its ring and leaves every other key as it was.
  @Test func initAddsTheSigningKeyToAnOlderDeployment() throws {
    let fixture = try TestFleet()
    #expect(try runTgsess(["init", "--root", fixture.root]).status == 0)
    try FileManager.default.removeItem(atPath: fixture.deployment.signingKeyPath)
    try FileManager.default.removeItem(atPath: fixture.deployment.signingPublicKeysPath)
    let others = ["keys/age-identity.txt", "keys/age-recipients.txt", "keys/fernet.keys"]
    let before = try others.map { try Data(contentsOf: URL(fileURLWithPath: fixture.root + "/" + $0)) }
    let again = try runTgsess(["init", "--root", fixture.root])
    #expect(again.status == 0, "\(again.stderr)")
    #expect(again.stdout.contains("created archive signing key"))
    #expect(try others.map { try Data(contentsOf: URL(fileURLWithPath: fixture.root + "/" + $0)) } == before)
    _ = try KeyStore.loadSigningKey(fixture.deployment)
  }

  /// `tgsess keys rotate-signing`: a new key signs, the old public key stays second in the ring.
  @Test func rotateSigningKeepsTheOldPublicKeyForVerification() throws {
    let fixture = try TestFleet()
    let notYet = try runTgsess(["keys", "rotate-signing", "--root", fixture.root])
    #expect(notYet.status == 1)
    #expect(
      notYet.stderr
        == "tgsess: keys rotate-signing: \(fixture.root)/keys/signing.key: not found; run tgsess init: it adds the archive signing key and keeps every other key\n"
    )
    #expect(try runTgsess(["init", "--root", fixture.root]).status == 0)
    let old = try KeyStore.loadSigningKey(fixture.deployment).verifyingKey
    let rotated = try runTgsess(["keys", "rotate-signing", "--root", fixture.root])
    #expect(rotated.status == 0, "\(rotated.stderr)")
    let new = try KeyStore.loadSigningKey(fixture.deployment).verifyingKey
    #expect(new != old)
    #expect(rotated.stdout.contains("signing key \(new.keyID) is current (was \(old.keyID))"))
    #expect(try KeyStore.loadVerifyingKeys(fixture.deployment).keys == [new, old])
    let json = try runTgsess(["keys", "rotate-signing", "--root", fixture.root, "--json"])
    #expect(json.status == 0, "\(json.stderr)")
    let rotation = try decodeJSON(SigningRotation.self, from: json)
    #expect(rotation.oldKeyID == new.keyID)
    #expect(rotation.ringKeyIDs.count == 3)
    #expect(rotation.ringKeyIDs.suffix(2) == [new.keyID, old.keyID])
  }

  @Test func aSigningKeyOthersCanReadIsRefusedWithTheChmodToRun() throws {
    let fixture = try TestFleet()
    #expect(try runTgsess(["init", "--root", fixture.root]).status == 0)
    chmod(fixture.deployment.signingKeyPath, 0o644)
    for arguments in [["init"], ["keys", "rotate-signing"]] {
      let result = try runTgsess(arguments + ["--root", fixture.root])
      #expect(result.status == 1)
      #expect(
        result.stderr.hasSuffix(
          "mode 644 lets group or others read a secret; run: chmod 600 \(fixture.deployment.signingKeyPath)\n"))
      #expect(result.stderr.split(separator: "\n").count == 1)
    }
  }

  /// A database that a tgsess before the `secrets_encrypted` state migrated gets the state from
  /// the next `tgsess migrate` (SecretColumnTests covers what the state then refuses).
  @Test func migrateRecordsEncryptedSecretsForDatabasesMigratedBefore() throws {
    let fixture = try TestFleet()
    try fixture.makeLegacyDatabase(users: try Self.realUsers(1), backupsPerUser: 0)
    #expect(try runTgsess(["init", "--root", fixture.root]).status == 0)
    _ = try fixture.sqlite("DELETE FROM tgsess_state WHERE key = 'secrets_encrypted'")
    let migrate = try runTgsess(["migrate", "--root", fixture.root])
    #expect(migrate.status == 0, "\(migrate.stderr)")
    #expect(try !fixture.sqlite("SELECT value FROM tgsess_state WHERE key = 'secrets_encrypted'").isEmpty)
  }
}

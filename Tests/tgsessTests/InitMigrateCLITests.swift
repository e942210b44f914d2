import Foundation
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
          out.append([1000 + i, s.save(), 20000 + i, os.urandom(16).hex()])
      print(json.dumps(out))
      """, arguments: [String(count)])
    let rows = try JSONSerialization.jsonObject(with: result.stdoutData) as! [[Any]]
    return rows.map { (Int64($0[0] as! Int), $0[1] as! String, $0[2] as! Int, $0[3] as! String) }
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

  static func fernetKeys(_ fixture: TestDeployment) throws -> [String] {
    try String(contentsOfFile: fixture.deployment.fernetKeysPath, encoding: .utf8)
      .split(separator: "\n").map(String.init).filter { !$0.hasPrefix("#") && !$0.isEmpty }
  }

  @Test func initCreatesPrivateDirectoriesAndKeysAndIsIdempotent() throws {
    let fixture = try TestDeployment()
    let first = try runTgsess(["init", "--root", fixture.root])
    #expect(first.status == 0, "\(first.stderr)")
    for directory in ["data", "sessions", "backups", "keys"] {
      #expect(try FileSystem.mode(of: fixture.root + "/" + directory) == 0o700)
    }
    let keyFiles = ["keys/age-identity.txt", "keys/age-recipients.txt", "keys/fernet.keys", "data/telegram_bot.db"]
    for file in keyFiles { #expect(try FileSystem.mode(of: fixture.root + "/" + file) == 0o600, "\(file)") }
    let before = try keyFiles.prefix(3).map { try Data(contentsOf: URL(fileURLWithPath: fixture.root + "/" + $0)) }
    // The identity file is age-keygen's format: stock age can use it.
    let recipient = try runProcess("/usr/bin/age-keygen", ["-y", fixture.root + "/keys/age-identity.txt"])
    #expect(recipient.status == 0)
    #expect(first.stdout.contains(recipient.stdout.trimmingCharacters(in: .whitespacesAndNewlines)))
    let second = try runTgsess(["init", "--root", fixture.root, "--json"])
    #expect(second.status == 0, "\(second.stderr)")
    let json = try JSONSerialization.jsonObject(with: second.stdoutData) as! [String: Any]
    #expect((json["directoriesCreated"] as! [Any]).isEmpty)
    #expect((json["keys"] as! [String: Bool]).values.allSatisfy { !$0 })
    let after = try keyFiles.prefix(3).map { try Data(contentsOf: URL(fileURLWithPath: fixture.root + "/" + $0)) }
    #expect(before == after)
  }

  @Test func migrateEncryptsLegacySecretsThatPythonDecrypts() throws {
    let fixture = try TestDeployment()
    let users = try Self.realUsers(3)
    try fixture.makeLegacyDatabase(users: users, backupsPerUser: 2)
    let otherTable = try fixture.dump(table: "copy_configs")
    let initResult = try runTgsess(["init", "--root", fixture.root])
    #expect(initResult.status == 0, "\(initResult.stderr)")
    #expect(initResult.stdout.contains("encrypt 18 plaintext secret(s)"))
    // The safety copy exists, is private, and holds the old plaintext rows.
    let line = initResult.stdout.split(separator: "\n").first { $0.contains("safety copy: ") }!
    let copy = String(line.split(separator: " ").last!)
    #expect(try FileSystem.mode(of: copy) == 0o600)
    let old = try runProcess(
      "/usr/bin/sqlite3", [copy, "SELECT count(*) FROM user_sessions WHERE session_string LIKE '1%'"])
    #expect(old.stdout == "3\n")
    // Every secret is now a Fernet token that Python decrypts back to the original.
    let tokens = try fixture.query("SELECT session_string || '|' || api_hash FROM user_sessions ORDER BY user_id")
      .split(separator: "\n").flatMap { $0.split(separator: "|").map(String.init) }
    #expect(tokens.allSatisfy { $0.hasPrefix("gAAAAA") })
    let plain = try Self.pythonDecrypt(tokens: tokens, keys: try Self.fernetKeys(fixture))
    #expect(plain == users.flatMap { [$0.1, $0.3] })
    #expect(try fixture.query("SELECT count(*) FROM session_backups WHERE session_string NOT LIKE 'gAAAAA%'") == "0")
    #expect(try fixture.dump(table: "copy_configs") == otherTable)
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
    let fixture = try TestDeployment()
    try fixture.makeLegacyDatabase(users: try Self.realUsers(2), backupsPerUser: 1)
    let key = try runPython("from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())")
      .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    let before = try Data(contentsOf: URL(fileURLWithPath: fixture.databasePath))
    let result = try runTgsess(
      ["migrate", "--dry-run", "--root", fixture.root, "--json"], environment: ["TGSESS_FERNET_KEYS": key])
    #expect(result.status == 0, "\(result.stderr)")
    let json = try JSONSerialization.jsonObject(with: result.stdoutData) as! [String: Any]
    #expect(json["isDryRun"] as? Bool == true)
    #expect(json["migrations"] as? [String] == BotSchema.migrationIdentifiers)
    #expect(json["secretsEncrypted"] as? Int == 8)
    #expect(json["wasLegacy"] as? Bool == true)
    #expect(try Data(contentsOf: URL(fileURLWithPath: fixture.databasePath)) == before)
    #expect(!FileSystem.exists(fixture.root + "/backups"))
    #expect(!result.stdout.contains(key))
  }

  @Test func environmentKeysEncryptAndRotateKeyReencryptsUnderTheNewest() throws {
    let fixture = try TestDeployment()
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
    let tokens = try fixture.query("SELECT session_string FROM session_backups ORDER BY id").split(separator: "\n")
      .map(String.init)
    // Only the newest key is needed now.
    #expect(try Self.pythonDecrypt(tokens: tokens, keys: [newKeys[0]]) == users.map(\.1))
  }

  @Test func pythonEncryptedSecretsAreRecognisedAndNotDoubleEncrypted() throws {
    let fixture = try TestDeployment()
    let users = try Self.realUsers(1)
    let key = try runPython("from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())")
      .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    let token = try runPython(
      "import sys; from cryptography.fernet import Fernet; print(Fernet(sys.argv[1]).encrypt(sys.argv[2].encode()).decode())",
      arguments: [key, users[0].1]
    ).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    try fixture.makeLegacyDatabase(users: [(users[0].0, token, users[0].2, users[0].3)], backupsPerUser: 0)
    let result = try runTgsess(["migrate", "--root", fixture.root], environment: ["TGSESS_FERNET_KEYS": key])
    #expect(result.status == 0, "\(result.stderr)")
    #expect(result.stdout.contains("encrypt 1 plaintext secret(s)"))  // only the api_hash
    #expect(try fixture.query("SELECT session_string FROM user_sessions") == token)
  }
}

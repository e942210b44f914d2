import Foundation
import Store
import TestSupport
import Testing

/// Each bad input gets one line naming the object and the next step, a non-zero exit, and no
/// change on disk.
@Suite struct BadInputCLITests {
  static func snapshot(_ root: String) throws -> [String: Data] {
    var files: [String: Data] = [:]
    let enumerator = FileManager.default.enumerator(atPath: root)
    while let relative = enumerator?.nextObject() as? String {
      let path = root + "/" + relative
      if !FileSystem.isDirectory(path) { files[relative] = try Data(contentsOf: URL(fileURLWithPath: path)) }
    }
    return files
  }

  static func expectOneLineError(_ result: ProcessResult, _ expected: String, status: Int32 = 1) {
    #expect(result.status == status)
    #expect(result.stderr == "tgsess: \(expected)\n")
  }

  @Test func corruptDatabase() throws {
    let fixture = try TestFleet()
    #expect(try runTgsess(["init", "--root", fixture.root]).status == 0)
    try Data(repeating: 0x5a, count: 4096).write(to: URL(fileURLWithPath: fixture.databasePath))
    let before = try Self.snapshot(fixture.root)
    let result = try runTgsess(["migrate", "--root", fixture.root])
    Self.expectOneLineError(
      result,
      "migrate: \(fixture.databasePath): not an SQLite database, or corrupted (open); restore it from a backup: tgsess restore latest"
    )
    #expect(try Self.snapshot(fixture.root) == before)
  }

  @Test func databaseFromNewerTgsess() throws {
    let fixture = try TestFleet()
    #expect(try runTgsess(["init", "--root", fixture.root]).status == 0)
    _ = try fixture.sqlite("INSERT INTO grdb_migrations VALUES ('v9-newer')")
    let before = try Self.snapshot(fixture.root)
    let result = try runTgsess(["migrate", "--root", fixture.root])
    Self.expectOneLineError(
      result,
      "migrate: \(fixture.databasePath): made by a newer tgsess (unknown migrations: v9-newer); upgrade tgsess; it never downgrades a database"
    )
    #expect(try Self.snapshot(fixture.root) == before)
  }

  @Test func missingDatabase() throws {
    let fixture = try TestFleet()
    let result = try runTgsess(["status", "--root", fixture.root])
    Self.expectOneLineError(
      result,
      "status: \(fixture.databasePath): not found; run tgsess migrate to create it, or pass the right --root/--config")
  }

  @Test func keyFileReadableByOthers() throws {
    let fixture = try TestFleet()
    #expect(try runTgsess(["init", "--root", fixture.root]).status == 0)
    let keyPath = fixture.deployment.fernetKeysPath
    chmod(keyPath, 0o644)
    let before = try Self.snapshot(fixture.root)
    let result = try runTgsess(["migrate", "--root", fixture.root])
    Self.expectOneLineError(
      result, "migrate: \(keyPath): mode 644 lets group or others read a secret; run: chmod 600 \(keyPath)")
    #expect(try Self.snapshot(fixture.root) == before)
  }

  @Test func wrongKeyInEnvironment() throws {
    let fixture = try TestFleet()
    try fixture.makeLegacyDatabase(users: [(1, "plain", 1, "hash")], backupsPerUser: 0)
    let before = try Self.snapshot(fixture.root)
    let secretLookingGarbage = "not-a-fernet-key-but-could-be-a-secret"
    let result = try runTgsess(
      ["migrate", "--root", fixture.root], environment: ["TGSESS_FERNET_KEYS": secretLookingGarbage])
    Self.expectOneLineError(
      result,
      "migrate: $TGSESS_FERNET_KEYS: key #1 is not a Fernet key (44 characters of URL-safe base64); generate one with: python3 -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
    )
    #expect(!result.stderr.contains(secretLookingGarbage))
    #expect(try Self.snapshot(fixture.root) == before)
  }

  @Test func missingKeyWithPlaintextSecrets() throws {
    let fixture = try TestFleet()
    try fixture.makeLegacyDatabase(users: [(1, "plain", 1, "hash")], backupsPerUser: 0)
    let before = try Self.snapshot(fixture.root)
    let result = try runTgsess(["migrate", "--root", fixture.root])
    Self.expectOneLineError(
      result,
      "migrate: \(fixture.deployment.fernetKeysPath): 2 plaintext secret(s) in the database need a Fernet key, and none is configured; run tgsess init, or set TGSESS_FERNET_KEYS"
    )
    #expect(try Self.snapshot(fixture.root).filter { !$0.key.hasPrefix(".tgsess.lock") } == before)
  }

  @Test func wrongKeyCannotDecryptIsReportedNotDestroyed() throws {
    let fixture = try TestFleet()
    try fixture.makeLegacyDatabase(users: [(1, "plain", 1, "hash")], backupsPerUser: 0)
    #expect(try runTgsess(["init", "--root", fixture.root]).status == 0)
    // Replace the key file with an unrelated key: the tokens stay as they are.
    let other = try runPython("from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())").stdout
    try FileSystem.writeAtomically(Data(other.utf8), to: fixture.deployment.fernetKeysPath)
    let tokens = try fixture.sqlite("SELECT session_string FROM user_sessions")
    let result = try runTgsess(["migrate", "--root", fixture.root, "--rotate-key"])
    #expect(result.status == 0)
    #expect(result.stdout.contains("warning: 2 secret(s) no configured key decrypts (left as they are)"))
    #expect(try fixture.sqlite("SELECT session_string FROM user_sessions") == tokens)
  }

  // MARK: - Exit statuses of usage errors

  /// Every command ends 64 on bad usage, except check, which speaks Nagios: UNKNOWN (3).
  @Test func usageErrorsAre64ExceptForCheckWhichIsUnknown() throws {
    let fixture = try TestFleet()
    for (arguments, status) in [
      (["check", "--bogus"], Int32(3)), (["check", "--max-age", "soon"], 3), (["check", "--nagios", "extra"], 3),
      (["backup", "--bogus"], 64), (["status", "--bogus"], 64), (["restore", "--at"], 64), (["bogus"], 64),
    ] {
      let result = try runTgsess(arguments + ["--root", fixture.root])
      #expect(result.status == status, "\(arguments): \(result.stderr)")
      #expect(result.stderr.hasPrefix("Error: "), "\(arguments): \(result.stderr)")
      #expect(result.stdout.isEmpty, "\(arguments): \(result.stdout)")
    }
    // Help and the version are not errors, for check either.
    let help = try runTgsess(["check", "--help"])
    #expect(help.status == 0)
    #expect(help.stdout.contains("EXIT STATUS (Nagios): 0 OK · 1 WARNING · 2 CRITICAL · 3 UNKNOWN"))
    #expect(help.stdout.contains("--no-write skips all of it"))
    let version = try runTgsess(["--version"])
    #expect(version.status == 0 && !version.stdout.isEmpty)
  }

  // MARK: - Session files named on the command line

  /// The remedy is worded for the file: with the user's id when the name carries one, and never
  /// with a placeholder such as "--user ID".
  @Test func inspectWordsTheRemedyForTheFile() throws {
    let passwd = try runTgsess(["session", "inspect", "/etc/passwd"])
    Self.expectOneLineError(passwd, "/etc/passwd: not an SQLite database; restore it from a backup")

    let directory = try TemporaryDirectory("tgsess-inspect")
    let userFile = directory.file("user_42.session")
    try Data("text, not a database, and long enough to be read as one\n".utf8).write(
      to: URL(fileURLWithPath: userFile))
    Self.expectOneLineError(
      try runTgsess(["session", "inspect", userFile]),
      "\(userFile): not an SQLite database; restore it from a backup: tgsess recover --user 42")

    let missing = directory.file("user_7.session")
    Self.expectOneLineError(
      try runTgsess(["session", "inspect", missing]),
      "\(missing): no session file there; check the path, or restore it from a backup: tgsess recover --user 7")
    #expect(!FileSystem.exists(missing), "inspect never creates the file")
  }
}

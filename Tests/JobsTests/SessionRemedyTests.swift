import Foundation
import Jobs
import Store
import Testing

/// A session problem's reason and its remedy are separate values; each edge words the remedy.
/// Here: Store's generic line (what every command prints for a `StoreError`) and the operator's
/// words with a user id (what check and the CLI print when they know the user).
@Suite struct SessionRemedyTests {
  /// Every problem, with its reason and remedy.
  static let problems: [(SessionProblem, String, SessionRemedy)] = [
    (.notSQLite, "not an SQLite database", .recoverFromBackup),
    (.missingFile, "no session file there", .checkPathOrRecover),
    (.truncated, "truncated or damaged SQLite file", .recoverFromBackup),
    (.emptyFile, "empty file (0 bytes)", .recoverFromBackup),
    (
      .unknownSchema("tables notes"), "unknown session schema (tables notes); not a Telethon or Pyrogram session file",
      .recoverFromBackup
    ),
    (.unsupportedVersion("9"), "unsupported session schema version 9", .upgradeTgsess),
    (.noSessionsRow, "no row in the sessions table (never logged in, or logged out)", .logInAgainOrRecover),
    (.multipleSessionsRows(2), "2 rows in the sessions table where exactly one is expected", .recoverFromBackup),
    (.authKeyMissing, "auth key missing (logged out or never logged in)", .recoverFromBackup),
    (.authKeyWrongLength(12), "auth key is 12 bytes, not 256", .recoverFromBackup),
    (.authKeyAllZero, "auth key is all zeros (torn copy of a live file)", .recoverFromBackup),
    (.dcOutOfRange(9), "dc id 9 is outside 1-5", .recoverFromBackup),
    (.badPort(0), "port 0 is not a valid server port", .recoverFromBackup),
    (.badAddress("x"), "server address 'x' is not an IP address", .recoverFromBackup),
    (
      .hotJournal("/s/u.session-journal"),
      "hot journal /s/u.session-journal beside the file (a writer is running or crashed mid-transaction)",
      .rollBackJournal
    ),
    (.badBase64, "not valid URL-safe base64", .copyStringAgain),
    (
      .wrongLength(10), "session string has 10 characters (Telethon: 353 or 369; Pyrogram: 351, 356 or 362)",
      .copyStringAgain
    ),
    (
      .unknownStringVersion("2"), "unknown session string version '2' (Telethon strings start with '1')",
      .checkStringSource
    ),
    (.unreadable("EIO"), "unreadable (EIO)", .checkPermissions),
    (
      .serverAddressMissing, "no server address stored (never connected, or a format without addresses)",
      .logInAgainOrRecover
    ),
    (.portMissing, "no port stored", .recoverFromBackup),
    (.testModeDCOutOfRange(5), "test-server session with dc id 5, outside the test DCs 1-3", .recoverFromBackup),
    (
      .walNotReadable("EACCES"), "write-ahead log beside the file cannot be read read-only (EACCES)",
      .checkWriteAheadLog
    ),
    (.invalidField("is_bot byte is 2"), "invalid field: is_bot byte is 2", .copyStringAgain),
    (.locked("RESERVED"), "locked by another process (RESERVED)", .waitForWriter),
  ]

  /// Every remedy: without a user id, and for user 42.
  static let advice: [SessionRemedy: (String, String)] = [
    .recoverFromBackup: ("restore it from a backup", "restore it from a backup: tgsess recover --user 42"),
    .checkPathOrRecover: (
      "check the path, or restore it from a backup",
      "check the path, or restore it from a backup: tgsess recover --user 42"
    ),
    .logInAgainOrRecover: (
      "the user must log in again, or restore it from a backup",
      "the user must log in again, or restore it from a backup: tgsess recover --user 42"
    ),
    .copyStringAgain: (
      "copy the whole session string again from its source", "copy the whole session string again from its source"
    ),
    .checkStringSource: ("check where the string came from", "check where the string came from"),
    .waitForWriter: (
      "wait for the bot to finish its write, then check again", "wait for the bot to finish its write, then check again"
    ),
    .rollBackJournal: (
      "stop the bot, or let SQLite roll it back by opening the file, then check again",
      "stop the bot, or let SQLite roll it back by opening the file, then check again"
    ),
    .checkPermissions: (
      "check permissions and that the disk is healthy", "check permissions and that the disk is healthy"
    ),
    .checkWriteAheadLog: (
      "check the owner and mode of the -wal and -shm files, or let the bot open the file once, then check again",
      "check the owner and mode of the -wal and -shm files, or let the bot open the file once, then check again"
    ),
    .upgradeTgsess: ("upgrade tgsess, or convert the file", "upgrade tgsess, or convert the file"),
  ]

  @Test func everyProblemHasItsReasonAndRemedyApart() {
    for (problem, reason, remedy) in Self.problems {
      #expect(problem.reason == reason)
      #expect(problem.remedy == remedy, "\(problem)")
      #expect(!problem.reason.contains("tgsess"), "a reason carries no remedy: \(problem.reason)")
    }
  }

  @Test func theOperatorsWordsWithAndWithoutAUser() {
    #expect(Set(Self.advice.keys) == Set(SessionRemedy.allCases))
    for remedy in SessionRemedy.allCases {
      let (generic, forUser) = Self.advice[remedy] ?? ("?", "?")
      #expect(remedy.advice(userID: nil) == generic)
      #expect(remedy.advice(userID: 42) == forUser)
    }
  }

  /// What every command prints for a session problem: one line, a generic remedy, no placeholder.
  @Test func storeErrorsPrintOneLineWithAGenericRemedy() {
    #expect(
      StoreError.session(object: "/etc/passwd", reason: .notSQLite).errorDescription
        == "/etc/passwd: not an SQLite database; restore it from a backup")
    #expect(
      StoreError.session(object: "user 42's session string", reason: .badBase64).errorDescription
        == "user 42's session string: not valid URL-safe base64; copy the whole session string again from its source")
    for (problem, reason, remedy) in Self.problems {
      let line = StoreError.session(object: "f", reason: problem).errorDescription ?? ""
      #expect(line == "f: \(reason); \(remedy.advice(userID: nil))")
      #expect(!line.contains("\n") && !line.contains("--user"), "\(line)")
    }
  }
}

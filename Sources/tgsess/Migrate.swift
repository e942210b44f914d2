import ArgumentParser
import Foundation
import Jobs

struct Migrate: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "migrate",
    abstract: "Bring the bot database to the current schema and encrypt its secrets.",
    discussion: """
      Takes a safety copy first: a full snapshot (the database through SQLite's online backup \
      API, and the session files), encrypted with age like every archive, reason "Before \
      migrate"; `tgsess list` shows it, `tgsess restore ID` brings it back, and prune keeps or \
      removes it by the full-snapshot policy. No plaintext copy is ever written: without an age \
      recipient migrate refuses (run tgsess init, which creates the keys first). A plaintext copy \
      an earlier version left in backups/pre-migrate/ is encrypted into such an archive and \
      removed. Then each pending migration is applied in its own transaction, and plaintext \
      session_string and api_hash values are encrypted as Fernet tokens in one transaction. Other \
      tables of the bot are untouched. A database made by a newer tgsess is refused, never \
      downgraded. The seed's own backup copies (data/telegram_bot.db.backup_* and \
      sessions/*.session.backup) are imported as encrypted archives with reason "Imported", once \
      each, dated when they were made; the files stay.

      --wal switches the bot database to SQLite's write-ahead log, once and for good (SQLite \
      records it in the file). Then a backup reads the database without ever holding the bot's \
      writes: in the default rollback-journal mode a consistent copy of a large database either \
      holds the bot's commits for as long as the copy takes or, as tgsess does, gives up when \
      the bot commits throughout. For the bot nothing else changes: its sqlite3 connection works \
      as before; the database gains data/telegram_bot.db-wal and -shm beside it, so the bot \
      must be able to write the data/ directory, and the file must stay on a local disk (not \
      NFS). Undo with: sqlite3 data/telegram_bot.db 'PRAGMA journal_mode=DELETE' (bot stopped).

        $ tgsess migrate --dry-run
        $ tgsess migrate --wal
        $ tgsess migrate --lock-wait 600
        $ tgsess keys add-fernet && tgsess migrate --rotate-key

      EXIT STATUS: 0 ok (also when already current) · 1 failed · 64 usage · 75 lock held
      """)

  @OptionGroup var global: GlobalOptions

  @Option(help: "Seconds to wait for the deployment lock.") var lockWait = 0

  @Flag(help: "List the pending steps without changing anything.")
  var dryRun = false

  @Flag(help: "Re-encrypt every secret under the newest Fernet key.")
  var rotateKey = false

  @Flag(help: "Switch the bot database to WAL, so backups never hold the bot's writes.")
  var wal = false

  func validate() throws {
    if lockWait < 0 { throw ValidationError("--lock-wait must be 0 or more seconds. Try: --lock-wait 600") }
  }

  func run() throws {
    let (deployment, logger) = try global.setUp()
    let result = try MigrateJob.run(
      deployment,
      options: MigrateOptions(
        isDryRun: dryRun, rotateKey: rotateKey, lockWait: TimeInterval(lockWait), switchesToWAL: wal),
      logger: logger)
    if global.json { return try Output.json(result) }
    Migrate.render(result)
  }

  static func render(_ result: MigrateResult) {
    let verb = result.isDryRun ? "would" : "did"
    if !result.hasDatabaseChanges {
      Output.line(
        "database \(result.database) is current (schema version \(result.toVersion))\(result.hasChanges ? "" : "; nothing to do")"
      )
    } else {
      Output.line(
        "database \(result.database): schema \(result.fromVersion) → \(result.toVersion)\(result.isDryRun ? " (dry run)" : "")"
      )
      if result.created { Output.line("  \(verb) create the database") }
      for step in result.migrations { Output.line("  \(verb) apply \(step)") }
      if result.secretsEncrypted > 0 { Output.line("  \(verb) encrypt \(result.secretsEncrypted) plaintext secret(s)") }
      if result.secretsRotated > 0 {
        Output.line("  \(verb) re-encrypt \(result.secretsRotated) secret(s) under the newest key")
      }
      if let copy = result.safetyCopy {
        Output.line(
          "  safety copy: encrypted archive \(copy) (reason Before migrate; tgsess restore \(copy) undoes this)")
      }
    }
    if result.switchesToWAL {
      Output.line("  \(verb) switch the journal mode from \(result.journalMode) to WAL")
    }
    for copy in result.plaintextCopies {
      if result.isDryRun {
        Output.line("  would encrypt the plaintext safety copy \(copy.path) (left by an earlier version) and remove it")
      } else if copy.wasArchivedBefore {
        Output.line(
          "  removed the plaintext safety copy \(copy.path): archive \(copy.archiveID ?? "-") already holds it")
      } else {
        Output.line(
          "  encrypted the plaintext safety copy \(copy.path) (left by an earlier version) into archive \(copy.archiveID ?? "-") and removed it"
        )
      }
    }
    if let refusal = result.refusal { Output.line("  the real run would refuse: \(refusal)") }
    for file in result.imported {
      Output.line(
        "  \(verb) import legacy backup \(file.path)\(file.archiveID.map { " as archive \($0) (reason Imported)" } ?? "")"
      )
    }
    if result.alreadyImported > 0 {
      Output.line("  \(result.alreadyImported) legacy backup file(s) already imported earlier")
    }
    if let note = result.importNote { Output.line("  note: \(note)") }
    if result.secretsUndecryptable > 0 {
      Output.line("  warning: \(result.secretsUndecryptable) secret(s) no configured key decrypts (left as they are)")
    }
  }
}

import ArgumentParser
import Jobs

struct Migrate: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Bring the bot database to the current schema and encrypt its secrets.",
    discussion: """
      Takes a consistent copy first (SQLite online backup, into backups/pre-migrate/), then applies \
      each pending migration in its own transaction, then encrypts plaintext session_string and \
      api_hash values as Fernet tokens in one transaction. Other tables of the bot are untouched. \
      A database made by a newer tgsess is refused, never downgraded. The seed's own backup copies \
      (data/telegram_bot.db.backup_* and sessions/*.session.backup) are imported as encrypted \
      archives with reason "Imported", once each, dated when they were made; the files stay.

        $ tgsess migrate --dry-run
        $ tgsess migrate
        $ tgsess keys add-fernet && tgsess migrate --rotate-key

      EXIT STATUS: 0 ok (also when already current) · 1 failed · 75 lock held
      """)

  @OptionGroup var global: GlobalOptions

  @Flag(help: "List the pending steps without changing anything.")
  var dryRun = false

  @Flag(help: "Re-encrypt every secret under the newest Fernet key.")
  var rotateKey = false

  func run() throws {
    let (deployment, logger) = try global.setUp()
    let result = try MigrateJob.run(
      deployment, options: MigrateOptions(isDryRun: dryRun, rotateKey: rotateKey), logger: logger)
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
      if let copy = result.safetyCopy { Output.line("  safety copy: \(copy)") }
    }
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

import ArgumentParser
import Jobs

struct Status: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "status",
    abstract: "Summarise a deployment: schema, users, session files, keys.",
    discussion: """
      Read-only. Session files are opened through SQLite in read-only mode and never changed.

        $ tgsess status --root /srv/bot
        $ tgsess status --json | jq .sessions

      EXIT STATUS: 0 ok · 1 failed
      """)

  @OptionGroup var global: GlobalOptions

  func run() throws {
    let (deployment, logger) = try global.setUp()
    let result = try StatusJob.run(deployment, logger: logger)
    if global.json { return try Output.json(result) }
    let db = result.database
    Output.line("deployment \(result.root)")
    Output.line(
      "database   \(db.path): schema \(db.schemaVersion)\(db.isCurrent ? " (current)" : " (run tgsess migrate)"), \(db.users) users, \(db.sessionBackupRows) session_backups rows"
    )
    if !db.usersByStatus.isEmpty {
      Output.line(
        "           users: "
          + db.usersByStatus.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", "))
    }
    if !db.otherTables.isEmpty { Output.line("           bot tables: \(db.otherTables.joined(separator: ", "))") }
    let sessions = result.sessions
    let valid = sessions.validByFormat.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(
      separator: ", ")
    Output.line("sessions   \(sessions.directory): \(sessions.files) files\(valid.isEmpty ? "" : " (\(valid))")")
    for (reason, count) in sessions.invalid.sorted(by: { $0.key < $1.key }) {
      Output.line("           \(count) invalid: \(reason)")
    }
    if !sessions.withoutRow.isEmpty {
      Output.line("           files without a database row: users \(list(sessions.withoutRow))")
    }
    if !sessions.rowsWithoutFile.isEmpty {
      Output.line("           rows without a session file: users \(list(sessions.rowsWithoutFile))")
    }
    let keys = result.keys
    let recipients =
      keys.ageRecipientsProblem.map { "recipients unreadable: \($0)" } ?? "\(keys.ageRecipients) recipient(s)"
    let fernet = keys.fernetProblem ?? "\(keys.fernetKeys) Fernet key(s) from \(keys.fernetSource)"
    Output.line(
      "keys       age identity \(keys.ageIdentityPresent ? "present" : "not on this host"), \(recipients), \(fernet)")
  }

  private func list(_ ids: [Int64]) -> String {
    let shown = ids.prefix(10).map(String.init).joined(separator: ", ")
    return ids.count > 10 ? "\(shown) and \(ids.count - 10) more" : shown
  }
}

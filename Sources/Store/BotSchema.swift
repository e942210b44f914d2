import Foundation
import GRDB

/// The bot database's schema: the seed's two tables, then what tgsess adds. Migrations are
/// append-only and are never edited once shipped; each runs in its own transaction.
public enum BotSchema {
  /// The identifiers of every migration this version of tgsess knows, in order.
  public static var migrationIdentifiers: [String] { migrator.migrations }

  /// The current schema version (the number of known migrations).
  public static var currentVersion: Int { migrationIdentifiers.count }

  static let migrator: DatabaseMigrator = {
    var migrator = DatabaseMigrator()
    // 1: the seed's tables, exactly as the seed's bot creates them. A legacy database already
    // has them, so this is a no-op there and its rows stay untouched.
    migrator.registerMigration("v1-seed-tables") { db in
      try db.execute(
        sql: """
          CREATE TABLE IF NOT EXISTS user_sessions (
              user_id INTEGER PRIMARY KEY,
              session_string TEXT,
              api_id INTEGER,
              api_hash TEXT,
              created_at TIMESTAMP,
              updated_at TIMESTAMP
          );
          CREATE TABLE IF NOT EXISTS session_backups (
              id INTEGER PRIMARY KEY,
              user_id INTEGER,
              session_string TEXT,
              api_id INTEGER,
              api_hash TEXT,
              backup_reason TEXT,
              created_at TIMESTAMP
          );
          """)
    }
    // 2: per-user state for check and the bot's /status, the history index, and a state table.
    migrator.registerMigration("v2-tgsess-state") { db in
      try addColumns(
        db, table: "user_sessions",
        [
          ("status", "TEXT NOT NULL DEFAULT 'active'"),
          ("health", "TEXT NOT NULL DEFAULT 'unknown'"),
          ("last_checked_at", "TIMESTAMP"),
          ("last_error", "TEXT"),
          ("auth_key_fingerprint", "TEXT"),
          ("session_format", "TEXT"),
        ])
      try addColumns(
        db, table: "session_backups",
        [
          ("archive_id", "TEXT"),
          ("auth_key_fingerprint", "TEXT"),
        ])
      try db.execute(
        sql: """
          CREATE INDEX IF NOT EXISTS session_backups_user_created ON session_backups(user_id, created_at);
          CREATE TABLE IF NOT EXISTS tgsess_state (
              key TEXT PRIMARY KEY NOT NULL,
              value TEXT NOT NULL,
              updated_at TIMESTAMP NOT NULL
          );
          """)
    }
    return migrator
  }()

  /// Adds the columns that are missing; a bot that already had one keeps its own.
  private static func addColumns(_ db: Database, table: String, _ columns: [(String, String)]) throws {
    let existing = Set(try db.columns(in: table).map { $0.name.lowercased() })
    for (name, definition) in columns where !existing.contains(name) {
      try db.execute(sql: "ALTER TABLE \(table) ADD COLUMN \(name) \(definition)")
    }
  }

  /// Where a database stands against this version's migrations.
  public struct Status: Sendable, Equatable {
    /// Migrations already applied, in order.
    public var applied: [String]
    /// Migrations still to apply, in order.
    public var pending: [String]
    /// Applied migrations this version of tgsess does not know: a newer tgsess made the database.
    public var unknown: [String]
    /// Whether the file holds no tables at all.
    public var isEmpty: Bool
    /// Whether it has the seed's tables but no tgsess bookkeeping (a legacy bot database).
    public var isLegacy: Bool
    /// The schema version recorded in the database (the count of applied migrations).
    public var version: Int { applied.count }
    /// Whether nothing is pending and nothing is unknown.
    public var isCurrent: Bool { pending.isEmpty && unknown.isEmpty }
  }
}

extension BotDatabase {
  /// Reads where the schema stands, without changing anything.
  /// - Throws: `StoreError.database`.
  public func schemaStatus() throws -> BotSchema.Status {
    try read("read schema version") { db in
      let migrator = BotSchema.migrator
      let applied = try migrator.appliedIdentifiers(db)
      let known = migrator.migrations
      let tables = try String.fetchAll(
        db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
      return BotSchema.Status(
        applied: known.filter { applied.contains($0) },
        pending: known.filter { !applied.contains($0) },
        unknown: applied.subtracting(known).sorted(),
        isEmpty: tables.isEmpty,
        isLegacy: tables.contains("user_sessions") && !tables.contains("grdb_migrations"))
    }
  }

  /// Refuses a database made by a newer tgsess, or one whose schema is behind.
  /// - Throws: `StoreError.database` with the next step.
  public func requireCurrentSchema() throws {
    let status = try schemaStatus()
    if !status.unknown.isEmpty {
      throw StoreError.database(
        path: path, reason: "made by a newer tgsess (unknown migrations: \(status.unknown.joined(separator: ", ")))",
        hint: "upgrade tgsess; it never downgrades a database")
    }
    if !status.pending.isEmpty {
      throw StoreError.database(
        path: path, reason: "schema is at version \(status.version), this tgsess needs \(BotSchema.currentVersion)",
        hint: "run tgsess migrate")
    }
  }

  /// Applies the pending migrations, each in its own transaction, and records the version.
  /// - Throws: `StoreError.database`; a database from a newer tgsess is refused untouched.
  public func migrate() throws {
    let status = try schemaStatus()
    if !status.unknown.isEmpty { try requireCurrentSchema() }
    do {
      try BotSchema.migrator.migrate(queue)
      try queue.write { db in
        try db.execute(
          sql: """
            INSERT INTO tgsess_state(key, value, updated_at) VALUES ('schema_version', ?, ?)
            ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at
            """, arguments: [String(BotSchema.currentVersion), Timestamp.now()])
      }
    } catch {
      throw BotDatabase.describe(error, path: path, doing: "migrate", systemErrno: systemErrno())
    }
  }
}

/// Timestamps as the seed's Python bot stores them: `YYYY-MM-DD HH:MM:SS` in UTC.
public enum Timestamp {
  private static let formatter: DateFormatter = {
    let formatter = DateFormatter()
    formatter.locale = Locale(identifier: "en_US_POSIX")
    formatter.timeZone = TimeZone(identifier: "UTC")
    formatter.dateFormat = "yyyy-MM-dd HH:mm:ss"
    return formatter
  }()
  private static let lock = NSLock()

  /// `date` in the database's text form.
  public static func string(_ date: Date) -> String {
    lock.withLock { formatter.string(from: date) }
  }

  /// Now, in the database's text form.
  public static func now() -> String { string(Date()) }

  /// `20261125T041500Z`: sortable and safe in file names; seconds rounded down.
  public static func compact(_ date: Date) -> String {
    // By arithmetic: every archive id listed is parsed and formatted (CivilTime).
    if let text = CivilTime.format(CivilTime.fields(date), pattern: CivilTime.compactPattern) { return text }
    return lock.withLock {
      let saved = formatter.dateFormat
      formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
      defer { formatter.dateFormat = saved }
      return formatter.string(from: date)
    }
  }

  /// Parses `compact(_:)`'s form: exactly `YYYYMMDDTHHMMSSZ`, a real UTC time.
  public static func parseCompact(_ text: String) -> Date? {
    CivilTime.parse(text, pattern: CivilTime.compactPattern)
  }

  /// Parses the database's text form (also accepting ISO 8601 with `T` and fractions).
  public static func parse(_ text: String) -> Date? {
    let trimmed = String(text.replacingOccurrences(of: "T", with: " ").prefix(19))
    return lock.withLock { formatter.date(from: trimmed) }
  }
}

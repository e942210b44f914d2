import Foundation
import Store

/// A real temporary deployment: `data/telegram_bot.db`, `sessions/`, `backups/`, `keys/`.
/// Removed at the end unless `TGSESS_KEEP_TEMP=1`.
public final class TestDeployment: @unchecked Sendable {
  public let directory: TemporaryDirectory
  public var root: String { directory.path }
  public var deployment: Deployment

  public init(config: Config = Config()) throws {
    directory = try TemporaryDirectory("tgsess-deploy")
    deployment = Deployment(root: directory.path, config: config)
  }

  public var databasePath: String { deployment.databasePath }

  /// Creates the seed's legacy bot database the way the seed's Python bot does: exactly the
  /// seed's two tables, plaintext secrets, and an extra table of the bot's own
  /// (`copy_configs`) that tgsess must never touch.
  /// - Parameter users: (user id, session string, api id, api hash) rows.
  public func makeLegacyDatabase(users: [(Int64, String, Int, String)], backupsPerUser: Int = 2) throws {
    try FileManager.default.createDirectory(
      atPath: root + "/data", withIntermediateDirectories: true)
    let rows = users.map { "[\($0.0), \"\($0.1)\", \($0.2), \"\($0.3)\"]" }.joined(separator: ",")
    try runPython(
      """
      import sqlite3, sys, json
      conn = sqlite3.connect(sys.argv[1])
      conn.executescript('''
      CREATE TABLE user_sessions (
          user_id INTEGER PRIMARY KEY,
          session_string TEXT,
          api_id INTEGER,
          api_hash TEXT,
          created_at TIMESTAMP,
          updated_at TIMESTAMP
      );
      CREATE TABLE session_backups (
          id INTEGER PRIMARY KEY,
          user_id INTEGER,
          session_string TEXT,
          api_id INTEGER,
          api_hash TEXT,
          backup_reason TEXT,
          created_at TIMESTAMP
      );
      CREATE TABLE copy_configs (
          id INTEGER PRIMARY KEY AUTOINCREMENT,
          user_id INTEGER NOT NULL,
          source_chat INTEGER,
          target_chat INTEGER,
          filters TEXT,
          enabled INTEGER DEFAULT 1
      );
      ''')
      rows = json.loads(sys.argv[2])
      for uid, s, api_id, api_hash in rows:
          conn.execute("INSERT INTO user_sessions VALUES (?,?,?,?,datetime('now','-30 days'),datetime('now','-1 days'))",
                       (uid, s, api_id, api_hash))
          for i in range(int(sys.argv[3])):
              conn.execute("INSERT INTO session_backups(user_id,session_string,api_id,api_hash,backup_reason,created_at) "
                           "VALUES (?,?,?,?,?,datetime('now', ?))", (uid, s, api_id, api_hash,
                           ['Before login','Manual','Before 2FA'][i % 3], '-%d days' % (i + 2)))
          conn.execute("INSERT INTO copy_configs(user_id,source_chat,target_chat,filters) VALUES (?,?,?,?)",
                       (uid, -1001234567890, -1009876543210, '{"media": true, "text": "caf\\u00e9"}'))
      conn.commit()
      conn.close()
      """, arguments: [databasePath, "[\(rows)]", String(backupsPerUser)])
  }

  /// `sqlite3 DB .dump TABLE`, the byte-level witness that a table is unchanged.
  public func dump(table: String) throws -> String {
    let result = try runProcess("/usr/bin/sqlite3", [databasePath, ".dump \(table)"])
    guard result.status == 0 else { throw TestHelperError("sqlite3 .dump failed: \(result.stderr)") }
    return result.stdout
  }

  /// One value from the database through the sqlite3 CLI.
  public func query(_ sql: String) throws -> String {
    let result = try runProcess("/usr/bin/sqlite3", [databasePath, sql])
    guard result.status == 0 else { throw TestHelperError("sqlite3 failed: \(result.stderr)") }
    return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
  }
}

/// Random bytes for test fixtures (not for keys that protect anything).
public func randomBytes(_ count: Int) -> [UInt8] {
  (0..<count).map { _ in UInt8.random(in: 0...255) }
}

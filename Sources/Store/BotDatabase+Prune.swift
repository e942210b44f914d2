import Foundation
import GRDB

extension BotDatabase {
  /// Keeps the newest `keep` `session_backups` rows of each user (by created_at, then id) and
  /// deletes the rest, in one transaction. The newest row of each user is always kept, like the
  /// retention guard that keeps a user's last archive: `keep` 0 never empties a user's history.
  /// - Returns: the number of rows deleted (or, with `dryRun`, that would be).
  /// - Throws: `StoreError.database`.
  public func trimSessionBackups(keepPerUser requested: Int, dryRun: Bool) throws -> Int {
    let keep = max(requested, 1)
    let select = """
      SELECT id FROM (
        SELECT id, ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY created_at DESC, id DESC) AS rank
        FROM session_backups
      ) WHERE rank > ?
      """
    if dryRun {
      return try read("count session_backups to trim") { db in
        guard try db.tableExists("session_backups") else { return 0 }
        return try Int.fetchOne(db, sql: "SELECT count(*) FROM (\(select))", arguments: [keep]) ?? 0
      }
    }
    return try write("trim session_backups") { db in
      guard try db.tableExists("session_backups") else { return 0 }
      try db.execute(sql: "DELETE FROM session_backups WHERE id IN (\(select))", arguments: [keep])
      return db.changesCount
    }
  }
}

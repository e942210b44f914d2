import Logging
import Store

/// What runs that died (killed, or cut off by a power loss) left in the backups directory.
enum Leftovers {
  /// Removes what dead runs left in the backups directory: archive temporaries (a record whose
  /// archive was published is rolled forward instead), records without an archive, and staging
  /// directories. Backup and prune do this themselves; commands that write archives only on the
  /// side (recover's post-recovery backups, migrate's imports) call this under the deployment
  /// lock, so that running them again leaves nothing behind.
  /// - Parameter userID: a run for one user writes archives only in the full directory and that
  ///   user's: only those are cleaned (listing all 10,000 user directories cost a single-user
  ///   restore 0.4 s); the next backup or prune cleans the rest.
  /// - Throws: `StoreError.io` when an archive directory cannot be read.
  static func remove(_ deployment: Deployment, userID: Int64? = nil, logger: Logger) throws {
    let repository = ArchiveRepository(backupsDirectory: deployment.backupsDirectory)
    let removed =
      try repository.removeLeftovers(userID: userID) + StagingArea.removeStale(in: deployment.backupsDirectory)
    for path in removed {
      logger.info("removed what an interrupted run left", metadata: ["file.path": "\(path)"])
    }
  }
}

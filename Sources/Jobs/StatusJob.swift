import Foundation
import Logging
import Store

/// A summary of a deployment, for people and for `--json`. Read-only: session files are
/// inspected through SQLite in read-only mode.
public struct StatusResult: Codable, Sendable, Equatable {
  public struct Database: Codable, Sendable, Equatable {
    public var path: String
    public var schemaVersion: Int
    public var isCurrent: Bool
    public var users: Int
    public var usersByStatus: [String: Int]
    public var sessionBackupRows: Int
    public var otherTables: [String]
  }

  public struct Sessions: Codable, Sendable, Equatable {
    public var directory: String
    public var files: Int
    public var validByFormat: [String: Int]
    /// Invalid files by reason (the reason text, never a secret).
    public var invalid: [String: Int]
    public var withoutRow: [Int64]
    public var rowsWithoutFile: [Int64]
  }

  public struct Keys: Codable, Sendable, Equatable {
    public var ageIdentityPresent: Bool
    public var ageRecipients: Int
    /// Why the age recipients cannot be read; nil when they load.
    public var ageRecipientsProblem: String?
    public var fernetKeys: Int
    public var fernetSource: String
    /// Why there is no usable Fernet key (the key file is missing, not private, malformed); nil
    /// when the keys load.
    public var fernetProblem: String?
  }

  public var root: String
  public var database: Database
  public var sessions: Sessions
  public var keys: Keys
}

/// Summarises a deployment.
public enum StatusJob {
  /// Reads the database, every session file and the key files, and counts what it finds.
  /// - Throws: `JobError` when the database cannot be read.
  public static func run(_ deployment: Deployment, logger: Logger) throws -> StatusResult {
    do {
      let database = try BotDatabase(
        path: deployment.databasePath, mode: .readOnly, busyTimeoutMS: deployment.busyTimeoutMS)
      defer { database.close() }
      let schema = try database.schemaStatus()
      let rows = try database.userSummaries()
      let tables = try database.tableNames()
      let botTables = tables.filter {
        !["user_sessions", "session_backups", "grdb_migrations", "tgsess_state"].contains($0)
      }
      var statusCounts: [String: Int] = [:]
      for row in rows { statusCounts[row.status.rawValue, default: 0] += 1 }

      let fileUsers = try deployment.sessionFileUserIDs()
      var valid: [String: Int] = [:]
      var invalid: [String: Int] = [:]
      for userID in fileUsers {
        do {
          let info = try SessionFileInspector.inspect(path: deployment.sessionPath(userID: userID))
          valid[info.format.shortName, default: 0] += 1
        } catch let StoreError.session(_, problem) {
          invalid[problem.description, default: 0] += 1
          logger.debug("invalid session file", metadata: ["user.id": "\(userID)", "reason": "\(problem)"])
        }
      }
      let rowUsers = Set(rows.map(\.userID))
      let fileSet = Set(fileUsers)

      // A key that cannot be read is said so, never counted as zero keys.
      let source = FernetKeySource.resolve(deployment)
      var fernetKeys = 0
      var fernetProblem: String?
      do {
        if let fernet = try KeyStore.loadFernet(deployment) {
          fernetKeys = fernet.keys.count
        } else {
          fernetProblem = "no Fernet key: \(source.missingReason); \(source.missingRemedy)"
        }
      } catch {
        fernetProblem = (error as? StoreError)?.errorDescription ?? "\(error)"
      }
      var recipients = 0
      var recipientsProblem: String?
      do { recipients = try KeyStore.loadRecipients(deployment).count } catch {
        recipientsProblem = (error as? StoreError)?.errorDescription ?? "\(error)"
      }
      return StatusResult(
        root: deployment.root,
        database: .init(
          path: deployment.databasePath, schemaVersion: schema.version, isCurrent: schema.isCurrent, users: rows.count,
          usersByStatus: statusCounts, sessionBackupRows: try database.sessionBackupCount(), otherTables: botTables),
        sessions: .init(
          directory: deployment.sessionsDirectory, files: fileUsers.count, validByFormat: valid, invalid: invalid,
          withoutRow: fileSet.subtracting(rowUsers).sorted(), rowsWithoutFile: rowUsers.subtracting(fileSet).sorted()),
        keys: .init(
          ageIdentityPresent: FileSystem.exists(deployment.ageIdentityPath), ageRecipients: recipients,
          ageRecipientsProblem: recipientsProblem, fernetKeys: fernetKeys, fernetSource: source.description,
          fernetProblem: fernetProblem))
    } catch let error as StoreError {
      throw JobError.store(context: "status", underlying: error)
    }
  }
}

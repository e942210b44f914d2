import Foundation
import Store

/// One row of `tgsess list`.
public struct ListedArchive: Codable, Sendable, Equatable {
  public var id: String
  public var createdAt: Date
  public var kind: Manifest.Kind
  public var userID: Int64?
  public var reason: String
  public var byteCount: Int64
  public var entryCount: Int
  public var verification: ArchiveRecord.Verification
  public var path: String
  /// The age recipients (`age1…`) it is encrypted to; nil when its record does not say.
  public var recipients: [String]?
  /// The fingerprints of the Fernet keys its secrets are under; nil when its record does not say.
  public var fernetKeys: [String]?
}

/// Lists archives from the files alone.
public enum ListJob {
  /// The archives, newest first, optionally of one user (their per-user archives and the full
  /// snapshots that hold them) or one kind. With `remote`, lists what that remote holds, from the
  /// remote alone; `path` is then the object's path on the remote.
  /// - Throws: `JobError.store`.
  public static func run(_ deployment: Deployment, kind: String?, userID: Int64?, remote: String? = nil) throws
    -> [ListedArchive]
  {
    do {
      let catalog = try ArchiveCatalog.open(deployment, origin: remote.map { .remote($0) } ?? .local)
      defer { catalog.close() }
      return try catalog.repository.list(kind: kind.flatMap(Manifest.Kind.init(rawValue:)), userID: userID).map {
        record in
        ListedArchive(
          id: record.id, createdAt: record.createdAt, kind: record.kind, userID: record.userID,
          reason: record.reason, byteCount: record.byteCount, entryCount: record.entryCount,
          verification: record.verification, path: catalog.location(of: record), recipients: record.recipients,
          fernetKeys: record.fernetKeys)
      }
    } catch let error as StoreError {
      throw JobError.store(context: "list", underlying: error)
    }
  }
}

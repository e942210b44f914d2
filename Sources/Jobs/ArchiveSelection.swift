import Foundation
import Store

/// Which archive a restore or a drill means: an id (or unique prefix), or "latest", at or before
/// a time, and for one user.
public struct ArchiveSelector: Sendable, Equatable {
  /// An archive id or unique prefix, or "latest".
  public var archive: String
  /// Only archives made at or before this time.
  public var at: Date?
  /// Only archives that hold this user.
  public var userID: Int64?

  public init(_ archive: String = "latest", at: Date? = nil, userID: Int64? = nil) {
    self.archive = archive
    self.at = at
    self.userID = userID
  }

  public var isLatest: Bool { archive == "latest" }
}

/// The one rule for "latest", used by restore, drill and anything else that picks an archive
/// for the operator.
public enum ArchiveSelection {
  /// The archive "latest" means among `records` (in any order): the newest regular backup.
  /// - Imported archives (a legacy `.session.backup` or database copy kept as it was found) hold
  ///   nothing a restore writes: never.
  /// - "Before restore" archives (a restore's undo) and "Before migrate" safety copies only when
  ///   no regular archive fits, so a second `restore latest` never undoes the first, nor a migrate.
  /// - With `userID`: only archives that hold the user, their per-user archives before the
  ///   full snapshots that list them; without: full snapshots only.
  /// - With `at`: only archives made at or before it.
  /// - Returns: nil when nothing fits.
  public static func latest(in records: [ArchiveRecord], at: Date? = nil, userID: Int64? = nil) -> ArchiveRecord? {
    func holds(_ record: ArchiveRecord) -> Bool {
      guard let userID else { return record.kind == .full }
      return record.kind == .user ? record.userID == userID : record.userIDs.contains(userID)
    }
    // Lower is better: regular per-user, regular full, undo per-user, undo full.
    func tier(_ record: ArchiveRecord) -> Int {
      ([BackupReason.beforeRestore, BackupReason.beforeMigrate].contains(record.reason) ? 2 : 0)
        + (userID != nil && record.kind == .full ? 1 : 0)
    }
    let candidates = records.filter { record in
      record.reason != BackupReason.imported && holds(record) && (at.map { record.createdAt <= $0 } ?? true)
    }
    return candidates.min { a, b in
      (tier(a), b.createdAt, b.id) < (tier(b), a.createdAt, a.id)
    }
  }

  /// The archive "latest" means among `records` (as `latest(in:at:userID:)`), considering only
  /// the ones `accept` takes, each judged by what `accept` returns (the record as its signature
  /// vouches for it). Candidates are tried newest first (by the time in their names, which a
  /// signature vouches for), and one that cannot beat the best so far is not authenticated at
  /// all: usually only the newest candidate's signature is checked.
  /// - Parameter accept: nil when the archive is not accepted.
  public static func latest(
    in records: [ArchiveRecord], at: Date? = nil, userID: Int64? = nil, accept: (ArchiveRecord) -> ArchiveRecord?
  ) -> ArchiveRecord? {
    func holds(_ record: ArchiveRecord) -> Bool {
      guard let userID else { return record.kind == .full }
      return record.kind == .user ? record.userID == userID : record.userIDs.contains(userID)
    }
    // The part of the tier the name and place give; the reason (from the signature) adds to it.
    func placeTier(_ record: ArchiveRecord) -> Int { userID != nil && record.kind == .full ? 1 : 0 }
    let candidates = records.filter { record in holds(record) && (at.map { record.createdAt <= $0 } ?? true) }
      .sorted { ($0.createdAt, $0.id) > ($1.createdAt, $1.id) }
    var best: (tier: Int, record: ArchiveRecord)?
    for candidate in candidates {
      // Older than the best so far, so it wins only with a lower tier, which it cannot have.
      if let best, best.tier <= placeTier(candidate) { continue }
      guard let vouched = accept(candidate), vouched.reason != BackupReason.imported else { continue }
      let isUndo = [BackupReason.beforeRestore, BackupReason.beforeMigrate].contains(vouched.reason)
      let tier = placeTier(vouched) + (isUndo ? 2 : 0)
      if best == nil || tier < best!.tier { best = (tier, vouched) }
    }
    return best?.record
  }

  /// The archive `selector` means in `repository`: by id (authenticated when it is verified),
  /// or "latest" among the archives `authenticator` accepts, each judged by what its signature
  /// vouches for, never by its record (`latest(in:at:userID:accept:)`; a user's full snapshots
  /// are read only when no regular per-user archive of theirs fits: at fleet scale each full
  /// record lists every user).
  /// - Returns: nil when nothing fits "latest" (the caller words what is missing).
  /// - Throws: `StoreError.missing` or `.invalid` when an id matches no archive or several.
  public static func choose(
    _ selector: ArchiveSelector, in repository: ArchiveRepository, authenticator: any ArchiveAuthenticator
  ) throws -> ArchiveRecord? {
    guard selector.isLatest else { return try repository.find(id: selector.archive) }
    // Each archive's signature is checked at most once.
    var seen: [String: ArchiveRecord?] = [:]
    func accept(_ record: ArchiveRecord) -> ArchiveRecord? {
      let path = repository.path(of: record)
      if let known = seen[path] { return known }
      var vouched: ArchiveRecord?
      switch try? authenticator.authenticate(archivePath: path) {
      case .signed(let signed)?: vouched = record.vouched(by: signed.statement)
      case .unsigned?: vouched = record
      case nil: vouched = nil
      }
      seen[path] = vouched
      return vouched
    }
    guard let userID = selector.userID else {
      return latest(in: try repository.list(kind: .full), at: selector.at, accept: accept)
    }
    let own = try repository.list(kind: .user, userID: userID)
    if let pick = latest(in: own, at: selector.at, userID: userID, accept: accept),
      pick.reason != BackupReason.beforeRestore
    {
      return pick
    }
    let full = try repository.list(kind: .full, userID: userID)
    return latest(in: own + full, at: selector.at, userID: userID, accept: accept)
  }

  /// The newest regular per-user archive of every user that has one, in user order (a drill's
  /// per-user sample).
  public static func latestPerUser(in records: [ArchiveRecord]) -> [ArchiveRecord] {
    let byUser = Dictionary(grouping: records.filter { $0.kind == .user && $0.userID != nil }, by: { $0.userID! })
    return byUser.keys.sorted().compactMap { latest(in: byUser[$0]!, userID: $0) }
  }
}

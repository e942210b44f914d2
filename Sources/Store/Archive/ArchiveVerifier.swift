import Foundation

/// What an archive says it is from outside its content: its id, kind, user and time (from its
/// record or its name) and whether it is encrypted. A reader checks the archive's manifest
/// against its claim; a signature (issue #15) will cover the claim with the manifest's bytes, so
/// that an archive cannot be renamed into another user's directory or replayed as newer.
public struct ArchiveClaim: Sendable, Equatable {
  public var id: String
  public var kind: Manifest.Kind
  public var userID: Int64?
  public var createdAt: Date
  public var isEncrypted: Bool

  public init(id: String, kind: Manifest.Kind, userID: Int64?, createdAt: Date, isEncrypted: Bool) {
    self.id = id
    self.kind = kind
    self.userID = kind == .user ? userID : nil
    self.createdAt = createdAt
    self.isEncrypted = isEncrypted
  }

  /// The claim of a listed archive.
  public init(record: ArchiveRecord) {
    self.init(
      id: record.id, kind: record.kind, userID: record.userID, createdAt: record.createdAt,
      isEncrypted: record.isEncrypted)
  }

  /// The claim an archive's file name makes (`<id>.tar.zst.age`); nil when it is not a tgsess
  /// archive's name.
  public init?(fileName: String) {
    guard let (id, isEncrypted) = ArchiveName.parse(fileName: fileName), let what = ArchiveName.describe(id: id)
    else { return nil }
    self.init(id: id, kind: what.kind, userID: what.userID, createdAt: what.createdAt, isEncrypted: isEncrypted)
  }

  /// "user 42's per-user archive" or "a full snapshot", for messages.
  var wording: String {
    kind == .full ? "a full snapshot" : "user \(userID.map(String.init) ?? "?")'s per-user archive"
  }
}

/// Decides whether an archive was made by this deployment, from its claim and the exact bytes of
/// its manifest, before anything else in the archive is read or trusted. Issue #15 (signed
/// archives) plugs its signature check in here; `ArchiveVerifier` is the only caller.
public protocol ArchiveAuthenticator: Sendable {
  /// - Throws: `StoreError` naming the archive and why it is not this deployment's.
  func authenticate(_ claim: ArchiveClaim, manifestBytes: Data, archivePath: String) throws
}

/// Archives are not signed yet: every archive that decrypts with the deployment's identity and
/// matches its manifest is accepted (what age alone can prove).
public struct UnsignedArchives: ArchiveAuthenticator {
  public init() {}
  public func authenticate(_ claim: ArchiveClaim, manifestBytes: Data, archivePath: String) throws {}
}

/// An archive every check passed: its manifest is the one to act on, and the entries in scope
/// are extracted (in `directory`) and checked for what they hold.
public struct VerifiedArchive: Sendable, Equatable {
  public let path: String
  public let claim: ArchiveClaim
  public let manifest: Manifest
  /// Where the entries in scope were extracted; nil when nothing was extracted.
  public let directory: String?
  /// The inspected session of every extracted session entry, by entry path.
  public let sessions: [String: SessionFileInfo]
  /// The `user_sessions` row of every extracted rows entry that holds one, by user.
  public let userRows: [Int64: UserSessionsRow]

  /// Where `entry` was extracted.
  public func extractedPath(of entry: Manifest.Entry) -> String? {
    directory.map { $0 + "/" + entry.path }
  }
}

/// The one gate every reader of an archive goes through before trusting anything in it: restore,
/// drill, recover (from backups) and the writer's read-back. In order it (1) authenticates the
/// manifest against the archive's claim (`ArchiveAuthenticator`), and checks that the manifest
/// describes what the claim says; (2) verifies the whole stream (`ArchiveReader`: every entry's
/// path, type, size and SHA-256 against the manifest, nothing hostile), extracting the entries in
/// scope; (3) checks what the extracted entries hold: every SQLite file passes integrity_check,
/// every session file is a valid session with the auth key its manifest names, every rows entry
/// is its user's.
public struct ArchiveVerifier: Sendable {
  /// Which entries are extracted and checked for content (every entry's hash is checked anyway).
  public enum Scope: Sendable, Equatable {
    /// Every entry (a restore, a drill).
    case everyEntry
    /// Only the entries of this user (recover's repair from a full snapshot of many users).
    case user(Int64)

    func includes(_ entry: Manifest.Entry) -> Bool {
      switch self {
      case .everyEntry: return true
      case .user(let userID): return entry.userID == userID
      }
    }
  }

  public let identities: [AgeIdentity]
  public let authenticator: any ArchiveAuthenticator
  public var limits = ArchiveReader.Limits()

  public init(identities: [AgeIdentity], authenticator: any ArchiveAuthenticator) {
    self.identities = identities
    self.authenticator = authenticator
  }

  /// The verifier of `deployment`'s archives, decrypting with `identities`: the one place a
  /// deployment's authenticator is chosen.
  public static func forDeployment(_ deployment: Deployment, identities: [AgeIdentity]) -> ArchiveVerifier {
    ArchiveVerifier(identities: identities, authenticator: UnsignedArchives())
  }

  /// Whether this verifier can read an archive's content back (it holds an identity, or the
  /// archive is not encrypted).
  public func canDecrypt(isEncrypted: Bool) -> Bool { !isEncrypted || !identities.isEmpty }

  /// Verifies the archive `record` of `repository` (see `verify(path:claim:into:scope:)`).
  /// - Throws: `StoreError` naming the archive and what failed.
  public func verify(_ record: ArchiveRecord, in repository: ArchiveRepository, into directory: String?, scope: Scope)
    throws -> VerifiedArchive
  {
    try verify(path: repository.path(of: record), claim: ArchiveClaim(record: record), into: directory, scope: scope)
  }

  /// Verifies the archive at `path` in full, extracting the entries in `scope` into `directory`
  /// (an empty staging directory on the filesystem they will go to; nil extracts nothing and so
  /// checks no content).
  /// - Returns: the verified archive; nothing in it may be used before this returns.
  /// - Throws: `StoreError` naming the archive and what failed; the first content problem in
  ///   manifest order is the one reported.
  public func verify(path: String, claim: ArchiveClaim, into directory: String?, scope: Scope) throws
    -> VerifiedArchive
  {
    let manifest = try ArchiveReader.read(
      path: path, identities: identities, extractTo: directory, limits: limits,
      extracting: { scope.includes($0) },
      checkManifest: { bytes, manifest in
        try self.check(manifest, bytes: bytes, against: claim, archivePath: path)
      })
    guard let directory else {
      return VerifiedArchive(
        path: path, claim: claim, manifest: manifest, directory: nil, sessions: [:], userRows: [:])
    }
    // Content checks open each file on its own: on a few threads, reported in manifest order.
    let checked = manifest.entries.filter {
      scope.includes($0)
        && ($0.isSQLite || $0.role == .session || $0.role == .userRows || $0.role == .sessionSidecar)
    }
    let outcomes = try Parallel.map(count: checked.count, workers: Parallel.defaultWorkers) { index in
      Self.checkContent(of: checked[index], at: directory + "/" + checked[index].path, archivePath: path)
    }
    var sessions: [String: SessionFileInfo] = [:]
    var userRows: [Int64: UserSessionsRow] = [:]
    for (entry, outcome) in zip(checked, outcomes) {
      switch outcome {
      case .failure(let error): throw error
      case .success(.session(let info)): sessions[entry.path] = info
      case .success(.rows(let row)): if let row { userRows[row.userID] = row }
      case .success(.sound): break
      }
    }
    return VerifiedArchive(
      path: path, claim: claim, manifest: manifest, directory: directory, sessions: sessions, userRows: userRows)
  }

  /// A writer's read-back of the archive it just wrote at `path` (a temporary name): with an
  /// identity (or no encryption), the archive is decrypted and every entry checked against the
  /// manifest written, whose bytes must come back exactly; without one, the file's SHA-256 read
  /// back from disk must be the one written.
  /// - Parameters:
  ///   - finalPath: the name the archive will be published under, for messages.
  ///   - sha256: the SHA-256 of the bytes written.
  /// - Returns: what was proven.
  /// - Throws: `StoreError` naming the archive.
  public func verifyWritten(
    path: String, finalPath: String, claim: ArchiveClaim, manifest: Manifest, manifestBytes: Data, sha256: String
  ) throws -> ArchiveRecord.Verification {
    guard canDecrypt(isEncrypted: claim.isEncrypted) else {
      guard try FileSystem.sha256(ofFile: path) == sha256 else {
        throw StoreError.invalid(
          path: finalPath, reason: "the file read back differs from what was written (disk error?)",
          hint: "check the disk, then run the backup again")
      }
      return .ciphertext
    }
    let readBack = try ArchiveReader.read(
      path: path, identities: identities, isEncrypted: claim.isEncrypted, expected: (manifest, manifestBytes),
      checkManifest: { bytes, manifest in
        try self.check(manifest, bytes: bytes, against: claim, archivePath: finalPath)
      })
    guard readBack == manifest else {
      throw StoreError.invalid(
        path: finalPath, reason: "the manifest read back differs from the one written", hint: "run the backup again")
    }
    return .full
  }

  /// Step 1: the archive is this deployment's (the authenticator), and its manifest describes
  /// what the archive claims to be (a per-user archive of another user, renamed into this user's
  /// directory, is refused).
  func check(_ manifest: Manifest, bytes: Data, against claim: ArchiveClaim, archivePath: String) throws {
    try authenticator.authenticate(claim, manifestBytes: bytes, archivePath: archivePath)
    let described = ArchiveClaim(
      id: claim.id, kind: manifest.kind, userID: manifest.userID, createdAt: claim.createdAt,
      isEncrypted: claim.isEncrypted)
    guard described.kind == claim.kind, described.userID == claim.userID else {
      throw StoreError.invalid(
        path: archivePath,
        reason: "its manifest describes \(described.wording), but the archive is named and stored as \(claim.wording)",
        hint: "refusing this archive; use another backup")
    }
  }

  /// What the content check found in one entry.
  enum Content: Sendable {
    case sound
    case session(SessionFileInfo)
    case rows(UserSessionsRow?)
  }

  /// Step 3 for one extracted entry: integrity_check for an SQLite file; for a session file that
  /// it is a valid session holding the auth key its manifest names; for a rows entry that it is
  /// its user's. Safe to call from several threads (each call opens its own connections).
  static func checkContent(of entry: Manifest.Entry, at path: String, archivePath: String)
    -> Result<Content, StoreError>
  {
    func damaged(_ problems: [String]) -> StoreError {
      // integrity_check reports one problem per line, sometimes all in one row: keep the first two lines.
      let lines = problems.flatMap { $0.split(whereSeparator: \.isNewline) }.prefix(2)
      return StoreError.invalid(
        path: archivePath, reason: "\(entry.path) fails integrity_check (\(lines.joined(separator: "; ")))",
        hint: "use another backup")
    }
    if entry.role == .userRows {
      guard let userID = entry.userID else { return .success(.sound) }
      do {
        return .success(
          .rows(
            try UserSessionsRow.parse(
              rowsEntry: try FileSystem.read(path), userID: userID, entry: entry.path, archivePath: archivePath)))
      } catch let error as StoreError {
        return .failure(error)
      } catch {
        return .failure(.invalid(path: archivePath, reason: "\(entry.path): \(error)", hint: "use another backup"))
      }
    }
    if entry.role == .sessionSidecar {
      // The archive's own check: its bytes matched the manifest; here, that they are a sidecar.
      do {
        _ = try SessionSidecar.parse(try FileSystem.read(path), path: entry.path)
        return .success(.sound)
      } catch {
        return .failure(
          .invalid(
            path: archivePath, reason: "\(entry.path) is not a valid session sidecar (not a JSON object)",
            hint: "use another backup"))
      }
    }
    if entry.isSQLite, entry.role != .session {
      let problems = integrityProblems(path)
      return problems.isEmpty ? .success(.sound) : .failure(damaged(problems))
    }
    guard entry.role == .session else { return .success(.sound) }
    // A session file: integrity_check and the inspection in one connection.
    let info: SessionFileInfo
    do {
      var problems: [String] = []
      guard
        let inspected = try SessionFileInspector.inspect(
          path: path, pageCheck: entry.isSQLite ? .integrity : .quick, problems: &problems)
      else { return .failure(damaged(problems)) }
      info = inspected
    } catch {
      // The inspector's structural checks (header, declared size) run before integrity_check;
      // when integrity_check has something to say about the file, that is the reason given.
      if entry.isSQLite {
        let problems = integrityProblems(path)
        if !problems.isEmpty { return .failure(damaged(problems)) }
      }
      let reason: String
      if case StoreError.session(_, let problem) = error {
        reason = problem.description
      } else {
        reason = (error as? StoreError)?.errorDescription ?? "unreadable"
      }
      return .failure(
        .invalid(
          path: archivePath, reason: "\(entry.path) is not a valid session (\(reason))", hint: "use another backup"))
    }
    if let fingerprint = entry.authKeyFingerprint, fingerprint != info.identity.authKey.fingerprint {
      return .failure(
        .invalid(
          path: archivePath, reason: "\(entry.path) does not hold the auth key its manifest names",
          hint: "use another backup"))
    }
    return .success(.session(info))
  }

  /// What `integrity_check` finds in the SQLite file at `path`. SQLite may give up on a damaged
  /// file instead of listing problems; then its error is the problem (the caller reports it
  /// against the archive, not the staging copy).
  static func integrityProblems(_ path: String) -> [String] {
    do {
      return try SQLiteConnection(path: path, mode: .readOnly).integrityCheck()
    } catch let error as StoreError {
      if case .database(_, let reason, _) = error { return [reason] }
      return [error.localizedDescription]
    } catch {
      return ["\(error)"]
    }
  }
}

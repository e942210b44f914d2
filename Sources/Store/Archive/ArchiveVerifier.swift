import Foundation

/// What an archive is, from outside its content: its id, kind, user and time, and whether it is
/// encrypted. For a signed archive it comes from the verified signature; for an unsigned one
/// (accepted only with `--allow-unsigned`) from the file's name and place; never from its
/// record. A reader checks the archive's manifest against it.
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

  /// The claim a signed statement makes.
  public init(statement: SignedStatement) {
    self.init(
      id: statement.archiveID, kind: statement.kind, userID: statement.userID, createdAt: statement.createdAt,
      isEncrypted: statement.encryption == .age)
  }

  /// "user 42's per-user archive" or "a full snapshot", for messages.
  var wording: String {
    kind == .full ? "a full snapshot" : "user \(userID.map(String.init) ?? "?")'s per-user archive"
  }

  /// The directory name an archive of this claim lives in: `full` or `user_<id>`.
  var directoryName: String { kind == .full ? "full" : "user_\(userID ?? 0)" }
}

/// What a reader may trust about an archive before it opens it.
public enum ArchiveAuthentication: Sendable, Equatable {
  /// Its signature verified under the deployment's key ring and it sits where the statement
  /// says: the statement is what the archive is.
  case signed(SignedArchive)
  /// It has no signature file, and the reader accepts that (an archive made before archives
  /// were signed, used with `--allow-unsigned`; or a writer's read-back of what it just wrote).
  case unsigned

  /// The signed statement, when there is one.
  public var statement: SignedStatement? {
    if case .signed(let signed) = self { return signed.statement }
    return nil
  }
}

/// How an archive stands, from its signature file and its place alone (no decryption, no hash
/// of the archive file): what `list`, `prune` and `check` show and count.
public enum ArchiveAuthenticity: Sendable, Equatable {
  /// Signed by a key of the ring, in the place the statement names.
  case signed(SignedArchive)
  /// No signature file.
  case unsigned
  /// Its signature does not verify, names another place, or its file is damaged; or an unsigned
  /// archive that could never be accepted (misplaced, or unencrypted on a deployment that
  /// encrypts). The error says why.
  case rejected(StoreError)

  public var isSigned: Bool {
    if case .signed = self { return true }
    return false
  }
}

/// Decides, before an archive is opened, whether it is this deployment's: from its signature
/// file and its place. `ArchiveVerifier` calls it first, and then holds the archive's manifest and
/// file to what it returns.
public protocol ArchiveAuthenticator: Sendable {
  /// - Returns: what the reader may trust about the archive at `archivePath`.
  /// - Throws: `StoreError` naming the archive and why it is not this deployment's.
  func authenticate(archivePath: String) throws -> ArchiveAuthentication
}

extension ArchiveAuthenticator {
  /// The archives among `records` this authenticator accepts, in their order, each with what
  /// its signature vouches for (id, kind, user, time, reason, encryption, file size and hash) in
  /// place of what its record says. Reads signature files only, on a few threads.
  public func accepted(_ records: [ArchiveRecord], in repository: ArchiveRepository) -> [ArchiveRecord] {
    let outcomes = Parallel.collect(count: records.count) { index -> ArchiveRecord? in
      switch try? authenticate(archivePath: repository.path(of: records[index])) {
      case .signed(let signed)?: return records[index].vouched(by: signed.statement)
      case .unsigned?: return records[index]
      case nil: return nil
      }
    }
    return outcomes.compactMap { $0 }
  }
}

extension SigningAuthenticator {
  /// Whether the archive at `archivePath` carries a signature by a key of the ring, in the place
  /// it names (reads the signature file only).
  /// - Parameter verdicts: verdicts already reached (`authenticity(archivePath:verdicts:)`).
  public func isSigned(archivePath: String, verdicts: SignatureVerdicts? = nil) -> Bool {
    if case .signed = authenticity(archivePath: archivePath, verdicts: verdicts) { return true }
    return false
  }

  /// How each of `records` stands (`authenticity(archivePath:)`), in their order, on a few
  /// threads.
  public func authenticity(of records: [ArchiveRecord], in repository: ArchiveRepository) -> [ArchiveAuthenticity] {
    Parallel.collect(count: records.count) { index in authenticity(archivePath: repository.path(of: records[index])) }
  }
}

/// Accepts every archive as unsigned: only the writer's read-back of the archive it has just
/// written (and is about to sign) uses it.
public struct UnsignedArchives: ArchiveAuthenticator {
  public init() {}
  public func authenticate(archivePath: String) throws -> ArchiveAuthentication { .unsigned }
}

/// The deployment's authenticator: an archive must carry a signature by a key of `ring`, in
/// the place its statement names; unsigned archives pass only with `allowsUnsigned`, and an
/// unsigned unencrypted one only when the deployment does not encrypt.
public struct SigningAuthenticator: ArchiveAuthenticator {
  public let ring: VerifyingKeyRing
  /// Accept archives without a signature file (`--allow-unsigned`).
  public var allowsUnsigned: Bool
  /// The deployment writes unencrypted archives (`[backup] encrypt = false`): only then is an
  /// unsigned `.tar.zst` anything but unauthenticated.
  public var acceptsUnencrypted: Bool

  public init(ring: VerifyingKeyRing, allowsUnsigned: Bool = false, acceptsUnencrypted: Bool = false) {
    self.ring = ring
    self.allowsUnsigned = allowsUnsigned
    self.acceptsUnencrypted = acceptsUnencrypted
  }

  /// The authenticator of `deployment`, with the ring from `verifyKeyPath` (a new host's
  /// escrowed `signing.pub`), else the deployment's `keys/signing.pub`.
  /// - Throws: `StoreError.missing` when there is no ring (naming `--verify-key`),
  ///   `StoreError.permissions` or `.key` for a ring file that is loose or garbled.
  public static func forDeployment(
    _ deployment: Deployment, verifyKeyPath: String? = nil, allowsUnsigned: Bool = false
  ) throws -> SigningAuthenticator {
    let path = verifyKeyPath ?? deployment.signingPublicKeysPath
    guard FileSystem.exists(path) else {
      throw StoreError.missing(
        path: path,
        hint: verifyKeyPath == nil
          ? "no key ring to verify archives with: pass --verify-key FILE (the deployment's signing.pub from escrow), or run tgsess init on a deployment made before archives were signed"
          : "pass the deployment's signing.pub from escrow as --verify-key FILE")
    }
    return SigningAuthenticator(
      ring: try KeyStore.loadVerifyingKeys(path: path), allowsUnsigned: allowsUnsigned,
      acceptsUnencrypted: deployment.config.backup?.encrypt == false)
  }

  public func authenticate(archivePath: String) throws -> ArchiveAuthentication {
    switch authenticity(archivePath: archivePath) {
    case .signed(let signed): return .signed(signed)
    case .rejected(let error): throw error
    case .unsigned:
      guard allowsUnsigned else {
        throw StoreError.crypto(
          object: archivePath, reason: ArchiveSigning.notSignedReason,
          hint:
            "it has no signature file (made before archives were signed, or planted): if this host made it, vouch for it with tgsess keys sign-existing, or pass --allow-unsigned"
        )
      }
      return .unsigned
    }
  }

  /// How the archive at `archivePath` stands: its signature verified (and its place checked),
  /// or why not. Reads the signature file only. Safe to call from several threads.
  public func authenticity(archivePath: String) -> ArchiveAuthenticity {
    let signature: ArchiveSignature?
    do {
      signature = try ArchiveSigning.readSignature(archivePath: archivePath)
    } catch let error as StoreError {
      let detail: String
      if case .invalid(let path, let reason, _) = error {
        detail = "\(path): \(reason)"
      } else {
        detail = error.errorDescription ?? "\(error)"
      }
      return .rejected(
        .crypto(
          object: archivePath, reason: ArchiveSigning.notSignedReason,
          hint: "its signature file is unusable (\(detail)): do not trust this archive, use another backup"))
    } catch {
      return .rejected(.crypto(object: archivePath, reason: ArchiveSigning.notSignedReason, hint: "\(error)"))
    }
    guard let signature else {
      if let problem = Self.unsignedProblem(archivePath: archivePath, acceptsUnencrypted: acceptsUnencrypted) {
        return .rejected(problem)
      }
      return .unsigned
    }
    do {
      let keyID = try ArchiveSigning.verify(signature, ring: ring, object: archivePath)
      try signature.statement.requirePlacement(archivePath: archivePath)
      return .signed(SignedArchive(statement: signature.statement, keyID: keyID))
    } catch let error as StoreError {
      return .rejected(error)
    } catch {
      return .rejected(.crypto(object: archivePath, reason: ArchiveSigning.notSignedReason, hint: "\(error)"))
    }
  }

  /// Why an archive without a signature could never be accepted, if it could not: a name that
  /// is not a tgsess archive's, a name that disagrees with the directory it is in, or an
  /// unencrypted archive on a deployment that encrypts.
  static func unsignedProblem(archivePath: String, acceptsUnencrypted: Bool) -> StoreError? {
    let name = (archivePath as NSString).lastPathComponent
    let directory = (FileSystem.parentDirectory(of: archivePath) as NSString).lastPathComponent
    guard let claim = ArchiveClaim(fileName: name) else {
      return .crypto(
        object: archivePath, reason: ArchiveSigning.notSignedReason,
        hint: "it has no signature file and its name is not a tgsess archive id: do not trust it")
    }
    guard claim.directoryName == directory else {
      return .crypto(
        object: archivePath, reason: ArchiveSigning.notSignedReason,
        hint:
          "it has no signature file, and its name says \(claim.directoryName) but it sits in \(directory): do not trust it"
      )
    }
    guard claim.isEncrypted || acceptsUnencrypted else {
      return .crypto(
        object: archivePath, reason: ArchiveSigning.notSignedReason,
        hint:
          "it is neither signed nor encrypted, and this deployment encrypts its archives ([backup] encrypt is not false), so anyone could have written it: do not trust it"
      )
    }
    return nil
  }
}

/// An archive every check passed: its manifest is the one to act on, and the entries in scope
/// are extracted (in `directory`) and checked for what they hold.
public struct VerifiedArchive: Sendable, Equatable {
  public let path: String
  /// What the archive is: from its signed statement (or, for an accepted unsigned archive, its
  /// name and place).
  public let claim: ArchiveClaim
  /// Signed (by which key), or unsigned and accepted.
  public let authentication: ArchiveAuthentication
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
/// archive from its signature file and its place (`ArchiveAuthenticator`), before it is opened;
/// (2) checks that the manifest's bytes are the signed ones before they are parsed, and that the
/// manifest describes what the statement says; (3) verifies the whole stream (`ArchiveReader`:
/// every entry's path, type, size and SHA-256 against the manifest, nothing hostile), extracting
/// the entries in scope, while hashing the archive file as it is read, whose hash and size must
/// be the signed ones before anything is returned; (4) checks what the extracted entries hold:
/// every SQLite file passes integrity_check, every session file is a valid session with the
/// auth key its manifest names, every rows entry is its user's. A verbatim entry (a damaged
/// file archived byte for byte, `VerbatimFiles`) is held to its size and SHA-256 alone: that it
/// is not valid SQLite is why it exists.
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
  /// deployment's authenticator is chosen (`SigningAuthenticator.forDeployment`).
  /// - Parameters:
  ///   - verifyKeyPath: the key ring to verify with (`--verify-key`); default `keys/signing.pub`.
  ///   - allowsUnsigned: accept archives without a signature file (`--allow-unsigned`).
  /// - Throws: `StoreError` when there is no usable key ring.
  public static func forDeployment(
    _ deployment: Deployment, identities: [AgeIdentity], verifyKeyPath: String? = nil, allowsUnsigned: Bool = false
  ) throws -> ArchiveVerifier {
    ArchiveVerifier(
      identities: identities,
      authenticator: try SigningAuthenticator.forDeployment(
        deployment, verifyKeyPath: verifyKeyPath, allowsUnsigned: allowsUnsigned))
  }

  /// Whether this verifier can read an archive's content back (it holds an identity, or the
  /// archive is not encrypted).
  public func canDecrypt(isEncrypted: Bool) -> Bool { !isEncrypted || !identities.isEmpty }

  /// Verifies the archive `record` of `repository` (see `verify(path:into:scope:)`); the record
  /// only says where the archive is.
  /// - Throws: `StoreError` naming the archive and what failed.
  public func verify(
    _ record: ArchiveRecord, in repository: ArchiveRepository, into directory: String?, scope: Scope,
    progress: (@Sendable (Progress) -> Void)? = nil
  ) throws -> VerifiedArchive {
    try verify(path: repository.path(of: record), into: directory, scope: scope, progress: progress)
  }

  /// How far `verify` is: the archive's entries read from the stream (each hashed against the
  /// manifest, and extracted when in scope), then the extracted entries whose content is checked.
  public enum Progress: Sendable, Equatable {
    case read(done: Int, total: Int)
    case checked(done: Int, total: Int)
  }

  /// Verifies the archive at `path` in full, extracting the entries in `scope` into `directory`
  /// (an empty staging directory on the filesystem they will go to; nil extracts nothing and so
  /// checks no content).
  /// - Returns: the verified archive; nothing in it may be used before this returns.
  /// - Throws: `StoreError` naming the archive and what failed; the first content problem in
  ///   manifest order is the one reported.
  /// - Parameter progress: called as entries are read and checked (on several threads while
  ///   they are checked); nil reports nothing.
  public func verify(
    path: String, into directory: String?, scope: Scope, progress: (@Sendable (Progress) -> Void)? = nil
  ) throws -> VerifiedArchive {
    let authentication = try authenticator.authenticate(archivePath: path)
    let claim: ArchiveClaim
    if let statement = authentication.statement {
      claim = ArchiveClaim(statement: statement)
    } else {
      guard let named = ArchiveClaim(fileName: (path as NSString).lastPathComponent) else {
        throw StoreError.invalid(
          path: path, reason: "not a tgsess archive file name", hint: "name an <id>.tar.zst.age file")
      }
      claim = named
    }
    let statement = authentication.statement
    // Entries are counted as the stream reaches them (one thread); the total is the manifest's.
    var entriesRead = 0
    var entryCount = 0
    let manifest = try ArchiveReader.read(
      path: path, identities: identities, extractTo: directory, limits: limits, isEncrypted: claim.isEncrypted,
      extracting: { entry in
        if let progress {
          entriesRead += 1
          progress(.read(done: entriesRead, total: entryCount))
        }
        return scope.includes(entry)
      },
      authenticateManifestBytes: statement.map { statement in
        { bytes in try statement.requireManifestBytes(bytes, object: path) }
      },
      checkManifest: { _, manifest in
        try statement?.requireManifest(manifest, object: path)
        try self.check(manifest, against: claim, archivePath: path)
        entryCount = manifest.entries.count
        progress?(.read(done: 0, total: entryCount))
      },
      checkFile: statement.map { statement in
        { sha256, byteCount in try statement.requireFile(sha256: sha256, byteCount: byteCount, object: path) }
      })
    guard let directory else {
      return VerifiedArchive(
        path: path, claim: claim, authentication: authentication, manifest: manifest, directory: nil, sessions: [:],
        userRows: [:])
    }
    // Content checks open each file on its own: on a few threads, reported in manifest order.
    // (Verbatim entries are never SQLite-checked: `Manifest.decode` refuses one marked is_sqlite.)
    let checked = manifest.entries.filter {
      scope.includes($0)
        && ($0.isSQLite || $0.role == .session || $0.role == .userRows || $0.role == .sessionSidecar)
    }
    let checkedCount = Counter()
    progress?(.checked(done: 0, total: checked.count))
    let outcomes = try Parallel.map(count: checked.count, workers: Parallel.defaultWorkers) { index in
      let outcome = Self.checkContent(of: checked[index], at: directory + "/" + checked[index].path, archivePath: path)
      if let progress { progress(.checked(done: checkedCount.increment(), total: checked.count)) }
      return outcome
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
      path: path, claim: claim, authentication: authentication, manifest: manifest, directory: directory,
      sessions: sessions, userRows: userRows)
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
      checkManifest: { _, manifest in
        try self.check(manifest, against: claim, archivePath: finalPath)
      })
    guard readBack == manifest else {
      throw StoreError.invalid(
        path: finalPath, reason: "the manifest read back differs from the one written", hint: "run the backup again")
    }
    return .full
  }

  /// Step 2: the manifest describes what the archive is (a per-user archive of another user,
  /// renamed into this user's directory, is refused).
  func check(_ manifest: Manifest, against claim: ArchiveClaim, archivePath: String) throws {
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
      do throws(StoreError) {
        let problems = try integrityProblems(path)
        return problems.isEmpty ? .success(.sound) : .failure(damaged(problems))
      } catch {
        return .failure(error)
      }
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
      // A read of the staging copy that failed says nothing about the archive: that I/O error,
      // naming the copy, is the reason given.
      if let failure = error as? StoreError, failure.isIOFailure { return .failure(failure) }
      // The inspector's structural checks (header, declared size) run before integrity_check;
      // when integrity_check has something to say about the file, that is the reason given.
      if entry.isSQLite {
        do throws(StoreError) {
          let problems = try integrityProblems(path)
          if !problems.isEmpty { return .failure(damaged(problems)) }
        } catch {
          return .failure(error)
        }
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
  /// - Throws: a read of the copy that failed (`StoreError.isIOFailure`), naming the copy: not a
  ///   problem of the archive.
  static func integrityProblems(_ path: String) throws(StoreError) -> [String] {
    do {
      return try SQLiteConnection(path: path, mode: .readOnly).integrityCheck()
    } catch let error as StoreError {
      if error.isIOFailure { throw error }
      if case .database(_, let reason, _) = error { return [reason] }
      return [error.localizedDescription]
    } catch {
      return ["\(error)"]
    }
  }
}

import Foundation
import Store
import TestSupport
import Testing

/// The one gate readers go through: the authenticator (the deployment's signature check) decides
/// from the archive's signature file and place before anything is opened; the manifest must be
/// the signed one and describe what the archive is; the scope decides what is extracted.
@Suite struct ArchiveVerifierTests {
  /// An authenticator that records what it saw and refuses when told to (else accepts the
  /// archive as unsigned).
  final class Recorder: ArchiveAuthenticator, @unchecked Sendable {
    let refuses: Bool
    private let lock = NSLock()
    private(set) var seen: [String] = []

    init(refuses: Bool) { self.refuses = refuses }

    func authenticate(archivePath: String) throws -> ArchiveAuthentication {
      lock.withLock { seen.append(archivePath) }
      if refuses {
        throw StoreError.invalid(path: archivePath, reason: "not signed by this deployment's key", hint: "test")
      }
      return .unsigned
    }
  }

  static let key = try! SigningKey.generate()

  /// A repository with one encrypted archive of `kind` holding a file of users 1 and 2 (and, for
  /// user 1's per-user archive, their rows).
  static func archive(kind: Manifest.Kind, in dir: TemporaryDirectory) throws -> (
    ArchiveRepository, ArchiveRecord, AgeIdentity
  ) {
    let identity = try AgeIdentity.generate()
    let repository = ArchiveRepository(backupsDirectory: dir.file("backups"))
    try FileSystem.makeDirectory(dir.file("source"))
    var entries: [Manifest.Entry] = []
    var sources: [String: ArchiveSource] = [:]
    func add(_ path: String, _ data: Data, role: Manifest.EntryRole, user: Int64?) throws {
      let file = dir.file("source/" + path.replacingOccurrences(of: "/", with: "_"))
      try FileSystem.writeAtomically(data, to: file)
      entries.append(
        Manifest.Entry(
          path: path, role: role, size: Int64(data.count), sha256: Digest.sha256Hex(data), isSQLite: false,
          userID: user))
      sources[path] = .file(file)
    }
    try add("imported/user_1.txt", Data("one".utf8), role: .imported, user: 1)
    if kind == .full { try add("imported/user_2.txt", Data("two".utf8), role: .imported, user: 2) }
    if kind == .user {
      let rows = #"{"user_id": 1, "user_sessions": {"user_id": 1, "api_id": 7, "note": "x", "ratio": 0.5}}"#
      try add("rows/user_1.json", Data(rows.utf8), role: .userRows, user: 1)
    }
    let date = Date(timeIntervalSince1970: 1_800_000_000)
    let manifest = Manifest(
      toolVersion: "test", host: "test", createdAt: date, kind: kind, reason: "Manual",
      userID: kind == .user ? 1 : nil, schemaVersion: 1, entries: entries)
    let record = try repository.write(
      id: ArchiveName.makeID(kind: kind, userID: kind == .user ? 1 : nil, date: date), manifest: manifest,
      sources: sources, encryption: .age([identity.recipient]), identities: [identity], signingKey: key)
    return (repository, record, identity)
  }

  @Test func theAuthenticatorSeesTheManifestBytesBeforeAnythingIsExtracted() throws {
    let dir = try TemporaryDirectory()
    let (repository, record, identity) = try Self.archive(kind: .user, in: dir)
    let staging = dir.file("staging")
    try FileSystem.makeDirectory(staging)

    let refusing = Recorder(refuses: true)
    #expect(
      throws: StoreError.invalid(
        path: repository.path(of: record), reason: "not signed by this deployment's key", hint: "test")
    ) {
      try ArchiveVerifier(identities: [identity], authenticator: refusing).verify(
        record, in: repository, into: staging, scope: .everyEntry)
    }
    #expect(refusing.seen.count == 1)
    #expect(try FileSystem.directoryNames(staging).isEmpty, "an entry was extracted before authentication")

    let accepting = Recorder(refuses: false)
    let verified = try ArchiveVerifier(identities: [identity], authenticator: accepting).verify(
      record, in: repository, into: staging, scope: .everyEntry)
    #expect(accepting.seen == [repository.path(of: record)])
    // An unsigned archive's claim is its name's.
    #expect(verified.claim == ArchiveClaim(fileName: record.fileName))
    #expect(verified.authentication == .unsigned)
    #expect(FileSystem.exists(staging + "/imported/user_1.txt"))
    #expect(
      verified.userRows
        == [
          1: UserSessionsRow(
            userID: 1,
            columns: ["user_id": .integer(1), "api_id": .integer(7), "note": .text("x"), "ratio": .real(0.5)])
        ])
  }

  /// What the verifier takes from a signed archive comes from its statement; the record beside it
  /// (edited here: another time, reason and user) changes nothing.
  @Test func aSignedArchiveIsWhatItsStatementSaysWhateverItsRecordSays() throws {
    let dir = try TemporaryDirectory()
    let (repository, record, identity) = try Self.archive(kind: .user, in: dir)
    var edited = record
    edited.reason = "Forged"
    edited.createdAt = Date(timeIntervalSince1970: 4_000_000_000)
    edited.verification = .full
    try edited.encoded().write(
      to: URL(fileURLWithPath: repository.userDirectory(1) + "/" + record.id + ArchiveName.recordSuffix))
    let listed = try #require(try repository.list().first)
    let ring = VerifyingKeyRing(keys: [Self.key.verifyingKey], path: "ring")
    let verified = try ArchiveVerifier(identities: [identity], authenticator: SigningAuthenticator(ring: ring)).verify(
      listed, in: repository, into: nil, scope: .everyEntry)
    #expect(verified.claim == ArchiveClaim(fileName: record.fileName))
    #expect(verified.manifest.reason == "Manual")
    guard case .signed(let signed) = verified.authentication else {
      Issue.record("not signed: \(verified.authentication)")
      return
    }
    #expect(signed.keyID == Self.key.keyID)
    #expect(signed.statement.reason == "Manual")
    #expect(listed.vouched(by: signed.statement).createdAt == record.createdAt)
    // The listing itself takes the time from the file name, never from the record.
    #expect(listed.createdAt == record.createdAt)
  }

  /// The archive file is hashed as it is read: a signed archive whose file is not the one
  /// signed (its signature copied beside another genuine archive of the same user) is refused
  /// before anything is returned, though every entry checks out against its own manifest.
  @Test func aGenuineSignatureBesideAnotherFileIsRefusedWhileReading() throws {
    let dir = try TemporaryDirectory()
    let (repository, record, identity) = try Self.archive(kind: .user, in: dir)
    let ring = VerifyingKeyRing(keys: [Self.key.verifyingKey], path: "ring")
    // The same content encrypted again: another file, the same manifest bytes.
    let path = repository.path(of: record)
    try AgeKeyFile.write(identity, to: dir.file("id"))
    #expect(
      try runProcess("/bin/bash", ["-c", "age -d -i \"$1\" \"$2\" > \"$2.plain\"", "x", dir.file("id"), path]).status
        == 0)
    #expect(
      try runProcess(
        "/bin/bash",
        ["-c", "age -r \"$1\" -o \"$2\" \"$2.plain\" && rm \"$2.plain\"", "x", identity.recipient.string, path]
      ).status == 0)
    let staging = dir.file("staging")
    try FileSystem.makeDirectory(staging)
    #expect(throws: StoreError.self) {
      try ArchiveVerifier(identities: [identity], authenticator: SigningAuthenticator(ring: ring)).verify(
        record, in: repository, into: staging, scope: .everyEntry)
    }
    do {
      _ = try ArchiveVerifier(identities: [identity], authenticator: SigningAuthenticator(ring: ring)).verify(
        record, in: repository, into: nil, scope: .everyEntry)
    } catch let error as StoreError {
      guard case .crypto(let object, let reason, let hint) = error else {
        Issue.record("\(error)")
        return
      }
      #expect(object == path)
      #expect(reason == "not signed by this deployment's key")
      #expect(hint.hasPrefix("the file is not the one that was signed"))
    }
  }

  /// A per-user archive of user 1 placed, under user 2's name, in user 2's directory: the
  /// manifest says user 1, the claim user 2.
  @Test func aManifestThatIsNotWhatTheArchiveClaimsIsRefused() throws {
    let dir = try TemporaryDirectory()
    let (repository, record, identity) = try Self.archive(kind: .user, in: dir)
    let forgedID = record.id.replacingOccurrences(of: "-u1-", with: "-u2-")
    var forged = record
    forged.id = forgedID
    forged.fileName = ArchiveName.fileName(id: forgedID, isEncrypted: true)
    forged.userID = 2
    try FileSystem.makeDirectory(repository.userDirectory(2))
    try FileSystem.writeAtomically(try FileSystem.read(repository.path(of: record)), to: repository.path(of: forged))
    let staging = dir.file("staging")
    try FileSystem.makeDirectory(staging)

    // Accepted unsigned (--allow-unsigned), its manifest still has to describe its name.
    #expect(
      throws: StoreError.invalid(
        path: repository.path(of: forged),
        reason:
          "its manifest describes user 1's per-user archive, but the archive is named and stored as user 2's per-user archive",
        hint: "refusing this archive; use another backup")
    ) {
      try ArchiveVerifier(identities: [identity], authenticator: Recorder(refuses: false)).verify(
        forged, in: repository, into: staging, scope: .everyEntry)
    }
    #expect(try FileSystem.directoryNames(staging).isEmpty)
    // Its genuine signature, renamed with it, names user 1's directory: refused before opening.
    try FileSystem.writeAtomically(
      try FileSystem.read(ArchiveSigning.signaturePath(forArchive: repository.path(of: record))!),
      to: ArchiveSigning.signaturePath(forArchive: repository.path(of: forged))!)
    let ring = VerifyingKeyRing(keys: [Self.key.verifyingKey], path: "ring")
    #expect(throws: StoreError.self) {
      try ArchiveVerifier(identities: [identity], authenticator: SigningAuthenticator(ring: ring)).verify(
        forged, in: repository, into: staging, scope: .everyEntry)
    }
    #expect(try FileSystem.directoryNames(staging).isEmpty)
  }

  @Test func aUserScopeExtractsOnlyThatUsersEntriesAndVerifiesTheRest() throws {
    let dir = try TemporaryDirectory()
    let (repository, record, identity) = try Self.archive(kind: .full, in: dir)
    let staging = dir.file("staging")
    try FileSystem.makeDirectory(staging)

    let verified = try ArchiveVerifier(identities: [identity], authenticator: UnsignedArchives()).verify(
      record, in: repository, into: staging, scope: .user(2))

    #expect(verified.manifest.entries.count == 2)
    #expect(try FileSystem.directoryNames(staging + "/imported") == ["user_2.txt"])
    // Without an identity, an encrypted archive is not read at all.
    #expect(throws: StoreError.self) {
      try ArchiveVerifier(identities: [], authenticator: UnsignedArchives()).verify(
        record, in: repository, into: nil, scope: .everyEntry)
    }
  }
}

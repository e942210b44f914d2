import Foundation
import Store
import TestSupport
import Testing

/// The writer signs what it proved, the listing never takes a record's word for an archive's
/// name, place or time, and the authenticator classifies what it finds in backups/.
@Suite struct SignedWriteTests {
  static let key = try! SigningKey.generate()

  /// A repository with one per-user archive of user 7 (plain or encrypted), written and signed
  /// by `ArchiveRepository.write`.
  static func written(in dir: TemporaryDirectory, isEncrypted: Bool = true) throws -> (
    ArchiveRepository, ArchiveRecord, AgeIdentity
  ) {
    let identity = try AgeIdentity.generate()
    let repository = ArchiveRepository(backupsDirectory: dir.file("backups"))
    let data = Data("session bytes".utf8)
    try FileSystem.writeAtomically(data, to: dir.file("source"))
    let date = Date(timeIntervalSince1970: 1_800_000_000.75)
    let manifest = Manifest(
      toolVersion: "test", host: "test", createdAt: date, kind: .user, reason: "Manual", userID: 7, schemaVersion: 1,
      entries: [
        Manifest.Entry(
          path: "imported/user_7.txt", role: .imported, size: Int64(data.count), sha256: Digest.sha256Hex(data),
          isSQLite: false, userID: 7)
      ])
    let record = try repository.write(
      id: ArchiveName.makeID(kind: .user, userID: 7, date: date), manifest: manifest,
      sources: ["imported/user_7.txt": .file(dir.file("source"))],
      encryption: isEncrypted ? .age([identity.recipient]) : .none, identities: [identity], signingKey: key)
    return (repository, record, identity)
  }

  /// Ids name the whole second the manifest keeps: the date formatter rounds to milliseconds
  /// first, so a time 0.9996 s into a second would name the next one (and the statement, which
  /// must say the id's time, could not be signed: one archive in a few thousand).
  @Test func anIdNamesTheSecondItsManifestKeeps() {
    let date = Date(timeIntervalSince1970: 1_800_000_000.9996)
    let id = ArchiveName.makeID(kind: .full, userID: nil, date: date)
    #expect(id.hasPrefix(Timestamp.compact(Date(timeIntervalSince1970: 1_800_000_000)) + "-full-"))
    #expect(ArchiveName.describe(id: id)?.createdAt == Date(timeIntervalSince1970: 1_800_000_000))
  }

  @Test func theWriterPublishesOnlySignedArchives() throws {
    let dir = try TemporaryDirectory()
    for isEncrypted in [true, false] {
      let (repository, record, _) = try Self.written(in: dir, isEncrypted: isEncrypted)
      let path = repository.path(of: record)
      let ring = VerifyingKeyRing(keys: [Self.key.verifyingKey], path: "ring")
      let signed = try ArchiveSigning.verifyFile(archivePath: path, ring: ring)
      #expect(signed.keyID == Self.key.keyID)
      #expect(signed.statement.archiveID == record.id)
      #expect(signed.statement.encryption == (isEncrypted ? .age : .none))
      #expect(signed.statement.fileSHA256 == record.sha256)
      #expect(signed.statement.reason == "Manual")
      // No temporary is left behind.
      #expect(try FileSystem.directoryNames(repository.userDirectory(7)).allSatisfy { !$0.hasPrefix(".") })
      // A signed unencrypted archive is the deployment's, whatever the deployment encrypts.
      #expect(SigningAuthenticator(ring: ring).authenticity(archivePath: path).isSigned)
    }
  }

  /// What a record says about an archive's id, time, kind and user is replaced by its name and
  /// place; a name that disagrees with its directory is rejected when it is unsigned.
  @Test func theListingTakesNameAndPlaceFromTheFileNotTheRecord() throws {
    let dir = try TemporaryDirectory()
    let (repository, record, _) = try Self.written(in: dir)
    let recordPath = repository.userDirectory(7) + "/" + record.id + ArchiveName.recordSuffix
    var edited = record
    edited.id = "20990101T000000Z-u8-zzzzzz"
    edited.userID = 8
    edited.kind = .full
    edited.createdAt = Date(timeIntervalSince1970: 4_000_000_000)
    try edited.encoded().write(to: URL(fileURLWithPath: recordPath))
    let listed = try #require(try repository.list().first)
    #expect(listed.id == record.id && listed.userID == 7 && listed.kind == .user)
    #expect(listed.createdAt == record.createdAt)
    #expect(repository.path(of: listed) == repository.path(of: record))
    // An unsigned archive whose name says user 8, in user 7's directory.
    let misplaced = repository.userDirectory(7) + "/20990101T000000Z-u8-abcdef.tar.zst.age"
    try FileManager.default.copyItem(atPath: repository.path(of: record), toPath: misplaced)
    let ring = VerifyingKeyRing(keys: [Self.key.verifyingKey], path: "ring")
    guard
      case .rejected(let error) = SigningAuthenticator(ring: ring, allowsUnsigned: true).authenticity(
        archivePath: misplaced)
    else {
      Issue.record("a misplaced unsigned archive was not rejected")
      return
    }
    #expect(error.errorDescription?.contains("its name says user_8 but it sits in user_7") == true)
    #expect(throws: StoreError.self) {
      try SigningAuthenticator(ring: ring, allowsUnsigned: true).authenticate(archivePath: misplaced)
    }
  }

  /// An unsigned unencrypted archive is unauthenticated by definition: refused even with
  /// --allow-unsigned, unless the deployment does not encrypt.
  @Test func anUnsignedPlainArchiveIsAcceptedOnlyWhereArchivesAreNotEncrypted() throws {
    let dir = try TemporaryDirectory()
    let (repository, record, _) = try Self.written(in: dir, isEncrypted: false)
    let path = repository.path(of: record)
    try FileManager.default.removeItem(atPath: ArchiveSigning.signaturePath(forArchive: path)!)
    let ring = VerifyingKeyRing(keys: [Self.key.verifyingKey], path: "ring")
    let encrypting = SigningAuthenticator(ring: ring, allowsUnsigned: true, acceptsUnencrypted: false)
    guard case .rejected(let error) = encrypting.authenticity(archivePath: path) else {
      Issue.record("an unsigned plain archive was not rejected")
      return
    }
    #expect(error.errorDescription?.contains("it is neither signed nor encrypted") == true)
    let plain = SigningAuthenticator(ring: ring, allowsUnsigned: true, acceptsUnencrypted: true)
    #expect(plain.authenticity(archivePath: path) == .unsigned)
    #expect(try plain.authenticate(archivePath: path) == .unsigned)
    // Without --allow-unsigned it is refused either way, saying what to do.
    do {
      _ = try SigningAuthenticator(ring: ring, acceptsUnencrypted: true).authenticate(archivePath: path)
      Issue.record("accepted without --allow-unsigned")
    } catch let error as StoreError {
      #expect(
        error.errorDescription
          == "\(path): not signed by this deployment's key; it has no signature file (made before archives were signed, or planted): if this host made it, vouch for it with tgsess keys sign-existing, or pass --allow-unsigned"
      )
    }
  }

  /// The next run removes a signature whose archive was never published (a writer killed
  /// between signing and publishing) and a signature temporary of a dead writer; it keeps the
  /// signatures of published archives.
  @Test func leftoverSignaturesAreRemovedAndPublishedOnesKept() throws {
    let dir = try TemporaryDirectory()
    let (repository, record, _) = try Self.written(in: dir)
    let directory = repository.userDirectory(7)
    let orphan = directory + "/20260101T000000Z-u7-orphan.sig"
    try Data("x".utf8).write(to: URL(fileURLWithPath: orphan))
    // A temporary of a process that is gone (pid 1 never writes here; 2^22+1 is past pid_max).
    let deadTemporary = directory + "/.20260101T000000Z-u7-dead01.sig.tgsess-tmp-4194305-abc"
    try Data("x".utf8).write(to: URL(fileURLWithPath: deadTemporary))
    let removed = try repository.removeLeftovers(userID: 7)
    #expect(Set(removed) == [orphan, deadTemporary])
    #expect(FileSystem.exists(ArchiveSigning.signaturePath(forArchive: repository.path(of: record))!))
    // Pruning an archive removes its signature too.
    try repository.remove(record)
    #expect(try FileSystem.directoryNames(directory).isEmpty)
  }
}

/// Archive ids and statements are parsed and written by arithmetic (listing 10,000 archives
/// through `DateFormatter`, behind its lock, took over a second): the same strings as
/// `DateFormatter` for every time, and nothing but real times accepted.
@Suite struct CompactTimeTests {
  static let reference: DateFormatter = {
    let formatter = DateFormatter()
    formatter.locale = Locale(identifier: "en_US_POSIX")
    formatter.timeZone = TimeZone(identifier: "UTC")
    formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
    return formatter
  }()

  @Test func theSameStringsAsDateFormatterForWholeSeconds() {
    var generator = SystemRandomNumberGenerator()
    // 1900 to 2200, and the edges of months, leap days and the epoch.
    var seconds = (0..<2_000).map { _ in Int64.random(in: -2_208_988_800...7_258_118_400, using: &generator) }
    seconds += [0, -1, 951_782_399, 951_782_400, 951_868_800, 4_107_542_399, 4_107_542_400, 1_709_164_800]
    for value in seconds {
      let date = Date(timeIntervalSince1970: TimeInterval(value))
      let text = Self.reference.string(from: date)
      #expect(Timestamp.compact(date) == text, "\(value)")
      #expect(Timestamp.parseCompact(text) == date, "\(text)")
    }
  }

  @Test func onlyRealTimesInTheExactFormParse() {
    for text in [
      "20261301T000000Z", "20260230T000000Z", "20250229T000000Z", "20260101T240000Z", "20260101T006000Z",
      "20260101T000060Z", "2026011T000000Z", "20260101T000000", "20260101 000000Z", "20260101T00000aZ",
      "+2026010T000000Z", "202601010000000Z",
    ] {
      #expect(Timestamp.parseCompact(text) == nil, "\(text)")
    }
    #expect(Timestamp.parseCompact("20240229T235959Z") == Date(timeIntervalSince1970: 1_709_251_199))
    // Fractions are rounded down, as the manifest keeps its time.
    #expect(Timestamp.compact(Date(timeIntervalSince1970: 1_709_251_199.9999)) == "20240229T235959Z")
  }
}

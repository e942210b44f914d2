import Foundation
import Store
import TestSupport
import Testing

/// Verbatim entries (issue #16): a damaged live file archived byte for byte is held to its size
/// and SHA-256 alone, is never taken for a session, and makes the manifest format 2 so an older
/// tgsess refuses the archive instead of restoring garbage as a session.
@Suite struct VerbatimEntryTests {
  static let key = try! SigningKey.generate()

  /// A deployment in `dir` whose user 42 has a garbage session file and journal.
  static func damagedDeployment(in dir: TemporaryDirectory) throws -> (Deployment, Data, Data) {
    let deployment = Deployment(root: dir.file("live"))
    try FileSystem.makeDirectory(deployment.sessionsDirectory)
    var session = randomBytes(5_000)
    session[0] = 0x5a
    let journal = Data(randomBytes(700))
    try FileSystem.writeAtomically(Data(session), to: deployment.sessionPath(userID: 42))
    try FileSystem.writeAtomically(journal, to: deployment.sessionPath(userID: 42) + "-journal")
    return (deployment, Data(session), journal)
  }

  @Test func aVerbatimArchiveHoldsTheBytesAndIsVerifiedByHashAlone() throws {
    let dir = try TemporaryDirectory()
    let (deployment, session, journal) = try Self.damagedDeployment(in: dir)
    let identity = try AgeIdentity.generate()
    let repository = ArchiveRepository(backupsDirectory: deployment.backupsDirectory)
    let staging = try StagingArea(parent: deployment.backupsDirectory)
    defer { staging.remove() }
    var entries: [Manifest.Entry] = []
    var sources: [String: ArchiveSource] = [:]
    for path in [deployment.sessionPath(userID: 42), deployment.sessionPath(userID: 42) + "-journal"] {
      let staged = try VerbatimFiles.stage(livePath: path, in: deployment, staging: staging)
      entries.append(staged.entry)
      sources[staged.entry.path] = staged.source
    }
    #expect(entries.map(\.path) == ["sessions/user_42.session", "sessions/user_42.session-journal"])
    #expect(entries.map(\.sha256) == [Digest.sha256Hex(session), Digest.sha256Hex(journal)])
    let date = Date(timeIntervalSince1970: 1_800_000_000)
    let manifest = Manifest(
      toolVersion: "test", host: "test", createdAt: date, kind: .user, reason: "Before restore", userID: 42,
      schemaVersion: 0, entries: entries)
    #expect(manifest.formatVersion == 2)
    let record = try repository.write(
      id: ArchiveName.makeID(kind: .user, userID: 42, date: date), manifest: manifest, sources: sources,
      encryption: .age([identity.recipient]), identities: [identity], signingKey: Self.key)
    #expect(record.hasVerbatimEntries == true)
    #expect(record.userIDs == [42])
    #expect(record.sessionFingerprint == nil)

    let extracted = dir.file("extracted")
    try FileSystem.makeDirectory(extracted)
    let verified = try ArchiveVerifier(identities: [identity], authenticator: UnsignedArchives()).verify(
      record, in: repository, into: extracted, scope: .everyEntry)
    // Never a session: nothing was inspected, and the bytes are the damaged ones.
    #expect(verified.sessions.isEmpty)
    #expect(try FileSystem.read(extracted + "/sessions/user_42.session") == session)
    #expect(try FileSystem.read(extracted + "/sessions/user_42.session-journal") == journal)
    #expect(
      VerbatimFiles.target(of: verified.manifest.entries[1])
        == .init(file: .session, userID: 42, companionSuffix: "-journal"))
    #expect(
      VerbatimFiles.target(of: verified.manifest.entries[0])?.livePath(in: deployment)
        == deployment.sessionPath(userID: 42))
  }

  final class Sink: @unchecked Sendable { var data = Data() }

  @Test func aVerbatimEntryWhoseBytesDifferFromTheManifestIsRefused() throws {
    let dir = try TemporaryDirectory()
    let bytes = Data(randomBytes(1_000))
    let date = Date(timeIntervalSince1970: 1_800_000_000)
    let manifest = Manifest(
      toolVersion: "test", host: "test", createdAt: date, kind: .user, reason: "Before restore", userID: 42,
      schemaVersion: 0,
      entries: [
        Manifest.Entry(
          path: "sessions/user_42.session", role: .verbatim, size: Int64(bytes.count),
          sha256: Digest.sha256Hex(Data(bytes.reversed())), isSQLite: false, userID: 42)
      ])
    let repository = ArchiveRepository(backupsDirectory: dir.file("backups"))
    let id = ArchiveName.makeID(kind: .user, userID: 42, date: date)
    let path = repository.userDirectory(42) + "/" + ArchiveName.fileName(id: id, isEncrypted: false)
    let sink = Sink()
    let tar = try TarZstdWriter(objectName: path) { sink.data.append(contentsOf: $0) }
    try tar.addFile(path: "manifest.json", data: try manifest.encoded(), modified: date)
    try tar.addFile(path: "sessions/user_42.session", data: bytes, modified: date)
    try tar.finish()
    try FileSystem.makeDirectory(repository.userDirectory(42))
    try FileSystem.writeAtomically(sink.data, to: path)

    let extracted = dir.file("extracted")
    try FileSystem.makeDirectory(extracted)
    #expect(
      throws: StoreError.invalid(
        path: path, reason: "entry 'sessions/user_42.session' does not match its SHA-256 in the manifest",
        hint: "refusing this archive; use another backup")
    ) {
      try ArchiveVerifier(identities: [], authenticator: UnsignedArchives()).verify(
        path: path, into: extracted, scope: .everyEntry)
    }
  }

  /// The manifest JSON of one entry, as a writer (or a forger) would put it.
  static func manifestJSON(formatVersion: Int, kind: String = "user", user: Int64? = 42, entries: [String]) -> Data {
    let userField = user.map { "\"user_id\":\($0)," } ?? ""
    return Data(
      """
      {"format_version":\(formatVersion),"tool_version":"x","host":"x","created_at":"2026-01-01T00:00:00Z",\
      "kind":"\(kind)","reason":"Before restore",\(userField)"schema_version":2,"entries":[\(entries.joined(separator: ","))]}
      """.utf8)
  }

  static func entry(_ path: String, role: String = "verbatim", isSQLite: Bool = false, user: Int64? = 42) -> String {
    let userField = user.map { ",\"user_id\":\($0)" } ?? ""
    return
      "{\"path\":\"\(path)\",\"role\":\"\(role)\",\"size\":1,\"mode\":384,\"sha256\":\"\(String(repeating: "a", count: 64))\",\"is_sqlite\":\(isSQLite)\(userField)}"
  }

  @Test func olderReadersAndOrdinaryPathsNeverTakeAVerbatimEntryForASession() throws {
    // What older readers key on: an ordinary manifest stays format 1, one with verbatim bytes is
    // format 2, which a format-1 reader refuses as newer than it reads (as this one refuses 3).
    let ordinary = Manifest.Entry(path: "sessions/user_42.session", role: .session, size: 1, sha256: "", isSQLite: true)
    var verbatim = ordinary
    verbatim.role = .verbatim
    verbatim.isSQLite = false
    #expect(Manifest.formatVersion(for: [ordinary]) == 1)
    #expect(Manifest.formatVersion(for: [ordinary, verbatim]) == 2)
    #expect(throws: StoreError.self) {
      try Manifest.decode(Self.manifestJSON(formatVersion: 3, entries: []), objectName: "a")
    }
    let good = try Manifest.decode(
      Self.manifestJSON(formatVersion: 2, entries: [Self.entry("sessions/user_42.session")]), objectName: "a")
    #expect(good.entries.map(\.role) == [.verbatim])

    // Refused: verbatim entries in a format-1 manifest, marked SQLite, of another user, of no
    // live file, or a journal without its file.
    let refused: [(String, Data)] = [
      ("format 1", Self.manifestJSON(formatVersion: 1, entries: [Self.entry("sessions/user_42.session")])),
      (
        "is_sqlite",
        Self.manifestJSON(formatVersion: 2, entries: [Self.entry("sessions/user_42.session", isSQLite: true)])
      ),
      ("another user", Self.manifestJSON(formatVersion: 2, entries: [Self.entry("sessions/user_43.session")])),
      ("keys", Self.manifestJSON(formatVersion: 2, entries: [Self.entry("keys/age-identity.txt")])),
      (
        "database in a per-user archive",
        Self.manifestJSON(formatVersion: 2, entries: [Self.entry("data/telegram_bot.db", user: nil)])
      ),
      ("lone journal", Self.manifestJSON(formatVersion: 2, entries: [Self.entry("sessions/user_42.session-journal")])),
      ("sidecar journal", Self.manifestJSON(formatVersion: 2, entries: [Self.entry("sessions/user_42.json-wal")])),
    ]
    for (what, json) in refused {
      #expect(throws: StoreError.self, "\(what)") { try Manifest.decode(json, objectName: "a") }
    }
    // A full archive's database and its -wal are fine.
    let full = try Manifest.decode(
      Self.manifestJSON(
        formatVersion: 2, kind: "full", user: nil,
        entries: [Self.entry("data/telegram_bot.db", user: nil), Self.entry("data/telegram_bot.db-wal", user: nil)]),
      objectName: "a")
    #expect(
      full.entries.compactMap(VerbatimFiles.target(of:)).map(\.companionSuffix) == ["", "-wal"])
  }
}

import Foundation
import Jobs
import Logging
import Store
import TestSupport
import Testing

/// An hourly backup inspects only the session snapshots whose bytes changed since an earlier run
/// inspected them (`backups/.inspections`); every file is still snapshotted through SQLite and
/// hashed. "Unchanged" is the snapshot's SHA-256, so no way of rewriting a file (same size, same
/// mtime, replaced by rename) can pass for unchanged, and a file SQLite cannot read consistently
/// (a hot journal) fails as it did before.
@Suite struct InspectionReuseTests {
  static func backup(_ fleet: TestFleet) throws -> BackupResult {
    var logger = Logger(label: "test")
    logger.logLevel = .critical
    return try BackupJob.run(fleet.deployment, options: BackupOptions(), logger: logger)
  }

  /// The session entries of a backup's full archive, read back with the deployment's identity.
  static func sessionEntries(_ result: BackupResult, _ fleet: TestFleet) throws -> [Int64: Manifest.Entry] {
    let full = try #require(result.archives.first { $0.kind == .full })
    let manifest = try ArchiveReader.read(path: full.path, identities: try KeyStore.loadIdentities(fleet.deployment))
    var entries: [Int64: Manifest.Entry] = [:]
    for entry in manifest.entries where entry.role == .session { entries[entry.userID ?? 0] = entry }
    return entries
  }

  /// What inspecting the live file says now: the fingerprint an entry must carry.
  static func fingerprint(_ fleet: TestFleet, _ userID: Int64) throws -> String {
    try SessionFileInspector.inspect(path: fleet.sessionPath(userID)).identity.authKey.fingerprint
  }

  static func fileStatus(_ path: String) throws -> stat {
    var info = stat()
    guard lstat(path, &info) == 0 else { throw TestHelperError("lstat \(path) failed") }
    return info
  }

  @Test func unchangedSnapshotsReuseTheirFindingsAndChurnedOnesAreInspectedAgain() throws {
    let fleet = try TestFleet(users: 8, entities: 120, collectsSecrets: true)
    let users = try fleet.sessionUserIDs()
    let first = try Self.backup(fleet)
    #expect(first.inspectionsReused == 0)
    let second = try Self.backup(fleet)
    #expect(second.inspectionsReused == users.count)
    #expect(try Self.sessionEntries(second, fleet) == Self.sessionEntries(first, fleet))

    // Telethon-style churn (update_state, entities) in one file: new bytes, inspected again;
    // the identity is the same, so no per-user archive.
    let churned = try fleet.telethonUserIDs()[0]
    try runPython(
      """
      import sqlite3, sys, time
      conn = sqlite3.connect(sys.argv[1])
      conn.execute("UPDATE update_state SET pts = pts + 7, date = ? WHERE id = 0", (int(time.time()),))
      conn.execute("UPDATE entities SET hash = hash + 1 WHERE id IN (SELECT id FROM entities LIMIT 3)")
      conn.commit()
      """, arguments: [fleet.sessionPath(churned)])
    let third = try Self.backup(fleet)
    #expect(third.inspectionsReused == users.count - 1)
    #expect(third.archives.filter { $0.kind == .user }.isEmpty)
    let entries = try Self.sessionEntries(third, fleet)
    #expect(entries[churned]?.sha256 != (try Self.sessionEntries(second, fleet))[churned]?.sha256)
    #expect(entries[churned]?.authKeyFingerprint == (try Self.fingerprint(fleet, churned)))

    // The cache holds hashes and fingerprints, never a secret.
    try fleet.collectSecrets()
    let cache = try String(
      contentsOfFile: InspectionCache.path(backupsDirectory: fleet.backupsDirectory), encoding: .utf8)
    fleet.keep("backups/.inspections", cache, "")
    try BackupCLITests.expectNoLeaks(fleet)
  }

  @Test func aSameSizeRewriteWithinTheSameMtimeTickIsANewSnapshot() throws {
    let fleet = try TestFleet(users: 6, entities: 120)
    let users = try fleet.sessionUserIDs()
    _ = try Self.backup(fleet)
    let user = try fleet.telethonUserIDs()[1]
    let path = fleet.sessionPath(user)
    let before = try Self.fileStatus(path)
    let oldFingerprint = try Self.fingerprint(fleet, user)
    // A new key of the same length, then the old mtime (to the nanosecond) put back: size,
    // mtime and inode all say "unchanged".
    try runProcess(StockTools.sqlite3, [path, "UPDATE sessions SET auth_key = randomblob(256)"])
    var times = [before.st_atim, before.st_mtim]
    #expect(utimensat(AT_FDCWD, path, &times, 0) == 0)
    let after = try Self.fileStatus(path)
    try #require(
      after.st_size == before.st_size && after.st_ino == before.st_ino
        && after.st_mtim.tv_sec == before.st_mtim.tv_sec && after.st_mtim.tv_nsec == before.st_mtim.tv_nsec)
    let newFingerprint = try Self.fingerprint(fleet, user)
    try #require(newFingerprint != oldFingerprint)

    let result = try Self.backup(fleet)
    #expect(result.inspectionsReused == users.count - 1)
    #expect(try Self.sessionEntries(result, fleet)[user]?.authKeyFingerprint == newFingerprint)
    // A new identity: the user gets a per-user archive holding it.
    #expect(BackupCLITests.perUserIDs(result) == [user])
  }

  @Test func aFileReplacedByRenameIsANewSnapshot() throws {
    let fleet = try TestFleet(users: 6, entities: 120)
    let users = try fleet.sessionUserIDs()
    _ = try Self.backup(fleet)
    let user = try fleet.telethonUserIDs()[2]
    let path = fleet.sessionPath(user)
    let before = try Self.fileStatus(path)
    // The real Telethon writes a new session beside it; it is renamed over the old one with the
    // old file's times.
    try runPython(
      """
      import os, shutil, sys
      from telethon.crypto import AuthKey
      from telethon.sessions import SQLiteSession
      path, temp = sys.argv[1], sys.argv[1] + '.new.session'
      shutil.copyfile(path, temp)
      s = SQLiteSession(temp[:-len('.session')])
      s.auth_key = AuthKey(os.urandom(256))
      s.save()
      s.close()
      st = os.stat(path)
      os.utime(temp, ns=(st.st_atime_ns, st.st_mtime_ns))
      os.rename(temp, path)
      """, arguments: [path])
    #expect(try Self.fileStatus(path).st_ino != before.st_ino)
    let result = try Self.backup(fleet)
    #expect(result.inspectionsReused == users.count - 1)
    #expect(try Self.sessionEntries(result, fleet)[user]?.authKeyFingerprint == (try Self.fingerprint(fleet, user)))
    #expect(BackupCLITests.perUserIDs(result) == [user])
  }

  @Test func aHotJournalFailsTheUserAsBeforeAndTheCacheNeverStandsInForIt() throws {
    let fleet = try TestFleet(users: 5, entities: 120)
    let users = try fleet.sessionUserIDs()
    let first = try Self.backup(fleet)
    let user = try fleet.telethonUserIDs()[0]
    let path = fleet.sessionPath(user)
    // A writer that zeroed the auth key in the file itself and died before COMMIT.
    _ = try runPython(PeerScripts.killedWriter, arguments: [path])
    try #require(FileManager.default.fileExists(atPath: path + "-journal"))

    let result = try Self.backup(fleet)
    #expect(result.failures.map(\.userID) == [user])
    #expect(result.failures.first?.reason.contains("journal") == true, "\(result.failures)")
    #expect(result.inspectionsReused == users.count - 1)
    #expect(try Self.sessionEntries(result, fleet)[user] == nil)
    // Rolled back (as the bot's next open does), the file is its old self: the old findings.
    try runProcess(StockTools.sqlite3, [path, "PRAGMA quick_check"])
    let next = try Self.backup(fleet)
    #expect(next.failures.isEmpty)
    #expect(try Self.sessionEntries(next, fleet)[user] == (try Self.sessionEntries(first, fleet))[user])
  }

  @Test func aDamagedCacheOnlyCostsTime() throws {
    let fleet = try TestFleet(users: 4, entities: 120)
    let users = try fleet.sessionUserIDs()
    let first = try Self.backup(fleet)
    let path = InspectionCache.path(backupsDirectory: fleet.backupsDirectory)
    var text = try String(contentsOfFile: path, encoding: .utf8)
    // One character of one finding changed: the checksum no longer matches.
    let index = try #require(text.firstIndex(of: "\n"))
    text.replaceSubrange(text.index(after: index)...text.index(after: index), with: "9")
    try text.write(toFile: path, atomically: true, encoding: .utf8)
    let second = try Self.backup(fleet)
    #expect(second.inspectionsReused == 0)
    #expect(try Self.sessionEntries(second, fleet) == Self.sessionEntries(first, fleet))
    // Rewritten whole by that run.
    #expect(try Self.backup(fleet).inspectionsReused == users.count)
  }
}

import Foundation
import Jobs
import Logging
import Store
import TestSupport
import Testing

/// Issue #19: check takes a session file's inspection from `backups/.session-verdicts` while the
/// file is the very file inspected and has no `-journal` or `-wal` beside it. A file changed in
/// place (its mtime put back), replaced by a rename, rewritten to the same size, or given a hot
/// journal is inspected again; a damaged or forged cache is never trusted; the cache holds no
/// secret; and check's findings are the same with a warm cache as without one.
@Suite struct SessionVerdictCacheTests {
  static let logger = Logger(label: "test")

  /// Options for an in-process check that records nothing in the database and keeps the
  /// inspections of files however recently written.
  static func options(now: Date = Date(), isDeep: Bool = false) -> CheckOptions {
    var options = CheckOptions(isDeep: isDeep, writesResults: false, now: now)
    options.sessionVerdictRacyInterval = 0
    return options
  }

  /// One check: how many inspections it took from the cache, and its findings.
  static func check(_ fleet: TestFleet, isDeep: Bool = false) -> (reused: Int, findings: [CheckFinding]) {
    let context = CheckContext.gather(fleet.deployment, options: options(isDeep: isDeep))
    return (context.reusedInspections, CheckJob.findings(context))
  }

  /// The session files and `.session.backup` copies check inspects.
  static func inspectedFiles(_ fleet: TestFleet) throws -> [String] {
    try fleet.sessionUserIDs().flatMap { user in
      [fleet.sessionPath(user), fleet.sessionPath(user) + ".backup"].filter(FileSystem.exists)
    }
  }

  static func cachePath(_ fleet: TestFleet) -> String {
    SessionVerdicts.path(backupsDirectory: fleet.backupsDirectory)
  }

  /// Runs `body` on the file at `path`, then puts its modification (and access) time back: only
  /// the change time (and, for a rename, the inode) tells the file changed.
  static func keepingModificationTime(_ path: String, _ body: () throws -> Void) throws {
    var before = stat()
    #expect(stat(path, &before) == 0)
    try body()
    var times = [before.st_atim, before.st_mtim]
    #expect(utimensat(AT_FDCWD, path, &times, 0) == 0)
    var after = stat()
    #expect(stat(path, &after) == 0)
    #expect(after.st_mtim.tv_sec == before.st_mtim.tv_sec && after.st_mtim.tv_nsec == before.st_mtim.tv_nsec)
  }

  /// Overwrites `bytes` at `offset` of the file in place (same inode, same size).
  static func overwrite(_ path: String, at offset: UInt64, with bytes: [UInt8]) throws {
    let handle = try #require(FileHandle(forWritingAtPath: path))
    try handle.seek(toOffset: offset)
    try handle.write(contentsOf: bytes)
    try handle.close()
  }

  static func sessionFindings(_ findings: [CheckFinding], user: Int64) -> [CheckFinding] {
    findings.filter { $0.userID == user && $0.id == .userSession }
  }

  @Test func aFileChangedInPlaceWithItsTimePutBackIsInspectedAgainAndABrokenOneReported() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 4, pyrogramShare: 0, backedUp: true)
    let files = try Self.inspectedFiles(fleet)
    let first = Self.check(fleet)
    #expect(first.reused == 0)
    #expect(first.findings.filter { $0.state != .ok }.isEmpty, "\(first.findings)")
    let warm = Self.check(fleet)
    #expect(warm.reused == files.count, "every file was judged from the cache")
    #expect(warm.findings == first.findings)

    // Broken in place: the header's magic overwritten, mtime put back.
    let user = fleet.userIDs[0]
    let path = fleet.sessionPath(user)
    try Self.keepingModificationTime(path) { try Self.overwrite(path, at: 0, with: Array("garbage!".utf8)) }
    let broken = Self.check(fleet)
    #expect(broken.reused == files.count - 1)
    let found = Self.sessionFindings(broken.findings, user: user)
    #expect(found.count == 1 && found.first?.state == .critical, "\(broken.findings)")
    // Reported again on the next run: a broken file is never recorded.
    let again = Self.check(fleet)
    #expect(Self.sessionFindings(again.findings, user: user) == found)
    #expect(again.reused == files.count - 1)
  }

  @Test func aRenamedASameSizeRewrittenAndAHotJournalFileAreInspectedAgain() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 4, pyrogramShare: 0, backedUp: true)
    let users = fleet.userIDs
    let files = try Self.inspectedFiles(fleet)
    _ = Self.check(fleet)
    #expect(Self.check(fleet).reused == files.count)

    // 1. Replaced by a rename: another user's file (another key), mtime set to the old one's.
    let renamed = fleet.sessionPath(users[0])
    var old = stat()
    #expect(stat(renamed, &old) == 0)
    let copy = renamed + ".new"
    try FileManager.default.copyItem(atPath: fleet.sessionPath(users[1]), toPath: copy)
    var times = [old.st_atim, old.st_mtim]
    #expect(utimensat(AT_FDCWD, copy, &times, 0) == 0)
    #expect(rename(copy, renamed) == 0)

    // 2. Rewritten to the same size by SQLite (as Telethon saves): a new auth key, mtime put back.
    let rewritten = fleet.sessionPath(users[2])
    let size = try FileSystem.size(of: rewritten)
    try Self.keepingModificationTime(rewritten) {
      _ = try runPython(
        """
        import os, sqlite3, sys
        db = sqlite3.connect(sys.argv[1])
        db.execute('UPDATE sessions SET auth_key = ?', (os.urandom(256),))
        db.commit()
        db.close()
        """, arguments: [rewritten])
    }
    #expect(try FileSystem.size(of: rewritten) == size)

    // 3. A hot journal beside an otherwise unchanged file.
    let journaled = fleet.sessionPath(users[3])
    try Data([0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7] + [UInt8](repeating: 7, count: 504)).write(
      to: URL(fileURLWithPath: journaled + "-journal"))

    let run = Self.check(fleet)
    #expect(run.reused == files.count - 3, "\(run.findings)")
    // The database's string no longer matches the renamed and the rewritten files' keys.
    for user in [users[0], users[2]] {
      #expect(
        run.findings.contains { $0.userID == user && $0.id == .userAgree && $0.state == .warning }, "\(run.findings)")
    }
    let hot = Self.sessionFindings(run.findings, user: users[3])
    #expect(hot.count == 1 && hot.first?.state == .warning && hot.first?.reason.contains("hot journal") == true)
    // The same findings as a check that reads every file.
    try FileManager.default.removeItem(atPath: Self.cachePath(fleet))
    let cold = Self.check(fleet)
    #expect(cold.reused == 0)
    #expect(cold.findings == run.findings)
  }

  @Test func aDamagedOrForgedCacheIsIgnored() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 3, pyrogramShare: 0, backedUp: true)
    let files = try Self.inspectedFiles(fleet)
    _ = Self.check(fleet)
    let cachePath = Self.cachePath(fleet)
    let genuine = [UInt8](try FileSystem.read(cachePath))

    // Damaged: one byte in the middle.
    var damaged = genuine
    damaged[damaged.count / 2] ^= 0x01
    try Data(damaged).write(to: URL(fileURLWithPath: cachePath))
    #expect(Self.check(fleet).reused == 0)
    #expect(Self.check(fleet).reused == files.count, "rebuilt")

    // Forged: a file broken in place, and its line changed to its new state under the attacker's
    // HMAC key (the real one is derived from keys/signing.key, which the attacker cannot read).
    let user = fleet.userIDs[0]
    let path = fleet.sessionPath(user)
    let name = (path as NSString).lastPathComponent
    try Self.overwrite(path, at: 0, with: Array("garbage!".utf8))
    var info = stat()
    #expect(stat(path, &info) == 0)
    let text = String(decoding: try FileSystem.read(cachePath), as: UTF8.self)
    var lines = text.split(separator: "\n").dropLast().map(String.init)
    let index = try #require(lines.firstIndex { $0.hasPrefix(name + " ") })
    var fields = lines[index].split(separator: " ").map(String.init)
    fields[1...5] = [
      "\(info.st_dev)", "\(info.st_ino)", "\(info.st_size)",
      "\(Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec))",
      "\(Int64(info.st_ctim.tv_sec) * 1_000_000_000 + Int64(info.st_ctim.tv_nsec))",
    ]
    lines[index] = fields.joined(separator: " ")
    let forgedBody = Array((lines.joined(separator: "\n") + "\n").utf8)
    let attackerKey = SecretBytes(copying: try SecureRandom.bytes(32))
    let tag = try HMACSHA256.authenticate(key: attackerKey, data: forgedBody)
    try Data(forgedBody + Array("hmac \(Hex.encode(tag))\n".utf8)).write(to: URL(fileURLWithPath: cachePath))
    let run = Self.check(fleet)
    #expect(run.reused == 0)
    let found = Self.sessionFindings(run.findings, user: user)
    #expect(found.count == 1 && found.first?.state == .critical, "\(run.findings)")
  }

  @Test func checkDeepNeverUsesTheCacheAndNoSigningKeyMeansNoCache() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 3, pyrogramShare: 0, backedUp: true)
    _ = Self.check(fleet)
    let cached = [UInt8](try FileSystem.read(Self.cachePath(fleet)))
    let deep = Self.check(fleet, isDeep: true)
    #expect(deep.reused == 0)
    #expect([UInt8](try FileSystem.read(Self.cachePath(fleet))) == cached, "--deep leaves the cache alone")
    #expect(
      deep.findings.filter { $0.id.rawValue.hasPrefix("user.") }
        == Self.check(fleet).findings.filter { $0.id.rawValue.hasPrefix("user.") })
    // Without the signing key nothing is taken from the cache, nor written to it.
    try FileManager.default.removeItem(atPath: Self.cachePath(fleet))
    let keyPath = fleet.deployment.signingKeyPath
    try FileManager.default.moveItem(atPath: keyPath, toPath: keyPath + ".away")
    #expect(Self.check(fleet).reused == 0)
    #expect(!FileSystem.exists(Self.cachePath(fleet)))
  }

  @Test func theCacheHoldsNoSecret() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 4, backedUp: true, collectsSecrets: true)
    _ = Self.check(fleet)
    let text = try String(contentsOfFile: Self.cachePath(fleet), encoding: .utf8)
    #expect(text.split(separator: "\n").count == (try Self.inspectedFiles(fleet)).count + 2, "header, lines, hmac")
    fleet.keep("backups/.session-verdicts", text, "")
    #expect(fleet.secretCount > 0)
    #expect(try fleet.leakedSecrets().isEmpty)
  }

  /// `check --json` gives the same result with a warm cache as without one, before and after
  /// files changed between runs.
  @Test func theResultIsTheSameWithAWarmCacheAsWithout() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 6, pyrogramShare: 0.34, backedUp: true)
    func json(_ now: Date) throws -> String {
      var result = CheckJob.run(fleet.deployment, options: Self.options(now: now), logger: Self.logger)
      // Timings, and the free space the cache file itself takes, aside.
      result.durationSeconds = 0
      result.freeBytes = nil
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
      encoder.dateEncodingStrategy = .iso8601
      return String(decoding: try encoder.encode(result), as: UTF8.self)
    }
    func warmAndCold() throws -> (warm: String, cold: String) {
      let now = Date()
      _ = try json(now)
      let warm = try json(now)
      try FileManager.default.removeItem(atPath: Self.cachePath(fleet))
      return (warm, try json(now))
    }
    let unchanged = try warmAndCold()
    #expect(unchanged.warm == unchanged.cold)

    // Files change between runs: one broken, one with another key, one removed, a hot journal.
    let users = fleet.userIDs
    try Self.keepingModificationTime(fleet.sessionPath(users[0])) {
      try Self.overwrite(fleet.sessionPath(users[0]), at: 0, with: Array("garbage!".utf8))
    }
    try FileManager.default.copyItem(atPath: fleet.sessionPath(users[2]), toPath: fleet.sessionPath(users[1]) + ".new")
    #expect(rename(fleet.sessionPath(users[1]) + ".new", fleet.sessionPath(users[1])) == 0)
    try FileManager.default.removeItem(atPath: fleet.sessionPath(users[3]))
    try Data([0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7] + [UInt8](repeating: 1, count: 504)).write(
      to: URL(fileURLWithPath: fleet.sessionPath(users[4]) + "-journal"))
    let changed = try warmAndCold()
    #expect(changed.warm == changed.cold)
    #expect(changed.warm != unchanged.warm)
  }
}

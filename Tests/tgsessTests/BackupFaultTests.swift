import Foundation
import Jobs
import Store
import TestSupport
import Testing

/// `tgsess backup` under faults: live writers on the files it snapshots, SIGKILL at each crash
/// point and at random moments, a full disk, a hot journal. Each test checks what an operator
/// relies on afterwards: listed archives verify, earlier ones are untouched, nothing partial is
/// visible, and the next run succeeds and cleans up.
@Suite struct BackupFaultTests {
  static func backup(_ fleet: TestFleet, _ arguments: [String] = []) throws -> BackupResult {
    try BackupCLITests.backup(fleet, arguments)
  }

  static func list(_ fleet: TestFleet) throws -> [ListedArchive] { try BackupCLITests.list(fleet) }

  /// The path of an archive relative to the backups directory.
  static func relative(_ path: String, _ fleet: TestFleet) -> String {
    String(path.dropFirst(fleet.backupsDirectory.count + 1))
  }

  static func isArchiveName(_ path: String) -> Bool {
    path.hasSuffix(ArchiveName.encryptedSuffix) || path.hasSuffix(ArchiveName.plainSuffix)
  }

  static func recordPath(ofArchive path: String) -> String {
    let suffix = path.hasSuffix(ArchiveName.encryptedSuffix) ? ArchiveName.encryptedSuffix : ArchiveName.plainSuffix
    return String(path.dropLast(suffix.count)) + ArchiveName.recordSuffix
  }

  static func signaturePath(ofArchive path: String) -> String {
    String(recordPath(ofArchive: path).dropLast(ArchiveName.recordSuffix.count)) + ArchiveSignature.fileSuffix
  }

  /// The crash points between signing and publishing: the signature is in place, the archive
  /// not yet; the next run removes the orphan signature.
  static let signedNotPublished: Set<String> = ["archive.after-sign", "archive.before-publish"]

  /// How an archive is proven after a crash.
  enum Proof {
    /// Decrypted by age, extracted by tar, hashed by sha256sum, checked by sqlite3.
    case stockTools
    /// tgsess's own reader (every entry's SHA-256 against the manifest), for hundreds of archives.
    case reader
  }

  /// What must hold after a backup was killed: earlier files byte-identical, only hidden
  /// temporaries or staging directories left, every new visible file a listed archive (or its
  /// record or signature; one orphan signature only when killed between signing and publishing:
  /// at those crash points, or anywhere for a kill at a random moment),
  /// every listed new archive signed and verifying; then the next backup succeeds and leaves no
  /// temporaries and no orphan, and every archive has its record and signature.
  static func expectSoundAfterKill(
    _ fleet: TestFleet, before: TreeSnapshot, label: String, proof: Proof = .stockTools,
    expectsLeftovers: Bool = false, isRandomKill: Bool = false, sourceLocation: SourceLocation = #_sourceLocation
  ) throws {
    let after = try TreeSnapshot(fleet.backupsDirectory)
    // Archives are written one at a time: a kill leaves at most the one being published.
    let orphansAllowed = signedNotPublished.contains(label) || isRandomKill ? 1 : 0
    var orphans: [String] = []
    if expectsLeftovers {
      #expect(
        !after.hidden.isEmpty, "\(label): the killed run left no staging directory", sourceLocation: sourceLocation)
    }
    for (path, sum) in before.files {
      #expect(after.files[path] == sum, "\(label): \(path) changed or vanished", sourceLocation: sourceLocation)
    }
    for hidden in after.hidden {
      let name = (hidden as NSString).lastPathComponent
      #expect(
        FileSystem.isTemporaryName(name) || (name.hasPrefix(".staging-") && !hidden.contains("/")),
        "\(label): unexpected hidden entry \(hidden)", sourceLocation: sourceLocation)
    }
    let listed = try list(fleet)
    let listedPaths = Set(listed.map { relative($0.path, fleet) })
    #expect(listedPaths.allSatisfy { after.files[$0] != nil }, sourceLocation: sourceLocation)
    for path in after.files.keys where before.files[path] == nil {
      if isArchiveName(path) {
        #expect(listedPaths.contains(path), "\(label): \(path) not listed", sourceLocation: sourceLocation)
        #expect(
          after.files[signaturePath(ofArchive: path)] != nil, "\(label): \(path) published without its signature",
          sourceLocation: sourceLocation)
      } else if path.hasSuffix(ArchiveSignature.fileSuffix) {
        let id = String(path.dropLast(ArchiveSignature.fileSuffix.count))
        if after.files[id + ArchiveName.encryptedSuffix] == nil, after.files[id + ArchiveName.plainSuffix] == nil {
          orphans.append(path)
        }
      } else if path.hasSuffix(ArchiveName.recordSuffix) {
        let id = String(path.dropLast(ArchiveName.recordSuffix.count))
        #expect(
          after.files[id + ArchiveName.encryptedSuffix] != nil || after.files[id + ArchiveName.plainSuffix] != nil,
          "\(label): record \(path) without its archive", sourceLocation: sourceLocation)
      } else {
        Issue.record("\(label): unexpected visible file \(path)", sourceLocation: sourceLocation)
      }
    }
    #expect(
      orphans.count <= orphansAllowed, "\(label): signatures without their archive: \(orphans)",
      sourceLocation: sourceLocation)
    // Every listed archive verifies (the earlier ones are byte-identical to what verified then).
    let scratch = try TemporaryDirectory("tgsess-verify")
    let identities = try KeyStore.loadIdentities(Deployment(root: fleet.root))
    for archive in listed {
      let isNew = before.files[relative(archive.path, fleet)] == nil
      if proof == .stockTools || (isNew && archive.kind == .full) {
        let (problems, _, directory) = try StockTools.extractAndVerify(
          archive.path, identity: fleet.identityPath, scratch: scratch.path)
        #expect(problems.isEmpty, "\(label): \(archive.id): \(problems)", sourceLocation: sourceLocation)
        try? FileManager.default.removeItem(atPath: directory)
      } else if isNew {
        #expect(throws: Never.self, "\(label): \(archive.id)", sourceLocation: sourceLocation) {
          _ = try ArchiveReader.read(path: archive.path, identities: identities)
        }
      }
    }
    // The next backup succeeds and removes what the dead run left.
    let next = try fleet.tgsess(["backup", "--json"])
    #expect(next.status == 0, "\(label): next backup: \(next.stderr)", sourceLocation: sourceLocation)
    let cleaned = try TreeSnapshot(fleet.backupsDirectory)
    #expect(
      cleaned.hidden.isEmpty, "\(label): left after the next run: \(cleaned.hidden)", sourceLocation: sourceLocation)
    for (path, sum) in before.files {
      #expect(cleaned.files[path] == sum, "\(label): \(path) changed", sourceLocation: sourceLocation)
    }
    let archives = cleaned.files.keys.filter(isArchiveName)
    let records = cleaned.files.keys.filter { $0.hasSuffix(ArchiveName.recordSuffix) }
    #expect(Set(archives.map(recordPath(ofArchive:))) == Set(records), "\(label)", sourceLocation: sourceLocation)
    let signatures = cleaned.files.keys.filter { $0.hasSuffix(ArchiveSignature.fileSuffix) }
    #expect(
      Set(archives.map(signaturePath(ofArchive:))) == Set(signatures), "\(label)", sourceLocation: sourceLocation)
    #expect(
      try list(fleet).allSatisfy { $0.verification == .full && $0.signature == .signed }, "\(label)",
      sourceLocation: sourceLocation)
  }

  // MARK: - Live writers

  @Test func backupsTakenWhileTheBotWritesAreConsistent() throws {
    try StockTools.require()
    let fleet = try TestFleet(users: 12, entities: 120, collectsSecrets: true)
    let writerUsers = Array(try fleet.telethonUserIDs().prefix(4))
    try #require(writerUsers.count == 4)
    let sessions = try LiveWriter.telethonLike(sessionFiles: writerUsers.map(fleet.sessionPath))
    defer { _ = try? sessions.stop() }
    let bot = try LiveWriter.botDatabase(fleet.databasePath)
    defer { _ = try? bot.stop() }

    let scratch = try TemporaryDirectory("tgsess-live")
    var copied = -1
    var sequences = Dictionary(uniqueKeysWithValues: writerUsers.map { ($0, -1) })
    for (round, isEncrypted) in [false, true, false, true].enumerated() {
      let result = try Self.backup(fleet, isEncrypted ? [] : ["--no-encrypt"])
      #expect(result.failures.isEmpty)
      // Entity-cache churn is not an identity change: only the first run writes per-user archives.
      #expect(result.archives.filter { $0.kind == .user }.count == (round == 0 ? 12 : 0))
      for archive in result.archives where archive.kind == .full || writerUsers.contains(archive.userID ?? 0) {
        #expect(archive.path.hasSuffix(isEncrypted ? ".tar.zst.age" : ".tar.zst"))
        let (problems, _, directory) = try StockTools.extractAndVerify(
          archive.path, identity: fleet.identityPath, scratch: scratch.path)
        #expect(problems.isEmpty, "round \(round) \(archive.id): \(problems)")  // integrity_check included
        for user in writerUsers where archive.kind == .full || archive.userID == user {
          let file = directory + "/sessions/user_\(user).session"
          #expect(try StockTools.query(file, LiveWriter.sessionInvariant) == "1", "round \(round) user \(user)")
          if archive.kind == .full {
            // Each snapshot is newer than the previous one: the writers ran throughout.
            let sequence = Int(try StockTools.query(file, "SELECT seq FROM update_state WHERE id = 0")) ?? -1
            #expect(sequence > sequences[user]!, "round \(round) user \(user)")
            sequences[user] = sequence
          }
        }
        if archive.kind == .full {
          let database = directory + "/data/telegram_bot.db"
          #expect(try StockTools.query(database, LiveWriter.databaseInvariant) == "1", "round \(round)")
          let count = Int(try StockTools.query(database, "SELECT copied FROM copy_stats")) ?? -1
          #expect(count > copied, "round \(round)")
          copied = count
        }
      }
      // Both writers commit again before the next backup starts.
      try sessions.waitForCommits(moreThan: sessions.commits)
      try bot.waitForCommits(moreThan: bot.commits)
    }
    #expect(try sessions.stop() > 4)
    #expect(try bot.stop() > 4)
    // The live files are sound and keep their invariants too.
    for user in writerUsers {
      #expect(try StockTools.integrityCheck(fleet.sessionPath(user)) == "ok")
      #expect(try StockTools.query(fleet.sessionPath(user), LiveWriter.sessionInvariant) == "1")
    }
    #expect(try StockTools.query(fleet.databasePath, LiveWriter.databaseInvariant) == "1")
    try BackupCLITests.expectNoLeaks(fleet)
  }

  // MARK: - kill -9

  /// Every crash point on a backup's path. (Staging writes no atomic files: snapshots go to
  /// memory and one pack file, so the `atomic.*` points are not on it.)
  static let crashPoints = [
    "archive.before-fsync", "archive.after-verify", "archive.after-sign", "archive.before-publish",
    "archive.after-publish",
    "backup.after-session-snapshot", "backup.between-users",
  ]

  @Test(arguments: crashPoints)
  func killedAtACrashPoint(_ point: String) throws {
    try StockTools.require()
    let fleet = try TestFleet(users: 6, entities: 120, collectsSecrets: true)
    _ = try Self.backup(fleet)
    // Two users get new keys, so the killed run also writes per-user archives: every crash point
    // is on its path.
    for user in try fleet.telethonUserIDs().prefix(2) {
      try runProcess(StockTools.sqlite3, [fleet.sessionPath(user), "UPDATE sessions SET auth_key = randomblob(256)"])
    }
    try fleet.collectSecrets()
    let before = try TreeSnapshot(fleet.backupsDirectory)
    let crashed = try fleet.tgsessInBackground(["backup"], environment: ["TGSESS_CRASH_POINT": point])
    let (status, signal) = crashed.wait()
    fleet.keep(crashed)
    #expect(status == 137 && signal == SIGKILL, "\(point) was not reached (status \(status)): \(crashed.stderr)")
    // Every crash point is inside the run's staging area, which a SIGKILL leaves behind.
    try Self.expectSoundAfterKill(fleet, before: before, label: point, expectsLeftovers: true)
    try BackupCLITests.expectNoLeaks(fleet)
  }

  /// The database's snapshot is scratch once the full archive holds it: it is gone before the
  /// per-user archives are written and flushed (a flush that wrote it out held the bot's commit
  /// 186 ms at 500 MiB in `BENCH_ONLY=stall`; 7 ms without).
  @Test func theDatabaseSnapshotIsDroppedBeforeThePerUserArchives() throws {
    let fleet = try TestFleet(users: 3)
    let crashed = try fleet.tgsessInBackground(
      ["backup"], environment: ["TGSESS_CRASH_POINT": "backup.between-users"])
    let (status, signal) = crashed.wait()
    #expect(status == 137 && signal == SIGKILL, "the crash point was not reached: \(crashed.stderr)")
    // The killed run's staging area is left behind with what it still held at that moment.
    let stagings = try FileSystem.directoryNames(fleet.backupsDirectory).filter { $0.hasPrefix(".staging-") }
    let staging = fleet.backupsDirectory + "/" + (try #require(stagings.first))
    #expect(stagings.count == 1)
    #expect(FileSystem.exists(staging + "/snapshots.pack"), "the session snapshots are still needed")
    #expect(try FileSystem.directoryNames(staging + "/data").isEmpty)
    // The next run cleans up and succeeds.
    #expect(try Self.backup(fleet).failures.isEmpty)
    #expect(try FileSystem.directoryNames(fleet.backupsDirectory).filter { $0.hasPrefix(".staging-") }.isEmpty)
  }

  @Test func randomKillsOfABigBackupLeaveOnlyVerifiedArchives() throws {
    try StockTools.require()
    // On tmpfs: 300 users cost thousands of fsyncs on a disk, and SIGKILL does not depend on them.
    let scratch = try TemporaryDirectory("tgsess-big")
    let mount = try TmpfsMount(at: scratch.file("mnt"), sizeKiB: 512 * 1024)
    defer { mount.unmount() }
    let fleet = try TestFleet(users: 300, entities: 120, collectsSecrets: true, location: .path(mount.path + "/fleet"))
    let first = try Self.backup(fleet)
    #expect(first.archives.count == 301)
    var killed = 0
    for round in 0..<3 {
      // Every key changes, so each run writes a full archive and 300 per-user archives, as the first did.
      try runPython(
        """
        import os, sqlite3, sys
        for name in os.listdir(sys.argv[1]):
            if name.endswith('.session'):
                conn = sqlite3.connect(os.path.join(sys.argv[1], name))
                conn.execute('UPDATE sessions SET auth_key = randomblob(256)')
                conn.commit()
                conn.close()
        """, arguments: [fleet.sessionsDirectory])
      try fleet.collectSecrets()
      let before = try TreeSnapshot(fleet.backupsDirectory)
      let run = try fleet.tgsessInBackground(["backup"])
      usleep(UInt32.random(in: 0..<UInt32(max(first.durationMS, 50) * 800)))
      run.kill()
      let (status, signal) = run.wait()
      fleet.keep(run)
      if signal == SIGKILL { killed += 1 } else { #expect(status == 0, "round \(round): \(run.stderr)") }
      try Self.expectSoundAfterKill(fleet, before: before, label: "round \(round)", proof: .reader, isRandomKill: true)
    }
    #expect(killed > 0, "no run was killed before it finished")
    try BackupCLITests.expectNoLeaks(fleet)
  }

  @Test func aRecordHiddenByAKillAfterPublishIsRolledForward() throws {
    let fleet = try TestFleet(users: 3, entities: 120, collectsSecrets: true)
    let result = try Self.backup(fleet, ["--user", String(try fleet.sessionUserIDs()[0])])
    let archive = try #require(result.archives.first)
    // The state a SIGKILL between publishing the archive and renaming its record leaves.
    let finished = try BackgroundProcess("/bin/true", [])
    _ = finished.wait()
    let record = Self.recordPath(ofArchive: archive.path)
    let directory = (record as NSString).deletingLastPathComponent
    let hidden = directory + "/." + (record as NSString).lastPathComponent + ".tgsess-tmp-\(finished.pid)-abc123"
    try FileManager.default.moveItem(atPath: record, toPath: hidden)
    #expect(try Self.list(fleet).first { $0.id == archive.id }?.verification == .unknown)

    #expect(try fleet.tgsess(["backup"]).status == 0)
    #expect(FileManager.default.fileExists(atPath: record))
    #expect(!FileManager.default.fileExists(atPath: hidden))
    let listed = try #require(try Self.list(fleet).first { $0.id == archive.id })
    #expect(listed.verification == .full && listed.reason == "Manual")
    try BackupCLITests.expectNoLeaks(fleet)
  }

  // MARK: - Disk full

  /// Fills the mount until `free` bytes are left (a file named `filler`).
  static func fill(_ mount: TmpfsMount, leaving free: Int64) throws {
    let path = mount.path + "/filler"
    let current = (try? FileSystem.size(of: path)) ?? 0
    let target = max(0, current + mount.freeBytes - free)
    unlink(path)
    let fd = open(path, O_WRONLY | O_CREAT, 0o600)
    guard fd >= 0 else { throw TestHelperError("cannot create \(path)") }
    defer { close(fd) }
    guard target == 0 || posix_fallocate(fd, 0, off_t(target)) == 0 else {
      throw TestHelperError("posix_fallocate of \(target) bytes failed")
    }
  }

  static func expectDiskFullFailure(
    _ result: ProcessResult, _ fleet: TestFleet, sourceLocation: SourceLocation = #_sourceLocation
  ) {
    #expect(result.status == 1, sourceLocation: sourceLocation)
    #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)", sourceLocation: sourceLocation)
    #expect(result.stderr.hasPrefix("tgsess: backup: \(fleet.backupsDirectory)/"), sourceLocation: sourceLocation)
    #expect(
      result.stderr.hasSuffix(" failed: no space left on device; free space there and run again\n"),
      "\(result.stderr)", sourceLocation: sourceLocation)
  }

  @Test func aFullDiskFailsTheBackupAndLeavesEarlierArchivesAlone() throws {
    let fleet = try TestFleet(users: 30, entities: 120, collectsSecrets: true)
    let mount = try TmpfsMount(at: fleet.backupsDirectory, sizeKiB: 8 * 1024)
    defer { mount.unmount() }
    let first = try Self.backup(fleet)
    #expect(first.archives.count == 31)
    let listed = try Self.list(fleet).map(\.id)
    let before = try TreeSnapshot(fleet.backupsDirectory)
    func withoutFiller(_ snapshot: TreeSnapshot) -> [String: String] { snapshot.files.filter { $0.key != "filler" } }

    // 1. Hardly any space: the database snapshot cannot be staged.
    try Self.fill(mount, leaving: 64 * 1024)
    let early = try fleet.tgsess(["backup"])
    Self.expectDiskFullFailure(early, fleet)
    #expect(early.stderr.contains("/.staging-"))

    // 2. Room to stage every file, not to write the archive.
    var staged = try FileSystem.size(of: fleet.databasePath)
    for name in try FileManager.default.contentsOfDirectory(atPath: fleet.sessionsDirectory) {
      staged += try FileSystem.size(of: fleet.sessionsDirectory + "/" + name)
    }
    let full = try #require(first.archives.first { $0.kind == .full })
    try Self.fill(mount, leaving: staged + full.byteCount / 2)
    let late = try fleet.tgsess(["backup"])
    Self.expectDiskFullFailure(late, fleet)
    #expect(late.stderr.contains("/full/.") && late.stderr.contains(".tar.zst.age.tgsess-tmp-"), "\(late.stderr)")

    for result in [early, late] { #expect(result.stdout.isEmpty) }
    // No new archive, earlier ones untouched, nothing left behind by the failed runs.
    #expect(try Self.list(fleet).map(\.id) == listed)
    let failed = try TreeSnapshot(fleet.backupsDirectory)
    #expect(withoutFiller(failed) == withoutFiller(before))
    #expect(failed.hidden.isEmpty)

    // Space freed: the next backup succeeds and leaves nothing behind.
    unlink(mount.path + "/filler")
    let next = try Self.backup(fleet)
    #expect(next.archives.count == 1)
    let after = try TreeSnapshot(fleet.backupsDirectory)
    #expect(after.hidden.isEmpty)
    #expect(before.files.allSatisfy { after.files[$0.key] == $0.value || $0.key == "filler" })
    #expect(Set(try Self.list(fleet).map(\.id)) == Set([next.archives[0].id] + listed))
    try BackupCLITests.expectNoLeaks(fleet)
  }

  // MARK: - Hot journal

  @Test func aHotJournalLeftInTheBotDatabaseIsRolledBackNotFatal() throws {
    try StockTools.require()
    let fleet = try TestFleet(users: 3, entities: 120, collectsSecrets: true)
    _ = try Self.backup(fleet)
    let rows = try StockTools.query(fleet.databasePath, "SELECT count(*) FROM session_backups")
    // A writer (the bot, or a tgsess recording a backup) killed in the middle of a transaction.
    let killed = try runProcess(
      TestEnvironment.python,
      [
        "-c",
        """
        import os, sqlite3, sys
        conn = sqlite3.connect(sys.argv[1], isolation_level=None)
        conn.execute('PRAGMA cache_size = 2')
        conn.execute('BEGIN')
        for i in range(2000):
            conn.execute('INSERT INTO session_backups(user_id, backup_reason, created_at) VALUES (1, ?, ?)',
                         ('x' * 200, '2020-01-01 00:00:00'))
        os.kill(os.getpid(), 9)
        """, fleet.databasePath,
      ])
    #expect(killed.status == SIGKILL)
    #expect(FileManager.default.fileExists(atPath: fleet.databasePath + "-journal"))
    // The journal is hot: a read-only reader cannot use the file.
    #expect(
      try runProcess(StockTools.sqlite3, ["-readonly", fleet.databasePath, "SELECT count(*) FROM session_backups"])
        .status != 0)

    let result = try fleet.tgsess(["backup", "--json"])
    #expect(result.status == 0, "\(result.stderr)")
    #expect(try StockTools.query(fleet.databasePath, "SELECT count(*) FROM session_backups") == rows)
    #expect(try StockTools.integrityCheck(fleet.databasePath) == "ok")
    let full = try #require(try decodeJSON(BackupResult.self, from: result).archives.first { $0.kind == .full })
    let scratch = try TemporaryDirectory()
    let (problems, _, directory) = try StockTools.extractAndVerify(
      full.path, identity: fleet.identityPath, scratch: scratch.path)
    #expect(problems.isEmpty)
    #expect(try StockTools.query(directory + "/data/telegram_bot.db", "SELECT count(*) FROM session_backups") == rows)
    try BackupCLITests.expectNoLeaks(fleet)
  }
}

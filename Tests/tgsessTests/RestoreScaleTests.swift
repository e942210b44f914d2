import Foundation
import Jobs
import Logging
import Store
import TestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// Issue #19, restores at fleet scale: a single-user restore or recover looks at its own user's
/// archive directory only, a restored database is not read again once the very file verified in
/// staging is renamed into place, and a restore reports its phases' progress to a caller that
/// asks (a TTY) and prints none of it otherwise.
@Suite struct RestoreScaleTests {
  static let logger = Logger(label: "test")

  /// A temporary a dead run left in `userID`'s archive directory.
  static func plantLeftover(_ fleet: TestFleet, userID: Int64) throws -> String {
    let path =
      fleet.backupsDirectory + "/users/user_\(userID)/.20200101T000000Z-u\(userID)-aaaaaa.json.tgsess-tmp-999999-abc"
    try FileSystem.writeAtomically(Data("{}".utf8), to: path)
    return path
  }

  /// Every restore and recover listed all 10,000 user directories to clean what dead runs left
  /// (0.4 s of a 0.45 s restore --user at 10,000 users); a run for one user writes archives only
  /// in that user's directory, so it cleans that one, and the next backup the others.
  @Test func aSingleUserRestoreAndRecoverCleanOnlyTheirOwnArchiveDirectory() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 3, initialized: true, backedUp: true)
    let (user, other) = (fleet.userIDs[0], fleet.userIDs[1])
    // Something to replace, so the restore takes its undo too.
    try fleet.sqlite("UPDATE user_sessions SET session_string = 'changed' WHERE user_id = \(user)")
    var own = try Self.plantLeftover(fleet, userID: user)
    let others = try Self.plantLeftover(fleet, userID: other)
    try fleet.tgsessOK(["restore", "latest", "--user", String(user)])
    #expect(!FileSystem.exists(own))
    #expect(FileSystem.exists(others))
    unlink(fleet.sessionPath(user))
    own = try Self.plantLeftover(fleet, userID: user)
    try fleet.tgsessOK(["recover", "--user", String(user)])
    #expect(FileSystem.exists(fleet.sessionPath(user)))
    #expect(!FileSystem.exists(own))
    #expect(FileSystem.exists(others))
    try fleet.tgsessOK(["backup"])
    #expect(!FileSystem.exists(others))
  }

  /// Runs `tgsess ARGUMENTS --root ROOT` under `strace -f -qq` with `options` (every thread).
  /// - Returns: the path of strace's log.
  /// - Throws: `TestHelperError` when strace is missing or the run fails.
  static func traced(_ fleet: TestFleet, _ arguments: [String], strace options: [String]) throws -> String {
    let strace = "/usr/bin/strace"
    guard FileManager.default.isExecutableFile(atPath: strace) else {
      throw TestHelperError("\(strace) is missing; install it: apt-get install -y strace")
    }
    let log = fleet.directory.file("strace-\(UUID().uuidString).log")
    let result = try runProcess(
      strace,
      ["-f", "-qq"] + options + ["-o", log, TestEnvironment.productPath("tgsess")] + arguments + ["--root", fleet.root])
    guard result.status == 0 else {
      throw TestHelperError("tgsess \(arguments) exited \(result.status): \(result.stderr)")
    }
    return log
  }

  /// The directory reads of `tgsess ARGUMENTS --root ROOT` under strace: for each directory
  /// (absolute path), how many getdents64 calls it made and whether one of them reached the end
  /// (returned 0: the whole directory was listed).
  static func directoryReads(_ fleet: TestFleet, _ arguments: [String]) throws -> [String: (
    calls: Int, listedWhole: Bool
  )] {
    // -y: each descriptor argument is printed with its path, "getdents64(5</root/sessions>, ...".
    let log = try traced(fleet, arguments, strace: ["-y", "-e", "trace=getdents64"])
    // "PID getdents64(FD<PATH>, ...) = BYTES"; a call another thread interrupted is split into
    // "PID getdents64(FD<PATH>, <unfinished ...>" and "PID <... getdents64 resumed>...) = BYTES".
    var pending: [Substring: Substring] = [:]
    var reads: [String: (calls: Int, listedWhole: Bool)] = [:]
    for line in try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n") {
      let fields = line.split(separator: " ", maxSplits: 1)
      guard fields.count == 2 else { continue }
      // strace pads the pid: "5559  getdents64(".
      var call = fields[1].drop(while: { $0 == " " })
      if call.hasSuffix("<unfinished ...>") {
        pending[fields[0]] = call
        continue
      }
      if call.hasPrefix("<... getdents64 resumed>") {
        guard let start = pending.removeValue(forKey: fields[0]) else { continue }
        call = start + call.dropFirst("<... getdents64 resumed>".count)
      }
      guard call.hasPrefix("getdents64("), let open = call.firstIndex(of: "<"),
        let close = call[open...].firstIndex(of: ">"), let equals = call.range(of: " = ", options: .backwards)
      else { continue }
      let path = String(call[call.index(after: open)..<close])
      var read = reads[path] ?? (0, false)
      read.calls += 1
      if call[equals.upperBound...].hasPrefix("0") { read.listedWhole = true }
      reads[path] = read
    }
    return reads
  }

  /// Issue #19: `recover --user` listed every name in sessions/ twice (the sweep of dead runs'
  /// temporaries, and the Telethon version of a rebuilt file taken from its neighbours), which
  /// made it grow with the fleet (47 ms at 10,000 users, 96 ms at 100,000). It now lists no
  /// directory that holds the fleet: neither sessions/ nor backups/users/.
  @Test func aSingleUserRecoverListsNoDirectoryOfTheWholeFleet() throws {
    try Tools.require()
    // More session files than the version sample takes, so a whole listing is told from it.
    let fleet = try TestFleet(users: 12, initialized: true, backedUp: true)
    let user = fleet.userIDs[3]
    unlink(fleet.sessionPath(user))
    let reads = try Self.directoryReads(fleet, ["recover", "--user", String(user)])
    #expect(FileSystem.exists(fleet.sessionPath(user)))
    let sessions = URL(fileURLWithPath: fleet.sessionsDirectory).resolvingSymlinksInPath().path
    #expect(reads[sessions]?.listedWhole != true, "\(reads.mapValues { "\($0)" })")
    #expect(
      reads[URL(fileURLWithPath: fleet.backupsDirectory + "/users").resolvingSymlinksInPath().path] == nil,
      "\(reads.mapValues { "\($0)" })")
    // The whole run still lists them (the sweep of every user's temporaries).
    let all = try Self.directoryReads(fleet, ["recover", "--all"])
    #expect(all[sessions]?.listedWhole == true, "\(all.mapValues { "\($0)" })")
  }

  /// The paths `tgsess ARGUMENTS --root ROOT` opened or tried to open (strace, every thread).
  static func openedPaths(_ fleet: TestFleet, _ arguments: [String]) throws -> [String] {
    let log = try traced(fleet, arguments, strace: ["-e", "trace=open,openat"])
    // "PID openat(AT_FDCWD, "PATH", ...": the first quoted argument.
    return try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").compactMap { line in
      guard let start = line.firstIndex(of: "\""), let end = line[line.index(after: start)...].firstIndex(of: "\"")
      else { return nil }
      return String(line[line.index(after: start)..<end])
    }
  }

  /// Issue #19: the scheduled backup takes signature verdicts from `backups/.signatures`, which
  /// holds one line per archive of the fleet; a one-user backup (`backup --user`, the undo of
  /// `restore --user`, recover's post-recovery archive) loaded it too and grew with the fleet
  /// (restore/recover --user 31 → 198 ms at 100,000 users). They never open it.
  @Test func aSingleUserRunNeverOpensTheFleetsSignatureVerdicts() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 3, initialized: true, backedUp: true)
    let user = fleet.userIDs[1]
    // Whether the file exists yet or not (check records only archives older than 2 s), strace
    // shows every attempt to open it.
    let scheduled = try Self.openedPaths(fleet, ["backup"])
    #expect(scheduled.contains { $0.hasSuffix("/.signatures") }, "the scheduled run reads them: \(scheduled)")
    for arguments in [["backup", "--user", String(user)], ["restore", "latest", "--user", String(user), "--force"]] {
      let opened = try Self.openedPaths(fleet, arguments)
      #expect(!opened.contains { $0.hasSuffix("/.signatures") }, "\(arguments)")
    }
    unlink(fleet.sessionPath(user))
    let recovered = try Self.openedPaths(fleet, ["recover", "--user", String(user)])
    #expect(!recovered.contains { $0.hasSuffix("/.signatures") })
    #expect(FileSystem.exists(fleet.sessionPath(user)))
  }

  /// A recover killed while it wrote a user's session file leaves the temporary (an auth key)
  /// under the name a run for that user writes: the rerun for that user removes it without
  /// listing sessions/; another user's is left to `recover --all`, which removes every dead run's.
  @Test func aSingleUserRecoverRemovesItsOwnDeadTemporaryAndLeavesOthersToTheWholeRun() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 3, initialized: true, backedUp: true)
    let (user, other) = (fleet.userIDs[0], fleet.userIDs[1])
    let own = FileSystem.lockedTemporaryPath(for: fleet.sessionPath(user))
    let ownJournal = own + "-journal"
    let others = fleet.sessionsDirectory + "/.user_\(other).session.tgsess-tmp-999999-abc"
    for path in [own, ownJournal, others] { try FileSystem.writeAtomically(Data("auth key".utf8), to: path) }
    unlink(fleet.sessionPath(user))
    try fleet.tgsessOK(["recover", "--user", String(user)])
    #expect(FileSystem.exists(fleet.sessionPath(user)))
    #expect(!FileSystem.exists(own))
    #expect(!FileSystem.exists(ownJournal))
    #expect(FileSystem.exists(others))
    try fleet.tgsessOK(["recover", "--all"])
    #expect(!FileSystem.exists(others))
    #expect(try fleet.sessionDirectoryNames().filter { FileSystem.isTemporaryName($0) }.isEmpty)
  }

  /// The database of a --target restore is the file that passed integrity_check in staging,
  /// renamed into place under the lock: the check after the restore no longer reads all of it
  /// again (quick_check of a 135 MB database at 10,000 users).
  @Test func aRenamedDatabaseIsNotReadAgainAfterTheRestore() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 3, initialized: true, backedUp: true)
    let faults = try InjectedFaultTests.Faults(fleet)
    let target = faults.work + "/tmp/target"
    let opened = try faults.calls("open", of: ["restore", "latest", "--target", target]).map(\.path)
    #expect(FileSystem.exists(target + "/data/telegram_bot.db"))
    #expect(!opened.contains(target + "/data/telegram_bot.db"), "\(opened.filter { $0.hasPrefix(target + "/data") })")
    // The restored copy is sound: what was verified is what is there.
    #expect(try fleet.sqlite("PRAGMA integrity_check", path: target + "/data/telegram_bot.db") == "ok")
  }

  /// The directories a restore extracts into are scratch (each file is fsynced and renamed out,
  /// then its destination directory synced): creating them synced the staging directory, once
  /// per directory made.
  @Test func aRestoreSyncsNoStagingDirectory() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 3, initialized: true, backedUp: true)
    let faults = try InjectedFaultTests.Faults(fleet)
    let target = faults.work + "/tmp/target"
    let synced = try faults.calls("fsync", of: ["restore", "latest", "--target", target]).map(\.path)
    let stagingDirectories = synced.filter { path in
      let name = (path as NSString).lastPathComponent
      return name.hasPrefix(".staging-") || ["sessions", "data"].contains(name) && path.contains("/.staging-")
    }
    #expect(stagingDirectories.isEmpty, "\(stagingDirectories)")
    // What is installed is still synced: the files, then their directories.
    #expect(synced.contains(target + "/sessions") && synced.contains(target + "/data"), "\(synced)")
  }

  /// A run for one user looked for interrupted pair installs by listing every session file
  /// (three listings of 13,000 names per restore --user); it now looks at that user's pair.
  @Test func oneUsersInterruptedPairIsFinishedAndAnotherUsersIsLeftForItsOwnRun() throws {
    let directory = try TemporaryDirectory("pairs")
    func interrupt(_ stem: String) throws -> String {
      let session = directory.file(stem + ".session")
      try FileSystem.writeAtomically(Data("new session".utf8), to: session + LiveFiles.pendingSuffix)
      try FileSystem.writeAtomically(Data("{}".utf8), to: directory.file(stem + ".json") + LiveFiles.pendingSuffix)
      try FileSystem.writeAtomically(
        Data("\(stem).json\n\(stem).session\n".utf8), to: directory.file("." + stem + LiveFiles.pairMarkerSuffix))
      return session
    }
    let first = try interrupt("user_1")
    let second = directory.file("user_2.session")
    #expect(try LiveFiles.finishInterruptedPair(sessionPath: second).isEmpty)
    #expect(FileSystem.exists(first + LiveFiles.pendingSuffix), "another user's pair is not touched")
    #expect(try LiveFiles.finishInterruptedPair(sessionPath: first) == [first])
    #expect(try FileSystem.read(first) == Data("new session".utf8))
    #expect(FileSystem.exists(directory.file("user_1.json")))
    #expect(try LiveFiles.interruptedPairs(in: directory.path).isEmpty)
  }

  /// A live restore compared every live session file with its verified copy by a digest of all
  /// rows (two SQLite opens and a sort of every table, 20,000 of them at 10,000 users); a file
  /// unchanged since its snapshot has the same pages but for the header fields each commit stamps.
  @Test func aFileAndItsOnlineBackupHaveTheSamePagesAndAChangedOneHasNot() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 2)
    let live = fleet.sessionPath(try #require(try fleet.telethonUserIDs(1).first))
    let copy = fleet.directory.file("copy.session")
    try fleet.sqlite(".backup '\(copy)'", path: live)
    #expect(try FileSystem.sha256(ofFile: live) != FileSystem.sha256(ofFile: copy))
    #expect(try SQLiteContent.hasSamePages(live, copy))
    #expect(try SQLiteContent.digest(path: live) == SQLiteContent.digest(path: copy))
    // A journal beside the live file: the main file alone is not what SQLite reads.
    try FileSystem.writeAtomically(Data(), to: live + "-journal")
    #expect(try !SQLiteContent.hasSamePages(live, copy))
    unlink(live + "-journal")
    // One row changed: other pages, another digest.
    try fleet.sqlite("UPDATE update_state SET pts = pts + 1", path: copy)
    #expect(try !SQLiteContent.hasSamePages(live, copy))
    #expect(try SQLiteContent.digest(path: live) != SQLiteContent.digest(path: copy))
  }

  @Test func aWholeRestoreReportsEachPhase() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 3, initialized: true, backedUp: true)
    let archive = try #require(try fleet.listedArchives(["--kind", "full"]).first)
    try fleet.sqlite("UPDATE user_sessions SET session_string = 'changed' WHERE user_id = \(fleet.userIDs[0])")
    unlink(fleet.sessionPath(fleet.userIDs[1]))
    let seen = ProgressLog()
    let result = try RestoreJob.run(
      fleet.deployment, options: RestoreOptions(selector: archive.id), logger: Self.logger, progress: seen.add)
    #expect(result.undo != nil && result.problems.isEmpty)
    let read = try #require(seen.last("reading archive"))
    #expect(read.total > 3 && read.done == read.total, "\(read)")
    let checked = try #require(seen.last("checking entries"))
    #expect(checked.total > 3 && checked.done == checked.total, "\(checked)")
    #expect(seen.phases.contains("undo: snapshots"), "\(seen.phases)")
    let installed = try #require(seen.last("installing"))
    #expect(installed.total >= 1 && installed.done == installed.total, "\(installed)")
    #expect(
      seen.phases.filter { !$0.hasPrefix("undo: ") } == ["reading archive", "checking entries", "installing"],
      "\(seen.phases)")
  }

  /// Under cron, in a pipe or with --json, a restore prints no progress.
  @Test func aRestoreInAPipePrintsNoProgress() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 3, initialized: true, backedUp: true)
    unlink(fleet.sessionPath(fleet.userIDs[1]))
    for arguments in [["restore", "latest"], ["restore", "latest", "--json"]] {
      let result = try fleet.tgsessOK(arguments)
      for output in [result.stdout, result.stderr] {
        #expect(!output.contains("\r") && !output.contains("reading archive") && !output.contains("installing"))
      }
    }
  }
}

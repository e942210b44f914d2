import Foundation
import Jobs
import Store
import TestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// Injected I/O errors. `iotrace.so` makes the Nth read, write, fsync, rename (or link), open or
/// mkdir below the deployment fail with EIO, ENOSPC, EDQUOT, EROFS or EACCES (the first that
/// fits the call) without making it. For each command the calls of each class are counted in one
/// clean run, then N is swept over that count. Each run must either complete (the fault was on
/// something the command may do without, and what it did is sound) or exit 1 (3 where the command
/// documents a partial result) with one error line naming the file and the cause; no crash or
/// Swift trap; nothing lost (sessions, the bot's tables and earlier archives as before, or wholly
/// old or wholly new for restore and recover); no partial file published and no temporary left;
/// and with the fault gone the same command succeeds.
///
/// A run that completes after an fsync failed is sound only where the failure was recovered from
/// or is SQLite's own documented choice; `toleratedFsync` names each such case by file and call
/// (iotrace.so logs the object that made the call and what the run synced and published after
/// it). Any other exit 0 after a failed fsync is a violation.
@Suite(.serialized, .enabled(if: Torture.isEnabled, "set TGSESS_TORTURE_SCALE=quick|full (scripts/torture.sh)"))
struct IOErrorTorture {
  /// The classes of calls iotrace.so fails, and the errors tried on each (rotated per injection).
  static let classes: [(name: String, errors: [String])] = [
    ("read", ["EIO"]),
    ("write", ["EIO", "ENOSPC", "EDQUOT"]),
    ("fsync", ["EIO", "ENOSPC", "EDQUOT"]),
    ("rename", ["EIO", "ENOSPC", "EDQUOT", "EROFS", "EACCES"]),
    ("open", ["EIO", "EACCES", "EROFS", "ENOSPC", "EDQUOT"]),
    ("mkdir", ["EIO", "ENOSPC", "EDQUOT", "EROFS", "EACCES"]),
  ]

  /// How each error reads in an error line (strerror, and SQLite's words for it).
  static let causeWords: [Int32: [String]] = [
    EIO: ["input/output error", "i/o error"],
    ENOSPC: ["no space left on device", "disk is full", "disk full"],
    EDQUOT: ["disk quota exceeded", "quota"],
    EROFS: ["read-only file system", "readonly", "read-only"],
    EACCES: ["permission denied", "access permission denied"],
  ]

  /// Injections per class and command at most (evenly spread over the calls, first and last included).
  static let perClass: [String: Int] = Torture.pick(
    quick: ["write": 1, "fsync": 1, "rename": 1, "open": 1],
    full: ["read": 10, "write": 14, "fsync": 20, "rename": 14, "open": 14, "mkdir": 8])

  /// Commands documented to end 3 (partial) when some users failed.
  static let partialCommands: Set<String> = ["backup", "recover --all"]

  static func scenarios(scratch: TemporaryDirectory, template: String) -> [CrashPointTorture.Scenario] {
    PowerLossTorture.scenarios(scratch: scratch, template: template)
  }

  static let quickScenarios: Set<String> = ["backup", "restore --user"]

  @Test func faultsAtEveryStepOfEveryCommand() throws {
    let report = FamilyReport("io-errors")
    defer { print(report.summary) }
    _ = try IOTrace.library()
    let scratch = try TemporaryDirectory("tgsess-ioerror-scratch")
    let template = try CrashPointTorture.keyTemplate()
    var random = TortureRandom(seed: Torture.seed &+ 11)
    for scenario in Self.scenarios(scratch: scratch, template: template.path) {
      guard Torture.isFull || Self.quickScenarios.contains(scenario.name) else { continue }
      guard Torture.only.isEmpty || Torture.only.contains(scenario.name) else { continue }
      do {
        try Self.sweep(scenario, report: report, random: &random)
      } catch {
        report.record("\(scenario.name): setting up the sweep", problems: ["error: \(error)"])
      }
    }
  }

  /// A prepared deployment kept aside, put back before each run.
  struct Template {
    let fleet: TortureFleet
    let copy: String

    /// Puts the prepared tree back in place of the deployment.
    func reset() throws {
      try FileManager.default.removeItem(atPath: fleet.root)
      let result = try runProcess("/bin/cp", ["-a", copy, fleet.root])
      guard result.status == 0 else { throw TestHelperError("cp -a failed: \(result.stderr)") }
    }
  }

  /// Counts the calls of `scenario`'s command, then fails each chosen one in turn.
  static func sweep(_ scenario: CrashPointTorture.Scenario, report: FamilyReport, random: inout TortureRandom) throws {
    let fleet = try scenario.makeFleet()
    let run = try scenario.prepare(fleet, &random)
    let work = fleet.fleet.directory
    let temporary = work.file("io-tmp")
    try FileSystem.makeDirectory(temporary)
    let template = Template(fleet: fleet, copy: work.file("io-template"))
    let copied = try runProcess("/bin/cp", ["-a", fleet.root, template.copy])
    guard copied.status == 0 else { throw TestHelperError("cp -a failed: \(copied.stderr)") }
    let before = try CrashPointTorture.before(fleet)
    let tree = try TreeSnapshot(fleet.root).files
    let scope = [fleet.root, temporary]

    // 1. Count: one run with nothing failing.
    let countsPath = work.file("io-counts")
    let counted = try fleet.tgsess(
      run.arguments,
      environment: try IOTrace.faulting(
        scope: scope, operation: "read", n: 0, errors: ["EIO"], log: work.file("io-faults"), counts: countsPath,
        temporary: temporary))
    guard counted.status == 0 else {
      throw TestHelperError("the counting run of \(scenario.name) exited \(counted.status): \(counted.stderr)")
    }
    var counts: [String: Int] = [:]
    for line in try String(contentsOfFile: countsPath, encoding: .utf8).split(separator: "\n") {
      let parts = line.split(separator: " ")
      if parts.count == 2, let value = Int(parts[1]) { counts[String(parts[0])] = value }
    }
    print("io-errors \(scenario.name): calls \(counts.sorted { $0.key < $1.key })")

    // 2. Each chosen call fails once.
    var rotation = 0
    for (operation, errors) in classes {
      let total = counts[operation] ?? 0
      let cap = perClass[operation] ?? 0
      guard total > 0, cap > 0 else { continue }
      for n in Self.pick(cap, of: total, &random) {
        rotation += 1
        let preference = Array(errors[(rotation % errors.count)...] + errors[..<(rotation % errors.count)])
        try template.reset()
        let faultLog = work.file("io-fault-\(operation)-\(n)")
        unlink(faultLog)
        let environment = try IOTrace.faulting(
          scope: scope, operation: operation, n: n, errors: preference, log: faultLog, temporary: temporary)
        let started = Date()
        let result = try fleet.tgsess(run.arguments, environment: environment)
        guard let fault = Self.injected(faultLog) else {
          // The run made fewer calls of this class than the counting run (threads, timing): no injection.
          report.tally(["injections not reached": 1])
          try template.reset()
          continue
        }
        let name =
          "\(scenario.name): \(operation) #\(n) of \(total) fails with \(Self.errorName(fault.errno)) (\(fault.path.replacingOccurrences(of: fleet.root + "/", with: "")))"
        var outcome = "failed cleanly"
        let problems: [String]
        do {
          (problems, outcome) = try Self.judge(
            result, fault: fault, scenario: scenario, run: run, fleet: fleet, before: before, tree: tree)
        } catch {
          (problems, outcome) = (["error: \(error)"], "error")
        }
        report.record(
          name, problems: problems, seconds: Date().timeIntervalSince(started), detail: outcome,
          counts: ["injection points": 1, outcome: 1, "\(operation) faults": 1])
      }
    }
    try template.reset()
    try fleet.collectSecrets()
  }

  /// Up to `cap` distinct call numbers in 1...total: the first, the last, and evenly spread
  /// ones in between (with a random offset).
  static func pick(_ cap: Int, of total: Int, _ random: inout TortureRandom) -> [Int] {
    if total <= cap { return Array(1...total) }
    var chosen: Set<Int> = [1, total]
    let step = Double(total - 1) / Double(max(cap - 1, 1))
    let offset = Double(random.next() % 1000) / 1000 * step
    var position = 1 + offset
    while chosen.count < cap, position < Double(total) {
      chosen.insert(min(total, max(1, Int(position))))
      position += step
    }
    return chosen.sorted()
  }

  struct Fault {
    var operation: String
    var n: Int
    var errno: Int32
    var path: String
    /// The object that made the failed call (`libsqlite3.so.0`, `tgsess`), for an fsync.
    var caller = "?"
    /// What the run fsynced successfully after the fault, in order.
    var syncedAfter: [String] = []
    /// What the run renamed or linked into place after the fault (from, to), in order.
    var publishedAfter: [(from: String, to: String)] = []
    /// The syncs ("S") and publishes ("P", by their source) after the fault, in call order.
    var events: [(kind: Character, path: String)] = []

    /// Whether every publish of one of `paths` after the fault came after a successful sync of
    /// `synced` (a temporary name written again, as a run for one user writes its file under
    /// one name every time, and synced before its publish).
    func isSyncedBeforeEachPublish(of paths: [String], synced: String) -> Bool {
      var isSynced = false
      for event in events {
        if event.kind == "S", event.path == synced { isSynced = true }
        if event.kind == "P", paths.contains(event.path) {
          if !isSynced { return false }
          isSynced = false
        }
      }
      return true
    }
  }

  static func injected(_ log: String) -> Fault? {
    guard let text = try? String(contentsOfFile: log, encoding: .utf8) else { return nil }
    let lines = text.split(separator: "\n")
    guard let line = lines.first else { return nil }
    let parts = line.split(separator: " ", maxSplits: 4).map(String.init)
    guard parts.count == 5, parts[0] == "F", let n = Int(parts[2]), let code = Int32(parts[3]) else { return nil }
    var fault = Fault(operation: parts[1], n: n, errno: code, path: parts[4].removingPercentEncoding ?? parts[4])
    func decoded(_ text: Substring) -> String { String(text).removingPercentEncoding ?? String(text) }
    for line in lines.dropFirst() {
      let fields = line.split(separator: " ")
      switch fields.first {
      case "C" where fields.count == 2: fault.caller = String(fields[1])
      case "S" where fields.count == 2:
        fault.syncedAfter.append(decoded(fields[1]))
        fault.events.append(("S", decoded(fields[1])))
      case "P" where fields.count == 3:
        fault.publishedAfter.append((decoded(fields[1]), decoded(fields[2])))
        fault.events.append(("P", decoded(fields[1])))
      default: break
      }
    }
    return fault
  }

  /// Why a run may complete although the fsync `fault` failed, or nil when it may not. Each
  /// case is named by the file and the call:
  /// - SQLite's directory sync: after creating a journal, SQLite fsyncs its directory and
  ///   ignores the result by design (os_unix.c `unixSync`, "ignore errors": some file systems
  ///   cannot sync a directory). The caller is libsqlite3 and the path a directory.
  /// - A temporary never published: the fsync of a `.tgsess-tmp-` file (or its SQLite journal),
  ///   or of a staging directory, failed, and nothing renamed or linked it into place afterwards:
  ///   the writer dropped it (and retried, or fell back) without making anything visible that
  ///   rested on it.
  /// - A temporary written again, synced before its publish: tgsess's fsync of a temporary
  ///   failed, the writer removed it, and the retry or fallback wrote the file again under the
  ///   same name (a run for one user writes its session file under one name,
  ///   `FileSystem.lockedTemporaryPath`); each publish of that name came after a successful
  ///   fsync of it.
  /// - A directory of tgsess's synced again: a later fsync of the same directory succeeded, so
  ///   every name in it is durable (watch retries a failed save within `--once`).
  /// - A transaction SQLite rolled back, replaced whole: the fsync of a database or its journal
  ///   made by SQLite failed, SQLite failed and rolled back that transaction, and the run then
  ///   renamed a complete copy over the database (restore falls back from writing in place).
  /// - A restore's undo taken verbatim: the undo archive through SQLite (or its record) could
  ///   not be written, the restore said so (its logged warning) and published the verbatim undo
  ///   archive it names on stdout instead, its directory synced afterwards.
  /// - Watch redid the failed write: a database write of watch's (a user's backup record) failed
  ///   with SQLite's fsync of the database or its journal; watch retries that user's backup
  ///   within `--once`, and the database was synced again by the retried commit (the rerun then
  ///   finds nothing left to archive).
  /// - A recover's bookkeeping, said: the post-recovery backup or the health row failed after
  ///   the session was recovered, and the user's `warning:` line (or, for a healthy user, the
  ///   logged warning) names the file and the cause.
  /// - Watch's status file, said: the heartbeat file `status.json` (rewritten at every beat)
  ///   could not be saved, and the logged warning names the file and the cause.
  static func toleratedFsync(_ fault: Fault, result: ProcessResult, arguments: [String]) -> String? {
    let isSQLite = fault.caller.hasPrefix("libsqlite3")
    let base = (fault.path as NSString).lastPathComponent
    if isSQLite, FileSystem.isDirectory(fault.path) { return "SQLite's directory sync" }
    let isTemporary = base.contains(".tgsess-tmp-") || fault.path.contains("/.staging-")
    // A journal's sync covers its database: neither may have been published after it.
    let covered = [fault.path, fault.path.hasSuffix("-journal") ? String(fault.path.dropLast(8)) : fault.path]
    if isTemporary, !fault.publishedAfter.contains(where: { covered.contains($0.from) }) {
      return "a temporary never published"
    }
    // The run removed the temporary whose fsync failed and wrote the file again under the same
    // name (`FileSystem.lockedTemporaryPath`), synced before it was published.
    if isTemporary, !isSQLite, fault.isSyncedBeforeEachPublish(of: covered, synced: fault.path) {
      return "a temporary written again, synced before its publish"
    }
    if !isSQLite, FileSystem.isDirectory(fault.path), fault.syncedAfter.contains(fault.path) {
      return "a directory synced again"
    }
    let database = fault.path.hasSuffix("-journal") ? String(fault.path.dropLast("-journal".count)) : fault.path
    if isSQLite, fault.publishedAfter.contains(where: { $0.to == database }) {
      return "a transaction SQLite rolled back, replaced whole"
    }
    if arguments.first == "restore", result.stderr.contains("undo archive through SQLite failed"),
      let line = result.stdout.split(separator: "\n").first(where: { $0.hasPrefix("undo: archive ") })
    {
      // The undo through SQLite failed on the fault; the verbatim undo archive that replaced it
      // was published and its directory synced after the fault.
      let id = String(line.dropFirst("undo: archive ".count).prefix { $0 != " " })
      let published = fault.publishedAfter.map(\.to).filter { ($0 as NSString).lastPathComponent.hasPrefix(id) }
      let directories = Set(published.map { ($0 as NSString).deletingLastPathComponent })
      if !published.isEmpty, directories.allSatisfy({ fault.syncedAfter.contains($0) }) {
        return "a restore's undo taken verbatim"
      }
    }
    if arguments.first == "watch", isSQLite, fault.syncedAfter.contains(database) {
      return "watch redid the failed write"
    }
    if ["recover", "watch"].contains(arguments.first ?? "") {
      // On stdout for a user it lists; for a healthy user (not listed) in the warning it logs.
      let logged = result.stderr.split(separator: "\n").filter {
        $0.contains(" warning tgsess: ")
          && ($0.contains("recording the health failed") || $0.contains("post-recovery backup failed")
            || $0.contains("status file not written"))
      }
      let warnings = (result.stdout.split(separator: "\n").filter { $0.hasPrefix("  warning: ") } + logged).map(
        String.init)
      if warnings.contains(where: { namesFileAndCause($0, fault: fault).isEmpty }) {
        return arguments.first == "watch" ? "watch's status file, said" : "a recover's bookkeeping, said"
      }
    }
    return nil
  }

  static func errorName(_ code: Int32) -> String {
    [EIO: "EIO", ENOSPC: "ENOSPC", EDQUOT: "EDQUOT", EROFS: "EROFS", EACCES: "EACCES"][code] ?? "errno \(code)"
  }

  /// The names a good error line may use for the file that failed: its path, its name, and for
  /// a temporary the file it was to become.
  static func names(of path: String) -> [String] {
    var names = [path, (path as NSString).lastPathComponent]
    let base = (path as NSString).lastPathComponent
    // SQLite's journal, WAL and shared-memory files are named by their database.
    for suffix in ["-journal", "-wal", "-shm"] where path.hasSuffix(suffix) {
      names.append(String(path.dropLast(suffix.count)))
    }
    if base.hasPrefix("."), let marker = base.range(of: ".tgsess-tmp-") {
      names.append(String(base[base.index(after: base.startIndex)..<marker.lowerBound]))
    }
    return names
  }

  /// Judges one faulty run, then reruns the command without the fault and judges that.
  static func judge(
    _ result: ProcessResult, fault: Fault, scenario: CrashPointTorture.Scenario, run: CrashPointTorture.CrashRun,
    fleet: TortureFleet, before: CrashPointTorture.Before, tree: [String: String]
  ) throws -> (problems: [String], outcome: String) {
    var problems: [String] = []
    var outcome: String
    let stderr = result.stderr
    if stderr.contains("Fatal error") || stderr.contains("Crash") || ![0, 1, 3].contains(result.status) {
      problems.append("crashed or ended \(result.status): \(stderr.suffix(600))")
    }
    switch result.status {
    case 0:
      outcome = "completed"
      // A failed fsync may not be ignored: the data it covered may not be on disk.
      if fault.operation == "fsync" {
        if let why = toleratedFsync(fault, result: result, arguments: run.arguments) {
          outcome = "completed, fsync failure tolerated: \(why)"
        } else {
          problems.append(
            "exit 0 although an fsync of \(fault.path) by \(fault.caller) failed (durability unknown)")
        }
      }
    case 3 where partialCommands.contains(scenario.name):
      outcome = "partial"
      problems += failedUserLines(result, fault: fault)
    default:
      outcome = "failed cleanly"
      if result.status != 1 { problems.append("exit \(result.status), not 1") }
      problems += errorLine(stderr, fault: fault)
    }

    // Nothing lost, nothing partial. A record whose rename failed after its archive was
    // published stays hidden for the next run to roll forward: its archive is listed without a
    // record until then (checked again after the rerun).
    let pending = try pendingRecords(fleet)
    func isPending(_ problem: String) -> Bool {
      pending.contains { problem.hasSuffix("listed archive \($0.id) has no record") || problem.hasSuffix($0.path) }
    }
    problems += try run.afterKill(fleet, before).map { "after the fault: " + $0 }
    let archivesNow = try Witness.archiveFiles(fleet)
    for (path, sha) in before.archives {
      if let now = archivesNow[path] {
        if now != sha { problems.append("after the fault: earlier archive \(path) changed") }
      } else if !run.removesArchives {
        problems.append("after the fault: earlier archive \(path) vanished")
      }
    }
    // A restore or recover that failed midway may have installed some session files (each whole,
    // as `afterKill` checks), also of users who had none before; a pin whose directory fsync
    // failed is there, whole (written to a temporary, fsynced, renamed), and the run said so; so
    // is the state file watch saves before it stops.
    func isRestoredSession(_ problem: String) -> Bool {
      let installs = ["restore", "recover"].contains(run.arguments.first ?? "")
      return installs && problem.hasPrefix("new file sessions/user_") && problem.hasSuffix(".session")
        || run.arguments.first == "pin" && problem.hasPrefix("new file backups/") && problem.hasSuffix(".pin")
        || run.arguments.first == "watch" && problem == "new file backups/watch/state.tsv"
    }
    problems += try DiskFullTorture.partialFiles(fleet, newSince: tree).filter {
      !isPending($0) && !isRestoredSession($0)
    }
    .map { "after the fault: " + $0 }
    problems += try Witness.verifyListed(fleet).problems.filter { !isPending($0) }.map { "after the fault: " + $0 }

    // The fault gone, the same command succeeds.
    var rerun = try fleet.tgsess(run.arguments)
    if rerun.status == 1, run.arguments.first == "restore", rerun.stderr.contains("a hot journal") {
      // The restore refuses while a file it replaces has a hot journal (a writer crashed, or
      // runs), and says to stop the bot or pass --force: the failed run was that writer.
      outcome += ", rerun with --force"
      rerun = try fleet.tgsess(run.arguments + ["--force"])
    }
    if rerun.status != 0 {
      problems.append("with the fault gone, the rerun exited \(rerun.status): \(rerun.stderr.suffix(500))")
    } else {
      problems += try run.afterRerun(fleet, before).map { "after the rerun: " + $0 }
    }
    problems += try Witness.verifyListed(fleet).problems.map { "after the rerun: " + $0 }
    let left = try PowerLossTorture.leftovers(fleet).left
    if !left.isEmpty { problems.append("left behind after the rerun: \(left.prefix(5))") }
    problems += try Witness.noSessionLost(fleet, expected: run.expected)
    return (problems, outcome)
  }

  /// Hidden records (`.ID.json.tgsess-tmp-…`) of archives that are published: what a failed
  /// record rename leaves for the next run to roll forward.
  static func pendingRecords(_ fleet: TortureFleet) throws -> [(id: String, path: String)] {
    let listed = Set(try Witness.listed(fleet).map(\.id))
    return try Witness.leftovers(fleet).compactMap { path in
      let name = (path as NSString).lastPathComponent
      guard name.hasPrefix("."), let marker = name.range(of: ArchiveName.recordSuffix + ".tgsess-tmp-") else {
        return nil
      }
      let id = String(name[name.index(after: name.startIndex)..<marker.lowerBound])
      return listed.contains(id) ? (id, path) : nil
    }
  }

  /// The error line: the last stderr line starts with "tgsess: ", is the only such line, and
  /// names the file and the cause.
  static func errorLine(_ stderr: String, fault: Fault) -> [String] {
    let lines = stderr.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
    let errors = lines.filter { $0.hasPrefix("tgsess: ") }
    guard let last = lines.last, last.hasPrefix("tgsess: ") else {
      return ["no error line: \(stderr.suffix(400))"]
    }
    var problems: [String] = []
    if errors.count != 1 { problems.append("\(errors.count) error lines: \(stderr.suffix(600))") }
    return problems + namesFileAndCause(last, fault: fault)
  }

  /// A partial run (exit 3): its per-user failures (`FAILED user N: …` on stdout) name the
  /// file and the cause.
  static func failedUserLines(_ result: ProcessResult, fault: Fault) -> [String] {
    let failed = result.stdout.split(separator: "\n").filter { $0.hasPrefix("FAILED ") }.map(String.init)
    guard !failed.isEmpty else { return ["exit 3 without a FAILED line: \(result.stdout.suffix(400))"] }
    return namesFileAndCause(failed.joined(separator: "\n"), fault: fault)
  }

  /// SQLite opens a database read-only when opening it read-write fails, and does not say why:
  /// a failed open of the bot database or a session file surfaces as "read-only"; so does a
  /// journal it could not open (SQLITE_READONLY, whatever the errno).
  static func isSQLiteFallback(_ fault: Fault, _ text: String) -> Bool {
    fault.operation == "open" && [".db", ".session", "-journal", "-wal"].contains { fault.path.hasSuffix($0) }
      && (text.contains("read-only") || text.contains("readonly"))
  }

  /// SQLite keeps no errno for a failure of a journal (and for some of its own files' writes and
  /// syncs): the error says so ("SQLite kept no error number") and names the disk I/O error by
  /// its extended code's words, which must be the failed call's ("fsync error" for an fsync).
  static func isSQLiteWithoutErrno(_ fault: Fault, _ text: String) -> Bool {
    let sqliteFile = [".db", ".session", "-journal", "-wal"].contains { fault.path.hasSuffix($0) }
    guard sqliteFile, text.contains("sqlite kept no error number") else { return false }
    if fault.operation == "open" { return text.contains("cannot open") || text.contains("unable to open") }
    let words =
      ["fsync": ["fsync error"], "write": ["write error"], "read": ["read error", "short read"]][
        fault.operation] ?? []
    return text.contains("disk i/o error") && words.contains { text.contains($0) }
  }

  static func namesFileAndCause(_ line: String, fault: Fault) -> [String] {
    var problems: [String] = []
    let text = line.lowercased()
    let words = causeWords[fault.errno] ?? []
    if !words.contains(where: { text.contains($0) }), !isSQLiteFallback(fault, text), !isSQLiteWithoutErrno(fault, text)
    {
      problems.append("the error does not name the cause (\(errorName(fault.errno))): \(line.prefix(400))")
    }
    if !names(of: fault.path).contains(where: { text.contains($0.lowercased()) }) {
      problems.append("the error does not name the file (\(fault.path)): \(line.prefix(400))")
    }
    return problems
  }
}

import Foundation
import Store
import TestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// Storms of 20 concurrent tgsess runs (backup, backup --user, prune, restore --user, recover,
/// migrate, check), some waiting for the lock (`--lock-wait`), some not. Every tgsess process
/// runs with `lockwatch.so` preloaded, which records inside the process, at the moment of the
/// call, when it takes and releases the deployment lock and every call that changes something
/// below the root, with whether it held the lock then. Required: lock intervals never overlap;
/// no mutating command changes anything without the lock (its own private staging directory,
/// which a restore fills while it verifies the archive, is reported apart); each run that did
/// not wait either ran or exited 75 naming the holder; each run that waited ran; the holder lines
/// in `.tgsess.lock` name running storm processes; and afterwards the database, every archive and
/// every session are sound.
@Suite(.serialized, .enabled(if: Torture.isEnabled, "set TGSESS_TORTURE_SCALE=quick|full (scripts/torture.sh)"))
struct LockStormTorture {
  /// Builds `Tests/Torture/Resources/lockwatch.c` into the output directory (once).
  static func lockwatch() throws -> String {
    let output = Torture.outputDirectory + "/lockwatch.so"
    if FileSystem.exists(output) { return output }
    let source = TestEnvironment.packageRoot + "/Tests/Torture/Resources/lockwatch.c"
    // cc if installed, else the clang that ships with Swift (beside swift on the PATH).
    let path = (Torture.environment["PATH"] ?? "").split(separator: ":").map(String.init)
    let candidates = ["/usr/bin/cc"] + path.flatMap { [$0 + "/cc", $0 + "/clang"] } + ["/opt/swift/usr/bin/clang"]
    let compiler = candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    guard let compiler else { throw TestHelperError("no C compiler (cc or clang) to build lockwatch.so") }
    let result = try runProcess(compiler, ["-shared", "-fPIC", "-O2", "-o", output, source, "-ldl"])
    guard result.status == 0 else { throw TestHelperError("building lockwatch.so failed: \(result.stderr)") }
    return output
  }

  /// One storm run: its arguments, whether it waits for the lock, and what it is.
  struct Run {
    var arguments: [String]
    var waits: Bool
    var verb: String
    var isMutating: Bool { verb != "check" }
  }

  static func randomRun(_ fleet: TortureFleet, _ random: inout TortureRandom) -> Run {
    let user = String(fleet.userIDs[Int(random.next() % UInt64(fleet.userIDs.count))])
    let waits = random.next() % 2 == 0
    let wait = waits ? ["--lock-wait", "120"] : []
    switch random.next() % 9 {
    case 0, 1: return Run(arguments: ["backup"] + wait, waits: waits, verb: "backup")
    case 2: return Run(arguments: ["backup", "--user", user] + wait, waits: waits, verb: "backup")
    case 3:
      return Run(
        arguments: ["prune", "--keep-per-user", "2", "--keep-last", "2"] + wait, waits: waits, verb: "prune")
    case 4: return Run(arguments: ["restore", "latest", "--user", user] + wait, waits: waits, verb: "restore")
    case 5: return Run(arguments: ["recover", "--user", user] + wait, waits: waits, verb: "recover")
    case 6: return Run(arguments: ["recover", "--all"] + wait, waits: waits, verb: "recover")
    // migrate has no --lock-wait: it runs or exits 75.
    case 7: return Run(arguments: ["migrate"], waits: false, verb: "migrate")
    default: return Run(arguments: ["check", "--json", "--max-age", "86400"], waits: false, verb: "check")
    }
  }

  /// What lockwatch recorded.
  struct Trace {
    struct Write {
      var pid: Int32
      var time: Int64
      var held: Bool
      var operation: String
      var path: String
    }
    var intervals: [(pid: Int32, start: Int64, end: Int64)] = []
    var writes: [Write] = []
    var unmatched: [String] = []

    init(_ text: String) {
      var open: [Int32: Int64] = [:]
      for line in text.split(separator: "\n") {
        let parts = line.split(separator: " ", maxSplits: 5).map(String.init)
        guard parts.count >= 3, let pid = Int32(parts[1]), let time = Int64(parts[2]) else { continue }
        switch parts[0] {
        case "ACQ":
          if open[pid] != nil { unmatched.append("pid \(pid) took the lock twice") }
          open[pid] = time
        case "REL":
          if let start = open.removeValue(forKey: pid) {
            intervals.append((pid, start, time))
          } else {
            unmatched.append("pid \(pid) released a lock it had not taken")
          }
        case "W" where parts.count == 6:
          writes.append(Write(pid: pid, time: time, held: parts[3] == "1", operation: parts[4], path: parts[5]))
        default: break
        }
      }
      // A process that exited while holding the lock: the kernel released it at exit.
      for (pid, start) in open { intervals.append((pid, start, Int64.max)) }
      intervals.sort { $0.start < $1.start }
    }
  }

  @Test func stormsOfConcurrentCommands() throws {
    let report = FamilyReport("lock-storms")
    defer { print(report.summary) }
    let preload = try Self.lockwatch()
    var random = TortureRandom(seed: Torture.seed &+ 11)
    let fleet = try TortureFleet(users: 40, seed: 51, pyrogramShare: 0.2)
    try fleet.tgsessOK(["backup"])
    let expected = CrashPointTorture.allIdentities(fleet)
    let storms = Torture.pick(quick: 1, full: 12)
    var staging = 0
    var checkWrites = 0
    for storm in 1...storms {
      // Two users lose their session before each storm: restore and recover have work to do.
      let broken = CrashPointTorture.pickUsers(fleet, 2, &random)
      truncate(fleet.sessionPath(broken[0]), 3000)
      try fleet.sql("UPDATE sessions SET auth_key = zeroblob(256)", on: fleet.sessionPath(broken[1]))
      let log = Torture.outputDirectory + "/lockwatch-\(getpid())-\(storm).log"
      unlink(log)
      let environment = [
        "LD_PRELOAD": preload, "TGSESS_LOCKWATCH_ROOT": fleet.root, "TGSESS_LOCKWATCH_LOG": log,
      ]
      let runs = (0..<20).map { _ in Self.randomRun(fleet, &random) }

      // The holder lines, read (never locked) while the storm runs.
      let watcher = HolderWatcher(path: fleet.deployment.lockPath)
      watcher.start()
      var processes: [(Run, BackgroundProcess)] = []
      for run in runs {
        processes.append((run, try fleet.background(run.arguments, environment: environment)))
        usleep(UInt32(random.next() % 20_000))
      }
      var outcomes: [Int32: (Run, Int32, String)] = [:]
      for (run, process) in processes {
        let (status, _) = process.wait()
        Capture.keep(process)
        outcomes[process.pid] = (run, status, process.stderr)
      }
      let holders = watcher.stop()
      let trace = Trace((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")

      // Each run, by its exit status and what it did.
      for (pid, (run, status, stderr)) in outcomes.sorted(by: { $0.key < $1.key }) {
        let label = "storm \(storm): tgsess \(run.arguments.joined(separator: " "))"
        report.check(label, counts: ["runs": 1]) {
          var problems: [String] = []
          let allowed: Set<Int32>
          switch run.verb {
          case "check": allowed = [0, 1, 2]
          case "backup": allowed = run.waits ? [0, 3] : [0, 3, 75]
          default: allowed = run.waits ? [0] : [0, 75]
          }
          // A per-user backup of a user whose file is broken at that moment (the storm breaks two,
          // and recover or restore may not have repaired them yet) is refused: exit 1 naming it.
          let refusedBrokenUser =
            status == 1 && run.arguments.starts(with: ["backup", "--user"])
            && broken.map(String.init).contains(run.arguments[2])
            && stderr.contains("sessions/user_\(run.arguments[2]).session:")
          if !allowed.contains(status), !refusedBrokenUser {
            problems.append("exit \(status): \(stderr.suffix(400))")
          }
          let lastLine = stderr.split(separator: "\n").last.map(String.init) ?? ""
          if status == 75, !lastLine.contains("pid=") {
            problems.append("exit 75 without naming the holder: \(lastLine)")
          }
          let acquired = trace.intervals.contains { $0.pid == pid }
          if run.isMutating, status == 0 || status == 3, !acquired {
            problems.append("completed without ever taking the lock")
          }
          if !run.isMutating, acquired { problems.append("check took the lock") }
          for write in trace.writes where write.pid == pid && !write.held {
            if write.path.contains("/.staging-\(pid)-") {
              staging += 1
            } else if !run.isMutating {
              checkWrites += 1
            } else {
              problems.append("\(write.operation) \(write.path) without the lock")
            }
          }
          return problems
        }
      }

      let statuses = outcomes.values.map { "\($0.1)" }
      let counts = Dictionary(grouping: statuses, by: { $0 }).map { "exit \($0.key): \($0.value.count)" }.sorted()
      let waited = outcomes.values.filter { $0.0.waits }.count
      let detail =
        "\(counts.joined(separator: ", ")); \(waited) waited for the lock; \(trace.intervals.count) lock intervals; "
        + "\(holders.count) holder lines seen"
      var stormCounts = ["storms": 1]
      for (_, status, _) in outcomes.values { stormCounts["exit \(status)", default: 0] += 1 }
      report.check(
        "storm \(storm): lock intervals, holder lines and the deployment afterwards", counts: stormCounts,
        described: {
          var problems = trace.unmatched
          for (earlier, later) in zip(trace.intervals, trace.intervals.dropFirst()) where later.start < earlier.end {
            problems.append("pid \(later.pid) took the lock while pid \(earlier.pid) held it")
          }
          if trace.intervals.isEmpty { problems.append("no run took the lock (is lockwatch.so loaded?)") }
          for holder in holders {
            guard let pid = Int32(holder.split(separator: " ").first?.dropFirst(4) ?? ""),
              let (run, _, _) = outcomes[pid]
            else {
              problems.append("holder line names no storm process: \(holder)")
              continue
            }
            let command =
              holder.components(separatedBy: " command=").last?.components(separatedBy: " since=").first ?? ""
            if command.split(separator: " ").first.map(String.init) != run.verb {
              problems.append("holder line of a \(run.verb) says \(command)")
            }
          }
          // What the storm leaves: a sound database, verifying archives, every user's session.
          if try Witness.integrity(fleet.databasePath) != "ok" { problems.append("database integrity_check fails") }
          problems += try Witness.verifyListed(fleet).problems
          let repair = try fleet.tgsess(["recover", "--all", "--json"])
          if repair.status != 0 { problems.append("recover --all after the storm exited \(repair.status)") }
          problems += try Witness.noSessionLost(fleet, expected: expected)
          try fleet.tgsessOK(["backup"])
          let left = try Witness.leftovers(fleet)
          if !left.isEmpty { problems.append("left behind: \(left.prefix(5))") }
          try fleet.collectSecrets()
          return (problems, detail)
        })
    }
    print("lock storms: \(staging) write(s) into a restore's own staging directory before it took the lock")
    print("lock storms: \(checkWrites) write(s) by check, which does not take the lock")
    report.tally(["writes into own staging": staging, "writes by check": checkWrites])
  }
}

/// Reads `.tgsess.lock` in a loop (without locking it) and keeps every distinct holder line.
final class HolderWatcher: @unchecked Sendable {
  let path: String
  private let lock = NSLock()
  private var lines: Set<String> = []
  private var isRunning = true
  private var thread: Thread?

  init(path: String) { self.path = path }

  func start() {
    let thread = Thread { [self] in
      while lock.withLock({ isRunning }) {
        if let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8),
          text.hasPrefix("pid="), text.hasSuffix("\n")
        {
          let line = text.trimmingCharacters(in: .newlines)
          lock.withLock { _ = lines.insert(line) }
        }
        usleep(2_000)
      }
    }
    self.thread = thread
    thread.start()
  }

  /// Stops and returns the holder lines seen.
  func stop() -> [String] {
    lock.withLock { isRunning = false }
    usleep(10_000)
    return lock.withLock { Array(lines).sorted() }
  }
}

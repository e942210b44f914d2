import Foundation
import Store

// Helpers for the backup and list tests: generated fleets whose every tgsess run is kept for the
// secret scan, processes that run in the background (writers, a backup to kill), the stock tools
// that judge archives, and tmpfs mounts.

// MARK: - Stock tools

/// The stock tools the archive tests compare against, with the Debian package of each.
public enum StockTools {
  public static let age = "/usr/bin/age"
  public static let tar = "/usr/bin/tar"
  public static let bsdtar = "/usr/bin/bsdtar"
  public static let zstd = "/usr/bin/zstd"
  public static let sqlite3 = "/usr/bin/sqlite3"
  public static let sha256sum = "/usr/bin/sha256sum"
  public static let bash = "/bin/bash"
  static let packages = [
    age: "age", tar: "tar", bsdtar: "libarchive-tools", zstd: "zstd", sqlite3: "sqlite3", sha256sum: "coreutils",
    bash: "bash",
  ]

  /// Fails, naming what to install, when a tool is missing (a test never skips silently).
  /// - Throws: `TestHelperError`.
  public static func require(_ tools: [String] = [age, tar, bsdtar, zstd, sqlite3, sha256sum, bash]) throws {
    for tool in tools where !FileManager.default.isExecutableFile(atPath: tool) {
      throw TestHelperError(
        "\(tool) is missing; install it with: apt-get install -y \(packages[tool] ?? "?") (scripts/test.sh installs it)"
      )
    }
  }

  /// Runs a bash pipeline with `set -o pipefail`; positional arguments are `$1`, `$2`, ...
  /// - Throws: `TestHelperError` with stderr when it fails.
  @discardableResult
  public static func pipeline(_ script: String, _ arguments: [String]) throws -> ProcessResult {
    let result = try runProcess(bash, ["-c", "set -euo pipefail; " + script, "pipeline"] + arguments)
    guard result.status == 0 else {
      throw TestHelperError("`\(script)` failed (\(result.status)): \(result.stderr)")
    }
    return result
  }

  /// The entries of an archive in stream order, read by stock tar (through age when encrypted).
  /// - Throws: `TestHelperError`.
  public static func listEntries(_ archive: String, identity: String?) throws -> [String] {
    let result =
      archive.hasSuffix(".age")
      ? try pipeline(#"age -d -i "$1" "$2" | tar --zstd -tf -"#, [identity ?? "", archive])
      : try pipeline(#"tar --zstd -tf "$1""#, [archive])
    return result.stdout.split(separator: "\n").map(String.init)
  }

  /// Extracts an archive the operator's way: `age -d -i IDENTITY X | tar --zstd -xf -`, or
  /// `tar --zstd -xf X` for an unencrypted one.
  /// - Throws: `TestHelperError`.
  public static func extract(_ archive: String, identity: String?, into directory: String) throws {
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    if archive.hasSuffix(".age") {
      try pipeline(#"age -d -i "$1" "$2" | tar --zstd -xf - -C "$3""#, [identity ?? "", archive, directory])
    } else {
      try pipeline(#"tar --zstd -xf "$1" -C "$2""#, [archive, directory])
    }
  }

  /// SHA-256 of files by `sha256sum`, keyed by path.
  /// - Throws: `TestHelperError`.
  public static func sha256sums(_ paths: [String]) throws -> [String: String] {
    guard !paths.isEmpty else { return [:] }
    let result = try runProcess(sha256sum, ["--"] + paths)
    guard result.status == 0 else { throw TestHelperError("sha256sum failed: \(result.stderr)") }
    var sums: [String: String] = [:]
    for line in result.stdout.split(separator: "\n") {
      let parts = line.split(separator: " ", maxSplits: 1)
      guard parts.count == 2 else { continue }
      sums[String(parts[1].drop(while: { $0 == " " || $0 == "*" }))] = String(parts[0])
    }
    return sums
  }

  /// `PRAGMA integrity_check` of a file through the sqlite3 CLI ("ok" when sound).
  /// - Throws: `TestHelperError` when sqlite3 cannot run the check at all.
  public static func integrityCheck(_ path: String) throws -> String {
    let result = try runProcess(sqlite3, ["-readonly", path, "PRAGMA integrity_check"])
    guard result.status == 0 else { throw TestHelperError("sqlite3 integrity_check of \(path): \(result.stderr)") }
    return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
  }

  /// One query through the sqlite3 CLI, read-only.
  /// - Throws: `TestHelperError`.
  public static func query(_ path: String, _ sql: String) throws -> String {
    let result = try runProcess(sqlite3, ["-readonly", "-cmd", ".timeout 30000", path, sql])
    guard result.status == 0 else { throw TestHelperError("sqlite3 \(path) '\(sql)': \(result.stderr)") }
    return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
  }

  /// Checks an extracted archive against its `manifest.json` with stock tools: every entry is
  /// there with the manifest's size and `sha256sum`, nothing else is, and every SQLite entry
  /// passes `PRAGMA integrity_check`.
  /// - Returns: the problems found (empty when the archive is sound) and the manifest.
  /// - Throws: `TestHelperError` when manifest.json is missing or not a manifest.
  public static func verifyExtracted(_ directory: String) throws -> (problems: [String], manifest: Manifest) {
    let manifestPath = directory + "/manifest.json"
    guard let data = FileManager.default.contents(atPath: manifestPath) else {
      throw TestHelperError("\(manifestPath) is missing")
    }
    let manifest = try decodeManifest(data, name: manifestPath)
    var problems: [String] = []
    let paths = manifest.entries.map(\.path)
    // Listed before any integrity_check: sqlite3 reading a WAL-mode file (Hydrogram's, kurigram's
    // with use_wal) adds -wal and -shm files beside it.
    let extracted = Set(try TreeSnapshot.regularFiles(under: directory))
    let sums = try sha256sums(paths.map { directory + "/" + $0 }.filter { FileManager.default.fileExists(atPath: $0) })
    for entry in manifest.entries {
      let full = directory + "/" + entry.path
      guard let sum = sums[full] else {
        problems.append("\(entry.path): listed in the manifest but not extracted")
        continue
      }
      if sum != entry.sha256 { problems.append("\(entry.path): sha256sum differs from the manifest") }
      let size = (try? FileSystem.size(of: full)) ?? -1
      if size != entry.size { problems.append("\(entry.path): \(size) bytes, manifest says \(entry.size)") }
      if entry.isSQLite {
        let check = try integrityCheck(full)
        if check != "ok" { problems.append("\(entry.path): integrity_check says \(check.prefix(200))") }
      }
    }
    for extra in extracted.subtracting(paths + ["manifest.json"]).sorted() {
      problems.append("\(extra): extracted but not in the manifest")
    }
    return (problems, manifest)
  }

  /// Extracts with stock tools into a fresh directory under `scratch` and verifies it.
  /// - Returns: the problems (empty when sound), the manifest and where it was extracted.
  /// - Throws: `TestHelperError` when age or tar fail (a damaged or truncated archive).
  public static func extractAndVerify(_ archive: String, identity: String?, scratch: String) throws -> (
    problems: [String], manifest: Manifest, directory: String
  ) {
    let directory = scratch + "/x-" + UUID().uuidString
    try extract(archive, identity: identity, into: directory)
    let (problems, manifest) = try verifyExtracted(directory)
    return (problems, manifest, directory)
  }
}

/// Decodes a `manifest.json` that stock tools extracted, with a plain `JSONDecoder` (not
/// `Manifest.decode`, whose checks are what the tests judge).
/// - Throws: `TestHelperError` naming `name` when it is not a manifest.
public func decodeManifest(_ data: Data, name: String) throws -> Manifest {
  let decoder = JSONDecoder()
  decoder.dateDecodingStrategy = .iso8601
  do { return try decoder.decode(Manifest.self, from: data) } catch {
    throw TestHelperError("\(name) is not a manifest (\(error)): \(String(decoding: data.prefix(500), as: UTF8.self))")
  }
}

// MARK: - Background processes

/// A child process that runs while the test goes on (a live writer, a backup to kill), with its
/// output in files so it never blocks on a pipe. Killed on deinit if still running.
public final class BackgroundProcess: @unchecked Sendable {
  public let process = Process()
  public let label: String
  private let outputDirectory: TemporaryDirectory

  /// Starts `executable`; TGSESS_* variables of the developer are kept out unless given.
  /// - Throws: `TestHelperError` when it cannot start.
  public init(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws {
    label = ([(executable as NSString).lastPathComponent] + arguments).joined(separator: " ")
    outputDirectory = try TemporaryDirectory("tgsess-bg")
    _ = FileManager.default.createFile(atPath: outputDirectory.file("stdout"), contents: nil)
    _ = FileManager.default.createFile(atPath: outputDirectory.file("stderr"), contents: nil)
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let base = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("TGSESS_") }
    process.environment = base.merging(environment) { $1 }
    process.standardOutput = FileHandle(forWritingAtPath: outputDirectory.file("stdout"))
    process.standardError = FileHandle(forWritingAtPath: outputDirectory.file("stderr"))
    process.standardInput = FileHandle(forReadingAtPath: "/dev/null")
    do { try process.run() } catch { throw TestHelperError("cannot start \(executable): \(error)") }
  }

  /// Starts the built `tgsess` with `arguments`.
  /// - Throws: `TestHelperError` when it is not built.
  public static func tgsess(_ arguments: [String], environment: [String: String] = [:]) throws -> BackgroundProcess {
    let path = TestEnvironment.productPath("tgsess")
    guard FileManager.default.isExecutableFile(atPath: path) else {
      throw TestHelperError("\(path) is not built; run swift build --build-tests")
    }
    return try BackgroundProcess(path, arguments, environment: environment)
  }

  public var pid: Int32 { process.processIdentifier }
  public var isRunning: Bool { process.isRunning }

  /// Waits for the end: the exit status, or the signal that killed it.
  public func wait() -> (status: Int32, signal: Int32?) {
    process.waitUntilExit()
    if process.terminationReason == .uncaughtSignal {
      return (128 + process.terminationStatus, process.terminationStatus)
    }
    return (process.terminationStatus, nil)
  }

  /// Sends `signal` (SIGKILL by default) to the children this process started, then to it.
  public func kill(_ signal: Int32 = SIGKILL) {
    guard process.isRunning else { return }
    let childrenFile = "/proc/\(pid)/task/\(pid)/children"
    let children = ((try? String(contentsOfFile: childrenFile, encoding: .utf8)) ?? "")
      .split(separator: " ").compactMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    for child in children { Glibc.kill(child, signal) }
    Glibc.kill(process.processIdentifier, signal)
  }

  /// Starts `flock PATH sleep 30` and waits until it holds the lock, the way the bot runner holds
  /// `<root>/.tgsess-bot.lock`.
  /// - Throws: `TestHelperError` when flock is missing or never takes the lock.
  public static func holdingLock(_ path: String) throws -> BackgroundProcess {
    try Tools.require([Tools.flock])
    let holder = try BackgroundProcess(Tools.flock, [path, "sleep", "30"])
    for _ in 0..<400 {
      if DeploymentLock.holder(path: path) != nil { return holder }
      guard holder.isRunning else { throw TestHelperError("flock \(path) exited before taking the lock") }
      usleep(25_000)
    }
    holder.kill()
    throw TestHelperError("flock never took \(path)")
  }

  /// The outcome, once it has ended (the status is 128 + the signal when one killed it).
  public var result: ProcessResult {
    let status = wait().status
    let data = FileManager.default.contents(atPath: outputDirectory.file("stdout")) ?? Data()
    return ProcessResult(
      status: status, stdout: String(decoding: data, as: UTF8.self), stderr: stderr, stdoutData: data)
  }

  public var stdout: String { (try? String(contentsOfFile: outputDirectory.file("stdout"), encoding: .utf8)) ?? "" }
  public var stderr: String { (try? String(contentsOfFile: outputDirectory.file("stderr"), encoding: .utf8)) ?? "" }

  /// Whether the process has `path` open (it reached the code that opened it).
  public func hasOpen(_ path: String) -> Bool {
    let directory = "/proc/\(pid)/fd"
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return false }
    return names.contains { (try? FileManager.default.destinationOfSymbolicLink(atPath: directory + "/" + $0)) == path }
  }

  deinit {
    if process.isRunning {
      Glibc.kill(process.processIdentifier, SIGKILL)
      process.waitUntilExit()
    }
  }
}

/// Polls `condition` until it holds. The bound only keeps a broken test from hanging; nothing
/// depends on how long the wait takes.
/// - Throws: `TestHelperError` naming `what` when the bound is reached.
public func waitUntil(_ what: String, boundSeconds: Double = 120, _ condition: () throws -> Bool) throws {
  let deadline = Date().addingTimeInterval(boundSeconds)
  while !(try condition()) {
    guard Date() < deadline else { throw TestHelperError("gave up waiting for \(what) after \(Int(boundSeconds)) s") }
    usleep(5_000)
  }
}

// MARK: - Live writers

/// A Python process writing to SQLite files the way the bot does, maintaining an invariant in
/// every committed transaction. It stops when the stop file appears (or after `boundSeconds`).
public final class LiveWriter: @unchecked Sendable {
  public let process: BackgroundProcess
  let control: TemporaryDirectory
  var stopFile: String { control.file("stop") }
  var progressFile: String { control.file("progress") }

  init(script: String, arguments: [String]) throws {
    guard FileManager.default.isExecutableFile(atPath: TestEnvironment.python) else {
      throw TestHelperError(
        "no test virtualenv at \(TestEnvironment.python); run scripts/test.sh (it creates .venv-test)")
    }
    control = try TemporaryDirectory("tgsess-writer")
    process = try BackgroundProcess(
      TestEnvironment.python, ["-c", script, control.file("stop"), control.file("progress")] + arguments)
    try waitUntil("the writer's first commit") {
      guard process.isRunning else {
        throw TestHelperError("writer exited before its first commit: \(process.stderr)")
      }
      return commits > 0
    }
  }

  /// Transactions committed so far.
  public var commits: Int {
    Int((try? String(contentsOfFile: progressFile, encoding: .utf8))?.trimmingCharacters(in: .whitespaces) ?? "") ?? 0
  }

  /// Waits until the writer has committed more than `count` transactions.
  /// - Throws: `TestHelperError` when it died.
  public func waitForCommits(moreThan count: Int) throws {
    try waitUntil("writer commit \(count + 1)") {
      guard process.isRunning else { throw TestHelperError("writer died: \(process.stderr)") }
      return commits > count
    }
  }

  /// Stops the writer and returns its commit count.
  /// - Throws: `TestHelperError` when it failed (a `database is locked` included).
  @discardableResult
  public func stop() throws -> Int {
    _ = FileManager.default.createFile(atPath: stopFile, contents: nil)
    let (status, _) = process.wait()
    guard status == 0 else { throw TestHelperError("writer failed (\(status)): \(process.stderr)") }
    return commits
  }

  /// Mimics Telethon on several session files: `sqlite3.connect` with the default (rollback)
  /// journal and implicit `BEGIN`, a write transaction held open between saves, entity-cache
  /// inserts and `update_state` changes, a commit every few milliseconds. Invariant in every
  /// commit: `update_state` row 0 has `pts = sum(entities.date)` and `seq = count(entities)`.
  public static func telethonLike(sessionFiles: [String], boundSeconds: Int = 150) throws -> LiveWriter {
    try LiveWriter(
      script: """
        import json, os, random, sqlite3, sys, time
        stop, progress, paths, bound = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), float(sys.argv[4])
        conns, ids = [], []
        for path in paths:
            conn = sqlite3.connect(path, timeout=60, check_same_thread=False)  # Telethon's way
            conn.execute("UPDATE update_state SET pts = (SELECT coalesce(sum(date), 0) FROM entities), "
                         "seq = (SELECT count(*) FROM entities) WHERE id = 0")
            conn.commit()
            conns.append(conn)
            ids.append([row[0] for row in conn.execute("SELECT id FROM entities WHERE date IS NOT NULL")])
        def report(n):
            with open(progress + '.tmp', 'w') as f: f.write(str(n))
            os.replace(progress + '.tmp', progress)
        commits, next_id, deadline = 0, 7_000_000_000, time.time() + bound
        while not os.path.exists(stop) and time.time() < deadline:
            for conn, known in zip(conns, ids):
                delta = random.randint(1, 1000)
                conn.execute("UPDATE entities SET date = date + ? WHERE id = ?", (delta, random.choice(known)))
                conn.execute("UPDATE update_state SET pts = pts + ? WHERE id = 0", (delta,))
                next_id += 1
                date = int(time.time())
                conn.execute("INSERT INTO entities(id, hash, username, phone, name, date) VALUES (?,?,?,?,?,?)",
                             (next_id, random.getrandbits(63), None, None, 'Churn %d' % next_id, date))
                conn.execute("UPDATE update_state SET pts = pts + ?, seq = seq + 1 WHERE id = 0", (date,))
                known.append(next_id)
            time.sleep(0.003)  # the write transaction stays open, as Telethon's does between saves
            for conn in conns:
                conn.commit()
            commits += 1
            report(commits)
        for conn in conns:
            conn.close()
        """, arguments: [String(decoding: try JSONEncoder().encode(sessionFiles), as: UTF8.self), String(boundSeconds)])
  }

  /// The real Telethon (the test virtualenv's 1.45) writing through its own `SQLiteSession` on
  /// several session files, as a running client does: `process_entities` caches a new user,
  /// `set_update_state` records the new state, the transaction stays open a few milliseconds,
  /// then `save()` commits. Invariant in every commit: `update_state` row 0 has
  /// `pts = seq = count(entities with id >= 8e9)` (the entities this writer added).
  public static func realTelethon(sessionFiles: [String], boundSeconds: Int = 1200) throws -> LiveWriter {
    try LiveWriter(
      script: """
        import datetime, json, os, random, sys, time
        from telethon.sessions import SQLiteSession
        from telethon.tl import types
        stop, progress, paths, bound = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), float(sys.argv[4])
        BASE = 8_000_000_000
        def state(count):
            return types.updates.State(pts=count, qts=0, date=datetime.datetime.now(datetime.timezone.utc),
                                       seq=count, unread_count=0)
        sessions, counts = [], []
        for path in paths:
            s = SQLiteSession(path)
            c = s._cursor()
            count = c.execute('SELECT count(*) FROM entities WHERE id >= ?', (BASE,)).fetchone()[0]
            c.close()
            s.set_update_state(0, state(count))
            s.save()
            sessions.append(s)
            counts.append(count)
        def report(n):
            with open(progress + '.tmp', 'w') as f: f.write(str(n))
            os.replace(progress + '.tmp', progress)
        commits, deadline = 0, time.time() + bound
        while not os.path.exists(stop) and time.time() < deadline:
            for i, s in enumerate(sessions):
                counts[i] += 1
                n = counts[i]
                user = types.User(id=BASE + n, access_hash=random.getrandbits(63), username='live%d' % n,
                                  phone=None, first_name='Live %d' % n)
                s.process_entities([user])
                s.set_update_state(0, state(n))
            time.sleep(0.002)  # Telethon keeps the transaction open between saves
            for s in sessions:
                s.save()
            commits += 1
            report(commits)
        for s in sessions:
            s.close()
        """, arguments: [String(decoding: try JSONEncoder().encode(sessionFiles), as: UTF8.self), String(boundSeconds)])
  }

  /// The invariant `realTelethon` keeps, as SQL answering 1.
  public static let realTelethonInvariant =
    "SELECT (SELECT pts FROM update_state WHERE id = 0) = (SELECT count(*) FROM entities WHERE id >= 8000000000) "
    + "AND (SELECT seq FROM update_state WHERE id = 0) = (SELECT pts FROM update_state WHERE id = 0)"

  /// The invariant `telethonLike` keeps, as SQL answering 1.
  public static let sessionInvariant =
    "SELECT (SELECT pts FROM update_state WHERE id = 0) = (SELECT sum(date) FROM entities) "
    + "AND (SELECT seq FROM update_state WHERE id = 0) = (SELECT count(*) FROM entities)"

  /// Mimics the bot copying messages: each transaction inserts into `message_log` and counts it
  /// in `copy_stats` (a table of the bot's own). Invariant in every commit:
  /// `copy_stats.copied = count(message_log)`.
  public static func botDatabase(_ databasePath: String, boundSeconds: Int = 150) throws -> LiveWriter {
    try LiveWriter(
      script: """
        import os, random, sqlite3, sys, time
        stop, progress, path, bound = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
        conn = sqlite3.connect(path, timeout=60)
        conn.execute("CREATE TABLE IF NOT EXISTS copy_stats (name TEXT PRIMARY KEY, copied INTEGER NOT NULL)")
        conn.execute("INSERT OR REPLACE INTO copy_stats VALUES ('message_log', (SELECT count(*) FROM message_log))")
        conn.commit()
        def report(n):
            with open(progress + '.tmp', 'w') as f: f.write(str(n))
            os.replace(progress + '.tmp', progress)
        commits, deadline = 0, time.time() + bound
        while not os.path.exists(stop) and time.time() < deadline:
            conn.execute("INSERT INTO message_log(user_id, chat_id, message_id, body, copied_at) "
                         "VALUES (?, ?, ?, ?, datetime('now'))",
                         (random.randint(1, 10**9), -1001000000000, commits, 'copied message %d' % commits))
            time.sleep(0.002)
            conn.execute("UPDATE copy_stats SET copied = copied + 1 WHERE name = 'message_log'")
            conn.commit()
            commits += 1
            report(commits)
        conn.close()
        """, arguments: [databasePath, String(boundSeconds)])
  }

  /// The bot as kurigram opens its files: `sqlite3.connect(timeout=1)`, a transaction that
  /// inserts into `message_log` and counts it in `copy_stats` (the invariant of `botDatabase`),
  /// a commit every `intervalMS`. A "database is locked" error is counted, rolled back and the
  /// writer goes on, so that `stall` can report every one; each transaction's time is measured.
  public static func impatientBot(_ databasePath: String, intervalMS: Int = 5, boundSeconds: Int = 300) throws
    -> LiveWriter
  {
    try LiveWriter(
      script: """
        import json, os, random, sqlite3, sys, time
        stop, progress, path, interval, bound = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
        conn = sqlite3.connect(path, timeout=1)
        conn.execute("CREATE TABLE IF NOT EXISTS copy_stats (name TEXT PRIMARY KEY, copied INTEGER NOT NULL)")
        conn.execute("INSERT OR REPLACE INTO copy_stats VALUES ('message_log', (SELECT count(*) FROM message_log))")
        conn.commit()
        commits, errors, longest, messages = 0, 0, 0.0, []
        def report():
            with open(progress + '.stats.tmp', 'w') as f:
                json.dump({"commits": commits, "errors": errors, "longest_ms": longest * 1000, "messages": messages[:5]}, f)
            os.replace(progress + '.stats.tmp', progress + '.stats')
            with open(progress + '.tmp', 'w') as f: f.write(str(commits))
            os.replace(progress + '.tmp', progress)
        deadline, last = time.time() + bound, 0.0
        while not os.path.exists(stop) and time.time() < deadline:
            started = time.monotonic()
            try:
                conn.execute("INSERT INTO message_log(user_id, chat_id, message_id, body, copied_at) "
                             "VALUES (?, ?, ?, ?, datetime('now'))",
                             (random.randint(1, 10**9), -1001000000000, commits, 'copied message %d' % commits))
                conn.execute("UPDATE copy_stats SET copied = copied + 1 WHERE name = 'message_log'")
                conn.commit()
                commits += 1
            except sqlite3.OperationalError as e:
                errors += 1
                messages.append(str(e))
                conn.rollback()
            longest = max(longest, time.monotonic() - started)
            if commits % 20 == 0 or errors or time.monotonic() - last > 0.2:
                report()
                last = time.monotonic()
            time.sleep(interval / 1000)
        report()
        conn.close()
        """, arguments: [databasePath, String(intervalMS), String(boundSeconds)])
  }

  /// What `impatientBot` saw so far: its commits, its "database is locked" (or other) errors,
  /// and its longest transaction.
  public var stall: (commits: Int, errors: Int, longestMS: Double, messages: [String]) {
    struct Stats: Decodable {
      var commits: Int
      var errors: Int
      var longest_ms: Double
      var messages: [String]
    }
    guard let data = FileManager.default.contents(atPath: progressFile + ".stats"),
      let stats = try? JSONDecoder().decode(Stats.self, from: data)
    else { return (0, 0, 0, []) }
    return (stats.commits, stats.errors, stats.longest_ms, stats.messages)
  }

  /// Holds `BEGIN EXCLUSIVE` on an SQLite file (a bot in the middle of a long write) until stopped.
  public static func exclusiveLock(on path: String, boundSeconds: Int = 150) throws -> LiveWriter {
    try LiveWriter(
      script: """
        import os, sqlite3, sys, time
        stop, progress, path, bound = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
        conn = sqlite3.connect(path, timeout=60, isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        with open(progress + '.tmp', 'w') as f: f.write('1')
        os.replace(progress + '.tmp', progress)
        deadline = time.time() + bound
        while not os.path.exists(stop) and time.time() < deadline:
            time.sleep(0.01)
        conn.execute("ROLLBACK")
        conn.close()
        """, arguments: [path, String(boundSeconds)])
  }

  /// The invariant `botDatabase` keeps, as SQL answering 1.
  public static let databaseInvariant =
    "SELECT (SELECT copied FROM copy_stats WHERE name = 'message_log') = (SELECT count(*) FROM message_log)"
}

/// Finds which of many needles (each at least 16 bytes) occur in a text, in one pass over it:
/// each 16-byte window is looked up among the needles' first 16 bytes.
struct SubstringFinder {
  struct Window: Hashable {
    var low: UInt64
    var high: UInt64
  }
  private var byPrefix: [Window: [[UInt8]]] = [:]

  init(_ needles: [String]) {
    for needle in needles {
      let bytes = Array(needle.utf8)
      guard bytes.count >= 16 else { continue }
      byPrefix[Self.window(bytes, at: 0), default: []].append(bytes)
    }
  }

  static func window(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> Window {
    Window(
      low: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self),
      high: bytes.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self))
  }

  static func window(_ bytes: [UInt8], at offset: Int) -> Window {
    bytes.withUnsafeBytes { window($0, at: offset) }
  }

  /// The needles that occur in `text`.
  func matches(in text: String) -> Set<String> {
    let bytes = Array(text.utf8)
    guard bytes.count >= 16 else { return [] }
    var found = Set<String>()
    bytes.withUnsafeBytes { raw in
      for offset in 0...(raw.count - 16) {
        guard let candidates = byPrefix[Self.window(raw, at: offset)] else { continue }
        for needle in candidates where offset + needle.count <= raw.count {
          if needle.elementsEqual(raw[offset..<offset + needle.count]) {
            found.insert(String(decoding: needle, as: UTF8.self))
          }
        }
      }
    }
    return found
  }
}

// MARK: - Trees

/// The files under a directory: visible regular files with their SHA-256, and hidden entries
/// (names starting with "."), which are not descended into. tgsess's caches
/// (`FileTree.cacheNames`) are neither.
public struct TreeSnapshot: Equatable, Sendable {
  public var files: [String: String] = [:]
  public var hidden: [String] = []

  /// - Throws: `TestHelperError` when a file cannot be read.
  public init(_ root: String) throws {
    guard FileManager.default.fileExists(atPath: root) else { return }
    var stack = [""]
    while let relative = stack.popLast() {
      let directory = relative.isEmpty ? root : root + "/" + relative
      for name in try FileManager.default.contentsOfDirectory(atPath: directory).sorted() {
        let path = relative.isEmpty ? name : relative + "/" + name
        if FileTree.cacheNames.contains(name) {
          continue
        } else if name.hasPrefix(".") {
          hidden.append(path)
        } else if FileSystem.isDirectory(root + "/" + path) {
          stack.append(path)
        } else {
          files[path] = try FileSystem.sha256(ofFile: root + "/" + path)
        }
      }
    }
    hidden.sort()
  }

  /// Regular files under `root`, relative, hidden ones included.
  /// - Throws: `TestHelperError`.
  public static func regularFiles(under root: String) throws -> [String] {
    var result: [String] = []
    let enumerator = FileManager.default.enumerator(atPath: root)
    while let relative = enumerator?.nextObject() as? String {
      if !FileSystem.isDirectory(root + "/" + relative) { result.append(relative) }
    }
    return result.sorted()
  }
}

// MARK: - tmpfs

/// A tmpfs mounted over a directory (tests run as root), unmounted by `unmount()` or on deinit.
public final class TmpfsMount: @unchecked Sendable {
  public let path: String
  private var isMounted = true

  /// Mounts a tmpfs of `sizeKiB` at `path` (created if missing).
  /// - Throws: `TestHelperError` saying what is needed when mount fails.
  public init(at path: String, sizeKiB: Int) throws {
    self.path = path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    let result = try runProcess("/bin/mount", ["-t", "tmpfs", "-o", "size=\(sizeKiB)k,mode=0700", "tmpfs", path])
    guard result.status == 0 else {
      throw TestHelperError(
        "mount -t tmpfs at \(path) failed (\(result.stderr.trimmingCharacters(in: .whitespacesAndNewlines))); these tests must run as root where mount works"
      )
    }
  }

  /// Free bytes on the mount.
  public var freeBytes: Int64 {
    var info = statvfs()
    guard statvfs(path, &info) == 0 else { return 0 }
    return Int64(info.f_bavail) * Int64(info.f_frsize)
  }

  /// Unmounts (lazily if something still holds it).
  public func unmount() {
    guard isMounted else { return }
    isMounted = false
    if (try? runProcess("/bin/umount", [path]))?.status != 0 { _ = try? runProcess("/bin/umount", ["-l", path]) }
  }

  deinit { unmount() }
}

// MARK: - JSON

/// Decodes a tgsess `--json` output (ISO 8601 dates).
/// - Throws: `TestHelperError` with the output when it does not decode.
public func decodeJSON<T: Decodable>(_ type: T.Type, from result: ProcessResult) throws -> T {
  let decoder = JSONDecoder()
  decoder.dateDecodingStrategy = .iso8601
  do { return try decoder.decode(type, from: result.stdoutData) } catch {
    throw TestHelperError(
      "cannot decode \(type) (\(error)) from status \(result.status): \(result.stdout.prefix(500)) \(result.stderr)")
  }
}

/// A date as `--json` prints it and `--at` takes it (ISO 8601, UTC, whole seconds).
public func iso8601(_ date: Date) -> String { ISO8601DateFormatter().string(from: date) }

import Foundation
import Jobs
import Store
import TestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

// Shared by the torture families: the scale switch, the per-case results `scripts/torture.sh`
// counts, the capture of every output for the secret scan, and generated deployments.

/// How much torture to do. Every torture test is disabled (reported as skipped) unless
/// `TGSESS_TORTURE_SCALE` is `quick` or `full`, so a plain `swift test` runs none of them.
enum Torture {
  enum Scale: String {
    case quick, full
  }

  static let environment = ProcessInfo.processInfo.environment
  static let scale = Scale(rawValue: environment["TGSESS_TORTURE_SCALE"] ?? "")
  static let isEnabled = scale != nil
  static var isFull: Bool { scale == .full }

  /// `quick` in a quick run, `full` in a full one.
  static func pick<T>(quick: T, full: T) -> T { isFull ? full : quick }

  /// Where results, captured outputs and secrets go (`TGSESS_TORTURE_OUT`, set by torture.sh).
  static let outputDirectory: String = {
    let path =
      environment["TGSESS_TORTURE_OUT"]
      ?? (NSTemporaryDirectory() as NSString).appendingPathComponent(
        "tgsess-torture-\(getpid())")
    for sub in ["results", "capture", "secrets"] {
      try? FileManager.default.createDirectory(atPath: path + "/" + sub, withIntermediateDirectories: true)
    }
    return path
  }()

  /// The bot token every tgsess child sees (in its environment and its config's token file), so
  /// the secret scan can look for it. torture.sh passes one per run; else one per process.
  static let botToken: String = {
    if let token = environment["TGSESS_TORTURE_BOT_TOKEN"], !token.isEmpty { return token }
    let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
    return "\(Int.random(in: 100_000_000...999_999_999)):AA"
      + String((0..<33).map { _ in alphabet[Int.random(in: 0..<alphabet.count)] })
  }()

  /// A random seed for this process, printed with each family so a failure can be replayed
  /// (`TGSESS_TORTURE_SEED`).
  static let seed: UInt64 = UInt64(environment["TGSESS_TORTURE_SEED"] ?? "") ?? UInt64.random(in: 1...UInt64.max / 2)
}

/// A seedable generator for the random choices of a family (SplitMix64).
struct TortureRandom: RandomNumberGenerator {
  var state: UInt64
  init(seed: UInt64) { state = seed }
  mutating func next() -> UInt64 {
    state &+= 0x9e37_79b9_7f4a_7c15
    var z = state
    z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
    z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
    return z ^ (z >> 31)
  }
}

// MARK: - Results

/// One line of `<out>/results/<family>.jsonl`, what `scripts/torture-report.py` builds the
/// report from: a case (`case`, `passed`, ...), or a tally of the family alone (`counts` only).
struct ResultLine: Encodable {
  var family: String
  var `case`: String?
  var passed: Bool?
  var seconds: Double?
  var problems: [String]?
  var detail: String?
  /// What the line counts toward in the family's figure line, e.g. `["file mutations": 100]`;
  /// the report sums each name over the family's lines.
  var counts: [String: Int]?
}

/// The cases of one family: each is recorded as one JSON line in
/// `<out>/results/<family>.jsonl` (what torture.sh counts) and each problem fails the test too.
final class FamilyReport: @unchecked Sendable {
  let family: String
  private let lock = NSLock()
  private(set) var passed = 0
  private(set) var failed = 0
  private let path: String
  private let started = Date()

  init(_ family: String) {
    self.family = family
    path = Torture.outputDirectory + "/results/\(family).jsonl"
    print("torture \(family): scale \(Torture.scale?.rawValue ?? "-"), seed \(Torture.seed)")
  }

  /// Runs one case: `body` returns its problems (empty when it passed); a thrown error is one.
  /// `counts` are what the case counts toward in the family's figure line.
  @discardableResult
  func check(
    _ name: String, counts: [String: Int] = [:], sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws -> [String]
  ) -> Bool {
    let start = Date()
    var problems: [String]
    do { problems = try body() } catch { problems = ["error: \(error)"] }
    record(
      name, problems: problems, seconds: Date().timeIntervalSince(start), counts: counts,
      sourceLocation: sourceLocation)
    return problems.isEmpty
  }

  /// Runs one case whose body also describes what happened (kept with the result).
  @discardableResult
  func check(
    _ name: String, counts: [String: Int] = [:], sourceLocation: SourceLocation = #_sourceLocation,
    described body: () throws -> (problems: [String], detail: String)
  ) -> Bool {
    let start = Date()
    var problems: [String]
    var detail = ""
    do { (problems, detail) = try body() } catch { problems = ["error: \(error)"] }
    record(
      name, problems: problems, seconds: Date().timeIntervalSince(start), detail: detail, counts: counts,
      sourceLocation: sourceLocation)
    return problems.isEmpty
  }

  /// Records a case whose outcome is already known.
  func record(
    _ name: String, problems: [String], seconds: Double = 0, detail: String = "", counts: [String: Int] = [:],
    sourceLocation: SourceLocation = #_sourceLocation
  ) {
    for problem in problems.prefix(20) {
      Issue.record("\(family) / \(name): \(problem)", sourceLocation: sourceLocation)
    }
    lock.withLock {
      if problems.isEmpty { passed += 1 } else { failed += 1 }
    }
    write(
      ResultLine(
        family: family, case: name, passed: problems.isEmpty, seconds: (seconds * 1000).rounded() / 1000,
        problems: Array(problems.prefix(20)).map { String($0.prefix(2000)) }, detail: detail,
        counts: counts.isEmpty ? nil : counts))
  }

  /// Records figures of the family that belong to no case (e.g. how many runs a kill reached).
  func tally(_ counts: [String: Int]) {
    write(ResultLine(family: family, counts: counts))
  }

  private func write(_ line: ResultLine) {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    guard let data = try? encoder.encode(line) else {
      Issue.record("\(family): a result line could not be encoded")
      return
    }
    lock.withLock {
      let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
      guard fd >= 0 else {
        Issue.record("\(family): cannot open \(path) (errno \(errno))")
        return
      }
      defer { close(fd) }
      (data + Data("\n".utf8)).withUnsafeBytes { _ = Glibc.write(fd, $0.baseAddress, $0.count) }
    }
  }

  /// A one-line summary for the test log.
  var summary: String {
    "\(family): \(passed + failed) cases, \(passed) passed, \(failed) failed in \(Int(Date().timeIntervalSince(started))) s"
  }
}

// MARK: - Output capture

/// Keeps every stdout/stderr a torture child printed, for the secret scan (one file each).
enum Capture {
  private static let lock = NSLock()
  nonisolated(unsafe) private static var counter = 0

  static func keep(_ label: String, stdout: String, stderr: String) {
    let number = lock.withLock {
      counter += 1
      return counter
    }
    let path = Torture.outputDirectory + "/capture/\(getpid())-\(String(format: "%06d", number)).txt"
    let text = "== \(label)\n-- stdout\n\(stdout)\n-- stderr\n\(stderr)\n"
    FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
  }

  static func keep(_ label: String, _ result: ProcessResult) {
    keep(label, stdout: result.stdout, stderr: result.stderr)
  }

  static func keep(_ process: BackgroundProcess) {
    keep(process.label, stdout: process.stdout, stderr: process.stderr)
  }
}

/// Gathers the secrets of the deployments the torture used, for the secret scan: Fernet keys,
/// the database's Fernet tokens and what they decrypt to (session strings, api_hash), every
/// session file's auth key (hex both cases, its first half, base64, URL-safe base64), the
/// Telethon string of every Telethon file, the age identity and the bot token. Written as
/// `[label, value]` lines to `<out>/secrets/*.jsonl`, never printed.
enum SecretRegistry {
  static let collector = #"""
    import base64, json, os, sqlite3, struct, sys, ipaddress
    root, out_path, bot_token = sys.argv[1], sys.argv[2], sys.argv[3]
    out = [['the bot token', bot_token]]
    def add(label, value):
        if isinstance(value, str) and len(value) >= 16:
            out.append([label, value])
    keys = []
    for name in ('fernet.keys',):
        path = os.path.join(root, 'keys', name)
        if os.path.exists(path):
            keys = [l.strip() for l in open(path) if l.strip() and not l.startswith('#')]
    for k in keys:
        add('a Fernet key', k)
    fernet = None
    if keys:
        from cryptography.fernet import Fernet, MultiFernet, InvalidToken
        fernet = MultiFernet([Fernet(k) for k in keys])
    ident = os.path.join(root, 'keys', 'age-identity.txt')
    if os.path.exists(ident):
        for line in open(ident):
            if line.startswith('AGE-SECRET-KEY-'):
                add('the age identity', line.strip())
    db = os.path.join(root, 'data', 'telegram_bot.db')
    def scan_db(db):
        try:
            conn = sqlite3.connect('file:%s?mode=ro' % db, uri=True)
            for table in ('user_sessions', 'session_backups'):
                try:
                    rows = conn.execute('SELECT session_string, api_hash FROM %s' % table).fetchall()
                except sqlite3.Error:
                    continue
                for values in rows:
                    for value, label in zip(values, ('a session string', 'an api_hash')):
                        if not value:
                            continue
                        add(label if not value.startswith('gAAAAA') else 'a Fernet token of ' + label, value)
                        if value.startswith('gAAAAA') and fernet:
                            try:
                                add(label, fernet.decrypt(value.encode()).decode())
                            except Exception:
                                pass
            conn.close()
        except sqlite3.Error:
            pass
    if os.path.exists(db):
        scan_db(db)
    sessions = os.path.join(root, 'sessions')
    names = sorted(os.listdir(sessions)) if os.path.isdir(sessions) else []
    for name in names:
        if '.session' not in name or name.endswith(('-journal', '-wal', '-shm')):
            continue
        path = os.path.join(sessions, name)
        try:
            conn = sqlite3.connect('file:%s?mode=ro' % path, uri=True)
            cols = [r[1] for r in conn.execute('PRAGMA table_info(sessions)')]
            rows = conn.execute('SELECT * FROM sessions').fetchall()
            conn.close()
        except sqlite3.Error:
            continue
        for row in rows:
            rec = dict(zip(cols, row))
            key = rec.get('auth_key')
            if not isinstance(key, bytes) or len(key) < 32:
                continue
            label = 'the auth key of ' + name
            b64 = base64.b64encode(key).decode()
            for form in (key.hex(), key.hex().upper(), key.hex()[:32], b64,
                         b64.replace('+', '-').replace('/', '_').rstrip('=')):
                add(label, form)
            try:
                if rec.get('server_address') and rec.get('port') and len(key) == 256:
                    ip = ipaddress.ip_address(rec['server_address']).packed
                    fmt = '>B{}sH256s'.format(len(ip))
                    s = '1' + base64.urlsafe_b64encode(struct.pack(fmt, rec['dc_id'], ip, rec['port'], key)).decode()
                    add('the Telethon string of ' + name, s)
            except Exception:
                pass
    with open(out_path, 'a') as f:
        for pair in out:
            f.write(json.dumps(pair) + '\n')
    print(len(out))
    """#

  private static let lock = NSLock()
  nonisolated(unsafe) private static var counter = 0

  /// Records the secrets the deployment at `root` holds now (call again after keys change).
  /// - Throws: `TestHelperError` when the collector fails.
  static func collect(root: String) throws {
    let number = lock.withLock {
      counter += 1
      return counter
    }
    let path = Torture.outputDirectory + "/secrets/\(getpid())-\(number).jsonl"
    try runPython(collector, arguments: [root, path, Torture.botToken])
  }
}

// MARK: - Deployments

/// A `TestFleet` for torture, with a `tgsess.toml` naming the bot's token file. Every tgsess run
/// through it is captured for the secret scan (in files, for torture.sh), and its secrets are
/// recorded as they change.
final class TortureFleet: @unchecked Sendable {
  let fleet: TestFleet
  var root: String { fleet.root }
  var deployment: Deployment { fleet.deployment }
  var userIDs: [Int64] { fleet.userIDs }

  /// Generates `users` users under a new temporary directory (or at `root`).
  /// - Throws: `TestHelperError` when the generator fails.
  init(
    users: Int, legacy: Bool = false, seed: UInt64 = 1, root explicitRoot: String? = nil, pyrogramShare: Double = 0.2,
    entities: Int = 40, messageLogMiB: Int = 0
  ) throws {
    fleet = try TestFleet(
      users: users, legacy: legacy, seed: seed, pyrogramShare: pyrogramShare, entities: entities,
      messageLogMiB: messageLogMiB, keepsOutputs: false,
      location: explicitRoot.map { .path($0) } ?? .subdirectory("live"), label: "tgsess-torture")
    // The bot's token file, named by the config as a production deployment would.
    try FileSystem.makeDirectory(root + "/keys")
    try FileSystem.writeAtomically(Data((Torture.botToken + "\n").utf8), to: root + "/keys/bot-token")
    try FileSystem.writeAtomically(Data("[bot]\ntoken_file = \"keys/bot-token\"\n".utf8), to: root + "/tgsess.toml")
    try collectSecrets()
  }

  /// The environment of every tgsess child: the bot token as the bot runner would get it.
  static var childEnvironment: [String: String] { ["TGSESS_BOT_TOKEN": Torture.botToken] }

  /// Runs the built tgsess with `--root` appended; the output is captured.
  @discardableResult
  func tgsess(_ arguments: [String], environment: [String: String] = [:]) throws -> ProcessResult {
    let result = try fleet.tgsess(arguments, environment: Self.childEnvironment.merging(environment) { $1 })
    Capture.keep("tgsess " + arguments.joined(separator: " "), result)
    return result
  }

  /// Runs tgsess and requires exit status 0.
  /// - Throws: `TestHelperError` naming the command and its stderr otherwise.
  @discardableResult
  func tgsessOK(_ arguments: [String], environment: [String: String] = [:]) throws -> ProcessResult {
    let result = try tgsess(arguments, environment: environment)
    guard result.status == 0 else {
      throw TestHelperError("tgsess \(arguments.joined(separator: " ")) exited \(result.status): \(result.stderr)")
    }
    return result
  }

  /// Starts tgsess in the background; pass the process to `Capture.keep` when it is done.
  func background(_ arguments: [String], environment: [String: String] = [:]) throws -> BackgroundProcess {
    try fleet.tgsessInBackground(arguments, environment: Self.childEnvironment.merging(environment) { $1 })
  }

  func collectSecrets() throws { try SecretRegistry.collect(root: root) }

  func sessionPath(_ userID: Int64) -> String { deployment.sessionPath(userID: userID) }

  var databasePath: String { deployment.databasePath }

  var identities: [AgeIdentity] { (try? KeyStore.loadIdentities(deployment)) ?? [] }

  /// Runs SQL on a session file through the sqlite3 CLI (as another process would).
  func sql(_ sql: String, on path: String) throws {
    let result = try runProcess(StockTools.sqlite3, ["-cmd", ".timeout 10000", path, sql])
    guard result.status == 0 else { throw TestHelperError("sqlite3 \(path) '\(sql)': \(result.stderr)") }
  }

  /// Gives users new random auth keys (a re-login), so the next backup writes their archives.
  func rotateKeys(_ users: [Int64]) throws {
    for user in users { try sql("UPDATE sessions SET auth_key = randomblob(256)", on: sessionPath(user)) }
    try collectSecrets()
  }
}

// MARK: - Witnesses

/// What the checks compare: file hashes, table contents (as digests, so no secret reaches a
/// failure message), session identities, and the archives `tgsess list` shows.
enum Witness {
  /// SHA-256 of every regular file in `sessions/`, by name.
  static func sessionFiles(_ fleet: TortureFleet) throws -> [String: String] {
    var hashes: [String: String] = [:]
    let directory = fleet.deployment.sessionsDirectory
    for name in try FileManager.default.contentsOfDirectory(atPath: directory) {
      let path = directory + "/" + name
      if !FileSystem.isDirectory(path) { hashes[name] = try FileSystem.sha256(ofFile: path) }
    }
    return hashes
  }

  /// Every table of an SQLite file as `table → row key → column → digest of the value`, with
  /// Fernet-encrypted secrets compared by what they decrypt to.
  static let tableDumper = #"""
    import hashlib, json, os, sqlite3, sys
    db, keyfile = sys.argv[1], sys.argv[2]
    keys = []
    if keyfile and os.path.exists(keyfile):
        keys = [l.strip() for l in open(keyfile) if l.strip() and not l.startswith('#')]
    fernet = None
    if keys:
        from cryptography.fernet import Fernet, MultiFernet
        fernet = MultiFernet([Fernet(k) for k in keys])
    def digest(value):
        if isinstance(value, str) and value.startswith('gAAAAA') and fernet:
            try:
                value = 'plain:' + fernet.decrypt(value.encode()).decode()
            except Exception:
                value = 'undecryptable:' + value
        elif isinstance(value, str):
            value = 'plain:' + value
        elif isinstance(value, bytes):
            value = 'hex:' + value.hex()
        return hashlib.sha256(json.dumps(value).encode()).hexdigest()[:16]
    conn = sqlite3.connect('file:%s?mode=ro' % db, uri=True)
    conn.execute('PRAGMA busy_timeout = 10000')
    out = {}
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"):
        info = conn.execute('PRAGMA table_info("%s")' % name).fetchall()
        cols = [r[1] for r in info]
        pk = [r[1] for r in sorted(info, key=lambda r: r[5]) if r[5] > 0]
        select = ', '.join('"%s"' % c for c in cols)
        try:
            rows = conn.execute('SELECT rowid, %s FROM "%s"' % (select, name)).fetchall()
            keyed = [(str(r[0]) if not pk else '|'.join(str(r[1 + cols.index(c)]) for c in pk), r[1:]) for r in rows]
        except sqlite3.Error:
            rows = conn.execute('SELECT %s FROM "%s"' % (select, name)).fetchall()
            keyed = [('|'.join(str(r[cols.index(c)]) for c in pk), r) for r in rows]
        table = {}
        for key, row in keyed:
            table[key] = {c: digest(v) for c, v in zip(cols, row)}
        out[name] = table
    print(json.dumps(out))
    """#

  typealias Tables = [String: [String: [String: String]]]

  /// A copy of an SQLite file as its next writer will see it: the file and its `-journal` or
  /// `-wal` copied aside and opened read-write there, so a hot journal a killed writer left is
  /// rolled back (in the copy; the live file is left as it is for the next run to find).
  /// - Returns: the copy's path, in `directory`.
  static func settledCopy(of path: String, in directory: TemporaryDirectory) throws -> String {
    let copy = directory.file(UUID().uuidString + ".db")
    for suffix in ["", "-journal", "-wal"] where FileSystem.exists(path + suffix) {
      try FileSystem.writeAtomically(try FileSystem.read(path + suffix), to: copy + suffix)
    }
    let settled = try runProcess(StockTools.sqlite3, [copy, "PRAGMA schema_version"])
    guard settled.status == 0 else { throw TestHelperError("sqlite3 cannot open a copy of \(path): \(settled.stderr)") }
    return copy
  }

  /// The archive ids `session_backups` rows name (the database as its next writer sees it).
  static func recordedArchiveIDs(_ fleet: TortureFleet) throws -> [String] {
    let scratch = try TemporaryDirectory("tgsess-settled")
    let copy = try settledCopy(of: fleet.databasePath, in: scratch)
    return try StockTools.query(copy, "SELECT archive_id FROM session_backups WHERE archive_id IS NOT NULL")
      .split(separator: "\n").map(String.init)
  }

  /// `PRAGMA integrity_check` of the database as its next writer sees it ("ok" when sound).
  static func integrity(_ path: String) throws -> String {
    let scratch = try TemporaryDirectory("tgsess-settled")
    return try StockTools.integrityCheck(try settledCopy(of: path, in: scratch))
  }

  /// The tables of the bot database (or `path`) as its next writer sees them, secrets decrypted
  /// with the fleet's keys.
  /// - Throws: `TestHelperError` when the file cannot be read.
  static func tables(_ fleet: TortureFleet, path: String? = nil) throws -> Tables {
    let scratch = try TemporaryDirectory("tgsess-settled")
    let copy = try settledCopy(of: path ?? fleet.deployment.databasePath, in: scratch)
    let result = try runPython(tableDumper, arguments: [copy, fleet.deployment.fernetKeysPath])
    do { return try JSONDecoder().decode(Tables.self, from: result.stdoutData) } catch {
      throw TestHelperError("table dump printed no JSON: \(result.stderr)")
    }
  }

  /// The columns `check` and `recover` update with what they found: not session data.
  static let healthColumns: Set<String> = ["health", "last_checked_at", "last_error"]

  /// Where `after` differs from `before` in `tables`, comparing only the columns `before` had
  /// (a migration may add columns) and leaving out `healthColumns`. One line per difference,
  /// without values.
  static func differences(_ before: Tables, _ after: Tables, tables: [String]) -> [String] {
    var lines: [String] = []
    for table in tables {
      let old = before[table] ?? [:]
      let new = after[table] ?? [:]
      for key in Set(old.keys).union(new.keys).sorted() {
        guard let oldRow = old[key] else {
          lines.append("\(table): row \(key) appeared")
          continue
        }
        guard let newRow = new[key] else {
          lines.append("\(table): row \(key) vanished")
          continue
        }
        for (column, value) in oldRow.sorted(by: { $0.key < $1.key })
        where newRow[column] != value && !healthColumns.contains(column) {
          lines.append("\(table): row \(key) column \(column) changed")
        }
      }
    }
    return lines
  }

  /// The problem with each user's session file (nil when it validates), and its identity.
  static func sessions(_ fleet: TortureFleet, users: [Int64]) -> [Int64: Result<String, StoreError>] {
    var out: [Int64: Result<String, StoreError>] = [:]
    for user in users {
      do {
        let info = try SessionFileInspector.inspect(path: fleet.sessionPath(user))
        out[user] = .success("dc\(info.identity.dcID)-\(info.identity.authKey.fingerprint)")
      } catch let error as StoreError {
        out[user] = .failure(error)
      } catch {
        out[user] = .failure(.invalid(path: fleet.sessionPath(user), reason: "\(error)", hint: ""))
      }
    }
    return out
  }

  /// The identity (`dcN-fingerprint`) of every user whose file validates.
  static func identities(_ fleet: TortureFleet, users: [Int64]) -> [Int64: String] {
    sessions(fleet, users: users).compactMapValues { try? $0.get() }
  }

  /// The archives `tgsess list --json` shows.
  /// - Throws: `TestHelperError` when list fails or prints something else.
  static func listed(_ fleet: TortureFleet) throws -> [ListedArchive] {
    let result = try fleet.tgsess(["list", "--json"])
    guard result.status == 0 else { throw TestHelperError("tgsess list failed (\(result.status)): \(result.stderr)") }
    return try decodeJSON([ListedArchive].self, from: result)
  }

  /// Every archive `tgsess list` shows, decrypted and every entry hashed against its manifest by
  /// tgsess's reader, and signed by the deployment's key (a writer publishes only what it signed).
  /// Returns the problems (one per archive that does not verify).
  static func verifyListed(_ fleet: TortureFleet) throws -> (count: Int, problems: [String]) {
    let archives = try listed(fleet)
    let identities = fleet.identities
    var problems: [String] = []
    for archive in archives {
      do {
        _ = try ArchiveReader.read(path: archive.path, identities: identities)
      } catch {
        problems.append("listed archive \(archive.id) does not verify: \(error)")
      }
      if archive.signature != .signed {
        problems.append("listed archive \(archive.id) is \(archive.signature.rawValue), not signed")
      } else if archive.verification == nil || archive.verification == .unknown {
        problems.append("listed archive \(archive.id) has no record")
      }
    }
    return (archives.count, problems)
  }

  /// SHA-256 of every archive file (visible, by path relative to backups/).
  static func archiveFiles(_ fleet: TortureFleet) throws -> [String: String] {
    let snapshot = try TreeSnapshot(fleet.deployment.backupsDirectory)
    return snapshot.files.filter {
      $0.key.hasSuffix(ArchiveName.encryptedSuffix) || $0.key.hasSuffix(ArchiveName.plainSuffix)
    }
  }

  /// Hidden entries (temporaries, staging directories) anywhere in the deployment but the lock files.
  static func leftovers(_ fleet: TortureFleet) throws -> [String] {
    var found: [String] = []
    let enumerator = FileManager.default.enumerator(atPath: fleet.root)
    while let relative = enumerator?.nextObject() as? String {
      let name = (relative as NSString).lastPathComponent
      if name.hasPrefix("."), !FileTree.lockNames.contains(name) { found.append(relative) }
    }
    return found.sorted()
  }

  /// Every user keeps a session: their file validates, or `tgsess recover --user` brings it back;
  /// either way it must hold the identity it had (`expected`), when given.
  /// - Returns: the problems.
  static func noSessionLost(_ fleet: TortureFleet, expected: [Int64: String]) throws -> [String] {
    var problems: [String] = []
    let now = sessions(fleet, users: Array(expected.keys))
    for (user, identity) in expected.sorted(by: { $0.key < $1.key }) {
      var current = try? now[user]?.get()
      if current == nil {
        let recovered = try fleet.tgsess(["recover", "--user", String(user), "--json"])
        if recovered.status != 0 {
          problems.append("user \(user): file invalid and recover exited \(recovered.status): \(recovered.stderr)")
          continue
        }
        current = try? sessions(fleet, users: [user])[user]?.get()
      }
      if current == nil {
        problems.append("user \(user) lost their session (file invalid, recover did not bring it back)")
      } else if current != identity {
        problems.append("user \(user) holds another session than before (\(current!) instead of \(identity))")
      }
    }
    return problems
  }
}

/// Polls `condition` every few milliseconds until it holds or `seconds` pass.
func eventually(_ seconds: Double, _ condition: () -> Bool) -> Bool {
  let deadline = Date().addingTimeInterval(seconds)
  while Date() < deadline {
    if condition() { return true }
    usleep(10_000)
  }
  return condition()
}

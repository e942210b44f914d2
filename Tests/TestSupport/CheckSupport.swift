import Foundation
import Jobs
import Store

/// One `tgsess check --json` run: its exit status and the output decoded as `CheckResult`, with
/// string views of it (`state`, `findings`, `sessions`) for short assertions.
public struct CheckRun: Sendable {
  /// A `CheckFinding` as the words `--json` prints: its check's name, state and message.
  public struct Finding: Sendable, Equatable, CustomStringConvertible {
    public var check: String
    public var state: String
    public var message: String
    public var userID: Int64?
    public var description: String { "\(state) \(check) \(userID.map { "user \($0) " } ?? "")\(message)" }

    public init(_ finding: CheckFinding) {
      check = finding.check
      state = finding.state.rawValue
      message = finding.message
      userID = finding.userID
    }
  }

  public var status: Int32
  public var stderr: String
  /// The output decoded as the job's own result type: findings as typed values.
  public var result: CheckResult

  public var state: String { result.state.rawValue }
  public var summary: String { result.summary }
  public var findings: [Finding] { result.findings.map(Finding.init) }
  /// `sessions` by state name (`ok`, `warning`, `critical`, `unknown`).
  public var sessions: [String: Int] {
    let counts = result.sessions
    return ["ok": counts.ok, "warning": counts.warning, "critical": counts.critical, "unknown": counts.unknown]
  }

  /// - Throws: `TestHelperError` when the output is not a `CheckResult`.
  public init(_ result: ProcessResult) throws {
    self.result = try decodeJSON(CheckResult.self, from: result)
    status = result.status
    stderr = result.stderr
  }

  /// The findings of one check (and user).
  public func findings(_ check: String, user: Int64? = nil) -> [Finding] {
    findings.filter { $0.check == check && (user == nil || $0.userID == user) }
  }

  /// Every finding, one per line, for failure messages.
  public var report: String { "exit \(status) \(state): " + findings.map(\.description).joined(separator: "\n") }
}

/// A Python child that holds something (a lock, a transaction) until `finish()` closes its stdin.
public final class PythonHolder: @unchecked Sendable {
  private let process = Process()
  private let stdinPipe = Pipe()
  private let stdoutPipe = Pipe()
  private let stderrPipe = Pipe()

  /// Starts `script arguments` in the test virtualenv and waits until it prints `READY`.
  /// - Throws: `TestHelperError` with the child's stderr when it ends first.
  public init(_ script: String, arguments: [String] = []) throws {
    try runPython("pass")
    process.executableURL = URL(fileURLWithPath: TestEnvironment.python)
    process.arguments = ["-c", script] + arguments
    process.standardInput = stdinPipe
    process.standardOutput = stdoutPipe
    process.standardError = stderrPipe
    try process.run()
    var output = Data()
    while !String(decoding: output, as: UTF8.self).contains("READY") {
      let chunk = stdoutPipe.fileHandleForReading.availableData
      if chunk.isEmpty {
        let errors = String(decoding: stderrPipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        throw TestHelperError("python holder ended before READY: \(errors)")
      }
      output.append(chunk)
    }
  }

  /// Closes the child's stdin (it then lets go and exits) and waits for it.
  @discardableResult
  public func finish() -> Int32 {
    try? stdinPipe.fileHandleForWriting.close()
    process.waitUntilExit()
    return process.terminationStatus
  }

  deinit {
    if process.isRunning { finish() }
  }
}

/// Python snippets for the check and prune tests, run in the test virtualenv.
public enum PeerScripts {
  /// What `telethonFile` and `pyrogramFile` print: the file's schema version and its session
  /// string.
  public struct WrittenSession: Decodable, Sendable {
    public var schema: Int
    public var string: String
  }

  /// Runs `telethonFile` or `pyrogramFile` and decodes what it printed.
  /// - Throws: `TestHelperError` when Python fails or prints something else.
  public static func writeSession(_ script: String, arguments: [String], peer: String? = nil) throws
    -> WrittenSession
  {
    let result = try runPython(script, arguments: arguments, peer: peer)
    do { return try JSONDecoder().decode(WrittenSession.self, from: result.stdoutData) } catch {
      throw TestHelperError("the peer printed no session (\(error)): \(result.stdout)")
    }
  }

  /// Holds `BEGIN EXCLUSIVE` on the database in argv[1] until stdin closes.
  public static let holdExclusive = """
    import sqlite3, sys
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    print("READY", flush=True)
    sys.stdin.read()
    conn.execute("ROLLBACK")
    conn.close()
    """

  /// What a running Telethon client does between saves: an open write transaction (RESERVED lock,
  /// a journal beside the file), rolled back when stdin closes.
  public static let holdWrite = """
    import sqlite3, sys
    conn = sqlite3.connect(sys.argv[1])
    conn.execute("UPDATE sessions SET port = 1234")
    conn.execute("INSERT OR REPLACE INTO entities (id, hash) VALUES (424242, 1)")
    print("READY", flush=True)
    sys.stdin.read()
    conn.rollback()
    conn.close()
    """

  /// A writer that zeroes the auth key, spills pages into the file (tiny cache) and dies before
  /// COMMIT: a real hot journal. Prints the journal's first 8 bytes in hex.
  public static let killedWriter = """
    import os, sqlite3, sys
    path = sys.argv[1]
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA cache_size = 1")
    conn.execute("UPDATE sessions SET auth_key = zeroblob(256)")
    for i in range(40):
        conn.execute("INSERT OR REPLACE INTO entities (id, hash, name) VALUES (?, ?, ?)", (5000 + i, i, "x" * 3000))
    with open(path + "-journal", "rb") as journal:
        print(journal.read(8).hex(), flush=True)
    os._exit(0)
    """

  /// A live writer whose transaction outgrew its cache: it spilled pages into the file and so holds
  /// the EXCLUSIVE lock (readers get SQLITE_BUSY) until stdin closes, then rolls back.
  public static let holdSpilledWrite = """
    import sqlite3, sys
    conn = sqlite3.connect(sys.argv[1])
    conn.execute("PRAGMA cache_size = 1")
    conn.execute("UPDATE sessions SET port = 1234")
    for i in range(40):
        conn.execute("INSERT OR REPLACE INTO entities (id, hash, name) VALUES (?, ?, ?)", (5000 + i, i, "x" * 3000))
    print("READY", flush=True)
    sys.stdin.read()
    conn.rollback()
    conn.close()
    """

  /// A Fernet token of argv[1] under a freshly generated key (one no deployment has).
  public static let foreignToken = """
    import sys
    from cryptography.fernet import Fernet
    print(Fernet(Fernet.generate_key()).encrypt(sys.argv[1].encode()).decode())
    """

  /// Encrypts argv[2] with the Fernet key in argv[1] (what the bot does with a session string).
  public static let encrypt = """
    import sys
    from cryptography.fernet import Fernet
    print(Fernet(sys.argv[1].encode()).encrypt(sys.argv[2].encode()).decode())
    """

  /// A Telethon session file at argv[1] written by the Telethon that is importable (1.45 in the
  /// venv, 1.42 with the telethon142 peer); prints `{"schema": N, "string": StringSession}`.
  public static let telethonFile = """
    import json, os, sys
    from telethon.crypto import AuthKey
    from telethon.sessions import SQLiteSession, StringSession
    s = SQLiteSession(sys.argv[1])
    s.set_dc(2, "149.154.167.51", 443)
    s.auth_key = AuthKey(os.urandom(256))
    s.save()
    string = StringSession.save(s)
    s.close()
    import sqlite3
    conn = sqlite3.connect(sys.argv[1])
    schema = conn.execute("select version from version").fetchone()[0]
    conn.close()
    print(json.dumps({"schema": schema, "string": string}))
    """

  /// A Pyrogram 2.0 session file `argv[2].session` in directory argv[1], written by Pyrogram's
  /// own storage for user argv[3]; prints `{"schema": N, "string": export_session_string()}`.
  public static let pyrogramFile = """
    import asyncio, json, os, sys
    from pathlib import Path
    from pyrogram.storage import FileStorage

    async def main():
        storage = FileStorage(sys.argv[2], Path(sys.argv[1]))
        await storage.open()
        await storage.dc_id(2)
        await storage.api_id(12345)
        await storage.test_mode(False)
        await storage.auth_key(os.urandom(256))
        await storage.user_id(int(sys.argv[3]))
        await storage.is_bot(False)
        await storage.date(0)
        string = await storage.export_session_string()
        schema = storage.conn.execute("SELECT number FROM version").fetchone()[0]
        await storage.save()
        await storage.close()
        return {"schema": schema, "string": string}

    print(json.dumps(asyncio.run(main())))
    """
}

/// Whether `output` follows the Nagios plugin guidelines: one line `TGSESS STATE - text | perfdata`
/// where perfdata is space-separated `label=value[UOM];[warn];[crit];[min];[max]`.
/// - Returns: nil when it does, else what is wrong.
/// Perfdata is optional only when `requiresPerfdata` is false (a check that could not run).
public func nagiosProblem(_ output: String, state: String, requiresPerfdata: Bool = true) -> String? {
  let lines = output.split(separator: "\n", omittingEmptySubsequences: false)
  guard lines.count == 2, lines[1].isEmpty else { return "not exactly one line: \(output)" }
  let line = String(lines[0])
  guard line.hasPrefix("TGSESS \(state) - ") else { return "does not start with 'TGSESS \(state) - ': \(line)" }
  if !requiresPerfdata, !line.contains("|") { return nil }
  let halves = line.split(separator: "|", omittingEmptySubsequences: false)
  guard halves.count == 2 else { return "not one '|' between text and perfdata: \(line)" }
  let perfdata = halves[1].trimmingCharacters(in: .whitespaces)
  guard halves[1].hasPrefix(" "), !perfdata.isEmpty else { return "no perfdata after '| '" }
  let number = #"-?[0-9]+(\.[0-9]+)?"#
  let range = #"@?(~|\#(number))?:?(\#(number))?"#
  let pattern =
    #"^('[^'=]+'|[^'= ]+)=(U|\#(number))(s|ms|us|%|B|KB|MB|TB|c)?(;(\#(range))?){0,2}(;(\#(number))?){0,2}$"#
  var labels = Set<String>()
  for item in perfdata.split(separator: " ") {
    guard item.range(of: pattern, options: .regularExpression) != nil else { return "bad perfdata item '\(item)'" }
    let label = String(item.split(separator: "=")[0])
    guard labels.insert(String(label.prefix(19))).inserted else { return "label '\(label)' not unique in 19 chars" }
  }
  return nil
}

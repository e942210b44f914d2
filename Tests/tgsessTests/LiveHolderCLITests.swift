import Foundation
import Store
import TestSupport
import Testing

/// The live-owner guard against the real thing: a Python process that holds a session file the
/// way a userbot does (in `BEGIN IMMEDIATE` while it saves, or just keeping it open between
/// saves). `restore --user`, a whole `restore` and `recover` refuse to replace that file, name
/// the process, and leave the file byte for byte as it was; `--force` still goes through.
@Suite struct LiveHolderCLITests {
  /// How the Python process holds the file.
  enum Hold: String {
    /// `BEGIN IMMEDIATE`: SQLite's RESERVED lock, as a bot in the middle of a save.
    case immediate
    /// The connection open, no transaction: found only through `/proc/<pid>/fd`.
    case open
  }

  /// A Python process holding `path` until it is killed.
  static func hold(_ path: String, _ hold: Hold) throws -> BackgroundProcess {
    let ready = path + ".holder-ready"
    let holder = try BackgroundProcess(
      TestEnvironment.python,
      [
        "-c",
        """
        import sqlite3, sys, time
        path, ready, mode = sys.argv[1], sys.argv[2], sys.argv[3]
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute('SELECT count(*) FROM sessions').fetchall()
        if mode == 'immediate':
            conn.execute('BEGIN IMMEDIATE')
        open(ready, 'w').close()
        time.sleep(300)
        """,
        path, ready, hold.rawValue,
      ])
    try waitUntil("the holder to take \(path)") {
      guard holder.isRunning else { throw TestHelperError("the holder exited: \(holder.stderr)") }
      return FileManager.default.fileExists(atPath: ready)
    }
    try FileManager.default.removeItem(atPath: ready)
    return holder
  }

  /// The refusal names the process by pid and command line, the file, and --force's risk.
  static func expectRefusal(
    _ result: ProcessResult, holder: BackgroundProcess, path: String, hold: Hold, verb: String,
    sourceLocation: SourceLocation = #_sourceLocation
  ) {
    #expect(result.status == 1, "\(result.stdout)\(result.stderr)", sourceLocation: sourceLocation)
    let lines = result.stderr.split(separator: "\n")
    #expect(lines.count == 1, "\(result.stderr)", sourceLocation: sourceLocation)
    let text = result.stderr
    #expect(text.hasPrefix("tgsess: refusing to \(verb)"), "\(text)", sourceLocation: sourceLocation)
    let how = hold == .immediate ? "holds an SQLite write lock on \(path)" : "has \(path) open"
    #expect(
      text.contains("pid \(holder.pid) (\(TestEnvironment.python) -c import sqlite3, sys, time path")
        && text.contains(how),
      "\(text)", sourceLocation: sourceLocation)
    #expect(text.contains("--force is the only way past"), sourceLocation: sourceLocation)
    #expect(text.contains("AUTH_KEY_DUPLICATED"), sourceLocation: sourceLocation)
    #expect(text.contains("writes are lost"), sourceLocation: sourceLocation)
  }

  /// A fleet with a backup, and one Telethon user whose live file then changed (so a restore
  /// would replace it).
  static func fleetWithChangedUser() throws -> (TestFleet, Int64) {
    try Tools.require()
    let fleet = try TestFleet(users: 4)
    let user = try fleet.telethonUserIDs(1)[0]
    try fleet.tgsessOK(["backup"])
    try Peers.writeNewTelethonSessions([fleet.sessionPath(user)])
    return (fleet, user)
  }

  @Test(arguments: [Hold.immediate, .open])
  func restoreOfOneUserRefusesWhileAProcessHoldsTheFile(_ hold: Hold) throws {
    let (fleet, user) = try Self.fleetWithChangedUser()
    let path = fleet.sessionPath(user)
    let holder = try Self.hold(path, hold)
    let bytes = try FileSystem.read(path)
    let tree = try fleet.tree()

    let refused = try fleet.tgsess(["restore", "latest", "--user", String(user)])
    Self.expectRefusal(refused, holder: holder, path: path, hold: hold, verb: "restore into the live deployment")
    #expect(try FileSystem.read(path) == bytes)
    #expect(try fleet.tree() == tree)
    holder.kill()
  }

  @Test(arguments: [Hold.immediate, .open])
  func wholeRestoreRefusesWhileAProcessHoldsAFile(_ hold: Hold) throws {
    let (fleet, user) = try Self.fleetWithChangedUser()
    let path = fleet.sessionPath(user)
    let holder = try Self.hold(path, hold)
    let bytes = try FileSystem.read(path)
    let tree = try fleet.tree()

    let refused = try fleet.tgsess(["restore", "latest"])
    Self.expectRefusal(refused, holder: holder, path: path, hold: hold, verb: "restore into the live deployment")
    #expect(try FileSystem.read(path) == bytes)
    #expect(try fleet.tree() == tree)
    holder.kill()
  }

  @Test(arguments: [Hold.immediate, .open])
  func recoverRefusesToReplaceAFileAProcessHolds(_ hold: Hold) throws {
    try Tools.require()
    let fleet = try TestFleet(users: 3)
    let user = try fleet.telethonUserIDs(1)[0]
    let path = fleet.sessionPath(user)
    // Still an SQLite file the process can hold, but no valid session: recover would rebuild it.
    try fleet.sqlite("UPDATE sessions SET auth_key = zeroblob(256)", path: path)
    let holder = try Self.hold(path, hold)
    let bytes = try FileSystem.read(path)
    let tree = try fleet.tree()

    let refused = try fleet.tgsess(["recover", "--user", String(user)])
    Self.expectRefusal(refused, holder: holder, path: path, hold: hold, verb: "recover user \(user)")
    #expect(try FileSystem.read(path) == bytes)
    #expect(try fleet.tree() == tree)
    let all = try fleet.tgsess(["recover", "--all"])
    Self.expectRefusal(all, holder: holder, path: path, hold: hold, verb: "recover user \(user)")
    #expect(try FileSystem.read(path) == bytes)

    // --force replaces it; the holder keeps the old file, moved aside.
    let forced = try fleet.tgsess(["recover", "--user", String(user), "--force", "--json"])
    holder.kill()
    #expect(forced.status == 0, "\(forced.stderr)")
    #expect(forced.stderr.contains("recover forced"))
    let stored = try SessionWitness.stored([path])
    #expect(stored[path]?.key.allSatisfy { $0 == "0" } == false)
  }

  @Test func forceRestoresAlthoughAProcessHoldsTheFile() throws {
    let (fleet, user) = try Self.fleetWithChangedUser()
    let path = fleet.sessionPath(user)
    let holder = try Self.hold(path, .immediate)
    var before = stat()
    stat(path, &before)

    let forced = try fleet.tgsess(["restore", "latest", "--user", String(user), "--force"])
    holder.kill()
    #expect(forced.status == 0, "\(forced.stderr)")
    #expect(forced.stdout.contains("warning: --force: restoring although pid \(holder.pid) ("))
    #expect(forced.stdout.contains("check: 1 session(s) validate"))
    var after = stat()
    stat(path, &after)
    #expect(after.st_ino != before.st_ino, "the file was replaced by rename")
  }

  /// A process holding another user's file does not block this user's restore.
  @Test func aProcessHoldingANeighbourIsNotCounted() throws {
    let (fleet, user) = try Self.fleetWithChangedUser()
    let other = try fleet.sessionUserIDs().first { $0 != user }!
    // The holder holds another user's file: restoring this user is not refused.
    let holder = try Self.hold(fleet.sessionPath(other), .immediate)
    let result = try fleet.tgsess(["restore", "latest", "--user", String(user)])
    holder.kill()
    #expect(result.status == 0, "\(result.stderr)")
  }
}

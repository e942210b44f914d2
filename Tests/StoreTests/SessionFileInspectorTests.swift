import Foundation
import Store
import TestSupport
import Testing

@Suite struct SessionFileInspectorTests {
  // MARK: Files the real libraries wrote

  @Test(arguments: [
    // peer, dc, address, port, owner, takeout, schema
    ("", "2", "149.154.167.51", "443", "5550001", "", 8),
    ("", "4", "2001:67c:4e8:f004::a", "443", "5550002", "987654321", 8),
    ("telethon142", "1", "149.154.175.53", "443", "5550003", "", 7),
    ("telethon142", "5", "2001:b28:f23f:f005::a", "80", "", "123", 7),
  ])
  func telethonFilesFromTelethon(
    peer: String, dc: String, address: String, port: String, owner: String, takeout: String, schema: Int
  ) throws {
    let dir = try TemporaryDirectory()
    let path = dir.file("user.session")
    let expected = try SessionPeer.run(
      "telethon-file", [path, dc, address, port, owner, takeout, ""], peer: peer.isEmpty ? nil : peer)
    #expect(expected.int("schema") == schema)
    // Telethon stores update_state dates as REAL (datetime.timestamp()).
    #expect(expected["date_types"] as? [String] == ["real", "real"])

    let info = try SessionFileInspector.inspect(path: path)
    #expect(info.format == .telethon(version: schema))
    #expect(info.identity.dcID == Int(dc))
    #expect(info.identity.serverAddress == address)
    #expect(info.identity.port == Int(port))
    #expect(Hex.encode(info.identity.authKey.bytes) == expected.string("key"))
    #expect(info.ownerUserID == Int64(owner))
    #expect(info.takeoutID == Int64(takeout))
    #expect(info.entityCount == 4)
    #expect(info.updateStateCount == 2)
    let latest = try #require(info.latestUpdateDate)
    #expect(abs(latest - Date().timeIntervalSince1970) < 600)
    #expect(!info.hasTmpAuthKey)
    #expect(info.journalMode == "rollback")
    #expect(info.apiID == nil && info.isBot == nil && info.isTestMode == nil)
  }

  @Test func pyrogramFileFromPyrogram() throws {
    let dir = try TemporaryDirectory()
    let expected = try SessionPeer.run(
      "pyrogram-file", [dir.path, "bot", "4", "611335", "0", "6000000001", "1", "", "0", "0"])
    let info = try SessionFileInspector.inspect(path: dir.file("bot.session"))
    #expect(expected.string("pyrogram") == "2.0.106")
    #expect(info.format == .pyrogram(version: 3, variant: .pyrogram))
    #expect(info.format.shortName == "pyrogram-v3")
    #expect(info.identity.dcID == 4)
    #expect(info.identity.serverAddress == nil && info.identity.port == nil)
    #expect(Hex.encode(info.identity.authKey.bytes) == expected.string("key"))
    #expect(info.apiID == 611335)
    #expect(info.ownerUserID == 6_000_000_001)
    #expect(info.isBot == true)
    #expect(info.isTestMode == false)
    #expect(info.entityCount == 3)
    #expect(info.updateStateCount == nil)
    #expect(problem { _ = try info.telethonString() } == .serverAddressMissing)
  }

  @Test func kurigramFileFromKurigram() throws {
    let dir = try TemporaryDirectory()
    let expected = try SessionPeer.run(
      "pyrogram-file", [dir.path, "k", "2", "12345", "0", "777", "0", "", "0", "0"], peer: "kurigram")
    #expect(expected.string("pyrogram") == "2.2.26")
    let info = try SessionFileInspector.inspect(path: dir.file("k.session"))
    #expect(info.format.shortName == "kurigram-v7")
    #expect(info.identity.serverAddress == "149.154.167.51")
    #expect(info.identity.port == 443)
    #expect(Hex.encode(info.identity.authKey.bytes) == expected.string("key"))
    #expect(info.ownerUserID == 777 && info.apiID == 12345 && info.isBot == false)
    #expect(info.updateStateCount == 1)
    #expect(info.journalMode == "rollback")
    // kurigram v7 stores an address, so a Telethon string can be made from it.
    let string = try info.telethonString()
    #expect(try TelethonStringSession.decode(string).matches(info.identity))
  }

  /// kurigram with `use_wal=True`, killed after saving: the data lives only in the -wal, which
  /// a read-only reader must see. Neither the file nor its WAL may change.
  @Test func kurigramWALFileLeftByAKilledProcess() throws {
    let dir = try TemporaryDirectory()
    let expected = try SessionPeer.run(
      "pyrogram-file", [dir.path, "w", "5", "12345", "0", "778", "0", "", "1", "1"], peer: "kurigram")
    let path = dir.file("w.session")
    let wal = path + "-wal"
    #expect(Files.exists(wal))
    let before = try Files.bytes(path)
    let walBefore = try Files.bytes(wal)
    let info = try SessionFileInspector.inspect(path: path)
    #expect(info.format.shortName == "kurigram-v7")
    #expect(info.journalMode == "wal")
    #expect(info.identity.dcID == 5)
    // kurigram keeps the address it was created with (DC2's) until a client connects.
    #expect(info.identity.serverAddress == expected.string("address"))
    #expect(Hex.encode(info.identity.authKey.bytes) == expected.string("key"))
    #expect(try Files.bytes(path) == before)
    #expect(try Files.bytes(wal) == walBefore)
  }

  @Test func pyroforkTestModeFile() throws {
    let dir = try TemporaryDirectory()
    let expected = try SessionPeer.run(
      "pyrogram-file", [dir.path, "f", "3", "12345", "1", "779", "1", "", "0", "0"], peer: "pyrofork")
    #expect(expected.string("pyrogram") == "2.3.69")
    let info = try SessionFileInspector.inspect(path: dir.file("f.session"))
    #expect(info.format == .pyrogram(version: 4, variant: .pyrofork))
    #expect(info.isTestMode == true)
    #expect(info.identity.dcID == 3)
    #expect(info.isBot == true)
    #expect(info.updateStateCount == 1)
    #expect(Hex.encode(info.identity.authKey.bytes) == expected.string("key"))
  }

  /// Hydrogram 0.2 creates Pyrogram's schema-3 tables character for character; what tells its
  /// files apart is the WAL mode it sets on every open, which Pyrogram never does.
  @Test func hydrogramFileFromHydrogram() throws {
    let dir = try TemporaryDirectory()
    let expected = try SessionPeer.run("hydrogram-file", [dir.path, "h", "4", "12345", "781", ""], peer: "hydrogram")
    #expect(expected.string("hydrogram") == "0.2.0")
    #expect(expected.int("schema") == 3)
    #expect(expected.string("journal_mode") == "wal")
    let info = try SessionFileInspector.inspect(path: dir.file("h.session"))
    #expect(info.format == .pyrogram(version: 3, variant: .hydrogram))
    #expect(info.format.shortName == "hydrogram-v3")
    #expect(SessionFormat(shortName: "hydrogram-v3") == info.format)
    #expect(info.journalMode == "wal")
    #expect(info.identity.dcID == 4)
    #expect(info.ownerUserID == 781 && info.apiID == 12345 && info.isBot == false)
    #expect(info.entityCount == 3)
    #expect(Hex.encode(info.identity.authKey.bytes) == expected.string("key"))
    // Pyrogram's own file has the same tables, in rollback mode.
    let pyrogram = try SessionPeer.run("schema", [dir.file("h.session")])
    _ = try SessionPeer.run("pyrogram-file", [dir.path, "p", "4", "12345", "0", "782", "0", "", "0", "0"])
    let pyrogramSchema = try SessionPeer.run("schema", [dir.file("p.session")])
    #expect("\(pyrogram["schema"] ?? "")" == "\(pyrogramSchema["schema"] ?? "")")
    #expect(try SessionFileInspector.inspect(path: dir.file("p.session")).format.shortName == "pyrogram-v3")
  }

  // MARK: Detection by table layout

  /// The library is told by the tables, and a version number that the tables contradict is a
  /// finding that names the file, never a misreading.
  @Test func theLayoutNotTheVersionNumberNamesTheLibrary() throws {
    let dir = try TemporaryDirectory()
    // Telethon 1.42's v7 file claiming 8 (what the abandoned v2-stale2 branch also wrote):
    // no tmp_auth_key, so Telethon 1.45 could not load it.
    let v7 = dir.file("v7.session")
    _ = try SessionPeer.run(
      "telethon-file", [v7, "2", "149.154.167.51", "443", "42", "", ""], peer: "telethon142")
    #expect(try SessionFileInspector.inspect(path: v7).format == .telethon(version: 7))
    try Files.execute("UPDATE version SET version = 8", on: v7)
    guard case .unknownLayout(let detail) = inspectProblem(v7) else {
      Issue.record("a v7 layout claiming 8: \(String(describing: inspectProblem(v7)))")
      return
    }
    #expect(detail.hasPrefix("version 8, but the tables are Telethon v7's: "), "\(detail)")
    #expect(detail.contains("sessions(dc_id, server_address, port, auth_key, takeout_id)"), "\(detail)")
    do {
      _ = try SessionFileInspector.inspect(path: v7)
      Issue.record("inspected")
    } catch let error as StoreError {
      let text = error.errorDescription ?? ""
      #expect(text.contains(v7), "\(text)")
      #expect(text.contains("unknown session table layout"), "\(text)")
    }

    // kurigram and pyrofork both write 4: the usernames table tells them apart, whatever the
    // version says. A kurigram v7 file claiming 4 is refused, not read as pyrofork.
    _ = try SessionPeer.run(
      "pyrogram-file", [dir.path, "k", "2", "12345", "0", "777", "0", "", "0", "0"], peer: "kurigram")
    let kurigram = dir.file("k.session")
    try Files.execute("UPDATE version SET number = 4", on: kurigram)
    guard case .unknownLayout(let kurigramDetail) = inspectProblem(kurigram) else {
      Issue.record("kurigram v7 claiming 4: \(String(describing: inspectProblem(kurigram)))")
      return
    }
    #expect(kurigramDetail.hasPrefix("version 4, but the tables are kurigram v7's"), "\(kurigramDetail)")
    _ = try SessionPeer.run(
      "pyrogram-file", [dir.path, "f", "2", "12345", "0", "779", "0", "", "0", "0"], peer: "pyrofork")
    let pyrofork = dir.file("f.session")
    #expect(try SessionFileInspector.inspect(path: pyrofork).format.shortName == "pyrofork-v4")
    // A pyrofork file with a newer number: a version tgsess does not know yet.
    try Files.execute("UPDATE version SET number = 5", on: pyrofork)
    #expect(inspectProblem(pyrofork) == .unsupportedVersion("5 of pyrofork (tgsess reads pyrofork v4)"))

    // Pyrogram 2.0's tables claiming 1: sessions.api_id came with 3.
    _ = try SessionPeer.run("pyrogram-file", [dir.path, "p", "2", "12345", "0", "780", "0", "", "0", "0"])
    let pyrogram = dir.file("p.session")
    try Files.execute("UPDATE version SET number = 1", on: pyrogram)
    guard case .unknownLayout(let pyrogramDetail) = inspectProblem(pyrogram) else {
      Issue.record("Pyrogram v3 claiming 1: \(String(describing: inspectProblem(pyrogram)))")
      return
    }
    #expect(pyrogramDetail.hasPrefix("version 1, but the tables are Pyrogram v3's"), "\(pyrogramDetail)")

    // Columns no Telethon version has together: tmp_auth_key (v8) without takeout_id (v5).
    let mixed = dir.file("mixed.session")
    try SQLiteConnection.buildAtomically(at: mixed) {
      try $0.exec(
        """
        CREATE TABLE version (version INTEGER PRIMARY KEY);
        CREATE TABLE sessions (dc_id INTEGER PRIMARY KEY, server_address TEXT, port INTEGER, auth_key BLOB,
          tmp_auth_key BLOB);
        INSERT INTO version VALUES (8);
        INSERT INTO sessions VALUES (2, '149.154.167.51', 443, randomblob(256), x'');
        """)
    }
    guard case .unknownLayout(let mixedDetail) = inspectProblem(mixed) else {
      Issue.record("mixed Telethon columns: \(String(describing: inspectProblem(mixed)))")
      return
    }
    #expect(mixedDetail.contains("no Telethon version creates these tables and columns together"), "\(mixedDetail)")
  }

  /// The catalog on its own: each library's newest layout, as the real libraries write it.
  @Test func layoutCatalogIdentifiesEachLibrary() {
    func match(_ columns: [String: [String]], wal: Bool = false) -> String {
      let layout = SessionLayout(tables: Array(columns.keys).sorted(), columns: columns, isWALMode: wal)
      switch SessionLayoutCatalog.identify(layout) {
      case .known(let match): return match.name
      case .unknownSchema(let detail): return "schema: \(detail)"
      case .unknownLayout(let detail): return "layout: \(detail)"
      }
    }
    let telethon8: [String: [String]] = [
      "version": ["version"],
      "sessions": ["dc_id", "server_address", "port", "auth_key", "takeout_id", "tmp_auth_key"],
      "entities": ["id", "hash", "username", "phone", "name", "date"],
      "update_state": ["id", "pts", "qts", "date", "seq"],
    ]
    #expect(match(telethon8) == "Telethon v8")
    var telethon4 = telethon8
    telethon4["sessions"] = ["dc_id", "server_address", "port", "auth_key"]
    telethon4["entities"] = ["id", "hash", "username", "phone", "name"]
    #expect(match(telethon4) == "Telethon v4")
    let pyrogram3: [String: [String]] = [
      "version": ["number"], "sessions": ["dc_id", "api_id", "test_mode", "auth_key", "date", "user_id", "is_bot"],
      "peers": ["id", "access_hash", "type", "username", "phone_number", "last_update_on"],
    ]
    #expect(match(pyrogram3) == "Pyrogram v3")
    #expect(match(pyrogram3, wal: true) == "Hydrogram v3")
    var kurigram5 = pyrogram3
    kurigram5["usernames"] = ["id", "username"]
    kurigram5["update_state"] = ["id", "pts", "qts", "date", "seq"]
    #expect(match(kurigram5) == "kurigram v5-v6")
    var pyrofork4 = pyrogram3
    pyrofork4["usernames"] = ["id", "peer_id", "last_update_on"]
    pyrofork4["update_state"] = ["id", "pts", "qts", "date", "seq"]
    #expect(match(pyrofork4, wal: true) == "pyrofork v4")
    #expect(match(["notes": ["id"]]).hasPrefix("schema: tables notes"))
  }

  @Test func telethonTemporaryKeyOnDisk() throws {
    let dir = try TemporaryDirectory()
    let path = dir.file("tmp.session")
    let expected = try SessionPeer.run("telethon-tmp-key", [path])
    let info = try SessionFileInspector.inspect(path: path)
    #expect(info.hasTmpAuthKey)
    #expect(Hex.encode(info.identity.authKey.bytes) == expected.string("key"))
  }

  /// kurigram with `use_wal=True`, closed cleanly: the header says WAL, no -wal is left.
  @Test func kurigramWALFileClosedCleanly() throws {
    let dir = try TemporaryDirectory()
    let expected = try SessionPeer.run(
      "pyrogram-file", [dir.path, "c", "1", "12345", "0", "780", "0", "", "1", "0"], peer: "kurigram")
    let path = dir.file("c.session")
    #expect(!Files.exists(path + "-wal"))
    let before = try Files.bytes(path)
    let mtime = try Files.mtime(path)
    let info = try SessionFileInspector.inspect(path: path)
    #expect(info.journalMode == "wal")
    #expect(Hex.encode(info.identity.authKey.bytes) == expected.string("key"))
    #expect(try Files.bytes(path) == before)
    #expect(try Files.mtime(path).tv_sec == mtime.tv_sec)
  }

  // MARK: Live writers

  /// A running Telethon keeps a write transaction open between saves; its -journal has a zeroed
  /// header until it spills or commits. That is not a hot journal: readers see the last commit.
  @Test func liveWriterTransactionIsNotAHotJournal() throws {
    let dir = try TemporaryDirectory()
    let path = try telethonFile(in: dir, name: "live.session")
    let child = try PythonChild("hold-write", [path])
    defer { child.finish() }
    #expect(Files.exists(path + "-journal"))
    let info = try SessionFileInspector.inspect(path: path)
    #expect(info.identity.port == 443)
    #expect(child.finish() == 0)
  }

  @Test func exclusiveLockIsReportedAsLocked() throws {
    let dir = try TemporaryDirectory()
    let path = try telethonFile(in: dir, name: "locked.session")
    let child = try PythonChild("hold-exclusive", [path])
    defer { child.finish() }
    guard case .locked(let detail) = problem({ _ = try SessionFileInspector.inspect(path: path, busyTimeoutMS: 200) })
    else {
      Issue.record("an exclusive lock was not reported as .locked")
      return
    }
    #expect(detail.contains("locked"))
    #expect(child.finish() == 0)
    #expect(try SessionFileInspector.inspect(path: path).identity.dcID == 2)
  }

  // MARK: Read-only

  @Test func inspectionChangesNothing() throws {
    let dir = try TemporaryDirectory()
    let path = dir.file("ro.session")
    _ = try SessionPeer.run("telethon-file", [path, "2", "149.154.167.51", "443", "1", "", ""])
    let bytes = try Files.bytes(path)
    let mtime = try Files.mtime(path)
    let listing = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
    for _ in 0..<3 { _ = try SessionFileInspector.inspect(path: path) }
    #expect(try Files.bytes(path) == bytes)
    let after = try Files.mtime(path)
    #expect(after.tv_sec == mtime.tv_sec && after.tv_nsec == mtime.tv_nsec)
    #expect(!Files.exists(path + "-journal"))
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted() == listing)

    // A missing file stays missing.
    let absent = dir.file("absent.session")
    #expect(problem { _ = try SessionFileInspector.inspect(path: absent) } == .missingFile)
    #expect(!Files.exists(absent))
  }

  // MARK: Invalid files

  /// A Telethon 1.45 file to break in various ways.
  private func telethonFile(in dir: TemporaryDirectory, name: String = "base.session") throws -> String {
    let path = dir.file(name)
    _ = try SessionPeer.run("telethon-file", [path, "2", "149.154.167.51", "443", "42", "", ""])
    return path
  }

  private func inspectProblem(_ path: String) -> SessionProblem? {
    problem { _ = try SessionFileInspector.inspect(path: path) }
  }

  @Test func damagedFiles() throws {
    let dir = try TemporaryDirectory()
    let base = try telethonFile(in: dir)
    let bytes = try Files.bytes(base)
    #expect(bytes.count >= 4096 * 5)

    let empty = dir.file("empty.session")
    try Files.write([], to: empty)
    #expect(inspectProblem(empty) == .emptyFile)

    let text = dir.file("text.session")
    try Files.write(Array("this is not a database at all, just some text\n".utf8), to: text)
    #expect(inspectProblem(text) == .notSQLite)
    let short = dir.file("short.session")
    try Files.write(Array("hello".utf8), to: short)
    #expect(inspectProblem(short) == .notSQLite)

    for offset in [8, 16, 50, 99, 100, 1000, 4096, 4096 * 2 + 17, bytes.count / 2, bytes.count - 1] {
      let cut = dir.file("cut-\(offset).session")
      try Files.write(Array(bytes.prefix(offset)), to: cut)
      #expect(inspectProblem(cut) == .truncated, "truncated at \(offset)")
    }

    // Same length, but a b-tree page overwritten: quick_check catches it.
    var scribbled = bytes
    for index in (4096 * 3)..<(4096 * 3 + 2000) { scribbled[index] = 0xa5 }
    let damaged = dir.file("damaged.session")
    try Files.write(scribbled, to: damaged)
    #expect(inspectProblem(damaged) == .truncated)
  }

  @Test func foreignSchemas() throws {
    let dir = try TemporaryDirectory()
    let foreign = dir.file("foreign.session")
    try SQLiteConnection.buildAtomically(at: foreign) {
      try $0.exec("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users VALUES (1, 'a')")
    }
    guard case .unknownSchema(let detail) = inspectProblem(foreign) else {
      Issue.record("foreign DB not reported as unknown schema")
      return
    }
    #expect(detail.contains("users"))

    let noTables = dir.file("no-tables.session")
    try SQLiteConnection.buildAtomically(at: noTables) { try $0.exec("PRAGMA user_version = 3") }
    #expect(inspectProblem(noTables) == .unknownSchema("an SQLite database without tables"))

    // Telethon v2's schema (branch v2, CURRENT_VERSION = 10), as in the notes.
    let v2 = dir.file("telethon-v2.session")
    try SQLiteConnection.buildAtomically(at: v2) {
      try $0.exec(
        """
        CREATE TABLE version (version INTEGER PRIMARY KEY);
        CREATE TABLE datacenter (id INTEGER PRIMARY KEY, ipv4_addr TEXT, ipv6_addr TEXT, auth BLOB);
        CREATE TABLE user (id INTEGER, dc INTEGER, bot INTEGER, username TEXT);
        CREATE TABLE state (pts INTEGER, qts INTEGER, date INTEGER, seq INTEGER);
        CREATE TABLE channelstate (id INTEGER PRIMARY KEY, pts INTEGER);
        INSERT INTO version VALUES (10);
        INSERT INTO datacenter VALUES (2, '149.154.167.51', NULL, randomblob(256));
        """)
    }
    guard case .unknownSchema(let v2Detail) = inspectProblem(v2) else {
      Issue.record("Telethon v2 schema not reported as unknown schema")
      return
    }
    #expect(v2Detail.contains("Telethon v2"))

    let base = try telethonFile(in: dir)
    let v9 = dir.file("v9.session")
    try Files.copy(base, v9)
    try Files.execute("UPDATE version SET version = 9", on: v9)
    #expect(inspectProblem(v9) == .unsupportedVersion("9 of Telethon (tgsess reads 2-8)"))

    let pyrogram = dir.file("p.session")
    _ = try SessionPeer.run("pyrogram-file", [dir.path, "p", "2", "1", "0", "5", "0", "", "0", "0"])
    try Files.execute("UPDATE version SET number = 8", on: pyrogram)
    #expect(
      inspectProblem(pyrogram) == .unsupportedVersion("8 of Pyrogram/kurigram/pyrofork/Hydrogram (tgsess reads 1-7)"))

    let noSessions = dir.file("no-sessions-table.session")
    try Files.copy(base, noSessions)
    try Files.execute("DROP TABLE sessions; CREATE TABLE sessions (x)", on: noSessions)
    #expect(inspectProblem(noSessions) == .unknownSchema("table sessions lacks dc_id, server_address, port, auth_key"))
  }

  @Test func sessionsRowProblems() throws {
    let dir = try TemporaryDirectory()
    let base = try telethonFile(in: dir)
    let cases: [(String, String, SessionProblem)] = [
      ("no row", "DELETE FROM sessions", .noSessionsRow),
      (
        "two rows",
        "INSERT INTO sessions SELECT 3, server_address, port, auth_key, takeout_id, tmp_auth_key FROM sessions",
        .multipleSessionsRows(2)
      ),
      ("empty key", "UPDATE sessions SET auth_key = x''", .authKeyMissing),
      ("NULL key", "UPDATE sessions SET auth_key = NULL", .authKeyMissing),
      ("255-byte key", "UPDATE sessions SET auth_key = substr(auth_key, 1, 255)", .authKeyWrongLength(255)),
      ("257-byte key", "UPDATE sessions SET auth_key = auth_key || x'00'", .authKeyWrongLength(257)),
      ("all-zero key", "UPDATE sessions SET auth_key = zeroblob(256)", .authKeyAllZero),
      ("dc 0", "UPDATE sessions SET dc_id = 0", .dcOutOfRange(0)),
      ("dc 7", "UPDATE sessions SET dc_id = 7", .dcOutOfRange(7)),
      ("port 0", "UPDATE sessions SET port = 0", .badPort(0)),
      ("port 70000", "UPDATE sessions SET port = 70000", .badPort(70000)),
      ("no port", "UPDATE sessions SET port = NULL", .portMissing),
      ("no address", "UPDATE sessions SET server_address = NULL", .serverAddressMissing),
      ("host name", "UPDATE sessions SET server_address = 'dc2.example'", .badAddress("dc2.example")),
      ("text port", "UPDATE sessions SET port = 'https'", .invalidField("port is not an integer")),
    ]
    for (label, sql, expected) in cases {
      let path = dir.file("case.session")
      try Files.copy(base, path)
      try Files.execute(sql, on: path)
      #expect(inspectProblem(path) == expected, "\(label)")
    }

    // What Telethon itself writes before login: one row, dc 0, no address, key x''.
    let fresh = dir.file("fresh.session")
    _ = try SessionPeer.run("telethon-fresh", [fresh])
    #expect(inspectProblem(fresh) == .authKeyMissing)
  }

  @Test func pyrogramTestModeAndFreshFiles() throws {
    let dir = try TemporaryDirectory()
    _ = try SessionPeer.run("pyrogram-file", [dir.path, "t", "2", "1", "1", "5", "0", "", "0", "0"])
    let path = dir.file("t.session")
    #expect(try SessionFileInspector.inspect(path: path).isTestMode == true)
    try Files.execute("UPDATE sessions SET dc_id = 4", on: path)
    #expect(inspectProblem(path) == .testModeDCOutOfRange(4))
    try Files.execute("UPDATE sessions SET test_mode = 0, dc_id = 203", on: path)
    #expect(inspectProblem(path) == .dcOutOfRange(203))
    try Files.execute("UPDATE sessions SET dc_id = 2, auth_key = NULL", on: path)
    #expect(inspectProblem(path) == .authKeyMissing)
  }

  /// A writer that dies mid-transaction after spilling pages leaves a hot journal. The inspector
  /// reports it and leaves both files exactly as they were (no rollback).
  @Test func hotJournalIsReportedAndLeftAlone() throws {
    let dir = try TemporaryDirectory()
    let path = try telethonFile(in: dir, name: "hot.session")
    let originalKey = try SessionFileInspector.inspect(path: path).identity.authKey
    let crash = try SessionPeer.run("hot-journal", [path])
    #expect(crash.string("journal_magic") == "d9d505f920a163d7")
    let journal = path + "-journal"
    let bytes = try Files.bytes(path)
    let journalBytes = try Files.bytes(journal)

    #expect(inspectProblem(path) == .hotJournal(journal))
    #expect(try Files.bytes(path) == bytes)
    #expect(try Files.bytes(journal) == journalBytes)

    // A journal SQLite deems hot without the synced magic (first byte non-zero) is refused by
    // SQLite's read-only open itself (SQLITE_READONLY_ROLLBACK), never rolled back.
    let odd = dir.file("odd.session")
    try Files.copy(try telethonFile(in: dir, name: "odd-base.session"), odd)
    let oddBytes = try Files.bytes(odd)
    try Files.write([UInt8](repeating: 1, count: 1024), to: odd + "-journal")
    #expect(inspectProblem(odd) == .hotJournal(odd + "-journal"))
    #expect(try Files.bytes(odd) == oddBytes)
    #expect(try Files.bytes(odd + "-journal") == [UInt8](repeating: 1, count: 1024))

    // Letting SQLite roll it back (a normal open of a copy with its journal) restores the key.
    let recovered = dir.file("recovered.session")
    try Files.write(bytes, to: recovered)
    try Files.write(journalBytes, to: recovered + "-journal")
    _ = try SessionPeer.run("open-normally", [recovered])
    #expect(!Files.exists(recovered + "-journal"))
    #expect(try SessionFileInspector.inspect(path: recovered).identity.authKey == originalKey)
  }
}

import Foundation
import Store
import TestSupport
import Testing

@Suite struct SQLiteConnectionTests {
  @Test func readOnlyOpenOfMissingFileFailsAndCreatesNothing() throws {
    let dir = try TemporaryDirectory()
    let path = dir.file("absent.db")
    do {
      _ = try SQLiteConnection(path: path, mode: .readOnly)
      Issue.record("opening a missing file read-only succeeded")
    } catch let error as StoreError {
      guard case .database(let errorPath, let reason, _) = error else {
        Issue.record("unexpected error \(error)")
        return
      }
      #expect(errorPath == path)
      #expect(reason.contains("open read-only"))
    }
    #expect(!Files.exists(path))
  }

  @Test func typedColumnsTablesAndPrivateAtomicFile() throws {
    let dir = try TemporaryDirectory()
    let path = dir.file("typed.db")
    try SQLiteConnection.buildAtomically(at: path) { connection in
      try connection.exec("CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB, n TEXT)")
      let insert = try connection.prepare("INSERT INTO t VALUES (?, ?, ?, ?, ?)")
      try insert.bind(Int64.max, at: 1)
      try insert.bind(2.5, at: 2)
      try insert.bind("héllo", at: 3)
      try insert.bind([0, 1, 2, 255], at: 4)
      try insert.bindNull(at: 5)
      #expect(try insert.step() == false)
      insert.reset()
      try insert.bind(Int64(-1), at: 1)
      try insert.bind([UInt8](), at: 4)
      try insert.step()
    }
    #expect(try FileSystem.mode(of: path) == 0o600)
    let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0 != "typed.db" }
    #expect(leftovers.isEmpty)

    let connection = try SQLiteConnection(path: path, mode: .readOnly)
    #expect(try connection.tableNames() == ["t"])
    #expect(try connection.tableColumns("t") == ["i", "r", "s", "b", "n"])
    #expect(try connection.tableColumns("absent") == [])
    #expect(try connection.journalMode() == "delete")
    let select = try connection.prepare("SELECT i, r, s, b, n FROM t ORDER BY rowid")
    #expect(select.columnCount == 5)
    #expect(select.columnName(2) == "s")
    #expect(try select.step())
    #expect(select.columnType(0) == .integer && select.int64(0) == Int64.max)
    #expect(select.columnType(1) == .float && select.double(1) == 2.5)
    #expect(select.columnType(2) == .text && select.text(2) == "héllo")
    #expect(select.columnType(3) == .blob && select.blob(3) == [0, 1, 2, 255])
    #expect(select.isNull(4) && select.text(4) == nil)
    #expect(try select.step())
    #expect(select.int64(0) == -1)
    // x'' stays a zero-length blob, not NULL.
    #expect(select.columnType(3) == .blob && select.blob(3).isEmpty)
    #expect(try select.step() == false)
    #expect(try connection.integrityCheck().isEmpty)
    #expect(try connection.integrityCheck(quick: true).isEmpty)
  }

  @Test func writesFailOnReadOnlyConnectionAndNameTheFile() throws {
    let dir = try TemporaryDirectory()
    let path = dir.file("ro.db")
    try SQLiteConnection.buildAtomically(at: path) { try $0.exec("CREATE TABLE t (x)") }
    let connection = try SQLiteConnection(path: path, mode: .readOnly)
    #expect {
      try connection.exec("INSERT INTO t VALUES (1)")
    } throws: { error in
      guard case .database(let errorPath, let reason, _) = error as? StoreError else { return false }
      return errorPath == path && (reason.contains("SQLITE_READONLY") || reason.contains("readonly"))
    }
    #expect(!Files.exists(path + "-journal"))
  }

  @Test func integrityCheckReportsDamage() throws {
    let dir = try TemporaryDirectory()
    let path = dir.file("damaged.db")
    try SQLiteConnection.buildAtomically(at: path) { connection in
      try connection.exec("CREATE TABLE t (x TEXT); CREATE INDEX t_x ON t (x)")
      for index in 0..<5 { try connection.exec("INSERT INTO t VALUES ('marker-\(index)')") }
    }
    let root = try SQLiteConnection(path: path, mode: .readOnly).textRows(
      "SELECT rootpage FROM sqlite_master WHERE name = 't'")
    let tablePage = try #require(Int(root.first ?? ""))
    // Change one value in the table's page only: the index no longer agrees with the table.
    var bytes = try Files.bytes(path)
    let pageSize = Int(bytes[16]) << 8 | Int(bytes[17])
    let page = ((tablePage - 1) * pageSize)..<(tablePage * pageSize)
    let marker = Array("marker-3".utf8)
    let start = try #require(
      page.first { offset in
        offset + marker.count <= page.upperBound && Array(bytes[offset..<offset + marker.count]) == marker
      })
    bytes[start + marker.count - 1] = UInt8(ascii: "X")
    try Files.write(bytes, to: path)

    let connection = try SQLiteConnection(path: path, mode: .readOnly)
    let problems = try connection.integrityCheck()
    #expect(!problems.isEmpty)
    #expect(problems.contains { $0.contains("t_x") })
  }

  @Test func backupRefusesToReplaceAnExistingFile() throws {
    let dir = try TemporaryDirectory()
    let source = dir.file("source.db")
    let destination = dir.file("copy.db")
    try SQLiteConnection.buildAtomically(at: source) { try $0.exec("CREATE TABLE t (x); INSERT INTO t VALUES (1)") }
    try Files.write(Array("keep me".utf8), to: destination)
    let connection = try SQLiteConnection(path: source, mode: .readOnly)
    #expect(throws: StoreError.self) { try connection.backup(to: destination) }
    #expect(try Files.bytes(destination) == Array("keep me".utf8))
    try connection.backup(to: destination, overwrite: true)
    let copy = try SQLiteConnection(path: destination, mode: .readOnly)
    #expect(try copy.textRows("SELECT x FROM t") == ["1"])
  }

  /// The notes' claim, checked with a real second process: while a writer (Python's sqlite3, as
  /// Telethon uses it) keeps a write transaction open, the online backup copies the last
  /// committed state and the copy passes integrity_check.
  @Test func backupWhileAnotherProcessHoldsAWriteTransaction() throws {
    let dir = try TemporaryDirectory()
    let source = dir.file("live.session")
    let expected = try SessionPeer.run("telethon-file", [source, "2", "149.154.167.51", "443", "4242", "", ""])
    let child = try PythonChild("hold-write", [source])
    defer { child.finish() }
    // The writer's uncommitted change is invisible to readers; its journal exists.
    #expect(Files.exists(source + "-journal"))

    let snapshot = dir.file("snapshot.session")
    let connection = try SQLiteConnection(path: source, mode: .readOnly, busyTimeoutMS: 2000)
    try connection.backup(to: snapshot)
    #expect(try FileSystem.mode(of: snapshot) == 0o600)

    let copy = try SQLiteConnection(path: snapshot, mode: .readOnly)
    #expect(try copy.integrityCheck().isEmpty)
    #expect(try copy.textRows("SELECT port FROM sessions") == ["443"])
    #expect(try copy.textRows("SELECT count(*) FROM entities WHERE id = 424242") == ["0"])
    #expect(try copy.journalMode() == "delete")
    let info = try SessionFileInspector.inspect(path: snapshot)
    #expect(info.identity.authKey.bytes == Hex.decode(expected.string("key") ?? ""))
    #expect(child.finish() == 0)

    let checked = try SessionPeer.run("integrity", [snapshot])
    #expect(checked["integrity"] as? [String] == ["ok"])
  }
}

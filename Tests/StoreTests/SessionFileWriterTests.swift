import Foundation
import Store
import TestSupport
import Testing

@Suite struct SessionFileWriterTests {
  /// `sqlite_master` rows (type, name, table, sql) as Python's sqlite3 reads them.
  private func schemaRows(_ path: String) throws -> [[String]] {
    let rows = try SessionPeer.run("schema", [path])["schema"] as? [[Any]] ?? []
    return rows.map { $0.map { $0 as? String ?? "NULL" } }
  }

  private func key() throws -> AuthKey {
    try AuthKey(bytes: (0..<256).map { _ in UInt8.random(in: 0...255) })
  }

  /// Swift writes, the real Telethon loads (from a copy: Telethon mutates what it opens).
  @Test(arguments: [
    // version, loading peer, address
    (8, "", "149.154.167.51"),
    (8, "", "2001:67c:4e8:f002::a"),
    (7, "telethon142", "149.154.175.53"),
    (7, "telethon142", "2001:067c:04e8:f002:0000:0000:0000:000b"),
    (7, "", "91.108.56.130"),  // Telethon 1.45 upgrading a v7 file Swift wrote
  ])
  func telethonLoadsWhatSwiftWrote(version: Int, peer: String, address: String) throws {
    let dir = try TemporaryDirectory()
    let path = dir.file("user_4242.session")
    let identity = SessionIdentity(dcID: 4, serverAddress: address, port: 443, authKey: try key())
    try SessionFileWriter.writeTelethon(
      identity: identity, version: version, ownerUserID: 4242, takeoutID: 31337, to: path)
    #expect(try FileSystem.mode(of: path) == 0o600)
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["user_4242.session"])

    let info = try SessionFileInspector.inspect(path: path)
    #expect(info.format == .telethon(version: version))
    #expect(info.identity == identity)
    #expect(info.ownerUserID == 4242 && info.takeoutID == 31337 && info.entityCount == 0)
    #expect(info.updateStateCount == 0)

    let checked = try SessionPeer.run("integrity", [path])
    #expect(checked["integrity"] as? [String] == ["ok"])
    #expect(checked.string("journal_mode") == "delete")

    let copy = dir.file("copy.session")
    try Files.copy(path, copy)
    let loaded = try SessionPeer.run("telethon-load", [copy], peer: peer.isEmpty ? nil : peer)
    #expect(loaded.int("dc") == 4)
    #expect(loaded.string("address") == address)
    #expect(loaded.int("port") == 443)
    #expect(loaded.string("key") == Hex.encode(identity.authKey.bytes))
    #expect(loaded.int64("takeout") == 31337)
    #expect(loaded.int64("owner") == 4242)
  }

  /// The DDL is Telethon's, character for character: sqlite_master equals a Telethon-made file's.
  @Test(arguments: [(8, ""), (7, "telethon142")])
  func telethonSchemaMatchesTelethon(version: Int, peer: String) throws {
    let dir = try TemporaryDirectory()
    let telethonMade = dir.file("telethon.session")
    _ = try SessionPeer.run(
      "telethon-file", [telethonMade, "2", "149.154.167.51", "443", "", "", ""], peer: peer.isEmpty ? nil : peer)
    let swiftMade = dir.file("swift.session")
    let identity = SessionIdentity(dcID: 2, serverAddress: "149.154.167.51", port: 443, authKey: try key())
    try SessionFileWriter.writeTelethon(identity: identity, version: version, to: swiftMade)
    let theirs = try schemaRows(telethonMade)
    #expect(theirs.count == 6)
    #expect(try schemaRows(swiftMade) == theirs)
  }

  @Test func pyrogramLoadsWhatSwiftWroteAndTheSchemaIsPyrograms() throws {
    let dir = try TemporaryDirectory()
    let payload = PyrogramSessionPayload(
      dcID: 5, apiID: 94575, isTestMode: false, authKey: try key(), userID: 7_000_000_001, isBot: true)
    let path = dir.file("swift.session")
    try SessionFileWriter.writePyrogram(payload, to: path)
    #expect(try FileSystem.mode(of: path) == 0o600)
    let info = try SessionFileInspector.inspect(path: path)
    #expect(info.format.shortName == "pyrogram-v3")
    #expect(try info.pyrogramPayload() == payload)

    let copy = dir.file("copy.session")
    try Files.copy(path, copy)
    let loaded = try SessionPeer.run("pyrogram-load", [copy])
    #expect(loaded.int("dc") == 5)
    #expect(loaded.int("api_id") == 94575)
    #expect(loaded.bool("test_mode") == false)
    #expect(loaded.string("key") == Hex.encode(payload.authKey.bytes))
    #expect(loaded.int64("user_id") == 7_000_000_001)
    #expect(loaded.bool("is_bot") == true)
    #expect(loaded.string("string") == (try PyrogramStringSession.encode(payload)))

    _ = try SessionPeer.run("pyrogram-file", [dir.path, "pyrogram", "2", "1", "0", "5", "0", "", "0", "0"])
    let theirs = try schemaRows(dir.file("pyrogram.session"))
    #expect(theirs.count == 7)
    #expect(try schemaRows(path) == theirs)
  }

  @Test func kurigramAndPyroforkLoadWhatSwiftWrote() throws {
    let dir = try TemporaryDirectory()
    let payload = PyrogramSessionPayload(
      dcID: 2, apiID: 12345, isTestMode: false, authKey: try key(), userID: 777, isBot: false)
    for peer in ["kurigram", "pyrofork"] {
      let path = dir.file("\(peer).session")
      try SessionFileWriter.writePyrogram(payload, to: path)
      let loaded = try SessionPeer.run("pyrogram-load", [path], peer: peer)
      #expect(loaded.string("key") == Hex.encode(payload.authKey.bytes), "\(peer)")
      #expect(loaded.string("string") == (try PyrogramStringSession.encode(payload)), "\(peer)")
      // They migrated the file in place (that is why the other tests use copies).
      let migrated = try SessionFileInspector.inspect(path: path)
      #expect(migrated.format.shortName == (peer == "kurigram" ? "kurigram-v7" : "pyrofork-v4"))
      #expect(migrated.identity.authKey == payload.authKey)
    }
  }

  // MARK: Conversions

  @Test func telethonStringToFileAndBack() throws {
    let dir = try TemporaryDirectory()
    let keyHex = SessionPeer.randomKeyHex()
    let peer = try SessionPeer.run("telethon-strings", ["2", "2001:67c:4e8:f002::a", "443", keyHex])
    let string = try #require(peer.string("string"))
    let path = dir.file("from-string.session")
    let identity = try SessionConversion.writeTelethonFile(fromString: string, ownerUserID: 99, to: path)
    #expect(identity.serverAddress == "2001:67c:4e8:f002::a")
    let loaded = try SessionPeer.run("telethon-load", [path])
    #expect(loaded.string("key") == keyHex)
    #expect(loaded.string("address") == "2001:67c:4e8:f002::a")
    #expect(try SessionConversion.telethonString(fromFile: path) == string)
  }

  @Test func telethonFileToStringEqualsTelethonsOwnString() throws {
    let dir = try TemporaryDirectory()
    let path = dir.file("t.session")
    let made = try SessionPeer.run("telethon-file", [path, "1", "149.154.175.53", "443", "", "555", ""])
    let keyHex = try #require(made.string("key"))
    let theirs = try SessionPeer.run("telethon-strings", ["1", "149.154.175.53", "443", keyHex]).string("string")
    #expect(try SessionConversion.telethonString(fromFile: path) == theirs)
  }

  @Test func pyrogramStringToFileAndBack() throws {
    let dir = try TemporaryDirectory()
    let keyHex = SessionPeer.randomKeyHex()
    let strings = try SessionPeer.run("pyrogram-strings", ["3", "611335", "0", "8000000000", "0", keyHex])
    let string = try #require(strings.string("362"))
    let path = dir.file("p.session")
    try SessionConversion.writePyrogramFile(fromString: string, to: path)
    let copy = dir.file("copy.session")
    try Files.copy(path, copy)
    #expect(try SessionPeer.run("pyrogram-load", [copy]).string("string") == string)
    #expect(try SessionConversion.pyrogramString(fromFile: path) == string)
    #expect(try SessionConversion.pyrogramString(fromFile: path, layout: .legacy64) == strings.string("356"))

    // A 356 string has no api id: the file needs one.
    let old = try #require(strings.string("356"))
    #expect(
      problem { try SessionConversion.writePyrogramFile(fromString: old, to: dir.file("old.session")) }
        == .invalidField("api_id is missing (needed by the 362 layout)"))
    try SessionConversion.writePyrogramFile(fromString: old, apiID: 611335, to: dir.file("old.session"))
    #expect(try SessionConversion.pyrogramString(fromFile: dir.file("old.session")) == string)
  }

  @Test func pyrogramFileFromPyrogramToString() throws {
    let dir = try TemporaryDirectory()
    let made = try SessionPeer.run("pyrogram-file", [dir.path, "p", "1", "2040", "0", "31", "0", "", "0", "0"])
    #expect(try SessionConversion.pyrogramString(fromFile: dir.file("p.session")) == made.string("string"))
    let telethonPath = dir.file("t.session")
    _ = try SessionPeer.run("telethon-file", [telethonPath, "2", "149.154.167.51", "443", "31", "", ""])
    #expect(
      problem { _ = try SessionConversion.pyrogramString(fromFile: telethonPath) }
        == .invalidField("a telethon-v8 file has no Pyrogram string"))
  }

  // MARK: Refusals

  @Test func writersRefuseBadInputAndNeverClobber() throws {
    let dir = try TemporaryDirectory()
    let good = SessionIdentity(dcID: 2, serverAddress: "149.154.167.51", port: 443, authKey: try key())
    let path = dir.file("s.session")
    var bad = good
    bad.dcID = 9
    #expect(problem { try SessionFileWriter.writeTelethon(identity: bad, to: path) } == .dcOutOfRange(9))
    #expect(
      problem { try SessionFileWriter.writeTelethon(identity: good, version: 6, to: path) }
        == .unsupportedVersion("6 of Telethon for writing (7 or 8)"))
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty)

    try SessionFileWriter.writeTelethon(identity: good, to: path)
    let before = try Files.bytes(path)
    var other = good
    other.authKey = try key()
    #expect(throws: StoreError.self) { try SessionFileWriter.writeTelethon(identity: other, to: path) }
    #expect(try Files.bytes(path) == before)
    try SessionFileWriter.writeTelethon(identity: other, to: path, overwrite: true)
    #expect(try SessionFileInspector.inspect(path: path).identity == other)
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["s.session"])

    let pyrogram = PyrogramSessionPayload(
      dcID: 2, apiID: nil, isTestMode: false, authKey: try key(), userID: 1, isBot: false)
    #expect(
      problem { try SessionFileWriter.writePyrogram(pyrogram, to: dir.file("p.session")) }
        == .invalidField("api_id is missing (needed by the 362 layout)"))
    #expect(!Files.exists(dir.file("p.session")))
  }
}

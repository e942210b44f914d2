import Foundation
import Store
import TestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// Invalid and randomly damaged session files and strings, run in-process through Store's parsers
/// (`SessionFileInspector.inspect`, `TelethonStringSession.decode`, `PyrogramStringSession.decode`):
/// each invalid-file class gives its precise reason; no mutation crashes a parser; whatever is
/// accepted holds a 256-byte key that is not all zeros and a dc in range; an accepted string
/// re-encodes to exactly itself; inspecting never changes the file.
@Suite(.serialized, .enabled(if: Torture.isEnabled, "set TGSESS_TORTURE_SCALE=quick|full (scripts/torture.sh)"))
struct BadSessionTorture {
  /// `Tests/StoreTests/Fixtures/python/session_peer.py`, which drives the real libraries.
  static func peer(_ command: String, _ arguments: [String], peer: String? = nil) throws -> [String: Any] {
    let script = try String(
      contentsOfFile: TestEnvironment.packageRoot + "/Tests/StoreTests/Fixtures/python/session_peer.py",
      encoding: .utf8)
    let result = try runPython(script, arguments: [command] + arguments, peer: peer)
    guard let line = result.stdout.split(separator: "\n").last(where: { $0.hasPrefix("RESULT ") }),
      let object = try JSONSerialization.jsonObject(with: Data(line.dropFirst(7).utf8)) as? [String: Any]
    else { throw TestHelperError("session_peer.py \(command) printed no RESULT: \(result.stdout) \(result.stderr)") }
    return object
  }

  static func problem(_ body: () throws -> Void) -> SessionProblem? {
    do {
      try body()
      return nil
    } catch StoreError.session(_, let reason) {
      return reason
    } catch {
      return .unreadable("\(error)")
    }
  }

  /// The case name of a problem, without its details.
  static func kind(_ problem: SessionProblem?) -> String {
    guard let problem else { return "accepted" }
    if let label = Mirror(reflecting: problem).children.first?.label { return label }
    let plain: [(SessionProblem, String)] = [
      (.notSQLite, "notSQLite"), (.missingFile, "missingFile"), (.truncated, "truncated"), (.emptyFile, "emptyFile"),
      (.noSessionsRow, "noSessionsRow"), (.authKeyMissing, "authKeyMissing"), (.authKeyAllZero, "authKeyAllZero"),
      (.badBase64, "badBase64"), (.serverAddressMissing, "serverAddressMissing"), (.portMissing, "portMissing"),
    ]
    return plain.first { $0.0 == problem }?.1 ?? "\(problem)"
  }

  /// Whether an accepted identity is sane: a 256-byte key, not all zeros, a dc in range.
  static func saneProblems(_ identity: SessionIdentity, isTestMode: Bool = false) -> [String] {
    var problems: [String] = []
    if identity.authKey.bytes.count != 256 { problems.append("accepted a \(identity.authKey.bytes.count)-byte key") }
    if identity.authKey.isAllZero { problems.append("accepted an all-zero key") }
    if !(isTestMode ? 1...3 : 1...5).contains(identity.dcID) { problems.append("accepted dc \(identity.dcID)") }
    if let port = identity.port, !(1...65535).contains(port) { problems.append("accepted port \(port)") }
    return problems
  }

  // MARK: - Files

  struct Seed {
    var name: String
    var path: String
  }

  /// Valid files written by the real libraries: Telethon 1.45 (v8) and 1.42 (v7), Pyrogram 2.0
  /// (v3), kurigram (v7) and pyrofork (v4).
  static func seedFiles(in directory: TemporaryDirectory) throws -> [Seed] {
    var seeds: [Seed] = []
    let v8 = directory.file("telethon-v8.session")
    _ = try peer("telethon-file", [v8, "2", "149.154.167.51", "443", "42", "", ""])
    seeds.append(Seed(name: "telethon-v8", path: v8))
    let v7 = directory.file("telethon-v7.session")
    _ = try peer("telethon-file", [v7, "4", "2001:67c:4e8:f004::a", "443", "43", "", ""], peer: "telethon142")
    seeds.append(Seed(name: "telethon-v7", path: v7))
    for (name, peerName) in [("pyrogram-v3", nil), ("kurigram", "kurigram"), ("pyrofork", "pyrofork")] {
      _ = try peer(
        "pyrogram-file", [directory.path, name, "2", "12345", "0", "777", "0", "", "0", "0"], peer: peerName)
      seeds.append(Seed(name: name, path: directory.file(name + ".session")))
    }
    return seeds
  }

  /// One invalid-file class: how to make it from a Telethon file, and the reason expected.
  struct FileClass: Sendable {
    var name: String
    var expected: String
    var make: @Sendable (_ base: String, _ path: String) throws -> Void
  }

  static func sql(_ sql: String, on path: String) throws {
    let result = try runProcess(StockTools.sqlite3, [path, sql])
    guard result.status == 0 else { throw TestHelperError("sqlite3: \(result.stderr)") }
  }

  static func copy(_ from: String, _ to: String) throws {
    try FileSystem.writeAtomically(try FileSystem.read(from), to: to)
  }

  static let fileClasses: [FileClass] = {
    func edit(_ name: String, _ statement: String, _ expected: String) -> FileClass {
      FileClass(name: name, expected: expected) { base, path in
        try copy(base, path)
        try sql(statement, on: path)
      }
    }
    func bytes(_ name: String, _ expected: String, _ transform: @escaping @Sendable ([UInt8]) -> [UInt8]) -> FileClass {
      FileClass(name: name, expected: expected) { base, path in
        try FileSystem.writeAtomically(Data(transform([UInt8](try FileSystem.read(base)))), to: path)
      }
    }
    return [
      FileClass(name: "missing file", expected: "missingFile") { _, _ in },
      bytes("empty file", "emptyFile") { _ in [] },
      bytes("text, not SQLite", "notSQLite") { _ in Array("not a database, just text\n".utf8) },
      bytes("five bytes", "notSQLite") { _ in Array("hello".utf8) },
      bytes("header cut at 10 bytes", "truncated") { Array($0.prefix(10)) },
      bytes("header cut at 99 bytes", "truncated") { Array($0.prefix(99)) },
      bytes("cut after the first page", "truncated") { Array($0.prefix(4096)) },
      bytes("cut mid-file", "truncated") { Array($0.prefix($0.count / 2 + 17)) },
      bytes("last byte missing", "truncated") { Array($0.dropLast()) },
      bytes("a b-tree page scribbled over", "truncated") { original in
        var copy = original
        for index in (4096 * 3)..<(4096 * 3 + 2000) where index < copy.count { copy[index] = 0xa5 }
        return copy
      },
      bytes("page size 3000 in the header", "truncated") { original in
        var copy = original
        copy[16] = 0x0b
        copy[17] = 0xb8
        return copy
      },
      FileClass(name: "a foreign schema", expected: "unknownSchema") { _, path in
        try sql("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users VALUES (1, 'a')", on: path)
      },
      FileClass(name: "no tables", expected: "unknownSchema") { _, path in
        try sql("PRAGMA user_version = 3; CREATE TABLE t(x); DROP TABLE t", on: path)
      },
      edit("Telethon version 9", "UPDATE version SET version = 9", "unsupportedVersion"),
      edit("Telethon version 1", "UPDATE version SET version = 1", "unsupportedVersion"),
      edit("sessions table without columns", "DROP TABLE sessions; CREATE TABLE sessions (x)", "unknownSchema"),
      edit("no sessions row", "DELETE FROM sessions", "noSessionsRow"),
      edit(
        "two sessions rows",
        "INSERT INTO sessions SELECT 3, server_address, port, auth_key, takeout_id, tmp_auth_key FROM sessions",
        "multipleSessionsRows"),
      edit("empty key", "UPDATE sessions SET auth_key = x''", "authKeyMissing"),
      edit("NULL key", "UPDATE sessions SET auth_key = NULL", "authKeyMissing"),
      edit("1-byte key", "UPDATE sessions SET auth_key = x'01'", "authKeyWrongLength"),
      edit("16-byte key", "UPDATE sessions SET auth_key = randomblob(16)", "authKeyWrongLength"),
      edit("255-byte key", "UPDATE sessions SET auth_key = substr(auth_key, 1, 255)", "authKeyWrongLength"),
      edit("257-byte key", "UPDATE sessions SET auth_key = auth_key || x'00'", "authKeyWrongLength"),
      edit("text key", "UPDATE sessions SET auth_key = hex(auth_key)", "authKeyWrongLength"),
      edit("all-zero key", "UPDATE sessions SET auth_key = zeroblob(256)", "authKeyAllZero"),
      edit("dc 0", "UPDATE sessions SET dc_id = 0", "dcOutOfRange"),
      edit("dc 6", "UPDATE sessions SET dc_id = 6", "dcOutOfRange"),
      edit("dc -1", "UPDATE sessions SET dc_id = -1", "dcOutOfRange"),
      edit("dc 2^40", "UPDATE sessions SET dc_id = 1099511627776", "dcOutOfRange"),
      edit("port 0", "UPDATE sessions SET port = 0", "badPort"),
      edit("port 70000", "UPDATE sessions SET port = 70000", "badPort"),
      edit("no port", "UPDATE sessions SET port = NULL", "portMissing"),
      edit("text port", "UPDATE sessions SET port = 'https'", "invalidField"),
      edit("no address", "UPDATE sessions SET server_address = NULL", "serverAddressMissing"),
      edit("host name address", "UPDATE sessions SET server_address = 'dc2.example'", "badAddress"),
      edit("address with a port", "UPDATE sessions SET server_address = '149.154.167.51:443'", "badAddress"),
    ]
  }()

  /// Random damage to a file: bit flips, truncation, inserted or deleted bytes, a scribbled run,
  /// or the auth key's bytes zeroed (wholly or in part).
  static func mutate(_ bytes: [UInt8], key: [UInt8], random: inout TortureRandom) -> (String, [UInt8]) {
    var copy = bytes
    switch random.next() % 7 {
    case 0:
      let flips = Int(1 + random.next() % 8)
      for _ in 0..<flips { copy[Int(random.next() % UInt64(copy.count))] ^= UInt8(1 << (random.next() % 8)) }
      return ("\(flips) bit flip(s)", copy)
    case 1:
      let length = Int(random.next() % UInt64(copy.count))
      return ("truncated to \(length)", Array(copy.prefix(length)))
    case 2:
      let offset = Int(random.next() % UInt64(copy.count))
      let count = Int(1 + random.next() % 16)
      copy.insert(contentsOf: (0..<count).map { _ in UInt8(truncatingIfNeeded: random.next()) }, at: offset)
      return ("\(count) byte(s) inserted at \(offset)", copy)
    case 3:
      let offset = Int(random.next() % UInt64(copy.count))
      let count = min(Int(1 + random.next() % 16), copy.count - offset)
      copy.removeSubrange(offset..<offset + count)
      return ("\(count) byte(s) deleted at \(offset)", copy)
    case 4:
      let offset = Int(random.next() % UInt64(copy.count))
      let count = min(Int(1 + random.next() % 512), copy.count - offset)
      let value = UInt8(truncatingIfNeeded: random.next())
      for index in offset..<offset + count { copy[index] = value }
      return ("\(count) byte(s) at \(offset) set to \(value)", copy)
    default:
      // The key's bytes, wherever the file holds them: zeroed wholly, or partly.
      guard let start = find(key, in: copy) else { return ("key not found; 1 bit flip", flip(copy, &random)) }
      let whole = random.next() % 2 == 0
      let count = whole ? key.count : Int(1 + random.next() % 255)
      for index in start..<start + count { copy[index] = 0 }
      return (whole ? "auth key zeroed" : "first \(count) key byte(s) zeroed", copy)
    }
  }

  static func flip(_ bytes: [UInt8], _ random: inout TortureRandom) -> [UInt8] {
    var copy = bytes
    copy[Int(random.next() % UInt64(copy.count))] ^= 1
    return copy
  }

  static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
    guard needle.count <= haystack.count, let first = needle.first else { return nil }
    var index = 0
    while index <= haystack.count - needle.count {
      if haystack[index] == first, Array(haystack[index..<index + needle.count]) == needle { return index }
      index += 1
    }
    return nil
  }

  @Test func invalidFileClassesAndRandomFileDamage() throws {
    let report = FamilyReport("bad-sessions")
    defer { print(report.summary) }
    let directory = try TemporaryDirectory("tgsess-bad-sessions")
    let seeds = try Self.seedFiles(in: directory)
    let telethon = seeds[0].path

    // Every invalid-file class, with its reason.
    for (index, fileClass) in Self.fileClasses.enumerated() {
      report.check("file class: \(fileClass.name)", counts: ["file classes": 1]) {
        let path = directory.file("class-\(index).session")
        try fileClass.make(telethon, path)
        let found = Self.kind(Self.problem { _ = try SessionFileInspector.inspect(path: path) })
        return found == fileClass.expected ? [] : ["expected \(fileClass.expected), got \(found)"]
      }
    }
    report.check("file class: hot journal", counts: ["file classes": 1]) {
      let path = directory.file("hot.session")
      try Self.copy(telethon, path)
      _ = try Self.peer("hot-journal", [path])
      let found = Self.kind(Self.problem { _ = try SessionFileInspector.inspect(path: path) })
      return found == "hotJournal" ? [] : ["expected hotJournal, got \(found)"]
    }
    report.check("file class: exclusive lock held by a writer", counts: ["file classes": 1]) {
      let path = directory.file("locked.session")
      try Self.copy(telethon, path)
      let holder = try PythonHolder(PeerScripts.holdExclusive, arguments: [path])
      defer { holder.finish() }
      let found = Self.kind(
        Self.problem { _ = try SessionFileInspector.inspect(path: path, busyTimeoutMS: 100) })
      return found == "locked" ? [] : ["expected locked, got \(found)"]
    }
    report.check("file class: Pyrogram test mode on dc 4", counts: ["file classes": 1]) {
      let path = directory.file("test-mode.session")
      try Self.copy(seeds[2].path, path)
      try Self.sql("UPDATE sessions SET test_mode = 1, dc_id = 4", on: path)
      let found = Self.kind(Self.problem { _ = try SessionFileInspector.inspect(path: path) })
      return found == "testModeDCOutOfRange" ? [] : ["expected testModeDCOutOfRange, got \(found)"]
    }

    // Random damage to every library's file.
    var random = TortureRandom(seed: Torture.seed &+ 5)
    let perSeed = Torture.pick(quick: 40, full: 800)
    for seed in seeds {
      let original = [UInt8](try FileSystem.read(seed.path))
      let key = try SessionFileInspector.inspect(path: seed.path).identity.authKey.bytes
      var outcomes: [String: Int] = [:]
      var problems: [String] = []
      let started = Date()
      for round in 0..<perSeed {
        let (what, bytes) = Self.mutate(original, key: key, random: &random)
        let path = directory.file("m-\(seed.name).session")
        for suffix in ["", "-journal", "-wal", "-shm"] { unlink(path + suffix) }
        try FileSystem.writeAtomically(Data(bytes), to: path)
        var info: SessionFileInfo?
        let found = Self.problem { info = try SessionFileInspector.inspect(path: path, busyTimeoutMS: 100) }
        outcomes[Self.kind(found), default: 0] += 1
        if let info {
          problems += Self.saneProblems(info.identity, isTestMode: info.isTestMode ?? false).map {
            "\(seed.name) #\(round) (\(what)): \($0)"
          }
        }
        if [UInt8](try FileSystem.read(path)) != bytes {
          problems.append("\(seed.name) #\(round): inspect changed the file")
        }
      }
      let summary = outcomes.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
      report.record(
        "\(perSeed) random mutations of a \(seed.name) file", problems: problems,
        seconds: Date().timeIntervalSince(started), detail: summary, counts: ["file mutations": perSeed])
    }
  }

  // MARK: - Strings

  /// Random damage to a string: a character replaced, inserted or deleted, a cut, whitespace,
  /// a case flip, or the key's bytes zeroed in the payload and re-encoded.
  static func mutate(string: String, random: inout TortureRandom) -> (String, String) {
    var chars = Array(string.unicodeScalars)
    let pool = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/= \n\t.é\u{0}".unicodeScalars)
    let index = Int(random.next() % UInt64(chars.count))
    switch random.next() % 6 {
    case 0:
      chars[index] = pool[Int(random.next() % UInt64(pool.count))]
      return ("character \(index) replaced", String(String.UnicodeScalarView(chars)))
    case 1:
      chars.insert(pool[Int(random.next() % UInt64(pool.count))], at: index)
      return ("character inserted at \(index)", String(String.UnicodeScalarView(chars)))
    case 2:
      chars.remove(at: index)
      return ("character \(index) deleted", String(String.UnicodeScalarView(chars)))
    case 3:
      return ("cut to \(index)", String(String.UnicodeScalarView(chars.prefix(index))))
    case 4:
      let scalar = chars[index]
      let text = String(scalar)
      let flipped = text.uppercased() == text ? text.lowercased() : text.uppercased()
      chars[index] = flipped.unicodeScalars.first ?? scalar
      return ("case of \(index) flipped", String(String.UnicodeScalarView(chars)))
    default:
      for _ in 0..<Int(1 + random.next() % 3) {
        chars[Int(random.next() % UInt64(chars.count))] = pool[Int(random.next() % 62)]
      }
      return ("several characters replaced", String(String.UnicodeScalarView(chars)))
    }
  }

  /// Decodes `string` as both formats; returns the problems (crashes would end the process).
  static func checkString(_ string: String, label: String) -> (String, [String]) {
    var problems: [String] = []
    let trimmed = string.trimmingCharacters(in: .whitespacesAndNewlines)
    var outcome = "refused"
    if let identity = try? TelethonStringSession.decode(string) {
      outcome = "accepted as Telethon"
      problems += saneProblems(identity).map { "\(label): \($0)" }
      if (try? TelethonStringSession.encode(identity)) != trimmed {
        problems.append("\(label): an accepted Telethon string does not re-encode to itself")
      }
    }
    if let payload = try? PyrogramStringSession.decode(string) {
      outcome = "accepted as Pyrogram"
      problems += saneProblems(payload.identity, isTestMode: payload.isTestMode).map { "\(label): \($0)" }
      if (try? PyrogramStringSession.encode(payload)) != trimmed {
        problems.append("\(label): an accepted Pyrogram string does not re-encode to itself")
      }
    }
    return (outcome, problems)
  }

  @Test func invalidAndRandomlyDamagedStrings() throws {
    let report = FamilyReport("bad-sessions")
    defer { print(report.summary) }
    let key = (0..<256).map { _ in UInt8.random(in: 0...255) }
    let keyHex = Hex.encode(key)
    var seeds: [(String, String)] = []
    for (dc, address) in [("2", "149.154.167.51"), ("5", "2001:b28:f23f:f005::a")] {
      let made = try Self.peer("telethon-strings", [dc, address, "443", keyHex])
      seeds.append(("Telethon \(address.contains(":") ? "IPv6" : "IPv4")", made["string"] as? String ?? ""))
    }
    let pyrogram = try Self.peer("pyrogram-strings", ["2", "12345", "0", "777", "0", keyHex])
    for layout in ["351", "356", "362"] { seeds.append(("Pyrogram \(layout)", pyrogram[layout] as? String ?? "")) }
    // The crafted invalid strings (each must be refused).
    let crafted = try Self.peer("crafted-strings", [keyHex])
    for (name, value) in crafted.sorted(by: { $0.key < $1.key }) {
      guard let string = value as? String else { continue }
      report.check("crafted string: \(name)", counts: ["crafted strings": 1]) {
        let (outcome, problems) = Self.checkString(string, label: name)
        let shouldAccept = name == "good" || name == "pyrogram_good"
        if shouldAccept != (outcome != "refused") { return problems + ["\(name) was \(outcome)"] }
        return problems
      }
    }
    // Keys that must never be accepted, in every layout: all zeros, and every short length.
    report.check("all-zero and short keys in every layout") {
      var problems: [String] = []
      let zero = try Self.peer("crafted-strings", [String(repeating: "0", count: 512)])
      for (name, value) in zero {
        if let string = value as? String, Self.checkString(string, label: name).0 != "refused" {
          problems.append("\(name) with an all-zero key was accepted")
        }
      }
      for seed in seeds.map(\.1) {
        for cut in [1, 2, 3, 4, 10, 100, 200, 300, 340, 350, 352] where cut < seed.count {
          if Self.checkString(String(seed.prefix(cut)), label: "cut").0 != "refused" {
            problems.append("a string cut to \(cut) characters was accepted")
          }
        }
      }
      return problems
    }
    // Random damage.
    var random = TortureRandom(seed: Torture.seed &+ 7)
    let perSeed = Torture.pick(quick: 400, full: 8000)
    for (name, seed) in seeds {
      let started = Date()
      var outcomes: [String: Int] = [:]
      var problems: [String] = []
      if Self.checkString(seed, label: name).0 == "refused" { problems.append("the valid \(name) seed was refused") }
      for round in 0..<perSeed {
        let (what, damaged) = Self.mutate(string: seed, random: &random)
        let (outcome, found) = Self.checkString(damaged, label: "\(name) #\(round) (\(what))")
        outcomes[outcome, default: 0] += 1
        problems += found
      }
      let summary = outcomes.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
      report.record(
        "\(perSeed) random mutations of a \(name) string", problems: problems,
        seconds: Date().timeIntervalSince(started), detail: summary, counts: ["string mutations": perSeed])
    }
    // Random strings of the exact lengths, from the alphabet.
    report.check("random strings of every valid length") {
      var problems: [String] = []
      let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
      for round in 0..<Torture.pick(quick: 500, full: 10000) {
        let length = [352, 368, 351, 356, 362][round % 5]
        var text = String((0..<length).map { _ in alphabet[Int(random.next() % 64)] })
        if length == 352 || length == 368 { text = "1" + text.dropFirst() + "=" }
        problems += Self.checkString(text, label: "random \(length)+ #\(round)").1
      }
      return problems
    }
  }
}

import Foundation
import Store
import Testing

/// `Manifest.encoded()` splices entries encoded one at a time into the manifest's frame; these
/// pin it to exactly what `JSONEncoder` makes of the whole manifest, which older tgsess wrote.
@Suite struct ManifestEncodingTests {
  static func manifest(entries: Int, reason: String = "Scheduled") -> Manifest {
    let hash = String(repeating: "ab", count: 32)
    var list: [Manifest.Entry] = [
      Manifest.Entry(path: "data/telegram_bot.db", role: .database, size: 4096, sha256: hash, isSQLite: true)
    ]
    for index in 0..<max(0, entries - 1) {
      let user = Int64(100_000 + index)
      list.append(
        Manifest.Entry(
          path: "sessions/user_\(user).session", role: .session, size: 28672, sha256: hash, isSQLite: true,
          userID: user, format: index % 2 == 0 ? "telethon-v7" : "pyrogram-v3", dcID: 2,
          authKeyFingerprint: "8e8b7b38", serverAddress: index % 3 == 0 ? nil : "149.154.167.51"))
    }
    return Manifest(
      toolVersion: "0.1.0", host: "host \"quoted\" / é", createdAt: Date(timeIntervalSince1970: 1_795_594_663),
      kind: .full, reason: reason, userID: nil, schemaVersion: 3, entries: Array(list.prefix(entries)))
  }

  static func reference(_ manifest: Manifest) throws -> Data {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    encoder.dateEncodingStrategy = .iso8601
    return try encoder.encode(manifest)
  }

  /// 200 and 2,000 entries: JSON of several of the pieces `ManifestJSON` gathers (64 KiB) and
  /// moves to its result.
  @Test(arguments: [0, 1, 2, 7, 200, 2000])
  func splicedEncodingIsJSONEncodersOutput(entries: Int) throws {
    let manifest = Self.manifest(entries: entries, reason: "Before \"restore\"\n\t\\")
    let encoded = try manifest.encoded()
    #expect(encoded == (try Self.reference(manifest)), "\(String(decoding: encoded, as: UTF8.self))")
    #expect(try Manifest.decode(encoded, objectName: "test") == manifest)
  }
}

/// `ManifestJSON` writes the manifest by hand; these compare it with `JSONEncoder` over many
/// manifests: every field present and absent, every role and kind, every ASCII byte and
/// non-ASCII text in every string, extreme numbers and the edges of the years it writes.
@Suite struct HandWrittenManifestJSONTests {
  /// splitmix64, so a failure names a seed that reproduces it.
  struct Seeded: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
      state &+= 0x9E37_79B9_7F4A_7C15
      var z = state
      z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
      z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
      return z ^ (z >> 31)
    }
  }

  /// Pieces strings are made of: every ASCII byte, and text JSON writers get wrong (DEL, C1
  /// controls, line and paragraph separators, a BOM, combining marks, astral plane, RTL).
  static let pieces: [String] =
    (0..<0x80).map { String(UnicodeScalar(UInt8($0))) } + [
      "é", "e\u{301}", "\u{85}", "\u{A0}", "\u{2028}", "\u{2029}", "\u{FEFF}", "😀", "👩‍👩‍👧", "日本", "שלום",
      "\u{10FFFF}", "\\u0000", "</script>", "sessions/user_1.session",
    ]

  static func string(_ random: inout Seeded) -> String {
    (0..<Int.random(in: 0...12, using: &random)).map { _ in pieces.randomElement(using: &random)! }.joined()
  }

  static func integer(_ random: inout Seeded) -> Int64 {
    [Int64.min, Int64.max, 0, -1, 1, 9, 10, 4096, 999_999_999_999, Int64.random(in: .min ... .max, using: &random)]
      .randomElement(using: &random)!
  }

  static func manifest(seed: UInt64) -> Manifest {
    var random = Seeded(state: seed)
    let roles: [Manifest.EntryRole] = [
      .database, .session, .sessionBackup, .sessionSidecar, .userRows, .imported, .verbatim,
    ]
    let entries = (0..<Int.random(in: 0...6, using: &random)).map { index in
      Manifest.Entry(
        path: "\(index)/" + string(&random), role: roles.randomElement(using: &random)!,
        size: integer(&random), mode: [0, 0o600, 0o644, UInt32.max].randomElement(using: &random)!,
        sha256: string(&random), isSQLite: Bool.random(using: &random),
        userID: Bool.random(using: &random) ? integer(&random) : nil,
        format: Bool.random(using: &random) ? string(&random) : nil,
        dcID: Bool.random(using: &random) ? Int(integer(&random)) : nil,
        authKeyFingerprint: Bool.random(using: &random) ? string(&random) : nil,
        serverAddress: Bool.random(using: &random) ? string(&random) : nil)
    }
    // 1970-01-01T00:00:00Z ... 9999-12-31T23:59:59Z, the edges often.
    let seconds = [0, 253_402_300_799, 951_782_400, Double(Int.random(in: 0...253_402_300_799, using: &random))]
    let fraction = [0, 0.5, 0.9994, 0.9995, 0.9996, 0.999_999, 0.999_999_9].randomElement(using: &random)!
    let chosen = seconds.randomElement(using: &random)!
    var manifest = Manifest(
      toolVersion: string(&random), host: string(&random),
      createdAt: Date(timeIntervalSince1970: chosen + 0.75),
      kind: Bool.random(using: &random) ? .full : .user, reason: string(&random),
      userID: Bool.random(using: &random) ? integer(&random) : nil,
      schemaVersion: Int(integer(&random)), entries: entries)
    manifest.formatVersion = Int(integer(&random))
    // The initializer keeps whole seconds; the property takes any time.
    if chosen < 253_402_300_799 { manifest.createdAt += fraction }
    return manifest
  }

  @Test func equalsJSONEncoderOverManyManifests() throws {
    for seed in UInt64(0)..<3_000 {
      let manifest = Self.manifest(seed: seed)
      let encoded = try manifest.encoded()
      let reference = try ManifestEncodingTests.reference(manifest)
      guard encoded == reference else {
        Issue.record(
          "seed \(seed): \(String(decoding: encoded, as: UTF8.self)) != \(String(decoding: reference, as: UTF8.self))")
        return
      }
    }
  }

  @Test func fleetSizedManifestEqualsJSONEncoder() throws {
    let manifest = ManifestEncodingTests.manifest(entries: 2_000)
    #expect(try manifest.encoded() == (try ManifestEncodingTests.reference(manifest)))
  }

  /// Times the hand-written form does not cover go through `JSONEncoder`, with the same bytes.
  @Test(arguments: [-1.0, -62_135_596_800, 253_402_300_800, 1e12])
  func timesOutsideItsYearsStillEqualJSONEncoder(seconds: Double) throws {
    var manifest = ManifestEncodingTests.manifest(entries: 3)
    manifest.createdAt = Date(timeIntervalSince1970: seconds)
    #expect(try manifest.encoded() == (try ManifestEncodingTests.reference(manifest)))
  }
}

/// `ArchiveRecordJSON` writes archive records by hand; compared with `JSONEncoder` over many
/// records (every optional present and absent, empty and full arrays, any text, fractional
/// times near a second's end).
@Suite struct HandWrittenRecordJSONTests {
  static func reference(_ record: ArchiveRecord) throws -> Data {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    encoder.dateEncodingStrategy = .iso8601
    return try encoder.encode(record)
  }

  static func record(seed: UInt64) throws -> ArchiveRecord {
    var random = HandWrittenManifestJSONTests.Seeded(state: seed)
    let text = { (random: inout HandWrittenManifestJSONTests.Seeded) in HandWrittenManifestJSONTests.string(&random) }
    let integer = { (random: inout HandWrittenManifestJSONTests.Seeded) in
      HandWrittenManifestJSONTests.integer(&random)
    }
    let minimal = Data(
      """
      {"id":"a","file_name":"a","kind":"user","created_at":"2026-01-01T00:00:00Z","reason":"","is_encrypted":true,
      "byte_count":1,"content_byte_count":1,"entry_count":1,"user_ids":[],"sha256":"","verification":"full",
      "tool_version":"","host":""}
      """.utf8)
    var record = try #require(ArchiveRecord.decode(minimal))
    // Whole seconds, the edges, and fractions that round into the next second.
    func time(_ random: inout HandWrittenManifestJSONTests.Seeded) -> Date {
      let whole = [0, 253_402_300_798, Double(Int.random(in: 0...253_402_300_798, using: &random))]
        .randomElement(using: &random)!
      let fraction = [
        0, 0.25, 0.999, 0.9994, 0.9995, 0.9996, 0.999_999, 0.999_999_9, 0.0004, 1e-9,
        Double.random(in: 0..<1, using: &random),
      ]
      .randomElement(using: &random)!
      return Date(timeIntervalSince1970: whole + fraction)
    }
    func maybe<T>(
      _ random: inout HandWrittenManifestJSONTests.Seeded, _ make: (inout HandWrittenManifestJSONTests.Seeded) -> T
    )
      -> T?
    {
      Bool.random(using: &random) ? make(&random) : nil
    }
    func list<T>(
      _ random: inout HandWrittenManifestJSONTests.Seeded, _ make: (inout HandWrittenManifestJSONTests.Seeded) -> T
    )
      -> [T]
    {
      (0..<Int.random(in: 0...3, using: &random)).map { _ in make(&random) }
    }
    record.id = text(&random)
    record.fileName = text(&random)
    record.kind = Bool.random(using: &random) ? .full : .user
    record.createdAt = time(&random)
    record.userID = maybe(&random, integer)
    record.reason = text(&random)
    record.isEncrypted = Bool.random(using: &random)
    record.byteCount = integer(&random)
    record.contentByteCount = integer(&random)
    record.entryCount = Int(integer(&random))
    record.userIDs = list(&random, integer)
    record.sha256 = text(&random)
    record.verification = [.full, .ciphertext, .unknown].randomElement(using: &random)!
    record.verifiedAt = maybe(&random, time)
    record.toolVersion = text(&random)
    record.host = text(&random)
    record.sessionFingerprint = maybe(&random) { random in
      ArchiveRecord.SessionFingerprint(
        authKey: text(&random), dcID: Int(integer(&random)), serverAddress: maybe(&random, text))
    }
    record.recipients = maybe(&random) { list(&$0, text) }
    record.fernetKeys = maybe(&random) { list(&$0, text) }
    record.hasVerbatimEntries = maybe(&random) { Bool.random(using: &$0) }
    return record
  }

  @Test func equalsJSONEncoderOverManyRecords() throws {
    for seed in UInt64(0)..<3_000 {
      let record = try Self.record(seed: seed)
      let encoded = try record.encoded()
      let reference = try Self.reference(record)
      guard encoded == reference else {
        Issue.record(
          "seed \(seed): \(String(decoding: encoded, as: UTF8.self)) != \(String(decoding: reference, as: UTF8.self))")
        return
      }
    }
  }

  /// Times the hand-written form does not cover go through `JSONEncoder`, with the same bytes.
  @Test(arguments: [-1.0, -62_135_596_800, 253_402_300_799.9996, 1e12])
  func timesOutsideItsYearsStillEqualJSONEncoder(seconds: Double) throws {
    var record = try Self.record(seed: 1)
    record.createdAt = Date(timeIntervalSince1970: seconds)
    #expect(try record.encoded() == (try Self.reference(record)))
    record.createdAt = Date(timeIntervalSince1970: 1_795_594_663)
    record.verifiedAt = Date(timeIntervalSince1970: seconds)
    #expect(try record.encoded() == (try Self.reference(record)))
  }
}

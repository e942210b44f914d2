import Foundation
import Jobs
import Store
import Testing

/// The state file's reader (`HostState.decode`, one pass over the bytes) against `JSONDecoder`
/// with `HostState`'s own `Codable` keys: on a corpus of mutated and truncated files it never
/// accepts what `JSONDecoder` refuses, and what both accept reads the same.
struct HostStateReaderTests {
  static let now = Date(timeIntervalSince1970: 1_800_000_000.125)

  static var good: HostState {
    HostState(
      host: "srv-1", deploymentName: "host-a", toolVersion: "0.1.0", writtenAt: now,
      lastFullBackupAt: now.addingTimeInterval(-600), checkState: .warning, checkedAt: now.addingTimeInterval(-60),
      users: [
        HostState.User(
          id: 42, format: "telethon-v8", dc: 2, authKeyFingerprint: "3f9a0c12", sessionWrittenAt: now,
          sessionByteCount: 28672, hasSidecar: true, sidecarWrittenAt: now.addingTimeInterval(-5)),
        HostState.User(
          id: 43, format: nil, dc: nil, authKeyFingerprint: nil, sessionWrittenAt: nil, sessionByteCount: nil,
          hasSidecar: false),
        HostState.User(
          id: 7_000_000_001, format: "pyrogram-v3", dc: 5, authKeyFingerprint: "abcdef0123456789",
          sessionWrittenAt: now.addingTimeInterval(-86_400), sessionByteCount: 1),
      ])
  }

  /// What `JSONDecoder` makes of `data` with the same version rule; nil when it refuses it.
  static func reference(_ data: Data) -> HostState? {
    let decoder = JSONDecoder()
    decoder.dateDecodingStrategy = .custom { decoder in
      let container = try decoder.singleValueContainer()
      let text = try container.decode(String.self)
      if let date = try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)) {
        return date
      }
      return try Date(text, strategy: Date.ISO8601FormatStyle())
    }
    guard let state = try? decoder.decode(HostState.self, from: data), state.version == 1 else { return nil }
    return state
  }

  static func mine(_ data: Data) -> HostState? {
    try? HostState.decode(data, name: "r/host-a/tgsess-host.json", directoryName: "host-a")
  }

  /// Compares what both readers make of `data`: the reader accepts only what JSONDecoder
  /// accepts, and reads it the same (compared as the file's own text: times to the millisecond).
  /// - Returns: whether the reader accepted it.
  @discardableResult
  static func compare(_ data: Data, _ why: String) throws -> Bool {
    guard let read = Self.mine(data) else { return false }
    let expected = try #require(Self.reference(data), "the reader accepted what JSONDecoder refuses: \(why)")
    let (readText, expectedText) = (try read.encoded(), try expected.encoded())
    #expect(
      readText == expectedText,
      "\(why): \(String(decoding: readText, as: UTF8.self)) vs \(String(decoding: expectedText, as: UTF8.self)) from \(String(decoding: data, as: UTF8.self))"
    )
    return true
  }

  @Test func whatTheWriterWritesReadsBackTheSame() throws {
    let data = try Self.good.encoded()
    let state = try #require(Self.mine(data))
    #expect(try state.encoded() == data)
    #expect(state.users[0].hasSidecar == true && state.users[1].hasSidecar == false && state.users[2].hasSidecar == nil)
    #expect(try Self.compare(data, "the writer's own bytes"))
  }

  @Test func whitespaceEscapesUnknownKeysAndNullsReadAsJSONDecoderReadsThem() throws {
    let text = String(decoding: try Self.good.encoded(), as: UTF8.self)
    let variants: [(String, String)] = [
      (
        text.replacingOccurrences(of: ",", with: " ,\n\t ").replacingOccurrences(of: "\":", with: "\" :\r "),
        "whitespace"
      ),
      (text.replacingOccurrences(of: "\"srv-1\"", with: "\"srv\\u002d1 \\u00e9\\ud83d\\ude00\\\\\""), "escapes"),
      (text.replacingOccurrences(of: "\"host\":", with: "\"\\u0068ost\":"), "an escaped key"),
      (text.replacingOccurrences(of: "\"id\":43", with: "\"id\":43,\"extra\":{\"a\":[1,2,{\"b\":null}]}"), "unknown"),
      (text.replacingOccurrences(of: "\"id\":43", with: "\"id\":43,\"format\":null,\"dc\":null"), "nulls"),
      (text.replacingOccurrences(of: "\"check_state\":\"warning\",", with: ""), "no check state"),
      (text.replacingOccurrences(of: "\"srv-1\"", with: "\"sérvér-1\""), "UTF-8"),
      (text.replacingOccurrences(of: ".125Z", with: "Z"), "times without fractions"),
    ]
    for (variant, why) in variants {
      let reason = Result { try HostState.decode(Data(variant.utf8), name: "r", directoryName: "host-a") }
      #expect(try Self.compare(Data(variant.utf8), why), "refused: \(why): \(reason)")
    }
  }

  @Test func eachFaultIsNamedAsBefore() throws {
    let text = String(decoding: try Self.good.encoded(), as: UTF8.self)
    func reason(_ json: String) -> String? {
      do {
        _ = try HostState.decode(Data(json.utf8), name: "r/host-a/tgsess-host.json", directoryName: "host-a")
        return nil
      } catch let error as StoreError {
        guard case .invalid(_, let reason, _) = error else { return "\(error)" }
        return reason
      } catch { return "\(error)" }
    }
    let cases: [(String, String)] = [
      ("", "not JSON"),
      ("{\"version\": 1,}", "not JSON"),
      (text + "x", "not JSON"),
      ("\"text\"", "not a JSON object"),
      ("{\"version\": null}", "no version"),
      ("{\"version\": \"1\"}", "key 'version' must be Int"),
      (text.replacingOccurrences(of: "\"host\":\"srv-1\",", with: ""), "key 'host' is missing"),
      (text.replacingOccurrences(of: "\"host\":\"srv-1\"", with: "\"host\":null"), "key 'host' needs a String value"),
      (text.replacingOccurrences(of: "\"host\":\"srv-1\"", with: "\"host\":7"), "key 'host' must be String"),
      (
        text.replacingOccurrences(of: "\"check_state\":\"warning\"", with: "\"check_state\":\"fine\""),
        "bad value at 'check_state'"
      ),
      (
        text.replacingOccurrences(of: "\"written_at\":\"", with: "\"written_at\":\"yesterday "),
        "bad value at 'written_at'"
      ),
      (
        text.replacingOccurrences(of: "\"users\":[", with: "\"users\":{\"a\":[").replacingOccurrences(
          of: "}],\"version\"", with: "}]},\"version\""), "key 'users' must be Array<Any>"
      ),
      (text.replacingOccurrences(of: "\"dc\":5", with: "\"dc\":\"5\""), "key 'users.2.dc' must be Int"),
      (text.replacingOccurrences(of: "\"id\":43", with: "\"id\":99999999999999999999"), "bad value at 'users.1.id'"),
      (text.replacingOccurrences(of: "\"id\":43,", with: ""), "key 'users.1.id' is missing"),
      (text.replacingOccurrences(of: "\"sidecar\":true", with: "\"sidecar\":1"), "key 'users.0.sidecar' must be Bool"),
      (text.replacingOccurrences(of: "\"id\":43", with: "\"id\":43,\"id\":44"), "key 'users.1.id' is given twice"),
      (
        text.replacingOccurrences(of: "\"host\":\"srv-1\"", with: "\"host\":\"a\",\"host\":\"b\""),
        "key 'host' is given twice"
      ),
      (
        text.replacingOccurrences(of: "\"version\":1", with: "\"version\":2"),
        "format version 2, this tgsess reads 1 (upgrade tgsess on this machine)"
      ),
      // A newer format is named as such, even with a field this version cannot read.
      (
        text.replacingOccurrences(of: "\"version\":1", with: "\"version\":2").replacingOccurrences(
          of: "\"id\":43", with: "\"id\":\"x\""),
        "format version 2, this tgsess reads 1 (upgrade tgsess on this machine)"
      ),
      // A syntax fault wins over a type fault before it.
      (text.replacingOccurrences(of: "\"id\":43", with: "\"id\":\"x\"") + "}", "not JSON"),
      (String(repeating: "[", count: 600) + String(repeating: "]", count: 600), "not JSON"),
      ("{\"version\":1,\"host\":\"\u{1}\"}", "not JSON"),
      ("{\"version\":1,\"host\":\"\\ud800\"}", "not JSON"),
    ]
    for (json, expected) in cases {
      #expect(reason(json) == expected, "\(json.prefix(200))")
    }
    var invalid = Data(text.utf8)
    invalid[invalid.firstRange(of: Data("srv-1".utf8))!.lowerBound] = 0xC0
    #expect(
      (try? HostState.decode(invalid, name: "r/host-a/tgsess-host.json", directoryName: "host-a")) == nil,
      "bytes that are not UTF-8")
  }

  /// Every prefix of a good file, every single-byte change from a seeded generator, and every
  /// value swapped for one of another type: the reader never accepts what JSONDecoder refuses.
  @Test func aCorpusOfMutatedFilesIsNeverReadMoreLooselyThanByJSONDecoder() throws {
    let data = try Self.good.encoded()
    var accepted = 0
    for length in 0..<data.count {
      if try Self.compare(data.prefix(length), "the first \(length) bytes") { accepted += 1 }
    }
    #expect(accepted == 0, "a truncated file was read")
    var random = SystemRandomNumberGenerator()
    var seed = UInt64.random(in: 0...UInt64.max, using: &random)
    let originalSeed = seed
    func next() -> UInt64 {
      // SplitMix64: reproducible from the seed printed on failure.
      seed &+= 0x9E37_79B9_7F4A_7C15
      var z = seed
      z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
      z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
      return z ^ (z >> 31)
    }
    let alphabet = Array("{}[]\",:0123456789-+.eEtrufalsn \\u/x".utf8) + [0x00, 0x1F, 0x7F, 0xC3, 0xA9, 0xFF]
    accepted = 0
    for _ in 0..<3000 {
      var mutated = data
      let position = Int(next() % UInt64(data.count))
      mutated[position] = alphabet[Int(next() % UInt64(alphabet.count))]
      if try Self.compare(mutated, "byte \(position) changed (seed \(originalSeed))") { accepted += 1 }
    }
    #expect(accepted > 0, "no mutation was accepted: the comparison proved nothing")
    // Each value in turn replaced by one of another type.
    let text = String(decoding: data, as: UTF8.self)
    let values = try Regex(#":("[^"]*"|-?[0-9.]+|true|false|null)"#)
    let others = ["\"x\"", "1", "-1", "1.5", "1e3", "true", "null", "[]", "{}", "\"2026-12-06T20:40:00Z\""]
    for match in text.matches(of: values) {
      for other in others {
        var variant = text
        variant.replaceSubrange(match.range, with: ":" + other)
        try Self.compare(Data(variant.utf8), "\(text[match.range]) → \(other)")
      }
    }
  }
}

/// When watch writes a remote's heartbeat after a push: a golden table of the throttle's answers.
struct HeartbeatThrottleTests {
  @Test func aNewIdentityIsAlwaysDueAndTheRestAtMostOncePerInterval() {
    var throttle = HeartbeatThrottle(minimumInterval: 60)
    let one: [Int64: String] = [42: "aaaaaaaa"]
    #expect(throttle.isDue(remote: "usb", identities: one, now: 100), "nothing written yet")
    throttle.record(remote: "usb", identities: one, now: 100)
    let table: [(String, [Int64: String], TimeInterval, Bool, String)] = [
      ("usb", one, 101, false, "the same identities a second later"),
      ("usb", one, 159.9, false, "still within the interval"),
      ("usb", one, 160, true, "the interval has passed"),
      ("usb", [42: "bbbbbbbb"], 101, true, "a new key for the user"),
      ("usb", [42: "aaaaaaaa", 43: "cccccccc"], 101, true, "a new user"),
      ("usb", [:], 101, true, "a user gone (logged out, handed over)"),
      ("usb", [42: ""], 101, true, "the file could no longer be read"),
      ("s3", one, 101, true, "another remote has had none yet"),
    ]
    for (remote, identities, now, expected, why) in table {
      #expect(throttle.isDue(remote: remote, identities: identities, now: now) == expected, "\(why)")
    }
  }

  @Test func theIdentitiesAreTheUsersAndTheirFingerprints() {
    let state = HostState(
      host: "h", deploymentName: "d", toolVersion: "0", writtenAt: Date(), lastFullBackupAt: nil, checkState: nil,
      checkedAt: nil,
      users: [
        HostState.User(
          id: 1, format: "telethon-v8", dc: 2, authKeyFingerprint: "aaaaaaaa", sessionWrittenAt: Date(),
          sessionByteCount: 1),
        HostState.User(
          id: 2, format: nil, dc: nil, authKeyFingerprint: nil, sessionWrittenAt: nil, sessionByteCount: nil),
      ])
    #expect(HeartbeatThrottle.identities(of: state) == [1: "aaaaaaaa", 2: ""])
  }
}

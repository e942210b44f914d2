import Foundation
import Store
import TestSupport
import Testing

@Suite struct SessionStringTests {
  // MARK: Telethon strings from Telethon itself

  @Test(arguments: [
    ("2", "149.154.167.51", "443", 353),
    ("4", "2001:67c:4e8:f004::a", "443", 369),
    ("5", "91.108.56.130", "80", 353),
  ])
  func telethonStringFromTelethonRoundTrips(dc: String, address: String, port: String, length: Int) throws {
    let keyHex = SessionPeer.randomKeyHex()
    let peer = try SessionPeer.run("telethon-strings", [dc, address, port, keyHex])
    let string = try #require(peer.string("string"))
    #expect(string.count == length)

    let identity = try TelethonStringSession.decode(string)
    #expect(identity.dcID == Int(dc))
    #expect(identity.serverAddress == peer.string("address"))
    #expect(identity.port == Int(port))
    #expect(Hex.encode(identity.authKey.bytes) == keyHex)
    #expect(identity.authKey.keyID == UInt64(truncating: peer["key_id"] as? NSNumber ?? 0))
    #expect(try TelethonStringSession.encode(identity) == string)
    // Surrounding whitespace (a pasted string with its newline) is trimmed.
    #expect(try TelethonStringSession.decode("  \(string)\n") == identity)
  }

  @Test func zeroPaddedIPv6EncodesLikeTelethonAndMatchesCompressedForm() throws {
    let keyHex = SessionPeer.randomKeyHex()
    let padded = "2001:067c:04e8:f002:0000:0000:0000:000b"
    let peer = try SessionPeer.run("telethon-strings", ["2", padded, "443", keyHex])
    let key = try AuthKey(bytes: try #require(Hex.decode(keyHex)))
    let identity = SessionIdentity(dcID: 2, serverAddress: padded, port: 443, authKey: key)
    #expect(try TelethonStringSession.encode(identity) == peer.string("string"))
    let decoded = try TelethonStringSession.decode(try #require(peer.string("string")))
    #expect(decoded.serverAddress == "2001:67c:4e8:f002::b")
    #expect(decoded.serverAddress == peer.string("address"))
    #expect(decoded.matches(identity))
    #expect(decoded != identity)
  }

  @Test func swiftEncodedStringLoadsInTelethon() throws {
    let key = try AuthKey(bytes: (0..<256).map { UInt8(($0 * 7 + 3) % 256) })
    let identity = SessionIdentity(dcID: 3, serverAddress: "149.154.175.100", port: 443, authKey: key)
    let string = try TelethonStringSession.encode(identity)
    let loaded = try SessionPeer.run("telethon-string-load", [string])
    #expect(loaded.int("dc") == 3)
    #expect(loaded.string("address") == "149.154.175.100")
    #expect(loaded.int("port") == 443)
    #expect(loaded.string("key") == Hex.encode(key.bytes))
  }

  // MARK: Pyrogram strings from Pyrogram itself

  @Test(arguments: [
    ("2", "12345", "0", "777000", "0"),
    ("4", "611335", "0", "6000000000", "1"),
    ("1", "94575", "1", "123456", "0"),
  ])
  func pyrogramStringsFromPyrogramRoundTrip(dc: String, apiID: String, test: String, userID: String, bot: String)
    throws
  {
    let keyHex = SessionPeer.randomKeyHex()
    let peer = try SessionPeer.run("pyrogram-strings", [dc, apiID, test, userID, bot, keyHex])
    let loaded = try #require(peer.object("loaded"))
    var layouts: [PyrogramSessionPayload.Layout] = [.current, .legacy64]
    if Int64(userID)! < 1 << 32 { layouts.append(.legacy32) }
    #expect(Set(loaded.keys) == Set(layouts.map { String($0.rawValue) }))
    for layout in layouts {
      let name = String(layout.rawValue)
      let string = try #require(peer.string(name))
      let pyrogram = try #require(loaded.object(name))
      #expect(string.count == layout.rawValue)
      let payload = try PyrogramStringSession.decode(string)
      #expect(payload.layout == layout)
      #expect(payload.dcID == pyrogram.int("dc"))
      #expect(payload.isTestMode == pyrogram.bool("test_mode"))
      #expect(Hex.encode(payload.authKey.bytes) == pyrogram.string("key"))
      #expect(payload.userID == pyrogram.int64("user_id"))
      #expect(payload.isBot == pyrogram.bool("is_bot"))
      #expect(payload.apiID == (layout == .current ? Int(apiID) : nil))
      #expect(try PyrogramStringSession.encode(payload) == string)
    }
  }

  // MARK: Invalid strings, each with its precise reason

  @Test func invalidTelethonStringsNameTheirProblemWithoutLeakingTheString() throws {
    let keyHex = SessionPeer.randomKeyHex()
    let crafted = try SessionPeer.run("crafted-strings", [keyHex])
    let good = try #require(crafted.string("good"))
    #expect(try TelethonStringSession.decode(good).dcID == 2)
    let pyrogramString = try #require(crafted.string("pyrogram_good"))
    let standard = try #require(crafted.string("standard_alphabet"))

    var cases: [(String, String, SessionProblem)] = [
      ("dc 0", try #require(crafted.string("dc0")), .dcOutOfRange(0)),
      ("dc 7", try #require(crafted.string("dc7")), .dcOutOfRange(7)),
      ("port 0", try #require(crafted.string("port0")), .badPort(0)),
      ("all-zero key", try #require(crafted.string("zero_key")), .authKeyAllZero),
      ("padding stripped", try #require(crafted.string("no_padding")), .wrongLength(352)),
      ("non-canonical last character", try #require(crafted.string("noncanonical")), .badBase64),
      ("cut short", String(good.dropLast(10)), .wrongLength(343)),
      ("extra characters", good + "AAAA", .wrongLength(357)),
      ("invalid character", String(good.prefix(100)) + "*" + String(good.dropFirst(101)), .badBase64),
      ("version 2", "2" + good.dropFirst(), .unknownStringVersion("2")),
      ("Pyrogram string", pyrogramString, .unknownStringVersion("not a digit")),
      ("empty", "   ", .wrongLength(0)),
    ]
    if standard != good { cases.append(("standard alphabet", standard, .badBase64)) }
    for (label, string, expected) in cases {
      do {
        _ = try TelethonStringSession.decode(string, label: "user 42 string")
        Issue.record("\(label): accepted")
      } catch {
        #expect(sessionProblem(error) == expected, "\(label)")
        let message = (error as? LocalizedError)?.errorDescription ?? ""
        #expect(message.hasPrefix("user 42 string: "), "\(label)")
        #expect(!message.contains(String(string.dropFirst().prefix(16))), "\(label) leaks the string")
        #expect(!message.contains(keyHex.prefix(16)), "\(label) leaks the key")
      }
    }
  }

  @Test func invalidPyrogramStringsNameTheirProblem() throws {
    let crafted = try SessionPeer.run("crafted-strings", [SessionPeer.randomKeyHex()])
    let good = try #require(crafted.string("pyrogram_good"))
    #expect(try PyrogramStringSession.decode(good).apiID == 12345)
    let cases: [(String, String, SessionProblem)] = [
      ("dc 0", try #require(crafted.string("pyrogram_dc0")), .dcOutOfRange(0)),
      ("dc 9", try #require(crafted.string("pyrogram_dc9")), .dcOutOfRange(9)),
      ("test dc 4", try #require(crafted.string("pyrogram_test_dc4")), .testModeDCOutOfRange(4)),
      ("bool 2", try #require(crafted.string("pyrogram_bad_bool")), .invalidField("test_mode byte is 2, not 0 or 1")),
      ("all-zero key", try #require(crafted.string("pyrogram_zero_key")), .authKeyAllZero),
      ("padded", good + "==", .wrongLength(364)),
      ("Telethon string", try #require(crafted.string("good")), .wrongLength(353)),
      ("invalid character", "!" + good.dropFirst(), .badBase64),
      ("standard alphabet", "+" + good.dropFirst(), .badBase64),
    ]
    for (label, string, expected) in cases {
      #expect(problem { _ = try PyrogramStringSession.decode(string) } == expected, "\(label)")
    }
  }

  @Test func encodersRefuseWhatTheFormatsCannotHold() throws {
    let key = try AuthKey(bytes: [UInt8](repeating: 9, count: 256))
    let zero = try AuthKey(bytes: [UInt8](repeating: 0, count: 256))
    func telethon(_ identity: SessionIdentity) -> SessionProblem? {
      problem { _ = try TelethonStringSession.encode(identity) }
    }
    #expect(telethon(SessionIdentity(dcID: 2, serverAddress: nil, port: 443, authKey: key)) == .serverAddressMissing)
    #expect(
      telethon(SessionIdentity(dcID: 2, serverAddress: "dc2.example", port: 443, authKey: key))
        == .badAddress("dc2.example"))
    #expect(telethon(SessionIdentity(dcID: 2, serverAddress: "1.2.3.4", port: nil, authKey: key)) == .portMissing)
    #expect(telethon(SessionIdentity(dcID: 2, serverAddress: "1.2.3.4", port: 70000, authKey: key)) == .badPort(70000))
    #expect(telethon(SessionIdentity(dcID: 6, serverAddress: "1.2.3.4", port: 443, authKey: key)) == .dcOutOfRange(6))
    #expect(telethon(SessionIdentity(dcID: 2, serverAddress: "1.2.3.4", port: 443, authKey: zero)) == .authKeyAllZero)

    var payload = PyrogramSessionPayload(
      dcID: 2, apiID: nil, isTestMode: false, authKey: key, userID: 1 << 40, isBot: false, layout: .current)
    #expect(
      problem { _ = try PyrogramStringSession.encode(payload) }
        == .invalidField("api_id is missing (needed by the 362 layout)"))
    payload.layout = .legacy32
    #expect(
      problem { _ = try PyrogramStringSession.encode(payload) }
        == .invalidField("user_id does not fit the 351-character layout; use the 356 or 362 layout"))
    payload.layout = .legacy64
    #expect(try PyrogramStringSession.encode(payload).count == 356)

    #expect(problem { _ = try AuthKey(bytes: [UInt8](repeating: 1, count: 255)) } == .authKeyWrongLength(255))
    #expect(problem { _ = try AuthKey(bytes: [UInt8]()) } == .authKeyMissing)
  }

  // MARK: Types

  @Test func authKeyNeverPrints() throws {
    let bytes = (0..<256).map { UInt8($0) }
    let key = try AuthKey(bytes: bytes)
    let hex = Hex.encode(bytes)
    #expect(key.fingerprint == String(Digest.sha256Hex(bytes).prefix(8)))
    var dumped = ""
    dump(key, to: &dumped)
    let identity = SessionIdentity(dcID: 2, serverAddress: "1.2.3.4", port: 443, authKey: key)
    var dumpedIdentity = ""
    dump(identity, to: &dumpedIdentity)
    let payload = PyrogramSessionPayload(dcID: 2, apiID: 1, isTestMode: false, authKey: key, userID: 5, isBot: false)
    for text in [
      key.description, key.debugDescription, String(describing: key), String(reflecting: key), "\(key)", dumped,
      identity.description, String(reflecting: identity), dumpedIdentity, "\(payload)", String(reflecting: payload),
    ] {
      #expect(!text.contains(hex.prefix(12)), "\(text)")
      #expect(!text.contains("0, 1, 2, 3"), "\(text)")
    }
    #expect(key.description.contains(key.fingerprint))
    #expect(!key.isAllZero)
    #expect(try AuthKey(bytes: [UInt8](repeating: 0, count: 256)).isAllZero)
  }

  @Test func identityMatchingNormalisesAddresses() throws {
    let key = try AuthKey(bytes: [UInt8](repeating: 1, count: 256))
    let other = try AuthKey(bytes: [UInt8](repeating: 2, count: 256))
    let base = SessionIdentity(dcID: 2, serverAddress: "2001:67c:4e8:f002::b", port: 443, authKey: key)
    #expect(
      base.matches(
        SessionIdentity(dcID: 2, serverAddress: "2001:067C:04e8:f002:0000:0000:0000:000b", port: 443, authKey: key)))
    #expect(!base.matches(SessionIdentity(dcID: 2, serverAddress: "2001:67c:4e8:f002::a", port: 443, authKey: key)))
    #expect(!base.matches(SessionIdentity(dcID: 4, serverAddress: "2001:67c:4e8:f002::b", port: 443, authKey: key)))
    #expect(!base.matches(SessionIdentity(dcID: 2, serverAddress: "2001:67c:4e8:f002::b", port: 80, authKey: key)))
    #expect(!base.matches(SessionIdentity(dcID: 2, serverAddress: "2001:67c:4e8:f002::b", port: 443, authKey: other)))
    #expect(!base.matches(SessionIdentity(dcID: 2, serverAddress: nil, port: 443, authKey: key)))
    let v4 = SessionIdentity(dcID: 2, serverAddress: "149.154.167.51", port: 443, authKey: key)
    #expect(v4.matches(SessionIdentity(dcID: 2, serverAddress: " 149.154.167.51 ", port: 443, authKey: key)))
    #expect(SessionIdentity.normalizedAddress("2001:0DB8::0001") == "2001:db8::1")
  }

  @Test func formatShortNamesAreStableAndCodable() throws {
    let formats: [SessionFormat] = [
      .telethon(version: 7), .telethon(version: 8), .pyrogram(version: 3, variant: .pyrogram),
      .pyrogram(version: 7, variant: .kurigram), .pyrogram(version: 4, variant: .pyrofork),
    ]
    #expect(formats.map(\.shortName) == ["telethon-v7", "telethon-v8", "pyrogram-v3", "kurigram-v7", "pyrofork-v4"])
    let json = try JSONEncoder().encode(formats)
    #expect(
      String(decoding: json, as: UTF8.self)
        == #"["telethon-v7","telethon-v8","pyrogram-v3","kurigram-v7","pyrofork-v4"]"#)
    #expect(try JSONDecoder().decode([SessionFormat].self, from: json) == formats)
    #expect(SessionFormat(shortName: "telegram-v1") == nil)
    #expect(SessionFormat(shortName: "telethon-7") == nil)
    #expect(throws: DecodingError.self) { try JSONDecoder().decode([SessionFormat].self, from: Data(#"["x"]"#.utf8)) }
  }
}

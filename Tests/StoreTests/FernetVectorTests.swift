import Foundation
import Store
import Testing

/// One entry of the fernet/spec JSON files.
struct FernetVector: Decodable, Sendable, CustomTestStringConvertible {
  var desc: String?
  var token: String
  var now: String
  var iv: [UInt8]?
  var src: String?
  var secret: String
  var ttl_sec: Double?

  var testDescription: String { desc ?? token.prefix(12) + "..." }

  var date: Date {
    guard let date = ISO8601DateFormatter().date(from: now) else { fatalError("bad date in vector: \(now)") }
    return date
  }

  static func load(_ name: String) -> [FernetVector] {
    let path = CryptoFixtures.path("fernet/\(name)")
    guard let data = FileManager.default.contents(atPath: path),
      let vectors = try? JSONDecoder().decode([FernetVector].self, from: data)
    else { fatalError("cannot load \(path)") }
    return vectors
  }
}

@Suite struct FernetVectorTests {
  @Test func vectorFilesHaveTheExpectedEntries() {
    #expect(FernetVector.load("generate.json").count == 1)
    #expect(FernetVector.load("verify.json").count == 1)
    #expect(FernetVector.load("invalid.json").count == 8)
  }

  @Test(arguments: FernetVector.load("generate.json"))
  func generateProducesTheExactToken(vector: FernetVector) throws {
    let fernet = try Fernet(keys: [FernetKey(base64: vector.secret)])
    let token = try fernet.encrypt(Array(vector.src!.utf8), now: vector.date, iv: vector.iv)
    #expect(token == vector.token)
  }

  @Test(arguments: FernetVector.load("verify.json"))
  func verifyDecryptsAtTheGivenTime(vector: FernetVector) throws {
    let fernet = try Fernet(keys: [FernetKey(base64: vector.secret)])
    let plaintext = try fernet.decrypt(vector.token, ttl: vector.ttl_sec, now: vector.date)
    #expect(plaintext == Array(vector.src!.utf8))
  }

  @Test(arguments: FernetVector.load("invalid.json"))
  func invalidTokensFailWithTheOneError(vector: FernetVector) throws {
    let fernet = try Fernet(keys: [FernetKey(base64: vector.secret)])
    let error = #expect(throws: FernetError.self) {
      try fernet.decrypt(vector.token, ttl: vector.ttl_sec, now: vector.date)
    }
    #expect(error == .invalidToken)
    let message = error?.storeError(object: "user 42").localizedDescription ?? ""
    #expect(message.hasPrefix("user 42: "))
    #expect(!message.contains(vector.token.prefix(20)))
    #expect(!message.contains(vector.secret))
  }

  /// pyca semantics: without a TTL the timestamp is not checked at all.
  @Test func timestampIsOnlyCheckedWithATTL() throws {
    let vectors = FernetVector.load("invalid.json").filter {
      $0.desc == "expired TTL" || $0.desc == "far-future TS (unacceptable clock skew)"
    }
    #expect(vectors.count == 2)
    for vector in vectors {
      let fernet = try Fernet(keys: [FernetKey(base64: vector.secret)])
      // Python's Fernet(secret).decrypt(token) gives b"" for both.
      #expect(try fernet.decrypt(vector.token, now: vector.date) == [])
    }
  }

  @Test func ttlBoundariesFollowPython() throws {
    let fernet = try Fernet(keys: [FernetKey.generate()])
    let stamp = Date(timeIntervalSince1970: 1_700_000_000)
    let token = try fernet.encrypt(Array("x".utf8), now: stamp)
    // Expired when timestamp + ttl < now.
    #expect(throws: Never.self) { try fernet.decrypt(token, ttl: 100, now: stamp.addingTimeInterval(100)) }
    #expect(throws: FernetError.invalidToken) {
      try fernet.decrypt(token, ttl: 100, now: stamp.addingTimeInterval(101))
    }
    // From the future when now + 60 < timestamp.
    #expect(throws: Never.self) { try fernet.decrypt(token, ttl: 100, now: stamp.addingTimeInterval(-60)) }
    #expect(throws: FernetError.invalidToken) {
      try fernet.decrypt(token, ttl: 100, now: stamp.addingTimeInterval(-61))
    }
  }

  @Test func roundTripsEveryLengthAroundABlock() throws {
    let fernet = try Fernet(keys: [FernetKey.generate()])
    for count in [0, 1, 15, 16, 17, 31, 32, 33, 1000] {
      let plaintext = try SecureRandom.bytes(count)
      let token = try fernet.encrypt(plaintext)
      #expect(Fernet.looksLikeToken(token))
      #expect(try fernet.decrypt(token) == plaintext)
    }
  }

  @Test func tamperedTokensAreRejected() throws {
    let fernet = try Fernet(keys: [FernetKey.generate()])
    let token = try fernet.encrypt(Array("session string".utf8))
    var chars = Array(token)
    for index in [0, 5, 20, 40, chars.count - 6] {
      let original = chars[index]
      chars[index] = original == "A" ? "B" : "A"
      #expect(throws: FernetError.invalidToken) { try fernet.decrypt(String(chars)) }
      chars[index] = original
    }
    #expect(throws: FernetError.invalidToken) { try fernet.decrypt(String(token.dropLast(4))) }
    #expect(throws: FernetError.invalidToken) { try fernet.decrypt("") }
    #expect(throws: FernetError.invalidToken) { try fernet.decrypt(token + "AAAA") }
    let otherKey = try Fernet(keys: [FernetKey.generate()])
    #expect(throws: FernetError.invalidToken) { try otherKey.decrypt(token) }
  }

  // MARK: Keys

  @Test func keysParseLikePython() throws {
    let text = "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4="
    let key = try FernetKey(base64: text)
    #expect(key.base64 == text)
    #expect(try FernetKey(base64: text + "\n").base64 == text)
    #expect(key.fingerprint == String(Digest.sha256Hex(Base64URL.decode(text)).prefix(8)))
    #expect(key.fingerprint.count == 8)

    let generated = try FernetKey.generate()
    #expect(generated.base64.count == 44)
    #expect(try FernetKey(base64: generated.base64).base64 == generated.base64)
    #expect(try FernetKey.generate().fingerprint != generated.fingerprint)
  }

  @Test func badKeysAreRejectedWithoutEchoingThem() {
    let bad = [
      "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4",  // padding missing
      "cw/0x689RpI+jtRR7oE8h/eQsKImvJapLeSbXpwF4e4=",  // standard alphabet
      "c2hvcnQ=",  // 5 bytes
      String(repeating: "A", count: 43) + "==",  // 45 characters
      String(repeating: "A", count: 42) + "==",  // 44 characters, 31 bytes
      "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=",
    ]
    for text in bad {
      let error = #expect(throws: FernetError.self) { try FernetKey(base64: text) }
      guard case .invalidKey(let reason)? = error else {
        Issue.record("expected invalidKey for a bad key, got \(String(describing: error))")
        continue
      }
      #expect(!reason.contains(text))
      let message = error!.storeError(object: "config.toml fernet_keys[0]").localizedDescription
      #expect(message.contains("config.toml fernet_keys[0]"))
      #expect(message.contains("44 characters"))
      #expect(!message.contains(text))
    }
  }

  @Test func keysNeverPrintTheirSecret() throws {
    let key = try FernetKey.generate()
    let secret = key.base64
    var dumped = ""
    dump(key, to: &dumped)
    for text in ["\(key)", String(describing: key), String(reflecting: key), dumped, "\([key])"] {
      #expect(!text.contains(secret))
      #expect(!text.contains(String(secret.prefix(12))))
      #expect(text.contains(key.fingerprint))
    }
  }

  @Test func emptyKeyListIsRefused() {
    #expect(throws: FernetError.noKeys) { try Fernet(keys: []) }
    #expect(FernetError.noKeys.storeError(object: "config.toml").localizedDescription.contains("config.toml"))
  }

  // MARK: MultiFernet

  @Test func multiFernetEncryptsWithTheFirstKeyAndDecryptsWithAny() throws {
    let newKey = try FernetKey.generate()
    let oldKey = try FernetKey.generate()
    let old = try Fernet(keys: [oldKey])
    let both = try Fernet(keys: [newKey, oldKey])
    let plaintext = Array("session".utf8)

    let oldToken = try old.encrypt(plaintext)
    #expect(try both.decryptWithKeyIndex(oldToken) == (plaintext, 1))
    let newToken = try both.encrypt(plaintext)
    #expect(try both.decryptWithKeyIndex(newToken) == (plaintext, 0))
    #expect(throws: FernetError.invalidToken) { try old.decrypt(newToken) }
  }

  @Test func rotateKeepsTheTimestampAndUsesAFreshIV() throws {
    let newKey = try FernetKey.generate()
    let oldKey = try FernetKey.generate()
    let stamp = Date(timeIntervalSince1970: 1_600_000_000)
    let oldToken = try Fernet(keys: [oldKey]).encrypt(Array("payload".utf8), now: stamp)
    let both = try Fernet(keys: [newKey, oldKey])

    let rotated = try both.rotate(oldToken)
    #expect(try both.decryptWithKeyIndex(rotated) == (Array("payload".utf8), 0))
    #expect(try Fernet(keys: [newKey]).decrypt(rotated) == Array("payload".utf8))
    #expect(Base64URL.decode(rotated)[1..<9] == Base64URL.decode(oldToken)[1..<9])
    // The token was issued long ago: rotate ignores TTLs, and the TTL still applies afterwards.
    #expect(throws: FernetError.invalidToken) { try both.decrypt(rotated, ttl: 60) }
    #expect(try both.rotate(oldToken) != rotated)
    #expect(throws: FernetError.invalidToken) { try Fernet(keys: [FernetKey.generate()]).rotate(oldToken) }
  }

  // MARK: Token detection

  @Test func looksLikeTokenTellsTokensFromPlaintext() throws {
    let fernet = try Fernet(keys: [FernetKey.generate()])
    let token = try fernet.encrypt(Array("x".utf8))
    #expect(Fernet.looksLikeToken(token))
    #expect(Fernet.looksLikeToken(FernetVector.load("generate.json")[0].token))
    let telethonLike = "1" + Base64URL.encode(try SecureRandom.bytes(263))
    for text in [
      "", "hello", telethonLike, String(token.dropLast(4)), "h" + token.dropFirst(), token + "\n",
      Base64URL.encode([0x81] + (try SecureRandom.bytes(88))),
    ] {
      #expect(!Fernet.looksLikeToken(text), "took \(text.prefix(10))... for a token")
    }
  }
}

/// Foundation-based URL-safe base64, independent of the code under test.
enum Base64URL {
  static func decode(_ text: String) -> [UInt8] {
    let standard = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
    guard let data = Data(base64Encoded: standard) else { fatalError("bad base64 in test") }
    return [UInt8](data)
  }

  static func encode(_ bytes: [UInt8]) -> String {
    Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
  }
}

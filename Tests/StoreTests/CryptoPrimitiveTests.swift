import Foundation
import Store
import Testing

/// Bytes from hex written in a test.
func hexBytes(_ text: String) -> [UInt8] {
  guard let bytes = Hex.decode(text.replacingOccurrences(of: " ", with: "")) else {
    fatalError("bad hex in test: \(text)")
  }
  return bytes
}

/// Key material for a primitive, from bytes written in a test.
func secret(_ bytes: [UInt8]) -> SecretBytes { SecretBytes(copying: bytes) }

/// The copied test-vector folders in the test bundle.
enum CryptoFixtures {
  /// `Fixtures/<relative>` inside the StoreTests resource bundle.
  static func path(_ relative: String) -> String {
    guard let root = Bundle.module.url(forResource: "Fixtures", withExtension: nil) else {
      fatalError("Fixtures folder missing from the StoreTests bundle")
    }
    return root.appendingPathComponent(relative).path
  }
}

@Suite struct CryptoPrimitiveTests {
  // MARK: HMAC-SHA-256, RFC 4231 §4

  @Test func hmacSHA256MatchesRFC4231() throws {
    let cases: [(key: [UInt8], data: [UInt8], mac: String)] = [
      (
        [UInt8](repeating: 0x0b, count: 20), Array("Hi There".utf8),
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
      ),
      (
        Array("Jefe".utf8), Array("what do ya want for nothing?".utf8),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
      ),
      (
        [UInt8](repeating: 0xaa, count: 20), [UInt8](repeating: 0xdd, count: 50),
        "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"
      ),
      (
        Array(1...25), [UInt8](repeating: 0xcd, count: 50),
        "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"
      ),
      (
        [UInt8](repeating: 0xaa, count: 131), Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
      ),
      (
        [UInt8](repeating: 0xaa, count: 131),
        Array(
          ("This is a test using a larger than block-size key and a larger than block-size data. "
            + "The key needs to be hashed before being used by the HMAC algorithm.").utf8),
        "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"
      ),
    ]
    for testCase in cases {
      #expect(Hex.encode(try HMACSHA256.authenticate(key: secret(testCase.key), data: testCase.data)) == testCase.mac)
    }
    // Test case 5 checks a truncated tag: the first 128 bits.
    let truncated = try HMACSHA256.authenticate(
      key: secret([UInt8](repeating: 0x0c, count: 20)), data: Array("Test With Truncation".utf8))
    #expect(Hex.encode(truncated.prefix(16)) == "a3b6167473100ee06e0c796c2955552b")
  }

  @Test func hmacSHA256AcceptsEmptyKeyAndData() throws {
    // Python: hmac.new(b"", b"", hashlib.sha256).hexdigest()
    #expect(
      Hex.encode(try HMACSHA256.authenticate(key: secret([]), data: [UInt8]()))
        == "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad")
  }

  // MARK: HKDF-SHA-256, RFC 5869 appendix A

  @Test func hkdfSHA256MatchesRFC5869() throws {
    let case1 = try HKDFSHA256.derive(
      ikm: secret([UInt8](repeating: 0x0b, count: 22)), salt: Array(0x00...0x0c), info: Array(0xf0...0xf9), count: 42
    ).unprotectedCopy()
    #expect(
      Hex.encode(case1)
        == "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")
    let case2 = try HKDFSHA256.derive(
      ikm: secret(Array(0x00...0x4f)), salt: Array(0x60...0xaf), info: Array(0xb0...0xff), count: 82
    ).unprotectedCopy()
    #expect(
      Hex.encode(case2)
        == "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87"
    )
    // Case 3: empty salt and info — age's header key takes this path.
    let case3 = try HKDFSHA256.derive(ikm: secret([UInt8](repeating: 0x0b, count: 22)), salt: [], info: [], count: 42)
      .unprotectedCopy()
    #expect(
      Hex.encode(case3)
        == "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8")
    // An empty salt means HashLen zero bytes.
    let zeroSalt = try HKDFSHA256.derive(
      ikm: secret([UInt8](repeating: 0x0b, count: 22)), salt: [UInt8](repeating: 0, count: 32), info: [], count: 42
    ).unprotectedCopy()
    #expect(zeroSalt == case3)
  }

  // MARK: X25519, RFC 7748

  @Test func x25519MatchesRFC7748() throws {
    let alicePrivate = secret(hexBytes("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"))
    let bobPrivate = secret(hexBytes("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"))
    let alicePublic = try X25519.publicKey(privateKey: alicePrivate)
    let bobPublic = try X25519.publicKey(privateKey: bobPrivate)
    #expect(Hex.encode(alicePublic) == "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    #expect(Hex.encode(bobPublic) == "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    let shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
    #expect(
      try X25519.sharedSecret(privateKey: alicePrivate, publicKey: bobPublic).map { Hex.encode($0.unprotectedCopy()) }
        == shared)
    #expect(
      try X25519.sharedSecret(privateKey: bobPrivate, publicKey: alicePublic).map { Hex.encode($0.unprotectedCopy()) }
        == shared)
    // §5.2, first scalar-multiplication vector.
    let product = try X25519.sharedSecret(
      privateKey: secret(hexBytes("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4")),
      publicKey: hexBytes("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c"))
    #expect(
      product.map { Hex.encode($0.unprotectedCopy()) }
        == "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552")
  }

  @Test func x25519RefusesLowOrderPoints() throws {
    let privateKey = try X25519.generatePrivateKey()
    let lowOrderPoints = [
      [UInt8](repeating: 0, count: 32),
      [1] + [UInt8](repeating: 0, count: 31),
      hexBytes("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    ]
    for point in lowOrderPoints {
      #expect(try X25519.sharedSecret(privateKey: privateKey, publicKey: point) == nil)
    }
  }

  @Test func x25519GeneratedKeysAgree() throws {
    let a = try X25519.generatePrivateKey()
    let b = try X25519.generatePrivateKey()
    #expect(!a.equals(b))
    let ab = try X25519.sharedSecret(privateKey: a, publicKey: X25519.publicKey(privateKey: b))
    let ba = try X25519.sharedSecret(privateKey: b, publicKey: X25519.publicKey(privateKey: a))
    #expect(ab != nil && ba != nil && ab!.equals(ba!))
  }

  // MARK: ChaCha20-Poly1305, RFC 8439 §2.8.2

  @Test func chaCha20Poly1305MatchesRFC8439() throws {
    let key = secret([UInt8](0x80...0x9f))
    let nonce = hexBytes("070000004041424344454647")
    let aad = hexBytes("50515253c0c1c2c3c4c5c6c7")
    let plaintext = Array(
      ("Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, "
        + "sunscreen would be it.").utf8)
    let expected = hexBytes(
      "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b"
        + "1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7"
        + "bc3ff4def08e4b7a9de576d26586cec64b6116" + "1ae10b594f09e26a7e902ecbd0600691")
    let sealed = try ChaCha20Poly1305.seal(key: key, nonce: nonce, plaintext: secret(plaintext), aad: aad)
    #expect(sealed == expected)
    #expect(
      try ChaCha20Poly1305.open(key: key, nonce: nonce, sealed: sealed, aad: aad)?.unprotectedCopy() == plaintext)

    var badCiphertext = sealed
    badCiphertext[0] ^= 1
    #expect(try ChaCha20Poly1305.open(key: key, nonce: nonce, sealed: badCiphertext, aad: aad) == nil)
    var badTag = sealed
    badTag[badTag.count - 1] ^= 0x80
    #expect(try ChaCha20Poly1305.open(key: key, nonce: nonce, sealed: badTag, aad: aad) == nil)
    #expect(try ChaCha20Poly1305.open(key: key, nonce: nonce, sealed: sealed, aad: []) == nil)
    #expect(try ChaCha20Poly1305.open(key: key, nonce: nonce, sealed: Array(sealed.prefix(15)), aad: aad) == nil)
  }

  @Test func chaCha20Poly1305EmptyPlaintextIsJustATag() throws {
    let key = try SecretBytes.random(32)
    let nonce = [UInt8](repeating: 0, count: 12)
    let sealed = try ChaCha20Poly1305.seal(key: key, nonce: nonce, plaintext: secret([]))
    #expect(sealed.count == 16)
    #expect(try ChaCha20Poly1305.open(key: key, nonce: nonce, sealed: sealed)?.unprotectedCopy() == [])
  }

  @Test func chaCha20Poly1305ContextReuseMatchesFreshContexts() throws {
    let key = try SecretBytes.random(32)
    let context = try ChaCha20Poly1305Context(key: key, isSealing: true)
    let opener = try ChaCha20Poly1305Context(key: key, isSealing: false)
    for round in 0..<4 {
      let nonce = [UInt8](repeating: 0, count: 11) + [UInt8(round)]
      let plaintext = try SecureRandom.bytes(1000 * round)
      var sealed = [UInt8](repeating: 0, count: plaintext.count + 16)
      let count = try nonce.withUnsafeBytes { nonceBytes in
        try plaintext.withUnsafeBytes { input in
          try sealed.withUnsafeMutableBytes { try context.seal(nonce: nonceBytes, plaintext: input, into: $0) }
        }
      }
      #expect(count == plaintext.count + 16)
      #expect(sealed == (try ChaCha20Poly1305.seal(key: key, nonce: nonce, plaintext: secret(plaintext))))
      // A failed open (wrong nonce) must not disturb the next one.
      var out = [UInt8](repeating: 0xee, count: max(plaintext.count, 1))
      let wrongNonce = [UInt8](repeating: 0xff, count: 12)
      let failed = try wrongNonce.withUnsafeBytes { nonceBytes in
        try sealed.withUnsafeBytes { input in
          try out.withUnsafeMutableBytes { try opener.open(nonce: nonceBytes, sealed: input, into: $0) }
        }
      }
      #expect(failed == nil)
      #expect(out.allSatisfy { $0 == 0 || plaintext.isEmpty }, "failed open left bytes behind")
      let opened = try nonce.withUnsafeBytes { nonceBytes in
        try sealed.withUnsafeBytes { input in
          try out.withUnsafeMutableBytes { try opener.open(nonce: nonceBytes, sealed: input, into: $0) }
        }
      }
      #expect(opened == plaintext.count)
      #expect(Array(out.prefix(plaintext.count)) == plaintext)
    }
  }

  // MARK: AES-128-CBC, NIST SP 800-38A F.2.1

  @Test func aes128CBCMatchesSP80038A() throws {
    let key = secret(hexBytes("2b7e151628aed2a6abf7158809cf4f3c"))
    let iv = hexBytes("000102030405060708090a0b0c0d0e0f")
    let plaintext = hexBytes(
      "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e5130c81c46a35ce411e5fbc1191a0a52ef"
        + "f69f2445df4f9b17ad2b417be66c3710")
    let expected = hexBytes(
      "7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b273bed6b8e3c1743b7116e69e22229516"
        + "3ff1caa1681fac09120eca307586e1a7")
    let ciphertext = try AES128CBC.encrypt(key: key, iv: iv, plaintext: plaintext)
    // PKCS#7 adds a whole block of padding after 64 bytes.
    #expect(ciphertext.count == 80)
    #expect(Array(ciphertext.prefix(64)) == expected)
    #expect(try AES128CBC.decrypt(key: key, iv: iv, ciphertext: ciphertext) == plaintext)
  }

  @Test func aes128CBCRejectsBadPaddingAndLengths() throws {
    let key = try SecretBytes.random(16)
    let iv = try SecureRandom.bytes(16)
    let ciphertext = try AES128CBC.encrypt(key: key, iv: iv, plaintext: Array("hello".utf8))
    #expect(ciphertext.count == 16)
    #expect(try AES128CBC.decrypt(key: key, iv: iv, ciphertext: []) == nil)
    #expect(try AES128CBC.decrypt(key: key, iv: iv, ciphertext: Array(ciphertext.prefix(15))) == nil)
    #expect(try AES128CBC.encrypt(key: key, iv: iv, plaintext: []).count == 16)
    // A wrong key almost always breaks the padding; look for a key that does.
    var rejected = 0
    for _ in 0..<20 {
      if try AES128CBC.decrypt(key: SecretBytes.random(16), iv: iv, ciphertext: ciphertext) == nil { rejected += 1 }
    }
    #expect(rejected > 0)
  }

  // MARK: SecretBytes

  @Test func secretBytesHoldsACopyAndPrintsNoBytes() throws {
    var source: [UInt8] = [1, 2, 3, 4]
    let wiped = SecretBytes(wiping: &source)
    #expect(source.isEmpty, "the source array is emptied after its bytes were wiped")
    #expect(wiped.unprotectedCopy() == [1, 2, 3, 4])
    let copied = SecretBytes(copying: [1, 2, 3, 4])
    #expect(copied.equals(wiped) && !copied.equals(secret([1, 2, 3, 5])) && !copied.equals(secret([1, 2, 3])))
    #expect(copied.slice(1..<3).unprotectedCopy() == [2, 3])
    #expect("\(copied)" == "SecretBytes(4 bytes)" && String(reflecting: copied) == "SecretBytes(4 bytes)")
    // Empty secrets still hand libcrypto a non-nil pointer.
    #expect(secret([]).withUnsafeBytes { $0.baseAddress != nil && $0.count == 0 })
    let random = try SecretBytes.random(32)
    let other = try SecretBytes.random(32)
    #expect(random.count == 32 && !random.equals(other))
  }

  /// A failed fill wipes what it wrote: the buffer is never handed out half-filled.
  @Test func secretBytesFillThatThrowsLeavesNothing() {
    struct Stop: Error {}
    #expect(throws: Stop.self) {
      _ = try SecretBytes(count: 8) { buffer in
        buffer.copyBytes(from: [9, 9, 9, 9])
        throw Stop()
      }
    }
  }

  // MARK: Small helpers

  @Test func constantTimeEquality() {
    #expect(ConstantTime.equals([], []))
    #expect(ConstantTime.equals([1, 2, 3], [1, 2, 3]))
    #expect(!ConstantTime.equals([1, 2, 3], [1, 2, 4]))
    #expect(!ConstantTime.equals([1, 2, 3], [1, 2]))
  }

  @Test func secureRandomBytes() throws {
    #expect(try SecureRandom.bytes(0) == [])
    let a = try SecureRandom.bytes(32)
    let b = try SecureRandom.bytes(32)
    #expect(a.count == 32 && b.count == 32 && a != b)
    #expect(try SecureRandom.privateBytes(17).count == 17)
  }

  // MARK: Base64

  @Test func base64AgeDialectIsUnpaddedAndCanonical() {
    let rfc4648: [(String, String)] = [
      ("", ""), ("f", "Zg"), ("fo", "Zm8"), ("foo", "Zm9v"), ("foob", "Zm9vYg"), ("fooba", "Zm9vYmE"),
      ("foobar", "Zm9vYmFy"),
    ]
    for (plain, encoded) in rfc4648 {
      #expect(Base64.encodeUnpadded(Array(plain.utf8)) == encoded)
      #expect(Base64.decodeUnpaddedCanonical(encoded) == Array(plain.utf8))
    }
    #expect(Base64.encodeUnpadded([0xfb, 0xff]) == "+/8")
    #expect(Base64.decodeUnpaddedCanonical("+/8") == [0xfb, 0xff])
    // Non-canonical (unused bits set), padded, 4k+1 long, or another alphabet: all rejected.
    for bad in ["Zh", "Zm9", "Zg==", "Zm8=", "Z", "Zm9vY", "-_8", "Zm9v\n", "Zm 9"] {
      #expect(Base64.decodeUnpaddedCanonical(bad) == nil, "accepted \(bad)")
    }
  }

  @Test func base64URLSafeDialectIsPadded() {
    #expect(Base64.encodeURLSafe(Array("f".utf8)) == "Zg==")
    #expect(Base64.encodeURLSafe(Array("fo".utf8)) == "Zm8=")
    #expect(Base64.encodeURLSafe([0xfb, 0xff]) == "-_8=")
    #expect(Base64.decodeURLSafe("-_8=") == [0xfb, 0xff])
    #expect(Base64.decodeURLSafe("Zm9vYmFy") == Array("foobar".utf8))
    #expect(Base64.decodeURLSafe("") == [])
    for bad in ["Zg", "Zm8", "+/8=", "Z===", "====", "Zg=a", "Zm9vYmFy====", "Zm9v YmFy"] {
      #expect(Base64.decodeURLSafe(bad) == nil, "accepted \(bad)")
    }
  }

  // MARK: Bech32, BIP 173 test vectors

  @Test func bech32AcceptsBIP173ValidStrings() {
    let valid = [
      "A12UEL5L", "a12uel5l",
      "an83characterlonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1tt5tgs",
      "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
      "11" + String(repeating: "q", count: 82) + "c8247j",
      "split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w", "?1ezyfcl",
    ]
    for string in valid {
      #expect(Bech32.decodeGroups(string) != nil, "rejected \(string)")
    }
    #expect(Bech32.decodeGroups("A12UEL5L")?.hrp == "A")
  }

  @Test func bech32RejectsBIP173InvalidStrings() {
    let invalid = [
      "\u{20}1nwldj5", "\u{7F}1axkwrx", "\u{80}1eym55h", "pzry9x0s0muk", "1pzry9x0s0muk", "x1b4n0q5v", "li1dgmt3",
      "de1lg7wt\u{FF}", "A1G7SGD8", "10a06t8", "1qzzfhee",
      // Mixed case.
      "a12UEL5L",
    ]
    for string in invalid {
      #expect(Bech32.decodeGroups(string) == nil, "accepted \(string.debugDescription)")
    }
  }

  @Test func bech32RoundTripsWithoutLengthLimit() throws {
    for count in [0, 1, 32, 100] {
      let data = try SecureRandom.bytes(count)
      let encoded = Bech32.encode(hrp: "test", data: data)
      #expect(encoded == encoded.lowercased())
      let decoded = Bech32.decode(encoded)
      #expect(decoded?.hrp == "test" && decoded?.data == data)
      #expect(Bech32.decode(encoded.uppercased())?.data == data)
    }
    #expect(Bech32.encode(hrp: "test", data: try SecureRandom.bytes(100)).count > 90)
  }
}

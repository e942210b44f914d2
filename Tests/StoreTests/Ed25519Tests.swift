import Foundation
import Store
import TestSupport
import Testing

/// One block of Fixtures/ed25519/rfc8032-7.1.txt.
struct Ed25519Vector: Sendable, CustomStringConvertible {
  var name: String
  var secret: [UInt8]
  var publicKey: [UInt8]
  var message: [UInt8]
  var signature: [UInt8]

  var description: String { name }

  static func loadAll() throws -> [Ed25519Vector] {
    let text = try String(contentsOfFile: CryptoFixtures.path("ed25519/rfc8032-7.1.txt"), encoding: .utf8)
    return try text.components(separatedBy: "\n\n").compactMap { block in
      var fields: [String: String] = [:]
      for line in block.split(separator: "\n") where !line.hasPrefix("#") {
        guard let colon = line.firstIndex(of: ":") else { throw TestHelperError("bad vector line \(line)") }
        fields[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
      }
      guard let name = fields["name"] else { return nil }
      return Ed25519Vector(
        name: name, secret: hexBytes(fields["secret"]!), publicKey: hexBytes(fields["public"]!),
        message: fields["message"]!.isEmpty ? [] : hexBytes(fields["message"]!),
        signature: hexBytes(fields["signature"]!))
    }
  }
}

/// The `openssl` command line.
enum OpenSSLCLI {
  static let path = "/usr/bin/openssl"

  /// Runs `openssl` and requires success.
  @discardableResult
  static func run(_ arguments: [String], stdin: Data? = nil) throws -> ProcessResult {
    let result = try runProcess(path, arguments, stdin: stdin)
    guard result.status == 0 else {
      throw TestHelperError("openssl \(arguments.joined(separator: " ")) failed: \(result.stderr)")
    }
    return result
  }
}

@Suite struct Ed25519Tests {
  @Test func fixtureHoldsTheFiveRFC8032Vectors() throws {
    let vectors = try Ed25519Vector.loadAll()
    #expect(vectors.map(\.name) == ["TEST 1", "TEST 2", "TEST 3", "TEST 1024", "TEST SHA(abc)"])
    #expect(vectors.map(\.message.count) == [0, 1, 2, 1023, 64])
  }

  /// RFC 8032 §7.1: every public key derived, every signature reproduced byte for byte (Ed25519
  /// is deterministic) and verified; a flipped bit anywhere does not verify.
  @Test(arguments: try Ed25519Vector.loadAll())
  func matchesRFC8032(vector: Ed25519Vector) throws {
    let privateKey = secret(vector.secret)
    #expect(try Ed25519.publicKey(privateKey: privateKey) == vector.publicKey)
    let signature = try Ed25519.sign(vector.message, privateKey: privateKey)
    #expect(signature == vector.signature)
    #expect(try Ed25519.verify(signature: vector.signature, message: vector.message, publicKey: vector.publicKey))

    var badSignature = vector.signature
    badSignature[10] ^= 0x01
    #expect(!(try Ed25519.verify(signature: badSignature, message: vector.message, publicKey: vector.publicKey)))
    var badMessage = vector.message + [0]
    badMessage[0] ^= 0x80
    #expect(!(try Ed25519.verify(signature: vector.signature, message: badMessage, publicKey: vector.publicKey)))
    let otherKey = try Ed25519.publicKey(privateKey: Ed25519.generatePrivateKey())
    #expect(!(try Ed25519.verify(signature: vector.signature, message: vector.message, publicKey: otherKey)))
    #expect(
      !(try Ed25519.verify(
        signature: Array(vector.signature.prefix(63)), message: vector.message, publicKey: vector.publicKey)))
  }

  /// The key id is the first 8 bytes of SHA-256 of the raw public key, in hex.
  @Test func keyIDIsAPrefixOfTheKeysSHA256() throws {
    let vector = try #require(try Ed25519Vector.loadAll().first)
    let key = try VerifyingKey(rawBytes: vector.publicKey)
    #expect(key.keyID == String(Digest.sha256Hex(vector.publicKey).prefix(16)))
    #expect(key.keyID.count == 16)
  }

  /// tgsess → stock OpenSSL: `openssl pkeyutl` verifies tgsess's signature with the public key
  /// as PEM, and signing with tgsess's private key file gives the very same signature.
  @Test func stockOpenSSLVerifiesAndReproducesTgsessSignatures() throws {
    let directory = try TemporaryDirectory()
    let key = try SigningKey.generate()
    let keyPath = directory.file("signing.key")
    let pem = try key.pkcs8PEM()
    try pem.withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: keyPath)) }
    let publicPath = directory.file("signing.pub.pem")
    try key.verifyingKey.pem().write(toFile: publicPath, atomically: true, encoding: .utf8)
    let message = Array("tgsess archive signature v1\nid 20261125T041500Z-full-k3j9x2\n".utf8)
    let messagePath = directory.file("statement")
    try Data(message).write(to: URL(fileURLWithPath: messagePath))
    let signaturePath = directory.file("statement.sig")
    let signature = try key.sign(message)
    try Data(signature).write(to: URL(fileURLWithPath: signaturePath))

    let verified = try OpenSSLCLI.run([
      "pkeyutl", "-verify", "-pubin", "-inkey", publicPath, "-rawin", "-in", messagePath, "-sigfile", signaturePath,
    ])
    #expect(verified.stdout.contains("Signature Verified Successfully"))
    let opensslSignature = directory.file("openssl.sig")
    try OpenSSLCLI.run(["pkeyutl", "-sign", "-inkey", keyPath, "-rawin", "-in", messagePath, "-out", opensslSignature])
    #expect([UInt8](try Data(contentsOf: URL(fileURLWithPath: opensslSignature))) == signature)
    // The key file is plain PKCS#8: a fixed 16-byte prefix, then the 32-byte seed.
    let der = try OpenSSLCLI.run(["pkey", "-in", keyPath, "-outform", "DER"]).stdoutData
    #expect(der.count == 48 && Hex.encode([UInt8](der.prefix(16))) == "302e020100300506032b657004220420")
    // The public key OpenSSL derives from the private key file is the one tgsess wrote.
    let derived = try OpenSSLCLI.run(["pkey", "-in", keyPath, "-pubout"])
    #expect(derived.stdout == (try key.verifyingKey.pem()))
    // A tampered message is refused by OpenSSL too.
    try Data(message + [0x0a]).write(to: URL(fileURLWithPath: messagePath))
    let refused = try runProcess(
      OpenSSLCLI.path,
      ["pkeyutl", "-verify", "-pubin", "-inkey", publicPath, "-rawin", "-in", messagePath, "-sigfile", signaturePath])
    #expect(refused.status != 0)
  }

  /// Stock OpenSSL → tgsess: a key made by `openssl genpkey -algorithm ed25519` loads, names the
  /// same public key, and its `openssl pkeyutl -sign` signature verifies in tgsess.
  @Test func tgsessReadsAndVerifiesStockOpenSSLKeysAndSignatures() throws {
    let directory = try TemporaryDirectory()
    let keyPath = directory.file("k.pem")
    try OpenSSLCLI.run(["genpkey", "-algorithm", "ed25519", "-out", keyPath])
    let publicPEM = try OpenSSLCLI.run(["pkey", "-in", keyPath, "-pubout"]).stdout
    let key = try SigningKey.parse(
      pem: secret([UInt8](try Data(contentsOf: URL(fileURLWithPath: keyPath)))), path: keyPath)
    #expect(try key.verifyingKey.pem() == publicPEM)

    let messagePath = directory.file("message")
    let message = try SecureRandom.bytes(300)
    try Data(message).write(to: URL(fileURLWithPath: messagePath))
    let signaturePath = directory.file("message.sig")
    try OpenSSLCLI.run(["pkeyutl", "-sign", "-inkey", keyPath, "-rawin", "-in", messagePath, "-out", signaturePath])
    let signature = [UInt8](try Data(contentsOf: URL(fileURLWithPath: signaturePath)))
    #expect(try Ed25519.verify(signature: signature, message: message, publicKey: key.verifyingKey.rawBytes))
    #expect(!(try Ed25519.verify(signature: signature, message: message + [1], publicKey: key.verifyingKey.rawBytes)))
  }

  /// Only an unencrypted Ed25519 private key in PEM, alone in its file, is a signing key.
  @Test func signingKeyFilesAreParsedStrictly() throws {
    let directory = try TemporaryDirectory()
    func pem(_ arguments: [String]) throws -> [UInt8] {
      let path = directory.file("key-\(arguments.count)-\(UUID().uuidString).pem")
      try OpenSSLCLI.run(arguments + ["-out", path])
      return [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    }
    let good = try pem(["genpkey", "-algorithm", "ed25519"])
    _ = try SigningKey.parse(pem: secret(good), path: "k")
    _ = try SigningKey.parse(pem: secret(Array("\n\n".utf8) + good + Array("\n".utf8)), path: "k")
    let twoKeys = good + (try pem(["genpkey", "-algorithm", "ed25519"]))
    let cases: [(String, [UInt8])] = [
      ("empty", []),
      ("garbage", Array("not a key\n".utf8)),
      ("one character lost", Array(good.prefix(40)) + Array(good.dropFirst(41))),
      ("truncated", Array(good.prefix(good.count / 2))),
      ("two keys", twoKeys),
      ("trailing text", good + Array("extra\n".utf8)),
      ("X25519 key", try pem(["genpkey", "-algorithm", "x25519"])),
      ("P-256 key", try pem(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"])),
      ("encrypted key", try pem(["genpkey", "-algorithm", "ed25519", "-aes-256-cbc", "-pass", "pass:secret"])),
      ("public key", Array((try SigningKey.generate().verifyingKey.pem()).utf8)),
    ]
    for (name, bytes) in cases {
      let error = #expect(throws: StoreError.self, "\(name) was accepted") {
        _ = try SigningKey.parse(pem: secret(bytes), path: "/keys/signing.key")
      }
      let text = error?.errorDescription ?? ""
      #expect(
        text
          == "/keys/signing.key: not an Ed25519 private key in PKCS#8 PEM (garbled, encrypted or another key type); restore the file from a backup, or move it aside and run tgsess init to make a new signing key",
        "\(name): \(text)")
    }
  }

  /// DER SubjectPublicKeyInfo: the canonical 44-byte encoding round-trips; anything else is no key.
  @Test func subjectPublicKeyInfoIsCanonical() throws {
    let key = try SigningKey.generate().verifyingKey
    let der = try Ed25519.subjectPublicKeyInfo(publicKey: key.rawBytes)
    #expect(der.count == 44)
    #expect(Hex.encode(der.prefix(12)) == "302a300506032b6570032100")
    #expect(try Ed25519.publicKey(subjectPublicKeyInfo: der) == key.rawBytes)
    #expect(try Ed25519.publicKey(subjectPublicKeyInfo: der + [0]) == nil)
    #expect(try Ed25519.publicKey(subjectPublicKeyInfo: Array(der.dropLast())) == nil)
    #expect(try Ed25519.publicKey(subjectPublicKeyInfo: []) == nil)
    let directory = try TemporaryDirectory()
    let x25519 = directory.file("x.pem")
    try OpenSSLCLI.run(["genpkey", "-algorithm", "x25519", "-out", x25519])
    let x25519Public = try OpenSSLCLI.run(["pkey", "-in", x25519, "-pubout", "-outform", "DER"]).stdoutData
    #expect(try Ed25519.publicKey(subjectPublicKeyInfo: [UInt8](x25519Public)) == nil)
  }
}

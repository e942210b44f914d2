import Foundation
import Store
import TestSupport
import Testing

/// One file of the CCTV age test kit (Fixtures/age/testdata; format in Fixtures/age/README.md).
struct AgeVector: Sendable {
  static let knownKeys: Set<String> = [
    "expect", "payload", "identity", "passphrase", "armored", "compressed", "file key", "comment",
  ]

  var name: String
  var fields: [(key: String, value: String)]
  /// The age file, still zlib-compressed when `isCompressed`.
  var body: [UInt8]

  func values(_ key: String) -> [String] { fields.filter { $0.key == key }.map(\.value) }
  func value(_ key: String) -> String? { values(key).first }

  var expect: String { value("expect") ?? "" }
  var isArmored: Bool { value("armored") == "yes" }
  var isCompressed: Bool { value("compressed") == "zlib" }
  var isHybrid: Bool { values("identity").contains { $0.hasPrefix("AGE-SECRET-KEY-PQ-") } }
  var hasUnknownKey: Bool { fields.contains { !Self.knownKeys.contains($0.key) } }
  /// Binary files with X25519 and/or scrypt only: what tgsess implements.
  var isApplicable: Bool { !isArmored && !isHybrid && !hasUnknownKey }

  static func loadAll() throws -> [AgeVector] {
    let directory = CryptoFixtures.path("age/testdata")
    let names = try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
    return try names.map { name in
      let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: directory + "/" + name)))
      guard let split = bytes.firstRange(of: [0x0a, 0x0a]) else {
        throw TestHelperError("\(name): no empty line after the vector header")
      }
      let header = String(decoding: bytes[..<split.lowerBound], as: UTF8.self)
      let fields = header.split(separator: "\n").map { line -> (key: String, value: String) in
        guard let separator = line.range(of: ": ") else { return (String(line), "") }
        return (String(line[..<separator.lowerBound]), String(line[separator.upperBound...]))
      }
      return AgeVector(name: name, fields: fields, body: Array(bytes[split.upperBound...]))
    }
  }

  /// The age file, inflated with Python's zlib when the vector is compressed.
  func ageFile() throws -> [UInt8] {
    guard isCompressed else { return body }
    let result = try runPython(
      "import sys, zlib; sys.stdout.buffer.write(zlib.decompress(sys.stdin.buffer.read()))", stdin: Data(body))
    return [UInt8](result.stdoutData)
  }
}

/// The outcome of decrypting one vector, in the kit's vocabulary, and the reader's reason.
struct AgeVectorOutcome: Equatable {
  var expect: String
  var payloadSHA256: String
  var reason = ""
}

/// Decrypts `file` through the streaming reader and hashes everything it releases.
func decryptForVector(
  _ file: [UInt8], identities: [AgeIdentity], maxReadCount: Int, readSize: Int
) throws -> AgeVectorOutcome {
  var hasher = SHA256Hasher()
  var buffer = [UInt8](repeating: 0, count: readSize)
  let expect: String
  var reason = ""
  do {
    let reader = try AgeDecryptingReader(
      identities: identities, input: ByteArraySource(file, maxReadCount: maxReadCount), objectName: "vector")
    while true {
      let count = try buffer.withUnsafeMutableBytes { try reader.read(into: $0) }
      if count == 0 { break }
      hasher.update(buffer[0..<count])
    }
    expect = "success"
  } catch let error as AgeError {
    reason = error.reason
    switch error.kind {
    case .header: expect = "header failure"
    case .noMatch: expect = "no match"
    case .hmac: expect = "HMAC failure"
    case .payload: expect = "payload failure"
    case .key: expect = "key error: \(error.reason)"
    }
  }
  return AgeVectorOutcome(expect: expect, payloadSHA256: Hex.encode(hasher.finalize()), reason: reason)
}

@Suite struct AgeVectorTests {
  /// The counts crypto.md gives for the kit at CCTV 1e3d2860.
  @Test func kitHasTheDocumentedShape() throws {
    let all = try AgeVector.loadAll()
    #expect(all.count == 143)
    #expect(all.filter(\.isArmored).count == 33)
    #expect(all.filter { $0.isHybrid && !$0.isArmored }.count == 18)
    #expect(all.filter(\.hasUnknownKey).isEmpty)
    let applicable = all.filter(\.isApplicable)
    #expect(applicable.count == 92)
    #expect(applicable.filter(\.isCompressed).count == 19)
  }

  /// Whether the vector's age file holds a passphrase (scrypt) stanza.
  static func hasScryptStanza(_ file: [UInt8]) -> Bool {
    file.firstRange(of: Array("\n-> scrypt ".utf8)) != nil
  }

  /// Every applicable vector, with the expected class and, for success and payload failure, the
  /// SHA-256 of the plaintext released. Each runs twice: large reads, then short reads from a
  /// source that returns at most 1000 bytes at a time.
  ///
  /// tgsess decrypts X25519 files only, so the 24 vectors with a passphrase (scrypt) stanza are
  /// held to what tgsess promises instead of the kit's scrypt verdicts: a header failure saying
  /// passphrase files are not supported (or, for the one whose stanza body breaks the age
  /// grammar, that), whatever the kit expects of a passphrase reader. The
  /// kit's own verdict already is a header failure for 20 of them (malformed scrypt stanzas, and
  /// scrypt beside another stanza); for the other 4 (a good passphrase file, and three whose
  /// passphrase does not open them) it differs on purpose. `Scrypt` (capital S) is an unknown
  /// stanza type, judged by the kit like any other.
  @Test func everyApplicableVectorGivesTheExpectedResult() throws {
    let all = try AgeVector.loadAll()
    var ran: [String: Int] = [:]
    var skipped = 0
    var passphraseFiles: [String: Int] = [:]
    var malformed: [String] = []
    for vector in all {
      guard vector.isApplicable else {
        skipped += 1
        continue
      }
      let identities = try vector.values("identity").map { try AgeIdentity(string: $0) }
      let file = try vector.ageFile()
      let large = try decryptForVector(file, identities: identities, maxReadCount: .max, readSize: 64 * 1024)
      let small = try decryptForVector(file, identities: identities, maxReadCount: 1000, readSize: 777)
      #expect(small == large, "\(vector.name): short reads gave a different outcome")
      if Self.hasScryptStanza(file) {
        #expect(large.expect == "header failure", "\(vector.name): a passphrase file gave \(large.expect)")
        if large.reason != "passphrase-encrypted archives are not supported (an age scrypt stanza)" {
          // Broken in the age grammar itself, which is parsed before any stanza type is looked at.
          #expect(vector.expect == "header failure", "\(vector.name): refused for \(large.reason)")
          malformed.append(vector.name)
        }
        passphraseFiles[vector.expect, default: 0] += 1
        continue
      }
      #expect(large.expect == vector.expect, "\(vector.name): expected \(vector.expect), got \(large.expect)")
      if vector.expect == "success" || vector.expect == "payload failure" {
        #expect(large.payloadSHA256 == vector.value("payload"), "\(vector.name): released plaintext differs")
      }
      ran[vector.expect, default: 0] += 1
    }
    let summary = ran.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
    print(
      "age vectors: ran \(ran.values.reduce(0, +)) (\(summary)), refused \(passphraseFiles.values.reduce(0, +)) "
        + "passphrase files, skipped \(skipped) (armored or hybrid)")
    #expect(ran.values.reduce(0, +) == 68)
    #expect(skipped == 51)
    #expect(ran["success"] == 14)
    #expect(ran["header failure"] == 31)
    #expect(ran["no match"] == 4)
    #expect(ran["HMAC failure"] == 1)
    #expect(ran["payload failure"] == 18)
    // The kit's verdicts on the passphrase files tgsess refuses.
    #expect(passphraseFiles == ["success": 1, "header failure": 20, "no match": 3])
    #expect(malformed == ["scrypt_not_canonical_body"])
  }
}

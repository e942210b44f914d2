import Foundation
import Store
import TestSupport
import Testing

/// The crypto review's fixes to the age reader: a cap on X25519 stanzas, one key import per
/// identity, and no passphrase path.
@Suite struct AgeHardeningTests {
  /// An age file for `identity` with `extra` junk X25519 stanzas (random shares and bodies of
  /// the right shape) inserted after its one genuine stanza. The header MAC no longer matches.
  static func fileWithJunkStanzas(for identity: AgeIdentity, extra: Int) throws -> [UInt8] {
    let file = try ageEncrypt(Array("payload".utf8), to: [identity.recipient])
    let macLine = file.firstRange(of: Array("\n--- ".utf8))!.lowerBound + 1
    var junk: [UInt8] = []
    for _ in 0..<extra {
      let share = Base64.encodeUnpadded(try SecureRandom.bytes(32))
      let body = Base64.encodeUnpadded(try SecureRandom.bytes(32))
      junk.append(contentsOf: Array("-> X25519 \(share)\n\(body)\n".utf8))
    }
    return Array(file[..<macLine]) + junk + Array(file[macLine...])
  }

  /// A planted header with 1,001 stanzas is refused before any stanza is unwrapped: the genuine
  /// stanza comes first, so a reader that started unwrapping would have found the file key and
  /// failed later, on the MAC.
  @Test func moreThanAThousandX25519StanzasAreRefusedBeforeAnyUnwrapping() throws {
    let identity = try AgeIdentity.generate()
    let planted = try Self.fileWithJunkStanzas(for: identity, extra: 1000)
    let refused = ageDecrypt(planted, identities: [identity])
    #expect(refused.kind == .header)
    let error = try #require(refused.error as? AgeError)
    #expect(error.reason == "the header has 1001 X25519 recipient stanzas; tgsess reads at most 1000")
    #expect(error.errorDescription?.contains("\n") == false)
    #expect(refused.released.isEmpty)
    // 1,000 is allowed: that file gets as far as the MAC, which the inserted stanzas broke.
    let atTheCap = try Self.fileWithJunkStanzas(for: identity, extra: 999)
    #expect(ageDecrypt(atTheCap, identities: [identity]).kind == .hmac)
  }

  /// Each identity's private key is imported into libcrypto once per decryption, not once per
  /// stanza, and each stanza costs exactly one agreement per identity.
  @Test func eachIdentityIsImportedOncePerDecryption() throws {
    let owner = try AgeIdentity.generate()
    let strangers = try (0..<3).map { _ in try AgeIdentity.generate() }
    let file = try Self.fileWithJunkStanzas(for: owner, extra: 4)
    let (header, _) = try AgeHeader.read(from: ByteArraySource(file), object: "test.age")

    var cost = AgeUnwrapCost()
    #expect(throws: AgeError.self) {
      _ = try header.unwrapFileKey(identities: strangers, object: "test.age", cost: &cost)
    }
    #expect(cost.keyImports == 3)
    #expect(cost.agreements == 3 * 5)

    // The owner's stanza is the first: one import, one agreement.
    cost = AgeUnwrapCost()
    let fileKey = try header.unwrapFileKey(identities: [owner], object: "test.age", cost: &cost)
    #expect(fileKey.count == 16)
    #expect(
      cost
        == {
          var expected = AgeUnwrapCost(); expected.keyImports = 1; expected.agreements = 1; return expected
        }())
  }

  /// Passphrase files are refused in one line whatever identities are given, without running
  /// scrypt (a work factor of 2^40 would take hours and terabytes if it were run).
  @Test func passphraseFilesAreRefusedWithoutRunningScrypt() throws {
    let identity = try AgeIdentity.generate()
    let genuine = try ageEncrypt(Array("payload".utf8), to: [identity.recipient])
    let macLine = genuine.firstRange(of: Array("\n--- ".utf8))!.lowerBound + 1
    let salt = Base64.encodeUnpadded(try SecureRandom.bytes(16))
    let body = Base64.encodeUnpadded(try SecureRandom.bytes(32))
    let scryptOnly =
      Array("age-encryption.org/v1\n-> scrypt \(salt) 40\n\(body)\n".utf8) + Array(genuine[macLine...])
    for identities in [[], [identity]] {
      let refused = ageDecrypt(scryptOnly, identities: identities)
      #expect(refused.kind == .header)
      #expect(
        (refused.error as? AgeError)?.reason == "passphrase-encrypted archives are not supported (an age scrypt stanza)"
      )
    }
  }
}

import Foundation
import Store
import TestSupport
import Testing

/// Builders shared by the signing tests.
enum SigningFixture {
  static let date = Date(timeIntervalSince1970: 1_795_000_000)

  /// A statement for a per-user (or, with `userID` nil, full) archive at `date`.
  static func statement(
    userID: Int64? = 42, date: Date = date, reason: String = "Scheduled", encryption: SignedStatement.Encryption = .age,
    fileSHA256: String = String(repeating: "ab", count: 32), manifestSHA256: String = String(repeating: "cd", count: 32)
  ) throws -> SignedStatement {
    let kind: Manifest.Kind = userID == nil ? .full : .user
    return try SignedStatement(
      archiveID: ArchiveName.makeID(kind: kind, userID: userID, date: date), kind: kind, userID: userID,
      createdAt: date, reason: reason, encryption: encryption, fileByteCount: 12_345, fileSHA256: fileSHA256,
      manifestSHA256: manifestSHA256)
  }

  static func ring(_ keys: [SigningKey], path: String = "/deploy/keys/signing.pub") -> VerifyingKeyRing {
    VerifyingKeyRing(keys: keys.map(\.verifyingKey), path: path)
  }

  /// The same statement with other fields, keeping the id consistent with kind, user and time.
  static func changing(_ statement: SignedStatement, _ change: (inout SignedStatement) -> Void) throws
    -> SignedStatement
  {
    var copy = statement
    change(&copy)
    return try SignedStatement(
      archiveID: copy.archiveID, kind: copy.kind, userID: copy.userID, createdAt: copy.createdAt,
      reason: copy.reason, encryption: copy.encryption, fileByteCount: copy.fileByteCount,
      fileSHA256: copy.fileSHA256, manifestSHA256: copy.manifestSHA256)
  }

  /// `id` with its kind, user and time replaced, keeping its random part.
  static func id(_ id: String, kind: Manifest.Kind, userID: Int64?, date: Date) -> String {
    let random = id.split(separator: "-").last!
    return "\(Timestamp.compact(date))-\(kind == .full ? "full" : "u\(userID!)")-\(random)"
  }
}

@Suite struct ArchiveSigningTests {
  /// Signing, encoding, decoding and verifying round-trip; the encoding is the documented text.
  @Test func signatureFileRoundTrips() throws {
    let key = try SigningKey.generate()
    let statement = try SigningFixture.statement()
    let signed = try ArchiveSigning.sign(statement, key: key)
    let encoded = signed.encoded()
    let text = String(decoding: encoded, as: UTF8.self)
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
    #expect(lines.count == 13 && lines.last == "")
    #expect(lines[0] == "tgsess archive signature v1")
    #expect(lines[1] == "id \(statement.archiveID)")
    #expect(lines[2] == "kind user")
    #expect(lines[3] == "user 42")
    #expect(lines[4] == "created \(SignedStatement.formatTimeForTests(SigningFixture.date))")
    #expect(lines[5] == "reason Scheduled")
    #expect(lines[6] == "encryption age")
    #expect(lines[7] == "file-size 12345")
    #expect(lines[8] == "file-sha256 \(String(repeating: "ab", count: 32))")
    #expect(lines[9] == "manifest-sha256 \(String(repeating: "cd", count: 32))")
    #expect(lines[10] == "key \(key.keyID)")
    #expect(lines[11].hasPrefix("signature ") && lines[11].count == "signature ".count + 88)
    #expect(signed.signedBytes == Array(encoded.prefix(encoded.count - lines[11].utf8.count - 1)))

    let decoded = try ArchiveSignature.decode(encoded, object: "x.sig")
    #expect(decoded == signed)
    #expect(try ArchiveSigning.verify(decoded, ring: SigningFixture.ring([key]), object: "x") == key.keyID)
    // A full, unencrypted archive too.
    let full = try ArchiveSigning.sign(try SigningFixture.statement(userID: nil, encryption: .none), key: key)
    #expect(try ArchiveSignature.decode(full.encoded(), object: "x.sig") == full)
    #expect(String(decoding: full.encoded(), as: UTF8.self).contains("\nkind full\nuser none\n"))
    #expect(full.statement.fileName.hasSuffix("-full-\(full.statement.archiveID.suffix(6)).tar.zst"))
  }

  /// Reasons are text: any printable Unicode round-trips, even one that starts with a combining
  /// mark (compared as Characters, it would merge with the space before it).
  @Test func unicodeReasonsRoundTrip() throws {
    let key = try SigningKey.generate()
    for reason in ["Vor dem Login ✓", "\u{301}accent first", " leading space", "Перед входом"] {
      let signed = try ArchiveSigning.sign(try SigningFixture.statement(reason: reason), key: key)
      let decoded = try ArchiveSignature.decode(signed.encoded(), object: "x.sig")
      #expect(decoded.statement.reason.utf8.elementsEqual(reason.utf8))
      #expect(try ArchiveSigning.verify(decoded, ring: SigningFixture.ring([key]), object: "x") == key.keyID)
    }
  }

  /// Every field is covered: a statement that differs in any one field (kept internally
  /// consistent, as a forger would) does not verify with the original signature.
  @Test func everyTamperedFieldIsRefused() throws {
    let key = try SigningKey.generate()
    let other = try SigningKey.generate()
    let ring = SigningFixture.ring([key, other])
    let original = try SigningFixture.statement()
    let signed = try ArchiveSigning.sign(original, key: key)
    let later = SigningFixture.date.addingTimeInterval(3600)
    let tampered: [(String, SignedStatement)] = [
      ("id", try SigningFixture.changing(original) { $0.archiveID = String($0.archiveID.dropLast(6)) + "zzzzzz" }),
      (
        "kind and user",
        try SigningFixture.changing(original) {
          $0.userID = 43
          $0.archiveID = SigningFixture.id($0.archiveID, kind: .user, userID: 43, date: $0.createdAt)
        }
      ),
      (
        "kind full",
        try SigningFixture.changing(original) {
          $0.kind = .full
          $0.userID = nil
          $0.archiveID = SigningFixture.id($0.archiveID, kind: .full, userID: nil, date: $0.createdAt)
        }
      ),
      (
        "created (replayed as newer)",
        try SigningFixture.changing(original) {
          $0.createdAt = later
          $0.archiveID = SigningFixture.id($0.archiveID, kind: .user, userID: 42, date: later)
        }
      ),
      ("reason", try SigningFixture.changing(original) { $0.reason = "Manual" }),
      ("encryption", try SigningFixture.changing(original) { $0.encryption = .none }),
      ("file-size", try SigningFixture.changing(original) { $0.fileByteCount += 1 }),
      ("file-sha256", try SigningFixture.changing(original) { $0.fileSHA256 = String(repeating: "ef", count: 32) }),
      (
        "manifest-sha256",
        try SigningFixture.changing(original) { $0.manifestSHA256 = String(repeating: "01", count: 32) }
      ),
    ]
    for (field, statement) in tampered {
      #expect(statement != original, "\(field) did not change")
      let forged = ArchiveSignature(statement: statement, keyID: signed.keyID, signature: signed.signature)
      // It parses (a forger writes well-formed files) but does not verify.
      #expect(try ArchiveSignature.decode(forged.encoded(), object: "x.sig") == forged)
      let error = #expect(throws: StoreError.self, "tampered \(field) verified") {
        try ArchiveSigning.verify(forged, ring: ring, object: "backups/x.tar.zst.age")
      }
      guard case .crypto(let object, let reason, _) = error else {
        Issue.record("\(field): \(String(describing: error))")
        continue
      }
      #expect(object == "backups/x.tar.zst.age" && reason == "not signed by this deployment's key")
    }
    // The key line is signed too: claiming another ring key refuses.
    let otherKeyID = ArchiveSignature(statement: original, keyID: other.keyID, signature: signed.signature)
    #expect(throws: StoreError.self) { try ArchiveSigning.verify(otherKeyID, ring: ring, object: "x") }
  }

  /// No single-character change anywhere in a signature file gives a file that both parses and
  /// verifies.
  @Test func noSingleCharacterChangeVerifies() throws {
    let key = try SigningKey.generate()
    let ring = SigningFixture.ring([key])
    let encoded = [UInt8](try ArchiveSigning.sign(try SigningFixture.statement(), key: key).encoded())
    var parsed = 0
    for index in encoded.indices {
      for replacement in [UInt8(ascii: "0"), UInt8(ascii: "a"), UInt8(ascii: "Z"), UInt8(ascii: " ")]
      where replacement != encoded[index] {
        var changed = encoded
        changed[index] = replacement
        guard let decoded = try? ArchiveSignature.decode(Data(changed), object: "x.sig") else { continue }
        parsed += 1
        #expect(throws: StoreError.self, "a change at byte \(index) verified") {
          try ArchiveSigning.verify(decoded, ring: ring, object: "x")
        }
      }
    }
    // Many changes still parse (hex digits, the reason, the signature's base64): the signature
    // is what refuses them.
    #expect(parsed > 100)
  }

  /// Another deployment's key, an empty match in the ring, and rotation.
  @Test func onlyTheRingsKeysVerifyAndRotatedKeysKeepVerifying() throws {
    let ours = try SigningKey.generate()
    let theirs = try SigningKey.generate()
    let statement = try SigningFixture.statement()
    let forged = try ArchiveSigning.sign(statement, key: theirs)
    let error = #expect(throws: StoreError.self) {
      try ArchiveSigning.verify(
        forged, ring: SigningFixture.ring([ours]), object: "backups/users/user_42/x.tar.zst.age")
    }
    #expect(
      error?.errorDescription
        == "backups/users/user_42/x.tar.zst.age: not signed by this deployment's key; it names key \(theirs.keyID), which is not in /deploy/keys/signing.pub; if that is an older key of this deployment, restore its line from escrow, else do not trust this archive"
    )
    // Made with the old key, verified after a rotation: the ring is [new, old].
    let rotated = try SigningKey.generate()
    let old = try ArchiveSigning.sign(statement, key: ours)
    #expect(try ArchiveSigning.verify(old, ring: SigningFixture.ring([rotated, ours]), object: "x") == ours.keyID)
    #expect(throws: StoreError.self) {
      try ArchiveSigning.verify(old, ring: SigningFixture.ring([rotated]), object: "x")
    }
  }

  /// Garbled signature files are refused with one line each, saying which line is wrong.
  @Test func garbledSignatureFilesAreRefusedWithOneLineEach() throws {
    let key = try SigningKey.generate()
    let good = String(
      decoding: try ArchiveSigning.sign(try SigningFixture.statement(), key: key).encoded(), as: UTF8.self)
    func replacing(_ old: String, _ new: String) -> String {
      precondition(good.contains(old), old)
      return good.replacingOccurrences(of: old, with: new)
    }
    let lines = good.split(separator: "\n").map(String.init)
    let signatureLine = lines[11]
    let cases: [(String, String, String)] = [
      ("empty", "", "it does not end with a line feed (truncated?)"),
      ("truncated", String(good.dropLast(10)), "it does not end with a line feed (truncated?)"),
      ("CRLF", good.replacingOccurrences(of: "\n", with: "\r\n"), "it has CR characters (lines end with LF only)"),
      (
        "another context", replacing("tgsess archive signature v1", "some other format"),
        "line 1 is not 'tgsess archive signature v1'"
      ),
      (
        "a newer format", replacing("signature v1", "signature v2"),
        "line 1 names an unsupported format version (this tgsess reads v1)"
      ),
      ("a missing line", replacing("reason Scheduled\n", ""), "it has 11 lines instead of 12"),
      ("an extra line", good + "note hello\n", "it has 13 lines instead of 12"),
      ("lines swapped", replacing("kind user\nuser 42\n", "user 42\nkind user\n"), "line 3 is not 'kind VALUE'"),
      ("an empty value", replacing("reason Scheduled", "reason "), "line 6 is not 'reason VALUE'"),
      ("two spaces", replacing("kind user", "kind  user"), "line 3 ('kind') is not 'full' or 'user'"),
      ("a bad kind", replacing("kind user", "kind users"), "line 3 ('kind') is not 'full' or 'user'"),
      ("a padded user", replacing("user 42", "user 042"), "line 4 ('user') is not 'none' or a user id in decimal"),
      ("a negative user", replacing("user 42", "user -42"), "line 4 ('user') is not 'none' or a user id in decimal"),
      ("no user for a user archive", replacing("user 42", "user none"), "kind user does not go with user none"),
      (
        "an offset time", replacing("Z\nreason", "+00:00\nreason"),
        "line 5 ('created') is not a UTC time written YYYY-MM-DDTHH:MM:SSZ"
      ),
      (
        "a fraction", replacing("Z\nreason", ".5Z\nreason"),
        "line 5 ('created') is not a UTC time written YYYY-MM-DDTHH:MM:SSZ"
      ),
      (
        "a control character", replacing("reason Scheduled", "reason Sched\u{7}uled"),
        "reason is empty, longer than 256 bytes or holds a control character"
      ),
      (
        "a bad encryption", replacing("encryption age", "encryption gpg"),
        "line 7 ('encryption') is not 'age' or 'none'"
      ),
      (
        "a padded size", replacing("file-size 12345", "file-size 012345"),
        "line 8 ('file-size') is not a byte count in decimal"
      ),
      (
        "an upper-case hash", replacing("file-sha256 abab", "file-sha256 ABAB"),
        "line 9 ('file-sha256') is not 64 lower-case hex digits"
      ),
      (
        "a short hash", replacing("manifest-sha256 cdcd", "manifest-sha256 cd"),
        "line 10 ('manifest-sha256') is not 64 lower-case hex digits"
      ),
      (
        "a short key id", replacing("key \(key.keyID)", "key \(key.keyID.prefix(15))"),
        "line 11 ('key') is not a key id of 16 lower-case hex digits"
      ),
      (
        "a cut signature", replacing(signatureLine, String(signatureLine.dropLast(4))),
        "line 12 ('signature') is not 64 bytes in padded base64"
      ),
      (
        "unpadded base64", replacing(signatureLine, String(signatureLine.dropLast(2))),
        "line 12 ('signature') is not 64 bytes in padded base64"
      ),
      (
        "an id for another user", replacing("user 42", "user 43"),
        "id \(lines[1].dropFirst(3)) names another kind or user than the kind and user fields"
      ),
      ("an id that is no tgsess id", replacing(String(lines[1]), "id backup-1"), "id is not a tgsess archive id"),
      (
        "a padded user in the id", replacing("-u42-", "-u042-"),
        "id \(lines[1].dropFirst(3).replacingOccurrences(of: "-u42-", with: "-u042-")) names another kind or user than the kind and user fields"
      ),
      ("too large", good + String(repeating: "x", count: 5000), "larger than 4 KiB"),
    ]
    for (name, text, reason) in cases {
      let error = #expect(throws: StoreError.self, "\(name) was accepted") {
        _ = try ArchiveSignature.decode(Data(text.utf8), object: "/b/full/ID.sig")
      }
      let description = error?.errorDescription ?? ""
      #expect(
        description
          == "/b/full/ID.sig: not a valid tgsess archive signature: \(reason); the signature file is damaged or was not made by tgsess; do not trust this archive, use another backup",
        "\(name): \(description)")
      #expect(!description.contains("\n"))
    }
    #expect(throws: StoreError.self) {
      _ = try ArchiveSignature.decode(Data([0xff, 0xfe, 0x0a]), object: "x")
    }
  }

  /// tgsess refuses to sign a statement it would refuse to read.
  @Test func inconsistentStatementsAreNotSigned() throws {
    #expect(throws: StoreError.self) { _ = try SigningFixture.statement(reason: "") }
    #expect(throws: StoreError.self) { _ = try SigningFixture.statement(reason: "two\nlines") }
    #expect(throws: StoreError.self) { _ = try SigningFixture.statement(fileSHA256: "ABAB") }
    #expect(throws: StoreError.self) {
      _ = try SignedStatement(
        archiveID: ArchiveName.makeID(kind: .user, userID: 42, date: SigningFixture.date), kind: .user, userID: 43,
        createdAt: SigningFixture.date, reason: "Scheduled", encryption: .age, fileByteCount: 1,
        fileSHA256: String(repeating: "0", count: 64), manifestSHA256: String(repeating: "0", count: 64))
    }
    #expect(throws: StoreError.self) {
      _ = try SigningFixture.statement(date: SigningFixture.date.addingTimeInterval(0.5))
    }
  }
}

extension SignedStatement {
  /// The documented time form, computed independently of the product code.
  static func formatTimeForTests(_ date: Date) -> String {
    let formatter = ISO8601DateFormatter()
    formatter.timeZone = TimeZone(identifier: "UTC")
    formatter.formatOptions = [.withInternetDateTime]
    return formatter.string(from: date)
  }
}

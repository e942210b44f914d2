import Foundation
import Store
import TestSupport
import Testing

/// The signing key files: how `KeyStore` creates, loads, checks and rotates them.
@Suite struct SigningKeyStoreTests {
  static func deployment() throws -> (TemporaryDirectory, Deployment) {
    let directory = try TemporaryDirectory()
    return (directory, Deployment(root: directory.path))
  }

  static func bytes(_ path: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: path)) }

  @Test func ensureKeysCreatesThePrivateKeyAndTheRingOnceAndNeverOverwrites() throws {
    let (_, deployment) = try Self.deployment()
    let created = try KeyStore.ensureKeys(deployment, environment: [:])
    #expect(created.signingKey && created.signingPublicKeys)
    #expect(try FileSystem.mode(of: deployment.signingKeyPath) == 0o600)
    #expect(try FileSystem.mode(of: deployment.signingPublicKeysPath) == 0o600)
    let pem = String(decoding: try Self.bytes(deployment.signingKeyPath), as: UTF8.self)
    #expect(pem.hasPrefix("-----BEGIN PRIVATE KEY-----\n") && pem.hasSuffix("-----END PRIVATE KEY-----\n"))
    let key = try KeyStore.loadSigningKey(deployment)
    let ring = try KeyStore.loadVerifyingKeys(deployment)
    #expect(ring.keys == [key.verifyingKey])
    let before = (try Self.bytes(deployment.signingKeyPath), try Self.bytes(deployment.signingPublicKeysPath))
    let again = try KeyStore.ensureKeys(deployment, environment: [:])
    #expect(!again.signingKey && !again.signingPublicKeys)
    #expect(try Self.bytes(deployment.signingKeyPath) == before.0)
    #expect(try Self.bytes(deployment.signingPublicKeysPath) == before.1)
  }

  /// A deployment made before signing (age and Fernet keys, no signing key): `ensureKeys` adds
  /// the signing key and leaves every other key as it was.
  @Test func olderDeploymentsGetASigningKeyAndKeepTheirOtherKeys() throws {
    let (_, deployment) = try Self.deployment()
    _ = try KeyStore.ensureKeys(deployment, environment: [:])
    try FileManager.default.removeItem(atPath: deployment.signingKeyPath)
    try FileManager.default.removeItem(atPath: deployment.signingPublicKeysPath)
    let others = [deployment.ageIdentityPath, deployment.ageRecipientsPath, deployment.fernetKeysPath]
    let before = try others.map(Self.bytes)
    let created = try KeyStore.ensureKeys(deployment, environment: [:])
    #expect(created == KeyStore.Created(signingKey: true, signingPublicKeys: true))
    #expect(try others.map(Self.bytes) == before)
    _ = try KeyStore.loadSigningKey(deployment)
  }

  /// The ring lost: it is rebuilt from the key. The key lost but the ring (from escrow) there: a
  /// new key goes first and the old keys stay.
  @Test func aLostRingIsRebuiltAndALostKeyIsReplacedKeepingTheOldPublicKeys() throws {
    let (_, deployment) = try Self.deployment()
    _ = try KeyStore.ensureKeys(deployment, environment: [:])
    let original = try KeyStore.loadSigningKey(deployment)
    try FileManager.default.removeItem(atPath: deployment.signingPublicKeysPath)
    #expect(try KeyStore.ensureKeys(deployment, environment: [:]) == KeyStore.Created(signingPublicKeys: true))
    #expect(try KeyStore.loadVerifyingKeys(deployment).keys == [original.verifyingKey])

    try FileManager.default.removeItem(atPath: deployment.signingKeyPath)
    #expect(
      try KeyStore.ensureKeys(deployment, environment: [:])
        == KeyStore.Created(signingKey: true, signingPublicKeys: true))
    let replacement = try KeyStore.loadSigningKey(deployment)
    #expect(replacement.keyID != original.keyID)
    #expect(try KeyStore.loadVerifyingKeys(deployment).keys == [replacement.verifyingKey, original.verifyingKey])
  }

  @Test func rotationMakesANewKeyCurrentAndKeepsTheOldOneVerifying() throws {
    let (_, deployment) = try Self.deployment()
    _ = try KeyStore.ensureKeys(deployment, environment: [:])
    let old = try KeyStore.loadSigningKey(deployment)
    let statement = try SigningFixture.statement()
    let signedByOld = try ArchiveSigning.sign(statement, key: old)

    let rotation = try KeyStore.rotateSigningKey(deployment)
    #expect(rotation.old == old.verifyingKey && rotation.new != old.verifyingKey)
    let current = try KeyStore.loadSigningKey(deployment)
    #expect(current.verifyingKey == rotation.new)
    #expect(try FileSystem.mode(of: deployment.signingKeyPath) == 0o600)
    let ring = try KeyStore.loadVerifyingKeys(deployment)
    #expect(ring.keys == [rotation.new, old.verifyingKey])
    #expect(try ArchiveSigning.verify(signedByOld, ring: ring, object: "a") == old.keyID)
    let signedByNew = try ArchiveSigning.sign(statement, key: current)
    #expect(try ArchiveSigning.verify(signedByNew, ring: ring, object: "a") == current.keyID)
    // Twice: three keys, newest first.
    let second = try KeyStore.rotateSigningKey(deployment)
    #expect(try KeyStore.loadVerifyingKeys(deployment).keys == [second.new, rotation.new, old.verifyingKey])
    // The ring file is the documented text, readable by a stranger: one key line each.
    let text = String(decoding: try Self.bytes(deployment.signingPublicKeysPath), as: UTF8.self)
    #expect(text.split(separator: "\n").filter { $0.hasPrefix("ed25519 ") }.count == 3)
  }

  @Test func keyFilesOthersCanReadOrWriteAreRefusedWithTheChmodToRun() throws {
    let (_, deployment) = try Self.deployment()
    _ = try KeyStore.ensureKeys(deployment, environment: [:])
    chmod(deployment.signingKeyPath, 0o640)
    let loose = #expect(throws: StoreError.self) { _ = try KeyStore.loadSigningKey(deployment) }
    #expect(
      loose?.errorDescription
        == "\(deployment.signingKeyPath): mode 640 lets group or others read a secret; run: chmod 600 \(deployment.signingKeyPath)"
    )
    #expect(throws: StoreError.self) { _ = try KeyStore.ensureKeys(deployment, environment: [:]) }
    chmod(deployment.signingKeyPath, 0o600)
    // The public ring may be readable, but not writable by others.
    chmod(deployment.signingPublicKeysPath, 0o644)
    _ = try KeyStore.loadVerifyingKeys(deployment)
    chmod(deployment.signingPublicKeysPath, 0o664)
    let writable = #expect(throws: StoreError.self) { _ = try KeyStore.loadVerifyingKeys(deployment) }
    #expect(
      writable?.errorDescription
        == "\(deployment.signingPublicKeysPath): mode 664 lets group or others change the keys archives are verified with; run: chmod 600 \(deployment.signingPublicKeysPath)"
    )
  }

  @Test func garbledKeyFilesAreRefusedInOneLineNamingTheFile() throws {
    let (directory, deployment) = try Self.deployment()
    _ = try KeyStore.ensureKeys(deployment, environment: [:])
    var pem = try Self.bytes(deployment.signingKeyPath)
    pem.remove(at: 40)
    try FileSystem.writeAtomically(pem, to: deployment.signingKeyPath)
    let garbled = #expect(throws: StoreError.self) { _ = try KeyStore.loadSigningKey(deployment) }
    #expect(garbled?.errorDescription?.hasPrefix("\(deployment.signingKeyPath): not an Ed25519 private key") == true)
    #expect(garbled?.errorDescription?.contains("\n") == false)

    let missing = #expect(throws: StoreError.self) {
      _ = try KeyStore.loadVerifyingKeys(path: directory.file("nowhere.pub"))
    }
    #expect(missing?.errorDescription?.hasPrefix("\(directory.file("nowhere.pub")): not found;") == true)
  }

  /// A private key whose public half is not in the ring would sign archives nothing verifies.
  @Test func aSigningKeyOutsideTheRingIsRefused() throws {
    let (_, deployment) = try Self.deployment()
    _ = try KeyStore.ensureKeys(deployment, environment: [:])
    let stranger = VerifyingKeyRing(
      keys: [try SigningKey.generate().verifyingKey], path: deployment.signingPublicKeysPath)
    try FileSystem.writeAtomically(Data(try stranger.rendered().utf8), to: deployment.signingPublicKeysPath)
    let error = #expect(throws: StoreError.self) { _ = try KeyStore.loadSigningKey(deployment) }
    #expect(error?.errorDescription?.contains("is not in \(deployment.signingPublicKeysPath)") == true)
    // init adds it back (first), keeping the other key.
    #expect(try KeyStore.ensureKeys(deployment, environment: [:]) == KeyStore.Created(signingPublicKeys: true))
    #expect(try KeyStore.loadVerifyingKeys(deployment).keys.count == 2)
    _ = try KeyStore.loadSigningKey(deployment)
  }

  /// The ring file, read strictly: comments and CRLF are fine, anything else names the line.
  @Test func keyRingFilesAreParsedStrictly() throws {
    let keys = try (0..<2).map { _ in try SigningKey.generate().verifyingKey }
    let ring = VerifyingKeyRing(keys: keys, path: "/k/signing.pub")
    let text = try ring.rendered()
    #expect(try VerifyingKeyRing.parse(text, path: "/k/signing.pub") == ring)
    #expect(
      try VerifyingKeyRing.parse(text.replacingOccurrences(of: "\n", with: "\r\n"), path: "/k/signing.pub") == ring)
    let line = "ed25519 \(keys[0].keyID) \(try keys[0].subjectPublicKeyInfoBase64())"
    #expect(try VerifyingKeyRing.parse("\n# escrow copy\n\(line)\n", path: "p").keys == [keys[0]])

    let x25519 = Base64.encodePadded(hexBytes("302a300506032b656e032100") + (try SecureRandom.bytes(32)))
    let otherID = keys[1].keyID
    let cases: [(String, String)] = [
      ("", "no signing public key in the file"),
      ("# only a comment\n", "no signing public key in the file"),
      (
        "ed25519 \(keys[0].keyID)\n", "line 1 is not a signing public key: expected 3 fields separated by single spaces"
      ),
      (
        line.replacingOccurrences(of: " ", with: "  ") + "\n",
        "line 1 is not a signing public key: expected 3 fields separated by single spaces"
      ),
      (
        line.replacingOccurrences(of: "ed25519", with: "ssh-ed25519") + "\n",
        "line 1 is not a signing public key: unknown algorithm (tgsess signs with ed25519)"
      ),
      (
        line.replacingOccurrences(of: keys[0].keyID, with: keys[0].keyID.uppercased()) + "\n",
        "line 1 is not a signing public key: the key id is not 16 lower-case hex digits"
      ),
      (
        line.replacingOccurrences(of: keys[0].keyID, with: otherID) + "\n",
        "line 1 is not a signing public key: the key id does not match the key (garbled?)"
      ),
      (
        String(line.dropLast(5)) + "\n",
        "line 1 is not a signing public key: the key is not base64 of an Ed25519 SubjectPublicKeyInfo"
      ),
      (
        "ed25519 \(keys[0].keyID) \(x25519)\n",
        "line 1 is not a signing public key: the key is not base64 of an Ed25519 SubjectPublicKeyInfo"
      ),
      ("\(line)\n\(line)\n", "line 2 is not a signing public key: key \(keys[0].keyID) is listed twice"),
    ]
    for (text, reason) in cases {
      let error = #expect(throws: StoreError.self, "accepted: \(text)") {
        _ = try VerifyingKeyRing.parse(text, path: "/escrow/signing.pub")
      }
      let description = error?.errorDescription ?? ""
      #expect(description.hasPrefix("/escrow/signing.pub: \(reason); "), "\(description)")
      #expect(!description.contains("\n"))
    }
  }
}

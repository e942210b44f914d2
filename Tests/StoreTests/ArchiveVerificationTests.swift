import Foundation
import Store
import TestSupport
import Testing

/// A signed per-user archive on disk, built with stock `tar | zstd | age` (what the issue's
/// forger used) and signed through the Store API the way the archive writer will sign.
struct SignedArchiveFixture {
  let directory: TemporaryDirectory
  let identity: AgeIdentity
  let key: SigningKey
  let ring: VerifyingKeyRing
  let manifest: Manifest
  let manifestBytes: Data
  let archivePath: String
  var backups: String { directory.file("backups") }
  var identityPath: String { directory.file("keys/age-identity.txt") }

  init(userID: Int64 = 42, key: SigningKey? = nil) throws {
    directory = try TemporaryDirectory()
    identity = try AgeIdentity.generate()
    self.key = try key ?? SigningKey.generate()
    try FileSystem.makeDirectory(directory.file("keys"))
    try AgeKeyFile.write(identity, to: directory.file("keys/age-identity.txt"))
    ring = VerifyingKeyRing(keys: [self.key.verifyingKey], path: directory.file("keys/signing.pub"))
    try FileSystem.writeAtomically(Data(try ring.rendered().utf8), to: ring.path)
    let date = Date(timeIntervalSince1970: 1_830_000_800)
    let session = try SecureRandom.bytes(5000)
    manifest = Manifest(
      toolVersion: "test", host: "signing-host", createdAt: date, kind: .user, reason: "Scheduled", userID: userID,
      schemaVersion: 2,
      entries: [
        Manifest.Entry(
          path: "sessions/user_\(userID).session", role: .session, size: Int64(session.count),
          sha256: Digest.sha256Hex(session), isSQLite: false, userID: userID)
      ])
    manifestBytes = try manifest.encoded()
    let id = ArchiveName.makeID(kind: .user, userID: userID, date: date)
    archivePath = directory.file("backups/users/user_\(userID)/\(id).tar.zst.age")
    try Self.buildArchive(
      at: archivePath, manifestBytes: manifestBytes, files: ["sessions/user_\(userID).session": session],
      recipient: identity.recipient, scratch: directory.file("staging"))
    try Self.sign(archivePath: archivePath, id: id, manifest: manifest, manifestBytes: manifestBytes, key: self.key)
  }

  /// `tar --zstd -c manifest.json FILES | age -r RECIPIENT > path`, with stock tools only.
  static func buildArchive(
    at path: String, manifestBytes: Data, files: [String: [UInt8]], recipient: AgeRecipient, scratch: String
  ) throws {
    try? FileManager.default.removeItem(atPath: scratch)
    try FileSystem.makeDirectory(scratch + "/sessions")
    try manifestBytes.write(to: URL(fileURLWithPath: scratch + "/manifest.json"))
    for (name, bytes) in files { try Data(bytes).write(to: URL(fileURLWithPath: scratch + "/" + name)) }
    try FileSystem.makeDirectory(FileSystem.parentDirectory(of: path))
    let names = ["manifest.json"] + files.keys.sorted()
    let result = try runProcess(
      "/bin/bash",
      [
        "-c", "set -o pipefail; tar --zstd -cf - -C \"$1\" \"${@:4}\" | age -r \"$2\" > \"$3\"", "build", scratch,
        recipient.string, path,
      ] + names)
    guard result.status == 0 else { throw TestHelperError("building the archive failed: \(result.stderr)") }
  }

  /// Signs the archive at `archivePath` as the writer will: statement from the manifest and the
  /// file's hash, signature file beside the archive.
  static func sign(archivePath: String, id: String, manifest: Manifest, manifestBytes: Data, key: SigningKey) throws {
    let statement = try SignedStatement(
      archiveID: id, manifest: manifest, manifestBytes: manifestBytes, isEncrypted: true,
      fileByteCount: try FileSystem.size(of: archivePath), fileSHA256: try FileSystem.sha256(ofFile: archivePath))
    let signature = try ArchiveSigning.sign(statement, key: key)
    try FileSystem.writeAtomically(signature.encoded(), to: ArchiveSigning.signaturePath(forArchive: archivePath)!)
  }

  var signaturePath: String { ArchiveSigning.signaturePath(forArchive: archivePath)! }
}

/// The procedure of docs/ARCHIVE-FORMAT.md §5, exactly as written there.
enum ByHandProcedure {
  static let marker = "<!-- verify-by-hand:"

  static func script() throws -> String {
    let docs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent().appendingPathComponent("docs/ARCHIVE-FORMAT.md")
    let text = try String(contentsOf: docs, encoding: .utf8)
    guard let markerRange = text.range(of: marker),
      let start = text.range(of: "```sh\n", range: markerRange.upperBound..<text.endIndex),
      let end = text.range(of: "\n```\n", range: start.upperBound..<text.endIndex)
    else { throw TestHelperError("no verify-by-hand block in docs/ARCHIVE-FORMAT.md") }
    return String(text[start.upperBound..<end.lowerBound])
  }

  /// Runs the documented block with its three paths set to these.
  static func run(archive: String, ring: String, identity: String) throws -> ProcessResult {
    var lines = try script().components(separatedBy: "\n")
    #expect(lines[0].hasPrefix("archive=") && lines[1].hasPrefix("ring=") && lines[2].hasPrefix("identity="))
    lines[0] = "archive='\(archive)'"
    lines[1] = "ring='\(ring)'"
    lines[2] = "identity='\(identity)'"
    return try runProcess("/bin/bash", ["-c", lines.joined(separator: "\n")])
  }
}

@Suite struct ArchiveVerificationTests {
  /// A genuine archive verifies without the identity (file binding) and with it (manifest
  /// binding); the record beside it plays no part.
  @Test func genuineArchiveVerifiesWithAndWithoutTheIdentity() throws {
    let fixture = try SignedArchiveFixture()
    let verified = try ArchiveSigning.verifyFile(archivePath: fixture.archivePath, ring: fixture.ring)
    #expect(verified.keyID == fixture.key.keyID)
    #expect(verified.statement.userID == 42 && verified.statement.reason == "Scheduled")
    #expect(verified.statement.createdAt == fixture.manifest.createdAt)
    // Decrypting with stock tools, the manifest that comes out is the signed one.
    let manifestOut = try runProcess(
      "/bin/bash",
      [
        "-c", "age -d -i \"$1\" \"$2\" | tar --zstd -xOf - manifest.json", "x", fixture.identityPath,
        fixture.archivePath,
      ])
    #expect(try verified.statement.authenticateManifest(manifestOut.stdoutData, object: "a") == fixture.manifest)
    // An edited record changes nothing: it is never read.
    let record = FileSystem.parentDirectory(of: fixture.archivePath) + "/\(verified.statement.archiveID).json"
    try Data(#"{"verification": "full", "user_id": 7}"#.utf8).write(to: URL(fileURLWithPath: record))
    #expect(try ArchiveSigning.verifyFile(archivePath: fixture.archivePath, ring: fixture.ring) == verified)
  }

  /// The documented by-hand procedure passes on a genuine archive, and fails on each attack.
  @Test func theByHandProcedureVerifiesGenuineArchivesAndRefusesForgeries() throws {
    let fixture = try SignedArchiveFixture()
    let genuine = try ByHandProcedure.run(
      archive: fixture.archivePath, ring: fixture.ring.path, identity: fixture.identityPath)
    #expect(genuine.status == 0, "\(genuine.stdout)\(genuine.stderr)")
    #expect(genuine.stdout.contains("Signature Verified Successfully"))
    let id = try ArchiveSigning.verifyFile(archivePath: fixture.archivePath, ring: fixture.ring).statement.archiveID
    #expect(genuine.stdout.contains("OK: \(id) (user 42, "))
    print("by-hand procedure output:\n\(genuine.stdout)")

    // Moved, with its signature, into another user's directory.
    let moved = fixture.backups + "/users/user_43/" + (fixture.archivePath as NSString).lastPathComponent
    try FileSystem.makeDirectory(fixture.backups + "/users/user_43")
    try FileManager.default.copyItem(atPath: fixture.archivePath, toPath: moved)
    try FileManager.default.copyItem(
      atPath: fixture.signaturePath, toPath: ArchiveSigning.signaturePath(forArchive: moved)!)
    #expect(
      try ByHandProcedure.run(archive: moved, ring: fixture.ring.path, identity: fixture.identityPath).status != 0)

    // A forged archive (same manifest shape, the attacker's session) beside the genuine signature.
    let forged = try SignedArchiveFixture(key: SigningKey.generate())
    try FileManager.default.removeItem(atPath: forged.signaturePath)
    try FileManager.default.copyItem(atPath: fixture.signaturePath, toPath: forged.signaturePath)
    let forgedRun = try ByHandProcedure.run(
      archive: forged.archivePath, ring: fixture.ring.path, identity: forged.identityPath)
    #expect(forgedRun.status != 0)
    // The same forgery signed by the attacker's own key: not in this deployment's ring.
    let otherKey = try SignedArchiveFixture()
    let otherRun = try ByHandProcedure.run(
      archive: otherKey.archivePath, ring: fixture.ring.path, identity: otherKey.identityPath)
    #expect(otherRun.status != 0)
    #expect(otherRun.stdout.contains("not signed by this deployment's key"))
  }

  /// verifyFile refuses each attack with the one reason, naming the archive.
  @Test func verifyFileRefusesEachAttack() throws {
    let fixture = try SignedArchiveFixture()
    func refusal(_ path: String, ring: VerifyingKeyRing? = nil) -> StoreError? {
      #expect(throws: StoreError.self, "\(path) verified") {
        _ = try ArchiveSigning.verifyFile(archivePath: path, ring: ring ?? fixture.ring)
      }
    }
    func expectNotSigned(_ error: StoreError?, _ path: String, hint: String? = nil) {
      guard case .crypto(let object, let reason, let actualHint)? = error else {
        Issue.record("not a crypto refusal: \(String(describing: error))")
        return
      }
      #expect(object == path && reason == "not signed by this deployment's key")
      if let hint { #expect(actualHint.contains(hint), "\(actualHint)") }
    }
    let name = (fixture.archivePath as NSString).lastPathComponent
    let id = String(name.dropLast(ArchiveName.encryptedSuffix.count))

    // Renamed into another user's directory.
    let moved = fixture.backups + "/users/user_43/" + name
    try FileSystem.makeDirectory(fixture.backups + "/users/user_43")
    try FileManager.default.copyItem(atPath: fixture.archivePath, toPath: moved)
    try FileManager.default.copyItem(
      atPath: fixture.signaturePath, toPath: ArchiveSigning.signaturePath(forArchive: moved)!)
    expectNotSigned(refusal(moved), moved, hint: "its signature is for user_42/\(name)")

    // Renamed to a newer id, signature and all.
    let newerID = "20300101T000000Z-u42-" + id.suffix(6)
    let renamed = FileSystem.parentDirectory(of: fixture.archivePath) + "/\(newerID).tar.zst.age"
    try FileManager.default.copyItem(atPath: fixture.archivePath, toPath: renamed)
    try FileManager.default.copyItem(
      atPath: fixture.signaturePath, toPath: ArchiveSigning.signaturePath(forArchive: renamed)!)
    expectNotSigned(refusal(renamed), renamed, hint: "a signed archive was renamed or moved")

    // No signature file.
    let unsigned = FileSystem.parentDirectory(of: fixture.archivePath) + "/20300102T000000Z-u42-aaaaaa.tar.zst.age"
    try FileManager.default.copyItem(atPath: fixture.archivePath, toPath: unsigned)
    expectNotSigned(refusal(unsigned), unsigned, hint: "it has no signature file")

    // Passed off as unencrypted.
    let plain = FileSystem.parentDirectory(of: fixture.archivePath) + "/\(id).tar.zst"
    try FileManager.default.copyItem(atPath: fixture.archivePath, toPath: plain)
    expectNotSigned(refusal(plain), plain)

    // A byte changed, or cut short.
    var bytes = try Data(contentsOf: URL(fileURLWithPath: fixture.archivePath))
    bytes[bytes.count - 20] ^= 0x01
    try bytes.write(to: URL(fileURLWithPath: fixture.archivePath))
    expectNotSigned(refusal(fixture.archivePath), fixture.archivePath, hint: "the file is not the one that was signed")
    try bytes.prefix(bytes.count - 100).write(to: URL(fileURLWithPath: fixture.archivePath))
    expectNotSigned(refusal(fixture.archivePath), fixture.archivePath, hint: "the file is not the one that was signed")

    // Another deployment's ring.
    let strangers = VerifyingKeyRing(keys: [try SigningKey.generate().verifyingKey], path: "/elsewhere/signing.pub")
    let other = try SignedArchiveFixture()
    expectNotSigned(refusal(other.archivePath, ring: strangers), other.archivePath, hint: "which is not in /elsewhere")
  }

  /// A manifest whose entries were swapped is refused before it is parsed, even when the rest of
  /// the statement is genuine; a manifest that disagrees with a consistent statement too.
  @Test func swappedManifestsAreRefused() throws {
    let fixture = try SignedArchiveFixture()
    let statement = try ArchiveSigning.verifyFile(archivePath: fixture.archivePath, ring: fixture.ring).statement
    var swapped = fixture.manifest
    swapped.entries[0].sha256 = Digest.sha256Hex(Array("the attacker's session".utf8))
    let error = #expect(throws: StoreError.self) {
      _ = try statement.authenticateManifest(try swapped.encoded(), object: fixture.archivePath)
    }
    #expect(
      error?.errorDescription
        == "\(fixture.archivePath): not signed by this deployment's key; its manifest.json is not the signed one: do not trust it, use another backup"
    )
    // Not JSON at all: still the hash that refuses, before any parsing.
    #expect(throws: StoreError.self) { _ = try statement.authenticateManifest(Data("{".utf8), object: "a") }
  }
}

import Foundation
import Jobs
import Logging
import Store
import TestSupport
import Testing

/// Issue #19: list, check and prune take an archive's signature verdict from
/// `backups/.signatures` while its signature file is the one verified. A signature file changed
/// after its verdict was written, a damaged cache and a forged one are never trusted; the cache
/// holds no secret. Progress reaches the handler a caller passes, phase by phase.
@Suite struct SignatureVerdictCacheTests {
  static let logger = Logger(label: "test")

  /// A cache of `fleet`'s deployment, recording files however recently written.
  static func verdicts(_ fleet: TestFleet) throws -> SignatureVerdicts {
    try SignatureVerdicts(
      backupsDirectory: fleet.backupsDirectory,
      ring: try SigningAuthenticator.forDeployment(fleet.deployment).ring,
      signingKey: try KeyStore.loadSigningKey(fleet.deployment), racyInterval: 0)
  }

  /// Records a verdict on every archive of `fleet` and saves the cache.
  /// - Returns: how many verdicts it holds.
  static func prime(_ fleet: TestFleet) throws -> Int {
    let authenticator = try SigningAuthenticator.forDeployment(fleet.deployment)
    let repository = ArchiveRepository(backupsDirectory: fleet.backupsDirectory)
    let cache = try verdicts(fleet)
    let standings = authenticator.authenticity(of: try repository.listings(), in: repository, verdicts: cache)
    #expect(standings.allSatisfy { $0.isSigned })
    try cache.save(dropsUnused: true)
    return cache.count
  }

  /// The newest per-user archive of `userID`.
  static func userArchive(_ fleet: TestFleet, _ userID: Int64) throws -> ArchiveListing {
    let repository = ArchiveRepository(backupsDirectory: fleet.backupsDirectory)
    return try #require(
      try repository.listings(kind: .user).filter { $0.userID == userID }.max { $0.id < $1.id })
  }

  /// Changes one base64 digit of the signature in place (same inode, same size) and puts the
  /// modification time back: only the change time tells the file changed.
  static func tamper(signatureOf archivePath: String) throws {
    let path = try #require(ArchiveSigning.signaturePath(forArchive: archivePath))
    var bytes = [UInt8](try FileSystem.read(path))
    let modified = try #require(try FileManager.default.attributesOfItem(atPath: path)[.modificationDate] as? Date)
    let marker = Array("signature ".utf8)
    let start = try #require(
      (0...(bytes.count - marker.count)).first { bytes[$0..<($0 + marker.count)].elementsEqual(marker) })
    let index = start + marker.count + 20
    bytes[index] = bytes[index] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
    let handle = try #require(FileHandle(forWritingAtPath: path))
    try handle.write(contentsOf: bytes)
    try handle.close()
    try FileManager.default.setAttributes([.modificationDate: modified], ofItemAtPath: path)
  }

  @Test func aSignatureChangedAfterItsVerdictIsRejectedByListCheckPruneAndRestore() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 2, backedUp: true)
    let cached = try Self.prime(fleet)
    #expect(cached >= 3, "a full snapshot and two per-user archives")
    #expect(try Self.verdicts(fleet).count == cached, "the saved cache loads")
    let victim = try Self.userArchive(fleet, try fleet.sessionUserIDs()[0])
    let repository = ArchiveRepository(backupsDirectory: fleet.backupsDirectory)
    try Self.tamper(signatureOf: repository.path(of: victim))

    let listed = try fleet.listedArchives()
    #expect(listed.first { $0.id == victim.id }?.signature == .rejected)
    #expect(listed.filter { $0.id != victim.id }.allSatisfy { $0.signature == .signed })
    let check = try jsonObject(try fleet.tgsess(["check", "--no-write", "--json"]))
    #expect(check["rejectedArchives"] as? Int == 1)
    #expect(check["state"] as? String == "critical")
    let pruned = try jsonObject(try fleet.tgsessOK(["prune", "--dry-run", "--json"]))
    #expect(
      (pruned["rejectedArchives"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String } == [victim.id])
    let restore = try fleet.tgsess(["restore", victim.id, "--user", String(victim.userID ?? 0), "--dry-run"])
    #expect(restore.status != 0)
    #expect(restore.stderr.contains("not signed by this deployment's key"), "\(restore.stderr)")
  }

  /// backup decides "identity unchanged, no new per-user archive" only on a user's newest
  /// archive that is signed: a verdict is taken for that only while the signature is the one
  /// verified, so a signature changed after its verdict makes the user's identity count as
  /// changed (a new per-user archive), as without the cache.
  @Test func backupTakesVerdictsOnlyForTheSignatureVerified() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 3, backedUp: true)
    let users = try fleet.sessionUserIDs()
    let primed = try Self.prime(fleet)
    #expect(primed >= 4)
    let victim = try Self.userArchive(fleet, users[0])
    let repository = ArchiveRepository(backupsDirectory: fleet.backupsDirectory)
    try Self.tamper(signatureOf: repository.path(of: victim))

    let result = try decodeJSON(BackupResult.self, from: try fleet.tgsessOK(["backup", "--json"]))
    let perUser = result.archives.filter { $0.kind == .user }.compactMap(\.userID)
    #expect(perUser == [users[0]], "only the user whose newest archive's signature changed")
    #expect(result.unchangedUsers == users.count - 1)
    // The verdicts of the others were kept, not dropped (the tampered one was never recorded;
    // the new archives are younger than the 2 s a verdict needs).
    #expect(try Self.verdicts(fleet).count == primed)
  }

  @Test func aDamagedOrForgedCacheIsIgnoredAndRebuilt() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 2, backedUp: true)
    let cached = try Self.prime(fleet)
    let cachePath = SignatureVerdicts.path(backupsDirectory: fleet.backupsDirectory)
    let genuine = [UInt8](try FileSystem.read(cachePath))

    // Damaged: one byte in the middle.
    var damaged = genuine
    damaged[damaged.count / 2] ^= 0x01
    try Data(damaged).write(to: URL(fileURLWithPath: cachePath))
    #expect(try Self.verdicts(fleet).count == 0)
    #expect(try fleet.listedArchives().allSatisfy { $0.signature == .signed })
    #expect(try Self.prime(fleet) == cached, "rebuilt")

    // Forged: an archive signed by another key, and a verdict for it under the attacker's HMAC
    // key (the real one is derived from keys/signing.key, which the attacker cannot read).
    let users = try fleet.sessionUserIDs()
    let forged = try Forgery.archive(
      fleet.deployment, userID: users[0], users: [users[0]], at: Date().addingTimeInterval(86_400),
      signer: .foreignKey, suffix: "evil01")
    let signaturePath = try #require(ArchiveSigning.signaturePath(forArchive: forged.path))
    let attributes = try FileManager.default.attributesOfItem(atPath: signaturePath)
    let signature = try #require(try ArchiveSigning.readSignature(archivePath: forged.path))
    var info = stat()
    #expect(stat(signaturePath, &info) == 0)
    let genuineKeyID = try SigningAuthenticator.forDeployment(fleet.deployment).ring.keys[0].keyID
    let body =
      String(decoding: genuine, as: UTF8.self).split(separator: "\n").dropLast()
      .joined(separator: "\n") + "\n"
    let relative = "users/user_\(users[0])/" + (forged.path as NSString).lastPathComponent
    let line =
      "\(relative) \(info.st_dev) \(info.st_ino) \(attributes[.size] as? Int ?? 0) "
      + "\(Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec)) "
      + "\(Int64(info.st_ctim.tv_sec) * 1_000_000_000 + Int64(info.st_ctim.tv_nsec)) \(genuineKeyID) "
      + "\(signature.statement.fileByteCount) \(signature.statement.fileSHA256) "
      + "\(signature.statement.manifestSHA256) Manual\n"
    let forgedBody = Array((body + line).utf8)
    let attackerKey = SecretBytes(copying: try SecureRandom.bytes(32))
    let tag = try HMACSHA256.authenticate(key: attackerKey, data: forgedBody)
    try Data(forgedBody + Array("hmac \(Hex.encode(tag))\n".utf8)).write(to: URL(fileURLWithPath: cachePath))
    #expect(try Self.verdicts(fleet).count == 0)
    #expect(try fleet.listedArchives().first { $0.id == forged.id }?.signature == .rejected)
    let pruned = try jsonObject(try fleet.tgsessOK(["prune", "--dry-run", "--json"]))
    #expect((pruned["rejectedArchives"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String } == [forged.id])
    let check = try jsonObject(try fleet.tgsess(["check", "--no-write", "--json"]))
    #expect(check["rejectedArchives"] as? Int == 1)
  }

  @Test func theCacheHoldsNoSecret() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 3, backedUp: true, collectsSecrets: true)
    #expect(try Self.prime(fleet) > 0)
    let text = try String(
      contentsOfFile: SignatureVerdicts.path(backupsDirectory: fleet.backupsDirectory), encoding: .utf8)
    fleet.keep("backups/.signatures", text, "")
    #expect(fleet.secretCount > 0)
    #expect(try fleet.leakedSecrets().isEmpty)
    // Nor the signing key, in any spelling its file or a hex dump would give.
    let pem = try String(
      decoding: KeyStore.loadSigningKey(fleet.deployment).pkcs8PEM().withPointer {
        Data(bytes: $0, count: $1)
      }, as: UTF8.self)
    let body = pem.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
    let der = try #require(Data(base64Encoded: body))
    let seed = Array(der.suffix(32))
    for form in [body, Hex.encode(seed), Hex.encode(seed).uppercased(), Data(seed).base64EncodedString()] {
      #expect(!text.contains(form))
    }
  }

  /// The bench's planting (scripts/bench.sh): hard links of user `sourceUser`'s newest archive
  /// under new ids, users and times, each with a record and a signature made with the
  /// deployment's key (by Python's cryptography) as tgsess signs.
  static let plantScript = #"""
    import base64, datetime, hashlib, json, os, sys
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key
    users_dir, src, n, keyfile = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    stem = src[: -len(".tar.zst.age")]
    record = json.load(open(stem + ".json"))
    fields = dict(l.split(" ", 1) for l in open(stem + ".sig").read().splitlines()[1:])
    key = load_pem_private_key(open(keyfile, "rb").read(), None)
    key_id = hashlib.sha256(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()[:16]
    base = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    for i in range(n):
        uid = 900000000 + i // 10
        d = os.path.join(users_dir, "user_%d" % uid)
        os.makedirs(d, exist_ok=True)
        t = base + datetime.timedelta(minutes=i)
        aid = "%s-u%d-b%05d" % (t.strftime("%Y%m%dT%H%M%SZ"), uid, i)
        os.link(src, os.path.join(d, aid + ".tar.zst.age"))
        r = dict(record, id=aid, file_name=aid + ".tar.zst.age", user_id=uid, created_at=t.strftime("%Y-%m-%dT%H:%M:%SZ"))
        with open(os.path.join(d, aid + ".json"), "w") as f:
            json.dump(r, f)
        lines = ["tgsess archive signature v1", "id " + aid, "kind user", "user %d" % uid,
                 "created " + t.strftime("%Y-%m-%dT%H:%M:%SZ"), "reason " + fields["reason"], "encryption age",
                 "file-size " + fields["file-size"], "file-sha256 " + fields["file-sha256"],
                 "manifest-sha256 " + fields["manifest-sha256"], "key " + key_id]
        signed = "".join(l + "\n" for l in lines).encode()
        with open(os.path.join(d, aid + ".sig"), "wb") as f:
            f.write(signed + b"signature " + base64.b64encode(key.sign(signed)) + b"\n")
    """#

  /// Plants `count` signed per-user archives of 10 each into `fleet` (see `plantScript`).
  static func plantSigned(_ fleet: TestFleet, count: Int) throws {
    let source = try userArchive(fleet, try fleet.sessionUserIDs()[0])
    let repository = ArchiveRepository(backupsDirectory: fleet.backupsDirectory)
    let result = try runPython(
      plantScript,
      arguments: [
        fleet.backupsDirectory + "/users", repository.path(of: source), String(count), fleet.deployment.signingKeyPath,
      ])
    try #require(result.status == 0, "\(result.stderr)")
  }

  @Test func aLargeCacheIsReadInPiecesAndACutOrDamagedOneIsIgnoredWhole() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 2, backedUp: true)
    try Self.plantSigned(fleet, count: 2_000)
    let cold = try fleet.tgsessOK(["prune", "--dry-run"]).stdout
    let cached = try Self.prime(fleet)
    #expect(cached >= 2_003)
    let cachePath = SignatureVerdicts.path(backupsDirectory: fleet.backupsDirectory)
    let genuine = [UInt8](try FileSystem.read(cachePath))
    #expect(genuine.count > 2 * 256 * 1024, "more than two of the pieces it is read in")
    #expect(try Self.verdicts(fleet).count == cached, "read back whole across the pieces")
    // The plan from the cache is the plan from the signatures.
    #expect(try fleet.tgsessOK(["prune", "--dry-run"]).stdout == cold)

    // Cut anywhere (mid-line, at a line's end, before the HMAC line, before its line break), a
    // byte changed anywhere, or a line after the HMAC's: nothing of the file is used.
    let lineEnds = genuine.indices.filter { genuine[$0] == UInt8(ascii: "\n") }
    var variants: [(String, [UInt8])] = []
    for cut in [lineEnds[0] + 1, genuine.count / 2, lineEnds[lineEnds.count / 2] + 1, lineEnds[lineEnds.count - 2] + 1]
      + [genuine.count - 1]
    {
      variants.append(("cut at \(cut) of \(genuine.count)", Array(genuine[..<cut])))
    }
    for index in [40, 256 * 1024 + 7, genuine.count / 2, lineEnds[lineEnds.count - 2] - 3, genuine.count - 9] {
      var damaged = genuine
      damaged[index] ^= 0x01
      variants.append(("byte \(index) of \(genuine.count) changed", damaged))
    }
    variants.append(("a line after the HMAC's", genuine + genuine[(lineEnds[0] + 1)...lineEnds[1]]))
    for (what, bytes) in variants {
      try Data(bytes).write(to: URL(fileURLWithPath: cachePath))
      #expect(try Self.verdicts(fleet).count == 0, "\(what)")
    }
    // A cache read as empty costs time, nothing else: the same plan, and it is rebuilt.
    #expect(try fleet.tgsessOK(["prune", "--dry-run"]).stdout == cold)
    #expect(try Self.prime(fleet) == cached)
  }

  @Test func aSignatureDatedBefore1970DoesNotVoidTheOtherVerdicts() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 2, backedUp: true)
    let repository = ArchiveRepository(backupsDirectory: fleet.backupsDirectory)
    let victim = try Self.userArchive(fleet, try fleet.sessionUserIDs()[0])
    let signaturePath = try #require(ArchiveSigning.signaturePath(forArchive: repository.path(of: victim)))
    // A time the cache's line cannot hold (it has no sign): that file is verified every run.
    try FileManager.default.setAttributes(
      [.modificationDate: Date(timeIntervalSince1970: -86_400)], ofItemAtPath: signaturePath)
    let cached = try Self.prime(fleet)
    #expect(cached == (try repository.listings().count) - 1)
    #expect(try Self.verdicts(fleet).count == cached, "the saved cache loads")
    #expect(try fleet.listedArchives().allSatisfy { $0.signature == .signed })
  }

  @Test func pruneAndCheckReportTheirProgressPhaseByPhase() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 3, backedUp: true)
    let seen = ProgressLog()
    let archives = try ArchiveRepository(backupsDirectory: fleet.backupsDirectory).listings().count
    _ = try PruneJob.run(
      fleet.deployment, options: PruneOptions(isDryRun: true), logger: Self.logger, progress: seen.add)
    #expect(seen.last("signatures") == JobProgress(phase: "signatures", done: archives, total: archives))
    #expect(seen.last("removing") == nil, "a dry run removes nothing")
    let checked = ProgressLog()
    _ = CheckJob.run(
      fleet.deployment, options: CheckOptions(writesResults: false), logger: Self.logger, progress: checked.add)
    #expect(checked.last("session files") == JobProgress(phase: "session files", done: 3, total: 3))
    #expect(checked.last("signatures") == JobProgress(phase: "signatures", done: archives, total: archives))
    #expect(checked.phases.first == "database")
  }
}

/// The progress a job reported, in order.
final class ProgressLog: @unchecked Sendable {
  private let lock = NSLock()
  private var reports: [JobProgress] = []

  func add(_ progress: JobProgress) { lock.withLock { reports.append(progress) } }

  /// The phases in the order they started.
  var phases: [String] {
    lock.withLock { reports.map(\.phase).reduce(into: []) { if $0.last != $1 { $0.append($1) } } }
  }

  /// The furthest report of `phase` (the most items done).
  func last(_ phase: String) -> JobProgress? {
    lock.withLock { reports.filter { $0.phase == phase }.max { $0.done < $1.done } }
  }
}

import Foundation
import Jobs
import Store
import TestSupport
import Testing

/// Issue #15: an archive is this deployment's only when its signature says so. Forgeries made
/// with the public recipient alone (`Forgery`), and attacks on genuine archives (renamed,
/// replayed, re-encrypted with swapped entries, records edited, another deployment's), are never
/// listed as verified, selected, counted, pushed or restored; legacy archives are vouched for
/// once by `tgsess keys sign-existing`.
@Suite struct SignedArchiveTests {
  /// The fingerprint of the auth key in a session file.
  static func authKey(_ path: String) throws -> String {
    try SessionFileInspector.inspect(path: path).identity.authKey.fingerprint
  }

  /// The findings `check --json` printed, as (check, state, message).
  static func findings(_ result: ProcessResult) throws -> [(check: String, state: String, message: String)] {
    let object = try jsonObject(result)
    return (object["findings"] as? [[String: Any]] ?? []).map {
      ($0["check"] as? String ?? "", $0["state"] as? String ?? "", $0["message"] as? String ?? "")
    }
  }

  @Test func forgedArchivesAreNeverListedVerifiedSelectedCountedOrRestored() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 3)
    let victim = try fleet.telethonUserIDs(1)[0]
    try fleet.tgsessOK(["backup"])
    let genuineKey = try Self.authKey(fleet.sessionPath(victim))
    let users = try fleet.sessionUserIDs()
    // Newer than anything genuine, as the attacker made them.
    let later = Date().addingTimeInterval(86_400)
    let forged = [
      try Forgery.archive(fleet.deployment, userID: victim, users: [victim], at: later, suffix: "evil01"),
      try Forgery.archive(
        fleet.deployment, userID: victim, users: [victim], at: later, signer: .foreignKey, suffix: "evil02"),
      try Forgery.archive(fleet.deployment, userID: nil, users: users, at: later, suffix: "evil03"),
      try Forgery.archive(
        fleet.deployment, userID: nil, users: users, at: later, signer: .foreignKey, suffix: "evil04"),
    ]
    let forgedIDs = Set(forged.map(\.id))

    // list: never "verified"; unsigned or rejected, with why.
    let listed = try jsonArray(try fleet.tgsessOK(["list", "--json"]))
    let rows = Dictionary(uniqueKeysWithValues: listed.map { ($0["id"] as? String ?? "", $0) })
    #expect(Set(rows.keys).isSuperset(of: forgedIDs))
    for id in forgedIDs {
      #expect(rows[id]?["verification"] == nil, "\(id) listed as verified: \(rows[id] ?? [:])")
    }
    #expect(rows[forged[0].id]?["signature"] as? String == "unsigned")
    #expect(rows[forged[2].id]?["signature"] as? String == "unsigned")
    for rejected in [forged[1], forged[3]] {
      #expect(rows[rejected.id]?["signature"] as? String == "rejected")
      #expect((rows[rejected.id]?["rejection"] as? String)?.hasPrefix("not signed by this deployment's key") == true)
    }
    #expect(
      listed.filter { !forgedIDs.contains($0["id"] as? String ?? "") }.allSatisfy {
        $0["signature"] as? String == "signed" && $0["verification"] as? String == "full"
      })
    let text = try fleet.tgsessOK(["list"]).stdout.split(separator: "\n")
    for line in text where forgedIDs.contains(String(line.split(separator: " ")[0])) {
      #expect(line.hasSuffix("unsigned   -") || line.hasSuffix("rejected   -"), "\(line)")
    }

    // restore by id: refused with one line naming the archive; nothing changes.
    let tree = try fleet.tree()
    for archive in forged {
      for arguments in [["--user", String(victim), "--force"], ["--force"], ["--target", fleet.directory.file("t")]]
      where archive.id.contains("-u") || arguments.first != "--user" {
        let refused = try fleet.tgsess(["restore", archive.id] + arguments)
        #expect(refused.status == 1, "\(archive.id) \(arguments): \(refused.stdout)")
        #expect(
          refused.stderr.hasPrefix("tgsess: restore: \(archive.path): not signed by this deployment's key; "),
          "\(refused.stderr)")
        #expect(refused.stderr.split(separator: "\n").count == 1)
        #expect(try fleet.tree() == tree)
        #expect(!FileManager.default.fileExists(atPath: fleet.directory.file("t")))
      }
    }
    // restore latest: the forgeries are not candidates; the genuine archives are.
    let plan = try jsonObject(
      try fleet.tgsessOK(["restore", "latest", "--user", String(victim), "--dry-run", "--json"]))
    #expect(!forgedIDs.contains(plan["archiveID"] as? String ?? ""), "\(plan)")
    let whole = try jsonObject(try fleet.tgsessOK(["restore", "latest", "--dry-run", "--json"]))
    #expect(!forgedIDs.contains(whole["archiveID"] as? String ?? ""), "\(whole)")
    try fleet.tgsessOK(["restore", "latest", "--user", String(victim), "--force"])
    #expect(try Self.authKey(fleet.sessionPath(victim)) == genuineKey)

    // recover (strategy 3): the user's file comes from a genuine archive, never a forgery.
    try FileManager.default.removeItem(atPath: fleet.sessionPath(victim))
    try fleet.sqlite("UPDATE user_sessions SET session_string = NULL WHERE user_id = \(victim)")
    let recover = try jsonObject(try fleet.tgsessOK(["recover", "--user", String(victim), "--json"]))
    let outcome = try #require((recover["users"] as? [[String: Any]])?.first)
    #expect(outcome["outcome"] as? String == "recovered", "\(outcome)")
    #expect(!forgedIDs.contains(((outcome["source"] as? String) ?? "").replacingOccurrences(of: "archive ", with: "")))
    #expect(try Self.authKey(fleet.sessionPath(victim)) == genuineKey)

    // drill: latest is a genuine full snapshot; a forged one is refused.
    let drill = try jsonObject(try fleet.tgsess(["drill", "--json"]))
    #expect(!forgedIDs.contains(drill["archive_id"] as? String ?? ""), "\(drill)")
    #expect(drill["per_user_archives_checked"] as? Int == users.count)
    for archive in [forged[2], forged[3]] {
      let refused = try fleet.tgsess(["drill", "--from", archive.id])
      #expect(refused.status == 1)
      #expect(refused.stderr.contains("\(archive.path): not signed by this deployment's key"), "\(refused.stderr)")
    }

    // check: the rejected ones are CRITICAL, named; the unsigned ones a WARNING with the fix.
    let check = try fleet.tgsess(["check", "--no-write", "--json"])
    #expect(check.status == 2)
    let signature = try Self.findings(check).filter { $0.check == "backup.signature" }
    let critical = try #require(signature.first { $0.state == "critical" })
    #expect(critical.message.contains("2 archive(s)") && critical.message.contains("someone wrote to backups/"))
    #expect(critical.message.contains(forged[1].id) && critical.message.contains(forged[3].id))
    let warning = try #require(signature.first { $0.state == "warning" })
    #expect(warning.message.contains("2 archive(s)") && warning.message.contains("tgsess keys sign-existing"))

    // prune: neither counted (the victim's newest genuine archive is the one kept) nor removed.
    let own = try jsonArray(try fleet.tgsessOK(["list", "--json", "--user", String(victim), "--kind", "user"]))
    let newestGenuine = try #require(own.first { !forgedIDs.contains($0["id"] as? String ?? "") }?["id"] as? String)
    let pruned = try jsonObject(try fleet.tgsessOK(["prune", "--keep-per-user", "1", "--json"]))
    #expect(Set(pruned["unsignedArchives"] as? [String] ?? []) == [forged[0].id, forged[2].id])
    #expect(
      Set((pruned["rejectedArchives"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String })
        == [forged[1].id, forged[3].id])
    let after = Set(try jsonArray(try fleet.tgsessOK(["list", "--json"])).compactMap { $0["id"] as? String })
    #expect(after.contains(newestGenuine))
    #expect(after.isSuperset(of: forgedIDs))
  }

  /// Genuine archives, attacked: a record edited; a manifest kept (its signature valid) over
  /// entries swapped and re-encrypted to the public recipient; another deployment's signed
  /// archive; an older archive replayed under a newer name with its signature. Each is refused.
  @Test func attacksOnGenuineArchivesAreRefused() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 3)
    let users = try fleet.telethonUserIDs(2)
    let (victim, other) = (users[0], users[1])
    try fleet.tgsessOK(["backup"])
    let repository = ArchiveRepository(backupsDirectory: fleet.deployment.backupsDirectory)
    let genuine = try #require(try repository.list(kind: .user, userID: victim).first)
    let genuineFull = try #require(try repository.list(kind: .full).first)

    // 1. Its record edited: id, time, user, reason, verification. list and restore go by the
    // signature; the record's claims lead nowhere.
    let recordPath = repository.userDirectory(victim) + "/" + genuine.id + ArchiveName.recordSuffix
    var record = try #require(
      JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: recordPath)))
        as? [String: Any])
    let claimedID = "20990101T000000Z-u\(other)-zzzzzz"
    record["id"] = claimedID
    record["created_at"] = "2099-01-01T00:00:00Z"
    record["user_id"] = other
    record["reason"] = "Manual"
    record["verification"] = "full"
    try JSONSerialization.data(withJSONObject: record).write(to: URL(fileURLWithPath: recordPath))
    let row = try #require(
      try jsonArray(try fleet.tgsessOK(["list", "--json"])).first {
        $0["path"] as? String == repository.path(of: genuine)
      })
    #expect(row["id"] as? String == genuine.id)
    #expect((row["userID"] as? NSNumber)?.int64Value == victim)
    #expect(row["reason"] as? String == genuine.reason)
    #expect(row["createdAt"] as? String == ISO8601DateFormatter().string(from: genuine.createdAt))
    #expect(row["signature"] as? String == "signed")
    let byClaim = try fleet.tgsess(["restore", claimedID])
    #expect(byClaim.status == 1 && byClaim.stderr.contains("not found"), "\(byClaim.stderr)")
    let otherPlan = try jsonObject(
      try fleet.tgsessOK(["restore", "latest", "--user", String(other), "--dry-run", "--json"]))
    #expect(otherPlan["archiveID"] as? String != genuine.id)

    // 2. The full snapshot re-encrypted to the public recipient with two sessions swapped, its
    // signed manifest kept as it was; then with a manifest that matches the swap.
    let fullPath = repository.path(of: genuineFull)
    let original = try Data(contentsOf: URL(fileURLWithPath: fullPath))
    let work = fleet.directory.file("swap")
    let (a, b) = ("sessions/user_\(victim).session", "sessions/user_\(other).session")
    let swap = """
      set -euo pipefail
      mkdir -p "$W/x" && age -d -i "$ID" "$ARCHIVE" | tar --zstd -xf - -C "$W/x"
      mv "$W/x/$A" "$W/t" && mv "$W/x/$B" "$W/x/$A" && mv "$W/t" "$W/x/$B"
      if [ "$REHASH" = 1 ]; then
        python3 - "$W/x" "$A" "$B" <<'PY'
      import hashlib, json, sys
      d, a, b = sys.argv[1:]
      m = json.load(open(d + '/manifest.json'))
      for e in m['entries']:
          if e['path'] in (a, b):
              data = open(d + '/' + e['path'], 'rb').read()
              e['sha256'], e['size'] = hashlib.sha256(data).hexdigest(), len(data)
      json.dump(m, open(d + '/manifest.json', 'w'))
      PY
      fi
      names=$(cd "$W/x" && find . -type f ! -name manifest.json | sed 's|^\\./||' | sort)
      (cd "$W/x" && tar --zstd -cf - manifest.json $names) | age -R "$RECIPIENTS" > "$ARCHIVE"
      rm -rf "$W/x"
      """
    for rehash in ["0", "1"] {
      try original.write(to: URL(fileURLWithPath: fullPath))
      let built = try runProcess(
        "/bin/bash", ["-c", swap],
        environment: [
          "W": work, "ID": fleet.deployment.ageIdentityPath, "ARCHIVE": fullPath, "A": a, "B": b,
          "REHASH": rehash, "RECIPIENTS": fleet.deployment.ageRecipientsPath,
        ])
      try #require(built.status == 0, "\(built.stderr)")
      let tree = try fleet.tree()
      for arguments in [[genuineFull.id], ["latest"]] {
        let target = fleet.directory.file("target")
        let refused = try fleet.tgsess(["restore"] + arguments + ["--target", target])
        #expect(refused.status == 1, "\(rehash) \(arguments): \(refused.stdout)")
        let reasons =
          rehash == "1"
          ? ["not signed by this deployment's key; its manifest.json is not the signed one"]
          : ["does not match its SHA-256 in the manifest", "not signed by this deployment's key"]
        #expect(
          refused.stderr.hasPrefix("tgsess: restore: \(fullPath): ")
            && reasons.contains { refused.stderr.contains($0) },
          "\(rehash): \(refused.stderr)")
        #expect(!FileManager.default.fileExists(atPath: target))
        #expect(try fleet.tree() == tree)
      }
    }
    try original.write(to: URL(fileURLWithPath: fullPath))

    // 3. A genuine archive of another deployment (its own keys), signature and record included.
    let foreign = try TestFleet(users: 3)
    try foreign.tgsessOK(["backup"])
    let theirs = try #require(
      try ArchiveRepository(backupsDirectory: foreign.deployment.backupsDirectory).list(kind: .user, userID: victim)
        .first)
    let theirPath = ArchiveRepository(backupsDirectory: foreign.deployment.backupsDirectory).path(of: theirs)
    for suffix in [ArchiveName.encryptedSuffix, ArchiveSignature.fileSuffix, ArchiveName.recordSuffix] {
      let name = theirs.id + suffix
      try FileManager.default.copyItem(
        atPath: FileSystem.parentDirectory(of: theirPath) + "/" + name,
        toPath: repository.userDirectory(victim) + "/" + name)
    }
    let placed = repository.userDirectory(victim) + "/" + theirs.fileName
    let foreignRefusal = try fleet.tgsess(["restore", theirs.id, "--force"])
    #expect(foreignRefusal.status == 1)
    #expect(
      foreignRefusal.stderr.hasPrefix(
        "tgsess: restore: \(placed): not signed by this deployment's key; it names key "),
      "\(foreignRefusal.stderr)")
    #expect(foreignRefusal.stderr.contains("which is not in \(fleet.root)/keys/signing.pub"))

    // 4. An older genuine archive replayed as newer: copied, with its signature and record, under
    // a newer id in the same directory.
    let replayID = "20990101T000000Z-u\(victim)-replay"
    for suffix in [ArchiveName.encryptedSuffix, ArchiveSignature.fileSuffix, ArchiveName.recordSuffix] {
      try FileManager.default.copyItem(
        atPath: repository.userDirectory(victim) + "/" + genuine.id + suffix,
        toPath: repository.userDirectory(victim) + "/" + replayID + suffix)
    }
    let replayPath = repository.userDirectory(victim) + "/" + replayID + ArchiveName.encryptedSuffix
    let listed = try jsonArray(try fleet.tgsessOK(["list", "--json", "--user", String(victim)]))
    #expect(listed.first { $0["id"] as? String == replayID }?["signature"] as? String == "rejected")
    #expect(listed.first { $0["id"] as? String == theirs.id }?["signature"] as? String == "rejected")
    let latest = try jsonObject(
      try fleet.tgsessOK(["restore", "latest", "--user", String(victim), "--dry-run", "--json"]))
    #expect(latest["archiveID"] as? String == genuine.id)
    let replayed = try fleet.tgsess(["restore", replayID, "--force"])
    #expect(replayed.status == 1)
    #expect(
      replayed.stderr
        == "tgsess: restore: \(replayPath): not signed by this deployment's key; its signature is for user_\(victim)/\(genuine.fileName); a signed archive was renamed or moved: do not trust it, use another backup\n"
    )
  }

  /// A forgery pushed straight into the remote's folder, and restored on a new host from the
  /// remote alone with the escrowed key ring; and a forgery planted locally, which push refuses.
  @Test func forgeriesOnARemoteAreNeverRestoredAndForgeriesHereAreNeverPushed() throws {
    try OffsiteTests.requireRclone()
    try Tools.require()
    let fleet = try TestFleet(users: 3)
    let remote = fleet.directory.file("remote")
    try OffsiteTests.configure(fleet, remotes: [("usb", remote)])
    try fleet.tgsessOK(["backup"])
    let users = try fleet.sessionUserIDs()
    let originalKeys = try Dictionary(uniqueKeysWithValues: users.map { ($0, try Self.authKey(fleet.sessionPath($0))) })
    let later = Date().addingTimeInterval(86_400)
    let onRemote = [
      try Forgery.archive(
        fleet.deployment, userID: nil, users: users, at: later, suffix: "evil01", into: remote + "/host-a"),
      try Forgery.archive(
        fleet.deployment, userID: nil, users: users, at: later, signer: .foreignKey, suffix: "evil02",
        into: remote + "/host-a"),
    ]
    // A new host: the config, the escrowed identity and signing.pub.
    let newHost = fleet.directory.file("new-host")
    try FileSystem.makeDirectory(newHost + "/keys")
    try FileManager.default.copyItem(atPath: fleet.root + "/tgsess.toml", toPath: newHost + "/tgsess.toml")
    try FileManager.default.copyItem(
      atPath: fleet.root + "/keys/age-identity.txt", toPath: newHost + "/keys/age-identity.txt")
    let ring = fleet.directory.file("escrow-signing.pub")
    try FileManager.default.copyItem(atPath: fleet.root + "/keys/signing.pub", toPath: ring)
    let verify = ["--root", newHost, "--verify-key", ring]
    let listed = try jsonArray(try runTgsess(["list", "--remote", "usb", "--json"] + verify))
    for forged in onRemote {
      let row = listed.first { $0["id"] as? String == forged.id }
      #expect(row?["verification"] == nil && ["unsigned", "rejected"].contains(row?["signature"] as? String ?? ""))
    }
    let target = fleet.directory.file("restored")
    let restore = try runTgsess(["restore", "latest", "--from-remote", "usb", "--target", target, "--json"] + verify)
    #expect(restore.status == 0, "\(restore.stderr)")
    #expect(!onRemote.map(\.id).contains(try jsonObject(restore)["archiveID"] as? String ?? ""))
    for user in users {
      #expect(try Self.authKey(target + "/sessions/user_\(user).session") == originalKeys[user])
    }
    for forged in onRemote {
      let elsewhere = fleet.directory.file("restored-\(forged.id)")
      let refused = try runTgsess(["restore", forged.id, "--from-remote", "usb", "--target", elsewhere] + verify)
      #expect(refused.status == 1)
      #expect(refused.stderr.contains("not signed by this deployment's key"), "\(refused.stderr)")
      #expect(!FileManager.default.fileExists(atPath: elsewhere))
    }
    let drill = try jsonObject(try runTgsess(["drill", "--from-remote", "usb", "--json"] + verify))
    #expect(!onRemote.map(\.id).contains(drill["archive_id"] as? String ?? ""))

    // Planted here: push never copies them, and says so.
    let victim = users[0]
    let planted = [
      try Forgery.archive(fleet.deployment, userID: victim, users: [victim], at: later, suffix: "evil03"),
      try Forgery.archive(
        fleet.deployment, userID: victim, users: [victim], at: later, signer: .foreignKey, suffix: "evil04"),
    ]
    let push = try fleet.tgsess(["push", "--json"], environment: ["TGSESS_RETRY_BASE_MS": "1"])
    #expect(push.status == 3, "\(push.stderr)")
    let outcome = try #require((try jsonObject(push)["remotes"] as? [[String: Any]])?.first)
    #expect((outcome["refused"] as? [[String: Any]])?.compactMap { $0["id"] as? String } == [planted[1].id])
    #expect(outcome["unsignedSkipped"] as? Int == 1)
    #expect((outcome["error"] as? String)?.contains("refused to push 1 archive(s) that fail authentication") == true)
    let there = OffsiteTests.archiveNames(under: remote + "/host-a")
    #expect(!there.contains { $0.contains("evil03") || $0.contains("evil04") })
    let text = try fleet.tgsess(["push"], environment: ["TGSESS_RETRY_BASE_MS": "1"])
    #expect(
      text.stdout.contains("1 unsigned archive(s) not pushed; if this host made them, run: tgsess keys sign-existing"))
    #expect(text.stdout.contains(planted[1].path), "\(text.stdout)")
  }

  /// Key files that group or others can read (the signing key) or change (the key ring) are
  /// refused by backup and restore, with the chmod to run; a missing signing key stops backup
  /// with the fix, which `tgsess init` makes without touching any other key.
  @Test func looseOrMissingSigningKeyFilesAreRefused() throws {
    let fleet = try TestFleet(users: 2)
    let user = try fleet.sessionUserIDs()[0]
    try fleet.tgsessOK(["backup"])
    let key = fleet.root + "/keys/signing.key"
    let ring = fleet.root + "/keys/signing.pub"
    let tree = try fleet.tree()

    #expect(chmod(key, 0o640) == 0)
    let loose = try fleet.tgsess(["backup"])
    #expect(loose.status == 1)
    #expect(loose.stderr.hasPrefix("tgsess: backup: \(key): mode 640"), "\(loose.stderr)")
    #expect(loose.stderr.hasSuffix("; run: chmod 600 \(key)\n"), "\(loose.stderr)")
    #expect(chmod(key, 0o600) == 0)

    #expect(chmod(ring, 0o620) == 0)
    for arguments in [["backup"], ["restore", "latest", "--user", String(user), "--dry-run"]] {
      let refused = try fleet.tgsess(arguments)
      #expect(refused.status == 1, "\(arguments)")
      #expect(
        refused.stderr.contains(
          "\(ring): mode 620 lets group or others change the keys archives are verified with; run: chmod 600 \(ring)"),
        "\(refused.stderr)")
    }
    #expect(chmod(ring, 0o600) == 0)
    #expect(try fleet.tree() == tree)

    let otherKeys = try ["age-identity.txt", "age-recipients.txt", "fernet.keys"].map {
      try FileSystem.sha256(ofFile: fleet.root + "/keys/" + $0)
    }
    try FileManager.default.removeItem(atPath: key)
    let missing = try fleet.tgsess(["backup"])
    #expect(missing.status == 1)
    #expect(
      missing.stderr
        == "tgsess: backup: \(key): not found; run tgsess init: it adds the archive signing key and keeps every other key\n"
    )
    try fleet.tgsessOK(["init"])
    #expect(
      try ["age-identity.txt", "age-recipients.txt", "fernet.keys"].map {
        try FileSystem.sha256(ofFile: fleet.root + "/keys/" + $0)
      } == otherKeys)
    try fleet.tgsessOK(["backup"])
    // The archives the old key signed still verify: its public key stayed in the ring.
    let listed = try jsonArray(try fleet.tgsessOK(["list", "--json"]))
    #expect(listed.allSatisfy { $0["signature"] as? String == "signed" })
    #expect(Set(listed.compactMap { $0["keyID"] as? String }).count == 2)
  }

  /// Legacy archives (written before archives were signed: the "Imported" ones migrate makes and
  /// regular ones, their signatures removed) are refused until vouched for, restore only with
  /// --allow-unsigned (which names them), and `keys sign-existing` signs each one it re-verifies
  /// in full, never a tampered one.
  @Test func signExistingVouchesForLegacyArchivesButNeverForATamperedOne() throws {
    try StockTools.require()
    let fleet = try TestFleet(
      users: 4, legacy: true, entities: 120, collectsSecrets: true, location: .subdirectory("fleet"))
    try #require(try fleet.tgsess(["init"]).status == 0)
    #expect(try fleet.tgsess(["backup"]).status == 0)
    let user = try fleet.telethonUserIDs()[0]
    let repository = ArchiveRepository(backupsDirectory: fleet.backupsDirectory)
    let all = try repository.list()
    #expect(all.contains { $0.reason == "Imported" })
    for record in all { try TestSigning.unsign(repository.path(of: record)) }
    // One of them damaged on disk (a flipped bit in the ciphertext).
    let tampered = try #require(all.first { $0.kind == .user && $0.userID != user && $0.reason != "Imported" })
    var bytes = try Data(contentsOf: URL(fileURLWithPath: repository.path(of: tampered)))
    bytes[bytes.count / 2] ^= 0x20
    try bytes.write(to: URL(fileURLWithPath: repository.path(of: tampered)))

    let refused = try fleet.tgsess(["restore", "latest", "--user", String(user), "--dry-run"])
    #expect(refused.status == 1)
    #expect(refused.stderr.contains("no signed archive holds user \(user)"), "\(refused.stderr)")
    #expect(refused.stderr.contains("tgsess keys sign-existing, or pass --allow-unsigned"), "\(refused.stderr)")
    let allowed = try fleet.tgsess(["restore", "latest", "--user", String(user), "--dry-run", "--allow-unsigned"])
    #expect(allowed.status == 0, "\(allowed.stderr)")
    #expect(allowed.stdout.contains("warning: archive "), "\(allowed.stdout)")
    #expect(allowed.stdout.contains("is not signed"), "\(allowed.stdout)")

    let dryRun = try fleet.tgsess(["keys", "sign-existing", "--dry-run", "--json"])
    #expect(dryRun.status == 3)
    #expect(
      try repository.list().allSatisfy {
        !FileSystem.exists(ArchiveSigning.signaturePath(forArchive: repository.path(of: $0))!)
      })
    let signing = try jsonObject(try fleet.tgsess(["keys", "sign-existing", "--json"]))
    #expect(Set(signing["signed"] as? [String] ?? []) == Set(all.map(\.id)).subtracting([tampered.id]))
    let failed = try #require((signing["failed"] as? [[String: Any]])?.first)
    #expect(failed["id"] as? String == tampered.id)
    #expect((failed["reason"] as? String)?.isEmpty == false)
    #expect(!FileSystem.exists(ArchiveSigning.signaturePath(forArchive: repository.path(of: tampered))!))

    let listed = try jsonArray(try fleet.tgsess(["list", "--json"]))
    for row in listed {
      #expect(row["signature"] as? String == (row["id"] as? String == tampered.id ? "unsigned" : "signed"))
    }
    #expect(listed.contains { $0["reason"] as? String == "Imported" && $0["signature"] as? String == "signed" })
    let restored = try fleet.tgsess(["restore", "latest", "--user", String(user), "--dry-run"])
    #expect(restored.status == 0, "\(restored.stderr)")
    #expect(!restored.stdout.contains("warning"))
    // Run again: nothing left to sign but the tampered one, which still fails.
    let again = try jsonObject(try fleet.tgsess(["keys", "sign-existing", "--json"]))
    #expect((again["signed"] as? [String])?.isEmpty == true)
    #expect(again["alreadySigned"] as? Int == all.count - 1)

    // Without the identity nothing is signed unseen.
    try FileManager.default.moveItem(atPath: fleet.identityPath, toPath: fleet.identityPath + ".away")
    let blind = try fleet.tgsess(["keys", "sign-existing"])
    #expect(blind.status == 1)
    #expect(blind.stderr.hasPrefix("tgsess: keys sign-existing: \(fleet.identityPath): not found"), "\(blind.stderr)")
  }

  /// An unencrypted archive without a signature is unauthenticated by definition: on a
  /// deployment that encrypts it is refused even with --allow-unsigned; where the config says
  /// `[backup] encrypt = false` it is accepted with --allow-unsigned (and named). Signed, it is
  /// the deployment's either way.
  @Test func anUnsignedPlainArchiveIsRefusedWhereArchivesAreEncrypted() throws {
    let fleet = try TestFleet(users: 2)
    let user = try fleet.sessionUserIDs()[0]
    let backup = try jsonObject(try fleet.tgsessOK(["backup", "--user", String(user), "--no-encrypt", "--json"]))
    let archive = try #require((backup["archives"] as? [[String: Any]])?.first)
    let id = try #require(archive["id"] as? String)
    let path = try #require(archive["path"] as? String)
    #expect(path.hasSuffix(".tar.zst"))
    try fleet.tgsessOK(["restore", id, "--dry-run"])
    try TestSigning.unsign(path)
    let refused = try fleet.tgsess(["restore", id, "--dry-run", "--allow-unsigned"])
    #expect(refused.status == 1)
    #expect(
      refused.stderr.contains("\(path): not signed by this deployment's key; it is neither signed nor encrypted"),
      "\(refused.stderr)")
    try "[backup]\nencrypt = false\n".write(toFile: fleet.root + "/tgsess.toml", atomically: true, encoding: .utf8)
    let accepted = try fleet.tgsess(["restore", id, "--dry-run", "--allow-unsigned"])
    #expect(accepted.status == 0, "\(accepted.stderr)")
    #expect(
      accepted.stdout.contains("warning: archive \(id) is not signed (\(path)); used because of --allow-unsigned"))
    #expect(try fleet.tgsess(["restore", id, "--dry-run"]).status == 1)
  }
}

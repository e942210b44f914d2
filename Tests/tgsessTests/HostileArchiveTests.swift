import Foundation
import Jobs
import Store
import TestSupport
import Testing

/// `tgsess restore` against a corpus of hostile and broken archives, built with Python's tarfile,
/// the stock `zstd` and `age` CLIs from a real archive of the deployment. Each one must be refused
/// with one stderr line naming the archive and the reason, before anything changes: the live
/// deployment stays byte-identical and no staging directory is left behind.
@Suite struct HostileArchiveTests {
  @Test func everyHostileOrBrokenArchiveIsRefusedAndNothingChanges() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 4)
    try fleet.tgsessOK(["backup"])
    let user = try fleet.sessionUserIDs()[1]
    let full = try fleet.listedArchives(["--kind", "full"])[0].path
    let own = try fleet.listedArchives(["--kind", "user", "--user", String(user)])
    let userArchive = try #require(own.first?.path)
    let cases = try HostileArchiveCorpus.build(
      deployment: fleet.deployment, full: full, user: userArchive, victim: try fleet.sessionUserIDs()[0],
      stamp: "20200101T0000")
    #expect(cases.count >= 20)
    #expect(Set(cases.keys) == Set(HostileArchiveCorpus.reasons.keys))
    // Another age identity, kept outside the deployment.
    let otherKey = fleet.directory.path + "/other.key"
    let keygen = try runProcess(Tools.ageKeygen, ["-o", otherKey])
    #expect(keygen.status == 0, "\(keygen.stderr)")

    for (index, name) in cases.keys.sorted().enumerated() {
      let id = cases[name]!
      var arguments = ["restore", id]
      var target: String?
      if id.contains("-u\(user)-") || index % 3 == 1 {
        arguments += ["--user", String(user)]
      } else if index % 3 == 2 {
        target = fleet.directory.path + "/drill-\(index)"
        arguments += ["--target", target!]
      }
      if name == "wrong-identity" { arguments += ["--identity", otherKey] }
      if name == "missing-identity-file" { arguments += ["--identity", fleet.directory.path + "/missing.key"] }
      let before = try fleet.tree()

      let result = try fleet.tgsess(arguments)

      let mode = arguments.dropFirst(2).first ?? "whole"
      #expect(result.status == 1, "\(name) (\(mode)): exit \(result.status) \(result.stdout)")
      #expect(result.stdout.isEmpty, "\(name) (\(mode)): \(result.stdout)")
      let lines = result.stderr.split(separator: "\n", omittingEmptySubsequences: false)
      #expect(lines.count == 2 && lines[1].isEmpty, "\(name) (\(mode)): not one line: \(result.stderr)")
      #expect(result.stderr.hasPrefix("tgsess: restore"), "\(name): \(result.stderr)")
      #expect(result.stderr.contains(id), "\(name): the archive is not named: \(result.stderr)")
      #expect(
        HostileArchiveCorpus.reasons[name, default: []].contains { result.stderr.contains($0) },
        "\(name): \(result.stderr)")
      let after = try fleet.tree()
      #expect(FileTree.differences(before, after).isEmpty, "\(name) (\(mode)): \(FileTree.differences(before, after))")
      if let target {
        #expect(!FileManager.default.fileExists(atPath: target), "\(name): left \(target) behind")
      }
    }
    #expect(
      !(try FileManager.default.contentsOfDirectory(atPath: fleet.directory.path)).contains { $0.hasPrefix("drill") })
  }

  /// A genuine per-user archive of one user, renamed and moved (with its signature and record)
  /// into another user's directory, is refused by restore, recover and drill: its signature
  /// names its real user and place, which are not the ones its name and place claim, so it is
  /// never a candidate for "latest" either.
  @Test func aGenuineArchiveRenamedIntoAnotherUsersDirectoryIsRefused() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 3)
    let users = try fleet.telethonUserIDs(2)
    let (owner, victim) = (users[0], users[1])
    try fleet.tgsessOK(["backup"])
    let repository = ArchiveRepository(backupsDirectory: fleet.deployment.backupsDirectory)
    let genuine = try #require(try repository.list(kind: .user, userID: owner).first)
    let victimsOwn = try #require(try repository.list(kind: .user, userID: victim).first)
    // Newer than anything the victim has, under the victim's name.
    let forgedID = genuine.id.replacingOccurrences(of: "-u\(owner)-", with: "-u\(victim)-")
      .replacingOccurrences(of: String(genuine.id.prefix(4)), with: "2099")
    var record = genuine
    record.id = forgedID
    record.fileName = ArchiveName.fileName(id: forgedID, isEncrypted: genuine.isEncrypted)
    record.userID = victim
    record.userIDs = [victim]
    record.createdAt = try #require(ArchiveName.describe(id: forgedID)?.createdAt)
    let directory = repository.userDirectory(victim)
    try FileManager.default.copyItem(atPath: repository.path(of: genuine), toPath: directory + "/" + record.fileName)
    try FileManager.default.copyItem(
      atPath: ArchiveSigning.signaturePath(forArchive: repository.path(of: genuine))!,
      toPath: directory + "/" + forgedID + ArchiveSignature.fileSuffix)
    try record.encoded().write(to: URL(fileURLWithPath: directory + "/" + forgedID + ".json"))
    try FileManager.default.removeItem(atPath: fleet.sessionPath(victim))
    try fleet.sqlite("UPDATE user_sessions SET session_string = 'garbage' WHERE user_id = \(victim)")
    let tree = try fleet.tree()

    let byID = try fleet.tgsess(["restore", forgedID])
    #expect(byID.status == 1)
    #expect(
      byID.stderr
        == "tgsess: restore: \(repository.path(of: record)): not signed by this deployment's key; its signature is for user_\(owner)/\(genuine.fileName); a signed archive was renamed or moved: do not trust it, use another backup\n"
    )
    #expect(try fleet.tree() == tree)
    // "latest" never considers it: the victim's own archive is the one it would restore.
    let plan = try jsonObject(
      try fleet.tgsessOK(["restore", "latest", "--user", String(victim), "--dry-run", "--json"]))
    #expect(plan["archiveID"] as? String == victimsOwn.id)
    #expect(try fleet.tree() == tree)
    // Recover skips it (naming why) and repairs the victim from their own archive instead.
    let recover = try fleet.tgsessJSON(RecoverResult.self, ["recover", "--user", String(victim)])
    let outcome = try #require(recover.users.first)
    #expect(outcome.outcome == .recovered)
    #expect(outcome.source?.contains("-u\(victim)-") == true, "\(outcome)")
    #expect(outcome.source != "archive \(forgedID)")
    #expect(try SessionWitness.stored([fleet.sessionPath(victim)]).values.first?.key != nil)
  }
}

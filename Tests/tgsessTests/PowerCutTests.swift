import Foundation
import Jobs
import Store
import TestSupport
import Testing

/// What a power cut cannot take once a command has exited 0. The command runs with `iotrace.so`
/// preloaded, which records the file-system calls it really made; `crashstates.py durable` keeps
/// of them only what POSIX promises to survive (a file's writes up to its fsync, a name once its
/// directory is fsynced) and lists the tree that leaves. The torture family `power-loss` checks
/// every crash state in between.
@Suite struct PowerCutTests {
  /// The first per-user backup of a user creates `backups/users/user_<id>/`. The archive and its
  /// record were fsynced there, but the new directory's own entry was not, so a power cut right
  /// after the run could take the directory, and the archive `session_backups` already names,
  /// away. (Found by the power-loss torture's weak model.)
  @Test func firstUserBackupSurvivesAPowerCut() throws {
    let fleet = try TestFleet(users: 3, initialized: true)
    let repository = ArchiveRepository(backupsDirectory: fleet.backupsDirectory)
    let user = try #require(
      fleet.userIDs.first { !FileSystem.exists(repository.userDirectory($0)) },
      "every generated user already has an archive directory")
    let (result, trace, snapshot) = try IOTrace.record(
      ["backup", "--user", String(user), "--reason", "Manual"], on: fleet, in: fleet.directory.file("recorded"))
    #expect(result.status == 0, "backup --user exited \(result.status): \(result.stderr)")
    let archive = try #require(try fleet.listedArchives(["--user", String(user)]).first)

    let durable = try IOTrace.durablePaths(trace: trace, snapshot: snapshot)
    let relative = String(archive.path.dropFirst(fleet.root.count + 1))
    #expect(durable.contains(relative), "a power cut after the run may take \(relative)")
    let record = (relative as NSString).deletingLastPathComponent + "/" + archive.id + ArchiveName.recordSuffix
    #expect(durable.contains(record), "a power cut after the run may take \(record)")
  }

  /// `tgsess init` on an empty root: the directories it creates, and the keys in them, survive.
  @Test func initSurvivesAPowerCut() throws {
    let fleet = try TestFleet()
    let (result, trace, snapshot) = try IOTrace.record(["init"], on: fleet, in: fleet.directory.file("recorded"))
    #expect(result.status == 0, "init exited \(result.status): \(result.stderr)")
    let durable = try IOTrace.durablePaths(trace: trace, snapshot: snapshot)
    for path in ["keys/age-identity.txt", "keys/age-recipients.txt", "keys/fernet.keys", "data", "sessions", "backups"]
    {
      #expect(durable.contains(path), "a power cut after init may take \(path)")
    }
  }
}

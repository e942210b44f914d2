import Foundation
import Jobs
import Store
import TestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// kill -9 at every named crash point of backup, restore, prune, migrate, recover and the atomic
/// writes, and at random moments. After each kill: the live database and session files are as
/// they were (or, for restore and recover, each file wholly old or wholly new), every archive
/// `tgsess list` shows decrypts and matches its manifest, the same command run again completes,
/// and every user still has their session (a valid file, or one `tgsess recover` brings back).
@Suite(.serialized, .enabled(if: Torture.isEnabled, "set TGSESS_TORTURE_SCALE=quick|full (scripts/torture.sh)"))
struct CrashPointTorture {
  /// What the live deployment was before a run.
  struct Before {
    var sessions: [String: String]
    var tables: Witness.Tables
    var archives: [String: String]
  }

  /// One run of a command to kill, and what must hold afterwards.
  struct CrashRun {
    var arguments: [String]
    /// The identity every user must hold once the rerun is done.
    var expected: [Int64: String]
    /// Whether the command may remove archives (prune).
    var removesArchives = false
    /// Checks right after the kill.
    var afterKill: (TortureFleet, Before) throws -> [String]
    /// Checks after the rerun completed.
    var afterRerun: (TortureFleet, Before) throws -> [String]
  }

  /// A command whose crash points are tried, with how to set its deployment up and what to run.
  struct Scenario {
    var name: String
    var points: [String]
    /// A fresh deployment for each case (migrate of the seed's shape runs once per deployment).
    var isFreshPerCase = false
    var makeFleet: () throws -> TortureFleet
    var prepare: (TortureFleet, inout TortureRandom) throws -> CrashRun
  }

  static let bookkeeping: Set<String> = ["session_backups", "tgsess_state", "grdb_migrations"]
  static let botTables = ["user_sessions", "copy_configs", "message_log"]

  // MARK: - Shared checks

  static func sessionsUnchanged(_ fleet: TortureFleet, _ before: Before) throws -> [String] {
    let now = try Witness.sessionFiles(fleet)
    return FileTree.differences(before.sessions, now).map { "sessions/\($0.split(separator: " ").last ?? "")" }
      .map { "session file changed: \($0)" }
  }

  static func tablesUnchanged(_ fleet: TortureFleet, _ before: Before, _ tables: [String] = botTables) throws
    -> [String]
  {
    var problems = Witness.differences(before.tables, try Witness.tables(fleet), tables: tables)
    let integrity = try Witness.integrity(fleet.deployment.databasePath)
    if integrity != "ok" { problems.append("database integrity_check: \(integrity.prefix(200))") }
    return problems
  }

  /// Read-mostly commands (backup, prune, pin): sessions byte-identical, the bot's tables equal.
  static func untouched(_ fleet: TortureFleet, _ before: Before) throws -> [String] {
    try sessionsUnchanged(fleet, before) + tablesUnchanged(fleet, before)
  }

  static func before(_ fleet: TortureFleet) throws -> Before {
    Before(
      sessions: try Witness.sessionFiles(fleet), tables: try Witness.tables(fleet),
      archives: try Witness.archiveFiles(fleet))
  }

  static func allIdentities(_ fleet: TortureFleet) -> [Int64: String] {
    Witness.identities(fleet, users: fleet.userIDs)
  }

  /// An archive's manifest and its extracted files (in `scratch`), read with tgsess's reader.
  static func extract(_ path: String, fleet: TortureFleet, scratch: TemporaryDirectory) throws -> (Manifest, String) {
    let directory = scratch.path + "/x-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let manifest = try ArchiveReader.read(path: path, identities: fleet.identities, extractTo: directory)
    return (manifest, directory)
  }

  static func newestArchive(_ fleet: TortureFleet, kind: String, user: Int64? = nil) throws -> ListedArchive {
    var arguments = ["list", "--json", "--kind", kind]
    if let user { arguments += ["--user", String(user)] }
    let listed = try decodeJSON([ListedArchive].self, from: try fleet.tgsessOK(arguments))
    guard let archive = listed.first(where: { $0.reason != "Before restore" }) else {
      throw TestHelperError("no \(kind) archive")
    }
    return archive
  }

  static func pickUsers(_ fleet: TortureFleet, _ count: Int, _ random: inout TortureRandom) -> [Int64] {
    Array(fleet.userIDs.shuffled(using: &random).prefix(count))
  }

  // MARK: - Scenarios

  static let archivePoints = [
    "archive.before-fsync", "archive.after-verify", "archive.after-sign", "archive.before-publish",
    "archive.after-publish",
  ]
  /// The atomic-write points: recover writes session files, pin its marker, this way. (Backups
  /// and restores stage in memory or in a pack file and write archives their own way.)
  static let atomicPoints = ["atomic.before-fsync", "atomic.after-rename"]

  static func backupScenario(users: Int) -> Scenario {
    Scenario(
      name: "backup",
      points: archivePoints + ["backup.after-session-snapshot", "backup.between-users"],
      makeFleet: {
        let fleet = try TortureFleet(users: users, seed: 11)
        try fleet.tgsessOK(["backup"])
        return fleet
      },
      prepare: { fleet, random in
        // New keys for two users, so the run also writes per-user archives (every point is on its path).
        try fleet.rotateKeys(pickUsers(fleet, 2, &random))
        return CrashRun(
          arguments: ["backup"], expected: allIdentities(fleet), afterKill: untouched, afterRerun: untouched)
      })
  }

  static func userBackupScenario(users: Int) -> Scenario {
    Scenario(
      name: "backup --user",
      points: archivePoints + ["backup.after-session-snapshot"],
      makeFleet: { try TortureFleet(users: users, seed: 12) },
      prepare: { fleet, random in
        let user = pickUsers(fleet, 1, &random)[0]
        try fleet.rotateKeys([user])
        return CrashRun(
          arguments: ["backup", "--user", String(user)], expected: allIdentities(fleet), afterKill: untouched,
          afterRerun: untouched)
      })
  }

  static func wholeRestoreScenario(users: Int, scratch: TemporaryDirectory) -> Scenario {
    Scenario(
      name: "restore (whole)",
      points: archivePoints + ["backup.after-session-snapshot", "restore.after-file"],
      makeFleet: {
        let fleet = try TortureFleet(users: users, seed: 13)
        try fleet.tgsessOK(["backup"])
        return fleet
      },
      prepare: { fleet, random in
        let archive = try newestArchive(fleet, kind: "full")
        let (manifest, directory) = try extract(archive.path, fleet: fleet, scratch: scratch)
        var expectedFiles: [String: String] = [:]
        var extracted: [String: String] = [:]
        var expected: [Int64: String] = [:]
        for entry in manifest.entries where entry.role == .session || entry.role == .sessionBackup {
          expectedFiles[(entry.path as NSString).lastPathComponent] = entry.sha256
          extracted[(entry.path as NSString).lastPathComponent] = directory + "/" + entry.path
          if entry.role == .session, let user = entry.userID {
            let info = try SessionFileInspector.inspect(path: directory + "/" + entry.path)
            expected[user] = "dc\(info.identity.dcID)-\(info.identity.authKey.fingerprint)"
          }
        }
        let expectedTables = try Witness.tables(fleet, path: directory + "/data/telegram_bot.db")
        // The live deployment drifts: one user logs in again, one loses their file, the bot writes.
        let drifted = pickUsers(fleet, 2, &random)
        try fleet.rotateKeys([drifted[0]])
        unlink(fleet.sessionPath(drifted[1]))
        try fleet.sql("UPDATE copy_configs SET enabled = 1 - enabled", on: fleet.deployment.databasePath)
        let tables = ["user_sessions", "session_backups", "copy_configs", "message_log"]
        func filesAre(_ fleet: TortureFleet, _ before: Before, allowOld: Bool) throws -> [String] {
          var problems: [String] = []
          let now = try Witness.sessionFiles(fleet)
          for (name, sha) in expectedFiles {
            let current = now[name]
            if current == sha { continue }
            if allowOld, current == before.sessions[name] { continue }
            // Restore leaves a file whose content (schema and rows) is the archive's alone: "unchanged".
            if current != nil, let source = extracted[name],
              (try? SQLiteContent.digest(path: fleet.deployment.sessionsDirectory + "/" + name))
                == (try? SQLiteContent.digest(path: source))
            {
              continue
            }
            problems.append("\(name) is neither the live file nor the archive's (whole-file restore broken)")
          }
          let now2 = try Witness.tables(fleet)
          let asArchive = Witness.differences(expectedTables, now2, tables: tables)
          let asBefore = Witness.differences(before.tables, now2, tables: tables)
          if !asArchive.isEmpty, !(allowOld && asBefore.isEmpty) {
            problems.append("database is neither the live one nor the archive's: \(asArchive.prefix(3))")
          }
          let integrity = try Witness.integrity(fleet.deployment.databasePath)
          if integrity != "ok" { problems.append("database integrity_check: \(integrity.prefix(200))") }
          return problems
        }
        return CrashRun(
          arguments: ["restore", archive.id], expected: expected,
          afterKill: { try filesAre($0, $1, allowOld: true) }, afterRerun: { try filesAre($0, $1, allowOld: false) })
      })
  }

  static func userRestoreScenario(users: Int, scratch: TemporaryDirectory) -> Scenario {
    Scenario(
      name: "restore --user",
      points: archivePoints + ["backup.after-session-snapshot", "restore.after-file"],
      makeFleet: {
        let fleet = try TortureFleet(users: users, seed: 14)
        try fleet.tgsessOK(["backup"])
        return fleet
      },
      prepare: { fleet, random in
        let user = pickUsers(fleet, 1, &random)[0]
        let archive = try newestArchive(fleet, kind: "user", user: user)
        let (manifest, directory) = try extract(archive.path, fleet: fleet, scratch: scratch)
        guard let entry = manifest.entries.first(where: { $0.role == .session }) else {
          throw TestHelperError("archive \(archive.id) holds no session")
        }
        let info = try SessionFileInspector.inspect(path: directory + "/" + entry.path)
        var expected = allIdentities(fleet)
        expected[user] = "dc\(info.identity.dcID)-\(info.identity.authKey.fingerprint)"
        try fleet.rotateKeys([user])
        let name = "user_\(user).session"
        func check(_ fleet: TortureFleet, _ before: Before, allowOld: Bool) throws -> [String] {
          var problems: [String] = []
          let now = try Witness.sessionFiles(fleet)
          for (other, sha) in before.sessions where other != name && !other.hasPrefix(name + ".") && now[other] != sha {
            problems.append("\(other) changed by a restore of another user")
          }
          if now[name] != entry.sha256, !(allowOld && now[name] == before.sessions[name]) {
            problems.append("\(name) is neither the live file nor the archive's")
          }
          var others = before.tables
          others["user_sessions"] = others["user_sessions"]?.filter { $0.key != String(user) }
          var after = try Witness.tables(fleet)
          after["user_sessions"] = after["user_sessions"]?.filter { $0.key != String(user) }
          problems += Witness.differences(others, after, tables: ["user_sessions", "copy_configs", "message_log"])
          return problems
        }
        return CrashRun(
          arguments: ["restore", archive.id, "--user", String(user)], expected: expected,
          afterKill: { try check($0, $1, allowOld: true) }, afterRerun: { try check($0, $1, allowOld: false) })
      })
  }

  /// Writes a JSON sidecar (opentele / TGConvertor shape) beside each user's session file, with
  /// fresh secrets the scan then looks for.
  static func writeSidecars(_ fleet: TortureFleet, users: [Int64], device: String) throws {
    for user in users {
      let object: [String: Any] = [
        "user_id": user, "app_id": 2040, "app_hash": Hex.encode((0..<16).map { _ in UInt8.random(in: 0...255) }),
        "device": device, "sdk": "SDK 34", "app_version": "11.2.3", "lang_pack": "android",
        "twoFA": "2fa-" + Hex.encode((0..<12).map { _ in UInt8.random(in: 0...255) }),
      ]
      try FileSystem.writeAtomically(
        try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]),
        to: fleet.deployment.sidecarPath(userID: user))
    }
    try fleet.collectSecrets()
  }

  /// A per-user restore of a session file with its JSON sidecar: at every point the pair is the
  /// live one, the archive's, or (between the two renames) the archive's sidecar beside the live
  /// session file, never a restored session file beside the old sidecar.
  static func pairRestoreScenario(users: Int, scratch: TemporaryDirectory) -> Scenario {
    Scenario(
      name: "restore --user (session + sidecar)",
      points: archivePoints + [
        "backup.after-session-snapshot", "pair.before-commit", "pair.between-files", "restore.after-file",
      ],
      makeFleet: {
        let fleet = try TortureFleet(users: users, seed: 19)
        try writeSidecars(fleet, users: fleet.userIDs, device: "Pixel 8")
        try fleet.tgsessOK(["backup"])
        return fleet
      },
      prepare: { fleet, random in
        let user = pickUsers(fleet, 1, &random)[0]
        let archive = try newestArchive(fleet, kind: "user", user: user)
        let (manifest, directory) = try extract(archive.path, fleet: fleet, scratch: scratch)
        guard let session = manifest.entries.first(where: { $0.role == .session }),
          let sidecar = manifest.entries.first(where: { $0.role == .sessionSidecar })
        else { throw TestHelperError("archive \(archive.id) holds no session and sidecar") }
        let info = try SessionFileInspector.inspect(path: directory + "/" + session.path)
        var expected = allIdentities(fleet)
        expected[user] = "dc\(info.identity.dcID)-\(info.identity.authKey.fingerprint)"
        try fleet.rotateKeys([user])
        try writeSidecars(fleet, users: [user], device: "Moto G")
        let (sessionName, sidecarName) = ("user_\(user).session", "user_\(user).json")
        func check(_ fleet: TortureFleet, _ before: Before, allowOld: Bool) throws -> [String] {
          var problems: [String] = []
          let now = try Witness.sessionFiles(fleet)
          let isNewSession = now[sessionName] == session.sha256
          let isNewSidecar = now[sidecarName] == sidecar.sha256
          if !isNewSession, now[sessionName] != before.sessions[sessionName] {
            problems.append("\(sessionName) is neither the live file nor the archive's")
          }
          if !isNewSidecar, now[sidecarName] != before.sessions[sidecarName] {
            problems.append("\(sidecarName) is neither the live file nor the archive's")
          }
          if isNewSession, !isNewSidecar { problems.append("the restored \(sessionName) sits beside the old sidecar") }
          if !allowOld, !(isNewSession && isNewSidecar) { problems.append("the pair is not the archive's") }
          for (other, sha) in before.sessions
          where other != sessionName && other != sidecarName && !other.hasPrefix(sessionName + ".") && now[other] != sha
          {
            problems.append("\(other) changed by a restore of another user")
          }
          return problems
        }
        return CrashRun(
          arguments: ["restore", archive.id, "--user", String(user)], expected: expected,
          afterKill: { try check($0, $1, allowOld: true) }, afterRerun: { try check($0, $1, allowOld: false) })
      })
  }

  static let pruneArguments = [
    "prune", "--keep-per-user", "1", "--keep-last", "1", "--keep-daily", "0", "--keep-weekly", "0",
  ]

  static func pruneScenario(users: Int) -> Scenario {
    Scenario(
      name: "prune",
      points: ["prune.after-unlink"],
      makeFleet: {
        let fleet = try TortureFleet(users: users, seed: 15)
        try fleet.tgsessOK(["backup"])
        return fleet
      },
      prepare: { fleet, random in
        // Two more generations of two users and of the full snapshot: something to remove.
        for _ in 0..<2 {
          try fleet.rotateKeys(pickUsers(fleet, 2, &random))
          try fleet.tgsessOK(["backup"])
        }
        return CrashRun(
          arguments: pruneArguments, expected: allIdentities(fleet), removesArchives: true,
          afterKill: { fleet, before in
            try sessionsUnchanged(fleet, before) + tablesUnchanged(fleet, before)
          },
          afterRerun: { fleet, before in
            var problems = try sessionsUnchanged(fleet, before) + tablesUnchanged(fleet, before)
            let plan = try fleet.tgsessOK(pruneArguments + ["--dry-run", "--json"])
            let remove = try decodeJSON(PruneResult.self, from: plan).plan.remove.count
            if remove != 0 { problems.append("after the rerun the plan still removes \(remove) archive(s)") }
            return problems
          })
      })
  }

  static func recoverScenario(users: Int) -> Scenario {
    Scenario(
      name: "recover --all",
      points: atomicPoints + archivePoints + ["backup.after-session-snapshot", "recover.between-users"],
      makeFleet: {
        let fleet = try TortureFleet(users: users, seed: 16, pyrogramShare: 0)
        try fleet.tgsessOK(["backup"])
        return fleet
      },
      prepare: { fleet, random in
        let expected = allIdentities(fleet)
        let broken = pickUsers(fleet, 3, &random)
        // Three ways to lose a session: the file deleted, truncated, its key zeroed.
        unlink(fleet.sessionPath(broken[0]))
        truncate(fleet.sessionPath(broken[1]), 5000)
        try fleet.sql("UPDATE sessions SET auth_key = zeroblob(256)", on: fleet.sessionPath(broken[2]))
        let brokenNames = Set(broken.map { "user_\($0).session" })
        func check(_ fleet: TortureFleet, _ before: Before, done: Bool) throws -> [String] {
          var problems: [String] = []
          let now = try Witness.sessionFiles(fleet)
          for (name, sha) in before.sessions {
            if brokenNames.contains(name) {
              // A broken file is moved aside, never removed.
              if !now.values.contains(sha) { problems.append("the broken \(name) was removed, not moved aside") }
            } else if now[name] != sha {
              problems.append("\(name) of a healthy user changed")
            }
          }
          let state = Witness.sessions(fleet, users: broken)
          for user in broken {
            if let identity = try? state[user]?.get(), identity != expected[user] {
              problems.append("user \(user) was given another session (\(identity))")
            } else if done, (try? state[user]?.get()) == nil {
              problems.append("user \(user) is still broken after the rerun")
            }
          }
          var healthy = before.tables
          healthy["user_sessions"] = healthy["user_sessions"]?.filter { !broken.map(String.init).contains($0.key) }
          var after = try Witness.tables(fleet)
          after["user_sessions"] = after["user_sessions"]?.filter { !broken.map(String.init).contains($0.key) }
          problems += Witness.differences(healthy, after, tables: ["user_sessions", "copy_configs", "message_log"])
          return problems
        }
        return CrashRun(
          arguments: ["recover", "--all"], expected: expected, afterKill: { try check($0, $1, done: false) },
          afterRerun: { try check($0, $1, done: true) })
      })
  }

  /// Keys from a deployment `tgsess init` made, copied into a seed-shaped one (init itself
  /// would migrate it).
  static func legacyFleet(template: String) throws -> TortureFleet {
    let fleet = try TortureFleet(users: 4, legacy: true, seed: UInt64.random(in: 1...1_000_000))
    for name in ["age-identity.txt", "age-recipients.txt", "fernet.keys", "signing.key", "signing.pub"] {
      try FileSystem.writeAtomically(
        try FileSystem.read(template + "/keys/" + name), to: fleet.root + "/keys/" + name)
    }
    try fleet.collectSecrets()
    return fleet
  }

  /// Counts secret values that are not Fernet tokens, and tokens the newest key does not open.
  static let secretCensus = #"""
    import os, sqlite3, sys
    from cryptography.fernet import Fernet, InvalidToken
    db, keyfile = sys.argv[1], sys.argv[2]
    newest = Fernet([l.strip() for l in open(keyfile) if l.strip() and not l.startswith('#')][0])
    conn = sqlite3.connect('file:%s?mode=ro' % db, uri=True)
    plain = stale = 0
    for table in ('user_sessions', 'session_backups'):
        for values in conn.execute('SELECT session_string, api_hash FROM %s' % table):
            for v in values:
                if not v:
                    continue
                if not v.startswith('gAAAAA'):
                    plain += 1
                    continue
                try:
                    newest.decrypt(v.encode())
                except InvalidToken:
                    stale += 1
    print(plain, stale)
    """#

  static func census(_ fleet: TortureFleet) throws -> (plain: Int, stale: Int) {
    let result = try runPython(
      secretCensus, arguments: [fleet.deployment.databasePath, fleet.deployment.fernetKeysPath])
    let parts = result.stdout.split(whereSeparator: \.isWhitespace).compactMap { Int($0) }
    guard parts.count == 2 else { throw TestHelperError("census printed \(result.stdout)") }
    return (parts[0], parts[1])
  }

  static func migrateScenario(template: String) -> Scenario {
    Scenario(
      name: "migrate (seed shape)",
      points: ["migrate.secrets-before-commit"] + archivePoints, isFreshPerCase: true,
      makeFleet: { try legacyFleet(template: template) },
      prepare: { fleet, _ in
        let tables = ["user_sessions", "session_backups", "copy_configs"]
        let legacyCopies = try FileManager.default.contentsOfDirectory(atPath: fleet.root + "/data")
          .filter { $0.contains(".backup_") }.map { fleet.root + "/data/" + $0 }
        let legacyHashes = try legacyCopies.map { try FileSystem.sha256(ofFile: $0) }
        func check(_ fleet: TortureFleet, _ before: Before, done: Bool) throws -> [String] {
          var problems = try sessionsUnchanged(fleet, before)
          problems += Witness.differences(before.tables, try Witness.tables(fleet), tables: tables)
          let integrity = try Witness.integrity(fleet.deployment.databasePath)
          if integrity != "ok" { problems.append("database integrity_check: \(integrity.prefix(200))") }
          for (path, sha) in zip(legacyCopies, legacyHashes) where (try? FileSystem.sha256(ofFile: path)) != sha {
            problems.append("the seed's copy \(path) changed")
          }
          if done {
            let (plain, _) = try census(fleet)
            if plain != 0 { problems.append("\(plain) secret(s) still plaintext after the rerun") }
            let imported = try Witness.listed(fleet).count
            if imported < legacyCopies.count { problems.append("only \(imported) legacy copies imported") }
          }
          try fleet.collectSecrets()
          return problems
        }
        return CrashRun(
          arguments: ["migrate"], expected: allIdentities(fleet), afterKill: { try check($0, $1, done: false) },
          afterRerun: { try check($0, $1, done: true) })
      })
  }

  static func rotateScenario(users: Int) -> Scenario {
    Scenario(
      name: "migrate --rotate-key",
      points: ["migrate.secrets-before-commit"],
      makeFleet: { try TortureFleet(users: users, seed: 17) },
      prepare: { fleet, _ in
        try fleet.tgsessOK(["keys", "add-fernet"])
        try fleet.collectSecrets()
        let tables = ["user_sessions", "session_backups", "copy_configs"]
        return CrashRun(
          arguments: ["migrate", "--rotate-key"], expected: allIdentities(fleet),
          afterKill: { fleet, before in
            try sessionsUnchanged(fleet, before)
              + Witness.differences(before.tables, try Witness.tables(fleet), tables: tables)
          },
          afterRerun: { fleet, before in
            var problems = try sessionsUnchanged(fleet, before)
            problems += Witness.differences(before.tables, try Witness.tables(fleet), tables: tables)
            let (plain, stale) = try census(fleet)
            if plain + stale != 0 { problems.append("\(plain) plaintext, \(stale) not under the newest key") }
            try fleet.collectSecrets()
            return problems
          })
      })
  }

  static func pinScenario(users: Int) -> Scenario {
    Scenario(
      name: "pin",
      points: atomicPoints,
      makeFleet: {
        let fleet = try TortureFleet(users: users, seed: 18)
        try fleet.tgsessOK(["backup"])
        return fleet
      },
      prepare: { fleet, random in
        try fleet.rotateKeys(pickUsers(fleet, 1, &random))
        try fleet.tgsessOK(["backup"])
        // The newest unpinned full snapshot (archives made within one second sort by their id).
        func pinPath(_ archive: ListedArchive) -> String {
          (archive.path as NSString).deletingLastPathComponent + "/" + archive.id + ".pin"
        }
        guard
          let archive = try Witness.listed(fleet).first(where: { $0.kind == .full && !FileSystem.exists(pinPath($0)) })
        else { throw TestHelperError("no unpinned full snapshot") }
        let pin = pinPath(archive)
        return CrashRun(
          arguments: ["pin", archive.id], expected: allIdentities(fleet), afterKill: untouched,
          afterRerun: { fleet, before in
            try untouched(fleet, before)
              + (FileSystem.exists(pin) ? [] : ["\(archive.id) is not pinned after the rerun"])
          })
      })
  }

  // MARK: - The harness

  enum Kill {
    case point(String)
    case after(Double)
  }

  /// Runs one case: prepare, run with the kill, check, rerun, check again.
  /// - Returns: the problems and whether the run was killed.
  static func runCase(_ fleet: TortureFleet, _ run: CrashRun, kill: Kill) throws -> (problems: [String], killed: Bool) {
    var problems: [String] = []
    let before = try before(fleet)
    var environment: [String: String] = [:]
    if case .point(let point) = kill { environment["TGSESS_CRASH_POINT"] = point }
    let process = try fleet.background(run.arguments, environment: environment)
    if case .after(let seconds) = kill {
      usleep(UInt32(seconds * 1_000_000))
      process.kill()
    }
    let (status, signal) = process.wait()
    Capture.keep(process)
    let killed = signal == SIGKILL
    switch kill {
    case .point(let point) where !killed:
      problems.append("crash point \(point) was not reached (exit \(status)): \(process.stderr.prefix(300))")
    case .after where !killed && status != 0:
      problems.append("the run ended \(status) before it was killed: \(process.stderr.prefix(300))")
    default: break
    }

    // Right after the kill.
    problems += try run.afterKill(fleet, before).map { "after the kill: " + $0 }
    let archivesNow = try Witness.archiveFiles(fleet)
    for (path, sha) in before.archives {
      if let now = archivesNow[path] {
        if now != sha { problems.append("after the kill: earlier archive \(path) changed") }
      } else if !run.removesArchives {
        problems.append("after the kill: earlier archive \(path) vanished")
      }
    }
    problems += try Witness.verifyListed(fleet).problems.map { "after the kill: " + $0 }

    // The same command again completes.
    let rerun = try fleet.tgsess(run.arguments)
    if rerun.status != 0 {
      problems.append("the rerun exited \(rerun.status): \(rerun.stderr.prefix(500))")
    } else {
      problems += try run.afterRerun(fleet, before).map { "after the rerun: " + $0 }
    }
    problems += try Witness.verifyListed(fleet).problems.map { "after the rerun: " + $0 }
    // Nobody lost a session.
    problems += try Witness.noSessionLost(fleet, expected: run.expected)
    // What the dead run left is gone once the next backup has run.
    try fleet.tgsessOK(["backup"])
    let left = try Witness.leftovers(fleet)
    if !left.isEmpty { problems.append("left behind after rerun and backup: \(left.prefix(5))") }
    return (problems, killed)
  }

  static func scenarios(scratch: TemporaryDirectory, template: String) -> [Scenario] {
    [
      backupScenario(users: 6), userBackupScenario(users: 6), wholeRestoreScenario(users: 6, scratch: scratch),
      userRestoreScenario(users: 6, scratch: scratch), pairRestoreScenario(users: 4, scratch: scratch),
      pruneScenario(users: 5), recoverScenario(users: 6),
      migrateScenario(template: template), rotateScenario(users: 5), pinScenario(users: 4),
    ]
  }

  /// A deployment `tgsess init` made, whose keys the seed-shaped deployments borrow.
  static func keyTemplate() throws -> TemporaryDirectory {
    let template = try TemporaryDirectory("tgsess-keys")
    let result = try runTgsess(["init", "--root", template.path])
    guard result.status == 0 else { throw TestHelperError("tgsess init failed: \(result.stderr)") }
    Capture.keep("tgsess init", result)
    try SecretRegistry.collect(root: template.path)
    return template
  }

  @Test func everyNamedCrashPoint() throws {
    let report = FamilyReport("crash-points")
    defer { print(report.summary) }
    let scratch = try TemporaryDirectory("tgsess-crash-scratch")
    let template = try Self.keyTemplate()
    var random = TortureRandom(seed: Torture.seed)
    // The quick run tries one point of each command.
    let quickPoints: [String: String] = [
      "backup": "archive.before-publish", "restore --user": "restore.after-file", "prune": "prune.after-unlink",
      "migrate (seed shape)": "migrate.secrets-before-commit", "recover --all": "recover.between-users",
      "restore --user (session + sidecar)": "pair.between-files",
    ]
    for scenario in Self.scenarios(scratch: scratch, template: template.path) {
      let points = Torture.isFull ? scenario.points : scenario.points.filter { quickPoints[scenario.name] == $0 }
      guard !points.isEmpty else { continue }
      var shared: TortureFleet?
      for point in points {
        report.check("\(scenario.name) @ \(point)", counts: ["named crash points": 1]) {
          let fleet = try scenario.isFreshPerCase ? scenario.makeFleet() : (shared ?? scenario.makeFleet())
          if !scenario.isFreshPerCase { shared = fleet }
          let run = try scenario.prepare(fleet, &random)
          let (problems, _) = try Self.runCase(fleet, run, kill: .point(point))
          try fleet.collectSecrets()
          return problems
        }
      }
    }
  }

  @Test func randomKills() throws {
    let report = FamilyReport("crash-points")
    defer { print(report.summary) }
    let scratch = try TemporaryDirectory("tgsess-crash-scratch")
    let template = try Self.keyTemplate()
    var random = TortureRandom(seed: Torture.seed &+ 1)
    let wanted = Torture.pick(quick: 2, full: 50)
    // Bigger deployments, so a run lasts long enough to be killed at many different moments.
    let all = [
      Self.backupScenario(users: 30), Self.userBackupScenario(users: 10),
      Self.wholeRestoreScenario(users: 30, scratch: scratch), Self.userRestoreScenario(users: 10, scratch: scratch),
      Self.pruneScenario(users: 20), Self.recoverScenario(users: 20), Self.migrateScenario(template: template.path),
    ]
    var fleets: [String: TortureFleet] = [:]
    var durations: [String: Double] = [:]
    var killed = 0
    var attempts = 0
    // A run that ends before its kill lands is not a kill: later runs are often faster than the
    // timed first one (warm caches), so allow enough attempts for `wanted` kills to land.
    while killed < wanted, attempts < wanted * 6 {
      attempts += 1
      let scenario = all[Int(random.next() % UInt64(all.count))]
      report.check("random kill #\(attempts): \(scenario.name)") {
        func fleet() throws -> TortureFleet {
          if scenario.isFreshPerCase { return try scenario.makeFleet() }
          if let existing = fleets[scenario.name] { return existing }
          let made = try scenario.makeFleet()
          fleets[scenario.name] = made
          return made
        }
        // The first run of each command is timed, uninterrupted, to know when to kill the others.
        if durations[scenario.name] == nil {
          let timed = try fleet()
          let run = try scenario.prepare(timed, &random)
          let start = Date()
          try timed.tgsessOK(run.arguments)
          durations[scenario.name] = Date().timeIntervalSince(start)
        }
        let target = try fleet()
        let run = try scenario.prepare(target, &random)
        let delay = Double.random(in: 0...(durations[scenario.name]! * 1.1), using: &random)
        let (problems, wasKilled) = try Self.runCase(target, run, kill: .after(delay))
        if wasKilled { killed += 1 }
        try target.collectSecrets()
        return problems
      }
    }
    print("random kills: \(killed) runs killed by SIGKILL in \(attempts) attempts")
    report.tally(["random-moment runs killed": killed, "random-moment runs": attempts])
    #expect(killed >= wanted, "only \(killed) of \(wanted) runs were killed")
  }
}

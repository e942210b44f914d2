import Foundation
import Jobs
import Store
import TestSupport
import Testing

/// The monitoring hooks of the scheduled commands through the built binary: healthchecks-style
/// pings to a real loopback HTTP server (`PingServer`) and node_exporter textfiles judged by the
/// strict exposition parser and by node_exporter itself. Every test ends by checking that no
/// secret of its fleet reached any output, ping body or metrics file.
@Suite struct MonitoringHooksTests {
  // MARK: - Helpers

  /// The start and finish pings of one run: `/start` then `/<status>`, the same uuid `rid` on both.
  /// - Returns: the finish ping's body.
  @discardableResult
  static func expectRun(
    _ requests: ArraySlice<PingServer.Request>, status: Int32, sourceLocation: SourceLocation = #_sourceLocation
  ) -> String {
    let base = PingServer.checkPath
    #expect(
      requests.map(\.path) == [base + "/start", base + "/\(status)"], "\(Array(requests))",
      sourceLocation: sourceLocation)
    #expect(requests.map(\.method) == ["GET", "POST"], sourceLocation: sourceLocation)
    let rid = requests.first?.parameter("rid")
    #expect(
      rid.flatMap(UUID.init(uuidString:)) != nil, "rid \(String(describing: rid))", sourceLocation: sourceLocation)
    #expect(requests.last?.parameter("rid") == rid, sourceLocation: sourceLocation)
    let finish = requests.last
    #expect(finish?.headers["content-type"]?.hasPrefix("text/plain") == true, sourceLocation: sourceLocation)
    let body = finish?.body ?? ""
    #expect(!body.isEmpty && body.utf8.count <= 10_000, sourceLocation: sourceLocation)
    return body
  }

  /// The stderr lines that are warnings of tgsess.
  static func warnings(_ result: ProcessResult) -> [String] {
    result.stderr.split(separator: "\n").map(String.init).filter { $0.contains(": warning: ") }
  }

  /// Keeps what the server received for the fleet's leak scan.
  static func keep(_ server: PingServer, in fleet: TestFleet) throws {
    let requests = try server.requests()
    fleet.keep("ping requests", requests.map { "\($0.path) \($0.query) \($0.body)" }.joined(separator: "\n"), "")
  }

  static func expectNoLeaks(_ fleet: TestFleet, sourceLocation: SourceLocation = #_sourceLocation) throws {
    #expect(fleet.secretCount > 0, "no secret was gathered, so the scan proves nothing", sourceLocation: sourceLocation)
    let leaks = try fleet.leakedSecrets()
    #expect(leaks.isEmpty, "\(leaks.prefix(5))", sourceLocation: sourceLocation)
  }

  /// Holds the deployment lock with flock(2), as another tgsess run does, until `finish()`.
  static func holdLock(_ fleet: TestFleet) throws -> PythonHolder {
    try PythonHolder(
      """
      import fcntl, sys
      f = open(sys.argv[1], "a")
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
      print("READY", flush=True)
      sys.stdin.read()
      """, arguments: [fleet.root + "/.tgsess.lock"])
  }

  /// Runs `tgsess arguments --root ROOT` under `umask 077` (systemd's `UMask=0077`) and keeps its
  /// output for the leak scan.
  @discardableResult
  static func tgsessUnderUmask(_ fleet: TestFleet, _ arguments: [String]) throws -> ProcessResult {
    let result = try runProcess(
      "/bin/sh",
      ["-c", "umask 077 && exec \"$0\" \"$@\"", TestEnvironment.productPath("tgsess")] + arguments + [
        "--root", fleet.root,
      ],
      isolateTgsessVariables: true)
    fleet.keep("tgsess " + arguments.joined(separator: " "), result.stdout, result.stderr)
    return result
  }

  /// Reads, keeps (for the leak scan) and strictly parses a metrics file that must be 0644.
  static func exposition(
    _ path: String, in fleet: TestFleet, sourceLocation: SourceLocation = #_sourceLocation
  ) throws -> Exposition {
    #expect(try FileSystem.mode(of: path) == 0o644, "\(path)", sourceLocation: sourceLocation)
    let text = try String(contentsOfFile: path, encoding: .utf8)
    fleet.keep("metrics file \(path)", text, "")
    let exposition = try Exposition(text)
    #expect(exposition.types.values.allSatisfy { $0 == "gauge" }, sourceLocation: sourceLocation)
    // No per-user labels anywhere: the only label is check's bounded session state.
    #expect(
      exposition.samples.allSatisfy { Set($0.labels.keys).isSubset(of: ["state"]) }, sourceLocation: sourceLocation)
    return exposition
  }

  static func value(_ exposition: Exposition, _ name: String) -> Double? {
    let samples = exposition.samples(name)
    return samples.count == 1 ? samples[0].value : nil
  }

  // MARK: - Pings

  @Test func aGoodBackupPingsStartThenZeroWithOneRunIDFromTheFlagOrTheEnvironment() throws {
    let fleet = try TestFleet(users: 4, entities: 120, collectsSecrets: true)
    let server = try PingServer()
    let run = try fleet.tgsess(["backup", "--ping-url", server.url])
    #expect(run.status == 0, "\(run.stderr)")
    #expect(Self.warnings(run).isEmpty, "\(run.stderr)")
    let first = try server.requests()
    let body = Self.expectRun(first[...], status: 0)
    // The body is the summary line the text output ends with.
    let summary = try #require(run.stdout.split(separator: "\n").last.map(String.init))
    #expect(body == summary)
    #expect(body.hasPrefix("4 users, "), "\(body)")

    // TGSESS_PING_URL does the same; every run has its own id.
    let viaEnvironment = try fleet.tgsess(["backup", "--json"], environment: ["TGSESS_PING_URL": server.url])
    #expect(viaEnvironment.status == 0, "\(viaEnvironment.stderr)")
    let all = try server.requests()
    #expect(all.count == 4)
    Self.expectRun(all.dropFirst(2), status: 0)
    #expect(all[2].parameter("rid") != all[0].parameter("rid"))
    // A flag wins over the environment; an empty variable means no ping.
    #expect(try fleet.tgsess(["backup"], environment: ["TGSESS_PING_URL": ""]).status == 0)
    #expect(try server.requests().count == 4)
    try Self.keep(server, in: fleet)
    try Self.expectNoLeaks(fleet)
  }

  @Test func aPartialBackupPings3AndAHeldLockPings75() throws {
    let fleet = try TestFleet(users: 5, entities: 120, collectsSecrets: true)
    let server = try PingServer()
    let broken = try fleet.sessionUserIDs()[2]
    try Data(randomBytes(8192)).write(to: URL(fileURLWithPath: fleet.sessionPath(broken)))

    let partial = try fleet.tgsess(["backup", "--ping-url", server.url])
    #expect(partial.status == 3, "\(partial.stderr)")
    let body = Self.expectRun(try server.requests()[...], status: 3)
    #expect(body.hasPrefix("4 users, "), "\(body)")
    #expect(body.contains("\nFAILED user \(broken): \(fleet.sessionPath(broken)): "), "\(body)")

    let holder = try Self.holdLock(fleet)
    defer { holder.finish() }
    for verb in ["backup", "prune"] {
      let before = try server.requests().count
      let locked = try fleet.tgsess([verb, "--ping-url", server.url])
      #expect(locked.status == 75, "\(locked.stderr)")
      let lockedBody = Self.expectRun(try server.requests().dropFirst(before), status: 75)
      // The body is the line tgsess prints on stderr.
      #expect(lockedBody.hasPrefix("tgsess: \(verb): \(fleet.root)/.tgsess.lock: held by "), "\(lockedBody)")
      #expect(locked.stderr.contains(lockedBody + "\n"))
      #expect(Self.warnings(locked).isEmpty, "\(locked.stderr)")
    }
    try Self.keep(server, in: fleet)
    try Self.expectNoLeaks(fleet)
  }

  @Test func pruneDrillAndCheckPingTheirExitStatusACriticalCheckPings2() throws {
    let fleet = try TestFleet(users: 3, entities: 120, collectsSecrets: true)
    #expect(try fleet.tgsess(["backup"]).status == 0)
    let server = try PingServer()

    #expect(try fleet.tgsess(["prune", "--ping-url", server.url]).status == 0)
    #expect(Self.expectRun(try server.requests()[...], status: 0).hasPrefix("kept "))

    let drill = try fleet.tgsess(["drill", "--ping-url", server.url])
    #expect(drill.status == 0, "\(drill.stdout) \(drill.stderr)")
    #expect(Self.expectRun(try server.requests().dropFirst(2), status: 0).hasPrefix("drill PASSED: "))

    // A zero-length session file is CRITICAL; the body is the verdict and the findings.
    let user = try fleet.sessionUserIDs()[0]
    #expect(truncate(fleet.sessionPath(user), 0) == 0)
    let check = try fleet.tgsess(["check", "--ping-url", server.url])
    #expect(check.status == 2, "\(check.stdout)")
    let body = Self.expectRun(try server.requests().dropFirst(4), status: 2)
    #expect(body.hasPrefix("CRITICAL: "), "\(body)")
    #expect(body == check.stdout.trimmingCharacters(in: .newlines))
    #expect(body.contains("user \(user)"))
    // --nagios prints one line but the ping still carries the findings.
    let nagios = try fleet.tgsess(["check", "--nagios", "--ping-url", server.url])
    #expect(nagios.status == 2)
    let nagiosBody = Self.expectRun(try server.requests().dropFirst(6), status: 2)
    #expect(nagiosBody.hasPrefix("CRITICAL: ") && nagiosBody.contains("user \(user)"), "\(nagiosBody)")
    try Self.keep(server, in: fleet)
    try Self.expectNoLeaks(fleet)
  }

  @Test func aDownOrFailingOrSlowServerIsOneWarningAndChangesNoExitStatus() throws {
    let fleet = try TestFleet(users: 3, entities: 120, collectsSecrets: true)
    let closed = try PingServer.closedURL()
    let host = try #require(URL(string: closed)).port.map { "127.0.0.1:\($0)" } ?? "?"

    let down = try fleet.tgsess(["backup", "--ping-url", closed])
    #expect(down.status == 0, "\(down.stderr)")
    #expect(down.stdout.contains("3 users, "))
    #expect(
      Self.warnings(down) == [
        "tgsess: backup: warning: ping to \(host) failed (the run is not affected): /start: connection refused; /0: connection refused"
      ], "\(down.stderr)")
    // The URL's path is a credential: no output shows it.
    #expect(!down.stderr.contains(PingServer.checkPath) && !down.stdout.contains(PingServer.checkPath))

    // A check's verdict is the same with a dead monitor.
    let plainCheck = try fleet.tgsess(["check"])
    let downCheck = try fleet.tgsess(["check", "--ping-url", closed])
    #expect(downCheck.status == plainCheck.status)
    #expect(Self.warnings(downCheck).count == 1, "\(downCheck.stderr)")

    let failing = try PingServer(status: 500)
    let errors = try fleet.tgsess(["backup", "--ping-url", failing.url])
    #expect(errors.status == 0, "\(errors.stderr)")
    #expect(
      Self.warnings(errors) == [
        "tgsess: backup: warning: ping to 127.0.0.1:\(failing.port) failed (the run is not affected): /start: HTTP 500; /0: HTTP 500"
      ], "\(errors.stderr)")
    // Both pings were still sent.
    Self.expectRun(try failing.requests()[...], status: 0)

    // A server that answers after 8 s is given up after TGSESS_PING_TIMEOUT (1 s) per ping.
    let slow = try PingServer(delay: 8)
    let started = Date()
    let late = try fleet.tgsess(["backup", "--ping-url", slow.url], environment: ["TGSESS_PING_TIMEOUT": "1"])
    let elapsed = Date().timeIntervalSince(started)
    #expect(late.status == 0, "\(late.stderr)")
    #expect(elapsed < 12, "took \(elapsed) s")
    #expect(
      Self.warnings(late) == [
        "tgsess: backup: warning: ping to 127.0.0.1:\(slow.port) failed (the run is not affected): /start: timed out after 1 s; /0: timed out after 1 s"
      ], "\(late.stderr)")
    Self.expectRun(try slow.requests()[...], status: 0)
    try Self.keep(failing, in: fleet)
    try Self.expectNoLeaks(fleet)
  }

  @Test func theFinishBodyHonoursPingBodyLimit() throws {
    let fleet = try TestFleet(users: 2, entities: 120, collectsSecrets: true)
    let server = try PingServer(bodyLimit: 12)
    // A trailing slash and the URL's own query (healthchecks' `?create=1`) are kept.
    let run = try fleet.tgsess(["backup", "--ping-url", server.url + "/?create=1"])
    #expect(run.status == 0, "\(run.stderr)")
    let requests = try server.requests()
    #expect(requests.allSatisfy { $0.parameter("create") == "1" }, "\(requests)")
    let body = Self.expectRun(requests[...], status: 0)
    let summary = try #require(run.stdout.split(separator: "\n").last.map(String.init))
    #expect(summary.utf8.count > 12)
    #expect(body == String(summary.prefix(12)), "\(body)")
    try Self.expectNoLeaks(fleet)
  }

  @Test func badPingURLsAndHooksOnRunsThatReportNothingAreUsageErrors() throws {
    let fleet = try TestFleet(users: 1, entities: 120, collectsSecrets: true)
    let secretish = "ftp://127.0.0.1/4c1f9a52-8e0b-4d37"
    let bad = try fleet.tgsess(["backup", "--ping-url", secretish])
    #expect(bad.status == 64)
    #expect(bad.stderr.contains("--ping-url is not an http:// or https:// URL"), "\(bad.stderr)")
    #expect(!bad.stderr.contains("4c1f9a52"))
    // check speaks Nagios: a flag it cannot use is UNKNOWN.
    #expect(try fleet.tgsess(["check", "--ping-url", "not a url"]).status == 3)
    for arguments in [
      ["prune", "--dry-run", "--prometheus", fleet.root + "/x.prom"], ["drill", "--history", "--ping-url", secretish],
      ["drill", "--history", "--ping-url", "http://127.0.0.1:9/x"],
    ] {
      let result = try fleet.tgsess(arguments)
      #expect(result.status == 64, "\(arguments): \(result.stderr)")
      #expect(result.stderr.contains("reports nothing to monitoring") || arguments.contains(secretish))
    }
    // A bad URL from the environment is a warning, not a failed backup.
    let fromEnvironment = try fleet.tgsess(["backup"], environment: ["TGSESS_PING_URL": "nonsense"])
    #expect(fromEnvironment.status == 0, "\(fromEnvironment.stderr)")
    #expect(
      Self.warnings(fromEnvironment) == [
        "tgsess: backup: warning: TGSESS_PING_URL is not an http:// or https:// URL; no ping is sent"
      ])
    // A dry run ignores the environment's URL (it reports nothing).
    let server = try PingServer()
    #expect(try fleet.tgsess(["prune", "--dry-run"], environment: ["TGSESS_PING_URL": server.url]).status == 0)
    #expect(try server.requests().isEmpty)
    try Self.expectNoLeaks(fleet)
  }

  // MARK: - Prometheus textfiles

  @Test func theFourCommandsShareOneTextfileDirectoryStrictly() throws {
    let fleet = try TestFleet(users: 4, entities: 120, collectsSecrets: true)
    let directory = try TemporaryDirectory("tgsess-textfiles")
    let commands = ["backup", "prune", "drill", "check"]
    var statuses: [String: Int32] = [:]
    let started = Date()
    for command in commands {
      let result = try Self.tgsessUnderUmask(
        fleet, [command, "--prometheus", directory.file("tgsess_\(command).prom")])
      statuses[command] = result.status
      if command != "check" { #expect(result.status == 0, "\(command): \(result.stdout) \(result.stderr)") }
    }
    // Four files, no temporaries left.
    #expect(
      Set(try FileManager.default.contentsOfDirectory(atPath: directory.path))
        == Set(commands.map { "tgsess_\($0).prom" }))

    // check's families from before the hooks; every other family carries its command's name.
    let checkLegacy: Set<String> = [
      "tgsess_backup_last_success_timestamp_seconds", "tgsess_sessions", "tgsess_archives", "tgsess_backups_free_bytes",
    ]
    var owner: [String: String] = [:]
    var files: [String: Exposition] = [:]
    for command in commands {
      let exposition = try Self.exposition(directory.file("tgsess_\(command).prom"), in: fleet)
      files[command] = exposition
      for name in exposition.types.keys {
        #expect(
          name.hasPrefix("tgsess_\(command)_") || (command == "check" && checkLegacy.contains(name)),
          "\(name) in tgsess_\(command).prom")
        // node_exporter silently drops a family that a second file repeats, so none may.
        #expect(owner.updateValue(command, forKey: name) == nil, "\(name) is in two files")
      }
      let status = Double(statuses[command] ?? -1)
      #expect(Self.value(exposition, "tgsess_\(command)_last_exit_status") == status, "\(command)")
      let lastRun = try #require(Self.value(exposition, "tgsess_\(command)_last_run_timestamp_seconds"))
      #expect(lastRun >= started.timeIntervalSince1970 - 1 && lastRun <= Date().timeIntervalSince1970, "\(command)")
      #expect((Self.value(exposition, "tgsess_\(command)_duration_seconds") ?? -1) >= 0, "\(command)")
      let success = Self.value(exposition, "tgsess_\(command)_last_successful_run_timestamp_seconds")
      if status == 0 { #expect(success == lastRun, "\(command)") } else { #expect(success == nil, "\(command)") }
    }
    let backup = try #require(files["backup"])
    #expect(Self.value(backup, "tgsess_backup_users") == 4)
    #expect(Self.value(backup, "tgsess_backup_users_failed") == 0)
    #expect((Self.value(backup, "tgsess_backup_archives_written") ?? 0) >= 1)
    #expect((Self.value(backup, "tgsess_backup_input_bytes") ?? 0) > 0)
    #expect((Self.value(backup, "tgsess_backup_output_bytes") ?? 0) > 0)
    let prune = try #require(files["prune"])
    #expect((Self.value(prune, "tgsess_prune_archives_kept") ?? 0) >= 1)
    #expect(Self.value(prune, "tgsess_prune_archives_removed") == 0)
    #expect(Self.value(prune, "tgsess_prune_freed_bytes") == 0)
    #expect(Self.value(prune, "tgsess_prune_rows_trimmed") != nil)
    let drill = try #require(files["drill"])
    #expect(Self.value(drill, "tgsess_drill_ok") == 1)
    #expect(Self.value(drill, "tgsess_drill_users_restored") == 4)
    #expect(Self.value(drill, "tgsess_drill_users_failed") == 0)
    let check = try #require(files["check"])
    #expect(Self.value(check, "tgsess_check_status") == Double(statuses["check"] ?? -1))

    // node_exporter reads all four without an error and serves every family.
    let exporter = try NodeExporter(directory: directory.path)
    let scraped = try exporter.scrape()
    #expect(scraped.contains("\nnode_textfile_scrape_error 0\n"), "\(scraped)")
    for name in owner.keys {
      #expect(scraped.contains("\n\(name) ") || scraped.contains("\n\(name){"), "\(name) not served")
    }
    try Self.expectNoLeaks(fleet)
  }

  @Test func aFailedRunKeepsTheLastSuccessTimestamp() throws {
    let fleet = try TestFleet(users: 4, entities: 120, collectsSecrets: true)
    let directory = try TemporaryDirectory("tgsess-textfiles")
    let path = directory.file("tgsess_backup.prom")
    let success = "tgsess_backup_last_successful_run_timestamp_seconds"

    // A drill before any backup fails as a whole: its file has the run but no success.
    let drillPath = directory.file("tgsess_drill.prom")
    let failedDrill = try Self.tgsessUnderUmask(fleet, ["drill", "--prometheus", drillPath])
    #expect(failedDrill.status == 1, "\(failedDrill.stderr)")
    let drill = try Self.exposition(drillPath, in: fleet)
    #expect(Self.value(drill, "tgsess_drill_last_exit_status") == 1)
    #expect(drill.samples("tgsess_drill_last_successful_run_timestamp_seconds").isEmpty)

    #expect(try Self.tgsessUnderUmask(fleet, ["backup", "--prometheus", path]).status == 0)
    let first = try Self.exposition(path, in: fleet)
    let firstSuccess = try #require(Self.value(first, success))

    // Lock held: exit 75, no result, the success timestamp carried over.
    let holder = try Self.holdLock(fleet)
    let locked = try Self.tgsessUnderUmask(fleet, ["backup", "--prometheus", path])
    holder.finish()
    #expect(locked.status == 75)
    let afterLock = try Self.exposition(path, in: fleet)
    #expect(Self.value(afterLock, "tgsess_backup_last_exit_status") == 75)
    #expect(Self.value(afterLock, success) == firstSuccess)
    #expect((Self.value(afterLock, "tgsess_backup_last_run_timestamp_seconds") ?? 0) > firstSuccess)
    #expect(afterLock.samples("tgsess_backup_users").isEmpty)

    // Partial: exit 3 with a result; still not a success.
    let broken = try fleet.sessionUserIDs()[1]
    let original = try Data(contentsOf: URL(fileURLWithPath: fleet.sessionPath(broken)))
    try Data(randomBytes(8192)).write(to: URL(fileURLWithPath: fleet.sessionPath(broken)))
    #expect(try Self.tgsessUnderUmask(fleet, ["backup", "--prometheus", path]).status == 3)
    let partial = try Self.exposition(path, in: fleet)
    #expect(Self.value(partial, "tgsess_backup_last_exit_status") == 3)
    #expect(Self.value(partial, "tgsess_backup_users_failed") == 1)
    #expect(Self.value(partial, "tgsess_backup_users") == 3)
    #expect(Self.value(partial, success) == firstSuccess)

    // Fixed: the next success moves it.
    try original.write(to: URL(fileURLWithPath: fleet.sessionPath(broken)))
    #expect(try Self.tgsessUnderUmask(fleet, ["backup", "--prometheus", path]).status == 0)
    let fixed = try Self.exposition(path, in: fleet)
    #expect((Self.value(fixed, success) ?? 0) > firstSuccess)
    #expect(Self.value(fixed, "tgsess_backup_last_exit_status") == 0)
    #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).count == 2)
    try Self.expectNoLeaks(fleet)
  }

  @Test func aMetricsFileThatCannotBeWrittenIsAWarningForBackupPruneAndDrill() throws {
    let fleet = try TestFleet(users: 2, entities: 120, collectsSecrets: true)
    let nowhere = fleet.root + "/missing/dir/x.prom"
    for command in ["backup", "prune", "drill"] {
      let result = try fleet.tgsess([command, "--prometheus", nowhere])
      #expect(result.status == 0, "\(command): \(result.stderr)")
      let warnings = Self.warnings(result)
      #expect(warnings.count == 1, "\(result.stderr)")
      #expect(warnings.first?.hasPrefix("tgsess: \(command): warning: metrics not written: metrics: ") == true)
    }
    try Self.expectNoLeaks(fleet)
  }

  // MARK: - Jobs pieces

  @Test func bodiesAreCutOnCharacterBoundariesAndAnUnreadableOldFileCarriesNothing() throws {
    #expect(Ping.truncated("h\u{e9}llo", to: 2) == Data("h".utf8))
    #expect(Ping.truncated("h\u{e9}llo", to: 3) == Data("h\u{e9}".utf8))
    #expect(Ping.truncated("ok", to: 10_000) == Data("ok".utf8))
    #expect(Ping.validURL("https://hc-ping.com/x") != nil)
    for bad in ["hc-ping.com/x", "ftp://host/x", "https:///x", "", "http://[::1"] { #expect(Ping.validURL(bad) == nil) }

    let directory = try TemporaryDirectory("tgsess-textfiles")
    let path = directory.file("tgsess_prune.prom")
    let success = "tgsess_prune_last_successful_run_timestamp_seconds"
    let failed = RunRecord(command: "prune", startedAt: Date(), duration: 1, exitStatus: 1)
    // Not a textfile at all: the failed run's file simply has no success family.
    try "garbage \u{0}\n\(success) not-a-number\n".write(toFile: path, atomically: true, encoding: .utf8)
    try MetricsFile(run: failed).write(to: path)
    let first = try Exposition(try String(contentsOfFile: path, encoding: .utf8))
    #expect(first.samples(success).isEmpty)
    #expect(first.samples("tgsess_prune_last_exit_status").map(\.value) == [1])
    // A success, then a failure: carried over exactly.
    let good = RunRecord(
      command: "prune", startedAt: Date(timeIntervalSince1970: 1_795_000_000.25), duration: 1, exitStatus: 0)
    try MetricsFile(run: good).write(to: path)
    try MetricsFile(run: failed).write(to: path)
    let carried = try Exposition(try String(contentsOfFile: path, encoding: .utf8))
    #expect(carried.samples(success).map(\.value) == [1_795_000_000.25])
    #expect(try FileSystem.mode(of: path) == 0o644)
  }
}

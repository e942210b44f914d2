import Foundation
import TestSupport
import Testing

/// The production files: the systemd units and the cron file in cron/, and scripts/install.sh.
/// Units are checked by systemd's own parser (`systemd-analyze verify`), the cron file by a
/// strict parser below, and the installer by staging it into a scratch DESTDIR.
@Suite struct OpsFilesTests {
  static let cronDirectory = TestEnvironment.packageRoot + "/cron"
  static let services = [
    "tgsess-backup.service", "tgsess-prune.service", "tgsess-check.service", "tgsess-drill.service",
    "tgsess-bot.service", "tgsess-watch.service",
  ]
  static let timers = ["tgsess-backup.timer", "tgsess-prune.timer", "tgsess-check.timer", "tgsess-drill.timer"]
  static let units = services + timers
  /// The long-running services (the rest are oneshots started by their timers).
  static let daemons = ["tgsess-bot.service", "tgsess-watch.service"]
  static let oneshots = services.filter { !daemons.contains($0) }
  static let textfileDirectory = "/var/lib/prometheus/node-exporter"

  static func read(_ path: String) throws -> String {
    try String(contentsOf: URL(fileURLWithPath: path), encoding: .utf8)
  }

  static func write(_ text: String, to path: String, mode: Int = 0o644) throws {
    try text.write(to: URL(fileURLWithPath: path), atomically: true, encoding: .utf8)
    try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: path)
  }

  // MARK: - systemd units

  /// A unit file as sections of settings; a key given twice keeps both values, in order.
  struct UnitFile {
    var sections: [String: [String: [String]]] = [:]

    init(_ text: String, name: String) throws {
      var section: String?
      for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
        let line = raw.trimmingCharacters(in: .whitespaces)
        if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
        guard !line.hasSuffix("\\") else { throw TestHelperError("\(name):\(index + 1): continuation lines") }
        if line.hasPrefix("[") && line.hasSuffix("]") {
          section = String(line.dropFirst().dropLast())
          continue
        }
        guard let section, let equals = line.firstIndex(of: "=") else {
          throw TestHelperError("\(name):\(index + 1): not a setting inside a section: \(line)")
        }
        let key = line[..<equals].trimmingCharacters(in: .whitespaces)
        let value = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
        sections[section, default: [:]][key, default: []].append(value)
      }
    }

    /// The last value of `key` in `section` (systemd's rule for single-valued settings).
    func value(_ section: String, _ key: String) -> String? { sections[section]?[key]?.last }

    /// Every whitespace-separated word of every `key` line in `section`.
    func words(_ section: String, _ key: String) -> [String] {
      (sections[section]?[key] ?? []).flatMap { $0.split(separator: " ").map(String.init) }
    }
  }

  static func unit(_ name: String) throws -> UnitFile {
    try UnitFile(read(cronDirectory + "/" + name), name: name)
  }

  /// Copies every unit into `directory`, with `/usr/local/bin/` pointing at executable stubs
  /// there (verify refuses an ExecStart whose binary does not exist), applying `edit` to each.
  static func stageUnits(in directory: String, edit: (String, String) -> String = { $1 }) throws {
    let bin = directory + "/bin"
    try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
    for stub in ["tgsess", "tgsess-bot"] {
      try write("#!/bin/sh\nexit 0\n", to: bin + "/" + stub, mode: 0o755)
    }
    for name in units {
      let text = try read(cronDirectory + "/" + name).replacingOccurrences(of: "/usr/local/bin/", with: bin + "/")
      try write(edit(name, text), to: directory + "/" + name)
    }
  }

  /// systemd-analyze, which parses units and calendar specs offline (no running systemd needed).
  static func analyzePath() throws -> String {
    let found = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].first {
      FileManager.default.isExecutableFile(atPath: $0)
    }
    guard let found else {
      throw TestHelperError("systemd-analyze not found; install it with: apt-get install systemd")
    }
    return found
  }

  /// What `systemd-analyze verify` says about one staged unit: its status and the stderr lines
  /// that name one of our units or the staging directory.
  static func verify(_ name: String, in directory: String) throws -> (status: Int32, problems: [String]) {
    let result = try runProcess(try analyzePath(), ["verify", "--man=no", directory + "/" + name])
    let problems = result.stderr.split(separator: "\n").map(String.init).filter { line in
      line.contains(directory) || units.contains { line.contains($0) }
    }
    return (result.status, problems)
  }

  @Test(arguments: units) func unitVerifies(_ name: String) throws {
    let directory = try TemporaryDirectory("ops-units")
    try Self.stageUnits(in: directory.path)
    let (status, problems) = try Self.verify(name, in: directory.path)
    #expect(status == 0, "systemd-analyze verify \(name) exited \(status): \(problems)")
    #expect(problems == [], "systemd-analyze verify \(name)")
  }

  /// The checker above must see each kind of mistake: an unknown key (exit 0, a warning only),
  /// a bad calendar spec and a missing binary (exit 1).
  @Test func verifyCatchesBrokenUnits() throws {
    let cases: [(unit: String, edit: (String) -> String, exitsNonZero: Bool)] = [
      ("tgsess-backup.service", { $0 + "ProtectSystm=strict\n" }, false),
      (
        "tgsess-prune.service", { $0.replacingOccurrences(of: "SuccessExitStatus=75", with: "SuccessExitStatus=7x") },
        false
      ),
      ("tgsess-check.timer", { $0.replacingOccurrences(of: "OnCalendar=*:0/5", with: "OnCalendar=*:0/5x") }, true),
      ("tgsess-bot.service", { $0.replacingOccurrences(of: "/bin/tgsess-bot", with: "/bin/tgsess-bot-missing") }, true),
    ]
    for broken in cases {
      let directory = try TemporaryDirectory("ops-units")
      try Self.stageUnits(in: directory.path) { name, text in name == broken.unit ? broken.edit(text) : text }
      let (status, problems) = try Self.verify(broken.unit, in: directory.path)
      #expect(!problems.isEmpty, "no complaint about a broken \(broken.unit)")
      #expect((status != 0) == broken.exitsNonZero, "\(broken.unit): exit \(status)")
    }
  }

  @Test func everyTimerHasItsServiceAndEveryFileIsKnown() throws {
    let files = try FileManager.default.contentsOfDirectory(atPath: Self.cronDirectory)
    let unitFiles = files.filter { $0.hasSuffix(".service") || $0.hasSuffix(".timer") }
    #expect(Set(unitFiles) == Set(Self.units))
    for timer in Self.timers {
      #expect(files.contains(timer.replacingOccurrences(of: ".timer", with: ".service")))
      #expect(try Self.unit(timer).value("Timer", "Unit") == nil, "\(timer) must start its own service")
    }
  }

  /// The sandbox every service shares, and the paths each may write.
  @Test(arguments: services) func serviceIsHardened(_ name: String) throws {
    let unit = try Self.unit(name)
    let expected = [
      "User": "tgsess", "Group": "tgsess", "UMask": "0077", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
      "PrivateTmp": "yes", "ProtectHome": "yes", "PrivateDevices": "yes", "ProtectKernelTunables": "yes",
      "ProtectKernelModules": "yes", "ProtectControlGroups": "yes", "RestrictSUIDSGID": "yes",
      "CapabilityBoundingSet": "",
    ]
    for (key, value) in expected {
      #expect(unit.value("Service", key) == value, "\(name): \(key)")
    }
    let writes = unit.words("Service", "ReadWritePaths")
    let usesTextfiles = ["tgsess-check.service", "tgsess-drill.service", "tgsess-watch.service"].contains(name)
    let textfiles = usesTextfiles ? ["-" + Self.textfileDirectory] : []
    #expect(writes == ["/srv/tgbot", "/var/backups/tgsess"] + textfiles, "\(name): ReadWritePaths")
    let families = unit.words("Service", "RestrictAddressFamilies")
    #expect(families == (Self.daemons.contains(name) ? ["AF_UNIX", "AF_INET", "AF_INET6"] : ["AF_UNIX"]))
    let exec = unit.words("Service", "ExecStart")
    #expect(exec.first == (name == "tgsess-bot.service" ? "/usr/local/bin/tgsess-bot" : "/usr/local/bin/tgsess"))
    #expect(exec.joined(separator: " ").contains("--config /etc/tgsess/tgsess.toml"))
    #expect(unit.value("Unit", "ConditionPathExists") == "/etc/tgsess/tgsess.toml")
  }

  /// Oneshot jobs: a start timeout, the lock-held exit counted as success, and for check the
  /// Nagios WARNING (1) instead.
  @Test(arguments: oneshots) func jobExitStatuses(_ name: String) throws {
    let unit = try Self.unit(name)
    #expect(unit.value("Service", "Type") == "oneshot")
    #expect(unit.value("Service", "TimeoutStartSec") != nil)
    #expect(unit.value("Service", "Restart") == nil)
    let verb = name.dropFirst("tgsess-".count).dropLast(".service".count)
    let exec = unit.words("Service", "ExecStart")
    #expect(Array(exec.prefix(2)) == ["/usr/local/bin/tgsess", String(verb)])
    if name == "tgsess-check.service" {
      #expect(unit.words("Service", "SuccessExitStatus") == ["1"])
      let prom = Self.textfileDirectory + "/tgsess_check.prom"
      #expect(exec.joined(separator: " ").hasSuffix("--prometheus \(prom)"))
    } else {
      #expect(unit.words("Service", "SuccessExitStatus") == ["75"])
    }
    #expect(unit.sections["Install"] == nil, "\(name) is started by its timer, not enabled")
  }

  /// watch runs for good: restarted whatever ended it (it exits non-zero when a watched directory
  /// goes), stopped by SIGTERM, enabled at boot, its textfile in node_exporter's directory.
  @Test func watchServiceRunsForGood() throws {
    let unit = try Self.unit("tgsess-watch.service")
    #expect(unit.value("Service", "Type") == "exec")
    #expect(unit.value("Service", "Restart") == "always")
    #expect(unit.value("Service", "RestartSec") != nil)
    #expect(unit.value("Service", "KillSignal") == "SIGTERM")
    #expect(unit.value("Service", "TimeoutStopSec") != nil)
    #expect(unit.value("Install", "WantedBy") == "multi-user.target")
    let exec = unit.words("Service", "ExecStart")
    #expect(Array(exec.prefix(2)) == ["/usr/local/bin/tgsess", "watch"])
    #expect(exec.joined(separator: " ").hasSuffix("--prometheus \(Self.textfileDirectory)/tgsess_watch.prom"))
    #expect(!exec.contains("--once"))
  }

  @Test func botServiceTakesItsTokenAsACredential() throws {
    let unit = try Self.unit("tgsess-bot.service")
    #expect(["simple", "exec"].contains(unit.value("Service", "Type") ?? ""))
    #expect(unit.value("Service", "Restart") == "on-failure")
    #expect(unit.value("Service", "KillSignal") == "SIGTERM")
    #expect(unit.value("Service", "LoadCredential") == "bot-token:/etc/tgsess/bot-token")
    #expect(unit.value("Service", "Environment") == "TGSESS_BOT_TOKEN_FILE=%d/bot-token")
    #expect(unit.value("Install", "WantedBy") == "multi-user.target")
  }

  /// Each timer's calendar, as systemd computes it: the gap between three consecutive runs.
  @Test(arguments: [
    ("tgsess-backup.timer", 3600), ("tgsess-prune.timer", 86400), ("tgsess-check.timer", 300),
    ("tgsess-drill.timer", 7 * 86400),
  ])
  func timerPeriod(_ name: String, _ seconds: Int) throws {
    let unit = try Self.unit(name)
    #expect(unit.value("Timer", "Persistent") == "true")
    #expect(unit.value("Timer", "RandomizedDelaySec") != nil)
    #expect(unit.value("Install", "WantedBy") == "timers.target")
    let spec = try #require(unit.value("Timer", "OnCalendar"))
    let result = try runProcess(
      try Self.analyzePath(), ["calendar", "--iterations=3", spec], environment: ["TZ": "UTC"])
    #expect(result.status == 0, "\(spec): \(result.stderr)")
    let formatter = DateFormatter()
    formatter.locale = Locale(identifier: "en_US_POSIX")
    formatter.timeZone = TimeZone(identifier: "UTC")
    formatter.dateFormat = "yyyy-MM-dd HH:mm:ss"
    let stamps = result.stdout.split(separator: "\n").filter { $0.contains("Next elapse:") || $0.contains("Iter. #") }
      .compactMap { line -> Date? in
        guard let match = line.firstMatch(of: /\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}/) else { return nil }
        return formatter.date(from: String(match.output))
      }
    #expect(stamps.count == 3, "\(result.stdout)")
    for (earlier, later) in zip(stamps, stamps.dropFirst()) {
      #expect(Int(later.timeIntervalSince(earlier)) == seconds, "\(name): \(spec)")
    }
  }

  // MARK: - cron

  /// One job of an /etc/cron.d file.
  struct CronJob: Equatable {
    var schedule: [String]
    var user: String
    var command: String
  }

  /// A strict reader of Debian's /etc/cron.d format (crontab(5)): variable lines, and job lines
  /// of five time fields, a user and a command. Rejects what cron would skip or misread.
  struct CronFile {
    var variables: [String: String] = [:]
    var jobs: [CronJob] = []

    static let fields: [(name: String, range: ClosedRange<Int>, names: [String])] = [
      ("minute", 0...59, []), ("hour", 0...23, []), ("day of month", 1...31, []),
      (
        "month", 1...12,
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
      ),
      ("day of week", 0...7, ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]),
    ]

    init(_ text: String, fileName: String) throws {
      guard fileName.wholeMatch(of: /[A-Za-z0-9_-]+/) != nil else {
        throw TestHelperError("cron.d file name '\(fileName)' may only hold letters, digits, '_' and '-'")
      }
      guard text.hasSuffix("\n") else { throw TestHelperError("\(fileName): the last line must end with a newline") }
      guard !text.contains("\r") else { throw TestHelperError("\(fileName): carriage return") }
      for (index, raw) in text.dropLast().split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
        let at = "\(fileName):\(index + 1)"
        let line = raw.trimmingCharacters(in: .whitespaces)
        if line.isEmpty || line.hasPrefix("#") { continue }
        if let match = line.wholeMatch(of: /([A-Za-z_][A-Za-z0-9_]*)[ \t]*=[ \t]*(.*)/) {
          variables[String(match.output.1)] = String(match.output.2)
          continue
        }
        let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        guard words.count >= 7 else {
          throw TestHelperError("\(at): a job needs 5 time fields, a user and a command: \(line)")
        }
        for (field, word) in zip(Self.fields, words) {
          try Self.checkField(word, field, at: at)
        }
        let user = words[5]
        guard user.wholeMatch(of: /[a-z_][a-z0-9_-]*/) != nil else {
          throw TestHelperError("\(at): bad user '\(user)'")
        }
        // The command is the rest of the line after the user field, spacing kept.
        var rest = Substring(line)
        for _ in 0..<6 {
          rest = rest.drop(while: { $0 != " " && $0 != "\t" }).drop(while: { $0 == " " || $0 == "\t" })
        }
        let command = String(rest)
        for index in command.indices where command[index] == "%" {
          if index == command.startIndex || command[command.index(before: index)] != "\\" {
            throw TestHelperError("\(at): an unescaped % becomes a newline in cron")
          }
        }
        jobs.append(CronJob(schedule: Array(words.prefix(5)), user: user, command: command))
      }
    }

    static func checkField(
      _ word: String, _ field: (name: String, range: ClosedRange<Int>, names: [String]), at: String
    ) throws {
      let fail = { (why: String) in TestHelperError("\(at): \(field.name) '\(word)': \(why)") }
      if field.names.contains(word.lowercased()) { return }
      for item in word.split(separator: ",", omittingEmptySubsequences: false) {
        let parts = item.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2 else { throw fail("more than one step") }
        if parts.count == 2 {
          guard let step = Int(parts[1]), step >= 1, step <= field.range.upperBound else { throw fail("bad step") }
        }
        let span = parts[0]
        if span == "*" { continue }
        let bounds = span.split(separator: "-", omittingEmptySubsequences: false)
        guard bounds.count <= 2 else { throw fail("bad range") }
        let numbers = try bounds.map { text -> Int in
          guard text.allSatisfy(\.isASCII), let number = Int(text), field.range.contains(number) else {
            throw fail("\(text) is not in \(field.range.lowerBound)-\(field.range.upperBound)")
          }
          return number
        }
        if numbers.count == 2 && numbers[0] > numbers[1] { throw fail("range runs backwards") }
        if parts.count == 2 && numbers.count == 1 { throw fail("a step needs * or a range") }
      }
    }
  }

  static func cronFile() throws -> CronFile {
    try CronFile(read(cronDirectory + "/tgsess"), fileName: "tgsess")
  }

  @Test func cronFileParses() throws {
    let cron = try Self.cronFile()
    #expect(cron.variables["SHELL"] == "/bin/sh")
    #expect(cron.variables["PATH"]?.hasPrefix("/usr/local/bin:") == true)
    #expect(cron.variables["MAILTO"]?.isEmpty == false)
    #expect(cron.jobs.count == 4)
    #expect(cron.jobs.allSatisfy { $0.user == "tgsess" })
    let verbs = cron.jobs.map { $0.command.firstMatch(of: /tgsess ([a-z]+) --config \/etc\/tgsess\/tgsess\.toml/) }
    #expect(verbs.map { $0.map { String($0.output.1) } } == ["backup", "prune", "check", "drill"])
    #expect(cron.jobs[2].schedule == ["*/5", "*", "*", "*", "*"])
    #expect(!cron.jobs.contains { $0.command.contains("flock") }, "tgsess takes its own lock")
    for job in cron.jobs {
      let syntax = try runProcess("/bin/sh", ["-n", "-c", job.command])
      #expect(syntax.status == 0, "sh -n: \(job.command): \(syntax.stderr)")
    }
  }

  @Test(arguments: [
    ("60 * * * * tgsess tgsess backup\n", "minute '60'"),
    ("0 24 * * * tgsess tgsess backup\n", "hour '24'"),
    ("0 0 0 * * tgsess tgsess backup\n", "day of month '0'"),
    ("0 0 * 13 * tgsess tgsess backup\n", "month '13'"),
    ("0 0 * * 8 tgsess tgsess backup\n", "day of week '8'"),
    ("5-1 * * * * tgsess tgsess backup\n", "runs backwards"),
    ("*/0 * * * * tgsess tgsess backup\n", "bad step"),
    ("0 * * * * tgsess\n", "5 time fields, a user and a command"),
    ("0 * * * tgsess tgsess backup\n", "day of week 'tgsess'"),
    ("@hourly tgsess tgsess backup\n", "5 time fields"),
    ("0 * * * * tgsess date +%s\n", "unescaped %"),
    ("0 * * * * tgsess tgsess backup", "newline"),
    ("0 * * * * Tgsess tgsess backup\n", "bad user"),
  ])
  func cronParserRejects(_ text: String, _ reason: String) throws {
    let error = #expect(throws: TestHelperError.self) { try CronFile(text, fileName: "tgsess") }
    #expect(error?.description.contains(reason) == true, "\(error?.description ?? "accepted"): wanted \(reason)")
  }

  @Test func cronFileNameWithADotIsRejected() {
    #expect(throws: TestHelperError.self) { try CronFile("0 * * * * tgsess tgsess backup\n", fileName: "tgsess.cron") }
  }

  /// Each job line run by sh against a stub tgsess: silent on success and on a held lock (75),
  /// the output mailed (printed) on failure; check is silent for Nagios 0-2 and loud from 3 on.
  @Test func cronJobsPrintOnlyRealFailures() throws {
    let cron = try Self.cronFile()
    let directory = try TemporaryDirectory("ops-cron")
    for job in cron.jobs {
      let isCheck = job.command.contains("tgsess check ")
      for code: Int32 in [0, 1, 2, 3, 75] {
        try Self.write(
          "#!/bin/sh\necho \"$*\" > \(directory.path)/args\necho out; echo err >&2\nexit \(code)\n",
          to: directory.file("tgsess"), mode: 0o755)
        let result = try runProcess(
          "/bin/sh", ["-c", job.command], environment: ["PATH": directory.path + ":/usr/bin:/bin"])
        let silent = code == 0 || (isCheck ? code <= 2 : code == 75)
        if silent {
          #expect(result.stdout.isEmpty && result.stderr.isEmpty, "\(job.command) exit \(code)")
        } else {
          #expect(result.stdout.contains("(exit \(code)): out\nerr"), "\(job.command) exit \(code): \(result.stdout)")
        }
        #expect(try Self.read(directory.file("args")).contains("--config /etc/tgsess/tgsess.toml"))
      }
    }
  }

  // MARK: - scripts/install.sh

  /// Every path under `root` with its mode and, for files, its content.
  static func tree(_ root: String) throws -> [String: String] {
    var tree: [String: String] = [:]
    let enumerator = FileManager.default.enumerator(atPath: root)
    while let relative = enumerator?.nextObject() as? String {
      let path = root + "/" + relative
      let attributes = try FileManager.default.attributesOfItem(atPath: path)
      let mode = String((attributes[.posixPermissions] as? Int) ?? -1, radix: 8)
      let isFile = (attributes[.type] as? FileAttributeType) == .typeRegular
      let content = isFile ? try Data(contentsOf: URL(fileURLWithPath: path)).base64EncodedString() : "dir"
      tree[relative] = mode + " " + content
    }
    return tree
  }

  static func install(_ arguments: [String], destdir: String, prefix: String = "/usr/local") throws -> ProcessResult {
    try runProcess(
      "/bin/bash", [TestEnvironment.packageRoot + "/scripts/install.sh"] + arguments,
      environment: ["DESTDIR": destdir, "PREFIX": prefix])
  }

  static var builtBinDirectory: String {
    (TestEnvironment.productPath("tgsess") as NSString).deletingLastPathComponent
  }

  @Test func installTwiceThenUninstall() throws {
    let stage = try TemporaryDirectory("ops-install")
    let arguments = ["--no-build", "--bin-dir", Self.builtBinDirectory]
    let first = try Self.install(arguments, destdir: stage.path)
    #expect(first.status == 0, "\(first.stdout)\(first.stderr)")
    #expect(first.stdout.contains("KEY ESCROW"))
    let installed = try Self.tree(stage.path)
    #expect(installed["usr/local/bin/tgsess"]?.hasPrefix("755 ") == true)
    #expect(installed["etc/tgsess/tgsess.toml"]?.hasPrefix("644 ") == true)
    #expect(installed["etc/cron.d/tgsess"] == nil, "the cron file needs --cron")
    for unit in Self.units {
      let copy = try Self.read(stage.file("etc/systemd/system/" + unit))
      #expect(copy == (try Self.read(Self.cronDirectory + "/" + unit)), "\(unit)")
    }

    let second = try Self.install(arguments, destdir: stage.path)
    #expect(second.status == 0)
    #expect(second.stdout.contains("nothing changed"))
    #expect(!second.stdout.contains("  installed "))
    #expect(try Self.tree(stage.path) == installed)

    let withCron = try Self.install(arguments + ["--cron"], destdir: stage.path)
    #expect(withCron.status == 0)
    #expect(try Self.read(stage.file("etc/cron.d/tgsess")) == (try Self.read(Self.cronDirectory + "/tgsess")))
    #expect(try Self.tree(stage.path)["etc/cron.d/tgsess"]?.hasPrefix("644 ") == true)

    let removed = try Self.install(["--uninstall"], destdir: stage.path)
    #expect(removed.status == 0, "\(removed.stderr)")
    #expect(removed.stdout.contains("Kept"))
    let left = try Self.tree(stage.path).filter { !$0.value.hasSuffix(" dir") }
    #expect(Array(left.keys) == ["etc/tgsess/tgsess.toml"])
    #expect(left["etc/tgsess/tgsess.toml"] == installed["etc/tgsess/tgsess.toml"])

    let again = try Self.install(["--uninstall"], destdir: stage.path)
    #expect(again.status == 0)
    #expect(again.stdout.contains("nothing to remove"))
  }

  @Test func installKeepsAnExistingConfigAndHonoursPrefix() throws {
    let stage = try TemporaryDirectory("ops-install")
    try FileManager.default.createDirectory(atPath: stage.file("etc/tgsess"), withIntermediateDirectories: true)
    let mine = "root = \"/srv/other\"\n"
    try Self.write(mine, to: stage.file("etc/tgsess/tgsess.toml"), mode: 0o640)
    // A bin directory holding a tgsess-bot as well, so the optional binary is installed too.
    let bin = try TemporaryDirectory("ops-bin")
    for name in ["tgsess", "tgsess-bot"] {
      try Self.write("#!/bin/sh\necho \(name)\n", to: bin.file(name), mode: 0o755)
    }
    let result = try Self.install(["--bin-dir", bin.path, "--cron"], destdir: stage.path, prefix: "/opt/tgsess")
    #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
    #expect(result.stdout.contains("kept"))
    #expect(try Self.read(stage.file("etc/tgsess/tgsess.toml")) == mine)
    #expect(try Self.tree(stage.path)["etc/tgsess/tgsess.toml"]?.hasPrefix("640 ") == true)
    #expect(FileManager.default.isExecutableFile(atPath: stage.file("opt/tgsess/bin/tgsess-bot")))
    let bot = try Self.read(stage.file("etc/systemd/system/tgsess-bot.service"))
    #expect(bot.contains("ExecStart=/opt/tgsess/bin/tgsess-bot --config"))
    #expect(!bot.contains("/usr/local/bin"))
    let cron = try CronFile(Self.read(stage.file("etc/cron.d/tgsess")), fileName: "tgsess")
    #expect(cron.variables["PATH"]?.hasPrefix("/opt/tgsess/bin:") == true)

    let removed = try Self.install(["--uninstall"], destdir: stage.path, prefix: "/opt/tgsess")
    #expect(removed.status == 0)
    #expect(!FileManager.default.fileExists(atPath: stage.file("opt/tgsess/bin/tgsess-bot")))
    #expect(!FileManager.default.fileExists(atPath: stage.file("etc/systemd/system/tgsess-bot.service")))
    #expect(try Self.read(stage.file("etc/tgsess/tgsess.toml")) == mine)
  }

  @Test func installRejectsUnknownArguments() throws {
    let stage = try TemporaryDirectory("ops-install")
    let result = try Self.install(["--frobnicate"], destdir: stage.path)
    #expect(result.status == 64)
    #expect(result.stderr.contains("unknown argument '--frobnicate'"))
    #expect(try FileManager.default.contentsOfDirectory(atPath: stage.path).isEmpty)
  }

  /// The example config is one tgsess accepts (no unknown keys, right types).
  @Test func exampleConfigIsAccepted() throws {
    let fixture = try TestFleet()
    #expect(try runTgsess(["init", "--root", fixture.root]).status == 0)
    let result = try runTgsess(["status", "--config", Self.cronDirectory + "/tgsess.toml", "--root", fixture.root])
    #expect(result.status == 0, "\(result.stderr)")
  }
}

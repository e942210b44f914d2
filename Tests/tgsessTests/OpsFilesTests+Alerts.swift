import Foundation
import Jobs
import TestSupport
import Testing

/// The alert rules (`cron/tgsess.rules.yml`) against promtool and against textfiles tgsess
/// really wrote, and the one backup-staleness metric the docs, the rules and the units share.
extension OpsFilesTests {
  static let rulesFile = cronDirectory + "/tgsess.rules.yml"
  /// promtool, from Debian's `prometheus` package (scripts/lib.sh installs it).
  /// - Throws: `TestHelperError` naming the package when it is missing.
  static func promtool() throws -> String {
    guard
      let found = ["/usr/bin/promtool", "/usr/local/bin/promtool"].first(where: FileManager.default.isExecutableFile)
    else {
      throw TestHelperError(
        "promtool is missing; install it with: apt-get install -y prometheus (scripts/lib.sh lists it in TGSESS_APT_PACKAGES)"
      )
    }
    return found
  }

  /// Textfiles written by the real commands on a real fleet (`backup`, `drill`, `prune`, `push`,
  /// `check`, each with `--prometheus`), with a remote that works ("good") and one that cannot
  /// be written ("bad"), and one broken session file when `check` runs.
  static func writeRealTextfiles(into directory: String) throws -> TestFleet {
    try Tools.require()
    let fleet = try TestFleet(users: 4)
    let blocker = fleet.directory.file("blocker")
    try write("not a directory\n", to: blocker)
    try write(
      """
      deployment_name = "bot-1"

      [[remotes]]
      name = "good"
      path = "\(fleet.directory.file("remote"))"

      [[remotes]]
      name = "bad"
      path = "\(blocker)/remote"

      """, to: fleet.root + "/tgsess.toml")
    // Watch with the good remote alone: a copy left failing is not "caught up", and its
    // textfile has no last-success time then.
    let goodOnly = fleet.directory.file("good-only.toml")
    try write(
      """
      deployment_name = "bot-1"

      [[remotes]]
      name = "good"
      path = "\(fleet.directory.file("remote"))"

      """, to: goodOnly)
    let environment = ["TGSESS_RETRY_BASE_MS": "1"]
    let runs: [([String], Set<Int32>)] = [
      // First, while no user has an archive: watch archives every one ("New user"), so its
      // textfile holds the latency gauges too.
      (["watch", "--once", "--config", goodOnly, "--prometheus", directory + "/tgsess_watch.prom"], [0]),
      (["backup", "--prometheus", directory + "/tgsess_backup.prom"], [3]),
      (["drill", "--prometheus", directory + "/tgsess_drill.prom"], [0]),
      (["prune", "--prometheus", directory + "/tgsess_prune.prom"], [0, 3]),
      (["push", "--prometheus", directory + "/tgsess_push.prom"], [3]),
    ]
    for (arguments, statuses) in runs {
      let result = try fleet.tgsess(arguments, environment: environment)
      guard statuses.contains(result.status) else {
        throw TestHelperError("tgsess \(arguments[0]) exited \(result.status): \(result.stderr)")
      }
    }
    let broken = try fleet.telethonUserIDs(1)[0]
    try Data(randomBytes(4096)).write(to: URL(fileURLWithPath: fleet.sessionPath(broken)))
    let check = try fleet.tgsess(["check", "--no-write", "--prometheus", directory + "/tgsess_check.prom"])
    guard check.status == 2 else { throw TestHelperError("check exited \(check.status): \(check.stdout)") }
    return fleet
  }

  /// The metric names in a textfile.
  static func metricNames(inTextfile path: String) throws -> Set<String> {
    Set(
      try read(path).split(separator: "\n").filter { !$0.hasPrefix("#") }.compactMap {
        $0.split(whereSeparator: { $0 == "{" || $0 == " " }).first.map(String.init)
      })
  }

  @Test func libInstallsPromtoolAndTheRulesFileChecks() throws {
    let lib = try Self.read(TestEnvironment.packageRoot + "/scripts/lib.sh")
    let packages = try #require(lib.firstMatch(of: /TGSESS_APT_PACKAGES=\(([^)]*)\)/)).output.1
    #expect(packages.split(separator: " ").contains("prometheus"))
    let result = try runProcess(try Self.promtool(), ["check", "rules", Self.rulesFile])
    #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
    #expect(result.stdout.contains("SUCCESS: 13 rules found"), "\(result.stdout)")
    // The checker catches a broken rule.
    let scratch = try TemporaryDirectory("ops-rules")
    let broken = scratch.file("broken.yml")
    try Self.write(try Self.read(Self.rulesFile).replacingOccurrences(of: "> 7200", with: "> > 7200"), to: broken)
    #expect(try runProcess(try Self.promtool(), ["check", "rules", broken]).status != 0)
  }

  /// `promtool test rules` on input series converted from textfiles tgsess wrote: each sample
  /// becomes a constant series (as node_exporter serves a file nobody rewrites), with every
  /// `*_timestamp_seconds` value moved so that the check's run is time 0 of the test. Then the
  /// alerts that should fire do, at the times they should, with their labels and annotations.
  @Test func rulesFireOnTextfilesTgsessWrote() throws {
    let promtool = try Self.promtool()
    let textfiles = try TemporaryDirectory("ops-textfiles")
    _ = try Self.writeRealTextfiles(into: textfiles.path)
    let node = ["instance": "bot-1", "job": "node"]
    func labels(_ extra: [String: String]) -> [String: String] { node.merging(extra) { $1 } }
    // (eval time, alert, the label sets expected to fire; [] when none may)
    let expected: [(String, String, [[String: String]])] = [
      ("10m", "TgsessSessionsCritical", [labels(["state": "critical", "severity": "critical"])]),
      ("10m", "TgsessSessionsWarning", []),
      ("10m", "TgsessCheckNotRunning", []),
      ("10m", "TgsessCheckFailing", []),
      ("10m", "TgsessBackupStale", []),
      ("10m", "TgsessDrillFailed", []),
      ("10m", "TgsessMetricsAbsent", []),
      ("20m", "TgsessCheckNotRunning", [labels(["severity": "warning"])]),
      ("20m", "TgsessCheckFailing", [labels(["severity": "critical"])]),
      ("1h", "TgsessBackupStale", []),
      ("1h", "TgsessNoFullSnapshot", []),
      ("1h", "TgsessOffsiteFailing", []),
      ("3h", "TgsessBackupStale", [labels(["severity": "critical"])]),
      ("3h", "TgsessOffsiteFailing", [labels(["remote": "bad", "severity": "warning"])]),
      ("3h", "TgsessOffsiteBehind", [labels(["remote": "bad", "severity": "warning"])]),
      ("7d", "TgsessDrillTooOld", []),
      ("9d", "TgsessDrillTooOld", [labels(["severity": "warning"])]),
      ("9d", "TgsessNoDrill", []),
    ]
    let cases = expected.map { ["eval_time": $0.0, "alertname": $0.1, "labels": $0.2] as [String: Any] }
    let testFile = textfiles.file("tgsess.rules.test.yml")
    try runPython(
      """
      import glob, json, os, re, sys, yaml
      directory, rules_path, out, cases = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
      node = {'instance': 'bot-1', 'job': 'node'}
      samples = []
      for path in sorted(glob.glob(os.path.join(directory, '*.prom'))):
          for line in open(path):
              line = line.strip()
              if not line or line.startswith('#'):
                  continue
              m = re.fullmatch(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\\{(.*)\\})? (\\S+)', line)
              assert m, line
              labels = dict(re.findall(r'(\\w+)="((?:[^"\\\\]|\\\\.)*)"', m.group(3) or ''))
              samples.append((m.group(1), labels, float(m.group(4))))
      base = [v for n, l, v in samples if n == 'tgsess_check_last_run_timestamp_seconds']
      assert len(base) == 1, base
      series = []
      for name, labels, value in samples:
          if name.endswith('_timestamp_seconds'):
              value -= base[0]
          labels = dict(labels, **node)
          text = ','.join('%s="%s"' % (k, labels[k]) for k in sorted(labels))
          series.append({'series': '%s{%s}' % (name, text), 'values': '%.6f+0x3000' % value})
      rules = {r['alert']: r for g in yaml.safe_load(open(rules_path))['groups'] for r in g['rules']}
      def annotations(alert, labels):
          return {k: re.sub(r'\\{\\{ \\$labels\\.(\\w+) \\}\\}', lambda m: labels[m.group(1)], v)
                  for k, v in rules[alert]['annotations'].items()}
      def tests(cases):
          return [{'eval_time': c['eval_time'], 'alertname': c['alertname'],
                   'exp_alerts': [{'exp_labels': l, 'exp_annotations': annotations(c['alertname'], l)}
                                  for l in c['labels']]} for c in cases]
      missing = [{'eval_time': '35m', 'alertname': 'TgsessMetricsAbsent', 'labels': [{'severity': 'warning'}]}]
      watch = [
          {'eval_time': '5m', 'alertname': 'TgsessWatchStuck', 'labels': []},
          {'eval_time': '15m', 'alertname': 'TgsessWatchStuck',
           'labels': [dict(node, severity='critical')]},
      ]
      watch_series = [
          {'series': 'tgsess_watch_queue_length{instance="bot-1",job="node"}', 'values': '3+0x100'},
          {'series': 'tgsess_watch_last_success_timestamp_seconds{instance="bot-1",job="node"}', 'values': '0+0x100'},
      ]
      document = {
          'rule_files': [rules_path],
          'evaluation_interval': '5m',
          'tests': [
              {'name': 'textfiles tgsess wrote', 'interval': '5m', 'input_series': series,
               'alert_rule_test': tests(cases)},
              {'name': 'no tgsess metrics at all', 'interval': '5m',
               'input_series': [{'series': 'up{instance="bot-1",job="node"}', 'values': '1+0x100'}],
               'alert_rule_test': tests(missing)},
              {'name': 'watch (synthetic: tgsess watch is not in this tree yet)', 'interval': '5m',
               'input_series': watch_series, 'alert_rule_test': tests(watch)},
          ],
      }
      json.dump(document, open(out, 'w'), indent=1)
      """,
      arguments: [
        textfiles.path, Self.rulesFile, testFile,
        String(decoding: try JSONSerialization.data(withJSONObject: cases), as: UTF8.self),
      ])
    let result = try runProcess(promtool, ["test", "rules", testFile])
    #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
    #expect(result.stdout.contains("SUCCESS"), "\(result.stdout)")

    // The same test fails when a rule loses what it alerts on.
    let broken = textfiles.file("broken.rules.yml")
    try Self.write(
      try Self.read(Self.rulesFile).replacingOccurrences(
        of: "tgsess_sessions{state=\"critical\"} > 0", with: "tgsess_sessions{state=\"unauthorized\"} > 0"),
      to: broken)
    let brokenTest = textfiles.file("broken.test.yml")
    try Self.write(try Self.read(testFile).replacingOccurrences(of: Self.rulesFile, with: broken), to: brokenTest)
    #expect(try runProcess(promtool, ["test", "rules", brokenTest]).status != 0)
  }

  /// Every `tgsess_*` metric the README, the RUNBOOK, the rules and the shipped units name is
  /// one a tgsess command really writes, so no document alerts on a
  /// metric nothing produces.
  @Test func everyDocumentedMetricIsOneTgsessWrites() throws {
    let textfiles = try TemporaryDirectory("ops-textfiles")
    _ = try Self.writeRealTextfiles(into: textfiles.path)
    var written = Set<String>()
    for name in try FileManager.default.contentsOfDirectory(atPath: textfiles.path) where name.hasSuffix(".prom") {
      written.formUnion(try Self.metricNames(inTextfile: textfiles.file(name)))
    }
    let documents =
      [
        TestEnvironment.packageRoot + "/README.md", TestEnvironment.packageRoot + "/docs/RUNBOOK.md", Self.rulesFile,
      ]
      + (try FileManager.default.contentsOfDirectory(atPath: Self.cronDirectory).map { Self.cronDirectory + "/" + $0 })
    // A metric name: not a file name (`tgsess_check.prom`), a pattern (`tgsess_<command>_…`) or
    // the database's table `tgsess_state`.
    let pattern = /tgsess_[a-z0-9_]*[a-z0-9](?![a-z0-9_.<])/
    var named: [String: Set<String>] = [:]
    for document in documents {
      for match in try Self.read(document).matches(of: pattern) where String(match.output) != "tgsess_state" {
        named[String(match.output), default: []].insert((document as NSString).lastPathComponent)
      }
    }
    #expect(named.count > 10)
    for (metric, places) in named.sorted(by: { $0.key < $1.key }) {
      #expect(
        // A family with `_sum`/`_count` is written under those names until it has a value.
        written.contains(metric) || written.contains(metric + "_sum"),
        "\(metric) (named in \(places.sorted())) is in no textfile tgsess writes")
    }
  }

  /// Backup staleness is one metric everywhere: the check's
  /// `tgsess_backup_last_success_timestamp_seconds` (the newest verified full snapshot, refreshed
  /// every 5 minutes by the shipped check unit), never the backup job's own run metric, which
  /// the shipped backup unit does not write.
  @Test func oneBackupStalenessMetricEverywhere() throws {
    let metric = "tgsess_backup_last_success_timestamp_seconds"
    let runMetric = "tgsess_backup_last_successful_run_timestamp_seconds"
    let rules = try Self.read(Self.rulesFile)
    #expect(rules.contains("expr: time() - \(metric) > 7200"))
    for path in [TestEnvironment.packageRoot + "/README.md", TestEnvironment.packageRoot + "/docs/RUNBOOK.md"] {
      let text = try Self.read(path)
      #expect(text.contains("time() - \(metric)"), "\(path)")
      #expect(!text.contains(runMetric), "\(path) names the backup run metric")
      #expect(!text.contains("a backup getting old) is for monitoring"), "\(path): a stale snapshot is CRITICAL")
    }
    // The check unit and the cron line write the check's textfile every 5 minutes; the backup
    // unit and cron line write none.
    let check = try Self.unit("tgsess-check.service").words("Service", "ExecStart").joined(separator: " ")
    #expect(check.hasSuffix("--prometheus \(Self.textfileDirectory)/tgsess_check.prom"))
    let backup = try Self.unit("tgsess-backup.service").words("Service", "ExecStart")
    #expect(!backup.contains("--prometheus"))
    let cron = try Self.cronFile()
    #expect(cron.jobs.contains { $0.command.contains("check --config") && $0.command.contains("tgsess_check.prom") })
    #expect(cron.jobs.contains { $0.command.contains("backup --config") && !$0.command.contains("--prometheus") })
    // check writes it: the newest verified full snapshot's time.
    let textfiles = try TemporaryDirectory("ops-textfiles")
    let fleet = try Self.writeRealTextfiles(into: textfiles.path)
    #expect(try Self.metricNames(inTextfile: textfiles.file("tgsess_check.prom")).contains(metric))
    #expect(!(try Self.metricNames(inTextfile: textfiles.file("tgsess_backup.prom")).contains(metric)))
    let newest = try fleet.listedArchives(["--kind", "full"]).first?.createdAt
    let value = try Self.read(textfiles.file("tgsess_check.prom")).split(separator: "\n")
      .first { $0.hasPrefix(metric + " ") }.flatMap { Double($0.split(separator: " ")[1]) }
    #expect(value.map { Int($0) } == newest.map { Int($0.timeIntervalSince1970) })
  }

  /// install.sh puts the rules where Prometheus looks when that directory exists, else under
  /// the prefix's share directory; --uninstall removes them.
  @Test func installPutsTheRulesWherePrometheusLooks() throws {
    let arguments = ["--no-build", "--bin-dir", Self.builtBinDirectory]
    let plain = try TemporaryDirectory("ops-install")
    let first = try Self.install(arguments, destdir: plain.path)
    #expect(first.status == 0, "\(first.stdout)\(first.stderr)")
    let shared = plain.file("usr/local/share/tgsess/tgsess.rules.yml")
    #expect(try Self.read(shared) == (try Self.read(Self.rulesFile)))
    #expect(try Self.tree(plain.path)["usr/local/share/tgsess/tgsess.rules.yml"]?.hasPrefix("644 ") == true)
    #expect(first.stdout.contains("add the alert rules (\(shared)) under rule_files:"))

    let prometheus = try TemporaryDirectory("ops-install")
    try FileManager.default.createDirectory(
      atPath: prometheus.file("etc/prometheus/rules"), withIntermediateDirectories: true)
    #expect(try Self.install(arguments, destdir: prometheus.path).status == 0)
    #expect(try Self.read(prometheus.file("etc/prometheus/rules/tgsess.rules.yml")) == (try Self.read(Self.rulesFile)))
    #expect(!FileManager.default.fileExists(atPath: prometheus.file("usr/local/share/tgsess")))

    for stage in [plain, prometheus] {
      #expect(try Self.install(["--uninstall"], destdir: stage.path).status == 0)
      #expect(!FileManager.default.fileExists(atPath: stage.file("etc/prometheus/rules/tgsess.rules.yml")))
      #expect(!FileManager.default.fileExists(atPath: stage.file("usr/local/share/tgsess")))
    }
  }
}

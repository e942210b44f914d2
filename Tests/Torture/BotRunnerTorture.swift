import Foundation
import Jobs
import Store
import TestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// The bot runner under torture: the built `tgsess-bot` against the fake Bot API
/// (`Tests/BotTests/Fixtures/fake_bot_api.py`) on loopback, on generated deployments.
///
/// - kill -9 during /recover and during a confirmed /logout, at the crash points on their path
///   and at random moments: the session file is whole (wholly old or wholly new, never half),
///   every archive `tgsess list` shows verifies, and after a restart (start-up recovery and the
///   replayed update) the user holds their session again, or is logged out with a proven
///   "Before logout" archive that holds it; no temporary is left.
/// - cron's `tgsess backup` and `tgsess prune` racing with /recover, /logout and /status: no
///   command fails except with the lock-busy answer (exit 75; the bot's "another maintenance job"
///   texts), nothing is lost, and a last prune leaves at most 5 backups per user.
/// - Bot API faults on getUpdates and sendMessage: the runner keeps running, the user's action
///   happens once, a transient fault is repeated at most 3 times, a fatal one never.
/// - kill -9 between handling an update and recording its offset, and at random moments while
///   updates are handled: after a restart every update was answered, and only the one update in
///   flight may be answered twice (docs/BOT.md, "Offset, at least once").
///
/// Every runner's stdout and stderr and every message it sent go to the secret scan.
@Suite(.serialized, .enabled(if: Torture.isEnabled, "set TGSESS_TORTURE_SCALE=quick|full (scripts/torture.sh)"))
struct BotRunnerTorture {
  static let family = "bot-runner"
  static let report = FamilyReport(family)

  // MARK: - kill -9 during /recover

  /// The writes on /recover's path: the session file's atomic write.
  static let recoverPoints = ["atomic.before-fsync", "atomic.after-rename"]

  @Test func killDuringRecover() throws {
    var random = TortureRandom(seed: Torture.seed ^ 0xB07_0001)
    // Quick: one case, a crash point or a random kill as the seed picks.
    var runs = Self.recoverPoints.map { Optional($0) } + Array(repeating: nil, count: 12)
    if !Torture.isFull { runs = [runs[Int(random.next() % UInt64(Self.recoverPoints.count + 1))]] }
    let points = runs.compactMap { $0 }.count
    let randomKills = runs.count - points
    let bot = try BotDeployment(users: 4, seed: 41)
    defer { bot.close() }
    let baseline = try bot.checkStatus()
    var killed = 0
    var pointsReached = 0
    var movedAside = 0
    for (index, point) in runs.enumerated() {
      let name = point.map { "recover, crash point \($0)" } ?? "recover, random kill #\(index - points + 1)"
      let user = bot.fleet.userIDs[index % bot.fleet.userIDs.count]
      let removes = random.next() % 2 == 0
      Self.report.check(name, counts: ["recover kills": 1]) {
        try bot.start(crashPoint: point)
        let expected = try bot.identity(user)
        // Damage the file only now: the start-up recovery would repair it first.
        if removes {
          try FileManager.default.removeItem(atPath: bot.fleet.sessionPath(user))
        } else {
          try bot.corrupt(user)
        }
        let damaged =
          FileSystem.exists(bot.fleet.sessionPath(user))
          ? try FileSystem.sha256(ofFile: bot.fleet.sessionPath(user)) : nil
        let update = try bot.fake.send("/recover", from: user)
        var problems: [String] = []
        if point != nil {
          if bot.waitForDeath(timeout: 60) {
            pointsReached += 1
          } else {
            problems.append("the crash point was never reached")
            bot.kill()
          }
        } else {
          usleep(UInt32.random(in: 0...2_500_000, using: &random))
          if bot.kill() { killed += 1 }
        }
        // Right after the kill: the file is wholly old (as damaged) or wholly new.
        // Recover moves a broken file aside before it writes the new one (never deletes it), so
        // "wholly old" may also be: no file, the broken one kept aside byte for byte.
        let path = bot.fleet.sessionPath(user)
        let now = FileSystem.exists(path) ? try FileSystem.sha256(ofFile: path) : nil
        if now == nil, let damaged, try bot.brokenCopiesAside(user).contains(damaged) {
          movedAside += 1
        } else if now != damaged {
          let identity = try? bot.identity(user)
          if identity != expected {
            problems.append(
              "after the kill the session file is neither the old one nor the recovered one (\(now == nil ? "absent" : "present, \(identity ?? "invalid")"))"
            )
          } else if try StockTools.integrityCheck(path) != "ok" {
            problems.append("the recovered file fails integrity_check")
          }
        }
        problems += try bot.databaseIsWhole()
        problems += try bot.listedArchivesVerify()
        // The next run: start-up recovery, then the replayed /recover.
        try bot.start()
        try bot.waitHandled(update)
        problems += try bot.sessionIs(user, expected)
        problems += try bot.settled(baseline: baseline)
        return problems
      }
    }
    Self.report.tally([
      "recover crash points": points, "recover crash points reached": pointsReached,
      "recover random kills": randomKills, "recover random kills landed": killed,
      "recover kills with the broken file aside": movedAside,
      "archive temporaries left for the next backup": bot.archiveTemporariesLeft,
    ])
    try bot.finish()
  }

  // MARK: - kill -9 during /logout

  /// The writes on a confirmed logout's path: its "Before logout" backup, then the removal of the
  /// session files before the row is marked.
  static let logoutPoints = [
    "backup.after-session-snapshot", "archive.before-fsync", "archive.after-verify", "archive.before-publish",
    "archive.after-publish", "logout.after-remove-files",
  ]

  @Test func killDuringLogout() throws {
    var random = TortureRandom(seed: Torture.seed ^ 0xB07_0002)
    // Quick: one case, a crash point or a random kill as the seed picks.
    var runs = Self.logoutPoints.map { Optional($0) } + Array(repeating: nil, count: 12)
    if !Torture.isFull { runs = [runs[Int(random.next() % UInt64(Self.logoutPoints.count + 1))]] }
    let points = runs.compactMap { $0 }.count
    let randomKills = runs.count - points
    let bot = try BotDeployment(users: runs.count + 1, seed: 42)
    defer { bot.close() }
    let baseline = try bot.checkStatus()
    var killed = 0
    var pointsReached = 0
    for (index, point) in runs.enumerated() {
      let name = point.map { "logout, crash point \($0)" } ?? "logout, random kill #\(index - points + 1)"
      let user = bot.fleet.userIDs[index]
      Self.report.check(name, counts: ["logout kills": 1]) {
        try bot.start(crashPoint: point)
        let expected = try bot.identity(user)
        let archivesBefore = try Witness.archiveFiles(bot.fleet)
        let question = try bot.say("/logout", from: user)
        guard let messageID = question.last?.messageID else { return ["no logout question"] }
        let update = try bot.fake.press("logout-yes:\(user)", from: user, messageID: messageID)
        var problems: [String] = []
        if point != nil {
          if bot.waitForDeath(timeout: 60) {
            pointsReached += 1
          } else {
            problems.append("the crash point was never reached")
            bot.kill()
          }
        } else {
          usleep(UInt32.random(in: 0...1_500_000, using: &random))
          if bot.kill() { killed += 1 }
        }
        // Right after the kill: the session whole or gone, the database whole, archives published
        // whole or not at all, the older ones untouched.
        if FileSystem.exists(bot.fleet.sessionPath(user)) {
          problems += try bot.sessionIs(user, expected)
        }
        problems += try bot.databaseIsWhole()
        problems += try bot.listedArchivesVerify()
        let archivesNow = try Witness.archiveFiles(bot.fleet)
        for (archive, hash) in archivesBefore where archivesNow[archive] != hash {
          problems.append("archive \(archive) changed or vanished")
        }
        // The next run replays the confirmation and finishes the logout.
        try bot.start()
        try bot.waitHandled(update)
        if FileSystem.exists(bot.fleet.sessionPath(user)) { problems.append("the session file is still there") }
        let status = try bot.query("SELECT status FROM user_sessions WHERE user_id = \(user)")
        if status != "logged_out" { problems.append("the row says '\(status)', not logged_out") }
        problems += try bot.beforeLogoutArchiveHolds(user, expected)
        problems += try bot.settled(baseline: baseline)
        return problems
      }
    }
    Self.report.tally([
      "logout crash points": points, "logout crash points reached": pointsReached,
      "logout random kills": randomKills, "logout random kills landed": killed,
      "archive temporaries left for the next backup": bot.archiveTemporariesLeft,
    ])
    try bot.finish()
  }

  // MARK: - cron racing with the bot

  @Test func cronRacesTheBot() throws {
    var random = TortureRandom(seed: Torture.seed ^ 0xB07_0003)
    let rounds = Torture.pick(quick: 1, full: 10)
    let bot = try BotDeployment(users: Torture.pick(quick: 4, full: 8), seed: 43)
    defer { bot.close() }
    let expected = try Dictionary(uniqueKeysWithValues: bot.fleet.userIDs.map { ($0, try bot.identity($0)) })
    try bot.start()
    var exits: [String: Int] = [:]
    var answers: [String: Int] = [:]
    var loggedOut: Set<Int64> = []
    for round in 1...rounds {
      Self.report.check("race round \(round)", counts: ["race rounds": 1]) {
        var problems: [String] = []
        // The bot's commands first, so cron meets the lock they hold.
        var recovers: [(Int64, Int64)] = []
        var logouts: [(Int64, Int64)] = []
        var statuses: [Int64] = []
        for user in bot.fleet.userIDs.shuffled(using: &random).prefix(4) {
          switch random.next() % 4 {
          case 0 where !loggedOut.contains(user) && loggedOut.count < bot.fleet.userIDs.count / 2:
            let question = try bot.say("/logout", from: user)
            if let id = question.last?.messageID { logouts.append((user, id)) }
          case 1, 2: recovers.append((user, try bot.fake.send("/recover", from: user)))
          default: statuses.append(try bot.fake.send("/status", from: user))
          }
        }
        var pressed: [Int64: Int64] = [:]
        for (user, messageID) in logouts {
          pressed[user] = try bot.fake.press("logout-yes:\(user)", from: user, messageID: messageID)
        }
        let cron = try [
          ["backup"], ["prune"], ["backup", "--user", String(bot.fleet.userIDs.randomElement(using: &random)!)],
          ["prune"],
        ]
        .map { try bot.fleet.background($0) }
        for process in cron {
          let (status, _) = process.wait()
          Capture.keep(process)
          exits["exit \(status)", default: 0] += 1
          if status != 0 && status != 75 {
            problems.append("\(process.label) exited \(status): \(process.stderr.prefix(300))")
          } else if status == 75 && !process.stderr.contains("pid") {
            problems.append("\(process.label) exited 75 without naming the holder: \(process.stderr.prefix(300))")
          }
        }
        for (_, update) in recovers { try bot.waitHandled(update) }
        for update in statuses { try bot.waitHandled(update) }
        for (_, update) in pressed { try bot.waitHandled(update) }
        let state = try bot.fake.state()
        for (user, _) in recovers {
          let text = state.messages(to: user).last.flatMap { state.currentText(of: $0.messageID) } ?? ""
          if loggedOut.contains(user) {
            if !text.hasPrefix("You logged out") {
              problems.append("user \(user) (logged out): /recover answered: \(text.prefix(200))")
            }
            continue
          }
          if text.contains("Another maintenance job") {
            answers["recover: lock busy", default: 0] += 1
          } else if text.contains("Could not") || text.contains("could not run")
            || !text.contains("Recovering your session")
          {
            problems.append("user \(user): /recover answered: \(text.prefix(200))")
          } else {
            answers["recover: done", default: 0] += 1
          }
        }
        for (user, messageID) in logouts {
          let text = state.currentText(of: messageID) ?? ""
          if text.contains("Another maintenance job") {
            answers["logout: lock busy", default: 0] += 1
          } else if text.hasPrefix("You are logged out") {
            answers["logout: done", default: 0] += 1
            loggedOut.insert(user)
          } else {
            problems.append("user \(user): the logout answered: \(text.prefix(200))")
          }
        }
        problems += try bot.databaseIsWhole()
        problems += try bot.listedArchivesVerify()
        return problems
      }
    }
    Self.report.check("race: nothing lost, 5 per user", counts: ["race final checks": 1]) {
      var problems: [String] = []
      try bot.fleet.tgsessOK(["prune"])
      for user in bot.fleet.userIDs {
        if loggedOut.contains(user) {
          problems += try bot.beforeLogoutArchiveHolds(user, expected[user]!)
        } else {
          problems += try bot.sessionIs(user, expected[user]!)
        }
        let rows = Int(try bot.query("SELECT count(*) FROM session_backups WHERE user_id = \(user)")) ?? -1
        if rows > 5 { problems.append("user \(user) has \(rows) session_backups rows after prune") }
        let archives = try Witness.listed(bot.fleet).filter { $0.kind == .user && $0.userID == user }.count
        if archives > 5 { problems.append("user \(user) has \(archives) per-user archives after prune") }
      }
      problems += try bot.listedArchivesVerify()
      problems += try Witness.leftovers(bot.fleet).map { "left behind: \($0)" }
      return problems
    }
    Self.report.tally(exits.merging(answers) { $0 + $1 }.reduce(into: [:]) { $0["race " + $1.key] = $1.value })
    try bot.finish()
  }

  // MARK: - Bot API faults

  /// Answers that fail and are repeated: 500, 502, 429 (retry_after 1 s), a reset connection,
  /// malformed JSON.
  static var failingFaults: [[String: Any]] {
    [["kind": "500"], ["kind": "502"], ["kind": "429", "retry_after": 1], ["kind": "drop"], ["kind": "malformed"]]
  }

  /// Up to `most` failing answers, then perhaps a slow one (1 s) that succeeds: a slow answer is
  /// not repeated, so it comes last, where the request that ends the retries meets it.
  static func faults(most: Int, _ random: inout TortureRandom) -> [[String: Any]] {
    var faults = (0..<Int(random.next() % UInt64(most + 1))).map { _ in failingFaults.randomElement(using: &random)! }
    if random.next() % 3 == 0 { faults.append(["kind": "slow", "seconds": 1]) }
    return faults
  }

  @Test func apiFaultsMidCommand() throws {
    var random = TortureRandom(seed: Torture.seed ^ 0xB07_0004)
    let rounds = Torture.pick(quick: 1, full: 10)
    let bot = try BotDeployment(users: 3, seed: 44)
    defer { bot.close() }
    try bot.start()
    var injected = 0
    for round in 1...rounds {
      let user = bot.fleet.userIDs[round % bot.fleet.userIDs.count]
      // Up to 3 faults on each method: every answer still arrives (3 retries).
      let pollFaults = Self.faults(most: 3, &random)
      let sendFaults = Self.faults(most: 3, &random)
      let editFaults = Self.faults(most: 2, &random)
      injected += pollFaults.count + sendFaults.count + editFaults.count
      let kinds = [("getUpdates", pollFaults), ("sendMessage", sendFaults), ("editMessageText", editFaults)]
        .filter { !$0.1.isEmpty }.map { "\($0.0) \($0.1.map { $0["kind"] as! String }.joined(separator: ","))" }
        .joined(separator: "; ")
      Self.report.check("faults round \(round) (\(kinds.isEmpty ? "none" : kinds))", counts: ["fault rounds": 1]) {
        let expected = try bot.identity(user)
        try bot.corrupt(user)
        let before = try bot.fake.state()
        let sendsBefore = before.requests.filter { $0.method == "sendMessage" && Self.chat(of: $0.params) == user }
          .count
        let recoveredBefore = bot.logCount("recover by command", user: user)
        try bot.fake.fault(
          pollFaults.map { $0.merging(["method": "getUpdates"]) { $1 } }
            + sendFaults.map { $0.merging(["method": "sendMessage"]) { $1 } }
            + editFaults.map { $0.merging(["method": "editMessageText"]) { $1 } })
        let update = try bot.fake.send("/recover", from: user)
        try bot.waitHandled(update, timeout: 120)
        var problems: [String] = []
        // getUpdates faults queued while a poll was parked meet the polls after it.
        do {
          try bot.waitFor("every fault to be met", timeout: 60) { $0.faultsLeft == 0 }
        } catch { problems.append("\(try bot.fake.state().faultsLeft) faults were never met") }
        let state = try bot.fake.state()
        let messages = state.messages(to: user).count - before.messages(to: user).count
        if messages != 1 { problems.append("\(messages) new messages in the user's chat, not 1") }
        let sends =
          state.requests.filter { $0.method == "sendMessage" && Self.chat(of: $0.params) == user }.count - sendsBefore
        // A slow answer is no failure: only the others are repeated.
        let failing = sendFaults.filter { $0["kind"] as? String != "slow" }.count
        if sends != 1 + failing { problems.append("\(sends) sendMessage calls for \(failing) failing answers") }
        let text = state.messages(to: user).last.flatMap { state.currentText(of: $0.messageID) } ?? ""
        if !text.contains("Recovered") { problems.append("the answer does not say recovered: \(text.prefix(200))") }
        let recovered = bot.logCount("recover by command", user: user) - recoveredBefore
        if recovered != 1 { problems.append("the recovery ran \(recovered) times") }
        problems += try bot.sessionIs(user, expected)
        if !bot.isRunning { problems.append("the runner stopped") }
        return problems
      }
    }
    // Past the retries: 4 transient faults give up after the 4th attempt; a fatal one (403) is
    // not repeated. Either way nothing runs without its first answer, and the next update works.
    let pastRetries: [(String, [[String: Any]])] = [
      (
        "4 transient faults on sendMessage: 3 retries, then given up",
        (0..<4).map { _ in ["kind": "502"] as [String: Any] }
      ),
      ("403 on sendMessage: not repeated", [["kind": "403"] as [String: Any]]),
    ]
    for (name, faults) in Torture.isFull ? pastRetries : [pastRetries[1]] {
      let user = bot.fleet.userIDs[0]
      Self.report.check(name, counts: ["fault rounds": 1]) {
        let before = try bot.fake.state()
        let sendsBefore = before.requests.filter { $0.method == "sendMessage" && Self.chat(of: $0.params) == user }
          .count
        try bot.fake.fault(faults.map { $0.merging(["method": "sendMessage"]) { $1 } })
        let update = try bot.fake.send("/status", from: user)
        try bot.waitHandled(update, timeout: 120)
        var problems: [String] = []
        let state = try bot.fake.state()
        let sends =
          state.requests.filter { $0.method == "sendMessage" && Self.chat(of: $0.params) == user }.count - sendsBefore
        if sends != faults.count { problems.append("\(sends) sendMessage calls, expected \(faults.count)") }
        if state.messages(to: user).count != before.messages(to: user).count {
          problems.append("a message arrived anyway")
        }
        let next = try bot.say("/status", from: user)
        if next.count != 1 { problems.append("the next /status got \(next.count) answers") }
        if !bot.isRunning { problems.append("the runner stopped") }
        return problems
      }
      injected += faults.count
    }
    Self.report.tally(["faults injected": injected])
    try bot.finish()
  }

  static func chat(of params: [String: Any]) -> Int64 { (params["chat_id"] as? NSNumber)?.int64Value ?? 0 }

  // MARK: - Restart: at least once, never more

  @Test func restartNeitherLosesNorReplays() throws {
    var random = TortureRandom(seed: Torture.seed ^ 0xB07_0005)
    let pointRuns = Torture.pick(quick: 1, full: 3)
    let randomKills = Torture.pick(quick: 0, full: 8)
    let bot = try BotDeployment(users: 2, seed: 45)
    defer { bot.close() }
    var replayed = 0
    var killed = 0
    var chat: Int64 = 700_000_000
    for run in 0..<(pointRuns + randomKills) {
      let atPoint = run < pointRuns
      let name =
        atPoint ? "restart, crash point bot.before-offset #\(run + 1)" : "restart, random kill #\(run - pointRuns + 1)"
      Self.report.check(name, counts: ["restart kills": 1]) {
        try bot.start(crashPoint: atPoint ? "bot.before-offset" : nil)
        var chats: [Int64: Int64] = [:]  // update id -> chat
        if !atPoint {
          // Slow answers, so the kill lands while updates are being handled.
          try bot.fake.fault((0..<6).map { _ in ["method": "sendMessage", "kind": "slow", "seconds": 0.3] })
        }
        for _ in 0..<6 {
          chat += 1
          chats[try bot.fake.send("/status", from: chat)] = chat
        }
        var problems: [String] = []
        if atPoint {
          if !bot.waitForDeath(timeout: 60) { problems.append("the crash point was never reached") }
        } else {
          usleep(UInt32.random(in: 0...2_000_000, using: &random))
        }
        if bot.kill() || atPoint { killed += 1 }
        // No offset recorded yet: getUpdates without one starts at the first pending update.
        let offset =
          Int64(try bot.query("SELECT value FROM tgsess_state WHERE key = 'bot.update_offset'")) ?? chats.keys.min()!
        let beforeRestart = try bot.fake.state()
        for (update, chatID) in chats {
          let count = beforeRestart.messages(to: chatID).count
          if update < offset && count != 1 { problems.append("update \(update) acknowledged with \(count) answers") }
          if update > offset && count != 0 {
            problems.append("update \(update) past the offset \(offset) was answered")
          }
        }
        if atPoint, chats[offset] == nil || beforeRestart.messages(to: chats[offset] ?? 0).count != 1 {
          problems.append("the crash point did not stop between answering update \(offset) and recording it")
        }
        try bot.start()
        for update in chats.keys { try bot.waitHandled(update) }
        let state = try bot.fake.state()
        for (update, chatID) in chats.sorted(by: { $0.key < $1.key }) {
          let count = state.messages(to: chatID).count
          if count == 0 { problems.append("update \(update) was lost") }
          if count > 1 && update != offset { problems.append("update \(update) answered \(count) times") }
          if count > 2 { problems.append("update \(update) (the one in flight) answered \(count) times") }
          if count == 2 { replayed += 1 }
        }
        if atPoint, state.messages(to: chats[offset] ?? 0).count != 2 {
          problems.append("the update in flight at the crash point was not replayed once")
        }
        return problems
      }
    }
    Self.report.tally(["restart kills landed": killed, "updates answered twice": replayed])
    try bot.finish()
  }
}

// MARK: - The deployment, the fake and the runner

/// A torture deployment (`TortureFleet`, initialized) with the fake Bot API and the runner
/// between them. Every runner's output and every message it sent are kept for the secret scan.
final class BotDeployment: @unchecked Sendable {
  static let admin: Int64 = 999
  let fleet: TortureFleet
  let fake: FakeBotAPI
  let scratch: TemporaryDirectory
  private(set) var runs: [BotProcess] = []
  /// Requests to the fake that a killed runner may repeat on its restart (a callback answered
  /// twice); anything else the fake calls unexpected is a problem.
  static let replayErrors = ["answered twice"]

  init(users: Int, seed: UInt64) throws {
    fleet = try TortureFleet(users: users, seed: seed)
    try fleet.tgsessOK(["init"])
    scratch = try TemporaryDirectory("tgsess-bot-torture")
    fake = try FakeBotAPI(token: Torture.botToken, directory: scratch)
    try FileSystem.writeAtomically(
      Data(
        """
        [bot]
        token_file = "keys/bot-token"
        admin_ids = [\(Self.admin)]
        api_base_url = "\(fake.baseURL)"
        monitor_interval_seconds = 3600
        poll_timeout_seconds = 1

        """.utf8), to: fleet.root + "/tgsess.toml")
    try fleet.tgsessOK(["backup"])
    try fleet.collectSecrets()
  }

  var bot: BotProcess? { runs.last }
  var isRunning: Bool { bot?.isRunning ?? false }

  /// The crash point the running runner was started with.
  private var armed: String?

  /// Starts a runner armed with `crashPoint` and waits until it polls. A runner already running
  /// with the same arming is kept; one with another is stopped first (SIGTERM, exit 0).
  func start(crashPoint: String? = nil) throws {
    if let bot, bot.isRunning {
      if armed == crashPoint { return }
      let status = try bot.terminate()
      guard status == 0 else { throw TestHelperError("SIGTERM: tgsess-bot exited \(status)") }
    }
    armed = crashPoint
    let before = try fake.state().methods.filter { $0 == "getUpdates" }.count
    var environment = TortureFleet.childEnvironment
    if let crashPoint { environment["TGSESS_CRASH_POINT"] = crashPoint }
    let process = try BotProcess(
      arguments: ["--root", fleet.root, "--log-level", "debug"], environment: environment, directory: scratch,
      name: "bot-\(runs.count + 1)")
    runs.append(process)
    try waitFor("the runner to poll", timeout: 90) { $0.methods.filter { $0 == "getUpdates" }.count > before }
  }

  /// SIGKILL to the running runner. - Returns: whether it was still running.
  @discardableResult
  func kill() -> Bool {
    guard let bot, bot.isRunning else { return false }
    Glibc.kill(bot.pid, SIGKILL)
    bot.process.waitUntilExit()
    return true
  }

  /// Waits until the runner died by itself (a crash point). - Returns: whether it did.
  func waitForDeath(timeout: TimeInterval) -> Bool {
    guard let bot else { return false }
    let deadline = Date().addingTimeInterval(timeout)
    while bot.isRunning && Date() < deadline { usleep(20_000) }
    return !bot.isRunning
  }

  func waitFor(_ what: String, timeout: TimeInterval = 60, _ predicate: (FakeState) throws -> Bool) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while true {
      let state = try fake.state()
      if try predicate(state) { return }
      if Date() > deadline || !(bot?.isRunning ?? false) {
        throw TestHelperError(
          "\(isRunning ? "timed out" : "the runner exited") waiting for \(what); runner log tail:\n\(bot?.output.suffix(3000) ?? "")"
        )
      }
      usleep(50_000)
    }
  }

  /// Whether the runner recorded an offset past `update`.
  func handled(_ update: Int64) -> Bool {
    guard let value = try? query("SELECT value FROM tgsess_state WHERE key = 'bot.update_offset'") else { return false }
    return (Int64(value) ?? 0) > update
  }

  func waitHandled(_ update: Int64, timeout: TimeInterval = 60) throws {
    try waitFor("update \(update) to be handled", timeout: timeout) { _ in handled(update) }
  }

  /// Sends `text` from `user`, waits until handled; the messages it added to that chat.
  func say(_ text: String, from user: Int64) throws -> [FakeState.Sent] {
    let before = try fake.state().messages(to: user).count
    try waitHandled(try fake.send(text, from: user))
    return Array(try fake.state().messages(to: user).dropFirst(before))
  }

  func query(_ sql: String) throws -> String { try StockTools.query(fleet.databasePath, sql) }

  /// How many times the runners logged `message` for `user`.
  func logCount(_ message: String, user: Int64) -> Int {
    runs.map(\.output).joined().split(separator: "\n").filter { $0.contains(message) && $0.contains("user.id=\(user)") }
      .count
  }

  /// SHA-256 of each broken copy recover moved aside for `user` (`user_N.session.broken-*`).
  func brokenCopiesAside(_ user: Int64) throws -> [String] {
    let prefix = "user_\(user).session.broken-"
    return try FileManager.default.contentsOfDirectory(atPath: fleet.deployment.sessionsDirectory)
      .filter { $0.hasPrefix(prefix) && !$0.hasSuffix("-journal") && !$0.hasSuffix("-wal") && !$0.hasSuffix("-shm") }
      .map { try FileSystem.sha256(ofFile: fleet.deployment.sessionsDirectory + "/" + $0) }
  }

  func corrupt(_ user: Int64) throws {
    try FileSystem.writeAtomically(Data(repeating: 0x5a, count: 4096), to: fleet.sessionPath(user))
  }

  /// The user's session identity (`dcN-fingerprint`).
  func identity(_ user: Int64) throws -> String {
    let info = try SessionFileInspector.inspect(path: fleet.sessionPath(user))
    return "dc\(info.identity.dcID)-\(info.identity.authKey.fingerprint)"
  }

  /// The user's file holds `expected` and passes integrity_check.
  func sessionIs(_ user: Int64, _ expected: String) throws -> [String] {
    guard let identity = try? identity(user) else { return ["user \(user): no valid session file"] }
    if identity != expected { return ["user \(user) holds another session (\(identity), not \(expected))"] }
    let integrity = try StockTools.integrityCheck(fleet.sessionPath(user))
    return integrity == "ok" ? [] : ["user \(user): integrity_check: \(integrity.prefix(200))"]
  }

  func databaseIsWhole() throws -> [String] {
    let integrity = try Witness.integrity(fleet.databasePath)
    return integrity == "ok" ? [] : ["database integrity_check: \(integrity.prefix(200))"]
  }

  /// Every archive `tgsess list` shows verifies, and every archive file is one of them.
  func listedArchivesVerify() throws -> [String] {
    let (_, problems) = try Witness.verifyListed(fleet)
    let listed = Set(try Witness.listed(fleet).map { ($0.path as NSString).lastPathComponent })
    let files = try Witness.archiveFiles(fleet).keys.map { ($0 as NSString).lastPathComponent }
    return problems + files.filter { !listed.contains($0) }.map { "archive file \($0) is not listed" }
  }

  /// A proven "Before logout" archive of `user` holds their session with `expected`.
  func beforeLogoutArchiveHolds(_ user: Int64, _ expected: String) throws -> [String] {
    let archives = try Witness.listed(fleet).filter { $0.userID == user && $0.reason == BackupReason.beforeLogout }
    guard !archives.isEmpty else { return ["user \(user): no Before logout archive"] }
    let extracted = try TemporaryDirectory("tgsess-bot-torture-x")
    for archive in archives {
      let directory = extracted.path + "/" + archive.id
      try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
      _ = try ArchiveReader.read(path: archive.path, identities: fleet.identities, extractTo: directory)
      let name = "user_\(user).session"
      let found = FileManager.default.enumerator(atPath: directory)?.compactMap { $0 as? String }
        .first { ($0 as NSString).lastPathComponent == name }
      if let found, let info = try? SessionFileInspector.inspect(path: directory + "/" + found),
        "dc\(info.identity.dcID)-\(info.identity.authKey.fingerprint)" == expected
      {
        return []
      }
    }
    return ["user \(user): no Before logout archive holds their session"]
  }

  /// `tgsess check`'s exit status (Nagios) on the settled deployment.
  func checkStatus() throws -> Int32 { try fleet.tgsess(["check"]).status }

  /// After the next run: no session temporary or staging directory left (the restarted
  /// runner's recovery removes them); an archive's temporary (encrypted) may wait for the next
  /// backup, as for a killed `tgsess backup`, so cron's backup runs and then nothing is left;
  /// `tgsess check` as at the start; the fake saw nothing unexpected.
  func settled(baseline: Int32) throws -> [String] {
    let afterRestart = try Witness.leftovers(fleet)
    var problems = afterRestart.filter { !Self.isArchiveTemporary($0) }.map { "left behind after the restart: \($0)" }
    archiveTemporariesLeft += afterRestart.filter(Self.isArchiveTemporary).count
    try fleet.tgsessOK(["backup"])
    problems += try Witness.leftovers(fleet).map { "left behind after a backup: \($0)" }
    let status = try checkStatus()
    if status > baseline { problems.append("tgsess check exits \(status), \(baseline) before") }
    problems += try unexpected()
    return problems
  }

  /// Archive temporaries the restarts left for the next backup.
  private(set) var archiveTemporariesLeft = 0

  static func isArchiveTemporary(_ relative: String) -> Bool {
    relative.hasPrefix("backups/") && FileSystem.isTemporaryName((relative as NSString).lastPathComponent)
  }

  func unexpected() throws -> [String] {
    try fake.state().errors.filter { error in !Self.replayErrors.contains { error.contains($0) } }
      .map { "the fake saw: \($0)" }
  }

  /// Stops the runner (SIGTERM: it must exit 0) and checks the fake.
  func finish() throws {
    var problems: [String] = []
    if let bot, bot.isRunning {
      let status = try bot.terminate()
      if status != 0 { problems.append("SIGTERM: exit \(status)") }
    }
    problems += try unexpected()
    if !problems.isEmpty { throw TestHelperError(problems.joined(separator: "; ")) }
  }

  /// Kills what is still running and keeps every output for the secret scan: each runner's
  /// stdout and stderr, and the messages and requests the fake received (without URLs, so
  /// without the token the fake itself knows).
  func close() {
    kill()
    for (index, run) in runs.enumerated() {
      Capture.keep(
        "tgsess-bot run \(index + 1)", stdout: (try? String(contentsOfFile: run.outPath, encoding: .utf8)) ?? "",
        stderr: (try? String(contentsOfFile: run.logPath, encoding: .utf8)) ?? "")
    }
    if let state = try? fake.state() {
      let requests = (state.raw["requests"] as? [[String: Any]] ?? []).map { $0["params"] ?? [:] }
      let sent = state.raw["sent"] ?? []
      let text =
        (try? JSONSerialization.data(withJSONObject: ["sent": sent, "requests": requests]))
        .map { String(decoding: $0, as: UTF8.self) } ?? ""
      Capture.keep("messages and requests tgsess-bot sent to the Bot API", stdout: text, stderr: fake.stderr)
    }
    fake.stop()
    try? fleet.collectSecrets()
  }
}

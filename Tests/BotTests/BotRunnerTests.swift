import Foundation
import Store
import TestSupport
import Testing

@testable import tgsess_bot

/// End-to-end: the built `tgsess-bot` against the fake Bot API over loopback HTTP, on a real
/// deployment made by `tgsess-fleet` and `tgsess init`. Serialized: each test runs a runner, the
/// fake and a deployment, and the machine has two cores.
@Suite(.serialized)
struct BotRunnerTests {
  let healthy = BotScenario.users[0]
  let broken = BotScenario.users[1]
  let missing = BotScenario.users[2]

  @Test func startUpDeletesTheWebhookSetsCommandsAndPollsWithAllowedUpdates() throws {
    let scenario = try BotScenario()
    try scenario.start()
    let state = try scenario.fake.state()
    let methods = state.methods
    #expect(methods.first == "deleteWebhook")
    #expect(state.commandSets == 2, "default scope and the admin's chat scope")
    let commands = state.requests.filter { $0.method == "setMyCommands" }.map { request in
      ((request.params["commands"] as? [[String: Any]]) ?? []).compactMap { $0["command"] as? String }
    }
    #expect(commands.first == ["start", "status", "recover", "logout"])
    #expect(commands.last == ["start", "status", "recover", "logout", "backup", "check"])
    let poll = try #require(state.requests.first { $0.method == "getUpdates" })
    #expect(poll.params["allowed_updates"] as? [String] == ["message", "callback_query"])
    #expect((poll.params["timeout"] as? NSNumber)?.intValue == 2)
    // The lock file names the runner while it runs.
    let lock = try String(contentsOfFile: scenario.root + "/.tgsess-bot.lock", encoding: .utf8)
    #expect(lock.contains("pid=\(scenario.bot!.pid)"))
    #expect(scenario.bot!.output.contains("start-up recovery done"))
    try scenario.finish()
  }

  @Test func startUpRestoresMissingAndBrokenSessions() throws {
    let scenario = try BotScenario()
    try scenario.corrupt(broken)
    try scenario.removeSession(missing)
    try scenario.start()
    #expect(scenario.isValidSession(broken))
    #expect(scenario.isValidSession(missing))
    let output = scenario.bot!.output
    #expect(output.contains("start-up recovery done"))
    #expect(output.contains("recovered=2"))
    #expect(output.components(separatedBy: "start-up recovery done").count == 2, "one summary line")
    try scenario.finish()
  }

  @Test func statusForHealthyBrokenAndMissingSessions() throws {
    let scenario = try BotScenario()
    try scenario.start()
    try scenario.corrupt(broken)
    try scenario.removeSession(missing)

    let healthyText = try #require(try scenario.say("/status", from: healthy).first?.text)
    #expect(healthyText.contains("Session file: present and readable"))
    #expect(healthyText.contains("Account: active"))
    #expect(healthyText.contains("Backups kept: 3"))
    #expect(healthyText.contains("Newest backup: "))

    let brokenText = try #require(try scenario.say("/status", from: broken).first?.text)
    #expect(brokenText.contains("Session file: damaged (not an SQLite database)"))
    #expect(brokenText.contains("Send /recover"))

    let missingText = try #require(try scenario.say("/status@tgsess_test_bot", from: missing).first?.text)
    #expect(missingText.contains("Session file: missing"))

    let strangerText = try #require(try scenario.say("/status", from: 555).first?.text)
    #expect(strangerText.contains("no session with this bot"))
    // Nothing in a user's reply names a path on the host.
    #expect(![healthyText, brokenText, missingText].contains { $0.contains(scenario.root) })
    try scenario.finish()
  }

  @Test func recoverShowsProgressAndRepairsBrokenAndMissingSessions() throws {
    let scenario = try BotScenario()
    try scenario.start()
    try scenario.corrupt(broken)
    try scenario.removeSession(missing)

    let brokenReply = try #require(try scenario.say("/recover", from: broken).first)
    #expect(brokenReply.text.contains("1/3 session string… ok"))
    #expect(brokenReply.text.contains("Recovered: rebuilt your session file from the session string"))
    #expect(brokenReply.text.contains("A backup of the recovered session was taken: "))
    #expect(scenario.isValidSession(broken))
    let state = try scenario.fake.state()
    // One message, edited in place: first "Recovering…", then the steps and the verdict.
    #expect(state.sent.first { $0.messageID == brokenReply.messageID }?.text == "Recovering your session…")
    #expect(state.edits(of: brokenReply.messageID).count >= 1)
    // The broken file was moved aside, never deleted.
    let names = try FileManager.default.contentsOfDirectory(atPath: scenario.deployment.sessionsDirectory)
    #expect(names.contains { $0.hasPrefix("user_\(broken).session.broken-") })

    let missingReply = try #require(try scenario.say("/recover", from: missing).first)
    #expect(missingReply.text.contains("Recovered"))
    #expect(scenario.isValidSession(missing))

    let healthyReply = try #require(try scenario.say("/recover", from: healthy).first)
    #expect(healthyReply.text.contains("Your session is healthy"))

    // A user whose every copy is gone: told what to do next.
    let lost = BotScenario.users[3]
    try scenario.corrupt(lost)
    _ = try scenario.query("UPDATE user_sessions SET session_string = NULL WHERE user_id = \(lost)")
    _ = try scenario.query("DELETE FROM session_backups WHERE user_id = \(lost)")
    try? FileManager.default.removeItem(atPath: scenario.sessionPath(lost) + ".backup")
    let lostReply = try #require(try scenario.say("/recover", from: lost).first)
    #expect(lostReply.text.contains("3/3 backups… failed"))
    #expect(lostReply.text.contains("What to do next: log in again"))
    try scenario.finish()
  }

  /// The runner's /recover never replaces a session file another process holds (the operator's
  /// userbot): the user is told, the file stays as it is, and once the holder is gone it works.
  @Test func recoverLeavesAFileAnotherProcessHoldsAlone() throws {
    let scenario = try BotScenario()
    try scenario.start()
    let path = scenario.sessionPath(broken)
    let ready = path + ".holder-ready"
    let holder = try BackgroundProcess(
      TestEnvironment.python,
      [
        "-c",
        "import sqlite3, sys, time\nconn = sqlite3.connect(sys.argv[1])\nconn.execute('SELECT count(*) FROM sessions').fetchall()\nopen(sys.argv[2], 'w').close()\ntime.sleep(300)",
        path, ready,
      ])
    defer { holder.kill() }
    try waitUntil("the holder to open \(path)") { FileManager.default.fileExists(atPath: ready) }
    try FileManager.default.removeItem(atPath: ready)
    try scenario.corrupt(broken)  // in place: the holder keeps the same file open
    let corrupted = try Data(contentsOf: URL(fileURLWithPath: path))

    let refused = try #require(try scenario.say("/recover", from: broken).first)
    #expect(refused.text.contains(BotTexts.recoverInUse), "\(refused.text)")
    #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == corrupted)
    #expect(scenario.allOutput.contains("pid \(holder.pid)"))

    holder.kill()
    _ = holder.wait()
    let recovered = try #require(try scenario.say("/recover", from: broken).first)
    #expect(recovered.text.contains("Recovered"), "\(recovered.text)")
    #expect(scenario.isValidSession(broken))
    try scenario.finish()
  }

  @Test func startMenuButtonsHelpAndUnknownCommands() throws {
    let scenario = try BotScenario()
    try scenario.start()
    let menu = try #require(try scenario.say("/start", from: healthy).first)
    #expect(menu.text.contains("/status"))
    #expect(menu.buttons == ["status", "recover", "logout"])
    #expect(!menu.text.contains("/backup"), "no admin commands for a user")

    let status = try scenario.press("status", from: healthy, messageID: menu.messageID)
    #expect(status.first?.text.contains("Session file: present and readable") == true)
    let recover = try scenario.press("recover", from: healthy, messageID: menu.messageID)
    #expect(recover.first?.text.contains("healthy") == true)
    let answers = try scenario.fake.state().callbackAnswers
    #expect(answers.count == 2, "every button press is answered once")

    let unknown = try #require(try scenario.say("/frobnicate", from: healthy).first?.text)
    #expect(unknown.hasPrefix("Unknown command /frobnicate."))
    #expect(unknown.contains("/recover"))
    let plain = try #require(try scenario.say("hello", from: healthy).first?.text)
    #expect(plain.contains("/status"))
    // In a group, nobody's session details are shown.
    let group: Int64 = -1_001_234_567_890
    let groupUpdate = try scenario.fake.send("/status", from: healthy, chatID: group, chatType: "supergroup")
    try scenario.waitHandled(groupUpdate)
    #expect(try scenario.fake.state().texts(in: group) == ["Please send me commands in a private chat."])
    let adminMenu = try #require(try scenario.say("/start", from: BotScenario.admin).first?.text)
    #expect(adminMenu.contains("/backup"))
    try scenario.finish()
  }

  @Test func logoutAsksBacksUpRemovesAndStaysLoggedOutAfterRestart() throws {
    let scenario = try BotScenario()
    try scenario.start()
    let user = healthy
    let other = broken
    // The farm's JSON sidecar beside the session file holds secrets too: it must go with it.
    let sidecar = scenario.deployment.sidecarPath(userID: user)
    try Data("{\"app_id\": 2040, \"app_hash\": \"0123456789abcdef0123456789abcdef\"}".utf8).write(
      to: URL(fileURLWithPath: sidecar))
    let question = try #require(try scenario.say("/logout", from: user).first)
    #expect(question.buttons == ["logout-yes:\(user)", "logout-no:\(user)"])
    #expect(FileManager.default.fileExists(atPath: scenario.sessionPath(user)))

    // Another user pressing this user's button changes nothing.
    try scenario.press("logout-yes:\(user)", from: other, messageID: question.messageID)
    #expect(FileManager.default.fileExists(atPath: scenario.sessionPath(user)))
    #expect(try scenario.fake.state().callbackAnswers.last?.text == "This button belongs to another user.")

    try scenario.press("logout-yes:\(user)", from: user, messageID: question.messageID)
    let state = try scenario.fake.state()
    let confirmation = try #require(state.currentText(of: question.messageID))
    #expect(confirmation.contains("You are logged out"))
    let archiveID = try #require(
      confirmation.split(separator: "\n").first { $0.hasPrefix("Backup taken before logout: ") }
        .map { $0.dropFirst("Backup taken before logout: ".count).dropLast() })
    #expect(!FileManager.default.fileExists(atPath: scenario.sessionPath(user)))
    #expect(!FileManager.default.fileExists(atPath: sidecar), "the sidecar went with the session")
    #expect(try scenario.query("SELECT status FROM user_sessions WHERE user_id = \(user)") == "logged_out")
    #expect(
      try scenario.query(
        "SELECT count(*) FROM session_backups WHERE user_id = \(user) AND backup_reason = 'Before logout' AND archive_id = '\(archiveID)'"
      ) == "1")
    #expect(try scenario.archiveFileNames().contains { $0.hasPrefix(String(archiveID) + ".tar") })
    #expect(try scenario.query("SELECT count(*) FROM session_backups WHERE user_id = \(user)") == "4", "backups kept")

    // A replayed confirmation is harmless.
    try scenario.press("logout-yes:\(user)", from: user, messageID: question.messageID)
    #expect(try scenario.fake.state().currentText(of: question.messageID) == "You are already logged out.")

    let status = try #require(try scenario.say("/status", from: user).first?.text)
    #expect(status.contains("Account: logged out"))
    let recover = try #require(try scenario.say("/recover", from: user).first?.text)
    #expect(recover.contains("You logged out"))

    // A restart's automatic recovery does not bring the session back.
    #expect(try scenario.stop() == 0)
    try scenario.start()
    #expect(!FileManager.default.fileExists(atPath: scenario.sessionPath(user)))
    #expect(scenario.bot!.output.contains("skipped.logged_out=1"))

    // Cancel leaves the session alone.
    let second = try #require(try scenario.say("/logout", from: other).first)
    try scenario.press("logout-no:\(other)", from: other, messageID: second.messageID)
    #expect(try scenario.fake.state().currentText(of: second.messageID)?.contains("cancelled") == true)
    #expect(FileManager.default.fileExists(atPath: scenario.sessionPath(other)))
    try scenario.finish()
  }

  /// A confirmation replayed after a restart (at least once) meets Telegram's "query is too
  /// old" for its answerCallbackQuery: the spinner's answer is cosmetic, so the logout still
  /// happens and the user is told in the message.
  @Test func aRefusedButtonAnswerDoesNotStopTheLogout() throws {
    let scenario = try BotScenario()
    try scenario.start()
    let user = healthy
    let question = try #require(try scenario.say("/logout", from: user).first)
    try scenario.fake.fault([["method": "answerCallbackQuery", "kind": "400"]])
    try scenario.press("logout-yes:\(user)", from: user, messageID: question.messageID)
    #expect(!FileManager.default.fileExists(atPath: scenario.sessionPath(user)))
    #expect(try scenario.query("SELECT status FROM user_sessions WHERE user_id = \(user)") == "logged_out")
    #expect(try scenario.fake.state().currentText(of: question.messageID)?.contains("You are logged out") == true)
    #expect(scenario.bot!.output.contains("could not answer a button press"))
    try scenario.finish()
  }

  @Test func aUserCannotActOnAnotherUsersSession() throws {
    let scenario = try BotScenario()
    try scenario.start()
    try scenario.corrupt(broken)
    for command in ["/status", "/recover", "/logout"] {
      let reply = try #require(try scenario.say("\(command) \(broken)", from: healthy).first?.text)
      #expect(reply.hasPrefix("You can only act on your own session."))
    }
    // The broken session was not touched by someone else's /recover.
    #expect(!scenario.isValidSession(broken))
    #expect(try scenario.fake.state().messages(to: broken).isEmpty)
    #expect(scenario.bot!.output.contains("refused: a user named another user's session"))
    try scenario.finish()
  }

  @Test func adminCommandsAndAPoliteRefusalForOthers() throws {
    let scenario = try BotScenario()
    try scenario.start()
    let archivesBefore = try scenario.archiveFileNames()
    for command in ["/backup", "/check"] {
      let refusal = try #require(try scenario.say(command, from: healthy).first?.text)
      #expect(refusal.hasPrefix("Sorry, \(command) is only for the bot's administrators."))
    }
    #expect(try scenario.archiveFileNames() == archivesBefore)

    let backup = try #require(try scenario.say("/backup", from: BotScenario.admin).first?.text)
    #expect(backup.hasPrefix("Backup done: "))
    #expect(backup.contains("5 users"))
    let full = backup.dropFirst("Backup done: ".count).prefix { $0 != " " }
    #expect(try scenario.archiveFileNames().contains { $0.hasPrefix(String(full) + ".tar") })

    let check = try #require(try scenario.say("/check", from: BotScenario.admin).first?.text)
    #expect(check.hasPrefix("Check: "))
    #expect(check.contains("Sessions: "))
    try scenario.finish()
  }

  @Test func aRestartMidStreamNeitherReplaysNorLosesUpdates() throws {
    let scenario = try BotScenario()
    try scenario.start()
    let users = Array(BotScenario.users.prefix(4))
    // Each reply is slow, so the SIGTERM lands while the first update is being answered.
    try scenario.fake.fault(
      users.map { _ -> [String: Any] in ["method": "sendMessage", "kind": "slow", "seconds": 1.5] })
    var updateIDs: [Int64] = []
    for user in users { updateIDs.append(try scenario.fake.send("/status", from: user)) }
    try scenario.waitFor("the first reply to start") { $0.methods.contains("sendMessage") }
    #expect(try scenario.stop() == 0, "SIGTERM: finish the current command, exit 0")
    let afterStop = try scenario.fake.state()
    #expect(afterStop.messages(to: users[0]).count == 1, "the command in progress was finished")
    #expect(scenario.handled(updateIDs[0]))

    // More arrive while the runner is down.
    let late = try scenario.fake.send("/status", from: BotScenario.users[4])
    updateIDs.append(late)
    try scenario.start()
    try scenario.waitHandled(late)
    let state = try scenario.fake.state()
    for user in BotScenario.users {
      #expect(state.messages(to: user).count == 1, "user \(user) got exactly one reply")
    }
    // Only updates that were never handled came again: nothing handled was delivered twice.
    #expect(state.deliveries[updateIDs[0]] == 1)
    #expect(try scenario.query("SELECT value FROM tgsess_state WHERE key = 'bot.update_offset'") == "\(late + 1)")
    try scenario.finish()
  }

  @Test func theMonitorRepairsACorruptedFileAndTellsTheAdminsOnce() throws {
    let scenario = try BotScenario(monitorInterval: 1)
    try scenario.start()
    let victim = BotScenario.users[3]
    try scenario.waitForLog("monitor round done")
    try scenario.corrupt(victim)
    let state = try scenario.waitFor("the admin to hear about user \(victim)") { state in
      state.messages(to: BotScenario.admin).contains { $0.text.contains("user \(victim)") }
    }
    let notice = try #require(state.messages(to: BotScenario.admin).first { $0.text.contains("user \(victim)") })
    #expect(notice.text.contains("user.session"))
    #expect(notice.text.contains("Repaired automatically: 1/3 session string"))
    #expect(scenario.isValidSession(victim))
    // Later rounds find it healthy and stay quiet.
    let rounds = (scenario.bot!.output.components(separatedBy: "monitor round done").count - 1)
    try scenario.waitForLog("monitor round done", count: rounds + 3)
    #expect(try scenario.fake.state().messages(to: BotScenario.admin).count == 1)
    #expect(try scenario.query("SELECT health FROM user_sessions WHERE user_id = \(victim)") == "ok")

    // A user whose session cannot be repaired: one message, not one per round.
    let lost = BotScenario.users[4]
    _ = try scenario.query("UPDATE user_sessions SET session_string = NULL WHERE user_id = \(lost)")
    _ = try scenario.query("DELETE FROM session_backups WHERE user_id = \(lost)")
    try? FileManager.default.removeItem(atPath: scenario.sessionPath(lost) + ".backup")
    for name in try FileManager.default.contentsOfDirectory(atPath: scenario.deployment.backupsDirectory) {
      try? FileManager.default.removeItem(atPath: scenario.deployment.backupsDirectory + "/" + name)
    }
    try scenario.corrupt(lost)
    try scenario.waitFor("the admin to hear about user \(lost)") { state in
      state.messages(to: BotScenario.admin).contains { $0.text.contains("user \(lost)") }
    }
    let afterLost = (scenario.bot!.output.components(separatedBy: "monitor round done").count - 1)
    try scenario.waitForLog("monitor round done", count: afterLost + 3)
    let lostNotices = try scenario.fake.state().messages(to: BotScenario.admin).filter {
      $0.text.contains("user \(lost)")
    }
    #expect(lostNotices.count == 1)
    #expect(lostNotices.first?.text.contains("Automatic repair failed") == true)
    // The memory survives a restart: no second message for the same state.
    #expect(try scenario.stop() == 0)
    try scenario.start()
    try scenario.waitForLog("monitor round done", count: 3)
    #expect(
      try scenario.fake.state().messages(to: BotScenario.admin).filter { $0.text.contains("user \(lost)") }.count == 1)
    try scenario.finish()
  }

  @Test func sigtermDuringALongPollExitsZeroAndReleasesTheLock() throws {
    let scenario = try BotScenario(pollTimeout: 50)
    try scenario.start()
    try scenario.waitFor("a parked long poll") { $0.pollsWaiting >= 1 }
    let lockPath = scenario.root + "/.tgsess-bot.lock"
    #expect(DeploymentLock.holder(path: lockPath)?.contains("pid=\(scenario.bot!.pid)") == true)

    // A second runner on the same deployment is refused.
    let second = try BotProcess(
      arguments: ["--root", scenario.root, "--token-file", scenario.tokenPath], environment: [:],
      directory: scenario.directory, name: "second")
    #expect(try second.waitForExit() == 75)
    #expect(second.output.contains("another tgsess-bot runs on this deployment"))
    #expect(second.output.contains("pid=\(scenario.bot!.pid)"))
    #expect(!second.output.contains(BotScenario.token))

    // The poll is parked for up to 50 s; the runner must not wait it out.
    #expect(try scenario.bot!.terminate(timeout: 40) == 0)
    #expect(scenario.bot!.output.contains("polling stopped"))
    #expect(DeploymentLock.holder(path: lockPath) == nil)
    try scenario.finish()
  }

  @Test func faultsAreSurvived() throws {
    let scenario = try BotScenario(pollTimeout: 1)
    try scenario.start()
    let faults: [[String: Any]] = [
      ["method": "getUpdates", "kind": "429", "retry_after": 1],
      ["method": "getUpdates", "kind": "502"],
      ["method": "getUpdates", "kind": "pass"],
      ["method": "getUpdates", "kind": "malformed"],
      ["method": "getUpdates", "kind": "pass"],
      ["method": "getUpdates", "kind": "drop"],
      ["method": "getUpdates", "kind": "pass"],
      ["method": "getUpdates", "kind": "500"],
      ["method": "getUpdates", "kind": "slow", "seconds": 1],
      ["method": "getUpdates", "kind": "409"],
      ["method": "sendMessage", "kind": "429", "retry_after": 1],
      ["method": "sendMessage", "kind": "502"],
      ["method": "sendMessage", "kind": "drop"],
    ]
    try scenario.fake.fault(faults)
    try scenario.waitFor("every fault to be used") { $0.faultsLeft <= 3 }
    // A malformed update between two good ones.
    try scenario.fake.inject([["message": ["text": "/status", "message_id": 5]]])
    let reply = try #require(try scenario.say("/status", from: healthy).first?.text)
    #expect(reply.contains("Session file: present and readable"))
    let state = try scenario.fake.state()
    #expect(state.faultsLeft == 0)
    #expect(state.messages(to: healthy).count == 1, "one reply despite the send faults")
    let output = scenario.bot!.output
    #expect(output.contains("flood control"))
    #expect(output.contains("409 conflict"))
    #expect(output.contains("malformed update skipped"))
    #expect(output.contains("getUpdates failed; reconnecting"))
    #expect(scenario.bot!.isRunning)
    try scenario.finish()
  }

  @Test func aRejectedTokenEndsTheRunnerWithoutLeakingIt() throws {
    let scenario = try BotScenario(fakeToken: "1111111111:AAAnotTheRunnersTokenAtAll_abcdefghij")
    let bot = try scenario.start(waitUntilPolling: false)
    #expect(try bot.waitForExit() == 1)
    #expect(bot.output.contains("rejected the token"))
    #expect(try scenario.fake.state().methods == ["deleteWebhook"])
    try scenario.finish(expectingExit: 1)
  }

  @Test func theTokenComesFromTheEnvironmentOrTheConfigAndIsRequired() throws {
    let scenario = try BotScenario()
    // TGSESS_BOT_TOKEN itself.
    let fromVariable = try BotProcess(
      arguments: ["--root", scenario.root], environment: ["TGSESS_BOT_TOKEN": BotScenario.token],
      directory: scenario.directory, name: "env")
    try scenario.waitFor("the runner to poll") { $0.methods.contains("getUpdates") }
    #expect(try fromVariable.terminate() == 0)
    #expect(!fromVariable.output.contains(BotScenario.token))

    // No token anywhere: a usage error.
    let none = try BotProcess(
      arguments: ["--root", scenario.root], environment: [:], directory: scenario.directory, name: "none")
    #expect(try none.waitForExit() == 64)
    #expect(none.output.contains("no bot token"))

    // A token file that holds something else: refused without printing it.
    let junk = scenario.directory.file("junk-token")
    try "not a token but a secret-ish line".write(toFile: junk, atomically: true, encoding: .utf8)
    let bad = try BotProcess(
      arguments: ["--root", scenario.root], environment: ["TGSESS_BOT_TOKEN_FILE": junk], directory: scenario.directory,
      name: "bad")
    #expect(try bad.waitForExit() == 1)
    #expect(bad.output.contains("does not hold a bot token"))
    #expect(!bad.output.contains("secret-ish"))
    try scenario.finish()
  }

  @Test func aDatabaseBehindTheSchemaIsRefused() throws {
    let scenario = try BotScenario(isLegacy: true)
    let bot = try scenario.start(waitUntilPolling: false)
    #expect(try bot.waitForExit() == 1)
    #expect(bot.output.contains("run tgsess migrate"))
    #expect(try scenario.fake.state().methods.isEmpty, "no Bot API call before the schema check")
    #expect(DeploymentLock.holder(path: scenario.root + "/.tgsess-bot.lock") == nil)
    try scenario.finish(expectingExit: 1)
  }
}

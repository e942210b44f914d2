import Foundation
import Jobs
import Testing

/// SplitMix64: a tiny seeded generator, so jitter is the same on every run.
struct SeededGenerator: RandomNumberGenerator {
  var state: UInt64
  init(seed: UInt64) { state = seed }
  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}

/// A scripted operation: attempt n gets step n; an attempt past the script fails the test.
struct Script {
  enum Step {
    case ok(String)
    case fail(String)
  }
  let steps: [Step]

  func callAsFunction(_ attempt: Int) throws -> String {
    guard steps.indices.contains(attempt - 1) else {
      Issue.record("unexpected attempt \(attempt); the script has \(steps.count) steps")
      throw ScriptError(text: "unexpected attempt")
    }
    switch steps[attempt - 1] {
    case .ok(let value): return value
    case .fail(let text): throw ScriptError(text: text)
    }
  }
}

struct ScriptError: Error, CustomStringConvertible {
  let text: String
  var description: String { text }
}

/// Runs `script` through the async runner with a recording sleeper that never sleeps.
private func run(
  _ steps: [Script.Step], policy: RetryPolicy = RetryPolicy(), seed: UInt64 = 1
) async throws -> (outcome: RetryOutcome<String>, delays: [Duration], attempts: [Int]) {
  let script = Script(steps: steps)
  var delays: [Duration] = []
  var attempts: [Int] = []
  var random = SeededGenerator(seed: seed)
  let outcome = try await policy.run(random: &random, sleep: { delays.append($0) }) { attempt in
    attempts.append(attempt)
    return try script(attempt)
  }
  return (outcome, delays, attempts)
}

@Suite struct RetryPolicyTests {
  @Test func defaultsAreTheSeedsThreeTries() {
    #expect(RetryPolicy().maxAttempts == 3)
  }

  @Test func successReturnsAtOnce() async throws {
    let (outcome, delays, attempts) = try await run([.ok("me")])
    #expect(outcome.value == "me")
    #expect(outcome.attempts == 1)
    #expect(attempts == [1])
    #expect(delays.isEmpty)
    #expect(outcome.summary == "succeeded on attempt 1")
  }

  @Test func successOnTheSecondAttemptSleepsOnce() async throws {
    let (outcome, delays, attempts) = try await run([.fail("TimeoutError"), .ok("me")])
    #expect(outcome.value == "me")
    #expect(outcome.attempts == 2)
    #expect(attempts == [1, 2])
    #expect(delays.count == 1)
    #expect(outcome.failures.map(\.code) == ["TIMEOUT"])
  }

  @Test func threeTemporariesEndTemporary() async throws {
    let (outcome, delays, attempts) = try await run([
      .fail("ConnectionError"), .fail("-503 Timeout"), .fail("database is locked"),
    ])
    #expect(attempts == [1, 2, 3])
    #expect(delays.count == 2)
    #expect(outcome.attempts == 3)
    #expect(!outcome.isFatal)
    guard case .temporary(let error) = outcome.verdict else {
      Issue.record("expected temporary, got \(outcome.verdict)")
      return
    }
    #expect(error.code == "DATABASE_LOCKED")
    #expect(outcome.failures.map(\.code) == ["CONNECTION_ERROR", "TIMEOUT", "DATABASE_LOCKED"])
    #expect(outcome.summary.hasPrefix("still temporary after 3 attempts: DATABASE_LOCKED"))
  }

  @Test func fatalIsConfirmedByExactlyOneMoreAttempt() async throws {
    let (outcome, delays, attempts) = try await run([
      .fail("AUTH_KEY_UNREGISTERED"), .fail("telethon.errors.rpcerrorlist.AuthKeyUnregisteredError: The key is not"),
    ])
    #expect(attempts == [1, 2])
    #expect(delays.count == 1)
    #expect(outcome.isFatal)
    #expect(outcome.error?.code == "AUTH_KEY_UNREGISTERED")
    #expect(outcome.unconfirmedFatal == nil)
    #expect(outcome.summary.hasPrefix("fatal, confirmed after 2 attempts: AUTH_KEY_UNREGISTERED"))
  }

  @Test func aConfirmingSuccessMeansTheSessionIsAlive() async throws {
    let (outcome, delays, attempts) = try await run([.fail("[401 AUTH_KEY_UNREGISTERED]"), .ok("me")])
    #expect(attempts == [1, 2])
    #expect(delays.count == 1)
    #expect(outcome.value == "me")
    #expect(!outcome.isFatal)
    #expect(outcome.unconfirmedFatal?.code == "AUTH_KEY_UNREGISTERED")
    #expect(outcome.summary.contains("was not confirmed"))
  }

  @Test func aConfirmingTemporaryFailureIsNotDeath() async throws {
    let (outcome, _, attempts) = try await run([.fail("SESSION_REVOKED"), .fail("ConnectionError")])
    #expect(attempts == [1, 2])
    #expect(!outcome.isFatal)
    #expect(outcome.error?.code == "CONNECTION_ERROR")
    #expect(outcome.unconfirmedFatal?.code == "SESSION_REVOKED")
  }

  @Test func aFatalErrorOnTheLastAttemptStillGetsItsConfirmation() async throws {
    let (outcome, delays, attempts) = try await run([
      .fail("TimeoutError"), .fail("TimeoutError"), .fail("AUTH_KEY_DUPLICATED"), .fail("AUTH_KEY_DUPLICATED"),
    ])
    #expect(attempts == [1, 2, 3, 4])
    #expect(delays.count == 3)
    #expect(outcome.isFatal)
    #expect(outcome.attempts == 4)
  }

  @Test func aFatalErrorWithoutConfirmationStopsAtOnce() async throws {
    let policy = RetryPolicy()
    var delays: [Duration] = []
    var random = SeededGenerator(seed: 7)
    let dead = ClassifiedError(class: .fatal, code: "SESSION_REVOKED", needsConfirmation: false, summary: "revoked")
    let outcome: RetryOutcome<Int> = try await policy.run(random: &random, sleep: { delays.append($0) }) { _ in
      throw dead
    }
    #expect(outcome.isFatal)
    #expect(outcome.attempts == 1)
    #expect(delays.isEmpty)
  }

  @Test func floodWaitIsHonouredOverASmallerBackoff() async throws {
    let (outcome, delays, _) = try await run([.fail("FLOOD_WAIT_30"), .ok("me")])
    #expect(outcome.value == "me")
    #expect(delays == [.seconds(30)])
  }

  @Test func aBackoffLongerThanTheFloodWaitWins() {
    let policy = RetryPolicy(base: .seconds(100), cap: .seconds(100))
    let flood = ErrorClassifier.classify("FLOOD_WAIT_1")
    var random = SeededGenerator(seed: 3)
    let delays = (0..<50).map { _ in policy.delay(forAttempt: 1, error: flood, random: &random) }
    #expect(delays.allSatisfy { $0 >= .seconds(1) && $0 <= .seconds(100) })
    #expect(delays.contains { $0 > .seconds(1) })
  }

  @Test func aFloodWaitLongerThanTheRunWaitsEndsTheRun() async throws {
    let (outcome, delays, attempts) = try await run([.fail("FLOOD_WAIT_3600")])
    #expect(attempts == [1])
    #expect(delays.isEmpty)
    #expect(outcome.error?.retryAfterSeconds == 3600)
    #expect(outcome.summary.hasPrefix("Telegram asked to wait 3600 s"))
  }

  @Test func backoffCeilingDoublesUpToTheCap() {
    let policy = RetryPolicy(base: .seconds(1), cap: .seconds(30))
    let ceilings = (1...8).map { policy.backoffCeiling(forAttempt: $0) }
    #expect(
      ceilings == [
        .seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(16), .seconds(30), .seconds(30), .seconds(30),
      ])
    #expect(policy.backoffCeiling(forAttempt: 10_000) == .seconds(30))
  }

  @Test func jitterStaysWithinZeroAndTheCeiling() {
    let policy = RetryPolicy(base: .milliseconds(500), cap: .seconds(8))
    let timeout = ErrorClassifier.classify("TimeoutError")
    var random = SeededGenerator(seed: 42)
    var seen: Set<Duration> = []
    for attempt in 1...12 {
      for _ in 0..<20 {
        let delay = policy.delay(forAttempt: attempt, error: timeout, random: &random)
        #expect(delay >= .zero)
        #expect(delay <= policy.backoffCeiling(forAttempt: attempt))
        #expect(delay <= policy.cap)
        seen.insert(delay)
      }
    }
    #expect(seen.count > 100)  // jittered, not a fixed schedule
    // The same seed gives the same delays.
    var first = SeededGenerator(seed: 9)
    var second = SeededGenerator(seed: 9)
    #expect(
      (1...5).map { policy.delay(forAttempt: $0, error: timeout, random: &first) }
        == (1...5).map { policy.delay(forAttempt: $0, error: timeout, random: &second) })
  }

  @Test func cancellationIsRethrownNotClassified() async {
    var random = SeededGenerator(seed: 1)
    await #expect(throws: CancellationError.self) {
      let _: RetryOutcome<Int> = try await RetryPolicy().run(random: &random, sleep: { _ in }) { _ in
        throw CancellationError()
      }
    }
    var random2 = SeededGenerator(seed: 1)
    await #expect(throws: CancellationError.self) {
      let _: RetryOutcome<Int> = try await RetryPolicy().run(
        random: &random2, sleep: { _ in throw CancellationError() }
      ) { _ in throw ScriptError(text: "TimeoutError") }
    }
  }

  @Test func theSynchronousRunnerFollowsTheSameRules() throws {
    let script = Script(steps: [.fail("AUTH_KEY_UNREGISTERED"), .ok("me")])
    var delays: [Duration] = []
    var random = SeededGenerator(seed: 5)
    let outcome = try RetryPolicy().runSynchronously(random: &random, sleep: { delays.append($0) }) {
      try script($0)
    }
    #expect(outcome.value == "me")
    #expect(outcome.attempts == 2)
    #expect(delays.count == 1)
    #expect(outcome.unconfirmedFatal?.code == "AUTH_KEY_UNREGISTERED")

    let temporaries = Script(steps: [.fail("500"), .fail("502"), .fail("503")])
    let exhausted = try RetryPolicy().runSynchronously(random: &random, sleep: { _ in }) { try temporaries($0) }
    #expect(exhausted.attempts == 3)
    #expect(exhausted.summary.hasPrefix("still temporary after 3 attempts"))
  }

  @Test func aCustomClassifierIsUsed() async throws {
    var random = SeededGenerator(seed: 1)
    var delays: [Duration] = []
    let outcome: RetryOutcome<Int> = try await RetryPolicy().run(
      random: &random, sleep: { delays.append($0) },
      classify: { _ in ClassifiedError(class: .temporary, code: "CUSTOM", retryAfterSeconds: 2, summary: "custom") }
    ) { attempt in
      if attempt < 2 { throw ScriptError(text: "AUTH_KEY_UNREGISTERED") }
      return attempt
    }
    #expect(outcome.value == 2)
    #expect(delays == [.seconds(2)])
  }
}

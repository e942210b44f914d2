import Foundation

/// How tgsess retries an operation against Telegram: the seed guide's 3 tries, exponential backoff with full
/// jitter, Telegram's own waits honoured, and one confirming attempt before a session is declared dead.
///
/// Nothing here sleeps or reads a clock by itself: callers pass the sleeper and the random source, so tests run
/// instantly and deterministically.
public struct RetryPolicy: Sendable, Hashable {
  /// Attempts for temporary errors, the first included. A fatal error that needs confirmation gets exactly one
  /// more attempt even when this budget is spent, so a run makes at most `maxAttempts + 1` attempts.
  public var maxAttempts: Int
  /// The backoff ceiling after the first failed attempt; it doubles after each further one.
  public var base: Duration
  /// The largest backoff ceiling.
  public var cap: Duration
  /// The longest wait Telegram may ask for (`FLOOD_WAIT_X`) that a run still sleeps through; a longer one ends
  /// the run as temporary at once, because a cron job should not sleep for an hour.
  public var longestWait: Duration

  public init(
    maxAttempts: Int = 3, base: Duration = .seconds(1), cap: Duration = .seconds(30),
    longestWait: Duration = .seconds(300)
  ) {
    self.maxAttempts = maxAttempts
    self.base = base
    self.cap = cap
    self.longestWait = longestWait
  }

  /// The upper bound of the jittered backoff after attempt `n` failed: `min(cap, base * 2^(n-1))`.
  public func backoffCeiling(forAttempt n: Int) -> Duration {
    let capNS = max(0, Self.nanoseconds(cap))
    var ceilingNS = min(capNS, max(0, Self.nanoseconds(base)))
    for _ in 1..<max(1, n) where ceilingNS < capNS {
      ceilingNS = ceilingNS > capNS / 2 ? capNS : ceilingNS * 2
    }
    return .nanoseconds(ceilingNS)
  }

  /// The delay before the attempt after attempt `n` failed with `error`: a uniformly random duration in
  /// `0...backoffCeiling(forAttempt: n)` ("full jitter"), or Telegram's `retryAfterSeconds` when that is longer.
  public func delay(forAttempt n: Int, error: ClassifiedError, random: inout some RandomNumberGenerator) -> Duration {
    let ceilingNS = Self.nanoseconds(backoffCeiling(forAttempt: n))
    let jittered = Duration.nanoseconds(ceilingNS > 0 ? Int64.random(in: 0...ceilingNS, using: &random) : 0)
    guard let seconds = error.retryAfterSeconds, seconds > 0 else { return jittered }
    return max(jittered, .seconds(seconds))
  }

  /// Runs `operation` (given the 1-based attempt number) until it succeeds, fails fatally, or stays temporary
  /// for `maxAttempts` attempts.
  ///
  /// A success returns at once. A temporary error is retried after `delay(forAttempt:error:random:)`. A fatal
  /// error stops the retries; when it `needsConfirmation`, exactly one confirming attempt follows (after the same
  /// delay) and only a fatal error there too makes the verdict fatal. A confirming attempt that succeeds makes
  /// the verdict a success; one that fails temporarily makes it temporary (the session is not declared dead).
  /// - Parameters:
  ///   - random: the jitter source; tests pass a seeded generator.
  ///   - sleep: waits for a delay; tests pass a recorder that returns at once.
  ///   - classify: turns an operation's error into a `ClassifiedError`.
  /// - Throws: `CancellationError` (from the operation or the sleeper) and any error `sleep` throws; the
  ///   operation's other errors end up in the outcome.
  public func run<T>(
    isolation: isolated (any Actor)? = #isolation,
    random: inout some RandomNumberGenerator,
    sleep: (Duration) async throws -> Void,
    classify: (any Error) -> ClassifiedError = ErrorClassifier.classify(error:),
    operation: (Int) async throws -> T
  ) async throws -> RetryOutcome<T> {
    var state = RetryState(policy: self)
    while true {
      let attempt = state.attempts + 1
      do {
        let value = try await operation(attempt)
        return state.succeeded(value)
      } catch is CancellationError {
        throw CancellationError()
      } catch {
        switch state.failed(classify(error), random: &random) {
        case .retry(let delay): try await sleep(delay)
        case .stop(let outcome): return outcome.retyped()
        }
      }
    }
  }

  /// `run(random:sleep:classify:operation:)` with the system's random source.
  /// - Throws: `CancellationError` and any error `sleep` throws.
  public func run<T>(
    isolation: isolated (any Actor)? = #isolation,
    sleep: (Duration) async throws -> Void,
    classify: (any Error) -> ClassifiedError = ErrorClassifier.classify(error:),
    operation: (Int) async throws -> T
  ) async throws -> RetryOutcome<T> {
    var random = SystemRandomNumberGenerator()
    return try await run(random: &random, sleep: sleep, classify: classify, operation: operation)
  }

  /// The synchronous form of `run(random:sleep:classify:operation:)`, for callers outside async code.
  /// - Throws: `CancellationError` (from the operation) and any error `sleep` throws.
  public func runSynchronously<T>(
    random: inout some RandomNumberGenerator,
    sleep: (Duration) throws -> Void,
    classify: (any Error) -> ClassifiedError = ErrorClassifier.classify(error:),
    operation: (Int) throws -> T
  ) throws -> RetryOutcome<T> {
    var state = RetryState(policy: self)
    while true {
      let attempt = state.attempts + 1
      do {
        let value = try operation(attempt)
        return state.succeeded(value)
      } catch is CancellationError {
        throw CancellationError()
      } catch {
        switch state.failed(classify(error), random: &random) {
        case .retry(let delay): try sleep(delay)
        case .stop(let outcome): return outcome.retyped()
        }
      }
    }
  }

  static func nanoseconds(_ duration: Duration) -> Int64 {
    let (seconds, attoseconds) = duration.components
    // About 292 years of nanoseconds fit in an Int64; clamp rather than trap on absurd settings.
    let limit: Int64 = 9_000_000_000
    let clamped = min(max(seconds, -limit), limit)
    return clamped * 1_000_000_000 + attoseconds / 1_000_000_000
  }
}

/// What came of `RetryPolicy.run`: the verdict, the attempts made and every failure seen.
public struct RetryOutcome<Value> {
  /// The final verdict.
  public enum Verdict {
    /// The operation succeeded (possibly on a confirming attempt after a suspected fatal error).
    case succeeded(Value)
    /// The session is dead: a fatal error, confirmed by a second attempt when it needed confirmation.
    case fatal(ClassifiedError)
    /// Not dead, not working: still temporary after the attempts made (a WARNING for `check`).
    case temporary(ClassifiedError)
  }

  public var verdict: Verdict
  /// Attempts made, the first included.
  public var attempts: Int
  /// The classified error of each failed attempt, in order.
  public var failures: [ClassifiedError]
  /// A fatal error that a confirming attempt did not confirm (it succeeded or failed temporarily).
  public var unconfirmedFatal: ClassifiedError?
  /// One line for a log or a report, built from the classified errors only (no secrets).
  public var summary: String

  /// The value, when the operation succeeded.
  public var value: Value? {
    if case .succeeded(let value) = verdict { return value }
    return nil
  }

  /// The error that decided a fatal or temporary verdict.
  public var error: ClassifiedError? {
    switch verdict {
    case .succeeded: return nil
    case .fatal(let error), .temporary(let error): return error
    }
  }

  /// Whether the session was declared dead.
  public var isFatal: Bool {
    if case .fatal = verdict { return true }
    return false
  }
}

extension RetryOutcome: Sendable where Value: Sendable {}
extension RetryOutcome.Verdict: Sendable where Value: Sendable {}

extension RetryOutcome where Value == Never {
  /// The same failed outcome, typed for the operation's value.
  fileprivate func retyped<T>() -> RetryOutcome<T> {
    let verdict: RetryOutcome<T>.Verdict
    switch self.verdict {
    case .succeeded(let never): switch never {}
    case .fatal(let error): verdict = .fatal(error)
    case .temporary(let error): verdict = .temporary(error)
    }
    return RetryOutcome<T>(
      verdict: verdict, attempts: attempts, failures: failures, unconfirmedFatal: unconfirmedFatal, summary: summary)
  }
}

/// The retry loop's bookkeeping, shared by the async and synchronous runners.
private struct RetryState {
  enum Step {
    case retry(Duration)
    case stop(RetryOutcome<Never>)
  }

  let policy: RetryPolicy
  var attempts = 0
  var failures: [ClassifiedError] = []
  /// The fatal error the current (confirming) attempt is meant to confirm.
  var suspect: ClassifiedError?
  var unconfirmedFatal: ClassifiedError?

  init(policy: RetryPolicy) { self.policy = policy }

  mutating func succeeded<T>(_ value: T) -> RetryOutcome<T> {
    attempts += 1
    if let suspect { unconfirmedFatal = suspect }
    var summary = "succeeded on attempt \(attempts)"
    if let unconfirmedFatal {
      summary += "; \(unconfirmedFatal.code) on attempt \(attempts - 1) was not confirmed, the session is alive"
    }
    return RetryOutcome(
      verdict: .succeeded(value), attempts: attempts, failures: failures, unconfirmedFatal: unconfirmedFatal,
      summary: summary)
  }

  mutating func failed(_ error: ClassifiedError, random: inout some RandomNumberGenerator) -> Step {
    attempts += 1
    failures.append(error)
    let attemptWord = attempts == 1 ? "attempt" : "attempts"
    if let suspect = self.suspect {
      self.suspect = nil
      if error.isFatal {
        return stop(.fatal(error), "fatal, confirmed after \(attempts) \(attemptWord): \(error.summary)")
      }
      unconfirmedFatal = suspect
      return stop(
        .temporary(error),
        "\(suspect.code) was not confirmed (the confirming attempt failed with \(error.code)); "
          + "still temporary after \(attempts) \(attemptWord): \(error.summary)")
    }
    if error.isFatal {
      guard error.needsConfirmation else {
        return stop(.fatal(error), "fatal after \(attempts) \(attemptWord): \(error.summary)")
      }
      suspect = error
      return .retry(policy.delay(forAttempt: attempts, error: error, random: &random))
    }
    if let seconds = error.retryAfterSeconds, Duration.seconds(seconds) > policy.longestWait {
      return stop(
        .temporary(error),
        "Telegram asked to wait \(seconds) s, longer than this run waits; "
          + "still temporary after \(attempts) \(attemptWord): \(error.summary)")
    }
    guard attempts < max(1, policy.maxAttempts) else {
      return stop(.temporary(error), "still temporary after \(attempts) \(attemptWord): \(error.summary)")
    }
    return .retry(policy.delay(forAttempt: attempts, error: error, random: &random))
  }

  private func stop(_ verdict: RetryOutcome<Never>.Verdict, _ summary: String) -> Step {
    .stop(
      RetryOutcome(
        verdict: verdict, attempts: attempts, failures: failures, unconfirmedFatal: unconfirmedFatal,
        summary: summary))
  }
}

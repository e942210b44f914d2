import Foundation
import Logging

/// Watch's healthchecks-style pings, sent on a queue of their own so a slow monitor never delays
/// an archive: `/start` when watch starts, `/0` every heartbeat (`/1` while archives or copies
/// are failing), and the exit status when it stops. A failed ping is one warning line (naming
/// the host only) and changes nothing else.
final class WatchPinger: @unchecked Sendable {
  private var ping: Ping
  private let queue = DispatchQueue(label: "tgsess.watch.ping")
  private let lock = NSLock()
  private var isBusy = false
  private var reportedWarnings = 0
  private var lastWarning: String?
  private let logger: Logger

  /// - Throws: `JobError.usage` for a URL that is not http(s).
  init(url: String, timeout: TimeInterval, logger: Logger) throws {
    ping = try Ping(url: url, timeout: timeout)
    self.logger = logger
  }

  func start() {
    send { $0.start() }
  }

  /// A heartbeat; skipped while the previous ping is still on its way.
  func beat(exitStatus: Int32, body: String) {
    send { $0.finish(exitStatus: exitStatus, body: body) }
  }

  /// The last ping, waited for (at most the ping's timeout).
  func finish(exitStatus: Int32, body: String) {
    queue.sync {
      ping.finish(exitStatus: exitStatus, body: body)
      reportWarnings()
    }
  }

  private func send(_ body: @escaping @Sendable (inout Ping) -> Void) {
    let isFree = lock.withLock {
      guard !isBusy else { return false }
      isBusy = true
      return true
    }
    guard isFree else { return }
    queue.async { [self] in
      let failures = ping.warnings.count
      body(&ping)
      // A ping that went through: the next failure is news again.
      if ping.warnings.count == failures { lastWarning = nil }
      reportWarnings()
      lock.withLock { isBusy = false }
    }
  }

  private func reportWarnings() {
    guard ping.warnings.count > reportedWarnings else { return }
    // One line per distinct failure, not one per heartbeat while the monitor stays down.
    // ("/start: HTTP 500" and "/0: HTTP 500" are the same failure.)
    for warning in ping.warnings[reportedWarnings...] {
      let cause = warning.split(separator: ":", maxSplits: 1).last.map(String.init) ?? warning
      guard cause != lastWarning else { continue }
      logger.warning("ping to \(ping.displayHost) failed (watch is not affected): \(warning)")
      lastWarning = cause
    }
    reportedWarnings = ping.warnings.count
    // A monitor that stays down for days must not grow the list: start a fresh one, same run id.
    if reportedWarnings > 100,
      let fresh = try? Ping(url: ping.url.absoluteString, runID: ping.runID, timeout: ping.timeout)
    {
      ping = fresh
      reportedWarnings = 0
    }
  }
}

import Dispatch
import Foundation

/// Runs the blocking Jobs (recover, backup, check, logout) one at a time on their own thread.
///
/// One at a time because `DeploymentLock` is re-entrant per process: a second job in this process
/// would count as "nested" and walk straight past a lock the first one holds. Across processes
/// (cron's backup, an admin's restore) the jobs' own flock keeps them apart. Off the Swift
/// concurrency pool because the jobs block on files, SQLite and flock.
final class JobQueue: Sendable {
  private let queue = DispatchQueue(label: "tgsess-bot.jobs", qos: .userInitiated)

  /// Runs `body` after every job queued before it, and returns its value or error.
  func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async -> Result<T, any Error> {
    await withCheckedContinuation { continuation in
      queue.async {
        continuation.resume(returning: Result { try body() })
      }
    }
  }
}

/// Runs a short blocking read (a status query, a file inspection) off the concurrency pool.
func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
  try await withCheckedThrowingContinuation { continuation in
    DispatchQueue.global(qos: .userInitiated).async {
      continuation.resume(with: Result { try body() })
    }
  }
}

import Foundation
import Store

/// Progress of one phase of a long job (check, prune, drill, restore, watch's start-up scan), for a TTY.
/// A job reports it only to the callback its caller passed; cron, `--json` and the bot pass none.
public struct JobProgress: Sendable, Equatable {
  /// What the job is doing, in a few words ("session files", "signatures").
  public var phase: String
  public var done: Int
  public var total: Int
  /// Bytes handled so far, when the phase moves bytes (0 otherwise).
  public var bytesDone: Int64

  public init(phase: String, done: Int, total: Int, bytesDone: Int64 = 0) {
    self.phase = phase
    self.done = done
    self.total = total
    self.bytesDone = bytesDone
  }
}

/// Where a job sends its progress.
public typealias JobProgressHandler = @Sendable (JobProgress) -> Void

/// Counts the items of one phase done on several threads and reports each count to a handler:
/// what a job's `Parallel` bodies call.
final class PhaseCounter: @unchecked Sendable {
  private let handler: JobProgressHandler?
  private let phase: String
  private let total: Int
  private let counter = Counter()

  /// A counter of `total` items of `phase`; reports the start (0 of `total`) at once.
  init(_ handler: JobProgressHandler?, phase: String, total: Int) {
    self.handler = handler
    self.phase = phase
    self.total = total
    handler?(JobProgress(phase: phase, done: 0, total: total))
  }

  /// One more item done.
  func step() {
    guard let handler else { return }
    handler(JobProgress(phase: phase, done: counter.increment(), total: total))
  }
}

import Foundation
import Store

/// Failures of a job as a whole. Per-user failures are collected in results instead.
public enum JobError: Error, LocalizedError, Sendable {
  /// A Store operation failed while `context` was being done.
  case store(context: String, underlying: StoreError)
  /// The request itself is wrong (bad user id, conflicting options).
  case usage(String)
  /// The job refused to act because acting could lose data.
  case refused(String)

  public var errorDescription: String? {
    switch self {
    case .store(let context, let underlying):
      let detail = underlying.errorDescription ?? "\(underlying)"
      return context.isEmpty ? detail : "\(context): \(detail)"
    case .usage(let message): return message
    case .refused(let message): return message
    }
  }
}

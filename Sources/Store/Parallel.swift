import Foundation

/// Runs independent items on a few threads, for work that is bound by CPU and small syscalls
/// (snapshotting and inspecting thousands of SQLite files) rather than by one disk stream.
public enum Parallel {
  /// The default number of worker threads: the processors this process may use, at most 4.
  public static var defaultWorkers: Int { max(1, min(ProcessInfo.processInfo.activeProcessorCount, 4)) }

  /// Calls `body` for every index in `0..<count` on up to `workers` threads and returns the
  /// results in index order. Each thread takes the next index when it finishes one, so a long
  /// item never holds up the short ones behind it, and items start in index order. The first
  /// error stops further items from starting and is rethrown once every thread has stopped.
  /// `body` must be safe to call from several threads at once.
  public static func map<T>(count: Int, workers: Int, _ body: (Int) throws -> T) throws -> [T] {
    let threads = max(1, min(workers, count))
    if threads == 1 { return try (0..<count).map(body) }
    let state = State<T>(count: count)
    // The caller vouches that `body` may run on several threads (see above).
    nonisolated(unsafe) let body = body
    DispatchQueue.concurrentPerform(iterations: threads) { _ in
      while let index = state.claim() {
        do { state.store(try body(index), at: index) } catch { state.fail(error) }
      }
    }
    if let error = state.error { throw error }
    return state.values.map { $0! }
  }

  /// `map` for a `body` that cannot fail, on `defaultWorkers` threads.
  public static func collect<T>(count: Int, workers: Int = defaultWorkers, _ body: (Int) -> T) -> [T] {
    let threads = max(1, min(workers, count))
    if threads == 1 { return (0..<count).map(body) }
    let state = State<T>(count: count)
    nonisolated(unsafe) let body = body
    DispatchQueue.concurrentPerform(iterations: threads) { _ in
      while let index = state.claim() { state.store(body(index), at: index) }
    }
    return state.values.map { $0! }
  }

  /// The shared queue position, results and first error, behind one lock.
  private final class State<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var next = 0
    private let count: Int
    private(set) var values: [T?]
    private(set) var error: Error?

    init(count: Int) {
      self.count = count
      values = Array(repeating: nil, count: count)
    }

    func claim() -> Int? {
      lock.withLock {
        guard error == nil, next < count else { return nil }
        next += 1
        return next - 1
      }
    }

    func store(_ value: T, at index: Int) { lock.withLock { values[index] = value } }

    func fail(_ failure: Error) { lock.withLock { if error == nil { error = failure } } }
  }
}

/// A count shared by threads.
public final class Counter: @unchecked Sendable {
  private let lock = NSLock()
  private var value = 0

  public init() {}

  /// Adds one and returns the new value.
  public func increment() -> Int {
    lock.withLock {
      value += 1
      return value
    }
  }
}

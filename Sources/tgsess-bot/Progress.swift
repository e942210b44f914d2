import Foundation
import Jobs
import Logging

/// The lines of a live recovery: one per strategy tried.
struct RecoverSteps: Sendable {
  private var steps: [(RecoveryStrategy, Bool?)] = []

  mutating func apply(_ event: RecoverProgress) {
    if let index = steps.firstIndex(where: { $0.0 == event.strategy }) {
      steps[index].1 = event.succeeded
    } else {
      steps.append((event.strategy, event.succeeded))
    }
  }

  func render(header: String) -> String {
    ([header]
      + steps.map { strategy, succeeded in
        "\(strategy.label)… " + (succeeded.map { $0 ? "ok" : "failed" } ?? "trying")
      }).joined(separator: "\n")
  }
}

/// The steps of a running recovery, shared by the task reading the job's progress and the task
/// editing the message.
actor RecoverProgressBox {
  private var steps = RecoverSteps()
  private var isDone = false
  private let header: String

  init(header: String) { self.header = header }

  func apply(_ event: RecoverProgress) { steps.apply(event) }
  func markDone() { isDone = true }
  func snapshot() -> (text: String, isDone: Bool) { (steps.render(header: header), isDone) }
}

/// Edits one message with progress, at most about once a second, skipping unchanged text.
struct ProgressEditor: Sendable {
  let api: BotAPI
  let chatID: Int64
  let messageID: Int64
  var lastText = ""
  /// The message was just sent: that counts as the first "edit".
  var lastEdit = ContinuousClock.now
  static let minimumInterval = Duration.seconds(1)

  init(api: BotAPI, chatID: Int64, messageID: Int64) {
    self.api = api
    self.chatID = chatID
    self.messageID = messageID
  }

  /// Shows `text` now if the last edit is a second old; otherwise drops it (a later one follows).
  mutating func update(_ text: String) async {
    guard text != lastText, ContinuousClock.now - lastEdit >= Self.minimumInterval else { return }
    await edit(text)
  }

  /// Shows the final `text`, waiting out the rest of the second if needed.
  mutating func finish(_ text: String) async {
    guard text != lastText else { return }
    let wait = Self.minimumInterval - (ContinuousClock.now - lastEdit)
    if wait > .zero { try? await Task.sleep(for: wait) }
    await edit(text)
  }

  private mutating func edit(_ text: String) async {
    lastText = text
    lastEdit = ContinuousClock.now
    do {
      try await api.editMessageText(chatID: chatID, messageID: messageID, text: text)
    } catch {
      api.logger.warning("progress edit failed", metadata: ["error": "\(error)"])
    }
  }
}

/// Runs a recovery job on the job queue while one message shows its steps as they happen.
enum RecoverProgressRun {
  /// What the run ended with: the job's result, the steps as last shown, and the editor that
  /// shows the final text.
  struct Finished<T: Sendable> {
    var result: Result<T, any Error>
    var steps: String
    var editor: ProgressEditor
  }

  /// Runs `job` (which reports through the closure it is given) after every job queued before
  /// it; meanwhile `message` shows the steps, edited at most about once a second.
  static func run<T: Sendable>(
    on jobs: JobQueue, message: ProgressEditor, header: String,
    _ job: @escaping @Sendable (_ report: @escaping @Sendable (RecoverProgress) -> Void) throws -> T
  ) async -> Finished<T> {
    let progress = RecoverProgressBox(header: header)
    let (events, continuation) = AsyncStream.makeStream(of: RecoverProgress.self)
    async let outcome = jobs.run {
      defer { continuation.finish() }
      return try job { continuation.yield($0) }
    }
    let editor = await withTaskGroup(of: ProgressEditor?.self) { group in
      group.addTask {
        for await event in events { await progress.apply(event) }
        await progress.markDone()
        return nil
      }
      group.addTask {
        var ticking = message
        while true {
          try? await Task.sleep(for: .milliseconds(250))
          let (text, isDone) = await progress.snapshot()
          if isDone { return ticking }
          await ticking.update(text)
        }
      }
      var last = message
      for await value in group { if let value { last = value } }
      return last
    }
    let steps = await progress.snapshot().text
    return Finished(result: await outcome, steps: steps, editor: editor)
  }
}

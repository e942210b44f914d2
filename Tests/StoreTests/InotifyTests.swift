import Foundation
import Store
import TestSupport
import Testing

/// The inotify wrapper against the real kernel: the events watch relies on, a queue overflow
/// (forced by lowering fs.inotify.max_queued_events, as root), and the loss of the directory.
@Suite(.serialized) struct InotifyTests {
  /// Reads events until `condition` holds for the events so far (or the bound passes).
  static func events(
    _ inotify: Inotify, until condition: ([InotifyEvent]) -> Bool
  ) throws -> [InotifyEvent] {
    var events: [InotifyEvent] = []
    try waitUntil("inotify events") {
      if try inotify.wait(timeoutMS: 200, wake: nil) == .events { events += try inotify.read() }
      return condition(events)
    }
    return events
  }

  @Test func seesCreateCloseWriteMoveDeleteAndAttrib() throws {
    let directory = try TemporaryDirectory("inotify")
    let inotify = try Inotify()
    let wd = try inotify.watch(directory: directory.path)
    #expect(inotify.directories[wd] == directory.path)

    // A file written and closed, a temporary renamed into place, a chmod, a removal.
    try Data("one".utf8).write(to: URL(fileURLWithPath: directory.file("user_1.session")))
    try Data("two".utf8).write(to: URL(fileURLWithPath: directory.file(".tmp")))
    #expect(rename(directory.file(".tmp"), directory.file("user_2.session")) == 0)
    #expect(chmod(directory.file("user_1.session"), 0o600) == 0)
    #expect(unlink(directory.file("user_2.session")) == 0)

    let events = try Self.events(inotify) { events in
      events.contains { $0.name == "user_2.session" && $0.isRemoval }
    }
    func has(_ name: String, _ kind: String) -> Bool {
      events.contains { $0.name == name && $0.kinds.split(separator: ",").contains(Substring(kind)) }
    }
    #expect(has("user_1.session", "create"))
    #expect(has("user_1.session", "close_write"))
    #expect(has("user_2.session", "moved_to"))
    #expect(has("user_1.session", "attrib"))
    #expect(has("user_2.session", "delete"))
    #expect(events.allSatisfy { $0.watch == wd && !$0.isOverflow && !$0.isWatchLost })
  }

  @Test func waitReturnsOnTimeoutAndOnWake() throws {
    let directory = try TemporaryDirectory("inotify")
    let inotify = try Inotify()
    try inotify.watch(directory: directory.path)
    #expect(try inotify.wait(timeoutMS: 10, wake: nil) == .timeout)
    let stop = try StopRequest()
    DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(50)) { stop.request() }
    #expect(try inotify.wait(timeoutMS: 60_000, wake: stop.wake) == .woken)
    #expect(stop.isRequested)
    #expect(stop.reason == "request")
    #expect(try inotify.read().isEmpty)
  }

  @Test func removingTheDirectoryIsAWatchLost() throws {
    let parent = try TemporaryDirectory("inotify")
    let watched = parent.file("sessions")
    try FileManager.default.createDirectory(atPath: watched, withIntermediateDirectories: false)
    let inotify = try Inotify()
    let wd = try inotify.watch(directory: watched)
    try FileManager.default.removeItem(atPath: watched)
    let events = try Self.events(inotify) { $0.contains(where: \.isWatchLost) }
    #expect(events.contains { $0.watch == wd && $0.name.isEmpty && $0.isWatchLost })
  }

  @Test func movingTheDirectoryAwayIsAWatchLost() throws {
    let parent = try TemporaryDirectory("inotify")
    let watched = parent.file("sessions")
    try FileManager.default.createDirectory(atPath: watched, withIntermediateDirectories: false)
    let inotify = try Inotify()
    try inotify.watch(directory: watched)
    #expect(rename(watched, parent.file("sessions.old")) == 0)
    let events = try Self.events(inotify) { $0.contains(where: \.isWatchLost) }
    #expect(events.contains { $0.kinds.contains("move_self") })
  }

  @Test func watchingAMissingDirectoryNamesIt() throws {
    let parent = try TemporaryDirectory("inotify")
    let inotify = try Inotify()
    let error = #expect(throws: StoreError.self) { try inotify.watch(directory: parent.file("missing")) }
    #expect(error?.errorDescription?.contains(parent.file("missing")) == true)
  }

  /// The kernel's queue holds `max_queued_events` events; more make one IN_Q_OVERFLOW. The limit
  /// applies to instances created while it is set, so it is lowered only around `Inotify()`.
  @Test func aFullQueueOverflows() throws {
    let directory = try TemporaryDirectory("inotify")
    let inotify = try InotifyQueueLimit.withLimit(16) { try Inotify() }
    try inotify.watch(directory: directory.path)
    for index in 0..<64 {
      try Data("x".utf8).write(to: URL(fileURLWithPath: directory.file("user_\(index).session")))
    }
    let events = try Self.events(inotify) { $0.contains(where: \.isOverflow) }
    #expect(events.filter(\.isOverflow).count == 1)
    #expect(events.count <= 17)
  }
}

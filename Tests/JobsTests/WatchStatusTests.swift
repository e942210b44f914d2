import Foundation
import Jobs
import Store
import TestSupport
import Testing

/// `WatchStatus.read`, the function `check` calls to warn about a watch that should run but is
/// silent: the config's `[watch]`, the textfile's age, and watch's status file.
@Suite struct WatchStatusTests {
  static func deployment(_ directory: TemporaryDirectory, watch: Config.WatchSection?) -> Deployment {
    var config = Config()
    config.watch = watch
    return Deployment(root: directory.path, config: config)
  }

  static func age(_ path: String, by seconds: TimeInterval) {
    let past = Date().addingTimeInterval(-seconds).timeIntervalSince1970
    var times = [
      timespec(tv_sec: Int(past), tv_nsec: 0), timespec(tv_sec: Int(past), tv_nsec: 0),
    ]
    _ = utimensat(AT_FDCWD, path, &times, 0)
  }

  @Test func disabledIsNeverStale() throws {
    let directory = try TemporaryDirectory("watch-status")
    let status = WatchStatus.read(Self.deployment(directory, watch: nil))
    #expect(!status.isEnabled)
    #expect(!status.isStale())
    #expect(status.textfileAge == nil && status.heartbeatAge == nil && status.lastSuccess == nil)
  }

  @Test func enabledIsStaleWithoutAFreshTextfile() throws {
    let directory = try TemporaryDirectory("watch-status")
    let deployment = Self.deployment(
      directory, watch: Config.WatchSection(enabled: true, prometheus: "tgsess_watch.prom", heartbeatSeconds: 10))
    var status = WatchStatus.read(deployment)
    #expect(status.isEnabled)
    #expect(status.textfilePath == directory.path + "/tgsess_watch.prom")
    #expect(status.isStale(), "no textfile at all")
    try Data("tgsess_watch_up 1\n".utf8).write(to: URL(fileURLWithPath: directory.file("tgsess_watch.prom")))
    status = WatchStatus.read(deployment)
    #expect(!status.isStale())
    #expect((status.textfileAge ?? 99) < 5)
    Self.age(directory.file("tgsess_watch.prom"), by: 600)
    status = WatchStatus.read(deployment)
    #expect(status.isStale(), "ten minutes old with a 10 s heartbeat")
    #expect((status.textfileAge ?? 0) >= 599)
  }

  /// Without a textfile, the status file watch rewrites every heartbeat tells.
  @Test func theStatusFileStandsInForTheTextfile() throws {
    let fleet = try TestFleet(users: 2, entities: 120, collectsSecrets: true, location: .subdirectory("fleet"))
    try """
    [watch]
    enabled = true
    heartbeat_seconds = 1
    """.write(toFile: fleet.root + "/tgsess.toml", atomically: true, encoding: .utf8)
    let once = try fleet.tgsess(["watch", "--once"])
    #expect(once.status == 0, "\(once.stderr)")
    let deployment = try Deployment.resolve(root: fleet.root, config: nil, environment: [:])
    let status = WatchStatus.read(deployment)
    #expect(status.isEnabled && status.textfilePath == nil)
    #expect((status.heartbeatAge ?? 99) < 30)
    #expect(status.lastSuccess != nil)
    #expect(!status.isStale(factor: 30))
  }
}

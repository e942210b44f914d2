import Foundation
import Jobs
import Store
import Testing

/// The fleet's judgement as a pure function of the hosts' states, at an injected time.
struct FleetReportTests {
  static let now = Date(timeIntervalSince1970: 1_800_000_000)

  static func state(
    _ name: String, heartbeatAgo: TimeInterval = 60, users: [(Int64, String?, TimeInterval)]
  ) -> HostState {
    HostState(
      host: "machine-" + name, deploymentName: name, toolVersion: "0.1.0",
      writtenAt: now.addingTimeInterval(-heartbeatAgo), lastFullBackupAt: now.addingTimeInterval(-600),
      checkState: .ok, checkedAt: now.addingTimeInterval(-heartbeatAgo),
      users: users.map { id, key, writtenAgo in
        HostState.User(
          id: id, format: "telethon-v8", dc: 2, authKeyFingerprint: key,
          sessionWrittenAt: now.addingTimeInterval(-writtenAgo), sessionByteCount: 28672)
      })
  }

  static func report(_ states: [HostState], window: TimeInterval = 900, maxAge: TimeInterval = 7200) -> FleetReport {
    FleetReport.make(
      states: states, findings: [], remote: "/remote",
      options: FleetOptions(window: window, maxAge: maxAge, now: now))
  }

  @Test func aHealthyFleetIsOK() {
    let report = Self.report([
      Self.state("host-a", users: [(1, "aaaaaaaa", 30), (2, "bbbbbbbb", 30)]),
      Self.state("host-b", users: [(3, "cccccccc", 30)]),
    ])
    #expect(report.state == .ok)
    #expect(report.users == 3 && report.hosts.count == 2)
    #expect(report.findings.isEmpty)
  }

  @Test func theSameKeyWrittenOnTwoHostsWithinTheWindowIsCritical() {
    let report = Self.report([
      Self.state("host-a", users: [(42, "aaaaaaaa", 100)]),
      Self.state("host-b", heartbeatAgo: 300, users: [(42, "aaaaaaaa", 1000)]),
    ])
    #expect(report.state == .critical)
    let finding = report.findings[0]
    #expect(finding.kind == .duplicateKey && finding.userID == 42)
    #expect(finding.deployments == ["host-a", "host-b"])
    #expect(
      finding.message.hasPrefix(
        "user 42: the same key is in use on host-a and host-b; Telegram will revoke it (AUTH_KEY_DUPLICATED) (last write on host-a 2027-01-15T07:58:20Z, last write on host-b 2027-01-15T07:43:20Z)"
      ))
    #expect(report.hosts.allSatisfy { $0.state == .critical })
  }

  @Test func aCopyWrittenBeforeTheWindowIsADormantCopyWarning() {
    // host-b's file was last written 16 minutes before its heartbeat: not in use there.
    let report = Self.report([
      Self.state("host-a", users: [(42, "aaaaaaaa", 10)]),
      Self.state("host-b", heartbeatAgo: 60, users: [(42, "aaaaaaaa", 60 + 960)]),
    ])
    #expect(report.state == .warning)
    #expect(report.findings.map(\.kind) == [.dormantCopy])
    // The same copy written 14 minutes before is in use.
    let live = Self.report([
      Self.state("host-a", users: [(42, "aaaaaaaa", 10)]),
      Self.state("host-b", heartbeatAgo: 60, users: [(42, "aaaaaaaa", 60 + 840)]),
    ])
    #expect(live.findings.map(\.kind) == [.duplicateKey])
  }

  @Test func aStaleHostIsCriticalAndItsSessionsAreNotInUse() {
    let report = Self.report([
      Self.state("host-a", users: [(42, "aaaaaaaa", 10)]),
      Self.state("host-b", heartbeatAgo: 7300, users: [(42, "aaaaaaaa", 7300)]),
    ])
    #expect(report.state == .critical)
    #expect(report.findings.map(\.kind) == [.staleHeartbeat, .dormantCopy])
    #expect(report.findings[0].message.hasPrefix("host-b: last heartbeat 2h 1m ago"))
  }

  @Test func theSameUserUnderTwoKeysIsAWarning() {
    let report = Self.report([
      Self.state("host-a", users: [(42, "aaaaaaaa", 10)]),
      Self.state("host-b", users: [(42, "bbbbbbbb", 10)]),
    ])
    #expect(report.state == .warning)
    #expect(report.findings.map(\.kind) == [.differentKeys])
    #expect(report.findings[0].message.hasPrefix("user 42 is logged in on host-a and host-b under different keys"))
  }

  @Test func anEmptyRemoteIsUnknown() {
    let report = Self.report([])
    #expect(report.state == .unknown)
    #expect(report.findings.map(\.kind) == [.noHosts])
  }

  @Test func hostileStatesAreRefusedWithOneLine() throws {
    let good = try Self.state("host-a", users: [(1, "aaaaaaaa", 1)]).encoded()
    let text = String(decoding: good, as: UTF8.self)
    func reason(_ json: String, directory: String = "host-a") -> String? {
      do {
        _ = try HostState.decode(Data(json.utf8), name: "r/\(directory)/tgsess-host.json", directoryName: directory)
        return nil
      } catch let error as StoreError {
        guard case .invalid(_, let reason, _) = error else { return "\(error)" }
        return reason
      } catch { return "\(error)" }
    }
    #expect(reason(text) == nil)
    #expect(reason("nope") == "not JSON")
    #expect(reason("[]") == "not a JSON object")
    #expect(reason("{}") == "no version")
    #expect(reason("{\"version\": 9}")?.hasPrefix("format version 9") == true)
    #expect(reason(text.replacingOccurrences(of: "\"id\":1", with: "\"id\":\"1\"")) == "key 'users.0.id' must be Int64")
    #expect(
      reason(text.replacingOccurrences(of: "\"id\":1", with: "\"id\":-5")) == "user id -5 is not a Telegram user id")
    #expect(reason(text.replacingOccurrences(of: "aaaaaaaa", with: "../../x")) != nil)
    #expect(
      reason(text.replacingOccurrences(of: "\"dc\":2", with: "\"dc\":99999")) == "user 1: dc 99999 is out of range")
    #expect(reason(text, directory: "host-b") == "claims deployment_name 'host-a' but sits under 'host-b'")
    #expect(reason(text.replacingOccurrences(of: "machine-host-a", with: "a\\nb")) != nil)
  }
}

extension FleetReportTests {
  @Test func timesAreReadAsTheStandardParserReadsThem() throws {
    let base = try Self.state("host-a", users: [(1, "aaaaaaaa", 1)]).encoded()
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    for text in [
      "2024-02-29T12:34:56Z", "1999-12-31T23:59:59.999Z", "2026-12-06T20:40:00.123Z", "2100-03-01T00:00:00.5Z",
      "2026-12-06T20:40:00+02:00",
    ] {
      var object = try #require(try JSONSerialization.jsonObject(with: base) as? [String: Any])
      object["written_at"] = text
      let state = try HostState.decode(
        try JSONSerialization.data(withJSONObject: object), name: "x", directoryName: "host-a")
      let expected = try #require(
        formatter.date(from: text) ?? ISO8601DateFormatter().date(from: text), "the standard parser reads \(text)")
      #expect(abs(state.writtenAt.timeIntervalSince(expected)) < 0.0005, "\(text)")
    }
  }
}

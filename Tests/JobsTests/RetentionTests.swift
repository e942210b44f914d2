import Foundation
import Jobs
import Testing

/// Retention plans checked against hand-written golden tables. Time is always injected: the
/// backups carry fixed timestamps and `now` is a fixed date.
@Suite struct RetentionTests {
  /// The injected clock; no rule reads it today.
  static let now = at("2026-06-01T00:00:00Z")

  // MARK: Per-user backups

  @Test func perUserKeepsTheNewestFiveOfEachUserAndAnOnlyBackup() {
    var backups: [RetentionItem] = []
    for day in 1...8 { backups.append(user("a\(day)", 1, "2025-11-0\(day)T12:00:00Z", isVerified: true)) }
    backups.append(user("b1", 2, "2025-11-03T13:00:00Z", isVerified: true))
    for day in 1...5 { backups.append(user("c\(day)", 3, "2025-11-0\(day)T14:00:00Z", isVerified: true)) }

    let plan = RetentionPolicy().plan(backups.shuffled(), now: Self.now)

    #expect(
      table(plan) == """
        keep   a8  per-user 1, newest verified
        keep   a7  per-user 2
        keep   a6  per-user 3
        keep   c5  per-user 1, newest verified
        keep   a5  per-user 4
        keep   c4  per-user 2
        keep   a4  per-user 5
        keep   c3  per-user 3
        keep   b1  per-user 1, newest verified, only backup of user 2
        remove a3  beyond keep-per-user 5
        keep   c2  per-user 4
        remove a2  beyond keep-per-user 5
        keep   c1  per-user 5
        remove a1  beyond keep-per-user 5
        """)
    // The plan's own lists are ordered newest first.
    #expect(plan.keep.map(\.item.id) == ["a8", "a7", "a6", "c5", "a5", "c4", "a4", "c3", "b1", "c2", "c1"])
    #expect(plan.remove.map(\.item.id) == ["a3", "a2", "a1"])
  }

  @Test func perUserPlanningScalesToFiftyThousandItems() {
    var backups: [RetentionItem] = []
    backups.reserveCapacity(50_000)
    let start = at("2025-01-01T00:00:00Z")
    for userID in 1...5_000 {
      for index in 0..<10 {
        let createdAt = start.addingTimeInterval(Double(index * 3_600 + userID))
        backups.append(
          RetentionItem(id: "u\(userID)-\(index)", kind: .user, userID: Int64(userID), createdAt: createdAt))
      }
    }

    let plan = RetentionPolicy().plan(backups, now: Self.now)

    #expect(plan.keep.count == 25_000)
    #expect(plan.remove.count == 25_000)
    #expect(plan.keep.allSatisfy { Int($0.item.id.split(separator: "-")[1])! >= 5 })
    #expect(plan.remove.allSatisfy { $0.reasons == ["beyond keep-per-user 5"] })
  }

  // MARK: Calendar buckets for full snapshots

  @Test func bucketsAcrossAYearBoundary() {
    let times = [
      "2025-12-27T00:00", "2025-12-27T12:00", "2025-12-28T00:00", "2025-12-28T12:00", "2025-12-29T00:00",
      "2025-12-29T12:00", "2025-12-30T00:00", "2025-12-30T12:00", "2025-12-31T00:00", "2025-12-31T12:00",
      "2026-01-01T00:00", "2026-01-01T12:00", "2026-01-02T00:00", "2026-01-02T12:00", "2026-01-02T12:20",
      "2026-01-02T12:40",
    ]
    let backups = times.enumerated().map { offset, time in
      full(String(format: "s%02d", offset + 1), time + ":00Z", isVerified: true)
    }
    let policy = RetentionPolicy(
      keepLast: 2, keepHourly: 3, keepDaily: 4, keepWeekly: 2, keepMonthly: 2, keepYearly: 3)

    let plan = policy.plan(backups.reversed(), now: Self.now)

    #expect(
      table(plan) == """
        keep   s16  last 1, hourly 2026-01-02T12, daily 2026-01-02, weekly 2026-W01, monthly 2026-01, yearly 2026, \
        newest verified
        keep   s15  last 2
        remove s14  not kept by any rule
        keep   s13  hourly 2026-01-02T00
        keep   s12  hourly 2026-01-01T12, daily 2026-01-01
        remove s11  not kept by any rule
        keep   s10  daily 2025-12-31, monthly 2025-12, yearly 2025
        remove s09  not kept by any rule
        keep   s08  daily 2025-12-30
        remove s07  not kept by any rule
        remove s06  not kept by any rule
        remove s05  not kept by any rule
        keep   s04  weekly 2025-W52
        remove s03  not kept by any rule
        remove s02  not kept by any rule
        remove s01  not kept by any rule
        """)
  }

  @Test func dailySeriesAcrossAMonthBoundary() {
    // 2026-01-27 is a Tuesday; ISO week 2026-W05 runs from Monday 01-26 to Sunday 02-01.
    let days = ["0127", "0128", "0129", "0130", "0131", "0201", "0202", "0203"]
    let backups = days.map { day in
      full("d\(day)", "2026-\(day.prefix(2))-\(day.suffix(2))T09:00:00Z", isVerified: true)
    }
    let policy = RetentionPolicy(keepLast: 0, keepDaily: 3, keepWeekly: 2, keepMonthly: 2)

    let plan = policy.plan(backups, now: Self.now)

    #expect(
      table(plan) == """
        keep   d0203  daily 2026-02-03, weekly 2026-W06, monthly 2026-02, newest verified
        keep   d0202  daily 2026-02-02
        keep   d0201  daily 2026-02-01, weekly 2026-W05
        keep   d0131  monthly 2026-01
        remove d0130  not kept by any rule
        remove d0129  not kept by any rule
        remove d0128  not kept by any rule
        remove d0127  not kept by any rule
        """)
  }

  @Test func isoWeeksWhereTheYearChanges() {
    // 2020-12-28 (Monday) to 2021-01-03 (Sunday) is ISO week 2020-W53; yearly buckets use the
    // calendar year, so 2021-01-01 is in 2021 but in week 2020-W53.
    let days = ["2020-12-27", "2020-12-28", "2020-12-31", "2021-01-01", "2021-01-03", "2021-01-04"]
    let backups = days.map { day in
      full("w" + day.replacingOccurrences(of: "-", with: ""), day + "T12:00:00Z", isVerified: true)
    }
    let policy = RetentionPolicy(keepLast: 0, keepDaily: 0, keepWeekly: 3, keepYearly: 2)

    let plan = policy.plan(backups, now: Self.now)

    #expect(
      table(plan) == """
        keep   w20210104  weekly 2021-W01, yearly 2021, newest verified
        keep   w20210103  weekly 2020-W53
        remove w20210101  not kept by any rule
        keep   w20201231  yearly 2020
        remove w20201228  not kept by any rule
        keep   w20201227  weekly 2020-W52
        """)
  }

  @Test func aConfiguredTimeZoneMovesASnapshotIntoTheNextDay() throws {
    // 23:30 UTC on 2026-03-10 is 00:30 on 2026-03-11 in Berlin (CET, UTC+1).
    let backups = [
      full("t1", "2026-03-10T22:00:00Z", isVerified: true),
      full("t2", "2026-03-10T23:30:00Z", isVerified: true),
      full("t3", "2026-03-11T12:00:00Z", isVerified: true),
    ]
    let berlin = try #require(TimeZone(identifier: "Europe/Berlin"))

    let inUTC = RetentionPolicy(keepLast: 0, keepDaily: 3, keepWeekly: 0).plan(backups, now: Self.now)
    let inBerlin = RetentionPolicy(keepLast: 0, keepDaily: 3, keepWeekly: 0, timeZone: berlin)
      .plan(backups, now: Self.now)

    #expect(
      table(inUTC) == """
        keep   t3  daily 2026-03-11, newest verified
        keep   t2  daily 2026-03-10
        remove t1  not kept by any rule
        """)
    #expect(
      table(inBerlin) == """
        keep   t3  daily 2026-03-11, newest verified
        remove t2  not kept by any rule
        keep   t1  daily 2026-03-10
        """)
  }

  // MARK: Ties

  @Test(arguments: [false, true])
  func aTieOnTimeIsWonByTheLargerID(reversed: Bool) {
    let backups = [
      full("x-old", "2026-01-01T03:00:00Z"),
      full("x-a", "2026-01-02T03:00:00Z"),
      full("x-b", "2026-01-02T03:00:00Z"),
    ]
    let input = reversed ? backups.reversed() : backups

    let byLast = RetentionPolicy(keepLast: 1, keepDaily: 0, keepWeekly: 0).plan(input, now: Self.now)
    let byDay = RetentionPolicy(keepLast: 0, keepDaily: 2, keepWeekly: 0).plan(input, now: Self.now)

    #expect(
      table(byLast) == """
        keep   x-b  last 1
        remove x-a  not kept by any rule
        remove x-old  not kept by any rule
        """)
    #expect(
      table(byDay) == """
        keep   x-b  daily 2026-01-02
        remove x-a  not kept by any rule
        keep   x-old  daily 2026-01-01
        """)
  }

  @Test func idsCompareByteByByteNotNumerically() {
    // The example in `RetentionPolicy.helpText`: snap-9 sorts before snap-10.
    let backups = [full("snap-10", "2026-01-02T03:00:00Z"), full("snap-9", "2026-01-02T03:00:00Z")]

    let plan = RetentionPolicy(keepLast: 1, keepDaily: 0, keepWeekly: 0).plan(backups, now: Self.now)

    #expect(plan.keep.map(\.item.id) == ["snap-9"])
    #expect(plan.remove.map(\.item.id) == ["snap-10"])
    #expect(RetentionPolicy.helpText.contains("snap-9 sorts before snap-10"))
  }

  // MARK: Guards

  @Test func pinnedBackupsAreKeptAndSayWhy() {
    let backups = [
      full("p1", "2026-01-01T10:00:00Z", isPinned: true),
      full("p2", "2026-01-02T10:00:00Z"),
      full("p3", "2026-01-03T10:00:00Z", isPinned: true),
      user("u1", 5, "2026-02-01T10:00:00Z", isPinned: true),
      user("u2", 5, "2026-02-02T10:00:00Z"),
      user("u3", 5, "2026-02-03T10:00:00Z"),
    ]

    let plan = RetentionPolicy(keepPerUser: 1, keepLast: 1, keepDaily: 0, keepWeekly: 0).plan(backups, now: Self.now)

    #expect(
      table(plan) == """
        keep   u3  per-user 1
        remove u2  beyond keep-per-user 1
        keep   u1  pinned
        keep   p3  last 1, pinned
        remove p2  not kept by any rule
        keep   p1  pinned
        """)
  }

  @Test func everyRuleThatKeepsAnItemIsListed() {
    let backups = [full("n1", "2025-11-24T08:00:00Z", isPinned: true)]

    let plan = RetentionPolicy(keepLast: 1, keepDaily: 1, keepWeekly: 0).plan(backups, now: Self.now)

    #expect(plan.keep.map(\.reasons) == [["last 1", "daily 2025-11-24", "pinned", "only full snapshot"]])
  }

  @Test func theNewestVerifiedBackupIsKeptWhenNewerOnesFailedVerification() {
    let backups = [
      full("f1", "2026-01-01T10:00:00Z", isVerified: true),
      full("f2", "2026-01-02T10:00:00Z", isVerified: true),
      full("f3", "2026-01-03T10:00:00Z"),
      full("f4", "2026-01-04T10:00:00Z"),
      full("f5", "2026-01-05T10:00:00Z"),
      user("v1", 9, "2026-02-01T10:00:00Z", isVerified: true),
      user("v2", 9, "2026-02-02T10:00:00Z"),
      user("v3", 9, "2026-02-03T10:00:00Z"),
    ]

    let plan = RetentionPolicy(keepPerUser: 1, keepLast: 1, keepDaily: 0, keepWeekly: 0).plan(backups, now: Self.now)

    #expect(
      table(plan) == """
        keep   v3  per-user 1
        remove v2  beyond keep-per-user 1
        keep   v1  newest verified
        keep   f5  last 1
        remove f4  not kept by any rule
        remove f3  not kept by any rule
        keep   f2  newest verified
        remove f1  not kept by any rule
        """)
  }

  @Test func keepPerUserZeroStillKeepsOneBackupOfEachUser() throws {
    let backups = [
      user("o7", 7, "2026-03-01T08:00:00Z"),
      user("e1", 8, "2026-03-02T08:00:00Z"),
      user("e2", 8, "2026-03-03T08:00:00Z"),
      user("e3", 8, "2026-03-04T08:00:00Z"),
      user("g1", 9, "2026-03-05T08:00:00Z", isVerified: true),
      user("g2", 9, "2026-03-06T08:00:00Z"),
      full("F", "2026-03-07T08:00:00Z"),
    ]
    let policy = RetentionPolicy(keepPerUser: 0, keepLast: 1, keepDaily: 0, keepWeekly: 0)
    try policy.validate()

    let plan = policy.plan(backups, now: Self.now)

    #expect(
      table(plan) == """
        keep   F  last 1, only full snapshot
        remove g2  beyond keep-per-user 0
        keep   g1  newest verified
        keep   e3  last backup of user 8
        remove e2  beyond keep-per-user 0
        remove e1  beyond keep-per-user 0
        keep   o7  only backup of user 7
        """)
  }

  @Test func anAllZeroFullPolicyKeepsEveryFullSnapshot() {
    let backups = [
      full("z1", "2026-01-01T00:00:00Z", isVerified: true),
      full("z2", "2026-01-02T00:00:00Z", isVerified: true),
      full("z3", "2026-01-03T00:00:00Z", isVerified: true),
    ]
    let policy = RetentionPolicy(keepLast: 0, keepDaily: 0, keepWeekly: 0)

    let plan = policy.plan(backups, now: Self.now)

    #expect(policy.keepsAllFullSnapshots)
    #expect(plan.remove.isEmpty)
    #expect(
      table(plan) == """
        keep   z3  no policy, newest verified
        keep   z2  no policy
        keep   z1  no policy
        """)
  }

  // MARK: Validation, clock, output

  @Test(arguments: [
    (RetentionPolicy(keepPerUser: -1), "--keep-per-user"),
    (RetentionPolicy(keepLast: -1), "--keep-last"),
    (RetentionPolicy(keepHourly: -1), "--keep-hourly"),
    (RetentionPolicy(keepDaily: -1), "--keep-daily"),
    (RetentionPolicy(keepWeekly: -1), "--keep-weekly"),
    (RetentionPolicy(keepMonthly: -1), "--keep-monthly"),
    (RetentionPolicy(keepYearly: -1), "--keep-yearly"),
  ])
  func aNegativeCountIsAUsageErrorNamingTheOption(policy: RetentionPolicy, option: String) {
    #expect {
      try policy.validate()
    } throws: { error in
      guard case JobError.usage(let message) = error else { return false }
      return message == "\(option) must be 0 or more, got -1 (0 turns the rule off)"
    }
  }

  @Test func theDefaultsAreValid() throws {
    let policy = RetentionPolicy()
    try policy.validate()
    let counts: [Int] = [
      policy.keepPerUser, policy.keepLast, policy.keepHourly, policy.keepDaily, policy.keepWeekly, policy.keepMonthly,
      policy.keepYearly,
    ]
    #expect(counts == [5, 5, 0, 7, 4, 0, 0])
    #expect(policy.timeZone.secondsFromGMT() == 0)
  }

  @Test func thePlanDoesNotDependOnTheClock() {
    let backups = (1...9).map { day in full("c\(day)", "2026-01-0\(day)T00:00:00Z", isVerified: day == 2) }
    let policy = RetentionPolicy(keepLast: 2, keepDaily: 3, keepWeekly: 1)

    #expect(
      policy.plan(backups, now: at("2026-01-05T00:00:00Z")) == policy.plan(backups, now: at("2030-01-01T00:00:00Z")))
  }

  @Test func renderShowsATableAndASummary() {
    let backups = [
      full("s1", "2026-01-01T00:00:00Z", byteCount: 1_000),
      full("s2", "2026-01-02T03:04:05Z", isVerified: true, byteCount: 2_048),
      user("u1", 42, "2026-01-01T12:00:00Z", byteCount: 300),
    ]

    let plan = RetentionPolicy(keepLast: 1, keepDaily: 0, keepWeekly: 0).plan(backups, now: Self.now)

    #expect(
      plan.render() == """
        ID  TIME                  KIND  USER  ACTION  WHY
        s2  2026-01-02T03:04:05Z  full  -     keep    last 1, newest verified
        u1  2026-01-01T12:00:00Z  user  42    keep    per-user 1, only backup of user 42
        s1  2026-01-01T00:00:00Z  full  -     remove  not kept by any rule
        keep 2, remove 1 (1000 bytes)

        """)
  }

  @Test func planAndPolicyRoundTripThroughJSON() throws {
    let berlin = try #require(TimeZone(identifier: "Europe/Berlin"))
    let policy = RetentionPolicy(keepPerUser: 2, keepHourly: 1, keepYearly: 3, timeZone: berlin)
    let backups = [
      user("u1", 1, "2026-01-01T00:00:00Z", isVerified: true, byteCount: 10),
      full("f1", "2026-01-02T00:00:00Z", isPinned: true),
    ]
    let plan = policy.plan(backups, now: Self.now)

    let encoder = JSONEncoder()
    let decoder = JSONDecoder()
    #expect(try decoder.decode(RetentionPlan.self, from: encoder.encode(plan)) == plan)
    #expect(try decoder.decode(RetentionPolicy.self, from: encoder.encode(policy)) == policy)
  }
}

// MARK: Helpers

private func at(_ text: String) -> Date {
  try! Date(text, strategy: .iso8601)
}

private func full(
  _ id: String, _ time: String, isVerified: Bool = false, isPinned: Bool = false, byteCount: Int64 = 0
) -> RetentionItem {
  RetentionItem(
    id: id, kind: .full, createdAt: at(time), isVerified: isVerified, isPinned: isPinned, byteCount: byteCount)
}

private func user(
  _ id: String, _ userID: Int64, _ time: String, isVerified: Bool = false, isPinned: Bool = false, byteCount: Int64 = 0
) -> RetentionItem {
  RetentionItem(
    id: id, kind: .user, userID: userID, createdAt: at(time), isVerified: isVerified, isPinned: isPinned,
    byteCount: byteCount)
}

/// The plan as golden-table lines, newest first: action, id, then every reason.
private func table(_ plan: RetentionPlan) -> String {
  let rows = plan.keep.map { ("keep", $0) } + plan.remove.map { ("remove", $0) }
  return
    rows
    .sorted { left, right in
      left.1.item.createdAt != right.1.item.createdAt
        ? left.1.item.createdAt > right.1.item.createdAt : left.1.item.id > right.1.item.id
    }
    .map { action, decision in
      "\(action.padding(toLength: 6, withPad: " ", startingAt: 0)) \(decision.item.id)  "
        + decision.reasons.joined(separator: ", ")
    }
    .joined(separator: "\n")
}

import Foundation

/// How many backups to keep: the newest few per user, and restic-style calendar buckets for full
/// snapshots.
///
/// The policy only describes what to keep; `plan(_:now:)` turns it into a `RetentionPlan` without
/// touching any file, so `--dry-run` and the real run see the same decisions.
public struct RetentionPolicy: Sendable, Codable, Equatable {
  /// The newest backups kept for each user (`--keep-per-user`). 0 keeps only what the guards keep.
  public var keepPerUser: Int
  /// The newest full snapshots kept regardless of their time (`--keep-last`).
  public var keepLast: Int
  /// For the last N hours that have a full snapshot, the newest one of each (`--keep-hourly`).
  public var keepHourly: Int
  /// For the last N days that have a full snapshot, the newest one of each (`--keep-daily`).
  public var keepDaily: Int
  /// For the last N ISO weeks that have a full snapshot, the newest one of each (`--keep-weekly`).
  public var keepWeekly: Int
  /// For the last N months that have a full snapshot, the newest one of each (`--keep-monthly`).
  public var keepMonthly: Int
  /// For the last N years that have a full snapshot, the newest one of each (`--keep-yearly`).
  public var keepYearly: Int
  /// The time zone whose calendar draws the hour, day, week, month and year boundaries.
  public var timeZone: TimeZone

  /// UTC, the default calendar for buckets.
  public static let utc = TimeZone(identifier: "UTC")!

  /// Creates a policy; the defaults keep 5 backups per user and, for full snapshots, the last 5,
  /// 7 dailies and 4 weeklies, in UTC.
  public init(
    keepPerUser: Int = 5,
    keepLast: Int = 5,
    keepHourly: Int = 0,
    keepDaily: Int = 7,
    keepWeekly: Int = 4,
    keepMonthly: Int = 0,
    keepYearly: Int = 0,
    timeZone: TimeZone = RetentionPolicy.utc
  ) {
    self.keepPerUser = keepPerUser
    self.keepLast = keepLast
    self.keepHourly = keepHourly
    self.keepDaily = keepDaily
    self.keepWeekly = keepWeekly
    self.keepMonthly = keepMonthly
    self.keepYearly = keepYearly
    self.timeZone = timeZone
  }

  /// Whether every full-snapshot option is 0, in which case no full snapshot is removed.
  ///
  /// Like restic refusing an empty policy: an unset policy must not read as "remove everything".
  public var keepsAllFullSnapshots: Bool {
    [keepLast, keepHourly, keepDaily, keepWeekly, keepMonthly, keepYearly].allSatisfy { $0 <= 0 }
  }

  /// The options with their command-line names, in the order they are checked and reported.
  var namedCounts: [(option: String, value: Int)] {
    [
      ("--keep-per-user", keepPerUser), ("--keep-last", keepLast), ("--keep-hourly", keepHourly),
      ("--keep-daily", keepDaily), ("--keep-weekly", keepWeekly), ("--keep-monthly", keepMonthly),
      ("--keep-yearly", keepYearly),
    ]
  }

  /// Checks that every count is 0 or more.
  /// - Throws: `JobError.usage` naming the first negative option, e.g. "--keep-daily must be 0 or
  ///   more, got -1 (0 turns the rule off)".
  public func validate() throws {
    for (option, value) in namedCounts where value < 0 {
      throw JobError.usage("\(option) must be 0 or more, got \(value) (0 turns the rule off)")
    }
  }

  /// The retention rules as the CLI's `--help` shows them, including the tie-break rule with an
  /// example.
  public static let helpText = """
    RETENTION
    Per-user backups: the newest --keep-per-user N backups of each user are kept (default 5). \
    0 is allowed and keeps only what the guards below keep.

    Full snapshots follow restic's calendar buckets. --keep-last N keeps the N newest. \
    --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly and --keep-yearly N each keep, \
    for the last N hours/days/weeks/months/years that have one or more snapshots, only the \
    newest snapshot of that period. The options are ORed, and one snapshot can fill a bucket of \
    several options (the 7 dailies may include the newest weekly). Weeks are ISO weeks, Monday to \
    Sunday, so 2021-01-03 (a Sunday) is in week 2020-W53; years are calendar years. Periods are \
    computed in UTC unless a time zone is configured. Defaults: --keep-last 5 --keep-daily 7 \
    --keep-weekly 4 (the others 0). If every full-snapshot option is 0, no full snapshot is \
    removed ("no policy").

    Order and ties: backups are ordered newest first by creation time, then by id, the larger id \
    first, comparing ids byte by byte (UTF-8). Example: snap-a and snap-b, both created at \
    2026-01-02T03:00:00Z, with --keep-last 1: snap-b is kept ("last 1") and snap-a is removed. \
    Byte order is not numeric order: snap-9 sorts before snap-10.

    Guards, which no option overrides:
      - a pinned backup is never removed ("pinned");
      - the newest verified backup of each user, and the newest verified full snapshot, are \
    kept even when newer ones failed verification ("newest verified");
      - a user's only backup and the only full snapshot are kept ("only backup of user N", \
    "only full snapshot"); if no rule keeps any backup of a user, the newest one is kept \
    ("last backup of user N").

    Every kept backup lists each rule that keeps it, e.g. "last 1, daily 2025-11-24, pinned".
    """
}

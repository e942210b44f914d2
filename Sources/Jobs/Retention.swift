import Foundation
import Store

/// One backup as retention sees it: its identity, age, owner and the facts the guards need.
public struct RetentionItem: Sendable, Codable, Equatable {
  /// What a backup contains.
  public enum Kind: String, Sendable, Codable, Equatable {
    /// A snapshot of the whole deployment; retention uses the calendar-bucket options.
    case full
    /// One user's session; retention uses `keepPerUser`.
    case user
  }

  /// A unique id; the larger id wins a tie on `createdAt`.
  public var id: String
  public var kind: Kind
  /// The owner of a `.user` backup. Ignored for `.full`.
  public var userID: Int64?
  public var createdAt: Date
  /// Whether the backup passed verification; the newest verified one of each group is kept.
  public var isVerified: Bool
  /// Whether the backup is pinned; a pinned backup is never removed.
  public var isPinned: Bool
  public var byteCount: Int64

  /// Creates an item; unverified, unpinned and empty unless told otherwise.
  public init(
    id: String, kind: Kind, userID: Int64? = nil, createdAt: Date, isVerified: Bool = false, isPinned: Bool = false,
    byteCount: Int64 = 0
  ) {
    self.id = id
    self.kind = kind
    self.userID = userID
    self.createdAt = createdAt
    self.isVerified = isVerified
    self.isPinned = isPinned
    self.byteCount = byteCount
  }

  /// Whether `self` comes before `other` newest first: later `createdAt`, then the larger id
  /// compared byte by byte (UTF-8), so the order never depends on the input order.
  func isOrderedBefore(_ other: RetentionItem) -> Bool {
    if createdAt != other.createdAt { return createdAt > other.createdAt }
    return other.id.utf8.lexicographicallyPrecedes(id.utf8)
  }
}

/// What retention would do: every backup is either kept or removed, each with its reasons.
///
/// Both lists are ordered newest first (see `RetentionPolicy.helpText`). Executing the plan only
/// removes `remove`; nothing is decided after planning.
public struct RetentionPlan: Sendable, Codable, Equatable {
  /// One backup and why it is kept or removed.
  public struct Decision: Sendable, Codable, Equatable {
    public var item: RetentionItem
    /// Every rule that keeps the item (e.g. `["last 1", "daily 2025-11-24", "pinned"]`), or the
    /// single reason it is removed (e.g. `["beyond keep-per-user 5"]`).
    public var reasons: [String]

    public init(item: RetentionItem, reasons: [String]) {
      self.item = item
      self.reasons = reasons
    }
  }

  public var keep: [Decision]
  public var remove: [Decision]

  public init(keep: [Decision], remove: [Decision]) {
    self.keep = keep
    self.remove = remove
  }

  /// The bytes that executing the plan would free.
  public var removedByteCount: Int64 { remove.reduce(0) { $0 + $1.item.byteCount } }

  /// Renders the plan as a table for `--dry-run`: id, time (UTC), kind, user, action and why,
  /// newest first, then a one-line summary.
  public func render() -> String {
    var text = ""
    render { text += $0 }
    return text
  }

  /// `render()` in pieces of about a thousand lines, each passed to `write` as it is made, so a
  /// plan over tens of thousands of archives is never held as one text.
  public func render(_ write: (String) -> Void) {
    // Both lists are newest first already: merged as they are written, not sorted. The padded
    // columns are measured and padded as bytes (every padded cell is ASCII).
    func user(_ item: RetentionItem) -> String { item.kind == .user ? item.userID.map { "\($0)" } ?? "?" : "-" }
    func cells(_ action: String, _ item: RetentionItem) -> [String] {
      [item.id, Timestamp.iso8601(item.createdAt), item.kind.rawValue, user(item), action]
    }
    let header = ["ID", "TIME", "KIND", "USER", "ACTION", "WHY"]
    var widths = header.dropLast().map(\.utf8.count)
    for (action, decisions) in [("keep", keep), ("remove", remove)] {
      widths[4] = max(widths[4], decisions.isEmpty ? 0 : action.utf8.count)
      for decision in decisions {
        let item = decision.item
        widths[0] = max(widths[0], item.id.utf8.count)
        widths[1] = max(widths[1], Timestamp.iso8601(item.createdAt).utf8.count)
        widths[2] = max(widths[2], item.kind.rawValue.utf8.count)
        widths[3] = max(widths[3], user(item).utf8.count)
      }
    }
    var text = ""
    var lines = 0
    func append(_ row: [String], why: String) {
      for (column, cell) in row.enumerated() {
        text += cell
        text += String(repeating: " ", count: max(0, widths[column] - cell.utf8.count) + 2)
      }
      text += why
      text += "\n"
      lines += 1
      if lines % 1000 == 0 {
        write(text)
        text = ""
      }
    }
    append(Array(header.dropLast()), why: header[header.count - 1])
    var keepIndex = 0
    var removeIndex = 0
    while keepIndex < keep.count || removeIndex < remove.count {
      if removeIndex == remove.count
        || (keepIndex < keep.count && !remove[removeIndex].item.isOrderedBefore(keep[keepIndex].item))
      {
        append(cells("keep", keep[keepIndex].item), why: keep[keepIndex].reasons.joined(separator: ", "))
        keepIndex += 1
      } else {
        append(cells("remove", remove[removeIndex].item), why: remove[removeIndex].reasons.joined(separator: ", "))
        removeIndex += 1
      }
    }
    text += "keep \(keep.count), remove \(remove.count) (\(removedByteCount) bytes)\n"
    write(text)
  }
}

extension RetentionPolicy {
  /// Decides, without side effects, which backups to keep and which to remove, and why.
  ///
  /// Full snapshots form one group and each user's backups another. Within a group, backups are
  /// ordered newest first (`createdAt` descending, then `id` descending byte by byte), the count
  /// and calendar rules are applied, and then the guards: pinned, newest verified, only backup
  /// and last backup (see `helpText`). Counts below 0 act as 0; call `validate()` first to reject
  /// them. A `.user` item without a `userID` joins a group of such items ("user ?").
  ///
  /// Runs in O(n log n): one sort, then one pass per group.
  ///
  /// - Parameters:
  ///   - backups: The backups to judge, in any order.
  ///   - now: The injected clock. No current rule reads it (restic's buckets count periods that
  ///     have snapshots, not periods back from now), so the plan does not depend on it; it is kept
  ///     for a future keep-within rule.
  public func plan(_ backups: [RetentionItem], now: Date) -> RetentionPlan {
    // 1. Order newest first; the index only breaks ties between identical (createdAt, id) pairs.
    let order = backups.indices.sorted { left, right in
      if backups[left].isOrderedBefore(backups[right]) { return true }
      if backups[right].isOrderedBefore(backups[left]) { return false }
      return left < right
    }

    // 2. Split into groups, each keeping that order.
    var groups: [GroupKey: [Int]] = [:]
    for index in order {
      let item = backups[index]
      groups[item.kind == .full ? .full : .user(item.userID), default: []].append(index)
    }

    // 3. Apply the rules, then the guards, group by group.
    var reasons = [[String]](repeating: [], count: backups.count)
    var removalReasons = [String](repeating: "", count: backups.count)
    let buckets = BucketCalendar(timeZone: timeZone)
    for (key, members) in groups {
      switch key {
      case .full: applyFullRules(members, backups, buckets, &reasons, &removalReasons)
      case .user: applyPerUserRule(members, &reasons, &removalReasons)
      }
      applyGuards(key, members, backups, &reasons)
    }

    // 4. Collect the decisions in the global order. Equal lists of reasons share one array
    // (most decisions at fleet scale read "per-user 1", "per-user 2", ... or the one removal
    // reason): tens of thousands fewer allocations to make and free.
    var plan = RetentionPlan(keep: [], remove: [])
    let removeCount = reasons.lazy.filter(\.isEmpty).count
    plan.keep.reserveCapacity(backups.count - removeCount)
    plan.remove.reserveCapacity(removeCount)
    var shared: [[String]: [String]] = [:]
    func interned(_ list: [String]) -> [String] {
      if let known = shared[list] { return known }
      shared[list] = list
      return list
    }
    for index in order {
      if reasons[index].isEmpty {
        plan.remove.append(.init(item: backups[index], reasons: interned([removalReasons[index]])))
      } else {
        plan.keep.append(.init(item: backups[index], reasons: interned(reasons[index])))
      }
      reasons[index] = []
    }
    return plan
  }

  /// Full snapshots: keep-last and the calendar buckets, ORed; each bucket counts every snapshot
  /// that fills it, even when another option keeps the same snapshot.
  private func applyFullRules(
    _ members: [Int], _ backups: [RetentionItem], _ buckets: BucketCalendar, _ reasons: inout [[String]],
    _ removalReasons: inout [String]
  ) {
    guard !keepsAllFullSnapshots else {
      for index in members { reasons[index].append("no policy") }
      return
    }
    var remaining = BucketCalendar.Period.allCases.map { period -> Int in
      switch period {
      case .hourly: keepHourly
      case .daily: keepDaily
      case .weekly: keepWeekly
      case .monthly: keepMonthly
      case .yearly: keepYearly
      }
    }
    // Periods are visited newest first, so a bucket seen before was filled by a newer snapshot.
    var filled = [Set<String>](repeating: [], count: remaining.count)
    for (rank, index) in members.enumerated() {
      removalReasons[index] = "not kept by any rule"
      if rank < keepLast { reasons[index].append("last \(rank + 1)") }
      guard remaining.contains(where: { $0 > 0 }) else { continue }
      let keys = buckets.keys(for: backups[index].createdAt)
      for period in BucketCalendar.Period.allCases where remaining[period.rawValue] > 0 {
        let key = keys[period.rawValue]
        if filled[period.rawValue].insert(key).inserted {
          remaining[period.rawValue] -= 1
          reasons[index].append("\(period.name) \(key)")
        }
      }
    }
  }

  /// Per-user backups: the newest `keepPerUser` of the group.
  private func applyPerUserRule(_ members: [Int], _ reasons: inout [[String]], _ removalReasons: inout [String]) {
    let limit = max(keepPerUser, 0)
    // One string for every removal (tens of thousands at fleet scale), not one each.
    let beyond = "beyond keep-per-user \(limit)"
    for (rank, index) in members.enumerated() {
      if rank < limit {
        reasons[index].append("per-user \(rank + 1)")
      } else {
        removalReasons[index] = beyond
      }
    }
  }

  /// The guards that protect data whatever the options say.
  private func applyGuards(_ key: GroupKey, _ members: [Int], _ backups: [RetentionItem], _ reasons: inout [[String]]) {
    for index in members where backups[index].isPinned { reasons[index].append("pinned") }
    if let newestVerified = members.first(where: { backups[$0].isVerified }) {
      reasons[newestVerified].append("newest verified")
    }
    guard let newest = members.first else { return }
    if members.count == 1 {
      reasons[newest].append(key == .full ? "only full snapshot" : "only backup of \(key.label)")
    } else if members.allSatisfy({ reasons[$0].isEmpty }) {
      reasons[newest].append(key == .full ? "last full snapshot" : "last backup of \(key.label)")
    }
  }
}

/// A retention group: all full snapshots, or one user's backups.
private enum GroupKey: Hashable {
  case full
  case user(Int64?)

  var label: String {
    switch self {
    case .full: "full snapshots"
    case .user(let userID): "user \(userID.map { "\($0)" } ?? "?")"
    }
  }
}

/// The calendar that names a snapshot's hour, day, ISO week, month and year in one time zone.
private struct BucketCalendar {
  enum Period: Int, CaseIterable {
    case hourly, daily, weekly, monthly, yearly

    var name: String {
      switch self {
      case .hourly: "hourly"
      case .daily: "daily"
      case .weekly: "weekly"
      case .monthly: "monthly"
      case .yearly: "yearly"
      }
    }
  }

  private var calendar: Calendar

  init(timeZone: TimeZone) {
    // ISO 8601 weeks: Monday first, and week 1 is the week with the year's first Thursday.
    calendar = Calendar(identifier: .gregorian)
    calendar.timeZone = timeZone
    calendar.firstWeekday = 2
    calendar.minimumDaysInFirstWeek = 4
  }

  /// The bucket names of `date`, indexed by `Period.rawValue`: "2026-01-02T13", "2026-01-02",
  /// "2026-W01", "2026-01", "2026". The week's year is the ISO week-numbering year.
  func keys(for date: Date) -> [String] {
    let parts = calendar.dateComponents([.year, .month, .day, .hour, .yearForWeekOfYear, .weekOfYear], from: date)
    let month = "\(pad(parts.year!, 4))-\(pad(parts.month!, 2))"
    let day = "\(month)-\(pad(parts.day!, 2))"
    return [
      "\(day)T\(pad(parts.hour!, 2))", day, "\(pad(parts.yearForWeekOfYear!, 4))-W\(pad(parts.weekOfYear!, 2))",
      month, pad(parts.year!, 4),
    ]
  }

  private func pad(_ value: Int, _ width: Int) -> String {
    let digits = String(value)
    return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
  }
}

import Foundation

extension Timestamp {
  /// `2026-11-25T04:15:00Z`: UTC, seconds rounded down, as `Date.formatted(.iso8601)` writes it,
  /// by arithmetic (listing and planning format one time per archive: tens of thousands).
  public static func iso8601(_ date: Date) -> String {
    CivilTime.format(CivilTime.fields(date), pattern: CivilTime.statementPattern) ?? date.formatted(.iso8601)
  }
}

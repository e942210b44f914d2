import Foundation
import Store

/// Drills: once a drill has succeeded, the newest success is younger than `maxDrillAge`.
public enum DrillsCheck {
  public static func findings(_ context: CheckContext) -> [CheckFinding] {
    guard let newest = context.newestDrill else { return [] }
    let age = context.options.now.timeIntervalSince(newest)
    guard age > context.options.maxDrillAge else { return [] }
    return [
      CheckFinding(
        .drillAge, .warning, "the newest successful drill is \(CheckJob.duration(age)) old", remedy: "run: tgsess drill"
      )
    ]
  }
}

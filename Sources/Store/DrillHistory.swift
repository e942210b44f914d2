import Foundation

/// Evidence of disaster-recovery drills: one JSON file per drill under `backups/drills/`.
public enum DrillHistory {
  /// The directory of drill records.
  public static func directory(_ deployment: Deployment) -> String { deployment.backupsDirectory + "/drills" }

  /// Writes one drill record (`<stamp>.json`, atomically).
  /// - Throws: `StoreError.io`.
  public static func append(_ record: Data, at date: Date, _ deployment: Deployment) throws -> String {
    let path =
      directory(deployment) + "/" + Timestamp.compact(date) + "-" + String(UInt32.random(in: 0...UInt32.max), radix: 36)
      + ".json"
    try FileSystem.makeDirectory(directory(deployment))
    try FileSystem.writeAtomically(record, to: path, overwrite: false)
    return path
  }

  /// Every drill record, oldest first.
  public static func records(_ deployment: Deployment) -> [Data] {
    let directory = directory(deployment)
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return [] }
    return names.filter { $0.hasSuffix(".json") && !$0.hasPrefix(".") }.sorted().compactMap {
      try? FileSystem.read(directory + "/" + $0)
    }
  }

  /// When the newest successful full drill ran, if any. A partial drill (no identity on the
  /// host: nothing restored) does not count: it did not prove that the archives restore.
  public static func newestSuccess(_ deployment: Deployment) -> Date? {
    var newest: Date?
    for data in records(deployment) {
      guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
        object["ok"] as? Bool == true, object["scope"] as? String != "partial",
        let text = object["started_at"] as? String,
        let date = ISO8601DateFormatter().date(from: text)
      else { continue }
      if newest.map({ date > $0 }) ?? true { newest = date }
    }
    return newest
  }
}

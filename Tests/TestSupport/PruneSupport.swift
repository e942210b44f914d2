import Foundation
import Store

#if canImport(Glibc)
  import Glibc
#endif

/// Makes many archives quickly: copies of one real archive (and its record) under new ids with
/// older times, the way a long-running deployment accumulates them, each signed with the
/// deployment's key (`TestSigning.signCopy`).
public enum ArchiveCloner {
  /// `20261125T041500Z` in UTC.
  public static func compact(_ date: Date) -> String {
    let formatter = DateFormatter()
    formatter.locale = Locale(identifier: "en_US_POSIX")
    formatter.timeZone = TimeZone(identifier: "UTC")
    formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
    return formatter.string(from: date)
  }

  /// For each archive directory (`full/` and every `users/user_<id>/`), adds `copies` copies of its
  /// newest archive, the k-th one `k * step` seconds older, with ids `<time>-<what>-c<k>` (a tgsess
  /// id: `ArchiveName.describe` parses it).
  /// - Parameter full: whether to clone the full snapshots too, and how many.
  /// - Returns: the new ids.
  /// - Throws: `TestHelperError` when a directory holds no archive with a record.
  @discardableResult
  public static func clone(
    _ deployment: Deployment, copiesPerUser copies: Int, fullCopies: Int = 0, step: TimeInterval = 3600
  ) throws -> [String] {
    let backups = deployment.backupsDirectory
    var made: [String] = []
    var directories: [(String, Int)] = [(backups + "/full", fullCopies)]
    for name in try FileManager.default.contentsOfDirectory(atPath: backups + "/users") where name.hasPrefix("user_") {
      directories.append((backups + "/users/" + name, copies))
    }
    for (directory, count) in directories where count > 0 {
      let names = try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
      guard let archive = names.last(where: { $0.hasSuffix(ArchiveName.encryptedSuffix) && !$0.hasPrefix(".") })
      else { throw TestHelperError("no archive in \(directory)") }
      let id = String(archive.dropLast(ArchiveName.encryptedSuffix.count))
      let recordData = try Data(contentsOf: URL(fileURLWithPath: directory + "/" + id + ".json"))
      guard var record = ArchiveRecord.decode(recordData), let described = ArchiveName.describe(id: id)
      else { throw TestHelperError("bad record or id \(id)") }
      let what = id.split(separator: "-")[1]
      for k in 1...count {
        let date = described.createdAt.addingTimeInterval(-Double(k) * step)
        let newID = "\(compact(date))-\(what)-c\(String(format: "%05d", k))"
        try FileManager.default.copyItem(
          atPath: directory + "/" + archive, toPath: directory + "/" + newID + ArchiveName.encryptedSuffix)
        try TestSigning.signCopy(
          of: directory + "/" + archive, at: directory + "/" + newID + ArchiveName.encryptedSuffix,
          deployment: deployment)
        record.id = newID
        record.fileName = newID + ArchiveName.encryptedSuffix
        record.createdAt = date
        try record.encoded().write(to: URL(fileURLWithPath: directory + "/" + newID + ".json"))
        made.append(newID)
      }
    }
    return made
  }
}

/// A `tgsess` child that the test can kill at a moment of its choosing.
public final class TgsessChild: @unchecked Sendable {
  public let process = Process()

  /// Starts the built `tgsess` with `arguments` (TGSESS_* variables only as given).
  /// - Throws: `TestHelperError` when it cannot start.
  public init(_ arguments: [String], environment: [String: String] = [:]) throws {
    process.executableURL = URL(fileURLWithPath: TestEnvironment.productPath("tgsess"))
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("TGSESS_") }
      .merging(environment) { $1 }
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    do { try process.run() } catch { throw TestHelperError("cannot start tgsess: \(error)") }
  }

  /// SIGKILL, then wait.
  public func kill() {
    if process.isRunning { Glibc.kill(process.processIdentifier, SIGKILL) }
    process.waitUntilExit()
  }

  deinit { kill() }
}

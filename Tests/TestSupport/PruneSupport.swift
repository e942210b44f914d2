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
      guard var record = try JSONSerialization.jsonObject(with: recordData) as? [String: Any],
        let described = ArchiveName.describe(id: id)
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
        record["id"] = newID
        record["file_name"] = newID + ArchiveName.encryptedSuffix
        record["created_at"] = ISO8601DateFormatter().string(from: date)
        let data = try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys])
        try data.write(to: URL(fileURLWithPath: directory + "/" + newID + ".json"))
        made.append(newID)
      }
    }
    return made
  }
}

/// One archive as `tgsess list --json` shows it.
public struct ListedArchiveRow: Sendable, Hashable {
  public var id: String
  public var path: String
  public var kind: String
}

extension CheckFleet {
  /// The archives `tgsess list --json` shows.
  /// - Throws: `TestHelperError` when list fails.
  public func listedArchives() throws -> [ListedArchiveRow] {
    let result = try tgsess("list", ["--json"])
    guard result.status == 0, let array = try JSONSerialization.jsonObject(with: result.stdoutData) as? [[String: Any]]
    else { throw TestHelperError("tgsess list failed: \(result.stderr)") }
    return array.map {
      ListedArchiveRow(
        id: $0["id"] as? String ?? "", path: $0["path"] as? String ?? "", kind: $0["kind"] as? String ?? "")
    }
  }

  /// The archives (of `paths`) that stock `age -d` plus `tar --zstd -t` cannot read in full.
  /// - Throws: `TestHelperError` when bash cannot run.
  public func unreadableArchives(_ paths: [String]) throws -> [String] {
    guard !paths.isEmpty else { return [] }
    let script = """
      set -o pipefail
      identity=$1; shift
      for f in "$@"; do
        age -d -i "$identity" "$f" | tar --zstd -tf - > /dev/null 2>&1 || echo "$f"
      done
      """
    let result = try runProcess("/bin/bash", ["-c", script, "verify", deployment.ageIdentityPath] + paths)
    return result.stdout.split(separator: "\n").map(String.init)
  }

  /// Every file under `backups/`, relative, with its SHA-256 (directories as "dir").
  public func backupsTree() throws -> [String: String] {
    var tree: [String: String] = [:]
    let base = deployment.backupsDirectory
    let enumerator = FileManager.default.enumerator(atPath: base)
    while let relative = enumerator?.nextObject() as? String {
      let path = base + "/" + relative
      tree[relative] = FileSystem.isDirectory(path) ? "dir" : try FileSystem.sha256(ofFile: path)
    }
    return tree
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

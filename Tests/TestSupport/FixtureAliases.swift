import Foundation
import Jobs
import Store

// The four fleet fixtures that `TestFleet` replaced, kept as thin wrappers over it with their old
// initializers and methods while other branches still use the names. Deprecated: write new tests
// with `TestFleet`. Remove this file once no test names them.

/// Deprecated: `TestFleet()` (or `TestFleet(location: .temporaryDirectory)`).
/// An empty temporary deployment root.
public final class TestDeployment: @unchecked Sendable {
  public let fleet: TestFleet
  public var directory: TemporaryDirectory { fleet.directory }
  public var root: String { fleet.root }
  public var deployment: Deployment { fleet.deployment }
  public var databasePath: String { fleet.databasePath }

  public init(config: Config = Config()) throws {
    fleet = try TestFleet(location: .temporaryDirectory, label: "tgsess-deploy", config: config)
  }

  init(_ fleet: TestFleet) { self.fleet = fleet }

  /// - Throws: `TestHelperError` when Python fails.
  public func makeLegacyDatabase(users: [(Int64, String, Int, String)], backupsPerUser: Int = 2) throws {
    try fleet.makeLegacyDatabase(users: users, backupsPerUser: backupsPerUser)
  }

  /// - Throws: `TestHelperError` when sqlite3 fails.
  public func dump(table: String) throws -> String { try fleet.dump(table) }

  /// - Throws: `TestHelperError` when sqlite3 fails.
  public func query(_ sql: String) throws -> String { try fleet.sqlite(sql) }
}

/// Deprecated: `TestFleet(users: N, seed:, messageLogMiB:, entities:)`.
public final class FleetFixture: @unchecked Sendable {
  public let fleet: TestFleet
  public var directory: TemporaryDirectory { fleet.directory }
  public var root: String { fleet.root }
  public var deployment: Deployment { fleet.deployment }
  public var databasePath: String { fleet.databasePath }

  /// - Throws: `TestHelperError` when the generator is not built or fails.
  public init(users: Int, seed: UInt64 = 1, messageLogMiB: Int = 0, entities: Int = 20) throws {
    fleet = try TestFleet(users: users, seed: seed, entities: entities, messageLogMiB: messageLogMiB)
  }

  /// - Throws: `TestHelperError` when the binary is not built.
  @discardableResult
  public func tgsess(_ arguments: [String], environment: [String: String] = [:]) throws -> ProcessResult {
    try fleet.tgsess(arguments, environment: environment)
  }

  /// - Throws: `TestHelperError` with the command's stderr when it exits non-zero.
  @discardableResult
  public func tgsessOK(_ arguments: [String], environment: [String: String] = [:]) throws -> ProcessResult {
    try fleet.tgsessOK(arguments, environment: environment)
  }

  /// - Throws: `StoreError` when `sessions/` cannot be listed.
  public func sessionUserIDs() throws -> [Int64] { try fleet.sessionUserIDs() }
  public func sessionPath(_ userID: Int64) -> String { fleet.sessionPath(userID) }
  /// - Throws: `TestHelperError` when the fleet has fewer.
  public func telethonUserIDs(_ count: Int) throws -> [Int64] { try fleet.telethonUserIDs(count) }
  /// - Throws: `TestHelperError` when sqlite3 fails.
  @discardableResult
  public func sqlite(_ sql: String, path: String? = nil) throws -> String { try fleet.sqlite(sql, path: path) }
  /// - Throws: `TestHelperError` when sqlite3 fails.
  public func dump(_ table: String, path: String? = nil) throws -> String { try fleet.dump(table, path: path) }
  /// - Throws: `TestHelperError` when sqlite3 fails.
  public func dumpAll(path: String? = nil) throws -> [String: String] { try fleet.dumpAll(path: path) }
  /// - Throws: `TestHelperError` when something cannot be read.
  public func tree(_ base: String? = nil) throws -> [String: String] { try fleet.tree(base) }
}

/// Deprecated: `TestFleet(users: N, pyrogramShare: 0, entities: 10, backedUp: true)`.
public final class CheckFleet: @unchecked Sendable {
  public let fleet: TestFleet
  public let fixture: TestDeployment
  public var root: String { fleet.root }
  public var deployment: Deployment { fleet.deployment }
  public var userIDs: [Int64] { fleet.userIDs }

  /// - Throws: `TestHelperError` when a command fails.
  public init(users: Int = 4, pyrogramShare: Double = 0, legacy: Bool = false, backup: Bool = true) throws {
    fleet = try TestFleet(
      users: users, legacy: legacy, pyrogramShare: pyrogramShare, entities: 10, backedUp: backup,
      location: .temporaryDirectory, label: "tgsess-deploy")
    fixture = TestDeployment(fleet)
  }

  /// - Throws: `TestHelperError` when it fails.
  public func backup() throws { try fleet.backup() }
  public func sessionPath(_ userID: Int64) -> String { fleet.sessionPath(userID) }

  /// Runs `tgsess <verb> --root ROOT arguments`.
  /// - Throws: `TestHelperError` when the binary is missing.
  @discardableResult
  public func tgsess(_ verb: String, _ arguments: [String] = [], environment: [String: String] = [:]) throws
    -> ProcessResult
  {
    try runTgsess([verb, "--root", root] + arguments, environment: environment)
  }

  /// - Throws: `TestHelperError` when the output is not the JSON result.
  public func check(_ arguments: [String] = [], environment: [String: String] = [:]) throws -> CheckRun {
    try fleet.check(arguments, environment: environment)
  }

  /// - Throws: when `sessions/` cannot be read.
  public func sessionHashes() throws -> [String: String] { try fleet.sessionHashes() }
  /// - Throws: when `sessions/` cannot be listed.
  public func sessionDirectoryNames() throws -> Set<String> { try fleet.sessionDirectoryNames() }

  /// - Throws: `TestHelperError` when list fails.
  public func listedArchives() throws -> [ListedArchiveRow] {
    try fleet.listedArchives().map { ListedArchiveRow(id: $0.id, path: $0.path, kind: $0.kind.rawValue) }
  }

  /// - Throws: `TestHelperError` when bash cannot run.
  public func unreadableArchives(_ paths: [String]) throws -> [String] { try fleet.unreadableArchives(paths) }
  /// - Throws: when a file cannot be read.
  public func backupsTree() throws -> [String: String] { try fleet.backupsTree() }
}

/// Deprecated: `[ListedArchive]` from `TestFleet.listedArchives()`.
public struct ListedArchiveRow: Sendable, Hashable {
  public var id: String
  public var path: String
  public var kind: String
}

/// Deprecated: `TestFleet(users: N, legacy:, seed:, entities: 120, collectsSecrets: true)`.
public final class FleetDeployment: @unchecked Sendable {
  public let fleet: TestFleet
  public var root: String { fleet.root }
  public var backupsDirectory: String { fleet.backupsDirectory }
  public var databasePath: String { fleet.databasePath }
  public var identityPath: String { fleet.identityPath }
  public var sessionsDirectory: String { fleet.sessionsDirectory }

  /// - Throws: `TestHelperError` when the generator fails.
  public init(users: Int, legacy: Bool = false, seed: UInt64 = 1, parent: String? = nil) throws {
    fleet = try TestFleet(
      users: users, legacy: legacy, seed: seed, entities: 120, collectsSecrets: true,
      location: parent.map { .path($0 + "/fleet") } ?? .subdirectory("fleet"))
  }

  public func sessionPath(_ userID: Int64) -> String { fleet.sessionPath(userID) }
  /// - Throws: when `sessions/` cannot be listed.
  public func userIDs() throws -> [Int64] { try fleet.sessionUserIDs() }
  /// - Throws: `TestHelperError`.
  public func telethonUserIDs() throws -> [Int64] { try fleet.telethonUserIDs() }

  /// - Throws: `TestHelperError` when it is not built.
  @discardableResult
  public func tgsess(_ arguments: [String], environment: [String: String] = [:]) throws -> ProcessResult {
    try fleet.tgsess(arguments, environment: environment)
  }

  /// - Throws: `TestHelperError`.
  public func tgsessInBackground(_ arguments: [String], environment: [String: String] = [:]) throws
    -> BackgroundProcess
  {
    try fleet.tgsessInBackground(arguments, environment: environment)
  }

  public func keep(_ process: BackgroundProcess) { fleet.keep(process) }
  public func keep(_ label: String, _ stdout: String, _ stderr: String) { fleet.keep(label, stdout, stderr) }
  public var outputs: [String] { fleet.outputs }
  /// - Throws: `TestHelperError`.
  public func collectSecrets() throws { try fleet.collectSecrets() }
  public var secretCount: Int { fleet.secretCount }
  /// - Throws: `TestHelperError` when the secrets cannot be gathered.
  public func leakedSecrets() throws -> [String] { try fleet.leakedSecrets() }
}

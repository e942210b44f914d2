import Foundation

/// Where a reader takes archives from.
public enum ArchiveOrigin: Sendable, Equatable {
  /// The deployment's own `backups/`.
  case local
  /// A configured remote, from the remote alone (the disaster case: the host and its `backups/`
  /// are gone).
  case remote(String)
  /// A configured remote, under another deployment's prefix (a user handed over from that host).
  case remoteDeployment(remote: String, deployment: String)
}

/// The archives a restore, drill or list reads, wherever they are: the deployment's `backups/`,
/// or a configured remote seen through a local catalog of its records (see `RemoteCatalog`),
/// whose archives are downloaded as they are needed. The one way those jobs open their archives;
/// `close()` (or the deinitializer) removes whatever the catalog put on disk.
public final class ArchiveCatalog: @unchecked Sendable {
  /// The archives as a repository (for a remote: its local catalog).
  public let repository: ArchiveRepository
  /// The remote, when the archives are a remote's.
  public let remote: RcloneRemote?
  private let remoteCatalog: RemoteCatalog?
  private let cache: ScratchDirectory?
  /// Directories opening the catalog created (a new host's `backups/`), removed on close when empty.
  private let createdDirectories: [String]

  private init(
    repository: ArchiveRepository, remote: RcloneRemote?, remoteCatalog: RemoteCatalog?, cache: ScratchDirectory?,
    createdDirectories: [String]
  ) {
    self.repository = repository
    self.remote = remote
    self.remoteCatalog = remoteCatalog
    self.cache = cache
    self.createdDirectories = createdDirectories
  }

  /// Opens the archives of `deployment` at `origin`. A remote's catalog is built in a hidden
  /// directory under `backups/` (on the deployment's filesystem: restores stage there, and
  /// archives may be large); catalogs that killed runs left there are removed first.
  /// - Throws: `StoreError` naming the remote (unknown, unreachable) or the directory.
  public static func open(_ deployment: Deployment, origin: ArchiveOrigin) throws -> ArchiveCatalog {
    switch origin {
    case .local:
      return ArchiveCatalog(
        repository: ArchiveRepository(backupsDirectory: deployment.backupsDirectory), remote: nil,
        remoteCatalog: nil, cache: nil, createdDirectories: [])
    case .remote(let name), .remoteDeployment(let name, _):
      var remote = try deployment.remote(named: name)
      if case .remoteDeployment(_, let other) = origin {
        guard HostState.isPrintableName(other), other != ".", other != ".." else {
          throw StoreError.config(
            path: deployment.configPath ?? deployment.root + "/tgsess.toml",
            reason: "'\(other)' is not a deployment name (no '/', no control characters)")
        }
        remote.prefix = other
      }
      let created = try FileSystem.makeDirectoryTracking(deployment.backupsDirectory)
      var isOpen = false
      defer { if !isOpen { FileSystem.removeCreatedDirectories(created) } }
      removeStaleCaches(in: deployment.backupsDirectory)
      let cache = try ScratchDirectory(
        prefix: cachePrefix + Self.safeName(name) + "-\(getpid())", in: deployment.backupsDirectory)
      defer { if !isOpen { cache.remove() } }
      let catalog = try RemoteCatalog.build(remote: remote, in: cache.path)
      isOpen = true
      return ArchiveCatalog(
        repository: catalog.repository, remote: remote, remoteCatalog: catalog, cache: cache,
        createdDirectories: created)
    }
  }

  /// Makes the archives of `records` readable at `path(of:)` (a remote's are downloaded; local
  /// ones already are).
  /// - Throws: `StoreError` naming the remote when a download fails.
  public func fetch(_ records: [ArchiveRecord]) throws {
    try remoteCatalog?.fetch(records)
  }

  /// The local path of an archive (after `fetch`, for a remote's).
  public func path(of record: ArchiveRecord) -> String { repository.path(of: record) }

  /// Where the archive is, for people: its local path, or its object's path on the remote.
  public func location(of record: ArchiveRecord) -> String {
    let local = repository.path(of: record)
    guard let remote else { return local }
    return remote.root + "/" + local.dropFirst(repository.backupsDirectory.count + 1)
  }

  /// Removes the remote's catalog and the downloaded archives (nothing for local archives).
  public func close() {
    guard let cache else { return }
    cache.remove()
    FileSystem.removeCreatedDirectories(createdDirectories)
  }

  deinit { close() }

  static let cachePrefix = ".remote-cache-"

  /// A remote's name as part of a file name.
  static func safeName(_ name: String) -> String {
    String(name.map { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "." ? $0 : "_" })
  }

  /// Removes the catalogs of runs that were killed (`.remote-cache-<name>-<pid>-<random>` whose
  /// process is gone).
  static func removeStaleCaches(in directory: String) {
    for name in (try? FileSystem.directoryNames(directory)) ?? [] where name.hasPrefix(cachePrefix) {
      let parts = name.split(separator: "-")
      guard parts.count >= 3, let pid = Int32(parts[parts.count - 2]) else { continue }
      // EPERM: the process lives, under another user.
      if pid == getpid() || kill(pid, 0) == 0 || errno == EPERM { continue }
      FileSystem.removeTree(directory + "/" + name)
    }
  }
}

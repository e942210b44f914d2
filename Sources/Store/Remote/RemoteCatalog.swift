import Foundation

/// A local view of what a remote holds, built from the remote alone: its records and signatures
/// are downloaded and every archive is stood in for by a sparse placeholder of the right size, so
/// `ArchiveRepository` lists it like a local `backups/`. `fetch` then downloads the real bytes of
/// the archives a restore or drill needs. Jobs open it through `ArchiveCatalog`.
struct RemoteCatalog: Sendable {
  let remote: RcloneRemote
  /// The local directory laid out like `backups/`.
  let directory: String

  /// Builds the catalog of `remote` in `directory` (created; previous placeholders are replaced).
  /// - Throws: `StoreError` when the remote cannot be listed.
  static func build(remote: RcloneRemote, in directory: String) throws -> RemoteCatalog {
    try FileSystem.makeDirectory(directory)
    let files = try remote.list()
    let archives = files.filter { ArchiveName.parse(fileName: ($0.path as NSString).lastPathComponent) != nil }
    // Records and signatures come down with the listing: `list` checks every signature.
    let records = files.map(\.path).filter {
      ($0.hasSuffix(ArchiveName.recordSuffix) || $0.hasSuffix(ArchiveSignature.fileSuffix)) && !$0.hasPrefix("remotes/")
    }
    if !records.isEmpty {
      let fetched = try remote.fetch(records, into: directory)
      guard fetched.status == 0 else {
        throw StoreError.invalid(
          path: "remote \(remote.name) (\(remote.root))",
          reason: "could not download its records (rclone exit \(fetched.status)): \(fetched.errorText)",
          hint: "check the remote's configuration and reachability")
      }
    }
    for archive in archives {
      let path = directory + "/" + archive.path
      guard ArchivePath.isSafe(archive.path) else { continue }
      try FileSystem.makeDirectory(FileSystem.parentDirectory(of: path))
      if let size = try? FileSystem.size(of: path), size == archive.size, !isPlaceholder(path) { continue }
      unlink(path)
      let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, FileSystem.fileMode)
      guard fd >= 0 else { throw StoreError.io(path: path, operation: "create placeholder", errno: errno) }
      ftruncate(fd, off_t(archive.size))
      close(fd)
      _ = try? FileSystem.writeAtomically(Data(), to: path + ".placeholder")
    }
    return RemoteCatalog(remote: remote, directory: directory)
  }

  static func isPlaceholder(_ path: String) -> Bool { FileSystem.exists(path + ".placeholder") }

  /// The archives as a repository.
  var repository: ArchiveRepository { ArchiveRepository(backupsDirectory: directory) }

  /// Downloads the real bytes of `records` (over their placeholders).
  /// - Throws: `StoreError` naming the remote when the download fails.
  func fetch(_ records: [ArchiveRecord]) throws {
    let repository = self.repository
    let paths = records.map { String(repository.path(of: $0).dropFirst(directory.count + 1)) }
      .filter { Self.isPlaceholder(directory + "/" + $0) }
    guard !paths.isEmpty else { return }
    for path in paths { unlink(directory + "/" + path) }
    let result = try remote.fetch(paths, into: directory)
    guard result.status == 0 else {
      throw StoreError.invalid(
        path: "remote \(remote.name) (\(remote.root))",
        reason: "could not download \(paths.count) archive(s) (rclone exit \(result.status)): \(result.errorText)",
        hint: "check the remote's reachability and run again")
    }
    for path in paths { unlink(directory + "/" + path + ".placeholder") }
  }
}

import Foundation

extension ArchiveRepository {
  /// The marker that pins an archive: `<id>.pin` beside it.
  func pinPath(of record: ArchiveRecord) -> String {
    directory(kind: record.kind, userID: record.userID) + "/" + record.id + ".pin"
  }

  /// Whether an archive is pinned.
  public func isPinned(_ record: ArchiveRecord) -> Bool { FileSystem.exists(pinPath(of: record)) }

  /// Pins or unpins an archive; a pinned archive is never pruned.
  /// - Throws: `StoreError.io`.
  public func setPinned(_ record: ArchiveRecord, _ isPinned: Bool) throws {
    let path = pinPath(of: record)
    if isPinned {
      if !FileSystem.exists(path) {
        try FileSystem.writeAtomically(Data("pinned \(Timestamp.now())\n".utf8), to: path)
      }
    } else if FileSystem.exists(path) {
      guard unlink(path) == 0 else { throw StoreError.io(path: path, operation: "unpin", errno: errno) }
      try FileSystem.fsyncDirectory(of: path)
    }
  }

  /// Removes one archive: the archive file first (so `list` stops showing it at once), then its
  /// record, signature and pin; the directory is fsynced. A crash in between leaves orphans that
  /// `removeLeftovers` cleans up, never a listed archive without its data.
  /// - Throws: `StoreError.io`.
  public func remove(_ record: ArchiveRecord) throws {
    try remove(directory: directory(kind: record.kind, userID: record.userID), id: record.id, fileName: record.fileName)
  }

  /// Removes one listed archive, as `remove(_:)` does.
  /// - Throws: `StoreError.io`.
  public func remove(_ listing: ArchiveListing) throws {
    try remove(directory: directory(of: listing), id: listing.id, fileName: listing.fileName)
  }

  private func remove(directory: String, id: String, fileName: String) throws {
    let archive = directory + "/" + fileName
    if unlink(archive) != 0, errno != ENOENT {
      throw StoreError.io(path: archive, operation: "remove", errno: errno)
    }
    try CrashPoint.hit("prune.after-unlink")
    unlink(directory + "/" + id + ArchiveName.recordSuffix)
    unlink(directory + "/" + id + ArchiveSignature.fileSuffix)
    unlink(directory + "/" + id + ".pin")
    try FileSystem.fsyncDirectory(directory)
  }

  /// Removes the records, signatures and pins whose archive is gone, whatever their age: what a
  /// prune killed between its unlinks leaves. Only call it under the deployment lock, which every archive
  /// writer holds, so no record here can belong to an archive still being published.
  /// - Returns: the paths removed.
  /// - Throws: `StoreError.io` when a directory cannot be read.
  @discardableResult
  public func removeOrphanSidecars() throws -> [String] {
    var directories = [fullDirectory]
    for name in try Self.names(in: usersDirectory) where name.hasPrefix("user_") {
      directories.append(usersDirectory + "/" + name)
    }
    var removed: [String] = []
    for directory in directories {
      let names = Set(try Self.names(in: directory))
      let removedBefore = removed.count
      for name in names where !name.hasPrefix(".") {
        let id: String
        if name.hasSuffix(ArchiveName.recordSuffix) {
          id = String(name.dropLast(ArchiveName.recordSuffix.count))
        } else if name.hasSuffix(".pin") {
          id = String(name.dropLast(".pin".count))
        } else if name.hasSuffix(ArchiveSignature.fileSuffix) {
          id = String(name.dropLast(ArchiveSignature.fileSuffix.count))
        } else {
          continue
        }
        guard ArchiveName.describe(id: id) != nil else { continue }
        let hasArchive =
          names.contains(ArchiveName.fileName(id: id, isEncrypted: true))
          || names.contains(ArchiveName.fileName(id: id, isEncrypted: false))
        if !hasArchive, unlink(directory + "/" + name) == 0 { removed.append(directory + "/" + name) }
      }
      if removed.count > removedBefore { try FileSystem.fsyncDirectory(directory) }
    }
    return removed
  }
}

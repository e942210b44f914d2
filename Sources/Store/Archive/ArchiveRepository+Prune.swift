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
  /// record and pin; the directory is fsynced. A crash in between leaves an orphan record that
  /// `removeLeftovers` cleans up, never a listed archive without its data.
  /// - Throws: `StoreError.io`.
  public func remove(_ record: ArchiveRecord) throws {
    let directory = self.directory(kind: record.kind, userID: record.userID)
    let archive = directory + "/" + record.fileName
    if unlink(archive) != 0, errno != ENOENT {
      throw StoreError.io(path: archive, operation: "remove", errno: errno)
    }
    try CrashPoint.hit("prune.after-unlink")
    unlink(directory + "/" + record.id + ArchiveName.recordSuffix)
    unlink(pinPath(of: record))
    try FileSystem.fsyncDirectory(directory)
  }
}

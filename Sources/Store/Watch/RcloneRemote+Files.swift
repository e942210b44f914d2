import Foundation

extension RcloneRemote {
  /// Copies just `relativePaths` (files under `backupsDirectory`, e.g. one new archive and its
  /// record) to the remote, never replacing an object already there (`copy --immutable` refuses
  /// with exit 6), without listing the rest of the remote (`--no-traverse`): seconds, where a
  /// whole-tree push lists every archive.
  /// - Throws: `StoreError` when rclone is missing or the list file cannot be written.
  public func push(files relativePaths: [String], backupsDirectory: String) throws -> Run {
    try withFileList(relativePaths, backupsDirectory: backupsDirectory) { list in
      try run(["copy", "--immutable", "--checksum", "--no-traverse", "--files-from-raw", list, backupsDirectory, root])
    }
  }

  /// Compares just `relativePaths` with the remote by size and hash (`check --one-way`): exit 0
  /// when each is there and equal.
  /// - Throws: `StoreError` when rclone is missing or the list file cannot be written.
  public func verify(files relativePaths: [String], backupsDirectory: String) throws -> Run {
    try withFileList(relativePaths, backupsDirectory: backupsDirectory) { list in
      try run(["check", "--one-way", "--files-from-raw", list, backupsDirectory, root])
    }
  }

  /// Runs `body` with a private file listing `relativePaths`, one per line, removed afterwards.
  private func withFileList(
    _ relativePaths: [String], backupsDirectory: String, _ body: (String) throws -> Run
  ) throws -> Run {
    let directory = backupsDirectory + "/watch"
    try FileSystem.makeDirectory(directory)
    // A temporary's name, so that one left by a killed run is cleaned up with the others.
    let list = FileSystem.temporaryPath(for: directory + "/push-list")
    try FileSystem.writeAtomically(
      Data((relativePaths.joined(separator: "\n") + "\n").utf8), to: list, overwrite: false)
    defer { unlink(list) }
    return try body(list)
  }
}

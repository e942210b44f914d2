import Foundation

/// The mechanisms that change a deployment's live SQLite files (session files and the database):
/// installing restored files by rename, moving a broken file aside, and clearing the sidecars
/// (`-journal`, `-wal`, `-shm`) that belong to the file being replaced. One of each: restore and
/// recover both go through here.
public enum LiveFiles {
  /// The files SQLite keeps beside a database, which belong to that file's content alone.
  public static let sidecarSuffixes = ["-journal", "-wal", "-shm"]

  /// One file to install: a finished file (on any filesystem) and where it goes.
  public struct Installation: Sendable, Equatable {
    public var source: String
    public var destination: String

    public init(source: String, destination: String) {
      self.source = source
      self.destination = destination
    }
  }

  /// Installs finished files by rename. The sources are fsynced together first (on a few
  /// threads, so the filesystem can commit them in one journal transaction), then each
  /// destination's stale sidecars are removed (they would be applied to, and corrupt, the new
  /// file) and the source renamed over it (copied durably when it is on another filesystem),
  /// then each directory is fsynced once. After a crash every file is wholly old or wholly new,
  /// as with one fsync-rename-fsync per file. A session file and its JSON sidecar
  /// (`user_<id>.session` and `user_<id>.json` in one directory) are installed as a pair
  /// (`installPair`). Only call once the live-owner guard has passed.
  /// - Parameter afterEach: called after each file is in place (a crash point).
  /// - Throws: `StoreError.io` naming the file that could not be installed; the files before it
  ///   are installed, the ones after it untouched (a pair past its commit point is finished by
  ///   the next `finishInterruptedPairs`).
  public static func install(_ files: [Installation], afterEach: (String) throws -> Void = { _ in }) throws {
    _ = try Parallel.map(count: files.count, workers: 8) { index in try FileSystem.fsyncFile(files[index].source) }
    let pairs = pairs(in: files)
    let paired = Set(pairs.flatMap { [$0.session.destination, $0.sidecar.destination] })
    var directories: [String] = []
    for file in files where !paired.contains(file.destination) {
      removeSidecars(of: file.destination)
      try place(file.source, at: file.destination)
      let directory = FileSystem.parentDirectory(of: file.destination)
      if !directories.contains(directory) { directories.append(directory) }
      try afterEach(file.destination)
    }
    for directory in directories { try FileSystem.fsyncDirectory(directory.isEmpty ? "." : directory) }
    for pair in pairs {
      try installPair(session: pair.session, sidecar: pair.sidecar)
      try afterEach(pair.sidecar.destination)
      try afterEach(pair.session.destination)
    }
  }

  /// Renames `source` over `destination`, or copies it durably across filesystems.
  private static func place(_ source: String, at destination: String) throws {
    if rename(source, destination) != 0 {
      let code = errno
      guard code == EXDEV else {
        throw StoreError.io(path: destination, operation: "rename into place", errno: code)
      }
      try FileSystem.moveDurably(from: source, to: destination)
    }
  }

  /// The session files among `files` whose JSON sidecar is installed with them.
  static func pairs(in files: [Installation]) -> [(session: Installation, sidecar: Installation)] {
    var sidecars: [String: Installation] = [:]
    for file in files where file.destination.hasSuffix(SessionSidecar.suffix) {
      sidecars[String(file.destination.dropLast(SessionSidecar.suffix.count))] = file
    }
    return files.compactMap { file in
      guard file.destination.hasSuffix(".session"),
        let sidecar = sidecars[String(file.destination.dropLast(".session".count))]
      else { return nil }
      return (file, sidecar)
    }
  }

  /// What a pair's new files are called beside their destinations until the pair commits.
  public static let pendingSuffix = ".tgsess-new"
  /// What follows `.user_<id>` in the name of a pair's commit marker.
  public static let pairMarkerSuffix = ".pair-commit"

  /// Installs a session file and its JSON sidecar as one unit, so that no crash and no error
  /// leaves a new session file beside an old sidecar:
  /// 1. both new files are put beside their destinations as `<name>.tgsess-new`, synced;
  /// 2. the commit marker `.user_<id>.pair-commit` (naming both) is written atomically: from
  ///    here on the pair is installed, whatever happens;
  /// 3. the sidecar is renamed into place, then the session file, the directory synced, the
  ///    marker removed.
  /// A crash before 2 leaves the old pair (the next `finishInterruptedPairs` removes the new
  /// files); a crash after 2 leaves at worst the new sidecar beside the old session file, and
  /// `finishInterruptedPairs` completes the pair before tgsess touches either again.
  /// - Throws: `StoreError.io` naming the file that failed.
  public static func installPair(session: Installation, sidecar: Installation) throws {
    let directory = FileSystem.parentDirectory(of: session.destination)
    let names = [sidecar.destination, session.destination].map { ($0 as NSString).lastPathComponent }
    let marker = markerPath(session.destination)
    try place(session.source, at: session.destination + pendingSuffix)
    try place(sidecar.source, at: sidecar.destination + pendingSuffix)
    try FileSystem.fsyncDirectory(directory)
    try CrashPoint.hit("pair.before-commit")
    try FileSystem.writeAtomically(Data((names.joined(separator: "\n") + "\n").utf8), to: marker)
    try finishPair(directory: directory, names: names, marker: marker)
  }

  /// The commit marker of the pair whose session file is `sessionPath`.
  static func markerPath(_ sessionPath: String) -> String {
    let directory = FileSystem.parentDirectory(of: sessionPath)
    let stem = String((sessionPath as NSString).lastPathComponent.dropLast(".session".count))
    return directory + "/." + stem + pairMarkerSuffix
  }

  /// Step 3 of `installPair`: renames the pending files named in the marker (sidecar first) and
  /// removes the marker. Idempotent: a file already in place is skipped.
  private static func finishPair(directory: String, names: [String], marker: String) throws {
    for (index, name) in names.enumerated() {
      let destination = directory + "/" + name
      guard FileSystem.exists(destination + pendingSuffix) else { continue }
      if name.hasSuffix(".session") { removeSidecars(of: destination) }
      if rename(destination + pendingSuffix, destination) != 0 {
        throw StoreError.io(path: destination, operation: "rename into place (pair)", errno: errno)
      }
      if index == 0 { try CrashPoint.hit("pair.between-files") }
    }
    try FileSystem.fsyncDirectory(directory)
    if unlink(marker) != 0, errno != ENOENT {
      throw StoreError.io(path: marker, operation: "remove pair marker", errno: errno)
    }
    try FileSystem.fsyncDirectory(directory)
  }

  /// The session files in `directory` whose pair installation a crash interrupted (a commit
  /// marker or a pending new file is there), without changing anything.
  /// - Throws: `StoreError.io` when the directory cannot be listed.
  public static func interruptedPairs(in directory: String) throws -> [String] {
    var sessions: Set<String> = []
    for name in try FileSystem.directoryNames(directory) {
      if name.hasPrefix("."), name.hasSuffix(pairMarkerSuffix) {
        sessions.insert(directory + "/" + name.dropFirst().dropLast(pairMarkerSuffix.count) + ".session")
      } else if name.hasSuffix(pendingSuffix) {
        let file = String(name.dropLast(pendingSuffix.count))
        let stem =
          file.hasSuffix(SessionSidecar.suffix)
          ? file.dropLast(SessionSidecar.suffix.count) : file.dropLast(".session".count)
        sessions.insert(directory + "/" + stem + ".session")
      }
    }
    return sessions.sorted()
  }

  /// Completes the pair installations a crash interrupted in `directory`: a committed pair
  /// (its marker is there) is rolled forward, new files of a pair that never committed are
  /// removed. Call under the deployment lock before reading or replacing session files.
  /// - Returns: the session files whose pair was completed or rolled back.
  /// - Throws: `StoreError.io` naming the file that could not be renamed or removed.
  @discardableResult
  public static func finishInterruptedPairs(in directory: String) throws -> [String] {
    let names = try FileSystem.directoryNames(directory)
    guard names.contains(where: { $0.hasSuffix(pendingSuffix) || $0.hasSuffix(pairMarkerSuffix) }) else { return [] }
    var handled: [String] = []
    for name in names where name.hasPrefix(".") && name.hasSuffix(pairMarkerSuffix) {
      let marker = directory + "/" + name
      let listed = String(decoding: try FileSystem.read(marker), as: UTF8.self).split(separator: "\n").map(String.init)
      // Only the two plain names a marker can hold: a marker never sends a rename elsewhere.
      guard listed.count == 2, listed.allSatisfy({ !$0.contains("/") && !$0.hasPrefix(".") }),
        listed[0].hasSuffix(SessionSidecar.suffix), listed[1].hasSuffix(".session")
      else {
        throw StoreError.invalid(
          path: marker, reason: "pair marker does not name a sidecar and a session file",
          hint: "move it away; the pair it names may need tgsess restore --user ID")
      }
      try finishPair(directory: directory, names: listed, marker: marker)
      handled.append(directory + "/" + listed[1])
    }
    for name in try FileSystem.directoryNames(directory) where name.hasSuffix(pendingSuffix) {
      // Its pair never committed: the old files are in place and stay.
      if unlink(directory + "/" + name) != 0, errno != ENOENT {
        throw StoreError.io(path: directory + "/" + name, operation: "remove uncommitted pair file", errno: errno)
      }
      handled.append(directory + "/" + String(name.dropLast(pendingSuffix.count)))
    }
    try FileSystem.fsyncDirectory(directory)
    return handled
  }

  /// `finishInterruptedPairs(in:)` for the pair of one session file: a run for one user reads
  /// and replaces that user's files alone, and looking for its marker and pending files costs
  /// three stats where listing every session file of a 10,000-user fleet cost milliseconds.
  /// Anything found is handled by `finishInterruptedPairs(in:)` over the whole directory.
  /// - Returns: the session files whose pair was completed or rolled back.
  /// - Throws: `StoreError.io` naming the file that could not be renamed or removed.
  @discardableResult
  public static func finishInterruptedPair(sessionPath: String) throws -> [String] {
    let stem = String(sessionPath.dropLast(".session".count))
    let traces = [markerPath(sessionPath), sessionPath + pendingSuffix, stem + SessionSidecar.suffix + pendingSuffix]
    guard traces.contains(where: FileSystem.exists) else { return [] }
    return try finishInterruptedPairs(in: FileSystem.parentDirectory(of: sessionPath))
  }

  /// Moves the file at `path` and its sidecars aside to `<path>.<label>-<time>` (with
  /// `-2`, `-3`, … when a copy moved aside within the same second is there), never replacing
  /// anything and never deleting. The moves are renames in the same directory.
  /// - Returns: the new path of the file, or nil when there was nothing at `path`.
  /// - Throws: `StoreError.io` naming the file that could not be moved.
  @discardableResult
  public static func moveAside(_ path: String, label: String = "broken", at date: Date = Date()) throws -> String? {
    let present = ([""] + sidecarSuffixes).filter { FileSystem.exists(path + $0) }
    guard !present.isEmpty else { return nil }
    // A name no earlier copy has: rename(2) would silently replace one moved aside within the
    // same second (a second recover of the same user).
    let stamp = path + "." + label + "-" + Timestamp.compact(date)
    var aside = stamp
    var attempt = 1
    while ([""] + sidecarSuffixes).contains(where: { FileSystem.exists(aside + $0) }) {
      attempt += 1
      aside = stamp + "-\(attempt)"
    }
    for suffix in present where rename(path + suffix, aside + suffix) != 0 {
      throw StoreError.io(path: path + suffix, operation: "move aside", errno: errno)
    }
    try FileSystem.fsyncDirectory(of: path)
    return aside
  }

  /// Removes the sidecars of `file`, which would otherwise be applied to (and corrupt) a file
  /// put in its place. Only call once the live-owner guard has passed.
  /// - Returns: the sidecars removed.
  @discardableResult
  public static func removeSidecars(of file: String) -> [String] {
    var removed: [String] = []
    for suffix in sidecarSuffixes where FileSystem.exists(file + suffix) {
      if unlink(file + suffix) == 0 { removed.append(file + suffix) }
    }
    return removed
  }
}

import Foundation
import Store
import TestSupport
import Testing

/// The live-file mechanisms restore and recover share: install by rename (with the copy across
/// filesystems), move aside, stale sidecars; and the scratch directories jobs work in.
@Suite struct LiveFilesTests {
  static func write(_ text: String, _ path: String) throws {
    try FileSystem.writeAtomically(Data(text.utf8), to: path)
  }

  static func text(_ path: String) throws -> String { String(decoding: try FileSystem.read(path), as: UTF8.self) }

  @Test func installReplacesEachFileAndClearsItsStaleSidecars() throws {
    let dir = try TemporaryDirectory()
    try FileSystem.makeDirectory(dir.file("staging"))
    for name in ["a", "b"] {
      try Self.write("old \(name)", dir.file(name))
      try Self.write("new \(name)", dir.file("staging/\(name)"))
    }
    try Self.write("journal of the old a", dir.file("a-journal"))
    try Self.write("wal of the old a", dir.file("a-wal"))
    var installed: [String] = []

    try LiveFiles.install(
      ["a", "b"].map { LiveFiles.Installation(source: dir.file("staging/\($0)"), destination: dir.file($0)) }
    ) { installed.append($0) }

    #expect(installed == [dir.file("a"), dir.file("b")])
    #expect(try Self.text(dir.file("a")) == "new a")
    #expect(try Self.text(dir.file("b")) == "new b")
    #expect(try FileSystem.directoryNames(dir.path).sorted() == ["a", "b", "staging"])
    #expect(try FileSystem.directoryNames(dir.file("staging")).isEmpty)
  }

  /// A source on another filesystem (rename fails with EXDEV) is copied durably instead.
  @Test func installCopiesAcrossFilesystems() throws {
    let dir = try TemporaryDirectory()
    let other = try ScratchDirectory(prefix: "tgsess-test-shm", in: "/dev/shm")
    var here = stat()
    var there = stat()
    #expect(stat(dir.path, &here) == 0 && stat(other.path, &there) == 0)
    try #require(here.st_dev != there.st_dev, "/dev/shm is not another filesystem here; the test cannot cross one")
    try Self.write("old", dir.file("f"))
    try Self.write("new", other.file("f"))

    try LiveFiles.install([LiveFiles.Installation(source: other.file("f"), destination: dir.file("f"))])

    #expect(try Self.text(dir.file("f")) == "new")
    #expect(try FileSystem.mode(of: dir.file("f")) == 0o600)
    #expect(try FileSystem.directoryNames(dir.path) == ["f"])
  }

  @Test func moveAsideKeepsEveryEarlierCopyAndTheSidecars() throws {
    let dir = try TemporaryDirectory()
    let file = dir.file("user_1.session")
    let moment = Date(timeIntervalSince1970: 1_800_000_000)
    try Self.write("first", file)
    try Self.write("first journal", file + "-journal")

    let first = try LiveFiles.moveAside(file, label: "broken", at: moment)
    try Self.write("second", file)
    let second = try LiveFiles.moveAside(file, label: "broken", at: moment)
    let nothing = try LiveFiles.moveAside(file, label: "broken", at: moment)

    let stamp = file + ".broken-" + Timestamp.compact(moment)
    #expect(first == stamp)
    #expect(second == stamp + "-2")
    #expect(nothing == nil)
    #expect(try Self.text(stamp) == "first")
    #expect(try Self.text(stamp + "-journal") == "first journal")
    #expect(try Self.text(stamp + "-2") == "second")
    #expect(!FileSystem.exists(file) && !FileSystem.exists(file + "-journal"))
  }

  @Test func scratchDirectoriesArePrivateAndGoUnlessKept() throws {
    let dir = try TemporaryDirectory()
    let old = umask(0)
    defer { umask(old) }
    var removedPath = ""
    do {
      let scratch = try ScratchDirectory(prefix: "work", in: dir.file("parent"))
      #expect(try FileSystem.mode(of: scratch.path) == 0o700)
      #expect(scratch.path.hasPrefix(dir.file("parent/work-")))
      try Self.write("x", scratch.file("inner"))
      removedPath = scratch.path
    }
    #expect(!FileSystem.exists(removedPath))
    let kept = try ScratchDirectory(prefix: "kept", in: dir.path)
    kept.keep()
    kept.remove()
    #expect(FileSystem.isDirectory(kept.path))
  }

  @Test func createdDirectoriesAreRemovedOnlyWhileEmpty() throws {
    let dir = try TemporaryDirectory()
    let created = try FileSystem.makeDirectoryTracking(dir.file("a/b/c"))
    #expect(created == [dir.file("a"), dir.file("a/b"), dir.file("a/b/c")])
    try Self.write("someone else's", dir.file("a/other"))
    FileSystem.removeCreatedDirectories(created)
    #expect(!FileSystem.exists(dir.file("a/b")))
    #expect(try Self.text(dir.file("a/other")) == "someone else's")
    #expect(try FileSystem.makeDirectoryTracking(dir.file("a")).isEmpty)
  }
}

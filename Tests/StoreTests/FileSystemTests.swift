import Foundation
import Store
import TestSupport
import Testing

@Suite struct FileSystemTests {
  @Test func createsPrivateFilesAndDirectoriesWhateverTheUmask() throws {
    let dir = try TemporaryDirectory()
    let old = umask(0)
    defer { umask(old) }
    try FileSystem.makeDirectory(dir.file("a/b/c"))
    #expect(try FileSystem.mode(of: dir.file("a/b/c")) == 0o700)
    #expect(try FileSystem.mode(of: dir.file("a")) == 0o700)
    try FileSystem.writeAtomically(Data("x".utf8), to: dir.file("a/f"))
    #expect(try FileSystem.mode(of: dir.file("a/f")) == 0o600)
  }

  @Test func atomicWriteReplacesAndLeavesNoTemporary() throws {
    let dir = try TemporaryDirectory()
    try FileSystem.writeAtomically(Data("old".utf8), to: dir.file("f"))
    try FileSystem.writeAtomically(Data("new".utf8), to: dir.file("f"))
    #expect(String(decoding: try FileSystem.read(dir.file("f")), as: UTF8.self) == "new")
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["f"])
  }

  @Test func noClobberRefusesAndKeepsTheOldFile() throws {
    let dir = try TemporaryDirectory()
    try FileSystem.writeAtomically(Data("key".utf8), to: dir.file("k"), overwrite: false)
    #expect(throws: StoreError.self) {
      try FileSystem.writeAtomically(Data("other".utf8), to: dir.file("k"), overwrite: false)
    }
    #expect(String(decoding: try FileSystem.read(dir.file("k")), as: UTF8.self) == "key")
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["k"])
  }

  @Test func failedBodyRemovesTheTemporaryAndKeepsTheOldFile() throws {
    let dir = try TemporaryDirectory()
    try FileSystem.writeAtomically(Data("old".utf8), to: dir.file("f"))
    struct Boom: Error {}
    #expect(throws: Boom.self) {
      try FileSystem.writeAtomically(to: dir.file("f")) { _, _ in throw Boom() }
    }
    #expect(String(decoding: try FileSystem.read(dir.file("f")), as: UTF8.self) == "old")
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["f"])
  }

  @Test func staleTemporariesOfDeadProcessesAreRemoved() throws {
    let dir = try TemporaryDirectory()
    // pid 2^22+1 is above Linux's pid_max default, so it cannot be alive.
    let stale = dir.file(".x.tgsess-tmp-4194305-abc")
    let live = dir.file(".y.tgsess-tmp-\(getpid())-abc")
    try Data().write(to: URL(fileURLWithPath: stale))
    try Data().write(to: URL(fileURLWithPath: live))
    let removed = FileSystem.removeStaleTemporaries(in: dir.path)
    #expect(removed == [stale])
    #expect(FileSystem.exists(live))
  }

  @Test func privateKeyCheckNamesTheChmod() throws {
    let dir = try TemporaryDirectory()
    try FileSystem.writeAtomically(Data("k".utf8), to: dir.file("key"), mode: 0o644)
    #expect {
      try FileSystem.requirePrivate(dir.file("key"))
    } throws: { error in
      (error as? StoreError)?.errorDescription
        == "\(dir.file("key")): mode 644 lets group or others read a secret; run: chmod 600 \(dir.file("key"))"
    }
  }

  @Test func diskFullIsReportedWithThePathAndTheFix() {
    let error = StoreError.io(path: "/b/x", operation: "write", errno: ENOSPC)
    #expect(error.errorDescription == "/b/x: write failed: no space left on device; free space there and run again")
  }
}

/// `FileSystem.parentDirectory(of:)` replaces `NSString.deletingLastPathComponent`, which traps on
/// a one-character relative path in Swift 6.3's Foundation (the archive-reader fuzz target found
/// it through a manifest entry "i/lorted/a"; that input is replayed by FuzzRegressionTests).
@Suite struct ParentDirectoryTests {
  @Test(arguments: [
    ("a/b", "a"), ("/a/b", "/a"), ("/a", "/"), ("/", "/"), ("a", ""), ("i", ""), ("x/", ""), ("ab", ""),
    ("i/lorted/a", "i/lorted"), ("i/lorted", "i"), ("a//b", "a"), ("/tmp/x/i", "/tmp/x"), ("a/b/", "a"),
    ("sessions/user_1.session", "sessions"), ("dé/é", "dé"), ("", ""),
  ])
  func parentOf(_ path: String, _ parent: String) {
    #expect(FileSystem.parentDirectory(of: path) == parent)
  }
}

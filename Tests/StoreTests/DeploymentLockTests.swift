import Foundation
import Store
import TestSupport
import Testing

@Suite struct DeploymentLockTests {
  @Test func secondHolderIsRefusedWithTheHoldersPid() throws {
    let dir = try TemporaryDirectory()
    let path = dir.file(".tgsess.lock")
    let lock = try DeploymentLock.acquire(path: path, command: "backup")
    #expect(DeploymentLock.holder(path: path)?.hasPrefix("pid=\(getpid()) command=backup") == true)
    // A child process (flock locks are per open file description, so a second process is the
    // honest test) must be refused.
    let result = try runProcess("/usr/bin/flock", ["-n", "-E", "75", path, "true"])
    #expect(result.status == 75)
    lock.release()
    #expect(DeploymentLock.holder(path: path) == nil)
    let again = try runProcess("/usr/bin/flock", ["-n", "-E", "75", path, "true"])
    #expect(again.status == 0)
  }

  @Test func waitingGivesUpWithALockedError() throws {
    let dir = try TemporaryDirectory()
    let path = dir.file(".tgsess.lock")
    // Hold the lock from another process for a while.
    let holder = Process()
    holder.executableURL = URL(fileURLWithPath: "/usr/bin/flock")
    holder.arguments = [path, "sleep", "3"]
    try holder.run()
    defer { holder.terminate() }
    var held = false
    for _ in 0..<100 where !held {
      held = DeploymentLock.holder(path: path) != nil
      if !held { usleep(20_000) }
    }
    #expect(held)
    #expect {
      try DeploymentLock.acquire(path: path, command: "prune", wait: 0.3)
    } throws: { error in
      guard case .locked(let lockPath, _) = error as? StoreError else { return false }
      return lockPath == path
    }
  }
}

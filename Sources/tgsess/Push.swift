import ArgumentParser
import Foundation
import Jobs

struct Push: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Copy archives to the configured remotes (rclone) and verify them there.",
    discussion: """
      `tgsess backup` pushes by itself after each proven backup; `push` catches up after a remote \
      was unreachable. Archives are already age-encrypted, so a remote never sees plaintext. \
      Nothing on a remote is ever replaced: a differing remote copy is reported, not overwritten. \
      Each remote holds this deployment under its own prefix (deployment_name, else the host name).

        $ tgsess push
        $ tgsess push --remote s3 --json

      EXIT STATUS: 0 ok · 1 failed · 3 partial (a remote failed after 3 tries) · 64 usage · 75 lock held
      """)

  @OptionGroup var global: GlobalOptions
  @Option(help: "Only this remote.") var remote: String?
  @Option(help: "Seconds to wait for the deployment lock.") var lockWait = 0
  @Option(help: "Write a node_exporter textfile with the offsite metrics.") var prometheus: String?

  func run() throws {
    let (deployment, logger) = try global.setUp()
    let result = try PushJob.catchUp(deployment, remote: remote, lockWait: TimeInterval(lockWait), logger: logger)
    if let prometheus { try result.metrics.write(to: prometheus) }
    if global.json {
      try Output.json(result)
    } else {
      for remote in result.remotes {
        Output.line(
          "\(remote.remote) (\(remote.root)): \(remote.ok ? "ok" : "FAILED"), \(remote.archivesThere) archive(s) there, \(remote.archivesMissing) missing, \(remote.attempts) attempt(s)"
        )
        if let error = remote.error { Output.line("  \(error)") }
      }
    }
    if result.isPartial { throw ExitCode(ExitStatus.partial) }
  }
}

import ArgumentParser
import Foundation
import Jobs

struct Push: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "push",
    abstract: "Copy archives to the configured remotes (rclone) and verify them there.",
    discussion: """
      `tgsess backup` pushes by itself after each proven backup; `push` catches up after a remote \
      was unreachable. Archives are already age-encrypted, so a remote never sees plaintext. \
      Nothing on a remote is ever replaced: a differing remote copy is reported, not overwritten. \
      Each remote holds this deployment under its own prefix (deployment_name, else the host name).

      Only archives signed by this deployment's key are pushed, each with its signature file \
      and record, and each archive file is hashed against its signature before its first copy. \
      An archive that fails (someone wrote to backups/, or the disk damaged it) is never pushed: \
      push names it and ends partial until it is investigated and removed by hand. Unsigned \
      archives (made before archives were signed) are counted and not pushed; vouch for this \
      host's own with `tgsess keys sign-existing`.

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
        if remote.unsignedSkipped > 0 {
          Output.line(
            "  \(remote.unsignedSkipped) unsigned archive(s) not pushed; if this host made them, run: tgsess keys sign-existing"
          )
        }
      }
    }
    if result.isPartial { throw ExitCode(ExitStatus.partial) }
  }
}

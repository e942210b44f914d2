import ArgumentParser
import Foundation
import Jobs

struct Handover: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "handover",
    abstract: "Hand one user's session over to another host without using its key from two places.",
    discussion: """
      Takes a final per-user backup ("Before hand-over"), proves it and pushes it to every remote; \
      then moves the session files aside into sessions/handed-over/ and marks the user handed over, \
      so neither recover nor tgsess-bot brings the session back here; then writes a heartbeat \
      without the user. Nothing is moved unless the backup is proven and on every remote. It \
      refuses while a process holds the session file; the bot must stop using that session first \
      (the one manual step). On the new host:

        $ tgsess handover --user 42
        $ tgsess restore --from-remote s3 --user 42 --from-deployment old-host    # on the new host

      EXIT STATUS: 0 ok · 1 failed or refused (nothing moved) · 64 usage · 75 lock held
      """)

  @OptionGroup var global: GlobalOptions
  @Option(help: "The user to hand over.") var user: Int64
  @Option(help: "Seconds to wait for the deployment lock.") var lockWait = 0
  @Flag(help: "Hand over although a process holds the session file (it keeps using the key: risky).")
  var force = false

  func run() throws {
    let (deployment, logger) = try global.setUp()
    let result = try HandoverJob.run(
      deployment,
      options: HandoverOptions(
        config: deployment.config, userID: user, lockWait: TimeInterval(lockWait), isForced: force),
      logger: logger)
    if global.json {
      try Output.json(result)
      return
    }
    if result.wasHandedOver {
      Output.line("user \(user) was already handed over; nothing to do")
      return
    }
    Output.line(
      "handed over user \(user): backup \(result.archiveID ?? "-") pushed to \(result.remotes.joined(separator: ", "))")
    for path in result.movedTo { Output.line("  moved aside: \(path)") }
    Output.line("  row marked handed_over: \(result.isRowMarked ? "yes" : "no row")")
    for warning in result.warnings { Output.line("warning: \(warning)") }
    Output.line(
      "next, on the new host: tgsess restore --from-remote \(result.remotes.first ?? "REMOTE") --user \(user) --from-deployment \(result.deploymentName)"
    )
  }
}

import ArgumentParser
import Jobs

struct List: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "List archives, newest first.",
    discussion: """
      Works from the archives alone (for example on a backups/ folder copied to a new machine).

        $ tgsess list
        $ tgsess list --user 42
        $ tgsess list --kind full --json

      EXIT STATUS: 0 ok · 1 failed · 64 usage
      """)

  @OptionGroup var global: GlobalOptions
  @Option(help: "Only this user's archives (and the full snapshots holding them).") var user: Int64?
  @Option(help: "full or user.") var kind: String?

  func validate() throws {
    if let kind, kind != "full", kind != "user" {
      throw ValidationError("--kind must be full or user. Try: --kind full")
    }
  }

  func run() throws {
    let (deployment, _) = try global.setUp()
    let archives = try ListJob.run(deployment, kind: kind, userID: user)
    if global.json { return try Output.json(archives) }
    Output.line(
      "ID                                TIME                  KIND  USER        REASON                    SIZE       ENTRIES  VERIFIED"
    )
    for archive in archives {
      Output.line(
        [
          archive.id.padding(toLength: 34, withPad: " ", startingAt: 0),
          Format.time(archive.createdAt).padding(toLength: 22, withPad: " ", startingAt: 0),
          archive.kind.padding(toLength: 6, withPad: " ", startingAt: 0),
          (archive.userID.map(String.init) ?? "-").padding(toLength: 12, withPad: " ", startingAt: 0),
          String(archive.reason.prefix(24)).padding(toLength: 26, withPad: " ", startingAt: 0),
          Format.bytes(archive.byteCount).padding(toLength: 11, withPad: " ", startingAt: 0),
          String(archive.entryCount).padding(toLength: 9, withPad: " ", startingAt: 0),
          archive.verification,
        ].joined())
    }
  }
}

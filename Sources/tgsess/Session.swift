import ArgumentParser
import Foundation
import Jobs
import Store

struct Session: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "session",
    abstract: "Inspect and convert Telethon and Pyrogram session files and strings.",
    subcommands: [Inspect.self, Convert.self, ExportString.self])

  struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "inspect",
      abstract: "Show a session file's format, dc, address and auth-key fingerprint (read-only).",
      discussion: """
        Opens the file read-only through SQLite: unlike Telethon, it never migrates or rewrites it.

          $ tgsess session inspect sessions/user_42.session
          $ tgsess session inspect --json sessions/user_42.session

        EXIT STATUS: 0 valid · 1 invalid (the reason is printed)
        """)

    @Argument(help: "The session file.") var file: String
    @Flag(help: "Print the result as JSON.") var json = false

    func run() throws {
      let report: SessionReport
      do { report = try SessionJob.inspect(path: file) } catch let error as JobError {
        throw Self.worded(error, path: file)
      }
      if json { return try Output.json(report) }
      Session.render(report)
    }

    /// A session problem with its remedy worded for this file: with the user's id when the file
    /// is named `user_<id>.session`, else without one (never a placeholder).
    static func worded(_ error: JobError, path: String) -> any Error {
      guard case .store(_, .session(let object, let problem)) = error else { return error }
      let userID = Deployment.userID(fromSessionFileName: URL(fileURLWithPath: path).lastPathComponent)
      return CommandFailure(message: "\(object): \(problem.reason); \(problem.remedy.advice(userID: userID))")
    }
  }

  struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "convert",
      abstract: "Write a session file from a session string.",
      discussion: """
        Reads the string from a file (or - for standard input), so it never shows in the process \
        list or the shell history. An existing output file is never replaced.

          $ tgsess session convert --string-file s.txt --format telethon-v8 --owner 42 --output user_42.session
          $ tgsess session convert --string-file - --format pyrogram-v3 --output p.session < pyro.txt

        EXIT STATUS: 0 ok · 1 failed · 64 usage
        """)

    @Option(help: "File holding the session string, or - for standard input.") var stringFile: String
    @Option(help: "telethon-v8, telethon-v7 or pyrogram-v3.") var format = "telethon-v8"
    @Option(help: "The session file to write.") var output: String
    @Option(help: "The user id the session belongs to (Telethon records it).") var owner: Int64?
    @Option(help: "The api id, for old Pyrogram strings without one.") var apiID: Int?
    @Flag(help: "Print the result as JSON.") var json = false

    func validate() throws {
      guard ["telethon-v8", "telethon-v7", "pyrogram-v3"].contains(format) else {
        throw ValidationError("unknown --format '\(format)'. Try: --format telethon-v8")
      }
    }

    func run() throws {
      let data =
        stringFile == "-"
        ? FileHandle.standardInput.readDataToEndOfFile() : try Data(contentsOf: URL(fileURLWithPath: stringFile))
      let report = try SessionJob.convert(
        ConvertOptions(
          string: String(decoding: data, as: UTF8.self), outputPath: output, format: format, ownerUserID: owner,
          apiID: apiID))
      if json { return try Output.json(report) }
      Output.line("wrote \(report.path)")
      Session.render(report)
    }
  }

  struct ExportString: ParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "export-string",
      abstract: "Write a session file's session string to a new 0600 file.",
      discussion: """
        The string is a secret: it is written to --output (mode 0600, never replacing a file) and \
        never printed.

          $ tgsess session export-string sessions/user_42.session --output /root/user_42.string

        EXIT STATUS: 0 ok · 1 failed
        """)

    @Argument(help: "The session file.") var file: String
    @Option(help: "Where to write the string.") var output: String

    func run() throws {
      let report = try SessionJob.exportString(path: file, outputPath: output)
      Output.line("wrote the \(report.format) session string of \(report.path) to \(output)")
    }
  }

  static func render(_ report: SessionReport) {
    Output.line("\(report.path): \(report.format)")
    var address = report.serverAddress ?? "-"
    if let port = report.port { address += ":\(port)" }
    Output.line("  dc \(report.dcID), \(address), auth key \(report.authKeyFingerprint)")
    if let owner = report.ownerUserID { Output.line("  owner user \(owner)") }
    if let apiID = report.apiID { Output.line("  api id \(apiID)") }
    Output.line("  \(report.entityCount) cached entities, journal mode \(report.journalMode)")
  }
}

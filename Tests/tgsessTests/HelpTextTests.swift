import Foundation
import TestSupport
import Testing

/// Every command's `--help` reads as paragraphs. ArgumentParser wraps text at the terminal width
/// (80 columns without a terminal) but keeps every newline of the source, so a discussion
/// hard-wrapped at another width comes out in ragged half-lines ("checked in / full (every /
/// SHA-256, …"). A line break is one the wrapper made only when the next word would not have fit.
@Suite struct HelpTextTests {
  static let width = 80

  /// `tgsess`, then every subcommand, found by reading each help's SUBCOMMANDS section.
  static func commands(_ path: [String] = []) throws -> [[String]] {
    var found = [path]
    for name in subcommands(in: try help(path)) { found += try commands(path + [name]) }
    return found
  }

  static func help(_ path: [String]) throws -> String {
    let result = try runBuiltProduct("tgsess", path + ["--help"], environment: ["COLUMNS": String(width)])
    guard result.status == 0 else {
      throw TestHelperError("tgsess \(path.joined(separator: " ")) --help: \(result.stderr)")
    }
    return result.stdout
  }

  static func subcommands(in help: String) -> [String] {
    guard let section = help.components(separatedBy: "\nSUBCOMMANDS:\n").dropFirst().first else { return [] }
    // "  name                    abstract" rows up to the blank line; continuations are indented further.
    return section.components(separatedBy: "\n\n")[0].split(separator: "\n").compactMap { line in
      guard line.hasPrefix("  "), !line.hasPrefix("   "), let name = line.split(separator: " ").first,
        name.wholeMatch(of: /[a-z][a-z0-9-]*/) != nil, name != "help"
      else { return nil }
      return String(name)
    }
  }

  /// The lines of `help` broken before the next word had to be: (line, next line).
  static func raggedBreaks(in help: String) -> [(String, String)] {
    // The prose: the overview and the discussion, up to the usage line.
    let prose = help.components(separatedBy: "\nUSAGE:").first ?? help
    let lines = prose.components(separatedBy: "\n")
    var breaks: [(String, String)] = []
    for (line, next) in zip(lines, lines.dropFirst()) {
      let trimmed = next.drop { $0 == " " }
      guard !line.trimmingCharacters(in: .whitespaces).isEmpty, !trimmed.isEmpty,
        indentation(line) == indentation(next) || line.hasPrefix("OVERVIEW: "),
        // A new item, example or heading starts its own line on purpose.
        !["$", "-", "•", "·", "|"].contains(where: { trimmed.hasPrefix($0) }),
        !trimmed.hasPrefix("EXIT STATUS"), !line.hasSuffix(":"),
        !line.trimmingCharacters(in: .whitespaces).hasPrefix("$"),
        // A heading ("RETENTION") stands on its own line.
        line.contains(where: \.isLowercase)
      else { continue }
      let nextWord = trimmed.prefix { $0 != " " }
      if line.count + 1 + nextWord.count < width { breaks.append((line, next)) }
    }
    return breaks
  }

  static func indentation(_ line: String) -> Int { line.prefix { $0 == " " }.count }

  @Test func theCheckFindsARaggedBreakAndPassesAWrappedParagraph() {
    let ragged = "OVERVIEW: Restore.\n\nThe archive is checked in\nfull (every SHA-256).\n\nUSAGE: x"
    #expect(Self.raggedBreaks(in: ragged).map(\.0) == ["The archive is checked in"])
    let wrapped =
      "OVERVIEW: Restore.\n\n"
      + "The archive is decrypted and extracted into a staging directory and checked in\n"
      + "full (every SHA-256).\n\n  $ tgsess restore latest\n  $ tgsess restore x\n\nUSAGE: x"
    #expect(Self.raggedBreaks(in: wrapped).isEmpty)
  }

  @Test func everyHelpReadsAsParagraphs() throws {
    let commands = try Self.commands()
    #expect(commands.count > 15, "found only \(commands.map { $0.joined(separator: " ") })")
    for command in commands {
      let breaks = Self.raggedBreaks(in: try Self.help(command))
      #expect(
        breaks.isEmpty,
        "tgsess \(command.joined(separator: " ")) --help breaks mid-sentence: \(breaks.prefix(3).map { "'\($0.0)' / '\($0.1)'" })"
      )
    }
  }
}

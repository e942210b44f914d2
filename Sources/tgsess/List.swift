import ArgumentParser
import Foundation
import Jobs

struct List: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "list",
    abstract: "List archives, newest first, each with its signature checked.",
    discussion: """
      Works from the archives alone (for example on a backups/ folder copied to a new machine). \
      Each archive's signature file is checked against the key ring (keys/signing.pub, or \
      --verify-key FILE): SIGNATURE is signed, unsigned (made before archives were signed; run \
      tgsess keys sign-existing once after upgrading), rejected (its signature does not verify \
      or names another place: someone wrote to backups/; --json says why), or unverified (no \
      key ring here). VERIFIED is how the writer proved a signed archive before it signed it. \
      Nothing else a record says is trusted, and the archive file itself is not hashed here \
      (restore, drill and check --deep do that). A signature is verified once; its verdict is \
      kept in backups/.signatures (authenticated with a key derived from keys/signing.key) and \
      used while the signature file is unchanged (same inode, size and times).

        $ tgsess list
        $ tgsess list --user 42
        $ tgsess list --kind full --json
        $ tgsess list --remote offsite --verify-key /escrow/signing.pub

      EXIT STATUS: 0 ok · 1 failed · 64 usage
      """)

  @OptionGroup var global: GlobalOptions
  @Option(help: "Only this user's archives (and the full snapshots holding them).") var user: Int64?
  @Option(help: "full or user.") var kind: String?
  @Option(help: "List what this configured remote holds, from the remote alone.") var remote: String?
  @Option(help: "The key ring to check signatures with (default: keys/signing.pub).") var verifyKey: String?

  func validate() throws {
    if let kind, kind != "full", kind != "user" {
      throw ValidationError("--kind must be full or user. Try: --kind full")
    }
  }

  func run() throws {
    let (deployment, _) = try global.setUp()
    let archives = try ListJob.run(
      deployment, options: ListOptions(kind: kind, userID: user, remote: remote, verifyKeyPath: verifyKey))
    if global.json { return try List.json(archives) }
    List.table(archives) { Output.line($0) }
  }

  /// The REASON cell: the reason, marked "(verbatim)" for an archive that holds files archived
  /// byte for byte (a restore's undo of damaged data), as `--json` says with `"verbatim": true`.
  static func reason(_ archive: ListedArchive) -> String {
    let reason = archive.reason.isEmpty ? "-" : archive.reason
    return archive.verbatim == true ? reason + " (verbatim)" : reason
  }

  /// The text table, line by line into `emit`: each column as wide as its widest cell (ids of
  /// per-user archives are longer than those of full ones), two spaces between columns, no
  /// trailing blanks. Two passes over the rows (widths, then lines), so no cell or line of a
  /// 100,000-row table is held at once.
  static func table(_ archives: [ListedArchive], emit: (String) -> Void) {
    let header = ["ID", "TIME", "KIND", "USER", "REASON", "SIZE", "ENTRIES", "SIGNATURE", "VERIFIED"]
    func cells(_ archive: ListedArchive) -> [String] {
      [
        archive.id, Format.time(archive.createdAt), archive.kind.rawValue, archive.userID.map(String.init) ?? "-",
        reason(archive), Format.bytes(archive.byteCount), String(archive.entryCount),
        archive.signature.rawValue, archive.verification?.rawValue ?? "-",
      ]
    }
    var widths = header.map(\.count)
    for archive in archives {
      for (column, cell) in cells(archive).enumerated() { widths[column] = max(widths[column], cell.count) }
    }
    // Padded by hand: `padding(toLength:)` bridges to NSString, a cost per cell at 10,000 rows.
    func line(_ cells: [String]) -> String {
      var line = ""
      for (column, cell) in cells.enumerated() {
        line += cell
        if column < cells.count - 1 { line += String(repeating: " ", count: widths[column] - cell.count + 2) }
      }
      return line
    }
    emit(line(header))
    for archive in archives { emit(line(cells(archive))) }
  }

  /// `--json`: the bytes `Output.json(archives)` writes, one archive at a time (the encoder builds
  /// the whole document in memory first, twice the size of the rows at 100,000 archives). Each
  /// archive is encoded alone and indented one level, as the array's pretty-printer nests it.
  static func json(_ archives: [ListedArchive]) throws {
    guard !archives.isEmpty else { return try Output.json(archives) }
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    encoder.dateEncodingStrategy = .iso8601
    var buffer: [UInt8] = Array("[\n".utf8)
    buffer.reserveCapacity(1 << 17)
    for (index, archive) in archives.enumerated() {
      let element = try encoder.encode(archive)
      // A string's line break is escaped, so every newline here ends a line of the document.
      element.withUnsafeBytes { bytes in
        var lineStart = 0
        for position in bytes.indices where bytes[position] == UInt8(ascii: "\n") || position == bytes.count - 1 {
          // The pretty-printer leaves the blank line of an empty array or object unindented.
          if position > lineStart || bytes[position] != UInt8(ascii: "\n") { buffer.append(contentsOf: "  ".utf8) }
          buffer.append(contentsOf: bytes[lineStart...position])
          lineStart = position + 1
        }
      }
      buffer.append(contentsOf: (index == archives.count - 1 ? "\n]\n" : ",\n").utf8)
      if buffer.count >= 1 << 16 {
        FileHandle.standardOutput.write(Data(buffer))
        buffer.removeAll(keepingCapacity: true)
      }
    }
    FileHandle.standardOutput.write(Data(buffer))
  }
}

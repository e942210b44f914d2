import ArgumentParser
import Jobs

struct List: ParsableCommand {
  static let configuration = CommandConfiguration(
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
    if global.json { return try Output.json(archives) }
    for line in List.table(archives) { Output.line(line) }
  }

  /// The REASON cell: the reason, marked "(verbatim)" for an archive that holds files archived
  /// byte for byte (a restore's undo of damaged data), as `--json` says with `"verbatim": true`.
  static func reason(_ archive: ListedArchive) -> String {
    let reason = archive.reason.isEmpty ? "-" : archive.reason
    return archive.verbatim == true ? reason + " (verbatim)" : reason
  }

  /// The text table: each column as wide as its widest cell (ids of per-user archives are
  /// longer than those of full ones), two spaces between columns, no trailing blanks.
  static func table(_ archives: [ListedArchive]) -> [String] {
    let header = ["ID", "TIME", "KIND", "USER", "REASON", "SIZE", "ENTRIES", "SIGNATURE", "VERIFIED"]
    let rows = archives.map { archive in
      [
        archive.id, Format.time(archive.createdAt), archive.kind.rawValue, archive.userID.map(String.init) ?? "-",
        reason(archive), Format.bytes(archive.byteCount), String(archive.entryCount),
        archive.signature.rawValue, archive.verification?.rawValue ?? "-",
      ]
    }
    var widths = header.map(\.count)
    for row in rows {
      for (column, cell) in row.enumerated() { widths[column] = max(widths[column], cell.count) }
    }
    // Padded by hand: `padding(toLength:)` bridges to NSString, a cost per cell at 10,000 rows.
    return ([header] + rows).map { cells in
      var line = ""
      for (column, cell) in cells.enumerated() {
        line += cell
        if column < cells.count - 1 { line += String(repeating: " ", count: widths[column] - cell.count + 2) }
      }
      return line
    }
  }
}

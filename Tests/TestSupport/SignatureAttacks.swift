import Foundation
import Store

/// Attacks on genuine, signed archives (issue #15), built into a deployment for the torture
/// suite's hostile-archives family: each is an archive `tgsess restore` must refuse, with the
/// reason it must give, leaving everything as it was.
public enum SignatureAttacks {
  /// One attack: the archive to restore and what the refusal must say (any one of `reasons`).
  public struct Attack: Sendable {
    public var name: String
    public var archiveID: String
    public var restoreArguments: [String]
    public var reasons: [String]
  }

  /// Builds every attack.
  /// - Parameters:
  ///   - owner: a user whose newest genuine per-user archive is renamed into `victim`'s
  ///     directory.
  ///   - victim: the user the attacks aim at (their newest archive is replayed as newer).
  ///   - spares: two genuine per-user archives (paths) that are rewritten in place: entries
  ///     swapped under the signed manifest, then under a manifest rewritten to match.
  ///   - foreignArchive: a genuine per-user archive of `victim` made by another deployment (its
  ///     own keys), copied in with its signature and record.
  /// - Throws: `TestHelperError` when a tool fails.
  public static func build(
    _ deployment: Deployment, owner: Int64, victim: Int64, spares: [String], foreignArchive: String
  ) throws -> [Attack] {
    let repository = ArchiveRepository(backupsDirectory: deployment.backupsDirectory)
    var attacks: [Attack] = []
    func copy(_ archivePath: String, as id: String, into directory: String) throws {
      let source =
        FileSystem.parentDirectory(of: archivePath) + "/"
        + String((archivePath as NSString).lastPathComponent.dropLast(ArchiveName.encryptedSuffix.count))
      for suffix in [ArchiveName.encryptedSuffix, ArchiveSignature.fileSuffix, ArchiveName.recordSuffix] {
        try FileManager.default.copyItem(atPath: source + suffix, toPath: directory + "/" + id + suffix)
      }
    }
    // The genuine archives the attacks start from, before any attack is in place.
    let owned = try newest(repository, owner)
    let own = try newest(repository, victim)
    // 1. A genuine archive of `owner`, renamed (newer) into `victim`'s directory.
    let renamed = "20990101T000000Z-u\(victim)-rename"
    try copy(repository.path(of: owned), as: renamed, into: repository.userDirectory(victim))
    attacks.append(
      Attack(
        name: "genuine-archive-renamed-into-another-users-directory", archiveID: renamed,
        restoreArguments: ["--user", String(victim)],
        reasons: ["not signed by this deployment's key; its signature is for user_\(owner)/\(owned.fileName)"]))
    // 2. An older genuine archive of `victim` replayed under a newer id.
    let replayed = "20990101T000000Z-u\(victim)-replay"
    try copy(repository.path(of: own), as: replayed, into: repository.userDirectory(victim))
    attacks.append(
      Attack(
        name: "older-archive-replayed-as-newer", archiveID: replayed, restoreArguments: ["--user", String(victim)],
        reasons: ["not signed by this deployment's key; its signature is for user_\(victim)/\(own.fileName)"]))
    // 3. Another deployment's genuine archive, signed by its own key.
    let foreignName = (foreignArchive as NSString).lastPathComponent
    let foreignID = String(foreignName.dropLast(ArchiveName.encryptedSuffix.count))
    try copy(foreignArchive, as: foreignID, into: repository.userDirectory(victim))
    attacks.append(
      Attack(
        name: "archive-signed-by-another-deployments-key", archiveID: foreignID,
        restoreArguments: ["--user", String(victim)],
        reasons: ["not signed by this deployment's key; it names key"]))
    // 4. Entries swapped (`victim`'s session in place of the spare's) and re-encrypted to the
    // public recipient, the signed manifest kept; then with a manifest rewritten to match.
    for (index, spare) in spares.prefix(2).enumerated() {
      let rehash = index == 1
      let result = try runProcess(
        "/bin/bash", ["-c", swapScript],
        environment: [
          "ARCHIVE": spare, "ID": deployment.ageIdentityPath, "RECIPIENTS": deployment.ageRecipientsPath,
          "DONOR": try session(of: own, in: repository, identity: deployment.ageIdentityPath),
          "REHASH": rehash ? "1" : "0",
        ])
      guard result.status == 0 else { throw TestHelperError("swapping entries failed: \(result.stderr)") }
      let name = (spare as NSString).lastPathComponent
      attacks.append(
        Attack(
          name: rehash ? "entries-swapped-with-a-rewritten-manifest" : "entries-swapped-under-the-signed-manifest",
          archiveID: String(name.dropLast(ArchiveName.encryptedSuffix.count)), restoreArguments: [],
          reasons: rehash
            ? ["not signed by this deployment's key; its manifest.json is not the signed one"]
            : ["does not match its SHA-256 in the manifest", "not signed by this deployment's key"]))
    }
    return attacks
  }

  static func newest(_ repository: ArchiveRepository, _ userID: Int64) throws -> ArchiveRecord {
    guard let record = try repository.list(kind: .user, userID: userID).first else {
      throw TestHelperError("user \(userID) has no per-user archive")
    }
    return record
  }

  /// The session file in `record`'s archive, decrypted into a temporary file whose path is
  /// returned.
  static func session(of record: ArchiveRecord, in repository: ArchiveRepository, identity: String) throws -> String {
    let archive = repository.path(of: record)
    let owner = record.userID ?? 0
    let path = NSTemporaryDirectory() + "/tgsess-donor-\(UInt32.random(in: 0...UInt32.max)).session"
    let result = try runProcess(
      "/bin/bash",
      [
        "-c", "set -o pipefail; age -d -i \"$1\" \"$2\" | tar --zstd -xOf - \"sessions/user_$3.session\" > \"$4\"", "x",
        identity, archive, String(owner), path,
      ])
    guard result.status == 0 else { throw TestHelperError("reading a donor session failed: \(result.stderr)") }
    return path
  }

  /// Decrypts `$ARCHIVE`, puts `$DONOR` in place of its session entry, keeps (or, with
  /// `REHASH=1`, rewrites to match) its manifest, and re-encrypts it in place to the public
  /// recipients with stock tools.
  static let swapScript = #"""
    set -euo pipefail
    work=$(mktemp -d)
    trap 'rm -rf "$work" "$DONOR"' EXIT
    age -d -i "$ID" "$ARCHIVE" | tar --zstd -xf - -C "$work"
    session=$(cd "$work" && ls sessions/*.session)
    cp "$DONOR" "$work/$session"
    if [ "$REHASH" = 1 ]; then
      python3 - "$work" "$session" <<'PY'
    import hashlib, json, sys
    d, path = sys.argv[1:]
    m = json.load(open(d + '/manifest.json'))
    for e in m['entries']:
        if e['path'] == path:
            data = open(d + '/' + path, 'rb').read()
            e['sha256'], e['size'] = hashlib.sha256(data).hexdigest(), len(data)
    json.dump(m, open(d + '/manifest.json', 'w'))
    PY
    fi
    names=$(cd "$work" && find . -type f ! -name manifest.json | sed 's|^\./||' | sort)
    # shellcheck disable=SC2086
    (cd "$work" && tar --zstd -cf - manifest.json $names) | age -R "$RECIPIENTS" > "$ARCHIVE"
    """#
}

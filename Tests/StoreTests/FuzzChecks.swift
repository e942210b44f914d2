import Foundation
import Store

#if canImport(Glibc)
  import Glibc
#endif

/// The properties the fuzz targets (`fuzz/`, libFuzzer) check on every input, shared with
/// FuzzRegressionTests, which replays the inputs that once broke them. Each check returns nil
/// when the input is handled correctly (refused with an error, or accepted and sound), else
/// what went wrong. A crash inside Store is a finding too.
/// (`fuzz/Sources/FuzzChecks/FuzzChecks.swift` is a symlink to this file.)
public enum FuzzChecks {
  /// The session-string parsers: an accepted string holds a 256-byte key that is not all zeros
  /// and a dc in range, and re-encodes to exactly its trimmed self.
  public static func sessionStrings(_ data: [UInt8]) -> String? {
    let text = String(decoding: data, as: UTF8.self)
    let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
    if let identity = try? TelethonStringSession.decode(text) {
      if let problem = insane(identity, isTestMode: false) { return "Telethon string: \(problem)" }
      guard (try? TelethonStringSession.encode(identity)) == trimmed else {
        return "an accepted Telethon string does not re-encode to itself"
      }
    }
    if let payload = try? PyrogramStringSession.decode(text) {
      if let problem = insane(payload.identity, isTestMode: payload.isTestMode) { return "Pyrogram string: \(problem)" }
      guard (try? PyrogramStringSession.encode(payload)) == trimmed else {
        return "an accepted Pyrogram string does not re-encode to itself"
      }
    }
    return nil
  }

  /// The session-file inspector, on `data` written to a file in `scratch`: an accepted file is
  /// sound, and inspecting it never changes it.
  public static func sessionFile(_ data: [UInt8], scratch: String) -> String? {
    let path = scratch + "/fuzz.session"
    for suffix in ["", "-journal", "-wal", "-shm"] { unlink(path + suffix) }
    guard (try? FileSystem.writeAtomically(Data(data), to: path)) != nil else { return nil }
    defer { for suffix in ["", "-journal", "-wal", "-shm"] { unlink(path + suffix) } }
    let info = try? SessionFileInspector.inspect(path: path, busyTimeoutMS: 0)
    if let info, let problem = insane(info.identity, isTestMode: info.isTestMode ?? false) {
      return "session file: \(problem)"
    }
    guard let after = try? FileSystem.read(path), [UInt8](after) == data else { return "inspect changed the file" }
    return nil
  }

  /// The manifest parser: an accepted manifest has safe, unique paths and well-formed hashes, and
  /// survives a round trip through its own encoding.
  public static func manifest(_ data: [UInt8]) -> String? {
    guard let manifest = try? Manifest.decode(Data(data), objectName: "fuzz") else { return nil }
    var seen = Set<String>()
    for entry in manifest.entries {
      guard isSafeOnDisk(entry.path) else { return "accepted an unsafe path" }
      guard seen.insert(entry.path).inserted else { return "accepted a path twice" }
      guard entry.size >= 0, entry.sha256.count == 64 else { return "accepted a bad size or hash" }
    }
    guard manifest.formatVersion <= Manifest.currentFormatVersion else { return "accepted a newer format" }
    guard let encoded = try? manifest.encoded() else { return "an accepted manifest does not encode" }
    guard let again = try? Manifest.decode(encoded, objectName: "fuzz") else {
      return "an accepted manifest, encoded again, is refused"
    }
    guard again == manifest else { return "an accepted manifest changes in a round trip" }
    return nil
  }

  /// Small limits, so a fuzzed archive cannot fill the disk.
  public static var archiveLimits: ArchiveReader.Limits {
    var limits = ArchiveReader.Limits()
    limits.totalByteCount = 8 * 1024 * 1024
    limits.entryCount = 1000
    return limits
  }

  /// The archive reader, on `data` as an unencrypted tar.zst extracted below `scratch`: an
  /// accepted archive extracted exactly its manifest's entries, each with the listed size and
  /// SHA-256, and nothing else.
  public static func archive(_ data: [UInt8], scratch: String) -> String? {
    let path = scratch + "/fuzz.tar.zst"
    let target = scratch + "/x"
    try? FileManager.default.removeItem(atPath: target)
    guard (try? FileSystem.writeAtomically(Data(data), to: path)) != nil,
      mkdir(target, 0o700) == 0
    else { return nil }
    defer { try? FileManager.default.removeItem(atPath: target) }
    guard
      let manifest = try? ArchiveReader.read(
        path: path, identities: [], extractTo: target, limits: archiveLimits, isEncrypted: false)
    else { return nil }
    var expected = Set<String>()
    for entry in manifest.entries {
      guard isSafeOnDisk(entry.path) else { return "accepted archive: an entry path leaves the directory" }
      expected.insert(entry.path)
      let file = target + "/" + entry.path
      guard let size = try? FileSystem.size(of: file), size == entry.size else {
        return "accepted archive: \(entry.path) missing or of the wrong size"
      }
      guard (try? FileSystem.sha256(ofFile: file)) == entry.sha256 else {
        return "accepted archive: \(entry.path) does not match its SHA-256"
      }
    }
    var found = Set<String>()
    let enumerator = FileManager.default.enumerator(atPath: target)
    while let relative = enumerator?.nextObject() as? String {
      if !FileSystem.isDirectory(target + "/" + relative) { found.insert(relative) }
    }
    guard found == expected else { return "accepted archive extracted other files than its manifest lists" }
    return nil
  }

  /// Whether the filesystem would keep `path` below the directory it is joined to: judged on
  /// its bytes, independently of `ArchivePath.isSafe` (which the check is about).
  static func isSafeOnDisk(_ path: String) -> Bool {
    let bytes = Array(path.utf8)
    guard let first = bytes.first, first != UInt8(ascii: "/"), !bytes.contains(0) else { return false }
    return !bytes.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).contains {
      $0.isEmpty || $0.elementsEqual([0x2e]) || $0.elementsEqual([0x2e, 0x2e])
    }
  }

  static func insane(_ identity: SessionIdentity, isTestMode: Bool) -> String? {
    if identity.authKey.bytes.count != 256 { return "accepted a \(identity.authKey.bytes.count)-byte key" }
    if identity.authKey.isAllZero { return "accepted an all-zero key" }
    if !(isTestMode ? 1...3 : 1...5).contains(identity.dcID) { return "accepted dc \(identity.dcID)" }
    if let port = identity.port, !(1...65535).contains(port) { return "accepted port \(port)" }
    return nil
  }
}

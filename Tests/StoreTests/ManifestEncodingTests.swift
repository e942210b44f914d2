import Foundation
import Store
import Testing

/// `Manifest.encoded()` splices entries encoded one at a time into the manifest's frame; these
/// pin it to exactly what `JSONEncoder` makes of the whole manifest, which older tgsess wrote.
@Suite struct ManifestEncodingTests {
  static func manifest(entries: Int, reason: String = "Scheduled") -> Manifest {
    let hash = String(repeating: "ab", count: 32)
    var list: [Manifest.Entry] = [
      Manifest.Entry(path: "data/telegram_bot.db", role: .database, size: 4096, sha256: hash, isSQLite: true)
    ]
    for index in 0..<max(0, entries - 1) {
      let user = Int64(100_000 + index)
      list.append(
        Manifest.Entry(
          path: "sessions/user_\(user).session", role: .session, size: 28672, sha256: hash, isSQLite: true,
          userID: user, format: index % 2 == 0 ? "telethon-v7" : "pyrogram-v3", dcID: 2,
          authKeyFingerprint: "8e8b7b38", serverAddress: index % 3 == 0 ? nil : "149.154.167.51"))
    }
    return Manifest(
      toolVersion: "0.1.0", host: "host \"quoted\" / é", createdAt: Date(timeIntervalSince1970: 1_795_594_663),
      kind: .full, reason: reason, userID: nil, schemaVersion: 3, entries: Array(list.prefix(entries)))
  }

  static func reference(_ manifest: Manifest) throws -> Data {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    encoder.dateEncodingStrategy = .iso8601
    return try encoder.encode(manifest)
  }

  @Test(arguments: [0, 1, 2, 7])
  func splicedEncodingIsJSONEncodersOutput(entries: Int) throws {
    let manifest = Self.manifest(entries: entries, reason: "Before \"restore\"\n\t\\")
    let encoded = try manifest.encoded()
    #expect(encoded == (try Self.reference(manifest)), "\(String(decoding: encoded, as: UTF8.self))")
    #expect(try Manifest.decode(encoded, objectName: "test") == manifest)
  }
}

import Foundation

/// The archive record's JSON written by hand, byte for byte what `JSONEncoder` (pretty-printed,
/// sorted keys, unescaped slashes, ISO 8601 dates) makes of it: the first backup writes one
/// record per user, 10,000 at fleet scale. Readers still parse it with `JSONDecoder`.
/// `ArchiveRecordEncodingTests` pins the equality.
enum ArchiveRecordJSON {
  /// The record's bytes; nil when one of its times is outside the years 1970...9999 (the
  /// caller falls back to `JSONEncoder`).
  static func encode(_ record: ArchiveRecord) -> Data? {
    guard let createdAt = ManifestJSON.iso8601(record.createdAt) else { return nil }
    var verifiedAt: String?
    if let date = record.verifiedAt {
      guard let text = ManifestJSON.iso8601(date) else { return nil }
      verifiedAt = text
    }
    var out: [UInt8] = []
    out.reserveCapacity(1024)
    var isFirst = true
    // Keys in the order `.sortedKeys` puts them; absent optionals are left out.
    func key(_ name: StaticString) {
      out.append(contentsOf: isFirst ? "{\n  \"".utf8 : ",\n  \"".utf8)
      isFirst = false
      out.append(contentsOf: UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount))
      out.append(contentsOf: "\" : ".utf8)
    }
    func string(_ value: String) { ManifestJSON.appendString(value, to: &out) }
    func integer(_ value: Int64) { ManifestJSON.appendInteger(value, to: &out) }
    /// An array one level down, as the encoder prints it (an empty one as `[\n\n  ]`).
    func array<T>(_ values: [T], _ element: (T) -> Void) {
      out.append(UInt8(ascii: "["))
      out.append(contentsOf: values.isEmpty ? "\n\n".utf8 : "\n".utf8)
      for (index, value) in values.enumerated() {
        out.append(contentsOf: index == 0 ? "    ".utf8 : ",\n    ".utf8)
        element(value)
      }
      out.append(contentsOf: values.isEmpty ? "  ]".utf8 : "\n  ]".utf8)
    }
    key("byte_count")
    integer(record.byteCount)
    key("content_byte_count")
    integer(record.contentByteCount)
    key("created_at")
    string(createdAt)
    key("entry_count")
    integer(Int64(record.entryCount))
    if let fernetKeys = record.fernetKeys {
      key("fernet_keys")
      array(fernetKeys, string)
    }
    key("file_name")
    string(record.fileName)
    key("host")
    string(record.host)
    key("id")
    string(record.id)
    key("is_encrypted")
    out.append(contentsOf: record.isEncrypted ? "true".utf8 : "false".utf8)
    key("kind")
    string(record.kind.rawValue)
    key("reason")
    string(record.reason)
    if let recipients = record.recipients {
      key("recipients")
      array(recipients, string)
    }
    if let fingerprint = record.sessionFingerprint {
      key("session_fingerprint")
      out.append(contentsOf: "{\n    \"auth_key\" : ".utf8)
      string(fingerprint.authKey)
      out.append(contentsOf: ",\n    \"dc_id\" : ".utf8)
      integer(Int64(fingerprint.dcID))
      if let address = fingerprint.serverAddress {
        out.append(contentsOf: ",\n    \"server_address\" : ".utf8)
        string(address)
      }
      out.append(contentsOf: "\n  }".utf8)
    }
    key("sha256")
    string(record.sha256)
    key("tool_version")
    string(record.toolVersion)
    if let userID = record.userID {
      key("user_id")
      integer(userID)
    }
    key("user_ids")
    array(record.userIDs, integer)
    if let hasVerbatimEntries = record.hasVerbatimEntries {
      key("verbatim")
      out.append(contentsOf: hasVerbatimEntries ? "true".utf8 : "false".utf8)
    }
    key("verification")
    string(record.verification.rawValue)
    if let verifiedAt {
      key("verified_at")
      string(verifiedAt)
    }
    out.append(contentsOf: "\n}".utf8)
    return Data(out)
  }
}

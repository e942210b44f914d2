import Foundation

/// The manifest's JSON written by hand, byte for byte what `Manifest.encoder()` (`JSONEncoder`:
/// pretty-printed, sorted keys, unescaped slashes, ISO 8601 dates) makes of it: the full
/// archive's manifest of 10,000 entries is written and compared every run, and `JSONEncoder`'s
/// generic path was 5.5 % of an hourly backup's CPU. Readers still parse it with `JSONDecoder`.
/// `ManifestEncodingTests` pins the equality (every field, escapes, unicode, extreme numbers).
enum ManifestJSON {
  /// The manifest's bytes; nil when its time is outside the years 1970...9999, whose ISO 8601
  /// form this writer does not reproduce (the caller falls back to `JSONEncoder`).
  static func encode(_ manifest: Manifest) -> Data? {
    guard let createdAt = iso8601(manifest.createdAt) else { return nil }
    // The bytes go to `data` a piece at a time (no second copy of a 10,000-entry manifest's
    // JSON, as `Data(out)` of the whole array made); `out` is the piece being written.
    var data = Data(capacity: 512 + manifest.entries.count * 448)
    var out: [UInt8] = []
    out.reserveCapacity(min(512 + manifest.entries.count * 448, Self.pieceByteCount + 4096))
    // Keys in the order `.sortedKeys` puts them; the indentation is two spaces a level.
    out.append(contentsOf: "{\n  \"created_at\" : ".utf8)
    appendString(createdAt, to: &out)
    if manifest.entries.isEmpty {
      out.append(contentsOf: ",\n  \"entries\" : [\n\n  ]".utf8)
    } else {
      out.append(contentsOf: ",\n  \"entries\" : [\n".utf8)
      for (index, entry) in manifest.entries.enumerated() {
        if index > 0 { out.append(contentsOf: ",\n".utf8) }
        appendEntry(entry, to: &out)
        if out.count >= Self.pieceByteCount {
          data.append(contentsOf: out)
          out.removeAll(keepingCapacity: true)
        }
      }
      out.append(contentsOf: "\n  ]".utf8)
    }
    out.append(contentsOf: ",\n  \"format_version\" : ".utf8)
    appendInteger(Int64(manifest.formatVersion), to: &out)
    out.append(contentsOf: ",\n  \"host\" : ".utf8)
    appendString(manifest.host, to: &out)
    out.append(contentsOf: ",\n  \"kind\" : ".utf8)
    appendString(manifest.kind.rawValue, to: &out)
    out.append(contentsOf: ",\n  \"reason\" : ".utf8)
    appendString(manifest.reason, to: &out)
    out.append(contentsOf: ",\n  \"schema_version\" : ".utf8)
    appendInteger(Int64(manifest.schemaVersion), to: &out)
    out.append(contentsOf: ",\n  \"tool_version\" : ".utf8)
    appendString(manifest.toolVersion, to: &out)
    if let userID = manifest.userID {
      out.append(contentsOf: ",\n  \"user_id\" : ".utf8)
      appendInteger(userID, to: &out)
    }
    out.append(contentsOf: "\n}".utf8)
    data.append(contentsOf: out)
    return data
  }

  /// How many bytes `encode` gathers before it moves them to the result.
  static let pieceByteCount = 64 * 1024

  /// `date` as `JSONEncoder`'s `.iso8601` strategy writes it (`2026-11-25T04:15:00Z`); nil
  /// outside the years 1970...9999, where Foundation's calendar and this arithmetic part.
  static func iso8601(_ date: Date) -> String? {
    // Foundation drops the fraction of the time since 2001 (what a Date holds): the time since
    // 1970, a sum rounded to a Double, can be the next second already.
    let seconds = date.timeIntervalSinceReferenceDate.rounded(.down) + 978_307_200
    guard seconds >= 0, seconds < 253_402_300_800 else { return nil }
    return CivilTime.format(
      CivilTime.fields(Date(timeIntervalSince1970: seconds)), pattern: CivilTime.statementPattern)
  }

  /// One entry, at the depth of the `entries` array (four spaces before its keys); absent
  /// optionals are left out, as `encodeIfPresent` leaves them.
  static func appendEntry(_ entry: Manifest.Entry, to out: inout [UInt8]) {
    out.append(contentsOf: "    {".utf8)
    var isFirst = true
    func key(_ name: StaticString) {
      out.append(contentsOf: isFirst ? "\n      \"".utf8 : ",\n      \"".utf8)
      isFirst = false
      out.append(contentsOf: UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount))
      out.append(contentsOf: "\" : ".utf8)
    }
    if let fingerprint = entry.authKeyFingerprint {
      key("auth_key_fingerprint")
      appendString(fingerprint, to: &out)
    }
    if let dcID = entry.dcID {
      key("dc_id")
      appendInteger(Int64(dcID), to: &out)
    }
    if let format = entry.format {
      key("format")
      appendString(format, to: &out)
    }
    key("is_sqlite")
    out.append(contentsOf: entry.isSQLite ? "true".utf8 : "false".utf8)
    key("mode")
    appendInteger(Int64(entry.mode), to: &out)
    key("path")
    appendString(entry.path, to: &out)
    key("role")
    appendString(entry.role.rawValue, to: &out)
    if let address = entry.serverAddress {
      key("server_address")
      appendString(address, to: &out)
    }
    key("sha256")
    appendString(entry.sha256, to: &out)
    key("size")
    appendInteger(entry.size, to: &out)
    if let userID = entry.userID {
      key("user_id")
      appendInteger(userID, to: &out)
    }
    out.append(contentsOf: "\n    }".utf8)
  }

  /// A JSON string as `JSONEncoder` writes it: `"` and `\` escaped, the control characters
  /// below 0x20 as `\b \t \n \f \r` or `\u00xx` (lower-case hex), everything else (DEL and all
  /// non-ASCII) as its UTF-8 bytes.
  static func appendString(_ string: String, to out: inout [UInt8]) {
    out.append(UInt8(ascii: "\""))
    var string = string
    string.withUTF8 { bytes in
      let isPlain = !bytes.contains { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }
      if isPlain {
        out.append(contentsOf: bytes)
        return
      }
      let hex = Array("0123456789abcdef".utf8)
      for byte in bytes {
        switch byte {
        case UInt8(ascii: "\""): out.append(contentsOf: "\\\"".utf8)
        case UInt8(ascii: "\\"): out.append(contentsOf: "\\\\".utf8)
        case 0x08: out.append(contentsOf: "\\b".utf8)
        case 0x09: out.append(contentsOf: "\\t".utf8)
        case 0x0A: out.append(contentsOf: "\\n".utf8)
        case 0x0C: out.append(contentsOf: "\\f".utf8)
        case 0x0D: out.append(contentsOf: "\\r".utf8)
        case 0..<0x20: out.append(contentsOf: [0x5C, 0x75, 0x30, 0x30, hex[Int(byte >> 4)], hex[Int(byte & 0xF)]])
        default: out.append(byte)
        }
      }
    }
    out.append(UInt8(ascii: "\""))
  }

  /// A decimal integer, `-` before a negative one.
  static func appendInteger(_ value: Int64, to out: inout [UInt8]) {
    if value < 0 { out.append(UInt8(ascii: "-")) }
    var magnitude = value.magnitude
    // Digits written last first, then turned around in place (no allocation per number).
    let start = out.count
    repeat {
      out.append(UInt8(ascii: "0") + UInt8(magnitude % 10))
      magnitude /= 10
    } while magnitude > 0
    out[start...].reverse()
  }
}

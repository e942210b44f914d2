/// Base64 in the dialects the crypto formats need: age's standard alphabet without padding and
/// with canonical-only decoding, the standard alphabet with padding as `base64(1)` and PEM write
/// it (signing keys and signatures), and Fernet's URL-safe alphabet with padding.
package enum Base64 {
  private static let standardAlphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
  private static let urlSafeAlphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
  private static let standardTable = makeTable(standardAlphabet)
  private static let urlSafeTable = makeTable(urlSafeAlphabet)
  private static let invalid: UInt8 = 0xff

  private static func makeTable(_ alphabet: [UInt8]) -> [UInt8] {
    var table = [UInt8](repeating: invalid, count: 256)
    for (index, char) in alphabet.enumerated() { table[Int(char)] = UInt8(index) }
    return table
  }

  /// Standard alphabet, no `=` padding, canonical (unused bits zero): age's encoding.
  package static func encodeUnpadded(_ bytes: [UInt8]) -> String {
    encode(bytes, alphabet: standardAlphabet, isPadded: false)
  }

  /// Decodes age's base64: standard alphabet, no padding, and only the canonical encoding
  /// (RFC 4648 §3.5: unused trailing bits zero). Nil for anything else, including `=`.
  package static func decodeUnpaddedCanonical<Text: Collection>(_ text: Text) -> [UInt8]? where Text.Element == UInt8 {
    decode(Array(text), table: standardTable, isCanonicalRequired: true)
  }

  /// Decodes age's base64 from a string.
  package static func decodeUnpaddedCanonical(_ text: String) -> [UInt8]? {
    decodeUnpaddedCanonical(text.utf8)
  }

  /// Standard alphabet with `=` padding, as `base64(1)` and PEM bodies write it.
  package static func encodePadded(_ bytes: [UInt8]) -> String {
    encode(bytes, alphabet: standardAlphabet, isPadded: true)
  }

  /// Decodes standard, padded base64, accepting only the one encoding `encodePadded` gives for
  /// the bytes (padding present, unused bits zero, nothing else); nil for anything else.
  package static func decodePaddedCanonical(_ text: String) -> [UInt8]? {
    var chars = Array(text.utf8)
    guard chars.count % 4 == 0 else { return nil }
    while chars.last == UInt8(ascii: "=") { chars.removeLast() }
    guard let bytes = decode(chars, table: standardTable, isCanonicalRequired: true),
      encodePadded(bytes) == text
    else { return nil }
    return bytes
  }

  /// URL-safe alphabet with `=` padding, as Python's `base64.urlsafe_b64encode` writes it.
  package static func encodeURLSafe(_ bytes: [UInt8]) -> String {
    encode(bytes, alphabet: urlSafeAlphabet, isPadded: true)
  }

  /// Decodes URL-safe base64 that carries its `=` padding (length a multiple of 4). Like
  /// Python, non-zero unused bits are accepted; anything outside the alphabet is not.
  package static func decodeURLSafe(_ text: String) -> [UInt8]? {
    var chars = Array(text.utf8)
    guard chars.count % 4 == 0 else { return nil }
    var padding = 0
    while padding < 2, chars.last == UInt8(ascii: "=") {
      chars.removeLast()
      padding += 1
    }
    if padding > 0, chars.count % 4 == 0 { return nil }  // "====" or padding after a full group
    return decode(chars, table: urlSafeTable, isCanonicalRequired: false)
  }

  private static func encode(_ bytes: [UInt8], alphabet: [UInt8], isPadded: Bool) -> String {
    var out = [UInt8]()
    out.reserveCapacity((bytes.count + 2) / 3 * 4)
    var index = 0
    while index + 3 <= bytes.count {
      let value = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2])
      out.append(alphabet[Int(value >> 18 & 0x3f)])
      out.append(alphabet[Int(value >> 12 & 0x3f)])
      out.append(alphabet[Int(value >> 6 & 0x3f)])
      out.append(alphabet[Int(value & 0x3f)])
      index += 3
    }
    switch bytes.count - index {
    case 1:
      let value = UInt32(bytes[index]) << 16
      out.append(alphabet[Int(value >> 18 & 0x3f)])
      out.append(alphabet[Int(value >> 12 & 0x3f)])
      if isPadded { out.append(contentsOf: [UInt8(ascii: "="), UInt8(ascii: "=")]) }
    case 2:
      let value = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8
      out.append(alphabet[Int(value >> 18 & 0x3f)])
      out.append(alphabet[Int(value >> 12 & 0x3f)])
      out.append(alphabet[Int(value >> 6 & 0x3f)])
      if isPadded { out.append(UInt8(ascii: "=")) }
    default:
      break
    }
    return String(decoding: out, as: UTF8.self)
  }

  /// Decodes unpadded characters; a 4k+1 length is never valid.
  private static func decode(_ chars: [UInt8], table: [UInt8], isCanonicalRequired: Bool) -> [UInt8]? {
    guard chars.count % 4 != 1 else { return nil }
    var out = [UInt8]()
    out.reserveCapacity(chars.count * 3 / 4)
    var accumulator: UInt32 = 0
    var bitCount = 0
    for char in chars {
      let value = table[Int(char)]
      guard value != invalid else { return nil }
      accumulator = accumulator << 6 | UInt32(value)
      bitCount += 6
      if bitCount >= 8 {
        bitCount -= 8
        out.append(UInt8(truncatingIfNeeded: accumulator >> UInt32(bitCount)))
        accumulator &= (1 << UInt32(bitCount)) - 1
      }
    }
    // What is left are the unused low bits of the last character.
    if isCanonicalRequired, accumulator != 0 { return nil }
    return out
  }
}

/// Bech32 (BIP 173) without the 90-character limit, as age uses it for keys.
package enum Bech32 {
  private static let charset = Array("qpzry9x8gf2tvdw0s3jn54khce6mua7l".utf8)
  private static let charsetTable: [Int8] = {
    var table = [Int8](repeating: -1, count: 256)
    for (index, char) in charset.enumerated() { table[Int(char)] = Int8(index) }
    return table
  }()
  private static let generators: [UInt32] = [0x3b6a_57b2, 0x2650_8e6d, 0x1ea1_19fa, 0x3d42_33dd, 0x2a14_62b3]

  /// Encodes `data` (8-bit bytes) under `hrp`, in lower case.
  package static func encode(hrp: String, data: [UInt8]) -> String {
    let hrpBytes = Array(hrp.lowercased().utf8)
    let groups = convertBits(data, from: 8, to: 5, isPadding: true)!
    let checksumInput = expand(hrpBytes) + groups + [0, 0, 0, 0, 0, 0]
    let checksum = polymod(checksumInput) ^ 1
    var out = hrpBytes
    out.append(UInt8(ascii: "1"))
    for group in groups { out.append(charset[Int(group)]) }
    for index in 0..<6 { out.append(charset[Int(checksum >> UInt32(5 * (5 - index)) & 31)]) }
    return String(decoding: out, as: UTF8.self)
  }

  /// Decodes a Bech32 string into its human-readable part (case as written) and 8-bit data.
  /// Nil for mixed case, characters outside 33–126, a bad separator position, characters
  /// outside the data alphabet, a wrong checksum, or data that is not whole bytes.
  package static func decode(_ text: String) -> (hrp: String, data: [UInt8])? {
    guard let (hrp, groups) = decodeGroups(text) else { return nil }
    guard let data = convertBits(groups, from: 5, to: 8, isPadding: false) else { return nil }
    return (hrp, data)
  }

  /// Decodes to the human-readable part and the 5-bit groups (checksum removed).
  package static func decodeGroups(_ text: String) -> (hrp: String, groups: [UInt8])? {
    let chars = Array(text.utf8)
    guard chars.allSatisfy({ (33...126).contains($0) }) else { return nil }
    let hasLower = chars.contains { (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) }
    let hasUpper = chars.contains { (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0) }
    guard !(hasLower && hasUpper) else { return nil }
    guard let separator = chars.lastIndex(of: UInt8(ascii: "1")), separator >= 1, separator + 7 <= chars.count
    else { return nil }
    let hrpBytes = Array(chars[..<separator])
    var values: [UInt8] = []
    values.reserveCapacity(chars.count - separator - 1)
    for char in chars[(separator + 1)...] {
      let lower = (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(char) ? char + 32 : char
      let value = charsetTable[Int(lower)]
      guard value >= 0 else { return nil }
      values.append(UInt8(value))
    }
    let lowerHRP = hrpBytes.map { (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0) ? $0 + 32 : $0 }
    guard polymod(expand(lowerHRP) + values) == 1 else { return nil }
    return (String(decoding: hrpBytes, as: UTF8.self), Array(values.dropLast(6)))
  }

  private static func polymod(_ values: [UInt8]) -> UInt32 {
    var checksum: UInt32 = 1
    for value in values {
      let top = checksum >> 25
      checksum = (checksum & 0x1ff_ffff) << 5 ^ UInt32(value)
      for index in 0..<5 where (top >> UInt32(index)) & 1 == 1 { checksum ^= generators[index] }
    }
    return checksum
  }

  private static func expand(_ hrp: [UInt8]) -> [UInt8] {
    hrp.map { $0 >> 5 } + [0] + hrp.map { $0 & 31 }
  }

  /// Regroups bits; without padding, leftover bits must be fewer than `from` and all zero.
  private static func convertBits(_ data: [UInt8], from: Int, to: Int, isPadding: Bool) -> [UInt8]? {
    var accumulator: UInt32 = 0
    var bitCount = 0
    let maxValue: UInt32 = (1 << UInt32(to)) - 1
    var out: [UInt8] = []
    out.reserveCapacity(data.count * from / to + 1)
    for value in data {
      accumulator = accumulator << UInt32(from) | UInt32(value)
      bitCount += from
      while bitCount >= to {
        bitCount -= to
        out.append(UInt8(accumulator >> UInt32(bitCount) & maxValue))
      }
      accumulator &= (1 << UInt32(bitCount)) - 1
    }
    if isPadding {
      if bitCount > 0 { out.append(UInt8(accumulator << UInt32(to - bitCount) & maxValue)) }
    } else if bitCount >= from || accumulator != 0 {
      return nil
    }
    return out
  }
}

import COpenSSL
import Foundation

/// SHA-256 over byte buffers, in one shot or streamed.
public struct SHA256Hasher: ~Copyable {
  private let context: OpaquePointer

  /// Starts a new digest.
  public init() {
    guard let context = EVP_MD_CTX_new(), EVP_DigestInit_ex(context, EVP_sha256(), nil) == 1 else {
      fatalError("OpenSSL could not start a SHA-256 digest; the libcrypto install is broken")
    }
    self.context = context
  }

  deinit { EVP_MD_CTX_free(context) }

  /// Adds bytes to the digest.
  public mutating func update(_ bytes: UnsafeRawBufferPointer) {
    guard let base = bytes.baseAddress, bytes.count > 0 else { return }
    EVP_DigestUpdate(context, base, bytes.count)
  }

  /// Adds bytes to the digest.
  public mutating func update<Bytes: ContiguousBytes>(_ bytes: Bytes) {
    bytes.withUnsafeBytes { update($0) }
  }

  /// Returns the 32-byte digest and ends the hasher.
  public consuming func finalize() -> [UInt8] {
    var out = [UInt8](repeating: 0, count: 32)
    var length: UInt32 = 0
    EVP_DigestFinal_ex(context, &out, &length)
    return out
  }
}

/// One-shot hashing helpers.
public enum Digest {
  /// SHA-256 of `bytes`.
  public static func sha256<Bytes: ContiguousBytes>(_ bytes: Bytes) -> [UInt8] {
    var hasher = SHA256Hasher()
    hasher.update(bytes)
    return hasher.finalize()
  }

  /// Lower-case hex SHA-256 of `bytes`.
  public static func sha256Hex<Bytes: ContiguousBytes>(_ bytes: Bytes) -> String {
    Hex.encode(sha256(bytes))
  }
}

/// Lower-case hexadecimal encoding.
public enum Hex {
  private static let digits = Array("0123456789abcdef".utf8)

  /// Encodes bytes as lower-case hex.
  public static func encode<Bytes: Sequence>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
    var out = [UInt8]()
    out.reserveCapacity(bytes.underestimatedCount * 2)
    for byte in bytes {
      out.append(digits[Int(byte >> 4)])
      out.append(digits[Int(byte & 0x0f)])
    }
    return String(decoding: out, as: UTF8.self)
  }

  /// Decodes hex (either case); nil when the text is not whole bytes of hex.
  public static func decode(_ text: String) -> [UInt8]? {
    let chars = Array(text.utf8)
    guard chars.count % 2 == 0 else { return nil }
    var out = [UInt8]()
    out.reserveCapacity(chars.count / 2)
    var index = 0
    while index < chars.count {
      guard let high = nibble(chars[index]), let low = nibble(chars[index + 1]) else { return nil }
      out.append(high << 4 | low)
      index += 2
    }
    return out
  }

  private static func nibble(_ char: UInt8) -> UInt8? {
    switch char {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return char - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): return char - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): return char - UInt8(ascii: "A") + 10
    default: return nil
    }
  }
}

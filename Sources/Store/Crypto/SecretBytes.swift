import COpenSSL

/// Key material in memory: the one way tgsess holds a secret key, and the one way it is wiped.
///
/// Swift arrays are copied and freed without being wiped, so a key in a `[UInt8]` can outlive
/// its use anywhere in the heap. A `SecretBytes` owns one buffer that no copy shares; when the
/// last reference goes, the buffer is overwritten with `OPENSSL_cleanse` before it is freed.
/// Keys derived or unwrapped on the way (file key, payload key, header MAC key, X25519 shared
/// secrets, wrap keys) live in one for exactly as long as they are used. Printing one shows only
/// its length.
package final class SecretBytes: @unchecked Sendable, CustomStringConvertible, CustomDebugStringConvertible {
  // Immutable after `init`, hence `@unchecked Sendable`.
  private let storage: UnsafeMutableRawBufferPointer
  /// The number of bytes.
  package let count: Int

  /// A buffer of `count` bytes filled by `fill`; when `fill` throws, what it wrote is wiped.
  package init(count: Int, initializingWith fill: (UnsafeMutableRawBufferPointer) throws -> Void) rethrows {
    precondition(count >= 0, "negative secret length")
    // Never a zero-byte allocation: libcrypto reads a NULL pointer as "not set".
    let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(count, 1), alignment: 16)
    storage.initializeMemory(as: UInt8.self, repeating: 0)
    do {
      try fill(UnsafeMutableRawBufferPointer(rebasing: storage[0..<count]))
    } catch {
      cleanse(storage)
      storage.deallocate()
      throw error
    }
    self.storage = storage
    self.count = count
  }

  /// A copy of `bytes`, then `bytes` itself is wiped: for key material that arrived in an array
  /// (decoded from a key file, for example).
  package convenience init(wiping bytes: inout [UInt8]) {
    self.init(count: bytes.count) { target in
      bytes.withUnsafeBytes {
        if let base = $0.baseAddress { target.baseAddress!.copyMemory(from: base, byteCount: $0.count) }
      }
    }
    bytes.withUnsafeMutableBytes { cleanse($0) }
    bytes = []
  }

  /// A copy of `bytes`, which stay as they are: for constants and test vectors.
  package convenience init(copying bytes: [UInt8]) {
    var copy = bytes
    self.init(wiping: &copy)
  }

  /// `count` bytes from the DRBG reserved for long-term secrets (RAND_priv_bytes), written
  /// straight into the protected buffer.
  /// - Throws: `StoreError.crypto` when libcrypto cannot produce randomness.
  package static func random(_ count: Int) throws -> SecretBytes {
    precondition(count > 0 && count <= Int(Int32.max), "random byte count out of range")
    return try SecretBytes(count: count) { buffer in
      guard RAND_priv_bytes(buffer.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32(count)) == 1 else {
        throw OpenSSL.failure("RAND_priv_bytes")
      }
    }
  }

  deinit {
    cleanse(storage)
    storage.deallocate()
  }

  /// Calls `body` with the bytes; the pointer is never nil, even for zero bytes, and must not
  /// escape `body`.
  package func withUnsafeBytes<Result>(_ body: (UnsafeRawBufferPointer) throws -> Result) rethrows -> Result {
    try body(UnsafeRawBufferPointer(rebasing: storage[0..<count]))
  }

  /// Calls `body` with a typed, never-nil pointer and the length, as most libcrypto calls take them.
  package func withPointer<Result>(_ body: (UnsafePointer<UInt8>, Int) throws -> Result) rethrows -> Result {
    try body(UnsafePointer(storage.baseAddress!.assumingMemoryBound(to: UInt8.self)), count)
  }

  /// Bytes `range` as a new secret (the two halves of a Fernet key, for example).
  package func slice(_ range: Range<Int>) -> SecretBytes {
    precondition(range.lowerBound >= 0 && range.upperBound <= count, "secret slice out of range")
    return SecretBytes(count: range.count) { target in
      target.baseAddress!.copyMemory(from: storage.baseAddress! + range.lowerBound, byteCount: range.count)
    }
  }

  /// Whether both hold the same bytes, compared in constant time.
  package func equals(_ other: SecretBytes) -> Bool {
    guard count == other.count else { return false }
    return withPointer { left, count in
      other.withPointer { right, _ in CRYPTO_memcmp(left, right, count) == 0 }
    }
  }

  /// A plain array copy of the bytes, which nothing wipes: only for encoding a key into its
  /// file format and for tests.
  package func unprotectedCopy() -> [UInt8] {
    withUnsafeBytes { Array($0) }
  }

  package var description: String { "SecretBytes(\(count) bytes)" }
  package var debugDescription: String { description }
}

import COpenSSL

/// Glue shared by the libcrypto wrappers: error reporting and pointer plumbing.
enum OpenSSL {
  /// The error for a libcrypto call that should not fail, with libcrypto's queued reason.
  /// libcrypto's reason strings name functions and causes, never key or data bytes.
  static func failure(_ operation: String) -> StoreError {
    var reasons: [String] = []
    var code = ERR_get_error()
    while code != 0 {
      var buffer = [CChar](repeating: 0, count: 256)
      ERR_error_string_n(code, &buffer, buffer.count)
      reasons.append(buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })
      code = ERR_get_error()
    }
    let detail = reasons.isEmpty ? "no reason given" : reasons.joined(separator: "; ")
    return StoreError.crypto(
      object: "libcrypto", reason: "\(operation) failed (\(detail))",
      hint: "the OpenSSL 3 installation looks broken; reinstall libssl3 and run again")
  }

  /// Drops queued libcrypto errors after a failure that is an expected outcome (a tag that
  /// does not verify, bad padding), so they do not show up in a later, unrelated report.
  static func clearErrors() { ERR_clear_error() }
}

/// Calls `body` with a pointer that is never nil, even for empty `bytes`: several libcrypto
/// calls read a NULL pointer as "not set" rather than "empty".
@inline(__always)
func withNonNilPointer<Result>(
  _ bytes: [UInt8], _ body: (UnsafePointer<UInt8>, Int) throws -> Result
) rethrows -> Result {
  try bytes.withUnsafeBufferPointer { buffer in
    if let base = buffer.baseAddress { return try body(base, buffer.count) }
    return try withUnsafePointer(to: UInt8(0)) { try body($0, 0) }
  }
}

/// The same for raw buffers.
@inline(__always)
func withNonNilPointer<Result>(
  _ bytes: UnsafeRawBufferPointer, _ body: (UnsafePointer<UInt8>, Int) throws -> Result
) rethrows -> Result {
  if let base = bytes.baseAddress, bytes.count > 0 {
    return try body(base.assumingMemoryBound(to: UInt8.self), bytes.count)
  }
  return try withUnsafePointer(to: UInt8(0)) { try body($0, 0) }
}

/// Overwrites a buffer that held secrets, in a way the optimiser cannot remove.
@inline(__always)
func cleanse(_ buffer: UnsafeMutableRawBufferPointer) {
  guard let base = buffer.baseAddress, buffer.count > 0 else { return }
  OPENSSL_cleanse(base, buffer.count)
}

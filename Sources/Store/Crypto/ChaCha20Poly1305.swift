import COpenSSL

/// ChaCha20-Poly1305 AEAD (RFC 8439) under one key, reusable for many messages: the libcrypto
/// context is set up with the key once and only the nonce changes per message, which is what
/// age's 64 KiB payload chunks need.
package final class ChaCha20Poly1305Context {
  /// Key length in bytes.
  package static let keyByteCount = 32
  /// Nonce length in bytes.
  package static let nonceByteCount = 12
  /// Tag length in bytes.
  package static let tagByteCount = 16

  private let context: OpaquePointer
  private let isSealing: Bool

  /// Sets up a context that only seals (`isSealing`) or only opens, under `key`.
  /// - Throws: `StoreError.crypto` when libcrypto fails.
  package init(key: SecretBytes, isSealing: Bool) throws {
    precondition(key.count == Self.keyByteCount, "ChaCha20-Poly1305 keys are 32 bytes")
    guard let context = EVP_CIPHER_CTX_new() else { throw OpenSSL.failure("cipher context") }
    let status = key.withPointer { keyPointer, _ in
      EVP_CipherInit_ex(context, EVP_chacha20_poly1305(), nil, keyPointer, nil, isSealing ? 1 : 0)
    }
    guard status == 1 else {
      EVP_CIPHER_CTX_free(context)
      throw OpenSSL.failure("ChaCha20-Poly1305 setup")
    }
    self.context = context
    self.isSealing = isSealing
  }

  // Freeing the context also cleanses the key schedule libcrypto holds.
  deinit { EVP_CIPHER_CTX_free(context) }

  /// Encrypts `plaintext` into `output` as ciphertext followed by the 16-byte tag.
  /// - Returns: the number of bytes written, `plaintext.count + 16`.
  /// - Throws: `StoreError.crypto` when libcrypto fails.
  package func seal(
    nonce: UnsafeRawBufferPointer, plaintext: UnsafeRawBufferPointer, aad: UnsafeRawBufferPointer? = nil,
    into output: UnsafeMutableRawBufferPointer
  ) throws -> Int {
    precondition(isSealing, "this ChaCha20-Poly1305 context opens only")
    precondition(nonce.count == Self.nonceByteCount, "ChaCha20-Poly1305 nonces are 12 bytes")
    precondition(output.count >= plaintext.count + Self.tagByteCount, "output buffer too small")
    precondition(plaintext.count <= Int(Int32.max), "message too long for one call")
    let out = output.baseAddress!.assumingMemoryBound(to: UInt8.self)
    // Same key, new nonce: libcrypto keeps the key when cipher and key are NULL.
    guard EVP_EncryptInit_ex(context, nil, nil, nil, nonce.baseAddress!.assumingMemoryBound(to: UInt8.self)) == 1
    else { throw OpenSSL.failure("ChaCha20-Poly1305 nonce") }
    if let aad, aad.count > 0 {
      var ignored: Int32 = 0
      let status = EVP_EncryptUpdate(
        context, nil, &ignored, aad.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32(aad.count))
      guard status == 1 else { throw OpenSSL.failure("ChaCha20-Poly1305 AAD") }
    }
    var written = 0
    // libcrypto does not write outl for a zero-length update, so empty input skips the call.
    if plaintext.count > 0 {
      var length: Int32 = 0
      let status = EVP_EncryptUpdate(
        context, out, &length, plaintext.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32(plaintext.count))
      guard status == 1 else { throw OpenSSL.failure("ChaCha20-Poly1305 encrypt") }
      written = Int(length)
    }
    var finalLength: Int32 = 0
    guard EVP_EncryptFinal_ex(context, out + written, &finalLength) == 1 else {
      throw OpenSSL.failure("ChaCha20-Poly1305 encrypt")
    }
    written += Int(finalLength)
    guard
      EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_AEAD_GET_TAG, Int32(Self.tagByteCount), out + written) == 1
    else { throw OpenSSL.failure("ChaCha20-Poly1305 tag") }
    return written + Self.tagByteCount
  }

  /// Decrypts `sealed` (ciphertext followed by the tag) into `output` if the tag verifies.
  /// On failure nothing usable is left in `output`: the bytes written are wiped.
  /// - Returns: the plaintext length, or nil when the tag does not verify (wrong key, nonce or
  ///   data) or `sealed` is shorter than a tag.
  /// - Throws: `StoreError.crypto` when libcrypto fails for another reason.
  package func open(
    nonce: UnsafeRawBufferPointer, sealed: UnsafeRawBufferPointer, aad: UnsafeRawBufferPointer? = nil,
    into output: UnsafeMutableRawBufferPointer
  ) throws -> Int? {
    precondition(!isSealing, "this ChaCha20-Poly1305 context seals only")
    precondition(nonce.count == Self.nonceByteCount, "ChaCha20-Poly1305 nonces are 12 bytes")
    guard sealed.count >= Self.tagByteCount else { return nil }
    let ciphertextCount = sealed.count - Self.tagByteCount
    precondition(output.count >= ciphertextCount, "output buffer too small")
    precondition(ciphertextCount <= Int(Int32.max), "message too long for one call")
    let input = sealed.baseAddress!.assumingMemoryBound(to: UInt8.self)
    let out = output.baseAddress!.assumingMemoryBound(to: UInt8.self)
    guard EVP_DecryptInit_ex(context, nil, nil, nil, nonce.baseAddress!.assumingMemoryBound(to: UInt8.self)) == 1
    else { throw OpenSSL.failure("ChaCha20-Poly1305 nonce") }
    if let aad, aad.count > 0 {
      var ignored: Int32 = 0
      let status = EVP_DecryptUpdate(
        context, nil, &ignored, aad.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32(aad.count))
      guard status == 1 else { throw OpenSSL.failure("ChaCha20-Poly1305 AAD") }
    }
    var written = 0
    if ciphertextCount > 0 {
      var length: Int32 = 0
      guard EVP_DecryptUpdate(context, out, &length, input, Int32(ciphertextCount)) == 1 else {
        throw OpenSSL.failure("ChaCha20-Poly1305 decrypt")
      }
      written = Int(length)
    }
    let tag = UnsafeMutableRawPointer(mutating: input + ciphertextCount)
    guard EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_AEAD_SET_TAG, Int32(Self.tagByteCount), tag) == 1 else {
      throw OpenSSL.failure("ChaCha20-Poly1305 tag")
    }
    var finalLength: Int32 = 0
    guard EVP_DecryptFinal_ex(context, out + written, &finalLength) == 1 else {
      // Never leave unauthenticated plaintext behind.
      cleanse(UnsafeMutableRawBufferPointer(start: out, count: max(written, ciphertextCount)))
      OpenSSL.clearErrors()
      return nil
    }
    return written + Int(finalLength)
  }
}

/// One-shot ChaCha20-Poly1305, for small messages such as age file-key stanzas, whose plaintext
/// is itself a key.
package enum ChaCha20Poly1305 {
  /// Encrypts `plaintext`; returns ciphertext followed by the 16-byte tag.
  /// - Throws: `StoreError.crypto` when libcrypto fails.
  package static func seal(
    key: SecretBytes, nonce: [UInt8], plaintext: SecretBytes, aad: [UInt8] = []
  ) throws -> [UInt8] {
    let context = try ChaCha20Poly1305Context(key: key, isSealing: true)
    var out = [UInt8](repeating: 0, count: plaintext.count + ChaCha20Poly1305Context.tagByteCount)
    let count = try nonce.withUnsafeBytes { nonceBytes in
      try plaintext.withUnsafeBytes { plaintextBytes in
        try aad.withUnsafeBytes { aadBytes in
          try out.withUnsafeMutableBytes {
            try context.seal(nonce: nonceBytes, plaintext: plaintextBytes, aad: aadBytes, into: $0)
          }
        }
      }
    }
    precondition(count == out.count)
    return out
  }

  /// Decrypts `sealed` (ciphertext followed by the tag) straight into protected memory; nil
  /// when the tag does not verify.
  /// - Throws: `StoreError.crypto` when libcrypto fails for another reason.
  package static func open(key: SecretBytes, nonce: [UInt8], sealed: [UInt8], aad: [UInt8] = []) throws -> SecretBytes?
  {
    guard sealed.count >= ChaCha20Poly1305Context.tagByteCount else { return nil }
    let context = try ChaCha20Poly1305Context(key: key, isSealing: false)
    var isOpened = false
    let out = try SecretBytes(count: sealed.count - ChaCha20Poly1305Context.tagByteCount) { output in
      try nonce.withUnsafeBytes { nonceBytes in
        try sealed.withUnsafeBytes { sealedBytes in
          try aad.withUnsafeBytes { aadBytes in
            // The buffer's address is never nil, even for an empty message.
            isOpened = try context.open(nonce: nonceBytes, sealed: sealedBytes, aad: aadBytes, into: output) != nil
          }
        }
      }
    }
    return isOpened ? out : nil
  }
}

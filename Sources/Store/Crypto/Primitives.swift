import COpenSSL

/// Cryptographically secure random bytes from OpenSSL's DRBG.
public enum SecureRandom {
  /// Returns `count` random bytes (RAND_bytes).
  /// - Throws: `StoreError.crypto` when libcrypto cannot produce randomness (no entropy source).
  public static func bytes(_ count: Int) throws -> [UInt8] {
    try generate(count, operation: "RAND_bytes") { RAND_bytes($0, $1) }
  }

  /// Returns `count` random bytes from the DRBG reserved for long-term secrets (RAND_priv_bytes);
  /// used for private keys.
  /// - Throws: `StoreError.crypto` when libcrypto cannot produce randomness.
  public static func privateBytes(_ count: Int) throws -> [UInt8] {
    try generate(count, operation: "RAND_priv_bytes") { RAND_priv_bytes($0, $1) }
  }

  private static func generate(
    _ count: Int, operation: String, _ call: (UnsafeMutablePointer<UInt8>, Int32) -> Int32
  ) throws -> [UInt8] {
    precondition(count >= 0 && count <= Int(Int32.max), "random byte count out of range")
    if count == 0 { return [] }
    var out = [UInt8](repeating: 0, count: count)
    let status = out.withUnsafeMutableBufferPointer { call($0.baseAddress!, Int32(count)) }
    guard status == 1 else { throw OpenSSL.failure(operation) }
    return out
  }
}

/// Comparison whose duration does not depend on where the inputs differ.
package enum ConstantTime {
  /// Whether `a` and `b` are equal; lengths are compared first (they are not secret).
  package static func equals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    if a.isEmpty { return true }
    return a.withUnsafeBytes { left in
      b.withUnsafeBytes { right in CRYPTO_memcmp(left.baseAddress, right.baseAddress, left.count) == 0 }
    }
  }
}

/// HMAC-SHA-256 (RFC 2104).
package enum HMACSHA256 {
  /// Length of a tag in bytes.
  package static let byteCount = 32

  /// The 32-byte HMAC-SHA-256 of `data` under `key`.
  /// - Throws: `StoreError.crypto` when libcrypto fails.
  package static func authenticate(key: SecretBytes, data: UnsafeRawBufferPointer) throws -> [UInt8] {
    var out = [UInt8](repeating: 0, count: byteCount)
    var length: UInt32 = 0
    let result = key.withPointer { keyPointer, keyCount in
      withNonNilPointer(data) { dataPointer, dataCount in
        out.withUnsafeMutableBufferPointer {
          HMAC(EVP_sha256(), keyPointer, Int32(keyCount), dataPointer, dataCount, $0.baseAddress, &length)
        }
      }
    }
    guard result != nil, length == UInt32(byteCount) else { throw OpenSSL.failure("HMAC-SHA256") }
    return out
  }

  /// The 32-byte HMAC-SHA-256 of `data` under `key`.
  /// - Throws: `StoreError.crypto` when libcrypto fails.
  package static func authenticate(key: SecretBytes, data: [UInt8]) throws -> [UInt8] {
    try data.withUnsafeBytes { try authenticate(key: key, data: $0) }
  }
}

/// HKDF with SHA-256 (RFC 5869), extract then expand.
package enum HKDFSHA256 {
  /// Derives `count` bytes of key material from `ikm`, `salt` and `info`.
  ///
  /// An empty `salt` is the RFC's "not provided" (HashLen zero bytes). libcrypto refuses an
  /// empty salt buffer but gives exactly that result when the salt is not set at all, so an
  /// empty salt is omitted rather than passed.
  /// - Throws: `StoreError.crypto` when libcrypto fails.
  package static func derive(ikm: SecretBytes, salt: [UInt8], info: [UInt8], count: Int = 32) throws -> SecretBytes {
    precondition(count > 0 && count <= 255 * 32, "HKDF-SHA256 output length out of range")
    guard let context = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nil) else { throw OpenSSL.failure("HKDF context") }
    // Freeing the context also cleanses the key libcrypto copied into it.
    defer { EVP_PKEY_CTX_free(context) }
    guard EVP_PKEY_derive_init(context) == 1, EVP_PKEY_CTX_set_hkdf_md(context, EVP_sha256()) == 1 else {
      throw OpenSSL.failure("HKDF setup")
    }
    if !salt.isEmpty {
      let status = salt.withUnsafeBufferPointer {
        EVP_PKEY_CTX_set1_hkdf_salt(context, $0.baseAddress, Int32($0.count))
      }
      guard status == 1 else { throw OpenSSL.failure("HKDF salt") }
    }
    let keyStatus = ikm.withPointer { EVP_PKEY_CTX_set1_hkdf_key(context, $0, Int32($1)) }
    guard keyStatus == 1 else { throw OpenSSL.failure("HKDF key") }
    if !info.isEmpty {
      let status = info.withUnsafeBufferPointer {
        EVP_PKEY_CTX_add1_hkdf_info(context, $0.baseAddress, Int32($0.count))
      }
      guard status == 1 else { throw OpenSSL.failure("HKDF info") }
    }
    return try SecretBytes(count: count) { out in
      var length = count
      guard EVP_PKEY_derive(context, out.baseAddress!.assumingMemoryBound(to: UInt8.self), &length) == 1,
        length == count
      else { throw OpenSSL.failure("HKDF derive") }
    }
  }
}

/// X25519 Diffie-Hellman (RFC 7748).
package enum X25519 {
  /// Length of private keys, public keys and shared secrets.
  package static let byteCount = 32

  /// A new private key: 32 bytes from the CSPRNG (libcrypto clamps when it uses them).
  /// - Throws: `StoreError.crypto` when no randomness is available.
  package static func generatePrivateKey() throws -> SecretBytes {
    try SecretBytes.random(byteCount)
  }

  /// The public key (X25519 of the base point) for `privateKey`.
  /// - Throws: `StoreError.crypto` when libcrypto fails.
  package static func publicKey(privateKey: SecretBytes) throws -> [UInt8] {
    try withPrivateKey(privateKey) { try $0.publicKey() }
  }

  /// The shared secret X25519(`privateKey`, `publicKey`), or nil for a low-order peer (see
  /// `PrivateKey.sharedSecret(with:)`).
  /// - Throws: `StoreError.crypto` when libcrypto fails for another reason.
  package static func sharedSecret(privateKey: SecretBytes, publicKey: [UInt8]) throws -> SecretBytes? {
    try withPrivateKey(privateKey) { try $0.sharedSecret(with: publicKey) }
  }

  /// Imports `privateKey` into libcrypto once and calls `body` with it, so many agreements
  /// (one per age stanza) cost one import. The key is freed (libcrypto cleanses it) when `body`
  /// returns; it must not escape.
  /// - Throws: `StoreError.crypto` when libcrypto refuses the key, or what `body` throws.
  package static func withPrivateKey<Result>(
    _ privateKey: SecretBytes, _ body: (PrivateKey) throws -> Result
  ) throws -> Result {
    precondition(privateKey.count == byteCount, "X25519 private keys are 32 bytes")
    let key = privateKey.withPointer { EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nil, $0, $1) }
    guard let key else { throw OpenSSL.failure("X25519 private key import") }
    defer { EVP_PKEY_free(key) }
    return try body(PrivateKey(key: key))
  }

  /// A private key imported into libcrypto, valid only inside `withPrivateKey`.
  package struct PrivateKey {
    fileprivate let key: OpaquePointer

    /// The public key (X25519 of the base point).
    /// - Throws: `StoreError.crypto` when libcrypto fails.
    package func publicKey() throws -> [UInt8] {
      var out = [UInt8](repeating: 0, count: byteCount)
      var length = byteCount
      guard EVP_PKEY_get_raw_public_key(key, &out, &length) == 1, length == byteCount else {
        throw OpenSSL.failure("X25519 public key")
      }
      return out
    }

    /// The shared secret with `publicKey`, or nil when it is all zeros — the peer sent a
    /// low-order point, and RFC 7748 §6.1 says to abort. (libcrypto itself refuses to derive an
    /// all-zero secret; the explicit check stays as a second line.)
    /// - Throws: `StoreError.crypto` when libcrypto fails for another reason.
    package func sharedSecret(with publicKey: [UInt8]) throws -> SecretBytes? {
      precondition(publicKey.count == byteCount, "X25519 public keys are 32 bytes")
      let peer = publicKey.withUnsafeBufferPointer {
        EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nil, $0.baseAddress, $0.count)
      }
      guard let peer else { throw OpenSSL.failure("X25519 public key import") }
      let context = EVP_PKEY_CTX_new(key, nil)
      defer {
        EVP_PKEY_CTX_free(context)
        EVP_PKEY_free(peer)
      }
      guard let context else { throw OpenSSL.failure("X25519 context") }
      guard EVP_PKEY_derive_init(context) == 1, EVP_PKEY_derive_set_peer(context, peer) == 1 else {
        throw OpenSSL.failure("X25519 setup")
      }
      var isDerived = false
      let secret = SecretBytes(count: byteCount) { out in
        var length = byteCount
        isDerived =
          EVP_PKEY_derive(context, out.baseAddress!.assumingMemoryBound(to: UInt8.self), &length) == 1
          && length == byteCount
      }
      guard isDerived else {
        // libcrypto fails the derivation exactly when the result would be all zeros.
        OpenSSL.clearErrors()
        return nil
      }
      let isAllZero = secret.withUnsafeBytes { $0.allSatisfy { $0 == 0 } }
      return isAllZero ? nil : secret
    }
  }
}

/// AES-128 in CBC mode with PKCS#7 padding, as Fernet uses it.
package enum AES128CBC {
  /// Encrypts and pads `plaintext`; the result is a non-empty multiple of 16 bytes.
  /// - Throws: `StoreError.crypto` when libcrypto fails.
  package static func encrypt(key: SecretBytes, iv: [UInt8], plaintext: [UInt8]) throws -> [UInt8] {
    guard let out = try run(key: key, iv: iv, input: plaintext, isEncrypting: true) else {
      throw OpenSSL.failure("AES-128-CBC encrypt")
    }
    return out
  }

  /// Decrypts and unpads `ciphertext`; nil when its length is not a positive multiple of 16 or
  /// the padding is wrong.
  /// - Throws: `StoreError.crypto` when libcrypto fails for another reason.
  package static func decrypt(key: SecretBytes, iv: [UInt8], ciphertext: [UInt8]) throws -> [UInt8]? {
    guard !ciphertext.isEmpty, ciphertext.count % 16 == 0 else { return nil }
    return try run(key: key, iv: iv, input: ciphertext, isEncrypting: false)
  }

  private static func run(key: SecretBytes, iv: [UInt8], input: [UInt8], isEncrypting: Bool) throws -> [UInt8]? {
    precondition(key.count == 16 && iv.count == 16, "AES-128-CBC takes a 16-byte key and IV")
    guard let context = EVP_CIPHER_CTX_new() else { throw OpenSSL.failure("cipher context") }
    defer { EVP_CIPHER_CTX_free(context) }
    let initStatus = key.withPointer { keyPointer, _ in
      iv.withUnsafeBufferPointer { ivBuffer in
        EVP_CipherInit_ex(context, EVP_aes_128_cbc(), nil, keyPointer, ivBuffer.baseAddress, isEncrypting ? 1 : 0)
      }
    }
    guard initStatus == 1 else { throw OpenSSL.failure("AES-128-CBC setup") }
    var out = [UInt8](repeating: 0, count: input.count + 16)
    var written = 0
    let isDone = out.withUnsafeMutableBufferPointer { outBuffer -> Bool in
      let base = outBuffer.baseAddress!
      if !input.isEmpty {
        var length: Int32 = 0
        let status = input.withUnsafeBufferPointer {
          EVP_CipherUpdate(context, base, &length, $0.baseAddress, Int32($0.count))
        }
        guard status == 1 else { return false }
        written = Int(length)
      }
      var finalLength: Int32 = 0
      guard EVP_CipherFinal_ex(context, base + written, &finalLength) == 1 else {
        cleanse(UnsafeMutableRawBufferPointer(outBuffer))
        return false
      }
      written += Int(finalLength)
      return true
    }
    guard isDone else {
      if isEncrypting { throw OpenSSL.failure("AES-128-CBC") }
      OpenSSL.clearErrors()
      return nil
    }
    return Array(out[0..<written])
  }
}

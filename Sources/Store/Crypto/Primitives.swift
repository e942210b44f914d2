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
  package static func authenticate(key: [UInt8], data: UnsafeRawBufferPointer) throws -> [UInt8] {
    var out = [UInt8](repeating: 0, count: byteCount)
    var length: UInt32 = 0
    let result = withNonNilPointer(key) { keyPointer, keyCount in
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
  package static func authenticate(key: [UInt8], data: [UInt8]) throws -> [UInt8] {
    try data.withUnsafeBytes { try authenticate(key: key, data: $0) }
  }
}

/// HKDF with SHA-256 (RFC 5869), extract then expand.
package enum HKDFSHA256 {
  /// Derives `count` bytes from `ikm`, `salt` and `info`.
  ///
  /// An empty `salt` is the RFC's "not provided" (HashLen zero bytes). libcrypto refuses an
  /// empty salt buffer but gives exactly that result when the salt is not set at all, so an
  /// empty salt is omitted rather than passed.
  /// - Throws: `StoreError.crypto` when libcrypto fails.
  package static func derive(ikm: [UInt8], salt: [UInt8], info: [UInt8], count: Int = 32) throws -> [UInt8] {
    precondition(count > 0 && count <= 255 * 32, "HKDF-SHA256 output length out of range")
    guard let context = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nil) else { throw OpenSSL.failure("HKDF context") }
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
    let keyStatus = withNonNilPointer(ikm) { EVP_PKEY_CTX_set1_hkdf_key(context, $0, Int32($1)) }
    guard keyStatus == 1 else { throw OpenSSL.failure("HKDF key") }
    if !info.isEmpty {
      let status = info.withUnsafeBufferPointer {
        EVP_PKEY_CTX_add1_hkdf_info(context, $0.baseAddress, Int32($0.count))
      }
      guard status == 1 else { throw OpenSSL.failure("HKDF info") }
    }
    var out = [UInt8](repeating: 0, count: count)
    var length = count
    guard EVP_PKEY_derive(context, &out, &length) == 1, length == count else { throw OpenSSL.failure("HKDF derive") }
    return out
  }
}

/// X25519 Diffie-Hellman (RFC 7748).
package enum X25519 {
  /// Length of private keys, public keys and shared secrets.
  package static let byteCount = 32

  /// A new private key: 32 bytes from the CSPRNG (libcrypto clamps when it uses them).
  /// - Throws: `StoreError.crypto` when no randomness is available.
  package static func generatePrivateKey() throws -> [UInt8] {
    try SecureRandom.privateBytes(byteCount)
  }

  /// The public key (X25519 of the base point) for `privateKey`.
  /// - Throws: `StoreError.crypto` when libcrypto fails.
  package static func publicKey(privateKey: [UInt8]) throws -> [UInt8] {
    precondition(privateKey.count == byteCount, "X25519 private keys are 32 bytes")
    let key = privateKey.withUnsafeBufferPointer {
      EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nil, $0.baseAddress, $0.count)
    }
    guard let key else { throw OpenSSL.failure("X25519 private key import") }
    defer { EVP_PKEY_free(key) }
    var out = [UInt8](repeating: 0, count: byteCount)
    var length = byteCount
    guard EVP_PKEY_get_raw_public_key(key, &out, &length) == 1, length == byteCount else {
      throw OpenSSL.failure("X25519 public key")
    }
    return out
  }

  /// The shared secret X25519(`privateKey`, `publicKey`), or nil when it is all zeros — the
  /// peer sent a low-order point, and RFC 7748 §6.1 says to abort. (libcrypto itself refuses to
  /// derive an all-zero secret; the explicit check stays as a second line.)
  /// - Throws: `StoreError.crypto` when libcrypto fails for another reason.
  package static func sharedSecret(privateKey: [UInt8], publicKey: [UInt8]) throws -> [UInt8]? {
    precondition(privateKey.count == byteCount && publicKey.count == byteCount, "X25519 keys are 32 bytes")
    let key = privateKey.withUnsafeBufferPointer {
      EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nil, $0.baseAddress, $0.count)
    }
    guard let key else { throw OpenSSL.failure("X25519 private key import") }
    defer { EVP_PKEY_free(key) }
    let peer = publicKey.withUnsafeBufferPointer {
      EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nil, $0.baseAddress, $0.count)
    }
    guard let peer else { throw OpenSSL.failure("X25519 public key import") }
    defer { EVP_PKEY_free(peer) }
    guard let context = EVP_PKEY_CTX_new(key, nil) else { throw OpenSSL.failure("X25519 context") }
    defer { EVP_PKEY_CTX_free(context) }
    guard EVP_PKEY_derive_init(context) == 1, EVP_PKEY_derive_set_peer(context, peer) == 1 else {
      throw OpenSSL.failure("X25519 setup")
    }
    var out = [UInt8](repeating: 0, count: byteCount)
    var length = byteCount
    guard EVP_PKEY_derive(context, &out, &length) == 1, length == byteCount else {
      // libcrypto fails the derivation exactly when the result would be all zeros.
      OpenSSL.clearErrors()
      return nil
    }
    if out.allSatisfy({ $0 == 0 }) { return nil }
    return out
  }
}

/// scrypt (RFC 7914), used to unwrap passphrase-encrypted age files.
package enum Scrypt {
  /// Derives `count` bytes with N = 2^`logN`, `r` and `p`, allowing exactly the memory that needs.
  /// - Throws: `StoreError.crypto` when libcrypto fails (including running out of memory).
  package static func derive(
    password: [UInt8], salt: [UInt8], logN: Int, r: Int = 8, p: Int = 1, count: Int = 32
  ) throws -> [UInt8] {
    precondition((1...40).contains(logN) && r > 0 && p > 0 && count > 0, "scrypt parameters out of range")
    let n = UInt64(1) << UInt64(logN)
    // libcrypto's default cap is 32 MiB; this is its own formula (128·r·(N+2) + 128·r·p) plus slack.
    let maxMemory = 128 * UInt64(r) * (n + 2) + 128 * UInt64(r) * UInt64(p) + 1024 * 1024
    var out = [UInt8](repeating: 0, count: count)
    let status = withNonNilPointer(password) { passwordPointer, passwordCount in
      withNonNilPointer(salt) { saltPointer, saltCount in
        UnsafeRawPointer(passwordPointer).withMemoryRebound(to: CChar.self, capacity: max(passwordCount, 1)) {
          EVP_PBE_scrypt($0, passwordCount, saltPointer, saltCount, n, UInt64(r), UInt64(p), maxMemory, &out, count)
        }
      }
    }
    guard status == 1 else { throw OpenSSL.failure("scrypt (log2 N = \(logN))") }
    return out
  }
}

/// AES-128 in CBC mode with PKCS#7 padding, as Fernet uses it.
package enum AES128CBC {
  /// Encrypts and pads `plaintext`; the result is a non-empty multiple of 16 bytes.
  /// - Throws: `StoreError.crypto` when libcrypto fails.
  package static func encrypt(key: [UInt8], iv: [UInt8], plaintext: [UInt8]) throws -> [UInt8] {
    guard let out = try run(key: key, iv: iv, input: plaintext, isEncrypting: true) else {
      throw OpenSSL.failure("AES-128-CBC encrypt")
    }
    return out
  }

  /// Decrypts and unpads `ciphertext`; nil when its length is not a positive multiple of 16 or
  /// the padding is wrong.
  /// - Throws: `StoreError.crypto` when libcrypto fails for another reason.
  package static func decrypt(key: [UInt8], iv: [UInt8], ciphertext: [UInt8]) throws -> [UInt8]? {
    guard !ciphertext.isEmpty, ciphertext.count % 16 == 0 else { return nil }
    return try run(key: key, iv: iv, input: ciphertext, isEncrypting: false)
  }

  private static func run(key: [UInt8], iv: [UInt8], input: [UInt8], isEncrypting: Bool) throws -> [UInt8]? {
    precondition(key.count == 16 && iv.count == 16, "AES-128-CBC takes a 16-byte key and IV")
    guard let context = EVP_CIPHER_CTX_new() else { throw OpenSSL.failure("cipher context") }
    defer { EVP_CIPHER_CTX_free(context) }
    let initStatus = key.withUnsafeBufferPointer { keyBuffer in
      iv.withUnsafeBufferPointer { ivBuffer in
        EVP_CipherInit_ex(
          context, EVP_aes_128_cbc(), nil, keyBuffer.baseAddress, ivBuffer.baseAddress, isEncrypting ? 1 : 0)
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

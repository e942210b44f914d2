import COpenSSL

/// Ed25519 signatures (RFC 8032, pure Ed25519) through libcrypto's one-shot
/// `EVP_DigestSign`/`EVP_DigestVerify` with no digest, and the key encodings stock OpenSSL reads:
/// PKCS#8 PEM for the private key (`openssl genpkey -algorithm ed25519` writes the same) and
/// DER SubjectPublicKeyInfo for the public key (what `-----BEGIN PUBLIC KEY-----` wraps).
package enum Ed25519 {
  /// Length of a private key (the RFC's 32-byte seed) and of a public key.
  package static let keyByteCount = 32
  /// Length of a signature.
  package static let signatureByteCount = 64

  /// A new private key: 32 bytes from the CSPRNG, which is what RFC 8032 §5.1.5 asks for.
  /// - Throws: `StoreError.crypto` when no randomness is available.
  package static func generatePrivateKey() throws -> SecretBytes {
    try SecretBytes.random(keyByteCount)
  }

  /// The public key of `privateKey`.
  /// - Throws: `StoreError.crypto` when libcrypto fails.
  package static func publicKey(privateKey: SecretBytes) throws -> [UInt8] {
    precondition(privateKey.count == keyByteCount, "Ed25519 private keys are 32 bytes")
    let key = privateKey.withPointer { EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nil, $0, $1) }
    defer { EVP_PKEY_free(key) }
    guard let key else { throw OpenSSL.failure("Ed25519 private key import") }
    return try rawPublicKey(of: key)
  }

  /// The 64-byte signature of `message` under `privateKey`.
  /// - Throws: `StoreError.crypto` when libcrypto fails.
  package static func sign(_ message: [UInt8], privateKey: SecretBytes) throws -> [UInt8] {
    precondition(privateKey.count == keyByteCount, "Ed25519 private keys are 32 bytes")
    // libcrypto cleanses its copy of the key when the EVP_PKEY is freed.
    let key = privateKey.withPointer { EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nil, $0, $1) }
    let context = EVP_MD_CTX_new()
    defer {
      EVP_MD_CTX_free(context)
      EVP_PKEY_free(key)
    }
    guard let key else { throw OpenSSL.failure("Ed25519 private key import") }
    guard let context else { throw OpenSSL.failure("Ed25519 signing context") }
    // No digest: Ed25519 hashes the message itself (SHA-512), in one shot.
    guard EVP_DigestSignInit(context, nil, nil, nil, key) == 1 else { throw OpenSSL.failure("Ed25519 sign setup") }
    var signature = [UInt8](repeating: 0, count: signatureByteCount)
    var length = signatureByteCount
    let status = withNonNilPointer(message) { EVP_DigestSign(context, &signature, &length, $0, $1) }
    guard status == 1, length == signatureByteCount else { throw OpenSSL.failure("Ed25519 sign") }
    return signature
  }

  /// Whether `signature` is a valid signature of `message` under `publicKey`. A signature or key
  /// of the wrong length, or a key libcrypto refuses, verifies nothing.
  /// - Throws: `StoreError.crypto` when libcrypto fails for a reason other than a bad signature.
  package static func verify(signature: [UInt8], message: [UInt8], publicKey: [UInt8]) throws -> Bool {
    guard signature.count == signatureByteCount, publicKey.count == keyByteCount else { return false }
    let key = publicKey.withUnsafeBufferPointer {
      EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nil, $0.baseAddress, $0.count)
    }
    let context = EVP_MD_CTX_new()
    defer {
      EVP_MD_CTX_free(context)
      EVP_PKEY_free(key)
    }
    guard let key else {
      OpenSSL.clearErrors()
      return false
    }
    guard let context else { throw OpenSSL.failure("Ed25519 verifying context") }
    guard EVP_DigestVerifyInit(context, nil, nil, nil, key) == 1 else { throw OpenSSL.failure("Ed25519 verify setup") }
    let status = withNonNilPointer(message) { messagePointer, messageCount in
      signature.withUnsafeBufferPointer {
        EVP_DigestVerify(context, $0.baseAddress, $0.count, messagePointer, messageCount)
      }
    }
    if status == 1 { return true }
    // 0 is "does not verify"; libcrypto may still queue a reason for it.
    if status == 0 {
      OpenSSL.clearErrors()
      return false
    }
    throw OpenSSL.failure("Ed25519 verify")
  }

  // MARK: - Encodings

  /// `privateKey` as unencrypted PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), in protected
  /// memory: the bytes of a key file.
  /// - Throws: `StoreError.crypto` when libcrypto fails.
  package static func pkcs8PEM(privateKey: SecretBytes) throws -> SecretBytes {
    precondition(privateKey.count == keyByteCount, "Ed25519 private keys are 32 bytes")
    let key = privateKey.withPointer { EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nil, $0, $1) }
    // A memory BIO cleanses its buffer when it is freed.
    let bio = BIO_new(BIO_s_mem())
    defer {
      BIO_free(bio)
      EVP_PKEY_free(key)
    }
    guard let key, let bio else { throw OpenSSL.failure("Ed25519 PEM encoding setup") }
    guard PEM_write_bio_PKCS8PrivateKey(bio, key, nil, nil, 0, nil, nil) == 1 else {
      throw OpenSSL.failure("Ed25519 PEM encoding")
    }
    let pending = Int(BIO_ctrl_pending(bio))
    return try SecretBytes(count: pending) { buffer in
      guard BIO_read(bio, buffer.baseAddress, Int32(pending)) == Int32(pending) else {
        throw OpenSSL.failure("Ed25519 PEM encoding read-out")
      }
    }
  }

  /// The 32-byte private key in a PEM private key (PKCS#8, or any form libcrypto reads), or
  /// nil when `pem` holds no unencrypted Ed25519 private key. An encrypted key fails instead of
  /// prompting for a password.
  /// - Throws: `StoreError.crypto` when libcrypto fails for another reason.
  package static func privateKey(pem: SecretBytes) throws -> SecretBytes? {
    guard pem.count > 0, pem.count <= Int(Int32.max) else { return nil }
    let bio = pem.withPointer { BIO_new_mem_buf($0, Int32($1)) }
    let key = bio.flatMap { tgsess_read_private_key_pem($0) }
    defer {
      EVP_PKEY_free(key)
      BIO_free(bio)
    }
    guard bio != nil else { throw OpenSSL.failure("PEM reader setup") }
    guard let key, EVP_PKEY_get_id(key) == EVP_PKEY_ED25519 else {
      OpenSSL.clearErrors()
      return nil
    }
    return try SecretBytes(count: keyByteCount) { buffer in
      var length = keyByteCount
      guard
        EVP_PKEY_get_raw_private_key(key, buffer.baseAddress!.assumingMemoryBound(to: UInt8.self), &length) == 1,
        length == keyByteCount
      else { throw OpenSSL.failure("Ed25519 private key export") }
    }
  }

  /// `publicKey` as DER SubjectPublicKeyInfo (44 bytes; the body of a `BEGIN PUBLIC KEY` PEM).
  /// - Throws: `StoreError.crypto` when libcrypto fails.
  package static func subjectPublicKeyInfo(publicKey: [UInt8]) throws -> [UInt8] {
    precondition(publicKey.count == keyByteCount, "Ed25519 public keys are 32 bytes")
    let key = publicKey.withUnsafeBufferPointer {
      EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nil, $0.baseAddress, $0.count)
    }
    defer { EVP_PKEY_free(key) }
    guard let key else { throw OpenSSL.failure("Ed25519 public key import") }
    let length = i2d_PUBKEY(key, nil)
    guard length > 0 else { throw OpenSSL.failure("Ed25519 public key encoding") }
    var out = [UInt8](repeating: 0, count: Int(length))
    let written = out.withUnsafeMutableBufferPointer { buffer -> Int32 in
      var cursor = buffer.baseAddress
      return i2d_PUBKEY(key, &cursor)
    }
    guard written == length else { throw OpenSSL.failure("Ed25519 public key encoding") }
    return out
  }

  /// The 32-byte public key in DER SubjectPublicKeyInfo, or nil when `der` is not exactly the
  /// canonical encoding of one Ed25519 public key (another algorithm, trailing bytes, garbage).
  /// - Throws: `StoreError.crypto` when libcrypto fails for another reason.
  package static func publicKey(subjectPublicKeyInfo der: [UInt8]) throws -> [UInt8]? {
    guard !der.isEmpty, der.count <= 1024 else { return nil }
    var consumed = 0
    let key = der.withUnsafeBufferPointer { buffer -> OpaquePointer? in
      var cursor: UnsafePointer<UInt8>? = buffer.baseAddress
      let key = d2i_PUBKEY(nil, &cursor, buffer.count)
      consumed = cursor.map { $0 - buffer.baseAddress! } ?? 0
      return key
    }
    defer { EVP_PKEY_free(key) }
    guard let key, consumed == der.count, EVP_PKEY_get_id(key) == EVP_PKEY_ED25519 else {
      OpenSSL.clearErrors()
      return nil
    }
    let raw = try rawPublicKey(of: key)
    // Canonical: exactly what libcrypto writes for this key, so one key has one spelling.
    guard try subjectPublicKeyInfo(publicKey: raw) == der else { return nil }
    return raw
  }

  private static func rawPublicKey(of key: OpaquePointer) throws -> [UInt8] {
    var out = [UInt8](repeating: 0, count: keyByteCount)
    var length = keyByteCount
    guard EVP_PKEY_get_raw_public_key(key, &out, &length) == 1, length == keyByteCount else {
      throw OpenSSL.failure("Ed25519 public key export")
    }
    return out
  }
}

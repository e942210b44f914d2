/// Encrypts a stream to age X25519 recipients, writing an age v1 binary file to `output`.
///
/// Memory stays bounded: one 64 KiB plaintext chunk and one sealed chunk. A full chunk is
/// sealed only once more data arrives, because the final chunk carries a different nonce flag
/// and may itself be a full 64 KiB; `finish()` seals the last one.
public final class AgeEncryptingWriter: ByteSink {
  private let output: ByteSink
  private let cipher: ChaCha20Poly1305Context
  private let plaintext: UnsafeMutableRawBufferPointer
  private let sealed: UnsafeMutableRawBufferPointer
  private var bufferedCount = 0
  private var counter: UInt64 = 0
  private var isFinished = false
  private var failure: Error?

  /// Writes the header (one X25519 stanza per recipient) and the payload nonce to `output`.
  /// - Throws: `AgeError(.key)` when `recipients` is empty or holds a low-order key,
  ///   `StoreError.crypto` when libcrypto fails, or what `output` throws.
  public init(recipients: [AgeRecipient], output: ByteSink) throws {
    guard !recipients.isEmpty else {
      throw AgeError(.key, object: "age recipients", reason: "no recipient given to encrypt to")
    }
    self.output = output
    // The file key and the payload key are wiped when this returns; libcrypto's cipher context
    // keeps its own copy of the payload key and cleanses it when it is freed.
    let fileKey = try SecretBytes.random(AgeFormat.fileKeyByteCount)
    let header = try AgeHeader.make(fileKey: fileKey, recipients: recipients)
    let nonce = try SecureRandom.bytes(AgeFormat.payloadNonceByteCount)
    let payloadKey = try HKDFSHA256.derive(ikm: fileKey, salt: nonce, info: AgeFormat.payloadKeyInfo)
    cipher = try ChaCha20Poly1305Context(key: payloadKey, isSealing: true)
    plaintext = .allocate(byteCount: AgeFormat.chunkByteCount, alignment: 16)
    sealed = .allocate(byteCount: AgeFormat.sealedChunkByteCount, alignment: 16)
    try output.write(header + nonce)
  }

  deinit {
    cleanse(plaintext)
    plaintext.deallocate()
    sealed.deallocate()
  }

  /// Encrypts `bytes`, sealing and writing each 64 KiB chunk once more data follows it.
  /// - Throws: `StoreError.crypto` when libcrypto fails, or what the output throws; after an
  ///   error every later call throws it again.
  public func write(_ bytes: UnsafeRawBufferPointer) throws {
    precondition(!isFinished, "AgeEncryptingWriter.write called after finish()")
    if let failure { throw failure }
    var offset = 0
    while offset < bytes.count {
      if bufferedCount == AgeFormat.chunkByteCount { try sealChunk(isLast: false) }
      let count = min(AgeFormat.chunkByteCount - bufferedCount, bytes.count - offset)
      (plaintext.baseAddress! + bufferedCount).copyMemory(from: bytes.baseAddress! + offset, byteCount: count)
      bufferedCount += count
      offset += count
    }
  }

  /// Seals and writes the final chunk (just a tag when nothing was written). The output is
  /// not closed or synced; that is the caller's job.
  /// - Throws: `StoreError.crypto` when libcrypto fails, or what the output throws.
  public func finish() throws {
    precondition(!isFinished, "AgeEncryptingWriter.finish called twice")
    if let failure { throw failure }
    try sealChunk(isLast: true)
    isFinished = true
    cleanse(plaintext)
  }

  private func sealChunk(isLast: Bool) throws {
    do {
      let nonce = AgeStreamNonce.make(counter: counter, isLast: isLast)
      let count = try nonce.withUnsafeBytes { nonceBytes in
        try cipher.seal(
          nonce: nonceBytes, plaintext: UnsafeRawBufferPointer(rebasing: plaintext[0..<bufferedCount]), into: sealed)
      }
      try output.write(UnsafeRawBufferPointer(rebasing: sealed[0..<count]))
      counter += 1
      bufferedCount = 0
    } catch {
      failure = error
      throw error
    }
  }
}

/// Decrypts an age v1 binary file from `input`, a chunk at a time.
///
/// `init` reads and strictly parses the header, unwraps the file key and verifies the header
/// MAC. `read(into:)` hands out plaintext only from chunks whose tag verified, and returns 0
/// only after the final chunk verified and the input ended there. Memory stays bounded: one
/// sealed chunk and one plaintext chunk.
public final class AgeDecryptingReader: ByteSource {
  /// What errors name (usually the archive path).
  public let objectName: String

  private let input: ByteSource
  private var leftover: [UInt8]
  private var leftoverOffset: Int
  private let cipher: ChaCha20Poly1305Context
  private let sealed: UnsafeMutableRawBufferPointer
  private let plaintext: UnsafeMutableRawBufferPointer
  private var plaintextStart = 0
  private var plaintextEnd = 0
  private var counter: UInt64 = 0
  private var isFinished = false
  private var pendingError: Error?
  private var failure: Error?

  /// Opens an age file with X25519 identities. Passphrase (scrypt) files are refused: tgsess
  /// archives are encrypted to recipients.
  /// - Parameters:
  ///   - identities: tried in order against every X25519 stanza (at most 1,000 per header).
  ///   - objectName: what errors name, such as the archive path.
  /// - Throws: `AgeError` of kind `.header`, `.noMatch` or `.hmac`; what `input` throws.
  public init(identities: [AgeIdentity], input: ByteSource, objectName: String) throws {
    self.objectName = objectName
    self.input = input
    let (header, rest) = try AgeHeader.read(from: input, object: objectName)
    // Wiped when this returns, like the payload key derived from it.
    let fileKey = try header.unwrapFileKey(identities: identities, object: objectName)
    try header.verifyMAC(fileKey: fileKey, object: objectName)
    var leftover = rest
    var leftoverOffset = 0
    var nonce = [UInt8](repeating: 0, count: AgeFormat.payloadNonceByteCount)
    let nonceCount = try nonce.withUnsafeMutableBytes {
      try Self.fill($0, leftover: &leftover, leftoverOffset: &leftoverOffset, input: input).count
    }
    guard nonceCount == AgeFormat.payloadNonceByteCount else {
      throw AgeError(.header, object: objectName, reason: "the payload nonce is missing or short")
    }
    let payloadKey = try HKDFSHA256.derive(ikm: fileKey, salt: nonce, info: AgeFormat.payloadKeyInfo)
    cipher = try ChaCha20Poly1305Context(key: payloadKey, isSealing: false)
    self.leftover = leftover
    self.leftoverOffset = leftoverOffset
    // Allocated last: nothing below can throw, so `deinit` always frees them.
    sealed = .allocate(byteCount: AgeFormat.sealedChunkByteCount, alignment: 16)
    plaintext = .allocate(byteCount: AgeFormat.chunkByteCount, alignment: 16)
  }

  deinit {
    cleanse(plaintext)
    plaintext.deallocate()
    sealed.deallocate()
  }

  /// Copies verified plaintext into `buffer`, decrypting the next chunk when needed.
  /// - Returns: the number of bytes copied; 0 only at the authenticated end of the payload.
  /// - Throws: `AgeError(.payload)` for a chunk that does not verify, a missing final chunk or
  ///   data after it; what the input throws. After an error every later call throws it again.
  public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
    if let failure { throw failure }
    guard buffer.count > 0 else { return 0 }
    do {
      while plaintextStart == plaintextEnd {
        if let pendingError { throw pendingError }
        if isFinished { return 0 }
        try decryptNextChunk()
      }
      let count = min(buffer.count, plaintextEnd - plaintextStart)
      buffer.baseAddress!.copyMemory(from: plaintext.baseAddress! + plaintextStart, byteCount: count)
      plaintextStart += count
      return count
    } catch {
      failure = error
      cleanse(plaintext)
      plaintextStart = 0
      plaintextEnd = 0
      throw error
    }
  }

  /// age's reference STREAM reader: a short chunk must be final; a full one is tried as
  /// non-final, then as final; a final chunk may be empty only if it is the first.
  private func decryptNextChunk() throws {
    let (count, isAtEnd) = try Self.fill(
      sealed, leftover: &leftover, leftoverOffset: &leftoverOffset, input: input)
    guard count > 0 else {
      throw AgeError(
        .payload, object: objectName,
        reason: counter == 0
          ? "the payload has no chunks" : "the payload is truncated (it ends before the final chunk)")
    }
    var isLast = false
    if count < AgeFormat.sealedChunkByteCount {
      guard count > ChaCha20Poly1305Context.tagByteCount || counter == 0 else {
        throw AgeError(.payload, object: objectName, reason: "the final chunk is empty")
      }
      isLast = true
    }
    let chunk = UnsafeRawBufferPointer(rebasing: sealed[0..<count])
    var opened = try open(chunk, isLast: isLast)
    if opened == nil && !isLast {
      isLast = true
      opened = try open(chunk, isLast: true)
    }
    guard let opened else {
      throw AgeError(.payload, object: objectName, reason: "chunk \(counter) does not authenticate")
    }
    guard counter < UInt64.max else {
      throw AgeError(.payload, object: objectName, reason: "too many chunks")
    }
    counter += 1
    plaintextStart = 0
    plaintextEnd = opened
    guard isLast else { return }
    isFinished = true
    // A full-size final chunk did not reach the end of the input: check nothing follows.
    if !isAtEnd {
      var probe: UInt8 = 0
      let extra = try withUnsafeMutableBytes(of: &probe) {
        try Self.fill($0, leftover: &leftover, leftoverOffset: &leftoverOffset, input: input).count
      }
      if extra > 0 {
        pendingError = AgeError(.payload, object: objectName, reason: "data follows the final chunk")
      }
    }
  }

  private func open(_ chunk: UnsafeRawBufferPointer, isLast: Bool) throws -> Int? {
    let nonce = AgeStreamNonce.make(counter: counter, isLast: isLast)
    return try nonce.withUnsafeBytes { try cipher.open(nonce: $0, sealed: chunk, into: plaintext) }
  }

  /// Fills `buffer` from the bytes left over after the header, then from `input`.
  /// - Returns: the bytes filled, and whether the input ended before the buffer was full.
  private static func fill(
    _ buffer: UnsafeMutableRawBufferPointer, leftover: inout [UInt8], leftoverOffset: inout Int, input: ByteSource
  ) throws -> (count: Int, isAtEnd: Bool) {
    var filled = 0
    if leftoverOffset < leftover.count {
      let count = min(buffer.count, leftover.count - leftoverOffset)
      leftover.withUnsafeBytes {
        buffer.baseAddress!.copyMemory(from: $0.baseAddress! + leftoverOffset, byteCount: count)
      }
      leftoverOffset += count
      filled = count
      if leftoverOffset == leftover.count { leftover = [] }
    }
    while filled < buffer.count {
      let count = try input.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[filled...]))
      if count == 0 { return (filled, true) }
      filled += count
    }
    return (filled, false)
  }
}

/// STREAM nonces: 11-byte big-endian chunk counter, then 1 for the final chunk, else 0.
private enum AgeStreamNonce {
  static func make(counter: UInt64, isLast: Bool) -> [UInt8] {
    var nonce = [UInt8](repeating: 0, count: ChaCha20Poly1305Context.nonceByteCount)
    withUnsafeBytes(of: counter.bigEndian) { nonce.replaceSubrange(3..<11, with: $0) }
    nonce[11] = isLast ? 1 : 0
    return nonce
  }
}

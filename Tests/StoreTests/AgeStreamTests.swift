import Foundation
import Store
import TestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// Encrypts `plaintext` in memory, feeding the writer `pieceSize` bytes at a time.
func ageEncrypt(_ plaintext: [UInt8], to recipients: [AgeRecipient], pieceSize: Int = 10_000) throws -> [UInt8] {
  let sink = ByteArraySink()
  let writer = try AgeEncryptingWriter(recipients: recipients, output: sink)
  var offset = 0
  while offset < plaintext.count {
    let end = min(offset + pieceSize, plaintext.count)
    try plaintext[offset..<end].withUnsafeBytes { try writer.write($0) }
    offset = end
  }
  try writer.finish()
  return sink.bytes
}

/// What a decryption released before it ended, and how it ended.
struct AgeDecryption {
  var released: [UInt8]
  var error: Error?

  var kind: AgeError.Kind? { (error as? AgeError)?.kind }
}

/// Decrypts `file` in memory, keeping whatever the reader released even when it fails.
func ageDecrypt(_ file: [UInt8], identities: [AgeIdentity], readSize: Int = 16 * 1024) -> AgeDecryption {
  var released: [UInt8] = []
  do {
    let reader = try AgeDecryptingReader(identities: identities, input: ByteArraySource(file), objectName: "test.age")
    var buffer = [UInt8](repeating: 0, count: readSize)
    while true {
      let count = try buffer.withUnsafeMutableBytes { try reader.read(into: $0) }
      if count == 0 { return AgeDecryption(released: released, error: nil) }
      released.append(contentsOf: buffer[0..<count])
    }
  } catch {
    return AgeDecryption(released: released, error: error)
  }
}

/// Offset of the first payload byte (the nonce) in an age file.
func agePayloadOffset(_ file: [UInt8]) -> Int {
  let marker = Array("\n--- ".utf8)
  guard let range = file.firstRange(of: marker), let end = file[range.upperBound...].firstIndex(of: 0x0a) else {
    fatalError("no MAC line in the age file")
  }
  return end + 1
}

/// Records the size of every write.
final class RecordingSink: ByteSink {
  var writeSizes: [Int] = []
  var total = 0
  func write(_ bytes: UnsafeRawBufferPointer) throws {
    writeSizes.append(bytes.count)
    total += bytes.count
  }
}

/// Records the size of every read request.
final class RecordingSource: ByteSource {
  let inner: ByteSource
  var requestSizes: [Int] = []
  init(_ inner: ByteSource) { self.inner = inner }
  func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
    requestSizes.append(buffer.count)
    return try inner.read(into: buffer)
  }
}

@Suite struct AgeStreamTests {
  static let sizes = [0, 1, 65535, 65536, 65537, 131072, 200000]

  @Test(arguments: sizes)
  func roundTripsWithTheSpecifiedChunking(size: Int) throws {
    let identity = try AgeIdentity.generate()
    let plaintext = try SecureRandom.bytes(size)
    for pieceSize in [1000, 65536, 65537, max(size, 1)] {
      let file = try ageEncrypt(plaintext, to: [identity.recipient], pieceSize: pieceSize)
      // A full 64 KiB final chunk stays final: n bytes take max(1, ceil(n / 64 KiB)) chunks.
      let chunks = max(1, (size + 65535) / 65536)
      #expect(file.count - agePayloadOffset(file) == 16 + size + 16 * chunks)
      let result = ageDecrypt(file, identities: [identity])
      #expect(result.error == nil)
      #expect(result.released == plaintext)
    }
  }

  @Test func headerHasTheCanonicalShape() throws {
    let identity = try AgeIdentity.generate()
    let file = try ageEncrypt([1, 2, 3], to: [identity.recipient, AgeIdentity.generate().recipient])
    let header = String(decoding: file[..<agePayloadOffset(file)], as: UTF8.self)
    let lines = header.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    #expect(lines.count == 7)
    #expect(lines[0] == "age-encryption.org/v1")
    for index in [1, 3] {
      #expect(lines[index].hasPrefix("-> X25519 ") && lines[index].count == 10 + 43)
      #expect(lines[index + 1].count == 43)  // 32-byte body: one short line
    }
    #expect(lines[5].hasPrefix("--- ") && lines[5].count == 47)
    #expect(lines[6] == "")
  }

  @Test func everyRecipientCanDecrypt() throws {
    let identities = try (0..<3).map { _ in try AgeIdentity.generate() }
    let plaintext = try SecureRandom.bytes(70_000)
    let file = try ageEncrypt(plaintext, to: identities.map(\.recipient))
    for identity in identities {
      #expect(ageDecrypt(file, identities: [identity]).released == plaintext)
    }
    let stranger = try AgeIdentity.generate()
    #expect(ageDecrypt(file, identities: [stranger, identities[2]]).released == plaintext)
    let refused = ageDecrypt(file, identities: [stranger])
    #expect(refused.kind == .noMatch)
    #expect(refused.released.isEmpty)
    #expect(ageDecrypt(file, identities: []).kind == .noMatch)
  }

  @Test func memoryStaysBoundedToOneChunk() throws {
    let identity = try AgeIdentity.generate()
    let plaintext = try SecureRandom.bytes(1_000_000)
    let sink = RecordingSink()
    let writer = try AgeEncryptingWriter(recipients: [identity.recipient], output: sink)
    try plaintext.withUnsafeBytes { try writer.write($0) }
    try writer.finish()
    // The header write, then one write per sealed chunk of at most 64 KiB + 16.
    #expect(sink.writeSizes.dropFirst().allSatisfy { $0 <= 65552 })
    #expect(sink.writeSizes.count == 1 + 16)

    let file = try ageEncrypt(plaintext, to: [identity.recipient])
    let source = RecordingSource(ByteArraySource(file))
    let reader = try AgeDecryptingReader(identities: [identity], input: source, objectName: "bounded")
    #expect(try ByteStreams.copy(from: reader, to: RecordingSink()) == 1_000_000)
    #expect(source.requestSizes.allSatisfy { $0 <= 65552 })
  }

  // MARK: Tampering

  @Test func alteredHeadersFailWithTheRightKind() throws {
    let identity = try AgeIdentity.generate()
    let file = try ageEncrypt(try SecureRandom.bytes(1000), to: [identity.recipient])
    let text = String(decoding: file[..<agePayloadOffset(file)], as: UTF8.self)
    let payload = Array(file[agePayloadOffset(file)...])
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)

    func rebuilt(_ change: (inout [String]) -> Void) -> [UInt8] {
      var copy = lines
      change(&copy)
      return Array(copy.joined(separator: "\n").utf8) + payload
    }
    /// Replaces the base64 character at `index` with another one, keeping the text canonical.
    func swapped(_ line: String, at index: Int) -> String {
      var chars = Array(line)
      chars[index] = chars[index] == "A" ? "B" : "A"
      return String(chars)
    }

    let cases: [(String, [UInt8], AgeError.Kind)] = [
      ("version line", rebuilt { $0[0] = "age-encryption.org/v2" }, .header),
      ("CRLF", rebuilt { $0[0] += "\r" }, .header),
      ("stanza share", rebuilt { $0[1] = swapped($0[1], at: 20) }, .noMatch),
      ("stanza body", rebuilt { $0[2] = swapped($0[2], at: 10) }, .noMatch),
      ("MAC", rebuilt { $0[3] = swapped($0[3], at: 20) }, .hmac),
      ("MAC line space", rebuilt { $0[3] = "---" + $0[3].dropFirst(4) }, .header),
      ("extra stanza", rebuilt { $0.insert(contentsOf: ["-> grease x", ""], at: 3) }, .hmac),
      ("padded body", rebuilt { $0[2] += "=" }, .header),
    ]
    for (name, altered, kind) in cases {
      let result = ageDecrypt(altered, identities: [identity])
      #expect(result.kind == kind, "\(name): expected \(kind), got \(String(describing: result.error))")
      #expect(result.released.isEmpty, "\(name): released plaintext")
    }
    #expect(ageDecrypt(rebuilt { _ in }, identities: [identity]).error == nil)
  }

  @Test func alteredPayloadReleasesOnlyVerifiedChunks() throws {
    let identity = try AgeIdentity.generate()
    let plaintext = try SecureRandom.bytes(200_000)
    let file = try ageEncrypt(plaintext, to: [identity.recipient])
    let start = agePayloadOffset(file) + 16  // first chunk
    let sealedChunk = 65536 + 16

    // (what, byte offset to flip, plaintext bytes that may be released)
    let cases: [(String, Int, Int)] = [
      ("payload nonce", start - 5, 0),
      ("first chunk", start + 100, 0),
      ("first chunk tag", start + sealedChunk - 1, 0),
      ("second chunk", start + sealedChunk + 7, 65536),
      ("last chunk", start + 3 * sealedChunk + 10, 3 * 65536),
      ("last byte (final tag)", file.count - 1, 3 * 65536),
    ]
    for (name, offset, releasable) in cases {
      var altered = file
      altered[offset] ^= 0x01
      let result = ageDecrypt(altered, identities: [identity])
      #expect(result.kind == .payload, "\(name): got \(String(describing: result.error))")
      #expect(result.released == Array(plaintext.prefix(releasable)), "\(name): released unverified plaintext")
    }
  }

  @Test func truncationAndTrailingDataAreDetected() throws {
    let identity = try AgeIdentity.generate()
    let plaintext = try SecureRandom.bytes(200_000)
    let file = try ageEncrypt(plaintext, to: [identity.recipient])
    let payloadStart = agePayloadOffset(file)
    let firstChunk = payloadStart + 16
    let sealedChunk = 65536 + 16

    let cases: [(String, Int, AgeError.Kind, Int)] = [
      ("empty file", 0, .header, 0),
      ("inside the version line", 10, .header, 0),
      ("inside the MAC line", payloadStart - 10, .header, 0),
      ("no payload nonce", payloadStart, .header, 0),
      ("short payload nonce", payloadStart + 8, .header, 0),
      ("no chunks", firstChunk, .payload, 0),
      ("inside the first chunk", firstChunk + 1000, .payload, 0),
      ("after the first chunk", firstChunk + sealedChunk, .payload, 65536),
      ("after the third chunk", firstChunk + 3 * sealedChunk, .payload, 3 * 65536),
      ("last byte missing", file.count - 1, .payload, 3 * 65536),
    ]
    for (name, length, kind, releasable) in cases {
      let result = ageDecrypt(Array(file.prefix(length)), identities: [identity])
      #expect(result.kind == kind, "\(name): got \(String(describing: result.error))")
      #expect(result.released == Array(plaintext.prefix(releasable)), "\(name): released unverified plaintext")
    }

    let trailing = ageDecrypt(file + [0], identities: [identity])
    #expect(trailing.kind == .payload)
    #expect(trailing.released == Array(plaintext.prefix(3 * 65536)))

    // A full-size final chunk followed by data: the final chunk verified, the extra byte is refused.
    let exact = try SecureRandom.bytes(65536)
    let exactFile = try ageEncrypt(exact, to: [identity.recipient])
    let extra = ageDecrypt(exactFile + [0x42], identities: [identity])
    #expect(extra.kind == .payload)
    #expect(extra.released == exact)
  }

  @Test func failuresAreStickyAndZeroOnlyComesAtTheVerifiedEnd() throws {
    let identity = try AgeIdentity.generate()
    let file = try ageEncrypt(try SecureRandom.bytes(100_000), to: [identity.recipient])
    let reader = try AgeDecryptingReader(
      identities: [identity], input: ByteArraySource(Array(file.dropLast())), objectName: "sticky.age")
    var buffer = [UInt8](repeating: 0, count: 100_000)
    #expect(try buffer.withUnsafeMutableBytes { try reader.read(into: $0) } == 65536)
    for _ in 0..<2 {
      #expect(throws: AgeError.self) { try buffer.withUnsafeMutableBytes { try reader.read(into: $0) } }
    }
    let empty = try AgeDecryptingReader(
      identities: [identity], input: ByteArraySource(try ageEncrypt([], to: [identity.recipient])), objectName: "e")
    #expect(try buffer.withUnsafeMutableBytes { try empty.read(into: $0) } == 0)
    #expect(try buffer.withUnsafeMutableBytes { try empty.read(into: $0) } == 0)
  }

  // MARK: Errors

  @Test func errorsConvertToStoreErrorsWithHints() throws {
    let identity = try AgeIdentity.generate()
    let file = try ageEncrypt([1, 2, 3], to: [identity.recipient])
    let wrong = try AgeIdentity.generate()
    let path = "/backups/2026-11-25.tar.zst.age"

    let noMatch = try #require(
      #expect(throws: AgeError.self) {
        _ = try AgeDecryptingReader(identities: [wrong], input: ByteArraySource(file), objectName: path)
      })
    #expect(noMatch.kind == .noMatch)
    guard case .crypto(let object, _, let hint) = noMatch.storeError else {
      Issue.record("expected StoreError.crypto")
      return
    }
    #expect(object == path)
    #expect(hint == "wrong or missing identity: pass the identity that matches one of the archive's recipients")
    let message = noMatch.storeError.localizedDescription
    #expect(message.hasPrefix(path + ": "))
    for secret in [wrong.string, identity.string, String(wrong.string.dropFirst(16).prefix(10))] {
      #expect(!message.contains(secret))
    }

    let truncated = ageDecrypt(Array(file.dropLast()), identities: [identity])
    let payloadError = try #require(truncated.error as? AgeError)
    #expect(payloadError.hint == "the archive is truncated or corrupted: use another backup")
    #expect(payloadError.storeError.localizedDescription.contains("test.age: "))
  }

  @Test func fileDescriptorSinkReportsENOSPCWithThePath() throws {
    let fd = open("/dev/full", O_WRONLY | O_CLOEXEC)
    try #require(fd >= 0, "/dev/full is needed for this test")
    defer { close(fd) }
    let sink = FileDescriptorSink(fd: fd, path: "/backups/out.age")
    let error = #expect(throws: StoreError.self) { try sink.write([1, 2, 3]) }
    #expect(error == .io(path: "/backups/out.age", operation: "write", errno: ENOSPC))
    #expect(error?.localizedDescription.contains("/backups/out.age") == true)
    #expect(error?.localizedDescription.contains("no space left on device") == true)

    let source = FileDescriptorSource(fd: -1, path: "/nowhere")
    var buffer = [UInt8](repeating: 0, count: 10)
    let readError = #expect(throws: StoreError.self) {
      try buffer.withUnsafeMutableBytes { try source.read(into: $0) }
    }
    #expect(readError == .io(path: "/nowhere", operation: "read", errno: EBADF))
  }

  @Test func streamsThroughFileDescriptors() throws {
    let directory = try TemporaryDirectory()
    let identity = try AgeIdentity.generate()
    let plaintext = try SecureRandom.bytes(150_000)
    let path = directory.file("data.age")
    let out = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
    try #require(out >= 0)
    let writer = try AgeEncryptingWriter(
      recipients: [identity.recipient], output: FileDescriptorSink(fd: out, path: path))
    try plaintext.withUnsafeBytes { try writer.write($0) }
    try writer.finish()
    close(out)

    let input = open(path, O_RDONLY | O_CLOEXEC)
    try #require(input >= 0)
    defer { close(input) }
    let reader = try AgeDecryptingReader(
      identities: [identity], input: FileDescriptorSource(fd: input, path: path), objectName: path)
    let sink = ByteArraySink()
    #expect(try ByteStreams.copy(from: reader, to: sink) == 150_000)
    #expect(sink.bytes == plaintext)
  }

  @Test func writerNeedsARecipient() {
    let error = #expect(throws: AgeError.self) {
      _ = try AgeEncryptingWriter(recipients: [], output: ByteArraySink())
    }
    #expect(error?.kind == .key)
  }
}

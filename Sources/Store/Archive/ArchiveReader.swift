import Foundation

/// Opens an archive, decrypts and decompresses it as a stream, and checks it against its
/// manifest before a single byte lands anywhere: the first entry must be `manifest.json`; every
/// other entry must be a regular file with a safe relative path, listed once in the manifest,
/// of the listed size, with the listed SHA-256; nothing listed may be missing; nothing may
/// decompress past the limits.
public enum ArchiveReader {
  /// Limits that keep a hostile archive from filling the disk.
  public struct Limits: Sendable {
    /// The most bytes all entries together may declare.
    public var totalByteCount: Int64 = 64 * 1024 * 1024 * 1024
    /// The most entries an archive may hold.
    public var entryCount: Int = 2_000_000
    public init() {}
  }

  /// Called with `manifest.json`'s bytes and the manifest they decode to, before any other entry
  /// is read (`ArchiveVerifier` authenticates the archive here).
  public typealias ManifestCheck = (_ bytes: Data, _ manifest: Manifest) throws -> Void

  /// Called with `manifest.json`'s bytes before they are parsed (`ArchiveVerifier` compares
  /// their SHA-256 with the signed one here).
  public typealias ManifestBytesCheck = (_ bytes: Data) throws -> Void

  /// Called with the SHA-256 (lower-case hex) and size of the archive file as it was read, once
  /// everything else passed and before `read` returns (`ArchiveVerifier` compares them with the
  /// signed ones, so the file checked is the file read).
  public typealias FileCheck = (_ sha256: String, _ byteCount: Int64) throws -> Void

  /// Reads the archive at `path`, verifying it entirely; with `extractTo`, writes each entry
  /// below that directory (which must exist) as it is verified. Callers extract into a staging
  /// directory and only act once this returns. Readers that act on an archive go through
  /// `ArchiveVerifier`, which calls this.
  /// - Parameters:
  ///   - isEncrypted: whether the file is age-encrypted (default: by its name).
  ///   - expected: the manifest a writer just wrote and its bytes: the archive's manifest must be
  ///     those bytes exactly, and is not decoded again (a writer's read-back).
  ///   - extracting: which entries `extractTo` receives (default: all); every entry is verified.
  ///   - authenticateManifestBytes: run on the manifest's bytes before they are parsed.
  ///   - checkManifest: run on the manifest before anything else in the archive is read.
  ///   - checkFile: run on the hash and size of every byte of the file, read to its end, last.
  /// - Returns: the manifest.
  /// - Throws: `StoreError` naming the archive and what failed (wrong identity, truncated or
  ///   tampered data, a hostile entry), or what a check throws.
  public static func read(
    path: String, identities: [AgeIdentity], extractTo: String? = nil, limits: Limits = Limits(),
    isEncrypted: Bool? = nil, expected: (manifest: Manifest, bytes: Data)? = nil,
    extracting: ((Manifest.Entry) -> Bool)? = nil, authenticateManifestBytes: ManifestBytesCheck? = nil,
    checkManifest: ManifestCheck? = nil, checkFile: FileCheck? = nil
  ) throws -> Manifest {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else {
      if errno == ENOENT { throw StoreError.missing(path: path, hint: "list archives with: tgsess list") }
      throw StoreError.io(path: path, operation: "open", errno: errno)
    }
    defer { close(fd) }
    // The file is hashed as it is read, under the decryption: what is checked is what was read.
    let hashed = checkFile.map { _ in HashingSource(input: FileDescriptorSource(fd: fd, path: path)) }
    let file: ByteSource = hashed ?? FileDescriptorSource(fd: fd, path: path)
    let isEncrypted = isEncrypted ?? path.hasSuffix(ArchiveName.encryptedSuffix)
    let source: ByteSource
    if isEncrypted {
      if identities.isEmpty {
        throw StoreError.crypto(
          object: path, reason: "archive is encrypted and no age identity was given",
          hint: "pass --identity FILE (the key kept off the host)")
      }
      do {
        source = try AgeDecryptingReader(identities: identities, input: file, objectName: path)
      } catch let error as AgeError {
        throw error.storeError
      }
    } else {
      source = file
    }
    do {
      let manifest = try verifyStream(
        source: source, objectName: path, extractTo: extractTo, limits: limits, expected: expected,
        extracting: extracting, authenticateManifestBytes: authenticateManifestBytes, checkManifest: checkManifest)
      if let hashed, let checkFile {
        // The decoders stop at their end; whatever follows in the file counts too.
        try drain(hashed)
        try checkFile(hashed.digest(), hashed.byteCount)
      }
      return manifest
    } catch let error as AgeError {
      throw error.storeError
    }
  }

  /// An entry path compared byte for byte. String equality treats canonically equivalent
  /// Unicode as equal ("é" and "e" + U+0301), the filesystem does not: a tar entry matched to a
  /// manifest entry that way would be extracted under a name the manifest does not list (found
  /// by the archive-reader fuzz property).
  struct PathKey: Hashable {
    let bytes: [UInt8]
    init(_ path: String) { bytes = Array(path.utf8) }
  }

  static func verifyStream(
    source: ByteSource, objectName: String, extractTo: String?, limits: Limits,
    expected written: (manifest: Manifest, bytes: Data)? = nil, extracting: ((Manifest.Entry) -> Bool)? = nil,
    authenticateManifestBytes: ManifestBytesCheck? = nil, checkManifest: ManifestCheck? = nil
  ) throws -> Manifest {
    func refuse(_ reason: String) -> StoreError {
      .invalid(path: objectName, reason: reason, hint: "refusing this archive; use another backup")
    }
    let reader = try TarZstdReader(objectName: objectName) { buffer in try source.read(into: buffer) }
    guard let first = try reader.next() else { throw refuse("empty archive (no manifest.json)") }
    guard first.path == "manifest.json", first.kind == .file else {
      throw refuse("first entry is '\(first.path)', not manifest.json")
    }
    guard first.size <= Manifest.maximumByteCount else { throw refuse("manifest.json is too large") }
    let manifest: Manifest
    if let written {
      // Compared as it streams: a 10,000-entry manifest is not held twice.
      var offset = 0
      var isSame = first.size == Int64(written.bytes.count)
      _ = try reader.readEntry(limit: Manifest.maximumByteCount) { chunk in
        guard isSame, offset + chunk.count <= written.bytes.count else {
          isSame = false
          return
        }
        isSame = written.bytes.withUnsafeBytes { bytes in
          chunk.isEmpty || memcmp(bytes.baseAddress! + offset, chunk.baseAddress!, chunk.count) == 0
        }
        offset += chunk.count
      }
      guard isSame, offset == written.bytes.count else { throw refuse("manifest.json differs from the one written") }
      manifest = written.manifest
      try authenticateManifestBytes?(written.bytes)
      try checkManifest?(written.bytes, manifest)
    } else {
      var manifestData = Data()
      manifestData.reserveCapacity(Int(first.size))
      _ = try reader.readEntry(limit: Manifest.maximumByteCount) { manifestData.append(contentsOf: $0) }
      try authenticateManifestBytes?(manifestData)
      manifest = try Manifest.decode(manifestData, objectName: objectName)
      try checkManifest?(manifestData, manifest)
    }
    if written != nil {
      // A writer's read-back: the entries must be exactly the ones written, in the order
      // written, so they are checked one by one against the list (no index of 10,000 paths).
      try verifyInOrder(reader: reader, entries: manifest.entries, refuse: refuse)
      try drain(source)
      return manifest
    }
    guard manifest.entries.count <= limits.entryCount else { throw refuse("too many entries") }
    let declared = manifest.entries.reduce(Int64(0)) { $0 + $1.size }
    guard declared <= limits.totalByteCount else {
      throw refuse("entries declare \(declared) bytes, over the \(limits.totalByteCount)-byte limit")
    }
    var expected = Dictionary(uniqueKeysWithValues: manifest.entries.map { (PathKey($0.path), $0) })
    // A path may not be both a file and a directory of another entry: extraction would fail
    // half-way on a clash the manifest already shows.
    for entry in manifest.entries {
      var parent = FileSystem.parentDirectory(of: entry.path)
      while !parent.isEmpty {
        if expected[PathKey(parent)] != nil {
          throw refuse("entry '\(entry.path)' cannot be extracted: '\(parent)' is also an entry")
        }
        parent = FileSystem.parentDirectory(of: parent)
      }
    }
    var seen = Set<PathKey>()
    // The staging directories made so far: scratch (each file is renamed out of them, then its
    // destination's directory synced), so they are created without syncing, and each once.
    var madeDirectories = Set<String>()
    while let header = try reader.next() {
      guard ArchivePath.isSafe(header.path) else { throw refuse("unsafe entry path '\(header.path)'") }
      guard header.kind == .file else {
        throw refuse("entry '\(header.path)' is a \(header.kind.rawValue), not a regular file")
      }
      guard seen.insert(PathKey(header.path)).inserted else { throw refuse("entry '\(header.path)' appears twice") }
      guard let entry = expected.removeValue(forKey: PathKey(header.path)) else {
        throw refuse("entry '\(header.path)' is not in the manifest")
      }
      guard header.size == entry.size else {
        throw refuse("entry '\(header.path)' is \(header.size) bytes, the manifest says \(entry.size)")
      }
      var hasher = SHA256Hasher()
      var output: Int32 = -1
      var outputPath = ""
      if let extractTo, extracting?(entry) ?? true {
        outputPath = extractTo + "/" + header.path
        let parent = FileSystem.parentDirectory(of: outputPath)
        if !madeDirectories.contains(parent) {
          try FileSystem.makeDirectory(parent, isDurable: false)
          madeDirectories.insert(parent)
        }
        output = open(outputPath, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, FileSystem.fileMode)
        guard output >= 0 else {
          let code = errno
          // Something already there, or a file where a directory must be: the archive's doing.
          if [EEXIST, ENOTDIR, EISDIR, ELOOP].contains(code) {
            throw refuse("entry '\(header.path)' cannot be extracted (\(String(cString: strerror(code))))")
          }
          throw StoreError.io(path: outputPath, operation: "create", errno: code)
        }
      }
      defer { if output >= 0 { close(output) } }
      let count = try reader.readEntry(limit: entry.size) { chunk in
        hasher.update(chunk)
        if output >= 0 { try FileSystem.writeAll(fd: output, bytes: chunk, path: outputPath) }
      }
      guard count == entry.size else {
        throw refuse("entry '\(header.path)' ended after \(count) of \(entry.size) bytes")
      }
      guard Hex.encode(hasher.finalize()) == entry.sha256 else {
        throw refuse("entry '\(header.path)' does not match its SHA-256 in the manifest")
      }
    }
    if let missing = expected.values.map(\.path).sorted().first {
      throw refuse("entry '\(missing)' is in the manifest but not in the archive")
    }
    try drain(source)
    return manifest
  }

  /// Reads `source` to its end. Anything after the tar end (garbage appended to the zstd stream)
  /// is caught by the decoder, and the age reader refuses data after its final chunk; draining
  /// makes both look.
  static func drain(_ source: ByteSource) throws {
    var sink = [UInt8](repeating: 0, count: 64 * 1024)
    while try sink.withUnsafeMutableBytes({ try source.read(into: $0) }) > 0 {}
  }

  /// Reads every entry after the manifest and checks it is `entries[i]`: same path, a regular
  /// file of the listed size and SHA-256, and nothing more or less.
  static func verifyInOrder(reader: TarZstdReader, entries: [Manifest.Entry], refuse: (String) -> StoreError) throws {
    var index = 0
    while let header = try reader.next() {
      guard index < entries.count else { throw refuse("entry '\(header.path)' is not in the manifest") }
      let entry = entries[index]
      guard Array(header.path.utf8) == Array(entry.path.utf8), header.kind == .file, header.size == entry.size else {
        throw refuse("entry '\(header.path)' is not the manifest's entry '\(entry.path)' (\(entry.size) bytes)")
      }
      var hasher = SHA256Hasher()
      let count = try reader.readEntry(limit: entry.size) { hasher.update($0) }
      guard count == entry.size, Hex.encode(hasher.finalize()) == entry.sha256 else {
        throw refuse("entry '\(header.path)' does not match its SHA-256 in the manifest")
      }
      index += 1
    }
    if index < entries.count {
      throw refuse("entry '\(entries[index].path)' is in the manifest but not in the archive")
    }
  }
}

/// Passes bytes read from `input` on while hashing and counting them.
final class HashingSource: ByteSource {
  private let input: ByteSource
  private var hasher: SHA256Hasher? = SHA256Hasher()
  private(set) var byteCount: Int64 = 0

  init(input: ByteSource) { self.input = input }

  func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
    let count = try input.read(into: buffer)
    if count > 0 {
      hasher!.update(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
      byteCount += Int64(count)
    }
    return count
  }

  /// The SHA-256 of everything read, in lower-case hex; ends the hashing.
  func digest() -> String {
    guard let done = hasher.take() else { return "" }
    return Hex.encode(done.finalize())
  }
}

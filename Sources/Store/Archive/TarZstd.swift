import CArchive
import Foundation

/// Where a byte stream goes: an age writer, a file, a hasher.
public typealias ByteOutput = (UnsafeRawBufferPointer) throws -> Void
/// Where a byte stream comes from: fills the buffer, returns the count (0 at the end).
public typealias ByteInput = (UnsafeMutableRawBufferPointer) throws -> Int

/// Writes a pax tar stream compressed with zstd through libarchive, to any `ByteOutput`.
/// Memory stays bounded: entries are streamed in 64 KiB blocks.
public final class TarZstdWriter {
  private final class Context {
    let output: ByteOutput
    var error: (any Error)?
    init(output: @escaping ByteOutput) { self.output = output }
  }

  private var archive: OpaquePointer?
  private let context: Context
  private let objectName: String

  /// Starts a compressed tar stream.
  /// - Parameters:
  ///   - level: zstd compression level (1–19).
  ///   - objectName: names the archive in errors.
  /// - Throws: `StoreError.invalid` when libarchive cannot set the stream up.
  public init(level: Int = 3, objectName: String, output: @escaping ByteOutput) throws {
    self.objectName = objectName
    context = Context(output: output)
    guard let archive = archive_write_new() else {
      throw StoreError.invalid(path: objectName, reason: "libarchive could not allocate a writer", hint: "check memory")
    }
    self.archive = archive
    try check(archive_write_set_format_pax_restricted(archive), "set pax format")
    try check(archive_write_add_filter_zstd(archive), "add zstd filter")
    try check(
      archive_write_set_filter_option(archive, "zstd", "compression-level", String(level)), "set zstd level")
    // No padding after the compressed stream: stock zstd would see trailing garbage.
    try check(archive_write_set_bytes_in_last_block(archive, 1), "set block padding")
    let client = Unmanaged.passUnretained(context).toOpaque()
    try check(
      archive_write_open2(
        archive, client, nil,
        { _, client, buffer, length in
          let context = Unmanaged<Context>.fromOpaque(client!).takeUnretainedValue()
          do {
            try context.output(UnsafeRawBufferPointer(start: buffer, count: length))
            return length
          } catch {
            context.error = error
            return -1
          }
        }, nil, nil), "open")
  }

  deinit {
    if let archive { archive_write_free(archive) }
  }

  private func check(_ status: Int32, _ operation: String) throws {
    guard status < ARCHIVE_WARN else { return }
    if let error = context.error { throw error }
    let message = archive.flatMap { archive_error_string($0) }.map { String(cString: $0) } ?? "unknown error"
    throw StoreError.invalid(
      path: objectName, reason: "libarchive \(operation) failed: \(message)", hint: "check free space and run again")
  }

  /// Adds a regular file whose bytes `body` streams through the given writer; `size` must be exact.
  /// - Throws: `StoreError` or what `body`/the output throws.
  public func addFile(
    path: String, size: Int64, mode: mode_t = 0o600, modified: Date = Date(),
    body: (_ write: (UnsafeRawBufferPointer) throws -> Void) throws -> Void
  ) throws {
    guard let archive else { return }
    let entry = archive_entry_new()
    defer { archive_entry_free(entry) }
    archive_entry_set_pathname_utf8(entry, path)
    archive_entry_set_filetype(entry, TGSESS_AE_IFREG)
    archive_entry_set_perm(entry, mode)
    archive_entry_set_size(entry, size)
    archive_entry_set_mtime(entry, time_t(modified.timeIntervalSince1970), 0)
    archive_entry_set_uid(entry, 0)
    archive_entry_set_gid(entry, 0)
    try check(archive_write_header(archive, entry), "write header of \(path)")
    var written: Int64 = 0
    try body { bytes in
      guard let base = bytes.baseAddress, bytes.count > 0 else { return }
      let count = archive_write_data(archive, base, bytes.count)
      if count < 0 { try check(Int32(count), "write \(path)") }
      written += Int64(bytes.count)
    }
    guard written == size else {
      throw StoreError.invalid(
        path: objectName, reason: "entry \(path) changed size while archived (\(written) of \(size) bytes)",
        hint: "run the backup again")
    }
    try check(archive_write_finish_entry(archive), "finish \(path)")
  }

  /// Adds `data` as a regular file.
  /// - Throws: `StoreError`.
  public func addFile(path: String, data: Data, mode: mode_t = 0o600, modified: Date = Date()) throws {
    try addFile(path: path, size: Int64(data.count), mode: mode, modified: modified) { write in
      try data.withUnsafeBytes { try write($0) }
    }
  }

  /// Adds the file at `sourcePath`, streamed, and returns its size and SHA-256 (empty when
  /// `hashes` is false).
  /// - Throws: `StoreError` naming the source or the archive.
  @discardableResult
  public func addFile(
    path: String, contentsOf sourcePath: String, mode: mode_t = 0o600, modified: Date = Date(), hashes: Bool = true
  ) throws -> (size: Int64, sha256: String) {
    let fd = open(sourcePath, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw StoreError.io(path: sourcePath, operation: "open", errno: errno) }
    defer { close(fd) }
    var info = stat()
    guard fstat(fd, &info) == 0 else { throw StoreError.io(path: sourcePath, operation: "stat", errno: errno) }
    return try addFile(
      path: path, fd: fd, sourceName: sourcePath, offset: 0, length: Int64(info.st_size), mode: mode,
      modified: modified, hashes: hashes)
  }

  /// Adds `length` bytes at `offset` of the open file `fd` (named `sourceName` in errors),
  /// streamed, and returns their size and SHA-256 (empty when `hashes` is false).
  /// - Throws: `StoreError` naming the source or the archive.
  @discardableResult
  public func addFile(
    path: String, fd: Int32, sourceName: String, offset: Int64, length: Int64, mode: mode_t = 0o600,
    modified: Date = Date(), hashes: Bool = true
  ) throws -> (size: Int64, sha256: String) {
    var hasher = SHA256Hasher()
    try addFile(path: path, size: length, mode: mode, modified: modified) { write in
      var buffer = [UInt8](repeating: 0, count: Int(min(length, 256 * 1024)))
      var position = offset
      let end = offset + length
      while position < end {
        let want = Int(min(Int64(buffer.count), end - position))
        let count = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, want, off_t(position)) }
        if count < 0 {
          if errno == EINTR { continue }
          throw StoreError.io(path: sourceName, operation: "read", errno: errno)
        }
        if count == 0 { break }
        position += Int64(count)
        try buffer.withUnsafeBytes { raw in
          let chunk = UnsafeRawBufferPointer(rebasing: raw[0..<count])
          if hashes { hasher.update(chunk) }
          try write(chunk)
        }
      }
    }
    return (length, hashes ? Hex.encode(hasher.finalize()) : "")
  }

  /// Ends the tar stream and flushes the compressor.
  /// - Throws: `StoreError` or what the output throws.
  public func finish() throws {
    guard let archive else { return }
    try check(archive_write_close(archive), "close")
    archive_write_free(archive)
    self.archive = nil
  }
}

/// The header of one entry read from a tar stream.
public struct TarEntryHeader: Sendable, Equatable {
  public enum Kind: String, Sendable, Equatable {
    case file, directory, symlink, hardlink, device, fifo, socket, other
  }
  public var path: String
  public var kind: Kind
  public var size: Int64
  public var mode: mode_t
  public var modified: Date
  /// The link target of a symlink or hardlink entry.
  public var linkTarget: String?
}

/// Reads a zstd-compressed tar stream through libarchive from any `ByteInput`. Only tar and
/// zstd are enabled, so nothing else is ever parsed.
public final class TarZstdReader {
  private final class Context {
    let input: ByteInput
    var buffer = [UInt8](repeating: 0, count: 64 * 1024)
    var error: (any Error)?
    init(input: @escaping ByteInput) { self.input = input }
  }

  private var archive: OpaquePointer?
  private let context: Context
  private let objectName: String

  /// Opens the stream; `objectName` names the archive in errors.
  /// - Throws: `StoreError.invalid` when the stream is not zstd-compressed tar.
  public init(objectName: String, input: @escaping ByteInput) throws {
    self.objectName = objectName
    context = Context(input: input)
    guard let archive = archive_read_new() else {
      throw StoreError.invalid(path: objectName, reason: "libarchive could not allocate a reader", hint: "check memory")
    }
    self.archive = archive
    archive_read_support_filter_zstd(archive)
    archive_read_support_format_tar(archive)
    let client = Unmanaged.passUnretained(context).toOpaque()
    try check(
      archive_read_open2(
        archive, client, nil,
        { _, client, bufferOut in
          let context = Unmanaged<Context>.fromOpaque(client!).takeUnretainedValue()
          do {
            let count = try context.buffer.withUnsafeMutableBytes { raw in
              bufferOut?.pointee = UnsafeRawPointer(raw.baseAddress)
              return try context.input(raw)
            }
            return count
          } catch {
            context.error = error
            return -1
          }
        }, nil, nil), "open")
  }

  deinit {
    if let archive { archive_read_free(archive) }
  }

  private func check(_ status: Int32, _ operation: String) throws {
    guard status < ARCHIVE_WARN else { return }
    if let error = context.error { throw error }
    let message = archive.flatMap { archive_error_string($0) }.map { String(cString: $0) } ?? "unknown error"
    throw StoreError.invalid(
      path: objectName, reason: "not a readable tar.zst stream (\(operation): \(message))",
      hint: "the archive is damaged; use another backup")
  }

  /// The next entry's header, or nil at the end of the archive.
  /// - Throws: `StoreError` for a damaged stream, or what the input throws.
  public func next() throws -> TarEntryHeader? {
    guard let archive else { return nil }
    var entry: OpaquePointer?
    let status = archive_read_next_header(archive, &entry)
    if status == ARCHIVE_EOF { return nil }
    try check(status, "read header")
    guard let entry else { return nil }
    let path =
      archive_entry_pathname_utf8(entry).map { String(cString: $0) }
      ?? archive_entry_pathname(entry).map { String(cString: $0) } ?? ""
    let type = UInt32(archive_entry_filetype(entry))
    var kind: TarEntryHeader.Kind
    switch type {
    case TGSESS_AE_IFREG: kind = .file
    case TGSESS_AE_IFDIR: kind = .directory
    case TGSESS_AE_IFLNK: kind = .symlink
    case TGSESS_AE_IFCHR, TGSESS_AE_IFBLK: kind = .device
    case TGSESS_AE_IFIFO: kind = .fifo
    case TGSESS_AE_IFSOCK: kind = .socket
    default: kind = .other
    }
    var linkTarget = archive_entry_symlink(entry).map { String(cString: $0) }
    if let hardlink = archive_entry_hardlink(entry) {
      kind = .hardlink
      linkTarget = String(cString: hardlink)
    }
    return TarEntryHeader(
      path: path, kind: kind, size: archive_entry_size(entry), mode: archive_entry_perm(entry),
      modified: Date(timeIntervalSince1970: TimeInterval(archive_entry_mtime(entry))), linkTarget: linkTarget)
  }

  /// Reads the current entry's data; 0 at its end.
  /// - Throws: `StoreError` for a damaged stream, or what the input throws.
  public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
    guard let archive, let base = buffer.baseAddress else { return 0 }
    let count = archive_read_data(archive, base, buffer.count)
    if count < 0 { try check(Int32(count), "read data") }
    return count
  }

  /// Reads the current entry to its end through `body`, refusing more than `limit` bytes.
  /// - Throws: `StoreError.invalid` when the entry is larger than `limit`.
  public func readEntry(limit: Int64, _ body: (UnsafeRawBufferPointer) throws -> Void) throws -> Int64 {
    var buffer = [UInt8](repeating: 0, count: 64 * 1024)
    var total: Int64 = 0
    while true {
      let count = try buffer.withUnsafeMutableBytes { try read(into: $0) }
      if count == 0 { return total }
      total += Int64(count)
      if total > limit {
        throw StoreError.invalid(
          path: objectName, reason: "an entry decompresses to more than \(limit) bytes (decompression bomb?)",
          hint: "refusing it; use another backup")
      }
      try buffer.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
    }
  }
}

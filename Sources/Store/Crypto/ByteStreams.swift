import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// Something bytes can be written to, a buffer at a time.
public protocol ByteSink: AnyObject {
  /// Writes all of `bytes`.
  /// - Throws: the sink's error (`StoreError.io` for files); nothing may be assumed written.
  func write(_ bytes: UnsafeRawBufferPointer) throws
}

/// Something bytes can be read from, a buffer at a time.
public protocol ByteSource: AnyObject {
  /// Reads up to `buffer.count` bytes into `buffer`.
  /// - Returns: the number of bytes read; 0 only at the end of the data (or for an empty buffer).
  /// - Throws: the source's error (`StoreError.io` for files, `AgeError` for decryption).
  func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int
}

extension ByteSink {
  /// Writes all of `bytes`.
  /// - Throws: what `write(_:)` throws.
  public func write(_ bytes: [UInt8]) throws {
    try bytes.withUnsafeBytes { try write($0) }
  }
}

/// Writes to an open file descriptor that the caller owns (and closes).
public final class FileDescriptorSink: ByteSink {
  /// The descriptor written to.
  public let fd: Int32
  /// The path errors name.
  public let path: String

  /// A sink writing to `fd`; `path` is what error messages name.
  public init(fd: Int32, path: String) {
    self.fd = fd
    self.path = path
  }

  /// Writes every byte, retrying short writes and EINTR.
  /// - Throws: `StoreError.io` naming the path (ENOSPC says the disk is full).
  public func write(_ bytes: UnsafeRawBufferPointer) throws {
    try FileSystem.writeAll(fd: fd, bytes: bytes, path: path)
  }
}

/// Reads from an open file descriptor that the caller owns (and closes).
public final class FileDescriptorSource: ByteSource {
  /// The descriptor read from.
  public let fd: Int32
  /// The path errors name.
  public let path: String

  /// A source reading from `fd`; `path` is what error messages name.
  public init(fd: Int32, path: String) {
    self.fd = fd
    self.path = path
  }

  /// Reads once, retrying EINTR.
  /// - Throws: `StoreError.io` naming the path.
  public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
    guard let base = buffer.baseAddress, buffer.count > 0 else { return 0 }
    while true {
      let count = Glibc.read(fd, base, buffer.count)
      if count >= 0 { return count }
      if errno == EINTR { continue }
      throw StoreError.io(path: path, operation: "read", errno: errno)
    }
  }
}

/// Collects written bytes in memory; for small payloads and tests.
public final class ByteArraySink: ByteSink {
  /// Everything written so far.
  public private(set) var bytes: [UInt8] = []

  /// An empty sink.
  public init() {}

  /// Appends `bytes`.
  public func write(_ bytes: UnsafeRawBufferPointer) throws {
    self.bytes.append(contentsOf: bytes)
  }
}

/// Serves bytes held in memory; for small payloads and tests.
public final class ByteArraySource: ByteSource {
  private let bytes: [UInt8]
  private var offset = 0
  private let maxReadCount: Int

  /// A source over `bytes`. `maxReadCount` caps each read, so tests can exercise short reads.
  public init(_ bytes: [UInt8], maxReadCount: Int = .max) {
    precondition(maxReadCount > 0, "maxReadCount must be positive")
    self.bytes = bytes
    self.maxReadCount = maxReadCount
  }

  /// Copies the next bytes into `buffer`.
  public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
    let count = min(buffer.count, bytes.count - offset, maxReadCount)
    guard count > 0 else { return 0 }
    bytes.withUnsafeBytes { source in
      buffer.baseAddress!.copyMemory(from: source.baseAddress! + offset, byteCount: count)
    }
    offset += count
    return count
  }
}

/// Stream plumbing.
public enum ByteStreams {
  /// Copies everything from `source` to `sink` through one 64 KiB buffer.
  /// - Returns: the number of bytes copied.
  /// - Throws: whatever the source or sink throws.
  @discardableResult
  public static func copy(from source: ByteSource, to sink: ByteSink, bufferSize: Int = 64 * 1024) throws -> Int64 {
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferSize, alignment: 16)
    defer {
      cleanse(buffer)
      buffer.deallocate()
    }
    var total: Int64 = 0
    while true {
      let count = try source.read(into: buffer)
      if count == 0 { return total }
      try sink.write(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
      total += Int64(count)
    }
  }
}

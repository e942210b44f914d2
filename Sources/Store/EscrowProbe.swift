import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// Proves that escrowed identities open an archive without extracting it: the age header's file
/// key unwraps with one of them, the header MAC verifies, and the first payload chunk
/// authenticates. At most one 64 KiB chunk is read; nothing is written.
public enum EscrowProbe {
  /// Opens the start of the age-encrypted archive at `path` with `identities`.
  /// - Throws: `StoreError.crypto` naming the archive when no identity matches its recipients or
  ///   the data does not authenticate; `StoreError.io`/`.missing` when it cannot be read.
  public static func open(archive path: String, identities: [AgeIdentity]) throws {
    let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else {
      if errno == ENOENT { throw StoreError.missing(path: path, hint: "list archives with: tgsess list") }
      throw StoreError.io(path: path, operation: "open", errno: errno)
    }
    defer { close(fd) }
    do {
      let reader = try AgeDecryptingReader(
        identities: identities, input: FileDescriptorSource(fd: fd, path: path), objectName: path)
      let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
      defer {
        cleanse(buffer)
        buffer.deallocate()
      }
      _ = try reader.read(into: buffer)
    } catch let error as AgeError {
      throw error.storeError
    }
  }
}

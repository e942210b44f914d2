import Foundation

/// Cheap proof that an identity opens an archive: parse its age header, unwrap the file key and
/// verify the header MAC, without reading the payload.
public enum AgeHeaderCheck {
  /// - Throws: `StoreError` naming the archive when no identity opens it.
  public static func opens(path: String, identities: [AgeIdentity]) throws {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw StoreError.io(path: path, operation: "open", errno: errno) }
    defer { close(fd) }
    do {
      _ = try AgeDecryptingReader(
        identities: identities, input: FileDescriptorSource(fd: fd, path: path), objectName: path)
    } catch let error as AgeError {
      throw error.storeError
    }
  }
}

import Foundation

/// What a check without the identity proves of one archive.
public struct CiphertextProof: Sendable, Equatable {
  /// The age header parsed, with this many X25519 recipient stanzas (0 for a plain archive).
  public var recipientStanzas: Int
}

extension ArchiveRepository {
  /// Proves what can be proven of an archive without its identity: its name is a tgsess id
  /// that agrees with its record (kind, user, time); the file's SHA-256 is the one recorded when
  /// it was written and proven; an encrypted file starts with a well-formed age header holding
  /// one X25519 stanza per recipient its record names. Its content is not read.
  /// - Returns: what was found.
  /// - Throws: `StoreError.invalid` naming the archive and what differs.
  public func verifyCiphertext(_ record: ArchiveRecord) throws -> CiphertextProof {
    let path = path(of: record)
    func failure(_ reason: String, _ hint: String = "use another backup, and run tgsess backup") -> StoreError {
      StoreError.invalid(path: path, reason: reason, hint: hint)
    }
    guard let described = ArchiveName.describe(id: record.id), described.kind == record.kind,
      described.userID == record.userID
    else { throw failure("its record does not agree with its name (\(record.id))") }
    guard !record.sha256.isEmpty, record.isVerified else {
      throw failure(
        "its record is missing or holds no SHA-256, so without the identity nothing can be compared",
        "run the drill or check --deep with --identity FILE")
    }
    guard try FileSystem.sha256(ofFile: path) == record.sha256 else {
      throw failure("SHA-256 differs from the one recorded when it was written (corrupted on disk)")
    }
    guard record.isEncrypted else { return CiphertextProof(recipientStanzas: 0) }
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw StoreError.io(path: path, operation: "open", errno: errno) }
    defer { close(fd) }
    let stanzas: Int
    do {
      let header = try AgeHeader.read(from: FileDescriptorSource(fd: fd, path: path), object: path).header
      stanzas = try header.x25519Stanzas(object: path).count
    } catch let error as AgeError {
      throw error.storeError
    }
    if let recipients = record.recipients, recipients.count != stanzas {
      throw failure(
        "its age header holds \(stanzas) recipient stanza(s), its record names \(recipients.count) recipient(s)")
    }
    return CiphertextProof(recipientStanzas: stanzas)
  }
}

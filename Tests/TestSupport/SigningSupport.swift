import Foundation
import Store

/// Signatures for archives a test makes by hand: what `tgsess` would have written beside them
/// (`<id>.sig`), made with the deployment's own signing key through Store's signing API.
public enum TestSigning {
  /// Signs a copy of a signed archive published under another id (`ArchiveCloner`, planted
  /// damage): the source's statement with the copy's id, kind, user and time, and the copy's
  /// file size and SHA-256. The copy's manifest still carries the source's time, so a restore of
  /// it is refused; list, prune and push see a signed archive.
  /// - Parameters:
  ///   - sourceArchive: the signed archive copied.
  ///   - copyArchive: the copy, at its final path.
  /// - Throws: `TestHelperError` when the source has no signature; `StoreError` from signing.
  public static func signCopy(of sourceArchive: String, at copyArchive: String, deployment: Deployment) throws {
    guard let source = try ArchiveSigning.readSignature(archivePath: sourceArchive) else {
      throw TestHelperError("\(sourceArchive) has no signature to copy")
    }
    let name = (copyArchive as NSString).lastPathComponent
    guard let (id, isEncrypted) = ArchiveName.parse(fileName: name), let described = ArchiveName.describe(id: id)
    else { throw TestHelperError("\(name) is not an archive name") }
    let statement = try SignedStatement(
      archiveID: id, kind: described.kind, userID: described.userID, createdAt: described.createdAt,
      reason: source.statement.reason, encryption: isEncrypted ? .age : .none,
      fileByteCount: try FileSystem.size(of: copyArchive), fileSHA256: try FileSystem.sha256(ofFile: copyArchive),
      manifestSHA256: source.statement.manifestSHA256)
    try write(statement, beside: copyArchive, key: try KeyStore.loadSigningKey(deployment))
  }

  /// Signs `statement` with `key` and writes it as the signature file of `archivePath`.
  /// - Throws: `StoreError`.
  public static func write(_ statement: SignedStatement, beside archivePath: String, key: SigningKey) throws {
    guard let path = ArchiveSigning.signaturePath(forArchive: archivePath) else {
      throw StoreError.invalid(path: archivePath, reason: "not an archive name", hint: "test")
    }
    try FileSystem.writeAtomically(try ArchiveSigning.sign(statement, key: key).encoded(), to: path)
  }

  /// Removes the signature file of `archivePath`: the archive as tgsess wrote it before archives
  /// were signed.
  /// - Throws: `TestHelperError` when there is none.
  public static func unsign(_ archivePath: String) throws {
    guard let path = ArchiveSigning.signaturePath(forArchive: archivePath), FileSystem.exists(path) else {
      throw TestHelperError("\(archivePath) has no signature file")
    }
    try FileManager.default.removeItem(atPath: path)
  }
}

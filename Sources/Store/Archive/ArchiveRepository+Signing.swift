import Foundation

extension ArchiveRepository {
  /// Vouches for an archive made before archives were signed (`tgsess keys sign-existing`):
  /// reads it in full first (decrypted with `identities`, every entry's SHA-256 checked against
  /// the manifest, the manifest describing the archive's name and place: kind, user and time),
  /// hashing the file as it is read; only then signs what was read with `key` and puts the
  /// signature file beside it (fsynced; never replacing one).
  /// - Parameters:
  ///   - acceptsUnencrypted: the deployment does not encrypt (`[backup] encrypt = false`); else
  ///     an unencrypted archive is refused (anyone could have written it).
  ///   - isDryRun: verify only; write nothing.
  /// - Returns: the statement signed (or that would be).
  /// - Throws: `StoreError` naming the archive and what failed; nothing is written then.
  public func signExisting(
    _ record: ArchiveRecord, identities: [AgeIdentity], key: SigningKey, acceptsUnencrypted: Bool, isDryRun: Bool
  ) throws -> SignedStatement {
    let path = path(of: record)
    guard let signaturePath = ArchiveSigning.signaturePath(forArchive: path) else {
      throw StoreError.invalid(path: path, reason: "not an archive file name", hint: "name an <id>.tar.zst.age file")
    }
    guard !FileSystem.exists(signaturePath) else {
      throw StoreError.invalid(
        path: path, reason: "it already has a signature file (\(signaturePath))",
        hint: "sign-existing never replaces a signature; if it is damaged, investigate before removing it by hand")
    }
    if let problem = SigningAuthenticator.unsignedProblem(archivePath: path, acceptsUnencrypted: acceptsUnencrypted) {
      throw problem
    }
    guard let claim = ArchiveClaim(fileName: (path as NSString).lastPathComponent) else {
      throw StoreError.invalid(path: path, reason: "not an archive file name", hint: "name an <id>.tar.zst.age file")
    }
    var manifestBytes = Data()
    var file: (sha256: String, byteCount: Int64)?
    let manifest = try ArchiveReader.read(
      path: path, identities: identities, isEncrypted: claim.isEncrypted,
      checkManifest: { bytes, manifest in
        manifestBytes = bytes
        guard manifest.kind == claim.kind, manifest.userID == claim.userID, manifest.createdAt == claim.createdAt
        else {
          let what =
            manifest.kind == .full ? "a full snapshot" : "user \(manifest.userID.map(String.init) ?? "?")'s archive"
          throw StoreError.invalid(
            path: path,
            reason:
              "its manifest describes \(what) made \(SignedStatement.formatTime(manifest.createdAt)), not what its name and place say (\(claim.wording) made \(SignedStatement.formatTime(claim.createdAt)))",
            hint: "not signing it; investigate how it got there")
        }
      },
      checkFile: { sha256, byteCount in file = (sha256, byteCount) })
    guard let file else {
      throw StoreError.invalid(path: path, reason: "the file was not read to its end", hint: "this is a tgsess bug")
    }
    let statement = try SignedStatement(
      archiveID: claim.id, manifest: manifest, manifestBytes: manifestBytes, isEncrypted: claim.isEncrypted,
      fileByteCount: file.byteCount, fileSHA256: file.sha256)
    if isDryRun { return statement }
    let signature = try ArchiveSigning.sign(statement, key: key)
    let tempPath = FileSystem.temporaryPath(for: signaturePath)
    defer { unlink(tempPath) }
    try Self.writeDurably(signature.encoded(), to: tempPath)
    if link(tempPath, signaturePath) != 0 {
      throw StoreError.io(path: signaturePath, operation: "publish (link)", errno: errno)
    }
    try FileSystem.fsyncDirectory(of: signaturePath)
    return statement
  }
}

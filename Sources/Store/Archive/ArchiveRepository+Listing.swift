import Foundation

/// An archive file as its directory shows it: what its name and place say, and which of its
/// companions (signature, record, pin) sit beside it. Listing one reads no file, so a job that
/// needs no record (prune, most of check) does not pay for reading and decoding thousands.
public struct ArchiveListing: Sendable, Equatable {
  public var id: String
  /// The directory's (`full/` or `users/user_<id>/`), as for `ArchiveRepository.list`.
  public var kind: Manifest.Kind
  public var userID: Int64?
  /// The time in the id.
  public var createdAt: Date
  public var isEncrypted: Bool
  /// `<id>.sig` sits beside it.
  public var hasSignature: Bool
  /// `<id>.json` sits beside it.
  public var hasRecord: Bool
  /// `<id>.pin` sits beside it: prune never removes it.
  public var isPinned: Bool

  /// `<id>.tar.zst.age` or `<id>.tar.zst`.
  public var fileName: String { ArchiveName.fileName(id: id, isEncrypted: isEncrypted) }

  /// What its name and place claim.
  public var claim: ArchiveClaim {
    ArchiveClaim(id: id, kind: kind, userID: userID, createdAt: createdAt, isEncrypted: isEncrypted)
  }
}

extension ArchiveRepository {
  /// Every published archive file (`<id>.tar.zst.age` or `.tar.zst` with a tgsess id), from the
  /// directory listings alone; in no particular order. Kind and user are the directory's, as
  /// `list` takes them. Temporaries and companions without an archive are not listed.
  /// - Parameter kind: only this kind's directories.
  /// - Throws: `StoreError.io` when a directory cannot be read.
  public func listings(kind: Manifest.Kind? = nil) throws -> [ArchiveListing] {
    var directories: [(path: String, kind: Manifest.Kind, userID: Int64?)] = []
    if kind != .user { directories.append((fullDirectory, .full, nil)) }
    if kind != .full {
      for name in try Self.names(in: usersDirectory) where name.hasPrefix("user_") {
        // A directory whose name is not a user's is `list`'s too: its archives keep the kind and
        // user their names say (and fail authentication for their place).
        directories.append((usersDirectory + "/" + name, .user, Int64(name.dropFirst("user_".count))))
      }
    }
    let perDirectory = try Parallel.map(count: directories.count, workers: Parallel.defaultWorkers) { index in
      let directory = directories[index]
      let names = try Self.names(in: directory.path)
      let present = Set(names)
      return names.compactMap { name -> ArchiveListing? in
        guard let (id, isEncrypted) = ArchiveName.parse(fileName: name), let described = ArchiveName.describe(id: id)
        else { return nil }
        let isKnownPlace = directory.kind == .full || directory.userID != nil
        return ArchiveListing(
          id: id, kind: isKnownPlace ? directory.kind : described.kind,
          userID: isKnownPlace ? directory.userID : described.userID, createdAt: described.createdAt,
          isEncrypted: isEncrypted, hasSignature: present.contains(id + ArchiveSignature.fileSuffix),
          hasRecord: present.contains(id + ArchiveName.recordSuffix), isPinned: present.contains(id + ".pin"))
      }
    }
    // Into one array of the exact size (tens of thousands of listings: no doubling).
    var all: [ArchiveListing] = []
    all.reserveCapacity(perDirectory.reduce(0) { $0 + $1.count })
    for listings in perDirectory { all.append(contentsOf: listings) }
    return all
  }

  /// The directory `listing` is in.
  public func directory(of listing: ArchiveListing) -> String {
    directory(kind: listing.kind, userID: listing.userID)
  }

  /// The path of a listed archive file.
  public func path(of listing: ArchiveListing) -> String { directory(of: listing) + "/" + listing.fileName }

  /// The record of a listed archive, as `list` gives it: from its record file when `readsRecord`
  /// and that file is readable and names it, else rebuilt from the name (verification
  /// `unknown`, no counts, size 0: nothing is read).
  public func record(of listing: ArchiveListing, readsRecord: Bool) -> ArchiveRecord {
    let directory = directory(of: listing)
    if readsRecord, listing.hasRecord,
      let record = Self.record(
        archive: listing.fileName, in: directory, present: [listing.id + ArchiveName.recordSuffix])
    {
      return record
    }
    return ArchiveRecord(
      id: listing.id, fileName: listing.fileName, kind: listing.kind, createdAt: listing.createdAt,
      userID: listing.userID, reason: "", isEncrypted: listing.isEncrypted, byteCount: 0, contentByteCount: 0,
      entryCount: 0, userIDs: listing.userID.map { [$0] } ?? [], sha256: "", verification: .unknown, verifiedAt: nil,
      toolVersion: "", host: "", sessionFingerprint: nil)
  }
}

extension SigningAuthenticator {
  /// How each of `listings` of `repository` stands (`authenticity(archivePath:verdicts:)`), in
  /// their order, on a few threads.
  /// - Parameter progress: called once per archive judged, from any of the threads.
  public func authenticity(
    of listings: [ArchiveListing], in repository: ArchiveRepository, verdicts: SignatureVerdicts?,
    progress: (@Sendable () -> Void)? = nil
  ) -> [ArchiveAuthenticity] {
    Parallel.collect(count: listings.count) { index in
      defer { progress?() }
      let listing = listings[index]
      guard let verdicts, verdicts.backupsDirectory == repository.backupsDirectory, listing.hasSignature else {
        return authenticity(archivePath: repository.path(of: listing))
      }
      return authenticity(
        directory: repository.directory(of: listing), fileName: listing.fileName, claim: listing.claim,
        verdicts: verdicts)
    }
  }
}

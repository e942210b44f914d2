import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// A digest of the few pages of a session file that hold its identity: page 1's schema (without
/// the 100-byte file header, whose change counter and page count move with every commit) and the
/// root pages of the `sessions` and `version` tables. Churn (entities, update state, sent files,
/// peers) lives in other pages, so an unchanged digest proves an unchanged identity without
/// opening the file through SQLite, which costs about twenty times more (watch judges every
/// file the bot commits to).
///
/// Only taken where that proof holds: a rollback-journal file (in WAL mode committed pages live
/// in the -wal), pages of at least 1 KiB, each of the three pages a table leaf whose cells all fit
/// in the page (no overflow pages, no child pages).
public struct SessionPagePrint: Sendable, Equatable, Hashable {
  public var pageSize: Int
  /// The page numbers digested (1-based): 1, then the roots of `sessions` and `version`.
  public var pages: [Int]
  /// 16 hex of SHA-256 over the pages.
  public var digest: String

  public init(pageSize: Int, pages: [Int], digest: String) {
    self.pageSize = pageSize
    self.pages = pages
    self.digest = digest
  }

  /// Reads the identity of the session file at `path` (as `FileIdentity.read`) and, when the
  /// file's layout allows it, the print of the pages that identity was read from: the print is
  /// taken under a read transaction before and after the identity and kept only if both agree.
  /// - Throws: what `FileIdentity.read` throws.
  public static func read(path: String, busyTimeoutMS: Int) throws -> (FileIdentity, SessionPagePrint?) {
    let before = take(path: path, busyTimeoutMS: busyTimeoutMS)
    let identity = try FileIdentity.read(path: path, busyTimeoutMS: busyTimeoutMS)
    guard let before, before.pages.first == 1 else { return (identity, nil) }
    let after = take(path: path, busyTimeoutMS: busyTimeoutMS)
    return (identity, after == before ? after : nil)
  }

  /// The print of the file now, found through SQLite (page size, root pages) and read raw while a
  /// read transaction keeps writers out; nil when the layout does not qualify or anything fails.
  public static func take(path: String, busyTimeoutMS: Int) -> SessionPagePrint? {
    guard let connection = try? SQLiteConnection(path: path, mode: .readOnly, busyTimeoutMS: Int32(busyTimeoutMS))
    else { return nil }
    defer { try? connection.close() }
    return try? connection.translating { () -> SessionPagePrint? in
      try connection.execChecked("BEGIN")
      defer { try? connection.execChecked("COMMIT") }
      // The SELECT takes the shared lock the transaction then holds until COMMIT.
      let roots = try connection.prepareChecked(
        "SELECT name, rootpage FROM sqlite_master WHERE type = 'table' AND name IN ('sessions', 'version')")
      var pages: [String: Int] = [:]
      while try roots.stepChecked() { pages[roots.text(0) ?? ""] = Int(roots.int64(1)) }
      guard let sessions = pages["sessions"], let version = pages["version"], sessions > 1, version > 1 else {
        return nil
      }
      let size = try connection.prepareChecked("PRAGMA page_size")
      guard try size.stepChecked() else { return nil }
      let pageSize = Int(size.int64(0))
      guard pageSize >= 1024 else { return nil }
      let print = SessionPagePrint(pageSize: pageSize, pages: [1, sessions, version], digest: "")
      guard let digest = print.currentDigest(path: path) else { return nil }
      return SessionPagePrint(pageSize: pageSize, pages: print.pages, digest: digest)
    }
  }

  /// The digest of the same pages now: nil when the file is in WAL mode, shorter, unreadable,
  /// or a page is no longer a self-contained table leaf.
  public func currentDigest(path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var hasher = SHA256Hasher()
    var buffer = [UInt8](repeating: 0, count: pageSize)
    var reserved = 0
    for page in pages {
      let count = buffer.withUnsafeMutableBytes {
        pread(fd, $0.baseAddress, pageSize, off_t(page - 1) * off_t(pageSize))
      }
      guard count == pageSize else { return nil }
      if page == 1 {
        // WAL mode (file format bytes 18-19) or another page size: not this print's file any more.
        let stored = Int(buffer[16]) << 8 | Int(buffer[17])
        guard buffer[18] == 1, buffer[19] == 1, (stored == 1 ? 65536 : stored) == pageSize else { return nil }
        reserved = Int(buffer[20])
      }
      let headerOffset = page == 1 ? 100 : 0
      guard Self.isSelfContainedLeaf(buffer, headerOffset: headerOffset, usable: pageSize - reserved) else {
        return nil
      }
      buffer.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0[headerOffset...])) }
    }
    return String(Hex.encode(hasher.finalize()).prefix(16))
  }

  /// Whether the b-tree page starting at `headerOffset` is a table leaf (0x0D) whose every cell's
  /// payload fits in the page (SQLite spills a table-leaf payload above `usable - 35` bytes to
  /// overflow pages, which this print would not see).
  static func isSelfContainedLeaf(_ page: [UInt8], headerOffset: Int, usable: Int) -> Bool {
    guard headerOffset + 8 <= page.count, page[headerOffset] == 0x0D else { return false }
    let cellCount = Int(page[headerOffset + 3]) << 8 | Int(page[headerOffset + 4])
    let pointers = headerOffset + 8
    guard pointers + cellCount * 2 <= page.count else { return false }
    for index in 0..<cellCount {
      let offset = Int(page[pointers + index * 2]) << 8 | Int(page[pointers + index * 2 + 1])
      guard offset > 0, offset < page.count, let payload = varint(page, at: offset), payload <= usable - 35 else {
        return false
      }
    }
    return true
  }

  /// SQLite's big-endian varint at `offset` (at most 9 bytes); nil when it runs off the page.
  static func varint(_ bytes: [UInt8], at offset: Int) -> Int? {
    var value = 0
    for index in 0..<9 {
      guard offset + index < bytes.count else { return nil }
      let byte = bytes[offset + index]
      if index == 8 { return value << 8 | Int(byte) }
      value = value << 7 | Int(byte & 0x7f)
      if byte & 0x80 == 0 { return value }
    }
    return value
  }
}

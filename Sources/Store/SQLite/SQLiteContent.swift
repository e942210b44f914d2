import Foundation

/// What an SQLite file holds, apart from how its pages happen to be laid out.
public enum SQLiteContent {
  /// A SHA-256 over the schema and every row of every table, in a fixed order: two files with
  /// the same digest hold the same data, though their bytes differ (a file written by Telethon and
  /// its snapshot through the online backup API, or one file before and after a VACUUM). The file
  /// is opened read-only and never changed.
  /// - Throws: `StoreError.database` when the file cannot be opened or read as SQLite.
  public static func digest(path: String, busyTimeoutMS: Int32 = 5000) throws -> String {
    let connection = try SQLiteConnection(path: path, mode: .readOnly, busyTimeoutMS: busyTimeoutMS)
    defer { try? connection.close() }
    var hasher = SHA256Hasher()
    // The schema: tables, indexes and the rest, by name (the text of their CREATE statements).
    let schema = try connection.prepare(
      "SELECT type, name, coalesce(sql, '') FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name")
    var tables: [String] = []
    while try schema.step() {
      let type = schema.text(0) ?? ""
      let name = schema.text(1) ?? ""
      add(&hasher, 0x53, Array((type + "\u{0}" + name + "\u{0}" + (schema.text(2) ?? "")).utf8))
      if type == "table" { tables.append(name) }
    }
    // Every row, in primary-key order (whichever columns that is), each value with its type.
    for table in tables {
      let quoted = "\"" + table.replacingOccurrences(of: "\"", with: "\"\"") + "\""
      let columns = try connection.tableColumns(table).count
      let order = (1...max(columns, 1)).map(String.init).joined(separator: ", ")
      let rows = try connection.prepare("SELECT * FROM \(quoted) ORDER BY \(order)")
      add(&hasher, 0x54, Array(table.utf8))
      while try rows.step() {
        for index in 0..<rows.columnCount {
          switch rows.columnType(index) {
          case .null: add(&hasher, 0x4e, [])
          case .integer: add(&hasher, 0x49, Array(String(rows.int64(index)).utf8))
          case .float: add(&hasher, 0x46, Array(String(rows.double(index).bitPattern).utf8))
          case .text: add(&hasher, 0x58, Array((rows.text(index) ?? "").utf8))
          case .blob: add(&hasher, 0x42, rows.blob(index))
          }
        }
      }
    }
    return Hex.encode(hasher.finalize())
  }

  /// Whether two SQLite files hold the same pages apart from the header fields a writer stamps
  /// on each commit (the file change counter, the version-valid-for number and the version of
  /// SQLite that wrote it, bytes 24-27 and 92-99) and the schema cookie the online backup API
  /// bumps in its copy (bytes 40-43): then they hold the same schema and rows, and
  /// `digest` would agree, for a fraction of its cost (a session file and its snapshot through
  /// the online backup API differ in those bytes alone). False says nothing: the same data may
  /// be laid out otherwise. A `-wal` that is not empty or a `-journal` beside either file makes it
  /// false (the main file alone is not what SQLite would read).
  /// - Throws: `StoreError.io` naming the file that cannot be read.
  public static func hasSamePages(_ first: String, _ second: String) throws -> Bool {
    for path in [first, second] {
      if FileSystem.exists(path + "-journal") || ((try? FileSystem.size(of: path + "-wal")) ?? 0) > 0 { return false }
    }
    let size = try FileSystem.size(of: first)
    guard size == (try FileSystem.size(of: second)), size >= 100 else { return false }
    let descriptors = try [first, second].map { path in
      let fd = open(path, O_RDONLY | O_CLOEXEC)
      guard fd >= 0 else { throw StoreError.io(path: path, operation: "open", errno: errno) }
      return fd
    }
    defer { descriptors.forEach { close($0) } }
    let chunk = 64 * 1024
    var buffers = [[UInt8]](repeating: [UInt8](repeating: 0, count: chunk), count: 2)
    var offset: Int64 = 0
    while offset < size {
      let count = Int(min(Int64(chunk), size - offset))
      for side in 0..<2 {
        let read = try buffers[side].withUnsafeMutableBytes { buffer in
          var done = 0
          while done < count {
            let got = pread(descriptors[side], buffer.baseAddress! + done, count - done, off_t(offset) + off_t(done))
            if got < 0, errno == EINTR { continue }
            if got < 0 { throw StoreError.io(path: side == 0 ? first : second, operation: "read", errno: errno) }
            if got == 0 { break }
            done += got
          }
          return done
        }
        guard read == count else { return false }
        if offset == 0 {
          for index in Array(24..<28) + Array(40..<44) + Array(92..<100) { buffers[side][index] = 0 }
        }
      }
      guard
        buffers[0].withUnsafeBytes({ a in
          buffers[1].withUnsafeBytes { b in memcmp(a.baseAddress!, b.baseAddress!, count) == 0 }
        })
      else { return false }
      offset += Int64(count)
    }
    return true
  }

  /// One tagged, length-prefixed value into the digest (so that no two sequences collide).
  private static func add(_ hasher: inout SHA256Hasher, _ tag: UInt8, _ bytes: [UInt8]) {
    var header = [tag]
    var length = UInt64(bytes.count).bigEndian
    withUnsafeBytes(of: &length) { header += $0 }
    hasher.update(header)
    hasher.update(bytes)
  }
}

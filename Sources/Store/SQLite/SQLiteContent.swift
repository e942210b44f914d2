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

  /// One tagged, length-prefixed value into the digest (so that no two sequences collide).
  private static func add(_ hasher: inout SHA256Hasher, _ tag: UInt8, _ bytes: [UInt8]) {
    var header = [tag]
    var length = UInt64(bytes.count).bigEndian
    withUnsafeBytes(of: &length) { header += $0 }
    hasher.update(header)
    hasher.update(bytes)
  }
}

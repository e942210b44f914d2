import Foundation

/// A session file's table layout: its tables and, for the tables session libraries create,
/// their columns in order. The library that wrote a file is told by this layout, not by the
/// number in its `version` table alone: that number clashes between libraries (kurigram and
/// pyrofork both write 4; Telethon's abandoned v2-stale2 branch also wrote 8) and says nothing
/// when it was edited by hand.
public struct SessionLayout: Sendable, Equatable {
  /// Every table, in the order `sqlite_master` lists them.
  public var tables: [String]
  /// The columns of the tables a session library creates (others are not read).
  public var columns: [String: [String]]
  /// Whether the file header marks the file as WAL mode (Hydrogram sets it on every open).
  public var isWALMode: Bool

  /// The tables whose columns are read: those any known library creates.
  static let knownTables = [
    "version", "sessions", "entities", "sent_files", "update_state", "peers", "usernames", "datacenter",
  ]

  public init(tables: [String], columns: [String: [String]], isWALMode: Bool) {
    self.tables = tables
    self.columns = columns
    self.isWALMode = isWALMode
  }

  /// Reads the layout through `connection` (inside the caller's read transaction).
  /// - Throws: `SQLiteFailure` when the schema cannot be read.
  static func read(_ connection: SQLiteConnection, isWALMode: Bool) throws -> SessionLayout {
    // Every object's type, name and SQL, in order: the tables and their columns follow from
    // this text alone, and the files of one library version share it, so the columns are read
    // once per distinct schema in a process (check reads thousands of files).
    let statement = try connection.prepareChecked("SELECT type, name, sql FROM sqlite_master ORDER BY rowid")
    var tables: [String] = []
    var schema = ""
    while try statement.stepChecked() {
      let type = statement.text(0) ?? ""
      let name = statement.text(1) ?? ""
      if type == "table" { tables.append(name) }
      schema += type + "\u{0}" + name + "\u{0}" + (statement.text(2) ?? "") + "\u{1}"
    }
    if let columns = layoutMemo.columns(schema: schema) {
      return SessionLayout(tables: tables, columns: columns, isWALMode: isWALMode)
    }
    var columns: [String: [String]] = [:]
    for table in knownTables where tables.contains(table) {
      columns[table] = try connection.tableColumnsChecked(table)
    }
    layoutMemo.remember(columns, schema: schema)
    return SessionLayout(tables: tables, columns: columns, isWALMode: isWALMode)
  }

  /// The columns read per schema text (see `read`), for this process.
  private static let layoutMemo = LayoutMemo()

  /// A few schemas' columns, behind a lock (files are read on several threads).
  private final class LayoutMemo: @unchecked Sendable {
    private let lock = NSLock()
    private var entries: [String: [String: [String]]] = [:]

    func columns(schema: String) -> [String: [String]]? { lock.withLock { entries[schema] } }

    func remember(_ columns: [String: [String]], schema: String) {
      // A bound: a directory of odd files must not grow it without end.
      lock.withLock { if entries.count < 64 { entries[schema] = columns } }
    }
  }

  /// Whether the file has `table`.
  public func has(_ table: String) -> Bool { columns[table] != nil || tables.contains(table) }

  /// Whether `table` has `column`.
  public func has(_ table: String, _ column: String) -> Bool { columns[table]?.contains(column) ?? false }

  /// The tables (with the columns of those that matter) for a finding, at most `limit` tables:
  /// `sessions(dc_id, server_address, port, auth_key), version(version), ...`.
  public func summary(limit: Int = 6) -> String {
    let shown = tables.prefix(limit).map { table in
      columns[table].map { "\(table)(\($0.joined(separator: ", ")))" } ?? table
    }
    return shown.joined(separator: ", ") + (tables.count > limit ? ", ..." : "")
  }
}

/// What a layout says about a file: the library family and variant, and the schema versions
/// whose tables look exactly like this.
public struct SessionLayoutMatch: Sendable, Equatable {
  public enum Family: Sendable, Equatable {
    case telethon
    case pyrogram(PyrogramVariant)
  }

  public var family: Family
  /// The schema versions that create exactly these tables and columns.
  public var versions: ClosedRange<Int>

  /// The library's name: "Telethon", "kurigram".
  public var library: String {
    switch family {
    case .telethon: return "Telethon"
    case .pyrogram(let variant): return variant.libraryName
    }
  }

  /// The library and versions in words: "Telethon v7", "kurigram v5-v6".
  public var name: String {
    let range = versions.count == 1 ? "v\(versions.lowerBound)" : "v\(versions.lowerBound)-v\(versions.upperBound)"
    return "\(library) \(range)"
  }

  /// The format of a file with this layout whose version table says `version`.
  func format(version: Int) -> SessionFormat {
    switch family {
    case .telethon: return .telethon(version: version)
    case .pyrogram(let variant): return .pyrogram(version: version, variant: variant)
    }
  }
}

/// The table layouts of the session libraries tgsess reads, and the identification of a file's
/// library from its layout.
public enum SessionLayoutCatalog {
  /// The outcome of identifying a layout.
  public enum Identification: Sendable, Equatable {
    /// A known library's layout.
    case known(SessionLayoutMatch)
    /// Not a session file of any library tgsess knows (`SessionProblem.unknownSchema`).
    case unknownSchema(String)
    /// A session library's tables in a layout none of its versions wrote
    /// (`SessionProblem.unknownLayout`).
    case unknownLayout(String)
  }

  /// Telethon's layout markers: a file of schema version V has the column (or table) exactly
  /// when V is at least the version that introduced it (`_upgrade_database`, 1.45).
  static let telethonMarkers: [(table: String, column: String?, since: Int)] = [
    ("update_state", nil, 4), ("sessions", "takeout_id", 5), ("entities", "date", 7), ("sessions", "tmp_auth_key", 8),
  ]

  /// Identifies the library that wrote a file with `layout`.
  public static func identify(_ layout: SessionLayout) -> Identification {
    if layout.has("datacenter") {
      return .unknownSchema("Telethon v2 schema with a datacenter table; tgsess reads Telethon 1.x and Pyrogram files")
    }
    if layout.has("version", "version") { return identifyTelethon(layout) }
    if layout.has("version", "number") { return identifyPyrogram(layout) }
    if layout.tables.isEmpty { return .unknownSchema("an SQLite database without tables") }
    let shown = layout.tables.prefix(5).joined(separator: ", ") + (layout.tables.count > 5 ? ", ..." : "")
    return .unknownSchema("tables \(shown); no version table with a version or number column")
  }

  private static func missing(_ required: [String], in layout: SessionLayout, table: String) -> Identification? {
    let columns = layout.columns[table] ?? []
    let missing = required.filter { !columns.contains($0) }
    return missing.isEmpty ? nil : .unknownSchema("table \(table) lacks \(missing.joined(separator: ", "))")
  }

  private static func identifyTelethon(_ layout: SessionLayout) -> Identification {
    if let failure = missing(["dc_id", "server_address", "port", "auth_key"], in: layout, table: "sessions") {
      return failure
    }
    // The versions every marker agrees with; a missing entities table says nothing about date.
    var candidates = Array(SessionFileInspector.telethonVersions)
    for marker in telethonMarkers {
      if marker.column != nil, !layout.has(marker.table) { continue }
      let isPresent = marker.column.map { layout.has(marker.table, $0) } ?? layout.has(marker.table)
      candidates = candidates.filter { ($0 >= marker.since) == isPresent }
    }
    guard let low = candidates.first, let high = candidates.last else {
      return .unknownLayout("\(layout.summary()): no Telethon version creates these tables and columns together")
    }
    return .known(SessionLayoutMatch(family: .telethon, versions: low...high))
  }

  private static func identifyPyrogram(_ layout: SessionLayout) -> Identification {
    if let failure = missing(["dc_id", "test_mode", "auth_key", "user_id", "is_bot"], in: layout, table: "sessions") {
      return failure
    }
    let hasAPIID = layout.has("sessions", "api_id")
    let hasAddress = layout.has("sessions", "server_address") && layout.has("sessions", "port")
    let hasUpdateState = layout.has("update_state")
    let variant: PyrogramVariant
    let versions: ClosedRange<Int>
    if layout.has("usernames", "username") {
      // kurigram v4 moved usernames to usernames(id, username); v5 added update_state, v7 the
      // server address and port.
      variant = .kurigram
      versions = hasAddress ? 7...7 : hasUpdateState ? 5...6 : 4...4
      if hasAddress, !hasUpdateState {
        return .unknownLayout("\(layout.summary()): kurigram's address columns without its update_state table")
      }
    } else if layout.has("usernames", "peer_id") || hasUpdateState {
      // pyrofork v4 keeps peers.username, adds update_state and usernames(id, peer_id, ...).
      variant = .pyrofork
      versions = 4...4
      if !hasUpdateState {
        return .unknownLayout("\(layout.summary()): pyrofork's usernames table without its update_state table")
      }
    } else {
      // Pyrogram 2.0 added sessions.api_id (v3); Hydrogram kept that layout and sets WAL mode
      // on every open, which Pyrogram never does.
      variant = hasAPIID && layout.isWALMode ? .hydrogram : .pyrogram
      versions = hasAPIID ? 3...3 : 1...2
    }
    if hasAddress, variant != .kurigram {
      return .unknownLayout("\(layout.summary()): server_address and port in sessions, which only kurigram v7 has")
    }
    if !hasAPIID, versions.lowerBound >= 3 {
      return .unknownLayout(
        "\(layout.summary()): \(variant.libraryName) v\(versions.lowerBound) without sessions.api_id")
    }
    return .known(SessionLayoutMatch(family: .pyrogram(variant), versions: versions))
  }

  /// Checks that the version a file claims is one whose tables look like `match`: a newer one
  /// than the layout's is a version tgsess does not know yet, any other mismatch a layout no
  /// release wrote.
  /// - Returns: nil when they agree, else the problem.
  public static func problem(version: Int, match: SessionLayoutMatch, layout: SessionLayout) -> SessionProblem? {
    if match.versions.contains(version) { return nil }
    if version > match.versions.upperBound {
      // Only the newest layout of a library can be a newer version's: an older layout with a
      // newer number (a v7 file claiming 8) lacks what that version added.
      let isNewestLayout: Bool
      switch match.family {
      case .telethon: isNewestLayout = match.versions.upperBound == SessionFileInspector.telethonVersions.upperBound
      case .pyrogram(let variant): isNewestLayout = variant == .pyrofork || variant == .hydrogram
      }
      if isNewestLayout {
        return .unsupportedVersion("\(version) of \(match.library) (tgsess reads \(match.name))")
      }
    }
    return .unknownLayout("version \(version), but the tables are \(match.name)'s: \(layout.summary())")
  }
}

extension PyrogramVariant {
  /// The library's name as its users write it.
  public var libraryName: String {
    switch self {
    case .pyrogram: return "Pyrogram"
    case .kurigram: return "kurigram"
    case .pyrofork: return "pyrofork"
    case .hydrogram: return "Hydrogram"
    }
  }
}

import Foundation

/// Writes session files that Telethon and Pyrogram load as their own: the libraries' exact DDL,
/// one sessions row, SQLite's default rollback journal (mode DELETE, never changed).
///
/// Every file is built at a temporary path in the same directory (mode 0600), closed, fsynced,
/// renamed into place, and the directory fsynced: a crash leaves the old file or the new one.
public enum SessionFileWriter {
  /// Telethon schema versions the writer produces (7: Telethon 1.17-1.42, 8: 1.43 and later).
  public static let telethonVersions = 7...8
  /// Pyrogram schema versions the writer produces (3: Pyrogram 2.0.x).
  public static let pyrogramVersions = 3...3

  /// Writes a Telethon `SQLiteSession` file of schema `version` holding `identity`.
  /// - Parameters:
  ///   - ownerUserID: stored as the `entities` row `id=0, hash=<owner>` as Telethon ≥ 1.28 does.
  ///   - takeoutID: `sessions.takeout_id` (NULL when nil).
  ///   - overwrite: when false, an existing file at `path` is an error and stays untouched.
  ///   - isDurable: false only for generated fixtures (see `SQLiteConnection.buildAtomically`).
  ///   - temporaryPath: where the file is built (see `SQLiteConnection.buildAtomically`).
  /// - Throws: `StoreError.session(object: path, ...)` when the identity cannot be stored
  ///   (`.unsupportedVersion`, `.dcOutOfRange`, `.serverAddressMissing`, `.badAddress`,
  ///   `.portMissing`, `.badPort`, `.authKeyAllZero`), else `StoreError.database` / `.io`.
  public static func writeTelethon(
    identity: SessionIdentity, version: Int = 8, ownerUserID: Int64? = nil, takeoutID: Int64? = nil,
    to path: String, overwrite: Bool = false, isDurable: Bool = true, temporaryPath: String? = nil
  ) throws {
    guard telethonVersions.contains(version) else {
      throw StoreError.session(object: path, reason: .unsupportedVersion("\(version) of Telethon for writing (7 or 8)"))
    }
    // The string encoder holds every rule a Telethon identity must satisfy.
    _ = try TelethonStringSession.encode(identity, label: path)
    try SQLiteConnection.buildAtomically(
      at: path, overwrite: overwrite, isDurable: isDurable, temporaryPath: temporaryPath
    ) { connection in
      try connection.exec("BEGIN")
      for statement in TelethonSchema.createStatements(version: version) { try connection.exec(statement) }
      let versionRow = try connection.prepare("insert into version values (?)")
      try versionRow.bind(Int64(version), at: 1)
      try versionRow.step()

      let placeholders = version >= 8 ? "(?,?,?,?,?,?)" : "(?,?,?,?,?)"
      let session = try connection.prepare("insert or replace into sessions values \(placeholders)")
      try session.bind(Int64(identity.dcID), at: 1)
      try session.bind(identity.serverAddress, at: 2)
      try session.bind(identity.port.map { Int64($0) }, at: 3)
      try session.bind(identity.authKey.bytes, at: 4)
      try session.bind(takeoutID, at: 5)
      if version >= 8 { try session.bind([UInt8](), at: 6) }
      try session.step()

      if let ownerUserID {
        let owner = try connection.prepare("insert or replace into entities values (?,?,?,?,?,?)")
        try owner.bind(Int64(0), at: 1)
        try owner.bind(ownerUserID, at: 2)
        for index: Int32 in 3...5 { try owner.bindNull(at: index) }
        try owner.bind(Int64(Date().timeIntervalSince1970), at: 6)
        try owner.step()
      }
      try connection.exec("COMMIT")
    }
  }

  /// Writes a Pyrogram 2.0 `FileStorage` file (schema 3) holding `payload`, as Pyrogram 2.0.106
  /// creates it. The payload's string layout does not matter here.
  /// - Parameters:
  ///   - date: `sessions.date` (Unix seconds), what Pyrogram's `save()` writes.
  ///   - overwrite: when false, an existing file at `path` is an error and stays untouched.
  ///   - isDurable: false only for generated fixtures (see `SQLiteConnection.buildAtomically`).
  ///   - temporaryPath: where the file is built (see `SQLiteConnection.buildAtomically`).
  /// - Throws: `StoreError.session(object: path, ...)` with `.unsupportedVersion`, `.invalidField`
  ///   (no api id), `.dcOutOfRange`, `.testModeDCOutOfRange` or `.authKeyAllZero`; else
  ///   `StoreError.database` / `.io`.
  public static func writePyrogram(
    _ payload: PyrogramSessionPayload, version: Int = 3, date: Int64 = Int64(Date().timeIntervalSince1970),
    to path: String, overwrite: Bool = false, isDurable: Bool = true, temporaryPath: String? = nil
  ) throws {
    guard pyrogramVersions.contains(version) else {
      throw StoreError.session(object: path, reason: .unsupportedVersion("\(version) of Pyrogram for writing (3)"))
    }
    // The 362 layout needs exactly what schema 3 stores (api id included).
    var current = payload
    current.layout = .current
    _ = try PyrogramStringSession.encode(current, label: path)
    try SQLiteConnection.buildAtomically(
      at: path, overwrite: overwrite, isDurable: isDurable, temporaryPath: temporaryPath
    ) { connection in
      try connection.exec("BEGIN")
      try connection.exec(PyrogramSchema.version3)
      try connection.exec("INSERT INTO version VALUES (\(version))")
      let session = try connection.prepare("INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?)")
      try session.bind(Int64(payload.dcID), at: 1)
      try session.bind(payload.apiID.map { Int64($0) }, at: 2)
      try session.bind(Int64(payload.isTestMode ? 1 : 0), at: 3)
      try session.bind(payload.authKey.bytes, at: 4)
      try session.bind(date, at: 5)
      try session.bind(payload.userID, at: 6)
      try session.bind(Int64(payload.isBot ? 1 : 0), at: 7)
      try session.step()
      try connection.exec("COMMIT")
    }
  }
}

/// Telethon 1.x DDL, character for character as `SQLiteSession._create_table` runs it
/// (`'create table {}'.format(definition)`), so `sqlite_master` matches a Telethon-made file.
enum TelethonSchema {
  private static func table(_ name: String, _ columns: [String]) -> String {
    let indent = String(repeating: " ", count: 20)
    let body = columns.map { indent + $0 }.joined(separator: ",\n")
    return "create table \(name) (\n\(body)\n\(String(repeating: " ", count: 16)))"
  }

  static func createStatements(version: Int) -> [String] {
    var sessionColumns = [
      "dc_id integer primary key", "server_address text", "port integer", "auth_key blob", "takeout_id integer",
    ]
    if version >= 8 { sessionColumns.append("tmp_auth_key blob") }
    return [
      "create table version (version integer primary key)",
      table("sessions", sessionColumns),
      table(
        "entities",
        [
          "id integer primary key", "hash integer not null", "username text", "phone integer", "name text",
          "date integer",
        ]),
      table(
        "sent_files",
        [
          "md5_digest blob", "file_size integer", "type integer", "id integer", "hash integer",
          "primary key(md5_digest, file_size, type)",
        ]),
      table("update_state", ["id integer primary key", "pts integer", "qts integer", "date integer", "seq integer"]),
    ]
  }
}

/// Pyrogram 2.0.106's `SCHEMA` (pyrogram/storage/sqlite_storage.py), verbatim.
enum PyrogramSchema {
  static let version3 = """

    CREATE TABLE sessions
    (
        dc_id     INTEGER PRIMARY KEY,
        api_id    INTEGER,
        test_mode INTEGER,
        auth_key  BLOB,
        date      INTEGER NOT NULL,
        user_id   INTEGER,
        is_bot    INTEGER
    );

    CREATE TABLE peers
    (
        id             INTEGER PRIMARY KEY,
        access_hash    INTEGER,
        type           INTEGER NOT NULL,
        username       TEXT,
        phone_number   TEXT,
        last_update_on INTEGER NOT NULL DEFAULT (CAST(STRFTIME('%s', 'now') AS INTEGER))
    );

    CREATE TABLE version
    (
        number INTEGER PRIMARY KEY
    );

    CREATE INDEX idx_peers_id ON peers (id);
    CREATE INDEX idx_peers_username ON peers (username);
    CREATE INDEX idx_peers_phone_number ON peers (phone_number);

    CREATE TRIGGER trg_peers_last_update_on
        AFTER UPDATE
        ON peers
    BEGIN
        UPDATE peers
        SET last_update_on = CAST(STRFTIME('%s', 'now') AS INTEGER)
        WHERE id = NEW.id;
    END;

    """
}

/// Conversions between session strings and session files of the same library.
public enum SessionConversion {
  /// Writes a Telethon session file from a Telethon `StringSession`.
  /// - Returns: the identity written.
  /// - Throws: the string's `StoreError.session` problems (named "Telethon session string"), or
  ///   the writer's errors naming `path`.
  @discardableResult
  public static func writeTelethonFile(
    fromString string: String, version: Int = 8, ownerUserID: Int64? = nil, to path: String, overwrite: Bool = false
  ) throws -> SessionIdentity {
    let identity = try TelethonStringSession.decode(string)
    try SessionFileWriter.writeTelethon(
      identity: identity, version: version, ownerUserID: ownerUserID, to: path, overwrite: overwrite)
    return identity
  }

  /// The Telethon `StringSession` of the session file at `path` (any format whose file stores an
  /// address and port: Telethon, kurigram v7).
  /// - Throws: the inspector's `StoreError.session` problems, or `.serverAddressMissing` /
  ///   `.portMissing` naming the file.
  public static func telethonString(fromFile path: String) throws -> String {
    try SessionFileInspector.inspect(path: path).telethonString()
  }

  /// Writes a Pyrogram 2.0 session file from a Pyrogram session string (the 362 layout; the
  /// older layouts carry no api id, pass `apiID` for them).
  /// - Returns: the payload written.
  /// - Throws: the string's `StoreError.session` problems, `.invalidField` when no api id is
  ///   known, or the writer's errors.
  @discardableResult
  public static func writePyrogramFile(
    fromString string: String, apiID: Int? = nil, to path: String, overwrite: Bool = false
  ) throws -> PyrogramSessionPayload {
    var payload = try PyrogramStringSession.decode(string)
    if let apiID { payload.apiID = apiID }
    try SessionFileWriter.writePyrogram(payload, to: path, overwrite: overwrite)
    return payload
  }

  /// The Pyrogram session string of a Pyrogram-family file at `path`, in `layout`.
  /// - Throws: the inspector's problems, or `.invalidField` naming the file when the file is not
  ///   Pyrogram-family or lacks what the string needs (user id, api id for the 362 layout).
  public static func pyrogramString(
    fromFile path: String, layout: PyrogramSessionPayload.Layout = .current
  ) throws -> String {
    let payload = try SessionFileInspector.inspect(path: path).pyrogramPayload(layout: layout)
    return try PyrogramStringSession.encode(payload, label: path)
  }
}

extension SessionFileInfo {
  /// The Pyrogram string payload of a Pyrogram-family file.
  /// - Throws: `StoreError.session(object: path, reason: .invalidField(...))` for a Telethon file
  ///   or one without user id / is_bot (and api id for the 362 layout).
  public func pyrogramPayload(layout: PyrogramSessionPayload.Layout = .current) throws -> PyrogramSessionPayload {
    func fail(_ detail: String) -> StoreError { .session(object: path, reason: .invalidField(detail)) }
    guard case .pyrogram = format else { throw fail("a \(format.shortName) file has no Pyrogram string") }
    guard let ownerUserID else { throw fail("sessions.user_id is not set") }
    guard let isBot else { throw fail("sessions.is_bot is not set") }
    if layout == .current, apiID == nil { throw fail("sessions.api_id is not set (needed by the 362 layout)") }
    return PyrogramSessionPayload(
      dcID: identity.dcID, apiID: layout == .current ? apiID : nil, isTestMode: isTestMode ?? false,
      authKey: identity.authKey, userID: ownerUserID, isBot: isBot, layout: layout)
  }
}

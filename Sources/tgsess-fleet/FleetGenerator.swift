import Foundation
import Store

/// Writes the users' session files and the bot database of a generated deployment.
struct FleetGenerator {
  enum SessionKind {
    case telethon(Int)
    case pyrogram
  }

  struct UserRow {
    var userID: Int64
    var sessionString: String
    var apiID: Int
    var apiHash: String
  }

  let deployment: Deployment
  let entities: Int

  static let dcAddresses = [
    1: "149.154.175.53", 2: "149.154.167.51", 3: "149.154.175.100", 4: "149.154.167.91", 5: "91.108.56.130",
  ]
  static let dcAddressesV6 = [
    1: "2001:b28:f23d:f001::a", 2: "2001:67c:4e8:f002::a", 3: "2001:b28:f23d:f003::a",
    4: "2001:67c:4e8:f004::a", 5: "2001:b28:f23f:f005::a",
  ]

  /// Writes one user's session file (and for some a `.session.backup`) and returns their row.
  func writeUser(userID: Int64, kind: SessionKind, random: inout SplitMix64) throws -> UserRow {
    let dcID = Int.random(in: 1...5, using: &random)
    let key = try AuthKey(bytes: random.bytes(256))
    let path = deployment.sessionPath(userID: userID)
    let apiID = Int.random(in: 10_000...9_999_999, using: &random)
    let apiHash = Hex.encode(random.bytes(16))
    let string: String
    switch kind {
    case .telethon(let version):
      let isIPv6 = Int.random(in: 0..<20, using: &random) == 0
      let address = (isIPv6 ? Self.dcAddressesV6 : Self.dcAddresses)[dcID]!
      let identity = SessionIdentity(dcID: dcID, serverAddress: address, port: 443, authKey: key)
      try SessionFileWriter.writeTelethon(
        identity: identity, version: version, ownerUserID: userID, to: path, isDurable: false)
      try addTelethonCache(path: path, random: &random)
      string = try TelethonStringSession.encode(identity)
      if Int.random(in: 0..<3, using: &random) == 0 {
        // The seed's bot keeps a .session.backup copy of the file.
        try SessionFileWriter.writeTelethon(
          identity: identity, version: version, ownerUserID: userID, to: path + ".backup", isDurable: false)
      }
    case .pyrogram:
      let payload = PyrogramSessionPayload(
        dcID: dcID, apiID: apiID, isTestMode: false, authKey: key, userID: userID, isBot: false)
      try SessionFileWriter.writePyrogram(payload, to: path, isDurable: false)
      string = try PyrogramStringSession.encode(payload)
    }
    return UserRow(userID: userID, sessionString: string, apiID: apiID, apiHash: apiHash)
  }

  /// Fills a Telethon file's entity cache and update state the way a running client does.
  private func addTelethonCache(path: String, random: inout SplitMix64) throws {
    let connection = try SQLiteConnection(path: path, mode: .readWrite)
    defer { try? connection.close() }
    try connection.exec("PRAGMA synchronous=OFF")
    try connection.exec("BEGIN")
    let entity = try connection.prepare(
      "insert or replace into entities (id, hash, username, phone, name, date) values (?,?,?,?,?,?)")
    let now = Int64(Date().timeIntervalSince1970)
    for index in 0..<entities {
      let isChannel = index % 4 == 0
      let id = isChannel ? -1_000_000_000_000 - Int64(index) : Int64(200_000_000 + index * 31)
      entity.reset()
      try entity.bind(id, at: 1)
      try entity.bind(Int64.random(in: Int64.min...Int64.max, using: &random), at: 2)
      try entity.bind(index % 3 == 0 ? "user\(index)_\(UInt16.random(in: 0...9999, using: &random))" : nil, at: 3)
      try entity.bind(isChannel ? nil : Int64(79_000_000_000 + index), at: 4)
      try entity.bind("Contact \(index)", at: 5)
      try entity.bind(now - Int64(index) * 60, at: 6)
      _ = try entity.step()
    }
    let state = try connection.prepare("insert or replace into update_state values (?,?,?,?,?)")
    for index in 0..<6 {
      state.reset()
      try state.bind(index == 0 ? 0 : -1_000_000_000_000 - Int64(index), at: 1)
      try state.bind(Int64.random(in: 1...5_000_000, using: &random), at: 2)
      try state.bind(index == 0 ? Int64.random(in: 1...1000, using: &random) : 0, at: 3)
      // Telethon writes channel rows' date as a REAL with fractions.
      if index == 0 { try state.bind(now, at: 4) } else { try state.bind(Double(now) + 0.25, at: 4) }
      try state.bind(index == 0 ? Int64.random(in: 1...100_000, using: &random) : 0, at: 5)
      _ = try state.step()
    }
    try connection.exec("COMMIT")
  }

  /// Writes the bot database: the seed's tables (plus tgsess's and encrypted secrets unless
  /// `legacy`), session_backups history, and the bot's own tables.
  func writeDatabase(
    rows: [UserRow], backupsPerUser: Int, messageLogMiB: Int, legacy: Bool, random: inout SplitMix64
  ) throws {
    let connection = try SQLiteConnection(path: deployment.databasePath, mode: .readWriteCreate)
    try connection.exec("PRAGMA synchronous=OFF")
    try connection.exec(
      """
      CREATE TABLE user_sessions (
          user_id INTEGER PRIMARY KEY,
          session_string TEXT,
          api_id INTEGER,
          api_hash TEXT,
          created_at TIMESTAMP,
          updated_at TIMESTAMP
      );
      CREATE TABLE session_backups (
          id INTEGER PRIMARY KEY,
          user_id INTEGER,
          session_string TEXT,
          api_id INTEGER,
          api_hash TEXT,
          backup_reason TEXT,
          created_at TIMESTAMP
      );
      CREATE TABLE copy_configs (
          id INTEGER PRIMARY KEY AUTOINCREMENT,
          user_id INTEGER NOT NULL,
          source_chat INTEGER,
          target_chat INTEGER,
          filters TEXT,
          enabled INTEGER DEFAULT 1
      );
      CREATE TABLE message_log (
          id INTEGER PRIMARY KEY AUTOINCREMENT,
          user_id INTEGER NOT NULL,
          chat_id INTEGER,
          message_id INTEGER,
          body TEXT,
          copied_at TIMESTAMP
      );
      """)
    try connection.exec("BEGIN")
    let now = Date()
    let user = try connection.prepare("INSERT INTO user_sessions VALUES (?,?,?,?,?,?)")
    let history = try connection.prepare(
      "INSERT INTO session_backups(user_id, session_string, api_id, api_hash, backup_reason, created_at) VALUES (?,?,?,?,?,?)"
    )
    let config = try connection.prepare(
      "INSERT INTO copy_configs(user_id, source_chat, target_chat, filters) VALUES (?,?,?,?)")
    let reasons = ["Before login", "Before 2FA", "Manual", "Post successful recovery"]
    for row in rows {
      user.reset()
      try user.bind(row.userID, at: 1)
      try user.bind(row.sessionString, at: 2)
      try user.bind(Int64(row.apiID), at: 3)
      try user.bind(row.apiHash, at: 4)
      try user.bind(Timestamp.string(now.addingTimeInterval(-86400 * 60)), at: 5)
      try user.bind(Timestamp.string(now.addingTimeInterval(-3600)), at: 6)
      _ = try user.step()
      for index in 0..<backupsPerUser {
        history.reset()
        try history.bind(row.userID, at: 1)
        try history.bind(row.sessionString, at: 2)
        try history.bind(Int64(row.apiID), at: 3)
        try history.bind(row.apiHash, at: 4)
        try history.bind(reasons[index % reasons.count], at: 5)
        try history.bind(Timestamp.string(now.addingTimeInterval(-86400 * Double(index + 1))), at: 6)
        _ = try history.step()
      }
      config.reset()
      try config.bind(row.userID, at: 1)
      try config.bind(-1_001_000_000_000 - row.userID, at: 2)
      try config.bind(-1_002_000_000_000 - row.userID, at: 3)
      try config.bind(#"{"media": true, "forward_header": false}"#, at: 4)
      _ = try config.step()
    }
    // The bot's bulk data, so the database has a realistic size.
    if messageLogMiB > 0, !rows.isEmpty {
      let log = try connection.prepare(
        "INSERT INTO message_log(user_id, chat_id, message_id, body, copied_at) VALUES (?,?,?,?,?)")
      let body = String(repeating: "lorem ipsum dolor sit amet ", count: 18)
      let count = messageLogMiB * 1024 * 1024 / (body.utf8.count + 40)
      for index in 0..<count {
        log.reset()
        try log.bind(rows[index % rows.count].userID, at: 1)
        try log.bind(Int64(-1_001_000_000_000 - Int64(index % 97)), at: 2)
        try log.bind(Int64(index), at: 3)
        try log.bind(body, at: 4)
        try log.bind(Timestamp.string(now.addingTimeInterval(-Double(index))), at: 5)
        _ = try log.step()
      }
    }
    try connection.exec("COMMIT")
    try connection.close()
    chmod(deployment.databasePath, FileSystem.fileMode)

    if legacy {
      // The seed's periodic database copies, for migrate's import.
      let database = try BotDatabase(path: deployment.databasePath, mode: .readOnly)
      try database.backup(to: deployment.databasePath + ".backup_" + Timestamp.compact(now.addingTimeInterval(-86400)))
      database.close()
    } else {
      _ = try KeyStore.ensureKeys(deployment)
      let database = try BotDatabase(path: deployment.databasePath, mode: .readWrite)
      try database.migrate()
      _ = try database.encryptSecrets(fernet: try KeyStore.requireFernet(deployment), rotate: false)
      database.close()
    }
  }
}

import Foundation
import GRDB

/// A secret read from the bot database (a session string or api_hash, plaintext or Fernet
/// token). It never prints.
public struct SecretText: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
  public let value: String
  /// The row and column it was read from; nil for a secret that did not come from the database.
  public let origin: SecretOrigin?

  public init(_ value: String) {
    self.value = value
    origin = nil
  }

  /// A secret read from the row `origin` names.
  public init(_ value: String, origin: SecretOrigin) {
    self.value = value
    self.origin = origin
  }

  public var description: String { "<secret>" }
  public var debugDescription: String { "<secret>" }
}

/// Where a secret was read: table, column and row, and whether that column may hold only
/// Fernet tokens (it may once `tgsess migrate` has encrypted the database's secrets).
public struct SecretOrigin: Sendable, Equatable, CustomStringConvertible {
  public var table: String
  public var column: String
  /// The user the row belongs to.
  public var userID: Int64
  /// The row id, for `session_backups` rows.
  public var rowID: Int64?
  /// Whether `tgsess migrate` encrypted this database's secrets: from then on a value that is not
  /// a Fernet token is damaged, never plaintext.
  public var isTokenRequired: Bool

  public init(table: String, column: String, userID: Int64, rowID: Int64? = nil, isTokenRequired: Bool) {
    self.table = table
    self.column = column
    self.userID = userID
    self.rowID = rowID
    self.isTokenRequired = isTokenRequired
  }

  /// `user_sessions.session_string of user 42`, `session_backups.session_string row 7 (user 42)`.
  public var description: String {
    if let rowID { return "\(table).\(column) row \(rowID) (user \(userID))" }
    return "\(table).\(column) of user \(userID)"
  }
}

/// The secret columns tgsess encrypts, per table.
enum SecretColumns {
  static let tables: [(table: String, key: String)] = [("user_sessions", "user_id"), ("session_backups", "id")]
  static let columns = ["session_string", "api_hash"]
}

extension BotDatabase {
  /// The `tgsess_state` key set when `encryptSecrets` (or `recordSecretsEncrypted`) left every
  /// secret a Fernet token.
  static let secretsEncryptedStateKey = "secrets_encrypted"

  /// Whether `tgsess migrate` has encrypted this database's secrets (inside a read).
  /// - Throws: a GRDB error.
  static func areSecretsEncrypted(_ db: Database) throws -> Bool {
    guard try db.tableExists("tgsess_state") else { return false }
    return try String.fetchOne(
      db, sql: "SELECT value FROM tgsess_state WHERE key = ?", arguments: [secretsEncryptedStateKey]) != nil
  }

  /// Whether `tgsess migrate` has encrypted this database's secrets, so that every secret column
  /// holds Fernet tokens only.
  /// - Throws: `StoreError.database`.
  public func areSecretsEncrypted() throws -> Bool {
    try read("read secret state") { try Self.areSecretsEncrypted($0) }
  }

  /// A secret column's value as `SecretText`; nil for NULL or empty.
  static func secret(_ value: String?, origin: SecretOrigin) -> SecretText? {
    guard let value, !value.isEmpty else { return nil }
    return SecretText(value, origin: origin)
  }

  /// Whether `value` starts like a Fernet token (version 0x80 and a timestamp before 2106) but is
  /// not one: a token that lost or gained characters. No session string or api_hash starts so.
  static func isDamagedToken(_ value: String) -> Bool {
    value.hasPrefix("gAAAAA") && !Fernet.looksLikeToken(value)
  }

  /// How the database's secrets stand against the configured keys.
  public struct SecretCensus: Sendable, Equatable {
    public var plaintext = 0
    public var underNewestKey = 0
    public var underOlderKey = 0
    /// Tokens no configured key decrypts, and damaged tokens (see `isDamagedToken`).
    public var undecryptable = 0
  }

  /// What `encryptSecrets` changed.
  public struct SecretRewrite: Sendable, Equatable {
    public var encrypted = 0
    public var rotated = 0
  }

  /// Counts plaintext and encrypted secrets. Without keys, every token counts as undecryptable.
  /// - Throws: `StoreError.database`.
  public func secretCensus(fernet: Fernet?) throws -> SecretCensus {
    try read("scan secrets") { db in
      var census = SecretCensus()
      for (table, _) in SecretColumns.tables where try db.tableExists(table) {
        let present = Set(try db.columns(in: table).map(\.name))
        for column in SecretColumns.columns where present.contains(column) {
          let values = try String.fetchAll(
            db, sql: "SELECT \(column) FROM \(table) WHERE \(column) IS NOT NULL AND \(column) != ''")
          for value in values {
            guard Fernet.looksLikeToken(value) else {
              if Self.isDamagedToken(value) { census.undecryptable += 1 } else { census.plaintext += 1 }
              continue
            }
            guard let fernet, let (_, index) = try? fernet.decryptWithKeyIndex(value) else {
              census.undecryptable += 1
              continue
            }
            if index == 0 { census.underNewestKey += 1 } else { census.underOlderKey += 1 }
          }
        }
      }
      return census
    }
  }

  /// Encrypts every plaintext secret and, with `rotate`, re-encrypts every token not under the
  /// newest key; all in one transaction, so a crash leaves the old state. Tokens no key decrypts
  /// and damaged tokens are left untouched (encrypting a damaged token would hide the damage).
  /// The same transaction records that the secrets are encrypted: from then on a secret column
  /// holds tokens only, and `reveal` refuses anything else.
  /// - Throws: `StoreError.database`.
  public func encryptSecrets(fernet: Fernet, rotate: Bool) throws -> SecretRewrite {
    try write("encrypt secrets") { db in
      var rewrite = SecretRewrite()
      for (table, key) in SecretColumns.tables where try db.tableExists(table) {
        let present = Set(try db.columns(in: table).map(\.name))
        for column in SecretColumns.columns where present.contains(column) {
          let rows = try Row.fetchAll(
            db, sql: "SELECT \(key) AS k, \(column) AS v FROM \(table) WHERE \(column) IS NOT NULL AND \(column) != ''")
          for row in rows {
            let value: String = row["v"]
            let rowKey: DatabaseValue = row["k"]
            var replacement: String?
            if Self.isDamagedToken(value) {
              continue
            } else if !Fernet.looksLikeToken(value) {
              replacement = try fernet.encrypt(Array(value.utf8))
              rewrite.encrypted += 1
            } else if rotate, let (_, index) = try? fernet.decryptWithKeyIndex(value), index > 0 {
              replacement = try fernet.rotate(value)
              rewrite.rotated += 1
            }
            if let replacement {
              try db.execute(
                sql: "UPDATE \(table) SET \(column) = ? WHERE \(key) = ?", arguments: [replacement, rowKey])
            }
          }
        }
      }
      try Self.recordSecretsEncrypted(db)
      try CrashPoint.hit("migrate.secrets-before-commit")
      return rewrite
    }
  }

  /// Records that the secrets are encrypted when no plaintext secret is left, for a database a
  /// tgsess before this state key migrated; one transaction.
  /// - Returns: whether the state is recorded now.
  /// - Throws: `StoreError.database`.
  public func recordSecretsEncrypted() throws -> Bool {
    try write("record secret state") { db in
      for (table, _) in SecretColumns.tables where try db.tableExists(table) {
        let present = Set(try db.columns(in: table).map(\.name))
        for column in SecretColumns.columns where present.contains(column) {
          let values = try String.fetchAll(
            db, sql: "SELECT \(column) FROM \(table) WHERE \(column) IS NOT NULL AND \(column) != ''")
          if values.contains(where: { !Fernet.looksLikeToken($0) && !Self.isDamagedToken($0) }) { return false }
        }
      }
      try Self.recordSecretsEncrypted(db)
      return true
    }
  }

  private static func recordSecretsEncrypted(_ db: Database) throws {
    guard try db.tableExists("tgsess_state") else { return }
    try db.execute(
      sql: """
        INSERT INTO tgsess_state(key, value, updated_at) VALUES (?, ?, ?)
        ON CONFLICT(key) DO NOTHING
        """, arguments: [secretsEncryptedStateKey, Timestamp.now(), Timestamp.now()])
  }

  /// Decrypts a stored secret: Fernet tokens with the configured keys; plaintext as it is, but
  /// only before `tgsess migrate` encrypted the database's secrets. After that, a value that is
  /// not a token is a damaged one (a lost character) and is refused, never used as a session.
  /// - Throws: `StoreError.crypto` naming the row (or `object`) when no key decrypts the token,
  ///   or the column must hold tokens and does not.
  public static func reveal(_ secret: SecretText, fernet: Fernet?, object: String) throws -> String {
    guard Fernet.looksLikeToken(secret.value) else {
      guard let origin = secret.origin, origin.isTokenRequired else { return secret.value }
      throw StoreError.crypto(
        object: origin.description,
        reason:
          "holds a value that is not a Fernet token (damaged or truncated?), though tgsess migrate encrypted this database's secrets; it is not used",
        hint: origin.rowID == nil
          ? "rebuild it from the session file or a backup: tgsess recover --user \(origin.userID)"
          : "this history row is unusable; recovery uses the user's other backups (tgsess recover --user \(origin.userID))"
      )
    }
    guard let fernet else {
      throw StoreError.crypto(
        object: object, reason: "secret is encrypted and no Fernet key is configured",
        hint: "set TGSESS_FERNET_KEYS or restore keys/fernet.keys")
    }
    guard let plain = try? fernet.decrypt(secret.value) else {
      throw StoreError.crypto(
        object: object, reason: "no configured Fernet key decrypts the stored secret",
        hint: "add the key it was encrypted with to keys/fernet.keys (older keys go after the newest)")
    }
    return String(decoding: plain, as: UTF8.self)
  }
}

extension BotDatabase {
  /// What a token no configured key opens counts as in `fernetKeyFingerprints`.
  public static let unknownFernetKey = "unknown"

  /// The fingerprints of the Fernet keys this database's secret tokens are under (of one user's
  /// rows when `userID` is given), sorted; `unknownFernetKey` stands for tokens no key in
  /// `fernet` opens and for damaged ones. Plaintext secrets count under no key. An archive's
  /// record keeps this list, so an old key can be dropped only when no archive needs it.
  /// - Throws: `StoreError.database`.
  public func fernetKeyFingerprints(fernet: Fernet, userID: Int64? = nil) throws -> [String] {
    try read("scan secret keys") { db in
      var found: Set<String> = []
      for (table, _) in SecretColumns.tables where try db.tableExists(table) {
        let present = Set(try db.columns(in: table).map(\.name))
        guard userID == nil || present.contains("user_id") else { continue }
        for column in SecretColumns.columns where present.contains(column) {
          var sql = "SELECT \(column) FROM \(table) WHERE \(column) IS NOT NULL AND \(column) != ''"
          var arguments: StatementArguments = []
          if let userID {
            sql += " AND user_id = ?"
            arguments = [userID]
          }
          // A cursor, one token at a time: a fleet's tens of thousands of tokens are never held at once.
          let values = try String.fetchCursor(db, sql: sql, arguments: arguments)
          while let value = try values.next() {
            guard Fernet.looksLikeToken(value) else {
              if Self.isDamagedToken(value) { found.insert(Self.unknownFernetKey) }
              continue
            }
            if let (_, index) = try? fernet.decryptWithKeyIndex(value) {
              found.insert(fernet.keys[index].fingerprint)
            } else {
              found.insert(Self.unknownFernetKey)
            }
          }
        }
      }
      return found.sorted()
    }
  }

  /// How many of this database's secret tokens each configured key opens (by fingerprint), and
  /// how many no key opens (damaged tokens included).
  /// - Throws: `StoreError.database`.
  public func fernetKeyCounts(fernet: Fernet) throws -> (byKey: [String: Int], unopened: Int) {
    try read("count secret keys") { db in
      var byKey: [String: Int] = [:]
      var unopened = 0
      for (table, _) in SecretColumns.tables where try db.tableExists(table) {
        let present = Set(try db.columns(in: table).map(\.name))
        for column in SecretColumns.columns where present.contains(column) {
          let values = try String.fetchAll(
            db, sql: "SELECT \(column) FROM \(table) WHERE \(column) IS NOT NULL AND \(column) != ''")
          for value in values {
            guard Fernet.looksLikeToken(value) else {
              if Self.isDamagedToken(value) { unopened += 1 }
              continue
            }
            if let (_, index) = try? fernet.decryptWithKeyIndex(value) {
              byKey[fernet.keys[index].fingerprint, default: 0] += 1
            } else {
              unopened += 1
            }
          }
        }
      }
      return (byKey, unopened)
    }
  }
}

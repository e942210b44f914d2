import Foundation
import GRDB

/// A secret read from the bot database (a session string or api_hash, plaintext or Fernet
/// token). It never prints.
public struct SecretText: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
  public let value: String
  public init(_ value: String) { self.value = value }
  public var description: String { "<secret>" }
  public var debugDescription: String { "<secret>" }
}

/// The secret columns tgsess encrypts, per table.
enum SecretColumns {
  static let tables: [(table: String, key: String)] = [("user_sessions", "user_id"), ("session_backups", "id")]
  static let columns = ["session_string", "api_hash"]
}

extension BotDatabase {
  /// How the database's secrets stand against the configured keys.
  public struct SecretCensus: Sendable, Equatable {
    public var plaintext = 0
    public var underNewestKey = 0
    public var underOlderKey = 0
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
              census.plaintext += 1
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
  /// are left untouched.
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
            if !Fernet.looksLikeToken(value) {
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
      try CrashPoint.hit("migrate.secrets-before-commit")
      return rewrite
    }
  }

  /// Decrypts a stored secret: Fernet tokens with the configured keys, plaintext as it is.
  /// - Throws: `StoreError.crypto` naming `object` when no key decrypts the token.
  public static func reveal(_ secret: SecretText, fernet: Fernet?, object: String) throws -> String {
    guard Fernet.looksLikeToken(secret.value) else { return secret.value }
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

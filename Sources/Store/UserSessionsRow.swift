import Foundation
import GRDB

/// One value of a database row, as SQLite stores it.
public enum RowValue: Sendable, Equatable {
  case null
  case integer(Int64)
  case real(Double)
  case text(String)
  case blob(Data)
}

/// A user's `user_sessions` row as a backup holds it: every column, secrets still as Fernet
/// tokens. Its description names the user and the columns only, never a value.
public struct UserSessionsRow: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
  public let userID: Int64
  public let columns: [String: RowValue]

  public init(userID: Int64, columns: [String: RowValue]) {
    self.userID = userID
    self.columns = columns
  }

  public var description: String {
    "user_sessions row of user \(userID) (\(columns.keys.sorted().joined(separator: ", ")))"
  }
  public var debugDescription: String { description }

  /// The `user_sessions` row in a per-user archive's rows entry (`user-rows`, as
  /// `BotDatabase.userRowsJSON` writes it). The entry's hash only proves it is what the archive's
  /// maker wrote, so it must be a JSON object of `userID`'s rows whose row is `userID`'s own.
  /// - Parameters:
  ///   - entry: the entry's path in the archive, and `archivePath` the archive, for the error.
  /// - Returns: the row, or nil when the entry holds no `user_sessions` row.
  /// - Throws: `StoreError.invalid` naming the archive and the entry.
  public static func parse(rowsEntry data: Data, userID: Int64, entry: String, archivePath: String) throws
    -> UserSessionsRow?
  {
    let document = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
    guard let document, (document["user_id"] as? NSNumber)?.int64Value == userID else {
      throw StoreError.invalid(
        path: archivePath, reason: "\(entry) is not a JSON object of user \(userID)'s rows", hint: "use another backup")
    }
    guard let row = document["user_sessions"] else { return nil }
    guard let row = row as? [String: Any], (row["user_id"] as? NSNumber)?.int64Value == userID else {
      throw StoreError.invalid(
        path: archivePath, reason: "\(entry) holds a user_sessions row that is not user \(userID)'s",
        hint: "use another backup")
    }
    return UserSessionsRow(userID: userID, columns: row.mapValues(value(ofJSON:)))
  }

  /// A JSON value as `userRowsJSON` wrote it: numbers that are whole go back as integers, a
  /// `{"base64": …}` object as a BLOB.
  static func value(ofJSON value: Any) -> RowValue {
    switch value {
    case is NSNull: return .null
    case let number as Int64: return .integer(number)
    case let number as Int: return .integer(Int64(number))
    case let number as NSNumber:
      let double = number.doubleValue
      return double == double.rounded() && abs(double) < 9e15 ? .integer(number.int64Value) : .real(double)
    case let number as Double: return .real(number)
    case let text as String: return .text(text)
    case let object as [String: Any]:
      return (object["base64"] as? String).flatMap { Data(base64Encoded: $0) }.map(RowValue.blob) ?? .null
    default: return .null
    }
  }
}

extension BotDatabase {
  /// The `user_sessions` row of `userID` with every column as stored, or nil.
  /// - Throws: `StoreError.database`.
  public func userSessionsRow(userID: Int64) throws -> UserSessionsRow? {
    try read("read the user_sessions row of user \(userID)") { db in
      guard try db.tableExists("user_sessions"),
        let row = try Row.fetchOne(db, sql: "SELECT * FROM user_sessions WHERE user_id = ?", arguments: [userID])
      else { return nil }
      var columns: [String: RowValue] = [:]
      for (column, value) in row {
        switch value.storage {
        case .null: columns[column] = .null
        case .int64(let number): columns[column] = .integer(number)
        case .double(let number): columns[column] = .real(number)
        case .string(let text): columns[column] = .text(text)
        case .blob(let data): columns[column] = .blob(data)
        }
      }
      return UserSessionsRow(userID: userID, columns: columns)
    }
  }

  /// Upserts `row` as its user's `user_sessions` row, in one transaction; only the columns both
  /// sides have are written, and `user_id` is the row's user whatever its own column says.
  /// - Throws: `StoreError.database`.
  public func upsertUserRow(_ row: UserSessionsRow) throws {
    try write("restore the user_sessions row of user \(row.userID)") { db in
      var names: [String] = []
      var values: [DatabaseValue] = []
      for column in try db.columns(in: "user_sessions").map(\.name) {
        if column == "user_id" {
          names.append(column)
          values.append(row.userID.databaseValue)
          continue
        }
        guard let value = row.columns[column] else { continue }
        names.append(column)
        switch value {
        case .null: values.append(.null)
        case .integer(let number): values.append(number.databaseValue)
        case .real(let number): values.append(number.databaseValue)
        case .text(let text): values.append(text.databaseValue)
        case .blob(let data): values.append(data.databaseValue)
        }
      }
      guard names.contains("user_id") else { return }
      let placeholders = Array(repeating: "?", count: names.count).joined(separator: ", ")
      let updates = names.filter { $0 != "user_id" }.map { "\($0) = excluded.\($0)" }.joined(separator: ", ")
      try db.execute(
        sql: """
          INSERT INTO user_sessions (\(names.joined(separator: ", "))) VALUES (\(placeholders))
          ON CONFLICT(user_id) DO UPDATE SET \(updates.isEmpty ? "user_id = excluded.user_id" : updates)
          """, arguments: StatementArguments(values))
    }
  }
}

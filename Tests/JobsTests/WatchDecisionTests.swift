import Foundation
import Jobs
import Store
import Testing

/// Watch's rule that tells a new identity from churn, checked as a golden table of values.
@Suite struct WatchDecisionTests {
  static let fileA = FileIdentity(format: "telethon-v8", dcID: 2, authKey: "aaaaaaaa")
  static let fileB = FileIdentity(format: "telethon-v8", dcID: 2, authKey: "bbbbbbbb")
  static let rowA = RowIdentity(session: "key:aaaaaaaa", apiID: 111)
  static let rowB = RowIdentity(session: "key:bbbbbbbb", apiID: 111)
  static let tokenA = RowIdentity(session: "text:0123456789abcdef", apiID: 111)
  static let tokenB = RowIdentity(session: "text:fedcba9876543210", apiID: 111)

  static func current(_ file: FileIdentity?, _ row: RowIdentity?, hasRow: Bool = true) -> CurrentIdentity {
    CurrentIdentity(file: file.map { .valid($0) } ?? .absent, row: row, hasRow: hasRow || row != nil)
  }

  static func known(_ file: FileIdentity?, _ row: RowIdentity?) -> ArchivedIdentity {
    ArchivedIdentity(archiveID: "20260101T000000Z-u1-aaaaaa", file: file, row: row, isRowKnown: true)
  }

  /// An archive known from its record only (written by backup, recover or the bot runner).
  static func recorded(_ file: FileIdentity?) -> ArchivedIdentity {
    ArchivedIdentity(
      archiveID: "20260101T000000Z-u1-bbbbbb",
      file: file.map { FileIdentity(format: "", dcID: $0.dcID, authKey: $0.authKey) },
      row: nil, isRowKnown: false)
  }

  static func word(_ verdict: WatchVerdict) -> String {
    switch verdict {
    case .unchanged: return "unchanged"
    case .archive(let reason, _): return "archive \(reason)"
    case .invalid: return "invalid"
    case .vanished: return "vanished"
    case .gone: return "gone"
    }
  }

  @Test func goldenTable() {
    let a = Self.fileA
    let b = Self.fileB
    let cases: [(String, CurrentIdentity, ArchivedIdentity?, String)] = [
      ("first sight of a user", Self.current(a, Self.rowA), nil, "archive New user"),
      ("a user with a row only", Self.current(nil, Self.rowA), nil, "archive New user"),
      ("churn: same file and row", Self.current(a, Self.rowA), Self.known(a, Self.rowA), "unchanged"),
      ("new key in the file", Self.current(b, Self.rowA), Self.known(a, Self.rowA), "archive New login"),
      ("new key in the string", Self.current(a, Self.rowB), Self.known(a, Self.rowA), "archive New login"),
      ("file, then row of one login", Self.current(b, Self.rowB), Self.known(b, Self.rowA), "unchanged"),
      ("row, then file of one login", Self.current(b, Self.rowB), Self.known(a, Self.rowB), "unchanged"),
      (
        "dc moved", Self.current(FileIdentity(format: "telethon-v8", dcID: 4, authKey: "aaaaaaaa"), Self.rowA),
        Self.known(a, Self.rowA), "archive Session changed"
      ),
      (
        "format upgraded", Self.current(FileIdentity(format: "telethon-v7", dcID: 2, authKey: "aaaaaaaa"), Self.rowA),
        Self.known(a, Self.rowA), "archive Session changed"
      ),
      (
        "api_id changed", Self.current(a, RowIdentity(session: "key:aaaaaaaa", apiID: 222)), Self.known(a, Self.rowA),
        "archive Session changed"
      ),
      (
        "token re-encrypted, no Fernet key", Self.current(a, Self.tokenB), Self.known(a, Self.tokenA),
        "archive Session changed"
      ),
      ("same token, no Fernet key", Self.current(a, Self.tokenA), Self.known(a, Self.tokenA), "unchanged"),
      // Archives of backup, recover and the bot runner: their record holds the file's identity only.
      ("bot runner's archive, same key", Self.current(a, Self.rowA), Self.recorded(a), "unchanged"),
      ("bot runner's archive, token not decodable", Self.current(a, Self.tokenB), Self.recorded(a), "unchanged"),
      ("bot runner's archive, other key", Self.current(b, Self.rowB), Self.recorded(a), "archive New login"),
      ("record without fingerprint", Self.current(a, Self.rowA), Self.recorded(nil), "archive New login"),
      (
        "invalid file", CurrentIdentity(file: .invalid("x: not an SQLite file"), row: Self.rowA, hasRow: true),
        Self.known(a, Self.rowA), "invalid"
      ),
      (
        "vanished file", CurrentIdentity(file: .absent, row: Self.rowA, hasRow: true, wasFileSeen: true),
        Self.known(a, Self.rowA), "vanished"
      ),
      (
        "logged out and removed",
        CurrentIdentity(file: .absent, row: Self.rowA, hasRow: true, isLoggedOut: true, wasFileSeen: true),
        Self.known(a, Self.rowA), "gone"
      ),
      ("neither file nor row", CurrentIdentity(file: .absent, row: nil, hasRow: false, wasFileSeen: true), nil, "gone"),
      ("row without a string", CurrentIdentity(file: .absent, row: nil, hasRow: true), nil, "gone"),
    ]
    for (name, current, archived, expected) in cases {
      #expect(Self.word(WatchDecision.decide(current, archived: archived)) == expected, "\(name)")
    }
  }

  /// What an archive says of what changed names fingerprints, never more.
  @Test func detailNamesTheNewFingerprint() {
    let verdict = WatchDecision.decide(Self.current(Self.fileB, Self.rowA), archived: Self.known(Self.fileA, Self.rowA))
    #expect(verdict == .archive(reason: WatchReason.newLogin, detail: "session file holds key bbbbbbbb"))
  }

  @Test func archivedIdentityFromARecord() throws {
    // A record as the bot runner's "Post successful recovery" archive leaves it.
    let json = """
      {"byte_count": 1, "content_byte_count": 1, "created_at": "2026-01-01T00:00:00Z", "entry_count": 1,
       "file_name": "20260101T000000Z-u7-abcdef.tar.zst.age", "host": "h", "id": "20260101T000000Z-u7-abcdef",
       "is_encrypted": true, "kind": "user", "reason": "Post successful recovery", "sha256": "",
       "session_fingerprint": {"auth_key": "12345678", "dc_id": 3, "server_address": "149.154.175.100"},
       "tool_version": "", "user_id": 7, "user_ids": [7], "verification": "full"}
      """
    let record = try #require(ArchiveRecord.decode(Data(json.utf8)))
    let archived = ArchivedIdentity(record: record)
    #expect(archived.file == FileIdentity(format: "", dcID: 3, authKey: "12345678"))
    #expect(!archived.isRowKnown)
    #expect(archived.archiveID == record.id)
  }
}

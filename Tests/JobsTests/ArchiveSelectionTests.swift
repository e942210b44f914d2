import Foundation
import Jobs
import Store
import Testing

/// The one rule for "latest" (restore, drill), on small golden tables of records.
@Suite struct ArchiveSelectionTests {
  /// A record as `list` gives it: `kind` "full" or "u<user>", made `minutes` after a fixed time.
  static func record(_ what: String, _ minutes: Int, _ reason: String, holds users: [Int64] = []) -> ArchiveRecord {
    let created = Date(timeIntervalSince1970: 1_800_000_000 + Double(minutes * 60))
    let id = "\(Timestamp.compact(created))-\(what)-\(reason.prefix(3).lowercased())\(minutes)x"
    let user = what.hasPrefix("u") ? Int64(what.dropFirst())! : nil
    let object: [String: Any] = [
      "id": id, "file_name": id + ".tar.zst.age", "kind": user == nil ? "full" : "user",
      "created_at": ISO8601DateFormatter().string(from: created), "user_id": user.map { $0 as Any } ?? NSNull(),
      "reason": reason, "is_encrypted": true, "byte_count": 1, "content_byte_count": 1, "entry_count": 1,
      "user_ids": user.map { [$0] } ?? users, "sha256": "", "verification": "full", "tool_version": "", "host": "",
    ]
    return ArchiveRecord.decode(try! JSONSerialization.data(withJSONObject: object))!
  }

  static func at(_ minutes: Int) -> Date { Date(timeIntervalSince1970: 1_800_000_000 + Double(minutes * 60)) }

  static let records = [
    record("full", 10, "Scheduled", holds: [1, 2]),
    record("u1", 10, "Scheduled"),
    record("u1", 20, "Before restore"),
    record("full", 30, "Before restore", holds: [1, 2]),
    record("u1", 40, "Imported"),
    record("full", 50, "Imported"),
    record("u2", 60, "Manual"),
    record("full", 70, "Scheduled", holds: [2]),
  ].shuffled()

  static func id(_ record: ArchiveRecord?) -> String? {
    record.map {
      "\($0.kind == .full ? "full" : "u\($0.userID!)")@\(Int($0.createdAt.timeIntervalSince1970 - 1_800_000_000) / 60)"
    }
  }

  @Test(
    arguments: [
      // (at, user, expected)
      (nil, nil, "full@70"),
      (65, nil, "full@10"),  // the Imported copy at 50 and the undo at 30 come after any regular snapshot
      (5, nil, nil),
      (35, nil, "full@10"),
      (nil, 1, "u1@10"),  // the user's own regular archive, before a newer undo or Imported copy
      (nil, 2, "u2@60"),
      (65, 2, "u2@60"),
      (55, 2, "full@10"),  // no per-user archive of user 2 yet: the snapshot that holds them
      (nil, 3, nil),  // nothing holds user 3
    ] as [(Int?, Int64?, String?)])
  func latest(at minutes: Int?, user: Int64?, expected: String?) {
    #expect(Self.id(ArchiveSelection.latest(in: Self.records, at: minutes.map(Self.at), userID: user)) == expected)
  }

  /// The lazy variant (what restore and drill use, checking signatures as it goes) picks what
  /// the rule picks among the accepted archives, judges each by what `accept` returns (the
  /// signature's reason, not the record's), and authenticates no more than it must.
  @Test(
    arguments: [
      (nil, nil), (65, nil), (5, nil), (35, nil), (nil, 1), (nil, 2), (65, 2), (55, 2), (nil, 3),
    ] as [(Int?, Int64?)])
  func latestAuthenticatingAsItGoes(at minutes: Int?, user: Int64?) {
    let at = minutes.map(Self.at)
    var asked: [String] = []
    let lazy = ArchiveSelection.latest(in: Self.records, at: at, userID: user) { record in
      asked.append(record.id)
      return record
    }
    #expect(Self.id(lazy) == Self.id(ArchiveSelection.latest(in: Self.records, at: at, userID: user)))
    // Refusing an archive is the same as its not being there.
    if let lazy {
      let without = Self.records.filter { $0.id != lazy.id }
      let refused = ArchiveSelection.latest(in: Self.records, at: at, userID: user) { $0.id == lazy.id ? nil : $0 }
      #expect(Self.id(refused) == Self.id(ArchiveSelection.latest(in: without, at: at, userID: user)))
    }
    // The newest regular candidate ends the search: user 2 at 65 asks only for u2@60.
    if minutes == 65, user == 2 { #expect(asked.count == 1) }
  }

  /// A record that claims another reason changes nothing: "accept" returns what the signature
  /// says, and that is what counts.
  @Test func theReasonThatCountsIsTheOneAcceptReturns() {
    let undo = Self.record("u1", 50, "Before restore")
    var claimsRegular = undo
    claimsRegular.reason = "Scheduled"
    let records = [Self.record("u1", 10, "Scheduled"), claimsRegular]
    let pick = ArchiveSelection.latest(in: records, userID: 1) { $0.id == undo.id ? undo : $0 }
    #expect(Self.id(pick) == "u1@10")
  }

  @Test func anUndoIsPickedOnlyWhenNothingRegularFits() {
    let onlyUndo = [
      Self.record("u1", 20, "Before restore"), Self.record("full", 30, "Before restore", holds: [1]),
      Self.record("u1", 40, "Imported"),
    ]
    #expect(Self.id(ArchiveSelection.latest(in: onlyUndo, userID: 1)) == "u1@20")
    #expect(Self.id(ArchiveSelection.latest(in: onlyUndo)) == "full@30")
    #expect(
      Self.id(ArchiveSelection.latest(in: onlyUndo + [Self.record("full", 5, "Manual", holds: [1])], userID: 1))
        == "full@5")
  }

  /// `restore --at TIME --user N` where only an Imported legacy copy of N is that old: nothing
  /// holds the user then (it used to pick the Imported copy and fail with "holds nothing").
  @Test func anImportedCopyIsNeverLatest() {
    let records = [Self.record("u1", 5, "Imported"), Self.record("u1", 60, "Scheduled")]
    #expect(ArchiveSelection.latest(in: records, at: Self.at(30), userID: 1) == nil)
    #expect(Self.id(ArchiveSelection.latest(in: records, at: Self.at(60), userID: 1)) == "u1@60")
  }

  @Test func latestPerUserIsEachUsersNewestRegularArchive() {
    let picked = ArchiveSelection.latestPerUser(in: Self.records).map(Self.id)
    #expect(picked == ["u1@10", "u2@60"])
  }
}

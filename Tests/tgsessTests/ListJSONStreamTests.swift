import Foundation
import Jobs
import Store
import TestSupport
import Testing

/// `list --json` writes one archive at a time (issue 19: memory that does not grow with the
/// fleet); its bytes are still exactly what encoding the whole list at once gives.
@Suite struct ListJSONStreamTests {
  @Test func listJSONIsByteForByteTheWholeListEncodedAtOnce() throws {
    try Tools.require()
    let fleet = try TestFleet(users: 3)
    try fleet.tgsessOK(["backup"])
    // Unencrypted archives list `"recipients" : [ ]`: the pretty-printer's blank line inside an
    // empty array, which the streamed writer must leave unindented.
    try fleet.tgsessOK(["backup", "--no-encrypt"])
    let archives = try ListJob.run(fleet.deployment, options: ListOptions())
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    encoder.dateEncodingStrategy = .iso8601
    let expected = try encoder.encode(archives) + Data("\n".utf8)
    #expect(String(decoding: expected, as: UTF8.self).contains("[\n\n"))
    let listed = try fleet.tgsessOK(["list", "--json"])
    #expect(listed.stdoutData == expected)
    // One user's archives, and none.
    let user = try fleet.sessionUserIDs()[0]
    let own = try ListJob.run(fleet.deployment, options: ListOptions(kind: "user", userID: user))
    #expect(!own.isEmpty)
    let ownListed = try fleet.tgsessOK(["list", "--json", "--kind", "user", "--user", String(user)])
    #expect(ownListed.stdoutData == (try encoder.encode(own)) + Data("\n".utf8))
    let empty = try fleet.tgsessOK(["list", "--json", "--kind", "full", "--user", "999999999"])
    let none = try ListJob.run(
      fleet.deployment, options: ListOptions(kind: "full", userID: 999_999_999))
    #expect(none.isEmpty)
    #expect(empty.stdoutData == (try encoder.encode(none)) + Data("\n".utf8))
  }
}

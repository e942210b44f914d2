import Foundation
import Store
import TestSupport
import Testing

@Suite struct AgeKeyTests {
  /// The identity from the CCTV vectors and its recipient (age-keygen -y agrees).
  static let identity = "AGE-SECRET-KEY-1EGTZVFFV20835NWYV6270LXYVK2VKNX2MMDKWYKLMGR48UAWX40Q2P2LM0"

  @Test func identitiesAndRecipientsRoundTrip() throws {
    let identity = try AgeIdentity(string: Self.identity)
    #expect(identity.string == Self.identity)
    #expect(identity.recipient.string.hasPrefix("age1"))
    #expect(identity.recipient.string.count == 62)
    #expect(try AgeRecipient(string: identity.recipient.string) == identity.recipient)

    let generated = try AgeIdentity.generate()
    #expect(generated.string.hasPrefix("AGE-SECRET-KEY-1") && generated.string.count == 74)
    #expect(try AgeIdentity(string: generated.string).recipient == generated.recipient)
    #expect(try AgeIdentity.generate().recipient != generated.recipient)
  }

  @Test func keyStringsFollowAgeCaseRules() throws {
    let identity = try AgeIdentity(string: Self.identity)
    // age requires upper-case identities and lower-case recipients.
    for bad in [Self.identity.lowercased(), identity.recipient.string.uppercased()] {
      let error = #expect(throws: AgeError.self) {
        if bad.hasPrefix("age-") { _ = try AgeIdentity(string: bad) } else { _ = try AgeRecipient(string: bad) }
      }
      #expect(error?.kind == .key)
    }
  }

  @Test func malformedKeysAreRejectedWithoutEchoingThem() throws {
    let identity = try AgeIdentity(string: Self.identity)
    var typo = Array(Self.identity)
    typo[30] = typo[30] == "Q" ? "P" : "Q"
    let badIdentities = [
      String(typo), String(Self.identity.dropLast()), "", "AGE-SECRET-KEY-1", identity.recipient.string,
      "AGE-SECRET-KEY-PQ-1HZLGZUPT4ETPKDEV8HSGFDCYZ4E522W0A7PU2LHT8EH9W6YLNC3SW78XKG",
    ]
    for text in badIdentities {
      let error = #expect(throws: AgeError.self) { _ = try AgeIdentity(string: text) }
      #expect(error?.kind == .key)
      let message = error?.localizedDescription ?? ""
      #expect(message.hasPrefix("age identity: "))
      if text.count > 20 { #expect(!message.contains(text.dropFirst(16).prefix(12))) }
    }
    for text in ["age1", "", Self.identity, String(identity.recipient.string.dropLast(2))] {
      #expect(throws: AgeError.self) { _ = try AgeRecipient(string: text) }
    }
    // A valid Bech32 string with the right prefix but the wrong key length.
    let short = Bech32.encode(hrp: "age", data: [UInt8](repeating: 7, count: 31))
    let error = #expect(throws: AgeError.self) { _ = try AgeRecipient(string: short) }
    #expect(error?.reason.contains("31 bytes") == true)
  }

  @Test func identitiesNeverPrintTheirSecret() throws {
    let identity = try AgeIdentity.generate()
    var dumped = ""
    dump(identity, to: &dumped)
    let secretPart = String(identity.string.dropFirst(16).prefix(20))
    for text in ["\(identity)", String(describing: identity), String(reflecting: identity), dumped, "\([identity])"] {
      #expect(!text.contains(secretPart), "leaked in: \(text)")
      #expect(!text.lowercased().contains(secretPart.lowercased()))
      #expect(text.contains(identity.recipient.string))
    }
  }

  // MARK: Key files

  @Test func rendersTheAgeKeygenFormat() throws {
    let identity = try AgeIdentity(string: Self.identity)
    let text = AgeKeyFile.render(identity, created: Date(timeIntervalSince1970: 1_795_000_000))
    #expect(
      text == "# created: 2026-11-18T11:06:40Z\n# public key: \(identity.recipient.string)\n\(Self.identity)\n")
  }

  @Test func parsesIdentityFilesLikeAge() throws {
    let first = try AgeIdentity.generate()
    let second = try AgeIdentity.generate()
    let text =
      "# created: 2026-11-25T04:05:25Z\r\n# public key: \(first.recipient.string)\r\n\(first.string)\r\n\n"
      + "# a second key\n\(second.string)\n"
    let parsed = try AgeKeyFile.parseIdentities(text, path: "keys.txt")
    #expect(parsed.map(\.recipient) == [first.recipient, second.recipient])
  }

  @Test func identityFileErrorsNameTheLineNotTheKey() throws {
    let identity = try AgeIdentity.generate()
    let broken = String(identity.string.dropLast())
    let error = #expect(throws: StoreError.self) {
      _ = try AgeKeyFile.parseIdentities("# comment\n\n\(broken)\n", path: "/etc/tgsess/age.key")
    }
    let message = error?.localizedDescription ?? ""
    #expect(message.hasPrefix("/etc/tgsess/age.key: line 3 is not a usable age identity"))
    #expect(!message.contains(broken.dropFirst(16).prefix(12)))
    guard case .key? = error else {
      Issue.record("expected StoreError.key, got \(String(describing: error))")
      return
    }
    let empty = #expect(throws: StoreError.self) {
      _ = try AgeKeyFile.parseIdentities("# nothing here\n", path: "empty.key")
    }
    #expect(empty?.localizedDescription.contains("no age identity in the file") == true)
    // Leading whitespace is not allowed by age either.
    #expect(throws: StoreError.self) { _ = try AgeKeyFile.parseIdentities(" \(identity.string)\n", path: "k") }
  }

  @Test func parsesRecipientFiles() throws {
    let a = try AgeIdentity.generate().recipient
    let b = try AgeIdentity.generate().recipient
    let parsed = try AgeKeyFile.parseRecipients("# backups\n\(a.string)\n\n\(b.string)\r\n", path: "recipients.txt")
    #expect(parsed == [a, b])
    let error = #expect(throws: StoreError.self) {
      _ = try AgeKeyFile.parseRecipients("\(a.string)\nssh-ed25519 AAAA...\n", path: "recipients.txt")
    }
    #expect(error?.localizedDescription.hasPrefix("recipients.txt: line 2 is not a usable age recipient") == true)
    #expect(throws: StoreError.self) { _ = try AgeKeyFile.parseRecipients("\n# none\n", path: "r") }
  }

  @Test func writesPrivateIdentityFilesOnce() throws {
    let directory = try TemporaryDirectory()
    let path = directory.file("age.key")
    let identity = try AgeIdentity.generate()
    try AgeKeyFile.write(identity, to: path)
    #expect(try FileSystem.mode(of: path) == 0o600)
    #expect(try AgeKeyFile.loadIdentities(path: path).map(\.recipient) == [identity.recipient])
    // Never replaces an existing key.
    #expect(throws: StoreError.self) { try AgeKeyFile.write(try AgeIdentity.generate(), to: path) }
    #expect(try AgeKeyFile.loadIdentities(path: path).map(\.recipient) == [identity.recipient])
    let missing = #expect(throws: StoreError.self) { _ = try AgeKeyFile.loadIdentities(path: directory.file("no")) }
    guard case .missing? = missing else {
      Issue.record("expected StoreError.missing, got \(String(describing: missing))")
      return
    }
  }
}

import Foundation
import Store
import TestSupport
import Testing

/// Fernet against Python's `cryptography.fernet` (the test virtualenv's), both ways.
@Suite struct FernetInteropTests {
  static let sizes = [0, 1, 15, 16, 17, 100, 4096]

  @Test func pythonDecryptsSwiftTokens() throws {
    let key = try FernetKey.generate()
    let fernet = try Fernet(keys: [key])
    var lines: [String] = []
    var expected: [String] = []
    for size in Self.sizes {
      let plaintext = try SecureRandom.bytes(size)
      lines.append(try fernet.encrypt(plaintext))
      expected.append(Hex.encode(plaintext))
    }
    let script = """
      import sys
      from cryptography.fernet import Fernet
      f = Fernet(sys.argv[1].encode())
      for line in sys.stdin.read().split():
          print(f.decrypt(line.encode(), ttl=600).hex())
      """
    let result = try runPython(script, arguments: [key.base64], stdin: Data(lines.joined(separator: "\n").utf8))
    #expect(
      result.stdout.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init) == expected)
  }

  @Test func swiftDecryptsPythonTokens() throws {
    let script = """
      import os, json
      from cryptography.fernet import Fernet
      key = Fernet.generate_key()
      f = Fernet(key)
      out = []
      for size in \(Self.sizes):
          data = os.urandom(size)
          out.append({"token": f.encrypt(data).decode(), "plain": data.hex()})
      print(json.dumps({"key": key.decode(), "tokens": out}))
      """
    let result = try runPython(script)
    let decoded = try JSONDecoder().decode(PythonTokens.self, from: result.stdoutData)
    let fernet = try Fernet(keys: [FernetKey(base64: decoded.key)])
    #expect(decoded.tokens.count == Self.sizes.count)
    for entry in decoded.tokens {
      #expect(Fernet.looksLikeToken(entry.token))
      #expect(Hex.encode(try fernet.decrypt(entry.token, ttl: 600)) == entry.plain)
    }
  }

  @Test func pythonKeysAndSwiftKeysAreInterchangeable() throws {
    let swiftKey = try FernetKey.generate()
    let script = """
      import sys
      from cryptography.fernet import Fernet
      Fernet(sys.argv[1].encode())  # accepts the Swift key
      print(Fernet.generate_key().decode())
      """
    let result = try runPython(script, arguments: [swiftKey.base64])
    let pythonKey = try FernetKey(base64: result.stdout)
    #expect(pythonKey.base64 == result.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
  }

  /// MultiFernet rotation in both directions: Python rotates, Swift reads; Swift rotates, Python
  /// reads and sees the original timestamp.
  @Test func rotationInteroperates() throws {
    let oldKey = try FernetKey.generate()
    let newKey = try FernetKey.generate()
    let plaintext = Array("a session string".utf8)
    let stamp = Date(timeIntervalSince1970: 1_650_000_000)
    let oldToken = try Fernet(keys: [oldKey]).encrypt(plaintext, now: stamp)

    let script = """
      import sys
      from cryptography.fernet import Fernet, MultiFernet
      new, old, token = sys.argv[1].encode(), sys.argv[2].encode(), sys.argv[3].encode()
      m = MultiFernet([Fernet(new), Fernet(old)])
      rotated = m.rotate(token)
      assert Fernet(new).decrypt(rotated) == sys.argv[4].encode()
      print(rotated.decode())
      print(Fernet(new).extract_timestamp(rotated))
      """
    let python = try runPython(
      script, arguments: [newKey.base64, oldKey.base64, oldToken, String(decoding: plaintext, as: UTF8.self)])
    let lines = python.stdout.split(separator: "\n").map(String.init)
    #expect(lines.count == 2)
    #expect(lines.last == "1650000000")
    let both = try Fernet(keys: [newKey, oldKey])
    #expect(try both.decryptWithKeyIndex(lines[0]) == (plaintext, 0))

    let swiftRotated = try both.rotate(oldToken)
    let check = """
      import sys
      from cryptography.fernet import Fernet
      f = Fernet(sys.argv[1].encode())
      print(f.decrypt(sys.argv[2].encode()).decode())
      print(f.extract_timestamp(sys.argv[2].encode()))
      """
    let checked = try runPython(check, arguments: [newKey.base64, swiftRotated])
    #expect(checked.stdout == "a session string\n1650000000\n")
  }

  /// Python refuses what Swift refuses: a token for another key.
  @Test func pythonRejectsATokenForAnotherKey() throws {
    let token = try Fernet(keys: [FernetKey.generate()]).encrypt(Array("x".utf8))
    let script = """
      import sys
      from cryptography.fernet import Fernet, InvalidToken
      try:
          Fernet(Fernet.generate_key()).decrypt(sys.argv[1].encode())
          print("accepted")
      except InvalidToken:
          print("InvalidToken")
      """
    #expect(try runPython(script, arguments: [token]).stdout == "InvalidToken\n")
  }
}

private struct PythonTokens: Decodable {
  struct Entry: Decodable {
    var token: String
    var plain: String
  }
  var key: String
  var tokens: [Entry]
}

import Store
import Testing

@Suite struct DigestTests {
  @Test func sha256KnownAnswers() {
    #expect(Digest.sha256Hex([UInt8]()) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    #expect(Digest.sha256Hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
  }

  @Test func hexRoundTrip() {
    let bytes: [UInt8] = [0, 1, 0xab, 0xff]
    #expect(Hex.encode(bytes) == "0001abff")
    #expect(Hex.decode("0001ABff") == bytes)
    #expect(Hex.decode("0g") == nil)
    #expect(Hex.decode("abc") == nil)
  }
}

import Foundation
import Store
import TestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// The stock age CLI (Debian's age 1.1.1). Missing tools fail the tests; they never skip.
enum AgeCLI {
  static let age = "/usr/bin/age"
  static let keygen = "/usr/bin/age-keygen"

  static func requireTools() throws {
    for tool in [age, keygen] where !FileManager.default.isExecutableFile(atPath: tool) {
      throw TestHelperError(
        "\(tool) is missing: the age interop tests need the stock age CLI; install it with: apt-get install -y age")
    }
  }

  @discardableResult
  static func run(_ tool: String, _ arguments: [String], stdin: Data? = nil) throws -> ProcessResult {
    try requireTools()
    let result = try runProcess(tool, arguments, stdin: stdin)
    guard result.status == 0 else {
      throw TestHelperError("\(tool) \(arguments.joined(separator: " ")) failed (\(result.status)): \(result.stderr)")
    }
    return result
  }
}

/// Encrypts `plaintext` to a new file at `path` through a file-descriptor sink.
func ageEncryptFile(_ plaintext: [UInt8], to recipients: [AgeRecipient], path: String) throws {
  let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
  guard fd >= 0 else { throw TestHelperError("cannot create \(path)") }
  defer { close(fd) }
  let writer = try AgeEncryptingWriter(recipients: recipients, output: FileDescriptorSink(fd: fd, path: path))
  var offset = 0
  while offset < plaintext.count {
    let end = min(offset + 50_000, plaintext.count)
    try plaintext[offset..<end].withUnsafeBytes { try writer.write($0) }
    offset = end
  }
  try writer.finish()
}

/// Decrypts the file at `path` through a file-descriptor source.
func ageDecryptFile(path: String, identities: [AgeIdentity]) throws -> [UInt8] {
  let fd = open(path, O_RDONLY | O_CLOEXEC)
  guard fd >= 0 else { throw TestHelperError("cannot open \(path)") }
  defer { close(fd) }
  let reader = try AgeDecryptingReader(
    identities: identities, input: FileDescriptorSource(fd: fd, path: path), objectName: path)
  let sink = ByteArraySink()
  try ByteStreams.copy(from: reader, to: sink)
  return sink.bytes
}

@Suite struct AgeInteropTests {
  static let sizes = [0, 1, 65535, 65536, 65537, 131072, 200000]

  @Test func stockAgeIsInstalled() throws {
    try AgeCLI.requireTools()
    #expect(try AgeCLI.run(AgeCLI.age, ["--version"]).stdout.isEmpty == false)
  }

  /// Swift encrypts; `age -d -i key.txt` decrypts with the identity file Swift wrote.
  @Test(arguments: sizes)
  func stockAgeDecryptsSwiftFiles(size: Int) throws {
    let directory = try TemporaryDirectory()
    let identity = try AgeIdentity.generate()
    let keyPath = directory.file("key.txt")
    try AgeKeyFile.write(identity, to: keyPath)
    let plaintext = try SecureRandom.bytes(size)
    let encrypted = directory.file("swift.age")
    try ageEncryptFile(plaintext, to: [identity.recipient], path: encrypted)
    let result = try AgeCLI.run(AgeCLI.age, ["-d", "-i", keyPath, encrypted])
    #expect(result.stdoutData == Data(plaintext))
    // age-keygen derives the same recipient from the Swift-written file.
    #expect(try AgeCLI.run(AgeCLI.keygen, ["-y", keyPath]).stdout == identity.recipient.string + "\n")
  }

  /// `age -r` encrypts; Swift decrypts with the identity file age-keygen wrote.
  @Test(arguments: sizes)
  func swiftDecryptsStockAgeFiles(size: Int) throws {
    let directory = try TemporaryDirectory()
    let keyPath = directory.file("key.txt")
    try AgeCLI.run(AgeCLI.keygen, ["-o", keyPath])
    let recipient = try AgeCLI.run(AgeCLI.keygen, ["-y", keyPath]).stdout.trimmingCharacters(in: .newlines)
    let identities = try AgeKeyFile.loadIdentities(path: keyPath)
    #expect(identities.count == 1)
    #expect(identities.first?.recipient.string == recipient)

    let plaintext = try SecureRandom.bytes(size)
    let plainPath = directory.file("plain")
    try Data(plaintext).write(to: URL(fileURLWithPath: plainPath))
    let encrypted = directory.file("stock.age")
    try AgeCLI.run(AgeCLI.age, ["-r", recipient, "-o", encrypted, plainPath])
    #expect(try ageDecryptFile(path: encrypted, identities: identities) == plaintext)
  }

  @Test func multipleRecipientsAndRecipientFilesInteroperate() throws {
    let directory = try TemporaryDirectory()
    var identities: [AgeIdentity] = []
    var recipients: [String] = []
    for name in ["a.txt", "b.txt"] {
      try AgeCLI.run(AgeCLI.keygen, ["-o", directory.file(name)])
      identities += try AgeKeyFile.loadIdentities(path: directory.file(name))
      recipients.append(try AgeCLI.run(AgeCLI.keygen, ["-y", directory.file(name)]).stdout)
    }
    let recipientsPath = directory.file("recipients.txt")
    try Data(("# backup recipients\n" + recipients.joined(separator: "\n")).utf8)
      .write(to: URL(fileURLWithPath: recipientsPath))
    let parsed = try AgeKeyFile.loadRecipients(path: recipientsPath)
    #expect(parsed == identities.map(\.recipient))

    let plaintext = try SecureRandom.bytes(100_000)
    let plainPath = directory.file("plain")
    try Data(plaintext).write(to: URL(fileURLWithPath: plainPath))
    try AgeCLI.run(AgeCLI.age, ["-R", recipientsPath, "-o", directory.file("stock.age"), plainPath])
    try ageEncryptFile(plaintext, to: parsed, path: directory.file("swift.age"))
    for (index, identity) in identities.enumerated() {
      #expect(try ageDecryptFile(path: directory.file("stock.age"), identities: [identity]) == plaintext)
      let keyPath = directory.file(index == 0 ? "a.txt" : "b.txt")
      let result = try AgeCLI.run(AgeCLI.age, ["-d", "-i", keyPath, directory.file("swift.age")])
      #expect(result.stdoutData == Data(plaintext))
    }
  }

  /// Stock age refuses what the Swift reader refuses: a truncated Swift file.
  @Test func stockAgeRejectsTruncatedSwiftFiles() throws {
    let directory = try TemporaryDirectory()
    let identity = try AgeIdentity.generate()
    try AgeKeyFile.write(identity, to: directory.file("key.txt"))
    let file = try ageEncrypt(try SecureRandom.bytes(70_000), to: [identity.recipient])
    try Data(file.dropLast(100)).write(to: URL(fileURLWithPath: directory.file("cut.age")))
    let result = try runProcess(AgeCLI.age, ["-d", "-i", directory.file("key.txt"), directory.file("cut.age")])
    #expect(result.status != 0)
    #expect(ageDecrypt(Array(file.dropLast(100)), identities: [identity]).kind == .payload)
  }

  /// `age -p` (scrypt, work factor 18) encrypts; the Swift reader refuses the file in one line,
  /// before any scrypt work: tgsess archives are encrypted to X25519 recipients only. age reads
  /// passphrases only from a terminal, so `script` gives it one.
  @Test func swiftRefusesStockAgePassphraseFiles() throws {
    try AgeCLI.requireTools()
    let directory = try TemporaryDirectory()
    let plaintext = try SecureRandom.bytes(65537)
    let plainPath = directory.file("plain")
    try Data(plaintext).write(to: URL(fileURLWithPath: plainPath))
    let encrypted = directory.file("pass.age")
    let result = try runProcess(
      "/usr/bin/script", ["-qec", "\(AgeCLI.age) -p -o \(encrypted) \(plainPath)", "/dev/null"],
      stdin: Data("correct horse\ncorrect horse\n".utf8))
    #expect(result.status == 0, "age -p failed: \(result.stdout)")
    let header = try String(contentsOfFile: encrypted, encoding: .isoLatin1)
    #expect(header.contains("\n-> scrypt ") && header.contains(" 18\n"))
    let identity = try AgeIdentity.generate()
    let refused = #expect(throws: AgeError.self) { _ = try ageDecryptFile(path: encrypted, identities: [identity]) }
    #expect(refused?.kind == .header)
    #expect(refused?.reason == "passphrase-encrypted archives are not supported (an age scrypt stanza)")
    #expect(refused?.errorDescription?.contains("\n") == false)
  }
}

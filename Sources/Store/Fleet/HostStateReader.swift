import Foundation

/// Reads a state file's JSON straight into `HostState`, one pass over the bytes, with no
/// intermediate tree and no `Decoder` per value: `tgsess fleet` reads 20 hosts × 5,000 users,
/// where `JSONDecoder` spent half the run. It accepts no more than `JSONDecoder` would with
/// `HostState`'s `Codable` keys (tests compare the two on a corpus of hostile files), and names a
/// fault the same way (`key 'users.3.dc' must be Int`):
/// - text that is not JSON (a syntax fault anywhere, a string that is not UTF-8, a lone
///   surrogate, nesting deeper than 512) is "not JSON", whatever else is wrong;
/// - then the version (missing, not an integer, another one);
/// - then the keys in `HostState`'s order: a wrong type, a missing or null required key, a value
///   that is not one (a time, a check state, a number out of range), a key given twice.
/// Keys it does not know are skipped (after their syntax is checked), as `Codable` skips them.
struct HostStateReader {
  /// A fault: `syntax` is "not JSON"; `field` is a key's fault, in `JSONDecoder`'s words.
  enum Fault: Error {
    case syntax
    case field(String)
  }

  /// The most nested arrays and objects accepted (`JSONDecoder`'s limit).
  static let maxDepth = 512

  private let bytes: UnsafeBufferPointer<UInt8>
  private var index = 0

  private init(_ bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

  /// A value's place in the text: `[start, end)`.
  private typealias Span = Range<Int>

  /// Which key a value is, for a fault's message (its path is only made for a fault).
  private enum Key {
    case top(TopKey)
    case user(Int, UserKey)

    var path: String {
      switch self {
      case .top(let key): key.name
      case .user(let position, let key): "users.\(position).\(key.name)"
      }
    }
  }

  /// Reads `data` as a state file (without `HostState.problem`'s checks, which the caller runs).
  /// - Throws: `StoreError.invalid`-ready reasons: `Fault.syntax`, `Fault.field`, and the
  ///   version's own reasons as `Fault.field`.
  static func read(_ data: Data) throws(Fault) -> HostState {
    let result: Result<HostState, Fault> = data.withUnsafeBytes { raw in
      var reader = HostStateReader(raw.bindMemory(to: UInt8.self))
      return Result { () throws(Fault) in try reader.readState() }
    }
    return try result.get()
  }

  // MARK: - The document

  /// The top-level keys `HostState` knows.
  private enum TopKey: Int, CaseIterable {
    case version, host, deploymentName, toolVersion, writtenAt, lastFullBackupAt, checkState, checkedAt, users
    var name: String {
      switch self {
      case .version: "version"
      case .host: "host"
      case .deploymentName: "deployment_name"
      case .toolVersion: "tool_version"
      case .writtenAt: "written_at"
      case .lastFullBackupAt: "last_full_backup_at"
      case .checkState: "check_state"
      case .checkedAt: "checked_at"
      case .users: "users"
      }
    }
    static let byName = Dictionary(uniqueKeysWithValues: allCases.map { ($0.name, $0) })
  }

  private mutating func readState() throws(Fault) -> HostState {
    // 1. The whole text's syntax, the top-level values' places, and the users (their first
    //    fault kept for later: a syntax fault after it still makes the file "not JSON").
    skipWhitespace()
    guard index < bytes.count else { throw .syntax }
    guard bytes[index] == UInt8(ascii: "{") else {
      try skipValue(depth: 0)
      skipWhitespace()
      guard index == bytes.count else { throw .syntax }
      throw .field("not a JSON object")
    }
    index += 1
    var spans = [Span?](repeating: nil, count: TopKey.allCases.count)
    var twice: TopKey?
    var users: [HostState.User] = []
    var usersFault: String?
    skipWhitespace()
    if peek() == UInt8(ascii: "}") {
      index += 1
    } else {
      while true {
        skipWhitespace()
        let key = try readString()
        skipWhitespace()
        try expect(UInt8(ascii: ":"))
        skipWhitespace()
        let top = TopKey.byName[key]
        let start = index
        if top == .users, spans[TopKey.users.rawValue] == nil {
          (users, usersFault) = try readUsers()
        } else {
          try skipValue(depth: 1)
        }
        if let top {
          if spans[top.rawValue] != nil, twice == nil { twice = top }
          spans[top.rawValue] = start..<index
        }
        skipWhitespace()
        guard let separator = next() else { throw .syntax }
        if separator == UInt8(ascii: "}") { break }
        guard separator == UInt8(ascii: ",") else { throw .syntax }
      }
    }
    skipWhitespace()
    guard index == bytes.count else { throw .syntax }

    // 2. The version first, so a newer format is named as such rather than as a type error.
    guard let versionSpan = spans[TopKey.version.rawValue], !isNull(versionSpan) else {
      throw .field("no version")
    }
    let version = try integer(versionSpan, .top(.version), type: "Int")
    guard version == Int64(HostState.currentVersion) else {
      throw .field(
        "format version \(version), this tgsess reads \(HostState.currentVersion) (upgrade tgsess on this machine)")
    }
    if let twice { throw .field("key '\(twice.name)' is given twice") }

    // 3. The other keys, in HostState's order.
    func required(_ key: TopKey, _ type: String) throws(Fault) -> Span {
      guard let span = spans[key.rawValue] else { throw .field("key '\(key.name)' is missing") }
      guard !isNull(span) else { throw .field("key '\(key.name)' needs a \(type) value") }
      return span
    }
    func optional(_ key: TopKey) -> Span? {
      spans[key.rawValue].flatMap { isNull($0) ? nil : $0 }
    }
    let host = try string(try required(.host, "String"), .top(.host))
    let deploymentName = try string(try required(.deploymentName, "String"), .top(.deploymentName))
    let toolVersion = try string(try required(.toolVersion, "String"), .top(.toolVersion))
    let writtenAt = try time(try required(.writtenAt, "String"), .top(.writtenAt))
    let lastFullBackupAt = try optional(.lastFullBackupAt).map { span throws(Fault) in
      try time(span, .top(.lastFullBackupAt))
    }
    let checkState = try optional(.checkState).map { span throws(Fault) in
      guard let state = HealthState(rawValue: try string(span, .top(.checkState))) else {
        throw Fault.field("bad value at 'check_state'")
      }
      return state
    }
    let checkedAt = try optional(.checkedAt).map { span throws(Fault) in try time(span, .top(.checkedAt)) }
    let usersSpan = try required(.users, "Array<Any>")
    guard bytes[usersSpan.lowerBound] == UInt8(ascii: "[") else { throw .field("key 'users' must be Array<Any>") }
    if let usersFault { throw .field(usersFault) }
    var state = HostState(
      host: host, deploymentName: deploymentName, toolVersion: toolVersion, writtenAt: writtenAt,
      lastFullBackupAt: lastFullBackupAt, checkState: checkState, checkedAt: checkedAt, users: users)
    state.version = Int(version)
    return state
  }

  // MARK: - The users

  /// The keys of a user entry `HostState.User` knows.
  private enum UserKey: Int, CaseIterable {
    case id, format, dc, authKeyFingerprint, sessionWrittenAt, sessionByteCount, hasSidecar, sidecarWrittenAt
    var name: String {
      switch self {
      case .id: "id"
      case .format: "format"
      case .dc: "dc"
      case .authKeyFingerprint: "auth_key_fingerprint"
      case .sessionWrittenAt: "session_written_at"
      case .sessionByteCount: "session_bytes"
      case .hasSidecar: "sidecar"
      case .sidecarWrittenAt: "sidecar_written_at"
      }
    }
  }

  /// Reads the users array at `index`: the users, or the first entry's fault (the rest of the
  /// array then only has its syntax checked). Past `HostState.maxUsers` entries nothing more is
  /// kept, so a hostile file cannot make the reader hold millions of entries.
  private mutating func readUsers() throws(Fault) -> ([HostState.User], String?) {
    guard peek() == UInt8(ascii: "[") else {
      try skipValue(depth: 1)
      return ([], nil)  // the type is judged with the other keys
    }
    index += 1
    var users: [HostState.User] = []
    var fault: String?
    var isOverLimit = false
    skipWhitespace()
    if peek() == UInt8(ascii: "]") {
      index += 1
      return (users, nil)
    }
    var position = 0
    while true {
      skipWhitespace()
      if position == HostState.maxUsers, fault == nil {
        isOverLimit = true
        users = []
      }
      if fault == nil, !isOverLimit {
        do throws(Fault) {
          users.append(try readUser(position))
        } catch .field(let reason) {
          fault = reason
          users = []
        }
      } else {
        try skipValue(depth: 2)
      }
      position += 1
      skipWhitespace()
      guard let separator = next() else { throw .syntax }
      if separator == UInt8(ascii: "]") { break }
      guard separator == UInt8(ascii: ",") else { throw .syntax }
    }
    if isOverLimit { fault = "\(position) users, more than \(HostState.maxUsers)" }
    return (users, fault)
  }

  /// Where a user entry's known keys sit (on the stack: no allocation per entry).
  private struct UserSpans {
    var id, format, dc, authKeyFingerprint, sessionWrittenAt, sessionByteCount, hasSidecar, sidecarWrittenAt: Span?

    /// Notes `span` for `key`; false when the key was given already.
    mutating func set(_ key: UserKey, _ span: Span) -> Bool {
      func put(_ slot: inout Span?) -> Bool {
        defer { slot = span }
        return slot == nil
      }
      switch key {
      case .id: return put(&id)
      case .format: return put(&format)
      case .dc: return put(&dc)
      case .authKeyFingerprint: return put(&authKeyFingerprint)
      case .sessionWrittenAt: return put(&sessionWrittenAt)
      case .sessionByteCount: return put(&sessionByteCount)
      case .hasSidecar: return put(&hasSidecar)
      case .sidecarWrittenAt: return put(&sidecarWrittenAt)
      }
    }
  }

  /// Reads one user entry at `index`; a field fault is thrown once the entry's syntax is checked
  /// to its end (so a later syntax fault still wins).
  private mutating func readUser(_ position: Int) throws(Fault) -> HostState.User {
    guard peek() == UInt8(ascii: "{") else {
      let isNull = peek() == UInt8(ascii: "n")
      try skipValue(depth: 2)
      throw .field(
        isNull
          ? "key 'users.\(position)' needs a Dictionary<String, Any> value"
          : "key 'users.\(position)' must be Dictionary<String, Any>")
    }
    index += 1
    var spans = UserSpans()
    var twice: UserKey?
    skipWhitespace()
    if peek() == UInt8(ascii: "}") {
      index += 1
    } else {
      while true {
        skipWhitespace()
        let key = try readKey()
        skipWhitespace()
        try expect(UInt8(ascii: ":"))
        skipWhitespace()
        let start = index
        try skipValue(depth: 3)
        if let key, !spans.set(key, start..<index), twice == nil { twice = key }
        skipWhitespace()
        guard let separator = next() else { throw .syntax }
        if separator == UInt8(ascii: "}") { break }
        guard separator == UInt8(ascii: ",") else { throw .syntax }
      }
    }
    if let twice { throw .field("key '\(Key.user(position, twice).path)' is given twice") }
    func value(_ span: Span?) -> Span? { span.flatMap { isNull($0) ? nil : $0 } }
    guard let idSpan = spans.id else { throw .field("key '\(Key.user(position, .id).path)' is missing") }
    guard !isNull(idSpan) else { throw .field("key '\(Key.user(position, .id).path)' needs a Int64 value") }
    let id = try integer(idSpan, .user(position, .id), type: "Int64")
    let format = try value(spans.format).map { span throws(Fault) in try string(span, .user(position, .format)) }
    let dc = try value(spans.dc).map { span throws(Fault) in try integer(span, .user(position, .dc), type: "Int") }
    let fingerprint = try value(spans.authKeyFingerprint).map { span throws(Fault) in
      try string(span, .user(position, .authKeyFingerprint))
    }
    let written = try value(spans.sessionWrittenAt).map { span throws(Fault) in
      try time(span, .user(position, .sessionWrittenAt))
    }
    let byteCount = try value(spans.sessionByteCount).map { span throws(Fault) in
      try integer(span, .user(position, .sessionByteCount), type: "Int64")
    }
    let hasSidecar = try value(spans.hasSidecar).map { span throws(Fault) in
      try bool(span, .user(position, .hasSidecar))
    }
    let sidecarWritten = try value(spans.sidecarWrittenAt).map { span throws(Fault) in
      try time(span, .user(position, .sidecarWrittenAt))
    }
    return HostState.User(
      id: id, format: format, dc: dc.map { Int($0) }, authKeyFingerprint: fingerprint, sessionWrittenAt: written,
      sessionByteCount: byteCount, hasSidecar: hasSidecar, sidecarWrittenAt: sidecarWritten)
  }

  /// Reads an object key at `index` and tells which user key it is (nil: one to skip). A key
  /// without escapes is matched on its bytes.
  private mutating func readKey() throws(Fault) -> UserKey? {
    let (span, hasEscapes) = try scanString()
    if hasEscapes {
      let name = decodeString(span, hasEscapes: true)
      return UserKey.allCases.first { $0.name == name }
    }
    let length = span.count - 2
    guard length > 0, let base = bytes.baseAddress else { return nil }
    let start = base + span.lowerBound + 1
    func matches(_ name: StaticString) -> Bool {
      name.utf8CodeUnitCount == length && memcmp(start, name.utf8Start, length) == 0
    }
    switch length {
    case 2: return matches("id") ? .id : matches("dc") ? .dc : nil
    case 6: return matches("format") ? .format : nil
    case 7: return matches("sidecar") ? .hasSidecar : nil
    case 13: return matches("session_bytes") ? .sessionByteCount : nil
    case 18:
      return matches("session_written_at") ? .sessionWrittenAt : matches("sidecar_written_at") ? .sidecarWrittenAt : nil
    case 20: return matches("auth_key_fingerprint") ? .authKeyFingerprint : nil
    default: return nil
    }
  }

  // MARK: - Values

  private func isNull(_ span: Span) -> Bool { bytes[span.lowerBound] == UInt8(ascii: "n") }

  /// The string at `span` (whose syntax is checked).
  private func string(_ span: Span, _ key: Key) throws(Fault) -> String {
    guard bytes[span.lowerBound] == UInt8(ascii: "\"") else { throw .field("key '\(key.path)' must be String") }
    return decodeString(span, hasEscapes: bytes[span].contains(UInt8(ascii: "\\")))
  }

  /// The integer at `span`: a JSON number with no fraction or exponent, within Int64.
  private func integer(_ span: Span, _ key: Key, type: StaticString) throws(Fault) -> Int64 {
    let first = bytes[span.lowerBound]
    guard first == UInt8(ascii: "-") || (48...57).contains(first) else {
      throw .field("key '\(key.path)' must be \(type)")
    }
    var position = span.lowerBound
    let isNegative = first == UInt8(ascii: "-")
    if isNegative { position += 1 }
    var value: Int64 = 0
    while position < span.upperBound {
      let digit = bytes[position]
      guard (48...57).contains(digit) else { throw .field("key '\(key.path)' must be \(type)") }
      let (times, overflowA) = value.multipliedReportingOverflow(by: 10)
      let (sum, overflowB) =
        isNegative
        ? times.subtractingReportingOverflow(Int64(digit - 48)) : times.addingReportingOverflow(Int64(digit - 48))
      guard !overflowA, !overflowB else { throw .field("bad value at '\(key.path)'") }
      value = sum
      position += 1
    }
    return value
  }

  private func bool(_ span: Span, _ key: Key) throws(Fault) -> Bool {
    switch bytes[span.lowerBound] {
    case UInt8(ascii: "t"): return true
    case UInt8(ascii: "f"): return false
    default: throw .field("key '\(key.path)' must be Bool")
    }
  }

  /// The time at `span`: the shape the file is written in read from its bytes, any other ISO
  /// 8601 shape through the general parser.
  private func time(_ span: Span, _ key: Key) throws(Fault) -> Date {
    guard bytes[span.lowerBound] == UInt8(ascii: "\"") else { throw .field("key '\(key.path)' must be String") }
    let inner = UnsafeBufferPointer(rebasing: bytes[(span.lowerBound + 1)..<(span.upperBound - 1)])
    if !inner.contains(UInt8(ascii: "\\")), let date = HostState.parseUTC(inner) { return date }
    let text = decodeString(span, hasEscapes: bytes[span].contains(UInt8(ascii: "\\")))
    if let date = HostState.parseTime(text) { return date }
    throw .field("bad value at '\(key.path)'")
  }

  /// The text of the string at `span` (quotes included), its UTF-8 and escapes checked already.
  private func decodeString(_ span: Span, hasEscapes: Bool) -> String {
    let inner = UnsafeBufferPointer(rebasing: bytes[(span.lowerBound + 1)..<(span.upperBound - 1)])
    guard hasEscapes else { return String(decoding: inner, as: UTF8.self) }
    var output: [UInt8] = []
    output.reserveCapacity(inner.count)
    var position = 0
    func hex(_ at: Int) -> UInt32 {
      var value: UInt32 = 0
      for offset in 0..<4 {
        let byte = inner[at + offset]
        let digit: UInt8 =
          byte <= 57 ? byte - 48 : (byte | 0x20) - 87
        value = value << 4 | UInt32(digit)
      }
      return value
    }
    while position < inner.count {
      let byte = inner[position]
      guard byte == UInt8(ascii: "\\") else {
        output.append(byte)
        position += 1
        continue
      }
      let escaped = inner[position + 1]
      position += 2
      switch escaped {
      case UInt8(ascii: "b"): output.append(8)
      case UInt8(ascii: "f"): output.append(12)
      case UInt8(ascii: "n"): output.append(10)
      case UInt8(ascii: "r"): output.append(13)
      case UInt8(ascii: "t"): output.append(9)
      case UInt8(ascii: "u"):
        var scalar = hex(position)
        position += 4
        if (0xD800...0xDBFF).contains(scalar) {
          // scanString checked that a low surrogate follows.
          let low = hex(position + 2)
          position += 6
          scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
        }
        output.append(contentsOf: Array(String(Unicode.Scalar(scalar)!).utf8))
      default: output.append(escaped)  // " \ /
      }
    }
    return String(decoding: output, as: UTF8.self)
  }

  // MARK: - Syntax

  private func peek() -> UInt8? { index < bytes.count ? bytes[index] : nil }

  private mutating func next() -> UInt8? {
    guard index < bytes.count else { return nil }
    defer { index += 1 }
    return bytes[index]
  }

  private mutating func expect(_ byte: UInt8) throws(Fault) {
    guard next() == byte else { throw .syntax }
  }

  private mutating func skipWhitespace() {
    while index < bytes.count {
      switch bytes[index] {
      case 0x20, 0x0A, 0x0D, 0x09: index += 1
      default: return
      }
    }
  }

  /// Reads a string at `index` and returns its text.
  private mutating func readString() throws(Fault) -> String {
    let (span, hasEscapes) = try scanString()
    return decodeString(span, hasEscapes: hasEscapes)
  }

  /// Checks the string at `index` (quotes, escapes, surrogate pairs, UTF-8, no control
  /// character) and moves past it.
  /// - Returns: its span, quotes included, and whether it has escapes.
  private mutating func scanString() throws(Fault) -> (Span, Bool) {
    let start = index
    try expect(UInt8(ascii: "\""))
    var hasEscapes = false
    while true {
      guard index < bytes.count else { throw .syntax }
      let byte = bytes[index]
      switch byte {
      case UInt8(ascii: "\""):
        index += 1
        return (start..<index, hasEscapes)
      case UInt8(ascii: "\\"):
        hasEscapes = true
        index += 1
        guard let escaped = next() else { throw .syntax }
        switch escaped {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
          UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
          break
        case UInt8(ascii: "u"):
          let scalar = try scanHex()
          if (0xDC00...0xDFFF).contains(scalar) { throw .syntax }
          if (0xD800...0xDBFF).contains(scalar) {
            guard next() == UInt8(ascii: "\\"), next() == UInt8(ascii: "u") else { throw .syntax }
            guard (0xDC00...0xDFFF).contains(try scanHex()) else { throw .syntax }
          }
        default: throw .syntax
        }
      case 0..<0x20:
        throw .syntax
      case 0..<0x80:
        index += 1
      default:
        try scanUTF8Scalar()
      }
    }
  }

  private mutating func scanHex() throws(Fault) -> UInt32 {
    guard index + 4 <= bytes.count else { throw .syntax }
    var value: UInt32 = 0
    for _ in 0..<4 {
      let byte = bytes[index]
      let digit: UInt32
      switch byte {
      case 48...57: digit = UInt32(byte - 48)
      case 65...70: digit = UInt32(byte - 55)
      case 97...102: digit = UInt32(byte - 87)
      default: throw .syntax
      }
      value = value << 4 | digit
      index += 1
    }
    return value
  }

  /// Checks one multi-byte UTF-8 sequence at `index` (no overlong form, no surrogate, nothing
  /// past U+10FFFF) and moves past it.
  private mutating func scanUTF8Scalar() throws(Fault) {
    let lead = bytes[index]
    let count: Int
    var lower: UInt8 = 0x80
    var upper: UInt8 = 0xBF
    switch lead {
    case 0xC2...0xDF: count = 1
    case 0xE0:
      count = 2
      lower = 0xA0
    case 0xE1...0xEC, 0xEE...0xEF: count = 2
    case 0xED:
      count = 2
      upper = 0x9F
    case 0xF0:
      count = 3
      lower = 0x90
    case 0xF1...0xF3: count = 3
    case 0xF4:
      count = 3
      upper = 0x8F
    default: throw .syntax
    }
    guard index + count < bytes.count else { throw .syntax }
    guard (lower...upper).contains(bytes[index + 1]) else { throw .syntax }
    for offset in stride(from: 2, through: count, by: 1) where !(0x80...0xBF).contains(bytes[index + offset]) {
      throw .syntax
    }
    index += count + 1
  }

  /// Checks a JSON number at `index` and moves past it.
  private mutating func scanNumber() throws(Fault) {
    func digits() -> Int {
      let start = index
      while index < bytes.count, (48...57).contains(bytes[index]) { index += 1 }
      return index - start
    }
    if peek() == UInt8(ascii: "-") { index += 1 }
    if peek() == UInt8(ascii: "0") {
      index += 1
    } else {
      guard digits() > 0 else { throw .syntax }
    }
    if peek() == UInt8(ascii: ".") {
      index += 1
      guard digits() > 0 else { throw .syntax }
    }
    if peek() == UInt8(ascii: "e") || peek() == UInt8(ascii: "E") {
      index += 1
      if peek() == UInt8(ascii: "+") || peek() == UInt8(ascii: "-") { index += 1 }
      guard digits() > 0 else { throw .syntax }
    }
  }

  private mutating func scanLiteral(_ literal: StaticString) throws(Fault) {
    let count = literal.utf8CodeUnitCount
    guard index + count <= bytes.count else { throw .syntax }
    let text = literal.utf8Start
    for offset in 0..<count where bytes[index + offset] != text[offset] { throw .syntax }
    index += count
  }

  /// Checks any JSON value at `index` and moves past it.
  private mutating func skipValue(depth: Int) throws(Fault) {
    guard depth <= Self.maxDepth, let first = peek() else { throw .syntax }
    switch first {
    case UInt8(ascii: "\""): _ = try scanString()
    case UInt8(ascii: "{"), UInt8(ascii: "["):
      let close = first == UInt8(ascii: "{") ? UInt8(ascii: "}") : UInt8(ascii: "]")
      index += 1
      skipWhitespace()
      if peek() == close {
        index += 1
        return
      }
      while true {
        skipWhitespace()
        if close == UInt8(ascii: "}") {
          _ = try scanString()
          skipWhitespace()
          try expect(UInt8(ascii: ":"))
          skipWhitespace()
        }
        try skipValue(depth: depth + 1)
        skipWhitespace()
        guard let separator = next() else { throw .syntax }
        if separator == close { return }
        guard separator == UInt8(ascii: ",") else { throw .syntax }
      }
    case UInt8(ascii: "t"): try scanLiteral("true")
    case UInt8(ascii: "f"): try scanLiteral("false")
    case UInt8(ascii: "n"): try scanLiteral("null")
    case UInt8(ascii: "-"), 48...57: try scanNumber()
    default: throw .syntax
    }
  }
}

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

  // The bytes through a pointer, compared with literals (`0x22` is `"`): in a debug build this
  // is what keeps every byte's test an instruction rather than a call.
  private let base: UnsafePointer<UInt8>
  private let count: Int
  private var index = 0

  private init(base: UnsafePointer<UInt8>, count: Int) {
    self.base = base
    self.count = count
  }

  /// A value's place in the text: `[start, end)`.
  private struct Span {
    var start: Int
    var end: Int
  }

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
  /// - Throws: `Fault.syntax` for text that is not JSON; `Fault.field` with the reason otherwise.
  static func read(_ data: Data) throws(Fault) -> HostState {
    let result: Result<HostState, Fault> = data.withUnsafeBytes { raw in
      guard let base = raw.bindMemory(to: UInt8.self).baseAddress, raw.count > 0 else { return .failure(.syntax) }
      var reader = HostStateReader(base: base, count: raw.count)
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
    guard peek() == 0x7B else {  // {
      try skipValue(depth: 0)
      skipWhitespace()
      guard index == count else { throw .syntax }
      throw .field("not a JSON object")
    }
    index += 1
    var spans = [Span?](repeating: nil, count: TopKey.allCases.count)
    var twice: TopKey?
    var users: [HostState.User] = []
    var usersFault: String?
    skipWhitespace()
    if peek() == 0x7D {  // }
      index += 1
    } else {
      while true {
        skipWhitespace()
        let key = try readString()
        skipWhitespace()
        try expect(0x3A)  // :
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
          spans[top.rawValue] = Span(start: start, end: index)
        }
        if try endOfMember(close: 0x7D) { break }
      }
    }
    skipWhitespace()
    guard index == count else { throw .syntax }

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
    guard base[usersSpan.start] == 0x5B else { throw .field("key 'users' must be Array<Any>") }  // [
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
    guard peek() == 0x5B else {  // [
      try skipValue(depth: 1)
      return ([], nil)  // the type is judged with the other keys
    }
    index += 1
    var users: [HostState.User] = []
    var fault: String?
    var isOverLimit = false
    skipWhitespace()
    if peek() == 0x5D {  // ]
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
      if try endOfMember(close: 0x5D) { break }
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
    guard peek() == 0x7B else {  // {
      let isNull = peek() == 0x6E  // n
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
    if peek() == 0x7D {  // }
      index += 1
    } else {
      while true {
        skipWhitespace()
        let key = try readKey()
        skipWhitespace()
        try expect(0x3A)  // :
        skipWhitespace()
        let start = index
        try skipValue(depth: 3)
        if let key, !spans.set(key, Span(start: start, end: index)), twice == nil { twice = key }
        if try endOfMember(close: 0x7D) { break }
      }
    }
    if let twice { throw .field("key '\(Key.user(position, twice).path)' is given twice") }
    func value(_ span: Span?) -> Span? {
      guard let span, !isNull(span) else { return nil }
      return span
    }
    guard let idSpan = spans.id else { throw .field("key '\(Key.user(position, .id).path)' is missing") }
    guard !isNull(idSpan) else { throw .field("key '\(Key.user(position, .id).path)' needs a Int64 value") }
    let id = try integer(idSpan, .user(position, .id), type: "Int64")
    var user = HostState.User(
      id: id, format: nil, dc: nil, authKeyFingerprint: nil, sessionWrittenAt: nil, sessionByteCount: nil)
    if let span = value(spans.format) { user.format = try string(span, .user(position, .format)) }
    if let span = value(spans.dc) { user.dc = Int(try integer(span, .user(position, .dc), type: "Int")) }
    if let span = value(spans.authKeyFingerprint) {
      user.authKeyFingerprint = try string(span, .user(position, .authKeyFingerprint))
    }
    if let span = value(spans.sessionWrittenAt) {
      user.sessionWrittenAt = try time(span, .user(position, .sessionWrittenAt))
    }
    if let span = value(spans.sessionByteCount) {
      user.sessionByteCount = try integer(span, .user(position, .sessionByteCount), type: "Int64")
    }
    if let span = value(spans.hasSidecar) { user.hasSidecar = try bool(span, .user(position, .hasSidecar)) }
    if let span = value(spans.sidecarWrittenAt) {
      user.sidecarWrittenAt = try time(span, .user(position, .sidecarWrittenAt))
    }
    return user
  }

  /// Reads an object key at `index` and tells which user key it is (nil: one to skip). A key
  /// without escapes is matched on its bytes.
  private mutating func readKey() throws(Fault) -> UserKey? {
    let span = try scanString()
    let length = span.end - span.start - 2
    let start = base + span.start + 1
    if memchr(start, 0x5C, length) != nil {  // \
      let name = decodeString(span)
      return UserKey.allCases.first { $0.name == name }
    }
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

  private func isNull(_ span: Span) -> Bool { base[span.start] == 0x6E }  // n

  private func hasEscapes(_ span: Span) -> Bool {
    memchr(base + span.start, 0x5C, span.end - span.start) != nil  // \
  }

  /// The string at `span` (whose syntax is checked).
  private func string(_ span: Span, _ key: Key) throws(Fault) -> String {
    guard base[span.start] == 0x22 else { throw .field("key '\(key.path)' must be String") }  // "
    return decodeString(span)
  }

  /// The integer at `span`: a JSON number with no fraction or exponent, within Int64.
  private func integer(_ span: Span, _ key: Key, type: StaticString) throws(Fault) -> Int64 {
    var position = span.start
    let isNegative = base[position] == 0x2D  // -
    if isNegative { position += 1 }
    guard position < span.end else { throw .field("key '\(key.path)' must be \(type)") }
    var value: Int64 = 0
    while position < span.end {
      let byte = base[position]
      guard byte >= 0x30, byte <= 0x39 else { throw .field("key '\(key.path)' must be \(type)") }
      let digit = Int64(byte &- 0x30)
      // Overflow is checked only near the limits: below 10^17 no step can overflow.
      if value < 100_000_000_000_000_000, value > -100_000_000_000_000_000 {
        value = isNegative ? value &* 10 &- digit : value &* 10 &+ digit
      } else {
        let (times, overflowA) = value.multipliedReportingOverflow(by: 10)
        let (sum, overflowB) =
          isNegative ? times.subtractingReportingOverflow(digit) : times.addingReportingOverflow(digit)
        guard !overflowA, !overflowB else { throw .field("bad value at '\(key.path)'") }
        value = sum
      }
      position += 1
    }
    return value
  }

  private func bool(_ span: Span, _ key: Key) throws(Fault) -> Bool {
    switch base[span.start] {
    case 0x74: return true  // t
    case 0x66: return false  // f
    default: throw .field("key '\(key.path)' must be Bool")
    }
  }

  /// The time at `span`: the shape the file is written in read from its bytes, any other ISO
  /// 8601 shape through the general parser.
  private func time(_ span: Span, _ key: Key) throws(Fault) -> Date {
    guard base[span.start] == 0x22 else { throw .field("key '\(key.path)' must be String") }  // "
    let isPlain = !hasEscapes(span)
    if isPlain, let date = HostState.parseUTC(base + span.start + 1, count: span.end - span.start - 2) {
      return date
    }
    if let date = HostState.parseTime(decodeString(span)) { return date }
    throw .field("bad value at '\(key.path)'")
  }

  /// The text of the string at `span` (quotes included), its UTF-8 and escapes checked already.
  private func decodeString(_ span: Span) -> String {
    let inner = UnsafeBufferPointer(start: base + span.start + 1, count: span.end - span.start - 2)
    guard hasEscapes(span) else { return String(decoding: inner, as: UTF8.self) }
    var output: [UInt8] = []
    output.reserveCapacity(inner.count)
    var position = 0
    func hex(_ at: Int) -> UInt32 {
      var value: UInt32 = 0
      for offset in 0..<4 {
        let byte = inner[at + offset]
        let digit: UInt8 = byte <= 0x39 ? byte - 0x30 : (byte | 0x20) - 87
        value = value << 4 | UInt32(digit)
      }
      return value
    }
    while position < inner.count {
      let byte = inner[position]
      guard byte == 0x5C else {  // \
        output.append(byte)
        position += 1
        continue
      }
      let escaped = inner[position + 1]
      position += 2
      switch escaped {
      case 0x62: output.append(8)  // b
      case 0x66: output.append(12)  // f
      case 0x6E: output.append(10)  // n
      case 0x72: output.append(13)  // r
      case 0x74: output.append(9)  // t
      case 0x75:  // u
        var scalar = hex(position)
        position += 4
        if scalar >= 0xD800, scalar <= 0xDBFF {
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

  /// The byte at `index`, or 0 past the end (0 never starts or ends anything in JSON).
  private func peek() -> UInt8 { index < count ? base[index] : 0 }

  private mutating func expect(_ byte: UInt8) throws(Fault) {
    guard index < count, base[index] == byte else { throw .syntax }
    index += 1
  }

  private mutating func skipWhitespace() {
    while index < count {
      let byte = base[index]
      guard byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 else { return }
      index += 1
    }
  }

  /// After a member of an object or an element of an array: true at `close` (moved past it),
  /// false at a comma (moved past it).
  /// - Throws: `Fault.syntax` for anything else.
  private mutating func endOfMember(close: UInt8) throws(Fault) -> Bool {
    skipWhitespace()
    guard index < count else { throw .syntax }
    let byte = base[index]
    index += 1
    if byte == close { return true }
    guard byte == 0x2C else { throw .syntax }  // ,
    return false
  }

  /// Reads a string at `index` and returns its text.
  private mutating func readString() throws(Fault) -> String {
    decodeString(try scanString())
  }

  /// Checks the string at `index` (quotes, escapes, surrogate pairs, UTF-8, no control
  /// character) and moves past it.
  /// - Returns: its span, quotes included.
  private mutating func scanString() throws(Fault) -> Span {
    let start = index
    try expect(0x22)  // "
    while index < count {
      let byte = base[index]
      if byte == 0x22 {  // "
        index += 1
        return Span(start: start, end: index)
      } else if byte == 0x5C {  // \
        index += 1
        guard index < count else { throw .syntax }
        let escaped = base[index]
        index += 1
        switch escaped {
        case 0x22, 0x5C, 0x2F, 0x62, 0x66, 0x6E, 0x72, 0x74: break  // " \ / b f n r t
        case 0x75:  // u
          let scalar = try scanHex()
          if scalar >= 0xDC00, scalar <= 0xDFFF { throw .syntax }
          if scalar >= 0xD800, scalar <= 0xDBFF {
            guard index + 1 < count, base[index] == 0x5C, base[index + 1] == 0x75 else { throw .syntax }
            index += 2
            let low = try scanHex()
            guard low >= 0xDC00, low <= 0xDFFF else { throw .syntax }
          }
        default: throw .syntax
        }
      } else if byte < 0x20 {
        throw .syntax
      } else if byte < 0x80 {
        index += 1
      } else {
        try scanUTF8Scalar()
      }
    }
    throw .syntax
  }

  private mutating func scanHex() throws(Fault) -> UInt32 {
    guard index + 4 <= count else { throw .syntax }
    var value: UInt32 = 0
    for _ in 0..<4 {
      let byte = base[index]
      let digit: UInt8
      if byte >= 0x30, byte <= 0x39 {
        digit = byte - 0x30
      } else if byte >= 0x41, byte <= 0x46 {
        digit = byte - 0x37
      } else if byte >= 0x61, byte <= 0x66 {
        digit = byte - 0x57
      } else {
        throw .syntax
      }
      value = value << 4 | UInt32(digit)
      index += 1
    }
    return value
  }

  /// Checks one multi-byte UTF-8 sequence at `index` (no overlong form, no surrogate, nothing
  /// past U+10FFFF) and moves past it.
  private mutating func scanUTF8Scalar() throws(Fault) {
    let lead = base[index]
    let continuations: Int
    var lower: UInt8 = 0x80
    var upper: UInt8 = 0xBF
    if lead >= 0xC2, lead <= 0xDF {
      continuations = 1
    } else if lead >= 0xE0, lead <= 0xEF {
      continuations = 2
      if lead == 0xE0 { lower = 0xA0 }
      if lead == 0xED { upper = 0x9F }
    } else if lead >= 0xF0, lead <= 0xF4 {
      continuations = 3
      if lead == 0xF0 { lower = 0x90 }
      if lead == 0xF4 { upper = 0x8F }
    } else {
      throw .syntax
    }
    guard index + continuations < count else { throw .syntax }
    let second = base[index + 1]
    guard second >= lower, second <= upper else { throw .syntax }
    var offset = 2
    while offset <= continuations {
      let byte = base[index + offset]
      guard byte >= 0x80, byte <= 0xBF else { throw .syntax }
      offset += 1
    }
    index += continuations + 1
  }

  /// Checks a JSON number at `index` and moves past it.
  private mutating func scanNumber() throws(Fault) {
    func digits() -> Int {
      let start = index
      while index < count, base[index] >= 0x30, base[index] <= 0x39 { index += 1 }
      return index - start
    }
    if peek() == 0x2D { index += 1 }  // -
    if peek() == 0x30 {  // 0
      index += 1
    } else {
      guard digits() > 0 else { throw .syntax }
    }
    if peek() == 0x2E {  // .
      index += 1
      guard digits() > 0 else { throw .syntax }
    }
    if peek() == 0x65 || peek() == 0x45 {  // e E
      index += 1
      if peek() == 0x2B || peek() == 0x2D { index += 1 }  // + -
      guard digits() > 0 else { throw .syntax }
    }
  }

  private mutating func scanLiteral(_ literal: StaticString) throws(Fault) {
    let length = literal.utf8CodeUnitCount
    guard index + length <= count, memcmp(base + index, literal.utf8Start, length) == 0 else { throw .syntax }
    index += length
  }

  /// Checks any JSON value at `index` and moves past it.
  private mutating func skipValue(depth: Int) throws(Fault) {
    guard depth <= Self.maxDepth, index < count else { throw .syntax }
    let first = base[index]
    if first == 0x22 {  // "
      _ = try scanString()
    } else if first == 0x2D || (first >= 0x30 && first <= 0x39) {  // - 0-9
      try scanNumber()
    } else if first == 0x7B || first == 0x5B {  // { [
      let close: UInt8 = first == 0x7B ? 0x7D : 0x5D
      index += 1
      skipWhitespace()
      if peek() == close {
        index += 1
        return
      }
      while true {
        skipWhitespace()
        if close == 0x7D {
          _ = try scanString()
          skipWhitespace()
          try expect(0x3A)  // :
          skipWhitespace()
        }
        try skipValue(depth: depth + 1)
        if try endOfMember(close: close) { return }
      }
    } else if first == 0x74 {
      try scanLiteral("true")
    } else if first == 0x66 {
      try scanLiteral("false")
    } else if first == 0x6E {
      try scanLiteral("null")
    } else {
      throw .syntax
    }
  }
}

/// The lines of tgsess's own cache files in backups/ (`.signatures`, `.session-verdicts`):
/// fields separated by single spaces, numbers in plain decimal. Read strictly, before the file's
/// HMAC is known to be good, so nothing here may trap on any input.
enum CacheLine {
  /// The ranges of `line`'s space-separated fields; nil unless there are exactly `count`.
  static func fields(_ line: UnsafeBufferPointer<UInt8>, count: Int) -> [Range<Int>]? {
    var ranges: [Range<Int>] = []
    ranges.reserveCapacity(count)
    var start = 0
    for index in 0...line.count where index == line.count || line[index] == UInt8(ascii: " ") {
      ranges.append(start..<index)
      start = index + 1
      if ranges.count > count { return nil }
    }
    return ranges.count == count ? ranges : nil
  }

  /// The non-negative decimal number in `line[range]`; nil for an empty field, another character
  /// or a value past `Int64.max`.
  static func decimal(_ line: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Int64? {
    guard !range.isEmpty, range.count <= 19 else { return nil }
    var value: Int64 = 0
    for index in range {
      let digit = line[index] &- UInt8(ascii: "0")
      guard digit < 10 else { return nil }
      let (tens, isOver) = value.multipliedReportingOverflow(by: 10)
      let (sum, isOverAgain) = tens.addingReportingOverflow(Int64(digit))
      guard !isOver, !isOverAgain else { return nil }
      value = sum
    }
    return value
  }
}

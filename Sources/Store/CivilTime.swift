import Foundation

/// UTC calendar times in the fixed ASCII forms of archive ids (`20261125T041500Z`) and signed
/// statements (`2026-11-25T04:15:00Z`), converted by arithmetic (the proleptic Gregorian
/// calendar, Howard Hinnant's `days_from_civil`). `DateFormatter` is slow and shared behind a
/// lock: listing 10,000 signed archives spent over a second in it.
enum CivilTime {
  /// The fields of a UTC time, seconds rounded down.
  struct Fields: Equatable {
    var year, month, day, hour, minute, second: Int
  }

  /// Days from 1970-01-01 to the given date.
  static func days(year: Int, month: Int, day: Int) -> Int {
    let y = month <= 2 ? year - 1 : year
    let era = (y >= 0 ? y : y - 399) / 400
    let yearOfEra = y - era * 400
    let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
    let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
    return era * 146_097 + dayOfEra - 719_468
  }

  static func isLeap(_ year: Int) -> Bool { year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) }

  static func daysInMonth(year: Int, month: Int) -> Int {
    switch month {
    case 2: return isLeap(year) ? 29 : 28
    case 4, 6, 9, 11: return 30
    default: return 31
    }
  }

  /// The date of `fields`; nil when a field is out of range (no 13th month, no 31 April, no
  /// leap second).
  static func date(_ fields: Fields) -> Date? {
    guard (1...12).contains(fields.month),
      (1...daysInMonth(year: fields.year, month: fields.month)).contains(fields.day),
      (0...23).contains(fields.hour), (0...59).contains(fields.minute), (0...59).contains(fields.second)
    else { return nil }
    let seconds =
      days(year: fields.year, month: fields.month, day: fields.day) * 86_400 + fields.hour * 3_600 + fields.minute
      * 60 + fields.second
    return Date(timeIntervalSince1970: TimeInterval(seconds))
  }

  /// The UTC fields of `date`, its seconds rounded down.
  static func fields(_ date: Date) -> Fields {
    let total = Int(date.timeIntervalSince1970.rounded(.down))
    var days = total / 86_400
    var rest = total % 86_400
    if rest < 0 {
      rest += 86_400
      days -= 1
    }
    let z = days + 719_468
    let era = (z >= 0 ? z : z - 146_096) / 146_097
    let dayOfEra = z - era * 146_097
    let yearOfEra = (dayOfEra - dayOfEra / 1_460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
    let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
    let monthIndex = (5 * dayOfYear + 2) / 153
    let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
    let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
    let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
    return Fields(year: year, month: month, day: day, hour: rest / 3_600, minute: rest % 3_600 / 60, second: rest % 60)
  }

  /// Parses `bytes` against `pattern`, where each `9` is a digit and every other byte must be
  /// itself; the digits fill year (4), month, day, hour, minute and second (2 each), in order.
  static func parse(_ text: String, pattern: String) -> Date? {
    let bytes = Array(text.utf8)
    let shape = Array(pattern.utf8)
    guard bytes.count == shape.count else { return nil }
    var values: [Int] = []
    var current = 0
    var digits = 0
    for (byte, expected) in zip(bytes, shape) {
      if expected == UInt8(ascii: "9") {
        guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return nil }
        current = current * 10 + Int(byte - UInt8(ascii: "0"))
        digits += 1
        // Year: 4 digits; then 2 for each field.
        if digits == (values.isEmpty ? 4 : 2) {
          values.append(current)
          current = 0
          digits = 0
        }
      } else {
        guard byte == expected, digits == 0 else { return nil }
      }
    }
    guard values.count == 6, digits == 0 else { return nil }
    return date(
      Fields(year: values[0], month: values[1], day: values[2], hour: values[3], minute: values[4], second: values[5]))
  }

  /// `fields` as `pattern` writes them (see `parse`); nil for a year outside 0...9999.
  static func format(_ fields: Fields, pattern: String) -> String? {
    guard (0...9_999).contains(fields.year) else { return nil }
    // The digits in pattern order: 4 of the year, then 2 of each other field.
    let values = [fields.year, fields.month, fields.day, fields.hour, fields.minute, fields.second]
    var digits: [UInt8] = []
    digits.reserveCapacity(14)
    for (index, value) in values.enumerated() {
      var divisor = index == 0 ? 1_000 : 10
      while divisor > 0 {
        digits.append(UInt8(ascii: "0") + UInt8(value / divisor % 10))
        divisor /= 10
      }
    }
    var next = 0
    var out: [UInt8] = []
    out.reserveCapacity(pattern.utf8.count)
    for byte in pattern.utf8 {
      if byte == UInt8(ascii: "9") {
        guard next < digits.count else { return nil }
        out.append(digits[next])
        next += 1
      } else {
        out.append(byte)
      }
    }
    return String(decoding: out, as: UTF8.self)
  }

  static let compactPattern = "99999999T999999Z"
  static let statementPattern = "9999-99-99T99:99:99Z"
}

import Foundation

/// A strict reader of the Prometheus text exposition format as node_exporter's textfile collector
/// takes it: `# HELP`/`# TYPE` once per family and before its samples, samples of a family
/// together, metric and label names by the spec's regexes, escaped label values, float values and
/// no timestamps.
public struct Exposition: Sendable {
  public struct Sample: Sendable, Equatable {
    public var name: String
    public var labels: [String: String]
    public var value: Double
  }

  /// Family name → its TYPE.
  public private(set) var types: [String: String] = [:]
  public private(set) var samples: [Sample] = []

  /// Parses `text`.
  /// - Throws: `TestHelperError` naming the first line that breaks a rule.
  public init(_ text: String) throws {
    guard text.hasSuffix("\n") else { throw TestHelperError("exposition does not end with a newline") }
    let metricName = #"^[a-zA-Z_:][a-zA-Z0-9_:]*$"#
    let labelName = #"^[a-zA-Z_][a-zA-Z0-9_]*$"#
    let float = #"^[+-]?(Inf|NaN|([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?)$"#
    var helps = Set<String>()
    var closed = Set<String>()
    var current: String?
    var series = Set<String>()
    for (number, raw) in text.dropLast().split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
      let line = String(raw)
      func fail(_ why: String) -> TestHelperError { TestHelperError("line \(number + 1) '\(line)': \(why)") }
      if line.hasPrefix("#") {
        let parts = line.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: false).map(String.init)
        guard parts.count >= 3, parts[0] == "#", ["HELP", "TYPE"].contains(parts[1]) else { continue }
        let name = parts[2]
        guard name.range(of: metricName, options: .regularExpression) != nil else { throw fail("bad metric name") }
        if name != current {
          if let current { closed.insert(current) }
          guard !closed.contains(name) else { throw fail("family \(name) declared again after other families") }
          current = name
        }
        if parts[1] == "HELP" {
          guard helps.insert(name).inserted else { throw fail("second HELP for \(name)") }
        } else {
          guard parts.count == 4, ["counter", "gauge", "histogram", "summary", "untyped"].contains(parts[3]) else {
            throw fail("bad TYPE")
          }
          guard types[name] == nil else { throw fail("second TYPE for \(name)") }
          guard !samples.contains(where: { $0.name == name }) else { throw fail("TYPE after samples of \(name)") }
          types[name] = parts[3]
        }
        continue
      }
      guard !line.isEmpty else { throw fail("empty line") }
      let sample = try Self.sample(line, metricName: metricName, labelName: labelName, float: float, fail: fail)
      if sample.name != current {
        if let current { closed.insert(current) }
        guard !closed.contains(sample.name) else { throw fail("samples of \(sample.name) are not together") }
        current = sample.name
      }
      let key =
        sample.name + "{"
        + sample.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        .joined(separator: ",") + "}"
      guard series.insert(key).inserted else { throw fail("duplicate series \(key)") }
      samples.append(sample)
    }
  }

  private static func sample(
    _ line: String, metricName: String, labelName: String, float: String, fail: (String) -> TestHelperError
  ) throws -> Sample {
    var rest = Substring(line)
    let nameEnd = rest.firstIndex { $0 == "{" || $0 == " " } ?? rest.endIndex
    let name = String(rest[..<nameEnd])
    guard name.range(of: metricName, options: .regularExpression) != nil else { throw fail("bad metric name") }
    rest = rest[nameEnd...]
    var labels: [String: String] = [:]
    if rest.first == "{" {
      rest = rest.dropFirst()
      while rest.first != "}" {
        guard let equals = rest.firstIndex(of: "=") else { throw fail("label without '='") }
        let label = String(rest[..<equals])
        guard label.range(of: labelName, options: .regularExpression) != nil else { throw fail("bad label name") }
        rest = rest[rest.index(after: equals)...]
        guard rest.first == "\"" else { throw fail("label value not quoted") }
        rest = rest.dropFirst()
        var value = ""
        while true {
          guard let character = rest.first else { throw fail("unterminated label value") }
          rest = rest.dropFirst()
          if character == "\"" { break }
          if character == "\\" {
            guard let escaped = rest.first, ["\\", "\"", "n"].contains(escaped) else { throw fail("bad escape") }
            value.append(escaped == "n" ? "\n" : escaped)
            rest = rest.dropFirst()
          } else {
            value.append(character)
          }
        }
        guard labels.updateValue(value, forKey: label) == nil else { throw fail("label \(label) twice") }
        if rest.first == "," { rest = rest.dropFirst() } else if rest.first != "}" { throw fail("bad label list") }
      }
      rest = rest.dropFirst()
    }
    guard rest.first == " " else { throw fail("no space before the value") }
    let fields = rest.dropFirst().split(separator: " ", omittingEmptySubsequences: false)
    guard fields.count == 1 else { throw fail("a timestamp or extra field (textfiles take none)") }
    let text = String(fields[0])
    guard text.range(of: float, options: .regularExpression) != nil else { throw fail("value is not a float") }
    let value: Double
    switch text {
    case "+Inf", "Inf": value = .infinity
    case "-Inf": value = -.infinity
    case "NaN", "+NaN", "-NaN": value = .nan
    default: value = Double(text) ?? .nan
    }
    return Sample(name: name, labels: labels, value: value)
  }

  /// The samples of one family.
  public func samples(_ name: String) -> [Sample] { samples.filter { $0.name == name } }
}

/// Debian's `prometheus-node-exporter` with only the textfile collector, on a loopback port: the
/// real parser of `.prom` files. Stopped when released.
public final class NodeExporter: @unchecked Sendable {
  public static let binary = "/usr/bin/prometheus-node-exporter"
  private let process = Process()
  public let port: String

  /// Starts it on `directory` and waits until it answers.
  /// - Throws: `TestHelperError` when the binary is missing or it does not come up.
  public init(directory: String) throws {
    guard FileManager.default.isExecutableFile(atPath: Self.binary) else {
      throw TestHelperError(
        "\(Self.binary) missing; run scripts/test.sh (it installs prometheus-node-exporter, see TGSESS_APT_PACKAGES)")
    }
    port = try runPython(
      "import socket\ns = socket.socket()\ns.bind(('127.0.0.1', 0))\nprint(s.getsockname()[1])\ns.close()"
    ).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    process.executableURL = URL(fileURLWithPath: Self.binary)
    process.arguments = [
      "--collector.disable-defaults", "--collector.textfile", "--collector.textfile.directory", directory,
      "--web.listen-address", "127.0.0.1:\(port)",
    ]
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    for _ in 0..<100 {
      if (try? scrape()) != nil { return }
      usleep(50_000)
    }
    throw TestHelperError("node_exporter did not answer on 127.0.0.1:\(port)")
  }

  /// `GET /metrics`.
  /// - Throws: `TestHelperError` when curl fails.
  public func scrape() throws -> String {
    let result = try runProcess(
      "/usr/bin/curl", ["-sf", "--noproxy", "*", "-m", "5", "http://127.0.0.1:\(port)/metrics"])
    guard result.status == 0 else { throw TestHelperError("curl failed: \(result.status)") }
    return result.stdout
  }

  deinit {
    if process.isRunning {
      process.terminate()
      process.waitUntilExit()
    }
  }
}

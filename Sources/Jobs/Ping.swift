import Foundation
import Store

/// A healthchecks.io-style push monitor: `GET <url>/start?rid=<uuid>` before a run and
/// `POST <url>/<exit status>?rid=<same uuid>` after it, with a short plain-text body.
///
/// Requests are made by the stock `curl`, run only when a ping URL is set. (Foundation's
/// URLSession would link libcurl and its TLS stack into every run: about 10 ms of start-up for
/// each `tgsess` invocation, pinging or not, and it rules out a statically linked binary.) The
/// URL reaches curl through a private config file, never its command line, which other local
/// users can read in /proc.
///
/// A ping never fails the run it reports: every problem (refused, timed out, an HTTP error) is
/// kept in `warnings` for the caller to print. The URL itself is treated as a secret (anyone who
/// has it can report for the check), so no warning ever contains it; they name the host only.
public struct Ping {
  /// The most a finish body carries (healthchecks.io stores 10 KB); a server may ask for less with
  /// a `Ping-Body-Limit` header.
  public static let maxBodyBytes = 10_000
  /// How long one ping may take before it is given up.
  public static let defaultTimeout: TimeInterval = 10

  /// The ping URL.
  public let url: URL
  /// The run id, the same in the start and the finish ping, so the server pairs them.
  public let runID: UUID
  public let timeout: TimeInterval
  /// What went wrong so far, one entry per failed ping (`/start: connection refused`).
  public private(set) var warnings: [String] = []
  private var bodyLimit = Ping.maxBodyBytes

  /// Prepares the pings of one run; nothing is sent yet.
  /// - Throws: `JobError.usage` when `url` is not an absolute http(s) URL (the message omits it).
  public init(url text: String, runID: UUID = UUID(), timeout: TimeInterval = Ping.defaultTimeout) throws {
    guard let url = Self.validURL(text) else {
      throw JobError.usage(
        "the ping URL is not an http:// or https:// URL with a host, e.g. https://hc-ping.com/<uuid>")
    }
    self.url = url
    self.runID = runID
    self.timeout = max(0.1, timeout)
  }

  /// The URL when `text` is an absolute http(s) URL with a host.
  public static func validURL(_ text: String) -> URL? {
    guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
      scheme == "http" || scheme == "https", let host = components.host, !host.isEmpty, let url = components.url
    else { return nil }
    return url
  }

  /// `host[:port]` of the URL, the only part of it a warning shows.
  public var displayHost: String {
    let host = url.host ?? "?"
    return url.port.map { "\(host):\($0)" } ?? host
  }

  /// Signals the start of the run. A server's `Ping-Body-Limit` answer lowers the finish body's
  /// limit.
  public mutating func start() {
    guard let response = send(suffix: "start", method: "GET", body: nil) else { return }
    if let limit = response.headers["ping-body-limit"].flatMap({ Int($0) }), limit >= 0 {
      bodyLimit = min(bodyLimit, limit)
    }
  }

  /// Signals the end of the run with its exit status and `body` (cut to the body limit).
  public mutating func finish(exitStatus: Int32, body: String) {
    send(suffix: String(exitStatus), method: "POST", body: Self.truncated(body, to: bodyLimit))
  }

  /// `text` cut to at most `limit` UTF-8 bytes, never inside a character.
  public static func truncated(_ text: String, to limit: Int) -> Data {
    var data = Data()
    for character in text {
      let bytes = Data(String(character).utf8)
      if data.count + bytes.count > limit { break }
      data.append(bytes)
    }
    return data
  }

  /// `<url>/<suffix>?<the URL's own query>&rid=<run id>`.
  func endpoint(_ suffix: String) -> URL? {
    guard var components = URLComponents(url: url, resolvingAgainstBaseURL: false) else { return nil }
    var path = components.path
    while path.hasSuffix("/") { path.removeLast() }
    components.path = path + "/" + suffix
    components.queryItems =
      (components.queryItems ?? []) + [URLQueryItem(name: "rid", value: runID.uuidString.lowercased())]
    return components.url
  }

  /// A response: the status and the last response's headers (names in lower case).
  struct Response {
    var status: Int
    var headers: [String: String]
  }

  /// One request; a failure becomes a warning and nil.
  @discardableResult
  private mutating func send(suffix: String, method: String, body: Data?) -> Response? {
    let label = "/" + suffix
    guard let endpoint = endpoint(suffix) else {
      warnings.append("\(label): cannot build the URL")
      return nil
    }
    do {
      let response = try Self.curl(
        url: endpoint.absoluteString, method: method, body: body, timeout: timeout,
        userAgent: "tgsess/\(ToolInfo.version)")
      guard (200..<300).contains(response.status) else {
        warnings.append("\(label): HTTP \(response.status)")
        return nil
      }
      return response
    } catch let failure as PingFailure {
      warnings.append("\(label): \(failure.description(timeout: timeout))")
      return nil
    } catch {
      warnings.append("\(label): network error")
      return nil
    }
  }

  /// Why a request failed, in words that never contain the URL.
  enum PingFailure: Error {
    case curlMissing
    case curl(exitStatus: Int32)
    case setup(String)

    func description(timeout: TimeInterval) -> String {
      switch self {
      case .curlMissing: return "curl is not installed (apt-get install curl)"
      case .setup(let what): return what
      case .curl(let status):
        // curl(1) EXIT CODES.
        switch status {
        case 28: return "timed out after \(Ping.seconds(timeout))"
        case 7: return "connection refused"
        case 6, 5: return "host not found"
        case 52, 56: return "connection lost"
        case 35, 51, 53, 54, 58, 59, 60, 77, 80, 83, 90, 91: return "TLS failed"
        default: return "network error (curl exit \(status))"
        }
      }
    }
  }

  /// Runs curl once: the URL, method, headers and limits go in a config file in a private
  /// temporary directory, the body through stdin; the response headers come back on stdout.
  static func curl(url: String, method: String, body: Data?, timeout: TimeInterval, userAgent: String) throws
    -> Response
  {
    guard let curl = ["/usr/bin/curl", "/bin/curl", "/usr/local/bin/curl"].first(where: { FileSystem.exists($0) })
    else {
      throw PingFailure.curlMissing
    }
    let scratch: ScratchDirectory
    do { scratch = try ScratchDirectory(prefix: "tgsess-ping") } catch {
      throw PingFailure.setup("cannot create a temporary directory")
    }
    defer { scratch.remove() }
    let directory = scratch.path
    func quoted(_ text: String) -> String {
      "\"" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }
    var config = [
      "url = \(quoted(url))", "request = \(quoted(method))", "user-agent = \(quoted(userAgent))",
      "max-time = \(String(format: "%.3f", timeout))", "silent", "show-error", "output = \"/dev/null\"",
      "dump-header = \"-\"", "proto = \"=http,https\"",
    ]
    if body != nil {
      config += ["data-binary = \"@-\"", "header = \"Content-Type: text/plain; charset=utf-8\""]
    }
    let configPath = directory + "/config"
    do { try FileSystem.writeAtomically(Data((config.joined(separator: "\n") + "\n").utf8), to: configPath) } catch {
      throw PingFailure.setup("cannot write curl's configuration")
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: curl)
    process.arguments = ["--disable", "--config", configPath]
    let input = Pipe()
    let output = Pipe()
    process.standardInput = input
    process.standardOutput = output
    process.standardError = FileHandle.nullDevice
    do { try process.run() } catch { throw PingFailure.curlMissing }
    if let body { try? input.fileHandleForWriting.write(contentsOf: body) }
    try? input.fileHandleForWriting.close()
    let headers = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else { throw PingFailure.curl(exitStatus: process.terminationStatus) }
    return try parse(headers: String(decoding: headers, as: UTF8.self))
  }

  /// The status and headers of the last response in curl's header dump (after a `100 Continue`,
  /// say, a second block follows).
  static func parse(headers text: String) throws -> Response {
    var response: Response?
    // "\r\n" is one Character, so the carriage returns go before the split.
    for line in text.replacingOccurrences(of: "\r", with: "").split(separator: "\n", omittingEmptySubsequences: false) {
      if line.hasPrefix("HTTP/") {
        let parts = line.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, let status = Int(parts[1]) else { throw PingFailure.setup("no HTTP status") }
        response = Response(status: status, headers: [:])
      } else if let colon = line.firstIndex(of: ":"), response != nil {
        let name = line[..<colon].trimmingCharacters(in: .whitespaces).lowercased()
        response?.headers[name] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
      }
    }
    guard let response else { throw PingFailure.setup("no HTTP response") }
    return response
  }

  static func seconds(_ value: TimeInterval) -> String {
    value == value.rounded() ? "\(Int(value)) s" : String(format: "%.1f s", value)
  }
}

import Foundation

#if canImport(FoundationNetworking)
  import FoundationNetworking
#endif

/// A healthchecks.io-style push monitor: `GET <url>/start?rid=<uuid>` before a run and
/// `POST <url>/<exit status>?rid=<same uuid>` after it, with a short plain-text body.
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
    if let limit = response.value(forHTTPHeaderField: "Ping-Body-Limit").flatMap({ Int($0) }), limit >= 0 {
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

  /// One request; a failure becomes a warning and nil.
  @discardableResult
  private mutating func send(suffix: String, method: String, body: Data?) -> HTTPURLResponse? {
    let label = "/" + suffix
    guard let endpoint = endpoint(suffix) else {
      warnings.append("\(label): cannot build the URL")
      return nil
    }
    var request = URLRequest(url: endpoint, cachePolicy: .reloadIgnoringLocalCacheData, timeoutInterval: timeout)
    request.httpMethod = method
    request.setValue("tgsess/\(ToolInfo.version)", forHTTPHeaderField: "User-Agent")
    if let body {
      request.httpBody = body
      request.setValue("text/plain; charset=utf-8", forHTTPHeaderField: "Content-Type")
    }
    let configuration = URLSessionConfiguration.ephemeral
    configuration.timeoutIntervalForRequest = timeout
    configuration.timeoutIntervalForResource = timeout
    let session = URLSession(configuration: configuration)
    defer { session.finishTasksAndInvalidate() }
    let slot = PingResponseSlot()
    let done = DispatchSemaphore(value: 0)
    let task = session.dataTask(with: request) { _, response, error in
      slot.set(response: response as? HTTPURLResponse, error: error)
      done.signal()
    }
    task.resume()
    // URLSession enforces the timeout; the extra second only guards against a callback that never comes.
    guard done.wait(timeout: .now() + timeout + 1) == .success else {
      task.cancel()
      warnings.append("\(label): timed out after \(Self.seconds(timeout))")
      return nil
    }
    let (response, error) = slot.get()
    if let error {
      warnings.append("\(label): \(describe(error))")
      return nil
    }
    guard let response else {
      warnings.append("\(label): no HTTP response")
      return nil
    }
    guard (200..<300).contains(response.statusCode) else {
      warnings.append("\(label): HTTP \(response.statusCode)")
      return nil
    }
    return response
  }

  /// A URLError in words, without its failing URL.
  private func describe(_ error: any Error) -> String {
    guard let error = error as? URLError else { return "network error" }
    switch error.code {
    case .timedOut: return "timed out after \(Self.seconds(timeout))"
    case .cannotConnectToHost: return "connection refused"
    case .cannotFindHost, .dnsLookupFailed: return "host not found"
    case .networkConnectionLost: return "connection lost"
    case .notConnectedToInternet: return "no network"
    case .secureConnectionFailed, .serverCertificateUntrusted, .serverCertificateHasBadDate,
      .serverCertificateNotYetValid, .serverCertificateHasUnknownRoot:
      return "TLS failed"
    default: return "network error \(error.code.rawValue)"
    }
  }

  private static func seconds(_ value: TimeInterval) -> String {
    value == value.rounded() ? "\(Int(value)) s" : String(format: "%.1f s", value)
  }
}

/// A lock-protected slot for a URLSession callback's result.
private final class PingResponseSlot: @unchecked Sendable {
  private let lock = NSLock()
  private var response: HTTPURLResponse?
  private var error: (any Error)?

  func set(response: HTTPURLResponse?, error: (any Error)?) {
    lock.withLock {
      self.response = response
      self.error = error
    }
  }

  func get() -> (HTTPURLResponse?, (any Error)?) { lock.withLock { (response, error) } }
}

import Foundation

/// A healthchecks-style ping receiver: Python's `http.server` in the test virtualenv on
/// 127.0.0.1 with an ephemeral port, recording every request (method, path, query, headers, body)
/// before it answers. It answers with `status`, after `delay` seconds, and sends a
/// `Ping-Body-Limit` header when `bodyLimit` is set. Killed when released.
public final class PingServer: @unchecked Sendable {
  /// One request the server received.
  public struct Request: Decodable, Sendable, CustomStringConvertible {
    public var method: String
    public var path: String
    public var query: [String: [String]]
    public var headers: [String: String]
    public var body: String

    /// The single value of query parameter `name`.
    public func parameter(_ name: String) -> String? { query[name]?.count == 1 ? query[name]?.first : nil }
    public var description: String { "\(method) \(path) \(query)" }
  }

  /// The ping path the tests hand to tgsess: a credential-like uuid that must never be printed.
  public static let checkPath = "/ping/4c1f9a52-8e0b-4d37-a6f2-1b9e7d3c5a08"

  private let process = Process()
  private let logPath: String
  private let directory: TemporaryDirectory
  public let port: Int

  /// The URL to pass as `--ping-url`.
  public var url: String { "http://127.0.0.1:\(port)\(Self.checkPath)" }

  static let script = """
    import json, sys, time, urllib.parse
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    log_path, status, delay, body_limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def handle_any(self):
            url = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            record = {
                "method": self.command, "path": url.path,
                "query": urllib.parse.parse_qs(url.query, keep_blank_values=True),
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode("utf-8", "replace"),
            }
            with open(log_path, "a") as log:
                log.write(json.dumps(record) + "\\n")
            time.sleep(delay)
            answer = b"OK" if status < 400 else b"error"
            try:
                self.send_response(status)
                if body_limit:
                    self.send_header("Ping-Body-Limit", body_limit)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (the slow-server test)

        do_GET = do_POST = do_HEAD = handle_any

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print("PORT %d" % server.server_address[1], flush=True)
    server.serve_forever()
    """

  /// Starts the server and waits until it prints its port.
  /// - Throws: `TestHelperError` when the virtualenv is missing or the server does not start.
  public init(status: Int = 200, delay: Double = 0, bodyLimit: Int? = nil) throws {
    try runPython("pass")
    directory = try TemporaryDirectory("tgsess-ping")
    logPath = directory.file("requests.jsonl")
    _ = FileManager.default.createFile(atPath: logPath, contents: nil)
    process.executableURL = URL(fileURLWithPath: TestEnvironment.python)
    process.arguments = [
      "-c", Self.script, logPath, String(status), String(delay), bodyLimit.map(String.init) ?? "",
    ]
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = FileHandle.nullDevice
    try process.run()
    var line = Data()
    while !line.contains(UInt8(ascii: "\n")) {
      let chunk = pipe.fileHandleForReading.availableData
      if chunk.isEmpty { break }
      line.append(chunk)
    }
    let text = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    guard text.hasPrefix("PORT "), let port = Int(text.dropFirst(5)) else {
      kill(process.processIdentifier, SIGKILL)
      process.waitUntilExit()
      throw TestHelperError("the ping server did not start: '\(text)'")
    }
    self.port = port
  }

  /// Every request received so far, in order.
  /// - Throws: `TestHelperError` when the log cannot be read.
  public func requests() throws -> [Request] {
    let data = try Data(contentsOf: URL(fileURLWithPath: logPath))
    return try data.split(separator: UInt8(ascii: "\n")).map { line in
      do { return try JSONDecoder().decode(Request.self, from: Data(line)) } catch {
        throw TestHelperError("bad request record: \(String(decoding: line, as: UTF8.self))")
      }
    }
  }

  /// A URL on 127.0.0.1 where nothing listens (a port bound and released).
  /// - Throws: `TestHelperError` when Python fails.
  public static func closedURL() throws -> String {
    let port = try runPython(
      "import socket\ns = socket.socket()\ns.bind(('127.0.0.1', 0))\nprint(s.getsockname()[1])\ns.close()"
    ).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    return "http://127.0.0.1:\(port)\(checkPath)"
  }

  deinit {
    if process.isRunning {
      kill(process.processIdentifier, SIGKILL)
      process.waitUntilExit()
    }
  }
}

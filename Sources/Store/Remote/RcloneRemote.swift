import Foundation

/// An offsite copy of the archives through rclone (Debian's 1.60): any rclone remote path
/// (`s3remote:bucket/fleet`, `b2:bucket`, `/mnt/usb/tgsess`) plus a per-deployment prefix, so
/// many hosts share one bucket without seeing each other's files. Archives are already
/// age-encrypted, so a remote never sees plaintext.
///
/// rclone 1.60 traps handled here: `copyto` ignores `--immutable` and silently overwrites, so
/// pushes use `copy --immutable` on directories; the environment's `AWS_CA_BUNDLE` breaks its S3
/// client, so rclone runs without it.
public struct RcloneRemote: Sendable, Equatable {
  public var name: String
  /// The remote path, without the deployment prefix.
  public var path: String
  /// The per-deployment prefix (default: the host name).
  public var prefix: String
  /// An rclone.conf to use (else rclone's default, or RCLONE_CONFIG_* variables).
  public var configFile: String?
  /// The rclone binary.
  public var executable: String

  public init(
    name: String, path: String, prefix: String, configFile: String? = nil, executable: String = "/usr/bin/rclone"
  ) {
    self.name = name
    self.path = path
    self.prefix = prefix
    self.configFile = configFile
    self.executable = executable
  }

  /// `path/prefix`.
  public var root: String {
    let base = path.hasSuffix("/") || path.hasSuffix(":") ? path : path + "/"
    return base + prefix
  }

  /// The outcome of one rclone run.
  public struct Run: Sendable {
    public var status: Int32
    public var output: String
    public var errorText: String
    /// Every line rclone wrote to stderr.
    public var stderr: String

    /// The files `rclone check` reported as missing or different (relative paths).
    public var differingFiles: [String] {
      stderr.split(separator: "\n").compactMap { line -> String? in
        guard let start = line.range(of: "ERROR : ") else { return nil }
        let rest = line[start.upperBound...]
        guard let colon = rest.range(of: ": ", options: .backwards) else { return nil }
        let reason = rest[colon.upperBound...]
        guard reason.contains("differ") || reason.contains("not found") || reason.contains("not in") else { return nil }
        return String(rest[..<colon.lowerBound])
      }
    }
  }

  /// rclone's exit codes 5 (temporary) and transport errors are worth a retry; 6 (immutable
  /// refused) and the rest are not.
  public static func isTemporary(_ status: Int32) -> Bool { [1, 2, 5].contains(status) }

  /// Runs rclone with `arguments` (config, and a clean environment).
  /// - Throws: `StoreError.missing` when rclone is not installed.
  public func run(_ arguments: [String]) throws -> Run {
    guard FileManager.default.isExecutableFile(atPath: executable) else {
      throw StoreError.missing(path: executable, hint: "install rclone: apt-get install -y rclone")
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    // tgsess retries with its own policy: rclone gives up fast instead of retrying for minutes.
    var args = arguments + ["--contimeout", "10s", "--timeout", "60s", "--retries", "1", "--low-level-retries", "1"]
    if let configFile { args = ["--config", configFile] + args }
    process.arguments = args
    var environment = ProcessInfo.processInfo.environment
    environment.removeValue(forKey: "AWS_CA_BUNDLE")
    process.environment = environment
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = FileHandle.nullDevice
    do { try process.run() } catch {
      throw StoreError.io(path: executable, operation: "run rclone", errno: EACCES)
    }
    nonisolated(unsafe) var errorData = Data()
    let group = DispatchGroup()
    group.enter()
    DispatchQueue.global().async {
      errorData = err.fileHandleForReading.readDataToEndOfFile()
      group.leave()
    }
    let outputData = out.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    process.waitUntilExit()
    let stderr = String(decoding: errorData, as: UTF8.self)
    return Run(
      status: process.terminationStatus, output: String(decoding: outputData, as: UTF8.self),
      errorText: Self.lastLines(stderr), stderr: stderr)
  }

  /// Copies `files` (paths relative to `backupsDirectory`: archives, signatures, records that
  /// were verified first) that the remote lacks, without listing the rest of the remote
  /// (`--no-traverse`). Never replaces an existing remote object (`copy --immutable` refuses
  /// with exit 6).
  /// - Parameter listDirectory: where the file list is kept while rclone runs (default
  ///   `backupsDirectory`); a temporary's name there, so a killed run's is cleaned up with the others.
  public func push(backupsDirectory: String, files: [String], listDirectory: String? = nil) throws -> Run {
    try withList(files, in: listDirectory ?? backupsDirectory) { list in
      // The list is the filter (rclone refuses --files-from-raw with other filters).
      try run(["copy", "--files-from-raw", list, "--immutable", "--checksum", "--no-traverse", backupsDirectory, root])
    }
  }

  /// Compares `files` (relative to `backupsDirectory`) with the remote by size and hash
  /// (`check --one-way`): exit 0 when every one is there and equal.
  public func verify(backupsDirectory: String, files: [String], listDirectory: String? = nil) throws -> Run {
    try withList(files, in: listDirectory ?? backupsDirectory) { list in
      try run(["check", "--one-way", "--files-from-raw", list, backupsDirectory, root])
    }
  }

  /// Runs `body` with a file listing `files`, one per line, in a hidden temporary of `directory`
  /// (which the filters never select), removed afterwards.
  private func withList(_ files: [String], in directory: String, _ body: (String) throws -> Run) throws -> Run {
    try FileSystem.makeDirectory(directory)
    let listFile = FileSystem.temporaryPath(for: directory + "/push-list")
    try FileSystem.writeAtomically(Data(files.map { $0 + "\n" }.joined().utf8), to: listFile, overwrite: false)
    defer { unlink(listFile) }
    return try body(listFile)
  }

  /// The files under the prefix: relative path, size, and MD5 when the backend has one.
  /// - Throws: `StoreError.invalid` when rclone fails or answers garbage.
  public func list() throws -> [(path: String, size: Int64, md5: String?)] {
    let result = try run(["lsjson", "-R", "--files-only", "--hash", root])
    if result.status == 3 { return [] }  // the prefix does not exist yet
    guard result.status == 0 else {
      throw StoreError.invalid(
        path: "remote \(name) (\(root))", reason: "rclone lsjson failed (exit \(result.status)): \(result.errorText)",
        hint: "check the remote's configuration and reachability")
    }
    guard let items = try? JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [[String: Any]] else {
      throw StoreError.invalid(path: "remote \(name)", reason: "rclone lsjson answered garbage", hint: "check rclone")
    }
    return items.compactMap { item in
      guard let path = item["Path"] as? String else { return nil }
      let size = (item["Size"] as? NSNumber)?.int64Value ?? 0
      let md5 = (item["Hashes"] as? [String: Any])?["md5"] as? String
      return (path, size, md5)
    }
  }

  /// Downloads `relativePaths` (files under the prefix) into `directory`, keeping their layout.
  public func fetch(_ relativePaths: [String], into directory: String) throws -> Run {
    let listFile = directory + "/.fetch-list-\(getpid())"
    try FileSystem.makeDirectory(directory)
    try FileSystem.writeAtomically(Data((relativePaths.joined(separator: "\n") + "\n").utf8), to: listFile)
    defer { unlink(listFile) }
    return try run(["copy", "--files-from-raw", listFile, "--no-traverse", root, directory])
  }

  /// Deletes named files under the prefix.
  public func delete(_ relativePaths: [String]) throws -> Run {
    let listFile = NSTemporaryDirectory() + "/tgsess-delete-list-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    try FileSystem.writeAtomically(Data((relativePaths.joined(separator: "\n") + "\n").utf8), to: listFile)
    defer { unlink(listFile) }
    return try run(["delete", "--files-from-raw", listFile, root])
  }

  /// The last few lines of rclone's stderr, for one-line errors.
  static func lastLines(_ text: String) -> String {
    let lines = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    return lines.suffix(2).joined(separator: " / ")
  }
}

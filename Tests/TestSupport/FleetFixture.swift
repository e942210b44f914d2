import Foundation
import Store

/// Paths of the tools the tests drive; each check fails with what to install.
public enum Tools {
  public static let sqlite3 = "/usr/bin/sqlite3"
  public static let age = "/usr/bin/age"
  public static let ageKeygen = "/usr/bin/age-keygen"
  public static let zstd = "/usr/bin/zstd"
  public static let flock = "/usr/bin/flock"

  /// Fails unless every tool is installed.
  /// - Throws: `TestHelperError` naming the Debian package to install.
  public static func require(_ tools: [String] = [sqlite3, age, ageKeygen, zstd, flock]) throws {
    let packages = [sqlite3: "sqlite3", age: "age", ageKeygen: "age", zstd: "zstd", flock: "util-linux"]
    for tool in tools where !FileManager.default.isExecutableFile(atPath: tool) {
      throw TestHelperError("\(tool) is missing; install it: apt-get install -y \(packages[tool] ?? tool)")
    }
  }
}

/// Hashes of a directory tree, the witness that a failed command changed nothing.
public enum FileTree {
  /// Files whose content changes with every run and carries no data.
  public static let lockNames: Set<String> = [".tgsess.lock", ".tgsess-bot.lock"]
  /// Caches a successful backup leaves for the next run (`backups/.inspections`: hashes and
  /// fingerprints, no secret), and the signature verdicts list, check and prune keep
  /// (`backups/.signatures`: paths, file times, key ids, hashes, no secret), and the session file
  /// inspections check keeps (`backups/.session-verdicts`: file names and times, formats, key
  /// digests, no secret); not leftovers of a failed or killed run.
  public static let cacheNames: Set<String> = [".inspections", ".signatures", ".session-verdicts"]

  /// Every path below `root` (relative) with its SHA-256 or kind; lock files are left out.
  /// - Throws: `TestHelperError` when something cannot be read.
  public static func hashes(_ root: String) throws -> [String: String] {
    var result: [String: String] = [:]
    func walk(_ relative: String) throws {
      let directory = relative.isEmpty ? root : root + "/" + relative
      let names: [String]
      do { names = try FileManager.default.contentsOfDirectory(atPath: directory) } catch {
        throw TestHelperError("cannot list \(directory): \(error)")
      }
      for name in names.sorted() where !(relative.isEmpty && lockNames.contains(name)) {
        let child = relative.isEmpty ? name : relative + "/" + name
        let path = root + "/" + child
        var info = stat()
        guard lstat(path, &info) == 0 else { throw TestHelperError("lstat \(path) failed") }
        switch info.st_mode & S_IFMT {
        case S_IFDIR:
          result[child] = "dir"
          try walk(child)
        case S_IFREG:
          result[child] = try FileSystem.sha256(ofFile: path)
        case S_IFLNK:
          result[child] = "link -> " + ((try? FileManager.default.destinationOfSymbolicLink(atPath: path)) ?? "?")
        default:
          result[child] = "special \(info.st_mode & S_IFMT)"
        }
      }
    }
    if FileManager.default.fileExists(atPath: root) { try walk("") }
    return result
  }

  /// What differs between two trees, one line per path (empty when they are equal).
  public static func differences(_ before: [String: String], _ after: [String: String]) -> [String] {
    var lines: [String] = []
    for path in Set(before.keys).union(after.keys).sorted() where before[path] != after[path] {
      switch (before[path], after[path]) {
      case (nil, _): lines.append("new: \(path)")
      case (_, nil): lines.append("gone: \(path)")
      default: lines.append("changed: \(path)")
      }
    }
    return lines
  }
}

/// What identifies a session: dc, address, port and auth key (hex).
public struct SessionIdentityWitness: Codable, Equatable, Sendable, CustomStringConvertible {
  /// `telethon` or `pyrogram`.
  public var library: String
  public var dc: Int
  public var address: String?
  public var port: Int?
  public var key: String
  /// Telethon's `StringSession.save` of the file (Telethon files loaded by Telethon only).
  public var string: String?

  public var description: String {
    "\(library) dc \(dc) \(address ?? "-"):\(port.map(String.init) ?? "-") key \(key.prefix(8))…"
  }

  /// The same session, ignoring how it was read.
  public func sameSession(as other: SessionIdentityWitness) -> Bool {
    library == other.library && dc == other.dc && address == other.address && port == other.port && key == other.key
  }
}

/// Reads session identities with the peers the bot itself uses.
public enum SessionWitness {
  /// Identities as stored, read by Python's sqlite3 in read-only mode (`hex(auth_key)`).
  /// - Throws: `TestHelperError` when a file is not a readable session.
  public static func stored(_ paths: [String]) throws -> [String: SessionIdentityWitness] {
    try run(
      """
      import json, sqlite3, sys
      out = {}
      for p in sys.argv[1:]:
          con = sqlite3.connect('file:' + p + '?mode=ro', uri=True)
          cols = [r[1] for r in con.execute('PRAGMA table_info(sessions)')]
          if 'server_address' in cols:
              dc, addr, port, key = con.execute(
                  'SELECT dc_id, server_address, port, hex(auth_key) FROM sessions').fetchone()
              out[p] = dict(library='telethon', dc=dc, address=addr, port=port, key=key.lower())
          else:
              dc, key = con.execute('SELECT dc_id, hex(auth_key) FROM sessions').fetchone()
              out[p] = dict(library='pyrogram', dc=dc, key=key.lower())
          con.close()
      print(json.dumps(out))
      """, paths)
  }

  /// Identities as the real Telethon 1.45 loads them (`SQLiteSession` on a copy, since Telethon
  /// upgrades and rewrites the file it opens), with `StringSession.save` of each; Pyrogram files,
  /// which Telethon cannot open, are read with sqlite3 from the copy.
  /// - Throws: `TestHelperError` when Telethon cannot load a Telethon file.
  public static func loadedByTelethon(_ paths: [String]) throws -> [String: SessionIdentityWitness] {
    try run(
      """
      import json, os, shutil, sqlite3, sys, tempfile
      from telethon.sessions import SQLiteSession, StringSession
      tmp = tempfile.mkdtemp()
      out = {}
      for i, p in enumerate(sys.argv[1:]):
          copy = os.path.join(tmp, 'copy%d.session' % i)
          shutil.copyfile(p, copy)
          con = sqlite3.connect(copy)
          cols = [r[1] for r in con.execute('PRAGMA table_info(sessions)')]
          if 'server_address' not in cols:
              dc, key = con.execute('SELECT dc_id, hex(auth_key) FROM sessions').fetchone()
              out[p] = dict(library='pyrogram', dc=dc, key=key.lower())
              con.close()
              continue
          con.close()
          s = SQLiteSession(copy)
          if s.auth_key is None:
              raise SystemExit('Telethon loaded no auth key from ' + p)
          out[p] = dict(library='telethon', dc=s.dc_id, address=s.server_address, port=s.port,
                        key=s.auth_key.key.hex(), string=StringSession.save(s))
          s.close()
      shutil.rmtree(tmp)
      print(json.dumps(out))
      """, paths)
  }

  private static func run(_ script: String, _ paths: [String]) throws -> [String: SessionIdentityWitness] {
    guard !paths.isEmpty else { return [:] }
    let result = try runPython(script, arguments: paths)
    do {
      return try JSONDecoder().decode([String: SessionIdentityWitness].self, from: result.stdoutData)
    } catch {
      throw TestHelperError("session witness printed no identities: \(result.stdout) \(result.stderr)")
    }
  }
}

/// The JSON object a `--json` command printed, read by key as an operator's script reads it (the
/// `--json` contract). To check a job's whole typed result, decode it with `decodeJSON` (or
/// `TestFleet.tgsessJSON`) instead, so a failure shows the value it expected.
/// - Throws: `TestHelperError` with the output when it is not a JSON object.
public func jsonObject(_ result: ProcessResult) throws -> [String: Any] {
  guard let object = try? JSONSerialization.jsonObject(with: result.stdoutData) as? [String: Any] else {
    throw TestHelperError("not a JSON object (status \(result.status)): \(result.stdout) \(result.stderr)")
  }
  return object
}

/// The JSON array a `--json` command printed, read by key (see `jsonObject`); for `list --json`,
/// `decodeJSON([ListedArchive].self, ...)` gives typed rows.
/// - Throws: `TestHelperError` with the output when it is not a JSON array.
public func jsonArray(_ result: ProcessResult) throws -> [[String: Any]] {
  guard let array = try? JSONSerialization.jsonObject(with: result.stdoutData) as? [[String: Any]] else {
    throw TestHelperError("not a JSON array (status \(result.status)): \(result.stdout) \(result.stderr)")
  }
  return array
}

/// What the test peers write or decrypt for restore and recover tests.
public enum Peers {
  /// Replaces each file with a brand-new session written by the real Telethon 1.45 (random
  /// auth key, dc 2), the way a user who logged in again ends up with a different session.
  /// - Throws: `TestHelperError` when Telethon fails.
  public static func writeNewTelethonSessions(_ paths: [String]) throws {
    try runPython(
      """
      import os, shutil, sys, tempfile
      from telethon.crypto import AuthKey
      from telethon.sessions import SQLiteSession
      tmp = tempfile.mkdtemp()
      for i, p in enumerate(sys.argv[1:]):
          t = os.path.join(tmp, 'new%d.session' % i)
          s = SQLiteSession(t)
          s.set_dc(2, '149.154.167.51', 443)
          s.auth_key = AuthKey(os.urandom(256))
          s.save()
          s.close()
          shutil.move(t, p)
      shutil.rmtree(tmp)
      """, arguments: paths)
  }

  /// The Fernet keys of a deployment (`keys/fernet.keys`), newest first.
  public static func fernetKeys(_ deployment: Deployment) throws -> [String] {
    String(decoding: try FileSystem.read(deployment.fernetKeysPath), as: UTF8.self)
      .split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
      .filter { !$0.isEmpty && !$0.hasPrefix("#") }
  }

  /// Decrypts Fernet tokens with Python's cryptography and the deployment's keys.
  /// - Throws: `TestHelperError` when a token does not decrypt.
  public static func fernetDecrypt(_ tokens: [String], deployment: Deployment) throws -> [String] {
    let result = try runPython(
      """
      import json, sys
      from cryptography.fernet import Fernet, MultiFernet
      keys, tokens = json.loads(sys.argv[1]), json.loads(sys.argv[2])
      f = MultiFernet([Fernet(k) for k in keys])
      print(json.dumps([f.decrypt(t.encode()).decode() for t in tokens]))
      """,
      arguments: [
        String(decoding: try JSONEncoder().encode(try fernetKeys(deployment)), as: UTF8.self),
        String(decoding: try JSONEncoder().encode(tokens), as: UTF8.self),
      ])
    return try JSONDecoder().decode([String].self, from: result.stdoutData)
  }

  /// A Fernet token of `plaintext` under a fresh key nobody configured.
  public static func foreignFernetToken(_ plaintext: String) throws -> String {
    try runPython(
      """
      import sys
      from cryptography.fernet import Fernet
      print(Fernet(Fernet.generate_key()).encrypt(sys.argv[1].encode()).decode())
      """, arguments: [plaintext]
    ).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
  }

  /// Every secret a deployment holds, for "never in any output" checks: the Fernet keys, the
  /// age identity, every token in the database and its plaintext (session strings, api_hash).
  public static func secrets(_ deployment: Deployment) throws -> [String] {
    let result = try runPython(
      """
      import json, sqlite3, sys
      from cryptography.fernet import Fernet, MultiFernet
      keys = json.loads(sys.argv[2])
      f = MultiFernet([Fernet(k) for k in keys])
      con = sqlite3.connect('file:' + sys.argv[1] + '?mode=ro', uri=True)
      out = set(keys)
      for table in ('user_sessions', 'session_backups'):
          for s, h in con.execute('SELECT session_string, api_hash FROM ' + table):
              for v in (s, h):
                  if not v:
                      continue
                  out.add(v)
                  try:
                      out.add(f.decrypt(v.encode()).decode())
                  except Exception:
                      pass
      print(json.dumps(sorted(v for v in out if len(v) >= 16)))
      """,
      arguments: [
        deployment.databasePath, String(decoding: try JSONEncoder().encode(try fernetKeys(deployment)), as: UTF8.self),
      ])
    var secrets = try JSONDecoder().decode([String].self, from: result.stdoutData)
    let identity = String(decoding: try FileSystem.read(deployment.ageIdentityPath), as: UTF8.self)
    secrets += identity.split(separator: "\n").filter { $0.hasPrefix("AGE-SECRET-KEY-") }.map(String.init)
    return secrets
  }

  /// The manifest of an archive, read with the stock `age` and `zstd` CLIs and Python's tarfile.
  /// - Throws: `TestHelperError` when the tools fail or it is not a manifest.
  public static func manifest(ofArchive path: String, identity: String) throws -> Manifest {
    let result = try runPython(
      """
      import io, subprocess, sys, tarfile
      data = open(sys.argv[1], 'rb').read()
      if sys.argv[1].endswith('.age'):
          data = subprocess.run(['age', '-d', '-i', sys.argv[2]], input=data, stdout=subprocess.PIPE, check=True).stdout
      data = subprocess.run(['zstd', '-d', '-q', '-c'], input=data, stdout=subprocess.PIPE, check=True).stdout
      with tarfile.open(fileobj=io.BytesIO(data)) as t:
          first = t.next()
          assert first.name == 'manifest.json', first.name
          sys.stdout.write(t.extractfile(first).read().decode())
      """, arguments: [path, identity])
    return try decodeManifest(result.stdoutData, name: "the manifest of \(path)")
  }
}

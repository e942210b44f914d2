import Foundation
import Store

/// Lowers `fs.inotify.max_queued_events` (tests run as root) for the inotify instances created
/// inside a closure, so that a test can overflow a real kernel queue with a few dozen events.
/// The setting is global but only read when an instance is created, so it is restored at once.
public enum InotifyQueueLimit {
  static let path = "/proc/sys/fs/inotify/max_queued_events"
  private static let lock = NSLock()

  /// Runs `body` with the limit set to `events`, then restores it.
  /// - Throws: `TestHelperError` when the limit cannot be changed (not root), or what `body` throws.
  public static func withLimit<T>(_ events: Int, _ body: () throws -> T) throws -> T {
    try lock.withLock {
      guard let old = try? String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
      else { throw TestHelperError("cannot read \(path)") }
      do { try "\(events)\n".write(toFile: path, atomically: false, encoding: .utf8) } catch {
        throw TestHelperError("cannot lower \(path) (\(error)); the overflow tests must run as root")
      }
      defer { try? (old + "\n").write(toFile: path, atomically: false, encoding: .utf8) }
      return try body()
    }
  }
}

/// A running `tgsess watch` on a fleet deployment, with the helpers its tests poll with.
public final class WatchProcess: @unchecked Sendable {
  public let fleet: TestFleet
  public let process: BackgroundProcess
  public let arguments: [String]

  /// Starts `tgsess watch ARGUMENTS --root ROOT` and waits until its start-up scan is done.
  /// - Throws: `TestHelperError` when it exits or never finishes the scan.
  public init(_ fleet: TestFleet, _ arguments: [String] = [], environment: [String: String] = [:]) throws {
    self.fleet = fleet
    self.arguments = arguments
    process = try fleet.tgsessInBackground(["watch"] + arguments, environment: environment)
    try waitUntil("watch's start-up scan") {
      guard process.isRunning else { throw TestHelperError("watch exited: \(process.stderr)") }
      return process.stderr.contains("scan done")
    }
  }

  public var stderr: String { process.stderr }

  /// Lines of watch's log that contain `text`.
  public func lines(containing text: String) -> [String] {
    stderr.split(separator: "\n").map(String.init).filter { $0.contains(text) }
  }

  /// Sends `signal` (SIGTERM), waits for the exit, keeps the output for the secret scan.
  /// - Returns: the exit status.
  @discardableResult
  public func terminate(_ signal: Int32 = SIGTERM) -> Int32 {
    process.kill(signal)
    let status = process.wait().status
    fleet.keep(process)
    return status
  }

  deinit {
    if process.isRunning {
      process.kill(SIGKILL)
      _ = process.wait()
    }
  }
}

extension TestFleet {
  /// The ids of `userID`'s per-user archives, oldest first, with their reasons.
  /// - Throws: `TestHelperError`.
  public func userArchives(_ userID: Int64) throws -> [(id: String, reason: String)] {
    let repository = ArchiveRepository(backupsDirectory: backupsDirectory)
    do {
      return try repository.list(kind: .user, userID: userID).reversed().map { ($0.id, $0.reason) }
    } catch {
      throw TestHelperError("cannot list the archives of user \(userID): \(error)")
    }
  }

  /// Writes a brand-new session for each user with the real Telethon (random auth key), moved
  /// into place as a login does, and the matching `user_sessions` row: a new Fernet token of its
  /// StringSession made with Python's cryptography (inserted, or updated for an existing user).
  /// - Returns: the new keys' fingerprints (first 8 hex of SHA-256), by user.
  /// - Throws: `TestHelperError` when Python fails.
  @discardableResult
  public func loginWithTelethon(_ userIDs: [Int64], writesRow: Bool = true) throws -> [Int64: String] {
    let result = try runPython(
      """
      import hashlib, json, os, shutil, sqlite3, sys, tempfile, time
      from cryptography.fernet import Fernet
      from telethon.crypto import AuthKey
      from telethon.sessions import SQLiteSession, StringSession
      root, users, writes_row = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3] == '1'
      keys = [l.strip() for l in open(os.path.join(root, 'keys/fernet.keys')) if l.strip() and not l.startswith('#')]
      fernet = Fernet(keys[0])
      tmp = tempfile.mkdtemp()
      out = {}
      for user in users:
          key = os.urandom(256)
          t = os.path.join(tmp, 'login%d.session' % user)
          s = SQLiteSession(t)
          s.set_dc(2, '149.154.167.51', 443)
          s.auth_key = AuthKey(key)
          s.save()
          string = StringSession.save(s)
          s.close()
          shutil.move(t, os.path.join(root, 'sessions', 'user_%d.session' % user))
          out[str(user)] = hashlib.sha256(key).hexdigest()[:8]
          if writes_row:
              token = fernet.encrypt(string.encode()).decode()
              con = sqlite3.connect(os.path.join(root, 'data/telegram_bot.db'), timeout=30)
              now = time.strftime('%Y-%m-%d %H:%M:%S')
              con.execute('INSERT INTO user_sessions(user_id, session_string, api_id, api_hash, created_at, updated_at) '
                          'VALUES (?, ?, 12345, ?, ?, ?) ON CONFLICT(user_id) DO UPDATE SET '
                          'session_string = excluded.session_string, updated_at = excluded.updated_at',
                          (user, token, fernet.encrypt(b'0123456789abcdef0123456789abcdef').decode(), now, now))
              con.commit()
              con.close()
      shutil.rmtree(tmp)
      print(json.dumps(out))
      """,
      arguments: [
        root, String(decoding: try JSONEncoder().encode(userIDs), as: UTF8.self), writesRow ? "1" : "0",
      ])
    let decoded = try JSONDecoder().decode([String: String].self, from: result.stdoutData)
    return Dictionary(uniqueKeysWithValues: decoded.compactMap { key, value in Int64(key).map { ($0, value) } })
  }

  /// Churn as a running client makes it: the real Telethon caches new entities and a new update
  /// state in each file and saves (no new auth key).
  /// - Throws: `TestHelperError` when Python fails.
  public func churnWithTelethon(_ userIDs: [Int64], rounds: Int = 3) throws {
    try runPython(
      """
      import datetime, json, random, sys
      from telethon.sessions import SQLiteSession
      from telethon.tl import types
      root, users, rounds = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
      for r in range(rounds):
          for user in users:
              s = SQLiteSession('%s/sessions/user_%d.session' % (root, user))
              n = random.randint(1, 10**9)
              s.process_entities([types.User(id=9_000_000_000 + n, access_hash=random.getrandbits(63),
                                             username='churn%d' % n, phone=None, first_name='Churn')])
              s.set_update_state(0, types.updates.State(pts=n, qts=0, date=datetime.datetime.now(datetime.timezone.utc),
                                                        seq=n, unread_count=0))
              s.save()
              s.close()
      """,
      arguments: [root, String(decoding: try JSONEncoder().encode(userIDs), as: UTF8.self), String(rounds)])
  }
}

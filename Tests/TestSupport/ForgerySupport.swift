import Foundation
import Store

/// The forgery of issue #15, made as the attacker made it, holding no secret of the deployment:
/// real Telethon session files with the attacker's own auth keys (Telethon from the test
/// virtualenv), for a full archive a bot database of the seed's schema, a manifest written from
/// the documented format (docs/ARCHIVE-FORMAT.md), Python's tarfile, the stock `zstd` and
/// `age -R keys/age-recipients.txt` (the public recipient only), and a record claiming
/// `"verification": "full"`. Unsigned, or signed by a key of the attacker's own.
public enum Forgery {
  /// Who signs the forgery.
  public enum Signer: String, Sendable {
    /// Nobody: no `<id>.sig`.
    case none
    /// A fresh Ed25519 key of the attacker's, in a statement of the documented format.
    case foreignKey = "foreign"
  }

  /// A forged archive in the deployment's backups/.
  public struct Forged: Sendable {
    public var id: String
    public var path: String
    /// The fingerprint (first 8 hex digits of SHA-256) of each forged session's auth key.
    public var authKeyFingerprints: [Int64: String]
  }

  static let script = #"""
    import base64, hashlib, io, json, os, sqlite3, subprocess, sys, tarfile, tempfile
    from telethon.crypto import AuthKey
    from telethon.sessions import SQLiteSession
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    cfg = json.loads(sys.argv[1])
    digest = lambda data: hashlib.sha256(data).hexdigest()

    def run(args, data):
        p = subprocess.run(args, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if p.returncode != 0:
            raise SystemExit('%s failed: %s' % (args[0], p.stderr.decode()))
        return p.stdout

    def scratch(suffix):
        fd, path = tempfile.mkstemp(suffix=suffix)
        os.close(fd)
        os.unlink(path)
        return path

    def session():
        path = scratch('.session')
        s = SQLiteSession(path[: -len('.session')])
        s.set_dc(2, '149.154.167.51', 443)
        s.auth_key = AuthKey(os.urandom(256))
        s.save()
        s.close()
        data = open(path, 'rb').read()
        os.unlink(path)
        return data, digest(s.auth_key.key)[:8]

    entries, files, prints = [], {}, {}
    for uid in cfg['users']:
        data, fp = session()
        path = 'sessions/user_%d.session' % uid
        files[path] = data
        prints[str(uid)] = fp
        entries.append(dict(path=path, role='session', size=len(data), mode=384, sha256=digest(data), is_sqlite=True,
                            user_id=uid, format='telethon-v7', dc_id=2, server_address='149.154.167.51',
                            auth_key_fingerprint=fp))
    if cfg['kind'] == 'full':
        path = scratch('.db')
        db = sqlite3.connect(path)
        db.executescript('CREATE TABLE user_sessions (user_id INTEGER PRIMARY KEY, session_string TEXT, '
                         'api_id INTEGER, api_hash TEXT, created_at TIMESTAMP, updated_at TIMESTAMP);'
                         'CREATE TABLE session_backups (id INTEGER PRIMARY KEY, user_id INTEGER, session_string TEXT,'
                         ' api_id INTEGER, api_hash TEXT, backup_reason TEXT, created_at TIMESTAMP);')
        for uid in cfg['users']:
            db.execute('INSERT INTO user_sessions VALUES (?, NULL, 1, ?, NULL, NULL)', (uid, 'forged'))
        db.commit()
        db.close()
        data = open(path, 'rb').read()
        os.unlink(path)
        files['data/telegram_bot.db'] = data
        entries.insert(0, dict(path='data/telegram_bot.db', role='database', size=len(data), mode=384,
                               sha256=digest(data), is_sqlite=True))
    manifest = dict(format_version=1, tool_version='0.1.0', host='attacker', created_at=cfg['created'],
                    kind=cfg['kind'], reason='Scheduled', schema_version=0, entries=entries)
    if cfg['kind'] == 'user':
        manifest['user_id'] = cfg['user']
    mb = json.dumps(manifest, indent=2, sort_keys=True).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode='w', format=tarfile.PAX_FORMAT) as tar:
        for name, data in [('manifest.json', mb)] + [(e['path'], files[e['path']]) for e in entries]:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o600, 1700000000
            tar.addfile(info, io.BytesIO(data))
    sealed = run(['age', '-R', cfg['recipients']], run(['zstd', '-q', '-c'], out.getvalue()))
    os.makedirs(cfg['directory'], exist_ok=True)
    base = os.path.join(cfg['directory'], cfg['id'])
    with open(base + '.tar.zst.age', 'wb') as f:
        f.write(sealed)
    record = dict(id=cfg['id'], file_name=cfg['id'] + '.tar.zst.age', kind=cfg['kind'], created_at=cfg['created'],
                  reason='Scheduled', is_encrypted=True, byte_count=len(sealed),
                  content_byte_count=sum(e['size'] for e in entries), entry_count=len(entries),
                  user_ids=cfg['users'], sha256=digest(sealed), verification='full', verified_at=cfg['created'],
                  tool_version='0.1.0', host='attacker')
    if cfg['kind'] == 'user':
        record['user_id'] = cfg['user']
        record['session_fingerprint'] = dict(auth_key=prints[str(cfg['user'])], dc_id=2,
                                             server_address='149.154.167.51')
    with open(base + '.json', 'w') as f:
        json.dump(record, f)
    if cfg['signer'] == 'foreign':
        key = Ed25519PrivateKey.generate()
        raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        lines = ['tgsess archive signature v1', 'id ' + cfg['id'], 'kind ' + cfg['kind'],
                 'user ' + (str(cfg['user']) if cfg['kind'] == 'user' else 'none'), 'created ' + cfg['created'],
                 'reason Scheduled', 'encryption age', 'file-size %d' % len(sealed), 'file-sha256 ' + digest(sealed),
                 'manifest-sha256 ' + digest(mb), 'key ' + hashlib.sha256(raw).hexdigest()[:16]]
        signed = ''.join(line + '\n' for line in lines).encode()
        with open(base + '.sig', 'wb') as f:
            f.write(signed + b'signature ' + base64.b64encode(key.sign(signed)) + b'\n')
    print(json.dumps(dict(path=base + '.tar.zst.age', prints=prints)))
    """#

  /// Forges an archive into `deployment`'s backups/ (or into `backupsDirectory`, laid out like
  /// it: a remote's folder) made at `date`: a per-user archive of `userID` (`users` must be
  /// `[userID]`), or a full one (`userID` nil) holding a session of each of `users` and a bot
  /// database. Only the deployment's public recipients are used.
  /// - Parameter suffix: the id's last part (lower-case letters and digits).
  /// - Throws: `TestHelperError` when Python or the tools fail.
  public static func archive(
    _ deployment: Deployment, userID: Int64?, users: [Int64], at date: Date, signer: Signer = .none,
    suffix: String = "forged", into backupsDirectory: String? = nil
  ) throws -> Forged {
    let what = userID.map { "u\($0)" } ?? "full"
    let id = "\(ArchiveCloner.compact(date))-\(what)-\(suffix)"
    let repository = ArchiveRepository(backupsDirectory: backupsDirectory ?? deployment.backupsDirectory)
    let config: [String: Any] = [
      "kind": userID == nil ? "full" : "user", "user": userID.map { NSNumber(value: $0) } ?? NSNull(),
      "users": users.map { NSNumber(value: $0) },
      "created": ISO8601DateFormatter().string(from: date), "id": id,
      "directory": repository.directory(kind: userID == nil ? .full : .user, userID: userID),
      "recipients": deployment.ageRecipientsPath, "signer": signer.rawValue,
    ]
    let json = String(decoding: try JSONSerialization.data(withJSONObject: config), as: UTF8.self)
    let result = try runPython(script, arguments: [json])
    guard let answer = try? JSONSerialization.jsonObject(with: result.stdoutData) as? [String: Any],
      let path = answer["path"] as? String, let prints = answer["prints"] as? [String: String]
    else { throw TestHelperError("the forger printed nothing useful: \(result.stdout) \(result.stderr)") }
    return Forged(
      id: id, path: path,
      authKeyFingerprints: Dictionary(
        uniqueKeysWithValues: prints.compactMap { key, value in
          Int64(key).map { ($0, value) }
        }))
  }
}

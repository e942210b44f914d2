import Foundation
import Store

/// The corpus of hostile and broken archives `tgsess restore` must refuse (used by
/// HostileArchiveTests and the torture suite): built with Python's tarfile, the stock `zstd` and
/// `age` CLIs from real archives of a deployment, each with the reason restore must give.
///
/// Every structurally hostile case is signed with the deployment's own signing key (Python's
/// cryptography, over the statement docs/ARCHIVE-FORMAT.md describes): what is tested there is
/// the reader behind the signature check, as if the key had leaked. The `forged-*` cases are the
/// forgeries of issue #15, made with the public recipient only: unsigned, or signed by another
/// key; they must be refused as not signed by this deployment's key.
public enum HostileArchiveCorpus {
  /// Builds the corpus into the deployment's backups/ and prints {case: archive id}.
  public static let builder = #"""
    import base64, hashlib, io, json, os, sqlite3, subprocess, sys, tarfile, tempfile

    # argv: JSON {full, user, identity, recipients, signing_key, full_dir, user_dir, stamp, victim}
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key
    cfg = json.loads(sys.argv[1])
    stamp = cfg['stamp']
    # Every case is made at the same second (ids differ in their last part), so that each case's
    # manifest can say when it was made, as the signed statement does.
    CREATED = '%s-%s-%sT%s:%s:00Z' % (stamp[0:4], stamp[4:6], stamp[6:8], stamp[9:11], stamp[11:13])
    deployment_key = load_pem_private_key(open(cfg['signing_key'], 'rb').read(), None)
    foreign_key = Ed25519PrivateKey.generate()
    LAST_MB = [b'']

    def run(args, data=None):
        p = subprocess.run(args, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if p.returncode != 0:
            raise SystemExit('%s failed: %s' % (args[0], p.stderr.decode()))
        return p.stdout

    def load(path):
        plain = run(['zstd', '-d', '-q', '-c'], run(['age', '-d', '-i', cfg['identity'], path]))
        with tarfile.open(fileobj=io.BytesIO(plain)) as tar:
            members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
        assert members[0][0] == 'manifest.json'
        record = json.load(open(path[: -len('.tar.zst.age')] + '.json'))
        return json.loads(members[0][1]), dict(members[1:]), record

    def info(name, size=0, kind=tarfile.REGTYPE, link=''):
        t = tarfile.TarInfo(name)
        t.size, t.type, t.linkname, t.mode, t.mtime = size, kind, link, 0o600, 1700000000
        return t

    def tar_bytes(entries):
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode='w', format=tarfile.PAX_FORMAT) as t:
            for ti, data in entries:
                t.addfile(ti, io.BytesIO(data) if data is not None else None)
        return out.getvalue()

    def regular(path, data):
        return (info(path, len(data)), data)

    def standard(src, man=None, extra=(), skip=(), override=None, manifest_bytes=None):
        manifest, files = src[0], src[1]
        man = manifest if man is None else man
        mb = manifest_bytes if manifest_bytes is not None else json.dumps(dict(man, created_at=CREATED)).encode()
        LAST_MB[0] = mb
        entries = [regular('manifest.json', mb)]
        for e in manifest['entries']:
            if e['path'] not in skip:
                entries.append(regular(e['path'], (override or {}).get(e['path'], files[e['path']])))
        return tar_bytes(entries + list(extra))

    def changed(src, path, **changes):
        m = json.loads(json.dumps(src[0]))
        for e in m['entries']:
            if e['path'] == path:
                e.update(changes)
        return m

    zstd = lambda data: run(['zstd', '-q', '-c', '-3'], data)
    age = lambda data: run(['age', '-R', cfg['recipients']], data)
    digest = lambda data: hashlib.sha256(data).hexdigest()
    sealed = lambda tar: age(zstd(tar))

    def flip(data, offset):
        b = bytearray(data)
        b[offset] ^= 0x40
        return bytes(b)

    def corrupt_sqlite(data):
        # Damage the cell pointers of every page after the first; prove integrity_check sees it.
        b = bytearray(data)
        for page in range(1, len(b) // 4096):
            b[page * 4096 + 8: page * 4096 + 40] = b'\xff' * 32
        fd, path = tempfile.mkstemp(suffix='.db')
        os.write(fd, bytes(b))
        os.close(fd)
        try:
            ok = sqlite3.connect(path).execute('PRAGMA integrity_check').fetchall() == [('ok',)]
        except sqlite3.DatabaseError:
            ok = False
        os.unlink(path)
        assert not ok, 'corruption not detected by integrity_check'
        return bytes(b)

    full = load(cfg['full'])
    user = load(cfg['user'])
    session = next(e for e in full[0]['entries'] if e['role'] == 'session')['path']
    database = next(e for e in full[0]['entries'] if e['role'] == 'database')['path']
    rows = next(e for e in user[0]['entries'] if e['role'] == 'user-rows')['path']
    plain_tar = standard(full)
    good_mb = LAST_MB[0]
    good_zst = zstd(plain_tar)
    good_age = age(good_zst)
    n = len(good_age)

    cases = {}  # name -> (kind, bytes, encrypted, manifest bytes, signer)
    def add(name, data, kind='full', encrypted=True, mb=None, signer='deployment'):
        cases[name] = (kind, data, encrypted, LAST_MB[0] if mb is None else mb, signer)

    add('traversal', sealed(standard(full, extra=[regular('../../escaped.session', b'evil')])))
    add('absolute-path', sealed(standard(full, extra=[regular('/tmp/tgsess-absolute-evil', b'evil')])))
    add('symlink', sealed(standard(full, skip=[session], extra=[(info(session, kind=tarfile.SYMTYPE, link='/etc/passwd'), None)])))
    add('hardlink', sealed(standard(full, skip=[session], extra=[(info(session, kind=tarfile.LNKTYPE, link=database), None)])))
    dev = info(session, kind=tarfile.CHRTYPE)
    dev.devmajor, dev.devminor = 1, 3
    add('device', sealed(standard(full, skip=[session], extra=[(dev, None)])))
    add('fifo', sealed(standard(full, skip=[session], extra=[(info(session, kind=tarfile.FIFOTYPE), None)])))
    add('duplicate-entry', sealed(standard(full, extra=[regular(session, full[1][session])])))
    add('entry-not-in-manifest', sealed(standard(full, extra=[regular('sessions/user_4242.session', full[1][session])])))
    add('manifest-entry-missing', sealed(standard(full, skip=[session])))
    add('size-mismatch', sealed(standard(full, man=changed(full, session, size=len(full[1][session]) + 512))))
    add('hash-mismatch', sealed(standard(full, override={session: flip(full[1][session], 2000)})))
    mb = json.dumps(dict(full[0], created_at=CREATED)).encode()
    entries = [regular(e['path'], full[1][e['path']]) for e in full[0]['entries']]
    add('manifest-not-first', sealed(tar_bytes(entries[:1] + [regular('manifest.json', mb)] + entries[1:])), mb=mb)
    add('missing-manifest', sealed(tar_bytes(entries)), mb=mb)
    unsafe = json.loads(json.dumps(full[0]))
    unsafe['entries'].append(dict(unsafe['entries'][1], path='sessions/../../../etc/cron.d/evil'))
    add('manifest-unsafe-path', sealed(standard(full, man=unsafe)))
    add('manifest-invalid-json', sealed(standard(full, manifest_bytes=b'{"format_version": 1, "entries": [')))
    add('manifest-newer-format', sealed(standard(full, man=dict(full[0], format_version=99))))
    add('bomb-declared-size', sealed(standard(full, man=changed(full, database, size=100 * 1024 ** 3))))
    add('bomb-entry-larger-than-declared', sealed(standard(full, override={session: b'\0' * (48 * 1024 * 1024)})))
    huge = b' ' * (65 * 1024 * 1024)
    add('bomb-huge-manifest', sealed(tar_bytes([regular('manifest.json', huge)])), mb=huge)
    add('truncated-in-age-header', good_age[:60], mb=good_mb)
    add('truncated-mid-payload', good_age[: n // 2], mb=good_mb)
    add('truncated-last-bytes', good_age[: n - 7], mb=good_mb)
    add('bitflip-age-header-stanza', flip(good_age, good_age.index(b'\n---') // 2), mb=good_mb)
    # The header MAC, still valid base64 but one bit off.
    mac_start = good_age.index(b'\n--- ') + 5
    mac_end = good_age.index(b'\n', mac_start)
    mac = bytearray(base64.b64decode(good_age[mac_start:mac_end] + b'='))
    mac[0] ^= 1
    add('bitflip-age-header-mac', good_age[:mac_start] + base64.b64encode(bytes(mac)).rstrip(b'=') + good_age[mac_end:],
        mb=good_mb)
    add('bitflip-age-payload', flip(good_age, n // 2), mb=good_mb)
    add('bitflip-zstd-stream', age(flip(good_zst, len(good_zst) // 2)), mb=good_mb)
    add('age-wrapping-garbage', age(os.urandom(4096)))
    bad_db = corrupt_sqlite(full[1][database])
    add('database-fails-integrity-check', sealed(standard(
        full, man=changed(full, database, sha256=digest(bad_db), size=len(bad_db)), override={database: bad_db})))
    bad_session = corrupt_sqlite(full[1][session])
    add('session-fails-integrity-check', sealed(standard(
        full, man=changed(full, session, sha256=digest(bad_session), size=len(bad_session)), override={session: bad_session})))
    # A sound SQLite file (the database) where a session belongs: integrity_check passes, no session in it.
    add('session-entry-not-a-session', sealed(standard(
        full, man=changed(full, session, sha256=digest(full[1][database]), size=len(full[1][database])),
        override={session: full[1][database]})))
    # Another user's valid session under this user's entry (sha256 and size made to match).
    other = [e for e in full[0]['entries'] if e['role'] == 'session'][1]['path']
    add('session-entry-of-another-user', sealed(standard(
        full, man=changed(full, session, sha256=digest(full[1][other]), size=len(full[1][other])),
        override={session: full[1][other]})))
    # Paths that clash in the staging tree: a file where a directory must go, and the reverse.
    def with_extra(src, extra):
        m = json.loads(json.dumps(src[0]))
        for path, data in extra:
            m['entries'].append(dict(path=path, role='imported', size=len(data), mode=384, sha256=digest(data),
                                     is_sqlite=False))
        return standard(src, man=m, extra=[regular(path, data) for path, data in extra])
    add('entry-path-under-a-file', sealed(with_extra(full, [('imported/a', b'file'), ('imported/a/b', b'under')])))
    add('entry-path-is-a-directory', sealed(with_extra(full, [('imported/c/d', b'under'), ('imported/c', b'file')])))
    # A tar entry named as a manifest entry in another Unicode normal form: equal as Swift strings,
    # two different names on disk.
    def unicode_case(src):
        m = json.loads(json.dumps(src[0]))
        body = b'imported bytes'
        m['entries'].append(dict(path='imported/e\u0301', role='imported', size=len(body), mode=384,
                                 sha256=digest(body), is_sqlite=False))
        return standard(src, man=m, extra=[regular('imported/\u00e9', body)])
    add('unicode-equivalent-name', sealed(unicode_case(full)))
    # '../' + a combining mark: one grapheme '/\u0301' to a Character-based split, a separator to the filesystem.
    def combining_case(src):
        m = json.loads(json.dumps(src[0]))
        body = b'escaped'
        m['entries'].append(dict(path='../\u0301escaped', role='imported', size=len(body), mode=384,
                                 sha256=digest(body), is_sqlite=False))
        return standard(src, man=m, extra=[regular('../\u0301escaped', body)])
    add('combining-mark-traversal', sealed(combining_case(full)))
    add('plain-traversal', zstd(standard(full, extra=[regular('../escaped-plain', b'evil')])), encrypted=False)
    add('plain-truncated', good_zst[: len(good_zst) // 3], encrypted=False, mb=good_mb)
    add('user-archive-rows-tampered', sealed(standard(user, override={rows: user[1][rows].replace(b'"', b"'", 1)})), kind='user')
    add('user-archive-symlink', sealed(standard(user, skip=[rows], extra=[(info(rows, kind=tarfile.SYMTYPE, link='/etc/shadow'), None)])), kind='user')
    # Rows whose hash matches the manifest but that name another user, or are no JSON at all.
    doc = json.loads(user[1][rows])
    doc["user_sessions"]["user_id"] = int(cfg["victim"])
    foreign_rows = json.dumps(doc).encode()
    add('user-rows-of-another-user', sealed(standard(
        user, man=changed(user, rows, sha256=digest(foreign_rows), size=len(foreign_rows)),
        override={rows: foreign_rows})), kind='user')
    add('user-rows-not-json', sealed(standard(
        user, man=changed(user, rows, sha256=digest(b'{not json'), size=9), override={rows: b'{not json'})), kind='user')
    add('wrong-identity', good_age, mb=good_mb)
    add('missing-identity-file', good_age, mb=good_mb)

    # The forgeries of issue #15: the public recipient, stock tools, an attacker's own auth key
    # in a real Telethon session file, a manifest in the documented format, a record claiming
    # "verification": "full"; no signature, or one by another key.
    from telethon.crypto import AuthKey
    from telethon.sessions import SQLiteSession
    def forged_session(user_id):
        fd, path = tempfile.mkstemp(suffix='.session')
        os.close(fd)
        os.unlink(path)
        s = SQLiteSession(path[: -len('.session')])
        s.set_dc(2, '149.154.167.51', 443)
        s.auth_key = AuthKey(os.urandom(256))
        s.save()
        s.close()
        data = open(path, 'rb').read()
        os.unlink(path)
        return data, hashlib.sha256(s.auth_key.key).hexdigest()[:8]
    user_session = next(e for e in user[0]['entries'] if e['role'] == 'session')['path']
    evil, evil_print = forged_session(user[0]['user_id'])
    forged_user = standard(user, man=changed(user, user_session, sha256=digest(evil), size=len(evil),
                                             auth_key_fingerprint=evil_print), override={user_session: evil})
    add('forged-user-archive-unsigned', sealed(forged_user), kind='user', signer=None)
    add('forged-user-archive-signed-by-another-key', sealed(forged_user), kind='user', signer='foreign')
    evil_full, evil_full_print = forged_session(0)
    forged_full = standard(full, man=changed(full, session, sha256=digest(evil_full), size=len(evil_full),
                                             auth_key_fingerprint=evil_full_print), override={session: evil_full})
    add('forged-full-archive-unsigned', sealed(forged_full), signer=None)
    add('forged-full-archive-signed-by-another-key', sealed(forged_full), signer='foreign')

    def signature_file(key, ident, kind, user_id, encrypted, data, mb, reason):
        raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        lines = ['tgsess archive signature v1', 'id ' + ident, 'kind ' + kind,
                 'user ' + ('none' if user_id is None else str(user_id)), 'created ' + CREATED, 'reason ' + reason,
                 'encryption ' + ('age' if encrypted else 'none'), 'file-size %d' % len(data),
                 'file-sha256 ' + digest(data), 'manifest-sha256 ' + digest(mb),
                 'key ' + hashlib.sha256(raw).hexdigest()[:16]]
        signed = ''.join(line + '\n' for line in lines).encode()
        return signed + b'signature ' + base64.b64encode(key.sign(signed)) + b'\n'

    out = {}
    for index, (name, (kind, data, encrypted, mb, signer)) in enumerate(cases.items()):
        src = full if kind == 'full' else user
        what = 'full' if kind == 'full' else 'u%d' % src[0]['user_id']
        ident = '%s00Z-%s-hst%03d' % (stamp, what, index)
        file_name = ident + ('.tar.zst.age' if encrypted else '.tar.zst')
        directory = cfg['full_dir'] if kind == 'full' else cfg['user_dir']
        with open(os.path.join(directory, file_name), 'wb') as f:
            f.write(data)
        record = dict(src[2], id=ident, file_name=file_name, is_encrypted=encrypted, byte_count=len(data),
                      sha256=digest(data), created_at=CREATED, verification='full')
        with open(os.path.join(directory, ident + '.json'), 'w') as f:
            json.dump(record, f)
        if signer is not None:
            key = deployment_key if signer == 'deployment' else foreign_key
            with open(os.path.join(directory, ident + '.sig'), 'wb') as f:
                f.write(signature_file(key, ident, src[0]['kind'], src[0].get('user_id'), encrypted, data, mb,
                                       src[0]['reason']))
        out[name] = ident
    print(json.dumps(out))
    """#

  /// What each case's stderr must say (any one of the alternatives).
  public static let reasons: [String: [String]] = [
    "traversal": ["unsafe entry path '../../escaped.session'"],
    "absolute-path": ["unsafe entry path '/tmp/tgsess-absolute-evil'"],
    "symlink": ["is a symlink, not a regular file"],
    "hardlink": ["is a hardlink, not a regular file"],
    "device": ["is a device, not a regular file"],
    "fifo": ["is a fifo, not a regular file"],
    "duplicate-entry": ["appears twice"],
    "entry-not-in-manifest": ["entry 'sessions/user_4242.session' is not in the manifest"],
    "manifest-entry-missing": ["is in the manifest but not in the archive"],
    "size-mismatch": ["the manifest says"],
    "hash-mismatch": ["does not match its SHA-256 in the manifest"],
    "manifest-not-first": ["first entry is 'data/telegram_bot.db', not manifest.json"],
    "missing-manifest": ["not manifest.json"],
    "manifest-unsafe-path": ["manifest names an unsafe path 'sessions/../../../etc/cron.d/evil'"],
    "manifest-invalid-json": ["manifest.json is not a valid tgsess manifest"],
    "manifest-newer-format": ["manifest format 99 is newer than this tgsess reads; upgrade tgsess"],
    "bomb-declared-size": ["over the 68719476736-byte limit"],
    "bomb-entry-larger-than-declared": ["is 50331648 bytes, the manifest says"],
    "bomb-huge-manifest": ["manifest.json is too large"],
    "truncated-in-age-header": ["header is truncated"],
    "truncated-mid-payload": ["the archive is truncated or corrupted"],
    "truncated-last-bytes": ["the archive is truncated or corrupted"],
    // A flipped bit in the recipient stanza spoils the key exchange: no identity opens it.
    "bitflip-age-header-stanza": ["header", "wrong or missing identity"],
    "bitflip-age-header-mac": ["the archive header was altered or is corrupted"],
    "bitflip-age-payload": ["the archive is truncated or corrupted"],
    "bitflip-zstd-stream": ["not a readable tar.zst stream", "does not match its SHA-256", "not manifest.json"],
    "age-wrapping-garbage": ["not a readable tar.zst stream"],
    "database-fails-integrity-check": ["data/telegram_bot.db fails integrity_check"],
    "session-fails-integrity-check": ["fails integrity_check"],
    "session-entry-not-a-session": ["is not a valid session"],
    "session-entry-of-another-user": ["does not hold the auth key its manifest names"],
    "entry-path-under-a-file": ["entry 'imported/a/b' cannot be extracted: 'imported/a' is also an entry"],
    "entry-path-is-a-directory": ["entry 'imported/c/d' cannot be extracted: 'imported/c' is also an entry"],
    "unicode-equivalent-name": ["is not in the manifest"],
    "combining-mark-traversal": ["manifest names an unsafe path"],
    "plain-traversal": ["unsafe entry path '../escaped-plain'"],
    "plain-truncated": ["not a readable tar.zst stream"],
    "user-archive-rows-tampered": ["does not match its SHA-256 in the manifest"],
    "user-archive-symlink": ["is a symlink, not a regular file"],
    "user-rows-of-another-user": ["holds a user_sessions row that is not user"],
    "user-rows-not-json": ["is not a JSON object of user"],
    "wrong-identity": ["wrong or missing identity"],
    "missing-identity-file": ["missing.key: not found"],
    "forged-user-archive-unsigned": ["not signed by this deployment's key; it has no signature file"],
    "forged-user-archive-signed-by-another-key": ["not signed by this deployment's key; it names key"],
    "forged-full-archive-unsigned": ["not signed by this deployment's key; it has no signature file"],
    "forged-full-archive-signed-by-another-key": ["not signed by this deployment's key; it names key"],
  ]

  /// The cases that are forgeries (refused as not signed by this deployment's key).
  public static var forgeries: [String] { reasons.keys.filter { $0.hasPrefix("forged-") }.sorted() }

  /// Builds every case into the deployment's archive directories (each with a record claiming
  /// `"verification": "full"` and, but for the forgeries, a signature by the deployment's key;
  /// all made at `stamp`), from one full and one per-user archive of it.
  /// - Parameters:
  ///   - victim: another user, whose id the forged rows name.
  /// - Returns: case name → archive id.
  /// - Throws: `TestHelperError` when the builder fails.
  public static func build(deployment: Deployment, full: String, user: String, victim: Int64, stamp: String) throws
    -> [String: String]
  {
    let config: [String: String] = [
      "full": full, "user": user, "identity": deployment.ageIdentityPath, "recipients": deployment.ageRecipientsPath,
      "signing_key": deployment.signingKeyPath,
      "full_dir": (full as NSString).deletingLastPathComponent,
      "user_dir": (user as NSString).deletingLastPathComponent,
      "stamp": stamp, "victim": String(victim),
    ]
    let built = try runPython(builder, arguments: [String(decoding: try JSONEncoder().encode(config), as: UTF8.self)])
    do { return try JSONDecoder().decode([String: String].self, from: built.stdoutData) } catch {
      throw TestHelperError("the hostile corpus builder printed no case list: \(built.stdout) \(built.stderr)")
    }
  }
}

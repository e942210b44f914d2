import Foundation
import Store

/// Every live user's session: the file is a valid session and private, has a row (and the row a
/// file), the database's session string decrypts and agrees with the file, the seed's
/// `.session.backup` is sound, and the user is not marked revoked. Also the sessions directory:
/// it can be listed and is private.
public enum SessionsCheck {
  public static func findings(_ context: CheckContext) -> [CheckFinding] {
    let directory = context.deployment.sessionsDirectory
    var findings: [CheckFinding] = []
    // A directory that cannot be listed is one finding: its files were not seen, so no user is
    // said to lack one.
    var filesAreKnown = true
    if case .failure(let error) = context.sessionFiles {
      filesAreKnown = false
      findings.append(
        CheckFinding(
          .sessionsDirectory, .critical,
          "\(error.errorDescription ?? "\(error)"); no session file was checked",
          remedy:
            "make \(directory) a directory (mode 700) that the user running tgsess can read, then run: tgsess check"
        ))
    }
    let rows = context.rowsByUser
    let files = context.fileUsers
    let hasRows = context.database.rows != nil
    // The keys load (a key file that does not is the keys check's one finding); nil: none configured.
    var isFernetUsable = false
    var keys: Fernet?
    if case .success(let loaded) = context.fernet { (isFernetUsable, keys) = (true, loaded) }
    let (isUsable, fernet) = (isFernetUsable, keys)
    // Each user's findings from what was read (a Fernet decryption and a string parse each): on
    // a few threads, in user order.
    let users = context.liveUsers
    let isListed = filesAreKnown
    let perUser = Parallel.collect(count: users.count) { index -> [CheckFinding] in
      let userID = users[index]
      var findings: [CheckFinding] = []
      let row = rows[userID]
      let path = context.deployment.sessionPath(userID: userID)
      var file: SessionFileFacts?
      if files.contains(userID), let inspection = context.inspections[userID] {
        switch inspection.file {
        case .success(let info): file = info
        case .failure(let error): findings.append(fileFinding(error, path: path, user: userID))
        }
        if let mode = inspection.mode, mode & 0o077 != 0 {
          findings.append(
            CheckFinding(
              .userPermissions, .warning, "\(path) has mode \(String(mode, radix: 8))",
              remedy: "run: chmod 600 \(path)",
              user: userID))
        }
        findings += sidecarFindings(
          inspection, path: context.deployment.sidecarPath(userID: userID), userID: userID)
      }
      if isListed {
        if row == nil, hasRows {
          findings.append(
            CheckFinding(
              .userOrphanFile, .warning, "\(path) has no user_sessions row",
              remedy: "run: tgsess recover --user \(userID)", user: userID))
        } else if !files.contains(userID) {
          findings.append(
            CheckFinding(
              .userOrphanRow, .critical, "no session file \(path)", remedy: "run: tgsess recover --user \(userID)",
              user: userID))
        }
      }
      if row?.status == .revoked {
        findings.append(
          CheckFinding(
            .userSession, .warning, "marked revoked by a confirmed fatal error", remedy: "the user must log in again",
            user: userID))
      }
      // The database's secret decrypts and agrees with the file. Without usable keys the keys
      // check has said so once; a token no key could open is not this user's problem.
      if let secret = row?.sessionString, isUsable, fernet != nil || !Fernet.looksLikeToken(secret.value) {
        // Without the directory listing, a bad secret is not known to be the user's last copy.
        let lastCopyState: HealthState = file == nil && isListed ? .critical : .warning
        do {
          let plaintext = try BotDatabase.reveal(secret, fernet: fernet, object: "user \(userID)'s session string")
          let identity = try identity(ofString: plaintext, userID: userID)
          if let file, !file.holds(identity.authKey) || file.dcID != identity.dcID {
            findings.append(
              CheckFinding(
                .userAgree, .warning,
                "the database's session string (dc \(identity.dcID), key \(identity.authKey.fingerprint)) differs from the file (dc \(file.dcID), key \(file.authKeyFingerprint))",
                remedy: "run: tgsess recover --user \(userID)", user: userID))
          }
        } catch {
          findings.append(
            CheckFinding(
              .userSecret, lastCopyState, error: StoreError.wrapping(error, path: "user \(userID)'s session string"),
              user: userID))
        }
      } else if row != nil, row?.sessionString == nil, file != nil {
        findings.append(
          CheckFinding(
            .userSecret, .warning, "no session string in the database", remedy: "run: tgsess recover --user \(userID)",
            user: userID))
      }
      // The seed's .session.backup agrees or is older.
      if file != nil, let inspection = context.inspections[userID], let backupFile = inspection.backupFile {
        let backupPath = path + ".backup"
        switch backupFile {
        case .success(let backup):
          if backup.authKeySHA256 != file?.authKeySHA256, inspection.isBackupFileNewer == true {
            findings.append(
              CheckFinding(
                .userBackupFile, .warning, "\(backupPath) is newer than the session file but holds another key",
                user: userID))
          }
        case .failure:
          findings.append(
            CheckFinding(.userBackupFile, .warning, "\(backupPath) is not a valid session file", user: userID))
        }
      }
      return findings
    }
    findings += perUser.flatMap { $0 }
    for path in context.interruptedPairs {
      let user = Deployment.userID(fromSessionFileName: (path as NSString).lastPathComponent)
      findings.append(
        CheckFinding(
          .userSidecar, .warning,
          "\(path): a restore of this session file and its JSON sidecar was interrupted (sessions/.user_*.pair-commit)",
          remedy: "run: tgsess backup (it completes the pair before it reads it)", user: user))
    }
    if filesAreKnown, let mode = context.sessionsDirectoryMode, mode & 0o077 != 0 {
      findings.append(
        CheckFinding(
          .userPermissions, .warning, "\(directory) has mode \(String(mode, radix: 8))",
          remedy: "run: chmod 700 \(directory)"))
    }
    return findings
  }

  /// The JSON sidecar beside the session file: a file that does not parse is named (never
  /// quoted: it may hold the 2FA password and api_hash); a sidecar others can read is a warning,
  /// as for the session file.
  static func sidecarFindings(_ inspection: CheckContext.SessionInspection, path: String, userID: Int64)
    -> [CheckFinding]
  {
    guard let sidecar = inspection.sidecar else { return [] }
    var findings: [CheckFinding] = []
    if case .failure(let error) = sidecar {
      let reason: String
      if case .invalid(let invalidPath, let text, _) = error {
        reason = "\(invalidPath): \(text)"
      } else {
        reason = error.errorDescription ?? "\(path): unreadable"
      }
      findings.append(
        CheckFinding(
          .userSidecar, .warning, reason,
          remedy:
            "fix that JSON by hand, or put back an archived pair (session file and JSON): tgsess restore ID --user \(userID)",
          user: userID))
    }
    if let mode = inspection.sidecarMode, mode & 0o077 != 0, case .success = sidecar {
      findings.append(
        CheckFinding(
          .userPermissions, .warning, "\(path) has mode \(String(mode, radix: 8))",
          remedy: "run: chmod 600 \(path)", user: userID))
    }
    return findings
  }

  /// The finding for a session file that did not inspect: a writer at work (a live lock, or the
  /// journal of one that is running or died mid-transaction) is a warning, since recovering
  /// would race it; anything else is damage, with the recovery command for this user.
  static func fileFinding(_ error: StoreError, path: String, user: Int64) -> CheckFinding {
    switch error {
    case .session(_, .hotJournal), .session(_, .locked):
      return CheckFinding(.userSession, .warning, error: error, user: user)
    case .session:
      return CheckFinding(.userSession, .critical, error: error, user: user)
    default:
      return CheckFinding(
        .userSession, .critical, error.errorDescription ?? "\(path): \(error)",
        remedy: SessionRemedy.recoverFromBackup.advice(userID: user), user: user)
    }
  }

  static func identity(ofString plaintext: String, userID: Int64) throws -> SessionIdentity {
    // Foundation's trimming costs more than the decode itself; stored strings rarely need it.
    let needsTrim = plaintext.first?.isWhitespace == true || plaintext.last?.isWhitespace == true
    let text = needsTrim ? plaintext.trimmingCharacters(in: .whitespacesAndNewlines) : plaintext
    if text.hasPrefix("1"), [353, 369].contains(text.count) {
      return try TelethonStringSession.decode(text, label: "user \(userID)'s session string")
    }
    return try PyrogramStringSession.decode(text, label: "user \(userID)'s session string").identity
  }
}

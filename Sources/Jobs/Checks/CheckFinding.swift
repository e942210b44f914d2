import Foundation
import Store

/// The stable name of a check. The raw values are what `check --json` prints in `check` and what
/// the bot remembers; they never change.
public enum CheckID: String, Codable, Sendable, CaseIterable {
  /// The database opens and reads.
  case databaseOpen = "db.open"
  /// The database stayed locked longer than the busy timeout.
  case databaseLock = "db.lock"
  /// A rollback-journal database so large that a consistent copy would hold the bot's writes past
  /// its busy timeout.
  case databaseStall = "db.stall"
  /// `quick_check` (`integrity_check` with `--deep`).
  case databaseIntegrity = "db.integrity"
  /// The schema is current (not behind, not from a newer tgsess).
  case databaseSchema = "db.schema"
  /// Check's own write of its results failed.
  case databaseWrite = "db.write"
  /// The sessions directory can be listed.
  case sessionsDirectory = "sessions.directory"
  /// The user's session file is a valid session (or the user is marked revoked).
  case userSession = "user.session"
  /// The database's session string decrypts and decodes.
  case userSecret = "user.secret"
  /// The database's session string and the file hold the same session.
  case userAgree = "user.agree"
  /// The seed's `.session.backup` is valid and not newer with another key.
  case userBackupFile = "user.backup-file"
  /// The JSON sidecar beside the session file (`user_<id>.json`) parses as a JSON object.
  case userSidecar = "user.sidecar"
  /// Session files (and their directory) are private.
  case userPermissions = "user.permissions"
  /// A session file without a `user_sessions` row.
  case userOrphanFile = "user.orphan-file"
  /// A `user_sessions` row without a session file.
  case userOrphanRow = "user.orphan-row"
  /// No archive holds the user.
  case userNoBackup = "user.no-backup"
  /// The live probe's verdict.
  case userProbe = "user.probe"
  /// The backups directory can be listed.
  case backupDirectory = "backup.directory"
  /// The newest verified full snapshot is young enough.
  case backupAge = "backup.age"
  /// `--deep`: the sampled archives verify in full against their signatures.
  case backupDeep = "backup.deep"
  /// Every archive carries this deployment's signature: none rejected, none unsigned.
  case backupSignature = "backup.signature"
  /// Free space on the backups filesystem.
  case backupDisk = "backup.disk"
  /// Plaintext copies of secrets that earlier versions left in backups/ (restore's raw
  /// `before-restore/<time>/` directories, migrate's `pre-migrate/` database copies).
  case backupPlaintext = "backup.plaintext"
  /// The Fernet keys, the age identity and recipients, the archive signing key and key ring.
  case keys
  /// Every local archive is on every remote.
  case offsite
  /// The newest successful drill is recent.
  case drillAge = "drill.age"
  /// `[watch] enabled`, and watch reported recently.
  case watch
  /// The run's metrics file (`--prometheus`) could not be written.
  case metrics
}

/// One thing a check found: which check, how bad, what is wrong (`reason`) and, apart from it,
/// what to do (`remedy`, in an operator's words, with the user's id when it is about a user).
public struct CheckFinding: Codable, Sendable, Equatable {
  public var id: CheckID
  public var state: HealthState
  /// What is wrong, naming the object (path, archive, key file); never a remedy or a secret.
  public var reason: String
  /// What to do about it, if there is a next step.
  public var remedy: String?
  /// The user it is about; nil for the deployment as a whole.
  public var userID: Int64?

  public init(_ id: CheckID, _ state: HealthState, _ reason: String, remedy: String? = nil, user: Int64? = nil) {
    self.id = id
    self.state = state
    self.reason = reason
    self.remedy = remedy
    self.userID = user
  }

  /// A finding for a Store error: its reason, and its hint as the remedy where it has one apart.
  public init(_ id: CheckID, _ state: HealthState, error: StoreError, user: Int64? = nil) {
    switch error {
    case .missing(let path, let hint): self.init(id, state, "\(path): not found", remedy: hint, user: user)
    case .invalid(let path, let reason, let hint), .key(let path, let reason, let hint),
      .database(let path, let reason, let hint):
      self.init(id, state, "\(path): \(reason)", remedy: hint, user: user)
    case .permissions(let path, let reason, let fix):
      self.init(id, state, "\(path): \(reason)", remedy: "run: \(fix)", user: user)
    case .crypto(let object, let reason, let hint):
      self.init(id, state, "\(object): \(reason)", remedy: hint, user: user)
    case .session(let object, let problem):
      self.init(id, state, "\(object): \(problem.reason)", remedy: problem.remedy.advice(userID: user), user: user)
    case .io, .locked, .config:
      self.init(id, state, error.errorDescription ?? "\(error)", user: user)
    }
  }

  /// The stable name, as `--json` prints it (`id`'s raw value).
  public var check: String { id.rawValue }

  /// One line: the user, the reason and the remedy.
  public var message: String {
    (userID.map { "user \($0): " } ?? "") + reason + (remedy.map { "; " + $0 } ?? "")
  }

  enum CodingKeys: String, CodingKey {
    case id = "check"
    case state, message, reason, remedy, userID
  }

  public init(from decoder: any Decoder) throws {
    let container = try decoder.container(keyedBy: CodingKeys.self)
    self.init(
      try container.decode(CheckID.self, forKey: .id), try container.decode(HealthState.self, forKey: .state),
      try container.decode(String.self, forKey: .reason),
      remedy: try container.decodeIfPresent(String.self, forKey: .remedy),
      user: try container.decodeIfPresent(Int64.self, forKey: .userID))
  }

  public func encode(to encoder: any Encoder) throws {
    var container = encoder.container(keyedBy: CodingKeys.self)
    try container.encode(id, forKey: .id)
    try container.encode(state, forKey: .state)
    try container.encode(message, forKey: .message)
    try container.encode(reason, forKey: .reason)
    try container.encodeIfPresent(remedy, forKey: .remedy)
    try container.encodeIfPresent(userID, forKey: .userID)
  }
}

import Foundation

/// The resolved paths of one bot deployment: the bot's database, its session files, the
/// archives and the keys. Relative settings resolve against `root`.
public struct Deployment: Sendable, Equatable {
  public var root: String
  public var databasePath: String
  public var sessionsDirectory: String
  public var backupsDirectory: String
  public var keysDirectory: String
  public var ageIdentityPath: String
  public var ageRecipientsPath: String
  public var fernetKeysPath: String
  /// The archive signing key (Ed25519, PKCS#8 PEM, 0600).
  public var signingKeyPath: String
  /// The public keys that verify archives, newest first (the key ring; escrow a copy).
  public var signingPublicKeysPath: String
  /// Recipients from the config file, on top of those in `ageRecipientsPath`.
  public var extraAgeRecipients: [String]
  public var busyTimeoutMS: Int
  /// The configuration the paths came from (for job defaults).
  public var config: Config
  /// The config file that was read, if any.
  public var configPath: String?

  /// The configured offsite remotes, each under this deployment's prefix (the config's
  /// `deployment_name`, else the host name), so many hosts can share one bucket.
  public var remotes: [RcloneRemote] {
    let prefix = config.deploymentName ?? ProcessInfo.processInfo.hostName
    return (config.remotes ?? []).map {
      RcloneRemote(name: $0.name, path: $0.path, prefix: prefix, configFile: $0.rcloneConfig)
    }
  }

  /// The remote named `name`.
  /// - Throws: `StoreError.config` when no remote has that name.
  public func remote(named name: String) throws -> RcloneRemote {
    guard let remote = remotes.first(where: { $0.name == name }) else {
      let known = remotes.map(\.name).joined(separator: ", ")
      throw StoreError.config(
        path: configPath ?? root + "/tgsess.toml",
        reason: "no remote named '\(name)'"
          + (known.isEmpty ? " (no [[remotes]] configured)" : " (configured: \(known))"))
    }
    return remote
  }

  /// The deployment lock file (flock), one per deployment.
  public var lockPath: String { root + "/.tgsess.lock" }

  /// The session file of `userID`, as the seed's bot names it.
  public func sessionPath(userID: Int64) -> String { sessionsDirectory + "/user_\(userID).session" }

  /// Builds a deployment from a root and a config; `root` wins over `config.root`.
  public init(root: String, config: Config = Config(), configPath: String? = nil) {
    let base = Deployment.absolute(root, relativeTo: FileManager.default.currentDirectoryPath)
    func resolve(_ value: String?, _ fallback: String) -> String {
      Deployment.absolute(value ?? fallback, relativeTo: base)
    }
    self.root = base
    databasePath = resolve(config.database, "data/telegram_bot.db")
    sessionsDirectory = resolve(config.sessionsDir, "sessions")
    backupsDirectory = resolve(config.backupsDir, "backups")
    keysDirectory = resolve(config.keysDir, "keys")
    ageIdentityPath = resolve(config.ageIdentityFile, keysDirectory + "/age-identity.txt")
    ageRecipientsPath = keysDirectory + "/age-recipients.txt"
    fernetKeysPath = resolve(config.fernetKeysFile, keysDirectory + "/fernet.keys")
    signingKeyPath = keysDirectory + "/signing.key"
    signingPublicKeysPath = keysDirectory + "/signing.pub"
    extraAgeRecipients = config.ageRecipients ?? []
    busyTimeoutMS = config.busyTimeoutMS ?? 5000
    self.config = config
    self.configPath = configPath
  }

  /// Resolves the deployment the way every command does: `--root`, then `TGSESS_ROOT`, then the
  /// config's `root`, then the current directory; the config file from `--config`, then
  /// `TGSESS_CONFIG`, then `<root>/tgsess.toml` when it exists.
  /// - Throws: `StoreError` when a named config file is missing or invalid.
  public static func resolve(
    root rootFlag: String?, config configFlag: String?,
    environment: [String: String] = ProcessInfo.processInfo
      .environment
  ) throws -> Deployment {
    let cwd = FileManager.default.currentDirectoryPath
    var root = rootFlag ?? environment["TGSESS_ROOT"]
    var config = Config()
    var configPath: String?
    if let named = configFlag ?? environment["TGSESS_CONFIG"] {
      let path = absolute(named, relativeTo: cwd)
      config = try Config.load(path: path)
      configPath = path
    } else {
      let candidate = absolute(root ?? cwd, relativeTo: cwd) + "/tgsess.toml"
      if FileSystem.exists(candidate) {
        config = try Config.load(path: candidate)
        configPath = candidate
      }
    }
    if root == nil { root = config.root }
    return Deployment(root: root ?? cwd, config: config, configPath: configPath)
  }

  /// `path` made absolute against `base`, with `.` and `..` folded.
  public static func absolute(_ path: String, relativeTo base: String) -> String {
    let joined = path.hasPrefix("/") ? path : base + "/" + path
    return (joined as NSString).standardizingPath
  }

  /// The user ids that have a `user_<id>.session` file, sorted.
  /// - Throws: `StoreError.io` when the sessions directory cannot be read (a missing one yields []).
  public func sessionFileUserIDs() throws -> [Int64] {
    try FileSystem.directoryNames(sessionsDirectory).compactMap(Deployment.userID(fromSessionFileName:)).sorted()
  }

  /// Up to `limit` user ids that have a `user_<id>.session` file, in directory order: a sample
  /// of the fleet that reads a few directory entries, not all of them.
  /// - Throws: `StoreError.io` when the sessions directory cannot be read (a missing one yields []).
  public func sessionFileUserIDs(sample limit: Int) throws -> [Int64] {
    try FileSystem.directoryNames(sessionsDirectory, limit: limit) { Deployment.userID(fromSessionFileName: $0) != nil }
      .compactMap(Deployment.userID(fromSessionFileName:))
  }

  /// The user id in `user_<id>.session`, or nil for any other name.
  public static func userID(fromSessionFileName name: String) -> Int64? {
    guard name.hasPrefix("user_"), name.hasSuffix(".session") else { return nil }
    let digits = name.dropFirst("user_".count).dropLast(".session".count)
    guard !digits.isEmpty, digits.allSatisfy(\.isNumber) else { return nil }
    return Int64(digits)
  }
}

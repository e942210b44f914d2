import Foundation
import TOMLKit

/// The operator's configuration file (`tgsess.toml`). Every key is optional; flags override it.
/// Unknown keys are an error, so a typo never silently falls back to a default.
public struct Config: Codable, Sendable, Equatable {
  /// Deployment root; relative paths below resolve against it.
  public var root: String?
  /// The bot's SQLite database (default `data/telegram_bot.db`).
  public var database: String?
  /// Directory of `user_<id>.session` files (default `sessions`).
  public var sessionsDir: String?
  /// Directory of archives (default `backups`).
  public var backupsDir: String?
  /// Directory of keys (default `keys`).
  public var keysDir: String?
  /// Extra age recipients (`age1…`) every archive is encrypted to, beside `keys/age-recipients.txt`.
  public var ageRecipients: [String]?
  /// The age identity file that decrypts archives (default `keys/age-identity.txt`); may live off the host.
  public var ageIdentityFile: String?
  /// The Fernet key file, newest key first (default `keys/fernet.keys`).
  public var fernetKeysFile: String?
  /// How long to wait for a locked bot database, in milliseconds (default 5000).
  public var busyTimeoutMS: Int?
  /// Backup settings.
  public var backup: BackupSection?
  /// Retention settings.
  public var prune: PruneSection?
  /// Health-check settings.
  public var check: CheckSection?
  /// The deployment's name on shared remotes (default: the host name).
  public var deploymentName: String?
  /// Offsite copies: `[[remotes]]` tables.
  public var remotes: [RemoteSection]?
  /// Bot runner (`tgsess-bot`) settings.
  public var bot: BotSection?
  /// `tgsess watch` settings.
  public var watch: WatchSection?

  public init() {}

  /// `[backup]`.
  public struct BackupSection: Codable, Sendable, Equatable {
    /// Encrypt archives with age (default true).
    public var encrypt: Bool?
    /// zstd level 1–19 (default 3).
    public var zstdLevel: Int?
    /// Seconds to wait for the deployment lock (default 0).
    public var lockWait: Int?

    enum CodingKeys: String, CodingKey {
      case encrypt
      case zstdLevel = "zstd_level"
      case lockWait = "lock_wait"
    }
  }

  /// `[prune]`.
  public struct PruneSection: Codable, Sendable, Equatable {
    public var keepPerUser: Int?
    public var keepLast: Int?
    public var keepHourly: Int?
    public var keepDaily: Int?
    public var keepWeekly: Int?
    public var keepMonthly: Int?
    public var keepYearly: Int?
    /// Time zone for calendar buckets (default UTC), e.g. "Europe/Berlin".
    public var timezone: String?

    enum CodingKeys: String, CodingKey {
      case keepPerUser = "keep_per_user"
      case keepLast = "keep_last"
      case keepHourly = "keep_hourly"
      case keepDaily = "keep_daily"
      case keepWeekly = "keep_weekly"
      case keepMonthly = "keep_monthly"
      case keepYearly = "keep_yearly"
      case timezone
    }
  }

  /// `[check]`.
  public struct CheckSection: Codable, Sendable, Equatable {
    /// Maximum age of the newest full snapshot, in seconds (default 7200).
    public var maxAgeSeconds: Int?
    /// Warn below this much free space on backups/, in MiB (default 1024).
    public var minFreeMiB: Int?
    /// systemd unit of the bot, checked by restore's live-owner guard.
    public var botUnit: String?

    enum CodingKeys: String, CodingKey {
      case maxAgeSeconds = "max_age_seconds"
      case minFreeMiB = "min_free_mib"
      case botUnit = "bot_unit"
    }
  }

  /// `[[remotes]]`: an rclone remote path archives are copied to after each backup.
  public struct RemoteSection: Codable, Sendable, Equatable {
    /// The name used by `--remote NAME`.
    public var name: String
    /// An rclone remote path (`s3remote:bucket/tgsess`, `/mnt/usb/tgsess`).
    public var path: String
    /// An rclone.conf (default: rclone's own, or `RCLONE_CONFIG_*` variables).
    public var rcloneConfig: String?

    public init(name: String, path: String, rcloneConfig: String? = nil) {
      self.name = name
      self.path = path
      self.rcloneConfig = rcloneConfig
    }

    enum CodingKeys: String, CodingKey {
      case name, path
      case rcloneConfig = "rclone_config"
    }
  }

  /// `[bot]`: the bot runner `tgsess-bot`. The token itself never sits in this file: it is read from
  /// `token_file` (or `--token-file`, `TGSESS_BOT_TOKEN_FILE`, `TGSESS_BOT_TOKEN`).
  public struct BotSection: Codable, Sendable, Equatable {
    /// Telegram user ids allowed to run the admin commands `/backup` and `/check` and told about
    /// sessions the monitor finds critical (default none).
    public var adminIDs: [Int64]?
    /// A file holding the bot token (mode 0600), e.g. `/etc/tgsess/bot-token`.
    public var tokenFile: String?
    /// The Bot API server (default `https://api.telegram.org`; a local server is `http://127.0.0.1:8081`).
    public var apiBaseURL: String?
    /// Seconds between the monitor's health checks (default 300).
    public var monitorIntervalSeconds: Int?
    /// The long-poll timeout of `getUpdates`, 1–50 seconds (default 50).
    public var pollTimeoutSeconds: Int?

    public init(
      adminIDs: [Int64]? = nil, tokenFile: String? = nil, apiBaseURL: String? = nil, monitorIntervalSeconds: Int? = nil,
      pollTimeoutSeconds: Int? = nil
    ) {
      self.adminIDs = adminIDs
      self.tokenFile = tokenFile
      self.apiBaseURL = apiBaseURL
      self.monitorIntervalSeconds = monitorIntervalSeconds
      self.pollTimeoutSeconds = pollTimeoutSeconds
    }

    enum CodingKeys: String, CodingKey {
      case adminIDs = "admin_ids"
      case tokenFile = "token_file"
      case apiBaseURL = "api_base_url"
      case monitorIntervalSeconds = "monitor_interval_seconds"
      case pollTimeoutSeconds = "poll_timeout_seconds"
    }
  }

  /// `[watch]`: the `tgsess watch` daemon.
  public struct WatchSection: Codable, Sendable, Equatable {
    /// Whether watch is meant to run here (`check` then warns when its textfile goes stale).
    public var enabled: Bool?
    /// The node_exporter textfile watch keeps current (`tgsess_watch.prom`).
    public var prometheus: String?
    /// Quiet time after a user's last change before it is judged, in milliseconds (default 500).
    public var debounceMS: Int?
    /// The longest a change waits while its files keep changing, in milliseconds (default 2000).
    public var maxDelayMS: Int?
    /// Seconds between refreshes of the textfile and pings while nothing happens (default 30).
    public var heartbeatSeconds: Int?
    /// Copy each new archive to every configured remote (default true).
    public var push: Bool?

    public init(
      enabled: Bool? = nil, prometheus: String? = nil, debounceMS: Int? = nil, maxDelayMS: Int? = nil,
      heartbeatSeconds: Int? = nil, push: Bool? = nil
    ) {
      self.enabled = enabled
      self.prometheus = prometheus
      self.debounceMS = debounceMS
      self.maxDelayMS = maxDelayMS
      self.heartbeatSeconds = heartbeatSeconds
      self.push = push
    }

    enum CodingKeys: String, CodingKey {
      case enabled, prometheus, push
      case debounceMS = "debounce_ms"
      case maxDelayMS = "max_delay_ms"
      case heartbeatSeconds = "heartbeat_seconds"
    }
  }

  enum CodingKeys: String, CodingKey {
    case root
    case database
    case sessionsDir = "sessions_dir"
    case backupsDir = "backups_dir"
    case keysDir = "keys_dir"
    case ageRecipients = "age_recipients"
    case ageIdentityFile = "age_identity_file"
    case fernetKeysFile = "fernet_keys_file"
    case busyTimeoutMS = "busy_timeout_ms"
    case deploymentName = "deployment_name"
    case remotes
    case backup, prune, check, bot, watch
  }

  /// Parses TOML text; `path` names the file in errors.
  /// - Throws: `StoreError.config` with the line and column, or the unknown keys.
  public static func parse(_ text: String, path: String) throws -> Config {
    var decoder = TOMLDecoder()
    decoder.strictDecoding = true
    do {
      return try decoder.decode(Config.self, from: text)
    } catch let error as TOMLParseError {
      throw StoreError.config(path: path, reason: "TOML syntax error at \(error.source.begin.debugDescription)")
    } catch let error as UnexpectedKeysError {
      let keys = error.keys.keys.sorted().joined(separator: ", ")
      throw StoreError.config(path: path, reason: "unknown key(s): \(keys)")
    } catch let error as DecodingError {
      throw StoreError.config(path: path, reason: describe(error))
    } catch {
      throw StoreError.config(path: path, reason: "\(error)")
    }
  }

  /// Loads the file at `path`.
  /// - Throws: `StoreError.missing` when it does not exist, `StoreError.config` when it is wrong.
  public static func load(path: String) throws -> Config {
    let data = try FileSystem.read(path)
    guard let text = String(data: data, encoding: .utf8) else {
      throw StoreError.config(path: path, reason: "not UTF-8 text")
    }
    return try parse(text, path: path)
  }

  private static func describe(_ error: DecodingError) -> String {
    func keyPath(_ path: [CodingKey]) -> String { path.map(\.stringValue).joined(separator: ".") }
    switch error {
    case .typeMismatch(let type, let context):
      return "key '\(keyPath(context.codingPath))' must be \(type)"
    case .valueNotFound(let type, let context):
      return "key '\(keyPath(context.codingPath))' needs a \(type) value"
    case .keyNotFound(let key, let context):
      let path =
        context.codingPath.last?.stringValue == key.stringValue ? context.codingPath : context.codingPath + [key]
      return "key '\(keyPath(path))' is missing or has the wrong type"
    case .dataCorrupted(let context):
      return "bad value at '\(keyPath(context.codingPath))'"
    @unknown default:
      return "invalid configuration"
    }
  }
}

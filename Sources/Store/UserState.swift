import Foundation

/// A user's lifecycle, as `user_sessions.status` stores it.
public enum UserStatus: String, Codable, Sendable, CaseIterable {
  /// The default: the user is logged in (or was never judged otherwise).
  case active
  /// The user ended the session with /logout; nothing brings it back by itself.
  case loggedOut = "logged_out"
  /// A confirmed fatal error (AUTH_KEY_UNREGISTERED and the like): the user must log in again.
  case revoked
  /// The session was handed over to another host (`tgsess handover`): neither recover nor the bot
  /// brings it back here, since the same key on two hosts gets it revoked.
  case handedOver = "handed_over"

  /// Whether the session ended on this host on purpose (logged out or handed over), so nothing of
  /// it is expected here and nothing brings it back by itself.
  public var hasEndedHere: Bool { self == .loggedOut || self == .handedOver }

  /// The status a column value stands for: a missing or unknown value reads as `active`, the
  /// column's default (a legacy database has no status column at all).
  public init(column value: String?) {
    self = value.flatMap(UserStatus.init(rawValue:)) ?? .active
  }
}

/// A verdict, in Nagios order: a check's, a user's, a deployment's.
public enum HealthState: String, Codable, Sendable, Comparable, CaseIterable {
  case ok, warning, critical, unknown

  /// The state a `user_sessions.health` value stands for (`unknown` when missing or unknown).
  public init(column value: String?) {
    self = value.flatMap(HealthState.init(rawValue:)) ?? .unknown
  }

  /// Nagios's exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
  public var exitCode: Int32 {
    switch self {
    case .ok: return 0
    case .warning: return 1
    case .critical: return 2
    case .unknown: return 3
    }
  }

  private var rank: Int {
    switch self {
    case .ok: return 0
    case .warning: return 1
    case .unknown: return 2
    case .critical: return 3
    }
  }

  public static func < (lhs: HealthState, rhs: HealthState) -> Bool { lhs.rank < rhs.rank }
}

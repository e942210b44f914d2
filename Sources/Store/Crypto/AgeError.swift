import Foundation

/// Why an age operation failed. `kind` is the class the age test kit distinguishes; `reason`
/// is a short, secret-free description of the exact check that failed.
public struct AgeError: Error, Equatable, Sendable, LocalizedError {
  /// The class of failure.
  public enum Kind: String, Sendable, CaseIterable {
    /// The file is not a well-formed age v1 binary file (including a missing payload nonce).
    case header
    /// The header is fine but no given identity unwraps the file key.
    case noMatch
    /// The file key unwrapped but the header MAC does not verify: the header was altered.
    case hmac
    /// The encrypted payload is truncated, altered, or has trailing data.
    case payload
    /// An identity or recipient string, or the set of them, is not usable.
    case key
  }

  /// The class of failure.
  public let kind: Kind
  /// What was being read or written: an archive path, or a key's role.
  public let object: String
  /// The failed check, without key or plaintext material.
  public let reason: String

  /// An error of `kind` about `object`.
  public init(_ kind: Kind, object: String, reason: String) {
    self.kind = kind
    self.object = object
    self.reason = reason
  }

  /// The next step for the operator.
  public var hint: String {
    switch kind {
    case .header:
      return "this is not an age v1 binary file or its header is corrupted: check the path, or use another backup"
    case .noMatch:
      return "wrong or missing identity: pass the identity that matches one of the archive's recipients"
    case .hmac:
      return "the archive header was altered or is corrupted: use another backup"
    case .payload:
      return "the archive is truncated or corrupted: use another backup"
    case .key:
      return
        "check the key: identities look like AGE-SECRET-KEY-1..., recipients like age1... (age-keygen -y KEYFILE prints the recipient)"
    }
  }

  public var errorDescription: String? { "\(object): \(reason); \(hint)" }

  /// The same failure as a `StoreError`: `.key` for key problems, `.crypto` for everything else.
  public var storeError: StoreError {
    switch kind {
    case .key: return .key(path: object, reason: reason, hint: hint)
    default: return .crypto(object: object, reason: reason, hint: hint)
    }
  }
}

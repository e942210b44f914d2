import Foundation

/// The JSON file that multi-account farms keep beside a session file: `user_<id>.json` next to
/// `user_<id>.session`, holding the account's app id and hash, device model, system and app
/// version, language, phone and 2FA fields (the opentele and TGConvertor conventions). The
/// session and its sidecar are one unit: backed up, restored and recovered together, both or
/// neither.
///
/// tgsess reads the file only to check that it is a JSON object; it never prints a value from
/// it. Its secrets (`app_hash`/`api_hash`, the 2FA password) follow the rules of every other
/// secret: never in a log, an error or `--json`.
public struct SessionSidecar: Sendable, Equatable {
  /// The largest sidecar read (a guard against a hostile or runaway file; real ones are < 2 KiB).
  public static let maximumByteCount: Int64 = 1 << 20
  /// What follows `user_<id>` in a sidecar's name.
  public static let suffix = ".json"

  /// The file's bytes, exactly as read (what an archive holds).
  public var bytes: Data
  /// The keys of the JSON object (names only, never values), sorted.
  public var keys: [String]

  /// The keys that hold secrets in the conventions tgsess knows: never shown, only named.
  public static let secretKeys: Set<String> = [
    "app_hash", "api_hash", "twoFA", "twofa", "two_fa", "2fa", "password", "2fa_password", "session_string",
    "string_session",
  ]

  /// Reads and checks the sidecar at `path`.
  /// - Throws: `StoreError.invalid` naming the file when it is larger than `maximumByteCount`,
  ///   not UTF-8 JSON, or not a JSON object (the reason never quotes the content: it may hold a
  ///   password); `StoreError.io` when it cannot be read.
  public static func read(path: String) throws -> SessionSidecar {
    let size = try FileSystem.size(of: path)
    guard size <= maximumByteCount else {
      throw StoreError.invalid(
        path: path, reason: "session sidecar is \(size) bytes, more than the \(maximumByteCount) a sidecar may have",
        hint: "replace it with the account's JSON (app id, device, 2FA fields)")
    }
    return try parse(try FileSystem.read(path), path: path)
  }

  /// Checks sidecar `bytes` that came from `path` (a file, or an archive entry).
  /// - Throws: `StoreError.invalid` naming `path` when the bytes are not a JSON object.
  public static func parse(_ bytes: Data, path: String) throws -> SessionSidecar {
    let object: Any
    do { object = try JSONSerialization.jsonObject(with: bytes, options: [.fragmentsAllowed]) } catch {
      // JSONSerialization's message may quote the text around the fault: leave it out.
      throw StoreError.invalid(
        path: path, reason: "session sidecar is not valid JSON",
        hint: "fix or replace the JSON beside the session file (tgsess restore --user ID brings back the pair)")
    }
    guard let dictionary = object as? [String: Any] else {
      throw StoreError.invalid(
        path: path, reason: "session sidecar is JSON but not an object",
        hint: "fix or replace the JSON beside the session file (tgsess restore --user ID brings back the pair)")
    }
    return SessionSidecar(bytes: bytes, keys: dictionary.keys.sorted())
  }

  /// Every string value under a secret key, at any depth (for tests and secret scans).
  public static func secretValues(in bytes: Data) -> [String] {
    guard let object = try? JSONSerialization.jsonObject(with: bytes) else { return [] }
    var found: [String] = []
    func walk(_ value: Any, key: String?) {
      if let dictionary = value as? [String: Any] {
        for (name, inner) in dictionary { walk(inner, key: name) }
      } else if let array = value as? [Any] {
        for inner in array { walk(inner, key: key) }
      } else if let key, secretKeys.contains(key), let text = value as? String, !text.isEmpty {
        found.append(text)
      }
    }
    walk(object, key: nil)
    return found
  }
}

extension Deployment {
  /// The JSON sidecar of `userID`'s session file (`user_<id>.json` beside `user_<id>.session`).
  public func sidecarPath(userID: Int64) -> String {
    sessionsDirectory + "/user_\(userID)" + SessionSidecar.suffix
  }
}

import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// Whether a directory that `restore --target` writes into is one a bot could use, which is when
/// restore's cross-host guard applies to it (README, "Many hosts, one fleet"). A bot reads
/// session files from a deployment: its own sessions directory, and farm tools that scan a tree
/// for `*.session` files. So a target is bot-usable when, after symlinks are resolved, it lies
/// - inside this deployment: its root, its sessions directory or its database's directory;
/// - inside another deployment on this machine: a directory above it (or the target itself)
///   holds a `tgsess.toml` or a `data/telegram_bot.db`;
/// - directly inside a directory that holds session files (`*.session`: a farm's accounts
///   directory, which its tools scan).
/// Anywhere else (a scratch directory for a drill copy or an inspection) it is not: no bot reads
/// it unless someone starts one there.
public enum TargetScope {
  /// Why `target` is a place a bot could use, in words (`this deployment's sessions directory
  /// /srv/bot/sessions`); nil when it is not.
  public static func botUse(of target: String, deployment: Deployment) -> String? {
    let path = canonical(target)
    let own: [(String, String)] = [
      ("this deployment's sessions directory", deployment.sessionsDirectory),
      ("this deployment's database directory", FileSystem.parentDirectory(of: deployment.databasePath)),
      ("this deployment", deployment.root),
    ]
    for (what, directory) in own where isInside(path, canonical(directory)) {
      return "\(what) \(directory)"
    }
    let parent = parentDirectory(path)
    if let names = try? FileSystem.directoryNames(parent), names.contains(where: { $0.hasSuffix(".session") }) {
      return "\(parent), which holds session files"
    }
    var directory = path
    while true {
      if FileSystem.exists(directory + "/tgsess.toml") || FileSystem.exists(directory + "/data/telegram_bot.db") {
        return "the deployment at \(directory)"
      }
      guard directory != "/" else { return nil }
      directory = parentDirectory(directory)
    }
  }

  /// The directory above `path` ("/" above a top-level name and above "/").
  static func parentDirectory(_ path: String) -> String {
    let parent = FileSystem.parentDirectory(of: path)
    return parent.isEmpty ? "/" : parent
  }

  /// Whether `path` is `directory` or lies below it (both canonical).
  static func isInside(_ path: String, _ directory: String) -> Bool {
    path == directory || directory == "/" || path.hasPrefix(directory + "/")
  }

  /// `path` made absolute with `.`/`..` folded and the symlinks of its existing part resolved
  /// (a target restore may still create).
  static func canonical(_ path: String) -> String {
    var existing = Deployment.absolute(path, relativeTo: FileSystem.currentDirectory)
    var rest: [String] = []
    while !FileSystem.exists(existing), existing != "/" {
      rest.insert((existing as NSString).lastPathComponent, at: 0)
      existing = parentDirectory(existing)
    }
    var base = existing
    if let resolved = realpath(existing, nil) {
      base = String(cString: resolved)
      free(resolved)
    }
    guard !rest.isEmpty else { return base }
    return (base == "/" ? "" : base) + rest.map { "/" + $0 }.joined()
  }
}

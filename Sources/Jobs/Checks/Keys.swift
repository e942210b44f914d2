import Foundation
import Store

/// Where the Fernet keys come from, looked up the way `KeyStore.loadFernet` looks for them.
public enum FernetKeySource: Sendable, Equatable, CustomStringConvertible {
  /// `$TGSESS_FERNET_KEYS`.
  case environment
  /// A key file: the deployment's `keys/fernet.keys`, or the one `$TGSESS_FERNET_KEYS_FILE` names.
  case file(String)

  public static func resolve(
    _ deployment: Deployment, environment: [String: String] = ProcessInfo.processInfo.environment
  ) -> FernetKeySource {
    if let value = environment[KeyStore.fernetEnvironmentVariable], !value.trimmingCharacters(in: .whitespaces).isEmpty
    {
      return .environment
    }
    return .file(
      environment[KeyStore.fernetFileEnvironmentVariable].flatMap { $0.isEmpty ? nil : $0 } ?? deployment.fernetKeysPath
    )
  }

  public var description: String {
    switch self {
    case .environment: return "$\(KeyStore.fernetEnvironmentVariable)"
    case .file(let path): return path
    }
  }

  /// Why no key was found there, for a deployment that needs one.
  public var missingReason: String {
    switch self {
    case .environment: return "$\(KeyStore.fernetEnvironmentVariable) holds no key"
    case .file(let path): return "\(path) does not exist and $\(KeyStore.fernetEnvironmentVariable) is not set"
    }
  }

  /// What brings the keys back: they cannot be made again, only restored from their copy.
  public var missingRemedy: String {
    switch self {
    case .environment: return "set $\(KeyStore.fernetEnvironmentVariable) to the keys the secrets were encrypted with"
    case .file(let path):
      return "restore \(path) (mode 0600) from its off-host copy, or set $\(KeyStore.fernetEnvironmentVariable)"
    }
  }
}

/// The keys, judged once for the whole deployment: the Fernet keys load (and exist when the
/// database holds encrypted secrets), key files are private, an age recipient is configured, the
/// archive signing key and its key ring load (present, private, in agreement), and the age
/// identity, when it is on this host, opens the newest signed archive.
public enum KeysCheck {
  public static func findings(_ context: CheckContext) -> [CheckFinding] {
    var findings: [CheckFinding] = []
    // One cause, one finding: a key file with a bad mode fails both its load and its mode check.
    func add(_ finding: CheckFinding) {
      if !findings.contains(finding) { findings.append(finding) }
    }
    switch context.fernet {
    case .failure(let error):
      add(CheckFinding(.keys, .critical, error: error))
    case .success(nil):
      // A missing key is a fact about the deployment, reported once; never a verdict on each user.
      let encrypted = context.rows.filter { $0.sessionString.map { Fernet.looksLikeToken($0.value) } ?? false }.count
      if encrypted > 0 {
        add(
          CheckFinding(
            .keys, .critical,
            "no Fernet key: \(context.fernetSource.missingReason), so the \(encrypted) encrypted session string(s) in the database cannot be read",
            remedy: context.fernetSource.missingRemedy))
      }
    case .success:
      break
    }
    for path in [context.deployment.fernetKeysPath, context.deployment.ageIdentityPath] where FileSystem.exists(path) {
      do { try FileSystem.requirePrivate(path) } catch {
        add(CheckFinding(.keys, .critical, error: StoreError.wrapping(error, path: path)))
      }
    }
    switch context.recipients {
    case .failure(let error):
      add(CheckFinding(.keys, .critical, error: error))
    case .success(let recipients) where recipients.isEmpty:
      add(
        CheckFinding(
          .keys, .warning, "no age recipient configured; encrypted backups are impossible", remedy: "run: tgsess init"))
    case .success:
      break
    }
    // Without the signing key no backup can be written; without the ring no archive verifies.
    if case .failure(let error) = context.signing {
      add(CheckFinding(.keys, .critical, error: error))
    }
    if case .failure(let error) = context.signingKey {
      add(CheckFinding(.keys, .critical, error: error))
    }
    switch context.identities {
    case .failure(let error)?:
      add(CheckFinding(.keys, .critical, error: error))
    case .success(let identities)?:
      guard let newest = context.signedArchives.first(where: \.isEncrypted) else { break }
      let repository = ArchiveRepository(backupsDirectory: context.deployment.backupsDirectory)
      do { try AgeHeaderCheck.opens(path: repository.path(of: newest), identities: identities) } catch {
        let text = (error as? StoreError)?.errorDescription ?? "\(error)"
        add(CheckFinding(.keys, .critical, "the age identity does not open the newest archive: \(text)"))
      }
    case nil:
      // Kept off the host, as the README advises: nothing to judge here.
      break
    }
    return findings
  }
}

import Store

/// Key management entry points for the CLI.
public enum KeysJob {
  /// Prepends a new Fernet key; returns its fingerprint.
  /// - Throws: `JobError.store`.
  public static func addFernetKey(_ deployment: Deployment) throws -> String {
    do { return try KeyStore.addFernetKey(deployment) } catch let error as StoreError {
      throw JobError.store(context: "keys add-fernet", underlying: error)
    }
  }
}

import ArgumentParser
import Foundation
import Jobs

struct Init: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "init",
    abstract: "Create a deployment's directories and keys, and bring its database to the current schema.",
    discussion: """
      Creates data/, sessions/, backups/ and keys/ (mode 0700), an age identity with its \
      recipient, an archive signing key (keys/signing.key) with its public key ring \
      (keys/signing.pub) and a Fernet key (mode 0600), and then migrates the database: the keys \
      come first, so the migration's safety copy is an encrypted archive from the very first \
      run. Idempotent: nothing that exists is overwritten, and a key is never replaced. On a \
      deployment made before archives were signed, running it again adds the signing key; when \
      keys/signing.pub exists (a copy from escrow on a new host), the new key is added first and \
      the old ones keep verifying.

      Keep a copy of keys/age-identity.txt, keys/fernet.keys and keys/signing.pub off this host \
      (archives are useless without the identity, and untrusted without the signing public \
      keys), and check the copies with tgsess keys verify-escrow.

        $ tgsess init --root /srv/bot
        $ TGSESS_FERNET_KEYS=... tgsess init     # the bot already has a Fernet key
        $ tgsess init --lock-wait 600

      EXIT STATUS: 0 ok · 1 failed · 64 usage · 75 lock held
      """)

  @OptionGroup var global: GlobalOptions
  @Option(help: "Seconds to wait for the deployment lock.") var lockWait = 0

  func validate() throws {
    if lockWait < 0 { throw ValidationError("--lock-wait must be 0 or more seconds. Try: --lock-wait 600") }
  }

  func run() throws {
    let (deployment, logger) = try global.setUp()
    let result = try InitJob.run(deployment, options: InitOptions(lockWait: TimeInterval(lockWait)), logger: logger)
    if global.json { return try Output.json(result) }
    Output.line("deployment \(result.root)")
    for directory in result.directoriesCreated { Output.line("  created \(directory)/") }
    if result.keys.ageIdentity {
      Output.line("  created age identity \(deployment.ageIdentityPath) (copy it off this host)")
    }
    if result.keys.fernetKeys { Output.line("  created Fernet key file \(deployment.fernetKeysPath)") }
    if result.keys.signingKey { Output.line("  created archive signing key \(deployment.signingKeyPath)") }
    if result.keys.signingPublicKeys {
      Output.line("  added key \(result.signingKeyID) to \(deployment.signingPublicKeysPath) (copy it off this host)")
    }
    Output.line("  archives are signed with key \(result.signingKeyID)")
    for recipient in result.recipients { Output.line("  archives encrypt to \(recipient)") }
    Migrate.render(result.migrate)
  }
}

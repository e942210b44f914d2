import ArgumentParser
import Jobs
import Store

struct Keys: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Manage the deployment's keys.",
    subcommands: [AddFernet.self, RotateSigning.self])

  struct AddFernet: ParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "add-fernet",
      abstract: "Put a new Fernet key first in keys/fernet.keys; older keys keep decrypting.",
      discussion: """
        Then run `tgsess migrate --rotate-key` to re-encrypt every secret under the new key. Only \
        remove an old key after that.

          $ tgsess keys add-fernet && tgsess migrate --rotate-key

        EXIT STATUS: 0 ok · 1 failed
        """)

    @OptionGroup var global: GlobalOptions

    func run() throws {
      let (deployment, _) = try global.setUp()
      let fingerprint = try KeysJob.addFernetKey(deployment)
      Output.line("added Fernet key \(fingerprint) first in \(deployment.fernetKeysPath)")
      Output.line("next: tgsess migrate --rotate-key")
    }
  }

  struct RotateSigning: ParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "rotate-signing",
      abstract: "Make a new archive signing key current; the old public key keeps verifying.",
      discussion: """
        Writes a new Ed25519 key to keys/signing.key and puts its public key first in \
        keys/signing.pub. The old public key stays in keys/signing.pub, so archives it signed \
        still verify; its private key is gone. Put the new keys/signing.pub into escrow with \
        the age identity: a restore on a new host verifies archives with that copy.

          $ tgsess keys rotate-signing
          $ tgsess keys rotate-signing --json

        EXIT STATUS: 0 ok · 1 failed · 75 lock held
        """)

    @OptionGroup var global: GlobalOptions

    func run() throws {
      let (deployment, _) = try global.setUp()
      let rotation = try KeysJob.rotateSigningKey(deployment)
      if global.json { return try Output.json(rotation) }
      Output.line("signing key \(rotation.newKeyID) is current (was \(rotation.oldKeyID))")
      Output.line("\(rotation.ringPath) verifies with \(rotation.ringKeyIDs.joined(separator: ", ")) (newest first)")
      Output.line("next: copy \(rotation.ringPath) into escrow with the age identity")
    }
  }
}

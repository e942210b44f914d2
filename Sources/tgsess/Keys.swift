import ArgumentParser
import Jobs
import Store

struct Keys: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Manage the deployment's keys.",
    subcommands: [AddFernet.self])

  struct AddFernet: ParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "add-fernet",
      abstract: "Put a new Fernet key first in keys/fernet.keys; older keys keep decrypting.",
      discussion: """
        Then run `tgsess migrate --rotate-key` to re-encrypt every secret under the new key. Only
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
}

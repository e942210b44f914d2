import ArgumentParser
import Foundation
import Jobs
import Store

struct Keys: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "keys",
    abstract: "Manage the deployment's keys.",
    subcommands: [AddFernet.self, RotateSigning.self, SignExisting.self, VerifyEscrow.self, Usage.self])

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

  struct SignExisting: ParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "sign-existing",
      abstract: "Vouch once for the archives made before archives were signed.",
      discussion: """
        Reads every archive that has no signature file back in full (decrypted with the age \
        identity, every entry's SHA-256 checked against the manifest, the manifest describing \
        the archive's name and place) and only then signs it with keys/signing.key. An archive \
        that fails is never signed and is named; archives already signed are left alone. It \
        needs the age identity (keys/age-identity.txt or --identity FILE) and refuses without it.

        Run it once, right after upgrading (`tgsess init`, then this), before anyone else could \
        have written to backups/: it vouches that this host made these archives, which only this \
        host can know. Do not run it after a suspected compromise, nor on archives fetched from \
        a shared bucket: a planted archive would pass every check it makes and become trusted. \
        Restore such archives with --allow-unsigned instead, after checking them by hand \
        (docs/ARCHIVE-FORMAT.md).

          $ tgsess keys sign-existing --dry-run
          $ tgsess keys sign-existing --identity /escrow/age-identity.txt

        EXIT STATUS: 0 ok · 1 failed · 3 partial (some archives failed and were not signed, each named) · 75 lock held
        """)

    @OptionGroup var global: GlobalOptions
    @Option(help: "The age identity file (default: keys/age-identity.txt).") var identity: String?
    @Flag(help: "Re-verify every unsigned archive and sign nothing.") var dryRun = false
    @Option(help: "Seconds to wait for the deployment lock.") var lockWait = 0

    func run() throws {
      let (deployment, _) = try global.setUp()
      let result = try KeysJob.signExisting(
        deployment,
        options: SignExistingOptions(identityPath: identity, isDryRun: dryRun, lockWait: TimeInterval(lockWait)))
      if global.json {
        try Output.json(result)
      } else {
        let verb = result.isDryRun ? "would sign" : "signed"
        for id in result.signed { Output.line("\(verb) \(id)") }
        for failure in result.failed { Output.line("NOT SIGNED \(failure.path): \(failure.reason)") }
        Output.line(
          "\(verb) \(result.signed.count) archive(s) with key \(result.keyID), \(result.failed.count) failed (not signed), \(result.alreadySigned) already signed"
        )
      }
      if result.isPartial { throw ExitCode(ExitStatus.partial) }
    }
  }

  struct VerifyEscrow: ParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "verify-escrow",
      abstract: "Check escrowed key copies against this deployment, reading only.",
      discussion: """
        Checks that the escrowed age identity holds the identity of every recipient in \
        keys/age-recipients.txt and opens the newest archive signed by this deployment's key (its \
        header and first chunk); with --fernet-keys, that the escrowed Fernet keys decrypt every \
        secret in the database and \
        hold the current key; with --verify-key, that the escrowed signing.pub holds every key \
        of keys/signing.pub. Each line says ok, FAILED (with what to do) or skipped. Run it right \
        after escrowing and after every key rotation, with the copies as they are in escrow.

          $ tgsess keys verify-escrow --identity /media/escrow/age-identity.txt
          $ tgsess keys verify-escrow --identity /run/tgsess-identity.txt \\
              --fernet-keys /media/escrow/fernet.keys --verify-key /media/escrow/signing.pub

        EXIT STATUS: 0 every check passed or was skipped · 1 a check failed or a copy cannot be read · 64 usage
        """)

    @OptionGroup var global: GlobalOptions
    @Option(help: "The escrowed age identity file (mode 0600).") var identity: String
    @Option(help: "The escrowed copy of keys/fernet.keys (mode 0600).") var fernetKeys: String?
    @Option(help: "The escrowed copy of keys/signing.pub.") var verifyKey: String?

    func run() throws {
      let (deployment, _) = try global.setUp()
      let report = try EscrowJob.verify(
        deployment, options: EscrowOptions(identityPath: identity, fernetKeysPath: fernetKeys, verifyKeyPath: verifyKey)
      )
      if global.json {
        try Output.json(report)
      } else {
        for finding in report.findings {
          let word = finding.status == .failed ? "FAILED" : finding.status.rawValue
          Output.line(
            "\(word.padding(toLength: 7, withPad: " ", startingAt: 0)) \(finding.item.rawValue): \(finding.detail)")
        }
        Output.line(report.isOK ? "escrow: ok" : "escrow: FAILED; fix the copies named above, then run this again")
      }
      if !report.isOK { throw ExitCode(ExitStatus.failed) }
    }
  }

  struct Usage: ParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "usage",
      abstract: "Say which age identities and Fernet keys the archives and the database still need.",
      discussion: """
        Reads the archive records and the live database, never decrypting. For each age \
        recipient (current, or retired but named by an archive): how many archives it opens, how \
        many only a retired identity opens, and whether its identity may be dropped. For each \
        Fernet key in keys/fernet.keys: the live secrets and the archives whose secrets are under \
        it, and whether the key line may be removed. Archives written before tgsess recorded \
        their keys count as "not known", and no key is droppable while one is left (re-archive \
        with tgsess backup --rearchive, then prune).

          $ tgsess keys usage
          $ tgsess keys usage --json

        EXIT STATUS: 0 ok · 1 failed
        """)

    @OptionGroup var global: GlobalOptions

    func run() throws {
      let (deployment, _) = try global.setUp()
      let usage = try KeysJob.usage(deployment)
      if global.json { return try Output.json(usage) }
      Self.render(usage).forEach { Output.line($0) }
    }

    static func render(_ usage: KeyUsage) -> [String] {
      var lines: [String] = []
      for use in usage.recipients {
        let state = use.isCurrent ? "current" : "retired"
        var line = "age \(use.recipient) (\(state)): \(use.archives) archive(s)"
        if !use.isCurrent {
          line +=
            use.isDroppable
            ? "; no archive needs its identity any more: it may be dropped from escrow"
            : "; \(use.archivesOnlyRetired) archive(s) open only with a retired identity: keep it"
        }
        lines.append(line)
      }
      if usage.archivesUnknownRecipients > 0 {
        lines.append(
          "age: \(usage.archivesUnknownRecipients) archive(s) do not record their recipients (older records): keep every old identity until they are pruned"
        )
      }
      guard usage.hasFernetKeys else {
        lines.append("fernet: no key configured (keys/fernet.keys or TGSESS_FERNET_KEYS)")
        return lines
      }
      for key in usage.fernetKeys {
        let role = key.position == 1 ? "newest, encrypts" : "#\(key.position)"
        var line =
          "fernet \(key.fingerprint) (\(role)): \(key.liveSecrets) live secret(s), \(key.archives) archive(s)"
        if let newest = key.newestArchiveID { line += " (newest \(newest))" }
        if key.position > 1 {
          line += key.isDroppable ? "; nothing needs it: its line may be removed" : "; keep it"
        }
        lines.append(line)
      }
      if usage.archivesUnknownFernetKeys > 0 {
        lines.append(
          "fernet: \(usage.archivesUnknownFernetKeys) archive(s) do not record their Fernet keys (older records, or written without a key): keep every old key until they are pruned"
        )
      }
      if usage.archivesUnopenedFernetTokens > 0 {
        lines.append(
          "fernet: \(usage.archivesUnopenedFernetTokens) archive(s) hold a token no configured key opened when written: keep every old key"
        )
      }
      if usage.liveSecretsUnopened > 0 {
        lines.append(
          "fernet: \(usage.liveSecretsUnopened) live secret(s) no configured key opens (see tgsess status, tgsess migrate)"
        )
      }
      return lines
    }
  }
}

import Store

/// How restore and recover word a refusal of the live-owner guard, and the risk of `--force`,
/// the one way past it (the CLI's help quotes `forceRisk` too, so they cannot drift apart).
public enum LiveOwnerRefusal {
  /// What `--force` risks.
  public static let forceRisk =
    "--force is the only way past, and it risks the session: a process that holds a replaced file keeps writing into the deleted old file (those writes are lost), and Telegram kills a session used from two places at once (AUTH_KEY_DUPLICATED)"

  /// The evidence, joined into one clause.
  static func describe(_ evidence: [LiveOwnerEvidence]) -> String {
    evidence.map(\.description).joined(separator: "; ")
  }

  /// The next step, by what the evidence names: the bot, or processes by pid.
  static func remedy(_ evidence: [LiveOwnerEvidence]) -> String {
    let namesProcesses = evidence.contains { if case .holder = $0 { return true } else { return false } }
    let isBot = evidence.contains {
      switch $0 {
      case .botRunner, .systemdUnit: return true
      default: return false
      }
    }
    switch (isBot, namesProcesses) {
    case (true, true): return "stop the bot and the processes named, then run again"
    case (false, true): return "stop the processes named, then run again"
    default: return "stop the bot, then run again"
    }
  }
}

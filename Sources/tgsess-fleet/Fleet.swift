import ArgumentParser
import Foundation
import Store

/// Generates a realistic bot deployment for the demo, the tests and the benchmarks: Telethon v7
/// and v8 session files with cached entities and update state, some Pyrogram files, a bot
/// database with session_backups history and a table of the bot's own, optionally in the seed's
/// legacy shape (plaintext secrets, no tgsess bookkeeping).
@main
struct Fleet: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "tgsess-fleet",
    abstract: "Generate a realistic Telegram bot deployment of N users.",
    discussion: """
      The auth keys are random bytes: the sessions have the real formats but log in nowhere.

        $ tgsess-fleet --root /tmp/demo --users 25 --legacy
        $ tgsess-fleet --root /tmp/bench --users 10000 --message-log-mib 90 --seed 7
      """)

  @Option(help: "Deployment root to create (must not hold a database yet).") var root: String
  @Option(help: "Number of users.") var users = 25
  @Option(help: "Seed of the generator (same seed, same deployment).") var seed: UInt64 = 1
  @Option(help: "Share of Pyrogram users, 0...1.") var pyrogramShare = 0.1
  @Option(help: "Cached entities per Telethon file.") var entities = 120
  @Option(help: "session_backups rows per user.") var backupsPerUser = 3
  @Option(help: "Grow the bot's own message_log table to about this many MiB.") var messageLogMib = 0
  @Flag(help: "Write the seed's legacy shape: plaintext secrets, no tgsess tables, legacy backup files.")
  var legacy = false

  func validate() throws {
    guard users >= 0, users <= 1_000_000 else { throw ValidationError("--users must be 0...1000000") }
    guard (0...1).contains(pyrogramShare) else { throw ValidationError("--pyrogram-share must be 0...1") }
  }

  func run() throws {
    let deployment = Deployment(root: root)
    if FileSystem.exists(deployment.databasePath) {
      throw ValidationError("\(deployment.databasePath) exists; pick an empty --root")
    }
    var random = SplitMix64(seed: seed)
    try FileSystem.makeDirectory(deployment.sessionsDirectory)
    try FileSystem.makeDirectory(FileSystem.parentDirectory(of: deployment.databasePath))
    let generator = FleetGenerator(deployment: deployment, entities: entities)
    var rows: [FleetGenerator.UserRow] = []
    rows.reserveCapacity(users)
    for index in 0..<users {
      let userID = Int64(100_000_000 + index * 7919)
      let kind: FleetGenerator.SessionKind =
        Double((index * 37) % 100) < pyrogramShare * 100 ? .pyrogram : (index % 5 < 2 ? .telethon(7) : .telethon(8))
      rows.append(try generator.writeUser(userID: userID, kind: kind, random: &random))
    }
    try generator.writeDatabase(
      rows: rows, backupsPerUser: backupsPerUser, messageLogMiB: messageLogMib, legacy: legacy, random: &random)
    print("generated \(users) users in \(deployment.root)\(legacy ? " (legacy shape)" : "")")
  }
}

/// A small, fast, seedable generator (not for keys that protect anything).
struct SplitMix64: RandomNumberGenerator {
  var state: UInt64
  init(seed: UInt64) { state = seed }
  mutating func next() -> UInt64 {
    state &+= 0x9e37_79b9_7f4a_7c15
    var z = state
    z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
    z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
    return z ^ (z >> 31)
  }
  mutating func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8.random(in: 0...255, using: &self) } }
}

import Foundation
import Store

/// What `tgsess session inspect` reports: the identity without the key.
public struct SessionReport: Codable, Sendable, Equatable {
  public var path: String
  public var format: String
  public var dcID: Int
  public var serverAddress: String?
  public var port: Int?
  public var authKeyFingerprint: String
  public var ownerUserID: Int64?
  public var apiID: Int?
  public var isTestMode: Bool?
  public var isBot: Bool?
  public var entityCount: Int
  public var journalMode: String

  init(_ info: SessionFileInfo) {
    path = info.path
    format = info.format.shortName
    dcID = info.identity.dcID
    serverAddress = info.identity.serverAddress
    port = info.identity.port
    authKeyFingerprint = info.identity.authKey.fingerprint
    ownerUserID = info.ownerUserID
    apiID = info.apiID
    isTestMode = info.isTestMode
    isBot = info.isBot
    entityCount = info.entityCount
    journalMode = info.journalMode
  }
}

/// Options of `tgsess session convert`.
public struct ConvertOptions: Sendable {
  /// Where the session string is read from (a file; `-` for standard input is resolved by the CLI).
  public var string: String
  /// The session file to write; an existing file is never replaced.
  public var outputPath: String
  /// `telethon-v8`, `telethon-v7` or `pyrogram-v3`.
  public var format: String
  /// The user the session belongs to (Telethon records it in `entities`).
  public var ownerUserID: Int64?
  /// The api id, for older Pyrogram strings that do not carry one.
  public var apiID: Int?

  public init(string: String, outputPath: String, format: String, ownerUserID: Int64? = nil, apiID: Int? = nil) {
    self.string = string
    self.outputPath = outputPath
    self.format = format
    self.ownerUserID = ownerUserID
    self.apiID = apiID
  }
}

/// Session-file inspection and conversion for operators.
public enum SessionJob {
  /// Inspects a session file read-only.
  /// - Throws: `JobError.store` with the precise reason the file is not a valid session.
  public static func inspect(path: String) throws -> SessionReport {
    do { return SessionReport(try SessionFileInspector.inspect(path: path)) } catch let error as StoreError {
      throw JobError.store(context: "", underlying: error)
    }
  }

  /// Writes a session file from a session string.
  /// - Throws: `JobError` for an unknown format, or the string's or writer's precise reason.
  public static func convert(_ options: ConvertOptions) throws -> SessionReport {
    let string = options.string.trimmingCharacters(in: .whitespacesAndNewlines)
    do {
      switch options.format {
      case "telethon-v8", "telethon-v7":
        try SessionConversion.writeTelethonFile(
          fromString: string, version: options.format == "telethon-v8" ? 8 : 7, ownerUserID: options.ownerUserID,
          to: options.outputPath)
      case "pyrogram-v3":
        try SessionConversion.writePyrogramFile(fromString: string, apiID: options.apiID, to: options.outputPath)
      default:
        throw JobError.usage("unknown format '\(options.format)'; use telethon-v8, telethon-v7 or pyrogram-v3")
      }
      return try inspect(path: options.outputPath)
    } catch let error as StoreError {
      throw JobError.store(context: "", underlying: error)
    }
  }

  /// Writes the session string of a session file to `outputPath` (mode 0600, never replacing a
  /// file): Telethon's StringSession for Telethon files, Pyrogram's for Pyrogram files.
  /// - Throws: `JobError.store`.
  public static func exportString(path: String, outputPath: String) throws -> SessionReport {
    do {
      let info = try SessionFileInspector.inspect(path: path)
      let string =
        info.format.isTelethon
        ? try info.telethonString() : try PyrogramStringSession.encode(try info.pyrogramPayload(), label: path)
      try FileSystem.writeAtomically(Data((string + "\n").utf8), to: outputPath, overwrite: false)
      return SessionReport(info)
    } catch let error as StoreError {
      throw JobError.store(context: "", underlying: error)
    }
  }
}

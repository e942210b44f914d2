import Foundation
import GRDBSQLite

/// How a database file journals its writes, as its header says.
public enum SQLiteJournalMode: String, Codable, Sendable {
  /// A rollback journal (`delete`, `truncate`, `persist`, `memory`, `off`): a reader's lock
  /// keeps every writer from committing until the reader is done.
  case rollback
  /// Write-ahead log: readers and the writer never wait for each other.
  case wal
}

/// How a snapshot copies a live file.
public struct SnapshotOptions: Sendable {
  /// How long one step waits for another process's lock before the snapshot fails.
  public var busyTimeoutMS: Int32
  /// The longest the copy may hold a rollback-journal source's read lock at once (a writer's
  /// commit waits about this long at most): a source whose whole copy takes longer is copied in
  /// steps of `stepTargetMS`.
  public var maxLockMS: Double = 50
  /// How long one step of a stepped copy should hold the read lock; the page count of each step
  /// follows it.
  public var stepTargetMS: Double = 5
  /// Pages the first step copies (1 MiB of 4 KiB pages): a file this small is copied in one step.
  public var firstStepPages: Int32 = 256
  /// Passes another connection's commits may restart before the snapshot gives up.
  public var maxRestarts = 6
  /// The next step to name when the snapshot gives up because the source kept changing.
  public var restartsHint = "run the backup again when the file's writer is idle"
  /// Called between two steps of a stepped copy, when the source is not locked (tests commit
  /// there to prove it).
  public var betweenSteps: (@Sendable () throws -> Void)?

  public init(busyTimeoutMS: Int32 = 5000) {
    self.busyTimeoutMS = busyTimeoutMS
  }
}

/// How a snapshot was taken: what the writers of the source waited for.
public struct SnapshotReport: Codable, Sendable, Equatable {
  public enum Method: String, Codable, Sendable {
    /// One read transaction: a WAL source (its writers never wait for it), or a rollback-journal
    /// source whose whole copy fits `maxLockMS`.
    case oneStep = "one-step"
    /// Short steps, the read lock released between them.
    case stepped
  }

  public var journalMode: SQLiteJournalMode
  public var method: Method
  /// Passes restarted because another connection committed.
  public var restarts = 0
  public var steps = 0
  public var byteCount: Int64 = 0
  /// The longest one step kept its read transaction open (waits for other processes' locks
  /// left out): what a writer of a rollback-journal source may have waited at most. Writers of
  /// a WAL source do not wait for it.
  public var longestLockMS: Double = 0
  public var durationMS: Double = 0

  /// The longest a writer of the source may have waited for this snapshot.
  public var writerWaitMS: Double { journalMode == .wal ? 0 : longestLockMS }
}

/// What copying a live file in one step would cost its writers, from a measured copy rate.
public struct SQLiteStallEstimate: Sendable, Equatable {
  public var journalMode: SQLiteJournalMode
  public var byteCount: Int64
  /// Bytes a second the online backup API copied from the file (the better of two sample passes).
  public var bytesPerSecond: Double
  /// How long a copy in one step holds the read lock: `byteCount / bytesPerSecond`. In
  /// rollback-journal mode the file's writers wait that long.
  public var oneStepLockMS: Double { bytesPerSecond > 0 ? Double(byteCount) / bytesPerSecond * 1000 : 0 }
}

/// Consistent copies of live SQLite files through the online backup API, for staging: the
/// source is opened read-only (never written, never rolled back, journal mode untouched) and the
/// copy shows the last committed state even while another process holds a write transaction.
///
/// A writer of a rollback-journal file cannot commit while any reader holds the file's read
/// lock, so a copy in one step would stall the bot for as long as the copy takes (seconds for a
/// database of gigabytes, past a busy timeout of 1 s). Such a file is copied in one step only
/// when the whole copy takes at most `maxLockMS`; otherwise in short steps that release the lock
/// in between. A commit between two steps restarts the copy (SQLite's backup API notices it), so
/// every finished copy is one committed state; after `maxRestarts` restarts the snapshot gives up
/// with an error naming the file rather than stall its writers. A WAL file is copied in one read
/// transaction: its writers never wait for a reader.
public enum SQLiteSnapshot {
  /// Copies `source` into a new file at `destination` (mode 0600). The copy is not fsynced:
  /// it is a staging file that an archive will hold durably.
  /// - Returns: how the copy was taken.
  /// - Throws: `StoreError.database` naming the source (busy, corrupt, hot journal) or the
  ///   destination.
  @discardableResult
  public static func take(source: String, destination: String, options: SnapshotOptions = SnapshotOptions()) throws
    -> SnapshotReport
  {
    let from = try SnapshotSource(path: source, busyTimeoutMS: options.busyTimeoutMS)
    let fd = open(destination, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, FileSystem.fileMode)
    guard fd >= 0 else { throw StoreError.io(path: destination, operation: "create", errno: errno) }
    close(fd)
    var isDone = false
    defer { if !isDone { unlink(destination) } }

    var to: OpaquePointer?
    defer { sqlite3_close_v2(to) }
    let rc = sqlite3_open_v2(destination, &to, SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE | SQLITE_OPEN_READWRITE, nil)
    guard rc == SQLITE_OK, let to else { throw failure(rc, to, "open", destination) }
    // A staging copy needs no journal and no syncs.
    sqlite3_exec(to, "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF", nil, nil, nil)
    let (code, report) = try copy(from: from, to: to, sourcePath: source, destination: destination, options: options)
    if let code {
      // sqlite3_backup_step reports both sides' errors on the destination handle, so the code
      // tells which side failed: writes (a full disk) are the staging copy's, the rest the source's,
      // except a read that failed on the staging copy (its file kept the errno, the source's not).
      let isDestinationRead =
        code & 0xff == SQLITE_IOERR && sqliteFileErrno(from.handle) == 0 && sqliteFileErrno(to) != 0
      if isDestinationFailure(code) || isDestinationRead {
        if code & 0xff == SQLITE_FULL {
          throw StoreError.io(path: destination, operation: "write snapshot of \(source)", errno: ENOSPC)
        }
        throw SQLiteFailure(
          code: code, message: String(cString: sqlite3_errstr(code)), operation: "online backup of \(source)",
          systemErrno: isDestinationRead ? sqliteFileErrno(to) : sqliteSystemErrno(to)
        ).storeError(path: destination)
      }
      throw sourceFailure(code, source: source, handle: from.handle)
    }
    var result = report
    result.byteCount = try FileSystem.size(of: destination)
    isDone = true
    return result
  }

  /// Copies `source` into memory through the online backup API, for small files such as
  /// session files: no staging file is created, which saves an inode, a path walk and a
  /// journal probe per file (on ext4, creating and deleting thousands of staging files cost more
  /// than copying their bytes). The copy lives in SQLite's `memdb` VFS, whose one contiguous
  /// buffer is the file image, so the bytes are read without another copy.
  /// - Throws: `StoreError` naming the source (missing, empty, busy, corrupt, hot journal).
  public static func takeInMemory(source: String, options: SnapshotOptions = SnapshotOptions()) throws
    -> SQLiteImage
  {
    let from = try SnapshotSource(path: source, busyTimeoutMS: options.busyTimeoutMS)
    let memory: SQLiteConnection
    do {
      // A name without a leading "/" is private to this connection.
      memory = try SQLiteConnection(checkedPath: "file:snapshot?vfs=memdb", mode: .memory, busyTimeoutMS: 0)
      // A WAL-mode source (Hydrogram always, kurigram with use_wal) copies its header, which
      // marks the image WAL; memdb has no shared memory for a WAL index, so without exclusive
      // locking mode (a heap WAL index) reading the image fails with "unable to open database
      // file". The image keeps its header: restored, the file is still in WAL mode.
      try memory.execChecked("PRAGMA locking_mode=EXCLUSIVE")
    } catch let failure as SQLiteFailure {
      throw failure.storeError(path: source)
    }
    let to = try memory.requireHandle()
    let (code, report) = try copy(from: from, to: to, sourcePath: source, destination: source, options: options)
    if let code { throw sourceFailure(code, source: source, handle: from.handle) }
    var size: sqlite3_int64 = 0
    let image = sqlite3_serialize(to, "main", &size, UInt32(SQLITE_SERIALIZE_NOCOPY))
    guard size > 0, let image else {
      if size == 0 { throw StoreError.session(object: source, reason: .emptyFile) }
      throw StoreError.database(
        path: source, reason: "its in-memory snapshot could not be read",
        hint: "free memory on the host and run again")
    }
    var result = report
    result.byteCount = Int64(size)
    return SQLiteImage(
      connection: memory, bytes: UnsafeRawBufferPointer(start: image, count: Int(size)), report: result)
  }

  /// Measures what a copy of `source` in one step would cost its writers: its journal mode,
  /// its size, and the rate at which the online backup API copies it, from two sample passes of
  /// up to `sampleBytes` into memory (each in steps of 1 MiB, so no writer waits long for it).
  /// - Throws: `StoreError` naming the source (missing, busy, corrupt, hot journal).
  public static func estimateStall(
    source: String, sampleBytes: Int64 = 32 << 20, busyTimeoutMS: Int32 = 5000
  ) throws -> SQLiteStallEstimate {
    let from = try SnapshotSource(path: source, busyTimeoutMS: busyTimeoutMS)
    let mode = journalMode(of: from.handle)
    let pageSize = Int64(textValue(from.handle, "PRAGMA page_size")) ?? 4096
    let stepPages: Int32 = 256
    var bestRate = 0.0
    for _ in 0..<2 {
      let memory: SQLiteConnection
      do {
        memory = try SQLiteConnection(checkedPath: "file:sample?vfs=memdb", mode: .memory, busyTimeoutMS: 0)
      } catch let failure as SQLiteFailure {
        throw failure.storeError(path: source)
      }
      let to = try memory.requireHandle()
      guard let backup = sqlite3_backup_init(to, "main", from.handle, "main") else {
        throw failure(sqlite3_extended_errcode(to), to, "start online backup", source)
      }
      // The sample is abandoned midway on purpose; the copy goes with `memory`.
      defer { sqlite3_backup_finish(backup) }
      var copiedPages: Int64 = 0
      var lockedNS: UInt64 = 0
      while copiedPages * pageSize < sampleBytes {
        let before = Int64(sqlite3_backup_pagecount(backup) - sqlite3_backup_remaining(backup))
        let (code, heldNS) = from.step(backup, pages: stepPages)
        guard code == SQLITE_OK || code == SQLITE_DONE else {
          throw sourceFailure(code, source: source, handle: from.handle)
        }
        let after = Int64(sqlite3_backup_pagecount(backup) - sqlite3_backup_remaining(backup))
        // A restart (another connection committed) copies from page 1 again.
        copiedPages += after > before ? after - before : after
        lockedNS += heldNS
        if code == SQLITE_DONE { break }
      }
      if lockedNS > 0 { bestRate = max(bestRate, Double(copiedPages * pageSize) / (Double(lockedNS) / 1e9)) }
    }
    return SQLiteStallEstimate(
      journalMode: mode, byteCount: try FileSystem.size(of: source), bytesPerSecond: bestRate)
  }

  /// Runs one whole online backup from `from` into `to`: in one step for a WAL source or a copy
  /// that fits `options.maxLockMS`, otherwise in short steps (see the type's comment).
  /// - Returns: the failing result code (nil when the copy is complete) and how it was taken.
  /// - Throws: `StoreError` naming `destination` when the backup cannot even start, naming
  ///   `sourcePath` when writers restarted it more than `options.maxRestarts` times, or what
  ///   `options.betweenSteps` throws.
  private static func copy(
    from: SnapshotSource, to: OpaquePointer, sourcePath: String, destination: String, options: SnapshotOptions
  ) throws -> (code: Int32?, report: SnapshotReport) {
    let started = DispatchTime.now().uptimeNanoseconds
    var report = SnapshotReport(journalMode: journalMode(of: from.handle), method: .oneStep)
    guard let backup = sqlite3_backup_init(to, "main", from.handle, "main") else {
      throw failure(sqlite3_extended_errcode(to), to, "start online backup", destination)
    }
    var pages: Int32 = report.journalMode == .wal ? -1 : max(options.firstStepPages, 1)
    // The first page the next step copies, as the last step left it: a step that did not
    // continue from it began again at page 1 because another connection had committed.
    var nextPage: Int32 = 1
    var lockedNS: UInt64 = 0
    var copiedPages: Int64 = 0
    var step: Int32 = SQLITE_OK
    do {
      while true {
        let (code, heldNS) = from.step(backup, pages: pages)
        step = code
        report.steps += 1
        report.longestLockMS = max(report.longestLockMS, Double(heldNS) / 1e6)
        guard step == SQLITE_OK else { break }
        let next = sqlite3_backup_pagecount(backup) - sqlite3_backup_remaining(backup) + 1
        let isRestart = next != nextPage + pages
        copiedPages += Int64(isRestart ? next - 1 : next - nextPage)
        lockedNS += heldNS
        nextPage = next
        report.method = .stepped
        // What the whole copy in one step would hold the lock for, at the rate measured so far.
        let wholeMS = Double(lockedNS) / 1e6 / Double(max(copiedPages, 1)) * Double(sqlite3_backup_pagecount(backup))
        if isRestart {
          report.restarts += 1
          if report.restarts > options.maxRestarts {
            let pageSize = Int64(textValue(from.handle, "PRAGMA page_size")) ?? 4096
            let mebibytes = (Int64(sqlite3_backup_pagecount(backup)) * pageSize) >> 20
            throw StoreError.database(
              path: sourcePath,
              reason:
                "another connection committed during each of \(report.restarts) copy passes, and copying it in one step would hold its writers about \(Int(wholeMS.rounded())) ms (rollback journal, \(mebibytes) MiB)",
              hint: options.restartsHint)
          }
          // A writer in a burst: give it a moment before the next pass.
          usleep(useconds_t(min(10_000 << (report.restarts - 1), 500_000)))
        }
        if wholeMS <= options.maxLockMS {
          // The rest in one step holds the lock no longer than a writer may wait.
          pages = -1
        } else {
          pages = nextStepPages(pages, heldMS: Double(heldNS) / 1e6, targetMS: options.stepTargetMS)
        }
        try options.betweenSteps?()
      }
    } catch {
      sqlite3_backup_finish(backup)
      throw error
    }
    let finish = sqlite3_backup_finish(backup)
    report.durationMS = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e6
    if step == SQLITE_DONE { step = SQLITE_OK }
    if step != SQLITE_OK { return (step, report) }
    return (finish != SQLITE_OK ? finish : nil, report)
  }

  /// The page count of the next step, so that it holds the lock about `targetMS`: scaled by the
  /// last step's time, by at most a factor of two each way.
  static func nextStepPages(_ pages: Int32, heldMS: Double, targetMS: Double) -> Int32 {
    guard heldMS > 0.01 else { return min(pages * 2, 1 << 16) }
    let factor = min(2, max(0.5, targetMS / heldMS))
    return Int32(min(Double(1 << 16), max(16, (Double(pages) * factor).rounded())))
  }

  /// The journal mode of the database `handle` has open, from its header's write version (byte
  /// 18 is 2 in WAL mode), read through SQLite's own file handle: `PRAGMA journal_mode` reads and
  /// parses the whole schema first, which cost more than copying a session file, and a
  /// descriptor of our own, once closed, would drop every POSIX lock this process holds on the
  /// file (other connections' included). Falls back to the pragma when the header cannot be read
  /// that way; when SQLite cannot read it either (a hot journal, a damaged file), rollback is
  /// assumed and the copy's first step reports the real problem. (A file switched between modes
  /// right now is still copied whole; only the steps differ.)
  private static func journalMode(of handle: OpaquePointer) -> SQLiteJournalMode {
    var file: UnsafeMutablePointer<sqlite3_file>?
    var version: (UInt8, UInt8) = (0, 0)
    if withUnsafeMutablePointer(to: &file, { sqlite3_file_control(handle, "main", SQLITE_FCNTL_FILE_POINTER, $0) })
      == SQLITE_OK, let file, let read = file.pointee.pMethods?.pointee.xRead,
      withUnsafeMutableBytes(of: &version, { read(file, $0.baseAddress, 2, 18) }) == SQLITE_OK
    {
      return version == (2, 2) ? .wal : .rollback
    }
    return textValue(handle, "PRAGMA journal_mode").lowercased() == "wal" ? .wal : .rollback
  }

  /// The first column of the first row of `sql`, as text ("" when there is none or it fails).
  private static func textValue(_ handle: OpaquePointer, _ sql: String) -> String {
    var statement: OpaquePointer?
    defer { sqlite3_finalize(statement) }
    guard sqlite3_prepare_v2(handle, sql, -1, &statement, nil) == SQLITE_OK, let statement,
      sqlite3_step(statement) == SQLITE_ROW, let text = sqlite3_column_text(statement, 0)
    else { return "" }
    return String(cString: text)
  }

  /// A failed read of the source, as the error a snapshot reports for it (with the errno SQLite
  /// kept on the source's `handle`).
  private static func sourceFailure(_ code: Int32, source: String, handle: OpaquePointer) -> StoreError {
    if code == SQLiteExtendedCode.readonlyRollback {
      return StoreError.session(object: source, reason: .hotJournal(source + "-journal"))
    }
    return SQLiteFailure(
      code: code, message: String(cString: sqlite3_errstr(code)), operation: "online backup",
      systemErrno: sqliteSystemErrno(handle)
    ).storeError(path: source)
  }

  /// Whether a failed online backup failed writing the copy rather than reading the source.
  private static func isDestinationFailure(_ code: Int32) -> Bool {
    switch code & 0xff {
    case SQLITE_FULL: return true
    case SQLITE_IOERR:
      // SQLITE_IOERR_WRITE, _FSYNC, _DIR_FSYNC, _TRUNCATE: the writing side.
      return [3, 4, 5, 6].contains(code >> 8)
    default: return false
    }
  }

  fileprivate static func failure(_ rc: Int32, _ db: OpaquePointer?, _ operation: String, _ path: String)
    -> StoreError
  {
    let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(rc))
    return SQLiteFailure(
      code: rc, message: message, operation: operation, systemErrno: db.map(sqliteSystemErrno) ?? 0
    ).storeError(path: path)
  }
}

/// A live file opened read-only for a snapshot (closed on deinit), with a busy handler that polls
/// for another process's lock about every millisecond and counts the time it waited, so that a
/// step's own lock time can be told from its waits.
final class SnapshotSource {
  let handle: OpaquePointer
  private let clock: BusyClock

  /// Opens `path` read-only.
  /// - Throws: `StoreError` naming the file (gone, or SQLite cannot open it).
  init(path: String, busyTimeoutMS: Int32) throws {
    guard FileSystem.exists(path) else {
      throw StoreError.missing(path: path, hint: "it disappeared during the backup; run again")
    }
    var from: OpaquePointer?
    let rc = sqlite3_open_v2(path, &from, SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE | SQLITE_OPEN_READONLY, nil)
    guard rc == SQLITE_OK, let from else {
      let error = SQLiteSnapshot.failure(rc, from, "open read-only", path)
      sqlite3_close_v2(from)
      throw error
    }
    handle = from
    clock = BusyClock(timeoutNS: UInt64(max(busyTimeoutMS, 0)) * 1_000_000)
    // SQLite's own timeout backs off to 100 ms sleeps, which keep missing the instants a writer
    // committing every few milliseconds leaves free (see BotDatabase.pollingBusyMode).
    sqlite3_busy_handler(from, SnapshotSource.pollForLock, Unmanaged.passUnretained(clock).toOpaque())
  }

  deinit { sqlite3_close_v2(handle) }

  /// Runs one `sqlite3_backup_step` of `pages` pages (-1: all).
  /// - Returns: its result code and how long it held the source's read transaction, in
  ///   nanoseconds (the step's time less its waits for other processes' locks).
  func step(_ backup: OpaquePointer, pages: Int32) -> (code: Int32, heldNS: UInt64) {
    clock.waitedNS = 0
    let started = DispatchTime.now().uptimeNanoseconds
    let code = sqlite3_backup_step(backup, pages)
    let elapsed = DispatchTime.now().uptimeNanoseconds - started
    return (code, elapsed > clock.waitedNS ? elapsed - clock.waitedNS : 0)
  }

  /// When the current wait began and how long the current step has waited.
  private final class BusyClock {
    let timeoutNS: UInt64
    var waitStart: UInt64 = 0
    var waitedNS: UInt64 = 0

    init(timeoutNS: UInt64) { self.timeoutNS = timeoutNS }
  }

  private static let pollForLock: @convention(c) (UnsafeMutableRawPointer?, Int32) -> Int32 = { context, tries in
    guard let context else { return 0 }
    let clock = Unmanaged<BusyClock>.fromOpaque(context).takeUnretainedValue()
    let now = DispatchTime.now().uptimeNanoseconds
    if tries == 0 { clock.waitStart = now }
    guard now - clock.waitStart < clock.timeoutNS else { return 0 }
    usleep(UInt32.random(in: 300...1500))
    clock.waitedNS += DispatchTime.now().uptimeNanoseconds - now
    return 1
  }
}

/// An SQLite file copied into memory: an in-memory connection holding the copy (for reading it)
/// and the file image (for archiving it), valid while the image lives.
public final class SQLiteImage {
  /// The in-memory database; read it only (a write could move the image).
  let connection: SQLiteConnection
  private let image: UnsafeRawBufferPointer
  /// How the copy was taken.
  public let report: SnapshotReport

  init(connection: SQLiteConnection, bytes: UnsafeRawBufferPointer, report: SnapshotReport) {
    self.connection = connection
    image = bytes
    self.report = report
  }

  /// The size of the file image.
  public var count: Int { image.count }

  /// Calls `body` with the bytes of the file, exactly as a file copy would hold them.
  public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
    try withExtendedLifetime(self) { try body(image) }
  }

  /// Whether the header says WAL mode (file format versions 2).
  public var isWALMode: Bool { image.count > 19 && image[18] == 2 && image[19] == 2 }
}

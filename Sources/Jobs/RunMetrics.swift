import Foundation

/// How one run of a scheduled command (backup, prune, check, drill) went, as its metrics file
/// reports it. A run succeeded when its exit status is 0.
public struct RunRecord: Sendable, Equatable {
  /// The command, which names its metric families: `tgsess_<command>_…`.
  public var command: String
  public var startedAt: Date
  public var duration: TimeInterval
  public var exitStatus: Int32

  public init(command: String, startedAt: Date, duration: TimeInterval, exitStatus: Int32) {
    self.command = command
    self.startedAt = startedAt
    self.duration = duration
    self.exitStatus = exitStatus
  }

  public var isSuccess: Bool { exitStatus == 0 }
}

extension MetricsFile {
  /// A run's file when the job produced no result (it failed as a whole): the run families only.
  public init(run: RunRecord) {
    self.init()
    record(run)
  }

  /// Adds the families every command's file has, unless the file has them already:
  /// `tgsess_<command>_last_run_timestamp_seconds` (when the run started),
  /// `tgsess_<command>_duration_seconds`, `tgsess_<command>_last_exit_status`, and
  /// `tgsess_<command>_last_successful_run_timestamp_seconds` — set by a successful run (exit 0)
  /// and carried over from the previous file by any other, so `time() - …` keeps growing while the
  /// runs fail.
  public mutating func record(_ run: RunRecord) {
    let prefix = "tgsess_\(run.command)_"
    let families: [(String, Double, String)] = [
      ("last_run_timestamp_seconds", run.startedAt.timeIntervalSince1970, "Unix time the last \(run.command) started."),
      ("duration_seconds", run.duration, "How long the last \(run.command) took."),
      ("last_exit_status", Double(run.exitStatus), "Exit status of the last \(run.command) (0 is success)."),
    ]
    for (suffix, value, help) in families where !contains(prefix + suffix) {
      gauge(prefix + suffix, value, help: help)
    }
    let success = prefix + "last_successful_run_timestamp_seconds"
    let successHelp = "Unix time the last successful \(run.command) (exit status 0) started."
    if run.isSuccess {
      gauge(success, run.startedAt.timeIntervalSince1970, help: successHelp)
    } else {
      carryOver(success, help: successHelp)
    }
  }
}

extension BackupResult {
  /// The backup's metrics: the run families, archives, users and bytes (no per-user labels).
  public func metrics(_ run: RunRecord) -> MetricsFile {
    var file = MetricsFile()
    file.gauge("tgsess_backup_archives_written", Double(archives.count), help: "Archives the last backup wrote.")
    file.gauge("tgsess_backup_users", Double(users), help: "Users the last backup saved.")
    file.gauge(
      "tgsess_backup_users_unchanged", Double(unchangedUsers),
      help: "Users whose session had not changed since their newest per-user backup.")
    file.gauge("tgsess_backup_users_failed", Double(failures.count), help: "Users the last backup could not save.")
    file.gauge("tgsess_backup_entries", Double(entries), help: "Files and rows the last backup archived.")
    file.gauge("tgsess_backup_input_bytes", Double(bytesIn), help: "Bytes the last backup read.")
    file.gauge("tgsess_backup_output_bytes", Double(bytesOut), help: "Bytes the last backup wrote (archives).")
    file.record(run)
    return file
  }
}

extension PruneResult {
  /// The prune's metrics: the run families and what retention kept, removed and trimmed.
  public func metrics(_ run: RunRecord) -> MetricsFile {
    var file = MetricsFile()
    file.gauge("tgsess_prune_archives_kept", Double(plan.keep.count), help: "Archives the last prune kept.")
    file.gauge("tgsess_prune_archives_removed", Double(removed), help: "Archives the last prune removed.")
    file.gauge("tgsess_prune_freed_bytes", Double(bytesFreed), help: "Bytes the last prune freed.")
    file.gauge(
      "tgsess_prune_rows_trimmed", Double(rowsTrimmed), help: "session_backups rows the last prune trimmed.")
    file.gauge(
      "tgsess_prune_leftovers_removed", Double(leftoversRemoved),
      help: "Temporaries of interrupted runs the last prune removed.")
    file.gauge(
      "tgsess_prune_remotes_failed", Double(remoteFailures.count),
      help: "Remotes the last prune could not bring in line with the local plan.")
    file.record(run)
    return file
  }
}

extension DrillResult {
  /// The drill's metrics: the run families, RTO, RPO and users.
  public func metrics(_ run: RunRecord) -> MetricsFile {
    var file = MetricsFile()
    file.gauge(
      "tgsess_drill_ok", ok && !isPartial ? 1 : 0, help: "1 when the last drill restored and validated everything.")
    file.gauge(
      "tgsess_drill_partial", isPartial ? 1 : 0,
      help:
        "1 when the last drill had no age identity: it proved ciphertext, records and Fernet keys, restored nothing.")
    file.gauge("tgsess_drill_rto_seconds", rtoSeconds, help: "Measured time to restore and validate.")
    file.gauge("tgsess_drill_rpo_seconds", rpoSeconds, help: "Age of the drilled snapshot.")
    file.gauge("tgsess_drill_users_restored", Double(usersRestored), help: "Users the last drill restored.")
    file.gauge("tgsess_drill_users_ok", Double(usersOK), help: "Users whose restored session validated.")
    file.gauge("tgsess_drill_users_failed", Double(usersFailed.count), help: "Users that did not validate.")
    file.gauge(
      "tgsess_drill_users_missing", Double(usersMissing.count), help: "Live users the drilled snapshot does not hold.")
    file.gauge(
      "tgsess_drill_per_user_archives_checked", Double(perUserArchivesChecked),
      help: "Per-user archives the last drill restored and checked.")
    file.record(run)
    return file
  }
}

extension CheckResult {
  /// The check's metrics (`metrics`) plus the run families it lacks (exit status, last successful
  /// run: a check succeeds when it is OK), timed by the check itself like the rest of its file.
  public func metrics(_ run: RunRecord) -> MetricsFile {
    var file = metrics
    file.record(
      RunRecord(command: run.command, startedAt: checkedAt, duration: durationSeconds, exitStatus: run.exitStatus))
    return file
  }
}

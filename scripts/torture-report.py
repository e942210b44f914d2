#!/usr/bin/env python3
"""The torture run's report, built from its structured results alone (no log is read).

Every family writes `<out>/results/<family>.jsonl`, one JSON object a line:

  a case     {"family", "case", "passed", "seconds", "problems", "detail", ["counts"]}
  a tally    {"family", "counts": {"name": N, ...}}              figures that belong to no case
  the run    {"family", "run": {"status": S, "seconds": T}}      written by torture.sh per family

`counts` are summed per name over the family's lines and worded into its figure line.

  torture-report.py line OUT FAMILY   the family's figure line: "F: N cases, P passed[, M failed] (...)"
  torture-report.py total OUT         "N passed, M failed" over the families that ran; exit 1 if M > 0
  torture-report.py reliability OUT --seed S --commit C --machine M --swift V --elapsed SECONDS
                                      writes RELIABILITY.md (keeping its fuzz-campaign block and
                                      the hand-written findings block)
  torture-report.py campaign OUT --seconds S --jobs J --elapsed SECONDS --machine M
                                      records a long fuzzing campaign in RELIABILITY.md

Python 3 standard library only.
"""
import argparse
import json
import os
import re
import sys

FAMILIES = ['crash-points', 'live-writers', 'hostile-archives', 'disk-full', 'power-loss', 'io-errors', 'lock-storms',
            'bad-sessions', 'fuzzing', 'bot-runner', 'secrets']

MEANING = {
    'crash-points': "After SIGKILL at every named crash point of backup, backup --user, restore (whole and --user), prune, recover --all, migrate (seed shape and --rotate-key) and pin (the atomic writes), and at random moments: session files and the bot's tables as before (restore, recover: each file wholly old or wholly new), every archive `tgsess list` shows decrypts and matches its manifest, earlier archives byte-identical, the same command run again exits 0, no temporary left after it and a backup, and every user holds their session (valid file, or `recover` brings it back) with the expected auth key",
    'live-writers': "Backups while the real Telethon 1.45 `SQLiteSession` saves entities and update state on 3 session files and a second writer commits to the bot database: every snapshot, extracted by stock age/tar and hashed by sha256sum, passes integrity_check, keeps both cross-table invariants, and is newer than the last; the newest loads in Telethon with the live key; and backups of a bot database grown by message_log while a writer like kurigram's bot (`timeout=1`, a commit every 5 ms) runs, in rollback and WAL mode: the writer gets 0 \"database is locked\" errors; each backup archives a snapshot that passes integrity_check, holds one committed state and is newer than the last, or (rollback mode, the bot writing throughout) exits 1 with one line naming the database and `tgsess migrate --wal`, writing nothing",
    'hostile-archives': "43 crafted hostile archives (traversal, also past a combining mark, links, devices, bombs, a Unicode-equivalent entry name, tampered manifest, rows or sessions, truncations, bit flips, wrong identity) plus random bit flips, truncations and inserted/appended bytes of a real archive: each refused with one stderr line naming the archive and the reason; the deployment byte-identical; no --target directory left",
    'disk-full': "backup, restore and migrate on a tmpfs filled to leave a sweep of free-space levels, and remounted read-only: each run succeeds fully or exits 1 with one error line naming the cause; no partial or hidden file; sessions, bot tables and earlier archives as before (a restore that failed mid-way: each file whole, undo archive present); with space back the same command succeeds",
    'power-loss': "Each of backup, backup --user, restore (whole and --user), recover --all, prune, migrate (seed shape and --rotate-key), pin and watch --once recorded once with `iotrace.so` (every file-system call below the deployment, with the bytes written); from the tree before the run, `crashstates.py` builds what a power cut may leave at each sync barrier under an ext4 data=ordered model and a weaker any-reordering model; each distinct state, in place of the deployment, with the real tgsess: every archive `tgsess list` shows decrypts and matches its manifest, earlier archives as before, sessions and the bot's tables wholly old or wholly new (integrity_check), the same command run again succeeds and leaves no temporary, every user holds their session (valid file, or `recover` brings it back) with the expected auth key; after the run exited, what it published survives",
    'io-errors': "The Nth read, write, fsync, rename/link, open or mkdir below the deployment fails (`iotrace.so`) with EIO, ENOSPC, EDQUOT, EROFS or EACCES, N swept over each command's calls (counted in a clean run) for the same commands as power-loss: the run completes soundly (after a failed fsync only where the judge names why by file and call) or exits 1 (3 where a partial result is documented) with one error line naming the file and the cause; no crash or trap; nothing lost (as in crash-points), no partial file published, no temporary left; with the fault gone the same command succeeds",
    'lock-storms': "Storms of 20 concurrent backup, prune, restore --user, recover, migrate and check runs with lockwatch.so preloaded (records, in the process, lock take/release and every change below the root): lock intervals never overlap; no mutating run changes anything without the lock (its own staging directory apart); non-waiting runs exit 0 or 75 naming the holder; waiting runs complete; holder lines name the right process; afterwards integrity_check, every archive and every session are sound",
    'bad-sessions': "Every invalid session-file class gives its precise reason; thousands of random mutations (bit flips, cuts, inserted/deleted/overwritten bytes, zeroed key bytes) of Telethon v7/v8, Pyrogram, kurigram and pyrofork files and of Telethon/Pyrogram strings, parsed in-process: no crash, nothing accepted with a short or all-zero key or a dc out of range, an accepted string re-encodes to itself, inspect never changes a file",
    'fuzzing': "libFuzzer on the session-string parsers, the session-file inspector, the manifest parser and the archive reader (unencrypted tar.zst): no crash, and every accepted input sound (same properties as bad-sessions; an accepted archive extracted exactly its manifest); plus committed regression inputs and random damage replayed in-process",
    'bot-runner': "The built `tgsess-bot` against a fake Bot API on loopback. kill -9 during /recover and a confirmed /logout, at the crash points on their path and at random moments: the session file wholly old or wholly new (integrity_check, the expected auth key), the database whole, every archive `tgsess list` shows verifies and no other is there; after a restart (start-up recovery, the replayed update) the user holds their session, or is logged out with a Before logout archive that holds it, no session temporary or staging directory is left (an encrypted archive temporary waits for the next backup, which removes it) and `tgsess check` is as before. Cron `backup`/`prune` racing /recover, /logout, /status: exit 0 or 75 naming the holder, the bot's answers done or lock-busy, nothing lost, at most 5 backups per user after a prune. 500/502/429/reset/slow/malformed answers on getUpdates, sendMessage, editMessageText: the runner runs on, the recovery runs once, one message, a failed answer repeated at most 3 times, a 403 never. kill -9 between answering an update and recording its offset, and at random: no update lost, only the one in flight answered twice",
    'secrets': "Every stdout/stderr of every tgsess run, the libFuzzer logs and this run's log scanned for every auth key (hex both cases, half, base64, URL-safe), session string, Fernet key and token (and its plaintext), api_hash, age identity and the bot token of every deployment used: 0 hits",
}

SEPARATE_NOTES = """- kill -9 (crash-points) is process death, not power loss: deployments live on tmpfs, so what a
  power cut may drop is simulated apart, by the power-loss family.
- Power loss is simulated, not done: `iotrace.so` (an LD_PRELOAD library) records every open,
  write/pwrite (with the bytes), fsync/fdatasync, rename, link, unlink, mkdir, rmdir and truncate a
  command makes below the deployment, naming files by inode; `crashstates.py` replays that log on
  a copy of the tree as it was before the run and builds the trees a file system may hold after a
  power cut just before each sync barrier completes, and after the run. Two models, both in
  `crashstates.py`'s header. *ext4 data=ordered*, approximated: metadata operations reach the disk
  as a program-order prefix; an fsync of a file or directory with a metadata change since the
  last commit commits all metadata issued before it (one running jbd2 transaction); each file
  holds a prefix of its writes (the last one cut at a 4096-byte page), at least up to its last
  fsync; a write that extends a file needs the metadata before it (data before the metadata that
  exposes it); a rename over a file carries the renamed file's writes (auto_da_alloc). *Weak*:
  only what POSIX promises is kept (a file's writes up to its fsync, a name once its directory
  is fsynced, everything before sync()); every other operation, and each page of each write, may
  or may not be there, in any combination: none, all, each alone and each left out, then random
  subsets, up to 16 per crash point. States are deduplicated by the content of the whole tree;
  when one command gives more than the run checks, the ordered model's come first, then states
  that differ in what tgsess shows before those that differ only in hidden files (temporaries,
  staging), sampled with the run's seed. Not modelled: torn writes inside a page, reordering
  inside one write below a page, a disk that lies about its cache flush, the metadata of files
  outside the deployment, and SQLite's `-shm` (rebuilt by SQLite after a crash). The bot
  database and session files are SQLite's: a commit in rollback-journal mode is the unlink of
  the journal, which SQLite (synchronous=FULL) does not fsync, so the last transaction before a
  power cut may roll back; the invariants accept the old or the new row, as SQLite documents.
  SQLite (3.40) commits a transaction that shrinks a database (a whole restore into a larger
  live database) by unlinking the journal and then truncating the file, with no sync between:
  it relies on the file system keeping those two metadata operations in order, as ext4, XFS
  and btrfs do. The weak model does not, and its states with the truncate but not the unlink
  roll back to a database whose cut pages are zeros (found in the first full run: 3 states of
  restore (whole)). Such states are outside SQLite's own assumptions: they are counted apart
  and not checked; the ordered model never produces them.
- I/O errors: ENOSPC (a filled tmpfs) and EROFS (a read-only remount) in disk-full, and injected
  by `iotrace.so` in io-errors: the Nth call of one class (read, write, fsync, rename/link, open,
  mkdir) below the deployment fails once with EIO, ENOSPC, EDQUOT, EROFS or EACCES (the first of
  a rotating list that fits the call: ENOSPC/EDQUOT on an open only when it creates the file)
  without being made; N is swept over the calls a clean run of the command made (every call
  when there are few, else evenly spread ones, first and last included). A fault on a file
  outside the deployment, a short write, a fault that persists after the first, and silent
  corruption (a read that returns wrong bytes) are not injected. SQLite opens a database
  read-only when its read-write open fails and does not keep that errno, so a failed open of
  the bot database or a session file is reported as "read-only"; other SQLite I/O errors name
  the errno SQLite saw (`sqlite3_system_errno`, or the file's last errno), and where it kept
  none (a journal's fsync or write) the failed operation from the extended result code ("fsync
  error, SQLITE_IOERR_FSYNC") with "SQLite kept no error number". A read error is never
  reported as damage (SQLite reports a read that failed with EIO as SQLITE_CORRUPT). A run that
  completes after a failed fsync passes only where the judge names why, by file and call
  (`iotrace.so` logs the object that made the call, and what the run synced and published
  after it): SQLite's own directory sync (whose result SQLite ignores by design), a temporary
  never published, a directory synced again, a transaction SQLite rolled back and the
  database then replaced whole, a restore's undo taken verbatim, watch redoing the write,
  and a recover's bookkeeping (its backup, the health row) reported as a warning. A partial run
  (exit 3) is judged by its `FAILED user` lines."""

NOTES = """## How it was done, and what it does not cover

- Families are Swift tests in `Tests/Torture` (target `TortureTests`, skipped unless
  `TGSESS_TORTURE_SCALE` is set) driving the built `tgsess` like an operator would; fuzzing is the
  separate package `fuzz/` (libFuzzer) plus an in-process replay; the secret scan is in the script.
  Each case's result is in the run's `results/*.jsonl`; every tgsess output is kept for the scan.
""" + SEPARATE_NOTES + """
- Lock storms: `lockwatch.so` interposes libc's open/openat/creat, rename*, link*, unlink*, mkdir*,
  rmdir, truncate and chmod, and flock/close of the lock file. Writes through a descriptor opened
  earlier are covered by that open. Two kinds of writes without the lock are by design and are
  counted in the log, not failed: a restore verifies the archive into its own `.staging-<pid>-*`
  directory before it takes the lock, and `check` records its per-user findings in the bot
  database (SQLite's locking only; `check --no-write` does not).
- Fuzzing runs without AddressSanitizer, and SQLite, libarchive, zstd and Foundation's JSON decoder
  are system libraries without coverage instrumentation: coverage guidance sees tgsess's Swift code
  (Store) and GRDB only. Encrypted archives (the age header and stream) are covered by the hostile
  and random-damage cases, not by a fuzz target.
- Stall cases (live-writers): the writer is a Python process like kurigram's bot
  (`sqlite3.connect(timeout=1)`, one commit every 5 ms) on a bot database grown to 16 MiB
  (quick) or 96 MiB (full) of message_log, in rollback and WAL mode; each backup's outcome and
  the writer's error count are judged, never a time. The writer's longest wait at 0.5-4 GB is
  measured by `BENCH_ONLY=stall bash scripts/bench.sh` (BENCHMARKS.md), not here. Session files
  under a writer are covered by the Telethon cases above (each is copied in one ~1 MiB step).
- tgsess and tgsess-bot are debug builds. The bot token is planted in every deployment (config
  `token_file` and `TGSESS_BOT_TOKEN` of every run) so the scan would see it if any output
  carried it; the bot-runner family adds every runner's stdout/stderr and every message and
  request it sent to the fake Bot API (parameters, not URLs) to the scan.
- bot-runner: the Bot API is a fake (`Tests/BotTests/Fixtures/fake_bot_api.py`) on loopback; real
  Telegram's timing, its 409 between instances, webhooks and TLS are not exercised, and the fake
  applies a fault before it acts (a reset after Telegram sent a message, which would make a
  repeated sendMessage a duplicate, is not simulated). The kills are process death of the runner
  only; power loss and the monitor's rounds are not covered."""

# What the runs found and what changed after them, written by hand: kept by every regeneration.
HISTORY = re.compile(r'<!-- findings:begin -->.*<!-- findings:end -->', re.S)
CAMPAIGN = re.compile(r'<!-- fuzz-campaign:begin -->.*<!-- fuzz-campaign:end -->', re.S)
SEPARATE = re.compile(r'<!-- families-run:([a-z,-]+):begin -->.*<!-- families-run:end -->', re.S)


class Family:
    """What one family's results file says."""

    def __init__(self, out, name):
        self.name = name
        self.cases = []
        self.counts = {}
        self.run = None
        path = os.path.join(out, 'results', name + '.jsonl')
        if os.path.exists(path):
            with open(path, encoding='utf-8') as lines:
                for number, line in enumerate(lines, 1):
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line)
                    except ValueError as error:
                        sys.exit('%s:%d: not a JSON line (%s)' % (path, number, error))
                    if 'case' in record:
                        self.cases.append(record)
                    if 'run' in record:
                        self.run = record['run']
                    for key, value in (record.get('counts') or {}).items():
                        self.counts[key] = self.counts.get(key, 0) + value

    @property
    def passed(self):
        return sum(1 for case in self.cases if case['passed'])

    @property
    def failed(self):
        failed = sum(1 for case in self.cases if not case['passed'])
        # A suite that failed outside any case (a crash, an #expect of its own) is one more.
        if self.run and self.run.get('status', 0) != 0 and failed == 0:
            failed = 1
        return failed

    @property
    def seconds(self):
        return (self.run or {}).get('seconds', 0)

    def count(self, key):
        return self.counts.get(key, 0)

    def known(self, key):
        """A tally that may be missing (the test ended before it): '?' then."""
        return str(self.counts[key]) if key in self.counts else '?'

    def summary(self):
        """The family's figures, in a few words."""
        c, k = self.count, self.known
        if self.name == 'crash-points':
            return '%d named crash points; %s of %s random-moment runs killed by SIGKILL' % (
                c('named crash points'), k('random-moment runs killed'), k('random-moment runs'))
        if self.name == 'live-writers':
            return ('%d backups (%d per-user, %d encrypted) while both writers ran; %d backups while a bot writer '
                    'with timeout=1 committed every 5 ms (%d failed cleanly in rollback mode)') % (
                c('backups'), c('per-user backups'), c('encrypted backups'), c('stall backups'),
                c('stall backups failed cleanly'))
        if self.name == 'hostile-archives':
            return '%d crafted, %d randomly damaged' % (c('crafted'), c('randomly damaged'))
        if self.name == 'disk-full':
            return '%d ran to completion, %d failed cleanly, %d on a read-only remount' % (
                c('succeeded'), c('failed cleanly'), c('read-only'))
        if self.name == 'power-loss':
            return ('%d crash states of %d commands (%d in the ext4-ordered model, %d weak-only; %d after the run), '
                    'from %d distinct (%d in what tgsess shows) of %d candidates at %d sync barriers in %d traced calls; '
                    "%d weak states outside SQLite's ordering left out"
                    % (c('crash states'), c('commands'), c('ordered-model states'), c('weak-only states'),
                       c('states after the run'), c('distinct states'), c('distinct visible states'),
                       c('candidate states'), c('sync barriers'), c('traced operations'),
                       c("weak states outside SQLite's ordering")))
        if self.name == 'io-errors':
            classes = ', '.join('%s %d' % (name, c(name + ' faults'))
                                for name in ('read', 'write', 'fsync', 'rename', 'open', 'mkdir'))
            marker = 'completed, fsync failure tolerated: '
            tolerated = sorted((key[len(marker):], value) for key, value in self.counts.items()
                               if key.startswith(marker))
            line = ('%d injection points (%s): %d failed cleanly, %d partial, %d completed'
                    % (c('injection points'), classes, c('failed cleanly'), c('partial'),
                       c('completed') + sum(value for _, value in tolerated)))
            if tolerated:
                line += ' (%d after a failed fsync the judge tolerates: %s)' % (
                    sum(value for _, value in tolerated), ', '.join('%s %d' % pair for pair in tolerated))
            return line
        if self.name == 'lock-storms':
            statuses = sorted((key[len('exit '):], value) for key, value in self.counts.items()
                              if key.startswith('exit '))
            return ('%d storm(s), %d runs (%s); writes without the lock by design: %s into own staging, %s by check'
                    % (c('storms'), c('runs'), ', '.join('exit %s: %d' % status for status in statuses),
                       k('writes into own staging'), k('writes by check')))
        if self.name == 'bad-sessions':
            return '%d file classes, %d crafted strings, %d file mutations, %d string mutations' % (
                c('file classes'), c('crafted strings'), c('file mutations'), c('string mutations'))
        if self.name == 'fuzzing':
            if c('libFuzzer unbuilt'):
                return 'the fuzz targets or their seeds could not be built; see the log'
            if c('libFuzzer targets'):
                return 'libFuzzer: %d targets × %d s, %d at a time, %d inputs in %d s' % (
                    c('libFuzzer targets'), c('libFuzzer seconds per target'), c('libFuzzer jobs'),
                    c('libFuzzer inputs'), c('libFuzzer seconds'))
            return 'in-process checks only; libFuzzer runs with TGSESS_FUZZ_SECONDS > 0 (the full run)'
        if self.name == 'bot-runner':
            return ('/recover: %d crash points (%s reached), %s of %d random kills landed, %s left the broken file '
                    'aside; /logout: %d crash points (%s reached), %s of %d random kills landed; %d race rounds; '
                    '%d fault rounds, %d faults injected; restarts: %s kills, %s updates answered twice; %s archive '
                    'temporaries left for the next backup' % (
                        c('recover crash points'), k('recover crash points reached'), k('recover random kills landed'),
                        c('recover random kills'), k('recover kills with the broken file aside'),
                        c('logout crash points'), k('logout crash points reached'), k('logout random kills landed'),
                        c('logout random kills'), c('race rounds'), c('fault rounds'), c('faults injected'),
                        k('restart kills landed'), k('updates answered twice'),
                        k('archive temporaries left for the next backup')))
        if self.name == 'secrets':
            if not c('secret strings'):
                return 'no secrets were collected, so the scan proves nothing'
            return '%d outputs scanned for %d secret strings, %d with a hit' % (
                c('outputs scanned'), c('secret strings'), c('outputs with a hit'))
        return ''

    def line(self):
        text = '%s: %d cases, %d passed' % (self.name, self.passed + self.failed, self.passed)
        if self.failed:
            text += ', %d failed' % self.failed
        summary = self.summary()
        return text + (' (%s)' % summary if summary else '')


def families_that_ran(out):
    return [family for family in (Family(out, name) for name in FAMILIES) if family.run is not None]


def total_line(families):
    return '%d passed, %d failed' % (sum(f.passed for f in families), sum(f.failed for f in families))


def reliability(out, args):
    families = families_that_ran(out)
    campaign = ''
    separate = ''
    history = ''
    if os.path.exists(args.output):
        text = open(args.output, encoding='utf-8').read()
        found = CAMPAIGN.search(text)
        campaign = found.group(0) if found else ''
        found = HISTORY.search(text)
        history = found.group(0) if found else ''
        # A separate run of families this run did not run stays; one of families it ran is replaced.
        found = SEPARATE.search(text)
        ran = {f.name for f in families}
        if found and not set(found.group(1).split(',')) & ran:
            separate = found.group(0)
    total = total_line(families)
    lines = [
        '# Reliability', '',
        'What `scripts/torture.sh` (the full run) did to tgsess, and what held. Generated by that run;',
        'the figures are its own, not edited. %s.' % total, '',
        '- Command: `sudo scripts/torture.sh` (the full run; `--quick` is the CI subset)',
        '- Commit: `%s` (working tree as committed with this file), seed `%s`' % (args.commit, args.seed),
        '- Machine: %s; %s' % (args.machine, args.swift),
        '- Duration: %d min %d s; debug build of tgsess; every temporary deployment on tmpfs' % (
            args.elapsed // 60, args.elapsed % 60), '',
        '| family | cases | passed | failed | seconds | what "nothing lost" means here |',
        '|---|---|---|---|---|---|',
    ]
    for f in families:
        lines.append('| %s | %d | %d | %d | %d | %s |' % (
            f.name, f.passed + f.failed, f.passed, f.failed, f.seconds, MEANING[f.name]))
    lines += ['', '## Figure lines', '', '```'] + [f.line() for f in families] + [total, '```', '', NOTES]
    if history:
        lines += ['', history]
    if campaign:
        lines += ['', campaign]
    if separate:
        lines += ['', separate]
    write(args.output, '\n'.join(lines) + '\n')
    print('wrote %s' % args.output)


def separate(out, args):
    """Records a full-scale run of some families (`--only`) in RELIABILITY.md, beside the full
    run's figures: families too long for the full run's time are run apart."""
    families = families_that_ran(out)
    names = ','.join(f.name for f in families)
    rows = '\n'.join('| %s | %d | %d | %d | %d | %s |' % (
        f.name, f.passed + f.failed, f.passed, f.failed, f.seconds, MEANING[f.name]) for f in families)
    block = '''<!-- families-run:{names}:begin -->
## Run apart: {names}

`sudo TGSESS_RECORD_FAMILIES=1 scripts/torture.sh --only {names}` (full scale), commit `{commit}`,
seed `{seed}`, {minutes} min {rest} s on {machine}. {total}.

| family | cases | passed | failed | seconds | what "nothing lost" means here |
|---|---|---|---|---|---|
{rows}

```
{figures}
```

{notes}
<!-- families-run:end -->'''.format(
        names=names, commit=args.commit, seed=args.seed, minutes=args.elapsed // 60, rest=args.elapsed % 60,
        machine=args.machine, total=total_line(families), rows=rows,
        figures='\n'.join(f.line() for f in families), notes=SEPARATE_NOTES)
    text = open(args.output, encoding='utf-8').read()
    if SEPARATE.search(text):
        text = SEPARATE.sub(lambda _: block, text)
    else:
        text = text.rstrip('\n') + '\n\n' + block + '\n'
    write(args.output, text)
    print('recorded the run of %s in %s' % (names, args.output))


def campaign(out, args):
    fuzzing = Family(out, 'fuzzing')
    targets = [(case['case'][len('libFuzzer '):], (case.get('counts') or {}).get('libFuzzer inputs', 0))
               for case in fuzzing.cases if case['case'].startswith('libFuzzer ')]
    rows = '\n'.join('| %s | %d s | %d |' % (target, args.seconds, inputs) for target, inputs in targets)
    block = '''<!-- fuzz-campaign:begin -->
## Long fuzzing campaign

Run apart from the full run (it does not fit in its 20 minutes on 2 cores):
`sudo TGSESS_FUZZ_SECONDS={seconds} TGSESS_FUZZ_JOBS={jobs} TGSESS_FUZZ_CAMPAIGN=1 scripts/torture.sh --only fuzzing`,
{jobs} targets at a time, {minutes} min {rest} s in all, on {machine}.

| target | time | inputs run |
|---|---|---|
{rows}

`{figure}`
<!-- fuzz-campaign:end -->'''.format(seconds=args.seconds, jobs=args.jobs, minutes=args.elapsed // 60,
                                     rest=args.elapsed % 60, machine=args.machine, rows=rows, figure=fuzzing.line())
    text = open(args.output, encoding='utf-8').read()
    if CAMPAIGN.search(text):
        text = CAMPAIGN.sub(lambda _: block, text)
    else:
        text = text.rstrip('\n') + '\n\n' + block + '\n'
    write(args.output, text)
    print('recorded the fuzzing campaign in %s' % args.output)


def write(path, text):
    with open(path + '.tmp', 'w', encoding='utf-8') as f:
        f.write(text)
    os.replace(path + '.tmp', path)


def main():
    parser = argparse.ArgumentParser(description='The torture report, from results/*.jsonl.')
    commands = parser.add_subparsers(dest='command', required=True)
    line = commands.add_parser('line', help="one family's figure line")
    line.add_argument('out')
    line.add_argument('family', choices=FAMILIES)
    total = commands.add_parser('total', help='"N passed, M failed"; exit 1 when M > 0')
    total.add_argument('out')
    report = commands.add_parser('reliability', help='write RELIABILITY.md')
    report.add_argument('out')
    report.add_argument('--seed', required=True)
    report.add_argument('--commit', required=True)
    report.add_argument('--machine', required=True)
    report.add_argument('--swift', required=True)
    report.add_argument('--elapsed', type=int, required=True)
    report.add_argument('--output', default='RELIABILITY.md')
    apart = commands.add_parser('separate', help='record a full-scale --only run in RELIABILITY.md')
    apart.add_argument('out')
    apart.add_argument('--seed', required=True)
    apart.add_argument('--commit', required=True)
    apart.add_argument('--machine', required=True)
    apart.add_argument('--elapsed', type=int, required=True)
    apart.add_argument('--output', default='RELIABILITY.md')
    fuzz = commands.add_parser('campaign', help='record a long fuzzing campaign in RELIABILITY.md')
    fuzz.add_argument('out')
    fuzz.add_argument('--seconds', type=int, required=True)
    fuzz.add_argument('--jobs', type=int, required=True)
    fuzz.add_argument('--elapsed', type=int, required=True)
    fuzz.add_argument('--machine', required=True)
    fuzz.add_argument('--output', default='RELIABILITY.md')
    args = parser.parse_args()

    if args.command == 'line':
        print(Family(args.out, args.family).line())
    elif args.command == 'total':
        families = families_that_ran(args.out)
        print(total_line(families))
        sys.exit(1 if sum(f.failed for f in families) else 0)
    elif args.command == 'reliability':
        reliability(args.out, args)
    elif args.command == 'separate':
        separate(args.out, args)
    else:
        campaign(args.out, args)


if __name__ == '__main__':
    main()

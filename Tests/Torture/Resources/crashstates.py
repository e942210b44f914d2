#!/usr/bin/env python3
"""Crash states of a recorded run: what a power cut may leave on disk (Python 3, stdlib only).

The power-loss torture records one tgsess run with iotrace.so (see iotrace.c for the log) and
asks this script which trees a POSIX file system may legally hold after a power cut at any sync
barrier of that run, under two models:

ordered  ext4 data=ordered, approximated. Metadata (create, mkdir, rename, link, unlink, rmdir,
         truncate) reaches the disk in program order, as the journal commits it: a state holds a
         prefix of the metadata operations. An fsync/fdatasync of a file or directory that has a
         metadata change since the last commit commits the journal: every metadata operation
         issued before it is in the prefix (one running transaction, as jbd2 has); an fdatasync
         of a file that only overwrote its blocks commits nothing. File data is written back per
         file in order: each file holds a prefix of its writes (the last one cut at a page,
         4096 bytes), at least up to its last fsync. A write that extends a file is visible only
         once the transaction holding its new size is committed, so it needs every metadata
         operation issued before it in the prefix (data before the metadata that exposes it). A
         rename over an existing file brings the renamed file's earlier writes with it
         (ext4's auto_da_alloc). Not modelled: block reordering inside one write below a page,
         the journal's own checksum failures, and delayed allocation across files.
weak     any reordering within the unsynced window. What is forced is what POSIX promises: a
         file's writes up to its last completed fsync/fdatasync; a name created, removed or
         renamed in a directory once that directory (the target's, for a rename) was fsynced;
         everything before a sync(). Every other operation issued before the crash, each page
         of each write on its own, may or may not be on disk, in any combination. A rename is
         atomic (one operation). The space explodes, so states are chosen per crash point in
         this order: none and all of the unforced operations, each unforced operation alone
         and each left out alone, then random subsets (each operation, or page, kept with
         probability 1/2, from the given seed), up to the per-crash-point budget.

Crash points are the moments just before each sync barrier completes, and the end of the run.
States are deduplicated by the content of the whole tree (every path, type and file byte);
`states` writes one JSON line per distinct state, with the models and crash points that gave it.

Usage:
  crashstates.py snapshot ROOT OUT                      the pre-run tree (inode numbers, bytes)
  crashstates.py states TRACE SNAPSHOT OUT.jsonl --seed N --budget N [--limit N]
  crashstates.py materialize TRACE SNAPSHOT STATES.jsonl DEST ID...  states' ROOTs, written at DEST ({id} in it)
  crashstates.py durable TRACE SNAPSHOT                 the paths a power cut after the run cannot take
TRACE is a directory holding `log` and `data` (iotrace.so's TGSESS_IOTRACE_LOG and _DATA).
"""
import argparse
import hashlib
import json
import os
import random
import shutil
import stat
import sys

PAGE = 4096


def decode(text):
    out = bytearray()
    i = 0
    raw = text.encode()
    while i < len(raw):
        if raw[i] == 0x25 and i + 2 < len(raw):
            out.append(int(raw[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return out.decode('utf-8', 'surrogateescape')


def parent(path):
    return os.path.dirname(path)


# --- snapshot ---------------------------------------------------------------------------------

def snapshot(root, out):
    """Copies the tree at `root` to `out/blobs` and writes `out/tree.json` (path, type, mode,
    inode, mtime, blob) so the replayer can start from it and follow its inodes."""
    os.makedirs(os.path.join(out, 'blobs'))
    entries = []
    root = os.path.abspath(root)
    for directory, names, files in os.walk(root):
        info = os.lstat(directory)
        entries.append({'path': directory, 'type': 'd', 'mode': stat.S_IMODE(info.st_mode), 'ino': info.st_ino})
        for name in sorted(files):
            path = os.path.join(directory, name)
            info = os.lstat(path)
            if not stat.S_ISREG(info.st_mode):
                sys.exit('crashstates: %s is not a regular file or directory' % path)
            blob = str(len(entries))
            shutil.copyfile(path, os.path.join(out, 'blobs', blob))
            entries.append({'path': path, 'type': 'f', 'mode': stat.S_IMODE(info.st_mode), 'ino': info.st_ino,
                            'mtime': info.st_mtime, 'blob': blob})
        names.sort()
    with open(os.path.join(out, 'tree.json'), 'w') as f:
        json.dump({'root': root, 'entries': entries}, f)


# --- the trace --------------------------------------------------------------------------------

class Op:
    """One recorded operation, resolved to the objects (files and directories) it acts on."""
    __slots__ = ('index', 'kind', 'obj', 'path', 'to', 'replaced', 'offset', 'length', 'data_offset', 'size',
                 'extends', 'dirs', 'is_meta', 'pieces')

    def __init__(self, index, kind, **fields):
        self.index = index
        self.kind = kind
        self.obj = fields.get('obj')
        self.path = fields.get('path')
        self.to = fields.get('to')
        self.replaced = fields.get('replaced')
        self.offset = fields.get('offset', 0)
        self.length = fields.get('length', 0)
        self.data_offset = fields.get('data_offset', 0)
        self.size = fields.get('size', 0)
        self.extends = False
        self.dirs = ()
        self.is_meta = kind in ('create', 'mkdir', 'rename', 'link', 'unlink', 'rmdir', 'truncate')
        self.pieces = 1
        if kind == 'write':
            # Page pieces: split at every 4096-aligned offset of the file.
            first = self.offset // PAGE
            last = (self.offset + self.length - 1) // PAGE
            self.pieces = last - first + 1

    def piece_ranges(self):
        """(start, end) file offsets of each page piece of a write."""
        ranges = []
        start = self.offset
        end = self.offset + self.length
        while start < end:
            boundary = min(end, (start // PAGE + 1) * PAGE)
            ranges.append((start, boundary))
            start = boundary
        return ranges

    def describe(self, names):
        name = names.get(self.obj, '?')
        if self.kind == 'write':
            return 'write %s [%d, +%d)' % (name, self.offset, self.length)
        if self.kind == 'truncate':
            return 'truncate %s to %d' % (name, self.size)
        if self.kind == 'sync':
            return 'fsync %s' % name
        if self.kind == 'syncall':
            return 'sync'
        if self.kind in ('rename', 'link'):
            return '%s %s -> %s' % (self.kind, self.path, self.to)
        return '%s %s' % (self.kind, self.path)


class Trace:
    def __init__(self, trace_dir, snapshot_dir):
        self.data_path = os.path.join(trace_dir, 'data')
        tree = json.load(open(os.path.join(snapshot_dir, 'tree.json')))
        self.root = tree['root']
        self.snapshot_dir = snapshot_dir
        # Objects: ids; kind 'f' or 'd'; initial blob for files from the snapshot.
        self.kinds = {}
        self.initial_blob = {}
        self.initial_mode = {}
        self.initial_mtime = {}
        self.initial_ns = {}
        self.names = {}
        current = {}  # inode number -> object id, as the run went
        next_id = [0]

        def new_object(kind, path):
            obj = next_id[0]
            next_id[0] += 1
            self.kinds[obj] = kind
            self.names[obj] = os.path.relpath(path, self.root)
            return obj

        for entry in tree['entries']:
            obj = new_object(entry['type'], entry['path'])
            self.initial_ns[entry['path']] = obj
            self.initial_mode[obj] = entry['mode']
            if entry['type'] == 'f':
                self.initial_blob[obj] = entry['blob']
                self.initial_mtime[obj] = entry['mtime']
            current[entry['ino']] = obj

        ns = dict(self.initial_ns)
        sizes = {obj: os.path.getsize(os.path.join(snapshot_dir, 'blobs', blob))
                 for obj, blob in self.initial_blob.items()}
        self.ops = []
        self.unsupported = []

        def lookup(ino, path):
            ino = int(ino)
            if ino in current and (path is None or ns.get(path) in (None, current[ino])):
                return current[ino]
            if path is not None and path in ns:
                current[ino] = ns[path]
                return ns[path]
            if ino in current:
                return current[ino]
            # A file that appeared below the scope without a recorded create (outside this
            # process, or before the snapshot): unknown content, a broken trace.
            raise SystemExit('crashstates: inode %d (%s) is unknown to the trace' % (ino, path))

        def add(kind, **fields):
            op = Op(len(self.ops), kind, **fields)
            self.ops.append(op)
            return op

        for number, line in enumerate(open(os.path.join(trace_dir, 'log'), encoding='utf-8', errors='surrogateescape'), 1):
            parts = line.rstrip('\n').split(' ')
            tag = parts[0]
            if tag == 'O':
                ino, created, truncated, is_dir, path = int(parts[1]), parts[2] == '1', parts[3] == '1', parts[4] == '1', decode(parts[5])
                if created:
                    obj = new_object('d' if is_dir else 'f', path)
                    current[ino] = obj
                    sizes[obj] = 0
                    op = add('create', obj=obj, path=path)
                    op.dirs = (ns.get(parent(path)),)
                    ns[path] = obj
                else:
                    obj = lookup(ino, path)
                    if truncated and self.kinds[obj] == 'f':
                        add('truncate', obj=obj, size=0)
                        sizes[obj] = 0
            elif tag == 'W':
                ino, offset, length, data_offset = int(parts[1]), int(parts[2]), int(parts[3]), int(parts[4])
                obj = lookup(ino, None)
                op = add('write', obj=obj, offset=offset, length=length, data_offset=data_offset)
                op.extends = offset + length > sizes.get(obj, 0)
                sizes[obj] = max(sizes.get(obj, 0), offset + length)
            elif tag == 'T':
                obj = lookup(parts[1], None)
                add('truncate', obj=obj, size=int(parts[2]))
                sizes[obj] = int(parts[2])
            elif tag == 'S':
                add('sync', obj=lookup(parts[1], None))
            elif tag == 'A':
                add('syncall')
            elif tag == 'R':
                source, target = decode(parts[3]), decode(parts[4])
                obj = lookup(parts[1], source)
                replaced = ns.get(target) if int(parts[2]) else None
                op = add('rename', obj=obj, path=source, to=target, replaced=replaced)
                op.dirs = (ns.get(parent(target)), ns.get(parent(source)))
                self._rename(ns, obj, source, target)
            elif tag == 'L':
                source, target = decode(parts[2]), decode(parts[3])
                obj = lookup(parts[1], source)
                op = add('link', obj=obj, path=source, to=target)
                op.dirs = (ns.get(parent(target)),)
                ns[target] = obj
            elif tag in ('U', 'D'):
                path = decode(parts[2])
                obj = lookup(parts[1], path)
                op = add('unlink' if tag == 'U' else 'rmdir', obj=obj, path=path)
                op.dirs = (ns.get(parent(path)),)
                if ns.get(path) == obj:
                    del ns[path]
            elif tag == 'M':
                path = decode(parts[2])
                obj = new_object('d', path)
                current[int(parts[1])] = obj
                op = add('mkdir', obj=obj, path=path)
                op.dirs = (ns.get(parent(path)),)
                ns[path] = obj
            elif tag == 'X':
                self.unsupported.append(line.strip())
            elif line.strip():
                raise SystemExit('crashstates: log line %d not understood: %r' % (number, line))
        self.final_ns = ns

    @staticmethod
    def _rename(ns, obj, source, target):
        if ns.get(source) == obj:
            del ns[source]
        ns[target] = obj
        # A directory moves with everything below it.
        prefix = source + '/'
        for path in [p for p in ns if p.startswith(prefix)]:
            ns[target + '/' + path[len(prefix):]] = ns.pop(path)

    # --- building a state -----------------------------------------------------------------

    def data(self, op):
        with open(self.data_path, 'rb') as f:
            f.seek(op.data_offset)
            return f.read(op.length)

    def initial_bytes(self, obj):
        blob = self.initial_blob.get(obj)
        if blob is None:
            return b''
        with open(os.path.join(self.snapshot_dir, 'blobs', blob), 'rb') as f:
            return f.read()

    def build(self, selection):
        """The tree of a state: `selection` maps an op index to True (applied whole) or to a
        tuple of the page pieces applied. Returns (namespace, contents of touched files)."""
        ns = dict(self.initial_ns)
        touched = {}
        for op in self.ops:
            chosen = selection.get(op.index)
            if not chosen:
                continue
            kind = op.kind
            if kind == 'create':
                ns[op.path] = op.obj
                touched.setdefault(op.obj, bytearray())
            elif kind == 'mkdir':
                ns[op.path] = op.obj
            elif kind == 'rename':
                self._rename(ns, op.obj, op.path, op.to)
            elif kind == 'link':
                ns[op.to] = op.obj
            elif kind == 'unlink':
                if ns.get(op.path) == op.obj:
                    del ns[op.path]
            elif kind == 'rmdir':
                # A directory that still has entries in this state cannot have been removed.
                prefix = op.path + '/'
                if ns.get(op.path) == op.obj and not any(p.startswith(prefix) for p in ns):
                    del ns[op.path]
            elif kind == 'truncate':
                content = touched.get(op.obj)
                if content is None:
                    content = touched[op.obj] = bytearray(self.initial_bytes(op.obj))
                if op.size < len(content):
                    del content[op.size:]
                else:
                    content.extend(b'\0' * (op.size - len(content)))
            elif kind == 'write':
                content = touched.get(op.obj)
                if content is None:
                    content = touched[op.obj] = bytearray(self.initial_bytes(op.obj))
                data = self.data(op)
                ranges = op.piece_ranges()
                pieces = range(len(ranges)) if chosen is True else chosen
                for piece in pieces:
                    start, end = ranges[piece]
                    chunk = data[start - op.offset:end - op.offset]
                    if len(content) < start:
                        content.extend(b'\0' * (start - len(content)))
                    content[start:end] = chunk
        return ns, touched

    def reachable(self, ns):
        """Paths of the state that hang from the root through directories that are there."""
        out = {}
        for path in sorted(ns, key=lambda p: p.count('/')):
            obj = ns[path]
            if path == self.root:
                out[path] = obj
                continue
            up = parent(path)
            if up in out and self.kinds[out[up]] == 'd' and path.startswith(self.root + '/'):
                out[path] = obj
        return out

    def digest(self, selection):
        """Two digests of a state's tree: of everything (every path, type and file byte), and of
        what tgsess shows (leaving out hidden names: temporaries, staging, the lock file)."""
        ns, touched = self.build(selection)
        tree = self.reachable(ns)
        everything = hashlib.sha256()
        visible = hashlib.sha256()
        for path in sorted(tree):
            obj = tree[path]
            h = path.encode('utf-8', 'surrogateescape') + b'\0' + self.kinds[obj].encode()
            if self.kinds[obj] == 'f':
                content = touched.get(obj)
                h += hashlib.sha256(bytes(content) if content is not None else self.initial_bytes(obj)).digest()
            everything.update(h)
            if not any(part.startswith('.') for part in os.path.relpath(path, self.root).split('/')):
                visible.update(h)
        return everything.hexdigest(), visible.hexdigest()

    def materialize(self, selection, dest):
        ns, touched = self.build(selection)
        tree = self.reachable(ns)
        for path in sorted(tree, key=lambda p: p.count('/')):
            obj = tree[path]
            out = dest + path[len(self.root):]
            if self.kinds[obj] == 'd':
                os.makedirs(out, exist_ok=True)
                os.chmod(out, self.initial_mode.get(obj, 0o700))
            else:
                content = touched.get(obj)
                with open(out, 'wb') as f:
                    f.write(bytes(content) if content is not None else self.initial_bytes(obj))
                os.chmod(out, self.initial_mode.get(obj, 0o600))
                if content is None and obj in self.initial_mtime:
                    os.utime(out, (self.initial_mtime[obj], self.initial_mtime[obj]))


# --- the models -------------------------------------------------------------------------------

class Window:
    """What is forced at one crash point (ops before `point` were issued; barriers before it
    completed), for both models."""

    def __init__(self, trace, point):
        self.point = point
        ops = trace.ops[:point]
        self.ops = ops
        # POSIX: a file's writes up to its last fsync; a directory's entries up to its last fsync.
        last_sync = {}
        last_syncall = -1
        for op in ops:
            if op.kind == 'sync':
                last_sync[op.obj] = op.index
            elif op.kind == 'syncall':
                last_syncall = op.index
        self.posix_forced = set()
        for op in ops:
            if op.kind in ('sync', 'syncall'):
                continue
            if op.index < last_syncall:
                self.posix_forced.add(op.index)
            elif op.kind in ('write', 'truncate'):
                if op.index < last_sync.get(op.obj, -1):
                    self.posix_forced.add(op.index)
            elif op.dirs and op.dirs[0] is not None and op.index < last_sync.get(op.dirs[0], -1):
                self.posix_forced.add(op.index)
        # ext4 ordered: the journal commits at an fsync of anything with a metadata change since
        # the last commit (an extending write changes the size).
        commit = -1
        changed = set()
        for op in ops:
            if op.kind == 'syncall':
                commit = op.index
                changed.clear()
            elif op.kind == 'sync':
                if op.obj in changed:
                    commit = op.index
                    changed.clear()
            elif op.is_meta or (op.kind == 'write' and op.extends):
                changed.add(op.obj)
                for directory in op.dirs:
                    if directory is not None:
                        changed.add(directory)
        self.commit = commit
        self.meta = [op for op in ops if op.is_meta]
        self.meta_forced = sum(1 for op in self.meta if op.index < commit or op.index in self.posix_forced)
        # The prefix must cover every forced metadata op.
        lowest = 0
        for position, op in enumerate(self.meta):
            if op.index < commit or op.index in self.posix_forced:
                lowest = position + 1
        self.meta_lowest = lowest
        self.writes = {}
        for op in ops:
            if op.kind == 'write':
                self.writes.setdefault(op.obj, []).append(op)


def ordered_states(trace, window, rng, budget):
    """(description, selection) pairs of the ordered model at one crash point."""
    meta = window.meta
    # Per file: the index in its write list below which writes are forced (fsync), per
    # metadata prefix the writes allowed (an extending write needs the metadata before it).
    forced_writes = {}
    for obj, ws in window.writes.items():
        last = -1
        for position, op in enumerate(ws):
            if op.index in window.posix_forced:
                last = position
        forced_writes[obj] = last + 1
    out = []

    def selection_for(prefix, data_choice):
        chosen = {}
        meta_done = meta[:prefix]
        for op in meta_done:
            if op.kind != 'truncate':
                chosen[op.index] = True
        cutoff = meta[prefix].index if prefix < len(meta) else window.point
        # Truncates are metadata and data at once: applied with the prefix.
        for op in meta_done:
            if op.kind == 'truncate':
                chosen[op.index] = True
        # auto_da_alloc: a rename replacing a file in the prefix brings the source's writes.
        floors = dict(forced_writes)
        for op in meta_done:
            if op.kind == 'rename' and op.replaced is not None:
                ws = window.writes.get(op.obj, [])
                floors[op.obj] = max(floors.get(op.obj, 0), sum(1 for w in ws if w.index < op.index))
        for obj, ws in window.writes.items():
            # The most this file may hold: writes until the first extending one issued after the prefix.
            ceiling = 0
            for op in ws:
                if op.extends and op.index > cutoff:
                    break
                ceiling += 1
            ceiling = max(ceiling, floors.get(obj, 0))
            count, cut = data_choice(obj, floors.get(obj, 0), ceiling)
            for op in ws[:count]:
                chosen[op.index] = True
            if cut is not None and count < len(ws):
                op = ws[count]
                chosen[op.index] = tuple(range(cut))
        return chosen

    prefixes = list(range(window.meta_lowest, len(meta) + 1))
    for prefix in prefixes:
        label = 'metadata prefix %d/%d' % (prefix, len(meta))
        out.append((label + ', all data written back', selection_for(prefix, lambda o, lo, hi: (hi, None))))
        out.append((label + ', only synced data', selection_for(prefix, lambda o, lo, hi: (lo, None))))
        for obj in sorted(window.writes):
            ws = window.writes[obj]

            def one_short(o, lo, hi, target=obj):
                if o != target:
                    return (hi, None)
                if hi <= lo:
                    return (hi, None)
                count = rng.randint(lo, hi - 1)
                op = ws[count]
                cut = rng.randint(0, op.pieces - 1) if op.pieces > 1 else None
                return (count, cut)
            if forced_writes.get(obj, 0) < len(ws):
                out.append((label + ', %s cut at a page' % trace.names.get(obj, '?'), selection_for(prefix, one_short)))
    return out


def weak_states(trace, window, rng, budget):
    """(description, selection) pairs of the weak model at one crash point."""
    forced = {}
    unforced = []
    for op in window.ops:
        if op.kind in ('sync', 'syncall'):
            continue
        if op.index in window.posix_forced:
            forced[op.index] = True
        else:
            unforced.append(op)
    out = [('nothing unsynced', dict(forced))]
    if not unforced:
        return out
    everything = dict(forced)
    for op in unforced:
        everything[op.index] = True
    out.append(('everything issued', everything))
    singles = []
    for op in unforced:
        without = dict(everything)
        del without[op.index]
        singles.append(('all but: ' + op.describe(trace.names), without))
        alone = dict(forced)
        alone[op.index] = True
        singles.append(('only: ' + op.describe(trace.names), alone))
    rng.shuffle(singles)
    out += singles[:max(0, budget // 2)]
    while len(out) < budget:
        chosen = dict(forced)
        for op in unforced:
            if op.kind == 'write' and op.pieces > 1:
                pieces = tuple(p for p in range(op.pieces) if rng.random() < 0.5)
                if pieces:
                    chosen[op.index] = True if len(pieces) == op.pieces else pieces
            elif rng.random() < 0.5:
                chosen[op.index] = True
        out.append(('random subset', chosen))
        if len(unforced) <= 3 and len(out) >= 2 + 2 * len(unforced) + 4:
            break
    return out


def states(trace_dir, snapshot_dir, out_path, seed, budget, limit):
    trace = Trace(trace_dir, snapshot_dir)
    if trace.unsupported:
        raise SystemExit('crashstates: the trace has calls the replayer cannot model: %s' % trace.unsupported[:5])
    rng = random.Random(seed)
    points = [op.index for op in trace.ops if op.kind in ('sync', 'syncall')] + [len(trace.ops)]
    seen = {}
    order = []
    candidates = 0
    # SQLite (3.40, rollback journal) commits a transaction that shrinks a database by unlinking
    # the journal and then truncating the database, with no sync in between: it relies on the
    # file system keeping those two metadata operations in order, as every journaling one does
    # (and the ordered model). A weak-model state with the truncate but not the unlink has a hot
    # journal whose rollback zero-fills the truncated pages (they were never journaled): such
    # states are outside SQLite's assumptions, counted apart and not checked.
    journal_unlinks = {}
    for op in trace.ops:
        if op.kind == 'unlink' and op.path.endswith('-journal'):
            journal_unlinks.setdefault(op.path[:-len('-journal')], []).append(op.index)
    shrinking = [op for op in trace.ops if op.kind == 'truncate' and op.size > 0]

    def outside_sqlite(selection):
        for op in shrinking:
            if not selection.get(op.index):
                continue
            path = os.path.join(trace.root, trace.names.get(op.obj, ''))
            for index in journal_unlinks.get(path, []):
                if index < op.index and not selection.get(index):
                    return True
        return False
    outside = set()
    for point in points:
        window = Window(trace, point)
        for model, generate in (('ordered', ordered_states), ('weak', weak_states)):
            for description, selection in generate(trace, window, rng, budget):
                candidates += 1
                digest, visible = trace.digest(selection)
                if model == 'weak' and outside_sqlite(selection):
                    outside.add(digest)
                    continue
                entry = seen.get(digest)
                if entry is None:
                    entry = seen[digest] = {'digest': digest, 'visible': visible, 'models': [], 'point': point,
                                            'points': 0, 'description': description, 'model': model,
                                            'selection': {str(k): (v if v is True else list(v))
                                                          for k, v in selection.items()}}
                    order.append(digest)
                if model not in entry['models']:
                    entry['models'].append(model)
                entry['points'] += 1
    chosen = order
    if limit and len(order) > limit:
        # Ordered-model states before weak-only ones, and a state that differs in what tgsess shows
        # before one that differs only in hidden files (temporaries, staging); sampled within a rank.
        def rank(digest):
            entry = seen[digest]
            return (0 if 'ordered' in entry['models'] else 1)
        firsts = {}
        for digest in order:
            firsts.setdefault(seen[digest]['visible'], digest)
        tiers = [[d for d in order if firsts[seen[d]['visible']] == d and rank(d) == 0],
                 [d for d in order if firsts[seen[d]['visible']] == d and rank(d) == 1],
                 [d for d in order if firsts[seen[d]['visible']] != d and rank(d) == 0],
                 [d for d in order if firsts[seen[d]['visible']] != d and rank(d) == 1]]
        chosen = []
        for tier in tiers:
            room = limit - len(chosen)
            if room <= 0:
                break
            chosen += tier if len(tier) <= room else rng.sample(tier, room)
        position = {d: i for i, d in enumerate(order)}
        chosen.sort(key=position.get)
    ops_total = len(trace.ops)
    barriers = len(points) - 1
    with open(out_path, 'w') as f:
        for number, digest in enumerate(chosen):
            entry = seen[digest]
            entry['id'] = number
            point = entry['point']
            entry['crash'] = ('after the run' if point == ops_total else
                              'before %s (op %d of %d)' % (trace.ops[point].describe(trace.names), point, ops_total))
            f.write(json.dumps(entry) + '\n')
    summary = {'operations': ops_total, 'barriers': barriers, 'crash points': len(points),
               'candidates': candidates, 'distinct': len(order), 'chosen': len(chosen),
               'distinct visible': len({seen[d]['visible'] for d in order}),
               'chosen visible': len({seen[d]['visible'] for d in chosen}),
               'ordered': sum(1 for d in chosen if 'ordered' in seen[d]['models']),
               'weak only': sum(1 for d in chosen if 'ordered' not in seen[d]['models']),
               'outside sqlite': len(outside - set(seen))}
    print(json.dumps(summary))


def materialize(trace_dir, snapshot_dir, states_path, ids, dest_pattern):
    trace = Trace(trace_dir, snapshot_dir)
    wanted = set(ids)
    for line in open(states_path):
        entry = json.loads(line)
        if entry['id'] not in wanted:
            continue
        selection = {int(k): (True if v is True else tuple(v)) for k, v in entry['selection'].items()}
        dest = dest_pattern.replace('{id}', str(entry['id']))
        if os.path.exists(dest):
            shutil.rmtree(dest)
        trace.materialize(selection, dest)


def durable(trace_dir, snapshot_dir):
    """Prints every path (relative to the root) of the state that holds, once the run exited,
    only what it made durable by the rules of the weak model: what a power cut cannot take."""
    trace = Trace(trace_dir, snapshot_dir)
    window = Window(trace, len(trace.ops))
    ns, _ = trace.build({index: True for index in window.posix_forced})
    for path in sorted(trace.reachable(ns)):
        if path != trace.root:
            print(os.path.relpath(path, trace.root))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest='command', required=True)
    s = commands.add_parser('snapshot')
    s.add_argument('root')
    s.add_argument('out')
    e = commands.add_parser('states')
    e.add_argument('trace')
    e.add_argument('snapshot')
    e.add_argument('out')
    e.add_argument('--seed', type=int, default=1)
    e.add_argument('--budget', type=int, default=16, help='weak-model states per crash point at most')
    e.add_argument('--limit', type=int, default=0, help='distinct states kept at most (0: all)')
    m = commands.add_parser('materialize')
    m.add_argument('trace')
    m.add_argument('snapshot')
    m.add_argument('states')
    m.add_argument('dest', help='where the root of each state goes; {id} is replaced by the state id')
    m.add_argument('ids', type=int, nargs='+')
    d = commands.add_parser('durable')
    d.add_argument('trace')
    d.add_argument('snapshot')
    args = parser.parse_args()
    if args.command == 'snapshot':
        snapshot(args.root, args.out)
    elif args.command == 'states':
        states(args.trace, args.snapshot, args.out, args.seed, args.budget, args.limit)
    elif args.command == 'durable':
        durable(args.trace, args.snapshot)
    else:
        materialize(args.trace, args.snapshot, args.states, args.ids, args.dest)


if __name__ == '__main__':
    main()

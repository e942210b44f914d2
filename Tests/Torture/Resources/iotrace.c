// iotrace: an LD_PRELOAD interposer for the power-loss and I/O-error torture. Only calls on paths
// below the scope (TGSESS_IOTRACE_SCOPE: absolute directories separated by ':') are looked at;
// everything else passes through untouched. Two roles, chosen by the environment:
//
// Recording (TGSESS_IOTRACE_LOG and TGSESS_IOTRACE_DATA set): every call that matters for what a
// power cut may leave is appended to the log, in the order the calls completed (a mutex makes each
// call and its log line one step, so threads interleave as whole calls), with the bytes of every
// write appended to the data file. Files are named by inode number (fstat/lstat at the call), so
// a write through any descriptor, and a file renamed or linked later, are followed without
// resolving paths. Log lines (paths percent-encoded: '%', ' ' and control bytes):
//   O <ino> <created 0|1> <truncated 0|1> <directory 0|1> <path>   open/openat/creat (also of directories)
//   W <ino> <offset> <length> <data offset>                        write/pwrite/writev/pwritev
//   T <ino> <size>                                                 ftruncate/truncate
//   S <ino>                                                        fsync/fdatasync completed (file or directory)
//   A                                                              sync/syncfs completed
//   R <ino> <replaced ino or 0> <from> <to>                        rename/renameat/renameat2
//   L <ino> <from> <to>                                            link/linkat
//   U <ino> <path>                                                 unlink/unlinkat
//   D <ino> <path>                                                 rmdir/unlinkat(AT_REMOVEDIR)
//   M <ino> <path>                                                 mkdir/mkdirat
//   X <call> <path>                                                a call the replayer cannot model
//                                                                  (copy_file_range, sendfile, a shared
//                                                                  writable mmap, stdio opened for writing)
//
// Fault injection (TGSESS_IOFAULT_OP set): the Nth call (TGSESS_IOFAULT_N, from 1) of one class
// fails with an errno (TGSESS_IOFAULT_ERRNO: names or numbers separated by ',', the first one
// plausible for that call is used) without being made. Classes: read (read, pread, readv,
// preadv), write (write, pwrite, writev, pwritev), fsync (fsync, fdatasync), rename (rename*,
// link*: the calls that publish a file), open (open*, creat) and mkdir (mkdir*). The injected
// fault is noted in TGSESS_IOFAULT_LOG ("F <class> <n> <errno> <path>"), followed by the object
// that made the call ("C <file name>", e.g. libsqlite3.so.0 or tgsess: from the return address,
// dladdr) and then, in call order, what the run did after it below the scope: "S <path>" for each
// fsync/fdatasync that succeeded (file or directory) and "P <from> <to>" for each rename or link
// that succeeded (a publish). A judge tells from these an fsync failure the program recovered
// from (the file never published, or synced again) from one it ignored. With N = 0 nothing fails
// and the calls of each class are counted into TGSESS_IOFAULT_COUNTS at exit ("<class> <count>");
// with TGSESS_IOFAULT_CALLS set too, every counted call is listed there ("<class> <n> <path>"), so
// a test can pick the call to fail by its file.
//
// Build: cc -shared -fPIC -O2 -o iotrace.so iotrace.c -ldl -lpthread
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_SCOPES 4
#define MAX_FDS 65536

static char scopes[MAX_SCOPES][PATH_MAX];
static size_t scope_lengths[MAX_SCOPES];
static int scope_count;
static int log_fd = -1;
static int data_fd = -1;
static long long data_size;
static unsigned char scoped_fd[MAX_FDS];
static pthread_mutex_t mutex = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
static int is_active;

enum { C_READ, C_WRITE, C_FSYNC, C_RENAME, C_OPEN, C_MKDIR, CLASS_COUNT };
static const char *class_names[CLASS_COUNT] = {"read", "write", "fsync", "rename", "open", "mkdir"};
static int fault_class = -1;
static int faulting; // counting calls, and failing one when fault_n > 0
static long fault_n;
static long counts[CLASS_COUNT];
static int fault_errnos[8];
static int fault_errno_count;
static char fault_log[PATH_MAX];
static char count_path[PATH_MAX];
static int calls_fd = -1;
static int fault_fired;            // the injected fault happened: log what follows it
static __thread const void *caller; // return address of the interposed call being made

#define REAL(name) real_##name
#define DECLARE(ret, name, params) static ret(*real_##name) params;
DECLARE(int, open, (const char *, int, ...))
DECLARE(int, open64, (const char *, int, ...))
DECLARE(int, openat, (int, const char *, int, ...))
DECLARE(int, openat64, (int, const char *, int, ...))
DECLARE(int, close, (int))
DECLARE(ssize_t, write, (int, const void *, size_t))
DECLARE(ssize_t, pwrite, (int, const void *, size_t, off_t))
DECLARE(ssize_t, pwrite64, (int, const void *, size_t, off64_t))
DECLARE(ssize_t, writev, (int, const struct iovec *, int))
DECLARE(ssize_t, pwritev, (int, const struct iovec *, int, off_t))
DECLARE(ssize_t, read, (int, void *, size_t))
DECLARE(ssize_t, pread, (int, void *, size_t, off_t))
DECLARE(ssize_t, pread64, (int, void *, size_t, off64_t))
DECLARE(ssize_t, readv, (int, const struct iovec *, int))
DECLARE(ssize_t, preadv, (int, const struct iovec *, int, off_t))
DECLARE(int, fsync, (int))
DECLARE(int, fdatasync, (int))
DECLARE(int, ftruncate, (int, off_t))
DECLARE(int, ftruncate64, (int, off64_t))
DECLARE(int, truncate, (const char *, off_t))
DECLARE(int, renameat, (int, const char *, int, const char *))
DECLARE(int, renameat2, (int, const char *, int, const char *, unsigned int))
DECLARE(int, linkat, (int, const char *, int, const char *, int))
DECLARE(int, unlinkat, (int, const char *, int))
DECLARE(int, mkdirat, (int, const char *, mode_t))
DECLARE(int, dup, (int))
DECLARE(int, dup2, (int, int))
DECLARE(int, dup3, (int, int, int))
DECLARE(void, sync, (void))
DECLARE(int, syncfs, (int))
DECLARE(ssize_t, copy_file_range, (int, off64_t *, int, off64_t *, size_t, unsigned int))
DECLARE(ssize_t, sendfile, (int, int, off_t *, size_t))
DECLARE(ssize_t, sendfile64, (int, int, off64_t *, size_t))
DECLARE(void *, mmap, (void *, size_t, int, int, int, off_t))
DECLARE(void *, mmap64, (void *, size_t, int, int, int, off64_t))
DECLARE(FILE *, fopen, (const char *, const char *))
DECLARE(FILE *, fopen64, (const char *, const char *))

#define RESOLVE(name)            \
  do {                           \
    if (!resolved) resolve_all(); \
  } while (0)
static void resolve_all(void);

static int resolved;

static void resolve_all(void) {
#define LOAD(name) real_##name = dlsym(RTLD_NEXT, #name)
  LOAD(open); LOAD(open64); LOAD(openat); LOAD(openat64); LOAD(close); LOAD(write);
  LOAD(pwrite); LOAD(pwrite64); LOAD(writev); LOAD(pwritev); LOAD(read); LOAD(pread);
  LOAD(pread64); LOAD(readv); LOAD(preadv); LOAD(fsync); LOAD(fdatasync); LOAD(ftruncate);
  LOAD(ftruncate64); LOAD(truncate); LOAD(renameat); LOAD(renameat2); LOAD(linkat); LOAD(unlinkat);
  LOAD(mkdirat); LOAD(dup); LOAD(dup2); LOAD(dup3); LOAD(sync); LOAD(syncfs);
  LOAD(copy_file_range); LOAD(sendfile); LOAD(sendfile64); LOAD(mmap); LOAD(mmap64); LOAD(fopen);
  LOAD(fopen64);
#undef LOAD
  resolved = 1;
}

static int errno_named(const char *name) {
  static const struct { const char *name; int value; } table[] = {
    {"EIO", EIO}, {"ENOSPC", ENOSPC}, {"EDQUOT", EDQUOT}, {"EROFS", EROFS}, {"EACCES", EACCES},
  };
  for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
    if (strcmp(name, table[i].name) == 0) return table[i].value;
  return atoi(name);
}

static void write_counts(void) {
  if (!count_path[0]) return;
  int fd = real_open(count_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return;
  char line[64];
  for (int i = 0; i < CLASS_COUNT; i++) {
    int n = snprintf(line, sizeof(line), "%s %ld\n", class_names[i], counts[i]);
    ssize_t ignored = real_write(fd, line, (size_t)n);
    (void)ignored;
  }
  real_close(fd);
}

__attribute__((constructor)) static void iotrace_init(void) {
  resolve_all();
  const char *scope = getenv("TGSESS_IOTRACE_SCOPE");
  if (!scope || !*scope) return;
  const char *cursor = scope;
  while (*cursor && scope_count < MAX_SCOPES) {
    const char *end = strchr(cursor, ':');
    size_t length = end ? (size_t)(end - cursor) : strlen(cursor);
    if (length > 0 && length < PATH_MAX) {
      memcpy(scopes[scope_count], cursor, length);
      scopes[scope_count][length] = 0;
      while (length > 1 && scopes[scope_count][length - 1] == '/') scopes[scope_count][--length] = 0;
      scope_lengths[scope_count++] = length;
    }
    if (!end) break;
    cursor = end + 1;
  }
  const char *log = getenv("TGSESS_IOTRACE_LOG");
  const char *data = getenv("TGSESS_IOTRACE_DATA");
  if (log && data) {
    log_fd = real_open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    data_fd = real_open(data, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    struct stat info;
    if (data_fd >= 0 && fstat(data_fd, &info) == 0) data_size = info.st_size;
  }
  const char *op = getenv("TGSESS_IOFAULT_OP");
  if (op) {
    for (int i = 0; i < CLASS_COUNT; i++)
      if (strcmp(op, class_names[i]) == 0) fault_class = i;
    const char *n = getenv("TGSESS_IOFAULT_N");
    fault_n = n ? atol(n) : 0;
    const char *names = getenv("TGSESS_IOFAULT_ERRNO");
    if (names) {
      char copy[256];
      snprintf(copy, sizeof(copy), "%s", names);
      char *save = NULL;
      for (char *token = strtok_r(copy, ",", &save); token && fault_errno_count < 8; token = strtok_r(NULL, ",", &save))
        fault_errnos[fault_errno_count++] = errno_named(token);
    }
    if (fault_errno_count == 0) fault_errnos[fault_errno_count++] = EIO;
    const char *flog = getenv("TGSESS_IOFAULT_LOG");
    if (flog) snprintf(fault_log, sizeof(fault_log), "%s", flog);
    const char *calls = getenv("TGSESS_IOFAULT_CALLS");
    if (calls && *calls) calls_fd = real_open(calls, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    const char *cpath = getenv("TGSESS_IOFAULT_COUNTS");
    if (cpath) {
      snprintf(count_path, sizeof(count_path), "%s", cpath);
      atexit(write_counts);
    }
    faulting = 1;
  }
  is_active = scope_count > 0 && (log_fd >= 0 || faulting);
}

// The absolute form of (dirfd, path), without resolving symlinks.
static void absolute(int dirfd, const char *path, char *out, size_t size) {
  if (!path) {
    out[0] = 0;
    return;
  }
  if (path[0] == '/') {
    snprintf(out, size, "%s", path);
    return;
  }
  char base[PATH_MAX] = "";
  if (dirfd == AT_FDCWD) {
    if (!getcwd(base, sizeof(base))) base[0] = 0;
  } else {
    char link[64];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd);
    ssize_t n = readlink(link, base, sizeof(base) - 1);
    base[n > 0 ? n : 0] = 0;
  }
  snprintf(out, size, "%s/%s", base, path);
}

static int in_scope(const char *path) {
  for (int i = 0; i < scope_count; i++) {
    size_t length = scope_lengths[i];
    if (strncmp(path, scopes[i], length) == 0 && (path[length] == '/' || path[length] == 0)) return 1;
  }
  return 0;
}

static int scoped_path(int dirfd, const char *path, char *full) {
  if (!is_active || !path) return 0;
  absolute(dirfd, path, full, PATH_MAX);
  return in_scope(full);
}

static int fd_scoped(int fd) { return is_active && fd >= 0 && fd < MAX_FDS && scoped_fd[fd]; }

static void set_scoped(int fd, int value) {
  if (fd >= 0 && fd < MAX_FDS) scoped_fd[fd] = (unsigned char)value;
}

// --- the log ------------------------------------------------------------------------------

static void encode(const char *path, char *out, size_t size) {
  size_t j = 0;
  for (size_t i = 0; path[i] && j + 4 < size; i++) {
    unsigned char c = (unsigned char)path[i];
    if (c == '%' || c == ' ' || c < 0x20 || c == 0x7f) j += (size_t)snprintf(out + j, size - j, "%%%02X", c);
    else out[j++] = (char)c;
  }
  out[j] = 0;
}

static void emit(const char *format, ...) {
  if (log_fd < 0) return;
  char line[3 * PATH_MAX + 256];
  va_list ap;
  va_start(ap, format);
  int n = vsnprintf(line, sizeof(line), format, ap);
  va_end(ap);
  if (n <= 0) return;
  if ((size_t)n >= sizeof(line)) n = sizeof(line) - 1;
  ssize_t ignored = real_write(log_fd, line, (size_t)n);
  (void)ignored;
}

static unsigned long long fd_inode(int fd) {
  struct stat info;
  return fstat(fd, &info) == 0 ? (unsigned long long)info.st_ino : 0;
}

static unsigned long long path_inode(const char *full) {
  struct stat info;
  return lstat(full, &info) == 0 ? (unsigned long long)info.st_ino : 0;
}

static int recording(void) { return log_fd >= 0; }

// Appends `length` bytes to the data file; returns their offset there.
static long long keep_data(const void *bytes, size_t length) {
  long long offset = data_size;
  const char *cursor = bytes;
  size_t remaining = length;
  while (remaining > 0) {
    ssize_t n = real_write(data_fd, cursor, remaining);
    if (n <= 0) break;
    cursor += n;
    remaining -= (size_t)n;
  }
  data_size += (long long)length;
  return offset;
}

// --- faults -------------------------------------------------------------------------------

static int plausible(int class, int error, int flags, const char *path) {
  switch (class) {
  case C_READ: return error == EIO;
  case C_WRITE:
  case C_FSYNC: return error == EIO || error == ENOSPC || error == EDQUOT;
  case C_OPEN: {
    int writes = (flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC)) != 0;
    if (error == EIO || error == EACCES) return 1;
    if (error == EROFS) return writes;
    // No space for a new inode: only when the open creates the file (POSIX open(2)).
    return (error == ENOSPC || error == EDQUOT) && (flags & O_CREAT) && path && access(path, F_OK) != 0;
  }
  default: return 1;
  }
}

// The file name (without directories) of the object holding `address`, or "?".
static const char *object_name(const void *address) {
  Dl_info info;
  if (!address || !dladdr(address, &info) || !info.dli_fname || !*info.dli_fname) return "?";
  const char *slash = strrchr(info.dli_fname, '/');
  return slash ? slash + 1 : info.dli_fname;
}

// Appends one line to the fault log.
static void fault_note(const char *line, size_t length) {
  if (!fault_log[0]) return;
  int fd = real_open(fault_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return;
  ssize_t ignored = real_write(fd, line, length);
  (void)ignored;
  real_close(fd);
}

// After the fault: notes a successful fsync of `path` ('S') or a publish of `from` as `to` ('P').
static void after_fault(char kind, const char *from, const char *to) {
  if (!fault_fired) return;
  char a[3 * PATH_MAX], b[3 * PATH_MAX], line[6 * PATH_MAX + 16];
  encode(from, a, sizeof(a));
  int length;
  if (to) {
    encode(to, b, sizeof(b));
    length = snprintf(line, sizeof(line), "%c %s %s\n", kind, a, b);
  } else {
    length = snprintf(line, sizeof(line), "%c %s\n", kind, a);
  }
  if (length > 0 && (size_t)length < sizeof(line)) {
    pthread_mutex_lock(&mutex);
    fault_note(line, (size_t)length);
    pthread_mutex_unlock(&mutex);
  }
}

// Counts one call of `class` and returns the errno to fail it with (0: make the call).
static int fault(int class, const char *path, int flags) {
  if (!faulting) return 0;
  pthread_mutex_lock(&mutex);
  long n = ++counts[class];
  int error = 0;
  if (calls_fd >= 0) {
    char encoded[3 * PATH_MAX];
    encode(path ? path : "?", encoded, sizeof(encoded));
    char line[3 * PATH_MAX + 64];
    int length = snprintf(line, sizeof(line), "%s %ld %s\n", class_names[class], n, encoded);
    if (length > 0) {
      ssize_t ignored = real_write(calls_fd, line, (size_t)length);
      (void)ignored;
    }
  }
  if (class == fault_class && fault_n > 0 && n == fault_n) {
    for (int i = 0; i < fault_errno_count && !error; i++)
      if (plausible(class, fault_errnos[i], flags, path)) error = fault_errnos[i];
    if (!error) error = EIO;
    char encoded[3 * PATH_MAX];
    encode(path ? path : "?", encoded, sizeof(encoded));
    char line[3 * PATH_MAX + 64];
    int length = snprintf(line, sizeof(line), "F %s %ld %d %s\n", class_names[class], n, error, encoded);
    if (length > 0) fault_note(line, (size_t)length);
    length = snprintf(line, sizeof(line), "C %s\n", object_name(caller));
    if (length > 0) fault_note(line, (size_t)length);
    fault_fired = 1;
  }
  if (class == C_FSYNC) caller = NULL;
  pthread_mutex_unlock(&mutex);
  return error;
}

static void fd_path(int fd, char *out) {
  char link[64];
  snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, out, PATH_MAX - 1);
  out[n > 0 ? n : 0] = 0;
}

static int fd_fault(int class, int fd) {
  if (!faulting || !fd_scoped(fd)) return 0;
  char path[PATH_MAX];
  fd_path(fd, path);
  return fault(class, path, 0);
}

// --- open / close -------------------------------------------------------------------------

static int do_open(int dirfd, const char *path, int flags, mode_t mode, int is64, int at) {
  char full[PATH_MAX];
  int scoped = scoped_path(dirfd, path, full);
  if (!scoped) {
    if (at) return is64 ? real_openat64(dirfd, path, flags, mode) : real_openat(dirfd, path, flags, mode);
    return is64 ? real_open64(path, flags, mode) : real_open(path, flags, mode);
  }
  int error = fault(C_OPEN, full, flags);
  if (error) {
    errno = error;
    return -1;
  }
  if (recording()) pthread_mutex_lock(&mutex);
  int existed = 1;
  long long old_size = 0;
  if (recording()) {
    struct stat info;
    if (lstat(full, &info) != 0) existed = 0;
    else old_size = info.st_size;
  }
  int fd = at ? (is64 ? real_openat64(dirfd, path, flags, mode) : real_openat(dirfd, path, flags, mode))
              : (is64 ? real_open64(path, flags, mode) : real_open(path, flags, mode));
  int saved = errno;
  if (fd >= 0) {
    set_scoped(fd, 1);
    if (recording()) {
      struct stat info;
      int is_directory = fstat(fd, &info) == 0 && S_ISDIR(info.st_mode);
      char encoded[3 * PATH_MAX];
      encode(full, encoded, sizeof(encoded));
      emit("O %llu %d %d %d %s\n", (unsigned long long)info.st_ino, !existed,
           existed && (flags & O_TRUNC) && old_size > 0 && !is_directory, is_directory, encoded);
    }
  }
  if (recording()) pthread_mutex_unlock(&mutex);
  errno = saved;
  return fd;
}

#define MODE_ARG(flags)                         \
  mode_t mode = 0;                              \
  if ((flags) & (O_CREAT | O_TMPFILE)) {        \
    va_list ap;                                 \
    va_start(ap, flags);                        \
    mode = va_arg(ap, mode_t);                  \
    va_end(ap);                                 \
  }

int open(const char *path, int flags, ...) {
  MODE_ARG(flags)
  RESOLVE(open);
  return do_open(AT_FDCWD, path, flags, mode, 0, 0);
}
int open64(const char *path, int flags, ...) {
  MODE_ARG(flags)
  RESOLVE(open64);
  return do_open(AT_FDCWD, path, flags, mode, 1, 0);
}
int openat(int dirfd, const char *path, int flags, ...) {
  MODE_ARG(flags)
  RESOLVE(openat);
  return do_open(dirfd, path, flags, mode, 0, 1);
}
int openat64(int dirfd, const char *path, int flags, ...) {
  MODE_ARG(flags)
  RESOLVE(openat64);
  return do_open(dirfd, path, flags, mode, 1, 1);
}
int __open_2(const char *path, int flags) { RESOLVE(open); return do_open(AT_FDCWD, path, flags, 0, 0, 0); }
int __open64_2(const char *path, int flags) { RESOLVE(open); return do_open(AT_FDCWD, path, flags, 0, 1, 0); }
int __openat_2(int dirfd, const char *path, int flags) { RESOLVE(open); return do_open(dirfd, path, flags, 0, 0, 1); }
int __openat64_2(int dirfd, const char *path, int flags) { RESOLVE(open); return do_open(dirfd, path, flags, 0, 1, 1); }
int creat(const char *path, mode_t mode) { RESOLVE(open); return do_open(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode, 0, 0); }
int creat64(const char *path, mode_t mode) { RESOLVE(open); return do_open(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode, 1, 0); }

int close(int fd) {
  RESOLVE(close);
  if (fd >= 0 && fd < MAX_FDS) scoped_fd[fd] = 0;
  return real_close(fd);
}

int dup(int fd) {
  RESOLVE(dup);
  int copy = real_dup(fd);
  if (copy >= 0) set_scoped(copy, fd_scoped(fd));
  return copy;
}
int dup2(int fd, int copy) {
  RESOLVE(dup2);
  int result = real_dup2(fd, copy);
  if (result >= 0) set_scoped(result, fd_scoped(fd));
  return result;
}
int dup3(int fd, int copy, int flags) {
  RESOLVE(dup3);
  int result = real_dup3(fd, copy, flags);
  if (result >= 0) set_scoped(result, fd_scoped(fd));
  return result;
}

// --- reads --------------------------------------------------------------------------------

#define READ_CALL(ret, name, params, args)      \
  ret name params {                             \
    RESOLVE(name);                              \
    int error = fd_fault(C_READ, fd);           \
    if (error) {                                \
      errno = error;                            \
      return -1;                                \
    }                                           \
    return real_##name args;                    \
  }

READ_CALL(ssize_t, read, (int fd, void *buffer, size_t count), (fd, buffer, count))
READ_CALL(ssize_t, pread, (int fd, void *buffer, size_t count, off_t offset), (fd, buffer, count, offset))
READ_CALL(ssize_t, pread64, (int fd, void *buffer, size_t count, off64_t offset), (fd, buffer, count, offset))
READ_CALL(ssize_t, readv, (int fd, const struct iovec *vector, int count), (fd, vector, count))
READ_CALL(ssize_t, preadv, (int fd, const struct iovec *vector, int count, off_t offset), (fd, vector, count, offset))

// --- writes -------------------------------------------------------------------------------

// Records `length` bytes written at `offset` (-1: the descriptor's position before the call,
// which the caller passes in `position`).
static void note_write(int fd, long long offset, const void *bytes, size_t length) {
  if (length == 0) return;
  long long kept = keep_data(bytes, length);
  emit("W %llu %lld %zu %lld\n", fd_inode(fd), offset, length, kept);
}

static void note_vector(int fd, long long offset, const struct iovec *vector, int count, size_t written) {
  for (int i = 0; i < count && written > 0; i++) {
    size_t part = vector[i].iov_len < written ? vector[i].iov_len : written;
    note_write(fd, offset, vector[i].iov_base, part);
    offset += (long long)part;
    written -= part;
  }
}

// Where a write() on `fd` lands: the end with O_APPEND, else the current position.
static long long position(int fd) {
  int flags = fcntl(fd, F_GETFL);
  if (flags >= 0 && (flags & O_APPEND)) {
    struct stat info;
    return fstat(fd, &info) == 0 ? (long long)info.st_size : 0;
  }
  return (long long)lseek(fd, 0, SEEK_CUR);
}

ssize_t write(int fd, const void *buffer, size_t count) {
  RESOLVE(write);
  if (!fd_scoped(fd)) return real_write(fd, buffer, count);
  int error = fd_fault(C_WRITE, fd);
  if (error) {
    errno = error;
    return -1;
  }
  if (!recording()) return real_write(fd, buffer, count);
  pthread_mutex_lock(&mutex);
  long long at = position(fd);
  ssize_t n = real_write(fd, buffer, count);
  int saved = errno;
  if (n > 0) note_write(fd, at, buffer, (size_t)n);
  pthread_mutex_unlock(&mutex);
  errno = saved;
  return n;
}

#define PWRITE_CALL(name, offset_type)                                              \
  ssize_t name(int fd, const void *buffer, size_t count, offset_type offset) {      \
    RESOLVE(name);                                                                  \
    if (!fd_scoped(fd)) return real_##name(fd, buffer, count, offset);              \
    int error = fd_fault(C_WRITE, fd);                                              \
    if (error) {                                                                    \
      errno = error;                                                                \
      return -1;                                                                    \
    }                                                                               \
    if (!recording()) return real_##name(fd, buffer, count, offset);                \
    pthread_mutex_lock(&mutex);                                                     \
    ssize_t n = real_##name(fd, buffer, count, offset);                             \
    int saved = errno;                                                              \
    if (n > 0) note_write(fd, (long long)offset, buffer, (size_t)n);                \
    pthread_mutex_unlock(&mutex);                                                   \
    errno = saved;                                                                  \
    return n;                                                                       \
  }

PWRITE_CALL(pwrite, off_t)
PWRITE_CALL(pwrite64, off64_t)

ssize_t writev(int fd, const struct iovec *vector, int count) {
  RESOLVE(writev);
  if (!fd_scoped(fd)) return real_writev(fd, vector, count);
  int error = fd_fault(C_WRITE, fd);
  if (error) {
    errno = error;
    return -1;
  }
  if (!recording()) return real_writev(fd, vector, count);
  pthread_mutex_lock(&mutex);
  long long at = position(fd);
  ssize_t n = real_writev(fd, vector, count);
  int saved = errno;
  if (n > 0) note_vector(fd, at, vector, count, (size_t)n);
  pthread_mutex_unlock(&mutex);
  errno = saved;
  return n;
}

ssize_t pwritev(int fd, const struct iovec *vector, int count, off_t offset) {
  RESOLVE(pwritev);
  if (!fd_scoped(fd)) return real_pwritev(fd, vector, count, offset);
  int error = fd_fault(C_WRITE, fd);
  if (error) {
    errno = error;
    return -1;
  }
  if (!recording()) return real_pwritev(fd, vector, count, offset);
  pthread_mutex_lock(&mutex);
  ssize_t n = real_pwritev(fd, vector, count, offset);
  int saved = errno;
  if (n > 0) note_vector(fd, (long long)offset, vector, count, (size_t)n);
  pthread_mutex_unlock(&mutex);
  errno = saved;
  return n;
}

#define TRUNCATE_CALL(name, offset_type)                         \
  int name(int fd, offset_type length) {                         \
    RESOLVE(name);                                               \
    if (!fd_scoped(fd) || !recording()) return real_##name(fd, length); \
    pthread_mutex_lock(&mutex);                                  \
    int result = real_##name(fd, length);                        \
    int saved = errno;                                           \
    if (result == 0) emit("T %llu %lld\n", fd_inode(fd), (long long)length); \
    pthread_mutex_unlock(&mutex);                                \
    errno = saved;                                               \
    return result;                                               \
  }

TRUNCATE_CALL(ftruncate, off_t)
TRUNCATE_CALL(ftruncate64, off64_t)

int truncate(const char *path, off_t length) {
  RESOLVE(truncate);
  char full[PATH_MAX];
  if (!scoped_path(AT_FDCWD, path, full) || !recording()) return real_truncate(path, length);
  pthread_mutex_lock(&mutex);
  int result = real_truncate(path, length);
  int saved = errno;
  if (result == 0) emit("T %llu %lld\n", path_inode(full), (long long)length);
  pthread_mutex_unlock(&mutex);
  errno = saved;
  return result;
}

// --- sync ---------------------------------------------------------------------------------

#define SYNC_CALL(name)                                          \
  int name(int fd) {                                             \
    RESOLVE(name);                                               \
    if (!fd_scoped(fd)) return real_##name(fd);                  \
    caller = __builtin_return_address(0);                        \
    int error = fd_fault(C_FSYNC, fd);                           \
    if (error) {                                                 \
      errno = error;                                             \
      return -1;                                                 \
    }                                                            \
    if (!recording()) {                                          \
      int done = real_##name(fd);                                \
      if (done == 0 && fault_fired) {                            \
        char synced[PATH_MAX];                                   \
        fd_path(fd, synced);                                     \
        after_fault('S', synced, NULL);                          \
      }                                                          \
      return done;                                               \
    }                                                            \
    /* Under the mutex: a call logged before S was done before the sync began. */ \
    pthread_mutex_lock(&mutex);                                  \
    int result = real_##name(fd);                                \
    int saved = errno;                                           \
    if (result == 0) emit("S %llu\n", fd_inode(fd));             \
    pthread_mutex_unlock(&mutex);                                \
    errno = saved;                                               \
    return result;                                               \
  }

SYNC_CALL(fsync)
SYNC_CALL(fdatasync)

void sync(void) {
  RESOLVE(sync);
  real_sync();
  if (recording()) {
    pthread_mutex_lock(&mutex);
    emit("A\n");
    pthread_mutex_unlock(&mutex);
  }
}

int syncfs(int fd) {
  RESOLVE(syncfs);
  int result = real_syncfs(fd);
  if (result == 0 && recording()) {
    pthread_mutex_lock(&mutex);
    emit("A\n");
    pthread_mutex_unlock(&mutex);
  }
  return result;
}

// --- names --------------------------------------------------------------------------------

static int do_rename(int fd1, const char *from, int fd2, const char *to, unsigned int flags, int kind) {
  char full_from[PATH_MAX], full_to[PATH_MAX];
  int scoped = scoped_path(fd1, from, full_from) | scoped_path(fd2, to, full_to);
  if (scoped) {
    int error = fault(C_RENAME, full_to, 0);
    if (error) {
      errno = error;
      return -1;
    }
  }
  if (scoped && recording()) pthread_mutex_lock(&mutex);
  unsigned long long moved = 0, replaced = 0;
  if (scoped && recording()) {
    moved = path_inode(full_from);
    replaced = path_inode(full_to);
  }
  int result;
  if (kind == 0) result = real_renameat2 ? real_renameat2(fd1, from, fd2, to, flags) : real_renameat(fd1, from, fd2, to);
  else result = real_linkat(fd1, from, fd2, to, (int)flags);
  int saved = errno;
  if (scoped && result == 0) after_fault('P', full_from, full_to);
  if (scoped && recording()) {
    if (result == 0) {
      char a[3 * PATH_MAX], b[3 * PATH_MAX];
      encode(full_from, a, sizeof(a));
      encode(full_to, b, sizeof(b));
      if (!in_scope(full_from) || !in_scope(full_to)) emit("X %s-across-scope %s\n", kind == 0 ? "rename" : "link", b);
      else if (kind == 0) emit("R %llu %llu %s %s\n", moved, replaced, a, b);
      else emit("L %llu %s %s\n", moved, a, b);
    }
    pthread_mutex_unlock(&mutex);
  }
  errno = saved;
  return result;
}

int rename(const char *from, const char *to) {
  RESOLVE(renameat); RESOLVE(renameat2);
  return do_rename(AT_FDCWD, from, AT_FDCWD, to, 0, 0);
}
int renameat(int fd1, const char *from, int fd2, const char *to) {
  RESOLVE(renameat); RESOLVE(renameat2);
  return do_rename(fd1, from, fd2, to, 0, 0);
}
int renameat2(int fd1, const char *from, int fd2, const char *to, unsigned int flags) {
  RESOLVE(renameat); RESOLVE(renameat2);
  return do_rename(fd1, from, fd2, to, flags, 0);
}
int link(const char *from, const char *to) {
  RESOLVE(linkat);
  return do_rename(AT_FDCWD, from, AT_FDCWD, to, 0, 1);
}
int linkat(int fd1, const char *from, int fd2, const char *to, int flags) {
  RESOLVE(linkat);
  return do_rename(fd1, from, fd2, to, (unsigned int)flags, 1);
}

static int do_unlink(int dirfd, const char *path, int flags) {
  char full[PATH_MAX];
  if (!scoped_path(dirfd, path, full) || !recording()) return real_unlinkat(dirfd, path, flags);
  pthread_mutex_lock(&mutex);
  unsigned long long inode = path_inode(full);
  int result = real_unlinkat(dirfd, path, flags);
  int saved = errno;
  if (result == 0) {
    char encoded[3 * PATH_MAX];
    encode(full, encoded, sizeof(encoded));
    emit("%c %llu %s\n", (flags & AT_REMOVEDIR) ? 'D' : 'U', inode, encoded);
  }
  pthread_mutex_unlock(&mutex);
  errno = saved;
  return result;
}

int unlink(const char *path) {
  RESOLVE(unlinkat);
  return do_unlink(AT_FDCWD, path, 0);
}
int unlinkat(int dirfd, const char *path, int flags) {
  RESOLVE(unlinkat);
  return do_unlink(dirfd, path, flags);
}
int rmdir(const char *path) {
  RESOLVE(unlinkat);
  return do_unlink(AT_FDCWD, path, AT_REMOVEDIR);
}

static int do_mkdir(int dirfd, const char *path, mode_t mode) {
  char full[PATH_MAX];
  if (!scoped_path(dirfd, path, full)) return real_mkdirat(dirfd, path, mode);
  int error = fault(C_MKDIR, full, 0);
  if (error) {
    errno = error;
    return -1;
  }
  if (!recording()) return real_mkdirat(dirfd, path, mode);
  pthread_mutex_lock(&mutex);
  int result = real_mkdirat(dirfd, path, mode);
  int saved = errno;
  if (result == 0) {
    char encoded[3 * PATH_MAX];
    encode(full, encoded, sizeof(encoded));
    emit("M %llu %s\n", path_inode(full), encoded);
  }
  pthread_mutex_unlock(&mutex);
  errno = saved;
  return result;
}

int mkdir(const char *path, mode_t mode) {
  RESOLVE(mkdirat);
  return do_mkdir(AT_FDCWD, path, mode);
}
int mkdirat(int dirfd, const char *path, mode_t mode) {
  RESOLVE(mkdirat);
  return do_mkdir(dirfd, path, mode);
}

// --- calls the replayer cannot model: noted, so a trace that has them fails loudly -----------

static void unsupported(const char *call, int fd) {
  if (!recording() || !fd_scoped(fd)) return;
  char path[PATH_MAX], encoded[3 * PATH_MAX];
  fd_path(fd, path);
  encode(path, encoded, sizeof(encoded));
  pthread_mutex_lock(&mutex);
  emit("X %s %s\n", call, encoded);
  pthread_mutex_unlock(&mutex);
}

ssize_t copy_file_range(int in, off64_t *in_offset, int out, off64_t *out_offset, size_t length, unsigned int flags) {
  RESOLVE(copy_file_range);
  unsupported("copy_file_range", out);
  return real_copy_file_range(in, in_offset, out, out_offset, length, flags);
}
ssize_t sendfile(int out, int in, off_t *offset, size_t count) {
  RESOLVE(sendfile);
  unsupported("sendfile", out);
  return real_sendfile(out, in, offset, count);
}
ssize_t sendfile64(int out, int in, off64_t *offset, size_t count) {
  RESOLVE(sendfile64);
  unsupported("sendfile", out);
  return real_sendfile64(out, in, offset, count);
}

// A shared writable mapping changes the file without a write(2). SQLite maps the -shm of a WAL
// database that way, which holds nothing a crash keeps (SQLite rebuilds it), so -shm is let be.
static void check_mapping(int prot, int flags, int fd) {
  if (!(prot & PROT_WRITE) || !(flags & MAP_SHARED) || !fd_scoped(fd)) return;
  char path[PATH_MAX];
  fd_path(fd, path);
  size_t length = strlen(path);
  if (length > 4 && strcmp(path + length - 4, "-shm") == 0) return;
  unsupported("mmap", fd);
}
void *mmap(void *address, size_t length, int prot, int flags, int fd, off_t offset) {
  RESOLVE(mmap);
  check_mapping(prot, flags, fd);
  return real_mmap(address, length, prot, flags, fd, offset);
}
void *mmap64(void *address, size_t length, int prot, int flags, int fd, off64_t offset) {
  RESOLVE(mmap64);
  check_mapping(prot, flags, fd);
  return real_mmap64(address, length, prot, flags, fd, offset);
}

// stdio writes through glibc's internal write, which this library does not see.
static void check_stdio(const char *path, const char *mode) {
  char full[PATH_MAX];
  if (!recording() || !mode || !scoped_path(AT_FDCWD, path, full)) return;
  if (!strpbrk(mode, "wa+")) return;
  char encoded[3 * PATH_MAX];
  encode(full, encoded, sizeof(encoded));
  pthread_mutex_lock(&mutex);
  emit("X fopen %s\n", encoded);
  pthread_mutex_unlock(&mutex);
}
FILE *fopen(const char *path, const char *mode) {
  RESOLVE(fopen);
  check_stdio(path, mode);
  return real_fopen(path, mode);
}
FILE *fopen64(const char *path, const char *mode) {
  RESOLVE(fopen64);
  check_stdio(path, mode);
  return real_fopen64(path, mode);
}

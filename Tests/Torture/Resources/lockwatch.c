// lockwatch: an LD_PRELOAD interposer for the lock-storm torture. In every process it is loaded
// into, it records when the deployment lock (<root>/.tgsess.lock) is taken and released, and every
// call that changes something below <root> (open for writing, create, rename, link, unlink, mkdir,
// rmdir, truncate, chmod), with whether this process held the lock at that moment. The check runs
// inside the process at the moment of the call, so nothing is inferred from timing.
//
// Environment: TGSESS_LOCKWATCH_ROOT (the deployment root, absolute), TGSESS_LOCKWATCH_LOG (the
// log file, appended to). Log lines (times are CLOCK_MONOTONIC nanoseconds, shared by processes):
//   ACQ <pid> <ns>
//   REL <pid> <ns>
//   W <pid> <ns> <held 0|1> <operation> <path>
// Build: cc -shared -fPIC -O2 -o lockwatch.so lockwatch.c -ldl
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char root[PATH_MAX];
static size_t root_length;
static char lock_path[PATH_MAX];
static int log_fd = -1;
static int lock_fd = -1;
static int held = 0;

static int (*real_open)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_flock)(int, int);
static int (*real_close)(int);

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void emit(const char *line, size_t length) {
  if (log_fd >= 0) {
    ssize_t ignored = write(log_fd, line, length);
    (void)ignored;
  }
}

__attribute__((constructor)) static void lockwatch_init(void) {
  real_open = dlsym(RTLD_NEXT, "open");
  real_openat = dlsym(RTLD_NEXT, "openat");
  real_flock = dlsym(RTLD_NEXT, "flock");
  real_close = dlsym(RTLD_NEXT, "close");
  const char *r = getenv("TGSESS_LOCKWATCH_ROOT");
  const char *l = getenv("TGSESS_LOCKWATCH_LOG");
  if (!r || !l || strlen(r) + 20 >= sizeof(root)) return;
  strcpy(root, r);
  root_length = strlen(root);
  while (root_length > 1 && root[root_length - 1] == '/') root[--root_length] = 0;
  snprintf(lock_path, sizeof(lock_path), "%s/.tgsess.lock", root);
  log_fd = real_open(l, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
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

static int below_root(const char *path) {
  return root_length > 0 && strncmp(path, root, root_length) == 0 &&
         (path[root_length] == '/' || path[root_length] == 0);
}

static void record(const char *operation, int dirfd, const char *path) {
  if (log_fd < 0) return;
  char full[PATH_MAX];
  absolute(dirfd, path, full, sizeof(full));
  if (!below_root(full) || strcmp(full, lock_path) == 0) return;
  char line[PATH_MAX + 128];
  int n = snprintf(line, sizeof(line), "W %d %lld %d %s %s\n", getpid(), now_ns(),
                   __atomic_load_n(&held, __ATOMIC_SEQ_CST), operation, full);
  if (n > 0) emit(line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

static int is_write(int flags) { return (flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC)) != 0; }

static void note_open(int fd, int dirfd, const char *path, int flags) {
  if (log_fd < 0 || fd < 0 || !path) return;
  char full[PATH_MAX];
  absolute(dirfd, path, full, sizeof(full));
  if (strcmp(full, lock_path) == 0 && (flags & O_ACCMODE) == O_RDWR) lock_fd = fd;
}

int open(const char *path, int flags, ...) {
  mode_t mode = 0;
  if (flags & (O_CREAT | O_TMPFILE)) {
    va_list ap;
    va_start(ap, flags);
    mode = va_arg(ap, mode_t);
    va_end(ap);
  }
  if (is_write(flags)) record("open", AT_FDCWD, path);
  int fd = real_open(path, flags, mode);
  note_open(fd, AT_FDCWD, path, flags);
  return fd;
}
int open64(const char *path, int flags, ...) __attribute__((alias("open")));

int openat(int dirfd, const char *path, int flags, ...) {
  mode_t mode = 0;
  if (flags & (O_CREAT | O_TMPFILE)) {
    va_list ap;
    va_start(ap, flags);
    mode = va_arg(ap, mode_t);
    va_end(ap);
  }
  if (is_write(flags)) record("openat", dirfd, path);
  int fd = real_openat(dirfd, path, flags, mode);
  note_open(fd, dirfd, path, flags);
  return fd;
}
int openat64(int dirfd, const char *path, int flags, ...) __attribute__((alias("openat")));

int creat(const char *path, mode_t mode) { return open(path, O_CREAT | O_WRONLY | O_TRUNC, mode); }
int creat64(const char *path, mode_t mode) __attribute__((alias("creat")));

int flock(int fd, int operation) {
  if (fd >= 0 && fd == lock_fd && (operation & LOCK_UN) && __atomic_load_n(&held, __ATOMIC_SEQ_CST)) {
    char line[64];
    int n = snprintf(line, sizeof(line), "REL %d %lld\n", getpid(), now_ns());
    __atomic_store_n(&held, 0, __ATOMIC_SEQ_CST);
    emit(line, (size_t)n);
  }
  int result = real_flock(fd, operation);
  if (result == 0 && fd >= 0 && fd == lock_fd && (operation & LOCK_EX)) {
    char line[64];
    int n = snprintf(line, sizeof(line), "ACQ %d %lld\n", getpid(), now_ns());
    emit(line, (size_t)n);
    __atomic_store_n(&held, 1, __ATOMIC_SEQ_CST);
  }
  return result;
}

int close(int fd) {
  if (fd >= 0 && fd == lock_fd) {
    if (__atomic_load_n(&held, __ATOMIC_SEQ_CST)) {
      char line[64];
      int n = snprintf(line, sizeof(line), "REL %d %lld\n", getpid(), now_ns());
      __atomic_store_n(&held, 0, __ATOMIC_SEQ_CST);
      emit(line, (size_t)n);
    }
    lock_fd = -1;
  }
  return real_close(fd);
}

#define PATH_CALL(name, operation, params, args, path)      \
  int name params {                                         \
    static int(*real) params;                               \
    if (!real) real = dlsym(RTLD_NEXT, #name);              \
    record(operation, AT_FDCWD, path);                      \
    return real args;                                       \
  }

PATH_CALL(unlink, "unlink", (const char *p), (p), p)
PATH_CALL(rmdir, "rmdir", (const char *p), (p), p)
PATH_CALL(mkdir, "mkdir", (const char *p, mode_t m), (p, m), p)
PATH_CALL(truncate, "truncate", (const char *p, off_t l), (p, l), p)
PATH_CALL(chmod, "chmod", (const char *p, mode_t m), (p, m), p)

int rename(const char *from, const char *to) {
  static int (*real)(const char *, const char *);
  if (!real) real = dlsym(RTLD_NEXT, "rename");
  record("rename-from", AT_FDCWD, from);
  record("rename-to", AT_FDCWD, to);
  return real(from, to);
}

int renameat(int fd1, const char *from, int fd2, const char *to) {
  static int (*real)(int, const char *, int, const char *);
  if (!real) real = dlsym(RTLD_NEXT, "renameat");
  record("rename-from", fd1, from);
  record("rename-to", fd2, to);
  return real(fd1, from, fd2, to);
}

int renameat2(int fd1, const char *from, int fd2, const char *to, unsigned int flags) {
  static int (*real)(int, const char *, int, const char *, unsigned int);
  if (!real) real = dlsym(RTLD_NEXT, "renameat2");
  record("rename-from", fd1, from);
  record("rename-to", fd2, to);
  return real(fd1, from, fd2, to, flags);
}

int link(const char *from, const char *to) {
  static int (*real)(const char *, const char *);
  if (!real) real = dlsym(RTLD_NEXT, "link");
  record("link", AT_FDCWD, to);
  return real(from, to);
}

int linkat(int fd1, const char *from, int fd2, const char *to, int flags) {
  static int (*real)(int, const char *, int, const char *, int);
  if (!real) real = dlsym(RTLD_NEXT, "linkat");
  record("link", fd2, to);
  return real(fd1, from, fd2, to, flags);
}

int symlink(const char *target, const char *path) {
  static int (*real)(const char *, const char *);
  if (!real) real = dlsym(RTLD_NEXT, "symlink");
  record("symlink", AT_FDCWD, path);
  return real(target, path);
}

int unlinkat(int dirfd, const char *path, int flags) {
  static int (*real)(int, const char *, int);
  if (!real) real = dlsym(RTLD_NEXT, "unlinkat");
  record("unlinkat", dirfd, path);
  return real(dirfd, path, flags);
}

int mkdirat(int dirfd, const char *path, mode_t mode) {
  static int (*real)(int, const char *, mode_t);
  if (!real) real = dlsym(RTLD_NEXT, "mkdirat");
  record("mkdirat", dirfd, path);
  return real(dirfd, path, mode);
}

int fchmodat(int dirfd, const char *path, mode_t mode, int flags) {
  static int (*real)(int, const char *, mode_t, int);
  if (!real) real = dlsym(RTLD_NEXT, "fchmodat");
  record("chmod", dirfd, path);
  return real(dirfd, path, mode, flags);
}

#ifndef TGSESS_CSHIMS_H
#define TGSESS_CSHIMS_H
/* C calls Swift cannot make directly, declared here rather than through the system headers so
 * that this module does not redeclare whole APIs beside GRDBSQLite and Glibc. */
#include <stddef.h>

/* sqlite3_config is variadic, which Swift cannot call. */
int sqlite3_config(int, ...);

/* SQLITE_CONFIG_MEMSTATUS (9) off: without it every SQLite allocation takes one process-wide
 * mutex, which serialises threads that snapshot different files. Must run before SQLite is
 * initialised (the first open); returns SQLITE_MISUSE (21) when it is too late. */
static inline int tgsess_sqlite_disable_memstatus(void) { return sqlite3_config(9, 0); }

/* glibc's malloc_trim (malloc.h, which Swift's Glibc module does not export). */
int malloc_trim(size_t pad);
static inline int tgsess_malloc_trim(void) { return malloc_trim(0); }


/* glibc's sync_file_range (fcntl.h under _GNU_SOURCE): starts writeback of one file's dirty
 * pages without waiting and without a journal commit (SYNC_FILE_RANGE_WRITE, 2). */
int sync_file_range(int fd, long offset, long nbytes, unsigned int flags);
static inline int tgsess_start_writeback(int fd) { return sync_file_range(fd, 0, 0, 2); }
#endif

#ifndef TGSESS_CSQLITECONFIG_SHIM_H
#define TGSESS_CSQLITECONFIG_SHIM_H
/* sqlite3_config is variadic, which Swift cannot call; this wraps the one call tgsess makes.
 * Declared here rather than through <sqlite3.h> so that this module does not redeclare the
 * whole SQLite API beside GRDBSQLite. */
int sqlite3_config(int, ...);

/* SQLITE_CONFIG_MEMSTATUS (9) off: without it every SQLite allocation takes one process-wide
 * mutex, which serialises threads that snapshot different files. Must run before SQLite is
 * initialised (the first open); returns SQLITE_MISUSE (21) when it is too late. */
static inline int tgsess_sqlite_disable_memstatus(void) { return sqlite3_config(9, 0); }
#endif

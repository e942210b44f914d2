#ifndef TGSESS_CARCHIVE_SHIM_H
#define TGSESS_CARCHIVE_SHIM_H
#include <archive.h>
#include <archive_entry.h>

/* AE_IF* are cast macros that Swift does not import. */
static const unsigned int TGSESS_AE_IFREG = AE_IFREG;
static const unsigned int TGSESS_AE_IFDIR = AE_IFDIR;
static const unsigned int TGSESS_AE_IFLNK = AE_IFLNK;
static const unsigned int TGSESS_AE_IFCHR = AE_IFCHR;
static const unsigned int TGSESS_AE_IFBLK = AE_IFBLK;
static const unsigned int TGSESS_AE_IFIFO = AE_IFIFO;
static const unsigned int TGSESS_AE_IFSOCK = AE_IFSOCK;
#endif

#ifndef TGSESS_CARCHIVE_SHIM_H
#define TGSESS_CARCHIVE_SHIM_H
#include <archive.h>
#include <archive_entry.h>
#endif

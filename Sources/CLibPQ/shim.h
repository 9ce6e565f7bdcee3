#ifndef CLIBPQ_SHIM_H
#define CLIBPQ_SHIM_H
// pkg-config's cflags for libpq put its include directory on the path, so no absolute path here.
#include <libpq-fe.h>
#include <poll.h>
#endif

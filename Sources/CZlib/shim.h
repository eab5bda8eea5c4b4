#ifndef JUNCTION_CZLIB_SHIM_H
#define JUNCTION_CZLIB_SHIM_H
#include <zlib.h>

/// `deflateInit`/`inflateInit` are macros in zlib.h, invisible to Swift; these wrap them.
static inline int junction_deflateInit(z_streamp stream, int level) {
    return deflateInit(stream, level);
}
static inline int junction_inflateInit(z_streamp stream) {
    return inflateInit(stream);
}
#endif

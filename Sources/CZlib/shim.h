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
/// `windowBits` 15 for the zlib format, -15 for raw deflate (no header, no checksum).
static inline int junction_deflateInit2(z_streamp stream, int level, int windowBits) {
    return deflateInit2(stream, level, Z_DEFLATED, windowBits, 8, Z_DEFAULT_STRATEGY);
}
static inline int junction_inflateInit2(z_streamp stream, int windowBits) {
    return inflateInit2(stream, windowBits);
}
#endif

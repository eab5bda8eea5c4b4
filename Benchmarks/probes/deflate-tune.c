// Deflate cost and size of the bench's 2 KiB records at zlib level 1, with a sync flush
// per record as a frame of one message has: zlib format vs raw deflate, and the longest
// match zlib looks for (nice_length 8 is level 1's own). Best of 15 timings of 20,000
// records. Then the cost of inflating them as a `stream`-mode receiver does (raw, the
// sync-flush trailer restored after each record), best of 10. Last, raw with 12-byte
// matches (Junction's level 1) and a sync flush every N records, as a `stream`-mode
// batch of N has, deflated and then inflated a batch per call.
//   python3 records.py > /tmp/recs.bin && gcc -O2 deflate-tune.c -lz -o deflate-tune && ./deflate-tune /tmp/recs.bin
#include <stdio.h>
#include <time.h>
#include <zlib.h>

static unsigned char records[512 * 2048], out[1 << 16], compressed[20000][700];
static unsigned char batches[20000 * 700], batchOut[64 * 2048];
static long batchStart[20001];
static int compressedLength[20000];

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/// Microseconds per record with a sync flush every `flushEvery` records; *bytes gets the
/// mean output per record.
static double run(int windowBits, int nice, int flushEvery, double *bytes) {
    z_stream s = {0};
    deflateInit2(&s, 1, Z_DEFLATED, windowBits, 8, Z_DEFAULT_STRATEGY);
    if (nice != 8) deflateTune(&s, 4, 4, nice, 4);
    long total = 0;
    int n = 20000;
    double start = now();
    for (int i = 0; i < n; i++) {
        s.next_in = records + (i % 512) * 2048;
        s.avail_in = 2048;
        s.next_out = out;
        s.avail_out = sizeof out;
        deflate(&s, (i + 1) % flushEvery == 0 ? Z_SYNC_FLUSH : Z_NO_FLUSH);
        total += sizeof out - s.avail_out;
    }
    double seconds = now() - start;
    deflateEnd(&s);
    *bytes = (double)total / n;
    return seconds / n * 1e6;
}

/// Microseconds per record inflating the raw stream of `run(-15, 12, flushEvery)` a batch
/// per call, the sync-flush trailer restored after each, as a `stream`-mode receiver does.
static double inflateBatches(int flushEvery) {
    static const unsigned char trailer[4] = {0x00, 0x00, 0xFF, 0xFF};
    z_stream d = {0};
    deflateInit2(&d, 1, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
    deflateTune(&d, 4, 4, 12, 4);
    int count = 20000 / flushEvery;
    long length = 0;
    for (int b = 0; b < count; b++) {
        batchStart[b] = length;
        for (int j = 0; j < flushEvery; j++) {
            d.next_in = records + ((b * flushEvery + j) % 512) * 2048;
            d.avail_in = 2048;
            d.next_out = batches + length;
            d.avail_out = sizeof batches - length;
            deflate(&d, j == flushEvery - 1 ? Z_SYNC_FLUSH : Z_NO_FLUSH);
            length = sizeof batches - d.avail_out;
        }
        length -= 4;
    }
    batchStart[count] = length;
    deflateEnd(&d);
    double best = 1e9;
    for (int rep = 0; rep < 7; rep++) {
        z_stream s = {0};
        inflateInit2(&s, -15);
        double start = now();
        for (int b = 0; b < count; b++) {
            s.next_in = batches + batchStart[b];
            s.avail_in = batchStart[b + 1] - batchStart[b];
            s.next_out = batchOut;
            s.avail_out = sizeof batchOut;
            inflate(&s, Z_SYNC_FLUSH);
            s.next_in = (unsigned char *)trailer;
            s.avail_in = sizeof trailer;
            inflate(&s, Z_SYNC_FLUSH);
            if (sizeof batchOut - s.avail_out != 2048L * flushEvery) { fprintf(stderr, "batch %d did not inflate\n", b); return -1; }
        }
        double t = (now() - start) / (count * flushEvery) * 1e6;
        if (t < best) best = t;
        inflateEnd(&s);
    }
    return best;
}

int main(int argc, char **argv) {
    FILE *f = fopen(argc > 1 ? argv[1] : "/tmp/recs.bin", "rb");
    if (!f || fread(records, 1, sizeof records, f) != sizeof records) {
        fprintf(stderr, "need the records: python3 records.py > /tmp/recs.bin\n");
        return 1;
    }
    const char *names[] = {"zlib format, nice 8", "raw, nice 8", "raw, nice 12", "raw, nice 16"};
    int windowBits[] = {15, -15, -15, -15}, nice[] = {8, 8, 12, 16};
    double best[4] = {1e9, 1e9, 1e9, 1e9}, bytes[4];
    for (int rep = 0; rep < 15; rep++)
        for (int k = 0; k < 4; k++) {
            double t = run(windowBits[k], nice[k], 1, &bytes[k]);
            if (t < best[k]) best[k] = t;
        }
    for (int k = 0; k < 4; k++) printf("%-20s %.2f us/record  %.1f bytes/record\n", names[k], best[k], bytes[k]);

    z_stream d = {0};
    deflateInit2(&d, 1, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
    deflateTune(&d, 4, 4, 12, 4);
    for (int i = 0; i < 20000; i++) {
        d.next_in = records + (i % 512) * 2048;
        d.avail_in = 2048;
        d.next_out = compressed[i];
        d.avail_out = sizeof compressed[i];
        deflate(&d, Z_SYNC_FLUSH);
        compressedLength[i] = sizeof compressed[i] - d.avail_out - 4;
    }
    deflateEnd(&d);
    static unsigned char trailer[4] = {0x00, 0x00, 0xFF, 0xFF};
    double bestInflate = 1e9;
    for (int rep = 0; rep < 10; rep++) {
        z_stream s = {0};
        inflateInit2(&s, -15);
        double start = now();
        for (int i = 0; i < 20000; i++) {
            s.next_in = compressed[i];
            s.avail_in = compressedLength[i];
            s.next_out = out;
            s.avail_out = sizeof out;
            inflate(&s, Z_SYNC_FLUSH);
            s.next_in = trailer;
            s.avail_in = sizeof trailer;
            inflate(&s, Z_SYNC_FLUSH);
            if (sizeof out - s.avail_out != 2048) { fprintf(stderr, "record %d did not inflate\n", i); return 1; }
        }
        double t = (now() - start) / 20000 * 1e6;
        if (t < bestInflate) bestInflate = t;
        inflateEnd(&s);
    }
    printf("inflate, raw, nice 12 output, trailer restored: %.2f us/record\n", bestInflate);

    int every[] = {1, 2, 4, 8, 16, 64};
    for (int k = 0; k < 6; k++) {
        double bestBatch = 1e9, batchBytes = 0;
        for (int rep = 0; rep < 7; rep++) {
            double t = run(-15, 12, every[k], &batchBytes);
            if (t < bestBatch) bestBatch = t;
        }
        double inflated = inflateBatches(every[k]);
        if (inflated < 0) return 1;
        printf("raw, nice 12, sync flush every %2d records: %.2f us/record  %.1f bytes/record  inflate %.2f us/record\n",
               every[k], bestBatch, batchBytes, inflated);
    }
    return 0;
}

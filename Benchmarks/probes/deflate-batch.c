// Deflate cost and size of the bench's 2 KiB records at zlib level 1 (raw, looking for
// 12-byte matches as Junction's level 1 does) when a sync flush ends every record (one
// frame per message) or every N records (a `stream`-mode batch of N). Best of 7 timings
// of 40,000 records.
//   python3 records.py > /tmp/recs.bin && gcc -O2 deflate-batch.c -lz -o deflate-batch && ./deflate-batch /tmp/recs.bin
#include <stdio.h>
#include <time.h>
#include <zlib.h>

static unsigned char records[512 * 2048], out[1 << 20];

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    FILE *f = fopen(argc > 1 ? argv[1] : "/tmp/recs.bin", "rb");
    if (!f || fread(records, 1, sizeof records, f) != sizeof records) {
        fprintf(stderr, "need the records: python3 records.py > /tmp/recs.bin\n");
        return 1;
    }
    int batches[] = {1, 2, 4, 8, 16, 64};
    for (int b = 0; b < 6; b++) {
        int n = 40000, every = batches[b];
        double best = 1e9, bytes = 0;
        for (int round = 0; round < 7; round++) {
            z_stream s = {0};
            deflateInit2(&s, 1, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
            deflateTune(&s, 4, 4, 12, 4);
            long total = 0;
            double start = now();
            for (int i = 0; i < n; i++) {
                s.next_in = records + (i % 512) * 2048;
                s.avail_in = 2048;
                s.next_out = out;
                s.avail_out = sizeof out;
                deflate(&s, (i + 1) % every == 0 ? Z_SYNC_FLUSH : Z_NO_FLUSH);
                total += sizeof out - s.avail_out;
            }
            double perRecord = (now() - start) / n * 1e6;
            if (perRecord < best) best = perRecord;
            bytes = (double)total / n;
            deflateEnd(&s);
        }
        printf("sync flush every %2d records: %.2f us/record, %.1f B/record\n", every, best, bytes);
    }
    return 0;
}

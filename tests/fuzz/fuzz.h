/* Shared pieces of the libFuzzer targets: the entry points, a reader of the fuzzer's bytes, and a
 * check that aborts (libFuzzer then saves the input as a crash). */
#ifndef SYNESIS_FUZZ_H
#define SYNESIS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* An invariant of the code under test: on failure, say which and abort. */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Consumes the fuzzer's input from the front; reads past the end give zeros (and set end). */
typedef struct fz_reader {
    const uint8_t *p;
    size_t n;
} fz_reader;

static inline int fz_end(const fz_reader *r) { return r->n == 0; }

static inline uint8_t fz_u8(fz_reader *r) {
    if (!r->n)
        return 0;
    r->n--;
    return *r->p++;
}

static inline uint16_t fz_u16(fz_reader *r) {
    uint16_t hi = fz_u8(r);
    return (uint16_t)(hi << 8 | fz_u8(r));
}

/* A value that is usually small but can be anything up to 64 bits: a byte below 0xf8 is itself;
 * 0xf8 + k (k = 0..7) is followed by k + 1 bytes, big-endian. */
static inline uint64_t fz_val(fz_reader *r) {
    uint8_t b = fz_u8(r);
    if (b < 0xf8)
        return b;
    uint64_t v = 0;
    for (int i = 0; i <= (b & 7); i++)
        v = v << 8 | fz_u8(r);
    return v;
}

/* Up to max bytes of the input (fewer at its end): returns the pointer and stores the count. */
static inline const uint8_t *fz_bytes(fz_reader *r, size_t max, size_t *len) {
    size_t n = max < r->n ? max : r->n;
    const uint8_t *p = r->p;
    r->p += n;
    r->n -= n;
    *len = n;
    return p;
}

/* The bytes of a data operation: a length byte and that many bytes of the input (255: a 16-bit
 * length follows); or 254, a 16-bit count and one byte: that byte repeated count times, so that
 * size limits (report, heartbeat and response maxima, buffers) are reachable with small inputs. */
static inline const uint8_t *fz_data(fz_reader *r, size_t *len) {
    static uint8_t fill[65536];
    size_t want = fz_u8(r);
    if (want == 254) {
        size_t n = fz_u16(r);
        memset(fill, fz_u8(r), n);
        *len = n;
        return fill;
    }
    if (want == 255)
        want = fz_u16(r);
    return fz_bytes(r, want, len);
}

#endif /* SYNESIS_FUZZ_H */

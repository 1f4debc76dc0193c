/* Declarations shared by the library's source files. Nothing here is public API. */
#ifndef SYNESIS_INTERNAL_H
#define SYNESIS_INTERNAL_H

#ifndef SYNESIS_BUILDING_LIBRARY
#define SYNESIS_BUILDING_LIBRARY 1
#endif

#include "synesis/common.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define SYNESIS_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define SYNESIS_PRINTF(f, a)
#endif

/* Size of every per-object detail string. */
#define SYNESIS_DETAIL_MAX 512

/*
 * Formats a detail message into buf (SYNESIS_DETAIL_MAX bytes) and returns code, so error paths
 * read `return syn_fail(buf, SYNESIS_ERR_X, "...", ...)`.
 */
int syn_fail(char *buf, int code, const char *fmt, ...) SYNESIS_PRINTF(3, 4);

/*
 * Like syn_fail, and appends OpenSSL's most specific queued reason (": <reason>") when there is
 * one; always clears OpenSSL's error queue. When OpenSSL queued an allocation failure
 * (ERR_R_MALLOC_FAILURE), returns SYNESIS_ERR_NOMEM instead of code: the operation failed for
 * want of memory, not for what code names (a "malformed" certificate, say).
 */
int syn_fail_ossl(char *buf, int code, const char *fmt, ...) SYNESIS_PRINTF(3, 4);

/* 1 when OpenSSL's error queue holds an allocation failure (ERR_R_MALLOC_FAILURE) as its oldest
 * or newest entry: the queue is cleared before the operations whose errors we report, and
 * CRYPTO_malloc queues the failure first, its callers their own errors after it. */
int syn_ossl_oom(void);

/* 1 when an allocation fails right now (one small allocation is tried): the last word on a
 * verdict that OpenSSL or ngtcp2_crypto may have reached for want of memory without saying so.
 * Clears OpenSSL's error queue. */
int syn_alloc_failing(void);

/* Clears OpenSSL's thread error queue (call before an operation whose errors we report). */
void syn_ossl_clear(void);

/* Copies src into dst (n bytes), truncating when needed; dst is always NUL-terminated. */
void syn_copy_str(char *dst, size_t n, const char *src);

/*
 * The evolution rule of the public structs (docs/integration.md, "API conventions"), in one place.
 * Each public struct starts with size_t struct_size.
 *
 * syn_struct_in: copies the caller's struct src (its struct_size bytes) into dst, a full-size
 * struct of dst_size bytes that the caller filled with the defaults. A smaller struct_size (an
 * older header) must still cover struct_size itself; the members it lacks keep their defaults. A
 * larger one (a newer header) is accepted only when every byte beyond dst_size is zero, as
 * Linux's copy_struct_from_user (clone3, openat2). dst's struct_size becomes dst_size. Returns 0
 * or SYNESIS_ERR_INVALID_ARGUMENT with a detail naming what (e.g. "config").
 */
int syn_struct_in(void *dst, size_t dst_size, const void *src, const char *what, char *detail);
/* Fills a caller-filled struct of size bytes for its _init_sized function: zeroes it, copies the
 * defaults (dflt, dflt_size bytes) of the members that fit, sets struct_size to size. NULL, or a
 * size that does not cover struct_size, is a no-op. */
void syn_struct_init(void *dst, size_t size, const void *dflt, size_t dflt_size);
/* A getter's copy-out: writes at most size bytes of src (src_size) to dst and sets its
 * struct_size to the bytes written. SYNESIS_ERR_INVALID_ARGUMENT when dst is NULL or size does
 * not cover struct_size. */
int syn_struct_out(void *dst, size_t size, const void *src, size_t src_size);

/*
 * Grows an array to hold at least need elements of elem bytes: geometric from initial, capped at
 * limit elements (0 = no cap; need must not exceed it). Returns the (possibly moved) array and
 * updates *cap, or NULL on ENOMEM with the array and *cap untouched. A ptr that already has room
 * is returned as it is.
 */
void *syn_grow(void *ptr, size_t *cap, size_t need, size_t elem, size_t initial, size_t limit);

/* Once-only process initialisation of OpenSSL and ngtcp2's crypto backend; thread-safe. */
int syn_crypto_init(void);

/* A monotonic timestamp in nanoseconds (what ngtcp2 needs; never ev_now()). */
uint64_t syn_now_ns(void);

/* Wall clock in milliseconds since the Unix epoch. */
uint64_t syn_wall_ms(void);

#endif /* SYNESIS_INTERNAL_H */

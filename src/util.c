/* Small helpers: detail strings, OpenSSL error queue, clocks, once-only crypto init. */
#include "internal.h"

#include <ngtcp2/ngtcp2_crypto_ossl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void vformat(char *buf, const char *fmt, va_list ap) {
    if (buf)
        vsnprintf(buf, SYNESIS_DETAIL_MAX, fmt, ap);
}

int syn_fail(char *buf, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vformat(buf, fmt, ap);
    va_end(ap);
    return code;
}

int syn_ossl_oom(void) {
    unsigned long first = ERR_peek_error(), last = ERR_peek_last_error();
    return (first && ERR_GET_REASON(first) == ERR_R_MALLOC_FAILURE) ||
           (last && ERR_GET_REASON(last) == ERR_R_MALLOC_FAILURE);
}

int syn_fail_ossl(char *buf, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vformat(buf, fmt, ap);
    va_end(ap);
    /* An allocation inside OpenSSL failed: that, not the operation's own code, is the cause. */
    int oom = syn_ossl_oom();
    /* The last queued error is the most specific one in OpenSSL's reporting. */
    unsigned long e = ERR_peek_last_error();
    if (buf && (e || oom)) {
        size_t n = strlen(buf);
        char reason[256];
        ERR_error_string_n(e, reason, sizeof(reason));
        const char *r = oom ? "out of memory" : ERR_reason_error_string(e);
        snprintf(buf + n, SYNESIS_DETAIL_MAX - n, ": %s", r ? r : reason);
    }
    ERR_clear_error();
    return oom ? SYNESIS_ERR_NOMEM : code;
}

void syn_ossl_clear(void) { ERR_clear_error(); }

int syn_alloc_failing(void) {
    void *p = OPENSSL_malloc(64);
    OPENSSL_free(p);
    ERR_clear_error();
    return p == NULL;
}

void *syn_grow(void *ptr, size_t *cap, size_t need, size_t elem, size_t initial, size_t limit) {
    if (need <= *cap)
        return ptr;
    size_t n = *cap ? *cap : initial;
    while (n < need)
        n = n > SIZE_MAX / 2 ? need : n * 2;
    if (limit && n > limit)
        n = limit;
    if (n < need || n > SIZE_MAX / elem)
        return NULL;
    void *p = realloc(ptr, n * elem);
    if (p)
        *cap = n;
    return p;
}

void syn_copy_str(char *dst, size_t n, const char *src) {
    if (!n)
        return;
    size_t len = src ? strlen(src) : 0;
    if (len >= n)
        len = n - 1;
    if (len)
        memcpy(dst, src, len);
    dst[len] = 0;
}

static pthread_once_t crypto_once = PTHREAD_ONCE_INIT;
static int crypto_init_rv;

static void crypto_init_once(void) {
    if (OPENSSL_init_ssl(0, NULL) != 1 || ngtcp2_crypto_ossl_init() != 0)
        crypto_init_rv = SYNESIS_ERR_CRYPTO;
}

int syn_crypto_init(void) {
    pthread_once(&crypto_once, crypto_init_once);
    return crypto_init_rv;
}

uint64_t syn_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t syn_wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int syn_struct_in(void *dst, size_t dst_size, const void *src, const char *what, char *detail) {
    size_t size;
    memcpy(&size, src, sizeof(size));
    if (size < sizeof(size_t))
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                        "%s.struct_size is %zu: initialise the struct with its _init() macro", what,
                        size);
    if (size > dst_size) {
        const unsigned char *tail = (const unsigned char *)src + dst_size;
        for (size_t i = 0; i < size - dst_size; i++)
            if (tail[i])
                return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                                "%s.struct_size is %zu, this library knows %zu bytes, and byte %zu "
                                "beyond them is not zero: a member this library version does not "
                                "have is set",
                                what, size, dst_size, dst_size + i);
    }
    memcpy(dst, src, size < dst_size ? size : dst_size);
    memcpy(dst, &dst_size, sizeof(dst_size));
    return 0;
}

void syn_struct_init(void *dst, size_t size, const void *dflt, size_t dflt_size) {
    if (!dst || size < sizeof(size_t))
        return;
    memset(dst, 0, size);
    memcpy(dst, dflt, size < dflt_size ? size : dflt_size);
    memcpy(dst, &size, sizeof(size));
}

int syn_struct_out(void *dst, size_t size, const void *src, size_t src_size) {
    if (!dst || size < sizeof(size_t))
        return SYNESIS_ERR_INVALID_ARGUMENT;
    size_t n = size < src_size ? size : src_size;
    memcpy(dst, src, n);
    memcpy(dst, &n, sizeof(n));
    return 0;
}

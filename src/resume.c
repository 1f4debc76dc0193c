/* Session tickets and NEW_TOKEN tokens kept by a tunnel for its next connection (resume.h). */
#include "resume.h"

#include "internal.h"

#include <openssl/err.h>
#include <stdlib.h>
#include <string.h>

void syn_resume_init(syn_resume *r) { memset(r, 0, sizeof(*r)); }

static void drop(syn_resume *r, size_t i) {
    SSL_SESSION_free(r->tickets[i].sess);
    memmove(&r->tickets[i], &r->tickets[i + 1], (r->n - i - 1) * sizeof(r->tickets[0]));
    r->n--;
}

void syn_resume_clear(syn_resume *r) {
    while (r->n)
        drop(r, r->n - 1);
    r->tokenlen = 0;
    r->token_host[0] = '\0';
}

static void drop_expired(syn_resume *r) {
    uint64_t now = syn_wall_ms();
    for (size_t i = 0; i < r->n;) {
        if (r->tickets[i].expires_ms <= now) {
            drop(r, i);
            r->expired++;
        } else {
            i++;
        }
    }
}

static int add(syn_resume *r, const char *host, SSL_SESSION *sess, uint64_t expires_ms,
               const uint8_t *tp, size_t tplen) {
    if (strlen(host) >= sizeof(r->tickets[0].host) || expires_ms <= syn_wall_ms())
        return 0;
    if (tplen > sizeof(r->tickets[0].tp))
        tplen = 0; /* resumable all the same, without 0-RTT */
    drop_expired(r);
    if (r->n == SYN_RESUME_MAX_TICKETS) {
        drop(r, 0);
        r->evicted++;
    }
    syn_resume_ticket *k = &r->tickets[r->n++];
    k->sess = sess;
    memcpy(k->host, host, strlen(host) + 1);
    k->expires_ms = expires_ms;
    if (tplen)
        memcpy(k->tp, tp, tplen);
    k->tplen = tplen;
    return 1;
}

int syn_resume_put(syn_resume *r, const char *host, SSL_SESSION *sess, const uint8_t *tp,
                   size_t tplen) {
    if (!sess || !host || !SSL_SESSION_is_resumable(sess))
        return 0;
    /* The edge's lifetime hint counts from the ticket's arrival (now). */
    uint64_t life = SSL_SESSION_get_ticket_lifetime_hint(sess);
    if (life > SYN_RESUME_MAX_LIFETIME_S)
        life = SYN_RESUME_MAX_LIFETIME_S;
    /* A copy: OpenSSL hands over the connection's own session object, which SSL_free() marks
     * not resumable when the connection ended without a TLS close_notify (ssl_clear_bad_session:
     * QUIC connections never send one), so the original would no longer resume. */
    SSL_SESSION *copy = SSL_SESSION_dup(sess);
    if (!copy || !add(r, host, copy, syn_wall_ms() + life * 1000, tp, tplen)) {
        SSL_SESSION_free(copy);
        return 0;
    }
    SSL_SESSION_free(sess);
    r->received++;
    return 1;
}

SSL_SESSION *syn_resume_take(syn_resume *r, const char *host, uint8_t *tp, size_t *tplen) {
    if (tplen)
        *tplen = 0;
    drop_expired(r);
    for (size_t i = r->n; i-- > 0;) {
        syn_resume_ticket *k = &r->tickets[i];
        if (strcmp(k->host, host) != 0)
            continue;
        SSL_SESSION *sess = k->sess;
        if (tp && tplen) {
            memcpy(tp, k->tp, k->tplen);
            *tplen = k->tplen;
        }
        k->sess = NULL; /* handed over: drop() frees NULL */
        drop(r, i);
        return sess;
    }
    return NULL;
}

size_t syn_resume_count(syn_resume *r, const char *host) {
    drop_expired(r);
    size_t n = 0;
    for (size_t i = 0; i < r->n; i++)
        if (!host || strcmp(r->tickets[i].host, host) == 0)
            n++;
    return n;
}

void syn_resume_put_token(syn_resume *r, const char *host, const uint8_t *token, size_t len) {
    if (!len || len > sizeof(r->token) || strlen(host) >= sizeof(r->token_host))
        return;
    memcpy(r->token, token, len);
    r->tokenlen = len;
    memcpy(r->token_host, host, strlen(host) + 1);
    r->tokens++;
}

const uint8_t *syn_resume_token(const syn_resume *r, const char *host, size_t *len) {
    if (!r->tokenlen || strcmp(r->token_host, host) != 0) {
        *len = 0;
        return NULL;
    }
    *len = r->tokenlen;
    return r->token;
}

/* ---- persistence: version 1, big-endian ----
 * u8 version (1) | u64 expires_ms | u8 hostlen | host | u16 tplen | tp | u32 derlen | der */

#define BLOB_VERSION 1

static void put_be(uint8_t *p, uint64_t v, int n) {
    for (int i = n - 1; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t get_be(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

int syn_resume_export(syn_resume *r, const char *host, uint8_t **out, size_t *len) {
    *out = NULL;
    *len = 0;
    drop_expired(r);
    const syn_resume_ticket *k = NULL;
    for (size_t i = r->n; i-- > 0 && !k;)
        if (strcmp(r->tickets[i].host, host) == 0)
            k = &r->tickets[i];
    if (!k)
        return SYNESIS_ERR_INVALID_STATE;
    int der = i2d_SSL_SESSION(k->sess, NULL);
    size_t hl = strlen(k->host);
    if (der <= 0 || hl > 255)
        return SYNESIS_ERR_NOMEM;
    size_t n = 1 + 8 + 1 + hl + 2 + k->tplen + 4 + (size_t)der;
    uint8_t *b = malloc(n), *p = b;
    if (!b)
        return SYNESIS_ERR_NOMEM;
    *p++ = BLOB_VERSION;
    put_be(p, k->expires_ms, 8);
    p += 8;
    *p++ = (uint8_t)hl;
    memcpy(p, k->host, hl);
    p += hl;
    put_be(p, k->tplen, 2);
    p += 2;
    memcpy(p, k->tp, k->tplen);
    p += k->tplen;
    put_be(p, (uint64_t)der, 4);
    p += 4;
    unsigned char *dp = p;
    if (i2d_SSL_SESSION(k->sess, &dp) != der) {
        free(b);
        return SYNESIS_ERR_NOMEM;
    }
    *out = b;
    *len = n;
    return 0;
}

#define BAD(reason)                                                                                \
    do {                                                                                           \
        if (why)                                                                                   \
            *why = reason;                                                                         \
        return SYNESIS_ERR_INVALID_ARGUMENT;                                                       \
    } while (0)

int syn_resume_import_for(syn_resume *r, const char *want, const uint8_t *b, size_t len,
                          const char **why) {
    if (!b || len < 1 + 8 + 1 + 2 + 4)
        BAD("too short to be resumption data");
    if (b[0] != BLOB_VERSION)
        BAD("not resumption data of this library (unknown format version)");
    const uint8_t *p = b + 1, *end = b + len;
    uint64_t expires = get_be(p, 8);
    p += 8;
    size_t hl = *p++;
    if ((size_t)(end - p) < hl + 2)
        BAD("truncated (server name)");
    char host[256];
    memcpy(host, p, hl);
    host[hl] = '\0';
    p += hl;
    size_t tplen = (size_t)get_be(p, 2);
    p += 2;
    if (tplen > sizeof(r->tickets[0].tp) || (size_t)(end - p) < tplen + 4)
        BAD("truncated or malformed (transport parameters)");
    const uint8_t *tp = p;
    p += tplen;
    size_t derlen = (size_t)get_be(p, 4);
    p += 4;
    if (derlen != (size_t)(end - p) || derlen > INT32_MAX || !hl || memchr(host, 0, hl))
        BAD("truncated or malformed (session length)");
    if (want && strcmp(host, want) != 0)
        BAD("saved for another server name");
    if (expires <= syn_wall_ms())
        BAD("expired");
    const unsigned char *dp = p;
    SSL_SESSION *sess = d2i_SSL_SESSION(NULL, &dp, (long)derlen);
    if (!sess || dp != end || !SSL_SESSION_is_resumable(sess)) {
        SSL_SESSION_free(sess);
        ERR_clear_error();
        BAD("malformed TLS session");
    }
    if (expires > syn_wall_ms() + (uint64_t)SYN_RESUME_MAX_LIFETIME_S * 1000)
        expires = syn_wall_ms() + (uint64_t)SYN_RESUME_MAX_LIFETIME_S * 1000;
    if (!add(r, host, sess, expires, tp, tplen)) {
        SSL_SESSION_free(sess);
        BAD("expired");
    }
    return 0;
}

int syn_resume_import(syn_resume *r, const uint8_t *b, size_t len) {
    return syn_resume_import_for(r, NULL, b, len, NULL);
}

/*
 * What a tunnel keeps from one connection for the next (docs/resumption.md): the edge's session
 * tickets (TLS 1.3 PSK resumption), each with the edge's transport parameters, and the edge's
 * latest NEW_TOKEN token (address validation without a Retry). In memory, per tunnel; internal.
 *
 * Every entry is keyed by the exact server name the tunnel verifies the edge's certificate
 * against: a resumed handshake carries no certificate, so OpenSSL checks neither the host name
 * nor the pins again (it checks the ticket's SNI only for early data, extensions_clnt.c); a ticket
 * received for one name is never offered for another. The trust settings (CA, pins) are those of
 * the tunnel that holds the store, and they do not change for its lifetime.
 */
#ifndef SYNESIS_RESUME_H
#define SYNESIS_RESUME_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>

/* Tickets kept at most (the newest; the edge sends one per handshake by default, and each
 * connection uses one). */
#define SYN_RESUME_MAX_TICKETS 2
/* A ticket's lifetime is the edge's hint, at most this (RFC 8446 4.6.1: seven days). */
#define SYN_RESUME_MAX_LIFETIME_S (7 * 86400)
/* Longest NEW_TOKEN token kept (ngtcp2's regular tokens are 41 bytes). */
#define SYN_RESUME_MAX_TOKEN 256
/* Longest 0-RTT transport parameters kept (ngtcp2 encodes the reference edge's in about 50
 * bytes); a ticket with longer ones is kept without them, and resumes without 0-RTT. */
#define SYN_RESUME_MAX_TP 256

typedef struct syn_resume_ticket {
    SSL_SESSION *sess;
    char host[256];
    uint64_t expires_ms;           /* syn_wall_ms() clock */
    uint8_t tp[SYN_RESUME_MAX_TP]; /* the edge's transport parameters (0-RTT form) */
    size_t tplen;
} syn_resume_ticket;

typedef struct syn_resume {
    syn_resume_ticket tickets[SYN_RESUME_MAX_TICKETS]; /* oldest first */
    size_t n;
    char token_host[256];
    uint8_t token[SYN_RESUME_MAX_TOKEN];
    size_t tokenlen;
    /* Counters (tests, statistics): tickets received, offered in a ClientHello, dropped expired
     * or for want of room, handshakes resumed; NEW_TOKEN tokens received. */
    uint64_t received, offered, expired, evicted, resumed, tokens;
} syn_resume;

void syn_resume_init(syn_resume *r);
void syn_resume_clear(syn_resume *r); /* frees every ticket, forgets the token */

/* Keeps a copy of ticket sess for host (and then releases the reference to sess); the oldest goes
 * when full. Returns 1 if kept, 0 if not (expired already, not resumable, name too long, out of
 * memory: sess is not taken). */
int syn_resume_put(syn_resume *r, const char *host, SSL_SESSION *sess, const uint8_t *tp,
                   size_t tplen);

/* The newest unexpired ticket for exactly host, removed from the store (one use each): the caller
 * owns the reference, NULL when none. Expired tickets are dropped on the way. tp/tplen (may be
 * NULL) receive its transport parameters (copied into tp, at most SYN_RESUME_MAX_TP bytes). */
SSL_SESSION *syn_resume_take(syn_resume *r, const char *host, uint8_t *tp, size_t *tplen);

/* Tickets held now for host (NULL: any), unexpired. */
size_t syn_resume_count(syn_resume *r, const char *host);

/* Keeps the edge's latest NEW_TOKEN token for host (replaces any other). */
void syn_resume_put_token(syn_resume *r, const char *host, const uint8_t *token, size_t len);
/* The token for host (it stays: a token may be used again until the edge sends a new one), or
 * NULL with *len 0. */
const uint8_t *syn_resume_token(const syn_resume *r, const char *host, size_t *len);

/*
 * Persistence (config.resume_data, callbacks.on_resume_data, synesis_tunnel_resume_data()): the
 * newest ticket for host as a self-contained blob (a version byte, the expiry, the host name, the
 * transport parameters, and the DER session, which holds the resumption secret: store it with the
 * same care as the device key). syn_resume_export returns 0 and a malloc'ed blob, or
 * SYNESIS_ERR_INVALID_STATE (no ticket) or NOMEM. syn_resume_import checks and adds one (0, or
 * SYNESIS_ERR_INVALID_ARGUMENT for a blob that is malformed or expired).
 */
int syn_resume_export(syn_resume *r, const char *host, uint8_t **out, size_t *len);
int syn_resume_import(syn_resume *r, const uint8_t *blob, size_t len);
/* The same for config.resume_data: only a ticket for exactly host (NULL: any); on failure *why
 * (may be NULL) says why in a static string for the log. */
int syn_resume_import_for(syn_resume *r, const char *host, const uint8_t *blob, size_t len,
                          const char **why);

#endif /* SYNESIS_RESUME_H */

/*
 * QUIC over TCP: a TLS 1.3 connection on TCP that carries QUIC packets, each framed with its
 * length (docs/protocol.md, "QUIC over TCP"). Used where UDP does not get through: the tunnel opens
 * one (directly, or through an HTTP CONNECT proxy) and the edge accepts them on its TCP listener;
 * both feed the packets into the same QUIC connection machinery as datagrams.
 *
 * Wire format, after the TLS handshake (ALPN SYN_TCPLINK_ALPN): in each direction a sequence of
 * frames, each a 2-byte big-endian length L (1..SYN_TCPLINK_MAX_FRAME) followed by L bytes: one
 * UDP payload as it would have been sent on UDP (one QUIC packet, or coalesced packets). A frame
 * of length 0 or above SYN_TCPLINK_MAX_FRAME closes the link (SYNESIS_ERR_QUIC, "bad frame").
 *
 * The outer TLS verifies the edge exactly as the QUIC handshake does (same trust, name, pin and
 * expiry checks, same error codes); the device presents no certificate there: its identity is
 * proven by the QUIC handshake inside.
 *
 * Everything runs on the owner's libev loop; nothing blocks. Internal.
 */
#ifndef SYNESIS_TCPLINK_H
#define SYNESIS_TCPLINK_H

#include "internal.h"
#include "udp.h"

#include <ev.h>
#include <openssl/ssl.h>

/* The outer TLS's ALPN (distinct from the QUIC ALPN: the edge's TCP listener refuses others). */
#define SYN_TCPLINK_ALPN "synesis-tcp/1"
/* The largest frame accepted: the largest datagram either side sends. */
#define SYN_TCPLINK_MAX_FRAME SYN_UDP_MAX_PAYLOAD
/* Bytes queued for sending (framed, not yet taken by the kernel) above which syn_tcplink_send
 * asks the sender to stop until ops.writable. */
#define SYN_TCPLINK_HIGH_WATER (256 * 1024)
/* The hard bound of that queue: a frame that would take it past this is dropped
 * (SYNESIS_ERR_WOULD_BLOCK; QUIC sees a lost packet). Senders that honour the high water never
 * reach it; it bounds what replies without flow control (stateless answers, a closing
 * connection's repeated CONNECTION_CLOSE) can pile up for a peer that sends and never reads. */
#define SYN_TCPLINK_MAX_QUEUED (2 * SYN_TCPLINK_HIGH_WATER)

typedef struct syn_tcplink syn_tcplink;

typedef struct syn_tcplink_ops {
    /* Client: TCP connected, the proxy (if any) said yes, the edge's certificate verified: packets
     * may flow. Server: the TLS handshake completed. */
    void (*up)(syn_tcplink *l);
    /* One frame received (a QUIC packet, or coalesced packets): valid during the call. */
    void (*packet)(syn_tcplink *l, const uint8_t *data, size_t len);
    /* The send queue fell below half SYN_TCPLINK_HIGH_WATER after a syn_tcplink_send() that
     * returned 1. */
    void (*writable)(syn_tcplink *l);
    /* The link is down: err < 0 with detail (connect refused or timed out, the proxy refused,
     * verification failed, TCP reset, a bad frame, ...), or 0 when the peer closed it cleanly.
     * Nothing more is called; the owner frees the link (syn_tcplink_free is allowed here and
     * from inside the other ops). */
    void (*closed)(syn_tcplink *l, int err, const char *detail);
} syn_tcplink_ops;

/* An HTTP CONNECT proxy (from syn_proxy_select()). */
typedef struct syn_proxy {
    char host[256];   /* as in the proxy URL (a name or an IP literal, no brackets) */
    uint16_t port;    /* 1080 when the URL names none (as curl) */
    char *basic_auth; /* "user:password" base64-encoded, or NULL; owned (syn_proxy_clear) */
    char shown[320];  /* the URL for messages, password replaced by "***" */
} syn_proxy;

/*
 * Decides the proxy for a connection to target_host (a name or an IP literal) as curl does:
 * configured is the application's setting: NULL = from the environment (https_proxy, then
 * HTTPS_PROXY, then all_proxy, ALL_PROXY; skipped when no_proxy/NO_PROXY matches target_host:
 * "*", a comma-separated list of host names (a name matches itself and its subdomains, a leading
 * dot ignored), IP literals, and CIDR ranges, case-insensitive); "" = no proxy even if the
 * environment names one; otherwise an explicit proxy URL "http://[user:password@]host[:port]"
 * (percent-encoded user and password; "http://" may be omitted; other schemes are refused).
 * Returns 1 with *out filled when a proxy is to be used, 0 when none, or
 * SYNESIS_ERR_INVALID_ARGUMENT with detail (a malformed URL, naming where it came from). */
int syn_proxy_select(const char *configured, const char *target_host, syn_proxy *out, char *detail);
void syn_proxy_clear(syn_proxy *p);

typedef struct syn_tcplink_client_opts {
    /* Where to connect: the edge, or the proxy when proxy is set (the owner resolves names
     * without blocking). */
    const syn_sockaddr *connect_to;
    const syn_proxy *proxy;  /* NULL: direct; else "CONNECT target_host:target_port" through it */
    const char *target_host; /* the edge's host as in its URL (CONNECT's authority) */
    uint16_t target_port;
    SSL_CTX *ctx;            /* a context from syn_tcplink_client_ctx_new() */
    const char *server_name; /* SNI and the name verified, as for QUIC */
    double timeout;          /* seconds for TCP connect + proxy + TLS handshake (> 0) */
} syn_tcplink_client_opts;

/* A client context for links with the trust, pins and groups of the tunnel's QUIC context
 * (tls.c's verification, shared store) and no client certificate. Caller owns *out. */
int syn_tcplink_client_ctx_new(SSL_CTX **out, SSL_CTX *quic_ctx, char *detail);
/* A server context for links with the certificate chain and key of the edge's QUIC context, no
 * client certificate requested, ALPN SYN_TCPLINK_ALPN only. Caller owns *out. */
int syn_tcplink_server_ctx_new(SSL_CTX **out, SSL_CTX *quic_ctx, char *detail);

/* Starts a client link (non-blocking connect, then the proxy's CONNECT, then TLS). Returns 0 with
 * *out set (ops.up or ops.closed follow, never from inside this call), or a SYNESIS_ERR_* with
 * detail (nothing allocated). */
int syn_tcplink_connect(syn_tcplink **out, struct ev_loop *loop,
                        const syn_tcplink_client_opts *opts, const syn_tcplink_ops *ops,
                        void *owner, char *detail);
/* Takes over an accepted TCP socket (the edge's listener) and runs the server's TLS handshake
 * (timeout seconds). The link owns fd from here, also on failure. */
int syn_tcplink_accept(syn_tcplink **out, struct ev_loop *loop, int fd, SSL_CTX *ctx,
                       double timeout, const syn_tcplink_ops *ops, void *owner, char *detail);

/* Queues one frame (len 1..SYN_TCPLINK_MAX_FRAME; copied). Returns 0; 1 when the queue is now
 * above SYN_TCPLINK_HIGH_WATER (the frame is queued; stop sending until ops.writable); or a
 * negative SYNESIS_ERR_* (not up, closed, bad length, out of memory, SYNESIS_ERR_WOULD_BLOCK past
 * SYN_TCPLINK_MAX_QUEUED: the frame is dropped, which QUIC treats as a lost packet). */
int syn_tcplink_send(syn_tcplink *l, const uint8_t *data, size_t len);
/* 1 once ops.up ran and until the link is down. */
int syn_tcplink_is_up(const syn_tcplink *l);
/* The TCP connection's own addresses (valid once connected; the QUIC path over the link uses
 * them). */
const syn_sockaddr *syn_tcplink_local(const syn_tcplink *l);
const syn_sockaddr *syn_tcplink_remote(const syn_tcplink *l);
void *syn_tcplink_owner(const syn_tcplink *l);
void syn_tcplink_set_owner(syn_tcplink *l, void *owner);
/* Hands the link to another owner's ops (a link passed between the tunnel and its side
 * connections: identity rotation, close linger). */
void syn_tcplink_set_ops(syn_tcplink *l, const syn_tcplink_ops *ops);
/* Bytes queued and not yet taken by the kernel. */
size_t syn_tcplink_queued(const syn_tcplink *l);
/* Frames refused so far because the queue was at SYN_TCPLINK_MAX_QUEUED. */
uint64_t syn_tcplink_dropped(const syn_tcplink *l);
/* Closes the link (TLS close_notify when up, sent best effort) and frees it; no op is called
 * afterwards. NULL is a no-op. Safe from inside any op. */
void syn_tcplink_free(syn_tcplink *l);

#endif /* SYNESIS_TCPLINK_H */

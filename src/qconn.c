/* The QUIC connection driver: ngtcp2 + OpenSSL session, streams, write loop, timers. */
#include "qconn.h"
#include "qconn_test.h"

#include "synesis/tunnel.h"
#include "tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include "tcplink.h"
#include <unistd.h>

#define SYN_STREAM_VEC 16
#define SYN_MAX_PKTS_PER_WRITE 64
/* Waits shorter than this go to the fine timer (see arm_timer): libev's epoll backend sleeps whole
 * milliseconds and turns any shorter timeout into one. */
#define SYN_FINE_WAIT_NS 1000000u
/* A connection whose next wait is at least this long is idle: its timerfd is closed. */
#define SYN_FINE_IDLE_NS 100000000u

/* The credit for streams the peer opens: that of closed ones goes back in batches
 * (peer_streams_credit). */
typedef struct syn_peer_streams {
    uint64_t initial; /* our transport parameter */
    uint64_t limit;   /* initial plus what we have returned */
    uint64_t opened;  /* streams the peer has opened (highest index + 1) */
    uint64_t closed;  /* closed since the last return */
} syn_peer_streams;

typedef struct syn_chunk syn_chunk;

struct syn_chunk {
    syn_chunk *next;
    const uint8_t *data;
    size_t len;
    syn_release_fn release; /* NULL when data is the inline copy below */
    void *release_ud;
    uint8_t inline_data[];
};

struct syn_qstream {
    int64_t id;
    syn_qconn *qc;
    void *user; /* the owner's per-stream object */

    /* Send side: chunks from `base` (offset of head's first byte) to `queued`. */
    syn_chunk *head, *tail;
    syn_chunk *cur;    /* chunk holding offset `sent` (NULL when everything queued is sent) */
    uint64_t cur_base; /* offset of cur's first byte */
    uint64_t base, queued, sent, acked;
    unsigned fin_queued : 1, fin_sent : 1, blocked : 1, pending : 1, closed : 1;
    unsigned auto_consume : 1; /* return flow-control credit as soon as data is delivered */
    unsigned early : 1;        /* opened in 0-RTT (syn_qconn_open_stream_early) */
    syn_link pend_link;        /* on the connection's streams with something to send */
    syn_link link;             /* on all streams of the connection */
};

struct syn_qconn {
    struct ev_loop *loop;
    ngtcp2_conn *conn;
    SSL *ssl;
    ngtcp2_crypto_ossl_ctx *octx;
    ngtcp2_crypto_conn_ref conn_ref;
    syn_tls_session_sink sink; /* client: where session tickets go (ops->new_session) */
    unsigned offered_session : 1;
    /* 0-RTT (client): attempted and still possible; the outcome; the early streams must be
     * opened again in 1-RTT (the edge rejected them), done when the driver unwinds. */
    unsigned early : 1, early_accepted : 1, early_rejected : 1, early_reopen : 1;
    int server;
    int fd;
    int owns_fd; /* close fd when freed (the tunnel hands its socket over at teardown) */
    syn_sockaddr local, remote;
    const syn_qconn_ops *ops;
    void *owner;
    size_t max_payload;
    /* Path MTU black holes (see blackhole_check): stream bytes the peer has acknowledged in all,
     * the window being judged (its start, and the count then), whether a datagram above QUIC's
     * minimum size has gone out, and the cap on datagram sizes once a black hole is suspected
     * (0 = none). */
    uint64_t acked_total;
    uint64_t bh_since_ns, bh_acked_since;
    uint64_t bh_deadline_ns; /* when the window is judged (0 = none: nothing in flight) */
    uint64_t idle_ns;        /* the idle timeout we asked for */
    uint64_t keep_alive_ns;  /* the keep-alive in force (0 = off): asked for, or the clamp */
    unsigned sent_big : 1;
    size_t tx_cap;

    /* The expiry timer: ngtcp2's next deadline (ngtcp2_conn_get_expiry). Waits of a millisecond
     * or more go to the libev timer; shorter ones (the ACK delay, srtt / 8, and pacing gaps on a
     * fast path) to fine_want, which fprep turns into a timerfd deadline, or into a non-blocking
     * poll, only when the loop is about to block (see arm_timer). */
    ev_timer timer;
    ev_prepare fprep;
    ev_io tio;
    int tfd;            /* the timerfd, created on first need, closed when idle; -1 = none */
    uint64_t fine_want; /* the short deadline to honour (syn_now_ns() clock); 0 = none */
    uint64_t fine_at;   /* the deadline tfd is set for; 0 = none */
    ev_io wio;
    ev_prepare prep;
    /* Graceful close (syn_qconn_close_graceful): the bound, and the wait for the ACK delay. */
    ev_timer linger_deadline, linger_ack;
    unsigned lingering : 1, linger_ack_wait : 1;
    syn_udp_tx tx;
    syn_sockaddr tx_dest; /* server: where the queued batch goes (the path ngtcp2 chose) */
    /* QUIC over TCP (tcplink.h): packets for the path (link's local, link's remote) go to the
     * link instead of fd; link_blocked: the link's queue is above its high water, the write loop
     * waits for syn_qconn_link_writable(), as it waits for EV_WRITE on a full socket. */
    syn_tcplink *link;
    int link_blocked;
    uint64_t link_pkts_sent, link_bytes_sent;

    syn_list streams; /* syn_qstream: every stream of the connection, newest first */
    syn_list pending; /* syn_qstream: streams with something to send, in turn */

    syn_hold hold;        /* the driver on the stack; dying: freed as it unwinds (leave) */
    unsigned in_prep : 1; /* in prep_cb: the loop is invoking its prepare watchers */
    /* Client: we offered an ALPN, and the edge's handshake completed without selecting one. */
    unsigned alpn_offered : 1, alpn_missing : 1;
    unsigned hs_done : 1, hs_notify : 1, avail_notify : 1, need_flush : 1;
    uint64_t tls_completed_ns; /* syn_now_ns() at handshake completion (0 before) */
    unsigned close_req : 1, end_pending : 1, ended : 1;
    unsigned cb_nomem : 1; /* one of our ngtcp2 callbacks failed for want of memory */
    uint64_t close_code;
    /* The peer's CONNECTION_CLOSE was an application close with this code (peer_closed). */
    int peer_app_close;
    uint64_t peer_app_code;
    char close_reason[64];
    ngtcp2_ccerr ccerr; /* what we send in CONNECTION_CLOSE after a local error */
    int err;            /* terminal error for ops->closed */
    char detail[SYNESIS_DETAIL_MAX];
    /* Server: a copy of the CONNECTION_CLOSE packet sent, for the owner's closing period. */
    uint8_t *close_pkt;
    size_t close_len;
    syn_qconn_wakes wakes;
    /* Streams the peer may open, bidirectional [0] and unidirectional [1]. */
    syn_peer_streams peer_streams[2];
};

static void qc_log(syn_qconn *qc, synesis_log_level lv, const char *fmt, ...) SYNESIS_PRINTF(3, 4);
static void qc_log(syn_qconn *qc, synesis_log_level lv, const char *fmt, ...) {
    if (!qc->ops->log)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    qc->ops->log(qc, lv, msg);
}

/* The largest datagram to write now (see blackhole_check). */
static size_t tx_size(const syn_qconn *qc) { return qc->tx_cap ? qc->tx_cap : qc->max_payload; }

void syn_qconn_settings_default(syn_qconn_settings *st) {
    memset(st, 0, sizeof(*st));
    st->idle_timeout_ns = 60 * NGTCP2_SECONDS;
    st->handshake_timeout_ns = 10 * NGTCP2_SECONDS;
    st->keep_alive_ns = 10 * NGTCP2_SECONDS;
    st->max_udp_payload = 0;
    st->pmtud = 1;
    st->max_streams_bidi = 0;
    st->max_streams_uni = 0;
    st->stream_window = 1024 * 1024;
    st->conn_window = 16 * 1024 * 1024;
}

/* ---- stream bookkeeping ---- */

static void pend_add(syn_qconn *qc, syn_qstream *s) {
    if (s->pending || s->closed || s->blocked)
        return;
    s->pending = 1;
    syn_list_push_back(&qc->pending, &s->pend_link);
}

static void pend_remove(syn_qconn *qc, syn_qstream *s) {
    if (!s->pending)
        return;
    syn_list_remove(&qc->pending, &s->pend_link);
    s->pending = 0;
}

/*
 * Round robin, a packet at a time: the stream just served goes behind the others that wait.
 * Otherwise a stream refilled as fast as it drains (a bulk upload, the edge's echo of one) kept the
 * head of the list, and so the connection, whenever the congestion window or pacing rather than
 * the stream's data was the limit: requests behind it waited until it ended (the fault table's
 * 20 % loss: 32 of 2,000 requests done in the first two minutes, timeouts after).
 */
static void pend_rotate(syn_qconn *qc, syn_qstream *s) {
    if (!s->pending || qc->pending.last == &s->pend_link)
        return;
    pend_remove(qc, s);
    pend_add(qc, s);
}

static int stream_has_work(const syn_qstream *s) {
    return s->sent < s->queued || (s->fin_queued && !s->fin_sent);
}

static syn_qstream *stream_new(syn_qconn *qc, int64_t id, void *user) {
    syn_qstream *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->id = id;
    s->qc = qc;
    s->user = user;
    s->auto_consume = 1;
    syn_list_push_front(&qc->streams, &s->link);
    return s;
}

static void chunk_release(syn_chunk *c) {
    if (c->release)
        c->release(c->data, c->len, c->release_ud);
    free(c);
}

static void stream_free(syn_qconn *qc, syn_qstream *s) {
    pend_remove(qc, s);
    syn_list_remove(&qc->streams, &s->link);
    for (syn_chunk *c = s->head, *n; c; c = n) {
        n = c->next;
        chunk_release(c);
    }
    free(s);
}

static size_t stream_vec(syn_qstream *s, ngtcp2_vec *vec, size_t max, int *all) {
    size_t n = 0;
    uint64_t off = s->sent - s->cur_base;
    syn_chunk *c = s->cur;
    for (; c && n < max; c = c->next) {
        vec[n].base = (uint8_t *)c->data + off;
        vec[n].len = c->len - (size_t)off;
        off = 0;
        n++;
    }
    *all = (c == NULL);
    return n;
}

static void stream_advance(syn_qconn *qc, syn_qstream *s, ngtcp2_ssize ndatalen, uint32_t flags) {
    if (ndatalen < 0)
        return;
    s->sent += (uint64_t)ndatalen;
    while (s->cur && s->sent >= s->cur_base + s->cur->len) {
        s->cur_base += s->cur->len;
        s->cur = s->cur->next;
    }
    if ((flags & NGTCP2_WRITE_STREAM_FLAG_FIN) && s->sent == s->queued)
        s->fin_sent = 1;
    if (!stream_has_work(s))
        pend_remove(qc, s);
}

static int stream_append(syn_qstream *s, syn_chunk *c, int fin) {
    if (s->fin_queued || s->closed) {
        chunk_release(c);
        return SYNESIS_ERR_INVALID_STATE;
    }
    c->next = NULL;
    if (c->len) {
        if (s->tail)
            s->tail->next = c;
        else {
            s->head = c;
            s->base = s->queued;
        }
        s->tail = c;
        if (!s->cur) {
            s->cur = c;
            s->cur_base = s->queued;
        }
        s->queued += c->len;
    } else {
        chunk_release(c);
    }
    if (fin)
        s->fin_queued = 1;
    if (stream_has_work(s)) {
        pend_add(s->qc, s);
        syn_qconn_schedule(s->qc);
    }
    return 0;
}

int syn_qstream_write(syn_qstream *s, const void *data, size_t len, int fin) {
    syn_chunk *c = malloc(sizeof(*c) + len);
    if (!c)
        return SYNESIS_ERR_NOMEM;
    if (len)
        memcpy(c->inline_data, data, len);
    c->data = c->inline_data;
    c->len = len;
    c->release = NULL;
    c->release_ud = NULL;
    return stream_append(s, c, fin);
}

int syn_qstream_write_nocopy(syn_qstream *s, const void *data, size_t len, syn_release_fn release,
                             void *release_ud, int fin) {
    syn_chunk *c = malloc(sizeof(*c));
    if (!c) {
        if (release) /* released exactly once, failure included */
            release(data, len, release_ud);
        return SYNESIS_ERR_NOMEM;
    }
    c->data = data;
    c->len = len;
    c->release = release;
    c->release_ud = release_ud;
    return stream_append(s, c, fin);
}

uint64_t syn_qstream_unacked(const syn_qstream *s) { return s->queued - s->acked; }
uint64_t syn_qstream_unsent(const syn_qstream *s) { return s->queued - s->sent; }
uint64_t syn_qstream_acked(const syn_qstream *s) { return s->acked; }
int syn_qstream_fin_queued(const syn_qstream *s) { return s->fin_queued; }
int64_t syn_qstream_id(const syn_qstream *s) { return s->id; }
int syn_qstream_bidi(const syn_qstream *s) { return ngtcp2_is_bidi_stream(s->id); }
syn_qconn *syn_qstream_conn(const syn_qstream *s) { return s->qc; }
void *syn_qstream_user(const syn_qstream *s) { return s->user; }
void syn_qstream_set_user(syn_qstream *s, void *user) { s->user = user; }
void syn_qstream_set_auto_consume(syn_qstream *s, int on) { s->auto_consume = on != 0; }

void syn_qstream_consume(syn_qstream *s, size_t n) {
    syn_qconn *qc = s->qc;
    if (!n)
        return;
    /* Bytes delivered on a stream that has closed since still hold the connection's credit. */
    if (!s->closed)
        ngtcp2_conn_extend_max_stream_offset(qc->conn, s->id, n);
    ngtcp2_conn_extend_max_offset(qc->conn, n);
    syn_qconn_schedule(qc);
}

void syn_qstream_consume_stream(syn_qstream *s, size_t n) {
    if (!n || s->closed)
        return;
    ngtcp2_conn_extend_max_stream_offset(s->qc->conn, s->id, n);
    syn_qconn_schedule(s->qc);
}

void syn_qconn_consume(syn_qconn *qc, size_t n) {
    if (!n || !qc->conn)
        return;
    ngtcp2_conn_extend_max_offset(qc->conn, n);
    syn_qconn_schedule(qc);
}

uint64_t syn_qstream_send_credit(const syn_qstream *s) {
    if (s->closed || !s->qc->conn)
        return 0;
    return ngtcp2_conn_get_max_stream_data_left(s->qc->conn, s->id);
}

/* Application error codes are QUIC varints: ngtcp2 aborts on a larger one. Public entry points
 * refuse them; this is the last line for internal callers. */
static uint64_t app_code_checked(syn_qconn *qc, uint64_t code) {
    if (code <= SYN_APP_CODE_MAX)
        return code;
    qc_log(qc, SYNESIS_LOG_ERROR,
           "application error code 0x%llx is not a QUIC varint; sending 0x%x",
           (unsigned long long)code, SYN_APP_INTERNAL);
    return SYN_APP_INTERNAL;
}

void syn_qstream_shutdown(syn_qstream *s, uint64_t app_code) {
    if (s->closed)
        return;
    ngtcp2_conn_shutdown_stream(s->qc->conn, 0, s->id, app_code_checked(s->qc, app_code));
    pend_remove(s->qc, s);
    syn_qconn_schedule(s->qc);
}

void syn_qstream_stop_reading(syn_qstream *s, uint64_t app_code) {
    if (s->closed)
        return;
    ngtcp2_conn_shutdown_stream_read(s->qc->conn, 0, s->id, app_code_checked(s->qc, app_code));
    syn_qconn_schedule(s->qc);
}

int syn_qconn_open_stream(syn_qconn *qc, int bidi, void *user, syn_qstream **out) {
    *out = NULL;
    if (qc->ended || qc->close_req || qc->end_pending || qc->lingering || !qc->hs_done)
        return SYNESIS_ERR_NOT_CONNECTED;
    int64_t id;
    syn_qstream *s = stream_new(qc, -1, user);
    if (!s)
        return SYNESIS_ERR_NOMEM;
    int rv = bidi ? ngtcp2_conn_open_bidi_stream(qc->conn, &id, s)
                  : ngtcp2_conn_open_uni_stream(qc->conn, &id, s);
    if (rv != 0) {
        stream_free(qc, s);
        return rv == NGTCP2_ERR_STREAM_ID_BLOCKED ? SYNESIS_ERR_WOULD_BLOCK
               : rv == NGTCP2_ERR_NOMEM           ? SYNESIS_ERR_NOMEM
                                                  : SYNESIS_ERR_QUIC;
    }
    s->id = id;
    *out = s;
    return 0;
}

static void local_error(syn_qconn *qc, int rv, const char *where);

int syn_qconn_open_stream_early(syn_qconn *qc, int bidi, void *user, syn_qstream **out) {
    *out = NULL;
    if (!syn_qconn_early(qc))
        return SYNESIS_ERR_INVALID_STATE;
    int64_t id;
    syn_qstream *s = stream_new(qc, -1, user);
    if (!s)
        return SYNESIS_ERR_NOMEM;
    int rv = bidi ? ngtcp2_conn_open_bidi_stream(qc->conn, &id, s)
                  : ngtcp2_conn_open_uni_stream(qc->conn, &id, s);
    if (rv != 0) {
        stream_free(qc, s);
        return rv == NGTCP2_ERR_STREAM_ID_BLOCKED ? SYNESIS_ERR_WOULD_BLOCK
               : rv == NGTCP2_ERR_NOMEM           ? SYNESIS_ERR_NOMEM
                                                  : SYNESIS_ERR_QUIC;
    }
    s->id = id;
    s->early = 1;
    *out = s;
    return 0;
}

int syn_qconn_early(const syn_qconn *qc) {
    return qc->early && !qc->hs_done && !qc->ended && !qc->end_pending && !qc->close_req &&
           qc->conn;
}

int syn_qconn_early_result(const syn_qconn *qc) {
    if (qc->server)
        return qc->ssl && SSL_get_early_data_status(qc->ssl) == SSL_EARLY_DATA_ACCEPTED;
    return qc->early_accepted ? 1 : qc->early_rejected ? -1 : 0;
}

/* The edge rejected 0-RTT: ngtcp2 has forgotten the early streams (ngtcp2_conn_tls_early_data_
 * rejected resets its stream state and stream IDs, and calls no stream_close), so each is opened
 * again, in the order of their IDs (which gives each its old ID back, unless one before it was
 * dropped), and everything it queued is sent again from the start: the edge discarded the 0-RTT
 * packets undecrypted, so nothing of them was delivered or acknowledged. */
static void early_reopen(syn_qconn *qc) {
    qc->early_reopen = 0;
    for (int bidi = 1; bidi >= 0; bidi--) {
        for (;;) {
            syn_qstream *next = NULL, *s;
            SYN_LIST_FOREACH(s, &qc->streams, syn_qstream, link)
                if (s->early && !s->closed && (ngtcp2_is_bidi_stream(s->id) != 0) == bidi &&
                    (!next || s->id < next->id))
                    next = s;
            if (!next)
                break;
            next->early = 0;
            if (!next->user) {
                /* Its owner let go meanwhile (a request cancelled or timed out): ngtcp2 will
                 * never close it now, so it goes here, unsent. */
                stream_free(qc, next);
                continue;
            }
            int64_t id;
            int rv = bidi ? ngtcp2_conn_open_bidi_stream(qc->conn, &id, next)
                          : ngtcp2_conn_open_uni_stream(qc->conn, &id, next);
            if (rv != 0 || next->acked) {
                /* (cannot happen: the 1-RTT limits are at least the remembered ones) */
                local_error(qc, rv ? rv : NGTCP2_ERR_INTERNAL, "reopening a 0-RTT stream");
                return;
            }
            next->id = id;
            next->sent = next->base;
            next->cur = next->head;
            next->cur_base = next->base;
            next->fin_sent = 0;
            if (stream_has_work(next))
                pend_add(qc, next);
        }
    }
    qc->need_flush = 1;
}

/* ---- ngtcp2 callbacks ---- */

static void rand_cb(uint8_t *dest, size_t len, const ngtcp2_rand_ctx *ctx) {
    (void)ctx;
    if (RAND_bytes(dest, (int)len) != 1)
        memset(dest, 0, len); /* only reached if the DRBG is broken; ngtcp2 has no error path */
}

static int new_cid_cb(ngtcp2_conn *conn, ngtcp2_cid *cid, uint8_t *token, size_t cidlen, void *ud) {
    (void)conn;
    syn_qconn *qc = ud;
    if (RAND_bytes(cid->data, (int)cidlen) != 1 ||
        RAND_bytes(token, NGTCP2_STATELESS_RESET_TOKENLEN) != 1)
        return NGTCP2_ERR_CALLBACK_FAILURE;
    cid->datalen = cidlen;
    if (qc->ops->cid_added)
        qc->ops->cid_added(qc, cid);
    return 0;
}

static int remove_cid_cb(ngtcp2_conn *conn, const ngtcp2_cid *cid, void *ud) {
    (void)conn;
    syn_qconn *qc = ud;
    if (qc->ops->cid_removed)
        qc->ops->cid_removed(qc, cid);
    return 0;
}

/* The server is up once its handshake completes (the client's certificate verified). The client
 * is up only once the handshake is confirmed (HANDSHAKE_DONE from the server): in TLS 1.3 the
 * client finishes before the server has judged its certificate, and a refusal arrives after;
 * a resumed handshake, which carries no certificate, is up as it completes (below). */
static int handshake_completed_cb(ngtcp2_conn *conn, void *ud) {
    syn_qconn *qc = ud;
    qc->tls_completed_ns = syn_now_ns();
    /* The idle timeout in force is the smaller of the two sides' (RFC 9000 10.1): a keep-alive
     * longer than the edge's would let the connection die between two PINGs (the low-bandwidth
     * profile's keep-alive against an edge with a short idle timeout). Nine tenths of it. */
    const ngtcp2_transport_params *rp = ngtcp2_conn_get_remote_transport_params(conn);
    if (!qc->server && qc->keep_alive_ns && rp && rp->max_idle_timeout &&
        qc->keep_alive_ns > rp->max_idle_timeout / 10 * 9) {
        qc->keep_alive_ns = rp->max_idle_timeout / 10 * 9;
        ngtcp2_conn_set_keep_alive_timeout(conn, qc->keep_alive_ns);
    }
    if (qc->server) {
        qc->hs_done = 1;
        qc->hs_notify = 1;
    } else {
        if (qc->alpn_offered) {
            /* OpenSSL refuses a protocol we did not offer, but not the absence of one, which QUIC
             * forbids (RFC 9001 8.1): closed with no_application_protocol once ngtcp2 returns. */
            const unsigned char *sel = NULL;
            unsigned int len = 0;
            SSL_get0_alpn_selected(qc->ssl, &sel, &len);
            if (!len)
                qc->alpn_missing = 1;
        }
        if (qc->early) {
            /* OpenSSL knows the edge's verdict on our early data once the handshake completed
             * (ngtcp2's OpenSSL backend does not pass it on by itself). */
            qc->early = 0;
            if (SSL_get_early_data_status(qc->ssl) == SSL_EARLY_DATA_ACCEPTED) {
                qc->early_accepted = 1;
            } else {
                qc->early_rejected = 1;
                int rv = ngtcp2_conn_tls_early_data_rejected(conn);
                if (rv != 0)
                    return rv;
                qc->early_reopen = 1;
            }
        }
        /* A resumed handshake is up once it completes: the edge accepted the ticket (its PSK)
         * before it sent its Finished, and no certificate of ours is left for it to judge (TLS
         * 1.3 sends none in a PSK handshake), so no refusal can follow; waiting for
         * HANDSHAKE_DONE, as a full handshake must, would cost a round trip for nothing. */
        if (!qc->alpn_missing && SSL_session_reused(qc->ssl) == 1) {
            qc->hs_done = 1;
            qc->hs_notify = 1;
        }
    }
    return 0;
}

static int handshake_confirmed_cb(ngtcp2_conn *conn, void *ud) {
    (void)conn;
    syn_qconn *qc = ud;
    if (!qc->server && !qc->hs_done) {
        qc->hs_done = 1;
        qc->hs_notify = 1;
    }
    return 0;
}

/*
 * Returns the credit of the peer's closed streams once the peer has used half of what it may open,
 * or at once when it is down to its last half: a MAX_STREAMS frame for every closed stream would
 * make every heartbeat (one unidirectional stream each) cost the device an ack-eliciting packet
 * from the edge, and the ACK and wake-up that go with it. The peer can always open at least half
 * of the initial count beyond those it has open.
 */
static void peer_streams_credit(syn_qconn *qc, int uni) {
    syn_peer_streams *p = &qc->peer_streams[uni];
    if (!p->closed || p->limit - p->opened > p->initial / 2)
        return;
    if (uni)
        ngtcp2_conn_extend_max_streams_uni(qc->conn, p->closed);
    else
        ngtcp2_conn_extend_max_streams_bidi(qc->conn, p->closed);
    p->limit += p->closed;
    p->closed = 0;
}

static int stream_open_cb(ngtcp2_conn *conn, int64_t id, void *ud) {
    syn_qconn *qc = ud;
    if (!ngtcp2_conn_is_local_stream(conn, id)) {
        int uni = !ngtcp2_is_bidi_stream(id);
        uint64_t n = ((uint64_t)id >> 2) + 1;
        if (n > qc->peer_streams[uni].opened)
            qc->peer_streams[uni].opened = n;
        peer_streams_credit(qc, uni);
    }
    syn_qstream *s = stream_new(qc, id, NULL);
    if (!s) {
        qc->cb_nomem = 1; /* ngtcp2 turns any callback error into NGTCP2_ERR_CALLBACK_FAILURE */
        return NGTCP2_ERR_CALLBACK_FAILURE;
    }
    ngtcp2_conn_set_stream_user_data(conn, id, s);
    if (!qc->ops->stream_open || qc->ops->stream_open(qc, s) != 0)
        ngtcp2_conn_shutdown_stream(conn, 0, id, 0x1 /* refused */);
    return 0;
}

static int recv_stream_data_cb(ngtcp2_conn *conn, uint32_t flags, int64_t id, uint64_t offset,
                               const uint8_t *data, size_t len, void *ud, void *sud) {
    (void)offset;
    syn_qconn *qc = ud;
    syn_qstream *s = sud;
    if (!s) {
        /* Data on one of our own streams whose object is gone: ignore but keep credit flowing. */
        ngtcp2_conn_extend_max_stream_offset(conn, id, len);
        ngtcp2_conn_extend_max_offset(conn, len);
        return 0;
    }
    if (qc->ops->stream_data && !syn_hold_dying(&qc->hold))
        qc->ops->stream_data(qc, s, data, len, (flags & NGTCP2_STREAM_DATA_FLAG_FIN) != 0);
    if (s->auto_consume && len) {
        ngtcp2_conn_extend_max_stream_offset(conn, id, len);
        ngtcp2_conn_extend_max_offset(conn, len);
    }
    return 0;
}

static int acked_cb(ngtcp2_conn *conn, int64_t id, uint64_t offset, uint64_t len, void *ud,
                    void *sud) {
    (void)conn;
    (void)id;
    syn_qconn *qc = ud;
    syn_qstream *s = sud;
    if (!s)
        return 0;
    uint64_t end = offset + len;
    if (end > s->acked)
        s->acked = end;
    qc->acked_total += len;
    while (s->head && s->base + s->head->len <= s->acked) {
        syn_chunk *c = s->head;
        s->base += c->len;
        s->head = c->next;
        if (!s->head)
            s->tail = NULL;
        chunk_release(c);
    }
    if (qc->ops->stream_acked && !syn_hold_dying(&qc->hold))
        qc->ops->stream_acked(qc, s);
    return 0;
}

static int stream_close_cb(ngtcp2_conn *conn, uint32_t flags, int64_t id, uint64_t app_code,
                           void *ud, void *sud) {
    syn_qconn *qc = ud;
    syn_qstream *s = sud;
    /* The peer's streams return their credit as they close (the edge's requests and heartbeats;
     * the edge's reports to a device), in batches. */
    if (!ngtcp2_conn_is_local_stream(conn, id)) {
        int uni = !ngtcp2_is_bidi_stream(id);
        qc->peer_streams[uni].closed++;
        peer_streams_credit(qc, uni);
    }
    if (!s)
        return 0;
    s->closed = 1;
    pend_remove(qc, s);
    if (qc->ops->stream_close && !syn_hold_dying(&qc->hold))
        qc->ops->stream_close(qc, s, app_code,
                              (flags & NGTCP2_STREAM_CLOSE_FLAG_APP_ERROR_CODE_SET) != 0);
    stream_free(qc, s);
    return 0;
}

static int stream_reset_cb(ngtcp2_conn *conn, int64_t id, uint64_t final_size, uint64_t app_code,
                           void *ud, void *sud) {
    (void)conn;
    (void)id;
    (void)final_size;
    syn_qconn *qc = ud;
    if (sud && qc->ops->stream_reset && !syn_hold_dying(&qc->hold))
        qc->ops->stream_reset(qc, sud, app_code, 0);
    return 0;
}

#ifdef NGTCP2_CALLBACKS_V3
/* The peer asked us to stop sending (ngtcp2 >= 1.24 reports it; it resets our side itself). */
static int recv_stop_sending_cb(ngtcp2_conn *conn, int64_t id, uint64_t app_code, void *ud,
                                void *sud) {
    (void)conn;
    (void)id;
    syn_qconn *qc = ud;
    syn_qstream *s = sud;
    if (s) {
        pend_remove(qc, s);
        if (qc->ops->stream_reset && !syn_hold_dying(&qc->hold))
            qc->ops->stream_reset(qc, s, app_code, 1);
    }
    return 0;
}
#endif

static int extend_max_streams_cb(ngtcp2_conn *conn, uint64_t max, void *ud) {
    (void)conn;
    (void)max;
    syn_qconn *qc = ud;
    qc->avail_notify = 1;
    return 0;
}

static int extend_max_stream_data_cb(ngtcp2_conn *conn, int64_t id, uint64_t max, void *ud,
                                     void *sud) {
    (void)conn;
    (void)id;
    (void)max;
    syn_qconn *qc = ud;
    syn_qstream *s = sud;
    if (s && s->blocked) {
        s->blocked = 0;
        if (stream_has_work(s))
            pend_add(qc, s);
    }
    if (s && qc->ops->stream_credit && !syn_hold_dying(&qc->hold))
        qc->ops->stream_credit(qc, s);
    return 0;
}

static void ngtcp2_log_cb(void *ud, const char *fmt, ...) {
    syn_qconn *qc = ud;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (qc->ops->log)
        qc->ops->log(qc, SYNESIS_LOG_TRACE, msg);
}

/* Client: NEW_TOKEN from the edge. */
static int recv_new_token_cb(ngtcp2_conn *conn, const uint8_t *token, size_t len, void *ud) {
    (void)conn;
    syn_qconn *qc = ud;
    if (qc->ops->new_token)
        qc->ops->new_token(qc, token, len);
    return 0;
}

static void path_addr(const ngtcp2_addr *a, syn_sockaddr *out) {
    memset(out, 0, sizeof(*out));
    if (a->addrlen && a->addrlen <= sizeof(out->ss)) {
        memcpy(&out->ss, a->addr, a->addrlen);
        out->len = a->addrlen;
    }
}

static int path_validation_cb(ngtcp2_conn *conn, uint32_t flags, const ngtcp2_path *path,
                              const ngtcp2_path *fallback_path, ngtcp2_path_validation_result res,
                              void *ud) {
    (void)conn;
    (void)flags;
    syn_qconn *qc = ud;
    if (!qc->ops->path_validated)
        return 0;
    syn_sockaddr remote, old;
    path_addr(&path->remote, &remote);
    if (fallback_path)
        path_addr(&fallback_path->remote, &old);
    int result = res == NGTCP2_PATH_VALIDATION_RESULT_SUCCESS   ? 1
                 : res == NGTCP2_PATH_VALIDATION_RESULT_ABORTED ? -1
                                                                : 0;
    if (result == 1 && !qc->server) {
        /* The validated path is the current one now (a probe's validation switches to it): later
         * migrations start from it. */
        path_addr(&path->local, &qc->local);
        qc->remote = remote;
    }
    qc->ops->path_validated(qc, result, &remote, fallback_path ? &old : NULL);
    return 0;
}

/* Client: a session ticket (see syn_tls_session_sink), kept with the edge's transport parameters
 * as a 0-RTT attempt would need them. */
static int session_sink_cb(void *ud, SSL *ssl, SSL_SESSION *sess) {
    (void)ssl;
    syn_qconn *qc = ud;
    if (!qc->ops->new_session || !qc->conn || !SSL_SESSION_is_resumable(sess))
        return 0;
    uint8_t tp[512];
    ngtcp2_ssize n = ngtcp2_conn_encode_0rtt_transport_params(qc->conn, tp, sizeof(tp));
    return qc->ops->new_session(qc, sess, tp, n > 0 ? (size_t)n : 0);
}

static ngtcp2_conn *get_conn_cb(ngtcp2_crypto_conn_ref *ref) {
    syn_qconn *qc = ref->user_data;
    return qc->conn;
}

static void fill_callbacks(ngtcp2_callbacks *cb, int server) {
    memset(cb, 0, sizeof(*cb));
    if (server) {
        cb->recv_client_initial = ngtcp2_crypto_recv_client_initial_cb;
    } else {
        cb->client_initial = ngtcp2_crypto_client_initial_cb;
        cb->recv_retry = ngtcp2_crypto_recv_retry_cb;
        cb->recv_new_token = recv_new_token_cb;
    }
    cb->recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb;
    cb->encrypt = ngtcp2_crypto_encrypt_cb;
    cb->decrypt = ngtcp2_crypto_decrypt_cb;
    cb->hp_mask = ngtcp2_crypto_hp_mask_cb;
    cb->update_key = ngtcp2_crypto_update_key_cb;
    cb->delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb;
    cb->delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb;
    cb->get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb;
    cb->path_validation = path_validation_cb;
    cb->version_negotiation = ngtcp2_crypto_version_negotiation_cb;
    cb->rand = rand_cb;
    cb->get_new_connection_id = new_cid_cb;
    cb->remove_connection_id = remove_cid_cb;
    cb->handshake_completed = handshake_completed_cb;
    cb->handshake_confirmed = handshake_confirmed_cb;
    cb->stream_open = stream_open_cb;
    cb->recv_stream_data = recv_stream_data_cb;
    cb->acked_stream_data_offset = acked_cb;
    cb->stream_close = stream_close_cb;
    cb->stream_reset = stream_reset_cb;
    cb->extend_max_local_streams_bidi = extend_max_streams_cb;
    cb->extend_max_local_streams_uni = extend_max_streams_cb;
    cb->extend_max_stream_data = extend_max_stream_data_cb;
#ifdef NGTCP2_CALLBACKS_V3
    cb->recv_stop_sending = recv_stop_sending_cb;
#endif
}

/* ---- lifecycle ---- */

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void fprep_cb(struct ev_loop *loop, ev_prepare *w, int revents);
static void tio_cb(struct ev_loop *loop, ev_io *w, int revents);
static void linger_ack_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void linger_deadline_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void wio_cb(struct ev_loop *loop, ev_io *w, int revents);
static void prep_cb(struct ev_loop *loop, ev_prepare *w, int revents);

static syn_qconn *qc_alloc(struct ev_loop *loop, int fd, const syn_sockaddr *local,
                           const syn_sockaddr *remote, const syn_qconn_settings *st,
                           const syn_qconn_ops *ops, void *owner, int server) {
    syn_qconn *qc = calloc(1, sizeof(*qc));
    if (!qc)
        return NULL;
    qc->loop = loop;
    qc->fd = fd;
    qc->local = *local;
    qc->remote = *remote;
    qc->ops = ops;
    qc->owner = owner;
    qc->server = server;
    qc->idle_ns = st->idle_timeout_ns;
    qc->keep_alive_ns = st->keep_alive_ns;
    qc->peer_streams[0].initial = qc->peer_streams[0].limit = st->max_streams_bidi;
    qc->peer_streams[1].initial = qc->peer_streams[1].limit = st->max_streams_uni;
    qc->max_payload = st->max_udp_payload ? st->max_udp_payload : 1452;
    if (qc->max_payload > SYN_UDP_MAX_PAYLOAD)
        qc->max_payload = SYN_UDP_MAX_PAYLOAD;
    if (qc->max_payload < NGTCP2_MAX_UDP_PAYLOAD_SIZE)
        qc->max_payload = NGTCP2_MAX_UDP_PAYLOAD_SIZE;
    if (syn_udp_tx_init(&qc->tx, fd, local->ss.ss_family) != 0) {
        free(qc);
        return NULL;
    }
    qc->conn_ref.get_conn = get_conn_cb;
    qc->conn_ref.user_data = qc;
    ngtcp2_ccerr_default(&qc->ccerr);
    ev_timer_init(&qc->timer, timer_cb, 0., 0.);
    qc->timer.data = qc;
    ev_prepare_init(&qc->fprep, fprep_cb);
    qc->fprep.data = qc;
    qc->tfd = -1;
    ev_init(&qc->tio, tio_cb);
    qc->tio.data = qc;
    ev_io_init(&qc->wio, wio_cb, fd, EV_WRITE);
    qc->wio.data = qc;
    ev_prepare_init(&qc->prep, prep_cb);
    qc->prep.data = qc;
    ev_timer_init(&qc->linger_ack, linger_ack_cb, 0., 0.);
    qc->linger_ack.data = qc;
    ev_timer_init(&qc->linger_deadline, linger_deadline_cb, 0., 0.);
    qc->linger_deadline.data = qc;
    return qc;
}

/*
 * ngtcp2's "glitch" limiter closes the connection with INTERNAL_ERROR when the peer does more
 * suspicious things than it allows (by default 330 a second, 10000 in reserve). Among them is
 * STREAM data that was already received, which is also what an honest peer sends on a path that
 * reorders: packets that are late by more than QUIC's reordering threshold are declared lost and
 * their data sent again, and then the late originals arrive too. Under 100 ms +- 50 ms of jitter
 * the defaults ended every bulk-loaded connection within a minute (docs/reliability.md), and with
 * 2 to 10 ms on loopback within seconds (tests/test_jitter.c). An honest peer repeats at most
 * about one frame per packet it sends, so the limit is set above any packet rate one loop can
 * drive; the reserve absorbs ten seconds of it.
 */
#define SYN_QCONN_GLITCH_RATE 200000u
#define SYN_QCONN_GLITCH_BURST (10u * SYN_QCONN_GLITCH_RATE)

static void fill_settings(syn_qconn *qc, const syn_qconn_settings *st, ngtcp2_settings *s,
                          ngtcp2_transport_params *p) {
    ngtcp2_settings_default(s);
    s->initial_ts = syn_now_ns();
    s->handshake_timeout = st->handshake_timeout_ns ? st->handshake_timeout_ns : UINT64_MAX;
    s->max_tx_udp_payload_size = qc->max_payload;
    s->no_pmtud = st->pmtud ? 0 : 1;
    s->glitch_ratelim_rate = SYN_QCONN_GLITCH_RATE;
    s->glitch_ratelim_burst = SYN_QCONN_GLITCH_BURST;
    s->cc_algo = st->cc == SYNESIS_CC_BBR    ? NGTCP2_CC_ALGO_BBR
                 : st->cc == SYNESIS_CC_RENO ? NGTCP2_CC_ALGO_RENO
                                             : NGTCP2_CC_ALGO_CUBIC;
    if (st->ack_at_once)
        s->ack_thresh = 1;
    if (st->trace)
        s->log_printf = ngtcp2_log_cb;
    ngtcp2_transport_params_default(p);
    p->max_idle_timeout = st->idle_timeout_ns;
    p->initial_max_streams_bidi = st->max_streams_bidi;
    p->initial_max_streams_uni = st->max_streams_uni;
    p->initial_max_stream_data_bidi_local = st->stream_window;
    p->initial_max_stream_data_bidi_remote = st->stream_window;
    p->initial_max_stream_data_uni = st->stream_window;
    p->initial_max_data = st->conn_window;
    p->max_udp_payload_size = SYN_UDP_MAX_PAYLOAD; /* what our receive buffers take */
}

static ngtcp2_path qc_path(syn_qconn *qc) {
    ngtcp2_path path = {
        .local = {.addr = (ngtcp2_sockaddr *)&qc->local.ss,  .addrlen = qc->local.len },
        .remote = {.addr = (ngtcp2_sockaddr *)&qc->remote.ss, .addrlen = qc->remote.len},
        .user_data = NULL,
    };
    return path;
}

static int qc_ssl_new(syn_qconn *qc, SSL_CTX *ctx, char *detail) {
    syn_ossl_clear();
    qc->ssl = SSL_new(ctx);
    if (!qc->ssl)
        return syn_fail_ossl(detail, SYNESIS_ERR_CRYPTO, "SSL_new");
    if (ngtcp2_crypto_ossl_ctx_new(&qc->octx, qc->ssl) != 0) /* NGTCP2_CRYPTO_ERR_NOMEM only */
        return syn_fail(detail, SYNESIS_ERR_NOMEM, "ngtcp2_crypto_ossl_ctx_new: out of memory");
    int rv = qc->server ? ngtcp2_crypto_ossl_configure_server_session(qc->ssl)
                        : ngtcp2_crypto_ossl_configure_client_session(qc->ssl);
    if (rv != 0)
        return syn_fail_ossl(detail, SYNESIS_ERR_CRYPTO, "configuring the QUIC TLS session");
    SSL_set_app_data(qc->ssl, &qc->conn_ref);
    if (!qc->server) {
        qc->sink.fn = session_sink_cb;
        qc->sink.user_data = qc;
        if (syn_tls_set_session_sink(qc->ssl, &qc->sink) != 0)
            return syn_fail(detail, SYNESIS_ERR_NOMEM, "out of memory");
    }
    return 0;
}

int syn_qconn_client_new(syn_qconn **out, struct ev_loop *loop, int fd, const syn_sockaddr *local,
                         const syn_sockaddr *remote, SSL_CTX *ctx, const char *server_name,
                         const char *alpn, const syn_qconn_settings *st, const syn_qconn_ops *ops,
                         void *owner, char *detail) {
    *out = NULL;
    syn_qconn *qc = qc_alloc(loop, fd, local, remote, st, ops, owner, 0);
    if (!qc)
        return syn_fail(detail, SYNESIS_ERR_NOMEM, "out of memory");
    int rv = qc_ssl_new(qc, ctx, detail);
    if (rv == 0) {
        SSL_set_connect_state(qc->ssl);
        rv = syn_tls_client_ssl_setup(qc->ssl, server_name, alpn, detail);
        qc->alpn_offered = alpn != NULL;
    }
    if (rv == 0 && st->session) {
        syn_ossl_clear();
        if (SSL_set_session(qc->ssl, st->session) == 1)
            qc->offered_session = 1;
        else
            syn_ossl_clear(); /* a full handshake then */
    }
    if (rv == 0) {
        ngtcp2_cid dcid, scid;
        dcid.datalen = NGTCP2_MIN_INITIAL_DCIDLEN;
        scid.datalen = 8;
        if (RAND_bytes(dcid.data, (int)dcid.datalen) != 1 ||
            RAND_bytes(scid.data, (int)scid.datalen) != 1) {
            rv = syn_fail_ossl(detail, SYNESIS_ERR_CRYPTO, "RAND_bytes");
        } else {
            ngtcp2_callbacks cb;
            ngtcp2_settings s;
            ngtcp2_transport_params p;
            fill_callbacks(&cb, 0);
            fill_settings(qc, st, &s, &p);
            s.token = st->token;
            s.tokenlen = st->tokenlen;
            ngtcp2_path path = qc_path(qc);
            int nrv = ngtcp2_conn_client_new(&qc->conn, &dcid, &scid, &path, NGTCP2_PROTO_VER_V1,
                                             &cb, &s, &p, NULL, qc);
            if (nrv != 0)
                rv =
                    syn_fail(detail, nrv == NGTCP2_ERR_NOMEM ? SYNESIS_ERR_NOMEM : SYNESIS_ERR_QUIC,
                             "ngtcp2_conn_client_new: %s", ngtcp2_strerror(nrv));
        }
    }
    if (rv != 0) {
        syn_qconn_free(qc);
        return rv;
    }
    ngtcp2_conn_set_tls_native_handle(qc->conn, qc->octx);
    if (st->keep_alive_ns)
        ngtcp2_conn_set_keep_alive_timeout(qc->conn, st->keep_alive_ns);
    /* 0-RTT: the ticket must allow it (OpenSSL refuses otherwise) and ngtcp2 must know the edge's
     * remembered transport parameters (the stream limits 0-RTT may use). */
    if (st->early_data && qc->offered_session && st->early_tplen &&
        SSL_SESSION_get_max_early_data(st->session) == UINT32_MAX &&
        ngtcp2_conn_decode_and_set_0rtt_transport_params(qc->conn, st->early_tp, st->early_tplen) ==
            0) {
        syn_ossl_clear();
        if (SSL_set_quic_tls_early_data_enabled(qc->ssl, 1) == 1)
            qc->early = 1;
        syn_ossl_clear();
    }
    *out = qc;
    return 0;
}

int syn_qconn_server_new(syn_qconn **out, struct ev_loop *loop, int fd, const syn_sockaddr *local,
                         const syn_sockaddr *remote, const ngtcp2_pkt_hd *hd,
                         const ngtcp2_cid *retry_odcid, SSL_CTX *ctx, const syn_qconn_settings *st,
                         const syn_qconn_ops *ops, void *owner, char *detail) {
    *out = NULL;
    syn_qconn *qc = qc_alloc(loop, fd, local, remote, st, ops, owner, 1);
    if (!qc)
        return syn_fail(detail, SYNESIS_ERR_NOMEM, "out of memory");
    int rv = qc_ssl_new(qc, ctx, detail);
    if (rv == 0 && st->early_data && SSL_set_quic_tls_early_data_enabled(qc->ssl, 1) != 1)
        rv = syn_fail_ossl(detail, SYNESIS_ERR_CRYPTO, "enabling early data");
    if (rv == 0) {
        SSL_set_accept_state(qc->ssl);
        ngtcp2_cid scid;
        scid.datalen = SYN_SV_SCIDLEN;
        ngtcp2_callbacks cb;
        ngtcp2_settings s;
        ngtcp2_transport_params p;
        fill_callbacks(&cb, 1);
        fill_settings(qc, st, &s, &p);
        s.token = hd->token;
        s.tokenlen = hd->tokenlen;
        p.original_dcid_present = 1;
        /* Room for the client's IDs while path validations overlap: with the default of 2, a
         * client migrating again before our validation of its previous path has settled hands
         * us one ID too many within a few migrations and ngtcp2 ends the connection with
         * CONNECTION_ID_LIMIT_ERROR (with 7, as in ngtcp2's example server, only rarely, under
         * back-to-back migrations). This bounds the client's IDs we store; the IDs we issue
         * follow the client's limit. */
        p.active_connection_id_limit = 7;
        if (retry_odcid) {
            s.token_type = NGTCP2_TOKEN_TYPE_RETRY;
            p.original_dcid = *retry_odcid;
            p.retry_scid = hd->dcid;
            p.retry_scid_present = 1;
        } else {
            p.original_dcid = hd->dcid;
            if (hd->tokenlen) /* verified by the owner: a NEW_TOKEN token of ours */
                s.token_type = NGTCP2_TOKEN_TYPE_NEW_TOKEN;
        }
        if (st->preferred_addr) {
            ngtcp2_preferred_addr *pa = &p.preferred_addr;
            p.preferred_addr_present = 1;
            if (st->preferred_addr->ss.ss_family == AF_INET) {
                memcpy(&pa->ipv4, &st->preferred_addr->ss, sizeof(pa->ipv4));
                pa->ipv4_present = 1;
            } else {
                memcpy(&pa->ipv6, &st->preferred_addr->ss, sizeof(pa->ipv6));
                pa->ipv6_present = 1;
            }
            pa->cid.datalen = SYN_SV_SCIDLEN;
            if (RAND_bytes(pa->cid.data, (int)pa->cid.datalen) != 1 ||
                RAND_bytes(pa->stateless_reset_token, sizeof(pa->stateless_reset_token)) != 1)
                rv = syn_fail_ossl(detail, SYNESIS_ERR_CRYPTO, "RAND_bytes");
        }
        if (rv == 0 &&
            (RAND_bytes(scid.data, (int)scid.datalen) != 1 ||
             RAND_bytes(p.stateless_reset_token, sizeof(p.stateless_reset_token)) != 1)) {
            rv = syn_fail_ossl(detail, SYNESIS_ERR_CRYPTO, "RAND_bytes");
        } else if (rv == 0) {
            p.stateless_reset_token_present = 1;
            ngtcp2_path path = qc_path(qc);
            int nrv = ngtcp2_conn_server_new(&qc->conn, &hd->scid, &scid, &path, hd->version, &cb,
                                             &s, &p, NULL, qc);
            if (nrv != 0)
                rv =
                    syn_fail(detail, nrv == NGTCP2_ERR_NOMEM ? SYNESIS_ERR_NOMEM : SYNESIS_ERR_QUIC,
                             "ngtcp2_conn_server_new: %s", ngtcp2_strerror(nrv));
            else if (ops->cid_added) {
                ops->cid_added(qc, &scid);
                if (p.preferred_addr_present)
                    ops->cid_added(qc, &p.preferred_addr.cid);
            }
        }
    }
    if (rv != 0) {
        syn_qconn_free(qc);
        return rv;
    }
    ngtcp2_conn_set_tls_native_handle(qc->conn, qc->octx);
    if (st->keep_alive_ns)
        ngtcp2_conn_set_keep_alive_timeout(qc->conn, st->keep_alive_ns);
    *out = qc;
    return 0;
}

static void timer_stop(syn_qconn *qc);
static void fine_close(syn_qconn *qc);
static void fine_commit(syn_qconn *qc);

static void really_free(syn_qconn *qc) {
    ev_timer_stop(qc->loop, &qc->linger_ack);
    ev_timer_stop(qc->loop, &qc->linger_deadline);
    timer_stop(qc);
    fine_close(qc);
    ev_io_stop(qc->loop, &qc->wio);
    ev_prepare_stop(qc->loop, &qc->prep);
    while (!syn_list_empty(&qc->streams)) {
        syn_qstream *s = SYN_LIST_FIRST(&qc->streams, syn_qstream, link);
        if (qc->conn && s->id >= 0)
            ngtcp2_conn_set_stream_user_data(qc->conn, s->id, NULL);
        stream_free(qc, s);
    }
    /* Order matters with the ossl backend: detach and free the SSL, then the crypto ctx, then the
     * connection. */
    if (qc->ssl) {
        SSL_set_app_data(qc->ssl, NULL);
        /* QUIC ends a connection with CONNECTION_CLOSE, never a TLS close_notify; without this,
         * SSL_free takes the connection for an aborted one (ssl_clear_bad_session) and removes
         * its session from the context's cache: on the edge, the single-use ticket it issued
         * (0-RTT's anti-replay cache) would be gone before the device could use it. */
        SSL_set_shutdown(qc->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
        if (!qc->server)
            (void)syn_tls_set_session_sink(qc->ssl, NULL);
        SSL_free(qc->ssl);
    }
    if (qc->octx)
        ngtcp2_crypto_ossl_ctx_del(qc->octx);
    if (qc->conn)
        ngtcp2_conn_del(qc->conn);
    if (qc->owns_fd)
        close(qc->fd);
    syn_udp_tx_free(&qc->tx);
    free(qc->close_pkt);
    free(qc);
}

void syn_qconn_free(syn_qconn *qc) {
    if (!qc)
        return;
    if (syn_hold_release(&qc->hold))
        really_free(qc);
}

/* ---- errors ---- */

/* Records the terminal error (first one wins) to be reported via ops->closed. */
static void qc_end(syn_qconn *qc, int err, const char *fmt, ...) SYNESIS_PRINTF(3, 4);
static void qc_end(syn_qconn *qc, int err, const char *fmt, ...) {
    if (qc->end_pending || qc->ended)
        return;
    qc->end_pending = 1;
    qc->err = err;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(qc->detail, sizeof(qc->detail), fmt, ap);
    va_end(ap);
}

/* The destination ngtcp2 chose for a packet (the server follows the client's path: NAT rebinding,
 * path validation); our current remote when it named none. */
static void path_dest(const syn_qconn *qc, const ngtcp2_path *path, syn_sockaddr *out) {
    if (path->remote.addrlen && path->remote.addrlen <= sizeof(out->ss)) {
        memcpy(&out->ss, path->remote.addr, path->remote.addrlen);
        out->len = path->remote.addrlen;
    } else {
        *out = qc->remote;
    }
}

/* The same socket address, byte for byte: address and port. */
static int same_sockaddr(const syn_sockaddr *a, const syn_sockaddr *b) {
    return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

/* The packet ngtcp2 wrote for path goes to the link: path is the link's (its TCP connection's
 * local and remote addresses). The tunnel never uses a UDP socket whose local port equals the
 * link's, so a UDP path never matches one (docs/protocol.md, "Paths"). */
static int path_is_link(const syn_qconn *qc, const ngtcp2_path *path) {
    if (!qc->link || !syn_tcplink_is_up(qc->link))
        return 0;
    const syn_sockaddr *lr = syn_tcplink_remote(qc->link), *ll = syn_tcplink_local(qc->link);
    if (!path->remote.addrlen) /* none named: our current path */
        return same_sockaddr(&qc->remote, lr) && same_sockaddr(&qc->local, ll);
    return path->remote.addrlen == lr->len && memcmp(path->remote.addr, &lr->ss, lr->len) == 0 &&
           path->local.addrlen == ll->len && memcmp(path->local.addr, &ll->ss, ll->len) == 0;
}

/* Sends one packet on the link. Returns 0, or 1 when the link asks us to stop (the packet is
 * queued: wait for syn_qconn_link_writable); a refused packet is dropped (QUIC sees a loss). */
static int link_send(syn_qconn *qc, const uint8_t *pkt, size_t len) {
    int r = syn_tcplink_send(qc->link, pkt, len);
    if (r >= 0) {
        qc->link_pkts_sent++;
        qc->link_bytes_sent += len;
    }
    if (r == 1 || r == SYNESIS_ERR_WOULD_BLOCK) { /* (past the hard bound: dropped, and wait) */
        qc->link_blocked = 1;
        return 1;
    }
    return 0;
}

/* Sends CONNECTION_CLOSE carrying qc->ccerr, once, stamped ts (0 = now). */
static void send_close_at(syn_qconn *qc, uint64_t ts) {
    if (!qc->conn || ngtcp2_conn_in_closing_period(qc->conn) ||
        ngtcp2_conn_in_draining_period(qc->conn))
        return;
    ngtcp2_path_storage ps;
    ngtcp2_path_storage_zero(&ps);
    ngtcp2_pkt_info pi;
    syn_udp_tx_clear(&qc->tx);
    if (!ts)
        ts = syn_now_ns();
    uint8_t *pkt = syn_udp_tx_next(&qc->tx);
    ngtcp2_ssize n = ngtcp2_conn_write_connection_close(qc->conn, &ps.path, &pi, pkt, tx_size(qc),
                                                        &qc->ccerr, ts);
    if (n > 0 && qc->server && !qc->close_pkt) {
        /* Kept for the owner's closing period (RFC 9000 10.2.1): best effort, a failed copy
         * only means the close is not repeated. */
        qc->close_pkt = malloc((size_t)n);
        if (qc->close_pkt) {
            memcpy(qc->close_pkt, pkt, (size_t)n);
            qc->close_len = (size_t)n;
        }
    }
    if (n > 0 && path_is_link(qc, &ps.path)) {
        (void)link_send(qc, pkt, (size_t)n);
    } else if (n > 0 && qc->fd >= 0) {
        syn_udp_tx_push(&qc->tx, (size_t)n, pi.ecn);
        path_dest(qc, &ps.path, &qc->tx_dest);
        (void)syn_udp_flush(qc->fd, &qc->tx, qc->server ? &qc->tx_dest : NULL);
    }
    syn_udp_tx_clear(&qc->tx);
}

static void send_close(syn_qconn *qc) { send_close_at(qc, 0); }

/*
 * Before our own CONNECTION_CLOSE (which ngtcp2 writes as a packet of that frame alone): sends the
 * ACK still owed for what we received, so that the peer learns its last data (say, a response and
 * its FIN) arrived. ngtcp2 writes an ACK only once the ACK delay has elapsed since the first
 * unacknowledged packet (the delay is min(max_ack_delay, max(srtt / 8, 1 ns)), and our
 * max_ack_delay is NGTCP2_DEFAULT_MAX_ACK_DELAY), and has no call to ACK at once: so this write
 * pass is stamped that bound later than now, which makes any pending ACK due. Safe because the
 * connection ends right after: the close is written with the same timestamp (ngtcp2 only requires
 * timestamps not to go backwards), the write path checks no idle or loss timer against it (only
 * ngtcp2_conn_handle_expiry does), and the ACK's ack_delay field merely reads up to 25 ms longer
 * (the peer subtracts at most max_ack_delay from an RTT sample). Returns the timestamp to write the
 * close with. */
static uint64_t flush_pending_ack(syn_qconn *qc) {
    uint64_t ts = syn_now_ns();
    if (!qc->conn)
        return ts;
    uint64_t last = ngtcp2_conn_get_timestamp(qc->conn);
    if (last != UINT64_MAX && last > ts)
        ts = last;
    if (!qc->hs_done || ngtcp2_conn_in_closing_period(qc->conn) ||
        ngtcp2_conn_in_draining_period(qc->conn))
        return ts;
    ts += NGTCP2_DEFAULT_MAX_ACK_DELAY;
    ngtcp2_path_storage ps;
    ngtcp2_path_storage_zero(&ps);
    ngtcp2_pkt_info pi;
    syn_udp_tx_clear(&qc->tx);
    for (int i = 0; i < 4; i++) {
        ngtcp2_ssize nw =
            ngtcp2_conn_writev_stream(qc->conn, &ps.path, &pi, syn_udp_tx_next(&qc->tx),
                                      tx_size(qc), NULL, 0, -1, NULL, 0, ts);
        if (nw <= 0)
            break;
        if (path_is_link(qc, &ps.path)) {
            (void)link_send(qc, syn_udp_tx_next(&qc->tx), (size_t)nw);
            continue;
        }
        syn_udp_tx_push(&qc->tx, (size_t)nw, pi.ecn);
        path_dest(qc, &ps.path, &qc->tx_dest);
    }
    if (qc->tx.n && qc->fd >= 0)
        (void)syn_udp_flush(qc->fd, &qc->tx, qc->server ? &qc->tx_dest : NULL);
    syn_udp_tx_clear(&qc->tx);
    return ts;
}

/* Our own application close: the pending ACK, then CONNECTION_CLOSE with close_code/reason. */
static void send_app_close(syn_qconn *qc) {
    ngtcp2_ccerr_set_application_error(&qc->ccerr, qc->close_code,
                                       (const uint8_t *)qc->close_reason, strlen(qc->close_reason));
    uint64_t ts = flush_pending_ack(qc);
    send_close_at(qc, ts);
}

static const char *ccerr_type_name(ngtcp2_ccerr_type t) {
    switch (t) {
    case NGTCP2_CCERR_TYPE_TRANSPORT:
        return "transport";
    case NGTCP2_CCERR_TYPE_APPLICATION:
        return "application";
    case NGTCP2_CCERR_TYPE_VERSION_NEGOTIATION:
        return "version negotiation";
    case NGTCP2_CCERR_TYPE_IDLE_CLOSE:
        return "idle close";
    default:
        return "other";
    }
}

/* RFC 9000 20.1. */
static const char *transport_error_name(uint64_t code) {
    static const char *const names[] = {
        "NO_ERROR",
        "INTERNAL_ERROR",
        "CONNECTION_REFUSED",
        "FLOW_CONTROL_ERROR",
        "STREAM_LIMIT_ERROR",
        "STREAM_STATE_ERROR",
        "FINAL_SIZE_ERROR",
        "FRAME_ENCODING_ERROR",
        "TRANSPORT_PARAMETER_ERROR",
        "CONNECTION_ID_LIMIT_ERROR",
        "PROTOCOL_VIOLATION",
        "INVALID_TOKEN",
        "APPLICATION_ERROR",
        "CRYPTO_BUFFER_EXCEEDED",
        "KEY_UPDATE_ERROR",
        "AEAD_LIMIT_REACHED",
        "NO_VIABLE_PATH",
    };
    if (code < sizeof(names) / sizeof(names[0]))
        return names[code];
    return code >= NGTCP2_CRYPTO_ERROR && code <= NGTCP2_CRYPTO_ERROR + 0xff ? "CRYPTO_ERROR"
                                                                             : "(unknown)";
}

/* The peer closed the connection (we are draining): work out what it told us. */
static void peer_closed(syn_qconn *qc) {
    const ngtcp2_ccerr *e = ngtcp2_conn_get_ccerr(qc->conn);
    char reason[128] = "";
    if (e->reasonlen) {
        size_t n = e->reasonlen < sizeof(reason) - 1 ? e->reasonlen : sizeof(reason) - 1;
        memcpy(reason, e->reason, n);
        reason[n] = 0;
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)reason[i] < 0x20 || (unsigned char)reason[i] > 0x7e)
                reason[i] = '?';
    }
    if (e->type == NGTCP2_CCERR_TYPE_TRANSPORT && e->error_code >= NGTCP2_CRYPTO_ERROR &&
        e->error_code <= NGTCP2_CRYPTO_ERROR + 0xff && !qc->server) {
        /* A TLS alert from the edge during the handshake, e.g. it refused our certificate. */
        uint8_t alert = (uint8_t)(e->error_code - NGTCP2_CRYPTO_ERROR);
        int code = syn_tls_client_handshake_error(qc->ssl, alert, qc->detail);
        char d[SYNESIS_DETAIL_MAX];
        syn_copy_str(d, sizeof(d), qc->detail);
        qc_end(qc, code, "%s", d);
        return;
    }
    if (e->type == NGTCP2_CCERR_TYPE_APPLICATION) {
        qc->peer_app_close = 1;
        qc->peer_app_code = e->error_code;
    }
    qc_end(qc, SYNESIS_ERR_CLOSED_BY_PEER, "closed by peer: %s error 0x%llx%s%s%s",
           ccerr_type_name(e->type), (unsigned long long)e->error_code, reason[0] ? " (\"" : "",
           reason, reason[0] ? "\")" : "");
}

/* A local failure reported by ngtcp2 (rv): classify, and queue CONNECTION_CLOSE when due. */
static void local_error(syn_qconn *qc, int rv, const char *where) {
    switch (rv) {
    case NGTCP2_ERR_DRAINING:
        peer_closed(qc);
        return;
    case NGTCP2_ERR_CLOSING:
        qc_end(qc, SYNESIS_ERR_CONNECTION_LOST, "connection is closing");
        return;
    case NGTCP2_ERR_IDLE_CLOSE:
        qc_end(qc, qc->hs_done ? SYNESIS_ERR_IDLE_TIMEOUT : SYNESIS_ERR_HANDSHAKE_TIMEOUT,
               qc->hs_done ? "no packet from the peer within the idle timeout"
                           : "no handshake within the idle timeout");
        return;
    case NGTCP2_ERR_HANDSHAKE_TIMEOUT:
        qc_end(qc, SYNESIS_ERR_HANDSHAKE_TIMEOUT, "no handshake within the handshake timeout");
        return;
    case NGTCP2_ERR_DROP_CONN:
    case NGTCP2_ERR_RETRY:
        qc_end(qc, SYNESIS_ERR_CONNECTION_LOST, "connection dropped (%s)", ngtcp2_strerror(rv));
        return;
    case NGTCP2_ERR_CRYPTO: {
        uint8_t alert = ngtcp2_conn_get_tls_alert(qc->conn);
        ngtcp2_ccerr_set_tls_alert(&qc->ccerr, alert, NULL, 0);
        send_close(qc);
        if (qc->server) {
            qc_end(qc, SYNESIS_ERR_TLS_HANDSHAKE, "TLS handshake failed (alert %u)", alert);
            ERR_clear_error();
        } else {
            char d[SYNESIS_DETAIL_MAX];
            int code = syn_tls_client_handshake_error(qc->ssl, 0, d);
            qc_end(qc, code, "%s", d);
        }
        return;
    }
    case NGTCP2_ERR_CALLBACK_FAILURE: {
        /* A local failure, not the peer's: one of our callbacks (out of memory), or one of
         * ngtcp2_crypto's (packet protection, key derivation, randomness), that is OpenSSL, which
         * fails when it cannot allocate, or for good once an allocation failure has left its
         * process-wide algorithm store without an algorithm it needs. */
        int nomem = qc->cb_nomem || syn_ossl_oom();
        char reason[160] = "";
        unsigned long e = ERR_peek_last_error();
        /* (ngtcp2_crypto's own allocations fail without a trace: ask the allocator) */
        if (!nomem && syn_alloc_failing())
            nomem = 1;
        if (e && !nomem)
            snprintf(reason, sizeof(reason), " (OpenSSL: %s)",
                     ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "unknown reason");
        ERR_clear_error();
        ngtcp2_ccerr_set_liberr(&qc->ccerr, rv, NULL, 0);
        send_close(qc);
        qc_end(qc, nomem ? SYNESIS_ERR_NOMEM : SYNESIS_ERR_CRYPTO, "%s: %s%s%s", where,
               ngtcp2_strerror(rv), nomem ? ": out of memory" : "", reason);
        return;
    }
    default:
        ngtcp2_ccerr_set_liberr(&qc->ccerr, rv, NULL, 0);
        send_close(qc);
        /* Name the code we closed with: the peer learns it too (a protocol violation of the
         * peer's, such as FLOW_CONTROL_ERROR, or INTERNAL_ERROR for a failure of our own). */
        qc_end(qc, rv == NGTCP2_ERR_NOMEM ? SYNESIS_ERR_NOMEM : SYNESIS_ERR_QUIC,
               "%s: %s (closed with QUIC transport error %s, 0x%llx)", where, ngtcp2_strerror(rv),
               transport_error_name(qc->ccerr.error_code),
               (unsigned long long)qc->ccerr.error_code);
        return;
    }
}

/* ---- write path ---- */

/* Stops the expiry timer, fine part included (a timerfd still set fires into a stopped watcher and
 * is reset before its next use). */
static void timer_stop(syn_qconn *qc) {
    ev_timer_stop(qc->loop, &qc->timer);
    ev_prepare_stop(qc->loop, &qc->fprep);
    ev_io_stop(qc->loop, &qc->tio);
    qc->fine_want = 0;
}

static void fine_close(syn_qconn *qc) {
    if (qc->tfd < 0)
        return;
    ev_io_stop(qc->loop, &qc->tio);
    close(qc->tfd);
    qc->tfd = -1;
    qc->fine_at = 0;
}

/*
 * Arms the expiry timer for expiry, ngtcp2's next deadline (see do_write). Runs after every write
 * pass, so it makes no system call: a wait under a millisecond (which libev's epoll backend would
 * stretch to a whole one) is only recorded in fine_want, and fprep_cb, which runs just before the
 * loop polls, sets the timerfd for it if the loop is about to block. While datagrams keep arriving
 * the deadline usually moves (each write pass re-computes the ACK delay and the pacing time) before
 * the loop blocks, and no timer is programmed at all: each timerfd_settime costs several
 * microseconds here (an hrtimer reprogrammed, a VM exit under virtualisation), as much as a whole
 * request.
 */
static void arm_timer(syn_qconn *qc, ngtcp2_tstamp expiry) {
    ev_timer_stop(qc->loop, &qc->timer);
    qc->fine_want = 0;
    if (qc->ended || qc->end_pending) {
        timer_stop(qc);
        return;
    }
    if (qc->bh_deadline_ns && !qc->tx_cap && qc->bh_deadline_ns < expiry)
        expiry = qc->bh_deadline_ns; /* the black-hole check's (see blackhole_check) */
    if (expiry == UINT64_MAX) {
        timer_stop(qc);
        fine_close(qc);
        return;
    }
    uint64_t now = syn_now_ns();
    uint64_t wait = expiry > now ? expiry - now : 0;
    if (wait > 0 && wait < SYN_FINE_WAIT_NS) {
        qc->fine_want = expiry;
        if (!ev_is_active(&qc->fprep))
            ev_prepare_start(qc->loop, &qc->fprep);
        /* A write pass from our own prepare watcher (prep_cb) runs while the loop invokes its
         * prepare watchers: fprep_cb runs before this poll only if it is still queued. */
        if (qc->in_prep && !ev_is_pending(&qc->fprep))
            fine_commit(qc);
        return;
    }
    /* tio stays on: a timerfd still set for a short deadline fires once into tio_cb, which reads
     * it and finds nothing to do; stopping and restarting the watcher would cost an epoll_ctl
     * every time the waits change from short to long. */
    ev_prepare_stop(qc->loop, &qc->fprep);
    if (wait >= SYN_FINE_IDLE_NS)
        fine_close(qc);
    /* libev counts `after` from the time it read when this loop iteration began: the work done
     * since (this write pass, and all before it in the iteration) would make the timer fire that
     * much before ngtcp2's deadline, into a wake-up that finds nothing due and only re-arms.
     * (Both are wall-clock readings: a step of the clock shows as a lag out of bounds, ignored.) */
    double lag = ev_time() - ev_now(qc->loop);
    if (!(lag > 0 && lag < 0.1))
        lag = 0;
    ev_timer_set(&qc->timer, (double)wait / 1e9 + lag, 0.);
    ev_timer_start(qc->loop, &qc->timer);
}

/* The loop is about to poll with a short deadline pending: one already due makes the poll
 * non-blocking (a zero libev timer); a later one sets the timerfd, unless it is set for it. */
static void fine_commit(syn_qconn *qc) {
    struct ev_loop *loop = qc->loop;
    ev_prepare *w = &qc->fprep;
    uint64_t now = syn_now_ns();
    if (qc->fine_want > now && qc->tfd < 0) {
        qc->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (qc->tfd >= 0)
            ev_io_set(&qc->tio, qc->tfd, EV_READ);
    }
    if (qc->fine_want > now && qc->tfd >= 0) {
        if (qc->fine_at != qc->fine_want) {
            struct itimerspec its = {
                .it_value = {.tv_sec = (time_t)(qc->fine_want / 1000000000u),
                             .tv_nsec = (long)(qc->fine_want % 1000000000u)}
            };
            if (timerfd_settime(qc->tfd, TFD_TIMER_ABSTIME, &its, NULL) == 0)
                qc->fine_at = qc->fine_want;
            else
                qc->fine_at = 0;
        }
        if (qc->fine_at) {
            ev_io_start(loop, &qc->tio);
            return;
        }
    }
    /* Due now, or no timerfd (out of descriptors): libev's timer, late by up to a millisecond
     * in the second case. */
    ev_prepare_stop(loop, w);
    ev_timer_set(&qc->timer, qc->fine_want > now ? (double)(qc->fine_want - now) / 1e9 : 0., 0.);
    ev_timer_start(loop, &qc->timer);
}

static void fprep_cb(struct ev_loop *loop, ev_prepare *w, int revents) {
    (void)revents;
    syn_qconn *qc = w->data;
    if (!qc->fine_want) {
        ev_prepare_stop(loop, w);
        return;
    }
    fine_commit(qc);
}

/* Sends queued datagrams; returns 0 when the batch is empty, 1 when blocked, -1 after an error. */
static int tx_flush(syn_qconn *qc) {
    if (!qc->tx.n)
        return 0;
    if (qc->fd < 0) { /* over a link only: no UDP socket (yet) */
        syn_udp_tx_clear(&qc->tx);
        return 0;
    }
    int r = syn_udp_flush(qc->fd, &qc->tx, qc->server ? &qc->tx_dest : NULL);
    if (r == 1) {
        ev_io_start(qc->loop, &qc->wio);
        return 1;
    }
    if (r < 0) {
        /* The client's connected socket reports ICMP errors here: the path is gone. */
        if (!qc->server) {
            if (qc->ops->send_error)
                qc->ops->send_error(qc, -r);
            else
                qc_end(qc, qc->hs_done ? SYNESIS_ERR_CONNECTION_LOST : SYNESIS_ERR_SOCKET,
                       "send: %s", strerror(-r));
            return -1;
        }
        qc_log(qc, SYNESIS_LOG_DEBUG, "send: %s", strerror(-r));
    }
    return 0;
}

/*
 * Path MTU black-hole detection (RFC 8899 4.3), which ngtcp2's path MTU discovery lacks: once
 * discovery has raised the datagram size, a path whose MTU falls below it (a VPN or tunnel set up
 * mid-connection, a route change) drops every full-size datagram, retransmissions and probes
 * included, while small ones pass. The connection then hears next to nothing it can use, and it
 * idled out (docs/reliability.md, the fault table's MTU drop). Here: after a datagram above QUIC's
 * minimum (1200 bytes) has gone out, when data has been in flight for max(1 s, 4 PTO) (at most a
 * third of the idle timeout, if that is longer than a second) and the peer has acknowledged less
 * than SYN_QCONN_BH_PROGRESS bytes of stream data meanwhile, every later datagram of this
 * connection is capped at 1200 bytes (the base size every QUIC path carries), so that
 * retransmissions and probes get through. A few small packets (a heartbeat, the end of a response)
 * may still pass and be acknowledged through a black hole: that is why the measure is an amount,
 * four full datagrams, and not any acknowledgement at all. The cap stays for the connection (a new
 * one discovers the path MTU again); if the silence was an outage instead, it costs a sixth of each
 * datagram's payload.
 */
#define SYN_QCONN_BH_PROGRESS (4 * 1452u)

static void blackhole_check(syn_qconn *qc, uint64_t now) {
    if (qc->tx_cap || !qc->sent_big || !qc->hs_done)
        return;
    ngtcp2_conn_info ci;
    ngtcp2_conn_get_conn_info(qc->conn, &ci);
    if (ci.bytes_in_flight == 0) {
        qc->bh_since_ns = qc->bh_deadline_ns = 0;
        return;
    }
    if (!qc->bh_since_ns || qc->bh_since_ns > now ||
        qc->acked_total - qc->bh_acked_since >= SYN_QCONN_BH_PROGRESS) {
        qc->bh_since_ns = now; /* data in flight from now, or progress: a new window */
        qc->bh_acked_since = qc->acked_total;
    }
    uint64_t var = 4 * ci.rttvar > NGTCP2_MILLISECONDS ? 4 * ci.rttvar : NGTCP2_MILLISECONDS;
    uint64_t pto = ci.smoothed_rtt + var + NGTCP2_DEFAULT_MAX_ACK_DELAY;
    uint64_t limit = 4 * pto > NGTCP2_SECONDS ? 4 * pto : NGTCP2_SECONDS;
    if (qc->idle_ns && limit > qc->idle_ns / 3) /* well before the idle timeout ends it */
        limit = qc->idle_ns / 3 > NGTCP2_SECONDS ? qc->idle_ns / 3 : NGTCP2_SECONDS;
    /* arm_timer wakes us then, even if nothing else does (retransmission timers back off). */
    qc->bh_deadline_ns = qc->bh_since_ns + limit;
    if (now < qc->bh_deadline_ns)
        return;
    qc->tx_cap = NGTCP2_MAX_UDP_PAYLOAD_SIZE;
    qc->bh_deadline_ns = 0;
    qc_log(qc, SYNESIS_LOG_INFO,
           "%llu bytes acknowledged in %.1f s with %llu bytes in flight: path MTU black hole "
           "suspected, datagrams capped at %u bytes",
           (unsigned long long)(qc->acked_total - qc->bh_acked_since),
           (double)(now - qc->bh_since_ns) / 1e9, (unsigned long long)ci.bytes_in_flight,
           (unsigned)NGTCP2_MAX_UDP_PAYLOAD_SIZE);
}

static void do_write(syn_qconn *qc) {
    qc->need_flush = 0;
    if (qc->ended || qc->end_pending || !qc->conn)
        return;
    if (ngtcp2_conn_in_closing_period(qc->conn) || ngtcp2_conn_in_draining_period(qc->conn))
        return;
    if (qc->link_blocked || tx_flush(qc) != 0)
        return;
    ngtcp2_path_storage ps;
    ngtcp2_path_storage_zero(&ps);
    ngtcp2_pkt_info pi;
    uint64_t ts = syn_now_ns();
    blackhole_check(qc, ts);
    size_t pmax = tx_size(qc);
    size_t quantum = ngtcp2_conn_get_send_quantum(qc->conn) / pmax;
    size_t max_pkts = quantum < 1                        ? 1
                      : quantum > SYN_MAX_PKTS_PER_WRITE ? SYN_MAX_PKTS_PER_WRITE
                                                         : quantum;
    size_t npkts = 0;
    int drained = 0;
    for (;;) {
        syn_qstream *s = SYN_LIST_FIRST(&qc->pending, syn_qstream, pend_link);
        ngtcp2_vec vec[SYN_STREAM_VEC];
        size_t nvec = 0;
        int64_t sid = -1;
        uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_MORE;
        if (s) {
            int all = 0;
            sid = s->id;
            nvec = stream_vec(s, vec, SYN_STREAM_VEC, &all);
            if (s->fin_queued && all)
                flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
        }
        ngtcp2_ssize ndatalen = -1;
        uint8_t *buf = syn_udp_tx_next(&qc->tx);
        ngtcp2_ssize nw = ngtcp2_conn_writev_stream(qc->conn, &ps.path, &pi, buf, pmax, &ndatalen,
                                                    flags, sid, vec, nvec, ts);
        if (nw < 0) {
            if (nw == NGTCP2_ERR_WRITE_MORE) {
                stream_advance(qc, s, ndatalen, flags);
                continue;
            }
            if (s && nw == NGTCP2_ERR_STREAM_DATA_BLOCKED) {
                s->blocked = 1;
                pend_remove(qc, s);
                continue;
            }
            if (s && (nw == NGTCP2_ERR_STREAM_SHUT_WR || nw == NGTCP2_ERR_STREAM_NOT_FOUND)) {
                pend_remove(qc, s);
                continue;
            }
            local_error(qc, (int)nw, "write");
            return;
        }
        if (s)
            stream_advance(qc, s, ndatalen, flags);
        if (nw == 0) {
            drained = 1;
            break;
        }
        if (s && ndatalen > 0)
            pend_rotate(qc, s);
        if (path_is_link(qc, &ps.path)) {
            /* QUIC over TCP: one frame per packet, no batching, GSO or pacing concerns. */
            npkts++;
            qc->wakes.packets++;
            if (link_send(qc, buf, (size_t)nw) != 0)
                break;
            if (npkts >= max_pkts)
                break;
            continue;
        }
        if (qc->server) {
            /* A batch goes to one destination: a packet for another path starts a new batch. */
            syn_sockaddr dest;
            path_dest(qc, &ps.path, &dest);
            if (qc->tx.n && !same_sockaddr(&dest, &qc->tx_dest)) {
                uint8_t pkt[SYN_UDP_MAX_PAYLOAD];
                memcpy(pkt, buf, (size_t)nw);
                if (tx_flush(qc) != 0)
                    break; /* socket full: this packet is lost, and QUIC recovers it */
                memcpy(syn_udp_tx_next(&qc->tx), pkt, (size_t)nw);
            }
            qc->tx_dest = dest;
        }
        /* Packets lie back to back in one buffer: runs of equal size leave as one GSO send. */
        syn_udp_tx_push(&qc->tx, (size_t)nw, pi.ecn);
        if ((size_t)nw > NGTCP2_MAX_UDP_PAYLOAD_SIZE)
            qc->sent_big = 1;
        npkts++;
        qc->wakes.packets++;
        if (!syn_udp_tx_room(&qc->tx, pmax) && tx_flush(qc) != 0)
            break;
        if (npkts >= max_pkts)
            break;
    }
    if (!qc->end_pending)
        (void)tx_flush(qc);
    /* The pacing deadline this pass's packets set matters only if something is left to send.
     * When ngtcp2 had nothing more (or congestion control holds it back, and an ACK or the loss
     * timer wakes us), waking at that deadline would find nothing to do: after a lone PING or ACK
     * that was a timerfd wake-up tens of microseconds later, one for every packet of an idle
     * connection. The expiry taken before the update keeps every other deadline, and a pacing
     * deadline still pending from an earlier pass (a pass it blocked ends here with nothing
     * written, and arms for it). */
    ngtcp2_tstamp expiry = drained ? ngtcp2_conn_get_expiry(qc->conn) : 0;
    ngtcp2_conn_update_pkt_tx_time(qc->conn, ts);
    arm_timer(qc, drained ? expiry : ngtcp2_conn_get_expiry(qc->conn));
}

/* ---- graceful close ---- */

static void enter(syn_qconn *qc);
static int leave(syn_qconn *qc);

/* Lingering: once everything we sent is acknowledged and nothing is left to send, wait for the
 * ACK delay (so the ACK of what we received goes out), then close. Runs when the driver unwinds. */
static void linger_check(syn_qconn *qc) {
    if (!qc->lingering || qc->close_req || qc->ended || qc->end_pending ||
        syn_hold_dying(&qc->hold) || !qc->conn)
        return;
    ngtcp2_conn_info ci;
    ngtcp2_conn_get_conn_info(qc->conn, &ci);
    int quiet = ci.bytes_in_flight == 0 && syn_list_empty(&qc->pending);
    syn_qstream *s;
    SYN_LIST_FOREACH(s, &qc->streams, syn_qstream, link) {
        if (!s->closed && stream_has_work(s)) {
            quiet = 0;
            break;
        }
    }
    if (!quiet) {
        if (qc->linger_ack_wait) {
            qc->linger_ack_wait = 0;
            ev_timer_stop(qc->loop, &qc->linger_ack);
        }
        return;
    }
    if (qc->linger_ack_wait)
        return;
    /* ngtcp2's ACK delay: min(max_ack_delay, max(srtt / 8, 1 ns)); ours is the default 25 ms. */
    uint64_t delay = ci.smoothed_rtt / 8;
    if (delay < 1)
        delay = 1;
    if (delay > NGTCP2_DEFAULT_MAX_ACK_DELAY)
        delay = NGTCP2_DEFAULT_MAX_ACK_DELAY;
    qc->linger_ack_wait = 1;
    ev_timer_set(&qc->linger_ack, (double)delay / 1e9, 0.);
    ev_timer_start(qc->loop, &qc->linger_ack);
}

/* The ACK delay has passed with everything acknowledged: one write pass, then the close. */
static void linger_ack_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    syn_qconn *qc = w->data;
    qc->linger_ack_wait = 0;
    enter(qc);
    do_write(qc);
    if (!qc->close_req && !qc->end_pending && !qc->ended)
        qc->close_req = 1;
    leave(qc);
}

/* The linger's bound: close now, whatever is still unacknowledged. */
static void linger_deadline_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    syn_qconn *qc = w->data;
    enter(qc);
    if (!qc->close_req && !qc->end_pending && !qc->ended) {
        qc_log(qc, SYNESIS_LOG_DEBUG, "close linger bound reached: closing");
        qc->close_req = 1;
    }
    leave(qc);
}

/* ---- the unwinding point: deferred work runs when the driver is no longer on the stack ---- */

static void enter(syn_qconn *qc) { syn_hold_enter(&qc->hold); }

static int leave_ex(syn_qconn *qc, int no_write);
static int leave(syn_qconn *qc) { return leave_ex(qc, 0); }

/* Returns 1 if qc was freed. With no_write, a write pass asked for meanwhile stays pending: a
 * received datagram's owner flushes once after its whole batch (syn_qconn_recv), so that ACKs and
 * window updates of a burst leave together instead of a write pass per datagram. */
static int leave_ex(syn_qconn *qc, int no_write) {
    if (!syn_hold_leave(&qc->hold))
        return 0;
    for (;;) {
        if (syn_hold_dying(&qc->hold)) {
            /* A close requested before the free still sends its CONNECTION_CLOSE. */
            if (qc->close_req && !qc->ended && !qc->end_pending)
                send_app_close(qc);
            really_free(qc);
            return 1;
        }
        syn_hold_enter(&qc->hold);
        if (!qc->ended && !qc->end_pending && qc->close_req) {
            send_app_close(qc);
            qc_end(qc, 0, "closed locally: %s", qc->close_reason);
        }
        if (qc->early_reopen && !qc->end_pending && !qc->ended) {
            early_reopen(qc);
        } else if (qc->hs_notify && !qc->end_pending && !qc->ended) {
            qc->hs_notify = 0;
            if (qc->ops->handshake_done)
                qc->ops->handshake_done(qc);
        } else if (qc->avail_notify && !qc->end_pending && !qc->ended) {
            qc->avail_notify = 0;
            if (qc->ops->streams_available)
                qc->ops->streams_available(qc);
        } else if (qc->end_pending && !qc->ended) {
            qc->ended = 1;
            qc->end_pending = 0;
            timer_stop(qc);
            fine_close(qc);
            ev_io_stop(qc->loop, &qc->wio);
            ev_prepare_stop(qc->loop, &qc->prep);
            ev_timer_stop(qc->loop, &qc->linger_ack);
            ev_timer_stop(qc->loop, &qc->linger_deadline);
            if (qc->ops->closed)
                qc->ops->closed(qc, qc->err, qc->detail);
        } else if (qc->need_flush && !qc->ended && !no_write) {
            if (qc->ops->before_write)
                qc->ops->before_write(qc);
            if (!syn_hold_dying(&qc->hold))
                do_write(qc);
        } else {
            (void)syn_hold_leave(&qc->hold);
            break;
        }
        (void)syn_hold_leave(&qc->hold);
    }
    if (syn_hold_dying(&qc->hold)) {
        really_free(qc);
        return 1;
    }
    linger_check(qc);
    return 0;
}

void syn_qconn_recv(syn_qconn *qc, const syn_sockaddr *local, const syn_sockaddr *remote,
                    uint8_t ecn, const uint8_t *data, size_t len) {
    if (qc->ended || qc->end_pending || syn_hold_dying(&qc->hold))
        return;
    enter(qc);
    ngtcp2_path path = {
        .local = {.addr = (ngtcp2_sockaddr *)&local->ss,  .addrlen = local->len },
        .remote = {.addr = (ngtcp2_sockaddr *)&remote->ss, .addrlen = remote->len},
        .user_data = NULL,
    };
    ngtcp2_pkt_info pi = {.ecn = ecn};
    int rv = ngtcp2_conn_read_pkt(qc->conn, &path, &pi, data, len, syn_now_ns());
    if (rv != 0) {
        if (rv == NGTCP2_ERR_DISCARD_PKT)
            qc_log(qc, SYNESIS_LOG_DEBUG, "packet discarded");
        else
            local_error(qc, rv, "read");
    }
    if (qc->alpn_missing && !qc->end_pending && !qc->ended) {
        qc->alpn_missing = 0;
        ngtcp2_ccerr_set_tls_alert(&qc->ccerr, SSL_AD_NO_APPLICATION_PROTOCOL, NULL, 0);
        send_close(qc);
        qc_end(qc, SYNESIS_ERR_ALPN,
               "the edge selected no application protocol (QUIC requires ALPN): closed with TLS "
               "alert no application protocol (120)");
    }
    /* No write pass here: the owner calls syn_qconn_flush() once after a batch of datagrams,
     * so ACKs and responses of a whole batch leave together. */
    leave_ex(qc, 1);
}

void syn_qconn_flush(syn_qconn *qc) {
    if (syn_hold_busy(&qc->hold)) {
        qc->need_flush = 1;
        return;
    }
    enter(qc);
    qc->need_flush = 1;
    leave(qc);
}

void syn_qconn_schedule(syn_qconn *qc) {
    if (qc->ended || syn_hold_dying(&qc->hold))
        return;
    if (syn_hold_busy(&qc->hold)) {
        qc->need_flush = 1;
        return;
    }
    if (!ev_is_active(&qc->prep))
        ev_prepare_start(qc->loop, &qc->prep);
}

void syn_qconn_close(syn_qconn *qc, uint64_t app_code, const char *reason) {
    if (qc->ended || qc->close_req || qc->end_pending)
        return;
    qc->close_req = 1;
    qc->close_code = app_code_checked(qc, app_code);
    syn_copy_str(qc->close_reason, sizeof(qc->close_reason), reason ? reason : "");
    enter(qc);
    leave(qc);
}

void syn_qconn_close_graceful(syn_qconn *qc, uint64_t app_code, const char *reason,
                              double max_linger) {
    if (qc->ended || qc->close_req || qc->end_pending || qc->lingering)
        return;
    if (!(max_linger > 0) || !qc->hs_done || syn_hold_dying(&qc->hold)) {
        syn_qconn_close(qc, app_code, reason);
        return;
    }
    qc->lingering = 1;
    qc->close_code = app_code_checked(qc, app_code);
    syn_copy_str(qc->close_reason, sizeof(qc->close_reason), reason ? reason : "");
    ev_timer_set(&qc->linger_deadline, max_linger, 0.);
    ev_timer_start(qc->loop, &qc->linger_deadline);
    enter(qc);
    qc->need_flush = 1; /* a write pass (and the linger check) as soon as the driver unwinds */
    leave(qc);
}

void syn_qconn_set_owner(syn_qconn *qc, const syn_qconn_ops *ops, void *owner) {
    qc->ops = ops;
    qc->owner = owner;
}

void syn_qconn_abort(syn_qconn *qc, int err, const char *detail) {
    if (qc->ended || qc->close_req || qc->end_pending)
        return;
    qc_end(qc, err, "%s", detail ? detail : "");
    enter(qc);
    leave(qc);
}

static void expire(syn_qconn *qc) {
    qc->fine_want = 0;
    qc->wakes.expiry++;
    uint64_t pkts = qc->wakes.packets;
    ngtcp2_conn_info before;
    ngtcp2_conn_get_conn_info(qc->conn, &before);
    enter(qc);
    int rv = ngtcp2_conn_handle_expiry(qc->conn, syn_now_ns());
    if (rv != 0)
        local_error(qc, rv, "timer");
    else
        qc->need_flush = 1;
    if (leave(qc))
        return;
    if (qc->wakes.packets == pkts) {
        qc->wakes.expiry_idle++;
    } else {
        /* Only ack-eliciting packets count in flight (loss declared by this expiry aside). */
        ngtcp2_conn_info after;
        ngtcp2_conn_get_conn_info(qc->conn, &after);
        if (after.bytes_in_flight > before.bytes_in_flight)
            qc->wakes.expiry_send++;
        else
            qc->wakes.expiry_ack++;
    }
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    expire(w->data);
}

static void tio_cb(struct ev_loop *loop, ev_io *w, int revents) {
    (void)loop;
    (void)revents;
    syn_qconn *qc = w->data;
    uint64_t n;
    if (read(qc->tfd, &n, sizeof(n)) != (ssize_t)sizeof(n))
        return; /* not expired: set again since */
    qc->fine_at = 0;
    if (!qc->fine_want || syn_now_ns() < qc->fine_want) {
        qc->wakes.fine_stale++;
        return; /* an older deadline fired: fprep_cb sets the timerfd for the current one */
    }
    expire(qc);
}

static void wio_cb(struct ev_loop *loop, ev_io *w, int revents) {
    (void)revents;
    syn_qconn *qc = w->data;
    ev_io_stop(loop, w);
    enter(qc);
    qc->need_flush = 1;
    leave(qc);
}

static void prep_cb(struct ev_loop *loop, ev_prepare *w, int revents) {
    (void)revents;
    syn_qconn *qc = w->data;
    ev_prepare_stop(loop, w);
    enter(qc);
    qc->need_flush = 1;
    qc->in_prep = 1;
    if (!leave(qc))
        qc->in_prep = 0;
}

/* ---- accessors ---- */

void *syn_qconn_owner(const syn_qconn *qc) { return qc->owner; }
void syn_qconn_take_fd(syn_qconn *qc) { qc->owns_fd = 1; }
SSL *syn_qconn_ssl(const syn_qconn *qc) { return qc->ssl; }
int syn_qconn_handshake_completed(const syn_qconn *qc) { return qc->hs_done; }
int syn_qconn_resumed(const syn_qconn *qc) {
    return qc->ssl && qc->tls_completed_ns && SSL_session_reused(qc->ssl) == 1;
}
int syn_qconn_offered_session(const syn_qconn *qc) { return qc->offered_session; }

int syn_qconn_submit_new_token(syn_qconn *qc, const uint8_t *token, size_t len) {
    if (!qc->server || !qc->conn || qc->ended || qc->end_pending)
        return SYNESIS_ERR_INVALID_STATE;
    int rv = ngtcp2_conn_submit_new_token(qc->conn, token, len);
    if (rv != 0)
        return rv == NGTCP2_ERR_NOMEM ? SYNESIS_ERR_NOMEM : SYNESIS_ERR_QUIC;
    syn_qconn_schedule(qc);
    return 0;
}

uint64_t syn_qconn_tls_completed_ns(const syn_qconn *qc) { return qc->tls_completed_ns; }
const syn_sockaddr *syn_qconn_remote(const syn_qconn *qc) { return &qc->remote; }
void syn_qconn_set_remote(syn_qconn *qc, const syn_sockaddr *remote) { qc->remote = *remote; }

uint64_t syn_qconn_peer_max_streams_uni(const syn_qconn *qc) {
    const ngtcp2_transport_params *p = ngtcp2_conn_get_remote_transport_params(qc->conn);
    return p ? p->initial_max_streams_uni : 0;
}

int syn_qconn_migrate(syn_qconn *qc, int fd, const syn_sockaddr *local) {
    if (qc->server || qc->ended || qc->end_pending || qc->close_req || !qc->hs_done)
        return SYNESIS_ERR_INVALID_STATE;
    syn_sockaddr old_local = qc->local;
    qc->local = *local;
    ngtcp2_path path = qc_path(qc);
    int rv = ngtcp2_conn_initiate_immediate_migration(qc->conn, &path, syn_now_ns());
    if (rv != 0) {
        qc->local = old_local;
        return rv == NGTCP2_ERR_CONN_ID_BLOCKED ? SYNESIS_ERR_WOULD_BLOCK
               : rv == NGTCP2_ERR_INVALID_STATE ? SYNESIS_ERR_INVALID_STATE
                                                : SYNESIS_ERR_QUIC;
    }
    /* The batch queued for the old socket (if blocked) goes out on the new one. */
    int active = ev_is_active(&qc->wio);
    ev_io_stop(qc->loop, &qc->wio);
    ev_io_set(&qc->wio, fd, EV_WRITE);
    if (active)
        ev_io_start(qc->loop, &qc->wio);
    qc->fd = fd;
    syn_udp_tx_set_socket(&qc->tx, fd); /* GSO is judged per socket */
    syn_qconn_schedule(qc);
    return 0;
}

void syn_qconn_set_link(syn_qconn *qc, syn_tcplink *l) {
    qc->link = l;
    qc->link_blocked = 0;
    if (l && !qc->ended && !syn_hold_dying(&qc->hold))
        syn_qconn_schedule(qc);
}

syn_tcplink *syn_qconn_link(const syn_qconn *qc) { return qc->link; }

void syn_qconn_drop_fd(syn_qconn *qc) {
    ev_io_stop(qc->loop, &qc->wio);
    qc->fd = -1;
    syn_udp_tx_clear(&qc->tx);
}

void syn_qconn_link_writable(syn_qconn *qc) {
    if (!qc->link_blocked)
        return;
    qc->link_blocked = 0;
    syn_qconn_flush(qc);
}

void syn_qconn_link_counters(const syn_qconn *qc, uint64_t *pkts, uint64_t *bytes) {
    *pkts = qc->link_pkts_sent;
    *bytes = qc->link_bytes_sent;
}

int syn_qconn_probe_path(syn_qconn *qc, int fd, const syn_sockaddr *local,
                         const syn_sockaddr *remote) {
    if (qc->server || qc->ended || qc->end_pending || qc->close_req || !qc->hs_done)
        return SYNESIS_ERR_INVALID_STATE;
    ngtcp2_path path = {
        .local = {.addr = (ngtcp2_sockaddr *)&local->ss,  .addrlen = local->len },
        .remote = {.addr = (ngtcp2_sockaddr *)&remote->ss, .addrlen = remote->len},
        .user_data = NULL,
    };
    int rv = ngtcp2_conn_initiate_migration(qc->conn, &path, syn_now_ns());
    if (rv != 0)
        return rv == NGTCP2_ERR_CONN_ID_BLOCKED ? SYNESIS_ERR_WOULD_BLOCK
               : rv == NGTCP2_ERR_INVALID_STATE ? SYNESIS_ERR_INVALID_STATE
                                                : SYNESIS_ERR_QUIC;
    int active = ev_is_active(&qc->wio);
    ev_io_stop(qc->loop, &qc->wio);
    ev_io_set(&qc->wio, fd, EV_WRITE);
    if (active)
        ev_io_start(qc->loop, &qc->wio);
    qc->fd = fd;
    syn_udp_tx_set_socket(&qc->tx, fd);
    if (qc->tx.family == 0)
        qc->tx.family = local->ss.ss_family;
    syn_qconn_schedule(qc);
    return 0;
}

void syn_qconn_server_send_from(syn_qconn *qc, int fd) {
    int active = ev_is_active(&qc->wio);
    ev_io_stop(qc->loop, &qc->wio);
    ev_io_set(&qc->wio, fd, EV_WRITE);
    if (active)
        ev_io_start(qc->loop, &qc->wio);
    qc->fd = fd;
    qc->owns_fd = 1;
    syn_udp_tx_set_socket(&qc->tx, fd);
    syn_qconn_schedule(qc);
}

void syn_qconn_get_wakes(const syn_qconn *qc, syn_qconn_wakes *out) { *out = qc->wakes; }

uint64_t syn_qconn_keep_alive_ns(const syn_qconn *qc) { return qc->keep_alive_ns; }

void syn_qconn_set_keep_alive(syn_qconn *qc, uint64_t ns) {
    qc->keep_alive_ns = ns;
    if (!qc->conn)
        return;
    ngtcp2_conn_set_keep_alive_timeout(qc->conn, ns);
    syn_qconn_schedule(qc);
}

uint32_t syn_qconn_srtt_ms(const syn_qconn *qc) {
    ngtcp2_conn_info ci;
    ngtcp2_conn_get_conn_info(qc->conn, &ci);
    return (uint32_t)(ci.smoothed_rtt / NGTCP2_MILLISECONDS);
}

const uint8_t *syn_qconn_close_packet(const syn_qconn *qc, size_t *len) {
    *len = qc->close_len;
    return qc->close_pkt;
}

int syn_qconn_draining(const syn_qconn *qc) {
    return qc->conn && ngtcp2_conn_in_draining_period(qc->conn);
}

uint64_t syn_qconn_pto_ns(const syn_qconn *qc) {
    return qc->conn ? ngtcp2_conn_get_pto(qc->conn) : 0;
}

size_t syn_qconn_path_max_udp_payload(const syn_qconn *qc) {
    return qc->conn ? ngtcp2_conn_get_path_max_tx_udp_payload_size2(qc->conn)
                    : NGTCP2_MAX_UDP_PAYLOAD_SIZE;
}

void syn_qconn_info(const syn_qconn *qc, ngtcp2_conn_info *out) {
    ngtcp2_conn_get_conn_info(qc->conn, out);
}

void syn_qconn_get_stats(const syn_qconn *qc, syn_qconn_stats *out) {
    ngtcp2_conn_info ci;
    ngtcp2_conn_get_conn_info(qc->conn, &ci);
    *out = (syn_qconn_stats){
        .latest_rtt = ci.latest_rtt,
        .min_rtt = ci.min_rtt,
        .smoothed_rtt = ci.smoothed_rtt,
        .cwnd = ci.cwnd,
        .bytes_in_flight = ci.bytes_in_flight,
        .pkt_sent = ci.pkt_sent,
        .pkt_lost = ci.pkt_lost,
        .ping_recv = ci.ping_recv,
    };
}

int syn_qconn_trim(syn_qconn *qc) {
    if (syn_hold_busy(&qc->hold))
        return 0; /* the write loop may be using the buffer */
    return syn_udp_tx_trim(&qc->tx);
}

ngtcp2_conn *syn_qconn_ngtcp2(const syn_qconn *qc) { return qc->conn; }

/* ---- tests and fuzzing (qconn_test.h): the send batch, stream walking, and the stream
 * callbacks as ngtcp2 would call them ---- */

const syn_udp_tx *syn_qconn_tx(const syn_qconn *qc) { return &qc->tx; }

int syn_qconn_bidi_in_use(const syn_qconn *qc) {
    const syn_qstream *s;
    SYN_LIST_FOREACH(s, &qc->streams, syn_qstream, link) {
        if (syn_qstream_bidi(s) && s->user)
            return 1;
    }
    return 0;
}

syn_qstream *syn_qconn_streams(const syn_qconn *qc) {
    return SYN_LIST_FIRST(&qc->streams, syn_qstream, link);
}

syn_qstream *syn_qstream_next(const syn_qstream *s) { return SYN_LIST_NEXT(s, syn_qstream, link); }

uint64_t syn_qstream_sent(const syn_qstream *s) { return s->sent; }

int syn_qconn_test_peer_stream(syn_qconn *qc, int64_t id, syn_qstream **out) {
    *out = NULL;
    if (!qc->conn || qc->ended || qc->end_pending || syn_hold_dying(&qc->hold))
        return 0;
    syn_link *first = qc->streams.first;
    enter(qc);
    (void)stream_open_cb(qc->conn, id, qc);
    if (qc->streams.first != first) /* stream_new links the new stream first */
        *out = SYN_LIST_FIRST(&qc->streams, syn_qstream, link);
    return leave_ex(qc, 1);
}

int syn_qconn_test_stream_data(syn_qstream *s, const uint8_t *data, size_t len, int fin) {
    syn_qconn *qc = s->qc;
    enter(qc);
    (void)recv_stream_data_cb(qc->conn, fin ? NGTCP2_STREAM_DATA_FLAG_FIN : 0, s->id, 0, data, len,
                              qc, s);
    return leave_ex(qc, 1);
}

int syn_qconn_test_stream_reset(syn_qstream *s, uint64_t app_code, int stop) {
    syn_qconn *qc = s->qc;
    enter(qc);
    if (!stop)
        (void)stream_reset_cb(qc->conn, s->id, 0, app_code, qc, s);
#ifdef NGTCP2_CALLBACKS_V3
    else
        (void)recv_stop_sending_cb(qc->conn, s->id, app_code, qc, s);
#endif
    return leave_ex(qc, 1);
}

int syn_qconn_test_stream_acked(syn_qstream *s, uint64_t offset, uint64_t len) {
    syn_qconn *qc = s->qc;
    enter(qc);
    (void)acked_cb(qc->conn, s->id, offset, len, qc, s);
    return leave_ex(qc, 1);
}

int syn_qconn_test_stream_close(syn_qstream *s, uint64_t app_code, int reset) {
    syn_qconn *qc = s->qc;
    enter(qc);
    if (qc->conn && ngtcp2_conn_set_stream_user_data(qc->conn, s->id, NULL) == 0)
        (void)ngtcp2_conn_shutdown_stream(qc->conn, 0, s->id, app_code_checked(qc, app_code));
    (void)stream_close_cb(qc->conn, reset ? NGTCP2_STREAM_CLOSE_FLAG_APP_ERROR_CODE_SET : 0, s->id,
                          app_code, qc, s);
    return leave_ex(qc, 1);
}

int syn_qconn_peer_app_close(const syn_qconn *qc, uint64_t *code) {
    if (!qc->peer_app_close)
        return 0;
    *code = qc->peer_app_code;
    return 1;
}

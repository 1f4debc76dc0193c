/* The reference edge server. */
#include "edge.h"
#include "edge_test.h"

#include "cidmap.h"
#include "protocol.h"
#include "qconn.h"
#include "tcplink.h"
#include "tls.h"
#include "udp.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <openssl/rand.h>
#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct edge_conn edge_conn;
typedef struct edge_stream edge_stream;

/* A report frame waiting for a unidirectional stream towards the device. */
typedef struct edge_report {
    struct edge_report *next;
    size_t len;
    uint8_t frame[];
} edge_report;

/* How a bidirectional stream is being answered. */
enum { REQ_UNDECIDED, REQ_ECHO, REQ_COMMAND, REQ_SLEEP, REQ_HANDLER, REQ_DONE };

/* Longest command line (without its LF). */
#define CMD_LINE_MAX 64
/* Longest SLEEP, in milliseconds. */
#define SLEEP_MAX_MS 600000

struct edge_stream {
    edge_conn *c;
    syn_qstream *qs;
    syn_link link; /* on c->streams */
    int uni;
    /* Heartbeat frame (unidirectional). */
    uint8_t hdr[SYN_FRAME_HEADER];
    size_t hdr_len;
    uint32_t need;
    int bad;
    /* Request (bidirectional); also the heartbeat body. */
    int mode;
    uint8_t *buf;
    size_t len, cap;
    size_t total;
    uint64_t held;      /* bytes of this stream counted in c->held: buffer + unacked response */
    uint64_t conn_owed; /* received bytes whose connection-level credit is not returned yet */
    uint64_t credited;  /* echo: response bytes acknowledged and credited back */
    uint64_t src_left, src_pos;
    uint64_t sleep_ms;
    ev_timer sleep;
    int refused; /* a request reset with SYN_APP_RETRY by a draining edge: never started */
};

typedef struct device_entry {
    char id[128];
    syn_edge_device info;
} device_entry;

typedef struct edge_link edge_link;

struct edge_conn {
    syn_edge *e;
    syn_qconn *qc;
    edge_link *el; /* the TCP link its packets for the link's path go to (NULL: UDP only) */
    char device_id[128];
    char remote[64];
    syn_link link;    /* on e->conns, or on e->closing in its closing period */
    syn_list streams; /* edge_stream, newest first */
    /* Fed a datagram in the current batch: on the edge's dirty list, flushed after the batch. */
    int dirty;
    edge_conn *dirty_next;
    /* Bytes this connection holds: buffered request bodies and heartbeats, and response bytes
     * queued and not yet acknowledged. Bounded by cfg.max_conn_buffer (docs/protocol.md). */
    uint64_t held;
    int src_stalled;                     /* a SRC stream waits for held to fall below the bound */
    edge_report *reports, *reports_tail; /* reports waiting for a stream */
    size_t nreports;                     /* how many (at most SYN_EDGE_MAX_QUEUED_REPORTS) */
    syn_cidmap_list cids;                /* this connection's IDs in the edge's table */
    int handshaking;                     /* counted in syn_edge.handshaking */
    const char *validated; /* how the address was validated before the handshake: "retry",
                              "new_token", or NULL (the handshake itself validates it) */
    /* The closing period: qc is gone, the IDs stay routed here until closing_timer fires, and a
     * datagram for them is answered with close_pkt (NULL when draining: the client closed). */
    int closing;
    uint8_t *close_pkt;
    size_t close_len;
    uint64_t close_rx; /* datagrams received while closing */
    ev_timer closing_timer;
    /* A misbehaving edge (cfg.misbehave): the CLOSE delay or FLOOD tick, streams to open towards
     * the device (OPEN_STREAMS), whether it moved (MIGRATE). hold: a FLOOD tick is flushing
     * (conn_destroy then leaves the memory to it: dying). */
    ev_timer mb_timer;
    unsigned mb_open;
    int mb_migrated;
    syn_hold hold;
    uint64_t mb_seq;
    /* Draining (syn_edge_drain): new requests are refused with SYN_APP_RETRY; once the last one
     * in flight has ended, CONNECTION_CLOSE with SYN_APP_MOVE. */
    int draining;
};

/* SRC responses are queued in chunks of SRC_CHUNK bytes of the pattern (offset % SRC_PERIOD). */
#define SRC_CHUNK (64 * 1024)
#define SRC_PERIOD 251

/* A TCP link (tcplink.h): its connection (the one its last frame was routed to), and the timer
 * that closes it while it carries none. */
struct edge_link {
    syn_edge *e;
    syn_tcplink *l;
    edge_conn *c;
    syn_link node; /* on e->links */
    int up;
    ev_timer idle;
};

struct syn_edge {
    struct ev_loop *loop;
    syn_edge_config cfg;
    char *str_listen, *str_alpn;
    SSL_CTX *ssl_ctx;
    syn_qconn_settings qset;
    syn_sockaddr listen_addr;
    syn_sockaddr local;
    syn_sockaddr mb_preferred; /* PREFERRED_ADDRESS: advertised, never served */
    int fd;
    ev_io rio;
    syn_udp_rx *rx;
    syn_list conns;   /* edge_conn, newest first */
    syn_list closing; /* edge_conn in their closing or draining period */
    /* Connections fed in the current receive batch (each once): the batch's write pass visits
     * these, not every connection (4,000 idle ones made a walk of the whole list per batch a
     * third of the edge's CPU). */
    edge_conn *dirty;
    syn_cidmap cids;
    size_t handshaking;       /* connections accepted, handshake not completed */
    uint8_t retry_secret[32]; /* keys the Retry tokens of this edge */
    syn_edge_stats stats;
    char last_device[128];
    char last_cert[65]; /* SHA-256 of the last verified device certificate, hex */
    char last_bad_frame[256];
    device_entry *devices;
    size_t ndevices, devices_cap;
    syn_edge_handler handler;
    void *handler_ud;
    uint8_t src_pattern[SRC_CHUNK + SRC_PERIOD]; /* SRC bytes: i % SRC_PERIOD */
    /* syn_edge_drain: the grace period's timer, and a zero timer that looks for the end of the
     * drain outside the QUIC callbacks (the done callback may stop the edge). */
    int draining, drain_refuse_new, drain_done;
    ev_timer drain_timer, drain_check;
    syn_edge_drained_fn drained_cb;
    void *drained_ud;
    /* QUIC over TCP: the listener, the links' TLS context, the links, and the link whose frame
     * is being handled (stateless answers go back on it). */
    int tcp_fd;
    ev_io tcp_io;
    syn_sockaddr tcp_local;
    SSL_CTX *tcp_ctx;
    syn_list links;
    size_t nlinks, nlinks_pending;
    edge_link *cur_link;
};

void syn_edge_config_init(syn_edge_config *cfg) {
    memset(cfg, 0, sizeof(*cfg));
    cfg->listen = "127.0.0.1:4433";
    cfg->alpn = SYN_ALPN_DEFAULT;
    cfg->idle_timeout = 60.0;
    cfg->handshake_timeout = 10.0;
    cfg->max_streams_bidi = 100;
    cfg->max_streams_uni = 100;
    cfg->max_request_size = 64u * 1024 * 1024;
    cfg->max_heartbeat_size = 64 * 1024;
    cfg->max_conn_buffer = 16u * 1024 * 1024;
    cfg->max_src_size = 16ull * 1024 * 1024 * 1024;
    cfg->retry_threshold = 64;
    cfg->socket_buffer = 4 * 1024 * 1024;
    cfg->misbehave_code = 0x1bad;
    cfg->misbehave_count = 4;
    cfg->ping_devices = 1;
    cfg->session_tickets = 1;
    cfg->ticket_lifetime = 7200;
    cfg->new_tokens = 1;
    cfg->new_token_lifetime = 3600;
    cfg->ticket_cache = 20480;
    cfg->tcp = 1;
    cfg->tcp_port = 0;
    cfg->max_tcp_links = 1024;
    cfg->max_tcp_handshakes = 64;
}

/* ---- JSON event log ---- */

static void edge_emit(syn_edge *e, cJSON *obj) {
    if (!e->cfg.log && !e->cfg.log_file) {
        cJSON_Delete(obj);
        return;
    }
    cJSON_AddNumberToObject(obj, "ts_ms", (double)syn_wall_ms());
    char *line = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    if (!line)
        return;
    if (e->cfg.log)
        e->cfg.log(e->cfg.log_user_data, line);
    if (e->cfg.log_file) {
        fprintf(e->cfg.log_file, "%s\n", line);
        fflush(e->cfg.log_file);
    }
    cJSON_free(line);
}

static cJSON *event(const char *name, const edge_conn *c) {
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "event", name);
    if (c) {
        cJSON_AddStringToObject(o, "remote", c->remote);
        if (c->device_id[0])
            cJSON_AddStringToObject(o, "device_id", c->device_id);
    }
    return o;
}

static void emit_simple(syn_edge *e, const char *name, const edge_conn *c, const char *key,
                        const char *value) {
    cJSON *o = event(name, c);
    if (!o)
        return;
    if (key)
        cJSON_AddStringToObject(o, key, value);
    edge_emit(e, o);
}

/* Datagrams of connection c came from a new address: the device migrated or a NAT rebound it.
 * ngtcp2 validates the new path (PATH_CHALLENGE; ec_path_validated logs the outcome) and answers
 * there meanwhile. */
static void path_changed(syn_edge *e, edge_conn *c, const syn_sockaddr *to) {
    char addr[64];
    syn_sockaddr_str((const struct sockaddr *)&to->ss, addr, sizeof(addr));
    e->stats.path_changes++;
    cJSON *o = event("path_changed", c); /* "remote": the old address */
    if (o) {
        cJSON_AddStringToObject(o, "address", addr);
        edge_emit(e, o);
    }
    snprintf(c->remote, sizeof(c->remote), "%s", addr);
    syn_qconn_set_remote(c->qc, to);
}

/* ---- connection IDs (a keyed hash table: cidmap.h) ---- */

static void cid_add(syn_edge *e, const ngtcp2_cid *cid, edge_conn *c) {
    /* On failure the connection is still reachable by its other IDs; a duplicate (a random
     * collision) keeps routing to the connection that had it first. */
    (void)syn_cidmap_add(&e->cids, cid->data, cid->datalen, c, &c->cids);
}

static edge_conn *cid_find(syn_edge *e, const uint8_t *dcid, size_t len) {
    return syn_cidmap_find(&e->cids, dcid, len);
}

static void cid_remove(syn_edge *e, const ngtcp2_cid *cid, edge_conn *c) {
    if (syn_cidmap_find(&e->cids, cid->data, cid->datalen) == c)
        (void)syn_cidmap_remove(&e->cids, cid->data, cid->datalen);
}

static void cid_remove_conn(syn_edge *e, edge_conn *c) {
    syn_cidmap_remove_list(&e->cids, &c->cids);
}

static void handshaking_end(syn_edge *e, edge_conn *c) {
    if (c->handshaking) {
        c->handshaking = 0;
        e->handshaking--;
    }
}

/* ---- connections ---- */

static void link_bind(edge_link *el, edge_conn *c);
static void link_unbind(edge_conn *c);

static void es_free(edge_stream *es);

static void conn_free_reports(edge_conn *c);

/* Puts c on the edge's dirty list (once) for the write pass after the current batch. */
static void conn_mark_dirty(syn_edge *e, edge_conn *c) {
    if (c->dirty)
        return;
    c->dirty = 1;
    c->dirty_next = e->dirty;
    e->dirty = c;
}

/* Takes c off the dirty list (it is about to be freed or to lose its connection). */
static void conn_unmark_dirty(syn_edge *e, edge_conn *c) {
    if (!c->dirty)
        return;
    for (edge_conn **p = &e->dirty; *p; p = &(*p)->dirty_next) /* at most the batch's */
        if (*p == c) {
            *p = c->dirty_next;
            break;
        }
    c->dirty = 0;
    c->dirty_next = NULL;
}

static void conn_destroy(syn_edge *e, edge_conn *c) {
    /* A stream is freed once closed both ways, so a response stream still here with its FIN
     * queued has not had all of its data and FIN acknowledged. */
    edge_stream *es;
    SYN_LIST_FOREACH(es, &c->streams, edge_stream, link)
        if (!es->uni && es->qs && syn_qstream_fin_queued(es->qs))
            e->stats.responses_unacked++;
    while (!syn_list_empty(&c->streams))
        es_free(SYN_LIST_FIRST(&c->streams, edge_stream, link));
    conn_free_reports(c);
    cid_remove_conn(e, c);
    handshaking_end(e, c);
    conn_unmark_dirty(e, c);
    link_unbind(c);
    syn_list_remove(&e->conns, &c->link);
    ev_timer_stop(e->loop, &c->mb_timer);
    syn_qconn_free(c->qc);
    e->stats.active--;
    if (syn_hold_release(&c->hold)) /* else a FLOOD tick on the stack frees it */
        free(c);
}

static void closing_free(syn_edge *e, edge_conn *c) {
    ev_timer_stop(e->loop, &c->closing_timer);
    cid_remove_conn(e, c);
    syn_list_remove(&e->closing, &c->link);
    free(c->close_pkt);
    free(c);
    e->stats.closing--;
}

static void closing_timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    edge_conn *c = w->data;
    closing_free(c->e, c);
}

/*
 * Ends c's connection but keeps its IDs routed to it for the closing period (RFC 9000 10.2): three
 * PTOs, at least SYN_EDGE_CLOSING_MIN_MS. Everything else c held is released now. Returns 0, or -1
 * if the close could not be kept (out of memory): then c is destroyed as before.
 */
static int conn_enter_closing(syn_edge *e, edge_conn *c) {
    size_t len = 0;
    const uint8_t *pkt = syn_qconn_close_packet(c->qc, &len);
    int draining = syn_qconn_draining(c->qc);
    if ((!pkt && !draining) || e->fd < 0 || !c->cids.n)
        return -1;
    if (pkt) {
        c->close_pkt = malloc(len);
        if (!c->close_pkt)
            return -1;
        memcpy(c->close_pkt, pkt, len);
        c->close_len = len;
    }
    double period = 3.0 * (double)syn_qconn_pto_ns(c->qc) / 1e9;
    if (period < SYN_EDGE_CLOSING_MIN_MS / 1000.0)
        period = SYN_EDGE_CLOSING_MIN_MS / 1000.0;
    edge_stream *es;
    SYN_LIST_FOREACH(es, &c->streams, edge_stream, link)
        if (!es->uni && es->qs && syn_qstream_fin_queued(es->qs))
            e->stats.responses_unacked++;
    while (!syn_list_empty(&c->streams))
        es_free(SYN_LIST_FIRST(&c->streams, edge_stream, link));
    conn_free_reports(c);
    handshaking_end(e, c);
    link_unbind(c);
    syn_list_remove(&e->conns, &c->link);
    syn_qconn_free(c->qc); /* deferred by the driver while it is on the stack */
    c->qc = NULL;
    c->closing = 1;
    conn_unmark_dirty(e, c);              /* no write pass without a connection */
    ev_timer_stop(e->loop, &c->mb_timer); /* a misbehaving edge's CLOSE or FLOOD timer */
    syn_list_push_front(&e->closing, &c->link);
    ev_timer_init(&c->closing_timer, closing_timer_cb, period, 0.);
    c->closing_timer.data = c;
    ev_timer_start(e->loop, &c->closing_timer);
    e->stats.active--;
    e->stats.closing++;
    return 0;
}

/*
 * A datagram for a connection in its closing period: answered with the same CONNECTION_CLOSE on
 * the 1st, 2nd, 4th, 8th... datagram (rate-limited as RFC 9000 10.2.1 asks), and only if the answer
 * is at most three times the datagram (the anti-amplification bound of unvalidated paths), sent to
 * where the datagram came from (the client may have moved). Draining connections answer nothing.
 */
static void closing_datagram(syn_edge *e, edge_conn *c, const syn_udp_dgram *d) {
    uint64_t k = ++c->close_rx;
    if (!c->close_pkt || (k & (k - 1)) != 0 || c->close_len > 3 * d->len) {
        e->stats.closing_dropped++;
        return;
    }
    if (e->cur_link) {
        if (syn_tcplink_send(e->cur_link->l, c->close_pkt, c->close_len) >= 0)
            e->stats.close_repeats++;
        return;
    }
    ssize_t n = sendto(e->fd, c->close_pkt, c->close_len, MSG_DONTWAIT,
                       (const struct sockaddr *)&d->remote.ss, d->remote.len);
    if (n == (ssize_t)c->close_len)
        e->stats.close_repeats++;
}

static void mb_after_handshake(edge_conn *c);
static ngtcp2_tstamp token_clock(void);

/* A NEW_TOKEN token for the device's next connection: the Retry token's key and AEAD, type byte
 * NGTCP2_CRYPTO_TOKEN_MAGIC_REGULAR, bound to the address the handshake came from. */
static void send_new_token(syn_edge *e, edge_conn *c) {
    uint8_t token[NGTCP2_CRYPTO_MAX_REGULAR_TOKENLEN];
    const syn_sockaddr *to = syn_qconn_remote(c->qc);
    ngtcp2_ssize n = ngtcp2_crypto_generate_regular_token(
        token, e->retry_secret, sizeof(e->retry_secret), (const ngtcp2_sockaddr *)&to->ss,
        (ngtcp2_socklen)to->len, token_clock());
    if (n > 0 && syn_qconn_submit_new_token(c->qc, token, (size_t)n) == 0)
        e->stats.new_tokens_sent++;
}

static void ec_handshake_done(syn_qconn *qc) {
    edge_conn *c = syn_qconn_owner(qc);
    syn_edge *e = c->e;
    if (syn_tls_peer_device_id(syn_qconn_ssl(qc), c->device_id, sizeof(c->device_id)) != 0)
        snprintf(c->device_id, sizeof(c->device_id), "?");
    syn_copy_str(e->last_device, sizeof(e->last_device), c->device_id);
    e->stats.handshakes++;
    handshaking_end(e, c);
    int resumed = syn_qconn_resumed(qc);
    if (resumed)
        e->stats.resumed++;
    int early = e->cfg.early_data && syn_qconn_early_result(qc) == 1;
    if (early)
        e->stats.early_accepted++;
    /* The certificate the device presented (a full handshake; a resumed one carries the
     * session's): its fingerprint, so that an operator sees an identity rotation. */
    char fp[65] = "";
    SSL_SESSION *sess = SSL_get0_session(syn_qconn_ssl(qc));
    X509 *peer = sess ? SSL_SESSION_get0_peer(sess) : NULL;
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (peer && X509_digest(peer, EVP_sha256(), md, &mdlen) == 1 && mdlen == 32) {
        for (unsigned i = 0; i < 32; i++)
            snprintf(fp + 2 * i, 3, "%02x", md[i]);
        memcpy(e->last_cert, fp, sizeof(fp));
    }
    cJSON *o = event("connection", c);
    if (o) {
        cJSON_AddBoolToObject(o, "resumed", resumed);
        if (fp[0])
            cJSON_AddStringToObject(o, "cert_sha256", fp);
        if (e->cfg.early_data)
            cJSON_AddBoolToObject(o, "early_data", early);
        if (c->validated)
            cJSON_AddStringToObject(o, "address_validated", c->validated);
        edge_emit(e, o);
    }
    if (e->cfg.new_tokens)
        send_new_token(e, c);
    if (e->cfg.misbehave)
        mb_after_handshake(c);
}

/* ---- streams ---- */

/* Re-counts what es holds (its buffer's capacity and its unacknowledged response bytes). */
static void es_account(edge_stream *es) {
    edge_conn *c = es->c;
    syn_edge *e = c->e;
    uint64_t now = (uint64_t)es->cap + (es->qs ? syn_qstream_unacked(es->qs) : 0);
    c->held = c->held - es->held + now;
    e->stats.held_bytes = e->stats.held_bytes - es->held + now;
    es->held = now;
    if (c->held > e->stats.held_peak)
        e->stats.held_peak = c->held;
}

static void es_buf_free(edge_stream *es) {
    free(es->buf);
    es->buf = NULL;
    es->len = es->cap = 0;
    es_account(es);
}

/* Returns stream and connection credit for n consumed bytes. */
static void es_consume(edge_stream *es, uint64_t n) {
    if (n > es->conn_owed)
        n = es->conn_owed;
    if (!n || !es->qs)
        return;
    es->conn_owed -= n;
    syn_qstream_consume(es->qs, (size_t)n);
}

static void es_free(edge_stream *es) {
    edge_conn *c = es->c;
    syn_list_remove(&c->streams, &es->link);
    ev_timer_stop(c->e->loop, &es->sleep);
    c->held -= es->held;
    c->e->stats.held_bytes -= es->held;
    if (es->qs)
        syn_qstream_set_user(es->qs, NULL);
    free(es->buf);
    free(es);
}

/* Appends to es's buffer, growing it to at most limit bytes (0 = no limit). */
static int es_append_max(edge_stream *es, const uint8_t *data, size_t len, size_t limit) {
    if (!len)
        return 0;
    uint8_t *n = syn_grow(es->buf, &es->cap, es->len + len, 1, 1024, limit);
    if (!n)
        return -1;
    es->buf = n;
    memcpy(es->buf + es->len, data, len);
    es->len += len;
    es_account(es);
    return 0;
}

static int es_append(edge_stream *es, const uint8_t *data, size_t len) {
    return es_append_max(es, data, len, 0);
}

/* Queues response bytes (copied). */
static int es_send(edge_stream *es, const void *data, size_t len, int fin) {
    int rv = syn_qstream_write(es->qs, data, len, fin);
    es_account(es);
    return rv;
}

static void es_reset(edge_stream *es, uint64_t code) {
    es->mode = REQ_DONE;
    es->src_left = 0;
    ev_timer_stop(es->c->e->loop, &es->sleep);
    syn_qstream_shutdown(es->qs, code);
    es_buf_free(es);
}

/* ---- reports to the device (docs/protocol.md, "Reports") ---- */

static int conn_queue_report(edge_conn *c, const uint8_t *frame, size_t len) {
    if (c->nreports >= SYN_EDGE_MAX_QUEUED_REPORTS) {
        /* A device that keeps its report streams open (never returns the credit) while it sends
         * refusable heartbeats must not grow this queue without end. */
        c->e->stats.reports_dropped++;
        emit_simple(c->e, "report_dropped", c, "reason", "too many reports waiting for a stream");
        return SYNESIS_ERR_WOULD_BLOCK;
    }
    edge_report *r = malloc(sizeof(*r) + len);
    if (!r) {
        c->e->stats.reports_dropped++;
        return SYNESIS_ERR_NOMEM;
    }
    r->next = NULL;
    r->len = len;
    if (len)
        memcpy(r->frame, frame, len);
    if (c->reports_tail)
        c->reports_tail->next = r;
    else
        c->reports = r;
    c->reports_tail = r;
    c->nreports++;
    syn_qconn_schedule(c->qc);
    return 0;
}

/* Opens a stream for each waiting report while the device grants them (before a write pass, so
 * never from inside ngtcp2). A device that grants none (older devices) gets none: the edge logs
 * the refusal only. */
static void conn_send_reports(edge_conn *c) {
    while (c->reports) {
        edge_report *r = c->reports;
        syn_qstream *qs;
        int rv = syn_qconn_open_stream(c->qc, 0, NULL, &qs);
        if (rv == SYNESIS_ERR_WOULD_BLOCK && syn_qconn_handshake_completed(c->qc) &&
            syn_qconn_peer_max_streams_uni(c->qc) > 0)
            return; /* wait for the device to return credit */
        c->reports = r->next;
        c->nreports--;
        if (!c->reports)
            c->reports_tail = NULL;
        if (rv == 0 && syn_qstream_write(qs, r->frame, r->len, 1) == 0) {
            c->e->stats.reports_sent++;
        } else {
            c->e->stats.reports_dropped++;
            emit_simple(c->e, "report_dropped", c, "reason",
                        rv == SYNESIS_ERR_WOULD_BLOCK ? "the device grants no report streams"
                                                      : synesis_strerror(rv));
        }
        free(r);
    }
}

static void conn_free_reports(edge_conn *c) {
    for (edge_report *r = c->reports, *n; r; r = n) {
        n = r->next;
        free(r);
    }
    c->reports = c->reports_tail = NULL;
    c->nreports = 0;
}

int syn_edge_send_report(syn_edge *e, const char *device_id, const uint8_t *frame, size_t len) {
    int n = 0;
    edge_conn *c;
    SYN_LIST_FOREACH(c, &e->conns, edge_conn, link) {
        if (strcmp(c->device_id, device_id) == 0 && syn_qconn_handshake_completed(c->qc)) {
            int rv = conn_queue_report(c, frame, len);
            if (rv != 0)
                return rv;
            n++;
        }
    }
    return n;
}

/* Tells the device that its heartbeat on stream_id was refused after the edge read all of it. */
static void report_refusal(edge_stream *es, const cJSON *seq, const char *reason) {
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return;
    cJSON_AddStringToObject(o, "kind", "heartbeat_refused");
    cJSON_AddNumberToObject(o, "stream_id", (double)syn_qstream_id(es->qs));
    if (seq)
        cJSON_AddNumberToObject(o, "sequence", seq->valuedouble);
    cJSON_AddNumberToObject(o, "error", SYN_APP_BAD_FRAME);
    cJSON_AddStringToObject(o, "reason", reason);
    char *json = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!json)
        return;
    size_t n = strlen(json);
    uint8_t frame[SYN_FRAME_HEADER + SYN_REPORT_MAX];
    if (n <= SYN_REPORT_MAX) {
        syn_frame_header(frame, SYN_MSG_REPORT, n);
        memcpy(frame + SYN_FRAME_HEADER, json, n);
        (void)conn_queue_report(es->c, frame, SYN_FRAME_HEADER + n);
    }
    cJSON_free(json);
}

/* Heartbeats: 0x01, u32 big-endian length, JSON with device_id, timestamp, sequence, vitals. A
 * frame refused while its stream is open gets STOP_SENDING 0x10; one judged at its end (the
 * whole stream read) gets a report on a stream of the edge's own. */
static void bad_frame(edge_stream *es, int at_fin, const cJSON *seq, const char *fmt, ...)
    SYNESIS_PRINTF(4, 5);
static void bad_frame(edge_stream *es, int at_fin, const cJSON *seq, const char *fmt, ...) {
    syn_edge *e = es->c->e;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->last_bad_frame, sizeof(e->last_bad_frame), fmt, ap);
    va_end(ap);
    es->bad = 1;
    e->stats.bad_frames++;
    if (at_fin)
        report_refusal(es, seq, e->last_bad_frame);
    else
        syn_qstream_stop_reading(es->qs, SYN_APP_BAD_FRAME);
    es_buf_free(es);
    emit_simple(e, "bad_frame", es->c, "reason", e->last_bad_frame);
}

static device_entry *device_get(syn_edge *e, const char *id) {
    for (size_t i = 0; i < e->ndevices; i++)
        if (strcmp(e->devices[i].id, id) == 0)
            return &e->devices[i];
    device_entry *n = syn_grow(e->devices, &e->devices_cap, e->ndevices + 1, sizeof(*n), 8, 0);
    if (!n)
        return NULL;
    e->devices = n;
    device_entry *d = &e->devices[e->ndevices++];
    memset(d, 0, sizeof(*d));
    syn_copy_str(d->id, sizeof(d->id), id);
    return d;
}

/* A non-negative integer that a double holds exactly (JSON numbers are doubles in cJSON). */
static int is_integer(const cJSON *n) {
    return cJSON_IsNumber(n) && n->valuedouble >= 0 && n->valuedouble <= 9007199254740991.0 &&
           n->valuedouble == (double)(uint64_t)n->valuedouble;
}

static int json_space(uint8_t ch) { return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r'; }

/* The device's keep-alive interval (keep_alive_ms of its heartbeat; 0 = off): the edge PINGs a
 * little before it would (syn_edge_config.ping_devices). */
static void device_keep_alive(edge_conn *c, uint64_t ms) {
    uint64_t ns = 0;
    if (ms && ms <= UINT32_MAX) {
        ngtcp2_conn_info ci;
        syn_qconn_info(c->qc, &ci);
        uint64_t ka = ms * NGTCP2_MILLISECONDS;
        /* The minimum RTT: the smoothed one of a connection that came up in a burst of
         * handshakes stays inflated for a while and would make the edge ping more often. */
        uint64_t margin = ka / SYN_EDGE_PING_MARGIN;
        if (margin < 3 * ci.min_rtt)
            margin = 3 * ci.min_rtt;
        if (margin < SYN_EDGE_MIN_MARGIN_MS * NGTCP2_MILLISECONDS)
            margin = SYN_EDGE_MIN_MARGIN_MS * NGTCP2_MILLISECONDS;
        if (ka > margin && ka - margin >= SYN_EDGE_MIN_PING_MS * NGTCP2_MILLISECONDS)
            ns = ka - margin;
    }
    syn_qconn_set_keep_alive(c->qc, ns);
}

static void heartbeat_complete(edge_stream *es) {
    syn_edge *e = es->c->e;
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts((const char *)es->buf, es->len, &end, 0);
    size_t used = o && end ? (size_t)(end - (const char *)es->buf) : 0;
    while (o && used < es->len && json_space(es->buf[used]))
        used++;
    if (!o || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        bad_frame(es, 1, NULL, "invalid JSON");
        return;
    }
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(o, "sequence");
    if (!is_integer(seq))
        seq = NULL;
    if (used != es->len) {
        bad_frame(es, 1, seq, "%zu bytes after the JSON object", es->len - used);
        cJSON_Delete(o);
        return;
    }
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "device_id");
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(o, "timestamp");
    const cJSON *vit = cJSON_GetObjectItemCaseSensitive(o, "vitals");
    const char *missing = !cJSON_IsString(id)    ? "device_id (string)"
                          : !is_integer(ts)      ? "timestamp (integer)"
                          : !seq                 ? "sequence (integer)"
                          : !cJSON_IsObject(vit) ? "vitals (object)"
                                                 : NULL;
    if (missing) {
        bad_frame(es, 1, seq, "missing or mistyped field %s", missing);
        cJSON_Delete(o);
        return;
    }
    e->stats.heartbeats++;
    const cJSON *ka = cJSON_GetObjectItemCaseSensitive(o, "keep_alive_ms");
    if (e->cfg.ping_devices && is_integer(ka))
        device_keep_alive(es->c, (uint64_t)ka->valuedouble);
    device_entry *d = device_get(e, es->c->device_id);
    if (d) {
        d->info.heartbeats++;
        d->info.last_sequence = (uint64_t)seq->valuedouble;
        size_t n =
            es->len < sizeof(d->info.last_json) - 1 ? es->len : sizeof(d->info.last_json) - 1;
        if (n)
            memcpy(d->info.last_json, es->buf, n);
        d->info.last_json[n] = 0;
    }
    cJSON *ev = event("heartbeat", es->c);
    if (ev) {
        cJSON_AddStringToObject(ev, "hb_device_id", id->valuestring);
        cJSON_AddNumberToObject(ev, "sequence", seq->valuedouble);
        const char *keys[] = {"cpu_percent", "load_1", "mem_available_kb", "uptime_s"};
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(vit, keys[i]);
            if (cJSON_IsNumber(v))
                cJSON_AddNumberToObject(ev, keys[i], v->valuedouble);
        }
        edge_emit(e, ev);
    }
    cJSON_Delete(o);
    es_buf_free(es);
}

static void hb_data(edge_stream *es, const uint8_t *data, size_t len, int fin) {
    syn_edge *e = es->c->e;
    if (es->bad)
        return;
    while (len && es->hdr_len < SYN_FRAME_HEADER) {
        es->hdr[es->hdr_len++] = *data++;
        len--;
        if (es->hdr_len == 1 && es->hdr[0] != SYN_MSG_HEARTBEAT) {
            bad_frame(es, 0, NULL, "unknown message type 0x%02x", es->hdr[0]);
            return;
        }
        if (es->hdr_len == SYN_FRAME_HEADER) {
            es->need = syn_frame_length(es->hdr);
            if (es->need > e->cfg.max_heartbeat_size) {
                bad_frame(es, 0, NULL, "length %u over the maximum of %zu", es->need,
                          e->cfg.max_heartbeat_size);
                return;
            }
            if (es->c->held + es->need > e->cfg.max_conn_buffer) {
                bad_frame(es, 0, NULL, "the connection's buffer (%zu bytes) is full",
                          e->cfg.max_conn_buffer);
                return;
            }
        }
    }
    if (len) {
        if (es->len + len > es->need) {
            bad_frame(es, 0, NULL, "%zu bytes after the end of the frame",
                      es->len + len - es->need);
            return;
        }
        if (es_append(es, data, len) != 0) {
            bad_frame(es, 0, NULL, "out of memory");
            return;
        }
    }
    if (!fin)
        return;
    if (es->hdr_len < SYN_FRAME_HEADER || es->len < es->need)
        bad_frame(es, 1, NULL, "truncated frame: %zu of %zu bytes", es->hdr_len + es->len,
                  (size_t)SYN_FRAME_HEADER + (es->hdr_len == SYN_FRAME_HEADER ? es->need : 0));
    else
        heartbeat_complete(es);
}

/* Requests. */
#define SRC_WINDOW (1024 * 1024)

/* SRC bytes are (offset % SRC_PERIOD): any SRC_CHUNK of them is a window of the edge's
 * src_pattern, built once and queued without a copy (syn_qstream_write_nocopy) instead of being
 * filled byte by byte. */
static const uint8_t *src_bytes(const syn_edge *e, uint64_t pos) {
    return e->src_pattern + pos % SRC_PERIOD;
}

/* Queues SRC bytes only as far as the device's flow control lets them leave and while the
 * connection is under its bound: a device that never reads pins at most the bound (the bytes are
 * not copied, but count as held all the same: the bound stays what docs/protocol.md says). */
static void src_pump(edge_stream *es) {
    edge_conn *c = es->c;
    syn_edge *e = c->e;
    while (es->src_left) {
        syn_qstream *qs = es->qs;
        uint64_t unsent = syn_qstream_unsent(qs);
        uint64_t credit = syn_qstream_send_credit(qs);
        if (unsent >= credit || syn_qstream_unacked(qs) >= SRC_WINDOW)
            return; /* resumed by stream_credit or stream_acked */
        if (c->held >= e->cfg.max_conn_buffer) {
            c->src_stalled = 1; /* resumed when an acknowledgement frees room */
            return;
        }
        uint64_t room = credit - unsent;
        if (room > e->cfg.max_conn_buffer - c->held)
            room = e->cfg.max_conn_buffer - c->held;
        size_t n = es->src_left < SRC_CHUNK ? (size_t)es->src_left : SRC_CHUNK;
        if (n > room)
            n = (size_t)room;
        const uint8_t *chunk = src_bytes(e, es->src_pos);
        es->src_pos += n;
        es->src_left -= n;
        int rv = syn_qstream_write_nocopy(es->qs, chunk, n, NULL, NULL, es->src_left == 0);
        es_account(es);
        if (rv != 0) {
            es_reset(es, SYN_APP_INTERNAL);
            return;
        }
    }
}

static void sleep_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    edge_stream *es = w->data;
    es->mode = REQ_DONE;
    if (es_send(es, es->buf, es->len, 1) != 0)
        es_reset(es, SYN_APP_INTERNAL);
    else
        es_buf_free(es);
}

static const char *const commands[] = {"SRC ", "SLEEP ", "RESET "};
enum { CMD_SRC, CMD_SLEEP, CMD_RESET, CMD_NONE };

/* 1 if buf starts with a whole command word; 2 if it could still become one with more bytes. */
static int command_prefix(const uint8_t *buf, size_t len) {
    if (!len)
        return 2;
    for (size_t i = 0; i < 3; i++) {
        size_t cl = strlen(commands[i]);
        if (memcmp(buf, commands[i], len < cl ? len : cl) == 0)
            return len >= cl ? 1 : 2;
    }
    return 0;
}

/* Parses 1*20 DIGIT (decimal) or "0x" 1*16 HEXDIG (hex, when allowed) into *out, at most max.
 * Returns 0, or -1 for anything else: signs, spaces, an empty or overlong number, overflow. */
static int parse_number(const char *p, size_t n, int hex, uint64_t max, uint64_t *out) {
    uint64_t v = 0;
    unsigned base = 10;
    if (hex && n > 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        base = 16;
        p += 2;
        n -= 2;
    }
    if (!n)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned d;
        if (p[i] >= '0' && p[i] <= '9')
            d = (unsigned)(p[i] - '0');
        else if (base == 16 && p[i] >= 'a' && p[i] <= 'f')
            d = (unsigned)(p[i] - 'a' + 10);
        else if (base == 16 && p[i] >= 'A' && p[i] <= 'F')
            d = (unsigned)(p[i] - 'A' + 10);
        else
            return -1;
        if (v > (max - d) / base)
            return -1;
        v = v * base + d;
    }
    *out = v;
    return 0;
}

static void refuse(edge_stream *es, const char *reason) {
    emit_simple(es->c->e, "request_refused", es->c, "reason", reason);
    es_reset(es, SYN_APP_REFUSED);
}

static void sleep_data(edge_stream *es, int fin);
static int body_append(edge_stream *es, const uint8_t *data, size_t len, int fin);

/* The command line is buffered (or cannot be): act on it. Grammar in docs/protocol.md. */
static void run_command(edge_stream *es, int fin) {
    syn_edge *e = es->c->e;
    size_t scan = es->len < CMD_LINE_MAX + 1 ? es->len : CMD_LINE_MAX + 1;
    uint8_t *nl = memchr(es->buf, '\n', scan);
    if (!nl) {
        if (es->len > CMD_LINE_MAX)
            refuse(es, "command line longer than 64 bytes");
        else if (fin)
            refuse(es, "command line without its newline");
        return;
    }
    size_t ll = (size_t)(nl - es->buf);
    const char *line = (const char *)es->buf;
    int kind = CMD_NONE;
    for (int i = 0; i < CMD_NONE; i++)
        if (strncmp(line, commands[i], strlen(commands[i])) == 0)
            kind = i;
    size_t word = strlen(commands[kind]);
    uint64_t n = 0;
    uint64_t max = kind == CMD_SRC     ? e->cfg.max_src_size
                   : kind == CMD_SLEEP ? SLEEP_MAX_MS
                                       : SYN_APP_CODE_MAX;
    if (parse_number(line + word, ll - word, kind == CMD_RESET, max, &n) != 0) {
        refuse(es, kind == CMD_SRC     ? "SRC wants 1 to 20 digits, at most the edge's maximum"
                   : kind == CMD_SLEEP ? "SLEEP wants 1 to 6 digits, at most 600000"
                                       : "RESET wants a decimal or 0x code below 2^62");
        return;
    }
    size_t rest = es->len - ll - 1;
    switch (kind) {
    case CMD_SRC:
        es->mode = REQ_DONE; /* the rest of the request is read and dropped */
        es_consume(es, es->conn_owed);
        es_buf_free(es);
        es->src_left = n;
        if (n == 0)
            (void)es_send(es, NULL, 0, 1);
        else
            src_pump(es);
        return;
    case CMD_RESET:
        es_consume(es, es->conn_owed);
        es_reset(es, n);
        return;
    default: { /* SLEEP: the rest of the request is the answer, after the delay */
        /* The line is consumed; the rest moves into a buffer of its own, counted as a body. */
        uint8_t *line_buf = es->buf;
        es->buf = NULL;
        es->len = es->cap = 0;
        es_account(es);
        es_consume(es, ll + 1);
        es->mode = REQ_SLEEP;
        es->sleep_ms = n;
        int refused = body_append(es, nl + 1, rest, fin);
        free(line_buf);
        if (!refused)
            sleep_data(es, fin);
        return;
    }
    }
}

/* Buffered request bodies (SLEEP, handler) are consumed into a buffer counted against the
 * connection's bound, and their credit returns at once: a body that does not fit in what the
 * connection may still hold is refused with 0x11 there and then. (Holding the credit back instead
 * would stall every stream of the connection once bodies filled its window.) Returns 1 if
 * refused. */
static int body_append(edge_stream *es, const uint8_t *data, size_t len, int fin) {
    syn_edge *e = es->c->e;
    uint64_t others = es->c->held - es->held;
    uint64_t room = others < e->cfg.max_conn_buffer ? e->cfg.max_conn_buffer - others : 0;
    (void)fin;
    if ((uint64_t)es->len + len > room) {
        emit_simple(e, "request_too_large", es->c, "reason", "the connection's buffer is full");
        es_reset(es, SYN_APP_TOO_LARGE);
        return 1;
    }
    if (es_append_max(es, data, len, (size_t)room) != 0) {
        es_reset(es, SYN_APP_INTERNAL);
        return 1;
    }
    es_consume(es, len);
    return 0;
}

static void sleep_data(edge_stream *es, int fin) {
    if (!fin)
        return;
    ev_timer_set(&es->sleep, (double)es->sleep_ms / 1000.0, 0.);
    ev_timer_start(es->c->e->loop, &es->sleep);
}

static void free_reply(const void *data, size_t len, void *ud) {
    (void)ud;
    (void)len;
    free((void *)data);
}

static void run_handler(edge_stream *es) {
    syn_edge *e = es->c->e;
    syn_edge_reply reply = {0};
    es->mode = REQ_DONE;
    int rv = e->handler(e->handler_ud, es->c->device_id, es->buf, es->len, &reply);
    es_buf_free(es);
    if (rv != 0 || reply.reset) {
        free(reply.data);
        uint64_t code = rv != 0 ? SYN_APP_INTERNAL : reply.reset_code;
        if (code > SYN_APP_CODE_MAX) {
            emit_simple(e, "error", es->c, "reason", "handler reset code over 2^62 - 1");
            code = SYN_APP_INTERNAL;
        }
        es_reset(es, code);
        return;
    }
    /* The stream owns the reply from here (and frees it once acknowledged, or on failure). */
    if (syn_qstream_write_nocopy(es->qs, reply.data, reply.len, free_reply, NULL, 1) != 0)
        es_reset(es, SYN_APP_INTERNAL);
    es_account(es);
}

static int mb_req_data(edge_stream *es, const uint8_t *data, size_t len, int fin);

static void req_data(edge_stream *es, const uint8_t *data, size_t len, int fin) {
    syn_edge *e = es->c->e;
    es->total += len;
    es->conn_owed += len;
    if (e->cfg.misbehave && mb_req_data(es, data, len, fin))
        return;
    if (es->mode == REQ_DONE) {
        es_consume(es, len);
        return;
    }
    if (es->total > e->cfg.max_request_size) {
        emit_simple(e, "request_too_large", es->c, NULL, NULL);
        es_reset(es, SYN_APP_TOO_LARGE);
        return;
    }
    if (es->mode == REQ_UNDECIDED && e->handler)
        es->mode = REQ_HANDLER;
    switch (es->mode) {
    case REQ_ECHO:
        if (es_send(es, data, len, fin) != 0) /* credit returns as the echo is acked */
            es_reset(es, SYN_APP_INTERNAL);
        return;
    case REQ_SLEEP:
    case REQ_HANDLER:
        if (body_append(es, data, len, fin))
            return;
        if (es->mode == REQ_SLEEP)
            sleep_data(es, fin);
        else if (fin)
            run_handler(es);
        return;
    case REQ_COMMAND:
        if (es_append(es, data, len) != 0)
            es_reset(es, SYN_APP_INTERNAL);
        else
            run_command(es, fin);
        return;
    default: /* undecided: a command begins with one of a few words, anything else is echoed */
        if (es_append(es, data, len) != 0) {
            es_reset(es, SYN_APP_INTERNAL);
            return;
        }
        int cmd = command_prefix(es->buf, es->len);
        if (cmd == 1) {
            es->mode = REQ_COMMAND;
            run_command(es, fin);
            return;
        }
        if (cmd == 2 && !fin)
            return; /* still a possible command word */
        es->mode = REQ_ECHO;
        if (es_send(es, es->buf, es->len, fin) != 0)
            es_reset(es, SYN_APP_INTERNAL);
        else
            es_buf_free(es);
        return;
    }
}

static void mb_stream_open(edge_stream *es);
static void conn_drain_check(edge_conn *c);
static void drain_progress(syn_edge *e);

/* A request or heartbeat that arrived in 0-RTT: the device resumed a ticket of ours (single-use:
 * the edge accepts early data only then), whose session holds the device's certificate as verified
 * in the full handshake; its id is taken from there, the handshake not being complete yet. */
static void early_stream(edge_conn *c, syn_qstream *s, int uni) {
    syn_edge *e = c->e;
    if (uni)
        e->stats.early_heartbeats++;
    else
        e->stats.early_requests++;
    SSL_SESSION *sess = SSL_get0_session(syn_qconn_ssl(c->qc));
    X509 *peer = sess ? SSL_SESSION_get0_peer(sess) : NULL;
    char cn[128];
    if (!c->device_id[0] && peer && syn_cert_common_name(peer, cn, sizeof(cn)) == 0)
        syn_copy_str(c->device_id, sizeof(c->device_id),
                     strncmp(cn, "device-", 7) == 0 && cn[7] ? cn + 7 : cn);
    cJSON *o = event(uni ? "early_heartbeat" : "early_request", c);
    if (o) {
        cJSON_AddNumberToObject(o, "stream", (double)syn_qstream_id(s));
        edge_emit(e, o);
    }
}

static int ec_stream_open(syn_qconn *qc, syn_qstream *s) {
    edge_conn *c = syn_qconn_owner(qc);
    edge_stream *es = calloc(1, sizeof(*es));
    if (!es)
        return -1;
    es->c = c;
    es->qs = s;
    es->uni = !ngtcp2_is_bidi_stream(syn_qstream_id(s));
    ev_timer_init(&es->sleep, sleep_cb, 0., 0.);
    es->sleep.data = es;
    syn_list_push_front(&c->streams, &es->link);
    syn_qstream_set_user(s, es);
    syn_qstream_set_auto_consume(s, es->uni); /* heartbeats are bounded by the frame limit */
    c->e->stats.streams++;
    if (c->draining && !es->uni) {
        /* Draining: the request is not started; the device may send it again elsewhere. */
        es->refused = 1;
        es->mode = REQ_DONE;
        c->e->stats.drain_retries++;
        cJSON *o = event("drain_refused", c);
        if (o) {
            cJSON_AddNumberToObject(o, "stream", (double)syn_qstream_id(s));
            edge_emit(c->e, o);
        }
        syn_qstream_shutdown(s, SYN_APP_RETRY);
        return 0;
    }
    if (!ngtcp2_conn_get_handshake_completed(syn_qconn_ngtcp2(qc)))
        early_stream(c, s, es->uni);
    if (c->e->cfg.misbehave)
        mb_stream_open(es);
    return 0;
}

static void ec_stream_data(syn_qconn *qc, syn_qstream *s, const uint8_t *data, size_t len,
                           int fin) {
    (void)qc;
    edge_stream *es = syn_qstream_user(s);
    if (!es)
        return;
    es->c->e->stats.bytes_received += len;
    if (es->uni)
        hb_data(es, data, len, fin);
    else
        req_data(es, data, len, fin);
}

/* Resumes SRC streams held back by the connection's bound once there is room again. */
static void conn_resume_src(edge_conn *c) {
    if (!c->src_stalled || c->held >= c->e->cfg.max_conn_buffer)
        return;
    c->src_stalled = 0;
    edge_stream *es, *next;
    SYN_LIST_FOREACH_SAFE(es, next, &c->streams, edge_stream, link) {
        if (c->src_stalled)
            break;
        if (es->src_left)
            src_pump(es);
    }
}

static void ec_stream_acked(syn_qconn *qc, syn_qstream *s) {
    (void)qc;
    edge_stream *es = syn_qstream_user(s);
    if (!es || es->uni)
        return;
    uint64_t acked = syn_qstream_acked(s);
    if (acked > es->credited) {
        uint64_t n = acked - es->credited;
        es->credited = acked;
        if (es->mode == REQ_ECHO)
            es_consume(es, n);
    }
    es_account(es);
    if (es->src_left)
        src_pump(es);
    conn_resume_src(es->c);
}

static void ec_stream_credit(syn_qconn *qc, syn_qstream *s) {
    (void)qc;
    edge_stream *es = syn_qstream_user(s);
    if (es && es->src_left)
        src_pump(es);
}

static void ec_stream_close(syn_qconn *qc, syn_qstream *s, uint64_t app_code, int reset) {
    (void)app_code;
    (void)reset;
    edge_stream *es = syn_qstream_user(s);
    if (!es)
        return;
    if (!es->uni)
        es->c->e->stats.requests++;
    /* Bytes delivered and never consumed still hold the connection's credit (which a stalling
     * edge keeps). */
    if (es->conn_owed && es->c->e->cfg.misbehave != SYN_EDGE_MB_STALL_UPLOADS)
        syn_qconn_consume(qc, (size_t)es->conn_owed);
    es->qs = NULL;
    edge_conn *c = es->c;
    es_free(es);
    conn_resume_src(c);
    if (c->draining)
        conn_drain_check(c);
}

static void mb_open_streams(edge_conn *c);

/* A draining connection with no request in flight (requests refused with SYN_APP_RETRY do not
 * count) is asked to move: CONNECTION_CLOSE with SYN_APP_MOVE. */
static void conn_drain_check(edge_conn *c) {
    if (!c->draining || c->closing || !c->qc)
        return;
    edge_stream *es;
    SYN_LIST_FOREACH(es, &c->streams, edge_stream, link) {
        if (!es->uni && !es->refused)
            return;
    }
    emit_simple(c->e, "move", c, "reason", "edge draining");
    syn_qconn_close(c->qc, SYN_APP_MOVE, "edge draining");
}

static void ec_before_write(syn_qconn *qc) {
    edge_conn *c = syn_qconn_owner(qc);
    conn_send_reports(c);
    if (c->mb_open)
        mb_open_streams(c);
}

static void ec_closed(syn_qconn *qc, int err, const char *detail) {
    edge_conn *c = syn_qconn_owner(qc);
    syn_edge *e = c->e;
    e->stats.closed++;
    if (!syn_qconn_handshake_completed(qc) && err != 0 && err != SYNESIS_ERR_HANDSHAKE_TIMEOUT)
        e->stats.tls_failures++;
    cJSON *o = event("close", c);
    if (o) {
        cJSON_AddStringToObject(o, "error", err ? synesis_error_name(err) : "none");
        cJSON_AddStringToObject(o, "reason", detail ? detail : "");
        edge_emit(e, o);
    }
    if (conn_enter_closing(e, c) != 0)
        conn_destroy(e, c);
    drain_progress(e);
}

static void ec_cid_added(syn_qconn *qc, const ngtcp2_cid *cid) {
    edge_conn *c = syn_qconn_owner(qc);
    cid_add(c->e, cid, c);
}

static void ec_cid_removed(syn_qconn *qc, const ngtcp2_cid *cid) {
    edge_conn *c = syn_qconn_owner(qc);
    cid_remove(c->e, cid, c);
}

/* ---- a misbehaving edge (tests only: syn_edge_config.misbehave) ---- */

static void mb_close_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    edge_conn *c = w->data;
    syn_qconn_close(c->qc, c->e->cfg.misbehave_code, "hostile edge"); /* c may be gone now */
}

/* FLOOD: a stream per tiny report, each flushed at once so that it leaves in a packet of its own,
 * as long as the device grants streams. */
static void mb_flood_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    edge_conn *c = w->data;
    syn_edge *e = c->e;
    syn_hold_enter(&c->hold);
    for (int i = 0; i < 64 && !syn_hold_dying(&c->hold) && !c->closing; i++) {
        syn_qstream *qs;
        if (syn_qconn_open_stream(c->qc, 0, NULL, &qs) != 0)
            break;
        char json[64];
        int n = snprintf(json, sizeof(json), "{\"kind\":\"flood\",\"n\":%llu}",
                         (unsigned long long)c->mb_seq++);
        uint8_t frame[SYN_FRAME_HEADER + sizeof(json)];
        syn_frame_header(frame, SYN_MSG_REPORT, (size_t)n);
        memcpy(frame + SYN_FRAME_HEADER, json, (size_t)n);
        if (syn_qstream_write(qs, frame, SYN_FRAME_HEADER + (size_t)n, 1) != 0)
            break;
        e->stats.mb_streams++;
        syn_qconn_flush(c->qc); /* may end the connection: then dying, or closing */
    }
    if (syn_hold_leave(&c->hold) && syn_hold_dying(&c->hold))
        free(c);
}

static void mb_after_handshake(edge_conn *c) {
    syn_edge *e = c->e;
    switch (e->cfg.misbehave) {
    case SYN_EDGE_MB_CLOSE:
        if (e->cfg.misbehave_delay > 0) {
            ev_timer_init(&c->mb_timer, mb_close_cb, e->cfg.misbehave_delay, 0.);
            c->mb_timer.data = c;
            ev_timer_start(e->loop, &c->mb_timer);
        } else {
            syn_qconn_close(c->qc, e->cfg.misbehave_code, "hostile edge");
        }
        return;
    case SYN_EDGE_MB_FLOOD:
        ev_timer_init(&c->mb_timer, mb_flood_cb, 0.001, 0.001);
        c->mb_timer.data = c;
        ev_timer_start(e->loop, &c->mb_timer);
        return;
    default:
        return;
    }
}

/* MIGRATE: the connection's packets leave from a new socket on another port from now on. */
static void mb_migrate(edge_conn *c) {
    syn_edge *e = c->e;
    syn_sockaddr bind_to = e->local, local;
    if (bind_to.ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&bind_to.ss)->sin_port = 0;
    else
        ((struct sockaddr_in6 *)&bind_to.ss)->sin6_port = 0;
    char detail[SYNESIS_DETAIL_MAX];
    int fd =
        syn_udp_open(NULL, 0, (const struct sockaddr *)&bind_to.ss, bind_to.len, 1, &local, detail);
    if (fd < 0) {
        emit_simple(e, "error", c, "reason", detail);
        return;
    }
    syn_qconn_server_send_from(c->qc, fd);
    c->mb_migrated = 1;
    e->stats.mb_migrations++;
    char addr[64];
    syn_sockaddr_str((const struct sockaddr *)&local.ss, addr, sizeof(addr));
    emit_simple(e, "mb_migrated", c, "address", addr);
}

static void mb_stream_open(edge_stream *es) {
    edge_conn *c = es->c;
    syn_edge *e = c->e;
    switch (e->cfg.misbehave) {
    case SYN_EDGE_MB_RESET_STREAMS:
        es->mode = REQ_DONE; /* what still arrives is read and dropped */
        es->bad = 1;
        syn_qstream_shutdown(es->qs, e->cfg.misbehave_code);
        return;
    case SYN_EDGE_MB_STALL_UPLOADS:
        syn_qstream_set_auto_consume(es->qs, 0);
        return;
    case SYN_EDGE_MB_OPEN_STREAMS:
        if (!es->uni) {
            c->mb_open += e->cfg.misbehave_count; /* opened before the next write pass */
            syn_qconn_schedule(c->qc);
        }
        return;
    case SYN_EDGE_MB_MIGRATE:
        if (!es->uni && !c->mb_migrated)
            mb_migrate(c);
        return;
    default:
        return;
    }
}

/* OPEN_STREAMS: streams towards the device, each with the start of a report (a header announcing
 * 64 bytes, then one) that never ends. */
static void mb_open_streams(edge_conn *c) {
    syn_edge *e = c->e;
    unsigned n = c->mb_open;
    c->mb_open = 0;
    uint8_t start[SYN_FRAME_HEADER + 1];
    syn_frame_header(start, SYN_MSG_REPORT, 64);
    start[SYN_FRAME_HEADER] = '{';
    for (int bidi = 1; bidi >= 0; bidi--) {
        for (unsigned i = 0; i < n; i++) {
            syn_qstream *qs;
            if (syn_qconn_open_stream(c->qc, bidi, NULL, &qs) != 0) {
                e->stats.mb_refused++;
                continue;
            }
            e->stats.mb_streams++;
            (void)syn_qstream_write(qs, start, sizeof(start), 0);
        }
    }
}

/* Request data of a misbehaving edge; returns 1 if handled. */
static int mb_req_data(edge_stream *es, const uint8_t *data, size_t len, int fin) {
    (void)fin;
    switch (es->c->e->cfg.misbehave) {
    case SYN_EDGE_MB_ENDLESS_RESPONSE:
        es_consume(es, es->conn_owed);
        if (es->mode != REQ_DONE) {
            es->mode = REQ_DONE;
            es_buf_free(es);
            es->src_left = UINT64_MAX; /* never reaches 0: no FIN */
            src_pump(es);
        }
        return 1;
    case SYN_EDGE_MB_NO_FIN:
        es->mode = REQ_ECHO; /* credit returns as the echo is acknowledged */
        if (es_send(es, data, len, 0) != 0)
            es_reset(es, SYN_APP_INTERNAL);
        return 1;
    case SYN_EDGE_MB_STALL_UPLOADS:
        return 1; /* never consumed: no credit ever returns */
    default:
        return 0;
    }
}

static int mb_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg) {
    (void)ssl;
    (void)in;
    (void)inlen;
    const syn_edge *e = arg;
    if (e->cfg.misbehave == SYN_EDGE_MB_ALPN_NONE)
        return SSL_TLSEXT_ERR_NOACK;
    static const unsigned char other[] = "h3";
    *out = other;
    *outlen = (unsigned char)(sizeof(other) - 1);
    return SSL_TLSEXT_ERR_OK;
}

/* The driver's own messages at INFO and above (a path MTU black hole suspected, an out-of-range
 * application error code) as "quic" events; its DEBUG chatter stays out of the log. */
static void ec_log(syn_qconn *qc, synesis_log_level level, const char *msg) {
    if (level > SYNESIS_LOG_INFO)
        return;
    edge_conn *c = syn_qconn_owner(qc);
    emit_simple(c->e, "quic", c, "msg", msg);
}

static void ec_path_validated(syn_qconn *qc, int result, const syn_sockaddr *remote,
                              const syn_sockaddr *old_remote) {
    edge_conn *c = syn_qconn_owner(qc);
    syn_edge *e = c->e;
    if (result == 1)
        e->stats.paths_validated++;
    else if (result == 0)
        e->stats.path_validations_failed++;
    char addr[64], old[64] = "";
    syn_sockaddr_str((const struct sockaddr *)&remote->ss, addr, sizeof(addr));
    if (old_remote && old_remote->len)
        syn_sockaddr_str((const struct sockaddr *)&old_remote->ss, old, sizeof(old));
    cJSON *o = event("path_validated", c);
    if (!o)
        return;
    cJSON_AddStringToObject(o, "address", addr);
    cJSON_AddStringToObject(o, "result",
                            result == 1   ? "validated"
                            : result == 0 ? "failed"
                                          : "aborted");
    if (result == 0 && old[0])
        cJSON_AddStringToObject(o, "fallback", old);
    edge_emit(e, o);
}

static const syn_qconn_ops edge_qc_ops = {
    .path_validated = ec_path_validated,
    .log = ec_log,
    .handshake_done = ec_handshake_done,
    .stream_open = ec_stream_open,
    .stream_data = ec_stream_data,
    .stream_acked = ec_stream_acked,
    .stream_credit = ec_stream_credit,
    .stream_close = ec_stream_close,
    .streams_available = ec_before_write,
    .before_write = ec_before_write,
    .closed = ec_closed,
    .cid_added = ec_cid_added,
    .cid_removed = ec_cid_removed,
};

static void send_raw(syn_edge *e, const uint8_t *buf, size_t len, const syn_sockaddr *to);

static void send_version_negotiation(syn_edge *e, const ngtcp2_version_cid *vc,
                                     const syn_sockaddr *to) {
    uint8_t buf[SYN_UDP_MAX_PAYLOAD];
    uint32_t sv[] = {NGTCP2_PROTO_VER_V1};
    uint8_t unused = 0;
    (void)RAND_bytes(&unused, 1);
    ngtcp2_ssize n = ngtcp2_pkt_write_version_negotiation(
        buf, sizeof(buf), unused, vc->scid, vc->scidlen, vc->dcid, vc->dcidlen, sv, 1);
    if (n > 0)
        send_raw(e, buf, (size_t)n, to);
}

/* ---- address validation: stateless Retry ---- */

static ngtcp2_tstamp token_clock(void) {
    return (ngtcp2_tstamp)syn_wall_ms() * NGTCP2_MILLISECONDS;
}

/* A stateless answer: on the link the packet came from, else as a datagram. */
static void send_raw(syn_edge *e, const uint8_t *buf, size_t len, const syn_sockaddr *to) {
    if (e->cur_link) {
        (void)syn_tcplink_send(e->cur_link->l, buf, len);
        return;
    }
    (void)sendto(e->fd, buf, len, MSG_DONTWAIT, (const struct sockaddr *)&to->ss, to->len);
}

/* Answers a client Initial with a Retry carrying a token that binds its address and its DCID. */
static void send_retry(syn_edge *e, const ngtcp2_pkt_hd *hd, const syn_sockaddr *to) {
    ngtcp2_cid scid;
    scid.datalen = SYN_SV_SCIDLEN;
    uint8_t token[NGTCP2_CRYPTO_MAX_RETRY_TOKENLEN2];
    if (RAND_bytes(scid.data, (int)scid.datalen) != 1)
        return;
    ngtcp2_ssize tl = ngtcp2_crypto_generate_retry_token2(
        token, e->retry_secret, sizeof(e->retry_secret), hd->version,
        (const ngtcp2_sockaddr *)&to->ss, (ngtcp2_socklen)to->len, &scid, &hd->dcid, token_clock());
    if (tl < 0)
        return;
    uint8_t buf[NGTCP2_MAX_UDP_PAYLOAD_SIZE];
    ngtcp2_ssize n = ngtcp2_crypto_write_retry(buf, sizeof(buf), hd->version, &hd->scid, &scid,
                                               &hd->dcid, token, (size_t)tl);
    if (n <= 0)
        return;
    send_raw(e, buf, (size_t)n, to);
    e->stats.retries++;
}

/* Refuses an Initial whose Retry token is invalid (RFC 9000 8.1.3: INVALID_TOKEN), statelessly. */
static void send_invalid_token(syn_edge *e, const ngtcp2_pkt_hd *hd, const syn_sockaddr *to) {
    uint8_t buf[NGTCP2_MAX_UDP_PAYLOAD_SIZE];
    ngtcp2_ssize n = ngtcp2_crypto_write_connection_close(buf, sizeof(buf), hd->version, &hd->scid,
                                                          &hd->dcid, NGTCP2_INVALID_TOKEN, NULL, 0);
    if (n > 0)
        send_raw(e, buf, (size_t)n, to);
}

enum { AV_ACCEPT, AV_ACCEPT_RETRIED, AV_ACCEPT_TOKEN, AV_DONE };

/* Decides what a client Initial that would open a connection gets. AV_ACCEPT_RETRIED: its Retry
 * token verified, *odcid is the DCID of the client's first Initial. AV_ACCEPT: a new connection
 * without validated address (hd's token, if any, is cleared: only a verified token may lift the
 * anti-amplification limit). AV_DONE: answered (Retry, refusal) or dropped. */
static int validate_address(syn_edge *e, ngtcp2_pkt_hd *hd, const syn_udp_dgram *d,
                            ngtcp2_cid *odcid) {
    if (hd->tokenlen && hd->token[0] == NGTCP2_CRYPTO_TOKEN_MAGIC_RETRY2) {
        int rv = ngtcp2_crypto_verify_retry_token2(
            odcid, hd->token, hd->tokenlen, e->retry_secret, sizeof(e->retry_secret), hd->version,
            (const ngtcp2_sockaddr *)&d->remote.ss, (ngtcp2_socklen)d->remote.len, &hd->dcid,
            SYN_EDGE_RETRY_TOKEN_TIMEOUT * NGTCP2_SECONDS, token_clock());
        if (rv == 0)
            return AV_ACCEPT_RETRIED;
        e->stats.tokens_refused++;
        send_invalid_token(e, hd, &d->remote);
        char remote[64];
        syn_sockaddr_str((const struct sockaddr *)&d->remote.ss, remote, sizeof(remote));
        cJSON *o = event("retry_token_refused", NULL);
        if (o) {
            cJSON_AddStringToObject(o, "remote", remote);
            cJSON_AddStringToObject(
                o, "reason",
                rv == NGTCP2_CRYPTO_ERR_VERIFY_TOKEN ? "expired or other address" : "unreadable");
            edge_emit(e, o);
        }
        return AV_DONE;
    }
    if (hd->tokenlen && hd->token[0] == NGTCP2_CRYPTO_TOKEN_MAGIC_REGULAR && e->cfg.new_tokens &&
        ngtcp2_crypto_verify_regular_token(
            hd->token, hd->tokenlen, e->retry_secret, sizeof(e->retry_secret),
            (const ngtcp2_sockaddr *)&d->remote.ss, (ngtcp2_socklen)d->remote.len,
            (ngtcp2_duration)(e->cfg.new_token_lifetime * (double)NGTCP2_SECONDS),
            token_clock()) == 0) {
        /* A NEW_TOKEN token of ours from this address: validated, no Retry (RFC 9000 8.1.3). */
        e->stats.new_tokens_accepted++;
        return AV_ACCEPT_TOKEN;
    }
    if (hd->tokenlen) {
        /* Not a valid token of ours (another edge's, expired, another address): proceed as
         * without one (RFC 9000 8.1.3). */
        e->stats.tokens_ignored++;
        hd->token = NULL;
        hd->tokenlen = 0;
        if (hd->dcid.datalen < NGTCP2_MIN_INITIAL_DCIDLEN)
            return AV_DONE;
    }
    if (e->cfg.retry_threshold != SYN_EDGE_RETRY_NEVER &&
        e->handshaking >= e->cfg.retry_threshold) {
        send_retry(e, hd, &d->remote);
        return AV_DONE;
    }
    return AV_ACCEPT;
}

static void handle_datagram(syn_edge *e, syn_udp_dgram *d) {
    if (d->ecn)
        e->stats.ecn_marked++;
    ngtcp2_version_cid vc;
    int rv = ngtcp2_pkt_decode_version_cid(&vc, d->data, d->len, SYN_SV_SCIDLEN);
    if (rv == NGTCP2_ERR_VERSION_NEGOTIATION) {
        send_version_negotiation(e, &vc, &d->remote);
        return;
    }
    if (rv != 0)
        return;
    edge_conn *c = cid_find(e, vc.dcid, vc.dcidlen);
    if (c && c->closing) {
        closing_datagram(e, c, d);
        return;
    }
    const syn_sockaddr *local = e->cur_link ? syn_tcplink_local(e->cur_link->l) : &e->local;
    if (c) {
        /* A frame on the link the connection is bound to is not a move (while a device probes
         * UDP, its frames and datagrams alternate: only the datagrams' path is news). */
        if (!(e->cur_link && c->el == e->cur_link) &&
            (syn_qconn_remote(c->qc)->len != d->remote.len ||
             memcmp(&syn_qconn_remote(c->qc)->ss, &d->remote.ss, d->remote.len) != 0))
            path_changed(e, c, &d->remote);
        if (e->cur_link)
            link_bind(e->cur_link, c);
        conn_mark_dirty(e, c);
        syn_qconn_recv(c->qc, local, &d->remote, d->ecn, d->data, d->len);
        return;
    }
    ngtcp2_pkt_hd hd;
    if (ngtcp2_accept(&hd, d->data, d->len) != 0)
        return; /* not an Initial we can serve: drop */
    if (e->draining && e->drain_refuse_new) {
        e->stats.drain_dropped++; /* the device's attempt times out and goes elsewhere */
        return;
    }
    ngtcp2_cid odcid;
    int av = validate_address(e, &hd, d, &odcid);
    if (av == AV_DONE)
        return;
    c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->e = e;
    c->validated = av == AV_ACCEPT_RETRIED ? "retry" : av == AV_ACCEPT_TOKEN ? "new_token" : NULL;
    ev_timer_init(&c->mb_timer, mb_close_cb, 0., 0.);
    c->mb_timer.data = c;
    syn_sockaddr_str((const struct sockaddr *)&d->remote.ss, c->remote, sizeof(c->remote));
    char detail[SYNESIS_DETAIL_MAX];
    if (syn_qconn_server_new(&c->qc, e->loop, e->fd, local, &d->remote, &hd,
                             av == AV_ACCEPT_RETRIED ? &odcid : NULL, e->ssl_ctx, &e->qset,
                             &edge_qc_ops, c, detail) != 0) {
        emit_simple(e, "error", c, "reason", detail);
        cid_remove_conn(e, c);
        free(c);
        return;
    }
    syn_list_push_front(&e->conns, &c->link);
    e->stats.accepted++;
    e->stats.active++;
    c->handshaking = 1;
    e->handshaking++;
    cid_add(e, &hd.dcid, c); /* the client keeps using the original DCID until it learns ours */
    if (e->cur_link)
        link_bind(e->cur_link, c);
    conn_mark_dirty(e, c);
    syn_qconn_recv(c->qc, local, &d->remote, d->ecn, d->data, d->len);
}

static void flush_dirty(syn_edge *e);

static void rio_cb(struct ev_loop *loop, ev_io *w, int revents) {
    (void)loop;
    (void)revents;
    syn_edge *e = w->data;
    for (int total = 0;
         (total < SYN_UDP_RX_MAX_PER_EVENT || syn_udp_rx_pending(e->rx)) && e->fd >= 0;) {
        int n = syn_udp_recv(e->fd, e->rx);
        if (n <= 0)
            break; /* errors on an unconnected socket are per-datagram ICMP noise */
        for (int i = 0; i < n && e->fd >= 0; i++)
            handle_datagram(e, &e->rx->d[i]);
        total += n;
        if (!syn_udp_rx_more(e->rx))
            break;
    }
    flush_dirty(e);
}

/* ---- QUIC over TCP: the listener and its links (tcplink.h) ---- */

static void flush_dirty(syn_edge *e) {
    /* One write pass per connection fed (a flush may end and destroy only the connection it runs
     * on, which is off the list by then). */
    while (e->dirty) {
        edge_conn *c = e->dirty;
        e->dirty = c->dirty_next;
        c->dirty = 0;
        c->dirty_next = NULL;
        syn_qconn_flush(c->qc);
    }
}

static void link_idle_start(edge_link *el) {
    ev_timer_stop(el->e->loop, &el->idle);
    ev_timer_set(&el->idle, el->e->cfg.handshake_timeout, 0.);
    ev_timer_start(el->e->loop, &el->idle);
}

/* The connection c's packets for the link's path go to el from now on. */
static void link_bind(edge_link *el, edge_conn *c) {
    if (c->el == el)
        return;
    if (c->el) {
        c->el->c = NULL;
        link_idle_start(c->el);
    }
    if (el->c && el->c != c) {
        syn_qconn_set_link(el->c->qc, NULL);
        el->c->el = NULL;
    }
    c->el = el;
    el->c = c;
    ev_timer_stop(el->e->loop, &el->idle);
    syn_qconn_set_link(c->qc, el->l);
}

/* c's connection ends: its link, if any, carries nothing now. */
static void link_unbind(edge_conn *c) {
    edge_link *el = c->el;
    if (!el)
        return;
    if (c->qc)
        syn_qconn_set_link(c->qc, NULL);
    c->el = NULL;
    el->c = NULL;
    link_idle_start(el);
}

static void link_free(edge_link *el) {
    syn_edge *e = el->e;
    if (el->c) {
        if (el->c->qc)
            syn_qconn_set_link(el->c->qc, NULL);
        el->c->el = NULL; /* the connection lives on: the device may come back on another path */
    }
    e->stats.tcp_send_dropped += syn_tcplink_dropped(el->l);
    if (el->up)
        e->stats.tcp_links--;
    else
        e->nlinks_pending--;
    e->nlinks--;
    ev_timer_stop(e->loop, &el->idle);
    syn_list_remove(&e->links, &el->node);
    syn_tcplink_free(el->l);
    free(el);
}

static void el_up(syn_tcplink *l) {
    edge_link *el = syn_tcplink_owner(l);
    el->up = 1;
    el->e->nlinks_pending--;
    el->e->stats.tcp_links++;
    link_idle_start(el); /* until its first packet names a connection */
}

static void el_packet(syn_tcplink *l, const uint8_t *data, size_t len) {
    edge_link *el = syn_tcplink_owner(l);
    syn_edge *e = el->e;
    e->stats.tcp_frames++;
    syn_udp_dgram d = {.data = (uint8_t *)data, .len = len, .ecn = 0};
    d.remote = *syn_tcplink_remote(l);
    e->cur_link = el;
    handle_datagram(e, &d);
    e->cur_link = NULL;
    flush_dirty(e);
}

static void el_writable(syn_tcplink *l) {
    edge_link *el = syn_tcplink_owner(l);
    if (el->c && el->c->qc)
        syn_qconn_link_writable(el->c->qc);
}

static void el_closed(syn_tcplink *l, int err, const char *detail) {
    edge_link *el = syn_tcplink_owner(l);
    syn_edge *e = el->e;
    cJSON *o = event("tcp_closed", el->c);
    if (o) {
        char addr[64];
        syn_sockaddr_str((const struct sockaddr *)&syn_tcplink_remote(l)->ss, addr, sizeof(addr));
        cJSON_AddStringToObject(o, "address", addr);
        cJSON_AddStringToObject(o, "error", err ? synesis_error_name(err) : "none");
        cJSON_AddStringToObject(o, "reason", detail ? detail : "");
        edge_emit(e, o);
    }
    link_free(el);
}

static const syn_tcplink_ops edge_link_ops = {
    .up = el_up,
    .packet = el_packet,
    .writable = el_writable,
    .closed = el_closed,
};

static void link_idle_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    edge_link *el = w->data;
    if (el->c)
        return;
    el->e->stats.tcp_idle_closed++;
    link_free(el);
}

static void tcp_accept_cb(struct ev_loop *loop, ev_io *w, int revents) {
    (void)loop;
    (void)revents;
    syn_edge *e = w->data;
    for (int i = 0; i < 64 && e->tcp_fd >= 0; i++) {
        int fd = accept4(e->tcp_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            break; /* EAGAIN, or a connection reset before we took it: nothing to do */
        e->stats.tcp_accepted++;
        if (e->nlinks >= e->cfg.max_tcp_links || e->nlinks_pending >= e->cfg.max_tcp_handshakes) {
            e->stats.tcp_refused++;
            close(fd);
            continue;
        }
        edge_link *el = calloc(1, sizeof(*el));
        if (!el) {
            close(fd);
            continue;
        }
        el->e = e;
        ev_timer_init(&el->idle, link_idle_cb, 0., 0.);
        el->idle.data = el;
        char detail[SYNESIS_DETAIL_MAX];
        if (syn_tcplink_accept(&el->l, e->loop, fd, e->tcp_ctx, e->cfg.handshake_timeout,
                               &edge_link_ops, el, detail) != 0) {
            emit_simple(e, "error", NULL, "reason", detail);
            free(el);
            continue;
        }
        syn_list_push_front(&e->links, &el->node);
        e->nlinks++;
        e->nlinks_pending++;
    }
}

static uint16_t addr_port(const syn_sockaddr *a) {
    if (a->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
    if (a->ss.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
    return 0;
}

/* UDP ports tried when the TCP port of the same number is taken (an ephemeral listen port). */
#define SYN_EDGE_PORT_TRIES 32

/* Binds the TCP listener on the address of the UDP socket just opened, at port (the UDP socket's
 * port when the configuration names none). Returns the listening socket, or a negative
 * SYNESIS_ERR_SOCKET with detail; *in_use is set when the port was taken. */
static int tcp_bind(syn_edge *e, int *in_use, char *detail) {
    syn_sockaddr a = e->listen_addr;
    uint16_t port = e->cfg.tcp_port ? e->cfg.tcp_port : syn_edge_port(e);
    if (a.ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&a.ss)->sin_port = htons(port);
    else
        ((struct sockaddr_in6 *)&a.ss)->sin6_port = htons(port);
    *in_use = 0;
    int fd = socket(a.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return syn_fail(detail, SYNESIS_ERR_SOCKET, "TCP socket: %s", strerror(errno));
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (a.ss.ss_family == AF_INET6)
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&a.ss, a.len) != 0 || listen(fd, 128) != 0) {
        int err = errno;
        close(fd);
        char addr[64];
        syn_sockaddr_str((const struct sockaddr *)&a.ss, addr, sizeof(addr));
        *in_use = err == EADDRINUSE;
        return syn_fail(detail, SYNESIS_ERR_SOCKET,
                        "TCP listener on %s: %s (edge tcp_port chooses another port, tcp = 0 "
                        "turns it off)",
                        addr, strerror(err));
    }
    return fd;
}

/* Starts accepting on the listener from tcp_bind. */
static void tcp_listen(syn_edge *e, int fd) {
    socklen_t len = sizeof(e->tcp_local.ss);
    if (getsockname(fd, (struct sockaddr *)&e->tcp_local.ss, &len) == 0)
        e->tcp_local.len = len;
    e->tcp_fd = fd;
    ev_io_set(&e->tcp_io, fd, EV_READ);
    ev_io_start(e->loop, &e->tcp_io);
    char addr[64];
    syn_sockaddr_str((const struct sockaddr *)&e->tcp_local.ss, addr, sizeof(addr));
    emit_simple(e, "listening_tcp", NULL, "address", addr);
}

uint16_t syn_edge_tcp_port(const syn_edge *e) {
    if (e->tcp_fd < 0)
        return 0;
    const syn_sockaddr *a = &e->tcp_local;
    if (a->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
}

static int parse_listen(const char *s, syn_sockaddr *out, char *detail) {
    char host[INET6_ADDRSTRLEN + 2];
    const char *colon;
    memset(out, 0, sizeof(*out));
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':' || (size_t)(end - s - 1) >= sizeof(host))
            goto bad;
        memcpy(host, s + 1, (size_t)(end - s - 1));
        host[end - s - 1] = 0;
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || (size_t)(colon - s) >= sizeof(host))
            goto bad;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = 0;
    }
    char *endp;
    long port = strtol(colon + 1, &endp, 10);
    if (!colon[1] || *endp || port < 0 || port > 65535)
        goto bad;
    struct sockaddr_in *in = (struct sockaddr_in *)&out->ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&out->ss;
    if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        out->len = sizeof(*in);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        out->len = sizeof(*in6);
        return 0;
    }
bad:
    return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                    "listen address '%s' is not ADDR:PORT or [IPv6]:PORT", s);
}

int syn_edge_new(syn_edge **out, struct ev_loop *loop, const syn_edge_config *cfg, char *detail) {
    *out = NULL;
    int rv = syn_crypto_init();
    if (rv != 0)
        return syn_fail(detail, rv, "crypto initialisation failed");
    syn_edge *e = calloc(1, sizeof(*e));
    if (!e)
        return syn_fail(detail, SYNESIS_ERR_NOMEM, "out of memory");
    e->loop = loop;
    e->fd = -1;
    e->tcp_fd = -1;
    e->cfg = *cfg;
    e->str_listen = strdup(cfg->listen ? cfg->listen : "");
    e->str_alpn = strdup(cfg->alpn ? cfg->alpn : SYN_ALPN_DEFAULT);
    e->rx = syn_udp_rx_new(SYN_UDP_RX_BYTES_SERVER);
    for (size_t i = 0; i < sizeof(e->src_pattern); i++)
        e->src_pattern[i] = (uint8_t)(i % SRC_PERIOD);
    if (!e->str_listen || !e->str_alpn || !e->rx || syn_cidmap_init(&e->cids) != 0 ||
        RAND_bytes(e->retry_secret, sizeof(e->retry_secret)) != 1) {
        rv = syn_fail(detail, SYNESIS_ERR_NOMEM, "out of memory");
        goto fail;
    }
    e->cfg.listen = e->str_listen;
    e->cfg.alpn = e->str_alpn;
    if ((rv = parse_listen(e->cfg.listen, &e->listen_addr, detail)) != 0)
        goto fail;
    syn_tls_server_config tc = {
        .cert_file = cfg->cert_file,
        .key_file = cfg->key_file,
        .ca_file = cfg->ca_file,
        .alpn = e->cfg.alpn,
        .tickets = cfg->session_tickets,
        .ticket_lifetime = cfg->ticket_lifetime,
        .early_data = cfg->early_data,
        .ticket_cache = cfg->ticket_cache,
    };
    if (cfg->session_tickets < 0 || cfg->session_tickets > 8 || cfg->ticket_lifetime < 0 ||
        !(cfg->new_token_lifetime > 0 && cfg->new_token_lifetime <= 7 * 86400.0)) {
        rv = syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                      "edge session_tickets must be 0..8, ticket_lifetime >= 0, and "
                      "new_token_lifetime above 0 and at most 7 days");
        goto fail;
    }
    if ((rv = syn_tls_server_ctx_new(&e->ssl_ctx, &tc, detail)) != 0)
        goto fail;
    if (cfg->misbehave < SYN_EDGE_BEHAVE || cfg->misbehave > SYN_EDGE_MB_PREFERRED_ADDRESS ||
        cfg->misbehave_code > SYN_APP_CODE_MAX || !(cfg->misbehave_delay >= 0)) {
        rv = syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                      "edge misbehave: not a syn_edge_misbehave, or its code or delay invalid");
        goto fail;
    }
    /* Test only: present this certificate as it is (expired, self-signed, another host's). */
    if (cfg->misbehave_cert_file &&
        (SSL_CTX_use_certificate_chain_file(e->ssl_ctx, cfg->misbehave_cert_file) != 1 ||
         SSL_CTX_use_PrivateKey_file(e->ssl_ctx,
                                     cfg->misbehave_key_file ? cfg->misbehave_key_file
                                                             : cfg->misbehave_cert_file,
                                     SSL_FILETYPE_PEM) != 1)) {
        rv = syn_fail_ossl(detail, SYNESIS_ERR_CRYPTO, "edge misbehave_cert_file %s",
                           cfg->misbehave_cert_file);
        goto fail;
    }
    if (cfg->misbehave == SYN_EDGE_MB_ALPN_OTHER || cfg->misbehave == SYN_EDGE_MB_ALPN_NONE)
        SSL_CTX_set_alpn_select_cb(e->ssl_ctx, mb_alpn_select, e);
    e->cfg.cert_file = e->cfg.key_file = e->cfg.ca_file = NULL; /* loaded: not kept */
    e->cfg.misbehave_cert_file = e->cfg.misbehave_key_file = NULL;
    /* Everything below reaches ngtcp2 as a transport parameter or a duration in nanoseconds. */
    const double year = 365.0 * 86400;
    if (!(cfg->idle_timeout > 0 && cfg->idle_timeout <= year) ||
        !(cfg->handshake_timeout > 0 && cfg->handshake_timeout <= year)) {
        rv = syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                      "edge timeouts must be above 0 and at most one year");
        goto fail;
    }
    if (cfg->congestion_control < 0 || cfg->congestion_control > 2) {
        rv = syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                      "edge congestion_control must be 0 (CUBIC), 1 (BBR) or 2 (Reno)");
        goto fail;
    }
    if (cfg->max_streams_bidi > (1ull << 60) || cfg->max_streams_uni > (1ull << 60)) {
        rv = syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                      "edge stream limits must be at most 2^60");
        goto fail;
    }
    if (cfg->max_conn_buffer < 64 * 1024 || (uint64_t)cfg->max_conn_buffer > NGTCP2_MAX_VARINT ||
        cfg->max_heartbeat_size > UINT32_MAX || !cfg->max_request_size) {
        rv = syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                      "edge sizes: max_conn_buffer 64 KiB to 2^62 - 1, max_heartbeat_size at "
                      "most 2^32 - 1, max_request_size above 0");
        goto fail;
    }
    syn_qconn_settings_default(&e->qset);
    e->qset.idle_timeout_ns = (uint64_t)(cfg->idle_timeout * 1e9);
    e->qset.handshake_timeout_ns = (uint64_t)(cfg->handshake_timeout * 1e9);
    e->qset.keep_alive_ns = 0;
    e->qset.max_streams_bidi = cfg->max_streams_bidi;
    e->qset.max_streams_uni = cfg->max_streams_uni;
    e->qset.stream_window = 1024 * 1024;
    e->qset.cc = cfg->congestion_control;
    e->qset.conn_window = cfg->max_conn_buffer;
    e->qset.early_data = cfg->early_data && cfg->session_tickets;
    if (cfg->misbehave == SYN_EDGE_MB_PREFERRED_ADDRESS) {
        if ((rv = parse_listen(cfg->misbehave_address ? cfg->misbehave_address : "",
                               &e->mb_preferred, detail)) != 0)
            goto fail;
        e->qset.preferred_addr = &e->mb_preferred;
    }
    e->cfg.misbehave_address = NULL;
    if (e->qset.stream_window > e->qset.conn_window)
        e->qset.stream_window = e->qset.conn_window;
    ev_io_init(&e->rio, rio_cb, -1, EV_READ);
    e->rio.data = e;
    ev_io_init(&e->tcp_io, tcp_accept_cb, -1, EV_READ);
    e->tcp_io.data = e;
    if (cfg->tcp && (rv = syn_tcplink_server_ctx_new(&e->tcp_ctx, e->ssl_ctx, detail)) != 0)
        goto fail;
    *out = e;
    return 0;
fail:
    syn_edge_free(e);
    return rv;
}

int syn_edge_start(syn_edge *e, char *detail) {
    if (e->fd >= 0)
        return syn_fail(detail, SYNESIS_ERR_INVALID_STATE, "edge already started");
    /* With an ephemeral port (0) the kernel picks a free UDP port, whose number may be taken on
     * TCP (say, by an outgoing connection's ephemeral port): then another UDP port is tried, so
     * that both listen on one number as documented. */
    int ephemeral = addr_port(&e->listen_addr) == 0 && e->cfg.tcp && !e->cfg.tcp_port;
    int fd, tcp_fd = -1;
    for (int tries = 0;; tries++) {
        fd = syn_udp_open(NULL, 0, (const struct sockaddr *)&e->listen_addr.ss, e->listen_addr.len,
                          1, &e->local, detail);
        if (fd < 0 || !e->cfg.tcp)
            break;
        int in_use;
        tcp_fd = tcp_bind(e, &in_use, detail);
        if (tcp_fd >= 0)
            break;
        close(fd);
        if (!ephemeral || !in_use || tries >= SYN_EDGE_PORT_TRIES)
            return tcp_fd;
    }
    if (fd < 0)
        return fd;
    e->fd = fd;
    if (e->cfg.socket_buffer) {
        int rcv = 0, snd = 0;
        int rv = syn_udp_set_buffers(fd, e->cfg.socket_buffer, &rcv, &snd);
        cJSON *o = event("socket_buffers", NULL);
        if (o) {
            cJSON_AddNumberToObject(o, "requested", (double)e->cfg.socket_buffer);
            cJSON_AddNumberToObject(o, "rcvbuf", rcv);
            cJSON_AddNumberToObject(o, "sndbuf", snd);
            if (rv != 0)
                cJSON_AddStringToObject(o, "error", strerror(-rv));
            edge_emit(e, o);
        }
    }
    /* Restart on the same port after a stop. */
    if (e->local.ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&e->listen_addr.ss)->sin_port =
            ((struct sockaddr_in *)&e->local.ss)->sin_port;
    else
        ((struct sockaddr_in6 *)&e->listen_addr.ss)->sin6_port =
            ((struct sockaddr_in6 *)&e->local.ss)->sin6_port;
    ev_io_set(&e->rio, fd, EV_READ);
    ev_io_start(e->loop, &e->rio);
    char addr[64];
    syn_sockaddr_str((const struct sockaddr *)&e->local.ss, addr, sizeof(addr));
    emit_simple(e, "listening", NULL, "address", addr);
    if (tcp_fd >= 0)
        tcp_listen(e, tcp_fd);
    return 0;
}

void syn_edge_stop(syn_edge *e, int graceful) {
    while (!syn_list_empty(&e->conns)) {
        edge_conn *c = SYN_LIST_FIRST(&e->conns, edge_conn, link);
        if (graceful) {
            syn_qconn_close(c->qc, 0, "edge shutdown"); /* ends in ec_closed -> destroy */
            if (SYN_LIST_FIRST(&e->conns, edge_conn, link) == c)
                conn_destroy(e, c);
        } else {
            e->stats.closed++;
            emit_simple(e, "close", c, "reason", "edge stopped");
            conn_destroy(e, c);
        }
    }
    while (!syn_list_empty(&e->closing)) /* no socket to answer from: the periods end with it */
        closing_free(e, SYN_LIST_FIRST(&e->closing, edge_conn, link));
    while (!syn_list_empty(&e->links))
        link_free(SYN_LIST_FIRST(&e->links, edge_link, node));
    if (e->tcp_fd >= 0) {
        ev_io_stop(e->loop, &e->tcp_io);
        close(e->tcp_fd);
        e->tcp_fd = -1;
    }
    if (e->fd >= 0) {
        ev_io_stop(e->loop, &e->rio);
        close(e->fd);
        e->fd = -1;
        emit_simple(e, "stopped", NULL, NULL, NULL);
    }
}

uint16_t syn_edge_port(const syn_edge *e) { return addr_port(&e->local); }

void syn_edge_get_stats(const syn_edge *e, syn_edge_stats *out) {
    *out = e->stats;
    out->cids = syn_cidmap_count(&e->cids);
    out->tcp_handshaking = e->nlinks_pending;
    out->handshaking = e->handshaking;
    edge_link *el;
    SYN_LIST_FOREACH(el, &e->links, edge_link, node) {
        size_t q = syn_tcplink_queued(el->l);
        out->tcp_queued += q;
        if (q > out->tcp_queued_max)
            out->tcp_queued_max = q;
        out->tcp_send_dropped += syn_tcplink_dropped(el->l);
    }
}

const char *syn_edge_last_device(const syn_edge *e) { return e->last_device; }

const char *syn_edge_last_cert(const syn_edge *e) { return e->last_cert; }

const char *syn_edge_last_bad_frame(const syn_edge *e) { return e->last_bad_frame; }

int syn_edge_device_info(const syn_edge *e, const char *device_id, syn_edge_device *out) {
    for (size_t i = 0; i < e->ndevices; i++) {
        if (strcmp(e->devices[i].id, device_id) == 0) {
            *out = e->devices[i].info;
            return 0;
        }
    }
    return -1;
}

void syn_edge_set_handler(syn_edge *e, syn_edge_handler fn, void *user_data) {
    e->handler = fn;
    e->handler_ud = user_data;
}

/* Whether every connection that was draining has closed: then the done callback, once. */
static void drain_progress(syn_edge *e) {
    if (!e->draining || e->drain_done)
        return;
    edge_conn *c;
    SYN_LIST_FOREACH(c, &e->conns, edge_conn, link) {
        if (c->draining)
            return;
    }
    ev_timer_stop(e->loop, &e->drain_check);
    ev_timer_set(&e->drain_check, 0., 0.);
    ev_timer_start(e->loop, &e->drain_check);
}

static void drain_end(syn_edge *e, int timed_out) {
    if (e->drain_done)
        return;
    e->drain_done = 1;
    ev_timer_stop(e->loop, &e->drain_timer);
    ev_timer_stop(e->loop, &e->drain_check);
    cJSON *o = event("drained", NULL);
    if (o) {
        cJSON_AddBoolToObject(o, "grace_expired", timed_out);
        edge_emit(e, o);
    }
    if (e->drained_cb)
        e->drained_cb(e, e->drained_ud);
}

static void drain_check_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    syn_edge *e = w->data;
    edge_conn *c;
    SYN_LIST_FOREACH(c, &e->conns, edge_conn, link) {
        if (c->draining)
            return;
    }
    drain_end(e, 0);
}

/* The grace period is over: every connection still draining is asked to move now; requests still
 * in flight on them end with the connection. */
static void drain_timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    syn_edge *e = w->data;
    edge_conn *c, *next;
    SYN_LIST_FOREACH_SAFE(c, next, &e->conns, edge_conn, link) {
        if (c->draining) {
            emit_simple(e, "move", c, "reason", "drain grace period over");
            syn_qconn_close(c->qc, SYN_APP_MOVE, "edge draining");
        }
    }
    drain_end(e, 1);
}

void syn_edge_drain(syn_edge *e, double grace, int refuse_new, syn_edge_drained_fn done,
                    void *user_data) {
    e->draining = 1;
    e->drain_done = 0;
    e->drain_refuse_new = refuse_new;
    e->drained_cb = done;
    e->drained_ud = user_data;
    ev_timer_init(&e->drain_timer, drain_timer_cb, grace > 0 ? grace : 0., 0.);
    e->drain_timer.data = e;
    ev_timer_init(&e->drain_check, drain_check_cb, 0., 0.);
    e->drain_check.data = e;
    size_t n = 0;
    edge_conn *c;
    SYN_LIST_FOREACH(c, &e->conns, edge_conn, link) {
        c->draining = 1;
        n++;
    }
    cJSON *o = event("drain", NULL);
    if (o) {
        cJSON_AddNumberToObject(o, "connections", (double)n);
        cJSON_AddNumberToObject(o, "grace_s", grace);
        edge_emit(e, o);
    }
    ev_timer_start(e->loop, &e->drain_timer);
    edge_conn *next;
    SYN_LIST_FOREACH_SAFE(c, next, &e->conns, edge_conn, link) {
        conn_drain_check(c);
    }
    drain_progress(e);
}

void syn_edge_undrain(syn_edge *e) {
    if (!e->draining)
        return;
    e->draining = 0;
    e->drain_done = 1;
    ev_timer_stop(e->loop, &e->drain_timer);
    ev_timer_stop(e->loop, &e->drain_check);
}

void syn_edge_kick(syn_edge *e, const char *device_id) {
    edge_conn *c, *next;
    SYN_LIST_FOREACH_SAFE(c, next, &e->conns, edge_conn, link) {
        if (strcmp(c->device_id, device_id) == 0)
            syn_qconn_close(c->qc, SYN_APP_INTERNAL, "kicked");
    }
}

void syn_edge_free(syn_edge *e) {
    if (!e)
        return;
    syn_edge_undrain(e);
    syn_edge_stop(e, 0);
    if (e->ssl_ctx)
        SSL_CTX_free(e->ssl_ctx);
    if (e->tcp_ctx)
        SSL_CTX_free(e->tcp_ctx);
    syn_cidmap_free(&e->cids);
    free(e->devices);
    syn_udp_rx_free(e->rx);
    free(e->str_listen);
    free(e->str_alpn);
    free(e);
}

syn_qconn *syn_edge_newest_qconn(const syn_edge *e) {
    return syn_list_empty(&e->conns) ? NULL : SYN_LIST_FIRST(&e->conns, edge_conn, link)->qc;
}

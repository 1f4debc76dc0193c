/* The CloudTunnel: lifecycle, state machine, connection attempts and reconnection. */
#include "tunnel_int.h"
#include "tunnel_test.h"

#include "tls.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_URL "quic://superinstance.ai:443"

static void config_defaults(synesis_tunnel_config *cfg) {
    memset(cfg, 0, sizeof(*cfg));
    cfg->struct_size = sizeof(*cfg);
    cfg->cloud_url = DEFAULT_URL;
    cfg->server_name = NULL;
    cfg->alpn = SYN_ALPN_DEFAULT;
    cfg->cert_path = "device.pem";
    cfg->key_path = "device.key";
    cfg->use_system_trust = 1;
    cfg->keep_alive_interval = 10.0;
    cfg->idle_timeout = 60.0;
    cfg->handshake_timeout = 10.0;
    cfg->max_udp_payload = 0;
    cfg->pmtud = 1;
    cfg->heartbeat_interval = 30.0;
    cfg->vitals_disk_path = "/";
    cfg->max_heartbeat_size = 64 * 1024;
    cfg->reconnect_initial_delay = 1.0;
    cfg->reconnect_max_delay = 60.0;
    cfg->reconnect_multiplier = 2.0;
    cfg->reconnect_max_attempts = 10;
    cfg->reconnect_jitter = 0.1;
    cfg->reconnect_stable_period = 0.0;
    cfg->retry_initial_connect = 0;
    cfg->max_response_size = 16u * 1024 * 1024;
    cfg->request_timeout = 30.0;
    cfg->max_queued_requests = 10000;
    cfg->stream_send_buffer = 256 * 1024;
    cfg->stream_recv_window = 1024 * 1024;
    cfg->healthy_latency_ms = 500;
    cfg->log_level = SYNESIS_LOG_INFO;
    cfg->close_linger = 1.0;
    cfg->max_queued_request_bytes = SYN_DEFAULT_MAX_QUEUED_REQUEST_BYTES;
    cfg->resumption = 1;
    cfg->early_data = 1;
    cfg->proxy = NULL;
    cfg->udp_fallback_timeout = 3.0;
    cfg->udp_reprobe_interval = 30.0;
    cfg->transport = SYNESIS_TRANSPORT_AUTO;
    cfg->tcp_fallback_after = 1;
    cfg->tcp_port = 0;
}

SYNESIS_API const char *synesis_transport_name(synesis_transport transport) {
    switch (transport) {
    case SYNESIS_TRANSPORT_AUTO:
        return "auto";
    case SYNESIS_TRANSPORT_UDP:
        return "udp";
    case SYNESIS_TRANSPORT_TCP:
        return "tcp";
    }
    return "unknown";
}

SYNESIS_API void synesis_tunnel_config_init_sized(synesis_tunnel_config *cfg, size_t size) {
    synesis_tunnel_config d;
    config_defaults(&d);
    syn_struct_init(cfg, size, &d, sizeof(d));
}

SYNESIS_API int synesis_tunnel_config_low_bandwidth(synesis_tunnel_config *cfg) {
    /* Every member set here but the last is in the 1.0 config: a struct from an older header
     * gets what it has. */
    if (!cfg || cfg->struct_size < offsetof(synesis_tunnel_config, heartbeat_interval) +
                                       sizeof(cfg->heartbeat_interval))
        return SYNESIS_ERR_INVALID_ARGUMENT;
    cfg->keep_alive_interval = SYNESIS_LOW_BANDWIDTH_KEEP_ALIVE;
    cfg->idle_timeout = SYNESIS_LOW_BANDWIDTH_IDLE_TIMEOUT;
    cfg->heartbeat_interval = 600.0;
    if (cfg->struct_size >= offsetof(synesis_tunnel_config, heartbeat_changed_vitals) +
                                sizeof(cfg->heartbeat_changed_vitals))
        cfg->heartbeat_changed_vitals = 1;
    return 0;
}

SYNESIS_API void synesis_tunnel_callbacks_init_sized(synesis_tunnel_callbacks *cb, size_t size) {
    synesis_tunnel_callbacks d = {.struct_size = sizeof(d)};
    syn_struct_init(cb, size, &d, sizeof(d));
}

SYNESIS_API const char *synesis_state_name(synesis_state_kind kind) {
    switch (kind) {
    case SYNESIS_STATE_DISCONNECTED:
        return "Disconnected";
    case SYNESIS_STATE_CONNECTING:
        return "Connecting";
    case SYNESIS_STATE_CONNECTED:
        return "Connected";
    case SYNESIS_STATE_RECONNECTING:
        return "Reconnecting";
    case SYNESIS_STATE_FAILED:
        return "Failed";
    }
    return "Unknown";
}

void syn_tunnel_log(synesis_tunnel *t, synesis_log_level level, const char *fmt, ...) {
    if (!t->cfg.log || level > t->cfg.log_level)
        return;
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    t->cfg.log(level, msg, t->cfg.log_user_data);
}

/* ---- re-entrancy: free from inside callbacks is deferred to the outermost frame ---- */

static void really_free(synesis_tunnel *t);
static void cancel_everything(synesis_tunnel *t);

void syn_tunnel_enter(synesis_tunnel *t) { syn_hold_enter(&t->hold); }

int syn_tunnel_leave(synesis_tunnel *t) {
    if (syn_hold_leave(&t->hold) && syn_hold_dying(&t->hold)) {
        really_free(t);
        return 1;
    }
    return 0;
}

int syn_tunnel_ready(const synesis_tunnel *t) {
    return t->state.kind == SYNESIS_STATE_CONNECTED && t->qc && !syn_hold_dying(&t->hold) &&
           syn_qconn_handshake_completed(t->qc);
}

/* ---- state machine ---- */

static int transition_valid(const synesis_tunnel *t, synesis_state_kind from,
                            const synesis_tunnel_state *to) {
    switch (from) {
    case SYNESIS_STATE_DISCONNECTED:
        return to->kind == SYNESIS_STATE_CONNECTING;
    case SYNESIS_STATE_CONNECTING:
        return to->kind == SYNESIS_STATE_CONNECTED || to->kind == SYNESIS_STATE_FAILED ||
               to->kind == SYNESIS_STATE_DISCONNECTED /* disconnect() while connecting */ ||
               (to->kind == SYNESIS_STATE_RECONNECTING && t->cfg.retry_initial_connect &&
                to->attempt == 1);
    case SYNESIS_STATE_CONNECTED:
        return to->kind == SYNESIS_STATE_RECONNECTING || to->kind == SYNESIS_STATE_DISCONNECTED;
    case SYNESIS_STATE_RECONNECTING:
        return to->kind == SYNESIS_STATE_CONNECTED || to->kind == SYNESIS_STATE_FAILED ||
               to->kind == SYNESIS_STATE_DISCONNECTED /* disconnect() while reconnecting */ ||
               (to->kind == SYNESIS_STATE_RECONNECTING && to->attempt == t->state.attempt + 1);
    case SYNESIS_STATE_FAILED:
        return to->kind == SYNESIS_STATE_CONNECTING;
    }
    return 0;
}

static void compact_subs(synesis_tunnel *t) {
    size_t j = 0;
    for (size_t i = 0; i < t->nsubs; i++)
        if (t->subs[i].fn)
            t->subs[j++] = t->subs[i];
    t->nsubs = j;
}

static void notify(synesis_tunnel *t, const synesis_tunnel_state *old,
                   const synesis_tunnel_state *now) {
    if (t->cb.on_state && !syn_hold_dying(&t->hold))
        t->cb.on_state(t, old, now, t->user_data);
    for (size_t i = 0; i < t->nsubs && !syn_hold_dying(&t->hold); i++)
        if (t->subs[i].fn)
            t->subs[i].fn(t, old, now, t->subs[i].user_data);
}

/* Applies a transition if valid and notifies. Returns 0, or SYNESIS_ERR_INVALID_STATE (logged).
 * A transition made from inside a state callback is applied at once and notified after the one
 * being delivered, so every subscriber sees the transitions in order. The caller holds
 * syn_tunnel_enter(). */
static int set_state(synesis_tunnel *t, const synesis_tunnel_state *next) {
    if (!transition_valid(t, t->state.kind, next)) {
        syn_tunnel_log(t, SYNESIS_LOG_WARN, "invalid state transition refused: %s -> %s",
                       synesis_state_name(t->state.kind), synesis_state_name(next->kind));
        return SYNESIS_ERR_INVALID_STATE;
    }
    /* The states handed to the callbacks carry their details in buffers of their own, on this
     * frame: the tunnel's may change under a callback. */
    char old_detail[SYN_STATE_DETAIL], next_detail[SYN_STATE_DETAIL];
    synesis_tunnel_state old = t->state;
    syn_copy_str(old_detail, sizeof(old_detail), t->state.error_detail);
    old.error_detail = old_detail;
    syn_copy_str(next_detail, sizeof(next_detail), next->error_detail);
    t->state = *next;
    syn_copy_str(t->state_detail, sizeof(t->state_detail), next_detail);
    t->state.error_detail = t->state_detail;
    /* An outage ends when Reconnecting is left for anything else (Connected, Failed, or
     * Disconnected by the application): its time counts in time_disconnected either way. */
    if (old.kind == SYNESIS_STATE_RECONNECTING && next->kind != SYNESIS_STATE_RECONNECTING &&
        t->outage_started_ms) {
        t->stats.time_disconnected += (double)((int64_t)syn_wall_ms() - t->outage_started_ms) / 1e3;
        t->outage_started_ms = 0;
    }
    syn_tunnel_log(t, SYNESIS_LOG_INFO, "state %s -> %s%s%s", synesis_state_name(old.kind),
                   synesis_state_name(next->kind), next_detail[0] ? ": " : "", next_detail);
    if (t->notifying) {
        syn_state_pair *q =
            syn_grow(t->queued, &t->queued_cap, t->nqueued + 1, sizeof(*q), 2, SYN_STATE_QUEUE);
        if (q) {
            t->queued = q;
            syn_state_pair *e = &t->queued[t->nqueued++];
            e->s[0] = old;
            e->s[1] = t->state;
            syn_copy_str(e->detail[0], sizeof(e->detail[0]), old_detail);
            syn_copy_str(e->detail[1], sizeof(e->detail[1]), next_detail);
        } else {
            syn_tunnel_log(t, SYNESIS_LOG_WARN,
                           "state notifications nested too deeply (or out of memory): one "
                           "dropped");
        }
        return 0;
    }
    t->notifying++;
    synesis_tunnel_state now = t->state;
    now.error_detail = next_detail;
    notify(t, &old, &now);
    for (size_t i = 0; i < t->nqueued && !syn_hold_dying(&t->hold); i++) {
        /* Copies: a callback may queue more and move the array. */
        synesis_tunnel_state o = t->queued[i].s[0], n = t->queued[i].s[1];
        syn_copy_str(old_detail, sizeof(old_detail), t->queued[i].detail[0]);
        syn_copy_str(next_detail, sizeof(next_detail), t->queued[i].detail[1]);
        o.error_detail = old_detail;
        n.error_detail = next_detail;
        notify(t, &o, &n);
    }
    free(t->queued); /* rare: not kept */
    t->queued = NULL;
    t->nqueued = t->queued_cap = 0;
    t->notifying--;
    compact_subs(t);
    /* Requests waiting for a connection learn what became of it. */
    if (!syn_hold_dying(&t->hold)) {
        if (t->state.kind == SYNESIS_STATE_FAILED)
            syn_requests_fail_waiting(t, t->state.error, t->state.error_detail, 1);
        else if (t->state.kind == SYNESIS_STATE_DISCONNECTED)
            syn_requests_fail_waiting(t, SYNESIS_ERR_NOT_CONNECTED, "tunnel disconnected", 1);
        else if (t->state.kind == SYNESIS_STATE_RECONNECTING)
            syn_requests_fail_waiting(t, SYNESIS_ERR_CONNECTION_LOST, t->state.error_detail, 0);
    }
    return 0;
}

/* detail is borrowed: it must stay valid until s is handed to set_state() (which copies it). */
static void make_state(synesis_tunnel_state *s, synesis_state_kind kind, int err,
                       const char *detail) {
    memset(s, 0, sizeof(*s));
    s->struct_size = sizeof(*s);
    s->kind = kind;
    s->entered_ms = (int64_t)syn_wall_ms();
    s->error = err;
    s->error_detail = detail ? detail : "";
}

void syn_tunnel_get_wakes(const synesis_tunnel *t, syn_tunnel_wakes *out) {
    *out = t->wakes;
    memset(&out->qc, 0, sizeof(out->qc));
    out->pings_recv = 0;
    if (t->qc) {
        syn_qconn_stats ci;
        syn_qconn_get_wakes(t->qc, &out->qc);
        syn_qconn_get_stats(t->qc, &ci);
        out->pings_recv = ci.ping_recv;
    }
}

int syn_tunnel_try_transition(synesis_tunnel *t, synesis_state_kind kind, uint32_t attempt) {
    synesis_tunnel_state s;
    make_state(&s, kind, 0, NULL);
    s.attempt = attempt;
    syn_tunnel_enter(t);
    int rv = set_state(t, &s);
    syn_tunnel_leave(t);
    return rv;
}

/* ---- the close linger: a disconnected connection finishing in the background ---- */

typedef struct syn_linger {
    synesis_tunnel *t; /* NULL once the tunnel let go (free) */
    struct ev_loop *loop;
    syn_qconn *qc;
    syn_hold hold; /* held by linger_rio_cb; dying: the connection ended meanwhile */
    int fd;        /* owned by qc (syn_qconn_take_fd) */
    syn_sockaddr local;
    ev_io rio;
    syn_link link; /* on t->lingers */
    /* LINGER: closing after disconnect(). RETIRING: an old identity's connection after a
     * rotation, still carrying its requests and streams (at most grace, its timer). PENDING: the
     * new identity's connection while it handshakes (t->rot.pending). */
    enum { LINGER, RETIRING, PENDING } kind;
    ev_timer grace;
    /* The TCP link the connection runs on (QUIC over TCP; fd is then -1 or a UDP probe's socket),
     * owned here (side_link_ops). A PENDING connection over TCP has no qc until the link is up. */
    syn_tcplink *tl;
} syn_linger;

/* ---- I/O buffers: taken when traffic needs them, released when the tunnel is quiet ---- */

/* The receive buffers for a read event, allocated if the tunnel holds none (NULL when out of
 * memory). */
static syn_udp_rx *rx_take(synesis_tunnel *t) {
    ev_tstamp now = ev_now(t->loop);
    if (now - t->rx_used_at >= SYN_TUNNEL_BUFFER_IDLE)
        t->rx_run = 0; /* a quiet spell before this one */
    if (t->rx_run < SYN_TUNNEL_SHORT_RUN + 1)
        t->rx_run++;
    t->rx_used_at = now;
    if (!t->rx) {
        t->rx = syn_udp_rx_new(SYN_UDP_RX_BYTES_CLIENT);
        if (!t->rx) {
            if (!t->rx_oom)
                syn_tunnel_log(t, SYNESIS_LOG_WARN,
                               "receive buffers: out of memory (reading datagram by datagram)");
            t->rx_oom = 1;
            return NULL;
        }
        if (t->rx_oom && t->fd >= 0)
            (void)syn_udp_set_gro(t->fd, 1); /* turned off by rx_read() meanwhile */
        t->rx_oom = 0;
        t->rx_allocs++;
    }
    return t->rx;
}

/* Without receive buffers (out of memory), a read event still reads: one message at a time into
 * this, on the stack, with GRO off on the socket meanwhile (a train queued before is lost, and QUIC
 * sends it again datagram by datagram), so the connection and its transfers go on. */
#define SYN_RX_FALLBACK_DGRAMS 8
typedef struct rx_fallback {
    uint8_t buf[SYN_UDP_MAX_PAYLOAD + 1];
    syn_udp_dgram d[SYN_RX_FALLBACK_DGRAMS];
    int gro_off; /* set on the socket in this read event */
} rx_fallback;

/* One read into rx, or fb without rx: returns syn_udp_recv()'s result, the datagrams in *d. */
static int rx_read(int fd, syn_udp_rx *rx, rx_fallback *fb, const syn_udp_dgram **d) {
    if (rx) {
        *d = rx->d;
        return syn_udp_recv(fd, rx);
    }
    if (!fb->gro_off) {
        (void)syn_udp_set_gro(fd, 0); /* back on once the buffers are (rx_take) */
        fb->gro_off = 1;
    }
    *d = fb->d;
    return syn_udp_recv_into(fd, fb->buf, sizeof(fb->buf), fb->d, SYN_RX_FALLBACK_DGRAMS);
}

/* Releases the receive buffers and the large send buffers of the live and lingering connections.
 * Returns 1 when nothing is left to release (a send batch waiting for its socket keeps its
 * buffer). */
static int buffers_release(synesis_tunnel *t) {
    if (t->rx) {
        syn_udp_rx_free(t->rx); /* anything not handed out is stale: its reader is gone */
        t->rx = NULL;
        t->rx_frees++;
    }
    int done = 1;
    if (t->qc && !syn_qconn_trim(t->qc))
        done = 0;
    syn_linger *l;
    SYN_LIST_FOREACH(l, &t->lingers, syn_linger, link)
        if (l->qc && !syn_qconn_trim(l->qc))
            done = 0;
    return done;
}

/* After a read event (the tunnel entered once: no nested loop run is using the buffers). A short
 * exchange after a quiet spell (at most SYN_TUNNEL_SHORT_RUN read events, each within
 * SYN_TUNNEL_BUFFER_IDLE of the one before: a PING and the ACK of ours, a heartbeat's ACK, the
 * answer to a lone request) releases the buffers at its end, once nothing of ours is left
 * unacknowledged: an idle tunnel's periodic traffic then costs no wake-up of its own, and at most
 * SYN_TUNNEL_SHORT_RUN allocations per quiet spell. Longer traffic keeps them; buf_timer releases
 * them once no datagram has come for SYN_TUNNEL_BUFFER_IDLE (one wake-up at the end of a busy
 * spell). */
static void buffers_after_read(synesis_tunnel *t) {
    if (syn_hold_dying(&t->hold) || t->hold.depth != 1 || (!t->rx && !t->qc))
        return;
    if (t->rx_run <= SYN_TUNNEL_SHORT_RUN && syn_list_empty(&t->lingers)) {
        syn_qconn_stats ci = {0};
        if (t->qc)
            syn_qconn_get_stats(t->qc, &ci);
        if (!ci.bytes_in_flight && buffers_release(t)) {
            ev_timer_stop(t->loop, &t->buf_timer); /* an earlier event of the run started it */
            return;
        }
    }
    if (!ev_is_active(&t->buf_timer)) {
        ev_timer_set(&t->buf_timer, SYN_TUNNEL_BUFFER_IDLE, 0.);
        ev_timer_start(t->loop, &t->buf_timer);
    }
}

static void buf_timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)revents;
    synesis_tunnel *t = w->data;
    t->wakes.buffer_timer++;
    ev_tstamp quiet = ev_now(loop) - t->rx_used_at;
    /* (Never under one of our callbacks: a nested loop run may be using the buffers.) */
    if (quiet >= SYN_TUNNEL_BUFFER_IDLE * 0.99 && !syn_hold_busy(&t->hold) && buffers_release(t))
        return;
    ev_timer_set(
        w, quiet < SYN_TUNNEL_BUFFER_IDLE ? SYN_TUNNEL_BUFFER_IDLE - quiet : SYN_TUNNEL_BUFFER_IDLE,
        0.);
    ev_timer_start(loop, w);
}

static void linger_unlink(syn_linger *l) {
    if (!l->t)
        return;
    syn_list_remove(&l->t->lingers, &l->link);
    l->t = NULL;
}

static void linger_closed(syn_qconn *qc, int err, const char *detail) {
    syn_linger *l = syn_qconn_owner(qc);
    synesis_tunnel *t = l->t;
    if (l->tl) { /* its CONNECTION_CLOSE is on the link already: close_notify follows it */
        syn_qconn_set_link(qc, NULL);
        syn_tcplink_free(l->tl);
        l->tl = NULL;
    }
    ev_io_stop(l->loop, &l->rio);
    ev_timer_stop(l->loop, &l->grace);
    if (t && l->kind == RETIRING) {
        /* Requests and streams still on the old identity's connection end with it. */
        syn_tunnel_enter(t);
        syn_requests_conn_lost_on(t, qc, SYNESIS_ERR_CONNECTION_LOST,
                                  "the old identity's connection ended");
        syn_streams_fail_on(t, qc, SYNESIS_ERR_CONNECTION_LOST,
                            "the old identity's connection ended");
        syn_tunnel_leave(t);
    }
    linger_unlink(l);
    syn_qconn_free(qc);             /* deferred until the driver unwinds; closes the socket */
    if (syn_hold_release(&l->hold)) /* else linger_rio_cb frees it */
        free(l);
    if (!t)
        return;
    syn_tunnel_enter(t);
    syn_tunnel_log(t, SYNESIS_LOG_DEBUG, "lingering connection ended%s%s", err ? ": " : " (closed)",
                   err ? detail : "");
    /* Heartbeats it had not got acknowledged by now are lost. */
    syn_heartbeat_conn_lost(t, qc, err ? detail : "closed after the linger");
    syn_tunnel_leave(t);
}

static void linger_log(syn_qconn *qc, synesis_log_level level, const char *msg) {
    syn_linger *l = syn_qconn_owner(qc);
    if (l->t)
        syn_tunnel_log(l->t, level, "quic (closing): %s", msg);
}

/* Stream events of a lingering connection: its requests, streams and reports are over (their
 * objects detached); only heartbeats still in flight learn their outcome. */
static void linger_stream_reset(syn_qconn *qc, syn_qstream *s, uint64_t app_code, int stop) {
    syn_linger *l = syn_qconn_owner(qc);
    syn_tobj *o = syn_qstream_user(s);
    if (l->t && o && o->h->reset)
        o->h->reset(o, s, app_code, stop);
}

static void linger_stream_close(syn_qconn *qc, syn_qstream *s, uint64_t app_code, int reset) {
    syn_linger *l = syn_qconn_owner(qc);
    syn_tobj *o = syn_qstream_user(s);
    if (l->t && o && o->h->close)
        o->h->close(o, s, app_code, reset);
}

static const syn_qconn_ops linger_qc_ops = {
    .stream_reset = linger_stream_reset,
    .stream_close = linger_stream_close,
    .closed = linger_closed,
    .log = linger_log,
};

static void linger_rio_cb(struct ev_loop *loop, ev_io *w, int revents) {
    (void)loop;
    (void)revents;
    syn_linger *l = w->data;
    synesis_tunnel *t = l->t;
    if (!t)
        return;
    syn_qconn *qc = l->qc;
    /* Heartbeat outcomes reach the application from here: a free() it makes waits for us. */
    syn_tunnel_enter(t);
    syn_hold_enter(&l->hold);
    /* The tunnel's receive buffers are free here (callbacks of different sockets never nest). */
    syn_udp_rx *rx = rx_take(t);
    rx_fallback fb;
    fb.gro_off = 0;
    for (int total = 0; (total < SYN_UDP_RX_MAX_PER_EVENT || (rx && syn_udp_rx_pending(rx))) &&
                        !syn_hold_dying(&l->hold) && !syn_hold_dying(&t->hold);) {
        const syn_udp_dgram *d;
        int n = rx_read(l->fd, rx, &fb, &d);
        if (n == -EMSGSIZE)
            continue;
        if (n < 0) {
            if (n == -ECONNREFUSED)
                syn_qconn_abort(qc, SYNESIS_ERR_CONNECTION_LOST, "the edge went away");
            break;
        }
        if (n == 0)
            break;
        for (int i = 0; i < n && !syn_hold_dying(&l->hold) && !syn_hold_dying(&t->hold); i++)
            syn_qconn_recv(qc, &l->local, &d[i].remote, d[i].ecn, d[i].data, d[i].len);
        total += n;
        if (rx && !syn_udp_rx_more(rx))
            break;
    }
    if (!syn_hold_dying(&l->hold))
        syn_qconn_flush(qc); /* may end the linger */
    buffers_after_read(t);
    if (syn_hold_leave(&l->hold) && syn_hold_dying(&l->hold))
        free(l);
    syn_tunnel_leave(t); /* may free t (and end the linger) */
}

/* ---- the links of the side connections (lingering, retiring, pending) ---- */

static void pending_failed(syn_linger *p, int err, const char *detail);
static void side_link_up(syn_tcplink *tl);

/* A frame for the side connection: as a datagram on its socket (linger_rio_cb). */
static void side_link_packet(syn_tcplink *tl, const uint8_t *data, size_t len) {
    syn_linger *l = syn_tcplink_owner(tl);
    synesis_tunnel *t = l->t;
    if (!t || !l->qc)
        return;
    syn_tunnel_enter(t);
    syn_hold_enter(&l->hold);
    syn_qconn_recv(l->qc, syn_tcplink_local(tl), syn_tcplink_remote(tl), 0, data, len);
    if (!syn_hold_dying(&l->hold))
        syn_qconn_schedule(l->qc);
    if (syn_hold_leave(&l->hold) && syn_hold_dying(&l->hold))
        free(l);
    syn_tunnel_leave(t);
}

static void side_link_writable(syn_tcplink *tl) {
    syn_linger *l = syn_tcplink_owner(tl);
    if (l->qc && syn_qconn_link(l->qc) == tl)
        syn_qconn_link_writable(l->qc);
}

/* The side connection's link is down: so is the connection (or the rotation, before its QUIC
 * handshake began). */
static void side_link_closed(syn_tcplink *tl, int err, const char *detail) {
    syn_linger *l = syn_tcplink_owner(tl);
    if (l->qc && syn_qconn_link(l->qc) == tl)
        syn_qconn_set_link(l->qc, NULL);
    l->tl = NULL;
    syn_tcplink_free(tl);
    char d[SYNESIS_DETAIL_MAX];
    snprintf(d, sizeof(d), "TCP link: %s", detail && detail[0] ? detail : "closed by the edge");
    if (l->qc)
        syn_qconn_abort(l->qc, err ? err : SYNESIS_ERR_CONNECTION_LOST, d); /* its closed op */
    else
        pending_failed(l, err ? err : SYNESIS_ERR_CONNECTION_LOST, d);
}

static const syn_tcplink_ops side_link_ops = {
    .up = side_link_up,
    .packet = side_link_packet,
    .writable = side_link_writable,
    .closed = side_link_closed,
};

/* The side connection l takes the link tl (NULL: none). */
static void side_take_link(syn_linger *l, syn_tcplink *tl) {
    l->tl = tl;
    if (!tl)
        return;
    syn_tcplink_set_owner(tl, l);
    syn_tcplink_set_ops(tl, &side_link_ops);
}

/* The tunnel's link that qc runs on (the current one, or the old one in its grace), handed over:
 * the tunnel forgets it. NULL when qc has none of the tunnel's. */
static syn_tcplink *link_release(synesis_tunnel *t, syn_qconn *qc) {
    syn_tcplink *tl = syn_qconn_link(qc);
    if (tl && tl == t->link) {
        t->link = NULL;
    } else if (tl && tl == t->old_link) {
        t->old_link = NULL;
        ev_timer_stop(t->loop, &t->link_grace);
    } else {
        tl = NULL;
    }
    return tl;
}

/* A side connection with no QUIC connection yet (a rotation's link still connecting) goes. */
static void side_drop(syn_linger *l) {
    linger_unlink(l);
    ev_timer_stop(l->loop, &l->grace);
    syn_tcplink_free(l->tl);
    l->tl = NULL;
    if (syn_hold_release(&l->hold))
        free(l);
}

/* Hands the live connection to a linger, with its socket or its link (QUIC over TCP: the
 * CONNECTION_CLOSE goes on the link once everything is acknowledged, then the link closes).
 * Returns 0, or -1 (the caller closes it at once). */
static int linger_start(synesis_tunnel *t, syn_qconn *qc) {
    syn_linger *l = calloc(1, sizeof(*l));
    if (!l)
        return -1;
    l->t = t;
    l->loop = t->loop;
    l->qc = qc;
    l->fd = t->fd;
    l->local = t->local;
    ev_io_init(&l->rio, linger_rio_cb, l->fd, EV_READ);
    l->rio.data = l;
    ev_timer_init(&l->grace, NULL, 0., 0.);
    if (t->fd >= 0) {
        ev_io_stop(t->loop, &t->rio);
        ev_io_start(t->loop, &l->rio);
        syn_qconn_take_fd(qc);
    }
    side_take_link(l, link_release(t, qc));
    syn_list_push_front(&t->lingers, &l->link);
    t->fd = -1;
    syn_qconn_set_owner(qc, &linger_qc_ops, l);
    return 0;
}

/* free(): every linger ends now, its CONNECTION_CLOSE sent (after the ACK still owed). */
static void lingers_end_all(synesis_tunnel *t) {
    while (!syn_list_empty(&t->lingers)) {
        syn_linger *l = SYN_LIST_FIRST(&t->lingers, syn_linger, link);
        if (!l->qc) { /* a rotation's link, still connecting */
            if (l->kind == PENDING)
                t->rot.pending = NULL;
            side_drop(l);
            continue;
        }
        syn_heartbeat_conn_lost(t, l->qc, "the tunnel was freed");
        if (l != SYN_LIST_FIRST(&t->lingers, syn_linger, link))
            continue;
        if (l->kind == RETIRING) {
            syn_requests_conn_lost_on(t, l->qc, SYNESIS_ERR_CANCELLED, "the tunnel was freed");
            syn_streams_fail_on(t, l->qc, SYNESIS_ERR_CANCELLED, "the tunnel was freed");
            if (l != SYN_LIST_FIRST(&t->lingers, syn_linger, link))
                continue;
        }
        if (l->kind == PENDING)
            t->rot.pending = NULL;
        ev_timer_stop(t->loop, &l->grace);
        ev_io_stop(t->loop, &l->rio);
        linger_unlink(l); /* l->t = NULL: the close below frees l via linger_closed */
        syn_qconn_close(l->qc, 0, "client disconnect");
    }
}

/* ---- the connection attempt ---- */

/* Ends the current connection or attempt. Requests and streams in flight on it complete with
 * err (their callbacks run here). */
static void rotation_abandon(synesis_tunnel *t, int keep_new);

/* The connection qc stops being the tunnel's: its packet counters go to the totals. */
static void counters_done(synesis_tunnel *t, const syn_qconn *qc) {
    syn_qconn_stats ci;
    syn_qconn_get_stats(qc, &ci);
    t->pkts_sent_done += ci.pkt_sent;
    t->pkts_lost_done += ci.pkt_lost;
    uint64_t lp, lb;
    syn_qconn_link_counters(qc, &lp, &lb);
    t->link_pkts_done += lp;
    t->link_bytes_done += lb;
}

static void conn_teardown(synesis_tunnel *t, int err, const char *detail) {
    t->drain.edge_qc = NULL;
    rotation_abandon(t, 1);
    if (t->resolver)
        syn_resolver_cancel(t->resolver);
    syn_heartbeat_stop(t);
    t->stats.handshake_time = 0;
    t->stats.handshake_completed_time = 0;
    if (t->qc) {
        syn_qconn *qc = t->qc;
        counters_done(t, qc);
        t->qc = NULL; /* from here on nothing can use it, whatever the callbacks below do */
        int linger = t->linger_teardown && (t->fd >= 0 || syn_qconn_link(qc)) &&
                     t->cfg.close_linger > 0 && syn_qconn_handshake_completed(qc) &&
                     linger_start(t, qc) == 0;
        if (!linger && t->fd >= 0) {
            /* The connection may still be on the stack with its close deferred: it closes the
             * socket once it has sent its CONNECTION_CLOSE. */
            ev_io_stop(t->loop, &t->rio);
            syn_qconn_take_fd(qc);
            t->fd = -1;
        }
        if (!linger && t->linger_teardown)
            syn_qconn_close(qc, 0, "client disconnect");
        /* The links go below: a close still deferred on the stack has none to send on (a
         * lingering connection took its own). */
        if (!linger)
            syn_qconn_set_link(qc, NULL);
        syn_requests_conn_lost(t, err, detail);
        syn_streams_fail_all(t, err, detail);
        syn_reports_drop(t, qc);
        if (!linger) /* a lingering connection may still deliver its heartbeats */
            syn_heartbeat_conn_lost(t, qc, detail);
        if (linger)
            syn_qconn_close_graceful(qc, 0, "client disconnect", t->cfg.close_linger);
        else
            syn_qconn_free(qc);
    }
    if (t->fd >= 0) {
        ev_io_stop(t->loop, &t->rio);
        close(t->fd);
        t->fd = -1;
    }
    t->pending_sock_err = 0;
    ev_timer_stop(t->loop, &t->stable_timer);
    ev_timer_stop(t->loop, &t->udp_timer);
    ev_timer_stop(t->loop, &t->probe_timer);
    ev_timer_stop(t->loop, &t->link_grace);
    t->probing = 0;
    t->on_tcp = 0;
    syn_tcplink_free(t->link);
    syn_tcplink_free(t->old_link);
    t->link = t->old_link = NULL;
    syn_migration_conn_down(t);
}

static void attempt_failed(synesis_tunnel *t, int err, const char *detail);
static void start_attempt(synesis_tunnel *t);

static void qc_handshake_done(syn_qconn *qc) {
    synesis_tunnel *t = syn_qconn_owner(qc);
    syn_tunnel_enter(t);
    synesis_tunnel_state s;
    make_state(&s, SYNESIS_STATE_CONNECTED, 0, NULL);
    s.latency_ms = syn_qconn_srtt_ms(qc);
    s.transport = t->on_tcp ? SYNESIS_TRANSPORT_TCP : SYNESIS_TRANSPORT_UDP;
    ev_timer_stop(t->loop, &t->udp_timer);
    if (!t->on_tcp)
        t->udp_failures = 0; /* a UDP success: UDP first again */
    char addr[64];
    syn_sockaddr_str((const struct sockaddr *)&t->remote.ss, addr, sizeof(addr));
    int resumed = syn_qconn_resumed(qc);
    if (resumed && t->resume)
        t->resume->resumed++;
    if (resumed)
        t->stats.resumed_connections++;
    int early = syn_qconn_early_result(qc);
    if (early > 0)
        t->stats.early_data_accepted++;
    else if (early < 0)
        t->stats.early_data_rejected++;
    syn_tunnel_log(t, SYNESIS_LOG_INFO, "handshake with %s (%s) complete%s", t->server_name, addr,
                   resumed                         ? " (resumed)"
                   : syn_qconn_offered_session(qc) ? " (ticket refused: full handshake)"
                                                   : "");
    t->stats.connections++;
    t->stats.handshake_time = (double)(syn_now_ns() - t->handshake_started_ns) / 1e9;
    uint64_t completed = syn_qconn_tls_completed_ns(qc);
    t->stats.handshake_completed_time = completed > t->handshake_started_ns
                                            ? (double)(completed - t->handshake_started_ns) / 1e9
                                            : t->stats.handshake_time;
    if (t->state.kind == SYNESIS_STATE_RECONNECTING)
        t->stats.reconnects++; /* the outage's time is added by set_state() */
    if (t->cfg.reconnect_stable_period > 0) {
        ev_timer_set(&t->stable_timer, t->cfg.reconnect_stable_period, 0.);
        ev_timer_start(t->loop, &t->stable_timer);
    } else {
        syn_backoff_reset(&t->backoff);
    }
    if (set_state(t, &s) == 0 && !syn_hold_dying(&t->hold) && syn_tunnel_ready(t)) {
        if (t->on_tcp && t->cfg.transport == SYNESIS_TRANSPORT_AUTO &&
            t->cfg.udp_reprobe_interval > 0) {
            t->probe_delay = t->cfg.udp_reprobe_interval;
            ev_timer_set(&t->probe_timer, t->probe_delay, 0.);
            ev_timer_start(t->loop, &t->probe_timer);
        }
        syn_migration_conn_up(t);
        syn_heartbeat_start(t);
        syn_qconn_schedule(qc); /* opens waiting requests and streams */
    }
    syn_tunnel_leave(t);
}

static void qc_closed(syn_qconn *qc, int err, const char *detail) {
    synesis_tunnel *t = syn_qconn_owner(qc);
    syn_tunnel_enter(t);
    if (err == 0) {
        /* Our own close (disconnect): the caller handles the state. */
        syn_tunnel_leave(t);
        return;
    }
    attempt_failed(t, err, detail);
    syn_tunnel_leave(t);
}

static void qc_log(syn_qconn *qc, synesis_log_level level, const char *msg) {
    synesis_tunnel *t = syn_qconn_owner(qc);
    syn_tunnel_log(t, level, "quic: %s", msg);
}

static void qc_send_error(syn_qconn *qc, int err) {
    synesis_tunnel *t = syn_qconn_owner(qc);
    /* Read first (the edge's CONNECTION_CLOSE may be waiting), then act on the error. */
    if (!t->pending_sock_err)
        t->pending_sock_err = err;
    if (t->fd >= 0)
        ev_feed_event(t->loop, &t->rio, EV_READ);
}

/* Stream events go to the request or stream object the stream belongs to. */
static void qc_stream_data(syn_qconn *qc, syn_qstream *s, const uint8_t *data, size_t len,
                           int fin) {
    (void)qc;
    syn_tobj *o = syn_qstream_user(s);
    if (o && o->h->data)
        o->h->data(o, s, data, len, fin);
}

static void qc_stream_reset(syn_qconn *qc, syn_qstream *s, uint64_t app_code, int stop) {
    (void)qc;
    syn_tobj *o = syn_qstream_user(s);
    if (o && o->h->reset)
        o->h->reset(o, s, app_code, stop);
}

static void qc_stream_acked(syn_qconn *qc, syn_qstream *s) {
    (void)qc;
    syn_tobj *o = syn_qstream_user(s);
    if (o && o->h->acked)
        o->h->acked(o, s);
}

static void qc_stream_close(syn_qconn *qc, syn_qstream *s, uint64_t app_code, int reset) {
    (void)qc;
    syn_tobj *o = syn_qstream_user(s);
    if (o && o->h->close)
        o->h->close(o, s, app_code, reset);
}

/* The edge opened a stream: reports, on unidirectional ones (heartbeat.c). */
static int qc_stream_open(syn_qconn *qc, syn_qstream *s) {
    synesis_tunnel *t = syn_qconn_owner(qc);
    return syn_report_open(t, s);
}

static void qc_before_write(syn_qconn *qc) {
    synesis_tunnel *t = syn_qconn_owner(qc);
    syn_tunnel_enter(t);
    if (!t->early_off && syn_qconn_early(qc))
        syn_heartbeat_early(t);
    if (!syn_hold_dying(&t->hold))
        syn_requests_pump(t);
    if (!syn_hold_dying(&t->hold))
        syn_streams_pump(t);
    if (!syn_hold_dying(&t->hold))
        syn_heartbeat_ride(t);
    syn_tunnel_leave(t);
}

/* ---- resumption (resume.h): what the edge gives us for the next connection ---- */

static syn_resume *resume_store(synesis_tunnel *t) {
    if (!t->resume && !t->resume_off) {
        t->resume = malloc(sizeof(*t->resume));
        if (t->resume)
            syn_resume_init(t->resume);
    }
    return t->resume_off ? NULL : t->resume;
}

/* Tickets are kept for the name the edge's certificate was verified against (t->server_name):
 * the only name they are ever offered to. */
static int qc_new_session(syn_qconn *qc, SSL_SESSION *sess, const uint8_t *tp, size_t tplen) {
    synesis_tunnel *t = syn_qconn_owner(qc);
    /* A ticket of another identity's connection (a rotation in progress) is never kept. */
    if (SSL_get_SSL_CTX(syn_qconn_ssl(qc)) != t->ssl_ctx)
        return 0;
    syn_resume *r = resume_store(t);
    if (!r) /* (a ticket comes after our TLS handshake: the edge's certificate is verified) */
        return 0;
    int kept = syn_resume_put(r, t->server_name, sess, tp, tplen);
    /* The application hears of it once control is back in rio_cb, outside OpenSSL and ngtcp2. */
    if (kept && t->cb.on_resume_data)
        t->resume_notify = 1;
    return kept;
}

/* callbacks.on_resume_data with the newest ticket, from rio_cb (held). */
static void resume_notify(synesis_tunnel *t) {
    t->resume_notify = 0;
    if (!t->cb.on_resume_data || t->resume_off || !t->resume || syn_hold_dying(&t->hold))
        return;
    uint8_t *blob;
    size_t len;
    if (syn_resume_export(t->resume, t->server_name, &blob, &len) != 0)
        return; /* no ticket left (one was taken meanwhile), or out of memory */
    t->cb.on_resume_data(t, blob, len, t->user_data);
    OPENSSL_cleanse(blob, len);
    free(blob);
}

/* config.resume_data, in synesis_tunnel_new(): usable or ignored with a warning, never an
 * error (docs/resumption.md, "The public API"). */
static void resume_import(synesis_tunnel *t, const uint8_t *blob, size_t len) {
    if (!len || !blob || t->resume_off)
        return;
    syn_resume *r = resume_store(t);
    const char *why = "out of memory";
    if (r && syn_resume_import_for(r, t->server_name, blob, len, &why) == 0) {
        syn_tunnel_log(t, SYNESIS_LOG_DEBUG, "resume_data: a ticket for %s, kept", t->server_name);
        return;
    }
    syn_tunnel_log(t, SYNESIS_LOG_WARN,
                   "resume_data ignored (%zu bytes): %s; the first connection is a full handshake",
                   len, why);
}

static void qc_new_token(syn_qconn *qc, const uint8_t *token, size_t len) {
    synesis_tunnel *t = syn_qconn_owner(qc);
    syn_resume *r = resume_store(t);
    if (r)
        syn_resume_put_token(r, t->server_name, token, len);
}

/* Before a connection attempt: the newest ticket for our server name (one use: it leaves the
 * store) and the edge's token. Returns the session to release after syn_qconn_client_new. */
static SSL_SESSION *resume_prepare(synesis_tunnel *t, const uint8_t **saved_token,
                                   size_t *saved_len, uint8_t tp[SYN_RESUME_MAX_TP]) {
    *saved_token = t->qset.token;
    *saved_len = t->qset.tokenlen;
    syn_resume *r = t->resume_off ? NULL : t->resume;
    if (!r)
        return NULL;
    size_t tplen;
    SSL_SESSION *sess = syn_resume_take(r, t->server_name, tp, &tplen);
    if (sess)
        r->offered++;
    t->qset.session = sess;
    /* 0-RTT where the ticket allows it; only requests marked idempotent use it (request.c). */
    t->qset.early_data = sess && !t->early_off;
    t->qset.early_tp = tp;
    t->qset.early_tplen = tplen;
    size_t len;
    const uint8_t *tok = syn_resume_token(r, t->server_name, &len);
    if (tok && !t->qset.token) {
        t->qset.token = tok;
        t->qset.tokenlen = len;
    }
    return sess;
}

static void tunnel_path_validated(syn_qconn *qc, int result, const syn_sockaddr *remote,
                                  const syn_sockaddr *old_remote);

static const syn_qconn_ops tunnel_qc_ops = {
    .new_session = qc_new_session,
    .new_token = qc_new_token,
    .handshake_done = qc_handshake_done,
    .stream_open = qc_stream_open,
    .stream_data = qc_stream_data,
    .stream_reset = qc_stream_reset,
    .stream_acked = qc_stream_acked,
    .stream_close = qc_stream_close,
    .streams_available = qc_before_write,
    .before_write = qc_before_write,
    .closed = qc_closed,
    .send_error = qc_send_error,
    .log = qc_log,
    .path_validated = tunnel_path_validated,
};

static void probe_failed(synesis_tunnel *t, const char *why);

static void rio_cb(struct ev_loop *loop, ev_io *w, int revents) {
    (void)loop;
    (void)revents;
    synesis_tunnel *t = w->data;
    syn_tunnel_enter(t);
    t->wakes.rx++;
    syn_qconn *qc0 = t->qc;
    syn_qconn_wakes w0 = {0};
    if (qc0)
        syn_qconn_get_wakes(qc0, &w0);
    /* A pending ICMP error is reported before datagrams that arrived earlier (say, the edge's
     * CONNECTION_CLOSE): read those first and act on the error only if the connection is still
     * there afterwards. */
    int sock_err = t->pending_sock_err;
    t->pending_sock_err = 0;
    syn_udp_rx *rx = rx_take(t);
    rx_fallback fb;
    fb.gro_off = 0;
    for (int total = 0; (total < SYN_UDP_RX_MAX_PER_EVENT || (rx && syn_udp_rx_pending(rx))) &&
                        t->qc && !syn_hold_dying(&t->hold);) {
        const syn_udp_dgram *d;
        int n = rx_read(t->fd, rx, &fb, &d);
        if (n == -EMSGSIZE)
            continue; /* a PMTU probe was too large for the path: QUIC treats it as lost */
        if (n < 0) {
            if (sock_err)
                break;
            sock_err = -n;
            continue;
        }
        if (n == 0)
            break;
        syn_qconn *qc = t->qc;
        if (!t->udp_heard) {
            t->udp_heard = 1; /* the edge answers on UDP: the handshake timeout judges now */
            ev_timer_stop(t->loop, &t->udp_timer);
        }
        for (int i = 0; i < n && t->qc == qc && !syn_hold_dying(&t->hold); i++)
            syn_qconn_recv(qc, &t->local, &d[i].remote, d[i].ecn, d[i].data, d[i].len);
        total += n;
        if (rx && !syn_udp_rx_more(rx))
            break;
    }
    /* Once established, only a refusal (nothing listens any more: the edge is gone) ends the
     * connection; transient errors (ENOBUFS, a route flap, a firewall's EPERM) are packets lost,
     * which QUIC recovers from or the idle timeout judges. Before the handshake, any error ends
     * the attempt on this address. */
    if (sock_err && t->qc && t->on_tcp) {
        /* A UDP probe's socket while the link carries the connection: the probe failed. */
        probe_failed(t, strerror(sock_err));
        sock_err = 0;
    }
    if (sock_err && t->qc && syn_qconn_handshake_completed(t->qc) && sock_err != ECONNREFUSED) {
        syn_tunnel_log(t, SYNESIS_LOG_DEBUG, "socket error ignored: %s", strerror(sock_err));
        sock_err = 0;
    }
    if (sock_err && t->qc && !syn_hold_dying(&t->hold)) {
        char d[SYNESIS_DETAIL_MAX], addr[64];
        syn_sockaddr_str((const struct sockaddr *)&t->remote.ss, addr, sizeof(addr));
        if (sock_err == ECONNREFUSED)
            snprintf(d, sizeof(d), "connection refused by %s (nothing listening?)", addr);
        else
            snprintf(d, sizeof(d), "receive from %s: %s", addr, strerror(sock_err));
        syn_qconn_abort(t->qc,
                        syn_qconn_handshake_completed(t->qc) ? SYNESIS_ERR_CONNECTION_LOST
                                                             : SYNESIS_ERR_SOCKET,
                        d);
    }
    if (t->qc && !syn_hold_dying(&t->hold))
        syn_qconn_flush(t->qc);
    if (qc0 && t->qc == qc0 && !syn_hold_dying(&t->hold)) {
        syn_qconn_wakes w1;
        syn_qconn_get_wakes(qc0, &w1);
        if (w1.packets != w0.packets)
            t->wakes.rx_sent++;
    }
    if (t->resume_notify)
        resume_notify(t);
    buffers_after_read(t);
    syn_tunnel_leave(t);
}

/* SO_RCVBUF/SO_SNDBUF of the tunnel's socket (the edge's default is 4 MiB). */
#define SYN_TUNNEL_SOCKET_BUFFER (2 * 1024 * 1024)

/* ---- identity rotation, make before break (synesis_tunnel_rotate_identity) ---- */

static const syn_qconn_ops retire_qc_ops;
static const syn_qconn_ops pending_qc_ops;
static const syn_tcplink_ops tunnel_link_ops;
static uint16_t tcp_port(const synesis_tunnel *t);

/* A connection of the tunnel's beside the current one, reading its own socket (l may be given,
 * allocated by the caller). */
static syn_linger *side_conn_new(synesis_tunnel *t, syn_qconn *qc, int fd,
                                 const syn_sockaddr *local, int kind, syn_linger *l) {
    if (!l)
        l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->t = t;
    l->loop = t->loop;
    l->qc = qc;
    l->fd = fd;
    l->local = *local;
    l->kind = kind;
    ev_timer_init(&l->grace, NULL, 0., 0.);
    ev_io_init(&l->rio, linger_rio_cb, fd, EV_READ);
    l->rio.data = l;
    if (fd >= 0)
        ev_io_start(t->loop, &l->rio);
    syn_list_push_front(&t->lingers, &l->link);
    if (qc)
        syn_qconn_take_fd(qc);
    return l;
}

/* The old connection closes (gracefully: its last ACKs) once no request or stream of the
 * application is left on it. */
static void retire_check(syn_linger *l) {
    if (!l->t)
        return;
    if (syn_qconn_bidi_in_use(l->qc))
        return;
    ev_timer_stop(l->loop, &l->grace);
    syn_tunnel_log(l->t, SYNESIS_LOG_DEBUG, "the old identity's connection is done: closing it");
    syn_qconn_close_graceful(l->qc, 0, "identity rotated", l->t->cfg.close_linger);
}

static void retire_grace_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    syn_linger *l = w->data;
    synesis_tunnel *t = l->t;
    if (!t)
        return;
    syn_tunnel_enter(t);
    syn_requests_conn_lost_on(t, l->qc, SYNESIS_ERR_CONNECTION_LOST,
                              "the identity rotation's grace period ended");
    syn_streams_fail_on(t, l->qc, SYNESIS_ERR_CONNECTION_LOST,
                        "the identity rotation's grace period ended");
    if (!syn_hold_dying(&t->hold) && l->t)
        syn_qconn_close_graceful(l->qc, 0, "identity rotated", t->cfg.close_linger);
    syn_tunnel_leave(t);
}

static void retire_stream_data(syn_qconn *qc, syn_qstream *s, const uint8_t *data, size_t len,
                               int fin) {
    syn_linger *l = syn_qconn_owner(qc);
    syn_tobj *o = syn_qstream_user(s);
    if (l->t && o && o->h->data)
        o->h->data(o, s, data, len, fin);
}

static void retire_stream_acked(syn_qconn *qc, syn_qstream *s) {
    syn_linger *l = syn_qconn_owner(qc);
    syn_tobj *o = syn_qstream_user(s);
    if (l->t && o && o->h->acked)
        o->h->acked(o, s);
}

static void retire_stream_close(syn_qconn *qc, syn_qstream *s, uint64_t app_code, int reset) {
    syn_linger *l = syn_qconn_owner(qc);
    linger_stream_close(qc, s, app_code, reset);
    retire_check(l);
}

static int retire_stream_open(syn_qconn *qc, syn_qstream *s) {
    (void)qc;
    (void)s;
    return -1; /* reports come on the current connection */
}

static const syn_qconn_ops retire_qc_ops = {
    .stream_open = retire_stream_open,
    .stream_data = retire_stream_data,
    .stream_reset = linger_stream_reset,
    .stream_acked = retire_stream_acked,
    .stream_close = retire_stream_close,
    .closed = linger_closed,
    .log = linger_log,
};

/* Ends a rotation: the context that is not used any more goes. */
static void rotation_end(synesis_tunnel *t, int ok) {
    if (!ok) {
        SSL_CTX_free(t->ssl_ctx); /* the new one (its connection holds its own reference) */
        t->ssl_ctx = t->rot.prev_ctx;
    } else if (t->rot.prev_ctx) {
        SSL_CTX_free(t->rot.prev_ctx);
    }
    t->rot.prev_ctx = NULL;
}

static void identity_cb(synesis_tunnel *t, int status, const char *detail) {
    if (t->cb.on_identity && !syn_hold_dying(&t->hold))
        t->cb.on_identity(t, status, detail ? detail : "", t->user_data);
}

/* The new identity's connection is Connected: it becomes the tunnel's; the old one retires. */
static void pending_handshake_done(syn_qconn *qc) {
    syn_linger *p = syn_qconn_owner(qc);
    synesis_tunnel *t = p->t;
    if (!t)
        return;
    syn_tunnel_enter(t);
    t->rot.pending = NULL;
    linger_unlink(p);
    ev_io_stop(t->loop, &p->rio);
    int fd = p->fd;
    syn_sockaddr local = p->local;
    syn_tcplink *tl = p->tl; /* QUIC over TCP: the new connection's link */
    p->tl = NULL;
    if (syn_hold_release(&p->hold)) /* else linger_rio_cb frees it */
        free(p);
    syn_qconn *old = t->qc;
    if (old) {
        /* The old connection retires with its socket or its link (and a UDP probe under way on
         * it ends with it). */
        syn_tcplink *otl = link_release(t, old);
        counters_done(t, old); /* the statistics' totals keep what it sent */
        if (t->fd >= 0)
            ev_io_stop(t->loop, &t->rio);
        syn_linger *r = side_conn_new(t, old, t->fd, &t->local, RETIRING, NULL);
        if (r) {
            side_take_link(r, otl);
            syn_qconn_set_owner(old, &retire_qc_ops, r);
            ev_timer_init(&r->grace, retire_grace_cb, t->rot.grace, 0.);
            r->grace.data = r;
            ev_timer_start(t->loop, &r->grace);
        } else { /* no memory to keep it: it ends now, with what it carries */
            syn_qconn_take_fd(old);
            syn_requests_conn_lost_on(t, old, SYNESIS_ERR_CONNECTION_LOST, "out of memory");
            syn_streams_fail_on(t, old, SYNESIS_ERR_CONNECTION_LOST, "out of memory");
            syn_qconn_close(old, 0, "identity rotated");
            syn_qconn_set_link(old, NULL);
            syn_tcplink_free(otl);
            syn_qconn_free(old);
        }
        t->fd = -1;
        t->qc = NULL;
        t->probing = 0;
        if (r)
            retire_check(r);
    }
    /* The new connection is the tunnel's now (it owns its socket: take_fd), with its link. */
    t->qc = qc;
    t->fd = fd;
    t->local = local;
    syn_qconn_set_owner(qc, &tunnel_qc_ops, t);
    ev_io_init(&t->rio, rio_cb, fd, EV_READ);
    t->rio.data = t;
    if (fd >= 0)
        ev_io_start(t->loop, &t->rio);
    if (tl) {
        syn_tcplink_free(t->link); /* none: the old connection took it */
        t->link = tl;
        syn_tcplink_set_owner(tl, t);
        syn_tcplink_set_ops(tl, &tunnel_link_ops);
        t->on_tcp = 1;
        if (t->cfg.transport == SYNESIS_TRANSPORT_AUTO && t->cfg.udp_reprobe_interval > 0 &&
            !ev_is_active(&t->probe_timer)) { /* the probe the old connection had under way */
            ev_timer_set(&t->probe_timer, t->probe_delay, 0.);
            ev_timer_start(t->loop, &t->probe_timer);
        }
    }
    rotation_end(t, 1);
    t->stats.connections++;
    t->stats.identity_rotations++;
    syn_tunnel_log(t, SYNESIS_LOG_INFO,
                   "identity rotated: the new connection took over, the old one finishes");
    syn_qconn_schedule(qc); /* opens waiting requests and streams on it */
    identity_cb(t, 0, "");
    syn_tunnel_leave(t);
}

static void pending_report(synesis_tunnel *t, const syn_linger *p, int err, const char *detail);

static void pending_closed(syn_qconn *qc, int err, const char *detail) {
    syn_linger *p = syn_qconn_owner(qc);
    synesis_tunnel *t = p->t;
    if (p->tl) {
        syn_qconn_set_link(qc, NULL);
        syn_tcplink_free(p->tl);
        p->tl = NULL;
    }
    ev_io_stop(p->loop, &p->rio);
    linger_unlink(p);
    syn_qconn_free(qc);
    if (syn_hold_release(&p->hold))
        free(p);
    pending_report(t, p, err, detail);
}

/* The rotation's link failed before its QUIC connection began (TCP, the proxy, the outer TLS). */
static void pending_failed(syn_linger *p, int err, const char *detail) {
    synesis_tunnel *t = p->t;
    side_drop(p);
    pending_report(t, p, err, detail);
}

/* The pending connection p (gone: only compared) ended with err: the rotation failed. */
static void pending_report(synesis_tunnel *t, const syn_linger *p, int err, const char *detail) {
    if (!t)
        return;
    syn_tunnel_enter(t);
    if (t->rot.pending == p) {
        t->rot.pending = NULL;
        rotation_end(t, 0);
        char d[SYNESIS_DETAIL_MAX];
        snprintf(d, sizeof(d), "%s", detail ? detail : "");
        syn_tunnel_log(t, SYNESIS_LOG_WARN,
                       "identity rotation failed (%s: %s): the old identity stays",
                       synesis_error_name(err ? err : SYNESIS_ERR_CONNECTION_LOST), d);
        identity_cb(t, err ? err : SYNESIS_ERR_CONNECTION_LOST, d);
    }
    syn_tunnel_leave(t);
}

static void pending_send_error(syn_qconn *qc, int err) {
    syn_linger *p = syn_qconn_owner(qc);
    if (!syn_qconn_handshake_completed(qc))
        syn_qconn_abort(qc, SYNESIS_ERR_SOCKET, strerror(err));
    (void)p;
}

static int pending_new_session(syn_qconn *qc, SSL_SESSION *sess, const uint8_t *tp, size_t tplen) {
    syn_linger *p = syn_qconn_owner(qc);
    synesis_tunnel *t = p->t;
    if (!t || SSL_get_SSL_CTX(syn_qconn_ssl(qc)) != t->ssl_ctx)
        return 0;
    syn_resume *r = resume_store(t);
    int kept = r ? syn_resume_put(r, t->server_name, sess, tp, tplen) : 0;
    if (kept && t->cb.on_resume_data)
        t->resume_notify = 1; /* from rio_cb, once this connection is the tunnel's */
    return kept;
}

static const syn_qconn_ops pending_qc_ops = {
    .new_session = pending_new_session,
    .handshake_done = pending_handshake_done,
    .stream_open = retire_stream_open,
    .closed = pending_closed,
    .send_error = pending_send_error,
    .log = linger_log,
};

/* Ends a rotation in progress: its connection is closed; the previous context comes back, or with
 * keep_new (the current connection ended meanwhile) the new one stays for the next attempt. */
static void rotation_abandon(synesis_tunnel *t, int keep_new) {
    syn_linger *p = t->rot.pending;
    if (!p)
        return;
    t->rot.pending = NULL;
    rotation_end(t, keep_new);
    if (keep_new)
        syn_tunnel_log(t, SYNESIS_LOG_INFO,
                       "the connection ended during the identity rotation: the next one uses the "
                       "new identity");
    if (!p->qc) /* its link still connecting */
        side_drop(p);
    else
        syn_qconn_close(p->qc, 0, "identity rotation abandoned"); /* pending_closed frees it */
}

/* The settings of the new identity's connection: a full handshake (the new certificate is what
 * the edge must see), no 0-RTT. */
static void rotation_settings(const synesis_tunnel *t, syn_qconn_settings *qs) {
    *qs = t->qset;
    qs->session = NULL;
    qs->early_data = 0;
    qs->early_tp = NULL;
    qs->early_tplen = 0;
}

/* Over TCP: the rotation's link is up (through the proxy, if any): its QUIC handshake starts. */
static void side_link_up(syn_tcplink *tl) {
    syn_linger *p = syn_tcplink_owner(tl);
    synesis_tunnel *t = p->t;
    if (!t || p->qc || p->kind != PENDING)
        return;
    syn_tunnel_enter(t);
    char d[SYNESIS_DETAIL_MAX];
    syn_sockaddr local = *syn_tcplink_local(tl), remote = *syn_tcplink_remote(tl);
    syn_qconn_settings qs;
    rotation_settings(t, &qs);
    syn_qconn *qc = NULL;
    int rv = syn_qconn_client_new(&qc, t->loop, -1, &local, &remote, t->ssl_ctx, t->server_name,
                                  t->cfg.alpn, &qs, &pending_qc_ops, p, d);
    if (rv != 0) {
        pending_failed(p, rv, d);
    } else {
        p->qc = qc;
        p->local = local;
        syn_qconn_set_link(qc, tl);
        syn_tunnel_log(t, SYNESIS_LOG_DEBUG, "identity rotation: TCP link up, QUIC handshake");
        syn_qconn_flush(qc); /* sends the Initial */
    }
    syn_tunnel_leave(t);
}

SYNESIS_API void synesis_identity_source_init_sized(synesis_identity_source *src, size_t size) {
    synesis_identity_source d = {.struct_size = sizeof(d)};
    syn_struct_init(src, size, &d, sizeof(d));
}

SYNESIS_API int synesis_tunnel_rotate_identity(synesis_tunnel *t, const synesis_identity_source *id,
                                               double grace) {
    if (!t || !id || !(grace >= 0 && grace <= 366.0 * 86400))
        return SYNESIS_ERR_INVALID_ARGUMENT;
    if (syn_hold_dying(&t->hold) || t->drain.on)
        return SYNESIS_ERR_INVALID_STATE;
    char d[SYNESIS_DETAIL_MAX] = "";
    synesis_identity_source src = {.struct_size = sizeof(src)};
    int rv = syn_struct_in(&src, sizeof(src), id, "identity source", d);
    if (rv != 0)
        return rv;
    syn_tls_client_config tc = {
        .cert_file = src.cert_pem ? NULL : src.cert_path,
        .key_file = src.key_pem ? NULL : src.key_path,
        .cert_pem = src.cert_pem,
        .cert_pem_len = src.cert_pem_len,
        .key_pem = src.key_pem,
        .key_pem_len = src.key_pem_len,
        .key_passphrase = src.key_passphrase,
    };
    SSL_CTX *ctx = NULL;
    if ((rv = syn_tls_client_ctx_rekey(&ctx, t->ssl_ctx, &tc, d)) != 0) {
        syn_tunnel_log(t, SYNESIS_LOG_WARN, "new identity refused: %s", d);
        syn_copy_str(t->last_error, sizeof(t->last_error), d);
        return rv;
    }
    syn_tunnel_enter(t);
    rotation_abandon(t, 0);
    /* The old identity's tickets are never offered with the new one. */
    if (t->resume)
        syn_resume_clear(t->resume);
    t->rot.prev_ctx = t->ssl_ctx;
    t->ssl_ctx = ctx;
    t->rot.grace = grace;
    if (!syn_tunnel_ready(t)) {
        /* Not Connected: the next attempt uses it. */
        rotation_end(t, 1);
        syn_tunnel_log(t, SYNESIS_LOG_INFO, "new identity installed for the next connection");
        syn_tunnel_leave(t);
        return 0;
    }
    if (t->on_tcp && t->link) {
        /* Over TCP (forced, or UDP blocked): the new connection on a new link, the same way the
         * current one went (the same address, through the same proxy). */
        syn_linger *p = calloc(1, sizeof(*p));
        rv = p ? 0 : syn_fail(d, SYNESIS_ERR_NOMEM, "out of memory");
        if (rv == 0) {
            syn_tcplink_client_opts o = {
                .connect_to = &t->tcp_addrs[t->tcp_idx],
                .proxy = t->have_proxy ? &t->proxy : NULL,
                .target_host = t->url.host,
                .target_port = tcp_port(t),
                .ctx = t->tcp_ctx,
                .server_name = t->server_name,
                .timeout = t->cfg.handshake_timeout,
            };
            p->t = t; /* side_conn_new sets the rest */
            rv = syn_tcplink_connect(&p->tl, t->loop, &o, &side_link_ops, p, d);
        }
        if (rv != 0) {
            free(p);
            rotation_end(t, 0);
            syn_tunnel_log(t, SYNESIS_LOG_WARN, "identity rotation: %s", d);
            syn_tunnel_leave(t);
            return rv;
        }
        side_conn_new(t, NULL, -1, &t->local, PENDING, p);
        t->rot.pending = p;
        syn_tunnel_log(t, SYNESIS_LOG_INFO,
                       "identity rotation: connecting with the new identity over TCP");
        syn_tunnel_leave(t);
        return 0;
    }
    syn_sockaddr local;
    int fd = syn_udp_open((const struct sockaddr *)&t->remote.ss, t->remote.len, NULL, 0,
                          t->cfg.pmtud, &local, d);
    syn_qconn *qc = NULL;
    syn_linger *p = calloc(1, sizeof(*p)); /* the owner from the start (ops may log) */
    if (!p) {
        if (fd >= 0)
            close(fd);
        fd = syn_fail(d, SYNESIS_ERR_NOMEM, "out of memory");
    }
    if (fd >= 0) {
        (void)syn_udp_set_buffers(fd, SYN_TUNNEL_SOCKET_BUFFER, NULL, NULL);
        syn_qconn_settings qs;
        rotation_settings(t, &qs);
        rv = syn_qconn_client_new(&qc, t->loop, fd, &local, &t->remote, t->ssl_ctx, t->server_name,
                                  t->cfg.alpn, &qs, &pending_qc_ops, p, d);
        if (rv != 0)
            close(fd);
    } else {
        rv = fd;
    }
    if (rv == 0)
        side_conn_new(t, qc, fd, &local, PENDING, p);
    else
        free(p);
    if (rv != 0) {
        rotation_end(t, 0);
        syn_tunnel_log(t, SYNESIS_LOG_WARN, "identity rotation: %s", d);
        syn_tunnel_leave(t);
        return rv;
    }
    t->rot.pending = p;
    syn_tunnel_log(t, SYNESIS_LOG_INFO, "identity rotation: connecting with the new identity");
    syn_qconn_flush(qc); /* sends the Initial */
    syn_tunnel_leave(t);
    return 0;
}

/* Opens the socket and the QUIC connection to addrs[addr_idx]; on failure moves on. */
static void connect_addr(synesis_tunnel *t) {
    char detail[SYNESIS_DETAIL_MAX];
    for (; t->addr_idx < t->naddrs; t->addr_idx++) {
        syn_addr *a = &t->addrs[t->addr_idx];
        t->remote = *a;
        syn_sockaddr_str((const struct sockaddr *)&a->ss, t->remote_str, sizeof(t->remote_str));
        int fd = syn_udp_open((const struct sockaddr *)&a->ss, a->len, NULL, 0, t->cfg.pmtud,
                              &t->local, detail);
        if (fd < 0) {
            syn_tunnel_log(t, SYNESIS_LOG_WARN, "%s", detail);
            if (t->addr_idx + 1 < t->naddrs)
                continue;
            attempt_failed(t, fd, detail);
            return;
        }
        t->fd = fd;
        /* Room for the bursts of a fast download (a GSO train from the edge is up to 64 KiB):
         * with the usual 208 KiB default, a busy moment drops datagrams and QUIC backs off. Best
         * effort: the kernel caps it at net.core.rmem_max/wmem_max without CAP_NET_ADMIN. */
        (void)syn_udp_set_buffers(fd, SYN_TUNNEL_SOCKET_BUFFER, NULL, NULL);
        const uint8_t *tok;
        size_t toklen;
        uint8_t tp[SYN_RESUME_MAX_TP];
        SSL_SESSION *sess = resume_prepare(t, &tok, &toklen, tp);
        int rv =
            syn_qconn_client_new(&t->qc, t->loop, fd, &t->local, &t->remote, t->ssl_ctx,
                                 t->server_name, t->cfg.alpn, &t->qset, &tunnel_qc_ops, t, detail);
        SSL_SESSION_free(sess); /* the connection holds its own reference */
        t->qset.session = NULL;
        t->qset.early_data = 0;
        t->qset.early_tp = NULL;
        t->qset.early_tplen = 0;
        t->qset.token = tok;
        t->qset.tokenlen = toklen;
        if (rv != 0) {
            close(fd);
            t->fd = -1;
            attempt_failed(t, rv, detail);
            return;
        }
        ev_io_init(&t->rio, rio_cb, fd, EV_READ);
        t->rio.data = t;
        ev_io_start(t->loop, &t->rio);
        char addr[64];
        syn_sockaddr_str((const struct sockaddr *)&a->ss, addr, sizeof(addr));
        syn_tunnel_log(t, SYNESIS_LOG_DEBUG, "connecting to %s (%s)", t->server_name, addr);
        t->handshake_started_ns = syn_now_ns();
        t->udp_heard = 0;
        if (t->cfg.transport == SYNESIS_TRANSPORT_AUTO) {
            ev_timer_set(&t->udp_timer, t->cfg.udp_fallback_timeout, 0.);
            ev_timer_start(t->loop, &t->udp_timer);
        }
        syn_qconn_flush(t->qc); /* sends the Initial */
        return;
    }
}

/* ---- QUIC over TCP (tcplink.h): the fallback when UDP does not get through, and the way back ----
 */

static uint16_t tcp_port(const synesis_tunnel *t) {
    return t->cfg.tcp_port ? t->cfg.tcp_port : t->url.port;
}

static void addr_set_port(syn_addr *a, uint16_t port) {
    if (a->ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&a->ss)->sin_port = htons(port);
    else if (a->ss.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&a->ss)->sin6_port = htons(port);
}

/* The current link's frames and its writable and closed events. */
static void link_up(syn_tcplink *l) {
    synesis_tunnel *t = syn_tcplink_owner(l);
    if (l != t->link)
        return;
    syn_tunnel_enter(t);
    char detail[SYNESIS_DETAIL_MAX];
    syn_sockaddr local = *syn_tcplink_local(l), remote = *syn_tcplink_remote(l);
    const uint8_t *tok;
    size_t toklen;
    uint8_t tp[SYN_RESUME_MAX_TP];
    SSL_SESSION *sess = resume_prepare(t, &tok, &toklen, tp);
    int rv = syn_qconn_client_new(&t->qc, t->loop, -1, &local, &remote, t->ssl_ctx, t->server_name,
                                  t->cfg.alpn, &t->qset, &tunnel_qc_ops, t, detail);
    SSL_SESSION_free(sess);
    t->qset.session = NULL;
    t->qset.early_data = 0;
    t->qset.early_tp = NULL;
    t->qset.early_tplen = 0;
    t->qset.token = tok;
    t->qset.tokenlen = toklen;
    if (rv != 0) {
        attempt_failed(t, rv, detail);
    } else {
        syn_qconn_set_link(t->qc, l);
        syn_tunnel_log(t, SYNESIS_LOG_DEBUG, "TCP link to %s up%s%s: QUIC handshake", t->remote_str,
                       t->have_proxy ? " through proxy " : "", t->have_proxy ? t->proxy.shown : "");
        syn_qconn_flush(t->qc); /* sends the Initial */
    }
    syn_tunnel_leave(t);
}

static void link_packet(syn_tcplink *l, const uint8_t *data, size_t len) {
    synesis_tunnel *t = syn_tcplink_owner(l);
    if (!t->qc || (l != t->link && l != t->old_link))
        return;
    syn_qconn_recv(t->qc, syn_tcplink_local(l), syn_tcplink_remote(l), 0, data, len);
    if (t->qc)
        syn_qconn_schedule(t->qc); /* one write pass for the frames of this read */
}

static void link_writable(syn_tcplink *l) {
    synesis_tunnel *t = syn_tcplink_owner(l);
    if (t->qc && syn_qconn_link(t->qc) == l)
        syn_qconn_link_writable(t->qc);
}

static void tcp_connect(synesis_tunnel *t);

static void link_closed(syn_tcplink *l, int err, const char *detail) {
    synesis_tunnel *t = syn_tcplink_owner(l);
    syn_tunnel_enter(t);
    if (t->qc && syn_qconn_link(t->qc) == l)
        syn_qconn_set_link(t->qc, NULL);
    if (l == t->old_link) {
        t->old_link = NULL;
        ev_timer_stop(t->loop, &t->link_grace);
        syn_tcplink_free(l);
        syn_tunnel_leave(t);
        return;
    }
    if (l != t->link) {
        syn_tcplink_free(l);
        syn_tunnel_leave(t);
        return;
    }
    t->link = NULL;
    syn_tcplink_free(l);
    char d[SYNESIS_DETAIL_MAX];
    snprintf(d, sizeof(d), "TCP link to %s%s%s: %s", t->remote_str,
             t->have_proxy ? " through proxy " : "", t->have_proxy ? t->proxy.shown : "",
             detail && detail[0] ? detail : "closed by the edge");
    if (!t->on_tcp) {
        /* Moved to UDP already: the old link's end changes nothing. */
    } else if (!t->qc && t->tcp_idx + 1 < t->tcp_naddrs) {
        syn_tunnel_log(t, SYNESIS_LOG_WARN, "%s", d);
        t->stats.address_fallbacks++;
        t->tcp_idx++;
        tcp_connect(t);
    } else {
        int was_up = t->qc && syn_qconn_handshake_completed(t->qc);
        attempt_failed(t, was_up || err == 0 ? SYNESIS_ERR_CONNECTION_LOST : err, d);
    }
    syn_tunnel_leave(t);
}

static const syn_tcplink_ops tunnel_link_ops = {
    .up = link_up,
    .packet = link_packet,
    .writable = link_writable,
    .closed = link_closed,
};

/* Opens the link to tcp_addrs[tcp_idx] (the edge's, or the proxy's), moving on on failure. */
static void tcp_connect(synesis_tunnel *t) {
    char detail[SYNESIS_DETAIL_MAX];
    if (!t->tcp_ctx) {
        int rv = syn_tcplink_client_ctx_new(&t->tcp_ctx, t->ssl_ctx, detail);
        if (rv != 0) {
            attempt_failed(t, rv, detail);
            return;
        }
    }
    for (; t->tcp_idx < t->tcp_naddrs; t->tcp_idx++) {
        syn_addr *a = &t->tcp_addrs[t->tcp_idx];
        syn_sockaddr_str((const struct sockaddr *)&a->ss, t->remote_str, sizeof(t->remote_str));
        syn_tcplink_client_opts o = {
            .connect_to = a,
            .proxy = t->have_proxy ? &t->proxy : NULL,
            .target_host = t->url.host,
            .target_port = tcp_port(t),
            .ctx = t->tcp_ctx,
            .server_name = t->server_name,
            .timeout = t->cfg.handshake_timeout,
        };
        int rv = syn_tcplink_connect(&t->link, t->loop, &o, &tunnel_link_ops, t, detail);
        if (rv == 0) {
            syn_tunnel_log(t, SYNESIS_LOG_DEBUG, "connecting to %s over TCP (%s%s%s)",
                           t->server_name, t->remote_str, t->have_proxy ? ", proxy " : "",
                           t->have_proxy ? t->proxy.shown : "");
            return;
        }
        t->link = NULL;
        syn_tunnel_log(t, SYNESIS_LOG_WARN, "TCP to %s: %s", t->remote_str, detail);
        if (t->tcp_idx + 1 >= t->tcp_naddrs) {
            attempt_failed(t, rv, detail);
            return;
        }
    }
}

/* The TCP address list, allocated once a tunnel first needs it (most never do). */
static int tcp_addrs_alloc(synesis_tunnel *t) {
    if (!t->tcp_addrs)
        t->tcp_addrs = malloc(SYN_RESOLVE_MAX * sizeof(*t->tcp_addrs));
    return t->tcp_addrs != NULL;
}

static void proxy_resolved_cb(void *ud, int rv, const syn_addr *addrs, size_t n,
                              const char *detail) {
    synesis_tunnel *t = ud;
    syn_tunnel_enter(t);
    if (rv != 0 || n == 0) {
        char d[SYNESIS_DETAIL_MAX];
        snprintf(d, sizeof(d), "proxy %s: %s", t->proxy.shown, detail ? detail : "no address");
        attempt_failed(t, rv ? rv : SYNESIS_ERR_DNS, d);
    } else if (!tcp_addrs_alloc(t)) {
        attempt_failed(t, SYNESIS_ERR_NOMEM, "no memory for the TCP addresses");
    } else {
        t->tcp_naddrs = n > SYN_RESOLVE_MAX ? SYN_RESOLVE_MAX : n;
        memcpy(t->tcp_addrs, addrs, t->tcp_naddrs * sizeof(*addrs));
        t->tcp_idx = 0;
        tcp_connect(t);
    }
    syn_tunnel_leave(t);
}

/* The current attempt goes on over TCP: through the proxy that applies (resolved first), or to
 * the edge's addresses (resolved already) at its TCP port. */
static void tcp_start(synesis_tunnel *t) {
    char detail[SYNESIS_DETAIL_MAX];
    t->on_tcp = 1;
    t->handshake_started_ns = syn_now_ns();
    syn_proxy_clear(&t->proxy);
    t->have_proxy = 0;
    int rv = syn_proxy_select(t->cfg.proxy, t->url.host, &t->proxy, detail);
    if (rv < 0) {
        attempt_failed(t, rv, detail);
        return;
    }
    t->have_proxy = rv == 1;
    t->tcp_idx = 0;
    if (t->have_proxy) {
        rv = syn_resolver_start(t->resolver, t->proxy.host, t->proxy.port, proxy_resolved_cb, t);
        if (rv != 0)
            attempt_failed(t, rv, "cannot start name resolution of the proxy");
        return;
    }
    if (!tcp_addrs_alloc(t)) {
        attempt_failed(t, SYNESIS_ERR_NOMEM, "no memory for the TCP addresses");
        return;
    }
    t->tcp_naddrs = t->naddrs;
    memcpy(t->tcp_addrs, t->addrs, t->naddrs * sizeof(*t->addrs));
    for (size_t i = 0; i < t->tcp_naddrs; i++)
        addr_set_port(&t->tcp_addrs[i], tcp_port(t));
    tcp_connect(t);
}

/* A UDP attempt heard nothing from the edge in udp_fallback_timeout: a UDP failure. */
static void udp_timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    synesis_tunnel *t = w->data;
    if (!t->qc || t->on_tcp || t->udp_heard || syn_qconn_handshake_completed(t->qc))
        return;
    char d[SYNESIS_DETAIL_MAX];
    snprintf(d, sizeof(d), "no reply over UDP from %s within %.1f s (UDP blocked?)", t->remote_str,
             t->cfg.udp_fallback_timeout);
    syn_qconn_abort(t->qc, SYNESIS_ERR_HANDSHAKE_TIMEOUT, d);
}

/* Closes the probe's UDP socket (the link keeps the connection). */
static void probe_close(synesis_tunnel *t) {
    if (t->qc)
        syn_qconn_drop_fd(t->qc);
    if (t->fd >= 0) {
        ev_io_stop(t->loop, &t->rio);
        close(t->fd);
        t->fd = -1;
    }
    t->pending_sock_err = 0;
    t->probing = 0;
}

static void probe_schedule(synesis_tunnel *t) {
    if (t->cfg.udp_reprobe_interval <= 0 || t->cfg.transport != SYNESIS_TRANSPORT_AUTO)
        return;
    ev_timer_stop(t->loop, &t->probe_timer);
    ev_timer_set(&t->probe_timer, t->probe_delay, 0.);
    ev_timer_start(t->loop, &t->probe_timer);
}

static void probe_failed(synesis_tunnel *t, const char *why) {
    if (!t->probing)
        return;
    probe_close(t);
    t->stats.udp_probes_failed++;
    t->probe_delay *= 2;
    if (t->probe_delay > SYN_TUNNEL_PROBE_MAX)
        t->probe_delay = SYN_TUNNEL_PROBE_MAX;
    syn_tunnel_log(t, SYNESIS_LOG_INFO,
                   "UDP probe failed (%s): staying on TCP, next probe in %.0f s", why,
                   t->probe_delay);
    probe_schedule(t);
}

/* While Connected over TCP: validates a UDP path to the edge; the link carries on meanwhile. */
static void probe_timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    synesis_tunnel *t = w->data;
    if (!t->qc || !t->on_tcp || !t->link || t->probing || t->naddrs == 0 ||
        t->state.kind != SYNESIS_STATE_CONNECTED)
        return;
    syn_tunnel_enter(t);
    char detail[SYNESIS_DETAIL_MAX];
    syn_addr remote = t->addrs[t->tcp_idx < t->naddrs && !t->have_proxy ? t->tcp_idx : 0];
    syn_sockaddr local;
    int fd = -1;
    /* A UDP local port equal to the link's would make the two paths one (docs/protocol.md). */
    for (int i = 0; i < 3; i++) {
        fd = syn_udp_open((const struct sockaddr *)&remote.ss, remote.len, NULL, 0, t->cfg.pmtud,
                          &local, detail);
        if (fd < 0 || local.len != syn_tcplink_local(t->link)->len ||
            memcmp(&local.ss, &syn_tcplink_local(t->link)->ss, local.len) != 0)
            break;
        close(fd);
        fd = -1;
    }
    if (fd < 0) {
        t->probing = 1;
        probe_failed(t, detail);
        syn_tunnel_leave(t);
        return;
    }
    (void)syn_udp_set_buffers(fd, SYN_TUNNEL_SOCKET_BUFFER, NULL, NULL);
    int rv = syn_qconn_probe_path(t->qc, fd, &local, &remote);
    if (rv != 0) {
        close(fd);
        if (rv == SYNESIS_ERR_WOULD_BLOCK) { /* no spare connection ID yet: soon again */
            ev_timer_set(&t->probe_timer, 1., 0.);
            ev_timer_start(t->loop, &t->probe_timer);
        } else {
            t->probing = 1;
            probe_failed(t, synesis_error_name(rv));
        }
        syn_tunnel_leave(t);
        return;
    }
    t->fd = fd;
    t->local = local;
    t->probing = 1;
    ev_io_init(&t->rio, rio_cb, fd, EV_READ);
    t->rio.data = t;
    ev_io_start(t->loop, &t->rio);
    char addr[64];
    syn_sockaddr_str((const struct sockaddr *)&remote.ss, addr, sizeof(addr));
    syn_tunnel_log(t, SYNESIS_LOG_DEBUG, "probing UDP to %s", addr);
    syn_tunnel_leave(t);
}

int syn_tunnel_probe_soon(synesis_tunnel *t) {
    if (!t->qc || !t->on_tcp || !t->link || t->probing || t->naddrs == 0 ||
        t->cfg.transport != SYNESIS_TRANSPORT_AUTO || t->cfg.udp_reprobe_interval <= 0 ||
        t->state.kind != SYNESIS_STATE_CONNECTED)
        return 0;
    t->probe_delay = t->cfg.udp_reprobe_interval; /* the backoff was the old network's */
    ev_timer_stop(t->loop, &t->probe_timer);
    ev_timer_set(&t->probe_timer, 0., 0.);
    ev_timer_start(t->loop, &t->probe_timer);
    return 1;
}

static void link_grace_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    synesis_tunnel *t = w->data;
    if (t->qc && t->old_link && syn_qconn_link(t->qc) == t->old_link)
        syn_qconn_set_link(t->qc, NULL);
    syn_tcplink_free(t->old_link);
    t->old_link = NULL;
}

static void tunnel_path_validated(syn_qconn *qc, int result, const syn_sockaddr *remote,
                                  const syn_sockaddr *old_remote) {
    synesis_tunnel *t = syn_qconn_owner(qc);
    if (qc != t->qc || !t->probing) {
        syn_migration_path_validated(qc, result, remote, old_remote);
        return;
    }
    if (result != 1) {
        /* Called from inside ngtcp2: closing our socket is ours to do; the connection is back on
         * the link's path. */
        probe_failed(t, result == 0 ? "no answer on the UDP path" : "aborted");
        return;
    }
    t->probing = 0;
    t->on_tcp = 0;
    t->udp_failures = 0;
    t->udp_heard = 1;
    t->remote = *remote;
    syn_sockaddr_str((const struct sockaddr *)&remote->ss, t->remote_str, sizeof(t->remote_str));
    t->stats.udp_returns++;
    ev_timer_stop(t->loop, &t->probe_timer);
    /* The link stays a moment for frames already on their way, then goes. */
    t->old_link = t->link;
    t->link = NULL;
    ev_timer_set(&t->link_grace, SYN_TUNNEL_LINK_GRACE, 0.);
    ev_timer_start(t->loop, &t->link_grace);
    syn_tunnel_log(t, SYNESIS_LOG_INFO, "UDP path to %s validated: moved back from TCP to UDP",
                   t->remote_str);
}

static void resolved_cb(void *ud, int rv, const syn_addr *addrs, size_t n, const char *detail) {
    synesis_tunnel *t = ud;
    syn_tunnel_enter(t);
    if (rv != 0 || n == 0) {
        attempt_failed(t, rv ? rv : SYNESIS_ERR_DNS, detail ? detail : "no address");
    } else {
        if (n > SYN_RESOLVE_MAX)
            n = SYN_RESOLVE_MAX;
        memcpy(t->addrs, addrs, n * sizeof(*addrs));
        t->naddrs = n;
        t->addr_idx = 0;
        if (t->cfg.transport == SYNESIS_TRANSPORT_TCP ||
            (t->cfg.transport == SYNESIS_TRANSPORT_AUTO &&
             t->udp_failures >= t->cfg.tcp_fallback_after))
            tcp_start(t); /* UDP failed on the last attempts: TCP first */
        else
            connect_addr(t);
    }
    syn_tunnel_leave(t);
}

static void start_attempt(synesis_tunnel *t) {
    conn_teardown(t, SYNESIS_ERR_CONNECTION_LOST, "connection closed");
    t->naddrs = t->addr_idx = 0;
    int rv = syn_resolver_start(t->resolver, t->url.host, t->url.port, resolved_cb, t);
    if (rv != 0)
        attempt_failed(t, rv, "cannot start name resolution");
}

/* Schedules the next reconnect attempt or gives up. */
static void schedule_reconnect(synesis_tunnel *t, int err, const char *detail) {
    double delay = 0;
    uint32_t attempt = 0;
    int rv = syn_backoff_next(&t->backoff, &delay, &attempt);
    if (rv == 0 && t->cfg.backoff_fn) {
        delay = t->cfg.backoff_fn(t, attempt, delay, t->cfg.backoff_user_data);
        if (!(delay >= 0)) /* negative, or NaN: the policy gives up */
            rv = SYNESIS_ERR_MAX_RECONNECTS;
    }
    synesis_tunnel_state s;
    if (rv != 0) {
        char d[256];
        snprintf(d, sizeof(d), "max reconnection attempts exceeded (last error: %s)",
                 detail ? detail : synesis_strerror(err));
        /* Failed is reached only from Connecting or Reconnecting. A live connection that drops
         * with no attempt allowed (the budget used up by connections that never stayed up for
         * the stable period, or backoff_fn refusing attempt 1) still announces the outage as
         * Reconnecting, numbered as the refused attempt, before Failed; otherwise the tunnel
         * would stay "Connected" with no connection. */
        if (t->state.kind == SYNESIS_STATE_CONNECTED) {
            make_state(&s, SYNESIS_STATE_RECONNECTING, err, detail);
            s.attempt = attempt ? attempt : t->backoff.attempts + 1;
            t->outage_started_ms = s.entered_ms;
            if (set_state(t, &s) != 0 || syn_hold_dying(&t->hold) ||
                t->state.kind != SYNESIS_STATE_RECONNECTING)
                return;
        }
        make_state(&s, SYNESIS_STATE_FAILED, SYNESIS_ERR_MAX_RECONNECTS, d);
        syn_copy_str(t->last_error, sizeof(t->last_error), d);
        set_state(t, &s);
        return;
    }
    make_state(&s, SYNESIS_STATE_RECONNECTING, err, detail);
    s.attempt = attempt;
    if (!t->outage_started_ms)
        t->outage_started_ms = s.entered_ms;
    s.entered_ms = t->outage_started_ms;
    syn_tunnel_log(t, SYNESIS_LOG_INFO, "reconnection attempt %u/%u in %.3f s", attempt,
                   t->backoff.max_attempts, delay);
    if (set_state(t, &s) != 0 || syn_hold_dying(&t->hold) ||
        t->state.kind != SYNESIS_STATE_RECONNECTING)
        return;
    ev_timer_stop(t->loop, &t->reconnect_timer);
    ev_timer_set(&t->reconnect_timer, delay, 0.);
    ev_timer_start(t->loop, &t->reconnect_timer);
}

/* The edge asked us to move: attempt 1 of a new outage, at once, outside the backoff policy (the
 * edge is not failing, it is being drained; the ticket we hold resumes the next connection). */
static void schedule_move(synesis_tunnel *t, int err, const char *detail) {
    double delay;
    uint32_t attempt;
    syn_backoff_reset(&t->backoff);
    if (syn_backoff_next(&t->backoff, &delay, &attempt) != 0)
        attempt = 1;
    synesis_tunnel_state s;
    make_state(&s, SYNESIS_STATE_RECONNECTING, err, detail);
    s.attempt = attempt;
    t->outage_started_ms = s.entered_ms;
    syn_tunnel_log(t, SYNESIS_LOG_INFO, "the edge asked us to move: reconnecting at once");
    if (set_state(t, &s) != 0 || syn_hold_dying(&t->hold) ||
        t->state.kind != SYNESIS_STATE_RECONNECTING)
        return;
    t->stats.edge_moves++;
    ev_timer_stop(t->loop, &t->reconnect_timer);
    ev_timer_set(&t->reconnect_timer, 0., 0.);
    ev_timer_start(t->loop, &t->reconnect_timer);
}

/* A connection attempt or a live connection ended with err. */
static void attempt_failed(synesis_tunnel *t, int err, const char *detail) {
    char both[SYNESIS_DETAIL_MAX];
    if (t->on_tcp && t->udp_err && !(t->qc && syn_qconn_handshake_completed(t->qc)) &&
        (err == SYNESIS_ERR_SOCKET || err == SYNESIS_ERR_HANDSHAKE_TIMEOUT ||
         err == SYNESIS_ERR_CONNECTION_LOST)) {
        /* TCP did no better than UDP: the attempt ends with UDP's verdict, TCP's added. Neither
         * getting through is the edge (or the network) down rather than UDP blocked: the next
         * attempt tries UDP first again, and TCP at once if UDP fails once more (not TCP first,
         * which would keep a tunnel on TCP for a probe interval after every edge restart). */
        snprintf(both, sizeof(both), "%s; over TCP too: %s", t->udp_detail,
                 detail ? detail : synesis_strerror(err));
        err = t->udp_err;
        detail = both;
        t->udp_failures = t->cfg.tcp_fallback_after - 1;
    }
    t->udp_err = 0;
    syn_copy_str(t->last_error, sizeof(t->last_error), detail ? detail : synesis_strerror(err));
    t->stats.last_error = err;
    syn_copy_str(t->stats_detail, sizeof(t->stats_detail), t->last_error);
    syn_tunnel_log(t, SYNESIS_LOG_WARN, "%s: %s", synesis_error_name(err), t->last_error);
    int was_up = t->qc && syn_qconn_handshake_completed(t->qc);
    /* Before the handshake, a transport-level failure on one address moves on to the next
     * (IPv4 first, then IPv6); a TLS verdict does not. */
    int on_tcp = t->on_tcp;
    int try_next = !was_up && !on_tcp && t->addr_idx + 1 < t->naddrs &&
                   (err == SYNESIS_ERR_SOCKET || err == SYNESIS_ERR_HANDSHAKE_TIMEOUT ||
                    err == SYNESIS_ERR_CONNECTION_LOST);
    /* UDP failed on this address (refused or unreachable, or nothing heard from the edge): on
     * the last address that is one UDP failure, and enough of them in a row move this same
     * attempt to TCP (config.tcp_fallback_after). */
    int udp_failed =
        !was_up && !on_tcp && t->qc && t->naddrs &&
        (err == SYNESIS_ERR_SOCKET || (err == SYNESIS_ERR_HANDSHAKE_TIMEOUT && !t->udp_heard));
    int to_tcp = 0;
    if (udp_failed && !try_next) {
        t->udp_failures++;
        to_tcp = t->cfg.transport == SYNESIS_TRANSPORT_AUTO &&
                 t->udp_failures >= t->cfg.tcp_fallback_after;
    }
    /* A draining edge asked us to move (CONNECTION_CLOSE SYN_APP_MOVE, docs/protocol.md): what
     * can be sent again waits for the next connection, which starts at once. */
    uint64_t code;
    int moved = was_up && err == SYNESIS_ERR_CLOSED_BY_PEER &&
                t->state.kind == SYNESIS_STATE_CONNECTED && !t->drain.on &&
                syn_qconn_peer_app_close(t->qc, &code) && code == SYN_APP_MOVE;
    if (moved) {
        syn_requests_moved(t);
        if (syn_hold_dying(&t->hold))
            return;
        syn_streams_fail_all(t, SYNESIS_ERR_EDGE_DRAINED,
                             "the edge moved the device before the stream ended");
        if (syn_hold_dying(&t->hold) || t->state.kind != SYNESIS_STATE_CONNECTED)
            return;
    }
    conn_teardown(t, SYNESIS_ERR_CONNECTION_LOST, t->last_error);
    if (syn_hold_dying(&t->hold))
        return;
    if (try_next) {
        t->stats.address_fallbacks++;
        t->addr_idx++;
        connect_addr(t);
        return;
    }
    if (to_tcp) {
        t->udp_err = err;
        syn_copy_str(t->udp_detail, sizeof(t->udp_detail), t->last_error);
        t->stats.tcp_fallbacks++;
        syn_tunnel_log(t, SYNESIS_LOG_INFO,
                       "UDP to %s failed %u time(s) in a row: going on over TCP (port %u)",
                       t->server_name, (unsigned)t->udp_failures, (unsigned)tcp_port(t));
        tcp_start(t);
        return;
    }
    synesis_tunnel_state s;
    switch (t->state.kind) {
    case SYNESIS_STATE_CONNECTING:
        if (t->cfg.retry_initial_connect) {
            schedule_reconnect(t, err, t->last_error);
        } else {
            make_state(&s, SYNESIS_STATE_FAILED, err, t->last_error);
            set_state(t, &s);
        }
        break;
    case SYNESIS_STATE_CONNECTED:
        if (moved) {
            schedule_move(t, err, t->last_error);
            break;
        }
        /* fall through */
    case SYNESIS_STATE_RECONNECTING:
        schedule_reconnect(t, err, t->last_error);
        break;
    default:
        break;
    }
}

static void reconnect_timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    synesis_tunnel *t = w->data;
    syn_tunnel_enter(t);
    if (t->state.kind == SYNESIS_STATE_RECONNECTING)
        start_attempt(t);
    syn_tunnel_leave(t);
}

static void stable_timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    synesis_tunnel *t = w->data;
    syn_backoff_reset(&t->backoff);
}

/* ---- public API ---- */

static int dup_str(char **dst, const char *src) {
    *dst = NULL;
    if (!src)
        return 0;
    *dst = strdup(src);
    return *dst ? 0 : SYNESIS_ERR_NOMEM;
}

static int dup_mem(char **dst, const char *src, size_t len) {
    *dst = NULL;
    if (!src)
        return 0;
    if (!len)
        len = strlen(src);
    *dst = malloc(len + 1);
    if (!*dst)
        return SYNESIS_ERR_NOMEM;
    memcpy(*dst, src, len);
    (*dst)[len] = 0;
    return 0;
}

static int check_config(const synesis_tunnel_config *c, char *detail) {
    if (!c->cloud_url)
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT, "config.cloud_url is NULL");
    if (!c->alpn || !c->alpn[0] || strlen(c->alpn) > 255)
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT, "config.alpn must be 1..255 bytes");
    /* Upper bound: durations become uint64_t nanoseconds for ngtcp2 (a year is plenty). */
    const double year = 365.0 * 86400;
    if (c->idle_timeout > year || c->handshake_timeout > year || c->keep_alive_interval > year ||
        c->heartbeat_interval > year || c->request_timeout > year ||
        c->reconnect_max_delay > year || c->reconnect_stable_period > year)
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                        "config durations must not exceed one year (%.0f s)", year);
    if (!(c->idle_timeout > 0) || !(c->handshake_timeout > 0) || !(c->keep_alive_interval >= 0) ||
        !(c->heartbeat_interval >= 0) || !(c->request_timeout > 0) ||
        !(c->reconnect_stable_period >= 0) || !(c->close_linger >= 0) || c->close_linger > 60)
        return syn_fail(
            detail, SYNESIS_ERR_INVALID_ARGUMENT,
            "config timeouts must be > 0 (keep-alive, heartbeat and stable period >= 0, "
            "close_linger 0 to 60 s)");
    if (!(c->reconnect_initial_delay >= 0) ||
        !(c->reconnect_max_delay >= c->reconnect_initial_delay) ||
        !(c->reconnect_multiplier >= 1.0) || !(c->reconnect_jitter >= 0) || c->reconnect_jitter > 1)
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                        "config reconnect policy invalid: need 0 <= initial <= max, multiplier >= "
                        "1, 0 <= jitter <= 1");
    if (c->max_udp_payload &&
        (c->max_udp_payload < 1200 || c->max_udp_payload > SYN_UDP_MAX_PAYLOAD))
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                        "config.max_udp_payload must be 0 or 1200..%d", SYN_UDP_MAX_PAYLOAD);
    /* The stream window, and four of them as the connection's, are QUIC varints (< 2^62):
     * ngtcp2 asserts on larger transport parameters. */
    if (!c->max_response_size || !c->stream_send_buffer || c->stream_recv_window < 1024 ||
        c->stream_recv_window > SYN_QUIC_MAX_VARINT / 4 || !c->max_heartbeat_size)
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                        "config sizes must be > 0 (stream_recv_window 1024 to 2^60 - 1)");
    if (!c->max_queued_request_bytes)
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                        "config.max_queued_request_bytes must be > 0");
    if ((unsigned)c->congestion_control > SYNESIS_CC_RENO)
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                        "config.congestion_control is not a synesis_congestion_control");
    if (c->n_spki_pins && !c->spki_pins)
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT, "config.spki_pins is NULL");
    if ((unsigned)c->transport > SYNESIS_TRANSPORT_TCP)
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                        "config.transport is not a synesis_transport");
    if (!(c->udp_fallback_timeout > 0) || c->udp_fallback_timeout > year ||
        !(c->udp_reprobe_interval >= 0) || c->udp_reprobe_interval > year)
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                        "config.udp_fallback_timeout must be above 0 and "
                        "config.udp_reprobe_interval 0 or more (both at most a year)");
    if (c->tcp_fallback_after < 1 || c->tcp_fallback_after > 100)
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                        "config.tcp_fallback_after must be 1 to 100");
    if (c->proxy && c->proxy[0]) {
        syn_proxy px;
        char d[SYNESIS_DETAIL_MAX];
        int rv = syn_proxy_select(c->proxy, "localhost", &px, d);
        if (rv < 0)
            return syn_fail(detail, rv, "config.proxy: %s", d);
        syn_proxy_clear(&px);
    }
    return 0;
}

static int copy_config(synesis_tunnel *t, const synesis_tunnel_config *c) {
    t->cfg = *c;
    int rv = 0;
    rv |= dup_str(&t->str_url, c->cloud_url);
    rv |= dup_str(&t->str_server_name, c->server_name);
    rv |= dup_str(&t->str_alpn, c->alpn);
    rv |= dup_str(&t->str_cert, c->cert_path);
    rv |= dup_str(&t->str_key, c->key_path);
    rv |= dup_mem(&t->str_cert_pem, c->cert_pem, c->cert_pem_len);
    rv |= dup_mem(&t->str_key_pem, c->key_pem, c->key_pem_len);
    rv |= dup_str(&t->str_pass, c->key_passphrase);
    rv |= dup_str(&t->str_ca, c->ca_path);
    rv |= dup_str(&t->str_ca_dir, c->ca_dir);
    rv |= dup_str(&t->str_device_id, c->device_id);
    rv |= dup_str(&t->str_disk_path, c->vitals_disk_path);
    rv |= dup_str(&t->str_groups, c->tls_groups);
    rv |= dup_str(&t->str_proxy, c->proxy);
    if (c->n_spki_pins) {
        t->pins = malloc(c->n_spki_pins * 32);
        if (!t->pins)
            rv = SYNESIS_ERR_NOMEM;
        else
            memcpy(t->pins, c->spki_pins, c->n_spki_pins * 32);
    }
    if (rv)
        return SYNESIS_ERR_NOMEM;
    t->cfg.cloud_url = t->str_url;
    t->cfg.server_name = t->str_server_name;
    t->cfg.alpn = t->str_alpn;
    t->cfg.cert_path = t->str_cert;
    t->cfg.key_path = t->str_key;
    t->cfg.cert_pem = t->str_cert_pem;
    t->cfg.cert_pem_len = t->str_cert_pem ? strlen(t->str_cert_pem) : 0;
    t->cfg.key_pem = t->str_key_pem;
    t->cfg.key_pem_len = t->str_key_pem ? strlen(t->str_key_pem) : 0;
    t->cfg.key_passphrase = t->str_pass;
    t->cfg.ca_path = t->str_ca;
    t->cfg.ca_dir = t->str_ca_dir;
    t->cfg.device_id = t->str_device_id;
    t->cfg.vitals_disk_path = t->str_disk_path;
    t->cfg.tls_groups = t->str_groups;
    t->cfg.proxy = t->str_proxy;
    t->cfg.spki_pins = (const uint8_t(*)[32])t->pins;
    t->cfg.share_tls_with = NULL; /* only synesis_tunnel_new() may look at it */
    return 0;
}

/* Forgets the configuration of the TLS context (the identity, trust, pins and groups). */
static void tls_fields_clear(synesis_tunnel_config *c) {
    c->cert_path = c->key_path = c->cert_pem = c->key_pem = c->key_passphrase = NULL;
    c->cert_pem_len = c->key_pem_len = 0;
    c->use_system_trust = 0;
    c->ca_path = c->ca_dir = c->tls_groups = NULL;
    c->spki_pins = NULL;
    c->n_spki_pins = 0;
}

/* Once the TLS context is built the copies of its inputs (a private key and its passphrase among
 * them) are not kept. */
static void tls_inputs_drop(synesis_tunnel *t) {
    if (t->str_key_pem)
        OPENSSL_cleanse(t->str_key_pem, strlen(t->str_key_pem));
    if (t->str_pass)
        OPENSSL_cleanse(t->str_pass, strlen(t->str_pass));
    char **strs[] = {&t->str_cert, &t->str_key, &t->str_cert_pem, &t->str_key_pem,
                     &t->str_pass, &t->str_ca,  &t->str_ca_dir,   &t->str_groups};
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
        free(*strs[i]);
        *strs[i] = NULL;
    }
    free(t->pins);
    t->pins = NULL;
    tls_fields_clear(&t->cfg);
}

/* The tunnel's own TLS context, from the configured identity, trust, pins and groups. */
static int tls_ctx_new(synesis_tunnel *t, char *d) {
    syn_tls_client_config tc = {
        .cert_file = t->cfg.cert_pem ? NULL : t->cfg.cert_path,
        .key_file = t->cfg.key_pem ? NULL : t->cfg.key_path,
        .cert_pem = t->cfg.cert_pem,
        .cert_pem_len = t->cfg.cert_pem_len,
        .key_pem = t->cfg.key_pem,
        .key_pem_len = t->cfg.key_pem_len,
        .key_passphrase = t->cfg.key_passphrase,
        .ca_file = t->cfg.ca_path,
        .ca_dir = t->cfg.ca_dir,
        .use_system_trust = t->cfg.use_system_trust,
        .spki_pins = t->cfg.spki_pins,
        .n_spki_pins = t->cfg.n_spki_pins,
    };
    int rv = syn_tls_client_ctx_new(&t->ssl_ctx, &tc, d);
    if (rv)
        return rv;
    if (t->cfg.tls_groups && (rv = syn_tls_ctx_set_groups(t->ssl_ctx, t->cfg.tls_groups)) != 0) {
        if (rv == SYNESIS_ERR_NOMEM)
            return syn_fail(d, rv, "out of memory");
        return syn_fail(d, SYNESIS_ERR_INVALID_ARGUMENT,
                        "config.tls_groups '%s' is not a list of TLS groups OpenSSL accepts",
                        t->cfg.tls_groups);
    }
    return 0;
}

SYNESIS_API int synesis_tunnel_new(synesis_tunnel **out, struct ev_loop *loop,
                                   const synesis_tunnel_config *cfg,
                                   const synesis_tunnel_callbacks *callbacks, void *user_data,
                                   char *detail, size_t detail_len) {
    char d[SYNESIS_DETAIL_MAX] = "";
    int rv;
    if (out)
        *out = NULL;
    if (!out || !loop || !cfg) {
        rv = syn_fail(d, SYNESIS_ERR_INVALID_ARGUMENT, "out, loop and cfg are required");
        goto fail_early;
    }
    *out = NULL;
    /* The caller's structs, read under the evolution rule into full-size copies. */
    synesis_tunnel_config own;
    config_defaults(&own);
    if ((rv = syn_struct_in(&own, sizeof(own), cfg, "config", d)) != 0)
        goto fail_early;
    cfg = &own;
    synesis_tunnel_callbacks cbs = {.struct_size = sizeof(cbs)};
    if (callbacks && (rv = syn_struct_in(&cbs, sizeof(cbs), callbacks, "callbacks", d)) != 0)
        goto fail_early;
    /* A tunnel sharing another's TLS context neither reads nor checks the fields for its own. */
    if (own.share_tls_with)
        tls_fields_clear(&own);
    if ((rv = check_config(cfg, d)) != 0)
        goto fail_early;
    if ((rv = syn_crypto_init()) != 0) {
        syn_fail(d, rv, "crypto initialisation failed");
        goto fail_early;
    }
    synesis_tunnel *t = calloc(1, sizeof(*t));
    if (!t) {
        rv = syn_fail(d, SYNESIS_ERR_NOMEM, "out of memory");
        goto fail_early;
    }
    t->loop = loop;
    t->fd = -1;
    t->user_data = user_data;
    t->cb = cbs;
    make_state(&t->state, SYNESIS_STATE_DISCONNECTED, 0, NULL);
    t->state.error_detail = t->state_detail;
    ev_timer_init(&t->reconnect_timer, reconnect_timer_cb, 0., 0.);
    syn_drain_init(t);
    t->reconnect_timer.data = t;
    ev_timer_init(&t->stable_timer, stable_timer_cb, 0., 0.);
    t->stable_timer.data = t;
    ev_timer_init(&t->buf_timer, buf_timer_cb, 0., 0.);
    t->buf_timer.data = t;
    ev_timer_init(&t->udp_timer, udp_timer_cb, 0., 0.);
    t->udp_timer.data = t;
    ev_timer_init(&t->probe_timer, probe_timer_cb, 0., 0.);
    t->probe_timer.data = t;
    ev_timer_init(&t->link_grace, link_grace_cb, 0., 0.);
    t->link_grace.data = t;
    syn_migration_init(t);
    if ((rv = copy_config(t, cfg)) != 0) {
        syn_fail(d, rv, "out of memory");
        goto fail;
    }
    if ((rv = syn_url_parse(t->cfg.cloud_url, &t->url, d)) != 0)
        goto fail;
    t->server_name = t->cfg.server_name ? t->cfg.server_name : t->url.host;
    t->resume_off = !t->cfg.resumption;
    t->early_off = !t->cfg.early_data;
    resume_import(t, cfg->resume_data, cfg->resume_data_len);
    t->cfg.resume_data = NULL; /* imported (or not): the caller's buffer is not kept */
    t->cfg.resume_data_len = 0;

    if (cfg->share_tls_with) {
        /* The context of another tunnel, reference counted (cfg's field: the copy forgets the
         * tunnel, which may be freed any time from now on). */
        t->ssl_ctx = cfg->share_tls_with->ssl_ctx;
        if (!t->ssl_ctx || SSL_CTX_up_ref(t->ssl_ctx) != 1) {
            t->ssl_ctx = NULL;
            rv = syn_fail(d, SYNESIS_ERR_INVALID_ARGUMENT,
                          "config.share_tls_with has no TLS context to share");
            goto fail;
        }
    } else if ((rv = tls_ctx_new(t, d)) != 0) {
        goto fail;
    }
    tls_inputs_drop(t);

    syn_qconn_settings_default(&t->qset);
    t->qset.idle_timeout_ns = (uint64_t)(t->cfg.idle_timeout * 1e9);
    t->qset.handshake_timeout_ns = (uint64_t)(t->cfg.handshake_timeout * 1e9);
    t->qset.keep_alive_ns = (uint64_t)(t->cfg.keep_alive_interval * 1e9);
    t->qset.max_udp_payload = t->cfg.max_udp_payload;
    t->qset.pmtud = t->cfg.pmtud;
    t->qset.cc = t->cfg.congestion_control;
    /* An idle device wakes up for each packet the edge sends it (a keep-alive PING, the PING
     * ngtcp2 adds to every few ACKs): its ACK goes out in that same wake-up rather than in a
     * second one, a delay timer later. While data flows, a batch of received packets gets one ACK
     * either way. */
    t->qset.ack_at_once = 1;
    t->qset.trace = t->cfg.log && t->cfg.log_level >= SYNESIS_LOG_TRACE;
    /* The edge may open unidirectional streams for its reports (never bidirectional ones). */
    t->qset.max_streams_bidi = 0;
    t->qset.max_streams_uni = SYN_DEVICE_PEER_UNI_STREAMS;

    uint64_t seed = 0;
    (void)RAND_bytes((unsigned char *)&seed, sizeof(seed));
    syn_backoff_init(&t->backoff, t->cfg.reconnect_initial_delay, t->cfg.reconnect_max_delay,
                     t->cfg.reconnect_multiplier, t->cfg.reconnect_jitter,
                     t->cfg.reconnect_max_attempts, seed);

    t->qset.stream_window = t->cfg.stream_recv_window;
    /* The connection's window is shared by every stream: keep room for several full ones. */
    if (t->qset.conn_window < 4 * (uint64_t)t->cfg.stream_recv_window)
        t->qset.conn_window = 4 * (uint64_t)t->cfg.stream_recv_window;
    if ((rv = syn_heartbeat_init(t, d)) != 0)
        goto fail;

    /* The application's hook and data go to the resolver as they are: a lookup's thread may
     * outlive the tunnel, so it must never see the tunnel itself. */
    t->resolver = syn_resolver_new(loop, t->cfg.resolve, t->cfg.resolve_user_data);
    if (!t->resolver) {
        rv = syn_fail(d, SYNESIS_ERR_NOMEM, "out of memory");
        goto fail;
    }
    *out = t;
    return 0;

fail:
    really_free(t);
fail_early:
    if (detail && detail_len)
        snprintf(detail, detail_len, "%s", d);
    return rv;
}

SYNESIS_API int synesis_tunnel_connect(synesis_tunnel *t) {
    if (!t)
        return SYNESIS_ERR_INVALID_ARGUMENT;
    if (t->state.kind != SYNESIS_STATE_DISCONNECTED && t->state.kind != SYNESIS_STATE_FAILED)
        return SYNESIS_ERR_INVALID_STATE;
    syn_tunnel_enter(t);
    synesis_tunnel_state s;
    make_state(&s, SYNESIS_STATE_CONNECTING, 0, NULL);
    syn_backoff_reset(&t->backoff);
    t->outage_started_ms = 0;
    int rv = set_state(t, &s);
    if (rv == 0 && !syn_hold_dying(&t->hold) && t->state.kind == SYNESIS_STATE_CONNECTING)
        start_attempt(t);
    syn_tunnel_leave(t);
    return rv;
}

SYNESIS_API int synesis_tunnel_disconnect(synesis_tunnel *t) {
    return syn_tunnel_disconnect_err(t, SYNESIS_ERR_CANCELLED,
                                     "the application disconnected the tunnel");
}

int syn_tunnel_disconnect_err(synesis_tunnel *t, int err, const char *detail) {
    if (!t)
        return SYNESIS_ERR_INVALID_ARGUMENT;
    if (t->state.kind == SYNESIS_STATE_DISCONNECTED || t->state.kind == SYNESIS_STATE_FAILED)
        return SYNESIS_ERR_INVALID_STATE;
    syn_tunnel_enter(t);
    syn_drain_stop(t);
    ev_timer_stop(t->loop, &t->reconnect_timer);
    t->linger_teardown = 1; /* the connection closes gracefully in the background */
    conn_teardown(t, err, detail);
    t->linger_teardown = 0;
    synesis_tunnel_state s;
    make_state(&s, SYNESIS_STATE_DISCONNECTED, 0, NULL);
    int rv = set_state(t, &s);
    syn_tunnel_leave(t);
    return rv;
}

syn_resume *syn_tunnel_resume(synesis_tunnel *t) { return t->resume; }

SYNESIS_API int synesis_tunnel_resume_data(const synesis_tunnel *t, uint8_t *buf, size_t len) {
    if (!t || (!buf && len))
        return SYNESIS_ERR_INVALID_ARGUMENT;
    if (t->resume_off || !t->resume)
        return 0;
    uint8_t *blob;
    size_t n;
    /* (The store drops expired tickets as it goes: a cache, not the handle's observable state.) */
    int rv = syn_resume_export(((synesis_tunnel *)t)->resume, t->server_name, &blob, &n);
    if (rv == SYNESIS_ERR_INVALID_STATE)
        return 0;
    if (rv != 0)
        return rv;
    if (n > INT_MAX)
        n = 0; /* cannot be: a DER session and a host name */
    else if (n <= len)
        memcpy(buf, blob, n);
    OPENSSL_cleanse(blob, n);
    free(blob);
    return (int)n;
}

static void really_free(synesis_tunnel *t) {
    /* Callbacks reached while tearing down must not free again. */
    t->hold = (syn_hold){.depth = 1};
    t->cb.on_state = NULL;
    t->cb.on_heartbeat_result = NULL; /* heartbeats in flight are not reported once freed */
    t->nsubs = 0;
    t->state.kind = SYNESIS_STATE_DISCONNECTED; /* nothing new can start from the callbacks */
    if (t->qc)
        syn_qconn_close(t->qc, 0, "client disconnect");
    conn_teardown(t, SYNESIS_ERR_CANCELLED, "the tunnel was freed");
    lingers_end_all(t);
    cancel_everything(t);
    syn_heartbeat_free(t);
    ev_timer_stop(t->loop, &t->reconnect_timer);
    ev_timer_stop(t->loop, &t->stable_timer);
    ev_timer_stop(t->loop, &t->buf_timer);
    ev_timer_stop(t->loop, &t->udp_timer);
    ev_timer_stop(t->loop, &t->probe_timer);
    ev_timer_stop(t->loop, &t->link_grace);
    syn_drain_stop(t);
    if (t->rot.prev_ctx)
        SSL_CTX_free(t->rot.prev_ctx);
    t->rot.prev_ctx = NULL;
    syn_resolver_free(t->resolver);
    if (t->ssl_ctx)
        SSL_CTX_free(t->ssl_ctx);
    if (t->resume) {
        syn_resume_clear(t->resume);
        free(t->resume);
    }
    syn_udp_rx_free(t->rx);
    free(t->subs);
    free(t->queued);
    free(t->str_url);
    free(t->str_server_name);
    free(t->str_alpn);
    free(t->str_cert);
    free(t->str_key);
    if (t->str_key_pem)
        OPENSSL_cleanse(t->str_key_pem, strlen(t->str_key_pem));
    free(t->str_cert_pem);
    free(t->str_key_pem);
    if (t->str_pass)
        OPENSSL_cleanse(t->str_pass, strlen(t->str_pass));
    free(t->str_pass);
    free(t->str_ca);
    free(t->str_ca_dir);
    free(t->str_device_id);
    free(t->str_disk_path);
    free(t->str_groups);
    free(t->str_proxy);
    syn_proxy_clear(&t->proxy);
    free(t->tcp_addrs);
    if (t->tcp_ctx)
        SSL_CTX_free(t->tcp_ctx);
    free(t->pins);
    free(t);
}

/* Completes everything pending with SYNESIS_ERR_CANCELLED and stops the timers: what free()
 * promises, done at once even when the release itself must wait for the stack to unwind. */
static void cancel_everything(synesis_tunnel *t) {
    ev_timer_stop(t->loop, &t->reconnect_timer);
    ev_timer_stop(t->loop, &t->stable_timer);
    syn_heartbeat_stop(t);
    syn_requests_conn_lost(t, SYNESIS_ERR_CANCELLED, "the tunnel was freed");
    syn_requests_fail_waiting(t, SYNESIS_ERR_CANCELLED, "the tunnel was freed", 1);
    syn_streams_fail_all(t, SYNESIS_ERR_CANCELLED, "the tunnel was freed");
}

SYNESIS_API void synesis_tunnel_free(synesis_tunnel *t) {
    if (!t)
        return;
    if (syn_hold_dying(&t->hold))
        return;
    if (syn_hold_release(&t->hold)) {
        really_free(t);
        return;
    }
    /* Called from inside one of our callbacks: the memory is released when control returns to
     * us, but from now on no callback runs, so everything pending completes here. */
    cancel_everything(t);
}

/* The current state, Connected's latency measured now. */
static void current_state(const synesis_tunnel *t, synesis_tunnel_state *out) {
    *out = t->state;
    out->transport = SYNESIS_TRANSPORT_AUTO;
    if (t->state.kind == SYNESIS_STATE_CONNECTED && t->qc) {
        out->latency_ms = syn_qconn_srtt_ms(t->qc);
        out->transport = t->on_tcp ? SYNESIS_TRANSPORT_TCP : SYNESIS_TRANSPORT_UDP;
    }
}

SYNESIS_API int synesis_tunnel_get_state_sized(const synesis_tunnel *t, synesis_tunnel_state *out,
                                               size_t size) {
    if (!t)
        return SYNESIS_ERR_INVALID_ARGUMENT;
    synesis_tunnel_state s;
    current_state(t, &s);
    return syn_struct_out(out, size, &s, sizeof(s));
}

SYNESIS_API int synesis_tunnel_is_connected(const synesis_tunnel *t) {
    return t && t->state.kind == SYNESIS_STATE_CONNECTED;
}

SYNESIS_API int synesis_tunnel_is_healthy(const synesis_tunnel *t) {
    if (!synesis_tunnel_is_connected(t))
        return 0;
    synesis_tunnel_state s;
    current_state(t, &s);
    return s.latency_ms < t->cfg.healthy_latency_ms;
}

SYNESIS_API int synesis_tunnel_subscribe(synesis_tunnel *t, synesis_state_fn fn, void *user_data,
                                         uint32_t *id) {
    if (!t || !fn)
        return SYNESIS_ERR_INVALID_ARGUMENT;
    syn_subscriber *n = syn_grow(t->subs, &t->subs_cap, t->nsubs + 1, sizeof(*n), 4, 0);
    if (!n)
        return SYNESIS_ERR_NOMEM;
    t->subs = n;
    syn_subscriber *s = &t->subs[t->nsubs++];
    s->id = ++t->next_sub_id;
    s->fn = fn;
    s->user_data = user_data;
    if (id)
        *id = s->id;
    return 0;
}

SYNESIS_API int synesis_tunnel_unsubscribe(synesis_tunnel *t, uint32_t id) {
    if (!t)
        return SYNESIS_ERR_INVALID_ARGUMENT;
    for (size_t i = 0; i < t->nsubs; i++) {
        if (t->subs[i].id == id && t->subs[i].fn) {
            t->subs[i].fn = NULL;
            if (!t->notifying)
                compact_subs(t);
            return 0;
        }
    }
    return SYNESIS_ERR_INVALID_ARGUMENT;
}

static void current_stats(const synesis_tunnel *t, synesis_tunnel_stats *out) {
    *out = t->stats;
    out->struct_size = sizeof(*out);
    out->last_error_detail = t->stats_detail;
    out->remote_address = "";
    out->packets_sent = t->pkts_sent_done;
    out->packets_lost = t->pkts_lost_done;
    out->tcp_packets_sent = t->link_pkts_done;
    out->tcp_bytes_sent = t->link_bytes_done;
    if (t->qc) {
        uint64_t lp, lb;
        syn_qconn_link_counters(t->qc, &lp, &lb);
        out->tcp_packets_sent += lp;
        out->tcp_bytes_sent += lb;
        syn_qconn_stats ci;
        syn_qconn_get_stats(t->qc, &ci);
        out->packets_sent += ci.pkt_sent;
        out->packets_lost += ci.pkt_lost;
        out->cwnd = ci.cwnd;
        if (syn_qconn_handshake_completed(t->qc)) {
            out->remote_address = t->remote_str;
            out->rtt_smoothed_us = (uint32_t)(ci.smoothed_rtt / 1000);
            out->rtt_min_us = ci.min_rtt == UINT64_MAX ? 0 : (uint32_t)(ci.min_rtt / 1000);
            out->rtt_latest_us = (uint32_t)(ci.latest_rtt / 1000);
        }
    }
    if (t->state.kind == SYNESIS_STATE_RECONNECTING && t->outage_started_ms)
        out->time_disconnected += (double)((int64_t)syn_wall_ms() - t->outage_started_ms) / 1e3;
}

SYNESIS_API int synesis_tunnel_get_stats_sized(const synesis_tunnel *t, synesis_tunnel_stats *out,
                                               size_t size) {
    if (!t)
        return SYNESIS_ERR_INVALID_ARGUMENT;
    synesis_tunnel_stats st;
    current_stats(t, &st);
    return syn_struct_out(out, size, &st, sizeof(st));
}

SYNESIS_API int synesis_tunnel_stats_json(const synesis_tunnel *t, char *buf, size_t len) {
    if (!t || (!buf && len))
        return SYNESIS_ERR_INVALID_ARGUMENT;
    synesis_tunnel_stats st;
    current_stats(t, &st);
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return SYNESIS_ERR_NOMEM;
    /* Every member or none: a failed add means out of memory, not a shorter object. */
    int ok = 1;
#define NUM(name) ok &= cJSON_AddNumberToObject(o, #name, (double)st.name) != NULL
#define STR(name, value) ok &= cJSON_AddStringToObject(o, name, value) != NULL
    NUM(bytes_sent);
    NUM(bytes_received);
    NUM(requests_sent);
    NUM(requests_succeeded);
    NUM(requests_failed);
    NUM(requests_timed_out);
    NUM(requests_cancelled);
    NUM(streams_opened);
    NUM(heartbeats_sent);
    NUM(heartbeats_delivered);
    NUM(heartbeats_refused);
    NUM(heartbeats_failed);
    NUM(last_heartbeat_sequence);
    NUM(last_heartbeat_rtt_ms);
    NUM(connections);
    NUM(reconnects);
    STR("last_error", st.last_error ? synesis_error_name(st.last_error) : "");
    STR("last_error_detail", st.last_error_detail);
    NUM(time_disconnected);
    NUM(handshake_time);
    NUM(handshake_completed_time);
    NUM(rtt_smoothed_us);
    NUM(rtt_min_us);
    NUM(rtt_latest_us);
    NUM(cwnd);
    NUM(packets_sent);
    NUM(packets_lost);
    STR("remote_address", st.remote_address);
    NUM(address_fallbacks);
    NUM(migrations);
    NUM(migrations_failed);
    NUM(last_migration_gap);
    NUM(resumed_connections);
    NUM(early_data_accepted);
    NUM(early_data_rejected);
    NUM(edge_moves);
    NUM(identity_rotations);
    NUM(tcp_fallbacks);
    NUM(udp_returns);
    NUM(udp_probes_failed);
    NUM(tcp_packets_sent);
    NUM(tcp_bytes_sent);
    STR("state", synesis_state_name(t->state.kind));
    synesis_tunnel_state cs;
    current_state(t, &cs);
    STR("transport", synesis_transport_name(cs.transport));
#undef NUM
#undef STR
    char *json = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!json)
        return SYNESIS_ERR_NOMEM;
    int n = snprintf(buf, len, "%s", json);
    cJSON_free(json);
    return n;
}

SYNESIS_API const char *synesis_tunnel_last_error(const synesis_tunnel *t) {
    return t ? t->last_error : "";
}

SYNESIS_API void *synesis_tunnel_user_data(const synesis_tunnel *t) {
    return t ? t->user_data : NULL;
}

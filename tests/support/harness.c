/* Shared helpers for the integration tests. */
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

const char *syn_test_mkdtemp(const char *prefix) {
    const char *base = getenv("SYNESIS_TEST_TMP");
    char tmpl[512];
    snprintf(tmpl, sizeof(tmpl), "%s/%s-XXXXXX", base && *base ? base : "/tmp", prefix);
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    /* Lives for the test process (a static pool: nothing to free, nothing for LeakSanitizer). */
    static char pool[64][512];
    static int used;
    assert_true(used < 64);
    char *copy = pool[used++];
    snprintf(copy, sizeof(pool[0]), "%s", d);
    return copy;
}

const char *syn_test_path(const char *dir, const char *name) {
    static char bufs[8][512];
    static int i;
    char *b = bufs[i++ % 8];
    snprintf(b, sizeof(bufs[0]), "%s/%s", dir, name);
    return b;
}

const char *syn_test_pki(const char *device_id) {
    const char *dir = syn_test_mkdtemp("pki");
    char detail[512];
    int rv = synesis_identity_create_test_pki(dir, device_id, detail, sizeof(detail));
    if (rv != 0)
        fail_msg("test PKI: %s: %s", synesis_error_name(rv), detail);
    return dir;
}

const char *syn_test_pki_shared(const char *device_id) {
    static struct {
        char id[64];
        const char *dir;
    } made[16];
    static int n;
    for (int i = 0; i < n; i++)
        if (strcmp(made[i].id, device_id) == 0)
            return made[i].dir;
    assert_true(n < 16 && strlen(device_id) < sizeof(made[0].id));
    snprintf(made[n].id, sizeof(made[0].id), "%s", device_id);
    made[n].dir = syn_test_pki(device_id);
    return made[n++].dir;
}

void syn_test_edge_config(syn_edge_config *ec, const char *dir) {
    syn_edge_config_init(ec);
    ec->listen = "127.0.0.1:0";
    ec->cert_file = syn_test_path(dir, "edge.pem");
    ec->key_file = syn_test_path(dir, "edge.key");
    ec->ca_file = syn_test_path(dir, "ca.pem");
}

void syn_test_finish(struct ev_loop *loop, synesis_tunnel *t, syn_edge *e) {
    synesis_tunnel_free(t);
    syn_test_run_for(loop, 0.05);
    syn_edge_free(e);
    assert_int_equal(ev_run(loop, EVRUN_NOWAIT), 0);
    ev_loop_destroy(loop);
}

int syn_test_connected(void *tunnel) { return synesis_tunnel_is_connected(tunnel); }

syn_edge *syn_test_edge_start(struct ev_loop *loop, const syn_edge_config *ec) {
    syn_edge *e = NULL;
    char detail[512];
    int rv = syn_edge_new(&e, loop, ec, detail);
    if (rv != 0)
        fail_msg("edge: %s: %s", synesis_error_name(rv), detail);
    rv = syn_edge_start(e, detail);
    if (rv != 0)
        fail_msg("edge start on %s: %s: %s", ec->listen ? ec->listen : "(default)",
                 synesis_error_name(rv), detail);
    return e;
}

syn_edge *syn_test_edge(struct ev_loop *loop, const char *dir, double idle) {
    syn_edge_config ec;
    syn_test_edge_config(&ec, dir);
    ec.idle_timeout = idle;
    return syn_test_edge_start(loop, &ec);
}

synesis_tunnel *syn_test_tunnel_new(struct ev_loop *loop, const synesis_tunnel_config *cfg,
                                    const synesis_tunnel_callbacks *cb, void *ud) {
    synesis_tunnel *t = NULL;
    char detail[512];
    int rv = synesis_tunnel_new(&t, loop, cfg, cb, ud, detail, sizeof(detail));
    if (rv != 0)
        fail_msg("tunnel: %s: %s", synesis_error_name(rv), detail);
    return t;
}

void syn_test_connect(struct ev_loop *loop, synesis_tunnel *t, double timeout) {
    assert_int_equal(synesis_tunnel_connect(t), 0);
    assert_true(syn_test_run_until(loop, syn_test_connected, t, timeout));
}

synesis_tunnel *syn_test_tunnel_connected(struct ev_loop *loop, const synesis_tunnel_config *cfg,
                                          const synesis_tunnel_callbacks *cb, void *ud,
                                          double timeout) {
    synesis_tunnel *t = syn_test_tunnel_new(loop, cfg, cb, ud);
    syn_test_connect(loop, t, timeout);
    return t;
}

int syn_test_in_state(synesis_tunnel *t, synesis_state_kind kind) {
    synesis_tunnel_state st;
    return synesis_tunnel_get_state(t, &st) == 0 && st.kind == kind;
}

typedef struct state_wait {
    synesis_tunnel *t;
    synesis_state_kind kind;
} state_wait;

static int state_reached(void *ud) {
    state_wait *w = ud;
    return syn_test_in_state(w->t, w->kind);
}

int syn_test_wait_state(struct ev_loop *loop, synesis_tunnel *t, synesis_state_kind kind,
                        double timeout) {
    state_wait w = {t, kind};
    return syn_test_run_until(loop, state_reached, &w, timeout);
}

void syn_test_tunnel_config(synesis_tunnel_config *cfg, const char *dir, uint16_t port) {
    static char url[8][64];
    static int i;
    char *u = url[i++ % 8];
    snprintf(u, sizeof(url[0]), "quic://127.0.0.1:%u", port);
    synesis_tunnel_config_init(cfg);
    cfg->cloud_url = u;
    cfg->server_name = "localhost";
    cfg->cert_path = syn_test_path(dir, "device.pem");
    cfg->key_path = syn_test_path(dir, "device.key");
    cfg->ca_path = syn_test_path(dir, "ca.pem");
    cfg->use_system_trust = 0;
    cfg->handshake_timeout = 3.0;
    cfg->idle_timeout = 5.0;
    cfg->keep_alive_interval = 1.0;
    cfg->heartbeat_interval = 0;
    cfg->reconnect_initial_delay = 0.02;
    cfg->reconnect_max_delay = 0.2;
    /* UDP only: the tests of UDP behaviour (refusals, timeouts, reconnects) must not go on over
     * TCP when the edge is away; test_tcp and udp_blocked.sh set auto and tcp themselves. */
    cfg->transport = SYNESIS_TRANSPORT_UDP;
}

typedef struct until_ctx {
    int (*pred)(void *);
    void *ud;
    int done;
} until_ctx;

/* An ev_prepare runs after each iteration's callbacks, just before the loop would block: the
 * condition is seen as soon as a callback made it true, even when nothing else is pending. */
static void check_cb(struct ev_loop *loop, ev_prepare *w, int revents) {
    (void)revents;
    until_ctx *c = w->data;
    if (c->pred && c->pred(c->ud)) {
        c->done = 1;
        ev_break(loop, EVBREAK_ONE);
    }
}

static void deadline_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ONE);
}

int syn_test_run_until(struct ev_loop *loop, int (*pred)(void *), void *ud, double timeout) {
    if (pred && pred(ud))
        return 1;
    until_ctx c = {pred, ud, 0};
    ev_prepare chk;
    ev_prepare_init(&chk, check_cb);
    /* Lowest priority: after the library's own prepare watchers (a deferred flush), so what they
     * do is seen in the same iteration. */
    ev_set_priority(&chk, EV_MINPRI);
    chk.data = &c;
    ev_prepare_start(loop, &chk);
    ev_timer dl;
    ev_timer_init(&dl, deadline_cb, timeout, 0.);
    ev_timer_start(loop, &dl);
    ev_now_update(loop);
    ev_run(loop, 0);
    ev_prepare_stop(loop, &chk);
    ev_timer_stop(loop, &dl);
    return pred ? pred(ud) : 1;
}

void syn_test_run_for(struct ev_loop *loop, double seconds) {
    syn_test_run_until(loop, NULL, NULL, seconds);
}

void syn_test_record_state(synesis_tunnel *t, const synesis_tunnel_state *old_state,
                           const synesis_tunnel_state *new_state, void *user_data) {
    (void)t;
    (void)old_state;
    syn_test_states *s = user_data;
    if (s->n < 64) {
        s->kinds[s->n] = new_state->kind;
        s->errors[s->n] = new_state->error;
        s->attempts[s->n] = new_state->attempt;
        s->n++;
    }
}

int syn_test_find_state(const syn_test_states *s, synesis_state_kind kind, int from) {
    for (int i = from; i < s->n; i++)
        if (s->kinds[i] == kind)
            return i;
    return -1;
}

int syn_test_settled(void *states) {
    return syn_test_find_state(states, SYNESIS_STATE_CONNECTED, 0) >= 0 ||
           syn_test_find_state(states, SYNESIS_STATE_FAILED, 0) >= 0;
}

typedef struct record_wait {
    const syn_test_states *s;
    synesis_state_kind kind;
    uint32_t min_attempt;
    int from;
    int found;
} record_wait;

static int recorded(void *ud) {
    record_wait *w = ud;
    for (int i = w->from; i < w->s->n; i++)
        if (w->s->kinds[i] == w->kind && w->s->attempts[i] >= w->min_attempt) {
            w->found = i;
            return 1;
        }
    return 0;
}

int syn_test_wait_recorded(struct ev_loop *loop, const syn_test_states *s, synesis_state_kind kind,
                           uint32_t min_attempt, int from, double timeout) {
    record_wait w = {s, kind, min_attempt, from, -1};
    if (!syn_test_run_until(loop, recorded, &w, timeout))
        fail_msg("no transition to %s (attempt >= %u) within %.1f s", synesis_state_name(kind),
                 min_attempt, timeout);
    return w.found;
}

/* ---- requests ---- */

void syn_test_on_response(synesis_tunnel *t, synesis_request *req, const synesis_response *r,
                          void *user_data) {
    (void)t;
    (void)req;
    syn_test_result *res = user_data;
    res->calls++;
    res->status = r->status;
    res->app_code = r->app_error_code;
    free(res->data);
    res->data = NULL;
    res->len = r->len;
    if (r->len) {
        res->data = malloc(r->len);
        assert_non_null(res->data);
        memcpy(res->data, r->data, r->len);
    }
    snprintf(res->detail, sizeof(res->detail), "%s", r->detail ? r->detail : "");
}

int syn_test_response_done(void *result) { return ((syn_test_result *)result)->calls > 0; }

void syn_test_request(struct ev_loop *loop, synesis_tunnel *t, const void *data, size_t len,
                      const synesis_request_options *opts, syn_test_result *res, double timeout) {
    memset(res, 0, sizeof(*res));
    assert_int_equal(synesis_tunnel_request(t, data, len, opts, syn_test_on_response, res, NULL),
                     0);
    assert_true(syn_test_run_until(loop, syn_test_response_done, res, timeout));
    assert_int_equal(res->calls, 1);
}

/* ---- raw client ---- */

static void raw_closed(syn_qconn *qc, int err, const char *detail) {
    syn_test_raw_client *c = syn_qconn_owner(qc);
    c->done = 1;
    c->closed = 1;
    c->err = err;
    snprintf(c->detail, sizeof(c->detail), "%s", detail);
}

static void raw_handshake(syn_qconn *qc) {
    syn_test_raw_client *c = syn_qconn_owner(qc);
    c->done = 1;
    c->err = 0;
}

static void raw_stream_close(syn_qconn *qc, syn_qstream *s, uint64_t code, int reset) {
    (void)reset;
    syn_test_raw_client *c = syn_qconn_owner(qc);
    if (syn_qstream_id(s) & 1)
        return; /* one of the edge's streams */
    c->stream_closes++;
    c->last_close_code = code;
}

static int raw_stream_open(syn_qconn *qc, syn_qstream *s) {
    (void)qc;
    (void)s;
    return 0;
}

/* Data on our own streams goes to data; on the edge's streams (reports), to peer_data. */
static void raw_stream_data(syn_qconn *qc, syn_qstream *s, const uint8_t *data, size_t len,
                            int fin) {
    syn_test_raw_client *c = syn_qconn_owner(qc);
    if (syn_qstream_id(s) & 1) {
        size_t n =
            len < sizeof(c->peer_data) - c->peer_len ? len : sizeof(c->peer_data) - c->peer_len;
        if (n)
            memcpy(c->peer_data + c->peer_len, data, n);
        c->peer_len += n;
        if (fin)
            c->peer_fins++;
        return;
    }
    for (size_t i = 0; i < len; i++, c->data_len++)
        if (c->data_len < sizeof(c->data))
            c->data[c->data_len] = data[i];
}

static const syn_qconn_ops raw_ops = {
    .handshake_done = raw_handshake,
    .stream_open = raw_stream_open,
    .stream_data = raw_stream_data,
    .stream_close = raw_stream_close,
    .closed = raw_closed,
};

static void raw_rio(struct ev_loop *loop, ev_io *w, int revents) {
    (void)loop;
    (void)revents;
    syn_test_raw_client *c = w->data;
    do { /* the rest of a coalesced read too: nothing may wake us up for it */
        int n = syn_udp_recv(c->fd, c->rx);
        if (n > 0)
            c->rx_count += (uint64_t)n;
        for (int i = 0; i < n && !c->closed; i++)
            syn_qconn_recv(c->qc, &c->local, &c->rx->d[i].remote, 0, c->rx->d[i].data,
                           c->rx->d[i].len);
    } while (syn_udp_rx_pending(c->rx) && !c->closed);
    if (!c->closed)
        syn_qconn_flush(c->qc);
}

int syn_test_raw_done(void *client) { return ((syn_test_raw_client *)client)->done; }

syn_test_raw_client *syn_test_raw_client_new(struct ev_loop *loop, uint16_t port,
                                             const char *pki_dir, const char *cert,
                                             const char *key) {
    return syn_test_raw_client_new_st(loop, port, pki_dir, cert, key, NULL);
}

syn_test_raw_client *syn_test_raw_client_new_st(struct ev_loop *loop, uint16_t port,
                                                const char *pki_dir, const char *cert,
                                                const char *key, const syn_qconn_settings *sto) {
    syn_test_raw_client *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->rx = syn_udp_rx_new(SYN_UDP_RX_BYTES_CLIENT);
    assert_non_null(c->rx);
    c->loop = loop;
    c->ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(c->ctx);
    SSL_CTX_set_min_proto_version(c->ctx, TLS1_3_VERSION);
    assert_int_equal(SSL_CTX_load_verify_locations(c->ctx, syn_test_path(pki_dir, "ca.pem"), NULL),
                     1);
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    if (cert) {
        assert_int_equal(SSL_CTX_use_certificate_chain_file(c->ctx, cert), 1);
        assert_int_equal(SSL_CTX_use_PrivateKey_file(c->ctx, key, SSL_FILETYPE_PEM), 1);
    }
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = htons(port)};
    syn_sockaddr remote = {.len = sizeof(a)};
    memcpy(&remote.ss, &a, sizeof(a));
    c->fd = syn_udp_open((struct sockaddr *)&a, sizeof(a), NULL, 0, 1, &c->local, c->detail);
    assert_true(c->fd >= 0);
    syn_qconn_settings st;
    syn_qconn_settings_default(&st);
    st.handshake_timeout_ns = 3000000000ull;
    st.max_streams_uni = SYN_DEVICE_PEER_UNI_STREAMS; /* the edge's reports */
    if (sto)
        st = *sto;
    assert_int_equal(syn_qconn_client_new(&c->qc, loop, c->fd, &c->local, &remote, c->ctx,
                                          "localhost", "synesis-tunnel/1", &st, &raw_ops, c,
                                          c->detail),
                     0);
    ev_io_init(&c->rio, raw_rio, c->fd, EV_READ);
    c->rio.data = c;
    ev_io_start(loop, &c->rio);
    syn_qconn_flush(c->qc);
    return c;
}

int syn_test_raw_client_migrate(syn_test_raw_client *c) {
    const syn_sockaddr *remote = syn_qconn_remote(c->qc);
    syn_sockaddr local;
    char detail[512];
    int fd =
        syn_udp_open((const struct sockaddr *)&remote->ss, remote->len, NULL, 0, 1, &local, detail);
    assert_true(fd >= 0);
    int rv = syn_qconn_migrate(c->qc, fd, &local);
    if (rv != 0) {
        close(fd);
        return rv;
    }
    ev_io_stop(c->loop, &c->rio);
    close(c->fd);
    c->fd = fd;
    c->local = local;
    ev_io_set(&c->rio, fd, EV_READ);
    ev_io_start(c->loop, &c->rio);
    return 0;
}

void syn_test_raw_client_free(syn_test_raw_client *c) {
    ev_io_stop(c->loop, &c->rio);
    syn_udp_rx_free(c->rx);
    syn_qconn_free(c->qc);
    close(c->fd);
    SSL_CTX_free(c->ctx);
    free(c);
}

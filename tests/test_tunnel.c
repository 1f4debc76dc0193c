/* The CloudTunnel against the reference edge over real UDP on loopback, with real certificates. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "qconn.h"
#include "tls.h"
#include "tunnel_int.h"

typedef struct fixture {
    struct ev_loop *loop;
    const char *pki;
    syn_edge *edge;
    char edge_log[16][512];
    int edge_log_n;
} fixture;

static void edge_log(void *ud, const char *line) {
    fixture *f = ud;
    if (f->edge_log_n < 16)
        snprintf(f->edge_log[f->edge_log_n++], sizeof(f->edge_log[0]), "%s", line);
}

static int find_log(fixture *f, const char *needle, const char *needle2) {
    for (int i = 0; i < f->edge_log_n; i++)
        if (strstr(f->edge_log[i], needle) && (!needle2 || strstr(f->edge_log[i], needle2)))
            return i;
    return -1;
}

static const char *shared_pki;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof(*f));
    f->loop = ev_loop_new(EVFLAG_AUTO);
    shared_pki = syn_test_pki_shared("test-1");
    f->pki = shared_pki;
    syn_edge_config ec;
    syn_test_edge_config(&ec, f->pki);
    ec.idle_timeout = 5;
    ec.log = edge_log;
    ec.log_user_data = f;
    f->edge = syn_test_edge_start(f->loop, &ec);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    syn_edge_free(f->edge);
    /* Nothing of ours may stay active: the loop must have no watcher left. */
    assert_int_equal(ev_run(f->loop, EVRUN_NOWAIT), 0);
    ev_loop_destroy(f->loop);
    free(f);
    return 0;
}

static synesis_tunnel *new_tunnel(fixture *f, synesis_tunnel_config *cfg, syn_test_states *rec) {
    synesis_tunnel *t = NULL;
    synesis_tunnel_callbacks cb = {.struct_size = sizeof(synesis_tunnel_callbacks),
                                   .on_state = rec ? syn_test_record_state : NULL};
    t = syn_test_tunnel_new(f->loop, cfg, &cb, rec);
    return t;
}

static void test_connect_and_disconnect(void **state) {
    fixture *f = *state;
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, f->pki, syn_edge_port(f->edge));
    syn_test_states rec = {0};
    synesis_tunnel *t = new_tunnel(f, &cfg, &rec);
    assert_false(synesis_tunnel_is_connected(t));
    syn_test_connect(f->loop, t, 5);
    assert_true(synesis_tunnel_is_connected(t));
    assert_true(synesis_tunnel_is_healthy(t)); /* loopback RTT is far below 500 ms */
    synesis_tunnel_state s;
    synesis_tunnel_get_state(t, &s);
    assert_true(s.entered_ms > 0);
    assert_int_equal(s.error, 0);
    assert_string_equal(syn_edge_last_device(f->edge), "test-1");
    assert_true(find_log(f, "\"event\":\"connection\"", "\"device_id\":\"test-1\"") >= 0);

    assert_int_equal(synesis_tunnel_disconnect(t), 0);
    assert_false(synesis_tunnel_is_connected(t));
    /* The edge receives our CONNECTION_CLOSE and logs it with its reason. */
    syn_test_run_for(f->loop, 0.2);
    assert_true(find_log(f, "\"event\":\"close\"", "client disconnect") >= 0);
    syn_edge_stats es;
    syn_edge_get_stats(f->edge, &es);
    assert_int_equal(es.handshakes, 1);
    assert_int_equal(es.active, 0);
    assert_int_equal(rec.n, 3);
    assert_int_equal(rec.kinds[0], SYNESIS_STATE_CONNECTING);
    assert_int_equal(rec.kinds[1], SYNESIS_STATE_CONNECTED);
    assert_int_equal(rec.kinds[2], SYNESIS_STATE_DISCONNECTED);
    /* Connect again from Disconnected works. */
    syn_test_connect(f->loop, t, 5);
    synesis_tunnel_free(t);
    syn_test_run_for(f->loop, 0.1);
    syn_edge_get_stats(f->edge, &es);
    assert_int_equal(es.active, 0); /* free closed the connection too */
}

/* The key-exchange groups and the congestion controller are the application's choice: a tunnel
 * with X25519 only and BBR connects and carries a request, as does one with the defaults. */
static void test_groups_and_congestion_control(void **state) {
    fixture *f = *state;
    static const struct {
        const char *groups;
        synesis_congestion_control cc;
    } cases[] = {
        {"X25519",                SYNESIS_CC_BBR  },
        {"X25519MLKEM768:X25519", SYNESIS_CC_RENO },
        {NULL,                    SYNESIS_CC_CUBIC},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        synesis_tunnel_config cfg;
        syn_test_tunnel_config(&cfg, f->pki, syn_edge_port(f->edge));
        cfg.tls_groups = cases[i].groups;
        cfg.congestion_control = cases[i].cc;
        synesis_tunnel *t = new_tunnel(f, &cfg, NULL);
        syn_test_connect(f->loop, t, 5);
        syn_test_result res;
        syn_test_request(f->loop, t, "SRC 300000\n", 11, NULL, &res, 5);
        assert_int_equal(res.status, 0);
        assert_int_equal(res.len, 300000);
        free(res.data);
        synesis_tunnel_free(t);
        syn_test_run_for(f->loop, 0.05);
    }
}

/* config.share_tls_with: a tunnel uses another tunnel's TLS context (identity, trust, pins) and
 * neither reads nor checks its own TLS fields; the context outlives the tunnel it came from. */
static void test_shared_tls_context(void **state) {
    fixture *f = *state;
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, f->pki, syn_edge_port(f->edge));
    synesis_tunnel *a = new_tunnel(f, &cfg, NULL);

    /* TLS fields that would fail on their own. */
    synesis_tunnel_config bad;
    syn_test_tunnel_config(&bad, f->pki, syn_edge_port(f->edge));
    bad.cert_path = "/nonexistent/device.pem";
    bad.key_path = "/nonexistent/device.key";
    bad.ca_path = "/nonexistent/ca.pem";
    bad.n_spki_pins = 2; /* and no pins */
    bad.tls_groups = "no-such-group";
    synesis_tunnel *t = NULL;
    char detail[512];
    assert_int_not_equal(synesis_tunnel_new(&t, f->loop, &bad, NULL, NULL, detail, sizeof(detail)),
                         0);
    assert_null(t);
    bad.share_tls_with = a;
    synesis_tunnel *b = new_tunnel(f, &bad, NULL);
    assert_ptr_equal(b->ssl_ctx, a->ssl_ctx);
    assert_null(b->cfg.share_tls_with); /* the copy does not keep the other tunnel */

    /* The tunnel it came from goes first; the shared context stays. */
    synesis_tunnel_free(a);
    syn_test_connect(f->loop, b, 5);
    assert_string_equal(syn_edge_last_device(f->edge), "test-1"); /* a's certificate */
    syn_test_result res;
    syn_test_request(f->loop, b, "SRC 100000\n", 11, NULL, &res, 5);
    assert_int_equal(res.status, 0);
    assert_int_equal(res.len, 100000);
    free(res.data);

    /* Pins come with the context: a context pinned to another key fails the handshake of every
     * tunnel sharing it. */
    static const uint8_t wrong_pin[1][32] = {
        {1, 2, 3}
    };
    cfg.spki_pins = wrong_pin;
    cfg.n_spki_pins = 1;
    synesis_tunnel *pinned = new_tunnel(f, &cfg, NULL);
    synesis_tunnel_config share;
    syn_test_tunnel_config(&share, f->pki, syn_edge_port(f->edge));
    share.share_tls_with = pinned;
    synesis_tunnel *c = new_tunnel(f, &share, NULL);
    assert_int_equal(synesis_tunnel_connect(c), 0);
    assert_true(syn_test_wait_state(f->loop, c, SYNESIS_STATE_FAILED, 5));
    synesis_tunnel_state st;
    synesis_tunnel_get_state(c, &st);
    assert_int_equal(st.error, SYNESIS_ERR_PEER_PIN_MISMATCH);
    synesis_tunnel_free(c);
    synesis_tunnel_free(pinned);
    synesis_tunnel_free(b);
    syn_test_run_for(f->loop, 0.1);
}

/* Every pair (from, to) of the five states: exactly the design's transitions are applied. */
static void test_transition_table(void **state) {
    fixture *f = *state;
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, f->pki, syn_edge_port(f->edge));
    const synesis_state_kind all[] = {SYNESIS_STATE_DISCONNECTED, SYNESIS_STATE_CONNECTING,
                                      SYNESIS_STATE_CONNECTED, SYNESIS_STATE_RECONNECTING,
                                      SYNESIS_STATE_FAILED};
    /* valid[from][to]; Reconnecting -> Reconnecting only with attempt + 1 (checked below);
     * Connecting/Reconnecting -> Disconnected are the application's disconnect(). */
    // clang-format off
    static const int valid[5][5] = {
        /* to:              Disc Conn'g Conn'd Recon Failed */
        /* Disconnected */ {0,   1,     0,     0,    0},
        /* Connecting   */ {1,   0,     1,     0,    1},
        /* Connected    */ {1,   0,     0,     1,    0},
        /* Reconnecting */ {1,   0,     1,     1,    1},
        /* Failed       */ {0,   1,     0,     0,    0},
    };
    /* A path from Disconnected to each state, through valid transitions only. */
    static const synesis_state_kind path[5][4] = {
        {SYNESIS_STATE_DISCONNECTED},
        {SYNESIS_STATE_CONNECTING},
        {SYNESIS_STATE_CONNECTING, SYNESIS_STATE_CONNECTED},
        {SYNESIS_STATE_CONNECTING, SYNESIS_STATE_CONNECTED, SYNESIS_STATE_RECONNECTING},
        {SYNESIS_STATE_CONNECTING, SYNESIS_STATE_FAILED},
    };
    // clang-format on
    static const int path_len[5] = {0, 1, 2, 3, 2};
    for (int from = 0; from < 5; from++) {
        for (int to = 0; to < 5; to++) {
            synesis_tunnel *t = new_tunnel(f, &cfg, NULL);
            for (int i = 0; i < path_len[from]; i++)
                assert_int_equal(syn_tunnel_try_transition(t, path[from][i], 1), 0);
            synesis_tunnel_state s;
            synesis_tunnel_get_state(t, &s);
            assert_int_equal(s.kind, all[from]);
            uint32_t attempt = (all[to] == SYNESIS_STATE_RECONNECTING) ? s.attempt + 1 : 1;
            int rv = syn_tunnel_try_transition(t, all[to], attempt);
            if (valid[from][to])
                assert_int_equal(rv, 0);
            else
                assert_int_equal(rv, SYNESIS_ERR_INVALID_STATE);
            synesis_tunnel_get_state(t, &s);
            assert_int_equal(s.kind, valid[from][to] ? all[to] : all[from]);
            synesis_tunnel_free(t);
        }
    }
    /* Reconnecting(n) -> Reconnecting(m) only for m = n + 1. */
    synesis_tunnel *t = new_tunnel(f, &cfg, NULL);
    assert_int_equal(syn_tunnel_try_transition(t, SYNESIS_STATE_CONNECTING, 0), 0);
    assert_int_equal(syn_tunnel_try_transition(t, SYNESIS_STATE_CONNECTED, 0), 0);
    assert_int_equal(syn_tunnel_try_transition(t, SYNESIS_STATE_RECONNECTING, 1), 0);
    assert_int_equal(syn_tunnel_try_transition(t, SYNESIS_STATE_RECONNECTING, 3),
                     SYNESIS_ERR_INVALID_STATE);
    assert_int_equal(syn_tunnel_try_transition(t, SYNESIS_STATE_RECONNECTING, 1),
                     SYNESIS_ERR_INVALID_STATE);
    assert_int_equal(syn_tunnel_try_transition(t, SYNESIS_STATE_RECONNECTING, 2), 0);
    synesis_tunnel_free(t);
    /* The public calls refuse what the state does not allow. */
    t = new_tunnel(f, &cfg, NULL);
    assert_int_equal(synesis_tunnel_disconnect(t), SYNESIS_ERR_INVALID_STATE);
    assert_int_equal(synesis_tunnel_connect(t), 0);
    assert_int_equal(synesis_tunnel_connect(t), SYNESIS_ERR_INVALID_STATE);
    assert_true(syn_test_wait_state(f->loop, t, SYNESIS_STATE_CONNECTED, 5));
    assert_int_equal(synesis_tunnel_connect(t), SYNESIS_ERR_INVALID_STATE);
    synesis_tunnel_free(t);
    syn_test_run_for(f->loop, 0.05);
}

static int both_connected(void *ud) {
    synesis_tunnel **ts = ud;
    return synesis_tunnel_is_connected(ts[0]) && synesis_tunnel_is_connected(ts[1]);
}

static void test_two_tunnels_one_loop(void **state) {
    fixture *f = *state;
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, f->pki, syn_edge_port(f->edge));
    synesis_tunnel *ts[2] = {new_tunnel(f, &cfg, NULL), new_tunnel(f, &cfg, NULL)};
    assert_int_equal(synesis_tunnel_connect(ts[0]), 0);
    assert_int_equal(synesis_tunnel_connect(ts[1]), 0);
    assert_true(syn_test_run_until(f->loop, both_connected, ts, 5));
    syn_edge_stats es;
    syn_edge_get_stats(f->edge, &es);
    assert_int_equal(es.active, 2);
    assert_int_equal(synesis_tunnel_disconnect(ts[0]), 0);
    syn_test_run_for(f->loop, 0.1);
    assert_true(synesis_tunnel_is_connected(ts[1]));
    syn_edge_get_stats(f->edge, &es);
    assert_int_equal(es.active, 1);
    synesis_tunnel_free(ts[0]);
    synesis_tunnel_free(ts[1]);
    syn_test_run_for(f->loop, 0.1);
}

typedef struct free_ctx {
    int calls;
    int freed;
} free_ctx;

static void free_on_connected(synesis_tunnel *t, const synesis_tunnel_state *o,
                              const synesis_tunnel_state *n, void *ud) {
    (void)o;
    free_ctx *c = ud;
    c->calls++;
    assert_int_equal(c->freed, 0); /* no callback after free */
    if (n->kind == SYNESIS_STATE_CONNECTED) {
        synesis_tunnel_free(t);
        c->freed = 1;
    }
}

static int ctx_freed(void *ud) { return ((free_ctx *)ud)->freed; }

static void test_free_from_state_callback(void **state) {
    fixture *f = *state;
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, f->pki, syn_edge_port(f->edge));
    free_ctx c = {0};
    synesis_tunnel *t = NULL;
    synesis_tunnel_callbacks cb = {.struct_size = sizeof(synesis_tunnel_callbacks),
                                   .on_state = free_on_connected};
    assert_int_equal(synesis_tunnel_new(&t, f->loop, &cfg, &cb, &c, NULL, 0), 0);
    /* A second subscriber must not be called once the first freed the tunnel. */
    assert_int_equal(synesis_tunnel_subscribe(t, free_on_connected, &c, NULL), 0);
    assert_int_equal(synesis_tunnel_connect(t), 0);
    assert_true(syn_test_run_until(f->loop, ctx_freed, &c, 5));
    /* Connecting (on_state and subscriber), then Connected: on_state frees, so the subscriber is
     * not called for it. */
    assert_int_equal(c.calls, 3);
    syn_test_run_for(f->loop, 0.2);
    syn_edge_stats es;
    syn_edge_get_stats(f->edge, &es);
    assert_int_equal(es.active, 0); /* the connection was closed, not leaked */
}

static void disconnect_on_connected(synesis_tunnel *t, const synesis_tunnel_state *o,
                                    const synesis_tunnel_state *n, void *ud) {
    (void)o;
    (void)ud;
    if (n->kind == SYNESIS_STATE_CONNECTED)
        assert_int_equal(synesis_tunnel_disconnect(t), 0);
}

static int edge_saw_close(void *ud) {
    return find_log(ud, "\"event\":\"close\"", "client disconnect") >= 0;
}

/* disconnect() from inside a callback, while the connection is on the stack: the close is
 * deferred, and it must still reach the edge. */
static void test_disconnect_from_callback_sends_close(void **state) {
    fixture *f = *state;
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, f->pki, syn_edge_port(f->edge));
    synesis_tunnel *t = NULL;
    synesis_tunnel_callbacks cb = {.struct_size = sizeof(synesis_tunnel_callbacks),
                                   .on_state = disconnect_on_connected};
    assert_int_equal(synesis_tunnel_new(&t, f->loop, &cfg, &cb, NULL, NULL, 0), 0);
    assert_int_equal(synesis_tunnel_connect(t), 0);
    assert_true(syn_test_run_until(f->loop, edge_saw_close, f, 5));
    synesis_tunnel_state st;
    synesis_tunnel_get_state(t, &st);
    assert_int_equal(st.kind, SYNESIS_STATE_DISCONNECTED);
    synesis_tunnel_free(t);
}

static void count_cb(synesis_tunnel *t, const synesis_tunnel_state *o,
                     const synesis_tunnel_state *n, void *ud) {
    (void)t;
    (void)o;
    (void)n;
    (*(int *)ud)++;
}

static void test_subscribers(void **state) {
    fixture *f = *state;
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, f->pki, syn_edge_port(f->edge));
    synesis_tunnel *t = new_tunnel(f, &cfg, NULL);
    int a = 0, b = 0;
    uint32_t ida, idb;
    assert_int_equal(synesis_tunnel_subscribe(t, count_cb, &a, &ida), 0);
    assert_int_equal(synesis_tunnel_subscribe(t, count_cb, &b, &idb), 0);
    assert_int_not_equal(ida, idb);
    syn_test_connect(f->loop, t, 5);
    assert_int_equal(a, 2);
    assert_int_equal(b, 2);
    assert_int_equal(synesis_tunnel_unsubscribe(t, ida), 0);
    assert_int_equal(synesis_tunnel_unsubscribe(t, ida), SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(synesis_tunnel_disconnect(t), 0);
    assert_int_equal(a, 2);
    assert_int_equal(b, 3);
    synesis_tunnel_free(t);
}

/* Nothing listens: the ICMP port-unreachable ends the attempt at once. */
static void test_connect_refused(void **state) {
    fixture *f = *state;
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &len), 0);
    close(s); /* the port is now closed */
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, f->pki, ntohs(a.sin_port));
    syn_test_states rec = {0};
    synesis_tunnel *t = new_tunnel(f, &cfg, &rec);
    assert_int_equal(synesis_tunnel_connect(t), 0);
    assert_true(syn_test_wait_state(f->loop, t, SYNESIS_STATE_FAILED, cfg.handshake_timeout + 1));
    synesis_tunnel_state st;
    synesis_tunnel_get_state(t, &st);
    if (st.error != SYNESIS_ERR_SOCKET || !strstr(st.error_detail, "refused"))
        fail_msg("%s: %s", synesis_error_name(st.error), st.error_detail);
    /* From Failed, connect() starts again. */
    assert_int_equal(synesis_tunnel_connect(t), 0);
    assert_true(syn_test_wait_state(f->loop, t, SYNESIS_STATE_FAILED, cfg.handshake_timeout + 1));
    synesis_tunnel_free(t);
}

/* A peer that swallows everything: the handshake timeout ends the attempt, not a hang. */
static void test_handshake_timeout(void **state) {
    fixture *f = *state;
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &len), 0);
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, f->pki, ntohs(a.sin_port));
    cfg.handshake_timeout = 0.5;
    synesis_tunnel *t = new_tunnel(f, &cfg, NULL);
    assert_int_equal(synesis_tunnel_connect(t), 0);
    assert_true(syn_test_wait_state(f->loop, t, SYNESIS_STATE_FAILED, 5));
    synesis_tunnel_state st;
    synesis_tunnel_get_state(t, &st);
    assert_int_equal(st.error, SYNESIS_ERR_HANDSHAKE_TIMEOUT);
    synesis_tunnel_free(t);
    close(s);
}

static void expect_failure(fixture *f, synesis_tunnel_config *cfg, int code) {
    synesis_tunnel *t = new_tunnel(f, cfg, NULL);
    assert_int_equal(synesis_tunnel_connect(t), 0);
    assert_true(syn_test_wait_state(f->loop, t, SYNESIS_STATE_FAILED, 5));
    synesis_tunnel_state st;
    synesis_tunnel_get_state(t, &st);
    if (st.error != code)
        fail_msg("expected %s, got %s: %s", synesis_error_name(code), synesis_error_name(st.error),
                 st.error_detail);
    assert_true(strlen(st.error_detail) > 0);
    synesis_tunnel_free(t);
    syn_test_run_for(f->loop, 0.05);
}

static void test_untrusted_edge(void **state) {
    fixture *f = *state;
    const char *other = syn_test_pki("other"); /* trusts another CA */
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, f->pki, syn_edge_port(f->edge));
    cfg.ca_path = syn_test_path(other, "ca.pem");
    expect_failure(f, &cfg, SYNESIS_ERR_PEER_UNTRUSTED);
}

static void test_hostname_mismatch(void **state) {
    fixture *f = *state;
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, f->pki, syn_edge_port(f->edge));
    cfg.server_name = "edge.example.com";
    expect_failure(f, &cfg, SYNESIS_ERR_PEER_NAME_MISMATCH);
}

static void test_ip_literal_verified(void **state) {
    fixture *f = *state;
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, f->pki, syn_edge_port(f->edge));
    cfg.server_name = NULL; /* the URL's 127.0.0.1, which the edge certificate carries */
    synesis_tunnel *t = new_tunnel(f, &cfg, NULL);
    syn_test_connect(f->loop, t, 5);
    synesis_tunnel_free(t);
    syn_test_run_for(f->loop, 0.05);
}

static void test_alpn_mismatch(void **state) {
    fixture *f = *state;
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, f->pki, syn_edge_port(f->edge));
    cfg.alpn = "h3";
    expect_failure(f, &cfg, SYNESIS_ERR_ALPN);
}

static void test_client_cert_from_other_ca(void **state) {
    fixture *f = *state;
    const char *other = syn_test_pki("intruder");
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, f->pki, syn_edge_port(f->edge));
    cfg.cert_path = syn_test_path(other, "device.pem");
    cfg.key_path = syn_test_path(other, "device.key");
    expect_failure(f, &cfg, SYNESIS_ERR_CLIENT_CERT_REJECTED);
    syn_edge_stats es;
    syn_edge_get_stats(f->edge, &es);
    assert_int_equal(es.handshakes, 0);
}

/* Raw clients that bypass the tunnel's own checks, to prove the edge refuses them. */
static int raw_handshake_with(fixture *f, const char *cert, const char *key, char *detail) {
    syn_test_raw_client *c =
        syn_test_raw_client_new(f->loop, syn_edge_port(f->edge), f->pki, cert, key);
    assert_true(syn_test_run_until(f->loop, syn_test_raw_done, c, 5));
    int err = c->err;
    snprintf(detail, SYNESIS_DETAIL_MAX, "%s", c->detail);
    syn_test_raw_client_free(c);
    return err;
}

static void test_edge_refuses_client_without_certificate(void **state) {
    fixture *f = *state;
    char detail[SYNESIS_DETAIL_MAX];
    int err = raw_handshake_with(f, NULL, NULL, detail);
    assert_int_equal(err, SYNESIS_ERR_CLIENT_CERT_REJECTED);
    syn_edge_stats es;
    syn_edge_get_stats(f->edge, &es);
    assert_int_equal(es.handshakes, 0);
    assert_true(es.tls_failures >= 1);
}

static void test_edge_refuses_expired_client_certificate(void **state) {
    fixture *f = *state;
    /* A device certificate from the right CA whose validity ended yesterday. */
    const char *dir = syn_test_mkdtemp("expired");
    synesis_pki_cert_options o;
    synesis_pki_cert_options_init(&o, SYNESIS_CERT_PROFILE_DEVICE);
    o.common_name = "device-expired";
    o.days = 1;
    o.not_before_offset_s = -3 * 86400;
    o.issuer_cert_file = syn_test_path(f->pki, "ca.pem");
    o.issuer_key_file = syn_test_path(f->pki, "ca.key");
    char detail[SYNESIS_DETAIL_MAX];
    char cert[512], key[512];
    snprintf(cert, sizeof(cert), "%s", syn_test_path(dir, "d.pem"));
    snprintf(key, sizeof(key), "%s", syn_test_path(dir, "d.key"));
    assert_int_equal(synesis_pki_create_cert(&o, cert, key, detail, sizeof(detail)), 0);
    /* The tunnel itself refuses to present it... */
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, f->pki, syn_edge_port(f->edge));
    cfg.cert_path = cert;
    cfg.key_path = key;
    synesis_tunnel *t = NULL;
    assert_int_equal(synesis_tunnel_new(&t, f->loop, &cfg, NULL, NULL, detail, sizeof(detail)),
                     SYNESIS_ERR_CERT_EXPIRED);
    assert_null(t);
    /* ...and the edge refuses it when a client presents it anyway. */
    int err = raw_handshake_with(f, cert, key, detail);
    assert_int_equal(err, SYNESIS_ERR_CLIENT_CERT_REJECTED);
    syn_edge_stats es;
    syn_edge_get_stats(f->edge, &es);
    assert_int_equal(es.handshakes, 0);
}

/* A resolver that takes seconds must not stop other timers on the loop. */
static int slow_resolve(const char *host, uint16_t port, struct sockaddr_storage *addrs,
                        unsigned *lens, size_t max, void *ud) {
    (void)host;
    (void)max;
    (void)ud;
    usleep(1500 * 1000);
    struct sockaddr_in *a = (struct sockaddr_in *)&addrs[0];
    memset(a, 0, sizeof(*a));
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    lens[0] = sizeof(*a);
    return 1;
}

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    (*(int *)w->data)++;
}

static void test_slow_dns_does_not_block_loop(void **state) {
    fixture *f = *state;
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, f->pki, syn_edge_port(f->edge));
    cfg.cloud_url = "quic://edge.test.invalid:1"; /* a name: goes through the resolver */
    char url[64];
    snprintf(url, sizeof(url), "quic://edge.test.invalid:%u", syn_edge_port(f->edge));
    cfg.cloud_url = url;
    cfg.resolve = slow_resolve;
    synesis_tunnel *t = new_tunnel(f, &cfg, NULL);
    int ticks = 0;
    ev_timer tick;
    ev_timer_init(&tick, tick_cb, 0.01, 0.01);
    tick.data = &ticks;
    ev_timer_start(f->loop, &tick);
    syn_test_connect(f->loop, t, 6);
    ev_timer_stop(f->loop, &tick);
    /* 1.5 s of lookup at 10 ms per tick: the loop kept running throughout. */
    assert_true(ticks >= 50);
    synesis_tunnel_free(t);
    syn_test_run_for(f->loop, 0.05);
}

static int quick_slow_resolve(const char *host, uint16_t port, struct sockaddr_storage *addrs,
                              unsigned *lens, size_t max, void *ud) {
    (void)ud;
    (void)host;
    (void)max;
    usleep(300 * 1000);
    struct sockaddr_in *a = (struct sockaddr_in *)&addrs[0];
    memset(a, 0, sizeof(*a));
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    lens[0] = sizeof(*a);
    return 1;
}

static void never_called(synesis_tunnel *t, const synesis_tunnel_state *o,
                         const synesis_tunnel_state *n, void *ud) {
    (void)t;
    (void)o;
    (void)ud;
    if (n->kind != SYNESIS_STATE_CONNECTING)
        fail_msg("state callback after free: %s", synesis_state_name(n->kind));
}

/* free() in every phase of a connection attempt: nothing runs afterwards, nothing is left. */
static void test_free_in_every_phase(void **state) {
    fixture *f = *state;
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, f->pki, syn_edge_port(f->edge));
    char url[64];
    snprintf(url, sizeof(url), "quic://edge.test.invalid:%u", syn_edge_port(f->edge));
    synesis_tunnel_callbacks cb = {.struct_size = sizeof(synesis_tunnel_callbacks),
                                   .on_state = never_called};
    /* While the name is being resolved (the resolver thread outlives the tunnel). */
    cfg.cloud_url = url;
    cfg.resolve = quick_slow_resolve;
    synesis_tunnel *t = NULL;
    assert_int_equal(synesis_tunnel_new(&t, f->loop, &cfg, &cb, NULL, NULL, 0), 0);
    assert_int_equal(synesis_tunnel_connect(t), 0);
    syn_test_run_for(f->loop, 0.05);
    synesis_tunnel_free(t);
    syn_test_run_for(f->loop, 0.5); /* the lookup ends; its result goes nowhere */
    /* During the handshake (the Initial is out, no answer yet). */
    syn_test_tunnel_config(&cfg, f->pki, syn_edge_port(f->edge));
    assert_int_equal(synesis_tunnel_new(&t, f->loop, &cfg, &cb, NULL, NULL, 0), 0);
    assert_int_equal(synesis_tunnel_connect(t), 0);
    synesis_tunnel_free(t);
    syn_test_run_for(f->loop, 0.1);
    /* While Reconnecting, with the backoff timer running. */
    synesis_tunnel_callbacks none = {.struct_size = sizeof(synesis_tunnel_callbacks)};
    cfg.reconnect_initial_delay = 5;
    cfg.reconnect_max_delay = 5;
    assert_int_equal(synesis_tunnel_new(&t, f->loop, &cfg, &none, NULL, NULL, 0), 0);
    syn_test_connect(f->loop, t, 5);
    syn_edge_stop(f->edge, 1);
    syn_test_run_for(f->loop, 0.1);
    synesis_tunnel_state st;
    synesis_tunnel_get_state(t, &st);
    assert_int_equal(st.kind, SYNESIS_STATE_RECONNECTING);
    synesis_tunnel_free(t);
    /* teardown checks that the loop has nothing left */
}

static void test_bad_config(void **state) {
    fixture *f = *state;
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, f->pki, syn_edge_port(f->edge));
    synesis_tunnel *t = NULL;
    char detail[512];
    cfg.cloud_url = "tcp://nope";
    assert_int_equal(synesis_tunnel_new(&t, f->loop, &cfg, NULL, NULL, detail, sizeof(detail)),
                     SYNESIS_ERR_INVALID_URL);
    assert_null(t);
    assert_non_null(strstr(detail, "tcp://nope"));
    syn_test_tunnel_config(&cfg, f->pki, syn_edge_port(f->edge));
    cfg.cert_path = "/nonexistent/device.pem";
    assert_int_equal(synesis_tunnel_new(&t, f->loop, &cfg, NULL, NULL, detail, sizeof(detail)),
                     SYNESIS_ERR_FILE_NOT_FOUND);
    assert_non_null(strstr(detail, "/nonexistent/device.pem"));
    syn_test_tunnel_config(&cfg, f->pki, syn_edge_port(f->edge));
    cfg.struct_size = 4; /* does not even cover struct_size: never initialised */
    assert_int_equal(synesis_tunnel_new(&t, f->loop, &cfg, NULL, NULL, detail, sizeof(detail)),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    syn_test_tunnel_config(&cfg, f->pki, syn_edge_port(f->edge));
    cfg.idle_timeout = 0;
    assert_int_equal(synesis_tunnel_new(&t, f->loop, &cfg, NULL, NULL, detail, sizeof(detail)),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(synesis_tunnel_new(NULL, f->loop, &cfg, NULL, NULL, NULL, 0),
                     SYNESIS_ERR_INVALID_ARGUMENT);
}

static void test_config_defaults(void **state) {
    (void)state;
    synesis_tunnel_config cfg;
    synesis_tunnel_config_init(&cfg);
    assert_int_equal(cfg.struct_size, sizeof(cfg));
    assert_string_equal(cfg.cloud_url, "quic://superinstance.ai:443");
    assert_string_equal(cfg.alpn, "synesis-tunnel/1");
    assert_true(cfg.keep_alive_interval == 10.0);
    assert_true(cfg.idle_timeout == 60.0);
    assert_true(cfg.heartbeat_interval == 30.0);
    assert_true(cfg.reconnect_initial_delay == 1.0);
    assert_true(cfg.reconnect_max_delay == 60.0);
    assert_true(cfg.reconnect_multiplier == 2.0);
    assert_int_equal(cfg.reconnect_max_attempts, 10);
    assert_int_equal(cfg.max_response_size, 16 * 1024 * 1024);
    assert_int_equal(cfg.healthy_latency_ms, 500);
    assert_int_equal(cfg.use_system_trust, 1);
    assert_null(cfg.log);
    assert_string_equal(synesis_state_name(SYNESIS_STATE_RECONNECTING), "Reconnecting");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_defaults),
        cmocka_unit_test_setup_teardown(test_connect_and_disconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transition_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_tunnels_one_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_from_state_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subscribers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disconnect_from_callback_sends_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handshake_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_untrusted_edge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostname_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ip_literal_verified, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alpn_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_cert_from_other_ca, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edge_refuses_client_without_certificate, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_edge_refuses_expired_client_certificate, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_slow_dns_does_not_block_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_in_every_phase, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_groups_and_congestion_control, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shared_tls_context, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

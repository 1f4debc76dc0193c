/*
 * Requests queued with queue_while_reconnecting across a real outage, end to end against the
 * reference edge: Connected -> Reconnecting -> Connected with the edge stopped and started again
 * on the same port, and with the path blackholed (fault proxy) for longer than the idle timeout.
 * A request made during the outage is sent after the reconnection and completes exactly once,
 * with the edge's answer to it (the edge answered it exactly once too). And the queue's byte
 * bound (config.max_queued_request_bytes): over it, SYNESIS_ERR_QUEUE_FULL at once. Short
 * intervals throughout; waits are for conditions with generous deadlines.
 */
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

#include "fault_proxy.h"
#include "harness.h"
#include "synesis/request.h"

typedef struct fixture {
    struct ev_loop *loop;
    const char *pki;
    syn_edge *edge;
    syn_fault_proxy *proxy;
    synesis_tunnel *t;
    syn_test_states states;
} fixture;

static const char *shared_pki;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->loop = ev_loop_new(EVFLAG_AUTO);
    shared_pki = syn_test_pki_shared("queue-1");
    f->pki = shared_pki;
    f->edge = syn_test_edge(f->loop, f->pki, 2);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    synesis_tunnel_free(f->t);
    syn_test_run_for(f->loop, 0.05);
    syn_fault_proxy_free(f->proxy);
    syn_edge_free(f->edge);
    assert_int_equal(ev_run(f->loop, EVRUN_NOWAIT), 0);
    ev_loop_destroy(f->loop);
    free(f);
    return 0;
}

static void tunnel_config(fixture *f, synesis_tunnel_config *cfg, uint16_t port) {
    syn_test_tunnel_config(cfg, f->pki, port);
    cfg->keep_alive_interval = 0.1;
    cfg->idle_timeout = 1;
    cfg->handshake_timeout = 0.3;
    cfg->reconnect_initial_delay = 0.02;
    cfg->reconnect_max_delay = 0.1;
    cfg->reconnect_max_attempts = 100; /* the outage lasts as long as the test wants */
    cfg->request_timeout = 20;
}

static void start_tunnel(fixture *f, const synesis_tunnel_config *cfg) {
    synesis_tunnel_callbacks cb = {.struct_size = sizeof(synesis_tunnel_callbacks),
                                   .on_state = syn_test_record_state};
    f->t = syn_test_tunnel_connected(f->loop, cfg, &cb, &f->states, 5);
    /* Let what follows the handshake go out before any outage (see test_reconnect). */
    syn_test_run_for(f->loop, 0.2);
}

/* A body of n bytes the edge echoes (no command word first), distinct per seed. */
static uint8_t *make_body(size_t n, uint32_t seed) {
    uint8_t *b = malloc(n);
    assert_non_null(b);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        b[i] = (uint8_t)x;
    }
    b[0] = 'q';
    return b;
}

static synesis_request_options queueing(void) {
    synesis_request_options o;
    synesis_request_options_init(&o);
    o.queue_while_reconnecting = 1;
    return o;
}

static uint64_t edge_requests(fixture *f) {
    syn_edge_stats es;
    syn_edge_get_stats(f->edge, &es);
    return es.requests;
}

static uint64_t edge_handshakes(fixture *f) {
    syn_edge_stats es;
    syn_edge_get_stats(f->edge, &es);
    return es.handshakes;
}

static void expect_echo(const syn_test_result *res, const uint8_t *body, size_t n) {
    assert_int_equal(res->calls, 1);
    if (res->status != 0)
        fail_msg("request failed: %s", synesis_error_name(res->status));
    assert_int_equal(res->len, n);
    assert_memory_equal(res->data, body, n);
}

/* The request made during the outage waits, unsent, and goes out on the new connection. */
static void queued_across(fixture *f, syn_test_result *res, const uint8_t *body, size_t n,
                          uint64_t edge_requests_before) {
    assert_true(syn_test_run_until(f->loop, syn_test_response_done, res, 10));
    expect_echo(res, body, n);
    /* Exactly once: no second callback, and the edge answered one request, on the new
     * connection. */
    syn_test_run_for(f->loop, 0.3);
    assert_int_equal(res->calls, 1);
    assert_int_equal(edge_requests(f), edge_requests_before + 1);
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(f->t, &st);
    assert_int_equal(st.reconnects, 1);
    assert_int_equal(st.requests_sent, 1);
    assert_int_equal(st.requests_succeeded, 1);
    assert_int_equal(st.requests_failed, 0);
}

/* The edge goes away (graceful stop: CONNECTION_CLOSE) and comes back on the same port. */
static void test_queued_request_survives_edge_restart(void **state) {
    fixture *f = *state;
    synesis_tunnel_config cfg;
    tunnel_config(f, &cfg, syn_edge_port(f->edge));
    start_tunnel(f, &cfg);
    uint64_t handshakes0 = edge_handshakes(f), requests0 = edge_requests(f);

    int mark = f->states.n;
    syn_edge_stop(f->edge, 1);
    syn_test_wait_recorded(f->loop, &f->states, SYNESIS_STATE_RECONNECTING, 1, mark, 6);
    /* Several packets' worth, so the whole request must cross on the new connection. */
    size_t n = 100 * 1024;
    uint8_t *body = make_body(n, 1);
    synesis_request_options o = queueing();
    syn_test_result res = {0}, plain = {0};
    assert_int_equal(synesis_tunnel_request(f->t, body, n, &o, syn_test_on_response, &res, NULL),
                     0);
    /* Without the option, a request made now fails at once, without a callback. */
    assert_int_equal(synesis_tunnel_request(f->t, "p", 1, NULL, syn_test_on_response, &plain, NULL),
                     SYNESIS_ERR_NOT_CONNECTED);
    /* While the edge is away the request waits through failed attempts, unsent. */
    syn_test_wait_recorded(f->loop, &f->states, SYNESIS_STATE_RECONNECTING, 3, mark, 6);
    assert_int_equal(res.calls, 0);
    assert_int_equal(edge_requests(f), requests0);

    char detail[512];
    assert_int_equal(syn_edge_start(f->edge, detail), 0);
    syn_test_wait_recorded(f->loop, &f->states, SYNESIS_STATE_CONNECTED, 0, mark, 6);
    queued_across(f, &res, body, n, requests0);
    assert_int_equal(edge_handshakes(f), handshakes0 + 1);
    assert_int_equal(plain.calls, 0);
    free(res.data);
    free(body);
}

/* The path goes dark for longer than the idle timeout: the connection is declared dead
 * (Reconnecting), attempts time out into the dark, the request waits; the path comes back and the
 * request is answered. A request already sent when the path went dark is in flight: it fails
 * with SYNESIS_ERR_CONNECTION_LOST when the connection is declared dead (the documented limit of
 * queue_while_reconnecting), once. */
static void test_queued_request_survives_blackhole(void **state) {
    fixture *f = *state;
    struct sockaddr_in l = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct sockaddr_in up = l;
    up.sin_port = htons(syn_edge_port(f->edge));
    f->proxy = syn_fault_proxy_new(f->loop, (struct sockaddr *)&l, sizeof(l),
                                   (struct sockaddr *)&up, sizeof(up), 11);
    assert_non_null(f->proxy);
    synesis_tunnel_config cfg;
    tunnel_config(f, &cfg, syn_fault_proxy_port(f->proxy));
    start_tunnel(f, &cfg);
    uint64_t requests0 = edge_requests(f);

    int mark = f->states.n;
    syn_fault_proxy_blackhole(f->proxy, 1);
    synesis_request_options o = queueing();
    syn_test_result lost = {0};
    assert_int_equal(
        synesis_tunnel_request(f->t, "q in flight", 11, &o, syn_test_on_response, &lost, NULL), 0);
    syn_test_wait_recorded(f->loop, &f->states, SYNESIS_STATE_RECONNECTING, 1, mark, 6);
    assert_int_equal(f->states.errors[mark], SYNESIS_ERR_IDLE_TIMEOUT);
    assert_int_equal(lost.calls, 1);
    assert_int_equal(lost.status, SYNESIS_ERR_CONNECTION_LOST);

    size_t n = 64 * 1024;
    uint8_t *body = make_body(n, 2);
    syn_test_result res = {0};
    assert_int_equal(synesis_tunnel_request(f->t, body, n, &o, syn_test_on_response, &res, NULL),
                     0);
    /* At least one attempt ends by its handshake timeout while the request waits. */
    syn_test_wait_recorded(f->loop, &f->states, SYNESIS_STATE_RECONNECTING, 2, mark, 6);
    assert_int_equal(res.calls, 0);

    syn_fault_proxy_blackhole(f->proxy, 0);
    syn_test_wait_recorded(f->loop, &f->states, SYNESIS_STATE_CONNECTED, 0, mark, 6);
    assert_true(syn_test_run_until(f->loop, syn_test_response_done, &res, 10));
    expect_echo(&res, body, n);
    syn_test_run_for(f->loop, 0.3);
    assert_int_equal(res.calls, 1);
    assert_int_equal(lost.calls, 1);
    /* The in-flight one may or may not have reached the edge before the dark; the queued one
     * was answered exactly once. */
    uint64_t answered = edge_requests(f) - requests0;
    assert_true(answered == 1 || answered == 2);
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(f->t, &st);
    assert_int_equal(st.reconnects, 1);
    assert_int_equal(st.requests_sent, 2);
    assert_int_equal(st.requests_succeeded, 1);
    assert_int_equal(st.requests_failed, 1);
    free(res.data);
    free(body);
}

typedef struct release_rec {
    int calls;
} release_rec;

static void on_release(const void *data, size_t len, void *ud) {
    (void)data;
    (void)len;
    ((release_rec *)ud)->calls++;
}

/* config.max_queued_request_bytes: the default, the validation, and the bound itself. */
static void test_queue_byte_bound(void **state) {
    fixture *f = *state;
    synesis_tunnel_config cfg;
    synesis_tunnel_config_init(&cfg);
    assert_int_equal(cfg.max_queued_request_bytes, 64u * 1024 * 1024);
    tunnel_config(f, &cfg, syn_edge_port(f->edge));
    cfg.max_queued_request_bytes = 0;
    synesis_tunnel *bad = NULL;
    char detail[512];
    assert_int_equal(synesis_tunnel_new(&bad, f->loop, &cfg, NULL, NULL, detail, sizeof(detail)),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    assert_null(bad);
    assert_non_null(strstr(detail, "max_queued_request_bytes"));

    cfg.max_queued_request_bytes = 1000;
    start_tunnel(f, &cfg);
    int mark = f->states.n;
    syn_edge_stop(f->edge, 1);
    syn_test_wait_recorded(f->loop, &f->states, SYNESIS_STATE_RECONNECTING, 1, mark, 6);

    synesis_request_options o = queueing();
    uint8_t *a = make_body(600, 3), *b = make_body(401, 4), *c = make_body(400, 5);
    uint8_t *d = make_body(5000, 6), *e = make_body(600, 7), *g = make_body(1001, 8);
    syn_test_result ra = {0}, rb = {0}, rc = {0}, rd = {0}, re = {0}, rg = {0}, r1 = {0};
    synesis_request *req_a = NULL;
    assert_int_equal(synesis_tunnel_request(f->t, a, 600, &o, syn_test_on_response, &ra, &req_a),
                     0);
    /* 600 + 401 > 1000: refused at once, no callback. */
    assert_int_equal(synesis_tunnel_request(f->t, b, 401, &o, syn_test_on_response, &rb, NULL),
                     SYNESIS_ERR_QUEUE_FULL);
    /* 600 + 400 = 1000: at the bound, taken. */
    assert_int_equal(synesis_tunnel_request(f->t, c, 400, &o, syn_test_on_response, &rc, NULL), 0);
    assert_int_equal(synesis_tunnel_request(f->t, "q", 1, &o, syn_test_on_response, &r1, NULL),
                     SYNESIS_ERR_QUEUE_FULL);
    /* A no-copy body stays the application's: not counted. */
    release_rec rel = {0};
    assert_int_equal(synesis_tunnel_request_nocopy(f->t, d, 5000, on_release, &rel, &o,
                                                   syn_test_on_response, &rd, NULL),
                     0);
    /* A request leaving the queue gives its bytes back. */
    assert_int_equal(synesis_request_cancel(req_a), 0);
    assert_int_equal(ra.calls, 1);
    assert_int_equal(ra.status, SYNESIS_ERR_CANCELLED);
    assert_int_equal(synesis_tunnel_request(f->t, e, 600, &o, syn_test_on_response, &re, NULL), 0);
    assert_int_equal(synesis_tunnel_request(f->t, "q", 1, &o, syn_test_on_response, &r1, NULL),
                     SYNESIS_ERR_QUEUE_FULL);

    /* The edge comes back: every queued request is answered, once, with its own echo. */
    assert_int_equal(syn_edge_start(f->edge, detail), 0);
    syn_test_wait_recorded(f->loop, &f->states, SYNESIS_STATE_CONNECTED, 0, mark, 6);
    assert_true(syn_test_run_until(f->loop, syn_test_response_done, &rc, 10));
    assert_true(syn_test_run_until(f->loop, syn_test_response_done, &rd, 10));
    assert_true(syn_test_run_until(f->loop, syn_test_response_done, &re, 10));
    expect_echo(&rc, c, 400);
    expect_echo(&rd, d, 5000);
    expect_echo(&re, e, 600);
    assert_int_equal(rel.calls, 1);
    assert_int_equal(rb.calls + r1.calls, 0);

    /* Connected, the same bound: a single body larger than it can never be queued... */
    assert_int_equal(synesis_tunnel_request(f->t, g, 1001, NULL, syn_test_on_response, &rg, NULL),
                     SYNESIS_ERR_QUEUE_FULL);
    assert_int_equal(rg.calls, 0);
    /* ...and one at the bound goes through (the queue is empty again). */
    syn_test_result full;
    syn_test_request(f->loop, f->t, g, 1000, NULL, &full, 5);
    expect_echo(&full, g, 1000);
    free(full.data);
    free(rc.data);
    free(rd.data);
    free(re.data);
    free(ra.data);
    free(a);
    free(b);
    free(c);
    free(d);
    free(e);
    free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_queued_request_survives_edge_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queued_request_survives_blackhole, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_byte_bound, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

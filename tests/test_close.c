/* Graceful close: the last response is acknowledged before CONNECTION_CLOSE (the edge's
 * responses_unacked stays 0), the close linger delivers what was just queued, and connect() or
 * free() during a linger work; the first two over TCP too (the linger keeps the link). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "fault_proxy.h"
#include "harness.h"
#include "tunnel_int.h"

#define ROUNDS 50

typedef struct fixture {
    struct ev_loop *loop;
    const char *pki;
    syn_edge *edge;
    synesis_tunnel *t;
    synesis_tunnel_config cfg;
    int mode; /* what the response callback does: 0 disconnect, 1 free, 2 nothing */
    int responses;
    int last_status;
    int hb_queued;
    int hb_delivered, hb_other;
} fixture;

static const char *pki;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof(*f));
    f->loop = ev_loop_new(EVFLAG_AUTO);
    pki = syn_test_pki_shared("close-1");
    f->edge = syn_test_edge(f->loop, pki, 5.0);
    syn_test_tunnel_config(&f->cfg, pki, syn_edge_port(f->edge));
    *state = f;
    return 0;
}

/* The same over QUIC over TCP (transport TCP forced): the linger keeps the link, and the
 * CONNECTION_CLOSE goes on it once everything is acknowledged, then close_notify. */
static int setup_tcp(void **state) {
    setup(state);
    ((fixture *)*state)->cfg.transport = SYNESIS_TRANSPORT_TCP;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    syn_test_finish(f->loop, f->t, f->edge);
    free(f);
    return 0;
}

static uint64_t edge_closed(fixture *f) {
    syn_edge_stats s;
    syn_edge_get_stats(f->edge, &s);
    return s.closed;
}

static uint64_t edge_unacked(fixture *f) {
    syn_edge_stats s;
    syn_edge_get_stats(f->edge, &s);
    return s.responses_unacked;
}

typedef struct closed_wait {
    fixture *f;
    uint64_t n;
} closed_wait;

static int edge_closed_at_least(void *ud) {
    closed_wait *w = ud;
    return edge_closed(w->f) >= w->n;
}

/* The response callback ends the tunnel's connection at once, as an application that got what it
 * wanted would. */
static void on_response(synesis_tunnel *t, synesis_request *req, const synesis_response *resp,
                        void *ud) {
    (void)req;
    fixture *f = ud;
    f->responses++;
    f->last_status = resp->status;
    if (f->mode == 0) {
        assert_int_equal(synesis_tunnel_disconnect(t), 0);
    } else if (f->mode == 1) {
        synesis_tunnel_free(t);
        f->t = NULL;
    }
}

static int got_response(void *ud) { return ((fixture *)ud)->responses > 0; }

static void one_round(fixture *f, int round) {
    if (!f->t) {
        f->t = syn_test_tunnel_new(f->loop, &f->cfg, NULL, f);
    }
    syn_test_connect(f->loop, f->t, 5);
    f->responses = 0;
    char msg[64];
    int n = snprintf(msg, sizeof(msg), "hello %d", round);
    assert_int_equal(synesis_tunnel_request(f->t, msg, (size_t)n, NULL, on_response, f, NULL), 0);
    assert_true(syn_test_run_until(f->loop, got_response, f, 5));
    assert_int_equal(f->last_status, 0);
}

/* Each of ROUNDS connections: one request, disconnect() from inside its response callback, then
 * the edge sees the connection end with the response acknowledged. The same tunnel connects again
 * for the next round, possibly while the previous connection still lingers. */
static void test_disconnect_in_response_callback_acks_response(void **state) {
    fixture *f = *state;
    f->mode = 0;
    for (int i = 0; i < ROUNDS; i++) {
        one_round(f, i);
        assert_false(synesis_tunnel_is_connected(f->t));
        closed_wait w = {f, (uint64_t)i + 1};
        assert_true(syn_test_run_until(f->loop, edge_closed_at_least, &w, 5));
    }
    syn_edge_stats s;
    syn_edge_get_stats(f->edge, &s);
    assert_int_equal(s.handshakes, ROUNDS);
    if (s.responses_unacked != 0)
        fail_msg("%llu of %d responses unacknowledged when the connection ended",
                 (unsigned long long)s.responses_unacked, ROUNDS);
}

/* The same with close_linger 0: the close is immediate, and the ACK still goes first. */
static void test_disconnect_no_linger_acks_response(void **state) {
    fixture *f = *state;
    f->mode = 0;
    f->cfg.close_linger = 0;
    for (int i = 0; i < ROUNDS; i++) {
        one_round(f, i);
        closed_wait w = {f, (uint64_t)i + 1};
        assert_true(syn_test_run_until(f->loop, edge_closed_at_least, &w, 5));
    }
    if (edge_unacked(f) != 0)
        fail_msg("%llu of %d responses unacknowledged", (unsigned long long)edge_unacked(f),
                 ROUNDS);
}

/* synesis_tunnel_free() from inside the response callback: immediate, ACK first. */
static void test_free_in_response_callback_acks_response(void **state) {
    fixture *f = *state;
    f->mode = 1;
    for (int i = 0; i < ROUNDS; i++) {
        one_round(f, i);
        assert_null(f->t);
        closed_wait w = {f, (uint64_t)i + 1};
        assert_true(syn_test_run_until(f->loop, edge_closed_at_least, &w, 5));
    }
    if (edge_unacked(f) != 0)
        fail_msg("%llu of %d responses unacknowledged", (unsigned long long)edge_unacked(f),
                 ROUNDS);
}

/* A heartbeat queued right before disconnect() still reaches the edge: the connection lingers
 * until it is acknowledged, and the tunnel learns it was delivered. */
static void on_hb_disconnect(synesis_tunnel *t, const synesis_heartbeat_info *info, void *ud) {
    fixture *f = ud;
    if (info->status == 0 && !f->hb_queued) {
        f->hb_queued = 1;
        assert_int_equal(synesis_tunnel_disconnect(t), 0);
    }
}

static void on_hb_result(synesis_tunnel *t, const synesis_heartbeat_info *info, void *ud) {
    fixture *f = ud;
    assert_false(synesis_tunnel_is_connected(t)); /* known only after the disconnect */
    if (info->status == 0)
        f->hb_delivered++;
    else
        f->hb_other++;
}

static int hb_result_known(void *ud) {
    fixture *f = ud;
    return f->hb_delivered + f->hb_other > 0;
}

static int edge_has_heartbeat(void *ud) {
    syn_edge_stats s;
    syn_edge_get_stats(((fixture *)ud)->edge, &s);
    return s.heartbeats >= 1;
}

static void test_linger_delivers_queued_heartbeat(void **state) {
    fixture *f = *state;
    f->cfg.heartbeat_interval = 10; /* the first goes right after Connected */
    synesis_tunnel_callbacks cb = {.struct_size = sizeof(synesis_tunnel_callbacks),
                                   .on_heartbeat = on_hb_disconnect,
                                   .on_heartbeat_result = on_hb_result};
    f->t = syn_test_tunnel_connected(f->loop, &f->cfg, &cb, f, 5);
    assert_true(syn_test_run_until(f->loop, edge_has_heartbeat, f, 5));
    assert_true(f->hb_queued);
    closed_wait w = {f, 1};
    assert_true(syn_test_run_until(f->loop, edge_closed_at_least, &w, 5));
    syn_edge_stats s;
    syn_edge_get_stats(f->edge, &s);
    assert_int_equal(s.heartbeats, 1);
    assert_int_equal(s.bad_frames, 0);
    assert_true(syn_test_run_until(f->loop, hb_result_known, f, 5));
    assert_int_equal(f->hb_delivered, 1);
    assert_int_equal(f->hb_other, 0);
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(f->t, &st);
    assert_int_equal(st.heartbeats_sent, 1);
    assert_int_equal(st.heartbeats_delivered, 1);
    assert_int_equal(st.heartbeats_failed, 0);
}

static void stderr_log(synesis_log_level level, const char *msg, void *ud) {
    (void)ud;
    fprintf(stderr, "[%d] %s\n", (int)level, msg);
}

/* Where the resolve hook sends the next connection, 127.0.0.x (read on the resolver thread;
 * written only while no lookup runs). */
static volatile uint8_t target_host;

static int resolve_to_target(const char *host, uint16_t port, struct sockaddr_storage *addrs,
                             unsigned int *lens, size_t max, void *ud) {
    (void)ud;
    (void)host;
    if (max < 1)
        return -1;
    struct sockaddr_in *in = (struct sockaddr_in *)&addrs[0];
    memset(in, 0, sizeof(*in));
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(0x7f000000u | target_host);
    in->sin_port = htons(port);
    lens[0] = sizeof(*in);
    return 1;
}

/* connect() while the previous connection lingers: its path went dark with our request
 * unacknowledged, so the linger runs towards its bound; a new connection (on a working path)
 * works meanwhile; free() then ends the linger at once. */
static void test_connect_and_free_during_linger(void **state) {
    fixture *f = *state;
    /* The proxy on 127.0.0.2 and the edge on 127.0.0.1, on the same port: one URL reaches
     * either, as the resolve hook says. */
    struct sockaddr_in up = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    up.sin_port = htons(syn_edge_port(f->edge));
    struct sockaddr_in l = up;
    l.sin_addr.s_addr = htonl(0x7f000002u);
    syn_fault_proxy *p = syn_fault_proxy_new(f->loop, (struct sockaddr *)&l, sizeof(l),
                                             (struct sockaddr *)&up, sizeof(up), 7);
    assert_non_null(p);
    static char url[64];
    snprintf(url, sizeof(url), "quic://close.test:%u", syn_edge_port(f->edge));
    f->cfg.cloud_url = url; /* a name: every connect() asks the hook */
    f->cfg.resolve = resolve_to_target;
    if (getenv("SYNESIS_TEST_LOG")) {
        f->cfg.log = stderr_log;
        f->cfg.log_level = SYNESIS_LOG_DEBUG;
    }
    f->cfg.close_linger = 30; /* longer than the test: only free() can end it */
    f->mode = 2;
    assert_int_equal(syn_fault_proxy_port(p), syn_edge_port(f->edge));
    target_host = 2;
    f->t = syn_test_tunnel_connected(f->loop, &f->cfg, NULL, f, 5);
    syn_fault_proxy_blackhole(p, 1);
    assert_int_equal(synesis_tunnel_request(f->t, "ping", 4, NULL, on_response, f, NULL), 0);
    syn_test_run_for(f->loop, 0.05); /* sent, never acknowledged */
    assert_int_equal(synesis_tunnel_disconnect(f->t), 0);
    assert_int_equal(f->responses, 1); /* the request completed at once, as before */
    assert_int_equal(f->last_status, SYNESIS_ERR_CANCELLED);
    assert_false(syn_list_empty(&f->t->lingers));
    target_host = 1;
    syn_test_connect(f->loop, f->t, 5);
    f->responses = 0;
    assert_int_equal(synesis_tunnel_request(f->t, "pong", 4, NULL, on_response, f, NULL), 0);
    assert_true(syn_test_run_until(f->loop, got_response, f, 5));
    assert_int_equal(f->last_status, 0);
    assert_false(syn_list_empty(&f->t->lingers)); /* still lingering */
    /* free() ends the linger at once, and no watcher of the tunnel is left on the loop. */
    synesis_tunnel_free(f->t);
    f->t = NULL;
    syn_fault_proxy_free(p);
    syn_edge_free(f->edge);
    f->edge = NULL;
    assert_int_equal(ev_run(f->loop, EVRUN_NOWAIT), 0);
}

static synesis_state_kind tunnel_kind(synesis_tunnel *t) {
    synesis_tunnel_state st;
    synesis_tunnel_get_state(t, &st);
    return st.kind;
}

static int left_connected(void *ud) {
    return tunnel_kind(((fixture *)ud)->t) != SYNESIS_STATE_CONNECTED;
}

static syn_edge_stats edge_stats(fixture *f) {
    syn_edge_stats s;
    syn_edge_get_stats(f->edge, &s);
    return s;
}

static int edge_not_closing(void *ud) { return edge_stats(ud).closing == 0; }

/* The edge closes a connection and its CONNECTION_CLOSE is lost: the connection stays in its
 * closing period (RFC 9000 10.2), so the device's next packet is answered with the close again
 * and the device learns at once why it was closed, instead of after its idle timeout. The
 * period then ends and frees the connection's IDs. */
static void test_edge_closing_period_repeats_close(void **state) {
    fixture *f = *state;
    struct sockaddr_in l = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct sockaddr_in up = l;
    up.sin_port = htons(syn_edge_port(f->edge));
    syn_fault_proxy *p = syn_fault_proxy_new(f->loop, (struct sockaddr *)&l, sizeof(l),
                                             (struct sockaddr *)&up, sizeof(up), 11);
    assert_non_null(p);
    syn_test_tunnel_config(&f->cfg, pki, syn_fault_proxy_port(p));
    f->cfg.idle_timeout = 3.0;
    f->t = syn_test_tunnel_connected(f->loop, &f->cfg, NULL, f, 5);
    uint64_t cids_one = edge_stats(f).cids;

    syn_fault_dir lose = {.drop = 1.0};
    syn_fault_proxy_set(p, NULL, &lose);
    syn_edge_kick(f->edge, syn_edge_last_device(f->edge));
    syn_test_run_for(f->loop, 0.02);
    syn_edge_stats s = edge_stats(f);
    assert_int_equal(s.active, 0);
    assert_int_equal(s.closing, 1);
    assert_int_equal(s.cids, cids_one); /* still routed to the closing connection */
    assert_int_equal(tunnel_kind(f->t), SYNESIS_STATE_CONNECTED); /* it never heard */

    syn_fault_proxy_set(p, NULL, NULL);
    uint64_t t0 = syn_now_ns();
    f->responses = 0;
    f->mode = 2;
    assert_int_equal(synesis_tunnel_request(f->t, "ping", 4, NULL, on_response, f, NULL), 0);
    assert_true(syn_test_run_until(f->loop, left_connected, f, 2.0));
    double took = (double)(syn_now_ns() - t0) / 1e9;
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(f->t, &st);
    if (st.last_error != SYNESIS_ERR_CLOSED_BY_PEER)
        fail_msg("after %.3f s: %s: %s", took, synesis_error_name(st.last_error),
                 st.last_error_detail);
    assert_non_null(strstr(st.last_error_detail, "kicked"));
    assert_true(edge_stats(f).close_repeats >= 1);

    /* The period ends (three PTOs, at least SYN_EDGE_CLOSING_MIN_MS) and the IDs go with it; the
     * tunnel reconnects meanwhile. */
    assert_true(syn_test_run_until(f->loop, edge_not_closing, f, 2.0));
    assert_true(syn_test_run_until(f->loop, syn_test_connected, f->t, 5));
    s = edge_stats(f);
    assert_int_equal(s.closing, 0);
    assert_int_equal(s.active, 1);
    synesis_tunnel_free(f->t);
    f->t = NULL;
    syn_fault_proxy_free(p);
}

/* A connection the device closes drains at the edge (no answer to late packets) and then goes. */
static void test_edge_draining_after_device_close(void **state) {
    fixture *f = *state;
    f->t = syn_test_tunnel_connected(f->loop, &f->cfg, NULL, f, 5);
    assert_int_equal(synesis_tunnel_disconnect(f->t), 0);
    closed_wait w = {f, 1};
    assert_true(syn_test_run_until(f->loop, edge_closed_at_least, &w, 5));
    syn_edge_stats s = edge_stats(f);
    assert_int_equal(s.active, 0);
    assert_int_equal(s.closing, 1);
    assert_true(syn_test_run_until(f->loop, edge_not_closing, f, 2.0));
    s = edge_stats(f);
    assert_int_equal(s.cids, 0);
    assert_int_equal(s.close_repeats, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_disconnect_in_response_callback_acks_response, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_disconnect_no_linger_acks_response, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_in_response_callback_acks_response, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_linger_delivers_queued_heartbeat, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_and_free_during_linger, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disconnect_in_response_callback_acks_response,
                                        setup_tcp, teardown),
        cmocka_unit_test_setup_teardown(test_linger_delivers_queued_heartbeat, setup_tcp, teardown),
        cmocka_unit_test_setup_teardown(test_edge_closing_period_repeats_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edge_draining_after_device_close, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Graceful drain, both ways, over loopback UDP with real certificates.
 * The edge drains: requests in flight finish, requests it refuses unstarted (0x14) are sent again
 * on the next connection, the device reconnects at once (no backoff wait: its backoff's first
 * delay is 30 s here) and resumes; an idempotent request cut by the grace period is sent again, the
 * others fail with SYNESIS_ERR_EDGE_DRAINED. The device drains: new requests and streams are
 * refused with SYNESIS_ERR_DRAINING, those in flight finish, the state ends Disconnected; what
 * outlives the grace period fails with SYNESIS_ERR_DRAINING. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "tunnel_int.h"

#define NREQ 6

typedef struct fixture {
    struct ev_loop *loop;
    syn_edge *edge;
    synesis_tunnel *t;
    synesis_tunnel_config cfg;
    syn_test_states states;
    syn_test_result res[NREQ];
    char body[NREQ][64];
    int drained;
    /* The stream in flight: its echo, and how it ended. */
    uint8_t *echo;
    size_t echo_len;
    int ended, closed, close_status;
} fixture;

#define STREAM_HALF (64 * 1024)

static int setup(void **state) {
    fixture *f = calloc(1, sizeof(*f));
    f->loop = ev_loop_new(EVFLAG_AUTO);
    const char *pki = syn_test_pki_shared("drain-1");
    f->edge = syn_test_edge(f->loop, pki, 10.0);
    syn_test_tunnel_config(&f->cfg, pki, syn_edge_port(f->edge));
    /* A backoff wait would be 30 s: a reconnection within the test's bound is not one. */
    f->cfg.reconnect_initial_delay = 30;
    f->cfg.reconnect_max_delay = 60;
    f->cfg.reconnect_jitter = 0;
    f->cfg.idle_timeout = 20;
    synesis_tunnel_callbacks cb;
    synesis_tunnel_callbacks_init(&cb);
    cb.on_state = syn_test_record_state;
    f->t = syn_test_tunnel_connected(f->loop, &f->cfg, &cb, &f->states, 10);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    for (int i = 0; i < NREQ; i++)
        free(f->res[i].data);
    free(f->echo);
    syn_test_finish(f->loop, f->t, f->edge);
    free(f);
    return 0;
}

/* Request i: "SLEEP ms\n" then a body of its own (the edge answers with the body after ms). */
static synesis_request *send_req(fixture *f, int i, int ms, int idempotent) {
    char buf[128];
    snprintf(f->body[i], sizeof(f->body[i]), "body-%d-of-the-drain-test", i);
    int n = snprintf(buf, sizeof(buf), "SLEEP %d\n%s", ms, f->body[i]);
    synesis_request_options o;
    synesis_request_options_init(&o);
    if (idempotent)
        o.flags = SYNESIS_REQUEST_IDEMPOTENT;
    synesis_request *r = NULL;
    assert_int_equal(
        synesis_tunnel_request(f->t, buf, (size_t)n, &o, syn_test_on_response, &f->res[i], &r), 0);
    return r;
}

static void assert_answered(fixture *f, int i) {
    assert_int_equal(f->res[i].calls, 1);
    assert_int_equal(f->res[i].status, 0);
    assert_int_equal(f->res[i].len, strlen(f->body[i]));
    assert_memory_equal(f->res[i].data, f->body[i], f->res[i].len);
}

typedef struct all_ctx {
    fixture *f;
    int n;
} all_ctx;

static int all_called(void *ud) {
    all_ctx *c = ud;
    for (int i = 0; i < c->n; i++)
        if (!c->f->res[i].calls)
            return 0;
    return 1;
}

static void echo_data(synesis_stream *s, const uint8_t *data, size_t len, void *ud) {
    (void)s;
    fixture *f = ud;
    if (f->echo_len + len <= 2 * STREAM_HALF)
        memcpy(f->echo + f->echo_len, data, len);
    f->echo_len += len;
}

static void echo_end(synesis_stream *s, void *ud) {
    (void)s;
    ((fixture *)ud)->ended++;
}

static void echo_close(synesis_stream *s, int status, uint64_t code, const char *detail, void *ud) {
    (void)s;
    (void)code;
    (void)detail;
    fixture *f = ud;
    f->closed++;
    f->close_status = status;
}

static int stream_closed(void *ud) { return ((fixture *)ud)->closed > 0; }

static void pattern(uint8_t *p, size_t off, size_t n) {
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)((off + i) % 251);
}

static void on_drained(syn_edge *e, void *ud) {
    (void)e;
    ((fixture *)ud)->drained++;
}

static int connected_again(void *ud) {
    fixture *f = ud;
    return syn_test_find_state(&f->states, SYNESIS_STATE_RECONNECTING, 0) >= 0 &&
           synesis_tunnel_is_connected(f->t);
}

/* The edge drains with three requests in flight; two more are made after the drain began: those
 * reach a draining edge, which refuses them unstarted; they are answered on the next connection.
 */
static void test_edge_drain_moves_device(void **state) {
    fixture *f = *state;
    for (int i = 0; i < 3; i++)
        send_req(f, i, 300, 0);
    /* A stream echoed by the edge, half of it sent before the drain, half after. */
    f->echo = malloc(2 * STREAM_HALF);
    uint8_t *buf = malloc(STREAM_HALF);
    synesis_stream_callbacks scb;
    synesis_stream_callbacks_init(&scb);
    scb.on_data = echo_data;
    scb.on_end = echo_end;
    scb.on_close = echo_close;
    synesis_stream *st = NULL;
    assert_int_equal(synesis_tunnel_open_stream(f->t, &scb, f, &st), 0);
    pattern(buf, 0, STREAM_HALF);
    size_t acc = 0;
    assert_int_equal(synesis_stream_write(st, buf, STREAM_HALF, &acc), 0);
    assert_int_equal(acc, STREAM_HALF);
    syn_test_run_for(f->loop, 0.1); /* the three and the stream reach the edge's application */
    syn_edge_stats es0;
    syn_edge_get_stats(f->edge, &es0);
    syn_edge_drain(f->edge, 10, 0, on_drained, f);
    for (int i = 3; i < 5; i++)
        send_req(f, i, 10, 0);
    pattern(buf, STREAM_HALF, STREAM_HALF);
    assert_int_equal(synesis_stream_write(st, buf, STREAM_HALF, &acc), 0);
    assert_int_equal(acc, STREAM_HALF);
    assert_int_equal(synesis_stream_finish(st), 0);
    free(buf);
    all_ctx c = {f, 5};
    /* Bounded far below the 30 s a backoff wait would take. */
    assert_true(syn_test_run_until(f->loop, all_called, &c, 10));
    for (int i = 0; i < 5; i++)
        assert_answered(f, i);
    /* Every byte of the stream came back, in order, and it ended cleanly. */
    assert_true(syn_test_run_until(f->loop, stream_closed, f, 10));
    assert_int_equal(f->close_status, 0);
    assert_int_equal(f->ended, 1);
    assert_int_equal(f->echo_len, 2 * STREAM_HALF);
    for (size_t i = 0; i < 2 * STREAM_HALF; i++)
        if (f->echo[i] != (uint8_t)(i % 251))
            fail_msg("echo byte %zu differs", i);
    assert_true(syn_test_run_until(f->loop, connected_again, f, 10));
    int r = syn_test_find_state(&f->states, SYNESIS_STATE_RECONNECTING, 0);
    assert_int_equal(f->states.attempts[r], 1);
    assert_int_equal(f->states.errors[r], SYNESIS_ERR_CLOSED_BY_PEER);
    synesis_tunnel_stats ts;
    synesis_tunnel_get_stats(f->t, &ts);
    assert_int_equal(ts.edge_moves, 1);
    assert_int_equal(ts.reconnects, 1);
    syn_edge_stats es;
    syn_edge_get_stats(f->edge, &es);
    assert_int_equal(es.drain_retries, 2);         /* the two made after the drain began */
    assert_int_equal(es.resumed, es0.resumed + 1); /* the ticket the device held */
    assert_int_equal(es.responses_unacked, 0);
    assert_int_equal(f->drained, 1);
    /* The new connection takes requests as usual. */
    send_req(f, 5, 0, 0);
    c.n = 6;
    assert_true(syn_test_run_until(f->loop, all_called, &c, 10));
    assert_answered(f, 5);
}

/* The grace period ends with two requests in flight: the idempotent one is sent again on the next
 * connection and answered, the other fails with SYNESIS_ERR_EDGE_DRAINED. */
static void test_edge_drain_grace_over(void **state) {
    fixture *f = *state;
    send_req(f, 0, 1500, 1);
    send_req(f, 1, 1500, 0);
    syn_test_run_for(f->loop, 0.1);
    syn_edge_drain(f->edge, 0.2, 0, on_drained, f);
    all_ctx c = {f, 2};
    assert_true(syn_test_run_until(f->loop, all_called, &c, 10));
    assert_answered(f, 0);
    assert_int_equal(f->res[1].calls, 1);
    assert_int_equal(f->res[1].status, SYNESIS_ERR_EDGE_DRAINED);
    assert_int_equal(f->drained, 1);
    assert_true(synesis_tunnel_is_connected(f->t));
    synesis_tunnel_stats ts;
    synesis_tunnel_get_stats(f->t, &ts);
    assert_int_equal(ts.edge_moves, 1);
}

static void on_stream_close(synesis_stream *s, int status, uint64_t code, const char *detail,
                            void *ud) {
    (void)s;
    (void)status;
    (void)code;
    (void)detail;
    (void)ud;
}

/* The device drains: nothing new is taken, what is in flight finishes, then Disconnected. */
static void test_device_drain(void **state) {
    fixture *f = *state;
    send_req(f, 0, 300, 0);
    send_req(f, 1, 100, 0);
    syn_test_run_for(f->loop, 0.05);
    assert_int_equal(synesis_tunnel_drain(f->t, 10), 0);
    synesis_request *r = NULL;
    assert_int_equal(
        synesis_tunnel_request(f->t, "x", 1, NULL, syn_test_on_response, &f->res[2], &r),
        SYNESIS_ERR_DRAINING);
    assert_null(r);
    synesis_stream_callbacks scb;
    synesis_stream_callbacks_init(&scb);
    scb.on_close = on_stream_close;
    synesis_stream *st = NULL;
    assert_int_equal(synesis_tunnel_open_stream(f->t, &scb, NULL, &st), SYNESIS_ERR_DRAINING);
    assert_true(synesis_tunnel_is_connected(f->t)); /* still, while the two are in flight */
    assert_true(syn_test_wait_state(f->loop, f->t, SYNESIS_STATE_DISCONNECTED, 10));
    assert_answered(f, 0);
    assert_answered(f, 1);
    assert_int_equal(f->res[2].calls, 0);
    assert_int_equal(syn_test_find_state(&f->states, SYNESIS_STATE_RECONNECTING, 0), -1);
    assert_int_equal(synesis_tunnel_drain(f->t, 1), SYNESIS_ERR_INVALID_STATE);
    assert_int_equal(synesis_tunnel_drain(NULL, 1), SYNESIS_ERR_INVALID_ARGUMENT);
}

/* The grace period ends first: the request still in flight fails with SYNESIS_ERR_DRAINING. */
static void test_device_drain_grace_over(void **state) {
    fixture *f = *state;
    send_req(f, 0, 3000, 0);
    syn_test_run_for(f->loop, 0.05);
    assert_int_equal(synesis_tunnel_drain(f->t, -1), SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(synesis_tunnel_drain(f->t, 0.2), 0);
    assert_true(syn_test_wait_state(f->loop, f->t, SYNESIS_STATE_DISCONNECTED, 10));
    assert_int_equal(f->res[0].calls, 1);
    assert_int_equal(f->res[0].status, SYNESIS_ERR_DRAINING);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_edge_drain_moves_device, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edge_drain_grace_over, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_drain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_drain_grace_over, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

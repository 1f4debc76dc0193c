/* Requests, streams and statistics against the reference edge over real UDP on loopback. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "qconn.h"
#include "qconn_test.h"
#include "synesis/request.h"
#include "synesis/stream.h"
#include "tunnel_int.h"

typedef struct fixture {
    struct ev_loop *loop;
    syn_edge *edge;
    synesis_tunnel *t;
    synesis_tunnel_config cfg;
} fixture;

static const char *pki;

static void connect_tunnel(fixture *f) {
    f->t = syn_test_tunnel_connected(f->loop, &f->cfg, NULL, f, 5);
}

static int setup_edge(void **state, size_t max_request) {
    fixture *f = calloc(1, sizeof(*f));
    f->loop = ev_loop_new(EVFLAG_AUTO);
    pki = syn_test_pki_shared("req-1");
    syn_edge_config ec;
    syn_test_edge_config(&ec, pki);
    ec.max_streams_bidi = 100;
    if (max_request)
        ec.max_request_size = max_request;
    f->edge = syn_test_edge_start(f->loop, &ec);
    syn_test_tunnel_config(&f->cfg, pki, syn_edge_port(f->edge));
    f->cfg.idle_timeout = 10;
    f->cfg.request_timeout = 30;
    *state = f;
    return 0;
}

static int setup(void **state) {
    setup_edge(state, 0);
    connect_tunnel(*state);
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    syn_test_finish(f->loop, f->t, f->edge);
    free(f);
    return 0;
}

/* syn_test_on_response, and the detail rule: empty on success only. */
static void on_resp(synesis_tunnel *t, synesis_request *req, const synesis_response *r, void *ud) {
    syn_test_on_response(t, req, r, ud);
    if (r->status == 0)
        assert_string_equal(r->detail, "");
    else
        assert_true(strlen(r->detail) > 0);
}

static void request_and_wait(fixture *f, const void *data, size_t len,
                             const synesis_request_options *o, syn_test_result *res,
                             double timeout) {
    memset(res, 0, sizeof(*res));
    assert_int_equal(synesis_tunnel_request(f->t, data, len, o, on_resp, res, NULL), 0);
    assert_true(syn_test_run_until(f->loop, syn_test_response_done, res, timeout));
    assert_int_equal(res->calls, 1);
}

static void fill_random(uint8_t *p, size_t n, uint32_t seed) {
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (uint8_t)x;
    }
}

static void test_echo_sizes(void **state) {
    fixture *f = *state;
    const size_t sizes[] = {0, 1, 1200, 64 * 1024, 10 * 1024 * 1024};
    uint64_t sent = 0, received = 0;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t n = sizes[i];
        uint8_t *buf = malloc(n ? n : 1);
        fill_random(buf, n, (uint32_t)i + 1);
        /* Random data never starts with a command word: the edge echoes it. */
        if (n)
            buf[0] = 'x';
        syn_test_result res;
        request_and_wait(f, buf, n, NULL, &res, 30);
        assert_int_equal(res.status, 0);
        assert_int_equal(res.len, n);
        if (n)
            assert_memory_equal(res.data, buf, n);
        sent += n;
        received += n;
        free(res.data);
        free(buf);
    }
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(f->t, &st);
    assert_int_equal(st.bytes_sent, sent);
    assert_int_equal(st.bytes_received, received);
    assert_int_equal(st.requests_sent, 5);
    assert_int_equal(st.requests_succeeded, 5);
    assert_int_equal(st.requests_failed, 0);
    assert_true(st.packets_sent > 0);
    /* Our datagrams carry ngtcp2's ECN marking (ECT(0) while it validates the path). */
    syn_edge_stats es;
    syn_edge_get_stats(f->edge, &es);
    assert_true(es.ecn_marked > 0);
    assert_true(st.rtt_smoothed_us > 0);
    assert_true(st.cwnd > 0);
    char json[2048];
    int n = synesis_tunnel_stats_json(f->t, json, sizeof(json));
    assert_true(n > 0 && (size_t)n < sizeof(json));
    char expect[64];
    snprintf(expect, sizeof(expect), "\"bytes_sent\":%llu", (unsigned long long)sent);
    assert_non_null(strstr(json, expect));
    assert_non_null(strstr(json, "\"requests_succeeded\":5"));
}

static int check_pattern(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != (uint8_t)(i % 251))
            return 0;
    return 1;
}

static void test_src_large(void **state) {
    fixture *f = *state;
    synesis_request_options o;
    synesis_request_options_init(&o);
    o.max_response_size = 64u * 1024 * 1024;
    const char *cmd = "SRC 67108864\n";
    syn_test_result res;
    request_and_wait(f, cmd, strlen(cmd), &o, &res, 60);
    assert_int_equal(res.status, 0);
    assert_int_equal(res.len, 64u * 1024 * 1024);
    assert_true(check_pattern(res.data, res.len));
    free(res.data);
}

/* Predicate: the tunnel (ud) holds no I/O buffers: no receive slots, no large send buffer. */
static int buffers_released(void *ud) {
    const synesis_tunnel *t = ud;
    return !t->rx && (!t->qc || !syn_udp_tx_large(syn_qconn_tx(t->qc)));
}

/* Predicate: the tunnel took its receive buffers again since allocs was read. */
typedef struct rx_wait {
    const synesis_tunnel *t;
    uint64_t allocs;
} rx_wait;
static int rx_taken_again(void *ud) {
    const rx_wait *w = ud;
    return w->t->rx_allocs > w->allocs;
}

/* The receive slots (2 x 64 KiB) and the large send buffer (64 KiB) are taken only while traffic
 * needs them: a connected tunnel that goes quiet releases them, and traffic afterwards (requests,
 * a bulk upload, a bulk download) takes them again and gets through intact. */
static void test_idle_buffers_released(void **state) {
    fixture *f = *state;
    synesis_tunnel *t = f->t;
    /* Connected and quiet (keep-alive PINGs aside): nothing held. */
    assert_true(syn_test_run_until(f->loop, buffers_released, t, 3 * SYN_TUNNEL_BUFFER_IDLE + 1));
    assert_true(t->rx_allocs >= 1);
    assert_int_equal(t->rx_frees, t->rx_allocs);
    /* The next keep-alive exchange (1 s in the tests) takes them and gives them back at its
     * end, not after a timer (that would wake the loop SYN_TUNNEL_BUFFER_IDLE later). */
    rx_wait w = {t, t->rx_allocs};
    assert_true(syn_test_run_until(f->loop, rx_taken_again, &w, 3));
    double t0 = ev_time();
    assert_true(syn_test_run_until(f->loop, buffers_released, t, 1));
    assert_true(ev_time() - t0 < SYN_TUNNEL_BUFFER_IDLE * 0.8);
    assert_false(ev_is_active(&t->buf_timer));
    const syn_udp_tx *tx = syn_qconn_tx(t->qc);
    uint64_t rx_allocs = t->rx_allocs, rx_frees = t->rx_frees;
    uint64_t tx_allocs = tx->large_allocs, tx_frees = tx->large_frees;

    /* A small request: the receive slots come back, and go again. */
    syn_test_result res;
    request_and_wait(f, "hello", 5, NULL, &res, 10);
    assert_int_equal(res.status, 0);
    assert_int_equal(res.len, 5);
    assert_memory_equal(res.data, "hello", 5);
    free(res.data);
    assert_true(t->rx_allocs > rx_allocs);
    assert_true(syn_test_run_until(f->loop, buffers_released, t, 3 * SYN_TUNNEL_BUFFER_IDLE + 1));

    /* A bulk upload (echoed back: a bulk download too) needs the large send buffer. */
    size_t n = 4 * 1024 * 1024;
    uint8_t *buf = malloc(n);
    fill_random(buf, n, 77);
    buf[0] = 'x'; /* not a command word: echoed */
    request_and_wait(f, buf, n, NULL, &res, 30);
    assert_int_equal(res.status, 0);
    assert_int_equal(res.len, n);
    assert_memory_equal(res.data, buf, n);
    free(res.data);
    free(buf);
    assert_true(tx->large_allocs > tx_allocs);
    assert_true(syn_test_run_until(f->loop, buffers_released, t, 3 * SYN_TUNNEL_BUFFER_IDLE + 1));
    assert_true(tx->large_frees > tx_frees);
    assert_int_equal(tx->large_frees, tx->large_allocs);
    assert_true(t->rx_frees > rx_frees);
    assert_int_equal(t->rx_frees, t->rx_allocs);

    /* After the release: a bulk download (SRC) and a request still work. */
    synesis_request_options o;
    synesis_request_options_init(&o);
    o.max_response_size = 16u * 1024 * 1024;
    const char *cmd = "SRC 16777216\n";
    request_and_wait(f, cmd, strlen(cmd), &o, &res, 30);
    assert_int_equal(res.status, 0);
    assert_int_equal(res.len, 16u * 1024 * 1024);
    assert_true(check_pattern(res.data, res.len));
    free(res.data);
    request_and_wait(f, "again", 5, NULL, &res, 10);
    assert_int_equal(res.status, 0);
    assert_memory_equal(res.data, "again", 5);
    free(res.data);
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(t, &st);
    assert_int_equal(st.requests_succeeded, 4);
    assert_int_equal(st.requests_failed, 0);
    assert_true(syn_test_run_until(f->loop, buffers_released, t, 3 * SYN_TUNNEL_BUFFER_IDLE + 1));
}

static void test_oversize_at_the_limit(void **state) {
    fixture *f = *state;
    synesis_request_options o;
    synesis_request_options_init(&o);
    o.max_response_size = 100000;
    syn_test_result res;
    request_and_wait(f, "SRC 100000\n", 11, &o, &res, 10);
    assert_int_equal(res.status, 0); /* exactly the limit is fine */
    assert_int_equal(res.len, 100000);
    free(res.data);
    request_and_wait(f, "SRC 100001\n", 11, &o, &res, 10);
    assert_int_equal(res.status, SYNESIS_ERR_RESPONSE_TOO_LARGE);
    assert_int_equal(res.len, 0);
    free(res.data);
    /* The connection is fine afterwards. */
    request_and_wait(f, "ok", 2, NULL, &res, 10);
    assert_int_equal(res.status, 0);
    free(res.data);
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(f->t, &st);
    assert_int_equal(st.requests_failed, 1);
    assert_int_equal(st.requests_succeeded, 2);
}

static void test_timeout(void **state) {
    fixture *f = *state;
    synesis_request_options o;
    synesis_request_options_init(&o);
    o.timeout = 0.2;
    syn_test_result res;
    request_and_wait(f, "SLEEP 3000\nzzz", 14, &o, &res, 5);
    assert_int_equal(res.status, SYNESIS_ERR_TIMEOUT);
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(f->t, &st);
    assert_int_equal(st.requests_timed_out, 1);
    request_and_wait(f, "SLEEP 10\nabc", 12, &o, &res, 5);
    assert_int_equal(res.status, 0);
    assert_int_equal(res.len, 3);
    assert_memory_equal(res.data, "abc", 3);
    free(res.data);
}

static void test_edge_reset_code(void **state) {
    fixture *f = *state;
    syn_test_result res;
    request_and_wait(f, "RESET 42\n", 9, NULL, &res, 5);
    assert_int_equal(res.status, SYNESIS_ERR_STREAM_RESET);
    assert_int_equal(res.app_code, 42);
    request_and_wait(f, "RESET 0x1234\n", 13, NULL, &res, 5);
    assert_int_equal(res.status, SYNESIS_ERR_STREAM_RESET);
    assert_int_equal(res.app_code, 0x1234);
}

/* 10,000 requests, 1,000 in flight, through an edge that allows 100 streams at a time. */
typedef struct many {
    fixture *f;
    int submitted, done, ok, max_inflight, inflight;
} many;

static void many_submit(many *m);

static void many_resp(synesis_tunnel *t, synesis_request *req, const synesis_response *r,
                      void *ud) {
    (void)t;
    (void)req;
    many *m = ud;
    m->done++;
    m->inflight--;
    if (r->status == 0 && r->len == 8)
        m->ok++;
    many_submit(m);
}

static void many_submit(many *m) {
    while (m->submitted < 10000 && m->inflight < 1000) {
        char body[9];
        snprintf(body, sizeof(body), "x%07d", m->submitted);
        assert_int_equal(synesis_tunnel_request(m->f->t, body, 8, NULL, many_resp, m, NULL), 0);
        m->submitted++;
        m->inflight++;
        if (m->inflight > m->max_inflight)
            m->max_inflight = m->inflight;
    }
}

static int many_done(void *ud) { return ((many *)ud)->done == 10000; }

static void test_ten_thousand_requests(void **state) {
    fixture *f = *state;
    many m = {.f = f};
    many_submit(&m);
    assert_true(syn_test_run_until(f->loop, many_done, &m, 120));
    assert_int_equal(m.ok, 10000);
    assert_int_equal(m.max_inflight, 1000);
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(f->t, &st);
    assert_int_equal(st.requests_sent, 10000);
    assert_int_equal(st.requests_succeeded, 10000);
    assert_int_equal(st.bytes_sent, 80000);
    assert_int_equal(st.bytes_received, 80000);
}

/* The connection dies with requests in flight: each callback runs once, with connection-lost. */
typedef struct lost {
    int calls[8];
    int status[8];
} lost;

static void lost_resp(synesis_tunnel *t, synesis_request *req, const synesis_response *r,
                      void *ud) {
    (void)t;
    (void)req;
    int *slot = ud;
    slot[0]++;
    slot[1] = r->status;
}

static int all_lost(void *ud) {
    lost *l = ud;
    for (int i = 0; i < 8; i++)
        if (!l->calls[i])
            return 0;
    return 1;
}

static void test_connection_lost_mid_request(void **state) {
    fixture *f = *state;
    static int slots[8][2];
    memset(slots, 0, sizeof(slots));
    for (int i = 0; i < 8; i++)
        assert_int_equal(
            synesis_tunnel_request(f->t, "SLEEP 5000\n", 11, NULL, lost_resp, slots[i], NULL), 0);
    syn_test_run_for(f->loop, 0.1); /* the requests reach the edge */
    syn_edge_kick(f->edge, "req-1");
    lost l;
    for (int i = 0; i < 8; i++) {
        l.calls[i] = 0;
    }
    for (int tries = 0; tries < 100; tries++) {
        for (int i = 0; i < 8; i++)
            l.calls[i] = slots[i][0];
        if (all_lost(&l))
            break;
        syn_test_run_for(f->loop, 0.02);
    }
    for (int i = 0; i < 8; i++) {
        assert_int_equal(slots[i][0], 1);
        assert_int_equal(slots[i][1], SYNESIS_ERR_CONNECTION_LOST);
    }
    syn_test_run_for(f->loop, 0.2);
    for (int i = 0; i < 8; i++)
        assert_int_equal(slots[i][0], 1); /* never twice */
}

static void test_cancel(void **state) {
    fixture *f = *state;
    syn_test_result res = {0};
    synesis_request *req = NULL;
    assert_int_equal(synesis_tunnel_request(f->t, "SLEEP 1000\n", 11, NULL, on_resp, &res, &req),
                     0);
    assert_non_null(req);
    syn_test_run_for(f->loop, 0.05);
    assert_int_equal(synesis_request_cancel(req), 0);
    assert_int_equal(res.calls, 1);
    assert_int_equal(res.status, SYNESIS_ERR_CANCELLED);
    syn_test_run_for(f->loop, 1.2); /* the edge's late answer goes nowhere */
    assert_int_equal(res.calls, 1);
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(f->t, &st);
    assert_int_equal(st.requests_cancelled, 1);
    /* Cancel before the stream opened (still queued). */
    memset(&res, 0, sizeof(res));
    assert_int_equal(synesis_tunnel_request(f->t, "x", 1, NULL, on_resp, &res, &req), 0);
    assert_int_equal(synesis_request_cancel(req), 0);
    assert_int_equal(res.calls, 1);
    assert_int_equal(res.status, SYNESIS_ERR_CANCELLED);
}

typedef struct rel {
    int calls;
    const void *data;
} rel;

static void on_release(const void *data, size_t len, void *ud) {
    (void)len;
    rel *r = ud;
    r->calls++;
    r->data = data;
}

static void test_nocopy(void **state) {
    fixture *f = *state;
    static char body[4096];
    memset(body, 'n', sizeof(body));
    rel r = {0};
    syn_test_result res = {0};
    assert_int_equal(synesis_tunnel_request_nocopy(f->t, body, sizeof(body), on_release, &r, NULL,
                                                   on_resp, &res, NULL),
                     0);
    assert_int_equal(r.calls, 0); /* held until acknowledged */
    assert_true(syn_test_run_until(f->loop, syn_test_response_done, &res, 5));
    syn_test_run_for(f->loop, 0.1);
    assert_int_equal(res.status, 0);
    assert_int_equal(res.len, sizeof(body));
    assert_int_equal(r.calls, 1);
    assert_ptr_equal(r.data, body);
    free(res.data);
    /* Released exactly once on failure too. */
    rel r2 = {0};
    assert_int_equal(synesis_tunnel_request_nocopy(f->t, body, sizeof(body), on_release, &r2, NULL,
                                                   NULL, NULL, NULL),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(r2.calls, 1);
    /* Cancelled while queued: released once. */
    rel r3 = {0};
    synesis_request *req;
    memset(&res, 0, sizeof(res));
    assert_int_equal(
        synesis_tunnel_request_nocopy(f->t, body, 10, on_release, &r3, NULL, on_resp, &res, &req),
        0);
    synesis_request_cancel(req);
    assert_int_equal(r3.calls, 1);
}

static void test_not_connected_and_queueing(void **state) {
    setup_edge(state, 0);
    fixture *f = *state;
    f->t = syn_test_tunnel_new(f->loop, &f->cfg, NULL, f);
    syn_test_result res = {0};
    assert_int_equal(synesis_tunnel_request(f->t, "a", 1, NULL, on_resp, &res, NULL),
                     SYNESIS_ERR_NOT_CONNECTED);
    assert_int_equal(res.calls, 0);
    synesis_request_options o;
    synesis_request_options_init(&o);
    o.queue_while_reconnecting = 1;
    /* Disconnected: even a queueing request has nothing to wait for. */
    assert_int_equal(synesis_tunnel_request(f->t, "a", 1, &o, on_resp, &res, NULL),
                     SYNESIS_ERR_NOT_CONNECTED);
    assert_int_equal(synesis_tunnel_connect(f->t), 0);
    /* Connecting: a queueing request waits and goes out once connected. */
    assert_int_equal(synesis_tunnel_request(f->t, "queued", 6, &o, on_resp, &res, NULL), 0);
    assert_true(syn_test_run_until(f->loop, syn_test_response_done, &res, 5));
    assert_int_equal(res.status, 0);
    assert_int_equal(res.len, 6);
    free(res.data);
    teardown(state);
}

static void test_queued_request_fails_when_tunnel_fails(void **state) {
    setup_edge(state, 0);
    fixture *f = *state;
    syn_edge_stop(f->edge, 0); /* nothing listens */
    f->t = syn_test_tunnel_new(f->loop, &f->cfg, NULL, f);
    synesis_request_options o;
    synesis_request_options_init(&o);
    o.queue_while_reconnecting = 1;
    assert_int_equal(synesis_tunnel_connect(f->t), 0);
    syn_test_result res = {0};
    assert_int_equal(synesis_tunnel_request(f->t, "x", 1, &o, on_resp, &res, NULL), 0);
    assert_true(syn_test_run_until(f->loop, syn_test_response_done, &res, 5));
    assert_int_equal(res.calls, 1);
    assert_int_equal(res.status, SYNESIS_ERR_SOCKET); /* the Failed state's error */
    teardown(state);
}

static void test_free_cancels_pending(void **state) {
    fixture *f = *state;
    syn_test_result a = {0}, b = {0};
    assert_int_equal(synesis_tunnel_request(f->t, "SLEEP 2000\n", 11, NULL, on_resp, &a, NULL), 0);
    syn_test_run_for(f->loop, 0.05);
    assert_int_equal(synesis_tunnel_request(f->t, "y", 1, NULL, on_resp, &b, NULL), 0);
    synesis_tunnel_free(f->t);
    f->t = NULL;
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.status, SYNESIS_ERR_CANCELLED);
    assert_int_equal(b.calls, 1);
    assert_int_equal(b.status, SYNESIS_ERR_CANCELLED);
}

/* ---- streams ---- */

typedef struct up {
    fixture *f;
    synesis_stream *s;
    const uint8_t *data;
    size_t total, written, received;
    uint8_t *echo;
    int closed, close_status, ended, finished;
    int paused;
    size_t since_pause;
    size_t max_buffered;
    int data_while_paused;
    ev_timer resume;
} up;

static void up_write(up *u) {
    while (u->written < u->total) {
        size_t chunk = u->total - u->written < 100000 ? u->total - u->written : 100000;
        size_t acc = 0;
        int rv = synesis_stream_write(u->s, u->data + u->written, chunk, &acc);
        size_t b = synesis_stream_buffered(u->s);
        if (b > u->max_buffered)
            u->max_buffered = b;
        if (rv == SYNESIS_ERR_WOULD_BLOCK)
            return;
        assert_int_equal(rv, 0);
        u->written += acc;
        if (acc < chunk)
            return; /* short write: wait for on_writable */
    }
    if (!u->finished) {
        u->finished = 1;
        assert_int_equal(synesis_stream_finish(u->s), 0);
    }
}

static void resume_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    up *u = w->data;
    u->paused = 0;
    synesis_stream_resume(u->s);
}

static void up_data(synesis_stream *s, const uint8_t *d, size_t len, void *ud) {
    (void)s;
    up *u = ud;
    if (u->paused)
        u->data_while_paused++;
    assert_true(u->received + len <= u->total);
    memcpy(u->echo + u->received, d, len);
    u->received += len;
    u->since_pause += len;
    /* A slow reader: every 512 KiB, stop reading for 30 ms. */
    if (u->since_pause >= 512 * 1024) {
        u->since_pause = 0;
        u->paused = 1;
        synesis_stream_pause(s);
        ev_timer_set(&u->resume, 0.03, 0.);
        ev_timer_start(u->f->loop, &u->resume);
    }
}

static void up_end(synesis_stream *s, void *ud) {
    (void)s;
    ((up *)ud)->ended = 1;
}

static void up_writable(synesis_stream *s, void *ud) {
    (void)s;
    up_write(ud);
}

static void up_close(synesis_stream *s, int status, uint64_t code, const char *detail, void *ud) {
    (void)detail;
    (void)s;
    (void)code;
    up *u = ud;
    u->closed++;
    u->close_status = status;
}

static int up_done(void *ud) { return ((up *)ud)->closed > 0; }

static void test_stream_backpressure_slow_reader(void **state) {
    fixture *f = *state;
    up u = {.f = f, .total = 8u * 1024 * 1024};
    uint8_t *data = malloc(u.total);
    fill_random(data, u.total, 99);
    data[0] = 'z';
    u.data = data;
    u.echo = malloc(u.total);
    ev_timer_init(&u.resume, resume_cb, 0., 0.);
    u.resume.data = &u;
    synesis_stream_callbacks cb = {.struct_size = sizeof(synesis_stream_callbacks),
                                   .on_data = up_data,
                                   .on_end = up_end,
                                   .on_writable = up_writable,
                                   .on_close = up_close};
    assert_int_equal(synesis_tunnel_open_stream(f->t, &cb, &u, &u.s), 0);
    up_write(&u);
    assert_true(syn_test_run_until(f->loop, up_done, &u, 60));
    ev_timer_stop(f->loop, &u.resume);
    assert_int_equal(u.closed, 1);
    assert_int_equal(u.close_status, 0);
    assert_true(u.ended);
    assert_int_equal(u.written, u.total);
    assert_int_equal(u.received, u.total);
    assert_memory_equal(u.echo, data, u.total);
    assert_int_equal(u.data_while_paused, 0);
    /* The send buffer never held more than its bound. */
    assert_true(u.max_buffered <= f->cfg.stream_send_buffer);
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(f->t, &st);
    assert_int_equal(st.streams_opened, 1);
    assert_int_equal(st.bytes_sent, u.total);
    assert_int_equal(st.bytes_received, u.total);
    free(data);
    free(u.echo);
}

typedef struct sres {
    int closed;
    int status;
    uint64_t code;
} sres;

static void s_close(synesis_stream *s, int status, uint64_t code, const char *detail, void *ud) {
    (void)detail;
    (void)s;
    sres *r = ud;
    r->closed++;
    r->status = status;
    r->code = code;
}

static int s_done(void *ud) { return ((sres *)ud)->closed > 0; }

static void test_stream_resets(void **state) {
    fixture *f = *state;
    synesis_stream_callbacks cb = {.struct_size = sizeof(synesis_stream_callbacks),
                                   .on_close = s_close};
    /* The edge resets. */
    sres r = {0};
    synesis_stream *s;
    assert_int_equal(synesis_tunnel_open_stream(f->t, &cb, &r, &s), 0);
    size_t acc;
    assert_int_equal(synesis_stream_write(s, "RESET 7\n", 8, &acc), 0);
    assert_int_equal(acc, 8);
    assert_true(syn_test_run_until(f->loop, s_done, &r, 5));
    assert_int_equal(r.status, SYNESIS_ERR_STREAM_RESET);
    assert_int_equal(r.code, 7);
    /* We reset. */
    sres r2 = {0};
    assert_int_equal(synesis_tunnel_open_stream(f->t, &cb, &r2, &s), 0);
    assert_int_equal(synesis_stream_write(s, "hello", 5, &acc), 0);
    syn_test_run_for(f->loop, 0.05);
    assert_int_equal(synesis_stream_reset(s, 9), 0);
    assert_int_equal(r2.closed, 1);
    assert_int_equal(r2.status, SYNESIS_ERR_CANCELLED);
    /* Connection lost. */
    sres r3 = {0};
    assert_int_equal(synesis_tunnel_open_stream(f->t, &cb, &r3, &s), 0);
    assert_int_equal(synesis_stream_write(s, "hello", 5, &acc), 0);
    syn_test_run_for(f->loop, 0.05);
    syn_edge_kick(f->edge, "req-1");
    assert_true(syn_test_run_until(f->loop, s_done, &r3, 5));
    assert_int_equal(r3.status, SYNESIS_ERR_CONNECTION_LOST);
    /* Not connected. */
    syn_test_run_for(f->loop, 0.05);
    if (!synesis_tunnel_is_connected(f->t))
        assert_int_equal(synesis_tunnel_open_stream(f->t, &cb, &r3, &s), SYNESIS_ERR_NOT_CONNECTED);
}

static int handler(void *ud, const char *device, const uint8_t *req, size_t len,
                   syn_edge_reply *reply) {
    (void)ud;
    if (len == 5 && memcmp(req, "reset", 5) == 0) {
        reply->reset = 1;
        reply->reset_code = 77;
        return 0;
    }
    reply->data = malloc(len + strlen(device) + 1);
    memcpy(reply->data, device, strlen(device));
    reply->data[strlen(device)] = ':';
    memcpy(reply->data + strlen(device) + 1, req, len);
    reply->len = len + strlen(device) + 1;
    return 0;
}

static void test_edge_custom_handler(void **state) {
    fixture *f = *state;
    syn_edge_set_handler(f->edge, handler, NULL);
    syn_test_result res;
    request_and_wait(f, "ping", 4, NULL, &res, 5);
    assert_int_equal(res.status, 0);
    assert_int_equal(res.len, 10);
    assert_memory_equal(res.data, "req-1:ping", 10);
    free(res.data);
    request_and_wait(f, "reset", 5, NULL, &res, 5);
    assert_int_equal(res.status, SYNESIS_ERR_STREAM_RESET);
    assert_int_equal(res.app_code, 77);
}

static int setup_small_edge(void **state) {
    setup_edge(state, 1000);
    connect_tunnel(*state);
    return 0;
}

static void test_edge_request_limit(void **state) {
    fixture *f = *state;
    uint8_t big[2000];
    memset(big, 'q', sizeof(big));
    syn_test_result res;
    request_and_wait(f, big, sizeof(big), NULL, &res, 5);
    assert_int_equal(res.status, SYNESIS_ERR_STREAM_RESET);
    assert_int_equal(res.app_code, 0x11);
    request_and_wait(f, big, 1000, NULL, &res, 5);
    assert_int_equal(res.status, 0);
    free(res.data);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_echo_sizes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_src_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_buffers_released, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversize_at_the_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edge_reset_code, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ten_thousand_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_lost_mid_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nocopy, setup, teardown),
        cmocka_unit_test(test_not_connected_and_queueing),
        cmocka_unit_test(test_queued_request_fails_when_tunnel_fails),
        cmocka_unit_test_setup_teardown(test_free_cancels_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_backpressure_slow_reader, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_resets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edge_custom_handler, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edge_request_limit, setup_small_edge, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

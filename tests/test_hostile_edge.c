/*
 * The tunnel against a hostile or broken edge (docs/security.md, "Hostile or broken edge"): the
 * reference edge in its test-only misbehaving modes (syn_edge_config.misbehave) over real UDP on
 * loopback with real certificates. Each test shows that the tunnel survives with the right error
 * (a request fails with a clear code, or the tunnel goes Reconnecting/Failed with the error set),
 * keeps its memory within the configured bounds, and leaks nothing (the asan preset's LSan).
 *
 * Protocol violations that the edge's own QUIC stack would never send (streams beyond the limits
 * the device granted, data beyond its flow-control window, more connection IDs than its
 * active_connection_id_limit) are produced by lying to the edge's ngtcp2 about the device's
 * transport parameters: the test links with --wrap=ngtcp2_conn_decode_and_set_remote_transport_
 * params, and the wrapper raises the limits the device sent before the edge's connection sees
 * them (the device's own connection is never touched). The device then receives real frames that
 * break its limits, from a real peer, over UDP.
 *
 * Waits are for conditions with generous deadlines; configured intervals are short; nothing
 * asserts speed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "protocol.h"
#include "synesis/identity.h"
#include "synesis/request.h"
#include "synesis/stream.h"
#include "tunnel_int.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HOSTILE_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define HOSTILE_ASAN 1
#endif
#ifdef HOSTILE_ASAN
/* The sanitizer runtime's (sanitizer/allocator_interface.h, not always installed). */
size_t __sanitizer_get_current_allocated_bytes(void);
#else
#include <malloc.h>
#endif

/* Bytes of heap in use now (the edge's and the tunnel's: they share the process). */
static size_t heap_in_use(void) {
#ifdef HOSTILE_ASAN
    return __sanitizer_get_current_allocated_bytes();
#else
    struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
#endif
}

/* ---- lying to the edge's QUIC stack about the device's transport parameters ---- */

static struct {
    int on;
    uint64_t max_streams_bidi, max_streams_uni; /* 0: as the device sent them */
    uint64_t max_stream_data, max_data;
    uint64_t cid_limit;
    int applied; /* connections lied to */
} lie;

int __real_ngtcp2_conn_decode_and_set_remote_transport_params(ngtcp2_conn *conn,
                                                              const uint8_t *data, size_t len);
int __wrap_ngtcp2_conn_decode_and_set_remote_transport_params(ngtcp2_conn *conn,
                                                              const uint8_t *data, size_t len);
int __wrap_ngtcp2_conn_decode_and_set_remote_transport_params(ngtcp2_conn *conn,
                                                              const uint8_t *data, size_t len) {
    if (!lie.on || !ngtcp2_conn_is_server(conn))
        return __real_ngtcp2_conn_decode_and_set_remote_transport_params(conn, data, len);
    ngtcp2_transport_params p;
    int rv = ngtcp2_transport_params_decode(&p, data, len);
    if (rv != 0)
        return rv;
    if (lie.max_streams_bidi)
        p.initial_max_streams_bidi = lie.max_streams_bidi;
    if (lie.max_streams_uni)
        p.initial_max_streams_uni = lie.max_streams_uni;
    if (lie.max_stream_data)
        p.initial_max_stream_data_bidi_local = p.initial_max_stream_data_bidi_remote =
            p.initial_max_stream_data_uni = lie.max_stream_data;
    if (lie.max_data)
        p.initial_max_data = lie.max_data;
    if (lie.cid_limit)
        p.active_connection_id_limit = lie.cid_limit;
    uint8_t buf[1024];
    ngtcp2_ssize n = ngtcp2_transport_params_encode(buf, sizeof(buf), &p);
    if (n < 0)
        return (int)n;
    lie.applied++;
    return __real_ngtcp2_conn_decode_and_set_remote_transport_params(conn, buf, (size_t)n);
}

/* ---- fixture ---- */

static const char *pki;

#define MAX_CLOSES 16

typedef struct fx {
    struct ev_loop *loop;
    syn_edge *edge;
    synesis_tunnel *t;
    synesis_tunnel_config cfg;
    syn_test_states states;
    /* The edge's "close" events: their reasons (what the device told it, for one). */
    char closes[MAX_CLOSES][256];
    int ncloses;
    /* heartbeats: handed to QUIC (on_heartbeat status 0), refused at once (status < 0, the last
     * one's status), and their outcomes */
    int hb_sent, hb_not_sent, hb_not_sent_status;
    int hb_results, hb_lost, hb_delivered;
} fx;

static void edge_log(void *ud, const char *line) {
    fx *f = ud;
    cJSON *o = cJSON_Parse(line);
    const cJSON *ev = cJSON_GetObjectItem(o, "event");
    const cJSON *reason = cJSON_GetObjectItem(o, "reason");
    if (cJSON_IsString(ev) && strcmp(ev->valuestring, "close") == 0 && cJSON_IsString(reason) &&
        f->ncloses < MAX_CLOSES)
        snprintf(f->closes[f->ncloses++], sizeof(f->closes[0]), "%s", reason->valuestring);
    cJSON_Delete(o);
}

static int edge_closed_one(void *ud) { return ((fx *)ud)->ncloses > 0; }

static int edge_closed_with(const fx *f, const char *needle) {
    for (int i = 0; i < f->ncloses; i++)
        if (strstr(f->closes[i], needle))
            return 1;
    return 0;
}

static void edge_config(fx *f, syn_edge_config *ec, int misbehave) {
    syn_test_edge_config(ec, pki);
    ec->misbehave = misbehave;
    ec->log = edge_log;
    ec->log_user_data = f;
    ec->handshake_timeout = 2;
}

static void edge_start(fx *f, const syn_edge_config *ec) {
    f->edge = syn_test_edge_start(f->loop, ec);
    syn_test_tunnel_config(&f->cfg, pki, syn_edge_port(f->edge));
    f->cfg.reconnect_jitter = 0;
}

static void on_hb_result(synesis_tunnel *t, const synesis_heartbeat_info *info, void *ud) {
    (void)t;
    fx *f = ud;
    f->hb_results++;
    if (info->status == SYNESIS_ERR_CONNECTION_LOST)
        f->hb_lost++;
    else if (info->status == 0)
        f->hb_delivered++;
}

static void on_hb(synesis_tunnel *t, const synesis_heartbeat_info *info, void *ud) {
    (void)t;
    fx *f = ud;
    if (info->status == 0) {
        f->hb_sent++;
    } else {
        f->hb_not_sent++;
        f->hb_not_sent_status = info->status;
    }
}

static void tunnel_start(fx *f) {
    synesis_tunnel_callbacks cb = {.struct_size = sizeof(synesis_tunnel_callbacks),
                                   .on_heartbeat = on_hb,
                                   .on_heartbeat_result = on_hb_result};
    f->t = syn_test_tunnel_new(f->loop, &f->cfg, &cb, f);
    assert_int_equal(synesis_tunnel_subscribe(f->t, syn_test_record_state, &f->states, NULL), 0);
    assert_int_equal(synesis_tunnel_connect(f->t), 0);
}

static void tunnel_connected(fx *f) {
    tunnel_start(f);
    assert_true(syn_test_run_until(f->loop, syn_test_connected, f->t, 5));
}

static int setup(void **state) {
    fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->loop = ev_loop_new(EVFLAG_AUTO);
    memset(&lie, 0, sizeof(lie));
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx *f = *state;
    lie.on = 0;
    syn_test_finish(f->loop, f->t, f->edge);
    free(f);
    return 0;
}

static int failed_or_connected(void *ud) {
    fx *f = ud;
    return syn_test_in_state(f->t, SYNESIS_STATE_FAILED) ||
           syn_test_in_state(f->t, SYNESIS_STATE_CONNECTED);
}

static void print_states(const fx *f) {
    for (int i = 0; i < f->states.n; i++)
        print_message("    state %s (%s)\n", synesis_state_name(f->states.kinds[i]),
                      synesis_error_name(f->states.errors[i]));
}

/* The error every state of kind recorded (asserting they all carry the same one). */
static int state_errors(const fx *f, synesis_state_kind kind, int *n) {
    int err = 0;
    *n = 0;
    for (int i = 0; i < f->states.n; i++) {
        if (f->states.kinds[i] != kind)
            continue;
        if (*n && f->states.errors[i] != err) {
            print_states(f);
            fail_msg("%s with %s, then with %s", synesis_state_name(kind), synesis_error_name(err),
                     synesis_error_name(f->states.errors[i]));
        }
        err = f->states.errors[i];
        (*n)++;
    }
    return err;
}

static void expect_last_error(fx *f, int err, const char *needle) {
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(f->t, &st);
    if (st.last_error != err || (needle && !strstr(st.last_error_detail, needle)))
        fail_msg("last error %s (%s), expected %s with \"%s\"", synesis_error_name(st.last_error),
                 st.last_error_detail, synesis_error_name(err), needle ? needle : "");
}

/* ---- requests ---- */

typedef struct result {
    int calls;
    int status;
    uint64_t app_code;
    size_t len;
    char detail[256];
} result;

static void on_resp(synesis_tunnel *t, synesis_request *req, const synesis_response *r, void *ud) {
    (void)t;
    (void)req;
    result *res = ud;
    res->calls++;
    res->status = r->status;
    res->app_code = r->app_error_code;
    res->len = r->len;
    snprintf(res->detail, sizeof(res->detail), "%s", r->detail);
}

static int res_done(void *ud) { return ((result *)ud)->calls > 0; }

static void request(fx *f, const char *data, size_t len, double timeout, size_t max_response,
                    result *res) {
    memset(res, 0, sizeof(*res));
    synesis_request_options o;
    synesis_request_options_init(&o);
    o.timeout = timeout;
    o.max_response_size = max_response;
    assert_int_equal(synesis_tunnel_request(f->t, data, len, &o, on_resp, res, NULL), 0);
}

static void request_wait(fx *f, const char *data, size_t len, double timeout, size_t max_response,
                         result *res) {
    request(f, data, len, timeout, max_response, res);
    assert_true(syn_test_run_until(f->loop, res_done, res, timeout + 5));
    assert_int_equal(res->calls, 1);
}

/* ======================================================================================== */
/* (1) The edge closes right after the handshake, with an application error.                  */

/* Closes, then each reconnection the same: every Reconnecting carries CLOSED_BY_PEER with the
 * edge's code and reason, and since no connection stays up for the stable period the attempts
 * run out: Failed. A request in flight when the edge closes fails with CONNECTION_LOST. */
static void close_after_handshake(fx *f, double delay, int exact) {
    syn_edge_config ec;
    edge_config(f, &ec, SYN_EDGE_MB_CLOSE);
    ec.misbehave_delay = delay;
    edge_start(f, &ec);
    f->cfg.reconnect_stable_period = 30; /* no connection stays up that long */
    f->cfg.reconnect_max_attempts = 3;
    f->cfg.retry_initial_connect = 1; /* the first connection too, when it never confirms */
    tunnel_start(f);
    result res = {0};
    if (exact) {
        assert_true(syn_test_run_until(f->loop, syn_test_connected, f->t, 5));
        request(f, "SLEEP 1000\nlate", 15, 10, 0, &res);
    }
    assert_true(syn_test_wait_state(f->loop, f->t, SYNESIS_STATE_FAILED, 20));
    int n;
    assert_int_equal(state_errors(f, SYNESIS_STATE_RECONNECTING, &n), SYNESIS_ERR_CLOSED_BY_PEER);
    synesis_tunnel_state st;
    synesis_tunnel_get_state(f->t, &st);
    assert_int_equal(st.error, SYNESIS_ERR_MAX_RECONNECTS);
    assert_non_null(strstr(st.error_detail, "application error 0x1bad (\"hostile edge\")"));
    expect_last_error(f, SYNESIS_ERR_CLOSED_BY_PEER, "application error 0x1bad (\"hostile edge\")");
    synesis_tunnel_stats ts;
    synesis_tunnel_get_stats(f->t, &ts);
    int connected;
    state_errors(f, SYNESIS_STATE_CONNECTED, &connected);
    assert_int_equal(ts.connections, (uint64_t)connected);
    if (exact) {
        /* The first connection and one per allowed attempt, each closed by the edge. */
        assert_int_equal(connected, 4);
        assert_int_equal(n, 4);
        assert_int_equal(res.calls, 1);
        assert_int_equal(res.status, SYNESIS_ERR_CONNECTION_LOST);
        assert_non_null(strstr(res.detail, "0x1bad"));
    }
    /* Otherwise the close races the client's confirmation of the handshake: each connection is
     * Connected for an instant, or never. */
    assert_null(f->t->qc);
}

static void test_close_after_handshake(void **state) { close_after_handshake(*state, 0.1, 1); }

/* The same with the close sent while the edge completes the handshake. */
static void test_close_at_handshake(void **state) { close_after_handshake(*state, 0, 0); }

/* ======================================================================================== */
/* (2) The edge resets every stream: requests, streams and heartbeats.                        */

typedef struct sres {
    int closes, status, data;
    uint64_t app_code;
    size_t first_len, total;
    int ends;
} sres;

static void s_on_data(synesis_stream *s, const uint8_t *data, size_t len, void *ud) {
    (void)s;
    (void)data;
    sres *r = ud;
    if (!r->data++)
        r->first_len = len;
    r->total += len;
}

static void s_on_end(synesis_stream *s, void *ud) {
    (void)s;
    ((sres *)ud)->ends++;
}

static void s_on_close(synesis_stream *s, int status, uint64_t app_code, const char *detail,
                       void *ud) {
    (void)detail;
    (void)s;
    sres *r = ud;
    r->closes++;
    r->status = status;
    r->app_code = app_code;
}

static const synesis_stream_callbacks s_cb = {.struct_size = sizeof(synesis_stream_callbacks),
                                              .on_data = s_on_data,
                                              .on_end = s_on_end,
                                              .on_close = s_on_close};

static int s_closed(void *ud) { return ((sres *)ud)->closes > 0; }

static int hb_three(void *ud) { return ((fx *)ud)->hb_results >= 3; }

static void test_reset_every_stream(void **state) {
    fx *f = *state;
    syn_edge_config ec;
    edge_config(f, &ec, SYN_EDGE_MB_RESET_STREAMS);
    edge_start(f, &ec);
    f->cfg.heartbeat_interval = 0.05;
    tunnel_connected(f);
    for (int i = 0; i < 20; i++) {
        result res;
        request_wait(f, "hello", 5, 5, 0, &res);
        assert_int_equal(res.status, SYNESIS_ERR_STREAM_RESET);
        assert_int_equal(res.app_code, 0x1bad);
        assert_non_null(strstr(res.detail, "reset the stream with application error 0x1bad"));
    }
    sres sr = {0};
    synesis_stream *s;
    assert_int_equal(synesis_tunnel_open_stream(f->t, &s_cb, &sr, &s), 0);
    size_t acc;
    assert_int_equal(synesis_stream_write(s, "abc", 3, &acc), 0);
    assert_true(syn_test_run_until(f->loop, s_closed, &sr, 5));
    assert_int_equal(sr.status, SYNESIS_ERR_STREAM_RESET);
    assert_int_equal(sr.app_code, 0x1bad);
    /* Heartbeats: the edge stops reading each (STOP_SENDING 0x1bad). A heartbeat fits in one
     * packet with its FIN, which QUIC acknowledges in the same packet as the STOP_SENDING: the
     * acknowledgement is all the tunnel can know (delivered), or the stop came first (lost).
     * Either way every outcome is reported and nothing waits for one. */
    assert_true(syn_test_run_until(f->loop, hb_three, f, 5));
    assert_int_equal(f->hb_delivered + f->hb_lost, f->hb_results);
    synesis_tunnel_stats ts;
    synesis_tunnel_get_stats(f->t, &ts);
    assert_int_equal(ts.requests_failed, 20);
    assert_int_equal(ts.requests_succeeded, 0);
    assert_true(ts.heartbeats_sent - ts.heartbeats_delivered - ts.heartbeats_failed <= 1);
    /* Still up, nothing held for the reset requests. */
    assert_int_equal(f->states.n, 2);
    assert_true(syn_test_in_state(f->t, SYNESIS_STATE_CONNECTED));
    assert_true(syn_list_empty(&f->t->req.live));
    assert_int_equal(f->t->req.waiting, 0);
    assert_true(syn_list_empty(&f->t->streams.live));
}

/* ======================================================================================== */
/* (3) The edge sends more than allowed.                                                      */

/* Beyond the response size: each request fails as soon as its response crosses the limit, with
 * no more than the limit buffered; the edge's stream is stopped and the connection carries on. */
static void test_response_too_large(void **state) {
    fx *f = *state;
    syn_edge_config ec;
    edge_config(f, &ec, SYN_EDGE_MB_ENDLESS_RESPONSE);
    edge_start(f, &ec);
    tunnel_connected(f);
    const size_t max = 100000;
    for (int i = 0; i < 5; i++) {
        result res;
        request_wait(f, "anything", 8, 10, max, &res);
        assert_int_equal(res.status, SYNESIS_ERR_RESPONSE_TOO_LARGE);
        assert_non_null(strstr(res.detail, "exceeds the maximum of 100000 bytes"));
        assert_int_equal(res.len, 0);
        synesis_tunnel_stats ts;
        synesis_tunnel_get_stats(f->t, &ts);
        assert_true(ts.bytes_received <= (uint64_t)(i + 1) * max);
    }
    synesis_tunnel_stats ts;
    synesis_tunnel_get_stats(f->t, &ts);
    assert_int_equal(ts.requests_failed, 5);
    assert_int_equal(f->states.n, 2);
    assert_true(syn_list_empty(&f->t->req.live));
}

static int edge_requests_5(void *ud) {
    syn_edge_stats st;
    syn_edge_get_stats(((fx *)ud)->edge, &st);
    return st.requests >= 5;
}

/* A paused stream against endless data: the edge may send one receive window, no more, and that
 * is all the tunnel holds. */
static void test_endless_response_paused_stream(void **state) {
    fx *f = *state;
    syn_edge_config ec;
    edge_config(f, &ec, SYN_EDGE_MB_ENDLESS_RESPONSE);
    edge_start(f, &ec);
    f->cfg.stream_recv_window = 64 * 1024;
    tunnel_connected(f);
    sres sr = {0};
    synesis_stream *s;
    assert_int_equal(synesis_tunnel_open_stream(f->t, &s_cb, &sr, &s), 0);
    synesis_stream_pause(s);
    size_t acc;
    assert_int_equal(synesis_stream_write(s, "go", 2, &acc), 0);
    syn_test_run_for(f->loop, 0.5);
    assert_int_equal(sr.data, 0);
    synesis_tunnel_stats ts;
    synesis_tunnel_get_stats(f->t, &ts);
    assert_int_equal(ts.bytes_received, 0);
    synesis_stream_resume(s); /* the held bytes at once: one window at most */
    assert_true(sr.data >= 1);
    assert_true(sr.first_len > 0);
    assert_true(sr.first_len <= 64 * 1024);
    synesis_stream_pause(s);
    assert_int_equal(synesis_stream_reset(s, 7), 0);
    assert_int_equal(sr.closes, 1);
    assert_int_equal(sr.status, SYNESIS_ERR_CANCELLED);
    assert_int_equal(sr.ends, 0);
    assert_int_equal(f->states.n, 2);
}

/* Beyond flow control: the edge's stack believes the device granted 1 GiB per stream; the
 * device's QUIC stack catches the first byte past its 16 KiB window and closes the connection
 * with FLOW_CONTROL_ERROR (0x3). */
static void test_flow_control_violation(void **state) {
    fx *f = *state;
    syn_edge_config ec;
    edge_config(f, &ec, SYN_EDGE_MB_ENDLESS_RESPONSE);
    edge_start(f, &ec);
    lie.on = 1;
    lie.max_stream_data = lie.max_data = 1ull << 30;
    f->cfg.stream_recv_window = 16 * 1024;
    tunnel_connected(f);
    if (!lie.applied)
        skip(); /* ngtcp2 is a shared library here: the wrapper cannot reach it */
    result res;
    request(f, "anything", 8, 10, 64u << 20, &res);
    assert_true(syn_test_wait_state(f->loop, f->t, SYNESIS_STATE_RECONNECTING, 10));
    assert_true(syn_test_run_until(f->loop, res_done, &res, 1));
    assert_int_equal(res.status, SYNESIS_ERR_CONNECTION_LOST);
    assert_int_equal(res.len, 0);
    int n;
    assert_int_equal(state_errors(f, SYNESIS_STATE_RECONNECTING, &n), SYNESIS_ERR_QUIC);
    expect_last_error(
        f, SYNESIS_ERR_QUIC,
        "ERR_FLOW_CONTROL (closed with QUIC transport error FLOW_CONTROL_ERROR, 0x3)");
    assert_true(syn_test_run_until(f->loop, edge_closed_one, f, 5));
    if (!edge_closed_with(f, "transport error 0x3"))
        fail_msg("the edge saw: %s", f->closes[0]);
}

/* ======================================================================================== */
/* (4) The edge never sends FIN.                                                              */

static void test_no_fin(void **state) {
    fx *f = *state;
    syn_edge_config ec;
    edge_config(f, &ec, SYN_EDGE_MB_NO_FIN);
    edge_start(f, &ec);
    tunnel_connected(f);
    result res[4];
    for (int i = 0; i < 4; i++)
        request(f, "hello", 5, 0.3, 0, &res[i]);
    for (int i = 0; i < 4; i++) {
        assert_true(syn_test_run_until(f->loop, res_done, &res[i], 5));
        assert_int_equal(res[i].status, SYNESIS_ERR_TIMEOUT);
        assert_non_null(strstr(res[i].detail, "no complete response"));
        assert_int_equal(res[i].len, 0);
    }
    /* A stream gets the data, never its end; the application resets it. */
    sres sr = {0};
    synesis_stream *s;
    assert_int_equal(synesis_tunnel_open_stream(f->t, &s_cb, &sr, &s), 0);
    size_t acc;
    assert_int_equal(synesis_stream_write(s, "abc", 3, &acc), 0);
    assert_int_equal(synesis_stream_finish(s), 0);
    syn_test_run_for(f->loop, 0.3);
    assert_int_equal(sr.total, 3);
    assert_int_equal(sr.ends, 0);
    assert_int_equal(sr.closes, 0);
    assert_int_equal(synesis_stream_reset(s, 9), 0);
    assert_int_equal(sr.status, SYNESIS_ERR_CANCELLED);
    /* The resets reached the edge: its five streams are gone (nothing pins the edge's stream
     * limit), and the tunnel never left Connected. */
    assert_true(syn_test_run_until(f->loop, edge_requests_5, f, 5));
    synesis_tunnel_stats ts;
    synesis_tunnel_get_stats(f->t, &ts);
    assert_int_equal(ts.requests_timed_out, 4);
    assert_int_equal(f->states.n, 2);
    assert_true(syn_list_empty(&f->t->req.live));
}

/* ======================================================================================== */
/* (5) The edge stalls an upload: no MAX_STREAM_DATA / MAX_DATA, ever.                        */

typedef struct writer {
    synesis_stream *s;
    size_t accepted;
    int would_block, writable;
    sres r;
} writer;

static void w_fill(writer *w) {
    static const uint8_t chunk[4096];
    for (;;) {
        size_t acc = 0;
        int rv = synesis_stream_write(w->s, chunk, sizeof(chunk), &acc);
        w->accepted += acc;
        if (rv == SYNESIS_ERR_WOULD_BLOCK) {
            w->would_block++;
            return;
        }
        assert_int_equal(rv, 0);
        if (acc < sizeof(chunk))
            return;
    }
}

static void w_on_writable(synesis_stream *s, void *ud) {
    (void)s;
    writer *w = ud;
    w->writable++;
    w_fill(w);
}

static void w_on_close(synesis_stream *s, int status, uint64_t app_code, const char *detail,
                       void *ud) {
    (void)detail;
    s_on_close(s, status, app_code, detail, &((writer *)ud)->r);
}

static void on_release(const void *data, size_t len, void *ud) {
    (void)data;
    (void)len;
    (*(int *)ud)++;
}

static int int_set(void *ud) { return *(int *)ud > 0; }

static void test_stalled_upload(void **state) {
    fx *f = *state;
    syn_edge_config ec;
    edge_config(f, &ec, SYN_EDGE_MB_STALL_UPLOADS);
    ec.max_conn_buffer = 64 * 1024; /* the edge's windows: 64 KiB per stream and connection */
    edge_start(f, &ec);
    f->cfg.stream_send_buffer = 32 * 1024;
    f->cfg.idle_timeout = 1;
    f->cfg.keep_alive_interval = 0.2;
    tunnel_connected(f);
    writer w = {0};
    synesis_stream_callbacks cb = {.struct_size = sizeof(synesis_stream_callbacks),
                                   .on_writable = w_on_writable,
                                   .on_close = w_on_close};
    assert_int_equal(synesis_tunnel_open_stream(f->t, &cb, &w, &w.s), 0);
    w_fill(&w);
    syn_test_run_for(f->loop, 1.5); /* longer than the idle timeout */
    /* The edge's window went out, our send buffer filled behind it, and that is all. */
    print_message("    accepted %zu, buffered %zu, writable %d\n", w.accepted,
                  synesis_stream_buffered(w.s), w.writable);
    assert_true(w.accepted >= 64 * 1024);
    assert_true(w.accepted <= 64 * 1024 + 32 * 1024);
    assert_true(synesis_stream_buffered(w.s) > 0);
    assert_true(synesis_stream_buffered(w.s) <= 32 * 1024);
    size_t acc;
    assert_int_equal(synesis_stream_write(w.s, "x", 1, &acc), SYNESIS_ERR_WOULD_BLOCK);
    /* The connection's window is used up too: a request cannot go out, and times out; its body
     * (not copied) is handed back once its stream is gone. */
    static uint8_t body[200000];
    int released = 0;
    result res = {0};
    synesis_request_options o;
    synesis_request_options_init(&o);
    o.timeout = 0.3;
    assert_int_equal(synesis_tunnel_request_nocopy(f->t, body, sizeof(body), on_release, &released,
                                                   &o, on_resp, &res, NULL),
                     0);
    assert_true(syn_test_run_until(f->loop, res_done, &res, 5));
    assert_int_equal(res.status, SYNESIS_ERR_TIMEOUT);
    assert_true(syn_test_run_until(f->loop, int_set, &released, 5));
    /* Blocked, not dead: the keep-alive held the connection over more than an idle timeout. */
    assert_int_equal(f->states.n, 2);
    assert_true(syn_test_in_state(f->t, SYNESIS_STATE_CONNECTED));
    assert_int_equal(synesis_stream_reset(w.s, 5), 0);
    assert_int_equal(w.r.closes, 1);
    assert_int_equal(w.r.status, SYNESIS_ERR_CANCELLED);
}

/* Heartbeats behind a stalled connection window, from an edge that grants plenty of streams:
 * none can leave, and none is acknowledged. The tunnel keeps a bounded number of them waiting
 * (SYN_HB_MAX_LIVE); the ticks beyond are not sent (SYNESIS_ERR_WOULD_BLOCK) instead of piling
 * up a frame each for as long as the edge keeps the connection alive. */
static void test_stalled_heartbeats(void **state) {
    fx *f = *state;
    syn_edge_config ec;
    edge_config(f, &ec, SYN_EDGE_MB_STALL_UPLOADS);
    ec.max_conn_buffer = 64 * 1024;
    ec.max_streams_uni = 1u << 20;
    edge_start(f, &ec);
    f->cfg.heartbeat_interval = 0.005;
    tunnel_connected(f);
    writer w = {0};
    synesis_stream_callbacks cb = {.struct_size = sizeof(synesis_stream_callbacks),
                                   .on_writable = w_on_writable,
                                   .on_close = w_on_close};
    assert_int_equal(synesis_tunnel_open_stream(f->t, &cb, &w, &w.s), 0);
    w_fill(&w);
    syn_test_run_for(f->loop, 1.5);
    int in_flight = f->hb_sent - f->hb_results;
    print_message("    heartbeats: %d handed to QUIC, %d outcomes, %d not sent\n", f->hb_sent,
                  f->hb_results, f->hb_not_sent);
    assert_true(f->hb_sent + f->hb_not_sent >= 100); /* the ticks ran */
    assert_true(in_flight <= SYN_HB_MAX_LIVE);
    assert_true(f->hb_not_sent >= 1);
    assert_int_equal(f->hb_not_sent_status, SYNESIS_ERR_WOULD_BLOCK);
    assert_true(syn_test_in_state(f->t, SYNESIS_STATE_CONNECTED));
    assert_int_equal(synesis_stream_reset(w.s, 5), 0);
}

/* ======================================================================================== */
/* (6) The edge opens streams towards the device.                                             */

static int edge_open_tried(void *ud) {
    syn_edge_stats st;
    syn_edge_get_stats(((fx *)ud)->edge, &st);
    return st.mb_streams + st.mb_refused >= 40;
}

static int hb_two_delivered(void *ud) { return ((fx *)ud)->hb_delivered >= 2; }

/* Within what the device grants: no bidirectional stream at all, SYN_DEVICE_PEER_UNI_STREAMS
 * unidirectional ones (report streams), which the edge then keeps open forever. The tunnel holds
 * one report buffer per stream, no more, and carries on. */
static void test_streams_towards_device(void **state) {
    fx *f = *state;
    syn_edge_config ec;
    edge_config(f, &ec, SYN_EDGE_MB_OPEN_STREAMS);
    ec.misbehave_count = 20;
    edge_start(f, &ec);
    f->cfg.heartbeat_interval = 0.05;
    tunnel_connected(f);
    result res;
    request_wait(f, "ping", 4, 5, 0, &res);
    assert_int_equal(res.status, 0);
    assert_true(syn_test_run_until(f->loop, edge_open_tried, f, 5));
    syn_test_run_for(f->loop, 0.1);
    syn_edge_stats es;
    syn_edge_get_stats(f->edge, &es);
    assert_int_equal(es.mb_streams, SYN_DEVICE_PEER_UNI_STREAMS);
    assert_int_equal(es.mb_refused, 40 - SYN_DEVICE_PEER_UNI_STREAMS);
    assert_int_equal(syn_reports_count(f->t), SYN_DEVICE_PEER_UNI_STREAMS);
    for (int i = 0; i < 3; i++) {
        request_wait(f, "ping", 4, 5, 0, &res);
        assert_int_equal(res.status, 0);
    }
    syn_test_run_for(f->loop, 0.1);
    syn_edge_get_stats(f->edge, &es);
    assert_int_equal(es.mb_streams, SYN_DEVICE_PEER_UNI_STREAMS);
    assert_int_equal(syn_reports_count(f->t), SYN_DEVICE_PEER_UNI_STREAMS);
    f->hb_delivered = 0;
    assert_true(syn_test_run_until(f->loop, hb_two_delivered, f, 5));
    assert_int_equal(f->states.n, 2);
}

/* Beyond what the device grants (the edge's stack lied to): the device closes the connection
 * with STREAM_LIMIT_ERROR (0x4). */
static void streams_beyond_limit(fx *f, int bidi) {
    syn_edge_config ec;
    edge_config(f, &ec, SYN_EDGE_MB_OPEN_STREAMS);
    ec.misbehave_count = 2 * SYN_DEVICE_PEER_UNI_STREAMS;
    edge_start(f, &ec);
    lie.on = 1;
    if (bidi)
        lie.max_streams_bidi = 100;
    else
        lie.max_streams_uni = 100;
    tunnel_connected(f);
    if (!lie.applied)
        skip(); /* ngtcp2 is a shared library here: the wrapper cannot reach it */
    result res;
    request(f, "ping", 4, 5, 0, &res);
    assert_true(syn_test_wait_state(f->loop, f->t, SYNESIS_STATE_RECONNECTING, 5));
    int n;
    assert_int_equal(state_errors(f, SYNESIS_STATE_RECONNECTING, &n), SYNESIS_ERR_QUIC);
    expect_last_error(f, SYNESIS_ERR_QUIC, "STREAM_LIMIT_ERROR, 0x4");
    assert_true(syn_test_run_until(f->loop, edge_closed_one, f, 5));
    if (!edge_closed_with(f, "transport error 0x4"))
        fail_msg("the edge saw: %s", f->closes[0]);
    assert_int_equal(syn_reports_count(f->t), 0);
    assert_true(syn_test_run_until(f->loop, res_done, &res, 5));
}

static void test_bidi_streams_beyond_limit(void **state) { streams_beyond_limit(*state, 1); }
static void test_uni_streams_beyond_limit(void **state) { streams_beyond_limit(*state, 0); }

/* ======================================================================================== */
/* (7) The edge floods the device with streams and tiny packets.                              */

static void test_flood(void **state) {
    fx *f = *state;
    syn_edge_config ec;
    edge_config(f, &ec, SYN_EDGE_MB_FLOOD);
    edge_start(f, &ec);
    f->cfg.heartbeat_interval = 0.1;
    tunnel_connected(f);
    syn_test_run_for(f->loop, 0.3);
    syn_edge_stats e0, e1;
    syn_edge_get_stats(f->edge, &e0);
    size_t h0 = heap_in_use();
    size_t max_reports = 0;
    for (int i = 0; i < 15; i++) {
        result res;
        request_wait(f, "ping", 4, 5, 0, &res);
        assert_int_equal(res.status, 0);
        syn_test_run_for(f->loop, 0.1);
        size_t n = syn_reports_count(f->t);
        if (n > max_reports)
            max_reports = n;
    }
    size_t h1 = heap_in_use();
    syn_edge_get_stats(f->edge, &e1);
    print_message("    %llu flood streams; heap %zu -> %zu; at most %zu reports held\n",
                  (unsigned long long)(e1.mb_streams - e0.mb_streams), h0, h1, max_reports);
    assert_true(e1.mb_streams - e0.mb_streams >= 500);
    assert_true(max_reports <= SYN_DEVICE_PEER_UNI_STREAMS);
    assert_true(h1 < h0 + 1024 * 1024);
    assert_true(f->hb_delivered >= 3);
    assert_int_equal(f->states.n, 2);
}

/* ======================================================================================== */
/* (9) NEW_CONNECTION_ID flood: more IDs than the device's active_connection_id_limit.       */

static void test_connection_id_flood(void **state) {
    fx *f = *state;
    syn_edge_config ec;
    edge_config(f, &ec, SYN_EDGE_BEHAVE);
    edge_start(f, &ec);
    lie.on = 1;
    lie.cid_limit = 8; /* the device sent 2 (the default): the edge issues 7 */
    f->cfg.reconnect_max_attempts = 2;
    f->cfg.retry_initial_connect = 1;
    tunnel_start(f);
    assert_true(syn_test_run_until(f->loop, failed_or_connected, f, 10));
    if (!lie.applied)
        skip(); /* ngtcp2 is a shared library here: the wrapper cannot reach it */
    int n;
    assert_int_equal(state_errors(f, SYNESIS_STATE_RECONNECTING, &n), SYNESIS_ERR_QUIC);
    assert_int_equal(n, 2);
    assert_int_equal(syn_test_find_state(&f->states, SYNESIS_STATE_CONNECTED, 0), -1);
    expect_last_error(f, SYNESIS_ERR_QUIC, "CONNECTION_ID_LIMIT_ERROR, 0x9");
    assert_true(edge_closed_with(f, "transport error 0x9"));
    assert_null(f->t->qc);
}

/* ======================================================================================== */
/* (10) The edge changes its address (a server-side migration, which QUIC forbids).          */

static void test_server_address_change(void **state) {
    fx *f = *state;
    syn_edge_config ec;
    edge_config(f, &ec, SYN_EDGE_MB_MIGRATE);
    edge_start(f, &ec);
    f->cfg.idle_timeout = 1;
    f->cfg.keep_alive_interval = 0.2;
    tunnel_connected(f);
    result res;
    request(f, "ping", 4, 10, 0, &res);
    assert_true(syn_test_wait_state(f->loop, f->t, SYNESIS_STATE_RECONNECTING, 5));
    /* The edge got the request and answered from its new address: never accepted. */
    syn_edge_stats es;
    syn_edge_get_stats(f->edge, &es);
    assert_int_equal(es.mb_migrations, 1);
    assert_true(es.bytes_received >= 4);
    assert_true(syn_test_run_until(f->loop, res_done, &res, 1));
    assert_int_equal(res.status, SYNESIS_ERR_CONNECTION_LOST);
    int n;
    assert_int_equal(state_errors(f, SYNESIS_STATE_RECONNECTING, &n), SYNESIS_ERR_IDLE_TIMEOUT);
    /* A new connection (the edge moves again only at its first request). */
    assert_true(syn_test_run_until(f->loop, syn_test_connected, f->t, 5));
    synesis_tunnel_stats ts;
    synesis_tunnel_get_stats(f->t, &ts);
    assert_int_equal(ts.connections, 2);
    assert_int_equal(ts.bytes_received, 0);
}

/* A preferred address (RFC 9000 9.6) that nothing serves: a client MAY migrate there, ours does
 * not (ngtcp2 migrates only when the application selects the address): the requests keep working
 * over the address of the handshake (a client that took the preferred address would lose them),
 * and nothing reaches the trap. */
static void test_preferred_address_ignored(void **state) {
    fx *f = *state;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    syn_sockaddr trap_addr;
    char detail[512];
    int trap = syn_udp_open(NULL, 0, (struct sockaddr *)&a, sizeof(a), 0, &trap_addr, detail);
    assert_true(trap >= 0);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u",
             ntohs(((struct sockaddr_in *)&trap_addr.ss)->sin_port));
    syn_edge_config ec;
    edge_config(f, &ec, SYN_EDGE_MB_PREFERRED_ADDRESS);
    ec.misbehave_address = addr;
    edge_start(f, &ec);
    tunnel_connected(f);
    for (int i = 0; i < 5; i++) {
        result res;
        request_wait(f, "ping", 4, 5, 0, &res);
        assert_int_equal(res.status, 0);
        syn_test_run_for(f->loop, 0.1);
    }
    uint8_t buf[2048];
    assert_true(recv(trap, buf, sizeof(buf), MSG_DONTWAIT) < 0);
    assert_int_equal(f->states.n, 2);
    close(trap);
}

/* ======================================================================================== */
/* (8) The edge presents a certificate it should not, or the wrong application protocol.      */

/* Connects once (no retry of the first connection) to an edge presenting cert (a name in the
 * PKI directory; NULL = its own) with misbehave, or accepting only edge_alpn. Checks that the
 * tunnel went Connecting -> Failed with err and a detail holding needle, never Connected, and
 * that nothing of the connection is left. */
static void refused_handshake(fx *f, const char *cert, int misbehave, const char *edge_alpn,
                              int err, const char *needle) {
    syn_edge_config ec;
    edge_config(f, &ec, misbehave);
    char pem[512], key[512];
    if (cert) {
        snprintf(pem, sizeof(pem), "%s/%s.pem", pki, cert);
        snprintf(key, sizeof(key), "%s/%s.key", pki, cert);
        ec.misbehave_cert_file = pem;
        ec.misbehave_key_file = key;
    }
    if (edge_alpn)
        ec.alpn = edge_alpn;
    edge_start(f, &ec);
    tunnel_start(f);
    assert_true(syn_test_wait_state(f->loop, f->t, SYNESIS_STATE_FAILED, 10));
    synesis_tunnel_state st;
    synesis_tunnel_get_state(f->t, &st);
    if (st.error != err || !strstr(st.error_detail, needle))
        fail_msg("Failed with %s (%s), expected %s with \"%s\"", synesis_error_name(st.error),
                 st.error_detail, synesis_error_name(err), needle);
    assert_int_equal(f->states.n, 2);
    assert_int_equal(f->states.kinds[0], SYNESIS_STATE_CONNECTING);
    assert_int_equal(f->states.kinds[1], SYNESIS_STATE_FAILED);
    expect_last_error(f, err, needle);
    synesis_tunnel_stats ts;
    synesis_tunnel_get_stats(f->t, &ts);
    assert_int_equal(ts.connections, 0);
    assert_null(f->t->qc);
    assert_int_equal(f->t->fd, -1);
}

static void test_cert_expired(void **state) {
    refused_handshake(*state, "expired-edge", 0, NULL, SYNESIS_ERR_PEER_CERT_EXPIRED,
                      "certificate has expired");
}

static void test_cert_wrong_host(void **state) {
    refused_handshake(*state, "other-edge", 0, NULL, SYNESIS_ERR_PEER_NAME_MISMATCH,
                      "(CN=other.example");
}

static void test_cert_self_signed(void **state) {
    refused_handshake(*state, "self-edge", 0, NULL, SYNESIS_ERR_PEER_UNTRUSTED,
                      "self-signed certificate");
}

/* An edge that serves another protocol: its no_application_protocol alert. */
static void test_alpn_refused(void **state) {
    refused_handshake(*state, NULL, 0, "other/1", SYNESIS_ERR_ALPN,
                      "accepts none of our application protocols");
}

/* An edge that selects a protocol we did not offer: OpenSSL refuses the handshake. */
static void test_alpn_other(void **state) {
    refused_handshake(*state, NULL, SYN_EDGE_MB_ALPN_OTHER, NULL, SYNESIS_ERR_ALPN,
                      "selected an application protocol we did not offer");
}

/* An edge that selects none: OpenSSL completes the handshake, QUIC forbids it (RFC 9001 8.1).
 * The tunnel closes with no_application_protocol (CRYPTO_ERROR 0x100 + 120), which the edge
 * logs. */
static void test_alpn_none(void **state) {
    fx *f = *state;
    refused_handshake(f, NULL, SYN_EDGE_MB_ALPN_NONE, NULL, SYNESIS_ERR_ALPN,
                      "selected no application protocol");
    assert_true(syn_test_run_until(f->loop, edge_closed_one, f, 5));
    if (!edge_closed_with(f, "transport error 0x178"))
        fail_msg("the edge saw: %s", f->ncloses ? f->closes[0] : "(no close)");
}

/* ---- group ---- */

static void make_cert(const char *name, const char *cn, const char *alt, int64_t offset, int days,
                      int self_signed) {
    const char *alts[] = {alt, "127.0.0.1"};
    synesis_pki_cert_options o;
    synesis_pki_cert_options_init(&o, SYNESIS_CERT_PROFILE_SERVER);
    o.common_name = cn;
    o.alt_names = alts;
    o.n_alt_names = 2;
    o.not_before_offset_s = offset;
    o.days = days;
    if (!self_signed) {
        o.issuer_cert_file = syn_test_path(pki, "ca.pem");
        o.issuer_key_file = syn_test_path(pki, "ca.key");
    }
    char cert[512], key[512], d[512];
    snprintf(cert, sizeof(cert), "%s/%s.pem", pki, name);
    snprintf(key, sizeof(key), "%s/%s.key", pki, name);
    int rv = synesis_pki_create_cert(&o, cert, key, d, sizeof(d));
    if (rv)
        fail_msg("%s: %s: %s", name, synesis_error_name(rv), d);
}

static int group_setup(void **state) {
    (void)state;
    pki = syn_test_pki("hostile-1");
    make_cert("expired-edge", "localhost", "localhost", -10L * 86400, 1, 0);
    make_cert("other-edge", "other.example", "other.example", 0, 30, 0);
    make_cert("self-edge", "localhost", "localhost", 0, 30, 1);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_close_after_handshake, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_at_handshake, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_every_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_response_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_endless_response_paused_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flow_control_violation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_fin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stalled_upload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stalled_heartbeats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_streams_towards_device, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bidi_streams_beyond_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uni_streams_beyond_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flood, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cert_expired, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cert_wrong_host, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cert_self_signed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alpn_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alpn_other, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alpn_none, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_id_flood, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_address_change, setup, teardown),
        cmocka_unit_test_setup_teardown(test_preferred_address_ignored, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}

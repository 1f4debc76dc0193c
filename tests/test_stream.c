/*
 * The streaming API's edge cases against the reference edge over real UDP on loopback: writes
 * after finish, zero-length writes, streams finished (or reset) while still queued at the edge's
 * stream limit, pause/resume with data and FIN held, reset from inside on_data, the tunnel freed
 * or the connection lost with streams open, opening when not connected. Waits are for conditions
 * with generous deadlines; nothing asserts speed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "protocol.h"
#include "synesis/request.h"
#include "synesis/stream.h"

typedef struct fixture {
    struct ev_loop *loop;
    syn_edge *edge;
    synesis_tunnel *t;
    synesis_tunnel_config cfg;
} fixture;

static const char *pki;

static fixture *make_fixture(uint64_t max_streams_bidi) {
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->loop = ev_loop_new(EVFLAG_AUTO);
    pki = syn_test_pki_shared("str-1");
    syn_edge_config ec;
    syn_test_edge_config(&ec, pki);
    ec.max_streams_bidi = max_streams_bidi;
    f->edge = syn_test_edge_start(f->loop, &ec);
    syn_test_tunnel_config(&f->cfg, pki, syn_edge_port(f->edge));
    f->cfg.idle_timeout = 10;
    return f;
}

static void start_tunnel(fixture *f) {
    f->t = syn_test_tunnel_connected(f->loop, &f->cfg, NULL, f, 5);
}

static int setup(void **state) {
    fixture *f = make_fixture(100);
    start_tunnel(f);
    *state = f;
    return 0;
}

/* The edge grants one bidirectional stream at a time; small send buffers. */
static int setup_limit1(void **state) {
    fixture *f = make_fixture(1);
    f->cfg.stream_send_buffer = 4096;
    start_tunnel(f);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    syn_test_finish(f->loop, f->t, f->edge);
    free(f);
    return 0;
}

/* ---- one stream's record ---- */

enum { EV_DATA = 1, EV_END = 2, EV_CLOSE = 3 };

typedef struct srec {
    synesis_stream *s;
    uint8_t buf[65536]; /* the first bytes received */
    size_t len;         /* all bytes received */
    int data_calls, ends, closes, writables;
    int status;
    uint64_t code;
    int events[16]; /* EV_* in order (consecutive data calls logged once) */
    int nevents;
    int close_seq; /* order among closes (see close_counter) */
    /* Actions from inside the callbacks. */
    int reset_in_data;
    int reset_rv;
    synesis_tunnel *free_in_data;
    int in_close_write_rv, in_close_finish_rv, in_close_reset_rv;
} srec;

static int close_counter;

static void log_event(srec *r, int ev) {
    if (ev == EV_DATA && r->nevents && r->events[r->nevents - 1] == EV_DATA)
        return;
    if (r->nevents < 16)
        r->events[r->nevents++] = ev;
}

static void r_data(synesis_stream *s, const uint8_t *data, size_t len, void *ud) {
    srec *r = ud;
    assert_ptr_equal(s, r->s);
    assert_int_equal(r->closes, 0);
    r->data_calls++;
    log_event(r, EV_DATA);
    if (r->len < sizeof(r->buf)) {
        size_t n = sizeof(r->buf) - r->len < len ? sizeof(r->buf) - r->len : len;
        memcpy(r->buf + r->len, data, n);
    }
    r->len += len;
    if (r->reset_in_data) {
        r->reset_in_data = 0;
        r->reset_rv = synesis_stream_reset(s, 42);
    }
    if (r->free_in_data) {
        synesis_tunnel *t = r->free_in_data;
        r->free_in_data = NULL;
        synesis_tunnel_free(t);
    }
}

static void r_end(synesis_stream *s, void *ud) {
    srec *r = ud;
    assert_ptr_equal(s, r->s);
    assert_int_equal(r->closes, 0);
    r->ends++;
    log_event(r, EV_END);
}

static void r_writable(synesis_stream *s, void *ud) {
    (void)s;
    ((srec *)ud)->writables++;
}

static void r_close(synesis_stream *s, int status, uint64_t code, const char *detail, void *ud) {
    (void)detail;
    srec *r = ud;
    assert_ptr_equal(s, r->s);
    r->closes++;
    r->status = status;
    r->code = code;
    r->close_seq = ++close_counter;
    log_event(r, EV_CLOSE);
    /* The handle is still valid during on_close, but the stream is over. */
    size_t acc = 99;
    r->in_close_write_rv = synesis_stream_write(s, "x", 1, &acc);
    assert_int_equal(acc, 0);
    r->in_close_finish_rv = synesis_stream_finish(s);
    r->in_close_reset_rv = synesis_stream_reset(s, 1);
}

static const synesis_stream_callbacks rcb = {.struct_size = sizeof(synesis_stream_callbacks),
                                             .on_data = r_data,
                                             .on_end = r_end,
                                             .on_writable = r_writable,
                                             .on_close = r_close};

static int r_closed(void *ud) { return ((srec *)ud)->closes > 0; }
static int r_has_data(void *ud) { return ((srec *)ud)->len > 0; }

static srec *open_rec(fixture *f) {
    srec *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    assert_int_equal(synesis_tunnel_open_stream(f->t, &rcb, r, &r->s), 0);
    assert_non_null(r->s);
    return r;
}

static void write_all(synesis_stream *s, const void *data, size_t len) {
    size_t acc = 0;
    assert_int_equal(synesis_stream_write(s, data, len, &acc), 0);
    assert_int_equal(acc, len);
}

/* A normally ended stream: data, end, close(0), each once, in that order. */
static void assert_clean_end(const srec *r, const void *expect, size_t len) {
    assert_int_equal(r->closes, 1);
    assert_int_equal(r->status, 0);
    assert_int_equal(r->ends, 1);
    assert_int_equal(r->len, len);
    if (len) {
        assert_memory_equal(r->buf, expect, len < sizeof(r->buf) ? len : sizeof(r->buf));
        assert_int_equal(r->nevents, 3);
        assert_int_equal(r->events[0], EV_DATA);
        assert_int_equal(r->events[1], EV_END);
        assert_int_equal(r->events[2], EV_CLOSE);
    } else {
        assert_int_equal(r->data_calls, 0);
        assert_int_equal(r->nevents, 2);
        assert_int_equal(r->events[0], EV_END);
        assert_int_equal(r->events[1], EV_CLOSE);
    }
    assert_int_equal(r->in_close_write_rv, SYNESIS_ERR_INVALID_STATE);
    assert_int_equal(r->in_close_finish_rv, SYNESIS_ERR_INVALID_STATE);
    assert_int_equal(r->in_close_reset_rv, SYNESIS_ERR_INVALID_STATE);
}

typedef struct edge_wait {
    syn_edge *e;
    uint64_t requests;
} edge_wait;

/* The edge has closed this many bidirectional streams (all our data and its answer acked). */
static int edge_requests_at_least(void *ud) {
    edge_wait *w = ud;
    syn_edge_stats st;
    syn_edge_get_stats(w->e, &st);
    return st.requests >= w->requests;
}

static uint64_t edge_requests(fixture *f) {
    syn_edge_stats st;
    syn_edge_get_stats(f->edge, &st);
    return st.requests;
}

/* ---- tests ---- */

static void test_invalid_arguments(void **state) {
    fixture *f = *state;
    synesis_stream *s = (synesis_stream *)f; /* must be reset to NULL */
    assert_int_equal(synesis_tunnel_open_stream(NULL, &rcb, NULL, &s),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    assert_null(s);
    assert_int_equal(synesis_tunnel_open_stream(f->t, &rcb, NULL, NULL),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    size_t acc = 7;
    assert_int_equal(synesis_stream_write(NULL, "x", 1, &acc), SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(acc, 0);
    assert_int_equal(synesis_stream_finish(NULL), SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(synesis_stream_reset(NULL, 0), SYNESIS_ERR_INVALID_ARGUMENT);
    synesis_stream_pause(NULL);
    synesis_stream_resume(NULL);
    assert_int_equal(synesis_stream_buffered(NULL), 0);

    srec *r = open_rec(f);
    acc = 7;
    assert_int_equal(synesis_stream_write(r->s, NULL, 5, &acc), SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(acc, 0);
    assert_int_equal(synesis_stream_write(r->s, "hello", 5, NULL), 0); /* accepted is optional */
    assert_int_equal(synesis_stream_buffered(r->s), 5);
    assert_true(syn_test_run_until(f->loop, r_has_data, r, 5));
    assert_int_equal(synesis_stream_finish(r->s), 0);
    assert_true(syn_test_run_until(f->loop, r_closed, r, 5));
    assert_clean_end(r, "hello", 5);
    free(r);
}

static void test_write_after_finish(void **state) {
    fixture *f = *state;
    srec *r = open_rec(f);
    write_all(r->s, "SLEEP 300\nabc", 13); /* the edge answers "abc" after 300 ms */
    assert_int_equal(synesis_stream_finish(r->s), 0);
    size_t acc = 7;
    assert_int_equal(synesis_stream_write(r->s, "d", 1, &acc), SYNESIS_ERR_INVALID_STATE);
    assert_int_equal(acc, 0);
    assert_int_equal(synesis_stream_write(r->s, NULL, 0, &acc), SYNESIS_ERR_INVALID_STATE);
    assert_int_equal(synesis_stream_finish(r->s), SYNESIS_ERR_INVALID_STATE);
    /* Once open (and still open: the answer is 300 ms away), the same. */
    syn_test_run_for(f->loop, 0.05);
    assert_int_equal(r->closes, 0);
    assert_int_equal(synesis_stream_write(r->s, "d", 1, &acc), SYNESIS_ERR_INVALID_STATE);
    assert_int_equal(synesis_stream_finish(r->s), SYNESIS_ERR_INVALID_STATE);
    assert_true(syn_test_run_until(f->loop, r_closed, r, 5));
    assert_clean_end(r, "abc", 3); /* the refused bytes never went out */
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(f->t, &st);
    assert_int_equal(st.bytes_sent, 13);
    assert_int_equal(st.streams_opened, 1);
    free(r);
}

static void test_zero_length_writes(void **state) {
    fixture *f = *state;
    srec *r = open_rec(f);
    size_t acc = 7;
    /* Before the stream is open (queued), and after. */
    assert_int_equal(synesis_stream_write(r->s, NULL, 0, &acc), 0);
    assert_int_equal(acc, 0);
    assert_int_equal(synesis_stream_buffered(r->s), 0);
    syn_test_run_for(f->loop, 0.02);
    assert_int_equal(synesis_stream_write(r->s, "", 0, &acc), 0);
    assert_int_equal(acc, 0);
    assert_int_equal(synesis_stream_write(r->s, NULL, 0, NULL), 0);
    write_all(r->s, "xyz", 3);
    assert_int_equal(synesis_stream_write(r->s, NULL, 0, &acc), 0);
    assert_int_equal(synesis_stream_finish(r->s), 0);
    assert_true(syn_test_run_until(f->loop, r_closed, r, 5));
    assert_clean_end(r, "xyz", 3);
    /* A stream with no data at all: just FIN both ways. */
    srec *e = open_rec(f);
    assert_int_equal(synesis_stream_finish(e->s), 0);
    assert_true(syn_test_run_until(f->loop, r_closed, e, 5));
    assert_clean_end(e, NULL, 0);
    free(r);
    free(e);
}

/* With the edge's limit of one stream, later streams wait in the queue: they take writes (up to
 * the send buffer), finish and reset there, and open in order as the edge grants credit. */
static void test_finish_and_reset_while_queued(void **state) {
    fixture *f = *state;
    close_counter = 0;
    srec *a = open_rec(f);
    write_all(a->s, "a", 1);
    assert_true(syn_test_run_until(f->loop, r_has_data, a, 5)); /* a holds the one stream */

    static uint8_t big[6000];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)('A' + i % 26);
    srec *b = open_rec(f);
    size_t acc = 0;
    assert_int_equal(synesis_stream_write(b->s, big, sizeof(big), &acc), 0);
    assert_int_equal(acc, f->cfg.stream_send_buffer); /* a short write */
    assert_int_equal(synesis_stream_buffered(b->s), f->cfg.stream_send_buffer);
    assert_int_equal(synesis_stream_write(b->s, big + acc, sizeof(big) - acc, &acc),
                     SYNESIS_ERR_WOULD_BLOCK);
    assert_int_equal(acc, 0);
    assert_int_equal(synesis_stream_finish(b->s), 0); /* FIN after what was accepted */
    assert_int_equal(synesis_stream_write(b->s, "x", 1, &acc), SYNESIS_ERR_INVALID_STATE);

    srec *c = open_rec(f); /* FIN only */
    assert_int_equal(synesis_stream_finish(c->s), 0);
    srec *d = open_rec(f); /* reset in the middle of the queue */
    write_all(d->s, "d", 1);
    srec *e = open_rec(f);
    write_all(e->s, "e", 1);
    assert_int_equal(synesis_stream_finish(e->s), 0);
    assert_int_equal(synesis_stream_reset(d->s, 5), 0);
    assert_int_equal(d->closes, 1);
    assert_int_equal(d->status, SYNESIS_ERR_CANCELLED);
    assert_int_equal(d->len, 0);

    syn_test_run_for(f->loop, 0.1);
    assert_int_equal(b->len + c->ends + e->len, 0); /* still waiting for a stream */
    assert_int_equal(b->closes + c->closes + e->closes, 0);

    assert_int_equal(synesis_stream_finish(a->s), 0);
    assert_true(syn_test_run_until(f->loop, r_closed, e, 10));
    assert_clean_end(a, "a", 1);
    assert_clean_end(b, big, f->cfg.stream_send_buffer);
    assert_clean_end(c, NULL, 0);
    assert_clean_end(e, "e", 1);
    /* FIFO: a, then b, c, e (d was closed at once, before any of them). */
    assert_int_equal(d->close_seq, 1);
    assert_true(a->close_seq < b->close_seq);
    assert_true(b->close_seq < c->close_seq);
    assert_true(c->close_seq < e->close_seq);
    assert_int_equal(d->closes, 1);
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(f->t, &st);
    assert_int_equal(st.streams_opened, 4); /* d never opened */
    free(a);
    free(b);
    free(c);
    free(d);
    free(e);
}

/* Data and FIN that arrive while paused are held; the stream does not close under a paused reader:
 * resume() delivers everything, then on_end, then on_close, in that order. */
static void test_pause_holds_data_and_fin(void **state) {
    fixture *f = *state;
    srec *r = open_rec(f);
    synesis_stream_pause(r->s); /* paused while still queued */
    synesis_stream_pause(r->s); /* twice is the same */
    write_all(r->s, "hello world", 11);
    assert_int_equal(synesis_stream_finish(r->s), 0);
    edge_wait w = {f->edge, edge_requests(f) + 1};
    assert_true(syn_test_run_until(f->loop, edge_requests_at_least, &w, 5));
    syn_test_run_for(f->loop, 0.05);
    assert_int_equal(r->data_calls + r->ends + r->closes, 0);
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(f->t, &st);
    assert_int_equal(st.bytes_received, 0); /* held bytes count once delivered */
    synesis_stream_resume(r->s);
    assert_clean_end(r, "hello world", 11);
    assert_int_equal(r->data_calls, 1); /* everything held, in one call */
    synesis_tunnel_get_stats(f->t, &st);
    assert_int_equal(st.bytes_received, 11);

    /* resume() on a stream that is not paused does nothing. */
    srec *q = open_rec(f);
    synesis_stream_resume(q->s);
    write_all(q->s, "q", 1);
    assert_true(syn_test_run_until(f->loop, r_has_data, q, 5));
    synesis_stream_resume(q->s);
    assert_int_equal(q->data_calls, 1);
    assert_int_equal(synesis_stream_finish(q->s), 0);
    assert_true(syn_test_run_until(f->loop, r_closed, q, 5));
    assert_clean_end(q, "q", 1);
    free(r);
    free(q);
}

/* Bytes held for a paused reader count against the connection's flow-control window until they
 * are consumed, so however a paused stream ends, that credit must come back or the connection
 * stalls for good. The connection window is four stream windows (16 MiB here): four paused
 * streams, each filled to its 4 MiB window, hold all of it. */
#define NHOLD 4
#define HOLD_WINDOW (4u * 1024 * 1024)
#define HOLD_CMD "SRC 4194304\n"

static int setup_big_window(void **state) {
    fixture *f = make_fixture(100);
    f->cfg.stream_recv_window = HOLD_WINDOW;
    start_tunnel(f);
    *state = f;
    return 0;
}

static void assert_still_carries_data(fixture *f) {
    srec *q = open_rec(f);
    write_all(q->s, "still alive", 11);
    assert_int_equal(synesis_stream_finish(q->s), 0);
    assert_true(syn_test_run_until(f->loop, r_closed, q, 5));
    assert_clean_end(q, "still alive", 11);
    free(q);
}

/* The streams end (both FINs) while paused; resume() delivers what each held. */
static void test_held_bytes_return_credit(void **state) {
    fixture *f = *state;
    srec *r[NHOLD];
    edge_wait w = {f->edge, edge_requests(f) + NHOLD};
    for (int i = 0; i < NHOLD; i++) {
        r[i] = open_rec(f);
        synesis_stream_pause(r[i]->s);
        write_all(r[i]->s, HOLD_CMD, strlen(HOLD_CMD));
        assert_int_equal(synesis_stream_finish(r[i]->s), 0);
    }
    assert_true(syn_test_run_until(f->loop, edge_requests_at_least, &w, 20));
    syn_test_run_for(f->loop, 0.02);
    for (int i = 0; i < NHOLD; i++) {
        assert_int_equal(r[i]->data_calls + r[i]->closes, 0);
        synesis_stream_resume(r[i]->s);
        assert_int_equal(r[i]->data_calls, 1);
        assert_int_equal(r[i]->len, HOLD_WINDOW);
        assert_int_equal(r[i]->closes, 1);
        assert_int_equal(r[i]->status, 0);
        free(r[i]);
    }
    assert_still_carries_data(f);
}

/* Paused streams holding data are reset: the held bytes are dropped and their credit returned. */
static void test_reset_paused_stream_returns_credit(void **state) {
    fixture *f = *state;
    srec *r[NHOLD];
    for (int i = 0; i < NHOLD; i++) {
        r[i] = open_rec(f);
        synesis_stream_pause(r[i]->s);
        write_all(r[i]->s, HOLD_CMD, strlen(HOLD_CMD)); /* our side stays open: no FIN */
    }
    /* Let the edge fill the windows (arriving short of that could only hide a leak, not fail). */
    syn_test_run_for(f->loop, 0.3);
    for (int i = 0; i < NHOLD; i++) {
        assert_int_equal(r[i]->data_calls + r[i]->closes, 0);
        assert_int_equal(synesis_stream_reset(r[i]->s, 9), 0);
        assert_int_equal(r[i]->closes, 1);
        assert_int_equal(r[i]->status, SYNESIS_ERR_CANCELLED);
        assert_int_equal(r[i]->len, 0); /* held bytes are dropped, never delivered */
        free(r[i]);
    }
    assert_still_carries_data(f);
}

static void test_reset_inside_on_data(void **state) {
    fixture *f = *state;
    uint64_t before = edge_requests(f);
    srec *r = open_rec(f);
    r->reset_in_data = 1;
    r->reset_rv = 99;
    write_all(r->s, "hello", 5); /* no FIN: the edge echoes and waits */
    assert_true(syn_test_run_until(f->loop, r_closed, r, 5));
    assert_int_equal(r->reset_rv, 0);
    assert_int_equal(r->closes, 1);
    assert_int_equal(r->status, SYNESIS_ERR_CANCELLED);
    assert_int_equal(r->code, 42);
    assert_int_equal(r->ends, 0);
    assert_int_equal(r->nevents, 2); /* data, close */
    assert_int_equal(r->in_close_write_rv, SYNESIS_ERR_INVALID_STATE);
    assert_int_equal(r->in_close_reset_rv, SYNESIS_ERR_INVALID_STATE);
    /* The edge sees its stream end; nothing more reaches the closed stream. */
    edge_wait w = {f->edge, before + 1};
    assert_true(syn_test_run_until(f->loop, edge_requests_at_least, &w, 5));
    syn_test_run_for(f->loop, 0.05);
    assert_int_equal(r->closes, 1);
    assert_int_equal(r->data_calls, 1);
    assert_true(synesis_tunnel_is_connected(f->t));
    srec *q = open_rec(f);
    write_all(q->s, "next", 4);
    assert_int_equal(synesis_stream_finish(q->s), 0);
    assert_true(syn_test_run_until(f->loop, r_closed, q, 5));
    assert_clean_end(q, "next", 4);
    free(r);
    free(q);
}

static void test_null_callbacks(void **state) {
    fixture *f = *state;
    uint64_t before = edge_requests(f);
    synesis_stream *s;
    assert_int_equal(synesis_tunnel_open_stream(f->t, NULL, NULL, &s), 0);
    write_all(s, "nobody listens", 14);
    assert_int_equal(synesis_stream_finish(s), 0);
    edge_wait w = {f->edge, before + 1};
    assert_true(syn_test_run_until(f->loop, edge_requests_at_least, &w, 5));
    syn_test_run_for(f->loop, 0.05);
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(f->t, &st);
    assert_int_equal(st.bytes_received, 14); /* delivered to nobody, but consumed */
}

/* Freeing the tunnel completes every stream (open, paused with held data, still queued) with
 * CANCELLED, exactly once, and nothing runs afterwards. */
static void test_free_with_open_streams(void **state) {
    fixture *f = *state;
    srec *a = open_rec(f);
    write_all(a->s, "a", 1);
    assert_true(syn_test_run_until(f->loop, r_has_data, a, 5));
    srec *b = open_rec(f);
    synesis_stream_pause(b->s);
    write_all(b->s, "held", 4);
    assert_int_equal(synesis_stream_finish(b->s), 0);
    edge_wait w = {f->edge, edge_requests(f) + 1};
    assert_true(syn_test_run_until(f->loop, edge_requests_at_least, &w, 5));
    srec *c = open_rec(f); /* queued: not opened before the free */
    write_all(c->s, "c", 1);
    synesis_tunnel_free(f->t);
    f->t = NULL;
    srec *all[] = {a, b, c};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(all[i]->closes, 1);
        assert_int_equal(all[i]->status, SYNESIS_ERR_CANCELLED);
        assert_int_equal(all[i]->ends, 0);
    }
    assert_int_equal(b->data_calls, 0);
    syn_test_run_for(f->loop, 0.1);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(all[i]->closes, 1);
        free(all[i]);
    }
}

/* synesis_tunnel_free() from inside on_data is deferred until the callback returns; every stream
 * still gets its CANCELLED close once. */
static void test_free_from_on_data(void **state) {
    fixture *f = *state;
    srec *a = open_rec(f);
    write_all(a->s, "a", 1);
    assert_true(syn_test_run_until(f->loop, r_has_data, a, 5));
    srec *b = open_rec(f);
    b->free_in_data = f->t;
    write_all(b->s, "b", 1);
    assert_true(syn_test_run_until(f->loop, r_closed, b, 5));
    f->t = NULL;
    assert_int_equal(b->data_calls, 1);
    assert_int_equal(b->closes, 1);
    assert_int_equal(b->status, SYNESIS_ERR_CANCELLED);
    assert_int_equal(a->closes, 1);
    assert_int_equal(a->status, SYNESIS_ERR_CANCELLED);
    syn_test_run_for(f->loop, 0.05);
    assert_int_equal(a->closes + b->closes, 2);
    free(a);
    free(b);
}

/* The connection drops with a stream open and paused (holding data) and another still queued at
 * the edge's limit: both end with CONNECTION_LOST, once; held data is never delivered. */
static void test_connection_lost_with_queued_and_paused(void **state) {
    fixture *f = *state;
    srec *a = open_rec(f);
    write_all(a->s, "a", 1);
    assert_true(syn_test_run_until(f->loop, r_has_data, a, 5));
    synesis_stream_pause(a->s);
    write_all(a->s, "more", 4); /* echoed while paused: held */
    syn_test_run_for(f->loop, 0.05);
    srec *b = open_rec(f); /* waits for the edge's one stream */
    write_all(b->s, "b", 1);
    syn_test_run_for(f->loop, 0.05);
    assert_int_equal(b->len + b->closes, 0);
    syn_edge_kick(f->edge, "str-1");
    assert_true(syn_test_run_until(f->loop, r_closed, b, 5));
    assert_int_equal(a->closes, 1);
    assert_int_equal(a->status, SYNESIS_ERR_CONNECTION_LOST);
    assert_int_equal(a->len, 1);
    assert_int_equal(b->closes, 1);
    assert_int_equal(b->status, SYNESIS_ERR_CONNECTION_LOST);
    syn_test_run_for(f->loop, 0.05);
    assert_int_equal(a->closes + b->closes, 2);
    free(a);
    free(b);
}

static void test_open_when_not_connected(void **state) {
    fixture *f = make_fixture(100);
    *state = f;
    f->t = syn_test_tunnel_new(f->loop, &f->cfg, NULL, f);
    synesis_stream *s = (synesis_stream *)f;
    assert_int_equal(synesis_tunnel_open_stream(f->t, &rcb, NULL, &s), SYNESIS_ERR_NOT_CONNECTED);
    assert_null(s);
    assert_int_equal(synesis_tunnel_connect(f->t), 0);
    s = (synesis_stream *)f;
    assert_int_equal(synesis_tunnel_open_stream(f->t, &rcb, NULL, &s), SYNESIS_ERR_NOT_CONNECTED);
    assert_null(s);
    assert_true(syn_test_wait_state(f->loop, f->t, SYNESIS_STATE_CONNECTED, 5));
    srec *r = open_rec(f);
    write_all(r->s, "r", 1);
    assert_true(syn_test_run_until(f->loop, r_has_data, r, 5));
    /* disconnect() ends open streams as the application's own doing. */
    assert_int_equal(synesis_tunnel_disconnect(f->t), 0);
    assert_int_equal(r->closes, 1);
    assert_int_equal(r->status, SYNESIS_ERR_CANCELLED);
    s = (synesis_stream *)f;
    assert_int_equal(synesis_tunnel_open_stream(f->t, &rcb, NULL, &s), SYNESIS_ERR_NOT_CONNECTED);
    assert_null(s);
    free(r);
    teardown(state);
}

/* A command line split over several writes reaches the edge as one command (even when the first
 * part is only the start of a command word); what follows a SRC line is read and dropped; a line
 * that never ends is refused. */
static void test_edge_command_across_writes(void **state) {
    fixture *f = *state;
    srec *r = open_rec(f);
    write_all(r->s, "SLEEP 2", 7);
    syn_test_run_for(f->loop, 0.03);
    write_all(r->s, "0\nrest", 6);
    syn_test_run_for(f->loop, 0.03);
    assert_int_equal(r->len, 0);
    assert_int_equal(synesis_stream_finish(r->s), 0);
    assert_true(syn_test_run_until(f->loop, r_closed, r, 5));
    assert_clean_end(r, "rest", 4);
    srec *p = open_rec(f);
    write_all(p->s, "SL", 2);
    syn_test_run_for(f->loop, 0.03);
    write_all(p->s, "EEP 1\nok", 8);
    assert_int_equal(synesis_stream_finish(p->s), 0);
    assert_true(syn_test_run_until(f->loop, r_closed, p, 5));
    assert_clean_end(p, "ok", 2);
    srec *g = open_rec(f);
    write_all(g->s, "SRC 3\n", 6);
    assert_true(syn_test_run_until(f->loop, r_has_data, g, 5));
    write_all(g->s, "ignored", 7);
    assert_int_equal(synesis_stream_finish(g->s), 0);
    assert_true(syn_test_run_until(f->loop, r_closed, g, 5));
    assert_clean_end(g, "\0\1\2", 3);
    /* "SLEEP " and no newline within 64 bytes. */
    srec *q = open_rec(f);
    char line[80];
    memset(line, '1', sizeof(line));
    memcpy(line, "SLEEP ", 6);
    write_all(q->s, line, sizeof(line));
    assert_true(syn_test_run_until(f->loop, r_closed, q, 5));
    assert_int_equal(q->status, SYNESIS_ERR_STREAM_RESET);
    assert_int_equal(q->code, SYN_APP_REFUSED);
    free(r);
    free(q);
    free(p);
    free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_invalid_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_after_finish, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zero_length_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_finish_and_reset_while_queued, setup_limit1, teardown),
        cmocka_unit_test_setup_teardown(test_pause_holds_data_and_fin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_held_bytes_return_credit, setup_big_window, teardown),
        cmocka_unit_test_setup_teardown(test_reset_paused_stream_returns_credit, setup_big_window,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reset_inside_on_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_null_callbacks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_with_open_streams, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_from_on_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_lost_with_queued_and_paused, setup_limit1,
                                        teardown),
        cmocka_unit_test(test_open_when_not_connected),
        cmocka_unit_test_setup_teardown(test_edge_command_across_writes, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

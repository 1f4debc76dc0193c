/* Application callbacks that call back into the library: free, disconnect, nested state changes.
 * Each case here once broke (use-after-free, lost callbacks, callbacks after free, reordered
 * notifications); ASan/UBSan runs of this file keep them fixed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "synesis/request.h"
#include "synesis/stream.h"

typedef struct fixture {
    struct ev_loop *loop;
    syn_edge *edge;
    synesis_tunnel *t;
    synesis_tunnel_config cfg;
    int freed;
} fixture;

static const char *pki;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof(*f));
    f->loop = ev_loop_new(EVFLAG_AUTO);
    pki = syn_test_pki_shared("re-1");
    f->edge = syn_test_edge(f->loop, pki, 5);
    syn_test_tunnel_config(&f->cfg, pki, syn_edge_port(f->edge));
    *state = f;
    return 0;
}

static void start(fixture *f, const synesis_tunnel_callbacks *cb) {
    f->t = syn_test_tunnel_connected(f->loop, &f->cfg, cb, f, 5);
}

static int teardown(void **state) {
    fixture *f = *state;
    syn_test_finish(f->loop, f->freed ? NULL : f->t, f->edge);
    free(f);
    return 0;
}

/* ---- free from a response callback while other requests are in flight ---- */

typedef struct slot {
    fixture *f;
    int calls;
    int status;
    int free_on_call;
    int after_free; /* calls that came after free() returned */
} slot;

static int free_returned;

static void slot_resp(synesis_tunnel *t, synesis_request *req, const synesis_response *r,
                      void *ud) {
    (void)req;
    slot *s = ud;
    s->calls++;
    s->status = r->status;
    if (free_returned)
        s->after_free++;
    if (s->free_on_call && !s->f->freed) {
        s->f->freed = 1;
        synesis_tunnel_free(t);
        free_returned = 1;
    }
}

static int first_done(void *ud) { return ((slot *)ud)->calls > 0; }
static int is_freed_flag(void *ud) { return ((fixture *)ud)->freed; }

static void test_free_from_response_with_others_in_flight(void **state) {
    fixture *f = *state;
    start(f, NULL);
    static slot s[6];
    memset(s, 0, sizeof(s));
    free_returned = 0;
    /* Three answer at once (same packet, likely), three sleep: the first to answer frees. */
    for (int i = 0; i < 6; i++) {
        s[i].f = f;
        s[i].free_on_call = 1;
        const char *body = i < 3 ? "now" : "SLEEP 2000\n";
        assert_int_equal(
            synesis_tunnel_request(f->t, body, strlen(body), NULL, slot_resp, &s[i], NULL), 0);
    }
    int any = 0;
    for (int tries = 0; tries < 200 && !any; tries++) {
        syn_test_run_for(f->loop, 0.01);
        for (int i = 0; i < 6; i++)
            any |= s[i].calls > 0;
    }
    assert_true(f->freed);
    syn_test_run_for(f->loop, 0.3);
    int ok = 0, cancelled = 0;
    for (int i = 0; i < 6; i++) {
        assert_int_equal(s[i].calls, 1);      /* exactly once each */
        assert_int_equal(s[i].after_free, 0); /* none after free() returned */
        ok += s[i].status == 0;
        cancelled += s[i].status == SYNESIS_ERR_CANCELLED;
    }
    assert_int_equal(ok + cancelled, 6);
    assert_true(ok >= 1);
    assert_true(cancelled >= 3); /* the sleeping ones */
}

/* The edge goes away; the first connection-lost callback frees the tunnel. */
static void test_free_from_connection_lost(void **state) {
    fixture *f = *state;
    start(f, NULL);
    static slot s[4];
    memset(s, 0, sizeof(s));
    free_returned = 0;
    for (int i = 0; i < 4; i++) {
        s[i].f = f;
        s[i].free_on_call = 1;
        assert_int_equal(
            synesis_tunnel_request(f->t, "SLEEP 3000\n", 11, NULL, slot_resp, &s[i], NULL), 0);
    }
    syn_test_run_for(f->loop, 0.1);
    syn_edge_stop(f->edge, 1);
    assert_true(syn_test_run_until(f->loop, is_freed_flag, f, 5));
    syn_test_run_for(f->loop, 0.2);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(s[i].calls, 1);
        assert_int_equal(s[i].after_free, 0);
    }
    /* The first to hear of the loss frees the tunnel; the others are cancelled by that free. */
    int lost = 0, cancelled = 0;
    for (int i = 0; i < 4; i++) {
        lost += s[i].status == SYNESIS_ERR_CONNECTION_LOST;
        cancelled += s[i].status == SYNESIS_ERR_CANCELLED;
    }
    assert_int_equal(lost, 1);
    assert_int_equal(cancelled, 3);
}

/* ---- free from a stream callback while a request and another stream are open ---- */

typedef struct sctx {
    fixture *f;
    int closes;
    int status;
} sctx;

static void sc_close(synesis_stream *st, int status, uint64_t code, const char *detail, void *ud) {
    (void)detail;
    (void)st;
    (void)code;
    sctx *c = ud;
    c->closes++;
    c->status = status;
}

static void sc_data_free(synesis_stream *st, const uint8_t *d, size_t len, void *ud) {
    (void)st;
    (void)d;
    (void)len;
    sctx *c = ud;
    if (!c->f->freed) {
        c->f->freed = 1;
        synesis_tunnel_free(c->f->t);
    }
}

static int sc_closed(void *ud) { return ((sctx *)ud)->closes > 0; }

static void test_free_from_stream_data(void **state) {
    fixture *f = *state;
    start(f, NULL);
    sctx a = {.f = f}, b = {.f = f};
    synesis_stream_callbacks cba = {.struct_size = sizeof(synesis_stream_callbacks),
                                    .on_data = sc_data_free,
                                    .on_close = sc_close};
    synesis_stream_callbacks cbb = {.struct_size = sizeof(synesis_stream_callbacks),
                                    .on_close = sc_close};
    synesis_stream *sa, *sb;
    assert_int_equal(synesis_tunnel_open_stream(f->t, &cbb, &b, &sb), 0);
    assert_int_equal(synesis_tunnel_open_stream(f->t, &cba, &a, &sa), 0);
    slot r = {.f = f};
    assert_int_equal(synesis_tunnel_request(f->t, "SLEEP 2000\n", 11, NULL, slot_resp, &r, NULL),
                     0);
    size_t acc;
    assert_int_equal(synesis_stream_write(sa, "echo me", 7, &acc), 0);
    assert_true(syn_test_run_until(f->loop, sc_closed, &a, 5));
    syn_test_run_for(f->loop, 0.1);
    assert_int_equal(a.closes, 1);
    assert_int_equal(a.status, SYNESIS_ERR_CANCELLED);
    assert_int_equal(b.closes, 1);
    assert_int_equal(b.status, SYNESIS_ERR_CANCELLED);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, SYNESIS_ERR_CANCELLED);
}

/* ---- disconnect and free from on_vitals ---- */

static void vitals_disconnect(synesis_tunnel *t, synesis_vitals *v, void *ud) {
    (void)v;
    (void)ud;
    synesis_tunnel_disconnect(t);
}

static int hb_calls;
static void count_hb(synesis_tunnel *t, const synesis_heartbeat_info *hb, void *ud) {
    (void)t;
    (void)ud;
    hb_calls++;
    assert_int_equal(hb->status, SYNESIS_ERR_NOT_CONNECTED);
}

static void test_disconnect_from_on_vitals(void **state) {
    fixture *f = *state;
    f->cfg.heartbeat_interval = 0.05;
    hb_calls = 0;
    synesis_tunnel_callbacks cb = {.struct_size = sizeof(synesis_tunnel_callbacks),
                                   .on_vitals = vitals_disconnect,
                                   .on_heartbeat = count_hb};
    f->t = syn_test_tunnel_new(f->loop, &f->cfg, &cb, f);
    assert_int_equal(synesis_tunnel_connect(f->t), 0);
    assert_true(syn_test_wait_state(f->loop, f->t, SYNESIS_STATE_DISCONNECTED, 5));
    syn_test_run_for(f->loop, 0.2);
    assert_int_equal(hb_calls, 1); /* the one whose vitals disconnected, reported as not sent */
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(f->t, &st);
    assert_int_equal(st.heartbeats_failed, 1);
}

static void vitals_free(synesis_tunnel *t, synesis_vitals *v, void *ud) {
    (void)v;
    fixture *f = ud;
    f->freed = 1;
    synesis_tunnel_free(t);
}

static void hb_never(synesis_tunnel *t, const synesis_heartbeat_info *hb, void *ud) {
    (void)t;
    (void)hb;
    (void)ud;
    fail_msg("on_heartbeat after free");
}

static int is_freed(void *ud) { return ((fixture *)ud)->freed; }

static void test_free_from_on_vitals(void **state) {
    fixture *f = *state;
    f->cfg.heartbeat_interval = 0.05;
    synesis_tunnel_callbacks cb = {.struct_size = sizeof(synesis_tunnel_callbacks),
                                   .on_vitals = vitals_free,
                                   .on_heartbeat = hb_never};
    assert_int_equal(synesis_tunnel_new(&f->t, f->loop, &f->cfg, &cb, f, NULL, 0), 0);
    assert_int_equal(synesis_tunnel_connect(f->t), 0);
    assert_true(syn_test_run_until(f->loop, is_freed, f, 5));
    syn_test_run_for(f->loop, 0.2);
}

/* ---- nested state changes reach every subscriber in order ---- */

typedef struct seen {
    synesis_state_kind from[8], to[8];
    int n;
} seen;

static void record(synesis_tunnel *t, const synesis_tunnel_state *o, const synesis_tunnel_state *n,
                   void *ud) {
    (void)t;
    seen *s = ud;
    if (s->n < 8) {
        s->from[s->n] = o->kind;
        s->to[s->n] = n->kind;
        s->n++;
    }
}

static void disconnect_when_connected(synesis_tunnel *t, const synesis_tunnel_state *o,
                                      const synesis_tunnel_state *n, void *ud) {
    (void)o;
    (void)ud;
    if (n->kind == SYNESIS_STATE_CONNECTED)
        synesis_tunnel_disconnect(t);
}

static void test_nested_state_change_order(void **state) {
    fixture *f = *state;
    synesis_tunnel_callbacks cb = {.struct_size = sizeof(synesis_tunnel_callbacks),
                                   .on_state = disconnect_when_connected};
    assert_int_equal(synesis_tunnel_new(&f->t, f->loop, &f->cfg, &cb, f, NULL, 0), 0);
    seen a = {0}, b = {0};
    assert_int_equal(synesis_tunnel_subscribe(f->t, record, &a, NULL), 0);
    assert_int_equal(synesis_tunnel_subscribe(f->t, record, &b, NULL), 0);
    assert_int_equal(synesis_tunnel_connect(f->t), 0);
    assert_true(syn_test_wait_state(f->loop, f->t, SYNESIS_STATE_DISCONNECTED, 5));
    seen *all[] = {&a, &b};
    for (int k = 0; k < 2; k++) {
        seen *s = all[k];
        assert_int_equal(s->n, 3);
        assert_int_equal(s->from[0], SYNESIS_STATE_DISCONNECTED);
        assert_int_equal(s->to[0], SYNESIS_STATE_CONNECTING);
        assert_int_equal(s->from[1], SYNESIS_STATE_CONNECTING);
        assert_int_equal(s->to[1], SYNESIS_STATE_CONNECTED);
        assert_int_equal(s->from[2], SYNESIS_STATE_CONNECTED);
        assert_int_equal(s->to[2], SYNESIS_STATE_DISCONNECTED);
    }
}

/* ---- a hostile request line at the edge ---- */

static void test_edge_refuses_overlong_command_line(void **state) {
    fixture *f = *state;
    start(f, NULL);
    char body[300];
    memcpy(body, "SRC ", 4);
    memset(body + 4, '9', 250);
    body[254] = '\n';
    slot s = {.f = f};
    assert_int_equal(synesis_tunnel_request(f->t, body, 255, NULL, slot_resp, &s, NULL), 0);
    assert_true(syn_test_run_until(f->loop, first_done, &s, 5));
    assert_int_equal(s.status, SYNESIS_ERR_STREAM_RESET);
    /* The connection carries on. */
    slot s2 = {.f = f};
    assert_int_equal(synesis_tunnel_request(f->t, "fine", 4, NULL, slot_resp, &s2, NULL), 0);
    assert_true(syn_test_run_until(f->loop, first_done, &s2, 5));
    assert_int_equal(s2.status, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_free_from_response_with_others_in_flight, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_free_from_connection_lost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_from_stream_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disconnect_from_on_vitals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_from_on_vitals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nested_state_change_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edge_refuses_overlong_command_line, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

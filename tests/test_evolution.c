/* The evolution rule of the public structs (docs/integration.md, "API conventions"): a caller's
 * struct smaller than the library's (an older header) gets the defaults for what it lacks; a
 * larger one (a newer header) is accepted only with zero bytes beyond what the library knows;
 * initialisers and getters never write past the caller's size. Also: the structs the library
 * hands to callbacks carry their size, getters' strings stay readable, stream on_close's detail. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

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
    int states;
    size_t state_size; /* struct_size of the states handed to on_state */
    int heartbeats;
    size_t hb_size;
    int closes;
    int close_status;
    char close_detail[128];
    int resume_calls;
} fixture;

static const char *pki;

static int setup(void **state) {
    pki = syn_test_pki_shared("abi");
    fixture *f = calloc(1, sizeof(*f));
    f->loop = ev_loop_new(EVFLAG_AUTO);
    f->edge = syn_test_edge(f->loop, pki, 5.0);
    syn_test_tunnel_config(&f->cfg, pki, syn_edge_port(f->edge));
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    syn_test_finish(f->loop, f->t, f->edge);
    free(f);
    return 0;
}

static void on_state(synesis_tunnel *t, const synesis_tunnel_state *o,
                     const synesis_tunnel_state *n, void *ud) {
    (void)t;
    fixture *f = ud;
    assert_non_null(o->error_detail);
    assert_non_null(n->error_detail);
    f->states++;
    f->state_size = n->struct_size;
}

static void on_hb(synesis_tunnel *t, const synesis_heartbeat_info *info, void *ud) {
    (void)t;
    fixture *f = ud;
    f->heartbeats++;
    f->hb_size = info->struct_size;
}

static void must_not_run_hb(synesis_tunnel *t, const synesis_heartbeat_info *info, void *ud) {
    (void)t;
    (void)info;
    (void)ud;
    fail_msg("a callback beyond the caller's struct_size ran");
}

static void must_not_run_resume(synesis_tunnel *t, const uint8_t *data, size_t len, void *ud) {
    (void)t;
    (void)data;
    (void)len;
    (void)ud;
    fail_msg("on_resume_data beyond the caller's struct_size ran");
}

static void count_resume(synesis_tunnel *t, const uint8_t *data, size_t len, void *ud) {
    (void)t;
    (void)data;
    (void)len;
    ((fixture *)ud)->resume_calls++;
}

static int resume_counted(void *ud) { return ((fixture *)ud)->resume_calls > 0; }

/* The 1.1 additions under the rule, and the version check a 1.1 program makes before using
 * them (docs/integration.md, "Newer headers, older library"): the library says which version
 * it is; its 1.1 members have their defaults for a 1.0-sized config (resumption and early_data
 * on) and are zero in a 1.0-sized callbacks struct, whose bytes beyond its size are never read. */
static void test_version_1_1_members(void **state) {
    fixture *f = *state;
    assert_int_equal(synesis_version_number(), SYNESIS_VERSION_NUMBER);
    assert_true(synesis_version_number() >= 0x010100);
    assert_string_equal(synesis_version(), SYNESIS_VERSION_STRING);
    /* What the rule makes of a config from a 1.0 program: the defaults beyond its size. */
    synesis_tunnel_config c;
    memset(&c, 0x5a, sizeof(c));
    synesis_tunnel_config_init_sized(&c, offsetof(synesis_tunnel_config, resumption));
    assert_int_equal(c.struct_size, offsetof(synesis_tunnel_config, resumption));
    assert_int_equal(c.resumption, 0x5a5a5a5a); /* not written: beyond its size */
    synesis_tunnel_config_init(&c);
    assert_int_equal(c.resumption, 1);
    assert_int_equal(c.early_data, 1);
    assert_null(c.resume_data);
    assert_int_equal(c.resume_data_len, 0);
    synesis_request_options o;
    synesis_request_options_init(&o);
    assert_int_equal(o.flags, 0);
    /* A 1.0-sized callbacks struct: on_resume_data beyond it is never called; a full-size one
     * is (the edge sends a ticket after the handshake). */
    synesis_tunnel_callbacks cb;
    synesis_tunnel_callbacks_init(&cb);
    cb.on_resume_data = must_not_run_resume;
    cb.struct_size = offsetof(synesis_tunnel_callbacks, on_resume_data);
    assert_int_equal(synesis_tunnel_new(&f->t, f->loop, &f->cfg, &cb, f, NULL, 0), 0);
    syn_test_connect(f->loop, f->t, 5);
    syn_test_run_for(f->loop, 0.2);
    assert_true(synesis_tunnel_resume_data(f->t, NULL, 0) > 0); /* a ticket came */
    synesis_tunnel_free(f->t);
    cb.struct_size = sizeof(cb);
    cb.on_resume_data = count_resume;
    assert_int_equal(synesis_tunnel_new(&f->t, f->loop, &f->cfg, &cb, f, NULL, 0), 0);
    syn_test_connect(f->loop, f->t, 5);
    assert_true(syn_test_run_until(f->loop, resume_counted, f, 5));
}

/* A config of an older, smaller layout: the members it lacks get the defaults, whatever the
 * bytes beyond its size hold. */
static void test_config_smaller(void **state) {
    fixture *f = *state;
    synesis_tunnel_config c = f->cfg;
    /* Invalid or unusual values in the members beyond the cut: never read. */
    c.healthy_latency_ms = 0;       /* would make is_healthy() always 0 (default 500) */
    c.close_linger = -1;            /* invalid */
    c.congestion_control = 99;      /* invalid */
    c.max_queued_request_bytes = 0; /* invalid */
    synesis_tunnel *t = NULL;
    char detail[512] = "";
    /* Control: at full size these values are refused. */
    assert_int_equal(synesis_tunnel_new(&t, f->loop, &c, NULL, NULL, detail, sizeof(detail)),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    assert_null(t);
    c.struct_size = offsetof(synesis_tunnel_config, healthy_latency_ms);
    assert_int_equal(synesis_tunnel_new(&f->t, f->loop, &c, NULL, NULL, detail, sizeof(detail)), 0);
    syn_test_connect(f->loop, f->t, 5);
    assert_int_equal(synesis_tunnel_is_healthy(f->t), 1); /* the default 500 ms */
    syn_test_result res = {0};
    syn_test_request(f->loop, f->t, "ping", 4, NULL, &res, 5);
    assert_int_equal(res.status, 0);
    free(res.data);
    /* Control: the same config at full size with only healthy_latency_ms = 0 is never healthy. */
    synesis_tunnel_free(f->t);
    c = f->cfg;
    c.healthy_latency_ms = 0;
    assert_int_equal(synesis_tunnel_new(&f->t, f->loop, &c, NULL, NULL, NULL, 0), 0);
    syn_test_connect(f->loop, f->t, 5);
    assert_int_equal(synesis_tunnel_is_healthy(f->t), 0);
    /* The smallest accepted: struct_size alone, every member a default (which cannot load
     * "device.pem" here: a certificate error, not an argument error). */
    c.struct_size = sizeof(size_t);
    synesis_tunnel *t2 = NULL;
    assert_int_equal(synesis_tunnel_new(&t2, f->loop, &c, NULL, NULL, detail, sizeof(detail)),
                     SYNESIS_ERR_FILE_NOT_FOUND);
    assert_non_null(strstr(detail, "device.pem"));
    c.struct_size = sizeof(size_t) - 1;
    assert_int_equal(synesis_tunnel_new(&t2, f->loop, &c, NULL, NULL, detail, sizeof(detail)),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(detail, "struct_size"));
    assert_null(t2);
}

/* A config of a newer, larger layout: accepted when every unknown byte is zero. */
static void test_config_larger(void **state) {
    fixture *f = *state;
    const size_t extra = 24;
    unsigned char *buf = calloc(1, sizeof(synesis_tunnel_config) + extra);
    synesis_tunnel_config *c = (synesis_tunnel_config *)(void *)buf;
    *c = f->cfg;
    c->struct_size = sizeof(*c) + extra;
    char detail[512] = "";
    buf[sizeof(*c) + extra - 1] = 1; /* a member this library does not know, set */
    synesis_tunnel *t = NULL;
    assert_int_equal(synesis_tunnel_new(&t, f->loop, c, NULL, NULL, detail, sizeof(detail)),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    assert_null(t);
    assert_non_null(strstr(detail, "config.struct_size"));
    assert_non_null(strstr(detail, "not zero"));
    buf[sizeof(*c) + extra - 1] = 0;
    assert_int_equal(synesis_tunnel_new(&f->t, f->loop, c, NULL, NULL, detail, sizeof(detail)), 0);
    free(buf); /* deep-copied */
    syn_test_connect(f->loop, f->t, 5);
}

/* Tunnel callbacks: an older struct's callbacks beyond its size are never called; a newer one
 * with unknown non-zero bytes is refused. */
static void test_callbacks_sizes(void **state) {
    fixture *f = *state;
    f->cfg.heartbeat_interval = 0.05;
    synesis_tunnel_callbacks cb;
    synesis_tunnel_callbacks_init(&cb);
    assert_int_equal(cb.struct_size, sizeof(cb));
    cb.on_state = on_state;
    cb.on_heartbeat = must_not_run_hb;
    cb.struct_size = offsetof(synesis_tunnel_callbacks, on_heartbeat);
    assert_int_equal(synesis_tunnel_new(&f->t, f->loop, &f->cfg, &cb, f, NULL, 0), 0);
    syn_test_connect(f->loop, f->t, 5);
    syn_test_run_for(f->loop, 0.3);
    assert_true(f->states >= 2);
    assert_int_equal(f->state_size, sizeof(synesis_tunnel_state));
    synesis_tunnel_free(f->t);
    f->t = NULL;
    /* The full struct: heartbeats reported, with their size. */
    cb.struct_size = sizeof(cb);
    cb.on_heartbeat = on_hb;
    assert_int_equal(synesis_tunnel_new(&f->t, f->loop, &f->cfg, &cb, f, NULL, 0), 0);
    syn_test_connect(f->loop, f->t, 5);
    syn_test_run_for(f->loop, 0.3);
    assert_true(f->heartbeats >= 1);
    assert_int_equal(f->hb_size, sizeof(synesis_heartbeat_info));
    /* Larger. */
    unsigned char big[sizeof(synesis_tunnel_callbacks) + 16] = {0};
    memcpy(big, &cb, sizeof(cb));
    size_t bs = sizeof(big);
    memcpy(big, &bs, sizeof(bs));
    synesis_tunnel *t = NULL;
    char detail[512];
    big[sizeof(cb) + 3] = 0x5a;
    assert_int_equal(synesis_tunnel_new(&t, f->loop, &f->cfg, (synesis_tunnel_callbacks *)big, f,
                                        detail, sizeof(detail)),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(detail, "callbacks.struct_size"));
    big[sizeof(cb) + 3] = 0;
    assert_int_equal(synesis_tunnel_new(&t, f->loop, &f->cfg, (synesis_tunnel_callbacks *)big, f,
                                        detail, sizeof(detail)),
                     0);
    synesis_tunnel_free(t);
    /* Uninitialised (struct_size 0): refused; NULL callbacks stay allowed. */
    synesis_tunnel_callbacks zero;
    memset(&zero, 0, sizeof(zero));
    assert_int_equal(synesis_tunnel_new(&t, f->loop, &f->cfg, &zero, f, NULL, 0),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(synesis_tunnel_new(&t, f->loop, &f->cfg, NULL, f, NULL, 0), 0);
    synesis_tunnel_free(t);
}

static void on_resp(synesis_tunnel *t, synesis_request *req, const synesis_response *r, void *ud) {
    (void)t;
    (void)req;
    size_t *size = ud;
    *size = r->struct_size;
    assert_non_null(r->detail);
}

static int size_set(void *ud) { return *(size_t *)ud != 0; }

/* Request options: an older struct without timeout, a newer one with unknown bytes. */
static void test_request_options_sizes(void **state) {
    fixture *f = *state;
    assert_int_equal(synesis_tunnel_new(&f->t, f->loop, &f->cfg, NULL, NULL, NULL, 0), 0);
    syn_test_connect(f->loop, f->t, 5);
    synesis_request_options o;
    synesis_request_options_init(&o);
    o.timeout = -1; /* invalid */
    size_t got = 0;
    assert_int_equal(synesis_tunnel_request(f->t, "x", 1, &o, on_resp, &got, NULL),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    o.struct_size = offsetof(synesis_request_options, timeout); /* before timeout: default */
    assert_int_equal(synesis_tunnel_request(f->t, "x", 1, &o, on_resp, &got, NULL), 0);
    assert_true(syn_test_run_until(f->loop, size_set, &got, 5));
    assert_int_equal(got, sizeof(synesis_response));
    unsigned char big[sizeof(synesis_request_options) + 8] = {0};
    synesis_request_options_init_sized((synesis_request_options *)big, sizeof(big));
    size_t bs;
    memcpy(&bs, big, sizeof(bs));
    assert_int_equal(bs, sizeof(big));
    big[sizeof(big) - 1] = 7;
    assert_int_equal(
        synesis_tunnel_request(f->t, "x", 1, (synesis_request_options *)big, on_resp, &got, NULL),
        SYNESIS_ERR_INVALID_ARGUMENT);
    big[sizeof(big) - 1] = 0;
    got = 0;
    assert_int_equal(
        synesis_tunnel_request(f->t, "x", 1, (synesis_request_options *)big, on_resp, &got, NULL),
        0);
    assert_true(syn_test_run_until(f->loop, size_set, &got, 5));
}

static void s_close(synesis_stream *s, int status, uint64_t code, const char *detail, void *ud) {
    (void)s;
    (void)code;
    fixture *f = ud;
    assert_non_null(detail);
    f->closes++;
    f->close_status = status;
    snprintf(f->close_detail, sizeof(f->close_detail), "%s", detail);
}

static void s_close_never(synesis_stream *s, int status, uint64_t code, const char *detail,
                          void *ud) {
    (void)s;
    (void)status;
    (void)code;
    (void)detail;
    (void)ud;
    fail_msg("on_close beyond the caller's struct_size ran");
}

static int closed(void *ud) { return ((fixture *)ud)->closes > 0; }

/* Stream callbacks under the rule, and on_close's detail. */
static void test_stream_callbacks_and_close_detail(void **state) {
    fixture *f = *state;
    assert_int_equal(synesis_tunnel_new(&f->t, f->loop, &f->cfg, NULL, NULL, NULL, 0), 0);
    syn_test_connect(f->loop, f->t, 5);
    synesis_stream_callbacks cb;
    synesis_stream_callbacks_init(&cb);
    cb.on_close = s_close;
    synesis_stream *s = NULL;
    assert_int_equal(synesis_tunnel_open_stream(f->t, &cb, f, &s), 0);
    assert_int_equal(synesis_stream_reset(s, 5), 0);
    assert_int_equal(f->closes, 1);
    assert_int_equal(f->close_status, SYNESIS_ERR_CANCELLED);
    assert_string_equal(f->close_detail, "reset by the application");
    /* An older struct without on_close: never called. */
    cb.on_close = s_close_never;
    cb.struct_size = offsetof(synesis_stream_callbacks, on_close);
    assert_int_equal(synesis_tunnel_open_stream(f->t, &cb, f, &s), 0);
    assert_int_equal(synesis_stream_reset(s, 5), 0);
    /* A newer one with unknown bytes set: refused. */
    unsigned char big[sizeof(synesis_stream_callbacks) + 8] = {0};
    synesis_stream_callbacks_init_sized((synesis_stream_callbacks *)big, sizeof(big));
    big[sizeof(big) - 2] = 1;
    assert_int_equal(synesis_tunnel_open_stream(f->t, (synesis_stream_callbacks *)big, f, &s),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    assert_null(s);
    /* A stream the edge echoes and ends: status 0, detail "". */
    cb.struct_size = sizeof(cb);
    cb.on_close = s_close;
    f->closes = 0;
    assert_int_equal(synesis_tunnel_open_stream(f->t, &cb, f, &s), 0);
    assert_int_equal(synesis_stream_write(s, "echo", 4, NULL), 0);
    assert_int_equal(synesis_stream_finish(s), 0);
    assert_true(syn_test_run_until(f->loop, closed, f, 5));
    assert_int_equal(f->close_status, 0);
    assert_string_equal(f->close_detail, "");
}

/* Initialisers write only the caller's size. */
static void test_init_sized_canary(void **state) {
    (void)state;
    const size_t cut = offsetof(synesis_tunnel_config, heartbeat_interval);
    unsigned char buf[sizeof(synesis_tunnel_config) + 16];
    memset(buf, 0xa5, sizeof(buf));
    synesis_tunnel_config_init_sized((synesis_tunnel_config *)buf, cut);
    for (size_t i = cut; i < sizeof(buf); i++)
        assert_int_equal(buf[i], 0xa5);
    synesis_tunnel_config c;
    memcpy(&c, buf, cut);
    assert_int_equal(c.struct_size, cut);
    assert_string_equal(c.cloud_url, "quic://superinstance.ai:443");
    assert_true(c.idle_timeout == 60.0);
    /* A larger struct: the defaults, and zero beyond what the library knows. */
    memset(buf, 0xa5, sizeof(buf));
    synesis_tunnel_config_init_sized((synesis_tunnel_config *)buf, sizeof(buf));
    for (size_t i = sizeof(synesis_tunnel_config); i < sizeof(buf); i++)
        assert_int_equal(buf[i], 0);
    memcpy(&c, buf, sizeof(c));
    assert_int_equal(c.struct_size, sizeof(buf));
    assert_true(c.close_linger == 1.0);
    /* Too small to hold struct_size, and NULL: nothing written. */
    memset(buf, 0xa5, sizeof(buf));
    synesis_tunnel_config_init_sized((synesis_tunnel_config *)buf, sizeof(size_t) - 1);
    assert_int_equal(buf[0], 0xa5);
    synesis_tunnel_config_init_sized(NULL, sizeof(synesis_tunnel_config));
    synesis_tunnel_callbacks_init_sized(NULL, 64);
    synesis_request_options_init_sized(NULL, 64);
    synesis_stream_callbacks_init_sized(NULL, 64);
    /* The other caller-filled structs. */
    memset(buf, 0xa5, sizeof(buf));
    const size_t rcut = offsetof(synesis_request_options, max_response_size);
    synesis_request_options_init_sized((synesis_request_options *)buf, rcut);
    for (size_t i = rcut; i < sizeof(buf); i++)
        assert_int_equal(buf[i], 0xa5);
    memset(buf, 0xa5, sizeof(buf));
    const size_t ccut = offsetof(synesis_tunnel_callbacks, on_vitals);
    synesis_tunnel_callbacks_init_sized((synesis_tunnel_callbacks *)buf, ccut);
    for (size_t i = ccut; i < sizeof(buf); i++)
        assert_int_equal(buf[i], 0xa5);
    for (size_t i = sizeof(size_t); i < ccut; i++)
        assert_int_equal(buf[i], 0);
}

/* Getters write at most the caller's size, and say how much. */
static void test_getters_canary(void **state) {
    fixture *f = *state;
    assert_int_equal(synesis_tunnel_new(&f->t, f->loop, &f->cfg, NULL, NULL, NULL, 0), 0);
    syn_test_connect(f->loop, f->t, 5);
    unsigned char buf[sizeof(synesis_tunnel_stats) + 16];
    const size_t scut = offsetof(synesis_tunnel_state, error);
    memset(buf, 0xa5, sizeof(buf));
    assert_int_equal(synesis_tunnel_get_state_sized(f->t, (synesis_tunnel_state *)buf, scut), 0);
    for (size_t i = scut; i < sizeof(buf); i++)
        assert_int_equal(buf[i], 0xa5);
    synesis_tunnel_state st;
    memcpy(&st, buf, scut);
    assert_int_equal(st.struct_size, scut);
    assert_int_equal(st.kind, SYNESIS_STATE_CONNECTED);
    /* A larger struct: the library's size written, the rest untouched. */
    memset(buf, 0xa5, sizeof(buf));
    assert_int_equal(synesis_tunnel_get_state_sized(f->t, (synesis_tunnel_state *)buf, sizeof(buf)),
                     0);
    memcpy(&st, buf, sizeof(st));
    assert_int_equal(st.struct_size, sizeof(synesis_tunnel_state));
    for (size_t i = sizeof(synesis_tunnel_state); i < sizeof(buf); i++)
        assert_int_equal(buf[i], 0xa5);
    const size_t tcut = offsetof(synesis_tunnel_stats, requests_sent);
    memset(buf, 0xa5, sizeof(buf));
    assert_int_equal(synesis_tunnel_get_stats_sized(f->t, (synesis_tunnel_stats *)buf, tcut), 0);
    for (size_t i = tcut; i < sizeof(buf); i++)
        assert_int_equal(buf[i], 0xa5);
    synesis_tunnel_stats s;
    memcpy(&s, buf, tcut);
    assert_int_equal(s.struct_size, tcut);
    synesis_tunnel_get_stats(f->t, &s);
    assert_int_equal(s.struct_size, sizeof(s));
    assert_non_null(strstr(s.remote_address, "127.0.0.1:"));
    assert_string_equal(s.last_error_detail, "");
    /* Too small for struct_size, NULL: refused, nothing written. */
    memset(buf, 0xa5, sizeof(buf));
    assert_int_equal(synesis_tunnel_get_state_sized(f->t, (synesis_tunnel_state *)buf, 4),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(synesis_tunnel_get_stats_sized(f->t, (synesis_tunnel_stats *)buf, 4),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(buf[0], 0xa5);
}

/* Getters' strings point into the tunnel: readable until it is freed, never NULL. */
static void test_getter_strings_lifetime(void **state) {
    fixture *f = *state;
    syn_edge_stop(f->edge, 0); /* nothing listens: the attempt fails */
    assert_int_equal(synesis_tunnel_new(&f->t, f->loop, &f->cfg, NULL, NULL, NULL, 0), 0);
    synesis_tunnel_state st;
    synesis_tunnel_stats s;
    assert_int_equal(synesis_tunnel_get_state(f->t, &st), 0);
    assert_int_equal(synesis_tunnel_get_stats(f->t, &s), 0);
    assert_string_equal(st.error_detail, "");
    assert_string_equal(s.last_error_detail, "");
    assert_string_equal(s.remote_address, "");
    assert_int_equal(synesis_tunnel_connect(f->t), 0);
    assert_true(syn_test_wait_state(f->loop, f->t, SYNESIS_STATE_FAILED, 5));
    assert_int_equal(synesis_tunnel_get_state(f->t, &st), 0);
    assert_int_equal(synesis_tunnel_get_stats(f->t, &s), 0);
    char copy[256];
    snprintf(copy, sizeof(copy), "%s", st.error_detail);
    assert_true(strlen(copy) > 0);
    assert_non_null(strstr(s.last_error_detail, "refused"));
    /* The loop runs on, the state changes: the pointers stay readable strings. */
    assert_int_equal(synesis_tunnel_connect(f->t), 0);
    syn_test_run_for(f->loop, 0.05);
    assert_true(strlen(st.error_detail) < 256);
    assert_true(strlen(s.last_error_detail) < 256);
    assert_true(strlen(s.remote_address) < 64);
    assert_true(syn_test_wait_state(f->loop, f->t, SYNESIS_STATE_FAILED, 5));
    assert_int_equal(synesis_tunnel_get_state(f->t, &st), 0);
    assert_string_equal(st.error_detail, copy); /* the same failure again */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_config_smaller, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_larger, setup, teardown),
        cmocka_unit_test_setup_teardown(test_version_1_1_members, setup, teardown),
        cmocka_unit_test_setup_teardown(test_callbacks_sizes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_options_sizes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_callbacks_and_close_detail, setup, teardown),
        cmocka_unit_test(test_init_sized_canary),
        cmocka_unit_test_setup_teardown(test_getters_canary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_getter_strings_lifetime, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Error paths and edge cases of the tunnel core against the reference edge over real UDP on
 * loopback: configuration checks, invalid request arguments, a full request queue, per-request
 * timeouts, NULL-safe functions, statistics JSON into a short buffer, late responses, an
 * oversized heartbeat, name resolution and address fallback, the edge's version negotiation, and
 * garbage datagrams to both ends. Waits are for conditions with generous deadlines; nothing
 * asserts speed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fault_proxy.h"
#include "harness.h"
#include "synesis/check.h"
#include "synesis/stream.h"
#include "protocol.h"
#include "synesis/request.h"

#define MAX_LOGS 64

typedef struct fixture {
    struct ev_loop *loop;
    syn_edge *edge;
    syn_fault_proxy *proxy;
    synesis_tunnel *t;
    synesis_tunnel_config cfg;
    char edge_remote[64]; /* "remote" of the edge's last "connection" event */
    syn_test_states states;
    char logs[MAX_LOGS][256];
    int nlogs;
    /* heartbeats */
    int hb_ok, hb_failed, hb_last_status;
    int huge;
    int vitals_checked;
} fixture;

static const char *pki;

static void edge_log(void *ud, const char *line) {
    fixture *f = ud;
    cJSON *o = cJSON_Parse(line);
    const cJSON *ev = cJSON_GetObjectItem(o, "event");
    const cJSON *remote = cJSON_GetObjectItem(o, "remote");
    if (cJSON_IsString(ev) && strcmp(ev->valuestring, "connection") == 0 && cJSON_IsString(remote))
        snprintf(f->edge_remote, sizeof(f->edge_remote), "%s", remote->valuestring);
    cJSON_Delete(o);
}

static void tunnel_log(synesis_log_level level, const char *msg, void *ud) {
    (void)level;
    fixture *f = ud;
    if (f->nlogs < MAX_LOGS)
        snprintf(f->logs[f->nlogs++], sizeof(f->logs[0]), "%s", msg);
}

static int logged(const fixture *f, const char *needle) {
    for (int i = 0; i < f->nlogs; i++)
        if (strstr(f->logs[i], needle))
            return 1;
    return 0;
}

static fixture *make_fixture(uint64_t max_streams_bidi, int with_proxy, size_t max_request) {
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->loop = ev_loop_new(EVFLAG_AUTO);
    pki = syn_test_pki_shared("err-1");
    syn_edge_config ec;
    syn_test_edge_config(&ec, pki);
    ec.max_streams_bidi = max_streams_bidi;
    if (max_request)
        ec.max_request_size = max_request;
    ec.handshake_timeout = 1;
    ec.log = edge_log;
    ec.log_user_data = f;
    f->edge = syn_test_edge_start(f->loop, &ec);
    uint16_t port = syn_edge_port(f->edge);
    if (with_proxy) {
        struct sockaddr_in l = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        struct sockaddr_in u = l;
        u.sin_port = htons(port);
        f->proxy = syn_fault_proxy_new(f->loop, (struct sockaddr *)&l, sizeof(l),
                                       (struct sockaddr *)&u, sizeof(u), 7);
        assert_non_null(f->proxy);
        port = syn_fault_proxy_port(f->proxy);
    }
    syn_test_tunnel_config(&f->cfg, pki, port);
    f->cfg.idle_timeout = 10;
    return f;
}

static int failed_state(void *ud) {
    fixture *f = ud;
    return syn_test_find_state(&f->states, SYNESIS_STATE_FAILED, 0) >= 0;
}

static void start_tunnel(fixture *f, const synesis_tunnel_callbacks *cb) {
    f->t = syn_test_tunnel_new(f->loop, &f->cfg, cb, f);
    assert_int_equal(synesis_tunnel_subscribe(f->t, syn_test_record_state, &f->states, NULL), 0);
    syn_test_connect(f->loop, f->t, 5);
}

static int setup(void **state) {
    fixture *f = make_fixture(100, 0, 0);
    start_tunnel(f, NULL);
    *state = f;
    return 0;
}

static int setup_proxy(void **state) {
    fixture *f = make_fixture(100, 1, 0);
    start_tunnel(f, NULL);
    *state = f;
    return 0;
}

/* Only an edge; the test makes its tunnel. */
static int setup_edge_only(void **state) {
    *state = make_fixture(100, 0, 0);
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

/* ---- requests ---- */

typedef struct result {
    int calls;
    int status;
    uint64_t app_code;
    size_t len;
    char data[64];
} result;

static void on_resp(synesis_tunnel *t, synesis_request *req, const synesis_response *r, void *ud) {
    (void)t;
    (void)req;
    result *res = ud;
    res->calls++;
    res->status = r->status;
    res->app_code = r->app_error_code;
    res->len = r->len;
    if (r->len)
        memcpy(res->data, r->data, r->len < sizeof(res->data) ? r->len : sizeof(res->data));
}

static int res_done(void *ud) { return ((result *)ud)->calls > 0; }

static void request_and_wait(fixture *f, const char *data, size_t len,
                             const synesis_request_options *o, result *res) {
    memset(res, 0, sizeof(*res));
    assert_int_equal(synesis_tunnel_request(f->t, data, len, o, on_resp, res, NULL), 0);
    assert_true(syn_test_run_until(f->loop, res_done, res, 5));
    assert_int_equal(res->calls, 1);
}

static void assert_echo_works(fixture *f) {
    result res;
    request_and_wait(f, "ping", 4, NULL, &res);
    assert_int_equal(res.status, 0);
    assert_int_equal(res.len, 4);
    assert_memory_equal(res.data, "ping", 4);
}

/* ---- configuration ---- */

typedef void (*cfg_mut)(synesis_tunnel_config *c);
#define MUT(name, body)                                                                            \
    static void name(synesis_tunnel_config *c) { body; }
MUT(m_struct_size, c->struct_size = sizeof(size_t) - 1)
MUT(m_url_null, c->cloud_url = NULL)
MUT(m_alpn_null, c->alpn = NULL)
MUT(m_alpn_empty, c->alpn = "")
MUT(m_alpn_long, {
    static char a[257];
    memset(a, 'a', 256);
    c->alpn = a;
})
MUT(m_idle_zero, c->idle_timeout = 0)
MUT(m_idle_nan, c->idle_timeout = NAN)
MUT(m_handshake_neg, c->handshake_timeout = -1)
MUT(m_keepalive_neg, c->keep_alive_interval = -0.5)
MUT(m_keepalive_nan, c->keep_alive_interval = NAN)
MUT(m_heartbeat_neg, c->heartbeat_interval = -1)
MUT(m_heartbeat_nan, c->heartbeat_interval = NAN)
MUT(m_request_timeout_zero, c->request_timeout = 0)
MUT(m_request_timeout_nan, c->request_timeout = NAN)
MUT(m_initial_nan, c->reconnect_initial_delay = NAN)
MUT(m_max_nan, c->reconnect_max_delay = NAN)
MUT(m_multiplier_nan, c->reconnect_multiplier = NAN)
MUT(m_jitter_nan, c->reconnect_jitter = NAN)
MUT(m_linger_neg, c->close_linger = -1)
MUT(m_linger_nan, c->close_linger = NAN)
MUT(m_linger_long, c->close_linger = 61)
MUT(m_groups_bad, c->tls_groups = "X25519:no-such-group")
MUT(m_cc_bad, c->congestion_control = (synesis_congestion_control)7)
MUT(m_payload_small, c->max_udp_payload = 1199)
MUT(m_payload_big, c->max_udp_payload = SYN_UDP_MAX_PAYLOAD + 1)
MUT(m_response_zero, c->max_response_size = 0)
MUT(m_send_buffer_zero, c->stream_send_buffer = 0)
MUT(m_recv_window_small, c->stream_recv_window = 1023)
/* As "unlimited": ngtcp2 would abort the process at connect (transport parameters are varints). */
MUT(m_recv_window_huge, c->stream_recv_window = SIZE_MAX)
#if SIZE_MAX > 0xffffffffu
MUT(m_recv_window_2_60, c->stream_recv_window = (size_t)1 << 60)
#endif
MUT(m_stable_neg, c->reconnect_stable_period = -1)
MUT(m_stable_nan, c->reconnect_stable_period = NAN)
MUT(m_heartbeat_size_zero, c->max_heartbeat_size = 0)
MUT(m_pins_null, {
    c->n_spki_pins = 1;
    c->spki_pins = NULL;
})

static void test_config_validation(void **state) {
    fixture *f = *state;
    struct {
        cfg_mut mut;
        const char *hint;
    } bad[] = {
        {m_struct_size,          "struct_size"    },
        {m_url_null,             "cloud_url"      },
        {m_alpn_null,            "alpn"           },
        {m_alpn_empty,           "alpn"           },
        {m_alpn_long,            "alpn"           },
        {m_idle_zero,            "timeouts"       },
        {m_idle_nan,             "timeouts"       },
        {m_handshake_neg,        "timeouts"       },
        {m_keepalive_neg,        "timeouts"       },
        {m_keepalive_nan,        "timeouts"       },
        {m_heartbeat_neg,        "timeouts"       },
        {m_heartbeat_nan,        "timeouts"       },
        {m_request_timeout_zero, "timeouts"       },
        {m_request_timeout_nan,  "timeouts"       },
        {m_initial_nan,          "reconnect"      },
        {m_max_nan,              "reconnect"      },
        {m_multiplier_nan,       "reconnect"      },
        {m_jitter_nan,           "reconnect"      },
        {m_linger_neg,           "close_linger"   },
        {m_linger_nan,           "close_linger"   },
        {m_linger_long,          "close_linger"   },
        {m_groups_bad,           "tls_groups"     },
        {m_cc_bad,               "congestion"     },
        {m_payload_small,        "max_udp_payload"},
        {m_payload_big,          "max_udp_payload"},
        {m_response_zero,        "sizes"          },
        {m_send_buffer_zero,     "sizes"          },
        {m_recv_window_small,    "sizes"          },
        {m_recv_window_huge,     "sizes"          },
#if SIZE_MAX > 0xffffffffu
        {m_recv_window_2_60,     "sizes"          },
#endif
        {m_stable_neg,           "timeouts"       },
        {m_stable_nan,           "timeouts"       },
        {m_heartbeat_size_zero,  "sizes"          },
        {m_pins_null,            "spki_pins"      },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        synesis_tunnel_config cfg = f->cfg;
        bad[i].mut(&cfg);
        synesis_tunnel *t = (synesis_tunnel *)f; /* must come back NULL */
        char detail[512] = "";
        int rv = synesis_tunnel_new(&t, f->loop, &cfg, NULL, NULL, detail, sizeof(detail));
        if (rv != SYNESIS_ERR_INVALID_ARGUMENT || !strstr(detail, bad[i].hint))
            fail_msg("case %zu: %s: %s", i, synesis_error_name(rv), detail);
        assert_null(t);
    }
    /* The limits themselves are accepted. */
    synesis_tunnel_config ok = f->cfg;
    ok.max_udp_payload = 1200;
    ok.keep_alive_interval = 0;
    ok.heartbeat_interval = 0;
    ok.stream_recv_window = 1024;
    ok.reconnect_initial_delay = ok.reconnect_max_delay = 0;
    ok.reconnect_multiplier = 1;
    ok.reconnect_jitter = 1;
    synesis_tunnel *t = NULL;
    assert_int_equal(synesis_tunnel_new(&t, f->loop, &ok, NULL, NULL, NULL, 0), 0);
    synesis_tunnel_free(t);
    ok.max_udp_payload = SYN_UDP_MAX_PAYLOAD;
    ok.reconnect_jitter = 0;
    assert_int_equal(synesis_tunnel_new(&t, f->loop, &ok, NULL, NULL, NULL, 0), 0);
    synesis_tunnel_free(t);
}

/* The largest accepted windows and durations make a working connection. */
static void test_largest_values_connect(void **state) {
    fixture *f = *state;
#if SIZE_MAX > 0xffffffffu
    f->cfg.stream_recv_window = ((size_t)1 << 60) - 1;
#else
    f->cfg.stream_recv_window = SIZE_MAX;
#endif
    f->cfg.max_response_size = SIZE_MAX;
    f->cfg.stream_send_buffer = SIZE_MAX;
    f->cfg.max_queued_requests = SIZE_MAX;
    f->cfg.max_heartbeat_size = SIZE_MAX;
    start_tunnel(f, NULL);
    assert_echo_works(f);
}

static void test_new_arguments_and_detail(void **state) {
    fixture *f = *state;
    synesis_tunnel *t = (synesis_tunnel *)f;
    char detail[512];
    assert_int_equal(synesis_tunnel_new(&t, NULL, &f->cfg, NULL, NULL, detail, sizeof(detail)),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(detail, "required"));
    assert_int_equal(synesis_tunnel_new(&t, f->loop, NULL, NULL, NULL, detail, sizeof(detail)),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(synesis_tunnel_new(NULL, f->loop, &f->cfg, NULL, NULL, NULL, 0),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    /* The detail is truncated to the buffer, always terminated; a zero length writes nothing. */
    synesis_tunnel_config cfg = f->cfg;
    cfg.cloud_url = NULL;
    char small[8];
    memset(small, 'x', sizeof(small));
    assert_int_equal(synesis_tunnel_new(&t, f->loop, &cfg, NULL, NULL, small, sizeof(small)),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    assert_null(t);
    assert_int_equal(strlen(small), sizeof(small) - 1);
    memset(small, 'x', sizeof(small));
    assert_int_equal(synesis_tunnel_new(&t, f->loop, &cfg, NULL, NULL, small, 0),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(small[0], 'x');
}

/* In-memory PEM (with a passphrase that an unencrypted key ignores) and SPKI pins, all deep-copied:
 * the caller's buffers are wiped before connect(). */
static char *read_file(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    char *buf = calloc(1, 65536);
    assert_non_null(buf);
    *len = fread(buf, 1, 65535, fp);
    fclose(fp);
    return buf;
}

static void test_in_memory_pem_and_pins(void **state) {
    fixture *f = *state;
    synesis_identity_info *info = NULL;
    char detail[512];
    assert_int_equal(
        synesis_identity_inspect(syn_test_path(pki, "edge.pem"), &info, detail, sizeof(detail)), 0);
    size_t cert_len, key_len;
    char *cert = read_file(syn_test_path(pki, "device.pem"), &cert_len);
    char *key = read_file(syn_test_path(pki, "device.key"), &key_len);
    char *pass = strdup("unused");
    uint8_t(*pins)[32] = calloc(2, 32);
    memset(pins[0], 0xab, 32); /* a pin that matches nothing, then the edge's */
    memcpy(pins[1], info->spki_sha256, 32);
    synesis_identity_info_free(info);
    synesis_tunnel_config cfg = f->cfg;
    cfg.cert_path = cfg.key_path = "/nonexistent"; /* the PEM takes precedence */
    cfg.cert_pem = cert;
    cfg.cert_pem_len = 0; /* NUL-terminated */
    cfg.key_pem = key;
    cfg.key_pem_len = key_len;
    cfg.key_passphrase = pass;
    cfg.spki_pins = (const uint8_t(*)[32])pins;
    cfg.n_spki_pins = 2;
    int rv = synesis_tunnel_new(&f->t, f->loop, &cfg, NULL, f, detail, sizeof(detail));
    if (rv)
        fail_msg("%s: %s", synesis_error_name(rv), detail);
    memset(cert, 0, cert_len);
    memset(key, 0, key_len);
    memset(pins, 0, 64);
    free(cert);
    free(key);
    free(pass);
    free(pins);
    assert_int_equal(synesis_tunnel_connect(f->t), 0);
    assert_true(syn_test_run_until(f->loop, syn_test_connected, f->t, 5));
    assert_echo_works(f);
    synesis_tunnel_free(f->t);
    f->t = NULL;

    /* Only a wrong pin: refused. */
    uint8_t wrong[1][32];
    memset(wrong, 0xcd, sizeof(wrong));
    cfg = f->cfg;
    cfg.spki_pins = (const uint8_t(*)[32])wrong;
    cfg.n_spki_pins = 1;
    assert_int_equal(synesis_tunnel_new(&f->t, f->loop, &cfg, NULL, f, detail, sizeof(detail)), 0);
    assert_int_equal(synesis_tunnel_subscribe(f->t, syn_test_record_state, &f->states, NULL), 0);
    assert_int_equal(synesis_tunnel_connect(f->t), 0);
    assert_true(syn_test_run_until(f->loop, failed_state, f, 5));
    int k = syn_test_find_state(&f->states, SYNESIS_STATE_FAILED, 0);
    assert_int_equal(f->states.errors[k], SYNESIS_ERR_PEER_PIN_MISMATCH);
    assert_int_equal(syn_test_find_state(&f->states, SYNESIS_STATE_CONNECTED, 0), -1);
}

/* ---- request API ---- */

typedef struct rel {
    int calls;
    size_t len;
} rel;

static void on_release(const void *data, size_t len, void *ud) {
    (void)data;
    rel *r = ud;
    r->calls++;
    r->len = len;
}

static void test_request_invalid_arguments(void **state) {
    fixture *f = *state;
    result res = {0};
    synesis_request *req = (synesis_request *)f;
    assert_int_equal(synesis_tunnel_request(NULL, "x", 1, NULL, on_resp, &res, &req),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    assert_null(req);
    assert_int_equal(synesis_tunnel_request(f->t, "x", 1, NULL, NULL, &res, NULL),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(synesis_tunnel_request(f->t, NULL, 3, NULL, on_resp, &res, NULL),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    synesis_request_options o;
    synesis_request_options_init(&o);
    o.struct_size = 0;
    assert_int_equal(synesis_tunnel_request(f->t, "x", 1, &o, on_resp, &res, NULL),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    synesis_request_options_init(&o);
    o.timeout = -1;
    assert_int_equal(synesis_tunnel_request(f->t, "x", 1, &o, on_resp, &res, NULL),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    req = (synesis_request *)f;
    assert_int_equal(
        synesis_tunnel_request_nocopy(f->t, "x", 1, NULL, NULL, NULL, on_resp, &res, &req),
        SYNESIS_ERR_INVALID_ARGUMENT);
    assert_null(req);
    rel r = {0};
    assert_int_equal(
        synesis_tunnel_request_nocopy(f->t, "x", 1, on_release, &r, &o, on_resp, &res, NULL),
        SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(r.calls, 1); /* released even though refused */
    assert_int_equal(synesis_request_cancel(NULL), SYNESIS_ERR_INVALID_ARGUMENT);
    syn_test_run_for(f->loop, 0.02);
    assert_int_equal(res.calls, 0); /* no callback for a refused request */

    /* Empty requests are fine: no data pointer needed, an empty response. */
    request_and_wait(f, NULL, 0, NULL, &res);
    assert_int_equal(res.status, 0);
    assert_int_equal(res.len, 0);
    rel r0 = {0};
    memset(&res, 0, sizeof(res));
    assert_int_equal(
        synesis_tunnel_request_nocopy(f->t, "", 0, on_release, &r0, NULL, on_resp, &res, NULL), 0);
    assert_int_equal(r0.calls, 1); /* nothing to hold on to */
    assert_true(syn_test_run_until(f->loop, res_done, &res, 5));
    assert_int_equal(res.status, 0);
    assert_int_equal(r0.calls, 1);
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(f->t, &st);
    assert_int_equal(st.requests_sent, 2);
    assert_int_equal(st.requests_failed, 0);
}

typedef struct sent_wait {
    synesis_tunnel *t;
    uint64_t n;
} sent_wait;

static int sent_at_least(void *ud) {
    sent_wait *w = ud;
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(w->t, &st);
    return st.requests_sent >= w->n;
}

static int setup_queue(void **state) {
    fixture *f = make_fixture(1, 0, 0);
    f->cfg.max_queued_requests = 2;
    start_tunnel(f, NULL);
    *state = f;
    return 0;
}

/* The edge allows one stream: one request in flight, two wait, the next is refused. */
static void test_queue_full(void **state) {
    fixture *f = *state;
    result a = {0}, b = {0}, c = {0}, d = {0};
    assert_int_equal(synesis_tunnel_request(f->t, "SLEEP 100\nA", 11, NULL, on_resp, &a, NULL), 0);
    sent_wait w = {f->t, 1};
    assert_true(syn_test_run_until(f->loop, sent_at_least, &w, 5)); /* a has the stream */
    assert_int_equal(synesis_tunnel_request(f->t, "b", 1, NULL, on_resp, &b, NULL), 0);
    /* A queued request cancelled from the queue's tail makes room. */
    result x = {0};
    synesis_request *xr;
    assert_int_equal(synesis_tunnel_request(f->t, "x", 1, NULL, on_resp, &x, &xr), 0);
    assert_int_equal(synesis_request_cancel(xr), 0);
    assert_int_equal(x.calls, 1);
    assert_int_equal(x.status, SYNESIS_ERR_CANCELLED);
    assert_int_equal(synesis_tunnel_request(f->t, "c", 1, NULL, on_resp, &c, NULL), 0);
    synesis_request *req = (synesis_request *)f;
    assert_int_equal(synesis_tunnel_request(f->t, "d", 1, NULL, on_resp, &d, &req),
                     SYNESIS_ERR_QUEUE_FULL);
    assert_null(req);
    rel r = {0};
    assert_int_equal(
        synesis_tunnel_request_nocopy(f->t, "e", 1, on_release, &r, NULL, on_resp, &d, NULL),
        SYNESIS_ERR_QUEUE_FULL);
    assert_int_equal(r.calls, 1);
    assert_true(syn_test_run_until(f->loop, res_done, &c, 5));
    assert_int_equal(d.calls, 0);
    assert_int_equal(a.status, 0);
    assert_memory_equal(a.data, "A", 1);
    assert_int_equal(b.status, 0);
    assert_int_equal(c.status, 0);
    assert_memory_equal(c.data, "c", 1);
    /* Room again. */
    assert_echo_works(f);
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(f->t, &st);
    assert_int_equal(st.requests_sent, 4);
    assert_int_equal(st.requests_failed, 0);
}

static int setup_short_default_timeout(void **state) {
    fixture *f = make_fixture(100, 0, 0);
    f->cfg.request_timeout = 0.3;
    start_tunnel(f, NULL);
    *state = f;
    return 0;
}

/* options.timeout 0 (and NULL options) mean the configuration's request_timeout; a positive one
 * overrides it either way. */
static void test_zero_timeout_means_config_default(void **state) {
    fixture *f = *state;
    synesis_request_options o;
    synesis_request_options_init(&o);
    assert_true(o.timeout == 0);
    result res;
    request_and_wait(f, "SLEEP 20\nok", 11, &o, &res); /* 0 is not "at once" */
    assert_int_equal(res.status, 0);
    request_and_wait(f, "SLEEP 3000\n", 11, &o, &res); /* nor "never", nor 30 s */
    assert_int_equal(res.status, SYNESIS_ERR_TIMEOUT);
    request_and_wait(f, "SLEEP 3000\n", 11, NULL, &res);
    assert_int_equal(res.status, SYNESIS_ERR_TIMEOUT);
    o.timeout = 5;
    request_and_wait(f, "SLEEP 400\nok", 12, &o, &res); /* longer than the default */
    assert_int_equal(res.status, 0);
    o.timeout = 0.05;
    request_and_wait(f, "SLEEP 3000\n", 11, &o, &res);
    assert_int_equal(res.status, SYNESIS_ERR_TIMEOUT);
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(f->t, &st);
    assert_int_equal(st.requests_timed_out, 3);
    assert_int_equal(st.requests_succeeded, 2);
}

/* Upstream datagrams are delayed 300 ms: the edge answers after our request timed out (or was
 * cancelled) but before it learns so. The answers reach a stream nobody owns any more. */
static void cancel_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    assert_int_equal(synesis_request_cancel(w->data), 0);
}

typedef struct edge_bytes {
    syn_edge *e;
    uint64_t n;
} edge_bytes;

static int edge_got(void *ud) {
    edge_bytes *w = ud;
    syn_edge_stats st;
    syn_edge_get_stats(w->e, &st);
    return st.bytes_received >= w->n;
}

static void test_late_response_goes_nowhere(void **state) {
    fixture *f = *state;
    syn_fault_dir up = {.delay_ms = 300};
    syn_fault_proxy_set(f->proxy, &up, NULL);
    synesis_request_options o;
    synesis_request_options_init(&o);
    o.timeout = 0.15;
    result timed = {0}, cancelled = {0};
    assert_int_equal(synesis_tunnel_request(f->t, "late-1", 6, &o, on_resp, &timed, NULL), 0);
    synesis_request *req;
    assert_int_equal(synesis_tunnel_request(f->t, "late-2", 6, NULL, on_resp, &cancelled, &req), 0);
    ev_timer cancel;
    ev_timer_init(&cancel, cancel_cb, 0.1, 0.);
    cancel.data = req;
    ev_timer_start(f->loop, &cancel);
    assert_true(syn_test_run_until(f->loop, res_done, &timed, 5));
    assert_int_equal(cancelled.calls, 1);
    assert_int_equal(cancelled.status, SYNESIS_ERR_CANCELLED);
    assert_int_equal(timed.status, SYNESIS_ERR_TIMEOUT);
    edge_bytes w = {f->edge, 12};
    assert_true(syn_test_run_until(f->loop, edge_got, &w, 5)); /* the edge answered both */
    syn_test_run_for(f->loop, 0.3);                            /* the answers come back */
    assert_int_equal(timed.calls, 1);
    assert_int_equal(cancelled.calls, 1);
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(f->t, &st);
    assert_int_equal(st.bytes_received, 0);
    assert_int_equal(st.requests_timed_out, 1);
    assert_int_equal(st.requests_cancelled, 1);
    syn_fault_proxy_set(f->proxy, NULL, NULL);
    assert_echo_works(f);
}

/* ---- NULL safety, statistics, accessors ---- */

static void noop_state(synesis_tunnel *t, const synesis_tunnel_state *o,
                       const synesis_tunnel_state *n, void *ud) {
    (void)t;
    (void)o;
    (void)n;
    (void)ud;
}

static void test_null_safety(void **state) {
    fixture *f = *state;
    synesis_tunnel_free(NULL);
    assert_int_equal(synesis_tunnel_is_connected(NULL), 0);
    assert_int_equal(synesis_tunnel_is_healthy(NULL), 0);
    assert_string_equal(synesis_tunnel_last_error(NULL), "");
    assert_null(synesis_tunnel_user_data(NULL));
    assert_int_equal(synesis_tunnel_connect(NULL), SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(synesis_tunnel_disconnect(NULL), SYNESIS_ERR_INVALID_ARGUMENT);
    uint32_t id = 0;
    assert_int_equal(synesis_tunnel_subscribe(NULL, noop_state, NULL, &id),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(synesis_tunnel_subscribe(f->t, NULL, NULL, &id), SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(synesis_tunnel_unsubscribe(NULL, 1), SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(synesis_request_cancel(NULL), SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(synesis_vitals_add_number(NULL, "k", 1), SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(synesis_vitals_add_string(NULL, "k", "v"), SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(synesis_vitals_add_bool(NULL, "k", 1), SYNESIS_ERR_INVALID_ARGUMENT);
    assert_string_equal(synesis_state_name((synesis_state_kind)99), "Unknown");
    /* Many subscribers (the list grows), one removed while others stay. */
    uint32_t ids[9];
    for (int i = 0; i < 9; i++)
        assert_int_equal(synesis_tunnel_subscribe(f->t, noop_state, NULL, &ids[i]), 0);
    assert_int_equal(synesis_tunnel_unsubscribe(f->t, ids[4]), 0);
    assert_int_equal(synesis_tunnel_unsubscribe(f->t, ids[4]), SYNESIS_ERR_INVALID_ARGUMENT);
    assert_true(synesis_tunnel_is_connected(f->t));
}

static void noop_check(const synesis_check_result *r, void *ud) {
    (void)r;
    (void)ud;
}

static void noop_response(synesis_tunnel *t, synesis_request *req, const synesis_response *r,
                          void *ud) {
    (void)t;
    (void)req;
    (void)r;
    (void)ud;
}

static void noop_release(const void *data, size_t len, void *ud) {
    (void)data;
    (void)len;
    (void)ud;
}

/* Every public function given NULL for each pointer it takes: int-returning ones say
 * SYNESIS_ERR_INVALID_ARGUMENT, void ones do nothing, string ones return "" (or NULL where
 * documented). None crashes. */
static void test_null_every_function(void **state) {
    fixture *f = *state;
    const int EINVAL_ = SYNESIS_ERR_INVALID_ARGUMENT;
    char buf[64];
    uint8_t pin[32];
    size_t acc;
    /* common.h */
    assert_non_null(synesis_strerror(0));
    assert_non_null(synesis_error_name(0));
    assert_non_null(synesis_version());
    assert_true(synesis_version_number() > 0);
    assert_int_equal(synesis_dependency_versions(NULL, 8), EINVAL_);
    assert_true(synesis_dependency_versions(NULL, 0) > 0);
    /* tunnel.h */
    assert_string_equal(synesis_state_name(SYNESIS_STATE_FAILED), "Failed");
    /* The _init() macros take the struct's size from the pointer's type: a typed NULL. */
    synesis_tunnel_config_init((synesis_tunnel_config *)NULL);
    synesis_tunnel_callbacks_init((synesis_tunnel_callbacks *)NULL);
    synesis_tunnel_config_init_sized(NULL, sizeof(synesis_tunnel_config));
    synesis_tunnel_callbacks_init_sized(NULL, sizeof(synesis_tunnel_callbacks));
    assert_int_equal(synesis_vitals_add_number(NULL, "k", 1), EINVAL_);
    assert_int_equal(synesis_vitals_add_string(NULL, "k", "v"), EINVAL_);
    assert_int_equal(synesis_vitals_add_bool(NULL, "k", 1), EINVAL_);
    synesis_tunnel *t = (synesis_tunnel *)&t;
    assert_int_equal(synesis_tunnel_new(NULL, f->loop, &f->cfg, NULL, NULL, NULL, 0), EINVAL_);
    assert_int_equal(synesis_tunnel_new(&t, NULL, &f->cfg, NULL, NULL, NULL, 0), EINVAL_);
    assert_null(t);
    assert_int_equal(synesis_tunnel_new(&t, f->loop, NULL, NULL, NULL, NULL, 0), EINVAL_);
    assert_int_equal(synesis_tunnel_connect(NULL), EINVAL_);
    assert_int_equal(synesis_tunnel_disconnect(NULL), EINVAL_);
    assert_int_equal(synesis_tunnel_network_changed(NULL), EINVAL_);
    assert_int_equal(synesis_tunnel_network_changed(f->t), 0); /* not connected: nothing */
    synesis_tunnel_free(NULL);
    synesis_tunnel_state st;
    synesis_tunnel_stats sts;
    assert_int_equal(synesis_tunnel_get_state(NULL, &st), EINVAL_);
    assert_int_equal(synesis_tunnel_get_state_sized(f->t, NULL, sizeof(st)), EINVAL_);
    assert_int_equal(synesis_tunnel_is_connected(NULL), 0);
    assert_int_equal(synesis_tunnel_is_healthy(NULL), 0);
    assert_int_equal(synesis_tunnel_subscribe(NULL, noop_state, NULL, NULL), EINVAL_);
    assert_int_equal(synesis_tunnel_subscribe(f->t, NULL, NULL, NULL), EINVAL_);
    assert_int_equal(synesis_tunnel_unsubscribe(NULL, 1), EINVAL_);
    assert_int_equal(synesis_tunnel_get_stats(NULL, &sts), EINVAL_);
    assert_int_equal(synesis_tunnel_get_stats_sized(f->t, NULL, sizeof(sts)), EINVAL_);
    assert_int_equal(synesis_tunnel_stats_json(NULL, buf, sizeof(buf)), EINVAL_);
    assert_int_equal(synesis_tunnel_stats_json(f->t, NULL, 8), EINVAL_);
    assert_int_equal(synesis_tunnel_resume_data(NULL, (uint8_t *)buf, sizeof(buf)), EINVAL_);
    assert_int_equal(synesis_tunnel_resume_data(f->t, NULL, 8), EINVAL_);
    assert_true(synesis_tunnel_resume_data(f->t, NULL, 0) >= 0); /* the length, 0 if none */
    assert_string_equal(synesis_tunnel_last_error(NULL), "");
    assert_null(synesis_tunnel_user_data(NULL));
    /* check.h */
    synesis_check_options_init((synesis_check_options *)NULL);
    synesis_check_options_init_sized(NULL, sizeof(synesis_check_options));
    synesis_check *chk = (synesis_check *)&chk;
    assert_int_equal(synesis_check_run(NULL, &f->cfg, NULL, noop_check, NULL, &chk), EINVAL_);
    assert_null(chk);
    assert_int_equal(synesis_check_run(f->loop, NULL, NULL, noop_check, NULL, NULL), EINVAL_);
    assert_int_equal(synesis_check_run(f->loop, &f->cfg, NULL, NULL, NULL, NULL), EINVAL_);
    synesis_check_cancel(NULL);
    assert_string_equal(synesis_check_status_name(SYNESIS_CHECK_OK), "ok");
    /* request.h */
    synesis_request_options_init((synesis_request_options *)NULL);
    synesis_request_options_init_sized(NULL, sizeof(synesis_request_options));
    synesis_request *req = (synesis_request *)&req;
    assert_int_equal(synesis_tunnel_request(NULL, "x", 1, NULL, noop_response, NULL, &req),
                     EINVAL_);
    assert_null(req);
    assert_int_equal(synesis_tunnel_request(f->t, NULL, 1, NULL, noop_response, NULL, NULL),
                     EINVAL_);
    assert_int_equal(synesis_tunnel_request(f->t, "x", 1, NULL, NULL, NULL, NULL), EINVAL_);
    assert_int_equal(synesis_tunnel_request_nocopy(NULL, "x", 1, noop_release, NULL, NULL,
                                                   noop_response, NULL, NULL),
                     EINVAL_);
    assert_int_equal(
        synesis_tunnel_request_nocopy(f->t, "x", 1, NULL, NULL, NULL, noop_response, NULL, NULL),
        EINVAL_);
    assert_int_equal(synesis_request_cancel(NULL), EINVAL_);
    /* stream.h */
    synesis_stream_callbacks_init((synesis_stream_callbacks *)NULL);
    synesis_stream_callbacks_init_sized(NULL, sizeof(synesis_stream_callbacks));
    synesis_stream *s = (synesis_stream *)&s;
    assert_int_equal(synesis_tunnel_open_stream(NULL, NULL, NULL, &s), EINVAL_);
    assert_null(s);
    assert_int_equal(synesis_tunnel_open_stream(f->t, NULL, NULL, NULL), EINVAL_);
    assert_int_equal(synesis_stream_write(NULL, "x", 1, &acc), EINVAL_);
    assert_int_equal(synesis_stream_finish(NULL), EINVAL_);
    assert_int_equal(synesis_stream_reset(NULL, 0), EINVAL_);
    synesis_stream_pause(NULL);
    synesis_stream_resume(NULL);
    assert_int_equal(synesis_stream_buffered(NULL), 0);
    /* identity.h */
    assert_int_equal(synesis_identity_validate_device_id(NULL, buf, sizeof(buf)), EINVAL_);
    synesis_identity_options_init((synesis_identity_options *)NULL);
    assert_int_equal(synesis_identity_generate(NULL, "/tmp", buf, sizeof(buf)), EINVAL_);
    synesis_identity_options io;
    synesis_identity_options_init(&io);
    io.device_id = "x";
    assert_int_equal(synesis_identity_generate(&io, NULL, buf, sizeof(buf)), EINVAL_);
    synesis_pki_cert_options_init((synesis_pki_cert_options *)NULL, SYNESIS_CERT_PROFILE_CA);
    synesis_pki_cert_options po;
    synesis_pki_cert_options_init(&po, SYNESIS_CERT_PROFILE_CA);
    po.common_name = "x";
    assert_int_equal(synesis_pki_create_cert(NULL, "/tmp/c", "/tmp/k", buf, sizeof(buf)), EINVAL_);
    assert_int_equal(synesis_pki_create_cert(&po, NULL, "/tmp/k", buf, sizeof(buf)), EINVAL_);
    assert_int_equal(synesis_pki_create_cert(&po, "/tmp/c", NULL, buf, sizeof(buf)), EINVAL_);
    assert_int_equal(synesis_identity_create_test_pki(NULL, "x", buf, sizeof(buf)), EINVAL_);
    assert_int_equal(synesis_identity_create_test_pki("/tmp/x", NULL, buf, sizeof(buf)), EINVAL_);
    assert_int_equal(synesis_identity_check(NULL, NULL, NULL, buf, sizeof(buf)), EINVAL_);
    synesis_identity_info *info = (synesis_identity_info *)&info;
    assert_int_equal(synesis_identity_inspect(NULL, &info, buf, sizeof(buf)), EINVAL_);
    assert_null(info);
    assert_int_equal(synesis_identity_inspect("/tmp/x.pem", NULL, buf, sizeof(buf)), EINVAL_);
    synesis_identity_info_free(NULL);
    assert_int_equal(synesis_spki_pin_parse(NULL, pin), EINVAL_);
    assert_int_equal(synesis_spki_pin_parse("sha256//x", NULL), EINVAL_);
    /* detail NULL is allowed everywhere. */
    assert_int_equal(synesis_identity_validate_device_id(NULL, NULL, 0), EINVAL_);
    assert_int_equal(synesis_identity_check(NULL, NULL, NULL, NULL, 0), EINVAL_);
}

static void test_stats_json_short_buffer(void **state) {
    fixture *f = *state;
    assert_echo_works(f);
    int n = synesis_tunnel_stats_json(f->t, NULL, 0);
    assert_true(n > 100);
    char *full = malloc((size_t)n + 1);
    assert_int_equal(synesis_tunnel_stats_json(f->t, full, (size_t)n + 1), n);
    assert_int_equal(strlen(full), (size_t)n);
    cJSON *o = cJSON_Parse(full);
    assert_non_null(o);
    assert_string_equal(cJSON_GetObjectItem(o, "state")->valuestring, "Connected");
    assert_int_equal((int)cJSON_GetObjectItem(o, "requests_succeeded")->valuedouble, 1);
    assert_string_equal(cJSON_GetObjectItem(o, "last_error")->valuestring, "");
    cJSON_Delete(o);
    char small[16];
    memset(small, 'x', sizeof(small));
    assert_int_equal(synesis_tunnel_stats_json(f->t, small, sizeof(small)), n);
    assert_int_equal(strlen(small), sizeof(small) - 1);
    assert_memory_equal(small, full, sizeof(small) - 1);
    char one[1] = {'x'};
    assert_int_equal(synesis_tunnel_stats_json(f->t, one, 1), n);
    assert_int_equal(one[0], 0);
    /* Exactly one byte short: truncated by one. */
    assert_int_equal(synesis_tunnel_stats_json(f->t, full, (size_t)n), n);
    assert_int_equal(strlen(full), (size_t)n - 1);
    free(full);
}

static void test_last_error_and_user_data(void **state) {
    fixture *f = *state;
    syn_edge_stop(f->edge, 0); /* nothing listens */
    char detail[256];
    int marker;
    assert_int_equal(
        synesis_tunnel_new(&f->t, f->loop, &f->cfg, NULL, &marker, detail, sizeof(detail)), 0);
    assert_ptr_equal(synesis_tunnel_user_data(f->t), &marker);
    assert_string_equal(synesis_tunnel_last_error(f->t), "");
    assert_int_equal(synesis_tunnel_subscribe(f->t, syn_test_record_state, &f->states, NULL), 0);
    assert_int_equal(synesis_tunnel_connect(f->t), 0);
    assert_true(syn_test_run_until(f->loop, failed_state, f, 5));
    assert_non_null(strstr(synesis_tunnel_last_error(f->t), "refused"));
    synesis_tunnel_state st;
    synesis_tunnel_get_state(f->t, &st);
    assert_int_equal(st.kind, SYNESIS_STATE_FAILED);
    assert_string_equal(st.error_detail, synesis_tunnel_last_error(f->t));
    synesis_tunnel_stats s;
    synesis_tunnel_get_stats(f->t, &s);
    assert_int_equal(s.last_error, st.error);
    char json[2048];
    assert_true(synesis_tunnel_stats_json(f->t, json, sizeof(json)) > 0);
    assert_non_null(strstr(json, synesis_error_name(st.error)));
    assert_non_null(strstr(json, "\"state\":\"Failed\""));
    assert_ptr_equal(synesis_tunnel_user_data(f->t), &marker);
}

/* ---- heartbeats ---- */

static void on_hb(synesis_tunnel *t, const synesis_heartbeat_info *info, void *ud) {
    (void)t;
    fixture *f = ud;
    f->hb_last_status = info->status;
    if (info->status == 0)
        f->hb_ok++;
    else
        f->hb_failed++;
}

static void on_vitals(synesis_tunnel *t, synesis_vitals *v, void *ud) {
    (void)t;
    fixture *f = ud;
    if (!f->vitals_checked) {
        f->vitals_checked = 1;
        assert_int_equal(synesis_vitals_add_string(v, "k", NULL), SYNESIS_ERR_INVALID_ARGUMENT);
        assert_int_equal(synesis_vitals_add_number(v, NULL, 1), SYNESIS_ERR_INVALID_ARGUMENT);
        assert_int_equal(synesis_vitals_add_bool(v, NULL, 1), SYNESIS_ERR_INVALID_ARGUMENT);
    }
    /* Over the maximum (8 KiB), or several packets' worth under it. */
    static char big[10001];
    size_t n = f->huge ? 10000 : 3000;
    memset(big, 'v', n);
    big[n] = 0;
    assert_int_equal(synesis_vitals_add_string(v, "blob", big), 0);
}

static int hb_failed_twice(void *ud) { return ((fixture *)ud)->hb_failed >= 2; }
static int hb_sent(void *ud) { return ((fixture *)ud)->hb_ok >= 1; }

typedef struct edge_hb {
    syn_edge *e;
} edge_hb;

static int edge_has_heartbeat(void *ud) {
    syn_edge_stats st;
    syn_edge_get_stats(((edge_hb *)ud)->e, &st);
    return st.heartbeats >= 1;
}

static void test_heartbeat_over_max_size(void **state) {
    fixture *f = *state;
    f->cfg.heartbeat_interval = 0.03;
    f->cfg.max_heartbeat_size = 8192;
    f->cfg.device_id = "custom-id";
    f->cfg.vitals_disk_path = NULL;
    f->cfg.log = tunnel_log;
    f->cfg.log_user_data = f;
    f->cfg.log_level = SYNESIS_LOG_WARN;
    f->huge = 1;
    synesis_tunnel_callbacks cb = {.struct_size = sizeof(synesis_tunnel_callbacks),
                                   .on_heartbeat = on_hb,
                                   .on_vitals = on_vitals};
    start_tunnel(f, &cb);
    assert_true(syn_test_run_until(f->loop, hb_failed_twice, f, 5));
    assert_int_equal(f->hb_last_status, SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(f->hb_ok, 0);
    assert_true(logged(f, "exceed the maximum"));
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(f->t, &st);
    assert_true(st.heartbeats_failed >= 2);
    assert_int_equal(st.heartbeats_sent, 0);
    assert_true(synesis_tunnel_is_connected(f->t)); /* not a connection problem */
    /* Under the maximum again: it goes out, over several packets. */
    f->huge = 0;
    assert_true(syn_test_run_until(f->loop, hb_sent, f, 5));
    edge_hb w = {f->edge};
    assert_true(syn_test_run_until(f->loop, edge_has_heartbeat, &w, 5));
    syn_edge_device dev;
    assert_int_equal(syn_edge_device_info(f->edge, "err-1", &dev), 0);
    assert_non_null(strstr(dev.last_json, "\"device_id\":\"custom-id\""));
    assert_null(strstr(dev.last_json, "disk_free_kb"));
    assert_non_null(strstr(dev.last_json, "vvvvvvvvvv"));
    assert_int_equal(syn_edge_device_info(f->edge, "nobody", &dev), -1);
    syn_edge_stats es;
    syn_edge_get_stats(f->edge, &es);
    assert_int_equal(es.bad_frames, 0);
}

/* ---- name resolution and addresses ---- */

typedef struct hook_cfg {
    int fail;
    int n;
    const char *addrs[4];
} hook_cfg;

static int resolve_hook(const char *host, uint16_t port, struct sockaddr_storage *addrs,
                        unsigned int *lens, size_t max, void *ud) {
    (void)host;
    hook_cfg *h = ud;
    if (h->fail)
        return -1;
    int n = 0;
    for (int i = 0; i < h->n && (size_t)n < max; i++) {
        struct sockaddr_in *in = (struct sockaddr_in *)&addrs[n];
        memset(in, 0, sizeof(*in));
        in->sin_family = AF_INET;
        in->sin_port = htons(port);
        inet_pton(AF_INET, h->addrs[i], &in->sin_addr);
        lens[n++] = sizeof(*in);
    }
    return n;
}

static int finished_attempt(void *ud) {
    fixture *f = ud;
    return syn_test_find_state(&f->states, SYNESIS_STATE_FAILED, 0) >= 0 ||
           syn_test_find_state(&f->states, SYNESIS_STATE_CONNECTED, 0) >= 0;
}

static void connect_with_hook(fixture *f, hook_cfg *h) {
    synesis_tunnel_free(f->t);
    f->t = NULL;
    memset(&f->states, 0, sizeof(f->states));
    static char url[64];
    snprintf(url, sizeof(url), "quic://edge.test:%u", (unsigned)syn_edge_port(f->edge));
    synesis_tunnel_config cfg = f->cfg;
    cfg.cloud_url = url;
    cfg.resolve = resolve_hook;
    cfg.resolve_user_data = h;
    char detail[256];
    assert_int_equal(synesis_tunnel_new(&f->t, f->loop, &cfg, NULL, f, detail, sizeof(detail)), 0);
    assert_int_equal(synesis_tunnel_subscribe(f->t, syn_test_record_state, &f->states, NULL), 0);
    assert_int_equal(synesis_tunnel_connect(f->t), 0);
    assert_true(syn_test_run_until(f->loop, finished_attempt, f, 5));
}

static void test_resolution_and_address_fallback(void **state) {
    fixture *f = *state;
    hook_cfg h = {.fail = 1};
    connect_with_hook(f, &h);
    assert_int_equal(f->states.kinds[f->states.n - 1], SYNESIS_STATE_FAILED);
    assert_int_equal(f->states.errors[f->states.n - 1], SYNESIS_ERR_DNS);
    hook_cfg none = {.n = 0};
    connect_with_hook(f, &none);
    assert_int_equal(f->states.errors[f->states.n - 1], SYNESIS_ERR_DNS);
    assert_non_null(strstr(synesis_tunnel_last_error(f->t), "edge.test"));
    /* The only address cannot even be connected to (broadcast without SO_BROADCAST). */
    hook_cfg bcast = {.n = 1, .addrs = {"255.255.255.255"}};
    connect_with_hook(f, &bcast);
    assert_int_equal(f->states.errors[f->states.n - 1], SYNESIS_ERR_SOCKET);
    assert_non_null(strstr(synesis_tunnel_last_error(f->t), "connect("));
    /* Broadcast, then an address where nothing listens (ICMP port unreachable), then the edge. */
    hook_cfg chain = {
        .n = 3, .addrs = {"255.255.255.255", "127.0.0.2", "127.0.0.1"}
    };
    connect_with_hook(f, &chain);
    assert_int_equal(f->states.kinds[f->states.n - 1], SYNESIS_STATE_CONNECTED);
    assert_int_equal(syn_test_find_state(&f->states, SYNESIS_STATE_FAILED, 0), -1);
    assert_non_null(strstr(synesis_tunnel_last_error(f->t), "127.0.0.2"));
    assert_echo_works(f);
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(f->t, &st);
    assert_int_equal(st.connections, 1);
}

/* The server name is used when the attempt's TLS session is made: one that cannot be a host name
 * fails the attempt (not synesis_tunnel_new()), with the reason. */
static void test_unusable_server_name(void **state) {
    fixture *f = *state;
    static char longname[300];
    memset(longname, 'a', sizeof(longname) - 1);
    const char *bad[] = {"bad name", longname};
    for (size_t i = 0; i < 2; i++) {
        synesis_tunnel_free(f->t);
        memset(&f->states, 0, sizeof(f->states));
        synesis_tunnel_config cfg = f->cfg;
        cfg.server_name = bad[i];
        char detail[256];
        assert_int_equal(synesis_tunnel_new(&f->t, f->loop, &cfg, NULL, f, detail, sizeof(detail)),
                         0);
        assert_int_equal(synesis_tunnel_subscribe(f->t, syn_test_record_state, &f->states, NULL),
                         0);
        assert_int_equal(synesis_tunnel_connect(f->t), 0);
        assert_true(syn_test_run_until(f->loop, failed_state, f, 5));
        assert_int_equal(f->states.errors[f->states.n - 1], SYNESIS_ERR_INVALID_ARGUMENT);
        assert_non_null(strstr(synesis_tunnel_last_error(f->t), "server name"));
    }
}

/* The ngtcp2 trace reaches the application's log at TRACE level. */
static void test_trace_log(void **state) {
    fixture *f = *state;
    f->cfg.log = tunnel_log;
    f->cfg.log_user_data = f;
    f->cfg.log_level = SYNESIS_LOG_TRACE;
    start_tunnel(f, NULL);
    assert_true(logged(f, "quic: "));
    assert_true(f->nlogs > 5);
}

/* A megabyte echoed grows the congestion window well past one sendmmsg batch (16 datagrams). */
static void warm_up(fixture *f) {
    size_t n = 1u << 20;
    char *big = malloc(n);
    memset(big, 'w', n);
    result res;
    request_and_wait(f, big, n, NULL, &res);
    assert_int_equal(res.status, 0);
    assert_int_equal(res.len, n);
    free(big);
}

/* The edge vanishes without a word; the next burst of datagrams meets ICMP port unreachable on
 * the send path (the connected socket reports it to sendmmsg: the first datagram of a batch
 * draws the ICMP error, a later batch of the same write pass gets it): the connection is lost
 * at once. */
static void test_send_error_ends_connection(void **state) {
    fixture *f = *state;
    warm_up(f);
    static char body[200000];
    memset(body, 'z', sizeof(body));
    syn_edge_stop(f->edge, 0);
    result res = {0};
    assert_int_equal(synesis_tunnel_request(f->t, body, sizeof(body), NULL, on_resp, &res, NULL),
                     0);
    assert_true(syn_test_run_until(f->loop, res_done, &res, 5));
    assert_int_equal(res.status, SYNESIS_ERR_CONNECTION_LOST);
    int k = syn_test_find_state(&f->states, SYNESIS_STATE_RECONNECTING, 0);
    assert_true(k >= 0);
    assert_int_equal(f->states.errors[k], SYNESIS_ERR_CONNECTION_LOST);
    assert_non_null(strstr(synesis_tunnel_last_error(f->t), "refused"));
}

/* ---- the edge's commands, version negotiation, garbage ---- */

static void test_edge_refuses_bad_commands(void **state) {
    fixture *f = *state;
    const char *refused[] = {"SRC abc\n", "SRC \n",    "SLEEP 700000\n",
                             "SLEEP x\n", "RESET x\n", "SLEEP 5"};
    result res;
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        request_and_wait(f, refused[i], strlen(refused[i]), NULL, &res);
        if (res.status != SYNESIS_ERR_STREAM_RESET || res.app_code != SYN_APP_REFUSED)
            fail_msg("'%s': %s 0x%llx", refused[i], synesis_error_name(res.status),
                     (unsigned long long)res.app_code);
    }
    request_and_wait(f, "SRC 0\n", 6, NULL, &res);
    assert_int_equal(res.status, 0);
    assert_int_equal(res.len, 0);
    request_and_wait(f, "SR", 2, NULL, &res); /* could have become a command: echoed */
    assert_int_equal(res.status, 0);
    assert_int_equal(res.len, 2);
    assert_memory_equal(res.data, "SR", 2);
    assert_true(synesis_tunnel_is_connected(f->t));
}

typedef struct udp_peer {
    int fd;
    ev_io io;
    uint8_t buf[2048];
    ssize_t len;
} udp_peer;

static void peer_cb(struct ev_loop *loop, ev_io *w, int revents) {
    (void)loop;
    (void)revents;
    udp_peer *p = w->data;
    ssize_t n = recv(p->fd, p->buf, sizeof(p->buf), 0);
    if (n > 0)
        p->len = n;
}

static void peer_open(fixture *f, udp_peer *p) {
    memset(p, 0, sizeof(*p));
    p->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(p->fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(p->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    ev_io_init(&p->io, peer_cb, p->fd, EV_READ);
    p->io.data = p;
    ev_io_start(f->loop, &p->io);
}

static void peer_close(fixture *f, udp_peer *p) {
    ev_io_stop(f->loop, &p->io);
    close(p->fd);
}

static void peer_send(udp_peer *p, uint16_t port, const void *buf, size_t len) {
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = htons(port)};
    assert_int_equal(sendto(p->fd, buf, len, 0, (struct sockaddr *)&a, sizeof(a)), (ssize_t)len);
}

static int peer_got(void *ud) { return ((udp_peer *)ud)->len > 0; }

/* A long-header packet: first byte, version, DCID, SCID, then filler up to len. */
static size_t long_header(uint8_t *out, size_t len, uint8_t first, uint32_t version,
                          const uint8_t *dcid, uint8_t dcidlen, const uint8_t *scid,
                          uint8_t scidlen) {
    size_t i = 0;
    out[i++] = first;
    out[i++] = (uint8_t)(version >> 24);
    out[i++] = (uint8_t)(version >> 16);
    out[i++] = (uint8_t)(version >> 8);
    out[i++] = (uint8_t)version;
    out[i++] = dcidlen;
    memcpy(out + i, dcid, dcidlen);
    i += dcidlen;
    out[i++] = scidlen;
    memcpy(out + i, scid, scidlen);
    i += scidlen;
    for (; i < len; i++)
        out[i] = (uint8_t)(i * 7);
    return len;
}

static void test_edge_version_negotiation(void **state) {
    fixture *f = *state;
    udp_peer p;
    peer_open(f, &p);
    const uint8_t dcid[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    const uint8_t scid[5] = {9, 10, 11, 12, 13};
    uint8_t pkt[1200];
    /* Too short to be answered (no amplification): nothing comes back. */
    peer_send(&p, syn_edge_port(f->edge), pkt,
              long_header(pkt, 200, 0xc0, 0x1a2a3a4a, dcid, 8, scid, 5));
    syn_test_run_for(f->loop, 0.05);
    assert_int_equal(p.len, 0);
    /* A full-size Initial-sized datagram of an unknown version gets Version Negotiation. */
    peer_send(&p, syn_edge_port(f->edge), pkt,
              long_header(pkt, sizeof(pkt), 0xc0, 0x1a2a3a4a, dcid, 8, scid, 5));
    assert_true(syn_test_run_until(f->loop, peer_got, &p, 5));
    const uint8_t *v = p.buf;
    assert_true(p.len >= 7 + 8 + 5 + 4);
    assert_true(v[0] & 0x80);                       /* long header */
    assert_int_equal(v[1] | v[2] | v[3] | v[4], 0); /* version 0: negotiation */
    assert_int_equal(v[5], 5);                      /* DCID = our SCID */
    assert_memory_equal(v + 6, scid, 5);
    assert_int_equal(v[11], 8); /* SCID = our DCID */
    assert_memory_equal(v + 12, dcid, 8);
    int has_v1 = 0;
    for (ssize_t i = 20; i + 4 <= p.len; i += 4)
        has_v1 |= v[i] == 0 && v[i + 1] == 0 && v[i + 2] == 0 && v[i + 3] == 1;
    assert_true(has_v1);
    peer_close(f, &p);
    assert_echo_works(f);
    syn_edge_stats es;
    syn_edge_get_stats(f->edge, &es);
    assert_int_equal(es.accepted, 1);
}

static void fill(uint8_t *p, size_t n, uint32_t seed) {
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (uint8_t)x;
    }
}

/* Sends an assortment of datagrams that are not QUIC the receiver can use. */
static void send_garbage(udp_peer *p, uint16_t port) {
    static uint8_t buf[3000];
    const uint8_t dcid[18] = {0xde, 0xad};
    const uint8_t scid[8] = {0xbe, 0xef};
    fill(buf, sizeof(buf), 1);
    peer_send(p, port, buf, 1); /* one byte */
    peer_send(p, port, buf, 5); /* a fragment */
    buf[0] = 0x40;              /* short header, unknown connection ID */
    peer_send(p, port, buf, 40);
    peer_send(p, port, buf, 1600); /* larger than any QUIC datagram we take */
    peer_send(p, port, buf, 30);   /* right behind it, in the same batch */
    /* A version 1 Initial of noise, full size: first a malformed one, then one that parses
     * (empty token, a length covering the rest) but does not decrypt. */
    peer_send(p, port, buf, long_header(buf, 1200, 0xc0, 1, dcid, 18, scid, 8));
    size_t h = long_header(buf, 1200, 0xc0, 1, dcid, 18, scid, 8);
    size_t at = 1 + 4 + 1 + 18 + 1 + 8;
    buf[at] = 0;                                         /* token length */
    buf[at + 1] = (uint8_t)(0x40 | ((h - at - 3) >> 8)); /* length (2-byte varint) */
    buf[at + 2] = (uint8_t)(h - at - 3);
    peer_send(p, port, buf, h);
    /* A Version Negotiation packet and a Retry, both of noise. */
    peer_send(p, port, buf, long_header(buf, 60, 0x80, 0, dcid, 8, scid, 8));
    peer_send(p, port, buf, long_header(buf, 60, 0xf0, 1, dcid, 8, scid, 8));
    /* Unknown version, short. */
    peer_send(p, port, buf, long_header(buf, 100, 0xc0, 0x0a0a0a0a, dcid, 8, scid, 8));
}

static void test_garbage_to_edge(void **state) {
    fixture *f = *state;
    udp_peer p;
    peer_open(f, &p);
    for (int round = 0; round < 3; round++) {
        send_garbage(&p, syn_edge_port(f->edge));
        syn_test_run_for(f->loop, 0.02);
        assert_echo_works(f);
    }
    peer_close(f, &p);
    assert_true(synesis_tunnel_is_connected(f->t));
    syn_edge_stats es;
    syn_edge_get_stats(f->edge, &es);
    assert_int_equal(es.handshakes, 1);
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(f->t, &st);
    assert_int_equal(st.connections, 1);
    assert_int_equal(f->states.n, 2); /* Connecting, Connected: nothing since */
}

/* Garbage reaching the tunnel's own socket, through the fault proxy: datagrams that arrive on the
 * proxy's upstream socket for our tunnel are forwarded to it whatever their source. */
static void test_garbage_to_tunnel(void **state) {
    fixture *f = *state;
    const char *colon = strrchr(f->edge_remote, ':');
    assert_non_null(colon);
    uint16_t upstream_port = (uint16_t)atoi(colon + 1);
    assert_true(upstream_port > 0);
    syn_fault_stats before, after;
    syn_fault_proxy_stats(f->proxy, &before);
    udp_peer p;
    peer_open(f, &p);
    for (int round = 0; round < 3; round++) {
        send_garbage(&p, upstream_port);
        syn_test_run_for(f->loop, 0.02);
        assert_echo_works(f);
    }
    peer_close(f, &p);
    syn_fault_proxy_stats(f->proxy, &after);
    assert_true(after.fwd_down - before.fwd_down >= 3 * 9); /* the garbage reached the tunnel */
    assert_true(synesis_tunnel_is_connected(f->t));
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(f->t, &st);
    assert_int_equal(st.connections, 1);
    assert_int_equal(f->states.n, 2);
}

/* ---- more failures on the way in ---- */

/* PEM of a fresh P-256 key and a self-signed certificate with no CN (O only). */
static char *bio_string(BIO *b) {
    char *p;
    long n = BIO_get_mem_data(b, &p);
    char *s = calloc(1, (size_t)n + 1);
    assert_non_null(s);
    memcpy(s, p, (size_t)n);
    return s;
}

static void cert_without_cn(char **cert_pem, char **key_pem) {
    EVP_PKEY *key = EVP_EC_gen("P-256");
    assert_non_null(key);
    X509 *x = X509_new();
    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC, (const unsigned char *)"SuperInstance", -1, -1,
                               0);
    X509_set_issuer_name(x, n);
    X509_set_pubkey(x, key);
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(b, x);
    *cert_pem = bio_string(b);
    BIO_free(b);
    b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL);
    *key_pem = bio_string(b);
    BIO_free(b);
    X509_free(x);
    EVP_PKEY_free(key);
}

/* Without config.device_id the device id comes from the certificate's CN: none, no tunnel. */
static void test_device_id_needs_cn(void **state) {
    fixture *f = *state;
    char *cert, *key;
    cert_without_cn(&cert, &key);
    synesis_tunnel_config cfg = f->cfg;
    cfg.cert_pem = cert;
    cfg.key_pem = key;
    synesis_tunnel *t = (synesis_tunnel *)f;
    char detail[512] = "";
    int rv = synesis_tunnel_new(&t, f->loop, &cfg, NULL, NULL, detail, sizeof(detail));
    assert_true(rv < 0);
    assert_null(t);
    if (!strstr(detail, "device_id"))
        fail_msg("%s: %s", synesis_error_name(rv), detail);
    cfg.device_id = "given";
    assert_int_equal(synesis_tunnel_new(&t, f->loop, &cfg, NULL, NULL, detail, sizeof(detail)), 0);
    synesis_tunnel_free(t);
    free(cert);
    free(key);
}

/* The process is out of file descriptors when the attempt opens its socket. */
static void test_socket_failure(void **state) {
    fixture *f = *state;
    char detail[256];
    assert_int_equal(synesis_tunnel_new(&f->t, f->loop, &f->cfg, NULL, f, detail, sizeof(detail)),
                     0);
    assert_int_equal(synesis_tunnel_subscribe(f->t, syn_test_record_state, &f->states, NULL), 0);
    struct rlimit old, low;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    int probe = dup(0);
    assert_true(probe >= 0);
    close(probe);
    low = old;
    low.rlim_cur = (rlim_t)probe; /* the next descriptor is one too many */
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    int rv = synesis_tunnel_connect(f->t);
    int failed = rv == 0 && syn_test_run_until(f->loop, failed_state, f, 5);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    assert_int_equal(rv, 0);
    assert_true(failed);
    int k = syn_test_find_state(&f->states, SYNESIS_STATE_FAILED, 0);
    assert_int_equal(f->states.errors[k], SYNESIS_ERR_SOCKET);
    assert_non_null(strstr(synesis_tunnel_last_error(f->t), "socket("));
    /* With descriptors back, the same tunnel connects. */
    assert_int_equal(synesis_tunnel_connect(f->t), 0);
    assert_true(syn_test_run_until(f->loop, syn_test_connected, f->t, 5));
}

static void test_edge_configuration_errors(void **state) {
    fixture *f = *state;
    syn_edge_config ec;
    syn_edge_config_init(&ec);
    ec.cert_file = syn_test_path(pki, "edge.pem");
    ec.key_file = syn_test_path(pki, "edge.key");
    ec.ca_file = syn_test_path(pki, "ca.pem");
    const char *bad[] = {"nope",
                         "[::1",
                         "[::1]4433",
                         "127.0.0.1:",
                         "127.0.0.1:70000",
                         "127.0.0.1:12x",
                         "localhost:0",
                         "0123456789012345678901234567890123456789012345678901234567890:1"};
    char detail[512];
    syn_edge *e = (syn_edge *)f;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ec.listen = bad[i];
        int rv = syn_edge_new(&e, f->loop, &ec, detail);
        if (rv != SYNESIS_ERR_INVALID_ARGUMENT || !strstr(detail, "listen address"))
            fail_msg("'%s': %s: %s", bad[i], synesis_error_name(rv), detail);
        assert_null(e);
    }
    ec.listen = "127.0.0.1:0";
    ec.cert_file = "/nonexistent/edge.pem";
    assert_true(syn_edge_new(&e, f->loop, &ec, detail) < 0);
    assert_null(e);
    /* The port of the running edge is taken. */
    char taken[32];
    snprintf(taken, sizeof(taken), "127.0.0.1:%u", (unsigned)syn_edge_port(f->edge));
    ec.listen = taken;
    ec.cert_file = syn_test_path(pki, "edge.pem");
    assert_int_equal(syn_edge_new(&e, f->loop, &ec, detail), 0);
    assert_int_equal(syn_edge_port(e), 0); /* never started */
    assert_int_equal(syn_edge_start(e, detail), SYNESIS_ERR_SOCKET);
    assert_non_null(strstr(detail, "bind("));
    syn_edge_free(e);
    /* Started twice. */
    assert_int_equal(syn_edge_start(f->edge, detail), SYNESIS_ERR_INVALID_STATE);
    syn_edge_free(NULL);
}

static int raw_stream_closed(void *ud) { return ((syn_test_raw_client *)ud)->stream_closes > 0; }

/* syn_test_run_until in short slices: a condition made true by the QUIC driver's own ev_prepare
 * flush, after the harness's check ran, is seen even when no other watcher wakes the loop. */
static int run_until_sliced(struct ev_loop *loop, int (*pred)(void *), void *ud, double timeout) {
    for (double waited = 0; waited < timeout && !pred(ud); waited += 0.02)
        syn_test_run_until(loop, pred, ud, 0.02);
    return pred(ud);
}

/* A bare client (no send_error hook) learns of ICMP port unreachable on the send path: its
 * connection ends with CONNECTION_LOST. */
static void test_raw_client_send_error(void **state) {
    fixture *f = *state;
    syn_test_raw_client *c =
        syn_test_raw_client_new(f->loop, syn_edge_port(f->edge), pki,
                                syn_test_path(pki, "device.pem"), syn_test_path(pki, "device.key"));
    assert_true(syn_test_run_until(f->loop, syn_test_raw_done, c, 5));
    assert_int_equal(c->err, 0);
    static uint8_t body[1u << 20];
    memset(body, 'r', sizeof(body));
    syn_qstream *s;
    /* Warm up: a megabyte echoed grows the congestion window past one sendmmsg batch. */
    assert_int_equal(syn_qconn_open_stream(c->qc, 1, NULL, &s), 0);
    assert_int_equal(syn_qstream_write(s, body, sizeof(body), 1), 0);
    assert_true(syn_test_run_until(f->loop, raw_stream_closed, c, 10));
    syn_edge_stop(f->edge, 0);
    assert_int_equal(syn_qconn_open_stream(c->qc, 1, NULL, &s), 0);
    assert_int_equal(syn_qstream_write(s, body, 200000, 1), 0);
    c->done = 0;
    assert_true(run_until_sliced(f->loop, syn_test_raw_done, c, 5));
    assert_true(c->closed);
    assert_int_equal(c->err, SYNESIS_ERR_CONNECTION_LOST);
    assert_non_null(strstr(c->detail, "send"));
    syn_test_raw_client_free(c);
}

/* A client closes with a reason full of control characters: the edge reports it printable. */
static int edge_closed_one(void *ud) {
    syn_edge_stats st;
    syn_edge_get_stats(ud, &st);
    return st.closed >= 1;
}

static void close_reason_log(void *ud, const char *line) {
    fixture *f = ud;
    if (strstr(line, "\"close\"") && f->nlogs < MAX_LOGS)
        snprintf(f->logs[f->nlogs++], sizeof(f->logs[0]), "%s", line);
}

static void test_close_reason_sanitised(void **state) {
    fixture *f = *state;
    syn_edge_free(f->edge);
    syn_edge_config ec;
    syn_test_edge_config(&ec, pki);
    ec.log = close_reason_log;
    ec.log_user_data = f;
    char detail[512];
    assert_int_equal(syn_edge_new(&f->edge, f->loop, &ec, detail), 0);
    assert_int_equal(syn_edge_start(f->edge, detail), 0);
    syn_test_raw_client *c =
        syn_test_raw_client_new(f->loop, syn_edge_port(f->edge), pki,
                                syn_test_path(pki, "device.pem"), syn_test_path(pki, "device.key"));
    assert_true(syn_test_run_until(f->loop, syn_test_raw_done, c, 5));
    assert_int_equal(c->err, 0);
    syn_qconn_close(c->qc, 7, "bye\x01\x7f!");
    assert_true(syn_test_run_until(f->loop, edge_closed_one, f->edge, 5));
    assert_true(logged(f, "bye?"
                          "?!")); /* (split: not a trigraph) */
    assert_true(logged(f, "0x7"));
    syn_test_raw_client_free(c);
}

static int setup_small_requests(void **state) {
    fixture *f = make_fixture(100, 0, 1000);
    start_tunnel(f, NULL);
    *state = f;
    return 0;
}

/* The edge refuses a request while we are still sending it (STOP_SENDING + RESET_STREAM): the
 * rest of the request is dropped, the connection carries on. */
static void test_request_refused_while_sending(void **state) {
    fixture *f = *state;
    size_t n = 1u << 20;
    char *big = malloc(n);
    memset(big, 'b', n);
    result res;
    request_and_wait(f, big, n, NULL, &res);
    assert_int_equal(res.status, SYNESIS_ERR_STREAM_RESET);
    assert_int_equal(res.app_code, SYN_APP_TOO_LARGE);
    free(big);
    syn_test_run_for(f->loop, 0.05);
    assert_echo_works(f);
    assert_int_equal(f->states.n, 2);
}

/* The tunnel's address changes under it (a NAT rebinding, by the proxy): the edge follows. */
static void test_nat_rebinding(void **state) {
    fixture *f = *state;
    assert_echo_works(f);
    char before[64];
    snprintf(before, sizeof(before), "%s", f->edge_remote);
    assert_int_equal(syn_fault_proxy_rebind(f->proxy), 0);
    assert_echo_works(f);
    assert_echo_works(f);
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(f->t, &st);
    assert_int_equal(st.connections, 1);
    assert_int_equal(f->states.n, 2);
    syn_edge_stats es;
    syn_edge_get_stats(f->edge, &es);
    assert_int_equal(es.accepted, 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_config_validation, setup_edge_only, teardown),
        cmocka_unit_test_setup_teardown(test_largest_values_connect, setup_edge_only, teardown),
        cmocka_unit_test_setup_teardown(test_new_arguments_and_detail, setup_edge_only, teardown),
        cmocka_unit_test_setup_teardown(test_in_memory_pem_and_pins, setup_edge_only, teardown),
        cmocka_unit_test_setup_teardown(test_request_invalid_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_full, setup_queue, teardown),
        cmocka_unit_test_setup_teardown(test_zero_timeout_means_config_default,
                                        setup_short_default_timeout, teardown),
        cmocka_unit_test_setup_teardown(test_late_response_goes_nowhere, setup_proxy, teardown),
        cmocka_unit_test_setup_teardown(test_null_safety, setup, teardown),
        cmocka_unit_test_setup_teardown(test_null_every_function, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats_json_short_buffer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_last_error_and_user_data, setup_edge_only, teardown),
        cmocka_unit_test_setup_teardown(test_heartbeat_over_max_size, setup_edge_only, teardown),
        cmocka_unit_test_setup_teardown(test_resolution_and_address_fallback, setup_edge_only,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unusable_server_name, setup_edge_only, teardown),
        cmocka_unit_test_setup_teardown(test_trace_log, setup_edge_only, teardown),
        cmocka_unit_test_setup_teardown(test_send_error_ends_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edge_refuses_bad_commands, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edge_version_negotiation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_to_edge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_to_tunnel, setup_proxy, teardown),
        cmocka_unit_test_setup_teardown(test_device_id_needs_cn, setup_edge_only, teardown),
        cmocka_unit_test_setup_teardown(test_socket_failure, setup_edge_only, teardown),
        cmocka_unit_test_setup_teardown(test_edge_configuration_errors, setup_edge_only, teardown),
        cmocka_unit_test_setup_teardown(test_raw_client_send_error, setup_edge_only, teardown),
        cmocka_unit_test_setup_teardown(test_close_reason_sanitised, setup_edge_only, teardown),
        cmocka_unit_test_setup_teardown(test_request_refused_while_sending, setup_small_requests,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_nat_rebinding, setup_proxy, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The reference edge against a hostile device: application error codes at the varint limit, the
 * command grammar of docs/protocol.md, strict heartbeat JSON, refusal reports, and the bound on
 * what one connection can make the edge hold. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "harness.h"
#include "protocol.h"
#include "synesis/request.h"
#include "synesis/stream.h"

#if defined(__SANITIZE_ADDRESS__)
#define SYN_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SYN_ASAN 1
#endif
#endif

typedef struct fixture {
    struct ev_loop *loop;
    syn_edge *edge;
    synesis_tunnel *t;
    synesis_tunnel_config cfg;
} fixture;

static const char *pki;

static fixture *start(syn_edge_config *ec_in) {
    fixture *f = calloc(1, sizeof(*f));
    f->loop = ev_loop_new(EVFLAG_AUTO);
    pki = syn_test_pki_shared("proto-1");
    syn_edge_config ec;
    if (ec_in)
        ec = *ec_in;
    else
        syn_test_edge_config(&ec, pki);
    if (getenv("SYN_TEST_EDGE_LOG"))
        ec.log_file = stderr;
    f->edge = syn_test_edge_start(f->loop, &ec);
    syn_test_tunnel_config(&f->cfg, pki, syn_edge_port(f->edge));
    f->cfg.idle_timeout = 10;
    f->cfg.request_timeout = 20;
    return f;
}

static void connect_tunnel(fixture *f) {
    f->t = syn_test_tunnel_connected(f->loop, &f->cfg, NULL, f, 5);
}

static void finish(fixture *f) {
    syn_test_finish(f->loop, f->t, f->edge);
    free(f);
}

typedef syn_test_result result;
#define on_resp syn_test_on_response
#define res_done syn_test_response_done

static void request(fixture *f, const void *data, size_t len, result *res) {
    syn_test_request(f->loop, f->t, data, len, NULL, res, 10);
}

/* The edge still answers (it did not abort) and the connection is the same one. */
static void assert_alive(fixture *f) {
    result res;
    request(f, "ping", 4, &res);
    assert_int_equal(res.status, 0);
    assert_int_equal(res.len, 4);
    assert_memory_equal(res.data, "ping", 4);
    free(res.data);
    syn_edge_stats es;
    syn_edge_get_stats(f->edge, &es);
    assert_int_equal(es.active, 1);
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(f->t, &st);
    assert_int_equal(st.connections, 1);
}

/* The device's handshake completes (its Finished) before the edge confirms it (HANDSHAKE_DONE,
 * after judging the device certificate): both times are reported, and cleared with the
 * connection. */
static void test_handshake_times(void **state) {
    (void)state;
    fixture *f = start(NULL);
    connect_tunnel(f);
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(f->t, &st);
    assert_true(st.handshake_completed_time > 0);
    assert_true(st.handshake_completed_time < st.handshake_time);
    char buf[2048];
    assert_true(synesis_tunnel_stats_json(f->t, buf, sizeof(buf)) < (int)sizeof(buf));
    cJSON *o = cJSON_Parse(buf);
    assert_non_null(o);
    assert_true(cJSON_GetObjectItem(o, "handshake_completed_time")->valuedouble ==
                st.handshake_completed_time);
    cJSON_Delete(o);
    assert_int_equal(synesis_tunnel_disconnect(f->t), 0);
    synesis_tunnel_get_stats(f->t, &st);
    assert_true(st.handshake_completed_time == 0);
    assert_true(st.handshake_time == 0);
    finish(f);
}

/* 1. RESET 2^62 used to abort the edge inside ngtcp2 (ngtcp2_put_uvarintlen). */
static void test_reset_code_limits(void **state) {
    (void)state;
    fixture *f = start(NULL);
    connect_tunnel(f);
    static const struct {
        const char *req;
        uint64_t code;
    } cases[] = {
        {"RESET 4611686018427387904\n",  SYN_APP_REFUSED       },
        {"RESET 4611686018427387903\n",  4611686018427387903ull},
        {"RESET 0x3fffffffffffffff\n",   0x3fffffffffffffffull },
        {"RESET 0x4000000000000000\n",   SYN_APP_REFUSED       },
        {"RESET 18446744073709551615\n", SYN_APP_REFUSED       },
        {"RESET 18446744073709551616\n", SYN_APP_REFUSED       },
        {"RESET 0xffffffffffffffffff\n", SYN_APP_REFUSED       },
        {"RESET 0x\n",                   SYN_APP_REFUSED       },
        {"RESET 0x1F\n",                 0x1f                  },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        result res;
        request(f, cases[i].req, strlen(cases[i].req), &res);
        if (res.status != SYNESIS_ERR_STREAM_RESET || res.app_code != cases[i].code)
            fail_msg("'%.*s': status %s code 0x%llx, want reset 0x%llx",
                     (int)strlen(cases[i].req) - 1, cases[i].req, synesis_error_name(res.status),
                     (unsigned long long)res.app_code, (unsigned long long)cases[i].code);
    }
    assert_alive(f);
    finish(f);
}

/* 1. synesis_stream_reset() with 2^62 returned OK and then aborted the device. */
typedef struct sres {
    int closed, status;
    uint64_t code;
    uint8_t data[64];
    size_t len;
} sres;

static void s_data(synesis_stream *s, const uint8_t *d, size_t n, void *ud) {
    (void)s;
    sres *r = ud;
    if (r->len + n <= sizeof(r->data)) {
        memcpy(r->data + r->len, d, n);
        r->len += n;
    }
}

static void s_close(synesis_stream *s, int status, uint64_t code, const char *detail, void *ud) {
    (void)detail;
    (void)s;
    sres *r = ud;
    r->closed++;
    r->status = status;
    r->code = code;
}

static int s_closed(void *ud) { return ((sres *)ud)->closed > 0; }

static void test_stream_reset_code_limit(void **state) {
    (void)state;
    fixture *f = start(NULL);
    connect_tunnel(f);
    synesis_stream_callbacks cb = {
        .struct_size = sizeof(synesis_stream_callbacks), .on_data = s_data, .on_close = s_close};
    sres r = {0};
    synesis_stream *s;
    assert_int_equal(synesis_tunnel_open_stream(f->t, &cb, &r, &s), 0);
    assert_int_equal(synesis_stream_reset(s, SYNESIS_APP_ERROR_CODE_MAX + 1),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(synesis_stream_reset(s, UINT64_MAX), SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(r.closed, 0);
    /* The stream is untouched: it still echoes. */
    size_t acc;
    assert_int_equal(synesis_stream_write(s, "hi", 2, &acc), 0);
    assert_int_equal(synesis_stream_finish(s), 0);
    assert_true(syn_test_run_until(f->loop, s_closed, &r, 5));
    assert_int_equal(r.status, 0);
    assert_int_equal(r.len, 2);
    /* The largest code is carried as it is. */
    sres r2 = {0};
    assert_int_equal(synesis_tunnel_open_stream(f->t, &cb, &r2, &s), 0);
    assert_int_equal(synesis_stream_write(s, "x", 1, &acc), 0);
    syn_test_run_for(f->loop, 0.05);
    assert_int_equal(synesis_stream_reset(s, SYNESIS_APP_ERROR_CODE_MAX), 0);
    assert_int_equal(r2.closed, 1);
    assert_int_equal(r2.status, SYNESIS_ERR_CANCELLED);
    syn_test_run_for(f->loop, 0.1);
    assert_alive(f);
    finish(f);
}

/* 1. A handler's reset code over the limit becomes INTERNAL instead of aborting the edge. */
static int big_reset_handler(void *ud, const char *device_id, const uint8_t *req, size_t len,
                             syn_edge_reply *reply) {
    (void)ud;
    (void)device_id;
    if (len == 4 && memcmp(req, "ping", 4) == 0) {
        reply->data = malloc(4);
        memcpy(reply->data, "ping", 4);
        reply->len = 4;
        return 0;
    }
    reply->reset = 1;
    reply->reset_code = 1ull << 62;
    return 0;
}

static void test_handler_reset_code_limit(void **state) {
    (void)state;
    fixture *f = start(NULL);
    syn_edge_set_handler(f->edge, big_reset_handler, NULL);
    connect_tunnel(f);
    result res;
    request(f, "boom", 4, &res);
    assert_int_equal(res.status, SYNESIS_ERR_STREAM_RESET);
    assert_int_equal(res.app_code, SYN_APP_INTERNAL);
    assert_alive(f);
    finish(f);
}

/* 8, 11. The command grammar, case by case (docs/protocol.md, "Commands"). */
typedef struct gcase {
    const char *req;
    size_t len;         /* 0: strlen */
    int refused;        /* reset with 0x1 */
    const char *answer; /* else the exact answer */
    size_t answer_len;  /* for SRC answers (bytes i mod 251) when answer is NULL */
} gcase;

static void test_command_grammar(void **state) {
    (void)state;
    syn_edge_config ec;
    pki = syn_test_pki_shared("proto-1");
    syn_test_edge_config(&ec, pki);
    ec.max_src_size = 1000;
    fixture *f = start(&ec);
    connect_tunnel(f);
    static const gcase cases[] = {
        {"SRC 5\n",                                                                 0, 0, NULL,       5   },
        {"SRC 5\ntrailing bytes are read and dropped",                              0, 0, NULL,       5   },
        {"SRC 0\n",                                                                 0, 0, "",         0   },
        {"SRC 1000\n",                                                              0, 0, NULL,       1000}, /* the configured maximum */
        {"SRC 1001\n",                                                              0, 1, NULL,       0   }, /* over it */
        {"SRC -1\n",                                                                0, 1, NULL,       0   },
        {"SRC +5\n",                                                                0, 1, NULL,       0   },
        {"SRC  5\n",                                                                0, 1, NULL,       0   },
        {"SRC 5 \n",                                                                0, 1, NULL,       0   },
        {"SRC 5\r\n",                                                               0, 1, NULL,       0   },
        {"SRC 0x10\n",                                                              0, 1, NULL,       0   },
        {"SRC abc\n",                                                               0, 1, NULL,       0   },
        {"SRC \n",                                                                  0, 1, NULL,       0   },
        {"SRC 99999999999999999999999\n",                                           0, 1, NULL,       0   },
        {"SRC 5",                                                                   0, 1, NULL,       0   }, /* FIN before the newline */
        {"SRC 00000000000000000000000000000000000000000000000000000000000000001\n", 0, 1, NULL,
         0                                                                                                }, /* a line over 64 bytes */
        {"SLEEP 10",                                                                0, 1, NULL,       0   },
        {"SLEEP 600001\n",                                                          0, 1, NULL,       0   },
        {"SLEEP -5\n",                                                              0, 1, NULL,       0   },
        {"SLEEP 10\nabc",                                                           0, 0, "abc",      3   },
        {"SLEEP 0\n",                                                               0, 0, "",         0   },
        {"RESET x\n",                                                               0, 1, NULL,       0   },
        {"RESET 12",                                                                0, 1, NULL,       0   },
 /* Not commands: echoed. */
        {"SRC",                                                                     0, 0, "SRC",      3   },
        {"SR",                                                                      0, 0, "SR",       2   },
        {"SRCX 5\n",                                                                0, 0, "SRCX 5\n", 7   },
        {"src 5\n",                                                                 0, 0, "src 5\n",  6   },
        {" SRC 5\n",                                                                0, 0, " SRC 5\n", 7   },
        {"hello",                                                                   0, 0, "hello",    5   },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const gcase *c = &cases[i];
        size_t len = c->len ? c->len : strlen(c->req);
        result res;
        request(f, c->req, len, &res);
        if (c->refused) {
            if (res.status != SYNESIS_ERR_STREAM_RESET || res.app_code != SYN_APP_REFUSED)
                fail_msg("case %zu '%s': %s, want reset 0x1", i, c->req,
                         synesis_error_name(res.status));
        } else {
            if (res.status != 0 || res.len != c->answer_len)
                fail_msg("case %zu '%s': %s, %zu bytes, want %zu", i, c->req,
                         synesis_error_name(res.status), res.len, c->answer_len);
            for (size_t j = 0; j < res.len; j++)
                assert_int_equal(res.data[j], c->answer ? (uint8_t)c->answer[j] : j % 251);
        }
        free(res.data);
    }
    assert_alive(f);
    finish(f);
}

/* 9, 10, 11. Heartbeat frames from a raw client: strict JSON, and refusals judged at the end of
 * the stream reach the device as a report. */
static int raw_closes(void *ud) { return ((syn_test_raw_client *)ud)->stream_closes > 0; }

static int64_t send_hb(fixture *f, syn_test_raw_client *c, const char *json) {
    size_t n = strlen(json);
    uint8_t *fr = malloc(5 + n);
    syn_frame_header(fr, SYN_MSG_HEARTBEAT, n);
    memcpy(fr + 5, json, n);
    syn_qstream *s;
    assert_int_equal(syn_qconn_open_stream(c->qc, 0, NULL, &s), 0);
    int64_t id = syn_qstream_id(s);
    assert_int_equal(syn_qstream_write(s, fr, 5 + n, 1), 0);
    free(fr);
    c->stream_closes = 0;
    assert_true(syn_test_run_until(f->loop, raw_closes, c, 5));
    return id;
}

typedef struct report_wait {
    syn_test_raw_client *c;
    int want;
} report_wait;

static int reports_in(void *ud) {
    report_wait *w = ud;
    return w->c->peer_fins >= w->want;
}

/* Parses the report at *off of the raw client's collected edge-stream bytes. */
static cJSON *next_report(syn_test_raw_client *c, size_t *off) {
    assert_true(*off + 5 <= c->peer_len);
    const uint8_t *p = c->peer_data + *off;
    assert_int_equal(p[0], SYN_MSG_REPORT);
    size_t n = syn_frame_length(p);
    assert_true(n <= SYN_REPORT_MAX);
    assert_true(*off + 5 + n <= c->peer_len);
    cJSON *o = cJSON_ParseWithLength((const char *)p + 5, n);
    assert_non_null(o);
    *off += 5 + n;
    return o;
}

static void test_heartbeat_strict_and_reports(void **state) {
    (void)state;
    fixture *f = start(NULL);
    syn_test_raw_client *c =
        syn_test_raw_client_new(f->loop, syn_edge_port(f->edge), pki,
                                syn_test_path(pki, "device.pem"), syn_test_path(pki, "device.key"));
    assert_true(syn_test_run_until(f->loop, syn_test_raw_done, c, 5));
    assert_int_equal(c->err, 0);
#define HB(ts, rest) "{\"device_id\":\"proto-1\",\"timestamp\":" ts ",\"sequence\":7," rest "}"
    static const struct {
        const char *json;
        int ok;
        const char *reason;
    } cases[] = {
        {HB("1",                 "\"vitals\":{}"),                    1,                    NULL},
        {HB("1",                      "\"vitals\":{}") " \n\t",                                                    1,                           NULL}, /* whitespace after the object */
        {HB("1",                  "\"vitals\":{}") " garbage",                                                     0,                                          "after the JSON"},
        {HB("1",                     "\"vitals\":{}") "{}",0,"after the JSON"},
        {HB("-1","\"vitals\":{}"),                            0,                                                                  "timestamp"},
        {HB("1.5",                "\"vitals\":{}"),                                                       0,                                               "timestamp"},
        {HB("1e300",                      "\"vitals\":{}"),                                                  0,                                       "timestamp"},
        {HB("9007199254740991",           "\"vitals\":{}"),                                              1,           NULL},
        {HB("9007199254740992",                     "\"vitals\":{}"),0,"timestamp"},
        {HB("1","\"vitals\":[]"),0,"vitals"},
        {"{\"device_id\":\"proto-1\",\"timestamp\":1,\"sequence\":-2,\"vitals\":{}}",  0,
         "sequence"                        },
        {"not json",                      0,                                                    "invalid JSON"                                                            },
    };
    syn_edge_stats es;
    int refusals = 0;
    size_t off = 0;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        syn_edge_get_stats(f->edge, &es);
        uint64_t good = es.heartbeats, bad = es.bad_frames;
        int64_t id = send_hb(f, c, cases[i].json);
        syn_edge_get_stats(f->edge, &es);
        if (cases[i].ok) {
            if (es.heartbeats != good + 1)
                fail_msg("case %zu refused: %s", i, syn_edge_last_bad_frame(f->edge));
            continue;
        }
        if (es.bad_frames != bad + 1)
            fail_msg("case %zu accepted: %s", i, cases[i].json);
        assert_non_null(strstr(syn_edge_last_bad_frame(f->edge), cases[i].reason));
        /* The stream was read whole, so the refusal comes as a report. */
        report_wait w = {c, ++refusals};
        assert_true(syn_test_run_until(f->loop, reports_in, &w, 5));
        cJSON *o = next_report(c, &off);
        assert_string_equal(cJSON_GetObjectItem(o, "kind")->valuestring, "heartbeat_refused");
        assert_int_equal((int64_t)cJSON_GetObjectItem(o, "stream_id")->valuedouble, id);
        assert_int_equal((int)cJSON_GetObjectItem(o, "error")->valuedouble, SYN_APP_BAD_FRAME);
        assert_non_null(strstr(cJSON_GetObjectItem(o, "reason")->valuestring, cases[i].reason));
        const cJSON *seq = cJSON_GetObjectItem(o, "sequence");
        if (strstr(cases[i].json, "\"sequence\":7"))
            assert_int_equal((int)seq->valuedouble, 7);
        else
            assert_null(seq);
        cJSON_Delete(o);
    }
    /* A refusal judged while the stream is open is STOP_SENDING 0x10 and no report. */
    uint8_t bad_type[5] = {0x7f, 0, 0, 0, 2};
    syn_qstream *s;
    assert_int_equal(syn_qconn_open_stream(c->qc, 0, NULL, &s), 0);
    assert_int_equal(syn_qstream_write(s, bad_type, sizeof(bad_type), 0), 0);
    c->stream_closes = 0;
    assert_true(syn_test_run_until(f->loop, raw_closes, c, 5));
    assert_int_equal(c->last_close_code, SYN_APP_BAD_FRAME);
    syn_test_run_for(f->loop, 0.1);
    assert_int_equal(c->peer_fins, refusals);
    syn_edge_get_stats(f->edge, &es);
    assert_int_equal(es.reports_sent, (uint64_t)refusals);
    assert_int_equal(es.active, 1);
    syn_test_raw_client_free(c);
    syn_test_run_for(f->loop, 0.05);
    finish(f);
}

/* 3. What one connection can make the edge hold. */
static void no_release(const void *data, size_t len, void *ud) {
    (void)ud;
    (void)data;
    (void)len;
}

static size_t heap_in_use(void) {
#if defined(SYN_ASAN)
    return 0;
#else
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
#endif
}

/* Sixteen requests whose bodies the edge must buffer (SLEEP), 8 MiB each: the edge used to
 * return the credit at once and keep all 128 MiB. */
static void test_buffered_bodies_bounded(void **state) {
    (void)state;
    syn_edge_config ec;
    pki = syn_test_pki_shared("proto-1");
    syn_test_edge_config(&ec, pki);
    ec.max_streams_bidi = 100;
    ec.max_conn_buffer = 4u * 1024 * 1024;
    fixture *f = start(&ec);
    f->cfg.max_response_size = 1024; /* the device keeps no echo */
    connect_tunnel(f);
    const size_t body = 8u * 1024 * 1024;
    uint8_t *req = malloc(body);
    memset(req, 'z', body);
    memcpy(req, "SLEEP 200\n", 10);
    size_t heap0 = heap_in_use();
    result res[16];
    memset(res, 0, sizeof(res));
    for (int i = 0; i < 16; i++)
        assert_int_equal(synesis_tunnel_request_nocopy(f->t, req, body, no_release, NULL, NULL,
                                                       on_resp, &res[i], NULL),
                         0);
    size_t heap_peak = 0;
    for (int i = 0; i < 16; i++) {
        while (!res[i].calls) {
            syn_test_run_for(f->loop, 0.02);
            size_t h = heap_in_use();
            if (h > heap_peak)
                heap_peak = h;
        }
    }
    int refused = 0;
    for (int i = 0; i < 16; i++) {
        assert_int_equal(res[i].calls, 1);
        assert_int_equal(res[i].status, SYNESIS_ERR_STREAM_RESET);
        assert_int_equal(res[i].app_code, SYN_APP_TOO_LARGE);
        refused++;
        free(res[i].data);
    }
    assert_int_equal(refused, 16);
    syn_edge_stats es;
    syn_edge_get_stats(f->edge, &es);
    print_message("edge held at most %llu bytes (bound %zu); heap growth %zu KiB\n",
                  (unsigned long long)es.held_peak, ec.max_conn_buffer,
                  heap_peak > heap0 ? (heap_peak - heap0) / 1024 : 0);
    assert_true(es.held_peak <= ec.max_conn_buffer);
#if !defined(SYN_ASAN)
    /* Edge and device share this heap: 128 MiB were sent; the edge's bound is 4 MiB, and ngtcp2
     * may hold one more window of reordered data on each side. */
    assert_true(heap_peak < heap0 + 24u * 1024 * 1024);
#endif
    /* Bodies that fit are still served. */
    synesis_request_options o;
    synesis_request_options_init(&o);
    o.max_response_size = 2u * 1024 * 1024;
    result ok = {0};
    assert_int_equal(synesis_tunnel_request_nocopy(f->t, req, 1024 * 1024, no_release, NULL, &o,
                                                   on_resp, &ok, NULL),
                     0);
    assert_true(syn_test_run_until(f->loop, res_done, &ok, 10));
    assert_int_equal(ok.status, 0);
    assert_int_equal(ok.len, 1024 * 1024 - 10);
    free(ok.data);
    syn_test_run_for(f->loop, 0.1);
    syn_edge_get_stats(f->edge, &es);
    assert_int_equal(es.held_bytes, 0);
    free(req);
    finish(f);
}

/* SRC streams the device never reads: the edge used to queue up to 1 MiB per stream whatever
 * the device's flow control allowed. */
static void test_unread_src_bounded(void **state) {
    (void)state;
    syn_edge_config ec;
    pki = syn_test_pki_shared("proto-1");
    syn_test_edge_config(&ec, pki);
    ec.max_streams_bidi = 200;
    ec.max_conn_buffer = 2u * 1024 * 1024;
    fixture *f = start(&ec);
    f->cfg.stream_recv_window = 64 * 1024; /* 8 MiB of credit in all: over the bound */
    connect_tunnel(f);
    enum { N = 128 };
    synesis_stream_callbacks cb = {.struct_size = sizeof(synesis_stream_callbacks),
                                   .on_close = s_close};
    sres r[N];
    memset(r, 0, sizeof(r));
    synesis_stream *s[N];
    size_t heap0 = heap_in_use();
    for (int i = 0; i < N; i++) {
        assert_int_equal(synesis_tunnel_open_stream(f->t, &cb, &r[i], &s[i]), 0);
        synesis_stream_pause(s[i]);
        size_t acc;
        assert_int_equal(synesis_stream_write(s[i], "SRC 100000000\n", 14, &acc), 0);
        assert_int_equal(synesis_stream_finish(s[i]), 0);
    }
    syn_test_run_for(f->loop, 1.0);
    size_t heap1 = heap_in_use();
    syn_edge_stats es;
    syn_edge_get_stats(f->edge, &es);
    print_message("%d unread SRC streams: edge holds %llu bytes (peak %llu, bound %zu); heap "
                  "growth %zu KiB\n",
                  N, (unsigned long long)es.held_bytes, (unsigned long long)es.held_peak,
                  ec.max_conn_buffer, heap1 > heap0 ? (heap1 - heap0) / 1024 : 0);
    /* Command lines being parsed (1 KiB buffers) come on top of the bound. */
    assert_true(es.held_peak <= ec.max_conn_buffer + N * 1024);
#if !defined(SYN_ASAN)
    assert_true(heap1 < heap0 + 16u * 1024 * 1024);
#endif
    for (int i = 0; i < N; i++)
        assert_int_equal(synesis_stream_reset(s[i], SYN_APP_CANCELLED), 0);
    syn_test_run_for(f->loop, 0.2);
    syn_edge_get_stats(f->edge, &es);
    assert_int_equal(es.held_bytes, 0);
    assert_alive(f);
    finish(f);
}

/* A configuration that would reach ngtcp2 out of range is refused. */
static void test_edge_config_limits(void **state) {
    (void)state;
    pki = syn_test_pki_shared("proto-1");
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    for (int i = 0; i < 6; i++) {
        syn_edge_config ec;
        syn_test_edge_config(&ec, pki);
        switch (i) {
        case 0:
            ec.max_streams_bidi = (1ull << 60) + 1;
            break;
        case 1:
            ec.idle_timeout = 1e300;
            break;
        case 2:
            ec.handshake_timeout = -1;
            break;
        case 3:
            ec.max_conn_buffer = 1024;
            break;
        case 4:
            ec.congestion_control = 5;
            break;
        default:
            ec.max_request_size = 0;
            break;
        }
        syn_edge *e = NULL;
        char detail[512];
        assert_int_equal(syn_edge_new(&e, loop, &ec, detail), SYNESIS_ERR_INVALID_ARGUMENT);
        assert_null(e);
    }
    ev_loop_destroy(loop);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_times),
        cmocka_unit_test(test_reset_code_limits),
        cmocka_unit_test(test_stream_reset_code_limit),
        cmocka_unit_test(test_handler_reset_code_limit),
        cmocka_unit_test(test_command_grammar),
        cmocka_unit_test(test_heartbeat_strict_and_reports),
        cmocka_unit_test(test_buffered_bodies_bounded),
        cmocka_unit_test(test_unread_src_bounded),
        cmocka_unit_test(test_edge_config_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Heartbeats with device vitals, latency and health, against the reference edge on loopback. */
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

#include "fault_proxy.h"
#include "harness.h"
#include "protocol.h"
#include "tunnel_int.h"

#define MAX_EVENTS 256

typedef struct fixture {
    struct ev_loop *loop;
    syn_edge *edge;
    synesis_tunnel *t;
    synesis_tunnel_config cfg;
    /* sequences of the edge's "heartbeat" events, in arrival order */
    uint64_t seqs[MAX_EVENTS];
    int nseqs;
    int hb_sent, hb_failed;
    /* on_heartbeat_result, by status */
    int res_delivered, res_lost, res_refused;
    char res_detail[256];
} fixture;

static const char *pki;

static void edge_log(void *ud, const char *line) {
    fixture *f = ud;
    cJSON *o = cJSON_Parse(line);
    const cJSON *ev = cJSON_GetObjectItem(o, "event");
    if (cJSON_IsString(ev) && strcmp(ev->valuestring, "heartbeat") == 0 && f->nseqs < MAX_EVENTS)
        f->seqs[f->nseqs++] = (uint64_t)cJSON_GetObjectItem(o, "sequence")->valuedouble;
    cJSON_Delete(o);
}

static syn_edge *make_edge(fixture *f, uint64_t max_uni) {
    syn_edge_config ec;
    syn_test_edge_config(&ec, pki);
    ec.max_streams_uni = max_uni;
    ec.max_heartbeat_size = 4096;
    ec.log = edge_log;
    ec.log_user_data = f;
    return syn_test_edge_start(f->loop, &ec);
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof(*f));
    f->loop = ev_loop_new(EVFLAG_AUTO);
    pki = syn_test_pki_shared("hb-1");
    f->edge = make_edge(f, 100);
    syn_test_tunnel_config(&f->cfg, pki, syn_edge_port(f->edge));
    f->cfg.heartbeat_interval = 0.1;
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    syn_test_finish(f->loop, f->t, f->edge);
    free(f);
    return 0;
}

static void on_hb(synesis_tunnel *t, const synesis_heartbeat_info *info, void *ud) {
    (void)t;
    fixture *f = ud;
    if (info->status == 0)
        f->hb_sent++;
    else
        f->hb_failed++;
}

static void on_vitals(synesis_tunnel *t, synesis_vitals *v, void *ud) {
    (void)t;
    (void)ud;
    assert_int_equal(synesis_vitals_add_string(v, "app_version", "1.2.3"), 0);
    assert_int_equal(synesis_vitals_add_number(v, "queue_depth", 7), 0);
    assert_int_equal(synesis_vitals_add_bool(v, "degraded", 0), 0);
    assert_int_equal(synesis_vitals_add_number(v, "queue_depth", 8), 0); /* replaces */
}

static void on_hb_result(synesis_tunnel *t, const synesis_heartbeat_info *info, void *ud) {
    (void)t;
    fixture *f = ud;
    assert_non_null(info->detail);
    snprintf(f->res_detail, sizeof(f->res_detail), "%s", info->detail);
    if (info->status == 0)
        f->res_delivered++;
    else if (info->status == SYNESIS_ERR_CONNECTION_LOST)
        f->res_lost++;
    else if (info->status == SYNESIS_ERR_HEARTBEAT_REFUSED)
        f->res_refused++;
    else
        fail_msg("unexpected heartbeat result %d", info->status);
}

static void start_with(fixture *f, void (*vitals)(synesis_tunnel *, synesis_vitals *, void *)) {
    synesis_tunnel_callbacks cb = {.struct_size = sizeof(synesis_tunnel_callbacks),
                                   .on_heartbeat = on_hb,
                                   .on_vitals = vitals,
                                   .on_heartbeat_result = on_hb_result};
    f->t = syn_test_tunnel_new(f->loop, &f->cfg, &cb, f);
    assert_int_equal(synesis_tunnel_connect(f->t), 0);
}

static void start(fixture *f) {
    synesis_tunnel_callbacks cb = {.struct_size = sizeof(synesis_tunnel_callbacks),
                                   .on_heartbeat = on_hb,
                                   .on_vitals = on_vitals};
    f->t = syn_test_tunnel_new(f->loop, &f->cfg, &cb, f);
    assert_int_equal(synesis_tunnel_connect(f->t), 0);
}

static int seqs_at_least(void *ud) { return ((fixture *)ud)->nseqs >= 5; }

static void test_heartbeats_arrive(void **state) {
    fixture *f = *state;
    start(f);
    double t0 = ev_time();
    assert_true(syn_test_run_until(f->loop, seqs_at_least, f, 5));
    double elapsed = ev_time() - t0;
    /* Five heartbeats at 100 ms intervals, the first right after Connected: at least 0.4 s. */
    assert_true(elapsed >= 0.39);
    for (int i = 0; i < f->nseqs; i++)
        assert_int_equal(f->seqs[i], (uint64_t)i); /* from 0, strictly increasing */
    syn_edge_device d;
    assert_int_equal(syn_edge_device_info(f->edge, "hb-1", &d), 0);
    assert_true(d.heartbeats >= 5);
    cJSON *o = cJSON_Parse(d.last_json);
    assert_non_null(o);
    const cJSON *id = cJSON_GetObjectItem(o, "device_id");
    assert_true(cJSON_IsString(id));
    assert_string_equal(id->valuestring, "hb-1"); /* derived from the certificate's CN */
    const cJSON *ts = cJSON_GetObjectItem(o, "timestamp");
    assert_true(cJSON_IsNumber(ts));
    assert_true(ts->valuedouble == (double)(int64_t)ts->valuedouble);
    assert_true(ts->valuedouble > 1.7e12); /* ms since the epoch */
    assert_true(cJSON_IsNumber(cJSON_GetObjectItem(o, "sequence")));
    const cJSON *v = cJSON_GetObjectItem(o, "vitals");
    assert_true(cJSON_IsObject(v));
    double cpu = cJSON_GetObjectItem(v, "cpu_percent")->valuedouble;
    assert_true(cpu >= 0 && cpu <= 100);
    double total = cJSON_GetObjectItem(v, "mem_total_kb")->valuedouble;
    double avail = cJSON_GetObjectItem(v, "mem_available_kb")->valuedouble;
    assert_true(total > 0 && avail >= 0 && avail <= total);
    assert_true(cJSON_GetObjectItem(v, "load_1")->valuedouble >= 0);
    assert_true(cJSON_GetObjectItem(v, "uptime_s")->valuedouble > 0);
    assert_true(cJSON_GetObjectItem(v, "process_rss_kb")->valuedouble > 0);
    assert_true(cJSON_GetObjectItem(v, "disk_free_kb")->valuedouble <=
                cJSON_GetObjectItem(v, "disk_total_kb")->valuedouble);
    /* The application's own fields. */
    assert_string_equal(cJSON_GetObjectItem(v, "app_version")->valuestring, "1.2.3");
    assert_true(cJSON_GetObjectItem(v, "queue_depth")->valuedouble == 8);
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(v, "degraded")));
    cJSON_Delete(o);
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(f->t, &st);
    assert_true(st.heartbeats_sent >= 5);
    assert_int_equal(st.heartbeats_failed, 0);
    assert_true(st.last_heartbeat_sequence >= 4);
    assert_int_equal(st.heartbeats_sent, (uint64_t)f->hb_sent);
}

static int reconnected_and_more(void *ud) {
    fixture *f = ud;
    return f->nseqs >= 8 && synesis_tunnel_is_connected(f->t);
}

static int has_three(void *ud) { return ((fixture *)ud)->nseqs >= 3; }

static void test_sequence_continues_after_reconnect(void **state) {
    fixture *f = *state;
    f->cfg.device_id = "configured-id";
    start(f);
    assert_true(syn_test_run_until(f->loop, has_three, f, 5));
    syn_edge_kick(f->edge, "hb-1"); /* the edge drops the connection; the tunnel reconnects */
    assert_true(syn_test_run_until(f->loop, reconnected_and_more, f, 10));
    for (int i = 1; i < f->nseqs; i++)
        assert_true(f->seqs[i] > f->seqs[i - 1]);
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(f->t, &st);
    assert_int_equal(st.reconnects, 1);
    syn_edge_device d;
    assert_int_equal(syn_edge_device_info(f->edge, "hb-1", &d), 0);
    assert_non_null(strstr(d.last_json, "\"device_id\":\"configured-id\""));
}

static void test_interval_zero_sends_none(void **state) {
    fixture *f = *state;
    f->cfg.heartbeat_interval = 0;
    start(f);
    syn_test_run_for(f->loop, 0.5);
    assert_true(synesis_tunnel_is_connected(f->t));
    assert_int_equal(f->nseqs, 0);
    assert_int_equal(f->hb_sent + f->hb_failed, 0);
}

static int failed_some(void *ud) { return ((fixture *)ud)->hb_failed >= 3; }

/* The edge grants no unidirectional streams: heartbeats fail, the tunnel stays up. */
static void test_unsendable_heartbeat_does_not_tear_down(void **state) {
    fixture *f = *state;
    syn_edge_free(f->edge);
    f->edge = make_edge(f, 0);
    syn_test_tunnel_config(&f->cfg, pki, syn_edge_port(f->edge));
    f->cfg.heartbeat_interval = 0.05;
    start(f);
    assert_true(syn_test_run_until(f->loop, failed_some, f, 5));
    assert_true(synesis_tunnel_is_connected(f->t));
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(f->t, &st);
    assert_true(st.heartbeats_failed >= 3);
    assert_int_equal(st.heartbeats_sent, 0);
}

/* Hand-made frames from a raw client: each malformed kind is refused with its reason and the
 * connection keeps working. */
static int raw_stream_closed(void *ud) {
    syn_test_raw_client *c = ud;
    return c->stream_closes > 0;
}

static void send_frame(fixture *f, syn_test_raw_client *c, const uint8_t *data, size_t len,
                       int fin) {
    syn_qstream *s;
    assert_int_equal(syn_qconn_open_stream(c->qc, 0, NULL, &s), 0);
    assert_int_equal(syn_qstream_write(s, data, len, fin), 0);
    c->stream_closes = 0;
    assert_true(syn_test_run_until(f->loop, raw_stream_closed, c, 5));
}

static size_t frame(uint8_t *out, uint8_t type, uint32_t len, const char *json) {
    out[0] = type;
    out[1] = (uint8_t)(len >> 24);
    out[2] = (uint8_t)(len >> 16);
    out[3] = (uint8_t)(len >> 8);
    out[4] = (uint8_t)len;
    size_t n = json ? strlen(json) : 0;
    if (n)
        memcpy(out + 5, json, n);
    return 5 + n;
}

static void test_edge_rejects_malformed_frames(void **state) {
    fixture *f = *state;
    syn_test_raw_client *c =
        syn_test_raw_client_new(f->loop, syn_edge_port(f->edge), pki,
                                syn_test_path(pki, "device.pem"), syn_test_path(pki, "device.key"));
    assert_true(syn_test_run_until(f->loop, syn_test_raw_done, c, 5));
    assert_int_equal(c->err, 0);
    static const char good[] =
        "{\"device_id\":\"x\",\"timestamp\":1700000000000,\"sequence\":1,\"vitals\":{}}";
    uint8_t buf[8192];
    size_t n;
    struct {
        const char *name;
        const char *reason;
    } cases[] = {
        {"wrong type",          "unknown message type 0x02"          },
        {"truncated",           "truncated frame"                    },
        {"too long",            "over the maximum"                   },
        {"invalid json",        "invalid JSON"                       },
        {"missing field",       "missing or mistyped field sequence" },
        {"wrong type of field", "missing or mistyped field timestamp"},
        {"trailing bytes",      "after the end of the frame"         },
    };
    syn_edge_stats es;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        switch (i) {
        case 0:
            n = frame(buf, 0x02, (uint32_t)strlen(good), good);
            break;
        case 1:
            n = frame(buf, 0x01, (uint32_t)strlen(good) + 10, good);
            break;
        case 2:
            n = frame(buf, 0x01, 1u << 20, NULL);
            break;
        case 3:
            n = frame(buf, 0x01, 5, "{bad}");
            break;
        case 4:
            n = frame(buf, 0x01, 0, "{\"device_id\":\"x\",\"timestamp\":1,\"vitals\":{}}");
            frame(buf, 0x01, (uint32_t)(n - 5), NULL);
            break;
        case 5:
            n = frame(buf, 0x01, 0,
                      "{\"device_id\":\"x\",\"timestamp\":\"now\",\"sequence\":1,\"vitals\":{}}");
            frame(buf, 0x01, (uint32_t)(n - 5), NULL);
            break;
        default:
            n = frame(buf, 0x01, (uint32_t)strlen(good), good);
            memcpy(buf + n, "junk", 4);
            n += 4;
            break;
        }
        /* Faults visible before the end of the stream are sent without FIN: the edge must stop
         * the stream itself (STOP_SENDING with BAD_FRAME, which our side answers with a reset). */
        int early = i == 0 || i == 2 || i == 6;
        send_frame(f, c, buf, n, !early);
        if (!strstr(syn_edge_last_bad_frame(f->edge), cases[i].reason))
            fail_msg("%s: reason '%s'", cases[i].name, syn_edge_last_bad_frame(f->edge));
        if (early)
            assert_int_equal(c->last_close_code, SYN_APP_BAD_FRAME);
        syn_edge_get_stats(f->edge, &es);
        assert_int_equal(es.bad_frames, i + 1);
        assert_false(c->closed); /* the connection keeps working */
    }
    /* A good frame after all that is accepted. */
    n = frame(buf, 0x01, (uint32_t)strlen(good), good);
    send_frame(f, c, buf, n, 1);
    syn_edge_get_stats(f->edge, &es);
    assert_int_equal(es.heartbeats, 1);
    assert_int_equal(es.bad_frames, sizeof(cases) / sizeof(cases[0]));
    syn_test_raw_client_free(c);
}

static int unhealthy(void *ud) { return !synesis_tunnel_is_healthy(ud); }
static int healthy(void *ud) { return synesis_tunnel_is_healthy(ud); }

/* Latency over the threshold (added by the fault proxy) makes the tunnel unhealthy. */
static void test_is_healthy_follows_latency(void **state) {
    fixture *f = *state;
    struct sockaddr_in listen = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct sockaddr_in up = listen;
    up.sin_port = htons(syn_edge_port(f->edge));
    syn_fault_proxy *p = syn_fault_proxy_new(f->loop, (struct sockaddr *)&listen, sizeof(listen),
                                             (struct sockaddr *)&up, sizeof(up), 7);
    assert_non_null(p);
    syn_test_tunnel_config(&f->cfg, pki, syn_fault_proxy_port(p));
    f->cfg.heartbeat_interval = 0.05;
    f->cfg.keep_alive_interval = 0.05;
    f->cfg.healthy_latency_ms = 40;
    start(f);
    assert_true(syn_test_run_until(f->loop, healthy, f->t, 5));
    /* 60 ms each way: RTT samples of ~120 ms (less at most 25 ms of ACK delay) against a 40 ms
     * threshold, a wide margin whatever the EWMA's pace. */
    syn_fault_dir slow = {.delay_ms = 60};
    syn_fault_proxy_set(p, &slow, &slow);
    assert_true(syn_test_run_until(f->loop, unhealthy, f->t, 10));
    assert_true(synesis_tunnel_is_connected(f->t));
    synesis_tunnel_state s;
    synesis_tunnel_get_state(f->t, &s);
    assert_true(s.latency_ms >= 40);
    syn_fault_proxy_set(p, NULL, NULL);
    assert_true(syn_test_run_until(f->loop, healthy, f->t, 10));
    synesis_tunnel_free(f->t);
    f->t = NULL;
    syn_test_run_for(f->loop, 0.05);
    syn_fault_proxy_free(p);
}

/* Across an outage (the path blackholed past the idle timeout, then back), a heartbeat counts as
 * delivered only once the edge acknowledged all of it: delivered equals what the edge counted,
 * and every heartbeat handed to QUIC was either delivered or lost with its connection. */
static int delivered_quiet(void *ud) {
    fixture *f = ud;
    return f->res_delivered >= 5 && syn_list_empty(&f->t->hb.live);
}

static int not_connected(void *ud) { return !synesis_tunnel_is_connected(((fixture *)ud)->t); }

typedef struct more_ctx {
    fixture *f;
    int want;
} more_ctx;

static int delivered_more_quiet(void *ud) {
    more_ctx *m = ud;
    return synesis_tunnel_is_connected(m->f->t) && m->f->res_delivered >= m->want &&
           syn_list_empty(&m->f->t->hb.live);
}

static int edge_matches(void *ud) {
    fixture *f = ud;
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(f->t, &st);
    return syn_list_empty(&f->t->hb.live) && st.heartbeats_delivered == (uint64_t)f->nseqs;
}

static void test_delivered_matches_edge_across_outage(void **state) {
    fixture *f = *state;
    struct sockaddr_in listen = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct sockaddr_in up = listen;
    up.sin_port = htons(syn_edge_port(f->edge));
    syn_fault_proxy *p = syn_fault_proxy_new(f->loop, (struct sockaddr *)&listen, sizeof(listen),
                                             (struct sockaddr *)&up, sizeof(up), 7);
    assert_non_null(p);
    syn_test_tunnel_config(&f->cfg, pki, syn_fault_proxy_port(p));
    f->cfg.heartbeat_interval = 0.05;
    f->cfg.keep_alive_interval = 0.1;
    f->cfg.idle_timeout = 0.6;
    start_with(f, NULL);
    assert_true(syn_test_run_until(f->loop, delivered_quiet, f, 5));
    /* The path goes dark: heartbeats keep being handed to QUIC until the idle timeout ends the
     * connection, and none of them arrives. */
    syn_fault_proxy_blackhole(p, 1);
    assert_true(syn_test_run_until(f->loop, not_connected, f, 5));
    syn_fault_proxy_blackhole(p, 0);
    more_ctx m = {f, f->res_delivered + 5};
    assert_true(syn_test_run_until(f->loop, delivered_more_quiet, &m, 10));
    assert_true(syn_test_run_until(f->loop, edge_matches, f, 5));
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(f->t, &st);
    syn_edge_device d;
    assert_int_equal(syn_edge_device_info(f->edge, "hb-1", &d), 0);
    if (st.heartbeats_delivered != d.heartbeats)
        fail_msg("delivered %llu, the edge counted %llu",
                 (unsigned long long)st.heartbeats_delivered, (unsigned long long)d.heartbeats);
    print_message("outage: sent %llu, delivered %llu, lost %d, edge counted %llu\n",
                  (unsigned long long)st.heartbeats_sent,
                  (unsigned long long)st.heartbeats_delivered, f->res_lost,
                  (unsigned long long)d.heartbeats);
    /* Some were handed to QUIC and lost in the outage: sent is not delivery. */
    assert_true(f->res_lost >= 1);
    assert_true(st.heartbeats_sent > d.heartbeats);
    if (st.heartbeats_sent != st.heartbeats_delivered + (uint64_t)f->res_lost)
        fail_msg("sent %llu != delivered %llu + lost %d", (unsigned long long)st.heartbeats_sent,
                 (unsigned long long)st.heartbeats_delivered, f->res_lost);
    assert_int_equal(st.heartbeats_delivered, (uint64_t)f->res_delivered);
    assert_int_equal(st.heartbeats_refused, 0);
    assert_int_equal(f->res_refused, 0);
    /* heartbeats_failed: the lost ones plus ticks while not connected (never sent). */
    assert_true(st.heartbeats_failed >= (uint64_t)f->res_lost);
    char json[2048];
    assert_true(synesis_tunnel_stats_json(f->t, json, sizeof(json)) > 0);
    cJSON *o = cJSON_Parse(json);
    assert_true(cJSON_GetObjectItem(o, "heartbeats_delivered")->valuedouble ==
                (double)st.heartbeats_delivered);
    assert_true(cJSON_GetObjectItem(o, "heartbeats_refused")->valuedouble == 0);
    cJSON_Delete(o);
    synesis_tunnel_free(f->t);
    f->t = NULL;
    syn_test_run_for(f->loop, 0.05);
    syn_fault_proxy_free(p);
}

/* The edge refuses a heartbeat while its stream is still open (its length is over the edge's
 * maximum, seen in the header): STOP_SENDING with BAD_FRAME, counted refused, neither delivered
 * nor failed, and the tunnel stays up. */
static void big_vitals(synesis_tunnel *t, synesis_vitals *v, void *ud) {
    (void)t;
    (void)ud;
    static char blob[60001];
    memset(blob, 'x', sizeof(blob) - 1);
    assert_int_equal(synesis_vitals_add_string(v, "blob", blob), 0);
}

static int any_result(void *ud) {
    fixture *f = ud;
    return f->res_refused + f->res_delivered + f->res_lost >= 1;
}

static void test_heartbeat_refused_by_stop_sending(void **state) {
    fixture *f = *state;
    f->cfg.heartbeat_interval = 10; /* one, right after Connected */
    start_with(f, big_vitals);
    assert_true(syn_test_run_until(f->loop, any_result, f, 5));
    syn_test_run_for(f->loop, 0.1);
    if (f->res_refused != 1)
        fail_msg("results: refused %d, delivered %d, lost %d (%s)", f->res_refused,
                 f->res_delivered, f->res_lost, f->res_detail);
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(f->t, &st);
    assert_int_equal(st.heartbeats_sent, 1);
    assert_int_equal(st.heartbeats_refused, 1);
    assert_int_equal(st.heartbeats_delivered, 0);
    assert_int_equal(st.heartbeats_failed, 0);
    assert_int_equal(f->res_delivered + f->res_lost, 0);
    assert_non_null(strstr(f->res_detail, "BAD_FRAME"));
    assert_true(synesis_tunnel_is_connected(f->t));
    syn_edge_stats es;
    syn_edge_get_stats(f->edge, &es);
    assert_int_equal(es.bad_frames, 1);
    assert_int_equal(es.heartbeats, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_heartbeats_arrive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sequence_continues_after_reconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interval_zero_sends_none, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsendable_heartbeat_does_not_tear_down, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_edge_rejects_malformed_frames, setup, teardown),
        cmocka_unit_test_setup_teardown(test_is_healthy_follows_latency, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delivered_matches_edge_across_outage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_heartbeat_refused_by_stop_sending, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

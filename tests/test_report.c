/* Edge reports, device side: the edge sends one frame (0x02, u32 length, JSON, FIN) on a
 * unidirectional stream of its own (syn_edge_send_report); the tunnel grants the credit, reads
 * heartbeat_refused reports, and ignores anything else, bounded. */
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

typedef struct fixture {
    struct ev_loop *loop;
    syn_edge *edge;
    synesis_tunnel *t;
    synesis_tunnel_config cfg;
    int delivered, refused, lost;
    uint64_t last_sequence;
    char last_detail[256];
    int warns;    /* "edge report ... ignored" warnings */
    int unknown;  /* reports of an unknown kind */
    int hb_warns; /* "refused by the edge" warnings */
} fixture;

static const char *pki;

static void tlog(synesis_log_level level, const char *msg, void *ud) {
    fixture *f = ud;
    if (level == SYNESIS_LOG_WARN && strstr(msg, "edge report") && strstr(msg, "ignored"))
        f->warns++;
    if (strstr(msg, "of unknown kind"))
        f->unknown++;
    if (level == SYNESIS_LOG_WARN && strstr(msg, "refused by the edge"))
        f->hb_warns++;
    if (getenv("SYNESIS_TEST_LOG"))
        fprintf(stderr, "[%d] %s\n", (int)level, msg);
}

static void on_result(synesis_tunnel *t, const synesis_heartbeat_info *info, void *ud) {
    (void)t;
    fixture *f = ud;
    if (info->status == 0) {
        f->delivered++;
        return;
    }
    if (info->status == SYNESIS_ERR_CONNECTION_LOST) {
        f->lost++;
        return;
    }
    assert_int_equal(info->status, SYNESIS_ERR_HEARTBEAT_REFUSED);
    f->refused++;
    f->last_sequence = info->sequence;
    snprintf(f->last_detail, sizeof(f->last_detail), "%s", info->detail);
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof(*f));
    f->loop = ev_loop_new(EVFLAG_AUTO);
    pki = syn_test_pki_shared("rep-1");
    f->edge = syn_test_edge(f->loop, pki, 5.0);
    syn_test_tunnel_config(&f->cfg, pki, syn_edge_port(f->edge));
    f->cfg.heartbeat_interval = 60; /* one, right after Connected */
    f->cfg.log = tlog;
    f->cfg.log_user_data = f;
    f->cfg.log_level = SYNESIS_LOG_DEBUG;
    synesis_tunnel_callbacks cb = {.struct_size = sizeof(synesis_tunnel_callbacks),
                                   .on_heartbeat_result = on_result};
    f->t = syn_test_tunnel_connected(f->loop, &f->cfg, &cb, f, 5);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    syn_test_finish(f->loop, f->t, f->edge);
    free(f);
    return 0;
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

static void send_report(fixture *f, const uint8_t *data, size_t len) {
    assert_int_equal(syn_edge_send_report(f->edge, "rep-1", data, len), 1);
}

static void send_json(fixture *f, const char *json) {
    uint8_t buf[SYN_FRAME_HEADER + SYN_REPORT_MAX];
    size_t n = frame(buf, SYN_MSG_REPORT, (uint32_t)strlen(json), json);
    send_report(f, buf, n);
}

typedef struct counter_wait {
    int *counter;
    int want;
} counter_wait;

static int counter_reached(void *ud) {
    counter_wait *w = ud;
    return *w->counter >= w->want;
}

static void wait_counter(fixture *f, int *counter, int want) {
    counter_wait w = {counter, want};
    if (!syn_test_run_until(f->loop, counter_reached, &w, 5))
        fail_msg("counter at %d, expected %d", *counter, want);
}

static synesis_tunnel_stats stats(fixture *f) {
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(f->t, &st);
    return st;
}

/* A refusal judged after the whole heartbeat arrived (the stream already acknowledged): found by
 * its stream id, moved from delivered to refused, reported with its sequence and the reason. */
static void test_report_refuses_delivered_heartbeat(void **state) {
    fixture *f = *state;
    wait_counter(f, &f->delivered, 1);
    assert_int_equal(stats(f).heartbeats_delivered, 1);
    /* The first client-initiated unidirectional stream of the connection is 2. */
    send_json(f, "{\"kind\":\"heartbeat_refused\",\"stream_id\":2,\"error\":16,"
                 "\"reason\":\"vitals.cpu_percent out of range\"}");
    wait_counter(f, &f->refused, 1);
    assert_int_equal(f->last_sequence, 0);
    assert_non_null(strstr(f->last_detail, "vitals.cpu_percent out of range"));
    synesis_tunnel_stats st = stats(f);
    assert_int_equal(st.heartbeats_refused, 1);
    assert_int_equal(st.heartbeats_delivered, 0);
    assert_int_equal(st.heartbeats_failed, 0);
    assert_int_equal(st.heartbeats_sent, 1);
    assert_int_equal(f->hb_warns, 1); /* logged at WARN with the reason */
    /* With a sequence the edge could read (one we never sent, say from before a restart): counted
     * and reported with that sequence. */
    send_json(f, "{\"kind\":\"heartbeat_refused\",\"stream_id\":6,\"sequence\":4242,\"error\":16,"
                 "\"reason\":\"stale\"}");
    wait_counter(f, &f->refused, 2);
    assert_int_equal(f->last_sequence, 4242);
    assert_int_equal(stats(f).heartbeats_refused, 2);
    assert_true(synesis_tunnel_is_connected(f->t));
}

/* Everything that is not a well-formed report is ignored (logged), the connection stays up, and
 * a good report afterwards is still read. */
static void test_malformed_reports_ignored(void **state) {
    fixture *f = *state;
    wait_counter(f, &f->delivered, 1);
    uint8_t buf[2 * SYN_REPORT_MAX];
    size_t n;

    /* An unknown kind: ignored quietly (forward compatible). */
    send_json(f, "{\"kind\":\"maintenance_window\",\"at\":1700000000000}");
    wait_counter(f, &f->unknown, 1);
    assert_int_equal(f->warns, 0);

    int w = 0;
    /* A type other than 0x02: STOP_SENDING, ignored. */
    n = frame(buf, 0x03, 2, "{}");
    send_report(f, buf, n);
    wait_counter(f, &f->warns, ++w);
    /* A declared length over SYN_REPORT_MAX. */
    n = frame(buf, SYN_MSG_REPORT, SYN_REPORT_MAX + 1, NULL);
    send_report(f, buf, n);
    wait_counter(f, &f->warns, ++w);
    /* More bytes than 5 + SYN_REPORT_MAX on the stream. */
    n = frame(buf, SYN_MSG_REPORT, 2, NULL);
    memset(buf + n, ' ', SYN_REPORT_MAX + 10);
    n += SYN_REPORT_MAX + 10;
    send_report(f, buf, n);
    wait_counter(f, &f->warns, ++w);
    /* Truncated: FIN before the declared length. */
    n = frame(buf, SYN_MSG_REPORT, 100, "{\"kind\":\"heartbeat_refused\"}");
    send_report(f, buf, n);
    wait_counter(f, &f->warns, ++w);
    /* Truncated header. */
    send_report(f, (const uint8_t *)"\x02\x00", 2);
    wait_counter(f, &f->warns, ++w);
    /* Garbage JSON. */
    send_json(f, "{\"kind\":\"heartbeat_refused\",\"stream_id\":2,");
    wait_counter(f, &f->warns, ++w);
    /* Not an object, and no kind. */
    send_json(f, "[1,2,3]");
    wait_counter(f, &f->warns, ++w);
    send_json(f, "{\"stream_id\":2}");
    wait_counter(f, &f->warns, ++w);
    /* heartbeat_refused without a stream id. */
    send_json(f, "{\"kind\":\"heartbeat_refused\",\"reason\":\"x\"}");
    wait_counter(f, &f->warns, ++w);

    synesis_tunnel_stats st = stats(f);
    assert_int_equal(st.heartbeats_refused, 0);
    assert_int_equal(st.heartbeats_delivered, 1);
    assert_int_equal(f->refused, 0);
    assert_true(synesis_tunnel_is_connected(f->t));

    /* A good one is still read. */
    send_json(f, "{\"kind\":\"heartbeat_refused\",\"stream_id\":2,\"sequence\":0,\"error\":16,"
                 "\"reason\":\"bad\"}");
    wait_counter(f, &f->refused, 1);
    assert_int_equal(f->last_sequence, 0);
    assert_int_equal(stats(f).heartbeats_refused, 1);
}

/* More reports in a row than the 8 streams the device grants at once: each closed stream returns
 * its credit, so all of them arrive. */
static void test_many_reports_return_credit(void **state) {
    fixture *f = *state;
    const int count = 3 * SYN_DEVICE_PEER_UNI_STREAMS + 1;
    for (int i = 0; i < count; i++) {
        if (i && i % SYN_DEVICE_PEER_UNI_STREAMS == 0) /* within the edge's queue bound */
            wait_counter(f, &f->refused, i);
        char json[160];
        snprintf(json, sizeof(json),
                 "{\"kind\":\"heartbeat_refused\",\"stream_id\":%d,\"sequence\":%d,\"error\":16,"
                 "\"reason\":\"r%d\"}",
                 1000 + 4 * i, 1000 + i, i);
        send_json(f, json);
    }
    wait_counter(f, &f->refused, count);
    assert_int_equal(stats(f).heartbeats_refused, (uint64_t)count);
    assert_int_equal(f->warns, 0);
    assert_true(synesis_tunnel_is_connected(f->t));
}

/* A device that sends refusable heartbeats faster than it returns report-stream credit: the
 * edge's queue of waiting reports stays bounded; the extra ones are dropped and counted. */
static void test_report_queue_bounded(void **state) {
    fixture *f = *state;
    const int count = SYN_EDGE_MAX_QUEUED_REPORTS + 10;
    int queued = 0, refused_at_once = 0;
    for (int i = 0; i < count; i++) {
        char json[160];
        snprintf(json, sizeof(json),
                 "{\"kind\":\"heartbeat_refused\",\"stream_id\":%d,\"sequence\":%d,\"error\":16,"
                 "\"reason\":\"q%d\"}",
                 2000 + 4 * i, 2000 + i, i);
        uint8_t buf[SYN_FRAME_HEADER + SYN_REPORT_MAX];
        size_t n = frame(buf, SYN_MSG_REPORT, (uint32_t)strlen(json), json);
        int rv = syn_edge_send_report(f->edge, "rep-1", buf, n);
        if (rv == 1)
            queued++;
        else if (rv == SYNESIS_ERR_WOULD_BLOCK)
            refused_at_once++;
        else
            fail_msg("syn_edge_send_report: %d", rv);
    }
    assert_int_equal(queued, SYN_EDGE_MAX_QUEUED_REPORTS);
    assert_int_equal(refused_at_once, 10);
    syn_edge_stats es;
    syn_edge_get_stats(f->edge, &es);
    assert_int_equal(es.reports_dropped, 10);
    /* The queued ones still arrive. */
    wait_counter(f, &f->refused, SYN_EDGE_MAX_QUEUED_REPORTS);
    assert_true(synesis_tunnel_is_connected(f->t));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_report_refuses_delivered_heartbeat, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_reports_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_reports_return_credit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_report_queue_bounded, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

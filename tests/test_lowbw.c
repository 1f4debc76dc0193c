/*
 * The low-bandwidth profile and idle traffic that does not waste, against the reference edge on
 * UDP loopback with intervals scaled down:
 *  - synesis_tunnel_config_low_bandwidth() sets what its header documents, and only what fits
 *    a config of an older header;
 *  - heartbeat_changed_vitals: every heartbeat after the first of a connection carries only the
 *    vitals that changed since the last one acknowledged, the edge accepts each of them, and
 *    they are smaller;
 *  - no keep-alive PING of the device's own in an interval where a heartbeat went out.
 * Counts never depend on speed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "tunnel_int.h"

#define MAX_HB 256

typedef struct fixture {
    struct ev_loop *loop;
    syn_edge *edge;
    synesis_tunnel *t;
    synesis_tunnel_config cfg;
    int counter;
    size_t sizes[MAX_HB];
    int nsent, delivered, refused;
    int recording, pings_tx, hb_tx;
} fixture;

static int setup(void **state) {
    *state = calloc(1, sizeof(fixture));
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    if (f->loop)
        syn_test_finish(f->loop, f->t, f->edge);
    free(f);
    return 0;
}

static void test_profile_sets_what_it_documents(void **state) {
    (void)state;
    synesis_tunnel_config c, d;
    synesis_tunnel_config_init(&c);
    synesis_tunnel_config_init(&d);
    assert_int_equal(c.heartbeat_changed_vitals, 0); /* off by default */
    assert_int_equal(synesis_tunnel_config_low_bandwidth(&c), 0);
    assert_true(c.heartbeat_interval == 600.0);
    assert_int_equal(c.heartbeat_changed_vitals, 1);
    assert_true(c.keep_alive_interval == SYNESIS_LOW_BANDWIDTH_KEEP_ALIVE);
    assert_true(c.idle_timeout == SYNESIS_LOW_BANDWIDTH_IDLE_TIMEOUT);
    /* the keep-alive refreshes the NAT binding well within the idle timeout */
    assert_true(c.keep_alive_interval * 2 < c.idle_timeout);
    /* nothing else changed */
    c.heartbeat_interval = d.heartbeat_interval;
    c.heartbeat_changed_vitals = d.heartbeat_changed_vitals;
    c.keep_alive_interval = d.keep_alive_interval;
    c.idle_timeout = d.idle_timeout;
    assert_memory_equal(&c, &d, sizeof(c));

    /* A config of an older header (without heartbeat_changed_vitals): what it has. */
    synesis_tunnel_config_init(&c);
    c.struct_size = offsetof(synesis_tunnel_config, heartbeat_changed_vitals);
    c.heartbeat_changed_vitals = 77; /* beyond the caller's struct: never written */
    assert_int_equal(synesis_tunnel_config_low_bandwidth(&c), 0);
    assert_true(c.heartbeat_interval == 600.0);
    assert_true(c.keep_alive_interval == SYNESIS_LOW_BANDWIDTH_KEEP_ALIVE);
    assert_int_equal(c.heartbeat_changed_vitals, 77);

    assert_int_equal(synesis_tunnel_config_low_bandwidth(NULL), SYNESIS_ERR_INVALID_ARGUMENT);
    c.struct_size = 0;
    assert_int_equal(synesis_tunnel_config_low_bandwidth(&c), SYNESIS_ERR_INVALID_ARGUMENT);
}

static void on_vitals(synesis_tunnel *t, synesis_vitals *v, void *ud) {
    (void)t;
    fixture *f = ud;
    synesis_vitals_add_string(v, "fixed", "the same every time");
    synesis_vitals_add_number(v, "counter", f->counter++);
}

static void on_hb(synesis_tunnel *t, const synesis_heartbeat_info *info, void *ud) {
    (void)t;
    fixture *f = ud;
    if (info->status == 0 && f->nsent < MAX_HB)
        f->sizes[f->nsent++] = info->size;
}

static void on_hb_result(synesis_tunnel *t, const synesis_heartbeat_info *info, void *ud) {
    (void)t;
    fixture *f = ud;
    if (info->status == 0)
        f->delivered++;
    else
        f->refused++;
}

static int five_delivered(void *ud) { return ((fixture *)ud)->delivered >= 5; }

static void start(fixture *f, const syn_edge_config *ec,
                  void (*vitals)(synesis_tunnel *, synesis_vitals *, void *), synesis_log_fn log) {
    f->loop = ev_loop_new(EVFLAG_AUTO);
    const char *pki = syn_test_pki_shared("lowbw-1");
    syn_edge_config def;
    if (!ec) {
        syn_test_edge_config(&def, pki);
        ec = &def;
    }
    f->edge = syn_test_edge_start(f->loop, ec);
    syn_test_tunnel_config(&f->cfg, pki, syn_edge_port(f->edge));
    if (vitals) {
        f->cfg.heartbeat_interval = 0.1;
        f->cfg.heartbeat_changed_vitals = 1;
    }
    if (log) {
        f->cfg.keep_alive_interval = 0.3;
        f->cfg.heartbeat_interval = 0.2; /* a heartbeat in every keep-alive interval */
        f->cfg.idle_timeout = 2.0;
        f->cfg.log = log;
        f->cfg.log_user_data = f;
        f->cfg.log_level = SYNESIS_LOG_TRACE;
    }
    synesis_tunnel_callbacks cb = {.struct_size = sizeof(synesis_tunnel_callbacks),
                                   .on_vitals = vitals,
                                   .on_heartbeat = on_hb,
                                   .on_heartbeat_result = on_hb_result};
    f->t = syn_test_tunnel_connected(f->loop, &f->cfg, &cb, f, 5.0);
}

static void test_changed_vitals_only(void **state) {
    fixture *f = *state;
    start(f, NULL, on_vitals, NULL);
    assert_true(syn_test_run_until(f->loop, five_delivered, f, 10));
    assert_int_equal(f->refused, 0);
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(f->t, &st);
    assert_int_equal(st.heartbeats_refused, 0);
    assert_int_equal(st.heartbeats_failed, 0);
    /* The edge took every one as a heartbeat. */
    syn_edge_device d;
    assert_int_equal(syn_edge_device_info(f->edge, "lowbw-1", &d), 0);
    assert_true(d.heartbeats >= 5);
    syn_edge_stats es;
    syn_edge_get_stats(f->edge, &es);
    assert_int_equal(es.bad_frames, 0);
    /* The last one: the counter (changed), not the fixed vital nor the memory total (the same as
     * in the one before). */
    cJSON *o = cJSON_Parse(d.last_json);
    assert_non_null(o);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "vitals");
    assert_true(cJSON_IsObject(v));
    assert_non_null(cJSON_GetObjectItemCaseSensitive(v, "counter"));
    assert_null(cJSON_GetObjectItemCaseSensitive(v, "fixed"));
    assert_null(cJSON_GetObjectItemCaseSensitive(v, "mem_total_kb"));
    assert_null(cJSON_GetObjectItemCaseSensitive(v, "disk_total_kb"));
    /* nor the keep-alive, which the edge acknowledged in an earlier heartbeat */
    assert_null(cJSON_GetObjectItemCaseSensitive(o, "keep_alive_ms"));
    cJSON_Delete(o);
    /* The first one of the connection carried every vital: the later ones are smaller. */
    assert_true(f->nsent >= 5);
    for (int i = 2; i < f->nsent; i++)
        assert_true(f->sizes[i] + 20 < f->sizes[0]);
}

/* ngtcp2's trace, forwarded at TRACE: the device's PING frames and its heartbeat streams. */
static void on_log(synesis_log_level level, const char *msg, void *ud) {
    (void)level;
    fixture *f = ud;
    if (!f->recording || !strstr(msg, " frm tx "))
        return;
    if (strstr(msg, " PING"))
        f->pings_tx++;
    if (strstr(msg, " STREAM") && strstr(msg, "fin=1"))
        f->hb_tx++;
}

/* An edge that does not PING: a heartbeat goes out in every keep-alive interval, so the
 * device's own keep-alive PING never goes (ngtcp2 arms it from the last ack-eliciting packet
 * sent or received; a PING with an ACK-only packet is ngtcp2's own, bounded below). */
static void test_no_keep_alive_ping_with_heartbeats(void **state) {
    fixture *f = *state;
    const char *pki = syn_test_pki_shared("lowbw-1");
    syn_edge_config ec;
    syn_test_edge_config(&ec, pki);
    ec.ping_devices = 0;
    start(f, &ec, NULL, on_log);
    syn_test_run_for(f->loop, 0.2);
    syn_tunnel_wakes a, b;
    syn_tunnel_get_wakes(f->t, &a);
    f->recording = 1;
    syn_test_run_for(f->loop, 3.0); /* 10 keep-alive intervals, 15 heartbeats */
    f->recording = 0;
    syn_tunnel_get_wakes(f->t, &b);
    print_message("heartbeats %d, PINGs %d, keep-alive expiries that sent %llu\n", f->hb_tx,
                  f->pings_tx, (unsigned long long)(b.qc.expiry_send - a.qc.expiry_send));
    assert_true(f->hb_tx >= 10);
    assert_true(synesis_tunnel_is_connected(f->t));
    /* No keep-alive timer sent anything (one allowed: a spurious probe on a loaded machine). */
    assert_true(b.qc.expiry_send - a.qc.expiry_send <= 1);
}

/* A keep-alive longer than the edge's idle timeout (the profile's 100 s against an edge of 60 s,
 * here 5 s against 1 s): the device keeps the connection alive at nine tenths of the edge's
 * timeout instead of losing it between two PINGs, and tells the edge that keep-alive. */
static void test_keep_alive_within_the_edges_idle_timeout(void **state) {
    fixture *f = *state;
    const char *pki = syn_test_pki_shared("lowbw-1");
    syn_edge_config ec;
    syn_test_edge_config(&ec, pki);
    ec.idle_timeout = 1.0;
    f->loop = ev_loop_new(EVFLAG_AUTO);
    f->edge = syn_test_edge_start(f->loop, &ec);
    syn_test_tunnel_config(&f->cfg, pki, syn_edge_port(f->edge));
    f->cfg.keep_alive_interval = 5.0;
    f->cfg.idle_timeout = 10.0;
    f->cfg.heartbeat_interval = 10.0; /* one, right after Connected */
    synesis_tunnel_callbacks cb = {.struct_size = sizeof(synesis_tunnel_callbacks),
                                   .on_heartbeat_result = on_hb_result};
    f->t = syn_test_tunnel_connected(f->loop, &f->cfg, &cb, f, 5.0);
    syn_test_run_for(f->loop, 3.0);
    assert_true(synesis_tunnel_is_connected(f->t));
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(f->t, &st);
    assert_int_equal(st.connections, 1); /* never idled out */
    syn_edge_device d;
    assert_int_equal(syn_edge_device_info(f->edge, "lowbw-1", &d), 0);
    cJSON *o = cJSON_Parse(d.last_json);
    assert_non_null(o);
    const cJSON *ka = cJSON_GetObjectItemCaseSensitive(o, "keep_alive_ms");
    assert_true(cJSON_IsNumber(ka));
    assert_true(ka->valuedouble > 0 && ka->valuedouble <= 900);
    cJSON_Delete(o);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_profile_sets_what_it_documents),
        cmocka_unit_test_setup_teardown(test_changed_vitals_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_keep_alive_ping_with_heartbeats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keep_alive_within_the_edges_idle_timeout, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

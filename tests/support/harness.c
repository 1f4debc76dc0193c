/* Shared helpers for the integration tests. */
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *syn_test_mkdtemp(const char *prefix) {
    const char *base = getenv("SYNESIS_TEST_TMP");
    char tmpl[512];
    snprintf(tmpl, sizeof(tmpl), "%s/%s-XXXXXX", base && *base ? base : "/tmp", prefix);
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    /* Lives for the test process (a static pool: nothing to free, nothing for LeakSanitizer). */
    static char pool[64][512];
    static int used;
    assert_true(used < 64);
    char *copy = pool[used++];
    snprintf(copy, sizeof(pool[0]), "%s", d);
    return copy;
}

const char *syn_test_path(const char *dir, const char *name) {
    static char bufs[8][512];
    static int i;
    char *b = bufs[i++ % 8];
    snprintf(b, sizeof(bufs[0]), "%s/%s", dir, name);
    return b;
}

const char *syn_test_pki(const char *device_id) {
    const char *dir = syn_test_mkdtemp("pki");
    char detail[512];
    int rv = synesis_identity_create_test_pki(dir, device_id, detail, sizeof(detail));
    if (rv != 0)
        fail_msg("test PKI: %s: %s", synesis_error_name(rv), detail);
    return dir;
}

syn_edge *syn_test_edge(struct ev_loop *loop, const char *dir, double idle) {
    syn_edge_config ec;
    syn_edge_config_init(&ec);
    ec.listen = "127.0.0.1:0";
    ec.cert_file = syn_test_path(dir, "edge.pem");
    ec.key_file = syn_test_path(dir, "edge.key");
    ec.ca_file = syn_test_path(dir, "ca.pem");
    ec.idle_timeout = idle;
    syn_edge *e = NULL;
    char detail[512];
    int rv = syn_edge_new(&e, loop, &ec, detail);
    if (rv != 0)
        fail_msg("edge: %s: %s", synesis_error_name(rv), detail);
    rv = syn_edge_start(e, detail);
    if (rv != 0)
        fail_msg("edge start: %s: %s", synesis_error_name(rv), detail);
    return e;
}

void syn_test_tunnel_config(synesis_tunnel_config *cfg, const char *dir, uint16_t port) {
    static char url[8][64];
    static int i;
    char *u = url[i++ % 8];
    snprintf(u, sizeof(url[0]), "quic://127.0.0.1:%u", port);
    synesis_tunnel_config_init(cfg);
    cfg->cloud_url = u;
    cfg->server_name = "localhost";
    cfg->cert_path = syn_test_path(dir, "device.pem");
    cfg->key_path = syn_test_path(dir, "device.key");
    cfg->ca_path = syn_test_path(dir, "ca.pem");
    cfg->use_system_trust = 0;
    cfg->handshake_timeout = 3.0;
    cfg->idle_timeout = 5.0;
    cfg->keep_alive_interval = 1.0;
    cfg->heartbeat_interval = 0;
    cfg->reconnect_initial_delay = 0.02;
    cfg->reconnect_max_delay = 0.2;
}

typedef struct until_ctx {
    int (*pred)(void *);
    void *ud;
    int done;
} until_ctx;

static void check_cb(struct ev_loop *loop, ev_check *w, int revents) {
    (void)revents;
    until_ctx *c = w->data;
    if (c->pred && c->pred(c->ud)) {
        c->done = 1;
        ev_break(loop, EVBREAK_ONE);
    }
}

static void deadline_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ONE);
}

int syn_test_run_until(struct ev_loop *loop, int (*pred)(void *), void *ud, double timeout) {
    if (pred && pred(ud))
        return 1;
    until_ctx c = {pred, ud, 0};
    ev_check chk;
    ev_check_init(&chk, check_cb);
    chk.data = &c;
    ev_check_start(loop, &chk);
    ev_timer dl;
    ev_timer_init(&dl, deadline_cb, timeout, 0.);
    ev_timer_start(loop, &dl);
    ev_now_update(loop);
    ev_run(loop, 0);
    ev_check_stop(loop, &chk);
    ev_timer_stop(loop, &dl);
    return pred ? pred(ud) : 1;
}

void syn_test_run_for(struct ev_loop *loop, double seconds) {
    syn_test_run_until(loop, NULL, NULL, seconds);
}

void syn_test_record_state(synesis_tunnel *t, const synesis_tunnel_state *old_state,
                           const synesis_tunnel_state *new_state, void *user_data) {
    (void)t;
    (void)old_state;
    syn_test_states *s = user_data;
    if (s->n < 64) {
        s->kinds[s->n] = new_state->kind;
        s->errors[s->n] = new_state->error;
        s->attempts[s->n] = new_state->attempt;
        s->n++;
    }
}

int syn_test_find_state(const syn_test_states *s, synesis_state_kind kind, int from) {
    for (int i = from; i < s->n; i++)
        if (s->kinds[i] == kind)
            return i;
    return -1;
}

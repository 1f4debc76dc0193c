/* A path whose MTU is below our default payload cap (a VPN, an LTE modem): the tunnel must still
 * connect and carry data, with path MTU discovery's too-large probes simply lost. Run by ctest
 * inside a private network namespace whose loopback has MTU 1400 (tests/netns_run.sh). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "synesis/request.h"

typedef struct res {
    int calls, status;
    size_t len;
    int match;
    const uint8_t *expect;
} res;

static void on_resp(synesis_tunnel *t, synesis_request *req, const synesis_response *r, void *ud) {
    (void)t;
    (void)req;
    res *x = ud;
    x->calls++;
    x->status = r->status;
    x->len = r->len;
    x->match = r->status == 0 && memcmp(r->data, x->expect, r->len) == 0;
}

static int done(void *ud) { return ((res *)ud)->calls > 0; }

static void test_small_mtu_path(void **state) {
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    const char *pki = syn_test_pki("mtu-1");
    syn_edge *e = syn_test_edge(loop, pki, 10);
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, pki, syn_edge_port(e));
    cfg.idle_timeout = 10; /* defaults otherwise: payload cap 1452, PMTU discovery on */
    synesis_tunnel *t = syn_test_tunnel_connected(loop, &cfg, NULL, NULL, 5);
    size_t n = 256 * 1024;
    uint8_t *body = malloc(n);
    for (size_t i = 0; i < n; i++)
        body[i] = (uint8_t)(i * 7 + 1);
    body[0] = 'x';
    res r = {.expect = body};
    assert_int_equal(synesis_tunnel_request(t, body, n, NULL, on_resp, &r, NULL), 0);
    assert_true(syn_test_run_until(loop, done, &r, 20));
    assert_int_equal(r.status, 0);
    assert_int_equal(r.len, n);
    assert_true(r.match);
    assert_true(synesis_tunnel_is_connected(t));
    free(body);
    synesis_tunnel_free(t);
    syn_test_run_for(loop, 0.05);
    syn_edge_free(e);
    assert_int_equal(ev_run(loop, EVRUN_NOWAIT), 0);
    ev_loop_destroy(loop);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_small_mtu_path)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}

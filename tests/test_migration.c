/* Connection migration (synesis_tunnel_network_changed, config.watch_network) in network
 * namespaces. The device (this process's namespace, private: tests/netns_run.sh) has two
 * interfaces, veth pairs a0 (10.1.0.2) and b0 (10.2.0.2), to the edge's namespace, where the edge
 * listens on 10.9.0.1; the route to the edge prefers a0. While requests and a 4 MB echoed stream
 * are in flight, a0 loses its address and goes down: the route moves to b0 with another source
 * address, and the connection must follow it without a reconnect: every byte arrives once, in
 * order, and the state stays Connected. A new path the edge cannot answer on (black-holed) falls
 * back to a reconnect. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "flow.h"
#include "harness.h"
#include "synesis/request.h"
#include "synesis/stream.h"
#include "tunnel_test.h"

static int dev_ns = -1;  /* the device's namespace (this process's own) */
static int edge_ns = -1; /* the edge's, created per test */

static void sh(const char *fmt, ...) SYNESIS_PRINTF(1, 2);
static void sh(const char *fmt, ...) {
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int rv = system(cmd);
    if (rv != 0)
        fail_msg("'%s' failed (%d)", cmd, rv);
}

static void enter_ns(int fd) {
    if (setns(fd, CLONE_NEWNET) != 0)
        fail_msg("setns: %s", strerror(errno));
}

/* The two namespaces and the veth pairs between them (dev_ns is inherited by ip as fd N). */
static int setup(void **state) {
    (void)state;
    if (dev_ns < 0)
        dev_ns = open("/proc/self/ns/net", O_RDONLY);
    if (dev_ns < 0 || unshare(CLONE_NEWNET) != 0)
        fail_msg("a namespace for the edge: %s", strerror(errno));
    edge_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    sh("ip link set lo up && ip addr add 10.9.0.1/32 dev lo && "
       "ip link add a1 type veth peer name a0 netns /proc/self/fd/%d && "
       "ip link add b1 type veth peer name b0 netns /proc/self/fd/%d && "
       "ip addr add 10.1.0.1/24 dev a1 && ip link set a1 up && "
       "ip addr add 10.2.0.1/24 dev b1 && ip link set b1 up",
       dev_ns, dev_ns);
    enter_ns(dev_ns);
    sh("ip addr add 10.1.0.2/24 dev a0 && ip link set a0 up && "
       "ip addr add 10.2.0.2/24 dev b0 && ip link set b0 up && "
       "ip route add 10.9.0.1/32 via 10.1.0.1 dev a0 metric 10 && "
       "ip route add 10.9.0.1/32 via 10.2.0.1 dev b0 metric 20");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    close(edge_ns); /* the namespace goes with the last socket in it, the veth pairs with it */
    edge_ns = -1;
    /* At once, even when a failed test left the edge's socket (and so its namespace) alive. */
    (void)system("ip link del a0 2>/dev/null; ip link del b0 2>/dev/null");
    return 0;
}

/* The edge's path events (JSON lines), concatenated. */
static char edge_paths[8192];
static void edge_log(void *ud, const char *line) {
    (void)ud;
    if (strstr(line, "\"path_") && strlen(edge_paths) + strlen(line) + 2 < sizeof(edge_paths)) {
        strcat(edge_paths, line);
        strcat(edge_paths, "\n");
    }
}

/* An edge on listen, its socket made in the edge's namespace. */
static syn_edge *edge_start_on(struct ev_loop *loop, const char *pki, const char *listen) {
    syn_edge_config ec;
    syn_test_edge_config(&ec, pki);
    ec.listen = listen;
    ec.idle_timeout = 10;
    ec.log = edge_log;
    edge_paths[0] = 0;
    enter_ns(edge_ns);
    syn_edge *e = syn_test_edge_start(loop, &ec); /* its socket lives in the edge's namespace */
    enter_ns(dev_ns);
    return e;
}

static syn_edge *edge_start(struct ev_loop *loop, const char *pki) {
    return edge_start_on(loop, pki, "10.9.0.1:0");
}

static synesis_tunnel *tunnel_start(struct ev_loop *loop, const char *pki, syn_edge *e, int watch) {
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, pki, 0);
    char url[64];
    snprintf(url, sizeof(url), "quic://10.9.0.1:%u", syn_edge_port(e));
    cfg.cloud_url = url;
    cfg.watch_network = watch;
    cfg.idle_timeout = 10;
    synesis_tunnel *t = syn_test_tunnel_connected(loop, &cfg, NULL, NULL, 5);
    return t;
}

/* The device's address moves from a0 to b0: a0's address removed, the link down. */
static void move_address(void) { sh("ip addr del 10.1.0.2/24 dev a0 && ip link set a0 down"); }

static int migrated(void *ud) {
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats((synesis_tunnel *)ud, &st);
    return st.migrations + st.migrations_failed > 0;
}

static void move_while_busy(int watch) {
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    const char *pki = syn_test_pki(watch ? "mig-watch" : "mig-call");
    syn_edge *e = edge_start(loop, pki);
    synesis_tunnel *t = tunnel_start(loop, pki, e, watch);
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(t, &st);
    assert_true(strncmp(st.remote_address, "10.9.0.1:", 9) == 0);
    syn_test_states states = {0};
    assert_int_equal(synesis_tunnel_subscribe(t, syn_test_record_state, &states, NULL), 0);

    syn_test_flow f;
    syn_test_flow_start(t, &f);
    assert_true(syn_test_run_until(loop, syn_test_flow_quarter, &f, 10));
    assert_true(f.received < SYN_TEST_FLOW_BYTES);
    move_address();
    if (!watch) {
        assert_int_equal(synesis_tunnel_network_changed(t), 0);
        assert_int_equal(synesis_tunnel_network_changed(t), 0); /* idempotent */
    }
    for (int i = SYN_TEST_FLOW_NREQ / 2; i < SYN_TEST_FLOW_NREQ; i++)
        syn_test_flow_request(t, &f); /* requests made during the move */
    assert_true(syn_test_run_until(loop, migrated, t, 10));
    assert_true(syn_test_run_until(loop, syn_test_flow_done, &f, 30));
    syn_test_flow_check(&f);

    synesis_tunnel_get_stats(t, &st);
    assert_int_equal(st.migrations, 1);
    assert_int_equal(st.migrations_failed, 0);
    assert_int_equal(st.reconnects, 0);
    assert_int_equal(st.connections, 1);
    assert_true(st.last_migration_gap > 0 && st.last_migration_gap < 10);
    print_message("migration (%s): gap %.1f ms, %zu stream bytes and %d requests intact\n",
                  watch ? "netlink watcher" : "network_changed()", st.last_migration_gap * 1e3,
                  f.received, SYN_TEST_FLOW_NREQ);
    if (watch)
        assert_true(syn_migration_nl_events(t) > 0);
    assert_int_equal(states.n, 0); /* Connected throughout */
    assert_int_equal(synesis_tunnel_get_state(t, &(synesis_tunnel_state){0}), 0);
    assert_true(synesis_tunnel_is_connected(t));
    /* The edge saw its device move, and validated the new path. */
    syn_edge_stats es;
    syn_edge_get_stats(e, &es);
    assert_true(es.path_changes >= 1);
    assert_true(es.paths_validated >= 1);
    /* ... and logged it: from the old address to the new, then validated. */
    print_message("%s", edge_paths);
    assert_non_null(strstr(edge_paths, "\"event\":\"path_changed\",\"remote\":\"10.1.0.2:"));
    assert_non_null(strstr(edge_paths, "\"address\":\"10.2.0.2:"));
    assert_non_null(strstr(edge_paths, "\"event\":\"path_validated\""));
    assert_non_null(strstr(edge_paths, "\"result\":\"validated\""));
    /* A further call with nothing changed moves nothing. */
    assert_int_equal(synesis_tunnel_network_changed(t), 0);
    syn_test_run_for(loop, 0.2);
    synesis_tunnel_get_stats(t, &st);
    assert_int_equal(st.migrations + st.migrations_failed, 1);
    syn_test_finish(loop, t, e);
}

static void test_network_changed_call(void **state) {
    (void)state;
    move_while_busy(0);
}

static void test_netlink_watcher(void **state) {
    (void)state;
    move_while_busy(1);
}

/* The new path black-holes the edge's answers: the PATH_CHALLENGE is never answered, and the
 * tunnel falls back to a reconnect, which resumes once the path works. */
static void test_unvalidated_path_reconnects(void **state) {
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    const char *pki = syn_test_pki("mig-blackhole");
    syn_edge *e = edge_start(loop, pki);
    synesis_tunnel *t = tunnel_start(loop, pki, e, 0);
    syn_test_states states = {0};
    assert_int_equal(synesis_tunnel_subscribe(t, syn_test_record_state, &states, NULL), 0);
    syn_test_run_for(loop, 0.1); /* the edge's spare connection IDs and ticket arrive */
    enter_ns(edge_ns);
    sh("ip route add blackhole 10.2.0.2/32");
    enter_ns(dev_ns);
    move_address();
    assert_int_equal(synesis_tunnel_network_changed(t), 0);
    int ri = syn_test_wait_recorded(loop, &states, SYNESIS_STATE_RECONNECTING, 1, 0, 15);
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(t, &st);
    assert_int_equal(st.migrations, 0);
    assert_int_equal(st.migrations_failed, 1);
    enter_ns(edge_ns);
    sh("ip route del blackhole 10.2.0.2/32");
    enter_ns(dev_ns);
    syn_test_wait_recorded(loop, &states, SYNESIS_STATE_CONNECTED, 0, ri, 15);
    synesis_tunnel_get_stats(t, &st);
    assert_int_equal(st.reconnects, 1);
    assert_true(syn_tunnel_resume(t) && syn_tunnel_resume(t)->resumed >= 1);
    syn_test_result r = {0};
    syn_test_request(loop, t, "after", 5, NULL, &r, 5);
    assert_int_equal(r.status, 0);
    free(r.data);
    syn_test_finish(loop, t, e);
}

/* "edge.test": 10.9.0.1 first, then fd09::1 (an A and an AAAA record). */
static int resolve_both(const char *host, uint16_t port, struct sockaddr_storage *out,
                        unsigned int *lens, size_t max, void *ud) {
    (void)host;
    (void)ud;
    if (max < 2)
        return -1;
    memset(out, 0, 2 * sizeof(*out));
    struct sockaddr_in *in = (struct sockaddr_in *)&out[0];
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    inet_pton(AF_INET, "10.9.0.1", &in->sin_addr);
    lens[0] = sizeof(*in);
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&out[1];
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    inet_pton(AF_INET6, "fd09::1", &in6->sin6_addr);
    lens[1] = sizeof(*in6);
    return 2;
}

/* The new network has no route to the edge's IPv4 address, only to its IPv6 one: a connection
 * cannot change its server address, so the tunnel reconnects at once (to the IPv6 address)
 * rather than waiting for the idle timeout. */
static void test_other_ip_version_reconnects(void **state) {
    (void)state;
    enter_ns(edge_ns);
    sh("ip addr add fd09::1/128 dev lo && ip addr add fd02::1/64 dev b1 nodad");
    enter_ns(dev_ns);
    sh("ip addr add fd02::2/64 dev b0 nodad && ip route add fd09::1/128 via fd02::1 dev b0 && "
       "ip route del 10.9.0.1/32 via 10.2.0.1 dev b0");
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    const char *pki = syn_test_pki("mig-family");
    syn_edge *e4 = edge_start(loop, pki);
    char listen6[64];
    snprintf(listen6, sizeof(listen6), "[fd09::1]:%u", syn_edge_port(e4));
    syn_edge *e6 = edge_start_on(loop, pki, listen6);
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, pki, 0);
    char url[64];
    snprintf(url, sizeof(url), "quic://edge.test:%u", syn_edge_port(e4));
    cfg.cloud_url = url;
    cfg.resolve = resolve_both;
    cfg.idle_timeout = 30; /* a reconnect by idle timeout would come too late for the test */
    synesis_tunnel *t = syn_test_tunnel_connected(loop, &cfg, NULL, NULL, 5);
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(t, &st);
    assert_true(strncmp(st.remote_address, "10.9.0.1:", 9) == 0);
    syn_test_states states = {0};
    assert_int_equal(synesis_tunnel_subscribe(t, syn_test_record_state, &states, NULL), 0);
    move_address(); /* no IPv4 route to the edge is left */
    assert_int_equal(synesis_tunnel_network_changed(t), 0);
    int ri = syn_test_wait_recorded(loop, &states, SYNESIS_STATE_RECONNECTING, 1, 0, 10);
    syn_test_wait_recorded(loop, &states, SYNESIS_STATE_CONNECTED, 0, ri, 10);
    synesis_tunnel_get_stats(t, &st);
    assert_true(strncmp(st.remote_address, "[fd09::1]:", 10) == 0);
    assert_int_equal(st.migrations, 0);
    assert_int_equal(st.migrations_failed, 1);
    syn_test_result r = {0};
    syn_test_request(loop, t, "over six", 8, NULL, &r, 5);
    assert_int_equal(r.status, 0);
    free(r.data);
    synesis_tunnel_free(t);
    syn_test_run_for(loop, 0.05); /* the close goes out */
    syn_edge_free(e6);
    syn_test_finish(loop, NULL, e4);
}

/* Over TCP (transport TCP forced: the edge's TCP listener on 10.9.0.1): the link's address goes
 * (a0's removed). A link cannot migrate and the kernel does not reset it: on the network change
 * the tunnel reconnects at once, over TCP through b0, instead of waiting for the idle timeout. */
static char first_reconnect[SYNESIS_DETAIL_MAX];
static void on_state_detail(synesis_tunnel *t, const synesis_tunnel_state *o,
                            const synesis_tunnel_state *n, void *ud) {
    syn_test_record_state(t, o, n, ud);
    if (n->kind == SYNESIS_STATE_RECONNECTING && !first_reconnect[0])
        snprintf(first_reconnect, sizeof(first_reconnect), "%s", n->error_detail);
}

static void test_tcp_link_address_gone(void **state) {
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    const char *pki = syn_test_pki("mig-tcp");
    syn_edge *e = edge_start(loop, pki);
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, pki, 0);
    char url[64];
    snprintf(url, sizeof(url), "quic://10.9.0.1:%u", syn_edge_port(e));
    cfg.cloud_url = url;
    cfg.transport = SYNESIS_TRANSPORT_TCP;
    cfg.idle_timeout = 10;
    synesis_tunnel *t = syn_test_tunnel_connected(loop, &cfg, NULL, NULL, 5);
    synesis_tunnel_state s;
    assert_int_equal(synesis_tunnel_get_state(t, &s), 0);
    assert_int_equal(s.transport, SYNESIS_TRANSPORT_TCP);
    syn_test_states states = {0};
    first_reconnect[0] = 0;
    assert_int_equal(synesis_tunnel_subscribe(t, on_state_detail, &states, NULL), 0);

    move_address();
    assert_int_equal(synesis_tunnel_network_changed(t), 0);
    int r = syn_test_wait_recorded(loop, &states, SYNESIS_STATE_RECONNECTING, 1, 0, 15);
    /* Ended by the change, not by the idle timeout. */
    if (!strstr(first_reconnect, "10.1.0.2") || !strstr(first_reconnect, "gone"))
        fail_msg("reconnecting for: %s", first_reconnect);
    syn_test_wait_recorded(loop, &states, SYNESIS_STATE_CONNECTED, 0, r, 15);
    assert_int_equal(synesis_tunnel_get_state(t, &s), 0);
    assert_int_equal(s.transport, SYNESIS_TRANSPORT_TCP);
    syn_test_result res = {0};
    syn_test_request(loop, t, "via b0", 6, NULL, &res, 10);
    assert_int_equal(res.status, 0);
    free(res.data);
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(t, &st);
    assert_int_equal(st.reconnects, 1);
    assert_int_equal(st.migrations, 0);
    syn_test_finish(loop, t, e);
}

/* Not Connected: nothing to move, nothing happens. */
static void test_not_connected(void **state) {
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    const char *pki = syn_test_pki("mig-idle");
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, pki, 9);
    synesis_tunnel *t = syn_test_tunnel_new(loop, &cfg, NULL, NULL);
    assert_int_equal(synesis_tunnel_network_changed(t), 0);
    assert_int_equal(synesis_tunnel_network_changed(NULL), SYNESIS_ERR_INVALID_ARGUMENT);
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(t, &st);
    assert_int_equal(st.migrations + st.migrations_failed, 0);
    syn_test_finish(loop, t, NULL);
}

int main(void) {
    /* The device's namespace: a private one of this process (the edge's are made per test). */
    if (unshare(CLONE_NEWNET) != 0 || system("ip link set lo up") != 0) {
        printf("network namespaces (unshare CLONE_NEWNET, as root) or iproute2 not available: "
               "skipped\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_not_connected),
        cmocka_unit_test_setup_teardown(test_network_changed_call, setup, teardown),
        cmocka_unit_test_setup_teardown(test_netlink_watcher, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unvalidated_path_reconnects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_ip_version_reconnects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tcp_link_address_gone, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

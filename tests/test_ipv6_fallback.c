/*
 * IPv4 first, IPv6 as the fallback, end to end: a name (through the tunnel's resolver hook, the
 * way a DNS answer with A and AAAA records arrives) resolves to an IPv4 address where no edge
 * answers and to ::1 where the reference edge listens. The tunnel must try IPv4 first, move on to
 * IPv6 after the transport failure (ICMP refused at once, or a blackhole that lets the handshake
 * time out), reach Connected over IPv6, and say so in its statistics (remote_address,
 * address_fallbacks). And the other way round: the IPv6 address dead, the edge on IPv4. Skipped
 * with a message where the machine has no IPv6 loopback.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "synesis/request.h"

/* ---- the resolver hook: a fixed answer, in the order given ---- */

typedef struct answer {
    int n;
    const char *addrs[4];
} answer;

static int resolve_answer(const char *host, uint16_t port, struct sockaddr_storage *out,
                          unsigned int *lens, size_t max, void *ud) {
    (void)host;
    answer *a = ud;
    int n = 0;
    for (int i = 0; i < a->n && (size_t)n < max; i++, n++) {
        memset(&out[n], 0, sizeof(out[n]));
        struct sockaddr_in *in = (struct sockaddr_in *)&out[n];
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&out[n];
        if (inet_pton(AF_INET, a->addrs[i], &in->sin_addr) == 1) {
            in->sin_family = AF_INET;
            in->sin_port = htons(port);
            lens[n] = sizeof(*in);
        } else if (inet_pton(AF_INET6, a->addrs[i], &in6->sin6_addr) == 1) {
            in6->sin6_family = AF_INET6;
            in6->sin6_port = htons(port);
            lens[n] = sizeof(*in6);
        } else {
            return -1;
        }
    }
    return n;
}

/* ---- fixture ---- */

typedef struct fixture {
    struct ev_loop *loop;
    const char *pki;
    syn_edge *edge;
    char edge_log[64][512];
    int edge_log_n;
    syn_test_states states;
    answer ans;
} fixture;

static const char *shared_pki;
static char ipv6_missing[160]; /* why the IPv6 tests are skipped ("" when ::1 works) */

static void edge_log(void *ud, const char *line) {
    fixture *f = ud;
    if (f->edge_log_n < 64)
        snprintf(f->edge_log[f->edge_log_n++], sizeof(f->edge_log[0]), "%s", line);
}

/* Whether a UDP socket can be bound on [::1]; else the reason, in ipv6_missing. */
static int have_ipv6_loopback(void) {
    int fd = socket(AF_INET6, SOCK_DGRAM, 0);
    if (fd < 0) {
        snprintf(ipv6_missing, sizeof(ipv6_missing), "socket(AF_INET6): %s", strerror(errno));
        return 0;
    }
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    int ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    if (!ok)
        snprintf(ipv6_missing, sizeof(ipv6_missing), "bind([::1]:0): %s", strerror(errno));
    close(fd);
    return ok;
}

#define REQUIRE_IPV6()                                                                             \
    do {                                                                                           \
        if (ipv6_missing[0]) {                                                                     \
            print_message("skipped: no IPv6 on loopback (%s)\n", ipv6_missing);                    \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

static syn_edge *start_edge(fixture *f, const char *listen) {
    syn_edge_config ec;
    syn_test_edge_config(&ec, f->pki);
    ec.listen = listen;
    ec.idle_timeout = 5;
    ec.log = edge_log;
    ec.log_user_data = f;
    return syn_test_edge_start(f->loop, &ec);
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->loop = ev_loop_new(EVFLAG_AUTO);
    shared_pki = syn_test_pki_shared("v6-1");
    f->pki = shared_pki;
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    syn_edge_free(f->edge);
    assert_int_equal(ev_run(f->loop, EVRUN_NOWAIT), 0);
    ev_loop_destroy(f->loop);
    free(f);
    return 0;
}

/* A tunnel to "edge.test:port" whose name resolves to the fixture's answer. */
static synesis_tunnel *new_tunnel(fixture *f, uint16_t port, double handshake_timeout) {
    static char url[64];
    snprintf(url, sizeof(url), "quic://edge.test:%u", (unsigned)port);
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, f->pki, port);
    cfg.cloud_url = url;
    cfg.server_name = "localhost"; /* the test edge certificate's name */
    cfg.resolve = resolve_answer;
    cfg.resolve_user_data = &f->ans;
    cfg.handshake_timeout = handshake_timeout;
    synesis_tunnel *t = NULL;
    synesis_tunnel_callbacks cb = {.struct_size = sizeof(synesis_tunnel_callbacks),
                                   .on_state = syn_test_record_state};
    t = syn_test_tunnel_new(f->loop, &cfg, &cb, &f->states);
    return t;
}

static void expect_connected(fixture *f, synesis_tunnel *t, double timeout) {
    assert_true(syn_test_run_until(f->loop, syn_test_settled, &f->states, timeout));
    synesis_tunnel_state s;
    synesis_tunnel_get_state(t, &s);
    if (s.kind != SYNESIS_STATE_CONNECTED)
        fail_msg("%s: %s: %s", synesis_state_name(s.kind), synesis_error_name(s.error),
                 s.error_detail);
    /* Connecting -> Connected, never Failed in between: the fallback is inside one attempt. */
    assert_int_equal(f->states.n, 2);
    assert_int_equal(f->states.kinds[0], SYNESIS_STATE_CONNECTING);
    assert_int_equal(f->states.kinds[1], SYNESIS_STATE_CONNECTED);
}

/* A port free on 127.0.0.1 right now (nothing listens there: an Initial draws ICMP refused). */
static void assert_free_v4_port(uint16_t port) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = htons(port)};
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
        fail_msg("127.0.0.1:%u is in use (%s): cannot stage a dead IPv4 address", port,
                 strerror(errno));
    close(fd);
}

/* A socket on 127.0.0.1:port that swallows everything: no answer, no ICMP. */
static int blackhole_v4(uint16_t port) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = htons(port)};
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
        fail_msg("127.0.0.1:%u is in use (%s): cannot stage a blackholed IPv4 address", port,
                 strerror(errno));
    return fd;
}

static int drain(int fd) {
    char buf[2048];
    int n = 0;
    while (recv(fd, buf, sizeof(buf), 0) >= 0)
        n++;
    return n;
}

/* The edge saw the connection of device v6-1 come from an address starting with prefix. */
static int edge_saw_remote(fixture *f, const char *prefix) {
    char want[96];
    snprintf(want, sizeof(want), "\"remote\":\"%s", prefix);
    for (int i = 0; i < f->edge_log_n; i++)
        if (strstr(f->edge_log[i], "\"event\":\"connection\"") &&
            strstr(f->edge_log[i], "\"device_id\":\"v6-1\"") && strstr(f->edge_log[i], want))
            return 1;
    return 0;
}

static void expect_echo(fixture *f, synesis_tunnel *t) {
    syn_test_result res;
    syn_test_request(f->loop, t, "over v6?", 8, NULL, &res, 5);
    assert_int_equal(res.status, 0);
    assert_int_equal(res.len, 8);
    assert_memory_equal(res.data, "over v6?", 8);
    free(res.data);
}

static void expect_remote(synesis_tunnel *t, const char *want, uint64_t fallbacks) {
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(t, &st);
    assert_string_equal(st.remote_address, want);
    assert_int_equal(st.address_fallbacks, fallbacks);
    char json[2048];
    assert_true(synesis_tunnel_stats_json(t, json, sizeof(json)) < (int)sizeof(json));
    char frag[128];
    snprintf(frag, sizeof(frag), "\"remote_address\":\"%s\"", want);
    if (!strstr(json, frag))
        fail_msg("stats JSON without %s: %s", frag, json);
}

/* ---- tests ---- */

/* 127.0.0.1 refuses (ICMP port unreachable): the same attempt moves on to ::1 at once. */
static void test_ipv4_refused_then_ipv6(void **state) {
    REQUIRE_IPV6();
    fixture *f = *state;
    f->edge = start_edge(f, "[::1]:0");
    uint16_t port = syn_edge_port(f->edge);
    assert_free_v4_port(port);
    f->ans = (answer){
        .n = 2, .addrs = {"127.0.0.1", "::1"}
    };
    synesis_tunnel *t = new_tunnel(f, port, 3);
    assert_int_equal(synesis_tunnel_connect(t), 0);
    expect_connected(f, t, 5);
    char want[64];
    snprintf(want, sizeof(want), "[::1]:%u", (unsigned)port);
    expect_remote(t, want, 1);
    /* IPv4 was tried first, and why it was left is kept. */
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(t, &st);
    assert_int_equal(st.last_error, SYNESIS_ERR_SOCKET);
    assert_non_null(strstr(st.last_error_detail, "127.0.0.1"));
    assert_non_null(strstr(st.last_error_detail, "refused"));
    assert_true(edge_saw_remote(f, "[::1]"));
    expect_echo(f, t);

    /* An outage: every reconnection attempt goes through the same IPv4-first order, and the one
     * that finds the edge back connects over IPv6 again. */
    int mark = f->states.n;
    syn_edge_stop(f->edge, 1);
    syn_test_wait_recorded(f->loop, &f->states, SYNESIS_STATE_RECONNECTING, 0, mark, 5);
    char detail[256];
    assert_int_equal(syn_edge_start(f->edge, detail), 0);
    syn_test_wait_recorded(f->loop, &f->states, SYNESIS_STATE_CONNECTED, 0, mark, 5);
    synesis_tunnel_get_stats(t, &st);
    assert_string_equal(st.remote_address, want);
    assert_true(st.address_fallbacks >= 2);
    assert_int_equal(st.reconnects, 1);
    expect_echo(f, t);
    synesis_tunnel_free(t);
    syn_test_run_for(f->loop, 0.05);
}

/* 127.0.0.1 swallows everything (no ICMP): the IPv4 handshake times out, then IPv6 connects. */
static void test_ipv4_blackholed_then_ipv6(void **state) {
    REQUIRE_IPV6();
    fixture *f = *state;
    f->edge = start_edge(f, "[::1]:0");
    uint16_t port = syn_edge_port(f->edge);
    int hole = blackhole_v4(port);
    f->ans = (answer){
        .n = 2, .addrs = {"127.0.0.1", "::1"}
    };
    synesis_tunnel *t = new_tunnel(f, port, 0.4);
    uint64_t t0 = syn_now_ns();
    assert_int_equal(synesis_tunnel_connect(t), 0);
    expect_connected(f, t, 5);
    /* The IPv4 attempt had its full handshake timeout before the fallback. */
    assert_true((double)(syn_now_ns() - t0) / 1e9 >= 0.4 - 0.01);
    assert_true(drain(hole) >= 1); /* its Initial(s) did reach 127.0.0.1 */
    close(hole);
    char want[64];
    snprintf(want, sizeof(want), "[::1]:%u", (unsigned)port);
    expect_remote(t, want, 1);
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(t, &st);
    assert_int_equal(st.last_error, SYNESIS_ERR_HANDSHAKE_TIMEOUT);
    assert_int_equal(st.connections, 1);
    assert_true(edge_saw_remote(f, "[::1]"));
    expect_echo(f, t);
    synesis_tunnel_free(t);
    syn_test_run_for(f->loop, 0.05);
}

/* The resolver lists ::1 first: IPv4 is still preferred (tried first), IPv6 is the fallback. */
static void test_ipv6_listed_first_ipv4_still_first(void **state) {
    REQUIRE_IPV6();
    fixture *f = *state;
    f->edge = start_edge(f, "[::1]:0");
    uint16_t port = syn_edge_port(f->edge);
    assert_free_v4_port(port);
    f->ans = (answer){
        .n = 2, .addrs = {"::1", "127.0.0.1"}
    };
    synesis_tunnel *t = new_tunnel(f, port, 3);
    assert_int_equal(synesis_tunnel_connect(t), 0);
    expect_connected(f, t, 5);
    char want[64];
    snprintf(want, sizeof(want), "[::1]:%u", (unsigned)port);
    expect_remote(t, want, 1);
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(t, &st);
    assert_non_null(strstr(st.last_error_detail, "127.0.0.1"));
    expect_echo(f, t);
    synesis_tunnel_free(t);
    syn_test_run_for(f->loop, 0.05);
}

/* The reverse: the edge on IPv4, nothing on ::1. IPv4 comes first and connects; IPv6 is never
 * needed. */
static void test_ipv6_dead_ipv4_used(void **state) {
    REQUIRE_IPV6();
    fixture *f = *state;
    f->edge = start_edge(f, "127.0.0.1:0");
    uint16_t port = syn_edge_port(f->edge);
    f->ans = (answer){
        .n = 2, .addrs = {"::1", "127.0.0.1"}
    };
    synesis_tunnel *t = new_tunnel(f, port, 3);
    assert_int_equal(synesis_tunnel_connect(t), 0);
    expect_connected(f, t, 5);
    char want[64];
    snprintf(want, sizeof(want), "127.0.0.1:%u", (unsigned)port);
    expect_remote(t, want, 0);
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(t, &st);
    assert_int_equal(st.last_error, 0);
    assert_true(edge_saw_remote(f, "127.0.0.1"));
    expect_echo(f, t);
    synesis_tunnel_free(t);
    syn_test_run_for(f->loop, 0.05);
}

/* Neither address answers: Failed with the IPv6 address's error (the last one tried), after one
 * fallback; no statistics claim a remote address. */
static void test_both_dead_fails_with_last_error(void **state) {
    REQUIRE_IPV6();
    fixture *f = *state;
    /* A port free on both families: bind an IPv6 socket to learn one, then close it. */
    int fd = socket(AF_INET6, SOCK_DGRAM, 0);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    socklen_t len = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    uint16_t port = ntohs(a.sin6_port);
    assert_free_v4_port(port);
    f->ans = (answer){
        .n = 2, .addrs = {"127.0.0.1", "::1"}
    };
    synesis_tunnel *t = new_tunnel(f, port, 3);
    assert_int_equal(synesis_tunnel_connect(t), 0);
    assert_true(syn_test_run_until(f->loop, syn_test_settled, &f->states, 5));
    synesis_tunnel_state s;
    synesis_tunnel_get_state(t, &s);
    assert_int_equal(s.kind, SYNESIS_STATE_FAILED);
    assert_int_equal(s.error, SYNESIS_ERR_SOCKET);
    assert_non_null(strstr(s.error_detail, "[::1]"));
    expect_remote(t, "", 1);
    synesis_tunnel_free(t);
    syn_test_run_for(f->loop, 0.05);
}

int main(void) {
    have_ipv6_loopback();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ipv4_refused_then_ipv6, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ipv4_blackholed_then_ipv6, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ipv6_listed_first_ipv4_still_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ipv6_dead_ipv4_used, setup, teardown),
        cmocka_unit_test_setup_teardown(test_both_dead_fails_with_last_error, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * A path whose MTU is 1280 (the IPv6 minimum; a common VPN or tunnel MTU), end to end: run by
 * ctest inside a private network namespace whose loopback has MTU 1280 (tests/netns_run.sh). The
 * largest UDP payload that fits is 1252 bytes over IPv4 and 1232 over IPv6.
 *
 * For each configuration below, over IPv4 and (where the namespace has ::1) IPv6, the tunnel
 * connects, a request of several packets each way is echoed intact, and a bulk SRC download
 * arrives intact:
 *   - pmtud = 0: no path MTU discovery; the tunnel sends at most 1200-byte payloads (ngtcp2's
 *     floor), which fit;
 *   - max_udp_payload = 1280 (PMTUD on): PMTUD's 1280-byte probe does not fit (the kernel refuses
 *     it with EMSGSIZE, QUIC counts it lost) and the connection stays at 1200;
 *   - max_udp_payload = 1452 with pmtud = 0: a cap larger than the path allows, with nothing to
 *     find the path's limit. It still works: without PMTUD the cap is never reached, the tunnel
 *     stays at 1200. The socket allows fragmentation without PMTUD (IP_PMTUDISC_DONT), so an
 *     oversized datagram would not fail but be fragmented by the kernel; the namespace's own
 *     counters (FragCreates in /proc/net/snmp and /proc/net/snmp6) prove none was;
 *   - the defaults (cap 1452, PMTUD on).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "synesis/request.h"

#define PATH_MTU 1280

/* SRC bytes are offset % 251 (the reference edge's pattern). */
#define SRC_PERIOD 251

/* The loopback's MTU in this network namespace (SIOCGIFMTU: /sys shows the host's). */
static int lo_mtu(void) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0)
        return -1;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
    int mtu = ioctl(fd, SIOCGIFMTU, &ifr) == 0 ? ifr.ifr_mtu : -1;
    close(fd);
    return mtu;
}

static int have_ipv6_loopback(void) {
    int fd = socket(AF_INET6, SOCK_DGRAM, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    int ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

/* The network namespace's count of datagrams the kernel fragmented on sending: IPv4's
 * FragCreates (the "Ip:" lines of /proc/net/snmp) plus IPv6's Ip6FragCreates. */
static uint64_t frag_creates(void) {
    uint64_t total = 0;
    FILE *fp = fopen("/proc/net/snmp", "r");
    assert_non_null(fp);
    char head[2048], vals[2048];
    while (fgets(head, sizeof(head), fp) && fgets(vals, sizeof(vals), fp)) {
        if (strncmp(head, "Ip:", 3) != 0)
            continue;
        char *hs = NULL, *vs = NULL;
        char *h = strtok_r(head, " \n", &hs), *v = strtok_r(vals, " \n", &vs);
        while (h && v) {
            if (strcmp(h, "FragCreates") == 0)
                total += strtoull(v, NULL, 10);
            h = strtok_r(NULL, " \n", &hs);
            v = strtok_r(NULL, " \n", &vs);
        }
        break;
    }
    fclose(fp);
    fp = fopen("/proc/net/snmp6", "r");
    if (fp) {
        char name[128];
        unsigned long long v;
        while (fscanf(fp, "%127s %llu", name, &v) == 2)
            if (strcmp(name, "Ip6FragCreates") == 0)
                total += v;
        fclose(fp);
    }
    return total;
}

typedef struct variant {
    const char *name;
    size_t max_udp_payload;
    int pmtud;
} variant;

static const char *pki;

static void run_variant(const variant *v, int ipv6) {
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    syn_edge_config ec;
    syn_test_edge_config(&ec, pki);
    ec.listen = ipv6 ? "[::1]:0" : "127.0.0.1:0";
    ec.idle_timeout = 10;
    syn_edge *e = syn_test_edge_start(loop, &ec);
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, pki, syn_edge_port(e));
    char url[64];
    snprintf(url, sizeof(url), ipv6 ? "quic://[::1]:%u" : "quic://127.0.0.1:%u",
             (unsigned)syn_edge_port(e));
    cfg.cloud_url = url;
    cfg.idle_timeout = 10;
    cfg.max_udp_payload = v->max_udp_payload;
    cfg.pmtud = v->pmtud;
    synesis_tunnel *t = syn_test_tunnel_new(loop, &cfg, NULL, NULL);
    uint64_t frags0 = frag_creates();
    assert_int_equal(synesis_tunnel_connect(t), 0);
    if (!syn_test_run_until(loop, syn_test_connected, t, 5))
        fail_msg("%s over IPv%d: not connected: %s", v->name, ipv6 ? 6 : 4,
                 synesis_tunnel_last_error(t));

    /* A request of many packets each way, echoed. */
    size_t n = 64 * 1024;
    uint8_t *body = malloc(n);
    assert_non_null(body);
    for (size_t i = 0; i < n; i++)
        body[i] = (uint8_t)(i * 7 + 1);
    body[0] = 'x';
    syn_test_result res;
    syn_test_request(loop, t, body, n, NULL, &res, 20);
    if (res.status != 0)
        fail_msg("%s over IPv%d: echo: %s", v->name, ipv6 ? 6 : 4, synesis_error_name(res.status));
    assert_int_equal(res.len, n);
    assert_memory_equal(res.data, body, n);
    free(res.data);

    /* A bulk download. */
    size_t bulk = 4u * 1024 * 1024;
    syn_test_request(loop, t, "SRC 4194304\n", 12, NULL, &res, 30);
    if (res.status != 0)
        fail_msg("%s over IPv%d: SRC: %s", v->name, ipv6 ? 6 : 4, synesis_error_name(res.status));
    assert_int_equal(res.len, bulk);
    for (size_t i = 0; i < bulk; i++)
        if (res.data[i] != (uint8_t)(i % SRC_PERIOD))
            fail_msg("%s over IPv%d: SRC byte %zu wrong", v->name, ipv6 ? 6 : 4, i);
    free(res.data);
    assert_true(synesis_tunnel_is_connected(t));

    /* No datagram of this run was larger than the path: none was fragmented. */
    uint64_t frags = frag_creates() - frags0;
    if (frags)
        fail_msg("%s over IPv%d: %llu fragments created: datagrams larger than the %d-byte path",
                 v->name, ipv6 ? 6 : 4, (unsigned long long)frags, PATH_MTU);
    print_message("%s over IPv%d: connected, 64 KiB echoed, 4 MiB downloaded, no fragment\n",
                  v->name, ipv6 ? 6 : 4);
    free(body);
    syn_test_finish(loop, t, e);
}

static const variant variants[] = {
    {"pmtud = 0",                         0,    0},
    {"max_udp_payload = 1280",            1280, 1},
    {"max_udp_payload = 1452, pmtud = 0", 1452, 0},
    {"defaults (cap 1452, PMTUD on)",     0,    1},
};

static int require_path(void) {
    int mtu = lo_mtu();
    if (mtu != PATH_MTU) {
        print_message("skipped: loopback MTU is %d, not %d: run through tests/netns_run.sh %d\n",
                      mtu, PATH_MTU, PATH_MTU);
        return 0;
    }
    pki = syn_test_pki_shared("mtu1280-1");
    return 1;
}

static void test_ipv4(void **state) {
    (void)state;
    if (!require_path())
        skip();
    for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++)
        run_variant(&variants[i], 0);
}

static void test_ipv6(void **state) {
    (void)state;
    if (!require_path())
        skip();
    if (!have_ipv6_loopback()) {
        print_message("skipped: no IPv6 on the namespace's loopback\n");
        skip();
    }
    for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++)
        run_variant(&variants[i], 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ipv4),
        cmocka_unit_test(test_ipv6),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The connectivity check (synesis_check_run): each failure made real against the reference edge
 * over loopback: a wrong CA, a future-dated and an expired device certificate, a port where
 * nothing listens, a key with wrong permissions, and the all-ok case. `test_check blocked` is the
 * case of UDP dropped on the way, run by check_blocked.sh in a network namespace. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ev.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "connect_proxy.h"
#include "fault_proxy.h"
#include "harness.h"
#include "synesis/check.h"

typedef struct report {
    int done;
    int can_connect;
    int status;
    synesis_check_status st[16];
    int err[16];
    char finding[16][512];
    char fix[16][512];
    char json[8192];
    size_t n;
} report;

enum { FILES, CERT, CLOCK, DNS, UDP, TRUST, MTU, TCP, PROXY };

static void on_done(const synesis_check_result *r, void *ud) {
    report *rep = ud;
    static const char *const ids[] = {"files", "certificate", "clock", "dns",  "udp",
                                      "trust", "mtu",         "tcp",   "proxy"};
    rep->done++;
    rep->can_connect = r->can_connect;
    rep->status = r->status;
    rep->n = r->n_items;
    assert_int_equal(r->n_items, 9);
    for (size_t i = 0; i < r->n_items && i < 16; i++) {
        assert_string_equal(r->items[i].id, ids[i]);
        assert_non_null(r->items[i].finding);
        assert_non_null(r->items[i].fix);
        rep->st[i] = r->items[i].status;
        rep->err[i] = r->items[i].error;
        snprintf(rep->finding[i], sizeof(rep->finding[i]), "%s", r->items[i].finding);
        snprintf(rep->fix[i], sizeof(rep->fix[i]), "%s", r->items[i].fix);
        printf("  %-7s %-11s %s%s%s\n", synesis_check_status_name(r->items[i].status),
               r->items[i].id, r->items[i].finding, *r->items[i].fix ? " -- fix: " : "",
               r->items[i].fix);
    }
    snprintf(rep->json, sizeof(rep->json), "%s", r->json);
}

static int report_done(void *ud) { return ((report *)ud)->done != 0; }

/* Runs the check of cfg on loop to its end. */
static void run_check(struct ev_loop *loop, const synesis_tunnel_config *cfg, report *rep,
                      double timeout) {
    memset(rep, 0, sizeof(*rep));
    synesis_check_options o;
    synesis_check_options_init(&o);
    o.timeout = timeout;
    o.mtu_wait = 0.5;
    synesis_check *c = NULL;
    assert_int_equal(synesis_check_run(loop, cfg, &o, on_done, rep, &c), 0);
    assert_non_null(c);
    assert_int_equal(rep->done, 0); /* never from inside the call */
    assert_true(syn_test_run_until(loop, report_done, rep, timeout * 3 + 5));
    syn_test_run_for(loop, 0.05);
    assert_int_equal(rep->done, 1);
}

static void test_all_ok(void **state) {
    (void)state;
    const char *dir = syn_test_pki_shared("check");
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    syn_edge *e = syn_test_edge(loop, dir, 10);
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, dir, syn_edge_port(e));
    cfg.transport = SYNESIS_TRANSPORT_AUTO; /* the default (the harness: UDP) */
    report rep;
    run_check(loop, &cfg, &rep, 5);
    assert_int_equal(rep.can_connect, 1);
    assert_int_equal(rep.status, 0);
    for (int i = 0; i < 9; i++)
        assert_int_not_equal(rep.st[i], SYNESIS_CHECK_FAILED);
    assert_int_equal(rep.st[FILES], SYNESIS_CHECK_OK);
    assert_int_equal(rep.st[CERT], SYNESIS_CHECK_OK);
    assert_int_equal(rep.st[CLOCK], SYNESIS_CHECK_OK);
    assert_int_equal(rep.st[DNS], SYNESIS_CHECK_OK);
    assert_int_equal(rep.st[UDP], SYNESIS_CHECK_OK);
    assert_int_equal(rep.st[TRUST], SYNESIS_CHECK_OK);
    assert_int_equal(rep.st[MTU], SYNESIS_CHECK_OK);
    assert_non_null(strstr(rep.finding[UDP], "QUIC handshake with 127.0.0.1:"));
    assert_non_null(strstr(rep.finding[MTU], "1350: yes"));
    /* The edge listens on TCP too: the fallback's handshake works; no proxy applies. */
    assert_int_equal(rep.st[TCP], SYNESIS_CHECK_OK);
    assert_non_null(strstr(rep.finding[TCP], "QUIC handshake over TCP with 127.0.0.1:"));
    assert_int_equal(rep.st[PROXY], SYNESIS_CHECK_OK);
    assert_non_null(strstr(rep.json, "{\"can_connect\":true,\"checks\":[{\"id\":\"files\","
                                     "\"status\":\"ok\",\"error\":null,"));
    syn_test_finish(loop, NULL, e);
}

static void test_wrong_ca(void **state) {
    (void)state;
    const char *dir = syn_test_pki_shared("check");
    const char *other = syn_test_pki("other");
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    syn_edge *e = syn_test_edge(loop, dir, 10);
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, dir, syn_edge_port(e));
    cfg.transport = SYNESIS_TRANSPORT_AUTO; /* the default (the harness: UDP) */
    cfg.ca_path = syn_test_path(other, "ca.pem");
    report rep;
    run_check(loop, &cfg, &rep, 5);
    assert_int_equal(rep.can_connect, 0);
    assert_int_equal(rep.st[FILES], SYNESIS_CHECK_OK);
    assert_int_equal(rep.st[UDP], SYNESIS_CHECK_OK); /* the edge answered */
    assert_int_equal(rep.st[TRUST], SYNESIS_CHECK_FAILED);
    assert_int_equal(rep.err[TRUST], SYNESIS_ERR_PEER_UNTRUSTED);
    assert_non_null(strstr(rep.fix[TRUST], "ca_path"));
    assert_non_null(strstr(rep.fix[TRUST], "agent.conf: ca"));
    assert_int_equal(rep.st[MTU], SYNESIS_CHECK_SKIPPED);
    assert_non_null(strstr(rep.json, "\"error\":\"SYNESIS_ERR_PEER_UNTRUSTED\""));
    syn_test_finish(loop, NULL, e);
}

/* A device identity issued by the test CA of dir with the given notBefore offset and days. */
static const char *identity(const char *dir, const char *name, int64_t offset, int days) {
    const char *out = syn_test_mkdtemp(name);
    synesis_identity_options o;
    synesis_identity_options_init(&o);
    o.device_id = name;
    o.days = days;
    o.not_before_offset_s = offset;
    o.ca_cert_file = syn_test_path(dir, "ca.pem");
    o.ca_key_file = syn_test_path(dir, "ca.key");
    o.overwrite = 1;
    char d[512] = "";
    int rv = synesis_identity_generate(&o, out, d, sizeof(d));
    if (rv != 0)
        fail_msg("identity: %s: %s", synesis_error_name(rv), d);
    return out;
}

static void test_future_cert(void **state) {
    (void)state;
    const char *dir = syn_test_pki_shared("check");
    const char *id = identity(dir, "future", 2 * 86400, 365);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    syn_edge *e = syn_test_edge(loop, dir, 10);
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, dir, syn_edge_port(e));
    cfg.transport = SYNESIS_TRANSPORT_AUTO; /* the default (the harness: UDP) */
    cfg.cert_path = syn_test_path(id, "device.pem");
    cfg.key_path = syn_test_path(id, "device.key");
    report rep;
    run_check(loop, &cfg, &rep, 5);
    assert_int_equal(rep.can_connect, 0);
    assert_int_equal(rep.st[FILES], SYNESIS_CHECK_OK);
    assert_int_equal(rep.st[CLOCK], SYNESIS_CHECK_FAILED);
    assert_int_equal(rep.err[CLOCK], SYNESIS_ERR_CERT_NOT_YET_VALID);
    assert_non_null(strstr(rep.finding[CLOCK], "before the certificate's notBefore"));
    assert_non_null(strstr(rep.fix[CLOCK], "the clock is behind"));
    /* The tunnel refuses the identity: no handshake is tried. */
    assert_int_equal(rep.st[UDP], SYNESIS_CHECK_SKIPPED);
    assert_int_equal(rep.err[UDP], SYNESIS_ERR_CERT_NOT_YET_VALID);
    syn_test_finish(loop, NULL, e);
}

static void test_expired_and_expiring(void **state) {
    (void)state;
    const char *dir = syn_test_pki_shared("check");
    const char *old = identity(dir, "expired", -3 * 86400, 1);
    const char *soon = identity(dir, "soon", -86400, 11);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    syn_edge *e = syn_test_edge(loop, dir, 10);
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, dir, syn_edge_port(e));
    cfg.transport = SYNESIS_TRANSPORT_AUTO; /* the default (the harness: UDP) */
    cfg.cert_path = syn_test_path(old, "device.pem");
    cfg.key_path = syn_test_path(old, "device.key");
    report rep;
    run_check(loop, &cfg, &rep, 5);
    assert_int_equal(rep.can_connect, 0);
    assert_int_equal(rep.st[CERT], SYNESIS_CHECK_FAILED);
    assert_int_equal(rep.err[CERT], SYNESIS_ERR_CERT_EXPIRED);
    assert_non_null(strstr(rep.finding[CERT], "expired on"));
    assert_non_null(strstr(rep.fix[CERT], "renew"));
    assert_int_equal(rep.st[CLOCK], SYNESIS_CHECK_OK);
    assert_int_equal(rep.st[UDP], SYNESIS_CHECK_SKIPPED);
    /* Ten days left: a warning, and the tunnel comes up. */
    cfg.cert_path = syn_test_path(soon, "device.pem");
    cfg.key_path = syn_test_path(soon, "device.key");
    run_check(loop, &cfg, &rep, 5);
    assert_int_equal(rep.st[CERT], SYNESIS_CHECK_WARNING);
    assert_non_null(strstr(rep.finding[CERT], "expires in "));
    assert_int_equal(rep.can_connect, 1);
    syn_test_finish(loop, NULL, e);
}

/* A UDP port of 127.0.0.1 where nothing listens (bound, read, closed). */
static uint16_t closed_port(void) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void test_nothing_listens(void **state) {
    (void)state;
    const char *dir = syn_test_pki_shared("check");
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, dir, closed_port());
    cfg.transport = SYNESIS_TRANSPORT_AUTO; /* the default (the harness: UDP) */
    report rep;
    run_check(loop, &cfg, &rep, 5);
    assert_int_equal(rep.can_connect, 0);
    assert_int_equal(rep.st[DNS], SYNESIS_CHECK_OK);
    assert_int_equal(rep.st[UDP], SYNESIS_CHECK_FAILED);
    assert_int_equal(rep.err[UDP], SYNESIS_ERR_SOCKET);
    assert_non_null(strstr(rep.finding[UDP], "ICMP port unreachable"));
    assert_null(strstr(rep.finding[UDP], "timeout"));
    assert_int_equal(rep.st[TRUST], SYNESIS_CHECK_SKIPPED);
    syn_test_finish(loop, NULL, NULL);
}

static void test_key_permissions(void **state) {
    (void)state;
    const char *dir = syn_test_pki_shared("check");
    const char *tmp = syn_test_mkdtemp("openkey");
    char key[512], cmd[1200];
    snprintf(key, sizeof(key), "%s/device.key", tmp);
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", syn_test_path(dir, "device.key"), key);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(chmod(key, 0644), 0);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    syn_edge *e = syn_test_edge(loop, dir, 10);
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, dir, syn_edge_port(e));
    cfg.transport = SYNESIS_TRANSPORT_AUTO; /* the default (the harness: UDP) */
    cfg.key_path = key;
    report rep;
    run_check(loop, &cfg, &rep, 5);
    assert_int_equal(rep.can_connect, 0);
    assert_int_equal(rep.st[FILES], SYNESIS_CHECK_FAILED);
    assert_int_equal(rep.err[FILES], SYNESIS_ERR_KEY_PERMISSIONS);
    assert_non_null(strstr(rep.fix[FILES], "chmod 600"));
    assert_int_equal(rep.st[UDP], SYNESIS_CHECK_SKIPPED);
    syn_test_finish(loop, NULL, e);
}

static void test_proxy_and_dns(void **state) {
    (void)state;
    const char *dir = syn_test_pki_shared("check");
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, dir, 4433);
    cfg.transport = SYNESIS_TRANSPORT_AUTO; /* the default (the harness: UDP) */
    cfg.cloud_url = "quic://no-such-host.invalid:4433";
    cfg.proxy = ""; /* none, whatever the environment says */
    report rep;
    run_check(loop, &cfg, &rep, 5);
    assert_int_equal(rep.can_connect, 0);
    assert_int_equal(rep.st[DNS], SYNESIS_CHECK_FAILED);
    assert_int_equal(rep.err[DNS], SYNESIS_ERR_DNS);
    assert_non_null(strstr(rep.fix[DNS], "cloud_url"));
    assert_int_equal(rep.st[UDP], SYNESIS_CHECK_SKIPPED);
    assert_int_equal(rep.st[TCP], SYNESIS_CHECK_SKIPPED);
    assert_int_equal(rep.st[PROXY], SYNESIS_CHECK_OK);
    assert_non_null(strstr(rep.finding[PROXY], "proxy = none"));
    syn_test_finish(loop, NULL, NULL);
}

static void test_arguments_and_cancel(void **state) {
    (void)state;
    const char *dir = syn_test_pki_shared("check");
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, dir, closed_port());
    cfg.transport = SYNESIS_TRANSPORT_AUTO; /* the default (the harness: UDP) */
    report rep = {0};
    synesis_check *c = (synesis_check *)&rep;
    assert_int_equal(synesis_check_run(NULL, &cfg, NULL, on_done, &rep, &c),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    assert_null(c);
    assert_int_equal(synesis_check_run(loop, NULL, NULL, on_done, &rep, NULL),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(synesis_check_run(loop, &cfg, NULL, NULL, &rep, NULL),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    synesis_check_options o;
    synesis_check_options_init(&o);
    assert_true(o.timeout == 10.0 && o.mtu_wait == 1.0 && o.expiry_warning_days == 30);
    o.timeout = 0;
    assert_int_equal(synesis_check_run(loop, &cfg, &o, on_done, &rep, NULL),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    synesis_check_options_init_sized(NULL, 0);
    synesis_check_cancel(NULL);
    assert_string_equal(synesis_check_status_name(SYNESIS_CHECK_WARNING), "warning");
    assert_string_equal(synesis_check_status_name((synesis_check_status)42), "unknown");
    /* Cancelled while running: no callback, nothing left on the loop. */
    assert_int_equal(synesis_check_run(loop, &cfg, NULL, on_done, &rep, &c), 0);
    synesis_check_cancel(c);
    syn_test_run_for(loop, 0.2);
    assert_int_equal(rep.done, 0);
    syn_test_finish(loop, NULL, NULL);
}

/* The proxy item: from the environment as curl (https_proxy, no_proxy), the password hidden; a
 * proxy that answers, one that refuses (a warning while UDP works: the fallback would fail), and
 * one that no_proxy skips. */
static void test_proxy_items(void **state) {
    (void)state;
    const char *dir = syn_test_pki_shared("check");
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    syn_edge *e = syn_test_edge(loop, dir, 10);
    syn_test_proxy *px;
    uint16_t pport;
    syn_test_proxy_opts po = {.mode = SYN_TEST_PROXY_AUTH, .credentials = "dev:s3cret"};
    assert_int_equal(syn_test_proxy_start(&px, loop, &po, &pport), 0);
    char env[128];
    snprintf(env, sizeof(env), "http://dev:s3cret@127.0.0.1:%u", pport);
    setenv("https_proxy", env, 1);
    unsetenv("no_proxy");
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, dir, syn_edge_port(e));
    cfg.transport = SYNESIS_TRANSPORT_AUTO;
    report rep;
    run_check(loop, &cfg, &rep, 5);
    assert_int_equal(rep.can_connect, 1);
    assert_int_equal(rep.st[TCP], SYNESIS_CHECK_OK);
    assert_non_null(strstr(rep.finding[TCP], "through proxy http://dev:***@127.0.0.1:"));
    assert_int_equal(rep.st[PROXY], SYNESIS_CHECK_OK);
    assert_non_null(strstr(rep.finding[PROXY], "answered"));
    assert_null(strstr(rep.json, "s3cret"));
    assert_int_equal(syn_test_proxy_stats_get(px)->tunnels, 1);
    /* no_proxy names the edge: direct. */
    setenv("no_proxy", "127.0.0.0/8", 1);
    run_check(loop, &cfg, &rep, 5);
    assert_int_equal(rep.st[PROXY], SYNESIS_CHECK_OK);
    assert_non_null(strstr(rep.finding[PROXY], "no_proxy"));
    assert_null(strstr(rep.finding[TCP], "through proxy"));
    assert_int_equal(syn_test_proxy_stats_get(px)->tunnels, 1);
    unsetenv("no_proxy");
    syn_test_proxy_free(px);
    /* A proxy that refuses: named, with the status, a warning while UDP works. */
    po = (syn_test_proxy_opts){.mode = SYN_TEST_PROXY_REFUSE};
    assert_int_equal(syn_test_proxy_start(&px, loop, &po, &pport), 0);
    snprintf(env, sizeof(env), "http://127.0.0.1:%u", pport);
    setenv("https_proxy", env, 1);
    run_check(loop, &cfg, &rep, 5);
    unsetenv("https_proxy");
    assert_int_equal(rep.st[PROXY], SYNESIS_CHECK_WARNING);
    assert_int_equal(rep.err[PROXY], SYNESIS_ERR_PROXY);
    assert_non_null(strstr(rep.finding[PROXY], "refused"));
    assert_non_null(strstr(rep.finding[PROXY], "403"));
    assert_int_equal(rep.st[TCP], SYNESIS_CHECK_WARNING);
    assert_int_equal(rep.can_connect, 1);
    syn_test_proxy_free(px);
    syn_test_finish(loop, NULL, e);
}

/* UDP black-holed on the way (a fault proxy on the URL's port that drops everything), TCP to the
 * same port number reaches the edge: the tunnel can come up over TCP, so UDP's failure is a
 * warning and the check passes. */
static void test_udp_blocked_tcp_works(void **state) {
    (void)state;
    const char *dir = syn_test_pki_shared("check");
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct sockaddr_in up = {
        .sin_family = AF_INET, .sin_port = htons(9), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct sockaddr_in lis = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    syn_fault_proxy *px = syn_fault_proxy_new_tcp_free(loop, (struct sockaddr *)&lis, sizeof(lis),
                                                       (struct sockaddr *)&up, sizeof(up), 1);
    assert_non_null(px);
    syn_fault_proxy_blackhole(px, 1);
    syn_edge_config ec;
    syn_test_edge_config(&ec, dir);
    ec.tcp_port = syn_fault_proxy_port(px);
    syn_edge *e = syn_test_edge_start(loop, &ec);
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, dir, syn_fault_proxy_port(px));
    cfg.transport = SYNESIS_TRANSPORT_AUTO;
    report rep;
    run_check(loop, &cfg, &rep, 2);
    assert_int_equal(rep.st[UDP], SYNESIS_CHECK_WARNING);
    assert_int_equal(rep.err[UDP], SYNESIS_ERR_HANDSHAKE_TIMEOUT);
    assert_non_null(strstr(rep.finding[UDP], "falls back to QUIC over TCP"));
    assert_int_equal(rep.st[TCP], SYNESIS_CHECK_OK);
    assert_int_equal(rep.st[TRUST], SYNESIS_CHECK_OK);
    assert_non_null(strstr(rep.finding[TRUST], "over TCP"));
    assert_int_equal(rep.can_connect, 1);
    /* With transport udp the same network cannot carry the tunnel. */
    cfg.transport = SYNESIS_TRANSPORT_UDP;
    run_check(loop, &cfg, &rep, 2);
    assert_int_equal(rep.st[UDP], SYNESIS_CHECK_FAILED);
    assert_int_equal(rep.st[TCP], SYNESIS_CHECK_SKIPPED);
    assert_int_equal(rep.can_connect, 0);
    syn_fault_proxy_free(px);
    syn_test_finish(loop, NULL, e);
}

/* In check_blocked.sh's namespace, 192.0.2.1 is routed to a neighbour that never answers: every
 * datagram to the edge is dropped on the way, and no ICMP comes back. */
static void test_udp_blocked(void **state) {
    (void)state;
    const char *dir = syn_test_pki_shared("check");
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, dir, 4433);
    cfg.transport = SYNESIS_TRANSPORT_AUTO; /* the default (the harness: UDP) */
    cfg.cloud_url = "quic://192.0.2.1:4433";
    report rep;
    run_check(loop, &cfg, &rep, 2);
    assert_int_equal(rep.can_connect, 0);
    assert_int_equal(rep.st[DNS], SYNESIS_CHECK_OK);
    assert_int_equal(rep.st[UDP], SYNESIS_CHECK_FAILED);
    assert_int_equal(rep.err[UDP], SYNESIS_ERR_HANDSHAKE_TIMEOUT);
    assert_non_null(strstr(rep.finding[UDP], "timeout: no answer over UDP"));
    assert_null(strstr(rep.finding[UDP], "ICMP"));
    assert_non_null(strstr(rep.fix[UDP], "allow UDP to port 4433"));
    assert_int_equal(rep.st[TRUST], SYNESIS_CHECK_SKIPPED);
    assert_int_equal(rep.st[TCP], SYNESIS_CHECK_FAILED); /* TCP is dropped as well */
    syn_test_finish(loop, NULL, NULL);
}

/* Run by netns_run.sh on a loopback of MTU 1280: 1350-byte datagrams do not pass; the check says
 * so (a warning: the tunnel still comes up). */
static void test_small_path_mtu(void **state) {
    (void)state;
    const char *dir = syn_test_pki_shared("check");
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    syn_edge *e = syn_test_edge(loop, dir, 10);
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, dir, syn_edge_port(e));
    cfg.transport = SYNESIS_TRANSPORT_AUTO; /* the default (the harness: UDP) */
    report rep;
    run_check(loop, &cfg, &rep, 5);
    assert_int_equal(rep.can_connect, 1);
    assert_int_equal(rep.st[MTU], SYNESIS_CHECK_WARNING);
    assert_non_null(strstr(rep.finding[MTU], "1350: no"));
    syn_test_finish(loop, NULL, e);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "mtu1280") == 0) {
        const struct CMUnitTest mtu[] = {cmocka_unit_test(test_small_path_mtu)};
        return cmocka_run_group_tests(mtu, NULL, NULL);
    }
    if (argc > 1 && strcmp(argv[1], "blocked") == 0) {
        const struct CMUnitTest blocked[] = {cmocka_unit_test(test_udp_blocked)};
        return cmocka_run_group_tests(blocked, NULL, NULL);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_ok),          cmocka_unit_test(test_wrong_ca),
        cmocka_unit_test(test_future_cert),     cmocka_unit_test(test_expired_and_expiring),
        cmocka_unit_test(test_nothing_listens), cmocka_unit_test(test_key_permissions),
        cmocka_unit_test(test_proxy_and_dns),   cmocka_unit_test(test_udp_blocked_tcp_works),
        cmocka_unit_test(test_proxy_items),     cmocka_unit_test(test_arguments_and_cancel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

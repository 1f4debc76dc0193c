/*
 * HTTP CONNECT proxies (src/proxy.c, src/tcplink.c): syn_proxy_select's rules (curl's: the
 * environment's precedence, no_proxy, URLs), then QUIC over TCP links through the tests' CONNECT
 * proxy (tests/support/connect_proxy.c) in each of its modes, over real TCP on loopback, asserting
 * what the proxy saw.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "connect_proxy.h"
#include "harness.h"
#include "tcplink.h"
#include "tls.h"

#define assert_ok(rv, d)                                                                           \
    do {                                                                                           \
        int rv_ = (rv);                                                                            \
        if (rv_ != 0)                                                                              \
            fail_msg("%s: %s", synesis_error_name(rv_), d);                                        \
    } while (0)

/* ---- syn_proxy_select -------------------------------------------------------------------- */

static const char *const env_vars[] = {"https_proxy", "HTTPS_PROXY", "all_proxy",  "ALL_PROXY",
                                       "no_proxy",    "NO_PROXY",    "http_proxy", "HTTP_PROXY"};

static void clear_env(void) {
    for (size_t i = 0; i < sizeof(env_vars) / sizeof(env_vars[0]); i++)
        unsetenv(env_vars[i]);
}

/* Expects a proxy host:port (or none when host is NULL) for target under configured. */
static void expect(const char *configured, const char *target, const char *host, unsigned port) {
    syn_proxy p;
    char d[SYNESIS_DETAIL_MAX] = "";
    int rv = syn_proxy_select(configured, target, &p, d);
    if (!host) {
        if (rv != 0)
            fail_msg("%s / %s: expected no proxy, got %d (%s) %s", configured ? configured : "env",
                     target, rv, d, rv == 1 ? p.shown : "");
        syn_proxy_clear(&p);
        return;
    }
    if (rv != 1)
        fail_msg("%s / %s: expected %s:%u, got %d: %s", configured ? configured : "env", target,
                 host, port, rv, d);
    assert_string_equal(p.host, host);
    assert_int_equal(p.port, port);
    syn_proxy_clear(&p);
}

static void expect_invalid(const char *configured, const char *in_detail) {
    syn_proxy p;
    char d[SYNESIS_DETAIL_MAX] = "";
    int rv = syn_proxy_select(configured, "edge.example.com", &p, d);
    if (rv != SYNESIS_ERR_INVALID_ARGUMENT)
        fail_msg("\"%s\": expected INVALID_ARGUMENT, got %d (%s)", configured ? configured : "env",
                 rv, rv == 1 ? p.shown : d);
    if (in_detail && !strstr(d, in_detail))
        fail_msg("\"%s\": detail \"%s\" lacks \"%s\"", configured ? configured : "env", d,
                 in_detail);
    assert_null(p.basic_auth);
}

static void test_select_configured(void **state) {
    (void)state;
    clear_env();
    setenv("https_proxy", "http://env.example:1", 1);
    /* "" disables, even with the environment set; configured beats the environment */
    expect("", "edge.example.com", NULL, 0);
    expect("http://cfg.example:3128", "edge.example.com", "cfg.example", 3128);
    /* no_proxy is the environment's rule: a configured proxy is used all the same */
    setenv("no_proxy", "*", 1);
    expect("http://cfg.example:3128", "edge.example.com", "cfg.example", 3128);
    clear_env();
    /* defaults, scheme optional and case-insensitive, IPv6 literals */
    expect("cfg.example", "e", "cfg.example", 1080);
    expect("HTTP://Cfg.Example:8080/", "e", "Cfg.Example", 8080);
    expect("http://[::1]:3128", "e", "::1", 3128);
    expect("http://10.1.2.3", "e", "10.1.2.3", 1080);

    /* credentials: percent-decoded, base64 for Basic, the password hidden in shown */
    syn_proxy p;
    char d[SYNESIS_DETAIL_MAX];
    assert_int_equal(syn_proxy_select("http://us%65r:p%40ss%3Aw0rd@127.0.0.1:3128", "e", &p, d), 1);
    assert_string_equal(p.host, "127.0.0.1");
    assert_string_equal(p.basic_auth, "dXNlcjpwQHNzOncwcmQ="); /* base64("user:p@ss:w0rd") */
    assert_string_equal(p.shown, "http://user:***@127.0.0.1:3128");
    assert_null(strstr(p.shown, "p@ss"));
    assert_null(strstr(p.shown, "p%40ss"));
    syn_proxy_clear(&p);
    assert_null(p.basic_auth);
    assert_int_equal(syn_proxy_select("http://user@[::1]", "e", &p, d), 1);
    assert_string_equal(p.basic_auth, "dXNlcjo="); /* "user:" */
    assert_string_equal(p.shown, "http://user@[::1]:1080");
    syn_proxy_clear(&p);
    assert_int_equal(syn_proxy_select("http://h:1", "e", &p, d), 1);
    assert_null(p.basic_auth);
    assert_string_equal(p.shown, "http://h:1");
    syn_proxy_clear(&p);

    /* refused and malformed */
    expect_invalid("https://proxy.example:443", "https");
    expect_invalid("socks5://proxy.example:1080", "socks5");
    expect_invalid("http://", "no host");
    expect_invalid("http://:3128", "no host");
    expect_invalid("http://host:", NULL);
    expect_invalid("http://host:0", "1..65535");
    expect_invalid("http://host:65536", NULL);
    expect_invalid("http://host:12ab", "port");
    expect_invalid("http://[::1", "]");
    expect_invalid("http://[not-v6]:1", "IPv6");
    expect_invalid("http://u:%zz@host", "percent");
    expect_invalid("http://u:%00@host", "percent");
    expect_invalid("http://host:1/path", "path");
    expect_invalid("http://ho st:1", "host");
    /* the message names where the URL came from */
    setenv("HTTPS_PROXY", "http://host:99999", 1);
    expect_invalid(NULL, "HTTPS_PROXY");
    clear_env();
}

static void test_select_environment(void **state) {
    (void)state;
    clear_env();
    expect(NULL, "edge.example.com", NULL, 0); /* nothing set */
    setenv("http_proxy", "http://plain:1", 1); /* not for https targets (curl) */
    expect(NULL, "edge.example.com", NULL, 0);
    setenv("ALL_PROXY", "http://ALL:4", 1);
    expect(NULL, "edge.example.com", "ALL", 4);
    setenv("all_proxy", "http://all:3", 1);
    expect(NULL, "edge.example.com", "all", 3);
    setenv("HTTPS_PROXY", "http://HTTPS:2", 1);
    expect(NULL, "edge.example.com", "HTTPS", 2);
    setenv("https_proxy", "http://https:1", 1);
    expect(NULL, "edge.example.com", "https", 1);
    setenv("https_proxy", "", 1); /* empty counts as unset */
    expect(NULL, "edge.example.com", "HTTPS", 2);
    clear_env();

    setenv("https_proxy", "http://p:1", 1);
    static const struct {
        const char *no_proxy, *target;
        int bypass;
    } cases[] = {
        {"*",                      "edge.example.com",     1},
        {"example.com",            "example.com",          1},
        {"example.com",            "edge.example.com",     1},
        {"example.com",            "EDGE.Example.COM",     1},
        {"EXAMPLE.com",            "edge.example.com",     1},
        {"example.com",            "badexample.com",       0},
        {"example.com",            "example.com.evil.net", 0},
        {".example.com",           "example.com",          1},
        {".example.com",           "a.b.example.com",      1},
        {"example.com.",           "edge.example.com",     1},
        {"other.net, example.com", "edge.example.com",     1},
        {"other.net,example.com",  "edge.example.com",     1},
        {"other.net example.com",  "edge.example.com",     1},
        {"other.net,,",            "edge.example.com",     0},
        {"edge",                   "edge.example.com",     0},
        {"127.0.0.1",              "127.0.0.1",            1},
        {"127.0.0.1",              "127.0.0.2",            0},
        {"10.0.0.0/8",             "10.200.3.4",           1},
        {"10.0.0.0/8",             "11.0.0.1",             0},
        {"192.168.1.0/25",         "192.168.1.127",        1},
        {"192.168.1.0/25",         "192.168.1.128",        0},
        {"0.0.0.0/0",              "8.8.8.8",              1},
        {"::1",                    "::1",                  1},
        {"::1",                    "[::1]",                1},
        {"[::1]",                  "::1",                  1},
        {"fd00::/8",               "fd12:3456::1",         1},
        {"fd00::/8",               "fe80::1",              0},
        {"10.0.0.0/8",             "::ffff:10.0.0.1",      0}, /* another family */
        {"example.com",            "10.0.0.1",             0},
        {"10.0.0.0/8",             "ten.example.com",      0},
        {"10.0.0.0/x",             "10.0.0.1",             0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        setenv("no_proxy", cases[i].no_proxy, 1);
        syn_proxy p;
        char d[SYNESIS_DETAIL_MAX];
        int rv = syn_proxy_select(NULL, cases[i].target, &p, d);
        if (rv != (cases[i].bypass ? 0 : 1))
            fail_msg("no_proxy \"%s\", target %s: got %d, expected %s", cases[i].no_proxy,
                     cases[i].target, rv, cases[i].bypass ? "no proxy" : "the proxy");
        syn_proxy_clear(&p);
    }
    /* NO_PROXY when no_proxy is not set; no_proxy first */
    unsetenv("no_proxy");
    setenv("NO_PROXY", "example.com", 1);
    expect(NULL, "edge.example.com", NULL, 0);
    setenv("no_proxy", "other.net", 1);
    expect(NULL, "edge.example.com", "p", 1);
    clear_env();
}

/* ---- links through the test proxy --------------------------------------------------------- */

typedef struct side {
    syn_tcplink *l;
    int up, closed, err;
    char detail[SYNESIS_DETAIL_MAX];
    size_t packets, bytes, target;
    int echo;
} side;

static void on_up(syn_tcplink *l) { ((side *)syn_tcplink_owner(l))->up++; }
static void on_packet(syn_tcplink *l, const uint8_t *data, size_t len) {
    side *s = syn_tcplink_owner(l);
    s->packets++;
    s->bytes += len;
    if (s->echo)
        assert_true(syn_tcplink_send(l, data, len) >= 0);
}
static void on_writable(syn_tcplink *l) { (void)l; }
static void on_closed(syn_tcplink *l, int err, const char *detail) {
    side *s = syn_tcplink_owner(l);
    s->closed++;
    s->err = err;
    snprintf(s->detail, sizeof(s->detail), "%s", detail ? detail : "");
}
static const syn_tcplink_ops ops = {on_up, on_packet, on_writable, on_closed};

static int is_up(void *ud) { return ((side *)ud)->up > 0; }
static int is_closed(void *ud) { return ((side *)ud)->closed > 0; }
static int got_packets(void *ud) {
    side *s = ud;
    return s->packets >= s->target;
}

typedef struct env {
    struct ev_loop *loop;
    int lfd;
    ev_io lw;
    uint16_t edge_port, proxy_port;
    SSL_CTX *sctx, *cctx;
    side edge, dev;
    syn_test_proxy *px;
} env;

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents) {
    (void)revents;
    env *e = w->data;
    int fd = accept4(e->lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return;
    syn_tcplink_free(e->edge.l);
    memset(&e->edge, 0, sizeof(e->edge));
    e->edge.echo = 1;
    char d[SYNESIS_DETAIL_MAX];
    assert_ok(syn_tcplink_accept(&e->edge.l, loop, fd, e->sctx, 5, &ops, &e->edge, d), d);
}

static void env_up(env *e, const syn_test_proxy_opts *po) {
    memset(e, 0, sizeof(*e));
    e->loop = ev_loop_new(EVFLAG_AUTO);
    const char *dir = syn_test_pki_shared("proxy");
    char d[SYNESIS_DETAIL_MAX];
    syn_tls_server_config s;
    memset(&s, 0, sizeof(s));
    s.cert_file = syn_test_path(dir, "edge.pem");
    s.key_file = syn_test_path(dir, "edge.key");
    s.ca_file = syn_test_path(dir, "ca.pem");
    s.alpn = "synesis-tunnel/1";
    SSL_CTX *q = NULL;
    assert_ok(syn_tls_server_ctx_new(&q, &s, d), d);
    assert_ok(syn_tcplink_server_ctx_new(&e->sctx, q, d), d);
    SSL_CTX_free(q);
    syn_tls_client_config c;
    memset(&c, 0, sizeof(c));
    c.cert_file = syn_test_path(dir, "device.pem");
    c.key_file = syn_test_path(dir, "device.key");
    c.ca_file = syn_test_path(dir, "ca.pem");
    assert_ok(syn_tls_client_ctx_new(&q, &c, d), d);
    assert_ok(syn_tcplink_client_ctx_new(&e->cctx, q, d), d);
    SSL_CTX_free(q);

    e->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(e->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(e->lfd, 16), 0);
    socklen_t len = sizeof(a);
    getsockname(e->lfd, (struct sockaddr *)&a, &len);
    e->edge_port = ntohs(a.sin_port);
    ev_io_init(&e->lw, accept_cb, e->lfd, EV_READ);
    e->lw.data = e;
    ev_io_start(e->loop, &e->lw);
    if (po)
        assert_int_equal(syn_test_proxy_start(&e->px, e->loop, po, &e->proxy_port), 0);
}

static void env_down(env *e) {
    syn_tcplink_free(e->dev.l);
    syn_tcplink_free(e->edge.l);
    syn_test_proxy_free(e->px);
    ev_io_stop(e->loop, &e->lw);
    close(e->lfd);
    SSL_CTX_free(e->sctx);
    SSL_CTX_free(e->cctx);
    assert_int_equal(ev_run(e->loop, EVRUN_NOWAIT), 0);
    ev_loop_destroy(e->loop);
}

/* Connects the device's link through the proxy URL (configured; "%u" is the proxy's port). */
static void dev_connect(env *e, const char *url_fmt) {
    char url[256];
    snprintf(url, sizeof(url), url_fmt, (unsigned)e->proxy_port);
    syn_proxy p;
    char d[SYNESIS_DETAIL_MAX];
    assert_int_equal(syn_proxy_select(url, "127.0.0.1", &p, d), 1);
    syn_sockaddr to;
    memset(&to, 0, sizeof(to));
    struct sockaddr_in *in = (struct sockaddr_in *)&to.ss;
    in->sin_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, p.host, &in->sin_addr), 1);
    in->sin_port = htons(p.port);
    to.len = sizeof(*in);
    syn_tcplink_client_opts o;
    memset(&o, 0, sizeof(o));
    o.connect_to = &to;
    o.proxy = &p;
    o.target_host = "127.0.0.1";
    o.target_port = e->edge_port;
    o.ctx = e->cctx;
    o.server_name = "localhost";
    o.timeout = 5;
    syn_tcplink_free(e->dev.l);
    memset(&e->dev, 0, sizeof(e->dev));
    assert_ok(syn_tcplink_connect(&e->dev.l, e->loop, &o, &ops, &e->dev, d), d);
    syn_proxy_clear(&p); /* the link keeps what it needs */
}

/* Frames both ways through the link; the proxy must have relayed at least their bytes. */
static void exchange(env *e) {
    assert_true(syn_test_run_until(e->loop, is_up, &e->dev, 10));
    uint8_t buf[1500];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)i;
    static const size_t sizes[] = {1, 1200, 1500, 700, 1500};
    size_t total = 0;
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(syn_tcplink_send(e->dev.l, buf, sizes[i]), 0);
        total += sizes[i];
    }
    e->dev.target = 5;
    assert_true(syn_test_run_until(e->loop, got_packets, &e->dev, 10));
    assert_int_equal(e->dev.bytes, total);
    assert_int_equal(e->edge.packets, 5);
    const syn_test_proxy_stats *st = syn_test_proxy_stats_get(e->px);
    assert_int_equal(st->tunnels, 1);
    assert_true(st->bytes_up > total);
    assert_true(st->bytes_down > total);
    char want[64];
    snprintf(want, sizeof(want), "CONNECT 127.0.0.1:%u HTTP/1.1\r\n", (unsigned)e->edge_port);
    assert_non_null(strstr(st->last_request, want));
    snprintf(want, sizeof(want), "\r\nHost: 127.0.0.1:%u\r\n", (unsigned)e->edge_port);
    assert_non_null(strstr(st->last_request, want));
}

static void expect_down(env *e, int err, const char *in_detail) {
    assert_true(syn_test_run_until(e->loop, is_closed, &e->dev, 10));
    if (e->dev.err != err)
        fail_msg("expected %s, got %s: %s", synesis_error_name(err), synesis_error_name(e->dev.err),
                 e->dev.detail);
    if (in_detail && !strstr(e->dev.detail, in_detail))
        fail_msg("detail \"%s\" lacks \"%s\"", e->dev.detail, in_detail);
    assert_int_equal(e->dev.up, 0);
    assert_null(e->edge.l); /* the edge never saw a connection */
}

static void test_open(void **state) {
    (void)state;
    syn_test_proxy_opts po = {.mode = SYN_TEST_PROXY_OPEN};
    env e;
    env_up(&e, &po);
    dev_connect(&e, "http://127.0.0.1:%u");
    exchange(&e);
    assert_null(strstr(syn_test_proxy_stats_get(e.px)->last_request, "Proxy-Authorization"));
    env_down(&e);
}

static void test_trickle(void **state) {
    (void)state;
    /* every byte of the TLS connection a TCP segment of its own, both ways */
    syn_test_proxy_opts po = {.mode = SYN_TEST_PROXY_OPEN, .trickle = 1};
    env e;
    env_up(&e, &po);
    dev_connect(&e, "127.0.0.1:%u");
    exchange(&e);
    env_down(&e);
}

static void test_auth(void **state) {
    (void)state;
    syn_test_proxy_opts po = {.mode = SYN_TEST_PROXY_AUTH, .credentials = "dev:s3cr:et@x"};
    env e;
    env_up(&e, &po);
    dev_connect(&e, "http://dev:s3cr%%3Aet%%40x@127.0.0.1:%u");
    exchange(&e);
    assert_non_null(strstr(syn_test_proxy_stats_get(e.px)->last_request,
                           "\r\nProxy-Authorization: Basic ZGV2OnMzY3I6ZXRAeA==\r\n"));
    env_down(&e);

    /* a wrong password, and none */
    env_up(&e, &po);
    dev_connect(&e, "http://dev:wrong@127.0.0.1:%u");
    expect_down(&e, SYNESIS_ERR_PROXY_AUTH, "407");
    assert_non_null(strstr(e.dev.detail, "refused the credentials"));
    dev_connect(&e, "http://127.0.0.1:%u");
    expect_down(&e, SYNESIS_ERR_PROXY_AUTH, "no credentials");
    assert_int_equal(syn_test_proxy_stats_get(e.px)->tunnels, 0);
    assert_int_equal(syn_test_proxy_stats_get(e.px)->refused, 2);
    env_down(&e);
}

static void test_refused(void **state) {
    (void)state;
    syn_test_proxy_opts po = {.mode = SYN_TEST_PROXY_REFUSE};
    env e;
    env_up(&e, &po);
    dev_connect(&e, "http://127.0.0.1:%u");
    char want[160];
    snprintf(want, sizeof(want),
             "proxy 127.0.0.1:%u refused CONNECT 127.0.0.1:%u: HTTP/1.1 403 Forbidden",
             (unsigned)e.proxy_port, (unsigned)e.edge_port);
    expect_down(&e, SYNESIS_ERR_PROXY, want);
    env_down(&e);

    /* only this target refused */
    char target[64];
    po.mode = SYN_TEST_PROXY_OPEN;
    po.refuse_target = target;
    env_up(&e, NULL);
    snprintf(target, sizeof(target), "127.0.0.1:%u", (unsigned)e.edge_port);
    assert_int_equal(syn_test_proxy_start(&e.px, e.loop, &po, &e.proxy_port), 0);
    dev_connect(&e, "http://127.0.0.1:%u");
    expect_down(&e, SYNESIS_ERR_PROXY, "403");
    env_down(&e);
}

static void test_closed_and_garbage(void **state) {
    (void)state;
    syn_test_proxy_opts po = {.mode = SYN_TEST_PROXY_CLOSE};
    env e;
    env_up(&e, &po);
    dev_connect(&e, "http://127.0.0.1:%u");
    expect_down(&e, SYNESIS_ERR_PROXY, "without answering");
    env_down(&e);

    po.mode = SYN_TEST_PROXY_GARBAGE;
    env_up(&e, &po);
    dev_connect(&e, "http://127.0.0.1:%u");
    expect_down(&e, SYNESIS_ERR_PROXY, "not HTTP");
    assert_int_equal(syn_test_proxy_stats_get(e.px)->connections, 1);
    env_down(&e);
}

static void test_bytes_after_headers(void **state) {
    (void)state;
    /* the proxy's 200 and a TLS alert in one segment: the alert reaches TLS (nothing behind the
     * headers is swallowed) */
    syn_test_proxy_opts po = {.mode = SYN_TEST_PROXY_TRAILING};
    env e;
    env_up(&e, &po);
    dev_connect(&e, "http://127.0.0.1:%u");
    assert_true(syn_test_run_until(e.loop, is_closed, &e.dev, 10));
    if (e.dev.err != SYNESIS_ERR_TLS_HANDSHAKE || !strstr(e.dev.detail, "handshake failure"))
        fail_msg("expected the alert to fail the handshake, got %s: %s",
                 synesis_error_name(e.dev.err), e.dev.detail);
    assert_int_equal(syn_test_proxy_stats_get(e.px)->tunnels, 1);
    env_down(&e);
}

static void test_unreachable(void **state) {
    (void)state;
    env e;
    env_up(&e, NULL);
    /* a port nobody listens on */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    e.proxy_port = ntohs(a.sin_port);
    dev_connect(&e, "http://127.0.0.1:%u");
    char want[64];
    snprintf(want, sizeof(want), "proxy 127.0.0.1:%u", (unsigned)e.proxy_port);
    expect_down(&e, SYNESIS_ERR_SOCKET, want);
    env_down(&e);
}

static void test_proxy_timeout(void **state) {
    (void)state;
    /* a proxy that accepts and never answers: the link's one deadline covers it */
    env e;
    env_up(&e, NULL);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 4), 0);
    getsockname(fd, (struct sockaddr *)&a, &len);
    e.proxy_port = ntohs(a.sin_port);
    char d[SYNESIS_DETAIL_MAX];
    syn_proxy p;
    assert_int_equal(syn_proxy_select("127.0.0.1", "127.0.0.1", &p, d), 1);
    p.port = e.proxy_port;
    syn_sockaddr to;
    memset(&to, 0, sizeof(to));
    memcpy(&to.ss, &a, sizeof(a));
    to.len = sizeof(a);
    syn_tcplink_client_opts o;
    memset(&o, 0, sizeof(o));
    o.connect_to = &to;
    o.proxy = &p;
    o.target_host = "127.0.0.1";
    o.target_port = e.edge_port;
    o.ctx = e.cctx;
    o.server_name = "localhost";
    o.timeout = 0.3;
    assert_ok(syn_tcplink_connect(&e.dev.l, e.loop, &o, &ops, &e.dev, d), d);
    syn_proxy_clear(&p);
    expect_down(&e, SYNESIS_ERR_HANDSHAKE_TIMEOUT, "proxy CONNECT");
    close(fd);
    env_down(&e);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_select_configured),
        cmocka_unit_test(test_select_environment),
        cmocka_unit_test(test_open),
        cmocka_unit_test(test_trickle),
        cmocka_unit_test(test_auth),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_closed_and_garbage),
        cmocka_unit_test(test_bytes_after_headers),
        cmocka_unit_test(test_unreachable),
        cmocka_unit_test(test_proxy_timeout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

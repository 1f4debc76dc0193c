/*
 * QUIC over TCP links (src/tcplink.c): a client link and a server link over real TCP on loopback
 * with the test PKI: frames both ways, backpressure, bad frames, ALPN, the edge's verification
 * (trust, name, pin) with the QUIC errors, connect refused, timeouts, the peer closing, and free
 * from inside every op. Peers that misbehave on purpose are a forked plain TLS client.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "tcplink.h"
#include "tls.h"

#define QUIC_ALPN "synesis-tunnel/1"

static const char *pki(void) { return syn_test_pki_shared("tcplink"); }

#define assert_ok(rv, d)                                                                           \
    do {                                                                                           \
        int rv_ = (rv);                                                                            \
        if (rv_ != 0)                                                                              \
            fail_msg("%s: %s", synesis_error_name(rv_), d);                                        \
    } while (0)

/* ---- contexts ---------------------------------------------------------------------------- */

static SSL_CTX *quic_client_ctx(const uint8_t (*pins)[32], size_t npins) {
    syn_tls_client_config c;
    memset(&c, 0, sizeof(c));
    c.cert_file = syn_test_path(pki(), "device.pem");
    c.key_file = syn_test_path(pki(), "device.key");
    c.ca_file = syn_test_path(pki(), "ca.pem");
    c.spki_pins = pins;
    c.n_spki_pins = npins;
    SSL_CTX *ctx = NULL;
    char d[SYNESIS_DETAIL_MAX];
    assert_ok(syn_tls_client_ctx_new(&ctx, &c, d), d);
    return ctx;
}

static SSL_CTX *link_client_ctx(const uint8_t (*pins)[32], size_t npins) {
    SSL_CTX *q = quic_client_ctx(pins, npins), *ctx = NULL;
    char d[SYNESIS_DETAIL_MAX];
    assert_ok(syn_tcplink_client_ctx_new(&ctx, q, d), d);
    SSL_CTX_free(q); /* the link context keeps what it shares */
    /* no identity, no session of any kind */
    assert_null(SSL_CTX_get0_certificate(ctx));
    assert_int_equal(SSL_CTX_get_session_cache_mode(ctx), SSL_SESS_CACHE_OFF);
    assert_null(SSL_CTX_sess_get_new_cb(ctx));
    return ctx;
}

static SSL_CTX *link_server_ctx_of(const char *dir) {
    syn_tls_server_config s;
    memset(&s, 0, sizeof(s));
    s.cert_file = syn_test_path(dir, "edge.pem");
    s.key_file = syn_test_path(dir, "edge.key");
    s.ca_file = syn_test_path(dir, "ca.pem");
    s.alpn = QUIC_ALPN;
    s.tickets = 1;
    SSL_CTX *q = NULL, *ctx = NULL;
    char d[SYNESIS_DETAIL_MAX];
    assert_ok(syn_tls_server_ctx_new(&q, &s, d), d);
    assert_ok(syn_tcplink_server_ctx_new(&ctx, q, d), d);
    SSL_CTX_free(q);
    assert_non_null(SSL_CTX_get0_certificate(ctx));
    return ctx;
}

/* ---- one side of a link ------------------------------------------------------------------- */

enum free_in { FREE_NEVER, FREE_IN_UP, FREE_IN_PACKET, FREE_IN_WRITABLE, FREE_IN_CLOSED };

typedef struct side {
    syn_tcplink *l;
    int up, closed, err, writable;
    char detail[SYNESIS_DETAIL_MAX];
    size_t packets, bytes;
    uint32_t next_seq; /* frames carry a sequence number: order and content are checked */
    int bad;           /* a frame arrived out of order or corrupted */
    uint8_t first[SYN_TCPLINK_MAX_FRAME];
    size_t first_len;
    size_t target; /* packets awaited by got_packets */
    int echo;
    enum free_in free_in;
    int freed;
} side;

static void fill(uint8_t *buf, size_t len, uint32_t seq) {
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(seq * 31 + i * 7);
    if (len >= 4) {
        buf[0] = (uint8_t)(seq >> 24);
        buf[1] = (uint8_t)(seq >> 16);
        buf[2] = (uint8_t)(seq >> 8);
        buf[3] = (uint8_t)seq;
    }
}

static int check(const uint8_t *buf, size_t len, uint32_t seq) {
    uint8_t want[SYN_TCPLINK_MAX_FRAME];
    fill(want, len, seq);
    return memcmp(want, buf, len) == 0;
}

static void drop(side *s) {
    syn_tcplink_free(s->l);
    s->l = NULL;
    s->freed = 1;
}

static void on_up(syn_tcplink *l) {
    side *s = syn_tcplink_owner(l);
    s->up++;
    if (s->free_in == FREE_IN_UP)
        drop(s);
}

static void on_packet(syn_tcplink *l, const uint8_t *data, size_t len) {
    side *s = syn_tcplink_owner(l);
    if (s->packets == 0) {
        memcpy(s->first, data, len);
        s->first_len = len;
    }
    if (len >= 4 && !check(data, len, s->next_seq))
        s->bad = 1;
    s->next_seq++;
    s->packets++;
    s->bytes += len;
    if (s->echo)
        assert_true(syn_tcplink_send(l, data, len) >= 0);
    if (s->free_in == FREE_IN_PACKET)
        drop(s);
}

static void on_writable(syn_tcplink *l) {
    side *s = syn_tcplink_owner(l);
    s->writable++;
    if (s->free_in == FREE_IN_WRITABLE)
        drop(s);
}

static void on_closed(syn_tcplink *l, int err, const char *detail) {
    side *s = syn_tcplink_owner(l);
    s->closed++;
    s->err = err;
    snprintf(s->detail, sizeof(s->detail), "%s", detail ? detail : "");
    if (s->free_in == FREE_IN_CLOSED)
        drop(s);
}

static const syn_tcplink_ops ops = {on_up, on_packet, on_writable, on_closed};

/* ---- a listener whose connections become server links ------------------------------------- */

typedef struct server {
    struct ev_loop *loop;
    int lfd;
    ev_io w;
    uint16_t port;
    SSL_CTX *ctx;
    double timeout;
    side s;
    int accepted;
} server;

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents) {
    (void)revents;
    server *sv = w->data;
    int fd = accept4(sv->lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return;
    sv->accepted++;
    char d[SYNESIS_DETAIL_MAX];
    assert_ok(syn_tcplink_accept(&sv->s.l, loop, fd, sv->ctx, sv->timeout, &ops, &sv->s, d), d);
}

/* A listener on 127.0.0.1:0; with accept_links 0 nobody ever accepts (the kernel completes the
 * TCP handshakes, nothing answers TLS). */
static void server_start(server *sv, struct ev_loop *loop, SSL_CTX *ctx, int accept_links) {
    memset(sv, 0, sizeof(*sv));
    sv->loop = loop;
    sv->ctx = ctx;
    sv->timeout = 5;
    sv->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(sv->lfd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(sv->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(sv->lfd, 16), 0);
    socklen_t len = sizeof(a);
    getsockname(sv->lfd, (struct sockaddr *)&a, &len);
    sv->port = ntohs(a.sin_port);
    ev_io_init(&sv->w, accept_cb, sv->lfd, EV_READ);
    sv->w.data = sv;
    if (accept_links)
        ev_io_start(loop, &sv->w);
}

static void server_stop(server *sv) {
    ev_io_stop(sv->loop, &sv->w);
    syn_tcplink_free(sv->s.l);
    sv->s.l = NULL;
    close(sv->lfd);
    SSL_CTX_free(sv->ctx);
}

static syn_sockaddr loopback(uint16_t port) {
    syn_sockaddr a;
    memset(&a, 0, sizeof(a));
    struct sockaddr_in *in = (struct sockaddr_in *)&a.ss;
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    in->sin_port = htons(port);
    a.len = sizeof(*in);
    return a;
}

static int client_start(side *c, struct ev_loop *loop, SSL_CTX *ctx, uint16_t port,
                        const char *name, double timeout) {
    syn_sockaddr to = loopback(port);
    syn_tcplink_client_opts o;
    memset(&o, 0, sizeof(o));
    o.connect_to = &to;
    o.target_host = "127.0.0.1";
    o.target_port = port;
    o.ctx = ctx;
    o.server_name = name;
    o.timeout = timeout;
    return syn_tcplink_connect(&c->l, loop, &o, &ops, c, c->detail);
}

static int both_up(void *ud) {
    side **s = ud;
    return s[0]->up && s[1]->up;
}
static int is_closed(void *ud) { return ((side *)ud)->closed > 0; }
static int got_packets(void *ud) {
    side *s = ud;
    return s->packets >= s->target;
}

typedef struct pair {
    struct ev_loop *loop;
    server sv;
    side c;
    SSL_CTX *cctx;
} pair;

static void pair_up(pair *p) {
    p->loop = ev_loop_new(EVFLAG_AUTO);
    p->cctx = link_client_ctx(NULL, 0);
    server_start(&p->sv, p->loop, link_server_ctx_of(pki()), 1);
    memset(&p->c, 0, sizeof(p->c));
    /* (bounds, not speeds: the first handshake of the process is slow under valgrind) */
    assert_ok(client_start(&p->c, p->loop, p->cctx, p->sv.port, "localhost", 20), p->c.detail);
    assert_false(p->c.up); /* never from inside the call */
    side *both[2] = {&p->c, &p->sv.s};
    assert_true(syn_test_run_until(p->loop, both_up, both, 20));
    assert_true(syn_tcplink_is_up(p->c.l));
    assert_true(syn_tcplink_is_up(p->sv.s.l));
}

static void pair_down(pair *p) {
    syn_tcplink_free(p->c.l);
    p->c.l = NULL;
    server_stop(&p->sv);
    SSL_CTX_free(p->cctx);
    assert_int_equal(ev_run(p->loop, EVRUN_NOWAIT), 0);
    ev_loop_destroy(p->loop);
}

/* ---- tests -------------------------------------------------------------------------------- */

static void wait_packets(struct ev_loop *loop, side *s, size_t n) {
    s->target = n;
    assert_true(syn_test_run_until(loop, got_packets, s, 10));
}

static int below_half(void *ud) { return syn_tcplink_queued(ud) < SYN_TCPLINK_HIGH_WATER / 2; }

/* Sends one frame as a well-behaved sender does: above the high water, waits for the queue to
 * drain (the hard bound, SYN_TCPLINK_MAX_QUEUED, is never reached). */
static void send_paced(struct ev_loop *loop, syn_tcplink *l, const uint8_t *buf, size_t len) {
    int rv = syn_tcplink_send(l, buf, len);
    assert_true(rv >= 0);
    if (rv == 1)
        assert_true(syn_test_run_until(loop, below_half, l, 20));
}

static void test_frames_both_ways(void **state) {
    (void)state;
    pair p;
    pair_up(&p);
    /* the addresses of the TCP connection, both ends */
    const syn_sockaddr *cl = syn_tcplink_local(p.c.l), *sr = syn_tcplink_remote(p.sv.s.l);
    assert_int_equal(cl->len, sr->len);
    assert_memory_equal(&cl->ss, &sr->ss, cl->len);
    assert_int_equal(ntohs(((const struct sockaddr_in *)&syn_tcplink_remote(p.c.l)->ss)->sin_port),
                     p.sv.port);

    /* 1, 1200, 1500 bytes, echoed back */
    p.sv.s.echo = 1;
    static const size_t sizes[] = {1, 1200, 1500};
    uint8_t buf[SYN_TCPLINK_MAX_FRAME];
    uint32_t seq = 0;
    for (size_t i = 0; i < 3; i++) {
        fill(buf, sizes[i], seq++);
        assert_int_equal(syn_tcplink_send(p.c.l, buf, sizes[i]), 0);
    }
    wait_packets(p.loop, &p.c, 3);
    assert_int_equal(p.sv.s.packets, 3);
    assert_int_equal(p.c.bytes, 1 + 1200 + 1500);
    assert_int_equal(p.c.first_len, 1);
    assert_false(p.c.bad);
    assert_false(p.sv.s.bad);

    /* many back to back, both ways at once, sizes cycling through 1..1500 */
    p.sv.s.echo = 0;
    uint32_t base = p.c.next_seq; /* (the client's next expected, before any of these arrives) */
    for (int i = 0; i < 2000; i++) {
        size_t len = 1 + (size_t)(i * 97) % SYN_TCPLINK_MAX_FRAME;
        fill(buf, len, seq);
        send_paced(p.loop, p.c.l, buf, len);
        fill(buf, len, base + (uint32_t)i);
        send_paced(p.loop, p.sv.s.l, buf, len);
        seq++;
    }
    wait_packets(p.loop, &p.sv.s, 2003);
    wait_packets(p.loop, &p.c, 2003);
    assert_false(p.c.bad);
    assert_false(p.sv.s.bad);
    assert_int_equal(syn_tcplink_queued(p.c.l), 0);
    assert_int_equal(p.c.closed + p.sv.s.closed, 0);

    /* thousands of 1-byte frames back to back: many more than one read hands out per event,
     * most of them held by OpenSSL or the read buffer with nothing left in the socket to wake
     * the reader: all arrive */
    size_t before = p.sv.s.packets;
    for (int i = 0; i < 6000; i++)
        assert_true(syn_tcplink_send(p.c.l, buf, 1) >= 0);
    wait_packets(p.loop, &p.sv.s, before + 6000);
    assert_int_equal(p.sv.s.packets, before + 6000);

    /* bad lengths are refused without closing */
    assert_int_equal(syn_tcplink_send(p.c.l, buf, 0), SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(syn_tcplink_send(p.c.l, buf, SYN_TCPLINK_MAX_FRAME + 1),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    assert_true(syn_tcplink_is_up(p.c.l));

    /* the client closes: the server sees a clean close (close_notify), err 0 */
    syn_tcplink_free(p.c.l);
    p.c.l = NULL;
    assert_true(syn_test_run_until(p.loop, is_closed, &p.sv.s, 5));
    assert_int_equal(p.sv.s.err, 0);
    assert_false(syn_tcplink_is_up(p.sv.s.l));
    assert_true(syn_tcplink_send(p.sv.s.l, buf, 10) < 0);
    pair_down(&p);
}

static void test_backpressure(void **state) {
    (void)state;
    pair p;
    pair_up(&p);
    uint8_t buf[SYN_TCPLINK_MAX_FRAME];
    int rv = 0, n = 0;
    size_t sent = 0;
    while (rv == 0) {
        assert_true(n < 1000);
        fill(buf, sizeof(buf), (uint32_t)n++);
        rv = syn_tcplink_send(p.c.l, buf, sizeof(buf));
        sent += 2 + sizeof(buf);
    }
    assert_int_equal(rv, 1);
    assert_true(sent > SYN_TCPLINK_HIGH_WATER);
    assert_true(sent - (2 + sizeof(buf)) <= SYN_TCPLINK_HIGH_WATER);
    assert_int_equal(syn_tcplink_queued(p.c.l), sent);
    assert_int_equal(p.c.writable, 0);
    /* A sender that goes on regardless meets the hard bound: frames past it are refused (and
     * counted), the queue stays at most SYN_TCPLINK_MAX_QUEUED. */
    int over = 0;
    for (;;) {
        fill(buf, sizeof(buf), (uint32_t)n);
        if ((rv = syn_tcplink_send(p.c.l, buf, sizeof(buf))) != 1)
            break;
        assert_true(over++ < 1000);
        n++;
    }
    assert_int_equal(rv, SYNESIS_ERR_WOULD_BLOCK);
    assert_true(syn_tcplink_queued(p.c.l) <= SYN_TCPLINK_MAX_QUEUED);
    assert_true(syn_tcplink_queued(p.c.l) + 2 + sizeof(buf) > SYN_TCPLINK_MAX_QUEUED);
    assert_int_equal(syn_tcplink_dropped(p.c.l), 1);
    /* writable comes once the queue is below half the high water */
    while (!p.c.writable)
        assert_true(ev_run(p.loop, EVRUN_ONCE));
    assert_true(syn_tcplink_queued(p.c.l) < SYN_TCPLINK_HIGH_WATER / 2);
    assert_int_equal(p.c.writable, 1);
    wait_packets(p.loop, &p.sv.s, (size_t)n);
    assert_false(p.sv.s.bad);
    assert_int_equal(p.c.writable, 1);
    pair_down(&p);
}

/* A plain TLS client in a child process: connects, offers alpn (NULL: none), writes bytes (one
 * byte per TLS record and TCP segment with bytewise), then reads until the link closes. */
static pid_t raw_client(uint16_t port, const char *alpn, const uint8_t *bytes, size_t n,
                        int bytewise) {
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid)
        return pid;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = htons(port)};
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
        _exit(2);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = SSL_new(ctx);
    if (alpn) {
        unsigned char w[64];
        w[0] = (unsigned char)strlen(alpn);
        memcpy(w + 1, alpn, w[0]);
        SSL_set_alpn_protos(ssl, w, w[0] + 1u);
    }
    SSL_set_fd(ssl, fd);
    if (SSL_connect(ssl) != 1)
        _exit(3);
    for (size_t i = 0; i < n;) {
        size_t k = bytewise ? 1 : n - i;
        int w = SSL_write(ssl, bytes + i, (int)k);
        if (w <= 0)
            _exit(4);
        i += (size_t)w;
        if (bytewise)
            usleep(200);
    }
    char sink[4096];
    while (SSL_read(ssl, sink, sizeof(sink)) > 0)
        ;
    _exit(0);
}

static int reap(pid_t pid, int sig) {
    int st = 0;
    if (sig)
        kill(pid, sig);
    waitpid(pid, &st, 0);
    return st;
}

static void test_one_byte_at_a_time(void **state) {
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    server sv;
    server_start(&sv, loop, link_server_ctx_of(pki()), 1);
    /* three frames (4, 1500, 1), each byte its own TLS record and TCP segment */
    uint8_t wire[3 * 2 + 4 + 1500 + 1];
    size_t off = 0;
    static const size_t sizes[] = {4, 1500, 1};
    for (uint32_t i = 0; i < 3; i++) {
        wire[off++] = (uint8_t)(sizes[i] >> 8);
        wire[off++] = (uint8_t)sizes[i];
        fill(wire + off, sizes[i], i);
        off += sizes[i];
    }
    pid_t pid = raw_client(sv.port, SYN_TCPLINK_ALPN, wire, off, 1);
    sv.s.target = 3;
    assert_true(syn_test_run_until(loop, got_packets, &sv.s, 20));
    assert_int_equal(sv.s.packets, 3);
    assert_int_equal(sv.s.bytes, 4 + 1500 + 1);
    assert_false(sv.s.bad);
    assert_int_equal(sv.s.closed, 0);
    server_stop(&sv);
    reap(pid, SIGTERM);
    assert_int_equal(ev_run(loop, EVRUN_NOWAIT), 0);
    ev_loop_destroy(loop);
}

/* A peer that sends a frame of length bad (after a good one): the link closes with
 * SYNESIS_ERR_QUIC, "bad frame", the good frame delivered first. */
static void bad_frame(unsigned bad) {
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    server sv;
    server_start(&sv, loop, link_server_ctx_of(pki()), 1);
    uint8_t wire[2 + 8 + 2 + 1600];
    memset(wire, 0, sizeof(wire));
    wire[1] = 8;
    fill(wire + 2, 8, 0);
    wire[10] = (uint8_t)(bad >> 8);
    wire[11] = (uint8_t)bad;
    pid_t pid = raw_client(sv.port, SYN_TCPLINK_ALPN, wire, sizeof(wire), 0);
    assert_true(syn_test_run_until(loop, is_closed, &sv.s, 10));
    assert_int_equal(sv.s.err, SYNESIS_ERR_QUIC);
    assert_non_null(strstr(sv.s.detail, "bad frame"));
    assert_int_equal(sv.s.packets, 1);
    assert_int_equal(sv.s.up, 1);
    server_stop(&sv);
    reap(pid, SIGTERM);
    assert_int_equal(ev_run(loop, EVRUN_NOWAIT), 0);
    ev_loop_destroy(loop);
}

static void test_zero_frame(void **state) {
    (void)state;
    bad_frame(0);
}

static void test_oversize_frame(void **state) {
    (void)state;
    bad_frame(SYN_TCPLINK_MAX_FRAME + 1);
}

/* The server link refuses a client offering another protocol, or none. */
static void server_alpn(const char *alpn) {
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    server sv;
    server_start(&sv, loop, link_server_ctx_of(pki()), 1);
    pid_t pid = raw_client(sv.port, alpn, NULL, 0, 0);
    assert_true(syn_test_run_until(loop, is_closed, &sv.s, 10));
    assert_int_equal(sv.s.err, SYNESIS_ERR_ALPN);
    assert_int_equal(sv.s.up, 0);
    int st = reap(pid, 0);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 3); /* its handshake failed */
    server_stop(&sv);
    assert_int_equal(ev_run(loop, EVRUN_NOWAIT), 0);
    ev_loop_destroy(loop);
}

static void test_server_wrong_alpn(void **state) {
    (void)state;
    server_alpn(QUIC_ALPN);
    server_alpn(NULL);
}

/* A client link against a server context, expecting err (0: up). */
static void client_against(SSL_CTX *sctx, SSL_CTX *cctx, const char *name, int err,
                           const char *in_detail) {
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    server sv;
    server_start(&sv, loop, sctx, 1);
    side c;
    memset(&c, 0, sizeof(c));
    assert_ok(client_start(&c, loop, cctx, sv.port, name, 5), c.detail);
    if (err == 0) {
        side *both[2] = {&c, &sv.s};
        assert_true(syn_test_run_until(loop, both_up, both, 5));
    } else {
        assert_true(syn_test_run_until(loop, is_closed, &c, 5));
        if (c.err != err)
            fail_msg("expected %s, got %s: %s", synesis_error_name(err), synesis_error_name(c.err),
                     c.detail);
        assert_int_equal(c.up, 0);
        assert_false(syn_tcplink_is_up(c.l));
        if (in_detail && !strstr(c.detail, in_detail))
            fail_msg("detail \"%s\" lacks \"%s\"", c.detail, in_detail);
    }
    syn_tcplink_free(c.l);
    server_stop(&sv);
    SSL_CTX_free(cctx);
    syn_test_run_for(loop, 0.02);
    assert_int_equal(ev_run(loop, EVRUN_NOWAIT), 0);
    ev_loop_destroy(loop);
}

static void test_client_wrong_alpn(void **state) {
    (void)state;
    /* an edge that speaks TLS on TCP but not this protocol */
    SSL_CTX *q = link_server_ctx_of(pki()), *h2 = NULL;
    char d[SYNESIS_DETAIL_MAX];
    assert_ok(syn_tls_server_ctx_identity_of(&h2, q, "h2", d), d);
    SSL_CTX_free(q);
    client_against(h2, link_client_ctx(NULL, 0), "localhost", SYNESIS_ERR_ALPN, NULL);
}

static void test_untrusted_edge(void **state) {
    (void)state;
    const char *other = syn_test_pki_shared("other");
    client_against(link_server_ctx_of(other), link_client_ctx(NULL, 0), "localhost",
                   SYNESIS_ERR_PEER_UNTRUSTED, "edge certificate verify failed");
}

static void test_name_mismatch(void **state) {
    (void)state;
    client_against(link_server_ctx_of(pki()), link_client_ctx(NULL, 0), "wrong.example.com",
                   SYNESIS_ERR_PEER_NAME_MISMATCH, "wrong.example.com");
    /* an IP literal is verified as one */
    client_against(link_server_ctx_of(pki()), link_client_ctx(NULL, 0), "127.0.0.2",
                   SYNESIS_ERR_PEER_NAME_MISMATCH, "127.0.0.2");
}

static void test_pins(void **state) {
    (void)state;
    uint8_t pins[2][32];
    memset(pins, 0xA5, sizeof(pins));
    client_against(link_server_ctx_of(pki()), link_client_ctx(pins, 1), "localhost",
                   SYNESIS_ERR_PEER_PIN_MISMATCH, "pinned");
    /* the edge's own key among the pins passes */
    X509 *edge = NULL;
    FILE *f = fopen(syn_test_path(pki(), "edge.pem"), "r");
    assert_non_null(f);
    edge = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_int_equal(syn_spki_sha256(edge, pins[1]), 0);
    X509_free(edge);
    client_against(link_server_ctx_of(pki()), link_client_ctx(pins, 2), "localhost", 0, NULL);
}

static void test_connect_refused(void **state) {
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    /* a port nobody listens on */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    SSL_CTX *cctx = link_client_ctx(NULL, 0);
    side c;
    memset(&c, 0, sizeof(c));
    int rv = client_start(&c, loop, cctx, ntohs(a.sin_port), "localhost", 5);
    if (rv == 0) {
        assert_true(syn_test_run_until(loop, is_closed, &c, 5));
        rv = c.err;
    }
    assert_int_equal(rv, SYNESIS_ERR_SOCKET);
    assert_non_null(strstr(c.detail, "refused"));
    assert_non_null(strstr(c.detail, "127.0.0.1"));
    syn_tcplink_free(c.l);
    SSL_CTX_free(cctx);
    assert_int_equal(ev_run(loop, EVRUN_NOWAIT), 0);
    ev_loop_destroy(loop);
}

static void test_timeouts(void **state) {
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    /* client: a listener that never answers TLS */
    server sv;
    server_start(&sv, loop, link_server_ctx_of(pki()), 0);
    SSL_CTX *cctx = link_client_ctx(NULL, 0);
    side c;
    memset(&c, 0, sizeof(c));
    assert_ok(client_start(&c, loop, cctx, sv.port, "localhost", 0.3), c.detail);
    assert_true(syn_test_run_until(loop, is_closed, &c, 5));
    assert_int_equal(c.err, SYNESIS_ERR_HANDSHAKE_TIMEOUT);
    assert_non_null(strstr(c.detail, "TLS handshake"));
    syn_tcplink_free(c.l);
    server_stop(&sv);
    /* server: a client that never speaks */
    server_start(&sv, loop, link_server_ctx_of(pki()), 1);
    sv.timeout = 0.3;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    syn_sockaddr to = loopback(sv.port);
    assert_int_equal(connect(fd, (struct sockaddr *)&to.ss, to.len), 0);
    assert_true(syn_test_run_until(loop, is_closed, &sv.s, 5));
    assert_int_equal(sv.s.err, SYNESIS_ERR_HANDSHAKE_TIMEOUT);
    close(fd);
    server_stop(&sv);
    SSL_CTX_free(cctx);
    assert_int_equal(ev_run(loop, EVRUN_NOWAIT), 0);
    ev_loop_destroy(loop);
}

static int is_up(void *ud) { return ((side *)ud)->up > 0; }

static void test_peer_gone(void **state) {
    (void)state;
    /* the peer process dies: its TCP connection ends without close_notify: CONNECTION_LOST */
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    server sv;
    server_start(&sv, loop, link_server_ctx_of(pki()), 1);
    pid_t pid = raw_client(sv.port, SYN_TCPLINK_ALPN, NULL, 0, 0);
    assert_true(syn_test_run_until(loop, is_up, &sv.s, 5));
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    assert_true(syn_test_run_until(loop, is_closed, &sv.s, 5));
    assert_int_equal(sv.s.err, SYNESIS_ERR_CONNECTION_LOST);
    server_stop(&sv);
    assert_int_equal(ev_run(loop, EVRUN_NOWAIT), 0);
    ev_loop_destroy(loop);
}

static void test_no_sigpipe(void **state) {
    (void)state;
    /* SIGPIPE at its default action, as in an application that never heard of it: writing to a
     * peer that is gone must not kill the process */
    void (*old)(int) = signal(SIGPIPE, SIG_DFL);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    server sv;
    server_start(&sv, loop, link_server_ctx_of(pki()), 1);
    pid_t pid = raw_client(sv.port, SYN_TCPLINK_ALPN, NULL, 0, 0);
    assert_true(syn_test_run_until(loop, is_up, &sv.s, 5));
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    uint8_t buf[1000];
    memset(buf, 7, sizeof(buf));
    for (int i = 0; i < 4; i++)
        assert_int_equal(syn_tcplink_send(sv.s.l, buf, sizeof(buf)), 0);
    /* free writes what it can and close_notify: the first write meets the RST, the next EPIPE */
    syn_tcplink_free(sv.s.l);
    sv.s.l = NULL;
    server_stop(&sv);
    assert_int_equal(ev_run(loop, EVRUN_NOWAIT), 0);
    ev_loop_destroy(loop);
    signal(SIGPIPE, old);
}

/* free from inside each op: nothing more is called, nothing is left on the loop */
static void test_free_inside_ops(void **state) {
    (void)state;
    uint8_t buf[SYN_TCPLINK_MAX_FRAME];
    memset(buf, 1, sizeof(buf));
    /* up */
    {
        pair p;
        p.loop = ev_loop_new(EVFLAG_AUTO);
        p.cctx = link_client_ctx(NULL, 0);
        server_start(&p.sv, p.loop, link_server_ctx_of(pki()), 1);
        memset(&p.c, 0, sizeof(p.c));
        p.c.free_in = FREE_IN_UP;
        assert_ok(client_start(&p.c, p.loop, p.cctx, p.sv.port, "localhost", 5), p.c.detail);
        assert_true(syn_test_run_until(p.loop, is_closed, &p.sv.s, 5)); /* the edge sees it go */
        assert_int_equal(p.c.up, 1);
        assert_true(p.c.freed);
        assert_int_equal(p.c.closed, 0);
        pair_down(&p);
    }
    /* packet: the server frees in the first of many frames queued */
    {
        pair p;
        pair_up(&p);
        p.sv.s.free_in = FREE_IN_PACKET;
        for (int i = 0; i < 100; i++)
            assert_true(syn_tcplink_send(p.c.l, buf, sizeof(buf)) >= 0);
        assert_true(syn_test_run_until(p.loop, is_closed, &p.c, 5));
        assert_int_equal(p.sv.s.packets, 1);
        assert_int_equal(p.sv.s.closed, 0);
        /* close_notify; or, should the client still be writing when the server's socket
         * closes, the RST */
        assert_true(p.c.err == 0 || p.c.err == SYNESIS_ERR_CONNECTION_LOST);
        pair_down(&p);
    }
    /* writable */
    {
        pair p;
        pair_up(&p);
        p.c.free_in = FREE_IN_WRITABLE;
        while (syn_tcplink_send(p.c.l, buf, sizeof(buf)) == 0)
            ;
        assert_true(syn_test_run_until(p.loop, is_closed, &p.sv.s, 5));
        assert_int_equal(p.c.writable, 1);
        assert_int_equal(p.c.closed, 0);
        pair_down(&p);
    }
    /* closed */
    {
        pair p;
        pair_up(&p);
        p.c.free_in = FREE_IN_CLOSED;
        syn_tcplink_free(p.sv.s.l);
        p.sv.s.l = NULL;
        assert_true(syn_test_run_until(p.loop, is_closed, &p.c, 5));
        assert_true(p.c.freed);
        assert_int_equal(p.c.err, 0);
        pair_down(&p);
    }
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frames_both_ways),   cmocka_unit_test(test_backpressure),
        cmocka_unit_test(test_one_byte_at_a_time), cmocka_unit_test(test_zero_frame),
        cmocka_unit_test(test_oversize_frame),     cmocka_unit_test(test_server_wrong_alpn),
        cmocka_unit_test(test_client_wrong_alpn),  cmocka_unit_test(test_untrusted_edge),
        cmocka_unit_test(test_name_mismatch),      cmocka_unit_test(test_pins),
        cmocka_unit_test(test_connect_refused),    cmocka_unit_test(test_timeouts),
        cmocka_unit_test(test_peer_gone),          cmocka_unit_test(test_no_sigpipe),
        cmocka_unit_test(test_free_inside_ops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

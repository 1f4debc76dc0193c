/* Hostile peers on the edge's TCP listener (QUIC over TCP, docs/reliability.md "Hostile TCP
 * peers"), on loopback against the reference edge, with real devices served meanwhile:
 *  - slowloris: 200 connections that start TLS and never finish it: the edge holds at most
 *    max_tcp_handshakes of them, closes the rest at once and the held ones at handshake_timeout;
 *    a device over TCP and one over UDP keep completing requests throughout, and a new device
 *    connects over TCP afterwards;
 *  - a frame's length announced (the largest allowed) and its bytes trickled one at a time: the
 *    link, carrying no connection, is closed at handshake_timeout although bytes keep coming;
 *  - a peer that sends and never reads (1200-byte long-header packets of an unknown version with
 *    255-byte connection IDs, each answered statelessly by a ~530-byte Version Negotiation): the
 *    edge's queue for that link stops at SYN_TCPLINK_MAX_QUEUED and the rest is dropped, instead
 *    of growing with what the peer sends; a device is served meanwhile;
 *  - 2000 links opened (TLS handshake, a frame) and closed (half with close_notify, half reset):
 *    afterwards no link is left, the process has the same descriptors, and (without ASan) the
 *    heap is back within a small margin of where it was after the first 100. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "harness.h"
#include "synesis/request.h"
#include "tcplink.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

static int connect_to_edge(uint16_t port, int rcvbuf) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    assert_true(fd >= 0);
    if (rcvbuf)
        assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int rv = connect(fd, (struct sockaddr *)&a, sizeof(a));
    assert_true(rv == 0 || errno == EINPROGRESS);
    return fd;
}

static SSL_CTX *client_ctx(void) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(ctx);
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL); /* (the edge's identity is not the point) */
    static const unsigned char alpn[] = "\x0dsynesis-tcp/1";
    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn) - 1);
    return ctx;
}

/* The TLS handshake as a link's peer, the edge served by the loop meanwhile. */
static SSL *handshake(struct ev_loop *loop, SSL_CTX *ctx, int fd) {
    SSL *ssl = SSL_new(ctx);
    assert_non_null(ssl);
    SSL_set_fd(ssl, fd);
    for (int i = 0; i < 20000; i++) {
        int rv = SSL_connect(ssl);
        if (rv == 1)
            return ssl;
        int err = SSL_get_error(ssl, rv);
        if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE)
            fail_msg("TLS to the edge's TCP listener failed (%d)", err);
        ev_run(loop, EVRUN_NOWAIT);
        if (i > 50)
            usleep(200);
    }
    fail_msg("TLS to the edge's TCP listener: no handshake");
    return NULL;
}

/* Writes all of buf through ssl, serving the edge while the socket is full. */
static void write_all(struct ev_loop *loop, SSL *ssl, const void *buf, int len) {
    for (int i = 0; i < 100000; i++) {
        int rv = SSL_write(ssl, buf, len);
        if (rv == len)
            return;
        int err = SSL_get_error(ssl, rv);
        if (err != SSL_ERROR_WANT_WRITE && err != SSL_ERROR_WANT_READ)
            fail_msg("writing to the edge failed (%d)", err);
        ev_run(loop, EVRUN_NOWAIT);
    }
    fail_msg("the edge does not read");
}

/* 1 once the edge has closed fd (a read gives EOF or an error). */
static int edge_closed(int fd) {
    char b[4096];
    for (;;) {
        ssize_t n = recv(fd, b, sizeof(b), MSG_DONTWAIT);
        if (n > 0)
            continue;
        return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
    }
}

/* 1 once the edge closed fd within 3 s, the loop served meanwhile (through ssl when set: a
 * close_notify or an error; else a read giving 0 or an error other than EAGAIN). */
static int closed_by_edge(struct ev_loop *loop, SSL *ssl, int fd) {
    for (int i = 0; i < 3000; i++) {
        ev_run(loop, EVRUN_NOWAIT);
        char b[256];
        ssize_t n;
        if (ssl) {
            int rv = SSL_read(ssl, b, sizeof(b));
            if (rv > 0)
                continue;
            int err = SSL_get_error(ssl, rv);
            if (err != SSL_ERROR_WANT_READ)
                return 1;
        } else {
            n = read(fd, b, sizeof(b));
            if (n == 0 || (n < 0 && errno != EAGAIN))
                return 1;
        }
        usleep(1000);
    }
    return 0;
}

static void request_ok(struct ev_loop *loop, synesis_tunnel *t, const char *what) {
    syn_test_result res = {0};
    syn_test_request(loop, t, what, strlen(what), NULL, &res, 10);
    if (res.status != 0 || res.len != strlen(what) || memcmp(res.data, what, res.len) != 0)
        fail_msg("request \"%s\": status %d (%s)", what, res.status, res.detail);
    free(res.data);
}

static synesis_tunnel *device(struct ev_loop *loop, const char *pki, syn_edge *e,
                              synesis_transport tr) {
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, pki, syn_edge_port(e));
    cfg.transport = tr;
    return syn_test_tunnel_connected(loop, &cfg, NULL, NULL, 10);
}

/* ---- slowloris ---- */

#define LORIS 200

static void test_slowloris(void **state) {
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    const char *pki = syn_test_pki_shared("tcph-1");
    syn_edge_config ec;
    syn_test_edge_config(&ec, pki);
    ec.handshake_timeout = 1.0;
    syn_edge *e = syn_test_edge_start(loop, &ec);
    uint16_t port = syn_edge_tcp_port(e);
    synesis_tunnel *dt = device(loop, pki, e, SYNESIS_TRANSPORT_TCP);
    synesis_tunnel *du = device(loop, pki, e, SYNESIS_TRANSPORT_UDP);

    /* Each sends the first bytes of a ClientHello record (a 512-byte one announced) and stops. */
    int fds[LORIS];
    for (int i = 0; i < LORIS; i++) {
        fds[i] = connect_to_edge(port, 0);
        ev_run(loop, EVRUN_NOWAIT);
    }
    syn_test_run_for(loop, 0.05);
    for (int i = 0; i < LORIS; i++)
        (void)send(fds[i], "\x16\x03\x01\x02\x00\x01", 6, MSG_NOSIGNAL);
    syn_test_run_for(loop, 0.1);
    syn_edge_stats es;
    syn_edge_get_stats(e, &es);
    assert_int_equal(es.tcp_handshaking, ec.max_tcp_handshakes);
    assert_int_equal(es.tcp_refused, LORIS - ec.max_tcp_handshakes);
    assert_int_equal(es.tcp_links, 1); /* the device's */
    int closed = 0;
    for (int i = 0; i < LORIS; i++)
        closed += edge_closed(fds[i]);
    assert_int_equal(closed, LORIS - (int)ec.max_tcp_handshakes);

    /* The devices are served while the held connections wait for their deadline. */
    request_ok(loop, dt, "over tcp during slowloris");
    request_ok(loop, du, "over udp during slowloris");

    /* The deadline: every held connection closed, the devices still served. */
    syn_test_run_for(loop, 1.2);
    syn_edge_get_stats(e, &es);
    assert_int_equal(es.tcp_handshaking, 0);
    assert_int_equal(es.tcp_links, 1);
    closed = 0;
    for (int i = 0; i < LORIS; i++) {
        closed += edge_closed(fds[i]);
        close(fds[i]);
    }
    assert_int_equal(closed, LORIS);
    request_ok(loop, dt, "over tcp after slowloris");
    request_ok(loop, du, "over udp after slowloris");
    synesis_tunnel *dn = device(loop, pki, e, SYNESIS_TRANSPORT_TCP);
    request_ok(loop, dn, "a new device over tcp");
    synesis_tunnel_free(dn);
    synesis_tunnel_free(du);
    syn_test_finish(loop, dt, e);
}

/* ---- frames that are not QUIC, bad lengths, a small slowloris ---- */

static void test_hostile_frames(void **state) {
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    const char *pki = syn_test_pki_shared("tcph-5");
    syn_edge_config ec;
    syn_test_edge_config(&ec, pki);
    ec.handshake_timeout = 1.0;
    ec.max_tcp_handshakes = 4;
    syn_edge *e = syn_test_edge_start(loop, &ec);
    uint16_t port = syn_edge_tcp_port(e);

    /* 1. Plain text, not TLS: the edge closes it. */
    int fd = connect_to_edge(port, 0);
    syn_test_run_for(loop, 0.05);
    static const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_true(write(fd, junk, sizeof(junk) - 1) > 0);
    assert_true(closed_by_edge(loop, NULL, fd));
    close(fd);

    SSL_CTX *ctx = client_ctx();

    /* 2. A frame of length 0 after the TLS handshake: the edge closes the link. */
    fd = connect_to_edge(port, 0);
    SSL *ssl = handshake(loop, ctx, fd);
    assert_int_equal(SSL_write(ssl, "\x00\x00", 2), 2);
    assert_true(closed_by_edge(loop, ssl, fd));
    SSL_free(ssl);
    close(fd);

    /* 3. A length above the largest frame: closed too. */
    fd = connect_to_edge(port, 0);
    ssl = handshake(loop, ctx, fd);
    assert_int_equal(SSL_write(ssl, "\xff\xff", 2), 2);
    assert_true(closed_by_edge(loop, ssl, fd));
    SSL_free(ssl);
    close(fd);

    /* 4. Frames of garbage packets (random bytes, a short one, a long header with nonsense):
     * dropped as garbage datagrams are; the link stays until it has carried no connection for
     * handshake_timeout. */
    fd = connect_to_edge(port, 0);
    ssl = handshake(loop, ctx, fd);
    uint8_t buf[2 + 1400];
    for (int k = 0; k < 50; k++) {
        size_t len = k % 5 == 0 ? 1 : 1200 + (size_t)k;
        buf[0] = (uint8_t)(len >> 8);
        buf[1] = (uint8_t)len;
        for (size_t i = 0; i < len; i++)
            buf[2 + i] = (uint8_t)(i * 131 + (size_t)k * 17);
        if (k % 3 == 0)
            buf[2] = 0xc0; /* a long header, version 1 */
        assert_int_equal(SSL_write(ssl, buf, (int)(2 + len)), (int)(2 + len));
        ev_run(loop, EVRUN_NOWAIT);
    }
    syn_test_run_for(loop, 0.2);
    syn_edge_stats es;
    syn_edge_get_stats(e, &es);
    assert_true(es.tcp_frames >= 50);
    assert_int_equal(es.active, 0);             /* no connection made of garbage */
    assert_true(closed_by_edge(loop, ssl, fd)); /* idle: closed after handshake_timeout */
    SSL_free(ssl);
    close(fd);
    SSL_CTX_free(ctx);

    /* 5. Slowloris: more silent connections than the edge lets handshake at once. The extra
     * ones are closed at once; the others when their handshake times out. */
    int fds[8];
    for (int i = 0; i < 8; i++)
        fds[i] = connect_to_edge(port, 0);
    syn_test_run_for(loop, 0.2);
    syn_edge_get_stats(e, &es);
    assert_int_equal(es.tcp_refused, 4);
    assert_int_equal(es.tcp_handshaking, 4);
    syn_test_run_for(loop, 1.5);
    syn_edge_get_stats(e, &es);
    assert_int_equal(es.tcp_handshaking, 0);
    for (int i = 0; i < 8; i++)
        close(fds[i]);

    /* The edge still serves a tunnel over TCP. */
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, pki, syn_edge_port(e));
    cfg.transport = SYNESIS_TRANSPORT_TCP;
    synesis_tunnel *t = syn_test_tunnel_connected(loop, &cfg, NULL, NULL, 10);
    syn_test_result res = {0};
    syn_test_request(loop, t, "still", 5, NULL, &res, 10);
    assert_int_equal(res.status, 0);
    free(res.data);
    syn_test_finish(loop, t, e);
}

/* ---- a frame trickled ---- */

static void test_trickle(void **state) {
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    const char *pki = syn_test_pki_shared("tcph-2");
    syn_edge_config ec;
    syn_test_edge_config(&ec, pki);
    ec.handshake_timeout = 1.0;
    syn_edge *e = syn_test_edge_start(loop, &ec);
    SSL_CTX *ctx = client_ctx();
    int fd = connect_to_edge(syn_edge_tcp_port(e), 0);
    SSL *ssl = handshake(loop, ctx, fd);
    uint8_t hdr[2] = {SYN_TCPLINK_MAX_FRAME >> 8, SYN_TCPLINK_MAX_FRAME & 0xff};
    write_all(loop, ssl, hdr, 2);
    /* One byte every 20 ms (a TLS record each: the edge sees progress), for up to 4 s. */
    double t0 = ev_time();
    int sent = 0, gone = 0;
    while (ev_time() - t0 < 4.0) {
        if (SSL_write(ssl, "x", 1) == 1)
            sent++;
        syn_test_run_for(loop, 0.02);
        if (edge_closed(fd)) {
            gone = 1;
            break;
        }
    }
    double took = ev_time() - t0;
    assert_true(gone);
    assert_true(sent < SYN_TCPLINK_MAX_FRAME); /* the frame never completed */
    assert_true(took >= 0.8 && took < 2.5);
    syn_edge_stats es;
    syn_edge_get_stats(e, &es);
    assert_int_equal(es.tcp_idle_closed, 1);
    assert_int_equal(es.tcp_frames, 0);
    print_message("trickle: %d bytes in %.2f s, then closed\n", sent, took);
    SSL_free(ssl);
    close(fd);
    SSL_CTX_free(ctx);
    syn_test_finish(loop, NULL, e);
}

/* ---- a peer that never reads ---- */

static void test_never_reads(void **state) {
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    const char *pki = syn_test_pki_shared("tcph-3");
    syn_edge_config ec;
    syn_test_edge_config(&ec, pki);
    ec.handshake_timeout = 60; /* (the link is not closed for carrying no connection meanwhile) */
    syn_edge *e = syn_test_edge_start(loop, &ec);
    synesis_tunnel *dt = device(loop, pki, e, SYNESIS_TRANSPORT_TCP);
    SSL_CTX *ctx = client_ctx();
    int fd = connect_to_edge(syn_edge_tcp_port(e), 4096);
    SSL *ssl = handshake(loop, ctx, fd);

    /* A long header of an unknown version with the longest connection IDs a version-independent
     * header allows, padded to 1200 bytes: each is answered with a Version Negotiation. */
    uint8_t f[2 + 1200];
    memset(f, 0, sizeof(f));
    f[0] = 1200 >> 8;
    f[1] = 1200 & 0xff;
    uint8_t *p = f + 2;
    p[0] = 0xc0;
    p[1] = 0x1a, p[2] = 0x2a, p[3] = 0x3a, p[4] = 0x4a;
    p[5] = 255;
    memset(p + 6, 0xd1, 255);
    p[6 + 255] = 255;
    memset(p + 7 + 255, 0x5c, 255);
    syn_edge_stats es;
    int frames = 0;
    for (; frames < 40000; frames++) {
        write_all(loop, ssl, f, (int)sizeof(f));
        if (frames % 64 == 0) {
            ev_run(loop, EVRUN_NOWAIT);
            syn_edge_get_stats(e, &es);
            if (es.tcp_send_dropped >= 1000)
                break;
        }
    }
    syn_test_run_for(loop, 0.1);
    syn_edge_get_stats(e, &es);
    print_message("never reads: %d frames sent, %llu received, %llu answers dropped, %llu bytes "
                  "queued on the edge (most on a link %llu)\n",
                  frames, (unsigned long long)es.tcp_frames,
                  (unsigned long long)es.tcp_send_dropped, (unsigned long long)es.tcp_queued,
                  (unsigned long long)es.tcp_queued_max);
    assert_true(es.tcp_send_dropped >= 1000);
    assert_true(es.tcp_queued_max <= SYN_TCPLINK_MAX_QUEUED);
    assert_true(es.tcp_queued_max > SYN_TCPLINK_HIGH_WATER);
    /* The device, on its own link, is served meanwhile. */
    request_ok(loop, dt, "served beside a peer that never reads");
    SSL_free(ssl);
    close(fd);
    SSL_CTX_free(ctx);
    syn_test_finish(loop, dt, e);
}

/* ---- 2000 links opened and closed ---- */

static int count_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

static int no_links(void *ud) {
    syn_edge_stats es;
    syn_edge_get_stats(ud, &es);
    return es.tcp_links == 0 && es.tcp_handshaking == 0;
}

static void open_close(struct ev_loop *loop, syn_edge *e, SSL_CTX *ctx, int n) {
    uint8_t frame[2 + 40] = {0, 40, 0x40}; /* a short header packet of no connection */
    for (int i = 0; i < n; i++) {
        int fd = connect_to_edge(syn_edge_tcp_port(e), 0);
        SSL *ssl = handshake(loop, ctx, fd);
        write_all(loop, ssl, frame, (int)sizeof(frame));
        ev_run(loop, EVRUN_NOWAIT);
        if (i % 2) {
            (void)SSL_shutdown(ssl);
        } else {
            struct linger lg = {.l_onoff = 1, .l_linger = 0}; /* a reset */
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        }
        SSL_free(ssl);
        close(fd);
        ev_run(loop, EVRUN_NOWAIT);
    }
    assert_true(syn_test_run_until(loop, no_links, e, 10));
}

static void test_open_close_2000(void **state) {
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    const char *pki = syn_test_pki_shared("tcph-4");
    syn_edge_config ec;
    syn_test_edge_config(&ec, pki);
    syn_edge *e = syn_test_edge_start(loop, &ec);
    SSL_CTX *ctx = client_ctx();
    open_close(loop, e, ctx, 100); /* warm-up: OpenSSL's and libev's one-time allocations */
    int fds0 = count_fds();
    size_t heap0 = mallinfo2().uordblks;
    open_close(loop, e, ctx, 2000);
    int fds1 = count_fds();
    size_t heap1 = mallinfo2().uordblks;
    syn_edge_stats es;
    syn_edge_get_stats(e, &es);
    print_message("2000 links: descriptors %d -> %d, heap %zu -> %zu bytes (%+ld)%s\n", fds0, fds1,
                  heap0, heap1, (long)heap1 - (long)heap0,
                  UNDER_ASAN ? " (ASan's allocator: not judged)" : "");
    assert_true(es.tcp_accepted >= 2100);
    assert_int_equal(es.tcp_refused, 0);
    assert_int_equal(fds1, fds0);
    if (!UNDER_ASAN)
        assert_true(heap1 < heap0 + 64 * 1024);
    SSL_CTX_free(ctx);
    syn_test_finish(loop, NULL, e);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hostile_frames),  cmocka_unit_test(test_slowloris),
        cmocka_unit_test(test_trickle),         cmocka_unit_test(test_never_reads),
        cmocka_unit_test(test_open_close_2000),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Batched UDP I/O (src/udp.c): GSO on send (runs of equal-size datagrams as one UDP_SEGMENT send)
 * and its runtime fallback, GRO on receive (coalesced bursts split again), over real sockets on
 * loopback; then whole tunnels through the edge with GSO working and with GSO refused.
 *
 * sendmmsg() is wrapped (--wrap=sendmmsg, tests/CMakeLists.txt): on demand, an entry carrying a
 * UDP_SEGMENT control message fails the way a kernel or driver refuses GSO.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "synesis/request.h"
#include "udp.h"

/* ---- the sendmmsg() wrapper ---- */

int __real_sendmmsg(int fd, struct mmsghdr *mm, unsigned int n, int flags);

static struct {
    int gso_errno;       /* fail entries carrying UDP_SEGMENT with this errno (0 = pass) */
    int gso_fail_left;   /* ... this many times (-1 = always) */
    int eagain_left;     /* fail the next calls with EAGAIN */
    unsigned gso_tries;  /* entries carrying UDP_SEGMENT that reached the wrapper first */
    unsigned gso_passed; /* ... and went to the kernel */
    unsigned entries;    /* entries handed to the kernel */
} wrap;

static int has_segment(const struct msghdr *h) {
    for (struct cmsghdr *c = CMSG_FIRSTHDR((struct msghdr *)h); c;
         c = CMSG_NXTHDR((struct msghdr *)h, c))
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_SEGMENT)
            return 1;
    return 0;
}

int __wrap_sendmmsg(int fd, struct mmsghdr *mm, unsigned int n, int flags);
int __wrap_sendmmsg(int fd, struct mmsghdr *mm, unsigned int n, int flags) {
    if (wrap.eagain_left > 0) {
        wrap.eagain_left--;
        errno = EAGAIN;
        return -1;
    }
    /* Like the kernel: the entries before a failing one go out, and their count is returned. */
    unsigned ok = 0;
    for (; ok < n; ok++) {
        if (!has_segment(&mm[ok].msg_hdr))
            continue;
        wrap.gso_tries++;
        if (wrap.gso_errno && wrap.gso_fail_left != 0)
            break;
        wrap.gso_passed++;
    }
    if (ok == 0 && n > 0) {
        if (wrap.gso_fail_left > 0)
            wrap.gso_fail_left--;
        errno = wrap.gso_errno;
        return -1;
    }
    int r = __real_sendmmsg(fd, mm, ok, flags);
    if (r > 0)
        wrap.entries += (unsigned)r;
    return r;
}

static void wrap_reset(void) { memset(&wrap, 0, sizeof(wrap)); }

/* ---- helpers ---- */

typedef struct pair {
    int a, b; /* a is connected to b */
    syn_sockaddr la, lb;
} pair;

static void pair_open(pair *p, int gro) {
    char detail[512];
    struct sockaddr_in lo = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    p->b = syn_udp_open(NULL, 0, (struct sockaddr *)&lo, sizeof(lo), 1, &p->lb, detail);
    assert_true(p->b >= 0);
    if (!gro) {
        int off = 0;
        (void)setsockopt(p->b, SOL_UDP, UDP_GRO, &off, sizeof(off));
    }
    p->a = syn_udp_open((struct sockaddr *)&p->lb.ss, p->lb.len, NULL, 0, 1, &p->la, detail);
    assert_true(p->a >= 0);
    assert_int_equal(syn_udp_set_buffers(p->b, 4 * 1024 * 1024, NULL, NULL), 0);
}

static void pair_close(pair *p) {
    close(p->a);
    close(p->b);
}

static uint8_t pat(size_t dgram, size_t i) { return (uint8_t)(dgram * 31 + i * 7 + 1); }

/* Queues datagrams of the given lengths (and ECN codepoints), each filled with its pattern. */
static void queue(syn_udp_tx *tx, const size_t *len, const uint8_t *ecn, size_t n, size_t first) {
    for (size_t k = 0; k < n; k++) {
        assert_true(syn_udp_tx_room(tx, len[k]));
        uint8_t *b = syn_udp_tx_next(tx);
        for (size_t i = 0; i < len[k]; i++)
            b[i] = pat(first + k, i);
        syn_udp_tx_push(tx, len[k], ecn ? ecn[k] : 0);
    }
}

/* Receives exactly n datagrams (first numbered `first`) and checks lengths, bytes and ECN.
 * Returns the number of recvmmsg messages they came in (fewer than n: GRO coalesced). */
static size_t expect(int fd, syn_udp_rx *rx, const size_t *len, const uint8_t *ecn, size_t n,
                     size_t first) {
    size_t got = 0, msgs = 0;
    for (int spins = 0; got < n && spins < 1000; spins++) {
        size_t before = rx->cur >= rx->nmsg ? 0 : 1;
        int r = syn_udp_recv(fd, rx);
        assert_true(r >= 0);
        if (r == 0) {
            usleep(1000);
            continue;
        }
        if (!before)
            msgs += rx->nmsg;
        for (int i = 0; i < r; i++, got++) {
            assert_true(got < n);
            assert_int_equal(rx->d[i].len, len[got]);
            for (size_t j = 0; j < len[got]; j++)
                if (rx->d[i].data[j] != pat(first + got, j))
                    fail_msg("datagram %zu byte %zu differs", got, j);
            if (ecn)
                assert_int_equal(rx->d[i].ecn, ecn[got]);
        }
    }
    assert_int_equal(got, n);
    assert_int_equal(syn_udp_recv(fd, rx), 0); /* nothing more */
    return msgs;
}

static syn_udp_tx *tx_new(int fd) {
    syn_udp_tx *tx = calloc(1, sizeof(*tx));
    assert_non_null(tx);
    assert_int_equal(syn_udp_tx_init(tx, fd, AF_INET), 0);
    return tx;
}

static void tx_free(syn_udp_tx *tx) {
    syn_udp_tx_free(tx);
    free(tx);
}

/* ---- GSO on send ---- */

/* A burst of equal datagrams and a shorter last one leave as one GSO send and arrive as separate
 * datagrams, each with its ECN codepoint. */
static void test_gso_burst(void **state) {
    (void)state;
    wrap_reset();
    pair p;
    pair_open(&p, 0);
    syn_udp_tx *tx = tx_new(p.a);
    syn_udp_rx *rx = syn_udp_rx_new(SYN_UDP_RX_BYTES_SERVER);
    assert_true(tx->gso);
    size_t len[11];
    uint8_t ecn[11];
    for (size_t i = 0; i < 11; i++) {
        len[i] = i < 10 ? 1200 : 500;
        ecn[i] = 2; /* ECT(0) */
    }
    queue(tx, len, ecn, 11, 0);
    assert_int_equal(syn_udp_flush(p.a, tx, NULL), 0);
    assert_int_equal(tx->n, 0);
    assert_int_equal(tx->gso_sends, 1);
    assert_int_equal(wrap.entries, 1);
    assert_true(tx->gso_proven);
    assert_int_equal(expect(p.b, rx, len, ecn, 11, 0), 11); /* no GRO on b: one by one */
    syn_udp_rx_free(rx);
    tx_free(tx);
    pair_close(&p);
}

/* A mixed batch: runs break at a larger datagram, a shorter one (which ends its run), another ECN
 * codepoint; a full batch splits into sends of at most 64 KiB. All arrive, in order. */
static void test_gso_mixed(void **state) {
    (void)state;
    wrap_reset();
    pair p;
    pair_open(&p, 0);
    syn_udp_tx *tx = tx_new(p.a);
    syn_udp_rx *rx = syn_udp_rx_new(SYN_UDP_RX_BYTES_SERVER);
    const size_t len[] = {1200, 1200, 1200, 800, 1200, 1200, 1452, 1452, 100, 1200, 1200, 1200};
    const uint8_t ecn[] = {2, 2, 2, 2, 2, 1, 1, 2, 2, 0, 0, 0};
    size_t n = sizeof(len) / sizeof(len[0]);
    queue(tx, len, ecn, n, 0);
    assert_int_equal(syn_udp_flush(p.a, tx, NULL), 0);
    /* Runs: [1200 x3, 800] [1200] [1200] [1452] [1452, 100] [1200 x3]. */
    assert_int_equal(wrap.entries, 6);
    assert_int_equal(tx->gso_sends, 3);
    expect(p.b, rx, len, ecn, n, 0);

    /* A full batch of 1452-byte datagrams: 64 KiB per send at most. */
    wrap_reset();
    size_t big[64];
    size_t nb = SYN_UDP_TX_BYTES / 1452 < 64 ? SYN_UDP_TX_BYTES / 1452 : 64;
    for (size_t i = 0; i < nb; i++)
        big[i] = 1452;
    queue(tx, big, NULL, nb, 100);
    assert_int_equal(syn_udp_flush(p.a, tx, NULL), 0);
    assert_int_equal(wrap.entries, (nb * 1452 + SYN_UDP_GSO_MAX_BYTES - 1) / SYN_UDP_GSO_MAX_BYTES);
    expect(p.b, rx, big, NULL, nb, 100);
    syn_udp_rx_free(rx);
    tx_free(tx);
    pair_close(&p);
}

/* The kernel or driver refuses GSO (EIO: no checksum offload, an IPsec route): the batch goes out
 * datagram by datagram, and GSO is never tried again on that socket. */
static void test_gso_fallback_eio(void **state) {
    (void)state;
    wrap_reset();
    wrap.gso_errno = EIO;
    wrap.gso_fail_left = -1;
    pair p;
    pair_open(&p, 0);
    syn_udp_tx *tx = tx_new(p.a);
    syn_udp_rx *rx = syn_udp_rx_new(SYN_UDP_RX_BYTES_SERVER);
    size_t len[20];
    for (size_t i = 0; i < 20; i++)
        len[i] = 1200;
    queue(tx, len, NULL, 20, 0);
    assert_int_equal(syn_udp_flush(p.a, tx, NULL), 0);
    assert_false(tx->gso);
    assert_int_equal(wrap.gso_tries, 1);
    assert_int_equal(wrap.entries, 20);
    expect(p.b, rx, len, NULL, 20, 0);
    queue(tx, len, NULL, 20, 20);
    assert_int_equal(syn_udp_flush(p.a, tx, NULL), 0);
    assert_int_equal(wrap.gso_tries, 1); /* never again */
    expect(p.b, rx, len, NULL, 20, 20);
    /* Another socket judges afresh. */
    syn_udp_tx_set_socket(tx, p.a);
    assert_true(tx->gso);
    syn_udp_rx_free(rx);
    tx_free(tx);
    pair_close(&p);
}

/* EINVAL on the first GSO send: off for good. EINVAL once GSO has worked on the socket: only that
 * run goes out one by one, GSO stays on. */
static void test_gso_fallback_einval(void **state) {
    (void)state;
    wrap_reset();
    wrap.gso_errno = EINVAL;
    wrap.gso_fail_left = 1;
    pair p;
    pair_open(&p, 0);
    syn_udp_tx *tx = tx_new(p.a);
    syn_udp_rx *rx = syn_udp_rx_new(SYN_UDP_RX_BYTES_SERVER);
    size_t len[8];
    for (size_t i = 0; i < 8; i++)
        len[i] = 1300;
    queue(tx, len, NULL, 8, 0);
    assert_int_equal(syn_udp_flush(p.a, tx, NULL), 0);
    assert_false(tx->gso);
    expect(p.b, rx, len, NULL, 8, 0);

    syn_udp_tx_set_socket(tx, p.a);
    wrap_reset();
    queue(tx, len, NULL, 8, 10);
    assert_int_equal(syn_udp_flush(p.a, tx, NULL), 0);
    assert_true(tx->gso_proven);
    expect(p.b, rx, len, NULL, 8, 10);
    wrap.gso_errno = EINVAL;
    wrap.gso_fail_left = 1;
    queue(tx, len, NULL, 8, 20);
    assert_int_equal(syn_udp_flush(p.a, tx, NULL), 0);
    assert_true(tx->gso);
    expect(p.b, rx, len, NULL, 8, 20);
    queue(tx, len, NULL, 8, 30);
    assert_int_equal(syn_udp_flush(p.a, tx, NULL), 0);
    assert_int_equal(tx->gso_sends, 2); /* the first and the last batch */
    expect(p.b, rx, len, NULL, 8, 30);
    syn_udp_rx_free(rx);
    tx_free(tx);
    pair_close(&p);
}

/* A full socket: the unsent tail stays queued and leaves with the next flush. */
static void test_gso_eagain(void **state) {
    (void)state;
    wrap_reset();
    wrap.eagain_left = 1;
    pair p;
    pair_open(&p, 0);
    syn_udp_tx *tx = tx_new(p.a);
    syn_udp_rx *rx = syn_udp_rx_new(SYN_UDP_RX_BYTES_SERVER);
    size_t len[5] = {1000, 1000, 1000, 1000, 10};
    queue(tx, len, NULL, 5, 0);
    assert_int_equal(syn_udp_flush(p.a, tx, NULL), 1);
    assert_int_equal(tx->n, 5);
    assert_int_equal(tx->done, 0);
    assert_int_equal(syn_udp_flush(p.a, tx, NULL), 0);
    assert_int_equal(tx->n, 0);
    expect(p.b, rx, len, NULL, 5, 0);
    syn_udp_rx_free(rx);
    tx_free(tx);
    pair_close(&p);
}

/* The batch buffer: a small batch stays in the struct's own buffer; one that outgrows it moves to
 * the large buffer with what it holds; the large buffer stays until trimmed, which waits for a
 * queued batch to leave. */
static void test_tx_buffer_grow_and_trim(void **state) {
    (void)state;
    wrap_reset();
    pair p;
    pair_open(&p, 0);
    syn_udp_tx *tx = tx_new(p.a);
    syn_udp_rx *rx = syn_udp_rx_new(SYN_UDP_RX_BYTES_SERVER);
    size_t len[12];
    for (size_t i = 0; i < 12; i++)
        len[i] = SYN_UDP_MAX_PAYLOAD - i;
    /* Room for SYN_UDP_TX_SMALL_DGRAMS full datagrams without the large buffer. */
    queue(tx, len, NULL, SYN_UDP_TX_SMALL_DGRAMS, 0);
    assert_false(syn_udp_tx_large(tx));
    assert_int_equal(syn_udp_flush(p.a, tx, NULL), 0);
    expect(p.b, rx, len, NULL, SYN_UDP_TX_SMALL_DGRAMS, 0);
    assert_int_equal(tx->large_allocs, 0);
    assert_int_equal(syn_udp_tx_trim(tx), 1);

    /* One more: the batch moves, its datagrams intact. */
    queue(tx, len, NULL, 12, 10);
    assert_true(syn_udp_tx_large(tx));
    assert_int_equal(tx->large_allocs, 1);
    wrap.eagain_left = 1;
    assert_int_equal(syn_udp_flush(p.a, tx, NULL), 1);
    assert_int_equal(syn_udp_tx_trim(tx), 0); /* queued: kept */
    assert_true(syn_udp_tx_large(tx));
    assert_int_equal(syn_udp_flush(p.a, tx, NULL), 0);
    expect(p.b, rx, len, NULL, 12, 10);
    /* Kept for the next batches until trimmed. */
    queue(tx, len, NULL, 2, 30);
    assert_true(syn_udp_tx_large(tx));
    assert_int_equal(syn_udp_flush(p.a, tx, NULL), 0);
    expect(p.b, rx, len, NULL, 2, 30);
    assert_int_equal(syn_udp_tx_trim(tx), 1);
    assert_false(syn_udp_tx_large(tx));
    assert_int_equal(tx->large_frees, 1);
    assert_int_equal(syn_udp_tx_trim(tx), 1);
    assert_int_equal(tx->large_frees, 1);

    /* Small again, then large again. */
    queue(tx, len, NULL, 3, 40);
    assert_int_equal(syn_udp_flush(p.a, tx, NULL), 0);
    expect(p.b, rx, len, NULL, 3, 40);
    assert_int_equal(tx->large_allocs, 1);
    queue(tx, len, NULL, 8, 50);
    assert_int_equal(tx->large_allocs, 2);
    assert_int_equal(syn_udp_flush(p.a, tx, NULL), 0);
    expect(p.b, rx, len, NULL, 8, 50);
    syn_udp_rx_free(rx);
    tx_free(tx); /* frees the large buffer (ASan: no leak) */
    pair_close(&p);
}

/* ---- GRO on receive ---- */

/* Sends one UDP_SEGMENT buffer of n datagrams from fd, bypassing syn_udp_flush. */
static void raw_gso_send(int fd, const size_t *len, size_t n, size_t first) {
    static uint8_t buf[65536];
    size_t off = 0;
    for (size_t k = 0; k < n; k++)
        for (size_t i = 0; i < len[k]; i++)
            buf[off++] = pat(first + k, i);
    struct iovec iov = {.iov_base = buf, .iov_len = off};
    union {
        char b[CMSG_SPACE(sizeof(uint16_t))];
        struct cmsghdr align;
    } ctl;
    memset(&ctl, 0, sizeof(ctl));
    struct msghdr h = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b};
    h.msg_controllen = sizeof(ctl.b);
    struct cmsghdr *c = CMSG_FIRSTHDR(&h);
    c->cmsg_level = SOL_UDP;
    c->cmsg_type = UDP_SEGMENT;
    c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    uint16_t seg = (uint16_t)len[0];
    memcpy(CMSG_DATA(c), &seg, sizeof(seg));
    assert_int_equal(sendmsg(fd, &h, 0), (ssize_t)off);
}

static int gro_supported(int fd) {
    int v = 0;
    socklen_t l = sizeof(v);
    return getsockopt(fd, SOL_UDP, UDP_GRO, &v, &l) == 0 && v;
}

/* A coalesced burst is split into its datagrams (the last one shorter). */
static void test_gro_split(void **state) {
    (void)state;
    pair p;
    pair_open(&p, 1);
    if (!gro_supported(p.b)) {
        pair_close(&p);
        skip();
    }
    syn_udp_rx *rx = syn_udp_rx_new(SYN_UDP_RX_BYTES_SERVER);
    size_t len[9] = {1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 300};
    raw_gso_send(p.a, len, 9, 0);
    /* Over loopback the GSO buffer reaches a GRO socket as it was sent: one message. */
    assert_int_equal(expect(p.b, rx, len, NULL, 9, 0), 1);
    syn_udp_rx_free(rx);
    pair_close(&p);
}

/* The reader without buffers (syn_udp_recv_into, one message on the caller's stack): a train
 * longer than its buffer is dropped; with GRO turned off on the socket, the same burst arrives
 * datagram by datagram, intact; a train that fits is split. */
static void test_recv_into_without_buffers(void **state) {
    (void)state;
    pair p;
    pair_open(&p, 1);
    if (!gro_supported(p.b)) {
        pair_close(&p);
        skip();
    }
    uint8_t buf[SYN_UDP_MAX_PAYLOAD + 1];
    syn_udp_dgram d[8];
    size_t len[6] = {1000, 1000, 1000, 1000, 1000, 300};
    raw_gso_send(p.a, len, 6, 0);
    usleep(10000);
    assert_int_equal(syn_udp_recv_into(p.b, buf, sizeof(buf), d, 8), -EMSGSIZE);
    assert_int_equal(syn_udp_recv_into(p.b, buf, sizeof(buf), d, 8), 0);
    assert_int_equal(syn_udp_set_gro(p.b, 0), 0);
    raw_gso_send(p.a, len, 6, 10);
    usleep(10000);
    for (size_t i = 0; i < 6; i++) {
        assert_int_equal(syn_udp_recv_into(p.b, buf, sizeof(buf), d, 8), 1);
        assert_int_equal(d[0].len, len[i]);
        for (size_t j = 0; j < len[i]; j++)
            if (d[0].data[j] != pat(10 + i, j))
                fail_msg("datagram %zu byte %zu differs", i, j);
        assert_int_equal(d[0].remote.len, p.la.len);
    }
    assert_int_equal(syn_udp_recv_into(p.b, buf, sizeof(buf), d, 8), 0);
    /* GRO on again: a short train fits and is split. */
    assert_int_equal(syn_udp_set_gro(p.b, 1), 0);
    size_t small[4] = {300, 300, 300, 100};
    raw_gso_send(p.a, small, 4, 20);
    usleep(10000);
    int n = syn_udp_recv_into(p.b, buf, sizeof(buf), d, 8);
    assert_true(n == 4 || n == 1); /* one coalesced message, or the first of four */
    for (int i = 0; i < n; i++) {
        assert_int_equal(d[i].len, small[i]);
        assert_int_equal(d[i].data[0], pat(20 + (size_t)i, 0));
    }
    pair_close(&p);
}

/* More datagrams waiting in coalesced messages than one call hands out: the next call goes on
 * where the last one stopped, before reading again. */
static void test_gro_many(void **state) {
    (void)state;
    pair p;
    pair_open(&p, 1);
    if (!gro_supported(p.b)) {
        pair_close(&p);
        skip();
    }
    syn_udp_rx *rx = syn_udp_rx_new(SYN_UDP_RX_BYTES_SERVER);
    size_t len[150];
    for (size_t i = 0; i < 150; i++)
        len[i] = (i % 50) == 49 ? 40 : 100;
    raw_gso_send(p.a, len, 50, 0);
    raw_gso_send(p.a, len + 50, 50, 50);
    raw_gso_send(p.a, len + 100, 50, 100);
    usleep(10000);
    int r = syn_udp_recv(p.b, rx);
    assert_int_equal(r, SYN_UDP_RX_DGRAMS);
    assert_int_equal(rx->nmsg, 3);
    for (int i = 0; i < r; i++) {
        assert_int_equal(rx->d[i].len, len[i]);
        assert_int_equal(rx->d[i].data[0], pat((size_t)i, 0));
    }
    size_t k = (size_t)r;
    while (k < 150) {
        int r2 = syn_udp_recv(p.b, rx);
        assert_true(r2 > 0 && r2 <= SYN_UDP_RX_DGRAMS);
        for (int i = 0; i < r2; i++, k++) {
            assert_int_equal(rx->d[i].len, len[k]);
            assert_int_equal(rx->d[i].data[len[k] - 1], pat(k, len[k] - 1));
        }
    }
    assert_int_equal(k, 150);
    assert_int_equal(syn_udp_recv(p.b, rx), 0);
    syn_udp_rx_free(rx);
    pair_close(&p);
}

/* A coalesced burst of datagrams larger than we accept is dropped whole; the next one is not. */
static void test_gro_oversized(void **state) {
    (void)state;
    pair p;
    pair_open(&p, 1);
    if (!gro_supported(p.b)) {
        pair_close(&p);
        skip();
    }
    syn_udp_rx *rx = syn_udp_rx_new(SYN_UDP_RX_BYTES_SERVER);
    size_t big[3] = {2000, 2000, 2000};
    raw_gso_send(p.a, big, 3, 0);
    usleep(5000);
    assert_int_equal(syn_udp_recv(p.b, rx), 0);
    size_t len[2] = {1200, 1200};
    raw_gso_send(p.a, len, 2, 5);
    expect(p.b, rx, len, NULL, 2, 5);
    syn_udp_rx_free(rx);
    pair_close(&p);
}

/* ---- whole tunnels ---- */

static const char *pki;

/* A request and its echo, each many datagrams long: every burst arrives intact. */
static void echo_through_edge(size_t n) {
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    pki = syn_test_pki_shared("udp-1");
    syn_edge_config ec;
    syn_test_edge_config(&ec, pki);
    syn_edge *e = syn_test_edge_start(loop, &ec);
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, pki, syn_edge_port(e));
    cfg.request_timeout = 30;
    synesis_tunnel *t = syn_test_tunnel_connected(loop, &cfg, NULL, NULL, 5);
    uint8_t *buf = malloc(n);
    for (size_t i = 0; i < n; i++)
        buf[i] = (uint8_t)((i * 2654435761u) >> 13);
    buf[0] = 'x'; /* not a command: the edge echoes it */
    syn_test_result res;
    syn_test_request(loop, t, buf, n, NULL, &res, 30);
    assert_int_equal(res.status, 0);
    assert_int_equal(res.len, n);
    assert_memory_equal(res.data, buf, n);
    free(res.data);
    free(buf);
    syn_test_finish(loop, t, e); /* destroys the loop */
}

static void test_tunnel_gso(void **state) {
    (void)state;
    wrap_reset();
    echo_through_edge(4 * 1024 * 1024);
    assert_true(wrap.gso_passed > 0); /* bursts went out as GSO sends */
}

static void test_tunnel_gso_refused(void **state) {
    (void)state;
    wrap_reset();
    wrap.gso_errno = EIO;
    wrap.gso_fail_left = -1;
    echo_through_edge(4 * 1024 * 1024);
    assert_int_equal(wrap.gso_passed, 0);
    /* Each sender tried once (the tunnel's connection and the edge's), then never again. */
    assert_true(wrap.gso_tries >= 1 && wrap.gso_tries <= 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gso_burst),
        cmocka_unit_test(test_gso_mixed),
        cmocka_unit_test(test_gso_fallback_eio),
        cmocka_unit_test(test_gso_fallback_einval),
        cmocka_unit_test(test_gso_eagain),
        cmocka_unit_test(test_gro_split),
        cmocka_unit_test(test_gro_many),
        cmocka_unit_test(test_gro_oversized),
        cmocka_unit_test(test_tunnel_gso),
        cmocka_unit_test(test_tunnel_gso_refused),
        cmocka_unit_test(test_tx_buffer_grow_and_trim),
        cmocka_unit_test(test_recv_into_without_buffers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The reference edge against floods from addresses that never answer: real client Initials
 * replayed from many spoofed loopback addresses (stateless Retry over the threshold, the
 * anti-amplification limit kept towards every address, all state gone after the handshake
 * timeout), and garbage datagrams of every shape. Through both, a real device still connects.
 * Real UDP on loopback (every 127.0.0.0/8 address is local on Linux, so each spoofed source is a
 * socket bound to one of them). */
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

#define FLOOD 120     /* spoofed clients */
#define THRESHOLD 16  /* the edge's retry_threshold */
#define MAX_DGRAMS 4  /* Initial datagrams kept per client (OpenSSL 3.5 sends two) */
#define GARBAGE 20000 /* garbage datagrams */

static syn_edge_stats stats(const syn_edge *e) {
    syn_edge_stats s;
    syn_edge_get_stats(e, &s);
    return s;
}

static int udp_socket(uint32_t addr, uint16_t port) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_addr.s_addr = htonl(addr), .sin_port = htons(port)};
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
        fail_msg("bind %08x: %s", addr, strerror(errno));
    return fd;
}

static uint16_t sock_port(int fd) {
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    return ntohs(a.sin_port);
}

/* Bytes waiting on fd (drained). */
static size_t drain(int fd) {
    uint8_t buf[65536];
    size_t total = 0;
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n < 0)
            return total;
        total += (size_t)n;
    }
}

static void send_to_edge(int fd, const syn_edge *e, const void *data, size_t len) {
    struct sockaddr_in to = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                             .sin_port = htons(syn_edge_port(e))};
    ssize_t n = sendto(fd, data, len, 0, (struct sockaddr *)&to, sizeof(to));
    assert_int_equal(n, (ssize_t)len);
}

typedef struct captured {
    uint16_t port; /* the real client's source port */
    int n;
    size_t len[MAX_DGRAMS];
    uint8_t data[MAX_DGRAMS][1500];
} captured;

typedef struct edge_idle {
    const syn_edge *e;
} edge_idle;

static int edge_empty(void *ud) {
    syn_edge_stats s = stats(((edge_idle *)ud)->e);
    return s.active == 0 && s.handshaking == 0 && s.closing == 0 && s.cids == 0;
}

/* A real device connects through whatever the edge is going through, and a request works. */
static void device_connects(struct ev_loop *loop, syn_edge *e) {
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, syn_test_pki_shared("flood-1"), syn_edge_port(e));
    synesis_tunnel *t = syn_test_tunnel_connected(loop, &cfg, NULL, NULL, 10);
    syn_test_result res = {0};
    syn_test_request(loop, t, "still here", 10, NULL, &res, 5);
    assert_int_equal(res.status, 0);
    assert_int_equal(res.len, 10);
    free(res.data);
    synesis_tunnel_free(t);
}

/* FLOOD real ClientHellos, each replayed from its own spoofed address that never answers. The
 * edge keeps state for at most THRESHOLD of them (the rest get a Retry, which costs it nothing),
 * never sends any address more than three times what it received from it (RFC 9000 8.1, counting
 * its retransmissions), and forgets them all after its handshake timeout. */
static void test_spoofed_handshake_flood(void **state) {
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    syn_edge_config ec;
    syn_test_edge_config(&ec, syn_test_pki_shared("flood-1"));
    ec.retry_threshold = THRESHOLD;
    ec.handshake_timeout = 1.0;
    syn_edge *e = syn_test_edge_start(loop, &ec);

    /* Capture the Initials of FLOOD real clients on a socket that never answers. */
    int cap = udp_socket(INADDR_LOOPBACK, 0);
    captured *c = calloc(FLOOD, sizeof(*c));
    assert_non_null(c);
    syn_test_raw_client *raw[FLOOD];
    int nc = 0;
    for (int i = 0; i < FLOOD + 20; i++) {
        if (i < FLOOD)
            raw[i] = syn_test_raw_client_new(loop, sock_port(cap), syn_test_pki_shared("flood-1"),
                                             NULL, NULL);
        if (i % 8 == 7)
            syn_test_run_for(loop, 0.005);
        uint8_t buf[1500];
        struct sockaddr_in from;
        socklen_t fl = sizeof(from);
        ssize_t n;
        while ((n = recvfrom(cap, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl)) >= 0) {
            int k;
            for (k = 0; k < nc && c[k].port != ntohs(from.sin_port); k++)
                ;
            if (k == nc) {
                assert_true(nc < FLOOD);
                c[nc++].port = ntohs(from.sin_port);
            }
            if (c[k].n < MAX_DGRAMS) {
                memcpy(c[k].data[c[k].n], buf, (size_t)n);
                c[k].len[c[k].n++] = (size_t)n;
            }
        }
    }
    for (int i = 0; i < FLOOD; i++)
        syn_test_raw_client_free(raw[i]);
    close(cap);
    assert_int_equal(nc, FLOOD);

    /* Replay each client's Initials from its own address: 127.0.0.2, 127.0.0.3, ... */
    int fds[FLOOD];
    size_t sent[FLOOD], got[FLOOD];
    for (int i = 0; i < FLOOD; i++) {
        fds[i] = udp_socket(INADDR_LOOPBACK + 2 + (uint32_t)i, 0);
        sent[i] = got[i] = 0;
        for (int d = 0; d < c[i].n; d++) {
            send_to_edge(fds[i], e, c[i].data[d], c[i].len[d]);
            sent[i] += c[i].len[d];
        }
    }
    /* The handshake timeout passes; the edge retransmits its flights (PTO) meanwhile. */
    syn_test_run_for(loop, 0.3);
    syn_edge_stats s = stats(e);
    assert_true(s.accepted <= THRESHOLD);
    assert_true(s.handshaking <= THRESHOLD);
    assert_true(s.retries >= FLOOD - THRESHOLD);
    for (int i = 0; i < FLOOD; i++)
        got[i] += drain(fds[i]);
    edge_idle w = {e};
    assert_true(syn_test_run_until(loop, edge_empty, &w, 5));
    size_t answered = 0, most = 0, most_sent = 0;
    for (int i = 0; i < FLOOD; i++) {
        got[i] += drain(fds[i]);
        if (got[i] > 3 * sent[i])
            fail_msg("address %d: sent %zu bytes, the edge answered %zu", i, sent[i], got[i]);
        answered += got[i] > 0;
        if (got[i] > most) {
            most = got[i];
            most_sent = sent[i];
        }
        close(fds[i]);
    }
    assert_int_equal(answered, FLOOD); /* everyone got a Retry or a server flight */
    s = stats(e);
    assert_int_equal(s.handshakes, 0);
    print_message("flood of %d spoofed ClientHellos: %llu accepted, %llu Retry packets, at most "
                  "%zu bytes sent to one address that sent %zu\n",
                  FLOOD, (unsigned long long)s.accepted, (unsigned long long)s.retries, most,
                  most_sent);
    free(c);

    device_connects(loop, e);
    syn_test_finish(loop, NULL, e);
}

/* A small deterministic PRNG (xorshift64*). */
static uint64_t rng(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

/* GARBAGE datagrams: random bytes of random sizes; short-header packets for random connection
 * IDs; long headers of unknown versions (answered by Version Negotiation only when 1200 bytes or
 * more); and padded "Initials" of QUIC v1 with random IDs and undecryptable payload, each of which
 * opens a connection that ends at once when its packet fails to decrypt (so nothing stays). The
 * edge stays up, keeps its bounds, and a real device connects meanwhile and afterwards. */
static void test_garbage_datagrams(void **state) {
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    syn_edge_config ec;
    syn_test_edge_config(&ec, syn_test_pki_shared("flood-1"));
    ec.retry_threshold = THRESHOLD;
    ec.handshake_timeout = 1.0;
    syn_edge *e = syn_test_edge_start(loop, &ec);
    int fd = udp_socket(INADDR_LOOPBACK, 0);
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    uint8_t buf[1500];
    size_t sent = 0;
    for (int i = 0; i < GARBAGE; i++) {
        size_t len = 1 + rng(&seed) % sizeof(buf);
        for (size_t k = 0; k < len; k++)
            buf[k] = (uint8_t)rng(&seed);
        switch (i % 4) {
        case 0: /* random */
            break;
        case 1: /* short header, random DCID */
            buf[0] = (uint8_t)(0x40 | (buf[0] & 0x3f));
            break;
        case 2: /* long header, an unknown version */
            buf[0] |= 0xc0;
            if (len >= 5)
                memcpy(buf + 1, "\x1a\x2a\x3a\x4a", 4);
            break;
        case 3: /* an Initial of QUIC v1, padded, random DCID of 8..20 bytes */
            len = 1200 + rng(&seed) % 300;
            buf[0] = (uint8_t)(0xc0 | (buf[0] & 0x0f));
            memcpy(buf + 1, "\x00\x00\x00\x01", 4);
            buf[5] = (uint8_t)(8 + rng(&seed) % 13);
            break;
        }
        send_to_edge(fd, e, buf, len);
        sent += len;
        if (i % 256 == 255) {
            ev_run(loop, EVRUN_NOWAIT);
            (void)drain(fd);
        }
    }
    syn_test_run_for(loop, 0.05);
    size_t got = drain(fd);
    syn_edge_stats s = stats(e);
    assert_true(s.active <= THRESHOLD);
    assert_int_equal(s.handshakes, 0);
    assert_true(got <= 3 * sent);
    device_connects(loop, e); /* during: the garbage connections still handshaking */
    edge_idle w = {e};
    assert_true(syn_test_run_until(loop, edge_empty, &w, 5));
    s = stats(e);
    print_message("%d garbage datagrams (%zu bytes): %llu opened a connection, %llu Retry "
                  "packets, %zu bytes answered\n",
                  GARBAGE, sent, (unsigned long long)s.accepted, (unsigned long long)s.retries,
                  got);
    close(fd);
    device_connects(loop, e); /* after */
    syn_test_finish(loop, NULL, e);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spoofed_handshake_flood),
        cmocka_unit_test(test_garbage_datagrams),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

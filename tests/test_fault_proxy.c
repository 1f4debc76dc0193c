/* The UDP fault proxy used by the integration tests, checked with plain UDP sockets on loopback. */
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
#include <sys/resource.h>
#include <sys/un.h>
#include <unistd.h>

#include "fault_proxy.h"
#include "internal.h"

/* ---- failure injection (the test links with -Wl,--wrap=calloc,...): the n-th next call fails ----
 */

void *__real_calloc(size_t n, size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__real_malloc(size_t size);
void *__wrap_malloc(size_t size);
void *__real_realloc(void *ptr, size_t size);
void *__wrap_realloc(void *ptr, size_t size);
int __real_bind(int fd, const struct sockaddr *sa, socklen_t len);
int __wrap_bind(int fd, const struct sockaddr *sa, socklen_t len);

static int fail_calloc_in, fail_malloc_in, fail_realloc_in, fail_bind_in;

static int fail_now(int *counter) { return *counter > 0 && --*counter == 0; }

void *__wrap_calloc(size_t n, size_t size) {
    if (fail_now(&fail_calloc_in)) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_calloc(n, size);
}

void *__wrap_malloc(size_t size) {
    if (fail_now(&fail_malloc_in)) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_malloc(size);
}

void *__wrap_realloc(void *ptr, size_t size) {
    if (fail_now(&fail_realloc_in)) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_realloc(ptr, size);
}

int __wrap_bind(int fd, const struct sockaddr *sa, socklen_t len) {
    if (fail_now(&fail_bind_in)) {
        errno = EADDRINUSE;
        return -1;
    }
    return __real_bind(fd, sa, len);
}

/* ---- loop helpers ---- */

static void on_nothing(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)w;
    (void)revents;
}

/* One loop iteration, waiting at most 1 ms. */
static void pump(struct ev_loop *loop) {
    ev_timer t;
    ev_timer_init(&t, on_nothing, 0.001, 0.);
    ev_timer_start(loop, &t);
    ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &t);
}

#define RUN_UNTIL(loop, cond, secs)                                                                \
    do {                                                                                           \
        uint64_t end_ = syn_now_ns() + (uint64_t)((secs)*1e9);                                     \
        while (!(cond) && syn_now_ns() < end_)                                                     \
            pump(loop);                                                                            \
    } while (0)

static void run_for(struct ev_loop *loop, double secs) { RUN_UNTIL(loop, 0, secs); }

/* ---- peers: a client or a server on a plain UDP socket ---- */

#define RX_MAX 8192

struct rx {
    uint32_t seq;
    size_t len;
    uint64_t sent_ns; /* from the payload */
    uint64_t at_ns;
    uint16_t from_port;
};

struct peer {
    struct ev_loop *loop;
    int fd;
    ev_io io;
    int echo;
    struct sockaddr_storage addr; /* bound address */
    socklen_t addr_len;
    struct sockaddr_storage last_from;
    socklen_t last_from_len;
    size_t n;
    struct rx rx[RX_MAX];
};

static uint16_t sa_port(const struct sockaddr_storage *ss) {
    if (ss->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)(const void *)ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)(const void *)ss)->sin6_port);
}

static void on_peer(struct ev_loop *loop, ev_io *w, int revents) {
    (void)loop;
    (void)revents;
    struct peer *pe = w->data;
    unsigned char buf[65536];
    for (;;) {
        struct sockaddr_storage from;
        socklen_t fl = sizeof(from);
        ssize_t n = recvfrom(pe->fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
        if (n < 0)
            return;
        assert_true(n >= 12);
        if (pe->n < RX_MAX) {
            struct rx *r = &pe->rx[pe->n++];
            uint32_t seq;
            memcpy(&seq, buf, 4);
            r->seq = ntohl(seq);
            memcpy(&r->sent_ns, buf + 4, 8);
            r->len = (size_t)n;
            r->at_ns = syn_now_ns();
            r->from_port = sa_port(&from);
        }
        pe->last_from = from;
        pe->last_from_len = fl;
        if (pe->echo)
            assert_true(sendto(pe->fd, buf, (size_t)n, 0, (struct sockaddr *)&from, fl) == n);
    }
}

/* A peer bound to loopback of family, or NULL when that family has no loopback here. */
static struct peer *peer_open(struct ev_loop *loop, int family, int echo) {
    struct peer *pe = calloc(1, sizeof(*pe));
    assert_non_null(pe);
    pe->loop = loop;
    pe->echo = echo;
    pe->fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(pe->fd >= 0);
    int big = 4 << 20;
    setsockopt(pe->fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t len;
    if (family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)(void *)&ss;
        in->sin_family = AF_INET;
        in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof(*in);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)(void *)&ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_addr = in6addr_loopback;
        len = sizeof(*in6);
    }
    if (bind(pe->fd, (struct sockaddr *)&ss, len) != 0) {
        close(pe->fd);
        free(pe);
        return NULL;
    }
    pe->addr_len = sizeof(pe->addr);
    assert_int_equal(getsockname(pe->fd, (struct sockaddr *)&pe->addr, &pe->addr_len), 0);
    ev_io_init(&pe->io, on_peer, pe->fd, EV_READ);
    pe->io.data = pe;
    ev_io_start(loop, &pe->io);
    return pe;
}

static void peer_close(struct peer *pe) {
    ev_io_stop(pe->loop, &pe->io);
    close(pe->fd);
    free(pe);
}

static void peer_send_to(struct peer *pe, const struct sockaddr_storage *to, socklen_t to_len,
                         uint32_t seq, size_t len) {
    static unsigned char buf[65536];
    assert_true(len >= 12 && len <= sizeof(buf));
    memset(buf, (int)(seq & 0xff), len);
    uint32_t s = htonl(seq);
    memcpy(buf, &s, 4);
    uint64_t now = syn_now_ns();
    memcpy(buf + 4, &now, 8);
    assert_true(sendto(pe->fd, buf, len, 0, (const struct sockaddr *)to, to_len) == (ssize_t)len);
}

/* Sends to the proxy. */
static void peer_send(struct peer *pe, const syn_fault_proxy *p, uint32_t seq, size_t len) {
    struct sockaddr_storage to;
    socklen_t tl = syn_fault_proxy_addr(p, &to);
    peer_send_to(pe, &to, tl, seq, len);
}

static syn_fault_proxy *proxy_for(struct ev_loop *loop, const struct peer *server, uint64_t seed) {
    struct sockaddr_storage l;
    memset(&l, 0, sizeof(l));
    socklen_t ll;
    if (server->addr.ss_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)(void *)&l;
        in->sin_family = AF_INET;
        in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ll = sizeof(*in);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)(void *)&l;
        in6->sin6_family = AF_INET6;
        in6->sin6_addr = in6addr_loopback;
        ll = sizeof(*in6);
    }
    syn_fault_proxy *p =
        syn_fault_proxy_new(loop, (struct sockaddr *)&l, ll, (const struct sockaddr *)&server->addr,
                            server->addr_len, seed);
    assert_non_null(p);
    assert_int_not_equal(syn_fault_proxy_port(p), 0);
    return p;
}

static syn_fault_stats stats(const syn_fault_proxy *p) {
    syn_fault_stats s;
    syn_fault_proxy_stats(p, &s);
    return s;
}

struct world {
    struct ev_loop *loop;
    struct peer *client, *server;
    syn_fault_proxy *proxy;
};

static void world_open(struct world *w, int family, int echo, uint64_t seed) {
    w->loop = ev_loop_new(EVFLAG_AUTO);
    assert_non_null(w->loop);
    w->server = peer_open(w->loop, family, echo);
    w->client = peer_open(w->loop, family, 0);
    assert_non_null(w->server);
    assert_non_null(w->client);
    w->proxy = proxy_for(w->loop, w->server, seed);
}

static void world_close(struct world *w) {
    syn_fault_proxy_free(w->proxy);
    peer_close(w->client);
    peer_close(w->server);
    ev_loop_destroy(w->loop);
}

/* Sends count datagrams seq first..first+count-1 from the client, a few at a time, waiting until
 * the proxy has taken each batch in (so no burst overflows a socket buffer). */
static void send_paced(struct world *w, uint32_t first, uint32_t count, size_t len) {
    for (uint32_t i = 0; i < count;) {
        syn_fault_stats s0 = stats(w->proxy);
        uint64_t seen0 = s0.fwd_up + s0.dropped_up + s0.queued - s0.duplicated;
        uint32_t batch = count - i < 32 ? count - i : 32;
        for (uint32_t k = 0; k < batch; k++)
            peer_send(w->client, w->proxy, first + i + k, len);
        i += batch;
        /* Every arrival ends up forwarded, dropped or queued (duplicates count twice). */
        RUN_UNTIL(w->loop,
                  (stats(w->proxy).fwd_up + stats(w->proxy).dropped_up + stats(w->proxy).queued -
                   stats(w->proxy).duplicated) >= seen0 + batch,
                  10);
    }
}

static int has_ipv6_loopback(void) {
    int fd = socket(AF_INET6, SOCK_DGRAM, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in6 a;
    memset(&a, 0, sizeof(a));
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    int ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

/* ---- tests ---- */

static void test_pass_through(void **state) {
    (void)state;
    struct world w;
    world_open(&w, AF_INET, 1, 1);
    for (uint32_t i = 0; i < 10; i++)
        peer_send(w.client, w.proxy, i, 100 + i);
    RUN_UNTIL(w.loop, w.client->n == 10, 10);
    assert_int_equal(w.server->n, 10);
    assert_int_equal(w.client->n, 10);
    for (uint32_t i = 0; i < 10; i++) {
        assert_int_equal(w.server->rx[i].seq, i);
        assert_int_equal(w.server->rx[i].len, 100 + i);
        assert_int_equal(w.client->rx[i].seq, i);
        assert_int_equal(w.client->rx[i].len, 100 + i);
        /* The server sees the proxy's upstream port; the client sees the proxy's listening port. */
        assert_int_not_equal(w.server->rx[i].from_port, sa_port(&w.client->addr));
        assert_int_equal(w.server->rx[i].from_port, w.server->rx[0].from_port);
        assert_int_equal(w.client->rx[i].from_port, syn_fault_proxy_port(w.proxy));
    }
    syn_fault_stats s = stats(w.proxy);
    assert_int_equal(s.fwd_up, 10);
    assert_int_equal(s.fwd_down, 10);
    assert_int_equal(s.dropped_up + s.dropped_down + s.duplicated + s.reordered + s.delayed +
                         s.overflowed + s.queued,
                     0);
    /* A full-size datagram goes through too. */
    peer_send(w.client, w.proxy, 99, 65507);
    RUN_UNTIL(w.loop, w.client->n == 11, 10);
    assert_int_equal(w.client->rx[10].len, 65507);
    world_close(&w);
}

static void test_ipv6_and_family_change(void **state) {
    (void)state;
    if (!has_ipv6_loopback())
        skip();
    struct world w;
    world_open(&w, AF_INET6, 1, 2);
    struct sockaddr_storage a;
    assert_int_equal(syn_fault_proxy_addr(w.proxy, &a), sizeof(struct sockaddr_in6));
    assert_int_equal(a.ss_family, AF_INET6);
    for (uint32_t i = 0; i < 5; i++)
        peer_send(w.client, w.proxy, i, 50);
    RUN_UNTIL(w.loop, w.client->n == 5, 10);
    assert_int_equal(w.server->n, 5);
    assert_int_equal(w.client->n, 5);

    /* Switch the upstream to an IPv4 server: the client keeps talking IPv6 to the proxy. */
    struct peer *s4 = peer_open(w.loop, AF_INET, 1);
    assert_int_equal(
        syn_fault_proxy_set_upstream(w.proxy, (struct sockaddr *)&s4->addr, s4->addr_len), 0);
    for (uint32_t i = 5; i < 10; i++)
        peer_send(w.client, w.proxy, i, 50);
    RUN_UNTIL(w.loop, w.client->n == 10, 10);
    assert_int_equal(s4->n, 5);
    assert_int_equal(w.server->n, 5);
    assert_int_equal(w.client->n, 10);
    assert_int_equal(s4->rx[0].seq, 5);
    peer_close(s4);
    world_close(&w);
}

static void test_drop_all_and_none(void **state) {
    (void)state;
    struct world w;
    world_open(&w, AF_INET, 1, 3);
    syn_fault_dir all = {.drop = 1.0};
    syn_fault_proxy_set(w.proxy, &all, NULL);
    send_paced(&w, 0, 20, 64);
    run_for(w.loop, 0.02);
    assert_int_equal(w.server->n, 0);
    syn_fault_stats s = stats(w.proxy);
    assert_int_equal(s.dropped_up, 20);
    assert_int_equal(s.fwd_up, 0);

    syn_fault_dir none = {.drop = 0.0};
    syn_fault_proxy_set(w.proxy, &none, &none);
    send_paced(&w, 20, 20, 64);
    RUN_UNTIL(w.loop, w.client->n == 20, 10);
    assert_int_equal(w.server->n, 20);
    assert_int_equal(w.server->rx[0].seq, 20);

    /* Everything the server sends back is dropped. */
    syn_fault_proxy_set(w.proxy, NULL, &all);
    send_paced(&w, 40, 20, 64);
    RUN_UNTIL(w.loop, stats(w.proxy).dropped_down == 20, 10);
    run_for(w.loop, 0.02);
    assert_int_equal(w.server->n, 40);
    assert_int_equal(w.client->n, 20);
    s = stats(w.proxy);
    assert_int_equal(s.fwd_up, 40);
    assert_int_equal(s.fwd_down, 20);
    assert_int_equal(s.dropped_up, 20);
    assert_int_equal(s.dropped_down, 20);
    world_close(&w);
}

/* Sends 1000 datagrams with drop 0.5; returns how many were dropped and which arrived. */
static uint64_t drop_half_run(uint64_t seed, unsigned char arrived[1000]) {
    struct world w;
    world_open(&w, AF_INET, 0, seed);
    syn_fault_dir half = {.drop = 0.5};
    syn_fault_proxy_set(w.proxy, &half, NULL);
    send_paced(&w, 0, 1000, 200);
    syn_fault_stats s = stats(w.proxy);
    assert_int_equal(s.fwd_up + s.dropped_up, 1000);
    RUN_UNTIL(w.loop, w.server->n == s.fwd_up, 10);
    assert_int_equal(w.server->n, s.fwd_up);
    memset(arrived, 0, 1000);
    for (size_t i = 0; i < w.server->n; i++) {
        assert_true(w.server->rx[i].seq < 1000);
        arrived[w.server->rx[i].seq] = 1;
    }
    world_close(&w);
    return s.dropped_up;
}

static void test_drop_half_is_deterministic(void **state) {
    (void)state;
    static unsigned char a[1000], b[1000], c[1000];
    uint64_t d1 = drop_half_run(42, a);
    uint64_t d2 = drop_half_run(42, b);
    assert_int_equal(d1, d2);
    assert_memory_equal(a, b, sizeof(a));
    assert_true(d1 >= 350 && d1 <= 650);
    uint64_t d3 = drop_half_run(43, c);
    assert_true(d3 >= 350 && d3 <= 650);
    assert_memory_not_equal(a, c, sizeof(a));
}

static void test_duplicate(void **state) {
    (void)state;
    struct world w;
    world_open(&w, AF_INET, 1, 4);
    syn_fault_dir dup = {.duplicate = 1.0};
    syn_fault_proxy_set(w.proxy, &dup, &dup);
    send_paced(&w, 0, 10, 80);
    RUN_UNTIL(w.loop, w.client->n == 40, 10);
    run_for(w.loop, 0.02);
    assert_int_equal(w.server->n, 20);
    assert_int_equal(w.client->n, 40);
    int count[10] = {0};
    for (size_t i = 0; i < w.server->n; i++)
        count[w.server->rx[i].seq]++;
    for (int i = 0; i < 10; i++)
        assert_int_equal(count[i], 2);
    syn_fault_stats s = stats(w.proxy);
    assert_int_equal(s.fwd_up, 20);
    assert_int_equal(s.fwd_down, 40);
    assert_int_equal(s.duplicated, 30);
    assert_int_equal(s.dropped_up + s.dropped_down, 0);
    world_close(&w);
}

static void test_delay(void **state) {
    (void)state;
    struct world w;
    world_open(&w, AF_INET, 1, 5);
    syn_fault_dir up = {.delay_ms = 60};
    syn_fault_dir down = {.delay_ms = 40, .jitter_ms = 20};
    syn_fault_proxy_set(w.proxy, &up, &down);
    for (uint32_t i = 0; i < 5; i++)
        peer_send(w.client, w.proxy, i, 100);
    RUN_UNTIL(w.loop, w.client->n == 5, 10);
    assert_int_equal(w.server->n, 5);
    assert_int_equal(w.client->n, 5);
    for (int i = 0; i < 5; i++) {
        /* Lower bounds only: never later than is fine, never earlier is the property. */
        assert_true(w.server->rx[i].at_ns - w.server->rx[i].sent_ns >= 60000000u);
        assert_true(w.client->rx[i].at_ns - w.client->rx[i].sent_ns >= 100000000u);
    }
    syn_fault_stats s = stats(w.proxy);
    assert_int_equal(s.delayed, 10);
    assert_int_equal(s.fwd_up, 5);
    assert_int_equal(s.fwd_down, 5);
    assert_int_equal(s.queued, 0);

    /* Jitter alone delays every datagram by something. */
    syn_fault_dir jitter = {.jitter_ms = 20};
    syn_fault_proxy_set(w.proxy, &jitter, NULL);
    send_paced(&w, 100, 30, 100);
    RUN_UNTIL(w.loop, w.client->n == 35, 10);
    assert_int_equal(w.client->n, 35);
    assert_int_equal(stats(w.proxy).delayed, 40);
    world_close(&w);
}

static void test_reorder(void **state) {
    (void)state;
    struct world w;
    world_open(&w, AF_INET, 0, 6);
    syn_fault_dir r = {.reorder = 1.0};
    syn_fault_proxy_set(w.proxy, &r, NULL);
    for (uint32_t i = 1; i <= 10; i++)
        peer_send(w.client, w.proxy, i, 100);
    RUN_UNTIL(w.loop, w.server->n == 10, 10);
    assert_int_equal(w.server->n, 10);
    static const uint32_t want[] = {2, 1, 4, 3, 6, 5, 8, 7, 10, 9};
    for (int i = 0; i < 10; i++)
        assert_int_equal(w.server->rx[i].seq, want[i]);
    syn_fault_stats s = stats(w.proxy);
    assert_int_equal(s.reordered, 5);
    assert_int_equal(s.fwd_up, 10);
    assert_int_equal(s.queued, 0);

    /* A held datagram with nothing after it still goes out, after the hold time. */
    peer_send(w.client, w.proxy, 11, 100);
    RUN_UNTIL(w.loop, w.server->n == 11, 10);
    assert_int_equal(w.server->n, 11);
    assert_int_equal(w.server->rx[10].seq, 11);
    assert_true(w.server->rx[10].at_ns - w.server->rx[10].sent_ns >=
                SYN_FAULT_REORDER_HOLD_MS * 1000000u);
    assert_int_equal(stats(w.proxy).reordered, 6);
    world_close(&w);
}

static void test_blackhole(void **state) {
    (void)state;
    struct world w;
    world_open(&w, AF_INET, 1, 7);
    peer_send(w.client, w.proxy, 0, 64);
    RUN_UNTIL(w.loop, w.client->n == 1, 10);
    assert_int_equal(w.client->n, 1);
    struct sockaddr_storage mapped = w.server->last_from; /* the client's upstream socket */
    socklen_t mapped_len = w.server->last_from_len;

    syn_fault_proxy_blackhole(w.proxy, 1);
    send_paced(&w, 1, 5, 64);
    for (uint32_t i = 0; i < 5; i++)
        peer_send_to(w.server, &mapped, mapped_len, 100 + i, 64);
    RUN_UNTIL(w.loop, stats(w.proxy).dropped_down == 5, 10);
    run_for(w.loop, 0.02);
    assert_int_equal(w.server->n, 1);
    assert_int_equal(w.client->n, 1);
    syn_fault_stats s = stats(w.proxy);
    assert_int_equal(s.dropped_up, 5);
    assert_int_equal(s.dropped_down, 5);

    /* Queued datagrams falling due during a blackhole are lost too. */
    syn_fault_dir slow = {.delay_ms = 30};
    syn_fault_proxy_blackhole(w.proxy, 0);
    syn_fault_proxy_set(w.proxy, &slow, NULL);
    send_paced(&w, 6, 3, 64);
    assert_int_equal(stats(w.proxy).queued, 3);
    syn_fault_proxy_blackhole(w.proxy, 1);
    RUN_UNTIL(w.loop, stats(w.proxy).queued == 0, 10);
    assert_int_equal(stats(w.proxy).dropped_up, 8);
    assert_int_equal(w.server->n, 1);

    syn_fault_proxy_blackhole(w.proxy, 0);
    syn_fault_proxy_set(w.proxy, NULL, NULL);
    send_paced(&w, 9, 5, 64);
    RUN_UNTIL(w.loop, w.client->n == 6, 10);
    assert_int_equal(w.server->n, 6);
    assert_int_equal(w.client->n, 6);
    world_close(&w);
}

static void test_rebind(void **state) {
    (void)state;
    struct world w;
    world_open(&w, AF_INET, 1, 8);
    peer_send(w.client, w.proxy, 0, 64);
    RUN_UNTIL(w.loop, w.client->n == 1, 10);
    uint16_t before = w.server->rx[0].from_port;
    struct sockaddr_storage old = w.server->last_from;
    socklen_t old_len = w.server->last_from_len;

    assert_int_equal(syn_fault_proxy_rebind(w.proxy), 0);
    peer_send(w.client, w.proxy, 1, 64);
    RUN_UNTIL(w.loop, w.client->n == 2, 10);
    assert_int_equal(w.server->n, 2);
    assert_int_equal(w.client->n, 2); /* the echo to the new port comes back */
    assert_int_not_equal(w.server->rx[1].from_port, before);

    /* The old mapping is gone: what the server sends there never reaches the client. */
    peer_send_to(w.server, &old, old_len, 77, 64);
    run_for(w.loop, 0.05);
    assert_int_equal(w.client->n, 2);
    assert_int_equal(stats(w.proxy).fwd_down, 2);
    world_close(&w);
}

static void test_set_upstream(void **state) {
    (void)state;
    struct world w;
    world_open(&w, AF_INET, 1, 9);
    peer_send(w.client, w.proxy, 0, 64);
    RUN_UNTIL(w.loop, w.client->n == 1, 10);
    struct peer *s2 = peer_open(w.loop, AF_INET, 1);
    assert_int_equal(
        syn_fault_proxy_set_upstream(w.proxy, (struct sockaddr *)&s2->addr, s2->addr_len), 0);
    peer_send(w.client, w.proxy, 1, 64);
    RUN_UNTIL(w.loop, w.client->n == 2, 10);
    assert_int_equal(w.server->n, 1);
    assert_int_equal(s2->n, 1);
    assert_int_equal(s2->rx[0].seq, 1);
    assert_int_equal(w.client->n, 2);
    /* Same family: the client keeps its upstream port. */
    assert_int_equal(s2->rx[0].from_port, w.server->rx[0].from_port);

    assert_int_equal(syn_fault_proxy_set_upstream(w.proxy, NULL, 0), SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(syn_fault_proxy_set_upstream(w.proxy, (struct sockaddr *)&s2->addr, 4),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    assert_int_equal(syn_fault_proxy_set_upstream(w.proxy, (struct sockaddr *)&un, sizeof(un)),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    peer_close(s2);
    world_close(&w);
}

static void test_several_clients(void **state) {
    (void)state;
    struct world w;
    world_open(&w, AF_INET, 1, 10);
    struct peer *c2 = peer_open(w.loop, AF_INET, 0);
    for (uint32_t i = 0; i < 5; i++) {
        peer_send(w.client, w.proxy, i, 64);
        peer_send(c2, w.proxy, 1000 + i, 64);
    }
    RUN_UNTIL(w.loop, w.client->n == 5 && c2->n == 5, 10);
    assert_int_equal(w.server->n, 10);
    assert_int_equal(w.client->n, 5);
    assert_int_equal(c2->n, 5);
    uint16_t p1 = 0, p2 = 0;
    for (size_t i = 0; i < w.server->n; i++) {
        if (w.server->rx[i].seq < 1000)
            p1 = w.server->rx[i].from_port;
        else
            p2 = w.server->rx[i].from_port;
    }
    assert_int_not_equal(p1, p2);
    for (int i = 0; i < 5; i++) {
        assert_true(w.client->rx[i].seq < 1000);
        assert_true(c2->rx[i].seq >= 1000);
    }
    /* Rebinding gives both new ports. */
    assert_int_equal(syn_fault_proxy_rebind(w.proxy), 0);
    peer_send(w.client, w.proxy, 5, 64);
    peer_send(c2, w.proxy, 1005, 64);
    RUN_UNTIL(w.loop, w.client->n == 6 && c2->n == 6, 10);
    assert_int_equal(c2->n, 6);
    for (size_t i = 10; i < 12; i++)
        assert_true(w.server->rx[i].from_port != p1 && w.server->rx[i].from_port != p2);
    peer_close(c2);
    world_close(&w);
}

static void test_stats_exact(void **state) {
    (void)state;
    struct world w;
    world_open(&w, AF_INET, 0, 11);
    syn_fault_dir up = {.duplicate = 1.0, .reorder = 1.0, .delay_ms = 5};
    syn_fault_proxy_set(w.proxy, &up, NULL);
    for (uint32_t i = 1; i <= 4; i++)
        peer_send(w.client, w.proxy, i, 64);
    RUN_UNTIL(w.loop, w.server->n == 8, 10);
    syn_fault_stats s = stats(w.proxy);
    assert_int_equal(s.fwd_up, 8);
    assert_int_equal(s.duplicated, 4);
    assert_int_equal(s.reordered, 2);
    assert_int_equal(s.delayed, 8);
    assert_int_equal(s.dropped_up + s.dropped_down + s.fwd_down + s.overflowed + s.queued, 0);
    /* The held original goes out after the next datagram's copies. */
    static const uint32_t want[] = {1, 2, 2, 1, 3, 4, 4, 3};
    for (int i = 0; i < 8; i++)
        assert_int_equal(w.server->rx[i].seq, want[i]);
    world_close(&w);
}

static void on_guard(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)revents;
    *(int *)w->data = 1;
    ev_break(loop, EVBREAK_ALL);
}

static void test_free_with_queued(void **state) {
    (void)state;
    struct world w;
    world_open(&w, AF_INET, 1, 12);
    peer_send(w.client, w.proxy, 0, 64); /* establishes the client's mapping */
    RUN_UNTIL(w.loop, w.client->n == 1, 10);
    syn_fault_dir slow = {.delay_ms = 10000, .reorder = 0.5};
    syn_fault_proxy_set(w.proxy, &slow, &slow);
    send_paced(&w, 1, 49, 300);
    /* and one queued the other way */
    peer_send_to(w.server, &w.server->last_from, w.server->last_from_len, 1000, 12);
    RUN_UNTIL(w.loop, stats(w.proxy).queued == 50, 10);
    syn_fault_stats s = stats(w.proxy);
    assert_int_equal(s.queued, 50);
    assert_true(s.reordered > 0);
    assert_int_equal(s.fwd_up, 1);
    assert_int_equal(s.fwd_down, 1);
    syn_fault_proxy_free(w.proxy);
    w.proxy = NULL;
    /* Nothing of the proxy is left on the loop: with the peers stopped, ev_run returns at once. */
    ev_io_stop(w.loop, &w.client->io);
    ev_io_stop(w.loop, &w.server->io);
    int fired = 0;
    ev_timer guard;
    ev_timer_init(&guard, on_guard, 5.0, 0.);
    guard.data = &fired;
    ev_timer_start(w.loop, &guard);
    ev_unref(w.loop);
    ev_run(w.loop, 0);
    ev_ref(w.loop);
    ev_timer_stop(w.loop, &guard);
    assert_int_equal(fired, 0);
    world_close(&w); /* frees a NULL proxy */
}

static void test_queue_limits(void **state) {
    (void)state;
    struct world w;
    world_open(&w, AF_INET, 0, 13);
    syn_fault_dir slow = {.delay_ms = 10000};
    syn_fault_proxy_set(w.proxy, &slow, NULL);
    send_paced(&w, 0, SYN_FAULT_MAX_QUEUED + 10, 20);
    syn_fault_stats s = stats(w.proxy);
    assert_int_equal(s.queued, SYN_FAULT_MAX_QUEUED);
    assert_int_equal(s.overflowed, 10);
    assert_int_equal(s.dropped_up, 10);
    assert_int_equal(s.delayed, SYN_FAULT_MAX_QUEUED + 10);
    world_close(&w);

    /* The byte limit. */
    world_open(&w, AF_INET, 0, 14);
    syn_fault_proxy_set(w.proxy, &slow, NULL);
    const size_t big = 60000;
    const uint32_t n = 300;
    send_paced(&w, 0, n, big);
    s = stats(w.proxy);
    assert_int_equal(s.queued, SYN_FAULT_MAX_QUEUED_BYTES / big);
    assert_int_equal(s.overflowed, n - SYN_FAULT_MAX_QUEUED_BYTES / big);
    world_close(&w);
}

static void test_send_failure_counts_as_drop(void **state) {
    (void)state;
    struct world w;
    world_open(&w, AF_INET, 0, 15);
    /* Broadcast without SO_BROADCAST: sendto fails with EACCES. */
    struct sockaddr_in bcast = {.sin_family = AF_INET, .sin_port = htons(9)};
    bcast.sin_addr.s_addr = htonl(INADDR_BROADCAST);
    assert_int_equal(
        syn_fault_proxy_set_upstream(w.proxy, (struct sockaddr *)&bcast, sizeof(bcast)), 0);
    send_paced(&w, 0, 3, 64);
    syn_fault_stats s = stats(w.proxy);
    assert_int_equal(s.dropped_up, 3);
    assert_int_equal(s.fwd_up, 0);
    world_close(&w);
}

static void test_bad_arguments(void **state) {
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    const struct sockaddr *sa = (struct sockaddr *)&a;
    errno = 0;
    assert_null(syn_fault_proxy_new(NULL, sa, sizeof(a), sa, sizeof(a), 0));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(syn_fault_proxy_new(loop, NULL, 0, sa, sizeof(a), 0));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(syn_fault_proxy_new(loop, sa, sizeof(a), NULL, 0, 0));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(syn_fault_proxy_new(loop, sa, 2, sa, sizeof(a), 0));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(syn_fault_proxy_new(loop, (struct sockaddr *)&un, sizeof(un), sa, sizeof(a), 0));
    assert_int_equal(errno, EINVAL);

    /* A port already taken. */
    syn_fault_proxy *p = syn_fault_proxy_new(loop, sa, sizeof(a), sa, sizeof(a), 0);
    assert_non_null(p);
    struct sockaddr_storage taken;
    socklen_t tl = syn_fault_proxy_addr(p, &taken);
    errno = 0;
    assert_null(syn_fault_proxy_new(loop, (struct sockaddr *)&taken, tl, sa, sizeof(a), 0));
    assert_int_equal(errno, EADDRINUSE);
    syn_fault_proxy_free(p);
    syn_fault_proxy_free(NULL);
    ev_loop_destroy(loop);
}

/* Lowers the soft fd limit so that no new descriptor can be opened; returns the old limit. */
static struct rlimit no_more_fds(void) {
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    int fd = dup(0);
    assert_true(fd >= 0);
    close(fd); /* fd is now the lowest free descriptor */
    lim = old;
    lim.rlim_cur = (rlim_t)fd;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &lim), 0);
    return old;
}

static void test_out_of_descriptors(void **state) {
    (void)state;
    struct world w;
    world_open(&w, AF_INET, 1, 16);
    peer_send(w.client, w.proxy, 0, 64);
    RUN_UNTIL(w.loop, w.client->n == 1, 10);
    struct peer *c2 = peer_open(w.loop, AF_INET, 0);
    struct peer *s6 = has_ipv6_loopback() ? peer_open(w.loop, AF_INET6, 1) : NULL;

    struct rlimit old = no_more_fds();
    /* A new client gets no upstream socket: its datagram is dropped. */
    peer_send(c2, w.proxy, 1, 64);
    RUN_UNTIL(w.loop, stats(w.proxy).dropped_up == 1, 10);
    assert_int_equal(stats(w.proxy).dropped_up, 1);
    /* Rebinding fails; the old socket stays and still works. */
    assert_int_equal(syn_fault_proxy_rebind(w.proxy), SYNESIS_ERR_SOCKET);
    if (s6)
        assert_int_equal(
            syn_fault_proxy_set_upstream(w.proxy, (struct sockaddr *)&s6->addr, s6->addr_len),
            SYNESIS_ERR_SOCKET);
    /* No proxy can be made either. */
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    errno = 0;
    assert_null(syn_fault_proxy_new(w.loop, (struct sockaddr *)&a, sizeof(a), (struct sockaddr *)&a,
                                    sizeof(a), 0));
    assert_int_equal(errno, EMFILE);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);

    /* Back to the IPv4 server, and all is well again. */
    assert_int_equal(syn_fault_proxy_set_upstream(w.proxy, (struct sockaddr *)&w.server->addr,
                                                  w.server->addr_len),
                     0);
    peer_send(w.client, w.proxy, 2, 64);
    peer_send(c2, w.proxy, 3, 64);
    RUN_UNTIL(w.loop, w.client->n == 2 && c2->n == 1, 10);
    assert_int_equal(w.client->n, 2);
    assert_int_equal(c2->n, 1);
    if (s6)
        peer_close(s6);
    peer_close(c2);
    world_close(&w);
}

static void test_resource_failures(void **state) {
    (void)state;
    struct world w;
    world_open(&w, AF_INET, 1, 18);
    /* No memory for a proxy. */
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fail_calloc_in = 1;
    errno = 0;
    assert_null(syn_fault_proxy_new(w.loop, (struct sockaddr *)&a, sizeof(a), (struct sockaddr *)&a,
                                    sizeof(a), 0));
    assert_int_equal(errno, ENOMEM);

    /* No memory for a new client, then no upstream port for it: its datagrams are dropped. */
    fail_calloc_in = 1;
    peer_send(w.client, w.proxy, 0, 64);
    RUN_UNTIL(w.loop, stats(w.proxy).dropped_up == 1, 10);
    fail_bind_in = 1;
    peer_send(w.client, w.proxy, 1, 64);
    RUN_UNTIL(w.loop, stats(w.proxy).dropped_up == 2, 10);
    assert_int_equal(stats(w.proxy).dropped_up, 2);
    peer_send(w.client, w.proxy, 2, 64);
    RUN_UNTIL(w.loop, w.client->n == 1, 10);
    assert_int_equal(w.client->n, 1);
    assert_int_equal(w.client->rx[0].seq, 2);

    /* No memory to queue a delayed datagram: the queue cannot grow, or the copy cannot be made. */
    syn_fault_dir slow = {.delay_ms = 5};
    syn_fault_proxy_set(w.proxy, &slow, NULL);
    fail_realloc_in = 1;
    peer_send(w.client, w.proxy, 3, 64);
    RUN_UNTIL(w.loop, stats(w.proxy).overflowed == 1, 10);
    fail_malloc_in = 1;
    peer_send(w.client, w.proxy, 4, 64);
    RUN_UNTIL(w.loop, stats(w.proxy).overflowed == 2, 10);
    peer_send(w.client, w.proxy, 5, 64);
    RUN_UNTIL(w.loop, w.client->n == 2, 10);
    syn_fault_stats s = stats(w.proxy);
    assert_int_equal(s.overflowed, 2);
    assert_int_equal(s.dropped_up, 4);
    assert_int_equal(s.fwd_up, 2);
    assert_int_equal(s.queued, 0);
    assert_int_equal(w.client->n, 2);
    assert_int_equal(w.client->rx[1].seq, 5);
    world_close(&w);
}

static void test_client_limit(void **state) {
    (void)state;
    struct world w;
    world_open(&w, AF_INET, 0, 17);
    struct peer *extra[SYN_FAULT_MAX_CLIENTS];
    for (int i = 0; i < SYN_FAULT_MAX_CLIENTS; i++) {
        extra[i] = peer_open(w.loop, AF_INET, 0);
        assert_non_null(extra[i]);
    }
    /* w.client plus SYN_FAULT_MAX_CLIENTS others: the last one is over the limit. */
    peer_send(w.client, w.proxy, 0, 64);
    RUN_UNTIL(w.loop, w.server->n == 1, 10);
    for (int i = 0; i < SYN_FAULT_MAX_CLIENTS; i++) {
        peer_send(extra[i], w.proxy, (uint32_t)i + 1, 64);
        RUN_UNTIL(w.loop, stats(w.proxy).fwd_up + stats(w.proxy).dropped_up == (uint64_t)i + 2, 10);
    }
    syn_fault_stats s = stats(w.proxy);
    assert_int_equal(s.fwd_up, SYN_FAULT_MAX_CLIENTS);
    assert_int_equal(s.dropped_up, 1);
    for (int i = 0; i < SYN_FAULT_MAX_CLIENTS; i++)
        peer_close(extra[i]);
    world_close(&w);
}

/* Loss in bursts: drops come in runs whose mean length is 1/burst_end, the same for a seed. */
static uint64_t burst_run(uint64_t seed, unsigned char arrived[2000], double *mean_run) {
    struct world w;
    world_open(&w, AF_INET, 0, seed);
    syn_fault_dir bursty = {.burst_start = 0.02, .burst_end = 0.25};
    syn_fault_proxy_set(w.proxy, &bursty, NULL);
    send_paced(&w, 0, 2000, 200);
    syn_fault_stats s = stats(w.proxy);
    assert_int_equal(s.fwd_up + s.dropped_up, 2000);
    assert_int_equal(s.burst_dropped, s.dropped_up);
    RUN_UNTIL(w.loop, w.server->n == s.fwd_up, 10);
    assert_int_equal(w.server->n, s.fwd_up);
    memset(arrived, 0, 2000);
    for (size_t i = 0; i < w.server->n; i++)
        arrived[w.server->rx[i].seq] = 1;
    unsigned runs = 0;
    for (int i = 0; i < 2000; i++)
        if (!arrived[i] && (i == 0 || arrived[i - 1]))
            runs++;
    *mean_run = runs ? (double)s.dropped_up / runs : 0;
    world_close(&w);
    return s.dropped_up;
}

static void test_burst_loss(void **state) {
    (void)state;
    static unsigned char a[2000], b[2000];
    double m1, m2;
    uint64_t d1 = burst_run(7, a, &m1);
    uint64_t d2 = burst_run(7, b, &m2);
    assert_int_equal(d1, d2);
    assert_memory_equal(a, b, sizeof(a));
    /* Stationary loss 0.02 / (0.02 + 0.25) = 7.4 %, mean run 4: wide bounds for 2000 draws. */
    assert_true(d1 >= 60 && d1 <= 300);
    assert_true(m1 >= 2.5 && m1 <= 6.5);
}

/* A burst that lasts longer than burst_max_ms ends at the next datagram, however few come. */
static void test_burst_max_duration(void **state) {
    (void)state;
    struct world w;
    world_open(&w, AF_INET, 0, 19);
    /* Every datagram starts a burst that never ends by itself: only the time limit ends it. */
    syn_fault_dir bursty = {.burst_start = 1, .burst_end = 0, .burst_max_ms = 30};
    syn_fault_proxy_set(w.proxy, &bursty, NULL);
    peer_send(w.client, w.proxy, 0, 100); /* starts the burst, dropped */
    peer_send(w.client, w.proxy, 1, 100); /* inside it */
    RUN_UNTIL(w.loop, stats(w.proxy).dropped_up == 2, 10);
    run_for(w.loop, 0.05);
    peer_send(w.client, w.proxy, 2, 100); /* 50 ms on: the burst is over, this one passes */
    RUN_UNTIL(w.loop, w.server->n == 1, 10);
    assert_int_equal(w.server->n, 1);
    assert_int_equal(w.server->rx[0].seq, 2);
    peer_send(w.client, w.proxy, 3, 100); /* and the next starts a new burst */
    RUN_UNTIL(w.loop, stats(w.proxy).dropped_up == 3, 10);
    syn_fault_stats s = stats(w.proxy);
    assert_int_equal(s.burst_dropped, 3);
    assert_int_equal(s.fwd_up, 1);
    world_close(&w);
}

/* The link MTU drops what would not fit in an IP packet of that size, counting it as too_big. */
static void test_mtu(void **state) {
    (void)state;
    struct world w;
    world_open(&w, AF_INET, 1, 11);
    syn_fault_dir small = {.mtu = 1280};
    syn_fault_proxy_set(w.proxy, &small, &small);
    peer_send(w.client, w.proxy, 0, 1252); /* 1252 + 8 + 20 = 1280: fits */
    peer_send(w.client, w.proxy, 1, 1253);
    peer_send(w.client, w.proxy, 2, 100);
    RUN_UNTIL(w.loop, w.client->n == 2, 10);
    run_for(w.loop, 0.05);
    assert_int_equal(w.server->n, 2);
    assert_int_equal(w.client->n, 2);
    assert_int_equal(w.server->rx[0].len, 1252);
    assert_int_equal(w.server->rx[1].seq, 2);
    syn_fault_stats s = stats(w.proxy);
    assert_int_equal(s.too_big, 1);
    assert_int_equal(s.dropped_up, 1);
    /* Lowered mid-way, it applies from the next datagram on; the other direction too. */
    syn_fault_dir smaller = {.mtu = 1200};
    syn_fault_proxy_set(w.proxy, NULL, &smaller);
    peer_send(w.client, w.proxy, 3, 1252); /* reaches the server, its echo does not return */
    RUN_UNTIL(w.loop, w.server->n == 3, 10);
    run_for(w.loop, 0.05);
    assert_int_equal(w.server->n, 3);
    assert_int_equal(w.client->n, 2);
    s = stats(w.proxy);
    assert_int_equal(s.too_big, 2);
    assert_int_equal(s.dropped_down, 1);
    world_close(&w);
}

/* A bottleneck paces datagrams at the rate and tail-drops what overflows its FIFO. */
static void test_rate_and_queue(void **state) {
    (void)state;
    struct world w;
    world_open(&w, AF_INET, 0, 13);
    /* 8 Mbit/s: a 1000-byte datagram every millisecond; the FIFO holds 20 of them. */
    syn_fault_dir link = {.rate_bps = 8e6, .queue_bytes = 20000};
    syn_fault_proxy_set(w.proxy, &link, NULL);
    uint64_t t0 = syn_now_ns();
    for (uint32_t i = 0; i < 60; i++)
        peer_send(w.client, w.proxy, i, 1000);
    RUN_UNTIL(w.loop, stats(w.proxy).fwd_up + stats(w.proxy).dropped_up == 60, 10);
    syn_fault_stats s = stats(w.proxy);
    /* The loop may read the 60 datagrams over a few wake-ups while the link drains: about 20
     * pass, a few more if it does (or if the process is descheduled meanwhile), and the rest is
     * tail-dropped. */
    assert_true(s.fwd_up >= 20 && s.fwd_up <= 40);
    assert_int_equal(s.tail_dropped, 60 - s.fwd_up);
    assert_int_equal(s.dropped_up, s.tail_dropped);
    RUN_UNTIL(w.loop, w.server->n == s.fwd_up, 10);
    assert_int_equal(w.server->n, s.fwd_up);
    for (size_t i = 1; i < w.server->n; i++) {
        assert_true(w.server->rx[i].seq > w.server->rx[i - 1].seq); /* FIFO */
        /* Never faster than the rate (a little slack for the timer's early wake-ups). */
        assert_true(w.server->rx[i].at_ns - t0 >= (uint64_t)i * 1000000u - 200000u);
    }
    /* Datagrams spaced out at the rate all pass. */
    send_paced(&w, 100, 20, 500);
    run_for(w.loop, 0.05);
    assert_int_equal(stats(w.proxy).fwd_up, s.fwd_up + 20);
    world_close(&w);
}

/* Jitter with keep_order delays every datagram and never reorders them. */
static void test_jitter_keep_order(void **state) {
    (void)state;
    struct world w;
    world_open(&w, AF_INET, 0, 17);
    syn_fault_dir jitter = {.delay_ms = 5, .jitter_ms = 20, .keep_order = 1};
    syn_fault_proxy_set(w.proxy, &jitter, NULL);
    send_paced(&w, 0, 200, 100);
    RUN_UNTIL(w.loop, w.server->n == 200, 10);
    assert_int_equal(w.server->n, 200);
    for (uint32_t i = 0; i < 200; i++) {
        assert_int_equal(w.server->rx[i].seq, i);
        assert_true(w.server->rx[i].at_ns - w.server->rx[i].sent_ns >= 5000000u);
    }
    world_close(&w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pass_through),
        cmocka_unit_test(test_ipv6_and_family_change),
        cmocka_unit_test(test_drop_all_and_none),
        cmocka_unit_test(test_drop_half_is_deterministic),
        cmocka_unit_test(test_duplicate),
        cmocka_unit_test(test_delay),
        cmocka_unit_test(test_reorder),
        cmocka_unit_test(test_blackhole),
        cmocka_unit_test(test_rebind),
        cmocka_unit_test(test_set_upstream),
        cmocka_unit_test(test_several_clients),
        cmocka_unit_test(test_stats_exact),
        cmocka_unit_test(test_free_with_queued),
        cmocka_unit_test(test_queue_limits),
        cmocka_unit_test(test_send_failure_counts_as_drop),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_out_of_descriptors),
        cmocka_unit_test(test_resource_failures),
        cmocka_unit_test(test_client_limit),
        cmocka_unit_test(test_burst_loss),
        cmocka_unit_test(test_burst_max_duration),
        cmocka_unit_test(test_mtu),
        cmocka_unit_test(test_rate_and_queue),
        cmocka_unit_test(test_jitter_keep_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * tcplink_bench: QUIC over TCP links alone (src/tcplink.c), one client and one server link on
 * loopback on one loop: frames of 1200 bytes one way as fast as backpressure allows, and the heap
 * one connected pair of links holds while idle. Run from a Release build:
 *   build/release/tests/bench/tcplink_bench [-n FRAMES] [-p PAIRS]
 * Prints one JSON line per figure.
 */
#include <arpa/inet.h>
#include <malloc.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench_util.h"
#include "tcplink.h"
#include "tls.h"

typedef struct side {
    syn_tcplink *l;
    int up, closed, writable;
    size_t packets;
} side;

static void on_up(syn_tcplink *l) { ((side *)syn_tcplink_owner(l))->up = 1; }
static void on_packet(syn_tcplink *l, const uint8_t *d, size_t n) {
    (void)d;
    (void)n;
    ((side *)syn_tcplink_owner(l))->packets++;
}
static void on_writable(syn_tcplink *l) { ((side *)syn_tcplink_owner(l))->writable = 1; }
static void on_closed(syn_tcplink *l, int err, const char *detail) {
    side *s = syn_tcplink_owner(l);
    s->closed = 1;
    fprintf(stderr, "link closed: %s: %s\n", synesis_error_name(err), detail);
}
static const syn_tcplink_ops ops = {on_up, on_packet, on_writable, on_closed};

static SSL_CTX *sctx, *cctx;
static int lfd;
static uint16_t port;
static side *servers;
static int n_accepted;

static void die(const char *what, int rc, const char *d) {
    fprintf(stderr, "%s: %s: %s\n", what, synesis_error_name(rc), d);
    exit(1);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents) {
    (void)w;
    (void)revents;
    int fd;
    while ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
        char d[SYNESIS_DETAIL_MAX];
        side *s = &servers[n_accepted++];
        int rc = syn_tcplink_accept(&s->l, loop, fd, sctx, 10, &ops, s, d);
        if (rc)
            die("accept", rc, d);
    }
}

static void contexts(const char *dir) {
    char d[SYNESIS_DETAIL_MAX];
    syn_tls_server_config s;
    memset(&s, 0, sizeof(s));
    s.cert_file = bench_path(dir, "edge.pem");
    s.key_file = bench_path(dir, "edge.key");
    s.ca_file = bench_path(dir, "ca.pem");
    s.alpn = "synesis-tunnel/1";
    SSL_CTX *q = NULL;
    int rc;
    if ((rc = syn_tls_server_ctx_new(&q, &s, d)) || (rc = syn_tcplink_server_ctx_new(&sctx, q, d)))
        die("server context", rc, d);
    SSL_CTX_free(q);
    syn_tls_client_config c;
    memset(&c, 0, sizeof(c));
    c.cert_file = bench_path(dir, "device.pem");
    c.key_file = bench_path(dir, "device.key");
    c.ca_file = bench_path(dir, "ca.pem");
    if ((rc = syn_tls_client_ctx_new(&q, &c, d)) || (rc = syn_tcplink_client_ctx_new(&cctx, q, d)))
        die("client context", rc, d);
    SSL_CTX_free(q);
}

static void connect_one(struct ev_loop *loop, side *c) {
    syn_sockaddr to;
    memset(&to, 0, sizeof(to));
    struct sockaddr_in *in = (struct sockaddr_in *)&to.ss;
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    in->sin_port = htons(port);
    to.len = sizeof(*in);
    syn_tcplink_client_opts o;
    memset(&o, 0, sizeof(o));
    o.connect_to = &to;
    o.ctx = cctx;
    o.server_name = "localhost";
    o.timeout = 10;
    char d[SYNESIS_DETAIL_MAX];
    int rc = syn_tcplink_connect(&c->l, loop, &o, &ops, c, d);
    if (rc)
        die("connect", rc, d);
}

int main(int argc, char **argv) {
    long frames = 200000, pairs = 200;
    int opt;
    while ((opt = getopt(argc, argv, "n:p:h")) != -1) {
        if (opt == 'n')
            frames = atol(optarg);
        else if (opt == 'p')
            pairs = atol(optarg);
        else {
            fprintf(stderr, "usage: tcplink_bench [-n FRAMES] [-p PAIRS]\n");
            return opt == 'h' ? 0 : 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    contexts(bench_pki("tcplink-bench"));
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 1024) ||
        getsockname(lfd, (struct sockaddr *)&a, &len)) {
        perror("listen");
        return 1;
    }
    port = ntohs(a.sin_port);
    servers = calloc((size_t)pairs + 1, sizeof(*servers));
    side *clients = calloc((size_t)pairs + 1, sizeof(*clients));
    ev_io lw;
    ev_io_init(&lw, accept_cb, lfd, EV_READ);
    ev_io_start(loop, &lw);

    /* throughput: one pair */
    connect_one(loop, &clients[0]);
    while (!clients[0].up || n_accepted < 1 || !servers[0].up)
        ev_run(loop, EVRUN_ONCE);
    uint8_t buf[1200];
    memset(buf, 0x5a, sizeof(buf));
    double t0 = bench_now();
    long sent = 0;
    while (servers[0].packets < (size_t)frames) {
        while (sent < frames) {
            int rv = syn_tcplink_send(clients[0].l, buf, sizeof(buf));
            if (rv < 0)
                die("send", rv, "");
            sent++;
            if (rv == 1) {
                clients[0].writable = 0;
                break;
            }
        }
        ev_run(loop, EVRUN_ONCE);
        while (sent < frames && !clients[0].writable && syn_tcplink_queued(clients[0].l) > 0)
            ev_run(loop, EVRUN_ONCE);
    }
    double dt = bench_now() - t0;
    printf("{\"name\":\"tcplink_throughput\",\"params\":{\"frames\":%ld,\"size\":1200},"
           "\"seconds\":%.3f,\"frames_per_s\":%.0f,\"MB_per_s\":%.1f}\n",
           frames, dt, frames / dt, frames * 1200.0 / dt / 1e6);

    /* memory: pairs idle connected pairs */
    struct mallinfo2 m0 = mallinfo2();
    for (long i = 1; i <= pairs; i++)
        connect_one(loop, &clients[i]);
    for (;;) {
        long up = 0;
        for (long i = 1; i <= pairs; i++)
            up += clients[i].up && servers[i].up;
        if (up == pairs || n_accepted > pairs + 1)
            break;
        ev_run(loop, EVRUN_ONCE);
    }
    struct mallinfo2 m1 = mallinfo2();
    double per_pair = (double)(m1.uordblks - m0.uordblks) / (double)pairs;
    printf("{\"name\":\"tcplink_idle_heap\",\"params\":{\"pairs\":%ld},\"bytes_per_pair\":%.0f}\n",
           pairs, per_pair);
    for (long i = 0; i <= pairs; i++) {
        syn_tcplink_free(clients[i].l);
        syn_tcplink_free(servers[i].l);
    }
    ev_io_stop(loop, &lw);
    close(lfd);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
    free(servers);
    free(clients);
    ev_loop_destroy(loop);
    return 0;
}

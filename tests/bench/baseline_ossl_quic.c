/*
 * Baseline: OpenSSL 3.5's own QUIC stack on loopback, client and server in one program.
 *
 *   baseline_ossl_quic [--quick] [--pki DIR] [--init PATH] [--bytes N]
 *
 * The server is a fork()ed child pinned to CPU 1 (blocking listener from
 * OSSL_QUIC_server_method(): SSL_new_listener / SSL_accept_connection / SSL_accept_stream); the
 * client is the parent pinned to CPU 0 (OSSL_QUIC_client_method(), blocking). Both processes are
 * single-threaded, so CLOCK_PROCESS_CPUTIME_ID is each side's CPU time. Mutual TLS 1.3 with the
 * test PKI, ALPN "synesis-tunnel/1", no Retry (SSL_LISTENER_FLAG_NO_VALIDATE: the tunnel's edge
 * does not validate addresses either), no session resumption.
 *
 * Figures (one JSON line each on stdout, see bench_common.h):
 *   handshake  {"groups":"x25519"|"default"}  us from SSL_connect() to its return
 *   rate       {"size":1024,"inflight":N}     req/s, one new bidi stream per request, echo
 *   latency    {"size":1024,"inflight":1}     us per request (p50 as median, p99, p999)
 *   bulk       {"bytes":N,"direction":"down"} Gbit/s, one stream server -> client
 */
#include "bench_common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/quic.h>
#include <openssl/ssl.h>

#define IMPL "openssl-quic"
#define REQ_SIZE 1024
#define WARMUP_HS 2
#define BULK_CHUNK (256 * 1024)

enum { MODE_HANDSHAKE, MODE_STREAMS };

typedef struct {
    const bench_opts *o;
    int fd;   /* bound UDP socket (made by the parent before fork) */
    int mode; /* MODE_* */
    int n;    /* handshakes to accept (MODE_HANDSHAKE) */
} qsrv_arg;

static unsigned char bulk_buf[BULK_CHUNK];

/* SO_RCVBUF/SO_SNDBUF of both UDP sockets. With the kernel default (208 KiB here) the 64 MiB bulk
 * stalled in about half the program runs on OpenSSL 3.5.7: after receive-buffer drops on the
 * server's socket both sides sat idle in poll() (server in SSL_write_ex, client in SSL_read_ex)
 * with nothing retransmitted. With 4 MiB no run stalled (24 of 24); the watchdog catches it. */
static int sockbuf = 4 << 20;

static int set_nonblock(int fd) {
    if (sockbuf > 0) {
        /* as root the FORCE variants pass net.core.[rw]mem_max */
        if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sockbuf, sizeof(sockbuf)) != 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sockbuf, sizeof(sockbuf));
        if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sockbuf, sizeof(sockbuf)) != 0)
            setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sockbuf, sizeof(sockbuf));
    }
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Reads a whole stream (until FIN) into buf; returns the length or -1. */
static long read_all(SSL *s, unsigned char *buf, size_t cap) {
    size_t got = 0, n = 0;
    for (;;) {
        if (got == cap)
            return -1;
        if (SSL_read_ex(s, buf + got, cap - got, &n) == 1) {
            got += n;
            continue;
        }
        return SSL_get_error(s, 0) == SSL_ERROR_ZERO_RETURN ? (long)got : -1;
    }
}

static void quic_server(void *argp, bench_srv_result *res) {
    qsrv_arg *a = argp;
    SSL_CTX *ctx = bench_ssl_server_ctx(a->o, OSSL_QUIC_server_method(), 1);
    SSL *l = SSL_new_listener(ctx, SSL_LISTENER_FLAG_NO_VALIDATE);
    if (!l || SSL_set_fd(l, a->fd) != 1 || SSL_listen(l) != 1)
        bench_ssl_die("server listener");

    if (a->mode == MODE_HANDSHAKE) {
        double c0 = 0, w0 = 0;
        for (int i = 0; i < a->n; i++) {
            if (i == WARMUP_HS) {
                c0 = bench_proc_cpu();
                w0 = bench_now();
            }
            SSL *c = SSL_accept_connection(l, 0);
            if (!c)
                bench_ssl_die("SSL_accept_connection");
            if (SSL_do_handshake(c) != 1)
                bench_ssl_die("server handshake");
            /* kept until exit: the client closes, the listener's reactor does the rest */
        }
        res->cpu_s = bench_proc_cpu() - c0;
        res->wall_s = bench_now() - w0;
        res->count = a->n - WARMUP_HS;
        res->ok = 1;
        return;
    }

    SSL *conn = SSL_accept_connection(l, 0);
    if (!conn)
        bench_ssl_die("SSL_accept_connection");
    /* Accepted connections default to AUTO policy with a default stream: streams would be refused
     * by SSL_accept_stream(). */
    if (SSL_set_default_stream_mode(conn, SSL_DEFAULT_STREAM_MODE_NONE) != 1 ||
        SSL_set_incoming_stream_policy(conn, SSL_INCOMING_STREAM_POLICY_ACCEPT, 0) != 1)
        bench_ssl_die("server stream policy");
    unsigned char req[2 * REQ_SIZE];
    double c0 = -1, w0 = 0, count = 0;
    for (;;) {
        SSL *s = SSL_accept_stream(conn, 0);
        if (!s)
            bench_ssl_die("SSL_accept_stream");
        if (c0 < 0) {
            c0 = bench_proc_cpu();
            w0 = bench_now();
        }
        long got = read_all(s, req, sizeof(req));
        if (got < 0)
            bench_ssl_die("server stream read");
        size_t w = 0;
        if (got == 1) { /* quit */
            SSL_free(s);
            break;
        }
        if (got == 8) { /* bulk: 8-byte size, then that many bytes down */
            uint64_t left;
            memcpy(&left, req, 8);
            count += (double)left;
            while (left) {
                size_t k = left < sizeof(bulk_buf) ? (size_t)left : sizeof(bulk_buf);
                if (SSL_write_ex(s, bulk_buf, k, &w) != 1 || w != k)
                    bench_ssl_die("server bulk write");
                left -= k;
            }
            if (SSL_stream_conclude(s, 0) != 1)
                bench_ssl_die("SSL_stream_conclude");
        } else { /* echo and end the stream */
            if (SSL_write_ex2(s, req, (size_t)got, SSL_WRITE_FLAG_CONCLUDE, &w) != 1)
                bench_ssl_die("server echo");
            count += 1;
        }
        SSL_free(s); /* a concluded stream is still flushed after free */
    }
    res->cpu_s = bench_proc_cpu() - c0;
    res->wall_s = bench_now() - w0;
    res->count = count;
    res->ok = 1;
}

/* Binds a UDP socket on 127.0.0.1, port chosen by the kernel. */
static int bind_udp(struct sockaddr_in *sa) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0)
        bench_die("socket: %s", strerror(errno));
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(*sa);
    if (bind(fd, (struct sockaddr *)sa, sizeof(*sa)) != 0 ||
        getsockname(fd, (struct sockaddr *)sa, &len) != 0 || set_nonblock(fd) != 0)
        bench_die("bind: %s", strerror(errno));
    return fd;
}

static pid_t start_server(const bench_opts *o, int mode, int n, struct sockaddr_in *sa, int *rfd) {
    qsrv_arg a = {.o = o, .mode = mode, .n = n};
    a.fd = bind_udp(sa);
    pid_t pid = bench_fork_server(quic_server, &a, 120, rfd);
    close(a.fd);
    return pid;
}

/* A new client connection, not yet connected. */
static SSL *client_new(SSL_CTX *ctx, const struct sockaddr_in *sa) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0 || connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) != 0 ||
        set_nonblock(fd) != 0)
        bench_die("client socket: %s", strerror(errno));
    BIO *bio = BIO_new(BIO_s_datagram());
    if (!bio)
        bench_ssl_die("BIO_new");
    BIO_set_fd(bio, fd, BIO_CLOSE);
    SSL *ssl = SSL_new(ctx);
    if (!ssl)
        bench_ssl_die("SSL_new");
    SSL_set_bio(ssl, bio, bio);
    BIO_ADDR *peer = BIO_ADDR_new();
    if (!peer || BIO_ADDR_rawmake(peer, AF_INET, &sa->sin_addr, 4, sa->sin_port) != 1 ||
        SSL_set1_initial_peer_addr(ssl, peer) != 1 ||
        SSL_set_tlsext_host_name(ssl, "localhost") != 1 || SSL_set1_host(ssl, "localhost") != 1 ||
        SSL_set_default_stream_mode(ssl, SSL_DEFAULT_STREAM_MODE_NONE) != 1)
        bench_ssl_die("client setup");
    BIO_ADDR_free(peer);
    return ssl;
}

static void client_connect(SSL *ssl) {
    if (SSL_connect(ssl) != 1)
        bench_ssl_die("SSL_connect");
}

static void client_close(SSL *ssl) {
    SSL_shutdown_ex(ssl, SSL_SHUTDOWN_FLAG_RAPID | SSL_SHUTDOWN_FLAG_NO_BLOCK, NULL, 0);
    SSL_free(ssl);
}

/* Sends the quit request (flushed before the connection closes) and closes. */
static void client_quit(SSL *ssl) {
    SSL *s = SSL_new_stream(ssl, 0);
    size_t w;
    if (!s || SSL_write_ex2(s, "q", 1, SSL_WRITE_FLAG_CONCLUDE, &w) != 1)
        bench_ssl_die("quit stream");
    SSL_free(s);
    /* blocking, default flags: flushes the streams, then closes the connection */
    SSL_shutdown_ex(ssl, 0, NULL, 0);
    SSL_free(ssl);
}

/* ---- handshake ---- */

static void bench_handshake(const bench_opts *o, const char *groups_name, const char *groups) {
    int n = (o->quick ? 15 : 50) + WARMUP_HS;
    SSL_CTX *ctx = bench_ssl_client_ctx(o, OSSL_QUIC_client_method(), 1, groups);
    struct sockaddr_in sa;
    int rfd;
    pid_t pid = start_server(o, MODE_HANDSHAKE, n, &sa, &rfd);
    double *us = calloc((size_t)n, sizeof(double));
    double ccpu = 0;
    char negotiated[64] = "?";
    bench_stage("handshake", 60);
    for (int i = 0; i < n; i++) {
        SSL *ssl = client_new(ctx, &sa);
        double c0 = bench_proc_cpu(), t0 = bench_now();
        client_connect(ssl);
        double t1 = bench_now(), c1 = bench_proc_cpu();
        if (i == 0) {
            const unsigned char *alpn = NULL;
            unsigned int alen = 0;
            SSL_get0_alpn_selected(ssl, &alpn, &alen);
            const char *g = SSL_get0_group_name(ssl);
            snprintf(negotiated, sizeof(negotiated), "%s", g ? g : "?");
            bench_log("  quic handshake: group %s, ALPN %.*s, %s", negotiated, (int)alen,
                      alpn ? (const char *)alpn : "", SSL_get_version(ssl));
        }
        if (i >= WARMUP_HS) {
            us[i - WARMUP_HS] = (t1 - t0) * 1e6;
            ccpu += c1 - c0;
        }
        client_close(ssl);
    }
    bench_srv_result r;
    if (bench_wait_server(pid, rfd, &r) != 0)
        bench_die("handshake server failed");
    bench_stage(NULL, 0);
    size_t m = (size_t)(n - WARMUP_HS);
    char params[64], extra[256];
    snprintf(params, sizeof(params), "\"groups\":\"%s\"", groups_name);
    snprintf(extra, sizeof(extra),
             ",\"client_cpu_us\":%.1f,\"server_cpu_us\":%.1f,\"client_cpu_s\":%.6f,"
             "\"server_cpu_s\":%.6f,\"negotiated_group\":\"%s\"",
             ccpu / (double)m * 1e6, r.cpu_s / r.count * 1e6, ccpu, r.cpu_s, negotiated);
    bench_emit("handshake", IMPL, params, "us", us, m, extra);
    free(us);
    SSL_CTX_free(ctx);
}

/* ---- rate and latency ---- */

typedef struct {
    double rps, ccpu_per, scpu_per;
    size_t done;
} rate_result;

static void rate_run(const bench_opts *o, SSL_CTX *ctx, int inflight, double dur, double *lat,
                     size_t lat_cap, size_t *nlat, rate_result *out) {
    struct sockaddr_in sa;
    int rfd;
    pid_t pid = start_server(o, MODE_STREAMS, 0, &sa, &rfd);
    SSL *conn = client_new(ctx, &sa);
    bench_stage("rate: connect", 20);
    client_connect(conn);
    bench_stage("rate: requests", 20 + (unsigned)dur);
    SSL **ring = calloc((size_t)inflight, sizeof(SSL *));
    double *start = calloc((size_t)inflight, sizeof(double));
    unsigned char req[REQ_SIZE], resp[2 * REQ_SIZE];
    memset(req, 'r', sizeof(req));
    size_t head = 0, count = 0, done = 0, w;
    double c0 = bench_proc_cpu(), t0 = bench_now(), t_end = t0 + dur, t_last = t0;
    int open = 1;
    /* a hard cap on requests keeps every loop bounded even if the clock misbehaves */
    size_t max_req = 20u * 1000u * 1000u;
    while (count < (size_t)inflight && count < max_req) {
        double ts = bench_now();
        SSL *s = SSL_new_stream(conn, 0);
        if (!s || SSL_write_ex2(s, req, sizeof(req), SSL_WRITE_FLAG_CONCLUDE, &w) != 1)
            bench_ssl_die("client request");
        ring[(head + count) % (size_t)inflight] = s;
        start[(head + count) % (size_t)inflight] = ts;
        count++;
    }
    while (count) {
        SSL *s = ring[head];
        long got = read_all(s, resp, sizeof(resp));
        if (got != REQ_SIZE)
            bench_ssl_die("client response");
        double now = bench_now();
        if (lat && *nlat < lat_cap)
            lat[(*nlat)++] = (now - start[head]) * 1e6;
        SSL_free(s);
        done++;
        t_last = now;
        count--;
        if (open && (now >= t_end || done + count >= max_req))
            open = 0;
        if (open) {
            double ts = bench_now();
            s = SSL_new_stream(conn, 0);
            if (!s || SSL_write_ex2(s, req, sizeof(req), SSL_WRITE_FLAG_CONCLUDE, &w) != 1)
                bench_ssl_die("client request");
            ring[head] = s;
            start[head] = ts;
            count++;
        }
        head = (head + 1) % (size_t)inflight;
        /* with the ring full, the slot just refilled is the tail: head moves on */
    }
    double ccpu = bench_proc_cpu() - c0;
    bench_stage("rate: close", 20);
    client_quit(conn);
    bench_srv_result r;
    if (bench_wait_server(pid, rfd, &r) != 0)
        bench_die("rate server failed");
    bench_stage(NULL, 0);
    out->rps = (double)done / (t_last - t0);
    out->ccpu_per = ccpu / (double)done;
    out->scpu_per = r.cpu_s / r.count;
    out->done = done;
    free(ring);
    free(start);
}

static void bench_rate(const bench_opts *o) {
    SSL_CTX *ctx = bench_ssl_client_ctx(o, OSSL_QUIC_client_method(), 1, NULL);
    static const int levels[] = {1, 16, 256};
    int runs = o->quick ? 3 : 5;
    double dur = o->quick ? 0.3 : 2.0;
    size_t lat_cap = 2u * 1000u * 1000u, nlat = 0;
    double *lat = calloc(lat_cap, sizeof(double));
    for (size_t li = 0; li < sizeof(levels) / sizeof(levels[0]); li++) {
        int inflight = levels[li];
        double rps[8], cc[8], sc[8];
        size_t total = 0;
        for (int i = 0; i < runs; i++) {
            rate_result rr;
            rate_run(o, ctx, inflight, dur, inflight == 1 ? lat : NULL, lat_cap, &nlat, &rr);
            rps[i] = rr.rps;
            cc[i] = rr.ccpu_per * 1e6;
            sc[i] = rr.scpu_per * 1e6;
            total += rr.done;
            bench_log("  quic rate inflight %d run %d: %.0f req/s (%zu requests)", inflight, i,
                      rr.rps, rr.done);
        }
        bench_sort(cc, (size_t)runs);
        bench_sort(sc, (size_t)runs);
        char params[64], extra[256];
        snprintf(params, sizeof(params), "\"size\":%d,\"inflight\":%d", REQ_SIZE, inflight);
        snprintf(extra, sizeof(extra),
                 ",\"client_cpu_us_per_req\":%.2f,\"server_cpu_us_per_req\":%.2f,"
                 "\"requests\":%zu,\"seconds_per_run\":%.2f,\"udp_sockbuf\":%d%s",
                 cc[runs / 2], sc[runs / 2], total, dur, sockbuf,
                 inflight > 100 ? ",\"note\":\"peer stream credit: 100 bidi streams\"" : "");
        bench_emit("rate", IMPL, params, "req/s", rps, (size_t)runs, extra);
        if (inflight == 1) {
            bench_sort(lat, nlat);
            char lx[128];
            snprintf(lx, sizeof(lx), ",\"p99\":%.2f,\"p999\":%.2f,\"samples_from_runs\":%d",
                     bench_pct(lat, nlat, 99.0), bench_pct(lat, nlat, 99.9), runs);
            snprintf(params, sizeof(params), "\"size\":%d,\"inflight\":1", REQ_SIZE);
            bench_emit("latency", IMPL, params, "us", lat, nlat, lx);
        }
    }
    free(lat);
    SSL_CTX_free(ctx);
}

/* ---- bulk ---- */

static void bench_bulk(const bench_opts *o) {
    uint64_t bytes = o->bytes ? o->bytes : (o->quick ? 64ull << 20 : 1ull << 30);
    int runs = o->quick ? 3 : 5;
    SSL_CTX *ctx = bench_ssl_client_ctx(o, OSSL_QUIC_client_method(), 1, NULL);
    unsigned char *buf = malloc(BULK_CHUNK);
    double gbps[8], cc[8], sc[8];
    for (int i = 0; i < runs; i++) {
        struct sockaddr_in sa;
        int rfd;
        pid_t pid = start_server(o, MODE_STREAMS, 0, &sa, &rfd);
        SSL *conn = client_new(ctx, &sa);
        bench_stage("bulk: connect", 20);
        client_connect(conn);
        bench_stage("bulk: transfer", 20 + (unsigned)(bytes / 20000000u));
        double c0 = bench_proc_cpu(), t0 = bench_now();
        SSL *s = SSL_new_stream(conn, 0);
        size_t w, n;
        if (!s || SSL_write_ex2(s, &bytes, 8, SSL_WRITE_FLAG_CONCLUDE, &w) != 1)
            bench_ssl_die("bulk request");
        uint64_t got = 0;
        for (;;) {
            if (SSL_read_ex(s, buf, BULK_CHUNK, &n) == 1) {
                got += n;
                continue;
            }
            if (SSL_get_error(s, 0) != SSL_ERROR_ZERO_RETURN)
                bench_ssl_die("bulk read");
            break;
        }
        double t1 = bench_now(), ccpu = bench_proc_cpu() - c0;
        if (got != bytes)
            bench_die("bulk: got %llu of %llu bytes", (unsigned long long)got,
                      (unsigned long long)bytes);
        SSL_free(s);
        bench_stage("bulk: close", 20);
        client_quit(conn);
        bench_srv_result r;
        if (bench_wait_server(pid, rfd, &r) != 0)
            bench_die("bulk server failed");
        bench_stage(NULL, 0);
        double gib = (double)bytes / (double)(1ull << 30);
        gbps[i] = (double)bytes * 8.0 / (t1 - t0) / 1e9;
        cc[i] = ccpu / gib;
        sc[i] = r.cpu_s / gib;
        bench_log("  quic bulk run %d: %.2f Gbit/s, client %.2f s/GiB, server %.2f s/GiB", i,
                  gbps[i], cc[i], sc[i]);
    }
    bench_sort(cc, (size_t)runs);
    bench_sort(sc, (size_t)runs);
    char params[96], extra[160];
    snprintf(params, sizeof(params), "\"bytes\":%llu,\"direction\":\"down\"",
             (unsigned long long)bytes);
    snprintf(extra, sizeof(extra),
             ",\"client_cpu_s_per_gib\":%.3f,\"server_cpu_s_per_gib\":%.3f,\"udp_sockbuf\":%d",
             cc[runs / 2], sc[runs / 2], sockbuf);
    bench_emit("bulk", IMPL, params, "Gbit/s", gbps, (size_t)runs, extra);
    free(buf);
    SSL_CTX_free(ctx);
}

int main(int argc, char **argv) {
    bench_opts o;
    bench_parse(&o, argc, argv,
                "OpenSSL QUIC baseline: handshake, rate/latency, bulk (JSON lines on stdout)\n", 1);
    bench_pin(0);
    double t0 = bench_now();
    bench_log("baseline_ossl_quic: %s, server child on CPU 1, client on CPU 0",
              OpenSSL_version(OPENSSL_VERSION));
    if (bench_want(&o, "handshake")) {
        bench_handshake(&o, "x25519", "X25519");
        bench_handshake(&o, "default", NULL);
    }
    if (bench_want(&o, "rate"))
        bench_rate(&o); /* also the latency figure */
    if (bench_want(&o, "bulk"))
        bench_bulk(&o);
    bench_log("baseline_ossl_quic: done in %.1f s", bench_now() - t0);
    return 0;
}

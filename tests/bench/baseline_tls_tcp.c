/*
 * Baseline: TLS 1.3 over TCP on loopback with the same OpenSSL, client and server in one program.
 *
 *   baseline_tls_tcp [--quick] [--pki DIR] [--init PATH] [--bytes N]
 *
 * The server is a fork()ed child pinned to CPU 1, the client the parent pinned to CPU 0; both are
 * single-threaded with blocking sockets, so CLOCK_PROCESS_CPUTIME_ID is each side's CPU time.
 * Mutual TLS 1.3 with the test PKI, ALPN "synesis-tunnel/1", TCP_NODELAY on both ends, no
 * session resumption.
 *
 * Figures (one JSON line each on stdout, see bench_common.h):
 *   handshake  {"groups":"x25519"|"default"}  us from connect() to SSL_connect() returning
 *   latency    {"size":1024,"inflight":1}     us per 1 KiB ping-pong (p50 as median, p99, p999)
 *   rate       {"size":1024,"inflight":1}     req/s of the same ping-pong runs
 *   bulk       {"bytes":N,"direction":"down"} Gbit/s, server -> client
 */
#include "bench_common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define IMPL "tls-tcp"
#define REQ_SIZE 1024
#define WARMUP_HS 2
#define BULK_CHUNK (256 * 1024)

enum { MODE_HANDSHAKE, MODE_ECHO, MODE_BULK };

typedef struct {
    const bench_opts *o;
    int lfd;
    int mode;
    int n;
} tsrv_arg;

static unsigned char bulk_buf[BULK_CHUNK];

static void nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static int read_exact(SSL *s, void *buf, size_t len) {
    size_t got = 0, n;
    while (got < len) {
        if (SSL_read_ex(s, (char *)buf + got, len - got, &n) != 1)
            return -1;
        got += n;
    }
    return 0;
}

static SSL *server_accept(SSL_CTX *ctx, int lfd) {
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0)
        bench_die("accept: %s", strerror(errno));
    nodelay(fd);
    SSL *s = SSL_new(ctx);
    if (!s || SSL_set_fd(s, fd) != 1)
        bench_ssl_die("server SSL_new");
    if (SSL_accept(s) != 1)
        bench_ssl_die("SSL_accept");
    return s;
}

static void server_close(SSL *s) {
    int fd = SSL_get_fd(s);
    SSL_shutdown(s);
    SSL_free(s);
    close(fd);
}

static void tls_server(void *argp, bench_srv_result *res) {
    tsrv_arg *a = argp;
    SSL_CTX *ctx = bench_ssl_server_ctx(a->o, TLS_server_method(), 1);
    double c0 = 0, w0 = 0;
    if (a->mode == MODE_HANDSHAKE) {
        for (int i = 0; i < a->n; i++) {
            if (i == WARMUP_HS) {
                c0 = bench_proc_cpu();
                w0 = bench_now();
            }
            SSL *s = server_accept(ctx, a->lfd);
            /* wait for the client's close_notify / FIN, then close */
            unsigned char b;
            size_t n;
            (void)SSL_read_ex(s, &b, 1, &n);
            server_close(s);
        }
        res->count = a->n - WARMUP_HS;
    } else if (a->mode == MODE_ECHO) {
        SSL *s = server_accept(ctx, a->lfd);
        c0 = bench_proc_cpu();
        w0 = bench_now();
        unsigned char req[REQ_SIZE];
        size_t w;
        double count = 0;
        while (read_exact(s, req, sizeof(req)) == 0) {
            if (SSL_write_ex(s, req, sizeof(req), &w) != 1)
                bench_ssl_die("server echo");
            count++;
        }
        res->count = count;
        server_close(s);
    } else {
        SSL *s = server_accept(ctx, a->lfd);
        c0 = bench_proc_cpu();
        w0 = bench_now();
        uint64_t left;
        size_t w;
        if (read_exact(s, &left, sizeof(left)) != 0)
            bench_ssl_die("bulk request");
        res->count = (double)left;
        while (left) {
            size_t k = left < sizeof(bulk_buf) ? (size_t)left : sizeof(bulk_buf);
            if (SSL_write_ex(s, bulk_buf, k, &w) != 1 || w != k)
                bench_ssl_die("server bulk write");
            left -= k;
        }
        unsigned char b;
        size_t n;
        (void)SSL_read_ex(s, &b, 1, &n); /* the client's close */
        server_close(s);
    }
    res->cpu_s = bench_proc_cpu() - c0;
    res->wall_s = bench_now() - w0;
    res->ok = 1;
}

static pid_t start_server(const bench_opts *o, int mode, int n, struct sockaddr_in *sa, int *rfd) {
    tsrv_arg a = {.o = o, .mode = mode, .n = n};
    a.lfd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(a.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(*sa);
    if (a.lfd < 0 || bind(a.lfd, (struct sockaddr *)sa, sizeof(*sa)) != 0 ||
        getsockname(a.lfd, (struct sockaddr *)sa, &len) != 0 || listen(a.lfd, 64) != 0)
        bench_die("listen: %s", strerror(errno));
    pid_t pid = bench_fork_server(tls_server, &a, 120, rfd);
    close(a.lfd);
    return pid;
}

static SSL *client_connect(SSL_CTX *ctx, const struct sockaddr_in *sa) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) != 0)
        bench_die("connect: %s", strerror(errno));
    nodelay(fd);
    SSL *s = SSL_new(ctx);
    if (!s || SSL_set_fd(s, fd) != 1 || SSL_set_tlsext_host_name(s, "localhost") != 1 ||
        SSL_set1_host(s, "localhost") != 1)
        bench_ssl_die("client setup");
    if (SSL_connect(s) != 1)
        bench_ssl_die("SSL_connect");
    return s;
}

static void client_close(SSL *s) {
    int fd = SSL_get_fd(s);
    SSL_shutdown(s);
    SSL_free(s);
    close(fd);
}

static void bench_handshake(const bench_opts *o, const char *groups_name, const char *groups) {
    int n = (o->quick ? 15 : 50) + WARMUP_HS;
    SSL_CTX *ctx = bench_ssl_client_ctx(o, TLS_client_method(), 1, groups);
    struct sockaddr_in sa;
    int rfd;
    pid_t pid = start_server(o, MODE_HANDSHAKE, n, &sa, &rfd);
    double *us = calloc((size_t)n, sizeof(double));
    double ccpu = 0;
    char negotiated[64] = "?";
    for (int i = 0; i < n; i++) {
        double c0 = bench_proc_cpu(), t0 = bench_now();
        SSL *s = client_connect(ctx, &sa);
        double t1 = bench_now(), c1 = bench_proc_cpu();
        if (i == 0) {
            const char *g = SSL_get0_group_name(s);
            snprintf(negotiated, sizeof(negotiated), "%s", g ? g : "?");
            bench_log("  tls handshake: group %s, %s", negotiated, SSL_get_version(s));
        }
        if (i >= WARMUP_HS) {
            us[i - WARMUP_HS] = (t1 - t0) * 1e6;
            ccpu += c1 - c0;
        }
        client_close(s);
    }
    bench_srv_result r;
    if (bench_wait_server(pid, rfd, &r) != 0)
        bench_die("handshake server failed");
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

static void bench_latency(const bench_opts *o) {
    SSL_CTX *ctx = bench_ssl_client_ctx(o, TLS_client_method(), 1, NULL);
    int runs = o->quick ? 3 : 5;
    double dur = o->quick ? 0.5 : 2.0;
    size_t lat_cap = 4u * 1000u * 1000u, nlat = 0, total = 0;
    double *lat = calloc(lat_cap, sizeof(double));
    double rps[8], cc[8], sc[8];
    unsigned char req[REQ_SIZE], resp[REQ_SIZE];
    memset(req, 'r', sizeof(req));
    for (int i = 0; i < runs; i++) {
        struct sockaddr_in sa;
        int rfd;
        pid_t pid = start_server(o, MODE_ECHO, 0, &sa, &rfd);
        SSL *s = client_connect(ctx, &sa);
        double c0 = bench_proc_cpu(), t0 = bench_now(), now = t0;
        size_t done = 0, w;
        while (now - t0 < dur && nlat < lat_cap) {
            double ts = now;
            if (SSL_write_ex(s, req, sizeof(req), &w) != 1 || read_exact(s, resp, sizeof(resp)))
                bench_ssl_die("ping-pong");
            now = bench_now();
            lat[nlat++] = (now - ts) * 1e6;
            done++;
        }
        double ccpu = bench_proc_cpu() - c0;
        client_close(s);
        bench_srv_result r;
        if (bench_wait_server(pid, rfd, &r) != 0)
            bench_die("echo server failed");
        rps[i] = (double)done / (now - t0);
        cc[i] = ccpu / (double)done * 1e6;
        sc[i] = r.cpu_s / r.count * 1e6;
        total += done;
        bench_log("  tls ping-pong run %d: %.0f req/s (%zu requests)", i, rps[i], done);
    }
    bench_sort(cc, (size_t)runs);
    bench_sort(sc, (size_t)runs);
    bench_sort(lat, nlat);
    /* synesis-bench --latency-samples FILE asks for every latency (us, one per line). */
    const char *samples = getenv("BENCH_LATENCY_SAMPLES");
    FILE *sf = samples && *samples ? fopen(samples, "w") : NULL;
    if (sf) {
        for (size_t i = 0; i < nlat; i++)
            fprintf(sf, "%.1f\n", lat[i]);
        fclose(sf);
    }
    char params[64], extra[256];
    snprintf(params, sizeof(params), "\"size\":%d,\"inflight\":1", REQ_SIZE);
    snprintf(extra, sizeof(extra), ",\"p99\":%.2f,\"p999\":%.2f,\"samples_from_runs\":%d",
             bench_pct(lat, nlat, 99.0), bench_pct(lat, nlat, 99.9), runs);
    bench_emit("latency", IMPL, params, "us", lat, nlat, extra);
    snprintf(extra, sizeof(extra),
             ",\"client_cpu_us_per_req\":%.2f,\"server_cpu_us_per_req\":%.2f,\"requests\":%zu,"
             "\"seconds_per_run\":%.2f",
             cc[runs / 2], sc[runs / 2], total, dur);
    bench_emit("rate", IMPL, params, "req/s", rps, (size_t)runs, extra);
    free(lat);
    SSL_CTX_free(ctx);
}

static void bench_bulk(const bench_opts *o) {
    uint64_t bytes = o->bytes ? o->bytes : (o->quick ? 64ull << 20 : 1ull << 30);
    int runs = o->quick ? 3 : 5;
    SSL_CTX *ctx = bench_ssl_client_ctx(o, TLS_client_method(), 1, NULL);
    unsigned char *buf = malloc(BULK_CHUNK);
    double gbps[8], cc[8], sc[8];
    for (int i = 0; i < runs; i++) {
        struct sockaddr_in sa;
        int rfd;
        pid_t pid = start_server(o, MODE_BULK, 0, &sa, &rfd);
        SSL *s = client_connect(ctx, &sa);
        double c0 = bench_proc_cpu(), t0 = bench_now();
        size_t w, n;
        if (SSL_write_ex(s, &bytes, sizeof(bytes), &w) != 1)
            bench_ssl_die("bulk request");
        uint64_t got = 0;
        while (got < bytes) {
            if (SSL_read_ex(s, buf, BULK_CHUNK, &n) != 1)
                bench_ssl_die("bulk read");
            got += n;
        }
        double t1 = bench_now(), ccpu = bench_proc_cpu() - c0;
        client_close(s);
        bench_srv_result r;
        if (bench_wait_server(pid, rfd, &r) != 0)
            bench_die("bulk server failed");
        double gib = (double)bytes / (double)(1ull << 30);
        gbps[i] = (double)bytes * 8.0 / (t1 - t0) / 1e9;
        cc[i] = ccpu / gib;
        sc[i] = r.cpu_s / gib;
        bench_log("  tls bulk run %d: %.2f Gbit/s, client %.2f s/GiB, server %.2f s/GiB", i,
                  gbps[i], cc[i], sc[i]);
    }
    bench_sort(cc, (size_t)runs);
    bench_sort(sc, (size_t)runs);
    char params[96], extra[160];
    snprintf(params, sizeof(params), "\"bytes\":%llu,\"direction\":\"down\"",
             (unsigned long long)bytes);
    snprintf(extra, sizeof(extra), ",\"client_cpu_s_per_gib\":%.3f,\"server_cpu_s_per_gib\":%.3f",
             cc[runs / 2], sc[runs / 2]);
    bench_emit("bulk", IMPL, params, "Gbit/s", gbps, (size_t)runs, extra);
    free(buf);
    SSL_CTX_free(ctx);
}

int main(int argc, char **argv) {
    bench_opts o;
    bench_parse(&o, argc, argv,
                "TLS 1.3 over TCP baseline: handshake, latency/rate, bulk (JSON lines on stdout)\n",
                1);
    bench_pin(0);
    bench_stage("tls-tcp (whole program)",
                o.quick ? 60 : 300); /* every step is bounded; this bounds the whole */
    double t0 = bench_now();
    bench_log("baseline_tls_tcp: %s, server child on CPU 1, client on CPU 0",
              OpenSSL_version(OPENSSL_VERSION));
    if (bench_want(&o, "handshake")) {
        bench_handshake(&o, "x25519", "X25519");
        bench_handshake(&o, "default", NULL);
    }
    if (bench_want(&o, "latency"))
        bench_latency(&o); /* also the rate figure at 1 in flight */
    if (bench_want(&o, "bulk"))
        bench_bulk(&o);
    bench_log("baseline_tls_tcp: done in %.1f s", bench_now() - t0);
    return 0;
}

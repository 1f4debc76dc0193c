/* Shared pieces of the benchmarks (see bench_util.h). */
#include "bench_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "synesis/identity.h"

double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

const char *bench_path(const char *dir, const char *name) {
    static char bufs[8][512];
    static int i;
    char *b = bufs[i++ % 8];
    snprintf(b, sizeof(bufs[0]), "%s/%s", dir, name);
    return b;
}

const char *bench_pki(const char *device_id) {
    static char dir[512];
    const char *base = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/synesis-bench-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(1);
    }
    char detail[512];
    int rv = synesis_identity_create_test_pki(dir, device_id, detail, sizeof(detail));
    if (rv != 0) {
        fprintf(stderr, "test PKI: %s: %s\n", synesis_error_name(rv), detail);
        exit(1);
    }
    return dir;
}

/* ---- the edge's process ---- */

typedef struct child_ctx {
    syn_edge *edge;
    int ctl, resp;
} child_ctx;

static void write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            _exit(3);
        c += w;
        n -= (size_t)w;
    }
}

static void read_all(int fd, void *p, size_t n) {
    char *c = p;
    while (n) {
        ssize_t r = read(fd, c, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            fprintf(stderr, "the edge process is gone\n");
            exit(1);
        }
        c += r;
        n -= (size_t)r;
    }
}

static double cpu_self(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void ctl_cb(struct ev_loop *loop, ev_io *w, int revents) {
    (void)revents;
    child_ctx *cc = w->data;
    char cmd;
    ssize_t r = read(cc->ctl, &cmd, 1);
    if (r <= 0 || cmd == 'Q') {
        ev_io_stop(loop, w);
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    if (cmd == 'S') {
        syn_edge_stats st;
        syn_edge_get_stats(cc->edge, &st);
        double cpu = cpu_self();
        write_all(cc->resp, &st, sizeof(st));
        write_all(cc->resp, &cpu, sizeof(cpu));
    }
}

static void edge_child(const char *pki_dir, int ctl, int resp) {
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    syn_edge_config ec;
    syn_edge_config_init(&ec);
    ec.listen = "127.0.0.1:0";
    ec.cert_file = bench_path(pki_dir, "edge.pem");
    ec.key_file = bench_path(pki_dir, "edge.key");
    ec.ca_file = bench_path(pki_dir, "ca.pem");
    ec.idle_timeout = 30;
    if (getenv("BENCH_EDGE_LOG")) /* the edge's JSON events on stderr */
        ec.log_file = stderr;
#ifdef SYN_EDGE_RETRY_NEVER /* edges with a Retry policy */
    const char *rt = getenv("BENCH_RETRY_THRESHOLD");
    if (rt && *rt)
        ec.retry_threshold =
            strcmp(rt, "never") == 0 ? SYN_EDGE_RETRY_NEVER : strtoull(rt, NULL, 10);
#endif
    child_ctx cc = {NULL, ctl, resp};
    char detail[512];
    int rv = syn_edge_new(&cc.edge, loop, &ec, detail);
    if (rv == 0)
        rv = syn_edge_start(cc.edge, detail);
    if (rv != 0) {
        fprintf(stderr, "edge: %s: %s\n", synesis_error_name(rv), detail);
        _exit(2);
    }
    uint16_t port = syn_edge_port(cc.edge);
    write_all(resp, &port, sizeof(port));
    ev_io w;
    ev_io_init(&w, ctl_cb, ctl, EV_READ);
    w.data = &cc;
    ev_io_start(loop, &w);
    ev_run(loop, 0);
    syn_edge_free(cc.edge);
    ev_loop_destroy(loop);
    _exit(0);
}

void bench_edge_start(bench_edge *be, const char *pki_dir) {
    int to_child[2], from_child[2];
    if (pipe(to_child) != 0 || pipe(from_child) != 0) {
        perror("pipe");
        exit(1);
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(1);
    }
    if (pid == 0) {
        close(to_child[1]);
        close(from_child[0]);
        edge_child(pki_dir, to_child[0], from_child[1]);
    }
    close(to_child[0]);
    close(from_child[1]);
    be->pid = pid;
    be->ctl = to_child[1];
    be->resp = from_child[0];
    read_all(be->resp, &be->port, sizeof(be->port));
}

void bench_edge_query(bench_edge *be, syn_edge_stats *st, double *cpu_s) {
    char cmd = 'S';
    if (write(be->ctl, &cmd, 1) != 1) {
        fprintf(stderr, "the edge process is gone\n");
        exit(1);
    }
    double cpu;
    read_all(be->resp, st, sizeof(*st));
    read_all(be->resp, &cpu, sizeof(cpu));
    if (cpu_s)
        *cpu_s = cpu;
}

void bench_edge_stop(bench_edge *be) {
    char cmd = 'Q';
    (void)!write(be->ctl, &cmd, 1);
    close(be->ctl);
    close(be->resp);
    int status;
    waitpid(be->pid, &status, 0);
}

void bench_tunnel_config(synesis_tunnel_config *cfg, const char *dir, uint16_t port) {
    static char url[8][64];
    static int i;
    char *u = url[i++ % 8];
    snprintf(u, sizeof(url[0]), "quic://127.0.0.1:%u", port);
    synesis_tunnel_config_init(cfg);
    cfg->cloud_url = u;
    cfg->server_name = "localhost";
    cfg->cert_path = bench_path(dir, "device.pem");
    cfg->key_path = bench_path(dir, "device.key");
    cfg->ca_path = bench_path(dir, "ca.pem");
    cfg->use_system_trust = 0;
    cfg->heartbeat_interval = 0;
}

/* ---- bare clients ---- */

static void raw_closed(syn_qconn *qc, int err, const char *detail) {
    bench_raw *c = syn_qconn_owner(qc);
    c->closed = 1;
    c->err = err;
    snprintf(c->detail, sizeof(c->detail), "%s", detail);
}

static void raw_handshake(syn_qconn *qc) {
    bench_raw *c = syn_qconn_owner(qc);
    c->connected = 1;
}

static const syn_qconn_ops raw_ops = {
    .handshake_done = raw_handshake,
    .closed = raw_closed,
};

static void raw_rio(struct ev_loop *loop, ev_io *w, int revents) {
    (void)loop;
    (void)revents;
    bench_raw *c = w->data;
    do { /* the rest of a coalesced read too: nothing may wake us up for it */
        int n = syn_udp_recv(c->fd, c->rx);
        if (n > 0)
            c->rx_count += (uint64_t)n;
        for (int i = 0; i < n && !c->closed; i++)
            syn_qconn_recv(c->qc, &c->local, &c->rx->d[i].remote, c->rx->d[i].ecn, c->rx->d[i].data,
                           c->rx->d[i].len);
    } while (syn_udp_rx_pending(c->rx) && !c->closed);
    if (!c->closed)
        syn_qconn_flush(c->qc);
}

bench_raw *bench_raw_new(struct ev_loop *loop, uint16_t port, const char *pki_dir) {
    bench_raw *c = calloc(1, sizeof(*c));
    if (!c || !(c->rx = syn_udp_rx_new(SYN_UDP_RX_BYTES_CLIENT)))
        exit(1);
    c->loop = loop;
    c->ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(c->ctx, TLS1_3_VERSION);
    if (SSL_CTX_load_verify_locations(c->ctx, bench_path(pki_dir, "ca.pem"), NULL) != 1 ||
        SSL_CTX_use_certificate_chain_file(c->ctx, bench_path(pki_dir, "device.pem")) != 1 ||
        SSL_CTX_use_PrivateKey_file(c->ctx, bench_path(pki_dir, "device.key"), SSL_FILETYPE_PEM) !=
            1) {
        fprintf(stderr, "client TLS context failed\n");
        exit(1);
    }
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = htons(port)};
    syn_sockaddr remote = {.len = sizeof(a)};
    memcpy(&remote.ss, &a, sizeof(a));
    c->fd = syn_udp_open((struct sockaddr *)&a, sizeof(a), NULL, 0, 1, &c->local, c->detail);
    if (c->fd < 0) {
        fprintf(stderr, "socket: %s\n", c->detail);
        exit(1);
    }
    syn_qconn_settings st;
    syn_qconn_settings_default(&st);
    st.keep_alive_ns = 1000000000ull;
    if (syn_qconn_client_new(&c->qc, loop, c->fd, &c->local, &remote, c->ctx, "localhost",
                             "synesis-tunnel/1", &st, &raw_ops, c, c->detail) != 0) {
        fprintf(stderr, "client: %s\n", c->detail);
        exit(1);
    }
    ev_io_init(&c->rio, raw_rio, c->fd, EV_READ);
    c->rio.data = c;
    ev_io_start(loop, &c->rio);
    syn_qconn_flush(c->qc);
    return c;
}

int bench_raw_migrate(bench_raw *c) {
    const syn_sockaddr *remote = syn_qconn_remote(c->qc);
    syn_sockaddr local;
    int fd = syn_udp_open((const struct sockaddr *)&remote->ss, remote->len, NULL, 0, 1, &local,
                          c->detail);
    if (fd < 0)
        return fd;
    int rv = syn_qconn_migrate(c->qc, fd, &local);
    if (rv != 0) {
        close(fd);
        return rv;
    }
    ev_io_stop(c->loop, &c->rio);
    close(c->fd);
    c->fd = fd;
    c->local = local;
    ev_io_set(&c->rio, fd, EV_READ);
    ev_io_start(c->loop, &c->rio);
    return 0;
}

void bench_raw_free(bench_raw *c) {
    ev_io_stop(c->loop, &c->rio);
    syn_udp_rx_free(c->rx);
    syn_qconn_free(c->qc);
    close(c->fd);
    SSL_CTX_free(c->ctx);
    free(c);
}

long bench_status_kb(pid_t pid, const char *key) {
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long v = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, key, kl) == 0 && line[kl] == ':')
            v = strtol(line + kl + 1, NULL, 10);
    fclose(f);
    return v;
}

double bench_cpu_of(pid_t pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
        return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
    return 0;
}

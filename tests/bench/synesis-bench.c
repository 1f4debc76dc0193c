/*
 * synesis-bench: the tunnel's performance figures, side by side with the baselines the build
 * makes for itself (OpenSSL's own QUIC stack, TLS 1.3 over TCP, the machine's limits), in one
 * run. Release builds only mean anything.
 *
 *   synesis-bench [--quick] [--pki DIR] [--only NAME[,NAME...]] [--idle-seconds S]
 *                 [--idle-profile default|low-bandwidth] [--idle-set KEY=VALUE[,...]]
 *                 [--out FILE] [--latency-samples FILE] [--no-baselines]
 *                 [--transport auto|udp|tcp]
 *
 * The edge runs in a child process pinned to CPU 1, the tunnels in this process on CPU 0. Every
 * figure is printed as one JSON line on stdout as soon as it is measured (the schema of
 * tests/bench/README.md), then the baselines' lines, then a table with ratios. Progress goes to
 * stderr. Figures: handshake, reconnect, latency, rate, bulk, footprint, idle, impaired,
 * edge_many_idle, edge_idle_cost.
 * The idle figure uses the default config, or the low-bandwidth profile with --idle-profile; then
 * --idle-set changes config members of it (keep_alive, heartbeat, idle_timeout,
 * changed_vitals: the cost of each setting in docs/operations.md).
 * --latency-samples FILE writes every latency of the latency figure's runs (us, one per line);
 * baseline_tls_tcp writes its own to FILE.tls-tcp.
 * --transport: the tunnels' config.transport (default: the library's, auto, which is UDP on
 * loopback); tcp runs every figure over QUIC over TCP (the edge listens on TCP on the same port),
 * and the figures' params say "transport":"tcp".
 *
 * "Connected" is the moment the handshake is *confirmed* (HANDSHAKE_DONE received from the
 * edge): that is when synesis_tunnel reports Connected and what the handshake figure measures
 * (stats.handshake_time: from the first Initial). Its completed_us is the device's own completion
 * (stats.handshake_completed_time), the moment the baselines' figure ends; client_cpu_us covers
 * all of synesis_tunnel_connect() to Connected (socket, name resolution of an IP literal).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ev.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <netinet/in.h>

#include "bench_util.h"
#include "tunnel_test.h"
#include "edge/edge.h"
#include "fault_proxy.h"
#include "synesis/synesis.h"
#include "resume.h"
#include "tunnel_int.h"

#ifndef SYN_BENCH_DIR
#define SYN_BENCH_DIR "."
#endif

static struct {
    int quick;
    const char *pki;
    const char *only;
    double idle_seconds;
    int idle_low_bandwidth; /* --idle-profile low-bandwidth */
    const char *idle_set;   /* --idle-set */
    FILE *out;
    const char *samples; /* --latency-samples FILE */
    FILE *samples_f;
    int baselines;
    synesis_transport transport; /* --transport */
} opt = {.idle_seconds = -1, .baselines = 1};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_self(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t heap_in_use(void) {
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

static void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set) != 0)
        fprintf(stderr, "synesis-bench: cannot pin to CPU %d: %s\n", cpu, strerror(errno));
}

static void progress(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("synesis-bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static int wanted(const char *name) {
    if (!opt.only)
        return 1;
    size_t n = strlen(name);
    for (const char *p = opt.only; (p = strstr(p, name)); p += n)
        if ((p == opt.only || p[-1] == ',') && (p[n] == 0 || p[n] == ','))
            return 1;
    return 0;
}

static void add_line(const char *line);

/* ---- statistics ---- */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p) {
    if (!n)
        return 0;
    qsort(v, n, sizeof(*v), cmp_double);
    size_t i = (size_t)ceil(p / 100.0 * (double)n);
    return v[i ? i - 1 : 0];
}

/* Prints (and records) one figure: median, min and max of runs, plus extra fields. */
static void emit(const char *bench, cJSON *params, const char *unit, double *runs, size_t n,
                 cJSON *extra) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "bench", bench);
    cJSON_AddStringToObject(o, "impl", "synesis");
    if (!params)
        params = cJSON_CreateObject();
    if (opt.transport != SYNESIS_TRANSPORT_AUTO)
        cJSON_AddStringToObject(params, "transport", synesis_transport_name(opt.transport));
    cJSON_AddItemToObject(o, "params", params);
    cJSON_AddStringToObject(o, "unit", unit);
    double med = pct(runs, n, 50);
    cJSON_AddNumberToObject(o, "median", med);
    cJSON_AddNumberToObject(o, "min", n ? runs[0] : 0);
    cJSON_AddNumberToObject(o, "max", n ? runs[n - 1] : 0);
    cJSON_AddNumberToObject(o, "runs", (double)n);
    if (extra) {
        for (cJSON *c = extra->child; c;) {
            cJSON *next = c->next;
            cJSON_AddItemToObject(o, c->string, cJSON_DetachItemViaPointer(extra, c));
            c = next;
        }
        cJSON_Delete(extra);
    }
    char *line = cJSON_PrintUnformatted(o);
    printf("%s\n", line);
    fflush(stdout);
    if (opt.out)
        fprintf(opt.out, "%s\n", line);
    add_line(line);
    cJSON_free(line);
    cJSON_Delete(o);
}

static cJSON *params_of(const char *k1, double v1, const char *k2, const char *s2) {
    cJSON *p = cJSON_CreateObject();
    if (k1)
        cJSON_AddNumberToObject(p, k1, v1);
    if (k2)
        cJSON_AddStringToObject(p, k2, s2);
    return p;
}

/* ---- the edge, in a child process on CPU 1 ---- */

typedef struct edge_proc {
    pid_t pid;
    uint16_t port;
    int fd; /* reads the child's final line */
} edge_proc;

typedef struct edge_opts {
    int cc; /* SYNESIS_CC_* of the edge (the sender of downloads) */
    int proxy;
    double loss;         /* each way */
    double delay_ms;     /* each way */
    int no_ping;         /* the edge does not PING on the devices' behalf (ping_devices = 0) */
    int no_tickets;      /* the edge sends no session tickets (session_tickets = 0) */
    int early_data;      /* the edge accepts 0-RTT (early_data = 1) */
    double idle_timeout; /* the edge's; 0: its default (60 s) */
} edge_opts;

static syn_fault_proxy *child_proxy;
static int child_fd;

static void child_stop(struct ev_loop *loop, ev_signal *w, int revents) {
    (void)w;
    (void)revents;
    syn_fault_stats st = {0};
    if (child_proxy)
        syn_fault_proxy_stats(child_proxy, &st);
    /* The proxy's byte counts (0 without one), then the edge process's CPU time in us. */
    dprintf(child_fd, "%llu %llu %llu %llu %.0f\n", (unsigned long long)st.bytes_up,
            (unsigned long long)st.bytes_down, (unsigned long long)st.fwd_up,
            (unsigned long long)st.fwd_down, cpu_self() * 1e6);
    ev_break(loop, EVBREAK_ALL);
}

/* SIGUSR1: the proxy's counts so far, the same line as at the stop; the edge goes on. */
static void child_counts(struct ev_loop *loop, ev_signal *w, int revents) {
    (void)loop;
    (void)w;
    (void)revents;
    syn_fault_stats st = {0};
    if (child_proxy)
        syn_fault_proxy_stats(child_proxy, &st);
    dprintf(child_fd, "%llu %llu %llu %llu %.0f %zu\n", (unsigned long long)st.bytes_up,
            (unsigned long long)st.bytes_down, (unsigned long long)st.fwd_up,
            (unsigned long long)st.fwd_down, cpu_self() * 1e6, heap_in_use());
}

static void edge_child(const edge_opts *eo, int fd) {
    pin(1);
    struct ev_loop *loop = ev_default_loop(0);
    char cert[512], key[512], ca[512], detail[512];
    snprintf(cert, sizeof(cert), "%s/edge.pem", opt.pki);
    snprintf(key, sizeof(key), "%s/edge.key", opt.pki);
    snprintf(ca, sizeof(ca), "%s/ca.pem", opt.pki);
    syn_edge_config ec;
    syn_edge_config_init(&ec);
    ec.listen = "127.0.0.1:0";
    ec.cert_file = cert;
    ec.key_file = key;
    ec.ca_file = ca;
    ec.max_streams_bidi = 4096;
    ec.max_request_size = (size_t)1 << 40;
    ec.max_src_size = (uint64_t)1 << 40;
    ec.max_conn_buffer = 64u * 1024 * 1024;
    ec.congestion_control = eo->cc;
    ec.ping_devices = !eo->no_ping;
    ec.session_tickets = eo->no_tickets ? 0 : 1;
    ec.early_data = eo->early_data;
    if (eo->idle_timeout > 0)
        ec.idle_timeout = eo->idle_timeout;
    syn_edge *e;
    if (syn_edge_new(&e, loop, &ec, detail) != 0 || syn_edge_start(e, detail) != 0) {
        fprintf(stderr, "synesis-bench: edge: %s\n", detail);
        _exit(1);
    }
    uint16_t port = syn_edge_port(e);
    if (eo->proxy) {
        struct sockaddr_in up = {.sin_family = AF_INET, .sin_port = htons(port)};
        struct sockaddr_in lis = {.sin_family = AF_INET};
        up.sin_addr.s_addr = lis.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        child_proxy = syn_fault_proxy_new(loop, (struct sockaddr *)&lis, sizeof(lis),
                                          (struct sockaddr *)&up, sizeof(up), 42);
        if (!child_proxy)
            _exit(1);
        syn_fault_dir d = {.drop = eo->loss, .delay_ms = eo->delay_ms};
        syn_fault_proxy_set(child_proxy, &d, &d);
        port = syn_fault_proxy_port(child_proxy);
    }
    child_fd = fd;
    ev_signal sig, usr;
    ev_signal_init(&sig, child_stop, SIGTERM);
    ev_signal_start(loop, &sig);
    ev_signal_init(&usr, child_counts, SIGUSR1);
    ev_signal_start(loop, &usr);
    dprintf(fd, "%u\n", port);
    ev_run(loop, 0);
    _exit(0);
}

static edge_proc edge_spawn(const edge_opts *eo) {
    int p[2];
    edge_proc ep = {0};
    if (pipe(p) != 0)
        exit(1);
    fflush(NULL);
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, &old); /* the child's loop takes SIGTERM once it runs */
    ep.pid = fork();
    if (ep.pid == 0) {
        close(p[0]);
        sigprocmask(SIG_SETMASK, &old, NULL);
        edge_child(eo, p[1]);
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    close(p[1]);
    ep.fd = p[0];
    char line[64];
    ssize_t n = read(ep.fd, line, sizeof(line) - 1);
    if (n <= 0) {
        fprintf(stderr, "synesis-bench: the edge did not start\n");
        exit(1);
    }
    line[n] = 0;
    ep.port = (uint16_t)atoi(line);
    return ep;
}

/* Stops the edge; fills the proxy's byte counts when it ran one, and the edge's CPU time (us). */
static unsigned long long last_fwd_up, last_fwd_down; /* the proxy's datagram counts, last stop */

static void edge_stop_cpu(edge_proc *ep, unsigned long long *up, unsigned long long *down,
                          double *cpu_us) {
    kill(ep->pid, SIGTERM);
    char line[160] = "";
    ssize_t n = read(ep->fd, line, sizeof(line) - 1);
    if (n > 0) {
        line[n] = 0;
        unsigned long long u = 0, d = 0, fu, fd;
        double c = 0;
        fu = fd = 0;
        sscanf(line, "%llu %llu %llu %llu %lf", &u, &d, &fu, &fd, &c);
        last_fwd_up = fu;
        last_fwd_down = fd;
        if (up && down) {
            *up = u;
            *down = d;
        }
        if (cpu_us)
            *cpu_us = c;
    }
    close(ep->fd);
    waitpid(ep->pid, NULL, 0);
}

/* The proxy's counts so far: bytes (UDP payloads) and datagrams, each way. */
typedef struct proxy_counts {
    unsigned long long up, down, dgrams_up, dgrams_down;
    double cpu_us;
    unsigned long long heap; /* the edge process's heap in use (mallinfo2) */
} proxy_counts;

static proxy_counts edge_counts(edge_proc *ep) {
    proxy_counts pc = {0};
    kill(ep->pid, SIGUSR1);
    char line[160] = "";
    ssize_t n = read(ep->fd, line, sizeof(line) - 1);
    if (n > 0) {
        line[n] = 0;
        sscanf(line, "%llu %llu %llu %llu %lf %llu", &pc.up, &pc.down, &pc.dgrams_up,
               &pc.dgrams_down, &pc.cpu_us, &pc.heap);
    }
    return pc;
}

static void edge_stop(edge_proc *ep, unsigned long long *up, unsigned long long *down) {
    edge_stop_cpu(ep, up, down, NULL);
}

/* ---- tunnels ---- */

static char cfg_cert[512], cfg_key[512], cfg_ca[512], cfg_url[64];

static void tunnel_config(synesis_tunnel_config *c, uint16_t port) {
    snprintf(cfg_cert, sizeof(cfg_cert), "%s/device.pem", opt.pki);
    snprintf(cfg_key, sizeof(cfg_key), "%s/device.key", opt.pki);
    snprintf(cfg_ca, sizeof(cfg_ca), "%s/ca.pem", opt.pki);
    snprintf(cfg_url, sizeof(cfg_url), "quic://127.0.0.1:%u", port);
    synesis_tunnel_config_init(c);
    c->cloud_url = cfg_url;
    c->server_name = "localhost";
    c->cert_path = cfg_cert;
    c->key_path = cfg_key;
    c->ca_path = cfg_ca;
    c->use_system_trust = 0;
    c->heartbeat_interval = 0;
    c->request_timeout = 120;
    c->max_queued_requests = 100000;
    c->transport = opt.transport;
}

static synesis_tunnel *tunnel_new(struct ev_loop *loop, const synesis_tunnel_config *c) {
    synesis_tunnel *t;
    char detail[512];
    if (synesis_tunnel_new(&t, loop, c, NULL, NULL, detail, sizeof(detail)) != 0) {
        fprintf(stderr, "synesis-bench: tunnel: %s\n", detail);
        exit(1);
    }
    return t;
}

static void wake_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)w;
    (void)revents;
}

/* Runs the loop until *flag becomes non-zero or timeout seconds pass; returns *flag. */
static int run_until_flag(struct ev_loop *loop, const int *flag, double timeout) {
    ev_timer wake;
    ev_timer_init(&wake, wake_cb, 0.01, 0.01);
    ev_timer_start(loop, &wake);
    double end = now_s() + timeout;
    while (!*flag && now_s() < end)
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &wake);
    return *flag;
}

static void run_for(struct ev_loop *loop, double secs) {
    int never = 0;
    run_until_flag(loop, &never, secs);
}

static int connect_one(struct ev_loop *loop, synesis_tunnel *t, double timeout) {
    if (synesis_tunnel_connect(t) != 0)
        return -1;
    double end = now_s() + timeout;
    while (!synesis_tunnel_is_connected(t) && now_s() < end) {
        synesis_tunnel_state st;
        synesis_tunnel_get_state(t, &st);
        if (st.kind == SYNESIS_STATE_FAILED) {
            fprintf(stderr, "synesis-bench: connect failed: %s\n", st.error_detail);
            return -1;
        }
        run_for(loop, 0.0005);
    }
    return synesis_tunnel_is_connected(t) ? 0 : -1;
}

/* ---- 1. handshake ---- */

static void handshake_figure(const char *groups);

static void bench_handshake(void) {
    handshake_figure(NULL);
    handshake_figure("X25519");
}

static void handshake_figure(const char *groups) {
    edge_opts eo = {0};
    edge_proc ep = edge_spawn(&eo);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    synesis_tunnel_config c;
    tunnel_config(&c, ep.port);
    c.tls_groups = groups;
    c.resumption = 0; /* full handshakes: resumption is the reconnect figure's */
    synesis_tunnel *t = tunnel_new(loop, &c);
    size_t n = opt.quick ? 30 : 200;
    double *hs = calloc(n, sizeof(double)), *cpu = calloc(n, sizeof(double));
    double *done = calloc(n, sizeof(double));
    size_t got = 0;
    connect_one(loop, t, 5); /* warm-up */
    synesis_tunnel_disconnect(t);
    run_for(loop, 0.01);
    for (size_t i = 0; i < n; i++) {
        double c0 = cpu_self();
        if (connect_one(loop, t, 5) != 0)
            break;
        double c1 = cpu_self();
        synesis_tunnel_stats st;
        synesis_tunnel_get_stats(t, &st);
        hs[got] = st.handshake_time * 1e6;
        done[got] = st.handshake_completed_time * 1e6;
        cpu[got] = (c1 - c0) * 1e6;
        got++;
        synesis_tunnel_disconnect(t);
        run_for(loop, 0.002);
    }
    cJSON *x = cJSON_CreateObject();
    cJSON_AddNumberToObject(x, "client_cpu_us", pct(cpu, got, 50));
    /* where OpenSSL's SSL_connect() returns (the baselines' handshake figure) */
    cJSON_AddNumberToObject(x, "completed_us", pct(done, got, 50));
    emit("handshake", params_of(NULL, 0, "groups", groups ? "x25519" : "default"), "us", hs, got,
         x);
    synesis_tunnel_free(t);
    run_for(loop, 0.01);
    ev_loop_destroy(loop);
    edge_stop(&ep, NULL, NULL);
    free(hs);
    free(cpu);
    free(done);
}

/* ---- 1b. reconnect: full handshake vs resumed ---- */

typedef struct first_resp {
    int done, status;
    double at;
} first_resp;

static void on_first_resp(synesis_tunnel *t, synesis_request *r, const synesis_response *resp,
                          void *ud) {
    (void)t;
    (void)r;
    first_resp *f = ud;
    f->status = resp->status;
    f->at = now_s();
    f->done = 1;
}

static void on_connected(synesis_tunnel *t, const synesis_tunnel_state *old,
                         const synesis_tunnel_state *now, void *ud) {
    (void)t;
    (void)old;
    double *at = ud;
    if (now->kind == SYNESIS_STATE_CONNECTED && !*at)
        *at = now_s();
}

/*
 * One figure: n reconnects of one tunnel, each from the decision (synesis_tunnel_connect() after
 * a disconnect, with a 16-byte echo request queued at once) to Connected and to the response.
 * resumed: the tunnel keeps its tickets and waits for one before each disconnect; otherwise it
 * keeps none (full handshakes). early: the edge accepts 0-RTT and the request is marked
 * idempotent, so it goes with the first flight. Through the proxy (delay_ms each way) the times are
 * also given in round trips of the path (2 x delay_ms), and the proxy's byte counts per reconnect
 * (both ways, UDP payload: the handshake, the request and response, the close of the previous
 * connection).
 */
static void reconnect_figure(int resumed, int no_tickets, int early, double delay_ms) {
    edge_opts eo = {
        .proxy = delay_ms > 0, .delay_ms = delay_ms, .no_tickets = no_tickets, .early_data = early};
    edge_proc ep = edge_spawn(&eo);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    synesis_tunnel_config c;
    tunnel_config(&c, ep.port);
    c.close_linger = 0; /* the previous connection's close is not part of the next figure */
    c.resumption = resumed;
    synesis_tunnel *t = tunnel_new(loop, &c);
    size_t n = opt.quick ? 20 : (delay_ms > 0 ? 60 : 200);
    double *conn = calloc(n, sizeof(double)), *resp = calloc(n, sizeof(double));
    size_t got = 0, resumed_n = 0, early_n = 0;
    synesis_request_options ro;
    synesis_request_options_init(&ro);
    ro.queue_while_reconnecting = 1;
    ro.flags = early ? SYNESIS_REQUEST_IDEMPOTENT : 0; /* may go in 0-RTT */
    double tc = 0;
    uint32_t sub;
    synesis_tunnel_subscribe(t, on_connected, &tc, &sub);
    connect_one(loop, t, 10); /* warm-up, and the first ticket */
    double wire_rtt_s = 2 * delay_ms / 1000.0;
    for (size_t i = 0; i < n; i++) {
        if (resumed) { /* the ticket arrives just after HANDSHAKE_DONE */
            double end = now_s() + 2;
            while ((!syn_tunnel_resume(t) || !syn_resume_count(syn_tunnel_resume(t), NULL)) &&
                   now_s() < end)
                run_for(loop, 0.0005);
        } else {
            run_for(loop, 0.002 + wire_rtt_s);
        }
        synesis_tunnel_disconnect(t);
        run_for(loop, 0.002 + wire_rtt_s);
        uint64_t before = syn_tunnel_resume(t) ? syn_tunnel_resume(t)->resumed : 0;
        first_resp fr = {0};
        tc = 0;
        double t0 = now_s();
        synesis_request *req;
        if (synesis_tunnel_connect(t) != 0 ||
            synesis_tunnel_request(t, "reconnect-bench!", 16, &ro, on_first_resp, &fr, &req) != 0)
            break;
        double end = t0 + 10;
        while (!fr.done && now_s() < end)
            ev_run(loop, EVRUN_ONCE | EVRUN_NOWAIT);
        if (!fr.done || fr.status != 0 || !tc)
            break;
        if (syn_tunnel_resume(t) && syn_tunnel_resume(t)->resumed > before)
            resumed_n++;
        if (t->qc && syn_qconn_early_result(t->qc) == 1)
            early_n++;
        conn[got] = (tc - t0) * 1e6;
        resp[got] = (fr.at - t0) * 1e6;
        got++;
    }
    synesis_tunnel_free(t);
    run_for(loop, 0.05);
    ev_loop_destroy(loop);
    unsigned long long up = 0, down = 0;
    double edge_cpu = 0;
    edge_stop_cpu(&ep, &up, &down, &edge_cpu);
    const char *mode = early        ? "0-RTT"
                       : resumed    ? "resumed"
                       : no_tickets ? "full, edge without tickets"
                                    : "full";
    const char *path = delay_ms > 0 ? "proxy, 50 ms RTT" : "loopback";
    for (int k = 0; k < 2; k++) {
        double *v = k ? resp : conn;
        cJSON *p = params_of(NULL, 0, "mode", mode);
        cJSON_AddStringToObject(p, "path", path);
        cJSON_AddStringToObject(p, "until", k ? "first response" : "connected");
        cJSON *x = cJSON_CreateObject();
        cJSON_AddNumberToObject(x, "resumed", (double)resumed_n);
        cJSON_AddNumberToObject(x, "early_accepted", (double)early_n);
        /* the edge's CPU for everything (warm-up included), per reconnect */
        cJSON_AddNumberToObject(x, "edge_cpu_us_per_reconnect",
                                got ? edge_cpu / (double)(got + 1) : 0);
        if (delay_ms > 0) {
            double med = pct(v, got, 50);
            cJSON_AddNumberToObject(x, "round_trips", med / 1e6 / wire_rtt_s);
            /* every reconnect plus the warm-up connection */
            cJSON_AddNumberToObject(x, "bytes_up_per_reconnect",
                                    got ? (double)up / (double)(got + 1) : 0);
            cJSON_AddNumberToObject(x, "bytes_down_per_reconnect",
                                    got ? (double)down / (double)(got + 1) : 0);
            cJSON_AddNumberToObject(x, "datagrams_up_per_reconnect",
                                    got ? (double)last_fwd_up / (double)(got + 1) : 0);
            cJSON_AddNumberToObject(x, "datagrams_down_per_reconnect",
                                    got ? (double)last_fwd_down / (double)(got + 1) : 0);
        }
        emit("reconnect", p, "us", v, got, x);
    }
    free(conn);
    free(resp);
}

static void bench_reconnect(void) {
    for (int proxy = 0; proxy < 2; proxy++) {
        double d = proxy ? 25 : 0;
        reconnect_figure(0, 1, 0, d);
        reconnect_figure(0, 0, 0, d);
        reconnect_figure(1, 0, 0, d);
        reconnect_figure(1, 0, 1, d);
    }
}

/* ---- 2, 3. latency and rate ---- */

typedef struct pipe_state {
    synesis_tunnel *t;
    uint8_t req[1024];
    size_t inflight, target;
    double stop_at;
    double *lat;
    size_t nlat, cap;
    uint64_t done, failed;
    int finished;
} pipe_state;

static void submit(pipe_state *ps);

static void on_rate_resp(synesis_tunnel *t, synesis_request *r, const synesis_response *resp,
                         void *ud) {
    (void)t;
    (void)r;
    double *start = ud;
    pipe_state *ps = *(pipe_state **)(start + 1);
    double now = now_s();
    if (resp->status != 0 || resp->len != sizeof(ps->req))
        ps->failed++;
    ps->done++;
    if (ps->nlat < ps->cap)
        ps->lat[ps->nlat++] = (now - *start) * 1e6;
    free(start);
    ps->inflight--;
    if (now < ps->stop_at)
        submit(ps);
    else if (!ps->inflight)
        ps->finished = 1;
}

static void submit(pipe_state *ps) {
    double *start = malloc(sizeof(double) + sizeof(pipe_state *));
    *start = now_s();
    *(pipe_state **)(start + 1) = ps;
    ps->inflight++;
    if (synesis_tunnel_request(ps->t, ps->req, sizeof(ps->req), NULL, on_rate_resp, start, NULL) !=
        0) {
        fprintf(stderr, "synesis-bench: request refused\n");
        exit(1);
    }
}

/* Keeps `inflight` 1 KiB echo requests outstanding for secs; fills req/s and CPU per request. */
static void pipeline(struct ev_loop *loop, synesis_tunnel *t, pid_t edge, size_t inflight,
                     double secs, pipe_state *ps, double *rate, double *ccpu, double *ecpu) {
    memset(ps->req, 'x', sizeof(ps->req));
    ps->t = t;
    ps->inflight = ps->done = ps->failed = 0;
    ps->nlat = 0;
    ps->finished = 0;
    double c0 = cpu_self(), e0 = bench_cpu_of(edge), t0 = now_s();
    ps->stop_at = t0 + secs;
    for (size_t i = 0; i < inflight; i++)
        submit(ps);
    run_until_flag(loop, &ps->finished, secs + 30);
    double el = now_s() - t0;
    *rate = (double)ps->done / el;
    *ccpu = (cpu_self() - c0) / (double)ps->done * 1e6;
    *ecpu = (bench_cpu_of(edge) - e0) / (double)ps->done * 1e6;
}

static void bench_requests(void) {
    edge_opts eo = {0};
    edge_proc ep = edge_spawn(&eo);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    synesis_tunnel_config c;
    tunnel_config(&c, ep.port);
    synesis_tunnel *t = tunnel_new(loop, &c);
    if (connect_one(loop, t, 5) != 0)
        exit(1);
    pipe_state ps = {0};
    ps.cap = 4u << 20;
    ps.lat = malloc(ps.cap * sizeof(double));
    double rate, ccpu, ecpu;
    int runs = opt.quick ? 3 : 5;
    double secs = opt.quick ? 0.5 : 2.0;
    pipeline(loop, t, ep.pid, 16, 0.3, &ps, &rate, &ccpu, &ecpu); /* warm-up */
    if (wanted("latency")) {
        double p50[8], p99[8], p999[8];
        for (int r = 0; r < runs; r++) {
            pipeline(loop, t, ep.pid, 1, secs, &ps, &rate, &ccpu, &ecpu);
            if (opt.samples_f)
                for (size_t k = 0; k < ps.nlat; k++)
                    fprintf(opt.samples_f, "%.1f\n", ps.lat[k]);
            p50[r] = pct(ps.lat, ps.nlat, 50);
            p99[r] = pct(ps.lat, ps.nlat, 99);
            p999[r] = pct(ps.lat, ps.nlat, 99.9);
        }
        cJSON *x = cJSON_CreateObject();
        cJSON_AddNumberToObject(x, "p99", pct(p99, (size_t)runs, 50));
        cJSON_AddNumberToObject(x, "p999", pct(p999, (size_t)runs, 50));
        cJSON *p = params_of("size", 1024, NULL, NULL);
        cJSON_AddNumberToObject(p, "inflight", 1);
        emit("latency", p, "us", p50, (size_t)runs, x);
    }
    if (wanted("rate")) {
        const size_t depths[] = {1, 16, 256, 1024};
        for (size_t d = 0; d < 4; d++) {
            double rates[8], cc[8], ec[8], p50[8], p99[8];
            for (int r = 0; r < runs; r++) {
                pipeline(loop, t, ep.pid, depths[d], secs, &ps, &rates[r], &cc[r], &ec[r]);
                p50[r] = pct(ps.lat, ps.nlat, 50);
                p99[r] = pct(ps.lat, ps.nlat, 99);
                if (ps.failed)
                    fprintf(stderr, "synesis-bench: %llu requests failed\n",
                            (unsigned long long)ps.failed);
            }
            cJSON *x = cJSON_CreateObject();
            cJSON_AddNumberToObject(x, "client_cpu_us_per_req", pct(cc, (size_t)runs, 50));
            cJSON_AddNumberToObject(x, "edge_cpu_us_per_req", pct(ec, (size_t)runs, 50));
            cJSON_AddNumberToObject(x, "p50_us", pct(p50, (size_t)runs, 50));
            cJSON_AddNumberToObject(x, "p99_us", pct(p99, (size_t)runs, 50));
            cJSON *p = params_of("size", 1024, NULL, NULL);
            cJSON_AddNumberToObject(p, "inflight", (double)depths[d]);
            emit("rate", p, "req/s", rates, (size_t)runs, x);
        }
    }
    free(ps.lat);
    synesis_tunnel_free(t);
    run_for(loop, 0.01);
    ev_loop_destroy(loop);
    edge_stop(&ep, NULL, NULL);
}

/* ---- 4, 7. bulk ---- */

typedef struct bulk_state {
    uint64_t received, sent, to_send;
    int open, closed, errors;
    synesis_stream *up;
} bulk_state;

static uint8_t bulk_buf[256 * 1024];

static void bulk_data(synesis_stream *s, const uint8_t *d, size_t n, void *ud) {
    (void)s;
    (void)d;
    ((bulk_state *)ud)->received += n;
}

static void bulk_close(synesis_stream *s, int status, uint64_t code, const char *detail, void *ud) {
    (void)detail;
    (void)s;
    (void)code;
    bulk_state *b = ud;
    b->closed++;
    if (status != 0) {
        b->errors++;
        fprintf(stderr, "synesis-bench: bulk stream: %s\n", synesis_error_name(status));
    }
}

static void bulk_pump(bulk_state *b) {
    while (b->up && b->sent < b->to_send) {
        size_t n = sizeof(bulk_buf);
        if (n > b->to_send - b->sent)
            n = (size_t)(b->to_send - b->sent);
        size_t acc = 0;
        if (synesis_stream_write(b->up, bulk_buf, n, &acc) != 0 || !acc)
            return;
        b->sent += acc;
    }
    if (b->up && b->sent == b->to_send) {
        synesis_stream_finish(b->up);
        b->up = NULL;
    }
}

static void bulk_writable(synesis_stream *s, void *ud) {
    (void)s;
    bulk_pump(ud);
}

static int all_closed(void *ud) {
    bulk_state *b = ud;
    return b->closed == b->open;
}

/* One transfer of bytes over k streams, down (SRC) or up; returns seconds, fills CPU. */
static double bulk_once(struct ev_loop *loop, synesis_tunnel *t, pid_t edge, uint64_t bytes, int k,
                        int up, double *ccpu, double *ecpu) {
    bulk_state b = {0};
    synesis_stream_callbacks cb = {.struct_size = sizeof(synesis_stream_callbacks),
                                   .on_data = bulk_data,
                                   .on_close = bulk_close,
                                   .on_writable = bulk_writable};
    double c0 = cpu_self(), e0 = bench_cpu_of(edge), t0 = now_s();
    for (int i = 0; i < k; i++) {
        synesis_stream *s;
        if (synesis_tunnel_open_stream(t, &cb, &b, &s) != 0)
            exit(1);
        b.open++;
        char cmd[64];
        int n = snprintf(cmd, sizeof(cmd), "SRC %llu\n",
                         up ? 0ull : (unsigned long long)(bytes / (uint64_t)k));
        size_t acc;
        synesis_stream_write(s, cmd, (size_t)n, &acc);
        if (up) {
            b.up = s;
            b.to_send = bytes;
            bulk_pump(&b);
        } else {
            synesis_stream_finish(s);
        }
    }
    int flag = 0;
    ev_timer wake;
    ev_timer_init(&wake, wake_cb, 0.01, 0.01);
    ev_timer_start(loop, &wake);
    double end = now_s() + 600;
    while (!(flag = all_closed(&b)) && now_s() < end)
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &wake);
    double el = now_s() - t0;
    if (!flag || b.errors || (!up && b.received != bytes / (uint64_t)k * (uint64_t)k))
        fprintf(stderr, "synesis-bench: bulk incomplete (%llu bytes)\n",
                (unsigned long long)b.received);
    double gib = (double)bytes / (1024.0 * 1024 * 1024);
    *ccpu = (cpu_self() - c0) / gib;
    *ecpu = (bench_cpu_of(edge) - e0) / gib;
    return el;
}

static void bulk_figure(const char *bench, const edge_opts *eo, uint64_t bytes, int k, int up,
                        int runs, const char *label) {
    edge_proc ep = edge_spawn(eo);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    synesis_tunnel_config c;
    tunnel_config(&c, ep.port);
    c.idle_timeout = 120;
    synesis_tunnel *t = tunnel_new(loop, &c);
    if (connect_one(loop, t, 10) != 0)
        exit(1);
    double g[8], cc[8], ec[8];
    for (int r = 0; r < runs; r++) {
        double s = bulk_once(loop, t, ep.pid, bytes, k, up, &cc[r], &ec[r]);
        g[r] = (double)bytes * 8 / s / 1e9;
    }
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(t, &st);
    cJSON *x = cJSON_CreateObject();
    cJSON_AddNumberToObject(x, "client_cpu_s_per_gib", pct(cc, (size_t)runs, 50));
    cJSON_AddNumberToObject(x, "edge_cpu_s_per_gib", pct(ec, (size_t)runs, 50));
    cJSON_AddNumberToObject(x, "packets_lost", (double)st.packets_lost);
    cJSON *p = params_of("bytes", (double)bytes, "direction", up ? "up" : "down");
    cJSON_AddNumberToObject(p, "streams", k);
    if (label)
        cJSON_AddStringToObject(p, "path", label);
    emit(bench, p, "Gbit/s", g, (size_t)runs, x);
    synesis_tunnel_free(t);
    run_for(loop, 0.01);
    ev_loop_destroy(loop);
    edge_stop(&ep, NULL, NULL);
}

static void bench_bulk(void) {
    uint64_t gib = opt.quick ? 64ull << 20 : 1ull << 30;
    int runs = opt.quick ? 1 : 3;
    edge_opts eo = {0};
    bulk_figure("bulk", &eo, gib, 1, 0, runs, NULL);
    bulk_figure("bulk", &eo, gib, 1, 1, runs, NULL);
    bulk_figure("bulk", &eo, gib, 4, 0, runs, NULL);
    bulk_figure("bulk", &eo, gib, 16, 0, runs, NULL);
}

static void bench_impaired(void) {
    /* 1 GiB at CUBIC's ~10 Mbit/s under 1 % loss would take a quarter of an hour. */
    uint64_t bytes = opt.quick ? 8ull << 20 : 64ull << 20;
    static const char *const names[] = {"cubic", "bbr"};
    for (int cc = 0; cc < 2; cc++) {
        char label[64];
        edge_opts lossy = {.cc = cc, .proxy = 1, .loss = 0.01, .delay_ms = 10};
        snprintf(label, sizeof(label), "1%% loss, 20 ms RTT, %s", names[cc]);
        bulk_figure("impaired", &lossy, bytes, 1, 0, 1, label);
        edge_opts far = {.cc = cc, .proxy = 1, .delay_ms = 50};
        snprintf(label, sizeof(label), "100 ms RTT, %s", names[cc]);
        bulk_figure("impaired", &far, bytes, 1, 0, 1, label);
    }
}

/* ---- 5. footprint ---- */

/* One round of the footprint figure: n tunnels created (sharing the TLS context of one more
 * tunnel, made first, when share), connected, then idle for half a second. Heap per tunnel before
 * connect and once idle, RSS growth, time to connect them all. */
typedef struct fp_round {
    double heap_new, heap_idle, all_up;
    size_t up;
    long c_rss_kb, e_rss_kb;
    double e_cpu;
} fp_round;

static fp_round footprint_round(struct ev_loop *loop, edge_proc *ep, size_t n, int share) {
    fp_round r = {0};
    synesis_tunnel_config c;
    tunnel_config(&c, ep->port);
    c.handshake_timeout = 30;
    c.retry_initial_connect = 1;
    synesis_tunnel *tmpl = share ? tunnel_new(loop, &c) : NULL;
    c.share_tls_with = tmpl;
    synesis_tunnel **t = calloc(n, sizeof(*t));
    run_for(loop, 0.05);
    long e_rss0 = bench_status_kb(ep->pid, "VmRSS"), c_rss0 = bench_status_kb(getpid(), "VmRSS");
    double e_cpu0 = bench_cpu_of(ep->pid);
    size_t heap0 = heap_in_use();
    for (size_t i = 0; i < n; i++)
        t[i] = tunnel_new(loop, &c);
    size_t heap_new = heap_in_use();
    double t0 = now_s();
    for (size_t i = 0; i < n; i++)
        synesis_tunnel_connect(t[i]);
    ev_timer wake;
    ev_timer_init(&wake, wake_cb, 0.01, 0.01);
    ev_timer_start(loop, &wake);
    while (now_s() < t0 + 60) {
        r.up = 0;
        for (size_t i = 0; i < n; i++)
            r.up += synesis_tunnel_is_connected(t[i]) ? 1 : 0;
        if (r.up == n)
            break;
        ev_run(loop, EVRUN_ONCE);
    }
    r.all_up = now_s() - t0;
    ev_timer_stop(loop, &wake);
    run_for(loop, 0.5);
    size_t heap1 = heap_in_use();
    r.c_rss_kb = bench_status_kb(getpid(), "VmRSS") - c_rss0;
    r.e_rss_kb = bench_status_kb(ep->pid, "VmRSS") - e_rss0;
    r.e_cpu = bench_cpu_of(ep->pid) - e_cpu0;
    r.heap_new = (double)(heap_new - heap0) / (double)n;
    r.heap_idle = (double)(heap1 - heap0) / (double)n;
    for (size_t i = 0; i < n; i++)
        synesis_tunnel_free(t[i]);
    synesis_tunnel_free(tmpl);
    free(t);
    run_for(loop, 0.05);
    return r;
}

static void bench_footprint(void) {
    size_t n = opt.quick ? 100 : 1000;
    /* Each tunnel holds a UDP socket (and a timerfd while busy): raise the soft fd limit. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 4 * n + 64) {
        rl.rlim_cur =
            rl.rlim_max == RLIM_INFINITY || rl.rlim_max > 4 * n + 64 ? 4 * n + 64 : rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 2 * n + 64) {
        size_t fit = (size_t)(rl.rlim_cur - 64) / 2;
        fprintf(stderr, "synesis-bench: fd limit %llu: %zu tunnels instead of %zu\n",
                (unsigned long long)rl.rlim_cur, fit, n);
        n = fit;
    }
    edge_opts eo = {0};
    edge_proc ep = edge_spawn(&eo);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    fp_round own = footprint_round(loop, &ep, n, 0);
    /* The same with one TLS context for all (config.share_tls_with). */
    fp_round shared = footprint_round(loop, &ep, n, 1);
    double v[1] = {own.heap_idle};
    cJSON *x = cJSON_CreateObject();
    cJSON_AddNumberToObject(x, "heap_per_tunnel_before_connect", own.heap_new);
    cJSON_AddNumberToObject(x, "shared_tls_heap_per_idle_tunnel", shared.heap_idle);
    cJSON_AddNumberToObject(x, "shared_tls_heap_per_tunnel_before_connect", shared.heap_new);
    emit("footprint_heap_per_idle_tunnel", NULL, "bytes", v, 1, x);
    double w[1] = {own.all_up};
    x = cJSON_CreateObject();
    cJSON_AddNumberToObject(x, "connected", (double)own.up);
    cJSON_AddNumberToObject(x, "client_rss_kb", (double)own.c_rss_kb);
    cJSON_AddNumberToObject(x, "edge_rss_kb", (double)own.e_rss_kb);
    cJSON_AddNumberToObject(x, "edge_cpu_s", own.e_cpu);
    emit("footprint_connect_all", params_of("tunnels", (double)n, NULL, NULL), "s", w, 1, x);
    ev_loop_destroy(loop);
    edge_stop(&ep, NULL, NULL);
}

/* ---- 6. idle ---- */

/* --idle-set: "keep_alive=S,heartbeat=S,idle_timeout=S,changed_vitals=0|1,edge_idle_timeout=S"
 * (c NULL: only the edge's, into eo). */
static void idle_set(synesis_tunnel_config *c, edge_opts *eo, cJSON *params) {
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", opt.idle_set ? opt.idle_set : "");
    char *save = NULL;
    for (char *kv = strtok_r(buf, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq) {
            fprintf(stderr, "synesis-bench: --idle-set %s: KEY=VALUE\n", kv);
            exit(2);
        }
        *eq = 0;
        double v = atof(eq + 1);
        if (!strcmp(kv, "edge_idle_timeout")) {
            eo->idle_timeout = v;
            if (params)
                cJSON_AddNumberToObject(params, kv, v);
            continue;
        }
        if (!c)
            continue;
        if (!strcmp(kv, "keep_alive"))
            c->keep_alive_interval = v;
        else if (!strcmp(kv, "heartbeat"))
            c->heartbeat_interval = v;
        else if (!strcmp(kv, "idle_timeout"))
            c->idle_timeout = v;
        else if (!strcmp(kv, "changed_vitals"))
            c->heartbeat_changed_vitals = (int)v;
        else {
            fprintf(stderr, "synesis-bench: --idle-set: unknown key %s\n", kv);
            exit(2);
        }
        cJSON_AddNumberToObject(params, kv, v);
    }
}

static void bench_idle(void) {
    double secs = opt.idle_seconds >= 0 ? opt.idle_seconds : opt.quick ? 10 : 300;
    edge_opts eo = {.proxy = 1};
    idle_set(NULL, &eo, NULL);
    edge_proc ep = edge_spawn(&eo);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    synesis_tunnel_config c;
    tunnel_config(&c, ep.port);
    c.heartbeat_interval = 30; /* the defaults: 30 s heartbeat, 10 s keep-alive, 60 s idle */
    cJSON *params = cJSON_CreateObject();
    cJSON_AddStringToObject(params, "profile",
                            opt.idle_low_bandwidth ? "low-bandwidth" : "default");
    if (opt.idle_low_bandwidth)
        synesis_tunnel_config_low_bandwidth(&c);
    idle_set(&c, &eo, params);
    synesis_tunnel *t = tunnel_new(loop, &c);
    if (connect_one(loop, t, 5) != 0)
        exit(1);
    run_for(loop, 0.2);
    syn_tunnel_wakes w0, w1;
    syn_tunnel_get_wakes(t, &w0);
    /* The wire from here on only: the handshake's bytes are not idle traffic. */
    proxy_counts p0 = edge_counts(&ep);
    unsigned it0 = ev_iteration(loop);
    double c0 = cpu_self(), e0 = bench_cpu_of(ep.pid), t0 = now_s();
    /* No helper timer here: only the tunnel's own watchers may wake the loop. */
    ev_timer end;
    ev_timer_init(&end, wake_cb, secs, 0.);
    ev_timer_start(loop, &end);
    while (ev_is_active(&end))
        ev_run(loop, EVRUN_ONCE);
    double el = now_s() - t0;
    unsigned wakeups = ev_iteration(loop) - it0 - 1; /* the end timer's own wake-up */
    double cpu = cpu_self() - c0, ecpu = bench_cpu_of(ep.pid) - e0;
    proxy_counts p1 = edge_counts(&ep);
    int connected = synesis_tunnel_is_connected(t);
    syn_tunnel_get_wakes(t, &w1);
    synesis_tunnel_free(t);
    run_for(loop, 0.01);
    ev_loop_destroy(loop);
    edge_stop(&ep, NULL, NULL);
    double v[1] = {(double)wakeups / (el / 60)};
    cJSON *x = cJSON_CreateObject();
    cJSON_AddNumberToObject(x, "seconds", el);
    /* On the wire: UDP payloads plus 28 bytes of IPv4 and UDP headers per datagram, both ways. */
    double ph = 3600 / el;
    unsigned long long up = p1.up - p0.up, down = p1.down - p0.down,
                       du = p1.dgrams_up - p0.dgrams_up, dd = p1.dgrams_down - p0.dgrams_down;
    cJSON_AddNumberToObject(x, "wire_bytes_per_hour", (double)(up + down + 28 * (du + dd)) * ph);
    cJSON_AddNumberToObject(x, "datagrams_per_hour", (double)(du + dd) * ph);
    cJSON_AddNumberToObject(x, "bytes_up_per_hour", (double)up * ph); /* payloads */
    cJSON_AddNumberToObject(x, "bytes_down_per_hour", (double)down * ph);
    cJSON_AddNumberToObject(x, "datagrams_up_per_hour", (double)du * ph);
    cJSON_AddNumberToObject(x, "datagrams_down_per_hour", (double)dd * ph);
    cJSON_AddNumberToObject(x, "client_cpu_ms_per_min", cpu * 1e3 / (el / 60));
    /* The edge's process (the proxy in front of it included): its cost of one idle device. */
    cJSON_AddNumberToObject(x, "edge_cpu_ms_per_min", ecpu * 1e3 / (el / 60));
    cJSON_AddBoolToObject(x, "stayed_connected", connected);
    /* The wake-ups by cause, per minute (the tunnel's counters; a wake-up with two causes counts
     * in both, and "other" is what none of them explains). */
    double pm = 60 / el;
    cJSON *b = cJSON_AddObjectToObject(x, "per_min_by_cause");
    uint64_t rx = w1.rx - w0.rx, hb = w1.heartbeat - w0.heartbeat, ex = w1.qc.expiry - w0.qc.expiry,
             st = w1.qc.fine_stale - w0.qc.fine_stale, bt = w1.buffer_timer - w0.buffer_timer;
    cJSON_AddNumberToObject(b, "socket_readable", (double)rx * pm);
    cJSON_AddNumberToObject(b, "socket_readable_answered_at_once",
                            (double)(w1.rx_sent - w0.rx_sent) * pm);
    cJSON_AddNumberToObject(b, "pings_received", (double)(w1.pings_recv - w0.pings_recv) * pm);
    cJSON_AddNumberToObject(b, "heartbeat_timer", (double)hb * pm);
    cJSON_AddNumberToObject(b, "heartbeats_sent_early",
                            (double)(w1.heartbeat_early - w0.heartbeat_early) * pm);
    cJSON_AddNumberToObject(b, "expiry_timer", (double)ex * pm);
    cJSON_AddNumberToObject(b, "expiry_sent_ack_eliciting",
                            (double)(w1.qc.expiry_send - w0.qc.expiry_send) * pm);
    cJSON_AddNumberToObject(b, "expiry_sent_ack_only",
                            (double)(w1.qc.expiry_ack - w0.qc.expiry_ack) * pm);
    cJSON_AddNumberToObject(b, "expiry_sent_nothing",
                            (double)(w1.qc.expiry_idle - w0.qc.expiry_idle) * pm);
    cJSON_AddNumberToObject(b, "timerfd_stale", (double)st * pm);
    cJSON_AddNumberToObject(b, "buffer_timer", (double)bt * pm);
    cJSON_AddNumberToObject(b, "other", ((double)wakeups - (double)(rx + hb + ex + st + bt)) * pm);
    emit("idle", params, "wakeups/min", v, 1, x);
}

/* ---- 7. what idle devices cost the edge ---- */

static void wakes_add(syn_tunnel_wakes *sum, const synesis_tunnel *t) {
    syn_tunnel_wakes w;
    syn_tunnel_get_wakes(t, &w);
    sum->rx += w.rx;
    sum->rx_sent += w.rx_sent;
    sum->heartbeat += w.heartbeat;
    sum->heartbeat_early += w.heartbeat_early;
    sum->pings_recv += w.pings_recv;
    sum->qc.expiry += w.qc.expiry;
    sum->qc.expiry_idle += w.qc.expiry_idle;
    sum->qc.expiry_ack += w.qc.expiry_ack;
    sum->qc.expiry_send += w.qc.expiry_send;
    sum->qc.packets += w.qc.packets;
}

static int raise_nofile(size_t want);

/* n idle connected tunnels with the default keep-alive and heartbeats (10 s, 30 s) on one client
 * loop, against an edge child that PINGs on their behalf and one that does not: the edge's CPU per
 * device and minute over a window, and the client's. */
static void bench_edge_idle_cost(void) {
    size_t n = opt.quick ? 100 : 1000;
    double secs = opt.quick ? 10 : 60;
    int lim = raise_nofile(4 * n + 64);
    if ((size_t)lim < 2 * n + 64)
        n = ((size_t)lim - 64) / 2;
    for (int pings = 1; pings >= 0; pings--) {
        edge_opts eo = {.no_ping = !pings};
        edge_proc ep = edge_spawn(&eo);
        struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
        synesis_tunnel_config c;
        tunnel_config(&c, ep.port);
        c.heartbeat_interval = 30;
        c.handshake_timeout = 30;
        c.retry_initial_connect = 1;
        synesis_tunnel **t = calloc(n, sizeof(*t));
        for (size_t i = 0; i < n; i++) {
            t[i] = tunnel_new(loop, &c);
            synesis_tunnel_connect(t[i]);
        }
        size_t up = 0;
        double t0 = now_s();
        ev_timer wake;
        ev_timer_init(&wake, wake_cb, 0.01, 0.01);
        ev_timer_start(loop, &wake);
        while (now_s() < t0 + 120) {
            up = 0;
            for (size_t i = 0; i < n; i++)
                up += synesis_tunnel_is_connected(t[i]) ? 1 : 0;
            if (up == n)
                break;
            ev_run(loop, EVRUN_ONCE);
        }
        ev_timer_stop(loop, &wake);
        run_for(loop, 1.0); /* the first heartbeats (and keep_alive_ms) are in */
        syn_tunnel_wakes w0 = {0}, w1 = {0};
        for (size_t i = 0; i < n; i++)
            wakes_add(&w0, t[i]);
        double e0 = bench_cpu_of(ep.pid), c0 = cpu_self(), s0 = now_s();
        ev_timer end;
        ev_timer_init(&end, wake_cb, secs, 0.);
        ev_timer_start(loop, &end);
        while (ev_is_active(&end))
            ev_run(loop, EVRUN_ONCE);
        double el = now_s() - s0, ecpu = bench_cpu_of(ep.pid) - e0, ccpu = cpu_self() - c0;
        size_t still = 0;
        for (size_t i = 0; i < n; i++) {
            still += synesis_tunnel_is_connected(t[i]) ? 1 : 0;
            wakes_add(&w1, t[i]);
        }
        double per = up ? 1e3 * 60 / el / (double)up : 0; /* ms per device per minute */
        double v[1] = {ecpu * per};
        cJSON *x = cJSON_CreateObject();
        cJSON_AddNumberToObject(x, "client_cpu_ms_per_device_min", ccpu * per);
        /* The tunnels' events by cause, per device and minute (they share one loop: these are
         * what would wake each device's own loop). */
        double pd = per / 1e3;
        cJSON *b = cJSON_AddObjectToObject(x, "device_per_min_by_cause");
        cJSON_AddNumberToObject(b, "socket_readable", (double)(w1.rx - w0.rx) * pd);
        cJSON_AddNumberToObject(b, "socket_readable_answered_at_once",
                                (double)(w1.rx_sent - w0.rx_sent) * pd);
        cJSON_AddNumberToObject(b, "pings_received", (double)(w1.pings_recv - w0.pings_recv) * pd);
        cJSON_AddNumberToObject(b, "heartbeat_timer", (double)(w1.heartbeat - w0.heartbeat) * pd);
        cJSON_AddNumberToObject(b, "expiry_timer", (double)(w1.qc.expiry - w0.qc.expiry) * pd);
        cJSON_AddNumberToObject(b, "expiry_sent_nothing",
                                (double)(w1.qc.expiry_idle - w0.qc.expiry_idle) * pd);
        cJSON_AddNumberToObject(b, "packets_sent", (double)(w1.qc.packets - w0.qc.packets) * pd);
        cJSON_AddNumberToObject(x, "connected", (double)up);
        cJSON_AddNumberToObject(x, "still_connected", (double)still);
        cJSON_AddNumberToObject(x, "seconds", el);
        cJSON *p = params_of("idle_tunnels", (double)n, NULL, NULL);
        cJSON_AddNumberToObject(p, "edge_pings", pings);
        emit("edge_idle_cost", p, "edge CPU ms/min per device", v, 1, x);
        for (size_t i = 0; i < n; i++)
            synesis_tunnel_free(t[i]);
        free(t);
        run_for(loop, 0.05);
        ev_loop_destroy(loop);
        edge_stop(&ep, NULL, NULL);
    }
}

/* ---- 8. the edge with many idle tunnels ---- */

static int raise_nofile(size_t want) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    return getrlimit(RLIMIT_NOFILE, &rl) == 0
               ? (int)(rl.rlim_cur > 1u << 30 ? 1u << 30 : rl.rlim_cur)
               : 1024;
}

/* One active tunnel (1 KiB echo, 16 in flight) against one edge child, first alone, then with n
 * idle connected tunnels (no heartbeats, default keep-alive) held open on the same client loop:
 * the edge's CPU per request and the rate, both ways, and the edge's RSS per idle connection. */
static void bench_edge_many_idle(void) {
    size_t n = opt.quick ? 500 : 4000;
    int lim = raise_nofile(4 * n + 64);
    if ((size_t)lim < 2 * n + 64) {
        size_t fit = ((size_t)lim - 64) / 2;
        fprintf(stderr, "synesis-bench: fd limit %d: %zu idle tunnels instead of %zu\n", lim, fit,
                n);
        n = fit;
    }
    int runs = opt.quick ? 1 : 3;
    double secs = opt.quick ? 1.0 : 3.0;
    edge_opts eo = {0};
    edge_proc ep = edge_spawn(&eo);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    synesis_tunnel_config c;
    tunnel_config(&c, ep.port);
    synesis_tunnel *t = tunnel_new(loop, &c);
    if (connect_one(loop, t, 5) != 0)
        exit(1);
    pipe_state ps = {0};
    ps.cap = 1u << 16;
    ps.lat = malloc(ps.cap * sizeof(double));
    double rate0[8], ec0[8], cc0[8], rate1[8], ec1[8], cc1[8];
    pipeline(loop, t, ep.pid, 16, 0.3, &ps, &rate0[0], &cc0[0], &ec0[0]); /* warm-up */
    for (int r = 0; r < runs; r++)
        pipeline(loop, t, ep.pid, 16, secs, &ps, &rate0[r], &cc0[r], &ec0[r]);
    /* The idle ones: heartbeats off (tunnel_config), keep-alive and idle timeout the defaults. */
    synesis_tunnel_config ci;
    tunnel_config(&ci, ep.port);
    ci.handshake_timeout = 30;
    ci.retry_initial_connect = 1;
    synesis_tunnel **idle = calloc(n, sizeof(*idle));
    run_for(loop, 0.2);
    long rss0 = bench_status_kb(ep.pid, "VmRSS");
    unsigned long long eheap0 = edge_counts(&ep).heap;
    for (size_t i = 0; i < n; i++)
        idle[i] = tunnel_new(loop, &ci);
    double t0 = now_s();
    for (size_t i = 0; i < n; i++)
        synesis_tunnel_connect(idle[i]);
    size_t up = 0;
    ev_timer wake;
    ev_timer_init(&wake, wake_cb, 0.01, 0.01);
    ev_timer_start(loop, &wake);
    while (now_s() < t0 + 120) {
        up = 0;
        for (size_t i = 0; i < n; i++)
            up += synesis_tunnel_is_connected(idle[i]) ? 1 : 0;
        if (up == n)
            break;
        ev_run(loop, EVRUN_ONCE);
    }
    ev_timer_stop(loop, &wake);
    double connect_all = now_s() - t0;
    if (up < n)
        fprintf(stderr, "synesis-bench: only %zu of %zu idle tunnels connected\n", up, n);
    run_for(loop, 0.5);
    long rss1 = bench_status_kb(ep.pid, "VmRSS");
    unsigned long long eheap1 = edge_counts(&ep).heap;
    for (int r = 0; r < runs; r++)
        pipeline(loop, t, ep.pid, 16, secs, &ps, &rate1[r], &cc1[r], &ec1[r]);
    size_t still = 0;
    for (size_t i = 0; i < n; i++)
        still += synesis_tunnel_is_connected(idle[i]) ? 1 : 0;
    cJSON *x = cJSON_CreateObject();
    cJSON_AddNumberToObject(x, "edge_cpu_us_per_req", pct(ec1, (size_t)runs, 50));
    cJSON_AddNumberToObject(x, "edge_cpu_us_per_req_without", pct(ec0, (size_t)runs, 50));
    cJSON_AddNumberToObject(x, "rate_without", pct(rate0, (size_t)runs, 50));
    cJSON_AddNumberToObject(x, "client_cpu_us_per_req", pct(cc1, (size_t)runs, 50));
    cJSON_AddNumberToObject(x, "client_cpu_us_per_req_without", pct(cc0, (size_t)runs, 50));
    cJSON_AddNumberToObject(x, "edge_rss_kb_per_idle_conn",
                            up ? (double)(rss1 - rss0) / (double)up : 0);
    cJSON_AddNumberToObject(x, "edge_heap_bytes_per_idle_conn",
                            up ? ((double)eheap1 - (double)eheap0) / (double)up : 0);
    cJSON_AddNumberToObject(x, "connect_all_s", connect_all);
    cJSON_AddNumberToObject(x, "connected", (double)up);
    cJSON_AddNumberToObject(x, "still_connected", (double)still);
    cJSON_AddNumberToObject(x, "seconds_per_run", secs);
    cJSON *p = params_of("idle_tunnels", (double)n, NULL, NULL);
    cJSON_AddNumberToObject(p, "size", 1024);
    cJSON_AddNumberToObject(p, "inflight", 16);
    emit("edge_many_idle", p, "req/s", rate1, (size_t)runs, x);
    for (size_t i = 0; i < n; i++)
        synesis_tunnel_free(idle[i]);
    free(idle);
    free(ps.lat);
    synesis_tunnel_free(t);
    run_for(loop, 0.05);
    ev_loop_destroy(loop);
    edge_stop(&ep, NULL, NULL);
}

/* ---- baselines and the table ---- */

typedef struct row {
    char *bench, *impl, *params, *unit;
    char *key; /* params without what does not change the comparison (bytes, one stream) */
    double median;
    cJSON *obj;
} row;

static row *rows;
static size_t nrows, rows_cap;

static void add_line(const char *line) {
    cJSON *o = cJSON_Parse(line);
    if (!o)
        return;
    const cJSON *b = cJSON_GetObjectItem(o, "bench"), *i = cJSON_GetObjectItem(o, "impl"),
                *u = cJSON_GetObjectItem(o, "unit"), *m = cJSON_GetObjectItem(o, "median");
    if (!cJSON_IsString(b) || !cJSON_IsString(i) || !cJSON_IsNumber(m)) {
        cJSON_Delete(o);
        return;
    }
    if (nrows == rows_cap) {
        rows_cap = rows_cap ? rows_cap * 2 : 64;
        rows = realloc(rows, rows_cap * sizeof(*rows));
    }
    row *r = &rows[nrows++];
    r->bench = strdup(b->valuestring);
    r->impl = strdup(i->valuestring);
    char *p = cJSON_PrintUnformatted(cJSON_GetObjectItem(o, "params"));
    r->params = strdup(p ? p : "{}");
    cJSON_free(p);
    r->unit = strdup(cJSON_IsString(u) ? u->valuestring : "");
    cJSON *k = cJSON_Duplicate(cJSON_GetObjectItem(o, "params"), 1);
    if (k) {
        cJSON_DeleteItemFromObject(k, "bytes");
        const cJSON *st = cJSON_GetObjectItem(k, "streams");
        if (cJSON_IsNumber(st) && st->valuedouble == 1)
            cJSON_DeleteItemFromObject(k, "streams");
    }
    char *ks = k ? cJSON_PrintUnformatted(k) : NULL;
    r->key = strdup(ks ? ks : "{}");
    cJSON_free(ks);
    cJSON_Delete(k);
    r->median = m->valuedouble;
    r->obj = o;
}

static void run_baseline(const char *name) {
    char path[1024], cmd[2048];
    snprintf(path, sizeof(path), "%s/%s", SYN_BENCH_DIR, name);
    if (access(path, X_OK) != 0) {
        fprintf(stderr, "synesis-bench: baseline %s not built; skipped\n", name);
        return;
    }
    snprintf(cmd, sizeof(cmd), "'%s' --pki '%s'%s", path, opt.pki, opt.quick ? " --quick" : "");
    char samples[1024];
    if (opt.samples) {
        snprintf(samples, sizeof(samples), "%s.tls-tcp", opt.samples);
        setenv("BENCH_LATENCY_SAMPLES", samples, 1);
    }
    progress("running %s", name);
    FILE *f = popen(cmd, "r");
    if (!f)
        return;
    char line[8192];
    while (fgets(line, sizeof(line), f)) {
        fputs(line, stdout);
        if (opt.out)
            fputs(line, opt.out);
        add_line(line);
    }
    pclose(f);
}

static int higher_is_better(const char *unit) {
    return strstr(unit, "/s") != NULL && strcmp(unit, "s/GiB") != 0;
}

static const row *find(const char *bench, const char *impl, const char *params) {
    for (size_t i = 0; i < nrows; i++)
        if (!strcmp(rows[i].bench, bench) && !strcmp(rows[i].impl, impl) &&
            (!params || !strcmp(rows[i].key, params)))
            return &rows[i];
    return NULL;
}

static void print_table(void) {
    printf("\n%-14s %-72s %12s %12s %12s %9s %9s\n", "figure", "params", "synesis", "ossl-quic",
           "tls-tcp", "vs quic", "vs tcp");
    for (size_t i = 0; i < nrows; i++) {
        const row *r = &rows[i];
        if (strcmp(r->impl, "synesis") != 0)
            continue;
        const row *q = find(r->bench, "openssl-quic", r->key);
        const row *tt = find(r->bench, "tls-tcp", r->key);
        char qs[32] = "-", ts[32] = "-", qr[32] = "", tr[32] = "";
        int hib = higher_is_better(r->unit);
        if (q) {
            snprintf(qs, sizeof(qs), "%.4g", q->median);
            snprintf(qr, sizeof(qr), "%.2fx", hib ? r->median / q->median : q->median / r->median);
        }
        if (tt) {
            snprintf(ts, sizeof(ts), "%.4g", tt->median);
            snprintf(tr, sizeof(tr), "%.2fx",
                     hib ? r->median / tt->median : tt->median / r->median);
        }
        printf("%-14.14s %-72.72s %12.4g %12s %12s %9s %9s  %s\n", r->bench, r->params, r->median,
               qs, ts, qr, tr, r->unit);
    }
    const row *gso = find("udp_gso", "limit", NULL);
    const row *aes = find("aes128gcm_seal", "limit", NULL);
    for (size_t i = 0; i < nrows; i++) {
        const row *r = &rows[i];
        if (strcmp(r->impl, "synesis") || strcmp(r->bench, "bulk") || !gso)
            continue;
        printf("bulk %s: %.1f %% of the UDP-with-GSO loopback limit (%.3g Gbit/s)", r->params,
               100 * r->median / gso->median, gso->median);
        if (aes && !strcmp(aes->unit, "GB/s"))
            printf(", %.1f %% of one core's AES-128-GCM seal rate",
                   100 * r->median / 8 / aes->median);
        printf("\n");
    }
    printf("(ratios: >1 means synesis-tunnel is better; time figures compare medians)\n");
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            opt.quick = 1;
        else if (!strcmp(argv[i], "--pki") && i + 1 < argc)
            opt.pki = argv[++i];
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            opt.only = argv[++i];
        else if (!strcmp(argv[i], "--idle-seconds") && i + 1 < argc)
            opt.idle_seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--idle-profile") && i + 1 < argc)
            opt.idle_low_bandwidth = !strcmp(argv[++i], "low-bandwidth");
        else if (!strcmp(argv[i], "--idle-set") && i + 1 < argc)
            opt.idle_set = argv[++i];
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
            opt.out = fopen(argv[++i], "w");
            if (!opt.out) {
                perror(argv[i]);
                return 2;
            }
        } else if (!strcmp(argv[i], "--latency-samples") && i + 1 < argc) {
            opt.samples = argv[++i];
            opt.samples_f = fopen(opt.samples, "w");
            if (!opt.samples_f) {
                perror(opt.samples);
                return 2;
            }
        } else if (!strcmp(argv[i], "--no-baselines"))
            opt.baselines = 0;
        else if (!strcmp(argv[i], "--transport") && i + 1 < argc &&
                 (!strcmp(argv[i + 1], "auto") || !strcmp(argv[i + 1], "udp") ||
                  !strcmp(argv[i + 1], "tcp"))) {
            i++;
            opt.transport = !strcmp(argv[i], "tcp")   ? SYNESIS_TRANSPORT_TCP
                            : !strcmp(argv[i], "udp") ? SYNESIS_TRANSPORT_UDP
                                                      : SYNESIS_TRANSPORT_AUTO;
        } else {
            fprintf(stderr,
                    "usage: %s [--quick] [--pki DIR] [--only handshake,reconnect,latency,rate,bulk,"
                    "impaired,footprint,idle,edge_many_idle,edge_idle_cost] [--idle-seconds S] "
                    "[--idle-profile default|low-bandwidth] [--idle-set KEY=VALUE,...] "
                    "[--out FILE] "
                    "[--latency-samples FILE] [--no-baselines] [--transport auto|udp|tcp]\n",
                    argv[0]);
            return strcmp(argv[i], "--help") ? 2 : 0;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    char pki[256];
    if (!opt.pki) {
        snprintf(pki, sizeof(pki), "/tmp/synesis-bench-pki.%d", (int)getpid());
        char detail[512];
        if (synesis_identity_create_test_pki(pki, "bench", detail, sizeof(detail)) != 0) {
            fprintf(stderr, "synesis-bench: PKI: %s\n", detail);
            return 1;
        }
        opt.pki = pki;
    }
    pin(0);
    double t0 = now_s();
    if (wanted("handshake")) {
        progress("handshake");
        bench_handshake();
    }
    if (wanted("reconnect")) {
        progress("reconnect");
        bench_reconnect();
    }
    if (wanted("latency") || wanted("rate")) {
        progress("latency and request rate");
        bench_requests();
    }
    if (wanted("bulk")) {
        progress("bulk");
        bench_bulk();
    }
    if (wanted("impaired")) {
        progress("bulk under impairment");
        bench_impaired();
    }
    if (wanted("footprint")) {
        progress("footprint");
        bench_footprint();
    }
    if (wanted("idle")) {
        progress("idle cost");
        bench_idle();
    }
    if (wanted("edge_many_idle")) {
        progress("the edge with many idle tunnels");
        bench_edge_many_idle();
    }
    /* Not in --quick runs unless named: it takes a minute or two. */
    if (wanted("edge_idle_cost") && (!opt.quick || opt.only)) {
        progress("what idle devices cost the edge");
        bench_edge_idle_cost();
    }
    if (opt.samples_f) {
        fclose(opt.samples_f);
        opt.samples_f = NULL;
    }
    progress("own figures took %.1f s", now_s() - t0);
    if (opt.baselines && !opt.only) {
        run_baseline("baseline_ossl_quic");
        run_baseline("baseline_tls_tcp");
        run_baseline("baseline_limits");
    }
    print_table();
    if (opt.out)
        fclose(opt.out);
    return 0;
}

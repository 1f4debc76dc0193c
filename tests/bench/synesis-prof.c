/*
 * synesis-prof: one workload of synesis-bench, alone, for a profiler (docs/perf/profiles/).
 *
 *   synesis-prof [--pki DIR] [--groups LIST] [--idle N] [--ctl FIFO --ack FIFO] WORKLOAD
 *     handshake N          N connects (after one warm-up), each to Connected, then disconnect
 *                          (also prints the median handshake_time and client CPU of a connect,
 *                          measured as synesis-bench does)
 *     rate INFLIGHT SECS   1 KiB echo requests, INFLIGHT outstanding, for SECS seconds
 *     bulk MIB             one download of MIB MiB on one stream (SRC)
 *     idle SECS            nothing for SECS seconds (with --idle: what the idle tunnels cost)
 *   --idle N: first N more tunnels connect to the same edge and stay idle (no heartbeats, default
 *   keep-alive) on the same loop, as in synesis-bench's edge_many_idle.
 *
 * Like synesis-bench, the edge runs in a forked child pinned to CPU 1 (its thread is named
 * "prof-edge") and the tunnel in this process on CPU 0 ("prof-client"), so `perf report --comm`
 * separates the two sides. With --ctl/--ack (the fifos of `perf record --control
 * fifo:CTL,ACK -D -1`), events are enabled only around the measured phase: no PKI generation,
 * edge start, first connect or warm-up in the profile. Prints one line with the figure and the
 * CPU time of both sides during that phase.
 *
 * Only the public API and the edge's constructor: the same file builds against older trees
 * (compile with -DSYNESIS_PROF_NO_GROUPS where synesis_tunnel_config has no tls_groups, and
 * -DSYNESIS_PROF_NO_COMPLETED_TIME where the stats have no handshake_completed_time).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ev.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "edge/edge.h"
#include "synesis/synesis.h"

static const char *pki, *groups, *ctl_path, *ack_path;
static int idle_n;
static int ctl_fd = -1, ack_fd = -1;

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

static void pin(int cpu, const char *name) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set) != 0)
        fprintf(stderr, "synesis-prof: cannot pin to CPU %d: %s\n", cpu, strerror(errno));
    prctl(PR_SET_NAME, name, 0, 0, 0);
}

/* perf's control fifo: "enable" / "disable", each acknowledged before the phase goes on. */
static void perf_ctl(const char *cmd) {
    if (!ctl_path)
        return;
    if (ctl_fd < 0) {
        ctl_fd = open(ctl_path, O_WRONLY);
        ack_fd = ack_path ? open(ack_path, O_RDONLY) : -1;
        if (ctl_fd < 0) {
            perror(ctl_path);
            exit(1);
        }
    }
    if (write(ctl_fd, cmd, strlen(cmd)) < 0)
        perror("perf control");
    char ack[16];
    if (ack_fd >= 0 && read(ack_fd, ack, sizeof(ack)) <= 0)
        perror("perf ack");
}

/* ---- the edge child: answers 'c' with its CPU seconds, stops on 'q' ---- */

static void edge_cmd(struct ev_loop *loop, ev_io *w, int revents) {
    (void)revents;
    char c;
    if (read(w->fd, &c, 1) != 1 || c == 'q') {
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    dprintf(*(int *)w->data, "%.9f\n", cpu_self());
}

typedef struct edge_proc {
    pid_t pid;
    int cmd, resp;
    uint16_t port;
} edge_proc;

static void edge_spawn(edge_proc *ep) {
    int down[2], up[2];
    if (pipe(down) != 0 || pipe(up) != 0)
        exit(1);
    fflush(NULL);
    ep->pid = fork();
    if (ep->pid == 0) {
        close(down[1]);
        close(up[0]);
        pin(1, "prof-edge");
        struct ev_loop *loop = ev_default_loop(0);
        char cert[512], key[512], ca[512], detail[512];
        snprintf(cert, sizeof(cert), "%s/edge.pem", pki);
        snprintf(key, sizeof(key), "%s/edge.key", pki);
        snprintf(ca, sizeof(ca), "%s/ca.pem", pki);
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
        syn_edge *e;
        if (syn_edge_new(&e, loop, &ec, detail) != 0 || syn_edge_start(e, detail) != 0) {
            fprintf(stderr, "synesis-prof: edge: %s\n", detail);
            _exit(1);
        }
        int resp = up[1];
        dprintf(resp, "%u\n", syn_edge_port(e));
        ev_io cmd;
        ev_io_init(&cmd, edge_cmd, down[0], EV_READ);
        cmd.data = &resp;
        ev_io_start(loop, &cmd);
        ev_run(loop, 0);
        _exit(0);
    }
    close(down[0]);
    close(up[1]);
    ep->cmd = down[1];
    ep->resp = up[0];
    char line[64];
    ssize_t n = read(ep->resp, line, sizeof(line) - 1);
    if (n <= 0) {
        fprintf(stderr, "synesis-prof: the edge did not start\n");
        exit(1);
    }
    line[n] = 0;
    ep->port = (uint16_t)atoi(line);
}

static double edge_cpu(edge_proc *ep) {
    char line[64];
    if (write(ep->cmd, "c", 1) != 1)
        return 0;
    ssize_t n = read(ep->resp, line, sizeof(line) - 1);
    if (n <= 0)
        return 0;
    line[n] = 0;
    return atof(line);
}

static void edge_stop(edge_proc *ep) {
    if (write(ep->cmd, "q", 1) != 1)
        kill(ep->pid, SIGTERM);
    waitpid(ep->pid, NULL, 0);
}

/* ---- the tunnel ---- */

static char cfg_cert[512], cfg_key[512], cfg_ca[512], cfg_url[64];

/* idle: as synesis-bench's idle tunnels (default idle timeout, patient first connect) */
static synesis_tunnel *tunnel_new(struct ev_loop *loop, uint16_t port, int idle) {
    synesis_tunnel_config c;
    snprintf(cfg_cert, sizeof(cfg_cert), "%s/device.pem", pki);
    snprintf(cfg_key, sizeof(cfg_key), "%s/device.key", pki);
    snprintf(cfg_ca, sizeof(cfg_ca), "%s/ca.pem", pki);
    snprintf(cfg_url, sizeof(cfg_url), "quic://127.0.0.1:%u", port);
    synesis_tunnel_config_init(&c);
    c.cloud_url = cfg_url;
    c.server_name = "localhost";
    c.cert_path = cfg_cert;
    c.key_path = cfg_key;
    c.ca_path = cfg_ca;
    c.use_system_trust = 0;
    c.heartbeat_interval = 0;
    c.request_timeout = 120;
    c.max_queued_requests = 100000;
    c.idle_timeout = 120;
    if (idle) {
        c.idle_timeout = 60;
        c.handshake_timeout = 30;
        c.retry_initial_connect = 1;
    }
#ifndef SYNESIS_PROF_NO_GROUPS
    c.tls_groups = groups;
#endif
    synesis_tunnel *t;
    char detail[512];
    if (synesis_tunnel_new(&t, loop, &c, NULL, NULL, detail, sizeof(detail)) != 0) {
        fprintf(stderr, "synesis-prof: tunnel: %s\n", detail);
        exit(1);
    }
    return t;
}

static void wake_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)w;
    (void)revents;
}

static void run_for(struct ev_loop *loop, double secs) {
    ev_timer wake;
    ev_timer_init(&wake, wake_cb, 0.01, 0.01);
    ev_timer_start(loop, &wake);
    double end = now_s() + secs;
    while (now_s() < end)
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &wake);
}

/* As synesis-bench's connect_one(): connect, then poll the state every 0.5 ms of loop time. */
static int connect_one(struct ev_loop *loop, synesis_tunnel *t) {
    if (synesis_tunnel_connect(t) != 0)
        return -1;
    double end = now_s() + 5;
    while (!synesis_tunnel_is_connected(t) && now_s() < end)
        run_for(loop, 0.0005);
    return synesis_tunnel_is_connected(t) ? 0 : -1;
}

static int cmp_double(const void *x, const void *y) {
    double u = *(const double *)x, v = *(const double *)y;
    return u < v ? -1 : u > v;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return v[n / 2];
}

/* ---- workloads ---- */

typedef struct pipe_state {
    synesis_tunnel *t;
    uint8_t req[1024];
    size_t inflight;
    double stop_at;
    uint64_t done;
    int finished;
} pipe_state;

static void submit(pipe_state *ps);

static void on_resp(synesis_tunnel *t, synesis_request *r, const synesis_response *resp, void *ud) {
    (void)t;
    (void)r;
    (void)resp;
    pipe_state *ps = ud;
    ps->done++;
    ps->inflight--;
    if (now_s() < ps->stop_at)
        submit(ps);
    else if (!ps->inflight)
        ps->finished = 1;
}

static void submit(pipe_state *ps) {
    ps->inflight++;
    if (synesis_tunnel_request(ps->t, ps->req, sizeof(ps->req), NULL, on_resp, ps, NULL) != 0) {
        fprintf(stderr, "synesis-prof: request refused\n");
        exit(1);
    }
}

static uint64_t pipeline(struct ev_loop *loop, pipe_state *ps, size_t inflight, double secs) {
    ps->done = 0;
    ps->finished = 0;
    ps->stop_at = now_s() + secs;
    for (size_t i = 0; i < inflight; i++)
        submit(ps);
    ev_timer wake;
    ev_timer_init(&wake, wake_cb, 0.01, 0.01);
    ev_timer_start(loop, &wake);
    while (!ps->finished)
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &wake);
    return ps->done;
}

typedef struct bulk_state {
    uint64_t received;
    int closed;
} bulk_state;

static void bulk_data(synesis_stream *s, const uint8_t *d, size_t n, void *ud) {
    (void)s;
    (void)d;
    ((bulk_state *)ud)->received += n;
}

static void bulk_close(synesis_stream *s, int status, uint64_t code, const char *detail, void *ud) {
    (void)detail;
    (void)s;
    (void)status;
    (void)code;
    ((bulk_state *)ud)->closed = 1;
}

int main(int argc, char **argv) {
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--pki") && i + 1 < argc)
            pki = argv[++i];
        else if (!strcmp(argv[i], "--groups") && i + 1 < argc)
            groups = argv[++i];
        else if (!strcmp(argv[i], "--ctl") && i + 1 < argc)
            ctl_path = argv[++i];
        else if (!strcmp(argv[i], "--ack") && i + 1 < argc)
            ack_path = argv[++i];
        else if (!strcmp(argv[i], "--idle") && i + 1 < argc)
            idle_n = atoi(argv[++i]);
        else
            break;
    }
    const char *what = i < argc ? argv[i] : "";
    double a = i + 1 < argc ? atof(argv[i + 1]) : 0, b = i + 2 < argc ? atof(argv[i + 2]) : 0;
    if (strcmp(what, "handshake") && strcmp(what, "rate") && strcmp(what, "bulk") &&
        strcmp(what, "idle")) {
        fprintf(stderr,
                "usage: %s [--pki DIR] [--groups LIST] [--idle N] [--ctl FIFO --ack FIFO] "
                "handshake N | rate INFLIGHT SECS | bulk MIB | idle SECS\n",
                argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    char dir[256];
    if (!pki) {
        snprintf(dir, sizeof(dir), "/tmp/synesis-prof-pki.%d", (int)getpid());
        char detail[512];
        if (synesis_identity_create_test_pki(dir, "prof", detail, sizeof(detail)) != 0) {
            fprintf(stderr, "synesis-prof: PKI: %s\n", detail);
            return 1;
        }
        pki = dir;
    }
    edge_proc ep;
    edge_spawn(&ep);
    pin(0, "prof-client");
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    synesis_tunnel *t = tunnel_new(loop, ep.port, 0);
    if (connect_one(loop, t) != 0) {
        fprintf(stderr, "synesis-prof: no connection\n");
        return 1;
    }
    synesis_tunnel **idle = idle_n > 0 ? calloc((size_t)idle_n, sizeof(*idle)) : NULL;
    if (idle_n > 0) {
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)(4 * idle_n + 64)) {
            rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > (rlim_t)(4 * idle_n + 64)
                              ? (rlim_t)(4 * idle_n + 64)
                              : rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
        int up = 0;
        double t0 = now_s();
        for (int k = 0; k < idle_n; k++) {
            idle[k] = tunnel_new(loop, ep.port, 1);
            synesis_tunnel_connect(idle[k]);
        }
        double end = now_s() + 120;
        double next_note = now_s() + 5;
        while (up < idle_n && now_s() < end) {
            run_for(loop, 0.05);
            up = 0;
            int reconnecting = 0, last = -1;
            for (int k = 0; k < idle_n; k++) {
                up += synesis_tunnel_is_connected(idle[k]);
                synesis_tunnel_state st;
                synesis_tunnel_get_state(idle[k], &st);
                if (st.kind == SYNESIS_STATE_RECONNECTING) {
                    reconnecting++;
                    last = k;
                }
            }
            if (now_s() > next_note) {
                next_note += 5;
                fprintf(stderr, "synesis-prof: %.0f s: %d connected, %d reconnecting%s%s\n",
                        now_s() - t0, up, reconnecting, last >= 0 ? ", e.g. " : "",
                        last >= 0 ? synesis_tunnel_last_error(idle[last]) : "");
            }
        }
        fprintf(stderr, "synesis-prof: %d of %d idle tunnels connected in %.2f s\n", up, idle_n,
                now_s() - t0);
        run_for(loop, 0.5);
    }
    pipe_state ps = {.t = t};
    memset(ps.req, 'x', sizeof(ps.req));
    if (!strcmp(what, "handshake")) {
        synesis_tunnel_disconnect(t);
        run_for(loop, 0.01);
    } else if (!strcmp(what, "rate")) {
        pipeline(loop, &ps, 16, 0.3); /* warm-up */
    }

    perf_ctl("enable\n");
    double c0 = cpu_self(), e0 = edge_cpu(&ep), t0 = now_s();
    double count = 0, hs_med = 0, cpu_med = 0, done_med = 0;
    const char *unit = "";
    if (!strcmp(what, "handshake")) {
        int n = a > 0 ? (int)a : 1;
        double *hs = calloc((size_t)n, sizeof(double)), *cpu = calloc((size_t)n, sizeof(double));
        double *done = calloc((size_t)n, sizeof(double));
        for (int k = 0; k < n; k++) {
            double k0 = cpu_self();
            if (connect_one(loop, t) != 0)
                return 1;
            cpu[k] = cpu_self() - k0;
            synesis_tunnel_stats st;
            synesis_tunnel_get_stats(t, &st);
            hs[k] = st.handshake_time;
#ifndef SYNESIS_PROF_NO_COMPLETED_TIME
            done[k] = st.handshake_completed_time;
#endif
            synesis_tunnel_disconnect(t);
            run_for(loop, 0.002);
        }
        hs_med = median(hs, n);
        cpu_med = median(cpu, n);
        done_med = median(done, n);
        free(hs);
        free(cpu);
        free(done);
        count = n;
        unit = "handshakes";
    } else if (!strcmp(what, "rate")) {
        count = (double)pipeline(loop, &ps, (size_t)a, b);
        unit = "requests";
    } else if (!strcmp(what, "idle")) {
        run_for(loop, a);
        count = a;
        unit = "seconds";
    } else {
        bulk_state bs = {0};
        synesis_stream_callbacks cb = {.struct_size = sizeof(synesis_stream_callbacks),
                                       .on_data = bulk_data,
                                       .on_close = bulk_close};
        synesis_stream *s;
        if (synesis_tunnel_open_stream(t, &cb, &bs, &s) != 0)
            return 1;
        char cmd[64];
        uint64_t bytes = (uint64_t)a << 20;
        int n = snprintf(cmd, sizeof(cmd), "SRC %llu\n", (unsigned long long)bytes);
        size_t acc;
        synesis_stream_write(s, cmd, (size_t)n, &acc);
        synesis_stream_finish(s);
        ev_timer wake;
        ev_timer_init(&wake, wake_cb, 0.01, 0.01);
        ev_timer_start(loop, &wake);
        while (!bs.closed)
            ev_run(loop, EVRUN_ONCE);
        ev_timer_stop(loop, &wake);
        if (bs.received != bytes)
            fprintf(stderr, "synesis-prof: bulk incomplete (%llu bytes)\n",
                    (unsigned long long)bs.received);
        count = (double)bytes / (1 << 20);
        unit = "MiB";
    }
    double el = now_s() - t0, c1 = cpu_self(), e1 = edge_cpu(&ep);
    perf_ctl("disable\n");

    printf("%s %g: %.3f s, %.1f %s/s; CPU per unit: client %.2f us, edge %.2f us", what, a, el,
           count / el, unit, (c1 - c0) / count * 1e6, (e1 - e0) / count * 1e6);
    if (hs_med > 0)
        printf("; median handshake_time %.1f us (completed %.1f us), median client CPU of a "
               "connect %.1f us",
               hs_med * 1e6, done_med * 1e6, cpu_med * 1e6);
    printf("\n");
    for (int k = 0; k < idle_n; k++)
        synesis_tunnel_free(idle[k]);
    free(idle);
    synesis_tunnel_free(t);
    run_for(loop, 0.01);
    ev_loop_destroy(loop);
    edge_stop(&ep);
    return 0;
}

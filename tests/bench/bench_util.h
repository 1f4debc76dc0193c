/* Shared pieces of the benchmarks in tests/bench/: a test PKI, the reference edge in a child
 * process (so the figures measure the edge alone, on its own core and loop), and bare QUIC clients
 * on the project's driver. Benchmarks print figures; they assert nothing and are not ctest tests.
 */
#ifndef SYNESIS_BENCH_UTIL_H
#define SYNESIS_BENCH_UTIL_H

#include <ev.h>
#include <stdint.h>
#include <sys/types.h>

#include "edge/edge.h"
#include "qconn.h"
#include "synesis/tunnel.h"

/* Creates a test PKI (CA, edge "localhost", device device_id) in a new directory under $TMPDIR or
 * /tmp; returns the directory (static storage) or exits on error. */
const char *bench_pki(const char *device_id);

/* "dir/name" in a static rotating buffer (valid for the next 8 calls). */
const char *bench_path(const char *dir, const char *name);

/* The edge in a child process, listening on 127.0.0.1 (an ephemeral port) with the defaults of
 * syn_edge_config_init() and the PKI in pki_dir; with BENCH_EDGE_LOG set in the environment, its
 * JSON events go to stderr, and BENCH_RETRY_THRESHOLD (a number or "never") sets its
 * retry_threshold (edges that have one). Call before the parent creates its own loop. */
typedef struct bench_edge {
    pid_t pid;
    int ctl;  /* commands to the child */
    int resp; /* its answers */
    uint16_t port;
} bench_edge;
void bench_edge_start(bench_edge *be, const char *pki_dir);
/* The edge's counters and its CPU time so far (user + system, seconds). */
void bench_edge_query(bench_edge *be, syn_edge_stats *st, double *cpu_s);
/* Stops the child and waits for it. */
void bench_edge_stop(bench_edge *be);

/* A tunnel config for the edge on port with the PKI in dir (as the tests use). */
void bench_tunnel_config(synesis_tunnel_config *cfg, const char *dir, uint16_t port);

/* A bare QUIC client with the device certificate (no tunnel logic): for migrating clients. */
typedef struct bench_raw {
    struct ev_loop *loop;
    int fd;
    syn_sockaddr local;
    syn_qconn *qc;
    SSL_CTX *ctx;
    syn_udp_rx *rx;
    ev_io rio;
    int connected, closed, err;
    uint64_t rx_count;
    char detail[256];
} bench_raw;
bench_raw *bench_raw_new(struct ev_loop *loop, uint16_t port, const char *pki_dir);
/* Moves to a new local socket (immediate migration); returns syn_qconn_migrate()'s result. */
int bench_raw_migrate(bench_raw *c);
void bench_raw_free(bench_raw *c);

/* Monotonic seconds. */
double bench_now(void);

/* A field of /proc/PID/status in kB ("VmRSS", "VmHWM"), or -1. */
long bench_status_kb(pid_t pid, const char *key);
/* User + system CPU seconds of process pid so far, from /proc (clock ticks: 10 ms here). */
double bench_cpu_of(pid_t pid);

#endif

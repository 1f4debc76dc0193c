/*
 * Shared helpers of the baseline benchmarks (baseline_ossl_quic, baseline_tls_tcp,
 * baseline_limits): options, PKI, CPU pinning and time, the server child, statistics and the
 * one-JSON-line-per-figure output that the benchmark runner merges.
 *
 * Output schema (stdout, one line per figure):
 *   {"bench":"<figure>","impl":"<impl>","params":{...},"unit":"<unit>",
 *    "median":X,"min":X,"max":X,"runs":N, ...extra fields}
 * Progress for humans goes to stderr.
 */
#ifndef SYNESIS_BENCH_COMMON_H
#define SYNESIS_BENCH_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/ssl.h>

/* Common command line: --quick, --pki DIR, --init PATH (synesis-init), --bytes N, --only LIST,
 * --help. */
typedef struct {
    int quick;
    const char *pki;  /* directory with ca.pem, edge.pem/.key, device.pem/.key */
    const char *init; /* synesis-init used to make a PKI when --pki is absent */
    uint64_t bytes;   /* bulk size; 0: the program's default */
    const char *only; /* --only NAME[,NAME]: run just these parts (e.g. handshake,bulk) */
    char tmpdir[256]; /* generated PKI lives here (removed at exit) */
    char paths[5][512];
} bench_opts;

enum { BENCH_CA, BENCH_EDGE_CERT, BENCH_EDGE_KEY, BENCH_DEV_CERT, BENCH_DEV_KEY };

/* Parses the common options (exits 2 on a usage error); need_pki: make or check the PKI. */
void bench_parse(bench_opts *o, int argc, char **argv, const char *usage_extra, int need_pki);
const char *bench_path(const bench_opts *o, int which);
int bench_want(const bench_opts *o, const char *part); /* 1 unless --only excludes it */

/* Watchdog of the calling process: exits with status 3 naming the stage if it does not call
 * bench_stage() again (or bench_stage(NULL, 0) to disarm) within seconds. */
void bench_stage(const char *stage, unsigned seconds);

double bench_now(void);        /* CLOCK_MONOTONIC, seconds */
double bench_proc_cpu(void);   /* CLOCK_PROCESS_CPUTIME_ID, seconds */
double bench_thread_cpu(void); /* CLOCK_THREAD_CPUTIME_ID, seconds */
void bench_pin(int cpu);       /* sched_setaffinity of the calling thread; warns on failure */
void bench_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void bench_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Statistics on a copy-free sorted array. */
void bench_sort(double *v, size_t n);
double bench_pct(const double *sorted, size_t n, double p); /* p in [0,100] */

/* One JSON line: values are the per-run figures (sorted in place); extra is "" or
 * ",\"k\":v,..." appended verbatim. params is the inside of the params object. */
void bench_emit(const char *bench, const char *impl, const char *params, const char *unit,
                double *values, size_t n, const char *extra);

/* What a server child reports back through its pipe. */
typedef struct {
    double cpu_s;  /* server CPU time over the measured phase */
    double count;  /* requests / handshakes / bytes served */
    double wall_s; /* server-side wall time of the measured phase */
    double count2; /* a second count where a figure needs one (datagrams) */
    int ok;        /* 1 when the server finished normally */
} bench_srv_result;

/* Forks a server child pinned to CPU 1 that runs fn(arg, &res), sends res back and exits.
 * The caller (client) should be pinned to CPU 0. The child is killed by SIGALRM after
 * timeout_s seconds. */
typedef void (*bench_server_fn)(void *arg, bench_srv_result *res);
pid_t bench_fork_server(bench_server_fn fn, void *arg, unsigned timeout_s, int *rfd);
/* Reads the child's result and reaps it; returns 0 on success. */
int bench_wait_server(pid_t pid, int rfd, bench_srv_result *res);

/* TLS 1.3 contexts with mutual authentication from the PKI (ALPN "synesis-tunnel/1" for QUIC).
 * groups: NULL for OpenSSL's default list, or e.g. "X25519". */
SSL_CTX *bench_ssl_server_ctx(const bench_opts *o, const SSL_METHOD *m, int alpn);
SSL_CTX *bench_ssl_client_ctx(const bench_opts *o, const SSL_METHOD *m, int alpn,
                              const char *groups);
void bench_ssl_die(const char *what) __attribute__((noreturn));

#endif

/* Shared helpers of the baseline benchmarks; see bench_common.h. */
#include "bench_common.h"

#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>

#ifndef SYNESIS_BENCH_INIT
#define SYNESIS_BENCH_INIT "synesis-init"
#endif

static const unsigned char alpn_wire[] = "\x10synesis-tunnel/1";
#define ALPN_WIRE_LEN (sizeof(alpn_wire) - 1)

static const char *const pki_names[5] = {"ca.pem", "edge.pem", "edge.key", "device.pem",
                                         "device.key"};

static char cleanup_dir[256];
static pid_t cleanup_owner;

static void cleanup_pki(void) {
    if (!cleanup_dir[0] || getpid() != cleanup_owner)
        return;
    const char *extra[] = {"ca.key"};
    char p[600];
    for (size_t i = 0; i < 5; i++) {
        snprintf(p, sizeof(p), "%s/pki/%s", cleanup_dir, pki_names[i]);
        unlink(p);
    }
    snprintf(p, sizeof(p), "%s/pki/%s", cleanup_dir, extra[0]);
    unlink(p);
    snprintf(p, sizeof(p), "%s/pki", cleanup_dir);
    rmdir(p);
    rmdir(cleanup_dir);
}

static const char *volatile cur_stage;

static void on_watchdog(int sig) {
    (void)sig;
    static const char msg[] = "bench: watchdog: stuck in stage ";
    const char *st = cur_stage ? cur_stage : "?";
    ssize_t r = write(2, msg, sizeof(msg) - 1);
    r = write(2, st, strlen(st));
    r = write(2, "\n", 1);
    (void)r;
    _exit(3);
}

void bench_stage(const char *stage, unsigned seconds) {
    cur_stage = stage;
    signal(SIGALRM, on_watchdog);
    alarm(stage ? seconds : 0);
}

void bench_log(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void bench_die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

void bench_ssl_die(const char *what) {
    fprintf(stderr, "bench: %s failed\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

static void make_pki(bench_opts *o) {
    snprintf(o->tmpdir, sizeof(o->tmpdir), "/tmp/synesis-baseline-XXXXXX");
    if (!mkdtemp(o->tmpdir))
        bench_die("mkdtemp: %s", strerror(errno));
    snprintf(cleanup_dir, sizeof(cleanup_dir), "%s", o->tmpdir);
    cleanup_owner = getpid();
    atexit(cleanup_pki);
    char dir[300];
    snprintf(dir, sizeof(dir), "%s/pki", o->tmpdir);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        bench_die("fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(2, 1); /* synesis-init talks on stdout; ours carries only JSON */
        execl(o->init, o->init, "--test-pki", dir, "--device-id", "bench", (char *)NULL);
        fprintf(stderr, "bench: cannot run %s: %s\n", o->init, strerror(errno));
        _exit(127);
    }
    int st = 0;
    if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        bench_die("%s --test-pki %s failed (use --pki DIR or --init PATH)", o->init, dir);
    o->pki = NULL;
    for (size_t i = 0; i < 5; i++)
        snprintf(o->paths[i], sizeof(o->paths[i]), "%s/%s", dir, pki_names[i]);
    bench_log("bench: test PKI generated in %s", dir);
}

void bench_parse(bench_opts *o, int argc, char **argv, const char *usage_extra, int need_pki) {
    memset(o, 0, sizeof(*o));
    signal(SIGPIPE, SIG_IGN); /* a peer that closed first is not an error here */
    o->init = SYNESIS_BENCH_INIT;
    static const struct option lo[] = {
        {"quick", no_argument,       NULL, 'q'},
        {"pki",   required_argument, NULL, 'p'},
        {"init",  required_argument, NULL, 'i'},
        {"bytes", required_argument, NULL, 'b'},
        {"only",  required_argument, NULL, 'o'},
        {"help",  no_argument,       NULL, 'h'},
        {NULL,    0,                 NULL, 0  },
    };
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'q':
            o->quick = 1;
            break;
        case 'p':
            o->pki = optarg;
            break;
        case 'i':
            o->init = optarg;
            break;
        case 'o':
            o->only = optarg;
            break;
        case 'b': {
            char *end = NULL;
            o->bytes = strtoull(optarg, &end, 10);
            if (!end || *end || o->bytes == 0 || o->bytes > (1ULL << 40))
                bench_die("--bytes wants a positive byte count");
            break;
        }
        case 'h':
            printf("usage: %s [--quick] [--pki DIR] [--init PATH] [--bytes N] [--only LIST]\n%s",
                   argv[0], usage_extra ? usage_extra : "");
            exit(0);
        default:
            fprintf(stderr,
                    "usage: %s [--quick] [--pki DIR] [--init PATH] [--bytes N] [--only LIST]\n",
                    argv[0]);
            exit(2);
        }
    }
    if (optind != argc) {
        fprintf(stderr, "%s: unexpected argument %s\n", argv[0], argv[optind]);
        exit(2);
    }
    if (!need_pki)
        return;
    if (!o->pki) {
        make_pki(o);
        return;
    }
    for (size_t i = 0; i < 5; i++) {
        snprintf(o->paths[i], sizeof(o->paths[i]), "%s/%s", o->pki, pki_names[i]);
        if (access(o->paths[i], R_OK) != 0)
            bench_die("%s: %s", o->paths[i], strerror(errno));
    }
}

const char *bench_path(const bench_opts *o, int which) { return o->paths[which]; }

int bench_want(const bench_opts *o, const char *part) {
    if (!o->only)
        return 1;
    size_t n = strlen(part);
    for (const char *p = o->only; (p = strstr(p, part)) != NULL; p += n)
        if ((p == o->only || p[-1] == ',') && (p[n] == '\0' || p[n] == ','))
            return 1;
    return 0;
}

static double ts(clockid_t id) {
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

double bench_now(void) { return ts(CLOCK_MONOTONIC); }
double bench_proc_cpu(void) { return ts(CLOCK_PROCESS_CPUTIME_ID); }
double bench_thread_cpu(void) { return ts(CLOCK_THREAD_CPUTIME_ID); }

void bench_pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set) != 0)
        bench_log("bench: warning: cannot pin to CPU %d: %s", cpu, strerror(errno));
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void bench_sort(double *v, size_t n) { qsort(v, n, sizeof(*v), cmp_double); }

double bench_pct(const double *s, size_t n, double p) {
    if (n == 0)
        return 0.0;
    /* nearest rank */
    double r = p / 100.0 * (double)n;
    size_t k = (size_t)r;
    if ((double)k < r)
        k++;
    if (k < 1)
        k = 1;
    if (k > n)
        k = n;
    return s[k - 1];
}

static double median(const double *s, size_t n) {
    if (n == 0)
        return 0.0;
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2.0;
}

void bench_emit(const char *bench, const char *impl, const char *params, const char *unit,
                double *values, size_t n, const char *extra) {
    bench_sort(values, n);
    /* the 1-minute load average tells the reader whether something else shared the two cores */
    double load1 = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &load1) != 1)
            load1 = -1;
        fclose(f);
    }
    double med = median(values, n), mn = n ? values[0] : 0.0, mx = n ? values[n - 1] : 0.0;
    printf("{\"bench\":\"%s\",\"impl\":\"%s\",\"params\":{%s},\"unit\":\"%s\",\"median\":%.6g,"
           "\"min\":%.6g,\"max\":%.6g,\"runs\":%zu%s,\"load1\":%.2f}\n",
           bench, impl, params, unit, med, mn, mx, n, extra ? extra : "", load1);
    fflush(stdout);
}

pid_t bench_fork_server(bench_server_fn fn, void *arg, unsigned timeout_s, int *rfd) {
    int p[2];
    if (pipe(p) != 0)
        bench_die("pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        bench_die("fork: %s", strerror(errno));
    if (pid == 0) {
        close(p[0]);
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the client */
        signal(SIGALRM, SIG_DFL);
        alarm(timeout_s);
        bench_pin(1);
        bench_srv_result res;
        memset(&res, 0, sizeof(res));
        fn(arg, &res);
        ssize_t w = write(p[1], &res, sizeof(res));
        _exit(w == (ssize_t)sizeof(res) ? 0 : 1);
    }
    close(p[1]);
    *rfd = p[0];
    return pid;
}

int bench_wait_server(pid_t pid, int rfd, bench_srv_result *res) {
    memset(res, 0, sizeof(*res));
    size_t got = 0;
    while (got < sizeof(*res)) {
        ssize_t r = read(rfd, (char *)res + got, sizeof(*res) - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(rfd);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (got != sizeof(*res) || !WIFEXITED(st) || WEXITSTATUS(st) != 0 || !res->ok) {
        bench_log("bench: server child %ld failed (status 0x%x)", (long)pid, st);
        return -1;
    }
    return 0;
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg) {
    (void)ssl;
    (void)arg;
    if (SSL_select_next_proto((unsigned char **)out, outlen, alpn_wire, ALPN_WIRE_LEN, in, inlen) ==
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_OK;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

static void common_ctx(SSL_CTX *ctx, const bench_opts *o, const char *cert, const char *key) {
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION))
        bench_ssl_die("SSL_CTX_set_min_proto_version");
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
        bench_ssl_die("loading certificate");
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
        bench_ssl_die("loading private key");
    if (SSL_CTX_load_verify_locations(ctx, bench_path(o, BENCH_CA), NULL) != 1)
        bench_ssl_die("loading CA");
}

SSL_CTX *bench_ssl_server_ctx(const bench_opts *o, const SSL_METHOD *m, int alpn) {
    SSL_CTX *ctx = SSL_CTX_new(m);
    if (!ctx)
        bench_ssl_die("SSL_CTX_new (server)");
    common_ctx(ctx, o, bench_path(o, BENCH_EDGE_CERT), bench_path(o, BENCH_EDGE_KEY));
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    if (alpn)
        SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    return ctx;
}

SSL_CTX *bench_ssl_client_ctx(const bench_opts *o, const SSL_METHOD *m, int alpn,
                              const char *groups) {
    SSL_CTX *ctx = SSL_CTX_new(m);
    if (!ctx)
        bench_ssl_die("SSL_CTX_new (client)");
    common_ctx(ctx, o, bench_path(o, BENCH_DEV_CERT), bench_path(o, BENCH_DEV_KEY));
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    /* Every handshake is a full one: no session cache, no tickets kept. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (groups && SSL_CTX_set1_groups_list(ctx, groups) != 1)
        bench_ssl_die("SSL_CTX_set1_groups_list");
    if (alpn && SSL_CTX_set_alpn_protos(ctx, alpn_wire, ALPN_WIRE_LEN) != 0)
        bench_ssl_die("SSL_CTX_set_alpn_protos");
    return ctx;
}

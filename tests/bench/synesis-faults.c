/*
 * synesis-faults: the fault table of docs/reliability.md. A workload of mixed traffic with every
 * byte checked runs through the fault proxy (tests/support/fault_proxy.h) under one fault after
 * another, and each scenario is scored on correctness: what completed exactly, what failed cleanly
 * (with which codes), and what must never happen (corrupted, lost without a callback, called back
 * twice, hung past its timeout), plus the time to recover from the faults that end.
 *
 *   synesis-faults [--quick] [--only NAME[,NAME...]] [--list] [--seed N] [--out FILE]
 *                  [--md FILE] [--pki DIR] [--verbose] [--requests N] [--stream-kib N]
 *
 * Counted per scenario: requests and streams completed exactly; failed cleanly, with their codes
 * (a callback with an error, or a call refused with one); corrupted (a response or stream byte
 * that is not what was sent or asked for); lost (no callback even after the tunnel was freed);
 * called back twice (or stream data after on_close); hung (a request without its callback
 * HUNG_GRACE seconds past its own timeout, a stream without progress for as long). What is still
 * open when a scenario's deadline passes is cancelled and listed apart ("cut off"). Heartbeats
 * count too: each one handed to QUIC must get exactly one result by the end of the close linger.
 *
 * The workload, through the public API as an application would use it (tunnel.h, request.h,
 * stream.h): `requests` requests of sizes uniform in 0..max_request bytes, `inflight` at a time,
 * with the request timeout and queue_while_reconnecting; three in four are echoes of random
 * bodies, one in four "SRC n" downloads of the edge's pattern; each response is checked against
 * the SHA-256 of what it must be. `streams` concurrent streams each upload stream_bytes of a
 * seeded pseudo-random sequence that the edge echoes: every byte received is compared with the
 * sequence at its offset, and both directions' SHA-256 must match at the end. A stream that fails
 * cleanly is opened again (at most twice per slot) once the tunnel is Connected. Heartbeats go out
 * every second and each must have exactly one outcome (delivered, lost or refused; a delivered
 * one may later be refused).
 *
 * The edge runs in a child process (this program executed again with --edge-child), so that it
 * can be stopped, SIGKILLed and restarted on the same port; the proxy runs on this process's loop
 * between the tunnel and the edge. Faults that strike mid-transfer start once 30 % of the
 * workload's bytes have been received.
 *
 * Output: one JSON line per scenario on stdout (and in --out FILE), then the markdown table (also
 * in --md FILE). Progress goes to stderr. Exit status 1 if any scenario has a corrupted, lost,
 * doubly called back or hung operation: those are correctness invariants. Speed is never
 * asserted. --quick runs a smaller workload under a few scenarios (CI).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include <cjson/cJSON.h>

#include "bench_util.h"
#include "edge/edge.h"
#include "fault_proxy.h"
#include "synesis/synesis.h"

/* Connection settings of every scenario (the tunnel's and the edge's). */
#define IDLE_TIMEOUT 6.0       /* s: the blackholes are shorter and longer than this */
#define KEEP_ALIVE 1.0         /* s */
#define HEARTBEAT_INTERVAL 1.0 /* s */
#define EDGE_DOWNTIME 1.0      /* s between the edge's stop and its restart */
#define FAULT_AT 0.30          /* mid-transfer faults start at this fraction of the bytes */
#define HUNG_GRACE 5.0         /* s past a request's timeout before it counts as hung */
#define STREAM_RETRIES 2       /* a failed stream is opened again at most this often per slot */
#define MTU_BEFORE 1500
#define MTU_AFTER 1280
#define BIG_RESPONSE (16 * 1024) /* MTU recovery: the first success of at least this size */
#define CHUNK (64 * 1024)
#define SRC_PERIOD 251 /* the edge's SRC pattern: byte i = i % 251 */

static struct {
    int quick, verbose, list;
    const char *only;
    const char *pki;
    uint64_t seed;
    FILE *out, *md;
    const char *self;          /* this program, for the edge's child */
    long requests, stream_kib; /* workload overrides (-1: the scenario's) */
} opt = {.seed = 1, .requests = -1, .stream_kib = -1};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void progress(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("synesis-faults: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("synesis-faults: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static uint64_t splitmix(uint64_t x) {
    x += 0x9E3779B97F4A7C15u;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9u;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBu;
    return x ^ (x >> 31);
}

static uint64_t rng_next(uint64_t *s) { return splitmix((*s)++ * 0x632BE59BD9B4E019u); }

/* The bytes off..off+n of the sequence of seed: word k is splitmix(seed ^ k), so any offset can be
 * produced (or checked) on its own. Byte 0 is 'x', so the edge echoes the stream (a command would
 * begin with 'S' or 'R'). */
static void seq_fill(uint64_t seed, uint64_t off, uint8_t *buf, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint64_t pos = off + i;
        uint64_t w = splitmix(seed ^ (pos / 8));
        size_t b = (size_t)(pos % 8);
        size_t take = 8 - b < n - i ? 8 - b : n - i;
        for (size_t k = 0; k < take; k++)
            buf[i + k] = (uint8_t)(w >> (8 * (b + k)));
        i += take;
    }
    if (off == 0 && n > 0)
        buf[0] = 'x';
}

/* ---- the edge, in a child process ---- */

static void edge_sigterm(struct ev_loop *loop, ev_signal *w, int revents) {
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

static int edge_child_main(int argc, char **argv) {
    /* --edge-child PORT PKI FD */
    if (argc < 5)
        return 2;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    unsigned port = (unsigned)atoi(argv[2]);
    const char *pki = argv[3];
    int fd = atoi(argv[4]);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    char listen[64], cert[512], key[512], ca[512], detail[512];
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", port);
    snprintf(cert, sizeof(cert), "%s/edge.pem", pki);
    snprintf(key, sizeof(key), "%s/edge.key", pki);
    snprintf(ca, sizeof(ca), "%s/ca.pem", pki);
    syn_edge_config ec;
    syn_edge_config_init(&ec);
    ec.listen = listen;
    ec.cert_file = cert;
    ec.key_file = key;
    ec.ca_file = ca;
    ec.idle_timeout = IDLE_TIMEOUT;
    if (getenv("FAULTS_EDGE_LOG"))
        ec.log_file = stderr;
    syn_edge *e;
    if (syn_edge_new(&e, loop, &ec, detail) != 0 || syn_edge_start(e, detail) != 0) {
        fprintf(stderr, "synesis-faults: edge: %s\n", detail);
        return 1;
    }
    dprintf(fd, "%u\n", syn_edge_port(e));
    close(fd);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    ev_signal sig;
    ev_signal_init(&sig, edge_sigterm, SIGTERM);
    ev_signal_start(loop, &sig);
    ev_run(loop, 0);
    /* SIGTERM: a graceful restart, CONNECTION_CLOSE to every connection. */
    syn_edge_stop(e, 1);
    ev_signal_stop(loop, &sig);
    syn_edge_free(e);
    ev_loop_destroy(loop);
    return 0;
}

typedef struct edge_proc {
    pid_t pid;
    uint16_t port;
} edge_proc;

/* Starts the edge on port (0: an ephemeral one) and waits until it listens. */
static void edge_spawn(edge_proc *ep, uint16_t port) {
    int p[2];
    if (pipe(p) != 0)
        die("pipe: %s", strerror(errno));
    char sport[16], sfd[16];
    snprintf(sport, sizeof(sport), "%u", port);
    snprintf(sfd, sizeof(sfd), "%d", p[1]);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        close(p[0]);
        execl(opt.self, opt.self, "--edge-child", sport, opt.pki, sfd, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    char line[32];
    size_t got = 0;
    for (;;) { /* the port line, or EOF if it failed */
        ssize_t n = read(p[0], line + got, sizeof(line) - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
        if (memchr(line, '\n', got))
            break;
    }
    close(p[0]);
    line[got] = 0;
    if (!got)
        die("the edge did not start (port %u)", port);
    ep->pid = pid;
    ep->port = (uint16_t)atoi(line);
}

/* Stops the edge: SIGTERM (graceful: CONNECTION_CLOSE to every connection) or SIGKILL. */
static void edge_halt(edge_proc *ep, int sig) {
    if (ep->pid <= 0)
        return;
    kill(ep->pid, sig);
    while (waitpid(ep->pid, NULL, 0) < 0 && errno == EINTR)
        ;
    ep->pid = 0;
}

/* ---- scenarios ---- */

enum {
    F_NONE,      /* impairments (possibly none) from the start to the end */
    F_REBIND,    /* NAT rebinding every arg seconds */
    F_MTU,       /* MTU 1500, then 1280 mid-transfer */
    F_BLACKHOLE, /* everything dropped for arg seconds mid-transfer */
    F_RESTART,   /* the edge stopped gracefully mid-transfer, restarted EDGE_DOWNTIME later */
    F_KILL,      /* the edge SIGKILLed mid-transfer, restarted EDGE_DOWNTIME later */
};

typedef struct workload {
    unsigned requests;
    size_t max_request;
    unsigned inflight;
    unsigned streams;
    uint64_t stream_bytes; /* each way, per stream */
    double request_timeout;
    double deadline; /* of the whole scenario */
} workload;

typedef struct scenario {
    const char *name;
    const char *title;
    const char *proxy; /* exactly what the proxy does */
    int kind;
    syn_fault_dir dir; /* both directions, from the start */
    double arg;
    int quick;       /* in --quick */
    int slow;        /* the 1 Mbit/s link: the workload scaled down */
    double deadline; /* seconds, when not the workload's */
    int udp_blocked; /* the tunnel's transport auto, its TCP port the edge's: UDP dropped, TCP open
                      */
} scenario;

static const workload full_load = {2000, 256 * 1024, 16, 4, 32ull << 20, 120, 900};
static const workload slow_load = {200, 32 * 1024, 8, 4, 1024 * 1024, 120, 600};
static const workload quick_load = {200, 64 * 1024, 16, 4, 2ull << 20, 30, 40};

/* The scenarios, in the table's order (one variable each: clang-format 14 cannot align an array
 * of these). */
static const scenario sc_none = {
    .name = "none", .title = "no fault", .proxy = "pass-through", .quick = 1};
static const scenario sc_loss1 = {.name = "loss1",
                                  .title = "1 % random loss",
                                  .proxy = "each datagram dropped with p = 0.01, both ways",
                                  .dir = {.drop = 0.01}};
static const scenario sc_loss5 = {.name = "loss5",
                                  .title = "5 % random loss",
                                  .proxy = "each datagram dropped with p = 0.05, both ways",
                                  .dir = {.drop = 0.05},
                                  .quick = 1};
static const scenario sc_loss20 = {.name = "loss20",
                                   .title = "20 % random loss",
                                   .proxy = "each datagram dropped with p = 0.20, both ways",
                                   .dir = {.drop = 0.20},
                                   .deadline = 2400};
static const scenario sc_burst = {
    .name = "burst",
    .title = "loss in bursts (at most 100 ms)",
    .proxy = "Gilbert model both ways: a burst starts with p = 0.01 per datagram and ends with "
             "p = 0.2 per datagram (mean 5 datagrams; 4.8 % lost overall) or once it has lasted "
             "100 ms",
    .dir = {.burst_start = 0.01, .burst_end = 0.2, .burst_max_ms = 100}
};
static const scenario sc_burst_count = {
    .name = "burstcount",
    .title = "loss in bursts (counted in datagrams only)",
    .proxy = "the same Gilbert model without the time limit, as netem's gemodel: a burst ends only "
             "by the p = 0.2 draw of a datagram, so a sender waiting to retransmit (few datagrams) "
             "meets the same burst for longer",
    .dir = {.burst_start = 0.01, .burst_end = 0.2}
};
static const scenario sc_reorder = {
    .name = "reorder",
    .title = "reordering",
    .proxy = "10 % of datagrams held back until after the next one (at most 50 ms), both ways",
    .dir = {.reorder = 0.10},
    .quick = 1};
static const scenario sc_dup = {.name = "dup",
                                .title = "duplication",
                                .proxy = "10 % of datagrams sent twice, both ways",
                                .dir = {.duplicate = 0.10}};
static const scenario sc_jitter = {
    .name = "jitter",
    .title = "100 ms delay, 50 ms jitter",
    .proxy = "each datagram delayed 100 ms + uniform 0..50 ms, both ways (RTT 200..300 ms); the "
             "jitter reorders",
    .dir = {.delay_ms = 100, .jitter_ms = 50}
};
static const scenario sc_bw1m = {
    .name = "bw1m",
    .title = "1 Mbit/s bandwidth cap",
    .proxy = "1 Mbit/s each way through a 64 KiB FIFO (0.5 s), tail drop; 10 ms delay each way",
    .dir = {.rate_bps = 1e6, .queue_bytes = 64 * 1024, .delay_ms = 10},
    .slow = 1
};
static const scenario sc_rebind = {
    .name = "rebind",
    .title = "NAT rebinding every 2 s",
    .proxy = "a new proxy source port towards the edge every 2 s; datagrams to the old port are "
             "lost",
    .kind = F_REBIND,
    .arg = 2};
static const scenario sc_mtu = {
    .name = "mtu",
    .title = "MTU drop 1500 to 1280",
    .proxy = "link MTU 1500 (UDP payload <= 1472 bytes), then 1280 (payload <= 1252) from 30 % of "
             "the bytes on: larger datagrams silently dropped, both ways",
    .kind = F_MTU,
    .dir = {.mtu = MTU_BEFORE}};
static const scenario sc_blackhole3 = {
    .name = "blackhole3",
    .title = "blackhole 3 s (< idle timeout 6 s)",
    .proxy = "every datagram dropped both ways for 3 s from 30 % of the bytes on",
    .kind = F_BLACKHOLE,
    .arg = 3,
    .quick = 1};
static const scenario sc_blackhole10 = {
    .name = "blackhole10",
    .title = "blackhole 10 s (> idle timeout 6 s)",
    .proxy = "every datagram dropped both ways for 10 s from 30 % of the bytes on",
    .kind = F_BLACKHOLE,
    .arg = 10};
static const scenario sc_restart = {
    .name = "restart",
    .title = "edge restarted",
    .proxy = "the edge process stopped gracefully (CONNECTION_CLOSE) at 30 % of the bytes; a new "
             "one on the same port 1 s later",
    .kind = F_RESTART};
static const scenario sc_kill = {
    .name = "kill",
    .title = "edge SIGKILLed",
    .proxy = "the edge process SIGKILLed at 30 % of the bytes (nothing sent); a new one on the "
             "same port 1 s later",
    .kind = F_KILL,
    .quick = 1};
static const scenario sc_udp_blocked = {
    .name = "udpblocked",
    .title = "UDP dropped, TCP open",
    .proxy =
        "every datagram dropped both ways from the start (the tunnel's UDP never arrives); the "
        "edge's TCP listener reachable directly (transport auto, tcp_port the edge's): the "
        "tunnel falls back to QUIC over TCP after udp_fallback_timeout (3 s)",
    .dir = {.drop = 1.0},
    .udp_blocked = 1};
static const scenario *const scenarios[] = {
    &sc_none,       &sc_loss1,       &sc_loss5,   &sc_loss20, &sc_burst,      &sc_burst_count,
    &sc_reorder,    &sc_dup,         &sc_jitter,  &sc_bw1m,   &sc_rebind,     &sc_mtu,
    &sc_blackhole3, &sc_blackhole10, &sc_restart, &sc_kill,   &sc_udp_blocked};
#define N_SCENARIOS (sizeof(scenarios) / sizeof(scenarios[0]))

static int wanted(const scenario *sc) {
    if (!opt.only)
        return !opt.quick || sc->quick;
    size_t n = strlen(sc->name);
    for (const char *p = opt.only; (p = strstr(p, sc->name)); p += n)
        if ((p == opt.only || p[-1] == ',') && (p[n] == 0 || p[n] == ','))
            return 1;
    return 0;
}

/* ---- one scenario's run ---- */

typedef struct run run;

typedef struct req_rec {
    run *r;
    int calls;
    int src;     /* a SRC download (else an echo) */
    size_t len;  /* request size (SRC: the response's) */
    size_t rlen; /* expected response length */
    uint8_t sha[32];
    double submitted, done_at;
    int hung;
    synesis_request *handle; /* until the callback */
} req_rec;

typedef struct stream_rec {
    run *r;
    int slot;
    synesis_stream *s;
    uint64_t seed;
    uint64_t sent, received;
    int finished, ended, closes, late; /* late: data or end after on_close */
    int status;
    int corrupt_at_set;
    uint64_t corrupt_at;
    EVP_MD_CTX *tx, *rx;
    uint8_t chunk[CHUNK];
    size_t chunk_len, chunk_off;
    int hung;
    double last_progress;
} stream_rec;

#define MAX_CODES 16
typedef struct code_count {
    int code;
    unsigned n;
} code_count;

#define MAX_STREAM_RECS 64
#define MAX_SLOTS 16 /* concurrent streams of a workload, at most */

struct run {
    const scenario *sc;
    const workload *w;
    struct ev_loop *loop;
    synesis_tunnel *t;
    syn_fault_proxy *proxy;
    edge_proc edge;
    uint16_t edge_port;
    uint64_t seed;
    uint8_t *buf; /* a request body */

    /* requests */
    req_rec *reqs;
    size_t *sizes;
    int *kinds;
    unsigned next_req, outstanding, req_done;
    unsigned req_exact, req_failed, req_corrupt, req_double;
    code_count req_codes[MAX_CODES], submit_codes[MAX_CODES];
    unsigned submit_failed;

    /* streams */
    stream_rec *srec[MAX_STREAM_RECS];
    unsigned nsrec;
    unsigned slot_attempts[MAX_SLOTS];
    int slot_active[MAX_SLOTS]; /* a stream of the slot is open */
    int slot_done[MAX_SLOTS];   /* the slot finished (exact, or out of retries) */
    unsigned st_exact, st_failed, st_corrupt, st_double;
    code_count st_codes[MAX_CODES], open_codes[MAX_CODES];
    unsigned open_refused; /* open_stream() refused (no stream, no callback) */

    /* heartbeats */
    unsigned *hb_results; /* per sequence: results seen */
    int *hb_first;        /* per sequence: the first result's status */
    uint8_t *hb_sent;
    size_t hb_cap;
    unsigned hb_n_sent, hb_delivered, hb_lost, hb_refused, hb_double, hb_unsent;

    /* progress and the fault */
    uint64_t rx_bytes, rx_total; /* bytes received so far / expected in all */
    int fault_started, fault_ended;
    double t0, fault_start_t, fault_end_t;
    double connected_after_t, first_ok_t;
    double last_ok_t, longest_stall, last_report;
    unsigned reconnect_transitions;
    int state;
    ev_timer tick, fault_timer, rebind_timer, reconnect_app_timer;
    int finished;
    int cutting;      /* the deadline passed: what is cancelled now is cut off */
    unsigned cut_off; /* requests and streams cancelled at the deadline */
    code_count cut_codes[MAX_CODES];
};

static void add_code(code_count *cc, int code) {
    for (int i = 0; i < MAX_CODES; i++) {
        if (cc[i].n && cc[i].code == code) {
            cc[i].n++;
            return;
        }
        if (!cc[i].n) {
            cc[i].code = code;
            cc[i].n = 1;
            return;
        }
    }
}

static void check_finished(run *r);
static void pump_requests(run *r);
static void open_streams(run *r);

static int can_submit(const run *r) {
    return r->state == SYNESIS_STATE_CONNECTED || r->state == SYNESIS_STATE_CONNECTING ||
           r->state == SYNESIS_STATE_RECONNECTING;
}

/* Progress the application sees: a request completed exactly, stream bytes arrived, a stream
 * completed exactly. The longest gap between two is the scenario's longest stall. */
static void note_ok(run *r, double t) {
    if (r->last_ok_t > 0 && t - r->last_ok_t > r->longest_stall)
        r->longest_stall = t - r->last_ok_t;
    r->last_ok_t = t;
}

static void on_response(synesis_tunnel *t, synesis_request *req, const synesis_response *resp,
                        void *ud) {
    (void)t;
    (void)req;
    req_rec *q = ud;
    run *r = q->r;
    if (++q->calls > 1) {
        r->req_double++;
        return;
    }
    double now = now_s();
    q->done_at = now;
    q->handle = NULL;
    r->outstanding--;
    r->req_done++;
    if (resp->status != 0) {
        r->req_failed++;
        add_code(r->cutting ? r->cut_codes : r->req_codes, resp->status);
    } else {
        uint8_t sha[32];
        SHA256(resp->data, resp->len, sha);
        if (resp->len != q->rlen || memcmp(sha, q->sha, 32) != 0) {
            r->req_corrupt++;
            progress("%s: CORRUPTED response: %zu bytes, expected %zu", r->sc->name, resp->len,
                     q->rlen);
        } else {
            r->req_exact++;
            r->rx_bytes += resp->len;
            note_ok(r, now);
            if (r->fault_ended && !r->first_ok_t && now >= r->fault_end_t &&
                (r->sc->kind != F_MTU ||
                 (q->submitted >= r->fault_start_t && q->rlen >= BIG_RESPONSE)))
                r->first_ok_t = now;
        }
    }
    pump_requests(r);
    check_finished(r);
}

static void pump_requests(run *r) {
    static uint8_t pattern[256 * 1024 + SRC_PERIOD];
    if (!pattern[1])
        for (size_t i = 0; i < sizeof(pattern); i++)
            pattern[i] = (uint8_t)(i % SRC_PERIOD);
    while (!r->finished && r->outstanding < r->w->inflight && r->next_req < r->w->requests &&
           can_submit(r)) {
        unsigned i = r->next_req++;
        req_rec *q = &r->reqs[i];
        q->r = r;
        q->src = r->kinds[i];
        size_t n = r->sizes[i];
        size_t blen;
        if (q->src) {
            blen = (size_t)snprintf((char *)r->buf, 64, "SRC %zu\n", n);
            q->rlen = n;
            SHA256(pattern, n, q->sha);
        } else {
            uint64_t s = r->seed ^ ((uint64_t)i << 32);
            for (size_t k = 0; k < n; k += 8) {
                uint64_t v = rng_next(&s);
                memcpy(r->buf + k, &v, n - k < 8 ? n - k : 8);
            }
            if (n && (r->buf[0] == 'S' || r->buf[0] == 'R'))
                r->buf[0] = 'x'; /* an echo, never a command */
            blen = n;
            q->rlen = n;
            SHA256(r->buf, n, q->sha);
        }
        q->len = n;
        synesis_request_options ro;
        synesis_request_options_init(&ro);
        ro.timeout = r->w->request_timeout;
        ro.max_response_size = 1 << 20;
        ro.queue_while_reconnecting = 1;
        q->submitted = now_s();
        r->outstanding++;
        int rv = synesis_tunnel_request(r->t, r->buf, blen, &ro, on_response, q, &q->handle);
        if (rv != 0) { /* failed cleanly, without a callback (as documented) */
            r->outstanding--;
            q->calls = -1;
            r->submit_failed++;
            r->req_done++;
            add_code(r->submit_codes, rv);
        }
    }
}

/* ---- streams ---- */

static void stream_pump(stream_rec *sr) {
    run *r = sr->r;
    while (sr->s && !sr->finished) {
        if (sr->chunk_off == sr->chunk_len) {
            uint64_t left = r->w->stream_bytes - sr->sent;
            if (!left) {
                synesis_stream_finish(sr->s);
                sr->finished = 1;
                return;
            }
            sr->chunk_len = left < CHUNK ? (size_t)left : CHUNK;
            sr->chunk_off = 0;
            seq_fill(sr->seed, sr->sent, sr->chunk, sr->chunk_len);
        }
        size_t acc = 0;
        int rv = synesis_stream_write(sr->s, sr->chunk + sr->chunk_off,
                                      sr->chunk_len - sr->chunk_off, &acc);
        if (rv != 0 || !acc)
            return; /* WOULD_BLOCK: on_writable follows */
        EVP_DigestUpdate(sr->tx, sr->chunk + sr->chunk_off, acc);
        sr->last_progress = now_s();
        sr->chunk_off += acc;
        sr->sent += acc;
    }
}

static void st_data(synesis_stream *s, const uint8_t *data, size_t len, void *ud) {
    (void)s;
    stream_rec *sr = ud;
    if (sr->closes) {
        sr->late++;
        return;
    }
    static uint8_t expect[CHUNK];
    for (size_t off = 0; off < len;) {
        size_t n = len - off < CHUNK ? len - off : CHUNK;
        seq_fill(sr->seed, sr->received + off, expect, n);
        if (!sr->corrupt_at_set && memcmp(expect, data + off, n) != 0) {
            sr->corrupt_at_set = 1;
            size_t k = 0;
            while (k < n && expect[k] == data[off + k])
                k++;
            sr->corrupt_at = sr->received + off + k;
        }
        off += n;
    }
    EVP_DigestUpdate(sr->rx, data, len);
    sr->received += len;
    sr->last_progress = now_s();
    note_ok(sr->r, sr->last_progress);
    sr->r->rx_bytes += len;
}

static void st_end(synesis_stream *s, void *ud) {
    (void)s;
    stream_rec *sr = ud;
    if (sr->closes)
        sr->late++;
    sr->ended++;
}

static void st_writable(synesis_stream *s, void *ud) {
    (void)s;
    stream_pump(ud);
}

static void st_close(synesis_stream *s, int status, uint64_t code, const char *detail, void *ud) {
    (void)detail;
    (void)s;
    (void)code;
    stream_rec *sr = ud;
    run *r = sr->r;
    if (++sr->closes > 1) {
        r->st_double++;
        return;
    }
    sr->s = NULL;
    sr->status = status;
    r->slot_active[sr->slot] = 0;
    int retry = 0;
    if (status == 0) {
        uint8_t a[32], b[32];
        unsigned la = 0, lb = 0;
        EVP_DigestFinal_ex(sr->tx, a, &la);
        EVP_DigestFinal_ex(sr->rx, b, &lb);
        if (sr->corrupt_at_set || sr->ended != 1 || sr->sent != r->w->stream_bytes ||
            sr->received != sr->sent || memcmp(a, b, 32) != 0) {
            r->st_corrupt++;
            progress(
                "%s: CORRUPTED stream: sent %llu, received %llu, ended %d, first bad byte %lld",
                r->sc->name, (unsigned long long)sr->sent, (unsigned long long)sr->received,
                sr->ended, sr->corrupt_at_set ? (long long)sr->corrupt_at : -1ll);
        } else {
            r->st_exact++;
            note_ok(r, now_s());
        }
    } else {
        if (sr->corrupt_at_set) {
            r->st_corrupt++;
            progress("%s: CORRUPTED bytes in a failed stream at %llu", r->sc->name,
                     (unsigned long long)sr->corrupt_at);
        } else {
            r->st_failed++;
            add_code(r->cutting ? r->cut_codes : r->st_codes, status);
            retry = r->slot_attempts[sr->slot] <= STREAM_RETRIES;
        }
    }
    if (!retry)
        r->slot_done[sr->slot] = 1; /* else the tick opens it again once Connected */
    check_finished(r);
}

static void open_streams(run *r) {
    if (r->finished || r->state != SYNESIS_STATE_CONNECTED)
        return;
    static const synesis_stream_callbacks cb = {.struct_size = sizeof(synesis_stream_callbacks),
                                                .on_data = st_data,
                                                .on_end = st_end,
                                                .on_writable = st_writable,
                                                .on_close = st_close};
    for (unsigned slot = 0; slot < r->w->streams; slot++) {
        if (r->slot_active[slot] || r->slot_done[slot] || r->nsrec >= MAX_STREAM_RECS)
            continue;
        stream_rec *sr = calloc(1, sizeof(*sr));
        if (!sr)
            die("out of memory");
        sr->r = r;
        sr->slot = (int)slot;
        sr->seed = splitmix(r->seed ^ (0x5700u + r->nsrec));
        sr->tx = EVP_MD_CTX_new();
        sr->rx = EVP_MD_CTX_new();
        EVP_DigestInit_ex(sr->tx, EVP_sha256(), NULL);
        EVP_DigestInit_ex(sr->rx, EVP_sha256(), NULL);
        int rv = synesis_tunnel_open_stream(r->t, &cb, sr, &sr->s);
        if (rv != 0) {
            /* Not connected after all (a connection being torn down still reads as Connected
             * from inside its callbacks): no stream, tried again on the next tick. */
            EVP_MD_CTX_free(sr->tx);
            EVP_MD_CTX_free(sr->rx);
            free(sr);
            r->open_refused++;
            add_code(r->open_codes, rv);
            continue;
        }
        r->srec[r->nsrec++] = sr;
        r->slot_attempts[slot]++;
        sr->last_progress = now_s();
        r->slot_active[slot] = 1;
        stream_pump(sr);
    }
}

/* ---- heartbeats ---- */

static void hb_grow(run *r, uint64_t seq) {
    if (seq < r->hb_cap)
        return;
    size_t cap = r->hb_cap ? r->hb_cap : 256;
    while (cap <= seq)
        cap *= 2;
    r->hb_results = realloc(r->hb_results, cap * sizeof(*r->hb_results));
    r->hb_first = realloc(r->hb_first, cap * sizeof(*r->hb_first));
    r->hb_sent = realloc(r->hb_sent, cap);
    if (!r->hb_results || !r->hb_first || !r->hb_sent)
        die("out of memory");
    memset(r->hb_results + r->hb_cap, 0, (cap - r->hb_cap) * sizeof(*r->hb_results));
    memset(r->hb_first + r->hb_cap, 0, (cap - r->hb_cap) * sizeof(*r->hb_first));
    memset(r->hb_sent + r->hb_cap, 0, cap - r->hb_cap);
    r->hb_cap = cap;
}

static void on_heartbeat(synesis_tunnel *t, const synesis_heartbeat_info *info, void *ud) {
    (void)t;
    run *r = ud;
    if (info->status != 0) {
        r->hb_unsent++;
        return;
    }
    hb_grow(r, info->sequence);
    r->hb_sent[info->sequence] = 1;
    r->hb_n_sent++;
}

static void on_heartbeat_result(synesis_tunnel *t, const synesis_heartbeat_info *info, void *ud) {
    (void)t;
    run *r = ud;
    hb_grow(r, info->sequence);
    unsigned n = ++r->hb_results[info->sequence];
    if (n == 1) {
        r->hb_first[info->sequence] = info->status;
        if (info->status == 0)
            r->hb_delivered++;
        else if (info->status == SYNESIS_ERR_HEARTBEAT_REFUSED)
            r->hb_refused++;
        else
            r->hb_lost++;
    } else if (n == 2 && r->hb_first[info->sequence] == 0 &&
               info->status == SYNESIS_ERR_HEARTBEAT_REFUSED) {
        r->hb_delivered--; /* documented: delivered, then refused */
        r->hb_refused++;
    } else {
        r->hb_double++;
    }
}

/* ---- state ---- */

static void app_reconnect_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    run *r = w->data;
    if (r->state == SYNESIS_STATE_FAILED && !r->finished)
        synesis_tunnel_connect(r->t);
}

static void on_state(synesis_tunnel *t, const synesis_tunnel_state *old_state,
                     const synesis_tunnel_state *new_state, void *ud) {
    (void)t;
    run *r = ud;
    r->state = new_state->kind;
    if (opt.verbose)
        progress("%s: %s -> %s %s", r->sc->name, synesis_state_name(old_state->kind),
                 synesis_state_name(new_state->kind), new_state->error_detail);
    if (new_state->kind == SYNESIS_STATE_RECONNECTING && old_state->kind == SYNESIS_STATE_CONNECTED)
        r->reconnect_transitions++;
    if (new_state->kind == SYNESIS_STATE_CONNECTED) {
        if (r->fault_started && !r->connected_after_t && old_state->kind != SYNESIS_STATE_CONNECTED)
            r->connected_after_t = now_s();
        open_streams(r);
        pump_requests(r);
    } else if (new_state->kind == SYNESIS_STATE_FAILED && !r->finished) {
        /* As an application would: try again a little later. */
        ev_timer_stop(r->loop, &r->reconnect_app_timer);
        ev_timer_set(&r->reconnect_app_timer, 1.0, 0.);
        ev_timer_start(r->loop, &r->reconnect_app_timer);
    } else if (new_state->kind == SYNESIS_STATE_CONNECTING) {
        pump_requests(r);
    }
}

/* ---- faults ---- */

static void fault_end(run *r) {
    r->fault_ended = 1;
    r->fault_end_t = now_s();
    if (opt.verbose)
        progress("%s: fault over at %.2f s", r->sc->name, r->fault_end_t - r->t0);
}

static void fault_timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    run *r = w->data;
    switch (r->sc->kind) {
    case F_BLACKHOLE:
        syn_fault_proxy_blackhole(r->proxy, 0);
        fault_end(r);
        break;
    case F_RESTART:
    case F_KILL:
        edge_spawn(&r->edge, r->edge_port);
        fault_end(r);
        break;
    default:
        break;
    }
}

static void rebind_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    run *r = w->data;
    if (syn_fault_proxy_rebind(r->proxy) != 0)
        progress("%s: rebind failed", r->sc->name);
}

static void fault_start(run *r) {
    r->fault_started = 1;
    r->fault_start_t = now_s();
    if (opt.verbose)
        progress("%s: fault at %.2f s", r->sc->name, r->fault_start_t - r->t0);
    switch (r->sc->kind) {
    case F_MTU: {
        syn_fault_dir d = r->sc->dir;
        d.mtu = MTU_AFTER;
        syn_fault_proxy_set(r->proxy, &d, &d);
        fault_end(r); /* it lasts; recovery is counted from its onset */
        break;
    }
    case F_BLACKHOLE:
        syn_fault_proxy_blackhole(r->proxy, 1);
        ev_timer_set(&r->fault_timer, r->sc->arg, 0.);
        ev_timer_start(r->loop, &r->fault_timer);
        break;
    case F_RESTART:
    case F_KILL:
        edge_halt(&r->edge, r->sc->kind == F_KILL ? SIGKILL : SIGTERM);
        ev_timer_set(&r->fault_timer, EDGE_DOWNTIME, 0.);
        ev_timer_start(r->loop, &r->fault_timer);
        break;
    default:
        break;
    }
}

/* ---- the run ---- */

static unsigned open_streams_count(const run *r) {
    unsigned n = 0;
    for (unsigned i = 0; i < r->nsrec; i++)
        if (r->srec[i]->closes == 0)
            n++;
    return n;
}

static void check_finished(run *r) {
    if (r->finished || r->req_done < r->w->requests)
        return;
    for (unsigned slot = 0; slot < r->w->streams; slot++)
        if (!r->slot_done[slot])
            return;
    r->finished = 1;
}

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    run *r = w->data;
    double now = now_s();
    if (!r->fault_started && r->sc->kind >= F_MTU && r->rx_bytes >= FAULT_AT * (double)r->rx_total)
        fault_start(r);
    for (unsigned i = 0; i < r->next_req; i++) {
        req_rec *q = &r->reqs[i];
        if (q->calls == 0 && !q->hung && now > q->submitted + r->w->request_timeout + HUNG_GRACE) {
            q->hung = 1;
            progress("%s: request %u HUNG: no callback %.1f s after its %.0f s timeout",
                     r->sc->name, i, now - q->submitted - r->w->request_timeout,
                     r->w->request_timeout);
        }
    }
    if (now - r->last_report >= 15) {
        r->last_report = now;
        uint64_t srx = 0;
        for (unsigned i = 0; i < r->nsrec; i++)
            srx += r->srec[i]->received;
        progress("%s: %.0f s: %u/%u requests done, %u/%u streams exact, %.1f MiB received on "
                 "streams, %s",
                 r->sc->name, now - r->t0, r->req_done, r->w->requests, r->st_exact, r->w->streams,
                 (double)srx / 1048576, synesis_state_name((synesis_state_kind)r->state));
        if (opt.verbose) {
            for (unsigned i = 0; i < r->nsrec; i++) {
                stream_rec *sr = r->srec[i];
                if (sr->closes == 0)
                    progress("%s:   stream %u: sent %llu, received %llu, buffered %zu, finished %d",
                             r->sc->name, i, (unsigned long long)sr->sent,
                             (unsigned long long)sr->received, synesis_stream_buffered(sr->s),
                             sr->finished);
            }
            char js[2048];
            synesis_tunnel_stats_json(r->t, js, sizeof(js));
            progress("%s: %s", r->sc->name, js);
        }
    }
    pump_requests(r);
    open_streams(r);
    check_finished(r);
}

static void silent_log(synesis_log_level level, const char *msg, void *ud) {
    (void)ud;
    fprintf(stderr, "  [tunnel %d] %s\n", (int)level, msg);
}

static char cfg_cert[512], cfg_key[512], cfg_ca[512], cfg_url[64];

static void codes_str(char *out, size_t cap, const char *prefix, const code_count *cc, int md) {
    size_t len = strlen(out);
    for (int i = 0; i < MAX_CODES && cc[i].n; i++) {
        const char *name = synesis_error_name(cc[i].code);
        if (strncmp(name, "SYNESIS_ERR_", 12) == 0)
            name += 12;
        int n = snprintf(out + len, cap - len, md ? "%s%s `%s` %u" : "%s%s:%s:%u",
                         len ? (md ? ", " : ",") : "", prefix, name, cc[i].n);
        if (n < 0 || (size_t)n >= cap - len)
            break;
        len += (size_t)n;
    }
}

typedef struct result {
    char json[4096];
    char md[2048];
    int bad;
} result;

static void describe_load(char *out, size_t cap, const workload *w) {
    char rs[32], ss[32];
    if (w->max_request >= 1024)
        snprintf(rs, sizeof(rs), "%zu KiB", w->max_request / 1024);
    else
        snprintf(rs, sizeof(rs), "%zu B", w->max_request);
    if (w->stream_bytes >= (1u << 20))
        snprintf(ss, sizeof(ss), "%llu MiB", (unsigned long long)(w->stream_bytes >> 20));
    else
        snprintf(ss, sizeof(ss), "%llu KiB", (unsigned long long)(w->stream_bytes >> 10));
    snprintf(out, cap, "%u req 0 B..%s (%u in flight), %u streams x %s each way", w->requests, rs,
             w->inflight, w->streams, ss);
}

static void run_scenario(const scenario *sc, unsigned index, result *res) {
    workload wl = opt.quick ? quick_load : sc->slow ? slow_load : full_load;
    if (opt.requests >= 0)
        wl.requests = (unsigned)opt.requests;
    if (opt.stream_kib >= 0)
        wl.stream_bytes = (uint64_t)opt.stream_kib * 1024;
    const workload *w = &wl;
    if (w->streams > MAX_SLOTS)
        die("at most %d streams", MAX_SLOTS);
    run *r = calloc(1, sizeof(*r));
    if (!r)
        die("out of memory");
    r->sc = sc;
    r->w = w;
    r->seed = splitmix(opt.seed * 1000 + index);
    r->buf = malloc(w->max_request + 64);
    r->reqs = calloc(w->requests, sizeof(*r->reqs));
    r->sizes = calloc(w->requests, sizeof(*r->sizes));
    r->kinds = calloc(w->requests, sizeof(*r->kinds));
    if (!r->buf || !r->reqs || !r->sizes || !r->kinds)
        die("out of memory");
    uint64_t s = r->seed;
    for (unsigned i = 0; i < w->requests; i++) {
        r->sizes[i] = (size_t)(rng_next(&s) % (w->max_request + 1));
        r->kinds[i] = rng_next(&s) % 4 == 0;
        r->rx_total += r->sizes[i];
    }
    r->rx_total += (uint64_t)w->streams * w->stream_bytes;

    edge_spawn(&r->edge, 0);
    r->edge_port = r->edge.port;
    r->loop = ev_loop_new(EVFLAG_AUTO);
    struct sockaddr_in up = {.sin_family = AF_INET, .sin_port = htons(r->edge_port)};
    struct sockaddr_in lis = {.sin_family = AF_INET};
    up.sin_addr.s_addr = lis.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    r->proxy = syn_fault_proxy_new(r->loop, (struct sockaddr *)&lis, sizeof(lis),
                                   (struct sockaddr *)&up, sizeof(up), r->seed);
    if (!r->proxy)
        die("proxy: %s", strerror(errno));
    syn_fault_proxy_set(r->proxy, &sc->dir, &sc->dir);

    snprintf(cfg_cert, sizeof(cfg_cert), "%s/device.pem", opt.pki);
    snprintf(cfg_key, sizeof(cfg_key), "%s/device.key", opt.pki);
    snprintf(cfg_ca, sizeof(cfg_ca), "%s/ca.pem", opt.pki);
    snprintf(cfg_url, sizeof(cfg_url), "quic://127.0.0.1:%u", syn_fault_proxy_port(r->proxy));
    synesis_tunnel_config c;
    synesis_tunnel_config_init(&c);
    c.cloud_url = cfg_url;
    c.server_name = "localhost";
    c.cert_path = cfg_cert;
    c.key_path = cfg_key;
    c.ca_path = cfg_ca;
    c.use_system_trust = 0;
    c.idle_timeout = IDLE_TIMEOUT;
    c.keep_alive_interval = KEEP_ALIVE;
    c.handshake_timeout = 5;
    c.heartbeat_interval = HEARTBEAT_INTERVAL;
    c.reconnect_initial_delay = 0.25;
    c.reconnect_max_delay = 2;
    c.reconnect_max_attempts = 1000;
    c.retry_initial_connect = 1;
    c.request_timeout = w->request_timeout;
    c.vitals_disk_path = NULL;
    if (sc->udp_blocked) {
        c.transport = SYNESIS_TRANSPORT_AUTO;
        c.tcp_port = r->edge_port; /* (the URL's port is the proxy's, on UDP only) */
    }
    if (opt.verbose) {
        c.log = silent_log;
        c.log_level = SYNESIS_LOG_INFO;
    }
    synesis_tunnel_callbacks cb = {.struct_size = sizeof(synesis_tunnel_callbacks),
                                   .on_state = on_state,
                                   .on_heartbeat = on_heartbeat,
                                   .on_heartbeat_result = on_heartbeat_result};
    char detail[512];
    if (synesis_tunnel_new(&r->t, r->loop, &c, &cb, r, detail, sizeof(detail)) != 0)
        die("tunnel: %s", detail);

    ev_timer_init(&r->tick, tick_cb, 0.01, 0.01);
    r->tick.data = r;
    ev_timer_start(r->loop, &r->tick);
    ev_init(&r->fault_timer, fault_timer_cb);
    r->fault_timer.data = r;
    ev_init(&r->reconnect_app_timer, app_reconnect_cb);
    r->reconnect_app_timer.data = r;
    if (sc->kind == F_REBIND) {
        ev_timer_init(&r->rebind_timer, rebind_cb, sc->arg, sc->arg);
        r->rebind_timer.data = r;
        ev_timer_start(r->loop, &r->rebind_timer);
    }

    char load[160];
    describe_load(load, sizeof(load), w);
    progress("%s: %s; %s", sc->name, sc->title, load);
    r->t0 = r->last_report = now_s();
    if (synesis_tunnel_connect(r->t) != 0)
        die("connect refused");
    double deadline = sc->deadline > 0 && !opt.quick ? sc->deadline : w->deadline;
    double end = r->t0 + deadline;
    while (!r->finished && now_s() < end)
        ev_run(r->loop, EVRUN_ONCE);
    double elapsed = now_s() - r->t0;
    int timed_out = !r->finished;
    r->finished = 1; /* no more submissions or reopenings */
    ev_timer_stop(r->loop, &r->rebind_timer);
    ev_timer_stop(r->loop, &r->fault_timer);
    ev_timer_stop(r->loop, &r->reconnect_app_timer);
    if (r->sc->kind == F_BLACKHOLE)
        syn_fault_proxy_blackhole(r->proxy, 0);
    if (!r->edge.pid)
        edge_spawn(&r->edge, r->edge_port);

    /* Hung: a request without its callback HUNG_GRACE past its own timeout (the tick marks
     * those), a stream without progress for as long. What is still open at the deadline otherwise
     * is cut off: cancelled here, as an application giving up would. */
    unsigned req_hung = 0, st_hung = 0;
    double now = now_s();
    r->cutting = 1;
    for (unsigned i = 0; i < r->next_req; i++) {
        req_rec *q = &r->reqs[i];
        if (q->calls == 0 && now > q->submitted + w->request_timeout + HUNG_GRACE)
            q->hung = 1;
        req_hung += (unsigned)q->hung;
        if (q->calls == 0 && q->handle) {
            r->cut_off++;
            synesis_request_cancel(q->handle);
        }
    }
    for (unsigned i = 0; i < r->nsrec; i++) {
        stream_rec *sr = r->srec[i];
        if (sr->closes != 0)
            continue;
        if (now - sr->last_progress > w->request_timeout + HUNG_GRACE) {
            sr->hung = 1;
            st_hung++;
            progress("%s: stream %u HUNG: no progress for %.0f s: sent %llu, received %llu",
                     sc->name, i, now - sr->last_progress, (unsigned long long)sr->sent,
                     (unsigned long long)sr->received);
        }
        r->cut_off++;
        synesis_stream_reset(sr->s, 0x13);
    }
    if (timed_out)
        progress("%s: the deadline (%.0f s) passed with %u requests and %u streams open", sc->name,
                 deadline, r->outstanding, open_streams_count(r));

    synesis_tunnel_stats ts;
    synesis_tunnel_get_stats(r->t, &ts);
    /* Close as an application would; heartbeats still in flight are followed while it lingers. */
    if (r->state != SYNESIS_STATE_DISCONNECTED && r->state != SYNESIS_STATE_FAILED)
        synesis_tunnel_disconnect(r->t);
    double linger_end = now_s() + c.close_linger + 0.5;
    while (now_s() < linger_end)
        ev_run(r->loop, EVRUN_ONCE);
    unsigned hb_missing = 0;
    for (size_t q = 0; q < r->hb_cap; q++)
        if (r->hb_sent[q] && r->hb_results[q] == 0)
            hb_missing++;
    synesis_tunnel_free(r->t);
    r->t = NULL;
    double free_end = now_s() + 0.1;
    while (now_s() < free_end)
        ev_run(r->loop, EVRUN_NOWAIT);

    /* Lost: no callback at all, even after the tunnel was freed (free cancels what is left). */
    unsigned req_lost = 0, st_lost = 0, late = 0;
    for (unsigned i = 0; i < r->next_req; i++)
        req_lost += r->reqs[i].calls == 0;
    for (unsigned i = 0; i < r->nsrec; i++) {
        st_lost += r->srec[i]->closes == 0;
        late += (unsigned)r->srec[i]->late;
    }
    unsigned never_sent = r->w->requests - r->next_req;

    syn_fault_stats ps;
    syn_fault_proxy_stats(r->proxy, &ps);
    unsigned corrupted = r->req_corrupt + r->st_corrupt;
    unsigned lost = req_lost + st_lost + hb_missing;
    unsigned dbl = r->req_double + r->st_double + r->hb_double + late;
    unsigned hung = req_hung + st_hung;
    res->bad = corrupted || lost || dbl || hung;

    char codes_json[512] = "", codes_md[512] = "";
    codes_str(codes_json, sizeof(codes_json), "req", r->req_codes, 0);
    codes_str(codes_json, sizeof(codes_json), "submit", r->submit_codes, 0);
    codes_str(codes_json, sizeof(codes_json), "stream", r->st_codes, 0);
    codes_str(codes_json, sizeof(codes_json), "open", r->open_codes, 0);
    codes_str(codes_json, sizeof(codes_json), "deadline", r->cut_codes, 0);
    codes_str(codes_md, sizeof(codes_md), "req", r->req_codes, 1);
    codes_str(codes_md, sizeof(codes_md), "submit", r->submit_codes, 1);
    codes_str(codes_md, sizeof(codes_md), "stream", r->st_codes, 1);
    codes_str(codes_md, sizeof(codes_md), "open", r->open_codes, 1);
    codes_str(codes_md, sizeof(codes_md), "cut off at the deadline:", r->cut_codes, 1);

    double rec_conn =
        r->connected_after_t && r->fault_ended && r->connected_after_t >= r->fault_end_t
            ? (r->connected_after_t - r->fault_end_t) * 1e3
            : -1;
    double rec_ok = r->first_ok_t ? (r->first_ok_t - r->fault_end_t) * 1e3 : -1;

    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "bench", "faults");
    cJSON_AddStringToObject(o, "scenario", sc->name);
    cJSON_AddStringToObject(o, "title", sc->title);
    cJSON_AddStringToObject(o, "proxy", sc->proxy);
    cJSON *jw = cJSON_AddObjectToObject(o, "workload");
    cJSON_AddNumberToObject(jw, "requests", w->requests);
    cJSON_AddNumberToObject(jw, "max_request", (double)w->max_request);
    cJSON_AddNumberToObject(jw, "inflight", w->inflight);
    cJSON_AddNumberToObject(jw, "streams", w->streams);
    cJSON_AddNumberToObject(jw, "stream_bytes", (double)w->stream_bytes);
    cJSON_AddNumberToObject(jw, "request_timeout_s", w->request_timeout);
    cJSON_AddNumberToObject(jw, "deadline_s", deadline);
    cJSON *jr = cJSON_AddObjectToObject(o, "requests");
    cJSON_AddNumberToObject(jr, "exact", r->req_exact);
    cJSON_AddNumberToObject(jr, "failed", r->req_failed);
    cJSON_AddNumberToObject(jr, "submit_refused", r->submit_failed);
    cJSON_AddNumberToObject(jr, "never_submitted", never_sent);
    cJSON_AddNumberToObject(jr, "corrupted", r->req_corrupt);
    cJSON_AddNumberToObject(jr, "lost", req_lost);
    cJSON_AddNumberToObject(jr, "double", r->req_double);
    cJSON_AddNumberToObject(jr, "hung", req_hung);
    cJSON *js = cJSON_AddObjectToObject(o, "streams");
    cJSON_AddNumberToObject(js, "opened", r->nsrec);
    cJSON_AddNumberToObject(js, "open_refused", r->open_refused);
    cJSON_AddNumberToObject(js, "exact", r->st_exact);
    cJSON_AddNumberToObject(js, "failed", r->st_failed);
    cJSON_AddNumberToObject(js, "corrupted", r->st_corrupt);
    cJSON_AddNumberToObject(js, "lost", st_lost);
    cJSON_AddNumberToObject(js, "double", r->st_double);
    cJSON_AddNumberToObject(js, "late_callbacks", late);
    cJSON_AddNumberToObject(js, "hung", st_hung);
    cJSON *jh = cJSON_AddObjectToObject(o, "heartbeats");
    cJSON_AddNumberToObject(jh, "sent", r->hb_n_sent);
    cJSON_AddNumberToObject(jh, "delivered", r->hb_delivered);
    cJSON_AddNumberToObject(jh, "lost", r->hb_lost);
    cJSON_AddNumberToObject(jh, "refused", r->hb_refused);
    cJSON_AddNumberToObject(jh, "unsent", r->hb_unsent);
    cJSON_AddNumberToObject(jh, "no_result", hb_missing);
    cJSON_AddNumberToObject(jh, "double", r->hb_double);
    cJSON_AddStringToObject(o, "codes", codes_json);
    cJSON_AddNumberToObject(o, "corrupted", corrupted);
    cJSON_AddNumberToObject(o, "lost", lost);
    cJSON_AddNumberToObject(o, "double", dbl);
    cJSON_AddNumberToObject(o, "hung", hung);
    cJSON_AddNumberToObject(o, "cut_off_at_deadline", r->cut_off);
    cJSON_AddNumberToObject(o, "reconnects", (double)ts.reconnects);
    cJSON_AddNumberToObject(o, "tcp_fallbacks", (double)ts.tcp_fallbacks);
    cJSON_AddNumberToObject(o, "tcp_packets_sent", (double)ts.tcp_packets_sent);
    cJSON_AddNumberToObject(o, "connections", (double)ts.connections);
    cJSON_AddNumberToObject(o, "recovery_connected_ms", rec_conn);
    cJSON_AddNumberToObject(o, "recovery_first_ok_ms", rec_ok);
    cJSON_AddNumberToObject(o, "longest_stall_ms", r->longest_stall * 1e3);
    cJSON_AddNumberToObject(o, "elapsed_s", elapsed);
    cJSON_AddBoolToObject(o, "finished", !timed_out);
    cJSON_AddNumberToObject(o, "packets_sent", (double)ts.packets_sent);
    cJSON_AddNumberToObject(o, "packets_lost", (double)ts.packets_lost);
    cJSON *jp = cJSON_AddObjectToObject(o, "proxy_stats");
    cJSON_AddNumberToObject(jp, "fwd_up", (double)ps.fwd_up);
    cJSON_AddNumberToObject(jp, "fwd_down", (double)ps.fwd_down);
    cJSON_AddNumberToObject(jp, "dropped_up", (double)ps.dropped_up);
    cJSON_AddNumberToObject(jp, "dropped_down", (double)ps.dropped_down);
    cJSON_AddNumberToObject(jp, "duplicated", (double)ps.duplicated);
    cJSON_AddNumberToObject(jp, "reordered", (double)ps.reordered);
    cJSON_AddNumberToObject(jp, "burst_dropped", (double)ps.burst_dropped);
    cJSON_AddNumberToObject(jp, "too_big", (double)ps.too_big);
    cJSON_AddNumberToObject(jp, "tail_dropped", (double)ps.tail_dropped);
    cJSON_AddNumberToObject(jp, "overflowed", (double)ps.overflowed);
    char *line = cJSON_PrintUnformatted(o);
    snprintf(res->json, sizeof(res->json), "%s", line ? line : "{}");
    cJSON_free(line);
    cJSON_Delete(o);

    char rec[96] = "n/a";
    if (sc->kind >= F_MTU) {
        char a[40] = "", b[48] = "";
        if (rec_conn >= 0)
            snprintf(a, sizeof(a), "Connected %.1f s", rec_conn / 1e3);
        if (rec_ok >= 0)
            snprintf(b, sizeof(b), "%sfirst success %.1f s", a[0] ? ", " : "", rec_ok / 1e3);
        else
            snprintf(b, sizeof(b), "%sno success", a[0] ? ", " : "");
        snprintf(rec, sizeof(rec), "%s%s", a, b);
    }
    char streams_ok[48];
    snprintf(streams_ok, sizeof(streams_ok), "%u/%u", r->st_exact, w->streams);
    snprintf(res->md, sizeof(res->md),
             "| %s | %s%s | %u/%u | %s | %u/%u (%u lost%s) | %s | %u | %u | %u | %u | %llu | %s | "
             "%.1f | %.0f |",
             sc->title, sc->slow ? "**scaled down:** " : "", load, r->req_exact, w->requests,
             streams_ok, r->hb_delivered, r->hb_n_sent, r->hb_lost,
             r->hb_refused ? ", some refused" : "", codes_md[0] ? codes_md : "none", corrupted,
             lost, dbl, hung, (unsigned long long)ts.reconnects, rec, r->longest_stall, elapsed);

    /* Clean up. */
    for (unsigned i = 0; i < r->nsrec; i++) {
        EVP_MD_CTX_free(r->srec[i]->tx);
        EVP_MD_CTX_free(r->srec[i]->rx);
        free(r->srec[i]);
    }
    ev_timer_stop(r->loop, &r->tick);
    syn_fault_proxy_free(r->proxy);
    ev_loop_destroy(r->loop);
    edge_halt(&r->edge, SIGTERM);
    free(r->hb_results);
    free(r->hb_first);
    free(r->hb_sent);
    free(r->buf);
    free(r->reqs);
    free(r->sizes);
    free(r->kinds);
    free(r);
}

static void usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s [--quick] [--only NAME[,NAME...]] [--list] [--seed N] [--out FILE]\n"
            "       [--md FILE] [--pki DIR] [--verbose] [--requests N] [--stream-kib N]\n",
            argv0);
    exit(2);
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "--edge-child") == 0)
        return edge_child_main(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    static char self[4096];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (sl <= 0)
        die("cannot find this program (/proc/self/exe)");
    self[sl] = 0;
    opt.self = self;
    const char *out = NULL, *md = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            opt.quick = 1;
        else if (strcmp(argv[i], "--verbose") == 0)
            opt.verbose = 1;
        else if (strcmp(argv[i], "--list") == 0)
            opt.list = 1;
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            opt.only = argv[++i];
        else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
            opt.seed = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc)
            out = argv[++i];
        else if (strcmp(argv[i], "--md") == 0 && i + 1 < argc)
            md = argv[++i];
        else if (strcmp(argv[i], "--requests") == 0 && i + 1 < argc)
            opt.requests = atol(argv[++i]);
        else if (strcmp(argv[i], "--stream-kib") == 0 && i + 1 < argc)
            opt.stream_kib = atol(argv[++i]);
        else if (strcmp(argv[i], "--pki") == 0 && i + 1 < argc)
            opt.pki = argv[++i];
        else
            usage(argv[0]);
    }
    if (opt.list) {
        for (size_t i = 0; i < N_SCENARIOS; i++)
            printf("%-12s %s%s\n", scenarios[i]->name, scenarios[i]->title,
                   scenarios[i]->quick ? " (--quick)" : "");
        return 0;
    }
    if (out && !(opt.out = fopen(out, "w")))
        die("%s: %s", out, strerror(errno));
    if (md && !(opt.md = fopen(md, "w")))
        die("%s: %s", md, strerror(errno));
    if (!opt.pki)
        opt.pki = bench_pki("faults");

    result *results = calloc(N_SCENARIOS, sizeof(*results));
    const scenario **ran = calloc(N_SCENARIOS, sizeof(*ran));
    size_t nran = 0;
    int bad = 0;
    double t0 = now_s();
    for (size_t i = 0; i < N_SCENARIOS; i++) {
        if (!wanted(scenarios[i]))
            continue;
        result *res = &results[nran];
        run_scenario(scenarios[i], (unsigned)i, res);
        ran[nran++] = scenarios[i];
        printf("%s\n", res->json);
        fflush(stdout);
        if (opt.out) {
            fprintf(opt.out, "%s\n", res->json);
            fflush(opt.out);
        }
        if (res->bad) {
            bad = 1;
            progress("%s: INVARIANT VIOLATED (corrupted/lost/double/hung)", scenarios[i]->name);
        }
    }
    const char *head =
        "| scenario | workload | requests exact | streams exact | heartbeats delivered | failed "
        "cleanly (codes) | corrupted | lost | double | hung | reconnects | recovery | longest "
        "stall s | s |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    FILE *outs[2] = {stdout, opt.md};
    for (int k = 0; k < 2; k++) {
        if (!outs[k])
            continue;
        fprintf(outs[k], "\n%s", head);
        for (size_t i = 0; i < nran; i++)
            fprintf(outs[k], "%s\n", results[i].md);
        fprintf(outs[k], "\nWhat the proxy did:\n\n");
        for (size_t i = 0; i < nran; i++)
            fprintf(outs[k], "- %s: %s\n", ran[i]->title, ran[i]->proxy);
    }
    progress("%zu scenarios in %.0f s: %s", nran, now_s() - t0,
             bad ? "INVARIANTS VIOLATED" : "no corruption, loss, double callback or hang");
    if (opt.out)
        fclose(opt.out);
    if (opt.md)
        fclose(opt.md);
    free(results);
    free(ran);
    return bad ? 1 : 0;
}

/*
 * test_alloc_fail: allocation failure along a whole tunnel cycle.
 *
 * The cycle (one process each): synesis_tunnel_new, connect, three requests (echo of 100 and
 * 5,000 bytes, "SRC 70000"), the first heartbeat (with application vitals added and replaced),
 * synesis_tunnel_stats_json, the edge kicks the device and the tunnel reconnects through its
 * backoff path, one more request, disconnect (the close linger), synesis_tunnel_free,
 * ev_loop_destroy. The reference edge runs in a child process (tests/soak/soak_edge.c) and never
 * fails. A run is clean when the child exits normally (no sanitizer report, no crash, no hang)
 * and every error code the cycle met is one of those docs/reliability.md lists for allocation
 * failure; after a failure the tunnel must also go idle (no watcher left) after free.
 *
 * Every allocation the device side makes while the cycle runs is counted, and the n-th one fails
 * (mode "single"), or the n-th and every one after it (mode "persistent"):
 *   - the library's own malloc/calloc/realloc/strdup, and ngtcp2's (the library passes no
 *     ngtcp2_mem, so ngtcp2 allocates through ngtcp2_mem_default, that is malloc & co. inside the
 *     statically linked libngtcp2.a) and ngtcp2_crypto_ossl's: this program is linked with
 *     -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup, which sends every such call
 *     of every object in the link (the library's, the bundled archives') to __wrap_*;
 *   - OpenSSL's, through CRYPTO_set_mem_functions() (set first thing in main, before any
 *     OpenSSL allocation; CRYPTO_malloc then raises ERR_R_MALLOC_FAILURE like a real failure);
 *   - cJSON's (heartbeats, statistics), through cJSON_InitHooks().
 * libev's own allocations (its watcher arrays; libev aborts on failure by design) and glibc's
 * internal ones are not counted. OpenSSL's once-only process initialisation runs before the
 * counting starts (--include-init counts it too).
 *
 * Each n runs in a fork()ed child of a parent that never touched OpenSSL, so every run starts
 * from a clean process, and a crash, hang (alarm) or sanitizer report (ASan/LSan exit status)
 * is that n's alone. Under the asan preset LSan checks every child at its exit.
 *
 * Usage:
 *   test_alloc_fail                     CI: count N, then a sample in single mode (every
 *                                       allocation through malloc & co., a third of cJSON's,
 *                                       --sample 100 of OpenSSL's), --sample-persistent 40 in
 *                                       persistent mode, and the regression cases
 *   test_alloc_fail --full              every n from 1 to N, single mode, then persistent mode
 *   test_alloc_fail --mode single|persistent [--from A] [--to B] [--step K]
 *   test_alloc_fail --regressions       the regression cases only
 *   test_alloc_fail --at PHASE+K[:persistent] ...   e.g. --at connect+989
 *   test_alloc_fail --count             only count N (a few runs), by allocator and phase
 *   options: --verbose (a line per n), --include-init, --timeout-scale X; SYNESIS_ALLOC_LOG=3 in
 *   the environment puts the tunnel's log (and deeper stacks) in a bad run's report
 * Exits 0 when every run ended cleanly (see docs/reliability.md, "Allocation failure").
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <ev.h>
#include <execinfo.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "soak_edge.h"
#include "synesis/request.h"
#include "synesis/tunnel.h"

/* ---- allocation accounting ---- */

enum { COMP_WRAP, COMP_OSSL, COMP_CJSON };
static const char *const comp_names[] = {"malloc", "openssl", "cjson"};

#define MAX_FRAMES 64
#define MAX_LOGGED 32768

/* The cycle's phases: a failing allocation can also be named by its phase and its rank within
 * it ("connect+1234"), which stays put when allocations are added or removed in other phases. */
enum {
    PH_NEW,       /* synesis_tunnel_new */
    PH_CONNECT,   /* connect: the first connection */
    PH_REQUESTS,  /* three requests, the first heartbeat */
    PH_VITALS,    /* inside that heartbeat: on_vitals is called */
    PH_HEARTBEAT, /* inside that heartbeat: on_vitals has returned (the frame is built) */
    PH_STATS,     /* synesis_tunnel_stats_json */
    PH_RECONNECT, /* the edge kicks, the tunnel reconnects, one request */
    PH_TEARDOWN,  /* disconnect, free */
    PH_COUNT
};
static const char *const phase_names[PH_COUNT] = {"new",       "connect", "requests",  "vitals",
                                                  "heartbeat", "stats",   "reconnect", "teardown"};

static struct {
    int armed;
    int persistent;
    int target_phase; /* fail the target_k-th allocation of this phase (-1: fail_at instead) */
    uint64_t target_k;
    uint64_t count;   /* allocations while armed */
    uint64_t fail_at; /* 0: never */
    uint64_t failed;  /* allocations refused */
    int hit_comp;
    const char *hit_file; /* OpenSSL's file:line of the first refused one */
    int hit_line;
    void *frames[MAX_FRAMES];
    int nframes;
    uint8_t comps[MAX_LOGGED]; /* which allocator made each allocation */
} A;

static int should_fail(int comp, const char *file, int line) {
    if (!A.armed)
        return 0;
    A.count++;
    if (A.count <= MAX_LOGGED)
        A.comps[A.count - 1] = (uint8_t)comp;
    if (!A.fail_at || A.count < A.fail_at || (A.count > A.fail_at && !A.persistent))
        return 0;
    if (!A.failed++) {
        A.hit_comp = comp;
        A.hit_file = file;
        A.hit_line = line;
        A.armed = 0; /* backtrace() may allocate (once, loading libgcc) */
        A.nframes = backtrace(A.frames, MAX_FRAMES);
        A.armed = 1;
    }
    return 1;
}

void *__real_malloc(size_t n);
void *__real_calloc(size_t m, size_t n);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t m, size_t n);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);

void *__wrap_malloc(size_t n) { return should_fail(COMP_WRAP, NULL, 0) ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t m, size_t n) {
    return should_fail(COMP_WRAP, NULL, 0) ? NULL : __real_calloc(m, n);
}
void *__wrap_realloc(void *p, size_t n) {
    return should_fail(COMP_WRAP, NULL, 0) ? NULL : __real_realloc(p, n);
}
char *__wrap_strdup(const char *s) {
    return should_fail(COMP_WRAP, NULL, 0) ? NULL : __real_strdup(s);
}

static void *ossl_malloc(size_t n, const char *file, int line) {
    if (n == 0)
        return NULL; /* what CRYPTO_malloc itself does */
    return should_fail(COMP_OSSL, file, line) ? NULL : __real_malloc(n);
}
static void *ossl_realloc(void *p, size_t n, const char *file, int line) {
    if (!p) /* as OpenSSL's own: CRYPTO_malloc, which queues ERR_R_MALLOC_FAILURE on failure */
        return CRYPTO_malloc(n, file, line);
    if (n == 0) {
        free(p);
        return NULL;
    }
    return should_fail(COMP_OSSL, file, line) ? NULL : __real_realloc(p, n);
}
static void ossl_free(void *p, const char *file, int line) {
    (void)file;
    (void)line;
    free(p);
}

static void *cj_malloc(size_t n) {
    return should_fail(COMP_CJSON, NULL, 0) ? NULL : __real_malloc(n);
}
static void cj_free(void *p) { free(p); }

/* ASan's symbolizer when the program is built with it. */
extern void __sanitizer_symbolize_pc(void *pc, const char *fmt, char *out, size_t len)
    __attribute__((weak));

/* ---- one run ---- */

#define MAX_CODES 24

typedef struct run_result {
    uint64_t count, failed;
    int hit_comp;
    int completed;        /* the whole cycle worked: every request answered, reconnected */
    int codes[MAX_CODES]; /* distinct SYNESIS_ERR_* seen, in order */
    char code_where[MAX_CODES][40];
    int ncodes;
    char timeout[32];              /* stage that did not finish in time ("" none) */
    char site[4000];               /* the first refused allocation: where */
    char caller[320];              /* the innermost frame in the library's own sources */
    char first_detail[256];        /* the detail string of the first code, when it has one */
    double seconds;                /* how long the run took (the parent's clock) */
    uint64_t phase_base[PH_COUNT]; /* allocations before each phase began (UINT64_MAX: never) */
    uint8_t comps[MAX_LOGGED];     /* the allocator of each allocation (COMP_*) */
} run_result;

typedef struct run_ctx {
    struct ev_loop *loop;
    synesis_tunnel *t;
    soak_edge *edge;
    run_result *res;
    uint64_t connected; /* transitions into Connected */
    int ended;          /* Failed, or Disconnected not asked for */
    int pending;        /* requests awaiting their callback */
    int req_ok, req_sent;
    int kicked; /* the edge's kick is expected to end the connection */
    int vitals_seen;
    double tscale;
} run_ctx;

static void note_detail(run_result *r, int code, const char *where, const char *detail) {
    if (!code)
        return;
    if (!r->ncodes && detail)
        syn_copy_str(r->first_detail, sizeof(r->first_detail), detail);
    for (int i = 0; i < r->ncodes; i++)
        if (r->codes[i] == code)
            return;
    if (r->ncodes < MAX_CODES) {
        r->codes[r->ncodes] = code;
        snprintf(r->code_where[r->ncodes], sizeof(r->code_where[0]), "%s", where);
        r->ncodes++;
    }
}

static void note(run_result *r, int code, const char *where) { note_detail(r, code, where, NULL); }

static void on_state(synesis_tunnel *t, const synesis_tunnel_state *o,
                     const synesis_tunnel_state *n, void *ud) {
    (void)t;
    (void)o;
    run_ctx *c = ud;
    if (n->kind == SYNESIS_STATE_CONNECTED)
        c->connected++;
    if (n->kind == SYNESIS_STATE_FAILED)
        c->ended = 1;
    if (c->kicked && n->kind == SYNESIS_STATE_RECONNECTING &&
        n->error == SYNESIS_ERR_CLOSED_BY_PEER && strstr(n->error_detail, "kicked")) {
        c->kicked = 0; /* what the cycle asked for */
        return;
    }
    /* OpenSSL sends no certificate when it runs out of memory checking ours (tls.c): the edge's
     * refusal says so in its detail. */
    int not_sent = n->error == SYNESIS_ERR_CLIENT_CERT_REJECTED &&
                   strstr(n->error_detail, "was not sent") != NULL;
    note_detail(c->res, n->error,
                n->kind == SYNESIS_STATE_FAILED
                    ? (not_sent ? "state:Failed:cert_not_sent" : "state:Failed")
                    : (not_sent ? "state:Reconnecting:cert_not_sent" : "state:Reconnecting"),
                n->error_detail);
}

static void on_heartbeat(synesis_tunnel *t, const synesis_heartbeat_info *i, void *ud) {
    (void)t;
    note(((run_ctx *)ud)->res, i->status, "heartbeat");
}

/* The application's own vitals: one added, then replaced, and a string. */
static void phase(int p);

static void on_vitals(synesis_tunnel *t, synesis_vitals *v, void *ud) {
    (void)t;
    run_ctx *c = ud;
    run_result *r = c->res;
    int first = !c->vitals_seen++;
    if (first)
        phase(PH_VITALS);
    note(r, synesis_vitals_add_number(v, "cycle", 1), "vitals_add");
    note(r, synesis_vitals_add_number(v, "cycle", 2), "vitals_replace");
    note(r, synesis_vitals_add_string(v, "role", "alloc-test"), "vitals_add_string");
    if (first)
        phase(PH_HEARTBEAT);
}

static void on_heartbeat_result(synesis_tunnel *t, const synesis_heartbeat_info *i, void *ud) {
    (void)t;
    /* A heartbeat still unacknowledged when the edge kicks the device, or when the linger ends,
     * is lost whatever the allocator does. */
    if (i->status == SYNESIS_ERR_CONNECTION_LOST)
        return;
    note(((run_ctx *)ud)->res, i->status, "heartbeat_result");
}

typedef struct req_slot {
    run_ctx *c;
    int src;
    size_t expect;
    const uint8_t *body;
} req_slot;

static uint8_t body[8192];

static void on_response(synesis_tunnel *t, synesis_request *req, const synesis_response *r,
                        void *ud) {
    (void)t;
    (void)req;
    req_slot *s = ud;
    run_ctx *c = s->c;
    c->pending--;
    if (r->status != 0) {
        note_detail(c->res, r->status, "response", r->detail);
        return;
    }
    int good = r->len == s->expect;
    for (size_t i = 0; good && i < r->len; i++)
        good = r->data[i] == (s->src ? (uint8_t)(i % 251) : s->body[i]);
    if (good)
        c->req_ok++;
    else
        note(c->res, SYNESIS_ERR_INTERNAL, "response:mismatch");
}

static void send_req(run_ctx *c, req_slot *s, int src, size_t n) {
    char line[32];
    s->c = c;
    s->src = src;
    s->expect = n;
    s->body = body;
    const void *data = body;
    size_t len = n;
    if (src) {
        len = (size_t)snprintf(line, sizeof(line), "SRC %zu\n", n);
        data = line;
    }
    c->req_sent++;
    int rv = synesis_tunnel_request(c->t, data, len, NULL, on_response, s, NULL);
    if (rv != 0)
        note(c->res, rv, "request()");
    else
        c->pending++;
}

static run_result *cur_res;

static void phase(int p) {
    cur_res->phase_base[p] = A.count;
    if (A.target_phase == p)
        A.fail_at = A.count + A.target_k;
}

static int pred_up_or_ended(void *ud) {
    run_ctx *c = ud;
    return c->ended || synesis_tunnel_is_connected(c->t);
}

static int pred_no_pending(void *ud) { return ((run_ctx *)ud)->pending == 0; }

typedef struct reconnect_wait {
    run_ctx *c;
    uint64_t target;
} reconnect_wait;

static int pred_reconnected(void *ud) {
    reconnect_wait *w = ud;
    return w->c->ended || (w->c->connected >= w->target && synesis_tunnel_is_connected(w->c->t));
}

static int wait_for(run_ctx *c, int (*pred)(void *), void *ud, double seconds, const char *stage) {
    if (soak_run_until(c->loop, pred, ud, seconds * c->tscale))
        return 1;
    if (!c->res->timeout[0])
        snprintf(c->res->timeout, sizeof(c->res->timeout), "%s", stage);
    return 0;
}

static void log_stderr(synesis_log_level level, const char *msg, void *ud) {
    (void)ud;
    fprintf(stderr, "[%d] %s\n", (int)level, msg);
}

static void run_cycle(soak_edge *edge, run_result *res, double tscale, int include_init) {
    static char url[64];
    snprintf(url, sizeof(url), "quic://127.0.0.1:%u", edge->port);
    synesis_tunnel_config cfg;
    synesis_tunnel_config_init(&cfg);
    cfg.cloud_url = url;
    cfg.server_name = "localhost";
    cfg.cert_path = soak_path(edge->pki_dir, "device.pem");
    cfg.key_path = soak_path(edge->pki_dir, "device.key");
    cfg.ca_path = soak_path(edge->pki_dir, "ca.pem");
    cfg.use_system_trust = 0;
    cfg.handshake_timeout = 2 * tscale;
    cfg.idle_timeout = 5 * tscale;
    cfg.keep_alive_interval = 1 * tscale;
    cfg.heartbeat_interval = 30; /* the first one right after Connected, no second */
    cfg.reconnect_initial_delay = 0;
    cfg.reconnect_max_delay = 0.01;
    cfg.reconnect_jitter = 0;
    cfg.reconnect_max_attempts = 3;
    cfg.close_linger = 0.1 * tscale;
    if (getenv("SYNESIS_ALLOC_LOG")) { /* the tunnel's log in the child's stderr (shown for BAD) */
        cfg.log = log_stderr;
        cfg.log_level = (synesis_log_level)atoi(getenv("SYNESIS_ALLOC_LOG"));
    }
    for (size_t i = 0; i < sizeof(body); i++)
        body[i] = (uint8_t)('a' + i % 26);

    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    if (!include_init && syn_crypto_init() != 0) {
        fprintf(stderr, "alloc: crypto initialisation failed\n");
        _exit(3);
    }
    run_ctx c = {.loop = loop, .edge = edge, .res = res, .tscale = tscale};
    synesis_tunnel_callbacks cb = {.struct_size = sizeof(synesis_tunnel_callbacks),
                                   .on_state = on_state,
                                   .on_heartbeat = on_heartbeat,
                                   .on_vitals = on_vitals,
                                   .on_heartbeat_result = on_heartbeat_result};
    req_slot slots[4];
    char detail[512];

    cur_res = res;
    for (int i = 0; i < PH_COUNT; i++)
        res->phase_base[i] = UINT64_MAX;
    A.armed = 1;
    phase(PH_NEW);
    int rv = synesis_tunnel_new(&c.t, loop, &cfg, &cb, &c, detail, sizeof(detail));
    if (rv != 0) {
        note_detail(res, rv, "tunnel_new()", detail);
        goto done;
    }
    phase(PH_CONNECT);
    if ((rv = synesis_tunnel_connect(c.t)) != 0) {
        note(res, rv, "connect()");
        goto out;
    }
    if (!wait_for(&c, pred_up_or_ended, &c, 5, "connect") || c.ended)
        goto out;
    phase(PH_REQUESTS);
    send_req(&c, &slots[0], 0, 100);
    send_req(&c, &slots[1], 0, 5000);
    send_req(&c, &slots[2], 1, 70000);
    if (!wait_for(&c, pred_no_pending, &c, 5, "requests"))
        goto out;
    char json[4096];
    phase(PH_STATS);
    rv = synesis_tunnel_stats_json(c.t, json, sizeof(json));
    if (rv < 0)
        note(res, rv, "stats_json()");
    else if (!strstr(json, "\"state\""))
        note(res, SYNESIS_ERR_INTERNAL, "stats_json:partial");

    /* The edge kicks the device: the tunnel reconnects (Reconnecting, then Connected). */
    reconnect_wait w = {&c, c.connected + 1};
    phase(PH_RECONNECT);
    c.kicked = 1;
    soak_edge_kick(edge);
    if (!wait_for(&c, pred_reconnected, &w, 6, "reconnect") || c.ended)
        goto out;
    send_req(&c, &slots[3], 0, 3000);
    if (!wait_for(&c, pred_no_pending, &c, 5, "request_after"))
        goto out;
    res->completed = c.req_ok == 4;

out:
    phase(PH_TEARDOWN);
    /* The close linger ends within close_linger; then nothing of the tunnel's stays active. */
    if (synesis_tunnel_disconnect(c.t) == 0 && !soak_run_idle(loop, 2 * tscale) && !res->timeout[0])
        snprintf(res->timeout, sizeof(res->timeout), "linger");
    synesis_tunnel_free(c.t);
    if (!soak_run_idle(loop, 2 * tscale) && !res->timeout[0])
        snprintf(res->timeout, sizeof(res->timeout), "idle after free");
done:
    A.armed = 0;
    ev_loop_destroy(loop);
    res->count = A.count;
    memcpy(res->comps, A.comps, sizeof(res->comps));
    res->failed = A.failed;
    res->hit_comp = A.hit_comp;
    if (A.failed) {
        /* Where the first refused allocation came from: its innermost frames, and the innermost
         * one in the library's own sources. */
        size_t off = 0;
        if (A.hit_file)
            off +=
                (size_t)snprintf(res->site, sizeof(res->site), "%s:%d; ", A.hit_file, A.hit_line);
        for (int i = 1; i < A.nframes; i++) {
            char fn[256] = "";
            if (__sanitizer_symbolize_pc)
                __sanitizer_symbolize_pc((char *)A.frames[i] - 1, "%f %s:%l", fn, sizeof(fn));
            else
                snprintf(fn, sizeof(fn), "%p", A.frames[i]);
            if (strncmp(fn, "should_fail", 11) == 0 || strncmp(fn, "__wrap_", 7) == 0 ||
                strncmp(fn, "ossl_malloc", 11) == 0 || strncmp(fn, "ossl_realloc", 12) == 0 ||
                strncmp(fn, "cj_malloc", 9) == 0)
                continue;
            if (!res->caller[0] && strstr(fn, SYNESIS_SRC_DIR "/") &&
                !strstr(fn, SYNESIS_SRC_DIR "/edge/"))
                snprintf(res->caller, sizeof(res->caller), "%s", fn);
            if (off < sizeof(res->site) - 1 && i < (getenv("SYNESIS_ALLOC_LOG") ? 24 : 8))
                off += (size_t)snprintf(res->site + off, sizeof(res->site) - off, "%s < ", fn);
        }
        if (off > sizeof(res->site) - 1)
            off = sizeof(res->site) - 1;
        res->site[off] = 0;
    }
}

/* ---- the sweep ---- */

typedef struct sweep {
    soak_edge edge;
    double tscale;
    int include_init, verbose;
    char errfile[600];
    uint64_t phase_base[PH_COUNT]; /* of a successful cycle (count_total) */
    uint8_t comps[MAX_LOGGED];     /* its allocators, allocation by allocation */
    /* outcomes */
    uint64_t runs, runs_hit, completed, clean_ok, bad;
    uint64_t by_code[64];
    int code_list[64];
    char code_example[64][400];
    int ncode;
} sweep;

/* Runs the cycle in a child, failing allocation n (0: none) or, with target_phase >= 0, the
 * target_k-th of that phase. */
static int child_run(sweep *sw, uint64_t n, int persistent, int target_phase, uint64_t target_k,
                     run_result *out, int *status) {
    int p[2];
    if (pipe(p) != 0) {
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
        close(p[0]);
        int fd = open(sw->errfile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd >= 0) {
            dup2(fd, 2);
            close(fd);
        }
        alarm((unsigned)(60 * sw->tscale));
        static run_result r;
        memset(&r, 0, sizeof(r));
        A.fail_at = target_phase >= 0 ? 0 : n;
        A.target_phase = target_phase;
        A.target_k = target_k;
        A.persistent = persistent;
        run_cycle(&sw->edge, &r, sw->tscale, sw->include_init);
        ssize_t w = write(p[1], &r, sizeof(r));
        (void)w;
        close(p[1]);
        exit(0); /* LSan checks here (atexit) */
    }
    close(p[1]);
    double t0 = soak_now();
    memset(out, 0, sizeof(*out));
    size_t got = 0;
    while (got < sizeof(*out)) {
        ssize_t r = read(p[0], (char *)out + got, sizeof(*out) - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(p[0]);
    while (waitpid(pid, status, 0) < 0 && errno == EINTR)
        ;
    out->seconds = soak_now() - t0;
    return got == sizeof(*out);
}

static void print_errfile(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof(line), f) && n++ < 80)
        fputs(line, stderr);
    fclose(f);
}

/* Codes a run may end with when an allocation fails (docs/reliability.md). */
static int code_expected(int code) {
    switch (code) {
    case SYNESIS_ERR_NOMEM:           /* the library's own report */
    case SYNESIS_ERR_CRYPTO:          /* an OpenSSL call failed (its queue says malloc) */
    case SYNESIS_ERR_TLS_HANDSHAKE:   /* OpenSSL failed inside the handshake */
    case SYNESIS_ERR_CONNECTION_LOST: /* a request in flight when the connection ended */
    case SYNESIS_ERR_MAX_RECONNECTS:  /* persistent: every attempt failed (the last error named) */
        return 1;
    default:
        return 0;
    }
}

/* "phase+k" for allocation n of a successful cycle. */
static void phase_label(const sweep *sw, uint64_t n, char *out, size_t len) {
    int p = 0;
    for (int i = 0; i < PH_COUNT; i++)
        if (sw->phase_base[i] != UINT64_MAX && n > sw->phase_base[i])
            p = i;
    snprintf(out, len, "%s+%" PRIu64, phase_names[p], n - sw->phase_base[p]);
}

static void record(sweep *sw, uint64_t n, int persistent, const run_result *r, int ok_read,
                   int status) {
    char label[48];
    phase_label(sw, n, label, sizeof(label));
    sw->runs++;
    if (r->failed)
        sw->runs_hit++;
    int bad = 0;
    char why[200] = "";
    if (!ok_read || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        bad = 1;
        if (WIFSIGNALED(status))
            snprintf(why, sizeof(why), "killed by signal %d%s", WTERMSIG(status),
                     WTERMSIG(status) == SIGALRM ? " (hang)" : "");
        else
            snprintf(why, sizeof(why), "exit status %d (sanitizer report?)",
                     WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    } else if (r->timeout[0]) {
        bad = 1;
        snprintf(why, sizeof(why), "stage '%s' did not finish", r->timeout);
    } else {
        for (int i = 0; i < r->ncodes; i++)
            if (!code_expected(r->codes[i]) && !(r->codes[i] == SYNESIS_ERR_CLIENT_CERT_REJECTED &&
                                                 strstr(r->code_where[i], "cert_not_sent"))) {
                bad = 1;
                snprintf(why, sizeof(why), "unexpected %s (%s)", synesis_error_name(r->codes[i]),
                         r->code_where[i]);
                break;
            }
        if (!bad && !persistent && !r->completed && !r->ncodes) {
            bad = 1;
            snprintf(why, sizeof(why), "the cycle stopped without an error code");
        }
    }
    if (r->completed)
        sw->completed++;
    if (!r->ncodes && r->completed)
        sw->clean_ok++;
    /* The outcome's code: the first one seen (0 = none). */
    int code = ok_read && r->ncodes ? r->codes[0] : 0;
    int k = 0;
    for (; k < sw->ncode; k++)
        if (sw->code_list[k] == code)
            break;
    if (k == sw->ncode && k < 64) {
        sw->code_list[k] = code;
        snprintf(sw->code_example[k], sizeof(sw->code_example[k]), "n=%" PRIu64 " %s [%s] %.300s",
                 n, r->ncodes ? r->code_where[0] : "", comp_names[r->hit_comp],
                 r->caller[0] ? r->caller : r->site);
        sw->ncode++;
    }
    if (k < 64)
        sw->by_code[k]++;
    if (sw->verbose || bad) {
        char codes[400] = "";
        size_t off = 0;
        for (int i = 0; i < r->ncodes && off < sizeof(codes) - 1; i++)
            off += (size_t)snprintf(codes + off, sizeof(codes) - off, "%s%s@%s", i ? "," : "",
                                    synesis_error_name(r->codes[i]), r->code_where[i]);
        fprintf(bad ? stderr : stdout,
                "%s n=%" PRIu64 " (%s) %s: %.2f s, allocs %" PRIu64 " refused %" PRIu64
                " [%s] %s%s%s codes {%s} \"%s\" site: %s | caller: %s\n",
                bad ? "BAD" : "run", n, label, persistent ? "persistent" : "single", r->seconds,
                r->count, r->failed, comp_names[r->hit_comp],
                r->completed ? "completed" : "stopped", r->timeout[0] ? " timeout:" : "",
                r->timeout, codes, r->first_detail, r->site, r->caller);
        if (bad) {
            fprintf(stderr, "BAD n=%" PRIu64 ": %s; the child's stderr:\n", n, why);
            print_errfile(sw->errfile);
        }
    }
    if (bad)
        sw->bad++;
}

static uint64_t count_total(sweep *sw, int runs) {
    uint64_t max = 0, min = UINT64_MAX;
    for (int i = 0; i < runs; i++) {
        run_result r;
        int status;
        if (!child_run(sw, 0, 0, -1, 0, &r, &status) || !WIFEXITED(status) ||
            WEXITSTATUS(status) != 0 || !r.completed || r.ncodes) {
            fprintf(stderr, "alloc: the cycle does not complete without failures:\n");
            record(sw, 0, 0, &r, 1, status);
            print_errfile(sw->errfile);
            exit(1);
        }
        if (i == 0) {
            memcpy(sw->phase_base, r.phase_base, sizeof(sw->phase_base));
            memcpy(sw->comps, r.comps, sizeof(sw->comps));
        }
        if (r.count > max)
            max = r.count;
        if (r.count < min)
            min = r.count;
    }
    printf("alloc: a successful cycle makes N = %" PRIu64 " allocations (%" PRIu64 " to %" PRIu64
           " over %d runs)\n",
           max, min, max, runs);
    uint64_t by_comp[3] = {0};
    for (uint64_t n = 0; n < max && n < MAX_LOGGED; n++)
        by_comp[sw->comps[n] < 3 ? sw->comps[n] : 0]++;
    printf("alloc: by allocator: malloc & co. (the library, ngtcp2, ngtcp2_crypto_ossl) %" PRIu64
           ", OpenSSL %" PRIu64 ", cJSON %" PRIu64 "\n",
           by_comp[COMP_WRAP], by_comp[COMP_OSSL], by_comp[COMP_CJSON]);
    printf("alloc: phases start at allocation:");
    for (int p = 0; p < PH_COUNT; p++)
        printf(" %s %" PRIu64, phase_names[p], sw->phase_base[p] + 1);
    printf("\n");
    fflush(stdout);
    return max;
}

static void report(sweep *sw, const char *what, double secs) {
    printf("alloc: %s: %" PRIu64 " runs (%" PRIu64 " with a refused allocation) in %.0f s: %" PRIu64
           " completed the cycle (%" PRIu64 " without any error code), %" PRIu64 " bad\n",
           what, sw->runs, sw->runs_hit, secs, sw->completed, sw->clean_ok, sw->bad);
    for (int k = 0; k < sw->ncode; k++)
        printf("alloc:   first code %-28s %6" PRIu64 "  e.g. %s\n",
               sw->code_list[k] ? synesis_error_name(sw->code_list[k]) : "(none)", sw->by_code[k],
               sw->code_example[k]);
    fflush(stdout);
}

static void reset_outcomes(sweep *sw) {
    sw->runs = sw->runs_hit = sw->completed = sw->clean_ok = 0;
    sw->ncode = 0;
    memset(sw->by_code, 0, sizeof(sw->by_code));
}

static uint64_t sweep_range(sweep *sw, int persistent, uint64_t from, uint64_t to, uint64_t step) {
    reset_outcomes(sw);
    uint64_t bad0 = sw->bad;
    double t0 = soak_now();
    for (uint64_t n = from; n <= to; n += step) {
        run_result r;
        int status;
        int ok = child_run(sw, n, persistent, -1, 0, &r, &status);
        record(sw, n, persistent, &r, ok, status);
    }
    char what[128];
    snprintf(what, sizeof(what), "%s, n = %" PRIu64 "..%" PRIu64 " step %" PRIu64,
             persistent ? "persistent (n-th and all after fail)" : "single (n-th fails)", from, to,
             step);
    report(sw, what, soak_now() - t0);
    return sw->bad - bad0;
}

/* CI's sample: every allocation through malloc & co. (the library's own, ngtcp2's and
 * ngtcp2_crypto_ossl's: the few hundred where the library's error paths are), one in three of
 * cJSON's, and n_ossl of OpenSSL's spread evenly (OpenSSL makes some 97 % of them). */
static uint64_t sweep_sample(sweep *sw, uint64_t n_total, uint64_t n_ossl) {
    reset_outcomes(sw);
    uint64_t bad0 = sw->bad, ossl = 0, cj = 0, picked = 0;
    for (uint64_t n = 1; n <= n_total && n <= MAX_LOGGED; n++)
        ossl += sw->comps[n - 1] == COMP_OSSL;
    uint64_t every = n_ossl ? (ossl + n_ossl - 1) / n_ossl : UINT64_MAX, seen = 0;
    double t0 = soak_now();
    for (uint64_t n = 1; n <= n_total && n <= MAX_LOGGED; n++) {
        int c = sw->comps[n - 1];
        int take = c == COMP_WRAP || (c == COMP_CJSON && cj++ % 3 == 0) ||
                   (c == COMP_OSSL && seen++ % every == every / 2);
        if (!take)
            continue;
        picked++;
        run_result r;
        int status;
        int ok = child_run(sw, n, 0, -1, 0, &r, &status);
        record(sw, n, 0, &r, ok, status);
    }
    char what[160];
    snprintf(what, sizeof(what),
             "single (n-th fails), sample of %" PRIu64
             " n (every malloc & co., 1/3 of cJSON, %" PRIu64 " of OpenSSL)",
             picked, n_ossl);
    report(sw, what, soak_now() - t0);
    return sw->bad - bad0;
}

/* Regression cases: allocations whose failure exposed a defect of the library, now fixed
 * (docs/reliability.md, "Allocation failure"), named by phase and rank within it, so that they
 * stay on their site when allocations elsewhere in the cycle come and go. */
typedef struct regression {
    int phase;
    uint64_t k;
    int persistent;
    const char *defect; /* what the run gave before the fix */
} regression;

static const regression regressions[] = {
  /* single mode; in brackets the sweep's n on the tree of docs/reliability.md */
    {PH_NEW,       55,   0, "BAD_CERTIFICATE ('nested asn1 error') parsing the device certificate [55]"},
    {PH_NEW,       121,  0, "KEY_MISMATCH: the device certificate kept without its key [121]"          },
    {PH_NEW,       191,  0, "UNSUPPORTED_KEY/QUIC: a name lost from OpenSSL's algorithm store [191]"   },
    {PH_NEW,       4391, 0, "UNSUPPORTED_KEY ('EC (explicit curve parameters)') [4391]"                },
    {PH_NEW,       6494, 0, "CA_UNREADABLE for an allocation failure reading the CA file [6494]"       },
    {PH_NEW,       6599, 0, "PEER_UNTRUSTED on every handshake: CA stored without its key [6599]"      },
    {PH_NEW,       6767, 0, "PEER_UNTRUSTED on every handshake: CA key 'too weak' (size 0) [6767]"     },
    {PH_NEW,       6786, 0, "CA extensions cached at load: a failure there re-parses [6786]"           },
    {PH_CONNECT,   295,  0, "QUIC: packet protection could not allocate (callback failure) [7113]"     },
    {PH_CONNECT,   454,  0, "TLS_HANDSHAKE: ngtcp2_crypto's own allocation, nothing queued [7272]"     },
    {PH_CONNECT,   989,  0, "PEER_UNTRUSTED ('EE certificate key too weak') [7807]"                    },
    {PH_CONNECT,   1190, 0, "PEER_UNTRUSTED ('unable to get local issuer certificate') [8008]"         },
    {PH_REQUESTS,  9,    0, "QUIC ('cannot open a stream'): ngtcp2 could not allocate it [8699]"       },
    {PH_VITALS,    4,    0, "vitals: replacing a member (formerly cJSON_Replace...) [8730]"            },
    {PH_HEARTBEAT, 3,    0, "HEARTBEAT_REFUSED: a heartbeat without its device_id [8736]"              },
    {PH_HEARTBEAT, 8,    0, "HEARTBEAT_REFUSED and a leaked vitals object ('vitals' key) [8741]"       },
    {PH_STATS,     61,   0, "stats_json: an object without its \"state\" member [8818]"                },
 /* persistent mode */
    {PH_NEW,       3745, 1, "NO_PRIVATE_KEY ('cannot be decoded: unsupported') [3745]"                 },
    {PH_CONNECT,   21,   1,
     "CRYPTO: ngtcp2_crypto_ossl_ctx_new failed (it fails only to allocate) [6839]"                    },
    {PH_CONNECT,   304,  1, "CRYPTO: ngtcp2 could not allocate in a key-installation callback [7122]"  },
    {PH_CONNECT,   755,  1, "TLS_HANDSHAKE 'internal error': the same, seen by OpenSSL [7573]"         },
    {PH_REQUESTS,  11,   1, "IDLE_TIMEOUT: no receive buffers, datagrams dropped until it [6382]"      },
};

/* Runs one phase-relative case; returns 1 when it went bad. */
static uint64_t run_at(sweep *sw, int phase, uint64_t k, int persistent, const char *what) {
    run_result r;
    int status;
    uint64_t bad0 = sw->bad;
    int ok = child_run(sw, 0, persistent, phase, k, &r, &status);
    uint64_t n = sw->phase_base[phase] + k;
    printf("alloc: %s+%" PRIu64 " (n=%" PRIu64 ") %s%s%s: %s%s\n", phase_names[phase], k, n,
           persistent ? "persistent" : "single", what ? ", before the fix: " : "", what ? what : "",
           ok && r.ncodes ? synesis_error_name(r.codes[0]) : "no error code",
           r.completed ? ", cycle completed" : "");
    record(sw, n, persistent, &r, ok, status);
    return sw->bad - bad0;
}

static uint64_t run_regressions(sweep *sw) {
    reset_outcomes(sw);
    uint64_t bad = 0;
    for (size_t i = 0; i < sizeof(regressions) / sizeof(regressions[0]); i++)
        bad += run_at(sw, regressions[i].phase, regressions[i].k, regressions[i].persistent,
                      regressions[i].defect);
    printf("alloc: %zu regression cases, %" PRIu64 " bad\n",
           sizeof(regressions) / sizeof(regressions[0]), bad);
    return bad;
}

/* "phase+k" or "phase+k:persistent" */
static int parse_at(const char *spec, int *phase, uint64_t *k, int *persistent) {
    for (int p = 0; p < PH_COUNT; p++) {
        size_t l = strlen(phase_names[p]);
        if (strncmp(spec, phase_names[p], l) == 0 && spec[l] == '+') {
            char *end;
            *phase = p;
            *k = strtoull(spec + l + 1, &end, 10);
            *persistent = strcmp(end, ":persistent") == 0;
            return *k > 0 && (!*end || *persistent) ? 0 : -1;
        }
    }
    return -1;
}

static void usage(void) {
    fprintf(stderr,
            "usage: test_alloc_fail [--full | --count | --regressions | --at PHASE+K[:persistent]"
            " ... |\n"
            "       --mode single|persistent --from A --to B [--step K]]\n"
            "       [--sample N] [--sample-persistent N] [--verbose] [--include-init] "
            "[--timeout-scale X]\n");
    exit(2);
}

int main(int argc, char **argv) {
    /* Before anything can make OpenSSL allocate. */
    if (!CRYPTO_set_mem_functions(ossl_malloc, ossl_realloc, ossl_free)) {
        fprintf(stderr, "alloc: CRYPTO_set_mem_functions refused (OpenSSL allocated already)\n");
        return 1;
    }
    cJSON_Hooks hooks = {cj_malloc, cj_free};
    cJSON_InitHooks(&hooks);

    static sweep sw;
    sw.tscale = 1;
    int full = 0, count_only = 0, mode = -1, regressions_only = 0;
    const char *at[32];
    int nat = 0;
    uint64_t from = 1, to = 0, step = 1, sample = 100, sample_p = 40;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--full") == 0)
            full = 1;
        else if (strcmp(a, "--count") == 0)
            count_only = 1;
        else if (strcmp(a, "--verbose") == 0)
            sw.verbose = 1;
        else if (strcmp(a, "--regressions") == 0)
            regressions_only = 1;
        else if (v && strcmp(a, "--at") == 0 && nat < 32)
            at[nat++] = v, i++;
        else if (strcmp(a, "--include-init") == 0)
            sw.include_init = 1;
        else if (v && strcmp(a, "--mode") == 0)
            mode = strcmp(v, "persistent") == 0, i++;
        else if (v && strcmp(a, "--from") == 0)
            from = strtoull(v, NULL, 10), i++;
        else if (v && strcmp(a, "--to") == 0)
            to = strtoull(v, NULL, 10), i++;
        else if (v && strcmp(a, "--step") == 0)
            step = strtoull(v, NULL, 10), i++;
        else if (v && strcmp(a, "--sample") == 0)
            sample = strtoull(v, NULL, 10), i++;
        else if (v && strcmp(a, "--sample-persistent") == 0)
            sample_p = strtoull(v, NULL, 10), i++;
        else if (v && strcmp(a, "--timeout-scale") == 0)
            sw.tscale = strtod(v, NULL), i++;
        else
            usage();
    }
    if (!step || !(sw.tscale >= 1) || !from)
        usage();

    const char *base = getenv("SYNESIS_TEST_TMP");
    snprintf(sw.errfile, sizeof(sw.errfile), "%s/alloc-fail-%d.stderr",
             base && *base ? base : "/tmp", (int)getpid());
    soak_edge_options eo = {
        .device_id = "alloc", .idle_timeout = 3, .hs_timeout = 2, .retry_never = 1};
    soak_edge_start(&sw.edge, &eo);

    uint64_t n_total = count_total(&sw, 3);
    uint64_t bad = 0;
    double t0 = soak_now();
    if (count_only) {
        /* nothing more */
    } else if (nat) {
        reset_outcomes(&sw);
        for (int i = 0; i < nat; i++) {
            int ph, pers;
            uint64_t k;
            if (parse_at(at[i], &ph, &k, &pers) != 0)
                usage();
            bad += run_at(&sw, ph, k, pers, NULL);
        }
    } else if (regressions_only) {
        bad += run_regressions(&sw);
    } else if (mode >= 0) {
        bad += sweep_range(&sw, mode, from, to ? to : n_total, step);
    } else if (full) {
        bad += sweep_range(&sw, 0, 1, n_total, 1);
        bad += sweep_range(&sw, 1, 1, n_total, 1);
    } else {
        /* CI: an even sample of the whole cycle in both modes. */
        uint64_t s2 = sample_p ? (n_total + sample_p - 1) / sample_p : n_total + 1;
        if (sample)
            bad += sweep_sample(&sw, n_total, sample);
        if (sample_p)
            bad += sweep_range(&sw, 1, 1 + s2 / 2, n_total, s2 ? s2 : 1);
        bad += run_regressions(&sw);
    }
    if (soak_edge_stop(&sw.edge) != 0)
        bad++;
    unlink(sw.errfile);
    printf("alloc: %s (%" PRIu64 " bad runs) in %.0f s\n", bad ? "FAIL" : "PASS", bad,
           soak_now() - t0);
    return bad ? 1 : 0;
}

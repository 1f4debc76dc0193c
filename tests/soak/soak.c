/*
 * synesis-soak: a long run of one device against the reference edge over real UDP loopback.
 *
 *   1. Requests: one tunnel, N requests (default 100,000) of mixed sizes, a window of them in
 *      flight; echoes (the edge returns the request) and "SRC n" (n bytes of the edge's pattern);
 *      every response is checked byte for byte.
 *   2. Reconnect cycles: C cycles (default 1,000), each ending the connection through one of the
 *      tunnel's real paths and waiting for it to come back: the edge kicks the device (most
 *      cycles), the edge restarts gracefully or as a crash (the tunnel notices by its idle
 *      timeout), the application disconnects and connects again, or frees the tunnel and makes a
 *      new one; after each, one request checked.
 *
 * The edge runs in a child process (tests/soak/soak_edge.c), so the resident set size reported
 * (after a warm-up and at the end of each phase) is the device's alone. Prints a summary and one
 * JSON line; exits 0 when every request succeeded and every cycle reconnected (and, with
 * --max-rss-growth-kb, when the growth after warm-up stayed within it).
 *
 * Not a timed test: the full run takes minutes (see docs/reliability.md). ctest runs
 * `synesis-soak --quick` (50 cycles, 2,000 requests).
 */
#include <ev.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "soak_edge.h"
#include "synesis/request.h"
#include "synesis/tunnel.h"

#define MAX_WINDOW 256
#define MAX_REQ (256 * 1024 + 64)
#define SRC_PERIOD 251

typedef struct soak soak;

typedef struct slot {
    soak *s;
    int busy;
    int src;       /* an SRC request: the response is expect bytes of the pattern */
    size_t expect; /* SRC: response length */
    uint8_t *req;  /* echo: the request, which is the expected response */
    size_t req_len;
} slot;

enum { CY_KICK, CY_GRACEFUL, CY_HARD, CY_DISCONNECT, CY_RENEW, CY_KINDS };
static const char *const cycle_names[CY_KINDS] = {
    "kick", "edge_restart_graceful", "edge_restart_crash", "disconnect_connect", "free_new"};

struct soak {
    struct ev_loop *loop;
    soak_edge edge;
    synesis_tunnel *t;
    synesis_tunnel_config cfg;
    uint64_t rng;
    double tscale;

    slot slots[MAX_WINDOW];
    size_t window;
    uint64_t to_issue; /* requests still to send in the current batch */
    uint64_t issued, ok, failed, in_flight;
    uint64_t bytes_up, bytes_down;
    int fail_printed;
    int verbose;

    uint64_t connected_events; /* transitions into Connected, over every tunnel */
    uint64_t reconnects_total; /* stats.reconnects of tunnels already freed */
    uint64_t connections_total;
    uint64_t heartbeats_sent, heartbeats_delivered;
    uint64_t cycles_done[CY_KINDS], cycle_timeouts;
};

static uint64_t rnd(soak *s) {
    /* xorshift64* */
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return s->rng * 2685821657736338717ull;
}

/* Mixed sizes: most small, some of a few packets, a few of many. */
static size_t pick_size(soak *s) {
    uint64_t r = rnd(s) % 1000;
    if (r < 600)
        return (size_t)(rnd(s) % 257);
    if (r < 900)
        return 257 + (size_t)(rnd(s) % (4096 - 256));
    if (r < 990)
        return 4097 + (size_t)(rnd(s) % (65536 - 4096));
    return 65537 + (size_t)(rnd(s) % (262144 - 65536));
}

static void on_response(synesis_tunnel *t, synesis_request *req, const synesis_response *r,
                        void *ud);

static int issue(slot *sl) {
    soak *s = sl->s;
    if (rnd(s) % 10 < 3) {
        sl->src = 1;
        sl->expect = pick_size(s);
        if (!sl->expect)
            sl->expect = 1; /* SRC wants at least one byte */
        sl->req_len = (size_t)snprintf((char *)sl->req, MAX_REQ, "SRC %zu\n", sl->expect);
    } else {
        sl->src = 0;
        sl->req_len = pick_size(s);
        for (size_t i = 0; i < sl->req_len; i += 8) {
            uint64_t v = rnd(s);
            size_t n = sl->req_len - i < 8 ? sl->req_len - i : 8;
            memcpy(sl->req + i, &v, n);
        }
        if (sl->req_len)
            sl->req[0] = 'E'; /* never one of the edge's command words */
        sl->expect = sl->req_len;
    }
    synesis_request_options ro;
    synesis_request_options_init(&ro);
    ro.timeout = 30 * s->tscale;
    int rv = synesis_tunnel_request(s->t, sl->req, sl->req_len, &ro, on_response, sl, NULL);
    if (rv != 0) {
        s->failed++;
        if (s->fail_printed++ < 10)
            fprintf(stderr, "soak: request not accepted: %s\n", synesis_error_name(rv));
        return rv;
    }
    sl->busy = 1;
    s->issued++;
    s->in_flight++;
    s->bytes_up += sl->req_len;
    return 0;
}

static int check(const slot *sl, const synesis_response *r, char *why, size_t whylen) {
    if (r->status != 0) {
        snprintf(why, whylen, "%s: %s", synesis_error_name(r->status), r->detail);
        return 0;
    }
    if (r->len != sl->expect) {
        snprintf(why, whylen, "%s: %zu bytes, expected %zu", sl->src ? "SRC" : "echo", r->len,
                 sl->expect);
        return 0;
    }
    if (sl->src) {
        for (size_t i = 0; i < r->len; i++)
            if (r->data[i] != (uint8_t)(i % SRC_PERIOD)) {
                snprintf(why, whylen, "SRC byte %zu differs", i);
                return 0;
            }
    } else if (r->len && memcmp(r->data, sl->req, r->len) != 0) {
        snprintf(why, whylen, "echo of %zu bytes differs", r->len);
        return 0;
    }
    return 1;
}

static void on_response(synesis_tunnel *t, synesis_request *req, const synesis_response *r,
                        void *ud) {
    (void)t;
    (void)req;
    slot *sl = ud;
    soak *s = sl->s;
    sl->busy = 0;
    s->in_flight--;
    char why[600];
    if (check(sl, r, why, sizeof(why))) {
        s->ok++;
        s->bytes_down += r->len;
    } else {
        s->failed++;
        if (s->fail_printed++ < 10)
            fprintf(stderr, "soak: request failed: %s\n", why);
    }
    if (s->to_issue) {
        s->to_issue--;
        issue(sl);
    }
}

static void on_state(synesis_tunnel *t, const synesis_tunnel_state *o,
                     const synesis_tunnel_state *n, void *ud) {
    (void)t;
    soak *s = ud;
    if (n->kind == SYNESIS_STATE_CONNECTED)
        s->connected_events++;
    if (s->verbose)
        fprintf(stderr, "soak: %s -> %s%s%s\n", synesis_state_name(o->kind),
                synesis_state_name(n->kind), n->error ? ": " : "", n->error ? n->error_detail : "");
}

static void on_heartbeat_result(synesis_tunnel *t, const synesis_heartbeat_info *info, void *ud) {
    (void)t;
    soak *s = ud;
    if (info->status == 0)
        s->heartbeats_delivered++;
}

static int pred_connected(void *ud) {
    soak *s = ud;
    return synesis_tunnel_is_connected(s->t);
}

static int pred_batch_done(void *ud) {
    soak *s = ud;
    return s->to_issue == 0 && s->in_flight == 0;
}

typedef struct wait_ctx {
    soak *s;
    uint64_t target;
} wait_ctx;

static int pred_reconnected(void *ud) {
    wait_ctx *w = ud;
    return w->s->connected_events >= w->target && synesis_tunnel_is_connected(w->s->t);
}

static int pred_progress(void *ud) {
    wait_ctx *w = ud;
    return w->s->ok + w->s->failed >= w->target || pred_batch_done(w->s);
}

static void account_tunnel(soak *s) {
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(s->t, &st);
    s->reconnects_total += st.reconnects;
    s->connections_total += st.connections;
    s->heartbeats_sent += st.heartbeats_sent;
}

static void tunnel_make(soak *s) {
    synesis_tunnel_callbacks cb = {.struct_size = sizeof(synesis_tunnel_callbacks),
                                   .on_state = on_state,
                                   .on_heartbeat_result = on_heartbeat_result};
    char detail[512];
    int rv = synesis_tunnel_new(&s->t, s->loop, &s->cfg, &cb, s, detail, sizeof(detail));
    if (rv != 0) {
        fprintf(stderr, "soak: synesis_tunnel_new: %s: %s\n", synesis_error_name(rv), detail);
        exit(1);
    }
    if ((rv = synesis_tunnel_connect(s->t)) != 0) {
        fprintf(stderr, "soak: connect: %s\n", synesis_error_name(rv));
        exit(1);
    }
}

/* Sends n requests, window at a time, and waits for them all; with rss (11 entries), samples the
 * resident set size each time another tenth of them has completed. */
static int run_batch(soak *s, uint64_t n, long *rss) {
    uint64_t done0 = s->ok + s->failed;
    s->to_issue = n;
    for (size_t i = 0; i < s->window && s->to_issue; i++) {
        s->to_issue--;
        if (issue(&s->slots[i]) != 0)
            return 0;
    }
    /* Wait in steps of a twentieth, so the samples fall where asked and progress is watched. */
    uint64_t step = n / 20 ? n / 20 : 1;
    int next = 1;
    while (!pred_batch_done(s)) {
        uint64_t before = s->ok + s->failed;
        wait_ctx w = {s, before + step};
        if (!soak_run_until(s->loop, pred_progress, &w, 60 * s->tscale) &&
            s->ok + s->failed == before) {
            fprintf(stderr, "soak: no request completed in %.0f s\n", 60 * s->tscale);
            return 0;
        }
        for (; rss && next <= 10 && s->ok + s->failed - done0 >= n * (uint64_t)next / 10; next++)
            rss[next] = soak_status_kb("VmRSS");
    }
    for (; rss && next <= 10; next++)
        rss[next] = soak_status_kb("VmRSS");
    return 1;
}

static void print_rss(const char *what, const long *rss) {
    printf("soak: rss_kb %s at 0%%..100%%:", what);
    for (int i = 0; i <= 10; i++)
        printf(" %ld", rss[i]);
    printf("\n");
}

static int one_cycle(soak *s, int kind) {
    wait_ctx w = {s, s->connected_events + 1};
    switch (kind) {
    case CY_KICK:
        soak_edge_kick(&s->edge);
        break;
    case CY_GRACEFUL:
        soak_edge_restart(&s->edge, 1);
        break;
    case CY_HARD:
        soak_edge_restart(&s->edge, 0);
        break;
    case CY_DISCONNECT:
        if (synesis_tunnel_disconnect(s->t) != 0 || synesis_tunnel_connect(s->t) != 0) {
            fprintf(stderr, "soak: disconnect/connect refused\n");
            return 0;
        }
        break;
    case CY_RENEW:
        account_tunnel(s);
        synesis_tunnel_free(s->t);
        s->t = NULL;
        tunnel_make(s);
        break;
    }
    /* A crashed edge is noticed by the idle timeout; everything else within a round trip. */
    double limit = (kind == CY_HARD ? s->cfg.idle_timeout + 10 : 10) * s->tscale;
    if (!soak_run_until(s->loop, pred_reconnected, &w, limit)) {
        s->cycle_timeouts++;
        fprintf(stderr, "soak: cycle (%s) did not reconnect within %.0f s\n", cycle_names[kind],
                limit);
        return 0;
    }
    s->cycles_done[kind]++;
    return run_batch(s, 1, NULL);
}

/* Per 50 cycles: one each of the edge crashing, the edge restarting, disconnect + connect and
 * free + new; kicks otherwise. */
static int cycle_kind(uint64_t i) {
    switch (i % 50) {
    case 12:
        return CY_DISCONNECT;
    case 24:
        return CY_GRACEFUL;
    case 37:
        return CY_RENEW;
    case 49:
        return CY_HARD;
    default:
        return CY_KICK;
    }
}

static void usage(void) {
    fprintf(
        stderr,
        "usage: synesis-soak [--quick] [--requests N] [--cycles N] [--window N] [--seed N]\n"
        "                    [--timeout-scale X] [--max-rss-growth-kb N] [--edge-log] [--verbose]\n"
        "  defaults: 100000 requests, 1000 cycles, window 16; --quick: 2000 and 50\n"
        "  --timeout-scale: multiply every wait (e.g. 20 under valgrind)\n");
    exit(2);
}

int main(int argc, char **argv) {
    uint64_t nreq = 100000, ncycles = 1000, seed = 1;
    long max_growth = -1;
    soak_edge_options eo = {.device_id = "soak", .idle_timeout = 10, .hs_timeout = 5};
    static soak s;
    s.window = 16;
    s.tscale = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--quick") == 0) {
            nreq = 2000;
            ncycles = 50;
        } else if (strcmp(a, "--verbose") == 0) {
            s.verbose = 1;
        } else if (strcmp(a, "--edge-log") == 0) {
            eo.log = 1;
        } else if (v && strcmp(a, "--requests") == 0) {
            nreq = strtoull(v, NULL, 10), i++;
        } else if (v && strcmp(a, "--cycles") == 0) {
            ncycles = strtoull(v, NULL, 10), i++;
        } else if (v && strcmp(a, "--window") == 0) {
            s.window = strtoull(v, NULL, 10), i++;
        } else if (v && strcmp(a, "--seed") == 0) {
            seed = strtoull(v, NULL, 10), i++;
        } else if (v && strcmp(a, "--timeout-scale") == 0) {
            s.tscale = strtod(v, NULL), i++;
        } else if (v && strcmp(a, "--max-rss-growth-kb") == 0) {
            max_growth = strtol(v, NULL, 10), i++;
        } else {
            usage();
        }
    }
    if (!s.window || s.window > MAX_WINDOW || !(s.tscale >= 1))
        usage();
    s.rng = seed * 0x9E3779B97F4A7C15ull + 1;
    eo.idle_timeout *= s.tscale;
    eo.hs_timeout *= s.tscale;
    soak_edge_start(&s.edge, &eo);
    s.loop = ev_loop_new(EVFLAG_AUTO);
    for (size_t i = 0; i < s.window; i++) {
        s.slots[i].s = &s;
        s.slots[i].req = malloc(MAX_REQ);
        if (!s.slots[i].req) {
            fprintf(stderr, "soak: out of memory\n");
            return 1;
        }
    }

    static char url[64];
    snprintf(url, sizeof(url), "quic://127.0.0.1:%u", s.edge.port);
    synesis_tunnel_config_init(&s.cfg);
    s.cfg.cloud_url = url;
    s.cfg.server_name = "localhost";
    s.cfg.cert_path = soak_path(s.edge.pki_dir, "device.pem");
    s.cfg.key_path = soak_path(s.edge.pki_dir, "device.key");
    s.cfg.ca_path = soak_path(s.edge.pki_dir, "ca.pem");
    s.cfg.use_system_trust = 0;
    s.cfg.handshake_timeout = 5 * s.tscale;
    s.cfg.idle_timeout = 1.5 * s.tscale; /* how soon a crashed edge is noticed */
    s.cfg.keep_alive_interval = 0.3 * s.tscale;
    s.cfg.heartbeat_interval = 0.5 * s.tscale;
    s.cfg.reconnect_initial_delay = 0;
    s.cfg.reconnect_max_delay = 0.05;
    s.cfg.reconnect_jitter = 0;
    s.cfg.reconnect_max_attempts = 1000;
    s.cfg.close_linger = 0.2;

    double t0 = soak_now();
    tunnel_make(&s);
    if (!soak_run_until(s.loop, pred_connected, &s, 10 * s.tscale)) {
        fprintf(stderr, "soak: the first connection did not come up\n");
        return 1;
    }

    /* Phase 1: requests over one tunnel. */
    long rss_req[11];
    rss_req[0] = soak_status_kb("VmRSS");
    int ok = run_batch(&s, nreq, rss_req);
    double t1 = soak_now();
    synesis_tunnel_stats st1;
    synesis_tunnel_get_stats(s.t, &st1);
    uint64_t req_ok = s.ok, req_failed = s.failed, up1 = s.bytes_up, down1 = s.bytes_down;
    printf("soak: requests %" PRIu64 " over one tunnel: ok %" PRIu64 ", failed %" PRIu64
           " (%.1f MB up, %.1f MB down) in %.1f s; reconnects %" PRIu64 "\n",
           nreq, req_ok, req_failed, (double)up1 / 1e6, (double)down1 / 1e6, t1 - t0,
           st1.reconnects);
    print_rss("requests", rss_req);
    fflush(stdout);

    /* Phase 2: reconnect cycles. */
    long rss_cyc[11];
    rss_cyc[0] = soak_status_kb("VmRSS");
    int next = 1;
    for (uint64_t i = 0; ok && i < ncycles; i++) {
        ok = one_cycle(&s, cycle_kind(i));
        for (; next <= 10 && i + 1 >= ncycles * (uint64_t)next / 10; next++)
            rss_cyc[next] = soak_status_kb("VmRSS");
    }
    for (; next <= 10; next++)
        rss_cyc[next] = soak_status_kb("VmRSS");
    double t2 = soak_now();
    uint64_t cycles = 0;
    for (int k = 0; k < CY_KINDS; k++)
        cycles += s.cycles_done[k];
    account_tunnel(&s);
    printf(
        "soak: cycles %" PRIu64 "/%" PRIu64 " reconnected (kick %" PRIu64
        ", edge restart graceful %" PRIu64 ", edge crash %" PRIu64 ", disconnect+connect %" PRIu64
        ", free+new %" PRIu64 "), timeouts %" PRIu64 " in %.1f s\n",
        cycles, ncycles, s.cycles_done[CY_KICK], s.cycles_done[CY_GRACEFUL], s.cycles_done[CY_HARD],
        s.cycles_done[CY_DISCONNECT], s.cycles_done[CY_RENEW], s.cycle_timeouts, t2 - t1);
    printf("soak: tunnel reconnects (Reconnecting -> Connected) %" PRIu64 ", connections %" PRIu64
           ", heartbeats sent %" PRIu64 " delivered %" PRIu64 "\n",
           s.reconnects_total, s.connections_total, s.heartbeats_sent, s.heartbeats_delivered);
    printf("soak: requests in cycles: ok %" PRIu64 ", failed %" PRIu64 "\n", s.ok - req_ok,
           s.failed - req_failed);
    print_rss("cycles", rss_cyc);

    synesis_tunnel_free(s.t);
    s.t = NULL;
    soak_run_for(s.loop, 0.1);
    long rss_final = soak_status_kb("VmRSS");
    syn_edge_stats est;
    long edge_rss = -1;
    soak_edge_stats(&s.edge, &est, &edge_rss);
    printf("soak: rss_kb after free %ld (peak %ld); edge: accepted %" PRIu64 ", handshakes %" PRIu64
           ", requests %" PRIu64 ", heartbeats %" PRIu64 ", active %" PRIu64 ", rss_kb %ld\n",
           rss_final, soak_status_kb("VmHWM"), est.accepted, est.handshakes, est.requests,
           est.heartbeats, est.active, edge_rss);
    /* Warm-up: the first tenth of each phase. */
    long growth_req = rss_req[10] - rss_req[1], growth_cyc = rss_cyc[10] - rss_cyc[1];
    printf("soak: rss_kb growth after warm-up (first tenth): requests %+ld, cycles %+ld\n",
           growth_req, growth_cyc);
    printf("{\"soak\":{\"requests\":%" PRIu64 ",\"requests_ok\":%" PRIu64
           ",\"requests_failed\":%" PRIu64 ",\"cycles\":%" PRIu64 ",\"cycles_reconnected\":%" PRIu64
           ",\"tunnel_reconnects\":%" PRIu64 ",\"connections\":%" PRIu64
           ",\"rss_kb_start\":%ld,\"rss_kb_requests_warm\":%ld,\"rss_kb_requests_end\":%ld"
           ",\"rss_kb_cycles_warm\":%ld,\"rss_kb_cycles_end\":%ld,\"rss_kb_after_free\":%ld"
           ",\"seconds\":%.1f}}\n",
           nreq, s.ok, s.failed, ncycles, cycles, s.reconnects_total, s.connections_total,
           rss_req[0], rss_req[1], rss_req[10], rss_cyc[1], rss_cyc[10], rss_final,
           soak_now() - t0);

    ev_loop_destroy(s.loop);
    int edge_clean = soak_edge_stop(&s.edge) == 0;
    for (size_t i = 0; i < s.window; i++)
        free(s.slots[i].req);

    int pass = ok && edge_clean && s.failed == 0 && cycles == ncycles && s.ok == nreq + ncycles;
    if (pass && max_growth >= 0 && (growth_req > max_growth || growth_cyc > max_growth)) {
        fprintf(stderr, "soak: RSS grew after warm-up by %ld kB (requests) / %ld kB (cycles)\n",
                growth_req, growth_cyc);
        pass = 0;
    }
    printf("soak: %s\n", pass ? "PASS" : "FAIL");
    return pass ? 0 : 1;
}

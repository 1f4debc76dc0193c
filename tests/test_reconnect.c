/*
 * Reconnection with exponential backoff, end to end: the tunnel against the reference edge over
 * loopback UDP while the edge is stopped (gracefully or silently), blackholed by the fault proxy,
 * or never comes back. Short intervals throughout (keep-alive 0.1 s, idle 1 s, backoff from 20 ms);
 * every wait is for a condition with a generous deadline, and timing is only ever checked from
 * below (a delay is at least what the policy asked for), never for speed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fault_proxy.h"
#include "harness.h"

#define LOG_MAX 256

typedef struct fixture {
    struct ev_loop *loop;
    const char *pki;
    syn_edge *edge;
    syn_fault_proxy *proxy;
    char edge_log[LOG_MAX][512];
    int edge_log_n;
} fixture;

static void edge_log(void *ud, const char *line) {
    fixture *f = ud;
    if (f->edge_log_n < LOG_MAX)
        snprintf(f->edge_log[f->edge_log_n++], sizeof(f->edge_log[0]), "%s", line);
}

static const char *shared_pki;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->loop = ev_loop_new(EVFLAG_AUTO);
    shared_pki = syn_test_pki_shared("test-1");
    f->pki = shared_pki;
    syn_edge_config ec;
    syn_test_edge_config(&ec, f->pki);
    ec.idle_timeout = 2;
    ec.log = edge_log;
    ec.log_user_data = f;
    f->edge = syn_test_edge_start(f->loop, &ec);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    syn_fault_proxy_free(f->proxy);
    syn_edge_free(f->edge);
    /* Nothing of ours may stay active: the loop must have no watcher left. */
    assert_int_equal(ev_run(f->loop, EVRUN_NOWAIT), 0);
    ev_loop_destroy(f->loop);
    free(f);
    return 0;
}

/* ---- recording states, with details and times ---- */

typedef struct rec_entry {
    synesis_state_kind kind;
    uint32_t attempt;
    int error;
    int64_t entered_ms;
    uint64_t at_ns; /* monotonic, when the subscriber ran */
    char detail[256];
} rec_entry;

typedef struct recorder {
    rec_entry e[64];
    int n;
    syn_test_states states; /* the harness's own recorder, kept in step as a cross-check */
} recorder;

static void record_detail(synesis_tunnel *t, const synesis_tunnel_state *old_state,
                          const synesis_tunnel_state *new_state, void *user_data) {
    (void)t;
    (void)old_state;
    recorder *r = user_data;
    if (r->n >= 64)
        return;
    rec_entry *e = &r->e[r->n++];
    e->kind = new_state->kind;
    e->attempt = new_state->attempt;
    e->error = new_state->error;
    e->entered_ms = new_state->entered_ms;
    e->at_ns = syn_now_ns();
    snprintf(e->detail, sizeof(e->detail), "%s", new_state->error_detail);
}

/* First record at or after from with kind (and, for Reconnecting, attempt >= min_attempt). */
static int rec_find(const recorder *r, synesis_state_kind kind, uint32_t min_attempt, int from) {
    for (int i = from; i < r->n; i++)
        if (r->e[i].kind == kind &&
            (kind != SYNESIS_STATE_RECONNECTING || r->e[i].attempt >= min_attempt))
            return i;
    return -1;
}

typedef struct waiter {
    const recorder *r;
    synesis_state_kind kind;
    uint32_t min_attempt;
    int from;
} waiter;

static int waiter_done(void *ud) {
    const waiter *w = ud;
    return rec_find(w->r, w->kind, w->min_attempt, w->from) >= 0;
}

static void dump(const recorder *r) {
    for (int i = 0; i < r->n; i++)
        print_message("  [%d] %s attempt %u %s %s\n", i, synesis_state_name(r->e[i].kind),
                      r->e[i].attempt, r->e[i].error ? synesis_error_name(r->e[i].error) : "-",
                      r->e[i].detail);
}

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)w;
    (void)revents;
}

/* syn_test_run_until() evaluates its predicate in an ev_check watcher, i.e. only after the loop
 * wakes up again: once the tunnel is Failed or Disconnected nothing of it is active and the loop
 * would sleep until the deadline. A 10 ms tick keeps the loop turning while we wait. */
static int run_until(fixture *f, int (*pred)(void *), void *ud, double timeout) {
    ev_timer tick;
    ev_timer_init(&tick, tick_cb, 0.01, 0.01);
    ev_timer_start(f->loop, &tick);
    int ok = syn_test_run_until(f->loop, pred, ud, timeout);
    ev_timer_stop(f->loop, &tick);
    return ok;
}

/* Runs the loop until the state (Reconnecting: with attempt >= min_attempt) is recorded at or
 * after index from; returns its index. Fails the test after timeout seconds. */
static int wait_state(fixture *f, const recorder *r, int from, synesis_state_kind kind,
                      uint32_t min_attempt, double timeout) {
    waiter w = {r, kind, min_attempt, from};
    if (!run_until(f, waiter_done, &w, timeout)) {
        dump(r);
        fail_msg("no %s (attempt >= %u) after record %d within %.1f s", synesis_state_name(kind),
                 min_attempt, from, timeout);
    }
    return rec_find(r, kind, min_attempt, from);
}

static void expect_rec(const recorder *r, int i, synesis_state_kind kind, uint32_t attempt) {
    if (i >= r->n || r->e[i].kind != kind ||
        (kind == SYNESIS_STATE_RECONNECTING && r->e[i].attempt != attempt)) {
        dump(r);
        fail_msg("record %d: expected %s attempt %u", i, synesis_state_name(kind), attempt);
    }
}

/* Both recorders saw the same transitions. */
static void check_recorders_agree(const recorder *r) {
    assert_int_equal(r->states.n, r->n);
    for (int i = 0; i < r->n; i++) {
        assert_int_equal(r->states.kinds[i], r->e[i].kind);
        assert_int_equal(r->states.attempts[i], r->e[i].attempt);
        assert_int_equal(r->states.errors[i], r->e[i].error);
    }
}

/* ---- helpers ---- */

/* SYNESIS_TEST_LOG=1..4 prints the tunnel's log at that level (debugging aid). */
static void stderr_log(synesis_log_level level, const char *msg, void *ud) {
    (void)ud;
    fprintf(stderr, "%.3f [%d] %s\n", (double)(syn_now_ns() % 1000000000000ull) / 1e9, (int)level,
            msg);
}

/* The tunnel config of these tests: short keep-alive and idle timeout, fast backoff. */
static void rc_config(fixture *f, synesis_tunnel_config *cfg, uint16_t port) {
    syn_test_tunnel_config(cfg, f->pki, port);
    const char *lv = getenv("SYNESIS_TEST_LOG");
    if (lv && *lv) {
        cfg->log = stderr_log;
        cfg->log_level = (synesis_log_level)atoi(lv);
    }
    cfg->keep_alive_interval = 0.1;
    cfg->idle_timeout = 1.0;
    cfg->handshake_timeout = 1.0;
    cfg->reconnect_initial_delay = 0.02;
    cfg->reconnect_max_delay = 0.1;
    cfg->reconnect_multiplier = 2.0;
    cfg->reconnect_max_attempts = 50;
    cfg->reconnect_jitter = 0; /* these tests check the exact schedule */
}

static synesis_tunnel *new_tunnel(fixture *f, const synesis_tunnel_config *cfg, recorder *r) {
    synesis_tunnel *t = syn_test_tunnel_new(f->loop, cfg, NULL, NULL);
    assert_int_equal(synesis_tunnel_subscribe(t, syn_test_record_state, &r->states, NULL), 0);
    assert_int_equal(synesis_tunnel_subscribe(t, record_detail, r, NULL), 0);
    return t;
}

static void free_tunnel(fixture *f, synesis_tunnel *t) {
    synesis_tunnel_free(t);
    syn_test_run_for(f->loop, 0.05);
}

static uint64_t edge_handshakes_now(fixture *f) {
    syn_edge_stats es;
    syn_edge_get_stats(f->edge, &es);
    return es.handshakes;
}

typedef struct hs_wait {
    fixture *f;
    uint64_t n;
} hs_wait;

static int edge_has_handshakes(void *ud) {
    hs_wait *w = ud;
    return edge_handshakes_now(w->f) >= w->n;
}

/* The edge's completed handshakes, once it has at least want (or after a second): a resumed
 * connection is Connected on the device half a round trip before the edge has its Finished. */
static uint64_t edge_handshakes_wait(fixture *f, uint64_t want) {
    hs_wait w = {f, want};
    (void)syn_test_run_until(f->loop, edge_has_handshakes, &w, 1.0);
    return edge_handshakes_now(f);
}

static void edge_start(fixture *f) {
    char detail[512];
    int rv = syn_edge_start(f->edge, detail);
    if (rv)
        fail_msg("edge restart: %s: %s", synesis_error_name(rv), detail);
}

static double since(uint64_t t0_ns) { return (double)(syn_now_ns() - t0_ns) / 1e9; }

/* The "remote" fields of the edge's "connection" events for device_id, in order. */
static int connection_remotes(fixture *f, const char *device_id, char remotes[][64], int max) {
    char dev[128];
    snprintf(dev, sizeof(dev), "\"device_id\":\"%s\"", device_id);
    int n = 0;
    for (int i = 0; i < f->edge_log_n && n < max; i++) {
        const char *l = f->edge_log[i];
        if (!strstr(l, "\"event\":\"connection\"") || !strstr(l, dev))
            continue;
        const char *p = strstr(l, "\"remote\":\"");
        assert_non_null(p);
        p += strlen("\"remote\":\"");
        const char *q = strchr(p, '"');
        assert_non_null(q);
        snprintf(remotes[n++], 64, "%.*s", (int)(q - p), p);
    }
    return n;
}

/* A UDP sink that never answers: records the source port of every datagram it receives. */
typedef struct sink {
    int fd;
    uint16_t port;
    ev_io w;
    int datagrams;
    uint16_t ports[64]; /* distinct source ports, in order of first appearance */
    int nports;
    synesis_tunnel
        *disconnect_at_port2; /* disconnect() this tunnel on a second port's first datagram */
    int disconnect_rv;
    int disconnected;
} sink;

static void sink_cb(struct ev_loop *loop, ev_io *w, int revents) {
    (void)loop;
    (void)revents;
    sink *s = w->data;
    for (;;) {
        uint8_t buf[2048];
        struct sockaddr_in from;
        socklen_t len = sizeof(from);
        ssize_t n = recvfrom(s->fd, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&from, &len);
        if (n < 0)
            break;
        s->datagrams++;
        uint16_t port = ntohs(from.sin_port);
        int seen = 0;
        for (int i = 0; i < s->nports; i++)
            seen |= s->ports[i] == port;
        if (!seen && s->nports < 64)
            s->ports[s->nports++] = port;
        if (s->nports == 2 && s->disconnect_at_port2 && !s->disconnected) {
            s->disconnected = 1;
            s->disconnect_rv = synesis_tunnel_disconnect(s->disconnect_at_port2);
        }
    }
}

static void sink_open(fixture *f, sink *s) {
    memset(s, 0, sizeof(*s));
    s->fd = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(s->fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_int_equal(bind(s->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(s->fd, (struct sockaddr *)&a, &len), 0);
    s->port = ntohs(a.sin_port);
    ev_io_init(&s->w, sink_cb, s->fd, EV_READ);
    s->w.data = s;
    ev_io_start(f->loop, &s->w);
}

static void sink_close(fixture *f, sink *s) {
    ev_io_stop(f->loop, &s->w);
    close(s->fd);
}

static int sink_disconnected(void *ud) {
    const sink *s = ud;
    return s->disconnected;
}

/* ---- tests ---- */

/*
 * The edge goes away while we are connected, and comes back: Reconnecting with attempts 1, 2, 3
 * (each carrying the previous failure), then Connected with a new connection from a new port; a
 * later outage starts again at attempt 1.
 */
static void outage_and_return(fixture *f, int graceful) {
    synesis_tunnel_config cfg;
    rc_config(f, &cfg, syn_edge_port(f->edge));
    recorder r = {0};
    synesis_tunnel *t = new_tunnel(f, &cfg, &r);
    assert_int_equal(synesis_tunnel_connect(t), 0);
    wait_state(f, &r, 0, SYNESIS_STATE_CONNECTED, 0, 5);
    assert_int_equal(edge_handshakes_now(f), 1);
    /* Let the packets that follow the handshake go out first. A write of several datagrams still
     * pending when the edge closes meets the ICMP error drawn by its own first datagram, and the
     * qconn write path ends the connection on that send error ("send: Connection refused")
     * without reading the edge's CONNECTION_CLOSE already queued on the socket. */
    syn_test_run_for(f->loop, 0.2);

    int mark = r.n;
    syn_edge_stop(f->edge, graceful);
    int i3 = wait_state(f, &r, mark, SYNESIS_STATE_RECONNECTING, 3, 5);
    assert_int_equal(i3, mark + 2);
    for (int k = 0; k < 3; k++)
        expect_rec(&r, mark + k, SYNESIS_STATE_RECONNECTING, (uint32_t)k + 1);
    /* Reconnecting(1) carries why the connection ended... */
    const rec_entry *first = &r.e[mark];
    if (graceful) {
        if (first->error != SYNESIS_ERR_CLOSED_BY_PEER || !strstr(first->detail, "edge shutdown"))
            fail_msg("graceful stop: %s: %s", synesis_error_name(first->error), first->detail);
    } else {
        /* A silent edge: noticed by the ICMP error a keep-alive draws, or by the idle timeout. */
        if (first->error != SYNESIS_ERR_CONNECTION_LOST && first->error != SYNESIS_ERR_IDLE_TIMEOUT)
            fail_msg("silent stop: %s: %s", synesis_error_name(first->error), first->detail);
    }
    /* ...and each later one the failure of the attempt before it (nothing listens: refused). */
    for (int k = 1; k < 3; k++) {
        const rec_entry *e = &r.e[mark + k];
        if (e->error != SYNESIS_ERR_SOCKET || !strstr(e->detail, "refused"))
            fail_msg("attempt %u: %s: %s", e->attempt, synesis_error_name(e->error), e->detail);
        /* The outage's start is kept across attempts. */
        assert_true(e->entered_ms == first->entered_ms);
    }
    /* The current state and the statistics say the same while the outage lasts. */
    synesis_tunnel_state s;
    synesis_tunnel_get_state(t, &s);
    assert_int_equal(s.kind, SYNESIS_STATE_RECONNECTING);
    assert_true(s.attempt >= 3);
    assert_int_equal(s.error, SYNESIS_ERR_SOCKET);
    assert_non_null(strstr(s.error_detail, "refused"));
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(t, &st);
    assert_int_equal(st.struct_size, sizeof(st));
    assert_int_equal(st.last_error, SYNESIS_ERR_SOCKET);
    assert_non_null(strstr(st.last_error_detail, "refused"));
    assert_true(st.time_disconnected > 0);
    assert_int_equal(st.reconnects, 0);
    assert_false(synesis_tunnel_is_connected(t));

    edge_start(f);
    int ic = wait_state(f, &r, mark, SYNESIS_STATE_CONNECTED, 0, 5);
    for (int k = mark; k < ic; k++)
        expect_rec(&r, k, SYNESIS_STATE_RECONNECTING, (uint32_t)(k - mark) + 1);
    /* The edge saw a new handshake from the same device, from another port. */
    assert_int_equal(edge_handshakes_wait(f, 2), 2);
    assert_string_equal(syn_edge_last_device(f->edge), "test-1");
    char remotes[8][64];
    assert_int_equal(connection_remotes(f, "test-1", remotes, 8), 2);
    if (strcmp(remotes[0], remotes[1]) == 0)
        fail_msg("both connections came from %s: the socket was reused", remotes[0]);
    synesis_tunnel_get_stats(t, &st);
    assert_int_equal(st.reconnects, 1);
    assert_int_equal(st.connections, 2);
    /* At least attempts 1..3's delays (0.02 + 0.04 + 0.08 s) went by disconnected. */
    assert_true(st.time_disconnected >= 0.13);
    double outage1 = st.time_disconnected;

    /* Attempts were reset by the success: the next outage starts again at attempt 1. */
    mark = r.n;
    syn_edge_stop(f->edge, graceful);
    wait_state(f, &r, mark, SYNESIS_STATE_RECONNECTING, 1, 5);
    expect_rec(&r, mark, SYNESIS_STATE_RECONNECTING, 1);
    edge_start(f);
    ic = wait_state(f, &r, mark, SYNESIS_STATE_CONNECTED, 0, 5);
    for (int k = mark; k < ic; k++)
        expect_rec(&r, k, SYNESIS_STATE_RECONNECTING, (uint32_t)(k - mark) + 1);
    assert_int_equal(edge_handshakes_wait(f, 3), 3);
    synesis_tunnel_get_stats(t, &st);
    assert_int_equal(st.reconnects, 2);
    assert_true(st.time_disconnected > outage1);
    check_recorders_agree(&r);
    free_tunnel(f, t);
}

static void test_graceful_edge_stop_and_return(void **state) { outage_and_return(*state, 1); }
static void test_silent_edge_stop_and_return(void **state) { outage_and_return(*state, 0); }

/* The path goes dark (no ICMP, nothing) for longer than the idle timeout: Reconnecting after at
 * least the idle timeout, attempts time out their handshakes, and the first one after the path
 * comes back connects. */
static void test_blackhole_longer_than_idle_timeout(void **state) {
    fixture *f = *state;
    struct sockaddr_in l = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct sockaddr_in up = l;
    up.sin_port = htons(syn_edge_port(f->edge));
    f->proxy = syn_fault_proxy_new(f->loop, (struct sockaddr *)&l, sizeof(l),
                                   (struct sockaddr *)&up, sizeof(up), 7);
    assert_non_null(f->proxy);
    synesis_tunnel_config cfg;
    rc_config(f, &cfg, syn_fault_proxy_port(f->proxy));
    cfg.handshake_timeout = 0.3;
    recorder r = {0};
    synesis_tunnel *t = new_tunnel(f, &cfg, &r);
    assert_int_equal(synesis_tunnel_connect(t), 0);
    wait_state(f, &r, 0, SYNESIS_STATE_CONNECTED, 0, 5);

    int mark = r.n;
    uint64_t t0 = syn_now_ns();
    syn_fault_proxy_blackhole(f->proxy, 1);
    wait_state(f, &r, mark, SYNESIS_STATE_RECONNECTING, 1, 6);
    /* Keep-alives cannot keep a dead path up: the idle timeout (1 s) ends the connection, not
     * sooner. (The idle timer may have restarted at a keep-alive PING sent just before the
     * blackhole whose ACK it swallowed: allow that PING's round trip.) */
    double dark = (double)(r.e[mark].at_ns - t0) / 1e9;
    if (dark < cfg.idle_timeout - 0.05)
        fail_msg("connection declared dead after %.3f s, before the idle timeout", dark);
    expect_rec(&r, mark, SYNESIS_STATE_RECONNECTING, 1);
    if (r.e[mark].error != SYNESIS_ERR_IDLE_TIMEOUT)
        fail_msg("%s: %s", synesis_error_name(r.e[mark].error), r.e[mark].detail);
    /* Attempts into the dark end by their handshake timeout. */
    int i2 = wait_state(f, &r, mark, SYNESIS_STATE_RECONNECTING, 2, 5);
    assert_int_equal(i2, mark + 1);
    assert_int_equal(r.e[i2].error, SYNESIS_ERR_HANDSHAKE_TIMEOUT);
    assert_true(edge_handshakes_now(f) == 1);

    syn_fault_proxy_blackhole(f->proxy, 0);
    int ic = wait_state(f, &r, mark, SYNESIS_STATE_CONNECTED, 0, 5);
    for (int k = mark; k < ic; k++)
        expect_rec(&r, k, SYNESIS_STATE_RECONNECTING, (uint32_t)(k - mark) + 1);
    assert_int_equal(edge_handshakes_wait(f, 2), 2);
    assert_string_equal(syn_edge_last_device(f->edge), "test-1");
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(t, &st);
    assert_int_equal(st.reconnects, 1);
    assert_int_equal(st.last_error, SYNESIS_ERR_HANDSHAKE_TIMEOUT);
    assert_true(st.time_disconnected >= cfg.handshake_timeout);
    check_recorders_agree(&r);
    free_tunnel(f, t);
}

/* The edge never comes back: Reconnecting 1..max, then Failed (max reconnects), no sooner than
 * the schedule allows; nothing happens afterwards; connect() from Failed works. */
static void test_gives_up_after_max_attempts(void **state) {
    fixture *f = *state;
    synesis_tunnel_config cfg;
    rc_config(f, &cfg, syn_edge_port(f->edge));
    cfg.reconnect_max_attempts = 4;
    cfg.reconnect_initial_delay = 0.02;
    cfg.reconnect_max_delay = 0.1;
    const double schedule_sum = 0.02 + 0.04 + 0.08 + 0.1;
    recorder r = {0};
    synesis_tunnel *t = new_tunnel(f, &cfg, &r);
    assert_int_equal(synesis_tunnel_connect(t), 0);
    wait_state(f, &r, 0, SYNESIS_STATE_CONNECTED, 0, 5);

    int mark = r.n;
    uint64_t t0 = syn_now_ns();
    syn_edge_stop(f->edge, 1);
    int fi = wait_state(f, &r, mark, SYNESIS_STATE_FAILED, 0, 5);
    double elapsed = since(t0);
    assert_int_equal(fi, mark + 4);
    for (uint32_t k = 0; k < 4; k++)
        expect_rec(&r, mark + (int)k, SYNESIS_STATE_RECONNECTING, k + 1);
    assert_int_equal(r.e[fi].error, SYNESIS_ERR_MAX_RECONNECTS);
    assert_non_null(strstr(r.e[fi].detail, "max reconnection attempts"));
    assert_non_null(strstr(r.e[fi].detail, "refused")); /* and what the last attempt met */
    /* Every delay of the schedule was waited out: libev never fires a timer early, and each
     * timer is armed from the loop time of an iteration that began after the previous one fired
     * (the few ms allowed are for clock granularity and the work done within an iteration). */
    if (elapsed < schedule_sum - 0.005)
        fail_msg("gave up after %.3f s, before the schedule's %.3f s", elapsed, schedule_sum);
    if ((double)(r.e[fi].at_ns - r.e[mark].at_ns) / 1e9 < schedule_sum - 0.02)
        fail_msg("attempts 1..4 took only %.3f s", (double)(r.e[fi].at_ns - r.e[mark].at_ns) / 1e9);
    synesis_tunnel_state s;
    synesis_tunnel_get_state(t, &s);
    assert_int_equal(s.kind, SYNESIS_STATE_FAILED);
    assert_int_equal(s.error, SYNESIS_ERR_MAX_RECONNECTS);
    assert_non_null(strstr(synesis_tunnel_last_error(t), "max reconnection attempts"));
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(t, &st);
    assert_int_equal(st.reconnects, 0);
    assert_int_equal(st.last_error, SYNESIS_ERR_SOCKET); /* the last connection error */
    /* The outage that ended in Failed counts as time spent in Reconnecting. */
    assert_true(st.time_disconnected >= schedule_sum - 0.01);
    double td = st.time_disconnected;

    /* Failed is final: no timer left, no attempt, no state change. */
    int n = r.n;
    edge_start(f);
    syn_test_run_for(f->loop, 0.3);
    assert_int_equal(r.n, n);
    assert_int_equal(edge_handshakes_now(f), 1);
    synesis_tunnel_get_stats(t, &st);
    assert_true(st.time_disconnected == td); /* not growing in Failed */

    /* The application starts over from Failed once the edge is back. */
    assert_int_equal(synesis_tunnel_connect(t), 0);
    int ic = wait_state(f, &r, n, SYNESIS_STATE_CONNECTED, 0, 5);
    assert_int_equal(ic, n + 1);
    expect_rec(&r, n, SYNESIS_STATE_CONNECTING, 0);
    assert_int_equal(edge_handshakes_wait(f, 2), 2);
    /* ...with a fresh budget: an outage now starts at attempt 1 again. */
    mark = r.n;
    syn_edge_stop(f->edge, 1);
    wait_state(f, &r, mark, SYNESIS_STATE_RECONNECTING, 1, 5);
    expect_rec(&r, mark, SYNESIS_STATE_RECONNECTING, 1);
    edge_start(f);
    wait_state(f, &r, mark, SYNESIS_STATE_CONNECTED, 0, 5);
    check_recorders_agree(&r);
    free_tunnel(f, t);
}

/* disconnect() while waiting for the next attempt: Disconnected, the timer stopped, nothing
 * more happens even though the edge is back. */
static void test_disconnect_while_waiting_to_retry(void **state) {
    fixture *f = *state;
    synesis_tunnel_config cfg;
    rc_config(f, &cfg, syn_edge_port(f->edge));
    cfg.reconnect_initial_delay = 0.3;
    cfg.reconnect_max_delay = 1.0;
    recorder r = {0};
    synesis_tunnel *t = new_tunnel(f, &cfg, &r);
    assert_int_equal(synesis_tunnel_connect(t), 0);
    wait_state(f, &r, 0, SYNESIS_STATE_CONNECTED, 0, 5);
    int mark = r.n;
    syn_edge_stop(f->edge, 1);
    wait_state(f, &r, mark, SYNESIS_STATE_RECONNECTING, 1, 5);
    edge_start(f); /* an attempt would now succeed: none may be made */
    assert_int_equal(r.n, mark + 1);
    assert_int_equal(synesis_tunnel_disconnect(t), 0);
    assert_int_equal(r.n, mark + 2);
    expect_rec(&r, mark + 1, SYNESIS_STATE_DISCONNECTED, 0);
    syn_edge_stats es0, es1;
    syn_edge_get_stats(f->edge, &es0);
    syn_test_run_for(f->loop, 0.8); /* well past the 0.3 s the attempt was due at */
    assert_int_equal(r.n, mark + 2);
    syn_edge_get_stats(f->edge, &es1);
    assert_int_equal(es1.accepted, es0.accepted);
    assert_int_equal(es1.handshakes, 1);
    synesis_tunnel_state s;
    synesis_tunnel_get_state(t, &s);
    assert_int_equal(s.kind, SYNESIS_STATE_DISCONNECTED);
    assert_int_equal(synesis_tunnel_disconnect(t), SYNESIS_ERR_INVALID_STATE);
    /* The outage is over: its time is counted once and no longer grows. */
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(t, &st);
    double td = st.time_disconnected;
    syn_test_run_for(f->loop, 0.05);
    synesis_tunnel_get_stats(t, &st);
    assert_true(st.time_disconnected == td);
    /* And connect() still works afterwards, from attempt-free Connecting. */
    assert_int_equal(synesis_tunnel_connect(t), 0);
    wait_state(f, &r, mark + 2, SYNESIS_STATE_CONNECTED, 0, 5);
    check_recorders_agree(&r);
    free_tunnel(f, t);
}

/* disconnect() while an attempt's handshake is in flight (to a peer that never answers): the
 * attempt is abandoned and no later one is made. */
static void test_disconnect_during_attempt(void **state) {
    fixture *f = *state;
    sink k;
    sink_open(f, &k);
    synesis_tunnel_config cfg;
    rc_config(f, &cfg, k.port);
    cfg.retry_initial_connect = 1;
    cfg.handshake_timeout = 0.2;
    recorder r = {0};
    synesis_tunnel *t = new_tunnel(f, &cfg, &r);
    /* The initial attempt times out; the sink disconnects us as soon as attempt 1's first
     * datagram (from a second port) arrives, i.e. with its handshake in flight. */
    k.disconnect_at_port2 = t;
    assert_int_equal(synesis_tunnel_connect(t), 0);
    assert_true(run_until(f, sink_disconnected, &k, 5));
    assert_int_equal(k.disconnect_rv, 0);
    assert_int_equal(r.n, 3);
    expect_rec(&r, 0, SYNESIS_STATE_CONNECTING, 0);
    expect_rec(&r, 1, SYNESIS_STATE_RECONNECTING, 1);
    expect_rec(&r, 2, SYNESIS_STATE_DISCONNECTED, 0);
    syn_test_run_for(f->loop, 0.05); /* whatever the abandoned attempt sent on its way out */
    int dg = k.datagrams;
    syn_test_run_for(f->loop, 0.6); /* three handshake timeouts' worth */
    assert_int_equal(k.datagrams, dg);
    assert_int_equal(k.nports, 2);
    assert_int_equal(r.n, 3);
    check_recorders_agree(&r);
    free_tunnel(f, t);
    sink_close(f, &k);
}

/* The application acting from inside a Reconnecting notification: disconnect() ends the outage
 * there (no timer armed behind its back), and free() stops everything (no callback afterwards). */
typedef struct actor {
    uint32_t at_attempt;
    int do_free; /* else disconnect */
    int acted;
    int rv;
    int calls_after; /* notifications after a free */
} actor;

static void act_on_reconnecting(synesis_tunnel *t, const synesis_tunnel_state *old_state,
                                const synesis_tunnel_state *new_state, void *user_data) {
    (void)old_state;
    actor *a = user_data;
    if (a->acted && a->do_free) {
        a->calls_after++;
        return;
    }
    if (a->acted || new_state->kind != SYNESIS_STATE_RECONNECTING ||
        new_state->attempt != a->at_attempt)
        return;
    a->acted = 1;
    if (a->do_free)
        synesis_tunnel_free(t);
    else
        a->rv = synesis_tunnel_disconnect(t);
}

static int actor_acted(void *ud) { return ((actor *)ud)->acted; }

static void test_act_from_reconnecting_callback(void **state) {
    fixture *f = *state;
    synesis_tunnel_config cfg;
    rc_config(f, &cfg, syn_edge_port(f->edge));

    /* disconnect() from the Reconnecting(2) notification. */
    recorder r = {0};
    synesis_tunnel *t = new_tunnel(f, &cfg, &r);
    actor a = {.at_attempt = 2};
    assert_int_equal(synesis_tunnel_subscribe(t, act_on_reconnecting, &a, NULL), 0);
    assert_int_equal(synesis_tunnel_connect(t), 0);
    wait_state(f, &r, 0, SYNESIS_STATE_CONNECTED, 0, 5);
    syn_test_run_for(f->loop, 0.2);
    int mark = r.n;
    syn_edge_stop(f->edge, 1);
    assert_true(run_until(f, actor_acted, &a, 5));
    assert_int_equal(a.rv, 0);
    assert_int_equal(r.n, mark + 3);
    expect_rec(&r, mark, SYNESIS_STATE_RECONNECTING, 1);
    expect_rec(&r, mark + 1, SYNESIS_STATE_RECONNECTING, 2);
    expect_rec(&r, mark + 2, SYNESIS_STATE_DISCONNECTED, 0);
    edge_start(f);
    syn_test_run_for(f->loop, 0.3); /* attempt 2 was due after 0.04 s: it must not happen */
    assert_int_equal(r.n, mark + 3);
    assert_int_equal(edge_handshakes_now(f), 1);
    synesis_tunnel_state s;
    synesis_tunnel_get_state(t, &s);
    assert_int_equal(s.kind, SYNESIS_STATE_DISCONNECTED);
    check_recorders_agree(&r);
    free_tunnel(f, t);

    /* free() from the Reconnecting(2) notification: nothing runs afterwards, no watcher stays
     * (the teardown checks the loop is empty). */
    recorder r2 = {0};
    t = new_tunnel(f, &cfg, &r2);
    actor b = {.at_attempt = 2, .do_free = 1};
    assert_int_equal(synesis_tunnel_subscribe(t, act_on_reconnecting, &b, NULL), 0);
    assert_int_equal(synesis_tunnel_connect(t), 0);
    wait_state(f, &r2, 0, SYNESIS_STATE_CONNECTED, 0, 5);
    syn_test_run_for(f->loop, 0.2);
    syn_edge_stop(f->edge, 1);
    assert_true(run_until(f, actor_acted, &b, 5));
    int n = r2.n;
    edge_start(f);
    syn_test_run_for(f->loop, 0.3);
    assert_int_equal(b.calls_after, 0);
    assert_int_equal(r2.n, n);
    assert_int_equal(edge_handshakes_wait(f, 2), 2);
}

/* With a stable period, a connection that drops before it does not reset the attempt count (the
 * next outage continues at n + 1); after it, it does. */
static void test_stable_period(void **state) {
    fixture *f = *state;
    synesis_tunnel_config cfg;
    rc_config(f, &cfg, syn_edge_port(f->edge));
    cfg.reconnect_stable_period = 1.0;
    recorder r = {0};
    synesis_tunnel *t = new_tunnel(f, &cfg, &r);
    assert_int_equal(synesis_tunnel_connect(t), 0);
    wait_state(f, &r, 0, SYNESIS_STATE_CONNECTED, 0, 5);

    /* Outage A: attempts 1 and 2 refused, a later one connects. */
    int mark = r.n;
    syn_edge_stop(f->edge, 1);
    wait_state(f, &r, mark, SYNESIS_STATE_RECONNECTING, 2, 5);
    edge_start(f);
    int ic = wait_state(f, &r, mark, SYNESIS_STATE_CONNECTED, 0, 5);
    uint32_t n_a = r.e[ic - 1].attempt;
    assert_true(n_a >= 2);

    /* Outage B, at once (well within the 1 s): continues at n_a + 1. */
    mark = r.n;
    syn_edge_kick(f->edge, "test-1");
    int ib = wait_state(f, &r, mark, SYNESIS_STATE_RECONNECTING, 1, 5);
    assert_int_equal(ib, mark);
    assert_int_equal(r.e[ib].attempt, n_a + 1);
    assert_int_equal(r.e[ib].error, SYNESIS_ERR_CLOSED_BY_PEER);
    ic = wait_state(f, &r, mark, SYNESIS_STATE_CONNECTED, 0, 5);
    assert_int_equal(ic, mark + 1); /* the edge is up: attempt n_a + 1 connects */

    /* Stay up past the stable period: the count resets, outage C starts at 1. */
    syn_test_run_for(f->loop, cfg.reconnect_stable_period + 0.3);
    assert_true(synesis_tunnel_is_connected(t));
    mark = r.n;
    syn_edge_kick(f->edge, "test-1");
    int ic2 = wait_state(f, &r, mark, SYNESIS_STATE_RECONNECTING, 1, 5);
    assert_int_equal(ic2, mark);
    assert_int_equal(r.e[ic2].attempt, 1);
    wait_state(f, &r, mark, SYNESIS_STATE_CONNECTED, 0, 5);
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(t, &st);
    assert_int_equal(st.reconnects, 3);
    check_recorders_agree(&r);
    free_tunnel(f, t);
}

/* Connections that never become stable use up the budget: when one drops with no attempt left,
 * the tunnel must end in Failed (through Reconnecting, the only way from Connected), not stay
 * "Connected" with no connection. */
static void test_unstable_connections_exhaust_attempts(void **state) {
    fixture *f = *state;
    synesis_tunnel_config cfg;
    rc_config(f, &cfg, syn_edge_port(f->edge));
    cfg.reconnect_stable_period = 30.0; /* never reached here */
    cfg.reconnect_max_attempts = 2;
    recorder r = {0};
    synesis_tunnel *t = new_tunnel(f, &cfg, &r);
    assert_int_equal(synesis_tunnel_connect(t), 0);
    wait_state(f, &r, 0, SYNESIS_STATE_CONNECTED, 0, 5);

    int mark = r.n;
    syn_edge_stop(f->edge, 1);
    wait_state(f, &r, mark, SYNESIS_STATE_RECONNECTING, 2, 5);
    edge_start(f);
    int ic = wait_state(f, &r, mark, SYNESIS_STATE_CONNECTED, 0, 5);
    assert_int_equal(ic, mark + 2); /* attempt 2, the last one, connected */

    mark = r.n;
    syn_edge_kick(f->edge, "test-1");
    int fi = wait_state(f, &r, mark, SYNESIS_STATE_FAILED, 0, 5);
    assert_int_equal(fi, mark + 1);
    /* The refused attempt 3 is announced, with why the connection ended, then Failed. */
    expect_rec(&r, mark, SYNESIS_STATE_RECONNECTING, 3);
    assert_int_equal(r.e[mark].error, SYNESIS_ERR_CLOSED_BY_PEER);
    assert_int_equal(r.e[fi].error, SYNESIS_ERR_MAX_RECONNECTS);
    assert_false(synesis_tunnel_is_connected(t));
    int n = r.n;
    syn_test_run_for(f->loop, 0.3);
    assert_int_equal(r.n, n);
    assert_int_equal(edge_handshakes_wait(f, 2), 2);
    /* connect() from Failed starts with a fresh budget. */
    assert_int_equal(synesis_tunnel_connect(t), 0);
    wait_state(f, &r, n, SYNESIS_STATE_CONNECTED, 0, 5);
    check_recorders_agree(&r);
    free_tunnel(f, t);
}

/* A custom policy: sees each attempt with the built-in delay, its delay is the one used, and a
 * negative answer ends in Failed. */
typedef struct policy {
    uint32_t attempts[16];
    double computed[16];
    int n;
    double answer[16]; /* by attempt - 1 */
} policy;

static double policy_fn(synesis_tunnel *tunnel, uint32_t attempt, double computed, void *ud) {
    (void)tunnel;
    policy *p = ud;
    assert_true(attempt >= 1 && attempt <= 16);
    if (p->n < 16) {
        p->attempts[p->n] = attempt;
        p->computed[p->n] = computed;
        p->n++;
    }
    return p->answer[attempt - 1];
}

static void test_backoff_fn(void **state) {
    fixture *f = *state;
    synesis_tunnel_config cfg;
    rc_config(f, &cfg, syn_edge_port(f->edge));
    cfg.reconnect_max_delay = 1.0;
    policy p = {
        .answer = {0.15, 0.15, -1}
    };
    cfg.backoff_fn = policy_fn;
    cfg.backoff_user_data = &p;
    recorder r = {0};
    synesis_tunnel *t = new_tunnel(f, &cfg, &r);
    assert_int_equal(synesis_tunnel_connect(t), 0);
    wait_state(f, &r, 0, SYNESIS_STATE_CONNECTED, 0, 5);
    assert_int_equal(p.n, 0);

    int mark = r.n;
    syn_edge_stop(f->edge, 1);
    int fi = wait_state(f, &r, mark, SYNESIS_STATE_FAILED, 0, 5);
    assert_int_equal(fi, mark + 2);
    expect_rec(&r, mark, SYNESIS_STATE_RECONNECTING, 1);
    expect_rec(&r, mark + 1, SYNESIS_STATE_RECONNECTING, 2);
    assert_int_equal(r.e[fi].error, SYNESIS_ERR_MAX_RECONNECTS);
    /* Called for attempts 1, 2, 3 with the built-in 0.02, 0.04, 0.08. */
    assert_int_equal(p.n, 3);
    static const double builtin[3] = {0.02, 0.04, 0.08};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(p.attempts[i], (uint32_t)i + 1);
        if (p.computed[i] < builtin[i] - 1e-12 || p.computed[i] > builtin[i] + 1e-12)
            fail_msg("attempt %d: computed %.17g", i + 1, p.computed[i]);
    }
    /* Its 0.15 s, not the built-in 0.02 s, separated attempt 1 from attempt 2. */
    double gap = (double)(r.e[mark + 1].at_ns - r.e[mark].at_ns) / 1e9;
    if (gap < 0.15 - 0.01)
        fail_msg("attempt 1 ran after %.3f s instead of the policy's 0.15 s", gap);
    free_tunnel(f, t);

    /* Giving up on attempt 1, straight from Connected: Reconnecting(1), then Failed. */
    edge_start(f);
    policy q = {.answer = {-1}};
    cfg.backoff_user_data = &q;
    recorder r2 = {0};
    t = new_tunnel(f, &cfg, &r2);
    assert_int_equal(synesis_tunnel_connect(t), 0);
    wait_state(f, &r2, 0, SYNESIS_STATE_CONNECTED, 0, 5);
    mark = r2.n;
    syn_edge_kick(f->edge, "test-1");
    fi = wait_state(f, &r2, mark, SYNESIS_STATE_FAILED, 0, 5);
    assert_int_equal(fi, mark + 1);
    expect_rec(&r2, mark, SYNESIS_STATE_RECONNECTING, 1);
    assert_int_equal(r2.e[mark].error, SYNESIS_ERR_CLOSED_BY_PEER);
    assert_int_equal(r2.e[fi].error, SYNESIS_ERR_MAX_RECONNECTS);
    assert_int_equal(q.n, 1);
    assert_int_equal(q.attempts[0], 1);
    assert_false(synesis_tunnel_is_connected(t));
    syn_test_run_for(f->loop, 0.2);
    assert_int_equal(r2.n, fi + 1);
    check_recorders_agree(&r2);
    free_tunnel(f, t);
}

/* retry_initial_connect = 1: a first connect to an edge that is down keeps trying with the same
 * policy and connects once the edge is up. */
static void test_retry_initial_connect(void **state) {
    fixture *f = *state;
    synesis_tunnel_config cfg;
    rc_config(f, &cfg, syn_edge_port(f->edge));
    cfg.retry_initial_connect = 1;
    syn_edge_stop(f->edge, 0);
    recorder r = {0};
    synesis_tunnel *t = new_tunnel(f, &cfg, &r);
    assert_int_equal(synesis_tunnel_connect(t), 0);
    wait_state(f, &r, 0, SYNESIS_STATE_RECONNECTING, 3, 5);
    expect_rec(&r, 0, SYNESIS_STATE_CONNECTING, 0);
    for (int k = 1; k <= 3; k++) {
        expect_rec(&r, k, SYNESIS_STATE_RECONNECTING, (uint32_t)k);
        assert_int_equal(r.e[k].error, SYNESIS_ERR_SOCKET);
    }
    edge_start(f);
    int ic = wait_state(f, &r, 0, SYNESIS_STATE_CONNECTED, 0, 5);
    for (int k = 1; k < ic; k++)
        expect_rec(&r, k, SYNESIS_STATE_RECONNECTING, (uint32_t)k);
    assert_int_equal(edge_handshakes_now(f), 1);
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(t, &st);
    assert_int_equal(st.connections, 1);
    assert_true(st.time_disconnected > 0);
    check_recorders_agree(&r);
    free_tunnel(f, t);
}

/* retry_initial_connect = 0 (the default): a first connect to an edge that is down fails. */
static void test_no_retry_initial_connect(void **state) {
    fixture *f = *state;
    synesis_tunnel_config cfg;
    rc_config(f, &cfg, syn_edge_port(f->edge));
    assert_int_equal(cfg.retry_initial_connect, 0);
    syn_edge_stop(f->edge, 0);
    recorder r = {0};
    synesis_tunnel *t = new_tunnel(f, &cfg, &r);
    assert_int_equal(synesis_tunnel_connect(t), 0);
    wait_state(f, &r, 0, SYNESIS_STATE_FAILED, 0, 5);
    assert_int_equal(r.n, 2);
    expect_rec(&r, 0, SYNESIS_STATE_CONNECTING, 0);
    expect_rec(&r, 1, SYNESIS_STATE_FAILED, 0);
    assert_int_equal(r.e[1].error, SYNESIS_ERR_SOCKET);
    assert_non_null(strstr(r.e[1].detail, "refused"));
    syn_test_run_for(f->loop, 0.2); /* no retry behind our back */
    assert_int_equal(r.n, 2);
    check_recorders_agree(&r);
    free_tunnel(f, t);
}

/* Each attempt opens a fresh socket: a peer that never answers sees every attempt (the first
 * connect and the three retries) from a new source port. */
static void test_each_attempt_new_socket(void **state) {
    fixture *f = *state;
    sink k;
    sink_open(f, &k);
    synesis_tunnel_config cfg;
    rc_config(f, &cfg, k.port);
    cfg.retry_initial_connect = 1;
    cfg.reconnect_max_attempts = 3;
    cfg.handshake_timeout = 0.2;
    recorder r = {0};
    synesis_tunnel *t = new_tunnel(f, &cfg, &r);
    assert_int_equal(synesis_tunnel_connect(t), 0);
    int fi = wait_state(f, &r, 0, SYNESIS_STATE_FAILED, 0, 5);
    assert_int_equal(fi, 4);
    expect_rec(&r, 0, SYNESIS_STATE_CONNECTING, 0);
    for (int i = 1; i <= 3; i++) {
        expect_rec(&r, i, SYNESIS_STATE_RECONNECTING, (uint32_t)i);
        assert_int_equal(r.e[i].error, SYNESIS_ERR_HANDSHAKE_TIMEOUT);
    }
    assert_int_equal(r.e[fi].error, SYNESIS_ERR_MAX_RECONNECTS);
    syn_test_run_for(f->loop, 0.05);
    if (k.nports != 4)
        fail_msg("%d attempts came from %d distinct ports", 4, k.nports);
    assert_true(k.datagrams >= 4);
    check_recorders_agree(&r);
    free_tunnel(f, t);
    sink_close(f, &k);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_graceful_edge_stop_and_return, setup, teardown),
        cmocka_unit_test_setup_teardown(test_silent_edge_stop_and_return, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blackhole_longer_than_idle_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gives_up_after_max_attempts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disconnect_while_waiting_to_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disconnect_during_attempt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_act_from_reconnecting_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stable_period, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unstable_connections_exhaust_attempts, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_backoff_fn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_initial_connect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_retry_initial_connect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_each_attempt_new_socket, setup, teardown),
    };
    const char *only = getenv("SYNESIS_TEST_FILTER"); /* e.g. "*graceful*" */
    if (only && *only)
        cmocka_set_test_filter(only);
    return cmocka_run_group_tests(tests, NULL, NULL);
}

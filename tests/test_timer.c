/*
 * Sub-millisecond waits against the reference edge over real UDP on loopback. ngtcp2 asks for
 * waits far below a millisecond on a fast path (the ACK delay is srtt / 8, a few microseconds here;
 * pacing gaps), and libev's epoll backend turns any of them into a whole millisecond of sleep: a
 * tunnel with a few requests in flight then stalled about 1 ms per round (see arm_timer in
 * src/qconn.c). The edge runs in a thread of its own. These tests never assert a speed: they
 * compare a run with itself.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "synesis/request.h"

typedef struct fixture {
    struct ev_loop *loop;
    synesis_tunnel *t;
    synesis_tunnel_config cfg;
    /* The edge runs in a thread with its own loop, as it would on its own machine: each end then
     * sleeps on its own timers (sharing one loop, either end's work keeps the other's awake). */
    struct ev_loop *eloop;
    syn_edge *edge;
    ev_async stop;
    pthread_t thread;
} fixture;

static const char *pki;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *edge_main(void *arg) {
    fixture *f = arg;
    ev_run(f->eloop, 0);
    return NULL;
}

static void edge_stop_cb(struct ev_loop *loop, ev_async *w, int revents) {
    (void)revents;
    fixture *f = w->data;
    syn_edge_free(f->edge);
    f->edge = NULL;
    ev_async_stop(loop, w);
    ev_break(loop, EVBREAK_ALL);
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof(*f));
    f->loop = ev_loop_new(EVFLAG_AUTO);
    f->eloop = ev_loop_new(EVFLAG_AUTO);
    pki = syn_test_pki_shared("timer-1");
    syn_edge_config ec;
    syn_test_edge_config(&ec, pki);
    ec.max_streams_bidi = 1000;
    f->edge = syn_test_edge_start(f->eloop, &ec);
    ev_async_init(&f->stop, edge_stop_cb);
    f->stop.data = f;
    ev_async_start(f->eloop, &f->stop);
    syn_test_tunnel_config(&f->cfg, pki, syn_edge_port(f->edge));
    assert_int_equal(pthread_create(&f->thread, NULL, edge_main, f), 0);
    f->cfg.idle_timeout = 10;
    f->cfg.request_timeout = 30;
    f->t = syn_test_tunnel_connected(f->loop, &f->cfg, NULL, f, 5);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    syn_test_finish(f->loop, f->t, NULL); /* the close reaches the edge meanwhile */
    ev_async_send(f->eloop, &f->stop);
    pthread_join(f->thread, NULL);
    assert_null(f->edge);
    assert_int_equal(ev_run(f->eloop, EVRUN_NOWAIT), 0);
    ev_loop_destroy(f->eloop);
    free(f);
    return 0;
}

/* ---- the loop's sleeps: libev calls release before it blocks in the poll, acquire after ---- */

static struct {
    double since;                 /* when the current sleep began */
    double slept;                 /* seconds spent blocked in the poll */
    unsigned sleeps, long_sleeps; /* sleeps, those of a millisecond or more */
} lp;

static void loop_release(struct ev_loop *loop) {
    (void)loop;
    lp.since = now_s();
}

static void loop_acquire(struct ev_loop *loop) {
    (void)loop;
    double d = now_s() - lp.since;
    lp.slept += d;
    lp.sleeps++;
    if (d >= 1e-3)
        lp.long_sleeps++;
}

/* ---- requests kept in flight ---- */

#define MAX_REQ 512

typedef struct pipe_run {
    fixture *f;
    uint8_t body[1024];
    int total, depth, submitted, done, ok;
    double start[MAX_REQ], lat[MAX_REQ];
} pipe_run;

static void pipe_submit(pipe_run *p);

static void pipe_resp(synesis_tunnel *t, synesis_request *req, const synesis_response *r,
                      void *ud) {
    (void)t;
    (void)req;
    pipe_run *p = ud;
    /* Responses of one connection come back in order of completion, not submission: the
     * request's index travels in its first bytes, echoed back. */
    int i = -1;
    if (r->status == 0 && r->len == sizeof(p->body)) {
        memcpy(&i, r->data, sizeof(i));
        p->ok++;
    }
    if (i >= 0 && i < p->total)
        p->lat[i] = now_s() - p->start[i];
    p->done++;
    pipe_submit(p);
}

static void pipe_submit(pipe_run *p) {
    while (p->submitted < p->total && p->submitted - p->done < p->depth) {
        int i = p->submitted++;
        memcpy(p->body, &i, sizeof(i));
        p->start[i] = now_s();
        assert_int_equal(
            synesis_tunnel_request(p->f->t, p->body, sizeof(p->body), NULL, pipe_resp, p, NULL), 0);
    }
}

static int pipe_done(void *ud) {
    pipe_run *p = ud;
    return p->done == p->total;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Runs total requests of 1 KiB, depth in flight; fills the sorted latencies. */
static void pipe_go(fixture *f, pipe_run *p, int total, int depth) {
    memset(p, 0, sizeof(*p));
    p->f = f;
    p->total = total;
    p->depth = depth;
    memset(p->body, 'x', sizeof(p->body)); /* not a command word: the edge echoes it */
    pipe_submit(p);
    assert_true(syn_test_run_until(f->loop, pipe_done, p, 60));
    assert_int_equal(p->ok, total);
    qsort(p->lat, (size_t)total, sizeof(double), cmp_double);
}

/*
 * 16 requests of 1 KiB in flight, 400 in all: 95 % of them are done within 20x the run's median
 * (no stall: a hiccup of the machine delays at most the 16 requests then in flight, 4 %). The
 * output says how long the loop slept, and how often a millisecond or more.
 */
static void test_no_millisecond_stall_in_flight(void **state) {
    fixture *f = *state;
    pipe_run *p = calloc(1, sizeof(*p));
    pipe_go(f, p, 200, 16); /* warm-up: RTT estimates, congestion window */
    memset(&lp, 0, sizeof(lp));
    ev_set_loop_release_cb(f->loop, loop_release, loop_acquire);
    double t0 = now_s();
    pipe_go(f, p, 400, 16);
    double wall = now_s() - t0;
    ev_set_loop_release_cb(f->loop, NULL, NULL);
    double median = p->lat[p->total / 2], p95 = p->lat[p->total * 95 / 100];
    double worst = p->lat[p->total - 1];
    print_message("16 in flight: median %.0f us, p99 %.0f us, worst %.0f us; loop asleep %.0f %% "
                  "of %.1f ms (%u sleeps, %u of 1 ms or more)\n",
                  median * 1e6, p->lat[p->total * 99 / 100] * 1e6, worst * 1e6,
                  lp.slept / wall * 100, wall * 1e3, lp.sleeps, lp.long_sleeps);
    assert_true(p95 < 20 * median);
    free(p);
}

/* Watches the tunnel's packet counter while the loop runs: when it last moved. */
typedef struct pkt_watch {
    synesis_tunnel *t;
    uint64_t pkts;
    double last;
} pkt_watch;

static int pkt_watch_pred(void *ud) {
    pkt_watch *w = ud;
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(w->t, &st);
    if (st.packets_sent != w->pkts) {
        w->pkts = st.packets_sent;
        w->last = now_s();
    }
    return 0;
}

/*
 * One request at a time. After each response the tunnel owes the edge an ACK, which ngtcp2 holds
 * for the ACK delay (srtt / 8: microseconds here) in case something else goes out to carry it;
 * nothing does, so its timer sends it. The tunnel's last packet after a response leaves within a
 * few request round trips (medians over 60 requests); with millisecond timers it left a whole
 * millisecond later, 10-20 round trips on loopback.
 */
static void test_ack_delay_not_a_millisecond(void **state) {
    fixture *f = *state;
    pipe_run *p = calloc(1, sizeof(*p));
    pipe_go(f, p, 100, 1); /* warm-up */
    enum { N = 60 };
    double rtt[N], ack[N];
    for (int i = 0; i < N; i++) {
        pipe_go(f, p, 1, 1);
        rtt[i] = p->lat[0];
        pkt_watch w = {.t = f->t, .last = now_s()};
        synesis_tunnel_stats st;
        synesis_tunnel_get_stats(f->t, &st);
        w.pkts = st.packets_sent;
        double t0 = w.last;
        syn_test_run_until(f->loop, pkt_watch_pred, &w, 0.005);
        ack[i] = w.last - t0;
    }
    qsort(rtt, N, sizeof(double), cmp_double);
    qsort(ack, N, sizeof(double), cmp_double);
    print_message("1 in flight: median request %.0f us; last packet after a response: median %.0f "
                  "us, max %.0f us\n",
                  rtt[N / 2] * 1e6, ack[N / 2] * 1e6, ack[N - 1] * 1e6);
    assert_true(ack[N / 2] < 4 * rtt[N / 2]);
    free(p);
}

/* The process's timerfds (the driver's fine timers, both ends' since the edge is a thread). */
static int count_timerfds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char path[300], target[64];
        snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
        ssize_t len = readlink(path, target, sizeof(target) - 1);
        if (len > 0) {
            target[len] = 0;
            if (strstr(target, "timerfd"))
                n++;
        }
    }
    closedir(d);
    return n;
}

static int no_timerfd(void *ud) {
    (void)ud;
    return count_timerfds() == 0;
}

/* Waits until no timerfd is open, checking every 10 ms: the loop alone would only wake for the
 * tunnel's keep-alive, just when the edge (another thread) holds one for its ACK. */
static void poll_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)w;
    (void)revents;
}

static int wait_no_timerfd(struct ev_loop *loop, double timeout) {
    ev_timer poll;
    ev_timer_init(&poll, poll_cb, 0.01, 0.01);
    ev_timer_start(loop, &poll);
    int ok = syn_test_run_until(loop, no_timerfd, NULL, timeout);
    ev_timer_stop(loop, &poll);
    return ok;
}

/* A busy connection holds a timerfd for its short waits; once idle (its next wait 100 ms or more
 * away) it gives the descriptor back. */
static void test_idle_connection_closes_its_timerfd(void **state) {
    fixture *f = *state;
    pipe_run *p = calloc(1, sizeof(*p));
    pipe_go(f, p, 200, 16);
    int busy = count_timerfds();
    print_message("timerfds right after the requests: %d\n", busy);
    assert_true(busy >= 0);
    if (!wait_no_timerfd(f->loop, 5))
        fail_msg("%d timerfds still open", count_timerfds());
    /* And again when traffic resumes. */
    pipe_go(f, p, 50, 4);
    if (!wait_no_timerfd(f->loop, 5))
        fail_msg("%d timerfds still open after more requests", count_timerfds());
    free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_no_millisecond_stall_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ack_delay_not_a_millisecond, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_connection_closes_its_timerfd, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

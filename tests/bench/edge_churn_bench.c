/*
 * The edge under connection churn: N connections opened and closed, C at a time, each a full
 * mutual-TLS handshake by a bare QUIC client with the device certificate, closed with
 * CONNECTION_CLOSE as soon as it is up. The edge runs alone in a child process. Every N/20
 * connections it prints the edge's RSS and its table counts (connections, closing periods,
 * connection IDs); at the end the RSS growth after warm-up (the first tenth), which must be flat:
 * every connection's state, connection IDs and closing period leave with it.
 *
 *   edge_churn_bench [-n connections] [-c concurrent]
 *
 * One JSON line per sample and a summary line. Not a test: a figure for docs/reliability.md.
 */
#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct churn {
    struct ev_loop *loop;
    bench_edge *be;
    const char *pki;
    bench_raw **slot;
    double *started;
    int c, n;
    int opened, done, failed;
    long rss_warm;
    double t0;
    ev_timer tick;
} churn;

static void sample(churn *ch, int final) {
    syn_edge_stats st;
    double cpu;
    bench_edge_query(ch->be, &st, &cpu);
    long rss = bench_status_kb(ch->be->pid, "VmRSS");
    double el = bench_now() - ch->t0;
    printf("{\"figure\":\"edge_churn_sample\",\"connections\":%d,\"failed\":%d,\"seconds\":%.2f,"
           "\"edge_rss_kb\":%ld,\"edge_active\":%llu,\"edge_closing\":%llu,\"edge_cids\":%llu,"
           "\"edge_cpu_s\":%.2f%s}\n",
           ch->done, ch->failed, el, rss, (unsigned long long)st.active,
           (unsigned long long)st.closing, (unsigned long long)st.cids, cpu,
           final ? ",\"final\":true" : "");
    fflush(stdout);
    if (!ch->rss_warm && ch->done >= ch->n / 10)
        ch->rss_warm = rss;
}

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)revents;
    churn *ch = w->data;
    double now = bench_now();
    for (int i = 0; i < ch->c; i++) {
        bench_raw *r = ch->slot[i];
        if (r && (r->connected || r->closed || now - ch->started[i] > 10)) {
            if (!r->connected)
                ch->failed++;
            if (!r->closed)
                syn_qconn_close(r->qc, 0, "churn");
            bench_raw_free(r);
            ch->slot[i] = r = NULL;
            ch->done++;
            if (ch->done % (ch->n / 20 ? ch->n / 20 : 1) == 0)
                sample(ch, 0);
        }
        if (!r && ch->opened < ch->n) {
            ch->slot[i] = bench_raw_new(loop, ch->be->port, ch->pki);
            ch->started[i] = now;
            ch->opened++;
        }
    }
    if (ch->done >= ch->n)
        ev_break(loop, EVBREAK_ALL);
}

int main(int argc, char **argv) {
    int n = 100000, c = 8, opt;
    while ((opt = getopt(argc, argv, "n:c:")) != -1) {
        switch (opt) {
        case 'n':
            n = atoi(optarg);
            break;
        case 'c':
            c = atoi(optarg);
            break;
        default:
            fprintf(stderr, "usage: %s [-n connections] [-c concurrent]\n", argv[0]);
            return 2;
        }
    }
    if (n < 1 || c < 1) {
        fprintf(stderr, "n and c must be positive\n");
        return 2;
    }
    const char *pki = bench_pki("churn-device");
    bench_edge be;
    bench_edge_start(&be, pki); /* before this process creates its loop */
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    churn ch = {.loop = loop, .be = &be, .pki = pki, .c = c, .n = n};
    ch.slot = calloc((size_t)c, sizeof(*ch.slot));
    ch.started = calloc((size_t)c, sizeof(double));
    if (!ch.slot || !ch.started)
        return 1;
    long rss0 = bench_status_kb(be.pid, "VmRSS");
    ch.t0 = bench_now();
    ev_timer_init(&ch.tick, tick_cb, 0., 0.0005);
    ch.tick.data = &ch;
    ev_timer_start(loop, &ch.tick);
    ev_run(loop, 0);
    ev_timer_stop(loop, &ch.tick);
    /* Let the last closing periods end (three PTOs, at least SYN_EDGE_CLOSING_MIN_MS). */
    usleep(500 * 1000);
    sample(&ch, 1);
    syn_edge_stats st;
    double cpu;
    bench_edge_query(&be, &st, &cpu);
    long rss1 = bench_status_kb(be.pid, "VmRSS");
    double el = bench_now() - ch.t0;
    printf("{\"figure\":\"edge_churn\",\"connections\":%d,\"concurrent\":%d,\"failed\":%d,"
           "\"seconds\":%.1f,\"per_second\":%.0f,\"edge_rss_start_kb\":%ld,"
           "\"edge_rss_warm_kb\":%ld,\"edge_rss_end_kb\":%ld,\"edge_rss_growth_after_warmup_kb\":"
           "%ld,\"edge_active\":%llu,\"edge_closing\":%llu,\"edge_cids\":%llu,\"edge_handshakes\":"
           "%llu,\"edge_cpu_s\":%.2f}\n",
           n, c, ch.failed, el, n / el, rss0, ch.rss_warm, rss1, rss1 - ch.rss_warm,
           (unsigned long long)st.active, (unsigned long long)st.closing,
           (unsigned long long)st.cids, (unsigned long long)st.handshakes, cpu);
    free(ch.slot);
    free(ch.started);
    ev_loop_destroy(loop);
    bench_edge_stop(&be);
    return ch.failed ? 1 : 0;
}

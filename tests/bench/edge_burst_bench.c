/*
 * A burst of new connections: N tunnels on one loop call connect at the same instant against the
 * reference edge running alone in a child process (default configuration). Prints the time until
 * all are Connected, the median and slowest handshake (stats.handshake_time of each tunnel), how
 * many connected, and the edge's Retry count.
 *
 *   edge_burst_bench [-n tunnels] [-w max_wait_seconds]
 */
#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct burst {
    struct ev_loop *loop;
    int n, connected;
    double t0, t_all;
    double *connected_at;
    synesis_tunnel **t;
} burst;

static void on_state(synesis_tunnel *t, const synesis_tunnel_state *old_state,
                     const synesis_tunnel_state *new_state, void *ud) {
    (void)old_state;
    burst *b = ud;
    if (new_state->kind != SYNESIS_STATE_CONNECTED)
        return;
    for (int i = 0; i < b->n; i++) {
        if (b->t[i] == t && b->connected_at[i] == 0) {
            b->connected_at[i] = bench_now() - b->t0;
            if (++b->connected == b->n) {
                b->t_all = b->connected_at[i];
                ev_break(b->loop, EVBREAK_ONE);
            }
        }
    }
}

static void deadline(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ONE);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    int n = 300;
    double wait = 30;
    int opt;
    while ((opt = getopt(argc, argv, "n:w:")) != -1) {
        switch (opt) {
        case 'n':
            n = atoi(optarg);
            break;
        case 'w':
            wait = atof(optarg);
            break;
        default:
            fprintf(stderr, "usage: %s [-n tunnels] [-w max_wait_seconds]\n", argv[0]);
            return 2;
        }
    }
    const char *pki = bench_pki("burst-device");
    bench_edge be;
    bench_edge_start(&be, pki); /* before this process creates its loop */
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);

    burst b = {0};
    b.n = n;
    b.loop = loop;
    b.t = calloc((size_t)n, sizeof(*b.t));
    b.connected_at = calloc((size_t)n, sizeof(double));
    synesis_tunnel_config cfg;
    bench_tunnel_config(&cfg, pki, be.port);
    cfg.handshake_timeout = 20;
    cfg.idle_timeout = 60;
    synesis_tunnel_callbacks cbs = {.struct_size = sizeof(synesis_tunnel_callbacks),
                                    .on_state = on_state};
    char detail[512];
    for (int i = 0; i < n; i++) {
        int rv = synesis_tunnel_new(&b.t[i], loop, &cfg, &cbs, &b, detail, sizeof(detail));
        if (rv != 0) {
            fprintf(stderr, "tunnel %d: %s: %s\n", i, synesis_error_name(rv), detail);
            return 1;
        }
    }
    b.t0 = bench_now();
    for (int i = 0; i < n; i++)
        synesis_tunnel_connect(b.t[i]);
    ev_timer dl;
    ev_timer_init(&dl, deadline, wait, 0.);
    ev_timer_start(loop, &dl);
    ev_run(loop, 0);
    ev_timer_stop(loop, &dl);
    double elapsed = bench_now() - b.t0;

    double *hs = calloc((size_t)n, sizeof(double));
    int nhs = 0;
    for (int i = 0; i < n; i++) {
        if (!b.connected_at[i])
            continue;
        synesis_tunnel_stats ts;
        synesis_tunnel_get_stats(b.t[i], &ts);
        hs[nhs++] = ts.handshake_time;
    }
    qsort(hs, (size_t)nhs, sizeof(double), cmp_double);
    syn_edge_stats st;
    double cpu;
    bench_edge_query(&be, &st, &cpu);
    printf("edge_burst_bench: %d tunnels connecting at once\n", n);
    printf("  connected: %d/%d; all connected after %.3f s%s\n", b.connected, n,
           b.connected == n ? b.t_all : elapsed, b.connected == n ? "" : " (gave up)");
    if (nhs)
        printf("  handshake time: median %.3f s, 90th percentile %.3f s, slowest %.3f s\n",
               hs[nhs / 2], hs[(nhs * 9) / 10 < nhs ? (nhs * 9) / 10 : nhs - 1], hs[nhs - 1]);
    printf("  edge: %llu connections accepted, %llu handshakes, %llu Retry packets sent, "
           "CPU %.2f s\n",
           (unsigned long long)st.accepted, (unsigned long long)st.handshakes,
           (unsigned long long)st.retries, cpu);

    for (int i = 0; i < n; i++)
        synesis_tunnel_free(b.t[i]);
    ev_timer_init(&dl, deadline, 0.1, 0.);
    ev_timer_start(loop, &dl);
    ev_run(loop, 0);
    bench_edge_stop(&be);
    ev_loop_destroy(loop);
    free(hs);
    free(b.t);
    free(b.connected_at);
    return 0;
}

/*
 * The edge's connection-ID table under clients that migrate without end.
 *
 * The edge runs alone in a child process. K bare QUIC clients connect and migrate continuously for
 * T seconds (each migration: a new local UDP socket, an immediate migration, then wait until the
 * edge answered on the new path and acknowledged everything; the edge retires one of its IDs and
 * issues another each time). The migrations then pause (the clients stay connected) and an
 * unrelated tunnel sends 1 KiB echo requests, F in flight, for M seconds.
 * Prints the edge's connection-ID count, the request rate and the edge's CPU time.
 *
 *   edge_cid_bench [-k clients] [-t seconds] [-m measure_seconds] [-f in_flight] [-s size]
 */
#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "synesis/request.h"

typedef struct migrator {
    bench_raw *c;
    int pending;
    uint64_t after;
    uint64_t migrations;
    uint64_t blocked;
    uint64_t reconnects;
} migrator;

typedef struct bench {
    struct ev_loop *loop;
    migrator *m;
    int k;
    int migrating;
    uint16_t port;
    const char *pki;
    synesis_tunnel *t;
    uint8_t *payload;
    size_t size;
    int measuring;
    uint64_t done, failed, in_flight;
} bench;

static void step(bench *b, migrator *m) {
    bench_raw *c = m->c;
    if (c->closed) {
        /* The edge ended it (ngtcp2 can give up on back-to-back migrations with
         * CONNECTION_ID_LIMIT_ERROR): a new connection takes its place. */
        bench_raw_free(c);
        m->c = bench_raw_new(b->loop, b->port, b->pki);
        m->pending = 0;
        m->reconnects++;
        return;
    }
    if (!c->connected)
        return;
    if (m->pending) {
        ngtcp2_conn_info ci;
        syn_qconn_info(c->qc, &ci);
        if (c->rx_count <= m->after || ci.bytes_in_flight != 0)
            return;
        m->pending = 0;
        m->migrations++;
    }
    int rv = bench_raw_migrate(c);
    if (rv == 0) {
        m->pending = 1;
        m->after = c->rx_count;
    } else if (rv == SYNESIS_ERR_WOULD_BLOCK) {
        m->blocked++;
    } else {
        fprintf(stderr, "migration failed: %s\n", synesis_error_name(rv));
    }
}

static void tick(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    bench *b = w->data;
    if (!b->migrating)
        return;
    for (int i = 0; i < b->k; i++)
        step(b, &b->m[i]);
}

static void stop_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ONE);
}

static void run_for(struct ev_loop *loop, double s) {
    ev_timer t;
    ev_timer_init(&t, stop_cb, s, 0.);
    ev_timer_start(loop, &t);
    ev_run(loop, 0);
    ev_timer_stop(loop, &t);
}

static void submit(bench *b);

static void on_resp(synesis_tunnel *t, synesis_request *req, const synesis_response *r, void *ud) {
    (void)t;
    (void)req;
    bench *b = ud;
    b->in_flight--;
    if (r->status == 0 && r->len == b->size)
        b->done++;
    else
        b->failed++;
    if (b->measuring)
        submit(b);
}

static void submit(bench *b) {
    if (synesis_tunnel_request(b->t, b->payload, b->size, NULL, on_resp, b, NULL) == 0)
        b->in_flight++;
    else
        b->failed++;
}

static void connected_check(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)revents;
    bench *b = w->data;
    if (synesis_tunnel_is_connected(b->t))
        ev_break(loop, EVBREAK_ONE);
}

int main(int argc, char **argv) {
    int k = 4, inflight = 16;
    double t_mig = 60, t_meas = 5;
    size_t size = 1024;
    int opt;
    while ((opt = getopt(argc, argv, "k:t:m:f:s:")) != -1) {
        switch (opt) {
        case 'k':
            k = atoi(optarg);
            break;
        case 't':
            t_mig = atof(optarg);
            break;
        case 'm':
            t_meas = atof(optarg);
            break;
        case 'f':
            inflight = atoi(optarg);
            break;
        case 's':
            size = (size_t)atol(optarg);
            break;
        default:
            fprintf(stderr,
                    "usage: %s [-k clients] [-t seconds] [-m measure_seconds] "
                    "[-f in_flight] [-s size]\n",
                    argv[0]);
            return 2;
        }
    }
    const char *pki = bench_pki("bench-device");
    bench_edge be;
    bench_edge_start(&be, pki); /* before this process creates its loop */

    bench b = {0};
    b.loop = ev_loop_new(EVFLAG_AUTO);
    b.k = k;
    b.port = be.port;
    b.pki = pki;
    b.size = size;
    b.payload = malloc(size);
    memset(b.payload, 'x', size); /* not a command word: echoed */
    b.m = calloc((size_t)k, sizeof(*b.m));
    for (int i = 0; i < k; i++)
        b.m[i].c = bench_raw_new(b.loop, be.port, pki);
    run_for(b.loop, 0.5);
    for (int i = 0; i < k; i++)
        if (!b.m[i].c->connected) {
            fprintf(stderr, "migrating client %d did not connect: %s\n", i, b.m[i].c->detail);
            return 1;
        }
    syn_edge_stats st;
    double cpu0, cpu1, cpu2;
    bench_edge_query(&be, &st, &cpu0);
    printf("edge_cid_bench: %d migrating clients for %.0f s, then %.0f s of %zu-byte echo requests "
           "(%d in flight)\n",
           k, t_mig, t_meas, size, inflight);
    printf("  edge connection IDs after the handshakes: %llu\n", (unsigned long long)st.cids);

    ev_timer tk;
    ev_timer_init(&tk, tick, 0.001, 0.001);
    tk.data = &b;
    ev_timer_start(b.loop, &tk);
    b.migrating = 1;
    double t0 = bench_now();
    run_for(b.loop, t_mig);
    b.migrating = 0;
    double t1 = bench_now();
    uint64_t migs = 0, blocked = 0, reconnects = 0;
    int alive = 0;
    for (int i = 0; i < k; i++) {
        migs += b.m[i].migrations;
        blocked += b.m[i].blocked;
        reconnects += b.m[i].reconnects;
        alive += !b.m[i].c->closed;
    }
    run_for(b.loop, 0.2); /* the last migrations settle */
    bench_edge_query(&be, &st, &cpu1);
    printf("  migrations: %llu in %.1f s (%.0f/s; %llu waits for a spare ID), clients connected: "
           "%d/%d, connections replaced: %llu\n",
           (unsigned long long)migs, t1 - t0, (double)migs / (t1 - t0), (unsigned long long)blocked,
           alive, k, (unsigned long long)reconnects);
    printf("  edge connection IDs after migrating: %llu, connections %llu (edge CPU during "
           "migrations: %.2f s)\n",
           (unsigned long long)st.cids, (unsigned long long)st.active, cpu1 - cpu0);

    /* The unrelated client. */
    synesis_tunnel_config cfg;
    bench_tunnel_config(&cfg, pki, be.port);
    cfg.request_timeout = 30;
    char detail[512];
    int rv = synesis_tunnel_new(&b.t, b.loop, &cfg, NULL, &b, detail, sizeof(detail));
    if (rv != 0 || synesis_tunnel_connect(b.t) != 0) {
        fprintf(stderr, "tunnel: %s: %s\n", synesis_error_name(rv), detail);
        return 1;
    }
    ev_timer cc;
    ev_timer_init(&cc, connected_check, 0.001, 0.001);
    cc.data = &b;
    ev_timer_start(b.loop, &cc);
    ev_run(b.loop, 0);
    ev_timer_stop(b.loop, &cc);
    bench_edge_query(&be, &st, &cpu1);
    b.measuring = 1;
    double m0 = bench_now();
    for (int i = 0; i < inflight; i++)
        submit(&b);
    run_for(b.loop, t_meas);
    b.measuring = 0;
    double m1 = bench_now();
    uint64_t done = b.done;
    bench_edge_query(&be, &st, &cpu2);
    printf("  unrelated client: %llu requests in %.2f s = %.0f req/s (%llu failed); edge CPU "
           "%.2f s (%.0f%% of one core)\n",
           (unsigned long long)done, m1 - m0, (double)done / (m1 - m0),
           (unsigned long long)b.failed, cpu2 - cpu1, 100 * (cpu2 - cpu1) / (m1 - m0));
    printf("  edge connection IDs at the end: %llu; edge CPU total: %.2f s\n",
           (unsigned long long)st.cids, cpu2);

    while (b.in_flight)
        run_for(b.loop, 0.05);
    synesis_tunnel_free(b.t);
    for (int i = 0; i < k; i++)
        bench_raw_free(b.m[i].c);
    ev_timer_stop(b.loop, &tk);
    run_for(b.loop, 0.05);
    bench_edge_stop(&be);
    ev_loop_destroy(b.loop);
    free(b.m);
    free(b.payload);
    return 0;
}

/*
 * What one hostile device can make a synesis-edge process hold, measured from outside: the
 * edge's VmRSS and VmHWM (/proc/PID/status) before and after one connection runs an attack.
 * Uses only the public API, so the same program measures any edge build.
 *
 *   edge_mem_bench --port P --edge-pid PID --pki DIR --mode sleep|src [--streams N] [--size B]
 *
 *   sleep: N requests "SLEEP 1000\n" + B bytes each at once (the edge must buffer the bodies)
 *   src:   N streams asking "SRC B\n" that are never read (paused)
 *
 * Prints one JSON line. Not a test: a figure for the closing notes and docs/reliability.md.
 */
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "synesis/request.h"
#include "synesis/stream.h"
#include "synesis/tunnel.h"

static int results, reset_0x11, ok;

static void on_state(synesis_tunnel *t, const synesis_tunnel_state *o,
                     const synesis_tunnel_state *n, void *ud) {
    (void)t;
    (void)o;
    (void)ud;
    if (n->kind == SYNESIS_STATE_FAILED) {
        fprintf(stderr, "edge_mem_bench: connect failed: %s\n", n->error_detail);
        exit(1);
    }
}

static void on_resp(synesis_tunnel *t, synesis_request *r, const synesis_response *resp, void *ud) {
    (void)t;
    (void)r;
    (void)ud;
    results++;
    if (resp->status == 0)
        ok++;
    else if (resp->status == SYNESIS_ERR_STREAM_RESET && resp->app_error_code == 0x11)
        reset_0x11++;
}

static void keep(const void *d, size_t n, void *ud) {
    (void)ud;
    (void)d;
    (void)n;
}

static void end_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)revents;
    (void)w;
    ev_break(loop, EVBREAK_ALL);
}

static void run_secs(struct ev_loop *loop, double s) {
    ev_timer end;
    ev_timer_init(&end, end_cb, s, 0.);
    ev_timer_start(loop, &end);
    ev_run(loop, 0);
    ev_timer_stop(loop, &end);
}

int main(int argc, char **argv) {
    int port = 0, streams = 16;
    long pid = 0;
    const char *pki = NULL, *mode = "sleep";
    size_t size = 60u * 1024 * 1024;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port"))
            port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--edge-pid"))
            pid = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--pki"))
            pki = argv[i + 1];
        else if (!strcmp(argv[i], "--mode"))
            mode = argv[i + 1];
        else if (!strcmp(argv[i], "--streams"))
            streams = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--size"))
            size = (size_t)strtoull(argv[i + 1], NULL, 10);
    }
    if (!port || !pid || !pki) {
        fprintf(stderr, "usage: edge_mem_bench --port P --edge-pid PID --pki DIR "
                        "--mode sleep|src [--streams N] [--size BYTES]\n");
        return 2;
    }
    struct ev_loop *loop = EV_DEFAULT;
    char url[64], cert[512], key[512], ca[512], detail[256];
    snprintf(url, sizeof(url), "quic://127.0.0.1:%d", port);
    snprintf(cert, sizeof(cert), "%s/device.pem", pki);
    snprintf(key, sizeof(key), "%s/device.key", pki);
    snprintf(ca, sizeof(ca), "%s/ca.pem", pki);
    synesis_tunnel_config cfg;
    synesis_tunnel_config_init(&cfg);
    cfg.cloud_url = url;
    cfg.server_name = "localhost";
    cfg.cert_path = cert;
    cfg.key_path = key;
    cfg.ca_path = ca;
    cfg.use_system_trust = 0;
    cfg.heartbeat_interval = 0;
    cfg.request_timeout = 60;
    cfg.max_response_size = 64u * 1024 * 1024; /* echoes are read (and dropped) */
    synesis_tunnel_callbacks cb = {.struct_size = sizeof(synesis_tunnel_callbacks),
                                   .on_state = on_state};
    synesis_tunnel *t;
    if (synesis_tunnel_new(&t, loop, &cfg, &cb, NULL, detail, sizeof(detail)) != 0) {
        fprintf(stderr, "edge_mem_bench: %s\n", detail);
        return 1;
    }
    synesis_tunnel_connect(t);
    while (!synesis_tunnel_is_connected(t))
        ev_run(loop, EVRUN_ONCE);
    long rss0 = bench_status_kb(pid, "VmRSS"), hwm0 = bench_status_kb(pid, "VmHWM");
    uint8_t *body = NULL;
    if (!strcmp(mode, "sleep")) {
        body = malloc(size);
        memset(body, 'z', size);
        memcpy(body, "SLEEP 1000\n", 11);
        for (int i = 0; i < streams; i++)
            synesis_tunnel_request_nocopy(t, body, size, keep, NULL, NULL, on_resp, NULL, NULL);
        while (results < streams)
            run_secs(loop, 0.05);
    } else {
        synesis_stream_callbacks scb = {.struct_size = sizeof(synesis_stream_callbacks)};
        char cmd[64];
        int n = snprintf(cmd, sizeof(cmd), "SRC %zu\n", size);
        for (int i = 0; i < streams; i++) {
            synesis_stream *s;
            if (synesis_tunnel_open_stream(t, &scb, NULL, &s) != 0)
                break;
            synesis_stream_pause(s);
            size_t acc;
            synesis_stream_write(s, cmd, (size_t)n, &acc);
            synesis_stream_finish(s);
        }
        run_secs(loop, 3.0);
    }
    long rss1 = bench_status_kb(pid, "VmRSS"), hwm1 = bench_status_kb(pid, "VmHWM");
    printf("{\"mode\":\"%s\",\"streams\":%d,\"size\":%zu,\"edge_rss_before_kb\":%ld,"
           "\"edge_rss_after_kb\":%ld,\"edge_hwm_before_kb\":%ld,\"edge_hwm_after_kb\":%ld,"
           "\"answered\":%d,\"refused_0x11\":%d}\n",
           mode, streams, size, rss0, rss1, hwm0, hwm1, ok, reset_0x11);
    synesis_tunnel_free(t);
    free(body);
    return 0;
}

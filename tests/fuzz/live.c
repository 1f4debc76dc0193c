/* The live-connection fixture (live.h). */
#include "live.h"

#include "synesis/identity.h"

#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static fz_live *keylog_owner; /* the fixture whose secrets the TLS key log fills */
static char cleanup_dir[256];

static fz_live *stats_owner;
static double connect_seconds;

static void cleanup(void) {
    if (stats_owner && getenv("FUZZ_LIVE_STATS"))
        fprintf(stderr, "fuzz fixture: %llu inputs, %llu connections (%.3f s connecting)\n",
                (unsigned long long)stats_owner->inputs, (unsigned long long)stats_owner->connects,
                connect_seconds);
    static const char *const files[] = {"ca.pem",   "ca.key",     "edge.pem",
                                        "edge.key", "device.pem", "device.key"};
    if (!cleanup_dir[0])
        return;
    char p[320];
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", cleanup_dir, files[i]);
        unlink(p);
    }
    rmdir(cleanup_dir);
}

static void die(const char *what, int rv, const char *detail) {
    fprintf(stderr, "fuzz fixture: %s: %s: %s\n", what, synesis_error_name(rv),
            detail ? detail : "");
    abort();
}

static int unhex(const char *s, uint8_t *out, size_t max) {
    size_t n = 0;
    while (s[0] && s[1] && s[0] != ' ' && n < max) {
        unsigned v;
        if (sscanf(s, "%2x", &v) != 1)
            return -1;
        out[n++] = (uint8_t)v;
        s += 2;
    }
    return (int)n;
}

/* "SERVER_TRAFFIC_SECRET_0 <client random> <secret>": the 1-RTT secrets of the handshake. */
static void keylog_cb(const SSL *ssl, const char *line) {
    (void)ssl;
    fz_live *L = keylog_owner;
    if (!L)
        return;
    int server = strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24) == 0;
    int client = strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24) == 0;
    if (!server && !client)
        return;
    const char *sp = strchr(line + 24, ' ');
    if (!sp)
        return;
    int n = unhex(sp + 1, server ? L->server_secret : L->client_secret, 64);
    if (n > 0)
        L->secret_len = (size_t)n;
}

static int live_ok(const fz_live *L) {
    return synesis_tunnel_is_connected(L->t) && L->t->qc && syn_qconn_handshake_completed(L->t->qc);
}

static void connect_now(fz_live *L) {
    ev_tstamp t0 = ev_time();
    synesis_tunnel_state st;
    synesis_tunnel_get_state(L->t, &st);
    if (st.kind != SYNESIS_STATE_DISCONNECTED && st.kind != SYNESIS_STATE_FAILED)
        (void)synesis_tunnel_disconnect(L->t);
    int rv = synesis_tunnel_connect(L->t);
    if (rv != 0)
        die("connect", rv, synesis_tunnel_last_error(L->t));
    ev_tstamp end = ev_time() + 20.0;
    while (!live_ok(L) && ev_time() < end)
        ev_run(L->loop, EVRUN_ONCE);
    if (!live_ok(L))
        die("no connection to the in-process edge", 0, synesis_tunnel_last_error(L->t));
    L->connects++;
    connect_seconds += ev_time() - t0;
}

void fz_live_reconnect(fz_live *L) { connect_now(L); }

int fz_live_ensure(fz_live *L) {
    if (live_ok(L))
        return 0;
    connect_now(L);
    return 1;
}

void fz_live_next_input(fz_live *L, unsigned every) {
    if (every && ++L->inputs % every == 0)
        connect_now(L);
    else
        fz_live_ensure(L);
}

void fz_live_init(fz_live *L, const fz_live_options *o) {
    memset(L, 0, sizeof(*L));
    char detail[512];
    const char *tmp = getenv("TMPDIR");
    snprintf(L->dir, sizeof(L->dir), "%s/synesis-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(L->dir))
        die("mkdtemp", 0, L->dir);
    snprintf(cleanup_dir, sizeof(cleanup_dir), "%s", L->dir);
    stats_owner = L;
    atexit(cleanup);
    int rv = synesis_identity_create_test_pki(L->dir, "fuzz", detail, sizeof(detail));
    if (rv != 0)
        die("test PKI", rv, detail);
    static char paths[6][320];
    snprintf(paths[0], sizeof(paths[0]), "%s/edge.pem", L->dir);
    snprintf(paths[1], sizeof(paths[1]), "%s/edge.key", L->dir);
    snprintf(paths[2], sizeof(paths[2]), "%s/ca.pem", L->dir);
    snprintf(paths[3], sizeof(paths[3]), "%s/device.pem", L->dir);
    snprintf(paths[4], sizeof(paths[4]), "%s/device.key", L->dir);

    L->loop = ev_loop_new(EVFLAG_AUTO);
    syn_edge_config ec;
    syn_edge_config_init(&ec);
    ec.listen = "127.0.0.1:0";
    ec.cert_file = paths[0];
    ec.key_file = paths[1];
    ec.ca_file = paths[2];
    /* Connections the packet targets leave behind on the edge (their tunnel side went away
     * without telling it) end after this, when the loop next runs (at a reconnect). */
    ec.idle_timeout = 5;
    ec.max_streams_bidi = o->edge_streams_bidi ? o->edge_streams_bidi : 1u << 20;
    ec.max_streams_uni = o->edge_streams_uni ? o->edge_streams_uni : 1u << 20;
    ec.retry_threshold = SYN_EDGE_RETRY_NEVER;
    rv = syn_edge_new(&L->edge, L->loop, &ec, detail);
    if (rv == 0)
        rv = syn_edge_start(L->edge, detail);
    if (rv != 0)
        die("edge", rv, detail);

    static char url[64];
    snprintf(url, sizeof(url), "quic://127.0.0.1:%u", (unsigned)syn_edge_port(L->edge));
    synesis_tunnel_config cfg;
    synesis_tunnel_config_init(&cfg);
    cfg.cloud_url = url;
    cfg.server_name = "localhost";
    cfg.cert_path = paths[3];
    cfg.key_path = paths[4];
    cfg.ca_path = paths[2];
    cfg.use_system_trust = 0;
    cfg.handshake_timeout = 10;
    cfg.idle_timeout = 3600;
    cfg.keep_alive_interval = 0;
    cfg.heartbeat_interval = o->heartbeat_interval;
    cfg.close_linger = 0;
    cfg.reconnect_max_attempts = 1000000;
    if (o->max_response_size)
        cfg.max_response_size = o->max_response_size;
    if (o->stream_send_buffer)
        cfg.stream_send_buffer = o->stream_send_buffer;
    cfg.log = NULL;
    rv = synesis_tunnel_new(&L->t, L->loop, &cfg, o->callbacks, o->user_data, detail,
                            sizeof(detail));
    if (rv != 0)
        die("tunnel", rv, detail);
    keylog_owner = L;
    SSL_CTX_set_keylog_callback(L->t->ssl_ctx, keylog_cb);
    connect_now(L);
}

/* An application built against the frozen 1.0 public headers (tests/abi/include-1.0 and nothing
 * else) and run against the library of today: the upgrade path of docs/integration.md ("API
 * conventions"). The headers here grow; that copy never changes, so this program keeps being
 * the binary of an older application.
 *
 *   old_app PORT PKI_DIR DEVICE_ID
 *
 * Connects to the reference edge on 127.0.0.1:PORT with the test PKI in PKI_DIR, makes a request
 * and a stream, reads the state and the statistics and checks them (the sizes the library wrote
 * are those of this program's structs, and not one byte past them), inspects its certificate,
 * then disconnects and connects again: with the members the 1.1 library appended at their
 * defaults (resumption on), that second connection resumes the first one's session, which this
 * program can only see in stats_json (its stats struct has no resumed_connections) and
 * old_app_test.sh in the edge's log. Exits 0 when all is as expected, 1 with a message
 * otherwise. */
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <synesis/synesis.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "old_app: check failed at line %d: %s\n", __LINE__, #cond);            \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

typedef struct app {
    struct ev_loop *loop;
    int connected;
    size_t state_size;
    int heartbeats;
    size_t hb_size;
    int responses;
    int resp_status;
    size_t resp_size;
    char resp[64];
    int closes;
    int close_status;
    char close_detail[64];
    char echoed[64];
    size_t echoed_len;
} app;

static void on_state(synesis_tunnel *t, const synesis_tunnel_state *o,
                     const synesis_tunnel_state *n, void *ud) {
    (void)t;
    (void)o;
    app *a = ud;
    a->state_size = n->struct_size;
    if (n->kind == SYNESIS_STATE_CONNECTED)
        a->connected = 1;
    if (n->kind == SYNESIS_STATE_FAILED)
        fprintf(stderr, "old_app: Failed: %s\n", n->error_detail);
}

static void on_heartbeat(synesis_tunnel *t, const synesis_heartbeat_info *info, void *ud) {
    (void)t;
    app *a = ud;
    a->heartbeats++;
    a->hb_size = info->struct_size;
}

static void on_response(synesis_tunnel *t, synesis_request *req, const synesis_response *r,
                        void *ud) {
    (void)t;
    (void)req;
    app *a = ud;
    a->responses++;
    a->resp_status = r->status;
    a->resp_size = r->struct_size;
    snprintf(a->resp, sizeof(a->resp), "%.*s", (int)r->len, r->data ? (const char *)r->data : "");
}

static void on_data(synesis_stream *s, const uint8_t *data, size_t len, void *ud) {
    (void)s;
    app *a = ud;
    if (a->echoed_len + len < sizeof(a->echoed)) {
        memcpy(a->echoed + a->echoed_len, data, len);
        a->echoed_len += len;
    }
}

static void on_close(synesis_stream *s, int status, uint64_t code, const char *detail, void *ud) {
    (void)s;
    (void)code;
    app *a = ud;
    a->closes++;
    a->close_status = status;
    snprintf(a->close_detail, sizeof(a->close_detail), "%s", detail);
}

static void timeout_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

/* Runs the loop until *flag is set, at most 10 s. */
static void run_until(app *a, const int *flag) {
    ev_timer t;
    ev_timer_init(&t, timeout_cb, 10., 0.);
    ev_timer_start(a->loop, &t);
    while (!*flag && ev_is_active(&t))
        ev_run(a->loop, EVRUN_ONCE);
    ev_timer_stop(a->loop, &t);
    CHECK(*flag);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: old_app PORT PKI_DIR DEVICE_ID\n");
        return 2;
    }
    char url[64], cert[512], key[512], ca[512], detail[512] = "";
    snprintf(url, sizeof(url), "quic://127.0.0.1:%s", argv[1]);
    snprintf(cert, sizeof(cert), "%s/device.pem", argv[2]);
    snprintf(key, sizeof(key), "%s/device.key", argv[2]);
    snprintf(ca, sizeof(ca), "%s/ca.pem", argv[2]);
    app a;
    memset(&a, 0, sizeof(a));
    a.loop = ev_loop_new(EVFLAG_AUTO);

    synesis_tunnel_config cfg;
    synesis_tunnel_config_init(&cfg);
    CHECK(cfg.struct_size == sizeof(cfg));
    cfg.cloud_url = url;
    cfg.server_name = "localhost";
    cfg.cert_path = cert;
    cfg.key_path = key;
    cfg.ca_path = ca;
    cfg.use_system_trust = 0;
    cfg.heartbeat_interval = 0.1;
    synesis_tunnel_callbacks cb;
    synesis_tunnel_callbacks_init(&cb);
    cb.on_state = on_state;
    cb.on_heartbeat = on_heartbeat;
    synesis_tunnel *t = NULL;
    int rc = synesis_tunnel_new(&t, a.loop, &cfg, &cb, &a, detail, sizeof(detail));
    if (rc != 0)
        fprintf(stderr, "old_app: synesis_tunnel_new: %s: %s\n", synesis_error_name(rc), detail);
    CHECK(rc == 0);
    CHECK(synesis_tunnel_connect(t) == 0);
    run_until(&a, &a.connected);
    /* The library fills its structs in full for callbacks: at least this program's size. */
    CHECK(a.state_size >= sizeof(synesis_tunnel_state));

    synesis_request_options ro;
    synesis_request_options_init(&ro);
    ro.timeout = 5;
    CHECK(synesis_tunnel_request(t, "old-app", 7, &ro, on_response, &a, NULL) == 0);
    run_until(&a, &a.responses);
    CHECK(a.resp_status == 0);
    CHECK(strcmp(a.resp, "old-app") == 0);
    CHECK(a.resp_size >= sizeof(synesis_response));

    synesis_stream_callbacks sc;
    synesis_stream_callbacks_init(&sc);
    sc.on_data = on_data;
    sc.on_close = on_close;
    synesis_stream *s = NULL;
    CHECK(synesis_tunnel_open_stream(t, &sc, &a, &s) == 0);
    CHECK(synesis_stream_write(s, "stream", 6, NULL) == 0);
    CHECK(synesis_stream_finish(s) == 0);
    run_until(&a, &a.closes);
    CHECK(a.close_status == 0);
    CHECK(strcmp(a.close_detail, "") == 0);
    CHECK(a.echoed_len == 6 && memcmp(a.echoed, "stream", 6) == 0);

    run_until(&a, &a.heartbeats);
    CHECK(a.hb_size >= sizeof(synesis_heartbeat_info));

    /* Getters write exactly this program's size, and nothing past it: each struct sits in a
     * larger block whose guard bytes must come back untouched. The library's own structs are
     * larger now (1.1 appended members to the stats). */
    struct {
        synesis_tunnel_state s;
        unsigned char guard[64];
    } gst;
    struct {
        synesis_tunnel_stats s;
        unsigned char guard[64];
    } gstats;
    unsigned char guard[64];
    memset(guard, 0xa5, sizeof(guard));
    memset(&gst, 0xa5, sizeof(gst));
    CHECK(synesis_tunnel_get_state(t, &gst.s) == 0);
    CHECK(memcmp(gst.guard, guard, sizeof(guard)) == 0);
    synesis_tunnel_state st = gst.s;
    CHECK(st.struct_size == sizeof(st));
    CHECK(st.kind == SYNESIS_STATE_CONNECTED);
    CHECK(st.error == 0 && st.error_detail && strcmp(st.error_detail, "") == 0);
    memset(&gstats, 0xa5, sizeof(gstats));
    CHECK(synesis_tunnel_get_stats(t, &gstats.s) == 0);
    CHECK(memcmp(gstats.guard, guard, sizeof(guard)) == 0);
    synesis_tunnel_stats stats = gstats.s;
    CHECK(stats.struct_size == sizeof(stats));
    CHECK(stats.requests_succeeded == 1);
    CHECK(stats.streams_opened == 1);
    CHECK(stats.connections == 1);
    CHECK(stats.heartbeats_sent >= 1);
    CHECK(strncmp(stats.remote_address, "127.0.0.1:", 10) == 0);
    CHECK(strcmp(stats.last_error_detail, "") == 0);
    CHECK(synesis_tunnel_is_healthy(t) == 1);
    char json[4096];
    CHECK(synesis_tunnel_stats_json(t, json, sizeof(json)) > 0);
    CHECK(strstr(json, "\"state\":\"Connected\"") != NULL);

    synesis_identity_info *info = NULL;
    CHECK(synesis_identity_inspect(cert, &info, detail, sizeof(detail)) == 0);
    CHECK(info->struct_size >= sizeof(*info));
    CHECK(strcmp(info->device_id, argv[3]) == 0);
    synesis_identity_info_free(info);

    /* The upgrade: the library is newer than these headers (1.1 or later: its version number,
     * the same major), and the members it appended to this program's structs are at their
     * defaults: resumption on, so the next connection of this tunnel resumes. The edge's ticket
     * came after the first handshake; give it a moment if it has not. */
    CHECK(synesis_version_number() >= 0x010100);
    CHECK(synesis_version_number() >> 16 == SYNESIS_VERSION_MAJOR);
    CHECK(SYNESIS_VERSION_NUMBER == 0x010000);
    a.connected = 0;
    CHECK(synesis_tunnel_disconnect(t) == 0);
    CHECK(synesis_tunnel_connect(t) == 0);
    run_until(&a, &a.connected);
    CHECK(synesis_tunnel_stats_json(t, json, sizeof(json)) > 0);
    if (!strstr(json, "\"resumed_connections\":1"))
        fprintf(stderr, "old_app: the reconnect did not resume: %s\n", json);
    CHECK(strstr(json, "\"resumed_connections\":1") != NULL);
    CHECK(strstr(json, "\"connections\":2") != NULL);
    a.responses = 0;
    CHECK(synesis_tunnel_request(t, "old-app", 7, &ro, on_response, &a, NULL) == 0);
    run_until(&a, &a.responses);
    CHECK(a.resp_status == 0 && strcmp(a.resp, "old-app") == 0);

    CHECK(synesis_tunnel_disconnect(t) == 0);
    synesis_tunnel_free(t);
    ev_loop_destroy(a.loop);
    printf("old_app: built against the 1.0 headers, ran against %s: ok (a reconnect resumed)\n",
           synesis_version());
    return 0;
}

/* QUIC over TCP (docs/protocol.md, "QUIC over TCP"), on loopback against the reference edge:
 *  - transport TCP forced: connect, heartbeats, requests, a 4 MB echoed stream, resumption over
 *    TCP, and a reconnect after the edge drops the link (its listener and links go away);
 *  - transport AUTO with the URL's UDP port refused (ICMP port unreachable): Connected over TCP;
 *  - transport AUTO with UDP black-holed (a fault proxy on the URL's port that drops everything;
 *    the edge's TCP listener on the same port number): Connected over TCP within seconds, then,
 *    with UDP let through, the connection moves back to UDP while a stream and requests are in
 *    flight: every byte once and in order, no state transition, the stats count it;
 *  - hostile peers on the edge's TCP listener: plain-text garbage, a frame of length 0, frames of
 *    garbage packets, and more pending handshakes than the edge allows: the edge neither crashes
 *    nor stalls (a tunnel connects over TCP afterwards). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "connect_proxy.h"
#include "fault_proxy.h"
#include "flow.h"
#include "harness.h"
#include "synesis/identity.h"
#include "synesis/request.h"
#include "synesis/stream.h"

/* ---- helpers ---- */

static synesis_transport transport_of(synesis_tunnel *t) {
    synesis_tunnel_state s;
    assert_int_equal(synesis_tunnel_get_state(t, &s), 0);
    return s.transport;
}

static int heartbeats_delivered_2(void *ud) {
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats((synesis_tunnel *)ud, &st);
    return st.heartbeats_delivered >= 2;
}

static int moved_back(void *ud) {
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats((synesis_tunnel *)ud, &st);
    return st.udp_returns > 0;
}

static int probe_failed(void *ud) {
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats((synesis_tunnel *)ud, &st);
    return st.udp_probes_failed > 0;
}

static char edge_lines[16384];
static void edge_log(void *ud, const char *line) {
    (void)ud;
    size_t n = strlen(edge_lines);
    if (strstr(line, "tcp") || strstr(line, "path_"))
        snprintf(edge_lines + n, sizeof(edge_lines) - n, "%s\n", line);
}

/* ---- transport TCP forced ---- */

static void test_forced_tcp(void **state) {
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    const char *pki = syn_test_pki_shared("tcp-1");
    syn_edge_config ec;
    syn_test_edge_config(&ec, pki);
    ec.idle_timeout = 10;
    syn_edge *e = syn_test_edge_start(loop, &ec);
    uint16_t port = syn_edge_port(e);
    assert_int_equal(syn_edge_tcp_port(e), port); /* the same port number by default */

    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, pki, port);
    cfg.transport = SYNESIS_TRANSPORT_TCP;
    cfg.heartbeat_interval = 0.2;
    cfg.idle_timeout = 10;
    cfg.retry_initial_connect = 1;
    synesis_tunnel *t = syn_test_tunnel_connected(loop, &cfg, NULL, NULL, 10);
    assert_int_equal(transport_of(t), SYNESIS_TRANSPORT_TCP);
    syn_edge_stats es;
    syn_edge_get_stats(e, &es);
    assert_int_equal(es.tcp_links, 1);
    assert_int_equal(es.handshakes, 1);

    /* Heartbeats, requests and a 4 MB echoed stream, all over the link. */
    assert_true(syn_test_run_until(loop, heartbeats_delivered_2, t, 10));
    syn_test_flow f;
    syn_test_flow_start(t, &f);
    assert_true(syn_test_run_until(loop, syn_test_flow_quarter, &f, 20));
    for (int i = SYN_TEST_FLOW_NREQ / 2; i < SYN_TEST_FLOW_NREQ; i++)
        syn_test_flow_request(t, &f);
    assert_true(syn_test_run_until(loop, syn_test_flow_done, &f, 60));
    syn_test_flow_check(&f);
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(t, &st);
    assert_true(st.tcp_packets_sent > 1000);
    assert_true(st.tcp_bytes_sent > SYN_TEST_FLOW_BYTES);
    assert_int_equal(st.tcp_fallbacks, 0); /* forced, not a fallback */
    char json[4096];
    assert_true(synesis_tunnel_stats_json(t, json, sizeof(json)) > 0);
    assert_non_null(strstr(json, "\"transport\":\"tcp\""));

    /* Resumption over TCP: the next connection resumes the edge's ticket. The disconnect's
     * CONNECTION_CLOSE reached the edge over the link before it closed: the edge's connection
     * ends at once, not by its idle timeout. */
    assert_int_equal(synesis_tunnel_disconnect(t), 0);
    syn_test_run_for(loop, 0.3);
    syn_edge_get_stats(e, &es);
    assert_int_equal(es.active, 0);
    syn_test_connect(loop, t, 10);
    synesis_tunnel_get_stats(t, &st);
    assert_int_equal(st.resumed_connections, 1);
    assert_int_equal(transport_of(t), SYNESIS_TRANSPORT_TCP);

    /* The edge drops the link (its listener and every link go, as a crash would): the tunnel
     * reconnects over TCP once the edge is back. */
    syn_test_states states = {0};
    assert_int_equal(synesis_tunnel_subscribe(t, syn_test_record_state, &states, NULL), 0);
    syn_edge_stop(e, 0);
    int r = syn_test_wait_recorded(loop, &states, SYNESIS_STATE_RECONNECTING, 1, 0, 10);
    char detail[SYNESIS_DETAIL_MAX];
    assert_int_equal(syn_edge_start(e, detail), 0);
    syn_test_wait_recorded(loop, &states, SYNESIS_STATE_CONNECTED, 0, r, 15);
    assert_int_equal(transport_of(t), SYNESIS_TRANSPORT_TCP);
    synesis_tunnel_get_stats(t, &st);
    assert_int_equal(st.reconnects, 1);
    syn_test_result res = {0};
    syn_test_request(loop, t, "after", 5, NULL, &res, 10);
    assert_int_equal(res.status, 0);
    assert_memory_equal(res.data, "after", 5);
    free(res.data);
    syn_test_finish(loop, t, e);
}

/* ---- transport AUTO ---- */

/* UDP refused (nothing listens on the URL's port over UDP: ICMP port unreachable), TCP there:
 * the first attempt goes on over TCP. The UDP timeout is long, so only the ICMP verdict can make
 * it come up in time. */
static void test_auto_icmp(void **state) {
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    const char *pki = syn_test_pki_shared("tcp-2");
    /* A free port number for the TCP listener whose UDP twin nobody binds. */
    int probe = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(probe, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t al = sizeof(a);
    assert_int_equal(getsockname(probe, (struct sockaddr *)&a, &al), 0);
    uint16_t tport = ntohs(a.sin_port);
    close(probe);
    syn_edge_config ec;
    syn_test_edge_config(&ec, pki);
    ec.tcp_port = tport;
    syn_edge *e = syn_test_edge_start(loop, &ec);
    assert_int_equal(syn_edge_tcp_port(e), tport);
    assert_int_not_equal(syn_edge_port(e), tport);

    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, pki, tport);
    cfg.transport = SYNESIS_TRANSPORT_AUTO; /* the library's default (the harness sets UDP) */
    cfg.udp_fallback_timeout = 60;
    cfg.handshake_timeout = 60;
    cfg.udp_reprobe_interval = 0;
    synesis_tunnel *t = syn_test_tunnel_connected(loop, &cfg, NULL, NULL, 10);
    assert_int_equal(transport_of(t), SYNESIS_TRANSPORT_TCP);
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(t, &st);
    assert_int_equal(st.tcp_fallbacks, 1);
    syn_test_result res = {0};
    syn_test_request(loop, t, "icmp", 4, NULL, &res, 10);
    assert_int_equal(res.status, 0);
    free(res.data);
    syn_test_finish(loop, t, e);
}

/* ---- a tunnel's life on TCP: identity rotation, link loss (the URL's UDP port black-holed) ----
 */

/* The URL's port: a fault proxy on UDP (black-holed: nothing gets through) in front of the edge's
 * UDP socket, the edge's TCP listener on the same port number. */
typedef struct blocked {
    struct ev_loop *loop;
    const char *pki;
    syn_fault_proxy *px;
    syn_edge *e;
    uint16_t port;
} blocked;

static void blocked_start(blocked *b, const char *pki_name, syn_edge_log_fn log) {
    b->loop = ev_loop_new(EVFLAG_AUTO);
    b->pki = syn_test_pki_shared(pki_name);
    struct sockaddr_in up = {
        .sin_family = AF_INET, .sin_port = htons(9), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct sockaddr_in lis = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    /* The proxy's UDP port number is free on TCP too (the edge's TCP listener takes it). */
    b->px = syn_fault_proxy_new_tcp_free(b->loop, (struct sockaddr *)&lis, sizeof(lis),
                                         (struct sockaddr *)&up, sizeof(up), 11);
    assert_non_null(b->px);
    b->port = syn_fault_proxy_port(b->px);
    syn_edge_config ec;
    syn_test_edge_config(&ec, b->pki);
    ec.idle_timeout = 10;
    ec.tcp_port = b->port;
    ec.log = log;
    b->e = syn_test_edge_start(b->loop, &ec);
    assert_int_equal(syn_edge_tcp_port(b->e), b->port);
    up.sin_port = htons(syn_edge_port(b->e));
    assert_int_equal(syn_fault_proxy_set_upstream(b->px, (struct sockaddr *)&up, sizeof(up)), 0);
    syn_fault_proxy_blackhole(b->px, 1);
}

/* Datagrams that reached the URL's UDP port (forwarded or black-holed). */
static uint64_t udp_seen(const blocked *b) {
    syn_fault_stats fs;
    syn_fault_proxy_stats(b->px, &fs);
    return fs.fwd_up + fs.dropped_up;
}

/* UDP black-holed, then let through: comes up over TCP, then moves back to UDP with a stream and
 * requests in flight. */
static void test_auto_blocked_then_back(void **state) {
    (void)state;
    edge_lines[0] = 0;
    /* The proxy listens on the URL's port (UDP); the edge's TCP listener takes the same port
     * number, its UDP socket another port, where the proxy forwards. */
    blocked bl;
    blocked_start(&bl, "tcp-3", edge_log);
    struct ev_loop *loop = bl.loop;
    const char *pki = bl.pki;
    syn_fault_proxy *px = bl.px;
    syn_edge *e = bl.e;
    uint16_t port = bl.port;
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, pki, port);
    cfg.transport = SYNESIS_TRANSPORT_AUTO;
    cfg.idle_timeout = 10;
    cfg.udp_fallback_timeout = 0.5;
    cfg.udp_reprobe_interval = 0.5;
    syn_test_states states = {0};
    synesis_tunnel *t = syn_test_tunnel_new(loop, &cfg, NULL, NULL);
    assert_int_equal(synesis_tunnel_subscribe(t, syn_test_record_state, &states, NULL), 0);
    syn_test_connect(loop, t, 10);
    assert_int_equal(transport_of(t), SYNESIS_TRANSPORT_TCP);
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(t, &st);
    assert_int_equal(st.tcp_fallbacks, 1);
    assert_int_equal(st.connections, 1);
    int n0 = states.n; /* Connecting, Connected */

    /* A probe while UDP is still blocked fails and stays on TCP. */
    assert_true(syn_test_run_until(loop, probe_failed, t, 15));
    synesis_tunnel_get_stats(t, &st);
    assert_int_equal(st.udp_returns, 0);
    assert_int_equal(transport_of(t), SYNESIS_TRANSPORT_TCP);

    syn_test_flow f;
    syn_test_flow_start(t, &f);
    assert_true(syn_test_run_until(loop, syn_test_flow_quarter, &f, 20));
    f.hold = 1; /* the rest of the stream waits for the move: it is in flight throughout */
    syn_fault_proxy_blackhole(px, 0); /* UDP gets through again */
    for (int i = SYN_TEST_FLOW_NREQ / 2; i < SYN_TEST_FLOW_NREQ; i++)
        syn_test_flow_request(t, &f);
    assert_true(syn_test_run_until(loop, moved_back, t, 20));
    assert_int_equal(transport_of(t), SYNESIS_TRANSPORT_UDP);
    assert_true(f.received < SYN_TEST_FLOW_BYTES && !f.closed);
    f.hold = 0;
    syn_test_flow_pump(&f);
    assert_true(syn_test_run_until(loop, syn_test_flow_done, &f, 60));
    syn_test_flow_check(&f);
    synesis_tunnel_get_stats(t, &st);
    assert_int_equal(st.udp_returns, 1);
    assert_int_equal(st.connections, 1); /* the same connection throughout */
    assert_int_equal(st.reconnects, 0);
    assert_int_equal(states.n, n0); /* no state transition */
    syn_fault_stats fs;
    syn_fault_proxy_stats(px, &fs);
    assert_true(fs.fwd_up > 100); /* the rest of the stream went over UDP */
    syn_edge_stats es;
    syn_edge_get_stats(e, &es);
    assert_true(es.paths_validated >= 1);
    print_message("moved back to UDP: %zu stream bytes and %d requests intact; %llu probe(s) "
                  "failed before\n",
                  f.received, SYN_TEST_FLOW_NREQ, (unsigned long long)st.udp_probes_failed);
    /* The link goes after its grace. */
    syn_test_run_for(loop, 1.5);
    syn_edge_get_stats(e, &es);
    assert_int_equal(es.tcp_links, 0);
    synesis_tunnel_free(t);
    syn_test_run_for(loop, 0.1);
    syn_fault_proxy_free(px);
    syn_test_finish(loop, NULL, e);
}

static void blocked_finish(blocked *b, synesis_tunnel *t) {
    synesis_tunnel_free(t);
    syn_test_run_for(b->loop, 0.1);
    syn_fault_proxy_free(b->px);
    syn_test_finish(b->loop, NULL, b->e);
}

static int edge_links(const blocked *b) {
    syn_edge_stats es;
    syn_edge_get_stats(b->e, &es);
    return (int)es.tcp_links;
}

typedef struct rot {
    blocked *b;
    int identity_calls, identity_status;
    syn_test_result res[4];
} rot;

static void rot_identity(synesis_tunnel *t, int status, const char *detail, void *ud) {
    (void)t;
    rot *r = ud;
    r->identity_calls++;
    r->identity_status = status;
    if (status != 0)
        print_message("rotation failed: %s: %s\n", synesis_error_name(status), detail);
}

static int rot_done(void *ud) {
    rot *r = ud;
    for (int i = 0; i < 3; i++)
        if (!r->res[i].calls)
            return 0;
    return r->identity_calls > 0;
}

static int one_link(void *ud) { return edge_links(ud) == 1; }

/* A renewed device identity: a new key, the same device id, the same CA (as test_rotate). */
static const char *renew(const char *ca_dir, const char *cn) {
    const char *dir = syn_test_mkdtemp("tcp-rotate");
    synesis_pki_cert_options o;
    synesis_pki_cert_options_init(&o, SYNESIS_CERT_PROFILE_DEVICE);
    o.common_name = cn;
    char ca_cert[512], ca_key[512], detail[512];
    snprintf(ca_cert, sizeof(ca_cert), "%s/ca.pem", ca_dir);
    snprintf(ca_key, sizeof(ca_key), "%s/ca.key", ca_dir);
    o.issuer_cert_file = ca_cert;
    o.issuer_key_file = ca_key;
    o.overwrite = 1;
    if (synesis_pki_create_cert(&o, syn_test_path(dir, "new.pem"), syn_test_path(dir, "new.key"),
                                detail, sizeof(detail)) != 0)
        fail_msg("renew: %s", detail);
    return dir;
}

/* Identity rotation while on TCP (forced, or AUTO with UDP black-holed): the new connection
 * comes up over its own link (nothing over UDP), the edge sees the new certificate, requests in
 * flight on the old connection are answered, and the old link goes with the old connection. */
static void rotate_on_tcp(synesis_transport tr, const char *pki_name) {
    blocked b;
    blocked_start(&b, pki_name, NULL);
    rot r = {.b = &b};
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, b.pki, b.port);
    cfg.transport = tr;
    cfg.idle_timeout = 10;
    cfg.udp_fallback_timeout = 0.5;
    cfg.udp_reprobe_interval = 0; /* no probe: any datagram would be the rotation's */
    synesis_tunnel_callbacks cb;
    synesis_tunnel_callbacks_init(&cb);
    cb.on_identity = rot_identity;
    synesis_tunnel *t = syn_test_tunnel_connected(b.loop, &cfg, &cb, &r, 10);
    assert_int_equal(transport_of(t), SYNESIS_TRANSPORT_TCP);
    assert_int_equal(edge_links(&b), 1);
    uint64_t udp0 = udp_seen(&b);
    if (tr == SYNESIS_TRANSPORT_TCP)
        assert_int_equal(udp0, 0);
    else
        assert_true(udp0 > 0); /* the first attempt tried UDP */
    char old_fp[65];
    snprintf(old_fp, sizeof(old_fp), "%s", syn_edge_last_cert(b.e));
    syn_edge_stats es0;
    syn_edge_get_stats(b.e, &es0);

    synesis_tunnel_stats st0;
    synesis_tunnel_get_stats(t, &st0);
    char cn[64];
    snprintf(cn, sizeof(cn), "device-%s", pki_name);
    const char *dir = renew(b.pki, cn);
    for (int i = 0; i < 2; i++)
        assert_int_equal(synesis_tunnel_request(t, "SLEEP 300\nold", 13, NULL, syn_test_on_response,
                                                &r.res[i], NULL),
                         0);
    syn_test_run_for(b.loop, 0.05);
    synesis_identity_source id;
    synesis_identity_source_init(&id);
    id.cert_path = syn_test_path(dir, "new.pem");
    id.key_path = syn_test_path(dir, "new.key");
    assert_int_equal(synesis_tunnel_rotate_identity(t, &id, 10), 0);
    assert_int_equal(
        synesis_tunnel_request(t, "during", 6, NULL, syn_test_on_response, &r.res[2], NULL), 0);
    assert_true(syn_test_run_until(b.loop, rot_done, &r, 10));
    assert_int_equal(r.identity_status, 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(r.res[i].status, 0);
    assert_memory_equal(r.res[0].data, "old", 3);
    assert_memory_equal(r.res[2].data, "during", 6);
    /* The edge saw the new certificate, over a second link; the old link went with the old
     * connection. */
    assert_string_not_equal(syn_edge_last_cert(b.e), old_fp);
    syn_edge_stats es;
    syn_edge_get_stats(b.e, &es);
    assert_int_equal(es.handshakes, es0.handshakes + 1);
    assert_int_equal(es.tcp_accepted, es0.tcp_accepted + 1);
    assert_true(syn_test_run_until(b.loop, one_link, &b, 10));
    assert_int_equal(transport_of(t), SYNESIS_TRANSPORT_TCP);
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(t, &st);
    assert_int_equal(st.identity_rotations, 1);
    assert_int_equal(st.reconnects, 0);
    /* The totals keep the old connection's packets. */
    assert_true(st.tcp_packets_sent > st0.tcp_packets_sent);
    assert_true(st.packets_sent > st0.packets_sent);
    /* Requests keep working, on the new link. */
    syn_test_result res = {0};
    syn_test_request(b.loop, t, "after", 5, NULL, &res, 10);
    assert_int_equal(res.status, 0);
    assert_memory_equal(res.data, "after", 5);
    free(res.data);
    assert_int_equal(edge_links(&b), 1);
    assert_int_equal(udp_seen(&b), udp0); /* nothing over UDP */
    for (int i = 0; i < 3; i++)
        free(r.res[i].data);
    blocked_finish(&b, t);
}

static void test_rotate_forced_tcp(void **state) {
    (void)state;
    rotate_on_tcp(SYNESIS_TRANSPORT_TCP, "tcp-8");
}

static void test_rotate_auto_udp_blocked(void **state) {
    (void)state;
    rotate_on_tcp(SYNESIS_TRANSPORT_AUTO, "tcp-9");
}

/* AUTO, UDP black-holed, Connected over TCP; then the link dies (the edge stops as a crash would:
 * its listener and links go). The UDP failure stands: the next attempt goes over TCP at once,
 * without a UDP attempt first (no datagram, no second fallback). */
static void test_link_lost_reconnects_tcp_first(void **state) {
    (void)state;
    blocked b;
    blocked_start(&b, "tcp-10", NULL);
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, b.pki, b.port);
    cfg.transport = SYNESIS_TRANSPORT_AUTO;
    cfg.idle_timeout = 10;
    cfg.udp_fallback_timeout = 3; /* the default: a UDP attempt first would wait this long */
    cfg.udp_reprobe_interval = 0;
    cfg.retry_initial_connect = 1;
    syn_test_states states = {0};
    synesis_tunnel *t = syn_test_tunnel_new(b.loop, &cfg, NULL, NULL);
    assert_int_equal(synesis_tunnel_subscribe(t, syn_test_record_state, &states, NULL), 0);
    syn_test_connect(b.loop, t, 15);
    assert_int_equal(transport_of(t), SYNESIS_TRANSPORT_TCP);
    uint64_t udp0 = udp_seen(&b);
    assert_true(udp0 > 0);
    syn_edge_stats es0;
    syn_edge_get_stats(b.e, &es0);

    syn_edge_stop(b.e, 0);
    int r = syn_test_wait_recorded(b.loop, &states, SYNESIS_STATE_RECONNECTING, 1, 0, 10);
    char detail[SYNESIS_DETAIL_MAX];
    assert_int_equal(syn_edge_start(b.e, detail), 0);
    syn_test_wait_recorded(b.loop, &states, SYNESIS_STATE_CONNECTED, 0, r, 15);
    assert_int_equal(transport_of(t), SYNESIS_TRANSPORT_TCP);
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(t, &st);
    assert_int_equal(st.reconnects, 1);
    assert_int_equal(st.tcp_fallbacks, 1); /* no new fallback: TCP first */
    assert_int_equal(udp_seen(&b), udp0);  /* not a datagram tried */
    syn_edge_stats es;
    syn_edge_get_stats(b.e, &es);
    assert_int_equal(es.tcp_accepted, es0.tcp_accepted + 1);
    syn_test_result res = {0};
    syn_test_request(b.loop, t, "again", 5, NULL, &res, 10);
    assert_int_equal(res.status, 0);
    free(res.data);
    blocked_finish(&b, t);
}

/* The opposite: Connected over TCP, moved back to UDP (UDP let through), then the connection
 * ends (the edge shuts down gracefully and comes back): the next attempt goes over UDP first and
 * succeeds there (no new link, no fallback). */
static void test_after_move_back_reconnects_udp_first(void **state) {
    (void)state;
    blocked b;
    blocked_start(&b, "tcp-11", NULL);
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, b.pki, b.port);
    cfg.transport = SYNESIS_TRANSPORT_AUTO;
    cfg.idle_timeout = 10;
    cfg.udp_fallback_timeout = 0.5;
    cfg.udp_reprobe_interval = 0.3;
    syn_test_states states = {0};
    synesis_tunnel *t = syn_test_tunnel_new(b.loop, &cfg, NULL, NULL);
    assert_int_equal(synesis_tunnel_subscribe(t, syn_test_record_state, &states, NULL), 0);
    syn_test_connect(b.loop, t, 15);
    assert_int_equal(transport_of(t), SYNESIS_TRANSPORT_TCP);
    syn_fault_proxy_blackhole(b.px, 0);
    assert_true(syn_test_run_until(b.loop, moved_back, t, 20));
    assert_int_equal(transport_of(t), SYNESIS_TRANSPORT_UDP);
    syn_edge_stats es0;
    syn_edge_get_stats(b.e, &es0);

    syn_edge_stop(b.e, 1);
    int r = syn_test_wait_recorded(b.loop, &states, SYNESIS_STATE_RECONNECTING, 1, 0, 10);
    char detail[SYNESIS_DETAIL_MAX];
    assert_int_equal(syn_edge_start(b.e, detail), 0);
    syn_test_wait_recorded(b.loop, &states, SYNESIS_STATE_CONNECTED, 0, r, 15);
    assert_int_equal(transport_of(t), SYNESIS_TRANSPORT_UDP);
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(t, &st);
    assert_int_equal(st.reconnects, 1);
    assert_int_equal(st.tcp_fallbacks, 1); /* only the first attempt's */
    syn_edge_stats es;
    syn_edge_get_stats(b.e, &es);
    assert_int_equal(es.tcp_accepted, es0.tcp_accepted); /* no link tried */
    blocked_finish(&b, t);
}

/* AUTO on TCP with a long probe interval; the network changes (synesis_tunnel_network_changed)
 * and now lets UDP through: a UDP probe follows at once (not after the interval) and the
 * connection moves back to UDP. Its local address still there, the link is kept meanwhile. */
static void test_network_change_probes_udp(void **state) {
    (void)state;
    blocked b;
    blocked_start(&b, "tcp-12", NULL);
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, b.pki, b.port);
    cfg.transport = SYNESIS_TRANSPORT_AUTO;
    cfg.idle_timeout = 10;
    cfg.udp_fallback_timeout = 0.5;
    cfg.udp_reprobe_interval = 60; /* longer than the test */
    synesis_tunnel *t = syn_test_tunnel_connected(b.loop, &cfg, NULL, NULL, 10);
    assert_int_equal(transport_of(t), SYNESIS_TRANSPORT_TCP);
    syn_fault_proxy_blackhole(b.px, 0);
    syn_test_run_for(b.loop, 0.3);
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(t, &st);
    assert_int_equal(st.udp_returns, 0); /* no probe of its own meanwhile */
    assert_int_equal(synesis_tunnel_network_changed(t), 0);
    assert_true(syn_test_run_until(b.loop, moved_back, t, 20));
    assert_int_equal(transport_of(t), SYNESIS_TRANSPORT_UDP);
    synesis_tunnel_get_stats(t, &st);
    assert_int_equal(st.reconnects, 0);
    assert_int_equal(st.connections, 1);
    syn_test_result res = {0};
    syn_test_request(b.loop, t, "moved", 5, NULL, &res, 10);
    assert_int_equal(res.status, 0);
    free(res.data);
    blocked_finish(&b, t);
}

/* Nothing listens, on UDP or TCP: the attempt fails with UDP's verdict, TCP's added. */
static void test_auto_nothing_listening(void **state) {
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    const char *pki = syn_test_pki_shared("tcp-6");
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &al), 0);
    close(s); /* a free port: refused on UDP and on TCP */
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, pki, ntohs(a.sin_port));
    cfg.transport = SYNESIS_TRANSPORT_AUTO;
    synesis_tunnel *t = syn_test_tunnel_new(loop, &cfg, NULL, NULL);
    assert_int_equal(synesis_tunnel_connect(t), 0);
    assert_true(syn_test_wait_state(loop, t, SYNESIS_STATE_FAILED, 10));
    synesis_tunnel_state st;
    synesis_tunnel_get_state(t, &st);
    assert_int_equal(st.error, SYNESIS_ERR_SOCKET);
    if (!strstr(st.error_detail, "refused") || !strstr(st.error_detail, "over TCP too"))
        fail_msg("detail: %s", st.error_detail);
    synesis_tunnel_stats stt;
    synesis_tunnel_get_stats(t, &stt);
    assert_int_equal(stt.tcp_fallbacks, 1);
    syn_test_finish(loop, t, NULL);
}

/* Through an HTTP CONNECT proxy with Basic authentication (the config's proxy), transport TCP:
 * every byte goes through it; a proxy that refuses, or wants credentials, is a clear error. */
static void test_through_proxy(void **state) {
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    const char *pki = syn_test_pki_shared("tcp-7");
    syn_edge *e = syn_test_edge(loop, pki, 10);
    syn_test_proxy *px;
    uint16_t pport;
    syn_test_proxy_opts po = {.mode = SYN_TEST_PROXY_AUTH, .credentials = "dev:s3cret"};
    assert_int_equal(syn_test_proxy_start(&px, loop, &po, &pport), 0);
    char url[128];
    snprintf(url, sizeof(url), "http://dev:s3cret@127.0.0.1:%u", pport);
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, pki, syn_edge_port(e));
    cfg.transport = SYNESIS_TRANSPORT_TCP;
    cfg.proxy = url;
    rot r = {0};
    synesis_tunnel_callbacks cb;
    synesis_tunnel_callbacks_init(&cb);
    cb.on_identity = rot_identity;
    synesis_tunnel *t = syn_test_tunnel_connected(loop, &cfg, &cb, &r, 10);
    assert_int_equal(transport_of(t), SYNESIS_TRANSPORT_TCP);
    syn_test_result res = {0};
    syn_test_request(loop, t, "via proxy", 9, NULL, &res, 10);
    assert_int_equal(res.status, 0);
    assert_memory_equal(res.data, "via proxy", 9);
    free(res.data);
    const syn_test_proxy_stats *ps = syn_test_proxy_stats_get(px);
    assert_int_equal(ps->tunnels, 1);
    assert_true(ps->bytes_up > 1000 && ps->bytes_down > 1000);
    assert_non_null(strstr(ps->last_request, "CONNECT 127.0.0.1:"));
    /* An identity rotation goes through the proxy too: a second CONNECT. */
    const char *dir = renew(pki, "device-tcp-7");
    synesis_identity_source id;
    synesis_identity_source_init(&id);
    id.cert_path = syn_test_path(dir, "new.pem");
    id.key_path = syn_test_path(dir, "new.key");
    assert_int_equal(synesis_tunnel_rotate_identity(t, &id, 5), 0);
    for (int i = 0; i < 3; i++)
        r.res[i].calls = 1; /* no request of rot_done's */
    assert_true(syn_test_run_until(loop, rot_done, &r, 10));
    assert_int_equal(r.identity_status, 0);
    assert_int_equal(ps->tunnels, 2);
    res = (syn_test_result){0};
    syn_test_request(loop, t, "rotated", 7, NULL, &res, 10);
    assert_int_equal(res.status, 0);
    free(res.data);
    synesis_tunnel_free(t);

    /* Without the credentials: SYNESIS_ERR_PROXY_AUTH. */
    snprintf(url, sizeof(url), "http://127.0.0.1:%u", pport);
    t = syn_test_tunnel_new(loop, &cfg, NULL, NULL);
    assert_int_equal(synesis_tunnel_connect(t), 0);
    assert_true(syn_test_wait_state(loop, t, SYNESIS_STATE_FAILED, 10));
    synesis_tunnel_state st;
    synesis_tunnel_get_state(t, &st);
    if (st.error != SYNESIS_ERR_PROXY_AUTH)
        fail_msg("%s: %s", synesis_error_name(st.error), st.error_detail);
    synesis_tunnel_free(t);
    syn_test_proxy_free(px);

    /* A proxy that refuses CONNECT: SYNESIS_ERR_PROXY with its status line. */
    po = (syn_test_proxy_opts){.mode = SYN_TEST_PROXY_REFUSE};
    assert_int_equal(syn_test_proxy_start(&px, loop, &po, &pport), 0);
    snprintf(url, sizeof(url), "http://127.0.0.1:%u", pport);
    t = syn_test_tunnel_new(loop, &cfg, NULL, NULL);
    assert_int_equal(synesis_tunnel_connect(t), 0);
    assert_true(syn_test_wait_state(loop, t, SYNESIS_STATE_FAILED, 10));
    synesis_tunnel_get_state(t, &st);
    if (st.error != SYNESIS_ERR_PROXY || !strstr(st.error_detail, "403"))
        fail_msg("%s: %s", synesis_error_name(st.error), st.error_detail);
    synesis_tunnel_free(t);
    syn_test_run_for(loop, 0.05);
    syn_test_proxy_free(px);
    syn_test_finish(loop, NULL, e);
}

/* ---- configuration ---- */

static void test_config(void **state) {
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    const char *pki = syn_test_pki_shared("tcp-5");
    synesis_tunnel_config cfg;
    synesis_tunnel_config_init(&cfg);
    assert_int_equal(cfg.transport, SYNESIS_TRANSPORT_AUTO);
    assert_int_equal(cfg.tcp_port, 0);
    assert_int_equal(cfg.tcp_fallback_after, 1);
    assert_true(cfg.udp_fallback_timeout > 0 && cfg.udp_fallback_timeout < cfg.handshake_timeout);
    assert_true(cfg.udp_reprobe_interval > 0);
    assert_null(cfg.proxy);
    assert_string_equal(synesis_transport_name(SYNESIS_TRANSPORT_TCP), "tcp");
    assert_string_equal(synesis_transport_name((synesis_transport)9), "unknown");
    syn_test_tunnel_config(&cfg, pki, 1);
    synesis_tunnel *t = NULL;
    char err[256];
    cfg.transport = (synesis_transport)3;
    assert_int_equal(synesis_tunnel_new(&t, loop, &cfg, NULL, NULL, err, sizeof(err)),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    cfg.transport = SYNESIS_TRANSPORT_AUTO;
    cfg.tcp_fallback_after = 0;
    assert_int_equal(synesis_tunnel_new(&t, loop, &cfg, NULL, NULL, err, sizeof(err)),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    cfg.tcp_fallback_after = 1;
    cfg.udp_fallback_timeout = 0;
    assert_int_equal(synesis_tunnel_new(&t, loop, &cfg, NULL, NULL, err, sizeof(err)),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    cfg.udp_fallback_timeout = 1;
    cfg.proxy = "socks5://proxy:1080";
    assert_int_equal(synesis_tunnel_new(&t, loop, &cfg, NULL, NULL, err, sizeof(err)),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "proxy"));
    assert_null(t);
    ev_loop_destroy(loop);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_forced_tcp),
        cmocka_unit_test(test_auto_icmp),
        cmocka_unit_test(test_auto_nothing_listening),
        cmocka_unit_test(test_auto_blocked_then_back),
        cmocka_unit_test(test_through_proxy),
        cmocka_unit_test(test_rotate_forced_tcp),
        cmocka_unit_test(test_rotate_auto_udp_blocked),
        cmocka_unit_test(test_link_lost_reconnects_tcp_first),
        cmocka_unit_test(test_after_move_back_reconnects_udp_first),
        cmocka_unit_test(test_network_change_probes_udp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The reference edge against hostile or overloading clients: a client migrating without end (the
 * connection-ID table must stay bounded), stateless Retry under a burst of handshakes, forged
 * Retry tokens, and the listening socket's buffer sizes. Real UDP on loopback. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "synesis/request.h"

static syn_test_raw_client *raw_device(struct ev_loop *loop, syn_edge *e,
                                       const syn_qconn_settings *st) {
    const char *dir = syn_test_pki_shared("hostile-1");
    return syn_test_raw_client_new_st(loop, syn_edge_port(e), dir, syn_test_path(dir, "device.pem"),
                                      syn_test_path(dir, "device.key"), st);
}

static uint64_t edge_cids(syn_edge *e) {
    syn_edge_stats st;
    syn_edge_get_stats(e, &st);
    return st.cids;
}

/* ---- (A) connection IDs under continuous migration ---- */

typedef struct rx_wait {
    syn_test_raw_client *c;
    uint64_t after;
} rx_wait;

/* A migration is over once the edge answered on the new path and acknowledged everything the
 * client sent since (its PATH_RESPONSE and RETIRE_CONNECTION_ID included): the edge's path
 * validation is done. */
static int migration_done(void *ud) {
    rx_wait *w = ud;
    if (w->c->closed)
        return 1;
    ngtcp2_conn_info ci;
    syn_qconn_info(w->c->qc, &ci);
    return w->c->rx_count > w->after && ci.bytes_in_flight == 0;
}

static int echo_done(void *ud) {
    syn_test_raw_client *c = ud;
    return c->closed || c->stream_closes > 0;
}

#define MIGRATIONS 200

/* A client that migrates MIGRATIONS times, each time waiting until the edge answers on the new
 * path: every migration makes the edge retire one of its connection IDs and issue another. The
 * retired ones must leave the edge's table (ngtcp2's remove_connection_id), so the count stays
 * near the client's active_connection_id_limit (2) plus those retired less than a PTO ago plus
 * the client's original DCID; before the fix it grew by one per migration. */
static int edge_not_closing(void *ud) {
    syn_edge_stats st;
    syn_edge_get_stats(ud, &st);
    return st.closing == 0;
}

static void test_migrations_keep_cid_table_bounded(void **state) {
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    syn_edge_config ec;
    syn_test_edge_config(&ec, syn_test_pki_shared("hostile-1"));
    ec.idle_timeout = 10;
    ec.log_file = getenv("HOSTILE_LOG") ? stderr : NULL;
    syn_edge *e = syn_test_edge_start(loop, &ec);
    syn_test_raw_client *c = raw_device(loop, e, NULL);
    assert_true(syn_test_run_until(loop, syn_test_raw_done, c, 5));
    assert_int_equal(c->err, 0);
    uint64_t start = edge_cids(e);
    assert_true(start >= 1 && start <= 4);

    uint64_t peak = start;
    for (int i = 0; i < MIGRATIONS; i++) {
        int rv;
        int tries = 0;
        while ((rv = syn_test_raw_client_migrate(c)) == SYNESIS_ERR_WOULD_BLOCK && tries++ < 500)
            syn_test_run_for(loop, 0.002); /* the edge's next connection ID is on its way */
        if (rv != 0)
            fail_msg("migration %d: %s", i, synesis_error_name(rv));
        rx_wait w = {c, c->rx_count};
        if (!syn_test_run_until(loop, migration_done, &w, 3))
            fail_msg("migration %d: no answer on the new path (rx %llu, cids %llu)", i,
                     (unsigned long long)c->rx_count, (unsigned long long)edge_cids(e));
        assert_false(c->closed);
        /* Let the edge's path validation settle too: ngtcp2 (1.24) can otherwise close a
         * connection migrating back to back with CONNECTION_ID_LIMIT_ERROR (the IDs of the
         * path being validated and of its fallback count against the limit). */
        syn_test_run_for(loop, 0.01);
        uint64_t n = edge_cids(e);
        if (n > peak)
            peak = n;
    }
    syn_test_run_for(loop, 0.3); /* retired IDs go a PTO after RETIRE_CONNECTION_ID */
    uint64_t end = edge_cids(e);
    print_message("edge connection IDs: %llu after the handshake, %llu after %d migrations "
                  "(peak %llu)\n",
                  (unsigned long long)start, (unsigned long long)end, MIGRATIONS,
                  (unsigned long long)peak);
    assert_true(end <= 8);
    assert_true(peak <= 16);

    /* The connection still serves requests (the edge echoes data it does not know). */
    syn_qstream *s = NULL;
    assert_int_equal(syn_qconn_open_stream(c->qc, 1, NULL, &s), 0);
    assert_int_equal(syn_qstream_write(s, "hello after migrating", 21, 1), 0);
    syn_qconn_flush(c->qc);
    assert_true(syn_test_run_until(loop, echo_done, c, 5));
    assert_false(c->closed);
    assert_int_equal(c->data_len, 21);
    assert_memory_equal(c->data, "hello after migrating", 21);

    syn_edge_stats st;
    syn_edge_get_stats(e, &st);
    assert_int_equal(st.accepted, 1);
    assert_int_equal(st.active, 1);

    /* The connection's IDs all leave with it, once its closing period is over. */
    syn_test_raw_client_free(c);
    syn_edge_kick(e, syn_edge_last_device(e));
    syn_test_run_for(loop, 0.1);
    syn_edge_get_stats(e, &st);
    assert_int_equal(st.active, 0);
    assert_int_equal(st.closing, 1);
    assert_true(syn_test_run_until(loop, edge_not_closing, e, 5.0)); /* three PTOs */
    syn_edge_get_stats(e, &st);
    assert_int_equal(st.closing, 0);
    assert_int_equal(st.cids, 0);
    syn_test_finish(loop, NULL, e);
}

/* ---- (B) Retry ---- */

/* retry_threshold 0: every new connection goes through a Retry; the tunnel follows it (its
 * Initial carries the token, the transport parameters name the original and Retry DCIDs) and
 * connects, and requests work. */
static void test_retry_always(void **state) {
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    syn_edge_config ec;
    syn_test_edge_config(&ec, syn_test_pki_shared("hostile-1"));
    ec.retry_threshold = 0;
    syn_edge *e = syn_test_edge_start(loop, &ec);
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, syn_test_pki_shared("hostile-1"), syn_edge_port(e));
    synesis_tunnel *t = syn_test_tunnel_connected(loop, &cfg, NULL, NULL, 5);

    syn_test_result res = {0};
    assert_int_equal(
        synesis_tunnel_request(t, "retry me", 8, NULL, syn_test_on_response, &res, NULL), 0);
    assert_true(syn_test_run_until(loop, syn_test_response_done, &res, 5));
    assert_int_equal(res.status, 0);
    assert_int_equal(res.len, 8);
    assert_memory_equal(res.data, "retry me", 8);
    free(res.data);

    syn_edge_stats st;
    syn_edge_get_stats(e, &st);
    /* One Retry per Initial datagram: OpenSSL 3.5's ClientHello (a post-quantum key share)
     * takes two. */
    assert_true(st.retries >= 1 && st.retries <= 2);
    assert_int_equal(st.accepted, 1);
    assert_int_equal(st.handshakes, 1);
    assert_int_equal(st.handshaking, 0);
    assert_int_equal(st.tokens_refused, 0);
    syn_test_finish(loop, t, e);
}

/* The threshold counts handshakes in progress: below it no Retry, at it a Retry. */
static void test_retry_threshold(void **state) {
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    syn_edge_config ec;
    syn_test_edge_config(&ec, syn_test_pki_shared("hostile-1"));
    ec.retry_threshold = 1;
    syn_edge *e = syn_test_edge_start(loop, &ec);
    /* Two clients at once: the first is accepted directly, the second (one handshake in
     * progress) gets a Retry; both connect. */
    syn_test_raw_client *a = raw_device(loop, e, NULL);
    syn_test_raw_client *b = raw_device(loop, e, NULL);
    assert_true(syn_test_run_until(loop, syn_test_raw_done, a, 5));
    assert_true(syn_test_run_until(loop, syn_test_raw_done, b, 5));
    assert_int_equal(a->err, 0);
    assert_int_equal(b->err, 0);
    syn_edge_stats st;
    syn_edge_get_stats(e, &st);
    assert_true(st.retries >= 1 && st.retries <= 2);
    assert_int_equal(st.accepted, 2);
    assert_int_equal(st.handshakes, 2);
    assert_int_equal(st.handshaking, 0);
    syn_test_raw_client_free(a);
    syn_test_raw_client_free(b);
    syn_test_finish(loop, NULL, e);
}

/* A forged Retry token (our magic byte, garbage after it) is refused with INVALID_TOKEN and
 * counted; no connection is created for it. */
static void test_forged_retry_token_refused(void **state) {
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    syn_edge_config ec;
    syn_test_edge_config(&ec, syn_test_pki_shared("hostile-1"));
    ec.retry_threshold = SYN_EDGE_RETRY_NEVER; /* refusal does not depend on load */
    syn_edge *e = syn_test_edge_start(loop, &ec);
    uint8_t token[96];
    for (size_t i = 0; i < sizeof(token); i++)
        token[i] = (uint8_t)(i * 37 + 11);
    token[0] = NGTCP2_CRYPTO_TOKEN_MAGIC_RETRY2;
    syn_qconn_settings st;
    syn_qconn_settings_default(&st);
    st.handshake_timeout_ns = 3000000000ull;
    st.token = token;
    st.tokenlen = sizeof(token);
    syn_test_raw_client *c = raw_device(loop, e, &st);
    assert_true(syn_test_run_until(loop, syn_test_raw_done, c, 5));
    assert_true(c->closed);
    assert_int_equal(c->err, SYNESIS_ERR_CLOSED_BY_PEER);
    assert_non_null(strstr(c->detail, "0xb")); /* INVALID_TOKEN */
    syn_edge_stats es;
    syn_edge_get_stats(e, &es);
    uint64_t refused = es.tokens_refused; /* one per Initial datagram */
    assert_true(refused >= 1 && refused <= 2);
    assert_int_equal(es.accepted, 0);
    assert_int_equal(es.cids, 0);
    syn_test_raw_client_free(c);

    /* A token that is none of ours (no NEW_TOKEN is ever issued) is ignored: the connection
     * proceeds as without one. */
    token[0] = 0x42;
    c = raw_device(loop, e, &st);
    assert_true(syn_test_run_until(loop, syn_test_raw_done, c, 5));
    assert_int_equal(c->err, 0);
    syn_edge_get_stats(e, &es);
    assert_true(es.tokens_ignored >= 1);
    assert_int_equal(es.tokens_refused, refused);
    assert_int_equal(es.accepted, 1);
    syn_test_raw_client_free(c);
    syn_test_finish(loop, NULL, e);
}

/* ---- (B) socket buffers ---- */

static void grab_buffers(void *ud, const char *line) {
    int *got = ud;
    cJSON *o = cJSON_Parse(line);
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(o, "event");
    if (cJSON_IsString(ev) && strcmp(ev->valuestring, "socket_buffers") == 0) {
        got[0] = cJSON_GetObjectItemCaseSensitive(o, "rcvbuf")->valueint;
        got[1] = cJSON_GetObjectItemCaseSensitive(o, "sndbuf")->valueint;
    }
    cJSON_Delete(o);
}

/* The edge's listening socket: the descriptor of this process bound to its port. */
static int edge_socket(syn_edge *e) {
    for (int fd = 0; fd < 4096; fd++) {
        struct sockaddr_in a;
        socklen_t l = sizeof(a);
        int type = 0;
        socklen_t tl = sizeof(type);
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 || type != SOCK_DGRAM)
            continue;
        if (getsockname(fd, (struct sockaddr *)&a, &l) == 0 && a.sin_family == AF_INET &&
            ntohs(a.sin_port) == syn_edge_port(e))
            return fd;
    }
    return -1;
}

static void test_socket_buffers(void **state) {
    (void)state;
    /* The helper: getsockopt reports at least the size asked for (unless the kernel caps it). */
    syn_sockaddr local;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    char detail[512];
    int fd = syn_udp_open(NULL, 0, (struct sockaddr *)&a, sizeof(a), 1, &local, detail);
    assert_true(fd >= 0);
    int rcv = 0, snd = 0;
    assert_int_equal(syn_udp_set_buffers(fd, 2 * 1024 * 1024, &rcv, &snd), 0);
    close(fd);

    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    syn_edge_config ec;
    syn_test_edge_config(&ec, syn_test_pki_shared("hostile-1"));
    int got[2] = {0, 0};
    ec.log = grab_buffers;
    ec.log_user_data = got;
    syn_edge *e = syn_test_edge_start(loop, &ec);
    int efd = edge_socket(e);
    assert_true(efd >= 0);
    int ercv = 0, esnd = 0;
    socklen_t l = sizeof(int);
    assert_int_equal(getsockopt(efd, SOL_SOCKET, SO_RCVBUF, &ercv, &l), 0);
    l = sizeof(int);
    assert_int_equal(getsockopt(efd, SOL_SOCKET, SO_SNDBUF, &esnd, &l), 0);
    print_message("edge socket buffers: SO_RCVBUF %d, SO_SNDBUF %d (asked %zu; logged %d, %d)\n",
                  ercv, esnd, ec.socket_buffer, got[0], got[1]);
    if (rcv < 2 * 1024 * 1024) {
        print_message("the kernel caps socket buffers here (not root, net.core.rmem_max low): "
                      "size assertions skipped\n");
    } else {
        assert_true(snd >= 2 * 1024 * 1024);
        assert_true(ercv >= (int)ec.socket_buffer);
        assert_true(esnd >= (int)ec.socket_buffer);
    }
    assert_int_equal(got[0], ercv); /* the log reports what the socket has */
    assert_int_equal(got[1], esnd);
    syn_test_finish(loop, NULL, e);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_migrations_keep_cid_table_bounded),
        cmocka_unit_test(test_retry_always),
        cmocka_unit_test(test_retry_threshold),
        cmocka_unit_test(test_forged_retry_token_refused),
        cmocka_unit_test(test_socket_buffers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

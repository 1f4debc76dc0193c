/* Security properties that no other test states: nothing secret reaches a log at any level (the
 * device's private key, whole certificates), on success or on any error path; and nothing is sent
 * in 0-RTT, nor is a session resumed, even on a reconnect to the same edge (counted on the wire
 * by a relay that parses every coalesced long-header packet). docs/security.md maps the threat
 * model to these and the other tests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "synesis/request.h"

static const char *pki;

/* ---- every log line of the tunnel and of the edge, and every error detail ---- */

typedef struct logbook {
    char *text; /* all lines, '\n'-separated */
    size_t len, cap;
    size_t lines;
} logbook;

static void book_add(logbook *b, const char *line) {
    size_t n = strlen(line);
    if (b->len + n + 2 > b->cap) {
        b->cap = (b->len + n + 2) * 2;
        b->text = realloc(b->text, b->cap);
        assert_non_null(b->text);
    }
    memcpy(b->text + b->len, line, n);
    b->len += n;
    b->text[b->len++] = '\n';
    b->text[b->len] = 0;
    b->lines++;
}

static void tunnel_log(synesis_log_level level, const char *msg, void *ud) {
    (void)level;
    book_add(ud, msg);
}

static void edge_log(void *ud, const char *line) { book_add(ud, line); }

/* Case-insensitive search. */
static const char *find_ci(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    for (const char *p = hay; *p; p++)
        if (strncasecmp(p, needle, n) == 0)
            return p;
    return NULL;
}

/* The secrets to look for: the private scalar of each key (hex), and a base64 line from the
 * middle of each certificate (any log that printed the certificate would contain it). */
typedef struct secrets {
    char key_hex[2][200];
    char cert_b64[2][80];
} secrets;

static void key_hex(const char *path, char *out, size_t cap) {
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(k);
    BIGNUM *bn = NULL;
    assert_int_equal(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_PRIV_KEY, &bn), 1);
    char *hex = BN_bn2hex(bn);
    assert_non_null(hex);
    assert_true(strlen(hex) >= 60);
    snprintf(out, cap, "%s", hex);
    OPENSSL_free(hex);
    BN_free(bn);
    EVP_PKEY_free(k);
}

static void cert_line(const char *path, char *out, size_t cap) {
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[256];
    int i = 0;
    out[0] = 0;
    while (fgets(line, sizeof(line), f)) {
        if (++i == 5) { /* the 4th base64 line: inside the subject key and signature area */
            size_t n = strcspn(line, "\r\n");
            if (n >= cap)
                n = cap - 1;
            memcpy(out, line, n);
            out[n] = 0;
            break;
        }
    }
    fclose(f);
    assert_true(strlen(out) >= 60);
}

static void load_secrets(secrets *s) {
    key_hex(syn_test_path(pki, "device.key"), s->key_hex[0], sizeof(s->key_hex[0]));
    key_hex(syn_test_path(pki, "edge.key"), s->key_hex[1], sizeof(s->key_hex[1]));
    cert_line(syn_test_path(pki, "device.pem"), s->cert_b64[0], sizeof(s->cert_b64[0]));
    cert_line(syn_test_path(pki, "edge.pem"), s->cert_b64[1], sizeof(s->cert_b64[1]));
}

static void assert_clean(const logbook *b, const secrets *s) {
    static const char *const words[] = {"-----BEGIN", "KEY-----", "CERTIFICATE-----"};
    const char *text = b->text ? b->text : "";
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (find_ci(text, words[i]))
            fail_msg("a log line holds \"%s\": %.200s", words[i], find_ci(text, words[i]));
    for (int i = 0; i < 2; i++) {
        /* Any 32 hex digits of the scalar, anywhere: a partial dump counts too. */
        size_t kl = strlen(s->key_hex[i]);
        for (size_t off = 0; off + 32 <= kl; off += 8) {
            char part[33];
            memcpy(part, s->key_hex[i] + off, 32);
            part[32] = 0;
            if (find_ci(text, part))
                fail_msg("a log line holds private key %d's scalar", i);
        }
        char part[33];
        memcpy(part, s->cert_b64[i] + 16, 32);
        part[32] = 0;
        if (strstr(text, part))
            fail_msg("a log line holds certificate %d", i);
    }
}

static int fixture_setup(void **state) {
    (void)state;
    pki = syn_test_pki_shared("secure-1");
    return 0;
}

/* Connect, requests, heartbeats, a kick and reconnect, a clean close: every log line of the
 * tunnel at TRACE (ngtcp2's packet trace included) and every event of the edge; then the error
 * paths that name key and certificate files (wrong passphrase, mismatched key, untrusted edge,
 * wrong name) with their details. None holds a key or a certificate. */
static void test_no_secrets_in_logs(void **state) {
    (void)state;
    secrets s;
    load_secrets(&s);
    logbook b = {0};
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    syn_edge_config ec;
    syn_test_edge_config(&ec, pki);
    ec.log = edge_log;
    ec.log_user_data = &b;
    syn_edge *e = NULL;
    char detail[512];
    e = syn_test_edge_start(loop, &ec);

    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, pki, syn_edge_port(e));
    cfg.log = tunnel_log;
    cfg.log_user_data = &b;
    cfg.log_level = SYNESIS_LOG_TRACE;
    cfg.heartbeat_interval = 0.1;
    synesis_tunnel *t = syn_test_tunnel_connected(loop, &cfg, NULL, NULL, 5);
    for (int i = 0; i < 3; i++) {
        syn_test_result res = {0};
        syn_test_request(loop, t, "hello secrets", 13, NULL, &res, 5);
        assert_int_equal(res.status, 0);
        free(res.data);
    }
    syn_test_run_for(loop, 0.3); /* heartbeats */
    syn_edge_kick(e, "secure-1");
    syn_test_run_for(loop, 0.05);
    assert_true(syn_test_run_until(loop, syn_test_connected, t, 5));
    synesis_tunnel_free(t);
    syn_test_run_for(loop, 0.05);
    assert_true(b.lines > 100); /* the trace really ran */

    /* Error paths: each one's detail and log lines. */
    struct {
        const char *key, *pass, *ca, *name;
        int connect; /* the error shows at connect (handshake), not at new */
    } cases[] = {
        {"edge.key", NULL,               NULL,       NULL,                   0}, /* the key does not match the certificate */
        {NULL,       "wrong passphrase", NULL,       NULL,                   0}, /* a passphrase for an unencrypted key: ok */
        {NULL,       NULL,               "edge.pem", NULL,                   1}, /* the edge does not chain to this "CA" */
        {NULL,       NULL,               NULL,       "not-the-edge.example", 1}, /* name mismatch */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        syn_test_tunnel_config(&cfg, pki, syn_edge_port(e));
        cfg.log = tunnel_log;
        cfg.log_user_data = &b;
        cfg.log_level = SYNESIS_LOG_TRACE;
        cfg.reconnect_max_attempts = 1;
        if (cases[i].key)
            cfg.key_path = syn_test_path(pki, cases[i].key);
        if (cases[i].pass)
            cfg.key_passphrase = cases[i].pass;
        if (cases[i].ca)
            cfg.ca_path = syn_test_path(pki, cases[i].ca);
        if (cases[i].name)
            cfg.server_name = cases[i].name;
        detail[0] = 0;
        int rv = synesis_tunnel_new(&t, loop, &cfg, NULL, NULL, detail, sizeof(detail));
        book_add(&b, detail);
        if (rv == 0) {
            assert_int_equal(synesis_tunnel_connect(t), 0);
            syn_test_run_for(loop, 0.3);
            if (cases[i].connect)
                assert_false(synesis_tunnel_is_connected(t));
            book_add(&b, synesis_tunnel_last_error(t));
            synesis_tunnel_free(t);
        } else {
            assert_int_equal(cases[i].connect, 0);
        }
    }
    assert_clean(&b, &s);
    print_message("%zu log lines (%zu bytes) checked: no key, no certificate\n", b.lines, b.len);
    syn_test_finish(loop, NULL, e); /* the edge logs its stop into b */
    free(b.text);
}

/* ---- 0-RTT on the wire ---- */

typedef struct relay {
    struct ev_loop *loop;
    int front, back; /* front: the tunnel talks to it; back: connected to the edge */
    struct sockaddr_storage client;
    socklen_t client_len;
    ev_io fio, bio;
    int long_types[4]; /* client long-header packets by type: Initial, 0-RTT, Handshake, Retry */
    int datagrams_up;
} relay;

static int varint(const uint8_t *p, size_t len, size_t *at, uint64_t *out) {
    if (*at >= len)
        return -1;
    size_t n = (size_t)1 << (p[*at] >> 6);
    if (*at + n > len)
        return -1;
    uint64_t v = p[*at] & 0x3f;
    for (size_t i = 1; i < n; i++)
        v = (v << 8) | p[*at + i];
    *at += n;
    *out = v;
    return 0;
}

/* Counts every long-header packet in a client datagram (QUIC v1 coalesces Initial, 0-RTT and
 * Handshake packets in one datagram; their lengths are not encrypted). */
static void count_packets(relay *r, const uint8_t *p, size_t len) {
    size_t at = 0;
    while (at < len && (p[at] & 0x80)) {
        int type = (p[at] >> 4) & 3;
        r->long_types[type]++;
        size_t h = at + 5;
        if (h >= len)
            return;
        h += 1 + p[h]; /* DCID */
        if (h >= len)
            return;
        h += 1 + p[h]; /* SCID */
        uint64_t v;
        if (type == 0) { /* Initial: token */
            if (varint(p, len, &h, &v) != 0)
                return;
            h += v;
        }
        if (type == 3 || varint(p, len, &h, &v) != 0)
            return;
        at = h + v;
    }
}

static void front_cb(struct ev_loop *loop, ev_io *w, int revents) {
    (void)loop;
    (void)revents;
    relay *r = w->data;
    uint8_t buf[65536];
    for (;;) {
        r->client_len = sizeof(r->client);
        ssize_t n =
            recvfrom(r->front, buf, sizeof(buf), 0, (struct sockaddr *)&r->client, &r->client_len);
        if (n < 0)
            return;
        r->datagrams_up++;
        count_packets(r, buf, (size_t)n);
        (void)send(r->back, buf, (size_t)n, 0);
    }
}

static void back_cb(struct ev_loop *loop, ev_io *w, int revents) {
    (void)loop;
    (void)revents;
    relay *r = w->data;
    uint8_t buf[65536];
    for (;;) {
        ssize_t n = recv(r->back, buf, sizeof(buf), 0);
        if (n < 0)
            return;
        (void)sendto(r->front, buf, (size_t)n, 0, (struct sockaddr *)&r->client, r->client_len);
    }
}

static uint16_t relay_start(relay *r, struct ev_loop *loop, uint16_t edge_port) {
    memset(r, 0, sizeof(*r));
    r->loop = loop;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    r->front = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    r->back = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    assert_int_equal(bind(r->front, (struct sockaddr *)&a, sizeof(a)), 0);
    struct sockaddr_in ed = a;
    ed.sin_port = htons(edge_port);
    assert_int_equal(connect(r->back, (struct sockaddr *)&ed, sizeof(ed)), 0);
    socklen_t l = sizeof(a);
    assert_int_equal(getsockname(r->front, (struct sockaddr *)&a, &l), 0);
    ev_io_init(&r->fio, front_cb, r->front, EV_READ);
    ev_io_init(&r->bio, back_cb, r->back, EV_READ);
    r->fio.data = r->bio.data = r;
    ev_io_start(loop, &r->fio);
    ev_io_start(loop, &r->bio);
    return ntohs(a.sin_port);
}

static void relay_stop(relay *r) {
    ev_io_stop(r->loop, &r->fio);
    ev_io_stop(r->loop, &r->bio);
    close(r->front);
    close(r->back);
}

/* A tunnel connects, exchanges requests, is kicked and reconnects to the same edge three times:
 * the relay sees Initial and Handshake packets from it and not one 0-RTT packet (nothing is ever
 * sent before the handshake completes; no session is kept to resume). */
static void test_no_0rtt(void **state) {
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    syn_edge *e = syn_test_edge(loop, pki, 5.0);
    relay r;
    uint16_t port = relay_start(&r, loop, syn_edge_port(e));
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, pki, port);
    synesis_tunnel *t = syn_test_tunnel_new(loop, &cfg, NULL, NULL);
    assert_int_equal(synesis_tunnel_connect(t), 0);
    for (int round = 0; round < 4; round++) {
        assert_true(syn_test_run_until(loop, syn_test_connected, t, 5));
        /* A request queued at once: it must wait for the handshake, never ride in 0-RTT. */
        syn_test_result res = {0};
        syn_test_request(loop, t, "early?", 6, NULL, &res, 5);
        assert_int_equal(res.status, 0);
        free(res.data);
        if (round < 3) {
            syn_edge_kick(e, "secure-1");
            syn_test_run_for(loop, 0.05);
        }
    }
    syn_edge_stats st;
    syn_edge_get_stats(e, &st);
    assert_int_equal(st.handshakes, 4);
    assert_true(r.long_types[0] >= 4); /* Initial */
    assert_true(r.long_types[2] >= 4); /* Handshake */
    assert_int_equal(r.long_types[1], 0);
    print_message("%d client datagrams: %d Initial, %d 0-RTT, %d Handshake packets\n",
                  r.datagrams_up, r.long_types[0], r.long_types[1], r.long_types[2]);
    synesis_tunnel_free(t);
    syn_test_run_for(loop, 0.05);
    relay_stop(&r);
    syn_test_finish(loop, NULL, e);
}

/* The packet counter itself: a hand-made datagram of an Initial coalesced with a 0-RTT packet is
 * counted as one of each (so a 0-RTT packet could not go unseen). */
static void test_counter_sees_coalesced_0rtt(void **state) {
    (void)state;
    relay r;
    memset(&r, 0, sizeof(r));
    uint8_t d[64] = {0};
    size_t n = 0;
    /* Initial: 0xc0, v1, DCID 8, SCID 0, token 0, length 4, 4 bytes */
    const uint8_t init[] = {0xc0, 0, 0, 0, 1, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 4, 9, 9, 9, 9};
    /* 0-RTT: 0xd0, v1, DCID 8, SCID 0, length 3, 3 bytes */
    const uint8_t zrtt[] = {0xd0, 0, 0, 0, 1, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 3, 7, 7, 7};
    memcpy(d, init, sizeof(init));
    n += sizeof(init);
    memcpy(d + n, zrtt, sizeof(zrtt));
    n += sizeof(zrtt);
    count_packets(&r, d, n);
    assert_int_equal(r.long_types[0], 1);
    assert_int_equal(r.long_types[1], 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_secrets_in_logs),
        cmocka_unit_test(test_no_0rtt),
        cmocka_unit_test(test_counter_sees_coalesced_0rtt),
    };
    return cmocka_run_group_tests(tests, fixture_setup, NULL);
}

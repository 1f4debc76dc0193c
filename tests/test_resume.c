/*
 * Resumption and NEW_TOKEN, end to end: the tunnel against the reference edge over loopback UDP
 * with the test PKI. The edge kicks the device (CONNECTION_CLOSE) and the tunnel reconnects at
 * once; the edge's counters and its "connection" events say whether the handshake resumed and how
 * the address was validated, the tunnel's store (resume.h) what it kept and offered. Waits are
 * for conditions with generous deadlines; nothing here measures speed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fault_proxy.h"
#include "edge/edge_test.h"
#include "harness.h"
#include "resume.h"
#include "tunnel_int.h"
#include "tunnel_test.h"

#define LOG_MAX 128

typedef struct fixture {
    struct ev_loop *loop;
    const char *pki;
    syn_edge *edge;
    char edge_log[LOG_MAX][512];
    int edge_log_n;
} fixture;

static void edge_log(void *ud, const char *line) {
    fixture *f = ud;
    if (f->edge_log_n < LOG_MAX)
        snprintf(f->edge_log[f->edge_log_n++], sizeof(f->edge_log[0]), "%s", line);
}

static void edge_new(fixture *f, void (*tweak)(syn_edge_config *)) {
    syn_edge_config ec;
    syn_test_edge_config(&ec, f->pki);
    ec.log = edge_log;
    ec.log_user_data = f;
    ec.retry_threshold = SYN_EDGE_RETRY_NEVER;
    if (tweak)
        tweak(&ec);
    f->edge = syn_test_edge_start(f->loop, &ec);
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->loop = ev_loop_new(EVFLAG_AUTO);
    f->pki = syn_test_pki_shared("test-1");
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    syn_edge_free(f->edge);
    assert_int_equal(ev_run(f->loop, EVRUN_NOWAIT), 0);
    ev_loop_destroy(f->loop);
    free(f);
    return 0;
}

static syn_edge_stats edge_stats(fixture *f) {
    syn_edge_stats es;
    syn_edge_get_stats(f->edge, &es);
    return es;
}

/* The edge's "connection" events, in order: 1 resumed, 0 not; -1 when there is no n-th. */
static int conn_resumed(fixture *f, int n, char *validated, size_t vlen) {
    for (int i = 0; i < f->edge_log_n; i++) {
        const char *l = f->edge_log[i];
        if (!strstr(l, "\"event\":\"connection\""))
            continue;
        if (n-- > 0)
            continue;
        if (validated) {
            const char *v = strstr(l, "\"address_validated\":\"");
            snprintf(validated, vlen, "%.*s", v ? (int)strcspn(v + 21, "\"") : 0, v ? v + 21 : "");
        }
        return strstr(l, "\"resumed\":true") != NULL;
    }
    return -1;
}

/* The public API's side (config.resumption, early_data, resume_data, callbacks.on_resume_data):
 * what a test sets, and what the tunnel told it. */
typedef struct api {
    int resumption, early_data; /* 1 unless set to 0 by a test (as the defaults) */
    int set;                    /* the two above are the test's */
    const uint8_t *resume_data;
    size_t resume_data_len;
    int want_callback;
    /* on_resume_data: calls, and a copy of the last data */
    int calls;
    uint8_t *data;
    size_t len;
    char warn[512]; /* the tunnel's last WARN log line */
} api;

static void on_resume_data(synesis_tunnel *t, const uint8_t *data, size_t len, void *ud) {
    (void)t;
    api *a = ud;
    assert_non_null(data);
    assert_true(len > 0);
    a->calls++;
    free(a->data);
    a->data = malloc(len);
    assert_non_null(a->data);
    memcpy(a->data, data, len);
    a->len = len;
}

static void api_log(synesis_log_level level, const char *msg, void *ud) {
    api *a = ud;
    if (level == SYNESIS_LOG_WARN)
        snprintf(a->warn, sizeof(a->warn), "%s", msg);
}

static synesis_tunnel *tunnel_new_api(fixture *f, const char *server_name, api *a) {
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, f->pki, syn_edge_port(f->edge));
    if (server_name)
        cfg.server_name = server_name;
    synesis_tunnel_callbacks cb;
    synesis_tunnel_callbacks_init(&cb);
    if (a) {
        if (a->set) {
            cfg.resumption = a->resumption;
            cfg.early_data = a->early_data;
        }
        cfg.resume_data = a->resume_data;
        cfg.resume_data_len = a->resume_data_len;
        cfg.log = api_log;
        cfg.log_user_data = a;
        cfg.log_level = SYNESIS_LOG_WARN;
        if (a->want_callback)
            cb.on_resume_data = on_resume_data;
    }
    return syn_test_tunnel_new(f->loop, &cfg, &cb, a);
}

static synesis_tunnel *tunnel_new(fixture *f, const char *server_name) {
    return tunnel_new_api(f, server_name, NULL);
}

static synesis_tunnel *connect_tunnel_api(fixture *f, const char *server_name, api *a) {
    synesis_tunnel *t = tunnel_new_api(f, server_name, a);
    syn_test_connect(f->loop, t, 5);
    return t;
}

static synesis_tunnel *connect_tunnel(fixture *f, const char *server_name) {
    return connect_tunnel_api(f, server_name, NULL);
}

static synesis_tunnel_stats tunnel_stats(synesis_tunnel *t) {
    synesis_tunnel_stats st;
    assert_int_equal(synesis_tunnel_get_stats(t, &st), 0);
    return st;
}

typedef struct ticket_wait {
    synesis_tunnel *t;
    const char *host;
    size_t n;
} ticket_wait;

static int has_tickets(void *ud) {
    ticket_wait *w = ud;
    syn_resume *r = syn_tunnel_resume(w->t);
    return r && syn_resume_count(r, w->host) >= w->n;
}

/* Waits until the tunnel holds at least n tickets for host. */
static void wait_tickets(fixture *f, synesis_tunnel *t, const char *host, size_t n) {
    ticket_wait w = {t, host, n};
    assert_true(syn_test_run_until(f->loop, has_tickets, &w, 5));
}

typedef struct conn_wait {
    synesis_tunnel *t;
    uint64_t connections;
    syn_edge *e;
    uint64_t handshakes;
} conn_wait;

/* The tunnel is Connected on its next connection, and the edge has completed that handshake too
 * (a resumed connection is up on the device half a round trip before the edge has the device's
 * Finished). */
static int reconnected(void *ud) {
    conn_wait *w = ud;
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(w->t, &st);
    syn_edge_stats es;
    syn_edge_get_stats(w->e, &es);
    return st.connections >= w->connections && synesis_tunnel_is_connected(w->t) &&
           es.handshakes >= w->handshakes;
}

/* The edge closes the device's connection; the tunnel is Connected again on a new one. */
static void kick_and_reconnect(fixture *f, synesis_tunnel *t) {
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(t, &st);
    syn_edge_kick(f->edge, "test-1");
    conn_wait w = {t, st.connections + 1, f->edge, edge_stats(f).handshakes + 1};
    assert_true(syn_test_run_until(f->loop, reconnected, &w, 5));
}

static void free_tunnel(fixture *f, synesis_tunnel *t) {
    synesis_tunnel_free(t);
    syn_test_run_for(f->loop, 0.05);
}

/* The second connection of a tunnel resumes the first one's session: the edge says so (its
 * counter and its log), so does the tunnel's store; the third resumes a ticket of the second. */
static void test_second_connection_resumes(void **state) {
    fixture *f = *state;
    edge_new(f, NULL);
    synesis_tunnel *t = connect_tunnel(f, NULL);
    assert_int_equal(conn_resumed(f, 0, NULL, 0), 0); /* the first: a full handshake */
    wait_tickets(f, t, "localhost", 1);
    kick_and_reconnect(f, t);
    assert_int_equal(edge_stats(f).resumed, 1);
    assert_int_equal(conn_resumed(f, 1, NULL, 0), 1);
    syn_resume *r = syn_tunnel_resume(t);
    assert_int_equal(r->offered, 1);
    assert_int_equal(r->resumed, 1);
    /* A resumed connection gets a ticket of its own, for the next one. */
    wait_tickets(f, t, "localhost", 1);
    kick_and_reconnect(f, t);
    assert_int_equal(edge_stats(f).resumed, 2);
    assert_int_equal(conn_resumed(f, 2, NULL, 0), 1);
    assert_int_equal(edge_stats(f).handshakes, 3);
    free_tunnel(f, t);
}

/* A ticket is offered once: the one taken for a connection leaves the store, and with the edge
 * sending no more tickets, the connection after next is a full handshake. */
static void no_more_tickets_after_first(syn_edge_config *ec) { ec->session_tickets = 1; }
static void test_ticket_used_once(void **state) {
    fixture *f = *state;
    edge_new(f, no_more_tickets_after_first);
    synesis_tunnel *t = connect_tunnel(f, NULL);
    wait_tickets(f, t, "localhost", 1);
    syn_resume *r = syn_tunnel_resume(t);
    assert_int_equal(syn_resume_count(r, NULL), 1);
    SSL_SESSION *first = r->tickets[0].sess;
    /* From now on the edge sends no tickets: what the tunnel holds is all it will ever have. */
    SSL_CTX *ctx = SSL_get_SSL_CTX(syn_qconn_ssl(syn_edge_newest_qconn(f->edge)));
    assert_int_equal(SSL_CTX_set_num_tickets(ctx, 0), 1);
    kick_and_reconnect(f, t);
    assert_int_equal(edge_stats(f).resumed, 1);
    assert_int_equal(r->offered, 1);
    for (size_t i = 0; i < r->n; i++)
        assert_ptr_not_equal(r->tickets[i].sess, first);
    syn_test_run_for(f->loop, 0.1);
    assert_int_equal(syn_resume_count(r, NULL), 0);
    kick_and_reconnect(f, t);
    assert_int_equal(r->offered, 1);            /* nothing left to offer */
    assert_int_equal(edge_stats(f).resumed, 1); /* so the third is a full handshake */
    assert_int_equal(conn_resumed(f, 2, NULL, 0), 0);
    free_tunnel(f, t);
}

/* A ticket received for one server name is never offered for another: tunnel B (server name
 * "127.0.0.1", which the edge's certificate also holds) gets tunnel A's "localhost" ticket in its
 * store, and still makes a full handshake, leaving the ticket where it is. */
static void test_ticket_not_offered_to_other_name(void **state) {
    fixture *f = *state;
    edge_new(f, NULL);
    synesis_tunnel *a = connect_tunnel(f, NULL);
    wait_tickets(f, a, "localhost", 1);
    uint8_t *blob;
    size_t len;
    assert_int_equal(syn_resume_export(syn_tunnel_resume(a), "localhost", &blob, &len), 0);
    free_tunnel(f, a);

    synesis_tunnel *b = tunnel_new(f, "127.0.0.1");
    /* B's store exists once it has received something: give it A's ticket first. */
    syn_test_connect(f->loop, b, 5);
    wait_tickets(f, b, "127.0.0.1", 1);
    syn_resume *r = syn_tunnel_resume(b);
    syn_resume_clear(r);
    assert_int_equal(syn_resume_import(r, blob, len), 0);
    free(blob);
    assert_int_equal(syn_resume_count(r, "localhost"), 1);
    uint64_t resumed = edge_stats(f).resumed;
    kick_and_reconnect(f, b);
    assert_int_equal(edge_stats(f).resumed, resumed);
    assert_int_equal(r->offered, 0);
    assert_int_equal(syn_resume_count(r, "localhost"), 1); /* never taken */
    /* The store itself: nothing for another name, even a prefix or a case variant. */
    assert_null(syn_resume_take(r, "127.0.0.2", NULL, NULL));
    assert_null(syn_resume_take(r, "LOCALHOST", NULL, NULL));
    assert_null(syn_resume_take(r, "localhos", NULL, NULL));
    free_tunnel(f, b);
}

/* A ticket the edge cannot open (one byte of it changed) costs a full handshake, not a failure. */
static void test_tampered_ticket_full_handshake(void **state) {
    fixture *f = *state;
    edge_new(f, NULL);
    synesis_tunnel *t = connect_tunnel(f, NULL);
    wait_tickets(f, t, "localhost", 1);
    syn_resume *r = syn_tunnel_resume(t);
    SSL_SESSION *sess = r->tickets[r->n - 1].sess;
    const unsigned char *tick;
    size_t ticklen;
    SSL_SESSION_get0_ticket(sess, &tick, &ticklen);
    assert_true(ticklen > 32);
    uint8_t *blob;
    size_t len;
    assert_int_equal(syn_resume_export(r, "localhost", &blob, &len), 0);
    /* The ticket's bytes sit in the DER session, inside the blob: flip one in the middle. */
    uint8_t *at = memmem(blob, len, tick, ticklen);
    assert_non_null(at);
    at[ticklen / 2] ^= 0x5a;
    syn_resume_clear(r);
    assert_int_equal(syn_resume_import(r, blob, len), 0);
    free(blob);
    kick_and_reconnect(f, t);
    assert_int_equal(r->offered, 1);
    assert_int_equal(r->resumed, 0);
    assert_int_equal(edge_stats(f).resumed, 0);
    assert_int_equal(conn_resumed(f, 1, NULL, 0), 0);
    free_tunnel(f, t);
}

/* A ticket past its lifetime (the edge's hint: 1 s here) is dropped, not offered; the reconnect
 * is a full handshake. */
static void short_tickets(syn_edge_config *ec) { ec->ticket_lifetime = 1; }
static void test_expired_ticket_full_handshake(void **state) {
    fixture *f = *state;
    edge_new(f, short_tickets);
    synesis_tunnel *t = connect_tunnel(f, NULL);
    wait_tickets(f, t, "localhost", 1);
    syn_resume *r = syn_tunnel_resume(t);
    syn_test_run_for(f->loop, 1.3);
    assert_int_equal(syn_resume_count(r, "localhost"), 0);
    assert_true(r->expired >= 1);
    kick_and_reconnect(f, t);
    assert_int_equal(r->offered, 0);
    assert_int_equal(edge_stats(f).resumed, 0);
    assert_int_equal(conn_resumed(f, 1, NULL, 0), 0);
    free_tunnel(f, t);
}

/* An edge that validates every new address (Retry for each connection without a token) lets a
 * device with its NEW_TOKEN token in without one; a token it did not issue still gets a Retry. */
static void retry_always(syn_edge_config *ec) { ec->retry_threshold = 0; }
static int has_token(void *ud) {
    syn_resume *r = syn_tunnel_resume(ud);
    return r && r->tokenlen;
}
static void test_new_token_skips_retry(void **state) {
    fixture *f = *state;
    edge_new(f, retry_always);
    synesis_tunnel *t = connect_tunnel(f, NULL);
    char how[32];
    /* A Retry per Initial datagram without a token (the ClientHello may take two). */
    uint64_t retries = edge_stats(f).retries;
    assert_true(retries >= 1);
    conn_resumed(f, 0, how, sizeof(how));
    assert_string_equal(how, "retry");
    assert_true(syn_test_run_until(f->loop, has_token, t, 5));
    assert_int_equal(edge_stats(f).new_tokens_sent, 1);
    kick_and_reconnect(f, t);
    assert_int_equal(edge_stats(f).retries, retries); /* no Retry this time */
    assert_true(edge_stats(f).new_tokens_accepted >= 1);
    conn_resumed(f, 1, how, sizeof(how));
    assert_string_equal(how, "new_token");

    /* A forged token (the type byte of ours, the rest garbage): ignored, so a Retry again. */
    syn_resume *r = syn_tunnel_resume(t);
    syn_test_run_for(f->loop, 0.1); /* the second connection's own token has arrived */
    r->token[r->tokenlen / 2] ^= 0x5a;
    uint64_t ignored = edge_stats(f).tokens_ignored;
    kick_and_reconnect(f, t);
    assert_true(edge_stats(f).retries > retries);
    assert_true(edge_stats(f).tokens_ignored > ignored);
    conn_resumed(f, 2, how, sizeof(how));
    assert_string_equal(how, "retry");
    free_tunnel(f, t);
}

/* Persistence through the public API, a restarted agent: callbacks.on_resume_data hands over the
 * data when the edge's ticket arrives (the same bytes synesis_tunnel_resume_data() copies out),
 * and a new tunnel given them in config.resume_data resumes its very first connection. */
static int got_resume_data(void *ud) { return ((api *)ud)->calls > 0; }

static void test_resume_data_resumes_in_new_tunnel(void **state) {
    fixture *f = *state;
    edge_new(f, NULL);
    api a = {.want_callback = 1};
    synesis_tunnel *ta = connect_tunnel_api(f, NULL, &a);
    assert_true(syn_test_run_until(f->loop, got_resume_data, &a, 5));
    assert_int_equal(a.calls, 1);
    /* The copy-out call gives the same data; too small a buffer gets the length, no bytes. */
    int n = synesis_tunnel_resume_data(ta, NULL, 0);
    assert_int_equal(n, (int)a.len);
    uint8_t *copy = malloc(a.len), small[8] = {0}, zero[8] = {0};
    assert_non_null(copy);
    assert_int_equal(synesis_tunnel_resume_data(ta, copy, a.len), n);
    assert_memory_equal(copy, a.data, a.len);
    assert_int_equal(synesis_tunnel_resume_data(ta, small, sizeof(small)), n);
    assert_memory_equal(small, zero, sizeof(small));
    free(copy);
    assert_int_equal(tunnel_stats(ta).resumed_connections, 0);
    free_tunnel(f, ta);

    /* The restart: a new tunnel, its first connection resumed. */
    api b = {.resume_data = a.data, .resume_data_len = a.len, .want_callback = 1};
    synesis_tunnel *tb = connect_tunnel_api(f, NULL, &b);
    if (b.warn[0])
        fail_msg("%s", b.warn);
    conn_wait w = {tb, 1, f->edge, 2}; /* the edge has the device's Finished too */
    assert_true(syn_test_run_until(f->loop, reconnected, &w, 5));
    assert_int_equal(edge_stats(f).resumed, 1);
    assert_int_equal(conn_resumed(f, 1, NULL, 0), 1);
    assert_int_equal(tunnel_stats(tb).resumed_connections, 1);
    assert_int_equal(tunnel_stats(tb).connections, 1);
    assert_string_equal(b.warn, "");
    /* and it hands over the resumed connection's own ticket, a new one */
    assert_true(syn_test_run_until(f->loop, got_resume_data, &b, 5));
    assert_true(b.len != a.len || memcmp(b.data, a.data, a.len) != 0);
    free_tunnel(f, tb);
    free(a.data);
    free(b.data);
}

/* Data that cannot be used is ignored, never an error and never a crash: synesis_tunnel_new()
 * succeeds, logs why at WARN, and the first connection is a full handshake. Cut short at every
 * length, each byte flipped in turn (in a sample), random bytes, another version, another server
 * name, expired. (The format's own checks are unit-tested on the store too.) */
static synesis_tunnel *ignored_case(fixture *f, const uint8_t *data, size_t len, const char *name,
                                    const char *why) {
    api a = {.resume_data = data, .resume_data_len = len};
    synesis_tunnel *t = tunnel_new_api(f, name, &a);
    if (why && !strstr(a.warn, why))
        fail_msg("resume_data of %zu bytes: warning \"%s\", expected \"%s\"", len, a.warn, why);
    assert_non_null(strstr(a.warn, "resume_data ignored"));
    assert_int_equal(synesis_tunnel_resume_data(t, NULL, 0), 0);
    return t;
}

static void test_bad_resume_data_ignored(void **state) {
    fixture *f = *state;
    edge_new(f, NULL);
    api a = {.want_callback = 1};
    synesis_tunnel *ta = connect_tunnel_api(f, NULL, &a);
    assert_true(syn_test_run_until(f->loop, got_resume_data, &a, 5));
    free_tunnel(f, ta);
    uint8_t *good = a.data;
    size_t len = a.len;

    /* The format, on a store: refused whole when cut short anywhere. */
    syn_resume scratch;
    syn_resume_init(&scratch);
    for (size_t cut = 0; cut < len; cut++)
        assert_int_equal(syn_resume_import(&scratch, good, cut), SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(scratch.n, 0);
    assert_int_equal(syn_resume_import(&scratch, good, len), 0);
    syn_resume_clear(&scratch);

    /* Through synesis_tunnel_new(). */
    synesis_tunnel_free(ignored_case(f, good, 5, NULL, "too short"));
    synesis_tunnel_free(ignored_case(f, good, len - 1, NULL, "truncated"));
    uint8_t *bad = malloc(len + 1);
    assert_non_null(bad);
    memcpy(bad, good, len);
    bad[0] ^= 0x80; /* another version of the format */
    synesis_tunnel_free(ignored_case(f, bad, len, NULL, "unknown format version"));
    memcpy(bad, good, len);
    bad[len] = 0;
    synesis_tunnel_free(ignored_case(f, bad, len + 1, NULL, "malformed"));
    srand(15);
    for (size_t i = 0; i < len; i++)
        bad[i] = (uint8_t)rand();
    bad[0] = good[0]; /* the right version byte, garbage after it */
    synesis_tunnel_free(ignored_case(f, bad, len, NULL, NULL));
    /* Flipped bytes: ignored, or accepted and then (a ticket the edge cannot open) a full
     * handshake; never a crash (ASan builds run this too). */
    for (size_t i = 1; i < len; i += 13) {
        memcpy(bad, good, len);
        bad[i] ^= 0x5a;
        api c = {.resume_data = bad, .resume_data_len = len};
        synesis_tunnel *t = tunnel_new_api(f, NULL, &c);
        synesis_tunnel_free(t);
    }
    /* Another server name: the edge's certificate holds "127.0.0.1" too. */
    synesis_tunnel *t = ignored_case(f, good, len, "127.0.0.1", "another server name");
    assert_int_equal(synesis_tunnel_connect(t), 0);
    assert_true(syn_test_run_until(f->loop, syn_test_connected, t, 5));
    assert_int_equal(tunnel_stats(t).resumed_connections, 0);
    assert_int_equal(edge_stats(f).resumed, 0);
    free_tunnel(f, t);
    /* Expired: the expiry is the 8 bytes after the version byte. */
    memcpy(bad, good, len);
    memset(bad + 1, 0, 8);
    bad[8] = 1;
    t = ignored_case(f, bad, len, NULL, "expired");
    assert_int_equal(synesis_tunnel_connect(t), 0);
    assert_true(syn_test_run_until(f->loop, syn_test_connected, t, 5));
    assert_int_equal(tunnel_stats(t).resumed_connections, 0);
    assert_int_equal(edge_stats(f).resumed, 0);
    free_tunnel(f, t);
    free(bad);
    free(good);
}

/* resumption = 0: no ticket kept (the callback never runs, nothing to copy out), none offered (a
 * reconnect is a full handshake), and resume_data given with it is not used. */
static void test_resumption_off(void **state) {
    fixture *f = *state;
    edge_new(f, NULL);
    api a = {.want_callback = 1};
    synesis_tunnel *ta = connect_tunnel_api(f, NULL, &a);
    assert_true(syn_test_run_until(f->loop, got_resume_data, &a, 5));
    free_tunnel(f, ta);

    api b = {.set = 1,
             .resumption = 0,
             .early_data = 1,
             .want_callback = 1,
             .resume_data = a.data,
             .resume_data_len = a.len};
    synesis_tunnel *t = connect_tunnel_api(f, NULL, &b);
    assert_int_equal(edge_stats(f).resumed, 0); /* resume_data not used */
    syn_test_run_for(f->loop, 0.3);             /* the edge's ticket has come and gone */
    assert_int_equal(b.calls, 0);
    assert_int_equal(synesis_tunnel_resume_data(t, NULL, 0), 0);
    assert_null(syn_tunnel_resume(t));
    kick_and_reconnect(f, t);
    assert_int_equal(edge_stats(f).resumed, 0);
    assert_int_equal(conn_resumed(f, 2, NULL, 0), 0);
    assert_int_equal(tunnel_stats(t).resumed_connections, 0);
    assert_int_equal(tunnel_stats(t).connections, 2);
    assert_int_equal(b.calls, 0);
    free_tunnel(f, t);
    free(a.data);
}

/* An edge without tickets (session_tickets 0): the tunnel has nothing to resume. */
static void no_tickets(syn_edge_config *ec) { ec->session_tickets = 0; }
static void test_edge_without_tickets(void **state) {
    fixture *f = *state;
    edge_new(f, no_tickets);
    synesis_tunnel *t = connect_tunnel(f, NULL);
    syn_test_run_for(f->loop, 0.2);
    syn_resume *r = syn_tunnel_resume(t); /* the NEW_TOKEN token made it */
    assert_non_null(r);
    assert_int_equal(r->received, 0);
    kick_and_reconnect(f, t);
    assert_int_equal(r->offered, 0);
    assert_int_equal(edge_stats(f).resumed, 0);
    free_tunnel(f, t);
}

/* At the moment the tunnel reports Connected, has the edge completed that handshake? Recorded by
 * a state subscriber, through a proxy that delays each datagram by 40 ms. */
typedef struct at_connected {
    syn_edge *e;
    uint64_t handshakes_before;
    int seen, edge_done;
} at_connected;

static void record_connected(synesis_tunnel *t, const synesis_tunnel_state *old,
                             const synesis_tunnel_state *now, void *ud) {
    (void)t;
    (void)old;
    at_connected *a = ud;
    if (now->kind != SYNESIS_STATE_CONNECTED || a->seen)
        return;
    syn_edge_stats es;
    syn_edge_get_stats(a->e, &es);
    a->seen = 1;
    a->edge_done = es.handshakes > a->handshakes_before;
}

/* A full handshake is up on the device only once the edge has judged its certificate
 * (HANDSHAKE_DONE, so the edge's handshake completed first); a resumed one is up as soon as the
 * device's own handshake completes, before the edge has its Finished (40 ms away on this path): no
 * certificate is left to judge, and the round trip to HANDSHAKE_DONE is saved. */
static void test_resumed_connected_without_handshake_done(void **state) {
    fixture *f = *state;
    edge_new(f, NULL);
    struct sockaddr_in up = {.sin_family = AF_INET, .sin_port = htons(syn_edge_port(f->edge))};
    struct sockaddr_in lis = {.sin_family = AF_INET};
    up.sin_addr.s_addr = lis.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    syn_fault_proxy *px = syn_fault_proxy_new(f->loop, (struct sockaddr *)&lis, sizeof(lis),
                                              (struct sockaddr *)&up, sizeof(up), 7);
    assert_non_null(px);
    syn_fault_dir d = {.delay_ms = 40};
    syn_fault_proxy_set(px, &d, &d);
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, f->pki, syn_fault_proxy_port(px));
    synesis_tunnel_callbacks cb;
    synesis_tunnel_callbacks_init(&cb);
    synesis_tunnel *t = syn_test_tunnel_new(f->loop, &cfg, &cb, NULL);
    at_connected a = {.e = f->edge};
    uint32_t sub;
    assert_int_equal(synesis_tunnel_subscribe(t, record_connected, &a, &sub), 0);
    syn_test_connect(f->loop, t, 5);
    assert_true(a.seen);
    assert_true(a.edge_done); /* full handshake: the edge first */
    wait_tickets(f, t, "localhost", 1);

    a.seen = 0;
    a.handshakes_before = edge_stats(f).handshakes;
    kick_and_reconnect(f, t);
    assert_true(a.seen);
    assert_int_equal(syn_tunnel_resume(t)->resumed, 1);
    assert_false(a.edge_done); /* resumed: the device first */
    /* and the connection works */
    syn_test_result res = {0};
    syn_test_request(f->loop, t, "after", 5, NULL, &res, 5);
    assert_int_equal(res.status, 0);
    assert_int_equal(res.len, 5);
    free(res.data);
    free_tunnel(f, t);
    syn_test_run_for(f->loop, 0.2); /* the proxy's delayed datagrams */
    syn_fault_proxy_free(px);
}

/* ---- 0-RTT ---- */

static void early_edge(syn_edge_config *ec) { ec->early_data = 1; }

/* Requests queued while the tunnel is Reconnecting (from the state callback, so they wait for the
 * next attempt, which resumes): n of them, the first n_idempotent marked idempotent. */
typedef struct early_reqs {
    int n, n_idempotent, submitted;
    syn_test_result res[4];
    int sent_early[4];
} early_reqs;

static early_reqs *cur_reqs;

static void on_early_response(synesis_tunnel *t, synesis_request *req, const synesis_response *r,
                              void *ud) {
    syn_test_result *res = ud;
    int i = (int)(res - cur_reqs->res);
    cur_reqs->sent_early[i] = syn_request_sent_early(req);
    syn_test_on_response(t, req, r, ud);
}

static void submit_on_reconnecting(synesis_tunnel *t, const synesis_tunnel_state *old,
                                   const synesis_tunnel_state *now, void *ud) {
    (void)old;
    early_reqs *q = ud;
    if (now->kind != SYNESIS_STATE_RECONNECTING || q->submitted)
        return;
    q->submitted = 1;
    synesis_request_options ro;
    synesis_request_options_init(&ro);
    ro.queue_while_reconnecting = 1;
    for (int i = 0; i < q->n; i++) {
        char body[24];
        snprintf(body, sizeof(body), "request-%d", i);
        ro.flags = i < q->n_idempotent ? SYNESIS_REQUEST_IDEMPOTENT : 0;
        synesis_request *r;
        assert_int_equal(
            synesis_tunnel_request(t, body, strlen(body), &ro, on_early_response, &q->res[i], &r),
            0);
    }
}

static int all_answered(void *ud) {
    early_reqs *q = ud;
    for (int i = 0; i < q->n; i++)
        if (!q->res[i].calls)
            return 0;
    return 1;
}

/* Kicks the device, queues q's requests as the tunnel goes Reconnecting, waits for every answer
 * (each exactly once, the echo of its own body) and for the edge's side of the handshake. */
static void reconnect_with_requests(fixture *f, synesis_tunnel *t, early_reqs *q) {
    cur_reqs = q;
    uint32_t sub;
    assert_int_equal(synesis_tunnel_subscribe(t, submit_on_reconnecting, q, &sub), 0);
    kick_and_reconnect(f, t);
    assert_true(syn_test_run_until(f->loop, all_answered, q, 5));
    assert_int_equal(synesis_tunnel_unsubscribe(t, sub), 0);
    for (int i = 0; i < q->n; i++) {
        char body[24];
        snprintf(body, sizeof(body), "request-%d", i);
        assert_int_equal(q->res[i].calls, 1);
        assert_int_equal(q->res[i].status, 0);
        assert_int_equal(q->res[i].len, strlen(body));
        assert_memory_equal(q->res[i].data, body, strlen(body));
        free(q->res[i].data);
    }
}

typedef struct req_wait {
    fixture *f;
    uint64_t n;
} req_wait;

static int edge_has_requests(void *ud) {
    req_wait *w = ud;
    return edge_stats(w->f).requests >= w->n;
}

/* The edge's requests answered (it counts one as its stream closes, once the device has
 * acknowledged the response): at least n within the deadline, then a moment more, so that a
 * duplicate would be counted too. */
static uint64_t edge_requests(fixture *f, uint64_t n) {
    req_wait w = {f, n};
    (void)syn_test_run_until(f->loop, edge_has_requests, &w, 5);
    syn_test_run_for(f->loop, 0.1);
    return edge_stats(f).requests;
}

static int edge_log_count(fixture *f, const char *what) {
    int n = 0;
    for (int i = 0; i < f->edge_log_n; i++)
        n += strstr(f->edge_log[i], what) != NULL;
    return n;
}

/* A request marked idempotent, queued while the tunnel reconnects, goes in 0-RTT on the resumed
 * connection; the edge accepts the early data, logs the request as arrived in 0-RTT, and answers
 * it once. A request not so marked waits for Connected, even on the same connection. */
static void test_idempotent_request_in_0rtt(void **state) {
    fixture *f = *state;
    edge_new(f, early_edge);
    synesis_tunnel *t = connect_tunnel(f, NULL);
    wait_tickets(f, t, "localhost", 1);
    uint64_t requests = edge_stats(f).requests;
    early_reqs q = {.n = 3, .n_idempotent = 1};
    reconnect_with_requests(f, t, &q);
    syn_edge_stats es = edge_stats(f);
    assert_int_equal(es.resumed, 1);
    assert_int_equal(es.early_accepted, 1);
    assert_int_equal(es.early_requests, 1); /* the idempotent one only */
    assert_int_equal(edge_requests(f, requests + 3), requests + 3);
    assert_int_equal(edge_log_count(f, "\"event\":\"early_request\""), 1);
    assert_true(q.sent_early[0]);
    assert_false(q.sent_early[1]);
    assert_false(q.sent_early[2]);
    assert_int_equal(syn_qconn_early_result(t->qc), 1);
    assert_int_equal(tunnel_stats(t).early_data_accepted, 1);
    assert_int_equal(tunnel_stats(t).resumed_connections, 1);
    free_tunnel(f, t);
}

/* Without an idempotent request, nothing goes in 0-RTT (the attempt is made and the edge accepts
 * it, but no stream opens before Connected); with 0-RTT off in the tunnel, not even the attempt. */
static void test_non_idempotent_never_in_0rtt(void **state) {
    fixture *f = *state;
    edge_new(f, early_edge);
    synesis_tunnel *t = connect_tunnel(f, NULL);
    wait_tickets(f, t, "localhost", 1);
    early_reqs q = {.n = 4, .n_idempotent = 0};
    reconnect_with_requests(f, t, &q);
    assert_int_equal(edge_stats(f).early_requests, 0);
    for (int i = 0; i < 4; i++)
        assert_false(q.sent_early[i]);
    assert_int_equal(edge_stats(f).resumed, 1);

    assert_int_equal(tunnel_stats(t).early_data_accepted, 1);
    free_tunnel(f, t);

    /* config.early_data = 0: the connection resumes, nothing goes early. */
    api a = {.set = 1, .resumption = 1, .early_data = 0};
    t = connect_tunnel_api(f, NULL, &a);
    wait_tickets(f, t, "localhost", 1);
    early_reqs q2 = {.n = 2, .n_idempotent = 2};
    reconnect_with_requests(f, t, &q2);
    assert_int_equal(edge_stats(f).early_requests, 0);
    assert_int_equal(edge_stats(f).early_accepted, 1); /* the first reconnect's, not this one */
    assert_int_equal(edge_stats(f).resumed, 2);
    assert_int_equal(syn_qconn_early_result(t->qc), 0);
    for (int i = 0; i < 2; i++)
        assert_false(q2.sent_early[i]);
    assert_int_equal(tunnel_stats(t).resumed_connections, 1);
    assert_int_equal(tunnel_stats(t).early_data_accepted, 0);
    assert_int_equal(tunnel_stats(t).early_data_rejected, 0);
    free_tunnel(f, t);
}

/* An edge without 0-RTT (the default) issues tickets that allow no early data: the idempotent
 * request waits for Connected. */
static void test_edge_without_0rtt(void **state) {
    fixture *f = *state;
    edge_new(f, NULL);
    synesis_tunnel *t = connect_tunnel(f, NULL);
    wait_tickets(f, t, "localhost", 1);
    assert_int_equal(SSL_SESSION_get_max_early_data(syn_tunnel_resume(t)->tickets[0].sess), 0);
    early_reqs q = {.n = 1, .n_idempotent = 1};
    reconnect_with_requests(f, t, &q);
    assert_false(q.sent_early[0]);
    assert_int_equal(edge_stats(f).early_requests, 0);
    assert_int_equal(edge_stats(f).resumed, 1);
    free_tunnel(f, t);
}

/* A ticket used twice (a copy of it kept from before its first use: what a replay of the first
 * flight presents): the edge accepts its early data the first time only (single-use tickets), and
 * the second time rejects it, so the device's 0-RTT requests are sent again in 1-RTT on the same
 * connection: each answered once, none lost, none twice at the edge. */
static void test_replayed_ticket_0rtt_rejected_and_resent(void **state) {
    fixture *f = *state;
    edge_new(f, early_edge);
    synesis_tunnel *t = connect_tunnel(f, NULL);
    wait_tickets(f, t, "localhost", 1);
    syn_resume *r = syn_tunnel_resume(t);
    uint8_t *blob;
    size_t len;
    assert_int_equal(syn_resume_export(r, "localhost", &blob, &len), 0);
    syn_resume_clear(r);
    assert_int_equal(syn_resume_import(r, blob, len), 0);

    uint64_t requests = edge_stats(f).requests;
    early_reqs q = {.n = 2, .n_idempotent = 2};
    reconnect_with_requests(f, t, &q);
    assert_int_equal(edge_stats(f).early_accepted, 1);
    assert_int_equal(edge_stats(f).early_requests, 2);
    assert_int_equal(edge_requests(f, requests + 2), requests + 2);

    /* The same ticket again. */
    syn_test_run_for(f->loop, 0.1);
    syn_resume_clear(r);
    assert_int_equal(syn_resume_import(r, blob, len), 0);
    free(blob);
    early_reqs q2 = {.n = 3, .n_idempotent = 3};
    reconnect_with_requests(f, t, &q2);
    assert_int_equal(edge_stats(f).early_accepted, 1); /* not again */
    assert_int_equal(edge_stats(f).early_requests, 2);
    assert_int_equal(edge_requests(f, requests + 5), requests + 5); /* each once */
    assert_int_equal(syn_qconn_early_result(t->qc), -1); /* rejected, sent again in 1-RTT */
    assert_int_equal(tunnel_stats(t).early_data_accepted, 1);
    assert_int_equal(tunnel_stats(t).early_data_rejected, 1);
    for (int i = 0; i < 3; i++)
        assert_true(q2.sent_early[i]);
    free_tunnel(f, t);
}

typedef struct hb_wait {
    fixture *f;
    uint64_t n;
} hb_wait;

static int edge_has_heartbeats(void *ud) {
    hb_wait *w = ud;
    return edge_stats(w->f).heartbeats >= w->n;
}

/* A resumed connection's first heartbeat goes in 0-RTT (the edge logs it as such and takes the
 * device id from the ticket's session), the edge gets it once, the device counts it delivered,
 * and the next one is due an interval later, not again at Connected. */
static void test_heartbeat_in_0rtt(void **state) {
    fixture *f = *state;
    edge_new(f, early_edge);
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, f->pki, syn_edge_port(f->edge));
    cfg.heartbeat_interval = 1.0;
    synesis_tunnel_callbacks cb;
    synesis_tunnel_callbacks_init(&cb);
    synesis_tunnel *t = syn_test_tunnel_connected(f->loop, &cfg, &cb, NULL, 5);
    hb_wait w = {f, 1};
    assert_true(syn_test_run_until(f->loop, edge_has_heartbeats, &w, 5));
    wait_tickets(f, t, "localhost", 1);
    uint64_t before = edge_stats(f).heartbeats;
    synesis_tunnel_stats st0;
    synesis_tunnel_get_stats(t, &st0);

    kick_and_reconnect(f, t);
    w.n = before + 1;
    assert_true(syn_test_run_until(f->loop, edge_has_heartbeats, &w, 5));
    syn_test_run_for(f->loop, 0.3); /* well before the next one is due */
    assert_int_equal(edge_stats(f).heartbeats, before + 1);
    assert_int_equal(edge_stats(f).early_heartbeats, 1);
    assert_int_equal(edge_stats(f).early_accepted, 1);
    assert_int_equal(edge_log_count(f, "\"event\":\"early_heartbeat\""), 1);
    syn_edge_device dev;
    assert_int_equal(syn_edge_device_info(f->edge, "test-1", &dev), 0);
    assert_int_equal(dev.heartbeats, before + 1);
    synesis_tunnel_stats st;
    synesis_tunnel_get_stats(t, &st);
    assert_int_equal(st.heartbeats_sent, st0.heartbeats_sent + 1);
    assert_int_equal(dev.last_sequence, st.last_heartbeat_sequence);
    assert_int_equal(st.heartbeats_delivered, st.heartbeats_sent);
    /* and the schedule goes on from there */
    w.n = before + 2;
    assert_true(syn_test_run_until(f->loop, edge_has_heartbeats, &w, 5));
    free_tunnel(f, t);
}

/* A request cancelled while its 0-RTT flight is out, on an attempt whose early data the edge
 * then rejects (a used ticket): the driver drops its stream instead of sending it again, the other
 * early request is sent again in 1-RTT and answered once, and the edge never sees the cancelled
 * one. Through a proxy with 40 ms each way, so the cancel lands inside the handshake. */
typedef struct cancel_ctx {
    synesis_tunnel *t;
    synesis_request *victim, *keeper;
    syn_test_result res[2];
    int submitted, cancelled;
} cancel_ctx;

static void cancel_on_reconnecting(synesis_tunnel *t, const synesis_tunnel_state *old,
                                   const synesis_tunnel_state *now, void *ud) {
    (void)old;
    cancel_ctx *c = ud;
    if (now->kind != SYNESIS_STATE_RECONNECTING || c->submitted)
        return;
    c->submitted = 1;
    synesis_request_options ro;
    synesis_request_options_init(&ro);
    ro.queue_while_reconnecting = 1;
    ro.flags = SYNESIS_REQUEST_IDEMPOTENT;
    assert_int_equal(
        synesis_tunnel_request(t, "victim", 6, &ro, syn_test_on_response, &c->res[0], &c->victim),
        0);
    assert_int_equal(
        synesis_tunnel_request(t, "keeper", 6, &ro, syn_test_on_response, &c->res[1], &c->keeper),
        0);
}

static int victim_sent_early(void *ud) {
    cancel_ctx *c = ud;
    return c->submitted && !c->res[0].calls && syn_request_sent_early(c->victim);
}

static void test_cancel_during_rejected_0rtt(void **state) {
    fixture *f = *state;
    edge_new(f, early_edge);
    struct sockaddr_in up = {.sin_family = AF_INET, .sin_port = htons(syn_edge_port(f->edge))};
    struct sockaddr_in lis = {.sin_family = AF_INET};
    up.sin_addr.s_addr = lis.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    syn_fault_proxy *px = syn_fault_proxy_new(f->loop, (struct sockaddr *)&lis, sizeof(lis),
                                              (struct sockaddr *)&up, sizeof(up), 7);
    assert_non_null(px);
    syn_fault_dir d = {.delay_ms = 40};
    syn_fault_proxy_set(px, &d, &d);
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, f->pki, syn_fault_proxy_port(px));
    synesis_tunnel_callbacks cb;
    synesis_tunnel_callbacks_init(&cb);
    synesis_tunnel *t = syn_test_tunnel_connected(f->loop, &cfg, &cb, NULL, 5);
    wait_tickets(f, t, "localhost", 1);
    /* Use the ticket once (0-RTT accepted), keeping a copy to present again. */
    syn_resume *r = syn_tunnel_resume(t);
    uint8_t *blob;
    size_t len;
    assert_int_equal(syn_resume_export(r, "localhost", &blob, &len), 0);
    kick_and_reconnect(f, t);
    assert_int_equal(edge_stats(f).early_accepted, 1);
    syn_test_run_for(f->loop, 0.2);
    syn_resume_clear(r);
    assert_int_equal(syn_resume_import(r, blob, len), 0);
    free(blob);
    uint64_t requests = edge_requests(f, 0);

    cancel_ctx c = {.t = t};
    uint32_t sub;
    assert_int_equal(synesis_tunnel_subscribe(t, cancel_on_reconnecting, &c, &sub), 0);
    syn_edge_kick(f->edge, "test-1");
    assert_true(syn_test_run_until(f->loop, victim_sent_early, &c, 5));
    assert_false(synesis_tunnel_is_connected(t)); /* the 0-RTT flight is out, no answer yet */
    assert_int_equal(synesis_request_cancel(c.victim), 0);
    assert_int_equal(c.res[0].status, SYNESIS_ERR_CANCELLED);
    assert_true(syn_test_run_until(f->loop, syn_test_response_done, &c.res[1], 5));
    assert_int_equal(c.res[1].status, 0);
    assert_int_equal(c.res[1].len, 6);
    assert_memory_equal(c.res[1].data, "keeper", 6);
    free(c.res[1].data);
    assert_int_equal(syn_qconn_early_result(t->qc), -1);
    assert_int_equal(edge_requests(f, requests + 1), requests + 1); /* the keeper only */
    assert_int_equal(edge_stats(f).early_requests, 0);              /* none reached it in 0-RTT */
    assert_int_equal(c.res[0].calls, 1);
    assert_int_equal(c.res[1].calls, 1);
    assert_int_equal(synesis_tunnel_unsubscribe(t, sub), 0);
    free_tunnel(f, t);
    syn_test_run_for(f->loop, 0.2);
    syn_fault_proxy_free(px);
}

/* A relay between the tunnel and the edge that records the device's datagrams while `capture`
 * is set: an attacker on the path, who can replay them later from another address. */
#define RELAY_MAX 16
typedef struct relay {
    struct ev_loop *loop;
    int fd_dev, fd_edge; /* facing the device (bound), facing the edge (connected) */
    struct sockaddr_in dev;
    socklen_t devlen;
    ev_io w_dev, w_edge;
    int capture;
    uint8_t pkt[RELAY_MAX][1500];
    size_t len[RELAY_MAX];
    int n;
} relay;

static void relay_from_dev(struct ev_loop *loop, ev_io *w, int revents) {
    (void)loop;
    (void)revents;
    relay *r = w->data;
    uint8_t buf[1500];
    r->devlen = sizeof(r->dev);
    ssize_t n = recvfrom(r->fd_dev, buf, sizeof(buf), 0, (struct sockaddr *)&r->dev, &r->devlen);
    if (n <= 0)
        return;
    if (r->capture && r->n < RELAY_MAX) {
        memcpy(r->pkt[r->n], buf, (size_t)n);
        r->len[r->n++] = (size_t)n;
    }
    (void)send(r->fd_edge, buf, (size_t)n, 0);
}

static void relay_from_edge(struct ev_loop *loop, ev_io *w, int revents) {
    (void)loop;
    (void)revents;
    relay *r = w->data;
    uint8_t buf[1500];
    ssize_t n = recv(r->fd_edge, buf, sizeof(buf), 0);
    if (n > 0 && r->devlen)
        (void)sendto(r->fd_dev, buf, (size_t)n, 0, (struct sockaddr *)&r->dev, r->devlen);
}

static int udp_socket(uint16_t connect_port) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    if (connect_port) {
        a.sin_port = htons(connect_port);
        assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    }
    return fd;
}

static uint16_t relay_start(relay *r, struct ev_loop *loop, uint16_t edge_port) {
    memset(r, 0, sizeof(*r));
    r->loop = loop;
    r->fd_dev = udp_socket(0);
    r->fd_edge = udp_socket(edge_port);
    ev_io_init(&r->w_dev, relay_from_dev, r->fd_dev, EV_READ);
    ev_io_init(&r->w_edge, relay_from_edge, r->fd_edge, EV_READ);
    r->w_dev.data = r->w_edge.data = r;
    ev_io_start(loop, &r->w_dev);
    ev_io_start(loop, &r->w_edge);
    struct sockaddr_in a;
    socklen_t al = sizeof(a);
    getsockname(r->fd_dev, (struct sockaddr *)&a, &al);
    return ntohs(a.sin_port);
}

static void relay_stop(relay *r) {
    ev_io_stop(r->loop, &r->w_dev);
    ev_io_stop(r->loop, &r->w_edge);
    close(r->fd_dev);
    close(r->fd_edge);
}

/* A replay of the device's first flight (its Initial and its 0-RTT request, recorded on the path)
 * from another address, once the device's own connection is over: the edge finds the ticket used
 * (single-use), resumes nothing, rejects the early data, and the replayed request never reaches
 * its handlers: no second answer, no second early_request. */
static void test_replayed_first_flight_refused(void **state) {
    fixture *f = *state;
    edge_new(f, early_edge);
    relay rl;
    uint16_t port = relay_start(&rl, f->loop, syn_edge_port(f->edge));
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, f->pki, port);
    synesis_tunnel_callbacks cb;
    synesis_tunnel_callbacks_init(&cb);
    synesis_tunnel *t = syn_test_tunnel_connected(f->loop, &cfg, &cb, NULL, 5);
    wait_tickets(f, t, "localhost", 1);

    uint64_t requests = edge_stats(f).requests;
    rl.capture = 1;
    early_reqs q = {.n = 1, .n_idempotent = 1};
    reconnect_with_requests(f, t, &q);
    rl.capture = 0;
    assert_int_equal(edge_requests(f, requests + 1), requests + 1);
    assert_int_equal(edge_stats(f).early_accepted, 1);
    assert_int_equal(edge_stats(f).early_requests, 1);
    assert_true(rl.n >= 1);
    /* The device's connection ends, and so does its closing period at the edge. */
    free_tunnel(f, t);
    syn_test_run_for(f->loop, 0.5);

    uint64_t accepted = edge_stats(f).accepted;
    int attacker = udp_socket(syn_edge_port(f->edge));
    for (int i = 0; i < rl.n; i++)
        assert_int_equal(send(attacker, rl.pkt[i], rl.len[i], 0), (ssize_t)rl.len[i]);
    syn_test_run_for(f->loop, 0.5);
    assert_true(edge_stats(f).accepted > accepted); /* the replay was taken for a new connection */
    assert_int_equal(edge_stats(f).early_accepted, 1);
    assert_int_equal(edge_stats(f).early_requests, 1);
    assert_int_equal(edge_stats(f).requests, requests + 1);
    assert_int_equal(edge_stats(f).resumed, 1);
    assert_int_equal(edge_log_count(f, "\"event\":\"early_request\""), 1);
    close(attacker);
    relay_stop(&rl);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_second_connection_resumes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ticket_used_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ticket_not_offered_to_other_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tampered_ticket_full_handshake, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expired_ticket_full_handshake, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_token_skips_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_data_resumes_in_new_tunnel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_resume_data_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resumption_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edge_without_tickets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resumed_connected_without_handshake_done, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_idempotent_request_in_0rtt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_non_idempotent_never_in_0rtt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edge_without_0rtt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replayed_ticket_0rtt_rejected_and_resent, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_replayed_first_flight_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_heartbeat_in_0rtt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_during_rejected_0rtt, setup, teardown),
    };
    const char *only = getenv("SYNESIS_TEST_FILTER");
    if (only && *only)
        cmocka_set_test_filter(only);
    return cmocka_run_group_tests(tests, NULL, NULL);
}

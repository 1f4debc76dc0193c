/* The integration tests' shared fixtures (cmocka: a helper that cannot do its job fails the test
 * with the library's error name and detail). Every test builds on the same few steps:
 *   a PKI                syn_test_pki (a new one), syn_test_pki_shared (one per process and id);
 *   the edge, in process syn_test_edge_config, the test's changes, syn_test_edge_start;
 *                        or syn_test_edge (the defaults and an idle timeout);
 *   a tunnel config      syn_test_tunnel_config (pointing at the edge's port), the test's changes;
 *   a tunnel             syn_test_tunnel_new; syn_test_connect (the one connect-and-wait), or
 *                        both at once, syn_test_tunnel_connected;
 *   waiting              syn_test_run_until (any predicate, a deadline), syn_test_wait_state (the
 *                        current state), syn_test_wait_recorded (a transition recorded by
 *                        syn_test_record_state), syn_test_run_for;
 *   requests             syn_test_request, or syn_test_on_response and syn_test_response_done;
 *   the end              syn_test_finish (nothing may stay active on the loop).
 * Tests that need odd certificates or hand-made streams use the raw client at the bottom. */
#ifndef SYNESIS_TEST_HARNESS_H
#define SYNESIS_TEST_HARNESS_H

#include <ev.h>
#include <stdint.h>

#include "edge/edge.h"
#include "synesis/identity.h"
#include "synesis/tunnel.h"

/* A fresh directory under $SYNESIS_TEST_TMP (or /tmp); returns a static-lifetime copy. */
const char *syn_test_mkdtemp(const char *prefix);

/* Builds a test PKI in a new directory; returns the directory. Fails the test on error. */
const char *syn_test_pki(const char *device_id);

/* The test PKI of this process for device_id: built on the first call (syn_test_pki), the same
 * directory on later calls. For tests whose cases share one PKI. */
const char *syn_test_pki_shared(const char *device_id);

/* "dir/name" in a static rotating buffer (valid for the next 8 calls). */
const char *syn_test_path(const char *dir, const char *name);

/* An edge config on 127.0.0.1:0 with the edge certificate, key and CA of the PKI in dir. */
void syn_test_edge_config(syn_edge_config *ec, const char *dir);

/* Ends a test: frees the tunnel (may be NULL), lets the close go out, frees the edge (may be
 * NULL), asserts that nothing is left on the loop, and destroys the loop. */
void syn_test_finish(struct ev_loop *loop, synesis_tunnel *t, syn_edge *e);

/* Predicate for syn_test_run_until: the tunnel (ud) is Connected. */
int syn_test_connected(void *tunnel);

/* Creates and starts an edge on loop with ec (syn_test_edge_config and the test's own changes);
 * fails the test, with the edge's detail, if either step fails. */
syn_edge *syn_test_edge_start(struct ev_loop *loop, const syn_edge_config *ec);

/* Starts an edge on 127.0.0.1:0 with the PKI in dir; idle timeout idle (seconds). */
syn_edge *syn_test_edge(struct ev_loop *loop, const char *dir, double idle);

/* A tunnel config for the edge on port (URL quic://127.0.0.1:port, server name "localhost"),
 * certificates from dir, the test CA as the only trust, short timeouts for tests, and transport
 * UDP (never the TCP fallback: set transport to test it). */
void syn_test_tunnel_config(synesis_tunnel_config *cfg, const char *dir, uint16_t port);

/* Creates a tunnel (synesis_tunnel_new with cb and ud, either may be NULL); fails the test, with
 * the error's name and detail, if it cannot. */
synesis_tunnel *syn_test_tunnel_new(struct ev_loop *loop, const synesis_tunnel_config *cfg,
                                    const synesis_tunnel_callbacks *cb, void *ud);

/* The one connect-and-wait: synesis_tunnel_connect(t), then runs the loop until t is Connected;
 * fails the test if the call fails or Connected is not reached within timeout seconds. */
void syn_test_connect(struct ev_loop *loop, synesis_tunnel *t, double timeout);

/* syn_test_tunnel_new and syn_test_connect in one: a Connected tunnel. */
synesis_tunnel *syn_test_tunnel_connected(struct ev_loop *loop, const synesis_tunnel_config *cfg,
                                          const synesis_tunnel_callbacks *cb, void *ud,
                                          double timeout);

/* 1 if t's current state is kind. */
int syn_test_in_state(synesis_tunnel *t, synesis_state_kind kind);

/* Runs the loop until t's current state is kind or timeout seconds pass; returns 1 if it is. */
int syn_test_wait_state(struct ev_loop *loop, synesis_tunnel *t, synesis_state_kind kind,
                        double timeout);

/* Runs the loop until pred(ud) is true or timeout seconds pass; returns pred's final value. */
int syn_test_run_until(struct ev_loop *loop, int (*pred)(void *), void *ud, double timeout);

/* Runs the loop for the given seconds (events keep flowing). */
void syn_test_run_for(struct ev_loop *loop, double seconds);

/* Records state transitions: a subscriber that appends to a log. */
typedef struct syn_test_states {
    synesis_state_kind kinds[64];
    int errors[64];
    uint32_t attempts[64];
    int n;
} syn_test_states;
void syn_test_record_state(synesis_tunnel *t, const synesis_tunnel_state *old_state,
                           const synesis_tunnel_state *new_state, void *user_data);
/* Index of the first record of kind at or after from, or -1. */
int syn_test_find_state(const syn_test_states *s, synesis_state_kind kind, int from);
/* Predicate for syn_test_run_until: the records (ud, a syn_test_states) hold a Connected or a
 * Failed: the first attempt has settled one way or the other. */
int syn_test_settled(void *states);
/* Runs the loop until a record of kind with attempt >= min_attempt appears at or after index
 * from; fails the test (naming the state) if none does within timeout seconds. Returns its
 * index. */
int syn_test_wait_recorded(struct ev_loop *loop, const syn_test_states *s, synesis_state_kind kind,
                           uint32_t min_attempt, int from, double timeout);

/* One request's outcome, copied from the response callback. */
#include "synesis/request.h"
typedef struct syn_test_result {
    int calls;
    int status;
    uint64_t app_code;
    uint8_t *data; /* malloc'ed copy of the response (free it) */
    size_t len;
    char detail[256]; /* the response's detail, truncated */
} syn_test_result;
/* A synesis_response_fn filling the syn_test_result in user_data. */
void syn_test_on_response(synesis_tunnel *t, synesis_request *req, const synesis_response *r,
                          void *user_data);
/* Predicate: the syn_test_result (ud) was called back. */
int syn_test_response_done(void *result);
/* Sends one request and runs the loop until its callback (at most timeout seconds); asserts it
 * was called exactly once. */
void syn_test_request(struct ev_loop *loop, synesis_tunnel *t, const void *data, size_t len,
                      const synesis_request_options *opts, syn_test_result *res, double timeout);

/* A bare QUIC client on the project's driver, without the tunnel's checks: for tests that need to
 * present odd certificates or send hand-made streams to the edge. cert/key may be NULL (no client
 * certificate); the trust is pki_dir's CA. */
#include "qconn.h"
typedef struct syn_test_raw_client {
    struct ev_loop *loop;
    int done; /* handshake completed (err 0) or connection ended (err) */
    int closed;
    int err;
    char detail[512];
    int fd;
    syn_sockaddr local;
    syn_qconn *qc;
    syn_udp_rx *rx;
    ev_io rio;
    SSL_CTX *ctx;
    /* Stream events of the raw client's own streams. */
    int stream_closes;
    uint64_t last_close_code;
    /* Streams the edge opened towards us (reports): their bytes, concatenated in arrival order,
     * and how many streams ended with FIN. */
    uint8_t peer_data[16384];
    size_t peer_len;
    int peer_fins;
    /* Datagrams received (all sockets), and data received on its streams (the first
     * sizeof(data) bytes; data_len counts them all). */
    uint64_t rx_count;
    uint8_t data[4096];
    size_t data_len;
} syn_test_raw_client;

syn_test_raw_client *syn_test_raw_client_new(struct ev_loop *loop, uint16_t port,
                                             const char *pki_dir, const char *cert,
                                             const char *key);
/* The same with the driver settings st (a token to present, say); NULL = the defaults above. */
syn_test_raw_client *syn_test_raw_client_new_st(struct ev_loop *loop, uint16_t port,
                                                const char *pki_dir, const char *cert,
                                                const char *key, const syn_qconn_settings *st);
int syn_test_raw_done(void *client);
/* Moves the raw client to a new UDP socket (a new local port) with an immediate migration and
 * closes the old socket. Returns syn_qconn_migrate()'s result (SYNESIS_ERR_WOULD_BLOCK: no spare
 * connection ID from the edge yet, run the loop and try again). */
int syn_test_raw_client_migrate(syn_test_raw_client *c);
void syn_test_raw_client_free(syn_test_raw_client *c);

#endif

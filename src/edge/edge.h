/*
 * The reference edge server: the server side of the synesis-tunnel protocol (docs/protocol.md) on
 * the same stack as the tunnel (ngtcp2 + OpenSSL, libev). Internal library used by the tests, the
 * examples (synesis-edge, synesis-demo) and the benchmarks; not part of the public API.
 *
 * It listens on one UDP address, requires and verifies client certificates against a CA, accepts
 * one ALPN, logs one JSON line per event, and can be stopped and started again on the same port.
 */
#ifndef SYNESIS_EDGE_H
#define SYNESIS_EDGE_H

#include "internal.h"

#include <stdio.h>

struct ev_loop;
typedef struct syn_edge syn_edge;

/* Receives each JSON log line (no newline), valid during the call. */
typedef void (*syn_edge_log_fn)(void *user_data, const char *json_line);

typedef struct syn_edge_config {
    const char *listen;    /* "127.0.0.1:4433", "[::1]:0" (port 0 = ephemeral) */
    const char *cert_file; /* edge chain + key */
    const char *key_file;
    const char *ca_file;   /* CA of device certificates */
    const char *alpn;      /* default "synesis-tunnel/1" */
    double idle_timeout;   /* default 60 s */
    double handshake_timeout; /* default 10 s */
    uint64_t max_streams_bidi; /* per connection, default 100 */
    uint64_t max_streams_uni;  /* per connection, default 100 */
    syn_edge_log_fn log;   /* JSON lines; NULL = none */
    void *log_user_data;
    FILE *log_file;        /* also (or instead) write lines here */
} syn_edge_config;

void syn_edge_config_init(syn_edge_config *cfg);

/* Creates the edge (TLS context loaded now); it is not listening until syn_edge_start(). */
int syn_edge_new(syn_edge **out, struct ev_loop *loop, const syn_edge_config *cfg, char *detail);

/* Binds and starts serving. After a stop, binds the same port again (the first start's port when
 * the configured port was 0). */
int syn_edge_start(syn_edge *e, char *detail);

/* Stops serving: with graceful, each connection gets CONNECTION_CLOSE (application error 0,
 * "edge shutdown"); without, connections vanish silently (as if the process died). The socket is
 * closed either way. */
void syn_edge_stop(syn_edge *e, int graceful);

/* The bound UDP port (0 when never started). */
uint16_t syn_edge_port(const syn_edge *e);

/* Counters for tests. */
typedef struct syn_edge_stats {
    uint64_t accepted;      /* connections created from client Initials */
    uint64_t handshakes;    /* handshakes completed (client certificate verified) */
    uint64_t closed;        /* connections ended, for any reason */
    uint64_t active;        /* connections alive now */
    uint64_t tls_failures;  /* handshakes refused */
    uint64_t streams;       /* streams opened by clients */
} syn_edge_stats;

void syn_edge_get_stats(const syn_edge *e, syn_edge_stats *out);

/* The device id of the most recent completed handshake ("" if none). */
const char *syn_edge_last_device(const syn_edge *e);

/* Stops and frees; no watcher stays active. */
void syn_edge_free(syn_edge *e);

#endif /* SYNESIS_EDGE_H */

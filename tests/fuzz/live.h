/* The live-connection fixture of the QUIC fuzz targets: a test PKI, the reference edge and a
 * tunnel, in this process on 127.0.0.1, with the tunnel Connected (a real TLS handshake). The
 * fuzz targets then play events into the tunnel's or the edge's side of that connection without
 * running the loop; the loop runs only to (re)connect. Fuzzer-side code: it keeps its state in
 * statics, which the library itself never does. */
#ifndef SYNESIS_FUZZ_LIVE_H
#define SYNESIS_FUZZ_LIVE_H

#include "edge/edge.h"
#include "synesis/tunnel.h"
#include "tunnel_int.h"

#include <ev.h>

typedef struct fz_live_options {
    double heartbeat_interval;                    /* tunnel; 0 = none */
    uint64_t edge_streams_bidi, edge_streams_uni; /* streams the edge grants (0 = 1 << 20) */
    size_t max_response_size;                     /* tunnel; 0 = the default */
    size_t stream_send_buffer;                    /* tunnel; 0 = the default */
    const synesis_tunnel_callbacks *callbacks;    /* tunnel; may be NULL */
    void *user_data;
} fz_live_options;

typedef struct fz_live {
    struct ev_loop *loop;
    char dir[256];
    syn_edge *edge;
    synesis_tunnel *t;
    uint64_t connects; /* handshakes completed, the first one included */
    uint64_t inputs;   /* fz_live_next_input() calls */
    /* The newest connection's 1-RTT traffic secrets as TLS logged them (SSLKEYLOGFILE lines). */
    uint8_t server_secret[64], client_secret[64];
    size_t secret_len;
} fz_live;

/* Builds everything and connects; aborts on failure (the fixture itself is broken). */
void fz_live_init(fz_live *L, const fz_live_options *o);

/* Makes sure the tunnel is Connected on a live connection: when it is not, disconnects and
 * connects again, running the loop until Connected. Returns 1 when it had to reconnect. */
int fz_live_ensure(fz_live *L);

/* A fresh connection (disconnect, connect), whatever the state. */
void fz_live_reconnect(fz_live *L);

/* fz_live_ensure(), and a fresh connection every `every` calls: what the fuzz targets leave
 * behind in ngtcp2 (streams it still tracks) is bounded. */
void fz_live_next_input(fz_live *L, unsigned every);

#endif /* SYNESIS_FUZZ_LIVE_H */

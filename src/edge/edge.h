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
    const char *ca_file;       /* CA of device certificates */
    const char *alpn;          /* default "synesis-tunnel/1" */
    double idle_timeout;       /* default 60 s */
    double handshake_timeout;  /* default 10 s */
    uint64_t max_streams_bidi; /* per connection, default 100 */
    uint64_t max_streams_uni;  /* per connection, default 100 */
    size_t max_request_size;   /* bytes of one request; default 64 MiB */
    size_t max_heartbeat_size; /* JSON bytes of one heartbeat; default 64 KiB */
    /* Bytes one connection may make the edge hold: buffered request bodies (SLEEP, handler) and
     * heartbeats, and response bytes queued and not yet acknowledged (SRC, echo, SLEEP). It is
     * also the connection's receive window: request data is credited back only as the edge
     * consumes it. A buffered request that cannot complete within it is reset with 0x11, and
     * SRC data is generated only while the connection is below it. Default 16 MiB, at least
     * 64 KiB. Handler replies are the handler's memory and come on top. */
    size_t max_conn_buffer;
    /* Largest n a "SRC n" command may ask for; default 16 GiB. */
    uint64_t max_src_size;
    /* Congestion controller of the edge's sending side: 0 CUBIC (default), 1 BBR, 2 Reno (the
     * values of synesis_congestion_control). */
    int congestion_control;
    syn_edge_log_fn log; /* JSON lines; NULL = none */
    void *log_user_data;
    FILE *log_file; /* also (or instead) write lines here */
    /* Stateless Retry under load: when at least this many handshakes are in progress (connections
     * accepted whose handshake has not completed), a client Initial without a token is answered
     * with a Retry (RFC 9000 8.1.2) instead of a new connection; the client comes back with the
     * token and proves its address before the edge keeps any state for it. Default 64; 0 = Retry
     * every new connection; SYN_EDGE_RETRY_NEVER = never. Retry tokens are valid for
     * SYN_EDGE_RETRY_TOKEN_TIMEOUT seconds and bound to the client's address; an Initial whose
     * Retry token does not verify is answered with CONNECTION_CLOSE(INVALID_TOKEN). */
    size_t retry_threshold;
    /* SO_RCVBUF and SO_SNDBUF of the listening socket, bytes: default 4 MiB, so a burst of
     * Initials is not dropped by the kernel (Linux defaults to ~208 KiB). As root the limit
     * net.core.rmem_max/wmem_max is bypassed (SO_RCVBUFFORCE); otherwise the kernel caps it
     * there. The size obtained is logged ("socket_buffers" event). 0 = leave the defaults. */
    size_t socket_buffer;

    /* Resumption: session tickets sent after each full handshake (stateless, sealed with a key of
     * this edge's own, so a restart invalidates them); a device presenting one resumes without
     * certificates (docs/resumption.md). Default 1; 0 = none (every handshake full). Their
     * lifetime: ticket_lifetime seconds, default 7200. */
    int session_tickets;
    long ticket_lifetime;
    /* Address validation for the next connection: a NEW_TOKEN token (the Retry token scheme and
     * key, another type byte, bound to the device's address) sent after each handshake; an Initial
     * bearing a valid one is accepted without Retry. Default 1; 0 = none. Valid for
     * new_token_lifetime seconds, default 3600. */
    int new_tokens;
    double new_token_lifetime;
    /* 0-RTT: accept early data from devices resuming a ticket (requests they mark idempotent;
     * docs/resumption.md). Only with anti-replay: the tickets then become single-use, kept in a
     * bounded cache of ticket_cache entries (default 20480) until used or expired; a ticket used
     * twice resumes the second time without early data, which the device then sends again in
     * 1-RTT. Each request or heartbeat that arrives in 0-RTT is logged ("early_request",
     * "early_heartbeat"). Default 0 (off):
     * single-use tickets cost the edge memory per device. Needs session_tickets. */
    int early_data;
    long ticket_cache;

    /* Keep-alive on the device's behalf: a device that states its keep-alive interval in its
     * heartbeats (`keep_alive_ms`, docs/protocol.md) gets a PING from the edge after that much
     * quiet, less a margin (SYN_EDGE_PING_MARGIN), so that the edge's PING arrives first: the
     * device's ACK refreshes its NAT binding in one wake-up, where its own PING costs it two (the
     * timer, then the ACK). Default 1; 0 = never (devices keep their bindings with their own
     * PINGs). */
    int ping_devices;

    /* QUIC over TCP (src/tcplink.h, docs/protocol.md "QUIC over TCP"): a TCP listener on the
     * listen address whose accepted connections become links (TLS 1.3 with the edge's
     * certificate, ALPN "synesis-tcp/1"); each frame is routed exactly as a datagram. tcp: 1
     * (default) listen, 0 UDP only. tcp_port: 0 (default) the UDP port's number, else that port.
     * Hostile peers: at most max_tcp_links links (default 1024) and max_tcp_handshakes TLS
     * handshakes in progress (default 64; beyond, accepted sockets are closed at once); a
     * handshake is bounded by handshake_timeout, and a link that carries no connection (none yet,
     * or its connection ended) is closed after handshake_timeout. */
    int tcp;
    uint16_t tcp_port;
    size_t max_tcp_links;
    size_t max_tcp_handshakes;

    /* Test only: a hostile or broken edge (syn_edge_misbehave), for the tunnel's robustness tests
     * (tests/test_hostile_edge.c). Default SYN_EDGE_BEHAVE, the correct edge; synesis-edge never
     * sets any of the fields below. */
    int misbehave;
    uint64_t misbehave_code; /* application error code of CLOSE and RESET_STREAMS; default 0x1bad */
    double misbehave_delay; /* CLOSE: seconds after the handshake (0 = from the handshake itself) */
    unsigned misbehave_count; /* OPEN_STREAMS: streams of each kind tried per request; default 4 */
    /* Test only, with any misbehave value: a certificate chain and key presented as they are,
     * without the checks cert_file/key_file get (an expired certificate, a self-signed one,
     * another host's). cert_file/key_file must still be valid: they are loaded first. */
    const char *misbehave_cert_file;
    const char *misbehave_key_file;
    /* PREFERRED_ADDRESS: the address advertised, "ADDR:PORT" as listen. */
    const char *misbehave_address;
} syn_edge_config;

/* What a misbehaving edge does (syn_edge_config.misbehave). */
typedef enum syn_edge_misbehave {
    SYN_EDGE_BEHAVE = 0,
    /* Each connection gets CONNECTION_CLOSE (application error misbehave_code, reason "hostile
     * edge") misbehave_delay seconds after its handshake completed. */
    SYN_EDGE_MB_CLOSE = 1,
    /* Every stream the device opens is reset as it opens (RESET_STREAM, and STOP_SENDING, with
     * misbehave_code): requests and heartbeats alike. */
    SYN_EDGE_MB_RESET_STREAMS = 2,
    /* Every request is answered with endless data (the SRC pattern, as the device's flow control
     * lets it leave), never FIN. */
    SYN_EDGE_MB_ENDLESS_RESPONSE = 3,
    /* Requests are echoed, but the response never ends: FIN is withheld. */
    SYN_EDGE_MB_NO_FIN = 4,
    /* Request data is never consumed (nor answered): neither MAX_STREAM_DATA nor MAX_DATA ever
     * returns credit for it, and its stream stays open. */
    SYN_EDGE_MB_STALL_UPLOADS = 5,
    /* On each request, tries to open misbehave_count bidirectional and misbehave_count
     * unidirectional streams towards the device (each gets a few bytes, never FIN): as many as
     * the edge's QUIC stack lets it (stats mb_streams, mb_refused). */
    SYN_EDGE_MB_OPEN_STREAMS = 6,
    /* From the handshake on, every millisecond: opens unidirectional streams as fast as the
     * device grants them, each carrying a tiny report (of a kind the device ignores) in a packet
     * of its own (a write pass per stream). */
    SYN_EDGE_MB_FLOOD = 7,
    /* The TLS handshake selects an application protocol the device did not offer ("h3"). */
    SYN_EDGE_MB_ALPN_OTHER = 8,
    /* The TLS handshake selects no application protocol at all. */
    SYN_EDGE_MB_ALPN_NONE = 9,
    /* When the device opens its first request stream, the connection starts sending from a new
     * UDP socket (another port of the listening address): a server-side address change, which
     * QUIC does not allow (RFC 9000 9). It keeps receiving on the listening socket. */
    SYN_EDGE_MB_MIGRATE = 10,
    /* Each connection advertises misbehave_address as the edge's preferred address (RFC 9000
     * 9.6), which the edge does not serve: an invitation to migrate into a black hole. */
    SYN_EDGE_MB_PREFERRED_ADDRESS = 11,
} syn_edge_misbehave;

/* The edge's PING to a device goes out after keep_alive_ms less a twentieth of it, or less three
 * minimum RTTs or SYN_EDGE_MIN_MARGIN_MS when that is more; never more often than every
 * SYN_EDGE_MIN_PING_MS (a device stating a shorter interval keeps its own PINGs). The margin is
 * room for the edge's timer to be late and for the PING's trip: a PING that arrives after the
 * device's own keep-alive has fired costs the device one more wake-up, nothing else. (A tenth
 * made 396 PINGs an hour at the default 10 s instead of 372: 0.4 wake-ups a minute and 2.7 KB an
 * hour more.) */
#define SYN_EDGE_PING_MARGIN 20 /* the divisor: a twentieth */
#define SYN_EDGE_MIN_MARGIN_MS 50
#define SYN_EDGE_MIN_PING_MS 100

/* retry_threshold: never send Retry. */
#define SYN_EDGE_RETRY_NEVER SIZE_MAX
/* Validity of the edge's Retry tokens, seconds. */
#define SYN_EDGE_RETRY_TOKEN_TIMEOUT 10

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
/* The bound TCP port (0 when not listening on TCP). */
uint16_t syn_edge_tcp_port(const syn_edge *e);

/* Counters for tests. */
/* The shortest closing period, whatever the PTO (a loopback PTO is a few milliseconds). */
#define SYN_EDGE_CLOSING_MIN_MS 200

typedef struct syn_edge_stats {
    uint64_t accepted;        /* connections created from client Initials */
    uint64_t handshakes;      /* handshakes completed (client certificate verified) */
    uint64_t closed;          /* connections ended, for any reason */
    uint64_t active;          /* connections alive now */
    uint64_t tls_failures;    /* handshakes refused */
    uint64_t streams;         /* streams opened by clients */
    uint64_t requests;        /* bidirectional streams answered (any way) */
    uint64_t heartbeats;      /* well-formed heartbeats */
    uint64_t bad_frames;      /* heartbeat streams refused */
    uint64_t bytes_received;  /* application bytes read from streams */
    uint64_t ecn_marked;      /* datagrams that arrived with an ECN codepoint (ECT or CE) */
    uint64_t held_bytes;      /* bytes all connections hold now (see max_conn_buffer) */
    uint64_t held_peak;       /* the most any one connection has held */
    uint64_t reports_sent;    /* refusal reports sent to devices */
    uint64_t reports_dropped; /* reports a device could not receive (it grants no streams) */
    /* Response streams (bidirectional, the response fully queued with FIN) still holding
     * unacknowledged data or FIN when their connection ended: responses the device may not have
     * received, as far as the edge can tell. */
    uint64_t responses_unacked;
    /* Connection IDs in the routing table now (all connections): each connection holds its
     * active IDs (at most the client's active_connection_id_limit), those retired less than a
     * PTO ago, and the DCID of the client's first Initial. */
    uint64_t cids;
    uint64_t handshaking; /* handshakes in progress now (see retry_threshold) */
    /* Address validation, counted per Initial datagram (a ClientHello may take two). */
    uint64_t retries;        /* Retry packets sent */
    uint64_t tokens_refused; /* Retry tokens that did not verify: CONNECTION_CLOSE(INVALID_TOKEN) */
    uint64_t tokens_ignored; /* tokens that are no valid token of ours: treated as absent */
    /* Resumption and NEW_TOKEN: handshakes that resumed a session ticket; NEW_TOKEN tokens sent,
     * and Initials whose NEW_TOKEN token verified (no Retry needed). */
    uint64_t resumed;
    uint64_t new_tokens_sent;
    uint64_t new_tokens_accepted;
    /* 0-RTT: handshakes whose early data was accepted, and requests (bidirectional streams) that
     * arrived in it. */
    uint64_t early_accepted;
    uint64_t early_requests;
    uint64_t early_heartbeats; /* unidirectional streams (heartbeats) that arrived in 0-RTT */
    /* The closing period (RFC 9000 10.2): a connection the edge closed keeps its IDs and the
     * CONNECTION_CLOSE it sent for three PTOs (at least SYN_EDGE_CLOSING_MIN_MS), and answers a
     * packet for it with that close again (rate-limited); one the client closed drains silently
     * for as long. */
    uint64_t closing;         /* connections in their closing or draining period now */
    uint64_t close_repeats;   /* CONNECTION_CLOSE packets sent again during a closing period */
    uint64_t closing_dropped; /* datagrams for a closing or draining connection not answered */
    /* A misbehaving edge (syn_edge_config.misbehave): streams it opened towards devices
     * (OPEN_STREAMS, FLOOD), those its QUIC stack refused for lack of stream credit
     * (OPEN_STREAMS), and connections it moved to another address (MIGRATE). */
    uint64_t mb_streams;
    uint64_t mb_refused;
    uint64_t mb_migrations;
    /* A device's address changed (its migration, or a NAT rebinding): datagrams of a connection
     * came from a new address (path_changes), and the path validations that followed ended
     * validated or failed (the connection then went back to the previous path). */
    uint64_t path_changes;
    uint64_t paths_validated;
    uint64_t path_validations_failed;
    /* Draining (syn_edge_drain): requests refused with SYN_APP_RETRY, and Initials of new
     * connections dropped (refuse_new). */
    uint64_t drain_retries;
    uint64_t drain_dropped;
    /* QUIC over TCP: sockets accepted, refused (over the bounds), links up now, TLS handshakes in
     * progress now, frames received, links closed for carrying no connection; bytes queued for
     * sending on the links now (above the kernel's buffers) and the most on one link, and frames
     * dropped at a link's hard bound (SYN_TCPLINK_MAX_QUEUED: a peer that sends and never reads).
     */
    uint64_t tcp_accepted;
    uint64_t tcp_refused;
    uint64_t tcp_links;
    uint64_t tcp_handshaking;
    uint64_t tcp_frames;
    uint64_t tcp_idle_closed;
    uint64_t tcp_queued;
    uint64_t tcp_queued_max;
    uint64_t tcp_send_dropped;
} syn_edge_stats;

void syn_edge_get_stats(const syn_edge *e, syn_edge_stats *out);

/* The device id of the most recent completed handshake ("" if none). */
const char *syn_edge_last_device(const syn_edge *e);
/* The SHA-256 fingerprint (64 hex digits) of the device certificate of the most recent completed
 * handshake ("" if none); also logged in its "connection" event as cert_sha256. */
const char *syn_edge_last_cert(const syn_edge *e);

/* Heartbeats of one device (by its certificate's id). */
typedef struct syn_edge_device {
    uint64_t heartbeats;
    uint64_t last_sequence;
    char last_json[4096]; /* the last heartbeat's JSON (truncated if longer) */
} syn_edge_device;

/* Fills *out for device_id; returns 0, or -1 if no heartbeat came from it. */
int syn_edge_device_info(const syn_edge *e, const char *device_id, syn_edge_device *out);

/* The reason of the last bad frame ("" if none). */
const char *syn_edge_last_bad_frame(const syn_edge *e);

/*
 * A request handler replacing the built-in ones (echo, SRC, SLEEP, RESET). Called once the whole
 * request has arrived (FIN). Fill reply: data (malloc'ed; the edge frees it) and len, or
 * reset = 1 with reset_code. Return 0; non-zero resets the stream with SYN_APP_INTERNAL.
 */
typedef struct syn_edge_reply {
    uint8_t *data;
    size_t len;
    int reset;
    uint64_t reset_code;
} syn_edge_reply;
typedef int (*syn_edge_handler)(void *user_data, const char *device_id, const uint8_t *request,
                                size_t len, syn_edge_reply *reply);
void syn_edge_set_handler(syn_edge *e, syn_edge_handler fn, void *user_data);

/* Reports waiting for a stream to one connection; beyond, a report is dropped (reports_dropped):
 * a device that never returns its report-stream credit must not grow the edge's memory. */
#define SYN_EDGE_MAX_QUEUED_REPORTS 16

/*
 * Sends len bytes of frame, as they are, on a new edge-initiated unidirectional stream (then FIN)
 * to every connection of device_id: the transport of edge reports (docs/protocol.md, type
 * SYN_MSG_REPORT; the edge's own refusals use it too). The bytes are copied; each stream is
 * opened from the connection's next write pass, waiting there while the device's stream credit
 * is used up (a device that grants none gets none: counted in reports_dropped). Returns the
 * number of connections it was queued on (0 when the device has none), SYNESIS_ERR_NOMEM, or
 * SYNESIS_ERR_WOULD_BLOCK when SYN_EDGE_MAX_QUEUED_REPORTS already wait (the report is dropped).
 */
int syn_edge_send_report(syn_edge *e, const char *device_id, const uint8_t *frame, size_t len);

/* Closes every connection of device_id (CONNECTION_CLOSE with application error 0x2, "kicked");
 * for tests. */
void syn_edge_kick(syn_edge *e, const char *device_id);

/*
 * Graceful drain (docs/protocol.md, "Drain"): every connection open now is asked to move. Each
 * stops taking requests (a bidirectional stream the device opens from now on is reset with
 * SYN_APP_RETRY, RESET_STREAM and STOP_SENDING, before any of it reaches a handler: the device
 * may send it again), lets the requests in flight finish (their responses acknowledged), then gets
 * CONNECTION_CLOSE with SYN_APP_MOVE ("reconnect now, elsewhere if you can"). After grace seconds
 * the connections still draining get that close at once. Heartbeats are still taken. With
 * refuse_new, Initials of new connections are dropped (an edge about to exit); without, new
 * connections are served as usual (tests: the device comes back to the same edge). done (may be
 * NULL) runs once, from a timer, when no draining connection is left or the grace period ended;
 * the edge may be stopped from it. Events: "drain", "drain_refused", "move", "drained".
 */
typedef void (*syn_edge_drained_fn)(syn_edge *e, void *user_data);
void syn_edge_drain(syn_edge *e, double grace, int refuse_new, syn_edge_drained_fn done,
                    void *user_data);
/* Ends a drain: new connections are served again; connections already asked to move stay so. */
void syn_edge_undrain(syn_edge *e);

/* Stops and frees; no watcher stays active. */
void syn_edge_free(syn_edge *e);

#endif /* SYNESIS_EDGE_H */

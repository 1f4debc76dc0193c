/*
 * synesis-tunnel: the CloudTunnel handle.
 *
 * One synesis_tunnel keeps one QUIC connection (RFC 9000/9001/9002, version 1) with mutual TLS 1.3
 * from this device to a cloud edge. Everything it does runs as watchers on the libev loop the
 * caller passes to synesis_tunnel_new(): its UDP socket (ev_io), the QUIC timer (ev_timer), the
 * heartbeat and reconnect timers, and one ev_async for the name resolver's thread. It starts no
 * other thread and keeps no global state apart from a once-only crypto initialisation. Several
 * tunnels may share one loop.
 *
 * Threads: a handle is used only from the thread that runs its loop. No call blocks.
 *
 * Callbacks: every callback runs on the loop thread. Pointers handed to a callback are valid only
 * during the call. From inside any callback the application may call any function of this
 * header, synesis_tunnel_free() included (the free is deferred until control returns to the
 * library); after synesis_tunnel_free() returns, no callback of that tunnel runs again.
 */
#ifndef SYNESIS_TUNNEL_H
#define SYNESIS_TUNNEL_H

#include <stddef.h>
#include <stdint.h>

#include "synesis/common.h"

#ifdef __cplusplus
extern "C" {
#endif

struct ev_loop;
struct sockaddr;
struct sockaddr_storage;

typedef struct synesis_tunnel synesis_tunnel;

/* The connection states of the design. Valid transitions, and only these:
 *   Disconnected -> Connecting
 *   Connecting   -> Connected | Failed
 *   Connected    -> Reconnecting | Disconnected
 *   Reconnecting -> Connected | Reconnecting (attempt + 1) | Failed
 *   Failed       -> Connecting
 * Two more are taken as the application's own requests: disconnect() from Connecting or
 * Reconnecting ends in Disconnected (the attempt in progress is abandoned). Any other transition
 * is refused (SYNESIS_ERR_INVALID_STATE) and logged, never applied. */
typedef enum synesis_state_kind {
    SYNESIS_STATE_DISCONNECTED = 0,
    SYNESIS_STATE_CONNECTING = 1,
    SYNESIS_STATE_CONNECTED = 2,
    SYNESIS_STATE_RECONNECTING = 3,
    SYNESIS_STATE_FAILED = 4,
} synesis_state_kind;

/* Congestion controllers (config.congestion_control), those of ngtcp2. */
typedef enum synesis_congestion_control {
    SYNESIS_CC_CUBIC = 0, /* CUBIC (RFC 9438): the default */
    SYNESIS_CC_BBR = 1,   /* BBR v2: keeps throughput under random loss and deep buffers */
    SYNESIS_CC_RENO = 2,  /* NewReno (RFC 9002) */
} synesis_congestion_control;

/* A state with its details. */
typedef struct synesis_tunnel_state {
    synesis_state_kind kind;
    /* When the state was entered, milliseconds since the Unix epoch: Connecting's started_at,
     * Connected's since, Reconnecting's started_at (of the outage, kept across attempts),
     * Failed's at. */
    int64_t entered_ms;
    /* Connected: the connection's smoothed RTT in milliseconds (refreshed on every state query and
     * heartbeat tick). */
    uint32_t latency_ms;
    /* Reconnecting: the attempt number, from 1. */
    uint32_t attempt;
    /* Reconnecting: the last error (SYNESIS_ERR_*, 0 if none yet); Failed: the error. */
    int error;
    /* Human-readable detail of error ("" when none). */
    char error_detail[256];
} synesis_tunnel_state;

/* Returns "Disconnected", "Connecting", "Connected", "Reconnecting" or "Failed". */
SYNESIS_API const char *synesis_state_name(synesis_state_kind kind);

/* A state-change subscriber: called after each applied transition with the old and new states. */
typedef void (*synesis_state_fn)(synesis_tunnel *tunnel, const synesis_tunnel_state *old_state,
                                 const synesis_tunnel_state *new_state, void *user_data);

/*
 * Custom reconnect policy: given the attempt about to be scheduled (1-based) and the delay the
 * built-in policy computed (seconds), returns the delay to use, or a negative value to give up
 * (the tunnel then goes to Failed). Optional.
 */
typedef double (*synesis_backoff_fn)(void *user_data, uint32_t attempt, double computed_delay);

/* A name-resolution hook for tests and special environments: runs ON A RESOLVER THREAD in place
 * of getaddrinfo(). Fills up to max addresses (struct sockaddr_storage each, with lens) and
 * returns the count, or a negative value on failure. A lookup's thread can outlive the tunnel
 * (a lookup cancelled by disconnect or free still finishes): user_data must stay valid until
 * every hook call has returned. */
typedef int (*synesis_resolve_fn)(void *user_data, const char *host, uint16_t port,
                                  struct sockaddr_storage *addrs, unsigned int *lens, size_t max);

/*
 * Tunnel configuration. Always start from synesis_tunnel_config_init(), which fills every default
 * of the design; fields are only ever appended. synesis_tunnel_new() deep-copies it: strings and
 * arrays may be freed after the call. Durations are in seconds (double, like ev_tstamp), at most
 * one year each.
 */
typedef struct synesis_tunnel_config {
    size_t struct_size; /* set by config_init: sizeof(synesis_tunnel_config) */

    /* The edge: "quic://host[:port]" or "https://host[:port]", IPv6 literals in brackets,
     * default port 443. Default "quic://superinstance.ai:443". */
    const char *cloud_url;
    /* Name the edge's certificate must carry, also sent as SNI. Default NULL: the URL's host
     * (for IP literals, the certificate must carry that IP address). */
    const char *server_name;
    /* ALPN protocol. Default "synesis-tunnel/1". */
    const char *alpn;

    /* Device certificate chain (PEM, leaf first) and its private key: paths, or in-memory PEM
     * (cert_pem/key_pem take precedence when set). key_path may also be an OSSL_STORE URI such as
     * "file:/etc/synesis/device.key". A key file readable by group or others is refused.
     * Default "device.pem" / "device.key" (relative to the working directory). */
    const char *cert_path;
    const char *key_path;
    const char *cert_pem;
    size_t cert_pem_len;
    const char *key_pem;
    size_t key_pem_len;
    const char *key_passphrase; /* default NULL */

    /* Trust: the system store (default on) plus an optional CA file and/or hashed directory. */
    int use_system_trust;
    const char *ca_path;
    const char *ca_dir;
    /* Optional pins: SHA-256 of the edge's SubjectPublicKeyInfo; when set, the edge must match
     * one of them in addition to passing chain and name verification. No option turns
     * verification off. */
    const uint8_t (*spki_pins)[32];
    size_t n_spki_pins;

    /* QUIC. */
    double keep_alive_interval; /* PING after this much quiet; default 10 s; 0 = off */
    double idle_timeout;        /* default 60 s */
    double handshake_timeout;   /* default 10 s */
    /* Largest UDP payload we send (a cap): default 0 = 1452 bytes. Every connection starts at
     * ngtcp2's 1200 bytes; only path MTU discovery raises that, to at most this cap, by probes
     * that the edge must acknowledge (a probe the path does not carry is lost, the size stays).
     * Set e.g. 1280 under VPNs that drop large datagrams. 0, or 1200 to 1500. */
    size_t max_udp_payload;
    /* Path MTU discovery; default 1. With 0, the tunnel never sends more than 1200 bytes of UDP
     * payload, whatever max_udp_payload says (a cap larger than the path is then harmless, never
     * reached), and the socket lets the kernel fragment (no DF bit), although nothing it sends
     * needs it on a path that carries QUIC at all (IPv4 MTU 1228, IPv6 1280, and above). */
    int pmtud;

    /* Heartbeats: one every interval on a unidirectional stream, the first right after
     * Connected; 0 disables. Default 30 s. */
    double heartbeat_interval;
    /* Device id sent in heartbeats; default NULL: derived from the certificate's CN
     * ("device-<id>" gives "<id>"). */
    const char *device_id;
    /* Filesystem whose free space is reported in the vitals (statvfs); default "/"; NULL skips
     * it. Use a local filesystem: a hung network mount would stall the loop. */
    const char *vitals_disk_path;
    /* Largest heartbeat JSON accepted by the edge and produced by us; default 64 KiB. */
    size_t max_heartbeat_size;

    /* Reconnection with exponential backoff: initial 1 s, max 60 s, x2, 10 attempts (the
     * schedule's centre; see reconnect_jitter). */
    double reconnect_initial_delay;
    double reconnect_max_delay;
    double reconnect_multiplier;
    uint32_t reconnect_max_attempts;
    /* Bounded symmetric jitter j, 0 to 1: each delay d of the schedule becomes d * (1 + j*u),
     * u uniform in [-1, 1] and drawn per attempt from a per-tunnel random seed, so devices that
     * lost the same edge do not all retry at the same instants. Default 0.1 (d +/- 10 %); the
     * mean stays at d. 0 gives the exact schedule. */
    double reconnect_jitter;
    /* Attempts and delay reset only after a connection has stayed up this long. Default 0. */
    double reconnect_stable_period;
    /* When the first connect() fails, retry with the same policy instead of going to Failed.
     * Default 0, as the design. */
    int retry_initial_connect;
    synesis_backoff_fn backoff_fn;
    void *backoff_user_data;

    /* Requests: largest response accepted (default 16 MiB) and default timeout (30 s). */
    size_t max_response_size;
    double request_timeout;
    /* Requests waiting for a stream (the edge's stream limit) or, when the request asks for it,
     * for the tunnel to come back; beyond this, SYNESIS_ERR_QUEUE_FULL. Streams are opened on
     * the loop's next write pass, so requests made in one loop iteration all count until then.
     * Default 10000. The queue's bytes are bounded too: max_queued_request_bytes. */
    size_t max_queued_requests;
    /* Send buffer of each stream of the streaming API (bytes accepted but not yet acknowledged);
     * default 256 KiB. */
    size_t stream_send_buffer;
    /* Receive buffer of a paused stream, and the stream flow-control window; default 1 MiB,
     * 1024 to 2^60 - 1. The connection's window is 16 MiB or four of these, whichever is larger. */
    size_t stream_recv_window;

    /* is_healthy(): connected and latency below this. Default 500 ms. */
    uint32_t healthy_latency_ms;

    /* Logging: silent by default (log == NULL). */
    synesis_log_fn log;
    void *log_user_data;
    synesis_log_level log_level; /* default SYNESIS_LOG_INFO */

    /* Name resolution hook (see synesis_resolve_fn); default NULL = getaddrinfo on a thread. */
    synesis_resolve_fn resolve;
    void *resolve_user_data;

    /* Appended: the graceful-close linger, seconds (0 to 60). After disconnect() the tunnel is
     * Disconnected at once (and requests in flight complete as before), but the connection
     * itself stays open in the background on the loop until everything the tunnel sent (stream
     * data and FINs, e.g. a heartbeat just queued) is acknowledged and the ACK of what it
     * received (e.g. the last response) has gone out, at most this long; only then is
     * CONNECTION_CLOSE sent. connect() during the linger starts a new connection as usual;
     * synesis_tunnel_free() ends any linger at once (sending the close). 0 closes at once (still
     * sending the pending ACK first). Default 1 s. */
    double close_linger;

    /* Appended: TLS key-exchange groups, as OpenSSL's colon-separated list (e.g. "X25519" or
     * "X25519MLKEM768:X25519"). Default NULL: OpenSSL 3.5's default list, which offers the
     * post-quantum hybrid X25519MLKEM768 first: protection of today's traffic against a future
     * quantum computer, for a larger ClientHello (two datagrams) and more handshake CPU (figures in
     * docs/performance.md). A list OpenSSL does not accept fails synesis_tunnel_new() with
     * SYNESIS_ERR_INVALID_ARGUMENT. */
    const char *tls_groups;
    /* Appended: the congestion controller of the tunnel's sending side. Default
     * SYNESIS_CC_CUBIC. */
    synesis_congestion_control congestion_control;
    /* Appended: the byte bound of the same queue as max_queued_requests: the request bodies the
     * library copied (synesis_tunnel_request()) for every request waiting for a stream or for
     * the tunnel to come back, e.g. during an outage with queue_while_reconnecting. A request
     * whose copy would take the total above it fails at once with SYNESIS_ERR_QUEUE_FULL (its
     * callback never runs); so does a single body larger than the bound, connected or not:
     * raise the bound for larger bodies, or use synesis_tunnel_request_nocopy() or a stream.
     * No-copy bodies stay the application's memory and are not counted. Bytes are given back as
     * requests leave the queue (stream opened, or completed, cancelled or failed while waiting).
     * Default 64 MiB (the reference edge's largest request); 1 to SIZE_MAX. */
    size_t max_queued_request_bytes;
    /* Appended: share the TLS context of another tunnel instead of building one. For an
     * application that runs many tunnels with one identity: each tunnel then saves the heap a
     * context takes (about 30 KB: OpenSSL's per-context tables, the certificate chain, key and
     * trust anchors; docs/performance.md) and the loading of its files. The tunnel named here need
     * only be live during synesis_tunnel_new(): the context is reference counted, so either
     * tunnel may be freed first, and it may run on another loop or thread. This tunnel then uses
     * that tunnel's certificate and key (cert_path, key_path, cert_pem, key_pem, key_passphrase),
     * trust (use_system_trust, ca_path, ca_dir), spki_pins and tls_groups: those fields of this
     * config are ignored, neither read nor checked. Default NULL: a context of its own. */
    const synesis_tunnel *share_tls_with;
} synesis_tunnel_config;

/* Fills cfg with every default listed above. */
SYNESIS_API void synesis_tunnel_config_init(synesis_tunnel_config *cfg);

/* A heartbeat's "vitals" object while callbacks.on_vitals runs (valid only during the call). */
typedef struct synesis_vitals synesis_vitals;

/* Add application fields to the vitals (see on_vitals). Keys and strings are copied; a key
 * already present is replaced. Return 0, SYNESIS_ERR_NOMEM, or SYNESIS_ERR_INVALID_ARGUMENT for
 * a NULL vitals, key or string. */
SYNESIS_API int synesis_vitals_add_number(synesis_vitals *v, const char *key, double value);
SYNESIS_API int synesis_vitals_add_string(synesis_vitals *v, const char *key, const char *value);
SYNESIS_API int synesis_vitals_add_bool(synesis_vitals *v, const char *key, int value);

/* What happened to one heartbeat. */
typedef struct synesis_heartbeat_info {
    uint64_t sequence;
    int64_t timestamp_ms; /* the JSON's timestamp */
    uint32_t rtt_ms;      /* smoothed RTT when it was sent */
    /* on_heartbeat: 0 = handed to QUIC; else why it could not be sent.
     * on_heartbeat_result: 0 = delivered, SYNESIS_ERR_CONNECTION_LOST (the connection ended, or
     * the stream was reset, before the edge acknowledged all of it), SYNESIS_ERR_HEARTBEAT_REFUSED
     * (the edge refused it). */
    int status;
    size_t size; /* bytes of the frame */
    /* Appended: a human-readable detail of status, e.g. the edge's reason for a refusal (never
     * NULL; "" when none). */
    const char *detail;
} synesis_heartbeat_info;

/* Application callbacks given to synesis_tunnel_new(); any member may be NULL. Members are only
 * ever appended. */
typedef struct synesis_tunnel_callbacks {
    /* Every applied state transition (in addition to subscribers). */
    synesis_state_fn on_state;
    /* Each heartbeat tick, after the frame was queued (status 0) or could not be (status < 0). */
    void (*on_heartbeat)(synesis_tunnel *t, const synesis_heartbeat_info *info, void *user_data);
    /* Adds the application's own vitals to each heartbeat. */
    void (*on_vitals)(synesis_tunnel *t, synesis_vitals *vitals, void *user_data);
    /* Appended: the outcome of each heartbeat handed to QUIC (on_heartbeat status 0), once it is
     * known: status 0 when the edge acknowledged all of it (every byte and the end of its
     * stream), SYNESIS_ERR_CONNECTION_LOST when the connection ended (or the stream was reset)
     * first, SYNESIS_ERR_HEARTBEAT_REFUSED when the edge refused it (STOP_SENDING with
     * BAD_FRAME, or an edge report; info.detail carries the edge's reason). The edge may judge a
     * heartbeat only after it has received all of it: a heartbeat reported delivered can then be
     * reported again, refused (and moves from heartbeats_delivered to heartbeats_refused).
     * Heartbeats in flight at disconnect() are followed while the connection lingers (see
     * close_linger): their results may come after the state is Disconnected. Not called for
     * heartbeats still in flight when the tunnel is freed (they count as failed). */
    void (*on_heartbeat_result)(synesis_tunnel *t, const synesis_heartbeat_info *info,
                                void *user_data);
} synesis_tunnel_callbacks;

/*
 * Creates a tunnel on loop. Validates the configuration (URL, certificate, key, trust) and builds
 * the TLS context now (or shares that of config.share_tls_with), so that a bad certificate or key
 * is reported here, not on connect.
 * The tunnel starts Disconnected and does nothing until synesis_tunnel_connect().
 * On failure *out is NULL and, when detail is given, it receives a message naming the cause.
 * callbacks may be NULL; it is copied.
 */
SYNESIS_API int synesis_tunnel_new(synesis_tunnel **out, struct ev_loop *loop,
                                   const synesis_tunnel_config *cfg,
                                   const synesis_tunnel_callbacks *callbacks, void *user_data,
                                   char *detail, size_t detail_len);

/*
 * Starts connecting: Disconnected or Failed -> Connecting. Resolution, socket and handshake then
 * proceed on the loop; the outcome arrives as a state change (Connected, or Failed with an error
 * code such as SYNESIS_ERR_PEER_UNTRUSTED or SYNESIS_ERR_HANDSHAKE_TIMEOUT). Returns
 * SYNESIS_ERR_INVALID_STATE in any other state.
 */
SYNESIS_API int synesis_tunnel_connect(synesis_tunnel *t);

/*
 * Closes gracefully (CONNECTION_CLOSE with application error 0, reason "client disconnect") and
 * ends in Disconnected at once; never reconnects. The connection lingers in the background for
 * at most config.close_linger seconds, until what it sent is acknowledged and the ACK of what
 * it received has gone out, and only then sends its CONNECTION_CLOSE (see close_linger). From
 * Connecting or Reconnecting it abandons the attempt and stops the timers. Returns
 * SYNESIS_ERR_INVALID_STATE when already Disconnected or Failed.
 */
SYNESIS_API int synesis_tunnel_disconnect(synesis_tunnel *t);

/*
 * Frees the tunnel in any state. A live connection is closed at once (no linger: the ACK still
 * owed for what it received, then CONNECTION_CLOSE), as is any connection still lingering after
 * disconnect(); no state callbacks run, every watcher is stopped, and no callback of this tunnel
 * runs afterwards. Safe from inside the tunnel's own callbacks (the release is deferred until they
 * return). NULL is a no-op.
 */
SYNESIS_API void synesis_tunnel_free(synesis_tunnel *t);

/* Copies the current state into *out (refreshing Connected's latency). */
SYNESIS_API void synesis_tunnel_get_state(synesis_tunnel *t, synesis_tunnel_state *out);

/* 1 when Connected. */
SYNESIS_API int synesis_tunnel_is_connected(const synesis_tunnel *t);

/* 1 when Connected and the latency is below the configured healthy_latency_ms. */
SYNESIS_API int synesis_tunnel_is_healthy(synesis_tunnel *t);

/*
 * Adds a state subscriber with its own user data; *id receives a handle for unsubscribe.
 * Subscribers run in the order they were added, after callbacks.on_state.
 */
SYNESIS_API int synesis_tunnel_subscribe(synesis_tunnel *t, synesis_state_fn fn, void *user_data,
                                         uint32_t *id);

/* Removes a subscriber; safe from inside a state callback. SYNESIS_ERR_INVALID_ARGUMENT if the id
 * is unknown. */
SYNESIS_API int synesis_tunnel_unsubscribe(synesis_tunnel *t, uint32_t id);

/* Statistics (the design's TunnelStats). Byte counts are application payload (request and
 * stream data, heartbeat frames); packet counts are QUIC's, summed over every connection of the
 * handle's life. */
typedef struct synesis_tunnel_stats {
    size_t struct_size; /* set by synesis_tunnel_get_stats() */
    uint64_t bytes_sent;
    uint64_t bytes_received;
    uint64_t requests_sent; /* requests whose stream was opened */
    uint64_t requests_succeeded;
    uint64_t requests_failed; /* any error other than timeout and cancel */
    uint64_t requests_timed_out;
    uint64_t requests_cancelled;
    uint64_t streams_opened;    /* streaming-API streams */
    uint64_t heartbeats_sent;   /* handed to QUIC (stream opened, frame queued): not delivery */
    uint64_t heartbeats_failed; /* not sent (not connected, too large, no stream credit, or 32
                                   earlier ones still unacknowledged), or lost: the connection
                                   ended or the stream was reset first */
    uint64_t last_heartbeat_sequence;
    uint32_t last_heartbeat_rtt_ms;
    uint64_t connections; /* handshakes completed */
    uint64_t reconnects;  /* returns to Connected from Reconnecting */
    int last_error;       /* SYNESIS_ERR_* of the last connection error, 0 if none */
    char last_error_detail[256];
    double time_disconnected; /* seconds spent in Reconnecting, in total */
    double handshake_time;    /* seconds, of the current connection (0 when none) */
    uint32_t rtt_smoothed_us; /* of the current connection (0 when none) */
    uint32_t rtt_min_us;
    uint32_t rtt_latest_us;
    uint64_t cwnd; /* congestion window, bytes */
    uint64_t packets_sent;
    uint64_t packets_lost;
    /* Appended. Heartbeats the edge acknowledged entirely (all bytes and FIN) and did not refuse;
     * heartbeats_sent = delivered + refused + lost (counted in heartbeats_failed) + in flight. */
    uint64_t heartbeats_delivered;
    /* Appended. Heartbeats the edge refused (STOP_SENDING/RESET_STREAM with BAD_FRAME, or a
     * heartbeat_refused report). */
    uint64_t heartbeats_refused;
    /* Appended. The edge address of the current connection once its handshake has completed,
     * "192.0.2.1:443" or "[2001:db8::1]:443" ("" when there is none): which of the resolved
     * addresses, and so which IP version, the tunnel is using. */
    char remote_address[64];
    /* Appended. Times a connection attempt moved on to the next resolved address (IPv4 ones
     * first, then IPv6) after a transport failure on one (refused, unreachable, or no handshake
     * within handshake_timeout), summed over the handle's life. */
    uint64_t address_fallbacks;
    /* Appended. Seconds from the connection's first Initial to the device's own handshake
     * completion (its TLS Finished produced: where OpenSSL's SSL_connect() returns), of the
     * current connection (0 when none). handshake_time goes on to Connected: the handshake
     * confirmed by the edge's HANDSHAKE_DONE, which follows its verdict on the device
     * certificate, one more flight later. */
    double handshake_completed_time;
} synesis_tunnel_stats;

/* Fills *out. */
SYNESIS_API void synesis_tunnel_get_stats(synesis_tunnel *t, synesis_tunnel_stats *out);

/* Writes the statistics as one JSON object into buf (NUL-terminated when len > 0). Returns the
 * length the full object needs (like snprintf), or SYNESIS_ERR_NOMEM. */
SYNESIS_API int synesis_tunnel_stats_json(synesis_tunnel *t, char *buf, size_t len);

/* The detail string of the last error of this tunnel (never NULL; "" if none). */
SYNESIS_API const char *synesis_tunnel_last_error(const synesis_tunnel *t);

/* The user_data given to synesis_tunnel_new(). */
SYNESIS_API void *synesis_tunnel_user_data(const synesis_tunnel *t);

#ifdef __cplusplus
}
#endif

#endif /* SYNESIS_TUNNEL_H */

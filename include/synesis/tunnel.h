/**
 * @file synesis/tunnel.h
 * @brief The CloudTunnel handle: configuration, lifecycle, states, heartbeats and statistics.
 *
 * One synesis_tunnel keeps one QUIC connection (RFC 9000/9001/9002, version 1) with mutual TLS 1.3
 * from this device to a cloud edge. Everything it does runs as watchers on the libev loop the
 * caller passes to synesis_tunnel_new(): its UDP socket (ev_io), the QUIC timer (ev_timer), the
 * heartbeat and reconnect timers, one ev_async for the name resolver's thread, and with
 * config.watch_network, while Connected, an ev_io on a NETLINK_ROUTE socket and an ev_timer. It
 * starts no other thread and keeps no global state apart from a once-only crypto initialisation.
 * Several tunnels may share one loop.
 *
 * Threads: a handle is used only from the thread that runs its loop. No call blocks.
 *
 * Callbacks: every callback runs on the loop thread. Pointers handed to a callback are valid only
 * during the call. From inside any callback the application may call any function of this
 * header, synesis_tunnel_free() included (the free is deferred until control returns to the
 * library); after synesis_tunnel_free() returns, no callback of that tunnel runs again.
 *
 * When Connected is entered: for a full handshake, when it is confirmed: the edge's
 * HANDSHAKE_DONE has been received, which it sends only after verifying the device certificate,
 * so a device the edge refuses never sees Connected (see
 * synesis_tunnel_stats.handshake_completed_time). For a resumed handshake (a session ticket of an
 * earlier connection, config.resumption), as soon as the device's own handshake completes, half a
 * round trip sooner: no device certificate is sent for the edge to judge, and the edge accepted
 * the ticket before sending its Finished, so no refusal can follow (docs/resumption.md).
 *
 * Strings in a synesis_tunnel_state or synesis_tunnel_stats filled by a getter point into the
 * tunnel: they stay valid (NUL-terminated) until synesis_tunnel_free(), and hold the text of the
 * moment of the call until control returns to the loop (the tunnel may then replace it; copy it
 * to keep it). Strings in structs handed to a callback are valid only during the callback.
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

/** The tunnel handle (opaque). @since 1.0 */
typedef struct synesis_tunnel synesis_tunnel;

/** The connection states of the design. Valid transitions, and only these:
 *   Disconnected -> Connecting
 *   Connecting   -> Connected | Failed
 *   Connected    -> Reconnecting | Disconnected
 *   Reconnecting -> Connected | Reconnecting (attempt + 1) | Failed
 *   Failed       -> Connecting
 * Two more are taken as the application's own requests: disconnect() from Connecting or
 * Reconnecting ends in Disconnected (the attempt in progress is abandoned). Any other transition
 * is refused (SYNESIS_ERR_INVALID_STATE) and logged, never applied. @since 1.0 */
typedef enum synesis_state_kind {
    SYNESIS_STATE_DISCONNECTED = 0, /**< not connected, and not trying (the initial state) */
    SYNESIS_STATE_CONNECTING = 1,   /**< the first attempt after connect(): resolve, handshake */
    SYNESIS_STATE_CONNECTED = 2,    /**< up: a full handshake confirmed by the edge's
                                       HANDSHAKE_DONE, a resumed one completed */
    SYNESIS_STATE_RECONNECTING = 3, /**< the connection was lost; attempts under the backoff */
    SYNESIS_STATE_FAILED = 4,       /**< gave up (error in the state); connect() starts again */
} synesis_state_kind;

/** Congestion controllers (config.congestion_control), those of ngtcp2. @since 1.0 */
typedef enum synesis_congestion_control {
    SYNESIS_CC_CUBIC = 0, /**< CUBIC (RFC 9438): the default */
    SYNESIS_CC_BBR = 1,   /**< BBR v2: keeps throughput under random loss and deep buffers */
    SYNESIS_CC_RENO = 2,  /**< NewReno (RFC 9002) */
} synesis_congestion_control;

/** The transport a tunnel uses (config.transport, and the state's transport). @since 1.2 */
typedef enum synesis_transport {
    /** Configuration: UDP first, QUIC over TCP when UDP does not get through (the default).
     * In a state: no connection yet. @since 1.2 */
    SYNESIS_TRANSPORT_AUTO = 0,
    /** QUIC over UDP only (never TCP); in a state: the connection runs on UDP. @since 1.2 */
    SYNESIS_TRANSPORT_UDP = 1,
    /** QUIC over a TLS connection on TCP only (docs/protocol.md, "QUIC over TCP"); in a state:
     * the connection runs over TCP. @since 1.2 */
    SYNESIS_TRANSPORT_TCP = 2,
} synesis_transport;

/** The name of a transport: "auto", "udp", "tcp" ("unknown" for another value); a static
 * string. Any thread. @since 1.2 */
SYNESIS_API const char *synesis_transport_name(synesis_transport transport);

/**
 * A state with its details. Library-filled: by synesis_tunnel_get_state() (up to the caller's
 * size) and for the state callbacks (the library's full size). Members are only ever appended.
 * @since 1.0
 */
typedef struct synesis_tunnel_state {
    /** The bytes the library wrote: sizeof of the struct it knows, or less when the caller's is
     * smaller. @since 1.0 */
    size_t struct_size;
    synesis_state_kind kind; /**< the state @since 1.0 */
    /** When the state was entered, milliseconds since the Unix epoch: Connecting's started_at,
     * Connected's since, Reconnecting's started_at (of the outage, kept across attempts),
     * Failed's at. @since 1.0 */
    int64_t entered_ms;
    /** Connected: the connection's smoothed RTT in milliseconds (refreshed on every state query and
     * heartbeat tick). @since 1.0 */
    uint32_t latency_ms;
    /** Reconnecting: the attempt number, from 1. @since 1.0 */
    uint32_t attempt;
    /** Reconnecting: the last error (SYNESIS_ERR_*, 0 if none yet); Failed: the error. @since 1.0
     */
    int error;
    /** Human-readable detail of error; never NULL, "" when none. In a state callback: valid
     * during the callback; from synesis_tunnel_get_state(): see the lifetime rule at the top of
     * this header. @since 1.0 */
    const char *error_detail;
    /** The transport of the connection: SYNESIS_TRANSPORT_UDP or SYNESIS_TRANSPORT_TCP while
     * Connected (it changes without a state transition when the tunnel moves back to UDP: read it
     * with synesis_tunnel_get_state()), SYNESIS_TRANSPORT_AUTO when there is no connection.
     * @since 1.2 */
    synesis_transport transport;
} synesis_tunnel_state;

/**
 * Returns "Disconnected", "Connecting", "Connected", "Reconnecting" or "Failed" ("Unknown" for
 * another value): a static string. Any thread. @since 1.0
 */
SYNESIS_API const char *synesis_state_name(synesis_state_kind kind);

/**
 * A state-change callback (callbacks.on_state, or a subscriber): called on the loop thread after
 * each applied transition with the old and new states, both valid only during the call.
 * @since 1.0
 */
typedef void (*synesis_state_fn)(synesis_tunnel *tunnel, const synesis_tunnel_state *old_state,
                                 const synesis_tunnel_state *new_state, void *user_data);

/**
 * Custom reconnect policy (config.backoff_fn), on the loop thread. Its return value is its result.
 * @param tunnel the tunnel about to schedule an attempt.
 * @param attempt the attempt about to be scheduled, from 1.
 * @param computed_delay the delay the built-in policy computed, seconds.
 * @param user_data config.backoff_user_data.
 * @return the delay to use (seconds), or a negative value (or NaN) to give up: the tunnel then
 *         goes to Failed.
 * @since 1.0
 */
typedef double (*synesis_backoff_fn)(synesis_tunnel *tunnel, uint32_t attempt,
                                     double computed_delay, void *user_data);

/**
 * A name-resolution hook (config.resolve) for tests and special environments: runs ON A RESOLVER
 * THREAD in place of getaddrinfo(). It takes no handle: a lookup's thread can outlive the tunnel
 * (a lookup cancelled by disconnect or free still finishes), so user_data must stay valid until
 * every hook call has returned. Its return value is its result.
 * @param host the URL's host name (valid during the call).
 * @param port the URL's port.
 * @param addrs room for max addresses (struct sockaddr_storage each).
 * @param lens receives each address's length.
 * @param max the room in addrs and lens.
 * @param user_data config.resolve_user_data.
 * @return the number of addresses filled, or a negative value on failure.
 * @since 1.0
 */
typedef int (*synesis_resolve_fn)(const char *host, uint16_t port, struct sockaddr_storage *addrs,
                                  unsigned int *lens, size_t max, void *user_data);

/**
 * Tunnel configuration (caller-filled). Always start from synesis_tunnel_config_init(), which
 * fills every default of the design and records the struct's size; members are only ever
 * appended. synesis_tunnel_new() deep-copies it: strings and arrays may be freed after the call.
 * Durations are in seconds (double, like ev_tstamp), at most one year each.
 * @since 1.0
 */
typedef struct synesis_tunnel_config {
    /** Set by synesis_tunnel_config_init(): the size of the struct the application was built
     * with. @since 1.0 */
    size_t struct_size;

    /** The edge: "quic://host[:port]" or "https://host[:port]", IPv6 literals in brackets,
     * default port 443. Default "quic://superinstance.ai:443". @since 1.0 */
    const char *cloud_url;
    /** Name the edge's certificate must carry, also sent as SNI. Default NULL: the URL's host
     * (for IP literals, the certificate must carry that IP address). @since 1.0 */
    const char *server_name;
    /** ALPN protocol. Default "synesis-tunnel/1". @since 1.0 */
    const char *alpn;

    /** Device certificate chain (PEM, leaf first) and its private key: paths, or in-memory PEM
     * (cert_pem/key_pem take precedence when set). key_path may also be an OSSL_STORE URI such as
     * "file:/etc/synesis/device.key". A key file readable by group or others is refused.
     * Default "device.pem" / "device.key" (relative to the working directory). @since 1.0 */
    const char *cert_path;
    const char *key_path;       /**< the private key: a path or URI (see cert_path) @since 1.0 */
    const char *cert_pem;       /**< in-memory PEM chain; default NULL (see cert_path) @since 1.0 */
    size_t cert_pem_len;        /**< its length; 0 = NUL-terminated @since 1.0 */
    const char *key_pem;        /**< in-memory PEM key; default NULL (see cert_path) @since 1.0 */
    size_t key_pem_len;         /**< its length; 0 = NUL-terminated @since 1.0 */
    const char *key_passphrase; /**< default NULL @since 1.0 */

    /** Trust the system store (default 1), plus the optional CA file and/or hashed directory
     * below. @since 1.0 */
    int use_system_trust;
    const char *ca_path; /**< a PEM file of trusted CA certificates; default NULL @since 1.0 */
    const char *ca_dir;  /**< a hashed CA directory (c_rehash); default NULL @since 1.0 */
    /** Optional pins: SHA-256 of the edge's SubjectPublicKeyInfo; when set, the edge must match
     * one of them in addition to passing chain and name verification. No option turns
     * verification off. @since 1.0 */
    const uint8_t (*spki_pins)[32];
    size_t n_spki_pins; /**< the number of spki_pins; default 0 @since 1.0 */

    /* QUIC. */
    /** PING after this much quiet; default 10 s; 0 = off. Once the handshake completes, at most
     * nine tenths of the idle timeout in force (the smaller of idle_timeout and the edge's).
     * @since 1.0 */
    double keep_alive_interval;
    double idle_timeout;      /**< default 60 s @since 1.0 */
    double handshake_timeout; /**< default 10 s @since 1.0 */
    /** Largest UDP payload we send (a cap): default 0 = 1452 bytes. Every connection starts at
     * ngtcp2's 1200 bytes; only path MTU discovery raises that, to at most this cap, by probes
     * that the edge must acknowledge (a probe the path does not carry is lost, the size stays).
     * Set e.g. 1280 under VPNs that drop large datagrams. 0, or 1200 to 1500. @since 1.0 */
    size_t max_udp_payload;
    /** Path MTU discovery; default 1. With 0, the tunnel never sends more than 1200 bytes of UDP
     * payload, whatever max_udp_payload says (a cap larger than the path is then harmless, never
     * reached), and the socket lets the kernel fragment (no DF bit), although nothing it sends
     * needs it on a path that carries QUIC at all (IPv4 MTU 1228, IPv6 1280, and above). @since 1.0
     */
    int pmtud;

    /** Heartbeats: one every interval on a unidirectional stream, the first right after
     * Connected; 0 disables. Default 30 s. @since 1.0 */
    double heartbeat_interval;
    /** Device id sent in heartbeats; default NULL: derived from the certificate's CN
     * ("device-<id>" gives "<id>"). @since 1.0 */
    const char *device_id;
    /** Filesystem whose free space is reported in the vitals (statvfs); default "/"; NULL skips
     * it. Use a local filesystem: a hung network mount would stall the loop. @since 1.0 */
    const char *vitals_disk_path;
    /** Largest heartbeat JSON accepted by the edge and produced by us; default 64 KiB. @since 1.0
     */
    size_t max_heartbeat_size;

    /** Reconnection with exponential backoff: initial 1 s, max 60 s, x2, 10 attempts (the
     * schedule's centre; see reconnect_jitter). This is the first delay, seconds. @since 1.0 */
    double reconnect_initial_delay;
    double reconnect_max_delay;      /**< the longest delay, seconds; default 60 @since 1.0 */
    double reconnect_multiplier;     /**< each delay is the last times this; default 2 @since 1.0 */
    uint32_t reconnect_max_attempts; /**< attempts per outage; default 10 @since 1.0 */
    /** Bounded symmetric jitter j, 0 to 1: each delay d of the schedule becomes d * (1 + j*u),
     * u uniform in [-1, 1] and drawn per attempt from a per-tunnel random seed, so devices that
     * lost the same edge do not all retry at the same instants. Default 0.1 (d +/- 10 %); the
     * mean stays at d. 0 gives the exact schedule. @since 1.0 */
    double reconnect_jitter;
    /** Attempts and delay reset only after a connection has stayed up this long. Default 0.
     * @since 1.0 */
    double reconnect_stable_period;
    /** When the first connect() fails, retry with the same policy instead of going to Failed.
     * Default 0, as the design. @since 1.0 */
    int retry_initial_connect;
    /** Custom reconnect policy (see synesis_backoff_fn); default NULL: the built-in one.
     * @since 1.0 */
    synesis_backoff_fn backoff_fn;
    void *backoff_user_data; /**< passed to backoff_fn; default NULL @since 1.0 */

    /** Requests: largest response accepted (default 16 MiB) and default timeout (30 s). @since 1.0
     */
    size_t max_response_size;
    double request_timeout; /**< default request timeout, seconds; default 30 @since 1.0 */
    /** Requests waiting for a stream (the edge's stream limit) or, when the request asks for it,
     * for the tunnel to come back; beyond this, SYNESIS_ERR_QUEUE_FULL. Streams are opened on
     * the loop's next write pass, so requests made in one loop iteration all count until then.
     * Default 10000. The queue's bytes are bounded too: max_queued_request_bytes. @since 1.0 */
    size_t max_queued_requests;
    /** Send buffer of each stream of the streaming API (bytes accepted but not yet acknowledged);
     * default 256 KiB. @since 1.0 */
    size_t stream_send_buffer;
    /** Receive buffer of a paused stream, and the stream flow-control window; default 1 MiB,
     * 1024 to 2^60 - 1. The connection's window is 16 MiB or four of these, whichever is larger.
     * @since 1.0 */
    size_t stream_recv_window;

    /** is_healthy(): connected and latency below this. Default 500 ms. @since 1.0 */
    uint32_t healthy_latency_ms;

    /** Logging: silent by default (log == NULL). @since 1.0 */
    synesis_log_fn log;
    void *log_user_data;         /**< passed to log; default NULL @since 1.0 */
    synesis_log_level log_level; /**< default SYNESIS_LOG_INFO @since 1.0 */

    /** Name resolution hook (see synesis_resolve_fn); default NULL = getaddrinfo on a thread.
     * @since 1.0 */
    synesis_resolve_fn resolve;
    void *resolve_user_data; /**< passed to resolve; default NULL @since 1.0 */

    /** The graceful-close linger, seconds (0 to 60). After disconnect() the tunnel is
     * Disconnected at once (and requests in flight complete as before), but the connection
     * itself stays open in the background on the loop until everything the tunnel sent (stream
     * data and FINs, e.g. a heartbeat just queued) is acknowledged and the ACK of what it
     * received (e.g. the last response) has gone out, at most this long; only then is
     * CONNECTION_CLOSE sent. connect() during the linger starts a new connection as usual;
     * synesis_tunnel_free() ends any linger at once (sending the close). 0 closes at once (still
     * sending the pending ACK first). Over TCP (transport) the same, on the connection's link,
     * which closes after the CONNECTION_CLOSE (since 1.2). Default 1 s. @since 1.0 */
    double close_linger;

    /** TLS key-exchange groups, as OpenSSL's colon-separated list (e.g. "X25519" or
     * "X25519MLKEM768:X25519"). Default NULL: OpenSSL 3.5's default list, which offers the
     * post-quantum hybrid X25519MLKEM768 first: protection of today's traffic against a future
     * quantum computer, for a larger ClientHello (two datagrams) and more handshake CPU (figures in
     * docs/performance.md). A list OpenSSL does not accept fails synesis_tunnel_new() with
     * SYNESIS_ERR_INVALID_ARGUMENT. @since 1.0 */
    const char *tls_groups;
    /** The congestion controller of the tunnel's sending side. Default
     * SYNESIS_CC_CUBIC. @since 1.0 */
    synesis_congestion_control congestion_control;
    /** The byte bound of the same queue as max_queued_requests: the request bodies the
     * library copied (synesis_tunnel_request()) for every request waiting for a stream or for
     * the tunnel to come back, e.g. during an outage with queue_while_reconnecting. A request
     * whose copy would take the total above it fails at once with SYNESIS_ERR_QUEUE_FULL (its
     * callback never runs); so does a single body larger than the bound, connected or not:
     * raise the bound for larger bodies, or use synesis_tunnel_request_nocopy() or a stream.
     * No-copy bodies stay the application's memory and are not counted. Bytes are given back as
     * requests leave the queue (stream opened, or completed, cancelled or failed while waiting).
     * Default 64 MiB (the reference edge's largest request); 1 to SIZE_MAX. @since 1.0 */
    size_t max_queued_request_bytes;
    /** Share the TLS context of another tunnel instead of building one. For an
     * application that runs many tunnels with one identity: each tunnel then saves the heap a
     * context takes (about 30 KB: OpenSSL's per-context tables, the certificate chain, key and
     * trust anchors; docs/performance.md) and the loading of its files. The tunnel named here need
     * only be live during synesis_tunnel_new(): the context is reference counted, so either
     * tunnel may be freed first, and it may run on another loop or thread. This tunnel then uses
     * that tunnel's certificate and key (cert_path, key_path, cert_pem, key_pem, key_passphrase),
     * trust (use_system_trust, ca_path, ca_dir), spki_pins and tls_groups: those fields of this
     * config are ignored, neither read nor checked. Default NULL: a context of its own. @since 1.0
     */
    const synesis_tunnel *share_tls_with;
    /** Watch the kernel's address and route changes and move the connection when the route to
     * the edge changes its source address, as synesis_tunnel_network_changed() does. The watcher
     * is a NETLINK_ROUTE socket (IPv4/IPv6 address and route groups) read by an ev_io on the
     * tunnel's loop while Connected, its events debounced by 100 ms. Linux only; elsewhere, or
     * when the socket cannot be opened, the tunnel logs a warning and works without it. Default 0
     * (off): an application that learns of network changes itself (NetworkManager, connman) calls
     * synesis_tunnel_network_changed() instead. @since 1.1 */
    int watch_network;

    /** Session resumption (docs/resumption.md). 1 (default): keep the edge's session tickets
     * (TLS 1.3, at most 2, each used once) and its NEW_TOKEN token in memory, for the exact
     * server name the edge's certificate was verified against, and resume with them on the next
     * connection: a shorter handshake (no certificates), Connected half a round trip sooner, and
     * no Retry round trip at an edge that validates addresses. 0: keep nothing and offer
     * nothing; every connection is a full handshake, resume_data is ignored and
     * callbacks.on_resume_data is never called. @since 1.1 */
    int resumption;
    /** 0-RTT. 1 (default): when a connection resumes with a ticket that allows early data (an
     * edge with early data on), requests marked SYNESIS_REQUEST_IDEMPOTENT that wait for it, and
     * one heartbeat, go in the connection's first flight, before its handshake completes;
     * everything else waits for Connected. 0: nothing is ever sent early (the connection still
     * resumes). An edge that rejects the early data loses nothing: the requests are sent again in
     * 1-RTT, each answered once. @since 1.1 */
    int early_data;
    /** Resumption data saved by an earlier run (what callbacks.on_resume_data handed over, or
     * synesis_tunnel_resume_data() copied out), so that a restarted program resumes its first
     * connection too. Copied by synesis_tunnel_new(): may be freed after the call. Data that
     * cannot be used (malformed or truncated, another version's format, expired, or saved for
     * another server name) is ignored, never an error: the tunnel logs why (SYNESIS_LOG_WARN)
     * and its first connection is a full handshake, as without it; a stale file must not keep a
     * device offline. It holds a TLS resumption secret: see callbacks.on_resume_data for how to
     * store it. Default NULL; ignored when resumption is 0. @since 1.1 */
    const uint8_t *resume_data;
    size_t resume_data_len; /**< the length of resume_data; default 0 @since 1.1 */
    /** Heartbeats carry only the vitals that changed. 0 (default): every heartbeat carries every
     * vital. 1: the first heartbeat of each connection carries every vital; each later one only
     * the vitals whose value differs from the last heartbeat the edge acknowledged on that
     * connection (possibly none: "vitals":{}); a vital that disappears is not reported as gone.
     * The edge keeps the last value of each vital (docs/protocol.md, "Heartbeats"). Set by
     * synesis_tunnel_config_low_bandwidth(). @since 1.1 */
    int heartbeat_changed_vitals;

    /** The HTTP CONNECT proxy of the TCP transport. NULL (default): from the environment as curl
     * does (https_proxy, HTTPS_PROXY, all_proxy, ALL_PROXY; not for hosts that no_proxy/NO_PROXY
     * lists); "": none, whatever the environment says; else "http://[user:password@]host[:port]"
     * (Basic authentication; port 1080 when none). Copied. UDP never goes through a proxy.
     * @since 1.2 */
    const char *proxy;
    /** How long a UDP attempt waits for the first datagram from the edge before it counts as a
     * UDP failure (with transport SYNESIS_TRANSPORT_AUTO): short, so that a network that drops
     * UDP comes up over TCP in seconds. An attempt that hears from the edge goes on until
     * handshake_timeout. Seconds, above 0; default 3 (two Initials on a working path). @since 1.2
     */
    double udp_fallback_timeout;
    /** While connected over TCP (transport SYNESIS_TRANSPORT_AUTO): seconds until the first probe
     * of UDP, each later one twice as long after the last failed, at most 600 s. A probe
     * validates the UDP path to the edge while TCP carries the traffic; once validated the
     * connection moves to UDP with nothing lost. 0 = never probe. Default 30. @since 1.2 */
    double udp_reprobe_interval;
    /** SYNESIS_TRANSPORT_AUTO (default): UDP first, TCP when UDP fails; SYNESIS_TRANSPORT_UDP:
     * never TCP; SYNESIS_TRANSPORT_TCP: TCP only. @since 1.2 */
    synesis_transport transport;
    /** With SYNESIS_TRANSPORT_AUTO: consecutive UDP failures (no datagram from the edge within
     * udp_fallback_timeout, or ICMP unreachable, on every address) after which the same attempt
     * goes on over TCP at once. A UDP success resets the count. 1 to 100; default 1: a wrong
     * fallback costs little (UDP is probed again and the connection moves back), a late one costs
     * the device its connectivity. @since 1.2 */
    uint32_t tcp_fallback_after;
    /** The edge's TCP port; 0 (default): the port of cloud_url (the reference edge listens on
     * TCP on the same port number as on UDP). @since 1.2 */
    uint16_t tcp_port;
} synesis_tunnel_config;

/**
 * Fills the first size bytes of cfg: zeroes them, writes the defaults listed above of the members
 * that fit, and sets struct_size to size. Call it through synesis_tunnel_config_init().
 * @param cfg the caller's config; NULL (or a size smaller than struct_size itself) is a no-op.
 * @param size sizeof the caller's struct.
 * Any thread. @since 1.0
 */
SYNESIS_API void synesis_tunnel_config_init_sized(synesis_tunnel_config *cfg, size_t size);

/** Fills *cfg with every default (synesis_tunnel_config_init_sized() with its size). @since 1.0 */
#define synesis_tunnel_config_init(cfg) synesis_tunnel_config_init_sized((cfg), sizeof(*(cfg)))

/**
 * The low-bandwidth profile, for metered links (docs/operations.md, "Bandwidth of an idle
 * tunnel"): changes an initialised config's idle traffic, nothing else. It sets
 * heartbeat_interval to 600 s (10 minutes), heartbeat_changed_vitals to 1,
 * keep_alive_interval to SYNESIS_LOW_BANDWIDTH_KEEP_ALIVE (the NAT binding's refresh: set
 * keep_alive_interval after this call to the NAT timeout a device measured, less a margin) and
 * idle_timeout to SYNESIS_LOW_BANDWIDTH_IDLE_TIMEOUT (a dead path is noticed later). The edge's
 * idle timeout should be at least as long (the reference edge's default is 60 s: against it the
 * keep-alive is 54 s, and the tunnel costs more). Call it
 * after synesis_tunnel_config_init() and before setting members of one's own.
 * @param cfg the caller's config, initialised by synesis_tunnel_config_init() (its struct_size
 *        is read: a config from an older header without heartbeat_changed_vitals gets the other
 *        three settings only).
 * @return 0, or SYNESIS_ERR_INVALID_ARGUMENT for NULL or a struct_size of 0.
 * Any thread. @since 1.1
 */
SYNESIS_API int synesis_tunnel_config_low_bandwidth(synesis_tunnel_config *cfg);

/** keep_alive_interval of the low-bandwidth profile, seconds: under the 2 minutes a NAT must
 * keep an idle UDP binding at the least (RFC 4787 REQ-5; Linux's conntrack keeps a UDP flow
 * that saw traffic both ways 120 s), with 20 s to spare. A NAT known to forget sooner (some
 * carrier-grade NATs: 30-60 s) needs keep_alive_interval set below its timeout: each halving
 * of the interval adds about 2.5 KB an hour (docs/operations.md). Against an edge whose idle
 * timeout is shorter the keep-alive follows it (keep_alive_interval). @since 1.1 */
#define SYNESIS_LOW_BANDWIDTH_KEEP_ALIVE 100.0
/** idle_timeout of the low-bandwidth profile, seconds. @since 1.1 */
#define SYNESIS_LOW_BANDWIDTH_IDLE_TIMEOUT 300.0

/** A heartbeat's "vitals" object while callbacks.on_vitals runs (valid only during the call).
 * @since 1.0 */
typedef struct synesis_vitals synesis_vitals;

/**
 * Adds a number to the vitals (from callbacks.on_vitals, on the loop thread). The key is copied;
 * a key already present is replaced.
 * @return 0, SYNESIS_ERR_NOMEM, or SYNESIS_ERR_INVALID_ARGUMENT for a NULL vitals or key.
 * @since 1.0
 */
SYNESIS_API int synesis_vitals_add_number(synesis_vitals *v, const char *key, double value);
/**
 * Adds a string to the vitals, like synesis_vitals_add_number() (loop thread, from on_vitals);
 * key and value are copied.
 * @return 0, SYNESIS_ERR_NOMEM, or SYNESIS_ERR_INVALID_ARGUMENT for a NULL vitals, key or value.
 * @since 1.0
 */
SYNESIS_API int synesis_vitals_add_string(synesis_vitals *v, const char *key, const char *value);
/**
 * Adds a boolean (value != 0) to the vitals, like synesis_vitals_add_number() (loop thread, from
 * on_vitals).
 * @return 0, SYNESIS_ERR_NOMEM, or SYNESIS_ERR_INVALID_ARGUMENT for a NULL vitals or key.
 * @since 1.0
 */
SYNESIS_API int synesis_vitals_add_bool(synesis_vitals *v, const char *key, int value);

/** What happened to one heartbeat (library-owned, handed to callbacks, valid during the call;
 * members only ever appended). @since 1.0 */
typedef struct synesis_heartbeat_info {
    size_t struct_size;   /**< set by the library: the size of the struct it filled @since 1.0 */
    uint64_t sequence;    /**< the heartbeat's sequence number, from 1 @since 1.0 */
    int64_t timestamp_ms; /**< the JSON's timestamp @since 1.0 */
    uint32_t rtt_ms;      /**< smoothed RTT when it was sent @since 1.0 */
    /** on_heartbeat: 0 = handed to QUIC; else why it could not be sent.
     * on_heartbeat_result: 0 = delivered, SYNESIS_ERR_CONNECTION_LOST (the connection ended, or
     * the stream was reset, before the edge acknowledged all of it), SYNESIS_ERR_HEARTBEAT_REFUSED
     * (the edge refused it). @since 1.0 */
    int status;
    size_t size; /**< bytes of the frame @since 1.0 */
    /** A human-readable detail of status, e.g. the edge's reason for a refusal (never
     * NULL; "" when none). @since 1.0 */
    const char *detail;
} synesis_heartbeat_info;

/** Application callbacks given to synesis_tunnel_new() (caller-filled: start from
 * synesis_tunnel_callbacks_init()); any member may be NULL. Members are only ever appended.
 * @since 1.0 */
typedef struct synesis_tunnel_callbacks {
    /** Set by synesis_tunnel_callbacks_init(): the size of the struct the application was built
     * with. @since 1.0 */
    size_t struct_size;
    /** Every applied state transition (in addition to subscribers). @since 1.0 */
    synesis_state_fn on_state;
    /** Each heartbeat tick, after the frame was queued (status 0) or could not be (status < 0).
     * @since 1.0 */
    void (*on_heartbeat)(synesis_tunnel *t, const synesis_heartbeat_info *info, void *user_data);
    /** Adds the application's own vitals to each heartbeat. @since 1.0 */
    void (*on_vitals)(synesis_tunnel *t, synesis_vitals *vitals, void *user_data);
    /** The outcome of each heartbeat handed to QUIC (on_heartbeat status 0), once it is
     * known: status 0 when the edge acknowledged all of it (every byte and the end of its
     * stream), SYNESIS_ERR_CONNECTION_LOST when the connection ended (or the stream was reset)
     * first, SYNESIS_ERR_HEARTBEAT_REFUSED when the edge refused it (STOP_SENDING with
     * BAD_FRAME, or an edge report; info.detail carries the edge's reason). The edge may judge a
     * heartbeat only after it has received all of it: a heartbeat reported delivered can then be
     * reported again, refused (and moves from heartbeats_delivered to heartbeats_refused).
     * Heartbeats in flight at disconnect() are followed while the connection lingers (see
     * close_linger): their results may come after the state is Disconnected. Not called for
     * heartbeats still in flight when the tunnel is freed (they count as failed). @since 1.0 */
    void (*on_heartbeat_result)(synesis_tunnel *t, const synesis_heartbeat_info *info,
                                void *user_data);
    /** Persistence of resumption: called each time the edge sends a session ticket (after each
     * handshake, full or resumed) with the data a later run gives back in
     * config.resume_data: the newest ticket for this tunnel's server name, with its expiry and
     * the edge's transport parameters, in a self-describing format of this library. data (len
     * bytes, never NULL, len > 0) is valid only during the call: write it out, replacing what
     * was saved before (the newest supersedes every older one). Each ticket is single use:
     * once a connection used it, the edge sends the next one and this is called again.
     *
     * The data holds a TLS resumption secret: whoever has it can resume a session as this
     * device, until it expires (at most 7 days). Store it with the same care as the device key:
     * a file of mode 0600 owned by the program's user, in the key's directory, written
     * atomically (a temporary file renamed over it); never log it or send it elsewhere.
     * Not called when config.resumption is 0. @since 1.1 */
    void (*on_resume_data)(synesis_tunnel *t, const uint8_t *data, size_t len, void *user_data);
    /** The outcome of synesis_tunnel_rotate_identity() while Connected: status 0 when the
     * connection with the new identity is Connected and has taken over (new requests go to it;
     * the old connection finishes what it carries), else why that connection failed (detail:
     * e.g. the edge refused the new certificate): the old connection and identity stay. detail
     * is never NULL ("" when none) and valid during the call. @since 1.1 */
    void (*on_identity)(synesis_tunnel *t, int status, const char *detail, void *user_data);
} synesis_tunnel_callbacks;

/**
 * Zeroes the first size bytes of cb (every callback NULL) and sets struct_size to size. Call it
 * through synesis_tunnel_callbacks_init(). NULL is a no-op. Any thread. @since 1.0
 */
SYNESIS_API void synesis_tunnel_callbacks_init_sized(synesis_tunnel_callbacks *cb, size_t size);

/** Clears *cb (synesis_tunnel_callbacks_init_sized() with its size). @since 1.0 */
#define synesis_tunnel_callbacks_init(cb) synesis_tunnel_callbacks_init_sized((cb), sizeof(*(cb)))

/**
 * Creates a tunnel on loop. Validates the configuration (URL, certificate, key, trust) and builds
 * the TLS context now (or shares that of config.share_tls_with), so that a bad certificate or key
 * is reported here, not on connect. The tunnel starts Disconnected and does nothing until
 * synesis_tunnel_connect().
 *
 * cfg and callbacks are read under the evolution rule (docs/integration.md): a smaller
 * struct_size (an older header) leaves the missing members at their defaults; a larger one is
 * accepted only when every byte the library does not know is zero.
 *
 * @param out receives the handle, owned by the caller until synesis_tunnel_free(); NULL on failure.
 * @param loop the libev loop the tunnel's watchers run on (borrowed; must outlive the tunnel).
 * @param cfg the configuration, deep-copied (may be freed after the call).
 * @param callbacks may be NULL (no callbacks); copied.
 * @param user_data handed to every callback of callbacks; see synesis_tunnel_user_data().
 * @param detail receives a message naming the cause on failure; may be NULL.
 * @param detail_len its size, including the NUL.
 * @return 0; SYNESIS_ERR_INVALID_ARGUMENT (NULL out, loop or cfg, a bad struct_size or member),
 *         SYNESIS_ERR_INVALID_URL, SYNESIS_ERR_NOMEM, or a certificate, key or trust error of
 *         synesis_identity_check().
 * Thread rule: the thread that runs loop. @since 1.0
 */
SYNESIS_API int synesis_tunnel_new(synesis_tunnel **out, struct ev_loop *loop,
                                   const synesis_tunnel_config *cfg,
                                   const synesis_tunnel_callbacks *callbacks, void *user_data,
                                   char *detail, size_t detail_len);

/**
 * Starts connecting: Disconnected or Failed -> Connecting. Resolution, socket and handshake then
 * proceed on the loop; the outcome arrives as a state change (Connected, or Failed with an error
 * code such as SYNESIS_ERR_PEER_UNTRUSTED or SYNESIS_ERR_HANDSHAKE_TIMEOUT).
 * @return 0, SYNESIS_ERR_INVALID_ARGUMENT (NULL t), or SYNESIS_ERR_INVALID_STATE in any other
 *         state.
 * Thread rule: loop thread only. @since 1.0
 */
SYNESIS_API int synesis_tunnel_connect(synesis_tunnel *t);

/**
 * Closes gracefully (CONNECTION_CLOSE with application error 0, reason "client disconnect") and
 * ends in Disconnected at once; never reconnects. The connection lingers in the background for
 * at most config.close_linger seconds, until what it sent is acknowledged and the ACK of what
 * it received has gone out, and only then sends its CONNECTION_CLOSE (see close_linger). From
 * Connecting or Reconnecting it abandons the attempt and stops the timers.
 * @return 0, SYNESIS_ERR_INVALID_ARGUMENT (NULL t), or SYNESIS_ERR_INVALID_STATE when already
 *         Disconnected or Failed.
 * Thread rule: loop thread only. @since 1.0
 */
SYNESIS_API int synesis_tunnel_disconnect(synesis_tunnel *t);

/**
 * Drains, then disconnects (the device's half of a graceful drain, e.g. on SIGTERM). From now on
 * the tunnel takes nothing new: synesis_tunnel_request(), its _nocopy variant and
 * synesis_tunnel_open_stream() fail at once with SYNESIS_ERR_DRAINING. What it took already,
 * requests in flight or waiting for a stream and streams open or opening, goes on; once the last
 * has ended, the tunnel disconnects exactly as synesis_tunnel_disconnect() (the connection
 * lingers until the last ACK is out) and the state callback reports Disconnected: that is the
 * signal that the drain is done. After grace seconds it disconnects anyway: what is still in
 * flight then ends with SYNESIS_ERR_DRAINING. From Connecting or Reconnecting (nothing is in
 * flight on a connection) it disconnects at once. If the connection is lost during the drain, the
 * tunnel does not reconnect: it disconnects. A second call while draining sets the grace period
 * anew (from now). synesis_tunnel_connect() or synesis_tunnel_disconnect() ends the drain.
 * @param t the tunnel.
 * @param grace the longest wait in seconds, 0 to one year (0: disconnect at the next loop
 *        iteration, after the requests that complete in it).
 * @return 0; SYNESIS_ERR_INVALID_ARGUMENT (NULL t, grace out of range);
 *         SYNESIS_ERR_INVALID_STATE when Disconnected or Failed.
 * Thread rule: loop thread only. @since 1.1
 */
SYNESIS_API int synesis_tunnel_drain(synesis_tunnel *t, double grace);

/**
 * A device identity for synesis_tunnel_rotate_identity() (caller-filled: start from
 * synesis_identity_source_init()). The same fields, with the same rules, as the identity of
 * synesis_tunnel_config: paths (key_path may be an OSSL_STORE URI) or in-memory PEM, which takes
 * precedence. Members are only ever appended. @since 1.1
 */
typedef struct synesis_identity_source {
    /** Set by synesis_identity_source_init(): the size of the struct the application was built
     * with. @since 1.1 */
    size_t struct_size;
    const char *cert_path;      /**< certificate chain, PEM, leaf first; default NULL @since 1.1 */
    const char *key_path;       /**< the private key: a path or URI; default NULL @since 1.1 */
    const char *cert_pem;       /**< in-memory PEM chain; default NULL @since 1.1 */
    size_t cert_pem_len;        /**< its length; 0 = NUL-terminated @since 1.1 */
    const char *key_pem;        /**< in-memory PEM key; default NULL @since 1.1 */
    size_t key_pem_len;         /**< its length; 0 = NUL-terminated @since 1.1 */
    const char *key_passphrase; /**< default NULL @since 1.1 */
} synesis_identity_source;

/**
 * Zeroes the first size bytes of src and sets struct_size to size. Call it through
 * synesis_identity_source_init(). NULL is a no-op. Any thread. @since 1.1
 */
SYNESIS_API void synesis_identity_source_init_sized(synesis_identity_source *src, size_t size);

/** Clears *src (synesis_identity_source_init_sized() with its size). @since 1.1 */
#define synesis_identity_source_init(src) synesis_identity_source_init_sized((src), sizeof(*(src)))

/**
 * Certificate rotation, make before break. Loads and checks the new certificate and key exactly as
 * synesis_tunnel_new() does (files, permissions, key match, validity, key type); a bad identity is
 * refused here with that error and changes nothing. The trust, pins and groups stay the tunnel's.
 * While Connected: a second connection is opened with the new identity (a full handshake: the
 * resumption tickets of the old identity are dropped and never offered again); until it is
 * Connected, requests and streams keep going to the old connection. Once it is, it takes over:
 * new and waiting requests and streams, and heartbeats, go to it; the old connection carries on
 * with the requests and streams it has in flight, at most grace seconds (what is still open then
 * fails with SYNESIS_ERR_CONNECTION_LOST), and then closes gracefully (close_linger). The state
 * stays Connected throughout. callbacks.on_identity reports the outcome; should the new connection
 * fail (e.g. the edge refuses the certificate), the old connection and identity stay. In any
 * other state the new identity simply replaces the old one for the next connection attempt
 * (on_identity is not called). A rotation in progress is replaced by a new call.
 * @param t the tunnel (one created with share_tls_with gets a TLS context of its own).
 * @param id the new identity; read during the call only.
 * @param grace seconds, 0 to one year, that the old connection may take to finish.
 * @return 0 (the rotation has started, or the identity is installed); an identity error
 *         (SYNESIS_ERR_FILE_NOT_FOUND, SYNESIS_ERR_KEY_MISMATCH, SYNESIS_ERR_KEY_PERMISSIONS,
 *         SYNESIS_ERR_CERT_EXPIRED, ...: see synesis_tunnel_new()); SYNESIS_ERR_INVALID_ARGUMENT
 *         (NULL t or id, grace out of range, a struct_size the library cannot read);
 *         SYNESIS_ERR_INVALID_STATE (a drain in progress);
 *         SYNESIS_ERR_NOMEM; SYNESIS_ERR_SOCKET.
 * Thread rule: loop thread only. @since 1.1
 */
SYNESIS_API int synesis_tunnel_rotate_identity(synesis_tunnel *t, const synesis_identity_source *id,
                                               double grace);

/**
 * Frees the tunnel in any state. A live connection is closed at once (no linger: the ACK still
 * owed for what it received, then CONNECTION_CLOSE), as is any connection still lingering after
 * disconnect(); no state callbacks run, every watcher is stopped, and no callback of this tunnel
 * runs afterwards. Safe from inside the tunnel's own callbacks (the release is deferred until they
 * return). Requests and streams still pending complete with SYNESIS_ERR_CANCELLED first.
 * NULL is a no-op. Thread rule: loop thread only. @since 1.0
 */
SYNESIS_API void synesis_tunnel_free(synesis_tunnel *t);

/**
 * Copies the current state into *out (Connected's latency measured now), at most size bytes,
 * and sets out->struct_size to the bytes written. Call it through synesis_tunnel_get_state().
 * out->error_detail points into the tunnel (see the lifetime rule at the top of this header).
 * @return 0, or SYNESIS_ERR_INVALID_ARGUMENT (NULL t or out, or size < sizeof(size_t)).
 * Thread rule: loop thread only. @since 1.0
 */
SYNESIS_API int synesis_tunnel_get_state_sized(const synesis_tunnel *t, synesis_tunnel_state *out,
                                               size_t size);

/** Copies the current state into *out (synesis_tunnel_get_state_sized() with its size).
 * @since 1.0 */
#define synesis_tunnel_get_state(t, out) synesis_tunnel_get_state_sized((t), (out), sizeof(*(out)))

/** Returns 1 when Connected, else 0 (also for NULL). Loop thread only. @since 1.0 */
SYNESIS_API int synesis_tunnel_is_connected(const synesis_tunnel *t);

/** Returns 1 when Connected and the latency is below config.healthy_latency_ms, else 0 (also for
 * NULL). Loop thread only. @since 1.0 */
SYNESIS_API int synesis_tunnel_is_healthy(const synesis_tunnel *t);

/**
 * Adds a state subscriber with its own user data. Subscribers run in the order they were added,
 * after callbacks.on_state.
 * @param t the tunnel.
 * @param fn the callback (required).
 * @param user_data handed to fn.
 * @param id receives a handle for synesis_tunnel_unsubscribe(); may be NULL.
 * @return 0, SYNESIS_ERR_INVALID_ARGUMENT (NULL t or fn), or SYNESIS_ERR_NOMEM.
 * Thread rule: loop thread only. @since 1.0
 */
SYNESIS_API int synesis_tunnel_subscribe(synesis_tunnel *t, synesis_state_fn fn, void *user_data,
                                         uint32_t *id);

/**
 * Removes a subscriber; safe from inside a state callback.
 * @return 0, or SYNESIS_ERR_INVALID_ARGUMENT (NULL t, or an unknown id).
 * Thread rule: loop thread only. @since 1.0
 */
SYNESIS_API int synesis_tunnel_unsubscribe(synesis_tunnel *t, uint32_t id);

/** Statistics (the design's TunnelStats), library-filled by synesis_tunnel_get_stats(). Byte
 * counts are application payload (request and stream data, heartbeat frames); packet counts are
 * QUIC's, summed over every connection of the handle's life. Members are only ever appended.
 * @since 1.0 */
typedef struct synesis_tunnel_stats {
    /** Set by synesis_tunnel_get_stats(): the bytes it wrote. @since 1.0 */
    size_t struct_size;
    uint64_t bytes_sent;         /**< application bytes sent @since 1.0 */
    uint64_t bytes_received;     /**< application bytes received @since 1.0 */
    uint64_t requests_sent;      /**< requests whose stream was opened @since 1.0 */
    uint64_t requests_succeeded; /**< requests completed with status 0 @since 1.0 */
    uint64_t requests_failed;    /**< any error other than timeout and cancel @since 1.0 */
    uint64_t requests_timed_out; /**< requests ended by SYNESIS_ERR_TIMEOUT @since 1.0 */
    uint64_t requests_cancelled; /**< requests ended by SYNESIS_ERR_CANCELLED @since 1.0 */
    uint64_t streams_opened;     /**< streaming-API streams @since 1.0 */
    uint64_t heartbeats_sent;    /**< handed to QUIC (stream opened, frame queued): not delivery
                                    @since 1.0 */
    uint64_t heartbeats_failed;  /**< not sent (not connected, too large, no stream credit, or 32
                                    earlier ones still unacknowledged), or lost: the connection
                                    ended or the stream was reset first @since 1.0 */
    uint64_t last_heartbeat_sequence; /**< sequence of the last heartbeat sent @since 1.0 */
    uint32_t last_heartbeat_rtt_ms;   /**< smoothed RTT when it was sent @since 1.0 */
    uint64_t connections;             /**< handshakes completed @since 1.0 */
    uint64_t reconnects;              /**< returns to Connected from Reconnecting @since 1.0 */
    int last_error; /**< SYNESIS_ERR_* of the last connection error, 0 if none @since 1.0 */
    /** Detail of last_error; never NULL, "" when none. Points into the tunnel (see the lifetime
     * rule at the top of this header). @since 1.0 */
    const char *last_error_detail;
    double time_disconnected; /**< seconds spent in Reconnecting, in total @since 1.0 */
    double handshake_time;    /**< seconds, of the current connection (0 when none) @since 1.0 */
    uint32_t rtt_smoothed_us; /**< of the current connection (0 when none) @since 1.0 */
    uint32_t rtt_min_us;      /**< of the current connection (0 when none) @since 1.0 */
    uint32_t rtt_latest_us;   /**< of the current connection (0 when none) @since 1.0 */
    uint64_t cwnd;            /**< congestion window, bytes @since 1.0 */
    uint64_t packets_sent;    /**< QUIC packets sent @since 1.0 */
    uint64_t packets_lost;    /**< QUIC packets declared lost @since 1.0 */
    /** Heartbeats the edge acknowledged entirely (all bytes and FIN) and did not refuse;
     * heartbeats_sent = delivered + refused + lost (counted in heartbeats_failed) + in flight.
     * @since 1.0 */
    uint64_t heartbeats_delivered;
    /** Heartbeats the edge refused (STOP_SENDING/RESET_STREAM with BAD_FRAME, or a
     * heartbeat_refused report). @since 1.0 */
    uint64_t heartbeats_refused;
    /** The edge address of the current connection once its handshake has completed,
     * "192.0.2.1:443" or "[2001:db8::1]:443" ("" when there is none): which of the resolved
     * addresses, and so which IP version, the tunnel is using. Never NULL; points into the tunnel
     * (see the lifetime rule at the top of this header). @since 1.0 */
    const char *remote_address;
    /** Times a connection attempt moved on to the next resolved address (IPv4 ones
     * first, then IPv6) after a transport failure on one (refused, unreachable, or no handshake
     * within handshake_timeout), summed over the handle's life. @since 1.0 */
    uint64_t address_fallbacks;
    /** Seconds from the connection's first Initial to the device's own handshake
     * completion (its TLS Finished produced: where OpenSSL's SSL_connect() returns), of the
     * current connection (0 when none). handshake_time goes on to Connected: for a full
     * handshake, confirmed by the edge's HANDSHAKE_DONE, which follows its verdict on the
     * device certificate, one more flight later; for a resumed one, the same moment. @since 1.0
     */
    double handshake_completed_time;
    /** Connection migrations completed: the connection moved to a new local address (after
     * synesis_tunnel_network_changed() or the config.watch_network watcher) and the edge answered
     * on the new path, without a reconnect. Summed over the handle's life. @since 1.1 */
    uint64_t migrations;
    /** Migrations that failed and fell back to a reconnect: the edge had no spare connection ID,
     * the new path was not validated in time, or only another of the edge's addresses (the other
     * IP version) is routed now. @since 1.1 */
    uint64_t migrations_failed;
    /** Seconds from the network change of the last completed migration (the call, or the
     * watcher's first event) to the edge's answer on the new path (its PATH_RESPONSE: the first
     * packet acknowledged there), 0 before the first. @since 1.1 */
    double last_migration_gap;
    /** Connections whose handshake resumed a session (a ticket the edge accepted), over the
     * handle's life; connections - resumed_connections were full handshakes. @since 1.1 */
    uint64_t resumed_connections;
    /** Connections whose 0-RTT data (idempotent requests, a heartbeat) the edge accepted.
     * @since 1.1 */
    uint64_t early_data_accepted;
    /** Connections whose 0-RTT data the edge rejected (a ticket it did not find in its
     * single-use cache, e.g. after its restart): what was sent early went again in 1-RTT.
     * @since 1.1 */
    uint64_t early_data_rejected;
    /** Times a draining edge asked the device to move (CONNECTION_CLOSE with the MOVE code,
     * docs/protocol.md) and the tunnel reconnected at once, summed over the handle's life.
     * @since 1.1 */
    uint64_t edge_moves;
    /** Identity rotations completed while Connected (the new connection took over). @since 1.1
     */
    uint64_t identity_rotations;
    /** Attempts that went on over TCP after UDP failed (config.tcp_fallback_after). @since 1.2 */
    uint64_t tcp_fallbacks;
    /** Connections that moved from TCP back to UDP (a UDP probe validated). @since 1.2 */
    uint64_t udp_returns;
    /** UDP probes that were not validated (the connection stayed on TCP). @since 1.2 */
    uint64_t udp_probes_failed;
    /** QUIC packets sent over TCP and their bytes (frames' payload), over the handle's life.
     * @since 1.2 */
    uint64_t tcp_packets_sent;
    uint64_t tcp_bytes_sent; /**< see tcp_packets_sent @since 1.2 */
} synesis_tunnel_stats;

/**
 * Fills *out with the statistics, at most size bytes, and sets out->struct_size to the bytes
 * written. Call it through synesis_tunnel_get_stats(). Its strings point into the tunnel (see the
 * lifetime rule at the top of this header).
 * @return 0, or SYNESIS_ERR_INVALID_ARGUMENT (NULL t or out, or size < sizeof(size_t)).
 * Thread rule: loop thread only. @since 1.0
 */
SYNESIS_API int synesis_tunnel_get_stats_sized(const synesis_tunnel *t, synesis_tunnel_stats *out,
                                               size_t size);

/** Fills *out with the statistics (synesis_tunnel_get_stats_sized() with its size). @since 1.0 */
#define synesis_tunnel_get_stats(t, out) synesis_tunnel_get_stats_sized((t), (out), sizeof(*(out)))

/**
 * Writes the statistics and the state's name as one JSON object into buf (NUL-terminated when
 * len > 0; buf may be NULL when len is 0, to learn the length).
 * @return the length the full object needs (like snprintf), SYNESIS_ERR_INVALID_ARGUMENT (NULL t,
 *         or NULL buf with len > 0), or SYNESIS_ERR_NOMEM.
 * Thread rule: loop thread only. @since 1.0
 */
SYNESIS_API int synesis_tunnel_stats_json(const synesis_tunnel *t, char *buf, size_t len);

/**
 * Tells the tunnel that the device's network changed (an interface went down or came up, an
 * address was added or removed, the default route moved): for applications that learn of it
 * themselves (NetworkManager, connman, a modem manager). config.watch_network does the same from
 * the kernel's own notifications.
 *
 * While Connected, the call schedules a route check on the loop (it returns at once, and may be
 * made from any callback; several calls before the check runs are one). If the route to the edge
 * changed its source address or interface, the tunnel opens a new socket towards the edge, on the
 * address the route now gives (IPv4 or IPv6, as the connection already is), and migrates the
 * connection there (QUIC connection migration, RFC 9000 section 9): packets go out on the new path
 * at once while the edge's answer to a PATH_CHALLENGE validates it. Requests and streams in flight
 * continue; the state stays Connected and no state callback runs. When the route's source address
 * has not changed, nothing happens (the call is idempotent: calling it for every notification is
 * fine). If the edge does not answer on the new path in time (about three probe timeouts), the
 * tunnel falls back to a reconnect (Connected -> Reconnecting; the reconnect resumes the TLS
 * session), as it does at once when the migration cannot start. synesis_tunnel_stats counts both
 * outcomes (migrations, migrations_failed) and the last migration's gap.
 *
 * A connection keeps the edge address it was made to: when that address has no route any more
 * but another of the edge's resolved addresses has (IPv4 gone, IPv6 there), the tunnel reconnects
 * at once; with no route to any, nothing moves until the next change.
 *
 * In any other state it does nothing and returns 0: a connection attempt in progress or
 * scheduled uses the route of its own moment.
 *
 * @return 0; SYNESIS_ERR_INVALID_ARGUMENT (NULL t).
 * Thread rule: loop thread only. @since 1.1
 */
SYNESIS_API int synesis_tunnel_network_changed(synesis_tunnel *t);

/**
 * The detail string of the last error of this tunnel: never NULL, "" if none or for a NULL t.
 * Points into the tunnel, valid until synesis_tunnel_free(); its text may change when control
 * returns to the loop. Loop thread only. @since 1.0
 */
SYNESIS_API const char *synesis_tunnel_last_error(const synesis_tunnel *t);

/** The user_data given to synesis_tunnel_new() (NULL for a NULL t). Any thread that may use the
 * handle. @since 1.0 */
SYNESIS_API void *synesis_tunnel_user_data(const synesis_tunnel *t);

/**
 * Copies out the resumption data the tunnel would use next (the newest unexpired session ticket
 * for its server name, in the format of callbacks.on_resume_data), e.g. to save it when the
 * program stops rather than on every callback. It holds a TLS resumption secret: store it like
 * the device key (see callbacks.on_resume_data).
 * @param t the tunnel.
 * @param buf receives the data when len is large enough; may be NULL when len is 0 (to learn the
 *        length).
 * @param len the size of buf.
 * @return the length of the data (nothing is written unless it is at most len), 0 when the
 *         tunnel holds no ticket (none received yet, the last one used, expired, or resumption
 *         off), SYNESIS_ERR_INVALID_ARGUMENT (NULL t, or NULL buf with len > 0), or
 *         SYNESIS_ERR_NOMEM.
 * Thread rule: loop thread only. @since 1.1
 */
SYNESIS_API int synesis_tunnel_resume_data(const synesis_tunnel *t, uint8_t *buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* SYNESIS_TUNNEL_H */

/* The CloudTunnel's internals, shared by tunnel.c and the modules that extend it. */
#ifndef SYNESIS_TUNNEL_INT_H
#define SYNESIS_TUNNEL_INT_H

#include "synesis/request.h"
#include "synesis/stream.h"
#include "synesis/tunnel.h"

#include "backoff.h"
#include "protocol.h"
#include "dns.h"
#include "hold.h"
#include "internal.h"
#include "list.h"
#include "qconn.h"
#include "resume.h"
#include "tcplink.h"
#include "udp.h"
#include "url.h"

#include <ev.h>
#include <openssl/ssl.h>

/* config.max_queued_request_bytes's default: 64 MiB, the reference edge's largest request. */
#define SYN_DEFAULT_MAX_QUEUED_REQUEST_BYTES (64u * 1024 * 1024)

/* Per-stream objects of the tunnel (requests, streams) start with this: the qconn driver hands
 * stream events to the stream's user object (syn_qstream_user). */
typedef struct syn_stream_handler {
    void (*data)(void *obj, syn_qstream *s, const uint8_t *data, size_t len, int fin);
    /* stop: the peer sent STOP_SENDING (it no longer reads what we send); else RESET_STREAM. */
    void (*reset)(void *obj, syn_qstream *s, uint64_t app_code, int stop);
    void (*acked)(void *obj, syn_qstream *s);
    void (*close)(void *obj, syn_qstream *s, uint64_t app_code, int reset);
} syn_stream_handler;

typedef struct syn_tobj {
    const syn_stream_handler *h;
} syn_tobj;

/* What woke the loop for the tunnel, by cause (tests and the idle benchmark). */
typedef struct syn_tunnel_wakes {
    uint64_t rx;              /* the socket was readable */
    uint64_t rx_sent;         /* ... and packets went out in that same wake-up */
    uint64_t heartbeat;       /* the heartbeat timer fired */
    uint64_t heartbeat_early; /* heartbeats sent ahead of their timer, on another wake-up */
    uint64_t pings_recv;      /* PING frames received on the current connection */
    uint64_t buffer_timer;    /* the I/O buffers' release timer fired (buf_timer) */
    syn_qconn_wakes qc;       /* the current connection's expiry timer (zero without one) */
} syn_tunnel_wakes;

/* Room for a state's error detail (the public struct points to it). */
#define SYN_STATE_DETAIL 256

/* A transition queued during a notification, with its details. */
typedef struct syn_state_pair {
    synesis_tunnel_state s[2]; /* old, new */
    char detail[2][SYN_STATE_DETAIL];
} syn_state_pair;

typedef struct syn_subscriber {
    uint32_t id;
    synesis_state_fn fn; /* NULL once unsubscribed (compacted when no notification runs) */
    void *user_data;
} syn_subscriber;

/* Requests (request.c, the only writer): waiting for a stream, and in flight. */
typedef struct syn_requests {
    syn_list wait; /* synesis_request */
    syn_list live;
    size_t waiting;
    size_t waiting_bytes; /* the bodies we copied for them (max_queued_request_bytes) */
} syn_requests;

/* Streams (stream.c, the only writer): waiting to open, and open. */
typedef struct syn_streams {
    syn_list wait; /* synesis_stream */
    syn_list live;
} syn_streams;

/* Heartbeats and the edge's reports about them (heartbeat.c, the only writer). */
#define SYN_HB_RECENT 64
typedef struct syn_heartbeats {
    ev_timer timer;
    uint64_t sequence;
    syn_list live; /* syn_hb handed to QUIC, outcome not known yet (at most SYN_HB_MAX_LIVE) */
    struct syn_hb_recent {
        uint64_t sequence, conn;
        int64_t stream_id, timestamp_ms;
        uint32_t rtt_ms;
        size_t size;
        int state;           /* 0 = empty, 1 = delivered, 2 = refused */
    } recent[SYN_HB_RECENT]; /* the last outcomes, for reports that come after delivery */
    size_t recent_next;
    syn_list reports; /* syn_report: edge reports being received */
    char device_id[128];
    void *vitals_sampler;
    uint64_t early_attempt; /* handshake_started_ns of the attempt that sent one in 0-RTT */
    /* config.heartbeat_changed_vitals: the vitals of the newest heartbeat the edge acknowledged,
     * its sequence and its connection (stats.connections); NULL: the next one carries all. */
    void *acked_vitals; /* cJSON */
    uint64_t acked_sequence, acked_conn;
    /* keep_alive_ms as the edge acknowledged it (in a heartbeat of connection ka_conn): later
     * heartbeats of that connection leave it out while it stays the same. */
    uint64_t ka_ms, ka_conn;
    int ka_acked;
    /* syn_heartbeat_ride's guess of the ACK that ngtcp2 will make ack-eliciting: the edge's PINGs
     * answered on connection pings_conn since our last packet that elicited an ACK, and the
     * counters (syn_qconn_stats ping_recv, pkt_sent) at its last call, whose write pass answered
     * a PING or not (last_answering). */
    uint64_t pings_seen, pkts_seen, pings_conn;
    unsigned answered;
    int last_answering;
} syn_heartbeats;

/* Connection migration (migrate.c, the only writer): the migration under way and the netlink
 * watcher of config.watch_network. */
typedef struct syn_migration {
    uint64_t started_ns; /* the network change of the migration under way; 0 = none */
    int oif;             /* the interface of the route to the edge, as last seen (0: unknown) */
    int nl_fd;           /* the NETLINK_ROUTE socket while Connected, else -1 */
    ev_io nl_io;
    ev_timer debounce;
    uint64_t
        event_ns; /* the change the timer waits to act on: the call, or a burst's first event */
    int by_call;  /* ... which synesis_tunnel_network_changed() reported */
    uint64_t nl_events; /* netlink messages read (tests) */
} syn_migration;
/* Draining (drain.c, the only writer, apart from edge_qc which request.c sets through
 * syn_tunnel_edge_draining and conn_teardown clears). */
typedef struct syn_drain {
    int on;         /* synesis_tunnel_drain() in progress: nothing new is taken */
    ev_timer grace; /* the grace period */
    ev_timer soon;  /* a zero timer: is everything done? (outside the callbacks that end things) */
    const void *edge_qc; /* the edge refused a request with SYN_APP_RETRY on this connection: it
                            drains, nothing new goes on it */
} syn_drain;

/* Identity rotation (tunnel.c): the connection with the new identity while it handshakes (a
 * syn_linger of kind pending, reading its own socket), the context it replaced (kept until the
 * rotation succeeds or fails), and the old connection's grace period. */
struct syn_linger;
typedef struct syn_rotation {
    struct syn_linger *pending;
    SSL_CTX *prev_ctx;
    double grace;
} syn_rotation;

struct synesis_tunnel {
    struct ev_loop *loop;
    synesis_tunnel_config cfg; /* strings point into the owned copies below */
    /* str_: those copies (the prefix means strings only; streams are stream_, see below). */
    char *str_url, *str_server_name, *str_alpn, *str_cert, *str_key, *str_cert_pem, *str_key_pem,
        *str_pass, *str_ca, *str_ca_dir, *str_device_id, *str_disk_path, *str_groups;
    uint8_t (*pins)[32];
    synesis_tunnel_callbacks cb;
    void *user_data;

    syn_url url;
    const char *server_name; /* cfg.server_name or url.host */
    SSL_CTX *ssl_ctx;
    syn_qconn_settings qset;
    /* Session tickets and the NEW_TOKEN token for the next connection (resume.h); allocated when
     * the edge first sends either. resume_off: keep none (tests, the benchmark's full
     * handshakes). */
    syn_resume *resume;
    int resume_off;    /* !config.resumption */
    int early_off;     /* !config.early_data: no 0-RTT even where a ticket allows it */
    int resume_notify; /* a ticket arrived: callbacks.on_resume_data at the end of rio_cb */

    synesis_tunnel_state state; /* error_detail always points to state_detail */
    char state_detail[SYN_STATE_DETAIL];
#define SYN_STATE_QUEUE 16
    /* Transitions made during a notification (at most SYN_STATE_QUEUE; allocated when first
     * needed: a pair with its details is about 600 bytes). */
    syn_state_pair *queued;
    size_t nqueued, queued_cap;
    syn_subscriber *subs;
    size_t nsubs, subs_cap;
    uint32_t next_sub_id;
    int notifying;

    /* The connection attempt or live connection. */
    syn_resolver *resolver;
    syn_addr addrs[SYN_RESOLVE_MAX];
    size_t naddrs, addr_idx;
    int fd;
    syn_sockaddr local, remote;
    ev_io rio;
    syn_qconn *qc;
    /* The receive buffers (GRO slots, shared with the lingering connections): taken on the first
     * datagram, released with the connection's large send buffer when the tunnel is quiet
     * (buffers_after_read, buf_timer in tunnel.c), so an idle tunnel holds neither. */
    syn_udp_rx *rx;
    ev_timer buf_timer;
    ev_tstamp rx_used_at; /* the last read event */
    unsigned rx_run;      /* read events since the last quiet spell (capped) */
    int rx_oom;           /* the last allocation of the receive buffers failed (logged once) */
    uint64_t rx_allocs, rx_frees; /* counters for tests */
    int pending_sock_err; /* an errno from sending, acted on after reading what is waiting */
    /* Connections closing in the background after disconnect() (config.close_linger): each owns
     * its socket and read watcher; free() ends them at once. */
    syn_list lingers;    /* syn_linger */
    int linger_teardown; /* set by disconnect(): conn_teardown hands the connection to a linger */

    /* The modules' own state, each written only by its module. */
    syn_requests req;    /* request.c */
    syn_streams streams; /* stream.c */
    syn_heartbeats hb;   /* heartbeat.c */
    syn_migration mig;   /* migrate.c */
    syn_drain drain;     /* drain.c */
    syn_rotation rot;    /* tunnel.c */

    synesis_tunnel_stats stats;          /* last_error_detail and remote_address unset: see below */
    char stats_detail[SYN_STATE_DETAIL]; /* stats.last_error_detail */
    char remote_str[64];                 /* the address of the current attempt, as text */
    syn_tunnel_wakes wakes;              /* rx, rx_sent, heartbeat, heartbeat_early */
    uint64_t handshake_started_ns;
    uint64_t pkts_sent_done, pkts_lost_done; /* of connections already gone */

    syn_backoff backoff;
    ev_timer reconnect_timer;
    ev_timer stable_timer;
    int64_t outage_started_ms;

    /* QUIC over TCP (tunnel.c; tcplink.h). link: the link of the current attempt or connection
     * (NULL: UDP); on_tcp: the current attempt or connection runs over it (its path is the
     * link's), until a UDP probe validates; old_link: the link a validated probe replaced, closed
     * after SYN_TUNNEL_LINK_GRACE. udp_failures: consecutive UDP failures (tcp_fallback_after).
     * udp_timer: the UDP attempt's udp_fallback_timeout, stopped by the first datagram
     * (udp_heard). probe_*: the next UDP probe while on TCP (its delay doubles to
     * SYN_TUNNEL_PROBE_MAX), probing: a probe's path validation is under way on fd. */
    syn_tcplink *link, *old_link;
    SSL_CTX *tcp_ctx;
    char *str_proxy;
    syn_proxy proxy;
    int have_proxy;
    syn_addr *tcp_addrs; /* SYN_RESOLVE_MAX, allocated at the first fallback (2 KiB a tunnel) */
    size_t tcp_naddrs, tcp_idx;
    int on_tcp;
    uint32_t udp_failures;
    ev_timer udp_timer;
    int udp_heard;
    ev_timer probe_timer, link_grace;
    double probe_delay;
    int probing;
    uint64_t link_pkts_done, link_bytes_done;
    int udp_err; /* the UDP failure that sent this attempt to TCP (0: none) */
    char udp_detail[SYN_STATE_DETAIL];

    syn_hold hold; /* free() from a callback is deferred to the outermost frame (hold.h) */
    char last_error[SYNESIS_DETAIL_MAX];
};

/* After a UDP probe validated: how long the old link stays (late frames still arrive on it). */
#define SYN_TUNNEL_LINK_GRACE 1.0
/* The longest wait between two UDP probes while on TCP. */
#define SYN_TUNNEL_PROBE_MAX 600.0

/* Heartbeats handed to QUIC and not yet acknowledged (or lost), at most: a tick beyond is not
 * sent (SYNESIS_ERR_WOULD_BLOCK). An edge that keeps the connection up but never returns
 * flow-control credit (nor acknowledges) would otherwise make every tick hold one more frame for
 * as long as the connection lasts. */
#define SYN_HB_MAX_LIVE 32

/* Logs at level (no-op when below the configured level or no log callback). */
void syn_tunnel_log(synesis_tunnel *t, synesis_log_level level, const char *fmt, ...)
    SYNESIS_PRINTF(3, 4);

/* Modules' hooks, called by tunnel.c. */
void syn_requests_pump(synesis_tunnel *t); /* open waiting requests while credit lasts */
void syn_requests_conn_lost(synesis_tunnel *t, int err, const char *detail); /* in-flight fail */
void syn_requests_fail_waiting(synesis_tunnel *t, int err, const char *detail, int all);
void syn_streams_pump(synesis_tunnel *t);
void syn_streams_fail_all(synesis_tunnel *t, int err, const char *detail);
void syn_heartbeat_start(synesis_tunnel *t); /* on Connected */
void syn_heartbeat_stop(synesis_tunnel *t);
/* Before a write pass (a wake-up that happens anyway: the edge's PING, our keep-alive, traffic):
 * sends the heartbeat now when it is due soon (within the keep-alive interval, at most a third
 * of the heartbeat interval), so that it rides on this wake-up and serves as the
 * keep-alive; the schedule keeps its phase (heartbeat.c). */
void syn_heartbeat_ride(synesis_tunnel *t);
/* During a 0-RTT attempt (a resumed connection whose ticket allows early data): sends this
 * attempt's heartbeat now, in 0-RTT, once; the schedule then starts one interval after it at
 * Connected instead of at once. A heartbeat is harmless if replayed (the edge's single-use tickets
 * stop replays to it anyway). */
void syn_heartbeat_early(synesis_tunnel *t);
void syn_heartbeat_free(synesis_tunnel *t);
/* Connection qc (NULL: any) ended: its heartbeats in flight are lost (on_heartbeat_result runs). */
void syn_heartbeat_conn_lost(synesis_tunnel *t, const syn_qconn *qc, const char *detail);
/* Drops the reports being received on qc (NULL: any). */
void syn_reports_drop(synesis_tunnel *t, const syn_qconn *qc);
/* Edge reports being received now (each holds a buffer of SYN_FRAME_HEADER + SYN_REPORT_MAX). */
size_t syn_reports_count(const synesis_tunnel *t);
/* The edge opened a stream (qconn stream_open op): a report on a unidirectional one. */
int syn_report_open(synesis_tunnel *t, syn_qstream *s);
int syn_heartbeat_init(synesis_tunnel *t, char *detail);
/* The tunnel's one pair of frame helpers (tunnel.c and the modules alike): code of ours that calls
 * the application brackets the call with these, so that synesis_tunnel_free() from inside the
 * callback is deferred to the outermost frame (hold.h); syn_tunnel_leave returns 1 if the tunnel
 * was freed (then t must not be touched). "Enter" here is entering the tunnel's code, not a state:
 * states are entered by set_state() in tunnel.c. The QUIC driver has its own pair (enter/leave
 * in qconn.c), which also runs the driver's deferred work. */
void syn_tunnel_enter(synesis_tunnel *t);
int syn_tunnel_leave(synesis_tunnel *t);
/* 1 when Connected with a live connection that can open streams. */
int syn_tunnel_ready(const synesis_tunnel *t);

/* The wake-up counts by cause; the connection's part is the current connection's. */
void syn_tunnel_get_wakes(const synesis_tunnel *t, syn_tunnel_wakes *out);
/* Quiet this long (seconds without a datagram received), a tunnel releases its receive buffers
 * and its connection's large send buffer (at once at the end of a short exchange that follows
 * such a spell); the next datagram, or write pass that needs it, takes them again. */
#define SYN_TUNNEL_BUFFER_IDLE 0.25
/* A run of at most this many read events after a quiet spell is a short exchange: the buffers go
 * at its end (see buffers_after_read in tunnel.c). */
#define SYN_TUNNEL_SHORT_RUN 4

/* Tests: whether the request's stream was opened in 0-RTT. */
int syn_request_sent_early(const synesis_request *r);

/* Connection migration (migrate.c). init: once, in synesis_tunnel_new(); conn_up: on Connected
 * (starts the watcher); conn_down: when the connection ends (stops it, forgets the migration under
 * way). path_validated is the connection's qconn op. */
void syn_migration_init(synesis_tunnel *t);
void syn_migration_conn_up(synesis_tunnel *t);
void syn_migration_conn_down(synesis_tunnel *t);
void syn_migration_path_validated(syn_qconn *qc, int result, const syn_sockaddr *remote,
                                  const syn_sockaddr *old_remote);
/* While Connected over TCP in AUTO (tunnel.c): the next UDP probe at once, its backed-off delay
 * back to config.udp_reprobe_interval (a network change: the new network may let UDP through).
 * Returns 1 when scheduled, 0 when not on TCP in AUTO, probes are off, or one is under way. */
int syn_tunnel_probe_soon(synesis_tunnel *t);
/* Draining (drain.c). syn_drain_note: a request or stream ended (or the state changed): a drain
 * looks again, soon, whether it is done. */
void syn_drain_init(synesis_tunnel *t);
void syn_drain_stop(synesis_tunnel *t);
void syn_drain_note(synesis_tunnel *t);
/* The edge drains the current connection (it refused a request with SYN_APP_RETRY): requests and
 * streams wait for the next one, which its CONNECTION_CLOSE (SYN_APP_MOVE) starts at once. */
void syn_tunnel_edge_draining(synesis_tunnel *t);
int syn_tunnel_edge_is_draining(const synesis_tunnel *t);
/* The edge moved us (CONNECTION_CLOSE SYN_APP_MOVE): requests in flight that are idempotent and
 * still have their body go back to the queue, the others fail with SYNESIS_ERR_EDGE_DRAINED;
 * every waiting request waits for the next connection. */
void syn_requests_moved(synesis_tunnel *t);
/* The connection qc (not the current one: an old identity's, after a rotation) ended: the
 * requests and streams still on it end with err. */
void syn_requests_conn_lost_on(synesis_tunnel *t, const syn_qconn *qc, int err, const char *detail);
void syn_streams_fail_on(synesis_tunnel *t, const syn_qconn *qc, int err, const char *detail);
/* synesis_tunnel_disconnect() with the error that requests and streams in flight end with. */
int syn_tunnel_disconnect_err(synesis_tunnel *t, int err, const char *detail);

/* Tests only: asks the state machine for a transition to kind (with attempt for Reconnecting),
 * exactly as the tunnel's own code does; returns 0 or SYNESIS_ERR_INVALID_STATE. */
int syn_tunnel_try_transition(synesis_tunnel *t, synesis_state_kind kind, uint32_t attempt);

#endif /* SYNESIS_TUNNEL_INT_H */

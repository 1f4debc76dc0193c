/*
 * The QUIC connection driver shared by the tunnel (client) and the reference edge (server): one
 * ngtcp2 connection with its OpenSSL session, its expiry timer (a libev timer, and a timerfd for
 * waits under a millisecond, which libev's epoll backend would stretch to one), stream send buffers
 * kept until acknowledged, the batched write loop with pacing, and error mapping. It owns no
 * socket: the owner feeds received datagrams in and gives it the fd to send on.
 *
 * Re-entrancy: the driver never calls its owner from inside an ngtcp2 callback for anything that
 * could close the connection; owner notifications that can lead to a close or a free run after
 * ngtcp2 returns. syn_qconn_close() and syn_qconn_free() are safe from inside any owner callback:
 * they are deferred until the driver unwinds.
 */
#ifndef SYNESIS_QCONN_H
#define SYNESIS_QCONN_H

#include "hold.h"
#include "internal.h"
#include "list.h"
#include "protocol.h"
#include "udp.h"

#include <ev.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_ossl.h>
#include <openssl/ssl.h>

/* Length of the connection IDs the edge issues (it routes datagrams by them: src/edge/cidmap.h).
 * Every short-header packet the device sends carries one, and ngtcp2 pads every packet the edge
 * sends to 22 bytes more than it (RFC 9000 10.3: room for a smaller stateless reset), so each byte
 * here is a byte in every idle datagram both ways. 8 random bytes are enough to route by: a new
 * ID meets one of ten million others already issued with a probability of about 2^-41, and then
 * only that ID's packets go astray (they fail to decrypt in the other connection and are dropped;
 * the edge keeps the first mapping). A device's own first Initial DCID is 8 bytes too. (18, the
 * length of ngtcp2's example server, cost 10 bytes per datagram: 10 KB of an idle default
 * tunnel's 105 an hour.) */
#define SYN_SV_SCIDLEN 8

/* The largest QUIC variable-length integer (RFC 9000 16): 2^62 - 1. */
#define SYN_QUIC_MAX_VARINT NGTCP2_MAX_VARINT

typedef struct syn_qconn syn_qconn;
/* A stream of a connection: opaque to its owner, which reads it through the syn_qstream_ calls
 * below and keeps its own per-stream object in it (syn_qstream_set_user). */
typedef struct syn_qstream syn_qstream;

/* Called when the bytes of a no-copy write are acknowledged or abandoned. */
typedef void (*syn_release_fn)(const void *data, size_t len, void *user_data);

typedef struct syn_qconn_ops {
    /* The handshake completed (client: the edge's certificate verified; server: the client's). */
    void (*handshake_done)(syn_qconn *qc);
    /* The peer opened a stream. Set its user object (syn_qstream_set_user) as needed; return 0, or
     * non-zero to reset it. */
    int (*stream_open)(syn_qconn *qc, syn_qstream *s);
    /* Stream data in order; fin set on the last call. Called from inside ngtcp2: the owner may
     * queue writes, shut the stream down and consume, but must close/free only via the deferred
     * calls. */
    void (*stream_data)(syn_qconn *qc, syn_qstream *s, const uint8_t *data, size_t len, int fin);
    /* The peer reset its sending side (app_code) or asked us to stop sending (stop = 1). */
    void (*stream_reset)(syn_qconn *qc, syn_qstream *s, uint64_t app_code, int stop);
    /* Sent data was acknowledged (syn_qstream_acked moved): room in the send buffer. */
    void (*stream_acked)(syn_qconn *qc, syn_qstream *s);
    /* The peer raised the stream's flow-control limit (MAX_STREAM_DATA): more may be sent. */
    void (*stream_credit)(syn_qconn *qc, syn_qstream *s);
    /* The stream is closed in both directions and will be freed after this returns. */
    void (*stream_close)(syn_qconn *qc, syn_qstream *s, uint64_t app_code, int reset);
    /* The peer raised our stream limits: streams may be opened again. */
    void (*streams_available)(syn_qconn *qc);
    /* Runs before each write pass, outside any ngtcp2 call: the place to open queued streams. */
    void (*before_write)(syn_qconn *qc);
    /* The connection is over (err < 0, or 0 after our own close). Runs after ngtcp2 returned; the
     * owner typically frees the connection here. */
    void (*closed)(syn_qconn *qc, int err, const char *detail);
    /* Client: sending failed with errno err (an ICMP error on the connected socket). The owner
     * decides when to end the connection: datagrams already waiting (say, the peer's
     * CONNECTION_CLOSE) should be read first. Without this op the connection ends at once. */
    void (*send_error)(syn_qconn *qc, int err);
    /* A new connection ID was issued by us (server routing). */
    void (*cid_added)(syn_qconn *qc, const ngtcp2_cid *cid);
    /* One of our connection IDs is gone for good (server routing): the peer retired it (ngtcp2
     * waits a PTO after RETIRE_CONNECTION_ID for reordered packets) or ngtcp2 dropped it. The
     * owner stops routing datagrams with it. Called from inside ngtcp2: must not close or free. */
    void (*cid_removed)(syn_qconn *qc, const ngtcp2_cid *cid);
    /* Logging at the given level. */
    void (*log)(syn_qconn *qc, synesis_log_level level, const char *msg);
    /* Client: the edge sent a session ticket (sess, resumable), with the edge's transport
     * parameters as ngtcp2_conn_encode_0rtt_transport_params() writes them (tp, tplen; what a
     * 0-RTT attempt must remember). Return 1 to keep sess (the owner then owns that reference,
     * SSL_SESSION_free), 0 to let it go. Called from inside ngtcp2 (while a packet is read): must
     * not close or free. */
    int (*new_session)(syn_qconn *qc, SSL_SESSION *sess, const uint8_t *tp, size_t tplen);
    /* Client: the edge sent an address-validation token (NEW_TOKEN frame) for later connections.
     * Called from inside ngtcp2: copy it; must not close or free. */
    void (*new_token)(syn_qconn *qc, const uint8_t *token, size_t len);
    /* A path validation ended (RFC 9000 8.2): the client's after a migration (syn_qconn_migrate),
     * the server's when a client moved to a new address (migration or NAT rebinding). result 1:
     * the peer answered the PATH_CHALLENGE on remote; 0: it did not in time (the connection then
     * falls back to old_remote, its previous path; NULL when there is none); -1: the validation
     * was aborted (a newer migration replaced it). Called from inside ngtcp2: must not close or
     * free (syn_qconn_abort() is deferred and allowed). */
    void (*path_validated)(syn_qconn *qc, int result, const syn_sockaddr *remote,
                           const syn_sockaddr *old_remote);
} syn_qconn_ops;

typedef struct syn_qconn_settings {
    uint64_t idle_timeout_ns;
    uint64_t handshake_timeout_ns;
    uint64_t keep_alive_ns; /* 0 = off */
    size_t max_udp_payload; /* cap, 0 = 1452 */
    int pmtud;
    uint64_t max_streams_bidi; /* streams the peer may open */
    uint64_t max_streams_uni;
    uint64_t stream_window; /* per-stream receive window */
    uint64_t conn_window;   /* connection receive window */
    int trace;              /* forward ngtcp2's own log to ops->log at TRACE */
    int cc;                 /* synesis_congestion_control value: 0 CUBIC, 1 BBR, 2 Reno */
    /* ACK every ack-eliciting packet in the write pass after it (ngtcp2's ack_thresh 1) instead
     * of after two, or after the ACK delay: the ACK of a lone packet then leaves in the wake-up
     * that received it, not in a second one when the delay timer fires. */
    int ack_at_once;
    /* Client: an address-validation token to send in the first Initial (NULL = none; ngtcp2 copies
     * it). Tests use it to present forged Retry tokens. */
    const uint8_t *token;
    size_t tokenlen;
    /* Client: a TLS session (ticket) to resume, NULL = a full handshake. The connection takes a
     * reference of its own. The caller answers for its being meant for this server name. */
    SSL_SESSION *session;
    /* Client: with session, attempt 0-RTT when the ticket allows early data (QUIC tickets carry
     * max_early_data 0xffffffff) and early_tp holds the edge's transport parameters as
     * ops->new_session gave them (ngtcp2 checks them against what the edge sends later). Only
     * streams opened with syn_qconn_open_stream_early go in 0-RTT. Server: accept early data
     * (the context must provide anti-replay: tls.c's single-use tickets). */
    int early_data;
    const uint8_t *early_tp;
    size_t early_tplen;
    /* Server: an address advertised as the preferred_address transport parameter (RFC 9000
     * 9.6), with a connection ID of its own (announced through ops->cid_added). NULL = none.
     * Tests use it to offer a client a migration it should not take. */
    const syn_sockaddr *preferred_addr;
} syn_qconn_settings;

void syn_qconn_settings_default(syn_qconn_settings *st);

/* Creates a client connection on fd (connected to remote). server_name/alpn go to TLS setup. */
int syn_qconn_client_new(syn_qconn **out, struct ev_loop *loop, int fd, const syn_sockaddr *local,
                         const syn_sockaddr *remote, SSL_CTX *ctx, const char *server_name,
                         const char *alpn, const syn_qconn_settings *st, const syn_qconn_ops *ops,
                         void *owner, char *detail);

/* Creates a server connection for a client Initial (hd from ngtcp2_accept) on the shared fd.
 * A token left in hd without retry_odcid is a verified NEW_TOKEN token (the address counts as
 * validated). retry_odcid is NULL, or, when hd carries a verified Retry token, the original DCID
 * recovered from the token: the transport parameters then name it as
 * original_destination_connection_id and hd->dcid (the SCID of our Retry) as
 * retry_source_connection_id, as RFC 9000 7.3 requires. The first datagram must then be fed with
 * syn_qconn_recv(). */
int syn_qconn_server_new(syn_qconn **out, struct ev_loop *loop, int fd, const syn_sockaddr *local,
                         const syn_sockaddr *remote, const ngtcp2_pkt_hd *hd,
                         const ngtcp2_cid *retry_odcid, SSL_CTX *ctx, const syn_qconn_settings *st,
                         const syn_qconn_ops *ops, void *owner, char *detail);

/* Feeds one received datagram. It sends nothing and does not re-arm the timer: the owner must
 * call syn_qconn_flush() after the batch. */
void syn_qconn_recv(syn_qconn *qc, const syn_sockaddr *local, const syn_sockaddr *remote,
                    uint8_t ecn, const uint8_t *data, size_t len);

/* Runs the write loop now (sends what congestion control and pacing allow, re-arms timers). */
void syn_qconn_flush(syn_qconn *qc);

/* Asks for a flush before the loop next blocks (batches many writes into one send). */
void syn_qconn_schedule(syn_qconn *qc);

/* Closes: CONNECTION_CLOSE with an application error code and reason, then ops->closed(0).
 * Deferred when called from inside the driver. The close is preceded by the ACK still owed for
 * what we received (a final write pass, see flush_pending_ack in qconn.c), so the peer learns its
 * last data arrived even when we close right after it. */
void syn_qconn_close(syn_qconn *qc, uint64_t app_code, const char *reason);
/* 1 when the peer ended the connection with an application CONNECTION_CLOSE (its code in *code),
 * else 0. Valid from the closed op on. */
int syn_qconn_peer_app_close(const syn_qconn *qc, uint64_t *code);
/* 1 while a bidirectional stream of qc still has a user object (a request or stream of the
 * tunnel), else 0. */
int syn_qconn_bidi_in_use(const syn_qconn *qc);

/* Closes gracefully: stops opening streams but keeps the connection running (the owner keeps
 * feeding datagrams) until everything we sent (stream data and FINs) is acknowledged and nothing is
 * left to send, waits for the ACK delay so the ACK of what we received goes out, then sends
 * CONNECTION_CLOSE (preceded by any ACK still owed) and ends with ops->closed(0). Bounded by
 * max_linger seconds; max_linger <= 0, or a connection whose handshake is not done, closes at once
 * like syn_qconn_close(). A syn_qconn_close() or syn_qconn_free() during the linger ends it at
 * once. The owner may hand the connection to another owner for the linger (syn_qconn_set_owner).
 */
void syn_qconn_close_graceful(syn_qconn *qc, uint64_t app_code, const char *reason,
                              double max_linger);

/* Replaces the ops and owner (for a connection that lingers after its first owner let go). */
void syn_qconn_set_owner(syn_qconn *qc, const syn_qconn_ops *ops, void *owner);

/* Ends the connection as if the peer vanished (no packet sent), with err: used for socket errors.
 * Deferred like close. */
void syn_qconn_abort(syn_qconn *qc, int err, const char *detail);

/* Releases everything (streams' buffers included, via their release callbacks); no ops callback
 * runs. Deferred when called from inside the driver. */
void syn_qconn_free(syn_qconn *qc);

void *syn_qconn_owner(const syn_qconn *qc);
/* The connection closes its fd when it is finally freed: a close deferred past the owner's
 * teardown still has a socket to send its CONNECTION_CLOSE on. */
void syn_qconn_take_fd(syn_qconn *qc);
SSL *syn_qconn_ssl(const syn_qconn *qc);
int syn_qconn_handshake_completed(const syn_qconn *qc);
/* 1 once the TLS handshake completed as a resumption (a ticket's PSK accepted), else 0. */
int syn_qconn_resumed(const syn_qconn *qc);
/* 1 if the client offered a session ticket in its ClientHello. */
int syn_qconn_offered_session(const syn_qconn *qc);
/* Server: sends an address-validation token in a NEW_TOKEN frame (after the handshake). */
int syn_qconn_submit_new_token(syn_qconn *qc, const uint8_t *token, size_t len);
/* syn_now_ns() when this side's TLS handshake completed (a client's Finished produced, before
 * the server's HANDSHAKE_DONE), or 0 before. */
uint64_t syn_qconn_tls_completed_ns(const syn_qconn *qc);
/* The unidirectional streams the peer let us open in its transport parameters (0 before it sent
 * them). */
uint64_t syn_qconn_peer_max_streams_uni(const syn_qconn *qc);
/* Sends a PING after ns of quiet (no packet sent or received); 0 = never. Takes effect at the
 * next write pass. */
/* The keep-alive in force (0 = off): the settings' until the handshake completes, then at most
 * nine tenths of the edge's idle timeout. */
uint64_t syn_qconn_keep_alive_ns(const syn_qconn *qc);
void syn_qconn_set_keep_alive(syn_qconn *qc, uint64_t ns);

/* What woke the loop for this connection, by cause: the figures behind the idle cost (tests and
 * the idle benchmark read them). An expiry is classified by what its write pass sent. */
typedef struct syn_qconn_wakes {
    uint64_t expiry;      /* ngtcp2's expiry timer fired (the libev timer or the timerfd) */
    uint64_t expiry_idle; /* ... and nothing was sent: a wake-up for nothing */
    uint64_t expiry_ack;  /* ... and only ACKs (packets that elicit none): a delayed ACK */
    uint64_t expiry_send; /* ... and an ack-eliciting packet: a keep-alive PING, a probe, or data
                             that pacing had held back */
    uint64_t fine_stale;  /* the timerfd fired for a deadline no longer wanted */
    uint64_t packets;     /* packets sent, all causes */
} syn_qconn_wakes;
void syn_qconn_get_wakes(const syn_qconn *qc, syn_qconn_wakes *out);

/* The ngtcp2 connection (NULL once gone): for the edge (is the handshake complete when a stream
 * opens: 0-RTT) and the fuzzers. */
ngtcp2_conn *syn_qconn_ngtcp2(const syn_qconn *qc);
/* Smoothed RTT in milliseconds (0 before the first sample). */
uint32_t syn_qconn_srtt_ms(const syn_qconn *qc);
/* ngtcp2's connection info (RTTs, cwnd, packet counters), for the edge and the tests. */
void syn_qconn_info(const syn_qconn *qc, ngtcp2_conn_info *out);
/* The figures of a connection its owner reads (from ngtcp2's connection info): so that the tunnel
 * needs no ngtcp2 type. Times in nanoseconds. */
typedef struct syn_qconn_stats {
    uint64_t latest_rtt, min_rtt, smoothed_rtt; /* min_rtt is UINT64_MAX before the first sample */
    uint64_t cwnd;                              /* congestion window, bytes */
    uint64_t bytes_in_flight;                   /* sent, neither acknowledged nor declared lost */
    uint64_t pkt_sent, pkt_lost, ping_recv;     /* packets sent and lost, PING frames received */
} syn_qconn_stats;
void syn_qconn_get_stats(const syn_qconn *qc, syn_qconn_stats *out);
/* Server side: the CONNECTION_CLOSE packet this connection sent (the first one; the payload of a
 * UDP datagram, ready to resend as is), or NULL with *len 0 if none was sent. Valid until
 * syn_qconn_free(); readable from ops->closed, to keep a closing period (RFC 9000 10.2.1). */
const uint8_t *syn_qconn_close_packet(const syn_qconn *qc, size_t *len);
/* 1 if the peer closed the connection (ngtcp2 is in its draining period). */
int syn_qconn_draining(const syn_qconn *qc);
/* The current probe timeout (RFC 9002 6.2.1), in nanoseconds. */
uint64_t syn_qconn_pto_ns(const syn_qconn *qc);
/* The largest UDP payload path MTU discovery has confirmed on the current path (1200 before any
 * probe passed); the connectivity check's "mtu" item. */
size_t syn_qconn_path_max_udp_payload(const syn_qconn *qc);
/* Remote address (the path currently in use). */
const syn_sockaddr *syn_qconn_remote(const syn_qconn *qc);
/* For the edge: update the send fd/path when packets arrive from a new address (migration). */
void syn_qconn_set_remote(syn_qconn *qc, const syn_sockaddr *remote);
/* Client: moves the connection to a new socket fd (bound to local, connected to the same remote)
 * with an immediate migration (ngtcp2_conn_initiate_immediate_migration: packets go out on the new
 * path at once, the path is validated meanwhile). The caller keeps owning both fds and must now
 * feed datagrams received on fd (late ones from the old socket may still be fed). Returns 0,
 * SYNESIS_ERR_WOULD_BLOCK when the edge has not yet issued a spare connection ID (try again
 * later), SYNESIS_ERR_INVALID_STATE before the handshake is confirmed, or SYNESIS_ERR_QUIC. Used by
 * the tests and benchmarks that play a migrating device. */
int syn_qconn_migrate(syn_qconn *qc, int fd, const syn_sockaddr *local);

/* QUIC over TCP (tcplink.h). A connection may have one link besides its UDP socket: a packet
 * ngtcp2 writes for the link's path (local and remote = the TCP connection's addresses) goes to
 * the link as one frame, any other to the UDP socket (fd; -1: none, such packets are dropped).
 * Frames received on the link are fed with syn_qconn_recv() with the link's addresses as the path
 * (ECN not-ECT). set_link(NULL) detaches it (the link is going away; the connection lives on and
 * may come back on another path). */
struct syn_tcplink;
void syn_qconn_set_link(syn_qconn *qc, struct syn_tcplink *l);
struct syn_tcplink *syn_qconn_link(const syn_qconn *qc);
/* The link's writable op: the write loop, stopped by a full link queue, goes on. */
void syn_qconn_link_writable(syn_qconn *qc);
/* Client: forgets the UDP socket (a failed probe's, which the owner closes): packets for UDP paths
 * are dropped from now on. */
void syn_qconn_drop_fd(syn_qconn *qc);
/* Packets and bytes this connection sent on links. */
void syn_qconn_link_counters(const syn_qconn *qc, uint64_t *pkts, uint64_t *bytes);
/* Client: validates a new path (UDP socket fd bound to local, to remote) while the current one
 * (a link) keeps carrying traffic (ngtcp2_conn_initiate_migration: the connection switches to it
 * once the PATH_CHALLENGE is answered; ops->path_validated says how it ended). The caller keeps
 * owning fd and feeds what arrives on it. Returns 0, SYNESIS_ERR_WOULD_BLOCK (no spare connection
 * ID yet), SYNESIS_ERR_INVALID_STATE (handshake not confirmed), or SYNESIS_ERR_QUIC. */
int syn_qconn_probe_path(syn_qconn *qc, int fd, const syn_sockaddr *local,
                         const syn_sockaddr *remote);

/* Server, tests only (a hostile edge that changes its address, which QUIC does not allow a
 * server): sends from fd from now on, and closes fd when the connection is finally freed. */
void syn_qconn_server_send_from(syn_qconn *qc, int fd);
/* Releases the large send buffer of the batched writes (see syn_udp_tx) when nothing is queued:
 * for an owner whose connection has gone quiet; the next write pass that needs it allocates it
 * again. Returns 1 when no large buffer is held afterwards. */
int syn_qconn_trim(syn_qconn *qc);

/* Streams. open returns SYNESIS_ERR_WOULD_BLOCK when the peer's stream limit is reached. */
int syn_qconn_open_stream(syn_qconn *qc, int bidi, void *user, syn_qstream **out);
/* Client, during a 0-RTT attempt (syn_qconn_early() is 1): opens a stream whose data goes in
 * 0-RTT packets (the stream limits are those the edge gave the ticket's connection). Only for
 * data that may be replayed without harm: the edge's anti-replay refuses a reused ticket, but a
 * 0-RTT flight may still be delivered to a server more than once (RFC 9001 9.2). If the edge
 * rejects the early data, the stream is opened again in 1-RTT (its ID may change) and its data
 * sent again from the start: the owner sees nothing of it (a stream its owner has let go of,
 * s->user NULL, is dropped instead). SYNESIS_ERR_INVALID_STATE when no 0-RTT
 * is possible (then use syn_qconn_open_stream once the handshake is done). */
int syn_qconn_open_stream_early(syn_qconn *qc, int bidi, void *user, syn_qstream **out);
/* Client: 1 while 0-RTT is under way (attempted; handshake not completed yet). */
int syn_qconn_early(const syn_qconn *qc);
/* Client: 0-RTT outcome once the handshake completed: 1 accepted, -1 rejected (the early streams
 * were sent again in 1-RTT), 0 not attempted. Server: 1 if early data was accepted. */
int syn_qconn_early_result(const syn_qconn *qc);
/* Queues a copy of data (and FIN when fin). */
int syn_qstream_write(syn_qstream *s, const void *data, size_t len, int fin);
/* Queues data without copying; release runs once it is acknowledged or abandoned. */
int syn_qstream_write_nocopy(syn_qstream *s, const void *data, size_t len, syn_release_fn release,
                             void *release_ud, int fin);
/* Bytes queued and not yet acknowledged. */
uint64_t syn_qstream_unacked(const syn_qstream *s);
/* Bytes queued and not yet sent. */
uint64_t syn_qstream_unsent(const syn_qstream *s);
/* Bytes acknowledged: everything below this offset (stream_acked moves it). */
uint64_t syn_qstream_acked(const syn_qstream *s);
/* 1 once the owner's FIN is queued. */
int syn_qstream_fin_queued(const syn_qstream *s);
/* The QUIC stream ID; 1 for a bidirectional stream. */
int64_t syn_qstream_id(const syn_qstream *s);
int syn_qstream_bidi(const syn_qstream *s);
/* The connection the stream belongs to. */
syn_qconn *syn_qstream_conn(const syn_qstream *s);
/* The owner's per-stream object (NULL: none, or the owner let go: events are then not delivered
 * to it). */
void *syn_qstream_user(const syn_qstream *s);
void syn_qstream_set_user(syn_qstream *s, void *user);
/* On (the default): flow-control credit returns as soon as data is delivered. Off: the owner
 * returns it with syn_qstream_consume as it consumes. */
void syn_qstream_set_auto_consume(syn_qstream *s, int on);
/* Returns flow-control credit for n consumed bytes (when auto_consume is off); on a closed stream
 * (from stream_close), the connection's share. */
void syn_qstream_consume(syn_qstream *s, size_t n);
/* Returns stream-level credit only (the connection's share is kept, see syn_qconn_consume). */
void syn_qstream_consume_stream(syn_qstream *s, size_t n);
/* Returns connection-level credit only. */
void syn_qconn_consume(syn_qconn *qc, size_t n);
/* Bytes the peer's flow control lets us send on s beyond what is sent already. */
uint64_t syn_qstream_send_credit(const syn_qstream *s);
/* Application error codes (RESET_STREAM, STOP_SENDING, CONNECTION_CLOSE) are QUIC varints: at
 * most SYN_APP_CODE_MAX. The calls below replace a larger one with SYN_APP_INTERNAL (and log):
 * entry points from outside must refuse such codes before they get here. */
/* Resets our sending side and asks the peer to stop (STOP_SENDING), with app_code. */
void syn_qstream_shutdown(syn_qstream *s, uint64_t app_code);
/* Asks the peer to stop sending (STOP_SENDING) only. */
void syn_qstream_stop_reading(syn_qstream *s, uint64_t app_code);

#endif /* SYNESIS_QCONN_H */

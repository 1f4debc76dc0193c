/* UDP sockets and batched datagram I/O shared by the tunnel and the edge. */
#ifndef SYNESIS_UDP_H
#define SYNESIS_UDP_H

#include "dns.h"
#include "internal.h"

#include <sys/socket.h>

/* Largest datagram we ever send or accept. */
#define SYN_UDP_MAX_PAYLOAD 1500

/* An address with its length (the resolver's type). */
typedef syn_addr syn_sockaddr;

/* Opens a non-blocking, close-on-exec UDP socket of addr's family. With connect_to set, binds an
 * ephemeral port and connects to it (client); with bind_to set, binds it (server; no SO_REUSEADDR:
 * no other local socket may share the port).
 * Enables ECN reception, UDP GRO where the kernel has it (see syn_udp_recv) and, with pmtud, sets
 * DF (IP_PMTUDISC_PROBE) so QUIC's PMTU probes are not fragmented. local receives the bound
 * address. Returns the fd, or a negative SYNESIS_ERR_SOCKET with detail. */
int syn_udp_open(const struct sockaddr *connect_to, socklen_t connect_len,
                 const struct sockaddr *bind_to, socklen_t bind_len, int pmtud, syn_sockaddr *local,
                 char *detail);

/* Sets the socket's SO_RCVBUF and SO_SNDBUF to bytes each: SO_RCVBUFFORCE/SO_SNDBUFFORCE first
 * (they pass the net.core.rmem_max/wmem_max limits, with CAP_NET_ADMIN), the plain options when
 * those are refused (the kernel then caps the size at the limit). rcv/snd (may be NULL) receive
 * the sizes obtained as getsockopt reports them (Linux doubles the request for its bookkeeping).
 * Returns 0, or -errno when a plain option failed too. */
int syn_udp_set_buffers(int fd, size_t bytes, int *rcv, int *snd);

/* One received datagram. */
typedef struct syn_udp_dgram {
    uint8_t *data;
    size_t len;
    syn_sockaddr remote;
    uint8_t ecn;
} syn_udp_dgram;

/* Receive side. Sockets from syn_udp_open() ask for UDP GRO (where the kernel has it): the kernel
 * may then hand over a burst of datagrams of one sender as one buffer of up to 64 KiB with their
 * segment size; syn_udp_recv() splits it again. So on such a socket every message slot takes
 * SYN_UDP_RX_SLOT bytes; without GRO the same buffer makes more, datagram-sized slots. */
#define SYN_UDP_RX_BATCH                                                                           \
    16 /* messages (GRO bursts, or single datagrams) per recvmmsg(), at most                       \
        */
#define SYN_UDP_RX_SLOT 65536
#define SYN_UDP_RX_DGRAMS 64 /* datagrams handed out per syn_udp_recv() call */
/* Receive buffer sizes: the edge's (many peers, 16 slots), a device's (one peer, 2 GRO slots). */
#define SYN_UDP_RX_BYTES_SERVER (16 * SYN_UDP_RX_SLOT)
#define SYN_UDP_RX_BYTES_CLIENT (2 * SYN_UDP_RX_SLOT)
/* Upper bound of datagrams of one read burst before returning to the loop (fairness). */
#define SYN_UDP_RX_MAX_PER_EVENT 256

/* Receive buffers for batched reads, reused for every event (no per-packet allocation or copy:
 * the datagrams point into the message slots). */
typedef struct syn_udp_rx {
    syn_udp_dgram d[SYN_UDP_RX_DGRAMS];
    uint8_t *buf; /* bufsize bytes, cut into nslots slots of slot bytes for the socket in use */
    size_t bufsize, slot, nslots;
    /* The messages of the last recvmmsg() not handed out yet (a burst may hold more datagrams
     * than d[] does): msg[cur] from byte off on. */
    struct {
        size_t len, seg; /* seg: the GRO segment size (len when not coalesced) */
        syn_sockaddr remote;
        uint8_t ecn;
    } msg[SYN_UDP_RX_BATCH];
    size_t nmsg, cur, off;
    int fd;      /* the socket they came from (-1: none yet) */
    int drained; /* the last recvmmsg() found fewer messages than slots: the socket is empty */
} syn_udp_rx;

/* Allocates receive buffers of bytes (at least SYN_UDP_RX_SLOT; NULL when out of memory). The
 * buffer is not zeroed: only what arrives touches its pages. */
syn_udp_rx *syn_udp_rx_new(size_t bytes);
void syn_udp_rx_free(syn_udp_rx *rx);

/* Datagrams of the last read not handed out yet: a reader that stops at a per-event bound must
 * not stop while this holds (the socket may have nothing more to wake it up for them). */
static inline int syn_udp_rx_pending(const syn_udp_rx *rx) { return rx->cur < rx->nmsg; }

/* Is another syn_udp_recv() call worth it? Not when everything read is handed out and the last
 * read emptied the socket: that saves a recvmmsg() that would only say EAGAIN (a reader woken by
 * readiness is woken again when more arrives). */
static inline int syn_udp_rx_more(const syn_udp_rx *rx) {
    return syn_udp_rx_pending(rx) || !rx->drained;
}

/* Hands out up to SYN_UDP_RX_DGRAMS datagrams: the rest of the last read's messages first (unless
 * they came from another socket: those are dropped), then a new recvmmsg(). Returns the count (0
 * when none is waiting), or -errno on a socket error (e.g. -ECONNREFUSED after an ICMP port
 * unreachable). The datagrams stay valid until the next call. A datagram larger than
 * SYN_UDP_MAX_PAYLOAD is dropped. */
int syn_udp_recv(int fd, syn_udp_rx *rx);

/* Reads and drops up to max waiting datagrams (a reader without buffers: out of memory). Returns
 * the count, or -errno on a socket error. */
int syn_udp_discard(int fd, int max);

/* Send side: a batch of outgoing datagrams to one destination, written back to back into one
 * buffer and reused between flushes. A flush sends each run of datagrams of the same size and ECN
 * codepoint (the last of a run may be shorter) as one buffer with a UDP_SEGMENT control message
 * (UDP GSO: the kernel, or the NIC, cuts it into datagrams), at most SYN_UDP_GSO_MAX_SEGS
 * datagrams and SYN_UDP_GSO_MAX_BYTES per send, and the runs of a batch together in one
 * sendmmsg().
 *
 * The buffer: a batch starts in a small one inside the struct (SYN_UDP_TX_SMALL_DGRAMS datagrams:
 * what an ACK, a request or a keep-alive needs); a batch that outgrows it moves to a large one of
 * SYN_UDP_TX_BYTES (allocated then: bulk sending), which stays for the following batches until
 * syn_udp_tx_trim() releases it (the owner calls that once the connection is quiet). */
#define SYN_UDP_TX_BATCH 64
#define SYN_UDP_TX_BYTES (64 * 1024 + SYN_UDP_MAX_PAYLOAD)
#define SYN_UDP_TX_SMALL_DGRAMS 4
#define SYN_UDP_TX_SMALL (SYN_UDP_TX_SMALL_DGRAMS * SYN_UDP_MAX_PAYLOAD)
#define SYN_UDP_GSO_MAX_SEGS 64
#define SYN_UDP_GSO_MAX_BYTES 65507 /* the largest UDP payload of an IPv4 datagram */
typedef struct syn_udp_tx {
    /* The batch's buffer: small below, or large (malloc'ed, SYN_UDP_TX_BYTES, not zeroed: sends
     * touch only the pages they fill), cap bytes. The struct must not be moved (buf may point
     * into it). */
    uint8_t *buf;
    size_t cap;
    size_t off[SYN_UDP_TX_BATCH]; /* datagram i is buf[off[i]], len[i] bytes */
    size_t len[SYN_UDP_TX_BATCH];
    uint8_t ecn[SYN_UDP_TX_BATCH];
    size_t n;    /* datagrams queued */
    size_t done; /* datagrams of this batch already sent (a partial flush) */
    size_t used; /* bytes of buf queued */
    int family;  /* AF_INET/AF_INET6: ECN codepoints go out as IP_TOS/IPV6_TCLASS; 0 = none */
    /* GSO: 1 while in use. Turned off for good when the kernel lacks it or refuses it on this
     * socket (EIO: a device without checksum offload, an IPsec route; EINVAL/ENOPROTOOPT before
     * any GSO send went through): the batch then goes out datagram by datagram. */
    int gso;
    int gso_proven;     /* a GSO send went through on this socket */
    size_t gso_skip_to; /* datagrams below this index go one by one (their GSO send failed) */
    uint64_t gso_sends; /* sends that carried several datagrams (counters for tests) */
    uint64_t sends;     /* sendmmsg() entries that went out */
    uint64_t large_allocs, large_frees; /* the large buffer taken and released (tests) */
    uint8_t small[SYN_UDP_TX_SMALL];
} syn_udp_tx;

/* Sets up an empty tx (in its small buffer) for fd (probing whether the kernel knows
 * UDP_SEGMENT) and family. Returns 0. syn_udp_tx_free() releases the large buffer if held. */
int syn_udp_tx_init(syn_udp_tx *tx, int fd, int family);
void syn_udp_tx_free(syn_udp_tx *tx);
/* Moves tx to another socket: the GSO verdict starts afresh (it is judged per socket); the queued
 * datagrams stay. */
void syn_udp_tx_set_socket(syn_udp_tx *tx, int fd);

/* Moves the batch to the large buffer (allocating it). Returns 0, or -ENOMEM. */
int syn_udp_tx_grow(syn_udp_tx *tx);
/* Releases the large buffer when nothing is queued (back to the small one). Returns 1 when tx
 * holds no large buffer afterwards. */
int syn_udp_tx_trim(syn_udp_tx *tx);
/* 1 while the large buffer is held. */
static inline int syn_udp_tx_large(const syn_udp_tx *tx) { return tx->buf != tx->small; }

/* Room for the next datagram of up to maxlen bytes? (else flush first) A batch that outgrows the
 * small buffer moves to the large one here; when that cannot be allocated, the answer is no (the
 * flush, then the small buffer, keep things going). An empty batch always has room for
 * SYN_UDP_TX_SMALL_DGRAMS datagrams of SYN_UDP_MAX_PAYLOAD. */
static inline int syn_udp_tx_room(syn_udp_tx *tx, size_t maxlen) {
    if (tx->n >= SYN_UDP_TX_BATCH)
        return 0;
    if (tx->used + maxlen <= tx->cap)
        return 1;
    return !syn_udp_tx_large(tx) && tx->used + maxlen <= SYN_UDP_TX_BYTES &&
           syn_udp_tx_grow(tx) == 0;
}
/* Where the next datagram is written (check syn_udp_tx_room first). */
static inline uint8_t *syn_udp_tx_next(syn_udp_tx *tx) { return tx->buf + tx->used; }
/* Queues the datagram written at syn_udp_tx_next(). */
static inline void syn_udp_tx_push(syn_udp_tx *tx, size_t len, uint8_t ecn) {
    tx->off[tx->n] = tx->used;
    tx->len[tx->n] = len;
    tx->ecn[tx->n] = ecn;
    tx->used += len;
    tx->n++;
}
/* Drops whatever is queued. */
static inline void syn_udp_tx_clear(syn_udp_tx *tx) { tx->n = tx->done = tx->used = 0; }

/* Sends the queued datagrams to remote (NULL on a connected socket), each with its ECN
 * codepoint (ecn[i], as ngtcp2 chose it) when family is set. Returns 0 when all
 * went out (the batch is then empty), 1 when the socket would block (the unsent tail stays queued:
 * wait for EV_WRITE and flush again), or -errno on a hard error (the batch is dropped). */
int syn_udp_flush(int fd, syn_udp_tx *tx, const syn_sockaddr *remote);

/* Formats an address as "1.2.3.4:443" or "[::1]:443". */
void syn_sockaddr_str(const struct sockaddr *sa, char *out, size_t len);

#endif /* SYNESIS_UDP_H */

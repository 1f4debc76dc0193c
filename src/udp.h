/* UDP sockets and batched datagram I/O shared by the tunnel and the edge. */
#ifndef SYNESIS_UDP_H
#define SYNESIS_UDP_H

#include "dns.h"
#include "internal.h"

#include <sys/socket.h>

/* Largest datagram we ever send or accept. */
#define SYN_UDP_MAX_PAYLOAD 1500
/* Datagrams read per recvmmsg() call, and at most per readable event. */
#define SYN_UDP_RX_BATCH 16
/* Upper bound of one read burst before returning to the loop (fairness). */
#define SYN_UDP_RX_MAX_PER_EVENT 256

/* An address with its length (the resolver's type). */
typedef syn_addr syn_sockaddr;

/* Opens a non-blocking, close-on-exec UDP socket of addr's family. With connect_to set, binds an
 * ephemeral port and connects to it (client); with bind_to set, binds it (server; no SO_REUSEADDR:
 * no other local socket may share the port).
 * Enables ECN reception and, with pmtud, sets DF (IP_PMTUDISC_PROBE) so QUIC's PMTU probes are not
 * fragmented. local receives the bound address. Returns the fd, or a negative SYNESIS_ERR_SOCKET
 * with detail. */
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

/* Receive buffers for batched reads, reused for every event (no per-packet allocation). */
typedef struct syn_udp_rx {
    uint8_t buf[SYN_UDP_RX_BATCH][SYN_UDP_MAX_PAYLOAD + 1];
    syn_udp_dgram d[SYN_UDP_RX_BATCH];
} syn_udp_rx;

/* Reads up to SYN_UDP_RX_BATCH datagrams. Returns the count (0 when none is waiting), or
 * -errno on a socket error (e.g. -ECONNREFUSED after an ICMP port unreachable). A datagram larger
 * than SYN_UDP_MAX_PAYLOAD is dropped. */
int syn_udp_recv(int fd, syn_udp_rx *rx);

/* A batch of outgoing datagrams to one destination, reused between flushes. */
#define SYN_UDP_TX_BATCH 16
typedef struct syn_udp_tx {
    uint8_t buf[SYN_UDP_TX_BATCH][SYN_UDP_MAX_PAYLOAD];
    size_t len[SYN_UDP_TX_BATCH];
    uint8_t ecn[SYN_UDP_TX_BATCH];
    size_t n;    /* datagrams queued */
    size_t done; /* datagrams of this batch already sent (a partial flush) */
    int family;  /* AF_INET/AF_INET6: ECN codepoints go out as IP_TOS/IPV6_TCLASS; 0 = none */
} syn_udp_tx;

/* Sends the queued datagrams (sendmmsg) to remote (NULL on a connected socket), each with its ECN
 * codepoint (ecn[i], as ngtcp2 chose it) when family is set. Returns 0 when all
 * went out (the batch is then empty), 1 when the socket would block (the unsent tail stays queued:
 * wait for EV_WRITE and flush again), or -errno on a hard error (the batch is dropped). */
int syn_udp_flush(int fd, syn_udp_tx *tx, const syn_sockaddr *remote);

/* Formats an address as "1.2.3.4:443" or "[::1]:443". */
void syn_sockaddr_str(const struct sockaddr *sa, char *out, size_t len);

#endif /* SYNESIS_UDP_H */

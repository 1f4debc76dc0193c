/*
 * A UDP fault proxy for tests: sits on loopback between a client (the tunnel) and an upstream
 * server (the edge) on a libev loop, and drops, duplicates, reorders and delays datagrams on
 * command. Random decisions come from a small PRNG seeded by the caller (one stream per
 * direction), so a run is repeatable for the same seed and the same datagrams.
 *
 * Each distinct client address gets its own upstream socket, so several tunnels can share one
 * proxy and the server sees each as a different peer. Datagrams from the server arriving on a
 * client's upstream socket are forwarded to that client from the listening socket, whatever their
 * source (endpoint-independent filtering).
 *
 * For each datagram arriving in a direction, in this order and with one PRNG draw each:
 *  1. dropped with probability drop (everything is dropped while the blackhole is on);
 *  2. duplicated with probability duplicate (the copy follows the same path);
 *  3. held back with probability reorder, unless a datagram of that direction is held already:
 *     a held datagram is released just after the next datagram of the same direction, or after
 *     SYN_FAULT_REORDER_HOLD_MS if none comes;
 *  4. with burst loss configured, one more draw: the datagram may start (or, inside a burst,
 *     end) a burst of loss; a datagram inside a burst is dropped;
 *  5. a datagram larger than the link MTU (mtu) is dropped, without a draw;
 *  6. each copy passes the bottleneck when rate_bps is set (a FIFO of queue_bytes drained at
 *     rate_bps; tail drop when full), then is delayed by delay_ms plus a uniform 0..jitter_ms
 *     (one draw per copy); jitter can itself reorder datagrams unless keep_order is set. Copies
 *     without added delay are sent at once.
 * Without the appended fields (burst_*, rate_bps, queue_bytes, mtu, keep_order) set, the draws are
 * exactly those of steps 1 to 3 and 6, so a seed gives the same run as before they existed.
 * Queued datagrams (delayed or held) are bounded by SYN_FAULT_MAX_QUEUED datagrams and
 * SYN_FAULT_MAX_QUEUED_BYTES bytes; beyond that they are dropped and counted as overflowed.
 *
 * Use from the loop's thread only. Not part of the library.
 */
#ifndef SYNESIS_FAULT_PROXY_H
#define SYNESIS_FAULT_PROXY_H

#include <ev.h>
#include <stdint.h>
#include <sys/socket.h>

#include "synesis/common.h"

#define SYN_FAULT_MAX_QUEUED 4096
#define SYN_FAULT_MAX_QUEUED_BYTES (16u << 20)
#define SYN_FAULT_MAX_CLIENTS 256
#define SYN_FAULT_REORDER_HOLD_MS 50

typedef struct syn_fault_proxy syn_fault_proxy;

/* One direction's impairments; all zero means pass-through. */
typedef struct syn_fault_dir {
    double drop;      /* 0..1 probability of dropping a datagram */
    double duplicate; /* 0..1 probability of sending a datagram twice */
    double reorder;   /* 0..1 probability of holding a datagram back until after the next one */
    double delay_ms;  /* added delay */
    double jitter_ms; /* uniform extra delay 0..jitter_ms */
    /* Appended. Loss in bursts (a two-state Gilbert model): outside a burst a datagram starts one
     * with probability burst_start; inside, every datagram is dropped and each ends the burst with
     * probability burst_end (mean burst length 1/burst_end datagrams). burst_start 0 = off.
     * A burst counts datagrams, not time: a sender that goes quiet (waiting to retransmit) keeps
     * meeting the same burst. burst_max_ms > 0 also ends a burst once it has lasted that long
     * (checked as each datagram arrives). */
    double burst_start;
    double burst_end;
    double burst_max_ms;
    /* Appended. A bottleneck link: datagrams leave at most rate_bps bits per second (counting UDP
     * payload bytes; 0 = no cap) from a FIFO of at most queue_bytes bytes (0 = bounded only by the
     * proxy's SYN_FAULT_MAX_QUEUED*); a datagram that does not fit is dropped (tail drop). The
     * delay and jitter are added after the bottleneck. */
    double rate_bps;
    size_t queue_bytes;
    /* Appended. The link MTU in bytes of IP packet: a datagram whose UDP payload plus the UDP and
     * IP headers (8 + 20 for IPv4, 8 + 40 for IPv6, the family of the socket it arrived on)
     * exceeds it is dropped (no ICMP is sent). 0 = no limit. */
    size_t mtu;
    /* Appended. 1: jitter never reorders: a copy is never due before the previous copy of its
     * direction (a link with one queue). Held datagrams (reorder) still overtake. */
    int keep_order;
} syn_fault_dir;

/*
 * Counters since creation. Every count is of datagrams:
 *  fwd_up / fwd_down       sent to the upstream server / to a client (copies included);
 *  dropped_up / dropped_down  discarded: by drop, by the blackhole (on arrival or when a queued one
 *                          falls due), by overflow, by a failed sendto, or (up) because no upstream
 *                          socket could be made for a new client;
 *  duplicated              extra copies made;  reordered  datagrams held back;
 *  delayed                 copies queued with a positive added delay;
 *  overflowed              copies dropped because the queue was full (also in dropped_*);
 *  queued                  datagrams waiting now (delayed or held);
 *  burst_dropped           dropped inside a burst of loss (also in dropped_*);
 *  too_big                 dropped for exceeding the link MTU (also in dropped_*);
 *  tail_dropped            dropped at a full bottleneck FIFO (also in dropped_*).
 */
typedef struct syn_fault_stats {
    uint64_t fwd_up, fwd_down, dropped_up, dropped_down, duplicated, reordered, delayed;
    uint64_t overflowed, queued;
    uint64_t bytes_up, bytes_down; /* UDP payload bytes of fwd_up / fwd_down */
    uint64_t burst_dropped, too_big, tail_dropped;
} syn_fault_stats;

/*
 * Listens on listen_addr (IPv4 or IPv6; port 0 picks an ephemeral port, see syn_fault_proxy_port)
 * and forwards to upstream (IPv4 or IPv6, independently). Returns NULL with errno set on failure
 * (EINVAL for a NULL loop or address, a family other than AF_INET/AF_INET6 or a short length;
 * otherwise the errno of socket/bind, e.g. EADDRINUSE).
 */
syn_fault_proxy *syn_fault_proxy_new(struct ev_loop *loop, const struct sockaddr *listen_addr,
                                     socklen_t listen_len, const struct sockaddr *upstream,
                                     socklen_t upstream_len, uint64_t seed);

/* syn_fault_proxy_new on an ephemeral port (listen_addr's port 0) whose number is also free on
 * TCP at that address, for tests where an edge's TCP listener takes the proxy's port number (the
 * kernel picks UDP ports without looking at TCP's: another proxy is made while the number is
 * taken on TCP, up to 32 times; a tiny window remains between this check and the edge's bind). */
syn_fault_proxy *syn_fault_proxy_new_tcp_free(struct ev_loop *loop,
                                              const struct sockaddr *listen_addr,
                                              socklen_t listen_len, const struct sockaddr *upstream,
                                              socklen_t upstream_len, uint64_t seed);

/* The port the proxy listens on (host byte order). */
uint16_t syn_fault_proxy_port(const syn_fault_proxy *p);

/* Copies the address the proxy listens on into out; returns its length. */
socklen_t syn_fault_proxy_addr(const syn_fault_proxy *p, struct sockaddr_storage *out);

/* Sets both directions' impairments (NULL = none); applies to datagrams arriving from now on. */
void syn_fault_proxy_set(syn_fault_proxy *p, const syn_fault_dir *to_upstream,
                         const syn_fault_dir *to_client);

/* While on, every datagram is dropped both ways, including queued ones falling due. */
void syn_fault_proxy_blackhole(syn_fault_proxy *p, int on);

/*
 * Gives every client a new upstream socket with a new source port, as a NAT rebinding does; the old
 * sockets are closed, so the server's datagrams to the old ports are lost. Returns 0, or
 * SYNESIS_ERR_SOCKET if a socket could not be made (clients done so far keep their new sockets,
 * the others their old ones).
 */
int syn_fault_proxy_rebind(syn_fault_proxy *p);

/*
 * Forwards to a new upstream address from now on (queued datagrams go there too). When its family
 * differs from the previous one, every client gets a new upstream socket of the new family.
 * Returns 0, SYNESIS_ERR_INVALID_ARGUMENT for a bad address, or SYNESIS_ERR_SOCKET as for rebind.
 */
int syn_fault_proxy_set_upstream(syn_fault_proxy *p, const struct sockaddr *upstream,
                                 socklen_t len);

/* Copies the counters into out. */
void syn_fault_proxy_stats(const syn_fault_proxy *p, syn_fault_stats *out);

/* Closes every socket, frees queued datagrams and stops every watcher. NULL is ignored. */
void syn_fault_proxy_free(syn_fault_proxy *p);

#endif /* SYNESIS_FAULT_PROXY_H */

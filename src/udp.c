/* UDP sockets and batched datagram I/O. */
#include "udp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void syn_sockaddr_str(const struct sockaddr *sa, char *out, size_t len) {
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        port = ntohs(in->sin_port);
        snprintf(out, len, "%s:%u", host, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
        snprintf(out, len, "[%s]:%u", host, port);
    } else {
        snprintf(out, len, "(family %d)", sa->sa_family);
    }
}

static void set_opt(int fd, int level, int name, int value) {
    /* Best effort: these improve behaviour but their absence is not an error. */
    (void)setsockopt(fd, level, name, &value, sizeof(value));
}

int syn_udp_open(const struct sockaddr *connect_to, socklen_t connect_len,
                 const struct sockaddr *bind_to, socklen_t bind_len, int pmtud, syn_sockaddr *local,
                 char *detail) {
    const struct sockaddr *ref = connect_to ? connect_to : bind_to;
    char addr[64];
    syn_sockaddr_str(ref, addr, sizeof(addr));
    int family = ref->sa_family;
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_UDP);
    if (fd < 0)
        return syn_fail(detail, SYNESIS_ERR_SOCKET, "socket(%s): %s",
                        family == AF_INET6 ? "IPv6" : "IPv4", strerror(errno));
    if (family == AF_INET6) {
        set_opt(fd, IPPROTO_IPV6, IPV6_RECVTCLASS, 1);
        set_opt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER,
                pmtud ? IPV6_PMTUDISC_PROBE : IPV6_PMTUDISC_DONT);
    } else {
        set_opt(fd, IPPROTO_IP, IP_RECVTOS, 1);
        set_opt(fd, IPPROTO_IP, IP_MTU_DISCOVER, pmtud ? IP_PMTUDISC_PROBE : IP_PMTUDISC_DONT);
    }
    /* Coalesced bursts on receive (syn_udp_recv splits them); silently absent on old kernels. */
    set_opt(fd, SOL_UDP, UDP_GRO, 1);
    if (bind_to) {
        if (family == AF_INET6)
            set_opt(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1);
        if (bind(fd, bind_to, bind_len) != 0) {
            int e = errno;
            close(fd);
            return syn_fail(detail, SYNESIS_ERR_SOCKET, "bind(%s): %s", addr, strerror(e));
        }
    }
    if (connect_to && connect(fd, connect_to, connect_len) != 0) {
        int e = errno;
        close(fd);
        return syn_fail(detail, SYNESIS_ERR_SOCKET, "connect(%s): %s", addr, strerror(e));
    }
    if (local) {
        local->len = sizeof(local->ss);
        if (getsockname(fd, (struct sockaddr *)&local->ss, &local->len) != 0) {
            int e = errno;
            close(fd);
            return syn_fail(detail, SYNESIS_ERR_SOCKET, "getsockname: %s", strerror(e));
        }
    }
    return fd;
}

static int set_buffer(int fd, int force_opt, int opt, int value, int *got) {
    int rv = 0;
    if (setsockopt(fd, SOL_SOCKET, force_opt, &value, sizeof(value)) != 0 &&
        setsockopt(fd, SOL_SOCKET, opt, &value, sizeof(value)) != 0)
        rv = -errno;
    if (got) {
        socklen_t l = sizeof(*got);
        if (getsockopt(fd, SOL_SOCKET, opt, got, &l) != 0)
            *got = 0;
    }
    return rv;
}

int syn_udp_set_buffers(int fd, size_t bytes, int *rcv, int *snd) {
    int value = bytes > INT_MAX / 2 ? INT_MAX / 2 : (int)bytes;
    int r1 = set_buffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, value, rcv);
    int r2 = set_buffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, value, snd);
    return r1 ? r1 : r2;
}

/* The ECN codepoint and the GRO segment size (0 = not coalesced) of a received message. */
static uint8_t cmsg_read(struct msghdr *mh, size_t *seg) {
    uint8_t ecn = 0;
    *seg = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
        if ((c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_TOS) ||
            (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_TCLASS)) {
            int v = 0;
            if (c->cmsg_len >= CMSG_LEN(sizeof(int)))
                memcpy(&v, CMSG_DATA(c), sizeof(int));
            else
                memcpy(&v, CMSG_DATA(c), 1);
            ecn = (uint8_t)(v & 0x3);
        } else if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO &&
                   c->cmsg_len >= CMSG_LEN(sizeof(int))) {
            int v = 0;
            memcpy(&v, CMSG_DATA(c), sizeof(int));
            *seg = v > 0 ? (size_t)v : 0;
        }
    }
    return ecn;
}

syn_udp_rx *syn_udp_rx_new(size_t bytes) {
    if (bytes < SYN_UDP_RX_SLOT)
        bytes = SYN_UDP_RX_SLOT;
    syn_udp_rx *rx = calloc(1, sizeof(*rx));
    if (!rx)
        return NULL;
    rx->buf = malloc(bytes);
    if (!rx->buf) {
        free(rx);
        return NULL;
    }
    rx->bufsize = bytes;
    rx->fd = -1;
    return rx;
}

void syn_udp_rx_free(syn_udp_rx *rx) {
    if (!rx)
        return;
    free(rx->buf);
    free(rx);
}

/* Cuts the buffer into slots for fd: 64 KiB ones when it receives GRO bursts. */
static void rx_set_socket(syn_udp_rx *rx, int fd) {
    int v = 0;
    socklen_t l = sizeof(v);
    int gro = getsockopt(fd, SOL_UDP, UDP_GRO, &v, &l) == 0 && v;
    rx->slot = gro ? SYN_UDP_RX_SLOT : SYN_UDP_MAX_PAYLOAD + 1;
    rx->nslots = rx->bufsize / rx->slot;
    if (rx->nslots > SYN_UDP_RX_BATCH)
        rx->nslots = SYN_UDP_RX_BATCH;
    rx->fd = fd;
}

static uint8_t *rx_slot(const syn_udp_rx *rx, size_t i) { return rx->buf + i * rx->slot; }

/* Reads a batch of messages into the slots. Returns the count of usable ones, or -errno. */
static int recv_batch(int fd, syn_udp_rx *rx) {
    struct mmsghdr mm[SYN_UDP_RX_BATCH];
    struct iovec iov[SYN_UDP_RX_BATCH];
    union {
        char buf[CMSG_SPACE(sizeof(int)) * 2];
        struct cmsghdr align;
    } ctl[SYN_UDP_RX_BATCH];
    size_t nslots = rx->nslots;
    memset(mm, 0, sizeof(struct mmsghdr) * nslots);
    for (size_t i = 0; i < nslots; i++) {
        iov[i].iov_base = rx_slot(rx, i);
        iov[i].iov_len = rx->slot;
        mm[i].msg_hdr.msg_iov = &iov[i];
        mm[i].msg_hdr.msg_iovlen = 1;
        mm[i].msg_hdr.msg_name = &rx->msg[i].remote.ss;
        mm[i].msg_hdr.msg_namelen = sizeof(rx->msg[i].remote.ss);
        mm[i].msg_hdr.msg_control = ctl[i].buf;
        mm[i].msg_hdr.msg_controllen = sizeof(ctl[i].buf);
    }
    int n;
    do {
        n = recvmmsg(fd, mm, (unsigned)nslots, MSG_DONTWAIT, NULL);
    } while (n < 0 && errno == EINTR);
    rx->drained = n < (int)nslots;
    if (n < 0)
        return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -errno;
    size_t out = 0;
    for (int i = 0; i < n; i++) {
        size_t len = mm[i].msg_len, seg;
        uint8_t ecn = cmsg_read(&mm[i].msg_hdr, &seg);
        if (!seg || seg > len)
            seg = len;
        if (!len || seg > SYN_UDP_MAX_PAYLOAD || (mm[i].msg_hdr.msg_flags & MSG_TRUNC))
            continue; /* oversized: not QUIC we can use */
        if (out != (size_t)i) {
            /* Keep the slots in step with msg[] (rare: only after a dropped message). */
            memmove(rx_slot(rx, out), rx_slot(rx, (size_t)i), len);
            rx->msg[out].remote = rx->msg[i].remote;
        }
        rx->msg[out].len = len;
        rx->msg[out].seg = seg;
        rx->msg[out].ecn = ecn;
        rx->msg[out].remote.len = mm[i].msg_hdr.msg_namelen;
        out++;
    }
    return (int)out;
}

int syn_udp_recv(int fd, syn_udp_rx *rx) {
    if (rx->cur >= rx->nmsg || rx->fd != fd) {
        rx->nmsg = rx->cur = rx->off = 0;
        if (rx->fd != fd)
            rx_set_socket(rx, fd);
        int n = recv_batch(fd, rx);
        if (n <= 0)
            return n;
        rx->nmsg = (size_t)n;
    }
    int out = 0;
    while (out < SYN_UDP_RX_DGRAMS && rx->cur < rx->nmsg) {
        size_t m = rx->cur;
        size_t len = rx->msg[m].len - rx->off;
        if (len > rx->msg[m].seg)
            len = rx->msg[m].seg;
        syn_udp_dgram *d = &rx->d[out++];
        d->data = rx_slot(rx, m) + rx->off;
        d->len = len;
        d->ecn = rx->msg[m].ecn;
        d->remote.len = rx->msg[m].remote.len;
        memcpy(&d->remote.ss, &rx->msg[m].remote.ss, d->remote.len);
        rx->off += len;
        if (rx->off >= rx->msg[m].len) {
            rx->cur++;
            rx->off = 0;
        }
    }
    return out;
}

int syn_udp_tx_init(syn_udp_tx *tx, int fd, int family) {
    memset(tx, 0, sizeof(*tx));
    tx->buf = tx->small;
    tx->cap = sizeof(tx->small);
    tx->family = family;
    syn_udp_tx_set_socket(tx, fd);
    return 0;
}

void syn_udp_tx_free(syn_udp_tx *tx) {
    if (syn_udp_tx_large(tx))
        free(tx->buf);
    tx->buf = tx->small;
    tx->cap = sizeof(tx->small);
    tx->n = tx->done = tx->used = 0;
}

int syn_udp_tx_grow(syn_udp_tx *tx) {
    if (syn_udp_tx_large(tx))
        return 0;
    uint8_t *b = malloc(SYN_UDP_TX_BYTES);
    if (!b)
        return -ENOMEM;
    memcpy(b, tx->buf, tx->used); /* the datagrams queued so far: offsets stay valid */
    tx->buf = b;
    tx->cap = SYN_UDP_TX_BYTES;
    tx->large_allocs++;
    return 0;
}

int syn_udp_tx_trim(syn_udp_tx *tx) {
    if (!syn_udp_tx_large(tx))
        return 1;
    if (tx->n)
        return 0; /* a batch waits for the socket */
    free(tx->buf);
    tx->buf = tx->small;
    tx->cap = sizeof(tx->small);
    tx->used = tx->done = 0;
    tx->large_frees++;
    return 1;
}

void syn_udp_tx_set_socket(syn_udp_tx *tx, int fd) {
    /* ENOPROTOOPT: a kernel without UDP GSO (before 4.18). */
    int v = 0;
    socklen_t l = sizeof(v);
    tx->gso = getsockopt(fd, SOL_UDP, UDP_SEGMENT, &v, &l) == 0;
    tx->gso_proven = 0;
    tx->gso_skip_to = 0;
}

/* How many datagrams from i go out in one send, and their bytes. */
static size_t tx_run(const syn_udp_tx *tx, size_t i, size_t *bytes) {
    size_t k = 1, seg = tx->len[i];
    *bytes = seg;
    if (!tx->gso || i < tx->gso_skip_to)
        return 1;
    while (i + k < tx->n && k < SYN_UDP_GSO_MAX_SEGS && tx->ecn[i + k] == tx->ecn[i] &&
           tx->len[i + k] <= seg && *bytes + tx->len[i + k] <= SYN_UDP_GSO_MAX_BYTES) {
        *bytes += tx->len[i + k];
        k++;
        if (tx->len[i + k - 1] < seg)
            break; /* a shorter one ends the run */
    }
    return k;
}

int syn_udp_flush(int fd, syn_udp_tx *tx, const syn_sockaddr *remote) {
    while (tx->done < tx->n) {
        struct mmsghdr mm[SYN_UDP_TX_BATCH];
        struct iovec iov[SYN_UDP_TX_BATCH];
        union {
            char buf[CMSG_SPACE(sizeof(int)) + CMSG_SPACE(sizeof(uint16_t))];
            struct cmsghdr align;
        } ctl[SYN_UDP_TX_BATCH];
        size_t cnt[SYN_UDP_TX_BATCH];
        size_t nm = 0;
        for (size_t i = tx->done; i < tx->n; nm++) {
            size_t bytes;
            size_t k = tx_run(tx, i, &bytes);
            struct msghdr *h = &mm[nm].msg_hdr;
            memset(&mm[nm], 0, sizeof(mm[nm]));
            iov[nm].iov_base = tx->buf + tx->off[i];
            iov[nm].iov_len = bytes;
            h->msg_iov = &iov[nm];
            h->msg_iovlen = 1;
            if (remote) {
                h->msg_name = (void *)&remote->ss;
                h->msg_namelen = remote->len;
            }
            size_t clen = 0;
            if (tx->family == AF_INET || tx->family == AF_INET6)
                clen += CMSG_SPACE(sizeof(int));
            if (k > 1)
                clen += CMSG_SPACE(sizeof(uint16_t));
            if (clen) {
                memset(&ctl[nm], 0, sizeof(ctl[nm]));
                h->msg_control = ctl[nm].buf;
                h->msg_controllen = clen;
                struct cmsghdr *c = CMSG_FIRSTHDR(h);
                if (tx->family == AF_INET || tx->family == AF_INET6) {
                    /* The ECN codepoint (ngtcp2 marks ECT(0) while it validates ECN). */
                    c->cmsg_level = tx->family == AF_INET ? IPPROTO_IP : IPPROTO_IPV6;
                    c->cmsg_type = tx->family == AF_INET ? IP_TOS : IPV6_TCLASS;
                    c->cmsg_len = CMSG_LEN(sizeof(int));
                    int tos = tx->ecn[i] & 0x3;
                    memcpy(CMSG_DATA(c), &tos, sizeof(tos));
                    c = CMSG_NXTHDR(h, c);
                }
                if (k > 1) {
                    c->cmsg_level = SOL_UDP;
                    c->cmsg_type = UDP_SEGMENT;
                    c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
                    uint16_t seg = (uint16_t)tx->len[i];
                    memcpy(CMSG_DATA(c), &seg, sizeof(seg));
                }
            }
            cnt[nm] = k;
            i += k;
        }
        int n = sendmmsg(fd, mm, (unsigned)nm, 0);
        if (n < 0) {
            int e = errno;
            if (e == EINTR)
                continue;
            if (e == EAGAIN || e == EWOULDBLOCK)
                return 1;
            if (cnt[0] > 1) {
                /* The failed send was a GSO one: its datagrams go again, one by one. */
                if (e == EIO ||
                    (!tx->gso_proven && (e == EINVAL || e == ENOPROTOOPT || e == EOPNOTSUPP))) {
                    tx->gso = 0; /* refused on this socket: for good */
                    continue;
                }
                if (e == EINVAL || e == EMSGSIZE) {
                    /* GSO works here, but not for this run (segments over the path MTU, say). */
                    tx->gso_skip_to = tx->done + cnt[0];
                    continue;
                }
            }
            if (e == EMSGSIZE) {
                /* Larger than the path allows (a PMTU probe under a VPN, say): drop this one
                 * datagram, QUIC counts it lost, and send the rest. */
                tx->done++;
                continue;
            }
            syn_udp_tx_clear(tx);
            tx->gso_skip_to = 0;
            return -e;
        }
        for (int j = 0; j < n; j++) {
            tx->done += cnt[j];
            tx->sends++;
            if (cnt[j] > 1) {
                tx->gso_proven = 1;
                tx->gso_sends++;
            }
        }
    }
    syn_udp_tx_clear(tx);
    tx->gso_skip_to = 0;
    return 0;
}

int syn_udp_discard(int fd, int max) {
    uint8_t buf[64];
    int n = 0;
    while (n < max) {
        ssize_t r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_TRUNC);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? n : -errno;
        }
        n++;
    }
    return n;
}

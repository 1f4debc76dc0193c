/* UDP sockets and batched datagram I/O. */
#include "udp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <stdio.h>
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

static uint8_t cmsg_ecn(struct msghdr *mh) {
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
        if ((c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_TOS) ||
            (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_TCLASS)) {
            int v = 0;
            if (c->cmsg_len >= CMSG_LEN(sizeof(int)))
                memcpy(&v, CMSG_DATA(c), sizeof(int));
            else
                memcpy(&v, CMSG_DATA(c), 1);
            return (uint8_t)(v & 0x3);
        }
    }
    return 0;
}

int syn_udp_recv(int fd, syn_udp_rx *rx) {
    struct mmsghdr mm[SYN_UDP_RX_BATCH];
    struct iovec iov[SYN_UDP_RX_BATCH];
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctl[SYN_UDP_RX_BATCH];
    memset(mm, 0, sizeof(mm));
    for (size_t i = 0; i < SYN_UDP_RX_BATCH; i++) {
        iov[i].iov_base = rx->buf[i];
        iov[i].iov_len = sizeof(rx->buf[i]);
        mm[i].msg_hdr.msg_iov = &iov[i];
        mm[i].msg_hdr.msg_iovlen = 1;
        mm[i].msg_hdr.msg_name = &rx->d[i].remote.ss;
        mm[i].msg_hdr.msg_namelen = sizeof(rx->d[i].remote.ss);
        mm[i].msg_hdr.msg_control = ctl[i].buf;
        mm[i].msg_hdr.msg_controllen = sizeof(ctl[i].buf);
    }
    int n;
    do {
        n = recvmmsg(fd, mm, SYN_UDP_RX_BATCH, MSG_DONTWAIT, NULL);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -errno;
    int out = 0;
    for (int i = 0; i < n; i++) {
        if (mm[i].msg_len > SYN_UDP_MAX_PAYLOAD || (mm[i].msg_hdr.msg_flags & MSG_TRUNC))
            continue; /* oversized: not QUIC we can use */
        syn_udp_dgram *d = &rx->d[out];
        if (out != i) {
            memcpy(rx->buf[out], rx->buf[i], mm[i].msg_len);
            d->remote = rx->d[i].remote;
        }
        d->data = rx->buf[out];
        d->len = mm[i].msg_len;
        d->remote.len = mm[i].msg_hdr.msg_namelen;
        d->ecn = cmsg_ecn(&mm[i].msg_hdr);
        out++;
    }
    return out;
}

int syn_udp_flush(int fd, syn_udp_tx *tx, const syn_sockaddr *remote) {
    while (tx->done < tx->n) {
        struct mmsghdr mm[SYN_UDP_TX_BATCH];
        struct iovec iov[SYN_UDP_TX_BATCH];
        union {
            char buf[CMSG_SPACE(sizeof(int))];
            struct cmsghdr align;
        } ctl[SYN_UDP_TX_BATCH];
        size_t cnt = tx->n - tx->done;
        memset(mm, 0, sizeof(struct mmsghdr) * cnt);
        for (size_t i = 0; i < cnt; i++) {
            iov[i].iov_base = tx->buf[tx->done + i];
            iov[i].iov_len = tx->len[tx->done + i];
            mm[i].msg_hdr.msg_iov = &iov[i];
            mm[i].msg_hdr.msg_iovlen = 1;
            if (remote) {
                mm[i].msg_hdr.msg_name = (void *)&remote->ss;
                mm[i].msg_hdr.msg_namelen = remote->len;
            }
            if (tx->family == AF_INET || tx->family == AF_INET6) {
                /* The ECN codepoint per datagram (ngtcp2 marks ECT(0) while it validates ECN). */
                memset(&ctl[i], 0, sizeof(ctl[i]));
                mm[i].msg_hdr.msg_control = ctl[i].buf;
                mm[i].msg_hdr.msg_controllen = sizeof(ctl[i].buf);
                struct cmsghdr *c = CMSG_FIRSTHDR(&mm[i].msg_hdr);
                c->cmsg_level = tx->family == AF_INET ? IPPROTO_IP : IPPROTO_IPV6;
                c->cmsg_type = tx->family == AF_INET ? IP_TOS : IPV6_TCLASS;
                c->cmsg_len = CMSG_LEN(sizeof(int));
                int tos = tx->ecn[tx->done + i] & 0x3;
                memcpy(CMSG_DATA(c), &tos, sizeof(tos));
            }
        }
        int n = sendmmsg(fd, mm, (unsigned)cnt, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 1;
            if (errno == EMSGSIZE) {
                /* Larger than the path allows (a PMTU probe under a VPN, say): drop this one
                 * datagram, QUIC counts it lost, and send the rest. */
                tx->done++;
                continue;
            }
            int e = errno;
            tx->n = tx->done = 0;
            return -e;
        }
        tx->done += (size_t)n;
    }
    tx->n = tx->done = 0;
    return 0;
}

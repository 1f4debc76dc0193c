/* Connection migration: synesis_tunnel_network_changed() and the netlink watcher of
 * config.watch_network. The tunnel opens a socket on the address the route to the edge now gives
 * and moves its connection there (syn_qconn_migrate: ngtcp2's immediate client migration, the new
 * path validated meanwhile); a path the edge does not answer on ends in a reconnect. */
#include "tunnel_int.h"
#include "tunnel_test.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifdef __linux__
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#endif

/* Netlink events closer together than this are one change: an address moved between interfaces
 * is a burst (address removed, routes removed, address added, routes added). */
#define SYN_NETLINK_DEBOUNCE 0.1

/* The same IP address (ports and the rest of the socket address ignored). */
static int same_ip(const syn_sockaddr *a, const syn_sockaddr *b) {
    const struct sockaddr *x = (const struct sockaddr *)&a->ss,
                          *y = (const struct sockaddr *)&b->ss;
    if (x->sa_family != y->sa_family)
        return 0;
    if (x->sa_family == AF_INET)
        return memcmp(&((const struct sockaddr_in *)x)->sin_addr,
                      &((const struct sockaddr_in *)y)->sin_addr, sizeof(struct in_addr)) == 0;
    if (x->sa_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)x)->sin6_addr,
                      &((const struct sockaddr_in6 *)y)->sin6_addr, sizeof(struct in6_addr)) == 0;
    return 0;
}

static void addr_str(const syn_sockaddr *a, char *out, size_t len) {
    syn_sockaddr_str((const struct sockaddr *)&a->ss, out, len);
}

#ifdef __linux__
/* The interface of the route to dst (RTM_GETROUTE: the kernel answers within the send), 0 when
 * unknown. */
static int route_oif(const syn_sockaddr *dst) {
    const struct sockaddr *sa = (const struct sockaddr *)&dst->ss;
    const void *addr;
    size_t alen;
    if (sa->sa_family == AF_INET) {
        addr = &((const struct sockaddr_in *)sa)->sin_addr;
        alen = 4;
    } else if (sa->sa_family == AF_INET6) {
        addr = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        alen = 16;
    } else {
        return 0;
    }
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
    if (fd < 0)
        return 0;
    struct {
        struct nlmsghdr n;
        struct rtmsg r;
        char attrs[64];
    } req;
    memset(&req, 0, sizeof(req));
    req.n.nlmsg_len = NLMSG_LENGTH(sizeof(struct rtmsg));
    req.n.nlmsg_type = RTM_GETROUTE;
    req.n.nlmsg_flags = NLM_F_REQUEST;
    req.n.nlmsg_seq = 1;
    req.r.rtm_family = (unsigned char)sa->sa_family;
    req.r.rtm_dst_len = (unsigned char)(alen * 8);
    struct rtattr *rta = (struct rtattr *)((char *)&req + NLMSG_ALIGN(req.n.nlmsg_len));
    rta->rta_type = RTA_DST;
    rta->rta_len = (unsigned short)RTA_LENGTH(alen);
    memcpy(RTA_DATA(rta), addr, alen);
    req.n.nlmsg_len = NLMSG_ALIGN(req.n.nlmsg_len) + RTA_ALIGN(rta->rta_len);
    int oif = 0;
    union {
        struct nlmsghdr h;
        char b[4096];
    } buf;
    if (send(fd, &req, req.n.nlmsg_len, 0) == (ssize_t)req.n.nlmsg_len) {
        ssize_t n = recv(fd, &buf, sizeof(buf), 0);
        for (struct nlmsghdr *h = &buf.h; n > 0 && NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type != RTM_NEWROUTE)
                continue;
            struct rtmsg *rt = NLMSG_DATA(h);
            int len = (int)RTM_PAYLOAD(h);
            for (struct rtattr *a = RTM_RTA(rt); RTA_OK(a, len); a = RTA_NEXT(a, len))
                if (a->rta_type == RTA_OIF && RTA_PAYLOAD(a) >= sizeof(int))
                    memcpy(&oif, RTA_DATA(a), sizeof(int));
        }
    }
    close(fd);
    return oif;
}
#else
static int route_oif(const syn_sockaddr *dst) {
    (void)dst;
    return 0;
}
#endif

/* Ends the connection so that the tunnel reconnects (Connected -> Reconnecting, resumed). */
static void fall_back(synesis_tunnel *t, const char *detail) {
    t->stats.migrations_failed++;
    t->mig.started_ns = 0;
    syn_tunnel_log(t, SYNESIS_LOG_WARN, "%s: reconnecting", detail);
    if (t->qc)
        syn_qconn_abort(t->qc, SYNESIS_ERR_CONNECTION_LOST, detail);
}

/* 1 when the host no longer has the IP address of a (binding to it fails: EADDRNOTAVAIL). */
static int addr_gone(const syn_sockaddr *a) {
    syn_sockaddr b = *a;
    if (b.ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&b.ss)->sin_port = 0;
    else if (b.ss.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&b.ss)->sin6_port = 0;
    else
        return 0;
    int fd = socket(b.ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    int gone = bind(fd, (const struct sockaddr *)&b.ss, b.len) != 0 && errno == EADDRNOTAVAIL;
    close(fd);
    return gone;
}

/* A network change while the connection runs over a TCP link. A link cannot migrate: if its
 * local address is gone, nothing will ever arrive on it (the kernel does not reset it; only the
 * idle timeout would tell): reconnect now (TCP first in AUTO, as after any loss on TCP). Else the
 * link carries on, and in AUTO the new network may let UDP through: a UDP probe at once. */
static void link_changed(synesis_tunnel *t, const char *why) {
    const syn_sockaddr *ll = syn_tcplink_local(t->link);
    char at[64], detail[SYNESIS_DETAIL_MAX];
    addr_str(ll, at, sizeof(at));
    if (addr_gone(ll)) {
        snprintf(detail, sizeof(detail), "%s: the TCP link's address %s is gone", why, at);
        t->mig.started_ns = 0;
        syn_tunnel_log(t, SYNESIS_LOG_WARN, "%s: reconnecting", detail);
        syn_qconn_abort(t->qc, SYNESIS_ERR_CONNECTION_LOST, detail);
        return;
    }
    if (syn_tunnel_probe_soon(t))
        syn_tunnel_log(t, SYNESIS_LOG_INFO, "%s: on TCP from %s: probing UDP now", why, at);
    else
        syn_tunnel_log(t, SYNESIS_LOG_DEBUG, "%s: on TCP from %s, still there", why, at);
}

/* Moves the connection to the route's current source address, if it changed. */
static void migrate(synesis_tunnel *t, const char *why, uint64_t since_ns) {
    if (t->state.kind == SYNESIS_STATE_CONNECTED && t->qc && t->on_tcp && t->link &&
        syn_qconn_handshake_completed(t->qc)) {
        link_changed(t, why);
        return;
    }
    if (t->state.kind != SYNESIS_STATE_CONNECTED || !t->qc || t->fd < 0 || t->link ||
        !syn_qconn_handshake_completed(t->qc)) {
        syn_tunnel_log(t, SYNESIS_LOG_DEBUG, "%s: not connected, nothing to move", why);
        return;
    }
    char detail[SYNESIS_DETAIL_MAX], from[64], to[64];
    syn_sockaddr local;
    int fd = syn_udp_open((const struct sockaddr *)&t->remote.ss, t->remote.len, NULL, 0,
                          t->cfg.pmtud, &local, detail);
    if (fd < 0) {
        /* No route to the edge's address. A connection keeps its server address (RFC 9000 9),
         * so if the route now goes only to another of the edge's addresses (IPv4 gone, IPv6
         * there), a reconnect is the way there; else the connection stays where it is, the next
         * change (a route added) tries again, and QUIC's idle timeout judges meanwhile. */
        for (size_t i = 0; i < t->naddrs; i++) {
            const syn_addr *a = &t->addrs[i];
            if (a->ss.ss_family == t->remote.ss.ss_family)
                continue;
            syn_sockaddr l;
            char d2[SYNESIS_DETAIL_MAX];
            int f2 = syn_udp_open((const struct sockaddr *)&a->ss, a->len, NULL, 0, 0, &l, d2);
            if (f2 < 0)
                continue;
            close(f2);
            addr_str(&t->remote, from, sizeof(from));
            addr_str(a, to, sizeof(to));
            snprintf(detail, sizeof(detail), "%s: no route to %s any more, one to %s", why, from,
                     to);
            fall_back(t, detail);
            return;
        }
        syn_tunnel_log(t, SYNESIS_LOG_INFO, "%s: no new path: %s", why, detail);
        return;
    }
    int oif = route_oif(&t->remote);
    if (same_ip(&local, &t->local) && (!oif || !t->mig.oif || oif == t->mig.oif)) {
        /* The route keeps its source address and interface: nothing moved. */
        close(fd);
        syn_tunnel_log(t, SYNESIS_LOG_DEBUG, "%s: the route to the edge is the same", why);
        return;
    }
    /* A new interface with the same address (a NAT behind it, perhaps) migrates as well: the
     * new socket's port makes the edge validate the new path at once. */
    (void)syn_udp_set_buffers(fd, 2 * 1024 * 1024, NULL, NULL); /* as tunnel.c's socket */
    addr_str(&t->local, from, sizeof(from));
    addr_str(&local, to, sizeof(to));
    int rv = syn_qconn_migrate(t->qc, fd, &local);
    if (rv != 0) {
        close(fd);
        snprintf(detail, sizeof(detail), "%s: migration from %s to %s impossible (%s)", why, from,
                 to,
                 rv == SYNESIS_ERR_WOULD_BLOCK ? "the edge gave no spare connection ID"
                                               : synesis_error_name(rv));
        fall_back(t, detail);
        return;
    }
    /* The old socket's address is gone or no longer routed: datagrams still on their way to it
     * are lost, which QUIC recovers like any loss. */
    ev_io_stop(t->loop, &t->rio);
    close(t->fd);
    t->fd = fd;
    t->local = local;
    t->pending_sock_err = 0;
    ev_io_set(&t->rio, fd, EV_READ);
    ev_io_start(t->loop, &t->rio);
    t->mig.started_ns = since_ns;
    t->mig.oif = oif;
    syn_tunnel_log(t, SYNESIS_LOG_INFO, "%s: migrating from %s to %s", why, from, to);
}

/* The route check runs from the timer, never from the caller's stack: the call may come from a
 * callback that runs inside ngtcp2 (stream data), where the connection must not be migrated.
 * delay: 0 for the application's call, the debounce for netlink events (each restarts it). */
static void schedule(synesis_tunnel *t, double delay, int by_call) {
    if (!ev_is_active(&t->mig.debounce)) {
        t->mig.event_ns = syn_now_ns(); /* the change began: the gap counts from here */
        t->mig.by_call = 0;
    }
    t->mig.by_call |= by_call;
    ev_timer_stop(t->loop, &t->mig.debounce);
    ev_timer_set(&t->mig.debounce, delay, 0.);
    ev_timer_start(t->loop, &t->mig.debounce);
}

SYNESIS_API int synesis_tunnel_network_changed(synesis_tunnel *t) {
    if (!t)
        return SYNESIS_ERR_INVALID_ARGUMENT;
    if (t->state.kind != SYNESIS_STATE_CONNECTED || !t->qc) {
        syn_tunnel_log(t, SYNESIS_LOG_DEBUG, "network changed: not connected, nothing to move");
        return 0;
    }
    schedule(t, 0., 1);
    return 0;
}

void syn_migration_path_validated(syn_qconn *qc, int result, const syn_sockaddr *remote,
                                  const syn_sockaddr *old_remote) {
    (void)remote;
    (void)old_remote;
    synesis_tunnel *t = syn_qconn_owner(qc);
    if (qc != t->qc || !t->mig.started_ns || result < 0)
        return; /* not ours, or replaced by a newer migration (which keeps its own start) */
    char at[64];
    addr_str(&t->local, at, sizeof(at));
    if (result == 1) {
        double gap = (double)(syn_now_ns() - t->mig.started_ns) / 1e9;
        t->stats.migrations++;
        t->stats.last_migration_gap = gap;
        t->mig.started_ns = 0;
        syn_tunnel_log(t, SYNESIS_LOG_INFO, "migrated to %s: path validated, gap %.1f ms", at,
                       gap * 1e3);
        return;
    }
    char detail[SYNESIS_DETAIL_MAX];
    snprintf(detail, sizeof(detail), "the edge did not answer on the new path from %s", at);
    fall_back(t, detail); /* syn_qconn_abort is deferred while ngtcp2 runs */
}

/* ---- the netlink watcher (config.watch_network) ---- */

static void debounce_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    synesis_tunnel *t = w->data;
    syn_tunnel_enter(t);
    migrate(t, t->mig.by_call ? "network changed" : "route change", t->mig.event_ns);
    syn_tunnel_leave(t);
}

#ifdef __linux__
static void nl_cb(struct ev_loop *loop, ev_io *w, int revents) {
    (void)loop;
    (void)revents;
    synesis_tunnel *t = w->data;
    union {
        struct nlmsghdr h;
        char b[8192];
    } buf;
    int changed = 0;
    for (;;) {
        ssize_t n = recv(t->mig.nl_fd, &buf, sizeof(buf), 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == ENOBUFS) /* messages were dropped: something changed */
                changed = 1;
            break;
        }
        if (n == 0)
            break;
        for (struct nlmsghdr *h = &buf.h; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
            t->mig.nl_events++;
            switch (h->nlmsg_type) {
            case RTM_NEWADDR:
            case RTM_DELADDR:
            case RTM_NEWROUTE:
            case RTM_DELROUTE:
                changed = 1;
                break;
            default:
                break;
            }
        }
    }
    if (changed) /* restarted by every event: runs once the burst is over */
        schedule(t, SYN_NETLINK_DEBOUNCE, 0);
}

static int nl_open(synesis_tunnel *t) {
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0)
        return -errno;
    struct sockaddr_nl sa;
    memset(&sa, 0, sizeof(sa));
    sa.nl_family = AF_NETLINK;
    sa.nl_groups = RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    t->mig.nl_fd = fd;
    ev_io_init(&t->mig.nl_io, nl_cb, fd, EV_READ);
    t->mig.nl_io.data = t;
    ev_io_start(t->loop, &t->mig.nl_io);
    return 0;
}
#else
static int nl_open(synesis_tunnel *t) {
    (void)t;
    return -ENOSYS;
}
#endif

void syn_migration_init(synesis_tunnel *t) {
    t->mig.nl_fd = -1;
    ev_timer_init(&t->mig.debounce, debounce_cb, 0., 0.);
    t->mig.debounce.data = t;
}

void syn_migration_conn_up(synesis_tunnel *t) {
    t->mig.started_ns = 0;
    t->mig.oif = route_oif(&t->remote);
    if (!t->cfg.watch_network || t->mig.nl_fd >= 0)
        return;
    int rv = nl_open(t);
    if (rv < 0)
        syn_tunnel_log(t, SYNESIS_LOG_WARN,
                       "watch_network: no NETLINK_ROUTE socket (%s): network changes are not "
                       "followed",
                       strerror(-rv));
}

void syn_migration_conn_down(synesis_tunnel *t) {
    t->mig.started_ns = 0;
    ev_timer_stop(t->loop, &t->mig.debounce);
    if (t->mig.nl_fd >= 0) {
        ev_io_stop(t->loop, &t->mig.nl_io);
        close(t->mig.nl_fd);
        t->mig.nl_fd = -1;
    }
}

uint64_t syn_migration_nl_events(const synesis_tunnel *t) { return t->mig.nl_events; }

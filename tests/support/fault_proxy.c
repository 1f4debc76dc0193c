/* UDP fault proxy for tests: see fault_proxy.h. */
#include "fault_proxy.h"

#include "internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define UP 0
#define DOWN 1
#define READ_BATCH 64 /* datagrams read per wake-up, so one busy socket cannot starve the loop */

typedef struct fp_client {
    syn_fault_proxy *p;
    struct sockaddr_storage addr; /* the client's address, as seen on the listening socket */
    socklen_t addr_len;
    int fd; /* its upstream socket */
    ev_io io;
    struct fp_client *next;
} fp_client;

typedef struct fp_pkt {
    uint64_t due_ns; /* syn_now_ns() time at which it may be sent */
    uint64_t seq;    /* tie-break: equal due times go out in arrival order */
    int dir;
    fp_client *c; /* clients live as long as the proxy */
    size_t len;
    unsigned char data[];
} fp_pkt;

struct syn_fault_proxy {
    struct ev_loop *loop;
    int lfd;
    ev_io lio;
    struct sockaddr_storage listen;
    socklen_t listen_len;
    struct sockaddr_storage up;
    socklen_t up_len;
    syn_fault_dir cfg[2];
    int blackhole;
    uint64_t rng[2];
    fp_client *clients;
    size_t nclients;
    fp_pkt **heap; /* min-heap on (due_ns, seq) */
    size_t nheap, capheap;
    fp_pkt *held[2];
    ev_timer hold_timer[2];
    int in_burst[2];
    uint64_t burst_since_ns[2]; /* when the current burst began */
    uint64_t link_free_ns[2];   /* the bottleneck is busy until then */
    uint64_t last_due_ns[2];    /* the latest due time given to a copy (keep_order) */
    ev_timer timer;
    size_t queued, queued_bytes; /* heap + held */
    uint64_t seq;
    syn_fault_stats st;
    unsigned char buf[65536];
};

/* splitmix64: tiny, fast and good enough for test impairments. */
static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15u);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

static double rng_unit(syn_fault_proxy *p, int dir) {
    return (double)(rng_next(&p->rng[dir]) >> 11) * 0x1.0p-53;
}

static int chance(syn_fault_proxy *p, int dir, double prob) { return rng_unit(p, dir) < prob; }

static int addr_ok(const struct sockaddr *sa, socklen_t len) {
    return sa && ((sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) ||
                  (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)));
}

static socklen_t addr_len(int family) {
    return family == AF_INET ? (socklen_t)sizeof(struct sockaddr_in)
                             : (socklen_t)sizeof(struct sockaddr_in6);
}

static int udp_socket(int family) {
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1, big = 1 << 20;
    if (family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big)); /* best effort: bursts in tests */
    return fd;
}

/* An upstream socket bound to the wildcard address of family with an ephemeral port. */
static int upstream_socket(int family) {
    int fd = udp_socket(family);
    if (fd < 0)
        return -1;
    struct sockaddr_storage any;
    memset(&any, 0, sizeof(any));
    any.ss_family = (sa_family_t)family;
    if (bind(fd, (struct sockaddr *)&any, addr_len(family)) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* ---- the queue ---- */

static int pkt_before(const fp_pkt *a, const fp_pkt *b) {
    return a->due_ns < b->due_ns || (a->due_ns == b->due_ns && a->seq < b->seq);
}

static int heap_push(syn_fault_proxy *p, fp_pkt *k) {
    if (p->nheap == p->capheap) {
        size_t cap = p->capheap ? p->capheap * 2 : 64;
        fp_pkt **h = realloc(p->heap, cap * sizeof(*h));
        if (!h)
            return -1;
        p->heap = h;
        p->capheap = cap;
    }
    size_t i = p->nheap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!pkt_before(k, p->heap[parent]))
            break;
        p->heap[i] = p->heap[parent];
        i = parent;
    }
    p->heap[i] = k;
    return 0;
}

static fp_pkt *heap_pop(syn_fault_proxy *p) {
    fp_pkt *top = p->heap[0];
    fp_pkt *last = p->heap[--p->nheap];
    size_t i = 0, n = p->nheap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && pkt_before(p->heap[c + 1], p->heap[c]))
            c++;
        if (!pkt_before(p->heap[c], last))
            break;
        p->heap[i] = p->heap[c];
        i = c;
    }
    if (n > 0)
        p->heap[i] = last;
    return top;
}

static void count_drop(syn_fault_proxy *p, int dir) {
    if (dir == UP)
        p->st.dropped_up++;
    else
        p->st.dropped_down++;
}

static void pkt_free(syn_fault_proxy *p, fp_pkt *k) {
    p->queued--;
    p->queued_bytes -= k->len;
    free(k);
}

/* A queued copy of data, or NULL (counted as overflow) when the queue is full. */
static fp_pkt *pkt_new(syn_fault_proxy *p, int dir, fp_client *c, const unsigned char *data,
                       size_t len, uint64_t due_ns) {
    fp_pkt *k = NULL;
    if (p->queued < SYN_FAULT_MAX_QUEUED && p->queued_bytes + len <= SYN_FAULT_MAX_QUEUED_BYTES)
        k = malloc(sizeof(*k) + len);
    if (!k) {
        p->st.overflowed++;
        count_drop(p, dir);
        return NULL;
    }
    k->due_ns = due_ns;
    k->seq = ++p->seq;
    k->dir = dir;
    k->c = c;
    k->len = len;
    memcpy(k->data, data, len);
    p->queued++;
    p->queued_bytes += len;
    return k;
}

static void enqueue(syn_fault_proxy *p, fp_pkt *k) {
    if (heap_push(p, k) != 0) {
        p->st.overflowed++;
        count_drop(p, k->dir);
        pkt_free(p, k);
    }
}

static void send_now(syn_fault_proxy *p, int dir, fp_client *c, const unsigned char *data,
                     size_t len) {
    if (p->blackhole) {
        count_drop(p, dir);
        return;
    }
    ssize_t n;
    if (dir == UP)
        n = sendto(c->fd, data, len, 0, (const struct sockaddr *)&p->up, p->up_len);
    else
        n = sendto(p->lfd, data, len, 0, (const struct sockaddr *)&c->addr, c->addr_len);
    if (n < 0)
        count_drop(p, dir);
    else if (dir == UP) {
        p->st.fwd_up++;
        p->st.bytes_up += len;
    } else {
        p->st.fwd_down++;
        p->st.bytes_down += len;
    }
}

/* Sends every queued datagram that is due and re-arms the timer for the next one. */
static void flush(syn_fault_proxy *p) {
    uint64_t now = syn_now_ns();
    while (p->nheap > 0 && p->heap[0]->due_ns <= now) {
        fp_pkt *k = heap_pop(p);
        send_now(p, k->dir, k->c, k->data, k->len);
        pkt_free(p, k);
    }
    ev_timer_stop(p->loop, &p->timer);
    if (p->nheap > 0) {
        /* libev may fire a little early against this clock; flush then simply re-arms. */
        ev_timer_set(&p->timer, (double)(p->heap[0]->due_ns - now) / 1e9 + 1e-4, 0.);
        ev_timer_start(p->loop, &p->timer);
    }
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    flush(w->data);
}

/* Puts the held datagram of dir into the queue, due no earlier than not_before. */
static void release_held(syn_fault_proxy *p, int dir, uint64_t not_before) {
    fp_pkt *h = p->held[dir]; /* callers know there is one */
    p->held[dir] = NULL;
    ev_timer_stop(p->loop, &p->hold_timer[dir]);
    if (h->due_ns < not_before)
        h->due_ns = not_before;
    h->seq = ++p->seq; /* after whatever was queued before the release */
    enqueue(p, h);
}

static void on_hold_timer(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    syn_fault_proxy *p = w->data;
    int dir = w == &p->hold_timer[UP] ? UP : DOWN;
    release_held(p, dir, syn_now_ns());
    flush(p);
}

/* The IP and UDP header bytes of a datagram that arrived in direction dir. */
static size_t header_bytes(const syn_fault_proxy *p, int dir) {
    int family = dir == UP ? p->listen.ss_family : p->up.ss_family;
    return 8 + (family == AF_INET6 ? 40 : 20);
}

/* Passes a copy of len bytes through the bottleneck of dir at time now: returns 0 and the time it
 * leaves the link in *out, or -1 when the FIFO is full (tail drop). */
static int bottleneck(syn_fault_proxy *p, int dir, size_t len, uint64_t now, uint64_t *out) {
    const syn_fault_dir *f = &p->cfg[dir];
    if (!(f->rate_bps > 0)) {
        *out = now;
        return 0;
    }
    uint64_t start = p->link_free_ns[dir] > now ? p->link_free_ns[dir] : now;
    double backlog = (double)(start - now) / 1e9 * f->rate_bps / 8; /* bytes still queued */
    if (f->queue_bytes && backlog + (double)len > (double)f->queue_bytes)
        return -1;
    p->link_free_ns[dir] = start + (uint64_t)((double)len * 8 / f->rate_bps * 1e9);
    *out = p->link_free_ns[dir];
    return 0;
}

/* One datagram arriving in direction dir for/from client c. */
static void impair(syn_fault_proxy *p, int dir, fp_client *c, const unsigned char *data,
                   size_t len) {
    const syn_fault_dir *f = &p->cfg[dir];
    int drop = chance(p, dir, f->drop);
    int dup = chance(p, dir, f->duplicate);
    int hold = chance(p, dir, f->reorder);
    if (f->burst_start > 0 || p->in_burst[dir]) { /* one more draw only when bursts are on */
        double u = rng_unit(p, dir);
        uint64_t t = syn_now_ns();
        if (p->in_burst[dir])
            p->in_burst[dir] =
                !(u < f->burst_end) && f->burst_start > 0 &&
                !(f->burst_max_ms > 0 && t - p->burst_since_ns[dir] >= f->burst_max_ms * 1e6);
        else if ((p->in_burst[dir] = u < f->burst_start))
            p->burst_since_ns[dir] = t;
        if (p->in_burst[dir] && !p->blackhole && !drop) {
            p->st.burst_dropped++;
            drop = 1;
        }
    }
    if (!p->blackhole && !drop && f->mtu && len + header_bytes(p, dir) > f->mtu) {
        p->st.too_big++;
        drop = 1;
    }
    if (p->blackhole || drop) {
        count_drop(p, dir);
        return;
    }
    int was_held = p->held[dir] != NULL;
    hold = hold && !was_held;
    uint64_t now = syn_now_ns(), last_due = now;
    if (dup)
        p->st.duplicated++;
    for (int i = 0; i < 1 + dup; i++) {
        double ms = f->delay_ms + f->jitter_ms * rng_unit(p, dir);
        uint64_t left;
        if (bottleneck(p, dir, len, now, &left) != 0) {
            p->st.tail_dropped++;
            count_drop(p, dir);
            if (i == 0)
                hold = 0;
            continue;
        }
        uint64_t delay_ns = (left - now) + (ms > 0 ? (uint64_t)(ms * 1e6) : 0);
        if (f->keep_order && now + delay_ns < p->last_due_ns[dir])
            delay_ns = p->last_due_ns[dir] - now;
        uint64_t due = now + delay_ns;
        if (due > p->last_due_ns[dir])
            p->last_due_ns[dir] = due;
        if (due > last_due)
            last_due = due;
        if (delay_ns > 0)
            p->st.delayed++;
        if (i == 0 && hold) {
            fp_pkt *k = pkt_new(p, dir, c, data, len, due);
            if (k) {
                p->held[dir] = k;
                p->st.reordered++;
                ev_timer_set(&p->hold_timer[dir], SYN_FAULT_REORDER_HOLD_MS / 1000.0, 0.);
                ev_timer_start(p->loop, &p->hold_timer[dir]);
            }
        } else if (delay_ns == 0 && p->nheap == 0) {
            send_now(p, dir, c, data, len);
        } else {
            fp_pkt *k = pkt_new(p, dir, c, data, len, due);
            if (k)
                enqueue(p, k);
        }
    }
    if (was_held)
        release_held(p, dir, last_due);
    flush(p);
}

/* ---- sockets ---- */

static void on_upstream_readable(struct ev_loop *loop, ev_io *w, int revents);

static int client_attach_socket(fp_client *c, int family) {
    int fd = upstream_socket(family);
    if (fd < 0)
        return -1;
    if (c->fd >= 0) {
        ev_io_stop(c->p->loop, &c->io);
        close(c->fd);
    }
    c->fd = fd;
    ev_io_init(&c->io, on_upstream_readable, fd, EV_READ);
    c->io.data = c;
    ev_io_start(c->p->loop, &c->io);
    return 0;
}

static fp_client *client_for(syn_fault_proxy *p, const struct sockaddr_storage *from,
                             socklen_t from_len) {
    for (fp_client *c = p->clients; c; c = c->next)
        if (c->addr_len == from_len && memcmp(&c->addr, from, from_len) == 0)
            return c;
    if (p->nclients >= SYN_FAULT_MAX_CLIENTS)
        return NULL;
    fp_client *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->p = p;
    c->fd = -1;
    memcpy(&c->addr, from, from_len);
    c->addr_len = from_len;
    if (client_attach_socket(c, p->up.ss_family) != 0) {
        free(c);
        return NULL;
    }
    c->next = p->clients;
    p->clients = c;
    p->nclients++;
    return c;
}

static void on_listen_readable(struct ev_loop *loop, ev_io *w, int revents) {
    (void)loop;
    (void)revents;
    syn_fault_proxy *p = w->data;
    for (int i = 0; i < READ_BATCH; i++) {
        struct sockaddr_storage from;
        socklen_t from_len = sizeof(from);
        memset(&from, 0, sizeof(from));
        ssize_t n =
            recvfrom(p->lfd, p->buf, sizeof(p->buf), 0, (struct sockaddr *)&from, &from_len);
        if (n < 0)
            return;
        fp_client *c = client_for(p, &from, from_len);
        if (!c) {
            p->st.dropped_up++;
            continue;
        }
        impair(p, UP, c, p->buf, (size_t)n);
    }
}

static void on_upstream_readable(struct ev_loop *loop, ev_io *w, int revents) {
    (void)loop;
    (void)revents;
    fp_client *c = w->data;
    syn_fault_proxy *p = c->p;
    for (int i = 0; i < READ_BATCH; i++) {
        ssize_t n = recv(c->fd, p->buf, sizeof(p->buf), 0);
        if (n < 0)
            return;
        impair(p, DOWN, c, p->buf, (size_t)n);
    }
}

/* ---- API ---- */

syn_fault_proxy *syn_fault_proxy_new(struct ev_loop *loop, const struct sockaddr *listen_addr,
                                     socklen_t listen_len, const struct sockaddr *upstream,
                                     socklen_t upstream_len, uint64_t seed) {
    if (!loop || !addr_ok(listen_addr, listen_len) || !addr_ok(upstream, upstream_len)) {
        errno = EINVAL;
        return NULL;
    }
    syn_fault_proxy *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->loop = loop;
    p->lfd = udp_socket(listen_addr->sa_family);
    if (p->lfd < 0)
        goto fail;
    socklen_t ll = addr_len(listen_addr->sa_family);
    p->listen_len = sizeof(p->listen);
    if (bind(p->lfd, listen_addr, ll) != 0 ||
        getsockname(p->lfd, (struct sockaddr *)&p->listen, &p->listen_len) != 0)
        goto fail;
    p->up_len = addr_len(upstream->sa_family);
    memcpy(&p->up, upstream, p->up_len);
    p->rng[UP] = seed;
    p->rng[DOWN] = seed ^ 0xD1B54A32D192ED03u;

    ev_io_init(&p->lio, on_listen_readable, p->lfd, EV_READ);
    p->lio.data = p;
    ev_io_start(loop, &p->lio);
    ev_init(&p->timer, on_timer);
    p->timer.data = p;
    for (int d = 0; d < 2; d++) {
        ev_init(&p->hold_timer[d], on_hold_timer);
        p->hold_timer[d].data = p;
    }
    return p;
fail:;
    int e = errno;
    if (p->lfd >= 0)
        close(p->lfd);
    free(p);
    errno = e;
    return NULL;
}

uint16_t syn_fault_proxy_port(const syn_fault_proxy *p) {
    if (p->listen.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)(const void *)&p->listen)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)(const void *)&p->listen)->sin6_port);
}

socklen_t syn_fault_proxy_addr(const syn_fault_proxy *p, struct sockaddr_storage *out) {
    memcpy(out, &p->listen, sizeof(*out));
    return p->listen_len;
}

void syn_fault_proxy_set(syn_fault_proxy *p, const syn_fault_dir *to_upstream,
                         const syn_fault_dir *to_client) {
    static const syn_fault_dir none;
    p->cfg[UP] = to_upstream ? *to_upstream : none;
    p->cfg[DOWN] = to_client ? *to_client : none;
}

void syn_fault_proxy_blackhole(syn_fault_proxy *p, int on) { p->blackhole = on != 0; }

static int rebind_all(syn_fault_proxy *p) {
    for (fp_client *c = p->clients; c; c = c->next)
        if (client_attach_socket(c, p->up.ss_family) != 0)
            return SYNESIS_ERR_SOCKET;
    return 0;
}

int syn_fault_proxy_rebind(syn_fault_proxy *p) { return rebind_all(p); }

int syn_fault_proxy_set_upstream(syn_fault_proxy *p, const struct sockaddr *upstream,
                                 socklen_t len) {
    if (!addr_ok(upstream, len))
        return SYNESIS_ERR_INVALID_ARGUMENT;
    int family_changed = upstream->sa_family != p->up.ss_family;
    memset(&p->up, 0, sizeof(p->up));
    p->up_len = addr_len(upstream->sa_family);
    memcpy(&p->up, upstream, p->up_len);
    return family_changed ? rebind_all(p) : 0;
}

void syn_fault_proxy_stats(const syn_fault_proxy *p, syn_fault_stats *out) {
    *out = p->st;
    out->queued = p->queued;
}

void syn_fault_proxy_free(syn_fault_proxy *p) {
    if (!p)
        return;
    ev_io_stop(p->loop, &p->lio);
    close(p->lfd);
    ev_timer_stop(p->loop, &p->timer);
    for (int d = 0; d < 2; d++) {
        ev_timer_stop(p->loop, &p->hold_timer[d]);
        free(p->held[d]);
    }
    while (p->clients) {
        fp_client *c = p->clients;
        p->clients = c->next;
        ev_io_stop(p->loop, &c->io);
        close(c->fd);
        free(c);
    }
    for (size_t i = 0; i < p->nheap; i++)
        free(p->heap[i]);
    free(p->heap);
    free(p);
}

syn_fault_proxy *syn_fault_proxy_new_tcp_free(struct ev_loop *loop,
                                              const struct sockaddr *listen_addr,
                                              socklen_t listen_len, const struct sockaddr *upstream,
                                              socklen_t upstream_len, uint64_t seed) {
    for (int tries = 0; tries < 32; tries++) {
        syn_fault_proxy *p =
            syn_fault_proxy_new(loop, listen_addr, listen_len, upstream, upstream_len, seed);
        if (!p)
            return NULL;
        struct sockaddr_storage a;
        memcpy(&a, listen_addr, listen_len);
        uint16_t port = htons(syn_fault_proxy_port(p));
        if (a.ss_family == AF_INET)
            ((struct sockaddr_in *)&a)->sin_port = port;
        else
            ((struct sockaddr_in6 *)&a)->sin6_port = port;
        int fd = socket(a.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        int ok = fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0 &&
                 bind(fd, (struct sockaddr *)&a, listen_len) == 0;
        if (fd >= 0)
            close(fd);
        if (ok)
            return p;
        syn_fault_proxy_free(p);
    }
    errno = EADDRINUSE;
    return NULL;
}

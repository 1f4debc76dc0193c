/* QUIC over TCP: TLS 1.3 links carrying length-framed QUIC packets, and HTTP CONNECT proxies
 * (tcplink.h). */
#include "tcplink.h"

#include "tcplink_test.h"
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Decrypted bytes held while frames are cut out of them: room for one whole frame and its
 * header, and a bit more so a small frame after it rarely needs a second read. */
#define RBUF_SIZE (2 * (2 + SYN_TCPLINK_MAX_FRAME))
/* Frames handed out per event before the loop gets a turn (fairness). */
#define FRAMES_PER_EVENT 64
/* The proxy's response headers, at most. */
#define PROXY_RESP_MAX 8192
/* Bytes given to one SSL_write (one TLS record at most). */
#define WRITE_CHUNK 16384
/* Partial writes from a queue that may move between retries; and OpenSSL's record buffers
 * (about 17 KB each way) released while idle: an idle link holds a few KB, not 35. */
#define LINK_SSL_MODES                                                                             \
    (SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS)

enum link_state { ST_CONNECT, ST_PROXY_SEND, ST_PROXY_RECV, ST_TLS, ST_UP, ST_DOWN };

struct syn_tcplink {
    struct ev_loop *loop;
    syn_tcplink_ops ops;
    void *owner;
    int fd;
    int server;
    enum link_state state;
    SSL *ssl;
    BIO_METHOD *bio; /* the socket BIO's methods (below), the link's own: no global */
    ev_io io;
    ev_timer timer; /* the handshake's deadline; then, at 0 s, a read that stopped at the bound */
    int depth;      /* nesting of our callbacks: a free inside waits for the outermost */
    int dead;       /* freed by the owner (inside a callback): released on the way out */
    int want_writable;
    int proxy_auth;       /* credentials were sent to the proxy */
    int read_wants_write; /* SSL_read needs the socket writable first (a KeyUpdate's answer) */
    syn_sockaddr local, remote;
    double timeout;
    char target[300];     /* "host:port" for the CONNECT and messages */
    char proxy_name[300]; /* the proxy's "host:port", or "" when direct */
    char *req; /* the CONNECT request (client, with a proxy), then its response headers */
    size_t req_len, req_off;
    uint8_t *q; /* framed bytes to send */
    size_t q_off, q_len, q_cap;
    uint64_t dropped; /* frames refused at SYN_TCPLINK_MAX_QUEUED */
    size_t r_len;
    uint8_t r[RBUF_SIZE];
};

static void io_cb(struct ev_loop *loop, ev_io *w, int revents);
static void read_frames(syn_tcplink *l);
static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents);

static void destroy(syn_tcplink *l) {
    ev_io_stop(l->loop, &l->io);
    ev_timer_stop(l->loop, &l->timer);
    SSL_free(l->ssl);
    BIO_meth_free(l->bio); /* after SSL_free: the BIO used it */
    if (l->fd >= 0)
        close(l->fd);
    free(l->req);
    free(l->q);
    free(l);
}

static void enter(syn_tcplink *l) { l->depth++; }

/* Inside io_cb or timer_cb, which hold the link (their leave() releases it): 1 when an op freed
 * it, so nothing more may be done with it but return. */
static int inner_leave(syn_tcplink *l) {
    l->depth--;
    return l->dead;
}

/* Returns 1 when the link is gone (freed, or being freed by an outer frame): touch nothing. */
static int leave(syn_tcplink *l) {
    if (--l->depth == 0 && l->dead) {
        destroy(l);
        return 1;
    }
    return l->dead;
}

static void set_events(syn_tcplink *l, int events) {
    if (l->fd < 0)
        return;
    if ((l->io.events & (EV_READ | EV_WRITE)) == events && ev_is_active(&l->io))
        return;
    ev_io_stop(l->loop, &l->io);
    if (events) {
        ev_io_set(&l->io, l->fd, events);
        ev_io_start(l->loop, &l->io);
    }
}

static const char *peer_name(const syn_tcplink *l, char *buf, size_t len) {
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    const struct sockaddr *sa = (const struct sockaddr *)&l->remote.ss;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        port = ntohs(in->sin_port);
        snprintf(buf, len, "%s:%u", host, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const void *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
        snprintf(buf, len, "[%s]:%u", host, port);
    } else {
        snprintf(buf, len, "?");
    }
    return buf;
}

/* The link is down: everything released but the struct, then ops.closed (the owner frees). */
static void go_down(syn_tcplink *l, int err, const char *detail) {
    if (l->state == ST_DOWN)
        return;
    l->state = ST_DOWN;
    ev_io_stop(l->loop, &l->io);
    ev_timer_stop(l->loop, &l->timer);
    if (l->fd >= 0) {
        close(l->fd);
        l->fd = -1;
    }
    free(l->req);
    l->req = NULL;
    free(l->q);
    l->q = NULL;
    l->q_off = l->q_len = l->q_cap = 0;
    syn_ossl_clear();
    enter(l);
    if (l->ops.closed)
        l->ops.closed(l, err, detail);
    inner_leave(l);
}

static void fail(syn_tcplink *l, int err, const char *fmt, ...) SYNESIS_PRINTF(3, 4);
static void fail(syn_tcplink *l, int err, const char *fmt, ...) {
    char detail[SYNESIS_DETAIL_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    go_down(l, err, detail);
}

static syn_tcplink *link_new(struct ev_loop *loop, const syn_tcplink_ops *ops, void *owner) {
    syn_tcplink *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->loop = loop;
    l->ops = *ops;
    l->owner = owner;
    l->fd = -1;
    ev_io_init(&l->io, io_cb, -1, EV_READ);
    l->io.data = l;
    ev_timer_init(&l->timer, timer_cb, 0., 0.);
    l->timer.data = l;
    return l;
}

/* ---- the socket under TLS ------------------------------------------------------------------ */

/* OpenSSL's socket BIO writes with write(): a peer gone raises SIGPIPE, which kills a process that
 * did not ignore it, and a library must not ask that of its application. So the links' BIO is
 * OpenSSL's socket BIO with send(MSG_NOSIGNAL) and recv() in place of write() and read(). */

static int bio_fd(BIO *b) { return (int)(intptr_t)BIO_get_data(b); }

static int bio_write(BIO *b, const char *data, int len) {
    int fd = bio_fd(b);
    BIO_clear_retry_flags(b);
    ssize_t n;
    do
        n = send(fd, data, (size_t)len, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        BIO_set_retry_write(b);
    return (int)n;
}

static int bio_read(BIO *b, char *data, int len) {
    int fd = bio_fd(b);
    BIO_clear_retry_flags(b);
    ssize_t n;
    do
        n = recv(fd, data, (size_t)len, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        BIO_set_retry_read(b);
    else if (n == 0)
        BIO_set_flags(b, BIO_FLAGS_IN_EOF); /* (what OpenSSL's socket BIO records for SSL) */
    return (int)n;
}

static int bio_puts(BIO *b, const char *s) { return bio_write(b, s, (int)strlen(s)); }

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr) {
    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
    case BIO_CTRL_DUP:
        return 1;
    case BIO_CTRL_EOF:
        return BIO_test_flags(b, BIO_FLAGS_IN_EOF) ? 1 : 0;
    default:
        return 0;
    }
}

/* The methods are made per link (a hundred bytes) rather than once for the process: no global
 * state, and an allocation failure fails this link only, not every later one. */
static BIO_METHOD *bio_methods_new(void) {
    BIO_METHOD *m = BIO_meth_new(BIO_TYPE_SOCKET, "synesis tcplink socket");
    if (m && (BIO_meth_set_write(m, bio_write) != 1 || BIO_meth_set_read(m, bio_read) != 1 ||
              BIO_meth_set_puts(m, bio_puts) != 1 || BIO_meth_set_ctrl(m, bio_ctrl) != 1)) {
        BIO_meth_free(m);
        m = NULL;
    }
    return m;
}

/* ---- the TLS handshake --------------------------------------------------------------------- */

static int tls_start(syn_tcplink *l, char *detail) {
    syn_ossl_clear();
    if (!l->ssl) /* (the server's SSL is made at accept) */
        return syn_fail(detail, SYNESIS_ERR_INTERNAL, "no SSL");
    if (!l->bio)
        l->bio = bio_methods_new();
    BIO *b = l->bio ? BIO_new(l->bio) : NULL;
    if (!b)
        return syn_fail_ossl(detail, SYNESIS_ERR_NOMEM, "cannot make the link's BIO");
    BIO_set_data(b, (void *)(intptr_t)l->fd); /* (the link closes the socket, not the BIO) */
    BIO_set_init(b, 1);
    SSL_set_bio(l->ssl, b, b);
    l->state = ST_TLS;
    return 0;
}

/* After the handshake: ALPN settled, the deadline off, ops.up. */
static void tls_done(syn_tcplink *l) {
    const unsigned char *alpn = NULL;
    unsigned int alpn_len = 0;
    SSL_get0_alpn_selected(l->ssl, &alpn, &alpn_len);
    if (alpn_len != strlen(SYN_TCPLINK_ALPN) || memcmp(alpn, SYN_TCPLINK_ALPN, alpn_len) != 0) {
        char who[64];
        fail(l, SYNESIS_ERR_ALPN, "%s %s selected %s%.*s%s instead of %s",
             l->server ? "the link from" : "the edge at", peer_name(l, who, sizeof(who)),
             alpn_len ? "\"" : "no application protocol", (int)alpn_len,
             alpn ? (const char *)alpn : "", alpn_len ? "\"" : "", SYN_TCPLINK_ALPN);
        return;
    }
    ev_timer_stop(l->loop, &l->timer);
    l->state = ST_UP;
    set_events(l, EV_READ | (l->q_len > l->q_off ? EV_WRITE : 0));
    enter(l);
    if (l->ops.up)
        l->ops.up(l);
    if (inner_leave(l) || l->state != ST_UP)
        return;
    /* Frames the peer sent right behind its last handshake message may already be in OpenSSL's
     * buffers, with nothing left in the socket to say so. */
    read_frames(l);
}

static void tls_step(syn_tcplink *l) {
    syn_ossl_clear();
    int rv = SSL_do_handshake(l->ssl);
    if (rv == 1) {
        tls_done(l);
        return;
    }
    int e = SSL_get_error(l->ssl, rv);
    if (e == SSL_ERROR_WANT_READ) {
        set_events(l, EV_READ);
        return;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        set_events(l, EV_WRITE);
        return;
    }
    char detail[SYNESIS_DETAIL_MAX], who[64];
    int syserr = e == SSL_ERROR_SYSCALL ? errno : 0;
    if (l->server) {
        char reason[200] = "";
        unsigned long err;
        int alpn = 0;
        while ((err = ERR_get_error()) != 0) {
            if (ERR_GET_REASON(err) == SSL_R_NO_APPLICATION_PROTOCOL ||
                ERR_GET_REASON(err) == SSL_R_CALLBACK_FAILED)
                alpn = 1;
            const char *s = ERR_reason_error_string(err);
            if (s)
                snprintf(reason, sizeof(reason), "%s", s);
        }
        if (!reason[0])
            snprintf(reason, sizeof(reason), "%s",
                     syserr ? strerror(syserr) : "the peer closed the connection");
        fail(l, alpn ? SYNESIS_ERR_ALPN : SYNESIS_ERR_TLS_HANDSHAKE,
             "TLS handshake with %s failed: %s", peer_name(l, who, sizeof(who)), reason);
        return;
    }
    if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 &&
        SSL_get_verify_result(l->ssl) == X509_V_OK) {
        /* No TLS verdict: the connection broke (or the edge hung up) mid-handshake. */
        fail(l, SYNESIS_ERR_TLS_HANDSHAKE,
             "the edge at %s%s%s closed the connection during the TLS "
             "handshake%s%s",
             peer_name(l, who, sizeof(who)), l->proxy_name[0] ? " via proxy " : "", l->proxy_name,
             syserr ? ": " : "", syserr ? strerror(syserr) : "");
        return;
    }
    int rc = syn_tls_client_handshake_error(l->ssl, 0, detail);
    go_down(l, rc, detail);
}

/* ---- the proxy (client) -------------------------------------------------------------------- */

static int proxy_request(syn_tcplink *l, const syn_proxy *p, char *detail) {
    size_t cap = 512 + strlen(l->target) * 2 + (p->basic_auth ? strlen(p->basic_auth) : 0);
    l->req = malloc(cap);
    if (!l->req)
        return syn_fail(detail, SYNESIS_ERR_NOMEM, "out of memory");
    int n = snprintf(l->req, cap,
                     "CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s%s%sUser-Agent: synesis-tunnel\r\n\r\n",
                     l->target, l->target, p->basic_auth ? "Proxy-Authorization: Basic " : "",
                     p->basic_auth ? p->basic_auth : "", p->basic_auth ? "\r\n" : "");
    if (n < 0 || (size_t)n >= cap)
        return syn_fail(detail, SYNESIS_ERR_INTERNAL, "CONNECT request too long");
    l->req_len = (size_t)n;
    l->req_off = 0;
    return 0;
}

static void proxy_send(syn_tcplink *l) {
    while (l->req_off < l->req_len) {
        ssize_t n = send(l->fd, l->req + l->req_off, l->req_len - l->req_off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_events(l, EV_WRITE);
            return;
        }
        if (n < 0) {
            fail(l, SYNESIS_ERR_SOCKET, "proxy %s: cannot send CONNECT %s: %s", l->proxy_name,
                 l->target, strerror(errno));
            return;
        }
        l->req_off += (size_t)n;
    }
    /* The buffer now collects the response headers. */
    free(l->req);
    l->req = malloc(PROXY_RESP_MAX + 1);
    if (!l->req) {
        fail(l, SYNESIS_ERR_NOMEM, "out of memory");
        return;
    }
    l->req_len = 0;
    l->state = ST_PROXY_RECV;
    set_events(l, EV_READ);
}

/* The headers are complete in l->req (NUL-terminated): the status line decides. */
static void proxy_answered(syn_tcplink *l) {
    char *eol = strstr(l->req, "\r\n");
    if (eol)
        *eol = '\0';
    /* (Control characters of the status line are not for a log.) */
    for (char *c = l->req; *c; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c == 0x7f)
            *c = '?';
    const char *line = l->req;
    int status = 0;
    if (strncmp(line, "HTTP/1.", 7) != 0 || !line[7] || line[8] != ' ' ||
        sscanf(line + 9, "%3d", &status) != 1 || status < 100) {
        fail(l, SYNESIS_ERR_PROXY, "proxy %s answered CONNECT %s with something not HTTP: %.80s",
             l->proxy_name, l->target, line);
        return;
    }
    if (status == 407) {
        fail(l, SYNESIS_ERR_PROXY_AUTH, "proxy %s %s for CONNECT %s: %.120s", l->proxy_name,
             l->proxy_auth ? "refused the credentials"
                           : "requires authentication (no credentials configured)",
             l->target, line);
        return;
    }
    if (status / 100 != 2) {
        fail(l, SYNESIS_ERR_PROXY, "proxy %s refused CONNECT %s: %.160s", l->proxy_name, l->target,
             line);
        return;
    }
    free(l->req);
    l->req = NULL;
    char detail[SYNESIS_DETAIL_MAX];
    int rc = tls_start(l, detail);
    if (rc) {
        go_down(l, rc, detail);
        return;
    }
    tls_step(l);
}

/* Reads the response headers without taking a byte beyond them from the socket: what follows
 * belongs to TLS. */
static void proxy_recv(syn_tcplink *l) {
    for (;;) {
        size_t room = PROXY_RESP_MAX - l->req_len;
        if (room == 0) {
            l->req[l->req_len] = '\0';
            fail(l, SYNESIS_ERR_PROXY,
                 "proxy %s answered CONNECT %s with more than %d bytes of headers", l->proxy_name,
                 l->target, PROXY_RESP_MAX);
            return;
        }
        ssize_t n = recv(l->fd, l->req + l->req_len, room, MSG_PEEK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n < 0) {
            fail(l, SYNESIS_ERR_SOCKET, "proxy %s: connection lost waiting for its answer: %s",
                 l->proxy_name, strerror(errno));
            return;
        }
        if (n == 0) {
            fail(l, SYNESIS_ERR_PROXY,
                 "proxy %s closed the connection without answering CONNECT %s", l->proxy_name,
                 l->target);
            return;
        }
        /* The end of the headers in what is known plus what was peeked. */
        size_t have = l->req_len, total = have + (size_t)n, take = (size_t)n, end = 0;
        for (size_t i = have >= 3 ? have - 3 : 0; i + 4 <= total; i++) {
            if (memcmp(l->req + i, "\r\n\r\n", 4) == 0) {
                end = i + 4;
                take = end - have;
                break;
            }
        }
        ssize_t got;
        do
            got = recv(l->fd, l->req + have, take, 0);
        while (got < 0 && errno == EINTR);
        if (got != (ssize_t)take) {
            fail(l, SYNESIS_ERR_SOCKET, "proxy %s: reading its answer failed: %s", l->proxy_name,
                 got < 0 ? strerror(errno) : "short read");
            return;
        }
        l->req_len += take;
        l->req[l->req_len] = '\0';
        /* Something that is not HTTP is refused at once, not after 8 KiB or the deadline. */
        if (l->req_len >= 5 && strncmp(l->req, "HTTP/", 5) != 0) {
            fail(l, SYNESIS_ERR_PROXY, "proxy %s answered CONNECT %s with something not HTTP",
                 l->proxy_name, l->target);
            return;
        }
        if (end) {
            proxy_answered(l);
            return;
        }
    }
}

/* ---- frames -------------------------------------------------------------------------------- */

/* Flushes the send queue as far as the socket takes it. Returns 0, or -1 when the link went
 * down. */
static int flush(syn_tcplink *l) {
    while (l->q_off < l->q_len) {
        size_t n = l->q_len - l->q_off;
        if (n > WRITE_CHUNK)
            n = WRITE_CHUNK;
        syn_ossl_clear();
        int w = SSL_write(l->ssl, l->q + l->q_off, (int)n);
        if (w > 0) {
            l->q_off += (size_t)w;
            continue;
        }
        int e = SSL_get_error(l->ssl, w);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
            break;
        char who[64];
        fail(l, SYNESIS_ERR_CONNECTION_LOST, "link to %s: sending failed: %s",
             peer_name(l, who, sizeof(who)),
             e == SSL_ERROR_SYSCALL && errno ? strerror(errno) : "TLS error");
        return -1;
    }
    if (l->q_off == l->q_len) {
        l->q_off = l->q_len = 0;
        if (l->q_cap > 4 * WRITE_CHUNK) { /* a burst's buffer is not kept */
            free(l->q);
            l->q = NULL;
            l->q_cap = 0;
        }
    }
    set_events(l, EV_READ | (l->q_len > l->q_off || l->read_wants_write ? EV_WRITE : 0));
    if (l->want_writable && l->q_len - l->q_off < SYN_TCPLINK_HIGH_WATER / 2) {
        l->want_writable = 0;
        enter(l);
        if (l->ops.writable)
            l->ops.writable(l);
        if (inner_leave(l))
            return -1;
        if (l->state != ST_UP)
            return -1;
    }
    return 0;
}

/* Hands out the complete frames of the read buffer, at most *budget of them. Returns 0, or -1
 * when the link went down or was freed. */
static int deliver(syn_tcplink *l, int *budget) {
    size_t off = 0;
    int rc = 0;
    enter(l);
    while (l->r_len - off >= 2 && *budget > 0) {
        size_t len = ((size_t)l->r[off] << 8) | l->r[off + 1];
        if (len == 0 || len > SYN_TCPLINK_MAX_FRAME) {
            char who[64];
            fail(l, SYNESIS_ERR_QUIC, "link to %s: bad frame (length %zu, 1..%d allowed)",
                 peer_name(l, who, sizeof(who)), len, SYN_TCPLINK_MAX_FRAME);
            rc = -1;
            break;
        }
        if (l->r_len - off < 2 + len)
            break;
        (*budget)--;
        if (l->ops.packet)
            l->ops.packet(l, l->r + off + 2, len);
        off += 2 + len;
        if (l->dead || l->state != ST_UP) {
            rc = -1;
            break;
        }
    }
    if (rc == 0 && off) {
        memmove(l->r, l->r + off, l->r_len - off);
        l->r_len -= off;
    }
    if (inner_leave(l))
        return -1;
    return rc;
}

static void read_frames(syn_tcplink *l) {
    int budget = FRAMES_PER_EVENT;
    for (;;) {
        if (deliver(l, &budget) < 0)
            return;
        if (budget == 0) {
            /* More may wait in OpenSSL or in the buffer, with nothing to wake us: next turn. */
            ev_timer_stop(l->loop, &l->timer);
            ev_timer_set(&l->timer, 0., 0.);
            ev_timer_start(l->loop, &l->timer);
            return;
        }
        syn_ossl_clear();
        int n = SSL_read(l->ssl, l->r + l->r_len, (int)(sizeof(l->r) - l->r_len));
        if (n > 0) {
            l->r_len += (size_t)n;
            continue;
        }
        int e = SSL_get_error(l->ssl, n);
        if (e == SSL_ERROR_WANT_READ)
            return;
        if (e == SSL_ERROR_WANT_WRITE) { /* (a key update's answer waits for the socket) */
            l->read_wants_write = 1;
            set_events(l, EV_READ | EV_WRITE);
            return;
        }
        char who[64];
        if (e == SSL_ERROR_ZERO_RETURN) {
            fail(l, 0, "%s %s closed the link", l->server ? "the device at" : "the edge at",
                 peer_name(l, who, sizeof(who)));
            return;
        }
        char reason[160] = "";
        unsigned long err = ERR_peek_last_error();
        if (err && ERR_reason_error_string(err))
            snprintf(reason, sizeof(reason), "%s", ERR_reason_error_string(err));
        else if (e == SSL_ERROR_SYSCALL && errno)
            snprintf(reason, sizeof(reason), "%s", strerror(errno));
        else
            snprintf(reason, sizeof(reason), "connection closed without TLS close_notify");
        fail(l, SYNESIS_ERR_CONNECTION_LOST, "link to %s lost: %s", peer_name(l, who, sizeof(who)),
             reason);
        return;
    }
}

/* ---- events -------------------------------------------------------------------------------- */

static void connected(syn_tcplink *l) {
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(l->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err) {
        char who[64];
        if (l->proxy_name[0])
            fail(l, SYNESIS_ERR_SOCKET, "cannot connect to proxy %s: %s", l->proxy_name,
                 strerror(err));
        else
            fail(l, SYNESIS_ERR_SOCKET, "cannot connect to %s over TCP: %s",
                 peer_name(l, who, sizeof(who)), strerror(err));
        return;
    }
    l->local.len = sizeof(l->local.ss);
    if (getsockname(l->fd, (struct sockaddr *)&l->local.ss, &l->local.len) != 0)
        l->local.len = 0;
    if (l->req) {
        l->state = ST_PROXY_SEND;
        proxy_send(l);
        return;
    }
    char detail[SYNESIS_DETAIL_MAX];
    int rc = tls_start(l, detail);
    if (rc) {
        go_down(l, rc, detail);
        return;
    }
    tls_step(l);
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents) {
    (void)loop;
    syn_tcplink *l = w->data;
    enter(l);
    switch (l->state) {
    case ST_CONNECT:
        connected(l);
        break;
    case ST_PROXY_SEND:
        proxy_send(l);
        break;
    case ST_PROXY_RECV:
        proxy_recv(l);
        break;
    case ST_TLS:
        tls_step(l);
        break;
    case ST_UP:
        if ((revents & EV_WRITE) && flush(l) < 0)
            break;
        if (l->dead || l->state != ST_UP)
            break;
        if ((revents & EV_READ) || l->read_wants_write) {
            l->read_wants_write = 0;
            read_frames(l);
        }
        break;
    case ST_DOWN:
        break;
    }
    leave(l);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    syn_tcplink *l = w->data;
    enter(l);
    if (l->state == ST_UP) {
        read_frames(l);
    } else if (l->state != ST_DOWN) {
        static const char *const stage[] = {"TCP connect", "proxy CONNECT", "proxy CONNECT",
                                            "TLS handshake"};
        char who[64];
        if (l->server)
            fail(l, SYNESIS_ERR_HANDSHAKE_TIMEOUT, "no TLS handshake from %s within %.1f s",
                 peer_name(l, who, sizeof(who)), l->timeout);
        else
            fail(l, SYNESIS_ERR_HANDSHAKE_TIMEOUT,
                 "no link to %s within %.1f s (%s%s%s did not complete)", l->target, l->timeout,
                 stage[l->state], l->proxy_name[0] ? " via proxy " : "", l->proxy_name);
    }
    leave(l);
}

/* ---- public to the library ----------------------------------------------------------------- */

int syn_tcplink_client_ctx_new(SSL_CTX **out, SSL_CTX *quic_ctx, char *detail) {
    return syn_tls_client_ctx_verify_only(out, quic_ctx, detail);
}

int syn_tcplink_server_ctx_new(SSL_CTX **out, SSL_CTX *quic_ctx, char *detail) {
    return syn_tls_server_ctx_identity_of(out, quic_ctx, SYN_TCPLINK_ALPN, detail);
}

static void host_port(char *buf, size_t len, const char *host, uint16_t port) {
    if (strchr(host, ':') && host[0] != '[')
        snprintf(buf, len, "[%s]:%u", host, (unsigned)port);
    else
        snprintf(buf, len, "%s:%u", host, (unsigned)port);
}

static int socket_for(const syn_sockaddr *to, char *detail) {
    int fd = socket(to->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (fd < 0)
        return syn_fail(detail, SYNESIS_ERR_SOCKET, "cannot open a TCP socket: %s",
                        strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

int syn_tcplink_connect(syn_tcplink **out, struct ev_loop *loop,
                        const syn_tcplink_client_opts *opts, const syn_tcplink_ops *ops,
                        void *owner, char *detail) {
    if (out)
        *out = NULL;
    if (!out || !loop || !opts || !ops || !opts->connect_to || !opts->ctx || !opts->server_name ||
        !(opts->timeout > 0) || (opts->proxy && (!opts->target_host || !opts->target_port)))
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                        "a link needs an address, a context, a server name, a timeout and, "
                        "through a proxy, the target");
    const struct sockaddr *sa = (const struct sockaddr *)&opts->connect_to->ss;
    if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT, "not an IPv4 or IPv6 address");
    syn_tcplink *l = link_new(loop, ops, owner);
    if (!l)
        return syn_fail(detail, SYNESIS_ERR_NOMEM, "out of memory");
    l->timeout = opts->timeout;
    l->remote = *opts->connect_to;
    char who[64];
    if (opts->target_host)
        host_port(l->target, sizeof(l->target), opts->target_host, opts->target_port);
    else
        snprintf(l->target, sizeof(l->target), "%s", peer_name(l, who, sizeof(who)));
    int rc;
    if (opts->proxy) {
        host_port(l->proxy_name, sizeof(l->proxy_name), opts->proxy->host, opts->proxy->port);
        l->proxy_auth = opts->proxy->basic_auth != NULL;
        if ((rc = proxy_request(l, opts->proxy, detail)) != 0)
            goto fail;
    }
    syn_ossl_clear();
    l->ssl = SSL_new(opts->ctx);
    if (!l->ssl) {
        rc = syn_fail_ossl(detail, SYNESIS_ERR_NOMEM, "SSL_new failed");
        goto fail;
    }
    SSL_set_connect_state(l->ssl);
    SSL_set_mode(l->ssl, LINK_SSL_MODES);
    if ((rc = syn_tls_client_ssl_setup(l->ssl, opts->server_name, SYN_TCPLINK_ALPN, detail)) != 0)
        goto fail;
    int fd = socket_for(opts->connect_to, detail);
    if (fd < 0) {
        rc = fd;
        goto fail;
    }
    l->fd = fd;
    if (connect(fd, sa, opts->connect_to->len) != 0 && errno != EINPROGRESS) {
        int e = errno;
        if (l->proxy_name[0])
            rc = syn_fail(detail, SYNESIS_ERR_SOCKET, "cannot connect to proxy %s: %s",
                          l->proxy_name, strerror(e));
        else
            rc = syn_fail(detail, SYNESIS_ERR_SOCKET, "cannot connect to %s over TCP: %s",
                          peer_name(l, who, sizeof(who)), strerror(e));
        goto fail;
    }
    l->state = ST_CONNECT;
    set_events(l, EV_WRITE);
    ev_timer_set(&l->timer, opts->timeout, 0.);
    ev_timer_start(loop, &l->timer);
    *out = l;
    return 0;
fail:
    destroy(l);
    syn_ossl_clear();
    return rc;
}

int syn_tcplink_accept(syn_tcplink **out, struct ev_loop *loop, int fd, SSL_CTX *ctx,
                       double timeout, const syn_tcplink_ops *ops, void *owner, char *detail) {
    if (out)
        *out = NULL;
    if (!out || !loop || fd < 0 || !ctx || !ops || !(timeout > 0)) {
        if (fd >= 0)
            close(fd);
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                        "accepting a link needs a socket, a context and a timeout");
    }
    syn_tcplink *l = link_new(loop, ops, owner);
    if (!l) {
        close(fd);
        return syn_fail(detail, SYNESIS_ERR_NOMEM, "out of memory");
    }
    l->fd = fd;
    l->server = 1;
    l->timeout = timeout;
    int rc;
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0 ||
        fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
        rc = syn_fail(detail, SYNESIS_ERR_SOCKET, "cannot make the socket non-blocking: %s",
                      strerror(errno));
        goto fail;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    l->local.len = sizeof(l->local.ss);
    if (getsockname(fd, (struct sockaddr *)&l->local.ss, &l->local.len) != 0)
        l->local.len = 0;
    l->remote.len = sizeof(l->remote.ss);
    if (getpeername(fd, (struct sockaddr *)&l->remote.ss, &l->remote.len) != 0) {
        rc = syn_fail(detail, SYNESIS_ERR_SOCKET, "the accepted connection is gone: %s",
                      strerror(errno));
        goto fail;
    }
    syn_ossl_clear();
    l->ssl = SSL_new(ctx);
    if (!l->ssl) {
        rc = syn_fail_ossl(detail, SYNESIS_ERR_NOMEM, "SSL_new failed");
        goto fail;
    }
    SSL_set_accept_state(l->ssl);
    SSL_set_mode(l->ssl, LINK_SSL_MODES);
    if ((rc = tls_start(l, detail)) != 0)
        goto fail;
    set_events(l, EV_READ);
    ev_timer_set(&l->timer, timeout, 0.);
    ev_timer_start(loop, &l->timer);
    *out = l;
    return 0;
fail:
    destroy(l);
    syn_ossl_clear();
    return rc;
}

int syn_tcplink_send(syn_tcplink *l, const uint8_t *data, size_t len) {
    if (!l || l->dead)
        return SYNESIS_ERR_INVALID_ARGUMENT;
    if (len == 0 || len > SYN_TCPLINK_MAX_FRAME || !data)
        return SYNESIS_ERR_INVALID_ARGUMENT;
    if (l->state != ST_UP)
        return l->state == ST_DOWN ? SYNESIS_ERR_CONNECTION_LOST : SYNESIS_ERR_NOT_CONNECTED;
    if (l->q_len - l->q_off + 2 + len > SYN_TCPLINK_MAX_QUEUED) {
        l->want_writable = 1;
        l->dropped++;
        return SYNESIS_ERR_WOULD_BLOCK;
    }
    if (l->q_off && l->q_len + 2 + len > l->q_cap) { /* room at the front first */
        memmove(l->q, l->q + l->q_off, l->q_len - l->q_off);
        l->q_len -= l->q_off;
        l->q_off = 0;
    }
    if (l->q_len + 2 + len > l->q_cap) {
        uint8_t *q = syn_grow(l->q, &l->q_cap, l->q_len + 2 + len, 1, 4096, 0);
        if (!q)
            return SYNESIS_ERR_NOMEM;
        l->q = q;
    }
    l->q[l->q_len] = (uint8_t)(len >> 8);
    l->q[l->q_len + 1] = (uint8_t)len;
    memcpy(l->q + l->q_len + 2, data, len);
    l->q_len += 2 + len;
    set_events(l, EV_READ | EV_WRITE);
    if (l->q_len - l->q_off > SYN_TCPLINK_HIGH_WATER) {
        l->want_writable = 1;
        return 1;
    }
    return 0;
}

int syn_tcplink_is_up(const syn_tcplink *l) { return l && !l->dead && l->state == ST_UP; }

const syn_sockaddr *syn_tcplink_local(const syn_tcplink *l) { return &l->local; }

const syn_sockaddr *syn_tcplink_remote(const syn_tcplink *l) { return &l->remote; }

void *syn_tcplink_owner(const syn_tcplink *l) { return l ? l->owner : NULL; }

void syn_tcplink_set_owner(syn_tcplink *l, void *owner) {
    if (l)
        l->owner = owner;
}

void syn_tcplink_set_ops(syn_tcplink *l, const syn_tcplink_ops *ops) { l->ops = *ops; }

size_t syn_tcplink_queued(const syn_tcplink *l) { return l ? l->q_len - l->q_off : 0; }

uint64_t syn_tcplink_dropped(const syn_tcplink *l) { return l ? l->dropped : 0; }

void syn_tcplink_free(syn_tcplink *l) {
    if (!l || l->dead)
        return;
    if (l->state == ST_UP && l->ssl) {
        /* Best effort, never waiting: what the socket takes of the queue, then close_notify. */
        while (l->q_off < l->q_len) {
            size_t n = l->q_len - l->q_off;
            int w = SSL_write(l->ssl, l->q + l->q_off, (int)(n > WRITE_CHUNK ? WRITE_CHUNK : n));
            if (w <= 0)
                break;
            l->q_off += (size_t)w;
        }
        SSL_shutdown(l->ssl);
        syn_ossl_clear();
    }
    l->state = ST_DOWN;
    l->dead = 1;
    ev_io_stop(l->loop, &l->io);
    ev_timer_stop(l->loop, &l->timer);
    if (l->depth == 0)
        destroy(l);
}

/* ---- test and fuzzing hooks (tcplink_test.h) ----------------------------------------------- */

int syn_tcplink_test_up(syn_tcplink **out, struct ev_loop *loop, const syn_tcplink_ops *ops,
                        void *owner) {
    *out = NULL;
    syn_tcplink *l = link_new(loop, ops, owner);
    if (!l)
        return SYNESIS_ERR_NOMEM;
    l->server = 1;
    l->state = ST_UP;
    *out = l;
    return 0;
}

int syn_tcplink_test_feed(syn_tcplink *l, const uint8_t *data, size_t len) {
    if (!l || l->dead || l->state != ST_UP)
        return -1;
    int rc = 0;
    enter(l);
    int budget = FRAMES_PER_EVENT;
    for (;;) {
        if (deliver(l, &budget) < 0) {
            rc = -1;
            break;
        }
        if (budget == 0) { /* (read_frames' next turn, from its 0 s timer) */
            budget = FRAMES_PER_EVENT;
            continue;
        }
        if (len == 0)
            break;
        /* What SSL_read would give: at most the room left. */
        size_t room = sizeof(l->r) - l->r_len, n = len < room ? len : room;
        if (n == 0) { /* a full buffer always holds a whole frame or a bad length */
            rc = -1;
            break;
        }
        memcpy(l->r + l->r_len, data, n);
        l->r_len += n;
        data += n;
        len -= n;
    }
    if (leave(l))
        return -1;
    return rc;
}

size_t syn_tcplink_test_buffered(const syn_tcplink *l) { return l->r_len; }

/* The tests' HTTP CONNECT proxy (connect_proxy.h). */
#include "connect_proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define REQ_MAX 8192
#define BUF_SIZE 16384

typedef struct pconn pconn;

/* One direction of the relay: bytes read from src waiting to be written to dst. */
typedef struct pipe_dir {
    uint8_t buf[BUF_SIZE];
    size_t len, off;
} pipe_dir;

struct pconn {
    syn_test_proxy *px;
    pconn *next;
    int cfd, ufd;
    ev_io cio, uio;
    enum { READ_REQ, CONNECTING, RELAY, LINGER } state;
    char req[REQ_MAX + 1];
    size_t req_len;
    pipe_dir up, down; /* up: client -> target; down: target -> client */
    int c_eof, u_eof;
};

struct syn_test_proxy {
    struct ev_loop *loop;
    syn_test_proxy_opts o;
    char credentials[256], refuse[300];
    int lfd;
    ev_io lio;
    pconn *conns;
    syn_test_proxy_stats st;
};

static void conn_free(pconn *c) {
    syn_test_proxy *px = c->px;
    for (pconn **pp = &px->conns; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    ev_io_stop(px->loop, &c->cio);
    ev_io_stop(px->loop, &c->uio);
    if (c->cfd >= 0)
        close(c->cfd);
    if (c->ufd >= 0)
        close(c->ufd);
    free(c);
}

static void set_io(struct ev_loop *loop, ev_io *w, int fd, int events) {
    if (fd < 0)
        return;
    if (ev_is_active(w) && (w->events & (EV_READ | EV_WRITE)) == events)
        return;
    ev_io_stop(loop, w);
    if (events) {
        ev_io_set(w, fd, events);
        ev_io_start(loop, w);
    }
}

/* The watchers each side needs in the relay. */
static void relay_update(pconn *c) {
    struct ev_loop *loop = c->px->loop;
    int cev = 0, uev = 0;
    if (!c->c_eof && c->up.len == 0)
        cev |= EV_READ;
    if (c->down.len > c->down.off)
        cev |= EV_WRITE;
    if (!c->u_eof && c->down.len == 0)
        uev |= EV_READ;
    if (c->up.len > c->up.off)
        uev |= EV_WRITE;
    set_io(loop, &c->cio, c->cfd, cev);
    set_io(loop, &c->uio, c->ufd, uev);
    /* both sides done and nothing left to write */
    if (c->c_eof && c->u_eof && c->up.len == 0 && c->down.len == 0)
        conn_free(c);
}

/* Reads from fd into d. Returns 0, or 1 on EOF / error. */
static int pull(int fd, pipe_dir *d) {
    ssize_t n = recv(fd, d->buf, sizeof(d->buf), 0);
    if (n > 0) {
        d->len = (size_t)n;
        d->off = 0;
        return 0;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    return 1;
}

/* Writes d to fd (one byte at a time when trickling). Returns 0, or 1 on error. */
static int push(int fd, pipe_dir *d, int trickle, uint64_t *count) {
    size_t n = d->len - d->off;
    if (trickle && n > 1)
        n = 1;
    ssize_t w = send(fd, d->buf + d->off, n, MSG_NOSIGNAL);
    if (w < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : 1;
    d->off += (size_t)w;
    *count += (uint64_t)w;
    if (d->off == d->len)
        d->len = d->off = 0;
    return 0;
}

static void relay_cb(struct ev_loop *loop, ev_io *w, int revents) {
    (void)loop;
    pconn *c = w->data;
    syn_test_proxy *px = c->px;
    int client = w == &c->cio;
    if (client) {
        if ((revents & EV_WRITE) && push(c->cfd, &c->down, px->o.trickle, &px->st.bytes_down))
            c->c_eof = c->u_eof = 1, c->up.len = c->down.len = 0;
        if ((revents & EV_READ) && !c->c_eof && c->up.len == 0 && pull(c->cfd, &c->up)) {
            c->c_eof = 1;
            shutdown(c->ufd, SHUT_WR);
        }
    } else {
        if ((revents & EV_WRITE) && push(c->ufd, &c->up, px->o.trickle, &px->st.bytes_up))
            c->c_eof = c->u_eof = 1, c->up.len = c->down.len = 0;
        if ((revents & EV_READ) && !c->u_eof && c->down.len == 0 && pull(c->ufd, &c->down)) {
            c->u_eof = 1;
            shutdown(c->cfd, SHUT_WR);
        }
    }
    relay_update(c);
}

/* A short answer, then the connection ends (after the client closes, or at once). */
static void answer_and_close(pconn *c, const char *text) {
    if (text)
        (void)!send(c->cfd, text, strlen(text), MSG_NOSIGNAL);
    c->px->st.refused++;
    conn_free(c);
}

static void upstream_cb(struct ev_loop *loop, ev_io *w, int revents) {
    (void)revents;
    pconn *c = w->data;
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(c->ufd, SOL_SOCKET, SO_ERROR, &err, &len);
    ev_io_stop(loop, w);
    if (err) {
        answer_and_close(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
        return;
    }
    static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
    static const char alert[] = "HTTP/1.1 200 Connection established\r\n\r\n"
                                "\x15\x03\x03\x00\x02\x02\x28";
    if (c->px->o.mode == SYN_TEST_PROXY_TRAILING)
        (void)!send(c->cfd, alert, sizeof(alert) - 1, MSG_NOSIGNAL);
    else
        (void)!send(c->cfd, ok, sizeof(ok) - 1, MSG_NOSIGNAL);
    c->px->st.tunnels++;
    c->state = RELAY;
    ev_set_cb(&c->cio, relay_cb);
    ev_set_cb(&c->uio, relay_cb);
    relay_update(c);
}

static int header_value(const char *req, const char *name, char *out, size_t outlen) {
    size_t nl = strlen(name);
    for (const char *p = strstr(req, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
        const char *h = p + 2;
        if (strncasecmp(h, name, nl) == 0 && h[nl] == ':') {
            h += nl + 1;
            while (*h == ' ')
                h++;
            size_t vl = strcspn(h, "\r\n");
            snprintf(out, outlen, "%.*s", (int)vl, h);
            return 1;
        }
    }
    return 0;
}

static void handle_request(pconn *c, size_t hdr_len) {
    syn_test_proxy *px = c->px;
    snprintf(px->st.last_request, sizeof(px->st.last_request), "%.*s", (int)hdr_len, c->req);
    if (px->o.mode == SYN_TEST_PROXY_CLOSE) {
        answer_and_close(c, NULL);
        return;
    }
    if (px->o.mode == SYN_TEST_PROXY_GARBAGE) {
        static const char junk[] = "SSH-2.0-OpenSSH_9.2\r\n"; /* no end of headers */
        (void)!send(c->cfd, junk, sizeof(junk) - 1, MSG_NOSIGNAL);
        px->st.refused++;
        c->state = LINGER;
        return;
    }
    char target[300];
    if (sscanf(c->req, "CONNECT %299s HTTP/1.", target) != 1) {
        answer_and_close(c, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n");
        return;
    }
    if (px->o.mode == SYN_TEST_PROXY_REFUSE || (px->refuse[0] && !strcmp(target, px->refuse))) {
        answer_and_close(c, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
        return;
    }
    if (px->o.mode == SYN_TEST_PROXY_AUTH) {
        char v[512], want[400];
        EVP_EncodeBlock((unsigned char *)want, (const unsigned char *)px->credentials,
                        (int)strlen(px->credentials));
        if (!header_value(c->req, "Proxy-Authorization", v, sizeof(v)) ||
            strncasecmp(v, "Basic ", 6) != 0 || strcmp(v + 6, want) != 0) {
            answer_and_close(c, "HTTP/1.1 407 Proxy Authentication Required\r\n"
                                "Proxy-Authenticate: Basic realm=\"test\"\r\n"
                                "Content-Length: 0\r\n\r\n");
            return;
        }
    }
    /* host:port, host maybe [v6] */
    char host[300], *colon = strrchr(target, ':');
    if (!colon) {
        answer_and_close(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        return;
    }
    *colon = '\0';
    snprintf(host, sizeof(host), "%s", target[0] == '[' ? target + 1 : target);
    size_t hl = strlen(host);
    if (hl && host[hl - 1] == ']')
        host[hl - 1] = '\0';
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, colon + 1, &hints, &ai) != 0 || !ai) {
        answer_and_close(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
        return;
    }
    c->ufd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (c->ufd >= 0)
        setsockopt(c->ufd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (c->ufd < 0 || (connect(c->ufd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS)) {
        freeaddrinfo(ai);
        answer_and_close(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
        return;
    }
    freeaddrinfo(ai);
    /* bytes after the headers go on to the target */
    size_t extra = c->req_len - hdr_len;
    memcpy(c->up.buf, c->req + hdr_len, extra);
    c->up.len = extra;
    c->state = CONNECTING;
    ev_io_stop(px->loop, &c->cio);
    ev_io_init(&c->uio, upstream_cb, c->ufd, EV_WRITE);
    c->uio.data = c;
    ev_io_start(px->loop, &c->uio);
}

static void request_cb(struct ev_loop *loop, ev_io *w, int revents) {
    (void)loop;
    (void)revents;
    pconn *c = w->data;
    if (c->state == LINGER) { /* (garbage sent: wait for the client to go) */
        char sink[512];
        ssize_t n = recv(c->cfd, sink, sizeof(sink), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            conn_free(c);
        return;
    }
    ssize_t n = recv(c->cfd, c->req + c->req_len, REQ_MAX - c->req_len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        conn_free(c);
        return;
    }
    c->req_len += (size_t)n;
    c->req[c->req_len] = '\0';
    char *end = strstr(c->req, "\r\n\r\n");
    if (end) {
        handle_request(c, (size_t)(end + 4 - c->req));
        return;
    }
    if (c->req_len == REQ_MAX)
        answer_and_close(c, "HTTP/1.1 431 Request Header Fields Too Large\r\n\r\n");
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents) {
    (void)revents;
    syn_test_proxy *px = w->data;
    int fd = accept4(px->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    pconn *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    px->st.connections++;
    c->px = px;
    c->cfd = fd;
    c->ufd = -1;
    c->next = px->conns;
    px->conns = c;
    ev_io_init(&c->cio, request_cb, fd, EV_READ);
    c->cio.data = c;
    ev_io_init(&c->uio, upstream_cb, -1, EV_WRITE);
    c->uio.data = c;
    ev_io_start(loop, &c->cio);
}

int syn_test_proxy_start(syn_test_proxy **out, struct ev_loop *loop,
                         const syn_test_proxy_opts *opts, uint16_t *port) {
    syn_test_proxy *px = calloc(1, sizeof(*px));
    if (!px)
        return -ENOMEM;
    px->loop = loop;
    px->o = *opts;
    snprintf(px->credentials, sizeof(px->credentials), "%s",
             opts->credentials ? opts->credentials : "");
    snprintf(px->refuse, sizeof(px->refuse), "%s", opts->refuse_target ? opts->refuse_target : "");
    px->o.credentials = px->credentials;
    px->o.refuse_target = px->refuse;
    const char *host = opts->listen_host ? opts->listen_host : "127.0.0.1";
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t len;
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons(opts->listen_port);
        len = sizeof(*in);
    } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(opts->listen_port);
        len = sizeof(*in6);
    } else {
        free(px);
        return -EINVAL;
    }
    px->lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (px->lfd >= 0)
        setsockopt(px->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (px->lfd < 0 || bind(px->lfd, (struct sockaddr *)&ss, len) != 0 ||
        listen(px->lfd, 64) != 0 || getsockname(px->lfd, (struct sockaddr *)&ss, &len) != 0) {
        int e = errno;
        if (px->lfd >= 0)
            close(px->lfd);
        free(px);
        return -e;
    }
    if (port)
        *port = ntohs(ss.ss_family == AF_INET ? in->sin_port : in6->sin6_port);
    ev_io_init(&px->lio, accept_cb, px->lfd, EV_READ);
    px->lio.data = px;
    ev_io_start(loop, &px->lio);
    *out = px;
    return 0;
}

const syn_test_proxy_stats *syn_test_proxy_stats_get(const syn_test_proxy *p) { return &p->st; }

void syn_test_proxy_free(syn_test_proxy *p) {
    if (!p)
        return;
    while (p->conns)
        conn_free(p->conns);
    ev_io_stop(p->loop, &p->lio);
    close(p->lfd);
    free(p);
}

/* The reference edge server. */
#include "edge.h"

#include "qconn.h"
#include "tls.h"
#include "udp.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <openssl/rand.h>
#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct edge_conn edge_conn;

struct edge_conn {
    syn_edge *e;
    syn_qconn *qc;
    char device_id[128];
    char remote[64];
    edge_conn *prev, *next;
};

typedef struct cid_entry {
    ngtcp2_cid cid;
    edge_conn *conn;
} cid_entry;

struct syn_edge {
    struct ev_loop *loop;
    syn_edge_config cfg;
    char *str_listen, *str_alpn;
    SSL_CTX *ssl_ctx;
    syn_qconn_settings qset;
    syn_sockaddr listen_addr;
    syn_sockaddr local;
    int fd;
    ev_io rio;
    syn_udp_rx *rx;
    edge_conn *conns;
    cid_entry *cids;
    size_t ncids, cids_cap;
    syn_edge_stats stats;
    char last_device[128];
};

void syn_edge_config_init(syn_edge_config *cfg) {
    memset(cfg, 0, sizeof(*cfg));
    cfg->listen = "127.0.0.1:4433";
    cfg->alpn = "synesis-tunnel/1";
    cfg->idle_timeout = 60.0;
    cfg->handshake_timeout = 10.0;
    cfg->max_streams_bidi = 100;
    cfg->max_streams_uni = 100;
}

/* ---- JSON event log ---- */

static void edge_emit(syn_edge *e, cJSON *obj) {
    if (!e->cfg.log && !e->cfg.log_file) {
        cJSON_Delete(obj);
        return;
    }
    cJSON_AddNumberToObject(obj, "ts_ms", (double)syn_wall_ms());
    char *line = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    if (!line)
        return;
    if (e->cfg.log)
        e->cfg.log(e->cfg.log_user_data, line);
    if (e->cfg.log_file) {
        fprintf(e->cfg.log_file, "%s\n", line);
        fflush(e->cfg.log_file);
    }
    cJSON_free(line);
}

static cJSON *event(const char *name, const edge_conn *c) {
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "event", name);
    if (c) {
        cJSON_AddStringToObject(o, "remote", c->remote);
        if (c->device_id[0])
            cJSON_AddStringToObject(o, "device_id", c->device_id);
    }
    return o;
}

static void emit_simple(syn_edge *e, const char *name, const edge_conn *c, const char *key,
                        const char *value) {
    cJSON *o = event(name, c);
    if (!o)
        return;
    if (key)
        cJSON_AddStringToObject(o, key, value);
    edge_emit(e, o);
}

/* ---- connection IDs ---- */

static void cid_add(syn_edge *e, const ngtcp2_cid *cid, edge_conn *c) {
    if (e->ncids == e->cids_cap) {
        size_t cap = e->cids_cap ? e->cids_cap * 2 : 16;
        cid_entry *n = realloc(e->cids, cap * sizeof(*n));
        if (!n)
            return; /* the connection is still reachable by its other IDs */
        e->cids = n;
        e->cids_cap = cap;
    }
    e->cids[e->ncids].cid = *cid;
    e->cids[e->ncids].conn = c;
    e->ncids++;
}

static edge_conn *cid_find(syn_edge *e, const uint8_t *dcid, size_t len) {
    for (size_t i = 0; i < e->ncids; i++)
        if (e->cids[i].cid.datalen == len && memcmp(e->cids[i].cid.data, dcid, len) == 0)
            return e->cids[i].conn;
    return NULL;
}

static void cid_remove_conn(syn_edge *e, edge_conn *c) {
    size_t j = 0;
    for (size_t i = 0; i < e->ncids; i++)
        if (e->cids[i].conn != c)
            e->cids[j++] = e->cids[i];
    e->ncids = j;
}

/* ---- connections ---- */

static void conn_destroy(syn_edge *e, edge_conn *c) {
    cid_remove_conn(e, c);
    if (c->prev)
        c->prev->next = c->next;
    else
        e->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    syn_qconn_free(c->qc);
    free(c);
    e->stats.active--;
}

static void ec_handshake_done(syn_qconn *qc) {
    edge_conn *c = syn_qconn_owner(qc);
    syn_edge *e = c->e;
    if (syn_tls_peer_device_id(syn_qconn_ssl(qc), c->device_id, sizeof(c->device_id)) != 0)
        snprintf(c->device_id, sizeof(c->device_id), "?");
    snprintf(e->last_device, sizeof(e->last_device), "%s", c->device_id);
    e->stats.handshakes++;
    emit_simple(e, "connection", c, NULL, NULL);
}

static int ec_stream_open(syn_qconn *qc, syn_qstream *s) {
    edge_conn *c = syn_qconn_owner(qc);
    c->e->stats.streams++;
    (void)s;
    return 0;
}

/* Bidirectional streams echo what they read until FIN. */
static void ec_stream_data(syn_qconn *qc, syn_qstream *s, const uint8_t *data, size_t len,
                           int fin) {
    (void)qc;
    if (!ngtcp2_is_bidi_stream(s->id))
        return;
    if (syn_qstream_write(s, data, len, fin) != 0)
        syn_qstream_shutdown(s, 0x2 /* internal error */);
}

static void ec_closed(syn_qconn *qc, int err, const char *detail) {
    edge_conn *c = syn_qconn_owner(qc);
    syn_edge *e = c->e;
    e->stats.closed++;
    if (!syn_qconn_handshake_completed(qc) && err != 0 && err != SYNESIS_ERR_HANDSHAKE_TIMEOUT)
        e->stats.tls_failures++;
    cJSON *o = event("close", c);
    if (o) {
        cJSON_AddStringToObject(o, "error", err ? synesis_error_name(err) : "none");
        cJSON_AddStringToObject(o, "reason", detail ? detail : "");
        edge_emit(e, o);
    }
    conn_destroy(e, c);
}

static void ec_cid_added(syn_qconn *qc, const ngtcp2_cid *cid) {
    edge_conn *c = syn_qconn_owner(qc);
    cid_add(c->e, cid, c);
}

static void ec_log(syn_qconn *qc, synesis_log_level level, const char *msg) {
    (void)qc;
    (void)level;
    (void)msg;
}

static const syn_qconn_ops edge_qc_ops = {
    .handshake_done = ec_handshake_done,
    .stream_open = ec_stream_open,
    .stream_data = ec_stream_data,
    .closed = ec_closed,
    .cid_added = ec_cid_added,
    .log = ec_log,
};

static void send_version_negotiation(syn_edge *e, const ngtcp2_version_cid *vc,
                                     const syn_sockaddr *to) {
    uint8_t buf[SYN_UDP_MAX_PAYLOAD];
    uint32_t sv[] = {NGTCP2_PROTO_VER_V1};
    uint8_t unused = 0;
    (void)RAND_bytes(&unused, 1);
    ngtcp2_ssize n = ngtcp2_pkt_write_version_negotiation(
        buf, sizeof(buf), unused, vc->scid, vc->scidlen, vc->dcid, vc->dcidlen, sv, 1);
    if (n > 0)
        (void)sendto(e->fd, buf, (size_t)n, MSG_DONTWAIT, (const struct sockaddr *)&to->ss, to->len);
}

static void handle_datagram(syn_edge *e, syn_udp_dgram *d) {
    ngtcp2_version_cid vc;
    int rv = ngtcp2_pkt_decode_version_cid(&vc, d->data, d->len, SYN_SV_SCIDLEN);
    if (rv == NGTCP2_ERR_VERSION_NEGOTIATION) {
        send_version_negotiation(e, &vc, &d->remote);
        return;
    }
    if (rv != 0)
        return;
    edge_conn *c = cid_find(e, vc.dcid, vc.dcidlen);
    if (c) {
        if (syn_qconn_remote(c->qc)->len != d->remote.len ||
            memcmp(&syn_qconn_remote(c->qc)->ss, &d->remote.ss, d->remote.len) != 0)
            syn_qconn_set_remote(c->qc, &d->remote); /* the client's address changed (NAT) */
        syn_qconn_recv(c->qc, &e->local, &d->remote, d->ecn, d->data, d->len);
        return;
    }
    ngtcp2_pkt_hd hd;
    if (ngtcp2_accept(&hd, d->data, d->len) != 0)
        return; /* not an Initial we can serve: drop */
    c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->e = e;
    syn_sockaddr_str((const struct sockaddr *)&d->remote.ss, c->remote, sizeof(c->remote));
    char detail[SYNESIS_DETAIL_MAX];
    if (syn_qconn_server_new(&c->qc, e->loop, e->fd, &e->local, &d->remote, &hd, e->ssl_ctx,
                             &e->qset, &edge_qc_ops, c, detail) != 0) {
        emit_simple(e, "error", c, "reason", detail);
        cid_remove_conn(e, c);
        free(c);
        return;
    }
    c->next = e->conns;
    if (e->conns)
        e->conns->prev = c;
    e->conns = c;
    e->stats.accepted++;
    e->stats.active++;
    cid_add(e, &hd.dcid, c); /* the client keeps using the original DCID until it learns ours */
    syn_qconn_recv(c->qc, &e->local, &d->remote, d->ecn, d->data, d->len);
}

static void rio_cb(struct ev_loop *loop, ev_io *w, int revents) {
    (void)loop;
    (void)revents;
    syn_edge *e = w->data;
    for (int total = 0; total < SYN_UDP_RX_MAX_PER_EVENT && e->fd >= 0;) {
        int n = syn_udp_recv(e->fd, e->rx);
        if (n <= 0)
            break; /* errors on an unconnected socket are per-datagram ICMP noise */
        for (int i = 0; i < n && e->fd >= 0; i++)
            handle_datagram(e, &e->rx->d[i]);
        total += n;
    }
}

static int parse_listen(const char *s, syn_sockaddr *out, char *detail) {
    char host[INET6_ADDRSTRLEN + 2];
    const char *colon;
    memset(out, 0, sizeof(*out));
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':' || (size_t)(end - s - 1) >= sizeof(host))
            goto bad;
        memcpy(host, s + 1, (size_t)(end - s - 1));
        host[end - s - 1] = 0;
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || (size_t)(colon - s) >= sizeof(host))
            goto bad;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = 0;
    }
    char *endp;
    long port = strtol(colon + 1, &endp, 10);
    if (!colon[1] || *endp || port < 0 || port > 65535)
        goto bad;
    struct sockaddr_in *in = (struct sockaddr_in *)&out->ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&out->ss;
    if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        out->len = sizeof(*in);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        out->len = sizeof(*in6);
        return 0;
    }
bad:
    return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                    "listen address '%s' is not ADDR:PORT or [IPv6]:PORT", s);
}

int syn_edge_new(syn_edge **out, struct ev_loop *loop, const syn_edge_config *cfg, char *detail) {
    *out = NULL;
    int rv = syn_crypto_init();
    if (rv != 0)
        return syn_fail(detail, rv, "crypto initialisation failed");
    syn_edge *e = calloc(1, sizeof(*e));
    if (!e)
        return syn_fail(detail, SYNESIS_ERR_NOMEM, "out of memory");
    e->loop = loop;
    e->fd = -1;
    e->cfg = *cfg;
    e->str_listen = strdup(cfg->listen ? cfg->listen : "");
    e->str_alpn = strdup(cfg->alpn ? cfg->alpn : "synesis-tunnel/1");
    e->rx = malloc(sizeof(*e->rx));
    if (!e->str_listen || !e->str_alpn || !e->rx) {
        rv = syn_fail(detail, SYNESIS_ERR_NOMEM, "out of memory");
        goto fail;
    }
    e->cfg.listen = e->str_listen;
    e->cfg.alpn = e->str_alpn;
    if ((rv = parse_listen(e->cfg.listen, &e->listen_addr, detail)) != 0)
        goto fail;
    syn_tls_server_config tc = {
        .cert_file = cfg->cert_file,
        .key_file = cfg->key_file,
        .ca_file = cfg->ca_file,
        .alpn = e->cfg.alpn,
    };
    if ((rv = syn_tls_server_ctx_new(&e->ssl_ctx, &tc, detail)) != 0)
        goto fail;
    e->cfg.cert_file = e->cfg.key_file = e->cfg.ca_file = NULL; /* loaded: not kept */
    syn_qconn_settings_default(&e->qset);
    e->qset.idle_timeout_ns = (uint64_t)(cfg->idle_timeout * 1e9);
    e->qset.handshake_timeout_ns = (uint64_t)(cfg->handshake_timeout * 1e9);
    e->qset.keep_alive_ns = 0;
    e->qset.max_streams_bidi = cfg->max_streams_bidi;
    e->qset.max_streams_uni = cfg->max_streams_uni;
    ev_io_init(&e->rio, rio_cb, -1, EV_READ);
    e->rio.data = e;
    *out = e;
    return 0;
fail:
    syn_edge_free(e);
    return rv;
}

int syn_edge_start(syn_edge *e, char *detail) {
    if (e->fd >= 0)
        return syn_fail(detail, SYNESIS_ERR_INVALID_STATE, "edge already started");
    int fd = syn_udp_open(NULL, 0, (const struct sockaddr *)&e->listen_addr.ss, e->listen_addr.len,
                          1, &e->local, detail);
    if (fd < 0)
        return fd;
    e->fd = fd;
    /* Restart on the same port after a stop. */
    if (e->local.ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&e->listen_addr.ss)->sin_port =
            ((struct sockaddr_in *)&e->local.ss)->sin_port;
    else
        ((struct sockaddr_in6 *)&e->listen_addr.ss)->sin6_port =
            ((struct sockaddr_in6 *)&e->local.ss)->sin6_port;
    ev_io_set(&e->rio, fd, EV_READ);
    ev_io_start(e->loop, &e->rio);
    char addr[64];
    syn_sockaddr_str((const struct sockaddr *)&e->local.ss, addr, sizeof(addr));
    emit_simple(e, "listening", NULL, "address", addr);
    return 0;
}

void syn_edge_stop(syn_edge *e, int graceful) {
    while (e->conns) {
        edge_conn *c = e->conns;
        if (graceful) {
            syn_qconn_close(c->qc, 0, "edge shutdown"); /* ends in ec_closed -> destroy */
            if (e->conns == c)
                conn_destroy(e, c);
        } else {
            e->stats.closed++;
            emit_simple(e, "close", c, "reason", "edge stopped");
            conn_destroy(e, c);
        }
    }
    if (e->fd >= 0) {
        ev_io_stop(e->loop, &e->rio);
        close(e->fd);
        e->fd = -1;
        emit_simple(e, "stopped", NULL, NULL, NULL);
    }
}

uint16_t syn_edge_port(const syn_edge *e) {
    const syn_sockaddr *a = &e->local;
    if (a->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
    if (a->ss.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
    return 0;
}

void syn_edge_get_stats(const syn_edge *e, syn_edge_stats *out) { *out = e->stats; }

const char *syn_edge_last_device(const syn_edge *e) { return e->last_device; }

void syn_edge_free(syn_edge *e) {
    if (!e)
        return;
    syn_edge_stop(e, 0);
    if (e->ssl_ctx)
        SSL_CTX_free(e->ssl_ctx);
    free(e->cids);
    free(e->rx);
    free(e->str_listen);
    free(e->str_alpn);
    free(e);
}

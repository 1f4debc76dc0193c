/* The CloudTunnel's internals, shared by tunnel.c and the modules that extend it. */
#ifndef SYNESIS_TUNNEL_INT_H
#define SYNESIS_TUNNEL_INT_H

#include "synesis/tunnel.h"

#include "backoff.h"
#include "dns.h"
#include "internal.h"
#include "qconn.h"
#include "udp.h"
#include "url.h"

#include <ev.h>
#include <openssl/ssl.h>

typedef struct syn_subscriber {
    uint32_t id;
    synesis_state_fn fn; /* NULL once unsubscribed (compacted when no notification runs) */
    void *user_data;
} syn_subscriber;

struct synesis_tunnel {
    struct ev_loop *loop;
    synesis_tunnel_config cfg; /* strings point into the owned copies below */
    char *str_url, *str_server_name, *str_alpn, *str_cert, *str_key, *str_cert_pem, *str_key_pem,
        *str_pass, *str_ca, *str_ca_dir, *str_device_id;
    uint8_t (*pins)[32];
    synesis_tunnel_callbacks cb;
    void *user_data;

    syn_url url;
    const char *server_name; /* cfg.server_name or url.host */
    SSL_CTX *ssl_ctx;
    syn_qconn_settings qset;

    synesis_tunnel_state state;
    syn_subscriber *subs;
    size_t nsubs, subs_cap;
    uint32_t next_sub_id;
    int notifying;

    /* The connection attempt or live connection. */
    syn_resolver *resolver;
    syn_addr addrs[SYN_RESOLVE_MAX];
    size_t naddrs, addr_idx;
    int fd;
    syn_sockaddr local, remote;
    ev_io rio;
    syn_qconn *qc;
    syn_udp_rx *rx;

    syn_backoff backoff;
    ev_timer reconnect_timer;
    ev_timer stable_timer;
    int64_t outage_started_ms;

    int depth;
    int free_pending;
    char last_error[SYNESIS_DETAIL_MAX];
};

/* Logs at level (no-op when below the configured level or no log callback). */
void syn_tunnel_log(synesis_tunnel *t, synesis_log_level level, const char *fmt, ...)
    SYNESIS_PRINTF(3, 4);

/* Tests only: asks the state machine for a transition to kind (with attempt for Reconnecting),
 * exactly as the tunnel's own code does; returns 0 or SYNESIS_ERR_INVALID_STATE. */
int syn_tunnel_try_transition(synesis_tunnel *t, synesis_state_kind kind, uint32_t attempt);

#endif /* SYNESIS_TUNNEL_INT_H */

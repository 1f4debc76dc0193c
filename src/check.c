/*
 * The connectivity check (include/synesis/check.h): the synchronous checks of the configuration,
 * the files, the certificate and the clock, then DNS, a real handshake over UDP (a tunnel of its
 * own), the path MTU it found and a TCP connect, in parallel on the caller's loop.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "dns.h"
#include "internal.h"
#include "qconn.h"
#include "synesis/check.h"
#include "synesis/identity.h"
#include "tunnel_int.h"
#include "udp.h"
#include "url.h"

/* The items, in the order of the header's list of ids. */
enum { I_FILES, I_CERT, I_CLOCK, I_DNS, I_UDP, I_TRUST, I_MTU, I_TCP, I_PROXY, I_COUNT };
static const char *const item_ids[I_COUNT] = {"files", "certificate", "clock", "dns",  "udp",
                                              "trust", "mtu",         "tcp",   "proxy"};

/* What is still running. */
enum { P_DNS = 1, P_UDP = 2, P_TCP = 4 };

typedef struct check_item {
    synesis_check_status status;
    int error;
    int set;
    char finding[SYNESIS_DETAIL_MAX];
    char fix[SYNESIS_DETAIL_MAX];
} check_item;

struct synesis_check {
    struct ev_loop *loop;
    synesis_check_done_fn done;
    void *user_data;
    synesis_check_options opts;
    check_item items[I_COUNT];
    int pending;
    int status; /* the result's status */
    syn_url url;
    int pmtud;
    size_t max_udp_payload;
    double handshake_timeout;
    syn_resolver *resolver;
    synesis_tunnel *tunnel;
    /* The tcp item: a tunnel of the check's own with transport TCP (through the proxy that
     * applies), its proxy as shown, whether one applies. */
    synesis_tunnel *tcp_tunnel;
    int transport; /* the config's */
    uint16_t tcp_port;
    int have_proxy;
    char proxy_shown[320];
    ev_timer mtu_timer;
    ev_timer deadline;
    ev_timer finish_timer; /* delivers from the loop when nothing is left to wait for */
};

static void set_item(synesis_check *c, int i, synesis_check_status st, int err, const char *fix,
                     const char *fmt, ...) SYNESIS_PRINTF(6, 7);
static void set_item(synesis_check *c, int i, synesis_check_status st, int err, const char *fix,
                     const char *fmt, ...) {
    check_item *it = &c->items[i];
    it->status = st;
    it->error = err;
    it->set = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(it->finding, sizeof(it->finding), fmt, ap);
    va_end(ap);
    syn_copy_str(it->fix, sizeof(it->fix), fix ? fix : "");
}

SYNESIS_API const char *synesis_check_status_name(synesis_check_status status) {
    switch (status) {
    case SYNESIS_CHECK_OK:
        return "ok";
    case SYNESIS_CHECK_WARNING:
        return "warning";
    case SYNESIS_CHECK_FAILED:
        return "failed";
    case SYNESIS_CHECK_SKIPPED:
        return "skipped";
    }
    return "unknown";
}

static const synesis_check_options default_options = {
    .struct_size = sizeof(synesis_check_options),
    .timeout = 10.0,
    .mtu_wait = 1.0,
    .expiry_warning_days = 30,
};

SYNESIS_API void synesis_check_options_init_sized(synesis_check_options *opts, size_t size) {
    syn_struct_init(opts, size, &default_options, sizeof(default_options));
}

static void fmt_time(int64_t t, char *out, size_t n) {
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || !strftime(out, n, "%Y-%m-%d %H:%M:%S UTC", &tm))
        snprintf(out, n, "%lld", (long long)t);
}

/* ---- the synchronous checks ---- */

static int is_store_uri(const char *p) {
    /* An OSSL_STORE URI ("pkcs11:...", "file:..."): a scheme of letters, then ':'. */
    const char *s = p;
    while ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9'))
        s++;
    return s != p && *s == ':';
}

static void check_files(synesis_check *c, const synesis_tunnel_config *cfg) {
    char d[SYNESIS_DETAIL_MAX];
    if (cfg->ca_path && access(cfg->ca_path, R_OK) != 0) {
        set_item(c, I_FILES, SYNESIS_CHECK_FAILED, SYNESIS_ERR_CA_UNREADABLE,
                 "fix the path of the edge's CA (ca_path; agent.conf: ca) or make it readable",
                 "the CA file %s cannot be read: %s", cfg->ca_path, strerror(errno));
        return;
    }
    if (cfg->ca_dir && access(cfg->ca_dir, R_OK | X_OK) != 0) {
        set_item(c, I_FILES, SYNESIS_CHECK_FAILED, SYNESIS_ERR_CA_UNREADABLE,
                 "fix the CA directory (ca_dir; agent.conf: ca_dir) or make it readable",
                 "the CA directory %s cannot be read: %s", cfg->ca_dir, strerror(errno));
        return;
    }
    if (!cfg->ca_path && !cfg->ca_dir && !cfg->use_system_trust && !cfg->n_spki_pins) {
        set_item(c, I_FILES, SYNESIS_CHECK_FAILED, SYNESIS_ERR_INVALID_ARGUMENT,
                 "set the edge's CA (ca_path; agent.conf: ca), or use_system_trust",
                 "nothing to trust the edge's certificate with");
        return;
    }
    if (cfg->cert_pem || (cfg->key_path && is_store_uri(cfg->key_path))) {
        set_item(c, I_FILES, SYNESIS_CHECK_OK, 0, "",
                 "identity in memory or in a key store: checked by the handshake");
        return;
    }
    if (!cfg->cert_path) {
        set_item(c, I_FILES, SYNESIS_CHECK_FAILED, SYNESIS_ERR_INVALID_ARGUMENT,
                 "set the device certificate (cert_path; agent.conf: cert), e.g. from synesis init",
                 "no device certificate configured");
        return;
    }
    d[0] = '\0';
    int rv =
        synesis_identity_check(cfg->cert_path, cfg->key_path, cfg->key_passphrase, d, sizeof(d));
    if (rv == 0 || rv == SYNESIS_ERR_CERT_EXPIRED || rv == SYNESIS_ERR_CERT_NOT_YET_VALID) {
        /* Validity is the certificate's and the clock's check. */
        set_item(c, I_FILES, SYNESIS_CHECK_OK, 0, "",
                 "certificate %s and key %s readable, matching, key mode 0600", cfg->cert_path,
                 cfg->key_path ? cfg->key_path : cfg->cert_path);
        return;
    }
    const char *fix;
    char fixbuf[SYNESIS_DETAIL_MAX];
    const char *key = cfg->key_path ? cfg->key_path : cfg->cert_path;
    switch (rv) {
    case SYNESIS_ERR_KEY_PERMISSIONS:
        snprintf(fixbuf, sizeof(fixbuf),
                 "chmod 600 %s (and chown it to the user the agent runs as)", key);
        fix = fixbuf;
        break;
    case SYNESIS_ERR_FILE_NOT_FOUND:
    case SYNESIS_ERR_FILE_UNREADABLE:
        fix = "fix the path (cert_path/key_path; agent.conf: cert/key) or the file's owner; "
              "synesis init creates them";
        break;
    case SYNESIS_ERR_KEY_MISMATCH:
        fix = "use the key the certificate was issued for, or renew both (synesis init --renew)";
        break;
    case SYNESIS_ERR_KEY_ENCRYPTED:
    case SYNESIS_ERR_KEY_PASSPHRASE:
        fix = "give the key's passphrase (key_passphrase)";
        break;
    default:
        fix = "replace the certificate or key (synesis init --renew)";
        break;
    }
    set_item(c, I_FILES, SYNESIS_CHECK_FAILED, rv, fix, "%s", d[0] ? d : synesis_strerror(rv));
}

static void check_cert_and_clock(synesis_check *c, const synesis_tunnel_config *cfg) {
    if (cfg->cert_pem || !cfg->cert_path) {
        set_item(c, I_CERT, SYNESIS_CHECK_SKIPPED, 0, "", "no certificate file to read");
        set_item(c, I_CLOCK, SYNESIS_CHECK_SKIPPED, 0, "", "no certificate file to read");
        return;
    }
    synesis_identity_info *info = NULL;
    char d[SYNESIS_DETAIL_MAX];
    d[0] = '\0';
    int rv = synesis_identity_inspect(cfg->cert_path, &info, d, sizeof(d));
    if (rv != 0) {
        set_item(c, I_CERT, SYNESIS_CHECK_SKIPPED, rv, "", "the certificate cannot be read: %s",
                 d[0] ? d : synesis_strerror(rv));
        set_item(c, I_CLOCK, SYNESIS_CHECK_SKIPPED, 0, "", "the certificate cannot be read");
        return;
    }
    int64_t now = (int64_t)time(NULL);
    char nb[64], na[64], nw[64];
    fmt_time(info->not_before, nb, sizeof(nb));
    fmt_time(info->not_after, na, sizeof(na));
    fmt_time(now, nw, sizeof(nw));
    if (now > info->not_after)
        set_item(c, I_CERT, SYNESIS_CHECK_FAILED, SYNESIS_ERR_CERT_EXPIRED,
                 "renew the device certificate (synesis init --renew, signed by your device CA)",
                 "the device certificate (%s) expired on %s", info->common_name, na);
    else if (info->not_after - now < (int64_t)c->opts.expiry_warning_days * 86400)
        set_item(c, I_CERT, SYNESIS_CHECK_WARNING, 0,
                 "renew the device certificate soon (synesis init --renew)",
                 "the device certificate (%s) expires in %lld days, on %s", info->common_name,
                 (long long)((info->not_after - now) / 86400), na);
    else
        set_item(c, I_CERT, SYNESIS_CHECK_OK, 0, "",
                 "the device certificate (%s) is valid until %s (%lld days)", info->common_name, na,
                 (long long)((info->not_after - now) / 86400));
    if (now < info->not_before)
        set_item(c, I_CLOCK, SYNESIS_CHECK_FAILED, SYNESIS_ERR_CERT_NOT_YET_VALID,
                 "the clock is behind: set it (NTP: timedatectl set-ntp true), or, if the clock "
                 "is right, the certificate was issued with a future notBefore: reissue it",
                 "the device clock (%s) is before the certificate's notBefore (%s)", nw, nb);
    else
        set_item(c, I_CLOCK, SYNESIS_CHECK_OK, 0, "",
                 "the device clock (%s) is after the certificate's notBefore (%s)", nw, nb);
    synesis_identity_info_free(info);
}

/* The proxy item's first half: which proxy applies to the TCP path (the tcp item's tunnel says
 * whether it answered). Returns -1 when the setting is refused (the item says why). */
static int check_proxy(synesis_check *c, const char *configured) {
    syn_proxy px;
    char d[SYNESIS_DETAIL_MAX];
    int rv = syn_proxy_select(configured, c->url.host, &px, d);
    if (rv < 0) {
        set_item(c, I_PROXY, SYNESIS_CHECK_FAILED, rv,
                 "set proxy to http://[user:password@]host[:port] or none (agent.conf: proxy), "
                 "or fix https_proxy",
                 "%s", d);
        return -1;
    }
    if (rv == 0) {
        const char *env = getenv("https_proxy");
        if (!env || !*env)
            env = getenv("HTTPS_PROXY");
        set_item(c, I_PROXY, SYNESIS_CHECK_OK, 0, "", "%s",
                 configured && !*configured ? "no proxy (proxy = none)"
                 : env && *env              ? "no proxy for this edge (no_proxy matches it)"
                               : "no proxy configured or in the environment: TCP goes direct");
        return 0;
    }
    c->have_proxy = 1;
    snprintf(c->proxy_shown, sizeof(c->proxy_shown), "%s", px.shown);
    syn_proxy_clear(&px);
    return 0;
}

/* ---- completion ---- */

/* Stops and frees what the check runs on the loop; the report (c->items) stays. */
static void check_release(synesis_check *c) {
    ev_timer_stop(c->loop, &c->mtu_timer);
    ev_timer_stop(c->loop, &c->deadline);
    ev_timer_stop(c->loop, &c->finish_timer);
    synesis_tunnel_free(c->tcp_tunnel);
    c->tcp_tunnel = NULL;
    syn_resolver_free(c->resolver);
    c->resolver = NULL;
    synesis_tunnel_free(c->tunnel);
    c->tunnel = NULL;
}

static void check_free(synesis_check *c) {
    check_release(c);
    free(c);
}

static char *render_json(const synesis_check_result *r) {
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddBoolToObject(o, "can_connect", r->can_connect);
    cJSON *a = cJSON_AddArrayToObject(o, "checks");
    for (size_t i = 0; a && i < r->n_items; i++) {
        const synesis_check_item *it = &r->items[i];
        cJSON *e = cJSON_CreateObject();
        if (!e || !cJSON_AddItemToArray(a, e)) {
            cJSON_Delete(e);
            break;
        }
        cJSON_AddStringToObject(e, "id", it->id);
        cJSON_AddStringToObject(e, "status", synesis_check_status_name(it->status));
        if (it->error)
            cJSON_AddStringToObject(e, "error", synesis_error_name(it->error));
        else
            cJSON_AddNullToObject(e, "error");
        cJSON_AddStringToObject(e, "finding", it->finding);
        cJSON_AddStringToObject(e, "fix", it->fix);
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static void deliver(synesis_check *c) {
    synesis_check_item items[I_COUNT];
    int failed = 0;
    /* UDP blocked but QUIC over TCP works: the tunnel comes up (transport auto), so UDP's
     * failure is a warning, and TCP's handshake verified the edge's certificate and ours. */
    int tcp_ok = c->items[I_TCP].set && c->items[I_TCP].status == SYNESIS_CHECK_OK;
    int udp_blocked = c->items[I_UDP].status == SYNESIS_CHECK_FAILED &&
                      (c->items[I_UDP].error == SYNESIS_ERR_HANDSHAKE_TIMEOUT ||
                       c->items[I_UDP].error == SYNESIS_ERR_SOCKET);
    /* UDP works: a TCP path (or proxy) that does not is the fallback missing, a warning. */
    if (c->items[I_UDP].status == SYNESIS_CHECK_OK && c->items[I_TRUST].status == SYNESIS_CHECK_OK)
        for (int i = I_TCP; i <= I_PROXY; i++) {
            check_item *it = &c->items[i];
            if (it->status != SYNESIS_CHECK_FAILED)
                continue;
            it->status = SYNESIS_CHECK_WARNING;
            size_t n = strlen(it->finding);
            snprintf(it->finding + n, sizeof(it->finding) - n,
                     " (the tunnel runs over UDP; its TCP fallback would fail here)");
        }
    if (tcp_ok && udp_blocked) {
        check_item *u = &c->items[I_UDP];
        u->status = SYNESIS_CHECK_WARNING;
        size_t n = strlen(u->finding);
        snprintf(u->finding + n, sizeof(u->finding) - n,
                 "; the tunnel falls back to QUIC over TCP (the tcp item)");
        if (c->items[I_TRUST].status == SYNESIS_CHECK_SKIPPED)
            set_item(c, I_TRUST, SYNESIS_CHECK_OK, 0, "",
                     "the edge's certificate verified over TCP (chain, name%s); the edge accepted "
                     "ours",
                     c->tcp_tunnel && c->tcp_tunnel->cfg.n_spki_pins ? ", pins" : "");
    }
    for (int i = 0; i < I_COUNT; i++) {
        check_item *it = &c->items[i];
        if (!it->set)
            set_item(c, i, SYNESIS_CHECK_SKIPPED, 0, "", "not run");
        items[i] = (synesis_check_item){.struct_size = sizeof(synesis_check_item),
                                        .id = item_ids[i],
                                        .status = it->status,
                                        .error = it->error,
                                        .finding = it->finding,
                                        .fix = it->fix};
        if (it->status == SYNESIS_CHECK_FAILED)
            failed = 1;
    }
    synesis_check_result r = {
        .struct_size = sizeof(r),
        .can_connect = !failed && (c->items[I_UDP].status == SYNESIS_CHECK_OK || tcp_ok) &&
                       c->items[I_TRUST].status == SYNESIS_CHECK_OK,
        .status = c->status,
        .items = items,
        .n_items = I_COUNT};
    char *json = render_json(&r);
    r.json = json ? json : "{\"can_connect\":false,\"checks\":[]}";
    if (!json && !r.status)
        r.status = SYNESIS_ERR_NOMEM;
    /* Stop the check's network work first: the callback may stop or destroy the loop. The
     * report's strings live in c until the callback returns. */
    check_release(c);
    c->done(&r, c->user_data);
    free(json);
    free(c);
}

static void on_finish_timer(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    deliver(w->data);
}

/* Marks what ended; when nothing is left, delivers from the loop (a zero timer: never on the
 * stack of a tunnel or resolver callback that still uses its object). */
static void ended(synesis_check *c, int what) {
    c->pending &= ~what;
    if (!c->pending && !ev_is_active(&c->finish_timer)) {
        ev_timer_set(&c->finish_timer, 0., 0.);
        ev_timer_start(c->loop, &c->finish_timer);
    }
}

/* ---- TCP: a QUIC handshake over TCP (through the proxy that applies) ---- */

static void tcp_failed(synesis_check *c, int err, const char *detail) {
    const char *d = detail && *detail ? detail : synesis_strerror(err);
    char fix[SYNESIS_DETAIL_MAX];
    if (err == SYNESIS_ERR_DNS && !c->have_proxy) {
        set_item(c, I_TCP, SYNESIS_CHECK_SKIPPED, err, "", "the edge's name does not resolve");
        return;
    }
    if (err == SYNESIS_ERR_PROXY || err == SYNESIS_ERR_PROXY_AUTH) {
        set_item(c, I_PROXY, SYNESIS_CHECK_FAILED, err,
                 err == SYNESIS_ERR_PROXY_AUTH
                     ? "give the proxy's user and password in its URL (proxy; agent.conf: "
                       "proxy, or https_proxy)"
                     : "ask for CONNECT to the edge's port to be allowed, or use another proxy "
                       "(proxy; agent.conf: proxy)",
                 "proxy %s refused: %s", c->proxy_shown, d);
        set_item(c, I_TCP, SYNESIS_CHECK_FAILED, err, "see the proxy item",
                 "no QUIC over TCP: the proxy refused");
        return;
    }
    if (c->have_proxy && !strstr(d, "CONNECT")) {
        set_item(c, I_PROXY, SYNESIS_CHECK_FAILED, err,
                 "check the proxy's address (proxy; agent.conf: proxy, or https_proxy) and that "
                 "it runs",
                 "proxy %s did not answer: %s", c->proxy_shown, d);
        set_item(c, I_TCP, SYNESIS_CHECK_FAILED, err, "see the proxy item",
                 "no QUIC over TCP: the proxy did not answer");
        return;
    }
    switch (err) {
    case SYNESIS_ERR_PEER_UNTRUSTED:
    case SYNESIS_ERR_PEER_NAME_MISMATCH:
    case SYNESIS_ERR_PEER_PIN_MISMATCH:
    case SYNESIS_ERR_PEER_CERT_EXPIRED:
    case SYNESIS_ERR_CLIENT_CERT_REJECTED:
        snprintf(fix, sizeof(fix), "see the trust item (the same verification as over UDP)");
        break;
    default:
        snprintf(fix, sizeof(fix),
                 "allow TCP to port %u out (firewall), or set a proxy (proxy; agent.conf: proxy); "
                 "check that the edge listens on TCP (edge.conf: tcp, tcp_port)",
                 c->tcp_port);
        break;
    }
    set_item(c, I_TCP, SYNESIS_CHECK_FAILED, err, fix, "QUIC over TCP port %u: %s: %s", c->tcp_port,
             synesis_error_name(err), d);
}

static void on_tcp_state(synesis_tunnel *t, const synesis_tunnel_state *old,
                         const synesis_tunnel_state *st, void *user_data) {
    (void)old;
    synesis_check *c = user_data;
    if (!(c->pending & P_TCP))
        return;
    if (st->kind == SYNESIS_STATE_CONNECTED) {
        synesis_tunnel_stats s;
        synesis_tunnel_get_stats(t, &s);
        if (c->have_proxy)
            set_item(c, I_TCP, SYNESIS_CHECK_OK, 0, "",
                     "QUIC handshake over TCP with %s:%u in %.0f ms through proxy %s (the "
                     "fallback works)",
                     c->url.host, c->tcp_port, s.handshake_time * 1e3, c->proxy_shown);
        else
            set_item(c, I_TCP, SYNESIS_CHECK_OK, 0, "",
                     "QUIC handshake over TCP with %s in %.0f ms (the fallback works)",
                     s.remote_address, s.handshake_time * 1e3);
        if (c->have_proxy)
            set_item(c, I_PROXY, SYNESIS_CHECK_OK, 0, "",
                     "proxy %s answered: CONNECT %s:%u accepted", c->proxy_shown, c->url.host,
                     c->tcp_port);
        ended(c, P_TCP);
    } else if (st->kind == SYNESIS_STATE_FAILED || st->kind == SYNESIS_STATE_RECONNECTING) {
        tcp_failed(c, st->error, st->error_detail);
        ended(c, P_TCP);
    }
}

/* ---- DNS ---- */

static void on_resolved(void *ud, int rv, const syn_addr *addrs, size_t n, const char *detail) {
    synesis_check *c = ud;
    if (rv != 0) {
        set_item(c, I_DNS, SYNESIS_CHECK_FAILED, SYNESIS_ERR_DNS,
                 "check the host name in cloud_url and the resolver (/etc/resolv.conf, "
                 "resolvectl status)",
                 "%s", detail ? detail : "name resolution failed");
        ended(c, P_DNS);
        return;
    }
    char list[SYNESIS_DETAIL_MAX];
    size_t off = 0;
    list[0] = '\0';
    for (size_t i = 0; i < n && off + 64 < sizeof(list); i++) {
        char a[64];
        syn_sockaddr_str((const struct sockaddr *)&addrs[i].ss, a, sizeof(a));
        off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%s", i ? ", " : "", a);
    }
    if (c->url.is_ip)
        set_item(c, I_DNS, SYNESIS_CHECK_OK, 0, "", "%s is an address: no lookup (%s)", c->url.host,
                 list);
    else
        set_item(c, I_DNS, SYNESIS_CHECK_OK, 0, "", "%s resolves to %s", c->url.host, list);
    ended(c, P_DNS);
}

/* ---- UDP: the handshake, its trust and its path MTU ---- */

static void mtu_read(synesis_check *c) {
    size_t m = 1200;
    if (c->tunnel && c->tunnel->qc)
        m = syn_qconn_path_max_udp_payload(c->tunnel->qc);
    if (!c->pmtud)
        set_item(c, I_MTU, SYNESIS_CHECK_OK, 0, "",
                 "path MTU discovery is off (pmtud = 0): 1200-byte datagrams, which passed");
    else
        set_item(c, I_MTU,
                 m >= 1350 || (c->max_udp_payload && c->max_udp_payload <= 1200)
                     ? SYNESIS_CHECK_OK
                     : SYNESIS_CHECK_WARNING,
                 0,
                 m >= 1350 ? ""
                           : "none needed (QUIC works at 1200); if larger datagrams are lost "
                             "on this path, check the MTU of a tunnel or PPPoE link on it",
                 "path MTU discovery: %zu-byte UDP payloads pass (1200: yes, 1350: %s; probed up "
                 "to %zu, max_udp_payload)",
                 m, m >= 1350 ? "yes" : "no", c->max_udp_payload ? c->max_udp_payload : 1452);
}

static void on_mtu_timer(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    synesis_check *c = w->data;
    mtu_read(c);
    ended(c, P_UDP);
}

static void udp_failed(synesis_check *c, int err, const char *detail) {
    char port_fix[SYNESIS_DETAIL_MAX];
    const char *d = detail && *detail ? detail : synesis_strerror(err);
    const char *why = "no handshake";
    switch (err) {
    case SYNESIS_ERR_PEER_UNTRUSTED:
    case SYNESIS_ERR_PEER_NAME_MISMATCH:
    case SYNESIS_ERR_PEER_PIN_MISMATCH:
    case SYNESIS_ERR_PEER_CERT_EXPIRED:
    case SYNESIS_ERR_CLIENT_CERT_REJECTED: {
        set_item(c, I_UDP, SYNESIS_CHECK_OK, 0, "",
                 "the edge answered over UDP port %u (the handshake reached certificate checks)",
                 c->url.port);
        const char *fix =
            err == SYNESIS_ERR_PEER_UNTRUSTED
                ? "set the CA that signed the edge's certificate (ca_path; agent.conf: ca), or "
                  "use_system_trust for a public CA"
            : err == SYNESIS_ERR_PEER_NAME_MISMATCH
                ? "set the name the edge's certificate carries (server_name; agent.conf: "
                  "server_name), or fix the host of cloud_url"
            : err == SYNESIS_ERR_PEER_PIN_MISMATCH
                ? "update the pins to the edge's current key (spki_pins; agent.conf: pin)"
            : err == SYNESIS_ERR_PEER_CERT_EXPIRED
                ? "the edge's certificate expired: renew it on the edge (or check this clock)"
                : "the edge refused the device certificate: have it issued by the device CA "
                  "the edge trusts (edge.conf: client_ca), or renew it";
        set_item(c, I_TRUST, SYNESIS_CHECK_FAILED, err, fix, "%s", d);
        set_item(c, I_MTU, SYNESIS_CHECK_SKIPPED, 0, "", "no connection");
        return;
    }
    case SYNESIS_ERR_HANDSHAKE_TIMEOUT:
        snprintf(port_fix, sizeof(port_fix),
                 "allow UDP to port %u out and back (firewall, NAT, a network that blocks UDP), "
                 "and check that the edge runs",
                 c->url.port);
        set_item(c, I_UDP, SYNESIS_CHECK_FAILED, err, port_fix,
                 "timeout: no answer over UDP within %g s (datagrams dropped on the way, or "
                 "the edge is down): %s",
                 c->handshake_timeout, d);
        why = "no answer over UDP";
        break;
    case SYNESIS_ERR_SOCKET:
        if (strstr(d, "refused")) {
            snprintf(port_fix, sizeof(port_fix),
                     "check the port of cloud_url (%u) and that the edge runs and listens there",
                     c->url.port);
            set_item(c, I_UDP, SYNESIS_CHECK_FAILED, err, port_fix,
                     "ICMP port unreachable: nothing listens on UDP port %u (%s)", c->url.port, d);
            why = "nothing listens";
        } else {
            set_item(c, I_UDP, SYNESIS_CHECK_FAILED, err,
                     "check the device's network: a route to the edge, the firewall", "%s", d);
        }
        break;
    case SYNESIS_ERR_DNS:
        set_item(c, I_UDP, SYNESIS_CHECK_SKIPPED, err, "", "the edge's name does not resolve");
        why = "the name does not resolve";
        break;
    default:
        set_item(c, I_UDP, SYNESIS_CHECK_FAILED, err, "see the finding; the edge's log says more",
                 "%s: %s", synesis_error_name(err), d);
        break;
    }
    set_item(c, I_TRUST, SYNESIS_CHECK_SKIPPED, 0, "", "not reached: %s", why);
    set_item(c, I_MTU, SYNESIS_CHECK_SKIPPED, 0, "", "not reached: %s", why);
}

static void on_state(synesis_tunnel *t, const synesis_tunnel_state *old,
                     const synesis_tunnel_state *st, void *user_data) {
    (void)old;
    synesis_check *c = user_data;
    if (!(c->pending & P_UDP) || ev_is_active(&c->mtu_timer))
        return;
    if (st->kind == SYNESIS_STATE_CONNECTED) {
        synesis_tunnel_stats s;
        synesis_tunnel_get_stats(t, &s);
        set_item(c, I_UDP, SYNESIS_CHECK_OK, 0, "", "QUIC handshake with %s over UDP in %.0f ms",
                 s.remote_address, s.handshake_time * 1e3);
        set_item(c, I_TRUST, SYNESIS_CHECK_OK, 0, "",
                 "the edge's certificate verified (chain, name%s); the edge accepted ours",
                 c->tunnel->cfg.n_spki_pins ? ", pins" : "");
        ev_timer_set(&c->mtu_timer, c->opts.mtu_wait, 0.);
        ev_timer_start(c->loop, &c->mtu_timer);
    } else if (st->kind == SYNESIS_STATE_FAILED || st->kind == SYNESIS_STATE_RECONNECTING) {
        udp_failed(c, st->error, st->error_detail);
        ended(c, P_UDP);
    }
}

static void on_deadline(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    synesis_check *c = w->data;
    if (c->pending & P_DNS) {
        set_item(c, I_DNS, SYNESIS_CHECK_FAILED, SYNESIS_ERR_DNS,
                 "check the resolver (/etc/resolv.conf, resolvectl status)",
                 "no answer for %s within %g s", c->url.host, c->opts.timeout);
        syn_resolver_cancel(c->resolver);
    }
    if ((c->pending & P_UDP) && !ev_is_active(&c->mtu_timer))
        udp_failed(c, SYNESIS_ERR_HANDSHAKE_TIMEOUT, "the check's time ran out");
    else if (c->pending & P_UDP)
        mtu_read(c);
    if (c->pending & P_TCP)
        tcp_failed(c, SYNESIS_ERR_HANDSHAKE_TIMEOUT, "the check's time ran out");
    c->pending = 0;
    ended(c, 0);
}

/* ---- the call ---- */

SYNESIS_API int synesis_check_run(struct ev_loop *loop, const synesis_tunnel_config *cfg,
                                  const synesis_check_options *opts, synesis_check_done_fn done,
                                  void *user_data, synesis_check **out) {
    if (out)
        *out = NULL;
    if (!loop || !cfg || !done)
        return SYNESIS_ERR_INVALID_ARGUMENT;
    char d[SYNESIS_DETAIL_MAX];
    synesis_check_options o = default_options;
    if (opts && syn_struct_in(&o, sizeof(o), opts, "check options", d) != 0)
        return SYNESIS_ERR_INVALID_ARGUMENT;
    if (!(o.timeout >= 0.1 && o.timeout <= 3600) || !(o.mtu_wait >= 0 && o.mtu_wait <= 60) ||
        o.expiry_warning_days < 0 || o.expiry_warning_days > 3650)
        return SYNESIS_ERR_INVALID_ARGUMENT;
    synesis_tunnel_config full;
    synesis_tunnel_config_init(&full);
    if (syn_struct_in(&full, sizeof(full), cfg, "config", d) != 0)
        return SYNESIS_ERR_INVALID_ARGUMENT;
    synesis_check *c = calloc(1, sizeof(*c));
    if (!c)
        return SYNESIS_ERR_NOMEM;
    c->loop = loop;
    c->done = done;
    c->user_data = user_data;
    c->opts = o;
    c->pmtud = full.pmtud;
    c->transport = full.transport;
    c->max_udp_payload = full.max_udp_payload;
    ev_timer_init(&c->mtu_timer, on_mtu_timer, 0., 0.);
    c->mtu_timer.data = c;
    ev_timer_init(&c->deadline, on_deadline, 0., 0.);
    c->deadline.data = c;
    ev_timer_init(&c->finish_timer, on_finish_timer, 0., 0.);
    c->finish_timer.data = c;

    check_files(c, &full);
    check_cert_and_clock(c, &full);

    if (!full.cloud_url || syn_url_parse(full.cloud_url, &c->url, d) != 0) {
        set_item(c, I_FILES, SYNESIS_CHECK_FAILED, SYNESIS_ERR_INVALID_URL,
                 "set cloud_url to quic://HOST[:PORT] (agent.conf: cloud_url)", "cloud_url: %s",
                 full.cloud_url ? d : "not set");
        c->status = SYNESIS_ERR_INVALID_ARGUMENT;
        ended(c, 0);
        goto started;
    }

    c->tcp_port = full.tcp_port ? full.tcp_port : c->url.port;
    int proxy_bad = check_proxy(c, full.proxy) != 0;
    c->resolver = syn_resolver_new(loop, full.resolve, full.resolve_user_data);
    if (!c->resolver) {
        free(c);
        return SYNESIS_ERR_NOMEM;
    }
    c->pending = P_DNS | P_TCP | P_UDP;
    if (syn_resolver_start(c->resolver, c->url.host, c->url.port, on_resolved, c) != 0) {
        check_free(c);
        return SYNESIS_ERR_NOMEM;
    }

    /* The handshake: a tunnel of the check's own, one attempt, nothing but the connection. */
    synesis_tunnel_config tc = full;
    tc.heartbeat_interval = 0;
    tc.retry_initial_connect = 0;
    tc.watch_network = 0;
    tc.resumption = 0;
    tc.early_data = 0;
    tc.transport = SYNESIS_TRANSPORT_UDP; /* the udp item: this handshake never falls back */
    tc.resume_data = NULL;
    tc.resume_data_len = 0;
    tc.share_tls_with = NULL;
    if (tc.handshake_timeout > o.timeout)
        tc.handshake_timeout = o.timeout;
    c->handshake_timeout = tc.handshake_timeout;
    synesis_tunnel_callbacks cb;
    synesis_tunnel_callbacks_init(&cb);
    cb.on_state = on_state;
    d[0] = '\0';
    int rv = synesis_tunnel_new(&c->tunnel, loop, &tc, &cb, c, d, sizeof(d));
    if (rv == SYNESIS_ERR_NOMEM) {
        check_free(c);
        return rv;
    }
    if (rv == 0)
        rv = synesis_tunnel_connect(c->tunnel);
    if (rv != 0) {
        if (rv <= -100 && rv > -200)
            set_item(c, I_UDP, SYNESIS_CHECK_SKIPPED, rv, "",
                     "not tried: the identity cannot be used (%s)", synesis_error_name(rv));
        else
            set_item(c, I_UDP, SYNESIS_CHECK_FAILED, rv,
                     "fix the configuration (the finding names the setting)", "%s: %s",
                     synesis_error_name(rv), d[0] ? d : synesis_strerror(rv));
        set_item(c, I_TRUST, SYNESIS_CHECK_SKIPPED, 0, "", "no handshake");
        set_item(c, I_MTU, SYNESIS_CHECK_SKIPPED, 0, "", "no handshake");
        c->pending &= ~P_UDP;
    }
    /* The tcp item: the same handshake over TCP, as the fallback would make it. */
    if (full.transport == SYNESIS_TRANSPORT_UDP) {
        set_item(c, I_TCP, SYNESIS_CHECK_SKIPPED, 0, "",
                 "transport = udp: the tunnel never uses TCP");
        if (!c->items[I_PROXY].set || c->items[I_PROXY].status == SYNESIS_CHECK_OK)
            set_item(c, I_PROXY, SYNESIS_CHECK_SKIPPED, 0, "", "transport = udp: no proxy is used");
        c->pending &= ~P_TCP;
    } else if (proxy_bad || rv != 0) {
        if (proxy_bad)
            set_item(c, I_TCP, SYNESIS_CHECK_SKIPPED, 0, "",
                     "not tried: the proxy setting is refused");
        else if (rv <= -100 && rv > -200)
            set_item(c, I_TCP, SYNESIS_CHECK_SKIPPED, rv, "",
                     "not tried: the identity cannot be used (%s)", synesis_error_name(rv));
        else
            set_item(c, I_TCP, SYNESIS_CHECK_SKIPPED, rv, "",
                     "not tried: the configuration is refused (%s)", synesis_error_name(rv));
        c->pending &= ~P_TCP;
    } else {
        synesis_tunnel_config tt = tc;
        tt.transport = SYNESIS_TRANSPORT_TCP;
        synesis_tunnel_callbacks tcb;
        synesis_tunnel_callbacks_init(&tcb);
        tcb.on_state = on_tcp_state;
        int trv = synesis_tunnel_new(&c->tcp_tunnel, loop, &tt, &tcb, c, d, sizeof(d));
        if (trv == 0)
            trv = synesis_tunnel_connect(c->tcp_tunnel);
        if (trv != 0) {
            set_item(c, I_TCP, SYNESIS_CHECK_FAILED, trv, "see the finding", "%s: %s",
                     synesis_error_name(trv), d);
            c->pending &= ~P_TCP;
        }
    }
    ev_timer_set(&c->deadline, o.timeout + o.mtu_wait + 1.0, 0.);
    ev_timer_start(loop, &c->deadline);
started:
    if (out)
        *out = c;
    return 0;
}

SYNESIS_API void synesis_check_cancel(synesis_check *c) {
    if (!c)
        return;
    check_free(c);
}

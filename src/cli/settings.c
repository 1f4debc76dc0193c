/* The key tables of agent.conf and edge.conf, their defaults, and their library configurations. */
#include "settings.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define YEAR (365.0 * 86400)

static const char *const cc_names[] = {"cubic", "bbr", "reno", NULL};
static const char *const trust_names[] = {"auto", "yes", "no", NULL};
static const char *const level_names[] = {"error", "warn", "info", "debug", "trace", NULL};
static const char *const profile_names[] = {"default", "low-bandwidth", NULL};
static const char *const transport_names[] = {"auto", "udp", "tcp", NULL};

/* Splits a list of pins at commas and blanks; calls fn on each (NUL-terminated, in buf). */
static int each_pin(const char *list, int (*fn)(const char *pin, void *arg), void *arg) {
    const char *p = list;
    while (*p) {
        while (*p == ',' || *p == ' ' || *p == '\t')
            p++;
        if (!*p)
            break;
        size_t n = strcspn(p, ", \t");
        char buf[128];
        if (n >= sizeof(buf))
            n = sizeof(buf) - 1; /* too long for a pin: fails to parse */
        memcpy(buf, p, n);
        buf[n] = 0;
        int rv = fn(buf, arg);
        if (rv)
            return rv;
        p += strcspn(p, ", \t");
    }
    return 0;
}

typedef struct pin_check {
    char *err;
    size_t errlen;
    size_t count;
    uint8_t (*out)[32];
} pin_check;

static int one_pin(const char *pin, void *arg) {
    pin_check *pc = arg;
    uint8_t tmp[32];
    if (synesis_spki_pin_parse(pin, pc->out ? pc->out[pc->count] : tmp) != 0) {
        snprintf(pc->err, pc->errlen, "'%.64s' is not a pin (sha256//BASE64, or 64 hex digits)",
                 pin);
        return -1;
    }
    pc->count++;
    return 0;
}

static int check_pins(const char *value, char *err, size_t errlen) {
    pin_check pc = {.err = err, .errlen = errlen};
    return each_pin(value, one_pin, &pc);
}

static int check_device_id(const char *value, char *err, size_t errlen) {
    return synesis_identity_validate_device_id(value, err, errlen) == 0 ? 0 : -1;
}

#define T(field) offsetof(cli_tunnel_settings, field)
#define E(field) offsetof(cli_edge_settings, field)
#define STR(n, off, meta, h)                                                                       \
    { .name = n, .type = CONF_STRING, .offset = off, .metavar = meta, .help = h }
#define SECS(n, off, lo, hi, h)                                                                    \
    {                                                                                              \
        .name = n, .type = CONF_SECONDS, .offset = off, .min = lo, .max = hi, .metavar = "S",      \
        .help = h                                                                                  \
    }
#define BOOL(n, off, h)                                                                            \
    { .name = n, .type = CONF_BOOL, .offset = off, .metavar = "yes|no", .help = h }

static const conf_key tunnel_keys[] = {
    {.name = "cloud_url",
     .type = CONF_STRING,
     .offset = T(cloud_url),
     .metavar = "URL",
     .alias = "url",
     .help = "The edge: quic://host[:port] (an IPv6 literal in brackets; port 443 by\n"
             "default). Required."                                              },
    STR("server_name", T(server_name), "NAME",
        "Name the edge's certificate must carry, also sent as SNI; default: the\n"
        "URL's host."),
    STR("alpn", T(alpn), "PROTO", "Application protocol offered to the edge."),
    STR("cert", T(cert), "FILE",
        "The device certificate (PEM, leaf first), as `synesis init` writes it."),
    STR("key", T(key), "FILE",
        "Its private key (PEM, mode 0600: readable by the service user only), or\n"
        "an OSSL_STORE URI."),
    STR("ca", T(ca), "FILE", "Trust this CA (PEM) for the edge's certificate."),
    STR("ca_dir", T(ca_dir), "DIR",
        "Trust the CAs of this hashed directory (<hash>.N names, as c_rehash\n"
        "makes them)."),
    {.name = "system_trust",
     .type = CONF_CHOICE,
     .offset = T(system_trust),
     .choices = trust_names,
     .metavar = "auto|yes|no",
     .help = "Also trust the system's CA store; auto: only when neither ca nor ca_dir\n"
             "is set."                                                          },
    {.name = "spki_pins",
     .type = CONF_STRING,
     .offset = T(spki_pins),
     .metavar = "PINS",
     .check = check_pins,
     .help = "Also require the edge's public key to be one of these: sha256//BASE64\n"
             "(as `synesis init` prints it) or 64 hex digits, separated by commas or\n"
             "blanks."                                                          },
    {.name = "device_id",
     .type = CONF_STRING,
     .offset = T(device_id),
     .metavar = "ID",
     .check = check_device_id,
     .help = "Device id sent in heartbeats; default: from the certificate's CN."},
    {.name = "profile",
     .type = CONF_CHOICE,
     .offset = T(profile),
     .choices = profile_names,
     .metavar = "default|low-bandwidth",
     .help = "low-bandwidth: for metered links (synesis_tunnel_config_low_bandwidth):\n"
             "heartbeats every 600 s with only the vitals that changed, keep-alive\n"
             "100 s, idle timeout 300 s (docs/operations.md for the bytes an hour).\n"
             "heartbeat_interval, keep_alive_interval and idle_timeout, when set to\n"
             "other than their defaults, are kept."                             },
    SECS("heartbeat_interval", T(heartbeat_interval), 0, YEAR,
         "Seconds between heartbeats; 0: none."),
    SECS("keep_alive_interval", T(keep_alive_interval), 0, YEAR,
         "Send a PING after this much quiet; 0: off. Lowered to a third of\n"
         "idle_timeout when above it."),
    SECS("idle_timeout", T(idle_timeout), 0.001, YEAR,
         "A connection silent this long is dead, and the tunnel reconnects."),
    SECS("handshake_timeout", T(handshake_timeout), 0.001, YEAR,
         "Give a connection attempt up after this long."),
    {.name = "max_udp_payload",
     .type = CONF_BYTES,
     .offset = T(max_udp_payload),
     .umin = 1200,
     .umax = 1500,
     .zero_ok = 1,
     .metavar = "BYTES",
     .help = "Largest UDP payload path MTU discovery may reach; 0: 1452. 1280 suits\n"
             "VPNs that drop large datagrams."},
    BOOL("pmtud", T(pmtud), "Path MTU discovery; no: never more than 1200 bytes per datagram."),
    {.name = "congestion_control",
     .type = CONF_CHOICE,
     .offset = T(congestion_control),
     .choices = cc_names,
     .metavar = "cubic|bbr|reno",
     .help = "Congestion controller of what the device sends."                                                        },
    STR("tls_groups", T(tls_groups), "LIST",
        "TLS key-exchange groups, OpenSSL's colon-separated list; default:\n"
        "OpenSSL's, the post-quantum hybrid X25519MLKEM768 first."),
    SECS("reconnect_initial_delay", T(reconnect_initial_delay), 0, YEAR,
         "First delay before reconnecting; each further attempt multiplies it by\n"
         "reconnect_multiplier, up to reconnect_max_delay."),
    SECS("reconnect_max_delay", T(reconnect_max_delay), 0, YEAR,
         "Longest delay between attempts (at least reconnect_initial_delay)."),
    {.name = "reconnect_multiplier",
     .type = CONF_NUMBER,
     .offset = T(reconnect_multiplier),
     .min = 1,
     .max = 1000,
     .metavar = "X",
     .help = "Growth of the delay from one attempt to the next."},
    {.name = "reconnect_max_attempts",
     .type = CONF_COUNT,
     .offset = T(reconnect_max_attempts),
     .umin = 0,
     .umax = CLI_UNLIMITED - 1,
     .word = "unlimited",
     .word_value = CLI_UNLIMITED,
     .metavar = "N",
     .help = "Attempts per outage before giving up (the tunnel fails and the command\n"
             "exits 5)."},
    {.name = "reconnect_jitter",
     .type = CONF_NUMBER,
     .offset = T(reconnect_jitter),
     .min = 0,
     .max = 1,
     .metavar = "J",
     .help = "Each delay d becomes d * (1 + J*u), u uniform in [-1, 1], so devices that\n"
             "lost the same edge do not all come back at once."},
    SECS("reconnect_stable_period", T(reconnect_stable_period), 0, YEAR,
         "Attempts and delay start again from the first only after a connection\n"
         "stayed up this long."),
    BOOL("retry_initial_connect", T(retry_initial_connect),
         "When the first connection fails, keep trying as for an outage (no: the\n"
         "tunnel fails at once)."),
    SECS("close_linger", T(close_linger), 0, 60,
         "On stop, wait at most this long for the last data to be acknowledged."),
    BOOL("watch_network", T(watch_network),
         "Follow the kernel's address and route changes (netlink) and move the\n"
         "connection to the new address without reconnecting (QUIC migration)."),
    SECS("drain_grace", T(drain_grace), 0, YEAR,
         "On SIGTERM, drain: take nothing new, let what is in flight finish for at\n"
         "most this long, then disconnect (SIGINT stops at once)."),
    STR("vitals_disk_path", T(vitals_disk_path), "PATH",
        "Filesystem whose free space heartbeats report (a local one)."),
    BOOL("resumption", T(resumption),
         "Resume the previous TLS session on reconnect (a ticket from the edge):\n"
         "no certificates exchanged, Connected half a round trip sooner."),
    BOOL("early_data", T(early_data),
         "Send a heartbeat in 0-RTT (with the first flight) when resuming, where\n"
         "the edge allows it."),
    STR("resume_file", T(resume_file), "FILE",
        "Keep the edge's newest session ticket in this file (mode 0600, written\n"
        "atomically; a secret like the key: put it next to it), so a restarted\n"
        "agent resumes too (`synesis request` uses it as well). Default: none,\n"
        "tickets only in memory."),
    {.name = "transport",
     .type = CONF_CHOICE,
     .offset = T(transport),
     .choices = transport_names,
     .metavar = "auto|udp|tcp",
     .help = "auto: QUIC over UDP, and over TCP (TLS, port tcp_port) when UDP does not\n"
             "get through, moving back to UDP once it does; udp: never TCP; tcp:\n"
             "TCP only."                 },
    {.name = "tcp_port",
     .type = CONF_COUNT,
     .offset = T(tcp_port),
     .umin = 0,
     .umax = 65535,
     .metavar = "PORT",
     .help = "The edge's TCP port; 0: the URL's port."},
    STR("proxy", T(proxy), "URL",
        "HTTP CONNECT proxy for TCP: http://[user:password@]host[:port]; none:\n"
        "no proxy; unset: https_proxy / no_proxy from the environment, as curl."),
    {.name = "tcp_fallback_after",
     .type = CONF_COUNT,
     .offset = T(tcp_fallback_after),
     .umin = 1,
     .umax = 100,
     .metavar = "N",
     .help = "Go on over TCP after N UDP failures in a row (transport auto)."},
    SECS("udp_fallback_timeout", T(udp_fallback_timeout), 0.001, YEAR,
         "A UDP attempt that hears nothing from the edge this long is a UDP\n"
         "failure (transport auto)."),
    SECS("udp_reprobe_interval", T(udp_reprobe_interval), 0, YEAR,
         "While on TCP, probe UDP after this long, then twice as long after each\n"
         "failed probe (at most 600 s); 0: never (transport auto)."),
    {.name = "log_level",
     .type = CONF_CHOICE,
     .offset = T(log_level),
     .choices = level_names,
     .metavar = "LEVEL",
     .help = "Library messages on stderr from this level up: error, warn, info, debug,\n"
             "trace."                                                                },
};

const conf_table cli_tunnel_table = {tunnel_keys, sizeof(tunnel_keys) / sizeof(tunnel_keys[0])};

/* A table laid out by hand: AlignArrayOfStructures mangles this one. */
/* clang-format off */
static const conf_key edge_keys[] = {
    STR("listen", E(listen), "ADDR:PORT",
        "Address to bind: 0.0.0.0:443, [::]:443 (IPv6 only), 127.0.0.1:4433;\n"
        "port 0 picks a free one. Required. Ports below 1024 need\n"
        "CAP_NET_BIND_SERVICE."),
    STR("cert", E(cert), "FILE", "The edge's certificate chain (PEM). Required."),
    STR("key", E(key), "FILE", "Its private key (PEM). Required."),
    STR("ca", E(ca), "FILE", "The CA that signs the device certificates (PEM). Required."),
    STR("alpn", E(alpn), "PROTO", "Application protocol."),
    STR("log", E(log), "FILE",
        "Append the JSON event lines to FILE; default: stdout (the journal under\n"
        "systemd)."),
    SECS("idle_timeout", E(idle_timeout), 0.001, YEAR, "Close connections silent this long."),
    SECS("handshake_timeout", E(handshake_timeout), 0.001, YEAR,
         "Drop handshakes not completed in this time."),
    {.name = "max_streams",
     .type = CONF_COUNT,
     .offset = E(max_streams),
     .umin = 1,
     .umax = 1ull << 60,
     .metavar = "N",
     .help = "Concurrent request streams per connection."},
    {.name = "max_request_size",
     .type = CONF_BYTES,
     .offset = E(max_request_size),
     .umin = 1,
     .umax = SIZE_MAX,
     .metavar = "BYTES",
     .help = "Largest request or stream upload."},
    {.name = "max_heartbeat_size",
     .type = CONF_BYTES,
     .offset = E(max_heartbeat_size),
     .umin = 1,
     .umax = UINT32_MAX,
     .metavar = "BYTES",
     .help = "Largest heartbeat JSON accepted."},
    {.name = "max_conn_buffer",
     .type = CONF_BYTES,
     .offset = E(max_conn_buffer),
     .umin = 64 * 1024,
     .umax = (1ull << 62) - 1,
     .metavar = "BYTES",
     .help = "Bytes one connection may make the edge hold; also its receive window."},
    {.name = "max_src_size",
     .type = CONF_BYTES,
     .offset = E(max_src_size),
     .umin = 0,
     .umax = UINT64_MAX,
     .metavar = "BYTES",
     .help = "Largest answer to the test command \"SRC n\"."},
    {.name = "retry_threshold",
     .type = CONF_COUNT,
     .offset = E(retry_threshold),
     .umin = 0,
     .umax = UINT32_MAX,
     .word = "never",
     .word_value = UINT64_MAX,
     .metavar = "N",
     .help = "Answer new clients with a stateless Retry while N or more handshakes\n"
             "are in progress; 0: always."},
    {.name = "socket_buffer",
     .type = CONF_BYTES,
     .offset = E(socket_buffer),
     .umin = 0,
     .umax = 1ull << 30,
     .metavar = "BYTES",
     .help = "UDP receive and send buffer; 0: the system's default. Without\n"
             "CAP_NET_ADMIN the kernel caps it at net.core.rmem_max/wmem_max."},
    {.name = "congestion_control",
     .type = CONF_CHOICE,
     .offset = E(congestion_control),
     .choices = cc_names,
     .metavar = "cubic|bbr|reno",
     .help = "Congestion controller of what the edge sends."},
    BOOL("device_pings", E(device_pings),
         "PING each device on its behalf a little before its own keep-alive would\n"
         "(keep_alive_ms in its heartbeats), so one wake-up refreshes its NAT\n"
         "binding; no: devices keep their bindings with their own PINGs."),
    BOOL("session_tickets", E(session_tickets),
         "Send a session ticket after each full handshake, so the device's next\n"
         "connection resumes (no certificates, Connected one round trip sooner)."),
    BOOL("new_tokens", E(new_tokens),
         "Send an address-validation token (NEW_TOKEN) after each handshake, so\n"
         "the device's next connection skips the Retry under load."),
    BOOL("early_data", E(early_data),
         "Accept 0-RTT requests (those the device marks idempotent) from devices\n"
         "resuming a ticket; the tickets become single-use (anti-replay), kept\n"
         "in memory until used or expired. Needs session_tickets."),
    SECS("drain_grace", E(drain_grace), 0, YEAR,
         "On SIGTERM, drain: refuse new requests (the devices send them again\n"
         "elsewhere) and connections, let requests in flight finish for at most\n"
         "this long, ask every device to move, then exit (SIGINT stops at once)."),
    BOOL("tcp", E(tcp),
         "Also listen on TCP for QUIC over TCP (devices whose UDP is blocked);\n"
         "no: UDP only."),
    {.name = "tcp_port",
     .type = CONF_COUNT,
     .offset = E(tcp_port),
     .umin = 0,
     .umax = 65535,
     .metavar = "PORT",
     .help = "TCP port; 0: the same port number as listen's."},
    {.name = "max_tcp_links",
     .type = CONF_COUNT,
     .offset = E(max_tcp_links),
     .umin = 1,
     .umax = 1u << 20,
     .metavar = "N",
     .help = "TCP connections at most; more are closed at once."},
    {.name = "max_tcp_handshakes",
     .type = CONF_COUNT,
     .offset = E(max_tcp_handshakes),
     .umin = 1,
     .umax = 1u << 20,
     .metavar = "N",
     .help = "TLS handshakes on TCP in progress at most (each bounded by\n"
             "handshake_timeout); more are closed at once."},
};
/* clang-format on */

const conf_table cli_edge_table = {edge_keys, sizeof(edge_keys) / sizeof(edge_keys[0])};

int cli_tunnel_settings_init(cli_tunnel_settings *s) {
    synesis_tunnel_config c;
    synesis_tunnel_config_init(&c);
    memset(s, 0, sizeof(*s));
    int rv = 0;
    rv |= conf_set_string(conf_find(&cli_tunnel_table, "alpn"), s, c.alpn);
    rv |= conf_set_string(conf_find(&cli_tunnel_table, "cert"), s, CLI_STATE_DIR "/device.pem");
    rv |= conf_set_string(conf_find(&cli_tunnel_table, "key"), s, CLI_STATE_DIR "/device.key");
    rv |= conf_set_string(conf_find(&cli_tunnel_table, "vitals_disk_path"), s, c.vitals_disk_path);
    s->system_trust = CLI_TRUST_AUTO;
    s->heartbeat_interval = c.heartbeat_interval;
    s->keep_alive_interval = c.keep_alive_interval;
    s->idle_timeout = c.idle_timeout;
    s->handshake_timeout = c.handshake_timeout;
    s->max_udp_payload = c.max_udp_payload;
    s->pmtud = c.pmtud;
    s->congestion_control = (int)c.congestion_control;
    s->reconnect_initial_delay = c.reconnect_initial_delay;
    s->reconnect_max_delay = c.reconnect_max_delay;
    s->reconnect_multiplier = c.reconnect_multiplier;
    /* A service never gives up on its own: the library's default of 10 attempts is for programs
     * that decide themselves. */
    s->reconnect_max_attempts = CLI_UNLIMITED;
    s->reconnect_jitter = c.reconnect_jitter;
    s->reconnect_stable_period = c.reconnect_stable_period;
    /* An agent may well start before the network or the edge is up. */
    s->retry_initial_connect = 1;
    s->close_linger = c.close_linger;
    /* The agent (and request) run on the device, the one that sees its network change. */
    s->watch_network = 1;
    s->drain_grace = 10;
    s->log_level = SYNESIS_LOG_WARN;
    s->resumption = c.resumption;
    s->early_data = c.early_data;
    s->transport = (int)c.transport;
    s->tcp_port = c.tcp_port;
    s->tcp_fallback_after = c.tcp_fallback_after;
    s->udp_fallback_timeout = c.udp_fallback_timeout;
    s->udp_reprobe_interval = c.udp_reprobe_interval;
    if (rv) {
        conf_free(&cli_tunnel_table, s);
        return -1;
    }
    return 0;
}

int cli_edge_settings_init(cli_edge_settings *s) {
    syn_edge_config c;
    syn_edge_config_init(&c);
    memset(s, 0, sizeof(*s));
    if (conf_set_string(conf_find(&cli_edge_table, "alpn"), s, c.alpn) != 0)
        return -1;
    s->idle_timeout = c.idle_timeout;
    s->handshake_timeout = c.handshake_timeout;
    s->max_streams = c.max_streams_bidi;
    s->max_request_size = c.max_request_size;
    s->max_heartbeat_size = c.max_heartbeat_size;
    s->max_conn_buffer = c.max_conn_buffer;
    s->max_src_size = c.max_src_size;
    s->retry_threshold = c.retry_threshold == SYN_EDGE_RETRY_NEVER ? UINT64_MAX : c.retry_threshold;
    s->socket_buffer = c.socket_buffer;
    s->drain_grace = 10;
    s->congestion_control = c.congestion_control;
    s->device_pings = c.ping_devices;
    s->session_tickets = c.session_tickets != 0;
    s->new_tokens = c.new_tokens;
    s->early_data = c.early_data;
    s->tcp = c.tcp;
    s->tcp_port = c.tcp_port;
    s->max_tcp_links = c.max_tcp_links;
    s->max_tcp_handshakes = c.max_tcp_handshakes;
    return 0;
}

int cli_tunnel_apply(const cli_tunnel_settings *s, synesis_tunnel_config *cfg, uint8_t (**pins)[32],
                     char *err, size_t errlen) {
    *pins = NULL;
    if (!s->cloud_url) {
        snprintf(err, errlen, "cloud_url is not set (in the file, or --cloud-url)");
        return -1;
    }
    cfg->cloud_url = s->cloud_url;
    cfg->server_name = s->server_name;
    cfg->alpn = s->alpn;
    cfg->cert_path = s->cert;
    cfg->key_path = s->key;
    cfg->ca_path = s->ca;
    cfg->ca_dir = s->ca_dir;
    cfg->use_system_trust = s->system_trust == CLI_TRUST_YES ||
                            (s->system_trust == CLI_TRUST_AUTO && !s->ca && !s->ca_dir);
    if (!cfg->use_system_trust && !s->ca && !s->ca_dir) {
        snprintf(err, errlen, "system_trust = no leaves nothing to trust: set ca or ca_dir");
        return -1;
    }
    if (s->spki_pins) {
        pin_check count = {.err = err, .errlen = errlen};
        if (each_pin(s->spki_pins, one_pin, &count) != 0)
            return -1;
        if (count.count) {
            pin_check fill = {.err = err, .errlen = errlen, .out = calloc(count.count, 32)};
            if (!fill.out) {
                snprintf(err, errlen, "out of memory");
                return -1;
            }
            each_pin(s->spki_pins, one_pin, &fill);
            cfg->spki_pins = (const uint8_t(*)[32])fill.out;
            cfg->n_spki_pins = fill.count;
            *pins = fill.out;
        }
    }
    cfg->device_id = s->device_id;
    /* The profile replaces the defaults; a value set to something else stays. */
    synesis_tunnel_config d, p;
    synesis_tunnel_config_init(&d);
    p = d;
    if (s->profile == 1)
        synesis_tunnel_config_low_bandwidth(&p);
    cfg->heartbeat_interval = s->heartbeat_interval == d.heartbeat_interval ? p.heartbeat_interval
                                                                            : s->heartbeat_interval;
    cfg->keep_alive_interval = s->keep_alive_interval == d.keep_alive_interval
                                   ? p.keep_alive_interval
                                   : s->keep_alive_interval;
    cfg->idle_timeout = s->idle_timeout == d.idle_timeout ? p.idle_timeout : s->idle_timeout;
    cfg->heartbeat_changed_vitals = p.heartbeat_changed_vitals;
    /* A quiet but healthy connection must send PINGs well within the idle timeout. */
    if (cfg->keep_alive_interval > cfg->idle_timeout / 3)
        cfg->keep_alive_interval = cfg->idle_timeout / 3;
    cfg->handshake_timeout = s->handshake_timeout;
    cfg->max_udp_payload = (size_t)s->max_udp_payload;
    cfg->pmtud = s->pmtud;
    cfg->congestion_control = (synesis_congestion_control)s->congestion_control;
    cfg->tls_groups = s->tls_groups;
    cfg->reconnect_initial_delay = s->reconnect_initial_delay;
    cfg->reconnect_max_delay = s->reconnect_max_delay;
    if (s->reconnect_max_delay < s->reconnect_initial_delay) {
        snprintf(err, errlen, "reconnect_max_delay (%g s) is below reconnect_initial_delay (%g s)",
                 s->reconnect_max_delay, s->reconnect_initial_delay);
        free(*pins);
        *pins = NULL;
        return -1;
    }
    cfg->reconnect_multiplier = s->reconnect_multiplier;
    cfg->reconnect_max_attempts = (uint32_t)s->reconnect_max_attempts;
    cfg->reconnect_jitter = s->reconnect_jitter;
    cfg->reconnect_stable_period = s->reconnect_stable_period;
    cfg->retry_initial_connect = s->retry_initial_connect;
    cfg->close_linger = s->close_linger;
    cfg->watch_network = s->watch_network;
    cfg->vitals_disk_path = s->vitals_disk_path;
    cfg->log_level = (synesis_log_level)s->log_level;
    cfg->resumption = s->resumption;
    cfg->early_data = s->early_data;
    cfg->transport = (synesis_transport)s->transport;
    cfg->tcp_port = (uint16_t)s->tcp_port;
    cfg->tcp_fallback_after = (uint32_t)s->tcp_fallback_after;
    cfg->udp_fallback_timeout = s->udp_fallback_timeout;
    cfg->udp_reprobe_interval = s->udp_reprobe_interval;
    cfg->proxy = s->proxy && strcmp(s->proxy, "none") == 0 ? "" : s->proxy;
    return 0;
}

void cli_edge_apply(const cli_edge_settings *s, syn_edge_config *cfg) {
    cfg->listen = s->listen;
    cfg->cert_file = s->cert;
    cfg->key_file = s->key;
    cfg->ca_file = s->ca;
    cfg->alpn = s->alpn;
    cfg->idle_timeout = s->idle_timeout;
    cfg->handshake_timeout = s->handshake_timeout;
    cfg->max_streams_bidi = s->max_streams; /* heartbeat (unidirectional) streams: the default */
    cfg->max_request_size = (size_t)s->max_request_size;
    cfg->max_heartbeat_size = (size_t)s->max_heartbeat_size;
    cfg->max_conn_buffer = (size_t)s->max_conn_buffer;
    cfg->max_src_size = s->max_src_size;
    cfg->retry_threshold =
        s->retry_threshold == UINT64_MAX ? SYN_EDGE_RETRY_NEVER : (size_t)s->retry_threshold;
    cfg->socket_buffer = (size_t)s->socket_buffer;
    cfg->congestion_control = s->congestion_control;
    cfg->ping_devices = s->device_pings;
    cfg->session_tickets = s->session_tickets ? 1 : 0;
    cfg->new_tokens = s->new_tokens;
    cfg->early_data = s->early_data;
    cfg->tcp = s->tcp;
    cfg->tcp_port = (uint16_t)s->tcp_port;
    cfg->max_tcp_links = (size_t)s->max_tcp_links;
    cfg->max_tcp_handshakes = (size_t)s->max_tcp_handshakes;
}

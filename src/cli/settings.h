/*
 * The settings of `synesis agent` / `synesis request` (the device side: agent.conf) and of
 * `synesis edge` (edge.conf): their key tables, defaults, and how they become a library
 * configuration.
 */
#ifndef SYNESIS_CLI_SETTINGS_H
#define SYNESIS_CLI_SETTINGS_H

#include <stdint.h>

#include "conf.h"
#include "edge/edge.h"
#include "synesis/synesis.h"

#define CLI_AGENT_CONF "/etc/synesis/agent.conf"
#define CLI_EDGE_CONF "/etc/synesis/edge.conf"
/* Where `synesis init` writes the device identity, and where the agent looks for it. */
#define CLI_STATE_DIR "/var/lib/synesis"

/* system_trust: auto = on unless ca or ca_dir is set. */
enum { CLI_TRUST_AUTO = 0, CLI_TRUST_YES = 1, CLI_TRUST_NO = 2 };

typedef struct cli_tunnel_settings {
    char *cloud_url;
    char *server_name;
    char *alpn;
    char *cert;
    char *key;
    char *ca;
    char *ca_dir;
    int system_trust;
    char *spki_pins;
    char *device_id;
    int profile; /* 0 default, 1 low-bandwidth */
    double heartbeat_interval;
    double keep_alive_interval;
    double idle_timeout;
    double handshake_timeout;
    uint64_t max_udp_payload;
    int pmtud;
    int congestion_control;
    char *tls_groups;
    double reconnect_initial_delay;
    double reconnect_max_delay;
    double reconnect_multiplier;
    uint64_t reconnect_max_attempts;
    double reconnect_jitter;
    double reconnect_stable_period;
    int retry_initial_connect;
    double close_linger;
    int watch_network;
    double drain_grace;
    char *vitals_disk_path;
    int log_level;
    int resumption, early_data;
    char *resume_file;
    int transport; /* synesis_transport */
    uint64_t tcp_port;
    uint64_t tcp_fallback_after;
    double udp_fallback_timeout;
    double udp_reprobe_interval;
    char *proxy; /* NULL: the environment; "none": no proxy */
} cli_tunnel_settings;

typedef struct cli_edge_settings {
    char *listen;
    char *cert;
    char *key;
    char *ca;
    char *alpn;
    char *log;
    double idle_timeout;
    double handshake_timeout;
    uint64_t max_streams;
    uint64_t max_request_size;
    uint64_t max_heartbeat_size;
    uint64_t max_conn_buffer;
    uint64_t max_src_size;
    uint64_t retry_threshold;
    uint64_t socket_buffer;
    int congestion_control;
    int device_pings;
    int session_tickets, new_tokens, early_data;
    double drain_grace;
    int tcp;
    uint64_t tcp_port;
    uint64_t max_tcp_links, max_tcp_handshakes;
} cli_edge_settings;

extern const conf_table cli_tunnel_table;
extern const conf_table cli_edge_table;

/* Fill with the defaults (strings allocated: release with conf_free). Return 0 or -1 (out of
 * memory). */
int cli_tunnel_settings_init(cli_tunnel_settings *s);
int cli_edge_settings_init(cli_edge_settings *s);

/* The reconnect_max_attempts word "unlimited". */
#define CLI_UNLIMITED UINT32_MAX

/* Fills cfg (from synesis_tunnel_config_init()) from s. Strings are borrowed from s; the pins
 * are parsed into *pins (malloc'ed, free after synesis_tunnel_new()). Returns 0, or -1 with the
 * offending key and why in err. */
int cli_tunnel_apply(const cli_tunnel_settings *s, synesis_tunnel_config *cfg, uint8_t (**pins)[32],
                     char *err, size_t errlen);

/* Creates the tunnel of s on loop (cfg from synesis_tunnel_config_init(), filled here; library
 * messages to stderr prefixed with prog), which checks the certificate, key and trust. Shared by
 * `synesis agent` and `synesis request`. Returns 0 with *out, or an exit status (the message
 * printed): 3 for settings the library refuses, 4 for an identity error. */
int cli_agent_tunnel(const char *prog, const cli_tunnel_settings *s, synesis_tunnel_config *cfg,
                     struct ev_loop *loop, const synesis_tunnel_callbacks *cb, void *ud,
                     synesis_tunnel **out);

/* Fills cfg (from syn_edge_config_init()) from s; strings borrowed. */
void cli_edge_apply(const cli_edge_settings *s, syn_edge_config *cfg);

#endif /* SYNESIS_CLI_SETTINGS_H */

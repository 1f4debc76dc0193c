/*
 * synesis-agent: what a device's local agent does with the library, in a few dozen lines. It
 * keeps a tunnel to the edge up on a libev loop (reconnecting is the library's job, not ours),
 * and prints one JSON line per state change and per heartbeat:
 *
 *   {"event":"state","from":"Connecting","to":"Connected","ts_ms":...,"latency_ms":0}
 *   {"event":"heartbeat","sequence":1,"rtt_ms":0,"bytes":301}
 *   {"event":"stats","stats":{...synesis_tunnel_stats_json()...}}      (last, on exit)
 *
 * It stops on SIGINT/SIGTERM or after --duration seconds, closing the tunnel gracefully.
 * Exit status: 0 after a clean run, 1 if the tunnel ended in Failed (the library gave up, e.g.
 * after its reconnect attempts ran out, or the edge's certificate was not trusted), 2 usage
 * error.
 */
#include <cjson/cJSON.h>
#include <ev.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "common.h"
#include "synesis/synesis.h"

static const char *prog = "synesis-agent";

static void usage(void) {
    printf("usage: %s --url URL --server-name NAME --cert FILE --key FILE [--ca FILE]\n"
           "       [--device-id ID] [--heartbeat-interval S] [--duration S]\n"
           "       [--reconnect-initial S] [--idle-timeout S]\n"
           "\n"
           "Keeps a synesis tunnel up and prints one JSON line per state change and heartbeat,\n"
           "then the statistics on exit.\n"
           "\n"
           "  --url URL               the edge, e.g. quic://edge.example.com:4433\n"
           "  --server-name NAME      name the edge's certificate must carry\n"
           "  --cert FILE, --key FILE the device certificate and key (key mode 0600)\n"
           "  --ca FILE               trust only this CA for the edge (default: system store)\n"
           "  --device-id ID          id sent in heartbeats (default: from the certificate)\n"
           "  --heartbeat-interval S  seconds between heartbeats (default 30; 0 = none)\n"
           "  --duration S            stop after S seconds (default: run until SIGINT/SIGTERM)\n"
           "  --reconnect-initial S   first reconnect delay, doubling up to 60 s (default 1)\n"
           "  --idle-timeout S        declare the connection dead after S quiet seconds "
           "(default 60)\n",
           prog);
}

typedef struct agent {
    struct ev_loop *loop;
    synesis_tunnel *tunnel;
    ev_signal sigint, sigterm;
    ev_timer duration;
    int failed;
} agent;

/* Prints obj as one line of JSON and frees it. Flushed, so a pipe reader sees it at once. */
static void print_json(cJSON *obj) {
    char *line = obj ? cJSON_PrintUnformatted(obj) : NULL;
    if (line) {
        printf("%s\n", line);
        fflush(stdout);
        cJSON_free(line);
    }
    cJSON_Delete(obj);
}

/* Prints {"event":"stats","stats":{...}} with the tunnel's statistics. */
static void print_stats(synesis_tunnel *t) {
    char small[2048];
    char *json = small;
    int len = synesis_tunnel_stats_json(t, small, sizeof(small));
    if (len >= (int)sizeof(small) && (json = malloc((size_t)len + 1)) != NULL)
        synesis_tunnel_stats_json(t, json, (size_t)len + 1);
    if (len >= 0 && json) {
        cJSON *obj = cJSON_CreateObject();
        cJSON_AddStringToObject(obj, "event", "stats");
        cJSON_AddItemToObject(obj, "stats", cJSON_Parse(json));
        print_json(obj);
    }
    if (json != small)
        free(json);
}

static void on_state(synesis_tunnel *t, const synesis_tunnel_state *old,
                     const synesis_tunnel_state *st, void *user_data) {
    (void)t;
    agent *a = user_data;
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddStringToObject(obj, "event", "state");
    cJSON_AddStringToObject(obj, "from", synesis_state_name(old->kind));
    cJSON_AddStringToObject(obj, "to", synesis_state_name(st->kind));
    cJSON_AddNumberToObject(obj, "ts_ms", (double)st->entered_ms);
    if (st->kind == SYNESIS_STATE_CONNECTED)
        cJSON_AddNumberToObject(obj, "latency_ms", st->latency_ms);
    if (st->kind == SYNESIS_STATE_RECONNECTING)
        cJSON_AddNumberToObject(obj, "attempt", st->attempt);
    if ((st->kind == SYNESIS_STATE_RECONNECTING || st->kind == SYNESIS_STATE_FAILED) && st->error) {
        cJSON_AddStringToObject(obj, "error", synesis_error_name(st->error));
        cJSON_AddStringToObject(obj, "detail", st->error_detail);
    }
    print_json(obj);

    if (st->kind == SYNESIS_STATE_FAILED) { /* the library gave up: so do we */
        a->failed = 1;
        ev_break(a->loop, EVBREAK_ALL);
    }
}

static void on_heartbeat(synesis_tunnel *t, const synesis_heartbeat_info *hb, void *user_data) {
    (void)t;
    (void)user_data;
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddStringToObject(obj, "event", "heartbeat");
    cJSON_AddNumberToObject(obj, "sequence", (double)hb->sequence);
    cJSON_AddNumberToObject(obj, "rtt_ms", hb->rtt_ms);
    if (hb->status == 0) {
        cJSON_AddNumberToObject(obj, "bytes", (double)hb->size);
    } else {
        cJSON_AddStringToObject(obj, "error", synesis_error_name(hb->status));
    }
    print_json(obj);
}

/* SIGINT/SIGTERM and the --duration timer are ordinary loop events (no signal() handler doing
 * work): they just leave the loop, and main() closes the tunnel. */
static void on_signal(struct ev_loop *loop, ev_signal *w, int revents) {
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

static void on_duration(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

int main(int argc, char **argv) {
    enum { OPT_HB = 256, OPT_DURATION, OPT_RECONNECT, OPT_IDLE };
    static const struct option longopts[] = {
        {"url",                required_argument, NULL, 'u'          },
        {"server-name",        required_argument, NULL, 's'          },
        {"cert",               required_argument, NULL, 'c'          },
        {"key",                required_argument, NULL, 'k'          },
        {"ca",                 required_argument, NULL, 'a'          },
        {"device-id",          required_argument, NULL, 'i'          },
        {"heartbeat-interval", required_argument, NULL, OPT_HB       },
        {"duration",           required_argument, NULL, OPT_DURATION },
        {"reconnect-initial",  required_argument, NULL, OPT_RECONNECT},
        {"idle-timeout",       required_argument, NULL, OPT_IDLE     },
        {"help",               no_argument,       NULL, 'h'          },
        {NULL,                 0,                 NULL, 0            },
    };
    ex_client_options o = {0};
    synesis_tunnel_config cfg;
    synesis_tunnel_config_init(&cfg);
    double duration = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case 'i':
            cfg.device_id = optarg;
            break;
        case OPT_HB:
            if (ex_parse_seconds(prog, "--heartbeat-interval", optarg, 1, &cfg.heartbeat_interval))
                return EX_USAGE_STATUS;
            break;
        case OPT_DURATION:
            if (ex_parse_seconds(prog, "--duration", optarg, 0, &duration))
                return EX_USAGE_STATUS;
            break;
        case OPT_RECONNECT:
            if (ex_parse_seconds(prog, "--reconnect-initial", optarg, 1,
                                 &cfg.reconnect_initial_delay))
                return EX_USAGE_STATUS;
            break;
        case OPT_IDLE:
            if (ex_parse_seconds(prog, "--idle-timeout", optarg, 0, &cfg.idle_timeout))
                return EX_USAGE_STATUS;
            break;
        case 'h':
            usage();
            return 0;
        default:
            if (ex_client_option(&o, c, optarg))
                break; /* --url, --server-name, --cert, --key, --ca */
            return ex_bad_option(prog, argv, c);
        }
    }
    if (optind < argc)
        return ex_usage_error(prog, "unexpected argument '%s'", argv[optind]);
    if (ex_client_check(prog, &o))
        return EX_USAGE_STATUS;

    ex_client_config(&cfg, &o, prog);
    /* An agent may well start before the edge (or the network) is up: keep trying with the
     * reconnect policy instead of going to Failed on the first failed connect. */
    cfg.retry_initial_connect = 1;
    if (cfg.reconnect_max_delay < cfg.reconnect_initial_delay)
        cfg.reconnect_max_delay = cfg.reconnect_initial_delay;
    /* A quiet but healthy connection must send PINGs well within the idle timeout. */
    if (cfg.keep_alive_interval > cfg.idle_timeout / 3)
        cfg.keep_alive_interval = cfg.idle_timeout / 3;

    agent a = {.loop = EV_DEFAULT};
    synesis_tunnel_callbacks cb;
    synesis_tunnel_callbacks_init(&cb);
    cb.on_state = on_state;
    cb.on_heartbeat = on_heartbeat;
    char detail[512] = "";
    int rv = synesis_tunnel_new(&a.tunnel, a.loop, &cfg, &cb, &a, detail, sizeof(detail));
    if (rv != 0) {
        fprintf(stderr, "%s: %s: %s\n", prog, synesis_error_name(rv), detail);
        return 1;
    }

    ev_signal_init(&a.sigint, on_signal, SIGINT);
    ev_signal_init(&a.sigterm, on_signal, SIGTERM);
    ev_signal_start(a.loop, &a.sigint);
    ev_signal_start(a.loop, &a.sigterm);
    ev_timer_init(&a.duration, on_duration, duration, 0.);
    if (duration > 0)
        ev_timer_start(a.loop, &a.duration);

    rv = synesis_tunnel_connect(a.tunnel);
    if (rv != 0) {
        fprintf(stderr, "%s: connect: %s\n", prog, synesis_strerror(rv));
        a.failed = 1;
    } else {
        ev_run(a.loop, 0); /* until a signal, --duration, or Failed */
    }

    /* Out of the loop: close gracefully (the edge gets CONNECTION_CLOSE; refused, harmlessly,
     * when already Failed), print the statistics, free everything. */
    synesis_tunnel_disconnect(a.tunnel);
    print_stats(a.tunnel);
    synesis_tunnel_free(a.tunnel);
    ev_signal_stop(a.loop, &a.sigint);
    ev_signal_stop(a.loop, &a.sigterm);
    ev_timer_stop(a.loop, &a.duration);
    return a.failed ? 1 : 0;
}

/*
 * synesis agent: keeps the device's tunnel to the edge up (reconnecting is the library's job) and
 * prints one JSON line per state change and per heartbeat, then the statistics on exit. The
 * settings come from /etc/synesis/agent.conf (or --config FILE), flags override them. The loop
 * follows examples/agent.c.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "settings.h"

static const char *const prog = "synesis agent";

void cli_agent_usage(FILE *f) {
    cli_tunnel_settings defaults;
    int have = cli_tunnel_settings_init(&defaults) == 0;
    fprintf(f, "usage: synesis agent [--config FILE] [--duration S] [--check-config] [OPTION...]\n"
               "\n"
               "Keeps the device's tunnel to the edge up and prints one JSON line per state\n"
               "change and per heartbeat on stdout, then the statistics when it stops (on\n"
               "SIGINT or SIGTERM, or after --duration). Library messages go to stderr.\n"
               "SIGTERM drains first: what is in flight finishes (at most drain_grace),\n"
               "then the tunnel disconnects. SIGHUP reads cert and key again (after\n"
               "synesis init --renew) and moves the tunnel to them, make before break (the\n"
               "old connection finishes within drain_grace); a bad pair is refused and the\n"
               "old identity stays (an \"identity\" line says which).\n"
               "\n"
               "  --config FILE     the configuration file (default " CLI_AGENT_CONF "; a\n"
               "                    missing default file is skipped; /dev/null reads none)\n"
               "  --duration S      stop after S seconds (default: run until a signal)\n"
               "  --check-config    load the file and the flags, check the certificate, key\n"
               "                    and trust, print the settings in effect as a configuration\n"
               "                    file, and exit\n"
               "  --help            this text\n"
               "\n"
               "Every key of the configuration file is also an option, --key-name for\n"
               "key_name; an option overrides the file:\n"
               "\n");
    conf_print_help(f, &cli_tunnel_table, have ? &defaults : NULL);
    fprintf(f, "\n"
               "Output lines:\n"
               "  {\"event\":\"start\",\"version\":...,\"config\":FILE,\"cloud_url\":URL}\n"
               "  {\"event\":\"state\",\"from\":\"Connecting\",\"to\":\"Connected\",\"ts_ms\":...,"
               "\"latency_ms\":3,\"transport\":\"udp\"}\n"
               "  {\"event\":\"heartbeat\",\"sequence\":1,\"rtt_ms\":3,\"transport\":\"udp\","
               "\"bytes\":301}\n"
               "  {\"event\":\"stats\",\"stats\":{...}}   (last)\n"
               "\n"
               "Exit status: 0 stopped by a signal or --duration; 2 usage; 3 configuration;\n"
               "4 the certificate, key or CA cannot be used; 5 the tunnel failed (the edge\n"
               "refused the device, or reconnect_max_attempts ran out); 1 another failure.\n");
    if (have)
        conf_free(&cli_tunnel_table, &defaults);
}

typedef struct agent {
    struct ev_loop *loop;
    synesis_tunnel *tunnel;
    ev_signal sigint, sigterm, sighup;
    ev_timer duration;
    const synesis_tunnel_config *cfg; /* its cert, key and passphrase: reloaded on SIGHUP */
    int status;                       /* exit status */
    int draining;                     /* SIGTERM: synesis_tunnel_drain() until Disconnected */
    double drain_grace;
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
    if (st->kind == SYNESIS_STATE_CONNECTED) {
        cJSON_AddNumberToObject(obj, "latency_ms", st->latency_ms);
        cJSON_AddStringToObject(obj, "transport", synesis_transport_name(st->transport));
    }
    if (st->kind == SYNESIS_STATE_RECONNECTING)
        cJSON_AddNumberToObject(obj, "attempt", st->attempt);
    if ((st->kind == SYNESIS_STATE_RECONNECTING || st->kind == SYNESIS_STATE_FAILED) && st->error) {
        cJSON_AddStringToObject(obj, "error", synesis_error_name(st->error));
        cJSON_AddStringToObject(obj, "detail", st->error_detail);
    }
    print_json(obj);

    if (st->kind == SYNESIS_STATE_DISCONNECTED && a->draining) { /* the drain is done */
        ev_break(a->loop, EVBREAK_ALL);
        return;
    }
    if (st->kind == SYNESIS_STATE_FAILED) { /* the library gave up: so do we */
        cli_report(prog, st->error, st->error_detail);
        a->status = st->error ? cli_exit_for_error(st->error) : CLI_EXIT_CONNECTION;
        ev_break(a->loop, EVBREAK_ALL);
    }
}

static void on_heartbeat(synesis_tunnel *t, const synesis_heartbeat_info *hb, void *user_data) {
    (void)user_data;
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddStringToObject(obj, "event", "heartbeat");
    cJSON_AddNumberToObject(obj, "sequence", (double)hb->sequence);
    cJSON_AddNumberToObject(obj, "rtt_ms", hb->rtt_ms);
    synesis_tunnel_state st;
    if (synesis_tunnel_get_state(t, &st) == 0 && st.kind == SYNESIS_STATE_CONNECTED)
        cJSON_AddStringToObject(obj, "transport", synesis_transport_name(st.transport));
    if (hb->status == 0)
        cJSON_AddNumberToObject(obj, "bytes", (double)hb->size);
    else
        cJSON_AddStringToObject(obj, "error", synesis_error_name(hb->status));
    print_json(obj);
}

/* SIGINT and --duration are ordinary loop events: they leave the loop, and the main function
 * closes the tunnel. SIGTERM drains first (synesis_tunnel_drain(), drain_grace): the loop is left
 * when the tunnel is Disconnected (on_state); a second SIGTERM leaves at once. */
static void on_signal(struct ev_loop *loop, ev_signal *w, int revents) {
    (void)revents;
    agent *a = w->data;
    if (w->signum == SIGTERM && !a->draining) {
        a->draining = 1;
        fprintf(stderr, "%s: SIGTERM, draining (at most %g s)\n", prog, a->drain_grace);
        synesis_tunnel_state st;
        if (synesis_tunnel_drain(a->tunnel, a->drain_grace) == 0 &&
            synesis_tunnel_get_state(a->tunnel, &st) == 0 && st.kind != SYNESIS_STATE_DISCONNECTED)
            return;
    }
    ev_break(loop, EVBREAK_ALL);
}

static void print_identity(int status, const char *detail) {
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddStringToObject(obj, "event", "identity");
    cJSON_AddStringToObject(obj, "status", status ? synesis_error_name(status) : "rotated");
    if (status)
        cJSON_AddStringToObject(obj, "detail", detail);
    print_json(obj);
}

static void on_identity(synesis_tunnel *t, int status, const char *detail, void *user_data) {
    (void)t;
    (void)user_data;
    print_identity(status, detail);
}

/* SIGHUP: the identity files are read again (e.g. after synesis init --renew) and the tunnel
 * rotates to them, make before break; a bad pair is refused and the tunnel keeps the old one. */
static void on_sighup(struct ev_loop *loop, ev_signal *w, int revents) {
    (void)loop;
    (void)revents;
    agent *a = w->data;
    synesis_identity_source id;
    synesis_identity_source_init(&id);
    id.cert_path = a->cfg->cert_path;
    id.key_path = a->cfg->key_path;
    id.cert_pem = a->cfg->cert_pem;
    id.key_pem = a->cfg->key_pem;
    id.key_passphrase = a->cfg->key_passphrase;
    fprintf(stderr, "%s: SIGHUP, reloading the identity\n", prog);
    int rv = synesis_tunnel_rotate_identity(a->tunnel, &id, a->drain_grace);
    if (rv != 0)
        print_identity(rv, synesis_strerror(rv));
}

static void on_duration(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

enum { F_DURATION = 1, F_CHECK };

typedef struct agent_args {
    double duration;
    int check;
} agent_args;

static int on_flag(void *ctx, int id, const char *arg) {
    agent_args *a = ctx;
    if (id == F_CHECK) {
        a->check = 1;
        return -1;
    }
    /* --duration: the same rules as a seconds key, above 0. */
    static const conf_key k = {
        .name = "duration", .type = CONF_SECONDS, .offset = 0, .min = 0.001, .max = 365.0 * 86400};
    char why[256];
    if (conf_set(&k, &a->duration, arg, why, sizeof(why)) != 0)
        return cli_usage_error(prog, "--duration: %s", why);
    return -1;
}

/* resume_file: the one tunnel of this process keeps its newest session ticket there. */
static const char *resume_prog, *resume_path;

/* The saved data, or NULL: none yet (the first run), or unusable, with a warning. The library
 * checks the contents (and ignores what it cannot use, with a warning of its own). */
static uint8_t *resume_load(const char *p, const char *path, size_t *len) {
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno != ENOENT)
            fprintf(stderr, "%s: resume_file %s: %s (ignored: a full handshake)\n", p, path,
                    strerror(errno));
        return NULL;
    }
    struct stat st;
    uint8_t *buf = NULL;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 || st.st_size > 64 * 1024) {
        fprintf(stderr, "%s: resume_file %s: not a regular file of 1 byte to 64 KiB (ignored)\n", p,
                path);
    } else if (st.st_mode & 077) {
        /* It holds a TLS resumption secret: like the key, never from a file others can read. */
        fprintf(stderr, "%s: resume_file %s: readable by group or others (mode %04o): ignored\n", p,
                path, (unsigned)(st.st_mode & 07777));
    } else if ((buf = malloc((size_t)st.st_size)) != NULL &&
               read(fd, buf, (size_t)st.st_size) == (ssize_t)st.st_size) {
        *len = (size_t)st.st_size;
    } else {
        fprintf(stderr, "%s: resume_file %s: cannot read it (ignored)\n", p, path);
        free(buf);
        buf = NULL;
    }
    close(fd);
    return buf;
}

/* callbacks.on_resume_data: a temporary file of mode 0600 beside it, synced, renamed over it. */
static void resume_save(synesis_tunnel *t, const uint8_t *data, size_t len, void *ud) {
    (void)t;
    (void)ud;
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", resume_path) >= (int)sizeof(tmp))
        return;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    int ok = fd >= 0 && fchmod(fd, 0600) == 0;
    for (size_t off = 0; ok && off < len;) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        ok = n > 0;
        off += ok ? (size_t)n : 0;
    }
    ok = ok && fsync(fd) == 0;
    if (fd >= 0 && close(fd) != 0)
        ok = 0;
    if (ok && rename(tmp, resume_path) == 0)
        return;
    fprintf(stderr, "%s: resume_file %s: cannot write it: %s\n", resume_prog, resume_path,
            strerror(errno));
    if (fd >= 0)
        unlink(tmp);
}

int cli_agent_tunnel(const char *p, const cli_tunnel_settings *s, synesis_tunnel_config *cfg,
                     struct ev_loop *loop, const synesis_tunnel_callbacks *cb, void *ud,
                     synesis_tunnel **out) {
    char err[512];
    uint8_t(*pins)[32] = NULL;
    if (cli_tunnel_apply(s, cfg, &pins, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s: configuration: %s\n", p, err);
        return CLI_EXIT_CONFIG;
    }
    cfg->log = cli_log_stderr;
    cfg->log_user_data = (void *)p;
    synesis_tunnel_callbacks cbs;
    synesis_tunnel_callbacks_init(&cbs);
    if (cb)
        cbs = *cb;
    uint8_t *saved = NULL;
    if (s->resume_file && *s->resume_file && s->resumption) {
        resume_prog = p;
        resume_path = s->resume_file;
        saved = resume_load(p, s->resume_file, &cfg->resume_data_len);
        cfg->resume_data = saved;
        cbs.on_resume_data = resume_save;
    }
    char detail[512] = "";
    int rv = synesis_tunnel_new(out, loop, cfg, &cbs, ud, detail, sizeof(detail));
    free(pins); /* the tunnel keeps its own copy */
    if (saved) {
        explicit_bzero(saved, cfg->resume_data_len); /* (copied by the tunnel) */
        free(saved);
    }
    cfg->resume_data = NULL;
    cfg->resume_data_len = 0;
    if (rv != 0) {
        cli_report(p, rv, detail);
        /* The URL or a value the library refuses came from the file or the flags. */
        if (rv == SYNESIS_ERR_INVALID_ARGUMENT || rv == SYNESIS_ERR_INVALID_URL)
            return CLI_EXIT_CONFIG;
        return cli_exit_for_error(rv);
    }
    return 0;
}

int cli_agent_main(int argc, char **argv) {
    static const cli_flag flags[] = {
        {"duration",     1, F_DURATION},
        {"check-config", 0, F_CHECK   },
    };
    cli_tunnel_settings s;
    if (cli_tunnel_settings_init(&s) != 0) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return CLI_EXIT_FAILURE;
    }
    agent_args args = {0};
    cli_command cmd = {.prog = prog,
                       .table = &cli_tunnel_table,
                       .settings = &s,
                       .default_config = CLI_AGENT_CONF,
                       .flags = flags,
                       .nflags = sizeof(flags) / sizeof(flags[0]),
                       .on_flag = on_flag,
                       .ctx = &args,
                       .usage = cli_agent_usage};
    const char *config = NULL;
    int status = cli_parse(&cmd, argc, argv, &config);
    if (status >= 0) {
        conf_free(&cli_tunnel_table, &s);
        return status;
    }

    agent a = {.loop = EV_DEFAULT, .status = CLI_EXIT_OK};
    synesis_tunnel_config cfg;
    synesis_tunnel_config_init(&cfg);
    synesis_tunnel_callbacks cb;
    synesis_tunnel_callbacks_init(&cb);
    cb.on_state = on_state;
    cb.on_heartbeat = on_heartbeat;
    cb.on_identity = on_identity;
    a.cfg = &cfg;
    status = cli_agent_tunnel(prog, &s, &cfg, a.loop, &cb, &a, &a.tunnel);
    if (status != 0 || args.check) {
        if (status == 0) {
            printf("# synesis agent: the settings in effect (%s%s)\n", config ? "file " : "no file",
                   config ? config : "");
            conf_print_values(stdout, &cli_tunnel_table, &s);
            status = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
        }
        synesis_tunnel_free(a.tunnel);
        conf_free(&cli_tunnel_table, &s);
        return status;
    }

    cJSON *start = cJSON_CreateObject();
    cJSON_AddStringToObject(start, "event", "start");
    cJSON_AddStringToObject(start, "version", synesis_version());
    if (config)
        cJSON_AddStringToObject(start, "config", config);
    else
        cJSON_AddNullToObject(start, "config");
    cJSON_AddStringToObject(start, "cloud_url", s.cloud_url);
    print_json(start);

    ev_signal_init(&a.sigint, on_signal, SIGINT);
    ev_signal_init(&a.sigterm, on_signal, SIGTERM);
    a.sigint.data = a.sigterm.data = a.sighup.data = &a;
    ev_signal_init(&a.sighup, on_sighup, SIGHUP);
    ev_signal_start(a.loop, &a.sighup);
    a.drain_grace = s.drain_grace;
    ev_signal_start(a.loop, &a.sigint);
    ev_signal_start(a.loop, &a.sigterm);
    ev_timer_init(&a.duration, on_duration, args.duration, 0.);
    if (args.duration > 0)
        ev_timer_start(a.loop, &a.duration);

    int rv = synesis_tunnel_connect(a.tunnel);
    if (rv != 0) {
        cli_report(prog, rv, "connect");
        a.status = cli_exit_for_error(rv);
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
    ev_signal_stop(a.loop, &a.sighup);
    ev_timer_stop(a.loop, &a.duration);
    conf_free(&cli_tunnel_table, &s);
    if (fflush(stdout) != 0 && a.status == CLI_EXIT_OK)
        a.status = CLI_EXIT_FAILURE;
    return a.status;
}

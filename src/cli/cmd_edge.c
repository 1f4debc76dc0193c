/*
 * synesis edge: the reference edge server as a service (examples/edge.c is the program to copy).
 * The settings come from /etc/synesis/edge.conf (or --config FILE), flags override them.
 */
#include <errno.h>
#include <ev.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "settings.h"

static const char *const prog = "synesis edge";

void cli_edge_usage(FILE *f) {
    cli_edge_settings defaults;
    int have = cli_edge_settings_init(&defaults) == 0;
    fprintf(f, "usage: synesis edge [--config FILE] [--check-config] [OPTION...]\n"
               "\n"
               "Runs the reference edge: accepts tunnels from devices whose certificates chain\n"
               "to the CA, reads their heartbeats and answers requests and streams (it echoes\n"
               "them, except the test commands \"SRC n\", \"SLEEP ms\" and \"RESET code\"). It\n"
               "writes one JSON line per event, and \"listening on ADDR:PORT\" on stderr once\n"
               "bound. SIGTERM drains (see drain_grace) and exits 0; SIGINT closes every\n"
               "connection gracefully at once and exits 0.\n"
               "\n"
               "  --config FILE     the configuration file (default " CLI_EDGE_CONF "; a\n"
               "                    missing default file is skipped; /dev/null reads none)\n"
               "  --check-config    load the file and the flags, check the certificates and\n"
               "                    key, print the settings in effect as a configuration file,\n"
               "                    and exit\n"
               "  --help            this text\n"
               "\n"
               "Every key of the configuration file is also an option, --key-name for\n"
               "key_name; an option overrides the file:\n"
               "\n");
    conf_print_help(f, &cli_edge_table, have ? &defaults : NULL);
    fprintf(f, "\n"
               "Exit status: 0 stopped by a signal; 2 usage; 3 configuration (a required\n"
               "key missing, a bad listen address); 4 the certificate, key or CA cannot be\n"
               "used; 5 cannot bind (address in use, a port below 1024 without\n"
               "CAP_NET_BIND_SERVICE); 1 another failure (the log file).\n");
    if (have)
        conf_free(&cli_edge_table, &defaults);
}

typedef struct edge_app {
    syn_edge *edge;
    ev_signal sigint, sigterm;
    double drain_grace;
    int draining;
} edge_app;

/* The drain is over (every device moved, or the grace period ended): stop and leave. */
static void on_drained(syn_edge *e, void *user_data) {
    (void)user_data;
    struct ev_loop *loop = ev_default_loop(0);
    fprintf(stderr, "%s: drained, stopping\n", prog);
    syn_edge_stop(e, 1);
    ev_break(loop, EVBREAK_ALL);
}

/* SIGINT/SIGTERM arrive as loop events (ev_signal): stopping the edge here is safe. */
static void on_signal(struct ev_loop *loop, ev_signal *w, int revents) {
    (void)revents;
    edge_app *app = w->data;
    if (w->signum == SIGTERM && !app->draining) {
        /* Drain: the devices move elsewhere without waiting for a timeout or a backoff. A
         * second SIGTERM, or SIGINT, stops at once. */
        fprintf(stderr, "%s: SIGTERM, draining (at most %g s)\n", prog, app->drain_grace);
        app->draining = 1;
        syn_edge_drain(app->edge, app->drain_grace, 1, on_drained, app);
        return;
    }
    fprintf(stderr, "%s: %s, stopping\n", prog, w->signum == SIGINT ? "SIGINT" : "SIGTERM");
    syn_edge_stop(app->edge, 1); /* graceful: every device gets CONNECTION_CLOSE now */
    ev_signal_stop(loop, &app->sigint);
    ev_signal_stop(loop, &app->sigterm);
    ev_break(loop, EVBREAK_ALL);
}

enum { F_CHECK = 1 };

static int on_flag(void *ctx, int id, const char *arg) {
    (void)arg;
    if (id == F_CHECK)
        *(int *)ctx = 1;
    return -1;
}

int cli_edge_main(int argc, char **argv) {
    static const cli_flag flags[] = {
        {"check-config", 0, F_CHECK},
    };
    cli_edge_settings s;
    if (cli_edge_settings_init(&s) != 0) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return CLI_EXIT_FAILURE;
    }
    int check = 0;
    cli_command cmd = {.prog = prog,
                       .table = &cli_edge_table,
                       .settings = &s,
                       .default_config = CLI_EDGE_CONF,
                       .flags = flags,
                       .nflags = 1,
                       .on_flag = on_flag,
                       .ctx = &check,
                       .usage = cli_edge_usage};
    const char *config = NULL;
    int status = cli_parse(&cmd, argc, argv, &config);
    if (status >= 0)
        goto out;
    const char *missing = !s.listen ? "listen"
                          : !s.cert ? "cert"
                          : !s.key  ? "key"
                          : !s.ca   ? "ca"
                                    : NULL;
    if (missing) {
        fprintf(stderr, "%s: configuration: %s is not set (in %s, or --%s)\n", prog, missing,
                config ? config : CLI_EDGE_CONF, missing);
        status = CLI_EXIT_CONFIG;
        goto out;
    }

    syn_edge_config cfg;
    syn_edge_config_init(&cfg);
    cli_edge_apply(&s, &cfg);
    FILE *log = NULL;
    if (!check && s.log && !(log = fopen(s.log, "a"))) {
        fprintf(stderr, "%s: cannot open the log file %s: %s\n", prog, s.log, strerror(errno));
        status = CLI_EXIT_FAILURE;
        goto out;
    }
    cfg.log_file = check ? NULL : log ? log : stdout;

    struct ev_loop *loop = EV_DEFAULT;
    edge_app app = {0};
    char detail[512] = "";
    int rv = syn_edge_new(&app.edge, loop, &cfg, detail);
    if (rv == 0 && check) {
        printf("# synesis edge: the settings in effect (%s%s)\n", config ? "file " : "no file",
               config ? config : "");
        conf_print_values(stdout, &cli_edge_table, &s);
        status = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
        syn_edge_free(app.edge);
        goto out;
    }
    if (rv == 0)
        rv = syn_edge_start(app.edge, detail);
    if (rv != 0) {
        cli_report(prog, rv, detail);
        /* A listen address that is not ADDR:PORT, or a value the edge refuses. */
        status = rv == SYNESIS_ERR_INVALID_ARGUMENT ? CLI_EXIT_CONFIG : cli_exit_for_error(rv);
        syn_edge_free(app.edge);
        if (log)
            fclose(log);
        goto out;
    }
    /* The listen string was validated by syn_edge_new(): its last ':' separates the port. */
    const char *colon = strrchr(cfg.listen, ':');
    fprintf(stderr, "listening on %.*s:%u\n", (int)(colon - cfg.listen), cfg.listen,
            (unsigned)syn_edge_port(app.edge));
    if (syn_edge_tcp_port(app.edge))
        fprintf(stderr, "listening on %.*s:%u/tcp\n", (int)(colon - cfg.listen), cfg.listen,
                (unsigned)syn_edge_tcp_port(app.edge));

    ev_signal_init(&app.sigint, on_signal, SIGINT);
    ev_signal_init(&app.sigterm, on_signal, SIGTERM);
    app.sigint.data = app.sigterm.data = &app;
    app.drain_grace = s.drain_grace;
    ev_signal_start(loop, &app.sigint);
    ev_signal_start(loop, &app.sigterm);

    ev_run(loop, 0); /* until a signal stops the edge */

    syn_edge_free(app.edge);
    status = CLI_EXIT_OK;
    if (log && fclose(log) != 0)
        status = CLI_EXIT_FAILURE;
out:
    conf_free(&cli_edge_table, &s);
    return status;
}

/*
 * synesis check: the connectivity check (synesis_check_run(), include/synesis/check.h) with the
 * agent's settings: /etc/synesis/agent.conf, or --config, and the same options. One line per
 * check, or --json.
 */
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "settings.h"
#include "synesis/check.h"

static const char *const prog = "synesis check";

void cli_check_usage(FILE *f) {
    cli_tunnel_settings defaults;
    int have = cli_tunnel_settings_init(&defaults) == 0;
    fprintf(f, "usage: synesis check [--config FILE] [--json] [--timeout S] [OPTION...]\n"
               "\n"
               "Diagnoses why the device cannot connect, and says what to do. With the agent's\n"
               "settings it checks, in this order: files (certificate, key and CA readable,\n"
               "the key's mode), certificate (validity; a warning within 30 days of expiry),\n"
               "clock (the device clock against the certificate's notBefore), dns (the\n"
               "edge's name), udp (a real QUIC handshake with the device identity: a timeout\n"
               "and an ICMP port unreachable are told apart), trust (the edge's certificate:\n"
               "chain, name, pins; and the edge's verdict on ours), mtu (what path MTU\n"
               "discovery found: 1200, 1350, 1452 bytes), tcp (the same handshake over TCP,\n"
               "the fallback where UDP is blocked, through the proxy that applies) and proxy\n"
               "(which proxy applies: proxy, or https_proxy, all_proxy and no_proxy in the\n"
               "environment; and whether it answered). When UDP fails and TCP works, udp is\n"
               "a warning: the tunnel comes up over TCP.\n"
               "It prints one line per check: ok, warning, failed or skipped, what it found\n"
               "and, where something needs doing, the fix.\n"
               "\n"
               "  --config FILE        the configuration file (default " CLI_AGENT_CONF ";\n"
               "                       a missing default file is skipped; /dev/null reads none)\n"
               "  --json               print the report as one JSON object instead\n"
               "  --timeout S          the longest each network check may take (default 10;\n"
               "                       the handshake also stops at handshake_timeout)\n"
               "  --help               this text\n"
               "\n"
               "The options of `synesis agent` (each a key of the configuration file) apply:\n"
               "\n");
    conf_print_help(f, &cli_tunnel_table, have ? &defaults : NULL);
    fprintf(f, "\n"
               "Exit status: 0 only when the tunnel can come up (no check failed; warnings\n"
               "allowed); else the class of the first failed check: 3 configuration (cloud_url,\n"
               "nothing to trust the edge with); 4 files, certificate or clock; 5 dns, udp or\n"
               "trust; 2 usage; 1 another failure.\n");
    if (have)
        conf_free(&cli_tunnel_table, &defaults);
}

typedef struct check_app {
    struct ev_loop *loop;
    int json;
    int status;
} check_app;

/* The exit status of a failed check's error. */
static int exit_for_item(const synesis_check_item *it) {
    if (it->error == SYNESIS_ERR_INVALID_URL || it->error == SYNESIS_ERR_INVALID_ARGUMENT)
        return CLI_EXIT_CONFIG;
    int st = cli_exit_for_error(it->error);
    if (st != CLI_EXIT_FAILURE && st != CLI_EXIT_OK)
        return st;
    if (!strcmp(it->id, "files") || !strcmp(it->id, "certificate") || !strcmp(it->id, "clock"))
        return CLI_EXIT_IDENTITY;
    return CLI_EXIT_CONNECTION;
}

static void on_done(const synesis_check_result *r, void *user_data) {
    check_app *app = user_data;
    int status = r->can_connect ? CLI_EXIT_OK : CLI_EXIT_CONNECTION;
    int first = 1;
    if (app->json)
        printf("%s\n", r->json);
    for (size_t i = 0; i < r->n_items; i++) {
        const synesis_check_item *it = &r->items[i];
        if (!app->json) {
            printf("%-7s %-11s %s", synesis_check_status_name(it->status), it->id, it->finding);
            if (*it->fix)
                printf(" -- fix: %s", it->fix);
            printf("\n");
        }
        if (it->status == SYNESIS_CHECK_FAILED && first) {
            first = 0;
            status = exit_for_item(it);
        }
    }
    if (r->status == SYNESIS_ERR_NOMEM)
        status = CLI_EXIT_FAILURE;
    if (!app->json)
        printf("%s\n", r->can_connect ? "the tunnel can come up"
                                      : "the tunnel cannot come up: see the failed checks above");
    if (fflush(stdout) != 0)
        status = CLI_EXIT_FAILURE;
    app->status = status;
    ev_break(app->loop, EVBREAK_ALL);
}

enum { F_JSON = 1, F_TIMEOUT };

typedef struct check_args {
    int json;
    double timeout;
} check_args;

static int on_flag(void *ctx, int id, const char *arg) {
    check_args *a = ctx;
    static const conf_key timeout = {
        .name = "timeout", .type = CONF_SECONDS, .min = 0.1, .max = 3600};
    char why[256];
    switch (id) {
    case F_JSON:
        a->json = 1;
        break;
    case F_TIMEOUT:
        if (conf_set(&timeout, &a->timeout, arg, why, sizeof(why)) != 0)
            return cli_usage_error(prog, "--timeout: %s", why);
        break;
    }
    return -1;
}

int cli_check_main(int argc, char **argv) {
    static const cli_flag flags[] = {
        {"json",    0, F_JSON   },
        {"timeout", 1, F_TIMEOUT},
    };
    cli_tunnel_settings s;
    if (cli_tunnel_settings_init(&s) != 0) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return CLI_EXIT_FAILURE;
    }
    check_args args = {.timeout = 10.0};
    cli_command cmd = {.prog = prog,
                       .table = &cli_tunnel_table,
                       .settings = &s,
                       .default_config = CLI_AGENT_CONF,
                       .flags = flags,
                       .nflags = sizeof(flags) / sizeof(flags[0]),
                       .on_flag = on_flag,
                       .ctx = &args,
                       .usage = cli_check_usage};
    int status = cli_parse(&cmd, argc, argv, NULL);
    if (status >= 0) {
        conf_free(&cli_tunnel_table, &s);
        return status;
    }
    synesis_tunnel_config cfg;
    synesis_tunnel_config_init(&cfg);
    char err[512];
    uint8_t(*pins)[32] = NULL;
    if (cli_tunnel_apply(&s, &cfg, &pins, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s: configuration: %s\n", prog, err);
        conf_free(&cli_tunnel_table, &s);
        return CLI_EXIT_CONFIG;
    }
    /* The check reports what goes wrong itself; the library's log only for debug. */
    cfg.log = cli_log_stderr;
    cfg.log_user_data = (void *)prog;
    if (cfg.log_level < SYNESIS_LOG_DEBUG)
        cfg.log_level = SYNESIS_LOG_ERROR;
    synesis_check_options opts;
    synesis_check_options_init(&opts);
    opts.timeout = args.timeout;
    check_app app = {.loop = EV_DEFAULT, .json = args.json, .status = CLI_EXIT_FAILURE};
    int rv = synesis_check_run(app.loop, &cfg, &opts, on_done, &app, NULL);
    free(pins); /* read during the call only */
    if (rv != 0) {
        cli_report(prog, rv, "check");
        conf_free(&cli_tunnel_table, &s);
        return rv == SYNESIS_ERR_INVALID_ARGUMENT ? CLI_EXIT_CONFIG : CLI_EXIT_FAILURE;
    }
    ev_run(app.loop, 0); /* until on_done */
    conf_free(&cli_tunnel_table, &s);
    return app.status;
}

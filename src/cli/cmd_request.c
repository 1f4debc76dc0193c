/*
 * synesis request: one request over a tunnel from the command line (examples/request.c is the
 * program to copy). The connection settings are the agent's: /etc/synesis/agent.conf, or --config,
 * and the same options.
 */
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "settings.h"

static const char *const prog = "synesis request";

void cli_request_usage(FILE *f) {
    cli_tunnel_settings defaults;
    int have = cli_tunnel_settings_init(&defaults) == 0;
    fprintf(f, "usage: synesis request [--config FILE] [--data STRING] [--timeout S]\n"
               "                       [--max-response BYTES] [OPTION...]\n"
               "\n"
               "Sends stdin (or STRING) as one request over a tunnel and writes the response to\n"
               "stdout. It connects with the agent's settings, does not retry a failed first\n"
               "connection and sends no heartbeat.\n"
               "\n"
               "  --config FILE        the configuration file (default " CLI_AGENT_CONF ";\n"
               "                       a missing default file is skipped; /dev/null reads none)\n"
               "  --data STRING        send STRING instead of reading stdin\n"
               "  --timeout S          give up after S seconds in all, connecting included\n"
               "                       (default 30)\n"
               "  --max-response BYTES refuse a larger response (default 16M)\n"
               "  --help               this text\n"
               "\n"
               "The options of `synesis agent` (each a key of the configuration file) apply:\n"
               "\n");
    conf_print_help(f, &cli_tunnel_table, have ? &defaults : NULL);
    fprintf(f, "\n"
               "Exit status: 0 the response is on stdout; 2 usage; 3 configuration; 4 the\n"
               "certificate, key or CA cannot be used; 5 no connection (refused, untrusted,\n"
               "timed out); 6 the request failed (reset by the edge, too large, timed out);\n"
               "1 another failure (stdin or stdout).\n");
    if (have)
        conf_free(&cli_tunnel_table, &defaults);
}

typedef struct req_app {
    struct ev_loop *loop;
    synesis_tunnel *tunnel;
    ev_timer deadline;
    double timeout;
    uint64_t max_response;
    const char *data; /* the request */
    size_t len;
    int sent;
    int done;   /* finish() ran */
    int status; /* the exit status */
} req_app;

/* Records the exit status and leaves the loop; the main function closes the tunnel. */
static void finish(req_app *app, int status) {
    if (app->done)
        return;
    app->done = 1;
    app->status = status;
    ev_break(app->loop, EVBREAK_ALL);
}

static void on_response(synesis_tunnel *t, synesis_request *req, const synesis_response *resp,
                        void *user_data) {
    (void)t;
    (void)req;
    req_app *app = user_data;
    if (app->done)
        return; /* cancelled when the tunnel was closed after the deadline */
    if (resp->status != 0) {
        cli_report(prog, resp->status, resp->detail);
        finish(app, cli_exit_for_error(resp->status));
        return;
    }
    if ((resp->len && fwrite(resp->data, 1, resp->len, stdout) != resp->len) ||
        fflush(stdout) != 0) {
        fprintf(stderr, "%s: cannot write the response to stdout\n", prog);
        finish(app, CLI_EXIT_FAILURE);
        return;
    }
    finish(app, CLI_EXIT_OK);
}

static void on_state(synesis_tunnel *t, const synesis_tunnel_state *old,
                     const synesis_tunnel_state *st, void *user_data) {
    (void)old;
    req_app *app = user_data;
    if (st->kind == SYNESIS_STATE_CONNECTED && !app->sent) {
        app->sent = 1;
        synesis_request_options opts;
        synesis_request_options_init(&opts);
        opts.timeout = app->timeout; /* the deadline below covers connecting too */
        opts.max_response_size = (size_t)app->max_response;
        int rv = synesis_tunnel_request(t, app->data, app->len, &opts, on_response, app, NULL);
        if (rv != 0) {
            cli_report(prog, rv, NULL);
            finish(app, cli_exit_for_error(rv));
        }
    } else if (st->kind == SYNESIS_STATE_FAILED) {
        cli_report(prog, st->error, st->error_detail);
        finish(app, st->error ? cli_exit_for_error(st->error) : CLI_EXIT_CONNECTION);
    }
    /* Reconnecting while the request is in flight: its callback reports CONNECTION_LOST. */
}

static void on_deadline(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    req_app *app = w->data;
    char detail[128];
    snprintf(detail, sizeof(detail), "%s within %g s", app->sent ? "no response" : "not connected",
             app->timeout);
    cli_report(prog, SYNESIS_ERR_TIMEOUT, detail);
    finish(app, app->sent ? CLI_EXIT_REQUEST : CLI_EXIT_CONNECTION);
}

/* Reads all of stdin before the loop runs (nothing blocks inside the loop). NULL on error. */
static char *read_stdin(size_t *len) {
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, stdin);
        if (n < cap)
            break;
        char *bigger = realloc(buf, cap * 2);
        if (!bigger) {
            free(buf);
            return NULL;
        }
        buf = bigger;
        cap *= 2;
    }
    if (buf && ferror(stdin)) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

enum { F_DATA = 1, F_TIMEOUT, F_MAX_RESPONSE };

typedef struct request_args {
    const char *data;
    double timeout;
    uint64_t max_response;
} request_args;

static int on_flag(void *ctx, int id, const char *arg) {
    request_args *a = ctx;
    static const conf_key timeout = {
        .name = "timeout", .type = CONF_SECONDS, .min = 0.001, .max = 365.0 * 86400};
    static const conf_key max_response = {
        .name = "max-response", .type = CONF_BYTES, .umin = 1, .umax = SIZE_MAX};
    char why[256];
    switch (id) {
    case F_DATA:
        a->data = arg;
        break;
    case F_TIMEOUT:
        if (conf_set(&timeout, &a->timeout, arg, why, sizeof(why)) != 0)
            return cli_usage_error(prog, "--timeout: %s", why);
        break;
    case F_MAX_RESPONSE:
        if (conf_set(&max_response, &a->max_response, arg, why, sizeof(why)) != 0)
            return cli_usage_error(prog, "--max-response: %s", why);
        break;
    }
    return -1;
}

int cli_request_main(int argc, char **argv) {
    static const cli_flag flags[] = {
        {"data",         1, F_DATA        },
        {"timeout",      1, F_TIMEOUT     },
        {"max-response", 1, F_MAX_RESPONSE},
    };
    cli_tunnel_settings s;
    if (cli_tunnel_settings_init(&s) != 0) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return CLI_EXIT_FAILURE;
    }
    request_args args = {.timeout = 30.0, .max_response = 16u * 1024 * 1024};
    cli_command cmd = {.prog = prog,
                       .table = &cli_tunnel_table,
                       .settings = &s,
                       .default_config = CLI_AGENT_CONF,
                       .flags = flags,
                       .nflags = sizeof(flags) / sizeof(flags[0]),
                       .on_flag = on_flag,
                       .ctx = &args,
                       .usage = cli_request_usage};
    int status = cli_parse(&cmd, argc, argv, NULL);
    if (status >= 0) {
        conf_free(&cli_tunnel_table, &s);
        return status;
    }
    /* A one-shot command: no heartbeats, and a failed first connection fails at once. */
    s.heartbeat_interval = 0;
    s.retry_initial_connect = 0;

    req_app app = {.loop = EV_DEFAULT,
                   .timeout = args.timeout,
                   .max_response = args.max_response,
                   .status = CLI_EXIT_FAILURE};
    /* The tunnel first: a configuration or identity error is reported without waiting for
     * stdin. Nothing runs until connect. */
    synesis_tunnel_config cfg;
    synesis_tunnel_config_init(&cfg);
    synesis_tunnel_callbacks cb;
    synesis_tunnel_callbacks_init(&cb);
    cb.on_state = on_state;
    status = cli_agent_tunnel(prog, &s, &cfg, app.loop, &cb, &app, &app.tunnel);
    if (status != 0) {
        conf_free(&cli_tunnel_table, &s);
        return status;
    }
    char *input = NULL;
    if (args.data) {
        app.data = args.data;
        app.len = strlen(args.data);
    } else if ((input = read_stdin(&app.len)) != NULL) {
        app.data = input;
    } else {
        fprintf(stderr, "%s: cannot read the request from stdin\n", prog);
        synesis_tunnel_free(app.tunnel);
        conf_free(&cli_tunnel_table, &s);
        return CLI_EXIT_FAILURE;
    }
    ev_timer_init(&app.deadline, on_deadline, app.timeout, 0.);
    app.deadline.data = &app;
    ev_timer_start(app.loop, &app.deadline);

    int rv = synesis_tunnel_connect(app.tunnel);
    if (rv != 0) {
        cli_report(prog, rv, "connect");
        app.status = cli_exit_for_error(rv);
    } else {
        ev_run(app.loop, 0); /* until finish() */
    }

    /* Close gracefully (refused, harmlessly, when the tunnel is already Failed) and free. */
    ev_timer_stop(app.loop, &app.deadline);
    synesis_tunnel_disconnect(app.tunnel);
    synesis_tunnel_free(app.tunnel);
    free(input);
    conf_free(&cli_tunnel_table, &s);
    return app.status;
}

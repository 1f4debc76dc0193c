/*
 * synesis-request: one request over a tunnel, from the command line.
 *
 *   echo hello | synesis-request --url quic://127.0.0.1:4433 --server-name localhost \
 *                                --cert device.pem --key device.key --ca ca.pem
 *
 * Reads the request from stdin (or --data), connects, waits for Connected, sends it, waits for
 * the response and writes the response bytes to stdout. Exit status: 0 done; 1 failed (the
 * error's name and detail on stderr); 2 usage error.
 */
#include <ev.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "synesis/synesis.h"

static const char *prog = "synesis-request";

static void usage(void) {
    printf("usage: %s --url URL --server-name NAME --cert FILE --key FILE [--ca FILE]\n"
           "       [--timeout S] [--data STRING] [--max-response BYTES]\n"
           "\n"
           "Sends stdin (or STRING) as one request over a synesis tunnel and writes the\n"
           "response to stdout.\n"
           "\n"
           "  --url URL               the edge, e.g. quic://127.0.0.1:4433\n"
           "  --server-name NAME      name the edge's certificate must carry\n"
           "  --cert FILE, --key FILE the device certificate and key (key mode 0600)\n"
           "  --ca FILE               trust only this CA for the edge (default: system store)\n"
           "  --timeout S             give up after S seconds in all (default 30)\n"
           "  --data STRING           send STRING instead of reading stdin\n"
           "  --max-response BYTES    refuse a larger response (default 16777216)\n",
           prog);
}

typedef struct req_app {
    struct ev_loop *loop;
    synesis_tunnel *tunnel;
    ev_timer deadline;
    double timeout;
    size_t max_response;
    const char *data; /* the request */
    size_t len;
    int sent;
    int done;   /* finish() ran */
    int status; /* the exit status */
} req_app;

/* Records the exit status and leaves the loop; main() closes the tunnel once ev_run() has
 * returned. */
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
        return; /* cancelled when main() closed the tunnel after the deadline */
    if (resp->status != 0) {
        /* The detail names the edge's application error code of a STREAM_RESET too. */
        fprintf(stderr, "%s: %s: %s\n", prog, synesis_error_name(resp->status),
                resp->detail[0] ? resp->detail : synesis_strerror(resp->status));
        finish(app, 1);
        return;
    }
    /* (An empty response may come with data == NULL: write only when there are bytes.) */
    if ((resp->len && fwrite(resp->data, 1, resp->len, stdout) != resp->len) ||
        fflush(stdout) != 0) {
        fprintf(stderr, "%s: cannot write the response to stdout\n", prog);
        finish(app, 1);
        return;
    }
    finish(app, 0);
}

static void on_state(synesis_tunnel *t, const synesis_tunnel_state *old,
                     const synesis_tunnel_state *st, void *user_data) {
    (void)old;
    req_app *app = user_data;
    if (st->kind == SYNESIS_STATE_CONNECTED && !app->sent) {
        app->sent = 1;
        synesis_request_options opts;
        synesis_request_options_init(&opts);
        opts.timeout = app->timeout; /* our own deadline covers connecting too; see on_deadline */
        opts.max_response_size = app->max_response;
        int rv = synesis_tunnel_request(t, app->data, app->len, &opts, on_response, app, NULL);
        if (rv != 0) {
            fprintf(stderr, "%s: %s: %s\n", prog, synesis_error_name(rv), synesis_strerror(rv));
            finish(app, 1);
        }
    } else if (st->kind == SYNESIS_STATE_FAILED) {
        /* The connection could not be made: untrusted edge, refused certificate, timeout... */
        fprintf(stderr, "%s: %s: %s\n", prog, synesis_error_name(st->error), st->error_detail);
        finish(app, 1);
    }
    /* Reconnecting while the request is in flight: its callback reports CONNECTION_LOST. */
}

static void on_deadline(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    req_app *app = w->data;
    fprintf(stderr, "%s: %s: %s within %g s\n", prog, synesis_error_name(SYNESIS_ERR_TIMEOUT),
            app->sent ? "no response" : "not connected", app->timeout);
    finish(app, 1);
}

/* Reads all of stdin into a malloc'ed buffer. This happens before the loop runs: nothing ever
 * blocks inside the loop. Returns NULL on a read error. */
static char *read_stdin(size_t *len) {
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, stdin);
        if (n < cap)
            break; /* end of input or an error */
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

int main(int argc, char **argv) {
    static const struct option longopts[] = {
        {"url",          required_argument, NULL, 'u'},
        {"server-name",  required_argument, NULL, 's'},
        {"cert",         required_argument, NULL, 'c'},
        {"key",          required_argument, NULL, 'k'},
        {"ca",           required_argument, NULL, 'a'},
        {"timeout",      required_argument, NULL, 't'},
        {"data",         required_argument, NULL, 'd'},
        {"max-response", required_argument, NULL, 'm'},
        {"help",         no_argument,       NULL, 'h'},
        {NULL,           0,                 NULL, 0  },
    };
    ex_client_options o = {0};
    req_app app = {.loop = EV_DEFAULT, .timeout = 30.0};
    const char *data = NULL;
    int c;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case 't':
            if (ex_parse_seconds(prog, "--timeout", optarg, 0, &app.timeout))
                return EX_USAGE_STATUS;
            break;
        case 'd':
            data = optarg;
            break;
        case 'm':
            if (ex_parse_count(prog, "--max-response", optarg, &app.max_response))
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

    char *input = NULL;
    if (data) {
        app.data = data;
        app.len = strlen(data);
    } else if ((input = read_stdin(&app.len)) != NULL) {
        app.data = input;
    } else {
        fprintf(stderr, "%s: cannot read the request from stdin\n", prog);
        return 1;
    }

    synesis_tunnel_config cfg;
    synesis_tunnel_config_init(&cfg);
    ex_client_config(&cfg, &o, prog);
    cfg.heartbeat_interval = 0;        /* a one-shot command has no use for heartbeats */
    cfg.log_level = SYNESIS_LOG_ERROR; /* we report a failure ourselves: skip the warning */
    /* retry_initial_connect stays 0: if the first connect fails, fail at once (state Failed). */
    char detail[512] = "";
    synesis_tunnel_callbacks cb;
    synesis_tunnel_callbacks_init(&cb);
    cb.on_state = on_state;
    int rv = synesis_tunnel_new(&app.tunnel, app.loop, &cfg, &cb, &app, detail, sizeof(detail));
    if (rv != 0) {
        fprintf(stderr, "%s: %s: %s\n", prog, synesis_error_name(rv), detail);
        free(input);
        return 1;
    }
    ev_timer_init(&app.deadline, on_deadline, app.timeout, 0.);
    app.deadline.data = &app;
    ev_timer_start(app.loop, &app.deadline);

    rv = synesis_tunnel_connect(app.tunnel);
    if (rv != 0) {
        fprintf(stderr, "%s: connect: %s\n", prog, synesis_strerror(rv));
        app.status = 1;
    } else {
        ev_run(app.loop, 0); /* until finish() */
    }

    /* Out of the loop: close gracefully (the edge gets CONNECTION_CLOSE; refused, harmlessly,
     * when the tunnel is already Failed) and free. */
    ev_timer_stop(app.loop, &app.deadline);
    synesis_tunnel_disconnect(app.tunnel);
    synesis_tunnel_free(app.tunnel);
    free(input);
    return app.status;
}

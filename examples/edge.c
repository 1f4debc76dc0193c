/*
 * synesis-edge: the reference edge server as a standalone program, for trying the tunnel out
 * and for tests. It accepts tunnels from devices whose certificates chain to --ca, answers
 * requests and streams (it echoes what it receives, except for requests that begin with one of
 * its test commands "SRC n", "SLEEP ms" or "RESET code"), reads heartbeats, and writes one JSON
 * line per event to --log FILE or to stdout.
 *
 * Once bound it prints "listening on ADDR:PORT" to stderr (with port 0, the port the system
 * chose). SIGINT or SIGTERM stops it gracefully: each connected device gets a CONNECTION_CLOSE,
 * then the program exits with status 0. Exit status 1: could not start; 2: usage error.
 */
#include <errno.h>
#include <ev.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "edge/edge.h"

static const char *prog = "synesis-edge";

static void usage(void) {
    printf("usage: %s --listen ADDR:PORT --cert FILE --key FILE --ca FILE [--alpn PROTO]\n"
           "       [--log FILE] [--idle-timeout S] [--max-streams N] [--max-request-size BYTES]\n"
           "       [--max-conn-buffer BYTES] [--max-src-size BYTES] [--retry-threshold N|never]\n"
           "       [--socket-buffer BYTES] [--no-device-pings]\n"
           "\n"
           "Runs the reference synesis-tunnel edge: mutually authenticated QUIC on one UDP port.\n"
           "\n"
           "  --listen ADDR:PORT        address to bind: 127.0.0.1:4433, [::1]:4433; port 0 picks\n"
           "                            a free port (stderr tells: \"listening on ADDR:PORT\")\n"
           "  --cert FILE, --key FILE   the edge's certificate chain and private key (PEM)\n"
           "  --ca FILE                 CA that signs the device certificates (PEM)\n"
           "  --alpn PROTO              application protocol (default synesis-tunnel/1)\n"
           "  --log FILE                append the JSON event lines to FILE (default stdout)\n"
           "  --idle-timeout S          close connections idle for S seconds (default 60)\n"
           "  --max-streams N           concurrent request streams per connection (default 100)\n"
           "  --max-request-size BYTES  largest request or stream upload (default 67108864)\n"
           "  --max-conn-buffer BYTES   bytes one connection may make the edge hold (default\n"
           "                            16777216; also its receive window)\n"
           "  --max-src-size BYTES      largest \"SRC n\" answer (default 17179869184)\n"
           "  --retry-threshold N       send a stateless Retry while N or more handshakes are in\n"
           "                            progress (default 64; 0 = always; never = off)\n"
           "  --socket-buffer BYTES     UDP receive and send buffer (default 4194304)\n"
           "  --no-device-pings         do not PING devices on their behalf just before their\n"
           "                            keep-alive would (keep_alive_ms in their heartbeats)\n"
           "\n"
           "SIGINT or SIGTERM closes every connection gracefully and exits with status 0.\n",
           prog);
}

typedef struct edge_app {
    syn_edge *edge;
    ev_signal sigint, sigterm;
} edge_app;

/* SIGINT/SIGTERM arrive as ordinary loop events (ev_signal), so stopping the edge here is safe:
 * no work happens inside a real signal handler. */
static void on_signal(struct ev_loop *loop, ev_signal *w, int revents) {
    (void)revents;
    edge_app *app = w->data;
    fprintf(stderr, "%s: %s, stopping\n", prog, w->signum == SIGINT ? "SIGINT" : "SIGTERM");
    syn_edge_stop(app->edge, 1); /* graceful: every device gets CONNECTION_CLOSE now */
    ev_signal_stop(loop, &app->sigint);
    ev_signal_stop(loop, &app->sigterm);
    ev_break(loop, EVBREAK_ALL);
}

int main(int argc, char **argv) {
    enum {
        OPT_IDLE = 256,
        OPT_MAX_STREAMS,
        OPT_MAX_REQUEST,
        OPT_CONN_BUFFER,
        OPT_SRC_SIZE,
        OPT_RETRY,
        OPT_SOCKBUF,
        OPT_NO_PINGS
    };
    static const struct option longopts[] = {
        {"listen",           required_argument, NULL, 'l'            },
        {"cert",             required_argument, NULL, 'c'            },
        {"key",              required_argument, NULL, 'k'            },
        {"ca",               required_argument, NULL, 'a'            },
        {"alpn",             required_argument, NULL, 'p'            },
        {"log",              required_argument, NULL, 'o'            },
        {"idle-timeout",     required_argument, NULL, OPT_IDLE       },
        {"max-streams",      required_argument, NULL, OPT_MAX_STREAMS},
        {"max-request-size", required_argument, NULL, OPT_MAX_REQUEST},
        {"max-conn-buffer",  required_argument, NULL, OPT_CONN_BUFFER},
        {"max-src-size",     required_argument, NULL, OPT_SRC_SIZE   },
        {"retry-threshold",  required_argument, NULL, OPT_RETRY      },
        {"socket-buffer",    required_argument, NULL, OPT_SOCKBUF    },
        {"no-device-pings",  no_argument,       NULL, OPT_NO_PINGS   },
        {"help",             no_argument,       NULL, 'h'            },
        {NULL,               0,                 NULL, 0              },
    };
    syn_edge_config cfg;
    syn_edge_config_init(&cfg);
    cfg.listen = NULL; /* required: no default port for a program people copy commands from */
    const char *log_path = NULL;
    size_t n;
    int c;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case 'l':
            cfg.listen = optarg;
            break;
        case 'c':
            cfg.cert_file = optarg;
            break;
        case 'k':
            cfg.key_file = optarg;
            break;
        case 'a':
            cfg.ca_file = optarg;
            break;
        case 'p':
            cfg.alpn = optarg;
            break;
        case 'o':
            log_path = optarg;
            break;
        case OPT_IDLE:
            if (ex_parse_seconds(prog, "--idle-timeout", optarg, 0, &cfg.idle_timeout))
                return EX_USAGE_STATUS;
            break;
        case OPT_MAX_STREAMS:
            if (ex_parse_count(prog, "--max-streams", optarg, &n))
                return EX_USAGE_STATUS;
            cfg.max_streams_bidi = n; /* heartbeat (unidirectional) streams keep their default */
            break;
        case OPT_MAX_REQUEST:
            if (ex_parse_count(prog, "--max-request-size", optarg, &cfg.max_request_size))
                return EX_USAGE_STATUS;
            break;
        case OPT_CONN_BUFFER:
            if (ex_parse_count(prog, "--max-conn-buffer", optarg, &cfg.max_conn_buffer))
                return EX_USAGE_STATUS;
            break;
        case OPT_SRC_SIZE:
            if (ex_parse_count(prog, "--max-src-size", optarg, &n))
                return EX_USAGE_STATUS;
            cfg.max_src_size = n;
            break;
        case OPT_RETRY:
            if (strcmp(optarg, "never") == 0)
                cfg.retry_threshold = SYN_EDGE_RETRY_NEVER;
            else if (strcmp(optarg, "0") == 0)
                cfg.retry_threshold = 0;
            else if (ex_parse_count(prog, "--retry-threshold", optarg, &cfg.retry_threshold))
                return EX_USAGE_STATUS;
            break;
        case OPT_SOCKBUF:
            if (ex_parse_count(prog, "--socket-buffer", optarg, &cfg.socket_buffer))
                return EX_USAGE_STATUS;
            break;
        case OPT_NO_PINGS:
            cfg.ping_devices = 0;
            break;
        case 'h':
            usage();
            return 0;
        default:
            return ex_bad_option(prog, argv, c);
        }
    }
    if (optind < argc)
        return ex_usage_error(prog, "unexpected argument '%s'", argv[optind]);
    if (!cfg.listen || !cfg.cert_file || !cfg.key_file || !cfg.ca_file)
        return ex_usage_error(prog, "--listen, --cert, --key and --ca are required");

    /* The event log: one JSON object per line, flushed line by line by the edge. */
    FILE *log = stdout;
    if (log_path && !(log = fopen(log_path, "a"))) {
        fprintf(stderr, "%s: cannot open log file %s: %s\n", prog, log_path, strerror(errno));
        return 1;
    }
    cfg.log_file = log;

    struct ev_loop *loop = EV_DEFAULT;
    edge_app app = {0};
    char detail[512] = "";
    int rv = syn_edge_new(&app.edge, loop, &cfg, detail);
    if (rv == SYNESIS_ERR_INVALID_ARGUMENT) {
        /* A listen address that is not ADDR:PORT is a usage error. */
        fprintf(stderr, "%s: %s (see --help)\n", prog, detail);
        return EX_USAGE_STATUS;
    }
    if (rv == 0)
        rv = syn_edge_start(app.edge, detail);
    if (rv != 0) {
        fprintf(stderr, "%s: %s: %s\n", prog, synesis_error_name(rv), detail);
        syn_edge_free(app.edge);
        return 1;
    }
    /* The listen string was validated by syn_edge_new(): its last ':' separates the port, for
     * "127.0.0.1:0" and "[::1]:0" alike. */
    const char *colon = strrchr(cfg.listen, ':');
    fprintf(stderr, "listening on %.*s:%u\n", (int)(colon - cfg.listen), cfg.listen,
            (unsigned)syn_edge_port(app.edge));

    ev_signal_init(&app.sigint, on_signal, SIGINT);
    ev_signal_init(&app.sigterm, on_signal, SIGTERM);
    app.sigint.data = app.sigterm.data = &app;
    ev_signal_start(loop, &app.sigint);
    ev_signal_start(loop, &app.sigterm);

    ev_run(loop, 0); /* until a signal stops the edge */

    syn_edge_free(app.edge);
    if (log != stdout)
        fclose(log);
    return 0;
}

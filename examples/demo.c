/*
 * synesis-demo: the README's main job, on loopback. Builds a throwaway PKI, starts the reference
 * edge, keeps a tunnel up on the same libev loop, takes the edge away for a few seconds to show
 * the reconnect, and prints every state change and the edge's event log.
 */
#include <ev.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "edge/edge.h"
#include "synesis/synesis.h"

typedef struct demo {
    struct ev_loop *loop;
    syn_edge *edge;
    synesis_tunnel *tunnel;
    char dir[256];
    double t0;
    int connected_count;
    int failed;
    double outage;
    double wait_udp; /* --wait-udp: after coming up over TCP, wait this long for UDP */
    double waited;
    ev_timer step;
    ev_timer deadline;
    void (*next)(struct demo *d);
} demo;

static double elapsed(demo *d) { return ev_time() - d->t0; }

static void edge_line(void *ud, const char *line) {
    demo *d = ud;
    printf("[%7.3f] edge  %s\n", elapsed(d), line);
}

static void tunnel_log(synesis_log_level level, const char *msg, void *ud) {
    demo *d = ud;
    if (level <= SYNESIS_LOG_WARN)
        printf("[%7.3f] log   %s\n", elapsed(d), msg);
}

static void after(demo *d, double seconds, void (*fn)(demo *)) {
    d->next = fn;
    ev_timer_stop(d->loop, &d->step);
    ev_timer_set(&d->step, seconds, 0.);
    ev_timer_start(d->loop, &d->step);
}

static void step_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    demo *d = w->data;
    void (*fn)(demo *) = d->next;
    d->next = NULL;
    if (fn)
        fn(d);
}

static void finish(demo *d) {
    ev_timer_stop(d->loop, &d->deadline);
    ev_timer_stop(d->loop, &d->step);
    synesis_tunnel_free(d->tunnel);
    d->tunnel = NULL;
    syn_edge_free(d->edge);
    d->edge = NULL;
}

static void print_stats(demo *d) {
    char json[2048];
    synesis_tunnel_stats_json(d->tunnel, json, sizeof(json));
    printf("[%7.3f] stats %s\n", elapsed(d), json);
}

static void do_disconnect(demo *d) {
    print_stats(d);
    printf("[%7.3f] demo  disconnecting\n", elapsed(d));
    synesis_tunnel_disconnect(d->tunnel);
}

static void on_response(synesis_tunnel *t, synesis_request *req, const synesis_response *resp,
                        void *ud) {
    (void)t;
    (void)req;
    demo *d = synesis_tunnel_user_data(t);
    const char *what = ud;
    if (resp->status == 0)
        printf("[%7.3f] reply %-22s -> %zu bytes%s%.*s%s\n", elapsed(d), what, resp->len,
               resp->len <= 40 ? " \"" : "", resp->len <= 40 ? (int)resp->len : 0,
               (const char *)resp->data, resp->len <= 40 ? "\"" : "");
    else
        printf("[%7.3f] reply %-22s -> %s (app error 0x%llx): %s\n", elapsed(d), what,
               synesis_error_name(resp->status), (unsigned long long)resp->app_error_code,
               resp->detail);
}

static void send_requests(demo *d) {
    static const struct {
        const char *label, *body;
    } reqs[] = {
        {"echo \"hello edge\"", "hello edge"           },
        {"SRC 1048576",         "SRC 1048576\n"        },
        {"SLEEP 200 + echo",    "SLEEP 200\nslept well"},
        {"RESET 42",            "RESET 42\n"           },
    };
    for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
        int rv = synesis_tunnel_request(d->tunnel, reqs[i].body, strlen(reqs[i].body), NULL,
                                        on_response, (void *)reqs[i].label, NULL);
        if (rv != 0)
            printf("[%7.3f] demo  request %s: %s\n", elapsed(d), reqs[i].label,
                   synesis_strerror(rv));
    }
}

static void on_heartbeat(synesis_tunnel *t, const synesis_heartbeat_info *hb, void *ud) {
    (void)t;
    demo *d = ud;
    printf("[%7.3f] hb    sequence %llu, %zu bytes, rtt %u ms%s%s\n", elapsed(d),
           (unsigned long long)hb->sequence, hb->size, hb->rtt_ms, hb->status ? ", not sent: " : "",
           hb->status ? synesis_strerror(hb->status) : "");
}

static void restart_edge(demo *d) {
    char detail[512];
    printf("[%7.3f] demo  starting the edge again on port %u\n", elapsed(d),
           syn_edge_port(d->edge));
    if (syn_edge_start(d->edge, detail) != 0) {
        fprintf(stderr, "edge restart: %s\n", detail);
        d->failed = 1;
        finish(d);
    }
}

static void stop_edge(demo *d) {
    printf("[%7.3f] demo  stopping the edge for %.1f s\n", elapsed(d), d->outage);
    syn_edge_stop(d->edge, 1);
    after(d, d->outage, restart_edge);
}

/* --wait-udp: the tunnel came up over TCP; it probes UDP in the background and moves back to it
 * once UDP gets through (say, a firewall rule removed meanwhile). */
static void wait_for_udp(demo *d) {
    synesis_tunnel_state st;
    synesis_tunnel_get_state(d->tunnel, &st);
    d->waited += 0.25;
    if (st.kind == SYNESIS_STATE_CONNECTED && st.transport == SYNESIS_TRANSPORT_UDP) {
        printf("[%7.3f] demo  moved back to UDP, still Connected\n", elapsed(d));
        fflush(stdout);
        send_requests(d);
        after(d, 1.5, stop_edge);
        return;
    }
    if (d->waited >= d->wait_udp) {
        printf("[%7.3f] demo  still over TCP after %.1f s\n", elapsed(d), d->wait_udp);
        after(d, 0.1, stop_edge);
        return;
    }
    after(d, 0.25, wait_for_udp);
}

static void on_state(synesis_tunnel *t, const synesis_tunnel_state *old,
                     const synesis_tunnel_state *st, void *ud) {
    (void)t;
    demo *d = ud;
    printf("[%7.3f] state %s -> %s", elapsed(d), synesis_state_name(old->kind),
           synesis_state_name(st->kind));
    if (st->kind == SYNESIS_STATE_CONNECTED)
        printf(" (latency %u ms, over %s)", st->latency_ms, synesis_transport_name(st->transport));
    if (st->kind == SYNESIS_STATE_RECONNECTING)
        printf(" (attempt %u, last error %s: %s)", st->attempt, synesis_error_name(st->error),
               st->error_detail);
    if (st->kind == SYNESIS_STATE_FAILED)
        printf(" (%s: %s)", synesis_error_name(st->error), st->error_detail);
    printf("\n");
    fflush(stdout);
    switch (st->kind) {
    case SYNESIS_STATE_CONNECTED:
        d->connected_count++;
        send_requests(d);
        if (d->connected_count == 1 && d->wait_udp > 0 && st->transport == SYNESIS_TRANSPORT_TCP)
            after(d, 0.25, wait_for_udp);
        else
            after(d, 1.5, d->connected_count == 1 ? stop_edge : do_disconnect);
        break;
    case SYNESIS_STATE_FAILED:
        d->failed = 1;
        finish(d);
        break;
    case SYNESIS_STATE_DISCONNECTED:
        after(d, 0.2, finish); /* let the edge read our CONNECTION_CLOSE and log it */
        break;
    default:
        break;
    }
}

static void deadline_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    demo *d = w->data;
    fprintf(stderr, "demo: did not finish in time\n");
    d->failed = 1;
    finish(d);
}

static void usage(const char *argv0) {
    printf("usage: %s [--dir DIR] [--outage SECONDS] [--port N] [--transport auto|udp|tcp]\n"
           "          [--proxy URL] [--wait-udp SECONDS]\n"
           "Runs the synesis-tunnel demo on loopback: a throwaway PKI (in DIR, default a new\n"
           "temporary directory), the reference edge, a tunnel on the same libev loop, an edge\n"
           "outage to show the reconnect, then a clean disconnect.\n"
           "  --port N        the edge's port, UDP and TCP (default: a free one)\n"
           "  --transport T   the tunnel's transport (default auto: UDP, TCP when UDP is blocked)\n"
           "  --proxy URL     HTTP CONNECT proxy for TCP (default: https_proxy as curl)\n"
           "  --wait-udp S    when the tunnel came up over TCP, wait up to S seconds for it to\n"
           "                  move back to UDP (probing every second) before the outage\n",
           argv0);
}

int main(int argc, char **argv) {
    static demo d;
    d.outage = 2.5;
    const char *dir = NULL;
    static const struct option opts[] = {
        {"dir",       required_argument, NULL, 'd'},
        {"outage",    required_argument, NULL, 'o'},
        {"port",      required_argument, NULL, 'p'},
        {"transport", required_argument, NULL, 't'},
        {"proxy",     required_argument, NULL, 'x'},
        {"wait-udp",  required_argument, NULL, 'w'},
        {"help",      no_argument,       NULL, 'h'},
        {NULL,        0,                 NULL, 0  }
    };
    int c;
    unsigned port = 0;
    synesis_transport transport = SYNESIS_TRANSPORT_AUTO;
    const char *proxy = NULL;
    while ((c = getopt_long(argc, argv, "d:o:p:t:x:w:h", opts, NULL)) != -1) {
        switch (c) {
        case 'p':
            port = (unsigned)atoi(optarg);
            if (port > 65535) {
                usage(argv[0]);
                return 2;
            }
            break;
        case 't':
            if (strcmp(optarg, "auto") == 0)
                transport = SYNESIS_TRANSPORT_AUTO;
            else if (strcmp(optarg, "udp") == 0)
                transport = SYNESIS_TRANSPORT_UDP;
            else if (strcmp(optarg, "tcp") == 0)
                transport = SYNESIS_TRANSPORT_TCP;
            else {
                usage(argv[0]);
                return 2;
            }
            break;
        case 'x':
            proxy = optarg;
            break;
        case 'w':
            d.wait_udp = atof(optarg);
            break;
        case 'd':
            dir = optarg;
            break;
        case 'o':
            d.outage = atof(optarg);
            break;
        case 'h':
            usage(argv[0]);
            return 0;
        default:
            usage(argv[0]);
            return 2;
        }
    }
    char deps[128];
    synesis_dependency_versions(deps, sizeof(deps));
    printf("synesis-tunnel %s (%s)\n", synesis_version(), deps);

    char detail[512];
    if (dir) {
        snprintf(d.dir, sizeof(d.dir), "%s", dir);
    } else {
        snprintf(d.dir, sizeof(d.dir), "/tmp/synesis-demo-XXXXXX");
        if (!mkdtemp(d.dir)) {
            perror("mkdtemp");
            return 1;
        }
        rmdir(d.dir); /* the PKI builder creates it with mode 0700 */
    }
    int rv = synesis_identity_create_test_pki(d.dir, "demo-0001", detail, sizeof(detail));
    if (rv != 0) {
        fprintf(stderr, "test PKI in %s: %s: %s\n", d.dir, synesis_error_name(rv), detail);
        return 1;
    }
    printf("throwaway PKI in %s (ca, edge for localhost, device-demo-0001)\n", d.dir);

    d.loop = EV_DEFAULT;
    d.t0 = ev_time();
    char cert[300], key[300], ca[300];
    snprintf(cert, sizeof(cert), "%s/edge.pem", d.dir);
    snprintf(key, sizeof(key), "%s/edge.key", d.dir);
    snprintf(ca, sizeof(ca), "%s/ca.pem", d.dir);
    syn_edge_config ec;
    syn_edge_config_init(&ec);
    char listen[32];
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", port);
    ec.listen = listen;
    ec.cert_file = cert;
    ec.key_file = key;
    ec.ca_file = ca;
    ec.log = edge_line;
    ec.log_user_data = &d;
    if ((rv = syn_edge_new(&d.edge, d.loop, &ec, detail)) != 0 ||
        (rv = syn_edge_start(d.edge, detail)) != 0) {
        fprintf(stderr, "edge: %s: %s\n", synesis_error_name(rv), detail);
        return 1;
    }

    char url[64], dcert[300], dkey[300];
    snprintf(url, sizeof(url), "quic://127.0.0.1:%u", syn_edge_port(d.edge));
    snprintf(dcert, sizeof(dcert), "%s/device.pem", d.dir);
    snprintf(dkey, sizeof(dkey), "%s/device.key", d.dir);
    synesis_tunnel_config cfg;
    synesis_tunnel_config_init(&cfg);
    cfg.cloud_url = url;
    cfg.server_name = "localhost";
    cfg.cert_path = dcert;
    cfg.key_path = dkey;
    cfg.ca_path = ca;
    cfg.use_system_trust = 0;
    /* Short intervals so the demo shows everything in seconds. */
    cfg.reconnect_initial_delay = 0.5;
    cfg.reconnect_max_delay = 2.0;
    cfg.keep_alive_interval = 1.0;
    cfg.idle_timeout = 5.0;
    cfg.log = tunnel_log;
    cfg.log_user_data = &d;
    cfg.heartbeat_interval = 0.5;
    cfg.transport = transport;
    cfg.proxy = proxy;
    cfg.udp_fallback_timeout = 1.0;
    cfg.udp_reprobe_interval = 1.0;
    synesis_tunnel_callbacks cb;
    synesis_tunnel_callbacks_init(&cb);
    cb.on_state = on_state;
    cb.on_heartbeat = on_heartbeat;
    if ((rv = synesis_tunnel_new(&d.tunnel, d.loop, &cfg, &cb, &d, detail, sizeof(detail))) != 0) {
        fprintf(stderr, "tunnel: %s: %s\n", synesis_error_name(rv), detail);
        syn_edge_free(d.edge);
        return 1;
    }
    printf("tunnel to %s (server name localhost)\n", url);
    ev_timer_init(&d.step, step_cb, 0., 0.);
    d.step.data = &d;
    ev_timer_init(&d.deadline, deadline_cb, 60. + d.wait_udp, 0.);
    d.deadline.data = &d;
    ev_timer_start(d.loop, &d.deadline);

    synesis_tunnel_connect(d.tunnel);
    ev_run(d.loop, 0); /* returns when nothing is left on the loop: everything was freed */
    printf("[%7.3f] demo  %s\n", elapsed(&d), d.failed ? "FAILED" : "done, loop empty");
    return d.failed ? 1 : 0;
}

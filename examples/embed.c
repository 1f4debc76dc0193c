/*
 * embed: the smallest whole program on synesis-tunnel; copy it to start your own.
 *
 *   embed URL CERT KEY CA [MESSAGE]
 *   embed quic://127.0.0.1:4433 device.pem device.key ca.pem hello
 *
 * On a libev loop: a tunnel to URL with the device certificate and key, trusting only CA; once
 * Connected, one request (MESSAGE, default "hello"); prints the response and the statistics,
 * disconnects. Exit status 0 when the response arrived, 1 on a failure, 2 on usage.
 *
 *   cc -o embed embed.c $(pkg-config --cflags --libs synesis_tunnel)
 */
#include <ev.h>
#include <stdio.h>
#include <string.h>

#include <synesis/synesis.h>

typedef struct app {
    struct ev_loop *loop;
    const char *message;
    int sent;
    int status; /* the exit status */
} app;

static void on_response(synesis_tunnel *t, synesis_request *req, const synesis_response *r,
                        void *user_data) {
    app *a = user_data;
    (void)req;
    if (r->status == 0) {
        /* The bytes are valid only during this call; an empty response may have data == NULL. */
        printf("response: %.*s\n", (int)r->len, r->len ? (const char *)r->data : "");
        synesis_tunnel_stats st = {.struct_size = sizeof(st)};
        synesis_tunnel_get_stats(t, &st);
        printf("stats: requests_succeeded=%llu bytes_sent=%llu bytes_received=%llu rtt_ms=%.2f "
               "handshake_ms=%.1f\n",
               (unsigned long long)st.requests_succeeded, (unsigned long long)st.bytes_sent,
               (unsigned long long)st.bytes_received, st.rtt_smoothed_us / 1000.0,
               st.handshake_time * 1000.0);
        a->status = 0;
    } else {
        fprintf(stderr, "request: %s: %s\n", synesis_error_name(r->status), r->detail);
    }
    synesis_tunnel_disconnect(t); /* Disconnected at once: on_state leaves the loop */
}

static void on_state(synesis_tunnel *t, const synesis_tunnel_state *old,
                     const synesis_tunnel_state *now, void *user_data) {
    app *a = user_data;
    (void)old;
    printf("state: %s\n", synesis_state_name(now->kind));
    if (now->kind == SYNESIS_STATE_CONNECTED && !a->sent) {
        a->sent = 1;
        int rv =
            synesis_tunnel_request(t, a->message, strlen(a->message), NULL, on_response, a, NULL);
        if (rv != 0) { /* the callback will not run */
            fprintf(stderr, "request: %s\n", synesis_strerror(rv));
            synesis_tunnel_disconnect(t);
        }
    } else if (now->kind == SYNESIS_STATE_FAILED) {
        fprintf(stderr, "tunnel: %s: %s\n", synesis_error_name(now->error), now->error_detail);
        ev_break(a->loop, EVBREAK_ALL);
    } else if (now->kind == SYNESIS_STATE_DISCONNECTED) {
        ev_break(a->loop, EVBREAK_ALL);
    }
}

int main(int argc, char **argv) {
    if (argc < 5 || argc > 6) {
        int help = argc == 2 && strcmp(argv[1], "--help") == 0;
        fprintf(help ? stdout : stderr, "usage: %s URL CERT KEY CA [MESSAGE]\n", argv[0]);
        return help ? 0 : 2;
    }
    app a = {.loop = EV_DEFAULT, .message = argc == 6 ? argv[5] : "hello", .status = 1};
    synesis_tunnel_config cfg;
    synesis_tunnel_config_init(&cfg); /* every default of the design */
    cfg.cloud_url = argv[1];
    cfg.cert_path = argv[2];
    cfg.key_path = argv[3]; /* mode 0600 */
    cfg.ca_path = argv[4];
    cfg.use_system_trust = 0; /* this CA only */
    synesis_tunnel_callbacks cb;
    synesis_tunnel_callbacks_init(&cb); /* every public struct: its _init() first */
    cb.on_state = on_state;
    synesis_tunnel *t;
    char err[256];
    if (synesis_tunnel_new(&t, a.loop, &cfg, &cb, &a, err, sizeof(err)) != 0) {
        fprintf(stderr, "tunnel: %s\n", err); /* names the file or setting to fix */
        return 1;
    }
    synesis_tunnel_connect(t); /* the outcome arrives as state changes */
    ev_run(a.loop, 0);
    synesis_tunnel_free(t);
    return a.status;
}

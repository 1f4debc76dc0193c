/* synesis-test-proxy: the tests' HTTP CONNECT proxy as a program, for the netns test and demo
 * scripts. Prints "port N" once listening; on SIGINT/SIGTERM prints its counters and exits. */
#include "connect_proxy.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: synesis-test-proxy [--listen HOST] [--port N] [--auth USER:PASSWORD]\n"
               "                          [--refuse-all | --close | --garbage]\n"
               "                          [--refuse HOST:PORT] [--trickle]\n"
               "An HTTP CONNECT proxy for tests: relays after CONNECT; --auth requires Basic\n"
               "credentials (407 otherwise); --refuse-all answers 403; --refuse HOST:PORT\n"
               "answers 403 for that target; --close closes without answering; --garbage\n"
               "answers bytes that are not HTTP; --trickle relays one byte per write.\n");
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents) {
    (void)revents;
    (void)w;
    ev_break(loop, EVBREAK_ALL);
}

int main(int argc, char **argv) {
    syn_test_proxy_opts o;
    memset(&o, 0, sizeof(o));
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--listen") && v) {
            o.listen_host = v;
            i++;
        } else if (!strcmp(a, "--port") && v) {
            o.listen_port = (uint16_t)atoi(v);
            i++;
        } else if (!strcmp(a, "--auth") && v) {
            o.mode = SYN_TEST_PROXY_AUTH;
            o.credentials = v;
            i++;
        } else if (!strcmp(a, "--refuse") && v) {
            o.refuse_target = v;
            i++;
        } else if (!strcmp(a, "--refuse-all")) {
            o.mode = SYN_TEST_PROXY_REFUSE;
        } else if (!strcmp(a, "--close")) {
            o.mode = SYN_TEST_PROXY_CLOSE;
        } else if (!strcmp(a, "--garbage")) {
            o.mode = SYN_TEST_PROXY_GARBAGE;
        } else if (!strcmp(a, "--trickle")) {
            o.trickle = 1;
        } else {
            usage(stderr);
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    struct ev_loop *loop = EV_DEFAULT;
    syn_test_proxy *px = NULL;
    uint16_t port = 0;
    int rc = syn_test_proxy_start(&px, loop, &o, &port);
    if (rc) {
        fprintf(stderr, "synesis-test-proxy: cannot listen: %s\n", strerror(-rc));
        return 1;
    }
    printf("port %u\n", (unsigned)port);
    fflush(stdout);
    ev_signal si, st;
    ev_signal_init(&si, on_signal, SIGINT);
    ev_signal_init(&st, on_signal, SIGTERM);
    ev_signal_start(loop, &si);
    ev_signal_start(loop, &st);
    ev_run(loop, 0);
    const syn_test_proxy_stats *s = syn_test_proxy_stats_get(px);
    printf("connections %u tunnels %u refused %u bytes_up %llu bytes_down %llu\n", s->connections,
           s->tunnels, s->refused, (unsigned long long)s->bytes_up,
           (unsigned long long)s->bytes_down);
    syn_test_proxy_free(px);
    return 0;
}

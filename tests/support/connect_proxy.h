/*
 * A small HTTP CONNECT proxy for tests, on a libev loop: reads the CONNECT request, answers it as
 * its mode says and then relays bytes both ways, non-blocking. It counts connections, tunnels and
 * relayed bytes so a test can assert that traffic really went through it. Not part of the library;
 * tests/support/connect_proxy_main.c makes a program of it for the scripts.
 */
#ifndef SYNESIS_TEST_CONNECT_PROXY_H
#define SYNESIS_TEST_CONNECT_PROXY_H

#include <ev.h>
#include <stdint.h>

typedef enum syn_test_proxy_mode {
    SYN_TEST_PROXY_OPEN,    /* every CONNECT is relayed (but refuse_target) */
    SYN_TEST_PROXY_AUTH,    /* Basic credentials required: 407 without them or with others */
    SYN_TEST_PROXY_REFUSE,  /* every CONNECT gets 403 Forbidden */
    SYN_TEST_PROXY_CLOSE,   /* the connection is closed once the request is read, no answer */
    SYN_TEST_PROXY_GARBAGE, /* answers bytes that are not HTTP, then waits */
    /* answers 200 with a TLS alert record (fatal handshake_failure) right behind the empty line,
     * in the same segment, then relays: what follows the headers must reach TLS */
    SYN_TEST_PROXY_TRAILING,
} syn_test_proxy_mode;

typedef struct syn_test_proxy_opts {
    syn_test_proxy_mode mode;
    const char *credentials;   /* "user:password" for SYN_TEST_PROXY_AUTH */
    const char *refuse_target; /* "host:port" answered 403 in the other modes (NULL: none) */
    const char *listen_host;   /* NULL: 127.0.0.1 */
    uint16_t listen_port;      /* 0: an ephemeral port */
    int trickle;               /* relay one byte per write (TCP segments of one byte) */
} syn_test_proxy_opts;

typedef struct syn_test_proxy_stats {
    unsigned connections;    /* accepted */
    unsigned tunnels;        /* CONNECTs answered 200 */
    unsigned refused;        /* answered 403 / 407 / 502, closed, or garbage */
    uint64_t bytes_up;       /* relayed client -> target */
    uint64_t bytes_down;     /* relayed target -> client */
    char last_request[1024]; /* the last request's headers as received */
} syn_test_proxy_stats;

typedef struct syn_test_proxy syn_test_proxy;

/* Starts listening (returns 0, *port the port) or returns -errno. */
int syn_test_proxy_start(syn_test_proxy **out, struct ev_loop *loop,
                         const syn_test_proxy_opts *opts, uint16_t *port);
const syn_test_proxy_stats *syn_test_proxy_stats_get(const syn_test_proxy *p);
/* Closes the listener and every connection. NULL is a no-op. */
void syn_test_proxy_free(syn_test_proxy *p);

#endif /* SYNESIS_TEST_CONNECT_PROXY_H */

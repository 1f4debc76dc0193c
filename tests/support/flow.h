/* The traffic of the tests that move a connection (test_migration, test_tcp): an echoed stream of
 * SYN_TEST_FLOW_BYTES (every byte checked in place) and SYN_TEST_FLOW_NREQ requests of
 * SYN_TEST_FLOW_REQ_BYTES (each answered exactly once, its body echoed). Half the requests go with
 * syn_test_flow_start, the rest with syn_test_flow_request while the connection moves. */
#ifndef SYN_TEST_FLOW_H
#define SYN_TEST_FLOW_H

#include "synesis/request.h"
#include "synesis/stream.h"
#include "synesis/tunnel.h"

#include <stddef.h>
#include <stdint.h>

#define SYN_TEST_FLOW_BYTES (4u * 1024 * 1024)
#define SYN_TEST_FLOW_NREQ 16
#define SYN_TEST_FLOW_REQ_BYTES 20000

typedef struct syn_test_flow {
    synesis_stream *s;
    size_t sent, received, bad;
    int ended, closed, status;
    char detail[256];
    int req_calls[SYN_TEST_FLOW_NREQ], req_ok[SYN_TEST_FLOW_NREQ];
    uint8_t req_body[SYN_TEST_FLOW_NREQ][SYN_TEST_FLOW_REQ_BYTES];
    int reqs_issued;
    int hold; /* the writer pauses (the stream stays open, in flight) */
} syn_test_flow;

/* Opens the stream (writing as credit allows, unless hold) and sends the first half of the
 * requests. One flow at a time (the requests' contexts are static). */
void syn_test_flow_start(synesis_tunnel *t, syn_test_flow *f);
/* Sends the next request. */
void syn_test_flow_request(synesis_tunnel *t, syn_test_flow *f);
/* Writes what the stream takes (after hold is cleared, say). */
void syn_test_flow_pump(syn_test_flow *f);
/* syn_test_run_until predicates: a quarter of the stream echoed back; everything ended. */
int syn_test_flow_quarter(void *ud);
int syn_test_flow_done(void *ud);
/* Asserts that every byte came back once and in place and every request was answered once. */
void syn_test_flow_check(const syn_test_flow *f);

#endif /* SYN_TEST_FLOW_H */

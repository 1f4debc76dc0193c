/* Test and fuzzing hooks of the QUIC-over-TCP links (tcplink.c): included only by tcplink.c,
 * which defines them, and by tests/ and tests/fuzz/. Nothing in the library calls them; they are
 * not exported (the version script keeps synesis_* only). Not for production code. */
#ifndef SYNESIS_TCPLINK_TEST_H
#define SYNESIS_TCPLINK_TEST_H

#include "tcplink.h"

/* A server link already up, with no socket and no TLS: its frame reader is fed by
 * syn_tcplink_test_feed instead of SSL_read. Free with syn_tcplink_free. */
int syn_tcplink_test_up(syn_tcplink **out, struct ev_loop *loop, const syn_tcplink_ops *ops,
                        void *owner);
/* Bytes as SSL_read would return them after the handshake (in pieces of at most the room left in
 * the read buffer): the link's own frame reader cuts them into frames and calls ops.packet, or
 * ops.closed on a bad frame. Returns 0, or -1 when the link went down or was freed (by an op). */
int syn_tcplink_test_feed(syn_tcplink *l, const uint8_t *data, size_t len);
/* Bytes held in the read buffer (a frame not yet complete). */
size_t syn_tcplink_test_buffered(const syn_tcplink *l);

#endif /* SYNESIS_TCPLINK_TEST_H */

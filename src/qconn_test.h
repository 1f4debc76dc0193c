/* Test and fuzzing hooks of the QUIC driver (qconn.c): included only by qconn.c, which defines
 * them, and by tests/ and tests/fuzz/. Nothing in the library calls them; they are not exported
 * (the version script keeps synesis_* only, test_exports checks). */
#ifndef SYNESIS_QCONN_TEST_H
#define SYNESIS_QCONN_TEST_H

#include "qconn.h"

/* The send batch (its counters, for tests). */
const syn_udp_tx *syn_qconn_tx(const syn_qconn *qc);

/* ---- tests and fuzzing (tests/fuzz) ----
 * The calls below run the driver's own ngtcp2 stream callbacks (the code ngtcp2 calls while it
 * reads a packet) for one stream, as if ngtcp2 had made the call, inside the driver's re-entrancy
 * bracket: deferred closes and frees happen on the way out, and, as after a received datagram, no
 * write pass (the owner flushes, syn_qconn_flush). ngtcp2 itself is not told: the caller plays a
 * well-behaved ngtcp2 (data in order, FIN at most once and last, nothing after the close) and the
 * stream's owner sees exactly the calls it would see from a peer. Each returns 1 if qc was freed
 * meanwhile (then neither qc nor s may be used again), else 0. Not for production code. */

/* The newest stream of qc (NULL if none); syn_qstream_next walks to the oldest. */
syn_qstream *syn_qconn_streams(const syn_qconn *qc);
syn_qstream *syn_qstream_next(const syn_qstream *s);
/* Bytes sent (at least once). */
uint64_t syn_qstream_sent(const syn_qstream *s);
/* The peer opened stream id (ngtcp2's stream_open): *out is the new stream (NULL if none could be
 * made); its owner may have refused it (then its user is NULL), it still needs a close. */
int syn_qconn_test_peer_stream(syn_qconn *qc, int64_t id, syn_qstream **out);
/* In-order stream data (fin on the last call). */
int syn_qconn_test_stream_data(syn_qstream *s, const uint8_t *data, size_t len, int fin);
/* The peer reset its sending side (stop = 0: RESET_STREAM) or sent STOP_SENDING (stop = 1). */
int syn_qconn_test_stream_reset(syn_qstream *s, uint64_t app_code, int stop);
/* The peer acknowledged len bytes at offset (at most what was sent: s->sent). */
int syn_qconn_test_stream_acked(syn_qstream *s, uint64_t offset, uint64_t len);
/* The stream closed (reset: with an application error code); s is freed. A stream ngtcp2 knows
 * (one we opened) is detached from ngtcp2 first and shut down there, so ngtcp2 never hands the
 * freed stream back nor retransmits its released data. */
int syn_qconn_test_stream_close(syn_qstream *s, uint64_t app_code, int reset);

#endif /* SYNESIS_QCONN_TEST_H */

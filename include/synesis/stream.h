/*
 * synesis-tunnel: streaming over the tunnel (the design's open_stream()).
 *
 * A stream is one bidirectional QUIC stream with backpressure both ways: writes are accepted up
 * to a bounded send buffer (config.stream_send_buffer) and on_writable says when there is room
 * again; reads can be paused, and flow-control credit returns to the edge only as the
 * application consumes, so a slow reader never makes the library buffer without bound.
 */
#ifndef SYNESIS_STREAM_H
#define SYNESIS_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "synesis/common.h"
#include "synesis/tunnel.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct synesis_stream synesis_stream;

/* Stream callbacks; any may be NULL. Pointers are valid only during the call. */
typedef struct synesis_stream_callbacks {
    /* Data from the edge, in order. Not called while paused. */
    void (*on_data)(synesis_stream *s, const uint8_t *data, size_t len, void *user_data);
    /* The edge finished its side (FIN), after the last on_data. */
    void (*on_end)(synesis_stream *s, void *user_data);
    /* Room in the send buffer again after a short write. */
    void (*on_writable)(synesis_stream *s, void *user_data);
    /* The stream is over: status 0 after both sides finished, or the error
     * (SYNESIS_ERR_STREAM_RESET with the edge's app_error_code, _CONNECTION_LOST, _CANCELLED by
     * reset() or the tunnel's free). Called exactly once; the handle is invalid afterwards. */
    void (*on_close)(synesis_stream *s, int status, uint64_t app_error_code, void *user_data);
} synesis_stream_callbacks;

/*
 * Opens a stream. Returns SYNESIS_ERR_NOT_CONNECTED unless Connected. If the edge's stream limit
 * is reached, the stream waits for credit; writes are buffered meanwhile (within the send
 * buffer).
 */
SYNESIS_API int synesis_tunnel_open_stream(synesis_tunnel *t, const synesis_stream_callbacks *cb,
                                           void *user_data, synesis_stream **out);

/*
 * Queues up to len bytes (copied); *accepted receives how many fit in the send buffer. Returns
 * 0 when at least one byte (or len == 0) was accepted, SYNESIS_ERR_WOULD_BLOCK when none fit
 * (on_writable follows), SYNESIS_ERR_INVALID_STATE after finish/reset.
 */
SYNESIS_API int synesis_stream_write(synesis_stream *s, const void *data, size_t len,
                                     size_t *accepted);

/* Ends our side (FIN after the queued data). */
SYNESIS_API int synesis_stream_finish(synesis_stream *s);

/* The largest application error code QUIC can carry (a variable-length integer): 2^62 - 1. */
#define SYNESIS_APP_ERROR_CODE_MAX 0x3fffffffffffffffull

/* Aborts the stream both ways with app_error_code; on_close follows with SYNESIS_ERR_CANCELLED.
 * SYNESIS_ERR_INVALID_ARGUMENT (and nothing happens) when app_error_code exceeds
 * SYNESIS_APP_ERROR_CODE_MAX. */
SYNESIS_API int synesis_stream_reset(synesis_stream *s, uint64_t app_error_code);

/* Stops delivering data (it is held, at most one receive window) and stops returning
 * flow-control credit; resume() delivers what was held and returns credit again. Held bytes also
 * count against the connection's receive window (16 MiB, or 4 stream windows if larger), which
 * all streams and requests share: many streams paused at once can hold up the others until they
 * resume. */
SYNESIS_API void synesis_stream_pause(synesis_stream *s);
SYNESIS_API void synesis_stream_resume(synesis_stream *s);

/* Bytes accepted by write() and not yet acknowledged by the edge. */
SYNESIS_API size_t synesis_stream_buffered(const synesis_stream *s);

#ifdef __cplusplus
}
#endif

#endif /* SYNESIS_STREAM_H */

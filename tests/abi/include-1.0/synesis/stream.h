/**
 * @file synesis/stream.h
 * @brief Streaming over the tunnel (the design's open_stream()).
 *
 * A stream is one bidirectional QUIC stream with backpressure both ways: writes are accepted up
 * to a bounded send buffer (config.stream_send_buffer) and on_writable says when there is room
 * again; reads can be paused, and flow-control credit returns to the edge only as the
 * application consumes, so a slow reader never makes the library buffer without bound.
 *
 * Threads: every function here is for the loop thread of the tunnel only; callbacks run there.
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

/** A stream (opaque), valid until its on_close callback returns. @since 1.0 */
typedef struct synesis_stream synesis_stream;

/** Stream callbacks (caller-filled: start from synesis_stream_callbacks_init()); any may be NULL.
 * Pointers are valid only during the call. Members are only ever appended. @since 1.0 */
typedef struct synesis_stream_callbacks {
    /** Set by synesis_stream_callbacks_init(): the size of the struct the application was built
     * with. @since 1.0 */
    size_t struct_size;
    /** Data from the edge, in order. Not called while paused. @since 1.0 */
    void (*on_data)(synesis_stream *s, const uint8_t *data, size_t len, void *user_data);
    /** The edge finished its side (FIN), after the last on_data. @since 1.0 */
    void (*on_end)(synesis_stream *s, void *user_data);
    /** Room in the send buffer again after a short write. @since 1.0 */
    void (*on_writable)(synesis_stream *s, void *user_data);
    /** The stream is over: status 0 after both sides finished, or the error
     * (SYNESIS_ERR_STREAM_RESET with the edge's app_error_code, _CONNECTION_LOST, _CANCELLED by
     * reset() or the tunnel's free), with a human-readable detail (never NULL, "" when none).
     * Called exactly once; the handle is invalid afterwards. @since 1.0 */
    void (*on_close)(synesis_stream *s, int status, uint64_t app_error_code, const char *detail,
                     void *user_data);
} synesis_stream_callbacks;

/**
 * Zeroes the first size bytes of cb (every callback NULL) and sets struct_size to size. Call it
 * through synesis_stream_callbacks_init(). NULL is a no-op. Any thread. @since 1.0
 */
SYNESIS_API void synesis_stream_callbacks_init_sized(synesis_stream_callbacks *cb, size_t size);

/** Clears *cb (synesis_stream_callbacks_init_sized() with its size). @since 1.0 */
#define synesis_stream_callbacks_init(cb) synesis_stream_callbacks_init_sized((cb), sizeof(*(cb)))

/**
 * Opens a stream. If the edge's stream limit is reached, the stream waits for credit; writes are
 * buffered meanwhile (within the send buffer).
 * @param t the tunnel.
 * @param cb the callbacks, copied; may be NULL (none). Read under the evolution rule.
 * @param user_data handed to every callback.
 * @param out receives the handle (required), owned by the library until on_close returns.
 * @return 0, SYNESIS_ERR_INVALID_ARGUMENT (NULL t or out, a bad cb), SYNESIS_ERR_NOT_CONNECTED
 *         unless Connected, or SYNESIS_ERR_NOMEM.
 * Thread rule: loop thread only. @since 1.0
 */
SYNESIS_API int synesis_tunnel_open_stream(synesis_tunnel *t, const synesis_stream_callbacks *cb,
                                           void *user_data, synesis_stream **out);

/**
 * Queues up to len bytes (copied); *accepted (may be NULL) receives how many fit in the send
 * buffer.
 * @return 0 when at least one byte (or len == 0) was accepted, SYNESIS_ERR_WOULD_BLOCK when none
 *         fit (on_writable follows), SYNESIS_ERR_INVALID_STATE after finish/reset,
 *         SYNESIS_ERR_INVALID_ARGUMENT for a NULL s (or NULL data with len > 0).
 * Thread rule: loop thread only. @since 1.0
 */
SYNESIS_API int synesis_stream_write(synesis_stream *s, const void *data, size_t len,
                                     size_t *accepted);

/**
 * Ends our side (FIN after the queued data).
 * @return 0, SYNESIS_ERR_INVALID_ARGUMENT for NULL, SYNESIS_ERR_INVALID_STATE after finish/reset.
 * Thread rule: loop thread only. @since 1.0
 */
SYNESIS_API int synesis_stream_finish(synesis_stream *s);

/** The largest application error code QUIC can carry (a variable-length integer): 2^62 - 1.
 * @since 1.0 */
#define SYNESIS_APP_ERROR_CODE_MAX 0x3fffffffffffffffull

/**
 * Aborts the stream both ways with app_error_code; on_close follows with SYNESIS_ERR_CANCELLED.
 * @return 0, or SYNESIS_ERR_INVALID_ARGUMENT (and nothing happens) for NULL or when
 *         app_error_code exceeds SYNESIS_APP_ERROR_CODE_MAX.
 * Thread rule: loop thread only. @since 1.0
 */
SYNESIS_API int synesis_stream_reset(synesis_stream *s, uint64_t app_error_code);

/**
 * Stops delivering data (it is held, at most one receive window) and stops returning
 * flow-control credit; synesis_stream_resume() delivers what was held and returns credit again.
 * Held bytes also count against the connection's receive window (16 MiB, or 4 stream windows if
 * larger), which all streams and requests share: many streams paused at once can hold up the
 * others until they resume. NULL is a no-op. Loop thread only. @since 1.0
 */
SYNESIS_API void synesis_stream_pause(synesis_stream *s);
/** Resumes a paused stream (see synesis_stream_pause()). NULL is a no-op. Loop thread only.
 * @since 1.0 */
SYNESIS_API void synesis_stream_resume(synesis_stream *s);

/** Bytes accepted by write() and not yet acknowledged by the edge (0 for NULL). Loop thread only.
 * @since 1.0 */
SYNESIS_API size_t synesis_stream_buffered(const synesis_stream *s);

#ifdef __cplusplus
}
#endif

#endif /* SYNESIS_STREAM_H */

/**
 * @file synesis/request.h
 * @brief Request/response over the tunnel (the design's request()).
 *
 * Each request opens a bidirectional QUIC stream, sends its bytes and FIN, reads the response
 * until the edge's FIN, and calls back exactly once. Many requests share the one connection;
 * when the edge's stream limit is reached they wait in a queue (config.max_queued_requests and
 * config.max_queued_request_bytes) and open as stream credit arrives.
 *
 * Threads: every function here is for the loop thread of the tunnel only; callbacks run there.
 */
#ifndef SYNESIS_REQUEST_H
#define SYNESIS_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "synesis/common.h"
#include "synesis/tunnel.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A request in progress (opaque), valid until its callback returns. @since 1.0 */
typedef struct synesis_request synesis_request;

/** Per-request options (caller-filled): start from synesis_request_options_init(). Members are
 * only ever appended. @since 1.0 */
typedef struct synesis_request_options {
    /** Set by synesis_request_options_init(): the size of the struct the application was built
     * with. @since 1.0 */
    size_t struct_size;
    /** Seconds from submission (queueing included) to the response's end; 0 = the tunnel's
     * config.request_timeout (default 30 s). On expiry the stream is reset and the callback gets
     * SYNESIS_ERR_TIMEOUT. @since 1.0 */
    double timeout;
    /** Largest response accepted; 0 = config.max_response_size (default 16 MiB). A larger one is
     * refused as soon as it crosses the limit (STOP_SENDING + RESET_STREAM, nothing buffered
     * beyond it): SYNESIS_ERR_RESPONSE_TOO_LARGE. @since 1.0 */
    size_t max_response_size;
    /** 0 (default, as the design): a request made while not Connected fails at once with
     * SYNESIS_ERR_NOT_CONNECTED. 1: it waits in the queue while Connecting or Reconnecting and
     * fails if the tunnel ends in Failed or Disconnected. Only requests that have not been sent
     * wait; one in flight when the connection drops fails with SYNESIS_ERR_CONNECTION_LOST.
     * @since 1.0 */
    int queue_while_reconnecting;
    /** Bits of SYNESIS_REQUEST_* (SYNESIS_REQUEST_IDEMPOTENT). Default 0. A 64-bit word, so
     * that it begins after the 1.0 struct's last byte: an int would have gone into the tail
     * padding of the 1.0 layout, which a 1.0 program does not promise to keep zero (the ABI
     * check refuses such a member). @since 1.1 */
    uint64_t flags;
} synesis_request_options;

/**
 * synesis_request_options.flags: the request is idempotent (its repetition is harmless: a read, a
 * PUT-like write of a whole value), so it may go in 0-RTT. Made with queue_while_reconnecting
 * while the tunnel is Connecting or Reconnecting, it leaves with the first flight of a connection
 * that resumes with a ticket allowing early data, instead of waiting for Connected. Early data can
 * be replayed by an attacker who records the device's first flight: the reference edge refuses
 * replays (single-use tickets, docs/resumption.md), but an edge without that anti-replay could act
 * on it twice. Without it (the default) a request waits for Connected. No effect when
 * config.early_data or config.resumption is 0. @since 1.1
 */
#define SYNESIS_REQUEST_IDEMPOTENT ((uint64_t)1)

/**
 * Zeroes the first size bytes of opts (the defaults: the tunnel's configured timeout and maximum
 * response size, no queueing) and sets struct_size to size. Call it through
 * synesis_request_options_init(). NULL is a no-op. Any thread. @since 1.0
 */
SYNESIS_API void synesis_request_options_init_sized(synesis_request_options *opts, size_t size);

/** Fills *opts with the defaults (synesis_request_options_init_sized() with its size).
 * @since 1.0 */
#define synesis_request_options_init(opts)                                                         \
    synesis_request_options_init_sized((opts), sizeof(*(opts)))

/** The outcome of a request (library-owned), valid only during the callback. Members are only
 * ever appended. @since 1.0 */
typedef struct synesis_response {
    size_t struct_size; /**< set by the library: the size of the struct it filled @since 1.0 */
    /** 0, or SYNESIS_ERR_TIMEOUT, _RESPONSE_TOO_LARGE, _STREAM_RESET, _CONNECTION_LOST,
     * _NOT_CONNECTED, _CANCELLED, ... @since 1.0 */
    int status;
    /** With SYNESIS_ERR_STREAM_RESET: the edge's application error code. @since 1.0 */
    uint64_t app_error_code;
    /** The response (status 0). An empty response (len 0) may come with data == NULL.
     * @since 1.0 */
    const uint8_t *data;
    size_t len;         /**< bytes at data (0 unless status is 0) @since 1.0 */
    const char *detail; /**< a human-readable explanation; never NULL, "" on success @since 1.0 */
} synesis_response;

/** Called exactly once per request, on the loop thread, with the outcome (valid during the call).
 * The request handle is invalid after it returns. @since 1.0 */
typedef void (*synesis_response_fn)(synesis_tunnel *t, synesis_request *req,
                                    const synesis_response *resp, void *user_data);

/**
 * Sends len bytes of data (copied) as one request.
 * @param t the tunnel.
 * @param data the request body, copied; may be NULL when len is 0.
 * @param len its length.
 * @param opts may be NULL (defaults); read under the evolution rule (docs/integration.md).
 * @param cb called exactly once with the outcome (required).
 * @param user_data handed to cb.
 * @param out when not NULL, receives a handle usable with synesis_request_cancel() until the
 *        callback runs (owned by the library); NULL on failure.
 * @return 0; on failure the error (SYNESIS_ERR_NOT_CONNECTED, _QUEUE_FULL, _NOMEM,
 *         _INVALID_ARGUMENT for a NULL t or cb, data or a bad opts, _INVALID_STATE after the
 *         tunnel's free from a callback), and cb is never called.
 * Thread rule: loop thread only. @since 1.0
 */
SYNESIS_API int synesis_tunnel_request(synesis_tunnel *t, const void *data, size_t len,
                                       const synesis_request_options *opts, synesis_response_fn cb,
                                       void *user_data, synesis_request **out);

/** Releases the buffer of a no-copy request (see synesis_tunnel_request_nocopy()), on the loop
 * thread. It takes no handle: it may run when no request was made (the call failed).
 * @since 1.0 */
typedef void (*synesis_release_fn)(const void *data, size_t len, void *release_user_data);

/**
 * Like synesis_tunnel_request(), but the data is not copied: it stays the caller's and must stay
 * valid until release(data, len, release_user_data) is called: once the edge acknowledged it, or
 * when the request ends without sending it. release is called exactly once, also when this call
 * fails (but not for SYNESIS_ERR_INVALID_ARGUMENT because release itself is NULL).
 * @return as synesis_tunnel_request().
 * Thread rule: loop thread only. @since 1.0
 */
SYNESIS_API int synesis_tunnel_request_nocopy(synesis_tunnel *t, const void *data, size_t len,
                                              synesis_release_fn release, void *release_user_data,
                                              const synesis_request_options *opts,
                                              synesis_response_fn cb, void *user_data,
                                              synesis_request **out);

/**
 * Cancels a pending request: its stream is reset and its callback runs now with
 * SYNESIS_ERR_CANCELLED. Only valid before the callback has run.
 * @return 0, or SYNESIS_ERR_INVALID_ARGUMENT for NULL.
 * Thread rule: loop thread only. @since 1.0
 */
SYNESIS_API int synesis_request_cancel(synesis_request *req);

#ifdef __cplusplus
}
#endif

#endif /* SYNESIS_REQUEST_H */

/*
 * synesis-tunnel: request/response over the tunnel (the design's request()).
 *
 * Each request opens a bidirectional QUIC stream, sends its bytes and FIN, reads the response
 * until the edge's FIN, and calls back exactly once. Many requests share the one connection;
 * when the edge's stream limit is reached they wait in a queue (config.max_queued_requests and
 * config.max_queued_request_bytes) and open as stream credit arrives.
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

typedef struct synesis_request synesis_request;

/* Per-request options: start from synesis_request_options_init(). */
typedef struct synesis_request_options {
    size_t struct_size;
    /* Seconds from submission (queueing included) to the response's end; 0 = the tunnel's
     * config.request_timeout (default 30 s). On expiry the stream is reset and the callback gets
     * SYNESIS_ERR_TIMEOUT. */
    double timeout;
    /* Largest response accepted; 0 = config.max_response_size (default 16 MiB). A larger one is
     * refused as soon as it crosses the limit (STOP_SENDING + RESET_STREAM, nothing buffered
     * beyond it): SYNESIS_ERR_RESPONSE_TOO_LARGE. */
    size_t max_response_size;
    /* 0 (default, as the design): a request made while not Connected fails at once with
     * SYNESIS_ERR_NOT_CONNECTED. 1: it waits in the queue while Connecting or Reconnecting and
     * fails if the tunnel ends in Failed or Disconnected. Only requests that have not been sent
     * wait; one in flight when the connection drops fails with SYNESIS_ERR_CONNECTION_LOST. */
    int queue_while_reconnecting;
} synesis_request_options;

/* Fills opts with the defaults (every field 0: the tunnel's configured timeout and maximum
 * response size, no queueing) and sets struct_size. */
SYNESIS_API void synesis_request_options_init(synesis_request_options *opts);

/* The outcome of a request, valid only during the callback. */
typedef struct synesis_response {
    int status;              /* 0, or SYNESIS_ERR_TIMEOUT, _RESPONSE_TOO_LARGE, _STREAM_RESET,
                                _CONNECTION_LOST, _NOT_CONNECTED, _CANCELLED, ... */
    uint64_t app_error_code; /* with SYNESIS_ERR_STREAM_RESET: the edge's application error code */
    const uint8_t *data;     /* the response (status 0) */
    size_t len;
    const char *detail; /* a human-readable explanation ("" on success) */
} synesis_response;

/* Called exactly once per request, on the loop thread. The request handle is invalid after it
 * returns. */
typedef void (*synesis_response_fn)(synesis_tunnel *t, synesis_request *req,
                                    const synesis_response *resp, void *user_data);

/*
 * Sends len bytes of data (copied) as one request. opts may be NULL (defaults). On success
 * returns 0 and, when out is not NULL, a handle usable with synesis_request_cancel() until the
 * callback runs. On failure returns the error (SYNESIS_ERR_NOT_CONNECTED, _QUEUE_FULL, _NOMEM,
 * _INVALID_ARGUMENT) and the callback is never called.
 */
SYNESIS_API int synesis_tunnel_request(synesis_tunnel *t, const void *data, size_t len,
                                       const synesis_request_options *opts, synesis_response_fn cb,
                                       void *user_data, synesis_request **out);

/* Releases the buffer of a no-copy request (see synesis_tunnel_request_nocopy). */
typedef void (*synesis_release_fn)(void *release_user_data, const void *data, size_t len);

/* Like synesis_tunnel_request(), but the data is not copied and must stay valid until
 * release(release_user_data, data, len) is called: once the edge acknowledged it, or when the
 * request ends without sending it. release is called exactly once, also when this call fails
 * (SYNESIS_ERR_INVALID_ARGUMENT without release). */
SYNESIS_API int synesis_tunnel_request_nocopy(synesis_tunnel *t, const void *data, size_t len,
                                              synesis_release_fn release, void *release_user_data,
                                              const synesis_request_options *opts,
                                              synesis_response_fn cb, void *user_data,
                                              synesis_request **out);

/* Cancels a pending request: its stream is reset and its callback runs now with
 * SYNESIS_ERR_CANCELLED. Only valid before the callback has run. */
SYNESIS_API int synesis_request_cancel(synesis_request *req);

#ifdef __cplusplus
}
#endif

#endif /* SYNESIS_REQUEST_H */

/* Request/response on bidirectional streams. */
#include "synesis/request.h"

#include "tunnel_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A request body shared by the request and its stream: the stream lets go of it once it is
 * acknowledged, the request when it completes; while the request holds it, a request the edge
 * refused unstarted (SYN_APP_RETRY) or an idempotent one cut by a move can be sent again. */
typedef struct req_body {
    unsigned refs;
    const uint8_t *data;
    size_t len;
    synesis_release_fn release; /* NULL: data is our own copy (free) */
    void *release_ud;
} req_body;

static void body_unref(req_body *b) {
    if (!b || --b->refs)
        return;
    if (b->release)
        b->release(b->data, b->len, b->release_ud);
    else
        free((void *)b->data);
    free(b);
}

static void body_release(const void *data, size_t len, void *ud) {
    (void)data;
    (void)len;
    body_unref(ud);
}

/* Times one request may be sent again (edge drains in a row) before it fails. */
#define REQ_MAX_RETRIES 8

struct synesis_request {
    syn_tobj base;
    synesis_tunnel *t;
    syn_link link; /* on t->req.wait, or t->req.live once live */
    int live;      /* 1 once its stream is open */
    syn_qstream *qs;

    /* The request bytes until they are handed to the stream (which then releases them). */
    const uint8_t *data;
    size_t len;
    synesis_release_fn release; /* NULL: data is our own copy (free) */
    void *release_ud;
    size_t queued_bytes; /* counted in t->req.waiting_bytes while waiting: len of our copy */
    req_body *body;      /* once sent: the body kept for a retry (NULL: none, or not kept) */
    unsigned retries;    /* times it was sent again (SYN_APP_RETRY, a move) */

    size_t max_response;
    int wait_for_connection;
    unsigned idempotent : 1; /* may go in 0-RTT (SYNESIS_REQUEST_IDEMPOTENT) */
    unsigned early : 1;      /* its stream was opened in 0-RTT */
    ev_timer timer;
    uint8_t *resp;
    size_t resp_len, resp_cap;
    synesis_response_fn cb;
    void *user_data;
};

SYNESIS_API void synesis_request_options_init_sized(synesis_request_options *opts, size_t size) {
    synesis_request_options d = {.struct_size = sizeof(d)};
    syn_struct_init(opts, size, &d, sizeof(d));
}

static void release_data(synesis_request *r) {
    if (!r->data && !r->release)
        return;
    if (r->release)
        r->release(r->data, r->len, r->release_ud);
    else
        free((void *)r->data);
    r->data = NULL;
    r->release = NULL;
}

static void free_copy(const void *data, size_t len, void *ud) {
    (void)ud;
    (void)len;
    free((void *)data);
}

static void unlink_req(synesis_tunnel *t, synesis_request *r) {
    if (r->live) {
        syn_list_remove(&t->req.live, &r->link);
    } else {
        syn_list_remove(&t->req.wait, &r->link);
        t->req.waiting--;
        t->req.waiting_bytes -= r->queued_bytes;
    }
}

/* Ends a request: unlinks it, resets its stream when asked (reset_code != UINT64_MAX), calls back
 * once, frees. */
static void complete(synesis_request *r, int status, uint64_t app_code, uint64_t reset_code,
                     const char *detail) {
    synesis_tunnel *t = r->t;
    unlink_req(t, r);
    ev_timer_stop(t->loop, &r->timer);
    if (r->qs) {
        syn_qstream_set_user(r->qs, NULL);
        if (reset_code != UINT64_MAX)
            syn_qstream_shutdown(r->qs, reset_code);
        r->qs = NULL;
    }
    release_data(r);
    body_unref(r->body);
    r->body = NULL;
    syn_drain_note(t);
    switch (status) {
    case 0:
        t->stats.requests_succeeded++;
        break;
    case SYNESIS_ERR_TIMEOUT:
        t->stats.requests_timed_out++;
        break;
    case SYNESIS_ERR_CANCELLED:
        t->stats.requests_cancelled++;
        break;
    default:
        t->stats.requests_failed++;
        break;
    }
    synesis_response resp = {
        .struct_size = sizeof(resp),
        .status = status,
        .app_error_code = app_code,
        .data = r->resp,
        .len = status == 0 ? r->resp_len : 0,
        .detail = detail ? detail : "",
    };
    syn_tunnel_enter(t);
    r->cb(t, r, &resp, r->user_data);
    free(r->resp);
    free(r);
    syn_tunnel_leave(t);
}

/* ---- stream events ---- */

static void req_data(void *obj, syn_qstream *s, const uint8_t *data, size_t len, int fin) {
    (void)s;
    synesis_request *r = obj;
    if (len) {
        if (len > r->max_response - r->resp_len) {
            char d[160];
            snprintf(d, sizeof(d), "response exceeds the maximum of %zu bytes", r->max_response);
            complete(r, SYNESIS_ERR_RESPONSE_TOO_LARGE, 0, SYN_APP_TOO_LARGE, d);
            return;
        }
        uint8_t *n = syn_grow(r->resp, &r->resp_cap, r->resp_len + len, 1, 4096, r->max_response);
        if (!n) {
            complete(r, SYNESIS_ERR_NOMEM, 0, SYN_APP_INTERNAL, "out of memory for the response");
            return;
        }
        r->resp = n;
        memcpy(r->resp + r->resp_len, data, len);
        r->resp_len += len;
        r->t->stats.bytes_received += len;
    }
    if (fin)
        complete(r, 0, 0, UINT64_MAX, NULL);
}

/* Sends r again on the next connection (or this one, when the edge did not drain it): back to
 * the front of the queue, waiting for a connection whatever its options said (the tunnel took it
 * while connected). 0, or -1 when it cannot be sent again (body not kept, or too many retries). */
static int requeue(synesis_request *r, uint64_t reset_code) {
    synesis_tunnel *t = r->t;
    if ((r->len && !r->body) || r->resp_len || r->retries >= REQ_MAX_RETRIES)
        return -1;
    r->retries++;
    syn_list_remove(&t->req.live, &r->link);
    r->live = 0;
    if (r->qs) {
        syn_qstream_set_user(r->qs, NULL);
        syn_qstream_shutdown(r->qs, reset_code);
        r->qs = NULL;
    }
    r->early = 0;
    r->wait_for_connection = 1;
    r->queued_bytes = 0; /* the body is held already */
    syn_list_push_front(&t->req.wait, &r->link);
    t->req.waiting++;
    t->stats.requests_sent--; /* counted again when it goes */
    t->stats.bytes_sent -= r->len;
    return 0;
}

static void req_reset(void *obj, syn_qstream *s, uint64_t app_code, int stop) {
    (void)s;
    synesis_request *r = obj;
    if (app_code == SYN_APP_RETRY) {
        /* A draining edge refused the request before its application saw it: hold every request
         * for the next connection, which its CONNECTION_CLOSE (SYN_APP_MOVE) starts at once. */
        syn_tunnel_edge_draining(r->t);
        if (requeue(r, SYN_APP_RETRY) == 0) {
            syn_tunnel_log(r->t, SYNESIS_LOG_DEBUG,
                           "request refused unstarted by a draining edge: sent again later");
            return;
        }
        complete(r, SYNESIS_ERR_EDGE_DRAINED, app_code, UINT64_MAX,
                 "a draining edge refused the request (not started); it could not be kept to "
                 "send again");
        return;
    }
    if (stop)
        return; /* the edge has read enough of the request; its response (or reset) follows */
    char d[96];
    snprintf(d, sizeof(d), "the edge reset the stream with application error 0x%llx",
             (unsigned long long)app_code);
    complete(obj, SYNESIS_ERR_STREAM_RESET, app_code, UINT64_MAX, d);
}

static void req_close(void *obj, syn_qstream *s, uint64_t app_code, int reset) {
    (void)s;
    (void)reset;
    char d[96];
    snprintf(d, sizeof(d), "stream closed before the response ended (application error 0x%llx)",
             (unsigned long long)app_code);
    complete(obj, SYNESIS_ERR_STREAM_RESET, app_code, UINT64_MAX, d);
}

static const syn_stream_handler req_handler = {
    .data = req_data,
    .reset = req_reset,
    .close = req_close,
};

static void timeout_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    synesis_request *r = w->data;
    synesis_tunnel *t = r->t;
    syn_tunnel_enter(t);
    complete(r, SYNESIS_ERR_TIMEOUT, 0, SYN_APP_TIMEOUT, "no complete response within the timeout");
    if (t->qc)
        syn_qconn_schedule(t->qc);
    syn_tunnel_leave(t);
}

/* ---- the queue ---- */

void syn_requests_pump(synesis_tunnel *t) {
    /* During a 0-RTT attempt only the requests marked idempotent go, in order; the others wait
     * for Connected. */
    int early = !syn_tunnel_ready(t) && t->qc && syn_qconn_early(t->qc);
    if (syn_tunnel_edge_is_draining(t))
        return; /* held for the next connection */
    synesis_request *r = SYN_LIST_FIRST(&t->req.wait, synesis_request, link);
    while (r && (early || syn_tunnel_ready(t))) {
        if (early && !r->idempotent) {
            r = SYN_LIST_NEXT(r, synesis_request, link);
            continue;
        }
        syn_qstream *qs;
        int rv = early ? syn_qconn_open_stream_early(t->qc, 1, r, &qs)
                       : syn_qconn_open_stream(t->qc, 1, r, &qs);
        if (rv == SYNESIS_ERR_WOULD_BLOCK)
            return; /* wait for the edge to raise the stream limit */
        if (rv != 0) {
            complete(r, rv, 0, UINT64_MAX, "cannot open a stream");
            /* the callback may have changed the queue */
            r = SYN_LIST_FIRST(&t->req.wait, synesis_request, link);
            continue;
        }
        synesis_request *next = SYN_LIST_NEXT(r, synesis_request, link);
        r->early = early;
        unlink_req(t, r);
        r->live = 1;
        r->qs = qs;
        syn_list_push_front(&t->req.live, &r->link);
        t->stats.requests_sent++;
        t->stats.bytes_sent += r->len;
        /* The stream holds the bytes until they are acknowledged, and the request (for a
         * retry) until it completes; without memory for that, the stream alone owns them. */
        if (r->data && !r->body) {
            r->body = malloc(sizeof(*r->body));
            if (r->body) {
                *r->body = (req_body){1, r->data, r->len, r->release, r->release_ud};
                r->data = NULL;
                r->release = NULL;
            }
        }
        if (r->body) {
            r->body->refs++;
            rv = syn_qstream_write_nocopy(qs, r->body->data, r->len, body_release, r->body, 1);
        } else {
            const uint8_t *data = r->data;
            synesis_release_fn rel = r->release ? r->release : free_copy;
            void *rel_ud = r->release ? r->release_ud : NULL;
            r->data = NULL;
            r->release = NULL;
            rv = data ? syn_qstream_write_nocopy(qs, data, r->len, rel, rel_ud, 1)
                      : syn_qstream_write(qs, NULL, 0, 1);
        }
        if (rv != 0) {
            complete(r, rv, 0, SYN_APP_INTERNAL, "cannot queue the request");
            next = SYN_LIST_FIRST(&t->req.wait, synesis_request, link);
        }
        r = next;
    }
}

int syn_request_sent_early(const synesis_request *r) { return r->early; }

void syn_requests_moved(synesis_tunnel *t) {
    synesis_request *r = SYN_LIST_FIRST(&t->req.live, synesis_request, link);
    while (r) {
        synesis_request *next = SYN_LIST_NEXT(r, synesis_request, link);
        if (!r->idempotent || requeue(r, SYN_APP_CANCELLED) != 0) {
            complete(r, SYNESIS_ERR_EDGE_DRAINED, SYN_APP_MOVE, UINT64_MAX,
                     "the edge moved the device before the response ended (the request may have "
                     "run)");
            next = SYN_LIST_FIRST(&t->req.live, synesis_request, link);
        }
        r = next;
    }
    /* Those that wait (for a stream, or sent again) wait for the next connection. */
    SYN_LIST_FOREACH(r, &t->req.wait, synesis_request, link) {
        r->wait_for_connection = 1;
    }
}

void syn_requests_conn_lost_on(synesis_tunnel *t, const syn_qconn *qc, int err,
                               const char *detail) {
    synesis_request *r = SYN_LIST_FIRST(&t->req.live, synesis_request, link);
    while (r) {
        synesis_request *next = SYN_LIST_NEXT(r, synesis_request, link);
        if (r->qs && syn_qstream_conn(r->qs) == qc) {
            complete(r, err, 0, UINT64_MAX, detail);
            next = SYN_LIST_FIRST(&t->req.live, synesis_request, link);
        }
        r = next;
    }
}

void syn_requests_conn_lost(synesis_tunnel *t, int err, const char *detail) {
    char d[SYNESIS_DETAIL_MAX];
    if (err == SYNESIS_ERR_CONNECTION_LOST)
        snprintf(d, sizeof(d), "connection lost mid-request: %s", detail ? detail : "");
    else
        syn_copy_str(d, sizeof(d), detail ? detail : synesis_strerror(err));
    while (!syn_list_empty(&t->req.live))
        complete(SYN_LIST_FIRST(&t->req.live, synesis_request, link), err, 0, UINT64_MAX, d);
}

void syn_requests_fail_waiting(synesis_tunnel *t, int err, const char *detail, int all) {
    synesis_request *r = SYN_LIST_FIRST(&t->req.wait, synesis_request, link);
    while (r) {
        synesis_request *next = SYN_LIST_NEXT(r, synesis_request, link);
        if (all || !r->wait_for_connection) {
            complete(r, err, 0, UINT64_MAX, detail);
            /* the callback may have changed the queue */
            next = SYN_LIST_FIRST(&t->req.wait, synesis_request, link);
        }
        r = next;
    }
}

static int submit(synesis_tunnel *t, const void *data, size_t len, synesis_release_fn release,
                  void *release_ud, const synesis_request_options *opts, synesis_response_fn cb,
                  void *user_data, synesis_request **out) {
    if (out)
        *out = NULL;
    /* The caller's options under the evolution rule, into a full-size copy. */
    synesis_request_options o = {.struct_size = sizeof(o)};
    int rv = 0;
    char d[SYNESIS_DETAIL_MAX];
    if (opts && (rv = syn_struct_in(&o, sizeof(o), opts, "request options", d)) != 0 && t)
        syn_tunnel_log(t, SYNESIS_LOG_WARN, "request refused: %s", d);
    opts = &o;
    if (rv != 0) {
        /* opts refused */
    } else if (!t || !cb || (len && !data) || !(opts->timeout >= 0))
        rv = SYNESIS_ERR_INVALID_ARGUMENT;
    else if (syn_hold_dying(&t->hold))
        rv = SYNESIS_ERR_INVALID_STATE; /* from a callback after free() */
    else if (t->drain.on)
        rv = SYNESIS_ERR_DRAINING; /* synesis_tunnel_drain(): nothing new */
    else if (!syn_tunnel_ready(t) &&
             !(opts->queue_while_reconnecting && (t->state.kind == SYNESIS_STATE_CONNECTING ||
                                                  t->state.kind == SYNESIS_STATE_RECONNECTING ||
                                                  t->state.kind == SYNESIS_STATE_CONNECTED)))
        rv = SYNESIS_ERR_NOT_CONNECTED;
    else if (t->req.waiting >= t->cfg.max_queued_requests) {
        rv = SYNESIS_ERR_QUEUE_FULL;
        syn_tunnel_log(t, SYNESIS_LOG_DEBUG,
                       "request refused: %zu requests wait already (max_queued_requests)",
                       t->req.waiting);
    } else if (!release && len > t->cfg.max_queued_request_bytes - t->req.waiting_bytes) {
        rv = SYNESIS_ERR_QUEUE_FULL;
        syn_tunnel_log(t, SYNESIS_LOG_DEBUG,
                       "request of %zu bytes refused: %zu bytes wait already, at most %zu "
                       "(max_queued_request_bytes)",
                       len, t->req.waiting_bytes, t->cfg.max_queued_request_bytes);
    }
    synesis_request *r = NULL;
    if (rv == 0) {
        r = calloc(1, sizeof(*r));
        if (!r)
            rv = SYNESIS_ERR_NOMEM;
    }
    if (rv == 0 && len && !release) {
        void *copy = malloc(len);
        if (!copy) {
            free(r);
            rv = SYNESIS_ERR_NOMEM;
        } else {
            memcpy(copy, data, len);
            data = copy;
        }
    }
    if (rv != 0) {
        if (release)
            release(data, len, release_ud);
        return rv;
    }
    r->base.h = &req_handler;
    r->t = t;
    r->data = len ? data : NULL;
    r->len = len;
    r->release = release;
    r->release_ud = release_ud;
    if (!len && release) {
        release(data, 0, release_ud);
        r->release = NULL;
    }
    r->max_response = opts->max_response_size ? opts->max_response_size : t->cfg.max_response_size;
    r->wait_for_connection = opts->queue_while_reconnecting;
    r->idempotent = (opts->flags & SYNESIS_REQUEST_IDEMPOTENT) != 0;
    r->cb = cb;
    r->user_data = user_data;
    ev_timer_init(&r->timer, timeout_cb, opts->timeout > 0 ? opts->timeout : t->cfg.request_timeout,
                  0.);
    r->timer.data = r;
    ev_timer_start(t->loop, &r->timer);
    syn_list_push_back(&t->req.wait, &r->link);
    t->req.waiting++;
    r->queued_bytes = release ? 0 : len; /* our copy; a no-copy body is the application's */
    t->req.waiting_bytes += r->queued_bytes;
    if (out)
        *out = r;
    /* Streams are opened from the write pass, never from inside ngtcp2. */
    if (t->qc)
        syn_qconn_schedule(t->qc);
    return 0;
}

SYNESIS_API int synesis_tunnel_request(synesis_tunnel *t, const void *data, size_t len,
                                       const synesis_request_options *opts, synesis_response_fn cb,
                                       void *user_data, synesis_request **out) {
    return submit(t, data, len, NULL, NULL, opts, cb, user_data, out);
}

SYNESIS_API int synesis_tunnel_request_nocopy(synesis_tunnel *t, const void *data, size_t len,
                                              synesis_release_fn release, void *release_user_data,
                                              const synesis_request_options *opts,
                                              synesis_response_fn cb, void *user_data,
                                              synesis_request **out) {
    if (!release) {
        if (out)
            *out = NULL;
        return SYNESIS_ERR_INVALID_ARGUMENT;
    }
    return submit(t, data, len, release, release_user_data, opts, cb, user_data, out);
}

SYNESIS_API int synesis_request_cancel(synesis_request *req) {
    if (!req)
        return SYNESIS_ERR_INVALID_ARGUMENT;
    synesis_tunnel *t = req->t;
    syn_tunnel_enter(t);
    complete(req, SYNESIS_ERR_CANCELLED, 0, SYN_APP_CANCELLED, "cancelled by the application");
    if (t->qc)
        syn_qconn_schedule(t->qc);
    syn_tunnel_leave(t);
    return 0;
}

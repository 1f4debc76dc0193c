/* The streaming API: bidirectional streams with backpressure both ways. */
#include "synesis/stream.h"

#include "tunnel_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

SYNESIS_API void synesis_stream_callbacks_init_sized(synesis_stream_callbacks *cb, size_t size) {
    synesis_stream_callbacks d = {.struct_size = sizeof(d)};
    syn_struct_init(cb, size, &d, sizeof(d));
}

struct synesis_stream {
    syn_tobj base;
    synesis_tunnel *t;
    syn_link link; /* on t->streams.wait, or t->streams.live once live */
    int live;
    syn_qstream *qs;
    synesis_stream_callbacks cb;
    void *user_data;

    /* Bytes written before the stream could open (bounded by the send buffer). */
    uint8_t *pre;
    size_t pre_len;
    int fin_requested;
    int want_writable;

    /* Receive side. */
    int paused;
    uint8_t *held;
    size_t held_len, held_cap;
    int held_fin;
    int end_delivered;
    /* Frames of ours on the stack that still use the object; dying once on_close runs or has run
     * (then the last frame frees it). */
    syn_hold hold;
};

static void s_free(synesis_stream *s) {
    free(s->pre);
    free(s->held);
    free(s);
}

/* Application callbacks may close the stream; the object is freed only when the last frame of
 * ours that uses it lets go. */
static void s_hold(synesis_stream *s) { syn_hold_enter(&s->hold); }
static int s_release(synesis_stream *s) {
    if (syn_hold_leave(&s->hold) && syn_hold_dying(&s->hold)) {
        s_free(s);
        return 1;
    }
    return 0;
}

static void unlink_stream(synesis_tunnel *t, synesis_stream *s) {
    syn_list_remove(s->live ? &t->streams.live : &t->streams.wait, &s->link);
}

/* Ends the stream: on_close once (with detail, NULL = ""), then free. reset_code != UINT64_MAX
 * resets the QUIC stream. */
static void close_stream(synesis_stream *s, int status, uint64_t app_code, uint64_t reset_code,
                         const char *detail) {
    if (syn_hold_dying(&s->hold))
        return;
    s_hold(s);
    (void)syn_hold_release(&s->hold); /* dying: freed as the last frame lets go */
    synesis_tunnel *t = s->t;
    unlink_stream(t, s);
    if (s->qs) {
        syn_qstream_set_user(s->qs, NULL);
        if (s->held_len)
            syn_qstream_consume(s->qs, s->held_len); /* held bytes are dropped: free the credit */
        if (reset_code != UINT64_MAX)
            syn_qstream_shutdown(s->qs, reset_code);
        s->qs = NULL;
    }
    syn_tunnel_enter(t);
    if (s->cb.on_close)
        s->cb.on_close(s, status, app_code, detail ? detail : "", s->user_data);
    s_release(s);
    syn_tunnel_leave(t);
}

static size_t buffered(const synesis_stream *s) {
    return s->pre_len + (s->qs ? (size_t)syn_qstream_unacked(s->qs) : 0);
}

/* The caller holds s. */
static void deliver(synesis_stream *s, const uint8_t *data, size_t len) {
    s->t->stats.bytes_received += len;
    /* Credit returns only as the application consumes: these bytes are consumed now. Returned
     * before on_data, which may reset or close the stream (the peer hears of it on the next write
     * pass anyway). */
    if (s->qs)
        syn_qstream_consume(s->qs, len);
    if (s->cb.on_data)
        s->cb.on_data(s, data, len, s->user_data);
}

static void stream_data(void *obj, syn_qstream *qs, const uint8_t *data, size_t len, int fin) {
    (void)qs;
    synesis_stream *s = obj;
    synesis_tunnel *t = s->t;
    syn_tunnel_enter(t);
    s_hold(s);
    if (s->paused) {
        uint8_t *n =
            len ? syn_grow(s->held, &s->held_cap, s->held_len + len, 1, 16384, 0) : s->held;
        if (len && !n) {
            close_stream(s, SYNESIS_ERR_NOMEM, 0, SYN_APP_INTERNAL,
                         "out of memory for the data held while paused");
            s_release(s);
            syn_tunnel_leave(t);
            return;
        }
        s->held = n;
        if (len)
            memcpy(s->held + s->held_len, data, len);
        s->held_len += len;
        s->held_fin |= fin;
    } else {
        if (len)
            deliver(s, data, len);
        if (fin && !syn_hold_dying(&s->hold) && !syn_hold_dying(&t->hold)) {
            s->end_delivered = 1;
            if (s->cb.on_end)
                s->cb.on_end(s, s->user_data);
        }
    }
    s_release(s);
    syn_tunnel_leave(t);
}

static void stream_reset(void *obj, syn_qstream *qs, uint64_t app_code, int stop) {
    (void)qs;
    /* Either way the stream cannot carry on as the application expects. */
    char d[112];
    snprintf(d, sizeof(d), "the edge %s with application error 0x%llx",
             stop ? "stopped reading the stream (STOP_SENDING)" : "reset the stream",
             (unsigned long long)app_code);
    close_stream(obj, SYNESIS_ERR_STREAM_RESET, app_code, SYN_APP_CANCELLED, d);
}

static void stream_acked(void *obj, syn_qstream *qs) {
    (void)qs;
    synesis_stream *s = obj;
    if (s->want_writable && buffered(s) < s->t->cfg.stream_send_buffer) {
        s->want_writable = 0;
        synesis_tunnel *t = s->t;
        syn_tunnel_enter(t);
        s_hold(s);
        if (s->cb.on_writable)
            s->cb.on_writable(s, s->user_data);
        s_release(s);
        syn_tunnel_leave(t);
    }
}

static void stream_close(void *obj, syn_qstream *qs, uint64_t app_code, int reset) {
    synesis_stream *s = obj;
    /* Held bytes count against the connection's window: return it while the QUIC stream exists
     * (they are delivered on resume, or dropped). */
    if (s->held_len)
        syn_qstream_consume(qs, s->held_len);
    s->qs = NULL; /* the driver frees it after this */
    if (s->paused && (s->held_len || s->held_fin) && !reset) {
        /* Everything arrived while paused: the application still gets it on resume. */
        return;
    }
    if (reset && app_code != SYN_APP_NO_ERROR) {
        char d[96];
        snprintf(d, sizeof(d), "the edge reset the stream with application error 0x%llx",
                 (unsigned long long)app_code);
        close_stream(s, SYNESIS_ERR_STREAM_RESET, app_code, UINT64_MAX, d);
    } else {
        close_stream(s, 0, 0, UINT64_MAX, NULL);
    }
}

static const syn_stream_handler stream_handler = {
    .data = stream_data,
    .reset = stream_reset,
    .acked = stream_acked,
    .close = stream_close,
};

void syn_streams_pump(synesis_tunnel *t) {
    while (!syn_list_empty(&t->streams.wait) && syn_tunnel_ready(t)) {
        synesis_stream *s = SYN_LIST_FIRST(&t->streams.wait, synesis_stream, link);
        syn_qstream *qs;
        int rv = syn_qconn_open_stream(t->qc, 1, s, &qs);
        if (rv == SYNESIS_ERR_WOULD_BLOCK)
            return;
        if (rv != 0) {
            close_stream(s, rv, 0, UINT64_MAX, "cannot open a stream");
            continue;
        }
        unlink_stream(t, s);
        s->live = 1;
        syn_list_push_front(&t->streams.live, &s->link);
        s->qs = qs;
        syn_qstream_set_auto_consume(qs, 0);
        t->stats.streams_opened++;
        if (s->pre_len || s->fin_requested) {
            rv = syn_qstream_write(qs, s->pre, s->pre_len, s->fin_requested);
            free(s->pre);
            s->pre = NULL;
            s->pre_len = 0;
            if (rv != 0)
                close_stream(s, rv, 0, SYN_APP_INTERNAL, "cannot queue the stream's data");
        }
    }
}

void syn_streams_fail_all(synesis_tunnel *t, int err, const char *detail) {
    while (!syn_list_empty(&t->streams.live))
        close_stream(SYN_LIST_FIRST(&t->streams.live, synesis_stream, link), err, 0, UINT64_MAX,
                     detail);
    while (!syn_list_empty(&t->streams.wait))
        close_stream(SYN_LIST_FIRST(&t->streams.wait, synesis_stream, link), err, 0, UINT64_MAX,
                     detail);
}

SYNESIS_API int synesis_tunnel_open_stream(synesis_tunnel *t, const synesis_stream_callbacks *cb,
                                           void *user_data, synesis_stream **out) {
    if (out)
        *out = NULL;
    if (!t || !out)
        return SYNESIS_ERR_INVALID_ARGUMENT;
    /* The caller's callbacks under the evolution rule, into a full-size copy. */
    synesis_stream_callbacks c = {.struct_size = sizeof(c)};
    char d[SYNESIS_DETAIL_MAX];
    if (cb && syn_struct_in(&c, sizeof(c), cb, "stream callbacks", d) != 0) {
        syn_tunnel_log(t, SYNESIS_LOG_WARN, "stream refused: %s", d);
        return SYNESIS_ERR_INVALID_ARGUMENT;
    }
    if (!syn_tunnel_ready(t))
        return SYNESIS_ERR_NOT_CONNECTED;
    synesis_stream *s = calloc(1, sizeof(*s));
    if (!s)
        return SYNESIS_ERR_NOMEM;
    s->base.h = &stream_handler;
    s->t = t;
    s->cb = c;
    s->user_data = user_data;
    syn_list_push_back(&t->streams.wait, &s->link);
    *out = s;
    syn_qconn_schedule(t->qc);
    return 0;
}

SYNESIS_API int synesis_stream_write(synesis_stream *s, const void *data, size_t len,
                                     size_t *accepted) {
    if (accepted)
        *accepted = 0;
    if (!s || (len && !data))
        return SYNESIS_ERR_INVALID_ARGUMENT;
    if (s->fin_requested || syn_hold_dying(&s->hold))
        return SYNESIS_ERR_INVALID_STATE;
    size_t limit = s->t->cfg.stream_send_buffer;
    size_t used = buffered(s);
    size_t room = used < limit ? limit - used : 0;
    size_t n = len < room ? len : room;
    if (len && !n) {
        s->want_writable = 1;
        return SYNESIS_ERR_WOULD_BLOCK;
    }
    if (n < len)
        s->want_writable = 1;
    if (!n)
        return 0;
    int rv;
    if (s->qs) {
        rv = syn_qstream_write(s->qs, data, n, 0);
    } else {
        uint8_t *p = realloc(s->pre, s->pre_len + n);
        rv = p ? 0 : SYNESIS_ERR_NOMEM;
        if (p) {
            memcpy(p + s->pre_len, data, n);
            s->pre = p;
            s->pre_len += n;
        }
    }
    if (rv != 0)
        return rv;
    s->t->stats.bytes_sent += n;
    if (accepted)
        *accepted = n;
    return 0;
}

SYNESIS_API int synesis_stream_finish(synesis_stream *s) {
    if (!s)
        return SYNESIS_ERR_INVALID_ARGUMENT;
    if (s->fin_requested || syn_hold_dying(&s->hold))
        return SYNESIS_ERR_INVALID_STATE;
    s->fin_requested = 1;
    if (s->qs)
        return syn_qstream_write(s->qs, NULL, 0, 1);
    return 0;
}

SYNESIS_API int synesis_stream_reset(synesis_stream *s, uint64_t app_error_code) {
    if (!s || app_error_code > SYNESIS_APP_ERROR_CODE_MAX)
        return SYNESIS_ERR_INVALID_ARGUMENT;
    if (syn_hold_dying(&s->hold))
        return SYNESIS_ERR_INVALID_STATE;
    synesis_tunnel *t = s->t;
    syn_tunnel_enter(t);
    close_stream(s, SYNESIS_ERR_CANCELLED, app_error_code, app_error_code,
                 "reset by the application");
    /* s may be gone now */
    if (t->qc)
        syn_qconn_schedule(t->qc);
    syn_tunnel_leave(t);
    return 0;
}

SYNESIS_API void synesis_stream_pause(synesis_stream *s) {
    if (s)
        s->paused = 1;
}

SYNESIS_API void synesis_stream_resume(synesis_stream *s) {
    if (!s || !s->paused || syn_hold_dying(&s->hold))
        return;
    s->paused = 0;
    synesis_tunnel *t = s->t;
    syn_tunnel_enter(t);
    s_hold(s);
    if (s->held_len) {
        /* Deliver what was held; the callback may pause again or close. */
        uint8_t *held = s->held;
        size_t n = s->held_len;
        s->held = NULL;
        s->held_len = s->held_cap = 0;
        t->stats.bytes_received += n;
        if (s->qs) /* as in deliver(); without qs, stream_close() returned the credit */
            syn_qstream_consume(s->qs, n);
        if (s->cb.on_data)
            s->cb.on_data(s, held, n, s->user_data);
        free(held);
    }
    if (!syn_hold_dying(&s->hold) && s->held_fin && !s->end_delivered &&
        !syn_hold_dying(&t->hold)) {
        s->end_delivered = 1;
        if (s->cb.on_end)
            s->cb.on_end(s, s->user_data);
    }
    if (!syn_hold_dying(&s->hold) && !s->qs && s->live && !syn_hold_dying(&t->hold))
        close_stream(s, 0, 0, UINT64_MAX, NULL); /* the QUIC stream ended while we were paused */
    s_release(s);
    if (t->qc)
        syn_qconn_schedule(t->qc);
    syn_tunnel_leave(t);
}

SYNESIS_API size_t synesis_stream_buffered(const synesis_stream *s) { return s ? buffered(s) : 0; }

/* Response and stream data delivered to the request and stream modules (src/request.c,
 * src/stream.c) in fuzzer-chosen chunks, with FINs, resets, STOP_SENDING, acknowledgements and
 * closes in any order a peer can produce, and an application that reacts from its callbacks
 * (pauses, resumes, writes, finishes, resets, cancels, opens more).
 *
 * Requests and streams are opened through the public API on a live connection (live.h): their
 * QUIC streams are real (ngtcp2 opened them, the request bytes are queued on them). What the peer
 * does is played through the driver's own stream callbacks (qconn.h test calls), exactly as ngtcp2
 * would call them after reading packets: the modules see the same calls in the same states.
 *
 * Input: a program of one-byte operations (low 3 bits) with parameters:
 *   0 open: bit 3 a stream (else a request); then a behaviour byte (what its callbacks do) and,
 *     for a request, its maximum response size
 *   1 data: object, bytes (fz_data)    2 the same with FIN        5 FIN alone
 *   3 RESET_STREAM: object, code       4 STOP_SENDING: object, code
 *   6 close (the QUIC stream ends): object, code, or acknowledgement (bit 3): object, bytes
 *   7 the application, by bits 3-5: cancel, write, finish, reset, pause, resume, a write pass
 * Objects are chosen by the operation's high bits.
 * Checked: each request's callback runs once; each stream's on_close runs once and nothing runs
 * after it; nothing fails for want of memory; a successful response is within its maximum and is
 * exactly the bytes played; a stream's application gets the bytes played in order, each once, all
 * of them before on_end; once everything is over, the connection holds no stream.
 */
#include "fuzz.h"
#include "live.h"

#include "qconn.h"
#include "qconn_test.h"
#include "synesis/request.h"
#include "synesis/stream.h"

#define MAX_OBJ 16

typedef struct fz_obj {
    int used, is_stream;
    synesis_request *req;
    synesis_stream *str;
    uint8_t beh;
    size_t max_response;
    int calls; /* request callbacks / stream on_close calls */
    int ended; /* the object is gone (callback ran, or closed) */
    syn_qstream *qs;
    int fin, reset, closed; /* the peer's side of its QUIC stream, as played */
    /* Bytes played to the object (while its QUIC stream was still its own), and how many of
     * them the application got so far: they must arrive whole, in order, exactly once. */
    size_t nplayed, ngot;
    int overflow;          /* more was played than `played` holds: not checked */
    uint8_t played[70000]; /* last: a new slot clears the fields above only */
} fz_obj;

static fz_live L;
static fz_obj objs[MAX_OBJ];
static int in_input;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fz_live_options o = {.stream_send_buffer = 4096};
    fz_live_init(&L, &o);
    return 0;
}

static fz_obj *slot(void) {
    for (int i = 0; i < MAX_OBJ; i++)
        if (!objs[i].used) {
            memset(&objs[i], 0, offsetof(fz_obj, played));
            objs[i].used = 1;
            return &objs[i];
        }
    return NULL;
}

static void open_object(int is_stream, uint8_t beh, size_t max_response);

/* ---- the application's callbacks ---- */

static void on_response(synesis_tunnel *t, synesis_request *req, const synesis_response *r,
                        void *ud) {
    (void)t;
    fz_obj *o = ud;
    FUZZ_CHECK(o->used && !o->is_stream && o->req == req);
    FUZZ_CHECK(o->calls == 0);
    o->calls++;
    o->ended = 1;
    FUZZ_CHECK(r->detail != NULL);
    FUZZ_CHECK(r->status != SYNESIS_ERR_NOMEM); /* nothing here runs out of memory */
    if (r->status == 0) {
        FUZZ_CHECK(r->len <= o->max_response && (r->len == 0 || r->data != NULL));
        FUZZ_CHECK(o->fin);
        if (!o->overflow)
            FUZZ_CHECK(r->len == o->nplayed && (!r->len || !memcmp(r->data, o->played, r->len)));
    } else
        FUZZ_CHECK(r->len == 0);
    if (!in_input)
        return;
    if (o->beh & 1) /* cancel another request from inside this callback */
        for (int i = 0; i < MAX_OBJ; i++)
            if (objs[i].used && !objs[i].is_stream && !objs[i].ended) {
                synesis_request_cancel(objs[i].req);
                break;
            }
    if (o->beh & 2)
        open_object(0, (uint8_t)(o->beh & ~3), 64);
}

static void s_data(synesis_stream *s, const uint8_t *data, size_t len, void *ud) {
    fz_obj *o = ud;
    FUZZ_CHECK(o->used && o->is_stream && o->str == s && !o->ended);
    FUZZ_CHECK(len > 0 && data != NULL);
    if (!o->overflow) {
        FUZZ_CHECK(o->ngot + len <= o->nplayed);
        FUZZ_CHECK(memcmp(o->played + o->ngot, data, len) == 0);
    }
    o->ngot += len;
    if (o->beh & 1)
        synesis_stream_pause(s);
    if (o->beh & 4) {
        size_t acc = 0;
        (void)synesis_stream_write(s, data, len, &acc);
        FUZZ_CHECK(acc <= len);
    }
    if (o->beh & 8)
        (void)synesis_stream_finish(s);
    if (o->beh & 2)
        (void)synesis_stream_reset(s, 7); /* on_close runs here; o->ended afterwards */
}

static void s_end(synesis_stream *s, void *ud) {
    fz_obj *o = ud;
    FUZZ_CHECK(o->used && o->str == s && !o->ended);
    FUZZ_CHECK(o->fin && (o->overflow || o->ngot == o->nplayed));
    if (o->beh & 16)
        (void)synesis_stream_finish(s);
    if (o->beh & 32)
        (void)synesis_stream_reset(s, 0);
}

static void s_writable(synesis_stream *s, void *ud) {
    fz_obj *o = ud;
    FUZZ_CHECK(o->used && o->str == s && !o->ended);
    if (o->beh & 64)
        (void)synesis_stream_write(s, "w", 1, NULL);
}

static void s_close(synesis_stream *s, int status, uint64_t app_code, const char *detail,
                    void *ud) {
    (void)detail;
    (void)app_code;
    fz_obj *o = ud;
    FUZZ_CHECK(o->used && o->str == s && !o->ended);
    FUZZ_CHECK(o->calls == 0);
    FUZZ_CHECK(status <= 0 && status != SYNESIS_ERR_NOMEM);
    o->calls++;
    o->ended = 1;
    if (in_input && (o->beh & 128))
        open_object(0, 0, 16);
}

static const synesis_stream_callbacks stream_cb = {
    .struct_size = sizeof(synesis_stream_callbacks),
    .on_data = s_data,
    .on_end = s_end,
    .on_writable = s_writable,
    .on_close = s_close,
};

static void open_object(int is_stream, uint8_t beh, size_t max_response) {
    fz_obj *o = slot();
    if (!o)
        return;
    o->is_stream = is_stream;
    o->beh = beh;
    int rv;
    if (is_stream) {
        rv = synesis_tunnel_open_stream(L.t, &stream_cb, o, &o->str);
    } else {
        synesis_request_options opts;
        synesis_request_options_init(&opts);
        opts.max_response_size = max_response;
        o->max_response = max_response ? max_response : L.t->cfg.max_response_size;
        rv = synesis_tunnel_request(L.t, "req", 3, &opts, on_response, o, &o->req);
    }
    if (rv != 0)
        o->used = 0;
}

/* Opens what waits for a stream (as the write pass would), then finds the new QUIC streams. */
static void pump(void) {
    syn_requests_pump(L.t);
    syn_streams_pump(L.t);
    if (!L.t->qc)
        return;
    /* Ended objects are skipped: their pointer may now be another object's (memory reused). */
    for (syn_qstream *s = syn_qconn_streams(L.t->qc); s; s = syn_qstream_next(s))
        for (int i = 0; i < MAX_OBJ; i++)
            if (objs[i].used && !objs[i].ended && !objs[i].qs && syn_qstream_user(s) &&
                syn_qstream_user(s) ==
                    (objs[i].is_stream ? (void *)objs[i].str : (void *)objs[i].req))
                objs[i].qs = s;
}

/* Objects with a QUIC stream still open (as played). */
static fz_obj *pick_open(unsigned pick) {
    fz_obj *c[MAX_OBJ];
    int n = 0;
    for (int i = 0; i < MAX_OBJ; i++)
        if (objs[i].used && objs[i].qs && !objs[i].closed)
            c[n++] = &objs[i];
    return n ? c[pick % (unsigned)n] : NULL;
}

static fz_obj *pick_alive(unsigned pick) {
    fz_obj *c[MAX_OBJ];
    int n = 0;
    for (int i = 0; i < MAX_OBJ; i++)
        if (objs[i].used && !objs[i].ended)
            c[n++] = &objs[i];
    return n ? c[pick % (unsigned)n] : NULL;
}

static void app_op(unsigned what, unsigned pick, fz_reader *r) {
    if (what == 6) {
        syn_qconn_flush(L.t->qc); /* a write pass: request bytes go out, streams open */
        pump();
        return;
    }
    fz_obj *o = pick_alive(pick);
    uint64_t code = fz_val(r) & SYN_APP_CODE_MAX;
    if (!o)
        return;
    if (!o->is_stream) {
        if (what == 0)
            FUZZ_CHECK(synesis_request_cancel(o->req) == 0);
        return;
    }
    switch (what) {
    case 1: {
        static const uint8_t junk[8192];
        size_t acc = 0;
        int rv = synesis_stream_write(o->str, junk, (size_t)(code % sizeof(junk)), &acc);
        FUZZ_CHECK(rv == 0 || rv == SYNESIS_ERR_WOULD_BLOCK || rv == SYNESIS_ERR_INVALID_STATE);
        break;
    }
    case 2:
        (void)synesis_stream_finish(o->str);
        break;
    case 0:
    case 3:
        FUZZ_CHECK(synesis_stream_reset(o->str, code) == 0);
        break;
    case 4:
        synesis_stream_pause(o->str);
        break;
    default:
        synesis_stream_resume(o->str);
        break;
    }
}

static void peer_op(unsigned kind, unsigned pick, fz_reader *r) {
    size_t len = 0;
    const uint8_t *p = NULL;
    uint64_t v = 0;
    if (kind == 1 || kind == 2) {
        p = fz_data(r, &len);
    } else if (kind != 5) {
        v = fz_val(r);
    }
    fz_obj *o = pick_open(pick & 15);
    if (!o)
        return;
    syn_qstream *s = o->qs;
    switch (kind) {
    case 1:
    case 2:
    case 5: {
        int fin = kind != 1;
        if (o->fin || o->reset || (!fin && !len))
            return;
        o->fin = fin;
        if (syn_qstream_user(s) == (o->is_stream ? (void *)o->str : (void *)o->req)) {
            if (o->nplayed + len > sizeof(o->played))
                o->overflow = 1;
            else if (len)
                memcpy(o->played + o->nplayed, p, len);
            o->nplayed += len;
        }
        (void)syn_qconn_test_stream_data(s, p, len, fin);
        return;
    }
    case 3:
        if (o->fin || o->reset)
            return;
        o->reset = 1;
        (void)syn_qconn_test_stream_reset(s, v & SYN_APP_CODE_MAX, 0);
        return;
    case 4:
        (void)syn_qconn_test_stream_reset(s, v & SYN_APP_CODE_MAX, 1);
        return;
    default:
        if (pick & 16) {
            /* Acknowledgement of sent bytes (never beyond what was sent). */
            uint64_t left = syn_qstream_sent(s) - syn_qstream_acked(s);
            uint64_t n = v < left ? v : left;
            if (n)
                (void)syn_qconn_test_stream_acked(s, syn_qstream_acked(s), n);
            return;
        }
        o->closed = 1;
        (void)syn_qconn_test_stream_close(s, v & SYN_APP_CODE_MAX,
                                          !(o->fin && (v & SYN_APP_CODE_MAX) == 0));
        return;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_live_next_input(&L, 4096);
    /* The played acknowledgements never reach ngtcp2: once what write passes sent fills its
     * congestion window, nothing more would be sent (and so nothing acknowledged). */
    if (ngtcp2_conn_get_cwnd_left(syn_qconn_ngtcp2(L.t->qc)) < 2400)
        fz_live_reconnect(&L);
    for (int i = 0; i < MAX_OBJ; i++)
        objs[i].used = 0;
    syn_qconn *qc = L.t->qc;
    in_input = 1;
    fz_reader r = {data, size};
    while (!fz_end(&r) && L.t->qc == qc) {
        uint8_t op = fz_u8(&r);
        unsigned kind = op & 7;
        if (kind == 0) {
            uint8_t beh = fz_u8(&r);
            size_t maxr = (op & 8) ? 0 : (size_t)fz_val(&r);
            open_object((op & 8) != 0, beh, maxr);
            pump();
        } else if (kind == 7) {
            app_op((op >> 3) & 7, op >> 6, &r);
        } else {
            peer_op(kind, op >> 3, &r);
        }
    }
    in_input = 0;
    FUZZ_CHECK(L.t->qc == qc); /* nothing here may end the connection */
    /* The application lets go of everything; the QUIC streams then close. */
    for (int i = 0; i < MAX_OBJ; i++) {
        fz_obj *o = &objs[i];
        if (!o->used || o->ended)
            continue;
        if (o->is_stream)
            FUZZ_CHECK(synesis_stream_reset(o->str, 0) == 0);
        else
            FUZZ_CHECK(synesis_request_cancel(o->req) == 0);
    }
    for (int i = 0; i < MAX_OBJ; i++) {
        fz_obj *o = &objs[i];
        if (!o->used)
            continue;
        FUZZ_CHECK(o->ended && o->calls == 1);
        if (o->qs && !o->closed)
            (void)syn_qconn_test_stream_close(o->qs, SYN_APP_CANCELLED, 1);
    }
    FUZZ_CHECK(syn_qconn_streams(qc) == NULL);
    FUZZ_CHECK(syn_list_empty(&L.t->req.live) && syn_list_empty(&L.t->req.wait));
    FUZZ_CHECK(syn_list_empty(&L.t->streams.live) && syn_list_empty(&L.t->streams.wait));
    return 0;
}

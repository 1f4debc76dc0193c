/* The device side of heartbeats (src/heartbeat.c): the parser of the edge's reports (0x02, u32
 * length, JSON, FIN, on edge-initiated unidirectional streams) and the heartbeat outcomes the
 * reports and the heartbeat streams' fates produce (delivered, lost, refused by STOP_SENDING or
 * by a report, reported refused after delivery).
 *
 * Events reach the tunnel through the driver's own stream callbacks (qconn.h test calls) on the
 * tunnel side of a live connection (live.h). Heartbeats are sent for real by the tunnel's
 * heartbeat timer callback (the frame is built and queued on a real QUIC stream); their outcomes
 * and the report streams are played by the fuzzer.
 *
 * Input: a program of one-byte operations (low 3 bits) with parameters:
 *   0 the edge opens a stream (bit 3: bidirectional, which the device refuses)
 *   1 report data: stream, bytes (fz_data)   2 the same with FIN     5 FIN alone
 *   3 RESET_STREAM: code                      4 STOP_SENDING: code
 *   6 close: stream, code
 *   7 heartbeats, by bits 3-4: 0 send one; 1 delivered (all acknowledged, closed);
 *     2 refused by STOP_SENDING BAD_FRAME (or code); 3 lost (reset and closed)
 * Streams and heartbeats are chosen by the operation's high bits.
 * Checked: a heartbeat gets at most two results, the second one only "refused" after "delivered".
 */
#include "fuzz.h"
#include "live.h"

#include "qconn.h"
#include "qconn_test.h"

#define MAX_STREAMS 8
#define MAX_HB 8

typedef struct fz_stream {
    syn_qstream *s;
    int fin, reset;
} fz_stream;

static fz_live L;
static uint64_t next_index = 1u << 20;

/* Results per heartbeat sequence (a small window of the newest). */
#define SEQ_WINDOW 256
static struct {
    uint64_t seq;
    int results, last_status;
} seen[SEQ_WINDOW];

static void on_result(synesis_tunnel *t, const synesis_heartbeat_info *info, void *ud) {
    (void)t;
    (void)ud;
    FUZZ_CHECK(info->detail != NULL);
    if (info->size == 0)
        return; /* a report naming a heartbeat the tunnel does not remember (never sent, or too
                   old): counted, with nothing but the sequence, and not tracked here */
    int i = (int)(info->sequence % SEQ_WINDOW);
    if (seen[i].seq != info->sequence) {
        seen[i].seq = info->sequence;
        seen[i].results = 0;
    }
    if (seen[i].results == 1)
        FUZZ_CHECK(seen[i].last_status == 0 && info->status == SYNESIS_ERR_HEARTBEAT_REFUSED);
    FUZZ_CHECK(seen[i].results < 2);
    seen[i].results++;
    seen[i].last_status = info->status;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    static const synesis_tunnel_callbacks cb = {.struct_size = sizeof(synesis_tunnel_callbacks),
                                                .on_heartbeat_result = on_result};
    fz_live_options o = {.heartbeat_interval = 3600, .callbacks = &cb};
    fz_live_init(&L, &o);
    return 0;
}

/* The tunnel's heartbeat streams (local unidirectional ones with an owner). */
static size_t heartbeat_streams(syn_qconn *qc, syn_qstream **out, size_t max) {
    size_t n = 0;
    for (syn_qstream *s = syn_qconn_streams(qc); s && n < max; s = syn_qstream_next(s))
        if (syn_qstream_user(s) && (syn_qstream_id(s) & 3) == 2)
            out[n++] = s;
    return n;
}

static int heartbeat_op(syn_qconn *qc, unsigned what, unsigned pick, fz_reader *r) {
    if (what == 0) {
        /* The heartbeat timer's callback, as libev would run it. */
        ev_invoke(L.loop, &L.t->hb.timer, EV_TIMER);
        if (L.t->qc != qc)
            return 1;
        syn_qconn_flush(qc); /* the frame goes out (the edge reads it at the next reconnect) */
        return L.t->qc != qc;
    }
    syn_qstream *hb[MAX_HB];
    size_t n = heartbeat_streams(qc, hb, MAX_HB);
    uint64_t code = fz_val(r) & SYN_APP_CODE_MAX;
    if (!n)
        return 0;
    syn_qstream *s = hb[pick % n];
    if (what == 1) {
        /* Everything sent is acknowledged, FIN included: the stream closes cleanly. */
        if (syn_qconn_test_stream_acked(s, 0, syn_qstream_sent(s)))
            return 1;
        return syn_qconn_test_stream_close(s, 0, 0);
    }
    if (what == 2)
        return syn_qconn_test_stream_reset(s, code ? code : SYN_APP_BAD_FRAME, 1);
    if (syn_qconn_test_stream_reset(s, code, 1))
        return 1;
    return syn_qconn_test_stream_close(s, code, 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_live_next_input(&L, 2048);
    syn_qconn *qc = L.t->qc;
    fz_stream st[MAX_STREAMS];
    size_t n = 0;
    int gone = 0;
    fz_reader r = {data, size};
    while (!fz_end(&r) && !gone) {
        uint8_t op = fz_u8(&r);
        unsigned kind = op & 7, pick = op >> 3;
        if (kind == 0) {
            if (n == MAX_STREAMS)
                continue;
            uint64_t i = next_index++;
            int64_t id = (int64_t)(i * 4 + ((op & 8) ? 1 : 3)); /* server-initiated */
            syn_qstream *s = NULL;
            gone = syn_qconn_test_peer_stream(qc, id, &s);
            if (!gone && s)
                st[n++] = (fz_stream){.s = s};
            continue;
        }
        if (kind == 7) {
            gone = heartbeat_op(qc, pick & 3, pick >> 2, &r);
            continue;
        }
        if (!n)
            continue;
        size_t i = pick % n;
        fz_stream *f = &st[i];
        switch (kind) {
        case 1:
        case 2:
        case 5: {
            size_t len = 0;
            const uint8_t *p = NULL;
            if (kind != 5)
                p = fz_data(&r, &len);
            int fin = kind != 1;
            if (f->fin || f->reset || (!fin && !len))
                break;
            gone = syn_qconn_test_stream_data(f->s, p, len, fin);
            f->fin = fin;
            break;
        }
        case 3:
        case 4: {
            uint64_t code = fz_val(&r) & SYN_APP_CODE_MAX;
            if (kind == 3 && (f->fin || f->reset))
                break;
            gone = syn_qconn_test_stream_reset(f->s, code, kind == 4);
            if (kind == 3)
                f->reset = 1;
            break;
        }
        case 6: {
            uint64_t code = fz_val(&r) & SYN_APP_CODE_MAX;
            gone = syn_qconn_test_stream_close(f->s, code, !f->fin || code != 0);
            st[i] = st[--n];
            break;
        }
        default:
            break;
        }
    }
    while (!gone && n) {
        gone = syn_qconn_test_stream_close(st[n - 1].s, SYN_APP_CANCELLED, 1);
        n--;
    }
    if (!gone && L.t->qc == qc)
        syn_qconn_flush(qc);
    return 0;
}

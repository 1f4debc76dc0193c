/* The edge's stream parsers (src/edge/edge.c), fed by a fuzzer playing the device's streams.
 *
 * Built twice: fuzz_edge_heartbeat opens unidirectional streams (heartbeat frames: 0x01, u32
 * length, JSON, then the JSON checks; refusals by STOP_SENDING or by a report stream back to the
 * device); fuzz_edge_command (FUZZ_EDGE_BIDI) opens bidirectional ones (requests: the SRC / SLEEP
 * / RESET command grammar, echo, the per-connection buffer bound).
 *
 * Events reach the edge through the driver's own stream callbacks (qconn.h test calls) on the
 * edge side of a live connection (live.h), so the edge sees exactly what ngtcp2 would hand it:
 * data in fuzzer-chosen chunks, FIN, RESET_STREAM, STOP_SENDING and the stream's close, in any
 * order a peer can produce. ngtcp2 does not know these streams: what the edge writes on them is
 * queued and never sent (so acknowledgements, and SRC data, which waits for send credit, are not
 * reached here; tests/fuzz/fuzz_client_packet.c drives real packets).
 *
 * Input: a program of one-byte operations (low 3 bits) with parameters:
 *   0 open a stream          1 data: stream, bytes (fz_data)   2 data with FIN
 *   3 RESET_STREAM: code     4 STOP_SENDING: code              5 FIN alone
 *   6 close: stream, code    7 a write pass (reports go out)
 * The stream is chosen by the operation's high bits among the open ones.
 */
#include "fuzz.h"
#include "live.h"

#include "qconn.h"
#include "qconn_test.h"
#include "edge/edge_test.h"

#define MAX_STREAMS 8

typedef struct fz_stream {
    syn_qstream *s;
    int fin, reset; /* the peer's side is over: nothing more may be delivered */
} fz_stream;

static fz_live L;
static uint64_t next_index = 1u << 20; /* stream numbers far above the tunnel's own */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fz_live_options o = {0};
    fz_live_init(&L, &o);
    return 0;
}

static int64_t new_id(void) {
    uint64_t i = next_index++;
#ifdef FUZZ_EDGE_BIDI
    return (int64_t)(i * 4); /* client-initiated bidirectional */
#else
    return (int64_t)(i * 4 + 2); /* client-initiated unidirectional */
#endif
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_live_next_input(&L, 4096);
    syn_qconn *qc = syn_edge_newest_qconn(L.edge);
    FUZZ_CHECK(qc != NULL);
    fz_stream st[MAX_STREAMS];
    size_t n = 0;
    int gone = 0; /* the edge's connection was freed */
    fz_reader r = {data, size};
    while (!fz_end(&r) && !gone) {
        uint8_t op = fz_u8(&r);
        unsigned kind = op & 7, pick = op >> 3;
        if (kind == 0) {
            if (n == MAX_STREAMS)
                continue;
            syn_qstream *s = NULL;
            gone = syn_qconn_test_peer_stream(qc, new_id(), &s);
            if (!gone && s)
                st[n++] = (fz_stream){.s = s};
            continue;
        }
        if (kind == 7) {
            syn_qconn_flush(qc);
            gone = syn_edge_newest_qconn(L.edge) != qc;
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
                break; /* ngtcp2 delivers nothing after FIN or a reset, nor empty data */
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
            /* A clean close needs the peer's FIN; otherwise the stream was reset somewhere. */
            int reset = !f->fin || code != 0;
            gone = syn_qconn_test_stream_close(f->s, code, reset);
            st[i] = st[--n];
            break;
        }
        default:
            break;
        }
    }
    /* Whatever is still open closes (as when the connection drops them), then a write pass. */
    while (!gone && n) {
        gone = syn_qconn_test_stream_close(st[n - 1].s, SYN_APP_CANCELLED, 1);
        n--;
    }
    if (!gone && syn_edge_newest_qconn(L.edge) == qc)
        syn_qconn_flush(qc);
    return 0;
}

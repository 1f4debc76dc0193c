/* The link's frame reader (src/tcplink.c): the bytes a peer sends after the TLS handshake, in any
 * chunking, into a server link's deframer (tcplink_test.h: the link's own reader, fed as SSL_read
 * would feed it, without a socket or TLS). Input: a control byte (bit 0..5: the frame at which
 * ops.packet frees the link, 0 = never; bit 6: ops.closed does not free it, the owner frees it
 * afterwards), then chunks, each a length byte and that many bytes (fz_data: 254/255 reach long
 * or repeated chunks). Checked: every frame handed out has a length of 1..SYN_TCPLINK_MAX_FRAME
 * and the bytes the peer framed (the reader's frames, re-framed, are a prefix of the stream sent);
 * ops.closed comes at most once, only for a bad length, and nothing is called after it or after a
 * free; what is buffered is less than one whole frame past the last delivered; nothing leaks. */
#include "fuzz.h"

#include "internal.h"
#include "tcplink.h"
#include "tcplink_test.h"

#include <ev.h>

static struct ev_loop *loop;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    loop = ev_loop_new(EVFLAG_AUTO);
    return loop ? 0 : 1;
}

typedef struct run {
    syn_tcplink *l;
    int free_at, frames, closed, gone, keep_on_close;
    uint8_t *sent;                      /* every byte fed so far */
    size_t sent_len, sent_cap, matched; /* bytes of sent accounted for by frames delivered */
} run;

static void op_packet(syn_tcplink *l, const uint8_t *d, size_t n) {
    run *r = syn_tcplink_owner(l);
    FUZZ_CHECK(!r->gone && !r->closed);
    FUZZ_CHECK(n >= 1 && n <= SYN_TCPLINK_MAX_FRAME);
    FUZZ_CHECK(r->matched + 2 + n <= r->sent_len);
    FUZZ_CHECK(r->sent[r->matched] == (uint8_t)(n >> 8) && r->sent[r->matched + 1] == (uint8_t)n);
    FUZZ_CHECK(memcmp(r->sent + r->matched + 2, d, n) == 0);
    r->matched += 2 + n;
    if (++r->frames == r->free_at) {
        syn_tcplink_free(l);
        r->gone = 1;
    }
}

static void op_closed(syn_tcplink *l, int err, const char *detail) {
    run *r = syn_tcplink_owner(l);
    FUZZ_CHECK(!r->gone && !r->closed);
    FUZZ_CHECK(err == SYNESIS_ERR_QUIC && detail && strstr(detail, "bad frame"));
    /* The bad length is right where the next frame was due. */
    FUZZ_CHECK(r->matched + 2 <= r->sent_len);
    size_t len = (size_t)r->sent[r->matched] << 8 | r->sent[r->matched + 1];
    FUZZ_CHECK(len == 0 || len > SYN_TCPLINK_MAX_FRAME);
    r->closed = 1;
    if (!r->keep_on_close) {
        syn_tcplink_free(l);
        r->gone = 1;
    }
}

static const syn_tcplink_ops ops = {.packet = op_packet, .closed = op_closed};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_reader in = {data, size};
    uint8_t ctl = fz_u8(&in);
    run r = {0};
    r.free_at = ctl & 0x3f;
    r.keep_on_close = (ctl & 0x40) != 0;
    FUZZ_CHECK(syn_tcplink_test_up(&r.l, loop, &ops, &r) == 0);
    while (!fz_end(&in) && !r.gone && !r.closed) {
        size_t n;
        const uint8_t *p = fz_data(&in, &n);
        if (n == 0)
            continue;
        if (r.sent_len + n > r.sent_cap) {
            r.sent_cap = 2 * (r.sent_len + n);
            r.sent = realloc(r.sent, r.sent_cap);
            FUZZ_CHECK(r.sent != NULL);
        }
        memcpy(r.sent + r.sent_len, p, n);
        r.sent_len += n;
        int rc = syn_tcplink_test_feed(r.l, p, n);
        FUZZ_CHECK(rc == 0 || r.gone || r.closed);
        if (rc == 0) {
            /* All complete frames were handed out: what is left is one incomplete frame. */
            size_t buffered = syn_tcplink_test_buffered(r.l);
            FUZZ_CHECK(r.matched + buffered == r.sent_len);
            FUZZ_CHECK(buffered < 2 + SYN_TCPLINK_MAX_FRAME);
        }
    }
    if (!r.gone)
        syn_tcplink_free(r.l);
    free(r.sent);
    return 0;
}

/* The traffic of the tests that move a connection (test_migration, test_tcp): see flow.h. */
#include "flow.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static uint8_t pat(size_t i) { return (uint8_t)((i * 7 + i / 251) % 251); }

void syn_test_flow_pump(syn_test_flow *f) {
    while (!f->hold && f->sent < SYN_TEST_FLOW_BYTES) {
        uint8_t buf[16384];
        size_t n = SYN_TEST_FLOW_BYTES - f->sent < sizeof(buf) ? SYN_TEST_FLOW_BYTES - f->sent
                                                               : sizeof(buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = pat(f->sent + i);
        size_t acc = 0;
        int rv = synesis_stream_write(f->s, buf, n, &acc);
        if (rv == SYNESIS_ERR_WOULD_BLOCK)
            return;
        if (rv != 0)
            fail_msg("stream write: %s", synesis_error_name(rv));
        f->sent += acc;
        if (acc < n)
            return;
    }
    if (!f->hold)
        synesis_stream_finish(f->s);
}

static void on_data(synesis_stream *s, const uint8_t *data, size_t len, void *ud) {
    (void)s;
    syn_test_flow *f = ud;
    for (size_t i = 0; i < len; i++)
        if (data[i] != pat(f->received + i))
            f->bad++;
    f->received += len;
}
static void on_end(synesis_stream *s, void *ud) {
    (void)s;
    ((syn_test_flow *)ud)->ended++;
}
static void on_writable(synesis_stream *s, void *ud) {
    (void)s;
    syn_test_flow_pump(ud);
}
static void on_close(synesis_stream *s, int status, uint64_t code, const char *detail, void *ud) {
    (void)s;
    (void)code;
    syn_test_flow *f = ud;
    f->closed++;
    f->status = status;
    snprintf(f->detail, sizeof(f->detail), "%s", detail);
}

typedef struct req_ctx {
    syn_test_flow *f;
    int i;
} req_ctx;
static req_ctx req_ctxs[SYN_TEST_FLOW_NREQ];

static void on_resp(synesis_tunnel *t, synesis_request *req, const synesis_response *r, void *ud) {
    (void)t;
    (void)req;
    req_ctx *c = ud;
    c->f->req_calls[c->i]++;
    c->f->req_ok[c->i] = r->status == 0 && r->len == SYN_TEST_FLOW_REQ_BYTES &&
                         memcmp(r->data, c->f->req_body[c->i], SYN_TEST_FLOW_REQ_BYTES) == 0;
}

void syn_test_flow_request(synesis_tunnel *t, syn_test_flow *f) {
    int i = f->reqs_issued++;
    for (size_t k = 0; k < SYN_TEST_FLOW_REQ_BYTES; k++)
        f->req_body[i][k] = (uint8_t)(1 + (i * 31 + k) % 200); /* never a command word */
    req_ctxs[i] = (req_ctx){f, i};
    synesis_request_options o;
    synesis_request_options_init(&o);
    o.timeout = 30;
    assert_int_equal(synesis_tunnel_request(t, f->req_body[i], SYN_TEST_FLOW_REQ_BYTES, &o, on_resp,
                                            &req_ctxs[i], NULL),
                     0);
}

void syn_test_flow_start(synesis_tunnel *t, syn_test_flow *f) {
    memset(f, 0, sizeof(*f));
    synesis_stream_callbacks cb;
    synesis_stream_callbacks_init(&cb);
    cb.on_data = on_data;
    cb.on_end = on_end;
    cb.on_writable = on_writable;
    cb.on_close = on_close;
    assert_int_equal(synesis_tunnel_open_stream(t, &cb, f, &f->s), 0);
    syn_test_flow_pump(f);
    for (int i = 0; i < SYN_TEST_FLOW_NREQ / 2; i++)
        syn_test_flow_request(t, f);
}

int syn_test_flow_quarter(void *ud) {
    return ((syn_test_flow *)ud)->received >= SYN_TEST_FLOW_BYTES / 4;
}

int syn_test_flow_done(void *ud) {
    syn_test_flow *f = ud;
    if (!f->closed)
        return 0;
    for (int i = 0; i < f->reqs_issued; i++)
        if (!f->req_calls[i])
            return 0;
    return 1;
}

void syn_test_flow_check(const syn_test_flow *f) {
    assert_int_equal(f->closed, 1);
    if (f->status != 0)
        fail_msg("stream closed with %s: %s", synesis_error_name(f->status), f->detail);
    assert_int_equal(f->ended, 1);
    assert_int_equal(f->sent, SYN_TEST_FLOW_BYTES);
    assert_int_equal(f->received, SYN_TEST_FLOW_BYTES); /* nothing lost, nothing twice */
    assert_int_equal(f->bad, 0);                        /* every byte in its place */
    assert_int_equal(f->reqs_issued, SYN_TEST_FLOW_NREQ);
    for (int i = 0; i < SYN_TEST_FLOW_NREQ; i++) {
        assert_int_equal(f->req_calls[i], 1);
        assert_true(f->req_ok[i]);
    }
}

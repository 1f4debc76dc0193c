/* Certificate rotation, make before break, over loopback UDP with real certificates: requests in
 * flight on the old connection are all answered, the edge sees the new certificate (its
 * fingerprint), the new connection made a full handshake (no ticket of the old identity), the state
 * stays Connected; a bad new key is refused and the old connection stays; an identity the edge
 * refuses leaves the old connection in place. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"
#include "tunnel_int.h"

#define NREQ 6

typedef struct fixture {
    struct ev_loop *loop;
    syn_edge *edge;
    synesis_tunnel *t;
    synesis_tunnel_config cfg;
    syn_test_states states;
    syn_test_result res[NREQ];
    char body[NREQ][64];
    int identity_calls, identity_status;
} fixture;

static const char *pki;

static void on_identity(synesis_tunnel *t, int status, const char *detail, void *ud) {
    (void)t;
    (void)detail;
    fixture *f = ud;
    f->identity_calls++;
    f->identity_status = status;
}

static void on_state(synesis_tunnel *t, const synesis_tunnel_state *o,
                     const synesis_tunnel_state *n, void *ud) {
    syn_test_record_state(t, o, n, &((fixture *)ud)->states);
}

/* A renewed device identity: a new key, the same device id, the same CA. */
static void renew(const char *dir, const char *name, const char *cn, const char *ca_dir) {
    synesis_pki_cert_options o;
    synesis_pki_cert_options_init(&o, SYNESIS_CERT_PROFILE_DEVICE);
    o.common_name = cn;
    char ca_cert[512], ca_key[512], cert[512], key[512], detail[512];
    snprintf(ca_cert, sizeof(ca_cert), "%s/ca.pem", ca_dir);
    snprintf(ca_key, sizeof(ca_key), "%s/ca.key", ca_dir);
    snprintf(cert, sizeof(cert), "%s/%s.pem", dir, name);
    snprintf(key, sizeof(key), "%s/%s.key", dir, name);
    o.issuer_cert_file = ca_cert;
    o.issuer_key_file = ca_key;
    o.overwrite = 1;
    int rv = synesis_pki_create_cert(&o, cert, key, detail, sizeof(detail));
    if (rv != 0)
        fail_msg("renew: %s", detail);
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof(*f));
    f->loop = ev_loop_new(EVFLAG_AUTO);
    pki = syn_test_pki_shared("rotate-1");
    f->edge = syn_test_edge(f->loop, pki, 10.0);
    syn_test_tunnel_config(&f->cfg, pki, syn_edge_port(f->edge));
    f->cfg.idle_timeout = 20;
    synesis_tunnel_callbacks cb;
    synesis_tunnel_callbacks_init(&cb);
    cb.on_state = on_state;
    cb.on_identity = on_identity;
    f->t = syn_test_tunnel_connected(f->loop, &f->cfg, &cb, f, 10);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    for (int i = 0; i < NREQ; i++)
        free(f->res[i].data);
    syn_test_finish(f->loop, f->t, f->edge);
    free(f);
    return 0;
}

static void send_req(fixture *f, int i, int ms) {
    char buf[128];
    snprintf(f->body[i], sizeof(f->body[i]), "body-%d-of-the-rotation-test", i);
    int n = snprintf(buf, sizeof(buf), "SLEEP %d\n%s", ms, f->body[i]);
    assert_int_equal(
        synesis_tunnel_request(f->t, buf, (size_t)n, NULL, syn_test_on_response, &f->res[i], NULL),
        0);
}

static void assert_answered(fixture *f, int i) {
    assert_int_equal(f->res[i].calls, 1);
    assert_int_equal(f->res[i].status, 0);
    assert_int_equal(f->res[i].len, strlen(f->body[i]));
    assert_memory_equal(f->res[i].data, f->body[i], f->res[i].len);
}

typedef struct all_ctx {
    fixture *f;
    int n;
} all_ctx;

static int all_called(void *ud) {
    all_ctx *c = ud;
    for (int i = 0; i < c->n; i++)
        if (!c->f->res[i].calls)
            return 0;
    return c->f->identity_calls > 0;
}

static int identity_done(void *ud) { return ((fixture *)ud)->identity_calls > 0; }

static int edge_one_conn(void *ud) {
    fixture *f = ud;
    syn_edge_stats s;
    syn_edge_get_stats(f->edge, &s);
    return s.active == 1;
}

static void test_rotate_in_flight(void **state) {
    fixture *f = *state;
    char old_fp[65];
    syn_copy_str(old_fp, sizeof(old_fp), syn_edge_last_cert(f->edge));
    assert_int_equal(strlen(old_fp), 64);
    const char *dir = syn_test_mkdtemp("rotate");
    renew(dir, "new", "device-rotate-1", pki);
    syn_edge_stats es0;
    syn_edge_get_stats(f->edge, &es0);
    for (int i = 0; i < 3; i++)
        send_req(f, i, 400);
    syn_test_run_for(f->loop, 0.05);
    synesis_identity_source id;
    synesis_identity_source_init(&id);
    id.cert_path = syn_test_path(dir, "new.pem");
    id.key_path = syn_test_path(dir, "new.key");
    assert_int_equal(synesis_tunnel_rotate_identity(f->t, &id, 10), 0);
    /* Requests made during the rotation go to whichever connection is current: none is lost. */
    send_req(f, 3, 10);
    all_ctx c = {f, 4};
    assert_true(syn_test_run_until(f->loop, all_called, &c, 10));
    assert_int_equal(f->identity_status, 0);
    for (int i = 0; i < 4; i++)
        assert_answered(f, i);
    send_req(f, 4, 0);
    c.n = 5;
    assert_true(syn_test_run_until(f->loop, all_called, &c, 10));
    assert_answered(f, 4);
    /* The edge saw the new certificate, in a full handshake; the old connection closed. */
    assert_string_not_equal(syn_edge_last_cert(f->edge), old_fp);
    assert_true(syn_test_run_until(f->loop, edge_one_conn, f, 10));
    syn_edge_stats es;
    syn_edge_get_stats(f->edge, &es);
    assert_int_equal(es.handshakes, es0.handshakes + 1);
    assert_int_equal(es.resumed, es0.resumed);
    assert_int_equal(es.responses_unacked, 0);
    /* Connected throughout. */
    assert_int_equal(syn_test_find_state(&f->states, SYNESIS_STATE_RECONNECTING, 0), -1);
    assert_true(synesis_tunnel_is_connected(f->t));
    synesis_tunnel_stats ts;
    synesis_tunnel_get_stats(f->t, &ts);
    assert_int_equal(ts.identity_rotations, 1);
    /* A reconnect now resumes a ticket of the new identity: the edge still sees it. */
    char new_fp[65];
    syn_copy_str(new_fp, sizeof(new_fp), syn_edge_last_cert(f->edge));
    syn_edge_kick(f->edge, "rotate-1");
    int r0 = f->states.n;
    assert_true(syn_test_run_until(f->loop, syn_test_connected, f->t, 10));
    syn_test_run_for(f->loop, 0.1);
    assert_true(syn_test_find_state(&f->states, SYNESIS_STATE_RECONNECTING, r0) >= 0);
    assert_true(syn_test_run_until(f->loop, syn_test_connected, f->t, 10));
    assert_string_equal(syn_edge_last_cert(f->edge), new_fp);
}

/* A key that does not match the certificate, a missing file, a key readable by others: refused
 * at once with their codes; the old connection carries on. */
static void test_rotate_bad_identity(void **state) {
    fixture *f = *state;
    const char *dir = syn_test_mkdtemp("rotate-bad");
    renew(dir, "a", "device-rotate-1", pki);
    renew(dir, "b", "device-rotate-1", pki);
    synesis_identity_source id;
    synesis_identity_source_init(&id);
    id.cert_path = syn_test_path(dir, "a.pem");
    id.key_path = syn_test_path(dir, "b.key");
    assert_int_equal(synesis_tunnel_rotate_identity(f->t, &id, 1), SYNESIS_ERR_KEY_MISMATCH);
    id.key_path = syn_test_path(dir, "none.key");
    assert_int_equal(synesis_tunnel_rotate_identity(f->t, &id, 1), SYNESIS_ERR_FILE_NOT_FOUND);
    id.key_path = syn_test_path(dir, "a.key");
    chmod(id.key_path, 0644);
    assert_int_equal(synesis_tunnel_rotate_identity(f->t, &id, 1), SYNESIS_ERR_KEY_PERMISSIONS);
    assert_int_equal(synesis_tunnel_rotate_identity(f->t, NULL, 1), SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(synesis_tunnel_rotate_identity(NULL, &id, 1), SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(f->identity_calls, 0);
    send_req(f, 0, 0);
    all_ctx c = {f, 1};
    f->identity_calls = 1; /* (all_called waits for it too) */
    assert_true(syn_test_run_until(f->loop, all_called, &c, 10));
    assert_answered(f, 0);
    assert_true(synesis_tunnel_is_connected(f->t));
}

/* An identity the edge does not trust (another CA): the new connection fails, on_identity says
 * so, the old connection and identity stay. */
static void test_rotate_refused_by_edge(void **state) {
    fixture *f = *state;
    const char *other = syn_test_pki("rotate-1");
    char fp[65];
    syn_copy_str(fp, sizeof(fp), syn_edge_last_cert(f->edge));
    synesis_identity_source id;
    synesis_identity_source_init(&id);
    id.cert_path = syn_test_path(other, "device.pem");
    id.key_path = syn_test_path(other, "device.key");
    assert_int_equal(synesis_tunnel_rotate_identity(f->t, &id, 1), 0);
    assert_true(syn_test_run_until(f->loop, identity_done, f, 10));
    assert_int_equal(f->identity_status, SYNESIS_ERR_CLIENT_CERT_REJECTED);
    send_req(f, 0, 0);
    all_ctx c = {f, 1};
    assert_true(syn_test_run_until(f->loop, all_called, &c, 10));
    assert_answered(f, 0);
    assert_true(synesis_tunnel_is_connected(f->t));
    assert_int_equal(syn_test_find_state(&f->states, SYNESIS_STATE_RECONNECTING, 0), -1);
    assert_string_equal(syn_edge_last_cert(f->edge), fp);
}

/* Freed while the old connection still carries a request (and, in the second case, while the new
 * one is still handshaking): every request completes once, cancelled; nothing is left on the loop
 * (syn_test_finish checks it). */
static void test_rotate_then_free(void **state) {
    fixture *f = *state;
    const char *dir = syn_test_mkdtemp("rotate-free");
    renew(dir, "new", "device-rotate-1", pki);
    send_req(f, 0, 3000);
    syn_test_run_for(f->loop, 0.05);
    synesis_identity_source id;
    synesis_identity_source_init(&id);
    id.cert_path = syn_test_path(dir, "new.pem");
    id.key_path = syn_test_path(dir, "new.key");
    assert_int_equal(synesis_tunnel_rotate_identity(f->t, &id, 10), 0);
    assert_true(syn_test_run_until(f->loop, identity_done, f, 10));
    assert_int_equal(f->identity_status, 0);
    assert_int_equal(f->res[0].calls, 0); /* still on the old connection */
    send_req(f, 1, 3000);                 /* on the new one */
    assert_int_equal(synesis_tunnel_rotate_identity(f->t, &id, 10), 0); /* a second, pending */
    synesis_tunnel_free(f->t);
    f->t = NULL;
    assert_int_equal(f->res[0].calls, 1);
    assert_int_equal(f->res[0].status, SYNESIS_ERR_CANCELLED);
    assert_int_equal(f->res[1].calls, 1);
    assert_int_equal(f->res[1].status, SYNESIS_ERR_CANCELLED);
}

/* Disconnected during a rotation: the new identity is kept for the next connection, which the edge
 * sees. */
static void test_rotate_then_disconnect(void **state) {
    fixture *f = *state;
    const char *dir = syn_test_mkdtemp("rotate-disc");
    renew(dir, "new", "device-rotate-1", pki);
    char fp[65];
    syn_copy_str(fp, sizeof(fp), syn_edge_last_cert(f->edge));
    synesis_identity_source id;
    synesis_identity_source_init(&id);
    id.cert_path = syn_test_path(dir, "new.pem");
    id.key_path = syn_test_path(dir, "new.key");
    assert_int_equal(synesis_tunnel_rotate_identity(f->t, &id, 10), 0);
    assert_int_equal(synesis_tunnel_disconnect(f->t), 0);
    syn_test_run_for(f->loop, 0.1);
    assert_int_equal(f->identity_calls, 0);
    syn_test_connect(f->loop, f->t, 10);
    assert_string_not_equal(syn_edge_last_cert(f->edge), fp);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rotate_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotate_bad_identity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotate_refused_by_edge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotate_then_free, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotate_then_disconnect, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

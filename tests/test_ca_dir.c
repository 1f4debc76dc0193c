/*
 * Trust through config.ca_dir, end to end: an OpenSSL hashed directory as c_rehash or
 * `openssl rehash` makes it (each CA certificate reachable as <subject-name hash>.<n>, a symbolic
 * link to its PEM file), built here with X509_NAME_hash_ex() and symlink(2). The tunnel, with
 * nothing but that directory as its trust (no CA file, no system store), connects to the
 * reference edge whose CA is in the directory; with a wrong CA there instead (one of the same
 * name and another key, or one of another name) it ends Failed with SYNESIS_ERR_PEER_UNTRUSTED,
 * the TLS verification error; the CA's file present without its hash link is not found.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "synesis/identity.h"
#include "synesis/request.h"

typedef struct fixture {
    struct ev_loop *loop;
    syn_edge *edge;
    syn_test_states states;
} fixture;

static const char *pki;       /* the edge's and the device's CA */
static const char *other_pki; /* another CA of the same name ("Synesis Test CA") */
static const char *other_ca;  /* a CA of another name */

static int group_setup(void **state) {
    (void)state;
    pki = syn_test_pki("cadir-1");
    other_pki = syn_test_pki("cadir-2");
    const char *dir = syn_test_mkdtemp("cadir-ca");
    synesis_pki_cert_options o;
    synesis_pki_cert_options_init(&o, SYNESIS_CERT_PROFILE_CA);
    o.common_name = "Some Other CA";
    char detail[512];
    static char cert[512];
    snprintf(cert, sizeof(cert), "%s/other-ca.pem", dir);
    int rv = synesis_pki_create_cert(&o, cert, syn_test_path(dir, "other-ca.key"), detail,
                                     sizeof(detail));
    if (rv)
        fail_msg("CA: %s: %s", synesis_error_name(rv), detail);
    other_ca = cert;
    return 0;
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->loop = ev_loop_new(EVFLAG_AUTO);
    f->edge = syn_test_edge(f->loop, pki, 5);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    syn_edge_free(f->edge);
    assert_int_equal(ev_run(f->loop, EVRUN_NOWAIT), 0);
    ev_loop_destroy(f->loop);
    free(f);
    return 0;
}

/* ---- the hashed directory ---- */

static X509 *read_cert(const char *path) {
    FILE *fp = fopen(path, "r");
    if (!fp)
        fail_msg("%s: %s", path, strerror(errno));
    X509 *x = PEM_read_X509(fp, NULL, NULL, NULL);
    fclose(fp);
    assert_non_null(x);
    return x;
}

/* Copies the CA certificate ca_pem into dir as name and, when link is set, makes the link
 * <hash>.<n> -> name that OpenSSL's directory lookup looks for: hash as X509_NAME_hash (SHA-1
 * of the canonical subject name, first 4 bytes, little-endian) printed as 8 hex digits, n the
 * first free suffix (certificates with the same subject name share the hash). Returns the
 * hash. */
static unsigned long add_ca(const char *dir, const char *ca_pem, const char *name, int link) {
    X509 *x = read_cert(ca_pem);
    FILE *out = fopen(syn_test_path(dir, name), "w");
    assert_non_null(out);
    assert_int_equal(PEM_write_X509(out, x), 1);
    fclose(out);
    int ok = 0;
    unsigned long h = X509_NAME_hash_ex(X509_get_subject_name(x), NULL, NULL, &ok);
    assert_true(ok);
    X509_free(x);
    if (!link)
        return h;
    for (int n = 0; n < 10; n++) {
        char lname[32];
        snprintf(lname, sizeof(lname), "%08lx.%d", h, n);
        if (symlink(name, syn_test_path(dir, lname)) == 0)
            return h;
        assert_int_equal(errno, EEXIST);
    }
    fail_msg("no free suffix for hash %08lx in %s", h, dir);
    return h;
}

/* ---- the tunnel ---- */

static synesis_tunnel *new_tunnel(fixture *f, const char *ca_dir) {
    synesis_tunnel_config cfg;
    syn_test_tunnel_config(&cfg, pki, syn_edge_port(f->edge));
    cfg.ca_path = NULL; /* the directory is the only trust */
    cfg.use_system_trust = 0;
    cfg.ca_dir = ca_dir;
    synesis_tunnel *t = NULL;
    synesis_tunnel_callbacks cb = {.struct_size = sizeof(synesis_tunnel_callbacks),
                                   .on_state = syn_test_record_state};
    t = syn_test_tunnel_new(f->loop, &cfg, &cb, &f->states);
    return t;
}

static void expect_connects(fixture *f, const char *ca_dir) {
    synesis_tunnel *t = new_tunnel(f, ca_dir);
    assert_int_equal(synesis_tunnel_connect(t), 0);
    assert_true(syn_test_run_until(f->loop, syn_test_settled, &f->states, 5));
    synesis_tunnel_state s;
    synesis_tunnel_get_state(t, &s);
    if (s.kind != SYNESIS_STATE_CONNECTED)
        fail_msg("%s: %s: %s", synesis_state_name(s.kind), synesis_error_name(s.error),
                 s.error_detail);
    syn_test_result res;
    syn_test_request(f->loop, t, "trusted", 7, NULL, &res, 5);
    assert_int_equal(res.status, 0);
    assert_int_equal(res.len, 7);
    free(res.data);
    synesis_tunnel_free(t);
    syn_test_run_for(f->loop, 0.05);
}

static void expect_untrusted(fixture *f, const char *ca_dir, const char *why) {
    uint64_t handshakes0;
    syn_edge_stats es;
    syn_edge_get_stats(f->edge, &es);
    handshakes0 = es.handshakes;
    synesis_tunnel *t = new_tunnel(f, ca_dir);
    assert_int_equal(synesis_tunnel_connect(t), 0);
    assert_true(syn_test_run_until(f->loop, syn_test_settled, &f->states, 5));
    synesis_tunnel_state s;
    synesis_tunnel_get_state(t, &s);
    if (s.kind != SYNESIS_STATE_FAILED || s.error != SYNESIS_ERR_PEER_UNTRUSTED)
        fail_msg("%s: expected Failed with SYNESIS_ERR_PEER_UNTRUSTED, got %s: %s: %s", why,
                 synesis_state_name(s.kind), synesis_error_name(s.error), s.error_detail);
    assert_non_null(strstr(s.error_detail, "edge certificate verify failed"));
    assert_int_equal(syn_test_find_state(&f->states, SYNESIS_STATE_CONNECTED, 0), -1);
    syn_edge_get_stats(f->edge, &es);
    assert_int_equal(es.handshakes, handshakes0); /* the edge never saw a finished handshake */
    print_message("%s: %s\n", why, s.error_detail);
    synesis_tunnel_free(t);
    syn_test_run_for(f->loop, 0.05);
}

/* ---- tests ---- */

static void test_ca_dir_trusts_edge(void **state) {
    fixture *f = *state;
    const char *dir = syn_test_mkdtemp("cadir-right");
    add_ca(dir, syn_test_path(pki, "ca.pem"), "edge-ca.pem", 1);
    expect_connects(f, dir);
}

/* The CA's file alone, without its hash link: OpenSSL looks certificates up by hashed name only,
 * so the edge is not trusted (the link is what the tunnel relies on). */
static void test_ca_dir_needs_hash_link(void **state) {
    fixture *f = *state;
    const char *dir = syn_test_mkdtemp("cadir-nolink");
    add_ca(dir, syn_test_path(pki, "ca.pem"), "edge-ca.pem", 0);
    expect_untrusted(f, dir, "CA without its hash link");
}

/* A CA of the same name (so the same hash, found by the lookup) with another key. */
static void test_ca_dir_wrong_ca_same_name(void **state) {
    fixture *f = *state;
    const char *dir = syn_test_mkdtemp("cadir-wrong");
    unsigned long h1 = add_ca(dir, syn_test_path(other_pki, "ca.pem"), "other.pem", 1);
    assert_int_equal(h1, add_ca(dir, syn_test_path(pki, "ca.pem"), "unused.pem", 0));
    expect_untrusted(f, dir, "wrong CA of the same name");
}

/* A CA of another name. */
static void test_ca_dir_wrong_ca_other_name(void **state) {
    fixture *f = *state;
    const char *dir = syn_test_mkdtemp("cadir-other");
    add_ca(dir, other_ca, "other.pem", 1);
    expect_untrusted(f, dir, "wrong CA of another name");
}

/* Both CAs of the same name in the directory (<hash>.0 the wrong one, <hash>.1 the right one):
 * the lookup considers every certificate of the name and the right one is used. */
static void test_ca_dir_same_name_collision(void **state) {
    fixture *f = *state;
    const char *dir = syn_test_mkdtemp("cadir-both");
    add_ca(dir, syn_test_path(other_pki, "ca.pem"), "other.pem", 1);
    add_ca(dir, other_ca, "another.pem", 1);
    add_ca(dir, syn_test_path(pki, "ca.pem"), "edge-ca.pem", 1);
    expect_connects(f, dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ca_dir_trusts_edge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ca_dir_needs_hash_link, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ca_dir_wrong_ca_same_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ca_dir_wrong_ca_other_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ca_dir_same_name_collision, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}

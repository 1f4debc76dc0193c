/* TLS contexts: building them from the test PKI (files, memory, OSSL_STORE file: URIs), their
 * errors, and real TLS 1.3 handshakes between our client and server contexts over an in-memory
 * BIO pair (plain TLS: the QUIC handshake tests live with the transport), proving that each
 * wrong peer is refused and mapped to the right code by syn_tls_client_handshake_error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "pki_util.h"
#include "synesis/identity.h"
#include "tls.h"

#define ALPN "synesis-tunnel/1"

static struct {
    char *dir;   /* PKI 1: ca, edge, device "tls-1", and extra certificates */
    char *other; /* PKI 2: another CA and its device "tls-2" */
} fx;

static const char *p(const char *name) {
    static char buf[8][PATH_MAX];
    static int i;
    i = (i + 1) % 8;
    return pki_path(buf[i], fx.dir, name);
}

static const char *o(const char *name) {
    static char buf[4][PATH_MAX];
    static int i;
    i = (i + 1) % 4;
    return pki_path(buf[i], fx.other, name);
}

static int make_extra(const char *name, synesis_cert_profile profile, const char *cn,
                      int64_t offset, int days) {
    static const char *const alt[] = {"localhost", "127.0.0.1", "::1"};
    synesis_pki_cert_options opt;
    synesis_pki_cert_options_init(&opt, profile);
    opt.common_name = cn;
    opt.not_before_offset_s = offset;
    opt.days = days;
    if (profile == SYNESIS_CERT_PROFILE_SERVER) {
        opt.alt_names = alt;
        opt.n_alt_names = 3;
    }
    opt.issuer_cert_file = p("ca.pem");
    opt.issuer_key_file = p("ca.key");
    char cert[PATH_MAX], key[PATH_MAX], d[SYNESIS_DETAIL_MAX];
    snprintf(cert, sizeof(cert), "%s/%s.pem", fx.dir, name);
    snprintf(key, sizeof(key), "%s/%s.key", fx.dir, name);
    int rc = synesis_pki_create_cert(&opt, cert, key, d, sizeof(d));
    if (rc)
        fprintf(stderr, "%s: %s: %s\n", name, synesis_error_name(rc), d);
    return rc;
}

static int group_setup(void **state) {
    (void)state;
    char d[SYNESIS_DETAIL_MAX];
    fx.dir = pki_tmpdir("tls-pki");
    fx.other = pki_tmpdir("tls-other");
    int rc = synesis_identity_create_test_pki(fx.dir, "tls-1", d, sizeof(d));
    if (!rc)
        rc = synesis_identity_create_test_pki(fx.other, "tls-2", d, sizeof(d));
    if (rc) {
        fprintf(stderr, "test PKI: %s: %s\n", synesis_error_name(rc), d);
        return -1;
    }
    if (make_extra("expired-device", SYNESIS_CERT_PROFILE_DEVICE, "device-old", -10L * 86400, 1) ||
        make_extra("expired-edge", SYNESIS_CERT_PROFILE_SERVER, "localhost", -10L * 86400, 1) ||
        make_extra("future-edge", SYNESIS_CERT_PROFILE_SERVER, "localhost", 5L * 86400, 30) ||
        make_extra("gateway", SYNESIS_CERT_PROFILE_DEVICE, "gateway-7", 0, 30))
        return -1;
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    pki_rmtree(fx.dir);
    pki_rmtree(fx.other);
    free(fx.dir);
    free(fx.other);
    return 0;
}

#define assert_err(expr, code, d)                                                                  \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_ != (code))                                                                         \
            fprintf(stderr, "got %s (%s), expected %s\n", synesis_error_name(rc_), d,              \
                    synesis_error_name(code));                                                     \
        assert_int_equal(rc_, (code));                                                             \
    } while (0)

#define assert_ok(expr, d) assert_err(expr, 0, d)

static syn_tls_client_config client_cfg(const char *cert, const char *key, const char *ca) {
    syn_tls_client_config c;
    memset(&c, 0, sizeof(c));
    c.cert_file = cert;
    c.key_file = key;
    c.ca_file = ca;
    return c;
}

static SSL_CTX *client_ctx_cfg(const syn_tls_client_config *c) {
    SSL_CTX *ctx = NULL;
    char d[SYNESIS_DETAIL_MAX];
    assert_ok(syn_tls_client_ctx_new(&ctx, c, d), d);
    assert_non_null(ctx);
    return ctx;
}

static SSL_CTX *client_ctx(void) {
    syn_tls_client_config c = client_cfg(p("device.pem"), p("device.key"), p("ca.pem"));
    return client_ctx_cfg(&c);
}

static SSL_CTX *server_ctx(void) {
    syn_tls_server_config s = {p("edge.pem"), p("edge.key"), p("ca.pem"), ALPN, 0, 0, 0, 0};
    SSL_CTX *ctx = NULL;
    char d[SYNESIS_DETAIL_MAX];
    assert_ok(syn_tls_server_ctx_new(&ctx, &s, d), d);
    return ctx;
}

/* ---- the in-memory handshake ------------------------------------------------------------- */

struct side {
    SSL *ssl;
    int done, failed;
    uint8_t alert; /* first fatal alert received */
};

struct conn {
    struct side c, s;
    int ok;  /* both sides completed and neither failed */
    int err; /* syn_tls_client_handshake_error() when !ok */
    char detail[SYNESIS_DETAIL_MAX];
};

static void info_cb(const SSL *ssl, int where, int ret) {
    struct side *x = SSL_get_app_data(ssl);
    if ((where & SSL_CB_READ_ALERT) && (ret >> 8) == SSL3_AL_FATAL && x && !x->alert)
        x->alert = (uint8_t)(ret & 0xff);
}

static int want(SSL *ssl, int r) {
    int e = SSL_get_error(ssl, r);
    return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
}

static void step(struct side *x) {
    if (x->failed)
        return;
    if (!x->done) {
        int r = SSL_do_handshake(x->ssl);
        if (r == 1)
            x->done = 1;
        else if (!want(x->ssl, r))
            x->failed = 1;
    } else {
        char b;
        int r =
            SSL_read(x->ssl, &b, 1); /* post-handshake records: tickets, or the server's alert */
        if (r <= 0 && !want(x->ssl, r))
            x->failed = 1;
    }
}

/* SSLs from the contexts, client set up for server_name/alpn. */
static void conn_new(struct conn *k, SSL_CTX *cctx, SSL_CTX *sctx, const char *server_name,
                     const char *alpn) {
    memset(k, 0, sizeof(*k));
    k->c.ssl = SSL_new(cctx);
    k->s.ssl = SSL_new(sctx);
    assert_non_null(k->c.ssl);
    assert_non_null(k->s.ssl);
    char d[SYNESIS_DETAIL_MAX];
    assert_ok(syn_tls_client_ssl_setup(k->c.ssl, server_name, alpn, d), d);
    BIO *bc, *bs;
    assert_int_equal(BIO_new_bio_pair(&bc, 0, &bs, 0), 1);
    SSL_set_bio(k->c.ssl, bc, bc);
    SSL_set_bio(k->s.ssl, bs, bs);
    SSL_set_app_data(k->c.ssl, &k->c);
    SSL_set_app_data(k->s.ssl, &k->s);
    SSL_set_info_callback(k->c.ssl, info_cb);
    SSL_set_info_callback(k->s.ssl, info_cb);
    SSL_set_connect_state(k->c.ssl);
    SSL_set_accept_state(k->s.ssl);
}

/* Runs the handshake. On failure maps it like the transport would: with the alert the client
 * received (QUIC passes it from CONNECTION_CLOSE), or with 0 (from_queue) so that the mapping
 * has to find it in OpenSSL's error queue, which then holds only the client's errors. */
static void conn_run(struct conn *k, int from_queue) {
    for (int i = 0; i < 20 && !k->c.failed; i++) {
        ERR_clear_error();
        step(&k->c);
        if (k->c.failed)
            break;
        step(&k->s);
        ERR_clear_error();
    }
    k->ok = k->c.done && k->s.done && !k->c.failed && !k->s.failed;
    k->err = k->ok
                 ? 0
                 : syn_tls_client_handshake_error(k->c.ssl, from_queue ? 0 : k->c.alert, k->detail);
    if (!k->ok)
        fprintf(stderr, "    handshake refused: %s: %s\n", synesis_error_name(k->err), k->detail);
}

static void conn_free(struct conn *k) {
    SSL_free(k->c.ssl);
    SSL_free(k->s.ssl);
    ERR_clear_error();
}

/* One handshake between the given contexts; returns the mapped error (0 if it succeeded). */
static int handshake(SSL_CTX *cctx, SSL_CTX *sctx, const char *server_name, const char *alpn,
                     char *detail) {
    struct conn k;
    conn_new(&k, cctx, sctx, server_name, alpn);
    conn_run(&k, 0);
    if (detail)
        snprintf(detail, SYNESIS_DETAIL_MAX, "%s", k.detail);
    int rc = k.ok ? 0 : k.err;
    conn_free(&k);
    return rc;
}

/* ---- contexts ----------------------------------------------------------------------------- */

static void test_client_ctx_ok(void **state) {
    (void)state;
    SSL_CTX *ctx = client_ctx();
    assert_int_equal(SSL_CTX_get_min_proto_version(ctx), TLS1_3_VERSION);
    assert_int_equal(SSL_CTX_get_max_proto_version(ctx), TLS1_3_VERSION);
    assert_int_equal(SSL_CTX_get_verify_mode(ctx), SSL_VERIFY_PEER);
    X509 *leaf = SSL_CTX_get0_certificate(ctx);
    assert_non_null(leaf);
    char cn[64];
    assert_int_equal(syn_cert_common_name(leaf, cn, sizeof(cn)), 0);
    assert_string_equal(cn, "device-tls-1");
    assert_non_null(SSL_CTX_get0_privatekey(ctx));
    SSL_CTX_free(ctx);

    /* system trust alone is a valid configuration */
    syn_tls_client_config c = client_cfg(p("device.pem"), p("device.key"), NULL);
    c.use_system_trust = 1;
    SSL_CTX_free(client_ctx_cfg(&c));
    /* a hashed CA directory (an empty one loads fine) */
    c.use_system_trust = 0;
    c.ca_dir = fx.dir;
    SSL_CTX_free(client_ctx_cfg(&c));
}

static void test_client_ctx_in_memory(void **state) {
    (void)state;
    size_t nc, nk;
    char *cert = pki_read_file(p("device.pem"), &nc), *key = pki_read_file(p("device.key"), &nk);
    syn_tls_client_config c = client_cfg(NULL, NULL, p("ca.pem"));
    c.cert_pem = cert;
    c.cert_pem_len = nc;
    c.key_pem = key;
    c.key_pem_len = nk;
    SSL_CTX *ctx = client_ctx_cfg(&c);
    SSL_CTX *sctx = server_ctx();
    char d[SYNESIS_DETAIL_MAX];
    assert_ok(handshake(ctx, sctx, "localhost", ALPN, d), d);
    SSL_CTX_free(ctx);
    /* memory takes precedence over the file names; 0 = NUL-terminated */
    c.cert_file = "/nonexistent.pem";
    c.key_file = "/nonexistent.key";
    c.cert_pem_len = 0;
    c.key_pem_len = 0;
    SSL_CTX_free(client_ctx_cfg(&c));
    /* certificate and key in one buffer */
    char *both = malloc(nc + nk + 1);
    memcpy(both, cert, nc);
    memcpy(both + nc, key, nk + 1);
    c = client_cfg(NULL, NULL, p("ca.pem"));
    c.cert_pem = both;
    SSL_CTX_free(client_ctx_cfg(&c));
    /* in-memory errors */
    c.cert_pem = key;
    assert_err(syn_tls_client_ctx_new(&ctx, &c, d), SYNESIS_ERR_NO_CERTIFICATE, d);
    assert_non_null(strstr(d, "in memory"));
    c.cert_pem = cert;
    c.key_pem = "not pem";
    assert_err(syn_tls_client_ctx_new(&ctx, &c, d), SYNESIS_ERR_NOT_PEM, d);
    assert_null(ctx);
    free(cert);
    free(key);
    free(both);
    SSL_CTX_free(sctx);
}

static void test_client_ctx_store_uri(void **state) {
    (void)state;
    char uri[PATH_MAX + 16], d[SYNESIS_DETAIL_MAX];
    SSL_CTX *ctx = NULL, *sctx = server_ctx();
    syn_tls_client_config c = client_cfg(p("device.pem"), uri, p("ca.pem"));

    snprintf(uri, sizeof(uri), "file:%s", p("device.key"));
    ctx = client_ctx_cfg(&c);
    assert_ok(handshake(ctx, sctx, "localhost", ALPN, d), d);
    SSL_CTX_free(ctx);
    snprintf(uri, sizeof(uri), "file://%s", p("device.key")); /* file:///abs */
    SSL_CTX_free(client_ctx_cfg(&c));

    snprintf(uri, sizeof(uri), "file:%s", p("missing.key"));
    assert_err(syn_tls_client_ctx_new(&ctx, &c, d), SYNESIS_ERR_FILE_NOT_FOUND, d);
    /* permissions apply to file: URIs too */
    size_t n;
    char *key = pki_read_file(p("device.key"), &n);
    char open_key[PATH_MAX];
    assert_int_equal(pki_write_file(pki_path(open_key, fx.dir, "uri-open.key"), key, n, 0644), 0);
    snprintf(uri, sizeof(uri), "file:%s", open_key);
    assert_err(syn_tls_client_ctx_new(&ctx, &c, d), SYNESIS_ERR_KEY_PERMISSIONS, d);
    unlink(open_key);
    free(key);
    /* a file with no key in it */
    char certcopy[PATH_MAX];
    char *cert = pki_read_file(p("device.pem"), &n);
    assert_int_equal(pki_write_file(pki_path(certcopy, fx.dir, "uri-cert.key"), cert, n, 0600), 0);
    free(cert);
    snprintf(uri, sizeof(uri), "file:%s", certcopy);
    assert_err(syn_tls_client_ctx_new(&ctx, &c, d), SYNESIS_ERR_NO_PRIVATE_KEY, d);
    unlink(certcopy);
    /* encrypted keys through the store */
    EVP_PKEY *k = pki_load_key(p("device.key"));
    char enc[PATH_MAX];
    assert_int_equal(pki_write_key(pki_path(enc, fx.dir, "uri-enc.key"), k, "pw123", 0), 0);
    EVP_PKEY_free(k);
    snprintf(uri, sizeof(uri), "file:%s", enc);
    assert_err(syn_tls_client_ctx_new(&ctx, &c, d), SYNESIS_ERR_KEY_ENCRYPTED, d);
    c.key_passphrase = "bad";
    assert_err(syn_tls_client_ctx_new(&ctx, &c, d), SYNESIS_ERR_KEY_PASSPHRASE, d);
    c.key_passphrase = "pw123";
    SSL_CTX_free(client_ctx_cfg(&c));
    unlink(enc);
    /* a scheme nobody handles (no pkcs11 provider in this build) */
    c.key_passphrase = NULL;
    snprintf(uri, sizeof(uri), "pkcs11:token=none;object=device");
    assert_err(syn_tls_client_ctx_new(&ctx, &c, d), SYNESIS_ERR_KEY_STORE, d);
    assert_non_null(strstr(d, "pkcs11:"));
    assert_null(ctx);
    SSL_CTX_free(sctx);
}

static void test_client_ctx_errors(void **state) {
    (void)state;
    char d[SYNESIS_DETAIL_MAX];
    SSL_CTX *ctx = (SSL_CTX *)&ctx;
    syn_tls_client_config c = client_cfg(p("device.pem"), p("device.key"), p("ca.pem"));
    assert_int_equal(syn_tls_client_ctx_new(NULL, &c, d), SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(syn_tls_client_ctx_new(&ctx, NULL, d), SYNESIS_ERR_INVALID_ARGUMENT);
    assert_null(ctx);
    c.ca_file = NULL;
    assert_err(syn_tls_client_ctx_new(&ctx, &c, d), SYNESIS_ERR_INVALID_ARGUMENT, d);
    assert_non_null(strstr(d, "trust"));
    c.ca_file = p("ca.pem");
    c.n_spki_pins = 1;
    assert_err(syn_tls_client_ctx_new(&ctx, &c, d), SYNESIS_ERR_INVALID_ARGUMENT, d);
    c.n_spki_pins = 0;
    c.cert_file = NULL;
    assert_err(syn_tls_client_ctx_new(&ctx, &c, d), SYNESIS_ERR_INVALID_ARGUMENT, d);

    /* CA_UNREADABLE: missing, a directory, not PEM, no certificate, bad CA directory */
    c = client_cfg(p("device.pem"), p("device.key"), p("missing-ca.pem"));
    assert_err(syn_tls_client_ctx_new(&ctx, &c, d), SYNESIS_ERR_CA_UNREADABLE, d);
    assert_non_null(strstr(d, "missing-ca.pem"));
    assert_non_null(strstr(d, "does not exist"));
    c.ca_file = fx.dir;
    assert_err(syn_tls_client_ctx_new(&ctx, &c, d), SYNESIS_ERR_CA_UNREADABLE, d);
    assert_non_null(strstr(d, "directory"));
    char bad[PATH_MAX];
    assert_int_equal(pki_write_file(pki_path(bad, fx.dir, "ca-text.pem"), "no pem\n", 7, 0644), 0);
    c.ca_file = bad;
    assert_err(syn_tls_client_ctx_new(&ctx, &c, d), SYNESIS_ERR_CA_UNREADABLE, d);
    assert_non_null(strstr(d, "no PEM data"));
    unlink(bad);
    c.ca_file = p("ca.key");
    assert_err(syn_tls_client_ctx_new(&ctx, &c, d), SYNESIS_ERR_CA_UNREADABLE, d);
    assert_non_null(strstr(d, "no CERTIFICATE"));
    c.ca_file = NULL;
    c.ca_dir = p("no-such-dir");
    assert_err(syn_tls_client_ctx_new(&ctx, &c, d), SYNESIS_ERR_CA_UNREADABLE, d);
    c.ca_dir = p("ca.pem");
    assert_err(syn_tls_client_ctx_new(&ctx, &c, d), SYNESIS_ERR_CA_UNREADABLE, d);

    /* identity errors come through unchanged */
    c = client_cfg(p("expired-device.pem"), p("expired-device.key"), p("ca.pem"));
    assert_err(syn_tls_client_ctx_new(&ctx, &c, d), SYNESIS_ERR_CERT_EXPIRED, d);
    c = client_cfg(p("device.pem"), p("edge.key"), p("ca.pem"));
    assert_err(syn_tls_client_ctx_new(&ctx, &c, d), SYNESIS_ERR_KEY_MISMATCH, d);
    c = client_cfg(p("device.pem"), p("missing.key"), p("ca.pem"));
    assert_err(syn_tls_client_ctx_new(&ctx, &c, d), SYNESIS_ERR_FILE_NOT_FOUND, d);
    assert_null(ctx);
}

static void test_server_ctx(void **state) {
    (void)state;
    SSL_CTX *ctx = server_ctx();
    assert_int_equal(SSL_CTX_get_min_proto_version(ctx), TLS1_3_VERSION);
    assert_int_equal(SSL_CTX_get_verify_mode(ctx),
                     SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT);
    assert_null(SSL_CTX_get_verify_callback(ctx));
    STACK_OF(X509_NAME) *names = SSL_CTX_get_client_CA_list(ctx);
    assert_int_equal(sk_X509_NAME_num(names), 1);
    SSL_CTX_free(ctx);

    char d[SYNESIS_DETAIL_MAX], alpn[300];
    SSL_CTX *s = (SSL_CTX *)&s;
    syn_tls_server_config cfg = {p("edge.pem"), p("edge.key"), NULL, ALPN, 0, 0, 0, 0};
    assert_err(syn_tls_server_ctx_new(&s, &cfg, d), SYNESIS_ERR_INVALID_ARGUMENT, d);
    assert_null(s);
    cfg.ca_file = p("ca.pem");
    cfg.alpn = NULL;
    assert_err(syn_tls_server_ctx_new(&s, &cfg, d), SYNESIS_ERR_INVALID_ARGUMENT, d);
    memset(alpn, 'a', sizeof(alpn));
    alpn[256] = '\0';
    cfg.alpn = alpn;
    assert_err(syn_tls_server_ctx_new(&s, &cfg, d), SYNESIS_ERR_INVALID_ARGUMENT, d);
    cfg.alpn = ALPN;
    cfg.ca_file = p("missing-ca.pem");
    assert_err(syn_tls_server_ctx_new(&s, &cfg, d), SYNESIS_ERR_CA_UNREADABLE, d);
    cfg.ca_file = p("ca.pem");
    cfg.cert_file = p("expired-edge.pem");
    cfg.key_file = p("expired-edge.key");
    assert_err(syn_tls_server_ctx_new(&s, &cfg, d), SYNESIS_ERR_CERT_EXPIRED, d);
    assert_non_null(strstr(d, "edge certificate"));
    cfg.cert_file = p("edge.pem");
    cfg.key_file = p("device.key");
    assert_err(syn_tls_server_ctx_new(&s, &cfg, d), SYNESIS_ERR_KEY_MISMATCH, d);
    assert_int_equal(syn_tls_server_ctx_new(&s, NULL, d), SYNESIS_ERR_INVALID_ARGUMENT);
    assert_null(s);
}

static void test_ssl_setup(void **state) {
    (void)state;
    char d[SYNESIS_DETAIL_MAX], longalpn[300];
    SSL_CTX *ctx = client_ctx();
    SSL *ssl = SSL_new(ctx);
    assert_int_equal(syn_tls_client_ssl_setup(NULL, "localhost", ALPN, d),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(syn_tls_client_ssl_setup(ssl, NULL, ALPN, d), SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(syn_tls_client_ssl_setup(ssl, "", ALPN, d), SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(syn_tls_client_ssl_setup(ssl, "bad name", ALPN, d),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(syn_tls_client_ssl_setup(ssl, "localhost", "", d),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    memset(longalpn, 'x', sizeof(longalpn));
    longalpn[256] = '\0';
    assert_int_equal(syn_tls_client_ssl_setup(ssl, "localhost", longalpn, d),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    longalpn[255] = '\0';
    assert_ok(syn_tls_client_ssl_setup(ssl, "localhost", longalpn, d), d);
    assert_ok(syn_tls_client_ssl_setup(ssl, "edge.example", ALPN, d), d);
    assert_string_equal(SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name), "edge.example");
    SSL_free(ssl);
    /* no SNI for IP literals */
    ssl = SSL_new(ctx);
    assert_ok(syn_tls_client_ssl_setup(ssl, "[::1]", ALPN, d), d);
    assert_null(SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name));
    SSL_free(ssl);
    SSL_CTX_free(ctx);
}

/* ---- handshakes --------------------------------------------------------------------------- */

static void test_handshake_ok(void **state) {
    (void)state;
    SSL_CTX *c = client_ctx(), *s = server_ctx();
    const char *names[] = {"localhost", "127.0.0.1", "::1", "[::1]", "LOCALHOST"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        struct conn k;
        conn_new(&k, c, s, names[i], ALPN);
        conn_run(&k, 0);
        assert_true(k.ok);
        assert_int_equal(SSL_version(k.c.ssl), TLS1_3_VERSION);
        assert_int_equal(SSL_get_verify_result(k.c.ssl), X509_V_OK);
        const unsigned char *sel;
        unsigned int len;
        SSL_get0_alpn_selected(k.c.ssl, &sel, &len);
        assert_int_equal(len, strlen(ALPN));
        assert_memory_equal(sel, ALPN, len);
        char id[SYNESIS_DEVICE_ID_MAX + 1];
        assert_int_equal(syn_tls_peer_device_id(k.s.ssl, id, sizeof(id)), 0);
        assert_string_equal(id, "tls-1");
        /* the client is not a server of device ids: its peer is the edge, CN localhost */
        assert_int_equal(syn_tls_peer_device_id(k.c.ssl, id, sizeof(id)), 0);
        assert_string_equal(id, "localhost");
        assert_int_equal(syn_tls_peer_device_id(k.s.ssl, id, 5), SYNESIS_ERR_INVALID_ARGUMENT);
        assert_int_equal(syn_tls_peer_device_id(k.s.ssl, NULL, 5), SYNESIS_ERR_INVALID_ARGUMENT);
        conn_free(&k);
    }
    SSL_CTX_free(c);
    SSL_CTX_free(s);
}

static int tickets_seen;

static int count_ticket(SSL *ssl, SSL_SESSION *sess) {
    (void)ssl;
    (void)sess;
    tickets_seen++;
    return 0; /* not kept */
}

/* The edge sends no session tickets: devices never resume, and each ticket cost the edge a
 * serialised and sealed session on the handshake's critical path. */
static void test_handshake_no_session_tickets(void **state) {
    (void)state;
    SSL_CTX *c = client_ctx(), *s = server_ctx();
    assert_int_equal(SSL_CTX_get_num_tickets(s), 0);
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_CLIENT);
    SSL_CTX_sess_set_new_cb(c, count_ticket);
    tickets_seen = 0;
    struct conn k;
    conn_new(&k, c, s, "localhost", ALPN);
    conn_run(&k, 0); /* the client goes on reading after its handshake: tickets would arrive */
    assert_true(k.ok);
    assert_int_equal(tickets_seen, 0);
    conn_free(&k);
    /* the check sees tickets when a server sends them */
    assert_int_equal(SSL_CTX_set_num_tickets(s, 2), 1);
    conn_new(&k, c, s, "localhost", ALPN);
    conn_run(&k, 0);
    assert_true(k.ok);
    assert_int_equal(tickets_seen, 2);
    conn_free(&k);
    SSL_CTX_free(c);
    SSL_CTX_free(s);
}

static void test_handshake_untrusted_edge(void **state) {
    (void)state;
    char d[SYNESIS_DETAIL_MAX];
    SSL_CTX *s = server_ctx();
    /* trusting another CA only */
    syn_tls_client_config cfg = client_cfg(p("device.pem"), p("device.key"), o("ca.pem"));
    SSL_CTX *c = client_ctx_cfg(&cfg);
    assert_err(handshake(c, s, "localhost", ALPN, d), SYNESIS_ERR_PEER_UNTRUSTED, d);
    assert_non_null(strstr(
        d, "edge certificate verify failed: unable to get local issuer certificate (depth 0)"));
    assert_non_null(strstr(d, "CN=localhost"));
    SSL_CTX_free(c);
    /* the system store does not know our test CA */
    cfg.ca_file = NULL;
    cfg.use_system_trust = 1;
    c = client_ctx_cfg(&cfg);
    assert_err(handshake(c, s, "localhost", ALPN, d), SYNESIS_ERR_PEER_UNTRUSTED, d);
    SSL_CTX_free(c);
    SSL_CTX_free(s);
}

static void test_handshake_name_mismatch(void **state) {
    (void)state;
    char d[SYNESIS_DETAIL_MAX];
    SSL_CTX *c = client_ctx(), *s = server_ctx();
    assert_err(handshake(c, s, "example.com", ALPN, d), SYNESIS_ERR_PEER_NAME_MISMATCH, d);
    assert_non_null(strstr(d, "example.com"));
    assert_err(handshake(c, s, "127.0.0.2", ALPN, d), SYNESIS_ERR_PEER_NAME_MISMATCH, d);
    assert_non_null(strstr(d, "127.0.0.2"));
    assert_err(handshake(c, s, "::2", ALPN, d), SYNESIS_ERR_PEER_NAME_MISMATCH, d);
    assert_err(handshake(c, s, "sub.localhost", ALPN, d), SYNESIS_ERR_PEER_NAME_MISMATCH, d);
    SSL_CTX_free(c);
    SSL_CTX_free(s);
}

/* The server presents another certificate than its context's. */
static int handshake_with_edge(SSL_CTX *c, SSL_CTX *s, const char *cert, const char *key, char *d) {
    struct conn k;
    conn_new(&k, c, s, "localhost", ALPN);
    assert_int_equal(SSL_use_certificate_file(k.s.ssl, cert, SSL_FILETYPE_PEM), 1);
    assert_int_equal(SSL_use_PrivateKey_file(k.s.ssl, key, SSL_FILETYPE_PEM), 1);
    conn_run(&k, 0);
    snprintf(d, SYNESIS_DETAIL_MAX, "%s", k.detail);
    int rc = k.ok ? 0 : k.err;
    conn_free(&k);
    return rc;
}

static void test_handshake_edge_expired_or_future(void **state) {
    (void)state;
    char d[SYNESIS_DETAIL_MAX];
    SSL_CTX *c = client_ctx(), *s = server_ctx();
    assert_err(handshake_with_edge(c, s, p("expired-edge.pem"), p("expired-edge.key"), d),
               SYNESIS_ERR_PEER_CERT_EXPIRED, d);
    assert_non_null(strstr(d, "certificate has expired (depth 0)"));
    assert_err(handshake_with_edge(c, s, p("future-edge.pem"), p("future-edge.key"), d),
               SYNESIS_ERR_PEER_UNTRUSTED, d);
    assert_non_null(strstr(d, "clock"));
    /* a device certificate (clientAuth only) presented as the edge's */
    assert_err(handshake_with_edge(c, s, p("gateway.pem"), p("gateway.key"), d),
               SYNESIS_ERR_PEER_UNTRUSTED, d);
    assert_non_null(strstr(d, "unsuitable certificate purpose"));
    SSL_CTX_free(c);
    SSL_CTX_free(s);
}

static void test_handshake_pins(void **state) {
    (void)state;
    char d[SYNESIS_DETAIL_MAX];
    uint8_t pins[3][32];
    memset(pins[0], 0xab, 32); /* wrong */
    assert_int_equal(pki_spki_sha256(p("edge.pem"), pins[1]), 0);
    assert_int_equal(pki_spki_sha256(p("ca.pem"), pins[2]), 0);
    SSL_CTX *s = server_ctx();
    syn_tls_client_config cfg = client_cfg(p("device.pem"), p("device.key"), p("ca.pem"));

    struct {
        size_t first, n;
        int expect;
    } cases[] = {
        {1, 1, 0                            }, /* the edge's own key */
        {2, 1, 0                            }, /* the CA's key (any certificate of the chain) */
        {0, 2, 0                            }, /* a wrong pin and the right one */
        {0, 1, SYNESIS_ERR_PEER_PIN_MISMATCH},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cfg.spki_pins = (const uint8_t(*)[32])pins + cases[i].first;
        cfg.n_spki_pins = cases[i].n;
        SSL_CTX *c = client_ctx_cfg(&cfg);
        assert_err(handshake(c, s, "localhost", ALPN, d), cases[i].expect, d);
        if (cases[i].expect) {
            assert_non_null(strstr(d, "none of the 1 pinned key(s)"));
            synesis_identity_info *info = NULL;
            char dd[SYNESIS_DETAIL_MAX];
            assert_ok(synesis_identity_inspect(p("edge.pem"), &info, dd, sizeof(dd)), dd);
            assert_non_null(strstr(d, info->spki_pin)); /* says which key the edge has */
            synesis_identity_info_free(info);
        }
        SSL_CTX_free(c);
    }
    /* the pins are copied: the caller's array may go away */
    uint8_t *tmp = malloc(32);
    memcpy(tmp, pins[1], 32);
    cfg.spki_pins = (const uint8_t(*)[32])tmp;
    cfg.n_spki_pins = 1;
    SSL_CTX *c = client_ctx_cfg(&cfg);
    memset(tmp, 0, 32);
    free(tmp);
    assert_ok(handshake(c, s, "localhost", ALPN, d), d);
    SSL_CTX_free(c);
    /* pins do not replace chain verification */
    cfg.ca_file = o("ca.pem");
    cfg.spki_pins = (const uint8_t(*)[32])pins + 1;
    c = client_ctx_cfg(&cfg);
    assert_err(handshake(c, s, "localhost", ALPN, d), SYNESIS_ERR_PEER_UNTRUSTED, d);
    SSL_CTX_free(c);
    SSL_CTX_free(s);
}

static void test_handshake_no_client_cert(void **state) {
    (void)state;
    SSL_CTX *c = client_ctx(), *s = server_ctx();
    for (int from_queue = 0; from_queue < 2; from_queue++) {
        struct conn k;
        conn_new(&k, c, s, "localhost", ALPN);
        SSL_certs_clear(k.c.ssl);
        conn_run(&k, from_queue);
        assert_false(k.ok);
        assert_true(k.s.failed);
        assert_int_equal(k.c.alert, SSL_AD_CERTIFICATE_REQUIRED);
        assert_err(k.err, SYNESIS_ERR_CLIENT_CERT_REJECTED, k.detail);
        assert_non_null(strstr(k.detail, "certificate required (116)"));
        char id[64];
        assert_int_equal(syn_tls_peer_device_id(k.s.ssl, id, sizeof(id)),
                         SYNESIS_ERR_INVALID_STATE);
        conn_free(&k);
    }
    SSL_CTX_free(c);
    SSL_CTX_free(s);
}

static void test_handshake_client_cert_rejected(void **state) {
    (void)state;
    char d[SYNESIS_DETAIL_MAX];
    SSL_CTX *s = server_ctx();
    /* a device of another CA (the client trusts our edge) */
    syn_tls_client_config cfg = client_cfg(o("device.pem"), o("device.key"), p("ca.pem"));
    SSL_CTX *c = client_ctx_cfg(&cfg);
    assert_err(handshake(c, s, "localhost", ALPN, d), SYNESIS_ERR_CLIENT_CERT_REJECTED, d);
    assert_non_null(strstr(d, "unknown CA"));
    SSL_CTX_free(c);

    c = client_ctx();
    struct {
        const char *cert, *key, *alert;
    } cases[] = {
        {"expired-device.pem", "expired-device.key", "certificate expired"    },
        {"edge.pem",           "edge.key",           "unsupported certificate"}, /* serverAuth only */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct conn k;
        conn_new(&k, c, s, "localhost", ALPN);
        /* bypass the client context's own checks, as a misbehaving device would */
        assert_int_equal(SSL_use_certificate_file(k.c.ssl, p(cases[i].cert), SSL_FILETYPE_PEM), 1);
        assert_int_equal(SSL_use_PrivateKey_file(k.c.ssl, p(cases[i].key), SSL_FILETYPE_PEM), 1);
        conn_run(&k, (int)i); /* once with the alert passed in, once from the error queue */
        assert_false(k.ok);
        assert_err(k.err, SYNESIS_ERR_CLIENT_CERT_REJECTED, k.detail);
        assert_non_null(strstr(k.detail, cases[i].alert));
        conn_free(&k);
    }
    SSL_CTX_free(c);
    SSL_CTX_free(s);
}

static void test_handshake_alpn(void **state) {
    (void)state;
    char d[SYNESIS_DETAIL_MAX];
    SSL_CTX *c = client_ctx(), *s = server_ctx();
    assert_err(handshake(c, s, "localhost", "h3", d), SYNESIS_ERR_ALPN, d);
    assert_non_null(strstr(d, "no application protocol"));
    assert_err(handshake(c, s, "localhost", NULL, d), SYNESIS_ERR_ALPN, d); /* none offered */
    assert_err(handshake(c, s, "localhost", "synesis-tunnel/", d), SYNESIS_ERR_ALPN, d);
    /* a list with ours second */
    struct conn k;
    conn_new(&k, c, s, "localhost", ALPN);
    static const unsigned char list[] = "\x02h3\x10synesis-tunnel/1";
    assert_int_equal(SSL_set_alpn_protos(k.c.ssl, list, sizeof(list) - 1), 0);
    conn_run(&k, 0);
    assert_true(k.ok);
    conn_free(&k);
    SSL_CTX_free(c);
    SSL_CTX_free(s);
}

static void test_handshake_tls12_refused(void **state) {
    (void)state;
    SSL_CTX *s = server_ctx();
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_max_proto_version(c, TLS1_2_VERSION);
    assert_int_equal(SSL_CTX_load_verify_file(c, p("ca.pem")), 1);
    assert_int_equal(SSL_CTX_use_certificate_file(c, p("device.pem"), SSL_FILETYPE_PEM), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey_file(c, p("device.key"), SSL_FILETYPE_PEM), 1);
    struct conn k;
    conn_new(&k, c, s, "localhost", ALPN);
    conn_run(&k, 0);
    assert_false(k.ok);
    assert_true(k.s.failed);
    assert_int_equal(k.c.alert, SSL_AD_PROTOCOL_VERSION);
    assert_err(k.err, SYNESIS_ERR_TLS_HANDSHAKE, k.detail);
    assert_non_null(strstr(k.detail, "protocol version"));
    conn_free(&k);
    SSL_CTX_free(c);
    SSL_CTX_free(s);
}

static void test_peer_device_id(void **state) {
    (void)state;
    SSL_CTX *s = server_ctx();
    SSL *fresh = SSL_new(s);
    char id[64];
    assert_int_equal(syn_tls_peer_device_id(fresh, id, sizeof(id)), SYNESIS_ERR_INVALID_STATE);
    assert_int_equal(syn_tls_peer_device_id(NULL, id, sizeof(id)), SYNESIS_ERR_INVALID_ARGUMENT);
    SSL_free(fresh);
    /* a CN without the "device-" prefix is taken whole */
    syn_tls_client_config cfg = client_cfg(p("gateway.pem"), p("gateway.key"), p("ca.pem"));
    SSL_CTX *c = client_ctx_cfg(&cfg);
    struct conn k;
    conn_new(&k, c, s, "localhost", ALPN);
    conn_run(&k, 0);
    assert_true(k.ok);
    assert_int_equal(syn_tls_peer_device_id(k.s.ssl, id, sizeof(id)), 0);
    assert_string_equal(id, "gateway-7");
    assert_int_equal(syn_tls_peer_device_id(k.s.ssl, id, strlen("gateway-7") + 1), 0);
    assert_int_equal(syn_tls_peer_device_id(k.s.ssl, id, strlen("gateway-7")),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    conn_free(&k);
    SSL_CTX_free(c);
    SSL_CTX_free(s);
}

static void test_handshake_error_without_ssl(void **state) {
    (void)state;
    char d[SYNESIS_DETAIL_MAX];
    assert_int_equal(syn_tls_client_handshake_error(NULL, 0, d), SYNESIS_ERR_TLS_HANDSHAKE);
    /* an alert on an SSL with no verify failure */
    SSL_CTX *c = client_ctx();
    SSL *ssl = SSL_new(c);
    assert_int_equal(syn_tls_client_handshake_error(ssl, SSL_AD_HANDSHAKE_FAILURE, d),
                     SYNESIS_ERR_TLS_HANDSHAKE);
    assert_non_null(strstr(d, "handshake failure (40)"));
    assert_int_equal(syn_tls_client_handshake_error(ssl, SSL_AD_ACCESS_DENIED, d),
                     SYNESIS_ERR_CLIENT_CERT_REJECTED);
    assert_int_equal(syn_tls_client_handshake_error(ssl, SSL_AD_NO_APPLICATION_PROTOCOL, d),
                     SYNESIS_ERR_ALPN);
    assert_int_equal(syn_tls_client_handshake_error(ssl, 0, d), SYNESIS_ERR_TLS_HANDSHAKE);
    SSL_free(ssl);
    SSL_CTX_free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_ctx_ok),
        cmocka_unit_test(test_client_ctx_in_memory),
        cmocka_unit_test(test_client_ctx_store_uri),
        cmocka_unit_test(test_client_ctx_errors),
        cmocka_unit_test(test_server_ctx),
        cmocka_unit_test(test_ssl_setup),
        cmocka_unit_test(test_handshake_ok),
        cmocka_unit_test(test_handshake_no_session_tickets),
        cmocka_unit_test(test_handshake_untrusted_edge),
        cmocka_unit_test(test_handshake_name_mismatch),
        cmocka_unit_test(test_handshake_edge_expired_or_future),
        cmocka_unit_test(test_handshake_pins),
        cmocka_unit_test(test_handshake_no_client_cert),
        cmocka_unit_test(test_handshake_client_cert_rejected),
        cmocka_unit_test(test_handshake_alpn),
        cmocka_unit_test(test_handshake_tls12_refused),
        cmocka_unit_test(test_peer_device_id),
        cmocka_unit_test(test_handshake_error_without_ssl),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

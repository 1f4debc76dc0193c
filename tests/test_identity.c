/* Identity: generation (checked field by field with OpenSSL), atomic writes, CSR, CA signing,
 * the test PKI, inspection, pins, and every loading error from a real bad file.
 *
 * The tests run as root, for whom no permission bit makes a file unreadable: FILE_UNREADABLE is
 * provoked with a directory and with a FIFO in place of the file instead. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pki_util.h"
#include "synesis/identity.h"

#define DETAIL_SIZE 512

struct fixture {
    char *dir; /* scratch directory of one test */
    char *pki; /* a test PKI shared by the group: ca, edge, device (id "unit-1") */
};

/* synesis_identity_inspect() into *info, releasing what *info held before. */
static int inspect_into(const char *path, synesis_identity_info **info, char *d, size_t n) {
    synesis_identity_info_free(*info);
    *info = NULL;
    return synesis_identity_inspect(path, info, d, n);
}
static struct fixture fx;

static char p1[PATH_MAX], p2[PATH_MAX], p3[PATH_MAX];

static int group_setup(void **state) {
    (void)state;
    fx.pki = pki_tmpdir("identity-pki");
    char d[DETAIL_SIZE];
    rmdir(fx.pki); /* let create_test_pki create it, to check the mode */
    int rc = synesis_identity_create_test_pki(fx.pki, "unit-1", d, sizeof(d));
    if (rc) {
        fprintf(stderr, "test PKI: %s: %s\n", synesis_error_name(rc), d);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    pki_rmtree(fx.pki);
    free(fx.pki);
    return 0;
}

static int setup(void **state) {
    (void)state;
    fx.dir = pki_tmpdir("identity");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    pki_rmtree(fx.dir);
    free(fx.dir);
    fx.dir = NULL;
    return 0;
}

static const char *pki(const char *name) {
    static char buf[4][PATH_MAX];
    static int i;
    i = (i + 1) % 4;
    return pki_path(buf[i], fx.pki, name);
}

static int generate(const char *id, int days, int64_t offset, int overwrite, int csr, char *d) {
    synesis_identity_options o;
    synesis_identity_options_init(&o);
    o.device_id = id;
    o.days = days;
    o.not_before_offset_s = offset;
    o.overwrite = overwrite;
    o.write_csr = csr;
    return synesis_identity_generate(&o, fx.dir, d, DETAIL_SIZE);
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

static void name_entry(X509_NAME *n, int nid, char *out, size_t len) {
    out[0] = '\0';
    int i = X509_NAME_get_index_by_NID(n, nid, -1);
    if (i < 0)
        return;
    unsigned char *u = NULL;
    int ul = ASN1_STRING_to_UTF8(&u, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(n, i)));
    if (ul >= 0)
        snprintf(out, len, "%.*s", ul, (char *)u);
    OPENSSL_free(u);
}

static int ext_critical(X509 *x, int nid) {
    int i = X509_get_ext_by_NID(x, nid, -1);
    return i < 0 ? -1 : X509_EXTENSION_get_critical(X509_get_ext(x, i));
}

static time_t asn1_to_time(const ASN1_TIME *t) {
    struct tm tm;
    assert_int_equal(ASN1_TIME_to_tm(t, &tm), 1);
    return timegm(&tm);
}

static long validity_seconds(X509 *x) {
    int days = 0, secs = 0;
    assert_int_equal(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x), X509_get0_notAfter(x)),
                     1);
    return (long)days * 86400 + secs;
}

/* ---- options, device ids ------------------------------------------------------------------- */

static void test_options_defaults(void **state) {
    (void)state;
    synesis_identity_options o;
    memset(&o, 0x5a, sizeof(o));
    synesis_identity_options_init(&o);
    assert_null(o.device_id);
    assert_int_equal(o.days, 365);
    assert_int_equal(o.not_before_offset_s, 0);
    assert_null(o.ca_cert_file);
    assert_null(o.ca_key_file);
    assert_int_equal(o.overwrite, 0);
    assert_int_equal(o.write_csr, 0);
    assert_string_equal(o.cert_name, "device.pem");
    assert_string_equal(o.key_name, "device.key");
    assert_string_equal(o.csr_name, "device.csr");

    synesis_pki_cert_options c;
    synesis_pki_cert_options_init(&c, SYNESIS_CERT_PROFILE_CA);
    assert_int_equal(c.days, 3650);
    assert_string_equal(c.organization, "SuperInstance");
    synesis_pki_cert_options_init(&c, SYNESIS_CERT_PROFILE_SERVER);
    assert_int_equal(c.days, 365);
    assert_int_equal(c.profile, SYNESIS_CERT_PROFILE_SERVER);
}

static void test_validate_device_id(void **state) {
    (void)state;
    char d[DETAIL_SIZE];
    const char *good[] = {"a",
                          "abc-123",
                          "A.b_c:d@e",
                          "0123456789abcdef",
                          "123e4567-e89b-12d3-a456-426614174000",
                          "123456789012345678901234567890123456789012345678901234567"}; /* 57 */
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_ok(synesis_identity_validate_device_id(good[i], d, sizeof(d)), d);
    const char *bad[] = {
        "",     "a/b",
        "a b",  "tab\there",
        "nl\n", "caf\xc3\xa9",
        "x\\y", "q\"",
        "c,o",  "1234567890123456789012345678901234567890123456789012345678"}; /* 58 */
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        d[0] = '\0';
        assert_err(synesis_identity_validate_device_id(bad[i], d, sizeof(d)),
                   SYNESIS_ERR_INVALID_ARGUMENT, d);
        assert_true(strlen(d) > 0);
    }
    assert_int_equal(synesis_identity_validate_device_id(NULL, NULL, 0),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(synesis_identity_validate_device_id("a/b", d, sizeof(d)),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(d, "'/'"));
}

static void test_generate_invalid_arguments(void **state) {
    (void)state;
    char d[DETAIL_SIZE];
    synesis_identity_options o;
    synesis_identity_options_init(&o);
    assert_int_equal(synesis_identity_generate(NULL, fx.dir, d, sizeof(d)),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    o.device_id = "ok";
    assert_int_equal(synesis_identity_generate(&o, NULL, d, sizeof(d)),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    o.device_id = NULL;
    assert_int_equal(synesis_identity_generate(&o, fx.dir, d, sizeof(d)),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    o.device_id = "../etc";
    assert_int_equal(synesis_identity_generate(&o, fx.dir, d, sizeof(d)),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    o.device_id = "ok";
    o.days = 0;
    assert_int_equal(synesis_identity_generate(&o, fx.dir, d, sizeof(d)),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(d, "days"));
    o.days = 36526;
    assert_int_equal(synesis_identity_generate(&o, fx.dir, d, sizeof(d)),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    o.days = 365;
    o.cert_name = "sub/device.pem";
    assert_int_equal(synesis_identity_generate(&o, fx.dir, d, sizeof(d)),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    o.cert_name = "device.key";
    assert_int_equal(synesis_identity_generate(&o, fx.dir, d, sizeof(d)),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    o.cert_name = "device.pem";
    o.ca_cert_file = pki("ca.pem"); /* without the key */
    assert_int_equal(synesis_identity_generate(&o, fx.dir, d, sizeof(d)),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(pki_count_entries(fx.dir), 0);
}

/* ---- generation ---------------------------------------------------------------------------- */

static void test_generate_self_signed_fields(void **state) {
    (void)state;
    char d[DETAIL_SIZE] = "junk";
    time_t before = time(NULL);
    assert_ok(generate("abc-123", 365, 0, 0, 0, d), d);
    time_t after = time(NULL);
    assert_string_equal(d, ""); /* cleared on success */

    X509 *x = pki_load_cert(pki_path(p1, fx.dir, "device.pem"));
    EVP_PKEY *k = pki_load_key(pki_path(p2, fx.dir, "device.key"));
    assert_non_null(x);
    assert_non_null(k);
    assert_int_equal(X509_get_version(x), X509_VERSION_3);

    char buf[128];
    name_entry(X509_get_subject_name(x), NID_commonName, buf, sizeof(buf));
    assert_string_equal(buf, "device-abc-123");
    name_entry(X509_get_subject_name(x), NID_organizationName, buf, sizeof(buf));
    assert_string_equal(buf, "SuperInstance");
    assert_int_equal(X509_NAME_entry_count(X509_get_subject_name(x)), 2);
    assert_int_equal(X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)), 0);

    /* extensions */
    uint32_t xku = X509_get_extended_key_usage(x);
    assert_true(xku & XKU_SSL_CLIENT);
    assert_false(xku & XKU_SSL_SERVER);
    assert_int_equal(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE);
    assert_int_equal(ext_critical(x, NID_key_usage), 1);
    assert_int_equal(ext_critical(x, NID_basic_constraints), 1);
    assert_int_equal(ext_critical(x, NID_ext_key_usage), 0);
    assert_false(X509_get_extension_flags(x) & EXFLAG_CA);
    assert_true(X509_get_extension_flags(x) & EXFLAG_BCONS);
    assert_non_null(X509_get0_subject_key_id(x));
    assert_non_null(X509_get0_authority_key_id(x));
    assert_int_equal(
        ASN1_OCTET_STRING_cmp(X509_get0_subject_key_id(x), X509_get0_authority_key_id(x)), 0);

    /* key: EC prime256v1, matching the certificate */
    assert_true(EVP_PKEY_is_a(k, "EC"));
    char group[64];
    assert_int_equal(
        EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), NULL),
        1);
    assert_string_equal(group, "prime256v1");
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(x), k), 1);

    /* validity: exactly 365 days from (about) now */
    assert_int_equal(validity_seconds(x), 365L * 86400);
    time_t nb = asn1_to_time(X509_get0_notBefore(x));
    assert_true(nb >= before && nb <= after);

    /* serial: positive, 16 bytes, 127 bits */
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    assert_false(BN_is_negative(bn));
    assert_int_equal(BN_num_bits(bn), 127);
    BN_free(bn);

    /* signature: ECDSA with SHA-256, verifies with its own key */
    assert_int_equal(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);
    assert_int_equal(X509_verify(x, k), 1);
    assert_int_equal(X509_self_signed(x, 1), 1);

    /* the key file is PKCS#8 */
    char *pem = pki_read_file(p2, NULL);
    assert_non_null(pem);
    assert_non_null(strstr(pem, "-----BEGIN PRIVATE KEY-----"));
    free(pem);
    X509_free(x);
    EVP_PKEY_free(k);
}

static void test_generate_days_and_offset(void **state) {
    (void)state;
    char d[DETAIL_SIZE];
    time_t now = time(NULL);
    assert_ok(generate("days", 30, -3600, 0, 0, d), d);
    X509 *x = pki_load_cert(pki_path(p1, fx.dir, "device.pem"));
    assert_non_null(x);
    assert_int_equal(validity_seconds(x), 30L * 86400);
    time_t nb = asn1_to_time(X509_get0_notBefore(x));
    assert_true(nb >= now - 3600 && nb <= time(NULL) - 3600);
    X509_free(x);
}

static void test_two_generations_differ(void **state) {
    (void)state;
    char d[DETAIL_SIZE];
    assert_ok(generate("same", 365, 0, 0, 0, d), d);
    X509 *a = pki_load_cert(pki_path(p1, fx.dir, "device.pem"));
    EVP_PKEY *ka = pki_load_key(pki_path(p2, fx.dir, "device.key"));
    assert_ok(generate("same", 365, 0, 1, 0, d), d);
    X509 *b = pki_load_cert(p1);
    EVP_PKEY *kb = pki_load_key(p2);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_not_equal(ASN1_INTEGER_cmp(X509_get0_serialNumber(a), X509_get0_serialNumber(b)), 0);
    assert_int_not_equal(EVP_PKEY_eq(ka, kb), 1);
    X509_free(a);
    X509_free(b);
    EVP_PKEY_free(ka);
    EVP_PKEY_free(kb);
}

static void test_file_modes_and_no_temp_files(void **state) {
    (void)state;
    char d[DETAIL_SIZE];
    mode_t old = umask(0); /* the modes must not depend on the umask */
    assert_ok(generate("modes", 365, 0, 0, 1, d), d);
    umask(077);
    assert_ok(generate("modes", 365, 0, 1, 1, d), d);
    umask(old);
    struct stat st;
    assert_int_equal(stat(pki_path(p1, fx.dir, "device.key"), &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(stat(pki_path(p1, fx.dir, "device.pem"), &st), 0);
    assert_int_equal(st.st_mode & 07777, 0644);
    assert_int_equal(stat(pki_path(p1, fx.dir, "device.csr"), &st), 0);
    assert_int_equal(st.st_mode & 07777, 0644);
    assert_int_equal(pki_count_entries(fx.dir), 3); /* no temporary files left */
}

static void test_output_dir_created(void **state) {
    (void)state;
    char d[DETAIL_SIZE];
    synesis_identity_options o;
    synesis_identity_options_init(&o);
    o.device_id = "mkdir";
    o.key_name = "id.key";
    o.cert_name = "id.crt";
    assert_ok(synesis_identity_generate(&o, pki_path(p1, fx.dir, "a/b/c"), d, sizeof(d)), d);
    struct stat st;
    assert_int_equal(stat(p1, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(stat(pki_path(p2, p1, "id.key"), &st), 0);
    assert_int_equal(stat(pki_path(p2, p1, "id.crt"), &st), 0);
    assert_int_equal(pki_count_entries(p1), 2);
}

static void test_no_overwrite_without_flag(void **state) {
    (void)state;
    char d[DETAIL_SIZE];
    assert_ok(generate("keep", 365, 0, 0, 0, d), d);
    size_t n1, n2;
    char *cert1 = pki_read_file(pki_path(p1, fx.dir, "device.pem"), &n1);
    char *key1 = pki_read_file(pki_path(p2, fx.dir, "device.key"), &n2);

    assert_err(generate("keep", 365, 0, 0, 0, d), SYNESIS_ERR_FILE_EXISTS, d);
    assert_non_null(strstr(d, fx.dir));
    char *cert2 = pki_read_file(p1, NULL), *key2 = pki_read_file(p2, NULL);
    assert_string_equal(cert1, cert2);
    assert_string_equal(key1, key2);
    free(cert2);
    free(key2);
    assert_int_equal(pki_count_entries(fx.dir), 2);

    /* Only the certificate is left: still refused, naming it, and no key is written. */
    assert_int_equal(unlink(p2), 0);
    assert_err(generate("keep", 365, 0, 0, 0, d), SYNESIS_ERR_FILE_EXISTS, d);
    assert_non_null(strstr(d, "device.pem"));
    assert_int_equal(access(p2, F_OK), -1);
    assert_int_equal(pki_count_entries(fx.dir), 1);

    /* A CSR target that exists blocks everything too. */
    assert_int_equal(unlink(p1), 0);
    assert_int_equal(pki_write_file(pki_path(p3, fx.dir, "device.csr"), "x", 1, 0644), 0);
    assert_err(generate("keep", 365, 0, 0, 1, d), SYNESIS_ERR_FILE_EXISTS, d);
    assert_non_null(strstr(d, "device.csr"));
    assert_int_equal(pki_count_entries(fx.dir), 1);
    assert_int_equal(unlink(p3), 0);

    /* With the flag, replaced (the key keeps mode 0600). */
    assert_ok(generate("keep", 365, 0, 0, 0, d), d);
    char *cert3 = pki_read_file(p1, NULL);
    assert_ok(generate("keep", 365, 0, 1, 0, d), d);
    char *cert4 = pki_read_file(p1, NULL);
    assert_string_not_equal(cert3, cert4);
    struct stat st;
    assert_int_equal(stat(p2, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(pki_count_entries(fx.dir), 2);
    free(cert1);
    free(key1);
    free(cert3);
    free(cert4);
}

static void test_csr(void **state) {
    (void)state;
    char d[DETAIL_SIZE];
    assert_ok(generate("csr-1", 365, 0, 0, 1, d), d);
    X509_REQ *r = pki_load_csr(pki_path(p1, fx.dir, "device.csr"));
    EVP_PKEY *k = pki_load_key(pki_path(p2, fx.dir, "device.key"));
    assert_non_null(r);
    assert_non_null(k);
    EVP_PKEY *pub = X509_REQ_get0_pubkey(r);
    assert_int_equal(X509_REQ_verify(r, pub), 1);
    assert_int_equal(EVP_PKEY_eq(pub, k), 1);
    char buf[128];
    name_entry(X509_REQ_get_subject_name(r), NID_commonName, buf, sizeof(buf));
    assert_string_equal(buf, "device-csr-1");
    name_entry(X509_REQ_get_subject_name(r), NID_organizationName, buf, sizeof(buf));
    assert_string_equal(buf, "SuperInstance");
    assert_int_equal(X509_REQ_get_signature_nid(r), NID_ecdsa_with_SHA256);
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(r);
    int eku = X509v3_get_ext_by_NID(exts, NID_ext_key_usage, -1);
    assert_true(eku >= 0);
    EXTENDED_KEY_USAGE *e = X509V3_EXT_d2i(sk_X509_EXTENSION_value(exts, eku));
    assert_non_null(e);
    assert_int_equal(sk_ASN1_OBJECT_num(e), 1);
    assert_int_equal(OBJ_obj2nid(sk_ASN1_OBJECT_value(e, 0)), NID_client_auth);
    EXTENDED_KEY_USAGE_free(e);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_free(r);
    EVP_PKEY_free(k);
}

static int verify_chain_q(const char *ca, const char *leaf, int purpose, int quiet) {
    X509 *c = pki_load_cert(ca), *l = pki_load_cert(leaf);
    X509_STORE *st = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    X509_STORE_add_cert(st, c);
    X509_STORE_CTX_init(ctx, st, l, NULL);
    X509_STORE_CTX_set_purpose(ctx, purpose);
    int ok = X509_verify_cert(ctx);
    if (ok != 1 && !quiet)
        fprintf(stderr, "verify %s: %s\n", leaf,
                X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(st);
    X509_free(c);
    X509_free(l);
    return ok;
}

static int verify_chain(const char *ca, const char *leaf, int purpose) {
    return verify_chain_q(ca, leaf, purpose, 0);
}

static void test_ca_signed(void **state) {
    (void)state;
    char d[DETAIL_SIZE];
    synesis_identity_options o;
    synesis_identity_options_init(&o);
    o.device_id = "signed-1";
    o.ca_cert_file = pki("ca.pem");
    o.ca_key_file = pki("ca.key");
    o.write_csr = 1;
    assert_ok(synesis_identity_generate(&o, fx.dir, d, sizeof(d)), d);
    pki_path(p1, fx.dir, "device.pem");
    assert_int_equal(verify_chain(pki("ca.pem"), p1, X509_PURPOSE_SSL_CLIENT), 1);
    assert_int_not_equal(verify_chain_q(pki("ca.pem"), p1, X509_PURPOSE_SSL_SERVER, 1),
                         1); /* clientAuth only */

    X509 *x = pki_load_cert(p1), *ca = pki_load_cert(pki("ca.pem"));
    assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(ca)), 0);
    assert_int_equal(
        ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(x), X509_get0_subject_key_id(ca)), 0);
    assert_int_not_equal(
        ASN1_OCTET_STRING_cmp(X509_get0_subject_key_id(x), X509_get0_subject_key_id(ca)), 0);
    assert_int_equal(X509_self_signed(x, 1), 0);
    assert_int_equal(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);
    X509_free(x);
    X509_free(ca);

    synesis_identity_info *info = NULL;
    assert_ok(inspect_into(p1, &info, d, sizeof(d)), d);
    assert_string_equal(info->device_id, "signed-1");
    assert_string_equal(info->issuer, "CN=Synesis Test CA, O=SuperInstance");
    assert_int_equal(info->self_signed, 0);
    assert_ok(synesis_identity_check(p1, pki_path(p2, fx.dir, "device.key"), NULL, d, sizeof(d)),
              d);
    synesis_identity_info_free(info);
}

static void test_ca_errors(void **state) {
    (void)state;
    char d[DETAIL_SIZE];
    synesis_identity_options o;
    synesis_identity_options_init(&o);
    o.device_id = "ca-err";
    /* a device certificate is no CA */
    o.ca_cert_file = pki("device.pem");
    o.ca_key_file = pki("device.key");
    assert_err(synesis_identity_generate(&o, fx.dir, d, sizeof(d)), SYNESIS_ERR_BAD_CERTIFICATE, d);
    assert_non_null(strstr(d, "not a CA"));
    /* CA key that is not the CA's */
    o.ca_cert_file = pki("ca.pem");
    o.ca_key_file = pki("edge.key");
    assert_err(synesis_identity_generate(&o, fx.dir, d, sizeof(d)), SYNESIS_ERR_KEY_MISMATCH, d);
    /* CA key readable by others */
    size_t n;
    char *key = pki_read_file(pki("ca.key"), &n);
    assert_int_equal(pki_write_file(pki_path(p1, fx.dir, "ca-open.key"), key, n, 0644), 0);
    free(key);
    o.ca_key_file = p1;
    assert_err(synesis_identity_generate(&o, fx.dir, d, sizeof(d)), SYNESIS_ERR_KEY_PERMISSIONS, d);
    o.ca_key_file = pki_path(p2, fx.dir, "missing.key");
    assert_err(synesis_identity_generate(&o, fx.dir, d, sizeof(d)), SYNESIS_ERR_FILE_NOT_FOUND, d);
    /* a failure creates no output directory */
    assert_err(synesis_identity_generate(&o, pki_path(p3, fx.dir, "new/dir"), d, sizeof(d)),
               SYNESIS_ERR_FILE_NOT_FOUND, d);
    assert_int_equal(pki_count_entries(fx.dir), 1); /* only ca-open.key */
}

static void test_test_pki(void **state) {
    (void)state;
    char d[DETAIL_SIZE];
    struct stat st;
    assert_int_equal(stat(fx.pki, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(pki_count_entries(fx.pki), 6);
    const char *keys[] = {"ca.key", "edge.key", "device.key"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(stat(pki(keys[i]), &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
    }

    X509 *ca = pki_load_cert(pki("ca.pem"));
    assert_true(X509_get_extension_flags(ca) & EXFLAG_CA);
    assert_int_equal(ext_critical(ca, NID_basic_constraints), 1);
    assert_int_equal(ext_critical(ca, NID_key_usage), 1);
    assert_int_equal(X509_get_key_usage(ca), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
    assert_int_equal(X509_self_signed(ca, 1), 1);
    assert_int_equal(validity_seconds(ca), 3650L * 86400);
    X509_free(ca);

    X509 *edge = pki_load_cert(pki("edge.pem"));
    assert_true(X509_get_extended_key_usage(edge) & XKU_SSL_SERVER);
    assert_false(X509_get_extended_key_usage(edge) & XKU_SSL_CLIENT);
    assert_int_equal(X509_check_host(edge, "localhost", 0, 0, NULL), 1);
    assert_int_equal(X509_check_host(edge, "example.com", 0, 0, NULL), 0);
    assert_int_equal(X509_check_ip_asc(edge, "127.0.0.1", 0), 1);
    assert_int_equal(X509_check_ip_asc(edge, "::1", 0), 1);
    assert_int_equal(X509_check_ip_asc(edge, "127.0.0.2", 0), 0);
    GENERAL_NAMES *gens = X509_get_ext_d2i(edge, NID_subject_alt_name, NULL, NULL);
    assert_int_equal(sk_GENERAL_NAME_num(gens), 3);
    GENERAL_NAMES_free(gens);
    X509_free(edge);

    assert_int_equal(verify_chain(pki("ca.pem"), pki("edge.pem"), X509_PURPOSE_SSL_SERVER), 1);
    assert_int_equal(verify_chain(pki("ca.pem"), pki("device.pem"), X509_PURPOSE_SSL_CLIENT), 1);
    assert_ok(synesis_identity_check(pki("edge.pem"), pki("edge.key"), NULL, d, sizeof(d)), d);
    assert_ok(synesis_identity_check(pki("device.pem"), pki("device.key"), NULL, d, sizeof(d)), d);
    assert_ok(synesis_identity_check(pki("ca.pem"), pki("ca.key"), NULL, d, sizeof(d)), d);

    /* never overwrites */
    assert_err(synesis_identity_create_test_pki(fx.pki, "unit-1", d, sizeof(d)),
               SYNESIS_ERR_FILE_EXISTS, d);
    assert_non_null(strstr(d, "ca.pem"));
    assert_err(synesis_identity_create_test_pki(fx.dir, "bad/id", d, sizeof(d)),
               SYNESIS_ERR_INVALID_ARGUMENT, d);
    assert_int_equal(pki_count_entries(fx.dir), 0);
}

static void test_pki_create_cert_profiles(void **state) {
    (void)state;
    char d[DETAIL_SIZE];
    synesis_pki_cert_options o;
    synesis_pki_cert_options_init(&o, SYNESIS_CERT_PROFILE_SERVER);
    o.common_name = "edge.example";
    assert_err(synesis_pki_create_cert(&o, pki_path(p1, fx.dir, "s.pem"),
                                       pki_path(p2, fx.dir, "s.key"), d, sizeof(d)),
               SYNESIS_ERR_INVALID_ARGUMENT, d); /* a server needs alt names */
    const char *names[] = {"edge.example", "*.edge.example", "10.0.0.1", "fe80::1"};
    o.alt_names = names;
    o.n_alt_names = 4;
    o.issuer_cert_file = pki("ca.pem");
    o.issuer_key_file = pki("ca.key");
    assert_ok(synesis_pki_create_cert(&o, p1, p2, d, sizeof(d)), d);
    X509 *x = pki_load_cert(p1);
    assert_int_equal(X509_check_host(x, "a.edge.example", 0, 0, NULL), 1);
    assert_int_equal(X509_check_ip_asc(x, "fe80::1", 0), 1);
    X509_free(x);
    assert_int_equal(verify_chain(pki("ca.pem"), p1, X509_PURPOSE_SSL_SERVER), 1);

    const char *bad[] = {"bad name"};
    o.alt_names = bad;
    o.n_alt_names = 1;
    assert_err(synesis_pki_create_cert(&o, pki_path(p1, fx.dir, "t.pem"), p2, d, sizeof(d)),
               SYNESIS_ERR_INVALID_ARGUMENT, d);
    assert_non_null(strstr(d, "bad name"));
    /* parent directory missing */
    synesis_pki_cert_options_init(&o, SYNESIS_CERT_PROFILE_CA);
    o.common_name = "CA 2";
    assert_err(synesis_pki_create_cert(&o, pki_path(p1, fx.dir, "no/ca.pem"),
                                       pki_path(p2, fx.dir, "no/ca.key"), d, sizeof(d)),
               SYNESIS_ERR_FILE_NOT_FOUND, d);
    o.csr_file = p3;
    assert_err(synesis_pki_create_cert(&o, p1, p2, d, sizeof(d)), SYNESIS_ERR_INVALID_ARGUMENT, d);
    o.csr_file = NULL;
    o.common_name = "12345678901234567890123456789012345678901234567890123456789012345"; /* 65 */
    assert_err(synesis_pki_create_cert(&o, p1, p2, d, sizeof(d)), SYNESIS_ERR_INVALID_ARGUMENT, d);
    o.common_name = "Ünïcode CA ✓";
    assert_ok(synesis_pki_create_cert(&o, pki_path(p1, fx.dir, "u.pem"),
                                      pki_path(p2, fx.dir, "u.key"), d, sizeof(d)),
              d);
    synesis_identity_info *info = NULL;
    assert_ok(inspect_into(p1, &info, d, sizeof(d)), d);
    assert_string_equal(info->common_name, "Ünïcode CA ✓");
    assert_int_equal(info->is_ca, 1);
    assert_int_equal(info->self_signed, 1);
    assert_string_equal(info->device_id, "");
    synesis_identity_info_free(info);
}

/* ---- inspection ---------------------------------------------------------------------------- */

static void test_inspect(void **state) {
    (void)state;
    char d[DETAIL_SIZE];
    assert_ok(generate("inspect-7", 10, 0, 0, 0, d), d);
    synesis_identity_info *info = NULL;
    assert_ok(inspect_into(pki_path(p1, fx.dir, "device.pem"), &info, d, sizeof(d)), d);
    assert_int_equal(info->struct_size, sizeof(synesis_identity_info));
    assert_string_equal(info->device_id, "inspect-7");
    assert_string_equal(info->common_name, "device-inspect-7");
    assert_string_equal(info->subject, "CN=device-inspect-7, O=SuperInstance");
    assert_string_equal(info->issuer, info->subject);
    assert_int_equal(info->self_signed, 1);
    assert_int_equal(info->is_ca, 0);
    assert_int_equal(info->chain_length, 1);
    assert_string_equal(info->key_type, "EC P-256");
    assert_int_equal(info->not_after - info->not_before, 10L * 86400);
    assert_true(llabs((long long)(info->not_before - time(NULL))) < 60);

    X509 *x = pki_load_cert(p1);
    unsigned char md[32];
    unsigned int mdlen;
    assert_int_equal(X509_digest(x, EVP_sha256(), md, &mdlen), 1);
    assert_memory_equal(md, info->fingerprint_sha256_raw, 32);
    char hex[96];
    for (int i = 0; i < 32; i++)
        snprintf(hex + i * 3, sizeof(hex) - (size_t)i * 3, i < 31 ? "%02X:" : "%02X", md[i]);
    assert_string_equal(info->fingerprint_sha256, hex);
    assert_int_equal(strlen(info->fingerprint_sha256), 95);

    /* serial as uppercase hex with colons, 16 bytes */
    assert_int_equal(strlen(info->serial), 16 * 3 - 1);
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *bnhex = BN_bn2hex(bn);
    char flat[64];
    size_t j = 0;
    for (const char *p = info->serial; *p; p++)
        if (*p != ':')
            flat[j++] = *p;
    flat[j] = '\0';
    assert_string_equal(flat, bnhex);
    OPENSSL_free(bnhex);
    BN_free(bn);

    /* the SPKI pin round-trips through the parser and equals OpenSSL's hash */
    unsigned char spki[32];
    assert_int_equal(pki_spki_sha256(p1, spki), 0);
    assert_memory_equal(spki, info->spki_sha256, 32);
    assert_int_equal(strncmp(info->spki_pin, "sha256//", 8), 0);
    assert_int_equal(strlen(info->spki_pin), 8 + 44);
    uint8_t pin[32];
    assert_int_equal(synesis_spki_pin_parse(info->spki_pin, pin), 0);
    assert_memory_equal(pin, spki, 32);
    X509_free(x);

    /* the CA and the edge */
    assert_ok(inspect_into(pki("ca.pem"), &info, d, sizeof(d)), d);
    assert_int_equal(info->is_ca, 1);
    assert_int_equal(info->self_signed, 1);
    assert_string_equal(info->device_id, "");
    assert_string_equal(info->subject, "CN=Synesis Test CA, O=SuperInstance");
    assert_ok(inspect_into(pki("edge.pem"), &info, d, sizeof(d)), d);
    assert_string_equal(info->common_name, "localhost");
    assert_string_equal(info->device_id, "");
    assert_int_equal(info->self_signed, 0);

    /* a chain file reports its first certificate and the length */
    size_t n1, n2;
    char *a = pki_read_file(pki("device.pem"), &n1), *b = pki_read_file(pki("ca.pem"), &n2);
    char *both = malloc(n1 + n2);
    memcpy(both, a, n1);
    memcpy(both + n1, b, n2);
    assert_int_equal(pki_write_file(pki_path(p2, fx.dir, "chain.pem"), both, n1 + n2, 0644), 0);
    assert_ok(inspect_into(p2, &info, d, sizeof(d)), d);
    assert_int_equal(info->chain_length, 2);
    assert_string_equal(info->device_id, "unit-1");
    free(a);
    free(b);
    free(both);

    /* inspection does not judge dates; errors are the loading errors */
    assert_ok(generate("old", 1, -10L * 86400, 1, 0, d), d);
    assert_ok(inspect_into(p1, &info, d, sizeof(d)), d);
    assert_true(info->not_after < time(NULL));
    assert_err(inspect_into(pki_path(p3, fx.dir, "none.pem"), &info, d, sizeof(d)),
               SYNESIS_ERR_FILE_NOT_FOUND, d);
    assert_err(inspect_into(pki("ca.key"), &info, d, sizeof(d)), SYNESIS_ERR_NO_CERTIFICATE, d);
    assert_int_equal(synesis_identity_inspect(NULL, &info, NULL, 0), SYNESIS_ERR_INVALID_ARGUMENT);
    assert_null(info);
    assert_int_equal(synesis_identity_inspect(p1, NULL, NULL, 0), SYNESIS_ERR_INVALID_ARGUMENT);
    synesis_identity_info_free(NULL);
    synesis_identity_info_free(info);
}

static void test_pin_parse(void **state) {
    (void)state;
    uint8_t pin[32], want[32];
    for (int i = 0; i < 32; i++)
        want[i] = (uint8_t)(i * 7 + 1);
    char hex[65], colons[96];
    for (int i = 0; i < 32; i++) {
        snprintf(hex + i * 2, 3, "%02x", want[i]);
        snprintf(colons + i * 3, sizeof(colons) - (size_t)i * 3, i < 31 ? "%02X:" : "%02X",
                 want[i]);
    }
    unsigned char b64[48];
    EVP_EncodeBlock(b64, want, 32);
    char pinstr[64];
    snprintf(pinstr, sizeof(pinstr), "sha256//%s", (char *)b64);

    memset(pin, 0, 32);
    assert_int_equal(synesis_spki_pin_parse(hex, pin), 0);
    assert_memory_equal(pin, want, 32);
    memset(pin, 0, 32);
    assert_int_equal(synesis_spki_pin_parse(colons, pin), 0);
    assert_memory_equal(pin, want, 32);
    memset(pin, 0, 32);
    assert_int_equal(synesis_spki_pin_parse(pinstr, pin), 0);
    assert_memory_equal(pin, want, 32);

    char bad[128];
    const char *bads[] = {"", "sha256//", "sha1//AAAA", "00", "zz"};
    for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++)
        assert_int_equal(synesis_spki_pin_parse(bads[i], pin), SYNESIS_ERR_INVALID_ARGUMENT);
    snprintf(bad, sizeof(bad), "%s00", hex); /* 66 digits */
    assert_int_equal(synesis_spki_pin_parse(bad, pin), SYNESIS_ERR_INVALID_ARGUMENT);
    snprintf(bad, sizeof(bad), "%s", hex);
    bad[10] = 'g';
    assert_int_equal(synesis_spki_pin_parse(bad, pin), SYNESIS_ERR_INVALID_ARGUMENT);
    snprintf(bad, sizeof(bad), "%s", colons);
    bad[2] = '-';
    assert_int_equal(synesis_spki_pin_parse(bad, pin), SYNESIS_ERR_INVALID_ARGUMENT);
    snprintf(bad, sizeof(bad), "%s", pinstr);
    bad[20] = '*';
    assert_int_equal(synesis_spki_pin_parse(bad, pin), SYNESIS_ERR_INVALID_ARGUMENT);
    snprintf(bad, sizeof(bad), "%s", pinstr);
    bad[strlen(bad) - 1] = 'A'; /* 33 bytes: no padding */
    assert_int_equal(synesis_spki_pin_parse(bad, pin), SYNESIS_ERR_INVALID_ARGUMENT);
    snprintf(bad, sizeof(bad), "%.*s", (int)strlen(pinstr) - 4, pinstr); /* 30 bytes */
    assert_int_equal(synesis_spki_pin_parse(bad, pin), SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(synesis_spki_pin_parse(NULL, pin), SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(synesis_spki_pin_parse(hex, NULL), SYNESIS_ERR_INVALID_ARGUMENT);
}

/* ---- loading errors, each from a real bad file --------------------------------------------- */

static const char *copy_to(const char *src, const char *name, mode_t mode) {
    static char buf[4][PATH_MAX];
    static int i;
    i = (i + 1) % 4;
    size_t n;
    char *data = pki_read_file(src, &n);
    assert_non_null(data);
    assert_int_equal(pki_write_file(pki_path(buf[i], fx.dir, name), data, n, mode), 0);
    free(data);
    return buf[i];
}

static void test_load_ok_and_combined_file(void **state) {
    (void)state;
    char d[DETAIL_SIZE];
    assert_ok(synesis_identity_check(pki("device.pem"), pki("device.key"), NULL, d, sizeof(d)), d);
    /* certificate and key in one file (mode 0600), key_path NULL */
    size_t n1, n2;
    char *c = pki_read_file(pki("device.pem"), &n1), *k = pki_read_file(pki("device.key"), &n2);
    char *both = malloc(n1 + n2);
    memcpy(both, c, n1);
    memcpy(both + n1, k, n2);
    assert_int_equal(pki_write_file(pki_path(p1, fx.dir, "both.pem"), both, n1 + n2, 0600), 0);
    assert_ok(synesis_identity_check(p1, NULL, NULL, d, sizeof(d)), d);
    assert_ok(synesis_identity_check(p1, p1, NULL, d, sizeof(d)), d);
    /* a chain file with the CA after the leaf */
    char *ca = pki_read_file(pki("ca.pem"), &n2);
    char *chain = malloc(n1 + n2);
    memcpy(chain, c, n1);
    memcpy(chain + n1, ca, n2);
    assert_int_equal(pki_write_file(pki_path(p2, fx.dir, "chain.pem"), chain, n1 + n2, 0644), 0);
    assert_ok(synesis_identity_check(p2, pki("device.key"), NULL, d, sizeof(d)), d);
    free(c);
    free(k);
    free(ca);
    free(both);
    free(chain);
    assert_int_equal(synesis_identity_check(NULL, NULL, NULL, NULL, 0),
                     SYNESIS_ERR_INVALID_ARGUMENT);
}

static void test_err_file_not_found(void **state) {
    (void)state;
    char d[DETAIL_SIZE];
    pki_path(p1, fx.dir, "missing.pem");
    assert_err(synesis_identity_check(p1, pki("device.key"), NULL, d, sizeof(d)),
               SYNESIS_ERR_FILE_NOT_FOUND, d);
    assert_non_null(strstr(d, p1));
    pki_path(p2, fx.dir, "missing.key");
    assert_err(synesis_identity_check(pki("device.pem"), p2, NULL, d, sizeof(d)),
               SYNESIS_ERR_FILE_NOT_FOUND, d);
    assert_non_null(strstr(d, p2));
    assert_non_null(strstr(d, "private key"));
    /* a path through a file (ENOTDIR) is "not found" too */
    pki_path(p3, fx.dir, "missing.pem/x");
    assert_int_equal(pki_write_file(p1, "x", 1, 0644), 0);
    assert_err(synesis_identity_check(p3, NULL, NULL, d, sizeof(d)), SYNESIS_ERR_FILE_NOT_FOUND, d);
}

static void test_err_file_unreadable(void **state) {
    (void)state;
    char d[DETAIL_SIZE];
    /* root reads every file, so: a directory where the file should be ... */
    pki_path(p1, fx.dir, "dir.pem");
    assert_int_equal(mkdir(p1, 0755), 0);
    assert_err(synesis_identity_check(p1, pki("device.key"), NULL, d, sizeof(d)),
               SYNESIS_ERR_FILE_UNREADABLE, d);
    assert_non_null(strstr(d, "directory"));
    assert_non_null(strstr(d, p1));
    assert_err(synesis_identity_check(pki("device.pem"), p1, NULL, d, sizeof(d)),
               SYNESIS_ERR_FILE_UNREADABLE, d);
    /* ... and a FIFO (opened non-blocking, refused as not a regular file) */
    pki_path(p2, fx.dir, "fifo.key");
    assert_int_equal(mkfifo(p2, 0600), 0);
    assert_err(synesis_identity_check(pki("device.pem"), p2, NULL, d, sizeof(d)),
               SYNESIS_ERR_FILE_UNREADABLE, d);
    assert_non_null(strstr(d, "not a regular file"));
    /* and a file over the 1 MiB limit */
    char *big = calloc(1, 1024 * 1024 + 1);
    assert_int_equal(pki_write_file(pki_path(p3, fx.dir, "big.pem"), big, 1024 * 1024 + 1, 0644),
                     0);
    free(big);
    assert_err(synesis_identity_check(p3, pki("device.key"), NULL, d, sizeof(d)),
               SYNESIS_ERR_FILE_UNREADABLE, d);
    assert_non_null(strstr(d, "too large"));
}

static void test_err_not_pem(void **state) {
    (void)state;
    char d[DETAIL_SIZE];
    /* a DER certificate */
    X509 *x = pki_load_cert(pki("device.pem"));
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    assert_int_equal(pki_write_file(pki_path(p1, fx.dir, "der.crt"), der, (size_t)n, 0644), 0);
    OPENSSL_free(der);
    X509_free(x);
    assert_err(synesis_identity_check(p1, pki("device.key"), NULL, d, sizeof(d)),
               SYNESIS_ERR_NOT_PEM, d);
    assert_non_null(strstr(d, "DER"));
    /* an empty file, and text */
    assert_int_equal(pki_write_file(pki_path(p2, fx.dir, "empty.pem"), "", 0, 0644), 0);
    assert_err(synesis_identity_check(p2, pki("device.key"), NULL, d, sizeof(d)),
               SYNESIS_ERR_NOT_PEM, d);
    assert_non_null(strstr(d, "empty"));
    assert_int_equal(pki_write_file(p2, "hello\n", 6, 0644), 0);
    assert_err(synesis_identity_check(p2, pki("device.key"), NULL, d, sizeof(d)),
               SYNESIS_ERR_NOT_PEM, d);
    /* a key file that is not PEM */
    assert_int_equal(pki_write_file(pki_path(p3, fx.dir, "text.key"), "secret\n", 7, 0600), 0);
    assert_err(synesis_identity_check(pki("device.pem"), p3, NULL, d, sizeof(d)),
               SYNESIS_ERR_NOT_PEM, d);
    assert_non_null(strstr(d, "private key"));
}

static void test_err_no_certificate_and_bad_certificate(void **state) {
    (void)state;
    char d[DETAIL_SIZE];
    /* PEM, but only a key */
    assert_err(synesis_identity_check(pki("device.key"), pki("device.key"), NULL, d, sizeof(d)),
               SYNESIS_ERR_NO_CERTIFICATE, d);
    assert_non_null(strstr(d, "PRIVATE KEY"));
    /* a CSR is not a certificate either */
    char dd[DETAIL_SIZE];
    assert_ok(generate("nocert", 365, 0, 0, 1, dd), dd);
    assert_err(synesis_identity_check(pki_path(p1, fx.dir, "device.csr"), NULL, NULL, d, sizeof(d)),
               SYNESIS_ERR_NO_CERTIFICATE, d);
    /* a CERTIFICATE block that is not a certificate */
    const char *junk = "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n";
    assert_int_equal(pki_write_file(pki_path(p2, fx.dir, "junk.pem"), junk, strlen(junk), 0644), 0);
    assert_err(synesis_identity_check(p2, pki("device.key"), NULL, d, sizeof(d)),
               SYNESIS_ERR_BAD_CERTIFICATE, d);
    assert_non_null(strstr(d, "#1"));
    /* broken base64 */
    const char *broken = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
    assert_int_equal(pki_write_file(p2, broken, strlen(broken), 0644), 0);
    assert_err(synesis_identity_check(p2, pki("device.key"), NULL, d, sizeof(d)),
               SYNESIS_ERR_BAD_CERTIFICATE, d);
}

static void test_err_no_private_key(void **state) {
    (void)state;
    char d[DETAIL_SIZE];
    const char *certkey = copy_to(pki("device.pem"), "cert-as.key", 0600);
    assert_err(synesis_identity_check(pki("device.pem"), certkey, NULL, d, sizeof(d)),
               SYNESIS_ERR_NO_PRIVATE_KEY, d);
    assert_non_null(strstr(d, "CERTIFICATE"));
    /* cert file without a key and no key path */
    const char *alone = copy_to(pki("device.pem"), "alone.pem", 0600);
    assert_err(synesis_identity_check(alone, NULL, NULL, d, sizeof(d)), SYNESIS_ERR_NO_PRIVATE_KEY,
               d);
    /* a PRIVATE KEY block that does not decode */
    const char *junk = "-----BEGIN PRIVATE KEY-----\naGVsbG8gd29ybGQ=\n-----END PRIVATE KEY-----\n";
    assert_int_equal(pki_write_file(pki_path(p1, fx.dir, "junk.key"), junk, strlen(junk), 0600), 0);
    assert_err(synesis_identity_check(pki("device.pem"), p1, NULL, d, sizeof(d)),
               SYNESIS_ERR_NO_PRIVATE_KEY, d);
    assert_non_null(strstr(d, "cannot be decoded"));
}

static void test_err_key_encrypted_and_passphrase(void **state) {
    (void)state;
    char d[DETAIL_SIZE];
    EVP_PKEY *k = pki_load_key(pki("device.key"));
    assert_non_null(k);
    /* PKCS#8 encrypted */
    assert_int_equal(pki_write_key(pki_path(p1, fx.dir, "enc.key"), k, "s3cret", 0), 0);
    assert_err(synesis_identity_check(pki("device.pem"), p1, NULL, d, sizeof(d)),
               SYNESIS_ERR_KEY_ENCRYPTED, d);
    assert_non_null(strstr(d, "ENCRYPTED PRIVATE KEY"));
    assert_err(synesis_identity_check(pki("device.pem"), p1, "wrong", d, sizeof(d)),
               SYNESIS_ERR_KEY_PASSPHRASE, d);
    assert_ok(synesis_identity_check(pki("device.pem"), p1, "s3cret", d, sizeof(d)), d);
    /* traditional "EC PRIVATE KEY" with Proc-Type: 4,ENCRYPTED */
    assert_int_equal(pki_write_key(pki_path(p2, fx.dir, "trad.key"), k, "s3cret", 1), 0);
    char *pem = pki_read_file(p2, NULL);
    assert_non_null(strstr(pem, "Proc-Type: 4,ENCRYPTED"));
    free(pem);
    assert_err(synesis_identity_check(pki("device.pem"), p2, NULL, d, sizeof(d)),
               SYNESIS_ERR_KEY_ENCRYPTED, d);
    assert_err(synesis_identity_check(pki("device.pem"), p2, "nope", d, sizeof(d)),
               SYNESIS_ERR_KEY_PASSPHRASE, d);
    assert_ok(synesis_identity_check(pki("device.pem"), p2, "s3cret", d, sizeof(d)), d);
    /* a passphrase given for a plain key is ignored */
    assert_ok(synesis_identity_check(pki("device.pem"), pki("device.key"), "unused", d, sizeof(d)),
              d);
    EVP_PKEY_free(k);
}

static void test_err_key_mismatch(void **state) {
    (void)state;
    char d[DETAIL_SIZE];
    assert_err(synesis_identity_check(pki("device.pem"), pki("edge.key"), NULL, d, sizeof(d)),
               SYNESIS_ERR_KEY_MISMATCH, d);
    assert_non_null(strstr(d, "edge.key"));
    assert_non_null(strstr(d, "device-unit-1"));
    /* a different key type altogether (RSA key, EC certificate) */
    EVP_PKEY *rsa = pki_make_key("RSA-2048");
    assert_int_equal(pki_write_key(pki_path(p1, fx.dir, "rsa.key"), rsa, NULL, 0), 0);
    assert_err(synesis_identity_check(pki("device.pem"), p1, NULL, d, sizeof(d)),
               SYNESIS_ERR_KEY_MISMATCH, d);
    EVP_PKEY_free(rsa);
}

static void test_err_key_permissions(void **state) {
    (void)state;
    char d[DETAIL_SIZE];
    const mode_t modes[] = {0640, 0604, 0644, 0660, 0700 | 0010};
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        const char *k = copy_to(pki("device.key"), "open.key", modes[i]);
        assert_err(synesis_identity_check(pki("device.pem"), k, NULL, d, sizeof(d)),
                   SYNESIS_ERR_KEY_PERMISSIONS, d);
        char m[8];
        snprintf(m, sizeof(m), "%04o", (unsigned)modes[i]);
        assert_non_null(strstr(d, m));
        assert_non_null(strstr(d, k));
    }
    const char *k = copy_to(pki("device.key"), "owner.key", 0400);
    assert_ok(synesis_identity_check(pki("device.pem"), k, NULL, d, sizeof(d)), d);
    /* the certificate's mode does not matter */
    const char *c = copy_to(pki("device.pem"), "world.pem", 0666);
    assert_ok(synesis_identity_check(c, pki("device.key"), NULL, d, sizeof(d)), d);
}

static void test_err_cert_expired_and_not_yet_valid(void **state) {
    (void)state;
    char d[DETAIL_SIZE];
    assert_ok(generate("expired", 1, -10L * 86400, 0, 0, d), d);
    pki_path(p1, fx.dir, "device.pem");
    pki_path(p2, fx.dir, "device.key");
    assert_err(synesis_identity_check(p1, p2, NULL, d, sizeof(d)), SYNESIS_ERR_CERT_EXPIRED, d);
    assert_non_null(strstr(d, "expired on"));
    assert_non_null(strstr(d, "device-expired"));

    assert_ok(generate("future", 365, 86400, 1, 0, d), d);
    assert_err(synesis_identity_check(p1, p2, NULL, d, sizeof(d)), SYNESIS_ERR_CERT_NOT_YET_VALID,
               d);
    assert_non_null(strstr(d, "clock"));

    /* an expired CA later in the chain file is reported too */
    synesis_pki_cert_options o;
    synesis_pki_cert_options_init(&o, SYNESIS_CERT_PROFILE_CA);
    o.common_name = "Old CA";
    o.days = 1;
    o.not_before_offset_s = -5L * 86400;
    assert_ok(synesis_pki_create_cert(&o, pki_path(p3, fx.dir, "old-ca.pem"),
                                      pki_path(p2, fx.dir, "old-ca.key"), d, sizeof(d)),
              d);
    size_t n1, n2;
    char *leaf = pki_read_file(pki("device.pem"), &n1), *old = pki_read_file(p3, &n2);
    char *chain = malloc(n1 + n2);
    memcpy(chain, leaf, n1);
    memcpy(chain + n1, old, n2);
    assert_int_equal(pki_write_file(pki_path(p1, fx.dir, "chain.pem"), chain, n1 + n2, 0644), 0);
    assert_err(synesis_identity_check(p1, pki("device.key"), NULL, d, sizeof(d)),
               SYNESIS_ERR_CERT_EXPIRED, d);
    assert_non_null(strstr(d, "chain position 1"));
    free(leaf);
    free(old);
    free(chain);
    /* an expired CA cannot sign */
    synesis_identity_options io;
    synesis_identity_options_init(&io);
    io.device_id = "by-old-ca";
    io.ca_cert_file = p3;
    io.ca_key_file = p2;
    assert_err(synesis_identity_generate(&io, pki_path(p1, fx.dir, "out"), d, sizeof(d)),
               SYNESIS_ERR_CERT_EXPIRED, d);
}

static void unsupported(const char *kind, int expect) {
    char d[DETAIL_SIZE];
    EVP_PKEY *k = pki_make_key(kind);
    assert_non_null(k);
    char name[64];
    snprintf(name, sizeof(name), "%s.key", kind);
    assert_int_equal(pki_write_key(pki_path(p1, fx.dir, name), k, NULL, 0), 0);
    snprintf(name, sizeof(name), "%s.pem", kind);
    assert_int_equal(pki_write_self_signed(pki_path(p2, fx.dir, name), k, "device-odd"), 0);
    assert_err(synesis_identity_check(p2, p1, NULL, d, sizeof(d)), expect, d);
    if (expect == SYNESIS_ERR_UNSUPPORTED_KEY)
        assert_non_null(strstr(d, "supported are"));
    EVP_PKEY_free(k);
}

static void test_err_unsupported_key(void **state) {
    (void)state;
    unsupported("ED448", SYNESIS_ERR_UNSUPPORTED_KEY);
    unsupported("ED25519", SYNESIS_ERR_UNSUPPORTED_KEY);
    unsupported("RSA-1024", SYNESIS_ERR_UNSUPPORTED_KEY);
    unsupported("P-521", SYNESIS_ERR_UNSUPPORTED_KEY);
    unsupported("RSA-2048", 0);
    unsupported("P-384", 0);
    unsupported("P-256", 0);
    /* inspection still works and names the type */
    synesis_identity_info *info = NULL;
    char d[DETAIL_SIZE];
    EVP_PKEY *k = pki_make_key("ED448");
    assert_int_equal(pki_write_self_signed(pki_path(p1, fx.dir, "ed.pem"), k, "device-ed"), 0);
    EVP_PKEY_free(k);
    assert_ok(inspect_into(p1, &info, d, sizeof(d)), d);
    assert_string_equal(info->key_type, "ED448");
    assert_string_equal(info->device_id, "ed");
    synesis_identity_info_free(info);
}

static void test_detail_truncation(void **state) {
    (void)state;
    char small[16];
    memset(small, 'x', sizeof(small));
    assert_int_equal(
        synesis_identity_check(pki_path(p1, fx.dir, "missing-file-with-a-long-name.pem"), NULL,
                               NULL, small, sizeof(small)),
        SYNESIS_ERR_FILE_NOT_FOUND);
    assert_int_equal(strlen(small), sizeof(small) - 1);
    assert_int_equal(synesis_identity_check(p1, NULL, NULL, NULL, 0), SYNESIS_ERR_FILE_NOT_FOUND);
    assert_int_equal(synesis_identity_check(p1, NULL, NULL, small, 0), SYNESIS_ERR_FILE_NOT_FOUND);
}

/* The evolution rule for the options structs: an older, smaller one gets the defaults of the
 * members it lacks; a newer, larger one only with zero bytes beyond the library's. */
static void test_options_struct_sizes(void **state) {
    (void)state;
    char d[DETAIL_SIZE];
    synesis_identity_options o;
    synesis_identity_options_init(&o);
    assert_int_equal(o.struct_size, sizeof(o));
    o.device_id = "sized-1";
    o.cert_name = "bad/name"; /* refused at full size */
    assert_err(synesis_identity_generate(&o, fx.dir, d, sizeof(d)), SYNESIS_ERR_INVALID_ARGUMENT,
               d);
    o.struct_size = offsetof(synesis_identity_options, cert_name); /* before cert_name */
    assert_ok(synesis_identity_generate(&o, fx.dir, d, sizeof(d)), d);
    assert_int_equal(access(pki_path(p1, fx.dir, "device.pem"), F_OK), 0); /* the default */
    unsigned char big[sizeof(synesis_identity_options) + 8] = {0};
    synesis_identity_options_init_sized((synesis_identity_options *)big, sizeof(big));
    ((synesis_identity_options *)big)->device_id = "sized-2";
    ((synesis_identity_options *)big)->overwrite = 1;
    big[sizeof(big) - 1] = 1;
    assert_err(synesis_identity_generate((synesis_identity_options *)big, fx.dir, d, sizeof(d)),
               SYNESIS_ERR_INVALID_ARGUMENT, d);
    assert_non_null(strstr(d, "not zero"));
    big[sizeof(big) - 1] = 0;
    assert_ok(synesis_identity_generate((synesis_identity_options *)big, fx.dir, d, sizeof(d)), d);
    /* pki_cert_options: the profile's defaults for what an older struct lacks. */
    synesis_pki_cert_options po;
    synesis_pki_cert_options_init(&po, SYNESIS_CERT_PROFILE_CA);
    assert_int_equal(po.struct_size, sizeof(po));
    assert_int_equal(po.days, 3650);
    po.common_name = "Sized CA";
    po.days = 0; /* refused at full size */
    assert_err(synesis_pki_create_cert(&po, pki_path(p1, fx.dir, "sca.pem"),
                                       pki_path(p2, fx.dir, "sca.key"), d, sizeof(d)),
               SYNESIS_ERR_INVALID_ARGUMENT, d);
    po.struct_size = offsetof(synesis_pki_cert_options, days);
    assert_ok(synesis_pki_create_cert(&po, p1, p2, d, sizeof(d)), d);
    synesis_identity_info *info = NULL;
    assert_ok(inspect_into(p1, &info, d, sizeof(d)), d);
    assert_int_equal(info->not_after - info->not_before, 3650L * 86400); /* the CA default */
    synesis_identity_info_free(info);
    po.struct_size = sizeof(size_t) - 1;
    assert_err(synesis_pki_create_cert(&po, p1, p2, d, sizeof(d)), SYNESIS_ERR_INVALID_ARGUMENT, d);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_options_defaults),
        T(test_validate_device_id),
        T(test_generate_invalid_arguments),
        T(test_generate_self_signed_fields),
        T(test_generate_days_and_offset),
        T(test_two_generations_differ),
        T(test_file_modes_and_no_temp_files),
        T(test_output_dir_created),
        T(test_no_overwrite_without_flag),
        T(test_csr),
        T(test_ca_signed),
        T(test_ca_errors),
        T(test_test_pki),
        T(test_pki_create_cert_profiles),
        T(test_inspect),
        T(test_options_struct_sizes),
        T(test_pin_parse),
        T(test_load_ok_and_combined_file),
        T(test_err_file_not_found),
        T(test_err_file_unreadable),
        T(test_err_not_pem),
        T(test_err_no_certificate_and_bad_certificate),
        T(test_err_no_private_key),
        T(test_err_key_encrypted_and_passphrase),
        T(test_err_key_mismatch),
        T(test_err_key_permissions),
        T(test_err_cert_expired_and_not_yet_valid),
        T(test_err_unsupported_key),
        T(test_detail_truncation),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

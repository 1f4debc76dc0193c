/* Device identity: input validation, key, certificate and CSR creation, the test PKI. */
#include "identity/identity_int.h"

#include <arpa/inet.h>
#include <limits.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <string.h>

/* ---- validation of inputs ------------------------------------------------------------------ */

static int device_id_char_ok(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == ':' || c == '@';
}

int syn_id_validate_device_id(const char *id, char *detail) {
    if (!id || !id[0])
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT, "device id is empty");
    size_t n = strlen(id);
    if (n > SYNESIS_DEVICE_ID_MAX)
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                        "device id is %zu bytes long, at most %d allowed", n,
                        SYNESIS_DEVICE_ID_MAX);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)id[i];
        if (!device_id_char_ok(c)) {
            if (c >= 0x21 && c < 0x7f)
                return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                                "device id has '%c' at position %zu: only letters, digits and "
                                "-._:@ are allowed",
                                c, i);
            return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                            "device id has byte 0x%02x at position %zu: only letters, digits and "
                            "-._:@ are allowed",
                            c, i);
        }
    }
    return 0;
}

SYNESIS_API int synesis_identity_validate_device_id(const char *id, char *detail,
                                                    size_t detail_len) {
    char buf[SYNESIS_DETAIL_MAX];
    return syn_id_finish(syn_id_validate_device_id(id, buf), buf, detail, detail_len);
}

static int text_ok(const char *s, size_t max_chars) {
    size_t chars = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            return 0;
        if ((*p & 0xc0) != 0x80)
            chars++;
    }
    return chars >= 1 && chars <= max_chars;
}

static int is_ip_literal(const char *s) {
    unsigned char buf[16];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

static int dns_name_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 253)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_' || (c == '*' && i == 0)))
            return 0;
    }
    return 1;
}

static int validate_cert_options(const synesis_pki_cert_options *o, char *detail) {
    if (o->profile != SYNESIS_CERT_PROFILE_CA && o->profile != SYNESIS_CERT_PROFILE_SERVER &&
        o->profile != SYNESIS_CERT_PROFILE_DEVICE)
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT, "unknown certificate profile %d",
                        (int)o->profile);
    if (!o->common_name || !text_ok(o->common_name, 64))
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                        "common_name must be 1..64 characters without control characters");
    if (o->organization && !text_ok(o->organization, 64))
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                        "organization must be 1..64 characters without control characters");
    if (o->days < 1 || o->days > MAX_DAYS)
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT, "days is %d, must be 1..%d", o->days,
                        MAX_DAYS);
    if (o->not_before_offset_s < -MAX_OFFSET_S || o->not_before_offset_s > MAX_OFFSET_S)
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                        "not_before_offset_s %lld is out of range",
                        (long long)o->not_before_offset_s);
    if (!o->issuer_cert_file != !o->issuer_key_file)
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                        "give both the issuer CA certificate and its key, or neither");
    if (o->n_alt_names && !o->alt_names)
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                        "n_alt_names is %zu but alt_names is NULL", o->n_alt_names);
    if (o->profile == SYNESIS_CERT_PROFILE_SERVER && o->n_alt_names == 0)
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                        "a server certificate needs at least one subjectAltName");
    for (size_t i = 0; i < o->n_alt_names; i++) {
        const char *n = o->alt_names[i];
        if (!n || (!is_ip_literal(n) && !dns_name_ok(n)))
            return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                            "alt_names[%zu] \"%s\" is neither an IP address nor a DNS name", i,
                            n ? n : "(null)");
    }
    if (o->csr_file && o->profile == SYNESIS_CERT_PROFILE_CA)
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT, "no CSR for the CA profile");
    return 0;
}

/* ---- generation ---------------------------------------------------------------------------- */

static EVP_PKEY *gen_p256(char *detail, int *rc) {
    syn_ossl_clear();
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (!k)
        *rc = syn_fail_ossl(detail, SYNESIS_ERR_CRYPTO, "generating an EC P-256 key failed");
    return k;
}

static const EVP_MD *digest_for(EVP_PKEY *signer) {
    char desc[64];
    syn_id_describe_key(signer, desc, sizeof(desc));
    return strcmp(desc, "EC P-384") == 0 ? EVP_sha384() : EVP_sha256();
}

static X509_NAME *make_name(const char *cn, const char *org) {
    X509_NAME *n = X509_NAME_new();
    if (!n)
        return NULL;
    if ((org && !X509_NAME_add_entry_by_NID(n, NID_organizationName, MBSTRING_UTF8,
                                            (const unsigned char *)org, -1, -1, 0)) ||
        !X509_NAME_add_entry_by_NID(n, NID_commonName, MBSTRING_UTF8, (const unsigned char *)cn, -1,
                                    -1, 0)) {
        X509_NAME_free(n);
        return NULL;
    }
    return n;
}

static GENERAL_NAMES *make_alt_names(const char *const *names, size_t n) {
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    if (!gens)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        GENERAL_NAME *g = GENERAL_NAME_new();
        if (!g)
            goto fail;
        if (is_ip_literal(names[i])) {
            ASN1_OCTET_STRING *ip = a2i_IPADDRESS(names[i]);
            if (!ip) {
                GENERAL_NAME_free(g);
                goto fail;
            }
            GENERAL_NAME_set0_value(g, GEN_IPADD, ip);
        } else {
            ASN1_IA5STRING *s = ASN1_IA5STRING_new();
            if (!s || !ASN1_STRING_set(s, names[i], -1)) {
                ASN1_IA5STRING_free(s);
                GENERAL_NAME_free(g);
                goto fail;
            }
            GENERAL_NAME_set0_value(g, GEN_DNS, s);
        }
        if (!sk_GENERAL_NAME_push(gens, g)) {
            GENERAL_NAME_free(g);
            goto fail;
        }
    }
    return gens;
fail:
    GENERAL_NAMES_free(gens);
    return NULL;
}

/* The extensions of a profile except the key identifiers, for a certificate or a CSR. */
static STACK_OF(X509_EXTENSION) * profile_extensions(const synesis_pki_cert_options *o) {
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    if (!exts)
        return NULL;
    int ca = o->profile == SYNESIS_CERT_PROFILE_CA;
    struct {
        int nid;
        const char *value;
    } conf[3] = {
        {NID_basic_constraints, ca ? "critical,CA:TRUE" : "critical,CA:FALSE"                    },
        {NID_key_usage,         ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature"},
        {NID_ext_key_usage,
         o->profile == SYNESIS_CERT_PROFILE_SERVER ? "serverAuth" : "clientAuth"                 },
    };
    for (int i = 0; i < (ca ? 2 : 3); i++) {
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, NULL, conf[i].nid, conf[i].value);
        if (!e || !sk_X509_EXTENSION_push(exts, e)) {
            X509_EXTENSION_free(e);
            goto fail;
        }
    }
    if (o->n_alt_names) {
        GENERAL_NAMES *gens = make_alt_names(o->alt_names, o->n_alt_names);
        X509_EXTENSION *e = gens ? X509V3_EXT_i2d(NID_subject_alt_name, 0, gens) : NULL;
        GENERAL_NAMES_free(gens);
        if (!e || !sk_X509_EXTENSION_push(exts, e)) {
            X509_EXTENSION_free(e);
            goto fail;
        }
    }
    return exts;
fail:
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    return NULL;
}

static int random_serial(X509 *x) {
    unsigned char b[16];
    if (RAND_bytes(b, sizeof(b)) != 1)
        return 0;
    b[0] = (unsigned char)((b[0] & 0x7f) | 0x40); /* positive, always 127 bits long */
    BIGNUM *bn = BN_bin2bn(b, sizeof(b), NULL);
    ASN1_INTEGER *ai = bn ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
    int ok = ai && X509_set_serialNumber(x, ai) == 1;
    ASN1_INTEGER_free(ai);
    BN_free(bn);
    return ok;
}

static int set_validity(X509 *x, int64_t offset_s, int days) {
    time_t nb = time(NULL) + (time_t)offset_s;
    time_t na = nb + (time_t)days * 86400;
    ASN1_TIME *t1 = ASN1_TIME_set(NULL, nb), *t2 = ASN1_TIME_set(NULL, na);
    int ok = t1 && t2 && X509_set1_notBefore(x, t1) == 1 && X509_set1_notAfter(x, t2) == 1;
    ASN1_TIME_free(t1);
    ASN1_TIME_free(t2);
    return ok;
}

static int add_conf_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value) {
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    int ok = e && X509_add_ext(x, e, -1) == 1;
    X509_EXTENSION_free(e);
    return ok;
}

/* A certificate for key, signed by issuer_key (issuer NULL: self-signed by key). */
static int make_cert(X509 **out, const synesis_pki_cert_options *o, EVP_PKEY *key, X509 *issuer,
                     EVP_PKEY *issuer_key, char *detail) {
    *out = NULL;
    syn_ossl_clear();
    X509 *x = X509_new();
    X509_NAME *name = make_name(o->common_name, o->organization);
    STACK_OF(X509_EXTENSION) *exts = profile_extensions(o);
    int ok = x && name && exts && X509_set_version(x, X509_VERSION_3) == 1 && random_serial(x) &&
             X509_set_subject_name(x, name) == 1 &&
             X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name) == 1 &&
             set_validity(x, o->not_before_offset_s, o->days) && X509_set_pubkey(x, key) == 1;
    for (int i = 0; ok && i < sk_X509_EXTENSION_num(exts); i++)
        ok = X509_add_ext(x, sk_X509_EXTENSION_value(exts, i), -1) == 1;
    if (ok) {
        X509V3_CTX ctx;
        X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
        ok = add_conf_ext(x, &ctx, NID_subject_key_identifier, "hash") &&
             add_conf_ext(x, &ctx, NID_authority_key_identifier, "keyid:always");
    }
    EVP_PKEY *signer = issuer_key ? issuer_key : key;
    ok = ok && X509_sign(x, signer, digest_for(signer)) > 0;
    X509_NAME_free(name);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    if (!ok) {
        X509_free(x);
        return syn_fail_ossl(detail, SYNESIS_ERR_CRYPTO,
                             "building the certificate for CN=%s failed", o->common_name);
    }
    *out = x;
    return 0;
}

static int make_csr(X509_REQ **out, const synesis_pki_cert_options *o, EVP_PKEY *key,
                    char *detail) {
    *out = NULL;
    syn_ossl_clear();
    X509_REQ *r = X509_REQ_new();
    X509_NAME *name = make_name(o->common_name, o->organization);
    STACK_OF(X509_EXTENSION) *exts = profile_extensions(o);
    int ok = r && name && exts && X509_REQ_set_version(r, X509_REQ_VERSION_1) == 1 &&
             X509_REQ_set_subject_name(r, name) == 1 && X509_REQ_set_pubkey(r, key) == 1 &&
             X509_REQ_add_extensions(r, exts) == 1 && X509_REQ_sign(r, key, digest_for(key)) > 0;
    X509_NAME_free(name);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    if (!ok) {
        X509_REQ_free(r);
        return syn_fail_ossl(detail, SYNESIS_ERR_CRYPTO, "building the CSR for CN=%s failed",
                             o->common_name);
    }
    *out = r;
    return 0;
}

/* ---- public: generation -------------------------------------------------------------------- */

static void pki_defaults(synesis_pki_cert_options *opts, synesis_cert_profile profile) {
    memset(opts, 0, sizeof(*opts));
    opts->struct_size = sizeof(*opts);
    opts->profile = profile;
    opts->organization = DEVICE_ORG;
    opts->days = profile == SYNESIS_CERT_PROFILE_CA ? 3650 : 365;
}

SYNESIS_API void synesis_pki_cert_options_init_sized(synesis_pki_cert_options *opts,
                                                     synesis_cert_profile profile, size_t size) {
    synesis_pki_cert_options d;
    pki_defaults(&d, profile);
    syn_struct_init(opts, size, &d, sizeof(d));
}

/* make_dir: created (mkdir -p, 0700) only once everything is ready to be written, so a failure
 * leaves no empty directory behind. */
static int create_cert(const synesis_pki_cert_options *o, const char *cert_file,
                       const char *key_file, const char *make_dir, char *detail) {
    if (!o || !cert_file || !key_file || !cert_file[0] || !key_file[0])
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                        "options, certificate and key paths are required");
    int rc = validate_cert_options(o, detail);
    if (rc)
        return rc;
    if ((rc = syn_crypto_init()) != 0)
        return syn_fail_ossl(detail, rc, "OpenSSL initialisation failed");
    if (!o->overwrite) {
        if ((rc = syn_id_check_absent(key_file, "private key", detail)) ||
            (rc = syn_id_check_absent(cert_file, "certificate", detail)) ||
            (o->csr_file && (rc = syn_id_check_absent(o->csr_file, "CSR", detail))))
            return rc;
    }

    syn_identity ca = {0};
    if (o->issuer_cert_file) {
        rc = syn_identity_load(&ca, "issuer CA", o->issuer_cert_file, NULL, 0, o->issuer_key_file,
                               NULL, 0, o->issuer_key_passphrase, detail);
        if (rc)
            return rc;
        if (!(X509_get_extension_flags(ca.leaf) & EXFLAG_CA) ||
            ((X509_get_extension_flags(ca.leaf) & EXFLAG_KUSAGE) &&
             !(X509_get_key_usage(ca.leaf) & KU_KEY_CERT_SIGN))) {
            syn_identity_clear(&ca);
            return syn_fail(
                detail, SYNESIS_ERR_BAD_CERTIFICATE,
                "issuer CA certificate %s is not a CA certificate (basicConstraints CA:TRUE and "
                "keyUsage keyCertSign are required)",
                o->issuer_cert_file);
        }
    }

    X509 *cert = NULL;
    X509_REQ *csr = NULL;
    struct syn_id_out_file files[3];
    memset(files, 0, sizeof(files));
    size_t nfiles = 0;
    EVP_PKEY *key = gen_p256(detail, &rc);
    if (!key)
        goto out;
    if ((rc = make_cert(&cert, o, key, ca.leaf, ca.key, detail)) != 0)
        goto out;
    if (o->csr_file && (rc = make_csr(&csr, o, key, detail)) != 0)
        goto out;

    files[nfiles++] =
        (struct syn_id_out_file){.path = key_file, .what = "private key", .mode = 0600};
    files[nfiles++] =
        (struct syn_id_out_file){.path = cert_file, .what = "certificate", .mode = 0644};
    if (csr)
        files[nfiles++] =
            (struct syn_id_out_file){.path = o->csr_file, .what = "CSR", .mode = 0644};
    for (size_t i = 0; i < nfiles; i++) {
        if (!(files[i].pem = BIO_new(BIO_s_secmem()))) {
            rc = syn_fail_ossl(detail, SYNESIS_ERR_NOMEM, "out of memory");
            goto out;
        }
    }
    if (PEM_write_bio_PrivateKey(files[0].pem, key, NULL, NULL, 0, NULL, NULL) != 1 ||
        PEM_write_bio_X509(files[1].pem, cert) != 1 ||
        (csr && PEM_write_bio_X509_REQ(files[2].pem, csr) != 1)) {
        rc = syn_fail_ossl(detail, SYNESIS_ERR_CRYPTO, "PEM encoding failed");
        goto out;
    }
    if (make_dir && (rc = syn_id_make_dirs(make_dir, detail)) != 0)
        goto out;
    rc = syn_id_write_files(files, nfiles, o->overwrite, detail);
out:
    for (size_t i = 0; i < nfiles; i++)
        BIO_free(files[i].pem); /* secure memory BIO: the key bytes are wiped */
    X509_REQ_free(csr);
    X509_free(cert);
    EVP_PKEY_free(key);
    syn_identity_clear(&ca);
    syn_ossl_clear();
    return rc;
}

SYNESIS_API int synesis_pki_create_cert(const synesis_pki_cert_options *opts, const char *cert_file,
                                        const char *key_file, char *detail, size_t detail_len) {
    char buf[SYNESIS_DETAIL_MAX];
    synesis_pki_cert_options o;
    if (opts) {
        /* The evolution rule; the defaults of the members an older struct lacks depend on its
         * profile, so the profile is read first. */
        pki_defaults(&o, 0);
        int rc = syn_struct_in(&o, sizeof(o), opts, "options", buf);
        if (rc)
            return syn_id_finish(rc, buf, detail, detail_len);
        pki_defaults(&o, o.profile);
        (void)syn_struct_in(&o, sizeof(o), opts, "options", buf);
        opts = &o;
    }
    return syn_id_finish(create_cert(opts, cert_file, key_file, NULL, buf), buf, detail,
                         detail_len);
}

static void identity_defaults(synesis_identity_options *opts) {
    memset(opts, 0, sizeof(*opts));
    opts->struct_size = sizeof(*opts);
    opts->days = 365;
    opts->cert_name = "device.pem";
    opts->key_name = "device.key";
    opts->csr_name = "device.csr";
}

SYNESIS_API void synesis_identity_options_init_sized(synesis_identity_options *opts, size_t size) {
    synesis_identity_options d;
    identity_defaults(&d);
    syn_struct_init(opts, size, &d, sizeof(d));
}

static int file_name_ok(const char *n) {
    return n && n[0] && !strchr(n, '/') && strcmp(n, ".") != 0 && strcmp(n, "..") != 0;
}

static int identity_generate(const synesis_identity_options *opts, const char *out_dir,
                             char *detail) {
    if (!opts || !out_dir || !out_dir[0])
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                        "options and output directory are required");
    synesis_identity_options own;
    identity_defaults(&own);
    int rc = syn_struct_in(&own, sizeof(own), opts, "options", detail);
    if (rc)
        return rc;
    opts = &own;
    rc = syn_id_validate_device_id(opts->device_id, detail);
    if (rc)
        return rc;
    if (!file_name_ok(opts->cert_name) || !file_name_ok(opts->key_name) ||
        (opts->write_csr && !file_name_ok(opts->csr_name)))
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                        "file names must be plain names without '/'");
    if (strcmp(opts->cert_name, opts->key_name) == 0 ||
        (opts->write_csr && (strcmp(opts->csr_name, opts->cert_name) == 0 ||
                             strcmp(opts->csr_name, opts->key_name) == 0)))
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT, "the file names must differ");
    char cn[sizeof(DEVICE_CN_PREFIX) + SYNESIS_DEVICE_ID_MAX];
    snprintf(cn, sizeof(cn), DEVICE_CN_PREFIX "%s", opts->device_id);

    synesis_pki_cert_options o;
    synesis_pki_cert_options_init(&o, SYNESIS_CERT_PROFILE_DEVICE);
    o.common_name = cn;
    o.days = opts->days;
    o.not_before_offset_s = opts->not_before_offset_s;
    o.issuer_cert_file = opts->ca_cert_file;
    o.issuer_key_file = opts->ca_key_file;
    o.issuer_key_passphrase = opts->ca_key_passphrase;
    o.overwrite = opts->overwrite;
    if ((rc = validate_cert_options(&o, detail)) != 0)
        return rc;

    char cert[PATH_MAX], key[PATH_MAX], csr[PATH_MAX];
    if (snprintf(cert, sizeof(cert), "%s/%s", out_dir, opts->cert_name) >= (int)sizeof(cert) ||
        snprintf(key, sizeof(key), "%s/%s", out_dir, opts->key_name) >= (int)sizeof(key) ||
        snprintf(csr, sizeof(csr), "%s/%s", out_dir, opts->write_csr ? opts->csr_name : "") >=
            (int)sizeof(csr))
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT, "output path too long");
    o.csr_file = opts->write_csr ? csr : NULL;
    return create_cert(&o, cert, key, out_dir, detail);
}

SYNESIS_API int synesis_identity_generate(const synesis_identity_options *opts, const char *out_dir,
                                          char *detail, size_t detail_len) {
    char buf[SYNESIS_DETAIL_MAX];
    return syn_id_finish(identity_generate(opts, out_dir, buf), buf, detail, detail_len);
}

static int create_test_pki(const char *dir, const char *device_id, char *detail) {
    if (!dir || !dir[0])
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT, "directory is required");
    int rc = syn_id_validate_device_id(device_id, detail);
    if (rc)
        return rc;
    static const char *const names[6] = {"ca.pem",   "ca.key",     "edge.pem",
                                         "edge.key", "device.pem", "device.key"};
    char p[6][PATH_MAX];
    for (int i = 0; i < 6; i++)
        if (snprintf(p[i], sizeof(p[i]), "%s/%s", dir, names[i]) >= (int)sizeof(p[i]))
            return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT, "directory name too long");
    for (int i = 0; i < 6; i++)
        if ((rc = syn_id_check_absent(p[i], "test PKI", detail)) != 0)
            return rc;
    if ((rc = syn_id_make_dirs(dir, detail)) != 0)
        return rc;

    synesis_pki_cert_options o;
    synesis_pki_cert_options_init(&o, SYNESIS_CERT_PROFILE_CA);
    o.common_name = "Synesis Test CA";
    if ((rc = create_cert(&o, p[0], p[1], NULL, detail)) != 0)
        return rc;

    static const char *const edge_names[] = {"localhost", "127.0.0.1", "::1"};
    synesis_pki_cert_options_init(&o, SYNESIS_CERT_PROFILE_SERVER);
    o.common_name = "localhost";
    o.alt_names = edge_names;
    o.n_alt_names = 3;
    o.issuer_cert_file = p[0];
    o.issuer_key_file = p[1];
    if ((rc = create_cert(&o, p[2], p[3], NULL, detail)) != 0)
        return rc;

    char cn[sizeof(DEVICE_CN_PREFIX) + SYNESIS_DEVICE_ID_MAX];
    snprintf(cn, sizeof(cn), DEVICE_CN_PREFIX "%s", device_id);
    synesis_pki_cert_options_init(&o, SYNESIS_CERT_PROFILE_DEVICE);
    o.common_name = cn;
    o.issuer_cert_file = p[0];
    o.issuer_key_file = p[1];
    return create_cert(&o, p[4], p[5], NULL, detail);
}

SYNESIS_API int synesis_identity_create_test_pki(const char *dir, const char *device_id,
                                                 char *detail, size_t detail_len) {
    char buf[SYNESIS_DETAIL_MAX];
    return syn_id_finish(create_test_pki(dir, device_id, buf), buf, detail, detail_len);
}

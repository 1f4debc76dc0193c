/* Device identity: checks on loaded keys and certificates, inspection, SPKI pins. */
#include "identity/identity_int.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* "2025-01-31 12:00:00 UTC" */
static void format_time(time_t t, char *out, size_t len) {
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(out, len, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
        snprintf(out, len, "@%lld", (long long)t);
}

static int asn1_time_to_unix(const ASN1_TIME *t, int64_t *out) {
    struct tm tm;
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
        return -1;
    *out = (int64_t)timegm(&tm);
    return 0;
}

static void format_asn1_time(const ASN1_TIME *t, char *out, size_t len) {
    int64_t u;
    if (asn1_time_to_unix(t, &u) == 0)
        format_time((time_t)u, out, len);
    else
        snprintf(out, len, "(unreadable time)");
}

/* ---- checks -------------------------------------------------------------------------------- */

/* "EC P-256", "RSA 2048", "ED448", ...; returns 1 if the library supports it. */
/* Describes k into out; returns 1 for a supported key, 0 for another, -1 when OpenSSL could not
 * tell for want of memory. */
int syn_id_describe_key(EVP_PKEY *k, char *out, size_t len) {
    if (EVP_PKEY_is_a(k, "EC")) {
        char group[80] = "";
        syn_ossl_clear();
        if (!EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                            NULL)) {
            int oom = syn_ossl_oom();
            ERR_clear_error();
            snprintf(out, len, "%s", oom ? "EC (out of memory)" : "EC (explicit curve parameters)");
            return oom ? -1 : 0;
        }
        int nid = OBJ_txt2nid(group);
        if (nid == NID_undef)
            nid = EC_curve_nist2nid(group);
        const char *nist = nid != NID_undef ? EC_curve_nid2nist(nid) : NULL;
        snprintf(out, len, "EC %s", nist ? nist : group);
        return nid == NID_X9_62_prime256v1 || nid == NID_secp384r1;
    }
    if (EVP_PKEY_is_a(k, "RSA")) {
        int bits = EVP_PKEY_get_bits(k);
        snprintf(out, len, "RSA %d", bits);
        return bits >= 2048 && bits <= 16384;
    }
    const char *name = EVP_PKEY_get0_type_name(k);
    snprintf(out, len, "%s", name ? name : "unknown");
    return 0;
}

int syn_id_check_key_supported(EVP_PKEY *k, const char *what, char *detail) {
    char desc[64];
    int r = syn_id_describe_key(k, desc, sizeof(desc));
    if (r > 0)
        return 0;
    if (r < 0)
        return syn_fail(detail, SYNESIS_ERR_NOMEM, "%s: out of memory", what);
    return syn_fail(detail, SYNESIS_ERR_UNSUPPORTED_KEY,
                    "%s is %s: supported are EC P-256, EC P-384 and RSA 2048..16384 bits", what,
                    desc);
}

void syn_id_subject_line(X509_NAME *n, char *out, size_t len) {
    out[0] = '\0';
    BIO *b = BIO_new(BIO_s_mem());
    if (!b)
        return;
    unsigned long flags = ASN1_STRFLGS_RFC2253 | XN_FLAG_SEP_CPLUS_SPC | XN_FLAG_DN_REV |
                          XN_FLAG_FN_SN | XN_FLAG_DUMP_UNKNOWN_FIELDS;
    if (X509_NAME_print_ex(b, n, 0, flags) >= 0) {
        char *p;
        long n_ = BIO_get_mem_data(b, &p);
        if (n_ > 0)
            snprintf(out, len, "%.*s", (int)n_, p);
    }
    BIO_free(b);
}

int syn_id_check_validity(X509 *x, const char *what, int depth, char *detail) {
    time_t now = time(NULL);
    char subj[256], when[48], nowbuf[48];
    if (X509_cmp_time(X509_get0_notAfter(x), &now) < 0) {
        syn_id_subject_line(X509_get_subject_name(x), subj, sizeof(subj));
        format_asn1_time(X509_get0_notAfter(x), when, sizeof(when));
        return syn_fail(detail, SYNESIS_ERR_CERT_EXPIRED,
                        "%s (%s, chain position %d) expired on %s", what, subj, depth, when);
    }
    if (X509_cmp_time(X509_get0_notBefore(x), &now) > 0) {
        syn_id_subject_line(X509_get_subject_name(x), subj, sizeof(subj));
        format_asn1_time(X509_get0_notBefore(x), when, sizeof(when));
        format_time(now, nowbuf, sizeof(nowbuf));
        return syn_fail(
            detail, SYNESIS_ERR_CERT_NOT_YET_VALID,
            "%s (%s, chain position %d) is not valid before %s, but the local clock says %s: the "
            "clock may be behind (a device without RTC before time sync?)",
            what, subj, depth, when, nowbuf);
    }
    return 0;
}

/* ---- public: inspection and checks --------------------------------------------------------- */

static void hex_colons(const unsigned char *b, size_t n, char *out, size_t len) {
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && o + 3 < len; i++) {
        if (i)
            out[o++] = ':';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
}

/* What inspect() gathers before it is packed into the public struct's one block. */
typedef struct info_bufs {
    synesis_identity_info *info; /* the numbers and raw digests */
    char device_id[SYNESIS_DEVICE_ID_MAX + 1];
    char common_name[65];
    char subject[512];
    char issuer[512];
    char serial[64];
    char fingerprint_sha256[96];
    char spki_pin[64];
    char key_type[32];
} info_bufs;

static int inspect(const char *path, info_bufs *ib, char *detail) {
    synesis_identity_info *info = ib->info;
    int rc = syn_crypto_init();
    if (rc)
        return syn_fail_ossl(detail, rc, "OpenSSL initialisation failed");
    STACK_OF(X509) *sk = NULL;
    if ((rc = syn_load_certs(&sk, "certificate", path, NULL, 0, detail)) != 0)
        return rc;
    X509 *x = sk_X509_value(sk, 0);
    info->chain_length = sk_X509_num(sk);

    if (syn_cert_common_name(x, ib->common_name, sizeof(ib->common_name)) == 0 &&
        strncmp(ib->common_name, DEVICE_CN_PREFIX, strlen(DEVICE_CN_PREFIX)) == 0 &&
        syn_id_validate_device_id(ib->common_name + strlen(DEVICE_CN_PREFIX), NULL) == 0)
        snprintf(ib->device_id, sizeof(ib->device_id), "%s",
                 ib->common_name + strlen(DEVICE_CN_PREFIX));
    syn_id_subject_line(X509_get_subject_name(x), ib->subject, sizeof(ib->subject));
    syn_id_subject_line(X509_get_issuer_name(x), ib->issuer, sizeof(ib->issuer));

    const ASN1_INTEGER *serial = X509_get0_serialNumber(x);
    BIGNUM *bn = ASN1_INTEGER_to_BN(serial, NULL);
    if (bn) {
        unsigned char sb[64];
        int n = BN_num_bytes(bn);
        if (n > 0 && n <= (int)sizeof(sb) && BN_bn2bin(bn, sb) == n)
            hex_colons(sb, (size_t)n, ib->serial, sizeof(ib->serial));
        BN_free(bn);
    }
    unsigned int mdlen = 0;
    if (X509_digest(x, EVP_sha256(), info->fingerprint_sha256_raw, &mdlen) != 1 || mdlen != 32) {
        rc = syn_fail_ossl(detail, SYNESIS_ERR_CRYPTO, "certificate file %s: digest failed", path);
        goto out;
    }
    hex_colons(info->fingerprint_sha256_raw, 32, ib->fingerprint_sha256,
               sizeof(ib->fingerprint_sha256));
    if (syn_spki_sha256(x, info->spki_sha256) != 0) {
        rc = syn_fail_ossl(detail, SYNESIS_ERR_BAD_CERTIFICATE,
                           "certificate file %s: no usable public key", path);
        goto out;
    }
    char b64[48];
    EVP_EncodeBlock((unsigned char *)b64, info->spki_sha256, 32);
    snprintf(ib->spki_pin, sizeof(ib->spki_pin), "sha256//%s", b64);
    EVP_PKEY *pub = X509_get0_pubkey(x);
    if (pub)
        syn_id_describe_key(pub, ib->key_type, sizeof(ib->key_type));
    if (asn1_time_to_unix(X509_get0_notBefore(x), &info->not_before) != 0 ||
        asn1_time_to_unix(X509_get0_notAfter(x), &info->not_after) != 0) {
        rc = syn_fail(detail, SYNESIS_ERR_BAD_CERTIFICATE,
                      "certificate file %s: unreadable validity dates", path);
        goto out;
    }
    info->self_signed = X509_self_signed(x, 1) == 1;
    info->is_ca = (X509_get_extension_flags(x) & EXFLAG_CA) != 0;
out:
    OSSL_STACK_OF_X509_free(sk);
    syn_ossl_clear();
    return rc;
}

/* Copies src after the struct at *at, points *dst to it. */
static void pack(const char **dst, const char *src, char **at) {
    size_t n = strlen(src) + 1;
    memcpy(*at, src, n);
    *dst = *at;
    *at += n;
}

SYNESIS_API int synesis_identity_inspect(const char *cert_path, synesis_identity_info **out,
                                         char *detail, size_t detail_len) {
    char buf[SYNESIS_DETAIL_MAX];
    if (out)
        *out = NULL;
    if (!cert_path || !out)
        return syn_id_finish(
            syn_fail(buf, SYNESIS_ERR_INVALID_ARGUMENT, "certificate path and out are required"),
            buf, detail, detail_len);
    synesis_identity_info info;
    memset(&info, 0, sizeof(info));
    info_bufs ib;
    memset(&ib, 0, sizeof(ib));
    ib.info = &info;
    int rc = inspect(cert_path, &ib, buf);
    if (rc)
        return syn_id_finish(rc, buf, detail, detail_len);
    /* One block: the struct, then its strings. */
    const char *strs[] = {ib.device_id, ib.common_name,        ib.subject,  ib.issuer,
                          ib.serial,    ib.fingerprint_sha256, ib.spki_pin, ib.key_type};
    size_t total = sizeof(info);
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        total += strlen(strs[i]) + 1;
    synesis_identity_info *r = malloc(total);
    if (!r)
        return syn_id_finish(syn_fail(buf, SYNESIS_ERR_NOMEM, "out of memory"), buf, detail,
                             detail_len);
    *r = info;
    r->struct_size = sizeof(*r);
    char *at = (char *)(r + 1);
    pack(&r->device_id, ib.device_id, &at);
    pack(&r->common_name, ib.common_name, &at);
    pack(&r->subject, ib.subject, &at);
    pack(&r->issuer, ib.issuer, &at);
    pack(&r->serial, ib.serial, &at);
    pack(&r->fingerprint_sha256, ib.fingerprint_sha256, &at);
    pack(&r->spki_pin, ib.spki_pin, &at);
    pack(&r->key_type, ib.key_type, &at);
    *out = r;
    return syn_id_finish(0, buf, detail, detail_len);
}

SYNESIS_API void synesis_identity_info_free(synesis_identity_info *info) { free(info); }

SYNESIS_API int synesis_identity_check(const char *cert_path, const char *key_path,
                                       const char *passphrase, char *detail, size_t detail_len) {
    char buf[SYNESIS_DETAIL_MAX];
    if (!cert_path)
        return syn_id_finish(
            syn_fail(buf, SYNESIS_ERR_INVALID_ARGUMENT, "certificate path is required"), buf,
            detail, detail_len);
    syn_identity id;
    int rc =
        syn_identity_load(&id, "device", cert_path, NULL, 0, key_path, NULL, 0, passphrase, buf);
    syn_identity_clear(&id);
    return syn_id_finish(rc, buf, detail, detail_len);
}

static int hexval(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

SYNESIS_API int synesis_spki_pin_parse(const char *text, uint8_t pin[32]) {
    if (!text || !pin)
        return SYNESIS_ERR_INVALID_ARGUMENT;
    uint8_t out[33];
    if (strncmp(text, "sha256//", 8) == 0) {
        const char *b = text + 8;
        if (strlen(b) != 44 || b[43] != '=' || b[42] == '=')
            return SYNESIS_ERR_INVALID_ARGUMENT;
        for (int i = 0; i < 43; i++) {
            char c = b[i];
            if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '+' || c == '/'))
                return SYNESIS_ERR_INVALID_ARGUMENT;
        }
        if (EVP_DecodeBlock(out, (const unsigned char *)b, 44) != 33)
            return SYNESIS_ERR_INVALID_ARGUMENT;
        memcpy(pin, out, 32);
        return 0;
    }
    /* 64 hex digits, either contiguous or every byte separated by one ':' */
    size_t n = strlen(text);
    int colons = n == 32 * 3 - 1;
    if (n != 64 && !colons)
        return SYNESIS_ERR_INVALID_ARGUMENT;
    for (size_t i = 0, j = 0; i < 32; i++) {
        int hi = hexval(text[j]), lo = hexval(text[j + 1]);
        if (hi < 0 || lo < 0)
            return SYNESIS_ERR_INVALID_ARGUMENT;
        out[i] = (uint8_t)(hi << 4 | lo);
        j += 2;
        if (colons && i < 31 && text[j++] != ':')
            return SYNESIS_ERR_INVALID_ARGUMENT;
    }
    memcpy(pin, out, 32);
    return 0;
}

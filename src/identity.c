/* Device identity: key/certificate/CSR generation, loading with precise errors, inspection. */
#include "internal.h"
#include "synesis/identity.h"
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/decoder.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/store.h>
#include <openssl/ui.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_INPUT_BYTES (1024 * 1024) /* certificates and keys are a few KiB */
#define MAX_DAYS 36525
#define MAX_OFFSET_S ((int64_t)MAX_DAYS * 86400)
#define DEVICE_CN_PREFIX "device-"
#define DEVICE_ORG "SuperInstance"

/* Copies an internal detail to the caller's buffer (cleared on success). */
static int finish(int rc, const char *buf, char *detail, size_t detail_len) {
    if (detail && detail_len > 0)
        snprintf(detail, detail_len, "%s", rc == 0 ? "" : buf);
    return rc;
}

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

/* ---- reading files ----------------------------------------------------------------------- */

/* Reads a whole regular file (at most MAX_INPUT_BYTES) into a NUL-terminated buffer. *mode gets
 * the permission bits of the file actually read (fstat on the same descriptor). */
static int read_file(const char *path, const char *what, char **data, size_t *len, mode_t *mode,
                     char *detail) {
    *data = NULL;
    *len = 0;
    /* O_NONBLOCK: opening a FIFO must not hang; it is refused below as not a regular file. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT || e == ENOTDIR)
            return syn_fail(detail, SYNESIS_ERR_FILE_NOT_FOUND, "%s file %s does not exist", what,
                            path);
        return syn_fail(detail, SYNESIS_ERR_FILE_UNREADABLE, "%s file %s cannot be opened: %s",
                        what, path, strerror(e));
    }
    struct stat st;
    int rc = 0;
    char *buf = NULL;
    if (fstat(fd, &st) != 0) {
        rc = syn_fail(detail, SYNESIS_ERR_FILE_UNREADABLE, "%s file %s: fstat: %s", what, path,
                      strerror(errno));
        goto out;
    }
    if (S_ISDIR(st.st_mode)) {
        rc = syn_fail(detail, SYNESIS_ERR_FILE_UNREADABLE, "%s file %s is a directory", what, path);
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = syn_fail(detail, SYNESIS_ERR_FILE_UNREADABLE, "%s file %s is not a regular file", what,
                      path);
        goto out;
    }
    if (st.st_size > MAX_INPUT_BYTES) {
        rc = syn_fail(detail, SYNESIS_ERR_FILE_UNREADABLE,
                      "%s file %s is too large (%lld bytes, at most %d)", what, path,
                      (long long)st.st_size, MAX_INPUT_BYTES);
        goto out;
    }
    size_t cap = (size_t)st.st_size, n = 0;
    buf = malloc(cap + 1);
    if (!buf) {
        rc = syn_fail(detail, SYNESIS_ERR_NOMEM, "reading %s file %s: out of memory", what, path);
        goto out;
    }
    while (n < cap) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = syn_fail(detail, SYNESIS_ERR_FILE_UNREADABLE, "%s file %s cannot be read: %s",
                          what, path, strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    *mode = st.st_mode & 07777;
    buf = NULL;
out:
    free(buf);
    close(fd);
    return rc;
}

/* ---- PEM parsing --------------------------------------------------------------------------- */

static int has_pem_start(const char *data, size_t len) {
    return memmem(data, len, "-----BEGIN ", 11) != NULL;
}

static int not_pem(char *detail, const char *what, const char *src, size_t len) {
    if (len == 0)
        return syn_fail(detail, SYNESIS_ERR_NOT_PEM, "%s %s is empty", what, src);
    return syn_fail(
        detail, SYNESIS_ERR_NOT_PEM,
        "%s %s holds no PEM data (no \"-----BEGIN\" line; a DER file must be converted to PEM)",
        what, src);
}

/* Reads the next PEM block; returns 1 for a block, 0 at the end, -1 when malformed (the OpenSSL
 * reason stays queued for syn_fail_ossl). */
static int pem_next(BIO *b, char **name, char **header, unsigned char **der, long *der_len) {
    ERR_set_mark();
    if (PEM_read_bio(b, name, header, der, der_len) == 1) {
        ERR_pop_to_mark();
        return 1;
    }
    unsigned long e = ERR_peek_last_error();
    if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
        ERR_pop_to_mark();
        return 0;
    }
    ERR_clear_last_mark();
    return -1;
}

/* 1 when OpenSSL decoded x's public key (with its size: a key of "0 security bits" is too weak
 * for every verification) and cached its extensions without finding them invalid (the flags are
 * computed here, once, rather than during the first verification). */
static int cert_whole(X509 *x) {
    EVP_PKEY *k = X509_get0_pubkey(x);
    int whole =
        k && EVP_PKEY_get_security_bits(k) > 0 && !(X509_get_extension_flags(x) & EXFLAG_INVALID);
    if (!whole)
        syn_ossl_clear();
    return whole;
}

/* src describes the input for messages: "file /x/y.pem" or "(in memory)". */
static int parse_certs_once(STACK_OF(X509) * *out, const char *what, const char *src,
                            const char *data, size_t len, char *detail) {
    *out = NULL;
    if (len == 0 || !has_pem_start(data, len))
        return not_pem(detail, what, src, len);
    if (len > INT_MAX)
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT, "%s %s is too large", what, src);
    syn_ossl_clear();
    BIO *b = BIO_new_mem_buf(data, (int)len);
    STACK_OF(X509) *sk = sk_X509_new_null();
    int rc = 0, blocks = 0;
    char other[64] = "";
    if (!b || !sk) {
        rc = syn_fail(detail, SYNESIS_ERR_NOMEM, "%s %s: out of memory", what, src);
        goto out;
    }
    for (;;) {
        char *name = NULL, *header = NULL;
        unsigned char *der = NULL;
        long der_len = 0;
        int r = pem_next(b, &name, &header, &der, &der_len);
        if (r == 0)
            break;
        if (r < 0) {
            rc = syn_fail_ossl(detail, SYNESIS_ERR_BAD_CERTIFICATE,
                               "%s %s: malformed PEM data after %d block(s)", what, src, blocks);
            goto out;
        }
        blocks++;
        int is_cert = strcmp(name, "CERTIFICATE") == 0 || strcmp(name, "X509 CERTIFICATE") == 0;
        int is_trusted = strcmp(name, "TRUSTED CERTIFICATE") == 0;
        if (is_cert || is_trusted) {
            const unsigned char *p = der;
            X509 *x = is_trusted ? d2i_X509_AUX(NULL, &p, der_len) : d2i_X509(NULL, &p, der_len);
            if (x && p == der + der_len && !cert_whole(x)) {
                /* OpenSSL keeps what it derives from a certificate in the object, a failure
                 * included: a key it could not decode stays absent, extensions it could not
                 * cache leave it "invalid" for good (and a trust anchor so marked fails every
                 * later verification). Both also happen when an allocation fails, with no
                 * error kept: parse it again, and keep the second if that one is whole. */
                const unsigned char *q = der;
                X509 *y =
                    is_trusted ? d2i_X509_AUX(NULL, &q, der_len) : d2i_X509(NULL, &q, der_len);
                if (y && cert_whole(y)) {
                    X509_free(x);
                    x = y;
                } else {
                    X509_free(y);
                }
            }
            if (!x || p != der + der_len || syn_ossl_oom()) {
                /* With an allocation failure queued, even a certificate that parsed may lack
                 * its public key (OpenSSL keeps a key it could not decode as absent). */
                X509_free(x);
                rc = syn_fail_ossl(detail, SYNESIS_ERR_BAD_CERTIFICATE,
                                   "%s %s: certificate #%d cannot be parsed", what, src,
                                   sk_X509_num(sk) + 1);
            } else if (!sk_X509_push(sk, x)) {
                X509_free(x);
                rc = syn_fail(detail, SYNESIS_ERR_NOMEM, "%s %s: out of memory", what, src);
            }
        } else if (!other[0]) {
            snprintf(other, sizeof(other), "%s", name);
        }
        OPENSSL_free(name);
        OPENSSL_free(header);
        OPENSSL_free(der);
        if (rc)
            goto out;
    }
    if (sk_X509_num(sk) == 0) {
        rc = syn_fail(detail, SYNESIS_ERR_NO_CERTIFICATE,
                      "%s %s holds PEM data (%s) but no CERTIFICATE block", what, src, other);
        goto out;
    }
    *out = sk;
    sk = NULL;
out:
    OSSL_STACK_OF_X509_free(sk);
    BIO_free(b);
    syn_ossl_clear();
    return rc;
}

/* OpenSSL reports some allocation failures inside its decoders as malformed data ("nested asn1
 * error", "unsupported"), without queueing an allocation failure: a verdict on the data that does
 * not repeat was one, and the second parse is the good one; one that repeats while allocations
 * fail is out of memory. */
static int reparse_after(int rc, char *detail) {
    if (!syn_alloc_failing())
        return rc;
    char was[SYNESIS_DETAIL_MAX];
    syn_copy_str(was, sizeof(was), detail ? detail : "");
    return syn_fail(detail, SYNESIS_ERR_NOMEM, "out of memory (%.400s)", was);
}

static int parse_certs(STACK_OF(X509) * *out, const char *what, const char *src, const char *data,
                       size_t len, char *detail) {
    int rc = parse_certs_once(out, what, src, data, len, detail);
    if (rc == SYNESIS_ERR_BAD_CERTIFICATE || rc == SYNESIS_ERR_NO_CERTIFICATE)
        rc = parse_certs_once(out, what, src, data, len, detail);
    if (rc == SYNESIS_ERR_BAD_CERTIFICATE || rc == SYNESIS_ERR_NO_CERTIFICATE)
        rc = reparse_after(rc, detail);
    return rc;
}

static size_t pem_len_or_strlen(const char *pem, size_t len) { return len ? len : strlen(pem); }

int syn_load_certs(STACK_OF(X509) * *out, const char *what, const char *path, const char *pem,
                   size_t pem_len, char *detail) {
    *out = NULL;
    if (pem)
        return parse_certs(out, what, "(in memory)", pem, pem_len_or_strlen(pem, pem_len), detail);
    if (!path)
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT, "no %s given", what);
    char *data;
    size_t len;
    mode_t mode;
    int rc = read_file(path, what, &data, &len, &mode, detail);
    if (rc)
        return rc;
    char src[PATH_MAX + 8];
    snprintf(src, sizeof(src), "file %s", path);
    rc = parse_certs(out, what, src, data, len, detail);
    free(data);
    return rc;
}

/* ---- private keys -------------------------------------------------------------------------- */

struct passphrase {
    const char *pass;
    int asked;
};

static int passphrase_cb(char *buf, int size, int rwflag, void *u) {
    struct passphrase *p = u;
    (void)rwflag;
    p->asked = 1;
    if (!p->pass)
        return -1;
    size_t n = strlen(p->pass);
    if (size < 0 || n > (size_t)size)
        return -1;
    memcpy(buf, p->pass, n);
    return (int)n;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int parse_key_once(EVP_PKEY **out, const char *what, const char *src, const char *data,
                          size_t len, const char *pass, char *detail) {
    *out = NULL;
    if (len == 0 || !has_pem_start(data, len))
        return not_pem(detail, what, src, len);
    if (len > INT_MAX)
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT, "%s %s is too large", what, src);
    syn_ossl_clear();
    /* First pass: find the first private key block and whether it is encrypted, so the errors
     * say "encrypted" or "no key" instead of a decoder's generic failure. */
    BIO *b = BIO_new_mem_buf(data, (int)len);
    if (!b)
        return syn_fail(detail, SYNESIS_ERR_NOMEM, "%s %s: out of memory", what, src);
    int found = 0, encrypted = 0, rc = 0;
    char first[64] = "", key_name[64] = "";
    for (;;) {
        char *name = NULL, *header = NULL;
        unsigned char *der = NULL;
        long der_len = 0;
        int r = pem_next(b, &name, &header, &der, &der_len);
        if (r == 0)
            break;
        if (r < 0) {
            rc = syn_fail_ossl(detail, SYNESIS_ERR_NO_PRIVATE_KEY, "%s %s: malformed PEM data",
                               what, src);
            break;
        }
        if (!first[0])
            snprintf(first, sizeof(first), "%s", name);
        if (ends_with(name, "PRIVATE KEY")) {
            found = 1;
            snprintf(key_name, sizeof(key_name), "%s", name);
            encrypted = strcmp(name, "ENCRYPTED PRIVATE KEY") == 0 ||
                        (header && strstr(header, "ENCRYPTED"));
        }
        OPENSSL_free(name);
        OPENSSL_free(header);
        OPENSSL_free(der);
        if (found)
            break;
    }
    BIO_free(b);
    if (rc)
        return rc;
    if (!found)
        return syn_fail(detail, SYNESIS_ERR_NO_PRIVATE_KEY,
                        "%s %s holds PEM data (%s) but no PRIVATE KEY block", what, src, first);
    if (encrypted && !pass)
        return syn_fail(detail, SYNESIS_ERR_KEY_ENCRYPTED,
                        "%s %s is encrypted (%s) and no passphrase was given", what, src, key_name);

    b = BIO_new_mem_buf(data, (int)len);
    if (!b)
        return syn_fail(detail, SYNESIS_ERR_NOMEM, "%s %s: out of memory", what, src);
    struct passphrase pw = {pass, 0};
    EVP_PKEY *k = PEM_read_bio_PrivateKey_ex(b, NULL, passphrase_cb, &pw, NULL, NULL);
    BIO_free(b);
    if (!k) {
        if (encrypted)
            return syn_fail_ossl(detail, SYNESIS_ERR_KEY_PASSPHRASE,
                                 "%s %s cannot be decrypted with the given passphrase", what, src);
        if (strcmp(key_name, "OPENSSH PRIVATE KEY") == 0)
            return syn_fail(
                detail, SYNESIS_ERR_NO_PRIVATE_KEY,
                "%s %s is an OpenSSH key: convert it to PKCS#8 (ssh-keygen -p -m PKCS8)", what,
                src);
        return syn_fail_ossl(detail, SYNESIS_ERR_NO_PRIVATE_KEY,
                             "%s %s: the %s block cannot be decoded", what, src, key_name);
    }
    syn_ossl_clear();
    *out = k;
    return 0;
}

/* As parse_certs: a decoder's verdict may be an allocation failure in disguise. */
static int parse_key(EVP_PKEY **out, const char *what, const char *src, const char *data,
                     size_t len, const char *pass, char *detail) {
    int rc = parse_key_once(out, what, src, data, len, pass, detail);
    if (rc == SYNESIS_ERR_NO_PRIVATE_KEY || rc == SYNESIS_ERR_KEY_PASSPHRASE)
        rc = parse_key_once(out, what, src, data, len, pass, detail);
    if (rc == SYNESIS_ERR_NO_PRIVATE_KEY || rc == SYNESIS_ERR_KEY_PASSPHRASE)
        rc = reparse_after(rc, detail);
    return rc;
}

static int check_key_mode(const char *what, const char *path, mode_t mode, char *detail) {
    if ((mode & 077) == 0)
        return 0;
    return syn_fail(detail, SYNESIS_ERR_KEY_PERMISSIONS,
                    "%s file %s has mode %04o: group and others must have no access (chmod 600 %s)",
                    what, path, (unsigned)mode, path);
}

static int read_key_file(EVP_PKEY **out, const char *what, const char *path, const char *pass,
                         char *detail) {
    char *data;
    size_t len;
    mode_t mode;
    int rc = read_file(path, what, &data, &len, &mode, detail);
    if (rc)
        return rc;
    rc = check_key_mode(what, path, mode, detail);
    if (rc == 0) {
        char src[PATH_MAX + 8];
        snprintf(src, sizeof(src), "file %s", path);
        rc = parse_key(out, what, src, data, len, pass, detail);
    }
    OPENSSL_cleanse(data, len);
    free(data);
    return rc;
}

/* "file:..." or another "scheme:..." (letters, digits, + - .; at least two characters so that no
 * plain relative path is taken for one unless it has a colon before any slash). */
static int is_store_uri(const char *s) {
    size_t i = 0;
    if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
        return 0;
    while (s[i] && s[i] != ':' && s[i] != '/') {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '-' || c == '.'))
            return 0;
        i++;
    }
    return s[i] == ':' && i >= 2;
}

/* The local path of a file: URI, or NULL. Percent-encoded URIs are left to OSSL_STORE. */
static const char *file_uri_path(const char *uri) {
    if (strncmp(uri, "file:", 5) != 0 || strchr(uri, '%'))
        return NULL;
    const char *p = uri + 5;
    if (strncmp(p, "//localhost/", 12) == 0)
        return p + 11;
    if (strncmp(p, "///", 3) == 0)
        return p + 2;
    if (strncmp(p, "//", 2) == 0)
        return NULL; /* a remote host: let the store refuse it */
    return p;
}

static int load_key_store(EVP_PKEY **out, const char *what, const char *uri, const char *pass,
                          char *detail) {
    *out = NULL;
    /* For file: URIs apply the same existence and permission rules as for plain paths. */
    const char *path = file_uri_path(uri);
    if (path) {
        struct stat st;
        if (stat(path, &st) != 0) {
            int e = errno;
            if (e == ENOENT || e == ENOTDIR)
                return syn_fail(detail, SYNESIS_ERR_FILE_NOT_FOUND, "%s %s: file %s does not exist",
                                what, uri, path);
            return syn_fail(detail, SYNESIS_ERR_FILE_UNREADABLE, "%s %s: %s: %s", what, uri, path,
                            strerror(e));
        }
        if (S_ISREG(st.st_mode)) {
            int rc = check_key_mode(what, path, st.st_mode & 07777, detail);
            if (rc)
                return rc;
        }
    }
    syn_ossl_clear();
    struct passphrase pw = {pass, 0};
    UI_METHOD *ui = UI_UTIL_wrap_read_pem_callback(passphrase_cb, 0);
    if (!ui)
        return syn_fail_ossl(detail, SYNESIS_ERR_NOMEM, "%s %s: UI method", what, uri);
    OSSL_STORE_CTX *sc = OSSL_STORE_open_ex(uri, NULL, NULL, ui, &pw, NULL, NULL, NULL);
    if (!sc) {
        UI_destroy_method(ui);
        return syn_fail_ossl(detail, SYNESIS_ERR_KEY_STORE, "%s URI %s cannot be opened", what,
                             uri);
    }
    EVP_PKEY *k = NULL;
    int failed = 0;
    /* Bounded: a loader that neither ends nor fails must not hang us. */
    for (int n = 0; !k && !OSSL_STORE_eof(sc); n++) {
        if (n == 10000) {
            failed = 1;
            break;
        }
        OSSL_STORE_INFO *info = OSSL_STORE_load(sc);
        if (!info) {
            /* At the end the file store reports an error too, with nothing queued. */
            if (OSSL_STORE_error(sc) && !OSSL_STORE_eof(sc)) {
                failed = 1;
                break;
            }
            continue;
        }
        if (OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PKEY)
            k = OSSL_STORE_INFO_get1_PKEY(info);
        OSSL_STORE_INFO_free(info);
    }
    OSSL_STORE_close(sc);
    UI_destroy_method(ui);
    if (k) {
        syn_ossl_clear();
        *out = k;
        return 0;
    }
    if (pw.asked && !pass)
        return syn_fail_ossl(detail, SYNESIS_ERR_KEY_ENCRYPTED,
                             "%s %s is encrypted and no passphrase was given", what, uri);
    if (pw.asked)
        return syn_fail_ossl(detail, SYNESIS_ERR_KEY_PASSPHRASE,
                             "%s %s cannot be decrypted with the given passphrase", what, uri);
    if (failed)
        return syn_fail_ossl(detail, SYNESIS_ERR_KEY_STORE, "%s %s cannot be loaded", what, uri);
    return syn_fail_ossl(detail, SYNESIS_ERR_NO_PRIVATE_KEY, "%s %s holds no private key", what,
                         uri);
}

/* ---- checks -------------------------------------------------------------------------------- */

/* "EC P-256", "RSA 2048", "ED448", ...; returns 1 if the library supports it. */
/* Describes k into out; returns 1 for a supported key, 0 for another, -1 when OpenSSL could not
 * tell for want of memory. */
static int describe_key(EVP_PKEY *k, char *out, size_t len) {
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

static int check_key_supported(EVP_PKEY *k, const char *what, char *detail) {
    char desc[64];
    int r = describe_key(k, desc, sizeof(desc));
    if (r > 0)
        return 0;
    if (r < 0)
        return syn_fail(detail, SYNESIS_ERR_NOMEM, "%s: out of memory", what);
    return syn_fail(detail, SYNESIS_ERR_UNSUPPORTED_KEY,
                    "%s is %s: supported are EC P-256, EC P-384 and RSA 2048..16384 bits", what,
                    desc);
}

static void subject_line(X509_NAME *n, char *out, size_t len) {
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

static int check_validity(X509 *x, const char *what, int depth, char *detail) {
    time_t now = time(NULL);
    char subj[256], when[48], nowbuf[48];
    if (X509_cmp_time(X509_get0_notAfter(x), &now) < 0) {
        subject_line(X509_get_subject_name(x), subj, sizeof(subj));
        format_asn1_time(X509_get0_notAfter(x), when, sizeof(when));
        return syn_fail(detail, SYNESIS_ERR_CERT_EXPIRED,
                        "%s (%s, chain position %d) expired on %s", what, subj, depth, when);
    }
    if (X509_cmp_time(X509_get0_notBefore(x), &now) > 0) {
        subject_line(X509_get_subject_name(x), subj, sizeof(subj));
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

void syn_identity_clear(syn_identity *id) {
    if (!id)
        return;
    X509_free(id->leaf);
    OSSL_STACK_OF_X509_free(id->chain);
    EVP_PKEY_free(id->key);
    id->leaf = NULL;
    id->chain = NULL;
    id->key = NULL;
}

int syn_cert_key_lost_to_oom(X509 *x) {
    if (X509_get0_pubkey(x))
        return 0;
    syn_ossl_clear();
    unsigned char *der = NULL;
    int n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &der);
    EVP_PKEY *k = NULL;
    OSSL_DECODER_CTX *d = n > 0
                              ? OSSL_DECODER_CTX_new_for_pkey(&k, "DER", "SubjectPublicKeyInfo",
                                                              NULL, EVP_PKEY_PUBLIC_KEY, NULL, NULL)
                              : NULL;
    const unsigned char *p = der;
    size_t len = n > 0 ? (size_t)n : 0;
    int decoded = d && OSSL_DECODER_from_data(d, &p, &len) == 1 && k;
    OSSL_DECODER_CTX_free(d);
    EVP_PKEY_free(k);
    OPENSSL_free(der);
    return decoded || syn_ossl_oom();
}

int syn_identity_load(syn_identity *out, const char *what, const char *cert_file,
                      const char *cert_pem, size_t cert_pem_len, const char *key_file,
                      const char *key_pem, size_t key_pem_len, const char *passphrase,
                      char *detail) {
    memset(out, 0, sizeof(*out));
    int rc = syn_crypto_init();
    if (rc)
        return syn_fail_ossl(detail, rc, "OpenSSL initialisation failed");
    char cwhat[64], kwhat[64];
    snprintf(cwhat, sizeof(cwhat), "%s certificate", what);
    snprintf(kwhat, sizeof(kwhat), "%s private key", what);
    if (!cert_file && !cert_pem)
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT, "no %s given", cwhat);

    syn_identity id = {0};
    rc = syn_load_certs(&id.chain, cwhat, cert_file, cert_pem, cert_pem_len, detail);
    if (rc)
        return rc;
    id.leaf = sk_X509_shift(id.chain);

    if (key_pem)
        rc = parse_key(&id.key, kwhat, "(in memory)", key_pem,
                       pem_len_or_strlen(key_pem, key_pem_len), passphrase, detail);
    else if (key_file && is_store_uri(key_file))
        rc = load_key_store(&id.key, kwhat, key_file, passphrase, detail);
    else if (key_file)
        rc = read_key_file(&id.key, kwhat, key_file, passphrase, detail);
    else if (cert_pem)
        rc = parse_key(&id.key, kwhat, "(in memory, with the certificate)", cert_pem,
                       pem_len_or_strlen(cert_pem, cert_pem_len), passphrase, detail);
    else
        rc = read_key_file(&id.key, kwhat, cert_file, passphrase, detail);
    if (rc)
        goto fail;

    rc = check_key_supported(id.key, kwhat, detail);
    if (rc)
        goto fail;
    if (!X509_get0_pubkey(id.leaf)) {
        rc = syn_cert_key_lost_to_oom(id.leaf)
                 ? syn_fail_ossl(detail, SYNESIS_ERR_NOMEM,
                                 "%s: its public key could not be decoded: out of memory", cwhat)
                 : syn_fail_ossl(detail, SYNESIS_ERR_CRYPTO, "%s: its public key cannot be decoded",
                                 cwhat);
        goto fail;
    }
    syn_ossl_clear();
    if (EVP_PKEY_eq(X509_get0_pubkey(id.leaf), id.key) != 1) {
        if (syn_ossl_oom()) { /* the comparison itself failed */
            rc = syn_fail_ossl(detail, SYNESIS_ERR_NOMEM, "comparing the %s with the %s", kwhat,
                               cwhat);
            goto fail;
        }
        char subj[256];
        subject_line(X509_get_subject_name(id.leaf), subj, sizeof(subj));
        rc = syn_fail(detail, SYNESIS_ERR_KEY_MISMATCH, "%s (%s) does not match the %s (%s)", kwhat,
                      key_pem    ? "in memory"
                      : key_file ? key_file
                                 : cert_file,
                      cwhat, subj);
        goto fail;
    }
    rc = check_validity(id.leaf, cwhat, 0, detail);
    for (int i = 0; rc == 0 && i < sk_X509_num(id.chain); i++)
        rc = check_validity(sk_X509_value(id.chain, i), cwhat, i + 1, detail);
    if (rc)
        goto fail;
    syn_ossl_clear();
    *out = id;
    return 0;
fail:
    syn_ossl_clear();
    syn_identity_clear(&id);
    return rc;
}

int syn_load_trust(X509_STORE *store, const char *ca_file, const char *ca_dir,
                   STACK_OF(X509) * *ca_certs, char *detail) {
    if (ca_certs)
        *ca_certs = NULL;
    if (ca_file) {
        STACK_OF(X509) *sk = NULL;
        int rc = syn_load_certs(&sk, "CA", ca_file, NULL, 0, detail);
        if (rc) /* the detail names the file and the reason */
            return rc == SYNESIS_ERR_NOMEM ? rc : SYNESIS_ERR_CA_UNREADABLE;
        for (int i = 0; i < sk_X509_num(sk); i++) {
            if (X509_STORE_add_cert(store, sk_X509_value(sk, i)) != 1) {
                OSSL_STACK_OF_X509_free(sk);
                return syn_fail_ossl(detail, SYNESIS_ERR_CA_UNREADABLE,
                                     "CA file %s: certificate #%d not added", ca_file, i + 1);
            }
        }
        if (ca_certs)
            *ca_certs = sk;
        else
            OSSL_STACK_OF_X509_free(sk);
    }
    if (ca_dir) {
        struct stat st;
        if (stat(ca_dir, &st) != 0)
            return syn_fail(detail, SYNESIS_ERR_CA_UNREADABLE, "CA directory %s: %s", ca_dir,
                            strerror(errno));
        if (!S_ISDIR(st.st_mode))
            return syn_fail(detail, SYNESIS_ERR_CA_UNREADABLE, "CA directory %s is not a directory",
                            ca_dir);
        syn_ossl_clear();
        if (X509_STORE_load_path(store, ca_dir) != 1)
            return syn_fail_ossl(detail, SYNESIS_ERR_CA_UNREADABLE,
                                 "CA directory %s cannot be used", ca_dir);
    }
    return 0;
}

int syn_spki_sha256(X509 *x, uint8_t out[32]) {
    unsigned char *der = NULL;
    int n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &der);
    if (n <= 0)
        return SYNESIS_ERR_CRYPTO;
    unsigned int mdlen = 0;
    int ok = EVP_Digest(der, (size_t)n, out, &mdlen, EVP_sha256(), NULL) == 1 && mdlen == 32;
    OPENSSL_free(der);
    return ok ? 0 : SYNESIS_ERR_CRYPTO;
}

int syn_cert_common_name(X509 *x, char *out, size_t out_len) {
    if (!out || out_len == 0)
        return SYNESIS_ERR_INVALID_ARGUMENT;
    out[0] = '\0';
    X509_NAME *n = X509_get_subject_name(x);
    int idx = -1, last = -1;
    while ((idx = X509_NAME_get_index_by_NID(n, NID_commonName, idx)) >= 0)
        last = idx;
    if (last < 0)
        return SYNESIS_ERR_BAD_CERTIFICATE;
    unsigned char *u = NULL;
    syn_ossl_clear();
    int ul = ASN1_STRING_to_UTF8(&u, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(n, last)));
    if (ul < 0) {
        int oom = syn_ossl_oom();
        ERR_clear_error();
        return oom ? SYNESIS_ERR_NOMEM : SYNESIS_ERR_BAD_CERTIFICATE;
    }
    int rc = 0;
    for (int i = 0; i < ul; i++)
        if (u[i] < 0x20 || u[i] == 0x7f)
            rc = SYNESIS_ERR_BAD_CERTIFICATE;
    if (rc == 0 && (size_t)ul >= out_len)
        rc = SYNESIS_ERR_BAD_CERTIFICATE;
    if (rc == 0)
        memcpy(out, u, (size_t)ul + 1);
    OPENSSL_free(u);
    return rc;
}

/* ---- validation of inputs ------------------------------------------------------------------ */

static int device_id_char_ok(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == ':' || c == '@';
}

static int validate_device_id(const char *id, char *detail) {
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
    return finish(validate_device_id(id, buf), buf, detail, detail_len);
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
    describe_key(signer, desc, sizeof(desc));
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

/* ---- atomic file writing ------------------------------------------------------------------- */

struct out_file {
    const char *path;
    const char *what;
    mode_t mode;
    BIO *pem; /* the content */
    char *tmp;
    int committed;
};

/* dir of path into out ("." when none). */
static void dir_of(const char *path, char *out, size_t len) {
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(out, len, ".");
    else if (slash == path)
        snprintf(out, len, "/");
    else
        snprintf(out, len, "%.*s", (int)(slash - path), path);
}

static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int write_temp(struct out_file *f, char *detail) {
    char dir[PATH_MAX];
    dir_of(f->path, dir, sizeof(dir));
    const char *slash = strrchr(f->path, '/');
    const char *base = slash ? slash + 1 : f->path;
    if (asprintf(&f->tmp, "%s/.%s.tmp-XXXXXX", dir, base) < 0) {
        f->tmp = NULL;
        return syn_fail(detail, SYNESIS_ERR_NOMEM, "out of memory");
    }
    /* mkostemp: O_CREAT|O_EXCL, mode 0600, so a key is never readable by others, not even briefly.
     */
    int fd = mkostemp(f->tmp, O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        free(f->tmp);
        f->tmp = NULL;
        if (e == ENOENT || e == ENOTDIR)
            return syn_fail(detail, SYNESIS_ERR_FILE_NOT_FOUND,
                            "directory %s (for the %s) does not exist", dir, f->what);
        return syn_fail(detail, SYNESIS_ERR_SYSTEM, "cannot create a file in %s (for the %s): %s",
                        dir, f->what, strerror(e));
    }
    char *data;
    long n = BIO_get_mem_data(f->pem, &data);
    int rc = 0;
    if ((f->mode != 0600 && fchmod(fd, f->mode) != 0) || n < 0 ||
        write_all(fd, data, (size_t)n) != 0 || fsync(fd) != 0)
        rc = syn_fail(detail, SYNESIS_ERR_SYSTEM, "writing %s: %s", f->tmp, strerror(errno));
    if (close(fd) != 0 && rc == 0)
        rc = syn_fail(detail, SYNESIS_ERR_SYSTEM, "writing %s: %s", f->tmp, strerror(errno));
    return rc;
}

static int exists_error(const struct out_file *f, char *detail) {
    return syn_fail(detail, SYNESIS_ERR_FILE_EXISTS,
                    "%s file %s already exists (refusing to overwrite it)", f->what, f->path);
}

/* Moves the temporary file into place; without overwrite, never replaces a file that appeared
 * since the check (RENAME_NOREPLACE, or link() on file systems without it). */
static int commit_file(struct out_file *f, int overwrite, char *detail) {
    if (overwrite) {
        if (rename(f->tmp, f->path) != 0)
            return syn_fail(detail, SYNESIS_ERR_SYSTEM, "renaming %s to %s: %s", f->tmp, f->path,
                            strerror(errno));
    } else if (renameat2(AT_FDCWD, f->tmp, AT_FDCWD, f->path, RENAME_NOREPLACE) != 0) {
        int e = errno;
        if (e == EEXIST)
            return exists_error(f, detail);
        if (e != EINVAL && e != ENOSYS && e != ENOTSUP)
            return syn_fail(detail, SYNESIS_ERR_SYSTEM, "renaming %s to %s: %s", f->tmp, f->path,
                            strerror(e));
        if (link(f->tmp, f->path) == 0) {
            unlink(f->tmp);
        } else if (errno == EEXIST) {
            return exists_error(f, detail);
        } else {
            struct stat st; /* neither is supported (e.g. FAT): check, then rename */
            if (lstat(f->path, &st) == 0)
                return exists_error(f, detail);
            if (rename(f->tmp, f->path) != 0)
                return syn_fail(detail, SYNESIS_ERR_SYSTEM, "renaming %s to %s: %s", f->tmp,
                                f->path, strerror(errno));
        }
    }
    free(f->tmp);
    f->tmp = NULL;
    f->committed = 1;
    return 0;
}

static void sync_dir(const char *path) {
    char dir[PATH_MAX];
    dir_of(path, dir, sizeof(dir));
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

static int check_absent(const char *path, const char *what, char *detail) {
    struct stat st;
    if (lstat(path, &st) == 0)
        return syn_fail(detail, SYNESIS_ERR_FILE_EXISTS,
                        "%s file %s already exists (refusing to overwrite it)", what, path);
    return 0;
}

static int write_files(struct out_file *f, size_t n, int overwrite, char *detail) {
    int rc = 0;
    for (size_t i = 0; !overwrite && i < n && rc == 0; i++)
        rc = check_absent(f[i].path, f[i].what, detail);
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = write_temp(&f[i], detail);
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = commit_file(&f[i], overwrite, detail);
    for (size_t i = 0; i < n; i++) {
        if (f[i].tmp) {
            unlink(f[i].tmp);
            free(f[i].tmp);
            f[i].tmp = NULL;
        }
        /* Roll back the new files of a failed set; replaced files cannot be restored. */
        if (rc && !overwrite && f[i].committed)
            unlink(f[i].path);
    }
    for (size_t i = 0; rc == 0 && i < n; i++)
        sync_dir(f[i].path);
    return rc;
}

/* ---- public: generation -------------------------------------------------------------------- */

SYNESIS_API void synesis_pki_cert_options_init(synesis_pki_cert_options *opts,
                                               synesis_cert_profile profile) {
    if (!opts)
        return;
    memset(opts, 0, sizeof(*opts));
    opts->profile = profile;
    opts->organization = DEVICE_ORG;
    opts->days = profile == SYNESIS_CERT_PROFILE_CA ? 3650 : 365;
}

/* mkdir -p with mode 0700 for the directories it creates. */
static int make_dirs(const char *dir, char *detail) {
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s", dir) >= (int)sizeof(path))
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT, "directory name too long");
    for (char *p = path + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(path, 0700) != 0 && errno != EEXIST) {
                int e = errno;
                return syn_fail(detail,
                                e == ENOENT || e == ENOTDIR ? SYNESIS_ERR_FILE_NOT_FOUND
                                                            : SYNESIS_ERR_SYSTEM,
                                "cannot create directory %s: %s", path, strerror(e));
            }
            *p = c;
            if (c == '\0')
                break;
        }
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return syn_fail(detail, SYNESIS_ERR_SYSTEM, "%s is not a directory", dir);
    return 0;
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
        if ((rc = check_absent(key_file, "private key", detail)) ||
            (rc = check_absent(cert_file, "certificate", detail)) ||
            (o->csr_file && (rc = check_absent(o->csr_file, "CSR", detail))))
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
    struct out_file files[3];
    memset(files, 0, sizeof(files));
    size_t nfiles = 0;
    EVP_PKEY *key = gen_p256(detail, &rc);
    if (!key)
        goto out;
    if ((rc = make_cert(&cert, o, key, ca.leaf, ca.key, detail)) != 0)
        goto out;
    if (o->csr_file && (rc = make_csr(&csr, o, key, detail)) != 0)
        goto out;

    files[nfiles++] = (struct out_file){.path = key_file, .what = "private key", .mode = 0600};
    files[nfiles++] = (struct out_file){.path = cert_file, .what = "certificate", .mode = 0644};
    if (csr)
        files[nfiles++] = (struct out_file){.path = o->csr_file, .what = "CSR", .mode = 0644};
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
    if (make_dir && (rc = make_dirs(make_dir, detail)) != 0)
        goto out;
    rc = write_files(files, nfiles, o->overwrite, detail);
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
    return finish(create_cert(opts, cert_file, key_file, NULL, buf), buf, detail, detail_len);
}

SYNESIS_API void synesis_identity_options_init(synesis_identity_options *opts) {
    if (!opts)
        return;
    memset(opts, 0, sizeof(*opts));
    opts->days = 365;
    opts->cert_name = "device.pem";
    opts->key_name = "device.key";
    opts->csr_name = "device.csr";
}

static int file_name_ok(const char *n) {
    return n && n[0] && !strchr(n, '/') && strcmp(n, ".") != 0 && strcmp(n, "..") != 0;
}

static int identity_generate(const synesis_identity_options *opts, const char *out_dir,
                             char *detail) {
    if (!opts || !out_dir || !out_dir[0])
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                        "options and output directory are required");
    int rc = validate_device_id(opts->device_id, detail);
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
    return finish(identity_generate(opts, out_dir, buf), buf, detail, detail_len);
}

static int create_test_pki(const char *dir, const char *device_id, char *detail) {
    if (!dir || !dir[0])
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT, "directory is required");
    int rc = validate_device_id(device_id, detail);
    if (rc)
        return rc;
    static const char *const names[6] = {"ca.pem",   "ca.key",     "edge.pem",
                                         "edge.key", "device.pem", "device.key"};
    char p[6][PATH_MAX];
    for (int i = 0; i < 6; i++)
        if (snprintf(p[i], sizeof(p[i]), "%s/%s", dir, names[i]) >= (int)sizeof(p[i]))
            return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT, "directory name too long");
    for (int i = 0; i < 6; i++)
        if ((rc = check_absent(p[i], "test PKI", detail)) != 0)
            return rc;
    if ((rc = make_dirs(dir, detail)) != 0)
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
    return finish(create_test_pki(dir, device_id, buf), buf, detail, detail_len);
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

static int inspect(const char *path, synesis_identity_info *info, char *detail) {
    if (!path || !info)
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                        "certificate path and info are required");
    memset(info, 0, sizeof(*info));
    int rc = syn_crypto_init();
    if (rc)
        return syn_fail_ossl(detail, rc, "OpenSSL initialisation failed");
    STACK_OF(X509) *sk = NULL;
    if ((rc = syn_load_certs(&sk, "certificate", path, NULL, 0, detail)) != 0)
        return rc;
    X509 *x = sk_X509_value(sk, 0);
    info->chain_length = sk_X509_num(sk);

    if (syn_cert_common_name(x, info->common_name, sizeof(info->common_name)) == 0 &&
        strncmp(info->common_name, DEVICE_CN_PREFIX, strlen(DEVICE_CN_PREFIX)) == 0 &&
        validate_device_id(info->common_name + strlen(DEVICE_CN_PREFIX), NULL) == 0)
        snprintf(info->device_id, sizeof(info->device_id), "%s",
                 info->common_name + strlen(DEVICE_CN_PREFIX));
    subject_line(X509_get_subject_name(x), info->subject, sizeof(info->subject));
    subject_line(X509_get_issuer_name(x), info->issuer, sizeof(info->issuer));

    const ASN1_INTEGER *serial = X509_get0_serialNumber(x);
    BIGNUM *bn = ASN1_INTEGER_to_BN(serial, NULL);
    if (bn) {
        unsigned char sb[64];
        int n = BN_num_bytes(bn);
        if (n > 0 && n <= (int)sizeof(sb) && BN_bn2bin(bn, sb) == n)
            hex_colons(sb, (size_t)n, info->serial, sizeof(info->serial));
        BN_free(bn);
    }
    unsigned int mdlen = 0;
    if (X509_digest(x, EVP_sha256(), info->fingerprint_sha256_raw, &mdlen) != 1 || mdlen != 32) {
        rc = syn_fail_ossl(detail, SYNESIS_ERR_CRYPTO, "certificate file %s: digest failed", path);
        goto out;
    }
    hex_colons(info->fingerprint_sha256_raw, 32, info->fingerprint_sha256,
               sizeof(info->fingerprint_sha256));
    if (syn_spki_sha256(x, info->spki_sha256) != 0) {
        rc = syn_fail_ossl(detail, SYNESIS_ERR_BAD_CERTIFICATE,
                           "certificate file %s: no usable public key", path);
        goto out;
    }
    char b64[48];
    EVP_EncodeBlock((unsigned char *)b64, info->spki_sha256, 32);
    snprintf(info->spki_pin, sizeof(info->spki_pin), "sha256//%s", b64);
    EVP_PKEY *pub = X509_get0_pubkey(x);
    if (pub)
        describe_key(pub, info->key_type, sizeof(info->key_type));
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

SYNESIS_API int synesis_identity_inspect(const char *cert_path, synesis_identity_info *info,
                                         char *detail, size_t detail_len) {
    char buf[SYNESIS_DETAIL_MAX];
    return finish(inspect(cert_path, info, buf), buf, detail, detail_len);
}

SYNESIS_API int synesis_identity_check(const char *cert_path, const char *key_path,
                                       const char *passphrase, char *detail, size_t detail_len) {
    char buf[SYNESIS_DETAIL_MAX];
    if (!cert_path)
        return finish(syn_fail(buf, SYNESIS_ERR_INVALID_ARGUMENT, "certificate path is required"),
                      buf, detail, detail_len);
    syn_identity id;
    int rc =
        syn_identity_load(&id, "device", cert_path, NULL, 0, key_path, NULL, 0, passphrase, buf);
    syn_identity_clear(&id);
    return finish(rc, buf, detail, detail_len);
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

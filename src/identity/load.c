/* Device identity: reading certificates and keys (files, PEM, OSSL_STORE URIs), trust anchors. */
#include "identity/identity_int.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/store.h>
#include <openssl/ui.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

    rc = syn_id_check_key_supported(id.key, kwhat, detail);
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
        syn_id_subject_line(X509_get_subject_name(id.leaf), subj, sizeof(subj));
        rc = syn_fail(detail, SYNESIS_ERR_KEY_MISMATCH, "%s (%s) does not match the %s (%s)", kwhat,
                      key_pem    ? "in memory"
                      : key_file ? key_file
                                 : cert_file,
                      cwhat, subj);
        goto fail;
    }
    rc = syn_id_check_validity(id.leaf, cwhat, 0, detail);
    for (int i = 0; rc == 0 && i < sk_X509_num(id.chain); i++)
        rc = syn_id_check_validity(sk_X509_value(id.chain, i), cwhat, i + 1, detail);
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

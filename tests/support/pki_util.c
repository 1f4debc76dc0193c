/* Test helpers for the identity and TLS tests (see pki_util.h). */
#include "pki_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *pki_tmpdir(const char *tag) {
    const char *base = getenv("SYNESIS_TEST_TMP");
    if (!base || !base[0])
        base = "/tmp";
    char *p = NULL;
    if (asprintf(&p, "%s/%s-XXXXXX", base, tag) < 0 || !mkdtemp(p)) {
        perror("pki_tmpdir");
        abort();
    }
    return p;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) == 0 ? 0 : (errno == ENOENT ? 0 : -1);
}

void pki_rmtree(const char *dir) {
    if (dir)
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

char *pki_path(char *buf, const char *dir, const char *name) {
    snprintf(buf, PATH_MAX, "%s/%s", dir, name);
    return buf;
}

int pki_write_file(const char *path, const void *data, size_t len, mode_t mode) {
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return -1;
    int rc = write(fd, data, len) == (ssize_t)len ? 0 : -1;
    close(fd);
    return rc == 0 ? chmod(path, mode) : rc;
}

char *pki_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            char *nb = realloc(buf, cap * 2 + 1);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf) {
        buf[n] = '\0';
        if (len)
            *len = n;
    }
    return buf;
}

int pki_count_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

X509 *pki_load_cert(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    return x;
}

EVP_PKEY *pki_load_key(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    return k;
}

X509_REQ *pki_load_csr(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    X509_REQ *r = PEM_read_X509_REQ(f, NULL, NULL, NULL);
    fclose(f);
    return r;
}

int pki_write_key(const char *path, EVP_PKEY *key, const char *pass, int traditional) {
    BIO *b = BIO_new(BIO_s_mem());
    const EVP_CIPHER *c = pass ? EVP_aes_256_cbc() : NULL;
    int plen = pass ? (int)strlen(pass) : 0;
    int ok = traditional ? PEM_write_bio_PrivateKey_traditional(
                               b, key, c, (unsigned char *)(uintptr_t)pass, plen, NULL, NULL)
                         : PEM_write_bio_PKCS8PrivateKey(b, key, c, pass, plen, NULL, NULL);
    char *data;
    long n = BIO_get_mem_data(b, &data);
    int rc = ok == 1 ? pki_write_file(path, data, (size_t)n, 0600) : -1;
    BIO_free(b);
    return rc;
}

int pki_write_self_signed(const char *path, EVP_PKEY *key, const char *cn) {
    X509 *x = X509_new();
    X509_NAME *n = X509_get_subject_name(x);
    int ok = X509_set_version(x, X509_VERSION_3) &&
             ASN1_INTEGER_set(X509_get_serialNumber(x), 42) &&
             X509_NAME_add_entry_by_NID(n, NID_commonName, MBSTRING_UTF8, (const unsigned char *)cn,
                                        -1, -1, 0) &&
             X509_set_issuer_name(x, n) && X509_gmtime_adj(X509_getm_notBefore(x), -60) &&
             X509_gmtime_adj(X509_getm_notAfter(x), 365L * 86400) && X509_set_pubkey(x, key);
    int no_digest = EVP_PKEY_is_a(key, "ED448") || EVP_PKEY_is_a(key, "ED25519");
    ok = ok && X509_sign(x, key, no_digest ? NULL : EVP_sha256()) > 0;
    int rc = -1;
    if (ok) {
        FILE *f = fopen(path, "w");
        if (f) {
            rc = PEM_write_X509(f, x) == 1 ? 0 : -1;
            fclose(f);
        }
    }
    X509_free(x);
    return rc;
}

EVP_PKEY *pki_make_key(const char *kind) {
    if (strncmp(kind, "P-", 2) == 0)
        return EVP_PKEY_Q_keygen(NULL, NULL, "EC", kind);
    if (strcmp(kind, "RSA-1024") == 0)
        return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    if (strcmp(kind, "RSA-2048") == 0)
        return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    return EVP_PKEY_Q_keygen(NULL, NULL, kind);
}

int pki_spki_sha256(const char *cert_path, unsigned char out[32]) {
    X509 *x = pki_load_cert(cert_path);
    if (!x)
        return -1;
    unsigned char *der = NULL;
    int n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &der);
    unsigned int len = 0;
    int rc = n > 0 && EVP_Digest(der, (size_t)n, out, &len, EVP_sha256(), NULL) == 1 && len == 32
                 ? 0
                 : -1;
    OPENSSL_free(der);
    X509_free(x);
    return rc;
}

/* PEM certificate and key loading (src/identity/load.c).
 *
 * Input: flags (1 byte), the certificate part's length (2 bytes, big-endian), the certificate
 * part, then the key part. By flags & 3:
 *   0  syn_identity_load() of both parts from memory (what the tunnel does with cert_pem/key_pem)
 *   1  the same with the key looked for in the certificate part (key_pem NULL)
 *   2  syn_load_certs() of the certificate part, then the per-certificate helpers the tunnel and
 *      the edge use on it: syn_cert_common_name(), syn_spki_sha256()
 *   3  the file paths: synesis_identity_inspect() and synesis_identity_check() on the two parts
 *      held in memory files (memfd, mode 0600, read through /proc/self/fd)
 * flags & 4 gives a passphrase ("fuzz"); flags & 8 passes the in-memory lengths as 0 (the
 * NUL-terminated form of the API).
 * Checked: only the documented error codes come back, every detail is a bounded string, and a
 * successful load owns a leaf and a key.
 */
#include "fuzz.h"

#include "internal.h"
#include "synesis/identity.h"
#include "tls.h"

#include <openssl/err.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int load_error_ok(int rv) {
    switch (rv) {
    case 0:
    case SYNESIS_ERR_INVALID_ARGUMENT:
    case SYNESIS_ERR_NOMEM:
    case SYNESIS_ERR_NOT_PEM:
    case SYNESIS_ERR_NO_CERTIFICATE:
    case SYNESIS_ERR_BAD_CERTIFICATE:
    case SYNESIS_ERR_NO_PRIVATE_KEY:
    case SYNESIS_ERR_KEY_ENCRYPTED:
    case SYNESIS_ERR_KEY_PASSPHRASE:
    case SYNESIS_ERR_UNSUPPORTED_KEY:
    case SYNESIS_ERR_KEY_MISMATCH:
    case SYNESIS_ERR_CERT_EXPIRED:
    case SYNESIS_ERR_CERT_NOT_YET_VALID:
    case SYNESIS_ERR_CRYPTO:
    case SYNESIS_ERR_KEY_STORE:
    case SYNESIS_ERR_FILE_NOT_FOUND:
    case SYNESIS_ERR_FILE_UNREADABLE:
    case SYNESIS_ERR_KEY_PERMISSIONS:
        return 1;
    default:
        return 0;
    }
}

static void check_detail(const char *d, size_t cap) { FUZZ_CHECK(memchr(d, '\0', cap) != NULL); }

/* A memory file holding len bytes with the given mode; its path in path. -1 on failure. */
static int mem_file(const char *data, size_t len, mode_t mode, char *path, size_t plen) {
    int fd = memfd_create("synesis-fuzz", MFD_CLOEXEC);
    if (fd < 0)
        return -1;
    if ((len && write(fd, data, len) != (ssize_t)len) || fchmod(fd, mode) != 0) {
        close(fd);
        return -1;
    }
    snprintf(path, plen, "/proc/self/fd/%d", fd);
    return fd;
}

static void check_certs(const char *cert, size_t clen, char *detail) {
    STACK_OF(X509) *sk = NULL;
    int rv = syn_load_certs(&sk, "fuzz certificate", NULL, cert, clen, detail);
    FUZZ_CHECK(load_error_ok(rv));
    check_detail(detail, SYNESIS_DETAIL_MAX);
    if (rv != 0) {
        FUZZ_CHECK(sk == NULL);
        return;
    }
    FUZZ_CHECK(sk && sk_X509_num(sk) > 0);
    for (int i = 0; i < sk_X509_num(sk); i++) {
        X509 *x = sk_X509_value(sk, i);
        char cn[128];
        int r = syn_cert_common_name(x, cn, sizeof(cn));
        FUZZ_CHECK(r == 0 || r == SYNESIS_ERR_BAD_CERTIFICATE);
        if (r == 0) {
            FUZZ_CHECK(memchr(cn, '\0', sizeof(cn)) != NULL);
            for (const char *c = cn; *c; c++)
                FUZZ_CHECK((unsigned char)*c >= 0x20 && *c != 0x7f);
        }
        uint8_t pin[32];
        r = syn_spki_sha256(x, pin);
        FUZZ_CHECK(r == 0 || r == SYNESIS_ERR_CRYPTO);
    }
    OSSL_STACK_OF_X509_free(sk);
    ERR_clear_error();
}

static void check_files(const char *cert, size_t clen, const char *key, size_t klen,
                        const char *pass) {
    char cpath[64], kpath[64], detail[SYNESIS_DETAIL_MAX];
    int cfd = mem_file(cert, clen, 0644, cpath, sizeof(cpath));
    int kfd = mem_file(key, klen, 0600, kpath, sizeof(kpath));
    if (cfd >= 0 && kfd >= 0) {
        synesis_identity_info *info = NULL;
        int rv = synesis_identity_inspect(cpath, &info, detail, sizeof(detail));
        FUZZ_CHECK(load_error_ok(rv));
        check_detail(detail, sizeof(detail));
        if (rv == 0) {
            FUZZ_CHECK(info->struct_size == sizeof(*info));
            FUZZ_CHECK(info->subject && info->issuer && info->common_name && info->device_id);
            FUZZ_CHECK(strlen(info->common_name) <= 64);
            FUZZ_CHECK(strlen(info->device_id) <= SYNESIS_DEVICE_ID_MAX);
            FUZZ_CHECK(strlen(info->spki_pin) == 52);
            FUZZ_CHECK(info->chain_length >= 1);
            uint8_t pin[32];
            FUZZ_CHECK(synesis_spki_pin_parse(info->spki_pin, pin) == 0);
            FUZZ_CHECK(memcmp(pin, info->spki_sha256, 32) == 0);
        }
        synesis_identity_info_free(info);
        /* A short detail buffer is truncated, never overrun. */
        char small[8];
        rv = synesis_identity_check(cpath, kpath, pass, small, sizeof(small));
        FUZZ_CHECK(load_error_ok(rv));
        check_detail(small, sizeof(small));
    }
    if (cfd >= 0)
        close(cfd);
    if (kfd >= 0)
        close(kfd);
    ERR_clear_error();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3)
        return 0;
    uint8_t flags = data[0];
    size_t clen = (size_t)data[1] << 8 | data[2];
    data += 3;
    size -= 3;
    if (clen > size)
        clen = size;
    /* Both parts as NUL-terminated copies (the API's length 0 form reads up to the NUL). */
    char *cert = malloc(clen + 1), *key = malloc(size - clen + 1);
    if (!cert || !key) {
        free(cert);
        free(key);
        return 0;
    }
    memcpy(cert, data, clen);
    cert[clen] = '\0';
    size_t klen = size - clen;
    memcpy(key, data + clen, klen);
    key[klen] = '\0';
    const char *pass = (flags & 4) ? "fuzz" : NULL;
    size_t cl = (flags & 8) ? 0 : clen, kl = (flags & 8) ? 0 : klen;
    char detail[SYNESIS_DETAIL_MAX];

    switch (flags & 3) {
    case 0:
    case 1: {
        syn_identity id;
        int rv = syn_identity_load(&id, "fuzz", NULL, cert, cl, NULL, (flags & 3) ? NULL : key, kl,
                                   pass, detail);
        FUZZ_CHECK(load_error_ok(rv));
        check_detail(detail, sizeof(detail));
        if (rv == 0) {
            FUZZ_CHECK(id.leaf && id.key && id.chain);
            char cn[128];
            (void)syn_cert_common_name(id.leaf, cn, sizeof(cn));
        } else {
            FUZZ_CHECK(!id.leaf && !id.key && !id.chain);
        }
        syn_identity_clear(&id);
        break;
    }
    case 2:
        check_certs(cert, cl, detail);
        break;
    default:
        check_files(cert, clen, key, klen, pass);
        break;
    }
    ERR_clear_error();
    free(cert);
    free(key);
    return 0;
}

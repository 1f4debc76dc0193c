/* Device identity (src/identity/): what its files share. Private to src/identity/; the rest of the
 * library reaches identities through tls.h (syn_identity_load, syn_load_certs, ...) and the public
 * functions of synesis/identity.h.
 *   load.c     reading certificates and keys (files, PEM, OSSL_STORE URIs), trust anchors
 *   x509.c     input validation, key, certificate and CSR creation, the test PKI
 *   files.c    writing files: atomically, with their modes, never over an existing file unasked
 *   inspect.c  checks on loaded keys and certificates, inspection, SPKI pins
 */
#ifndef SYNESIS_IDENTITY_INT_H
#define SYNESIS_IDENTITY_INT_H

#include "internal.h"
#include "synesis/identity.h"
#include "tls.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <sys/types.h>

#define MAX_INPUT_BYTES (1024 * 1024) /* certificates and keys are a few KiB */
#define MAX_DAYS 36525
#define MAX_OFFSET_S ((int64_t)MAX_DAYS * 86400)
#define DEVICE_CN_PREFIX "device-"
#define DEVICE_ORG "SuperInstance"

/* Copies an internal detail to the caller's buffer (cleared on success). */
static inline int syn_id_finish(int rc, const char *buf, char *detail, size_t detail_len) {
    if (detail && detail_len > 0)
        snprintf(detail, detail_len, "%s", rc == 0 ? "" : buf);
    return rc;
}

/* ---- inspect.c: checks ------------------------------------------------------------------------
 */

/* "EC P-256", "RSA 2048", "ED448", ... into out; returns 1 for a supported key, 0 for another,
 * -1 when OpenSSL could not tell for want of memory. */
int syn_id_describe_key(EVP_PKEY *k, char *out, size_t len);

/* 0 for a key the library supports; SYNESIS_ERR_UNSUPPORTED_KEY or SYNESIS_ERR_NOMEM. */
int syn_id_check_key_supported(EVP_PKEY *k, const char *what, char *detail);

/* The name as one RFC 2253 line, most significant first ("" when OpenSSL cannot print it). */
void syn_id_subject_line(X509_NAME *n, char *out, size_t len);

/* 0 when x is valid now; SYNESIS_ERR_CERT_EXPIRED or SYNESIS_ERR_CERT_NOT_YET_VALID, naming what
 * and the chain position depth. */
int syn_id_check_validity(X509 *x, const char *what, int depth, char *detail);

/* ---- x509.c: input validation -----------------------------------------------------------------
 */

/* 0 for a valid device id; SYNESIS_ERR_INVALID_ARGUMENT naming the offending byte. */
int syn_id_validate_device_id(const char *id, char *detail);

/* ---- files.c: writing files -------------------------------------------------------------------
 */

/* One file of a set written together: path, its name in messages, its mode, its content. */
struct syn_id_out_file {
    const char *path;
    const char *what;
    mode_t mode;
    BIO *pem; /* the content */
    char *tmp;
    int committed;
};

/* SYNESIS_ERR_FILE_EXISTS when path exists (what names it in the message), else 0. */
int syn_id_check_absent(const char *path, const char *what, char *detail);

/* mkdir -p with mode 0700 for the directories it creates. */
int syn_id_make_dirs(const char *dir, char *detail);

/* Writes the n files, each through a temporary file moved into place; without overwrite, never
 * replaces an existing file and removes the new files of a set that failed halfway. */
int syn_id_write_files(struct syn_id_out_file *f, size_t n, int overwrite, char *detail);

#endif /* SYNESIS_IDENTITY_INT_H */

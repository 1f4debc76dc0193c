/* Test helpers for the identity and TLS tests: scratch directories, files, odd keys and certs. */
#ifndef SYNESIS_TEST_PKI_UTIL_H
#define SYNESIS_TEST_PKI_UTIL_H

#include <limits.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stddef.h>
#include <sys/types.h>

/* A fresh directory under $SYNESIS_TEST_TMP (or /tmp); malloc'd path, never NULL. */
char *pki_tmpdir(const char *tag);

/* rm -rf dir (the helpers only ever remove what pki_tmpdir made). */
void pki_rmtree(const char *dir);

/* dir + "/" + name into buf (PATH_MAX bytes); returns buf. */
char *pki_path(char *buf, const char *dir, const char *name);

/* Writes data to path with mode (replacing it); returns 0. */
int pki_write_file(const char *path, const void *data, size_t len, mode_t mode);

/* Whole file, NUL-terminated, malloc'd; NULL on error. */
char *pki_read_file(const char *path, size_t *len);

/* Number of entries in dir besides . and .. */
int pki_count_entries(const char *dir);

X509 *pki_load_cert(const char *path);
EVP_PKEY *pki_load_key(const char *path);
X509_REQ *pki_load_csr(const char *path);

/* Writes a key as PKCS#8 (encrypted with AES-256-CBC when pass != NULL; traditional format
 * with a Proc-Type header when traditional != 0), mode 0600. Returns 0. */
int pki_write_key(const char *path, EVP_PKEY *key, const char *pass, int traditional);

/* Writes a self-signed certificate for key (any algorithm: Ed448 signs without a digest),
 * CN = cn, valid now for a year. Returns 0. */
int pki_write_self_signed(const char *path, EVP_PKEY *key, const char *cn);

/* A key of the given kind: "P-256", "P-384", "P-521", "RSA-1024", "RSA-2048", "ED448", "ED25519".
 */
EVP_PKEY *pki_make_key(const char *kind);

/* SHA-256 of the certificate's SubjectPublicKeyInfo. Returns 0. */
int pki_spki_sha256(const char *cert_path, unsigned char out[32]);

#endif /* SYNESIS_TEST_PKI_UTIL_H */

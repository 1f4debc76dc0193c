/**
 * @file synesis/identity.h
 * @brief Device identity (key, certificate, CSR), a small test PKI, inspection and checks.
 *
 * A device proves who it is to the edge with an X.509 certificate whose subject is
 * "CN=device-<id>, O=SuperInstance" and whose private key never leaves the device. This header
 * creates such identities (self-signed, or signed by a CA you hold), a throwaway test PKI, and
 * reads them back.
 *
 * Keys the library accepts (generation always makes ECDSA P-256):
 *   - EC on P-256 (prime256v1) or P-384 (secp384r1)
 *   - RSA of 2048 to 16384 bits
 * Anything else (DSA, Ed25519, Ed448, RSA-PSS, other curves, RSA < 2048 bits) is refused with
 * SYNESIS_ERR_UNSUPPORTED_KEY.
 *
 * Files are PEM. Private keys are written as unencrypted PKCS#8 with mode 0600 and are refused
 * on load (SYNESIS_ERR_KEY_PERMISSIONS) when group or others have any access to them, as ssh does.
 *
 * Every function that can fail returns 0 or a negative SYNESIS_ERR_* code, and writes a
 * human-readable message naming the file or field (plus OpenSSL's reason when there is one) into
 * detail, which may be NULL; the message is truncated to detail_len bytes including the NUL.
 * None of these functions keeps state between calls; they may be called from any thread.
 *
 * Options structs are caller-filled under the evolution rule (docs/integration.md, "API
 * conventions"): start from their _init() macro.
 */
#ifndef SYNESIS_IDENTITY_H
#define SYNESIS_IDENTITY_H

#include <stddef.h>
#include <stdint.h>

#include "synesis/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Longest device id, in bytes: "device-" + id must fit X.520's 64-character limit for a CN.
 * A device id is 1..57 characters from [A-Za-z0-9] and "-._:@". @since 1.0
 */
#define SYNESIS_DEVICE_ID_MAX 57

/**
 * Checks a device id.
 * @return 0 when id is a valid device id (see SYNESIS_DEVICE_ID_MAX), else
 *         SYNESIS_ERR_INVALID_ARGUMENT (also for NULL) with the offending character or length in
 *         detail.
 * Any thread. @since 1.0
 */
SYNESIS_API int synesis_identity_validate_device_id(const char *id, char *detail,
                                                    size_t detail_len);

/** Options of synesis_identity_generate() (caller-filled). Fill with
 * synesis_identity_options_init() first; members are only ever appended. Strings are borrowed for
 * the duration of the call. @since 1.0 */
typedef struct synesis_identity_options {
    size_t struct_size; /**< set by synesis_identity_options_init() @since 1.0 */
    /** Required; the certificate's CN is "device-<device_id>". @since 1.0 */
    const char *device_id;
    int days; /**< validity in days, 1..36525; default 365 @since 1.0 */
    /** notBefore = now + this (seconds, may be negative); default 0. @since 1.0 */
    int64_t not_before_offset_s;
    /** Issuing CA certificate (PEM); NULL = self-signed (default). @since 1.0 */
    const char *ca_cert_file;
    /** Its private key (PEM, mode 0600); set both or neither. @since 1.0 */
    const char *ca_key_file;
    /** Passphrase of an encrypted CA key; default NULL. @since 1.0 */
    const char *ca_key_passphrase;
    /** 1 = replace existing files; default 0 = SYNESIS_ERR_FILE_EXISTS. @since 1.0 */
    int overwrite;
    /** 1 = also write a PKCS#10 request for enrolment; default 0. @since 1.0 */
    int write_csr;
    const char *cert_name; /**< file name in out_dir; default "device.pem" @since 1.0 */
    const char *key_name;  /**< default "device.key" @since 1.0 */
    const char *csr_name;  /**< default "device.csr" @since 1.0 */
} synesis_identity_options;

/**
 * Fills the first size bytes of opts: zeroes them, writes the defaults documented beside each
 * member that fits (device_id = NULL), sets struct_size to size. Call it through
 * synesis_identity_options_init(). NULL is a no-op. Any thread. @since 1.0
 */
SYNESIS_API void synesis_identity_options_init_sized(synesis_identity_options *opts, size_t size);

/** Fills *opts with the defaults (synesis_identity_options_init_sized() with its size).
 * @since 1.0 */
#define synesis_identity_options_init(opts)                                                        \
    synesis_identity_options_init_sized((opts), sizeof(*(opts)))

/**
 * Creates a device identity in out_dir (created with mode 0700, parents included, when missing):
 * an ECDSA P-256 key (key_name, mode 0600), an X.509 v3 certificate (cert_name, mode 0644) with
 * subject "CN=device-<id>, O=SuperInstance", keyUsage digitalSignature (critical),
 * extendedKeyUsage clientAuth, basicConstraints CA:FALSE (critical), subject and authority key
 * identifiers, a random positive 127-bit serial, validity [now + offset, + days*86400 s],
 * signed with SHA-256 (SHA-384 by a P-384 CA key) by the key itself or by the given CA; and,
 * with write_csr, a CSR (csr_name, 0644) with the same subject and requested extensions.
 *
 * Each file is written to a temporary file in the same directory (O_CREAT|O_EXCL, mode 0600,
 * fsync) and renamed into place (key first, then certificate, then CSR), then the directory is
 * synced. Without overwrite nothing is written when any target exists, and a target appearing
 * meanwhile is never replaced. On failure no temporary file is left behind.
 *
 * @return 0 or: INVALID_ARGUMENT (NULL opts/out_dir, a bad struct_size, bad device id, days,
 *         offset or file name, only one of the CA files), FILE_EXISTS (names the file), the
 *         loading errors of synesis_identity_check() for the CA files (plus BAD_CERTIFICATE when
 *         the CA certificate is not a CA), CRYPTO, FILE_NOT_FOUND or SYSTEM (cannot create or
 *         write in out_dir).
 * Any thread. @since 1.0
 */
SYNESIS_API int synesis_identity_generate(const synesis_identity_options *opts, const char *out_dir,
                                          char *detail, size_t detail_len);

/** Certificate profiles of synesis_pki_create_cert(). @since 1.0 */
typedef enum synesis_cert_profile {
    /** basicConstraints CA:TRUE (critical), keyUsage keyCertSign|cRLSign (critical) */
    SYNESIS_CERT_PROFILE_CA = 1,
    /** CA:FALSE, keyUsage digitalSignature (critical), EKU serverAuth, subjectAltName */
    SYNESIS_CERT_PROFILE_SERVER = 2,
    /** CA:FALSE, keyUsage digitalSignature (critical), EKU clientAuth */
    SYNESIS_CERT_PROFILE_DEVICE = 3,
} synesis_cert_profile;

/** Options of synesis_pki_create_cert() (caller-filled). Fill with
 * synesis_pki_cert_options_init() first; members are only ever appended. Strings are borrowed for
 * the duration of the call. @since 1.0 */
typedef struct synesis_pki_cert_options {
    size_t struct_size;           /**< set by synesis_pki_cert_options_init() @since 1.0 */
    synesis_cert_profile profile; /**< the profile (set by the init macro) @since 1.0 */
    const char *common_name;      /**< required, 1..64 characters of UTF-8 @since 1.0 */
    /** Subject O; NULL = none; default "SuperInstance". @since 1.0 */
    const char *organization;
    /** subjectAltName entries: DNS names, or IPv4/IPv6 literals. @since 1.0 */
    const char *const *alt_names;
    size_t n_alt_names; /**< entries in alt_names (server profile: at least one) @since 1.0 */
    /** 1..36525; default 365 (3650 for the CA profile). @since 1.0 */
    int days;
    int64_t not_before_offset_s; /**< notBefore = now + this; default 0 @since 1.0 */
    /** Signing CA certificate; NULL = self-signed (default). @since 1.0 */
    const char *issuer_cert_file;
    /** Its key (mode 0600); set both or neither. @since 1.0 */
    const char *issuer_key_file;
    const char *issuer_key_passphrase; /**< default NULL @since 1.0 */
    /** Default 0: SYNESIS_ERR_FILE_EXISTS if a target exists. @since 1.0 */
    int overwrite;
    /** Also write a CSR here (not for the CA profile); default NULL. @since 1.0 */
    const char *csr_file;
} synesis_pki_cert_options;

/**
 * Fills the first size bytes of opts with the defaults of profile (see the members) and sets
 * struct_size to size. Call it through synesis_pki_cert_options_init(). NULL is a no-op. Any
 * thread. @since 1.0
 */
SYNESIS_API void synesis_pki_cert_options_init_sized(synesis_pki_cert_options *opts,
                                                     synesis_cert_profile profile, size_t size);

/** Fills *opts with the defaults of profile (synesis_pki_cert_options_init_sized() with its
 * size). @since 1.0 */
#define synesis_pki_cert_options_init(opts, profile)                                               \
    synesis_pki_cert_options_init_sized((opts), (profile), sizeof(*(opts)))

/**
 * Lower-level generator behind synesis_identity_generate(): a fresh ECDSA P-256 key written to
 * key_file (0600) and a certificate of the given profile written to cert_file (0644), with the
 * same serial, validity, key identifier and atomic-write rules. The parent directories must
 * exist. Same errors as synesis_identity_generate() (FILE_NOT_FOUND when a parent directory is
 * missing; INVALID_ARGUMENT for NULL opts, cert_file or key_file, or a bad struct_size).
 * Any thread. @since 1.0
 */
SYNESIS_API int synesis_pki_create_cert(const synesis_pki_cert_options *opts, const char *cert_file,
                                        const char *key_file, char *detail, size_t detail_len);

/**
 * Builds a throwaway test PKI in dir (created with mode 0700 when missing):
 *   ca.pem / ca.key         a self-signed CA, CN "Synesis Test CA", 10 years
 *   edge.pem / edge.key     the edge: CN "localhost", SAN localhost, 127.0.0.1, ::1; by the CA
 *   device.pem / device.key the device: CN "device-<device_id>", O SuperInstance; by the CA
 * Never overwrites: SYNESIS_ERR_FILE_EXISTS when any of the six files exists. For tests and
 * demos only: the CA key sits next to the certificates it signed. INVALID_ARGUMENT for a NULL
 * dir or device_id. Any thread. @since 1.0
 */
SYNESIS_API int synesis_identity_create_test_pki(const char *dir, const char *device_id,
                                                 char *detail, size_t detail_len);

/**
 * What synesis_identity_inspect() reports about a certificate: allocated by the library in one
 * block with its strings, released with synesis_identity_info_free(). Every string is
 * NUL-terminated, never NULL ("" when absent), and valid until the info is freed. Members are
 * only ever appended. @since 1.0
 */
typedef struct synesis_identity_info {
    size_t struct_size; /**< set by the library: the size of the struct it filled @since 1.0 */
    /** CN minus "device-"; "" if no such prefix or the rest is not a valid device id.
     * @since 1.0 */
    const char *device_id;
    const char *common_name; /**< the subject's (last) CN, "" if none @since 1.0 */
    /** One line, most specific first: "CN=device-x, O=SuperInstance". @since 1.0 */
    const char *subject;
    const char *issuer; /**< the issuer, same format @since 1.0 */
    const char *serial; /**< hex, uppercase, colon-separated @since 1.0 */
    /** SHA-256 of the DER certificate, "AB:CD:..." like openssl. @since 1.0 */
    const char *fingerprint_sha256;
    uint8_t fingerprint_sha256_raw[32]; /**< the raw SHA-256 of the DER certificate @since 1.0 */
    /** "sha256//<base64 SHA-256 of the SubjectPublicKeyInfo>". @since 1.0 */
    const char *spki_pin;
    uint8_t spki_sha256[32]; /**< the raw pin @since 1.0 */
    /** "EC P-256", "EC P-384", "RSA 2048", or the algorithm name. @since 1.0 */
    const char *key_type;
    int64_t not_before; /**< Unix seconds @since 1.0 */
    int64_t not_after;  /**< Unix seconds @since 1.0 */
    /** 1 if the issuer is the subject and the signature verifies. @since 1.0 */
    int self_signed;
    int is_ca;        /**< 1 if basicConstraints CA:TRUE @since 1.0 */
    int chain_length; /**< certificates in the file; the first one is reported @since 1.0 */
} synesis_identity_info;

/**
 * Reads the first certificate of the PEM file cert_path. Does not judge validity dates.
 * @param cert_path the file.
 * @param out receives the info (owned by the caller: release it with
 *        synesis_identity_info_free()); NULL on failure.
 * @param detail receives a message on failure; may be NULL.
 * @param detail_len its size.
 * @return 0 or: INVALID_ARGUMENT (NULL cert_path or out), NOMEM, FILE_NOT_FOUND, FILE_UNREADABLE
 *         (a directory, not a regular file, no read permission, > 1 MiB), NOT_PEM,
 *         NO_CERTIFICATE, BAD_CERTIFICATE.
 * Any thread. @since 1.0
 */
SYNESIS_API int synesis_identity_inspect(const char *cert_path, synesis_identity_info **out,
                                         char *detail, size_t detail_len);

/** Releases an info returned by synesis_identity_inspect() (one block, strings included). NULL is
 * a no-op. Any thread. @since 1.0 */
SYNESIS_API void synesis_identity_info_free(synesis_identity_info *info);

/**
 * Loads a certificate chain (cert_path, leaf first) and its private key (key_path; NULL = look
 * for the key in cert_path, which must then be mode 0600 too) as the tunnel would, and checks
 * them. passphrase may be NULL.
 * Errors, in the order they are checked:
 *   FILE_NOT_FOUND, FILE_UNREADABLE, NOT_PEM, NO_CERTIFICATE, BAD_CERTIFICATE  (certificate file)
 *   FILE_NOT_FOUND, FILE_UNREADABLE, KEY_PERMISSIONS (names the file and its octal mode),
 *   NOT_PEM, NO_PRIVATE_KEY, KEY_ENCRYPTED (no passphrase), KEY_PASSPHRASE (wrong one)  (key file)
 *   UNSUPPORTED_KEY, KEY_MISMATCH,
 *   CERT_EXPIRED, CERT_NOT_YET_VALID (any certificate of the chain; the latter usually means the
 *   local clock is behind, e.g. a device without RTC before time sync)
 * INVALID_ARGUMENT for a NULL cert_path. Any thread. @since 1.0
 */
SYNESIS_API int synesis_identity_check(const char *cert_path, const char *key_path,
                                       const char *passphrase, char *detail, size_t detail_len);

/**
 * Parses an edge public-key pin into pin: either "sha256//" + base64 (44 characters, as curl
 * and synesis_identity_info.spki_pin write it) or 64 hex digits, optionally colon-separated.
 * @return 0 or SYNESIS_ERR_INVALID_ARGUMENT (also for NULL text or pin). Any thread. @since 1.0
 */
SYNESIS_API int synesis_spki_pin_parse(const char *text, uint8_t pin[32]);

#ifdef __cplusplus
}
#endif

#endif /* SYNESIS_IDENTITY_H */

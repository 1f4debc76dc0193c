/*
 * synesis-tunnel: common definitions shared by every public header.
 *
 * Error convention: functions return int, 0 (SYNESIS_OK) on success and a negative SYNESIS_ERR_*
 * code on failure. synesis_strerror() turns a code into a fixed English sentence; the objects that
 * can fail for reasons worth explaining (identity, TLS context, tunnel) also keep a detail string
 * that names the file, field, OpenSSL reason, TLS alert or QUIC error involved.
 *
 * Threads: the library keeps no global mutable state apart from a once-only crypto initialisation.
 * Each handle is used only from the thread that runs its event loop.
 */
#ifndef SYNESIS_COMMON_H
#define SYNESIS_COMMON_H

#ifdef __cplusplus
extern "C" {
#endif

/* SYNESIS_API marks a symbol exported from the shared library; everything else is hidden. */
#if defined(SYNESIS_BUILDING_LIBRARY) && defined(__GNUC__)
#define SYNESIS_API __attribute__((visibility("default")))
#else
#define SYNESIS_API
#endif

/* Library version, as a string "MAJOR.MINOR.PATCH" and as a number 0xMMmmpp. */
#define SYNESIS_VERSION_MAJOR 1
#define SYNESIS_VERSION_MINOR 0
#define SYNESIS_VERSION_PATCH 0
#define SYNESIS_VERSION_STRING "1.0.0"
#define SYNESIS_VERSION_NUMBER                                                                     \
    ((SYNESIS_VERSION_MAJOR << 16) | (SYNESIS_VERSION_MINOR << 8) | SYNESIS_VERSION_PATCH)

/*
 * Error codes. Values are stable: new codes are only appended within their group.
 */
typedef enum synesis_error {
    SYNESIS_OK = 0,

    /* general */
    SYNESIS_ERR_INVALID_ARGUMENT = -1, /* a NULL or out-of-range argument */
    SYNESIS_ERR_NOMEM = -2,            /* memory allocation failed */
    SYNESIS_ERR_INVALID_STATE = -3,    /* not allowed in the current state */
    SYNESIS_ERR_INTERNAL = -4,         /* a bug or an unexpected library failure */
    SYNESIS_ERR_SYSTEM = -5,           /* a system call failed (errno in the detail string) */

    /* files, certificates and keys (identity, TLS contexts) */
    SYNESIS_ERR_FILE_NOT_FOUND = -100,     /* a named file does not exist */
    SYNESIS_ERR_FILE_UNREADABLE = -101,    /* a file exists but cannot be read */
    SYNESIS_ERR_FILE_EXISTS = -102,        /* refusing to overwrite an existing file */
    SYNESIS_ERR_NOT_PEM = -103,            /* the file holds no PEM data at all */
    SYNESIS_ERR_NO_CERTIFICATE = -104,     /* no certificate in the file or buffer */
    SYNESIS_ERR_NO_PRIVATE_KEY = -105,     /* no private key in the file or buffer */
    SYNESIS_ERR_KEY_ENCRYPTED = -106,      /* the key is encrypted and no passphrase was given */
    SYNESIS_ERR_KEY_MISMATCH = -107,       /* the private key does not match the certificate */
    SYNESIS_ERR_KEY_PERMISSIONS = -108,    /* the key file is readable by group or others */
    SYNESIS_ERR_CERT_EXPIRED = -109,       /* a certificate's notAfter is in the past */
    SYNESIS_ERR_CERT_NOT_YET_VALID = -110, /* notBefore is in the future (clock behind?) */
    SYNESIS_ERR_UNSUPPORTED_KEY = -111,    /* a key type or curve the library does not take */
    SYNESIS_ERR_CA_UNREADABLE = -112,      /* the CA file or directory cannot be loaded */
    SYNESIS_ERR_CRYPTO = -113,             /* another OpenSSL failure (reason in detail) */
    SYNESIS_ERR_KEY_STORE = -114,          /* an OSSL_STORE URI could not be opened or used */
    SYNESIS_ERR_BAD_CERTIFICATE = -115,    /* a certificate is malformed or lacks a field */
    SYNESIS_ERR_KEY_PASSPHRASE = -116,     /* the passphrase does not decrypt the private key */

    /* connection */
    SYNESIS_ERR_INVALID_URL = -200,       /* the cloud URL cannot be parsed */
    SYNESIS_ERR_DNS = -201,               /* name resolution failed */
    SYNESIS_ERR_SOCKET = -202,            /* the UDP socket failed (errno in detail) */
    SYNESIS_ERR_HANDSHAKE_TIMEOUT = -203, /* no handshake within the configured time */
    SYNESIS_ERR_TLS_HANDSHAKE = -204,     /* the TLS handshake failed for another reason */
    SYNESIS_ERR_PEER_UNTRUSTED = -205, /* the edge's certificate does not chain to a trusted root */
    SYNESIS_ERR_PEER_NAME_MISMATCH =
        -206, /* the edge's certificate does not match the server name */
    SYNESIS_ERR_PEER_PIN_MISMATCH = -207,    /* the edge's public key is not the pinned one */
    SYNESIS_ERR_CLIENT_CERT_REJECTED = -208, /* the edge refused our client certificate */
    SYNESIS_ERR_ALPN = -209,                 /* no common application protocol */
    SYNESIS_ERR_QUIC = -210,                 /* a QUIC protocol error (code in detail) */
    SYNESIS_ERR_IDLE_TIMEOUT = -211,         /* the connection was idle past the timeout */
    SYNESIS_ERR_CLOSED_BY_PEER = -212,       /* the edge closed the connection */
    SYNESIS_ERR_CONNECTION_LOST = -213,      /* the connection went away mid-operation */
    SYNESIS_ERR_NOT_CONNECTED = -214,        /* the tunnel is not connected */
    SYNESIS_ERR_MAX_RECONNECTS = -215,       /* max reconnection attempts exceeded */
    SYNESIS_ERR_PEER_CERT_EXPIRED = -216,    /* the edge's certificate has expired */

    /* requests and streams */
    SYNESIS_ERR_TIMEOUT = -300,            /* the request did not complete in time */
    SYNESIS_ERR_RESPONSE_TOO_LARGE = -301, /* the response exceeded the maximum size */
    SYNESIS_ERR_CANCELLED = -302,          /* cancelled by the application or by free */
    SYNESIS_ERR_STREAM_RESET = -303,       /* the edge reset the stream (code given separately) */
    SYNESIS_ERR_QUEUE_FULL = -304,         /* too many queued requests, or bytes in them */
    SYNESIS_ERR_WOULD_BLOCK = -305,        /* no room in the send buffer now; wait for writable */
    SYNESIS_ERR_HEARTBEAT_REFUSED = -306,  /* the edge refused a heartbeat (reason in detail) */
} synesis_error;

/*
 * Returns a fixed, human-readable sentence for an error code ("unknown error" for an unknown
 * code). The string is static: never free it.
 */
SYNESIS_API const char *synesis_strerror(int code);

/*
 * Returns the symbolic name of an error code, e.g. "SYNESIS_ERR_KEY_MISMATCH", or
 * "SYNESIS_ERR_UNKNOWN". The string is static.
 */
SYNESIS_API const char *synesis_error_name(int code);

/* Returns the library's version string, e.g. "1.0.0" (that of the library actually linked). */
SYNESIS_API const char *synesis_version(void);

/* Returns SYNESIS_VERSION_NUMBER of the library actually linked. */
SYNESIS_API unsigned int synesis_version_number(void);

/*
 * Writes the versions of the bundled or system OpenSSL and ngtcp2 the library was built with
 * into buf, as "OpenSSL 3.5.7, ngtcp2 1.24.0". Returns the number of characters that the full
 * string has (like snprintf); a NUL terminator is always written when len > 0.
 */
SYNESIS_API int synesis_dependency_versions(char *buf, unsigned long len);

/* Log levels for the log callbacks of the tunnel and the edge. */
typedef enum synesis_log_level {
    SYNESIS_LOG_ERROR = 0,
    SYNESIS_LOG_WARN = 1,
    SYNESIS_LOG_INFO = 2,
    SYNESIS_LOG_DEBUG = 3,
    SYNESIS_LOG_TRACE = 4, /* includes ngtcp2's own log */
} synesis_log_level;

/*
 * A log callback: receives one message (no trailing newline, NUL-terminated, valid only during
 * the call) at a level not above the configured one.
 */
typedef void (*synesis_log_fn)(void *user_data, synesis_log_level level, const char *msg);

#ifdef __cplusplus
}
#endif

#endif /* SYNESIS_COMMON_H */

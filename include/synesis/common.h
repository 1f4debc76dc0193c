/**
 * @file synesis/common.h
 * @brief Definitions shared by every public header: export macro, version, error codes, logging.
 *
 * Error convention: functions return int, 0 (SYNESIS_OK) on success and a negative SYNESIS_ERR_*
 * code on failure. synesis_strerror() turns a code into a fixed English sentence; the objects that
 * can fail for reasons worth explaining (identity, TLS context, tunnel) also keep a detail string
 * that names the file, field, OpenSSL reason, TLS alert or QUIC error involved.
 *
 * Threads: the library keeps no global mutable state apart from a once-only crypto initialisation.
 * Each handle is used only from the thread that runs its event loop. The functions of this header
 * may be called from any thread.
 *
 * ABI: from 1.0 the library keeps its binary interface within a major version. Every public
 * struct starts with `size_t struct_size` and only ever grows at its end (see docs/integration.md,
 * "API conventions"): caller-filled structs are initialised with their `*_init()` macro, which
 * records the size the application was built with; getters take the caller's size too.
 */
#ifndef SYNESIS_COMMON_H
#define SYNESIS_COMMON_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Marks a symbol exported from the shared library; everything else is hidden. @since 1.0 */
#if defined(SYNESIS_BUILDING_LIBRARY) && defined(__GNUC__)
#define SYNESIS_API __attribute__((visibility("default")))
#else
#define SYNESIS_API
#endif

/** Major version of these headers (the SONAME's number). @since 1.0 */
#define SYNESIS_VERSION_MAJOR 1
/** Minor version of these headers. @since 1.0 */
#define SYNESIS_VERSION_MINOR 2
/** Patch version of these headers. @since 1.0 */
#define SYNESIS_VERSION_PATCH 0
/** Version of these headers as a string "MAJOR.MINOR.PATCH". @since 1.0 */
#define SYNESIS_VERSION_STRING "1.2.0"
/** Version of these headers as a number 0xMMmmpp. @since 1.0 */
#define SYNESIS_VERSION_NUMBER                                                                     \
    ((SYNESIS_VERSION_MAJOR << 16) | (SYNESIS_VERSION_MINOR << 8) | SYNESIS_VERSION_PATCH)

/**
 * Error codes. Values are stable: new codes are only appended within their group.
 * @since 1.0
 */
typedef enum synesis_error {
    SYNESIS_OK = 0, /**< success */

    /* general */
    SYNESIS_ERR_INVALID_ARGUMENT = -1, /**< a NULL or out-of-range argument */
    SYNESIS_ERR_NOMEM = -2,            /**< memory allocation failed */
    SYNESIS_ERR_INVALID_STATE = -3,    /**< not allowed in the current state */
    SYNESIS_ERR_INTERNAL = -4,         /**< a bug or an unexpected library failure */
    SYNESIS_ERR_SYSTEM = -5,           /**< a system call failed (errno in the detail string) */

    /* files, certificates and keys (identity, TLS contexts) */
    SYNESIS_ERR_FILE_NOT_FOUND = -100,     /**< a named file does not exist */
    SYNESIS_ERR_FILE_UNREADABLE = -101,    /**< a file exists but cannot be read */
    SYNESIS_ERR_FILE_EXISTS = -102,        /**< refusing to overwrite an existing file */
    SYNESIS_ERR_NOT_PEM = -103,            /**< the file holds no PEM data at all */
    SYNESIS_ERR_NO_CERTIFICATE = -104,     /**< no certificate in the file or buffer */
    SYNESIS_ERR_NO_PRIVATE_KEY = -105,     /**< no private key in the file or buffer */
    SYNESIS_ERR_KEY_ENCRYPTED = -106,      /**< the key is encrypted and no passphrase was given */
    SYNESIS_ERR_KEY_MISMATCH = -107,       /**< the private key does not match the certificate */
    SYNESIS_ERR_KEY_PERMISSIONS = -108,    /**< the key file is readable by group or others */
    SYNESIS_ERR_CERT_EXPIRED = -109,       /**< a certificate's notAfter is in the past */
    SYNESIS_ERR_CERT_NOT_YET_VALID = -110, /**< notBefore is in the future (clock behind?) */
    SYNESIS_ERR_UNSUPPORTED_KEY = -111,    /**< a key type or curve the library does not take */
    SYNESIS_ERR_CA_UNREADABLE = -112,      /**< the CA file or directory cannot be loaded */
    SYNESIS_ERR_CRYPTO = -113,             /**< another OpenSSL failure (reason in detail) */
    SYNESIS_ERR_KEY_STORE = -114,          /**< an OSSL_STORE URI could not be opened or used */
    SYNESIS_ERR_BAD_CERTIFICATE = -115,    /**< a certificate is malformed or lacks a field */
    SYNESIS_ERR_KEY_PASSPHRASE = -116,     /**< the passphrase does not decrypt the private key */

    /* connection */
    SYNESIS_ERR_INVALID_URL = -200,       /**< the cloud URL cannot be parsed */
    SYNESIS_ERR_DNS = -201,               /**< name resolution failed */
    SYNESIS_ERR_SOCKET = -202,            /**< the UDP socket failed (errno in detail) */
    SYNESIS_ERR_HANDSHAKE_TIMEOUT = -203, /**< no handshake within the configured time */
    SYNESIS_ERR_TLS_HANDSHAKE = -204,     /**< the TLS handshake failed for another reason */
    SYNESIS_ERR_PEER_UNTRUSTED =
        -205, /**< the edge's certificate does not chain to a trusted root */
    SYNESIS_ERR_PEER_NAME_MISMATCH =
        -206, /**< the edge's certificate does not match the server name */
    SYNESIS_ERR_PEER_PIN_MISMATCH = -207,    /**< the edge's public key is not the pinned one */
    SYNESIS_ERR_CLIENT_CERT_REJECTED = -208, /**< the edge refused our client certificate */
    SYNESIS_ERR_ALPN = -209,                 /**< no common application protocol */
    SYNESIS_ERR_QUIC = -210,                 /**< a QUIC protocol error (code in detail) */
    SYNESIS_ERR_IDLE_TIMEOUT = -211,         /**< the connection was idle past the timeout */
    SYNESIS_ERR_CLOSED_BY_PEER = -212,       /**< the edge closed the connection */
    SYNESIS_ERR_CONNECTION_LOST = -213,      /**< the connection went away mid-operation */
    SYNESIS_ERR_NOT_CONNECTED = -214,        /**< the tunnel is not connected */
    SYNESIS_ERR_MAX_RECONNECTS = -215,       /**< max reconnection attempts exceeded */
    SYNESIS_ERR_PEER_CERT_EXPIRED = -216,    /**< the edge's certificate has expired */
    /** The tunnel is draining (synesis_tunnel_drain()): it takes no new request or stream.
     * @since 1.1 */
    SYNESIS_ERR_DRAINING = -217,
    /** The edge drained the connection (it asked the device to move elsewhere) before this
     * request or stream ended: it may have reached the edge's application. Requests the edge never
     * started, and requests marked idempotent, are sent again instead. @since 1.1 */
    SYNESIS_ERR_EDGE_DRAINED = -218,
    /** The HTTP CONNECT proxy refused to connect to the edge, or answered with something that is
     * not HTTP; the detail carries its status line, e.g. "proxy 127.0.0.1:3128 refused CONNECT
     * edge:443: HTTP/1.1 403 Forbidden". @since 1.2 */
    SYNESIS_ERR_PROXY = -219,
    /** The HTTP CONNECT proxy asked for authentication (407): none was configured, or it refused
     * the credentials given. @since 1.2 */
    SYNESIS_ERR_PROXY_AUTH = -220,

    /* requests and streams */
    SYNESIS_ERR_TIMEOUT = -300,            /**< the request did not complete in time */
    SYNESIS_ERR_RESPONSE_TOO_LARGE = -301, /**< the response exceeded the maximum size */
    SYNESIS_ERR_CANCELLED = -302,          /**< cancelled by the application or by free */
    SYNESIS_ERR_STREAM_RESET = -303,       /**< the edge reset the stream (code given separately) */
    SYNESIS_ERR_QUEUE_FULL = -304,         /**< too many queued requests, or bytes in them */
    SYNESIS_ERR_WOULD_BLOCK = -305,        /**< no room in the send buffer now; wait for writable */
    SYNESIS_ERR_HEARTBEAT_REFUSED = -306,  /**< the edge refused a heartbeat (reason in detail) */
} synesis_error;

/**
 * Returns a fixed, human-readable sentence for an error code.
 * @return a static string ("unknown error" for an unknown code); never NULL, never free it.
 * Thread rule: any thread. @since 1.0
 */
SYNESIS_API const char *synesis_strerror(int code);

/**
 * Returns the symbolic name of an error code, e.g. "SYNESIS_ERR_KEY_MISMATCH".
 * @return a static string ("SYNESIS_ERR_UNKNOWN" for an unknown code); never NULL.
 * Thread rule: any thread. @since 1.0
 */
SYNESIS_API const char *synesis_error_name(int code);

/**
 * Returns the version string of the library actually linked, e.g. "1.0.0" (static, never NULL).
 * Thread rule: any thread. @since 1.0
 */
SYNESIS_API const char *synesis_version(void);

/** Returns SYNESIS_VERSION_NUMBER of the library actually linked. Any thread. @since 1.0 */
SYNESIS_API unsigned int synesis_version_number(void);

/**
 * Writes the versions of the bundled or system OpenSSL and ngtcp2 the library was built with
 * into buf, as "OpenSSL 3.5.7, ngtcp2 1.24.0"; a NUL terminator is always written when len > 0.
 * @param buf the caller's buffer; may be NULL only when len is 0 (to learn the length).
 * @param len its size in bytes.
 * @return the number of characters of the full string (like snprintf), or
 *         SYNESIS_ERR_INVALID_ARGUMENT for a NULL buf with len > 0.
 * Thread rule: any thread. @since 1.0
 */
SYNESIS_API int synesis_dependency_versions(char *buf, size_t len);

/** Log levels of the tunnel's log callback. @since 1.0 */
typedef enum synesis_log_level {
    SYNESIS_LOG_ERROR = 0, /**< failures */
    SYNESIS_LOG_WARN = 1,  /**< trouble the tunnel recovers from */
    SYNESIS_LOG_INFO = 2,  /**< state changes and other rare events */
    SYNESIS_LOG_DEBUG = 3, /**< details for debugging */
    SYNESIS_LOG_TRACE = 4, /**< includes ngtcp2's own log */
} synesis_log_level;

/**
 * A log callback: receives one message at a level not above the configured one.
 * It takes no handle: it may run inside synesis_tunnel_new(), before the handle exists.
 * @param level the message's level.
 * @param msg one line (no trailing newline, NUL-terminated), valid only during the call.
 * @param user_data the config's log_user_data.
 * Runs on the loop thread (or the thread calling synesis_tunnel_new()). @since 1.0
 */
typedef void (*synesis_log_fn)(synesis_log_level level, const char *msg, void *user_data);

#ifdef __cplusplus
}
#endif

#endif /* SYNESIS_COMMON_H */

/* Error codes to names and sentences. */
#include "internal.h"

#include <stddef.h>

struct err_entry {
    int code;
    const char *name;
    const char *text;
};

#define E(c, t)                                                                                    \
    { c, #c, t }
static const struct err_entry errors[] = {
    E(SYNESIS_OK, "success"),
    E(SYNESIS_ERR_INVALID_ARGUMENT, "invalid argument"),
    E(SYNESIS_ERR_NOMEM, "out of memory"),
    E(SYNESIS_ERR_INVALID_STATE, "operation not allowed in the current state"),
    E(SYNESIS_ERR_INTERNAL, "internal error"),
    E(SYNESIS_ERR_SYSTEM, "system call failed"),
    E(SYNESIS_ERR_FILE_NOT_FOUND, "file not found"),
    E(SYNESIS_ERR_FILE_UNREADABLE, "file cannot be read"),
    E(SYNESIS_ERR_FILE_EXISTS, "file already exists"),
    E(SYNESIS_ERR_NOT_PEM, "not a PEM file"),
    E(SYNESIS_ERR_NO_CERTIFICATE, "no certificate found"),
    E(SYNESIS_ERR_NO_PRIVATE_KEY, "no private key found"),
    E(SYNESIS_ERR_KEY_ENCRYPTED, "private key is encrypted and no passphrase was given"),
    E(SYNESIS_ERR_KEY_MISMATCH, "private key does not match the certificate"),
    E(SYNESIS_ERR_KEY_PERMISSIONS, "private key file is readable by group or others"),
    E(SYNESIS_ERR_CERT_EXPIRED, "certificate has expired"),
    E(SYNESIS_ERR_CERT_NOT_YET_VALID,
      "certificate is not yet valid (the local clock may be behind)"),
    E(SYNESIS_ERR_UNSUPPORTED_KEY, "unsupported key type"),
    E(SYNESIS_ERR_CA_UNREADABLE, "CA certificates cannot be loaded"),
    E(SYNESIS_ERR_CRYPTO, "cryptographic operation failed"),
    E(SYNESIS_ERR_KEY_STORE, "key store URI cannot be used"),
    E(SYNESIS_ERR_BAD_CERTIFICATE, "malformed certificate"),
    E(SYNESIS_ERR_KEY_PASSPHRASE, "the passphrase does not decrypt the private key"),
    E(SYNESIS_ERR_INVALID_URL, "invalid cloud URL"),
    E(SYNESIS_ERR_DNS, "name resolution failed"),
    E(SYNESIS_ERR_SOCKET, "socket error"),
    E(SYNESIS_ERR_HANDSHAKE_TIMEOUT, "handshake timed out"),
    E(SYNESIS_ERR_TLS_HANDSHAKE, "TLS handshake failed"),
    E(SYNESIS_ERR_PEER_UNTRUSTED, "edge certificate is not trusted"),
    E(SYNESIS_ERR_PEER_NAME_MISMATCH, "edge certificate does not match the server name"),
    E(SYNESIS_ERR_PEER_PIN_MISMATCH, "edge public key does not match the pin"),
    E(SYNESIS_ERR_CLIENT_CERT_REJECTED, "edge rejected the client certificate"),
    E(SYNESIS_ERR_ALPN, "no common application protocol (ALPN)"),
    E(SYNESIS_ERR_QUIC, "QUIC protocol error"),
    E(SYNESIS_ERR_IDLE_TIMEOUT, "connection idle timeout"),
    E(SYNESIS_ERR_CLOSED_BY_PEER, "connection closed by the edge"),
    E(SYNESIS_ERR_CONNECTION_LOST, "connection lost"),
    E(SYNESIS_ERR_NOT_CONNECTED, "tunnel is not connected"),
    E(SYNESIS_ERR_MAX_RECONNECTS, "max reconnection attempts exceeded"),
    E(SYNESIS_ERR_PEER_CERT_EXPIRED, "edge certificate has expired"),
    E(SYNESIS_ERR_DRAINING, "the tunnel is draining: no new requests or streams"),
    E(SYNESIS_ERR_EDGE_DRAINED, "the edge drained the connection before the response ended"),
    E(SYNESIS_ERR_PROXY, "the proxy refused the connection"),
    E(SYNESIS_ERR_PROXY_AUTH, "the proxy requires authentication or refused the credentials"),
    E(SYNESIS_ERR_TIMEOUT, "timed out"),
    E(SYNESIS_ERR_RESPONSE_TOO_LARGE, "response exceeds the maximum size"),
    E(SYNESIS_ERR_CANCELLED, "cancelled"),
    E(SYNESIS_ERR_STREAM_RESET, "stream reset by the edge"),
    E(SYNESIS_ERR_QUEUE_FULL,
      "request queue is full (max_queued_requests or max_queued_request_bytes)"),
    E(SYNESIS_ERR_WOULD_BLOCK, "send buffer full, try again when writable"),
    E(SYNESIS_ERR_HEARTBEAT_REFUSED, "heartbeat refused by the edge"),
};
#undef E

static const struct err_entry *find(int code) {
    for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++)
        if (errors[i].code == code)
            return &errors[i];
    return NULL;
}

SYNESIS_API const char *synesis_strerror(int code) {
    const struct err_entry *e = find(code);
    return e ? e->text : "unknown error";
}

SYNESIS_API const char *synesis_error_name(int code) {
    const struct err_entry *e = find(code);
    return e ? e->name : "SYNESIS_ERR_UNKNOWN";
}

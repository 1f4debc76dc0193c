/*
 * TLS contexts for the tunnel (client) and the edge (server), and the certificate/key loading
 * they share with the identity API. Internal: nothing here is public.
 *
 * The contexts are plain TLS-1.3-only SSL_CTXs; the QUIC glue (ngtcp2_crypto_ossl) is applied by
 * the transport, never here. Every detail buffer is SYNESIS_DETAIL_MAX bytes (or NULL).
 */
#ifndef SYNESIS_TLS_H
#define SYNESIS_TLS_H

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stddef.h>
#include <stdint.h>

/* ---- client (device) ---------------------------------------------------------------------- */

typedef struct syn_tls_client_config {
    const char *cert_file; /* PEM chain (leaf first); or NULL when cert_pem is used */
    const char *key_file;  /* PEM key file path, OR an OSSL_STORE URI ("file:...", "pkcs11:...") */
    const char *cert_pem;  /* in-memory alternatives (take precedence when non-NULL; a length
                              of 0 means NUL-terminated) */
    size_t cert_pem_len;
    const char *key_pem;
    size_t key_pem_len;
    const char *key_passphrase; /* optional */
    const char *ca_file;        /* optional extra trust anchors (PEM file) */
    const char *ca_dir;         /* optional hashed CA directory */
    int use_system_trust; /* 1 = also trust the system default store (default in the tunnel) */
    const uint8_t (*spki_pins)[32]; /* optional SHA-256(SPKI) pins of the edge; any match passes */
    size_t n_spki_pins;
} syn_tls_client_config;

/*
 * Builds a TLS-1.3-only client SSL_CTX with our certificate chain + key loaded and checked (key
 * matches cert, every certificate currently valid, key file permissions, key type), trust
 * configured, SSL_VERIFY_PEER set. At least one trust source (ca_file, ca_dir, system) is
 * required. Pins are copied into the ctx and enforced in the verify path after the normal chain
 * verification (the pin may be that of any certificate of the verified chain), so a mismatch
 * fails the handshake with X509_V_ERR_APPLICATION_VERIFICATION. Returns 0 or SYNESIS_ERR_*
 * (INVALID_ARGUMENT, the synesis_identity_check() errors, KEY_STORE, CA_UNREADABLE, CRYPTO),
 * detail filled. On success the caller owns *out (SSL_CTX_free).
 */
int syn_tls_client_ctx_new(SSL_CTX **out, const syn_tls_client_config *cfg, char *detail);
/* A client context with another identity (cfg's certificate and key, loaded and checked exactly
 * as syn_tls_client_ctx_new does) and old's trust (its certificate store, shared), pins and
 * groups (cfg's trust, pins and groups are not read). */
int syn_tls_client_ctx_rekey(SSL_CTX **out, SSL_CTX *old, const syn_tls_client_config *cfg,
                             char *detail);
/* SSL_CTX_set1_groups_list, remembered for syn_tls_client_ctx_rekey: 0,
 * SYNESIS_ERR_INVALID_ARGUMENT (a list OpenSSL does not accept) or SYNESIS_ERR_NOMEM. */
int syn_tls_ctx_set_groups(SSL_CTX *ctx, const char *groups);

/* A client context without identity that verifies the edge exactly as from does (its
 * certificate store, shared; its verification parameters, pins and groups), TLS 1.3 only, with
 * no session cache, tickets or session sink (QUIC over TCP's outer TLS: no resumption there).
 * Returns 0 or SYNESIS_ERR_INVALID_ARGUMENT / NOMEM / CRYPTO with detail; caller owns *out. */
int syn_tls_client_ctx_verify_only(SSL_CTX **out, SSL_CTX *from, char *detail);

/*
 * Per-connection setup on an SSL created from that ctx, before the handshake: SNI = server_name
 * (not for IP literals), hostname verification (SSL_set1_host for names; for IPv4/IPv6 literals,
 * "[v6]" accepted, X509_VERIFY_PARAM_set1_ip_asc on SSL_get0_param, OpenSSL having no
 * SSL_set1_ip_asc), ALPN (alpn is a plain protocol name like "synesis-tunnel/1", 1..255 bytes,
 * converted to wire format here; NULL = no ALPN). server_name is required.
 */
int syn_tls_client_ssl_setup(SSL *ssl, const char *server_name, const char *alpn, char *detail);

/*
 * After a failed client handshake: maps what OpenSSL knows (SSL_get_verify_result, the pin check,
 * a TLS alert received from the server) to SYNESIS_ERR_PEER_UNTRUSTED / PEER_NAME_MISMATCH /
 * PEER_PIN_MISMATCH / PEER_CERT_EXPIRED / CLIENT_CERT_REJECTED / ALPN / TLS_HANDSHAKE and writes
 * a detail like "edge certificate verify failed: unable to get local issuer certificate (depth 0)".
 * alert is the TLS alert description from the QUIC CONNECTION_CLOSE crypto error (0 when none;
 * QUIC carries alerts as 0x100+alert). With alert 0, an alert found in OpenSSL's error queue
 * (plain TLS) is used. Clears OpenSSL's error queue.
 */
int syn_tls_client_handshake_error(SSL *ssl, uint8_t alert, char *detail);

/*
 * Where the session tickets of one client SSL go. The client contexts keep no session themselves
 * (a context may be shared by tunnels to different edges): each SSL names its sink, and fn gets
 * each ticket the edge sends (a complete resumable SSL_SESSION). fn returns 1 when it keeps sess
 * (it then owns the reference OpenSSL handed over), 0 when it does not. The sink must outlive the
 * SSL (or be detached with NULL first).
 */
typedef struct syn_tls_session_sink {
    int (*fn)(void *user_data, SSL *ssl, SSL_SESSION *sess);
    void *user_data;
} syn_tls_session_sink;
int syn_tls_set_session_sink(SSL *ssl, const syn_tls_session_sink *sink);

/* ---- server (edge) ------------------------------------------------------------------------ */

typedef struct syn_tls_server_config {
    const char *cert_file, *key_file; /* edge chain + key (PEM) */
    const char *ca_file;              /* CA that signs device certificates (required) */
    const char *alpn;                 /* accepted ALPN, e.g. "synesis-tunnel/1" */
    int tickets;          /* session tickets sent after each full handshake (0 = no resumption) */
    long ticket_lifetime; /* their lifetime, seconds (<= 0: 7200) */
    /* 0-RTT: the connections accept early data (syn_qconn_settings.early_data) with anti-replay:
     * tickets become single-use (OpenSSL keeps each in the context's session cache, at most
     * ticket_cache of them, and removes it when it is used; one not found there, used or evicted,
     * resumes without early data). Without early_data the tickets are stateless. */
    int early_data;
    long ticket_cache; /* <= 0: 20480 (OpenSSL's default) */
} syn_tls_server_config;

/*
 * TLS-1.3-only server SSL_CTX: cert+key loaded and checked (as for the client),
 * SSL_VERIFY_PEER|SSL_VERIFY_FAIL_IF_NO_PEER_CERT against ca_file (no accept-all verify
 * callback; client certificates need the clientAuth purpose), the CA names sent in
 * CertificateRequest, and an ALPN select callback that only accepts cfg->alpn (the ctx keeps its
 * own copy; a client without it gets a no_application_protocol alert). The caller owns *out.
 */
int syn_tls_server_ctx_new(SSL_CTX **out, const syn_tls_server_config *cfg, char *detail);

/* A server context with from's certificate chain and key, TLS 1.3 only, no client
 * certificate requested, only alpn accepted (a client without it, or with others only, gets a
 * no_application_protocol alert), no session tickets. Caller owns *out. */
int syn_tls_server_ctx_identity_of(SSL_CTX **out, SSL_CTX *from, const char *alpn, char *detail);

/*
 * Server side, after the handshake: device id from the verified client certificate's CN
 * ("device-<id>" -> "<id>", else the whole CN). Returns 0; INVALID_STATE if there is no
 * verified peer certificate; BAD_CERTIFICATE if it has no CN or the CN holds control characters;
 * INVALID_ARGUMENT if out is NULL or too small.
 */
int syn_tls_peer_device_id(SSL *ssl, char *out, size_t out_len);

/* ---- loading and checking (src/identity/) ------------------------------------------------- */

/* A loaded identity: leaf certificate, the rest of the chain, private key (all owned). */
typedef struct syn_identity {
    X509 *leaf;
    STACK_OF(X509) * chain; /* certificates after the leaf; never NULL once loaded */
    EVP_PKEY *key;
} syn_identity;

/*
 * Loads cert (file, or pem/pem_len when cert_pem != NULL) and key (path, OSSL_STORE URI, or
 * key_pem) and runs every check of synesis_identity_check(). key_file NULL and key_pem NULL
 * means the key is in the certificate file/buffer. what ("device", "edge") prefixes messages.
 * On success *out owns everything (syn_identity_clear); on failure *out is left cleared.
 */
int syn_identity_load(syn_identity *out, const char *what, const char *cert_file,
                      const char *cert_pem, size_t cert_pem_len, const char *key_file,
                      const char *key_pem, size_t key_pem_len, const char *passphrase,
                      char *detail);

void syn_identity_clear(syn_identity *id);

/*
 * Reads every certificate of a PEM file (or of pem when non-NULL) into a new stack (leaf first).
 * what names the input in messages ("device certificate"). Errors as synesis_identity_inspect().
 */
int syn_load_certs(STACK_OF(X509) * *out, const char *what, const char *path, const char *pem,
                   size_t pem_len, char *detail);

/* Adds trust anchors: every certificate of ca_file, and/or the hashed directory ca_dir; any
 * failure is SYNESIS_ERR_CA_UNREADABLE, but for want of memory (SYNESIS_ERR_NOMEM). When ca_certs
 * is non-NULL it receives a new stack of ca_file's certificates (caller frees with
 * OSSL_STACK_OF_X509_free; NULL without ca_file). */
int syn_load_trust(X509_STORE *store, const char *ca_file, const char *ca_dir,
                   STACK_OF(X509) * *ca_certs, char *detail);

/* SHA-256 over the DER SubjectPublicKeyInfo of x (the pin). Returns 0 or SYNESIS_ERR_CRYPTO. */
int syn_spki_sha256(X509 *x, uint8_t out[32]);

/* 1 when certificate x lacks its public key for want of memory. OpenSSL keeps a certificate whose
 * key it could not decode (an algorithm it lacks, or an allocation failure, whose errors it drops)
 * without the key; this decodes the key again, errors kept: out of memory when that fails for
 * want of memory or now succeeds. 0 when x has its key, or OpenSSL cannot decode it at all (an
 * algorithm it lacks, or one an earlier allocation failure took out of its process-wide algorithm
 * store). Clears OpenSSL's error queue. */
int syn_cert_key_lost_to_oom(X509 *x);

/* The subject's last CN as UTF-8 into out; SYNESIS_ERR_BAD_CERTIFICATE if none, too long for
 * out, or holding control characters; SYNESIS_ERR_NOMEM when OpenSSL could not allocate. */
int syn_cert_common_name(X509 *x, char *out, size_t out_len);

#endif /* SYNESIS_TLS_H */

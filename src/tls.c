/* TLS 1.3 contexts for the device (client) and the edge (server). No QUIC here: the transport
 * applies ngtcp2's crypto glue to the SSL objects made from these contexts. */
#include "tls.h"

#include "internal.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What a context owns beyond OpenSSL's own state; freed with the SSL_CTX via ex_data. */
struct ctx_data {
    uint8_t (*pins)[32];
    size_t n_pins;
    char *alpn;
    char *groups; /* the client's key-exchange groups (syn_tls_ctx_set_groups), for a rekey */
};

static pthread_once_t index_once = PTHREAD_ONCE_INIT;
static int ctx_index = -1;  /* SSL_CTX -> struct ctx_data */
static int ssl_index = -1;  /* SSL -> (depth + 1) of the first verify error, as an integer */
static int sink_index = -1; /* SSL -> const syn_tls_session_sink * (client tickets) */

static void ctx_data_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                          void *argp) {
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    struct ctx_data *d = ptr;
    if (d) {
        free(d->pins);
        free(d->alpn);
        free(d->groups);
        free(d);
    }
}

static void index_init(void) {
    ctx_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, ctx_data_free);
    ssl_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    sink_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static int tls_init(char *detail) {
    int rc = syn_crypto_init();
    if (rc)
        return syn_fail_ossl(detail, rc, "OpenSSL initialisation failed");
    pthread_once(&index_once, index_init);
    if (ctx_index < 0 || ssl_index < 0 || sink_index < 0)
        return syn_fail_ossl(detail, SYNESIS_ERR_CRYPTO, "no OpenSSL ex_data index");
    return 0;
}

/* Attaches d to ctx (ctx owns it from then on, even on failure). */
static int attach_data(SSL_CTX *ctx, struct ctx_data *d, char *detail) {
    if (SSL_CTX_set_ex_data(ctx, ctx_index, d) != 1) {
        ctx_data_free(NULL, d, NULL, 0, 0, NULL);
        return syn_fail_ossl(detail, SYNESIS_ERR_NOMEM, "SSL_CTX_set_ex_data failed");
    }
    return 0;
}

static SSL_CTX *new_ctx(const SSL_METHOD *method, const syn_identity *id, char *detail, int *rc) {
    syn_ossl_clear();
    SSL_CTX *ctx = SSL_CTX_new(method);
    if (!ctx) {
        *rc = syn_fail_ossl(detail, SYNESIS_ERR_NOMEM, "SSL_CTX_new failed");
        return NULL;
    }
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1) {
        *rc = syn_fail_ossl(detail, SYNESIS_ERR_CRYPTO, "cannot restrict the context to TLS 1.3");
        SSL_CTX_free(ctx);
        return NULL;
    }
    /* Loads leaf + key + chain and checks that the key matches the leaf. */
    if (SSL_CTX_use_cert_and_key(ctx, id->leaf, id->key, id->chain, 1) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        *rc = syn_fail_ossl(detail, SYNESIS_ERR_CRYPTO,
                            "the certificate and key cannot be used for TLS");
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* ---- client ------------------------------------------------------------------------------- */

/* Replaces X509_verify_cert for the client: the normal chain verification first, then the pins
 * (any certificate of the verified chain may match). Also records the failing depth. */
/* X509_verify_cert failed: was it for want of memory? OpenSSL turns some of its allocation
 * failures during verification into verdicts with nothing queued ("unable to get local issuer
 * certificate", a key "too weak"), and caches some in the certificate objects (a key it could not
 * decode, extensions it could not cache). So the verification runs once more, in a context of its
 * own, on fresh copies of the edge's certificates (our trust anchors' caches are filled when they
 * are loaded): a verdict that does not repeat, or an allocation failure this time, means out of
 * memory. */
static int verify_failed_for_memory(X509_STORE_CTX *xs) {
    if (X509_STORE_CTX_get_error(xs) == X509_V_ERR_OUT_OF_MEM)
        return 1;
    syn_ossl_clear();
    STACK_OF(X509) *untrusted = X509_STORE_CTX_get0_untrusted(xs);
    X509 *leaf = X509_dup(X509_STORE_CTX_get0_cert(xs));
    STACK_OF(X509) *copies = untrusted ? sk_X509_deep_copy(untrusted, X509_dup, X509_free) : NULL;
    X509_STORE_CTX *again = X509_STORE_CTX_new();
    int made = leaf && (!untrusted || copies) && again;
    int ok = -1;
    if (made && X509_STORE_CTX_init(again, X509_STORE_CTX_get0_store(xs), leaf, copies) == 1 &&
        X509_VERIFY_PARAM_set1(X509_STORE_CTX_get0_param(again), X509_STORE_CTX_get0_param(xs)) ==
            1)
        ok = X509_verify_cert(again);
    int oom = !made || ok > 0 || syn_ossl_oom() ||
              (ok <= 0 && X509_STORE_CTX_get_error(again) == X509_V_ERR_OUT_OF_MEM);
    X509_STORE_CTX_free(again);
    OSSL_STACK_OF_X509_free(copies);
    X509_free(leaf);
    syn_ossl_clear();
    return oom;
}

static int client_cert_verify(X509_STORE_CTX *xs, void *arg) {
    const struct ctx_data *d = arg;
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    int ok = X509_verify_cert(xs);
    if (ok <= 0 && verify_failed_for_memory(xs)) {
        X509_STORE_CTX_set_error(xs, X509_V_ERR_OUT_OF_MEM); /* the handshake fails all the same */
        ok = 0;
    }
    if (ok > 0 && d && d->n_pins) {
        STACK_OF(X509) *chain = X509_STORE_CTX_get0_chain(xs);
        int match = 0;
        for (int i = 0; !match && i < sk_X509_num(chain); i++) {
            uint8_t h[32];
            if (syn_spki_sha256(sk_X509_value(chain, i), h) != 0)
                continue;
            for (size_t j = 0; !match && j < d->n_pins; j++)
                match = CRYPTO_memcmp(h, d->pins[j], 32) == 0;
        }
        if (!match) {
            X509_STORE_CTX_set_error_depth(xs, 0);
            X509_STORE_CTX_set_current_cert(xs, sk_X509_value(chain, 0));
            X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
            ok = 0;
        }
    }
    if (ok <= 0 && ssl)
        SSL_set_ex_data(ssl, ssl_index, (void *)(intptr_t)(X509_STORE_CTX_get_error_depth(xs) + 1));
    return ok > 0 ? 1 : 0;
}

/* A session ticket arrived (TLS 1.3 NewSessionTicket, after the handshake): handed to the SSL's
 * sink, if any. The context keeps no session of its own (SSL_SESS_CACHE_NO_INTERNAL_STORE): a
 * context may be shared by tunnels to different edges, and each tunnel keeps its own tickets. */
static int client_new_session(SSL *ssl, SSL_SESSION *sess) {
    const syn_tls_session_sink *sink = sink_index >= 0 ? SSL_get_ex_data(ssl, sink_index) : NULL;
    if (!sink || !sink->fn)
        return 0;
    return sink->fn(sink->user_data, ssl, sess) ? 1 : 0;
}

int syn_tls_set_session_sink(SSL *ssl, const syn_tls_session_sink *sink) {
    if (!ssl || sink_index < 0 || SSL_set_ex_data(ssl, sink_index, (void *)sink) != 1)
        return SYNESIS_ERR_NOMEM;
    return 0;
}

int syn_tls_client_ctx_new(SSL_CTX **out, const syn_tls_client_config *cfg, char *detail) {
    if (out)
        *out = NULL;
    if (!out || !cfg)
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT, "no context or configuration");
    int rc = tls_init(detail);
    if (rc)
        return rc;
    if (cfg->n_spki_pins && !cfg->spki_pins)
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                        "n_spki_pins is %zu but spki_pins is NULL", cfg->n_spki_pins);
    if (!cfg->ca_file && !cfg->ca_dir && !cfg->use_system_trust)
        return syn_fail(
            detail, SYNESIS_ERR_INVALID_ARGUMENT,
            "no trust anchors: set a CA file, a CA directory or the system trust store");

    syn_identity id;
    rc = syn_identity_load(&id, "device", cfg->cert_file, cfg->cert_pem, cfg->cert_pem_len,
                           cfg->key_file, cfg->key_pem, cfg->key_pem_len, cfg->key_passphrase,
                           detail);
    if (rc)
        return rc;
    SSL_CTX *ctx = new_ctx(TLS_client_method(), &id, detail, &rc);
    syn_identity_clear(&id);
    if (!ctx)
        return rc;

    if (cfg->use_system_trust && SSL_CTX_set_default_verify_paths(ctx) != 1) {
        rc = syn_fail_ossl(detail, SYNESIS_ERR_CA_UNREADABLE,
                           "the system trust store cannot be loaded");
        goto fail;
    }
    if ((rc = syn_load_trust(SSL_CTX_get_cert_store(ctx), cfg->ca_file, cfg->ca_dir, NULL,
                             detail)) != 0)
        goto fail;

    struct ctx_data *d = calloc(1, sizeof(*d));
    if (d && cfg->n_spki_pins) {
        d->pins = malloc(cfg->n_spki_pins * sizeof(*d->pins));
        if (d->pins) {
            memcpy(d->pins, cfg->spki_pins, cfg->n_spki_pins * sizeof(*d->pins));
            d->n_pins = cfg->n_spki_pins;
        }
    }
    if (!d || (cfg->n_spki_pins && !d->pins)) {
        ctx_data_free(NULL, d, NULL, 0, 0, NULL);
        rc = syn_fail(detail, SYNESIS_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if ((rc = attach_data(ctx, d, detail)) != 0)
        goto fail;
    SSL_CTX_set_cert_verify_callback(ctx, client_cert_verify, d);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    X509_VERIFY_PARAM_set_hostflags(SSL_CTX_get0_param(ctx), X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, client_new_session);
    syn_ossl_clear();
    *out = ctx;
    return 0;
fail:
    SSL_CTX_free(ctx);
    syn_ossl_clear();
    return rc;
}

int syn_tls_ctx_set_groups(SSL_CTX *ctx, const char *groups) {
    if (SSL_CTX_set1_groups_list(ctx, groups) != 1) {
        ERR_clear_error();
        return SYNESIS_ERR_INVALID_ARGUMENT;
    }
    struct ctx_data *d = ctx_index >= 0 ? SSL_CTX_get_ex_data(ctx, ctx_index) : NULL;
    if (d) {
        char *copy = strdup(groups);
        if (!copy)
            return SYNESIS_ERR_NOMEM;
        free(d->groups);
        d->groups = copy;
    }
    return 0;
}

/* Verification as a client context whose data is od (NULL: none) does: its pins and groups copied,
 * the same verify callback and flags (the trust store is the caller's to share). */
static int verify_like(SSL_CTX *ctx, const struct ctx_data *od, char *detail) {
    struct ctx_data *d = calloc(1, sizeof(*d));
    if (d && od && od->n_pins) {
        d->pins = malloc(od->n_pins * sizeof(*d->pins));
        if (d->pins) {
            memcpy(d->pins, od->pins, od->n_pins * sizeof(*d->pins));
            d->n_pins = od->n_pins;
        }
    }
    if (!d || (od && od->n_pins && !d->pins)) {
        ctx_data_free(NULL, d, NULL, 0, 0, NULL);
        return syn_fail(detail, SYNESIS_ERR_NOMEM, "out of memory");
    }
    int rc = attach_data(ctx, d, detail);
    if (rc != 0)
        return rc;
    if (od && od->groups && (rc = syn_tls_ctx_set_groups(ctx, od->groups)) != 0)
        return syn_fail(detail, rc, "cannot set the key-exchange groups");
    SSL_CTX_set_cert_verify_callback(ctx, client_cert_verify, d);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    X509_VERIFY_PARAM_set_hostflags(SSL_CTX_get0_param(ctx), X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    return 0;
}

int syn_tls_client_ctx_rekey(SSL_CTX **out, SSL_CTX *old, const syn_tls_client_config *cfg,
                             char *detail) {
    if (out)
        *out = NULL;
    if (!out || !old || !cfg)
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT, "no context or configuration");
    int rc = tls_init(detail);
    if (rc)
        return rc;
    struct ctx_data *od = ctx_index >= 0 ? SSL_CTX_get_ex_data(old, ctx_index) : NULL;
    syn_identity id;
    rc = syn_identity_load(&id, "device", cfg->cert_file, cfg->cert_pem, cfg->cert_pem_len,
                           cfg->key_file, cfg->key_pem, cfg->key_pem_len, cfg->key_passphrase,
                           detail);
    if (rc)
        return rc;
    SSL_CTX *ctx = new_ctx(TLS_client_method(), &id, detail, &rc);
    syn_identity_clear(&id);
    if (!ctx)
        return rc;
    /* The same trust (the store itself, shared), pins and groups as the old context. */
    SSL_CTX_set1_cert_store(ctx, SSL_CTX_get_cert_store(old));
    if ((rc = verify_like(ctx, od, detail)) != 0)
        goto fail;
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, client_new_session);
    syn_ossl_clear();
    *out = ctx;
    return 0;
fail:
    SSL_CTX_free(ctx);
    syn_ossl_clear();
    return rc;
}

/* A context that verifies as from does and carries no identity and no session hook. */
int syn_tls_client_ctx_verify_only(SSL_CTX **out, SSL_CTX *from, char *detail) {
    if (out)
        *out = NULL;
    if (!out || !from)
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT, "no context");
    int rc = tls_init(detail);
    if (rc)
        return rc;
    struct ctx_data *od = SSL_CTX_get_ex_data(from, ctx_index);
    syn_ossl_clear();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return syn_fail_ossl(detail, SYNESIS_ERR_NOMEM, "SSL_CTX_new failed");
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1) {
        rc = syn_fail_ossl(detail, SYNESIS_ERR_CRYPTO, "cannot restrict the context to TLS 1.3");
        goto fail;
    }
    /* The same trust (the store itself, shared), verification parameters, pins and groups. */
    SSL_CTX_set1_cert_store(ctx, SSL_CTX_get_cert_store(from));
    if (X509_VERIFY_PARAM_set1(SSL_CTX_get0_param(ctx), SSL_CTX_get0_param(from)) != 1) {
        rc = syn_fail_ossl(detail, SYNESIS_ERR_NOMEM, "cannot copy the verification parameters");
        goto fail;
    }
    if ((rc = verify_like(ctx, od, detail)) != 0)
        goto fail;
    /* No session: nothing is cached, offered or handed to a sink (resume.c never sees one). */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    syn_ossl_clear();
    *out = ctx;
    return 0;
fail:
    SSL_CTX_free(ctx);
    syn_ossl_clear();
    return rc;
}

/* host without the brackets of "[v6]"; returns 1 for an IP literal. */
static int split_host(const char *name, char *host, size_t len) {
    size_t n = strlen(name);
    if (n >= 2 && name[0] == '[' && name[n - 1] == ']')
        snprintf(host, len, "%.*s", (int)(n - 2), name + 1);
    else
        snprintf(host, len, "%s", name);
    unsigned char buf[16];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

int syn_tls_client_ssl_setup(SSL *ssl, const char *server_name, const char *alpn, char *detail) {
    if (!ssl || !server_name || !server_name[0])
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT, "no SSL or server name");
    if (strlen(server_name) > 255)
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT, "server name longer than 255 bytes");
    char host[256];
    syn_ossl_clear();
    if (split_host(server_name, host, sizeof(host))) {
        /* (OpenSSL has no SSL_set1_ip_asc: the IP goes into the SSL's verify parameters.) */
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) != 1)
            return syn_fail_ossl(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                                 "IP address %s cannot be verified", host);
    } else {
        for (const char *p = host; *p; p++)
            if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
                return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                                "server name \"%s\" is not a host name", host);
        if (SSL_set_tlsext_host_name(ssl, host) != 1 || SSL_set1_host(ssl, host) != 1)
            return syn_fail_ossl(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                                 "server name %s cannot be used", host);
    }
    if (alpn) {
        size_t n = strlen(alpn);
        if (n == 0 || n > 255)
            return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                            "ALPN protocol name must be 1..255 bytes");
        unsigned char wire[256];
        wire[0] = (unsigned char)n;
        memcpy(wire + 1, alpn, n);
        if (SSL_set_alpn_protos(ssl, wire, (unsigned int)n + 1) != 0) /* 0 is success here */
            return syn_fail_ossl(detail, SYNESIS_ERR_NOMEM, "SSL_set_alpn_protos failed");
    }
    return 0;
}

/* Drains OpenSSL's error queue: the received TLS alert if one is recorded there (plain TLS), the
 * reason of the last error, whether an allocation failed (*oom), and how many errors (*n).
 * *alpn_bad is set when OpenSSL refused the server's ALPN extension (a protocol we did not offer:
 * OpenSSL raises a generic "bad extension" from its ALPN parser, whose function name is the only
 * trace; without function names it stays a TLS failure). */
static uint8_t drain_errors(char *reason, size_t len, int *alpn_bad, int *oom, int *n) {
    uint8_t alert = 0;
    unsigned long e;
    const char *func = NULL;
    reason[0] = '\0';
    *alpn_bad = 0;
    *oom = 0;
    *n = 0;
    while ((e = ERR_get_error_all(NULL, NULL, &func, NULL, NULL)) != 0) {
        int r = ERR_GET_REASON(e);
        (*n)++;
        if (r == ERR_R_MALLOC_FAILURE)
            *oom = 1;
        if (ERR_GET_LIB(e) == ERR_LIB_SSL && r > SSL_AD_REASON_OFFSET &&
            r < SSL_AD_REASON_OFFSET + 256)
            alert = (uint8_t)(r - SSL_AD_REASON_OFFSET);
        if (ERR_GET_LIB(e) == ERR_LIB_SSL && r == SSL_R_BAD_EXTENSION && func &&
            strstr(func, "alpn"))
            *alpn_bad = 1;
        const char *s = ERR_reason_error_string(e);
        if (s)
            snprintf(reason, len, "%s", s);
    }
    return alert;
}

/* OpenSSL's names, plus the TLS 1.3 alerts it leaves "unknown". */
static const char *alert_name(uint8_t alert) {
    switch (alert) {
    case 86:
        return "inappropriate fallback";
    case 109:
        return "missing extension";
    case 116:
        return "certificate required";
    default:
        return SSL_alert_desc_string_long(alert);
    }
}

static void peer_summary(SSL *ssl, char *out, size_t len) {
    out[0] = '\0';
    STACK_OF(X509) *chain = SSL_get_peer_cert_chain(ssl);
    X509 *leaf = chain && sk_X509_num(chain) > 0 ? sk_X509_value(chain, 0) : NULL;
    if (!leaf)
        return;
    char cn[128];
    if (syn_cert_common_name(leaf, cn, sizeof(cn)) != 0)
        snprintf(cn, sizeof(cn), "?");
    uint8_t h[32];
    char b64[48] = "";
    if (syn_spki_sha256(leaf, h) == 0)
        EVP_EncodeBlock((unsigned char *)b64, h, 32);
    snprintf(out, len, "CN=%s, key sha256//%s", cn, b64);
}

int syn_tls_client_handshake_error(SSL *ssl, uint8_t alert, char *detail) {
    char reason[160];
    int alpn_bad, oom, nerr;
    uint8_t queued = drain_errors(reason, sizeof(reason), &alpn_bad, &oom, &nerr);
    /* Our side failed for want of memory (the edge's own alert, when there is one, is its
     * verdict): say so, rather than what OpenSSL made of it (a certificate "signature failure"
     * when the verification could not allocate, say). */
    /* (A local failure while allocations fail: ngtcp2_crypto's own, which leave no trace in
     * OpenSSL's queue, show as an "internal error" of the handshake.) */
    if (!oom && !alert && syn_alloc_failing())
        oom = 1;
    /* OpenSSL queues an error whenever its handshake fails; a local failure of a handshake under
     * way with nothing queued and the edge's certificate not refused is ngtcp2_crypto's, which
     * fails only to allocate. */
    if (!oom && !alert && !nerr && ssl && !SSL_in_before(ssl) &&
        SSL_get_verify_result(ssl) == X509_V_OK)
        oom = 1;
    if (oom && (!alert || alert == SSL_AD_CERTIFICATE_REQUIRED))
        /* (certificate_required: we have one, but OpenSSL, failing to allocate while checking
         * it, sent an empty Certificate message) */
        return syn_fail(detail, SYNESIS_ERR_NOMEM, "TLS handshake failed: out of memory");
    if (!ssl)
        return syn_fail(detail, SYNESIS_ERR_TLS_HANDSHAKE, "TLS handshake failed%s%s",
                        reason[0] ? ": " : "", reason);
    if (!alert)
        alert = queued;

    long vr = SSL_get_verify_result(ssl);
    if (vr == X509_V_ERR_OUT_OF_MEM)
        return syn_fail(detail, SYNESIS_ERR_NOMEM,
                        "edge certificate verify failed: out of memory (not a verdict)");
    if (vr != X509_V_OK) {
        /* A certificate of the edge's chain whose key OpenSSL could not decode for want of memory
         * fails the verification as a key "too weak" or a bad signature. */
        STACK_OF(X509) *chain = SSL_get_peer_cert_chain(ssl);
        for (int i = 0; i < sk_X509_num(chain); i++) {
            X509 *x = sk_X509_value(chain, i);
            if (X509_get0_pubkey(x))
                continue;
            if (syn_cert_key_lost_to_oom(x))
                return syn_fail(detail, SYNESIS_ERR_NOMEM,
                                "TLS handshake failed: out of memory (decoding the edge's "
                                "certificate #%d)",
                                i + 1);
            /* An algorithm OpenSSL lacks (or lost from its process-wide store to an earlier
             * allocation failure): not a verdict on the edge's identity. */
            return syn_fail(detail, SYNESIS_ERR_CRYPTO,
                            "edge certificate #%d has a public key OpenSSL cannot decode", i + 1);
        }
        int depth = ssl_index >= 0 ? (int)(intptr_t)SSL_get_ex_data(ssl, ssl_index) - 1 : -1;
        char where[32] = "";
        if (depth >= 0)
            snprintf(where, sizeof(where), " (depth %d)", depth);
        char peer[160];
        peer_summary(ssl, peer, sizeof(peer));
        const char *why = X509_verify_cert_error_string(vr);
        switch (vr) {
        case X509_V_ERR_APPLICATION_VERIFICATION: {
            const struct ctx_data *d =
                ctx_index >= 0 ? SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_index) : NULL;
            return syn_fail(
                detail, SYNESIS_ERR_PEER_PIN_MISMATCH,
                "edge public key matches none of the %zu pinned key(s) (edge certificate %s)",
                d ? d->n_pins : (size_t)0, peer);
        }
        case X509_V_ERR_HOSTNAME_MISMATCH:
        case X509_V_ERR_IP_ADDRESS_MISMATCH: {
            X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
            const char *host = X509_VERIFY_PARAM_get0_host(param, 0);
            char *ip = host ? NULL : X509_VERIFY_PARAM_get1_ip_asc(param);
            int rc = syn_fail(
                detail, SYNESIS_ERR_PEER_NAME_MISMATCH,
                "edge certificate verify failed: %s: the certificate (%s) is not valid for %s", why,
                peer,
                host ? host
                : ip ? ip
                     : "the server name");
            OPENSSL_free(ip);
            return rc;
        }
        case X509_V_ERR_CERT_HAS_EXPIRED:
            return syn_fail(detail, SYNESIS_ERR_PEER_CERT_EXPIRED,
                            "edge certificate verify failed: %s%s (%s)", why, where, peer);
        case X509_V_ERR_CERT_NOT_YET_VALID:
            return syn_fail(
                detail, SYNESIS_ERR_PEER_UNTRUSTED,
                "edge certificate verify failed: %s%s (%s): the local clock may be behind", why,
                where, peer);
        default:
            return syn_fail(detail, SYNESIS_ERR_PEER_UNTRUSTED,
                            "edge certificate verify failed: %s%s (%s)", why, where, peer);
        }
    }
    if (alert) {
        const char *name = alert_name(alert);
        switch (alert) {
        case SSL_AD_NO_APPLICATION_PROTOCOL:
            return syn_fail(detail, SYNESIS_ERR_ALPN,
                            "edge accepts none of our application protocols (TLS alert %s, %u)",
                            name, (unsigned)alert);
        case SSL_AD_CERTIFICATE_REQUIRED: {
            /* We have a certificate; the edge got none: OpenSSL found no signature algorithm of
             * the edge's list that our key can make (it also concludes so when it runs out of
             * memory while checking, keeping no error: SYNESIS_ERR_CLIENT_CERT_REJECTED then
             * too, and the next attempt is unaffected). */
            int nid;
            if (SSL_get_signature_type_nid(ssl, &nid) != 1)
                return syn_fail(detail, SYNESIS_ERR_CLIENT_CERT_REJECTED,
                                "edge rejected the client certificate: TLS alert %s (%u): ours "
                                "was not sent (no signature algorithm the edge accepts, or out "
                                "of memory)",
                                name, (unsigned)alert);
        }
            /* fall through */
        case SSL_AD_BAD_CERTIFICATE:
        case SSL_AD_UNSUPPORTED_CERTIFICATE:
        case SSL_AD_CERTIFICATE_REVOKED:
        case SSL_AD_CERTIFICATE_EXPIRED:
        case SSL_AD_CERTIFICATE_UNKNOWN:
        case SSL_AD_UNKNOWN_CA:
        case SSL_AD_ACCESS_DENIED:
            return syn_fail(detail, SYNESIS_ERR_CLIENT_CERT_REJECTED,
                            "edge rejected the client certificate: TLS alert %s (%u)", name,
                            (unsigned)alert);
        default:
            return syn_fail(detail, SYNESIS_ERR_TLS_HANDSHAKE, "edge sent TLS alert %s (%u)", name,
                            (unsigned)alert);
        }
    }
    if (alpn_bad)
        return syn_fail(detail, SYNESIS_ERR_ALPN,
                        "the edge selected an application protocol we did not offer (TLS: %s)",
                        reason);
    return syn_fail(detail, SYNESIS_ERR_TLS_HANDSHAKE, "TLS handshake failed%s%s",
                    reason[0] ? ": " : "", reason);
}

/* ---- server ------------------------------------------------------------------------------- */

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg) {
    (void)ssl;
    const struct ctx_data *d = arg;
    size_t want = strlen(d->alpn);
    for (unsigned int i = 0; i < inlen;) {
        unsigned int n = in[i];
        if (n == 0 || i + 1 + n > inlen)
            break;
        if (n == want && memcmp(in + i + 1, d->alpn, n) == 0) {
            *out = in + i + 1;
            *outlen = (unsigned char)n;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + n;
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL; /* no_application_protocol */
}

/* A ClientHello without ALPN never reaches alpn_select: refuse it here. */
static int client_hello_check(SSL *ssl, int *al, void *arg) {
    (void)arg;
    const unsigned char *p;
    size_t len;
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &p,
                                  &len) != 1) {
        *al = SSL_AD_NO_APPLICATION_PROTOCOL;
        return SSL_CLIENT_HELLO_ERROR;
    }
    return SSL_CLIENT_HELLO_SUCCESS;
}

int syn_tls_server_ctx_new(SSL_CTX **out, const syn_tls_server_config *cfg, char *detail) {
    if (out)
        *out = NULL;
    if (!out || !cfg)
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT, "no context or configuration");
    if (!cfg->cert_file || !cfg->ca_file)
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                        "the edge needs a certificate and a device CA file");
    if (!cfg->alpn || !cfg->alpn[0] || strlen(cfg->alpn) > 255)
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                        "ALPN protocol name must be 1..255 bytes");
    int rc = tls_init(detail);
    if (rc)
        return rc;

    syn_identity id;
    rc = syn_identity_load(&id, "edge", cfg->cert_file, NULL, 0, cfg->key_file, NULL, 0, NULL,
                           detail);
    if (rc)
        return rc;
    SSL_CTX *ctx = new_ctx(TLS_server_method(), &id, detail, &rc);
    syn_identity_clear(&id);
    if (!ctx)
        return rc;

    STACK_OF(X509) *cas = NULL;
    if ((rc = syn_load_trust(SSL_CTX_get_cert_store(ctx), cfg->ca_file, NULL, &cas, detail)) != 0)
        goto fail;
    for (int i = 0; i < sk_X509_num(cas); i++) {
        if (SSL_CTX_add_client_CA(ctx, sk_X509_value(cas, i)) != 1) {
            OSSL_STACK_OF_X509_free(cas);
            rc = syn_fail_ossl(detail, SYNESIS_ERR_CA_UNREADABLE,
                               "CA file %s: certificate #%d has no usable name", cfg->ca_file,
                               i + 1);
            goto fail;
        }
    }
    OSSL_STACK_OF_X509_free(cas);

    struct ctx_data *d = calloc(1, sizeof(*d));
    if (d)
        d->alpn = strdup(cfg->alpn);
    if (!d || !d->alpn) {
        ctx_data_free(NULL, d, NULL, 0, 0, NULL);
        rc = syn_fail(detail, SYNESIS_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if ((rc = attach_data(ctx, d, detail)) != 0)
        goto fail;
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, d);
    SSL_CTX_set_client_hello_cb(ctx, client_hello_check, NULL);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    /* Session tickets for resumption (cfg->tickets, one by default). Without them (0), every
     * connection is a full mutual-TLS handshake: OpenSSL's default of two tickets serialised the
     * session with the device's chain, sealed and sent it (~1.4 KB) before HANDSHAKE_DONE, and
     * the device parsed both: about 8 % of the edge's CPU per handshake (docs/performance.md,
     * "Resumption" for what one ticket costs). The tickets are stateless (sealed with the
     * context's own random key, so an edge restart invalidates them) and expire after
     * cfg->ticket_lifetime seconds. */
    if (SSL_CTX_set_num_tickets(ctx, cfg->tickets > 0 ? (size_t)cfg->tickets : 0) != 1) {
        rc = syn_fail_ossl(detail, SYNESIS_ERR_CRYPTO, "SSL_CTX_set_num_tickets failed");
        goto fail;
    }
    if (cfg->tickets) {
        /* The session ID context binds sessions to this edge's configuration (its ALPN). */
        SSL_CTX_set_session_id_context(ctx, (const unsigned char *)cfg->alpn,
                                       (unsigned int)(strlen(cfg->alpn) > SSL_MAX_SID_CTX_LENGTH
                                                          ? SSL_MAX_SID_CTX_LENGTH
                                                          : strlen(cfg->alpn)));
        SSL_CTX_set_timeout(ctx, cfg->ticket_lifetime > 0 ? cfg->ticket_lifetime : 7200);
    }
    if (cfg->tickets && cfg->early_data) {
        /* Anti-replay for 0-RTT: OpenSSL makes the tickets of a connection that accepts early
         * data stateful, keeps them in this cache, and takes each out as it is used
         * (extensions_srvr.c, tls_parse_ctos_psk: "Check for replay"); a ticket presented twice
         * is found the first time only. The cache is bounded (evicting the oldest), and expired
         * sessions are flushed as connections come and go. */
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
        SSL_CTX_sess_set_cache_size(ctx, cfg->ticket_cache > 0 ? cfg->ticket_cache : 20480);
    } else {
        /* Stateless tickets need no server-side cache; without it a full handshake keeps
         * nothing. */
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    }
    syn_ossl_clear();
    *out = ctx;
    return 0;
fail:
    SSL_CTX_free(ctx);
    syn_ossl_clear();
    return rc;
}

int syn_tls_server_ctx_identity_of(SSL_CTX **out, SSL_CTX *from, const char *alpn, char *detail) {
    if (out)
        *out = NULL;
    if (!out || !from || !alpn || !alpn[0] || strlen(alpn) > 255)
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT, "no context or ALPN");
    int rc = tls_init(detail);
    if (rc)
        return rc;
    X509 *leaf = SSL_CTX_get0_certificate(from);
    EVP_PKEY *key = SSL_CTX_get0_privatekey(from);
    STACK_OF(X509) *chain = NULL;
    if (!leaf || !key || SSL_CTX_get0_chain_certs(from, &chain) != 1)
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                        "the context has no certificate and key");
    syn_identity id = {leaf, chain, key};
    SSL_CTX *ctx = new_ctx(TLS_server_method(), &id, detail, &rc);
    if (!ctx)
        return rc;
    struct ctx_data *d = calloc(1, sizeof(*d));
    if (d)
        d->alpn = strdup(alpn);
    if (!d || !d->alpn) {
        ctx_data_free(NULL, d, NULL, 0, 0, NULL);
        rc = syn_fail(detail, SYNESIS_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if ((rc = attach_data(ctx, d, detail)) != 0)
        goto fail;
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, d);
    SSL_CTX_set_client_hello_cb(ctx, client_hello_check, NULL);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    if (SSL_CTX_set_num_tickets(ctx, 0) != 1) {
        rc = syn_fail_ossl(detail, SYNESIS_ERR_CRYPTO, "SSL_CTX_set_num_tickets failed");
        goto fail;
    }
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    syn_ossl_clear();
    *out = ctx;
    return 0;
fail:
    SSL_CTX_free(ctx);
    syn_ossl_clear();
    return rc;
}

int syn_tls_peer_device_id(SSL *ssl, char *out, size_t out_len) {
    if (!ssl || !out || out_len == 0)
        return SYNESIS_ERR_INVALID_ARGUMENT;
    out[0] = '\0';
    X509 *peer = SSL_get0_peer_certificate(ssl);
    if (!peer || !SSL_is_init_finished(ssl) || SSL_get_verify_result(ssl) != X509_V_OK)
        return SYNESIS_ERR_INVALID_STATE;
    char cn[256];
    int rc = syn_cert_common_name(peer, cn, sizeof(cn));
    if (rc)
        return rc;
    const char *id = cn;
    if (strncmp(cn, "device-", 7) == 0 && cn[7])
        id = cn + 7;
    if (strlen(id) >= out_len)
        return SYNESIS_ERR_INVALID_ARGUMENT;
    memcpy(out, id, strlen(id) + 1);
    return 0;
}

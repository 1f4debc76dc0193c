/**
 * @file synesis/check.h
 * @brief The connectivity check: why a device cannot connect, and what to do. @since 1.1
 *
 * synesis_check_run() takes the tunnel configuration the application would connect with and
 * runs, on the caller's libev loop, the checks an operator would otherwise do by hand: the files
 * (certificate, key, CA readable; the key's permissions), the device certificate's validity and
 * expiry, the device clock against the certificate's notBefore, DNS resolution of the edge, a real
 * QUIC handshake with the configured identity over UDP (the proof that the tunnel can come up),
 * the trust of the edge's certificate, the path MTU the handshake's path MTU discovery found, TCP
 * reachability of the edge's port and the proxy settings of the environment. Each check ends in
 * one synesis_check_item: an id, a status, a one-line finding and a one-line fix.
 *
 * The shape, and why: one asynchronous call with a completion callback, like a request, because
 * the network checks take up to the handshake timeout and must not block the loop (DNS runs on a
 * resolver thread as the tunnel's does; the handshake and the TCP connect are non-blocking
 * sockets on the loop). The result is handed over once, complete, as a list of items in a fixed
 * order plus its JSON rendering, rather than one callback per check: a caller prints or ships the
 * whole report, and the verdict (can_connect) needs every check. The list and its strings belong
 * to the library and are valid during the callback only (copy what you keep), so nothing needs
 * freeing. A handle is returned only to cancel a check that is still running.
 */
#ifndef SYNESIS_CHECK_H
#define SYNESIS_CHECK_H

#include <stddef.h>

#include "synesis/common.h"
#include "synesis/tunnel.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The outcome of one check. @since 1.1 */
typedef enum synesis_check_status {
    SYNESIS_CHECK_OK = 0,      /**< nothing to do @since 1.1 */
    SYNESIS_CHECK_WARNING = 1, /**< works, but needs attention (e.g. expires soon) @since 1.1 */
    SYNESIS_CHECK_FAILED = 2,  /**< this stops the tunnel; the fix says what to do @since 1.1 */
    SYNESIS_CHECK_SKIPPED = 3, /**< not run: an earlier check failed, or nothing to check
                                *   (the finding says which) @since 1.1 */
} synesis_check_status;

/**
 * One check's outcome (library-owned, handed to the callback inside synesis_check_result; valid
 * during the callback). Members are only ever appended. @since 1.1
 */
typedef struct synesis_check_item {
    /** Set by the library: the size of the struct it filled. @since 1.1 */
    size_t struct_size;
    /** The check: "files", "certificate", "clock", "dns", "udp", "trust", "mtu", "tcp" or
     * "proxy" (later versions may add ids; the order of the list is the order of this list).
     * @since 1.1 */
    const char *id;
    synesis_check_status status; /**< the outcome @since 1.1 */
    /** The SYNESIS_ERR_* code behind a failure or warning, 0 when none. @since 1.1 */
    int error;
    /** One line: what was found, e.g. "handshake with 192.0.2.1:443 in 12 ms". Never NULL.
     * @since 1.1 */
    const char *finding;
    /** One line: what to do, naming the setting to change; "" when nothing. Never NULL.
     * @since 1.1 */
    const char *fix;
} synesis_check_item;

/** The whole report (library-owned, valid during the callback). @since 1.1 */
typedef struct synesis_check_result {
    /** Set by the library: the size of the struct it filled. @since 1.1 */
    size_t struct_size;
    /** 1 when the tunnel can come up: the QUIC handshake with the configured identity and trust
     * succeeded (no check failed). 0 otherwise. @since 1.1 */
    int can_connect;
    /** 0 when the checks ran to the end; SYNESIS_ERR_INVALID_ARGUMENT (e.g. an unparsable
     * cloud_url: the "files" item says why) or SYNESIS_ERR_NOMEM when they could not.
     * @since 1.1 */
    int status;
    const synesis_check_item *items; /**< n_items items, in the order of the ids above @since 1.1 */
    size_t n_items;                  /**< the number of items @since 1.1 */
    /** The same report as one JSON object, NUL-terminated: {"can_connect":bool,"checks":[{"id",
     * "status" ("ok", "warning", "failed", "skipped"), "error" (the SYNESIS_ERR_* name or null),
     * "finding","fix"}...]}. Never NULL. @since 1.1 */
    const char *json;
} synesis_check_result;

/**
 * Check options (caller-filled: start from synesis_check_options_init()). Members are only ever
 * appended. @since 1.1
 */
typedef struct synesis_check_options {
    /** Set by synesis_check_options_init(): the size of the struct the application was built
     * with. @since 1.1 */
    size_t struct_size;
    /** The longest a network check may take (DNS, the handshake, the TCP connect), seconds,
     * 0.1 .. 3600; the handshake also stops at config.handshake_timeout when that is shorter.
     * Default 10. @since 1.1 */
    double timeout;
    /** After the handshake, how long path MTU discovery may run before the "mtu" check reads what
     * it found, seconds, 0 .. 60. Default 1. @since 1.1 */
    double mtu_wait;
    /** Days before the device certificate's notAfter from which the "certificate" check warns,
     * 0 .. 3650. Default 30. @since 1.1 */
    int expiry_warning_days;
} synesis_check_options;

/**
 * Zeroes the first size bytes of opts, writes the defaults of the members that fit and sets
 * struct_size to size. Call it through synesis_check_options_init(). NULL is a no-op. Any thread.
 * @since 1.1
 */
SYNESIS_API void synesis_check_options_init_sized(synesis_check_options *opts, size_t size);

/** Fills *opts with the defaults (synesis_check_options_init_sized() with its size). @since 1.1 */
#define synesis_check_options_init(opts) synesis_check_options_init_sized((opts), sizeof(*(opts)))

/** A running check (opaque). @since 1.1 */
typedef struct synesis_check synesis_check;

/**
 * The completion callback: called once, on the loop thread, with the whole report. result and
 * everything it points to are valid during the call only. The check is over when it runs (its
 * handle is freed right after it returns: do not call synesis_check_cancel() on it from here or
 * later). @since 1.1
 */
typedef void (*synesis_check_done_fn)(const synesis_check_result *result, void *user_data);

/**
 * Starts the connectivity check of a tunnel configuration. The configuration is read as by
 * synesis_tunnel_new() (the same struct_size rule), during this call only: the strings it points
 * to need not outlive it. The files, certificate, clock and proxy checks run during the call; DNS,
 * the UDP handshake (a real tunnel with this configuration: identity, trust, pins, groups; no
 * heartbeat, no retry), the MTU and the TCP connect run on loop afterwards, at once and in
 * parallel, and done is called from the loop when all have ended, never from inside this function.
 * The check creates a tunnel of its own; it does not touch the application's tunnels and opens
 * nothing on the edge but one connection it closes at once.
 * @param loop the libev loop to run on (required).
 * @param cfg the configuration to check (required); config.log receives the check tunnel's log.
 * @param opts options; NULL for the defaults.
 * @param done the completion callback (required).
 * @param user_data handed to done.
 * @param out receives the handle for synesis_check_cancel(); may be NULL.
 * @return 0 (done will be called once, even when the checks fail); SYNESIS_ERR_INVALID_ARGUMENT
 *         (NULL loop, cfg or done; an option out of range; a struct_size the library cannot read);
 *         SYNESIS_ERR_NOMEM.
 * Thread rule: the loop's thread only. @since 1.1
 */
SYNESIS_API int synesis_check_run(struct ev_loop *loop, const synesis_tunnel_config *cfg,
                                  const synesis_check_options *opts, synesis_check_done_fn done,
                                  void *user_data, synesis_check **out);

/**
 * Stops a check that is still running and frees it: done is not called. NULL is a no-op; so is a
 * handle whose done already ran, which must not be used at all (it is freed).
 * Thread rule: the loop's thread only. @since 1.1
 */
SYNESIS_API void synesis_check_cancel(synesis_check *c);

/** The name of a status: "ok", "warning", "failed", "skipped" ("unknown" otherwise). Any thread.
 * @since 1.1 */
SYNESIS_API const char *synesis_check_status_name(synesis_check_status status);

#ifdef __cplusplus
}
#endif

#endif /* SYNESIS_CHECK_H */

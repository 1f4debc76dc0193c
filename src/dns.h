/*
 * Non-blocking name resolution on a libev loop. Internal.
 *
 * Each lookup of a name runs getaddrinfo on its own short-lived, detached thread (the only way to
 * use the system's resolver, with /etc/hosts, nsswitch and search domains, without blocking the
 * loop); the result comes back to the loop thread through an ev_async watcher. A lookup cannot be
 * interrupted: cancelling it only means its result is discarded when the thread ends. The lookup's
 * memory is shared by the thread and the resolver under a mutex and a reference count, so whichever
 * side lets go last frees it, even when the resolver is freed long before the thread ends.
 *
 * IP literals ("192.0.2.1", "::1") start no thread and call no hook; their result is still
 * delivered from the loop, never from inside syn_resolver_start, so callers see one code path.
 *
 * A resolver is used only from the thread that runs its loop, and must be freed before the loop
 * is destroyed. Its ev_async watcher does not keep ev_run() alive while no lookup is outstanding.
 */
#ifndef SYNESIS_DNS_H
#define SYNESIS_DNS_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Most addresses one lookup returns (after de-duplication; the first ones in order win). */
#define SYN_RESOLVE_MAX 16

typedef struct syn_resolver syn_resolver;

/* One resolved address, port included; ss holds a sockaddr_in or sockaddr_in6 of length len. */
typedef struct syn_addr {
    struct sockaddr_storage ss;
    socklen_t len;
} syn_addr;

/*
 * Result callback, called on the loop thread once per lookup that was neither cancelled nor freed.
 * On success rv is 0 and addrs holds n >= 1 addresses (at most SYN_RESOLVE_MAX), IPv4 first, then
 * IPv6, each once, with the requested port; detail is NULL. On failure rv is SYNESIS_ERR_DNS, addrs
 * is NULL, n is 0 and detail says why, e.g. "cannot resolve 'foo.invalid': Name or service not
 * known". addrs and detail are valid only during the call. The callback may start a new lookup,
 * cancel, or free the resolver.
 */
typedef void (*syn_resolve_cb)(void *user_data, int rv, const syn_addr *addrs, size_t n,
                               const char *detail);

/*
 * Optional replacement for getaddrinfo, called ON THE RESOLVER THREAD with the host and port of
 * the lookup (tests use it to simulate a slow or failing lookup). Fills up to max entries of out
 * (max is 4 * SYN_RESOLVE_MAX, room for duplicates) and returns how many it filled (values above
 * max count as max), or a negative value for failure, which is reported as SYNESIS_ERR_DNS with the
 * detail "resolver hook failed". Entries of another family than AF_INET/AF_INET6 are ignored; the
 * port of every entry is set to the requested one; the usual ordering and de-duplication apply.
 * hook_data must outlive every thread the resolver started, including those of cancelled lookups.
 * (The signature is the public synesis_resolve_fn's, so the tunnel hands the application's hook and
 * data over as they are, never itself.)
 */
typedef int (*syn_resolve_hook)(const char *host, uint16_t port, struct sockaddr_storage *addrs,
                                unsigned int *lens, size_t max, void *hook_data);

/*
 * Creates a resolver whose callbacks run on loop. hook may be NULL (use getaddrinfo). Returns NULL
 * when loop is NULL or memory is short. Starts one ev_async watcher on loop (without a loop
 * reference), so the loop's wake-up pipe exists from here on.
 */
syn_resolver *syn_resolver_new(struct ev_loop *loop, syn_resolve_hook hook, void *hook_data);

/*
 * Starts resolving host (a name or an IP literal without brackets, 1..255 characters) for port,
 * first cancelling any lookup still outstanding on r: at most one is outstanding per resolver.
 * getaddrinfo runs with AF_UNSPEC, SOCK_DGRAM and no AI_ADDRCONFIG (so "localhost" works on a
 * machine with nothing but loopback). cb is called later from the loop, never from inside this
 * function. Returns 0, SYNESIS_ERR_INVALID_ARGUMENT (NULL r, host or cb; empty or too long host)
 * or SYNESIS_ERR_NOMEM; when the resolver thread cannot be started, returns 0 and reports
 * SYNESIS_ERR_DNS through cb ("cannot resolve 'x': cannot start a resolver thread: ..."), as a
 * transient failure like any other.
 */
int syn_resolver_start(syn_resolver *r, const char *host, uint16_t port, syn_resolve_cb cb,
                       void *user_data);

/* Cancels the outstanding lookup, if any: its callback will not run. NULL is ignored. */
void syn_resolver_cancel(syn_resolver *r);

/*
 * Cancels the outstanding lookup (no callback) and frees r, stopping its watcher. Safe from inside
 * the result callback. A thread still running finishes on its own and frees what it shares. NULL
 * is ignored.
 */
void syn_resolver_free(syn_resolver *r);

/* 1 while a lookup is outstanding (from syn_resolver_start until its callback starts or it is
 * cancelled), else 0. */
int syn_resolver_active(const syn_resolver *r);

#endif /* SYNESIS_DNS_H */

/* Name resolution off the loop: one detached getaddrinfo thread per lookup, result via ev_async. */
#include "dns.h"
#include "dns_test.h"

#include "internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HOST_MAX 255

/* One lookup, shared by the resolver and its thread. */
typedef struct syn_lookup {
    pthread_mutex_t mu;
    int refs;            /* guarded by mu: the resolver's and the thread's */
    syn_resolver *owner; /* guarded by mu: NULL once the resolver let go (cancelled or delivered) */
    int done;            /* guarded by mu: the outputs below are final */

    /* inputs, fixed before the thread starts */
    struct ev_loop *loop;
    syn_resolve_hook hook;
    void *hook_data;
    char host[HOST_MAX + 1];
    uint16_t port;

    /* outputs, written by the thread before done is set */
    int rv;
    size_t n;
    syn_addr addrs[SYN_RESOLVE_MAX];
    char detail[SYNESIS_DETAIL_MAX];
} syn_lookup;

struct syn_resolver {
    struct ev_loop *loop;
    ev_async async;
    int holds_loop; /* the async watcher counts as a loop reference (a lookup is outstanding) */
    syn_resolve_hook hook;
    void *hook_data;
    syn_lookup *cur;
    syn_resolve_cb cb;
    void *user_data;
    int spawn_error; /* tests: fail the next thread start with this errno */
};

static void lookup_unref(syn_lookup *l) {
    pthread_mutex_lock(&l->mu);
    int last = --l->refs == 0;
    pthread_mutex_unlock(&l->mu);
    if (last) {
        pthread_mutex_destroy(&l->mu);
        free(l);
    }
}

/* The async watcher stays started for the resolver's life; it holds the loop only while needed. */
static void hold_loop(syn_resolver *r, int on) {
    if (on && !r->holds_loop)
        ev_ref(r->loop);
    else if (!on && r->holds_loop)
        ev_unref(r->loop);
    r->holds_loop = on;
}

/* The same IP address (and IPv6 scope), whatever the ports. */
static int same_ip(const syn_addr *a, const struct sockaddr *sa) {
    if (a->ss.ss_family != sa->sa_family)
        return 0;
    if (sa->sa_family == AF_INET)
        return memcmp(&((const struct sockaddr_in *)(const void *)&a->ss)->sin_addr,
                      &((const struct sockaddr_in *)(const void *)sa)->sin_addr,
                      sizeof(struct in_addr)) == 0;
    const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)(const void *)&a->ss;
    const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)(const void *)sa;
    return memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(struct in6_addr)) == 0 &&
           x->sin6_scope_id == y->sin6_scope_id;
}

/* Appends sa with port to l's result unless it is there already, the result is full, or sa is
 * of a family we do not use. */
static void add_unique(syn_lookup *l, const struct sockaddr *sa, socklen_t len) {
    if (l->n >= SYN_RESOLVE_MAX)
        return;
    if (!((sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) ||
          (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6))))
        return;
    for (size_t i = 0; i < l->n; i++)
        if (same_ip(&l->addrs[i], sa))
            return;
    syn_addr *a = &l->addrs[l->n++];
    memset(a, 0, sizeof(*a));
    if (sa->sa_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)(void *)&a->ss;
        memcpy(in, sa, sizeof(*in));
        in->sin_port = htons(l->port);
        a->len = sizeof(*in);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)(void *)&a->ss;
        memcpy(in6, sa, sizeof(*in6));
        in6->sin6_port = htons(l->port);
        a->len = sizeof(*in6);
    }
}

/* Room for what a hook returns before de-duplication. */
#define HOOK_MAX (4 * SYN_RESOLVE_MAX)

static void resolve_with_hook(syn_lookup *l) {
    struct sockaddr_storage ss[HOOK_MAX];
    unsigned int lens[HOOK_MAX];
    memset(ss, 0, sizeof(ss));
    memset(lens, 0, sizeof(lens));
    int k = l->hook(l->host, l->port, ss, lens, HOOK_MAX, l->hook_data);
    if (k < 0) {
        l->rv = syn_fail(l->detail, SYNESIS_ERR_DNS, "resolver hook failed");
        return;
    }
    size_t cnt = (size_t)k > HOOK_MAX ? HOOK_MAX : (size_t)k;
    for (int fam = 0; fam < 2; fam++)
        for (size_t i = 0; i < cnt; i++)
            if (ss[i].ss_family == (fam == 0 ? AF_INET : AF_INET6) && lens[i] <= sizeof(ss[i]))
                add_unique(l, (const struct sockaddr *)&ss[i], (socklen_t)lens[i]);
}

static void resolve_with_getaddrinfo(syn_lookup *l) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_NUMERICSERV; /* and no AI_ADDRCONFIG: loopback-only machines resolve too */
    char serv[8];
    snprintf(serv, sizeof(serv), "%u", (unsigned)l->port);
    int rc = getaddrinfo(l->host, serv, &hints, &res);
    if (rc != 0) {
        char buf[128];
        const char *why = rc == EAI_SYSTEM ? strerror_r(errno, buf, sizeof(buf)) : gai_strerror(rc);
        l->rv = syn_fail(l->detail, SYNESIS_ERR_DNS, "cannot resolve '%s': %s", l->host, why);
        return;
    }
    for (int fam = 0; fam < 2; fam++)
        for (const struct addrinfo *ai = res; ai; ai = ai->ai_next)
            if (ai->ai_family == (fam == 0 ? AF_INET : AF_INET6))
                add_unique(l, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(res);
}

static void *resolver_thread(void *arg) {
    syn_lookup *l = arg;
    if (l->hook)
        resolve_with_hook(l);
    else
        resolve_with_getaddrinfo(l);
    if (l->rv == 0 && l->n == 0)
        l->rv = syn_fail(l->detail, SYNESIS_ERR_DNS, "cannot resolve '%s': no IPv4 or IPv6 address",
                         l->host);

    /* The send happens under the mutex, so the resolver (and its watcher) cannot be freed under us:
     * cancelling clears owner under the same mutex first. */
    pthread_mutex_lock(&l->mu);
    l->done = 1;
    if (l->owner)
        ev_async_send(l->loop, &l->owner->async);
    int last = --l->refs == 0;
    pthread_mutex_unlock(&l->mu);
    if (last) {
        pthread_mutex_destroy(&l->mu);
        free(l);
    }
    return NULL;
}

static void on_async(struct ev_loop *loop, ev_async *w, int revents) {
    (void)loop;
    (void)revents;
    syn_resolver *r = w->data;
    syn_lookup *l = r->cur;
    if (!l)
        return; /* a late wake-up from a lookup cancelled after its thread signalled */
    pthread_mutex_lock(&l->mu);
    int done = l->done;
    if (done)
        l->owner = NULL;
    pthread_mutex_unlock(&l->mu);
    if (!done)
        return;
    syn_resolve_cb cb = r->cb;
    void *ud = r->user_data;
    r->cur = NULL;
    r->cb = NULL;
    r->user_data = NULL;
    hold_loop(r, 0);
    /* r may be freed, or a new lookup started, by the callback: do not touch r after it. */
    cb(ud, l->rv, l->rv == 0 ? l->addrs : NULL, l->rv == 0 ? l->n : 0,
       l->rv == 0 ? NULL : l->detail);
    lookup_unref(l);
}

syn_resolver *syn_resolver_new(struct ev_loop *loop, syn_resolve_hook hook, void *hook_data) {
    if (!loop)
        return NULL;
    syn_resolver *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->loop = loop;
    r->hook = hook;
    r->hook_data = hook_data;
    ev_async_init(&r->async, on_async);
    r->async.data = r;
    ev_async_start(loop, &r->async);
    ev_unref(loop); /* idle resolvers must not keep ev_run() going */
    return r;
}

/* Fills l's result directly when host is an IP literal; returns 1 if it was one. */
static int resolve_literal(syn_lookup *l) {
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
    memset(&in, 0, sizeof(in));
    memset(&in6, 0, sizeof(in6));
    if (inet_pton(AF_INET, l->host, &in.sin_addr) == 1) {
        in.sin_family = AF_INET;
        add_unique(l, (const struct sockaddr *)&in, sizeof(in));
        return 1;
    }
    if (inet_pton(AF_INET6, l->host, &in6.sin6_addr) == 1) {
        in6.sin6_family = AF_INET6;
        add_unique(l, (const struct sockaddr *)&in6, sizeof(in6));
        return 1;
    }
    return 0;
}

static int spawn(syn_resolver *r, syn_lookup *l) {
    if (r->spawn_error) {
        int e = r->spawn_error;
        r->spawn_error = 0;
        return e;
    }
    pthread_attr_t attr;
    int e = pthread_attr_init(&attr);
    if (e != 0)
        return e;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    /* The thread must not take the application's signals: block them all while it is created
     * (it inherits the mask). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t tid;
    e = pthread_create(&tid, &attr, resolver_thread, l);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    return e;
}

int syn_resolver_start(syn_resolver *r, const char *host, uint16_t port, syn_resolve_cb cb,
                       void *user_data) {
    if (!r || !host || !cb)
        return SYNESIS_ERR_INVALID_ARGUMENT;
    size_t hl = strnlen(host, HOST_MAX + 1);
    if (hl == 0 || hl > HOST_MAX)
        return SYNESIS_ERR_INVALID_ARGUMENT;
    syn_resolver_cancel(r);

    syn_lookup *l = calloc(1, sizeof(*l));
    if (!l)
        return SYNESIS_ERR_NOMEM;
    if (pthread_mutex_init(&l->mu, NULL) != 0) {
        free(l);
        return SYNESIS_ERR_NOMEM;
    }
    l->loop = r->loop;
    l->hook = r->hook;
    l->hook_data = r->hook_data;
    memcpy(l->host, host, hl + 1);
    l->port = port;
    l->owner = r;
    l->refs = 1;

    /* l->done is shared once a thread runs: decide on the immediate delivery beforehand. */
    int immediate = 1;
    if (resolve_literal(l)) {
        l->done = 1;
    } else {
        l->refs = 2; /* before the thread can run */
        int e = spawn(r, l);
        immediate = e != 0;
        if (e != 0) {
            char buf[128];
            l->refs = 1;
            l->done = 1;
            l->rv = syn_fail(l->detail, SYNESIS_ERR_DNS,
                             "cannot resolve '%s': cannot start a resolver thread: %s", l->host,
                             strerror_r(e, buf, sizeof(buf)));
        }
    }
    r->cur = l;
    r->cb = cb;
    r->user_data = user_data;
    hold_loop(r, 1);
    if (immediate) /* delivered from the loop like every other result */
        ev_async_send(r->loop, &r->async);
    return 0;
}

void syn_resolver_cancel(syn_resolver *r) {
    if (!r || !r->cur)
        return;
    syn_lookup *l = r->cur;
    r->cur = NULL;
    r->cb = NULL;
    r->user_data = NULL;
    pthread_mutex_lock(&l->mu);
    l->owner = NULL;
    pthread_mutex_unlock(&l->mu);
    lookup_unref(l);
    hold_loop(r, 0);
}

void syn_resolver_free(syn_resolver *r) {
    if (!r)
        return;
    syn_resolver_cancel(r);
    ev_ref(r->loop); /* balance the ev_unref of syn_resolver_new before stopping */
    ev_async_stop(r->loop, &r->async);
    free(r);
}

int syn_resolver_active(const syn_resolver *r) { return r && r->cur ? 1 : 0; }

void syn_resolver_test_spawn_error(syn_resolver *r, int err) {
    if (r)
        r->spawn_error = err;
}

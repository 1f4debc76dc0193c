/* Non-blocking resolver: results through the loop, ordering, failures, cancellation, lifetimes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>
#include <time.h>

#include "dns.h"
#include "dns_test.h"
#include "internal.h"

/* ---- failure injection (the test links with -Wl,--wrap=calloc,...): the n-th next call fails ----
 */

void *__real_calloc(size_t n, size_t size);
void *__wrap_calloc(size_t n, size_t size);
int __real_pthread_mutex_init(pthread_mutex_t *m, const pthread_mutexattr_t *a);
int __wrap_pthread_mutex_init(pthread_mutex_t *m, const pthread_mutexattr_t *a);
int __real_pthread_attr_init(pthread_attr_t *a);
int __wrap_pthread_attr_init(pthread_attr_t *a);

static int fail_calloc_in, fail_mutex_in, fail_attr_in;

static int fail_now(int *counter) { return *counter > 0 && --*counter == 0; }

void *__wrap_calloc(size_t n, size_t size) {
    if (fail_now(&fail_calloc_in)) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_calloc(n, size);
}

int __wrap_pthread_mutex_init(pthread_mutex_t *m, const pthread_mutexattr_t *a) {
    return fail_now(&fail_mutex_in) ? ENOMEM : __real_pthread_mutex_init(m, a);
}

int __wrap_pthread_attr_init(pthread_attr_t *a) {
    return fail_now(&fail_attr_in) ? ENOMEM : __real_pthread_attr_init(a);
}

/* ---- helpers ---- */

struct result {
    int calls;
    int rv;
    size_t n;
    syn_addr addrs[SYN_RESOLVE_MAX];
    char detail[SYNESIS_DETAIL_MAX];
    int was_active; /* syn_resolver_active() inside the callback */
    syn_resolver *r;
    /* optional actions from inside the callback */
    int free_in_cb;
    const char *restart_host;
    struct result *restart_into;
    int ticks; /* ticks counted when the result arrived */
    int *tick_counter;
    ev_timer *stop_timer;
    struct ev_loop *loop;
};

static void on_result(void *ud, int rv, const syn_addr *addrs, size_t n, const char *detail);

static void on_result(void *ud, int rv, const syn_addr *addrs, size_t n, const char *detail) {
    struct result *res = ud;
    res->calls++;
    res->rv = rv;
    res->n = n;
    if (rv == 0) {
        assert_non_null(addrs);
        assert_null(detail);
        assert_true(n >= 1 && n <= SYN_RESOLVE_MAX);
        memcpy(res->addrs, addrs, n * sizeof(*addrs));
    } else {
        assert_null(addrs);
        assert_int_equal(n, 0);
        assert_non_null(detail);
        snprintf(res->detail, sizeof(res->detail), "%s", detail);
    }
    if (res->r)
        res->was_active = syn_resolver_active(res->r);
    if (res->tick_counter)
        res->ticks = *res->tick_counter;
    if (res->stop_timer)
        ev_timer_stop(res->loop, res->stop_timer);
    if (res->restart_host)
        assert_int_equal(
            syn_resolver_start(res->r, res->restart_host, 7, on_result, res->restart_into), 0);
    if (res->free_in_cb)
        syn_resolver_free(res->r);
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static const char *addr_str(const syn_addr *a, char *buf, size_t len) {
    if (a->ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)&a->ss)->sin_addr, buf,
                  (socklen_t)len);
    else
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)&a->ss)->sin6_addr, buf,
                  (socklen_t)len);
    return buf;
}

static unsigned addr_port(const syn_addr *a) {
    if (a->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)(const void *)&a->ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)(const void *)&a->ss)->sin6_port);
}

static void set_addr(syn_addr *a, const char *ip) {
    memset(a, 0, sizeof(*a));
    struct sockaddr_in *in = (struct sockaddr_in *)(void *)&a->ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)(void *)&a->ss;
    if (inet_pton(AF_INET, ip, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons(9999); /* the resolver replaces the port */
        a->len = sizeof(*in);
    } else {
        assert_int_equal(inet_pton(AF_INET6, ip, &in6->sin6_addr), 1);
        in6->sin6_family = AF_INET6;
        a->len = sizeof(*in6);
    }
}

/* Every IPv4 address comes before every IPv6 one, and none twice. */
static void assert_ordered_unique(const struct result *res) {
    int seen_v6 = 0;
    for (size_t i = 0; i < res->n; i++) {
        int fam = res->addrs[i].ss.ss_family;
        assert_true(fam == AF_INET || fam == AF_INET6);
        if (fam == AF_INET6)
            seen_v6 = 1;
        else
            assert_false(seen_v6);
        assert_int_equal(res->addrs[i].len,
                         fam == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
        for (size_t j = 0; j < i; j++) {
            char a[64], b[64];
            assert_false(fam == res->addrs[j].ss.ss_family &&
                         strcmp(addr_str(&res->addrs[i], a, sizeof(a)),
                                addr_str(&res->addrs[j], b, sizeof(b))) == 0);
        }
    }
}

/* A hook whose behaviour the test steers; it runs on the resolver thread. */
struct hook_ctx {
    atomic_int calls;
    atomic_int returned;
    atomic_int gate_open; /* "slow" hosts wait for this */
    int sleep_ms;         /* "sleep" hosts sleep this long */
    int fail;             /* return -1 */
    int count;            /* how many of addrs to return */
    int report;           /* value returned instead of count when non-zero */
    syn_addr addrs[4 * SYN_RESOLVE_MAX];
    pthread_mutex_t mu; /* for the last_* fields: hooks of two lookups may run at once */
    size_t last_max;
    char last_host[256];
    unsigned last_port;
};

static void hook_init(struct hook_ctx *h) {
    memset(h, 0, sizeof(*h));
    assert_int_equal(pthread_mutex_init(&h->mu, NULL), 0);
}

static int test_hook(const char *host, uint16_t port, struct sockaddr_storage *ss,
                     unsigned int *lens, size_t max, void *data) {
    struct hook_ctx *h = data;
    atomic_fetch_add(&h->calls, 1);
    pthread_mutex_lock(&h->mu);
    snprintf(h->last_host, sizeof(h->last_host), "%s", host);
    h->last_port = port;
    h->last_max = max;
    pthread_mutex_unlock(&h->mu);
    if (strncmp(host, "slow", 4) == 0)
        for (int i = 0; i < 10000 && !atomic_load(&h->gate_open); i++)
            sleep_ms(1);
    if (strncmp(host, "sleep", 5) == 0)
        sleep_ms(h->sleep_ms);
    int rv = h->fail ? -1 : h->count;
    for (int i = 0; i < h->count && (size_t)i < max; i++) {
        ss[i] = h->addrs[i].ss;
        lens[i] = h->addrs[i].len;
    }
    if (h->report)
        rv = h->report;
    atomic_fetch_add(&h->returned, 1);
    return rv;
}

/* Waits (really) until the hook returned n times, then a little more for the thread's tail. */
static void wait_hook_returned(struct hook_ctx *h, int n) {
    for (int i = 0; i < 10000 && atomic_load(&h->returned) < n; i++)
        sleep_ms(1);
    assert_int_equal(atomic_load(&h->returned), n);
    sleep_ms(50);
}

static struct ev_loop *new_loop(void) {
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    assert_non_null(loop);
    return loop;
}

/* ---- tests ---- */

static void test_localhost(void **state) {
    (void)state;
    struct ev_loop *loop = new_loop();
    syn_resolver *r = syn_resolver_new(loop, NULL, NULL);
    assert_non_null(r);
    struct result res = {.r = NULL};
    res.r = r;
    assert_int_equal(syn_resolver_start(r, "localhost", 4433, on_result, &res), 0);
    assert_int_equal(res.calls, 0); /* never from inside start */
    assert_int_equal(syn_resolver_active(r), 1);
    ev_run(loop, 0); /* returns by itself once the result is in */
    assert_int_equal(res.calls, 1);
    assert_int_equal(res.rv, 0);
    assert_int_equal(res.was_active, 0);
    assert_int_equal(syn_resolver_active(r), 0);
    assert_true(res.n >= 1);
    assert_ordered_unique(&res);
    char buf[64];
    int has4 = 0, has6 = 0;
    for (size_t i = 0; i < res.n; i++) {
        assert_int_equal(addr_port(&res.addrs[i]), 4433);
        addr_str(&res.addrs[i], buf, sizeof(buf));
        has4 |= strcmp(buf, "127.0.0.1") == 0;
        has6 |= strcmp(buf, "::1") == 0;
    }
    assert_true(has4 || has6);
    if (has4)
        assert_string_equal(addr_str(&res.addrs[0], buf, sizeof(buf)), "127.0.0.1");
    syn_resolver_free(r);
    ev_run(loop, 0);
    ev_loop_destroy(loop);
}

static void test_ip_literals(void **state) {
    (void)state;
    static const struct {
        const char *host;
        int family;
        const char *shown;
    } cases[] = {
        {"192.0.2.7",        AF_INET,  "192.0.2.7"       },
        {"127.0.0.1",        AF_INET,  "127.0.0.1"       },
        {"::1",              AF_INET6, "::1"             },
        {"2001:db8::1",      AF_INET6, "2001:db8::1"     },
        {"::ffff:192.0.2.1", AF_INET6, "::ffff:192.0.2.1"},
    };
    struct ev_loop *loop = new_loop();
    struct hook_ctx h;
    hook_init(&h);
    syn_resolver *r = syn_resolver_new(loop, test_hook, &h);
    assert_non_null(r);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct result res = {.r = r};
        assert_int_equal(syn_resolver_start(r, cases[i].host, 853, on_result, &res), 0);
        assert_int_equal(res.calls, 0);
        ev_run(loop, 0);
        assert_int_equal(res.calls, 1);
        assert_int_equal(res.rv, 0);
        assert_int_equal(res.n, 1);
        assert_int_equal(res.addrs[0].ss.ss_family, cases[i].family);
        char buf[64];
        assert_string_equal(addr_str(&res.addrs[0], buf, sizeof(buf)), cases[i].shown);
        assert_int_equal(addr_port(&res.addrs[0]), 853);
    }
    assert_int_equal(atomic_load(&h.calls), 0); /* no thread, no hook for literals */
    syn_resolver_free(r);
    ev_loop_destroy(loop);
}

static void test_hook_failure(void **state) {
    (void)state;
    struct ev_loop *loop = new_loop();
    struct hook_ctx h;
    hook_init(&h);
    h.fail = 1;
    syn_resolver *r = syn_resolver_new(loop, test_hook, &h);
    struct result res = {.r = r};
    assert_int_equal(syn_resolver_start(r, "edge.example", 443, on_result, &res), 0);
    ev_run(loop, 0);
    assert_int_equal(res.calls, 1);
    assert_int_equal(res.rv, SYNESIS_ERR_DNS);
    assert_string_equal(res.detail, "resolver hook failed");
    assert_string_equal(h.last_host, "edge.example");
    assert_int_equal(h.last_port, 443);
    syn_resolver_free(r);
    ev_loop_destroy(loop);
}

static void test_hook_no_usable_address(void **state) {
    (void)state;
    struct ev_loop *loop = new_loop();
    struct hook_ctx h;
    hook_init(&h);
    syn_resolver *r = syn_resolver_new(loop, test_hook, &h);
    /* No address at all. */
    struct result res = {.r = r};
    assert_int_equal(syn_resolver_start(r, "empty.example", 443, on_result, &res), 0);
    ev_run(loop, 0);
    assert_int_equal(res.rv, SYNESIS_ERR_DNS);
    assert_string_equal(res.detail, "cannot resolve 'empty.example': no IPv4 or IPv6 address");
    /* Only an address of another family. */
    struct sockaddr_un *un = (struct sockaddr_un *)(void *)&h.addrs[0].ss;
    un->sun_family = AF_UNIX;
    h.addrs[0].len = sizeof(*un);
    /* and an AF_INET entry whose length is too short to be one */
    set_addr(&h.addrs[1], "192.0.2.1");
    h.addrs[1].len = 4;
    h.count = 2;
    struct result res2 = {.r = r};
    assert_int_equal(syn_resolver_start(r, "unix.example", 443, on_result, &res2), 0);
    ev_run(loop, 0);
    assert_int_equal(res2.calls, 1);
    assert_int_equal(res2.rv, SYNESIS_ERR_DNS);
    assert_non_null(strstr(res2.detail, "no IPv4 or IPv6 address"));
    syn_resolver_free(r);
    ev_loop_destroy(loop);
}

static void test_order_and_dedup(void **state) {
    (void)state;
    struct ev_loop *loop = new_loop();
    struct hook_ctx h;
    hook_init(&h);
    const char *in[] = {"2001:db8::a", "192.0.2.1", "2001:db8::a", "192.0.2.2",
                        "192.0.2.1",   "::1",       "192.0.2.3"};
    h.count = (int)(sizeof(in) / sizeof(in[0]));
    for (int i = 0; i < h.count; i++)
        set_addr(&h.addrs[i], in[i]);
    syn_resolver *r = syn_resolver_new(loop, test_hook, &h);
    struct result res = {.r = r};
    assert_int_equal(syn_resolver_start(r, "mixed.example", 4433, on_result, &res), 0);
    ev_run(loop, 0);
    assert_int_equal(res.rv, 0);
    const char *want[] = {"192.0.2.1", "192.0.2.2", "192.0.2.3", "2001:db8::a", "::1"};
    assert_int_equal(res.n, 5);
    for (size_t i = 0; i < res.n; i++) {
        char buf[64];
        assert_string_equal(addr_str(&res.addrs[i], buf, sizeof(buf)), want[i]);
        assert_int_equal(addr_port(&res.addrs[i]), 4433);
    }
    assert_ordered_unique(&res);

    /* Duplicates do not crowd out distinct addresses: the hook has room for more than the result.
     */
    assert_int_equal(h.last_max, 4 * SYN_RESOLVE_MAX);
    h.count = 3 * SYN_RESOLVE_MAX;
    for (int i = 0; i < h.count; i++) {
        char ip[32];
        if (i < 2 * SYN_RESOLVE_MAX) /* 2001:db8::1..2001:db8::20, then 10.0.0.1..10.0.0.16 */
            snprintf(ip, sizeof(ip), "2001:db8::%x", i + 1);
        else
            snprintf(ip, sizeof(ip), "10.0.0.%d", i - 2 * SYN_RESOLVE_MAX + 1);
        set_addr(&h.addrs[i], ip);
    }
    /* A hook claiming more entries than max is clamped to max (the rest are empty here). */
    h.report = 1000;
    struct result res2 = {.r = r};
    assert_int_equal(syn_resolver_start(r, "many.example", 1, on_result, &res2), 0);
    ev_run(loop, 0);
    assert_int_equal(res2.rv, 0);
    assert_int_equal(res2.n, SYN_RESOLVE_MAX); /* the 16 IPv4 addresses come first and fill it */
    for (size_t i = 0; i < res2.n; i++) {
        char want4[32], buf[64];
        snprintf(want4, sizeof(want4), "10.0.0.%zu", i + 1);
        assert_string_equal(addr_str(&res2.addrs[i], buf, sizeof(buf)), want4);
    }
    syn_resolver_free(r);
    ev_loop_destroy(loop);
}

static void on_guard(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

static void test_real_failure(void **state) {
    (void)state;
    /* Real getaddrinfo on a reserved name: fails fast here (no network), but must not be required
     * to: if no answer comes within 5 s the lookup is cancelled and the check skipped. */
    struct ev_loop *loop = new_loop();
    syn_resolver *r = syn_resolver_new(loop, NULL, NULL);
    struct result res = {.r = r};
    assert_int_equal(syn_resolver_start(r, "name.invalid", 443, on_result, &res), 0);
    ev_timer guard;
    ev_timer_init(&guard, on_guard, 5.0, 0.);
    ev_timer_start(loop, &guard);
    ev_unref(loop); /* the guard alone must not keep the loop running */
    ev_run(loop, 0);
    ev_ref(loop);
    ev_timer_stop(loop, &guard);
    if (res.calls == 0) {
        syn_resolver_free(r);
        ev_loop_destroy(loop);
        skip();
    }
    assert_int_equal(res.rv, SYNESIS_ERR_DNS);
    assert_true(strncmp(res.detail, "cannot resolve 'name.invalid': ", 31) == 0);
    assert_true(strlen(res.detail) > 31);
    syn_resolver_free(r);
    ev_loop_destroy(loop);
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    (*(int *)w->data)++;
}

static void test_slow_lookup_does_not_block_loop(void **state) {
    (void)state;
    struct ev_loop *loop = new_loop();
    struct hook_ctx h;
    hook_init(&h);
    h.sleep_ms = 2000;
    h.count = 1;
    set_addr(&h.addrs[0], "192.0.2.9");
    syn_resolver *r = syn_resolver_new(loop, test_hook, &h);
    int ticks = 0;
    ev_timer tick;
    ev_timer_init(&tick, on_tick, 0.010, 0.010);
    tick.data = &ticks;
    ev_timer_start(loop, &tick);
    struct result res = {.r = r, .tick_counter = &ticks, .stop_timer = &tick, .loop = loop};
    assert_int_equal(syn_resolver_start(r, "sleep.example", 443, on_result, &res), 0);
    ev_run(loop, 0); /* ends when the result stopped the ticker */
    assert_int_equal(res.calls, 1);
    assert_int_equal(res.rv, 0);
    assert_true(res.ticks >= 50);
    syn_resolver_free(r);
    wait_hook_returned(&h, 1);
    ev_loop_destroy(loop);
}

static void test_cancel_in_flight(void **state) {
    (void)state;
    struct ev_loop *loop = new_loop();
    struct hook_ctx h;
    hook_init(&h);
    h.count = 1;
    set_addr(&h.addrs[0], "192.0.2.1");
    syn_resolver *r = syn_resolver_new(loop, test_hook, &h);
    struct result res = {.r = r};
    assert_int_equal(syn_resolver_start(r, "slow.example", 443, on_result, &res), 0);
    assert_int_equal(syn_resolver_active(r), 1);
    syn_resolver_cancel(r);
    assert_int_equal(syn_resolver_active(r), 0);
    syn_resolver_cancel(r); /* twice is harmless */
    ev_run(loop, 0);        /* nothing keeps the loop alive */
    atomic_store(&h.gate_open, 1);
    wait_hook_returned(&h, 1);
    ev_run(loop, EVRUN_NOWAIT);
    ev_run(loop, 0);
    assert_int_equal(res.calls, 0);
    assert_int_equal(atomic_load(&h.calls), 1);
    /* The resolver is still usable. */
    struct result res2 = {.r = r};
    assert_int_equal(syn_resolver_start(r, "after.example", 1, on_result, &res2), 0);
    ev_run(loop, 0);
    assert_int_equal(res2.calls, 1);
    assert_int_equal(res2.rv, 0);
    wait_hook_returned(&h, 2);
    syn_resolver_free(r);
    ev_loop_destroy(loop);
}

static void test_free_in_flight(void **state) {
    (void)state;
    struct ev_loop *loop = new_loop();
    struct hook_ctx h;
    hook_init(&h);
    syn_resolver *r = syn_resolver_new(loop, test_hook, &h);
    struct result res = {.r = r};
    assert_int_equal(syn_resolver_start(r, "slow.example", 443, on_result, &res), 0);
    syn_resolver_free(r); /* the thread outlives the resolver and frees the lookup */
    ev_run(loop, 0);
    atomic_store(&h.gate_open, 1);
    wait_hook_returned(&h, 1);
    ev_run(loop, EVRUN_NOWAIT);
    assert_int_equal(res.calls, 0);
    ev_loop_destroy(loop);
}

static void test_restart_cancels_previous(void **state) {
    (void)state;
    struct ev_loop *loop = new_loop();
    struct hook_ctx h;
    hook_init(&h);
    h.count = 1;
    set_addr(&h.addrs[0], "192.0.2.1");
    syn_resolver *r = syn_resolver_new(loop, test_hook, &h);
    struct result first = {.r = r}, second = {.r = r};
    assert_int_equal(syn_resolver_start(r, "slow.example", 443, on_result, &first), 0);
    assert_int_equal(syn_resolver_start(r, "fast.example", 443, on_result, &second), 0);
    ev_run(loop, 0);
    assert_int_equal(second.calls, 1);
    assert_int_equal(second.rv, 0);
    atomic_store(&h.gate_open, 1);
    wait_hook_returned(&h, 2);
    ev_run(loop, EVRUN_NOWAIT);
    assert_int_equal(first.calls, 0);
    assert_int_equal(second.calls, 1);
    syn_resolver_free(r);
    ev_loop_destroy(loop);
}

static void test_late_wakeups_are_ignored(void **state) {
    (void)state;
    struct ev_loop *loop = new_loop();
    struct hook_ctx h;
    hook_init(&h);
    h.count = 1;
    set_addr(&h.addrs[0], "192.0.2.1");
    syn_resolver *r = syn_resolver_new(loop, test_hook, &h);

    /* A lookup that finished (and woke the loop) but is cancelled before the loop ran. */
    struct result a = {.r = r};
    assert_int_equal(syn_resolver_start(r, "fast.example", 443, on_result, &a), 0);
    wait_hook_returned(&h, 1);
    syn_resolver_cancel(r);
    ev_run(loop, 0);
    assert_int_equal(a.calls, 0);

    /* The same, followed by a new lookup still in flight when the stale wake-up is handled. */
    struct result b = {.r = r}, c = {.r = r};
    assert_int_equal(syn_resolver_start(r, "fast.example", 443, on_result, &b), 0);
    wait_hook_returned(&h, 2);
    assert_int_equal(syn_resolver_start(r, "slow.example", 443, on_result, &c), 0);
    ev_run(loop, EVRUN_NOWAIT);
    assert_int_equal(b.calls, 0);
    assert_int_equal(c.calls, 0);
    assert_int_equal(syn_resolver_active(r), 1);
    atomic_store(&h.gate_open, 1);
    ev_run(loop, 0);
    assert_int_equal(b.calls, 0);
    assert_int_equal(c.calls, 1);
    wait_hook_returned(&h, 3);
    syn_resolver_free(r);
    ev_loop_destroy(loop);
}

static void test_free_from_callback(void **state) {
    (void)state;
    struct ev_loop *loop = new_loop();
    struct hook_ctx h;
    hook_init(&h);
    h.count = 1;
    set_addr(&h.addrs[0], "192.0.2.1");
    /* From a threaded lookup's callback. */
    syn_resolver *r = syn_resolver_new(loop, test_hook, &h);
    struct result res = {.r = r, .free_in_cb = 1};
    assert_int_equal(syn_resolver_start(r, "fast.example", 443, on_result, &res), 0);
    ev_run(loop, 0);
    assert_int_equal(res.calls, 1);
    wait_hook_returned(&h, 1);
    /* From a literal's callback. */
    r = syn_resolver_new(loop, test_hook, &h);
    struct result res2 = {.r = r, .free_in_cb = 1};
    assert_int_equal(syn_resolver_start(r, "::1", 443, on_result, &res2), 0);
    ev_run(loop, 0);
    assert_int_equal(res2.calls, 1);
    ev_loop_destroy(loop);
}

static void test_restart_from_callback(void **state) {
    (void)state;
    struct ev_loop *loop = new_loop();
    struct hook_ctx h;
    hook_init(&h);
    h.fail = 1;
    syn_resolver *r = syn_resolver_new(loop, test_hook, &h);
    struct result second = {.r = r};
    struct result first = {.r = r, .restart_host = "127.0.0.1", .restart_into = &second};
    assert_int_equal(syn_resolver_start(r, "fails.example", 443, on_result, &first), 0);
    ev_run(loop, 0); /* runs until the retry's result too */
    assert_int_equal(first.calls, 1);
    assert_int_equal(first.rv, SYNESIS_ERR_DNS);
    assert_int_equal(second.calls, 1);
    assert_int_equal(second.rv, 0);
    assert_int_equal(addr_port(&second.addrs[0]), 7);
    wait_hook_returned(&h, 1);
    syn_resolver_free(r);
    ev_loop_destroy(loop);
}

static void test_two_resolvers_one_loop(void **state) {
    (void)state;
    struct ev_loop *loop = new_loop();
    struct hook_ctx h;
    hook_init(&h);
    h.count = 1;
    set_addr(&h.addrs[0], "192.0.2.1");
    syn_resolver *r1 = syn_resolver_new(loop, test_hook, &h);
    syn_resolver *r2 = syn_resolver_new(loop, NULL, NULL);
    struct result a = {.r = r1}, b = {.r = r2};
    assert_int_equal(syn_resolver_start(r1, "one.example", 1, on_result, &a), 0);
    assert_int_equal(syn_resolver_start(r2, "localhost", 2, on_result, &b), 0);
    ev_run(loop, 0);
    assert_int_equal(a.calls, 1);
    assert_int_equal(b.calls, 1);
    assert_int_equal(a.rv, 0);
    assert_int_equal(b.rv, 0);
    assert_int_equal(addr_port(&a.addrs[0]), 1);
    assert_int_equal(addr_port(&b.addrs[0]), 2);
    wait_hook_returned(&h, 1);
    syn_resolver_free(r1);
    syn_resolver_free(r2);
    ev_loop_destroy(loop);
}

static void test_thread_start_failure(void **state) {
    (void)state;
    struct ev_loop *loop = new_loop();
    syn_resolver *r = syn_resolver_new(loop, NULL, NULL);
    syn_resolver_test_spawn_error(r, EAGAIN);
    struct result res = {.r = r};
    assert_int_equal(syn_resolver_start(r, "localhost", 443, on_result, &res), 0);
    assert_int_equal(res.calls, 0);
    ev_run(loop, 0);
    assert_int_equal(res.calls, 1);
    assert_int_equal(res.rv, SYNESIS_ERR_DNS);
    char want[256];
    snprintf(want, sizeof(want), "cannot resolve 'localhost': cannot start a resolver thread: %s",
             strerror(EAGAIN));
    assert_string_equal(res.detail, want);
    /* Only the next start fails. */
    struct result res2 = {.r = r};
    assert_int_equal(syn_resolver_start(r, "localhost", 443, on_result, &res2), 0);
    ev_run(loop, 0);
    assert_int_equal(res2.rv, 0);
    syn_resolver_test_spawn_error(NULL, EAGAIN);
    syn_resolver_free(r);
    ev_loop_destroy(loop);
}

static void test_resource_failures(void **state) {
    (void)state;
    struct ev_loop *loop = new_loop();
    fail_calloc_in = 1;
    assert_null(syn_resolver_new(loop, NULL, NULL));
    syn_resolver *r = syn_resolver_new(loop, NULL, NULL);
    assert_non_null(r);

    /* No memory for the lookup: reported at once, and the previous lookup is cancelled. */
    struct result a = {.r = r}, b = {.r = r};
    assert_int_equal(syn_resolver_start(r, "::1", 1, on_result, &a), 0);
    fail_calloc_in = 1;
    assert_int_equal(syn_resolver_start(r, "::1", 1, on_result, &b), SYNESIS_ERR_NOMEM);
    assert_int_equal(syn_resolver_active(r), 0);
    fail_mutex_in = 1;
    assert_int_equal(syn_resolver_start(r, "::1", 1, on_result, &b), SYNESIS_ERR_NOMEM);
    assert_int_equal(syn_resolver_active(r), 0);
    ev_run(loop, 0);
    assert_int_equal(a.calls + b.calls, 0);

    /* Thread attributes unavailable: a transient DNS failure through the callback. */
    fail_attr_in = 1;
    assert_int_equal(syn_resolver_start(r, "localhost", 1, on_result, &b), 0);
    ev_run(loop, 0);
    assert_int_equal(b.calls, 1);
    assert_int_equal(b.rv, SYNESIS_ERR_DNS);
    assert_non_null(strstr(b.detail, "cannot start a resolver thread: "));
    syn_resolver_free(r);
    ev_loop_destroy(loop);
}

static void test_invalid_arguments(void **state) {
    (void)state;
    struct ev_loop *loop = new_loop();
    assert_null(syn_resolver_new(NULL, NULL, NULL));
    syn_resolver *r = syn_resolver_new(loop, NULL, NULL);
    struct result res = {.r = r};
    char longhost[300];
    memset(longhost, 'a', sizeof(longhost));
    longhost[256] = '\0';
    assert_int_equal(syn_resolver_start(NULL, "localhost", 1, on_result, &res),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(syn_resolver_start(r, NULL, 1, on_result, &res), SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(syn_resolver_start(r, "localhost", 1, NULL, &res),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(syn_resolver_start(r, "", 1, on_result, &res), SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(syn_resolver_start(r, longhost, 1, on_result, &res),
                     SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(syn_resolver_active(r), 0);
    assert_int_equal(syn_resolver_active(NULL), 0);
    syn_resolver_cancel(NULL);
    syn_resolver_free(NULL);
    ev_run(loop, 0); /* an idle resolver does not keep the loop alive */
    assert_int_equal(res.calls, 0);
    syn_resolver_free(r);
    ev_loop_destroy(loop);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_localhost),
        cmocka_unit_test(test_ip_literals),
        cmocka_unit_test(test_hook_failure),
        cmocka_unit_test(test_hook_no_usable_address),
        cmocka_unit_test(test_order_and_dedup),
        cmocka_unit_test(test_real_failure),
        cmocka_unit_test(test_slow_lookup_does_not_block_loop),
        cmocka_unit_test(test_cancel_in_flight),
        cmocka_unit_test(test_free_in_flight),
        cmocka_unit_test(test_restart_cancels_previous),
        cmocka_unit_test(test_late_wakeups_are_ignored),
        cmocka_unit_test(test_free_from_callback),
        cmocka_unit_test(test_restart_from_callback),
        cmocka_unit_test(test_two_resolvers_one_loop),
        cmocka_unit_test(test_thread_start_failure),
        cmocka_unit_test(test_resource_failures),
        cmocka_unit_test(test_invalid_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The reconnect policy (src/backoff.c) on its own: schedule, cap, limit, reset, jitter, clamping.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <ev.h>

#include "backoff.h"
#include "synesis/tunnel.h"

/* Doubles compared as doubles (cmocka's assert_float_equal rounds to float). */
#define assert_dbl(a, b, eps) assert_dbl_((a), (b), (eps), __FILE__, __LINE__)
static void assert_dbl_(double a, double b, double eps, const char *file, int line) {
    double diff = a > b ? a - b : b - a;
    if (!(diff <= eps))
        fail_msg("%s:%d: %.17g != %.17g (eps %g)", file, line, a, b, eps);
}

/* The design's defaults with no jitter: 1, 2, 4, ... capped at 60, ten attempts, then refused. */
static void test_default_schedule(void **state) {
    (void)state;
    syn_backoff b;
    syn_backoff_init(&b, 1.0, 60.0, 2.0, 0.0, 10, 1);
    static const double expected[10] = {1, 2, 4, 8, 16, 32, 60, 60, 60, 60};
    for (uint32_t i = 0; i < 10; i++) {
        double d = -1;
        uint32_t a = 0;
        assert_int_equal(syn_backoff_next(&b, &d, &a), 0);
        assert_int_equal(a, i + 1);
        if (d != expected[i])
            fail_msg("attempt %u: delay %.17g, expected %.17g", a, d, expected[i]);
    }
    /* The eleventh is refused, and refusing changes nothing: neither the outputs nor the count. */
    double d = -7;
    uint32_t a = 77;
    assert_int_equal(syn_backoff_next(&b, &d, &a), SYNESIS_ERR_MAX_RECONNECTS);
    assert_true(d == -7);
    assert_int_equal(a, 77);
    assert_int_equal(b.attempts, 10);
    assert_int_equal(syn_backoff_next(&b, &d, &a), SYNESIS_ERR_MAX_RECONNECTS);
    assert_int_equal(b.attempts, 10);
}

/* The short schedule the integration tests use: 0.02, 0.04, 0.08, then the 0.1 cap. */
static void test_short_schedule_and_cap(void **state) {
    (void)state;
    syn_backoff b;
    syn_backoff_init(&b, 0.02, 0.1, 2.0, 0.0, 4, 5);
    static const double expected[4] = {0.02, 0.04, 0.08, 0.1};
    for (uint32_t i = 0; i < 4; i++) {
        double d;
        uint32_t a;
        assert_int_equal(syn_backoff_next(&b, &d, &a), 0);
        assert_int_equal(a, i + 1);
        assert_dbl(d, expected[i], 1e-12);
        assert_true(d <= 0.1);
    }
    double d;
    uint32_t a;
    assert_int_equal(syn_backoff_next(&b, &d, &a), SYNESIS_ERR_MAX_RECONNECTS);
}

/* A non-integer multiplier grows geometrically until the cap. */
static void test_fractional_multiplier(void **state) {
    (void)state;
    syn_backoff b;
    syn_backoff_init(&b, 0.5, 3.0, 1.5, 0.0, 8, 1);
    double want = 0.5;
    for (uint32_t i = 1; i <= 8; i++) {
        double d;
        uint32_t a;
        assert_int_equal(syn_backoff_next(&b, &d, &a), 0);
        assert_int_equal(a, i);
        assert_dbl(d, want, 1e-12);
        want = want * 1.5 > 3.0 ? 3.0 : want * 1.5;
    }
}

/* After a success the schedule starts over from the first attempt and the initial delay, also
 * after it had been exhausted. */
static void test_reset_starts_over(void **state) {
    (void)state;
    syn_backoff b;
    syn_backoff_init(&b, 1.0, 60.0, 2.0, 0.0, 3, 1);
    double d;
    uint32_t a;
    for (int i = 0; i < 2; i++)
        assert_int_equal(syn_backoff_next(&b, &d, &a), 0);
    assert_dbl(d, 2.0, 0);
    syn_backoff_reset(&b);
    assert_int_equal(syn_backoff_next(&b, &d, &a), 0);
    assert_int_equal(a, 1);
    assert_dbl(d, 1.0, 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(syn_backoff_next(&b, &d, &a), 0);
    assert_int_equal(a, 3);
    assert_dbl(d, 4.0, 0);
    assert_int_equal(syn_backoff_next(&b, &d, &a), SYNESIS_ERR_MAX_RECONNECTS);
    syn_backoff_reset(&b);
    assert_int_equal(syn_backoff_next(&b, &d, &a), 0);
    assert_int_equal(a, 1);
    assert_dbl(d, 1.0, 0);
}

/* max_attempts 0: nothing is ever scheduled. */
static void test_zero_attempts(void **state) {
    (void)state;
    syn_backoff b;
    syn_backoff_init(&b, 1.0, 60.0, 2.0, 0.0, 0, 1);
    double d = 0;
    uint32_t a = 0;
    assert_int_equal(syn_backoff_next(&b, &d, &a), SYNESIS_ERR_MAX_RECONNECTS);
    assert_int_equal(a, 0);
}

/* Jitter scales each delay by (1 + j*u), u uniform in [-1, 1]: within d*(1-j) .. d*(1+j) around
 * the un-jittered schedule (which it does not disturb), spanning that range, and the same
 * sequence for the same seed. */
static void test_jitter_bounds_and_determinism(void **state) {
    (void)state;
    const double jitter = 0.5;
    syn_backoff b1, b2, b3;
    syn_backoff_init(&b1, 1.0, 60.0, 2.0, jitter, 1000, 42);
    syn_backoff_init(&b2, 1.0, 60.0, 2.0, jitter, 1000, 42);
    syn_backoff_init(&b3, 1.0, 60.0, 2.0, jitter, 1000, 43);
    double base = 1.0;
    int differs = 0, above_base = 0, below_base = 0;
    double lo_frac = 1, hi_frac = -1;
    for (uint32_t i = 1; i <= 1000; i++) {
        double d1, d2, d3;
        uint32_t a1, a2, a3;
        assert_int_equal(syn_backoff_next(&b1, &d1, &a1), 0);
        assert_int_equal(syn_backoff_next(&b2, &d2, &a2), 0);
        assert_int_equal(syn_backoff_next(&b3, &d3, &a3), 0);
        assert_int_equal(a1, i);
        assert_int_equal(a3, i);
        if (!(d1 >= base * (1 - jitter) && d1 <= base * (1 + jitter)))
            fail_msg("attempt %u: %.17g outside [%g, %g]", i, d1, base * (1 - jitter),
                     base * (1 + jitter));
        assert_true(d3 >= base * (1 - jitter) && d3 <= base * (1 + jitter));
        assert_true(d1 == d2); /* same seed, same sequence */
        if (d1 != d3)
            differs++;
        if (d1 > base)
            above_base++;
        if (d1 < base)
            below_base++;
        double frac = (d1 - base) / (base * jitter); /* u, in [-1, 1] */
        if (frac < lo_frac)
            lo_frac = frac;
        if (frac > hi_frac)
            hi_frac = frac;
        base = base * 2 > 60 ? 60 : base * 2;
    }
    /* Another seed gives another sequence; the jitter is really random, symmetric, and spans its
     * range. */
    assert_true(differs > 900);
    assert_true(above_base > 400 && below_base > 400);
    assert_true(lo_frac < -0.95);
    assert_true(hi_frac > 0.95);
    /* A seed of 0 is replaced, not used as a stuck all-zero xorshift state. */
    syn_backoff z;
    syn_backoff_init(&z, 1.0, 1.0, 1.0, 1.0, 100, 0);
    int z_moved = 0;
    for (int i = 0; i < 100; i++) {
        double d;
        uint32_t a;
        assert_int_equal(syn_backoff_next(&z, &d, &a), 0);
        assert_true(d >= 0.0 && d <= 2.0);
        if (d != 1.0)
            z_moved++;
    }
    assert_true(z_moved > 90);
}

/* The default jitter (0.1) keeps the design's schedule as the centre: over many draws the mean of
 * each attempt's delay stays at 1, 2, 4, ... 60 s, every draw within +/- 10 %; and two tunnels
 * (two seeds) never draw the same schedule, so devices that lost one edge do not retry in step. */
static void test_default_jitter_centred(void **state) {
    (void)state;
    synesis_tunnel_config cfg;
    synesis_tunnel_config_init(&cfg);
    assert_dbl(cfg.reconnect_jitter, 0.1, 0);
    static const double centre[10] = {1, 2, 4, 8, 16, 32, 60, 60, 60, 60};
    double sum[10] = {0};
    const int runs = 20000;
    int identical = 0;
    double prev[10] = {0};
    for (int r = 0; r < runs; r++) {
        syn_backoff b;
        syn_backoff_init(&b, cfg.reconnect_initial_delay, cfg.reconnect_max_delay,
                         cfg.reconnect_multiplier, cfg.reconnect_jitter, cfg.reconnect_max_attempts,
                         0x1234567ull + (uint64_t)r * 0x9e3779b97f4a7c15ull);
        int same = 1;
        for (int i = 0; i < 10; i++) {
            double d;
            uint32_t a;
            assert_int_equal(syn_backoff_next(&b, &d, &a), 0);
            if (!(d >= centre[i] * 0.9 && d <= centre[i] * 1.1))
                fail_msg("run %d attempt %d: %.17g outside +/-10%% of %g", r, i + 1, d, centre[i]);
            sum[i] += d;
            if (d != prev[i])
                same = 0;
            prev[i] = d;
        }
        if (r > 0 && same)
            identical++;
    }
    assert_int_equal(identical, 0);
    for (int i = 0; i < 10; i++) {
        /* Standard error of the mean of u*0.1*c over 20000 draws is c*0.1/sqrt(3*20000) ~ 4e-4 c:
         * 0.5 % of c is over 10 standard errors. */
        double mean = sum[i] / runs;
        if (mean < centre[i] * 0.995 || mean > centre[i] * 1.005)
            fail_msg("attempt %d: mean %.6f, centre %g", i + 1, mean, centre[i]);
    }
}

/* Reset does not rewind the random stream, but does restart the un-jittered schedule. */
static void test_jitter_after_reset(void **state) {
    (void)state;
    syn_backoff b;
    syn_backoff_init(&b, 2.0, 100.0, 3.0, 0.25, 5, 9);
    double d;
    uint32_t a;
    for (int i = 0; i < 5; i++)
        assert_int_equal(syn_backoff_next(&b, &d, &a), 0);
    syn_backoff_reset(&b);
    assert_int_equal(syn_backoff_next(&b, &d, &a), 0);
    assert_int_equal(a, 1);
    assert_true(d >= 1.5 && d <= 2.5);
    assert_int_equal(syn_backoff_next(&b, &d, &a), 0);
    assert_true(d >= 4.5 && d <= 7.5);
}

/* What the manager does with values the tunnel's config check would refuse: multiplier < 1 is
 * taken as 1 (constant delays, never shrinking), max < initial as max = initial, negative jitter
 * as none. */
static void test_clamping(void **state) {
    (void)state;
    syn_backoff b;
    syn_backoff_init(&b, 4.0, 60.0, 0.5, 0.0, 5, 1);
    assert_dbl(b.multiplier, 1.0, 0);
    for (uint32_t i = 1; i <= 5; i++) {
        double d;
        uint32_t a;
        assert_int_equal(syn_backoff_next(&b, &d, &a), 0);
        assert_int_equal(a, i);
        assert_dbl(d, 4.0, 0);
    }

    syn_backoff_init(&b, 5.0, 2.0, 2.0, 0.0, 4, 1);
    assert_dbl(b.max, 5.0, 0);
    for (int i = 0; i < 4; i++) {
        double d;
        uint32_t a;
        assert_int_equal(syn_backoff_next(&b, &d, &a), 0);
        assert_dbl(d, 5.0, 0); /* never below initial, never above the clamped max */
    }

    syn_backoff_init(&b, 1.0, 8.0, 2.0, -0.5, 4, 1);
    assert_dbl(b.jitter, 0.0, 0);
    static const double expected[4] = {1, 2, 4, 8};
    for (int i = 0; i < 4; i++) {
        double d;
        uint32_t a;
        assert_int_equal(syn_backoff_next(&b, &d, &a), 0);
        assert_dbl(d, expected[i], 0);
    }

    /* An initial delay of 0 stays 0: retry at once, every time. */
    syn_backoff_init(&b, 0.0, 10.0, 2.0, 0.0, 3, 1);
    for (int i = 0; i < 3; i++) {
        double d = -1;
        uint32_t a;
        assert_int_equal(syn_backoff_next(&b, &d, &a), 0);
        assert_dbl(d, 0.0, 0);
    }
}

/* A large attempt budget with a big multiplier never overflows past the cap. */
static void test_no_overflow(void **state) {
    (void)state;
    syn_backoff b;
    syn_backoff_init(&b, 1.0, 60.0, 1e10, 0.0, 100000, 1);
    for (uint32_t i = 1; i <= 100000; i++) {
        double d;
        uint32_t a;
        assert_int_equal(syn_backoff_next(&b, &d, &a), 0);
        assert_int_equal(a, i);
        assert_true(d == (i == 1 ? 1.0 : 60.0));
    }
    double d;
    uint32_t a;
    assert_int_equal(syn_backoff_next(&b, &d, &a), SYNESIS_ERR_MAX_RECONNECTS);
}

/* The tunnel itself refuses, at synesis_tunnel_new(), the policies the manager would clamp (the
 * configuration is checked before any certificate is loaded, so none is needed here). */
static void test_tunnel_refuses_bad_policy(void **state) {
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    assert_non_null(loop);
    struct {
        double initial, max, multiplier, jitter;
    } bad[] = {
        {1.0,  60.0, 0.5, 0.0 }, /* multiplier < 1 */
        {5.0,  2.0,  2.0, 0.0 }, /* max < initial */
        {-1.0, 60.0, 2.0, 0.0 }, /* negative initial */
        {1.0,  60.0, 2.0, -0.1}, /* negative jitter */
        {1.0,  60.0, 2.0, 1.5 }, /* jitter > 1 */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        synesis_tunnel_config cfg;
        synesis_tunnel_config_init(&cfg);
        cfg.reconnect_initial_delay = bad[i].initial;
        cfg.reconnect_max_delay = bad[i].max;
        cfg.reconnect_multiplier = bad[i].multiplier;
        cfg.reconnect_jitter = bad[i].jitter;
        synesis_tunnel *t = (synesis_tunnel *)&cfg; /* must be reset to NULL */
        char detail[512] = "";
        assert_int_equal(synesis_tunnel_new(&t, loop, &cfg, NULL, NULL, detail, sizeof(detail)),
                         SYNESIS_ERR_INVALID_ARGUMENT);
        assert_null(t);
        if (!strstr(detail, "reconnect"))
            fail_msg("case %zu: %s", i, detail);
    }
    assert_int_equal(ev_run(loop, EVRUN_NOWAIT), 0);
    ev_loop_destroy(loop);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_schedule),
        cmocka_unit_test(test_short_schedule_and_cap),
        cmocka_unit_test(test_fractional_multiplier),
        cmocka_unit_test(test_reset_starts_over),
        cmocka_unit_test(test_zero_attempts),
        cmocka_unit_test(test_jitter_bounds_and_determinism),
        cmocka_unit_test(test_default_jitter_centred),
        cmocka_unit_test(test_jitter_after_reset),
        cmocka_unit_test(test_clamping),
        cmocka_unit_test(test_no_overflow),
        cmocka_unit_test(test_tunnel_refuses_bad_policy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

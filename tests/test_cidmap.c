/* The edge's connection-ID table (src/edge/cidmap.c): SipHash, add/find/remove, growth and
 * shrinking, per-connection lists. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "edge/cidmap.h"
#include "qconn.h"

/* The reference vector of the SipHash paper: key 00..0f, message 00..0e. */
static void test_siphash_vector(void **state) {
    (void)state;
    uint8_t msg[15];
    for (int i = 0; i < 15; i++)
        msg[i] = (uint8_t)i;
    uint64_t k0 = 0x0706050403020100ull, k1 = 0x0f0e0d0c0b0a0908ull;
    assert_true(syn_siphash24(k0, k1, msg, 15) == 0xa129ca6149be45e5ull);
    assert_true(syn_siphash24(k0, k1, msg, 0) == 0x726fdb47dd0e0e31ull);
}

/* The IDs the edge issues are SYN_SV_SCIDLEN (8) bytes; a client's first Initial picks its own
 * DCID (8 to 20 bytes), which the edge maps too until the client uses the edge's IDs. */
#define EDGE_LEN SYN_SV_SCIDLEN

static void make_cid(uint8_t *cid, unsigned i) {
    memset(cid, 0xa5, SYN_CIDMAP_MAXLEN);
    memcpy(cid, &i, sizeof(i));
}

static void test_add_find_remove(void **state) {
    (void)state;
    syn_cidmap m;
    assert_int_equal(syn_cidmap_init(&m), 0);
    syn_cidmap_list la = {0}, lb = {0};
    int a, b;
    uint8_t cid[SYN_CIDMAP_MAXLEN];
    enum { N = 5000, L = EDGE_LEN };
    for (unsigned i = 0; i < N; i++) {
        make_cid(cid, i);
        assert_int_equal(
            syn_cidmap_add(&m, cid, L, i % 2 ? (void *)&a : (void *)&b, i % 2 ? &la : &lb), 0);
    }
    assert_int_equal(syn_cidmap_count(&m), N);
    assert_int_equal(la.n + lb.n, N);
    assert_true(m.nbuckets >= N);
    make_cid(cid, 7);
    assert_int_equal(syn_cidmap_add(&m, cid, L, &b, &lb), 1); /* duplicate: the first stays */
    assert_ptr_equal(syn_cidmap_find(&m, cid, L), &a);
    /* Length is part of the key: a client's Initial DCID of 18 or 20 bytes that starts with an
     * edge ID's 8 bytes is another ID (the edge maps it for the new connection). */
    assert_null(syn_cidmap_find(&m, cid, L - 1));
    assert_null(syn_cidmap_find(&m, cid, 18));
    int c;
    syn_cidmap_list lc = {0};
    assert_int_equal(syn_cidmap_add(&m, cid, 18, &c, &lc), 0);
    assert_int_equal(syn_cidmap_add(&m, cid, SYN_CIDMAP_MAXLEN, &c, &lc), 0);
    assert_ptr_equal(syn_cidmap_find(&m, cid, 18), &c);
    assert_ptr_equal(syn_cidmap_find(&m, cid, L), &a);
    syn_cidmap_remove_list(&m, &lc);
    assert_ptr_equal(syn_cidmap_find(&m, cid, L), &a);
    assert_int_equal(syn_cidmap_remove(&m, cid, L), 1);
    assert_int_equal(syn_cidmap_remove(&m, cid, L), 0);
    assert_null(syn_cidmap_find(&m, cid, L));
    assert_int_equal(la.n, N / 2 - 1);
    /* A connection's IDs go at once; the others stay; the table shrinks. */
    size_t before = m.nbuckets;
    syn_cidmap_remove_list(&m, &la);
    assert_null(la.head);
    assert_int_equal(la.n, 0);
    assert_int_equal(syn_cidmap_count(&m), N / 2);
    for (unsigned i = 0; i < N; i++) {
        make_cid(cid, i);
        assert_ptr_equal(syn_cidmap_find(&m, cid, L), i % 2 ? NULL : (void *)&b);
    }
    syn_cidmap_remove_list(&m, &lb);
    assert_int_equal(syn_cidmap_count(&m), 0);
    assert_true(m.nbuckets < before);
    uint8_t big[21] = {0};
    assert_int_equal(syn_cidmap_add(&m, big, sizeof(big), &a, &la), -1);
    syn_cidmap_free(&m);
}

/* Two tables draw different keys: the bucket of an ID is not predictable from outside. */
static void test_keys_differ(void **state) {
    (void)state;
    syn_cidmap m1, m2;
    assert_int_equal(syn_cidmap_init(&m1), 0);
    assert_int_equal(syn_cidmap_init(&m2), 0);
    assert_false(m1.k0 == m2.k0 && m1.k1 == m2.k1);
    syn_cidmap_free(&m1);
    syn_cidmap_free(&m2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_siphash_vector),
        cmocka_unit_test(test_add_find_remove),
        cmocka_unit_test(test_keys_differ),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The generic containers on their own: the intrusive list (src/list.h) and the deferred release
 * (src/hold.h), which the tunnel, the driver, the modules and the edge all build on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "hold.h"
#include "list.h"

typedef struct item {
    int v;
    syn_link link;
    syn_link other; /* an object can be on two lists at once */
} item;

/* The values of l, first to last, into out (at most max); the count. Checks the back links. */
static size_t values(const syn_list *l, int *out, size_t max) {
    size_t n = 0;
    const syn_link *prev = NULL;
    for (const syn_link *k = l->first; k; k = k->next) {
        assert_ptr_equal(k->prev, prev);
        if (n < max)
            out[n] = SYN_LIST_ENTRY(k, const item, link)->v;
        n++;
        prev = k;
    }
    assert_ptr_equal(l->last, prev);
    return n;
}

static void assert_values(const syn_list *l, const int *want, size_t n) {
    int got[16];
    assert_int_equal(values(l, got, 16), n);
    for (size_t i = 0; i < n; i++)
        if (got[i] != want[i])
            fail_msg("position %zu: %d, expected %d", i, got[i], want[i]);
}

static void test_zeroed_is_empty(void **state) {
    (void)state;
    syn_list l;
    memset(&l, 0, sizeof(l));
    assert_true(syn_list_empty(&l));
    assert_null(SYN_LIST_FIRST(&l, item, link));
    item *it;
    int visits = 0;
    SYN_LIST_FOREACH(it, &l, item, link)
        visits++;
    assert_int_equal(visits, 0);
}

static void test_push_and_remove(void **state) {
    (void)state;
    syn_list l = {0};
    item a = {.v = 1}, b = {.v = 2}, c = {.v = 3}, d = {.v = 4};
    syn_list_push_back(&l, &b.link);
    syn_list_push_back(&l, &c.link);
    syn_list_push_front(&l, &a.link);
    syn_list_push_back(&l, &d.link);
    assert_values(&l, (int[]){1, 2, 3, 4}, 4);
    assert_ptr_equal(SYN_LIST_FIRST(&l, item, link), &a);
    assert_ptr_equal(SYN_LIST_NEXT(&a, item, link), &b);
    assert_null(SYN_LIST_NEXT(&d, item, link));

    syn_list_remove(&l, &b.link); /* middle */
    assert_values(&l, (int[]){1, 3, 4}, 3);
    assert_null(b.link.prev);
    assert_null(b.link.next);
    syn_list_remove(&l, &a.link); /* first */
    assert_values(&l, (int[]){3, 4}, 2);
    syn_list_remove(&l, &d.link); /* last */
    assert_values(&l, (int[]){3}, 1);
    syn_list_remove(&l, &c.link); /* only */
    assert_true(syn_list_empty(&l));
    assert_null(l.last);

    /* A removed object goes on again, at either end. */
    syn_list_push_front(&l, &c.link);
    syn_list_push_front(&l, &b.link);
    syn_list_push_back(&l, &d.link);
    assert_values(&l, (int[]){2, 3, 4}, 3);
}

static void test_two_lists(void **state) {
    (void)state;
    syn_list all = {0}, some = {0};
    item it[4];
    for (int i = 0; i < 4; i++) {
        memset(&it[i], 0, sizeof(it[i]));
        it[i].v = i;
        syn_list_push_back(&all, &it[i].link);
        if (i % 2)
            syn_list_push_front(&some, &it[i].other);
    }
    assert_values(&all, (int[]){0, 1, 2, 3}, 4);
    assert_ptr_equal(SYN_LIST_FIRST(&some, item, other), &it[3]);
    assert_ptr_equal(SYN_LIST_NEXT(&it[3], item, other), &it[1]);
    syn_list_remove(&some, &it[3].other);
    assert_values(&all, (int[]){0, 1, 2, 3}, 4); /* the other list is untouched */
    assert_ptr_equal(SYN_LIST_FIRST(&some, item, other), &it[1]);
}

/* The body may take the current object off (the way every owner frees its objects). */
static void test_foreach_safe_removes(void **state) {
    (void)state;
    syn_list l = {0};
    item it[6];
    for (int i = 0; i < 6; i++) {
        memset(&it[i], 0, sizeof(it[i]));
        it[i].v = i;
        syn_list_push_back(&l, &it[i].link);
    }
    item *x, *tmp;
    int seen = 0;
    SYN_LIST_FOREACH_SAFE(x, tmp, &l, item, link) {
        assert_int_equal(x->v, seen++);
        if (x->v % 2 == 0)
            syn_list_remove(&l, &x->link);
    }
    assert_int_equal(seen, 6);
    assert_values(&l, (int[]){1, 3, 5}, 3);
    SYN_LIST_FOREACH_SAFE(x, tmp, &l, item, link)
        syn_list_remove(&l, &x->link);
    assert_true(syn_list_empty(&l));
}

typedef struct obj {
    syn_hold hold;
    int released;
} obj;

/* Asks for the release; does it when nothing holds the object (as synesis_tunnel_free does). */
static void obj_free(obj *o) {
    if (syn_hold_release(&o->hold))
        o->released++;
}

/* Leaves a frame, releasing the object if it was the outermost one and a free was asked for (as
 * syn_tunnel_leave does). */
static void obj_leave(obj *o) {
    if (syn_hold_leave(&o->hold) && syn_hold_dying(&o->hold))
        o->released++;
}

/* The outermost frame's leave releases an object freed meanwhile, exactly once. */
static void test_hold_defers_to_outermost(void **state) {
    (void)state;
    obj o;
    memset(&o, 0, sizeof(o));
    assert_false(syn_hold_busy(&o.hold));
    assert_false(syn_hold_dying(&o.hold));

    syn_hold_enter(&o.hold);
    syn_hold_enter(&o.hold); /* a nested frame: a callback calling back in */
    obj_free(&o);
    assert_int_equal(o.released, 0);
    assert_true(syn_hold_dying(&o.hold));
    obj_free(&o);  /* asked twice: still one release */
    obj_leave(&o); /* inner frame: not the last */
    assert_int_equal(o.released, 0);
    assert_true(syn_hold_busy(&o.hold));
    obj_leave(&o); /* outermost */
    assert_int_equal(o.released, 1);
    assert_false(syn_hold_busy(&o.hold));
}

static void test_hold_free_when_not_held(void **state) {
    (void)state;
    obj o;
    memset(&o, 0, sizeof(o));
    obj_free(&o);
    assert_int_equal(o.released, 1);
    assert_false(syn_hold_dying(&o.hold));

    /* A frame that ends without a free: leave says it was the outermost, nothing is dying. */
    memset(&o, 0, sizeof(o));
    syn_hold_enter(&o.hold);
    assert_true(syn_hold_busy(&o.hold));
    assert_true(syn_hold_leave(&o.hold));
    assert_false(syn_hold_dying(&o.hold));
    assert_false(syn_hold_busy(&o.hold));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zeroed_is_empty),
        cmocka_unit_test(test_push_and_remove),
        cmocka_unit_test(test_two_lists),
        cmocka_unit_test(test_foreach_safe_removes),
        cmocka_unit_test(test_hold_defers_to_outermost),
        cmocka_unit_test(test_hold_free_when_not_held),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

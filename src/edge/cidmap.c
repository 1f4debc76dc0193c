/* The edge's connection-ID table (see cidmap.h). */
#include "cidmap.h"

#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

struct syn_cidmap_entry {
    syn_cidmap_entry *bnext;         /* bucket chain */
    syn_cidmap_entry *lprev, *lnext; /* the connection's list */
    syn_cidmap_list *list;
    void *value;
    uint8_t len;
    uint8_t cid[SYN_CIDMAP_MAXLEN];
};

#define MIN_BUCKETS 16

/* ---- SipHash-2-4 (Aumasson & Bernstein), little-endian words ---- */

static uint64_t rotl(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

static uint64_t load_le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = rotl(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = rotl(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = rotl(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = rotl(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = rotl(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = rotl(v2, 32);                                                                         \
    } while (0)

uint64_t syn_siphash24(uint64_t k0, uint64_t k1, const uint8_t *data, size_t len) {
    uint64_t v0 = 0x736f6d6570736575ull ^ k0;
    uint64_t v1 = 0x646f72616e646f6dull ^ k1;
    uint64_t v2 = 0x6c7967656e657261ull ^ k0;
    uint64_t v3 = 0x7465646279746573ull ^ k1;
    size_t full = len & ~(size_t)7;
    for (size_t i = 0; i < full; i += 8) {
        uint64_t m = load_le64(data + i);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (size_t i = 0; i < (len & 7); i++)
        b |= (uint64_t)data[full + i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- the table ---- */

int syn_cidmap_init(syn_cidmap *m) {
    memset(m, 0, sizeof(*m));
    uint8_t key[16];
    if (RAND_bytes(key, sizeof(key)) != 1)
        return -1;
    m->k0 = load_le64(key);
    m->k1 = load_le64(key + 8);
    return 0;
}

void syn_cidmap_free(syn_cidmap *m) {
    for (size_t i = 0; i < m->nbuckets; i++) {
        for (syn_cidmap_entry *e = m->buckets[i], *n; e; e = n) {
            n = e->bnext;
            free(e);
        }
    }
    free(m->buckets);
    m->buckets = NULL;
    m->nbuckets = m->count = 0;
}

static size_t bucket_of(const syn_cidmap *m, size_t nbuckets, const uint8_t *cid, size_t len) {
    return (size_t)(syn_siphash24(m->k0, m->k1, cid, len) & (nbuckets - 1));
}

/* Moves every entry into a new bucket array of n buckets; on failure the table stays as it is. */
static void resize(syn_cidmap *m, size_t n) {
    syn_cidmap_entry **nb = calloc(n, sizeof(*nb));
    if (!nb)
        return;
    for (size_t i = 0; i < m->nbuckets; i++) {
        for (syn_cidmap_entry *e = m->buckets[i], *next; e; e = next) {
            next = e->bnext;
            size_t b = bucket_of(m, n, e->cid, e->len);
            e->bnext = nb[b];
            nb[b] = e;
        }
    }
    free(m->buckets);
    m->buckets = nb;
    m->nbuckets = n;
}

static syn_cidmap_entry **slot(const syn_cidmap *m, const uint8_t *cid, size_t len) {
    if (!m->nbuckets)
        return NULL;
    syn_cidmap_entry **p = &m->buckets[bucket_of(m, m->nbuckets, cid, len)];
    for (; *p; p = &(*p)->bnext)
        if ((*p)->len == len && memcmp((*p)->cid, cid, len) == 0)
            return p;
    return NULL;
}

int syn_cidmap_add(syn_cidmap *m, const uint8_t *cid, size_t len, void *value,
                   syn_cidmap_list *list) {
    if (len > SYN_CIDMAP_MAXLEN)
        return -1;
    if (slot(m, cid, len))
        return 1;
    if (m->count >= m->nbuckets)
        resize(m, m->nbuckets ? m->nbuckets * 2 : MIN_BUCKETS);
    if (!m->nbuckets)
        return -1;
    syn_cidmap_entry *e = calloc(1, sizeof(*e));
    if (!e)
        return -1;
    memcpy(e->cid, cid, len);
    e->len = (uint8_t)len;
    e->value = value;
    size_t b = bucket_of(m, m->nbuckets, cid, len);
    e->bnext = m->buckets[b];
    m->buckets[b] = e;
    e->list = list;
    e->lnext = list->head;
    if (list->head)
        list->head->lprev = e;
    list->head = e;
    list->n++;
    m->count++;
    return 0;
}

void *syn_cidmap_find(const syn_cidmap *m, const uint8_t *cid, size_t len) {
    syn_cidmap_entry **p = slot(m, cid, len);
    return p ? (*p)->value : NULL;
}

static void unlink_entry(syn_cidmap *m, syn_cidmap_entry **p) {
    syn_cidmap_entry *e = *p;
    *p = e->bnext;
    if (e->lprev)
        e->lprev->lnext = e->lnext;
    else
        e->list->head = e->lnext;
    if (e->lnext)
        e->lnext->lprev = e->lprev;
    e->list->n--;
    free(e);
    m->count--;
}

static void maybe_shrink(syn_cidmap *m) {
    if (m->nbuckets > MIN_BUCKETS && m->count < m->nbuckets / 8)
        resize(m, m->nbuckets / 2);
}

int syn_cidmap_remove(syn_cidmap *m, const uint8_t *cid, size_t len) {
    syn_cidmap_entry **p = slot(m, cid, len);
    if (!p)
        return 0;
    unlink_entry(m, p);
    maybe_shrink(m);
    return 1;
}

void syn_cidmap_remove_list(syn_cidmap *m, syn_cidmap_list *list) {
    while (list->head) {
        syn_cidmap_entry *e = list->head;
        syn_cidmap_entry **p = slot(m, e->cid, e->len);
        if (!p) { /* cannot happen: every listed entry is in the table */
            list->head = e->lnext;
            free(e);
            continue;
        }
        unlink_entry(m, p);
    }
    list->n = 0;
    maybe_shrink(m);
}

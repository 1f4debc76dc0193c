/*
 * The edge's connection-ID table: routes each datagram to its connection by the DCID, in O(1).
 *
 * A chained hash table keyed with SipHash-2-4 under a random 128-bit key drawn per table: clients
 * choose the DCID of their first Initial, so the bucket of an ID must not be predictable (no cheap
 * collision flooding). The bucket array doubles when the table holds more IDs than buckets and
 * halves when it falls under an eighth. Every entry is also on its connection's list
 * (syn_cidmap_list), so a connection's IDs all go at once when it ends, without a scan.
 */
#ifndef SYNESIS_EDGE_CIDMAP_H
#define SYNESIS_EDGE_CIDMAP_H

#include <stddef.h>
#include <stdint.h>

/* Longest connection ID (QUIC v1). */
#define SYN_CIDMAP_MAXLEN 20

typedef struct syn_cidmap_entry syn_cidmap_entry;

/* The IDs of one connection (embed it in the connection; zero-initialised = empty). */
typedef struct syn_cidmap_list {
    syn_cidmap_entry *head;
    size_t n;
} syn_cidmap_list;

typedef struct syn_cidmap {
    syn_cidmap_entry **buckets;
    size_t nbuckets; /* a power of two, or 0 before the first add */
    size_t count;
    uint64_t k0, k1; /* SipHash key */
} syn_cidmap;

/* Draws the hash key; returns 0, or -1 if the random generator failed. */
int syn_cidmap_init(syn_cidmap *m);

/* Frees every entry (lists pointing into the table become dangling: clear them first or drop
 * them with it). */
void syn_cidmap_free(syn_cidmap *m);

/* Maps cid to value and puts the entry on list. Returns 0, 1 if the ID is already mapped (the
 * table is left as it was), or -1 when out of memory or len > SYN_CIDMAP_MAXLEN. */
int syn_cidmap_add(syn_cidmap *m, const uint8_t *cid, size_t len, void *value,
                   syn_cidmap_list *list);

/* The value mapped to cid, or NULL. */
void *syn_cidmap_find(const syn_cidmap *m, const uint8_t *cid, size_t len);

/* Removes cid (from its list too); returns 1 if it was mapped, 0 if not. */
int syn_cidmap_remove(syn_cidmap *m, const uint8_t *cid, size_t len);

/* Removes every ID on list (O(list length)); the list is empty afterwards. */
void syn_cidmap_remove_list(syn_cidmap *m, syn_cidmap_list *list);

/* The number of IDs mapped. */
static inline size_t syn_cidmap_count(const syn_cidmap *m) { return m->count; }

/* SipHash-2-4 of data under (k0, k1); exposed for the unit test. */
uint64_t syn_siphash24(uint64_t k0, uint64_t k1, const uint8_t *data, size_t len);

#endif /* SYNESIS_EDGE_CIDMAP_H */

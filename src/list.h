/* An intrusive doubly linked list, in the manner of BSD's TAILQ: an object that can be on a list
 * embeds a syn_link, the list is a syn_list (first and last). A zeroed syn_list is empty and a
 * zeroed syn_link is on no list, so calloc'd objects need no initialisation. Internal. */
#ifndef SYNESIS_LIST_H
#define SYNESIS_LIST_H

#include <stddef.h>

typedef struct syn_link {
    struct syn_link *prev, *next;
} syn_link;

typedef struct syn_list {
    syn_link *first, *last;
} syn_list;

static inline int syn_list_empty(const syn_list *l) { return l->first == NULL; }

static inline void syn_list_push_back(syn_list *l, syn_link *n) {
    n->next = NULL;
    n->prev = l->last;
    if (l->last)
        l->last->next = n;
    else
        l->first = n;
    l->last = n;
}

static inline void syn_list_push_front(syn_list *l, syn_link *n) {
    n->prev = NULL;
    n->next = l->first;
    if (l->first)
        l->first->prev = n;
    else
        l->last = n;
    l->first = n;
}

/* Takes n off l (which must hold it); n is left on no list. */
static inline void syn_list_remove(syn_list *l, syn_link *n) {
    if (n->prev)
        n->prev->next = n->next;
    else
        l->first = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        l->last = n->prev;
    n->prev = n->next = NULL;
}

/* The object of type embedding link as member (link not NULL). */
#define SYN_LIST_ENTRY(link, type, member) ((type *)(void *)((char *)(link)-offsetof(type, member)))

/* The first object of list l, or NULL. */
#define SYN_LIST_FIRST(l, type, member)                                                            \
    ((l)->first ? SYN_LIST_ENTRY((l)->first, type, member) : (type *)NULL)

/* The object after obj on its list, or NULL. */
#define SYN_LIST_NEXT(obj, type, member)                                                           \
    ((obj)->member.next ? SYN_LIST_ENTRY((obj)->member.next, type, member) : (type *)NULL)

/* Visits every object of l, first to last; the body may take var off the list (or free it), not
 * the one after it (tmp). */
#define SYN_LIST_FOREACH_SAFE(var, tmp, l, type, member)                                           \
    for ((var) = SYN_LIST_FIRST(l, type, member);                                                  \
         (var) && ((tmp) = SYN_LIST_NEXT(var, type, member), 1); (var) = (tmp))

/* Visits every object of l, first to last; the body must not take var off the list. */
#define SYN_LIST_FOREACH(var, l, type, member)                                                     \
    for ((var) = SYN_LIST_FIRST(l, type, member); (var); (var) = SYN_LIST_NEXT(var, type, member))

#endif /* SYNESIS_LIST_H */

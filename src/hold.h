/* Deferred release, for an object that code it calls out to may free (an application callback
 * freeing the tunnel or closing a stream, a driver callback ending a connection). Every frame of
 * ours that calls out and still uses the object afterwards holds it (syn_hold_enter ..
 * syn_hold_leave); a release asked for while a frame holds it only marks the object dying, and
 * the outermost frame, on its way out, does the release. A zeroed syn_hold is free and not dying.
 * Used by the tunnel, qconn, streams, lingering connections and the edge. Internal. */
#ifndef SYNESIS_HOLD_H
#define SYNESIS_HOLD_H

typedef struct syn_hold {
    int depth; /* frames holding the object */
    int dying; /* its release was asked for while held */
} syn_hold;

static inline void syn_hold_enter(syn_hold *h) { h->depth++; }

/* Leaves a frame; 1 when it was the outermost one: then the caller releases the object if
 * syn_hold_dying (and may run other deferred work first). */
static inline int syn_hold_leave(syn_hold *h) { return --h->depth == 0; }

/* 1 while a frame holds the object. */
static inline int syn_hold_busy(const syn_hold *h) { return h->depth > 0; }

/* 1 once a release was asked for while the object was held. */
static inline int syn_hold_dying(const syn_hold *h) { return h->dying; }

/* Asks for the release: 1 when no frame holds the object (the caller releases it now), else 0 and
 * the object is marked dying (the outermost syn_hold_leave then returns 1). */
static inline int syn_hold_release(syn_hold *h) {
    if (h->depth > 0) {
        h->dying = 1;
        return 0;
    }
    return 1;
}

#endif /* SYNESIS_HOLD_H */

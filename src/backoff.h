/* The reconnect policy: exponential backoff with a cap, symmetric jitter and a maximum count. */
#ifndef SYNESIS_BACKOFF_H
#define SYNESIS_BACKOFF_H

#include "internal.h"

typedef struct syn_backoff {
    double initial, max, multiplier, jitter;
    uint32_t max_attempts;
    uint32_t attempts; /* attempts scheduled since the last reset */
    double next;       /* un-jittered delay of the next attempt */
    uint64_t rng;      /* xorshift state for jitter */
} syn_backoff;

/* Sets the policy and resets. seed feeds the jitter (any value; 0 is replaced). */
void syn_backoff_init(syn_backoff *b, double initial, double max, double multiplier, double jitter,
                      uint32_t max_attempts, uint64_t seed);

/* Schedules one more attempt: *delay receives its delay in seconds, the schedule's d scaled by
 * (1 + jitter * u) with u uniform in [-1, 1] (exactly d when jitter is 0), and *attempt its
 * 1-based number. Returns SYNESIS_ERR_MAX_RECONNECTS, changing nothing, once max_attempts have been
 * scheduled. */
int syn_backoff_next(syn_backoff *b, double *delay, uint32_t *attempt);

/* After a successful (and, if configured, stable) connection: attempts and delay start over. */
void syn_backoff_reset(syn_backoff *b);

#endif /* SYNESIS_BACKOFF_H */

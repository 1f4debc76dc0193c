/* Exponential backoff (the design's ReconnectManager) with bounded symmetric jitter. */
#include "backoff.h"

void syn_backoff_init(syn_backoff *b, double initial, double max, double multiplier, double jitter,
                      uint32_t max_attempts, uint64_t seed) {
    b->initial = initial;
    b->max = max < initial ? initial : max;
    b->multiplier = multiplier < 1.0 ? 1.0 : multiplier;
    b->jitter = jitter < 0 ? 0 : jitter;
    b->max_attempts = max_attempts;
    b->rng = seed ? seed : 0x9e3779b97f4a7c15ull;
    syn_backoff_reset(b);
}

void syn_backoff_reset(syn_backoff *b) {
    b->attempts = 0;
    b->next = b->initial;
}

static double rand01(syn_backoff *b) {
    uint64_t x = b->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b->rng = x;
    return (double)(x >> 11) / (double)(1ull << 53);
}

int syn_backoff_next(syn_backoff *b, double *delay, uint32_t *attempt) {
    if (b->attempts >= b->max_attempts)
        return SYNESIS_ERR_MAX_RECONNECTS;
    double d = b->next;
    b->attempts++;
    b->next = d * b->multiplier;
    if (b->next > b->max)
        b->next = b->max;
    /* Symmetric jitter around the schedule: d * (1 + j*u), u uniform in [-1, 1]. */
    if (b->jitter > 0)
        d *= 1.0 + b->jitter * (2.0 * rand01(b) - 1.0);
    *delay = d;
    *attempt = b->attempts;
    return 0;
}

/* Device vitals for heartbeats: cheap, non-blocking reads of /proc and /sys, no processes. */
#ifndef SYNESIS_VITALS_H
#define SYNESIS_VITALS_H

#include "internal.h"

#include <cjson/cJSON.h>

typedef struct syn_vitals_sampler {
    uint64_t prev_total, prev_idle; /* /proc/stat counters of the previous sample */
    int have_prev;
} syn_vitals_sampler;

/* Takes one sample and returns it as a new cJSON object (NULL on ENOMEM). Fields appear only when
 * their source is readable: cpu_percent (since the previous sample; since boot for the first),
 * load_1/load_5/load_15, mem_total_kb, mem_available_kb, uptime_s, process_rss_kb,
 * disk_free_kb/disk_total_kb (of disk_path, when not NULL), temperature_c (first thermal zone). */
cJSON *syn_vitals_sample(syn_vitals_sampler *s, const char *disk_path);

#endif /* SYNESIS_VITALS_H */

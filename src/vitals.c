/* Device vitals from /proc and /sys. One sample per heartbeat: a handful of small reads. */
#include "vitals.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

/* Reads a small procfs/sysfs file into buf (NUL-terminated); returns bytes read or -1. */
static ssize_t read_small(const char *path, char *buf, size_t len) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, len - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = 0;
    return n;
}

static void add_cpu(syn_vitals_sampler *s, cJSON *o) {
    char buf[512];
    if (read_small("/proc/stat", buf, sizeof(buf)) <= 0)
        return;
    unsigned long long v[8] = {0};
    if (sscanf(buf, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
               &v[4], &v[5], &v[6], &v[7]) < 4)
        return;
    uint64_t idle = v[3] + v[4]; /* idle + iowait */
    uint64_t total = 0;
    for (int i = 0; i < 8; i++)
        total += v[i];
    uint64_t dt = s->have_prev ? total - s->prev_total : total;
    uint64_t di = s->have_prev ? idle - s->prev_idle : idle;
    s->prev_total = total;
    s->prev_idle = idle;
    s->have_prev = 1;
    double pct = dt ? 100.0 * (double)(dt - di) / (double)dt : 0.0;
    if (pct < 0)
        pct = 0;
    if (pct > 100)
        pct = 100;
    cJSON_AddNumberToObject(o, "cpu_percent", (double)(int64_t)(pct * 10 + 0.5) / 10);
}

static void add_load(cJSON *o) {
    char buf[128];
    double l1, l5, l15;
    if (read_small("/proc/loadavg", buf, sizeof(buf)) > 0 &&
        sscanf(buf, "%lf %lf %lf", &l1, &l5, &l15) == 3) {
        cJSON_AddNumberToObject(o, "load_1", l1);
        cJSON_AddNumberToObject(o, "load_5", l5);
        cJSON_AddNumberToObject(o, "load_15", l15);
    }
}

static int meminfo_field(const char *buf, const char *key, unsigned long long *out) {
    const char *p = strstr(buf, key);
    return p && sscanf(p + strlen(key), " %llu", out) == 1;
}

static void add_mem(cJSON *o) {
    char buf[4096];
    unsigned long long total, avail;
    if (read_small("/proc/meminfo", buf, sizeof(buf)) <= 0)
        return;
    if (meminfo_field(buf, "MemTotal:", &total))
        cJSON_AddNumberToObject(o, "mem_total_kb", (double)total);
    if (meminfo_field(buf, "MemAvailable:", &avail))
        cJSON_AddNumberToObject(o, "mem_available_kb", (double)avail);
}

static void add_uptime_rss(cJSON *o) {
    char buf[2048];
    double up;
    if (read_small("/proc/uptime", buf, sizeof(buf)) > 0 && sscanf(buf, "%lf", &up) == 1)
        cJSON_AddNumberToObject(o, "uptime_s", (double)(uint64_t)up); /* whole seconds */
    unsigned long long rss;
    if (read_small("/proc/self/status", buf, sizeof(buf)) > 0 && meminfo_field(buf, "VmRSS:", &rss))
        cJSON_AddNumberToObject(o, "process_rss_kb", (double)rss);
}

static void add_disk(cJSON *o, const char *path) {
    struct statvfs sv;
    if (!path || statvfs(path, &sv) != 0)
        return;
    cJSON_AddNumberToObject(o, "disk_free_kb",
                            (double)((uint64_t)sv.f_bavail * sv.f_frsize / 1024));
    cJSON_AddNumberToObject(o, "disk_total_kb",
                            (double)((uint64_t)sv.f_blocks * sv.f_frsize / 1024));
}

static void add_temp(cJSON *o) {
    char buf[64];
    long milli;
    if (read_small("/sys/class/thermal/thermal_zone0/temp", buf, sizeof(buf)) > 0 &&
        sscanf(buf, "%ld", &milli) == 1)
        cJSON_AddNumberToObject(o, "temperature_c", (double)(milli / 100) / 10); /* 0.1 C */
}

cJSON *syn_vitals_sample(syn_vitals_sampler *s, const char *disk_path) {
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    add_cpu(s, o);
    add_load(o);
    add_mem(o);
    add_uptime_rss(o);
    add_disk(o, disk_path);
    add_temp(o);
    return o;
}

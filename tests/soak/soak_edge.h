/* The reference edge in a child process for the soak and allocation-failure programs
 * (tests/soak/): the child creates the test PKI and runs the edge on 127.0.0.1 (an ephemeral
 * port); the parent drives it over a pipe: kick the device, restart the edge (gracefully or as a
 * crash), counters. The parent itself never touches OpenSSL through this module, so a program can
 * keep its own process free of OpenSSL state until it chooses (test_alloc_fail forks clean
 * children from it).
 */
#ifndef SYNESIS_SOAK_EDGE_H
#define SYNESIS_SOAK_EDGE_H

#include <stdint.h>
#include <sys/types.h>

#include "edge/edge.h"

typedef struct soak_edge {
    pid_t pid;
    int ctl;  /* commands to the child */
    int resp; /* its answers */
    uint16_t port;
    char pki_dir[512]; /* the PKI the child made: ca.pem, edge.*, device.pem, device.key */
} soak_edge;

typedef struct soak_edge_options {
    const char *device_id; /* the device certificate's id; default "soak" */
    double idle_timeout;   /* the edge's idle timeout, seconds; default 5 */
    double hs_timeout;     /* its handshake timeout; default 3 */
    int retry_never;       /* no stateless Retry at all (the default threshold otherwise) */
    int log;               /* the edge's JSON events on stderr */
} soak_edge_options;

/* Starts the child (exits the program on failure). opts may be NULL. */
void soak_edge_start(soak_edge *se, const soak_edge_options *opts);
/* Closes every connection of the device (CONNECTION_CLOSE, "kicked"); returns when done. */
void soak_edge_kick(soak_edge *se);
/* Stops the edge and starts it again on the same port: graceful (CONNECTION_CLOSE to every
 * connection) or not (the connections vanish, as if the process had died). */
void soak_edge_restart(soak_edge *se, int graceful);
/* The edge's counters and the child's resident set size (kB). */
void soak_edge_stats(soak_edge *se, syn_edge_stats *st, long *rss_kb);
/* Stops the child and waits for it; removes nothing (the PKI stays for inspection). Returns 0
 * when the child exited cleanly (status 0: no sanitizer report), -1 otherwise. */
int soak_edge_stop(soak_edge *se);

/* "dir/name" in a static rotating buffer (8 entries). */
const char *soak_path(const char *dir, const char *name);
/* A field of /proc/self/status in kB ("VmRSS", "VmHWM"), or -1. */
long soak_status_kb(const char *key);
/* Monotonic seconds. */
double soak_now(void);

/* Runs loop until pred(ud) holds (checked before the loop would block) or timeout seconds pass;
 * returns pred's final value. */
struct ev_loop;
int soak_run_until(struct ev_loop *loop, int (*pred)(void *), void *ud, double timeout);
/* Runs loop for the given seconds. */
void soak_run_for(struct ev_loop *loop, double seconds);
/* Runs loop until no watcher is active any more (a closing connection has finished) or timeout
 * seconds pass; returns 1 when it went idle. */
int soak_run_idle(struct ev_loop *loop, double timeout);

#endif

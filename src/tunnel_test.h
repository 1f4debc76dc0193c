/* Test and benchmark hooks of the tunnel (tunnel.c, migrate.c): included only by the files that
 * define them, by tests/ and by tests/bench/. Nothing in the library calls them; they are not
 * exported (the version script keeps synesis_* only, test_exports checks). */
#ifndef SYNESIS_TUNNEL_TEST_H
#define SYNESIS_TUNNEL_TEST_H

#include "tunnel_int.h"

/* The tunnel's resumption store (NULL until the edge sent a ticket or a token, or
 * config.resume_data was imported); tests and the benchmark read its counters, and may drop its
 * contents (syn_resume_clear). What used to be hooks here is the public API since 1.1:
 * config.resumption, config.early_data, SYNESIS_REQUEST_IDEMPOTENT. */
syn_resume *syn_tunnel_resume(synesis_tunnel *t);
/* Netlink messages the watcher of config.watch_network has read (migrate.c; test_migration). */
uint64_t syn_migration_nl_events(const synesis_tunnel *t);

#endif /* SYNESIS_TUNNEL_TEST_H */

/* Test and benchmark hooks of the tunnel (tunnel.c, migrate.c): included only by the files that
 * define them, by tests/ and by tests/bench/. Nothing in the library calls them; they are not
 * exported (the version script keeps synesis_* only, test_exports checks). */
#ifndef SYNESIS_TUNNEL_TEST_H
#define SYNESIS_TUNNEL_TEST_H

#include "tunnel_int.h"

/* The tunnel's resumption store (NULL until the edge sent a ticket or a token); tests and the
 * benchmark read its counters, and may drop its contents (syn_resume_clear) or switch it off. */
syn_resume *syn_tunnel_resume(synesis_tunnel *t);
void syn_tunnel_set_resume(synesis_tunnel *t, int on);
/* 0-RTT on reconnect where the ticket allows it (default on): requests marked idempotent are sent
 * with the handshake's first flight; everything else waits for Connected. */
void syn_tunnel_set_early_data(synesis_tunnel *t, int on);
/* Netlink messages the watcher of config.watch_network has read (migrate.c; test_migration). */
uint64_t syn_migration_nl_events(const synesis_tunnel *t);

#endif /* SYNESIS_TUNNEL_TEST_H */

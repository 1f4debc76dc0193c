/* Test hook of the resolver (dns.c): included only by dns.c, which defines it, and by
 * tests/test_dns.c. Its definition is one assignment; production code never sets spawn_error. */
#ifndef SYNESIS_DNS_TEST_H
#define SYNESIS_DNS_TEST_H

#include "dns.h"

/* Makes the next thread start of r fail as if pthread_create returned err. */
void syn_resolver_test_spawn_error(syn_resolver *r, int err);

#endif /* SYNESIS_DNS_TEST_H */

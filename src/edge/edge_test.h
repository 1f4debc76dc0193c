/* Test and fuzzing hooks of the reference edge (edge.c): included only by edge.c, which defines
 * them, and by tests/fuzz/. Not part of the edge's interface for its other users. */
#ifndef SYNESIS_EDGE_TEST_H
#define SYNESIS_EDGE_TEST_H

#include "edge.h"

/* The driver connection of the newest connection (NULL when none). With the qconn_test.h calls,
 * a fuzzer plays a client's streams into the edge's stream handlers. */
struct syn_qconn;
struct syn_qconn *syn_edge_newest_qconn(const syn_edge *e);

#endif /* SYNESIS_EDGE_TEST_H */

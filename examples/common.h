/*
 * Small helpers shared by the example programs: checked number parsing for options, usage
 * errors, and the tunnel settings common to the three client programs (synesis-agent,
 * synesis-request, stream_upload). Nothing here is part of the library.
 */
#ifndef SYNESIS_EXAMPLES_COMMON_H
#define SYNESIS_EXAMPLES_COMMON_H

#include <stddef.h>

#include "synesis/synesis.h"

/* Exit status of a usage error (as in synesis-init). */
#define EX_USAGE_STATUS 2

/* Prints "PROG: MESSAGE (see --help)" on one line to stderr and returns EX_USAGE_STATUS. */
int ex_usage_error(const char *prog, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The getopt_long() error cases ('?' unknown option, ':' missing value; the option string
 * starts with ':' so both are ours to report): one line, returns EX_USAGE_STATUS. */
int ex_bad_option(const char *prog, char **argv, int c);

/* Parses a number of seconds (fractions allowed, >= 0; > 0 unless allow_zero) given to option
 * opt. Returns 0, or prints a usage error and returns -1. */
int ex_parse_seconds(const char *prog, const char *opt, const char *text, int allow_zero,
                     double *out);

/* Parses a positive whole number (bytes, counts) given to option opt. Returns 0, or prints a
 * usage error and returns -1. */
int ex_parse_count(const char *prog, const char *opt, const char *text, size_t *out);

/* The options every client program takes. */
typedef struct ex_client_options {
    const char *url;         /* --url: "quic://host:port" */
    const char *server_name; /* --server-name: the name on the edge's certificate */
    const char *cert;        /* --cert: the device certificate (PEM) */
    const char *key;         /* --key: its private key (PEM, mode 0600) */
    const char *ca;          /* --ca: the CA of the edge's certificate (optional) */
} ex_client_options;

/* Takes one of the client options from getopt_long() ('u' url, 's' server name, 'c' cert,
 * 'k' key, 'a' ca); returns 1 when c was one of them, 0 otherwise. */
int ex_client_option(ex_client_options *o, int c, const char *arg);

/* Checks that the required client options were given; prints a usage error and returns -1 if
 * one is missing, else 0. */
int ex_client_check(const char *prog, const ex_client_options *o);

/* Fills cfg (already set up by synesis_tunnel_config_init()) from o, and sends the library's
 * warnings and errors to stderr prefixed with prog. */
void ex_client_config(synesis_tunnel_config *cfg, const ex_client_options *o, const char *prog);

#endif /* SYNESIS_EXAMPLES_COMMON_H */

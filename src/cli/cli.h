/*
 * The `synesis` command: what its subcommands share (exit statuses, the command-line driver that
 * merges a configuration file with flags, messages).
 */
#ifndef SYNESIS_CLI_H
#define SYNESIS_CLI_H

#include <stddef.h>
#include <stdio.h>

#include "conf.h"
#include "synesis/synesis.h"

/* Exit statuses of every subcommand (docs/synesis.md, `synesis help exit-codes`). */
enum {
    CLI_EXIT_OK = 0,         /* done; a service stopped by SIGINT/SIGTERM */
    CLI_EXIT_FAILURE = 1,    /* a failure outside the classes below */
    CLI_EXIT_USAGE = 2,      /* the command line is wrong */
    CLI_EXIT_CONFIG = 3,     /* the configuration file cannot be read, or is wrong */
    CLI_EXIT_IDENTITY = 4,   /* certificates and keys: SYNESIS_ERR_* -100 .. -199 */
    CLI_EXIT_CONNECTION = 5, /* the connection: SYNESIS_ERR_* -200 .. -299 */
    CLI_EXIT_REQUEST = 6,    /* requests and streams: SYNESIS_ERR_* -300 .. -399 */
};

/* The exit status for a SYNESIS_ERR_* code (its class; 1 for the general ones). */
int cli_exit_for_error(int err);

/* Prints the table of exit statuses. */
void cli_print_exit_codes(FILE *f);

/* Prints "PROG: MESSAGE (see --help)" to stderr; returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *prog, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A flag of one subcommand (besides its configuration keys, --config and --help). */
typedef struct cli_flag {
    const char *name; /* without "--" */
    int has_arg;      /* 0 or 1 */
    int id;           /* given to on_flag, 1 .. 255 */
} cli_flag;

typedef struct cli_command {
    const char *prog;        /* "synesis agent", for messages */
    const conf_table *table; /* its configuration keys; NULL: no configuration file */
    void *settings;          /* the struct the keys describe, holding the defaults */
    const char *default_config;
    const cli_flag *flags;
    size_t nflags;
    /* One of flags was given; returns -1 to go on, or an exit status. */
    int (*on_flag)(void *ctx, int id, const char *arg);
    void *ctx;
    void (*usage)(FILE *f); /* --help */
} cli_command;

/*
 * Parses argv (argv[0] is the subcommand's name) and, when the command has a table, reads the
 * configuration file (--config FILE, else default_config when it exists), then applies the flags
 * that set keys, which override the file. Returns -1 to go on, or the exit status to exit with
 * (0 after --help). *config_used receives the file read (NULL when none), if not NULL.
 */
int cli_parse(const cli_command *cmd, int argc, char **argv, const char **config_used);

/* A library log callback: "PROG: LEVEL: MESSAGE" on stderr (user_data is PROG). Under systemd
 * (JOURNAL_STREAM set) each line starts with its syslog priority, "<4>" etc. */
void cli_log_stderr(synesis_log_level level, const char *msg, void *user_data);

/* Prints "PROG: NAME: DETAIL" for a SYNESIS_ERR_* code to stderr. */
void cli_report(const char *prog, int err, const char *detail);

/* The subcommands; argv[0] is the subcommand's name. */
int cli_init_main(int argc, char **argv);
int cli_agent_main(int argc, char **argv);
int cli_request_main(int argc, char **argv);
int cli_edge_main(int argc, char **argv);
int cli_check_main(int argc, char **argv);

/* Their --help texts. */
void cli_init_usage(FILE *f);
void cli_agent_usage(FILE *f);
void cli_request_usage(FILE *f);
void cli_edge_usage(FILE *f);
void cli_check_usage(FILE *f);

#endif /* SYNESIS_CLI_H */
